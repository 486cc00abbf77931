#!/usr/bin/env bash
# The GPU check of era's CUDA build, for a machine with an NVIDIA GPU and its driver,
# Python 3 and a CUDA build of PyTorch, but no Rust toolchain and no internet.
#
# Here (a machine with Rust, with or without a GPU):   scripts/cuda.sh artifacts
# There, from the repository root, with build/cuda/gpu-check copied along:
#                                                        bash scripts/gpu-check.sh [--quick]
#
# It runs the Rust CUDA tests (build/cuda/gpu-check/cuda-tests), then scripts/gpu_check.py
# through era_torch (bindings/torch/src) on the CUDA build of libera.so: every operation and
# dtype on the GPU against the CPU path (max error), stream, no-synchronisation and CUDA-graph
# checks, and the throughput table against the copy bandwidth measured in the same run.
# Then era_jax on the GPU: its tests, its token and Gaussian heads against the pure-JAX
# formulation, and a jitted SAC update (batch 256, HalfCheetah's sizes) with era_jax's head
# against the pure-JAX head (examples/jax/sac_era.py bench; optax from the artifacts).
# Each step has its own time limit (30 + 130 + 60 + 40 + 30 s), so the whole check ends within
# 5 minutes on one H100/H200 even where a step hangs. Exit status non-zero on a failure.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
art=${ERA_GPU_ARTIFACTS:-$root/build/cuda/gpu-check}
if [ ! -f "$art/lib/libera.so" ]; then
    echo "gpu-check: no artifacts in $art; run scripts/cuda.sh artifacts on the build machine" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || {
    echo "gpu-check: no NVIDIA GPU or driver here" >&2
    exit 2
}
status=0
echo "== Rust CUDA tests (the device query, the checks before a launch)"
timeout 30 "$art/cuda-tests" --test-threads 1 || status=1
echo "== GPU against CPU, semantics, throughput"
ERA_TORCH_LIBRARY=$art/lib/libera.so PYTHONPATH=$root/bindings/torch/src${PYTHONPATH:+:$PYTHONPATH} \
    PYTHONUNBUFFERED=1 timeout 130 python3 scripts/gpu_check.py "$@" || status=1
if [ -f "$art/liberajax.so" ] && python3 -c "import jax, pytest" 2>/dev/null; then
    echo "== era_jax's tests on the GPU (CUDA handlers, XLA's stream)"
    ERA_JAX_LIBRARY=$art/liberajax.so PYTHONPATH=$root/bindings/jax/src${PYTHONPATH:+:$PYTHONPATH} JAX_PLATFORMS=cuda,cpu \
        timeout 60 python3 -m pytest bindings/jax/tests -q -x -p no:cacheprovider || status=1
    echo "== era_jax against the pure-JAX formulation (XLA on the GPU): token and Gaussian heads"
    ERA_JAX_LIBRARY=$art/liberajax.so PYTHONPATH=$root/bindings/jax/src${PYTHONPATH:+:$PYTHONPATH} JAX_PLATFORMS=cuda \
        timeout 40 python3 bindings/jax/bench.py --heads token,gaussian || status=1
    echo "== a jitted SAC update on the GPU: era_jax's Gaussian head against the pure-JAX head"
    ERA_JAX_LIBRARY=$art/liberajax.so PYTHONPATH=$root/bindings/jax/src:$art/pylib${PYTHONPATH:+:$PYTHONPATH} \
        JAX_PLATFORMS=cuda timeout 30 python3 examples/jax/sac_era.py bench --obs-dim 17 --act-dim 6 --batch 256 \
        --iters 50 --repeats 3 || status=1
fi
exit $status
