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
#                               era_torch and era_jax tests of the ops against the CUDA library
#                               (era_jax with its CUDA handlers built in), and the kernels run on the
#                               CPU through the emulation in tests/cuda/emu; then the GPU
#                               tests (scripts/gpu_check.py --quick) where a GPU is usable,
#                               else a visible skip
#   scripts/cuda.sh artifacts   build/cuda/gpu-check: what scripts/gpu-check.sh needs on a GPU
#                               machine without Rust or internet (the libraries, the Rust CUDA
#                               tests, era_jax's CUDA module, the versions they were built with);
#                               prints their total size and fails above 64 MiB (what travels
#                               with the working tree to a GPU machine)
#   scripts/cuda.sh rehearse    the GPU check rehearsed on this machine's CPU (part of `test`):
#                               the artifacts' layout from the debug build, then
#                               scripts/gpu-check.sh --rehearse
#
# Environment: ERA_NVCC (an nvcc to use instead of the wheels), PYTHON (for pip and the
# bindings; default .venv/bin/python where it exists, else python3), CARGO (default cargo),
# BUILD (default build/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-$root/build}
CARGO=${CARGO:-cargo}
if [ -z "${PYTHON:-}" ]; then
    # a fresh clone has no .venv: any Python with pip installs the wheels (--target)
    if [ -x "$root/.venv/bin/python" ]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi
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
        if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
            echo "cuda.sh: $PYTHON has no pip to install the CUDA compiler wheels with; set PYTHON to a" \
                "Python with pip (or ERA_NVCC to an installed nvcc)" >&2
            exit 1
        fi
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

# The bindings' tests run against the CUDA build (the ops on host buffers, their errors, the FFI
# version of every handler, CPU and CUDA); the rest of each suite depends on the bindings' Python,
# not on which build of the library is underneath, and make test-torch / test-jax run it.
TORCH_TESTS=(test_heads.py test_func.py test_errors.py test_gaussian_mask.py test_token_split.py)
JAX_TESTS=(test_every_target.py test_ffi_version.py test_statuses.py test_gaussian_mask.py)

binding_tests() {
    # the bindings' own tests against the CUDA build, on a machine where CUDA may be
    # unusable: the library and era_jax's CUDA handlers must stay out of the way
    jax_module "$1"
    ERA_TORCH_LIBRARY=$BUILD/cuda/lib/libera.so "$PYTHON" -m pytest -q -p no:cacheprovider \
        "${TORCH_TESTS[@]/#/bindings/torch/tests/}"
    ERA_JAX_LIBRARY=$BUILD/cuda/jax/liberajax.so PYTHONPATH=$root/bindings/jax/src${PYTHONPATH:+:$PYTHONPATH} \
        "$PYTHON" -m pytest -q -p no:cacheprovider "${JAX_TESTS[@]/#/bindings/jax/tests/}"
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

# the CUDA version of an nvcc as the driver reports versions (13.0 -> 13000)
toolkit_version() {
    "$1" --version | sed -n 's/.*release \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | head -n 1 |
        { read -r major minor && echo $((major * 1000 + minor * 10)); }
}

# assemble DIR NVCC TESTS: the files scripts/gpu-check.sh uses (scripts/gpu_preflight.py's
# ARTIFACT_FILES) into DIR, from build/cuda/lib, build/cuda/jax and the Rust CUDA tests' binary
assemble() {
    local out=$1 nvcc=$2 tests=$3
    rm -rf "$out"
    mkdir -p "$out/lib"
    cp -L "$BUILD/cuda/lib/libera.so" "$out/lib/libera.so"  # a file, not a link (the links stay here)
    cp "$tests" "$out/cuda-tests"
    cp "$BUILD/cuda/jax/liberajax.so" "$out/liberajax.so"
    {
        echo "# what these artifacts were built with (read by scripts/gpu_preflight.py)"
        echo "ERA_VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)"
        echo "ERA_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo +changes)"
        echo "ERA_CUDA_TOOLKIT=$(toolkit_version "$nvcc")"
        echo "ERA_JAXLIB=$("$PYTHON" -c 'import jaxlib; print(jaxlib.__version__)' 2>/dev/null || echo unknown)"
        echo "ERA_BUILD_PYTHON=$("$PYTHON" -c 'import platform; print(platform.python_version())')"
    } >"$out/versions.env"
    "$PYTHON" - "$out" <<'PY'
import os, sys
sys.path.insert(0, "scripts")
from gpu_preflight import ARTIFACT_FILES
missing = [f for f in ARTIFACT_FILES if not os.path.exists(os.path.join(sys.argv[1], f))]
if missing:
    sys.exit(f"cuda.sh: FAIL: {sys.argv[1]} lacks {', '.join(missing)}")
PY
}

# the Rust CUDA tests' binary of a cargo profile (release: --release)
cuda_tests_binary() {
    ERA_NVCC=$1 CARGO_TARGET_DIR=$target_dir "$CARGO" test "${@:2}" --features cuda --test cuda --no-run --message-format=json 2>/dev/null |
        "$PYTHON" -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m.get("target", {}).get("name") == "cuda"][-1])'
}

rehearse() {
    # the artifacts' layout from the debug build of the Rust CUDA tests (no release build),
    # then every step of the GPU check on the CPU
    local out=$BUILD/cuda/gpu-check-rehearse
    assemble "$out" "$1" "$(cuda_tests_binary "$1")"
    PYTHON=$PYTHON ERA_GPU_ARTIFACTS=$out bash scripts/gpu-check.sh --rehearse
    new_user
}

new_user() {
    # what a new user is told to run, as written, from a clean clone of the committed tree:
    # `scripts/cuda.sh toolchain` with no venv and no PYTHON (pip's cache makes it quick
    # after the first time); and every scripts/ file that build.rs, docs/cuda.md and the GPU
    # check's scripts name exists
    local tmp nvcc version f
    tmp=$(mktemp -d)
    git clone --quiet "$root" "$tmp/era"
    nvcc=$(cd "$tmp/era" && env -u PYTHON -u BUILD -u ERA_NVCC bash scripts/cuda.sh toolchain)
    version=$(toolkit_version "$nvcc")
    rm -rf "$tmp"
    echo "cuda.sh: a clean clone's scripts/cuda.sh toolchain works (its nvcc reports CUDA $version)"
    for f in $(grep -ohE 'scripts/[A-Za-z0-9_.-]+\.(sh|py)' build.rs docs/cuda.md scripts/cuda.sh scripts/gpu-check.sh \
        scripts/gpu_check.py scripts/gpu_preflight.py Makefile | sort -u); do
        if [ ! -f "$f" ]; then
            echo "cuda.sh: FAIL: $f is named but does not exist" >&2
            exit 1
        fi
    done
    echo "cuda.sh: every scripts/ file named by build.rs, docs/cuda.md and the GPU check exists"
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
        rehearse "$nvcc"
        gpu_tests
        ;;
    rehearse)
        build
        nvcc=$(nvcc_path)
        jax_module "$nvcc"
        rehearse "$nvcc"
        ;;
    artifacts)
        build
        nvcc=$(nvcc_path)
        jax_module "$nvcc"
        out=$BUILD/cuda/gpu-check
        assemble "$out" "$nvcc" "$(cuda_tests_binary "$nvcc" --release)"
        # the SAC benchmark uses the GPU machine's own optax (the preflight checks that it imports)
        bytes=$(du -sb "$out" | cut -f1)
        echo "cuda.sh: artifacts in $out: $((bytes / 1024 / 1024)) MiB ($bytes bytes) in all:"
        (cd "$out" && du -sh -- * | sed 's/^/cuda.sh:   /')
        if [ "$bytes" -gt $((64 * 1024 * 1024)) ]; then
            echo "cuda.sh: FAIL: more than the 64 MiB that travel with the working tree" >&2
            exit 1
        fi
        ;;
    *)
        sed -n '2,27p' "$0"
        exit 2
        ;;
esac
