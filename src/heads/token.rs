//! The token head (docs/math.md#token-head) for LLM policy updates: per-token
//! entropy, per-response top-`rho` ("forking token") entropy, the scale
//! decision, advantage scaling, and log-probs under the scaled logits.
//!
//! Two ways through it, with the same results bit for bit:
//! - one call ([`TokenHead::forward`], [`TokenHead::backward`]) from the logits
//!   to the scaled log-probs;
//! - the split forward (docs/math.md#split-token-forward):
//!   [`TokenHead::logprob_columns`] gives, per token, the entropy and the
//!   log-probs at the three scales the head may choose; [`TokenHead::decide`]
//!   chooses from per-token tensors alone (entropies, response ids, advantages),
//!   so that it can run inside a loss function that never sees the logits;
//!   [`TokenHead::columns_backward`] takes the gradient of whichever columns
//!   (and of the entropy) the loss used.
//!
//! The head validates its inputs and dispatches: f32, bf16 and f16 logits
//! to the fused kernels, f64 logits to f64 rows, both in
//! [`crate::kernels::token`]. No call reserves memory in proportion to a row's
//! width: rows that are not contiguous f32 are read a block at a time.

use ndarray::{s, ArrayView1, ArrayViewD, ArrayViewMut1, ArrayViewMutD, Axis};

use crate::config::TokenConfig;
use crate::error::{bail, check_same_shape, Result};
use crate::kernels::token::{
    self as kernel, choose_scale, in_topk, response_entropies, scale_index, topk_ln_sums, topk_push, topk_result, RowAcc,
    OUTSIDE_TOPK_LOGPROB,
};
use crate::kernels::vmath::{load, softmax_entropy, store, BLOCK};
use crate::kernels::{parallel, Element};

/// An integer tensor view (labels, response ids) of either width.
#[derive(Debug, Clone)]
pub enum IndexView<'a> {
    /// 32-bit indices.
    I32(ArrayViewD<'a, i32>),
    /// 64-bit indices.
    I64(ArrayViewD<'a, i64>),
}

impl IndexView<'_> {
    /// The shape of the view.
    pub fn shape(&self) -> &[usize] {
        match self {
            IndexView::I32(a) => a.shape(),
            IndexView::I64(a) => a.shape(),
        }
    }

    /// The values in logical row-major order, widened to i64.
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            IndexView::I32(a) => a.iter().map(|&v| v as i64).collect(),
            IndexView::I64(a) => a.iter().copied().collect(),
        }
    }
}

impl<'a> From<ArrayViewD<'a, i32>> for IndexView<'a> {
    fn from(a: ArrayViewD<'a, i32>) -> Self {
        IndexView::I32(a)
    }
}

impl<'a> From<ArrayViewD<'a, i64>> for IndexView<'a> {
    fn from(a: ArrayViewD<'a, i64>) -> Self {
        IndexView::I64(a)
    }
}

/// The per-token outputs of [`TokenHead::forward`], each of the logits'
/// shape without its last axis; `None` for an output the caller does not
/// want (the same work is done; only the store is skipped).
pub struct TokenOutputs<'a, F> {
    /// `logp'_t = c_t*z_t[y_t] - logsumexp(c_t*z_t)` (0 for masked tokens).
    pub logprobs: Option<ArrayViewMutD<'a, F>>,
    /// `H_t = entropy(softmax(logits_t / T))` over the full vocabulary.
    pub entropy: Option<ArrayViewMutD<'a, F>>,
    /// The scale `c_t` in `{k, 1, 1/k}` (1 for masked tokens): the backward needs it.
    pub scale: Option<ArrayViewMutD<'a, F>>,
    /// `A_t / c_t` with advantage scaling, else `A_t`.
    pub advantages: Option<ArrayViewMutD<'a, F>>,
    /// Optional: the token's response entropy `Hresp` (0 for masked tokens).
    pub response_entropy: Option<ArrayViewMutD<'a, F>>,
}

/// The outputs of [`TokenHead::logprob_columns`]; `None` for one not wanted.
pub struct ColumnOutputs<'a, F> {
    /// `[..., 3]`: the label's log-prob at the scales `c = 1`, `k` and `1/k`
    /// (`c*z[y] - logsumexp(c*z)`, over the vocabulary top-K when the head has one;
    /// -1e4 at every scale for a label outside it; 0 for an ignored token).
    pub columns: Option<ArrayViewMutD<'a, F>>,
    /// `[...]`: `H(softmax(z))` over the full vocabulary.
    pub entropy: Option<ArrayViewMutD<'a, F>>,
    /// `[...]`: `sum_i softmax(z)_i^2` over the full vocabulary.
    pub sum_sq: Option<ArrayViewMutD<'a, F>>,
}

/// The outputs of [`TokenHead::decide`], each `[...]`; `None` for one not wanted.
pub struct DecideOutputs<'a, F> {
    /// The column the scale selects, as the log-prob `logp'` (0 for masked tokens).
    pub logprobs: Option<ArrayViewMutD<'a, F>>,
    /// The scale `c` in `{k, 1, 1/k}` (1 for masked tokens).
    pub scale: Option<ArrayViewMutD<'a, F>>,
    /// `A/c` with advantage scaling, else `A`.
    pub advantages: Option<ArrayViewMutD<'a, F>>,
    /// The token's response entropy `Hresp` (0 for masked tokens).
    pub response_entropy: Option<ArrayViewMutD<'a, F>>,
    /// The index of the chosen column: 0 for `c = 1`, 1 for `k`, 2 for `1/k` (0 for masked tokens).
    pub column: Option<IndexViewMut<'a>>,
}

/// A mutable integer tensor view (the chosen columns) of either width.
pub enum IndexViewMut<'a> {
    /// 32-bit indices.
    I32(ArrayViewMutD<'a, i32>),
    /// 64-bit indices.
    I64(ArrayViewMutD<'a, i64>),
}

impl IndexViewMut<'_> {
    /// The shape of the view.
    pub fn shape(&self) -> &[usize] {
        match self {
            IndexViewMut::I32(a) => a.shape(),
            IndexViewMut::I64(a) => a.shape(),
        }
    }

    /// Writes `values` in logical row-major order.
    fn store(&mut self, values: &[usize]) {
        match self {
            IndexViewMut::I32(a) => a.iter_mut().zip(values).for_each(|(o, &v)| *o = v as i32),
            IndexViewMut::I64(a) => a.iter_mut().zip(values).for_each(|(o, &v)| *o = v as i64),
        }
    }
}

impl<'a> From<ArrayViewMutD<'a, i64>> for IndexViewMut<'a> {
    fn from(a: ArrayViewMutD<'a, i64>) -> Self {
        IndexViewMut::I64(a)
    }
}

impl<'a> From<ArrayViewMutD<'a, i32>> for IndexViewMut<'a> {
    fn from(a: ArrayViewMutD<'a, i32>) -> Self {
        IndexViewMut::I32(a)
    }
}

/// The token head. Immutable; share it across threads freely.
#[derive(Debug, Clone)]
pub struct TokenHead {
    cfg: TokenConfig,
    threads: usize,
}

/// Rows that are not contiguous f32 are converted into a buffer for the
/// fused backward when they hold at most this many entries (4 MiB of f32 per
/// thread); wider ones take the streaming rows, a block at a time.
pub const GATHER_MAX: usize = 1 << 20;

/// The checked per-token inputs of a call.
struct Checked {
    n: usize,
    v: usize,
    /// The label of each token, `None` for a token whose log-prob is not computed
    /// (masked by its response id, or an ignored label of the split forward).
    labels: Vec<Option<usize>>,
    /// `1/T` of each token.
    inv_t: Vec<f64>,
}

/// One token's results of a forward row pass.
#[derive(Debug, Clone, Copy, Default)]
struct RowOut {
    entropy: f64,
    /// The label's log-prob at `c = 1`, `k`, `1/k` (0 without a label).
    cols: [f64; 3],
    sum_sq: f64,
}

/// One token's backward: the upstream gradient of each column (the scale it
/// was taken at, the gradient), and of the entropy.
#[derive(Debug, Clone, Copy)]
struct GradJob {
    label: usize,
    inv_t: f64,
    terms: [(f64, f64); 3],
    grad_entropy: f64,
}

impl GradJob {
    /// The single column term when it is the only gradient of the token.
    fn single(&self) -> Option<(f64, f64)> {
        let mut live = self.terms.iter().filter(|t| t.1 != 0.0);
        match (live.next(), live.next(), self.grad_entropy == 0.0) {
            (Some(&t), None, true) => Some(t),
            _ => None,
        }
    }

    fn is_zero(&self) -> bool {
        self.grad_entropy == 0.0 && self.terms.iter().all(|t| t.1 == 0.0)
    }
}

impl TokenHead {
    /// Validates `cfg` and builds the head.
    pub fn new(cfg: TokenConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(TokenHead { cfg, threads: 0 })
    }

    /// Sets the number of threads (0 = `ERA_NUM_THREADS` or all cores).
    pub fn with_num_threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// The configured number of threads (0 = default).
    pub fn num_threads(&self) -> usize {
        self.threads
    }

    /// The configuration.
    pub fn config(&self) -> &TokenConfig {
        &self.cfg
    }

    /// The three scales `{1, k, 1/k}` in column order.
    fn scales(&self) -> [f64; 3] {
        [1.0, self.cfg.k, 1.0 / self.cfg.k]
    }

    /// Whether the fused f32 kernels can represent the constants of every
    /// token: `1/T`, the scales `k` and `1/k`, and the backward's factor `k/T`
    /// must be finite, normal f32 numbers. Otherwise (a temperature below
    /// ~3e-39, `k` beyond ~3e38, or `k/T` beyond it) f32 inputs take the f64 rows.
    fn f32_kernels(&self, inv_t: &[f64]) -> bool {
        let k = self.cfg.k;
        let normal = |v: f64| (v as f32).is_normal();
        normal(k) && normal(1.0 / k) && inv_t.iter().all(|&i| normal(i) && normal(k * i))
    }

    fn effective_topk(&self, v: usize) -> Option<usize> {
        match self.cfg.vocab_topk {
            0 => None,
            k if k >= v => None,
            k => Some(k),
        }
    }

    /// Rank, vocabulary and the per-token inputs' shapes; then, once every shape
    /// is known to be right, the scratch reservation, the labels, the response ids
    /// (`ids`: the one-call head's masking; `None`: the split forward, where a
    /// negative label marks an ignored token) and the temperatures.
    fn check_inputs<T, F: Element>(
        &self,
        logits: &ArrayViewD<'_, T>,
        labels: &IndexView<'_>,
        ids: Option<&IndexView<'_>>,
        temperature: Option<&ArrayViewD<'_, F>>,
        backward: bool,
    ) -> Result<Checked> {
        check_logits_rank(logits)?;
        let batch = &logits.shape()[..logits.ndim() - 1];
        let v = logits.shape()[logits.ndim() - 1];
        if v == 0 {
            bail!(InvalidShape, "logits must have a vocabulary of at least 1 entry, got V = 0");
        }
        check_same_shape("labels", labels.shape(), "logits without its last axis", batch)?;
        if let Some(ids) = ids {
            check_same_shape("response_ids", ids.shape(), "logits without its last axis", batch)?;
        }
        if let Some(t) = temperature {
            check_same_shape("temperature", t.shape(), "logits without its last axis", batch)?;
        }
        // per-token vectors (labels, ids, temperatures, statistics, outputs) and
        // per-thread buffers of at most a row of GATHER_MAX entries and the top-K
        let n: usize = batch.iter().product();
        crate::kernels::check_input_size(n.saturating_mul(v), std::mem::size_of::<T>(), "the logits")?;
        let threads = parallel::resolve_threads(self.threads);
        // (a backward converts rows that are not contiguous f32 whole when they are at
        // most GATHER_MAX wide, with their gradient; the rest is read a block at a time)
        let rows = if backward && v <= GATHER_MAX { v.saturating_mul(8) } else { BLOCK * 4 };
        let per_thread = rows.saturating_add(self.cfg.vocab_topk.min(v).saturating_mul(32));
        crate::kernels::reserve(n.saturating_mul(256).saturating_add(per_thread.saturating_mul(threads)), "token-head buffers")?;
        let ys = labels.to_vec();
        let mut out = Vec::with_capacity(n);
        match ids {
            Some(ids) => {
                for (t, (&y, r)) in ys.iter().zip(ids.to_vec()).enumerate() {
                    if r < -1 {
                        bail!(InvalidValue, "response_ids[{t}] = {r}: ids must be >= 0, or -1 for masked tokens");
                    }
                    if r < 0 {
                        out.push(None);
                        continue;
                    }
                    if !(0..v as i64).contains(&y) {
                        bail!(InvalidValue, "labels[{t}] = {y} is outside the vocabulary [0, {v}) (token is not masked)");
                    }
                    out.push(Some(y as usize));
                }
            }
            None => {
                for (t, &y) in ys.iter().enumerate() {
                    if y >= v as i64 {
                        bail!(
                            InvalidValue,
                            "labels[{t}] = {y} is outside the vocabulary [0, {v}) (a negative label marks a token to ignore)"
                        );
                    }
                    out.push(if y < 0 { None } else { Some(y as usize) });
                }
            }
        }
        let inv_t = match temperature {
            None => vec![1.0 / self.cfg.temperature; n],
            Some(t) => {
                let mut inv = Vec::with_capacity(n);
                for (i, v) in t.iter().enumerate() {
                    let tv = v.to_f64();
                    if !(tv.is_finite() && tv > 0.0) {
                        bail!(InvalidValue, "temperature[{i}] = {tv}: temperatures must be finite and > 0");
                    }
                    inv.push(1.0 / tv);
                }
                inv
            }
        };
        Ok(Checked { n, v, labels: out, inv_t })
    }

    /// Every row of `logits` through the fused f32 kernels (f32, bf16, f16
    /// logits whose constants allow it) or the f64 rows: entropies, the three
    /// log-prob columns of tokens with a label and, with `squares`, the sums of
    /// squared probabilities.
    fn row_pass<T: Element>(&self, logits: &ArrayViewD<'_, T>, c: &Checked, squares: bool) -> Vec<RowOut> {
        let rows = parallel::rows(logits);
        let threads = parallel::resolve_threads(self.threads);
        let topk = self.effective_topk(c.v);
        if !T::IS_F64 && self.f32_kernels(&c.inv_t) {
            let per_row =
                |sc: &mut (Vec<f32>, Vec<(f32, usize)>), t: usize| self.fast_row(&rows[t], c.labels[t], c.inv_t[t], squares, topk, sc);
            parallel::map_init(threads, c.n * c.v, c.n, || (Vec::new(), Vec::new()), per_row)
        } else {
            let per_row = |heap: &mut Vec<(f64, usize)>, t: usize| self.exact_row(&rows[t], c.labels[t], c.inv_t[t], squares, topk, heap);
            parallel::map_init(threads, c.n * c.v, c.n, Vec::new, per_row)
        }
    }

    /// One row through the fused f32 kernel: one read, a block at a time where
    /// the row is not contiguous f32.
    fn fast_row<T: Element>(
        &self,
        row: &ArrayView1<'_, T>,
        label: Option<usize>,
        inv_t: f64,
        squares: bool,
        topk: Option<usize>,
        scratch: &mut (Vec<f32>, Vec<(f32, usize)>),
    ) -> RowOut {
        let (buf, heap) = scratch;
        let k = self.cfg.k;
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
        let scales = self.scales();
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
    fn exact_row<T: Element>(
        &self,
        row: &ArrayView1<'_, T>,
        label: Option<usize>,
        inv_t: f64,
        squares: bool,
        topk: Option<usize>,
        heap: &mut Vec<(f64, usize)>,
    ) -> RowOut {
        let k = self.cfg.k;
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
        let scales = self.scales();
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

    /// The shapes of a one-call forward: logits of rank >= 2, the advantages and every
    /// output wanted of the logits' batch shape.
    fn check_one_call_shapes<T, F>(logits: &ArrayViewD<'_, T>, advantages: &ArrayViewD<'_, F>, out: &TokenOutputs<'_, F>) -> Result<()> {
        check_logits_rank(logits)?;
        let batch = &logits.shape()[..logits.ndim() - 1];
        check_same_shape("advantages", advantages.shape(), "logits without its last axis", batch)?;
        Self::check_out_shape(
            batch,
            &[
                ("logprobs", &out.logprobs),
                ("entropy", &out.entropy),
                ("scale", &out.scale),
                ("advantages_out", &out.advantages),
                ("response_entropy", &out.response_entropy),
            ],
        )
    }

    fn check_out_shape<F>(batch: &[usize], named: &[(&str, &Option<ArrayViewMutD<'_, F>>)]) -> Result<()> {
        for (name, o) in named {
            if let Some(o) = o {
                check_same_shape(name, o.shape(), "logits without its last axis", batch)?;
            }
        }
        Ok(())
    }

    /// Forward: `logits` `[..., V]`, `labels`, `response_ids`, `advantages`
    /// and every output of shape `[...]`. See docs/math.md#token-head.
    ///
    /// f32, bf16 and f16 logits take the fused kernel (one read of each row,
    /// f32 arithmetic, f64 sums across blocks, rows split across threads);
    /// f64 logits take f64 rows (two reads of each row).
    pub fn forward<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        advantages: ArrayViewD<'_, F>,
        out: TokenOutputs<'_, F>,
    ) -> Result<()> {
        self.forward_t(logits, labels, response_ids, advantages, None, out)
    }

    /// [`TokenHead::forward`] with a temperature per token (`[...]`, each finite
    /// and `> 0`) in place of the configured one; `None` takes the configured one.
    pub fn forward_t<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        advantages: ArrayViewD<'_, F>,
        temperature: Option<ArrayViewD<'_, F>>,
        out: TokenOutputs<'_, F>,
    ) -> Result<()> {
        // every shape before any scratch memory is reserved
        Self::check_one_call_shapes(&logits, &advantages, &out)?;
        let c = self.check_inputs(&logits, &labels, Some(&response_ids), temperature.as_ref(), false)?;
        let rows = self.row_pass(&logits, &c, false);
        // the decision reads the entropies as the split forward's callers hold them
        // (rounded to the output dtype), so that both ways give the same bits
        let h: Vec<f64> = rows.iter().map(|r| F::from_f64(r.entropy).to_f64()).collect();
        let ids = response_ids.to_vec();
        let adv: Vec<f64> = advantages.iter().map(|a| a.to_f64()).collect();
        let d = self.decide_values(&h, &ids, &adv);
        let logp: Vec<f64> = (0..c.n).map(|t| if ids[t] < 0 { 0.0 } else { rows[t].cols[d.column[t]] }).collect();
        let TokenOutputs { logprobs, entropy, scale, advantages: adv_out, response_entropy } = out;
        store_opt(logprobs, &logp);
        store_opt(entropy, &rows.iter().map(|r| r.entropy).collect::<Vec<_>>());
        store_opt(scale, &d.scale);
        store_opt(adv_out, &d.advantages);
        store_opt(response_entropy, &d.hresp);
        Ok(())
    }

    /// The split forward's first half (docs/math.md#split-token-forward): for
    /// every token of `logits` `[..., V]` with its label (`labels` `[...]`, int32
    /// or int64; a negative label marks a token to ignore, whose columns are 0),
    /// at its temperature (`temperature` `[...]`, or the configured one), the
    /// label's log-prob at the three scales `{1, k, 1/k}` (`columns` `[..., 3]`),
    /// the entropy and the sum of squared probabilities. One read of each row,
    /// as in [`TokenHead::forward`]; each column is bit for bit the log-prob the
    /// one-call forward gives a token whose scale is that column's.
    pub fn logprob_columns<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        temperature: Option<ArrayViewD<'_, F>>,
        out: ColumnOutputs<'_, F>,
    ) -> Result<()> {
        check_logits_rank(&logits)?;
        let batch = logits.shape()[..logits.ndim() - 1].to_vec();
        Self::check_out_shape(&batch, &[("entropy", &out.entropy), ("sum_sq", &out.sum_sq)])?;
        if let Some(cols) = &out.columns {
            let mut want = batch.clone();
            want.push(3);
            check_same_shape("columns", cols.shape(), "logits with a last axis of 3", &want)?;
        }
        let c = self.check_inputs(&logits, &labels, None, temperature.as_ref(), false)?;
        let rows = self.row_pass(&logits, &c, out.sum_sq.is_some());
        let ColumnOutputs { columns, entropy, sum_sq } = out;
        if let Some(mut cols) = columns {
            let flat: Vec<f64> = rows.iter().flat_map(|r| r.cols).collect();
            parallel::store_values(&mut cols, &flat);
        }
        store_opt(entropy, &rows.iter().map(|r| r.entropy).collect::<Vec<_>>());
        store_opt(sum_sq, &rows.iter().map(|r| r.sum_sq).collect::<Vec<_>>());
        Ok(())
    }

    /// The split forward's second half (docs/math.md#split-token-forward): the
    /// scale decision from per-token tensors alone. `entropy`, `response_ids`
    /// and `advantages` are `[...]` (ids: `>= 0`, or -1 for a masked token);
    /// `columns` `[..., 3]`, needed only for `logprobs`, are
    /// [`TokenHead::logprob_columns`]'s. Given the same entropies (as that call
    /// stores them) the outputs are those of [`TokenHead::forward`], bit for bit.
    pub fn decide<F: Element>(
        &self,
        entropy: ArrayViewD<'_, F>,
        response_ids: IndexView<'_>,
        advantages: ArrayViewD<'_, F>,
        columns: Option<ArrayViewD<'_, F>>,
        out: DecideOutputs<'_, F>,
    ) -> Result<()> {
        let batch = entropy.shape().to_vec();
        check_same_shape("response_ids", response_ids.shape(), "entropy", &batch)?;
        check_same_shape("advantages", advantages.shape(), "entropy", &batch)?;
        let named = [
            ("logprobs", &out.logprobs),
            ("scale", &out.scale),
            ("advantages_out", &out.advantages),
            ("response_entropy", &out.response_entropy),
        ];
        for (name, o) in named {
            if let Some(o) = o {
                check_same_shape(name, o.shape(), "entropy", &batch)?;
            }
        }
        if let Some(o) = &out.column {
            check_same_shape("column", o.shape(), "entropy", &batch)?;
        }
        let cols = match (&columns, &out.logprobs) {
            (Some(cols), _) => {
                let mut want = batch.clone();
                want.push(3);
                check_same_shape("columns", cols.shape(), "entropy with a last axis of 3", &want)?;
                Some(cols)
            }
            (None, Some(_)) => bail!(InvalidArgument, "logprobs_out needs the columns of era_token_logprob_columns"),
            (None, None) => None,
        };
        let n: usize = batch.iter().product();
        crate::kernels::reserve(n.saturating_mul(96), "per-token decision buffers")?;
        let ids = response_ids.to_vec();
        for (t, &r) in ids.iter().enumerate() {
            if r < -1 {
                bail!(InvalidValue, "response_ids[{t}] = {r}: ids must be >= 0, or -1 for masked tokens");
            }
        }
        let h: Vec<f64> = entropy.iter().map(|v| v.to_f64()).collect();
        let adv: Vec<f64> = advantages.iter().map(|v| v.to_f64()).collect();
        let d = self.decide_values(&h, &ids, &adv);
        let DecideOutputs { logprobs, scale, advantages: adv_out, response_entropy, column } = out;
        if let (Some(cols), Some(lp)) = (cols, logprobs) {
            let flat: Vec<f64> = cols.iter().map(|v| v.to_f64()).collect();
            let logp: Vec<f64> = (0..n).map(|t| if ids[t] < 0 { 0.0 } else { flat[3 * t + d.column[t]] }).collect();
            store_opt(Some(lp), &logp);
        }
        store_opt(scale, &d.scale);
        store_opt(adv_out, &d.advantages);
        store_opt(response_entropy, &d.hresp);
        if let Some(mut o) = column {
            o.store(&d.column);
        }
        Ok(())
    }

    /// The decision of every token from its entropy, response id and advantage.
    fn decide_values(&self, h: &[f64], ids: &[i64], adv: &[f64]) -> Decision {
        let hresp = response_entropies(h, ids, self.cfg.top_fraction);
        let scale: Vec<f64> = (0..h.len()).map(|t| if ids[t] >= 0 { choose_scale(&self.cfg, adv[t], hresp[t]) } else { 1.0 }).collect();
        let column = scale.iter().map(|&s| scale_index(s, self.cfg.k)).collect();
        let advantages = adv.iter().zip(&scale).map(|(&a, &s)| if self.cfg.advantage_scaling { a / s } else { a }).collect();
        Decision { hresp, scale, column, advantages }
    }

    /// The straightforward forward (two reads of each row, f64 arithmetic,
    /// one thread, a buffer of the row's width): the reference the fused kernel
    /// is tested and benchmarked against.
    pub fn forward_reference<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        advantages: ArrayViewD<'_, F>,
        out: TokenOutputs<'_, F>,
    ) -> Result<()> {
        // every shape before any scratch memory is reserved
        Self::check_one_call_shapes(&logits, &advantages, &out)?;
        let c = self.check_inputs::<T, F>(&logits, &labels, Some(&response_ids), None, false)?;
        crate::kernels::reserve(c.v.saturating_mul(16), "a reference row")?;
        let inv_t = 1.0 / self.cfg.temperature;
        let last = Axis(logits.ndim() - 1);
        let mut z = vec![0.0; c.v];

        // pass 1: entropies
        let mut h = Vec::with_capacity(c.n);
        for row in logits.lanes(last) {
            load(&mut z, row.iter());
            z.iter_mut().for_each(|x| *x *= inv_t);
            h.push(softmax_entropy(&z));
        }
        let hf: Vec<f64> = h.iter().map(|&v| F::from_f64(v).to_f64()).collect();
        let ids = response_ids.to_vec();
        let adv: Vec<f64> = advantages.iter().map(|a| a.to_f64()).collect();
        let d = self.decide_values(&hf, &ids, &adv);

        // pass 2: log-probs at the chosen scale
        let topk = self.effective_topk(c.v);
        let (mut heap, mut mask) = (Vec::new(), Vec::new());
        let mut logp = Vec::with_capacity(c.n);
        for (t, row) in logits.lanes(last).into_iter().enumerate() {
            let Some(y) = c.labels[t] else {
                logp.push(0.0);
                continue;
            };
            load(&mut z, row.iter());
            z.iter_mut().for_each(|x| *x *= inv_t);
            logp.push(kernel::reference_logprob_row(&z, y, d.scale[t], topk, &mut heap, &mut mask));
        }
        let TokenOutputs { logprobs, entropy, scale, advantages: adv_out, response_entropy } = out;
        store_opt(logprobs, &logp);
        store_opt(entropy, &h);
        store_opt(scale, &d.scale);
        store_opt(adv_out, &d.advantages);
        store_opt(response_entropy, &d.hresp);
        Ok(())
    }

    /// Backward: `d logits_t = (c_t/T) * (onehot(y_t) - softmax(c_t*z_t)) * g_t`
    /// (restricted to the top-K with `vocab_topk`; zero for masked tokens and
    /// for labels outside the top-K). `scale` is the forward's `scale` output.
    ///
    /// f32, bf16 and f16 logits take the vectorised kernel (rows split across
    /// threads; each row is read from memory once, its repeated passes hit the
    /// cache, and the gradient is written once); f64 logits, and rows wider than
    /// [`GATHER_MAX`] that are not contiguous f32, take streaming rows (three
    /// reads of the row where it lies, no buffer of its width).
    pub fn backward<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
        grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.backward_t(logits, labels, response_ids, None, scale, grad_logprobs, grad_logits)
    }

    /// [`TokenHead::backward`] at a temperature per token (`[...]`, as given to
    /// [`TokenHead::forward_t`]); `None` takes the configured one.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_t<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        temperature: Option<ArrayViewD<'_, F>>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
        grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.one_call_backward(Some(logits), labels, response_ids, temperature, scale, grad_logprobs, grad_logits)
    }

    /// [`TokenHead::backward`] with the gradient written over the logits:
    /// `logits_grad` holds the logits on entry and their gradient on return,
    /// the same values [`TokenHead::backward`] writes into a separate
    /// buffer, bit for bit. Each row is read before it is overwritten, so
    /// the call reads and writes the logits' memory once and needs no buffer
    /// of their size; a training step can afford it because the logits are
    /// dead after their backward. On an error nothing has been written.
    pub fn backward_in_place<T: Element, F: Element>(
        &self,
        logits_grad: ArrayViewMutD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
    ) -> Result<()> {
        self.backward_in_place_t(logits_grad, labels, response_ids, None, scale, grad_logprobs)
    }

    /// [`TokenHead::backward_in_place`] at a temperature per token.
    pub fn backward_in_place_t<T: Element, F: Element>(
        &self,
        logits_grad: ArrayViewMutD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        temperature: Option<ArrayViewD<'_, F>>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
    ) -> Result<()> {
        self.one_call_backward(None, labels, response_ids, temperature, scale, grad_logprobs, logits_grad)
    }

    #[allow(clippy::too_many_arguments)]
    fn one_call_backward<T: Element, F: Element>(
        &self,
        logits: Option<ArrayViewD<'_, T>>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        temperature: Option<ArrayViewD<'_, F>>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
        grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        let c = {
            let lv = match &logits {
                Some(l) => l.view(),
                None => grad_logits.view(),
            };
            check_logits_rank(&lv)?;
            let batch = &lv.shape()[..lv.ndim() - 1];
            check_same_shape("scale", scale.shape(), "logits without its last axis", batch)?;
            check_same_shape("grad_logprobs", grad_logprobs.shape(), "logits without its last axis", batch)?;
            check_same_shape("grad_logits", grad_logits.shape(), "logits", lv.shape())?;
            let c = self.check_inputs(&lv, &labels, Some(&response_ids), temperature.as_ref(), true)?;
            c
        };
        let sc: Vec<f64> = scale.iter().map(|v| v.to_f64()).collect();
        for (t, &s) in sc.iter().enumerate() {
            if !(s.is_finite() && s > 0.0) {
                bail!(InvalidValue, "scale[{t}] = {s}: scales must be finite and > 0 (pass the forward's scale output)");
            }
        }
        let g: Vec<f64> = grad_logprobs.iter().map(|v| v.to_f64()).collect();
        let jobs: Vec<Option<GradJob>> = (0..c.n)
            .map(|t| {
                c.labels[t].map(|label| GradJob {
                    label,
                    inv_t: c.inv_t[t],
                    terms: [(sc[t], g[t]), (1.0, 0.0), (1.0, 0.0)],
                    grad_entropy: 0.0,
                })
            })
            .collect();
        self.run_backward(logits, &c, &jobs, grad_logits)
    }

    /// The split forward's backward (docs/math.md#split-token-backward): the
    /// gradient of the logits from the gradients of the columns
    /// (`grad_columns` `[..., 3]`) and, optionally, of the entropies
    /// (`grad_entropy` `[...]`), at the temperatures of the forward. A token
    /// whose only gradient is one column's gets, bit for bit, what
    /// [`TokenHead::backward`] gives it at that column's scale; ignored tokens
    /// (negative labels) get the entropy's gradient only.
    pub fn columns_backward<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        temperature: Option<ArrayViewD<'_, F>>,
        grad_columns: Option<ArrayViewD<'_, F>>,
        grad_entropy: Option<ArrayViewD<'_, F>>,
        grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.split_backward(Some(logits), labels, temperature, grad_columns, grad_entropy, grad_logits)
    }

    /// [`TokenHead::columns_backward`] with the gradient written over the
    /// logits (as [`TokenHead::backward_in_place`]). On an error nothing has been written.
    pub fn columns_backward_in_place<T: Element, F: Element>(
        &self,
        logits_grad: ArrayViewMutD<'_, T>,
        labels: IndexView<'_>,
        temperature: Option<ArrayViewD<'_, F>>,
        grad_columns: Option<ArrayViewD<'_, F>>,
        grad_entropy: Option<ArrayViewD<'_, F>>,
    ) -> Result<()> {
        self.split_backward(None, labels, temperature, grad_columns, grad_entropy, logits_grad)
    }

    fn split_backward<T: Element, F: Element>(
        &self,
        logits: Option<ArrayViewD<'_, T>>,
        labels: IndexView<'_>,
        temperature: Option<ArrayViewD<'_, F>>,
        grad_columns: Option<ArrayViewD<'_, F>>,
        grad_entropy: Option<ArrayViewD<'_, F>>,
        grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        let c = {
            let lv = match &logits {
                Some(l) => l.view(),
                None => grad_logits.view(),
            };
            check_logits_rank(&lv)?;
            let batch = lv.shape()[..lv.ndim() - 1].to_vec();
            if let Some(gc) = &grad_columns {
                let mut want = batch.clone();
                want.push(3);
                check_same_shape("grad_columns", gc.shape(), "logits with a last axis of 3", &want)?;
            }
            if let Some(ge) = &grad_entropy {
                check_same_shape("grad_entropy", ge.shape(), "logits without its last axis", &batch)?;
            }
            check_same_shape("grad_logits", grad_logits.shape(), "logits", lv.shape())?;
            self.check_inputs(&lv, &labels, None, temperature.as_ref(), true)?
        };
        let gc: Vec<f64> = grad_columns.map_or_else(|| vec![0.0; 3 * c.n], |g| g.iter().map(|v| v.to_f64()).collect());
        let ge: Vec<f64> = grad_entropy.map_or_else(|| vec![0.0; c.n], |g| g.iter().map(|v| v.to_f64()).collect());
        // the scales as the one-call backward receives them (the forward's scale
        // output, in the dtype of the call), so that a single column's gradient
        // is that backward's, bit for bit
        let scales = self.scales().map(|c| F::from_f64(c).to_f64());
        let jobs: Vec<Option<GradJob>> = (0..c.n)
            .map(|t| {
                let (label, cols) = match c.labels[t] {
                    Some(y) => (y, [gc[3 * t], gc[3 * t + 1], gc[3 * t + 2]]),
                    None => (usize::MAX, [0.0; 3]),
                };
                let terms = [(scales[0], cols[0]), (scales[1], cols[1]), (scales[2], cols[2])];
                Some(GradJob { label, inv_t: c.inv_t[t], terms, grad_entropy: ge[t] })
            })
            .collect();
        self.run_backward(logits, &c, &jobs, grad_logits)
    }

    /// Every row's gradient: zero rows for tokens without a gradient, the fused
    /// kernel for a single column term where it applies, the streaming rows otherwise.
    fn run_backward<T: Element>(
        &self,
        logits: Option<ArrayViewD<'_, T>>,
        c: &Checked,
        jobs: &[Option<GradJob>],
        mut grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        if logits.is_some() {
            advise_huge_pages(&mut grad_logits);
        }
        let fast = !T::IS_F64 && self.f32_kernels(&c.inv_t);
        let topk = self.effective_topk(c.v);
        let rows = logits.as_ref().map(parallel::rows);
        let mut grows = parallel::rows_mut(&mut grad_logits);
        let threads = parallel::resolve_threads(self.threads);
        type Scratch = (Vec<f32>, Vec<f32>, Vec<(f32, usize)>, Vec<(f64, usize)>);
        let per_row = |scratch: &mut Scratch, t: usize, grow: &mut ArrayViewMut1<'_, T>| {
            let (buf, gbuf, heap, heap64) = scratch;
            let job = match &jobs[t] {
                Some(j) if !j.is_zero() => j,
                _ => {
                    grow.fill(T::from_f32(0.0));
                    return;
                }
            };
            let src = rows.as_ref().map(|r| &r[t]);
            if let (true, Some((ct, g))) = (fast, job.single()) {
                let contiguous = match src {
                    Some(r) => r.as_slice().and_then(T::as_f32_slice).is_some() && grow.as_slice().and_then(T::as_f32_slice).is_some(),
                    None => grow.as_slice().and_then(T::as_f32_slice).is_some(),
                };
                if contiguous || c.v <= GATHER_MAX {
                    fused_grad_row(src, grow, job.label, job.inv_t, ct, g, topk, buf, gbuf, heap);
                    return;
                }
            }
            general_grad_row(src, grow, job, topk, heap64);
        };
        parallel::for_each_init(threads, c.n * c.v, &mut grows, || (Vec::new(), Vec::new(), Vec::new(), Vec::new()), per_row);
        Ok(())
    }

    /// The straightforward backward (f64, one thread, buffers of the row's
    /// width): the reference of the vectorised kernel.
    pub fn backward_reference<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
        mut grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        check_logits_rank(&logits)?;
        let batch = &logits.shape()[..logits.ndim() - 1];
        check_same_shape("scale", scale.shape(), "logits without its last axis", batch)?;
        check_same_shape("grad_logprobs", grad_logprobs.shape(), "logits without its last axis", batch)?;
        check_same_shape("grad_logits", grad_logits.shape(), "logits", logits.shape())?;
        let c = self.check_inputs::<T, F>(&logits, &labels, Some(&response_ids), None, false)?;
        crate::kernels::reserve(c.v.saturating_mul(16), "reference rows")?;
        let sc: Vec<f64> = scale.iter().map(|v| v.to_f64()).collect();
        for (t, &s) in sc.iter().enumerate() {
            if !(s.is_finite() && s > 0.0) {
                bail!(InvalidValue, "scale[{t}] = {s}: scales must be finite and > 0 (pass the forward's scale output)");
            }
        }
        let g: Vec<f64> = grad_logprobs.iter().map(|v| v.to_f64()).collect();
        advise_huge_pages(&mut grad_logits);
        let inv_t = 1.0 / self.cfg.temperature;
        let topk = self.effective_topk(c.v);
        let last = Axis(grad_logits.ndim() - 1);
        let mut z = vec![0.0; c.v];
        let mut out = vec![0.0; c.v];
        let mut heap = Vec::new();
        for (t, (row, mut grow)) in logits.lanes(last).into_iter().zip(grad_logits.lanes_mut(last)).enumerate() {
            let y = match c.labels[t] {
                Some(y) if g[t] != 0.0 => y,
                _ => {
                    grow.fill(T::from_f64(0.0));
                    continue;
                }
            };
            load(&mut z, row.iter());
            z.iter_mut().for_each(|x| *x *= inv_t);
            let ct = sc[t];
            kernel::reference_grad_row(&z, y, ct, ct * inv_t * g[t], topk, &mut heap, &mut out);
            store(grow.iter_mut(), &out);
        }
        Ok(())
    }

    /// Per-token entropy `H(softmax(logits / T))` (docs/math.md#categorical-entropy):
    /// `logits` `[..., V]` -> `entropy` `[...]`.
    pub fn entropy<T: Element, F: Element>(&self, logits: ArrayViewD<'_, T>, entropy: ArrayViewMutD<'_, F>) -> Result<()> {
        crate::heads::softmax::categorical_entropy_threads(logits, self.cfg.temperature, entropy, self.threads)
    }
}

/// The scale decision of a call, per token.
struct Decision {
    hresp: Vec<f64>,
    scale: Vec<f64>,
    /// Index of the scale in `{1, k, 1/k}`.
    column: Vec<usize>,
    advantages: Vec<f64>,
}

/// Stores `v` into `o` when the caller wants it.
fn store_opt<F: Element>(o: Option<ArrayViewMutD<'_, F>>, v: &[f64]) {
    if let Some(mut o) = o {
        parallel::store_values(&mut o, v);
    }
}

/// Calls `f(offset, block)` over a row as f32: the row itself when it is
/// contiguous f32, else blocks of [`BLOCK`] entries converted into `buf`.
fn for_each_block_f32<T: Element>(row: &ArrayView1<'_, T>, buf: &mut Vec<f32>, mut f: impl FnMut(usize, &[f32])) {
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
fn fused_grad_row<T: Element>(
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
            let thr = topk.map(|kk| kernel::topk_threshold(row, kk, heap));
            match thr {
                Some(th) if !in_topk(row[y], y, th) => row.fill(0.0),
                _ => kernel::token_row_grad_in_place(row, inv_t, ct, f, y, thr),
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
    let thr = topk.map(|kk| kernel::topk_threshold(x, kk, heap));
    if let Some(th) = thr {
        if !in_topk(x[y], y, th) {
            grow.fill(T::from_f32(0.0));
            return;
        }
    }
    match grow.as_slice_mut().and_then(T::as_f32_slice_mut) {
        Some(out) => kernel::token_row_grad(x, inv_t, ct, f, y, thr, out),
        None => {
            gbuf.resize(x.len(), 0.0);
            kernel::token_row_grad(x, inv_t, ct, f, y, thr, gbuf);
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
fn general_grad_row<T: Element>(
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
    let keep = |i: usize, z: f64| thr.map_or(true, |t| in_topk(z, i, t));
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

/// Fails unless `logits` has rank >= 2 (`[..., V]` with at least one batch axis).
fn check_logits_rank<T>(logits: &ArrayViewD<'_, T>) -> Result<()> {
    if logits.ndim() < 2 {
        bail!(InvalidShape, "logits must have rank >= 2 ([..., V]), got rank {}", logits.ndim());
    }
    Ok(())
}

/// The gradient of the logits, the one large output of the token head, onto
/// transparent huge pages where its memory is one block
/// ([`crate::kernels::advise_huge_pages`]): written in full by the backward,
/// it is often freshly allocated by a framework for every call.
fn advise_huge_pages<T>(grad_logits: &mut ArrayViewMutD<'_, T>) {
    if let Some(s) = grad_logits.as_slice_memory_order_mut() {
        crate::kernels::advise_huge_pages(s.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(s));
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
