//! The token head's rows as the head reads them (docs/math.md#token-head,
//! #split-token-forward, #memory-of-a-row): a row where it lies (an ndarray
//! lane of any element type and layout), fed to the fused f32 kernels of
//! [`crate::kernels::token`] a block at a time, or read in f64 where it lies;
//! the fused backward of one column, and the streaming backward of any columns
//! and the entropy. No buffer of a row's width, but the fused backward's
//! conversion of rows of at most [`GATHER_MAX`] entries.

use ndarray::{s, ArrayView1, ArrayViewMut1};

use crate::kernels::token::{
    in_topk, token_row_grad, token_row_grad_in_place, topk_ln_sums, topk_push, topk_result, topk_threshold, RowAcc, OUTSIDE_TOPK_LOGPROB,
};
use crate::kernels::vmath::BLOCK;
use crate::kernels::Element;

/// Rows that are not contiguous f32 are converted into a buffer for the
/// fused backward when they hold at most this many entries (4 MiB of f32 per
/// thread); wider ones take the streaming rows, a block at a time.
pub const GATHER_MAX: usize = 1 << 20;

/// One token's results of a forward row pass.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RowOut {
    pub entropy: f64,
    /// The label's log-prob at `c = 1`, `k`, `1/k` (0 without a label).
    pub cols: [f64; 3],
    pub sum_sq: f64,
}

/// One token's backward: the upstream gradient of each column (the scale it
/// was taken at, the gradient), and of the entropy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GradJob {
    pub label: usize,
    pub inv_t: f64,
    pub terms: [(f64, f64); 3],
    pub grad_entropy: f64,
}

impl GradJob {
    /// The single column term when it is the only gradient of the token.
    pub fn single(&self) -> Option<(f64, f64)> {
        let mut live = self.terms.iter().filter(|t| t.1 != 0.0);
        match (live.next(), live.next(), self.grad_entropy == 0.0) {
            (Some(&t), None, true) => Some(t),
            _ => None,
        }
    }

    /// Whether the token has no gradient at all.
    pub fn is_zero(&self) -> bool {
        self.grad_entropy == 0.0 && self.terms.iter().all(|t| t.1 == 0.0)
    }
}

/// One row through the fused f32 kernel: one read, a block at a time where
/// the row is not contiguous f32.
pub(crate) fn fast_row<T: Element>(
    k: f64,
    row: &ArrayView1<'_, T>,
    label: Option<usize>,
    inv_t: f64,
    squares: bool,
    topk: Option<usize>,
    scratch: &mut (Vec<f32>, Vec<(f32, usize)>),
) -> RowOut {
    let (buf, heap) = scratch;
    let mut acc = RowAcc::new(inv_t as f32, k as f32, squares);
    let topk = topk.filter(|_| label.is_some());
    heap.clear();
    for_each_block_f32(row, buf, |base, x| {
        acc.push(x);
        if let Some(kk) = topk {
            topk_push(x, base, kk, heap);
        }
    });
    let st = acc.finish();
    let mut r = RowOut { entropy: st.entropy(), cols: [0.0; 3], sum_sq: if squares { st.sum_sq_probs() } else { 0.0 } };
    let Some(y) = label else {
        return r;
    };
    let m = st.max as f64;
    if m.is_nan() {
        r.cols = [f64::NAN; 3]; // a NaN or infinite logit in the row
        return r;
    }
    let xy = row[y].to_f32();
    let zy = (xy * inv_t as f32) as f64;
    let scales = [1.0, k, 1.0 / k];
    match topk {
        None => {
            for (col, &c) in r.cols.iter_mut().zip(&scales) {
                *col = c * (zy - m) - st.ln_sum(c, k);
            }
        }
        Some(_) if !in_topk(xy, y, topk_result(heap)) => r.cols = [OUTSIDE_TOPK_LOGPROB; 3],
        Some(_) => {
            if let Some((mk, lns)) = topk_ln_sums(heap, inv_t, k) {
                for ((col, &c), ln) in r.cols.iter_mut().zip(&scales).zip(lns) {
                    *col = c * (zy - mk) - ln;
                }
            }
        }
    }
    r
}

/// One row in f64, read twice from where it lies (the maximum and the
/// top-K, then the sums): no buffer of the row's width.
pub(crate) fn exact_row<T: Element>(
    k: f64,
    row: &ArrayView1<'_, T>,
    label: Option<usize>,
    inv_t: f64,
    squares: bool,
    topk: Option<usize>,
    heap: &mut Vec<(f64, usize)>,
) -> RowOut {
    let topk = topk.filter(|_| label.is_some());
    heap.clear();
    let mut m = f64::NEG_INFINITY;
    let mut nan = false;
    for (i, v) in row.iter().enumerate() {
        let z = v.to_f64() * inv_t;
        nan |= z.is_nan();
        if z > m {
            m = z;
        }
        if let Some(kk) = topk {
            topk_push(&[z], i, kk, heap);
        }
    }
    if nan || !m.is_finite() {
        let cols = if label.is_some() { [f64::NAN; 3] } else { [0.0; 3] };
        return RowOut { entropy: f64::NAN, cols, sum_sq: f64::NAN };
    }
    let (mut s1, mut w, mut sk, mut si, mut s2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for v in row.iter() {
        let d = v.to_f64() * inv_t - m;
        let e = d.exp();
        s1 += e;
        if e > 0.0 {
            w += e * d;
        }
        sk += (k * d).exp();
        si += (d / k).exp();
        if squares {
            s2 += (2.0 * d).exp();
        }
    }
    let mut r = RowOut { entropy: s1.ln() - w / s1, cols: [0.0; 3], sum_sq: if squares { s2 / (s1 * s1) } else { 0.0 } };
    let Some(y) = label else {
        return r;
    };
    let zy = row[y].to_f64() * inv_t;
    let scales = [1.0, k, 1.0 / k];
    match topk {
        None => {
            for ((col, &c), s) in r.cols.iter_mut().zip(&scales).zip([s1, sk, si]) {
                *col = c * (zy - m) - s.ln();
            }
        }
        Some(_) if !in_topk(zy, y, topk_result(heap)) => r.cols = [OUTSIDE_TOPK_LOGPROB; 3],
        Some(_) => {
            let mk = heap.first().map_or(m, |&(v, _)| v);
            for (col, &c) in r.cols.iter_mut().zip(&scales) {
                let s: f64 = heap.iter().map(|&(z, _)| (c * (z - mk)).exp()).sum();
                *col = c * (zy - mk) - s.ln();
            }
        }
    }
    r
}

/// Calls `f(offset, block)` over a row as f32: the row itself when it is
/// contiguous f32, else blocks of [`BLOCK`] entries converted into `buf`.
pub(crate) fn for_each_block_f32<T: Element>(row: &ArrayView1<'_, T>, buf: &mut Vec<f32>, mut f: impl FnMut(usize, &[f32])) {
    if let Some(sl) = row.as_slice() {
        if let Some(x) = T::as_f32_slice(sl) {
            f(0, x);
            return;
        }
        for (b, blk) in sl.chunks(BLOCK).enumerate() {
            buf.clear();
            T::extend_f32(blk, buf);
            f(b * BLOCK, buf);
        }
        return;
    }
    let n = row.len();
    let mut base = 0;
    while base < n {
        let end = (base + BLOCK).min(n);
        buf.clear();
        buf.extend(row.slice(s![base..end]).iter().map(|v| v.to_f32()));
        f(base, buf);
        base = end;
    }
}

/// The fused backward of one row with one column term `(c, g)`: the
/// vectorised kernel over the row as f32 (the row itself, or converted whole
/// into `buf`, at most [`GATHER_MAX`] entries). `src` None: in place.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_grad_row<T: Element>(
    src: Option<&ArrayView1<'_, T>>,
    grow: &mut ArrayViewMut1<'_, T>,
    y: usize,
    inv_t64: f64,
    ct64: f64,
    g: f64,
    topk: Option<usize>,
    buf: &mut Vec<f32>,
    gbuf: &mut Vec<f32>,
    heap: &mut Vec<(f32, usize)>,
) {
    let inv_t = inv_t64 as f32;
    let ct = ct64 as f32;
    let f = (ct64 * inv_t as f64 * g) as f32;
    if src.is_none() {
        // in place, straight over contiguous f32 rows
        if let Some(row) = grow.as_slice_mut().and_then(T::as_f32_slice_mut) {
            let thr = topk.map(|kk| topk_threshold(row, kk, heap));
            match thr {
                Some(th) if !in_topk(row[y], y, th) => row.fill(0.0),
                _ => token_row_grad_in_place(row, inv_t, ct, f, y, thr),
            }
            return;
        }
    }
    // the row as f32 (for an in-place row: converted into `buf`, so that the
    // gradient may overwrite it)
    let x: &[f32] = match src {
        Some(r) => row_f32(r, buf),
        None => {
            buf.clear();
            buf.extend(grow.iter().map(|v| v.to_f32()));
            &buf[..]
        }
    };
    let thr = topk.map(|kk| topk_threshold(x, kk, heap));
    if let Some(th) = thr {
        if !in_topk(x[y], y, th) {
            grow.fill(T::from_f32(0.0));
            return;
        }
    }
    match grow.as_slice_mut().and_then(T::as_f32_slice_mut) {
        Some(out) => token_row_grad(x, inv_t, ct, f, y, thr, out),
        None => {
            gbuf.resize(x.len(), 0.0);
            token_row_grad(x, inv_t, ct, f, y, thr, gbuf);
            match grow.as_slice_mut() {
                Some(o) => T::store_f32(gbuf, o),
                None => grow.iter_mut().zip(gbuf.iter()).for_each(|(o, &v)| *o = T::from_f32(v)),
            }
        }
    }
}

/// The streaming backward of one row (docs/math.md#split-token-backward), in
/// f64: the maximum and the top-K, then the sums, then the gradient, each a
/// read of the row where it lies (`src`, or `grow` itself in place: the last
/// pass reads each entry before it overwrites it). No buffer of the row's width.
pub(crate) fn general_grad_row<T: Element>(
    src: Option<&ArrayView1<'_, T>>,
    grow: &mut ArrayViewMut1<'_, T>,
    job: &GradJob,
    topk: Option<usize>,
    heap: &mut Vec<(f64, usize)>,
) {
    let inv_t = job.inv_t;
    let columns = job.terms.iter().any(|t| t.1 != 0.0);
    let topk = topk.filter(|_| columns);
    heap.clear();
    let mut m = f64::NEG_INFINITY;
    let mut nan = false;
    {
        let mut pass1 = |i: usize, x: f64| {
            let z = x * inv_t;
            nan |= z.is_nan();
            if z > m {
                m = z;
            }
            if let Some(kk) = topk {
                topk_push(&[z], i, kk, heap);
            }
        };
        match src {
            Some(r) => r.iter().enumerate().for_each(|(i, v)| pass1(i, v.to_f64())),
            None => grow.iter().enumerate().for_each(|(i, v)| pass1(i, v.to_f64())),
        }
    }
    let thr = topk.map(|_| topk_result(heap));
    let keep = |i: usize, z: f64| thr.is_none_or(|t| in_topk(z, i, t));
    let label_z = {
        let v = match src {
            Some(r) => r.get(job.label).map(|v| v.to_f64()),
            None => grow.get(job.label).map(|v| v.to_f64()),
        };
        v.map(|x| x * inv_t)
    };
    // the column terms live only where the label is a real entry inside the kept set
    let live = columns && label_z.is_some_and(|zy| keep(job.label, zy));
    let entropy_term = job.grad_entropy != 0.0;
    if !live && !entropy_term {
        // a label outside the top-K: its columns are constants (docs/math.md#vocabulary-top-k),
        // whatever else the row holds
        grow.fill(T::from_f64(0.0));
        return;
    }
    // a NaN or infinite logit, or no finite one, spoils what reads the whole row: the entropy,
    // and the columns without a top-K (entries outside a top-K are never read by its columns)
    let base = match thr {
        Some(_) => heap.first().map_or(m, |&(v, _)| v),
        None => m,
    };
    if ((nan || !m.is_finite()) && (entropy_term || topk.is_none())) || (live && !base.is_finite()) {
        grow.fill(T::from_f64(f64::NAN));
        return;
    }
    let mut sums = [0.0f64; 3];
    let (mut s1, mut w) = (0.0f64, 0.0f64);
    {
        let mut pass2 = |i: usize, x: f64| {
            let z = x * inv_t;
            if live && keep(i, z) {
                for (s, &(c, g)) in sums.iter_mut().zip(&job.terms) {
                    if g != 0.0 {
                        *s += (c * (z - base)).exp();
                    }
                }
            }
            let d = z - m;
            let e = d.exp();
            s1 += e;
            if e > 0.0 {
                w += e * d;
            }
        };
        match src {
            Some(r) => r.iter().enumerate().for_each(|(i, v)| pass2(i, v.to_f64())),
            None => grow.iter().enumerate().for_each(|(i, v)| pass2(i, v.to_f64())),
        }
    }
    // d logp_c / dx_i = (c/T) (onehot_i - softmax(c z)_i) over the kept entries;
    // d H / dx_i = -(1/T) p_i (ln p_i + H), p = softmax(z) over the full row
    let mut terms = [(0.0f64, 0.0f64, 0.0f64); 3]; // (c, ln sum, f)
    let mut onehot = 0.0;
    if live {
        for ((t, &(c, g)), s) in terms.iter_mut().zip(&job.terms).zip(sums) {
            if g != 0.0 {
                let f = c * inv_t * g;
                *t = (c, s.ln(), f);
                onehot += f;
            }
        }
    }
    let ln_s1 = s1.ln();
    let h = ln_s1 - w / s1;
    let fe = job.grad_entropy * inv_t;
    let at = |i: usize, z: f64| -> f64 {
        let mut gi = if i == job.label { onehot } else { 0.0 };
        if live && keep(i, z) {
            for &(c, ln_s, f) in &terms {
                if f != 0.0 {
                    gi -= f * (c * (z - base) - ln_s).exp();
                }
            }
        }
        if fe != 0.0 {
            let lp = z - m - ln_s1;
            let p = lp.exp();
            if p > 0.0 {
                gi -= fe * p * (lp + h);
            }
        }
        gi
    };
    match src {
        Some(r) => grow.iter_mut().zip(r.iter()).enumerate().for_each(|(i, (o, v))| *o = T::from_f64(at(i, v.to_f64() * inv_t))),
        None => grow.iter_mut().enumerate().for_each(|(i, o)| *o = T::from_f64(at(i, o.to_f64() * inv_t))),
    }
}

/// A row as contiguous f32: the row itself for contiguous f32 data, else
/// converted into `buf` (callers keep rows to [`GATHER_MAX`] entries).
fn row_f32<'a, T: Element>(row: &'a ArrayView1<'_, T>, buf: &'a mut Vec<f32>) -> &'a [f32] {
    if let Some(s) = row.as_slice().and_then(T::as_f32_slice) {
        return s;
    }
    buf.clear();
    match row.as_slice() {
        Some(s) => T::extend_f32(s, buf),
        None => buf.extend(row.iter().map(|v| v.to_f32())),
    }
    buf
}
