# Julia arrays as borrowed DLPack tensors.
#
# Julia arrays are column-major and era's tensors row-major, so an array of size
# (d1, ..., dN) with strides (s1, ..., sN) (in elements) is described to era as the
# tensor of shape [dN, ..., d1] and strides [sN, ..., s1]: the same memory, no copy.
# The first Julia dimension is era's last axis (the one a head acts along).

"""
    ERA.dldtype(T) -> DLDataType

The DLPack element type of `T` (`Float64`, `Float32`, `Float16`, `Int32`, `Int64`, ...).
"""
dldtype(::Type{Float64}) = DLDataType(UInt8(kDLFloat), 0x40, 0x0001)
dldtype(::Type{Float32}) = DLDataType(UInt8(kDLFloat), 0x20, 0x0001)
dldtype(::Type{Float16}) = DLDataType(UInt8(kDLFloat), 0x10, 0x0001)
dldtype(::Type{T}) where {T<:Signed} = DLDataType(UInt8(kDLInt), UInt8(8 * sizeof(T)), 0x0001)
dldtype(::Type{T}) where {T<:Unsigned} = DLDataType(UInt8(kDLUInt), UInt8(8 * sizeof(T)), 0x0001)
dldtype(::Type{Bool}) = DLDataType(UInt8(kDLBool), 0x08, 0x0001)
dldtype(::Type{T}) where {T} = throw(ArgumentError("ERA: element type $T has no DLPack equivalent"))

# Host arrays with a memory layout: Base's StridedArray, and a PermutedDimsArray of an
# Array (strided too, whether or not this Julia version counts it as a StridedArray).
# StridedArray includes every DenseArray, GPU arrays too (CuArray, ROCArray, MtlArray,
# oneArray): the layout alone does not say where the memory is, so `ishost` decides.
const HostStrided = Union{StridedArray,PermutedDimsArray{T,N,P,Q,<:Array} where {T,N,P,Q}}

"""
    ERA.ishost(A) -> Bool

Whether `A` is known to live in host memory: an `Array`, or a view, reshape,
reinterpretation or permutation whose parents end in an `Array`. Every other array (a GPU
array of any package, a memory-mapped or foreign type ERA does not know) is `false`, and
ERA refuses it rather than hand the library a device pointer as CPU memory.
"""
ishost(::Array) = true
ishost(A::Union{SubArray,Base.ReshapedArray,Base.ReinterpretArray,PermutedDimsArray}) = ishost(parent(A))
ishost(::AbstractArray) = false

# Device and data pointer of an array; the CUDA extension adds CuArrays.
dldevice(::HostStrided) = DLDevice(kDLCPU, Int32(0))
dlpointer(A::HostStrided) = Ptr{Cvoid}(pointer(A))

"""
    DLArg(A)

A borrowed `DLTensor` describing the strided array `A`, with the shape and stride vectors
it points to. It keeps `A` and those vectors alive as long as it is alive: a call passes
it as `Ptr{DLTensor}` inside `GC.@preserve`.
"""
struct DLArg{A}
    array::A
    shape::Vector{Int64}
    strides::Vector{Int64}
    tensor::Base.RefValue{DLTensor}
end

function DLArg(A::AbstractArray{T,N}) where {T,N}
    shape = Int64[size(A, N + 1 - i) for i in 1:N]
    strd = Int64[stride(A, N + 1 - i) for i in 1:N]
    t = DLTensor(dlpointer(A), dldevice(A), Int32(N), dldtype(T), pointer(shape), pointer(strd), UInt64(0))
    return DLArg{typeof(A)}(A, shape, strd, Ref(t))
end

Base.unsafe_convert(::Type{Ptr{DLTensor}}, a::DLArg) = Base.unsafe_convert(Ptr{DLTensor}, a.tensor)

"""
    ERA.dlarg(A) -> DLArg

`A` as a borrowed DLPack tensor; `A` must be strided host memory (an `Array`, a `view`
with ranges, a `PermutedDimsArray`, a `reshape` of one, ...: see [`ERA.ishost`](@ref)), or
a CuArray with CUDA.jl loaded. Other GPU arrays are refused.
Other arrays (lazy ranges, `Fill`, sparse) are refused: `collect` them first.
"""
function dlarg(A::AbstractArray)
    A isa HostStrided && ishost(A) && return DLArg(A)
    A isa StridedArray && throw(ArgumentError(
        "ERA: $(typeof(A)) is not known to live in host memory; ERA passes Arrays (and strided views of " *
        "them) and, with CUDA.jl loaded, CuArrays. Copy other device arrays with `Array(x)`"))
    throw(ArgumentError("ERA: $(typeof(A)) is not a strided array; pass an Array, a strided view of one, or `collect` it"))
end
dlarg(::Nothing) = nothing

# NULL for an optional output that is not wanted.
dlptr(::Nothing) = Ptr{DLTensor}(C_NULL)
dlptr(a::DLArg) = a

# The stream of a call: NULL for CPU arrays; the CUDA extension answers CUDA.jl's
# task-local stream for CuArrays.
dlstream(::AbstractArray) = C_NULL

# A 0-d array on the device of `like` holding `x` (a scalar operand such as delta).
scalar_array(like::AbstractArray, ::Type{T}, x) where {T} = fill!(similar(like, T, ()), x)
scalar_value(a::AbstractArray) = Array(a)[]
