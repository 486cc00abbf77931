# Finding and loading libera, errors, and the run-time layout check of EraConfig.

const _LIBPATH = Ref{String}("")
const _LIBSOURCE = Ref{String}("")

"""
    ERAError(status, name, message, context)

An error reported by the era library: `status` is the `EraStatus` number, `name` its name
(`"ERA_STATUS_INVALID_CONFIG"`), `message` the library's text (`era_last_error`) and
`context` the C function that failed.
"""
struct ERAError <: Exception
    status::EraStatus
    name::String
    message::String
    context::String
end

function Base.showerror(io::IO, e::ERAError)
    print(io, "ERAError: ", e.message, " (", e.name)
    isempty(e.context) || print(io, ", in ", e.context)
    print(io, ")")
    if e.status == ERA_STATUS_UNSUPPORTED_DEVICE
        print(io, "\nThis libera computes on CPU memory only: move the arrays to the CPU ",
              "with `Array(x)`.")
    elseif e.status == ERA_STATUS_DEVICE_FAULT
        print(io, "\nThe GPU's CUDA context hit a sticky error (an illegal address, a trapped ",
              "kernel): every later CUDA call in this process fails. Restart Julia.")
    elseif e.status == ERA_STATUS_INVALID_STREAM
        print(io, "\nThe stream belongs to another GPU than the arrays: pass a stream of the ",
              "arrays' device.")
    end
end

"""
    ERA.library_path() -> String

The path of the era library in use, or `""` if none was found.
"""
library_path() = _LIBPATH[]

# The library of every generated @ccall (evaluated when a call runs).
function liberapath()
    path = _LIBPATH[]
    isempty(path) && error("""ERA: the era library (libera) was not found. Either
      - build era from a checkout and point ERA at it: `julia deps/build_local.jl` in the
        package folder (it writes the preference into your active environment, or the
        default one), or `ERA.set_library!("/path/to/libera.so")` (a preference), or
      - set the environment variable ERA_LIBRARY to the library's path, or
      - install libera where the system linker finds it (`make install`).
    (No ERA_jll is registered yet; one in the active environment would be used.)
    Then restart Julia.""")
    return path
end

"""
    ERA.set_library!(path)

Stores `path` (a built `libera.so`/`.dylib`/`.dll`) as the `libera` preference of ERA
(`LocalPreferences.toml` of the active project). It takes effect now if no library was
loaded yet, otherwise in the next Julia session. `ERA.set_library!(nothing)` removes the
preference.
"""
function set_library!(path::Union{AbstractString,Nothing})
    if path === nothing
        Preferences.@delete_preferences!("libera")
        return nothing
    end
    isfile(path) || throw(ArgumentError("ERA.set_library!: no file at $path"))
    full = abspath(path)
    Preferences.@set_preferences!("libera" => full)
    if isempty(_LIBSOURCE[])
        _load_library!(full, "preference")
    elseif _LIBPATH[] != full
        # a library was opened in this session: the ccalls stay bound to it
        loaded = isempty(_LIBPATH[]) ? "none usable" : _LIBPATH[]
        @info "ERA: the preference now names $full; restart Julia to use it (loaded: $loaded)"
    end
    return full
end

# The library's candidates, in order: the preference, ERA_LIBRARY, ERA_jll, the system.
function _find_library()
    pref = Preferences.@load_preference("libera", nothing)
    pref isa AbstractString && !isempty(pref) && return (String(pref), "preference")
    env = get(ENV, "ERA_LIBRARY", "")
    isempty(env) || return (env, "ERA_LIBRARY")
    jll = _jll_library()
    jll === nothing || return (jll, "ERA_jll")
    sys = Libdl.find_library(["libera"])
    isempty(sys) || return (sys, "system")
    return nothing
end

# ERA_jll is not a dependency (it may not exist in a registry yet): use it when the
# active environment has it, and ignore its absence.
function _jll_library()
    id = Base.identify_package("ERA_jll")
    id === nothing && return nothing
    jll = try
        Base.require(id)
    catch err
        @warn "ERA: ERA_jll is in the environment but failed to load" exception = err
        return nothing
    end
    isdefined(jll, :libera_path) || return nothing
    path = getglobal(jll, :libera_path)
    return path isa AbstractString && !isempty(path) ? String(path) : nothing
end

# Opens `path` and checks it. Each generated @ccall site keeps the function pointer of
# its first call, so the first library opened here stays the one in use for the session
# (`_LIBSOURCE` records that one was opened; `_LIBPATH` is cleared if it failed a check).
function _load_library!(path::AbstractString, source::AbstractString)
    Libdl.dlopen(path; throw_error = true)
    _LIBPATH[] = path
    _LIBSOURCE[] = source
    try
        abi = era_abi_version()
        abi == ERA_ABI_VERSION ||
            error("ERA: $path has era ABI version $abi, this package needs $ERA_ABI_VERSION")
        check_layout()
    catch
        _LIBPATH[] = ""
        rethrow()
    end
    return path
end

# Never throws: a library that cannot be used is reported, and `using ERA` still works
# (so that `ERA.set_library!` can name another one for the next session).
function _init_library()
    found = _find_library()
    found === nothing && return nothing
    path, source = found
    try
        _load_library!(path, source)
    catch err
        msg = "ERA: cannot use the era library $path (from $source); name another with `ERA.set_library!(path)` and restart Julia"
        @warn msg exception = err
    end
    return nothing
end

"""
    ERA.version() -> VersionNumber

The version of the loaded era library.
"""
version() = VersionNumber(unsafe_string(era_version()))

"""
    ERA.abi_version() -> Int

The C ABI version of the loaded era library (`ERA_ABI_VERSION` of its header).
"""
abi_version() = Int(era_abi_version())

"""
    ERA.last_error() -> String

The message of the last failed era call on this thread.
"""
function last_error()
    n = era_last_error(C_NULL, 0)
    buf = Vector{UInt8}(undef, n + 1)
    GC.@preserve buf begin
        era_last_error(pointer(buf), length(buf))
        return unsafe_string(pointer(buf))
    end
end

status_name(status::Integer) = unsafe_string(era_status_str(status))

# Throws ERAError unless `status` is ERA_STATUS_OK. No task switch happens between the
# failed call and this one, so the thread-local message is the call's own.
function check(status::EraStatus, context::AbstractString = "")
    status == ERA_STATUS_OK && return nothing
    throw(ERAError(status, status_name(status), last_error(), String(context)))
end

"""
    ERA.check_layout()

Compares the Julia declaration of `EraConfig` with the loaded library's: `era_config_size`
and the offset and size of every field (`era_config_field`). Runs when the library is
loaded; throws an error naming the first difference.
"""
function check_layout()
    n = era_config_size()
    n == sizeof(EraConfig) ||
        error("ERA: EraConfig has $n bytes in the library but $(sizeof(EraConfig)) in ERA.jl; regenerate the declarations")
    offset = Ref{Csize_t}(0)
    fsize = Ref{Csize_t}(0)
    for (i, name) in enumerate(fieldnames(EraConfig))
        check(era_config_field(String(name), offset, fsize), "era_config_field")
        ours = (fieldoffset(EraConfig, i), sizeof(fieldtype(EraConfig, i)))
        (offset[], fsize[]) == ours || error("ERA: EraConfig.$name is at offset $(offset[]) ($(fsize[]) bytes) in the " *
                                            "library but at $(ours[1]) ($(ours[2]) bytes) in ERA.jl")
    end
    return nothing
end
