#!/bin/sh
# Checks an installed era tree (used by `make test-cmake`).
#
#   sh cmake/check-install.sh PREFIX VERSION [CONSUMER_BUILD_DIR]
#
# PREFIX: the install prefix; VERSION: the crate version (X.Y.Z); CONSUMER_BUILD_DIR: a built
# tests/cmake-project, whose executables are checked too (libera linked shared with an RPATH,
# or not at all for the static one).
set -eu

prefix=$1
version=$2
consumer=${3:-}
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
if [ "$major" = 0 ]; then soversion="$major.$minor"; else soversion="$major"; fi
lib="$prefix/lib"
status=0

fail() { echo "check-install: FAIL: $*" >&2; status=1; }
ok() { echo "check-install: ok: $*"; }

# Files.
for f in include/era.h include/era/dlpack.h include/era.hpp \
         include/era/error.hpp include/era/element.hpp include/era/view.hpp include/era/config.hpp \
         include/era/head.hpp include/era/token.hpp include/era/entropy.hpp \
         "lib/libera.so.$version" lib/libera.a \
         lib/cmake/era/eraConfig.cmake lib/cmake/era/eraConfigVersion.cmake \
         lib/pkgconfig/era.pc; do
    if [ -f "$prefix/$f" ] && [ ! -L "$prefix/$f" ]; then ok "$f"; else fail "missing file $f"; fi
done

# Symlinks: libera.so -> libera.so.X.Y -> libera.so.X.Y.Z (relative, like cargo-c and CMake).
check_link() {
    if [ -L "$lib/$1" ] && [ "$(readlink "$lib/$1")" = "$2" ]; then
        ok "lib/$1 -> $2"
    else
        fail "lib/$1 should be a symlink to $2"
    fi
}
check_link "libera.so.$soversion" "libera.so.$version"
check_link libera.so "libera.so.$soversion"

# SONAME.
if readelf -d "$lib/libera.so.$version" | grep -q "(SONAME).*\[libera\.so\.$soversion\]"; then
    ok "SONAME libera.so.$soversion"
else
    fail "SONAME of libera.so.$version is not libera.so.$soversion:"
    readelf -d "$lib/libera.so.$version" | grep SONAME >&2 || echo "  (no SONAME)" >&2
fi

# The exported C API.
for sym in era_abi_version era_version era_head_new era_head_forward era_token_forward; do
    if nm -D --defined-only "$lib/libera.so.$version" | grep -q " T $sym\$"; then :; else
        fail "libera.so does not export $sym"
    fi
done

# The config files are relocatable: no absolute path of the build or install tree.
for f in lib/cmake/era/eraConfig.cmake lib/pkgconfig/era.pc; do
    if grep -q -e "$(dirname "$prefix")" -e "$(pwd)" "$prefix/$f"; then fail "$f holds an absolute path"; else ok "$f is relocatable"; fi
done

# pkg-config.
if command -v pkg-config >/dev/null 2>&1; then
    PKG_CONFIG_PATH="$lib/pkgconfig"
    export PKG_CONFIG_PATH
    modversion=$(pkg-config --modversion era) || modversion=
    [ "$modversion" = "$version" ] && ok "pkg-config --modversion era = $version" ||
        fail "pkg-config --modversion era = '$modversion', expected $version"
    flags=$(pkg-config --cflags --libs era)
    echo "check-install: pkg-config --cflags --libs era: $flags"
    echo "check-install: pkg-config --libs --static era: $(pkg-config --libs --static era)"
    # Compile and run a program with exactly these flags.
    tmp=$(mktemp -d)
    cat >"$tmp/t.c" <<'C'
#include <era.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    printf("pkg-config program: era %s\n", era_version());
    return era_abi_version() == ERA_ABI_VERSION && strcmp(era_version(), T_EXPECTED_VERSION) == 0 ? 0 : 1;
}
C
    # shellcheck disable=SC2086
    if ${CC:-cc} -DT_EXPECTED_VERSION="\"$version\"" -o "$tmp/t" "$tmp/t.c" $flags &&
       LD_LIBRARY_PATH="$lib" "$tmp/t"; then
        ok "a program built with \`pkg-config --cflags --libs era\` runs"
    else
        fail "a program built with \`pkg-config --cflags --libs era\` failed"
    fi
    rm -rf "$tmp"
else
    echo "check-install: pkg-config not found, skipping its checks"
fi

# Consumer executables.
if [ -n "$consumer" ]; then
    for exe in consumer consumer_cpp consumer_pkgconfig; do
        [ -f "$consumer/$exe" ] || continue
        dyn=$(readelf -d "$consumer/$exe")
        if echo "$dyn" | grep -q "(NEEDED).*\[libera\.so\.$soversion\]"; then ok "$exe needs libera.so.$soversion"; else
            fail "$exe does not link libera.so.$soversion"; fi
        if echo "$dyn" | grep -E -q "\((RPATH|RUNPATH)\).*$lib"; then ok "$exe has $lib in its RPATH"; else
            fail "$exe has no RPATH to $lib"; fi
        if env -u LD_LIBRARY_PATH "$consumer/$exe" >/dev/null; then ok "$exe runs without LD_LIBRARY_PATH"; else
            fail "$exe does not run without LD_LIBRARY_PATH"; fi
    done
    if readelf -d "$consumer/consumer_static" | grep -q "(NEEDED).*libera"; then
        fail "consumer_static depends on the shared libera"
    else
        ok "consumer_static does not need libera.so"
    fi
fi

[ "$status" = 0 ] && echo "check-install: all checks passed" || echo "check-install: some checks FAILED" >&2
exit "$status"
