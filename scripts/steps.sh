#!/usr/bin/env bash
# Runs `make STEP` for each STEP in order, stopping at the first failure, and prints how long each
# took, as it goes and as a table at the end (make test and make test-hardening use it, so that a
# run's log says where its time went).
# Usage: scripts/steps.sh NAME STEP...
set -uo pipefail
name=$1
shift
MAKE=${MAKE:-make}
start=$(date +%s)
table=()
for step in "$@"; do
    t0=$(date +%s)
    if ! $MAKE "$step"; then
        echo "$name: $step failed after $(( $(date +%s) - t0 )) s" >&2
        exit 1
    fi
    took=$(( $(date +%s) - t0 ))
    table+=("$(printf '%6d s  %s' "$took" "$step")")
    echo "$name: $step took $took s ($(( $(date +%s) - start )) s in all)"
done
echo "$name: every step passed in $(( $(date +%s) - start )) s"
printf '%s\n' "${table[@]}"
