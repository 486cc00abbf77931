# Builds libera from the era checkout this package lives in and records it as ERA's
# `libera` preference (LocalPreferences.toml of the active project).
#
#     julia --project=bindings/julia/ERA bindings/julia/ERA/deps/build_local.jl          # cargo
#     julia --project=bindings/julia/ERA bindings/julia/ERA/deps/build_local.jl cmake    # CMake
#
# With `cargo` (the default) it runs `cargo build --release` at the repository root; with
# `cmake` the CMake front end (`cmake -S . -B build/julia`, then `cmake --build`).
# Environment: CARGO, CMAKE (the programs), ERA_CARGO_FLAGS (extra cargo arguments).

using Preferences: set_preferences!
using TOML: TOML
using Libdl: Libdl

const PACKAGE = dirname(@__DIR__)
const ROOT = normpath(joinpath(PACKAGE, "..", "..", ".."))
const LIBNAME = "libera." * Libdl.dlext

isfile(joinpath(ROOT, "Cargo.toml")) || error("build_local.jl: $ROOT is not an era checkout (no Cargo.toml)")

function build_cargo()
    cargo = get(ENV, "CARGO", "cargo")
    flags = split(get(ENV, "ERA_CARGO_FLAGS", ""))
    run(setenv(`$cargo build --release $flags`; dir = ROOT))
    return joinpath(ROOT, "target", "release", LIBNAME)
end

function build_cmake()
    cmake = get(ENV, "CMAKE", "cmake")
    build = joinpath(ROOT, "build", "julia")
    run(`$cmake -S $ROOT -B $build -DCMAKE_BUILD_TYPE=Release`)
    run(`$cmake --build $build --parallel`)
    for (dir, _, files) in walkdir(build), f in files
        f == LIBNAME && return joinpath(dir, f)
    end
    # the CMake front end drives cargo, whose output stays in target/
    return joinpath(ROOT, "target", "release", LIBNAME)
end

how = isempty(ARGS) ? "cargo" : ARGS[1]
how in ("cargo", "cmake") || error("build_local.jl: the argument is `cargo` or `cmake`, not $how")
lib = how == "cargo" ? build_cargo() : build_cmake()
isfile(lib) || error("build_local.jl: the build did not produce $lib")

uuid = Base.UUID(TOML.parsefile(joinpath(PACKAGE, "Project.toml"))["uuid"])
set_preferences!(uuid, "libera" => lib; force = true)
println("ERA: libera = ", lib, " (written to LocalPreferences.toml; restart Julia if ERA is loaded)")
