# Builds libera from the era checkout this package lives in and records it as ERA's
# `libera` preference in the LocalPreferences.toml of the environment you use ERA from:
# the active project when it lists ERA, else (ERA's own folder, or no --project) the
# default environment `@v#.#`, where `] dev path/to/ERA` puts it. A preference is read
# only from an environment whose Project.toml lists ERA, so the script says where it wrote
# and warns when that environment does not list ERA.
#
#     julia --project=path/to/your/env path/to/era/bindings/julia/ERA/deps/build_local.jl          # cargo
#     julia --project=path/to/your/env path/to/era/bindings/julia/ERA/deps/build_local.jl cmake    # CMake
#     julia path/to/era/bindings/julia/ERA/deps/build_local.jl                                     # default env
#
# `--env=PATH` (a project folder or Project.toml) names the environment explicitly;
# `--env=ERA` writes into ERA's own folder (seen by `] test ERA` run from that folder only).
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
# cargo names the cdylib after the crate: libera.so / libera.dylib, but era.dll on
# Windows (no "lib" prefix there); CMake's install follows cargo's name.
const LIBNAME = Sys.iswindows() ? "era.dll" : "libera." * Libdl.dlext

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

envarg = filter(a -> startswith(a, "--env="), ARGS)
args = filter(a -> !startswith(a, "--env="), ARGS)
how = isempty(args) ? "cargo" : args[1]
how in ("cargo", "cmake") || error("build_local.jl: the argument is `cargo` or `cmake`, not $how")
lib = how == "cargo" ? build_cargo() : build_cmake()
isfile(lib) || error("build_local.jl: the build did not produce $lib")

_real(p) = ispath(p) ? realpath(p) : abspath(p)

# The environment whose LocalPreferences.toml gets the preference.
function target_project()
    own = joinpath(PACKAGE, "Project.toml")
    if !isempty(envarg)
        e = split(envarg[end], "="; limit = 2)[2]
        e == "ERA" && return own
        return endswith(e, ".toml") ? abspath(e) : joinpath(abspath(e), "Project.toml")
    end
    active = Base.active_project()
    if active !== nothing && isfile(active) && _real(active) != _real(own)
        return active
    end
    # ERA's own folder or no project: the default environment, as `] dev` outside a project uses it
    default = Base.load_path_expand("@v#.#")
    return default === nothing ? own : default
end

# The preference as Preferences.jl stores it: [ERA] libera = "..." in LocalPreferences.toml
# next to the environment's Project.toml.
project = target_project()
uuid = Base.UUID(TOML.parsefile(joinpath(PACKAGE, "Project.toml"))["uuid"])
own_project = _real(project) == _real(joinpath(PACKAGE, "Project.toml"))
if !own_project && (!isfile(project) || Base.get_uuid_name(project, uuid) === nothing)
    @warn "build_local.jl: the environment $project does not list ERA, so ERA will not read the preference there; " *
          "`] dev path/to/era/bindings/julia/ERA` in it first, or pass --env=PATH naming the environment that has ERA"
end
mkpath(dirname(project))
prefs_file = joinpath(dirname(project), "LocalPreferences.toml")
prefs = isfile(prefs_file) ? TOML.parsefile(prefs_file) : Dict{String,Any}()
get!(Dict{String,Any}, prefs, "ERA")["libera"] = lib
open(io -> TOML.print(io, prefs; sorted = true), prefs_file, "w")
println("ERA: libera = ", lib)
println("ERA: written to ", prefs_file, own_project ? " (ERA's own folder: seen by `] test` there, not by your projects)" : "",
        "; restart Julia if ERA is loaded")
