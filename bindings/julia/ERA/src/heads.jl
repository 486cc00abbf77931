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
    GaussianHead(ptr::Ptr{EraHead}) = finalizer(_free!, new(ptr))
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
    SoftmaxHead(ptr::Ptr{EraHead}) = finalizer(_free!, new(ptr))
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
    TokenHead(ptr::Ptr{EraHead}) = finalizer(_free!, new(ptr))
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
    kind[] == ERA_HEAD_KIND_GAUSSIAN && return GaussianHead(ptr)
    kind[] == ERA_HEAD_KIND_SOFTMAX && return SoftmaxHead(ptr)
    kind[] == ERA_HEAD_KIND_TOKEN && return TokenHead(ptr)
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
    check(era_head_to_json(h, C_NULL, 0, n), "era_head_to_json")
    buf = Vector{UInt8}(undef, n[] + 1)
    GC.@preserve buf begin
        check(era_head_to_json(h, pointer(buf), length(buf), n), "era_head_to_json")
    end
    return String(resize!(buf, n[]))
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

Base.copy(h::AbstractHead) = from_json(to_json(h))
