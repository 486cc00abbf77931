#!/usr/bin/env bash
# Runs `make STEP` for each STEP in order, stopping at the first failure, and prints how long each
# took, as it goes and as a table at the end (make test and make test-hardening use it, so that a
# run's log says where its time went). A step that runs past STEP_TIMEOUT seconds (default 1500)
# is stopped and fails, so that a hang shows as the step it happened in, not as a run out of time.
# Usage: scripts/steps.sh NAME STEP...
set -uo pipefail
name=$1
shift
MAKE=${MAKE:-make}
STEP_TIMEOUT=${STEP_TIMEOUT:-1500}
start=$(date +%s)
table=()
for step in "$@"; do
    t0=$(date +%s)
    timeout -k 30 "$STEP_TIMEOUT" $MAKE "$step"
    rc=$?
    if [ $rc -ne 0 ]; then
        why="failed"
        [ $rc -eq 124 ] && why="ran past STEP_TIMEOUT=$STEP_TIMEOUT s and was stopped"
        echo "$name: $step $why after $(( $(date +%s) - t0 )) s" >&2
        exit 1
    fi
    took=$(( $(date +%s) - t0 ))
    table+=("$(printf '%6d s  %s' "$took" "$step")")
    echo "$name: $step took $took s ($(( $(date +%s) - start )) s in all)"
done
echo "$name: every step passed in $(( $(date +%s) - start )) s"
printf '%s\n' "${table[@]}"
