# The three heads: construction from era_config_default, lifetime, forward/backward,
# the delta learner, JSON.

"""
    AbstractHead

Supertype of [`GaussianHead`](@ref), [`SoftmaxHead`](@ref) and [`TokenHead`](@ref): an
era head handle, freed by a finalizer (or `close`). A head is immutable during
forward/backward and may be shared by many tasks and threads; the delta calls are
synchronised by the library.
"""
abstract type AbstractHead end

# The only way to a head struct: a handle the library just returned, wrapped once with one
# finalizer. The marker keeps the raw-handle constructor out of positional reach, so that
# code which rebuilds structs from their fields (Functors, ConstructionBase, `T(fields...)`)
# cannot make a second owner of the same handle (a second finalizer would free it twice).
struct _Owned end
const _OWNED = _Owned()

"""
    GaussianHead(; dim, target_entropy, log_std_min, log_std_max, delta, delta_optimizer,
                   delta_lr, delta_beta1, delta_beta2, delta_eps, num_threads)

The Gaussian head (docs/math.md#gaussian-head): maps pre-activations `z` to the log-stds
of a diagonal Gaussian whose entropy is at least `target_entropy + delta`. `dim` and
`target_entropy` are required; every other keyword defaults to the library's value
(`era_config_default`). `delta_optimizer` is `:adam` (default), `:sgd` or `:fixed`.

`head(z)` is `forward(head, z)`; `z` is `(dim,)` or `(dim, batch...)`.
"""
mutable struct GaussianHead <: AbstractHead
    ptr::Ptr{EraHead}
    GaussianHead(::_Owned, ptr::Ptr{EraHead}) = finalizer(_free!, new(ptr))
end

"""
    SoftmaxHead(; num_classes, target_entropy, tau, num_threads)

The softmax head (docs/math.md#softmax-head): logits in, logits out; the softmax of the
output has entropy at least `target_entropy`. `num_classes` and `target_entropy` are
required; `tau` defaults to the library's value (4).

`head(z)` is `forward(head, z)`; `z` is `(num_classes,)` or `(num_classes, batch...)`.
"""
mutable struct SoftmaxHead <: AbstractHead
    ptr::Ptr{EraHead}
    SoftmaxHead(::_Owned, ptr::Ptr{EraHead}) = finalizer(_free!, new(ptr))
end

"""
    TokenHead(; k, omega_low, omega_high, top_fraction, temperature, advantage_scaling,
                vocab_topk, num_threads)

The token head (docs/math.md#token-head) for LLM policy updates; see
[`token_forward`](@ref) and [`token_backward`](@ref). Every keyword defaults to the
library's value.
"""
mutable struct TokenHead <: AbstractHead
    ptr::Ptr{EraHead}
    TokenHead(::_Owned, ptr::Ptr{EraHead}) = finalizer(_free!, new(ptr))
end

head_kind(::GaussianHead) = ERA_HEAD_KIND_GAUSSIAN
head_kind(::SoftmaxHead) = ERA_HEAD_KIND_SOFTMAX
head_kind(::TokenHead) = ERA_HEAD_KIND_TOKEN

function _free!(h::AbstractHead)
    if h.ptr != C_NULL
        era_head_free(h.ptr)
        h.ptr = C_NULL
    end
    return nothing
end

"""
    close(head)

Frees the head now (the finalizer would otherwise); the head cannot be used afterwards.
"""
Base.close(h::AbstractHead) = _free!(h)

function Base.unsafe_convert(::Type{Ptr{EraHead}}, h::AbstractHead)
    h.ptr == C_NULL && throw(ArgumentError("ERA: this $(nameof(typeof(h))) has been closed"))
    return h.ptr
end

# ------------------------------------------------------------------ configuration

"""
    ERA.default_config(kind) -> EraConfig

The library's defaults for head kind `kind` (`ERA_HEAD_KIND_*`), from `era_config_default`.
"""
function default_config(kind::Integer)
    cfg = Ref{EraConfig}()
    check(era_config_default(kind, cfg), "era_config_default")
    return cfg[]
end

const _INTERNAL_FIELDS = (:struct_size, :kind, :reserved0, :reserved1, :reserved2)
const _OPTIMIZERS = Dict(:fixed => ERA_DELTA_OPTIMIZER_FIXED, :sgd => ERA_DELTA_OPTIMIZER_SGD,
                         :adam => ERA_DELTA_OPTIMIZER_ADAM)

_field_value(::Type{T}, name::Symbol, v) where {T} = convert(T, v)
function _field_value(::Type{T}, name::Symbol, v::Symbol) where {T}
    name == :delta_optimizer && haskey(_OPTIMIZERS, v) && return T(_OPTIMIZERS[v])
    throw(ArgumentError("ERA: $name = :$v; delta_optimizer is one of :fixed, :sgd, :adam"))
end

"""
    ERA.config_with(cfg::EraConfig; fields...) -> EraConfig

`cfg` with the named fields replaced (values converted to the field types). The reserved
fields, `struct_size` and `kind` cannot be set.
"""
function config_with(cfg::EraConfig; kwargs...)
    for name in keys(kwargs)
        if !(name in fieldnames(EraConfig)) || name in _INTERNAL_FIELDS
            settable = [n for n in fieldnames(EraConfig) if !(n in _INTERNAL_FIELDS)]
            throw(ArgumentError("ERA: unknown configuration field `$name`; the fields are $(join(settable, ", "))"))
        end
    end
    values = map(fieldnames(EraConfig)) do name
        haskey(kwargs, name) ? _field_value(fieldtype(EraConfig, name), name, kwargs[name]) : getfield(cfg, name)
    end
    return EraConfig(values...)
end

function _wrap(ptr::Ptr{EraHead})
    kind = Ref{EraHeadKind}(0)
    status = era_head_kind(ptr, kind)
    if status != ERA_STATUS_OK
        era_head_free(ptr)
        check(status, "era_head_kind")
    end
    kind[] == ERA_HEAD_KIND_GAUSSIAN && return GaussianHead(_OWNED, ptr)
    kind[] == ERA_HEAD_KIND_SOFTMAX && return SoftmaxHead(_OWNED, ptr)
    kind[] == ERA_HEAD_KIND_TOKEN && return TokenHead(_OWNED, ptr)
    era_head_free(ptr)
    error("ERA: the library returned a head of unknown kind $(kind[])")
end

function _new_head(kind::Integer; kwargs...)
    cfg = Ref(config_with(default_config(kind); kwargs...))
    out = Ref{Ptr{EraHead}}(C_NULL)
    check(era_head_new(cfg, out), "era_head_new")
    return _wrap(out[])
end

GaussianHead(; kwargs...) = _new_head(ERA_HEAD_KIND_GAUSSIAN; kwargs...)::GaussianHead
SoftmaxHead(; kwargs...) = _new_head(ERA_HEAD_KIND_SOFTMAX; kwargs...)::SoftmaxHead
TokenHead(; kwargs...) = _new_head(ERA_HEAD_KIND_TOKEN; kwargs...)::TokenHead

"""
    ERA.head(cfg::EraConfig) -> AbstractHead

A head built from a complete `EraConfig` (start from [`ERA.default_config`](@ref)).
"""
function head(cfg::EraConfig)
    out = Ref{Ptr{EraHead}}(C_NULL)
    check(era_head_new(Ref(cfg), out), "era_head_new")
    return _wrap(out[])
end

"""
    config(head) -> EraConfig

The head's configuration (`era_head_config`); for a Gaussian head `delta` is the current value.
"""
function config(h::AbstractHead)
    cfg = Ref(default_config(head_kind(h)))
    check(era_head_config(h, cfg), "era_head_config")
    return cfg[]
end

function Base.show(io::IO, h::GaussianHead)
    h.ptr == C_NULL && return print(io, "GaussianHead(closed)")
    c = config(h)
    print(io, "GaussianHead(dim=", Int(c.dim), ", target_entropy=", c.target_entropy, ", log_std_min=",
          c.log_std_min, ", log_std_max=", c.log_std_max, ", delta=", c.delta, ")")
end

function Base.show(io::IO, h::SoftmaxHead)
    h.ptr == C_NULL && return print(io, "SoftmaxHead(closed)")
    c = config(h)
    print(io, "SoftmaxHead(num_classes=", Int(c.num_classes), ", target_entropy=", c.target_entropy, ", tau=", c.tau, ")")
end

function Base.show(io::IO, h::TokenHead)
    h.ptr == C_NULL && return print(io, "TokenHead(closed)")
    c = config(h)
    print(io, "TokenHead(k=", c.k, ", omega_low=", c.omega_low, ", omega_high=", c.omega_high,
          ", top_fraction=", c.top_fraction, ", temperature=", c.temperature, ")")
end

# ------------------------------------------------------------ forward and backward

const RowHead = Union{GaussianHead,SoftmaxHead}

"""
    forward!(out, head, z) -> out
    forward!(out, head::GaussianHead, z, delta) -> out

The head's activation of `z` into `out` (same size and element type, Float32 or Float64;
`out` may be `z`). The head acts along the first dimension: `z` is `(D,)` or `(D, batch...)`.
With `delta` (a number, or one value per column) the Gaussian head uses it instead of
its stored compensation (`era_gaussian_forward_delta`).
"""
function forward!(out::AbstractArray, h::RowHead, z::AbstractArray)
    zt, ot = dlarg(z), dlarg(out)
    GC.@preserve h zt ot begin
        check(era_head_forward(h, zt, ot, dlstream(z)), "era_head_forward")
    end
    return out
end

function forward!(out::AbstractArray, h::GaussianHead, z::AbstractArray, delta)
    d = delta isa Number ? scalar_array(z, eltype(z), delta) : delta
    zt, dt, ot = dlarg(z), dlarg(d), dlarg(out)
    GC.@preserve h zt dt ot begin
        check(era_gaussian_forward_delta(h, zt, dt, ot, dlstream(z)), "era_gaussian_forward_delta")
    end
    return out
end

"""
    forward(head, z) -> out
    forward(head::GaussianHead, z, delta) -> out

As [`forward!`](@ref) into a new array `similar(z)`. `head(z)` is `forward(head, z)`.
"""
forward(h::RowHead, z::AbstractArray) = forward!(similar(z), h, z)
forward(h::GaussianHead, z::AbstractArray, delta) = forward!(similar(z), h, z, delta)

(h::GaussianHead)(z::AbstractArray) = forward(h, z)
(h::SoftmaxHead)(z::AbstractArray) = forward(h, z)

"""
    backward!(grad_z, head, z, grad_out) -> grad_z

The vector-Jacobian product `grad_z = J(z)' * grad_out` of the head's forward at `z`
(all three the same size and element type; `grad_z` may be `z` or `grad_out`).
"""
function backward!(grad_z::AbstractArray, h::RowHead, z::AbstractArray, grad_out::AbstractArray)
    zt, gt, dzt = dlarg(z), dlarg(grad_out), dlarg(grad_z)
    GC.@preserve h zt gt dzt begin
        check(era_head_backward(h, zt, gt, dzt, dlstream(z)), "era_head_backward")
    end
    return grad_z
end

"""
    backward(head, z, grad_out) -> grad_z
    backward(head::GaussianHead, z, delta, grad_out) -> (grad_z, grad_delta)

As [`backward!`](@ref) into a new array. With `delta` (as in `forward(head, z, delta)`),
also d loss / d delta: a number for a number `delta` (summed over the batch), else an
array of its size (`era_gaussian_backward_delta`).
"""
backward(h::RowHead, z::AbstractArray, grad_out::AbstractArray) = backward!(similar(z), h, z, grad_out)

function backward(h::GaussianHead, z::AbstractArray, delta, grad_out::AbstractArray)
    d = delta isa Number ? scalar_array(z, eltype(z), delta) : delta
    grad_z = similar(z)
    grad_d = similar(d)
    zt, dt, gt, dzt, ddt = dlarg(z), dlarg(d), dlarg(grad_out), dlarg(grad_z), dlarg(grad_d)
    GC.@preserve h zt dt gt dzt ddt begin
        check(era_gaussian_backward_delta(h, zt, dt, gt, dzt, ddt, dlstream(z)), "era_gaussian_backward_delta")
    end
    return grad_z, (delta isa Number ? scalar_value(grad_d) : grad_d)
end

# ------------------------------------------------------------------- saved softmax

# Whether the saved-softmax calls take `A`: strided host memory (they compute on the host only).
_host_array(A) = A isa HostStrided && ishost(A)

"""
    forward_saved!(out, saved, head, z) -> (out, saved)
    forward_saved!(out, saved, head::GaussianHead, z, delta) -> (out, saved)

The head's activation of `z` into `out`, the same bits as [`forward!`](@ref), that also writes
`saved = softmax(z)` along the first dimension (docs/math.md#saved-softmax): the residual
[`backward_saved`](@ref) takes in place of `z`, so that forward and backward together compute
each exponential once. `out` and `saved` have the size and element type of `z` (Float32 or
Float64) and must not overlap (either may be `z`). With `delta` (a number, or one value per
column) the Gaussian head uses it instead of its stored compensation, as
`forward!(out, head, z, delta)` does (`era_gaussian_forward_saved`, `era_softmax_forward_saved`).
Host arrays only: CuArrays raise an `ERAError` (`ERA_STATUS_UNSUPPORTED_DEVICE`); use
[`forward`](@ref) and [`backward`](@ref) there.
"""
function forward_saved!(out::AbstractArray, saved::AbstractArray, h::GaussianHead, z::AbstractArray, delta=nothing)
    d = delta isa Number ? scalar_array(z, eltype(z), delta) : delta
    zt, dt, ot, st = dlarg(z), dlarg(d), dlarg(out), dlarg(saved)
    GC.@preserve h zt dt ot st begin
        check(era_gaussian_forward_saved(h, zt, dlptr(dt), ot, st, dlstream(z)), "era_gaussian_forward_saved")
    end
    return out, saved
end

function forward_saved!(out::AbstractArray, saved::AbstractArray, h::SoftmaxHead, z::AbstractArray)
    zt, ot, st = dlarg(z), dlarg(out), dlarg(saved)
    GC.@preserve h zt ot st begin
        check(era_softmax_forward_saved(h, zt, ot, st, dlstream(z)), "era_softmax_forward_saved")
    end
    return out, saved
end

"""
    forward_saved(head, z) -> (out, saved)
    forward_saved(head::GaussianHead, z, delta) -> (out, saved)

As [`forward_saved!`](@ref) into two new arrays `similar(z)`.
"""
forward_saved(h::RowHead, z::AbstractArray) = forward_saved!(similar(z), similar(z), h, z)
forward_saved(h::GaussianHead, z::AbstractArray, delta) = forward_saved!(similar(z), similar(z), h, z, delta)

"""
    backward_saved!(grad_z, head, saved, grad_out) -> grad_z

The vector-Jacobian product of the head's forward from the `saved` that
[`forward_saved!`](@ref) wrote, instead of `z`: no exponential. The Gaussian head uses its
stored `delta` and gives the same bits as [`backward!`](@ref); the softmax head the same bits
on the vectorised Float32 kernels and equal to rounding elsewhere. All three arrays have the
same size and element type; `grad_z` may be `saved` or `grad_out`. A `saved` that is not a
softmax along the first dimension gives a result without meaning (it is not checked). Host
arrays only (`era_gaussian_backward_saved`, `era_softmax_backward_saved`).
"""
function backward_saved!(grad_z::AbstractArray, h::GaussianHead, saved::AbstractArray, grad_out::AbstractArray)
    st, gt, dzt = dlarg(saved), dlarg(grad_out), dlarg(grad_z)
    GC.@preserve h st gt dzt begin
        check(era_gaussian_backward_saved(h, st, dlptr(nothing), gt, dzt, dlptr(nothing), dlstream(saved)),
              "era_gaussian_backward_saved")
    end
    return grad_z
end

function backward_saved!(grad_z::AbstractArray, h::SoftmaxHead, saved::AbstractArray, grad_out::AbstractArray)
    st, gt, dzt = dlarg(saved), dlarg(grad_out), dlarg(grad_z)
    GC.@preserve h st gt dzt begin
        check(era_softmax_backward_saved(h, st, gt, dzt, dlstream(saved)), "era_softmax_backward_saved")
    end
    return grad_z
end

"""
    backward_saved(head, saved, grad_out) -> grad_z
    backward_saved(head::GaussianHead, saved, delta, grad_out) -> (grad_z, grad_delta)

As [`backward_saved!`](@ref) into a new array. With `delta` (the one given to
`forward_saved(head, z, delta)`), also d loss / d delta as `backward(head, z, delta, grad_out)`
computes them (the same bits): a number for a number `delta` (summed over the batch), else an
array of its size.
"""
backward_saved(h::RowHead, saved::AbstractArray, grad_out::AbstractArray) =
    backward_saved!(similar(saved), h, saved, grad_out)

function backward_saved(h::GaussianHead, saved::AbstractArray, delta, grad_out::AbstractArray)
    d = delta isa Number ? scalar_array(saved, eltype(saved), delta) : delta
    grad_z = similar(saved)
    grad_d = similar(d)
    st, dt, gt, dzt, ddt = dlarg(saved), dlarg(d), dlarg(grad_out), dlarg(grad_z), dlarg(grad_d)
    GC.@preserve h st dt gt dzt ddt begin
        check(era_gaussian_backward_saved(h, st, dt, gt, dzt, ddt, dlstream(saved)), "era_gaussian_backward_saved")
    end
    return grad_z, (delta isa Number ? scalar_value(grad_d) : grad_d)
end

"""
    forward_saved_dw!(out, saved, dwdh, head::SoftmaxHead, z) -> (out, saved, dwdh)

[`forward_saved!`](@ref) that also writes the second residual `dwdh = dw/dh` per element
(docs/math.md#saved-softmax): with both, [`backward_saved_dw!`](@ref) computes the backward
with a few multiplications per element on the vectorised Float32 kernels. `out` and `saved` are
`forward_saved!`'s bits; the three outputs have the size and element type of `z` and must not
overlap (any may be `z`). Host arrays only (`era_softmax_forward_saved_dw`).
"""
function forward_saved_dw!(out::AbstractArray, saved::AbstractArray, dwdh::AbstractArray, h::SoftmaxHead, z::AbstractArray)
    zt, ot, st, qt = dlarg(z), dlarg(out), dlarg(saved), dlarg(dwdh)
    GC.@preserve h zt ot st qt begin
        check(era_softmax_forward_saved_dw(h, zt, ot, st, qt, dlstream(z)), "era_softmax_forward_saved_dw")
    end
    return out, saved, dwdh
end

"""
    backward_saved_dw!(grad_z, head::SoftmaxHead, saved, dwdh, grad_out) -> grad_z

The VJP from both residuals that [`forward_saved_dw!`](@ref) wrote: the same bits as
[`backward!`](@ref) on the vectorised Float32 kernels, [`backward_saved!`](@ref)'s result
elsewhere (`dwdh` unread). `grad_z` may be any of the inputs. Host arrays only
(`era_softmax_backward_saved_dw`).
"""
function backward_saved_dw!(grad_z::AbstractArray, h::SoftmaxHead, saved::AbstractArray, dwdh::AbstractArray,
                            grad_out::AbstractArray)
    st, qt, gt, dzt = dlarg(saved), dlarg(dwdh), dlarg(grad_out), dlarg(grad_z)
    GC.@preserve h st qt gt dzt begin
        check(era_softmax_backward_saved_dw(h, st, qt, gt, dzt, dlstream(saved)), "era_softmax_backward_saved_dw")
    end
    return grad_z
end

# ------------------------------------------------------------------- masked Gaussian

_fill_ref(fill::Nothing) = C_NULL
_fill_ref(fill::Real) = Ref{Cdouble}(Float64(fill))

"""
    forward_masked!(out, head::GaussianHead, z, mask, delta; fill=nothing) -> out

The Gaussian head under a per-column active-dimension mask (docs/math.md#gaussian-mask,
`era_gaussian_forward_masked`): `mask` has the size and element type of `z` and holds 0
(inactive) or 1 (active); a column with `a` of its `D` entries active gets the head of
target `(a/D)*(H0 + delta)` on them, and `fill` (`nothing`: `z` itself) elsewhere. `delta`
as in `forward!(out, head, z, delta)`.
"""
function forward_masked!(out::AbstractArray, h::GaussianHead, z::AbstractArray, mask::AbstractArray, delta;
                         fill=nothing)
    d = delta isa Number ? scalar_array(z, eltype(z), delta) : delta
    f = _fill_ref(fill)
    zt, mt, dt, ot = dlarg(z), dlarg(mask), dlarg(d), dlarg(out)
    GC.@preserve h zt mt dt ot f begin
        check(era_gaussian_forward_masked(h, zt, mt, dt, f, ot, dlstream(z)), "era_gaussian_forward_masked")
    end
    return out
end

"""
    forward_masked(head::GaussianHead, z, mask, delta; fill=nothing) -> out

As [`forward_masked!`](@ref) into a new array `similar(z)`.
"""
forward_masked(h::GaussianHead, z::AbstractArray, mask::AbstractArray, delta; fill=nothing) =
    forward_masked!(similar(z), h, z, mask, delta; fill=fill)

"""
    backward_masked(head::GaussianHead, z, mask, delta, grad_out; fill=nothing) -> (grad_z, grad_delta)

The VJP of [`forward_masked`](@ref) (`era_gaussian_backward_masked`): `grad_z` (`grad_out` passed
through at inactive entries when `fill` is `nothing`, else 0 there) and d loss / d delta, a
number for a number `delta`, else an array of its size.
"""
function backward_masked(h::GaussianHead, z::AbstractArray, mask::AbstractArray, delta, grad_out::AbstractArray;
                         fill=nothing)
    d = delta isa Number ? scalar_array(z, eltype(z), delta) : delta
    f = _fill_ref(fill)
    grad_z = similar(z)
    grad_d = similar(d)
    zt, mt, dt, gt, dzt, ddt = dlarg(z), dlarg(mask), dlarg(d), dlarg(grad_out), dlarg(grad_z), dlarg(grad_d)
    GC.@preserve h zt mt dt gt dzt ddt f begin
        check(era_gaussian_backward_masked(h, zt, mt, dt, f, gt, dzt, ddt, dlstream(z)),
              "era_gaussian_backward_masked")
    end
    return grad_z, (delta isa Number ? scalar_value(grad_d) : grad_d)
end

# ------------------------------------------------------------------------ entropy

_entropy_eltype(::Type{T}) where {T<:Union{Float32,Float64}} = T
_entropy_eltype(::Type) = Float32

# entropy arrays drop the first (class) dimension; a vector gives a number.
_entropy_out(x::AbstractArray) = similar(x, _entropy_eltype(eltype(x)), size(x)[2:end])
_entropy_result(x::AbstractArray, e::AbstractArray) = ndims(x) == 1 ? scalar_value(e) : e

"""
    entropy!(e, head, out) -> e

Per-column entropy of the head's output distribution (`era_head_entropy`): `out` is
`(D, batch...)`, `e` is `(batch...)`. Gaussian: the entropy of `N(mu, diag(exp(out))^2)`;
softmax: of `softmax(out)`; token: `out` holds raw logits, the entropy of `softmax(out / T)`.
"""
function entropy!(e::AbstractArray, h::AbstractHead, out::AbstractArray)
    ot, et = dlarg(out), dlarg(e)
    GC.@preserve h ot et begin
        check(era_head_entropy(h, ot, et, dlstream(out)), "era_head_entropy")
    end
    return e
end

"""
    entropy(head, out)

As [`entropy!`](@ref) into a new array; a number for a vector `out`.
"""
entropy(h::AbstractHead, out::AbstractArray) = _entropy_result(out, entropy!(_entropy_out(out), h, out))

# ----------------------------------------------------------------------- delta

"""
    delta(head::GaussianHead) -> Float64

The Gaussian head's current compensation `delta`.
"""
function delta(h::GaussianHead)
    out = Ref{Cdouble}(0)
    check(era_head_delta(h, out), "era_head_delta")
    return out[]
end

"""
    set_delta!(head::GaussianHead, value) -> Float64

Sets `delta` (clamped so that the target stays feasible; the learner's moments are kept);
returns the value stored.
"""
function set_delta!(h::GaussianHead, value::Real)
    check(era_head_set_delta(h, Float64(value)), "era_head_set_delta")
    return delta(h)
end

"""
    update_delta!(head::GaussianHead, mean_entropy) -> Float64

One step of the delta learner (docs/math.md#delta-learning) with the batch-mean entropy of
the agent's *bounded* policy; returns the new `delta`.
"""
function update_delta!(h::GaussianHead, mean_entropy::Real)
    out = Ref{Cdouble}(0)
    check(era_head_update_delta(h, Float64(mean_entropy), out), "era_head_update_delta")
    return out[]
end

# ------------------------------------------------------------------------ JSON

"""
    to_json(head) -> String

The head (configuration, learned `delta`, optimiser state) as JSON (`era_head_to_json`).
"""
function to_json(h::AbstractHead)
    n = Ref{Csize_t}(0)
    # The size is asked first and the text written second; an update_delta! from another
    # task in between may lengthen it (BUFFER_TOO_SMALL): ask again with the new size.
    for _ in 1:8
        check(era_head_to_json(h, C_NULL, 0, n), "era_head_to_json")
        buf = Vector{UInt8}(undef, n[] + 64)
        status = GC.@preserve buf era_head_to_json(h, pointer(buf), length(buf), n)
        status == ERA_STATUS_BUFFER_TOO_SMALL && continue
        check(status, "era_head_to_json")
        return String(resize!(buf, n[]))
    end
    error("ERA.to_json: the head's JSON kept growing while it was written (concurrent update_delta! calls)")
end

"""
    from_json(json::AbstractString) -> AbstractHead

A head restored from [`to_json`](@ref) or built from a bare config document such as
`{"kind": "softmax", "num_classes": 10, "target_entropy": 1.0}`.
"""
function from_json(json::AbstractString)
    out = Ref{Ptr{EraHead}}(C_NULL)
    check(era_head_from_json(String(json), out), "era_head_from_json")
    return _wrap(out[])
end

"""
    copy(head), deepcopy(head)

A new head with its own handle, made by the library from the head's JSON state
([`to_json`](@ref)/[`from_json`](@ref)): configuration, `delta` and the learner's moments
are copied, and the two heads share nothing afterwards (an old/target policy's head
learns its own `delta`). Copying a closed head is an error.
"""
Base.copy(h::AbstractHead) = from_json(to_json(h))::typeof(h)

# deepcopy would copy the raw handle: a second owner without a finalizer, a double free
# on `close`, and a delta shared between the copies. One copy per head within one deepcopy.
function Base.deepcopy_internal(h::AbstractHead, seen::IdDict)
    haskey(seen, h) && return seen[h]::typeof(h)
    c = copy(h)
    seen[h] = c
    return c
end

# Serialization (and what builds on it: Distributed, `serialize`/`deserialize` to files)
# stores the JSON state, never the handle; deserializing builds a new head in this process.
function Serialization.serialize(s::Serialization.AbstractSerializer, h::AbstractHead)
    Serialization.serialize_type(s, typeof(h))
    Serialization.serialize(s, to_json(h))
    return nothing
end

function Serialization.deserialize(s::Serialization.AbstractSerializer, ::Type{T}) where {T<:AbstractHead}
    json = Serialization.deserialize(s)::String
    return from_json(json)::T
end

"""
    ERA.HeadState(json)

A head's JSON state as a plain struct: what file formats that convert structs before
storing them (JLD2's `writeas`, through ERA's JLD2 extension) write instead of the handle.
`convert(GaussianHead, state)` (or the head's type) builds the head again.
"""
struct HeadState
    json::String
end

Base.convert(::Type{HeadState}, h::AbstractHead) = HeadState(to_json(h))
Base.convert(::Type{T}, s::HeadState) where {T<:AbstractHead} = from_json(s.json)::T
