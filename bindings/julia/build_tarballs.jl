# BinaryBuilder recipe for ERA_jll (Yggdrasil layout: E/ERA/build_tarballs.jl): the era
# C library `libera` (a Rust cdylib) and its headers. Build with
#
#     julia build_tarballs.jl --verbose --debug [platform triplets...]
#
# The package ERA finds the library of an installed ERA_jll as `ERA_jll.libera_path`.
using BinaryBuilder, Pkg

name = "ERA"
version = v"0.1.0"

# Pin a released commit for Yggdrasil; a local checkout works for trying the recipe.
sources = [
    DirectorySource(joinpath(@__DIR__, "..", ".."); target = "era"),
]

# The Rust toolchain of BinaryBuilder cross-compiles for the target; cargo puts the
# cdylib in target/<rust target>/release. era's build.rs sets the SONAME.
script = raw"""
cd ${WORKSPACE}/srcdir/era
cargo build --release --lib
install -Dvm 0755 "target/${rust_target}/release/"*era.${dlext} "${libdir}/libera.${dlext}"
install -Dvm 0644 include/era.h "${includedir}/era.h"
install -Dvm 0644 include/era/dlpack.h "${includedir}/era/dlpack.h"
install -Dvm 0644 include/era/LICENSE.dlpack "${includedir}/era/LICENSE.dlpack"
# era is MIT OR Apache-2.0 (Cargo.toml); Yggdrasil wants the licence texts of a release
for f in LICENSE* COPYING*; do if [ -f "$f" ]; then install_license "$f"; fi; done
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

build_tarballs(ARGS, name, version, sources, script, platforms, products, dependencies;
               compilers = [:c, :rust], julia_compat = "1.10", preferred_gcc_version = v"10")
