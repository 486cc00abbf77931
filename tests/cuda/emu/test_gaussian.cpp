// The Gaussian head's CUDA kernels (src/kernels/cuda/gaussian.cu: forward,
// backward, era_sum_rows, the Gaussian and truncated-normal entropies;
// docs/math.md#gaussian-head, #gaussian-entropy, #truncated-normal-entropy),
// run on the CPU through the CUDA emulator (cuda_emu.hpp), against the CPU
// library through its C ABI on the same inputs (the reference).
//
// Every kernel and dtype; shapes with rows = 1, D = 1, odd sizes, rank-3
// batches with permuted, padded and negative strides and a strided last axis;
// the launcher's grid and a grid of one block (the grid-stride loops; results
// must be bitwise identical); NaN and +-inf in rows, clipped coordinates, a
// head delta, a scalar and a per-row delta tensor, d/d delta per row and
// summed (era_sum_rows); outputs aliasing inputs; infinite truncation bounds; a
// parameter block launched again after the delta changed (a replayed capture).
// Outputs must leave memory outside their elements untouched.
//
// The reference is the CPU call on the same tensors, except for the f32
// kernels' gradients (and, in addition, their forwards): there it is the CPU
// on row-major copies, i.e. the CPU's vectorised f32 kernels that the f32
// kernels mirror (the CPU runs strided f32 inputs through its f64 path, whose
// clip mask and cancellations differ at the f32 rounding level).
//
// Build and run: tests/cuda/emu/run.sh.
#include "cuda_emu.hpp"

#include "harness.hpp"
#include "heads.hpp"

using namespace harness;
using namespace heads;

extern "C" {
void era_gaussian_forward_f32(const EraCudaGaussian p);
void era_gaussian_forward_f64(const EraCudaGaussian p);
void era_gaussian_backward_f32(const EraCudaGaussian p);
void era_gaussian_backward_f64(const EraCudaGaussian p);
void era_sum_rows(const EraCudaSumRows p);
void era_gaussian_entropy_f32(const EraCudaEntropy p);
void era_gaussian_entropy_f64(const EraCudaEntropy p);
void era_truncnorm_entropy_f32(const EraCudaEntropy p);
void era_truncnorm_entropy_f64(const EraCudaEntropy p);
}

constexpr int kBlock = 256;

// ================================================================ Gaussian head


struct GCase {
    int dt;
    int64_t D;
    std::vector<int64_t> batch;
    int layout;  // of z (and out when aliased); g and out use (layout + 1) % 5 and (layout + 2) % 5
    double H0, lo, hi;
    DeltaKind delta_kind;
    double delta;
    double zscale;
    Alias alias;
    bool specials;
    bool grad_delta;
    uint64_t seed;
};

/** Puts NaN, +inf, -inf, an all -inf row, a huge entry and ties into the first rows. */
static void gaussian_specials(Tensor &z, int64_t D) {
    int64_t rows = z.rows();
    auto at = [&](int64_t r, int64_t c) { return r * D + c; };
    if (rows > 1) z.set(at(1, D / 2), NAN);
    if (rows > 2) z.set(at(2, 0), INFINITY);
    if (rows > 3) z.set(at(3, D - 1), -INFINITY);
    if (rows > 4)
        for (int64_t c = 0; c < D; ++c) z.set(at(4, c), -INFINITY);
    if (rows > 5) z.set(at(5, 0), 1e30);
    if (rows > 6)
        for (int64_t c = 0; c < D; ++c) z.set(at(6, c), 0.25);
    if (rows > 7 && D > 1) {
        z.set(at(7, 0), -INFINITY);
        z.set(at(7, D - 1), 3.0);
    }
}

/** Per row, the size of the terms an f32 gradient is made of (f64 here):
 * grad: max_i |k| s_i (|g_i m_i| + sum_l |g_l m_l| s_l); d/d delta:
 * sum_l |g_l m_l| s_l. dz_i = k s_i (g_i m_i - sum_l g_l m_l s_l) cancels when
 * one coordinate dominates the row, and the f32 kernels (here and on the CPU)
 * then keep only the digits of this size, so they are compared relative to
 * it rather than to the row's largest gradient. */
static void gaussian_grad_scales(const Tensor &z, const Tensor &g, const std::vector<double> &ks, double lo, double hi,
                                 int64_t D, std::vector<double> &grad, std::vector<double> &dd) {
    int64_t rows = z.rows();
    grad.assign(rows, 1e-300);
    dd.assign(rows, 1e-300);
    std::vector<double> s(D), gm(D);
    for (int64_t r = 0; r < rows; ++r) {
        double k = ks[ks.size() == 1 ? 0 : r];
        double m = -INFINITY;
        for (int64_t c = 0; c < D; ++c) m = std::max(m, z.get(r * D + c));
        double total = 0.0;
        for (int64_t c = 0; c < D; ++c) total += (s[c] = std::exp(z.get(r * D + c) - m));
        double dot_abs = 0.0;
        for (int64_t c = 0; c < D; ++c) {
            s[c] /= total;
            double y = hi + k * s[c];
            gm[c] = (lo < y && y < hi) ? std::fabs(g.get(r * D + c)) : 0.0;
            dot_abs += gm[c] * s[c];
        }
        double sc = 0.0;
        for (int64_t c = 0; c < D; ++c) sc = std::max(sc, std::fabs(k) * s[c] * (gm[c] + dot_abs));
        if (std::isfinite(sc) && sc > 0.0) grad[r] = sc;
        if (std::isfinite(dot_abs) && dot_abs > 0.0) dd[r] = dot_abs;
    }
}

static void run_gaussian(const GCase &gc) {
    Rng rng(gc.seed);
    const int dt = gc.dt;
    const std::vector<int64_t> shape = with_cols(gc.batch, gc.D);
    const int nd = (int)shape.size();
    const int64_t rows = prod(gc.batch);
    std::string what = std::string(fam(dt)) + " D=" + std::to_string(gc.D) + " batch=" + shape_str(gc.batch) +
                       " layout=" + std::to_string(gc.layout) + " delta=" + std::to_string((int)gc.delta_kind) +
                       " alias=" + std::to_string((int)gc.alias) + " H0=" + std::to_string(gc.H0);

    EraHead *head = gaussian_head(gc.D, gc.H0, gc.lo, gc.hi, gc.delta_kind == DELTA_HEAD ? gc.delta : 0.0);
    if (!head) return;
    double head_delta = 0.0;
    HCHECK_OK(era_head_delta(head, &head_delta));

    Layout lz = layout_kind(gc.layout, nd);
    Layout lg = layout_kind((gc.layout + 1) % 5, nd);
    Layout lo = gc.alias == ALIAS_NONE ? layout_kind((gc.layout + 2) % 5, nd) : lz;
    if (gc.alias == ALIAS_G) lg = lz;

    Tensor z = make(dt, shape, lz);
    fill_normal(z, rng, gc.zscale);
    if (gc.specials) gaussian_specials(z, gc.D);
    Tensor g = make(dt, shape, lg);
    fill_normal(g, rng, 1.0);
    for (int64_t i = 0; i < g.numel(); i += 7) g.set(i, 0.0);

    // delta tensors: a one-element tensor, or one value per row (feasible: at most delta)
    Tensor dscalar = make(dt, {1});
    dscalar.set(0, gc.delta);
    Layout ld = layout_kind(gc.layout == 0 ? 0 : 3, (int)gc.batch.size());
    Tensor drows = make(dt, gc.batch, ld);
    for (int64_t r = 0; r < rows; ++r) drows.set(r, gc.delta - std::fabs(rng.normal()) * (r % 3));
    Tensor *delta_t = gc.delta_kind == DELTA_SCALAR ? &dscalar : &drows;

    EraCudaGaussian p;
    memset(&p, 0, sizeof p);
    p.rows = rows;
    p.dim = gc.D;
    p.lo = gc.lo;
    p.hi = gc.hi;
    p.k_base = gaussian_k((double)gc.D, gc.H0, gc.hi, 0.0);
    if (gc.delta_kind == DELTA_HEAD) {
        p.delta_mode = 0;
        p.k_scalar = gaussian_k((double)gc.D, gc.H0, gc.hi, head_delta);
    } else {
        p.delta_mode = 1;
        if (gc.delta_kind == DELTA_SCALAR) {
            memset(&p.delta, 0, sizeof p.delta);
            p.delta.data = dscalar.first();
            p.delta.dtype = dt;
        } else {
            p.delta = drows.rows_view(false);
        }
    }
    auto fwd = dt == ERA_CUDA_F64 ? era_gaussian_forward_f64 : era_gaussian_forward_f32;
    auto bwd = dt == ERA_CUDA_F64 ? era_gaussian_backward_f64 : era_gaussian_backward_f32;
    const double tol = dt == ERA_CUDA_F64 ? kTolF64 : kTolF32;

    // ---------------- forward
    {
        // the reference: the CPU on the same layout; for f32 also on row-major copies
        // (the CPU's vectorised f32 kernel, which the f32 kernel mirrors: strided
        // f32 inputs take the CPU's f64 path)
        Tensor want = make(dt, shape, lo), want32 = make(dt, shape);
        if (gc.delta_kind == DELTA_HEAD) HCHECK_OK(era_head_forward(head, z.dl(), want.dl(), nullptr));
        else HCHECK_OK(era_gaussian_forward_delta(head, z.dl(), delta_t->dl(), want.dl(), nullptr));
        Tensor zc = contiguous_copy(z);
        if (gc.delta_kind == DELTA_HEAD) HCHECK_OK(era_head_forward(head, zc.dl(), want32.dl(), nullptr));
        else HCHECK_OK(era_gaussian_forward_delta(head, zc.dl(), delta_t->dl(), want32.dl(), nullptr));
        Tensor outs[2];
        const unsigned grids[2] = {launcher_grid(rows, kBlock), 1};
        for (int k = 0; k < 2; ++k) {
            outs[k] = gc.alias == ALIAS_Z ? clone(z) : make(dt, shape, lo);
            EraCudaGaussian q = p;
            q.z = (gc.alias == ALIAS_Z ? outs[k] : z).rows_view(true);
            q.out = outs[k].rows_view(true);
            emu_launch(fwd, grids[k], (unsigned)kBlock, q);
        }
        check_close("gaussian_forward", fam(dt), outs[0], want, gc.D, 1.0, tol, what);
        if (dt == ERA_CUDA_F32) check_close("gaussian_forward vs cpu f32 kernel", fam(dt), outs[0], want32, gc.D, 1.0, tol, what);
        HCHECK(bitwise_equal(outs[0], outs[1]), "gaussian_forward: grid-dependent result (%s)", what.c_str());
        HCHECK(untouched_outside(outs[0]), "gaussian_forward: wrote outside the output (%s)", what.c_str());
    }

    // ---------------- backward
    {
        Tensor want = make(dt, shape, lo);
        Tensor gd_want = gc.delta_kind == DELTA_SCALAR ? make(dt, {1}) : make(dt, gc.batch, ld);
        bool with_gd = gc.grad_delta && gc.delta_kind != DELTA_HEAD;
        // the reference: for f32, the CPU's f32 kernel (row-major copies): the mask
        // m_i = [lo < y_i < hi] is decided in f32 there and here, while the f64 path
        // (strided f32 inputs on the CPU) keeps coordinates within an f32 rounding of
        // a bound unmasked
        Tensor zr = dt == ERA_CUDA_F32 ? contiguous_copy(z) : z, gr = dt == ERA_CUDA_F32 ? contiguous_copy(g) : g;
        if (dt == ERA_CUDA_F32) want = make(dt, shape);
        if (gc.delta_kind == DELTA_HEAD)
            HCHECK_OK(era_head_backward(head, zr.dl(), gr.dl(), want.dl(), nullptr));
        else
            HCHECK_OK(era_gaussian_backward_delta(head, zr.dl(), delta_t->dl(), gr.dl(), want.dl(),
                                                  with_gd ? gd_want.dl() : nullptr, nullptr));
        Tensor outs[2], gds[2];
        const unsigned grids[2] = {launcher_grid(rows, kBlock), 1};
        for (int k = 0; k < 2; ++k) {
            outs[k] = gc.alias == ALIAS_Z ? clone(z) : gc.alias == ALIAS_G ? clone(g) : make(dt, shape, lo);
            gds[k] = make_like(gd_want);
            EraCudaGaussian q = p;
            q.z = (gc.alias == ALIAS_Z ? outs[k] : z).rows_view(true);
            q.grad_out = (gc.alias == ALIAS_G ? outs[k] : g).rows_view(true);
            q.out = outs[k].rows_view(true);
            std::vector<double> sums(std::max<int64_t>(rows, 1), -12345.0);
            if (with_gd && gc.delta_kind == DELTA_ROWS) {
                q.grad_delta_mode = 1;
                q.grad_delta = gds[k].rows_view(false);
            } else if (with_gd) {
                q.grad_delta_mode = 2;
                q.row_sums = sums.data();
            }
            emu_launch(bwd, grids[k], (unsigned)kBlock, q);
            if (with_gd && gc.delta_kind == DELTA_SCALAR) {
                EraCudaSumRows s = {sums.data(), rows, gds[k].first(), dt, 0};
                emu_launch(era_sum_rows, 1u, (unsigned)ERA_CUDA_BLOCK_ITEMS, s);
            }
        }
        // f32: relative to the size of the row's terms (gaussian_grad_scales)
        std::vector<double> ks, grad_sc, dd_sc;
        for (int64_t r = 0; r < (gc.delta_kind == DELTA_ROWS ? rows : 1); ++r)
            ks.push_back(gc.delta_kind == DELTA_HEAD ? p.k_scalar
                         : gc.delta_kind == DELTA_SCALAR ? gaussian_k((double)gc.D, gc.H0, gc.hi, dscalar.get(0))
                                                         : gaussian_k((double)gc.D, gc.H0, gc.hi, drows.get(r)));
        gaussian_grad_scales(z, g, ks, gc.lo, gc.hi, gc.D, grad_sc, dd_sc);
        const bool f32 = dt == ERA_CUDA_F32;
        check_close("gaussian_backward", fam(dt), outs[0], want, gc.D, 1e-300, f32 ? kTolF32Grad : tol, what,
                    f32 ? &grad_sc : nullptr);
        HCHECK(bitwise_equal(outs[0], outs[1]), "gaussian_backward: grid-dependent result (%s)", what.c_str());
        HCHECK(untouched_outside(outs[0]), "gaussian_backward: wrote outside the output (%s)", what.c_str());
        if (with_gd) {
            // per row: relative to the row's value; summed: to the sum of |terms|, as the
            // summation order differs (pairwise here, by chunks on the CPU)
            const char *op = gc.delta_kind == DELTA_SCALAR ? "gaussian_grad_delta_sum" : "gaussian_grad_delta_rows";
            bool rows_f32 = f32 && gc.delta_kind == DELTA_ROWS;
            check_close(op, fam(dt), gds[0], gd_want, 1, gc.delta_kind == DELTA_SCALAR ? 1.0 : 1e-300, tol, what,
                        rows_f32 ? &dd_sc : nullptr);
            HCHECK(bitwise_equal(gds[0], gds[1]), "%s: grid-dependent result (%s)", op, what.c_str());
            HCHECK(untouched_outside(gds[0]), "%s: wrote outside the output (%s)", op, what.c_str());
        }
    }
    era_head_free(head);
}

/** A per-row delta beyond the feasible range (which the device cannot report)
 * gives that row NaN; the other rows are unaffected. No CPU reference: the CPU
 * rejects the call with INFEASIBLE_TARGET. */
static void gaussian_infeasible_row(int dt) {
    const int64_t D = 4, rows = 5;
    const double H0 = -4.0, lo = -8.0, hi = 0.0;
    const double max_delta = (double)D * (hi + 0.5 * ERA_LN_2PI_E) - H0;
    Rng rng(77);
    Tensor z = make(dt, {rows, D});
    fill_normal(z, rng, 1.0);
    Tensor g = make(dt, {rows, D});
    fill_normal(g, rng, 1.0);
    Tensor d = make(dt, {rows});
    for (int64_t r = 0; r < rows; ++r) d.set(r, 0.0);
    d.set(1, max_delta + 1.0);  // infeasible
    d.set(2, NAN);
    // exactly at the end (feasible, k = 0 up to rounding); in f32 the largest float not above it
    double dmax = max_delta;
    if (dt == ERA_CUDA_F32 && (double)(float)dmax > dmax) dmax = (double)std::nextafter((float)dmax, -INFINITY);
    d.set(3, dmax);
    Tensor out = make(dt, {rows, D}), gz = make(dt, {rows, D}), gd = make(dt, {rows});
    EraCudaGaussian p;
    memset(&p, 0, sizeof p);
    p.z = z.rows_view(true);
    p.out = out.rows_view(true);
    p.delta = d.rows_view(false);
    p.delta_mode = 1;
    p.rows = rows;
    p.dim = D;
    p.lo = lo;
    p.hi = hi;
    p.k_base = gaussian_k((double)D, H0, hi, 0.0);
    emu_launch(dt == ERA_CUDA_F64 ? era_gaussian_forward_f64 : era_gaussian_forward_f32, 1u, (unsigned)kBlock, p);
    p.grad_out = g.rows_view(true);
    p.out = gz.rows_view(true);
    p.grad_delta = gd.rows_view(false);
    p.grad_delta_mode = 1;
    emu_launch(dt == ERA_CUDA_F64 ? era_gaussian_backward_f64 : era_gaussian_backward_f32, 1u, (unsigned)kBlock, p);
    for (int64_t r = 0; r < rows; ++r) {
        bool nan_row = r == 1 || r == 2;
        for (int64_t c = 0; c < D; ++c) {
            double v = out.get(r * D + c), w = gz.get(r * D + c);
            HCHECK(nan_row ? std::isnan(v) && std::isnan(w) : std::isfinite(v) && std::isfinite(w),
                   "infeasible per-row delta (%s): row %lld col %lld out %g grad %g", fam(dt), (long long)r,
                   (long long)c, v, w);
            if (r == 3) HCHECK(std::fabs(v - hi) < 1e-5, "delta at the feasible end: out %g, want %g", v, hi);
        }
        HCHECK(nan_row == std::isnan(gd.get(r)), "infeasible per-row delta (%s): grad_delta row %lld = %g", fam(dt),
               (long long)r, gd.get(r));
    }
}

/** A captured call replayed (era_head_forward's documentation, docs/cuda.md): the
 * launcher's parameter block for the head's own delta (delta_mode 0) holds k of the delta
 * read when the block was built, so launching the same block again after
 * era_head_set_delta computes with the old delta; the block of a delta tensor
 * (delta_mode 1, era_gaussian_forward_delta) reads the tensor at every launch, so a
 * replay after the tensor was rewritten computes with the new delta. Both against the CPU. */
static void gaussian_replay_delta(int dt) {
    const int64_t D = 3, rows = 7;
    const double H0 = -3.0, lo = -5.0, hi = 1.0;
    EraHead *h = gaussian_head(D, H0, lo, hi, 0.2);
    Rng rng(91);
    Tensor z = make(dt, {rows, D});
    fill_normal(z, rng, 2.0);
    double d0 = 0.0, d1 = 0.0;
    HCHECK_OK(era_head_delta(h, &d0));
    Tensor dev_delta = make(dt, {1});
    dev_delta.set(0, d0);
    // "capture": the blocks as src/heads/cuda.rs builds them now
    EraCudaGaussian ph;
    memset(&ph, 0, sizeof ph);
    ph.z = z.rows_view(true);
    ph.rows = rows;
    ph.dim = D;
    ph.lo = lo;
    ph.hi = hi;
    ph.k_base = gaussian_k((double)D, H0, hi, 0.0);
    ph.delta_mode = 0;
    ph.k_scalar = gaussian_k((double)D, H0, hi, d0);
    EraCudaGaussian pt = ph;
    pt.delta_mode = 1;
    pt.k_scalar = 0.0;
    memset(&pt.delta, 0, sizeof pt.delta);  // a broadcast scalar: no batch axes
    pt.delta.data = dev_delta.ptr(0);
    pt.delta.dtype = dt;
    // the head's delta and the device tensor change between capture and replay
    HCHECK_OK(era_head_set_delta(h, d0 - 0.7));
    HCHECK_OK(era_head_delta(h, &d1));
    HCHECK(d1 != d0, "era_head_set_delta left delta at %g", d0);
    dev_delta.set(0, d1);
    // "replay"
    Tensor out_head = make(dt, {rows, D}), out_tensor = make(dt, {rows, D});
    ph.out = out_head.rows_view(true);
    pt.out = out_tensor.rows_view(true);
    auto fwd = dt == ERA_CUDA_F64 ? era_gaussian_forward_f64 : era_gaussian_forward_f32;
    emu_launch(fwd, 1u, (unsigned)kBlock, ph);
    emu_launch(fwd, 1u, (unsigned)kBlock, pt);
    // the CPU at the delta of the capture and at the new one
    Tensor want_old = make(dt, {rows, D}), want_new = make(dt, {rows, D}), old_delta = make(dt, {1});
    old_delta.set(0, d0);
    HCHECK_OK(era_gaussian_forward_delta(h, z.dl(), old_delta.dl(), want_old.dl(), nullptr));
    HCHECK_OK(era_head_forward(h, z.dl(), want_new.dl(), nullptr));
    const double tol = dt == ERA_CUDA_F64 ? kTolF64 : kTolF32;
    std::string what = std::string("delta ") + std::to_string(d0) + " -> " + std::to_string(d1);
    record("replay: head delta keeps the capture's", fam(dt), max_error(out_head, want_old, D, 1.0), tol, what);
    record("replay: delta tensor reads the new value", fam(dt), max_error(out_tensor, want_new, D, 1.0), tol, what);
    HCHECK(max_error(want_old, want_new, D, 1.0) > 100 * tol, "the two deltas give the same forward (%s)", what.c_str());
    era_head_free(h);
}

/** era_sum_rows alone: n = 0 gives 0; the f64 total of n values. */
static void sum_rows_cases() {
    Rng rng(5);
    for (int64_t n : {0, 1, 2, 255, 256, 257, 1000, 100000}) {
        for (int dt : {ERA_CUDA_F32, ERA_CUDA_F64}) {
            std::vector<double> src(std::max<int64_t>(n, 1));
            double want = 0.0, abs_sum = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                src[i] = rng.normal() * 10.0;
                want += src[i];
                abs_sum += std::fabs(src[i]);
            }
            Tensor dst = make(dt, {1});
            EraCudaSumRows p = {n == 0 ? nullptr : src.data(), n, dst.first(), dt, 0};
            // the launcher starts one block; a larger grid must not change anything
            emu_launch(era_sum_rows, n == 1000 ? 3u : 1u, (unsigned)ERA_CUDA_BLOCK_ITEMS, p);
            double got = dst.get(0);
            double err = std::fabs(got - (dt == ERA_CUDA_F64 ? want : (double)(float)want)) / std::max(abs_sum, 1.0);
            record("sum_rows", fam(dt), err, dt == ERA_CUDA_F64 ? kTolF64 : kTolOutF32, "n=" + std::to_string(n));
            HCHECK(untouched_outside(dst), "sum_rows wrote outside dst");
            if (n == 0) HCHECK(got == 0.0 && !std::signbit(got), "sum_rows n = 0 gives %g", got);
        }
    }
}

static void gaussian_cases() {
    uint64_t seed = 1;
    for (int dt : {ERA_CUDA_F32, ERA_CUDA_F64}) {
        // shapes: rows = 1, D = 1, the register paths (D <= 8, <= 32) and the re-reading one
        struct S {
            int64_t D;
            std::vector<int64_t> batch;
        };
        const S shapes[] = {{1, {1}}, {1, {7}}, {3, {1}}, {6, {300}}, {8, {5, 3}}, {9, {2, 3, 4}},
                            {17, {37}}, {32, {4, 5}}, {33, {3, 1, 7}}, {70, {2, 11}}, {64, {513}}};
        int i = 0;
        for (const S &s : shapes) {
            const double D = (double)s.D;
            // H0: SAC's -D, the official 0.25*D, and the feasible maximum (k = 0)
            const double h0s[3] = {-D, 0.25 * D, D * (0.0 + 0.5 * ERA_LN_2PI_E)};
            for (int hk = 0; hk < 3; ++hk) {
                GCase c;
                c.dt = dt;
                c.D = s.D;
                c.batch = s.batch;
                c.layout = (i + hk) % 5;
                c.H0 = h0s[hk];
                c.lo = -8.0;
                c.hi = 0.0;
                c.delta_kind = (DeltaKind)((i + hk) % 3);
                c.delta = hk == 2 ? 0.0 : -0.5 * D + 0.3;
                c.zscale = (hk == 1) ? 30.0 : 1.5;  // 30: many clipped coordinates
                c.alias = (Alias)((i + 2 * hk) % 3);
                c.specials = (i % 2) == 1;
                c.grad_delta = true;
                c.seed = seed++;
                run_gaussian(c);
            }
            // TD-MPC2's bounds [-10, 2] and a large-scale row set with clipping
            GCase c;
            c.dt = dt;
            c.D = s.D;
            c.batch = s.batch;
            c.layout = (i + 3) % 5;
            c.H0 = -0.5 * D;
            c.lo = -10.0;
            c.hi = 2.0;
            c.delta_kind = (DeltaKind)(i % 3);
            c.delta = -1.0;
            c.zscale = 8.0;
            c.alias = ALIAS_NONE;
            c.specials = true;
            c.grad_delta = (i % 2) == 0;
            c.seed = seed++;
            run_gaussian(c);
            ++i;
        }
        gaussian_infeasible_row(dt);
    }
    sum_rows_cases();
}

// ================================================================ Gaussian entropies

static void gaussian_entropy_cases() {
    Rng rng(11);
    for (int dt : {ERA_CUDA_F32, ERA_CUDA_F64}) {
        struct S {
            int64_t D;
            std::vector<int64_t> batch;
        };
        const S shapes[] = {{1, {1}}, {5, {}}, {6, {300}}, {3, {4, 5, 2}}, {33, {7}}};
        int i = 0;
        for (const S &s : shapes) {
            std::vector<int64_t> shape = with_cols(s.batch, s.D);
            int nd = (int)shape.size();
            Tensor x = make(dt, shape, layout_kind(i % 5, nd));
            fill_normal(x, rng, 2.0, -1.0);
            if (x.numel() > 4) {
                x.set(1, NAN);
                x.set(x.numel() - 1, -INFINITY);
            }
            Tensor want = make(dt, s.batch, layout_kind((i + 3) % 5, (int)s.batch.size()));
            HCHECK_OK(era_gaussian_entropy(x.dl(), want.dl(), nullptr));
            Tensor got = make_like(want);
            EraCudaEntropy p;
            memset(&p, 0, sizeof p);
            p.x = x.rows_view(true);
            p.out = got.rows_view(false);
            p.rows = x.rows();
            p.cols = s.D;
            p.inv_temperature = 1.0;
            emu_launch(dt == ERA_CUDA_F64 ? era_gaussian_entropy_f64 : era_gaussian_entropy_f32,
                       launcher_grid(p.rows, kBlock), (unsigned)kBlock, p);
            check_close("gaussian_entropy", fam(dt), got, want, 1, 1.0, dt == ERA_CUDA_F64 ? kTolF64 : kTolOutF32,
                        shape_str(shape));
            HCHECK(untouched_outside(got), "gaussian_entropy wrote outside the output");
            ++i;
        }
    }
}

static void truncnorm_cases() {
    Rng rng(12);
    const double bounds[][2] = {{-1.0, 1.0}, {-INFINITY, INFINITY}, {-INFINITY, 0.5}, {0.2, INFINITY}, {-3.0, -2.5}};
    for (int dt : {ERA_CUDA_F32, ERA_CUDA_F64}) {
        int i = 0;
        for (auto &bd : bounds) {
            for (int variant = 0; variant < 2; ++variant) {
                std::vector<int64_t> batch = variant == 0 ? std::vector<int64_t>{9} : std::vector<int64_t>{3, 1, 4};
                int64_t D = variant == 0 ? 6 : 1;
                std::vector<int64_t> shape = with_cols(batch, D);
                int nd = (int)shape.size();
                Tensor m = make(dt, shape, layout_kind(i % 5, nd));
                Tensor l = make(dt, shape, layout_kind((i + 2) % 5, nd));
                fill_normal(m, rng, 1.5);
                fill_normal(l, rng, 1.0, -0.5);
                // locations far outside the interval (Z underflows) and tiny sigmas
                if (m.numel() > 6) {
                    m.set(0, 60.0);
                    l.set(0, -2.0);
                    m.set(1, -45.0);
                    l.set(1, -3.0);
                    m.set(2, 0.3);
                    l.set(2, -8.0);
                    l.set(3, 3.0);
                    m.set(4, NAN);
                }
                Tensor want = make(dt, batch, layout_kind((i + 1) % 5, (int)batch.size()));
                HCHECK_OK(era_truncated_normal_entropy(m.dl(), l.dl(), bd[0], bd[1], want.dl(), nullptr));
                Tensor got = make_like(want);
                EraCudaEntropy p;
                memset(&p, 0, sizeof p);
                p.x = m.rows_view(true);
                p.x2 = l.rows_view(true);
                p.out = got.rows_view(false);
                p.rows = m.rows();
                p.cols = D;
                p.inv_temperature = 1.0;
                p.low = bd[0];
                p.high = bd[1];
                emu_launch(dt == ERA_CUDA_F64 ? era_truncnorm_entropy_f64 : era_truncnorm_entropy_f32,
                           launcher_grid(p.rows, kBlock), (unsigned)kBlock, p);
                // erfc/log of the device library against the CPU's (libm crate): a few ulps
                check_close("truncnorm_entropy", fam(dt), got, want, 1, 1.0, dt == ERA_CUDA_F64 ? kTolF64 : kTolOutF32,
                            "bounds [" + std::to_string(bd[0]) + "," + std::to_string(bd[1]) + "] " + shape_str(shape));
                HCHECK(untouched_outside(got), "truncnorm_entropy wrote outside the output");
                ++i;
            }
        }
    }
}

int main() {
    printf("era CUDA Gaussian-head kernels (gaussian.cu) in the emulator vs the CPU library %s\n", era_version());
    gaussian_cases();
    gaussian_entropy_cases();
    truncnorm_cases();
    for (int dt : {ERA_CUDA_F32, ERA_CUDA_F64}) gaussian_replay_delta(dt);
    return report("test_gaussian");
}
