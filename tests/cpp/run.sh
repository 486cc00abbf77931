#!/usr/bin/env bash
# Builds and runs the C++ tests against an installed era with g++ and clang++, as C++17
# and C++20 (four CMake builds in a scratch directory, removed on success).
#
#   tests/cpp/run.sh PREFIX [CMAKE_FLAGS...]
#
# A compiler that is not installed is skipped with a message; CXX_COMPILERS="g++" picks
# the compilers, CXX_STANDARDS="17" the standards.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(cd "$1" && pwd)
shift
flags=("$@")
jobs=$(nproc 2>/dev/null || echo 2)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/era-cpp-tests.XXXXXX")
echo "tests/cpp: scratch directory $scratch"

ran=0
for cxx in ${CXX_COMPILERS:-g++ clang++}; do
    if ! command -v "$cxx" >/dev/null 2>&1; then
        echo "tests/cpp: SKIPPED $cxx: not installed (apt-get install clang, or set CXX_COMPILERS)"
        continue
    fi
    for std in ${CXX_STANDARDS:-17 20}; do
        build="$scratch/$cxx-c++$std"
        echo "tests/cpp: $cxx, C++$std"
        cmake -S "$here" -B "$build" "${flags[@]}" -DCMAKE_CXX_COMPILER="$cxx" -DERA_CPP_STANDARD="$std" \
            -DCMAKE_BUILD_TYPE=Debug -DCMAKE_PREFIX_PATH="$prefix" >"$build.configure.log" ||
            { cat "$build.configure.log"; exit 1; }
        cmake --build "$build" --parallel "$jobs" >"$build.build.log" || { cat "$build.build.log"; exit 1; }
        if ! (cd "$build" && ctest --output-on-failure --parallel "$jobs" -V) >"$build.ctest.log" 2>&1; then
            cat "$build.ctest.log"
            echo "tests/cpp: FAILED with $cxx, C++$std (logs in $scratch)" >&2
            exit 1
        fi
        # one line per test: its name and its "N passed, M failed"
        awk 'match($0, /Start +[0-9]+: /) { n = substr($0, RSTART + 6, RLENGTH - 8) + 0; name[n] = substr($0, RSTART + RLENGTH) }
             /^[0-9]+: [0-9]+ passed, [0-9]+ failed$/ { split($0, f, ": "); printf "  %-20s %s\n", name[f[1] + 0], f[2] }' \
            "$build.ctest.log"
        ran=$((ran + 1))
    done
done
if [ "$ran" = 0 ]; then
    echo "tests/cpp: no compiler found" >&2
    exit 1
fi
rm -rf "$scratch"
echo "tests/cpp: all passed ($ran builds)"
