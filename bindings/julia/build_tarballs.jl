# BinaryBuilder recipe for ERA_jll (Yggdrasil layout: E/ERA/build_tarballs.jl): the era
# C library `libera` (a Rust cdylib) and its headers. Build with
#
#     julia build_tarballs.jl --verbose --debug [platform triplets...]
#
# The package ERA finds the library of an installed ERA_jll as `ERA_jll.libera_path`.
using BinaryBuilder, Pkg

name = "ERA"
version = v"0.1.0"

# A git source, never the work tree (which holds target/, build/ and uncommitted files):
# a commit of a clone, by default this checkout's HEAD. For Yggdrasil, write the public
# repository's URL and a released commit's hash here in place of the two defaults.
const ERA_ROOT = rstrip(normpath(joinpath(@__DIR__, "..", "..")), '/')
const ERA_GIT_URL = get(ENV, "ERA_GIT_URL", "file://" * ERA_ROOT)
const ERA_GIT_COMMIT = get(ENV, "ERA_GIT_COMMIT", readchomp(`git -C $ERA_ROOT rev-parse HEAD`))
sources = [
    GitSource(ERA_GIT_URL, ERA_GIT_COMMIT),
]

# The Rust toolchain of BinaryBuilder cross-compiles for the target; cargo puts the
# cdylib in target/<rust target>/release. era's build.rs sets the SONAME.
script = raw"""
# the one source: the clone, named after the URL (era for era.git, the folder of a local checkout)
cd ${WORKSPACE}/srcdir/*/
cargo build --release --lib
install -Dvm 0755 "target/${rust_target}/release/"*era.${dlext} "${libdir}/libera.${dlext}"
install -Dvm 0644 include/era.h "${includedir}/era.h"
install -Dvm 0644 include/era/dlpack.h "${includedir}/era/dlpack.h"
install -Dvm 0644 include/era/LICENSE.dlpack "${includedir}/era/LICENSE.dlpack"
# era is MIT OR Apache-2.0 (Cargo.toml): both texts, at the repository's root
install_license LICENSE-MIT LICENSE-APACHE
"""

# Rust cdylibs: no 32-bit Windows, no musl cdylib support in older toolchains.
platforms = supported_platforms()
filter!(p -> !(Sys.iswindows(p) && arch(p) == "i686"), platforms)
filter!(p -> libc(p) != "musl", platforms)
filter!(p -> arch(p) != "riscv64", platforms)

products = [
    LibraryProduct("libera", :libera),
    FileProduct("include/era.h", :era_h),
]

dependencies = Dependency[]

# Cargo.toml's rust-version is 1.77; the toolchain is pinned to a BinaryBuilder Rust shard
# at least that recent (the default shard may be older).
build_tarballs(ARGS, name, version, sources, script, platforms, products, dependencies;
               compilers = [:c, :rust], julia_compat = "1.10", preferred_gcc_version = v"10",
               preferred_rust_version = v"1.87.0")
