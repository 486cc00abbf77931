# Entropies that need no head.

"""
    gaussian_entropy(log_std)

Entropy of the diagonal Gaussian `N(mu, diag(exp(log_std))^2)` per column
(`era_gaussian_entropy`): `log_std` `(D, batch...)` -> `(batch...)`; a number for a vector.
"""
function gaussian_entropy(log_std::AbstractArray)
    e = _entropy_out(log_std)
    st, et = dlarg(log_std), dlarg(e)
    GC.@preserve st et begin
        check(era_gaussian_entropy(st, et, dlstream(log_std)), "era_gaussian_entropy")
    end
    return _entropy_result(log_std, e)
end

"""
    softmax_entropy(logits; temperature = 1)

Entropy of the categorical `softmax(logits / temperature)` per column
(`era_softmax_entropy`): `logits` `(n, batch...)` (Float32, Float64 or Float16) ->
`(batch...)`; a number for a vector.
"""
function softmax_entropy(logits::AbstractArray; temperature::Real = 1.0)
    e = _entropy_out(logits)
    lt, et = dlarg(logits), dlarg(e)
    GC.@preserve lt et begin
        check(era_softmax_entropy(lt, Float64(temperature), et, dlstream(logits)), "era_softmax_entropy")
    end
    return _entropy_result(logits, e)
end

"""
    truncated_normal_entropy(mean, log_std, low, high)

Entropy of the truncated normal `TN(mean, exp(log_std), [low, high])` summed over the
first dimension (`era_truncated_normal_entropy`; docs/math.md#truncated-normal-entropy):
`mean`, `log_std` `(D, batch...)` -> `(batch...)`; a number for vectors. Infinite bounds
are allowed.
"""
function truncated_normal_entropy(mean::AbstractArray, log_std::AbstractArray, low::Real, high::Real)
    e = _entropy_out(mean)
    mt, st, et = dlarg(mean), dlarg(log_std), dlarg(e)
    GC.@preserve mt st et begin
        check(era_truncated_normal_entropy(mt, st, Float64(low), Float64(high), et, dlstream(mean)),
              "era_truncated_normal_entropy")
    end
    return _entropy_result(mean, e)
end
