//! Softmax-head arithmetic (docs/math.md#softmax-head): the constants of
//! the affine map, the f64 rows and the vectorised f32 rows.

use multiversion::multiversion;

mod dw;

pub use dw::{softmax_head_row_dw_f32, softmax_head_row_grad_dw_f32, softmax_head_rows_dw_f32, softmax_head_rows_grad_dw_f32};

use crate::config::SoftmaxConfig;
use crate::kernels::vmath::{
    block_max, exp_f32, exp_lanes, ln_f32, load_lanes, min_nan, store_lanes, vmap, vzip, vzip3, BlockOrder, Rows, BLOCK, LANES, V,
};

/// The constants of the affine map `h = slope*s + b` (derived once per head).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftmaxConstants {
    /// `slope = (ub - C/n) / (1 - 1/n)`, >= 0; exactly 0 for a degenerate head.
    pub slope: f64,
    /// `b = (C - slope) / n`, >= 0.
    pub b: f64,
    /// `ub = ln(tau)/tau = slope + b`, the largest `h`.
    pub ub: f64,
    /// `u` at `h = ub`: `-1 - ln(ub)`, >= 0 (0 at `tau = e`).
    pub u_ub: f64,
}

/// A slope below this many ulps of `ub` is a rounding residue of the upper end
/// of the target range (`C = n*ub`), where the head is degenerate
/// (docs/math.md#softmax-numerics-near-the-upper-bound).
const DEGENERATE_SLOPE_ULPS: f64 = 16.0;

impl SoftmaxConstants {
    /// Derives `slope` and `b` from a validated config (docs/math.md#softmax-forward). `C` is clamped into
    /// `[ub, n*ub]` so that targets exactly at the ends of the valid range
    /// stay in range after rounding; a slope within a few ulps of 0 is 0 (the
    /// degenerate head: uniform output, zero gradient).
    pub fn new(cfg: &SoftmaxConfig) -> Self {
        let n = cfg.num_classes as f64;
        let ub = cfg.tau.ln() / cfg.tau;
        let c = (cfg.target_entropy - 1.0).exp().clamp(ub, n * ub);
        // b = (C - slope)/n and slope = ub - b give b = (C - ub)/(n - 1): exactly 0 at the
        // lower end C = ub (the textbook order leaves a rounding residue of about 1e-17
        // there, which swamps h = slope*s + b of a class with probability 1e-17)
        let b = ((c - ub) / (n - 1.0)).clamp(0.0, ub);
        let mut slope = ub - b;
        if slope <= DEGENERATE_SLOPE_ULPS * f64::EPSILON * ub {
            slope = 0.0;
        }
        let b = if slope == 0.0 { ub } else { b };
        SoftmaxConstants { slope, b, ub, u_ub: (-1.0 - ub.ln()).max(0.0) }
    }
}

/// `h` and `u = -1 - ln(h)` of a probability `s`, given `one_minus_s = 1 - s`
/// computed without cancellation (docs/math.md#softmax-numerics-near-the-upper-bound).
/// Near the upper bound (`h >= ub/2`) both come from `h - ub = -slope*(1 - s)`:
/// `u = u_ub - log1p(-slope*(1 - s)/ub)`, exact to rounding even where `u` is
/// tiny (`tau = e`, `s -> 1`). Below it, `h = slope*s + b` and `-1 - ln(h)`
/// lose nothing. `h` is kept >= the smallest normal f64 (at the lower end of
/// the target range `b = 0`, and a probability that underflows to 0 would give
/// an infinite logit; the class still gets the smallest one).
#[inline]
fn h_u(k: SoftmaxConstants, s: f64, one_minus_s: f64) -> (f64, f64) {
    // NaN-preserving clamps (f64::max would drop a NaN)
    let at_least = |v: f64, lo: f64| if v < lo { lo } else { v };
    let drop = k.slope * one_minus_s; // ub - h
    if drop <= 0.5 * k.ub {
        let h = k.ub - drop;
        let u = k.u_ub - (-drop / k.ub).ln_1p();
        (h, at_least(u, 0.0))
    } else {
        let h = at_least(k.slope * s + k.b, f64::MIN_POSITIVE);
        (h, at_least(-1.0 - h.ln(), 0.0))
    }
}

/// The index of the (first) largest value of `x`, or of its first NaN if it
/// has one (0 for an empty row).
#[inline]
fn first_largest(x: &[f64]) -> usize {
    let mut j = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[j] || v.is_nan() {
            j = i;
            if v.is_nan() {
                break;
            }
        }
    }
    j
}

/// `softmax(z)` into `out`; returns the index of the (first) largest entry
/// and `1 - s` there, computed as the sum of the other probabilities.
#[inline]
fn softmax_and_complement(z: &[f64], out: &mut [f64]) -> (usize, f64) {
    let j = first_largest(z);
    let m = z.get(j).copied().unwrap_or(0.0);
    let (mut total, mut rest) = (0.0, 0.0);
    for (i, (o, &v)) in out.iter_mut().zip(z).enumerate() {
        *o = (v - m).exp();
        total += *o;
        if i != j {
            rest += *o;
        }
    }
    let inv = 1.0 / total;
    for o in out.iter_mut() {
        *o *= inv;
    }
    (j, rest * inv)
}

/// `1 - s_i`: the complement computed by [`softmax_and_complement`] at the
/// largest entry `j`, else directly (there `s_i <= 1/2`).
#[inline]
fn complement(i: usize, s: f64, j: usize, cj: f64) -> f64 {
    if i == j {
        cj
    } else {
        1.0 - s
    }
}

/// Forward of one row (docs/math.md#softmax-forward); `out` first holds `softmax(z)`.
#[inline]
pub fn forward_row(z: &[f64], k: SoftmaxConstants, out: &mut [f64]) {
    let (j, cj) = softmax_and_complement(z, out);
    let mut wmin = f64::INFINITY;
    for (i, o) in out.iter_mut().enumerate() {
        let (_, u) = h_u(k, *o, complement(i, *o, j, cj));
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

/// Backward of one row (docs/math.md#softmax-backward; the min-shift is a
/// stop-gradient constant): `dz_i = slope * s_i * (a_i - sum_k a_k s_k)` with
/// `a_i = g_i * (1/sqrt(2u_i) + 0.75) / h_i`.
///
/// Near `tau = e` the factor `1/sqrt(2u)` of the largest entry `j` grows like
/// `1/sqrt(1 - s_j)` while everything it multiplies vanishes faster; the row
/// is evaluated so that no huge intermediate reaches the result:
/// `dz_j = slope * s_j * (a_j (1 - s_j) - sum_{k != j} a_k s_k)` with
/// `a_j (1 - s_j)` formed from `(1 - s_j)/sqrt(2u_j)`, and a row that is one-hot
/// in floating point (`1 - s_j == 0`) gets gradient 0, its exact limit.
#[inline]
pub fn backward_row(z: &[f64], g: &[f64], k: SoftmaxConstants, dz: &mut [f64]) {
    if k.slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    let (j, cj) = softmax_and_complement(z, dz);
    backward_core(g, k, dz, j, cj);
}

/// The index `j` of the (first) largest probability of a row `s` (the first
/// NaN, if any) and `1 - s_j` summed over the other probabilities.
#[inline]
fn largest_and_complement(s: &[f64]) -> (usize, f64) {
    let j = first_largest(s);
    (j, s.iter().enumerate().filter(|&(i, _)| i != j).map(|(_, &v)| v).sum())
}

/// [`backward_row`] from `s = softmax(z)`, which `dz` holds on entry: the
/// largest entry `j` and `1 - s_j` (as the sum of the other probabilities)
/// are read from `s`, so the result equals [`backward_row`]'s to rounding.
#[inline]
pub fn backward_row_saved(g: &[f64], k: SoftmaxConstants, dz: &mut [f64]) {
    if k.slope == 0.0 {
        dz.fill(0.0);
        return;
    }
    let (j, cj) = largest_and_complement(dz);
    backward_core(g, k, dz, j, cj);
}

/// `dw/dh = (1/sqrt(2u) + 0.75) / h` of one row's probabilities `s` into `q`
/// (docs/math.md#softmax-backward), with `u` formed as the backward forms it
/// (the largest entry's from `1 - s_j` summed over the others) and floored at
/// the smallest normal double; 0 where `s_i` is 0. The second residual of
/// [`crate::SoftmaxHead::forward_saving_dw`] on the rows that do not
/// take the vectorised f32 kernels; it grows like `1/sqrt(1 - s_j)` as
/// `s_j -> 1` at `tau = e`, which is why the backward of those rows works from
/// `s` instead.
pub fn dwdh_row(s: &[f64], k: SoftmaxConstants, q: &mut [f64]) {
    let (j, cj) = largest_and_complement(s);
    for (i, (qi, &si)) in q.iter_mut().zip(s).enumerate() {
        let (h, u) = h_u(k, si, complement(i, si, j, cj));
        *qi = if si == 0.0 { 0.0 } else { (1.0 / (2.0 * u).max(f64::MIN_POSITIVE).sqrt() + 0.75) / h };
    }
}

/// The backward of one row from `s` (in `dz`), its largest entry `j` and `cj = 1 - s_j`.
#[inline]
fn backward_core(g: &[f64], k: SoftmaxConstants, dz: &mut [f64], j: usize, cj: f64) {
    if cj == 0.0 && dz.iter().all(|v| !v.is_nan()) && g.iter().all(|v| v.is_finite()) {
        dz.fill(0.0);
        return;
    }
    // a_i s_i over i != j, and the largest entry's terms
    let mut rest_dot = 0.0;
    let (mut aj, mut aj_cj) = (0.0, 0.0);
    for (i, (&si, &gi)) in dz.iter().zip(g).enumerate() {
        let (h, u) = h_u(k, si, complement(i, si, j, cj));
        if i == j {
            if gi != 0.0 {
                // u >= slope*(1 - s_j)/ub > 0 here; keep it away from an underflow to 0
                let r = (2.0 * u).max(f64::MIN_POSITIVE).sqrt();
                aj = gi * (1.0 / r + 0.75) / h;
                aj_cj = gi * (cj / r + 0.75 * cj) / h;
            }
        } else if gi != 0.0 && si != 0.0 {
            rest_dot += gi * (1.0 / (2.0 * u).sqrt() + 0.75) / h * si;
        }
    }
    let sj = dz.get(j).copied().unwrap_or(0.0);
    let dot = aj * sj + rest_dot;
    for i in 0..dz.len() {
        let si = dz[i];
        dz[i] = if i == j {
            k.slope * si * (aj_cj - rest_dot)
        } else if si == 0.0 {
            0.0
        } else {
            let (h, u) = h_u(k, si, 1.0 - si);
            let ai = if g[i] == 0.0 { 0.0 } else { g[i] * (1.0 / (2.0 * u).sqrt() + 0.75) / h };
            k.slope * si * (ai - dot)
        };
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

/// `dw/dh = (1/sqrt(2u) + 0.75) / h` of the softmax head's backward for one
/// probability `s`, formed as `(1 + 0.75 r) / (r h)` with `r = sqrt(2u)` (one
/// division), `u` floored at the smallest normal f32.
#[inline(always)]
fn softmax_head_dwdh(slope: f32, b: f32, s: f32) -> f32 {
    let h = slope.mul_add(s, b);
    let h = if h < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { h };
    let u = -1.0 - ln_f32(h);
    let u = if u < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { u };
    let r = (2.0 * u).sqrt();
    0.75f32.mul_add(r, 1.0) / (r * h)
}

/// `(w, dw/dh)` of one probability `s`: [`softmax_head_w`] and
/// [`softmax_head_dwdh`] from one logarithm and one square root, the same bits
/// as each. (`w` takes the root at `u` floored at the smallest normal f32
/// instead of at 0; below that floor `-1 - sqrt(2u)` rounds to -1 either way.)
#[inline(always)]
fn softmax_head_wq(slope: f32, b: f32, s: f32) -> (f32, f32) {
    let h = slope.mul_add(s, b);
    let h = if h < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { h };
    let u = -1.0 - ln_f32(h);
    let u0 = if u < 0.0 { 0.0 } else { u };
    let u1 = if u < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { u };
    let r = (2.0 * u1).sqrt();
    (-1.0 - r - 0.75 * u0, 0.75f32.mul_add(r, 1.0) / (r * h))
}

/// `a_i = g_i * dw/dh` of the softmax head's backward from `q = dw/dh`
/// ([`softmax_head_dwdh`]): 0 where `g_i` or `s_i` is 0, as in the f64 kernel.
#[inline(always)]
fn softmax_head_a_from(g: f32, s: f32, q: f32) -> f32 {
    if g == 0.0 || s == 0.0 {
        0.0
    } else {
        g * q
    }
}

/// `a_i = g_i * (1/sqrt(2u) + 0.75) / h` of the softmax head's backward (0 where
/// `g_i` or `s_i` is 0, as in the f64 kernel).
#[inline(always)]
fn softmax_head_a(slope: f32, b: f32, g: f32, s: f32) -> f32 {
    softmax_head_a_from(g, s, softmax_head_dwdh(slope, b, s))
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
/// `saved` (a row of the same length) receives `softmax(z)` as
/// [`softmax_head_row_grad_f32`] computes it, for [`softmax_head_row_grad_saved_f32`].
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_row_f32(z: &[f32], slope: f32, b: f32, out: &mut [f32], saved: Option<&mut [f32]>) {
    let inv = (1.0 / exp_row(z, out)) as f32;
    if let Some(sv) = saved {
        // softmax(z) as the backward computes it: e * inv
        for (s, &e) in sv.iter_mut().zip(out.iter()) {
            *s = e * inv;
        }
    }
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
    grad_row(z, g, slope, b, dz, scratch, true)
}

/// [`softmax_head_row_grad_f32`] from the saved `s = softmax(z)` (written by
/// [`softmax_head_row_f32`]'s `saved`): no exponential, the same bits.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_row_grad_saved_f32(s: &[f32], g: &[f32], slope: f32, b: f32, dz: &mut [f32], scratch: &mut Vec<f32>) {
    grad_row(s, g, slope, b, dz, scratch, false)
}

/// The body of both along-row backwards: from `z` (`from_z`) or from
/// `softmax(z)` scaled by 1 (exact), so that both give the same bits.
#[inline(always)]
fn grad_row(x: &[f32], g: &[f32], slope: f32, b: f32, dz: &mut [f32], scratch: &mut Vec<f32>, from_z: bool) {
    if slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    // from z: the exponentials in dz, scaled by inv below; from the saved
    // softmax: read where it lies, scaled by an exact 1
    let (inv, saved) = if from_z { ((1.0 / exp_row(x, dz)) as f32, None) } else { (1.0, Some(x)) };
    scratch.clear();
    scratch.resize(dz.len(), 0.0);
    let mut dot = 0.0f64;
    for (blk, ((db, gb), ab)) in dz.chunks_mut(BLOCK).zip(g.chunks(BLOCK)).zip(scratch.chunks_mut(BLOCK)).enumerate() {
        let src = saved.map(|s| &s[blk * BLOCK..blk * BLOCK + db.len()]);
        let mut acc = [0.0f32; LANES];
        let mut ds = db.chunks_exact_mut(LANES);
        let mut gs = gb.chunks_exact(LANES);
        let mut as_ = ab.chunks_exact_mut(LANES);
        for (k, ((dc, gc), ac)) in (&mut ds).zip(&mut gs).zip(&mut as_).enumerate() {
            let ev: V = match src {
                Some(s) => s[k * LANES..(k + 1) * LANES].try_into().unwrap_or([0.0; LANES]),
                None => (&*dc).try_into().unwrap_or([0.0; LANES]),
            };
            let gv: &V = gc.try_into().unwrap_or(&[0.0; LANES]);
            let sv = vmap(ev, |e| e * inv);
            let av = vzip(*gv, sv, |gi, si| softmax_head_a(slope, b, gi, si));
            dc.copy_from_slice(&sv);
            ac.copy_from_slice(&av);
            acc = vzip3(av, sv, acc, |a, s, c| a.mul_add(s, c));
        }
        // a long tail as one more vector, padded with g = 0 (a = 0 there)
        let (dr, gr, ar) = (ds.into_remainder(), gs.remainder(), as_.into_remainder());
        if let Some(s) = src {
            dr.copy_from_slice(&s[s.len() - dr.len()..]);
        }
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

/// Rows at most this long take the rows-across-lanes kernels
/// ([`softmax_head_rows_f32`], [`softmax_head_rows_grad_f32`]); longer rows are
/// vectorised along the row (at `n = 10` a row would fill 10 of 16 lanes). The
/// limit is one vector's width; it has not been tuned by measurement.
pub const ROWS_ACROSS_LANES_MAX_N: usize = LANES;

/// Softmax-head forward of f32 rows of length `n` (read where they lie, [`Rows`]) into
/// contiguous rows `out` (docs/math.md#softmax-head),
/// [`LANES`] rows at a time with one row per lane, so that short rows (`n` up to
/// [`ROWS_ACROSS_LANES_MAX_N`]) fill the vector registers: the same three steps as
/// [`softmax_head_row_f32`] (exponentials and their sum, the map to `w`, the shift by
/// `min w`), each lane summing its row in order. The last group is padded with rows of
/// zeros that are computed and dropped, so every row gets the same arithmetic however
/// the rows are split across threads. `saved` as in [`softmax_head_row_f32`].
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_rows_f32<'a>(z: Rows<'a>, slope: f32, b: f32, out: &mut [f32], mut saved: Option<&mut [f32]>) {
    let (rows, n) = (z.rows(), z.n());
    if n == 0 {
        return;
    }
    let mut t = vec![[0.0f32; LANES]; n];
    let mut u = if saved.is_some() { t.clone() } else { Vec::new() };
    let order = BlockOrder::new(n);
    for g0 in (0..rows).step_by(LANES) {
        load_lanes(&z, g0, &mut t);
        let inv = vmap(exp_lanes(&mut t), |v| 1.0 / v);
        if let Some(sv) = saved.as_deref_mut() {
            for (uj, tj) in u.iter_mut().zip(&t) {
                *uj = vzip(*tj, inv, |e, iv| e * iv);
            }
            store_lanes(&u, n, g0, sv, &order);
        }
        let mut wmin = [f32::INFINITY; LANES];
        for tj in t.iter_mut() {
            let w = vzip(*tj, inv, |e, iv| softmax_head_w(slope, b, e * iv));
            *tj = w;
            wmin = vzip(wmin, w, min_nan);
        }
        for tj in t.iter_mut() {
            *tj = vzip(*tj, wmin, |w, m| w - m);
        }
        store_lanes(&t, n, g0, out, &order);
    }
}

/// Softmax-head backward of f32 rows `z` and `g` (of the same shape, read where they
/// lie) into contiguous rows `dz`, rows across lanes as in [`softmax_head_rows_f32`]: `dz_j = slope * s_j * (a_j - sum_i a_i s_i)` with the `a_i`
/// of [`softmax_head_row_grad_f32`].
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_rows_grad_f32<'a, 'b>(z: Rows<'a>, g: Rows<'b>, slope: f32, b: f32, dz: &mut [f32]) {
    grad_rows(z, g, slope, b, dz, true)
}

/// [`softmax_head_rows_grad_f32`] from the saved `softmax(z)` (written by
/// [`softmax_head_rows_f32`]'s `saved`): no exponential, the same bits.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_rows_grad_saved_f32<'a, 'b>(s: Rows<'a>, g: Rows<'b>, slope: f32, b: f32, dz: &mut [f32]) {
    grad_rows(s, g, slope, b, dz, false)
}

/// The body of both rows-across-lanes backwards (see [`grad_row`]).
#[inline(always)]
fn grad_rows(z: Rows<'_>, g: Rows<'_>, slope: f32, b: f32, dz: &mut [f32], from_z: bool) {
    let (rows, n) = (z.rows(), z.n());
    assert!(g.rows() == rows && g.n() == n, "z and g must hold rows of the same shape");
    if slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    if n == 0 {
        return;
    }
    let mut tz = vec![[0.0f32; LANES]; n];
    let mut tg = tz.clone();
    let order = BlockOrder::new(n);
    for g0 in (0..rows).step_by(LANES) {
        load_lanes(&z, g0, &mut tz);
        load_lanes(&g, g0, &mut tg);
        let inv = if from_z { vmap(exp_lanes(&mut tz), |v| 1.0 / v) } else { [1.0; LANES] };
        let mut dot = [0.0f32; LANES];
        for (tj, gj) in tz.iter_mut().zip(tg.iter_mut()) {
            let s = vzip(*tj, inv, |e, iv| e * iv);
            let a = vzip(*gj, s, |gi, si| softmax_head_a(slope, b, gi, si));
            *tj = s;
            *gj = a;
            dot = vzip3(a, s, dot, |x, y, c| x.mul_add(y, c));
        }
        for (tj, gj) in tz.iter_mut().zip(tg.iter()) {
            let d = vzip(*gj, dot, |a, dv| a - dv);
            *tj = vzip(*tj, d, |s, x| slope * s * x);
        }
        store_lanes(&tz, n, g0, dz, &order);
    }
}
