// Helpers shared by the token head's kernels (docs/math.md#token-head, #fusion,
// #numerics): token_forward.cu (era_token_stats_<dtype>), token_group.cu
// (era_token_group, era_token_finish) and token_backward.cu
// (era_token_backward_<dtype>); the vocabulary top-K select is in
// token_topk.cuh. Here: constants, the per-token workspace record, shared
// memory, element and 16-byte vector loads and stores, the row walk
// (for_row), block reductions, the f32-constants test and the row functions'
// arguments.
//
// The kernels mirror the CPU head (src/heads/token.rs, src/kernels/token.rs):
// - f64 logits, and f32/bf16/f16 logits of a head whose constants 1/T, k, 1/k,
//   k/T are not all normal f32 numbers (TokenHead::f32_kernels false), compute
//   in f64 like the CPU reference rows;
// - other f32/bf16/f16 logits compute in f32 like the CPU fused kernel
//   (token_row_stats / token_row_grad): z = x*(1/T) rounded to f32 before the
//   maximum is subtracted (no fused multiply-add), differences floored at -87 in
//   the k = 2 forward sums only, the k = 2 trick (one exponential exp(d/2) per logit serves
//   the scales 1, 2 and 1/2), per-thread f32 partial sums moved to f64 every
//   FLUSH_CHUNKS chunks (<= 128 logits per thread, as the CPU's 2048-element
//   blocks give 128 per lane), f64 across threads. Exponentials use
//   ex2.approx.ftz (the CPU uses its own polynomials; the emulator exp2f):
//   results agree to a few f32 ulp, not bitwise.
//
// Registers: the per-row work lives in non-inlined functions (one per dtype,
// compute type, k = 2 or not, top-K or not) and the row kernels are bounded to
// 64 registers (4 blocks per SM, 32 KB of loads in flight per SM). The f32
// streaming loops are spill-free at that bound (checked in the sm_90 SASS); the
// cold paths (f64, top-K, the rescaling when a thread's maximum grows) may spill.
//
// Only what the CPU emulator (tests/cuda/emu/cuda_emu.hpp) provides: no warp
// shuffles, no float atomics, no dynamic allocation; integer atomicAdd on
// shared memory (top-K histograms); inline PTX only under __CUDA_ARCH__, with a
// plain C++ equivalent for the host.
//
// Helpers live in their own namespace, in headers (#pragma once) that every
// token_*.cu includes: build.rs compiles every .cu file as one translation
// unit, and tests/cuda/emu/run.sh compiles each .cu on its own.
#pragma once

#include "common.cuh"

namespace era_tok {

using namespace era_cuda;

// not __noinline__: the emulator leaves it undefined (libstdc++ spells __attribute__((__noinline__)))
#define ERA_TOK_NOINLINE __attribute__((noinline))

constexpr int NT = ERA_CUDA_BLOCK_VECTOR;
static_assert(NT == 256, "the radix select has one histogram bin (of 8-bit digits) per thread");

/** Log-prob of a label outside the vocabulary top-K (ERA_OUTSIDE_TOPK_LOGPROB). */
constexpr double OUTSIDE_TOPK_LOGPROB = -1e4;
/** Lower clamp of z - max in the f32 forward sums with k = 2 (kernels::token::D_FLOOR). */
constexpr float D_FLOOR = -87.0f;
constexpr float LOG2E_F = 1.4426950408889634f;
constexpr float HALF_LOG2E_F = 0.5f * 1.4426950408889634f;
/** Chunks (<= 8 logits each) a thread sums in f32 before moving the sums to f64. */
constexpr int FLUSH_CHUNKS = 16;

/** Per-token statistics in the workspace (64 bytes = ERA_CUDA_TOKEN_WORKSPACE_BYTES(1)). */
struct TokenWs {
    double entropy;     // H_t, full vocabulary (stats)
    double logprob[3];  // logp' at c = 1, k, 1/k (stats): 0 masked, -1e4 outside the top-K,
                        // NaN for a NaN/inf row or a label outside [0, V)
    int64_t id;         // response id (stats; < 0 masked)
    int64_t count;      // n_r, tokens of the response (group; 0 masked)
    int64_t rank;       // rank in the response by entropy, descending, NaN first, ties by index (group)
    int64_t pad;
};
static_assert(sizeof(TokenWs) == 64, "TokenWs is the 64-byte per-token workspace record");
static_assert(ERA_CUDA_TOKEN_WORKSPACE_BYTES(1) >= (int64_t)sizeof(TokenWs), "workspace too small");

// ------------------------------------------------------------- shared memory

__shared__ double sh_d[4 * NT];  // block sums (up to 4 values per thread), block max (f64)
__shared__ float sh_f[NT];       // block max (f32)
__shared__ double sh_scalar[2];  // one broadcast value

// ------------------------------------------------------------- scalar helpers

/** x*y rounded, never contracted into a fused multiply-add. */
__device__ inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
__device__ inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

/** max(d, lo) that keeps NaN (the CPU's `if d < lo { lo } else { d }`). */
__device__ inline float floor_keep_nan(float d, float lo) {
#ifdef __CUDA_ARCH__
    float r;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(d), "f"(lo));
    return r;
#else
    return d < lo ? lo : d;
#endif
}

/** Larger of two values; a NaN `b` is ignored (the running maxima skip NaN). */
__device__ inline float vmax(float a, float b) { return fmaxf(a, b); }
__device__ inline double vmax(double a, double b) { return fmax(a, b); }

__device__ inline float f16_bits_to_f32(uint16_t h) {
#ifdef __CUDA_ARCH__
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    return f16_to_f32(h);
#endif
}
__device__ inline uint16_t f32_to_bf16_bits(float v) {
#ifdef __CUDA_ARCH__
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(v));
    return r;
#else
    return f32_to_bf16(v);
#endif
}
__device__ inline uint16_t f32_to_f16_bits(float v) {
#ifdef __CUDA_ARCH__
    unsigned short r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
    return r;
#else
    return f32_to_f16(v);
#endif
}

/** 2^x in f32 for the exponentials of the f32 kernels: ex2.approx.ftz (about
 * 2 ulp; results below 2^-126 flush to 0, as the CPU's exp_f32 gives 0 below
 * -87.33; NaN stays NaN). */
__device__ inline float fast_exp2(float x) {
#ifdef __CUDA_ARCH__
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
#else
    return exp2f(x);
#endif
}

/** Element i of a row of T (column stride cs), as C; through the read-only
 * data cache (the logits are never written by these kernels). */
template <class T, class C>
__device__ inline C load_elem(const char *base, int64_t cs, int64_t i) {
    const char *q = base + i * cs * (int64_t)sizeof(T);
    if constexpr (Elem<T>::code == ERA_CUDA_F32) {
        return (C)__ldg((const float *)q);
    } else if constexpr (Elem<T>::code == ERA_CUDA_F64) {
        return (C)__ldg((const double *)q);
    } else {
        uint16_t h = __ldg((const unsigned short *)q);
        if constexpr (Elem<T>::code == ERA_CUDA_F16)
            return (C)f16_bits_to_f32(h);
        else
            return (C)bf16_to_f32(h);
    }
}

/** Stores v (C) into element i of a row of T. */
template <class T, class C>
__device__ inline void store_elem(char *base, int64_t cs, int64_t i, C v) {
    char *q = base + i * cs * (int64_t)sizeof(T);
    if constexpr (Elem<T>::code == ERA_CUDA_BF16)
        *(uint16_t *)q = f32_to_bf16_bits((float)v);
    else if constexpr (Elem<T>::code == ERA_CUDA_F16)
        *(uint16_t *)q = f32_to_f16_bits((float)v);
    else
        Elem<T>::store(q, v);
}

// ------------------------------------------------------------- 16-byte vectors

struct alignas(16) V16 {
    uint32_t w[4];
};

__device__ inline V16 load16(const char *p) {
    V16 v;
#ifdef __CUDA_ARCH__
    uint4 u = __ldg((const uint4 *)p);
    v.w[0] = u.x;
    v.w[1] = u.y;
    v.w[2] = u.z;
    v.w[3] = u.w;
#else
    memcpy(&v, p, 16);
#endif
    return v;
}

__device__ inline void store16(char *p, const V16 &v) {
#ifdef __CUDA_ARCH__
    uint4 u;
    u.x = v.w[0];
    u.y = v.w[1];
    u.z = v.w[2];
    u.w = v.w[3];
    *(uint4 *)p = u;
#else
    memcpy(p, &v, 16);
#endif
}

/** The 16 / sizeof(T) elements of a vector, as C (little-endian lanes). */
template <class T, class C>
__device__ inline void unpack16(const V16 &v, C *out) {
    if constexpr (Elem<T>::code == ERA_CUDA_F32) {
        for (int j = 0; j < 4; ++j) out[j] = (C)bits_to_f32(v.w[j]);
    } else if constexpr (Elem<T>::code == ERA_CUDA_F64) {
        for (int j = 0; j < 2; ++j) {
            uint64_t u = (uint64_t)v.w[2 * j] | ((uint64_t)v.w[2 * j + 1] << 32);
            double d;
            memcpy(&d, &u, 8);
            out[j] = (C)d;
        }
    } else if constexpr (Elem<T>::code == ERA_CUDA_BF16) {
        for (int j = 0; j < 4; ++j) {
            out[2 * j] = (C)bits_to_f32(v.w[j] << 16);
            out[2 * j + 1] = (C)bits_to_f32(v.w[j] & 0xffff0000u);
        }
    } else {
        for (int j = 0; j < 4; ++j) {
            out[2 * j] = (C)f16_bits_to_f32((uint16_t)(v.w[j] & 0xffffu));
            out[2 * j + 1] = (C)f16_bits_to_f32((uint16_t)(v.w[j] >> 16));
        }
    }
}

/** Packs 16 / sizeof(T) values into a vector of T (rounding to nearest even). */
template <class T, class C>
__device__ inline V16 pack16(const C *o) {
    V16 v;
    if constexpr (Elem<T>::code == ERA_CUDA_F32) {
        for (int j = 0; j < 4; ++j) v.w[j] = f32_to_bits((float)o[j]);
    } else if constexpr (Elem<T>::code == ERA_CUDA_F64) {
        for (int j = 0; j < 2; ++j) {
            double d = (double)o[j];
            uint64_t u;
            memcpy(&u, &d, 8);
            v.w[2 * j] = (uint32_t)u;
            v.w[2 * j + 1] = (uint32_t)(u >> 32);
        }
    } else if constexpr (Elem<T>::code == ERA_CUDA_BF16) {
        for (int j = 0; j < 4; ++j)
            v.w[j] = (uint32_t)f32_to_bf16_bits((float)o[2 * j]) | ((uint32_t)f32_to_bf16_bits((float)o[2 * j + 1]) << 16);
    } else {
        for (int j = 0; j < 4; ++j)
            v.w[j] = (uint32_t)f32_to_f16_bits((float)o[2 * j]) | ((uint32_t)f32_to_f16_bits((float)o[2 * j + 1]) << 16);
    }
    return v;
}

/** A compile-time chunk length (so that the chunk loops unroll). */
template <int N>
struct Fixed {
    __device__ constexpr operator int() const { return N; }
};

/** How a block walks a row: 16-byte vectors when the row is contiguous and
 * its elements are aligned, else strided columns. */
struct RowPlan {
    bool vec;
    int64_t head;   // scalar columns before the first 16-byte boundary
    int64_t nvec;   // whole vectors after them
    int64_t tail0;  // first column after the vectors
};

template <class T>
__device__ inline RowPlan row_plan(const char *base, int64_t v, int64_t cs) {
    constexpr int N = 16 / (int)sizeof(T);
    RowPlan r;
    uintptr_t a = (uintptr_t)base;
    r.vec = cs == 1 && a % sizeof(T) == 0;
    r.head = r.nvec = 0;
    r.tail0 = 0;
    if (r.vec) {
        r.head = (int64_t)(((16 - a % 16) % 16) / sizeof(T));
        if (r.head > v) r.head = v;
        r.nvec = (v - r.head) / N;
        r.tail0 = r.head + r.nvec * N;
    }
    return r;
}

/** Calls f(x, n, i0, step) for every chunk of the row this thread owns:
 * x[j] (C) is column i0 + j*step, j < n (n <= 8). Vector plan: 16-byte
 * vectors (step 1) at columns head + 16/sizeof(T)*(t + 256*m), the scalar
 * head and tail columns one each; strided plan: 8 columns t + 256*j apart.
 * REV walks the same chunks in the opposite order. */
template <class T, class C, bool REV, class F>
__device__ inline void for_row(const char *base, int64_t v, int64_t cs, const RowPlan &plan, F &&f) {
    constexpr int N = 16 / (int)sizeof(T);
    const int64_t tid = threadIdx.x;
    if (plan.vec) {
        auto one = [&](int64_t i) {
            C x = load_elem<T, C>(base, 1, i);
            f(&x, Fixed<1>(), i, (int64_t)1);
        };
        auto vec = [&](const V16 &raw, int64_t j) {
            C x[N];
            unpack16<T, C>(raw, x);
            f(x, Fixed<N>(), plan.head + j * N, (int64_t)1);
        };
        const char *vb = base + plan.head * (int64_t)sizeof(T);
        if (!REV) {
            if (tid < plan.head) one(tid);
            int64_t j = tid;
            for (; j + NT < plan.nvec; j += 2 * NT) {
                V16 a = load16(vb + j * 16);
                V16 b = load16(vb + (j + NT) * 16);
                vec(a, j);
                vec(b, j + NT);
            }
            if (j < plan.nvec) vec(load16(vb + j * 16), j);
            if (plan.tail0 + tid < v) one(plan.tail0 + tid);
        } else {
            if (plan.tail0 + tid < v) one(plan.tail0 + tid);
            if (tid < plan.nvec) {
                int64_t j = tid + ((plan.nvec - 1 - tid) / NT) * NT;  // last vector of this thread
                for (; j - NT >= tid; j -= 2 * NT) {
                    V16 a = load16(vb + j * 16);
                    V16 b = load16(vb + (j - NT) * 16);
                    vec(a, j);
                    vec(b, j - NT);
                }
                if (j >= tid) vec(load16(vb + j * 16), j);
            }
            if (tid < plan.head) one(tid);
        }
    } else {
        const int64_t span = (int64_t)NT * 8;
        auto chunk = [&](int64_t b0) {
            int64_t i0 = b0 + tid;
            if (i0 >= v) return;
            int n = (int)((v - 1 - i0) / NT) + 1;
            if (n > 8) n = 8;
            C x[8];
            for (int j = 0; j < 8; ++j)  // a constant trip count keeps x in registers
                if (j < n) x[j] = load_elem<T, C>(base, cs, i0 + j * NT);
            f(x, n, i0, (int64_t)NT);
        };
        if (!REV) {
            for (int64_t b0 = 0; b0 < v; b0 += span) chunk(b0);
        } else {
            for (int64_t b0 = ((v - 1) / span) * span; b0 >= 0; b0 -= span) chunk(b0);
        }
    }
}

/** Writes o[0..n) (the values of a chunk from for_row) into the output row. */
template <class T, class C, class N>
__device__ inline void store_chunk(char *obase, int64_t ocs, bool ovec, const C *o, N n, int64_t i0, int64_t step) {
    constexpr int NV = 16 / (int)sizeof(T);
    if (ovec && (int)n == NV && step == 1) {
        store16(obase + i0 * (int64_t)sizeof(T), pack16<T, C>(o));
    } else {
        for (int j = 0; j < (int)n; ++j) store_elem<T, C>(obase, ocs, i0 + j * step, o[j]);
    }
}

/** Zeroes a row of T (v columns, column stride ocs). */
template <class T>
__device__ inline void zero_row(char *obase, int64_t v, int64_t ocs) {
    const int64_t tid = threadIdx.x;
    RowPlan plan = row_plan<T>(obase, v, ocs);
    if (plan.vec) {
        V16 z;
        z.w[0] = z.w[1] = z.w[2] = z.w[3] = 0;
        if (tid < plan.head) store_elem<T, float>(obase, 1, tid, 0.0f);
        char *vb = obase + plan.head * (int64_t)sizeof(T);
        for (int64_t j = tid; j < plan.nvec; j += NT) store16(vb + j * 16, z);
        if (plan.tail0 + tid < v) store_elem<T, float>(obase, 1, plan.tail0 + tid, 0.0f);
    } else {
        for (int64_t i = tid; i < v; i += NT) store_elem<T, float>(obase, ocs, i, 0.0f);
    }
}

// ------------------------------------------------------------- block reductions

template <class C>
__device__ inline C block_max_c(C v);
template <>
__device__ inline float block_max_c<float>(float v) {
    return block_max(v, sh_f);
}
template <>
__device__ inline double block_max_c<double>(double v) {
    return block_max(v, sh_d);
}

/** Sums of Q <= 4 values over the block, pairwise in an order fixed by blockDim (as block_sum). */
template <int Q>
__device__ inline void block_sums(double *v) {
    static_assert(Q >= 1 && Q <= 4, "sh_d holds 4 values per thread");
    const unsigned t = threadIdx.x;
    for (int q = 0; q < Q; ++q) sh_d[q * NT + t] = v[q];
    __syncthreads();
    for (unsigned s = NT / 2; s > 0; s >>= 1) {
        if (t < s)
            for (int q = 0; q < Q; ++q) sh_d[q * NT + t] += sh_d[q * NT + t + s];
        __syncthreads();
    }
    for (int q = 0; q < Q; ++q) v[q] = sh_d[q * NT];
    __syncthreads();
}

/** The K-th largest (K in [1, 256]) of one value per thread (no NaN). */
template <class C>
__device__ inline C kth_largest_of_threads(C v, uint32_t k) {
    const unsigned t = threadIdx.x;
    sh_d[t] = (double)v;
    __syncthreads();
    uint32_t rank = 0;
    for (unsigned s = 0; s < NT; ++s) {
        double w = sh_d[s];
        rank += (w > (double)v) || (w == (double)v && s < t);
    }
    if (rank == k - 1) sh_scalar[0] = (double)v;
    __syncthreads();
    C r = (C)sh_scalar[0];
    __syncthreads();
    return r;
}

// ------------------------------------------------------------- constants

/** TokenHead::f32_kernels: 1/T, k, 1/k and k/T are normal f32 numbers. */
__device__ inline bool f32_constants(const EraCudaToken &p) {
    double vals[4] = {p.inv_temperature, p.k, 1.0 / p.k, p.k * p.inv_temperature};
    for (int i = 0; i < 4; ++i) {
        float f = (float)vals[i];
        float a = fabsf(f);
        if (!(a >= 1.17549435e-38f && a <= 3.40282347e38f)) return false;
    }
    return true;
}

// ------------------------------------------------------------- row functions

/** What a row function needs of the parameter block, passed by value (the
 * row functions are not inlined: each gets its own registers, so the cold
 * paths do not cost the f32 streaming loop its occupancy). */
struct RowArgs {
    const char *base;  // logits row, column 0
    int64_t v;         // columns
    int64_t cs;        // column stride (elements)
    int64_t topk;      // vocab_topk (0: full vocabulary)
    double inv_t;      // 1/T
    double k;          // the scale k
};

}  // namespace era_tok

// The per-token row kernels: at most 64 registers, so that 4 blocks (1024
// threads, 32 KB of 16-byte loads in flight) share an SM; the cold paths (f64,
// top-K) may spill, the f32 streaming loop must not.
#define ERA_TOKEN_BOUNDS __launch_bounds__(ERA_CUDA_BLOCK_VECTOR, 4)
