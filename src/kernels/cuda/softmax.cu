#include "common.cuh"

// The softmax head's kernels (docs/math.md#softmax-forward, #softmax-backward,
// #softmax-numerics-near-the-upper-bound) and the head-free categorical
// entropy (docs/math.md#categorical-entropy). They mirror the CPU kernels of
// src/kernels/softmax.rs and src/kernels/vmath.rs:
// - f64 rows, and f32 rows of a head whose constants do not suit f32
//   (f64_math = 1, SoftmaxHead::f32_kernels false): the f64 algorithm, with h
//   and u near the upper bound from log1p, 1 - s_j of the largest entry as the
//   sum of the others, the one-hot and degenerate-slope cases;
// - other f32 rows: the f32 algorithm of softmax_head_row_f32 (h = slope*s + b,
//   u = -1 - ln h in f32), with the row sums in f64;
// - the entropy in f64 for every logits dtype, as the CPU computes it.
//
// One block (ERA_CUDA_BLOCK_VECTOR threads) per row, grid-stride over rows;
// thread t handles columns t, t + B, ... (coalesced when col_stride == 1). The
// first pass finds the maximum, its (first) index, the minimum and the sum of
// exponentials in one read (an online softmax: a thread's sum is rescaled when
// its maximum grows; the sum excluding the maximum is kept separately, so
// 1 - s_j needs no subtraction). The forward then writes in a second pass; the
// backward has a second pass for sum_i a_i s_i and writes in a third. A row is
// read completely (block reduction, which ends with __syncthreads) before any
// thread writes it, and each thread writes only the columns it reads itself,
// so `out` may alias `z` or `grad_out` exactly.

// Helpers live in their own namespace: build.rs compiles every .cu file as one
// translation unit.
namespace era_smax {

using namespace era_cuda;

constexpr double kDblMin = 2.2250738585072014e-308;  // smallest normal f64
constexpr float kFltMin = 1.17549435e-38f;            // smallest normal f32

/** A row of T elements: `base` is element 0, `step` the column stride in bytes. */
template <class T>
struct Row {
    char *base;
    int64_t step;
    __device__ Row(const EraCudaTensor &t, int64_t r)
        : base(t.data + row_offset(t, r) * (int64_t)sizeof(T)), step(t.col_stride * (int64_t)sizeof(T)) {}
    __device__ typename Elem<T>::Compute get(int64_t c) const { return Elem<T>::load(base + c * step); }
    __device__ void set(int64_t c, typename Elem<T>::Compute v) const { Elem<T>::store(base + c * step, v); }
};

/** Pairwise reduction over the block in an order fixed by blockDim (as
 * block_sum); combine(a, b) gets a from the lower thread. Every thread gets the
 * result; ends with __syncthreads. */
template <class S, class F>
__device__ inline S block_reduce(S v, S *shm, F combine) {
    unsigned t = threadIdx.x;
    shm[t] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) shm[t] = combine(shm[t], shm[t + s]);
        __syncthreads();
    }
    S r = shm[0];
    __syncthreads();
    return r;
}

template <class C>
__device__ inline C at_least(C v, C lo) {  // NaN-preserving max(v, lo)
    return v < lo ? lo : v;
}

template <class C>
__device__ inline C min_nan(C a, C b) {  // the smaller, NaN once one is NaN
    return (b < a || b != b) ? b : a;
}

__device__ inline float exp_c(float x) { return expf(x); }
__device__ inline double exp_c(double x) { return exp(x); }

// ------------------------------------------------------------- row statistics

/** One pass over a row: the maximum m, the index j of its first occurrence, the
 * minimum, and rest = sum_{i != j} exp(x_i - m) (the sum of exponentials is
 * 1 + rest). The exponentials are computed in C (f32 for the f32 path, as on
 * the CPU); the sums and rescalings in f64. A NaN entry poisons m (the row's
 * result is NaN); j < 0 until an entry above -inf is seen. */
template <class C>
struct RowStats {
    C m;
    C zmin;
    double rest;
    int64_t j;
};

template <class C>
__device__ inline RowStats<C> stats_init() {
    RowStats<C> s;
    s.m = -INFINITY;
    s.zmin = INFINITY;
    s.rest = 0.0;
    s.j = -1;
    return s;
}

template <class C>
__device__ inline void stats_add(RowStats<C> &st, C x, int64_t i) {
    if (st.m != st.m) return;
    if (x != x) {
        st.m = x;
        return;
    }
    if (x < st.zmin) st.zmin = x;
    if (x > st.m) {
        // the old maximum becomes one of the others
        if (st.j >= 0) st.rest = (st.rest + 1.0) * exp((double)st.m - (double)x);
        st.m = x;
        st.j = i;
    } else if (st.j >= 0) {
        st.rest += (double)exp_c((C)(x - st.m));
    }
}

template <class C>
__device__ inline RowStats<C> stats_combine(RowStats<C> a, RowStats<C> b) {
    if (a.m != a.m) return a;
    if (b.m != b.m) return b;
    C zmin = b.zmin < a.zmin ? b.zmin : a.zmin;
    RowStats<C> w, l;
    if (b.j < 0) {
        w = a;
    } else if (a.j < 0) {
        w = b;
    } else {
        bool a_wins = a.m > b.m || (a.m == b.m && a.j < b.j);
        w = a_wins ? a : b;
        l = a_wins ? b : a;
        w.rest += (l.rest + 1.0) * exp((double)l.m - (double)w.m);
    }
    w.zmin = zmin;
    return w;
}

/** The row's statistics over the block; every thread gets them. */
template <class T, class C>
__device__ inline RowStats<C> row_stats(const Row<T> &z, int64_t n, RowStats<C> *shm) {
    RowStats<C> st = stats_init<C>();
    for (int64_t c = threadIdx.x; c < n; c += blockDim.x) stats_add(st, (C)z.get(c), c);
    return block_reduce(st, shm, [](RowStats<C> a, RowStats<C> b) { return stats_combine(a, b); });
}

// ------------------------------------------------------------- f64 algorithm

/** h and u of a probability s, with one_minus_s = 1 - s computed without
 * cancellation (docs/math.md#softmax-numerics-near-the-upper-bound; h_u of
 * src/kernels/softmax.rs). */
__device__ inline void h_u(const EraCudaSoftmax &p, double s, double one_minus_s, double &h, double &u) {
    double drop = p.slope * one_minus_s;  // ub - h
    if (drop <= 0.5 * p.ub) {
        h = p.ub - drop;
        u = at_least(p.u_ub - log1p(-drop / p.ub), 0.0);
    } else {
        h = at_least(p.slope * s + p.b, kDblMin);
        u = at_least(-1.0 - log(h), 0.0);
    }
}

__device__ inline double head_w(const EraCudaSoftmax &p, double s, double one_minus_s) {
    double h, u;
    h_u(p, s, one_minus_s, h, u);
    return -1.0 - sqrt(2.0 * u) - 0.75 * u;
}

/** m, 1/sum and 1 - s_j of a row; NaN when the maximum is not finite. */
struct Softmax64 {
    double m, inv, cj, zmin;
    int64_t j;
};

__device__ inline Softmax64 softmax64(const RowStats<double> &st) {
    Softmax64 s;
    s.m = st.m;
    s.zmin = st.zmin;
    s.j = st.j < 0 ? 0 : st.j;
    double total = isfinite(st.m) ? 1.0 + st.rest : (double)NAN;
    s.inv = 1.0 / total;
    s.cj = st.rest * s.inv;
    return s;
}

template <class T>
__device__ inline void forward_f64(const EraCudaSoftmax &p) {
    __shared__ RowStats<double> shm[ERA_CUDA_BLOCK_VECTOR];
    typedef typename Elem<T>::Compute Out;
    for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
        Row<T> z(p.z, r), out(p.out, r);
        const Softmax64 sm = softmax64(row_stats<T, double>(z, p.n, shm));
        // min_i w_i: w increases with s_i, so it is w at the smallest entry (which
        // is the largest one, with its own complement, only if all are equal)
        double smin = exp(sm.zmin - sm.m) * sm.inv;
        double wmin = head_w(p, smin, 1.0 - smin);
        if (sm.zmin == sm.m) wmin = min_nan(head_w(p, smin, sm.cj), wmin);
        for (int64_t c = threadIdx.x; c < p.n; c += blockDim.x) {
            double s = exp((double)z.get(c) - sm.m) * sm.inv;
            double w = head_w(p, s, c == sm.j ? sm.cj : 1.0 - s);
            out.set(c, (Out)(w - wmin));
        }
    }
}

/** Partial sums of the backward's second pass. */
struct Dot64 {
    double rest_dot;  // sum_{i != j} a_i s_i
    double bad_g;     // count of non-finite g
    double aj, aj_cj; // a_j and a_j (1 - s_j) (from the thread that holds j; 0 elsewhere)
};

__device__ inline Dot64 dot_combine(Dot64 a, Dot64 b) {
    a.rest_dot += b.rest_dot;
    a.bad_g += b.bad_g;
    a.aj += b.aj;
    a.aj_cj += b.aj_cj;
    return a;
}

template <class T>
__device__ inline void backward_f64(const EraCudaSoftmax &p) {
    __shared__ RowStats<double> shm[ERA_CUDA_BLOCK_VECTOR];
    __shared__ Dot64 shd[ERA_CUDA_BLOCK_VECTOR];
    typedef typename Elem<T>::Compute Out;
    for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
        Row<T> z(p.z, r), g(p.grad_out, r), out(p.out, r);
        if (p.slope == 0.0) {
            // degenerate head (C = n*ub): the output does not depend on z
            for (int64_t c = threadIdx.x; c < p.n; c += blockDim.x) out.set(c, (Out)0.0);
            continue;
        }
        const Softmax64 sm = softmax64(row_stats<T, double>(z, p.n, shm));
        Dot64 d = {0.0, 0.0, 0.0, 0.0};
        for (int64_t c = threadIdx.x; c < p.n; c += blockDim.x) {
            double s = exp((double)z.get(c) - sm.m) * sm.inv;
            double gi = (double)g.get(c);
            if (!isfinite(gi)) d.bad_g += 1.0;
            if (c == sm.j) {
                if (gi != 0.0) {
                    double h, u;
                    h_u(p, s, sm.cj, h, u);
                    // u >= slope*(1 - s_j)/ub > 0 here; keep it away from an underflow to 0
                    double rr = sqrt(fmax(2.0 * u, kDblMin));
                    d.aj = gi * (1.0 / rr + 0.75) / h;
                    d.aj_cj = gi * (sm.cj / rr + 0.75 * sm.cj) / h;
                }
            } else if (gi != 0.0 && s != 0.0) {
                double h, u;
                h_u(p, s, 1.0 - s, h, u);
                d.rest_dot += gi * (1.0 / sqrt(2.0 * u) + 0.75) / h * s;
            }
        }
        d = block_reduce(d, shd, [](Dot64 a, Dot64 b) { return dot_combine(a, b); });
        // a row that is one-hot in floating point: the gradient's limit, 0
        const bool one_hot = sm.cj == 0.0 && isfinite(sm.m) && d.bad_g == 0.0;
        const double sj = sm.inv;  // exp(z_j - m) = 1
        const double dot = d.aj * sj + d.rest_dot;
        for (int64_t c = threadIdx.x; c < p.n; c += blockDim.x) {
            double v;
            if (one_hot) {
                v = 0.0;
            } else {
                double s = exp((double)z.get(c) - sm.m) * sm.inv;
                if (c == sm.j) {
                    v = p.slope * s * (d.aj_cj - d.rest_dot);
                } else if (s == 0.0) {
                    v = 0.0;
                } else {
                    double gi = (double)g.get(c);
                    double ai = 0.0;
                    if (gi != 0.0) {
                        double h, u;
                        h_u(p, s, 1.0 - s, h, u);
                        ai = gi * (1.0 / sqrt(2.0 * u) + 0.75) / h;
                    }
                    v = p.slope * s * (ai - dot);
                }
            }
            out.set(c, (Out)v);
        }
    }
}

// ------------------------------------------------------------- f32 algorithm

/** w of softmax_head_w (src/kernels/softmax.rs). */
__device__ inline float head_w32(float slope, float b, float s) {
    float h = at_least(fmaf(slope, s, b), kFltMin);
    float u = at_least(-1.0f - logf(h), 0.0f);
    return -1.0f - sqrtf(2.0f * u) - 0.75f * u;
}

/** a of softmax_head_a (src/kernels/softmax.rs): 0 where g or s is 0. */
__device__ inline float head_a32(float slope, float b, float g, float s) {
    float h = at_least(fmaf(slope, s, b), kFltMin);
    float u = at_least(-1.0f - logf(h), kFltMin);
    float a = g * (1.0f / sqrtf(2.0f * u) + 0.75f) / h;
    return (g == 0.0f || s == 0.0f) ? 0.0f : a;
}

/** 1/sum of exp(z - m) in f32, NaN when the maximum is not finite. */
__device__ inline float inv_sum32(const RowStats<float> &st) {
    double total = isfinite(st.m) ? 1.0 + st.rest : (double)NAN;
    return (float)(1.0 / total);
}

template <class T>
__device__ inline void forward_f32(const EraCudaSoftmax &p) {
    __shared__ RowStats<float> shm[ERA_CUDA_BLOCK_VECTOR];
    const float slope = (float)p.slope, b = (float)p.b;
    for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
        Row<T> z(p.z, r), out(p.out, r);
        const RowStats<float> st = row_stats<T, float>(z, p.n, shm);
        const float inv = inv_sum32(st);
        // the smallest w is at the smallest entry (w increases with s)
        const float wmin = head_w32(slope, b, expf(st.zmin - st.m) * inv);
        for (int64_t c = threadIdx.x; c < p.n; c += blockDim.x) {
            float s = expf((float)z.get(c) - st.m) * inv;
            out.set(c, head_w32(slope, b, s) - wmin);
        }
    }
}

template <class T>
__device__ inline void backward_f32(const EraCudaSoftmax &p) {
    __shared__ RowStats<float> shm[ERA_CUDA_BLOCK_VECTOR];
    __shared__ double shd[ERA_CUDA_BLOCK_VECTOR];
    const float slope = (float)p.slope, b = (float)p.b;
    for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
        Row<T> z(p.z, r), g(p.grad_out, r), out(p.out, r);
        if (slope == 0.0f) {
            for (int64_t c = threadIdx.x; c < p.n; c += blockDim.x) out.set(c, 0.0f);
            continue;
        }
        const RowStats<float> st = row_stats<T, float>(z, p.n, shm);
        const float inv = inv_sum32(st);
        double dot = 0.0;
        for (int64_t c = threadIdx.x; c < p.n; c += blockDim.x) {
            float s = expf((float)z.get(c) - st.m) * inv;
            dot += (double)head_a32(slope, b, (float)g.get(c), s) * (double)s;
        }
        const float dotf = (float)block_sum(dot, shd);
        for (int64_t c = threadIdx.x; c < p.n; c += blockDim.x) {
            float s = expf((float)z.get(c) - st.m) * inv;
            float a = head_a32(slope, b, (float)g.get(c), s);
            out.set(c, slope * s * (a - dotf));
        }
    }
}

template <class T>
__device__ inline void softmax_forward(const EraCudaSoftmax &p) {
    if constexpr (Elem<T>::code == ERA_CUDA_F64) {
        forward_f64<T>(p);
    } else {
        if (p.f64_math) forward_f64<T>(p);
        else forward_f32<T>(p);
    }
}

template <class T>
__device__ inline void softmax_backward(const EraCudaSoftmax &p) {
    if constexpr (Elem<T>::code == ERA_CUDA_F64) {
        backward_f64<T>(p);
    } else {
        if (p.f64_math) backward_f64<T>(p);
        else backward_f32<T>(p);
    }
}

// ------------------------------------------------------------- categorical entropy

/** Online form of H = ln(s) - sz/s with s = sum_i e_i, sz = sum_{e_i > 0}
 * e_i (x_i - m), e_i = exp(x_i - m), relative to the running maximum m. */
struct EntStats {
    double m, s, sz;
};

__device__ inline void ent_add(EntStats &st, double x) {
    if (st.m != st.m) return;
    if (x != x) {
        st.m = x;
        return;
    }
    if (x > st.m) {
        if (st.m == -INFINITY) {
            st.s = 1.0;
            st.sz = 0.0;
        } else {
            double c = exp(st.m - x);
            st.sz = c * (st.sz + st.s * (st.m - x));
            st.s = st.s * c + 1.0;
        }
        st.m = x;
    } else if (st.m > -INFINITY) {
        double e = exp(x - st.m);
        st.s += e;
        if (e > 0.0) st.sz += e * (x - st.m);
    }
}

__device__ inline EntStats ent_combine(EntStats a, EntStats b) {
    if (a.m != a.m) return a;
    if (b.m != b.m) return b;
    EntStats w = a.m >= b.m ? a : b;
    EntStats l = a.m >= b.m ? b : a;
    if (l.m == -INFINITY) return w;  // nothing but -inf (or nothing) on that side
    double c = exp(l.m - w.m);
    w.sz += c * (l.sz + l.s * (l.m - w.m));
    w.s += c * l.s;
    return w;
}

template <class T>
__device__ inline void softmax_entropy(const EraCudaEntropy &p) {
    __shared__ EntStats shm[ERA_CUDA_BLOCK_VECTOR];
    for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
        Row<T> x(p.x, r);
        EntStats st = {-INFINITY, 0.0, 0.0};
        for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) ent_add(st, (double)x.get(c) * p.inv_temperature);
        st = block_reduce(st, shm, [](EntStats a, EntStats b) { return ent_combine(a, b); });
        if (threadIdx.x == 0) store_dyn(p.out, r, isfinite(st.m) ? log(st.s) - st.sz / st.s : (double)NAN);
    }
}

}  // namespace era_smax

extern "C" __global__ void era_softmax_forward_f32(const EraCudaSoftmax p) { era_smax::softmax_forward<float>(p); }
extern "C" __global__ void era_softmax_forward_f64(const EraCudaSoftmax p) { era_smax::softmax_forward<double>(p); }
extern "C" __global__ void era_softmax_backward_f32(const EraCudaSoftmax p) { era_smax::softmax_backward<float>(p); }
extern "C" __global__ void era_softmax_backward_f64(const EraCudaSoftmax p) { era_smax::softmax_backward<double>(p); }

extern "C" __global__ void era_softmax_entropy_f32(const EraCudaEntropy p) { era_smax::softmax_entropy<float>(p); }
extern "C" __global__ void era_softmax_entropy_f64(const EraCudaEntropy p) { era_smax::softmax_entropy<double>(p); }
extern "C" __global__ void era_softmax_entropy_bf16(const EraCudaEntropy p) {
    era_smax::softmax_entropy<era_cuda::bf16_t>(p);
}
extern "C" __global__ void era_softmax_entropy_f16(const EraCudaEntropy p) {
    era_smax::softmax_entropy<era_cuda::f16_t>(p);
}
