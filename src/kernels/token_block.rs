//! The token head over vocabulary blocks (docs/math.md#vocabulary-blocks): the
//! statistics of one row's block, their rebasing and associative merge, the
//! finish that turns merged statistics into the split forward's outputs, and
//! the backward of one block from what the finish saved. Arithmetic on one
//! row at a time; validation and threads are the head's.

use ndarray::{ArrayView1, ArrayViewMut1};

use crate::kernels::token::{topk_push, RowAcc, OUTSIDE_TOPK_LOGPROB};
use crate::kernels::token_rows::for_each_block_f32;
use crate::kernels::Element;

/// Rows of the statistics tensor `[STAT_ROWS, ...]`, in order. Rows
/// `0..SUMMED` are sums relative to the maximum (row [`MAX`]), so that the
/// statistics of blocks rebased to one maximum add entry by entry.
pub const SUM1: usize = 0;
/// `sum(exp(k*(z - M)))`.
pub const SUMK: usize = 1;
/// `sum(exp((z - M)/k))`.
pub const SUMINVK: usize = 2;
/// `sum(exp(z - M) * (z - M))`.
pub const W: usize = 3;
/// `sum(exp(2*(z - M)))`.
pub const SUM2: usize = 4;
/// The label's `z` where the label lies in the block, else 0.
pub const LABEL_Z: usize = 5;
/// 1 where the label lies in the block, else 0.
pub const LABEL_SEEN: usize = 6;
/// How many real vocabulary entries the block held.
pub const COUNT: usize = 7;
/// The largest `z` (-inf for none; NaN where an entry is NaN or +inf).
pub const MAX: usize = 8;
/// Rows that add under a common maximum.
pub const SUMMED: usize = 8;
/// Rows of the statistics tensor.
pub const STAT_ROWS: usize = 9;

/// Entries of one token's saved tensor for the block backward, in order:
/// `lse` at the scales `1, k, 1/k` over the selection (the top-K or the full
/// vocabulary), `lse` over the full vocabulary at scale 1, the entropy, the
/// top-K threshold pair (value, index; `-inf`, `-1` without a top-K), and 1
/// where the label is selected (else 0).
pub const SAVED: usize = 8;

/// One token's block statistics ([`SUM1`]..[`MAX`]).
pub type Stats = [f64; STAT_ROWS];

/// The statistics of nothing: no entries, maximum -inf.
pub const EMPTY: Stats = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, f64::NEG_INFINITY];

/// A top-K candidate: `z` and its vocabulary index.
pub type Cand = (f64, i64);

/// An empty candidate slot (never selected).
pub const NO_CAND: Cand = (f64::NAN, -1);

/// What one block row needs besides its entries.
#[derive(Debug, Clone, Copy)]
pub struct BlockRow {
    /// `1/T` of the token.
    pub inv_t: f64,
    /// The scale `k`.
    pub k: f64,
    /// The vocabulary index of the block's first entry.
    pub offset: usize,
    /// The label's index inside the block, where it lies there.
    pub label: Option<usize>,
    /// Whether the token has a label at all (in this block or another).
    pub labeled: bool,
    /// The vocabulary top-K (None: the full vocabulary).
    pub topk: Option<usize>,
    /// Whether `z` is computed in f32 (the fused kernels) rather than f64.
    pub f32_z: bool,
}

impl BlockRow {
    /// `z` of a logit, as the block pass and the block backward compute it.
    #[inline(always)]
    pub fn z(&self, x: f64) -> f64 {
        if self.f32_z {
            (x as f32 * self.inv_t as f32) as f64
        } else {
            x * self.inv_t
        }
    }
}

/// The statistics and top-K candidates of one block row (`row`: its real
/// entries only). f32 rows go through the fused kernel ([`RowAcc`]); f64 rows
/// are read twice in f64. `cands` receives the block's best `K` in selection order.
pub fn block_stats_row<T: Element>(row: &ArrayView1<'_, T>, b: &BlockRow, buf: &mut Vec<f32>, cands: &mut Vec<Cand>) -> Stats {
    let mut s = EMPTY;
    s[COUNT] = row.len() as f64;
    cands.clear();
    if let Some(y) = b.label {
        s[LABEL_Z] = b.z(row[y].to_f64());
        s[LABEL_SEEN] = 1.0;
    }
    if row.is_empty() {
        return s;
    }
    if b.f32_z {
        let mut acc = RowAcc::new(b.inv_t as f32, b.k as f32, true);
        let mut heap: Vec<(f32, usize)> = Vec::new();
        let mut zb: Vec<f32> = Vec::new();
        for_each_block_f32(row, buf, |base, x| {
            acc.push(x);
            if let Some(kk) = b.topk {
                let inv_t = b.inv_t as f32;
                zb.clear();
                zb.extend(x.iter().map(|&v| v * inv_t));
                topk_push(&zb, base, kk, &mut heap);
            }
        });
        let st = acc.finish();
        s[MAX] = st.max as f64;
        s[SUM1] = st.sum1;
        s[SUMK] = st.sumk;
        s[SUMINVK] = st.suminvk;
        s[W] = st.w;
        s[SUM2] = st.sum2;
        cands.extend(heap.iter().map(|&(v, i)| (v as f64, (b.offset + i) as i64)));
    } else {
        let mut m = f64::NEG_INFINITY;
        let mut bad = false;
        let mut heap: Vec<(f64, usize)> = Vec::new();
        for (i, v) in row.iter().enumerate() {
            let z = b.z(v.to_f64());
            bad |= z.is_nan() || z == f64::INFINITY;
            if z > m {
                m = z;
            }
            if let Some(kk) = b.topk {
                topk_push(&[z], i, kk, &mut heap);
            }
        }
        cands.extend(heap.iter().map(|&(v, i)| (v, (b.offset + i) as i64)));
        if bad {
            s[..=SUM2].fill(f64::NAN);
            s[MAX] = f64::NAN;
            return s;
        }
        if m == f64::NEG_INFINITY {
            return s; // every entry -inf: probability 0
        }
        let k = b.k;
        for v in row.iter() {
            let d = b.z(v.to_f64()) - m;
            let e = d.exp();
            s[SUM1] += e;
            if e > 0.0 {
                s[W] += e * d;
            }
            s[SUMK] += (k * d).exp();
            s[SUMINVK] += (d / k).exp();
            s[SUM2] += (2.0 * d).exp();
        }
        s[MAX] = m;
    }
    s
}

/// `s` rescaled to the maximum `m` (`m >= s[MAX]`, or NaN): the sums become
/// relative to `m`, `w` by `w' = e^f (w + f sum_1)` with `f = s[MAX] - m`.
pub fn rebase(s: &mut Stats, m: f64, k: f64) {
    if m.is_nan() || s[MAX].is_nan() {
        s[..=SUM2].fill(f64::NAN);
        s[MAX] = f64::NAN;
        return;
    }
    if s[MAX] == m {
        return;
    }
    if s[MAX] > f64::NEG_INFINITY && s[SUM1] > 0.0 {
        let f = s[MAX] - m; // < 0
        let e1 = f.exp();
        s[W] = e1 * (s[W] + f * s[SUM1]);
        s[SUM1] *= e1;
        s[SUMK] *= (k * f).exp();
        s[SUMINVK] *= (f / k).exp();
        s[SUM2] *= (2.0 * f).exp();
    }
    s[MAX] = m;
}

/// The larger of two maxima, NaN if either is NaN.
#[inline]
pub fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `a` merged with `b` (associative and commutative up to rounding).
pub fn merge(a: &mut Stats, b: &Stats, k: f64) {
    let m = max_nan(a[MAX], b[MAX]);
    let mut b = *b;
    rebase(a, m, k);
    rebase(&mut b, m, k);
    for r in 0..SUMMED {
        a[r] += b[r];
    }
}

/// The best `kk` of two candidate lists (each in selection order, empty slots
/// NaN): larger `z` first, ties to the lower index; NaN never selected.
/// Written into `out` (`kk` slots, empty ones [`NO_CAND`]).
pub fn merge_candidates(a: &[Cand], b: &[Cand], out: &mut [Cand]) {
    let mut all: Vec<Cand> = a.iter().chain(b).copied().filter(|c| !c.0.is_nan() && c.1 >= 0).collect();
    all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    all.dedup_by_key(|c| c.1);
    for (i, o) in out.iter_mut().enumerate() {
        *o = all.get(i).copied().unwrap_or(NO_CAND);
    }
}

/// One token's results of a finish: the columns, entropy and sum of squared
/// probabilities, and what the block backward needs ([`SAVED`] entries).
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// The label's log-prob at `1, k, 1/k` (0 without a label).
    pub cols: [f64; 3],
    /// `H(softmax(z))`.
    pub entropy: f64,
    /// `sum_i softmax(z)_i^2`.
    pub sum_sq: f64,
    /// The saved entries.
    pub saved: [f64; SAVED],
}

/// The split forward's outputs from a token's merged statistics and (with a
/// top-K) its merged candidates (docs/math.md#vocabulary-blocks).
pub fn finish_row(s: &Stats, cands: Option<&[Cand]>, label: Option<usize>, k: f64) -> Finished {
    let m = s[MAX];
    let entropy = s[SUM1].ln() - s[W] / s[SUM1];
    let sum_sq = s[SUM2] / (s[SUM1] * s[SUM1]);
    let scales = [1.0, k, 1.0 / k];
    let sums = [s[SUM1], s[SUMK], s[SUMINVK]];
    let lse_full = m + s[SUM1].ln();
    let mut saved = [0.0; SAVED];
    saved[3] = lse_full;
    saved[4] = entropy;
    saved[5] = f64::NEG_INFINITY;
    saved[6] = -1.0;
    let mut cols = [0.0; 3];
    let zy = s[LABEL_Z];
    match cands {
        None => {
            for j in 0..3 {
                saved[j] = scales[j] * m + sums[j].ln();
                cols[j] = scales[j] * (zy - m) - sums[j].ln();
            }
            saved[7] = 1.0;
        }
        Some(c) => {
            let (tv, ti) = c.iter().rev().find(|c| !c.0.is_nan()).copied().unwrap_or((f64::INFINITY, -1));
            saved[5] = tv;
            saved[6] = ti as f64;
            let mk = c.first().map_or(f64::NAN, |c| c.0);
            for j in 0..3 {
                let sum: f64 = c.iter().filter(|c| !c.0.is_nan()).map(|&(z, _)| (scales[j] * (z - mk)).exp()).sum();
                saved[j] = scales[j] * mk + sum.ln();
                cols[j] = scales[j] * (zy - mk) - sum.ln();
            }
            let selected = label.is_some_and(|y| zy > tv || (zy == tv && (y as i64) <= ti));
            saved[7] = if selected { 1.0 } else { 0.0 };
            if label.is_some() && !selected && !m.is_nan() {
                cols = [OUTSIDE_TOPK_LOGPROB; 3];
            }
        }
    }
    if m.is_nan() {
        cols = [f64::NAN; 3];
    }
    if label.is_none() {
        cols = [0.0; 3];
    }
    Finished { cols, entropy, sum_sq, saved }
}

/// The backward of one block row (docs/math.md#vocabulary-blocks): `out`
/// (the block's real entries) from `src` (its logits, or `out` itself in
/// place), the token's saved entries, the columns' gradients `g` and the
/// entropy's `e`. Entries are read once and written once.
pub fn block_grad_row<T: Element>(
    src: Option<&ArrayView1<'_, T>>,
    out: &mut ArrayViewMut1<'_, T>,
    b: &BlockRow,
    saved: &[f64; SAVED],
    g: [f64; 3],
    e: f64,
) {
    let scales = [1.0, b.k, 1.0 / b.k];
    let live = b.labeled && saved[7] == 1.0 && g.iter().any(|&v| v != 0.0);
    let (tv, ti) = (saved[5], saved[6]);
    let topk = b.topk.is_some();
    let inv_t = b.inv_t;
    let mut terms = [(0.0, 0.0, 0.0); 3]; // (c, lse_c, c*g/T)
    let mut onehot = 0.0;
    if live {
        for j in 0..3 {
            if g[j] != 0.0 {
                let f = scales[j] * inv_t * g[j];
                terms[j] = (scales[j], saved[j], f);
                onehot += f;
            }
        }
    }
    let (lse_full, h) = (saved[3], saved[4]);
    let fe = e * inv_t;
    let label = b.label;
    let offset = b.offset as f64;
    let at = |i: usize, x: f64| -> f64 {
        let z = b.z(x);
        let mut gi = if Some(i) == label { onehot } else { 0.0 };
        if live && (!topk || z > tv || (z == tv && offset + i as f64 <= ti)) {
            for &(c, lse, f) in &terms {
                if f != 0.0 {
                    gi -= f * (c * z - lse).exp();
                }
            }
        }
        if fe != 0.0 {
            let lp = z - lse_full;
            let p = lp.exp();
            if p > 0.0 {
                gi -= fe * p * (lp + h);
            }
        }
        gi
    };
    match src {
        Some(r) => out.iter_mut().zip(r.iter()).enumerate().for_each(|(i, (o, v))| *o = T::from_f64(at(i, v.to_f64()))),
        None => out.iter_mut().enumerate().for_each(|(i, o)| *o = T::from_f64(at(i, o.to_f64()))),
    }
}
