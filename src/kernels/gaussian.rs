//! Gaussian-head arithmetic (docs/math.md#gaussian-head): the f64 rows, the
//! vectorised f32 rows (one row per lane), the entropies and the
//! truncated-normal entropy; [`mask`]: the rows under a per-row
//! active-dimension mask.

use multiversion::multiversion;

pub mod mask;
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod narrow;

use crate::config::{GaussianConfig, L2PE};
use crate::kernels::vmath::{exp_f32, exp_lanes, load_lanes, softmax_into, store_lanes, vmap, vzip, vzip3, BlockOrder, Rows, LANES};

/// `k = S - D*log_std_max` with `S = H0 + delta - 0.5*D*L2PE` (<= 0 when feasible).
#[inline]
pub fn gaussian_k(cfg: &GaussianConfig, delta: f64) -> f64 {
    let d = cfg.dim as f64;
    let s = cfg.target_entropy + delta - 0.5 * d * L2PE;
    s - d * cfg.log_std_max
}

/// Forward of one row: `out = clip(log_std_max + k*softmax(z), log_std_min, log_std_max)`.
#[inline]
pub fn forward_row(z: &[f64], k: f64, lo: f64, hi: f64, out: &mut [f64]) {
    softmax_into(z, out);
    for o in out.iter_mut() {
        let y = hi + k * *o;
        // NaN-preserving clip
        *o = if y < lo {
            lo
        } else if y > hi {
            hi
        } else {
            y
        };
    }
}

/// Backward of one row. Writes `dz` and returns `ddelta = sum_i g_i m_i s_i`,
/// where `m_i = 1` iff `lo < y_i < hi` strictly. (`dz` first holds `softmax(z)`.)
#[inline]
pub fn backward_row(z: &[f64], g: &[f64], k: f64, lo: f64, hi: f64, dz: &mut [f64]) -> f64 {
    softmax_into(z, dz);
    backward_row_saved(g, k, lo, hi, dz)
}

/// [`backward_row`] from `s = softmax(z)`, which `dz` holds on entry.
#[inline]
pub fn backward_row_saved(g: &[f64], k: f64, lo: f64, hi: f64, dz: &mut [f64]) -> f64 {
    let gm = |gi: f64, si: f64| {
        let y = hi + k * si;
        if lo < y && y < hi {
            gi
        } else {
            0.0
        }
    };
    let dot: f64 = dz.iter().zip(g).map(|(&si, &gi)| gm(gi, si) * si).sum();
    for (d, &gi) in dz.iter_mut().zip(g) {
        let si = *d;
        *d = k * si * (gm(gi, si) - dot);
    }
    dot
}

/// Entropy (docs/math.md#gaussian-entropy) of `N(mu, diag(exp(log_std))^2)`: `sum(log_std) + 0.5*D*L2PE`.
#[inline]
pub fn gaussian_entropy_row(log_std: &[f64]) -> f64 {
    log_std.iter().sum::<f64>() + 0.5 * log_std.len() as f64 * L2PE
}

/// [`gaussian_entropy_row`] of a row of any element type, read where it lies
/// (the same sum in the same order).
pub fn gaussian_entropy_view<T: crate::kernels::Element>(log_std: &ndarray::ArrayView1<'_, T>) -> f64 {
    log_std.iter().map(|v| v.to_f64()).sum::<f64>() + 0.5 * log_std.len() as f64 * L2PE
}

/// `k` of row `r` from a call's `k` values: one per row, or a single value
/// that serves every row (a scalar `delta`).
#[inline(always)]
pub fn row_k(ks: &[f64], r: usize) -> f64 {
    if ks.len() == 1 {
        ks[0]
    } else {
        ks[r]
    }
}

/// Gaussian-head forward over f32 rows of length `d` (read where they lie,
/// [`Rows`]) into contiguous rows `out`:
/// `out = clip(hi + k_r * softmax(z_r), lo, hi)`, with `softmax(z_r)` and the
/// value before the clip rounded exactly as [`gaussian_rows_grad_f32`] rounds
/// them (so the clip and the backward's mask agree to the last bit), with `k_r = ks[r]`, or
/// `ks[0]` for every row when `ks` holds one value (a scalar `delta`).
/// Rows are processed [`LANES`] at a time with one row per lane, so that
/// short rows (a few action dimensions) still fill the vector registers.
/// `saved` (contiguous rows, as `out`) receives `softmax(z_r)` exactly as
/// [`gaussian_rows_grad_f32`] computes it, for [`gaussian_rows_grad_saved_f32`].
///
/// Rows of up to 64 values go eight at a time through AVX2 registers where the
/// CPU has AVX2 and FMA (`narrow.rs`, the same bits); the rows after the last
/// whole group of eight, wider rows and other CPUs as above.
pub fn gaussian_rows_f32(z: Rows<'_>, ks: &[f64], lo: f32, hi: f32, out: &mut [f32], mut saved: Option<&mut [f32]>) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    let done = narrow::forward(&z, ks, lo, hi, out, saved.as_deref_mut());
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let done = 0;
    let (rows, d) = (z.rows(), z.n());
    if done == 0 {
        gaussian_lanes_f32(z, ks, lo, hi, out, saved);
    } else if done < rows {
        gaussian_lanes_f32(z.range(done..rows), ks_from(ks, done), lo, hi, &mut out[done * d..], saved.map(|s| &mut s[done * d..]));
    }
}

/// `ks` for the rows from `r` on: one value serves every row.
#[inline(always)]
fn ks_from(ks: &[f64], r: usize) -> &[f64] {
    if ks.len() == 1 {
        ks
    } else {
        &ks[r..]
    }
}

/// [`gaussian_rows_f32`] with [`LANES`] rows at a time.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn gaussian_lanes_f32<'a>(z: Rows<'a>, ks: &[f64], lo: f32, hi: f32, out: &mut [f32], mut saved: Option<&mut [f32]>) {
    let (rows, d) = (z.rows(), z.n());
    let full = rows / LANES * LANES;
    let clip = |y: f32| {
        if y < lo {
            lo
        } else if y > hi {
            hi
        } else {
            y
        }
    };
    // the group transposed: t[j] holds element j of LANES consecutive rows
    let mut t = vec![[0.0f32; LANES]; if full > 0 { d } else { 0 }];
    let order = BlockOrder::new(if full > 0 { d } else { 0 });
    for g in (0..full).step_by(LANES) {
        load_lanes(&z, g, &mut t);
        // s = softmax(z) as the backward computes it (e * (1/sum)), then
        // y = k*s + hi as the backward computes it for its clip mask
        let inv = vmap(exp_lanes(&mut t), |v| 1.0 / v);
        for tj in t.iter_mut() {
            *tj = vzip(*tj, inv, |e, iv| e * iv);
        }
        if let Some(sv) = saved.as_deref_mut() {
            store_lanes(&t, d, g, sv, &order);
        }
        let k: [f32; LANES] = std::array::from_fn(|i| row_k(ks, g + i) as f32);
        for tj in t.iter_mut() {
            // the clip written out here: through the closure the loop stays scalar
            *tj = vzip(k, *tj, |kk, sv| {
                let y = kk.mul_add(sv, hi);
                if y < lo {
                    lo
                } else if y > hi {
                    hi
                } else {
                    y
                }
            });
        }
        store_lanes(&t, d, g, out, &order);
    }
    for (j, or) in out[full * d..].chunks_exact_mut(d.max(1)).enumerate().take(rows - full) {
        let zr = z.row(full + j);
        let k = row_k(ks, full + j) as f32;
        let m = zr.iter().copied().fold(f32::NEG_INFINITY, |a, b| if b > a || b.is_nan() { b } else { a });
        let mut s = 0.0f32;
        for (o, &v) in or.iter_mut().zip(zr) {
            let e = exp_f32(v - m);
            *o = e;
            s += e;
        }
        let inv = 1.0 / s;
        for o in or.iter_mut() {
            *o *= inv;
        }
        if let Some(sv) = saved.as_deref_mut() {
            sv[(full + j) * d..(full + j + 1) * d].copy_from_slice(or);
        }
        for o in or.iter_mut() {
            *o = clip(k.mul_add(*o, hi));
        }
    }
}

/// Gaussian-head backward over f32 rows `z` and `g` (of the same shape, read
/// where they lie): writes contiguous rows `dz` and the per-row `d/d delta`
/// into `dd` (one per row); `ks` as in [`gaussian_rows_f32`].
pub fn gaussian_rows_grad_f32(z: Rows<'_>, g: Rows<'_>, ks: &[f64], lo: f32, hi: f32, dz: &mut [f32], dd: &mut [f64]) {
    grad_dispatch(z, g, ks, lo, hi, dz, dd, true)
}

/// [`gaussian_rows_grad_f32`] with [`LANES`] rows at a time.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn grad_lanes_f32<'a, 'b>(z: Rows<'a>, g: Rows<'b>, ks: &[f64], lo: f32, hi: f32, dz: &mut [f32], dd: &mut [f64]) {
    grad_rows(z, g, ks, lo, hi, dz, dd, true)
}

/// [`gaussian_rows_grad_f32`] from the saved `s = softmax(z)` (rows written by
/// [`gaussian_rows_f32`]'s `saved`) instead of `z`: no exponential, the same
/// results bit for bit.
pub fn gaussian_rows_grad_saved_f32(s: Rows<'_>, g: Rows<'_>, ks: &[f64], lo: f32, hi: f32, dz: &mut [f32], dd: &mut [f64]) {
    grad_dispatch(s, g, ks, lo, hi, dz, dd, false)
}

/// [`gaussian_rows_grad_saved_f32`] with [`LANES`] rows at a time.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn grad_saved_lanes_f32<'a, 'b>(s: Rows<'a>, g: Rows<'b>, ks: &[f64], lo: f32, hi: f32, dz: &mut [f32], dd: &mut [f64]) {
    grad_rows(s, g, ks, lo, hi, dz, dd, false)
}

/// The backward's rows of up to 64 values eight at a time through AVX2
/// registers (`narrow.rs`, the same bits) where the CPU allows, the rest
/// [`LANES`] at a time.
#[allow(clippy::too_many_arguments)]
fn grad_dispatch(x: Rows<'_>, g: Rows<'_>, ks: &[f64], lo: f32, hi: f32, dz: &mut [f32], dd: &mut [f64], from_z: bool) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    let done = narrow::grad(&x, &g, ks, lo, hi, dz, dd, from_z);
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let done = 0;
    let (rows, d) = (x.rows(), x.n());
    let lanes = if from_z { grad_lanes_f32 } else { grad_saved_lanes_f32 };
    if done == 0 {
        lanes(x, g, ks, lo, hi, dz, dd);
    } else if done < rows {
        lanes(x.range(done..rows), g.range(done..rows), ks_from(ks, done), lo, hi, &mut dz[done * d..], &mut dd[done..]);
    }
}

/// The backward of [`gaussian_rows_grad_f32`] (`from_z`: rows of `z`) and
/// [`gaussian_rows_grad_saved_f32`] (rows of `softmax(z)`, scaled by 1, which
/// is exact): one body, so that both give the same bits.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_rows(x: Rows<'_>, g: Rows<'_>, ks: &[f64], lo: f32, hi: f32, dz: &mut [f32], dd: &mut [f64], from_z: bool) {
    let (rows, d) = (x.rows(), x.n());
    assert!(g.rows() == rows && g.n() == d, "z and g must hold rows of the same shape");
    let full = rows / LANES * LANES;
    // groups of LANES rows, transposed so that lane i holds row i
    let mut tz = vec![[0.0f32; LANES]; if full > 0 { d } else { 0 }];
    let mut tg = tz.clone();
    let order = BlockOrder::new(if full > 0 { d } else { 0 });
    for r0 in (0..full).step_by(LANES) {
        load_lanes(&x, r0, &mut tz);
        load_lanes(&g, r0, &mut tg);
        let inv: [f32; LANES] = if from_z { vmap(exp_lanes(&mut tz), |v| 1.0 / v) } else { [1.0; LANES] };
        let k: [f32; LANES] = std::array::from_fn(|i| row_k(ks, r0 + i) as f32);
        let mut dot = [0.0f32; LANES];
        for (tj, gj) in tz.iter_mut().zip(tg.iter_mut()) {
            let si = vzip(*tj, inv, |e, v| e * v);
            let y = vzip(k, si, |kk, sv| kk.mul_add(sv, hi));
            let gm = vzip(*gj, y, |gv, yv| if lo < yv && yv < hi { gv } else { 0.0 });
            *tj = si;
            *gj = gm;
            dot = vzip3(gm, si, dot, |a, b, c| a.mul_add(b, c));
        }
        for (tj, gj) in tz.iter_mut().zip(tg.iter()) {
            let kd = vzip(*gj, dot, |gv, dv| gv - dv);
            *tj = vzip3(k, *tj, kd, |kk, sv, x| kk * sv * x);
        }
        store_lanes(&tz, d, r0, dz, &order);
        for i in 0..LANES {
            dd[r0 + i] = dot[i] as f64;
        }
    }
    let rest = dz[full * d..].chunks_exact_mut(d.max(1)).zip(dd[full..].iter_mut()).enumerate().take(rows - full);
    for (j, (dr, ddr)) in rest {
        let (xr, gr) = (x.row(full + j), g.row(full + j));
        let k = row_k(ks, full + j);
        let inv = if from_z {
            let m = xr.iter().copied().fold(f32::NEG_INFINITY, |a, b| if b > a || b.is_nan() { b } else { a });
            let mut s = 0.0f32;
            for (o, &v) in dr.iter_mut().zip(xr) {
                let e = exp_f32(v - m);
                *o = e;
                s += e;
            }
            1.0 / s
        } else {
            dr.copy_from_slice(xr);
            1.0
        };
        let k32 = k as f32;
        let mut dot = 0.0f32;
        for (o, &gi) in dr.iter_mut().zip(gr) {
            let si = *o * inv;
            *o = si;
            let y = k32.mul_add(si, hi);
            let gm = if lo < y && y < hi { gi } else { 0.0 };
            dot = gm.mul_add(si, dot);
        }
        for (o, &gi) in dr.iter_mut().zip(gr) {
            let si = *o;
            let y = k32.mul_add(si, hi);
            let gm = if lo < y && y < hi { gi } else { 0.0 };
            *o = k32 * si * (gm - dot);
        }
        *ddr = dot as f64;
    }
}

/// `ln(erfc(x))` for `x >= 0`, without underflow: `erfc` directly up to 26,
/// then the asymptotic series `-x^2 - ln(x*sqrt(pi)) + ln(1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6))`
/// (relative error below 1e-9 there).
fn ln_erfc(x: f64) -> f64 {
    if x < 26.0 {
        libm::erfc(x).ln()
    } else {
        let x2 = x * x;
        let series = 1.0 - 0.5 / x2 + 0.75 / (x2 * x2) - 1.875 / (x2 * x2 * x2);
        -x2 - (x * std::f64::consts::PI.sqrt()).ln() + series.ln()
    }
}

/// `ln(Phi(beta) - Phi(alpha))` for `alpha < beta`, from the tail that
/// avoids cancellation and in log space, so that a mass far in a tail
/// (e.g. a location 100 standard deviations outside the interval) stays finite.
fn ln_normal_mass(alpha: f64, beta: f64) -> f64 {
    let r = std::f64::consts::FRAC_1_SQRT_2;
    // both in one tail: 0.5*erfc(u) - 0.5*erfc(v) with 0 <= u < v
    let tail = |u: f64, v: f64| {
        let (lu, lv) = (ln_erfc(u * r), ln_erfc(v * r));
        0.5f64.ln() + lu + (-(lv - lu).exp()).ln_1p()
    };
    if alpha > 0.0 {
        tail(alpha, beta)
    } else if beta < 0.0 {
        tail(-beta, -alpha)
    } else {
        (1.0 - 0.5 * libm::erfc(-alpha * r) - 0.5 * libm::erfc(beta * r)).ln()
    }
}

/// Entropy of a one-dimensional truncated normal `TN(m, exp(log_std), [low, high])`
/// (docs/math.md#truncated-normal-entropy), computed in log space. Infinite bounds are allowed.
pub fn truncated_normal_entropy_1d(m: f64, log_std: f64, low: f64, high: f64) -> f64 {
    let sigma = log_std.exp();
    let alpha = (low - m) / sigma;
    let beta = (high - m) / sigma;
    let ln_z = ln_normal_mass(alpha, beta);
    // x*phi(x)/Z = x*exp(-x^2/2 - ln(2*pi)/2 - ln Z)
    let ln_2pi_half = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let t = |x: f64| if x.is_finite() { x * (-0.5 * x * x - ln_2pi_half - ln_z).exp() } else { 0.0 };
    0.5 * L2PE + log_std + ln_z + 0.5 * (t(alpha) - t(beta))
}
