# Reverse-mode rules for the ERA heads, so that Zygote, Flux and other ChainRules-based
# AD systems train through them. Every pullback calls the library's backward.
module ERAChainRulesCoreExt

using ERA: ERA, GaussianHead, SoftmaxHead, TokenHead, AbstractHead
using ChainRulesCore: ChainRulesCore, NoTangent, ZeroTangent, AbstractZero, unthunk, @non_differentiable,
                      @not_implemented

const RowHead = Union{GaussianHead,SoftmaxHead}

# A cotangent as a strided array like `x` (AD systems may hand over lazy arrays such as
# FillArrays.Fill, which have no memory to pass).
_strided(g::AbstractArray, x::AbstractArray) = g isa StridedArray && eltype(g) == eltype(x) ? g : (similar(x) .= g)

function _forward_rule(h::RowHead, z::AbstractArray)
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

# delta as an operand: d/d z and d/d delta (era_gaussian_backward_delta).
function ChainRulesCore.rrule(::typeof(ERA.forward), h::GaussianHead, z::AbstractArray, delta)
    y = ERA.forward(h, z, delta)
    function era_forward_delta_pullback(ȳ)
        g = unthunk(ȳ)
        g isa AbstractZero && return (NoTangent(), NoTangent(), ZeroTangent(), ZeroTangent())
        dz, ddelta = ERA.backward(h, z, delta, _strided(g, z))
        return (NoTangent(), NoTangent(), dz, ddelta)
    end
    return y, era_forward_delta_pullback
end

# Token head: d/d logits through the logprobs (era_token_backward); the scale decision is
# not differentiated, and neither are the other outputs.
function ChainRulesCore.rrule(::typeof(ERA.token_forward), h::TokenHead, logits::AbstractArray,
                              labels::AbstractArray, response_ids::AbstractArray, advantages::AbstractArray;
                              outputs = ERA.TOKEN_OUTPUTS)
    wanted = Tuple(unique((outputs..., :logprobs, :scale)))
    full = ERA.token_forward(h, logits, labels, response_ids, advantages; outputs = wanted)
    y = NamedTuple{ERA.TOKEN_OUTPUTS}(map(o -> o in outputs ? full[o] : nothing, ERA.TOKEN_OUTPUTS))
    function era_token_forward_pullback(ȳ)
        t = unthunk(ȳ)
        glp = t isa AbstractZero ? t : unthunk(t.logprobs)
        dlogits = glp isa AbstractZero || glp === nothing ? ZeroTangent() :
                  ERA.token_backward(h, logits, labels, response_ids, full.scale, _strided(glp, full.logprobs))
        dadv = @not_implemented("ERA.token_forward: d advantages_out / d advantages is not provided")
        return (NoTangent(), NoTangent(), dlogits, NoTangent(), NoTangent(), dadv)
    end
    return y, era_token_forward_pullback
end

@non_differentiable ERA.delta(::Any)
@non_differentiable ERA.set_delta!(::Any, ::Any)
@non_differentiable ERA.update_delta!(::Any, ::Any)
@non_differentiable ERA.to_json(::Any)
@non_differentiable ERA.from_json(::Any)
@non_differentiable ERA.config(::Any)
@non_differentiable ERA.entropy(::AbstractHead, ::Any)
@non_differentiable ERA.gaussian_entropy(::Any)
@non_differentiable ERA.truncated_normal_entropy(::Any, ::Any, ::Any, ::Any)
@non_differentiable ERA.softmax_entropy(::Any)

end # module
