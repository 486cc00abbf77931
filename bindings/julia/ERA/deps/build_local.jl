# Builds libera from the era checkout this package lives in and records it as ERA's
# `libera` preference (LocalPreferences.toml of the active project).
#
#     julia --project=bindings/julia/ERA bindings/julia/ERA/deps/build_local.jl          # cargo
#     julia --project=bindings/julia/ERA bindings/julia/ERA/deps/build_local.jl cmake    # CMake
#
# With `cargo` (the default) it runs `cargo build --release` at the repository root; with
# `cmake` the CMake front end (`cmake -S . -B build/julia`, then `cmake --build`).
# Environment: CARGO, CMAKE (the programs), ERA_CARGO_FLAGS (extra cargo arguments).
#
# Only standard libraries are used, so the script runs before the package's dependencies
# are installed. The active project must be ERA itself or an environment that has ERA.

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

# The preference as Preferences.jl stores it: [ERA] libera = "..." in LocalPreferences.toml
# next to the active project.
project = Base.active_project()
project === nothing && error("build_local.jl: no active project; run it with `--project`")
uuid = Base.UUID(TOML.parsefile(joinpath(PACKAGE, "Project.toml"))["uuid"])
if !isfile(project) || Base.get_uuid_name(project, uuid) === nothing
    @warn "build_local.jl: the active project $project does not list ERA, so ERA will not see the preference; " *
          "run this script with `--project` naming ERA's folder or an environment that has ERA"
end
prefs_file = joinpath(dirname(project), "LocalPreferences.toml")
prefs = isfile(prefs_file) ? TOML.parsefile(prefs_file) : Dict{String,Any}()
get!(Dict{String,Any}, prefs, "ERA")["libera"] = lib
open(io -> TOML.print(io, prefs; sorted = true), prefs_file, "w")
println("ERA: libera = ", lib, " (written to ", prefs_file, "; restart Julia if ERA is loaded)")
