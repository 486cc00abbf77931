# CuArrays as kDLCUDA tensors, computed on CUDA.jl's task-local stream. A CPU build of
# libera answers ERA_STATUS_UNSUPPORTED_DEVICE, which ERAError explains.
module ERACUDAExt

using ERA: ERA, DLDevice, kDLCUDA
using CUDA: CUDA, CuArray, StridedCuArray

# The CuArray that owns the memory of a (possibly nested) strided view.
_owner(A::CuArray) = A
_owner(A::AbstractArray) = _owner(parent(A))

# Methods for CuArray itself as well as for its strided views keep dispatch unambiguous
# against the CPU methods for StridedArray (a CuArray is a DenseArray).
for T in (:CuArray, :StridedCuArray)
    @eval begin
        ERA.dldevice(A::$T) = DLDevice(kDLCUDA, Int32(CUDA.deviceid(CUDA.device(_owner(A)))))
        ERA.dlpointer(A::$T) = Ptr{Cvoid}(reinterpret(UInt, pointer(A)))
        ERA.dlarg(A::$T) = ERA.DLArg(A)
        ERA.dlstream(::$T) = Ptr{Cvoid}(CUDA.stream().handle)
    end
end

end # module
