//! Softmax-head arithmetic (docs/math.md#softmax-head): the constants of
//! the affine map, the f64 rows and the vectorised f32 rows.

use multiversion::multiversion;

use crate::config::SoftmaxConfig;
use crate::kernels::vmath::{block_max, exp_f32, ln_f32, min_nan, softmax_into, vmap, vzip, vzip3, BLOCK, LANES, V};

/// The constants of the affine map `h = slope*s + b` (derived once per head).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftmaxConstants {
    /// `slope = (ub - C/n) / (1 - 1/n)`, >= 0.
    pub slope: f64,
    /// `b = (C - slope) / n`, >= 0.
    pub b: f64,
}

impl SoftmaxConstants {
    /// Derives `slope` and `b` from a validated config. `C` is clamped into
    /// `[ub, n*ub]` so that targets exactly at the ends of the valid range
    /// stay in range after rounding.
    pub fn new(cfg: &SoftmaxConfig) -> Self {
        let n = cfg.num_classes as f64;
        let ub = cfg.tau.ln() / cfg.tau;
        let c = (cfg.target_entropy - 1.0).exp().clamp(ub, n * ub);
        let slope = ((ub - c / n) / (1.0 - 1.0 / n)).max(0.0);
        let b = ((c - slope) / n).max(0.0);
        SoftmaxConstants { slope, b }
    }
}

/// `h = slope*s + b`, kept >= the smallest normal f64: at the lower end of
/// the target range `b = 0`, and a probability that underflows to 0 would
/// give `ln(0)` and an infinite logit (the class still gets the smallest one).
#[inline]
fn h_of(k: SoftmaxConstants, s: f64) -> f64 {
    let h = k.slope * s + k.b;
    if h < f64::MIN_POSITIVE {
        f64::MIN_POSITIVE
    } else {
        h
    }
}

/// `u = -1 - ln(h)`, clamped at 0 (rounding can push `h` a hair past 1/e).
#[inline]
fn u_of(h: f64) -> f64 {
    let u = -1.0 - h.ln();
    if u < 0.0 {
        0.0
    } else {
        u
    }
}

/// Forward of one row (`out` first holds `softmax(z)`).
#[inline]
pub fn forward_row(z: &[f64], k: SoftmaxConstants, out: &mut [f64]) {
    softmax_into(z, out);
    let mut wmin = f64::INFINITY;
    for o in out.iter_mut() {
        let h = h_of(k, *o);
        let u = u_of(h);
        let w = -1.0 - (2.0 * u).sqrt() - 0.75 * u;
        *o = w;
        if w < wmin || w.is_nan() {
            wmin = w;
        }
    }
    for o in out.iter_mut() {
        *o -= wmin;
    }
}

/// `a_i = g_i * dw/dh(h_i)`, 0 where `g_i` or `s_i` is 0.
#[inline]
fn a_of(k: SoftmaxConstants, gi: f64, si: f64) -> f64 {
    let h = h_of(k, si);
    let u = u_of(h);
    // at tau = e and h = 1/e (u = 0) the derivative is infinite (the branch point of
    // Lambert W); keep it finite so that a one-hot row gets its exact zero gradient
    let u = if u < f64::MIN_POSITIVE { f64::MIN_POSITIVE } else { u };
    // where s_i == 0 the term is multiplied by s_i: skip it (its factor may overflow)
    if gi == 0.0 || si == 0.0 {
        0.0
    } else {
        gi * (1.0 / (2.0 * u).sqrt() + 0.75) / h
    }
}

/// Backward of one row (the min-shift is a stop-gradient constant;
/// `dz` first holds `softmax(z)`).
#[inline]
pub fn backward_row(z: &[f64], g: &[f64], k: SoftmaxConstants, dz: &mut [f64]) {
    if k.slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    softmax_into(z, dz);
    let dot: f64 = dz.iter().zip(g).map(|(&si, &gi)| a_of(k, gi, si) * si).sum();
    for (d, &gi) in dz.iter_mut().zip(g) {
        let si = *d;
        *d = k.slope * si * (a_of(k, gi, si) - dot);
    }
}

/// `w_i = -1 - sqrt(2u) - 0.75u` of the softmax head (docs/math.md#softmax-head) for one
/// probability `s`: `h = slope*s + b`, `u = -1 - ln(h)`, both clamped as in the
/// f64 kernel. NaN propagates.
#[inline(always)]
fn softmax_head_w(slope: f32, b: f32, s: f32) -> f32 {
    let h = slope.mul_add(s, b);
    let h = if h < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { h };
    let u = -1.0 - ln_f32(h);
    let u = if u < 0.0 { 0.0 } else { u };
    -1.0 - (2.0 * u).sqrt() - 0.75 * u
}

/// `a_i = g_i * (1/sqrt(2u) + 0.75) / h` of the softmax head's backward (0 where
/// `g_i` or `s_i` is 0, as in the f64 kernel).
#[inline(always)]
fn softmax_head_a(slope: f32, b: f32, g: f32, s: f32) -> f32 {
    let h = slope.mul_add(s, b);
    let h = if h < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { h };
    let u = -1.0 - ln_f32(h);
    let u = if u < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { u };
    let a = g * (1.0 / (2.0 * u).sqrt() + 0.75) / h;
    if g == 0.0 || s == 0.0 {
        0.0
    } else {
        a
    }
}

/// `out = exp(z - max(z))` and their sum (f32 lanes, f64 across blocks). A
/// NaN or +inf entry, or a row of -inf, makes the sum NaN.
#[inline(always)]
fn exp_row(z: &[f32], out: &mut [f32]) -> f64 {
    let m = block_max(z, 1.0);
    let mut total = 0.0f64;
    for (zb, ob) in z.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        let mut acc = [0.0f32; LANES];
        let mut zs = zb.chunks_exact(LANES);
        let mut os = ob.chunks_exact_mut(LANES);
        for (zc, oc) in (&mut zs).zip(&mut os) {
            let zv: &V = zc.try_into().unwrap_or(&[0.0; LANES]);
            let e = vmap(*zv, |v| exp_f32(v - m));
            oc.copy_from_slice(&e);
            acc = vzip(acc, e, |a, b| a + b);
        }
        // a long tail as one more vector, padded with -inf (exp gives 0 there)
        let (rem, orem) = (zs.remainder(), os.into_remainder());
        if rem.len() >= VECTOR_TAIL {
            let mut zv = [f32::NEG_INFINITY; LANES];
            zv[..rem.len()].copy_from_slice(rem);
            let e = vmap(zv, |v| exp_f32(v - m));
            orem.copy_from_slice(&e[..rem.len()]);
            acc = vzip(acc, e, |a, b| a + b);
        }
        total += acc.iter().map(|&v| v as f64).sum::<f64>();
        if rem.len() < VECTOR_TAIL {
            for (&v, o) in rem.iter().zip(orem) {
                *o = exp_f32(v - m);
                total += *o as f64;
            }
        }
    }
    total
}

/// Row tails at least this long run as one padded vector, shorter ones
/// element by element (measured: the padded vector's copies cost about as
/// much as 6-8 scalar elements).
const VECTOR_TAIL: usize = 8;

/// Softmax-head forward of one f32 row (docs/math.md#softmax-head): `s = softmax(z)`,
/// `w_i` from `h_i = slope*s_i + b`, then `out = w - min(w)`. Three passes
/// over the row (the exponentials, the map, the shift), vectorised along it.
/// The caller keeps `u = -1 - ln(h)` away from 0 (see
/// `SoftmaxHead::f32_kernels`), where f32 would lose the square root's digits.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_row_f32(z: &[f32], slope: f32, b: f32, out: &mut [f32]) {
    let inv = (1.0 / exp_row(z, out)) as f32;
    let mut wmin = [f32::INFINITY; LANES];
    let mut os = out.chunks_exact_mut(LANES);
    for oc in &mut os {
        let ov: &V = (&*oc).try_into().unwrap_or(&[0.0; LANES]);
        let w = vmap(*ov, |e| softmax_head_w(slope, b, e * inv));
        oc.copy_from_slice(&w);
        wmin = vzip(wmin, w, min_nan);
    }
    let rem = os.into_remainder();
    if rem.len() >= VECTOR_TAIL {
        let mut ev = [0.0f32; LANES];
        ev[..rem.len()].copy_from_slice(rem);
        let mut w = vmap(ev, |e| softmax_head_w(slope, b, e * inv));
        w[rem.len()..].fill(f32::INFINITY); // padding takes no part in the minimum
        rem.copy_from_slice(&w[..rem.len()]);
        wmin = vzip(wmin, w, min_nan);
    }
    let mut m = wmin.iter().copied().fold(f32::INFINITY, min_nan);
    if rem.len() < VECTOR_TAIL {
        for o in rem.iter_mut() {
            *o = softmax_head_w(slope, b, *o * inv);
            m = min_nan(m, *o);
        }
    }
    for o in out.iter_mut() {
        *o -= m;
    }
}

/// Softmax-head backward of one f32 row: `dz_j = slope * s_j * (a_j - sum_i a_i s_i)`
/// (docs/math.md#softmax-head; the min-shift is stop-gradient). `scratch` holds the `a_i`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_row_grad_f32(z: &[f32], g: &[f32], slope: f32, b: f32, dz: &mut [f32], scratch: &mut Vec<f32>) {
    if slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    let inv = (1.0 / exp_row(z, dz)) as f32;
    scratch.clear();
    scratch.resize(dz.len(), 0.0);
    let mut dot = 0.0f64;
    for ((db, gb), ab) in dz.chunks_mut(BLOCK).zip(g.chunks(BLOCK)).zip(scratch.chunks_mut(BLOCK)) {
        let mut acc = [0.0f32; LANES];
        let mut ds = db.chunks_exact_mut(LANES);
        let mut gs = gb.chunks_exact(LANES);
        let mut as_ = ab.chunks_exact_mut(LANES);
        for ((dc, gc), ac) in (&mut ds).zip(&mut gs).zip(&mut as_) {
            let ev: &V = (&*dc).try_into().unwrap_or(&[0.0; LANES]);
            let gv: &V = gc.try_into().unwrap_or(&[0.0; LANES]);
            let sv = vmap(*ev, |e| e * inv);
            let av = vzip(*gv, sv, |gi, si| softmax_head_a(slope, b, gi, si));
            dc.copy_from_slice(&sv);
            ac.copy_from_slice(&av);
            acc = vzip3(av, sv, acc, |a, s, c| a.mul_add(s, c));
        }
        // a long tail as one more vector, padded with g = 0 (a = 0 there)
        let (dr, gr, ar) = (ds.into_remainder(), gs.remainder(), as_.into_remainder());
        if dr.len() < VECTOR_TAIL {
            for ((d, &gi), a) in dr.iter_mut().zip(gr).zip(ar.iter_mut()) {
                let si = *d * inv;
                *a = softmax_head_a(slope, b, gi, si);
                *d = si;
                dot += (*a * si) as f64;
            }
        } else {
            let r = dr.len();
            let (mut ev, mut gv) = ([0.0f32; LANES], [0.0f32; LANES]);
            ev[..r].copy_from_slice(dr);
            gv[..r].copy_from_slice(gr);
            let sv = vmap(ev, |e| e * inv);
            let av = vzip(gv, sv, |gi, si| softmax_head_a(slope, b, gi, si));
            dr.copy_from_slice(&sv[..r]);
            ar.copy_from_slice(&av[..r]);
            acc = vzip3(av, sv, acc, |a, s, c| a.mul_add(s, c));
        }
        dot += acc.iter().map(|&v| v as f64).sum::<f64>();
    }
    let dot = dot as f32;
    for (d, &a) in dz.iter_mut().zip(scratch.iter()) {
        *d = slope * *d * (a - dot);
    }
}
