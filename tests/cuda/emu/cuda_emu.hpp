// A CPU emulation of the CUDA execution model, so that era's kernels
// (src/kernels/cuda/*.cu) compile with g++ and run on a machine without a GPU.
// Use it as a forced include:
//
//   g++ -std=c++20 -O1 -x c++ -include tests/cuda/emu/cuda_emu.hpp -I src/kernels/cuda
//       src/kernels/cuda/gaussian.cu test.cpp
//
// Model:
// - Blocks run ONE AT A TIME, in the order of their linear index (x fastest).
// - The threads of a block are cooperative fibers on the launching OS thread
//   (one stack each, reused across blocks and launches). A fiber runs until it
//   reaches a barrier (__syncthreads, or a warp function) or returns; when every
//   live fiber waits, the barrier is released. This is ~100x faster than one OS
//   thread per CUDA thread on a small machine, and deterministic. To expose
//   missing barriers, the fibers of a phase run in ascending thread order in
//   even phases of even blocks and in descending order otherwise, so a thread
//   that reads what another writes in the same phase sees a stale value in one
//   of the two orders.
// - `__shared__` is `static`: valid because only one block runs at a time. It
//   is not cleared between blocks (nor is real shared memory).
// - A thread that returns from the kernel drops out of later barriers (CUDA
//   leaves a barrier after an early exit undefined; do not rely on it). A
//   barrier that can never be released (divergent __syncthreads, a warp whose
//   threads wait at different barriers) aborts with a message: a deadlock on
//   the GPU.
// - `threadIdx`, `blockIdx` are thread_local (set at every switch), `blockDim`,
//   `gridDim` globals.
// - Warp functions (__shfl*_sync, __ballot_sync, __any_sync, __all_sync,
//   __syncwarp) act on warps of 32 consecutive linear thread ids: EVERY live
//   thread of the warp must call them (full mask; the mask argument is ignored).
// - Atomics (atomicAdd, atomicMax, ...) are plain read-modify-writes (one
//   fiber runs at a time).
// - Math: <cmath>/<math.h> (float overloads included: expf, logf, log1pf,
//   rintf, fmaxf, ... and exp(float) etc.), plus the CUDA-only functions
//   defined below (__expf, __logf, rsqrtf, normcdf, erfcx, ...). The
//   intrinsics are exact here (full-precision library calls), so a kernel that
//   uses __expf is more accurate in the emulator than on the GPU.
// - A launch is synchronous: emu_launch returns when every block has run.
//   Launches from several host threads are serialised.
// - x86-64 uses a small assembly context switch; other targets (or
//   -DCUDA_EMU_UCONTEXT) use ucontext.
//
// Interface (stable): emu_launch(kernel, grid, block, params), grid and block
// either unsigned (1-D) or dim3.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <math.h>
#include <mutex>
#include <string.h>
#include <sys/mman.h>
#include <vector>
#if defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
#define CUDA_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

// ------------------------------------------------------------- qualifiers

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
// __noinline__ is not defined: libstdc++ spells __attribute__((__noinline__)).
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#ifndef __restrict__
#define __restrict__ __restrict
#endif

// ------------------------------------------------------------- indices

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef dim3 uint3;

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
constexpr int warpSize = 32;

// ------------------------------------------------------------- fibers

#if CUDA_EMU_ASM_SWITCH
// cuda_emu_switch(void **save_sp, void *new_sp): saves the callee-saved
// registers, MXCSR and the x87 control word on the current stack, stores the
// stack pointer in *save_sp and resumes the context saved at new_sp.
__asm__(R"(
    .text
    .weak cuda_emu_switch
    .type cuda_emu_switch,@function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch,.-cuda_emu_switch
)");
extern "C" void cuda_emu_switch(void **save_sp, void *new_sp);
#endif

namespace cuda_emu {

enum FiberState { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

constexpr size_t kStackBytes = 1u << 20;  // per thread; a guard page below
constexpr size_t kGuardBytes = 4096;

struct Fiber {
    char *stack = nullptr;  // lowest address (guard page first)
    FiberState state = DONE;
#if CUDA_EMU_ASM_SWITCH
    void *sp = nullptr;
#else
    ucontext_t ctx;
#endif
};

struct Scheduler {
    std::vector<Fiber> fibers;
    unsigned nthreads = 0;
    unsigned current = 0;
    std::vector<uint64_t> warp_buf;  // 32 slots per warp (shuffles)
    void (*body)(const void *, const void *) = nullptr;
    const void *kernel = nullptr;
    const void *param = nullptr;
#if CUDA_EMU_ASM_SWITCH
    void *sched_sp = nullptr;
#else
    ucontext_t sched_ctx;
#endif

    ~Scheduler() {
        for (auto &f : fibers)
            if (f.stack) munmap(f.stack, kStackBytes + kGuardBytes);
    }

    void ensure(unsigned n) {
        while (fibers.size() < n) {
            Fiber f;
            void *m = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (m == MAP_FAILED) {
                fprintf(stderr, "cuda_emu: cannot map a thread stack\n");
                abort();
            }
            mprotect(m, kGuardBytes, PROT_NONE);
            f.stack = (char *)m;
            fibers.push_back(f);
        }
        nthreads = n;
        warp_buf.assign(32u * ((n + 31u) / 32u), 0);
    }

    void set_thread_idx(unsigned i) {
        threadIdx = uint3(i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y));
    }

    static void entry();

    void init_fiber(unsigned i) {
        Fiber &f = fibers[i];
        f.state = RUNNABLE;
#if CUDA_EMU_ASM_SWITCH
        uintptr_t top = ((uintptr_t)(f.stack + kGuardBytes + kStackBytes)) & ~(uintptr_t)15;
        uint64_t *sp = (uint64_t *)top;
        *--sp = 0;                         // fake return address of entry (never used)
        *--sp = (uint64_t)(uintptr_t)&entry;  // where cuda_emu_switch returns to
        for (int r = 0; r < 6; ++r) *--sp = 0;  // rbp rbx r12 r13 r14 r15
        --sp;
        uint32_t csr[2] = {0x1f80u, 0x037fu};  // default MXCSR, x87 control word
        memcpy(sp, csr, 8);
        f.sp = sp;
#else
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack + kGuardBytes;
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, &entry, 0);
#endif
    }

    void resume(unsigned i) {
        current = i;
        set_thread_idx(i);
#if CUDA_EMU_ASM_SWITCH
        cuda_emu_switch(&sched_sp, fibers[i].sp);
#else
        swapcontext(&sched_ctx, &fibers[i].ctx);
#endif
    }

    /** Called on a fiber: parks it in `state` and returns to the scheduler. */
    void park(FiberState state) {
        Fiber &f = fibers[current];
        f.state = state;
#if CUDA_EMU_ASM_SWITCH
        cuda_emu_switch(&f.sp, sched_sp);
#else
        swapcontext(&f.ctx, &sched_ctx);
#endif
    }

    void run_block(unsigned linear_block) {
        unsigned n = nthreads;
        for (unsigned i = 0; i < n; ++i) init_fiber(i);
        unsigned nwarps = (n + 31u) / 32u;
        for (unsigned phase = 0;; ++phase) {
            bool forward = ((linear_block + phase) & 1u) == 0;
            for (unsigned j = 0; j < n; ++j) {
                unsigned i = forward ? j : n - 1 - j;
                if (fibers[i].state == RUNNABLE) resume(i);
            }
            unsigned live = 0, at_block = 0;
            for (unsigned i = 0; i < n; ++i) {
                live += fibers[i].state != DONE;
                at_block += fibers[i].state == AT_BLOCK_BARRIER;
            }
            if (live == 0) return;
            bool released = false;
            for (unsigned w = 0; w < nwarps; ++w) {
                unsigned lo = 32u * w, hi = lo + 32u < n ? lo + 32u : n;
                unsigned wl = 0, ww = 0;
                for (unsigned i = lo; i < hi; ++i) {
                    wl += fibers[i].state != DONE;
                    ww += fibers[i].state == AT_WARP_BARRIER;
                }
                if (ww > 0 && ww == wl) {
                    for (unsigned i = lo; i < hi; ++i)
                        if (fibers[i].state == AT_WARP_BARRIER) fibers[i].state = RUNNABLE;
                    released = true;
                }
            }
            if (released) continue;
            if (at_block == live) {
                for (unsigned i = 0; i < n; ++i)
                    if (fibers[i].state == AT_BLOCK_BARRIER) fibers[i].state = RUNNABLE;
                continue;
            }
            fprintf(stderr,
                    "cuda_emu: deadlock in block (%u,%u,%u): %u live threads, %u at __syncthreads, "
                    "the others at warp barriers their warps do not all reach\n",
                    blockIdx.x, blockIdx.y, blockIdx.z, live, at_block);
            abort();
        }
    }

    void run(dim3 grid, dim3 block) {
        unsigned n = block.x * block.y * block.z;
        if (block.x == 0 || block.y == 0 || block.z == 0 || n > 1024) {
            fprintf(stderr, "cuda_emu: invalid block size (%u,%u,%u)\n", block.x, block.y, block.z);
            abort();
        }
        ensure(n);
        blockDim = block;
        gridDim = grid;
        unsigned linear = 0;
        for (unsigned bz = 0; bz < grid.z; ++bz)
            for (unsigned by = 0; by < grid.y; ++by)
                for (unsigned bx = 0; bx < grid.x; ++bx) {
                    blockIdx = uint3(bx, by, bz);
                    run_block(linear++);
                }
    }
};

inline Scheduler &sched() {
    static Scheduler s;
    return s;
}

inline void Scheduler::entry() {
    Scheduler &s = sched();
    s.body(s.kernel, s.param);
    s.park(DONE);
    abort();  // a finished fiber is never resumed
}

inline std::mutex &launch_mutex() {
    static std::mutex m;
    return m;
}

template <class P>
void trampoline(const void *kernel, const void *param) {
    auto k = reinterpret_cast<void (*)(P)>(const_cast<void *>(kernel));
    k(*static_cast<const P *>(param));
}

inline unsigned linear_tid() { return sched().current; }
inline unsigned lane_id() { return sched().current % 32u; }
inline unsigned warp_id() { return sched().current / 32u; }
inline void warp_barrier() { sched().park(AT_WARP_BARRIER); }

template <class T>
T warp_exchange(T v, unsigned src_lane) {
    static_assert(sizeof(T) <= 8, "cuda_emu: shuffles of at most 8 bytes");
    uint64_t *buf = &sched().warp_buf[32u * warp_id()];
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    buf[lane_id()] = bits;
    warp_barrier();
    uint64_t got = buf[src_lane];
    warp_barrier();
    T r;
    memcpy(&r, &got, sizeof(T));
    return r;
}

}  // namespace cuda_emu

/** Runs `kernel(p)` on a grid of `grid` blocks of `block` threads; returns when done. */
template <class P>
void emu_launch(void (*kernel)(P), dim3 grid, dim3 block, const P &p) {
    std::lock_guard<std::mutex> lk(cuda_emu::launch_mutex());
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
    cuda_emu::Scheduler &s = cuda_emu::sched();
    s.body = &cuda_emu::trampoline<P>;
    s.kernel = reinterpret_cast<const void *>(kernel);
    s.param = &p;
    s.run(grid, block);
}
template <class P>
void emu_launch(void (*kernel)(P), unsigned grid, unsigned block, const P &p) {
    emu_launch(kernel, dim3(grid), dim3(block), p);
}

// ------------------------------------------------------------- synchronisation

inline void __syncthreads() { cuda_emu::sched().park(cuda_emu::AT_BLOCK_BARRIER); }
inline int __syncthreads_count(int pred) {
    static int count = 0;
    __syncthreads();
    count += pred != 0;
    __syncthreads();
    int r = count;
    __syncthreads();
    if (cuda_emu::linear_tid() == 0) count = 0;
    __syncthreads();
    return r;
}
inline int __syncthreads_or(int pred) { return __syncthreads_count(pred) != 0; }
inline int __syncthreads_and(int pred) {
    return __syncthreads_count(pred) == (int)(blockDim.x * blockDim.y * blockDim.z);
}
inline void __syncwarp(unsigned = 0xffffffffu) { cuda_emu::warp_barrier(); }
inline void __threadfence() {}
inline void __threadfence_block() {}
inline unsigned __activemask() { return 0xffffffffu; }

// ------------------------------------------------------------- warp functions

template <class T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
    unsigned lane = cuda_emu::lane_id();
    unsigned base = lane & ~(unsigned)(width - 1);
    return cuda_emu::warp_exchange(v, base + ((unsigned)src & (unsigned)(width - 1)));
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    unsigned lane = cuda_emu::lane_id();
    unsigned src = lane ^ (unsigned)mask;
    if (src / (unsigned)width != lane / (unsigned)width) src = lane;
    return cuda_emu::warp_exchange(v, src);
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    unsigned lane = cuda_emu::lane_id();
    unsigned src = (lane % (unsigned)width) + delta < (unsigned)width ? lane + delta : lane;
    return cuda_emu::warp_exchange(v, src);
}
template <class T>
T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    unsigned lane = cuda_emu::lane_id();
    unsigned src = (lane % (unsigned)width) >= delta ? lane - delta : lane;
    return cuda_emu::warp_exchange(v, src);
}
inline unsigned __ballot_sync(unsigned, int pred) {
    unsigned r = 0;
    for (unsigned l = 0; l < 32; ++l) {
        unsigned b = cuda_emu::warp_exchange<unsigned>(pred ? 1u : 0u, l);
        r |= b << l;
    }
    return r;
}
inline int __any_sync(unsigned m, int pred) { return __ballot_sync(m, pred) != 0; }
inline int __all_sync(unsigned m, int pred) {
    unsigned w = cuda_emu::warp_id();
    unsigned size = (unsigned)(blockDim.x * blockDim.y * blockDim.z) - 32u * w;
    unsigned full = size >= 32 ? 0xffffffffu : ((1u << size) - 1u);
    return (__ballot_sync(m, pred) & full) == full;
}

// ------------------------------------------------------------- atomics

template <class T>
T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }
template <class T>
T atomicSub(T *p, T v) { T o = *p; *p = o - v; return o; }
template <class T>
T atomicExch(T *p, T v) { T o = *p; *p = v; return o; }
template <class T>
T atomicCAS(T *p, T expected, T desired) { T o = *p; if (o == expected) *p = desired; return o; }
template <class T>
T atomicMax(T *p, T v) { T o = *p; if (o < v) *p = v; return o; }
template <class T>
T atomicMin(T *p, T v) { T o = *p; if (v < o) *p = v; return o; }
template <class T>
T atomicOr(T *p, T v) { T o = *p; *p = o | v; return o; }
template <class T>
T atomicAnd(T *p, T v) { T o = *p; *p = o & v; return o; }

// ------------------------------------------------------------- math extras

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a > b ? a : b; }

inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline double __drcp_rn(double x) { return 1.0 / x; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __double2float_rn(double x) { return (float)x; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline long long __double_as_longlong(double d) { long long i; memcpy(&i, &d, 8); return i; }
inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }
inline double normcdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752440); }
inline float normcdff(float x) { return (float)normcdf((double)x); }
/** Scaled complementary error function exp(x^2)*erfc(x). */
inline double erfcx(double x) {
    if (x < 25.0) return (double)(expl((long double)x * x) * erfcl((long double)x));
    // asymptotic series, relative error far below double epsilon for x >= 25
    double x2 = x * x;
    return 0.56418958354775628695 / x * (1.0 - 0.5 / x2 + 0.75 / (x2 * x2) - 1.875 / (x2 * x2 * x2));
}
inline float erfcxf(float x) { return (float)erfcx((double)x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
template <class T>
inline T __ldg(const T *p) { return *p; }
