//! The softmax head's f32 kernels with two residuals (docs/math.md#saved-softmax):
//! the forward writes `s = softmax(z)` and `q = dw/dh` next to `out`, and the
//! backward reads both, so that it computes no exponential, logarithm, square
//! root or division: `dz_j = slope * s_j * (g_j q_j - sum_i g_i q_i s_i)`.
//!
//! Each kernel does the operations of its counterpart in the parent module in
//! the same order (the forward's `out` and `s`, the backward's `a_i` and their
//! sums), so the results are the same bits as the forward and the backward from
//! `z`.

use multiversion::multiversion;

use super::{softmax_head_a_from, softmax_head_wq, VECTOR_TAIL};
use crate::kernels::vmath::{exp_lanes, load_lanes, min_nan, store_lanes, vmap, vzip, vzip3, BlockOrder, Rows, BLOCK, LANES, V};

/// `(w, q)` of [`softmax_head_wq`] lane by lane, for probabilities `s`.
#[inline(always)]
fn vwq(s: V, slope: f32, b: f32) -> (V, V) {
    let (mut w, mut q) = ([0.0; LANES], [0.0; LANES]);
    for i in 0..LANES {
        (w[i], q[i]) = softmax_head_wq(slope, b, s[i]);
    }
    (w, q)
}

/// [`super::softmax_head_row_f32`] that also writes both residuals of one f32 row:
/// `saved = softmax(z)` (as the backward from `z` forms it) and `dwdh = dw/dh`
/// at those probabilities. `out` is the same bits as the forward's.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_row_dw_f32(z: &[f32], slope: f32, b: f32, out: &mut [f32], saved: &mut [f32], dwdh: &mut [f32]) {
    let inv = (1.0 / super::exp_row(z, out)) as f32;
    for (s, &e) in saved.iter_mut().zip(out.iter()) {
        *s = e * inv;
    }
    let mut wmin = [f32::INFINITY; LANES];
    let mut os = out.chunks_exact_mut(LANES);
    let mut ss = saved.chunks_exact(LANES);
    let mut qs = dwdh.chunks_exact_mut(LANES);
    for ((oc, sc), qc) in (&mut os).zip(&mut ss).zip(&mut qs) {
        let sv: &V = sc.try_into().unwrap_or(&[0.0; LANES]);
        let (w, q) = vwq(*sv, slope, b);
        oc.copy_from_slice(&w);
        qc.copy_from_slice(&q);
        wmin = vzip(wmin, w, min_nan);
    }
    let (rem, srem, qrem) = (os.into_remainder(), ss.remainder(), qs.into_remainder());
    if rem.len() >= VECTOR_TAIL {
        let mut sv = [0.0f32; LANES];
        sv[..rem.len()].copy_from_slice(srem);
        let (mut w, q) = vwq(sv, slope, b);
        w[rem.len()..].fill(f32::INFINITY); // padding takes no part in the minimum
        rem.copy_from_slice(&w[..rem.len()]);
        qrem.copy_from_slice(&q[..rem.len()]);
        wmin = vzip(wmin, w, min_nan);
    }
    let mut m = wmin.iter().copied().fold(f32::INFINITY, min_nan);
    if rem.len() < VECTOR_TAIL {
        for ((o, &s), q) in rem.iter_mut().zip(srem).zip(qrem.iter_mut()) {
            (*o, *q) = softmax_head_wq(slope, b, s);
            m = min_nan(m, *o);
        }
    }
    for o in out.iter_mut() {
        *o -= m;
    }
}

/// [`super::softmax_head_row_grad_saved_f32`] from both residuals that
/// [`softmax_head_row_dw_f32`] wrote: a few multiplications per element and
/// one sum, no scratch; the same bits as the backward from `z`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_row_grad_dw_f32(s: &[f32], dwdh: &[f32], g: &[f32], slope: f32, dz: &mut [f32]) {
    if slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    let mut dot = 0.0f64;
    for ((sb, qb), gb) in s.chunks(BLOCK).zip(dwdh.chunks(BLOCK)).zip(g.chunks(BLOCK)) {
        let mut acc = [0.0f32; LANES];
        let (mut ss, mut qs, mut gs) = (sb.chunks_exact(LANES), qb.chunks_exact(LANES), gb.chunks_exact(LANES));
        for ((sc, qc), gc) in (&mut ss).zip(&mut qs).zip(&mut gs) {
            let sv: &V = sc.try_into().unwrap_or(&[0.0; LANES]);
            let qv: &V = qc.try_into().unwrap_or(&[0.0; LANES]);
            let gv: &V = gc.try_into().unwrap_or(&[0.0; LANES]);
            let av = vzip3(*gv, *sv, *qv, softmax_head_a_from);
            acc = vzip3(av, *sv, acc, |a, s, c| a.mul_add(s, c));
        }
        // the tail as the backward from z takes it: element by element, or as
        // one more vector padded with s = q = g = 0 (a = 0 there)
        let (sr, qr, gr) = (ss.remainder(), qs.remainder(), gs.remainder());
        if sr.len() < VECTOR_TAIL {
            for ((&si, &qi), &gi) in sr.iter().zip(qr).zip(gr) {
                dot += (softmax_head_a_from(gi, si, qi) * si) as f64;
            }
        } else {
            let r = sr.len();
            let (mut sv, mut qv, mut gv) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
            sv[..r].copy_from_slice(sr);
            qv[..r].copy_from_slice(qr);
            gv[..r].copy_from_slice(gr);
            let av = vzip3(gv, sv, qv, softmax_head_a_from);
            acc = vzip3(av, sv, acc, |a, s, c| a.mul_add(s, c));
        }
        dot += acc.iter().map(|&v| v as f64).sum::<f64>();
    }
    let dot = dot as f32;
    for (((d, &si), &qi), &gi) in dz.iter_mut().zip(s).zip(dwdh).zip(g) {
        *d = slope * si * (softmax_head_a_from(gi, si, qi) - dot);
    }
}

/// [`super::softmax_head_rows_f32`] (rows across lanes) that also writes both
/// residuals into contiguous rows `saved` and `dwdh`, as
/// [`softmax_head_row_dw_f32`] does for one row.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_rows_dw_f32<'a>(z: Rows<'a>, slope: f32, b: f32, out: &mut [f32], saved: &mut [f32], dwdh: &mut [f32]) {
    let (rows, n) = (z.rows(), z.n());
    if n == 0 {
        return;
    }
    let mut t = vec![[0.0f32; LANES]; 3 * n];
    let (t, rest) = t.split_at_mut(n);
    let (ts, tq) = rest.split_at_mut(n);
    let order = BlockOrder::new(n);
    for g0 in (0..rows).step_by(LANES) {
        load_lanes(&z, g0, t);
        let inv = vmap(exp_lanes(t), |v| 1.0 / v);
        let mut wmin = [f32::INFINITY; LANES];
        for ((tj, sj), qj) in t.iter_mut().zip(ts.iter_mut()).zip(tq.iter_mut()) {
            *sj = vzip(*tj, inv, |e, iv| e * iv);
            let (w, q) = vwq(*sj, slope, b);
            (*tj, *qj) = (w, q);
            wmin = vzip(wmin, w, min_nan);
        }
        for tj in t.iter_mut() {
            *tj = vzip(*tj, wmin, |w, m| w - m);
        }
        store_lanes(ts, n, g0, saved, &order);
        store_lanes(tq, n, g0, dwdh, &order);
        store_lanes(t, n, g0, out, &order);
    }
}

/// [`super::softmax_head_rows_grad_saved_f32`] from both residuals (rows of
/// `s`, `dwdh` and `g` of one shape, read where they lie) into contiguous rows
/// `dz`, as [`softmax_head_row_grad_dw_f32`] does for one row.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_head_rows_grad_dw_f32<'a, 'b, 'c>(s: Rows<'a>, dwdh: Rows<'b>, g: Rows<'c>, slope: f32, dz: &mut [f32]) {
    let (rows, n) = (s.rows(), s.n());
    assert!(g.rows() == rows && g.n() == n && dwdh.rows() == rows && dwdh.n() == n, "s, dwdh and g must hold rows of the same shape");
    if slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    if n == 0 {
        return;
    }
    let mut t = vec![[0.0f32; LANES]; 3 * n];
    let (ts, rest) = t.split_at_mut(n);
    let (tq, tg) = rest.split_at_mut(n);
    let order = BlockOrder::new(n);
    for g0 in (0..rows).step_by(LANES) {
        load_lanes(&s, g0, ts);
        load_lanes(&dwdh, g0, tq);
        load_lanes(&g, g0, tg);
        let mut dot = [0.0f32; LANES];
        for ((sj, qj), gj) in ts.iter().zip(tq.iter()).zip(tg.iter_mut()) {
            let a = vzip3(*gj, *sj, *qj, softmax_head_a_from);
            *gj = a;
            dot = vzip3(a, *sj, dot, |x, y, c| x.mul_add(y, c));
        }
        for (sj, gj) in ts.iter_mut().zip(tg.iter()) {
            let d = vzip(*gj, dot, |a, dv| a - dv);
            *sj = vzip(*sj, d, |s, x| slope * s * x);
        }
        store_lanes(ts, n, g0, dz, &order);
    }
}
