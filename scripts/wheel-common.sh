# Shared by the wheel scripts (bindings/jax/wheel.sh, bindings/torch/wheel.sh); sourced, not run.
#
#   zig_linker PYTHON DIR GLIBC   installs ziglang and cargo-zigbuild (PyPI wheels) into PYTHON's
#                                 environment and writes DIR/cc-glibc-GLIBC, a linker for cargo
#                                 (CARGO_TARGET_<TRIPLE>_LINKER) that links against zig's stubs of
#                                 glibc GLIBC instead of the build machine's glibc, so that
#                                 the library needs no symbol version above GLIBC (manylinux_GLIBC);
#                                 beside it DIR/c++-glibc-GLIBC, the same as a C++ compiler (clang
#                                 with libc++ linked statically, for CMake's CMAKE_CXX_COMPILER);
#                                 prints the path of the first
#   tool_path DIR                 DIR: links to every program on PATH except the Rust and CMake tools

ZIGLANG_VERSION="${ZIGLANG_VERSION:-0.17.1}"
CARGO_ZIGBUILD_VERSION="${CARGO_ZIGBUILD_VERSION:-0.24.1}"

zig_linker() {
    local python="$1" dir="$2" glibc="$3" bin arch
    bin="$(cd "$(dirname "$python")" && pwd)"
    arch="$(uname -m)"
    "$python" -m pip install --quiet "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" >&2
    mkdir -p "$dir"
    # cargo-zigbuild's `zig cc` front end turns rustc's linker arguments into zig's (it finds zig
    # as `python -m ziglang` with the environment's python first on PATH)
    local lang
    for lang in cc c++; do
        cat >"$dir/$lang-glibc-$glibc" <<EOF
#!/bin/sh
PATH="$bin:\$PATH" exec "$bin/cargo-zigbuild" zig $lang -- -target $arch-linux-gnu.$glibc "\$@"
EOF
        chmod +x "$dir/$lang-glibc-$glibc"
    done
    echo "$dir/cc-glibc-$glibc"
}

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

# check_no_build_tools PATH: fails if cargo, rustc or cmake can be found on PATH.
check_no_build_tools() {
    env PATH="$1" bash -c '
        for tool in cargo rustc cmake; do
            if command -v "$tool" >/dev/null; then echo "$tool is on PATH: $(command -v "$tool")" >&2; exit 1; fi
        done
        echo "PATH holds no cargo, rustc or cmake"'
}
