#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 600), after
# replaying the saved regression inputs. Needs the nightly toolchain and
# cargo-fuzz (installed here when missing). Prints executions per target.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config tensor json token token_blocks sequence)
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked --quiet
# libFuzzer keeps its default memory limit (2 GB): an allocation made before a call has validated
# its arguments shows up as a crash. Fallible allocations (era reports ERA_STATUS_OUT_OF_MEMORY)
# must see a failure, not an ASan abort.
export ASAN_OPTIONS="allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    if [ -d "regressions/$t" ]; then
        cargo +nightly fuzz run "$t" "regressions/$t" -- -runs=0 >/dev/null 2>&1 ||
            { echo "fuzz: $t: a saved regression input fails again" >&2; exit 1; }
    fi
    log=$(mktemp)
    if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        grep -E "panicked|ERROR|SUMMARY" -A3 "$log" >&2 || tail -n 30 "$log" >&2
        echo "fuzz: $t: crash (input saved under fuzz/artifacts/$t)" >&2
        exit 1
    fi
    runs=$(grep -E "stat::number_of_executed_units" "$log" | awk '{print $2}' | tail -n 1)
    echo "fuzz: $t: ${runs:-?} executions in ${secs}s, no crash"
    rm -f "$log"
done
