#!/usr/bin/env bash
# The CUDA build of era, on machines with or without a GPU.
#
#   scripts/cuda.sh toolchain   install NVIDIA's CUDA compiler from pinned PyPI wheels into
#                               build/cuda-toolchain (once) and print the path of its nvcc
#   scripts/cuda.sh build       libera with the cuda feature (release) into build/cuda/lib
#   scripts/cuda.sh test        every test that needs no GPU against the CUDA build: the Rust
#                               tests with the cuda feature (the CUDA tests among them skip,
#                               saying so, where no GPU is usable), the library's dynamic
#                               dependencies (no libcuda, no libcudart), the C tests, the
#                               era_torch and era_jax tests against the CUDA library (era_jax
#                               with its CUDA handlers built in), and the kernels run on the
#                               CPU through the emulation in tests/cuda/emu; then the GPU
#                               tests (scripts/gpu_check.py --quick) where a GPU is usable,
#                               else a visible skip
#   scripts/cuda.sh artifacts   build/cuda/gpu-check: what scripts/gpu-check.sh needs on a GPU
#                               machine without Rust or internet (the libraries, the Rust CUDA
#                               tests, era_jax's CUDA module, optax for the SAC update benchmark)
#
# Environment: ERA_NVCC (an nvcc to use instead of the wheels), PYTHON (for pip; default
# .venv/bin/python), CARGO (default cargo), BUILD (default build/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-$root/build}
CARGO=${CARGO:-cargo}
PYTHON=${PYTHON:-$root/.venv/bin/python}
toolchain_dir=$BUILD/cuda-toolchain
# CUDA 13.0 compiler wheels (the cu12 wheels ship no nvcc); nvcc, its front end's
# headers (crt), the NVVM back end (cicc, libdevice) and the runtime headers.
wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96)
target_dir=$BUILD/cuda-target

nvcc_path() {
    if [ -n "${ERA_NVCC:-}" ]; then
        echo "$ERA_NVCC"
        return
    fi
    local nvcc=$toolchain_dir/nvidia/cu13/bin/nvcc
    if [ ! -x "$nvcc" ]; then
        echo "cuda.sh: installing the CUDA compiler wheels into $toolchain_dir" >&2
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --target "$toolchain_dir" "${wheels[@]}" >&2
    fi
    echo "$nvcc"
}

build() {
    local nvcc
    nvcc=$(nvcc_path)
    ERA_NVCC=$nvcc CARGO_TARGET_DIR=$target_dir "$CARGO" build --release --features cuda --lib
    mkdir -p "$BUILD/cuda/lib"
    cp "$target_dir/release/libera.so" "$BUILD/cuda/lib/libera.so.0.1"
    ln -sf libera.so.0.1 "$BUILD/cuda/lib/libera.so"
}

check_needed() {
    local lib=$BUILD/cuda/lib/libera.so.0.1 needed
    needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    echo "cuda.sh: $lib needs: $needed"
    case " $needed " in
        *libcuda* | *libcudart* | *libnvrtc*)
            echo "cuda.sh: FAIL: the CUDA build must load the driver at run time, not link it" >&2
            exit 1
            ;;
    esac
    if ! readelf -p .rodata "$lib" >/dev/null 2>&1 || ! grep -q "era_token_stats_bf16" "$lib"; then
        echo "cuda.sh: FAIL: the kernel image is not embedded in $lib" >&2
        exit 1
    fi
}

jax_module() {
    # era_jax's native module with the CUDA handlers (XLA FFI API 0.1, so the jaxlib of
    # a GPU machine may be newer than the one whose headers it was built against)
    local nvcc=$1
    ERA_NVCC=$nvcc cmake -S bindings/jax -B "$BUILD/cuda/jax" -DCMAKE_BUILD_TYPE=Release -DERA_CUDA=ON \
        -DPython_EXECUTABLE="$PYTHON" -DERA_CARGO_TARGET_DIR="$target_dir" ${CMAKE_FLAGS:-} >/dev/null
    ERA_NVCC=$nvcc cmake --build "$BUILD/cuda/jax" --parallel "${JOBS:-2}" >/dev/null
}

binding_tests() {
    # the bindings' own tests against the CUDA build, on a machine where CUDA may be
    # unusable: the library and era_jax's CUDA handlers must stay out of the way
    jax_module "$1"
    ERA_TORCH_LIBRARY=$BUILD/cuda/lib/libera.so "$PYTHON" -m pytest bindings/torch/tests -q -p no:cacheprovider
    ERA_JAX_LIBRARY=$BUILD/cuda/jax/liberajax.so PYTHONPATH=$root/bindings/jax/src${PYTHONPATH:+:$PYTHONPATH} \
        "$PYTHON" -m pytest bindings/jax/tests -q -p no:cacheprovider
}

gpu_tests() {
    # the GPU tests: where CUDA is usable here (a driver, a GPU and a CUDA build of torch),
    # scripts/gpu_check.py --quick; elsewhere a visible skip
    local lib=$BUILD/cuda/lib/libera.so
    if ERA_TORCH_LIBRARY=$lib "$PYTHON" -c 'import sys, torch; from era_torch import _native
sys.exit(0 if torch.cuda.is_available() and _native.lib().era_cuda_available() else 1)' 2>/dev/null; then
        ERA_TORCH_LIBRARY=$lib PYTHONPATH=$root/bindings/torch/src${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" scripts/gpu_check.py --quick
    else
        echo "cuda.sh: GPU tests SKIPPED: no usable CUDA GPU here (era_cuda_available() = 0 or torch sees no GPU);"
        echo "cuda.sh: scripts/gpu-check.sh runs them on a GPU machine"
    fi
}

c_tests() {
    # the C tests of tests/c, linked against libera.so, run with the CUDA build in its place
    local dir=$BUILD/cuda/c-tests
    cmake -S tests/c -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${PREFIX:-$BUILD/prefix}" ${CMAKE_FLAGS:-} >/dev/null
    cmake --build "$dir" --parallel "${JOBS:-2}" >/dev/null
    LD_LIBRARY_PATH=$BUILD/cuda/lib ctest --test-dir "$dir" --output-on-failure
}

case "${1:-}" in
    toolchain) nvcc_path ;;
    build) build ;;
    test)
        build
        check_needed
        nvcc=$(nvcc_path)
        ERA_NVCC=$nvcc CARGO_TARGET_DIR=$target_dir "$CARGO" test --features cuda --no-fail-fast
        c_tests
        binding_tests "$nvcc"
        bash tests/cuda/emu/run.sh
        gpu_tests
        ;;
    artifacts)
        build
        nvcc=$(nvcc_path)
        out=$BUILD/cuda/gpu-check
        rm -rf "$out"
        mkdir -p "$out/lib"
        cp -a "$BUILD/cuda/lib/." "$out/lib/"
        # the Rust CUDA tests as a binary that runs without cargo
        bin=$(ERA_NVCC=$nvcc CARGO_TARGET_DIR=$target_dir "$CARGO" test --release --features cuda --test cuda --no-run --message-format=json 2>/dev/null |
            "$PYTHON" -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m.get("target", {}).get("name") == "cuda"][-1])')
        cp "$bin" "$out/cuda-tests"
        jax_module "$nvcc"
        cp "$BUILD/cuda/jax/liberajax.so" "$out/liberajax.so"
        # the SAC example's one dependency beyond jax and numpy, for its update benchmark
        # there (pure Python; the GPU machine has no internet)
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --target "$out/pylib" \
            optax==0.2.8 absl-py==2.5.1
        echo "cuda.sh: artifacts in $out"
        ;;
    *)
        sed -n '2,21p' "$0"
        exit 2
        ;;
esac
