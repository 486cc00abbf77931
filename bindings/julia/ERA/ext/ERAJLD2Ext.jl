# JLD2 stores a head as its JSON state (ERA.HeadState), never the raw handle; loading
# builds a new head through the library (`convert(T, ::HeadState)`, i.e. `from_json`).
module ERAJLD2Ext

using ERA: ERA, GaussianHead, SoftmaxHead, TokenHead, HeadState
using JLD2: JLD2

for T in (GaussianHead, SoftmaxHead, TokenHead)
    @eval JLD2.writeas(::Type{$T}) = HeadState
end

end # module
