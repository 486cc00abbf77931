"""
    ERA

Julia binding of era, the ERA activation (Entropy Regularizing Activation): an entropy
lower bound built into a network's output layer. Three heads: [`GaussianHead`](@ref)
(log-stds of a continuous-control policy, with a learned compensation `delta`),
[`SoftmaxHead`](@ref) (logits) and [`TokenHead`](@ref) (LLM policy updates).

Every computation happens in the era C library (`libera`), called through the generated
`ccall` layer (`src/generated/era_types.jl`, `src/generated/era_functions.jl`); this
package holds no math of its own.

Array layout: Julia arrays are column-major, era's tensors row-major. A `(D, B)` Matrix
(one column per row of the batch) is era's `[B, D]` tensor with no copy: the head acts
along the *first* Julia dimension. Strided views (`view`, `PermutedDimsArray`, any
`StridedArray`) travel as strided tensors, without copies.
"""
module ERA

using Libdl: Libdl
using Preferences: Preferences

export GaussianHead, SoftmaxHead, TokenHead, ERAError
export forward, forward!, backward, backward!, entropy, entropy!
export delta, set_delta!, update_delta!, to_json, from_json, config
export token_forward, token_backward
export gaussian_entropy, softmax_entropy, truncated_normal_entropy

include("generated/era_types.jl")
include("generated/era_functions.jl")
include("library.jl")
include("dlpack.jl")
include("heads.jl")
include("token.jl")
include("entropy.jl")

function __init__()
    _init_library()
end

end # module ERA
