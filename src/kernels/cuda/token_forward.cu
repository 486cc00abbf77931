#include "token.cuh"
#include "token_topk.cuh"

// The token head's forward statistics (docs/math.md#token-forward, #fusion,
// #vocabulary-top-k; helpers in token.cuh, the top-K select in
// token_topk.cuh). The forward is three launches with the same parameter block:
//   era_token_stats_<dtype>  one block per token, ONE read of the logits row
//       (K = 0): an online softmax per thread (running maximum; when it grows the
//       thread's sums are rescaled) for the three candidate scales at once, then
//       a block merge in a fixed order. Coalesced: with col_stride 1 and the row
//       element-aligned, thread t reads 16-byte vectors t, t + 256, ... (two in
//       flight, through the read-only cache), plus a scalar head up to the first
//       16-byte boundary and a scalar tail; otherwise columns t + 256*j, eight per
//       chunk. Writes per-token statistics into the workspace (TokenWs, token.cuh).
//   era_token_group  one thread per token: count and rank of each token in its
//       response (O(N) per token, O(N^2) in all).
//   era_token_finish one thread per token: response entropy (O(N) per token,
//       O(N^2) in all), scale decision, outputs.

namespace era_tok {

// ------------------------------------------------------------- forward statistics

/** A thread's running statistics of z = x*(1/T) relative to its maximum m. */
template <class C>
struct StatsAcc {
    C xm;                  // largest x (NaN skipped), -inf before any
    C m;                   // mul_rn(xm, inv_t)
    C s1, sk, si, w;       // partial sums (C) relative to m
    double S1, Sk, Si, W;  // flushed sums relative to m
    int chunks;
    bool nan;  // f32: a NaN seen while no finite maximum existed; f64: any NaN entry

    __device__ void init() {
        xm = m = (C)-INFINITY;
        s1 = sk = si = w = 0;
        S1 = Sk = Si = W = 0;
        chunks = 0;
        nan = false;
    }
    __device__ void flush() {
        S1 += (double)s1;
        Sk += (double)sk;
        Si += (double)si;
        W += (double)w;
        s1 = sk = si = w = 0;
        chunks = 0;
    }
    /** Sums relative to a new maximum nm > m (both finite or nm = +inf). */
    __device__ void rescale(C nm, double kd, double ikd) {
        flush();
        double f = (double)m - (double)nm;  // <= 0
        double e1 = exp(f);
        W = e1 * (W + f * S1);
        S1 *= e1;
        Sk *= exp(kd * f);
        Si *= exp(ikd * f);
    }
};

/** One chunk of a row into the thread's statistics (docs/math.md#fusion). */
template <class C, bool K2, class N>
__device__ inline void stats_chunk(StatsAcc<C> &a, const C *x, N nn, C inv_t, C kc, C ikc, double kd, double ikd) {
    const int n = nn;
    C cm = (C)-INFINITY;
    for (int j = 0; j < n; ++j) cm = vmax(cm, x[j]);
    if (cm > a.xm) {
        C nm = mul_rn(cm, inv_t);
        if (a.xm != (C)-INFINITY) a.rescale(nm, kd, ikd);
        a.xm = cm;
        a.m = nm;
    }
    if (a.xm == (C)-INFINITY) {  // only -inf and NaN so far: no sums, remember a NaN
        for (int j = 0; j < n; ++j) a.nan |= x[j] != x[j];
        return;
    }
    for (int j = 0; j < n; ++j) {
        C d = mul_rn(x[j], inv_t) - a.m;  // <= 0, or NaN
        if constexpr (sizeof(C) == 4) {
            if (K2) {
                // floored only here, as the CPU's k = 2 path: exp(d/2) and its square
                // stay normal; with k != 2 a floor would give exp(d/k) of a -inf entry
                // (or of one far below the maximum) a weight at the scale 1/k
                d = floor_keep_nan(d, D_FLOOR);
                float h = fast_exp2(d * HALF_LOG2E_F);  // exp(d/2)
                float e = h * h;
                a.s1 += e;
                a.w = fmaf(e, d, a.w);
                a.sk = fmaf(e, e, a.sk);
                a.si += h;
            } else {
                float e = fast_exp2(d * LOG2E_F);
                a.s1 += e;
                // d >= -100 keeps 0 * -inf out of w (e is 0 there), as the CPU
                a.w = fmaf(e, fmaxf(d, -100.0f), a.w);
                a.sk += fast_exp2(d * (kc * LOG2E_F));
                a.si += fast_exp2(d * (ikc * LOG2E_F));
            }
        } else {
            double e, ek, ei;
            if (K2) {
                double h = exp(0.5 * d);
                e = h * h;
                ek = e * e;
                ei = h;
            } else {
                e = exp(d);
                ek = exp(kd * d);
                ei = exp(ikd * d);
            }
            a.nan |= x[j] != x[j];  // the reference's "row holds NaN" (top-K)
            a.s1 += e;
            a.w += e > 0.0 ? e * d : 0.0;  // keeps 0 * -inf out
            a.sk += ek;
            a.si += ei;
        }
    }
    if (++a.chunks == FLUSH_CHUNKS) a.flush();
}

/** The top-K log-probs of an unmasked token whose row has no NaN (the
 * caller's test, see stats_token): -1e4 outside the top-K. */
template <class T, class C>
__device__ ERA_TOK_NOINLINE void stats_topk(const RowArgs a, C xm, C M, int64_t y, double *lp) {
    typedef typename KeyOf<C>::U U;
    const C inv_t = (C)a.inv_t;
    const double Md = (double)M;
    const double c3[3] = {1.0, a.k, 1.0 / a.k};
    const C xy = load_elem<T, C>(a.base, a.cs, y);
    const double zy = (double)mul_rn(xy, inv_t);
    Threshold<U> th = topk_threshold<T, C>(a.base, a.v, a.cs, (uint32_t)a.topk, xm);
    bool inside = xy == xy && sort_key(xy) > th.key;
    if (xy == xy && sort_key(xy) == th.key) {  // a tie at the K-th value: its column decides
        tie_column<T, C>(a.base, a.v, a.cs, th);
        inside = y <= th.j;
    }
    if (!inside) {
        lp[0] = lp[1] = lp[2] = OUTSIDE_TOPK_LOGPROB;
        return;
    }
    // the top-K log-sums (kernels::token::topk_ln_sums) in f64; the maximum is M
    double q[3] = {0.0, 0.0, 0.0};
    RowPlan plan = row_plan<T>(a.base, a.v, a.cs);
    for_row<T, C, false>(a.base, a.v, a.cs, plan, [&](const C *x, auto nn, int64_t, int64_t) {
        const int n = nn;
        for (int j = 0; j < n; ++j) {
            if (x[j] == x[j] && sort_key(x[j]) > th.key) {
                double d = (double)mul_rn(x[j], inv_t) - Md;
                q[0] += exp(d);
                q[1] += exp(c3[1] * d);
                q[2] += exp(c3[2] * d);
            }
        }
    });
    if (threadIdx.x == 0 && th.need > 0) {  // the ties at the K-th value
        double d = (double)mul_rn((C)key_value(th.key), inv_t) - Md;
        for (int c = 0; c < 3; ++c) q[c] += (double)th.need * exp(c3[c] * d);
    }
    block_sums<3>(q);
    for (int c = 0; c < 3; ++c) lp[c] = c3[c] * (zy - Md) - log(q[c]);
}

/** The forward statistics of one token (docs/math.md#fusion) into `w`:
 * entropy, log-probs at the three scales, id. `y` is read only when id >= 0. */
template <class T, class C, bool K2>
__device__ ERA_TOK_NOINLINE void stats_token(const RowArgs a, int64_t id, int64_t y, TokenWs *w) {
    const C inv_t = (C)a.inv_t;
    const C kc = (C)a.k;
    const C ikc = (C)1 / kc;
    const double kd = (double)kc, ikd = (double)ikc;

    StatsAcc<C> acc;
    acc.init();
    RowPlan plan = row_plan<T>(a.base, a.v, a.cs);
    for_row<T, C, false>(a.base, a.v, a.cs, plan, [&](const C *x, auto n, int64_t, int64_t) {
        stats_chunk<C, K2>(acc, x, n, inv_t, kc, ikc, kd, ikd);
    });
    acc.flush();

    // merge: every thread's sums relative to the row maximum M
    const C M = block_max_c(acc.m);  // the per-thread m skip NaN
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    if (acc.nan) {
        s[0] = (double)NAN;
    } else if (acc.xm != (C)-INFINITY) {
        s[0] = acc.S1;
        s[1] = acc.Sk;
        s[2] = acc.Si;
        s[3] = acc.W;
        if (acc.m != M) {
            double f = (double)acc.m - (double)M;  // < 0 (-inf when M = +inf)
            double e1 = exp(f);
            s[3] = e1 * (acc.W + f * acc.S1);
            s[0] = acc.S1 * e1;
            s[1] = acc.Sk * exp(kd * f);
            s[2] = acc.Si * exp(ikd * f);
        }
    }
    block_sums<4>(s);
    const double S1 = s[0], Sk = s[1], Si = s[2], W = s[3];
    const double Md = (double)M;
    const double entropy = log(S1) - W / S1;

    double lp[3] = {0.0, 0.0, 0.0};
    if (id >= 0) {
        // Which rows give NaN log-probs, as the CPU. Full vocabulary: a NaN or
        // +inf entry (the sums are NaN) or only -inf entries (S1 = 0). Top-K: the
        // f32 kernel (TokenHead::forward) checks the sums, so a NaN or +inf entry
        // gives NaN; the f64 reference (reference_logprob_row) checks for NaN
        // entries only and then the label's membership: a +inf or all -inf row
        // gives -1e4 for a label outside the top-K, NaN for one inside (M = +-inf).
        bool nan_row;
        if (a.topk <= 0) {
            nan_row = !(S1 > 0.0);  // NaN or 0
        } else if constexpr (sizeof(C) == 4) {
            nan_row = S1 != S1;
        } else {
            double nans = acc.nan ? 1.0 : 0.0;
            block_sums<1>(&nans);
            nan_row = nans > 0.0;
        }
        if (y < 0 || y >= a.v || nan_row) {
            lp[0] = lp[1] = lp[2] = (double)NAN;
        } else if (a.topk > 0) {
            stats_topk<T, C>(a, acc.xm, M, y, lp);
        } else {
            const double zy = (double)mul_rn(load_elem<T, C>(a.base, a.cs, y), inv_t);
            lp[0] = (zy - Md) - log(S1);
            lp[1] = a.k * (zy - Md) - log(Sk);
            lp[2] = (1.0 / a.k) * (zy - Md) - log(Si);
        }
    }
    if (threadIdx.x == 0) {
        w->entropy = entropy;
        for (int c = 0; c < 3; ++c) w->logprob[c] = lp[c];
        w->id = id;
        w->count = 0;
        w->rank = 0;
        w->pad = 0;
    }
}

template <class T>
__device__ inline void token_stats(const EraCudaToken &p) {
    const bool f64 = Elem<T>::code == ERA_CUDA_F64 || !f32_constants(p);
    const bool k2 = p.k == 2.0;
    TokenWs *ws = (TokenWs *)p.workspace;
    for (int64_t t = blockIdx.x; t < p.n; t += gridDim.x) {
        RowArgs a;
        a.base = at(p.logits, t, 0, (int)sizeof(T));
        a.v = p.v;
        a.cs = p.logits.col_stride;
        a.topk = p.vocab_topk;
        a.inv_t = p.inv_temperature;
        a.k = p.k;
        const int64_t id = load_index(p.ids, t);
        const int64_t y = id >= 0 ? load_index(p.labels, t) : -1;  // masked: not read
        if constexpr (Elem<T>::code == ERA_CUDA_F64) {
            if (k2)
                stats_token<T, double, true>(a, id, y, ws + t);
            else
                stats_token<T, double, false>(a, id, y, ws + t);
        } else {
            if (f64) {
                if (k2)
                    stats_token<T, double, true>(a, id, y, ws + t);
                else
                    stats_token<T, double, false>(a, id, y, ws + t);
            } else if (k2) {
                stats_token<T, float, true>(a, id, y, ws + t);
            } else {
                stats_token<T, float, false>(a, id, y, ws + t);
            }
        }
    }
}

}  // namespace era_tok

extern "C" __global__ void ERA_TOKEN_BOUNDS era_token_stats_f32(const EraCudaToken p) { era_tok::token_stats<float>(p); }
extern "C" __global__ void ERA_TOKEN_BOUNDS era_token_stats_f64(const EraCudaToken p) { era_tok::token_stats<double>(p); }
extern "C" __global__ void ERA_TOKEN_BOUNDS era_token_stats_bf16(const EraCudaToken p) { era_tok::token_stats<era_cuda::bf16_t>(p); }
extern "C" __global__ void ERA_TOKEN_BOUNDS era_token_stats_f16(const EraCudaToken p) { era_tok::token_stats<era_cuda::f16_t>(p); }
