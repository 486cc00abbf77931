// The softmax head's CUDA kernels and the categorical entropy
// (src/kernels/cuda/softmax.cu; docs/math.md#softmax-head,
// #categorical-entropy), run on the CPU through the CUDA emulator
// (cuda_emu.hpp), against the CPU library through its C ABI on the same inputs
// (the reference).
//
// Every kernel and dtype; shapes with rows = 1, odd sizes, long rows
// (n > 32768), rank-3 batches with permuted, padded and negative strides and
// a strided last axis; the launcher's grid and a smaller one (the grid-stride
// loops; results must be bitwise identical); NaN and +-inf in rows; tau = e,
// the ends of the H0 range (b = 0, the degenerate slope 0), one-hot and near
// one-hot rows; outputs aliasing inputs. Outputs must leave memory outside
// their elements untouched.
//
// The reference is the CPU call on the same tensors, except for the f32
// kernels' gradients (and, in addition, their forwards): there it is the CPU
// on row-major copies, i.e. the CPU's vectorised f32 kernels that the f32
// kernels mirror (the CPU runs strided f32 inputs through its f64 path).
//
// Build and run: tests/cuda/emu/run.sh.
#include "cuda_emu.hpp"

#include "harness.hpp"
#include "heads.hpp"

using namespace harness;
using namespace heads;

extern "C" {
void era_softmax_forward_f32(const EraCudaSoftmax p);
void era_softmax_forward_f64(const EraCudaSoftmax p);
void era_softmax_backward_f32(const EraCudaSoftmax p);
void era_softmax_backward_f64(const EraCudaSoftmax p);
void era_softmax_entropy_f32(const EraCudaEntropy p);
void era_softmax_entropy_f64(const EraCudaEntropy p);
void era_softmax_entropy_bf16(const EraCudaEntropy p);
void era_softmax_entropy_f16(const EraCudaEntropy p);
}

// ================================================================ softmax head

struct SmConst {
    double slope, b, ub, u_ub;
    bool f32_kernels;
};

/** SoftmaxConstants::new and SoftmaxHead::f32_kernels (src/kernels/softmax.rs, src/heads/softmax.rs). */
static SmConst softmax_constants(int64_t n_, double tau, double H0) {
    double n = (double)n_;
    double ub = std::log(tau) / tau;
    double c = std::clamp(std::exp(H0 - 1.0), ub, n * ub);
    double b = std::clamp((c - ub) / (n - 1.0), 0.0, ub);
    double slope = ub - b;
    if (slope <= 16.0 * 2.220446049250313e-16 * ub) slope = 0.0;
    if (slope == 0.0) b = ub;
    SmConst k;
    k.slope = slope;
    k.b = b;
    k.ub = ub;
    k.u_ub = std::max(-1.0 - std::log(ub), 0.0);
    k.f32_kernels = (-1.0 - std::log(ub)) >= 1e-3 && b >= 1e-30;
    return k;
}

static EraHead *softmax_head(int64_t n, double tau, double H0) {
    EraConfig c;
    HCHECK_OK(era_config_default(ERA_HEAD_KIND_SOFTMAX, &c));
    c.num_classes = (uint64_t)n;
    c.tau = tau;
    c.target_entropy = H0;
    EraHead *h = nullptr;
    HCHECK_OK(era_head_new(&c, &h));
    return h;
}

struct SCase {
    int dt;
    int64_t n;
    std::vector<int64_t> batch;
    int layout;
    double tau;
    double h0_frac;  // H0 = lower + frac * (upper - lower); 0 and 1 are the exact ends
    double zscale;
    Alias alias;
    bool specials;
    uint64_t seed;
};

/** Adversarial rows: NaN, +inf, -inf entries, all -inf, one-hot in floating
 * point, ties, a doubled maximum, near one-hot (1 - s_j below the f64 epsilon),
 * and an infinite upstream gradient on a one-hot row. */
static void softmax_specials(Tensor &z, Tensor &g, int64_t n) {
    int64_t rows = z.rows();
    auto at = [&](int64_t r, int64_t c) { return r * n + c; };
    int64_t r = 1;
    if (r < rows) z.set(at(r++, n / 2), NAN);
    if (r < rows) z.set(at(r++, n - 1), INFINITY);
    if (r < rows) {
        for (int64_t c = 0; c < n; c += 3) z.set(at(r, c), -INFINITY);
        ++r;
    }
    if (r < rows) {
        for (int64_t c = 0; c < n; ++c) z.set(at(r, c), -INFINITY);
        ++r;
    }
    if (r < rows) {  // one-hot in floating point
        for (int64_t c = 0; c < n; ++c) z.set(at(r, c), -1e4);
        z.set(at(r, n / 3), 0.0);
        ++r;
    }
    if (r < rows) {  // ties: all equal
        for (int64_t c = 0; c < n; ++c) z.set(at(r, c), 0.5);
        ++r;
    }
    if (r < rows) {  // the maximum twice
        z.set(at(r, 0), 7.0);
        z.set(at(r, n - 1), 7.0);
        ++r;
    }
    if (r < rows) {  // near one-hot: 1 - s_j ~ n * e^-40
        z.set(at(r, n / 2), 40.0);
        ++r;
    }
    if (r < rows) {  // one-hot with an infinite gradient entry
        for (int64_t c = 0; c < n; ++c) z.set(at(r, c), -1e4);
        z.set(at(r, 0), 0.0);
        g.set(at(r, n - 1), INFINITY);
        ++r;
    }
    if (r < rows) {  // near one-hot at -inf elsewhere
        for (int64_t c = 0; c < n; ++c) z.set(at(r, c), c == 1 ? 1.0 : -INFINITY);
        ++r;
    }
}

/** Per row, the size of the terms the f32 gradient is made of:
 * max_i slope * s_i * (|a_i| + sum_k |a_k| s_k), with s, h = slope*s + b,
 * u = -1 - ln h and a_i = g_i (1/sqrt(2u_i) + 0.75)/h_i evaluated in f64.
 * dz_i = slope * s_i * (a_i - sum_k a_k s_k) loses f32 digits relative to that
 * size when the difference cancels (rows near one-hot, where the true
 * gradient is far below the f32 rounding of a_j s_j), so the f32 kernels are
 * compared relative to it rather than to the row's largest gradient. */
static std::vector<double> grad_scales(const Tensor &z, const Tensor &g, const SmConst &k, int64_t n) {
    std::vector<double> out(z.rows(), 0.0);
    std::vector<double> s(n), a(n);
    for (int64_t r = 0; r < z.rows(); ++r) {
        double m = -INFINITY;
        for (int64_t c = 0; c < n; ++c) m = std::max(m, z.get(r * n + c));
        double total = 0.0;
        for (int64_t c = 0; c < n; ++c) total += (s[c] = std::exp(z.get(r * n + c) - m));
        double dot_abs = 0.0;
        for (int64_t c = 0; c < n; ++c) {
            s[c] /= total;
            double h = std::max(k.slope * s[c] + k.b, 1.17549435e-38);
            double u = std::max(-1.0 - std::log(h), 1.17549435e-38);
            double gi = g.get(r * n + c);
            a[c] = (gi == 0.0 || s[c] == 0.0) ? 0.0 : std::fabs(gi) * (1.0 / std::sqrt(2.0 * u) + 0.75) / h;
            dot_abs += a[c] * s[c];
        }
        double sc = 0.0;
        for (int64_t c = 0; c < n; ++c) sc = std::max(sc, k.slope * s[c] * (a[c] + dot_abs));
        out[r] = std::isfinite(sc) && sc > 0.0 ? sc : 1e-300;
    }
    return out;
}

static void run_softmax(const SCase &sc) {
    Rng rng(sc.seed);
    const int dt = sc.dt;
    const std::vector<int64_t> shape = with_cols(sc.batch, sc.n);
    const int nd = (int)shape.size();
    const int64_t rows = prod(sc.batch);
    const double ub = std::log(sc.tau) / sc.tau;
    const double lower = 1.0 + std::log(ub), upper = 1.0 + std::log((double)sc.n * ub);
    const double H0 = sc.h0_frac == 0.0 ? lower : sc.h0_frac == 1.0 ? upper : lower + sc.h0_frac * (upper - lower);
    const SmConst k = softmax_constants(sc.n, sc.tau, H0);
    const bool f64_math = dt == ERA_CUDA_F64 || !k.f32_kernels;
    std::string what = std::string(fam(dt)) + " n=" + std::to_string(sc.n) + " batch=" + shape_str(sc.batch) +
                       " layout=" + std::to_string(sc.layout) + " tau=" + std::to_string(sc.tau) +
                       " H0frac=" + std::to_string(sc.h0_frac) + " alias=" + std::to_string((int)sc.alias) +
                       (f64_math ? " (f64 math)" : " (f32 math)");
    EraHead *head = softmax_head(sc.n, sc.tau, H0);
    if (!head) return;

    Layout lz = layout_kind(sc.layout, nd);
    Layout lg = sc.alias == ALIAS_G ? lz : layout_kind((sc.layout + 1) % 5, nd);
    Layout lo = sc.alias == ALIAS_NONE ? layout_kind((sc.layout + 2) % 5, nd) : lz;
    Tensor z = make(dt, shape, lz);
    fill_normal(z, rng, sc.zscale);
    Tensor g = make(dt, shape, lg);
    fill_normal(g, rng, 1.0);
    for (int64_t i = 0; i < g.numel(); i += 5) g.set(i, 0.0);
    if (sc.specials) softmax_specials(z, g, sc.n);

    EraCudaSoftmax p;
    memset(&p, 0, sizeof p);
    p.rows = rows;
    p.n = sc.n;
    p.slope = k.slope;
    p.b = k.b;
    p.ub = k.ub;
    p.u_ub = k.u_ub;
    p.f64_math = k.f32_kernels ? 0 : 1;
    // the CPU's f32 path runs only on contiguous rows; elsewhere it computes in f64
    const double tol_out = dt == ERA_CUDA_F64 ? kTolF64 : kTolF32;
    const double tol_grad = dt == ERA_CUDA_F64 ? kTolF64 : (f64_math ? kTolF32 : kTolF32Grad);
    const unsigned grids[2] = {launcher_grid(rows, 1), (unsigned)std::max<int64_t>(1, rows / 3)};
    const char *mode = dt == ERA_CUDA_F64 ? "" : f64_math ? " [f64 math]" : " [f32 math]";

    {
        Tensor want = make(dt, shape, lo), want32 = make(dt, shape);
        HCHECK_OK(era_head_forward(head, z.dl(), want.dl(), nullptr));
        Tensor zc = contiguous_copy(z);
        HCHECK_OK(era_head_forward(head, zc.dl(), want32.dl(), nullptr));
        Tensor outs[2];
        for (int kk = 0; kk < 2; ++kk) {
            outs[kk] = sc.alias == ALIAS_Z ? clone(z) : make(dt, shape, lo);
            EraCudaSoftmax q = p;
            q.z = (sc.alias == ALIAS_Z ? outs[kk] : z).rows_view(true);
            q.out = outs[kk].rows_view(true);
            emu_launch(dt == ERA_CUDA_F64 ? era_softmax_forward_f64 : era_softmax_forward_f32, grids[kk],
                       (unsigned)ERA_CUDA_BLOCK_VECTOR, q);
        }
        check_close(std::string("softmax_forward") + mode, fam(dt), outs[0], want, sc.n, 1.0, tol_out, what);
        if (!f64_math)
            check_close("softmax_forward [f32 math] vs cpu f32 kernel", fam(dt), outs[0], want32, sc.n, 1.0, tol_out, what);
        HCHECK(bitwise_equal(outs[0], outs[1]), "softmax_forward: grid-dependent result (%s)", what.c_str());
        HCHECK(untouched_outside(outs[0]), "softmax_forward: wrote outside the output (%s)", what.c_str());
        if (k.slope == 0.0)
            for (int64_t i = 0; i < outs[0].numel(); ++i) {
                double v = outs[0].get(i);
                if (!std::isnan(v)) HCHECK(v == 0.0, "degenerate head: output %g, want 0", v);
            }
    }
    {
        // f32 math: the reference is the CPU's f32 kernel (row-major copies; strided
        // rows take its f64 path)
        Tensor want = make(dt, shape, lo);
        if (!f64_math) {
            want = make(dt, shape);
            Tensor zc = contiguous_copy(z), gc2 = contiguous_copy(g);
            HCHECK_OK(era_head_backward(head, zc.dl(), gc2.dl(), want.dl(), nullptr));
        } else {
            HCHECK_OK(era_head_backward(head, z.dl(), g.dl(), want.dl(), nullptr));
        }
        Tensor outs[2];
        for (int kk = 0; kk < 2; ++kk) {
            outs[kk] = sc.alias == ALIAS_Z ? clone(z) : sc.alias == ALIAS_G ? clone(g) : make(dt, shape, lo);
            EraCudaSoftmax q = p;
            q.z = (sc.alias == ALIAS_Z ? outs[kk] : z).rows_view(true);
            q.grad_out = (sc.alias == ALIAS_G ? outs[kk] : g).rows_view(true);
            q.out = outs[kk].rows_view(true);
            emu_launch(dt == ERA_CUDA_F64 ? era_softmax_backward_f64 : era_softmax_backward_f32, grids[kk],
                       (unsigned)ERA_CUDA_BLOCK_VECTOR, q);
        }
        // f32 arithmetic: relative to the size of the terms of the row (see grad_scales)
        std::vector<double> scales;
        if (!f64_math) scales = grad_scales(z, g, k, sc.n);
        check_close(std::string("softmax_backward") + mode, fam(dt), outs[0], want, sc.n, 1e-300, tol_grad, what,
                    f64_math ? nullptr : &scales);
        HCHECK(bitwise_equal(outs[0], outs[1]), "softmax_backward: grid-dependent result (%s)", what.c_str());
        HCHECK(untouched_outside(outs[0]), "softmax_backward: wrote outside the output (%s)", what.c_str());
    }
    era_head_free(head);
}

static void softmax_cases() {
    uint64_t seed = 100;
    const double e = std::exp(1.0);
    for (int dt : {ERA_CUDA_F32, ERA_CUDA_F64}) {
        struct S {
            int64_t n;
            std::vector<int64_t> batch;
        };
        const S shapes[] = {{2, {1}}, {2, {13}}, {3, {4, 3}}, {10, {12}}, {257, {2, 3, 2}}, {1000, {11}}, {33001, {2}}};
        const double taus[] = {4.0, e, 2.8, 10.0};
        const double fracs[] = {0.0, 0.37, 0.9, 1.0};
        int i = 0;
        for (const S &s : shapes) {
            for (int t = 0; t < 4; ++t) {
                if (s.n > 5000 && t % 2 == 1) continue;  // keep long rows to a few heads
                SCase c;
                c.dt = dt;
                c.n = s.n;
                c.batch = s.batch;
                c.layout = (i + t) % 5;
                c.tau = taus[t];
                c.h0_frac = fracs[(i + t) % 4];
                const double scales[] = {0.1, 1.0, 10.0, 1000.0};
                c.zscale = scales[(i + 3 * t) % 4];
                c.alias = (Alias)((i + t) % 3);
                c.specials = true;
                c.seed = seed++;
                run_softmax(c);
            }
            // every tau at a mid-range H0 with plain random rows, contiguous (the CPU's f32 path)
            for (int t = 0; t < 4; ++t) {
                SCase c;
                c.dt = dt;
                c.n = s.n;
                c.batch = s.batch;
                c.layout = 0;
                c.tau = taus[t];
                c.h0_frac = 0.5;
                c.zscale = 2.0;
                c.alias = ALIAS_NONE;
                c.specials = false;
                c.seed = seed++;
                if (s.n > 5000 && t % 2 == 1) continue;
                run_softmax(c);
            }
            ++i;
        }
    }
}

// ================================================================ categorical entropy

static void softmax_entropy_cases() {
    Rng rng(31);
    uint64_t idx = 0;
    for (int dt : {ERA_CUDA_F32, ERA_CUDA_F64, ERA_CUDA_BF16, ERA_CUDA_F16}) {
        struct S {
            int64_t n;
            std::vector<int64_t> batch;
        };
        const S shapes[] = {{1, {3}}, {2, {1}}, {7, {12}}, {300, {2, 2, 3}}, {33001, {2}}};
        for (const S &s : shapes) {
            for (int out_dt : {ERA_CUDA_F32, ERA_CUDA_F64}) {
                const double temps[] = {1.0, 0.7, 3.0};
                double temp = temps[idx % 3];
                std::vector<int64_t> shape = with_cols(s.batch, s.n);
                int nd = (int)shape.size();
                Tensor x = make(dt, shape, layout_kind((int)(idx % 5), nd));
                fill_normal(x, rng, idx % 2 ? 3.0 : 30.0);  // f16 overflows beyond 65504: keep scales modest
                int64_t rows = x.rows(), n = s.n;
                if (rows > 5) {
                    x.set(1 * n + n / 2, NAN);
                    x.set(2 * n, INFINITY);
                    for (int64_t c = 0; c < n; ++c) x.set(3 * n + c, -INFINITY);
                    // every third column: with rows longer than the block, a thread meets -inf
                    // both before and after finite entries
                    for (int64_t c = 0; c < n; c += 3) x.set(4 * n + c, -INFINITY);
                    for (int64_t c = 0; c < n; ++c) x.set(5 * n + c, c == 0 ? 100.0 : -100.0);  // one-hot limit
                }
                Tensor want = make(out_dt, s.batch, layout_kind((int)((idx + 2) % 5), (int)s.batch.size()));
                HCHECK_OK(era_softmax_entropy(x.dl(), temp, want.dl(), nullptr));
                Tensor outs[2];
                const unsigned grids[2] = {launcher_grid(rows, 1), 1};
                for (int k = 0; k < 2; ++k) {
                    outs[k] = make_like(want);
                    EraCudaEntropy p;
                    memset(&p, 0, sizeof p);
                    p.x = x.rows_view(true);
                    p.out = outs[k].rows_view(false);
                    p.rows = rows;
                    p.cols = n;
                    p.inv_temperature = 1.0 / temp;
                    auto kern = dt == ERA_CUDA_F32   ? era_softmax_entropy_f32
                                : dt == ERA_CUDA_F64 ? era_softmax_entropy_f64
                                : dt == ERA_CUDA_BF16 ? era_softmax_entropy_bf16
                                                      : era_softmax_entropy_f16;
                    emu_launch(kern, grids[k], (unsigned)ERA_CUDA_BLOCK_VECTOR, p);
                }
                std::string what = std::string(fam(dt)) + "->" + fam(out_dt) + " " + shape_str(shape) +
                                   " T=" + std::to_string(temp);
                check_close("softmax_entropy", std::string(fam(dt)) + "->" + fam(out_dt), outs[0], want, 1, 1.0,
                            out_dt == ERA_CUDA_F64 ? kTolF64 : kTolOutF32, what);
                HCHECK(bitwise_equal(outs[0], outs[1]), "softmax_entropy: grid-dependent result (%s)", what.c_str());
                HCHECK(untouched_outside(outs[0]), "softmax_entropy: wrote outside the output (%s)", what.c_str());
                ++idx;
            }
        }
    }
}

int main() {
    printf("era CUDA softmax-head kernels (softmax.cu) in the emulator vs the CPU library %s\n", era_version());
    softmax_cases();
    softmax_entropy_cases();
    return report("test_softmax");
}
