# CuArrays as kDLCUDA tensors, computed on CUDA.jl's task-local stream of the array's own
# device (a call whose array lives on another device than the task's is refused). A CPU build of
# libera answers ERA_STATUS_UNSUPPORTED_DEVICE, which ERAError explains.
module ERACUDAExt

using ERA: ERA, DLDevice, kDLCUDA
using CUDA: CUDA, CuArray, StridedCuArray

# The CuArray that owns the memory of a (possibly nested) strided view.
_owner(A::CuArray) = A
_owner(A::AbstractArray) = _owner(parent(A))

# The stream of a call: CUDA.jl's task-local stream belongs to the task's current device,
# while the tensors name the device of the array's memory. When they differ the call would
# run on another GPU's stream (the library answers INVALID_STREAM at best), so refuse it
# here and say which device to select.
function _stream(A)
    dev = CUDA.device(_owner(A))
    cur = CUDA.device()
    dev == cur || throw(ArgumentError(
        "ERA: the array lives on GPU $(CUDA.deviceid(dev)) but this task's device is GPU $(CUDA.deviceid(cur)); " *
        "call ERA inside `CUDA.device!($(CUDA.deviceid(dev))) do ... end` (or move the array)"))
    return Ptr{Cvoid}(CUDA.stream().handle)
end

# Methods for CuArray itself as well as for its strided views keep dispatch unambiguous
# against the CPU methods for StridedArray (a CuArray is a DenseArray).
for T in (:CuArray, :StridedCuArray)
    @eval begin
        ERA.dldevice(A::$T) = DLDevice(kDLCUDA, Int32(CUDA.deviceid(CUDA.device(_owner(A)))))
        ERA.dlpointer(A::$T) = Ptr{Cvoid}(reinterpret(UInt, pointer(A)))
        ERA.dlarg(A::$T) = ERA.DLArg(A)
        ERA.dlstream(A::$T) = _stream(A)
    end
end

end # module
