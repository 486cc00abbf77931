#include "token.cuh"
#include "token_topk.cuh"

// The token head's backward (docs/math.md#token-backward, #fusion,
// #vocabulary-top-k; helpers in token.cuh, the top-K select in token_topk.cuh).
//
// Backward: era_token_backward_<dtype>, one block per token: pass 1 reads the
//   row (online maximum and sum, as the forward), pass 2 walks the row in the
//   REVERSE order (the most recently read part is the most likely to still be in
//   L1/L2) and writes the gradient once; thread 0 then rewrites the label's entry.
//   From DRAM: one read when the row stays in cache, at worst two; one write.

namespace era_tok {

// ------------------------------------------------------------- backward

/** The backward's constants: the CPU's f32 kernel takes ct = c as f32 and
 * f = (c * (inv_t as f32) as f64 * g) as f32; the f64 reference c and c/T*g. */
template <class C>
struct GradConsts {
    C inv_t, c, f, cl;  // cl: exp(c*d) = exp2(d*cl) (f32) or exp(cl*d) (f64)
    __device__ GradConsts(double inv_t_, double c_, double g) {
        inv_t = (C)inv_t_;
        c = (C)c_;
        f = (C)(c_ * (double)inv_t * g);
        cl = sizeof(C) == 4 ? (C)(c * (C)LOG2E_F) : c;
    }
    __device__ C expc(C d) const {
        if constexpr (sizeof(C) == 4)
            return fast_exp2(d * cl);
        else
            return exp(cl * d);
    }
};

/** Pass 2 of the backward (reverse order): out = f*(onehot(y) - e/S) with
 * e = exp(c*(z - M)) on the selected columns (all without top-K), 0 elsewhere,
 * computed as e*(-f/S), plus f at the label, as the CPU's token_row_grad. */
template <class T, class C, bool TOPK>
__device__ inline void backward_write(const RowArgs &a, const RowPlan &plan, char *obase, int64_t ocs, int64_t y,
                                      const GradConsts<C> &g, C M, double S, const Threshold<typename KeyOf<C>::U> &th) {
    RowPlan oplan = row_plan<T>(obase, a.v, ocs);
    const bool ovec = plan.vec && oplan.vec && oplan.head == plan.head;
    const C scale = (C)(-(double)g.f / S);
    for_row<T, C, true>(a.base, a.v, a.cs, plan, [&](const C *x, auto nn, int64_t i0, int64_t step) {
        const int n = nn;
        C o[8];
        for (int j = 0; j < n; ++j) {
            C e = g.expc(mul_rn(x[j], g.inv_t) - M);
            if (TOPK && !in_topk(x[j], i0 + j * step, th)) e = 0;
            o[j] = e * scale;
        }
        store_chunk<T, C>(obase, ocs, ovec, o, nn, i0, step);
    });
    // the label's entry e_y*scale + f, rewritten once the row is written (a
    // per-element test in the loop above would keep o[] out of registers)
    __syncthreads();
    if (threadIdx.x == 0) {
        const C e = g.expc(mul_rn(load_elem<T, C>(a.base, a.cs, y), g.inv_t) - M);  // selected (the caller checked)
        store_elem<T, C>(obase, ocs, y, e * scale + g.f);
    }
}

/** The backward of one token over the full vocabulary: pass 1 (online maximum
 * and sum of exp(c*(z - m)) per thread), merge, pass 2. */
template <class T, class C>
__device__ ERA_TOK_NOINLINE void backward_full(const RowArgs a, char *obase, int64_t ocs, int64_t y, double c, double gup) {
    const GradConsts<C> g(a.inv_t, c, gup);
    const C inv_t = g.inv_t;
    RowPlan plan = row_plan<T>(a.base, a.v, a.cs);
    C xm = (C)-INFINITY, m = (C)-INFINITY, sp = 0;
    double Sp = 0.0;
    int chunks = 0;
    bool nan = false;
    for_row<T, C, false>(a.base, a.v, a.cs, plan, [&](const C *x, auto nn, int64_t, int64_t) {
        const int n = nn;
        C cm = (C)-INFINITY;
        for (int j = 0; j < n; ++j) cm = vmax(cm, x[j]);
        if (cm > xm) {
            C nm = mul_rn(cm, inv_t);
            if (xm != (C)-INFINITY) {
                Sp = (Sp + (double)sp) * exp((double)g.c * ((double)m - (double)nm));
                sp = 0;
                chunks = 0;
            }
            xm = cm;
            m = nm;
        }
        if (xm == (C)-INFINITY) {  // only -inf and NaN so far
            for (int j = 0; j < n; ++j) nan |= x[j] != x[j];
            return;
        }
        for (int j = 0; j < n; ++j) sp += g.expc(mul_rn(x[j], inv_t) - m);
        if (++chunks == FLUSH_CHUNKS) {
            Sp += (double)sp;
            sp = 0;
            chunks = 0;
        }
    });
    Sp += (double)sp;
    const C M = block_max_c(m);
    double st = 0.0;
    if (nan)
        st = (double)NAN;
    else if (xm != (C)-INFINITY)
        st = m == M ? Sp : Sp * exp((double)g.c * ((double)m - (double)M));
    const double S = block_sum(st, sh_d);
    Threshold<typename KeyOf<C>::U> none;
    none.key = 0;
    none.need = none.eq = 0;
    none.j = INT64_MAX;
    backward_write<T, C, false>(a, plan, obase, ocs, y, g, M, S, none);
}

/** The backward of one token with a vocabulary top-K: per-thread maxima, the
 * threshold (with its tie column), the sum over the selection, pass 2. NaN
 * entries are never selected (kernels::token::token_row_grad). */
template <class T, class C>
__device__ ERA_TOK_NOINLINE void backward_topk(const RowArgs a, char *obase, int64_t ocs, int64_t y, double c, double gup) {
    const GradConsts<C> g(a.inv_t, c, gup);
    const C inv_t = g.inv_t;
    RowPlan plan = row_plan<T>(a.base, a.v, a.cs);
    C xm = (C)-INFINITY;
    for_row<T, C, false>(a.base, a.v, a.cs, plan, [&](const C *x, auto nn, int64_t, int64_t) {
        const int n = nn;
        for (int j = 0; j < n; ++j) xm = vmax(xm, x[j]);
    });
    Threshold<typename KeyOf<C>::U> th = topk_threshold<T, C>(a.base, a.v, a.cs, (uint32_t)a.topk, xm);
    tie_column<T, C>(a.base, a.v, a.cs, th);
    if (!in_topk(load_elem<T, C>(a.base, a.cs, y), y, th)) {
        zero_row<T>(obase, a.v, ocs);
        return;
    }
    const C M = mul_rn(block_max_c(xm), inv_t);  // the largest selected z
    double Sp = 0.0;
    for_row<T, C, false>(a.base, a.v, a.cs, plan, [&](const C *x, auto nn, int64_t i0, int64_t step) {
        const int n = nn;
        C sp = 0;
        for (int j = 0; j < n; ++j)
            if (in_topk(x[j], i0 + j * step, th)) sp += g.expc(mul_rn(x[j], inv_t) - M);
        Sp += (double)sp;
    });
    const double S = block_sum(Sp, sh_d);
    backward_write<T, C, true>(a, plan, obase, ocs, y, g, M, S, th);
}

template <class T>
__device__ inline void token_backward(const EraCudaToken &p) {
    const bool f64 = Elem<T>::code == ERA_CUDA_F64 || !f32_constants(p);
    for (int64_t t = blockIdx.x; t < p.n; t += gridDim.x) {
        char *obase = at(p.grad_logits, t, 0, (int)sizeof(T));
        const int64_t ocs = p.grad_logits.col_stride;
        // a zero row: masked token (its label not read), zero upstream gradient,
        // or a label outside [0, V)
        const int64_t id = load_index(p.ids, t);
        double g = 0.0;
        int64_t y = -1;
        bool zero = id < 0;
        if (!zero) {
            g = load_dyn(p.grad_logprobs, t);
            zero = g == 0.0;
        }
        if (!zero) {
            y = load_index(p.labels, t);
            zero = y < 0 || y >= p.v;
        }
        if (zero) {
            zero_row<T>(obase, p.v, ocs);
            continue;
        }
        RowArgs a;
        a.base = at(p.logits, t, 0, (int)sizeof(T));
        a.v = p.v;
        a.cs = p.logits.col_stride;
        a.topk = p.vocab_topk;
        a.inv_t = p.inv_temperature;
        a.k = p.k;
        const double c = load_dyn(p.scale, t);
        const bool topk = p.vocab_topk > 0;
        if (Elem<T>::code == ERA_CUDA_F64 || f64) {
            if (topk)
                backward_topk<T, double>(a, obase, ocs, y, c, g);
            else
                backward_full<T, double>(a, obase, ocs, y, c, g);
        } else {
            if constexpr (Elem<T>::code != ERA_CUDA_F64) {
                if (topk)
                    backward_topk<T, float>(a, obase, ocs, y, c, g);
                else
                    backward_full<T, float>(a, obase, ocs, y, c, g);
            }
        }
    }
}

}  // namespace era_tok

extern "C" __global__ void ERA_TOKEN_BOUNDS era_token_backward_f32(const EraCudaToken p) { era_tok::token_backward<float>(p); }
extern "C" __global__ void ERA_TOKEN_BOUNDS era_token_backward_f64(const EraCudaToken p) { era_tok::token_backward<double>(p); }
extern "C" __global__ void ERA_TOKEN_BOUNDS era_token_backward_bf16(const EraCudaToken p) { era_tok::token_backward<era_cuda::bf16_t>(p); }
extern "C" __global__ void ERA_TOKEN_BOUNDS era_token_backward_f16(const EraCudaToken p) { era_tok::token_backward<era_cuda::f16_t>(p); }
