#include "common.cuh"

// The Gaussian head's kernels (docs/math.md#gaussian-forward,
// #gaussian-backward), the reduction of its per-row d/d delta (era_sum_rows),
// and the head-free Gaussian and truncated-normal entropies
// (docs/math.md#gaussian-entropy, #truncated-normal-entropy). They mirror the
// CPU kernels of src/kernels/gaussian.rs: f64 rows in f64; f32 rows in f32
// (exponentials, the affine map, the clip) with the row sums in f64; the
// entropies in f64 for both dtypes, as the CPU path computes them.
//
// One thread per row (block ERA_CUDA_BLOCK_ROWS), grid-stride over rows. Rows
// of up to 16 (f32) or 8 (f64) columns are kept in registers; longer rows are
// read again for each pass (each pass reads element i before the last pass writes it, so an
// `out` that aliases `z` or `grad_out` exactly is safe).

// Helpers live in their own namespace: build.rs compiles every .cu file as one
// translation unit.
namespace era_gauss {

using namespace era_cuda;

constexpr double kL2PE = 2.8378770664093453;  // ln(2*pi*e)

/** NaN-preserving clip(y, lo, hi) (docs/math.md#notation). */
template <class C>
__device__ inline C clip(C y, C lo, C hi) {
    return y < lo ? lo : (y > hi ? hi : y);
}

/** The row's k: k_scalar, or k_base + delta[r]. A per-row delta that makes the
 * target infeasible (k > 0 beyond rounding) or is NaN gives NaN: the launcher
 * cannot check device values (src/heads/cuda.rs), and the row then gets NaN
 * log-stds instead of a silently clipped result. */
template <class T>
__device__ inline double row_k(const EraCudaGaussian &p, int64_t r) {
    if (p.delta_mode == 0) return p.k_scalar;
    double d = Elem<T>::load(p.delta.data + row_offset(p.delta, r) * (int64_t)sizeof(T));
    double k = p.k_base + d;
    // k = H0 + delta - D*(hi + L2PE/2): a rounding residue of a feasible delta is
    // a few ulps of the terms that make it up
    double scale = fabs(p.k_base) + fabs(d) + (double)p.dim * (fabs(p.hi) + kL2PE);
    double tol = 64.0 * 2.220446049250313e-16 * scale;
    return (k <= tol) ? k : (double)NAN;
}

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

/** NaN-propagating maximum step (a NaN, once seen, stays). */
template <class C>
__device__ inline C max_nan(C a, C v) {
    return (v > a || v != v) ? v : a;
}

// ------------------------------------------------------------- f32 rows

/** Forward of one f32 row; CAP > 0 keeps the row in registers (dim <= CAP). */
template <int CAP>
__device__ inline void forward_row_f32(const EraCudaGaussian &p, int64_t r) {
    const int64_t D = p.dim;
    Row<float> z(p.z, r), out(p.out, r);
    const float lo = (float)p.lo, hi = (float)p.hi;
    const double k = row_k<float>(p, r);
    float v[CAP > 0 ? CAP : 1];
    float m = -INFINITY;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                v[c] = z.get(c);
                m = max_nan(m, v[c]);
            }
    } else {
        for (int64_t c = 0; c < D; ++c) m = max_nan(m, z.get(c));
    }
    double s = 0.0;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                v[c] = expf(v[c] - m);
                s += (double)v[c];
            }
    } else {
        for (int64_t c = 0; c < D; ++c) s += (double)expf(z.get(c) - m);
    }
    const float f = (float)(k / s);
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) out.set(c, clip(fmaf(f, v[c], hi), lo, hi));
    } else {
        for (int64_t c = 0; c < D; ++c) out.set(c, clip(fmaf(f, expf(z.get(c) - m), hi), lo, hi));
    }
}

/** Backward of one f32 row: grad_z into out, returns d/d delta (sum_i g_i m_i s_i). */
template <int CAP>
__device__ inline double backward_row_f32(const EraCudaGaussian &p, int64_t r) {
    const int64_t D = p.dim;
    Row<float> z(p.z, r), g(p.grad_out, r), out(p.out, r);
    const float lo = (float)p.lo, hi = (float)p.hi;
    const double k = row_k<float>(p, r);
    const float kf = (float)k;
    float sv[CAP > 0 ? CAP : 1], gv[CAP > 0 ? CAP : 1];
    float m = -INFINITY;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                sv[c] = z.get(c);
                gv[c] = g.get(c);
                m = max_nan(m, sv[c]);
            }
    } else {
        for (int64_t c = 0; c < D; ++c) m = max_nan(m, z.get(c));
    }
    double s = 0.0;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                sv[c] = expf(sv[c] - m);
                s += (double)sv[c];
            }
    } else {
        for (int64_t c = 0; c < D; ++c) s += (double)expf(z.get(c) - m);
    }
    const float inv = (float)(1.0 / s);
    // m_i = 1 iff lo < y_i < hi strictly; a NaN y passes no gradient (and s_i = NaN
    // still makes the dot product NaN, as on the CPU)
    auto gm = [&](float gi, float si) {
        float y = fmaf(kf, si, hi);
        return (lo < y && y < hi) ? gi : 0.0f;
    };
    double dot = 0.0;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                sv[c] *= inv;
                gv[c] = gm(gv[c], sv[c]);
                dot += (double)gv[c] * (double)sv[c];
            }
    } else {
        for (int64_t c = 0; c < D; ++c) {
            float si = expf(z.get(c) - m) * inv;
            dot += (double)gm(g.get(c), si) * (double)si;
        }
    }
    const float dotf = (float)dot;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) out.set(c, kf * sv[c] * (gv[c] - dotf));
    } else {
        for (int64_t c = 0; c < D; ++c) {
            float si = expf(z.get(c) - m) * inv;
            float gi = gm(g.get(c), si);
            out.set(c, kf * si * (gi - dotf));
        }
    }
    return k == k ? dot : k;
}

// ------------------------------------------------------------- f64 rows

template <int CAP>
__device__ inline void forward_row_f64(const EraCudaGaussian &p, int64_t r) {
    const int64_t D = p.dim;
    Row<double> z(p.z, r), out(p.out, r);
    const double lo = p.lo, hi = p.hi;
    const double k = row_k<double>(p, r);
    double v[CAP > 0 ? CAP : 1];
    double m = -INFINITY;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                v[c] = z.get(c);
                m = max_nan(m, v[c]);
            }
    } else {
        for (int64_t c = 0; c < D; ++c) m = max_nan(m, z.get(c));
    }
    double s = 0.0;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                v[c] = exp(v[c] - m);
                s += v[c];
            }
    } else {
        for (int64_t c = 0; c < D; ++c) s += exp(z.get(c) - m);
    }
    const double inv = 1.0 / s;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) out.set(c, clip(hi + k * (v[c] * inv), lo, hi));
    } else {
        for (int64_t c = 0; c < D; ++c) out.set(c, clip(hi + k * (exp(z.get(c) - m) * inv), lo, hi));
    }
}

template <int CAP>
__device__ inline double backward_row_f64(const EraCudaGaussian &p, int64_t r) {
    const int64_t D = p.dim;
    Row<double> z(p.z, r), g(p.grad_out, r), out(p.out, r);
    const double lo = p.lo, hi = p.hi;
    const double k = row_k<double>(p, r);
    double sv[CAP > 0 ? CAP : 1], gv[CAP > 0 ? CAP : 1];
    double m = -INFINITY;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                sv[c] = z.get(c);
                gv[c] = g.get(c);
                m = max_nan(m, sv[c]);
            }
    } else {
        for (int64_t c = 0; c < D; ++c) m = max_nan(m, z.get(c));
    }
    double s = 0.0;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                sv[c] = exp(sv[c] - m);
                s += sv[c];
            }
    } else {
        for (int64_t c = 0; c < D; ++c) s += exp(z.get(c) - m);
    }
    const double inv = 1.0 / s;
    auto gm = [&](double gi, double si) {
        double y = hi + k * si;
        return (lo < y && y < hi) ? gi : 0.0;
    };
    double dot = 0.0;
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) {
                sv[c] *= inv;
                gv[c] = gm(gv[c], sv[c]);
                dot += gv[c] * sv[c];
            }
    } else {
        for (int64_t c = 0; c < D; ++c) {
            double si = exp(z.get(c) - m) * inv;
            dot += gm(g.get(c), si) * si;
        }
    }
    if constexpr (CAP > 0) {
#pragma unroll
        for (int c = 0; c < CAP; ++c)
            if (c < D) out.set(c, k * sv[c] * (gv[c] - dot));
    } else {
        for (int64_t c = 0; c < D; ++c) {
            double si = exp(z.get(c) - m) * inv;
            double gi = gm(g.get(c), si);
            out.set(c, k * si * (gi - dot));
        }
    }
    return k == k ? dot : k;
}

// ------------------------------------------------------------- drivers

// Rows of at most kCap32 (f32) or kCap64 (f64) columns stay in registers (a
// second, smaller instantiation for the common D <= 8); the caps keep the
// kernels near 64 registers per thread. Longer rows are re-read per pass.
constexpr int kCap32 = 16;
constexpr int kCap64 = 8;

template <class T>
__device__ inline void forward_row(const EraCudaGaussian &p, int64_t r) {
    if constexpr (Elem<T>::code == ERA_CUDA_F64) {
        if (p.dim <= 4) forward_row_f64<4>(p, r);
        else if (p.dim <= kCap64) forward_row_f64<kCap64>(p, r);
        else forward_row_f64<0>(p, r);
    } else {
        if (p.dim <= 8) forward_row_f32<8>(p, r);
        else if (p.dim <= kCap32) forward_row_f32<kCap32>(p, r);
        else forward_row_f32<0>(p, r);
    }
}

template <class T>
__device__ inline double backward_row(const EraCudaGaussian &p, int64_t r) {
    if constexpr (Elem<T>::code == ERA_CUDA_F64) {
        if (p.dim <= 4) return backward_row_f64<4>(p, r);
        if (p.dim <= kCap64) return backward_row_f64<kCap64>(p, r);
        return backward_row_f64<0>(p, r);
    } else {
        if (p.dim <= 8) return backward_row_f32<8>(p, r);
        if (p.dim <= kCap32) return backward_row_f32<kCap32>(p, r);
        return backward_row_f32<0>(p, r);
    }
}

template <class T>
__device__ inline void gaussian_forward(const EraCudaGaussian &p) {
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < p.rows; r += step) forward_row<T>(p, r);
}

template <class T>
__device__ inline void gaussian_backward(const EraCudaGaussian &p) {
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < p.rows; r += step) {
        double dd = backward_row<T>(p, r);
        if (p.grad_delta_mode == 1) {
            Elem<T>::store(p.grad_delta.data + row_offset(p.grad_delta, r) * (int64_t)sizeof(T),
                           (typename Elem<T>::Compute)dd);
        } else if (p.grad_delta_mode == 2) {
            p.row_sums[r] = dd;
        }
    }
}

// ------------------------------------------------------------- masked rows

/** One masked row (docs/math.md#gaussian-mask). A row of ones is the unmasked
 * row; any other row is computed in f64 for every dtype, in the
 * order of the CPU's masked rows (src/kernels/gaussian/mask.rs): count and
 * maximum over the active entries, their exponentials' sum, (backward) the dot
 * product, then each entry read and written in one pass (so `out` may alias an
 * input). Returns d/d delta (backward). */
template <class T, bool BWD>
__device__ inline double masked_row(const EraCudaGaussianMasked &q, int64_t r) {
    using C = typename Elem<T>::Compute;
    const EraCudaGaussian &p = q.g;
    const int64_t D = p.dim;
    Row<T> z(p.z, r), mk(q.mask, r), out(p.out, r);
    Row<T> g(BWD ? p.grad_out : p.z, r);
    const double lo = p.lo, hi = p.hi;
    double k = row_k<T>(p, r);
    int64_t a = 0;
    bool bad = false;
    double m = -INFINITY;
    for (int64_t c = 0; c < D; ++c) {
        double mi = (double)mk.get(c);
        if (mi == 1.0) {
            ++a;
            m = max_nan(m, (double)z.get(c));
        } else if (mi != 0.0) {
            bad = true;
        }
    }
    if (bad) {
        for (int64_t c = 0; c < D; ++c) out.set(c, (C)NAN);
        return NAN;
    }
    // every entry active: the unmasked head's row (so that a mask of ones gives the
    // unmasked kernels' result bit for bit, as a mask of ones does on the CPU)
    if (a == D) {
        if constexpr (BWD) return backward_row<T>(p, r);
        forward_row<T>(p, r);
        return 0.0;
    }
    const double frac = (double)a / (double)(D > 0 ? D : 1);
    const double ka = k * frac;
    double s = 0.0;
    for (int64_t c = 0; c < D; ++c)
        if ((double)mk.get(c) != 0.0) s += exp((double)z.get(c) - m);
    const double inv = 1.0 / s;
    auto gm = [&](double gi, double si) {
        double y = hi + ka * si;
        return (lo < y && y < hi) ? gi : 0.0;
    };
    double dot = 0.0;
    if (BWD) {
        for (int64_t c = 0; c < D; ++c)
            if ((double)mk.get(c) != 0.0) {
                double si = exp((double)z.get(c) - m) * inv;
                dot += gm((double)g.get(c), si) * si;
            }
    }
    const bool fill = q.fill_mode != 0;
    for (int64_t c = 0; c < D; ++c) {
        const bool active = (double)mk.get(c) != 0.0;
        const double zi = (double)z.get(c);
        double v;
        if (BWD) {
            const double gi = (double)g.get(c);
            if (active) {
                double si = exp(zi - m) * inv;
                v = ka * si * (gm(gi, si) - dot);
            } else {
                v = fill ? 0.0 : gi;
            }
        } else {
            v = active ? clip(hi + ka * (exp(zi - m) * inv), lo, hi) : (fill ? q.fill : zi);
        }
        out.set(c, (C)v);
    }
    if (k != k) return k;
    return a == 0 ? 0.0 : dot * frac;
}

template <class T>
__device__ inline void gaussian_masked_forward(const EraCudaGaussianMasked &q) {
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < q.g.rows; r += step) masked_row<T, false>(q, r);
}

template <class T>
__device__ inline void gaussian_masked_backward(const EraCudaGaussianMasked &q) {
    const EraCudaGaussian &p = q.g;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < p.rows; r += step) {
        double dd = masked_row<T, true>(q, r);
        if (p.grad_delta_mode == 1) {
            Elem<T>::store(p.grad_delta.data + row_offset(p.grad_delta, r) * (int64_t)sizeof(T),
                           (typename Elem<T>::Compute)dd);
        } else if (p.grad_delta_mode == 2) {
            p.row_sums[r] = dd;
        }
    }
}

// ------------------------------------------------------------- entropies

/** `ln(erfc(x))` for `x >= 0` without underflow (docs/math.md#truncated-normal-entropy). */
__device__ inline double ln_erfc(double x) {
    if (x < 26.0) return log(erfc(x));
    double x2 = x * x;
    double series = 1.0 - 0.5 / x2 + 0.75 / (x2 * x2) - 1.875 / (x2 * x2 * x2);
    return -x2 - log(x * 1.7724538509055159) + log(series);  // sqrt(pi)
}

/** `ln(Phi(beta) - Phi(alpha))`, alpha < beta, from the tail that avoids cancellation. */
__device__ inline double ln_normal_mass(double alpha, double beta) {
    const double r = 0.70710678118654752440;  // 1/sqrt(2)
    double u, v;
    if (alpha > 0.0) {
        u = alpha;
        v = beta;
    } else if (beta < 0.0) {
        u = -beta;
        v = -alpha;
    } else {
        return log(1.0 - 0.5 * erfc(-alpha * r) - 0.5 * erfc(beta * r));
    }
    double lu = ln_erfc(u * r), lv = ln_erfc(v * r);
    return -0.69314718055994530942 + lu + log1p(-exp(lv - lu));  // ln(0.5)
}

__device__ inline double truncnorm_entropy_1d(double m, double log_std, double low, double high) {
    double sigma = exp(log_std);
    double alpha = (low - m) / sigma;
    double beta = (high - m) / sigma;
    double ln_z = ln_normal_mass(alpha, beta);
    const double ln_2pi_half = 0.91893853320467274178;  // ln(2*pi)/2
    double ta = isfinite(alpha) ? alpha * exp(-0.5 * alpha * alpha - ln_2pi_half - ln_z) : 0.0;
    double tb = isfinite(beta) ? beta * exp(-0.5 * beta * beta - ln_2pi_half - ln_z) : 0.0;
    return 0.5 * kL2PE + log_std + ln_z + 0.5 * (ta - tb);
}

template <class T>
__device__ inline void gaussian_entropy(const EraCudaEntropy &p) {
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < p.rows; r += step) {
        Row<T> x(p.x, r);
        double s = 0.0;
        for (int64_t c = 0; c < p.cols; ++c) s += (double)x.get(c);
        store_dyn(p.out, r, s + 0.5 * (double)p.cols * kL2PE);
    }
}

template <class T>
__device__ inline void truncnorm_entropy(const EraCudaEntropy &p) {
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < p.rows; r += step) {
        Row<T> mean(p.x, r), log_std(p.x2, r);
        double h = 0.0;
        for (int64_t c = 0; c < p.cols; ++c)
            h += truncnorm_entropy_1d((double)mean.get(c), (double)log_std.get(c), p.low, p.high);
        store_dyn(p.out, r, h);
    }
}

}  // namespace era_gauss

extern "C" __global__ void era_gaussian_forward_f32(const EraCudaGaussian p) { era_gauss::gaussian_forward<float>(p); }
extern "C" __global__ void era_gaussian_forward_f64(const EraCudaGaussian p) { era_gauss::gaussian_forward<double>(p); }
extern "C" __global__ void era_gaussian_backward_f32(const EraCudaGaussian p) { era_gauss::gaussian_backward<float>(p); }
extern "C" __global__ void era_gaussian_backward_f64(const EraCudaGaussian p) { era_gauss::gaussian_backward<double>(p); }

extern "C" __global__ void era_gaussian_masked_forward_f32(const EraCudaGaussianMasked p) {
    era_gauss::gaussian_masked_forward<float>(p);
}
extern "C" __global__ void era_gaussian_masked_forward_f64(const EraCudaGaussianMasked p) {
    era_gauss::gaussian_masked_forward<double>(p);
}
extern "C" __global__ void era_gaussian_masked_backward_f32(const EraCudaGaussianMasked p) {
    era_gauss::gaussian_masked_backward<float>(p);
}
extern "C" __global__ void era_gaussian_masked_backward_f64(const EraCudaGaussianMasked p) {
    era_gauss::gaussian_masked_backward<double>(p);
}

/** Sum of src[0..n) in f64 into dst[0]: thread t adds src[t], src[t + B], ... in
 * order, then the block adds the partial sums pairwise (block_sum). The order
 * depends on n alone; only block 0 works. */
extern "C" __global__ void era_sum_rows(const EraCudaSumRows p) {
    __shared__ double shm[ERA_CUDA_BLOCK_ITEMS];
    if (blockIdx.x != 0) return;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) s += p.src[i];
    double total = era_cuda::block_sum(s, shm);
    if (threadIdx.x == 0) {
        if (p.dst_dtype == ERA_CUDA_F64) *(double *)p.dst = total;
        else *(float *)p.dst = (float)total;
    }
}

extern "C" __global__ void era_gaussian_entropy_f32(const EraCudaEntropy p) { era_gauss::gaussian_entropy<float>(p); }
extern "C" __global__ void era_gaussian_entropy_f64(const EraCudaEntropy p) { era_gauss::gaussian_entropy<double>(p); }
extern "C" __global__ void era_truncnorm_entropy_f32(const EraCudaEntropy p) { era_gauss::truncnorm_entropy<float>(p); }
extern "C" __global__ void era_truncnorm_entropy_f64(const EraCudaEntropy p) { era_gauss::truncnorm_entropy<double>(p); }
