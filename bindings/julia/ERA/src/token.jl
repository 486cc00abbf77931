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
