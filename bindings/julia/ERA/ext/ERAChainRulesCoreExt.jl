# Reverse-mode rules for the ERA heads, so that Zygote, Flux and other ChainRules-based
# AD systems train through them. Every pullback calls the library's backward (from the saved
# softmax where the forward kept it).
module ERAChainRulesCoreExt

using ERA: ERA, GaussianHead, SoftmaxHead, TokenHead, AbstractHead
using ChainRulesCore: ChainRulesCore, NoTangent, ZeroTangent, AbstractZero, unthunk, @non_differentiable

const RowHead = Union{GaussianHead,SoftmaxHead}

# A cotangent as a strided array like `x` (AD systems may hand over lazy arrays such as
# FillArrays.Fill, which have no memory to pass).
_strided(g::AbstractArray, x::AbstractArray) = g isa StridedArray && eltype(g) == eltype(x) ? g : (similar(x) .= g)

# On host arrays the primal keeps softmax(z) (ERA.forward_saved) and the pullback starts from it
# (ERA.backward_saved), so forward and backward compute each exponential once
# (docs/math.md#saved-softmax); the pullback holds `saved` in place of `z`, the same memory.
# Other arrays (CuArrays through the CUDA extension) keep z, and the pullback recomputes.
function _forward_rule(h::RowHead, z::AbstractArray)
    ERA._host_array(z) || return _forward_rule_from_z(h, z)
    y, saved = ERA.forward_saved(h, z)
    function era_forward_saved_pullback(ȳ)
        g = unthunk(ȳ)
        g isa AbstractZero && return ZeroTangent()
        return ERA.backward_saved(h, saved, _strided(g, saved))
    end
    return y, era_forward_saved_pullback
end

function _forward_rule_from_z(h::RowHead, z::AbstractArray)
    y = ERA.forward(h, z)
    function era_forward_pullback(ȳ)
        g = unthunk(ȳ)
        g isa AbstractZero && return ZeroTangent()
        return ERA.backward(h, z, _strided(g, z))
    end
    return y, era_forward_pullback
end

function ChainRulesCore.rrule(::typeof(ERA.forward), h::RowHead, z::AbstractArray)
    y, back = _forward_rule(h, z)
    return y, ȳ -> (NoTangent(), NoTangent(), back(ȳ))
end

function ChainRulesCore.rrule(h::RowHead, z::AbstractArray)
    y, back = _forward_rule(h, z)
    return y, ȳ -> (NoTangent(), back(ȳ))
end

# delta as an operand: d/d z and d/d delta (era_gaussian_backward_saved on host arrays, as
# above; era_gaussian_backward_delta on others).
function ChainRulesCore.rrule(::typeof(ERA.forward), h::GaussianHead, z::AbstractArray, delta)
    if ERA._host_array(z) && (delta isa Number || ERA._host_array(delta))
        y, saved = ERA.forward_saved(h, z, delta)
        function era_forward_delta_saved_pullback(ȳ)
            g = unthunk(ȳ)
            g isa AbstractZero && return (NoTangent(), NoTangent(), ZeroTangent(), ZeroTangent())
            dz, ddelta = ERA.backward_saved(h, saved, delta, _strided(g, saved))
            return (NoTangent(), NoTangent(), dz, ddelta)
        end
        return y, era_forward_delta_saved_pullback
    end
    y = ERA.forward(h, z, delta)
    function era_forward_delta_pullback(ȳ)
        g = unthunk(ȳ)
        g isa AbstractZero && return (NoTangent(), NoTangent(), ZeroTangent(), ZeroTangent())
        dz, ddelta = ERA.backward(h, z, delta, _strided(g, z))
        return (NoTangent(), NoTangent(), dz, ddelta)
    end
    return y, era_forward_delta_pullback
end

# the masked Gaussian head (docs/math.md#gaussian-mask): d/d z and d/d delta; the mask is not
# differentiated (era_gaussian_backward_masked).
function ChainRulesCore.rrule(::typeof(ERA.forward_masked), h::GaussianHead, z::AbstractArray, mask::AbstractArray,
                              delta; fill=nothing)
    y = ERA.forward_masked(h, z, mask, delta; fill=fill)
    function era_forward_masked_pullback(ȳ)
        g = unthunk(ȳ)
        g isa AbstractZero && return (NoTangent(), NoTangent(), ZeroTangent(), NoTangent(), ZeroTangent())
        dz, ddelta = ERA.backward_masked(h, z, mask, delta, _strided(g, z); fill=fill)
        return (NoTangent(), NoTangent(), dz, NoTangent(), ddelta)
    end
    return y, era_forward_masked_pullback
end

# Token head (docs/math.md#token-backward, #split-token-backward):
# - logprobs: d/d logits through era_token_backward at the forward's scale;
# - entropy: d/d logits through era_token_columns_backward (its grad_entropy input), added;
# - advantages: A/c with advantage scaling (else A), c piecewise constant: d A = g / c (or g);
# - scale: piecewise constant in the logits and advantages, so no gradient flows from it;
# - response_entropy: the library has no derivative of the top-rho selection's mean, so a
#   nonzero cotangent is an error that says so (never a silent zero).
# Labels and response ids are integers (NoTangent).
# The cotangent of one named output, or nothing where none arrived.
function _live(t, name::Symbol)
    t isa AbstractZero && return nothing
    x = unthunk(getproperty(t, name))
    return x isa AbstractZero || x === nothing ? nothing : x
end

function ChainRulesCore.rrule(::typeof(ERA.token_forward), h::TokenHead, logits::AbstractArray,
                              labels::AbstractArray, response_ids::AbstractArray, advantages::AbstractArray;
                              outputs = ERA.TOKEN_OUTPUTS)
    wanted = Tuple(unique((outputs..., :logprobs, :scale)))
    full = ERA.token_forward(h, logits, labels, response_ids, advantages; outputs = wanted)
    y = NamedTuple{ERA.TOKEN_OUTPUTS}(map(o -> o in outputs ? full[o] : nothing, ERA.TOKEN_OUTPUTS))
    scaled = ERA.config(h).advantage_scaling != 0
    function era_token_forward_pullback(ȳ)
        t = unthunk(ȳ)
        _live(t, :response_entropy) === nothing || error(
            "ERA.token_forward: the response entropy has no derivative in the library; take it out of the " *
            "differentiated loss (ChainRulesCore.ignore_derivatives) or use the per-token `entropy` output")
        glp, gH, gA = _live(t, :logprobs), _live(t, :entropy), _live(t, :advantages)
        dlogits = glp === nothing ? nothing :
                  ERA.token_backward(h, logits, labels, response_ids, full.scale, _strided(glp, full.logprobs))
        if gH !== nothing
            dH = ERA.token_entropy_backward(h, logits, _strided(gH, advantages))
            dlogits = dlogits === nothing ? dH : (dlogits .+= dH)
        end
        dadv = gA === nothing ? ZeroTangent() : scaled ? gA ./ full.scale : gA
        return (NoTangent(), NoTangent(), something(dlogits, ZeroTangent()), NoTangent(), NoTangent(), dadv)
    end
    return y, era_token_forward_pullback
end

# Entropies. A softmax head's entropy and softmax_entropy: the library's split token
# backward (ERA.entropy_backward). A token head's entropy: the same at the head's
# temperature. The Gaussian entropies are sum(log_std) + const per column
# (docs/math.md#gaussian-entropy): d H / d log_std_i = 1, the cotangent spread over the
# first dimension. The truncated normal's entropy has no derivative in the library: a
# nonzero cotangent raises an error that says so.
_spread(g::Number, x::AbstractArray) = fill!(similar(x), g)
_spread(g::AbstractArray, x::AbstractArray) = similar(x) .= reshape(g, 1, size(g)...)

function ChainRulesCore.rrule(::typeof(ERA.entropy), h::SoftmaxHead, out::AbstractArray)
    e = ERA.entropy(h, out)
    pullback(ē) = (g = unthunk(ē); g isa AbstractZero ? (NoTangent(), NoTangent(), ZeroTangent()) :
                   (NoTangent(), NoTangent(), ERA.entropy_backward(out, g)))
    return e, pullback
end

function ChainRulesCore.rrule(::typeof(ERA.entropy), h::TokenHead, out::AbstractArray)
    e = ERA.entropy(h, out)
    pullback(ē) = (g = unthunk(ē); g isa AbstractZero ? (NoTangent(), NoTangent(), ZeroTangent()) :
                   (NoTangent(), NoTangent(), ERA.entropy_backward(out, g; temperature = nothing, head = h)))
    return e, pullback
end

function ChainRulesCore.rrule(::typeof(ERA.entropy), h::GaussianHead, out::AbstractArray)
    e = ERA.entropy(h, out)
    pullback(ē) = (g = unthunk(ē); g isa AbstractZero ? (NoTangent(), NoTangent(), ZeroTangent()) :
                   (NoTangent(), NoTangent(), _spread(g, out)))
    return e, pullback
end

function ChainRulesCore.rrule(::typeof(ERA.gaussian_entropy), log_std::AbstractArray)
    e = ERA.gaussian_entropy(log_std)
    pullback(ē) = (g = unthunk(ē); g isa AbstractZero ? (NoTangent(), ZeroTangent()) : (NoTangent(), _spread(g, log_std)))
    return e, pullback
end

function ChainRulesCore.rrule(::typeof(ERA.softmax_entropy), logits::AbstractArray; temperature::Real = 1.0)
    e = ERA.softmax_entropy(logits; temperature = temperature)
    pullback(ē) = (g = unthunk(ē); g isa AbstractZero ? (NoTangent(), ZeroTangent()) :
                   (NoTangent(), ERA.entropy_backward(logits, g; temperature = temperature)))
    return e, pullback
end

function ChainRulesCore.rrule(::typeof(ERA.truncated_normal_entropy), mean::AbstractArray, log_std::AbstractArray,
                              low::Real, high::Real)
    e = ERA.truncated_normal_entropy(mean, log_std, low, high)
    function pullback(ē)
        unthunk(ē) isa AbstractZero && return (NoTangent(), ZeroTangent(), ZeroTangent(), NoTangent(), NoTangent())
        error("ERA.truncated_normal_entropy has no derivative in the library; take it out of the differentiated " *
              "loss (ChainRulesCore.ignore_derivatives), e.g. to log it")
    end
    return e, pullback
end

@non_differentiable ERA.delta(::Any)
@non_differentiable ERA.set_delta!(::Any, ::Any)
@non_differentiable ERA.update_delta!(::Any, ::Any)
@non_differentiable ERA.to_json(::Any)
@non_differentiable ERA.from_json(::Any)
@non_differentiable ERA.config(::Any)

end # module
