// The masked Gaussian head's CUDA kernels (src/kernels/cuda/gaussian.cu:
// era_gaussian_masked_{forward,backward}_{f32,f64}; docs/math.md#gaussian-mask),
// run on the CPU through the CUDA emulator (cuda_emu.hpp), against the CPU
// library's era_gaussian_forward_masked / era_gaussian_backward_masked on the
// same inputs (the reference).
//
// Random rows with a = 0, a = 1, a = D and random masks; fill and pass-through;
// the head's delta, a scalar and a per-row delta tensor; d/d delta per row and
// summed (era_sum_rows); f32 and f64; strided, padded and negative-stride
// layouts; outputs aliasing z or grad_out; NaN in inactive entries; the
// launcher's grid and a grid of one block (bitwise identical results); an
// all-ones mask (the CPU then runs the unmasked head); a mask entry other than
// 0 or 1 (the CPU rejects the call; the kernel gives that row NaN).
//
// Rows with some entry 0 are computed in f64 for every dtype on both sides, so
// f32 results differ by at most an f32 rounding of the same f64 value; a row of
// ones is the unmasked head's row on CUDA (f32 arithmetic for f32) and on the
// CPU only where the whole mask is ones (else its f64 masked row): f32
// tolerances as in test_gaussian.cpp, gradients relative to the size of their
// terms (masked_grad_scales).
//
// Build and run: tests/cuda/emu/run.sh.
#include "cuda_emu.hpp"

#include "harness.hpp"
#include "heads.hpp"

using namespace harness;
using namespace heads;

extern "C" {
void era_gaussian_masked_forward_f32(const EraCudaGaussianMasked p);
void era_gaussian_masked_forward_f64(const EraCudaGaussianMasked p);
void era_gaussian_masked_backward_f32(const EraCudaGaussianMasked p);
void era_gaussian_masked_backward_f64(const EraCudaGaussianMasked p);
void era_gaussian_forward_f32(const EraCudaGaussian p);
void era_gaussian_forward_f64(const EraCudaGaussian p);
void era_gaussian_backward_f32(const EraCudaGaussian p);
void era_gaussian_backward_f64(const EraCudaGaussian p);
void era_sum_rows(const EraCudaSumRows p);
}

constexpr int kBlock = 256;

enum MaskKind { MASK_MIXED, MASK_ONES, MASK_INVALID };

struct MCase {
    int dt;
    int64_t D;
    std::vector<int64_t> batch;
    int layout;
    DeltaKind delta_kind;
    bool fill;
    Alias alias;
    MaskKind mask_kind;
    bool grad_delta;
    uint64_t seed;
};

/** Per row, the size of the terms an f32 gradient is made of (see
 * gaussian_grad_scales in test_gaussian.cpp), over the active entries with
 * k_a = (a/D) k: grad: max_i |k_a| s_i (|g_i m_i| + sum_l |g_l m_l| s_l);
 * d/d delta: (a/D) sum_l |g_l m_l| s_l. */
static void masked_grad_scales(const Tensor &z, const Tensor &mask, const Tensor &g, const std::vector<double> &ks,
                               double lo, double hi, int64_t D, std::vector<double> &grad, std::vector<double> &dd) {
    int64_t rows = z.rows();
    grad.assign(rows, 1e-300);
    dd.assign(rows, 1e-300);
    std::vector<double> s(D), gm(D);
    for (int64_t r = 0; r < rows; ++r) {
        int64_t a = 0;
        double m = -INFINITY;
        for (int64_t c = 0; c < D; ++c)
            if (mask.get(r * D + c) != 0.0) {
                ++a;
                m = std::max(m, z.get(r * D + c));
            }
        if (a == 0) continue;
        double frac = (double)a / (double)D, ka = ks[ks.size() == 1 ? 0 : r] * frac;
        double total = 0.0;
        for (int64_t c = 0; c < D; ++c) s[c] = mask.get(r * D + c) != 0.0 ? std::exp(z.get(r * D + c) - m) : 0.0;
        for (int64_t c = 0; c < D; ++c) total += s[c];
        double dot_abs = 0.0;
        for (int64_t c = 0; c < D; ++c) {
            s[c] /= total;
            double y = hi + ka * s[c];
            gm[c] = (s[c] > 0.0 && lo < y && y < hi) ? std::fabs(g.get(r * D + c)) : 0.0;
            dot_abs += gm[c] * s[c];
        }
        double sc = 0.0;
        for (int64_t c = 0; c < D; ++c) sc = std::max(sc, std::fabs(ka) * s[c] * (gm[c] + dot_abs));
        if (std::isfinite(sc) && sc > 0.0) grad[r] = sc;
        if (std::isfinite(dot_abs) && dot_abs > 0.0) dd[r] = dot_abs * frac;
    }
}

static void run_masked(const MCase &mc) {
    Rng rng(mc.seed);
    const int dt = mc.dt;
    const int64_t D = mc.D;
    const std::vector<int64_t> shape = with_cols(mc.batch, D);
    const int nd = (int)shape.size();
    const int64_t rows = prod(mc.batch);
    const double H0 = -0.8 * (double)D, lo = -5.0, hi = 1.0, delta = 0.3, fillv = -0.75;
    std::string what = std::string(fam(dt)) + " D=" + std::to_string(D) + " batch=" + shape_str(mc.batch) +
                       " layout=" + std::to_string(mc.layout) + " delta=" + std::to_string((int)mc.delta_kind) +
                       " fill=" + std::to_string((int)mc.fill) + " alias=" + std::to_string((int)mc.alias) +
                       " mask=" + std::to_string((int)mc.mask_kind);

    EraHead *head = gaussian_head(D, H0, lo, hi, mc.delta_kind == DELTA_HEAD ? delta : 0.0);
    if (!head) return;
    double head_delta = 0.0;
    HCHECK_OK(era_head_delta(head, &head_delta));

    Layout lz = layout_kind(mc.layout, nd);
    Layout lg = mc.alias == ALIAS_G ? lz : layout_kind((mc.layout + 1) % 5, nd);
    Layout lo_ = mc.alias == ALIAS_NONE ? layout_kind((mc.layout + 2) % 5, nd) : lz;
    Layout lm = layout_kind((mc.layout + 3) % 5, nd);

    Tensor z = make(dt, shape, lz);
    fill_normal(z, rng, 2.0);
    Tensor g = make(dt, shape, lg);
    fill_normal(g, rng, 1.0);
    Tensor mask = make(dt, shape, lm);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < D; ++c) {
            double v;
            if (mc.mask_kind == MASK_ONES) v = 1.0;
            else if (r % 4 == 0) v = 0.0;                          // a = 0
            else if (r % 4 == 1) v = c == (r / 4) % D ? 1.0 : 0.0;  // a = 1
            else if (r % 4 == 2) v = 1.0;                          // a = D
            else v = rng.normal() > 0.0 ? 1.0 : 0.0;
            mask.set(r * D + c, v);
        }
    // a NaN in an inactive entry stays there (pass-through) or is replaced (fill)
    if (mc.mask_kind == MASK_MIXED && rows > 4 && D > 1) z.set(4 * D + (D - 1), NAN);
    const int64_t bad_row = rows > 3 ? 3 : 0;
    if (mc.mask_kind == MASK_INVALID) mask.set(bad_row * D, 0.5);

    Tensor dscalar = make(dt, {1});
    dscalar.set(0, delta);
    Layout ld = layout_kind(mc.layout == 0 ? 0 : 3, (int)mc.batch.size());
    Tensor drows = make(dt, mc.batch, ld);
    for (int64_t r = 0; r < rows; ++r) drows.set(r, delta - std::fabs(rng.normal()) * (r % 3));
    Tensor *delta_t = mc.delta_kind == DELTA_HEAD ? nullptr : mc.delta_kind == DELTA_SCALAR ? &dscalar : &drows;

    EraCudaGaussianMasked p;
    memset(&p, 0, sizeof p);
    p.g.rows = rows;
    p.g.dim = D;
    p.g.lo = lo;
    p.g.hi = hi;
    p.g.k_base = gaussian_k((double)D, H0, hi, 0.0);
    if (mc.delta_kind == DELTA_HEAD) {
        p.g.delta_mode = 0;
        p.g.k_scalar = gaussian_k((double)D, H0, hi, head_delta);
    } else {
        p.g.delta_mode = 1;
        if (mc.delta_kind == DELTA_SCALAR) {
            p.g.delta.data = dscalar.first();
            p.g.delta.dtype = dt;
        } else {
            p.g.delta = drows.rows_view(false);
        }
    }
    p.mask = mask.rows_view(true);
    p.fill = mc.fill ? fillv : 0.0;
    p.fill_mode = mc.fill ? 1 : 0;
    const double *fillp = mc.fill ? &fillv : nullptr;
    auto fwd = dt == ERA_CUDA_F64 ? era_gaussian_masked_forward_f64 : era_gaussian_masked_forward_f32;
    auto bwd = dt == ERA_CUDA_F64 ? era_gaussian_masked_backward_f64 : era_gaussian_masked_backward_f32;
    const bool f32 = dt == ERA_CUDA_F32;
    const double tol = f32 ? kTolF32 : kTolF64;
    const unsigned grids[2] = {launcher_grid(rows, kBlock), 1};

    // ---------------- forward
    {
        Tensor outs[2];
        for (int k = 0; k < 2; ++k) {
            outs[k] = mc.alias == ALIAS_Z ? clone(z) : make(dt, shape, lo_);
            EraCudaGaussianMasked q = p;
            q.g.z = (mc.alias == ALIAS_Z ? outs[k] : z).rows_view(true);
            q.g.out = outs[k].rows_view(true);
            emu_launch(fwd, grids[k], (unsigned)kBlock, q);
        }
        Tensor want = make(dt, shape, lo_);
        EraStatus st = era_gaussian_forward_masked(head, z.dl(), mask.dl(), delta_t ? delta_t->dl() : nullptr, fillp,
                                                   want.dl(), nullptr);
        if (mc.mask_kind == MASK_INVALID) {
            HCHECK(st == ERA_STATUS_INVALID_ARGUMENT, "masked forward: CPU accepted an invalid mask (%s)", what.c_str());
            for (int64_t c = 0; c < D; ++c)
                HCHECK(std::isnan(outs[0].get(bad_row * D + c)), "masked forward: invalid mask row not NaN (%s)",
                       what.c_str());
        } else {
            HCHECK_OK(st);
            check_close("gaussian_masked_forward", fam(dt), outs[0], want, D, 1.0, tol, what);
        }
        if (mc.mask_kind == MASK_ONES) {
            // a mask of ones: the unmasked kernel's result bit for bit
            Tensor plain = mc.alias == ALIAS_Z ? clone(z) : make(dt, shape, lo_);
            EraCudaGaussian q = p.g;
            q.z = (mc.alias == ALIAS_Z ? plain : z).rows_view(true);
            q.out = plain.rows_view(true);
            emu_launch(dt == ERA_CUDA_F64 ? era_gaussian_forward_f64 : era_gaussian_forward_f32, grids[0],
                       (unsigned)kBlock, q);
            HCHECK(bitwise_equal(outs[0], plain), "masked forward: ones differ from the unmasked kernel (%s)",
                   what.c_str());
        }
        HCHECK(bitwise_equal(outs[0], outs[1]), "masked forward: grid-dependent result (%s)", what.c_str());
        HCHECK(untouched_outside(outs[0]), "masked forward: wrote outside the output (%s)", what.c_str());
    }
    if (mc.mask_kind == MASK_ONES) {
        // the unmasked kernel's gradient bit for bit (test_gaussian.cpp compares that one
        // with the CPU)
        Tensor a = make(dt, shape, lo_), b = make(dt, shape, lo_);
        EraCudaGaussianMasked q = p;
        q.g.z = z.rows_view(true);
        q.g.grad_out = g.rows_view(true);
        q.g.out = a.rows_view(true);
        emu_launch(bwd, grids[0], (unsigned)kBlock, q);
        EraCudaGaussian u = q.g;
        u.out = b.rows_view(true);
        emu_launch(dt == ERA_CUDA_F64 ? era_gaussian_backward_f64 : era_gaussian_backward_f32, grids[0],
                   (unsigned)kBlock, u);
        HCHECK(bitwise_equal(a, b), "masked backward: ones differ from the unmasked kernel (%s)", what.c_str());
        if (f32) {
            // the CPU's f32 gradients on strided inputs take its f64 path (test_gaussian.cpp)
            era_head_free(head);
            return;
        }
    }

    // ---------------- backward
    {
        const bool with_gd = mc.grad_delta && mc.delta_kind != DELTA_HEAD;
        Tensor gd_want = mc.delta_kind == DELTA_SCALAR ? make(dt, {1}) : make(dt, mc.batch, ld);
        Tensor outs[2], gds[2];
        for (int k = 0; k < 2; ++k) {
            outs[k] = mc.alias == ALIAS_Z ? clone(z) : mc.alias == ALIAS_G ? clone(g) : make(dt, shape, lo_);
            gds[k] = make_like(gd_want);
            EraCudaGaussianMasked q = p;
            q.g.z = (mc.alias == ALIAS_Z ? outs[k] : z).rows_view(true);
            q.g.grad_out = (mc.alias == ALIAS_G ? outs[k] : g).rows_view(true);
            q.g.out = outs[k].rows_view(true);
            std::vector<double> sums(std::max<int64_t>(rows, 1), -12345.0);
            if (with_gd && mc.delta_kind == DELTA_ROWS) {
                q.g.grad_delta_mode = 1;
                q.g.grad_delta = gds[k].rows_view(false);
            } else if (with_gd) {
                q.g.grad_delta_mode = 2;
                q.g.row_sums = sums.data();
            }
            emu_launch(bwd, grids[k], (unsigned)kBlock, q);
            if (with_gd && mc.delta_kind == DELTA_SCALAR) {
                EraCudaSumRows s = {sums.data(), rows, gds[k].first(), dt, 0};
                emu_launch(era_sum_rows, 1u, (unsigned)ERA_CUDA_BLOCK_ITEMS, s);
            }
        }
        Tensor want = make(dt, shape, lo_);
        EraStatus st = era_gaussian_backward_masked(head, z.dl(), mask.dl(), delta_t ? delta_t->dl() : nullptr, fillp,
                                                    g.dl(), want.dl(), with_gd ? gd_want.dl() : nullptr, nullptr);
        if (mc.mask_kind == MASK_INVALID) {
            HCHECK(st == ERA_STATUS_INVALID_ARGUMENT, "masked backward: CPU accepted an invalid mask (%s)", what.c_str());
            for (int64_t c = 0; c < D; ++c)
                HCHECK(std::isnan(outs[0].get(bad_row * D + c)), "masked backward: invalid mask row not NaN (%s)",
                       what.c_str());
        } else {
            HCHECK_OK(st);
            std::vector<double> ks, grad_sc, dd_sc;
            for (int64_t r = 0; r < (mc.delta_kind == DELTA_ROWS ? rows : 1); ++r)
                ks.push_back(mc.delta_kind == DELTA_HEAD ? p.g.k_scalar
                             : mc.delta_kind == DELTA_SCALAR ? gaussian_k((double)D, H0, hi, dscalar.get(0))
                                                             : gaussian_k((double)D, H0, hi, drows.get(r)));
            masked_grad_scales(z, mask, g, ks, lo, hi, D, grad_sc, dd_sc);
            check_close("gaussian_masked_backward", fam(dt), outs[0], want, D, 1e-300, f32 ? kTolF32Grad : tol, what,
                        f32 ? &grad_sc : nullptr);
            if (with_gd) {
                const char *op =
                    mc.delta_kind == DELTA_SCALAR ? "gaussian_masked_grad_delta_sum" : "gaussian_masked_grad_delta_rows";
                bool rows_f32 = f32 && mc.delta_kind == DELTA_ROWS;
                check_close(op, fam(dt), gds[0], gd_want, 1, mc.delta_kind == DELTA_SCALAR ? 1.0 : 1e-300, tol, what,
                            rows_f32 ? &dd_sc : nullptr);
            }
        }
        HCHECK(bitwise_equal(outs[0], outs[1]), "masked backward: grid-dependent result (%s)", what.c_str());
        HCHECK(untouched_outside(outs[0]), "masked backward: wrote outside the output (%s)", what.c_str());
        if (with_gd) {
            HCHECK(bitwise_equal(gds[0], gds[1]), "masked grad_delta: grid-dependent result (%s)", what.c_str());
            HCHECK(untouched_outside(gds[0]), "masked grad_delta: wrote outside the output (%s)", what.c_str());
        }
    }
    era_head_free(head);
}

static void masked_cases() {
    uint64_t seed = 1;
    const std::vector<std::pair<int64_t, std::vector<int64_t>>> shapes = {
        {1, {9}}, {3, {13}}, {6, {4, 7}}, {17, {3, 2, 5}}, {40, {21}}, {5, {1}},
    };
    for (int dt : {ERA_CUDA_F32, ERA_CUDA_F64})
        for (size_t si = 0; si < shapes.size(); ++si)
            for (DeltaKind dk : {DELTA_HEAD, DELTA_SCALAR, DELTA_ROWS})
                for (bool fill : {false, true}) {
                    MCase mc{dt, shapes[si].first, shapes[si].second, (int)((si + (int)dk) % 5), dk, fill,
                             (Alias)((si + (size_t)fill) % 3), MASK_MIXED, true, seed++};
                    run_masked(mc);
                    if (dk == DELTA_SCALAR) {
                        mc.mask_kind = MASK_ONES;
                        mc.seed = seed++;
                        run_masked(mc);
                        mc.mask_kind = MASK_INVALID;
                        mc.seed = seed++;
                        run_masked(mc);
                    }
                }
}

int main() {
    printf("era CUDA masked Gaussian-head kernels (gaussian.cu) in the emulator vs the CPU library %s\n", era_version());
    masked_cases();
    return report("test_gaussian_mask");
}
