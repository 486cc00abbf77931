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

use ndarray::{ArrayViewD, ArrayViewMut1, ArrayViewMutD, Axis};

use crate::config::TokenConfig;
use crate::error::{bail, check_same_shape, Result};
use crate::kernels::token::{self as kernel, choose_scale, response_entropies, scale_index};
use crate::kernels::token_rows::{exact_row, fast_row, fused_grad_row, general_grad_row, GradJob, RowOut};
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

/// The token head. Immutable; share it across threads freely.
#[derive(Debug, Clone)]
pub struct TokenHead {
    cfg: TokenConfig,
    threads: usize,
}

pub use crate::kernels::token_rows::GATHER_MAX;
pub use block::{TopkMut, TopkView, VocabBlock};
pub use split::{ColumnOutputs, DecideOutputs, IndexViewMut};

mod block;
mod split;

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
        let inv_t = self.inv_temperatures(n, temperature)?;
        Ok(Checked { n, v, labels: out, inv_t })
    }

    /// `1/T` per token: from `temperature` (each finite and `> 0`), or the configured one.
    fn inv_temperatures<F: Element>(&self, n: usize, temperature: Option<&ArrayViewD<'_, F>>) -> Result<Vec<f64>> {
        match temperature {
            None => Ok(vec![1.0 / self.cfg.temperature; n]),
            Some(t) => t
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let tv = v.to_f64();
                    if !(tv.is_finite() && tv > 0.0) {
                        bail!(InvalidValue, "temperature[{i}] = {tv}: temperatures must be finite and > 0");
                    }
                    Ok(1.0 / tv)
                })
                .collect(),
        }
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
            let per_row = |sc: &mut (Vec<f32>, Vec<(f32, usize)>), t: usize| {
                fast_row(self.cfg.k, &rows[t], c.labels[t], c.inv_t[t], squares, topk, sc)
            };
            parallel::map_init(threads, c.n * c.v, c.n, || (Vec::new(), Vec::new()), per_row)
        } else {
            let per_row =
                |heap: &mut Vec<(f64, usize)>, t: usize| exact_row(self.cfg.k, &rows[t], c.labels[t], c.inv_t[t], squares, topk, heap);
            parallel::map_init(threads, c.n * c.v, c.n, Vec::new, per_row)
        }
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
