#!/usr/bin/env bash
# The packaging test: installs the CMake build in BUILD into a fresh temporary
# prefix, moves the prefix (the package must be relocatable), checks the
# installed tree, and builds and runs every consumer against it: the
# find_package project (era::era, era::static, era.hpp, pkg-config), the C tests
# (tests/c, CTest), the C++ tests (tests/cpp/run.sh: g++ and clang++, C++17 and C++20),
# examples/c and examples/cpp, and the READMEs' C and C++ blocks (scripts/check_readme_code.py).
#
#   scripts/test-install.sh BUILD_DIR VERSION [CMAKE_FLAGS...]
#
# On failure the scratch directory is kept (its path is printed first).
set -euo pipefail
cd "$(dirname "$0")/.."
build=$1
version=$2
shift 2
flags=("$@")
jobs=$(nproc 2>/dev/null || echo 2)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/era-test-install.XXXXXX")
echo "test-install: scratch directory $scratch"

cmake --install "$build" --prefix "$scratch/staged"
mv "$scratch/staged" "$scratch/prefix"
prefix="$scratch/prefix"
sh cmake/check-install.sh "$prefix" "$version"

# configure, build and test (CTest) a project against the prefix
ctest_project() { # SOURCE BUILD
    cmake -S "$1" -B "$2" "${flags[@]}" -DCMAKE_PREFIX_PATH="$prefix"
    cmake --build "$2" --parallel "$jobs"
    (cd "$2" && ctest --output-on-failure)
}
ctest_project tests/cmake-project "$scratch/consumer"
sh cmake/check-install.sh "$prefix" "$version" "$scratch/consumer"
ctest_project tests/c "$scratch/c-tests"
bash tests/cpp/run.sh "$prefix" "${flags[@]}"
for lang in c cpp; do
    cmake -S "examples/$lang" -B "$scratch/examples-$lang" "${flags[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
    cmake --build "$scratch/examples-$lang" --parallel "$jobs"
    "$scratch/examples-$lang/example"
done
python3 scripts/check_readme_code.py "$prefix" "$scratch/readme-code" README.md bindings/*/README.md \
    bindings/julia/ERA/README.md
rm -rf "$scratch"
echo "test-install: all passed"
