//! Token-head arithmetic (docs/math.md#token-head): the fused one-read row
//! statistics, the vectorised backward row, the vocabulary top-K, the scale
//! decision, and the f64 rows of the reference implementation.

use std::collections::BTreeMap;

use multiversion::multiversion;

use crate::config::TokenConfig;
use crate::kernels::vmath::{block_max, exp_f32, exp_half, exp_nonpos_f32, prefetch, row_max, vmap, vzip, vzip3, BLOCK, LANES, V};

/// Log-prob given to a label outside the vocabulary top-K.
pub const OUTSIDE_TOPK_LOGPROB: f64 = -1e4;

/// Statistics of one token row `z = x / T` gathered in one read:
/// `max`, `sum_c = sum(exp(c*(z - max)))` for `c` in `{1, k, 1/k}`,
/// `w = sum(exp(z - max) * (z - max))` (so `H = ln(sum_1) - w/sum_1`) and,
/// when asked for, `sum_2 = sum(exp(2*(z - max)))` (so that the sum of the
/// squared probabilities is `sum_2 / sum_1^2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats {
    /// Largest `z` (NaN if the row holds NaN or infinity).
    pub max: f32,
    /// `sum(exp(z - max))`.
    pub sum1: f64,
    /// `sum(exp(k*(z - max)))`.
    pub sumk: f64,
    /// `sum(exp((z - max)/k))`.
    pub suminvk: f64,
    /// `sum(exp(z - max) * (z - max))`.
    pub w: f64,
    /// `sum(exp(2*(z - max)))` when the statistics were gathered with the
    /// squared sum (equal to `sumk` for `k = 2`), else 0.
    pub sum2: f64,
}

impl RowStats {
    /// Entropy of `softmax(z)`.
    pub fn entropy(&self) -> f64 {
        self.sum1.ln() - self.w / self.sum1
    }

    /// `ln(sum(exp(c*(z - max))))` for `c` in `{1, k, 1/k}` (selected by
    /// comparing with `k`).
    pub fn ln_sum(&self, c: f64, k: f64) -> f64 {
        if c == 1.0 {
            self.sum1.ln()
        } else if c == k {
            self.sumk.ln()
        } else {
            self.suminvk.ln()
        }
    }

    /// `sum_i softmax(z)_i^2` (needs statistics gathered with the squared sum).
    pub fn sum_sq_probs(&self) -> f64 {
        self.sum2 / (self.sum1 * self.sum1)
    }
}

/// Lower clamp of `d = z - max` in the fused sums: `exp(-87)` is below
/// 2e-38 (it adds nothing to a sum that holds the maximum's 1), and both
/// `exp(-87/2)` and its square stay normal f32 numbers.
pub const D_FLOOR: f32 = -87.0;

/// The block's exponential sums relative to `m`: `[sum_1, sum_k, sum_1/k, w, sum_2]`
/// (`sum_2` only with `SQ` and not `K2`; the caller takes `sum_k` for it when `k = 2`).
/// With `K2` (k = 2) one exponential serves all three scales: `h = exp(d/2)`,
/// `exp(d) = h^2`, `exp(2d) = h^4` (a few ulp each). The next block is
/// prefetched while this one is computed, so that the memory reads overlap
/// with the arithmetic.
#[inline(always)]
fn block_sums<const K2: bool, const SQ: bool>(x: &[f32], inv_t: f32, m: f32, k: f32, inv_k: f32) -> [f64; 5] {
    let mut s1 = [0.0f32; LANES];
    let mut sk = [0.0f32; LANES];
    let mut si = [0.0f32; LANES];
    let mut w = [0.0f32; LANES];
    let mut s2 = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        prefetch(c.as_ptr().wrapping_add(BLOCK));
        let c: &V = c.try_into().unwrap_or(&[0.0; LANES]);
        // rounded product, then the difference: the row maximum gives exactly 0 and
        // every d <= 0 (a fused multiply-add would leave the product's rounding
        // error, which is huge and may be positive when 1/T is huge)
        let d = vmap(*c, |v| v * inv_t - m);
        if K2 {
            // NaN stays NaN (the comparison is false)
            let d = vmap(d, |v| if v < D_FLOOR { D_FLOOR } else { v });
            let h = vmap(d, exp_half);
            let e = vzip(h, h, |a, b| a * b);
            s1 = vzip(s1, e, |a, b| a + b);
            w = vzip3(e, d, w, |a, b, c| a.mul_add(b, c));
            sk = vzip3(e, e, sk, |a, b, c| a.mul_add(b, c));
            si = vzip(si, h, |a, b| a + b);
        } else {
            let e = vmap(d, exp_f32);
            s1 = vzip(s1, e, |a, b| a + b);
            // d >= -100 keeps 0 * -inf out of w (e is 0 there anyway)
            w = vzip3(e, vmap(d, |v| v.max(-100.0)), w, |a, b, c| a.mul_add(b, c));
            sk = vzip(sk, vmap(d, |v| exp_f32(k * v)), |a, b| a + b);
            si = vzip(si, vmap(d, |v| exp_f32(inv_k * v)), |a, b| a + b);
            if SQ {
                s2 = vzip(s2, vmap(d, |v| exp_f32(2.0 * v)), |a, b| a + b);
            }
        }
    }
    let mut out = [
        s1.iter().map(|&v| v as f64).sum::<f64>(),
        sk.iter().map(|&v| v as f64).sum::<f64>(),
        si.iter().map(|&v| v as f64).sum::<f64>(),
        w.iter().map(|&v| v as f64).sum::<f64>(),
        s2.iter().map(|&v| v as f64).sum::<f64>(),
    ];
    for &v in chunks.remainder() {
        let d = v * inv_t - m;
        let e = exp_f32(d);
        out[0] += e as f64;
        out[1] += if K2 { (e * e) as f64 } else { exp_f32(k * d) as f64 };
        out[2] += if K2 { e.sqrt() as f64 } else { exp_f32(inv_k * d) as f64 };
        out[3] += if e > 0.0 { (e * d) as f64 } else { 0.0 };
        if SQ && !K2 {
            out[4] += exp_f32(2.0 * d) as f64;
        }
    }
    out
}

/// The running state of [`token_row_stats`] over a row fed in pieces
/// ([`RowAcc::push`]): the maximum so far and the sums relative to it, merged
/// block by block (online softmax). Feeding a row in pieces whose lengths are
/// multiples of [`BLOCK`] (the last excepted) gives the same bits as one call
/// on the whole row, so a strided or converted row can be gathered a block at
/// a time into a buffer of fixed size.
#[derive(Debug, Clone, Copy)]
pub struct RowAcc {
    inv_t: f32,
    k: f32,
    squares: bool,
    m: f32,
    s: [f64; 5],
}

impl RowAcc {
    /// An empty row: statistics of `z = x * inv_t` for the scales `{1, k, 1/k}`,
    /// and the squared sum when `squares` is set.
    pub fn new(inv_t: f32, k: f32, squares: bool) -> Self {
        RowAcc { inv_t, k, squares, m: f32::NEG_INFINITY, s: [0.0; 5] }
    }

    /// Adds `x`, the next entries of the row (see the type's note on lengths).
    pub fn push(&mut self, x: &[f32]) {
        row_stats_push(self, x);
    }

    /// The statistics of everything pushed.
    pub fn finish(self) -> RowStats {
        let [s1, sk, si, w, s2] = self.s;
        // a NaN or +inf entry makes every sum NaN (exp(NaN), exp(inf - inf))
        let max = if s1.is_nan() { f32::NAN } else { self.m };
        let sum2 = if !self.squares {
            0.0
        } else if self.k == 2.0 {
            sk
        } else {
            s2
        };
        RowStats { max, sum1: s1, sumk: sk, suminvk: si, w, sum2 }
    }
}

/// [`RowAcc::push`]: the blocks of `x`, each merged into the running state.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn row_stats_push(acc: &mut RowAcc, x: &[f32]) {
    let (inv_t, k) = (acc.inv_t, acc.k);
    let inv_k = 1.0 / k;
    let k_is_two = k == 2.0;
    let squares = acc.squares;
    for blk in x.chunks(BLOCK) {
        let bm = block_max(blk, inv_t);
        if bm == f32::NEG_INFINITY {
            continue; // every entry is -inf: probability 0
        }
        if bm > acc.m {
            if acc.s[0] > 0.0 {
                let f = (acc.m - bm) as f64; // < 0
                let e1 = f.exp();
                let s = &mut acc.s;
                s[3] = e1 * (s[3] + f * s[0]);
                s[0] *= e1;
                s[1] *= (k as f64 * f).exp();
                s[2] *= (inv_k as f64 * f).exp();
                s[4] *= (2.0 * f).exp();
            }
            acc.m = bm;
        }
        let m = acc.m;
        let add = match (k_is_two, squares) {
            (true, _) => block_sums::<true, false>(blk, inv_t, m, k, inv_k),
            (false, false) => block_sums::<false, false>(blk, inv_t, m, k, inv_k),
            (false, true) => block_sums::<false, true>(blk, inv_t, m, k, inv_k),
        };
        for (s, a) in acc.s.iter_mut().zip(add) {
            *s += a;
        }
    }
}

/// One read of a token row: [`RowStats`] of `z = x * inv_t` for scales
/// `{1, k, 1/k}`, block by block with running rescaling (online softmax).
pub fn token_row_stats(x: &[f32], inv_t: f32, k: f32) -> RowStats {
    let mut acc = RowAcc::new(inv_t, k, false);
    acc.push(x);
    acc.finish()
}

/// The backward row of the token head, written into `out`:
/// `out_i = f * (onehot(label)_i - p_i)` with `p = softmax(c*z)` over the
/// kept entries (all, or the top-k given by `thr`) and 0 elsewhere, where
/// `z = x * inv_t`. Three passes over the row, which stays in cache: the
/// maximum, the exponentials (stored in `out`) with their sum, and the scaling.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn token_row_grad(x: &[f32], inv_t: f32, c: f32, f: f32, label: usize, thr: Option<(f32, usize)>, out: &mut [f32]) {
    let m = grad_max(x, inv_t, thr);
    let mut total = 0.0f64;
    for (bi, (xb, ob)) in x.chunks(BLOCK).zip(out.chunks_mut(BLOCK)).enumerate() {
        grad_block(Some(xb), ob, bi * BLOCK, inv_t, c, m, thr, &mut total);
    }
    grad_finish(out, total, f, label);
}

/// [`token_row_grad`] with the gradient written over the row it is computed
/// from (`row` holds `x` on entry and the gradient on return), bit for bit
/// the same result: each vector of the row is loaded before its exponentials
/// overwrite it, so the row is still read once from memory and written once.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn token_row_grad_in_place(row: &mut [f32], inv_t: f32, c: f32, f: f32, label: usize, thr: Option<(f32, usize)>) {
    let m = grad_max(row, inv_t, thr);
    let mut total = 0.0f64;
    for (bi, ob) in row.chunks_mut(BLOCK).enumerate() {
        grad_block(None, ob, bi * BLOCK, inv_t, c, m, thr, &mut total);
    }
    grad_finish(row, total, f, label);
}

/// The maximum of `x * inv_t` over the kept entries (the first pass of
/// [`token_row_grad`]).
#[inline(always)]
fn grad_max(x: &[f32], inv_t: f32, thr: Option<(f32, usize)>) -> f32 {
    match thr {
        None => block_max(x, inv_t),
        Some(t) => x.iter().enumerate().filter(|&(i, &v)| in_topk(v, i, t)).map(|(_, &v)| v * inv_t).fold(f32::NEG_INFINITY, |a, b| {
            if b > a {
                b
            } else {
                a
            }
        }),
    }
}

/// One block of the second pass of [`token_row_grad`]: `ob = exp(c*(x*inv_t - m))`
/// on the kept entries (0 elsewhere; `base` is the block's offset in the row),
/// added to the row's running sum `total`. `x` is `xb`, or `ob` itself when
/// `xb` is None (each vector is loaded before it is overwritten).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_block(xb: Option<&[f32]>, ob: &mut [f32], base: usize, inv_t: f32, c: f32, m: f32, thr: Option<(f32, usize)>, total: &mut f64) {
    let keep = |i: usize, v: f32| match thr {
        None => true,
        Some(t) => in_topk(v, i, t),
    };
    let n = ob.len();
    let full = n - n % LANES;
    let mut s = [0.0f32; LANES];
    for off in (0..full).step_by(LANES) {
        let src = match xb {
            Some(x) => &x[off..off + LANES],
            None => &ob[off..off + LANES],
        };
        let xv: V = src.try_into().unwrap_or([0.0; LANES]);
        let mut e = vmap(xv, |v| exp_nonpos_f32(c * (v * inv_t - m)));
        if thr.is_some() {
            for i in 0..LANES {
                if !keep(base + off + i, xv[i]) {
                    e[i] = 0.0;
                }
            }
        }
        ob[off..off + LANES].copy_from_slice(&e);
        s = vzip(s, e, |a, b| a + b);
    }
    *total += s.iter().map(|&v| v as f64).sum::<f64>();
    for j in full..n {
        let v = xb.map_or(ob[j], |x| x[j]);
        let e = if keep(base + j, v) { exp_f32(c * (v * inv_t - m)) } else { 0.0 };
        ob[j] = e;
        *total += e as f64;
    }
}

/// The last pass of [`token_row_grad`]: `out = -f * out / total`, plus `f` at the label.
#[inline(always)]
fn grad_finish(out: &mut [f32], total: f64, f: f32, label: usize) {
    let scale = -((f as f64) / total) as f32;
    for o in out.iter_mut() {
        *o *= scale;
    }
    if label < out.len() {
        out[label] += f;
    }
}

/// A float type that the top-K selection works on (f32 rows of the fused
/// kernels, f64 rows of the reference).
pub trait TopkValue: Copy + PartialOrd {
    /// Positive infinity: the threshold of an empty selection.
    const INFINITY: Self;
}

impl TopkValue for f32 {
    const INFINITY: Self = f32::INFINITY;
}

impl TopkValue for f64 {
    const INFINITY: Self = f64::INFINITY;
}

/// The `k` largest entries of a row (ties to the lower index), as the
/// threshold pair `(value, index)` of the k-th: entry `i` is in the top-k
/// iff [`in_topk`] holds (docs/math.md#vocabulary-top-k). NaN entries are
/// never selected (the callers report NaN rows separately). `heap` is
/// scratch and holds the selected `(value, index)` pairs afterwards.
pub fn topk_threshold<X: TopkValue>(x: &[X], k: usize, heap: &mut Vec<(X, usize)>) -> (X, usize) {
    heap.clear();
    topk_push(x, 0, k, heap);
    topk_result(heap)
}

/// Adds the entries of `x`, whose first lies at index `base` of the row, to the
/// running top-`k` selection `heap` (empty at the start of a row): feeding a row
/// in pieces selects what [`topk_threshold`] selects on the whole row.
pub fn topk_push<X: TopkValue>(x: &[X], base: usize, k: usize, heap: &mut Vec<(X, usize)>) {
    // a sorted (descending) list of the best k so far; inserts are rare after the start
    for (i, &v) in x.iter().enumerate() {
        if heap.len() == k {
            let worst = heap[k - 1].0;
            // NaN compares false: never selected
            if v.partial_cmp(&worst) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            heap.pop();
        } else if v.partial_cmp(&v).is_none() {
            continue;
        }
        let pos = heap.partition_point(|&(hv, _)| hv >= v);
        heap.insert(pos, (v, base + i));
    }
}

/// The threshold pair of a finished [`topk_push`] selection (that of [`topk_threshold`]).
pub fn topk_result<X: TopkValue>(heap: &[(X, usize)]) -> (X, usize) {
    heap.last().copied().unwrap_or((X::INFINITY, 0))
}

/// Whether entry `i` of value `v` is in the top-K given by the threshold pair of [`topk_threshold`].
#[inline(always)]
pub fn in_topk<X: TopkValue>(v: X, i: usize, (tv, ti): (X, usize)) -> bool {
    v > tv || (v == tv && i <= ti)
}

/// `max(1, floor(rho * n))`: how many forking tokens a response of `n` tokens has.
#[inline]
pub fn forking_count(rho: f64, n: usize) -> usize {
    ((rho * n as f64).floor() as usize).max(1)
}

/// The scale decision for one token.
#[inline]
pub fn choose_scale(cfg: &TokenConfig, advantage: f64, response_entropy: f64) -> f64 {
    if advantage > 0.0 && response_entropy < cfg.omega_low {
        cfg.k
    } else if advantage > 0.0 && response_entropy > cfg.omega_high {
        1.0 / cfg.k
    } else {
        1.0
    }
}

/// Per-response mean of the `max(1, floor(rho*n_r))` largest entropies.
/// `ids[t] < 0` marks a masked token, which gets 0.
pub fn response_entropies(entropy: &[f64], ids: &[i64], rho: f64) -> Vec<f64> {
    let mut groups: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (&h, &id) in entropy.iter().zip(ids) {
        if id >= 0 {
            groups.entry(id).or_default().push(h);
        }
    }
    let means: BTreeMap<i64, f64> = groups
        .into_iter()
        .map(|(id, mut hs)| {
            // descending; a NaN of either sign sorts first (as the largest), so it poisons
            // the mean (total_cmp alone would put a negative NaN last)
            hs.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Less,
                (false, true) => std::cmp::Ordering::Greater,
                (false, false) => b.total_cmp(a),
            });
            let k = forking_count(rho, hs.len());
            (id, hs[..k].iter().sum::<f64>() / k as f64)
        })
        .collect();
    ids.iter().map(|id| if *id >= 0 { means[id] } else { 0.0 }).collect()
}

/// `c*z[y] - logsumexp(c*z)` over the entries where `mask` is true (all
/// when `None`), computed as `(c*z[y] - m) - ln(sum(exp(c*z - m)))` with the
/// maximum `m` subtracted first, so that huge logits do not cancel.
pub fn scaled_logprob(z: &[f64], y: usize, c: f64, mask: Option<&[bool]>) -> f64 {
    let sel = |i: usize| mask.is_none_or(|m| m[i]);
    let mut m = f64::NEG_INFINITY;
    let mut nan = false;
    for (i, &v) in z.iter().enumerate() {
        if sel(i) {
            let x = c * v;
            nan |= x.is_nan();
            if x > m {
                m = x;
            }
        }
    }
    if nan || m == f64::INFINITY {
        return f64::NAN;
    }
    if m == f64::NEG_INFINITY {
        return f64::NAN; // every selected logit is -inf: no distribution
    }
    let mut s = 0.0;
    for (i, &v) in z.iter().enumerate() {
        if sel(i) {
            s += (c * v - m).exp();
        }
    }
    (c * z[y] - m) - s.ln()
}

/// Index of a scale in `{1, k, 1/k}`.
pub fn scale_index(c: f64, k: f64) -> usize {
    if c == 1.0 {
        0
    } else if c == k {
        1
    } else {
        2
    }
}

/// The top-K maximum and log-sums from the K selected (value, index) pairs.
pub fn topk_ln_sums(heap: &[(f32, usize)], inv_t: f64, k: f64) -> Option<(f64, [f64; 3])> {
    let zs: Vec<f64> = heap.iter().map(|&(v, _)| (v * inv_t as f32) as f64).collect();
    let m = zs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ln = |c: f64| zs.iter().map(|&z| (c * (z - m)).exp()).sum::<f64>().ln();
    Some((m, [ln(1.0), ln(k), ln(1.0 / k)]))
}

/// The reference log-prob of one row (docs/math.md#token-forward): `z` holds
/// `x / T` in f64; `c*z[y] - logsumexp(c*z)` over the whole row, or over its
/// vocabulary top-K (`topk`), where a label outside it gets
/// [`OUTSIDE_TOPK_LOGPROB`]. A row with NaN gives NaN. `heap` and `mask` are scratch.
pub fn reference_logprob_row(z: &[f64], y: usize, c: f64, topk: Option<usize>, heap: &mut Vec<(f64, usize)>, mask: &mut Vec<bool>) -> f64 {
    let Some(k) = topk else {
        return scaled_logprob(z, y, c, None);
    };
    if z.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let thr = topk_threshold(z, k, heap);
    mask.clear();
    mask.extend(z.iter().enumerate().map(|(i, &v)| in_topk(v, i, thr)));
    if mask[y] {
        scaled_logprob(z, y, c, Some(mask))
    } else {
        OUTSIDE_TOPK_LOGPROB
    }
}

/// The reference gradient row (docs/math.md#token-backward), written into
/// `out`: `f * (onehot(y) - softmax(c*z))` over the whole row or its
/// vocabulary top-K (0 outside it), and all zero when the label is outside
/// the top-K. `z` holds `x / T` in f64; `heap` is scratch.
#[allow(clippy::too_many_arguments)]
pub fn reference_grad_row(z: &[f64], y: usize, c: f64, f: f64, topk: Option<usize>, heap: &mut Vec<(f64, usize)>, out: &mut [f64]) {
    let thr = topk.map(|k| topk_threshold(z, k, heap));
    let keep = |i: usize| thr.is_none_or(|t| in_topk(z[i], i, t));
    if !keep(y) {
        out.fill(0.0);
        return;
    }
    let m = match thr {
        Some(_) => (0..z.len()).filter(|&i| keep(i)).map(|i| c * z[i]).fold(f64::NEG_INFINITY, f64::max),
        None => c * row_max(z),
    };
    let mut s = 0.0;
    for (i, o) in out.iter_mut().enumerate() {
        *o = if keep(i) { (c * z[i] - m).exp() } else { 0.0 };
        s += *o;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let onehot = if i == y { 1.0 } else { 0.0 };
        *o = f * (onehot - *o / s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_entropy_of_either_sign_poisons_its_response() {
        let neg_nan = -f64::NAN;
        assert!(neg_nan.is_sign_negative());
        for nan in [f64::NAN, neg_nan] {
            // response 0: five tokens, rho 0.2 -> the single largest, which is the NaN
            let h = [0.5, nan, 0.1, 0.2, 0.3, 1.0, 2.0];
            let ids = [0, 0, 0, 0, 0, 1, -1];
            let r = response_entropies(&h, &ids, 0.2);
            assert!(r[0].is_nan() && r[4].is_nan(), "{r:?}");
            assert_eq!((r[5], r[6]), (1.0, 0.0));
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "rows of several thousand elements")]
    fn row_stats_match_f64() {
        for len in [1usize, 15, 16, 17, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0 + (i as f32) * 1e-3).collect();
            for (inv_t, k) in [(1.0f32, 2.0f32), (1.0 / 0.7, 3.0)] {
                let s = token_row_stats(&x, inv_t, k);
                let z: Vec<f64> = x.iter().map(|&v| (v * inv_t) as f64).collect();
                let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s1: f64 = z.iter().map(|v| (v - m).exp()).sum();
                let sk: f64 = z.iter().map(|v| (k as f64 * (v - m)).exp()).sum();
                let w: f64 = z.iter().map(|v| (v - m).exp() * (v - m)).sum();
                assert_eq!(s.max as f64, m);
                assert!((s.sum1 / s1 - 1.0).abs() < 1e-6, "{len}: {} vs {s1}", s.sum1);
                assert!((s.sumk / sk - 1.0).abs() < 1e-6);
                assert!((s.w - w).abs() < 1e-5 * (1.0 + w.abs()), "{len}: {} vs {w}", s.w);
            }
        }
    }

    #[test]
    fn topk_threshold_breaks_ties_to_lower_index() {
        let x = [1.0f32, 3.0, 2.0, 3.0, 2.0, f32::NAN, 0.5];
        let mut h = Vec::new();
        assert_eq!(topk_threshold(&x, 1, &mut h), (3.0, 1));
        assert_eq!(topk_threshold(&x, 2, &mut h), (3.0, 3));
        assert_eq!(topk_threshold(&x, 3, &mut h), (2.0, 2));
        assert_eq!(topk_threshold(&x, 4, &mut h), (2.0, 4));
    }
}
