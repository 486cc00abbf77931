// Shared by the Gaussian and softmax heads' emulator tests (test_gaussian.cpp,
// test_gaussian_mask.cpp, test_softmax.cpp; docs/math.md#gaussian-head, #softmax-head):
// tolerances, the layouts the tests use, aliasing modes, the Gaussian head's constant and host
// head. Include after cuda_emu.hpp and
// harness.hpp.
#pragma once

#include "harness.hpp"

namespace heads {

using namespace harness;

// ------------------------------------------------------------- tolerances
//
// Errors are row-normwise relative (harness::max_error): |gpu - cpu| over the
// largest |cpu| of the row (at least a floor: 1 for values in nats or
// log-std units, which then asks for absolute accuracy; 1e-300 for gradients).

/** f64 kernels against the f64 CPU path: the same formulas; only the order of
 * the row sums (pairwise over the block vs sequential; online rescaling) and
 * the device's exp/log/erfc differ by ulps. */
constexpr double kTolF64 = 1e-12;
/** f32 kernels: f32 arithmetic like the CPU's vectorised f32 kernels (f64 row
 * sums here, f32 lane sums there; the device's expf/logf against the CPU's
 * polynomial exp_f32/ln_f32, each within 2 ulp), and for non-contiguous f32
 * inputs the CPU's f64 path: docs/math.md#vectorised-f32-kernels bounds the
 * f32 kernels at 2e-5 from the f64 path. */
constexpr double kTolF32 = 2e-5;
/** f32 softmax-head and Gaussian-head gradients, against the CPU's f32 kernels
 * (row-major copies of the inputs): measured relative to the size of the
 * row's terms (grad_scales, gaussian_grad_scales), since dz = k s (a - dot)
 * cancels on rows dominated by one class, where both sides keep only the f32
 * digits of a s. */
constexpr double kTolF32Grad = 2e-5;
/** Entropies computed in f64 for every logits dtype and rounded to the output
 * dtype: an f32 output differs by at most one rounding. */
constexpr double kTolOutF32 = 1.2e-7;

inline const char *fam(int dt) { return dtype_name(dt); }

// ------------------------------------------------------------- layouts used

/** Layouts for a tensor of rank `nd` (last axis = columns): 0 row-major; 1
 * batch axes permuted in memory; 2 padded rows; 3 negative strides (a batch
 * axis and the last axis); 4 the last axis outermost in memory (col_stride > 1)
 * with a permuted, flipped batch. */
inline Layout layout_kind(int kind, int nd) {
    Layout l;
    if (kind == 0 || nd == 0) return l;
    for (int a = 0; a < nd; ++a) l.order.push_back(a);
    l.pad.assign(nd, 0);
    l.flip.assign(nd, false);
    switch (kind) {
        case 1:
            if (nd >= 3) std::swap(l.order[0], l.order[nd - 2]);
            else if (nd == 2) l.pad[nd - 1] = 3;
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
    }
    return l;
}

/** Which input an output aliases (none, z, the upstream gradient). */
enum Alias { ALIAS_NONE, ALIAS_Z, ALIAS_G };

/** Where a Gaussian call's delta comes from: the head's value, one scalar, one per row. */
enum DeltaKind { DELTA_HEAD, DELTA_SCALAR, DELTA_ROWS };

/** The Gaussian head's k for dimension D (docs/math.md#gaussian-head): H0 + delta - D/2 ln(2 pi e) - D hi. */
inline double gaussian_k(double D, double H0, double hi, double delta) {
    double s = H0 + delta - 0.5 * D * ERA_LN_2PI_E;
    return s - D * hi;
}

/** A host Gaussian head with these settings (the CPU reference of a kernel call). */
inline EraHead *gaussian_head(int64_t D, double H0, double lo, double hi, double delta) {
    EraConfig c;
    HCHECK_OK(era_config_default(ERA_HEAD_KIND_GAUSSIAN, &c));
    c.dim = (uint64_t)D;
    c.target_entropy = H0;
    c.log_std_min = lo;
    c.log_std_max = hi;
    c.delta = delta;
    EraHead *h = nullptr;
    HCHECK_OK(era_head_new(&c, &h));
    return h;
}

}  // namespace heads
