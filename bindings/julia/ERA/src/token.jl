# The token head: forward with optional outputs, backward.

const TOKEN_OUTPUTS = (:logprobs, :entropy, :scale, :advantages, :response_entropy)

"""
    token_forward(head::TokenHead, logits, labels, response_ids, advantages;
                  outputs = (:logprobs, :entropy, :scale, :advantages, :response_entropy))

Token-head forward (docs/math.md#token-head; `era_token_forward`) over tokens laid out as
any batch shape `(batch...)`:

- `logits` `(V, batch...)`: Float32, Float64 or Float16;
- `labels` `(batch...)`: sampled token ids, **0-based** (`0 <= label < V`) as tokenizers
  number them, Int32 or Int64;
- `response_ids` `(batch...)`: the response each token belongs to (`>= 0`), or -1 for a
  masked token; Int32 or Int64;
- `advantages` `(batch...)`: Float32 or Float64.

Returns a NamedTuple with the requested `outputs`, each `(batch...)` with the element type
of `advantages` (`nothing` for the others, which the library then does not store):
`logprobs`, `entropy`, `scale` (the backward needs it), `advantages` (`A / scale` with
advantage scaling) and `response_entropy`.
"""
function token_forward(h::TokenHead, logits::AbstractArray, labels::AbstractArray, response_ids::AbstractArray,
                       advantages::AbstractArray; outputs = TOKEN_OUTPUTS)
    for o in outputs
        o in TOKEN_OUTPUTS || throw(ArgumentError("ERA: unknown token output :$o; the outputs are $TOKEN_OUTPUTS"))
    end
    res = map(o -> o in outputs ? similar(advantages) : nothing, TOKEN_OUTPUTS)
    lt, yt, rt, at = dlarg(logits), dlarg(labels), dlarg(response_ids), dlarg(advantages)
    ot = map(dlarg, res)
    GC.@preserve h lt yt rt at ot begin
        check(era_token_forward(h, lt, yt, rt, at, dlptr(ot[1]), dlptr(ot[2]), dlptr(ot[3]), dlptr(ot[4]),
                                dlptr(ot[5]), dlstream(logits)), "era_token_forward")
    end
    return NamedTuple{TOKEN_OUTPUTS}(res)
end

"""
    token_backward(head::TokenHead, logits, labels, response_ids, scale, grad_logprobs) -> grad_logits

Token-head backward (`era_token_backward`): d loss / d logits from d loss / d logprobs,
with the forward's `scale` (the scale decision is not differentiated). `grad_logits` has
the size and element type of `logits`.
"""
function token_backward(h::TokenHead, logits::AbstractArray, labels::AbstractArray, response_ids::AbstractArray,
                        scale::AbstractArray, grad_logprobs::AbstractArray)
    grad_logits = similar(logits)
    lt, yt, rt = dlarg(logits), dlarg(labels), dlarg(response_ids)
    st, gt, dlt = dlarg(scale), dlarg(grad_logprobs), dlarg(grad_logits)
    GC.@preserve h lt yt rt st gt dlt begin
        check(era_token_backward(h, lt, yt, rt, st, gt, dlt, dlstream(logits)), "era_token_backward")
    end
    return grad_logits
end

# ------------------------------------------------- the entropies' backward (split token)

# A token head with the library's defaults, made on first use, for the entropy backward of
# functions that have no head of their own (softmax_entropy, a softmax head's entropy).
const _ENTROPY_HEAD = Ref{Union{Nothing,TokenHead}}(nothing)
const _ENTROPY_HEAD_LOCK = ReentrantLock()
function _entropy_head()
    lock(_ENTROPY_HEAD_LOCK) do
        h = _ENTROPY_HEAD[]
        h === nothing || return h
        return _ENTROPY_HEAD[] = TokenHead()
    end
end

"""
    ERA.entropy_backward(logits, grad_entropy; temperature = 1, head = nothing) -> grad_logits

d loss / d logits of the categorical entropies `H(softmax(logits / T))` per column, from
d loss / d H (`grad_entropy`, `(batch...)`; a number for a vector `logits`), through the
library's split token backward (`era_token_columns_backward` with only `grad_entropy`;
docs/math.md#split-token-backward): `-(1/T) p (ln p + H) * grad_entropy`. `temperature` is
a number or one value per column; with a `TokenHead` as `head` and `temperature =
nothing`, the head's own temperature. CPU arrays (the split token calls are CPU only).
"""
function entropy_backward(logits::AbstractArray, grad_entropy; temperature = 1.0, head::Union{Nothing,TokenHead} = nothing)
    h = head === nothing ? _entropy_head() : head
    bsize = size(logits)[2:end]
    F = _entropy_eltype(eltype(logits))
    g = grad_entropy isa Number ? fill!(similar(logits, F, bsize), grad_entropy) :
        grad_entropy isa StridedArray && eltype(grad_entropy) == F ? grad_entropy : (similar(logits, F, bsize) .= grad_entropy)
    temp = temperature === nothing ? nothing :
           temperature isa Number ? fill!(similar(logits, F, bsize), temperature) : (similar(logits, F, bsize) .= temperature)
    labels = fill!(similar(logits, Int32, bsize), -1)   # no column gradient: every label ignored
    grad_logits = similar(logits)
    lt, yt, tt, gt, dlt = dlarg(logits), dlarg(labels), dlarg(temp), dlarg(g), dlarg(grad_logits)
    GC.@preserve h lt yt tt gt dlt begin
        check(era_token_columns_backward(h, lt, yt, dlptr(tt), Ptr{DLTensor}(C_NULL), gt, dlt, dlstream(logits)),
              "era_token_columns_backward")
    end
    return grad_logits
end

"""
    ERA.token_entropy_backward(head::TokenHead, logits, grad_entropy) -> grad_logits

d loss / d logits of the token forward's `entropy` output (`H(softmax(logits / T))` with
the head's `T`, every token, masked ones too) from its cotangent `grad_entropy`
`(batch...)`, through `era_token_columns_backward`.
"""
token_entropy_backward(h::TokenHead, logits::AbstractArray, grad_entropy::AbstractArray) =
    entropy_backward(logits, grad_entropy; temperature = nothing, head = h)
