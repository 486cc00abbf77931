/*
 * era/dlpack.h: the DLPack tensor-descriptor ABI as used by the era C API.
 *
 * These declarations are layout-compatible with DLPack (https://github.com/dmlc/dlpack),
 * ABI version 1.x: DLDevice, DLDataType and DLTensor have exactly the field order, types
 * and sizes of the upstream header. The include guard is the upstream one, so a
 * translation unit that already includes the upstream <dlpack/dlpack.h> (PyTorch, CuPy,
 * TVM, ...) uses those definitions and this file adds nothing.
 */
#ifndef DLPACK_DLPACK_H_
#define DLPACK_DLPACK_H_

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** DLPack major version these declarations correspond to. */
#ifndef DLPACK_MAJOR_VERSION
#define DLPACK_MAJOR_VERSION 1
#endif
/** DLPack minor version these declarations correspond to. */
#ifndef DLPACK_MINOR_VERSION
#define DLPACK_MINOR_VERSION 0
#endif

/** Where a buffer lives. era accepts kDLCPU and kDLCUDAHost in a CPU build. */
typedef enum {
  kDLCPU = 1,           /**< ordinary host memory */
  kDLCUDA = 2,          /**< CUDA device memory */
  kDLCUDAHost = 3,      /**< pinned host memory (cudaMallocHost) */
  kDLOpenCL = 4,
  kDLVulkan = 7,
  kDLMetal = 8,
  kDLVPI = 9,
  kDLROCM = 10,
  kDLROCMHost = 11,
  kDLExtDev = 12,
  kDLCUDAManaged = 13,  /**< CUDA managed (unified) memory */
  kDLOneAPI = 14,
  kDLWebGPU = 15,
  kDLHexagon = 16,
  kDLMAIA = 17
} DLDeviceType;

/** A device: its type and its ordinal. */
typedef struct {
  DLDeviceType device_type; /**< one of DLDeviceType (a 32-bit enum) */
  int32_t device_id;        /**< device ordinal, 0 for the host */
} DLDevice;

/** Type codes of DLDataType::code. */
typedef enum {
  kDLInt = 0U,          /**< signed integer */
  kDLUInt = 1U,         /**< unsigned integer */
  kDLFloat = 2U,        /**< IEEE float */
  kDLOpaqueHandle = 3U,
  kDLBfloat = 4U,       /**< bfloat16 */
  kDLComplex = 5U,
  kDLBool = 6U
} DLDataTypeCode;

/** An element type: code (DLDataTypeCode), bits per lane, lanes (1 for scalars). */
typedef struct {
  uint8_t code;   /**< DLDataTypeCode */
  uint8_t bits;   /**< bits per lane: 16, 32, 64, ... */
  uint16_t lanes; /**< 1 for scalar types; era accepts only 1 */
} DLDataType;

/**
 * A borrowed, strided view of an n-dimensional array.
 * Element (i0, ..., i{n-1}) lives at
 * (char*)data + byte_offset + sizeof(elem) * sum_k i_k * strides[k];
 * strides == NULL means compact row-major.
 */
typedef struct {
  void* data;            /**< base pointer (host or device) */
  DLDevice device;       /**< where data lives */
  int32_t ndim;          /**< number of dimensions */
  DLDataType dtype;      /**< element type */
  int64_t* shape;        /**< ndim extents */
  int64_t* strides;      /**< ndim strides in elements, or NULL for row-major */
  uint64_t byte_offset;  /**< offset in bytes from data to the first element */
} DLTensor;

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* DLPACK_DLPACK_H_ */
