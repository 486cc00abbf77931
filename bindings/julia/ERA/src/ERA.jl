"""
    ERA

Julia binding of era, the ERA activation (Entropy Regularizing Activation): an entropy
lower bound built into a network's output layer. Three heads: [`GaussianHead`](@ref)
(log-stds of a continuous-control policy, with a learned compensation `delta`),
[`SoftmaxHead`](@ref) (logits) and [`TokenHead`](@ref) (LLM policy updates).

Every computation happens in the era C library (`libera`), called through the generated
`ccall` layer (`src/generated/era_types.jl`, `src/generated/era_functions*.jl`); this
package holds no math of its own.

Array layout: Julia arrays are column-major, era's tensors row-major. A `(D, B)` Matrix
(one column per row of the batch) is era's `[B, D]` tensor with no copy: the head acts
along the *first* Julia dimension. Strided views (`view`, `PermutedDimsArray`, any
`StridedArray` of host memory) travel as strided tensors, without copies.

Exports: the head types, `ERAError`, `set_delta!`, `update_delta!`, `to_json`, `from_json`,
`token_forward`, `token_backward` and the head-free entropies. The generic names are used
qualified: `ERA.forward`, `ERA.backward`, `ERA.entropy`, `ERA.delta`, `ERA.config`.
"""
module ERA

using Libdl: Libdl
using Preferences: Preferences
using Serialization: Serialization

# Only names that cannot collide with the packages a model imports beside ERA. The generic
# verbs stay qualified: `ERA.forward`, `ERA.backward`, `ERA.entropy` (StatsBase and
# Distributions export `entropy`), `ERA.delta`, `ERA.config`, and their `!` forms.
export GaussianHead, SoftmaxHead, TokenHead, ERAError
export set_delta!, update_delta!, to_json, from_json
export token_forward, token_backward
export gaussian_entropy, softmax_entropy, truncated_normal_entropy

include("generated/era_types.jl")
include("generated/era_functions.jl")
include("generated/era_functions_gaussian.jl")
include("generated/era_functions_token.jl")
include("generated/era_functions_token_parts.jl")
include("library.jl")
include("dlpack.jl")
include("heads.jl")
include("token.jl")
include("entropy.jl")

function __init__()
    _init_library()
end

end # module ERA
