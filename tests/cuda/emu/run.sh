#!/usr/bin/env bash
# Builds era's CUDA kernels (src/kernels/cuda/*.cu) for the CPU emulation of the
# CUDA execution model (tests/cuda/emu/cuda_emu.hpp) with g++ and runs their
# tests against the CPU library (no GPU needed):
#
#   tests/cuda/emu/run.sh            # ERA_PREFIX: an installed era (default build/prefix)
#
# - every kernel file src/kernels/cuda/*.cu compiled on its own;
# - every test tests/cuda/emu/test_*.cpp (test_gaussian: gaussian.cu,
#   test_softmax: softmax.cu, test_token: token_*.cu), each linked with all
#   kernel objects (which also checks that they link together) and run;
# - a compile of all .cu files as one translation unit, as build.rs builds them.
# Exits non-zero if a build or a test fails. Objects and binaries go to
# ERA_EMU_BUILD (default build/cuda-emu). ERA_EMU_JOBS compiler processes run at
# a time (default 2), under nice.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
prefix=${ERA_PREFIX:-build/prefix}
prefix=$(cd "$prefix" && pwd)
out=${ERA_EMU_BUILD:-build/cuda-emu}
mkdir -p "$out"
cxx=${CXX:-g++}
jobs_max=${ERA_EMU_JOBS:-2}
flags=(-std=c++20 -O1 -Wall -Wextra -Wno-comment -Wno-unknown-pragmas -pthread)
emu=(-include tests/cuda/emu/cuda_emu.hpp -I src/kernels/cuda)
inc=(-I tests/cuda/emu -I src/kernels/cuda -I "$prefix/include")
link=(-L "$prefix/lib" -lera -Wl,-rpath,"$prefix/lib")

failed=0
status() { echo "tests/cuda/emu: $*"; }

kernels=(src/kernels/cuda/*.cu)
tests=(tests/cuda/emu/test_*.cpp)
name() { basename "${1%.*}"; }

# no stale objects or binaries: a failed build leaves its target missing
rm -f "$out"/*.o "$out"/test_*

# compile FILE.cu as C++ against the emulator into OBJ
kernel() { nice "$cxx" "${flags[@]}" "${emu[@]}" -x c++ -c "$1" -o "$2"; }
# compile a test source into OBJ
testobj() { nice "$cxx" "${flags[@]}" "${inc[@]}" -c "$1" -o "$2"; }
# all kernels as one translation unit (build.rs): no clashing definitions
unity="$out/era_kernels_unity.cu"
: >"$unity"
for f in "${kernels[@]}"; do echo "#include \"$root/$f\"" >>"$unity"; done
unity_check() {
    if ! nice "$cxx" "${flags[@]}" "${emu[@]}" -x c++ -fsyntax-only "$unity"; then
        status "FAILED: the .cu files do not compile as one translation unit"
        return 1
    fi
}

# every compile in the background, jobs_max at a time; a failed one leaves no
# object (checked below), the unity check records its failure in a file
spawn() {
    while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n || true; done
    "$@" &
}
rm -f "$out/unity.failed"
for t in "${tests[@]}"; do spawn testobj "$t" "$out/$(name "$t").o"; done
for k in "${kernels[@]}"; do spawn kernel "$k" "$out/$(name "$k").o"; done
unity_bg() { unity_check || touch "$out/unity.failed"; }
spawn unity_bg
wait
if [[ -f "$out/unity.failed" ]]; then failed=1; fi

kobjs=()
for k in "${kernels[@]}"; do
    o="$out/$(name "$k").o"
    if [[ -f $o ]]; then kobjs+=("$o"); else status "$k: FAILED to build"; failed=1; fi
done

run() {
    local t0 t1
    t0=$(date +%s)
    if "$out/$1"; then
        t1=$(date +%s)
        status "$1 passed ($((t1 - t0)) s)"
    else
        t1=$(date +%s)
        status "$1 FAILED ($((t1 - t0)) s)"
        failed=1
    fi
}
for t in "${tests[@]}"; do
    n=$(name "$t")
    if [[ -f "$out/$n.o" && ${#kobjs[@]} == "${#kernels[@]}" ]] &&
        nice "$cxx" -pthread "$out/$n.o" "${kobjs[@]}" "${link[@]}" -o "$out/$n"; then
        run "$n"
    else
        status "$n: FAILED to build"
        failed=1
    fi
done
if [[ $failed != 0 ]]; then
    status FAILED
    exit 1
fi
status "all passed"
