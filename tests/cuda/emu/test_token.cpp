// The token head's CUDA kernels (src/kernels/cuda/token_*.cu), run on the CPU
// through the CUDA emulator (cuda_emu.hpp), against the CPU library through its
// C ABI (era_token_forward / era_token_backward) on the same host buffers.
//
// Coverage: the four logits dtypes; int32 and int64 labels and ids; f32 and f64
// advantages (and outputs, scale, grad_logprobs); N up to 300, V from 1 to 3000
// (V > 2048: two CPU blocks); rank-2 and rank-3 batches with permuted, padded
// and negative strides and a strided last axis (the kernels' strided path) or
// contiguous rows of every 16-byte alignment (the vector path, its scalar head
// and tail); unsorted, non-contiguous response ids of any int value; masked
// tokens with garbage labels (never read); ties in logits, the top-K tie split
// at the K-th value (labels on both sides of it), -0.0/+0.0 ties; NaN, +inf and
// -inf logits (a label on a -inf logit, all -inf rows, NaN entries outside the
// top-K in the backward); increasing rows (the online rescaling); T != 1, k != 2,
// the f64 fallback of f32/bf16 logits (constants that are not normal f32);
// each scale branch (sharpen, flatten, keep; asserted to occur); advantage
// scaling on and off; absent optional outputs; vocab_topk 0, K < V and K >= V
// (the launcher passes 0); a zero upstream gradient; k = 10 with the flatten
// branch (c = 1/k) forced on every token whose advantage is positive, on rows
// with half the vocabulary -inf and at a low temperature (differences far
// below the f32 sums' floor, which only the k = 2 path may apply); the launcher's grid and
// one block (grid-stride loops: bitwise identical results). Outputs must leave
// memory outside their elements untouched. Kernel-only semantics (the CPU
// rejects these inputs): a label outside [0, V) gives a NaN log-prob and a
// zero gradient row; a response id below -1 counts as masked.
//
// Build and run: tests/cuda/emu/run.sh.
#include "cuda_emu.hpp"

#include "harness.hpp"
#include "token_case.hpp"

using namespace harness;
using namespace token_case;

// ------------------------------------------------------------- tolerances
//
// Per-token outputs: |kernel - cpu| / max(|cpu|, 1) (row_len 1, floor 1).
// Gradients: row-normwise, |kernel - cpu| over the largest |cpu| of the row
// (floor 1e-300: a zero row must be exactly zero).

/** f64 arithmetic on both sides (f64 logits; f32/bf16/f16 logits of a head
 * whose constants are not normal f32): the same formulas, only the order of
 * the sums (pairwise over the block, online rescaling vs two passes) and
 * libm's exp/log differ. */
constexpr double kTolF64 = 1e-12;
/** f32 arithmetic on both sides (the CPU's fused kernel): f32 exponentials
 * (exp2f here, the CPU's polynomials there, a few ulp each) and f32 partial
 * sums of different lengths and orders, f64 across them. Measured ~1e-6;
 * docs/math.md#vectorised-f32-kernels allows 2e-5 against the f64 kernel. */
constexpr double kTolF32 = 2e-5;
/** Extra for per-token outputs stored as f32: one rounding of each side. */
constexpr double kTolOutF32 = 1.2e-7;
/** Gradients stored as bf16 / f16: the two f32 values may straddle a rounding
 * boundary, one unit in the last place of the element (at most 2^-7 / 2^-10
 * of it, so of the row's largest) apart. */
constexpr double kTolGradBf16 = 1.0 / 128;
constexpr double kTolGradF16 = 1.0 / 1024;

static int g_branch[3] = {0, 0, 0};  // tokens with A > 0 that got c = 1, k, 1/k (CPU)
static int g_topk[3] = {0, 0, 0};    // top-K tokens (CPU): label inside, outside (-1e4), NaN
static int g_cases = 0;

static const char *out_name(int i) {
    static const char *names[5] = {"logprobs", "entropy", "scale", "advantages", "response_entropy"};
    return names[i];
}

static double out_tol(const Case &c, int which) {
    double base = (c.ldt == ERA_CUDA_F64 || !f32_constants(c)) ? kTolF64 : kTolF32;
    if (which == 2) return 0.0;  // the scale: exactly the same decision
    if (which == 3) return c.fdt == ERA_CUDA_F32 ? kTolOutF32 : 1e-15;  // A / c
    return base + (c.fdt == ERA_CUDA_F32 ? kTolOutF32 : 0.0);
}

static std::string fam(const Case &c) {
    std::string s = dtype_name(c.ldt);
    return s + (c.ldt == ERA_CUDA_F64 || f32_constants(c) ? "" : "(f64 math)");
}

/** max_error + record (fails the check if err > tol) + explain; returns the error. */
static double compare(const std::string &op, const std::string &dtype, const Tensor &got, const Tensor &want, int64_t row_len,
                      double floor, double tol, const std::string &what, const std::vector<double> *row_scale = nullptr) {
    int64_t worst = -1;
    double err = max_error(got, want, row_len, floor, &worst, row_scale);
    if (!record(op, dtype, err, tol, what)) explain(got, want, worst, row_len);
    return err;
}


static void run_case(const Case &c) {
    ++g_cases;
    Inputs in = build(c);
    const int64_t n = in.n;
    std::string what = c.name + " " + dtype_name(c.ldt) + " " + shape_str(c.batch) + " V=" + std::to_string(c.v) +
                       " K=" + std::to_string(c.topk) + " T=" + std::to_string(c.temp) + " k=" + std::to_string(c.k) +
                       " labels " + dtype_name(c.ydt) + " ids " + dtype_name(c.rdt) + " out " + dtype_name(c.fdt);
    EraHead *head = make_head(c);
    if (!head) return;

    // ---------------- forward
    Tensor want[5], got[5][2];
    DLTensor *wd[5];
    for (int o = 0; o < 5; ++o) {
        want[o] = make_layout(c.fdt, c.batch, (c.lay_tok + 1 + o) % 6);
        wd[o] = (c.outputs >> o) & 1 ? want[o].dl() : nullptr;
    }
    HCHECK_OK(era_token_forward(head, in.logits.dl(), in.labels.dl(), in.ids.dl(), in.adv.dl(), wd[0], wd[1], wd[2], wd[3], wd[4],
                                nullptr));
    const unsigned grid_stats[2] = {launcher_grid(n, 1), n > 3 ? 3u : 1u};
    const unsigned grid_items[2] = {launcher_grid(n, kBlockItems), 1u};
    for (int g = 0; g < 2; ++g) {
        EraCudaToken p = params(c, n);
        p.logits = in.logits.rows_view(true);
        p.labels = in.labels.rows_view(false);
        p.ids = in.ids.rows_view(false);
        p.advantages = in.adv.rows_view(false);
        EraCudaTensor *outs[5] = {&p.logprobs_out, &p.entropy_out, &p.scale_out, &p.advantages_out, &p.response_entropy_out};
        for (int o = 0; o < 5; ++o) {
            got[o][g] = make_like(want[o]);
            if ((c.outputs >> o) & 1) *outs[o] = got[o][g].rows_view(false);  // else data = NULL: absent
        }
        launch_forward(p, c.ldt, grid_stats[g], grid_items[g]);
    }
    static const char *short_name[5] = {"lp", "H", "c", "A'", "Hresp"};
    std::string errs;
    for (int o = 0; o < 5; ++o) {
        if (!((c.outputs >> o) & 1)) {
            HCHECK(all_sentinel(got[o][0]) && all_sentinel(got[o][1]), "absent %s written (%s)", out_name(o), what.c_str());
            continue;
        }
        double e = compare(std::string("forward ") + out_name(o), fam(c), got[o][0], want[o], 1, 1.0, out_tol(c, o), what);
        char buf[64];
        snprintf(buf, sizeof buf, " %s %.2g", short_name[o], e);
        errs += buf;
        HCHECK(bitwise_equal(got[o][0], got[o][1]), "forward %s: grid-dependent result (%s)", out_name(o), what.c_str());
        HCHECK(untouched_outside(got[o][0]), "forward %s: wrote outside the output (%s)", out_name(o), what.c_str());
    }

    // the CPU's scale for the backward (and the branch statistics)
    Tensor scale = make_layout(c.fdt, c.batch, (c.lay_tok + 4) % 6);
    HCHECK_OK(era_token_forward(head, in.logits.dl(), in.labels.dl(), in.ids.dl(), in.adv.dl(), nullptr, nullptr, scale.dl(), nullptr,
                                nullptr, nullptr));
    for (int64_t t = 0; t < n; ++t) {
        if (in.ids.get(t) < 0 || !(in.adv.get(t) > 0)) continue;
        double s = scale.get(t);
        g_branch[s == 1.0 ? 0 : (s == (c.fdt == ERA_CUDA_F32 ? (double)(float)c.k : c.k) ? 1 : 2)] += 1;
    }

    if (c.topk > 0 && c.topk < (uint64_t)c.v && (c.outputs & 1))
        for (int64_t t = 0; t < n; ++t) {
            if (in.ids.get(t) < 0) continue;
            double l = want[0].get(t);
            g_topk[std::isnan(l) ? 2 : (l == -1e4 ? 1 : 0)] += 1;
        }

    // ---------------- backward
    Rng rng(c.seed * 7 + 1);
    Tensor glp = make_layout(c.fdt, c.batch, (c.lay_tok + 5) % 6);
    for (int64_t t = 0; t < n; ++t) glp.set(t, t % 7 == 2 ? 0.0 : rng.normal());
    std::vector<int64_t> shape = c.batch;
    shape.push_back(c.v);
    Tensor gwant = make_layout(c.ldt, shape, c.lay_grad);
    HCHECK_OK(era_token_backward(head, in.logits.dl(), in.labels.dl(), in.ids.dl(), scale.dl(), glp.dl(), gwant.dl(), nullptr));
    Tensor ggot[2];
    for (int g = 0; g < 2; ++g) {
        ggot[g] = make_like(gwant);
        EraCudaToken p = params(c, n);
        p.logits = in.logits.rows_view(true);
        p.labels = in.labels.rows_view(false);
        p.ids = in.ids.rows_view(false);
        p.scale = scale.rows_view(false);
        p.grad_logprobs = glp.rows_view(false);
        p.grad_logits = ggot[g].rows_view(true);
        emu_launch(backward_kernel(c.ldt), grid_stats[g], kBlockVector, p);
    }
    double gtol = (c.ldt == ERA_CUDA_F64 || !f32_constants(c)) ? kTolF64 : kTolF32;
    if (c.ldt == ERA_CUDA_BF16) gtol += kTolGradBf16;
    if (c.ldt == ERA_CUDA_F16) gtol += kTolGradF16;
    // row scale |f| = |c/T * g|: every entry of f*(onehot - p) is at most |f|, and
    // the label's entry f*(1 - p_y) cancels when p_y is near 1
    std::vector<double> rscale(n);
    for (int64_t t = 0; t < n; ++t) {
        double f = std::fabs(scale.get(t) / c.temp * glp.get(t)), m = 1e-300;
        for (int64_t i = 0; i < c.v; ++i) {
            double w = gwant.get(t * c.v + i);
            if (std::isfinite(w)) m = std::max(m, std::fabs(w));
        }
        rscale[t] = std::isfinite(f) ? std::max(f, m) : m;
    }
    double ge = compare("backward grad_logits", fam(c), ggot[0], gwant, c.v, 1e-300, gtol, what, &rscale);
    HCHECK(bitwise_equal(ggot[0], ggot[1]), "backward: grid-dependent result (%s)", what.c_str());
    HCHECK(untouched_outside(ggot[0]), "backward: wrote outside grad_logits (%s)", what.c_str());

    era_head_free(head);
    printf("case %-12s %-15s %-8s V=%-5lld K=%-4llu max error:%s grad %.2g\n", c.name.c_str(), fam(c).c_str(),
           shape_str(c.batch).c_str(), (long long)c.v, (unsigned long long)c.topk, errs.c_str(), ge);
}

// ------------------------------------------------------------- kernel-only semantics

/** Inputs the CPU rejects: a label outside [0, V) on an unmasked token (NaN
 * log-prob, zero gradient row) and a response id < -1 (masked). */
static void kernel_only_cases() {
    for (int ldt : {ERA_CUDA_F32, ERA_CUDA_BF16, ERA_CUDA_F64}) {
        for (uint64_t topk : {0ull, 3ull}) {
            Case c;
            c.name = "bad-label";
            c.ldt = ldt;
            c.v = 37;
            c.topk = topk;
            const int64_t n = 4;
            Tensor logits = make(ldt, {n, c.v});
            Rng rng(5);
            fill_normal(logits, rng, 1.0);
            Tensor labels = make(ERA_CUDA_I64, {n}), ids = make(ERA_CUDA_I32, {n}), adv = make(ERA_CUDA_F64, {n});
            const int64_t lab[4] = {37, -1, 5, 1000000000000ll};
            const int64_t id[4] = {0, 0, -5, 1};
            for (int64_t t = 0; t < n; ++t) {
                labels.set(t, (double)lab[t]);
                ids.set(t, (double)id[t]);
                adv.set(t, 1.0);
            }
            Tensor lp = make(ERA_CUDA_F64, {n}), sc = make(ERA_CUDA_F64, {n}), re = make(ERA_CUDA_F64, {n});
            EraCudaToken p = params(c, n);
            p.logits = logits.rows_view(true);
            p.labels = labels.rows_view(false);
            p.ids = ids.rows_view(false);
            p.advantages = adv.rows_view(false);
            p.logprobs_out = lp.rows_view(false);
            p.scale_out = sc.rows_view(false);
            p.response_entropy_out = re.rows_view(false);
            launch_forward(p, ldt, 2, 1);
            HCHECK(std::isnan(lp.get(0)) && std::isnan(lp.get(1)) && std::isnan(lp.get(3)), "bad label: log-prob not NaN (%s)",
                   dtype_name(ldt));
            HCHECK(lp.get(2) == 0.0 && sc.get(2) == 1.0 && re.get(2) == 0.0, "id -5: not masked (%s)", dtype_name(ldt));
            Tensor sc1 = make(ERA_CUDA_F64, {n}), g = make(ERA_CUDA_F64, {n});
            for (int64_t t = 0; t < n; ++t) {
                sc1.set(t, 1.0);
                g.set(t, 1.0);
            }
            Tensor grad = make(ldt, {n, c.v});
            p.scale = sc1.rows_view(false);
            p.grad_logprobs = g.rows_view(false);
            p.grad_logits = grad.rows_view(true);
            emu_launch(backward_kernel(ldt), 2u, kBlockVector, p);
            bool zero = true;
            for (int64_t t = 0; t < n; ++t)
                for (int64_t i = 0; i < c.v; ++i) zero &= grad.get(t * c.v + i) == 0.0;
            HCHECK(zero, "bad label / masked: gradient row not zero (%s)", dtype_name(ldt));
            record("kernel-only bad label/id", dtype_name(ldt), zero ? 0.0 : INFINITY, 0.0, "");
        }
    }
}

// ------------------------------------------------------------- the case list

static void cases() {
    uint64_t seed = 100;
    const int dts[4] = {ERA_CUDA_F32, ERA_CUDA_BF16, ERA_CUDA_F16, ERA_CUDA_F64};
    int idx = 0;
    for (int ldt : dts) {
        // full vocabulary, contiguous, default constants
        {
            Case c;
            c.name = "basic";
            c.ldt = ldt;
            c.batch = {40};
            c.v = 1001;
            c.seed = seed++;
            run_case(c);
        }
        // rank 3, permuted / padded / flipped / strided-column layouts, int32 ids, f64 outputs, T, k
        for (int lay = 1; lay <= 5; ++lay) {
            Case c;
            c.name = "layout" + std::to_string(lay);
            c.ldt = ldt;
            c.batch = {3, 7};
            c.v = lay == 4 ? 300 : 777 + lay;
            c.lay_logits = lay;
            c.lay_tok = lay;
            c.lay_grad = (lay + 2) % 6;
            c.ydt = lay % 2 ? ERA_CUDA_I32 : ERA_CUDA_I64;
            c.rdt = lay % 3 ? ERA_CUDA_I32 : ERA_CUDA_I64;
            c.fdt = lay % 2 ? ERA_CUDA_F64 : ERA_CUDA_F32;
            c.temp = lay == 2 ? 0.7 : lay == 3 ? 1.6 : 1.0;
            c.k = lay == 1 ? 3.0 : lay == 3 ? 1.5 : 2.0;
            c.adv_scaling = lay != 4;
            c.outputs = lay == 5 ? (1 | 4) : 31;
            c.seed = seed++;
            run_case(c);
        }
        // V = 3000 (two CPU blocks), specials, full vocabulary
        {
            Case c;
            c.name = "specials";
            c.ldt = ldt;
            c.batch = {24};
            c.v = 3000;
            c.special = SP_NAN | SP_NEGINF_ROW | SP_NEGINF_SOME | SP_INCREASING;
            c.temp = 0.9;
            c.seed = seed++;
            run_case(c);
        }
        // top-K with ties at the K-th value, k != 2, T != 1
        for (uint64_t K : {1ull, 5ull, 20ull}) {
            Case c;
            c.name = "topk-ties";
            c.ldt = ldt;
            c.batch = {2, 9};
            c.v = 523;
            c.topk = K;
            c.k = K == 5 ? 2.5 : 2.0;
            c.temp = K == 20 ? 1.3 : 1.0;
            c.special = SP_TIES | SP_NEGINF_SOME | SP_ZERO_TIES;
            c.lay_logits = (int)(K % 6);
            c.lay_grad = (int)((K + 1) % 6);
            c.ydt = K == 5 ? ERA_CUDA_I32 : ERA_CUDA_I64;
            c.fdt = K == 20 ? ERA_CUDA_F64 : ERA_CUDA_F32;
            c.seed = seed++;
            run_case(c);
        }
        // top-K > 256 (no per-thread pruning), many exact ties, NaN outside the top-K (backward)
        {
            Case c;
            c.name = "topk-large";
            c.ldt = ldt;
            c.batch = {12};
            c.v = 2100;
            c.topk = 300;
            c.special = SP_BF16_TIES | SP_NAN | SP_INF | SP_INCREASING;
            c.seed = seed++;
            run_case(c);
        }
        // K >= V: full vocabulary
        for (uint64_t K : {50ull, 64ull}) {
            Case c;
            c.name = "topk>=V";
            c.ldt = ldt;
            c.batch = {10};
            c.v = 50;
            c.topk = K;
            c.seed = seed++;
            run_case(c);
        }
        // V = 1 (entropy 0, log-prob 0), with and without top-K request
        {
            Case c;
            c.name = "V=1";
            c.ldt = ldt;
            c.batch = {5, 3};
            c.v = 1;
            c.topk = idx % 2 ? 4 : 0;
            c.responses = 2;
            c.seed = seed++;
            run_case(c);
        }
        // small V, scaling off, some outputs absent, rho = 1
        {
            Case c;
            c.name = "small";
            c.ldt = ldt;
            c.batch = {64};
            c.v = 9;
            c.rho = 1.0;
            c.adv_scaling = false;
            c.outputs = 2 | 8 | 16;
            c.topk = 3;
            c.omega_low = 0.9;
            c.omega_high = 1.5;
            c.seed = seed++;
            run_case(c);
        }
        // many tokens: the per-token kernels' grid-stride loops (N > 256)
        {
            Case c;
            c.name = "many-tokens";
            c.ldt = ldt;
            c.batch = {300};
            c.v = 17;
            c.responses = 37;
            c.omega_low = 1.0;
            c.omega_high = 2.0;
            c.rho = 0.5;
            c.seed = seed++;
            run_case(c);
        }
        // k = 10, c = 1/k forced (omega_high = 0: every response flattens): half the
        // vocabulary -inf, then a low temperature with four logits near the top (entropy
        // well above 0) and the rest of the row far below it (z - max from -100 to -500)
        for (int variant = 0; variant < 2; ++variant) {
            Case c;
            c.name = variant == 0 ? "k10-half-inf" : "k10-low-T";
            c.ldt = ldt;
            c.batch = {32};
            c.v = 1000;
            c.k = 10.0;
            c.omega_low = 0.0;
            c.omega_high = 0.0;
            c.special = variant == 0 ? SP_NEGINF_HALF : SP_FAR_TAIL;
            c.temp = variant == 0 ? 1.0 : 0.02;
            c.seed = seed++;
            const int before = g_branch[2];
            run_case(c);
            HCHECK(g_branch[2] > before, "%s: the flatten branch (c = 1/k) was not taken", c.name.c_str());
        }
        // the f64 fallback of f32-type logits: 1/T subnormal in f32; k whose 1/k is subnormal
        if (ldt != ERA_CUDA_F64) {
            Case c;
            c.name = "f64-math";
            c.ldt = ldt;
            c.batch = {12};
            c.v = 300;
            c.temp = 1e39;
            c.topk = idx % 2 ? 7 : 0;
            c.seed = seed++;
            run_case(c);
            c.temp = 1.0;
            c.k = 5e38;  // k as f32 is inf: outputs in f64
            c.fdt = ERA_CUDA_F64;
            c.topk = 0;
            c.seed = seed++;
            run_case(c);
        }
        ++idx;
    }
}

int main() {
    printf("era CUDA token kernels (token_*.cu) in the emulator vs the CPU library %s\n", era_version());
    cases();
    kernel_only_cases();
    printf("scale branches over tokens with A > 0 (CPU): keep %d, sharpen %d, flatten %d\n", g_branch[0], g_branch[1], g_branch[2]);
    HCHECK(g_branch[0] > 0 && g_branch[1] > 0 && g_branch[2] > 0, "not every scale branch was taken");
    printf("top-K labels (CPU): inside %d, outside %d, NaN row %d\n", g_topk[0], g_topk[1], g_topk[2]);
    HCHECK(g_topk[0] > 0 && g_topk[1] > 0 && g_topk[2] > 0, "top-K: not every label kind was seen");
    return report("test_token");
}
