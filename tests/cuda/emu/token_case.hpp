// The token head's emulator test cases (test_token.cpp; docs/math.md#token-head):
// the case description, the layouts, the CPU head and the kernels' parameter
// block of a case, the kernels' launches (as src/heads/cuda.rs), and the
// builder of a case's inputs (logits, labels, response ids, advantages, with
// the special rows a case asks for). Include after cuda_emu.hpp and harness.hpp.
#pragma once

#include "harness.hpp"

extern "C" {
void era_token_stats_f32(const EraCudaToken p);
void era_token_stats_f64(const EraCudaToken p);
void era_token_stats_bf16(const EraCudaToken p);
void era_token_stats_f16(const EraCudaToken p);
void era_token_group(const EraCudaToken p);
void era_token_finish(const EraCudaToken p);
void era_token_backward_f32(const EraCudaToken p);
void era_token_backward_f64(const EraCudaToken p);
void era_token_backward_bf16(const EraCudaToken p);
void era_token_backward_f16(const EraCudaToken p);
}

namespace token_case {

using namespace harness;

/** Block sizes of the launcher (src/heads/cuda.rs): the per-token row kernels (stats, backward), group and finish. */
constexpr unsigned kBlockVector = ERA_CUDA_BLOCK_VECTOR;
constexpr unsigned kBlockItems = ERA_CUDA_BLOCK_ITEMS;

// ------------------------------------------------------------- layouts

/** Layouts for a tensor of rank `nd` (last axis = columns for logits): 0
 * row-major; 1 batch axes permuted in memory (or padded rows for rank 2); 2
 * padded rows; 3 negative strides (first and last axis); 4 the last axis
 * outermost in memory (col_stride > 1) with a flipped batch axis; 5 row-major
 * shifted by one element (every row alignment; the vector path's head). */
inline Layout layout_kind(int kind, int nd) {
    Layout l;
    if (kind == 0 || nd == 0) return l;
    for (int a = 0; a < nd; ++a) l.order.push_back(a);
    l.pad.assign(nd, 0);
    l.flip.assign(nd, false);
    switch (kind) {
        case 1:
            if (nd >= 3) std::swap(l.order[0], l.order[nd - 2]);
            else l.pad[nd - 1] = 3;
            break;
        case 2:
            l.pad[nd - 1] = 5;
            if (nd >= 2) l.pad[0] = 1;
            break;
        case 3:
            l.flip[nd - 1] = true;
            l.flip[0] = true;
            break;
        case 4:
            l.order.clear();
            l.order.push_back(nd - 1);
            for (int a = nd - 2; a >= 0; --a) l.order.push_back(a);
            l.flip[0] = true;
            l.pad[nd - 1] = 1;
            break;
        case 5:
            return Layout{};  // shifted in make_shifted
    }
    return l;
}

/** A tensor of `shape` in layout `kind`; kind 5 starts one element into its storage. */
inline Tensor make_layout(int dtype, const std::vector<int64_t> &shape, int kind) {
    Tensor t = make(dtype, shape, layout_kind(kind, (int)shape.size()));
    if (kind == 5) {
        Tensor u = make(dtype, {t.numel() + 1});
        u.shape = shape;
        u.strides = t.strides;
        u.offset = 1;
        return u;
    }
    return t;
}

/** No byte of `t`'s storage was written. */
inline bool all_sentinel(const Tensor &t) {
    const unsigned char *p = (const unsigned char *)t.base();
    for (size_t b = 0; b < t.storage->size() * 8; ++b)
        if (p[b] != kSentinel) return false;
    return true;
}

// ------------------------------------------------------------- cases

enum Special : unsigned {
    SP_NAN = 1,          // a NaN entry in an unmasked token's row
    SP_INF = 2,          // a +inf entry
    SP_NEGINF_ROW = 4,   // a row of -inf only
    SP_NEGINF_SOME = 8,  // every other entry -inf, the label on one of them
    SP_TIES = 16,        // the top-K tie split at the K-th value, labels on both sides
    SP_ZERO_TIES = 32,   // -0.0 and +0.0 tied at the top
    SP_INCREASING = 64,  // a monotonically increasing row
    SP_BF16_TIES = 128,  // many exact ties everywhere (values on a coarse grid)
    SP_NEGINF_HALF = 256,  // half of every row -inf (a masked vocabulary), labels on finite entries
    SP_FAR_TAIL = 512,     // every row: four entries near the top, the rest 2 to 10 below (x 1/T at a low T)
};

struct Case {
    std::string name;
    int ldt = ERA_CUDA_F32;
    int ydt = ERA_CUDA_I64;  // labels
    int rdt = ERA_CUDA_I64;  // response ids
    int fdt = ERA_CUDA_F32;  // advantages, outputs, scale, grad_logprobs
    std::vector<int64_t> batch = {16};
    int64_t v = 100;
    int lay_logits = 0, lay_tok = 0, lay_grad = 0;
    double k = 2.0, temp = 1.0, omega_low = 0.45, omega_high = 3.0, rho = 0.2;
    bool adv_scaling = true;
    uint64_t topk = 0;
    unsigned outputs = 31;  // present outputs: 1 logprobs, 2 entropy, 4 scale, 8 advantages, 16 response entropy
    int responses = 4;
    double mask_frac = 0.2;
    unsigned special = 0;
    uint64_t seed = 1;
};

inline bool f32_constants(const Case &c) {
    double v[4] = {1.0 / c.temp, c.k, 1.0 / c.k, c.k / c.temp};
    for (double x : v) {
        float f = (float)x;
        if (!(std::fabs(f) >= 1.17549435e-38f && std::fabs(f) <= 3.40282347e38f)) return false;
    }
    return true;
}

inline EraHead *make_head(const Case &c) {
    EraConfig cfg;
    HCHECK_OK(era_config_default(ERA_HEAD_KIND_TOKEN, &cfg));
    cfg.k = c.k;
    cfg.omega_low = c.omega_low;
    cfg.omega_high = c.omega_high;
    cfg.top_fraction = c.rho;
    cfg.temperature = c.temp;
    cfg.advantage_scaling = c.adv_scaling ? 1 : 0;
    cfg.vocab_topk = c.topk;
    EraHead *h = nullptr;
    HCHECK_OK(era_head_new(&cfg, &h));
    return h;
}

inline EraCudaToken params(const Case &c, int64_t n) {
    EraCudaToken p;
    memset(&p, 0, sizeof p);
    p.n = n;
    p.v = c.v;
    p.vocab_topk = c.topk >= (uint64_t)c.v ? 0 : (int64_t)c.topk;  // as the launcher (heads/cuda.rs)
    p.k = c.k;
    p.omega_low = c.omega_low;
    p.omega_high = c.omega_high;
    p.top_fraction = c.rho;
    p.inv_temperature = 1.0 / c.temp;
    p.advantage_scaling = c.adv_scaling ? 1 : 0;
    return p;
}

typedef void (*Kernel)(const EraCudaToken);

inline Kernel stats_kernel(int dt) {
    return dt == ERA_CUDA_F32 ? era_token_stats_f32
           : dt == ERA_CUDA_F64 ? era_token_stats_f64
           : dt == ERA_CUDA_BF16 ? era_token_stats_bf16
                                 : era_token_stats_f16;
}
inline Kernel backward_kernel(int dt) {
    return dt == ERA_CUDA_F32 ? era_token_backward_f32
           : dt == ERA_CUDA_F64 ? era_token_backward_f64
           : dt == ERA_CUDA_BF16 ? era_token_backward_bf16
                                 : era_token_backward_f16;
}

/** The three forward launches (as heads/cuda.rs::token_forward) with grids
 * `gs` (stats) and `gi` (group, finish). */
inline void launch_forward(EraCudaToken p, int ldt, unsigned gs, unsigned gi) {
    std::vector<uint64_t> ws((size_t)ERA_CUDA_TOKEN_WORKSPACE_BYTES(std::max<int64_t>(p.n, 1)) / 8, 0x5a5a5a5a5a5a5a5aull);
    p.workspace = ws.data();
    emu_launch(stats_kernel(ldt), gs, kBlockVector, p);
    emu_launch(era_token_group, gi, kBlockItems, p);
    emu_launch(era_token_finish, gi, kBlockItems, p);
}

/** Builds the inputs of a case. */
struct Inputs {
    Tensor logits, labels, ids, adv;
    int64_t n;
};

inline Inputs build(const Case &c) {
    Rng rng(c.seed);
    std::vector<int64_t> shape = c.batch;
    shape.push_back(c.v);
    Inputs in;
    in.logits = make_layout(c.ldt, shape, c.lay_logits);
    in.labels = make_layout(c.ydt, c.batch, c.lay_tok);
    in.ids = make_layout(c.rdt, c.batch, (c.lay_tok + 2) % 6);
    in.adv = make_layout(c.fdt, c.batch, (c.lay_tok + 3) % 6);
    const int64_t n = in.labels.numel(), v = c.v;
    in.n = n;
    // response ids: arbitrary values, tokens of a response scattered
    const int64_t id_values[8] = {7, 123456, 2, 2147483000, 40, 0, 99, 31337};
    const double scales[4] = {40.0, 0.05, 3.0, 0.6};  // sharp, flat, mid, mid
    const double advs[4] = {1.0, 0.5, -0.7, 2.0};
    std::vector<int> resp(n);
    for (int64_t t = 0; t < n; ++t) {
        bool masked = rng.uniform(0, 1) < c.mask_frac;
        resp[t] = masked ? -1 : (int)rng.below(c.responses);
        int64_t id = masked ? -1 : id_values[resp[t] % 8] + (resp[t] / 8) * 1000;
        in.ids.set(t, (double)id);
        int64_t y = masked ? (t % 2 ? -3 : v + 7) : rng.below(v);  // masked labels: garbage
        in.labels.set(t, (double)y);
        double a = masked ? 0.3 : advs[resp[t] % 4];
        if (!masked && t % 5 == 0) a += 0.25 * rng.normal();  // per-token advantages too
        if (!masked && t % 11 == 3) a = 0.0;
        in.adv.set(t, a);
        double s = masked ? 1.0 : scales[resp[t] % 4];
        for (int64_t i = 0; i < v; ++i) in.logits.set(t * v + i, s * rng.normal());
        if (!masked && t % 2 == 0) {  // like a sampled token: the row's argmax or runner-up
            int64_t best = 0, second = 0;
            for (int64_t i = 1; i < v; ++i) {
                double x = in.logits.get(t * v + i);
                if (x > in.logits.get(t * v + best)) {
                    second = best;
                    best = i;
                } else if (second == best || x > in.logits.get(t * v + second)) {
                    second = i;
                }
            }
            in.labels.set(t, (double)(t % 4 == 0 ? best : second));
        }
    }
    auto unmasked = [&](int64_t from) -> int64_t {
        for (int64_t t = from; t < n; ++t)
            if (resp[t] >= 0) return t;
        return -1;
    };
    int64_t next = 0;
    auto pick = [&]() -> int64_t {
        int64_t t = unmasked(next);
        if (t >= 0) next = t + 1;
        return t;
    };
    if (c.special & SP_NAN) {
        int64_t t = pick();
        if (t >= 0) in.logits.set(t * v + v / 2, NAN);
    }
    if (c.special & SP_INF) {
        int64_t t = pick();
        if (t >= 0) in.logits.set(t * v + v / 3, INFINITY);
    }
    if (c.special & SP_NEGINF_ROW) {
        int64_t t = pick();
        if (t >= 0)
            for (int64_t i = 0; i < v; ++i) in.logits.set(t * v + i, -INFINITY);
    }
    if (c.special & SP_NEGINF_SOME) {
        int64_t t = pick();
        if (t >= 0 && v > 1) {
            for (int64_t i = 0; i < v; i += 2) in.logits.set(t * v + i, -INFINITY);
            in.labels.set(t, 0.0);
        }
        int64_t t2 = pick();  // a second one, label on a finite entry
        if (t2 >= 0 && v > 2) {
            for (int64_t i = 1; i < v; i += 3) in.logits.set(t2 * v + i, -INFINITY);
            in.labels.set(t2, 2.0);
        }
    }
    if (c.special & SP_TIES) {
        // the top: one entry at 21, then K+2 entries at 20 (the K-th value, a split tie)
        int64_t K = (int64_t)std::max<uint64_t>(c.topk, 1);
        for (int rep = 0; rep < 3; ++rep) {
            int64_t t = pick();
            if (t < 0 || v < K + 4) break;
            std::vector<int64_t> cols;
            for (int64_t i = 0; i < v; ++i) cols.push_back(i);
            for (int64_t i = v - 1; i > 0; --i) std::swap(cols[i], cols[rng.below(i + 1)]);
            in.logits.set(t * v + cols[0], 21.0);
            std::vector<int64_t> tied(cols.begin() + 1, cols.begin() + 1 + (K + 2));
            for (int64_t cidx : tied) in.logits.set(t * v + cidx, 20.0);
            std::sort(tied.begin(), tied.end());
            // rep 0: the lowest tied column (selected); 1: the highest (not selected);
            // 2: the last selected one (the (K-1)-th smallest)
            int64_t y = rep == 0 ? tied.front() : rep == 1 ? tied.back() : tied[K - 2 >= 0 ? K - 2 : 0];
            in.labels.set(t, (double)y);
        }
    }
    if (c.special & SP_ZERO_TIES) {
        int64_t t = pick();
        if (t >= 0 && v >= 8) {
            for (int64_t i = 0; i < v; ++i) in.logits.set(t * v + i, -1.0 - std::fabs(rng.normal()));
            for (int64_t i = 1; i < v; i += v / 6) in.logits.set(t * v + i, (i / (v / 6)) % 2 ? -0.0 : 0.0);
            in.labels.set(t, (double)(1 + 3 * (v / 6)));
        }
    }
    if (c.special & SP_INCREASING) {
        int64_t t = pick();
        if (t >= 0)
            for (int64_t i = 0; i < v; ++i) in.logits.set(t * v + i, -5.0 + 10.0 * (double)i / (double)v);
    }
    if (c.special & SP_NEGINF_HALF) {
        for (int64_t t = 0; t < n; ++t) {
            for (int64_t i = 1; i < v; i += 2) in.logits.set(t * v + i, -INFINITY);
            if (v > 1 && in.ids.get(t) >= 0) in.labels.set(t, (double)(2 * rng.below((v + 1) / 2)));
        }
    }
    if (c.special & SP_FAR_TAIL) {
        for (int64_t t = 0; t < n; ++t)
            for (int64_t i = 0; i < v; ++i) in.logits.set(t * v + i, i < 4 ? -0.01 * (double)i : -2.0 - 8.0 * rng.uniform(0, 1));
    }
    if (c.special & SP_BF16_TIES) {
        for (int64_t t = 0; t < n; ++t)
            for (int64_t i = 0; i < v; ++i) in.logits.set(t * v + i, std::round(in.logits.get(t * v + i) * 2.0) / 2.0);
    }
    return in;
}

}  // namespace token_case
