#!/usr/bin/env bash
# The GPU check of era's CUDA build, for a machine with an NVIDIA GPU and its driver,
# Python 3 and a CUDA build of PyTorch, but no Rust toolchain and no internet.
#
# Here (a machine with Rust, with or without a GPU):   scripts/cuda.sh artifacts
# There, from the repository root, with build/cuda/gpu-check copied along:
#                                                        bash scripts/gpu-check.sh [--quick]
# Here again, without a GPU (part of `make test`):     bash scripts/gpu-check.sh --rehearse
#
# Steps, each with its own time limit (seconds), a verdict each and a table of them at the end:
#   preflight  15  scripts/gpu_preflight.py: the versions of Python, jax/jaxlib, torch and the
#                  driver, what the artifacts were built with; stops the check (no other step
#                  runs) where it cannot work: files missing, artifacts built from another
#                  tree (the bindings of this one do not import with them), a driver older
#                  than the toolkit that compiled the kernels, torch without a GPU
#   rust       20  the Rust CUDA tests (build/cuda/gpu-check/cuda-tests)
#   torch      90  scripts/gpu_check.py through era_torch (bindings/torch/src) on the CUDA build
#                  of libera.so: every operation and dtype on the GPU against the CPU path,
#                  stream, no-synchronisation and CUDA-graph checks (one in a fresh process),
#                  the throughput table against the copy bandwidth and the recipe's PyTorch
#                  computation
#   jax-tests  85  era_jax's tests with the CUDA handlers (tests that hold on one platform only
#                  are marked so and skip on the other), the slowest ten listed
#   jax-bench  45  era_jax's token and Gaussian heads against the pure-JAX formulation
#                  (bindings/jax/bench.py --quick --check: values compared before timing)
#   sac        30  a jitted SAC update (batch 256, HalfCheetah's sizes) with era_jax's head
#                  against the pure-JAX head (examples/jax/sac_era.py bench; the machine's optax)
# 285 s in all (297 s with the 2 s each step is given to stop), so the whole check ends
# within 5 minutes even where every step hangs.
#
# --rehearse runs every step's code on this machine's CPU with the same files and calls:
# the preflight's rules on made-up versions, the Rust CUDA tests (which skip, saying so),
# gpu_check.py --rehearse, era_jax's tests with JAX on the CPU (the files of the heads, the
# statuses and the FFI version: the whole suite runs in `make test-jax`), the benchmark and
# the SAC update in tiny sizes with the benchmark's values checked. Its limits are five times the GPU run's
# (a shared CPU is slower; what it checks is the code, not the time). Exit status non-zero
# on a failure.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
art=${ERA_GPU_ARTIFACTS:-$root/build/cuda/gpu-check}
py=${PYTHON:-python3}
rehearse=0
args=()
for a in "$@"; do
    case "$a" in
        --rehearse) rehearse=1 ;;
        *) args+=("$a") ;;
    esac
done
if [ $rehearse = 1 ]; then
    jax_platforms=cpu
    scale=5
else
    jax_platforms=cuda,cpu
    scale=1
fi

names=() limits=() verdicts=() times=()
# step NAME LIMIT COMMAND...: runs COMMAND under `timeout LIMIT`, records PASS, FAIL or TIMEOUT
step() {
    local name=$1 limit=$(($2 * scale)) t0 rc verdict
    shift 2
    echo
    echo "== $name (limit ${limit} s)"
    t0=$(date +%s)
    timeout --kill-after=2 "$limit" "$@"
    rc=$?
    case $rc in
        0) verdict=PASS ;;
        124 | 137) verdict=TIMEOUT ;;
        *) verdict="FAIL (exit $rc)" ;;
    esac
    names+=("$name") limits+=("$limit") verdicts+=("$verdict") times+=("$(($(date +%s) - t0))")
    echo "== $name: $verdict"
    [ $rc = 0 ]
}

summary() {
    echo
    echo "| step | limit (s) | time (s) | verdict |"
    echo "| --- | --- | --- | --- |"
    local i failed=0
    for i in "${!names[@]}"; do
        echo "| ${names[$i]} | ${limits[$i]} | ${times[$i]} | ${verdicts[$i]} |"
        [ "${verdicts[$i]}" = PASS ] || failed=1
    done
    if [ $failed = 0 ]; then echo "gpu-check: every step passed"; else echo "gpu-check: FAILED"; fi
    return $failed
}

jax_env=(env ERA_JAX_LIBRARY="$art/liberajax.so" PYTHONPATH="$root/bindings/jax/src${PYTHONPATH:+:$PYTHONPATH}"
    JAX_PLATFORMS="$jax_platforms")
# a JAX step's command: jax and pytest must import (a failure says why), then the command
# ("$0" is the Python, "$@" its arguments)
jax_check='"$0" -c "import jax, pytest" || { echo "gpu-check: jax or pytest does not import with $0: this step cannot run" >&2; exit 1; }; exec "$0" "$@"'
jax_step=("${jax_env[@]}" bash -c "$jax_check" "$py")

pre=()
[ $rehearse = 1 ] && pre=(--rehearse)
if ! step preflight 15 "$py" scripts/gpu_preflight.py "$art" "${pre[@]}"; then
    echo "gpu-check: stopped by the preflight (above); no other step was run" >&2
    summary
    exit 1
fi
step rust 20 "$art/cuda-tests" --test-threads 1
torch_args=("${args[@]}")
[ $rehearse = 1 ] && torch_args+=(--rehearse)
step torch 90 env ERA_TORCH_LIBRARY="$art/lib/libera.so" \
    PYTHONPATH="$root/bindings/torch/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
    "$py" scripts/gpu_check.py "${torch_args[@]}"
jax_tests=(bindings/jax/tests)
[ $rehearse = 1 ] && jax_tests=(bindings/jax/tests/test_{gaussian,token,statuses,ffi_version}.py)
step jax-tests 85 "${jax_step[@]}" -m pytest "${jax_tests[@]}" -q -x -p no:cacheprovider --durations=10
bench_size=(--quick)
[ $rehearse = 1 ] && bench_size=(--tiny)
step jax-bench 45 "${jax_step[@]}" bindings/jax/bench.py --heads token,gaussian --check "${bench_size[@]}"
sac_size=(--batch 256 --iters 50 --repeats 3)
[ $rehearse = 1 ] && sac_size=(--batch 16 --iters 2 --repeats 1)
step sac 30 "${jax_step[@]}" examples/jax/sac_era.py bench --obs-dim 17 --act-dim 6 "${sac_size[@]}"
summary
