// Helpers shared by era's CUDA kernels: element loads and stores for every
// dtype, strided row addressing (era_cuda.h, EraCudaTensor) and block
// reductions in a fixed order. Everything here is plain C++ that also compiles
// for the host (tests/cuda/emu builds the kernels against a CPU emulation of
// the CUDA execution model), so nothing uses CUDA headers or intrinsics that the
// emulation does not provide.
#pragma once

#include "era_cuda.h"

#ifndef __CUDACC__
#include <math.h>
#include <string.h>
#endif

#define ERA_HD __host__ __device__ inline

namespace era_cuda {

// ------------------------------------------------------------- conversions

ERA_HD float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

ERA_HD uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/** bfloat16 bits -> float (exact). */
ERA_HD float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/** float -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN. */
ERA_HD uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/** IEEE binary16 bits -> float (exact). */
ERA_HD float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1fu) return bits_to_f32(sign | 0x7f800000u | (man << 13));  // inf, NaN
    if (exp == 0) {
        if (man == 0) return bits_to_f32(sign);
        // subnormal: man * 2^-24, exact in float
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/** float -> IEEE binary16 bits, round to nearest even; overflow to inf, NaN stays NaN. */
ERA_HD uint16_t f32_to_f16(float f) {
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  // NaN
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to >= 65536: inf
    if (a >= 0x38800000u) {                                    // normal half
        uint32_t m = a - 0x38000000u;                          // rebias 127 -> 15
        m += 0xfffu + ((m >> 13) & 1u);
        return (uint16_t)(sign | (m >> 13));
    }
    // subnormal half (or zero): value / 2^-24 rounded to an integer, ties to even
    float v = bits_to_f32(a) * 16777216.0f;  // exact: a power-of-two scaling
    float r = rintf(v);
    return (uint16_t)(sign | (uint16_t)r);
}

// ------------------------------------------------------------- elements

/** Storage types of the kernels' template parameter. */
struct bf16_t {
    uint16_t bits;
};
struct f16_t {
    uint16_t bits;
};

/** `Elem<T>::Compute` is the arithmetic type (double for f64, else float). */
template <class T>
struct Elem;
template <>
struct Elem<float> {
    typedef float Compute;
    static constexpr int code = ERA_CUDA_F32;
    ERA_HD static float load(const char *p) { return *(const float *)p; }
    ERA_HD static void store(char *p, float v) { *(float *)p = v; }
};
template <>
struct Elem<double> {
    typedef double Compute;
    static constexpr int code = ERA_CUDA_F64;
    ERA_HD static double load(const char *p) { return *(const double *)p; }
    ERA_HD static void store(char *p, double v) { *(double *)p = v; }
};
template <>
struct Elem<bf16_t> {
    typedef float Compute;
    static constexpr int code = ERA_CUDA_BF16;
    ERA_HD static float load(const char *p) { return bf16_to_f32(*(const uint16_t *)p); }
    ERA_HD static void store(char *p, float v) { *(uint16_t *)p = f32_to_bf16(v); }
};
template <>
struct Elem<f16_t> {
    typedef float Compute;
    static constexpr int code = ERA_CUDA_F16;
    ERA_HD static float load(const char *p) { return f16_to_f32(*(const uint16_t *)p); }
    ERA_HD static void store(char *p, float v) { *(uint16_t *)p = f32_to_f16(v); }
};

ERA_HD int dtype_size(int dtype) {
    switch (dtype) {
        case ERA_CUDA_F64:
        case ERA_CUDA_I64: return 8;
        case ERA_CUDA_BF16:
        case ERA_CUDA_F16: return 2;
        default: return 4;
    }
}

// ------------------------------------------------------------- addressing

/** Element offset of row r of `t` (see EraCudaTensor). */
ERA_HD int64_t row_offset(const EraCudaTensor &t, int64_t r) {
    int64_t off = 0;
    for (int i = t.nbatch - 1; i >= 0; --i) {
        int64_t n = t.shape[i];
        int64_t q = r / n;
        off += (r - q * n) * t.stride[i];
        r = q;
    }
    return off;
}

/** Address of row r, column c of `t` whose element type has `size` bytes. */
ERA_HD char *at(const EraCudaTensor &t, int64_t r, int64_t c, int size) {
    return t.data + (row_offset(t, r) + c * t.col_stride) * (int64_t)size;
}

/** Element r of a per-row tensor of any floating dtype, as double. */
ERA_HD double load_dyn(const EraCudaTensor &t, int64_t r) {
    const char *p = t.data + row_offset(t, r) * (int64_t)dtype_size(t.dtype);
    switch (t.dtype) {
        case ERA_CUDA_F64: return *(const double *)p;
        case ERA_CUDA_BF16: return bf16_to_f32(*(const uint16_t *)p);
        case ERA_CUDA_F16: return f16_to_f32(*(const uint16_t *)p);
        case ERA_CUDA_I32: return (double)*(const int32_t *)p;
        case ERA_CUDA_I64: return (double)*(const int64_t *)p;
        default: return *(const float *)p;
    }
}

/** Element r of a per-row integer tensor (int32 or int64). */
ERA_HD int64_t load_index(const EraCudaTensor &t, int64_t r) {
    const char *p = t.data + row_offset(t, r) * (int64_t)dtype_size(t.dtype);
    return t.dtype == ERA_CUDA_I32 ? (int64_t) * (const int32_t *)p : *(const int64_t *)p;
}

/** Stores v into element r of a per-row floating tensor; nothing when t is absent. */
ERA_HD void store_dyn(const EraCudaTensor &t, int64_t r, double v) {
    if (t.data == 0) return;
    char *p = t.data + row_offset(t, r) * (int64_t)dtype_size(t.dtype);
    switch (t.dtype) {
        case ERA_CUDA_F64: *(double *)p = v; break;
        case ERA_CUDA_BF16: *(uint16_t *)p = f32_to_bf16((float)v); break;
        case ERA_CUDA_F16: *(uint16_t *)p = f32_to_f16((float)v); break;
        default: *(float *)p = (float)v; break;
    }
}

// ------------------------------------------------------------- reductions

/** Sum over the block of one value per thread, in an order fixed by blockDim
 * alone (pairwise through shared memory). `shm` holds blockDim.x doubles. Every
 * thread gets the total. Must be reached by every thread of the block. */
__device__ inline double block_sum(double v, double *shm) {
    unsigned t = threadIdx.x;
    shm[t] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) shm[t] += shm[t + s];
        __syncthreads();
    }
    double total = shm[0];
    __syncthreads();
    return total;
}

/** Maximum over the block (NaN wins: a row with a NaN reduces to NaN). */
__device__ inline float block_max(float v, float *shm) {
    unsigned t = threadIdx.x;
    shm[t] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) {
            float a = shm[t], b = shm[t + s];
            shm[t] = (a != a || b != b) ? (a + b) : (b > a ? b : a);
        }
        __syncthreads();
    }
    float m = shm[0];
    __syncthreads();
    return m;
}

/** block_max for doubles. */
__device__ inline double block_max(double v, double *shm) {
    unsigned t = threadIdx.x;
    shm[t] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) {
            double a = shm[t], b = shm[t + s];
            shm[t] = (a != a || b != b) ? (a + b) : (b > a ? b : a);
        }
        __syncthreads();
    }
    double m = shm[0];
    __syncthreads();
    return m;
}

}  // namespace era_cuda
