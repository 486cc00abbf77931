//! The token head (docs/math.md#token-head) for LLM policy updates: per-token
//! entropy, per-response top-`rho` ("forking token") entropy, the scale
//! decision, advantage scaling, and log-probs under the scaled logits.
//!
//! The head validates its inputs and dispatches: f32, bf16 and f16 logits
//! to the fused kernels, f64 logits to the reference rows, both in
//! [`crate::kernels::token`].

use ndarray::{ArrayViewD, ArrayViewMut1, ArrayViewMutD, Axis};

use crate::config::TokenConfig;
use crate::error::{bail, check_same_shape, Result};
use crate::kernels::token::{self as kernel, choose_scale, response_entropies, scale_index, topk_ln_sums, OUTSIDE_TOPK_LOGPROB};
use crate::kernels::vmath::{load, softmax_entropy, store};
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

struct Checked {
    n: usize,
    v: usize,
    labels: Vec<i64>,
    ids: Vec<i64>,
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

    /// Whether the fused f32 kernels can represent this head's constants:
    /// `1/T`, the scales `k` and `1/k`, and the backward's factor `k/T` must
    /// be finite, normal f32 numbers. Otherwise (a temperature below ~3e-39,
    /// `k` beyond ~3e38, or `k/T` beyond it) f32 inputs take the f64 kernels.
    fn f32_kernels(&self) -> bool {
        let (t, k) = (self.cfg.temperature, self.cfg.k);
        [1.0 / t, k, 1.0 / k, k / t].iter().all(|&v| (v as f32).is_normal())
    }

    fn effective_topk(&self, v: usize) -> Option<usize> {
        match self.cfg.vocab_topk {
            0 => None,
            k if k >= v => None,
            k => Some(k),
        }
    }

    fn check_inputs<T>(&self, logits: &ArrayViewD<'_, T>, labels: &IndexView<'_>, ids: &IndexView<'_>) -> Result<Checked> {
        if logits.ndim() < 2 {
            bail!(InvalidShape, "logits must have rank >= 2 ([..., V]), got rank {}", logits.ndim());
        }
        let batch = &logits.shape()[..logits.ndim() - 1];
        let v = logits.shape()[logits.ndim() - 1];
        if v == 0 {
            bail!(InvalidShape, "logits must have a vocabulary of at least 1 entry, got V = 0");
        }
        check_same_shape("labels", labels.shape(), "logits without its last axis", batch)?;
        check_same_shape("response_ids", ids.shape(), "logits without its last axis", batch)?;
        // per-token vectors (labels, ids, statistics, outputs) and per-thread row buffers
        let n: usize = batch.iter().product();
        let threads = parallel::resolve_threads(self.threads);
        crate::kernels::reserve(
            n.saturating_mul(256).saturating_add(crate::kernels::row_scratch_bytes(0, v, 3, threads)),
            "token-head buffers",
        )?;
        let labels = labels.to_vec();
        let ids = ids.to_vec();
        for (t, (&y, &r)) in labels.iter().zip(&ids).enumerate() {
            if r < -1 {
                bail!(InvalidValue, "response_ids[{t}] = {r}: ids must be >= 0, or -1 for masked tokens");
            }
            if r >= 0 && !(0..v as i64).contains(&y) {
                bail!(InvalidValue, "labels[{t}] = {y} is outside the vocabulary [0, {v}) (token is not masked)");
            }
        }
        Ok(Checked { n: labels.len(), v, labels, ids })
    }

    /// The per-response forking-token entropy, the advantages as f64 and the
    /// scale decision of every token, from the per-token entropies `h`.
    fn decide<F: Element>(&self, c: &Checked, h: &[f64], advantages: &ArrayViewD<'_, F>) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let hresp = response_entropies(h, &c.ids, self.cfg.top_fraction);
        let adv: Vec<f64> = advantages.iter().map(|a| a.to_f64()).collect();
        let scale: Vec<f64> = (0..c.n).map(|t| if c.ids[t] >= 0 { choose_scale(&self.cfg, adv[t], hresp[t]) } else { 1.0 }).collect();
        (hresp, adv, scale)
    }

    fn check_outputs<T, F>(&self, logits: &ArrayViewD<'_, T>, advantages: &ArrayViewD<'_, F>, out: &TokenOutputs<'_, F>) -> Result<()> {
        let batch = &logits.shape()[..logits.ndim() - 1];
        check_same_shape("advantages", advantages.shape(), "logits without its last axis", batch)?;
        let named = [
            ("logprobs", &out.logprobs),
            ("entropy", &out.entropy),
            ("scale", &out.scale),
            ("advantages_out", &out.advantages),
            ("response_entropy", &out.response_entropy),
        ];
        for (name, o) in named {
            if let Some(o) = o {
                check_same_shape(name, o.shape(), "logits without its last axis", batch)?;
            }
        }
        Ok(())
    }

    fn write_outputs<F: Element>(&self, out: TokenOutputs<'_, F>, logp: &[f64], h: &[f64], scale: &[f64], adv: &[f64], hresp: &[f64]) {
        let TokenOutputs { logprobs, entropy, scale: scale_out, advantages: adv_out, response_entropy } = out;
        let store = |o: Option<ArrayViewMutD<'_, F>>, v: &[f64]| {
            if let Some(mut o) = o {
                parallel::store_values(&mut o, v);
            }
        };
        store(logprobs, logp);
        store(entropy, h);
        store(scale_out, scale);
        if adv_out.is_some() {
            let a2: Vec<f64> = adv.iter().zip(scale).map(|(&a, &s)| if self.cfg.advantage_scaling { a / s } else { a }).collect();
            store(adv_out, &a2);
        }
        store(response_entropy, hresp);
    }

    /// Forward: `logits` `[..., V]`, `labels`, `response_ids`, `advantages`
    /// and every output of shape `[...]`. See docs/math.md#token-head.
    ///
    /// f32, bf16 and f16 logits take the fused kernel (one read of each row,
    /// f32 arithmetic, f64 sums across blocks, rows split across threads);
    /// f64 logits take [`TokenHead::forward_reference`].
    pub fn forward<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        advantages: ArrayViewD<'_, F>,
        out: TokenOutputs<'_, F>,
    ) -> Result<()> {
        if T::IS_F64 || !self.f32_kernels() {
            return self.forward_reference(logits, labels, response_ids, advantages, out);
        }
        // every shape before any scratch memory is reserved
        check_logits_rank(&logits)?;
        self.check_outputs(&logits, &advantages, &out)?;
        let c = self.check_inputs(&logits, &labels, &response_ids)?;
        let inv_t = 1.0 / self.cfg.temperature;
        let topk = self.effective_topk(c.v);
        let k = self.cfg.k;
        let rows = parallel::rows(&logits);
        let threads = parallel::resolve_threads(self.threads);
        let per_row = |scratch: &mut (Vec<f32>, Vec<(f32, usize)>), t: usize| -> FastRow {
            let (buf, heap) = scratch;
            let x = row_f32(&rows[t], buf);
            let st = kernel::token_row_stats(x, inv_t as f32, k as f32);
            let mut r = FastRow { stats: st, zy: 0.0, topk_ln: None };
            if c.ids[t] >= 0 {
                let y = c.labels[t] as usize;
                r.zy = (x[y] * inv_t as f32) as f64;
                if let Some(kk) = topk {
                    let thr = kernel::topk_threshold(x, kk, heap);
                    let inside = kernel::in_topk(x[y], y, thr);
                    r.topk_ln = Some(if inside { topk_ln_sums(heap, inv_t, k) } else { None });
                }
            }
            r
        };
        let fast: Vec<FastRow> = parallel::map_init(threads, c.n * c.v, c.n, || (Vec::new(), Vec::new()), per_row);
        let h: Vec<f64> = fast.iter().map(|r| r.stats.entropy()).collect();
        let (hresp, adv, scale) = self.decide(&c, &h, &advantages);
        let logp: Vec<f64> = (0..c.n)
            .map(|t| {
                if c.ids[t] < 0 {
                    return 0.0;
                }
                let r = &fast[t];
                let m = r.stats.max as f64;
                if m.is_nan() {
                    return f64::NAN; // a NaN or infinite logit in the row
                }
                let ct = scale[t];
                match r.topk_ln {
                    None => ct * (r.zy - m) - r.stats.ln_sum(ct, k),
                    Some(None) => OUTSIDE_TOPK_LOGPROB,
                    Some(Some((mk, lns))) => ct * (r.zy - mk) - lns[scale_index(ct, k)],
                }
            })
            .collect();
        self.write_outputs(out, &logp, &h, &scale, &adv, &hresp);
        Ok(())
    }

    /// The straightforward forward (two reads of each row, f64 arithmetic,
    /// one thread): the reference the fused kernel is tested and benchmarked
    /// against.
    pub fn forward_reference<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        advantages: ArrayViewD<'_, F>,
        out: TokenOutputs<'_, F>,
    ) -> Result<()> {
        // every shape before any scratch memory is reserved
        check_logits_rank(&logits)?;
        self.check_outputs(&logits, &advantages, &out)?;
        let c = self.check_inputs(&logits, &labels, &response_ids)?;
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
        let (hresp, adv, scale) = self.decide(&c, &h, &advantages);

        // pass 2: log-probs at the chosen scale
        let topk = self.effective_topk(c.v);
        let (mut heap, mut mask) = (Vec::new(), Vec::new());
        let mut logp = Vec::with_capacity(c.n);
        for (t, row) in logits.lanes(last).into_iter().enumerate() {
            if c.ids[t] < 0 {
                logp.push(0.0);
                continue;
            }
            load(&mut z, row.iter());
            z.iter_mut().for_each(|x| *x *= inv_t);
            logp.push(kernel::reference_logprob_row(&z, c.labels[t] as usize, scale[t], topk, &mut heap, &mut mask));
        }

        self.write_outputs(out, &logp, &h, &scale, &adv, &hresp);
        Ok(())
    }

    /// Backward: `d logits_t = (c_t/T) * (onehot(y_t) - softmax(c_t*z_t)) * g_t`
    /// (restricted to the top-K with `vocab_topk`; zero for masked tokens and
    /// for labels outside the top-K). `scale` is the forward's `scale` output.
    ///
    /// f32, bf16 and f16 logits take the vectorised kernel (rows split across
    /// threads; each row is read from memory once, its repeated passes hit the
    /// cache, and the gradient is written once); f64 logits take
    /// [`TokenHead::backward_reference`].
    pub fn backward<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
        grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.backward_rows(Some(logits), labels, response_ids, scale, grad_logprobs, grad_logits)
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
        self.backward_rows(None, labels, response_ids, scale, grad_logprobs, logits_grad)
    }

    /// The backward from `logits`, or in place from `grad_logits` itself when
    /// `logits` is None.
    fn backward_rows<T: Element, F: Element>(
        &self,
        logits: Option<ArrayViewD<'_, T>>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
        mut grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        if T::IS_F64 || !self.f32_kernels() {
            return self.reference_rows(logits, labels, response_ids, scale, grad_logprobs, grad_logits);
        }
        let (sc, g, c) = self.prepare_backward(logits.as_ref(), &mut grad_logits, &labels, &response_ids, &scale, &grad_logprobs)?;
        let inv_t = (1.0 / self.cfg.temperature) as f32;
        let topk = self.effective_topk(c.v);
        let rows = logits.as_ref().map(parallel::rows);
        let mut grows = parallel::rows_mut(&mut grad_logits);
        let threads = parallel::resolve_threads(self.threads);
        let per_row = |scratch: &mut (Vec<f32>, Vec<f32>, Vec<(f32, usize)>), t: usize, grow: &mut ArrayViewMut1<'_, T>| {
            let (buf, gbuf, heap) = scratch;
            if c.ids[t] < 0 || g[t] == 0.0 {
                grow.fill(T::from_f32(0.0));
                return;
            }
            let y = c.labels[t] as usize;
            let ct = sc[t] as f32;
            let f = (sc[t] * inv_t as f64 * g[t]) as f32;
            if rows.is_none() {
                // in place, straight over contiguous f32 rows
                if let Some(row) = grow.as_slice_mut().and_then(T::as_f32_slice_mut) {
                    let thr = topk.map(|kk| kernel::topk_threshold(row, kk, heap));
                    match thr {
                        Some(th) if !kernel::in_topk(row[y], y, th) => row.fill(0.0),
                        _ => kernel::token_row_grad_in_place(row, inv_t, ct, f, y, thr),
                    }
                    return;
                }
            }
            // the row as f32 (for an in-place row: converted into `buf`, so that
            // the gradient may overwrite it)
            let x = match &rows {
                Some(r) => row_f32(&r[t], buf),
                None => {
                    buf.clear();
                    buf.extend(grow.iter().map(|v| v.to_f32()));
                    &buf[..]
                }
            };
            let thr = topk.map(|kk| kernel::topk_threshold(x, kk, heap));
            if let Some(th) = thr {
                if !kernel::in_topk(x[y], y, th) {
                    grow.fill(T::from_f32(0.0));
                    return;
                }
            }
            match grow.as_slice_mut().and_then(T::as_f32_slice_mut) {
                Some(out) => kernel::token_row_grad(x, inv_t, ct, f, y, thr, out),
                None => {
                    gbuf.resize(c.v, 0.0);
                    kernel::token_row_grad(x, inv_t, ct, f, y, thr, gbuf);
                    match grow.as_slice_mut() {
                        Some(o) => T::store_f32(gbuf, o),
                        None => grow.iter_mut().zip(gbuf.iter()).for_each(|(o, &v)| *o = T::from_f32(v)),
                    }
                }
            }
        };
        parallel::for_each_init(threads, c.n * c.v, &mut grows, || (Vec::new(), Vec::new(), Vec::new()), per_row);
        Ok(())
    }

    /// Everything a backward checks, before any scratch memory is reserved (shapes, then
    /// labels and ids), and the huge-page advice for a separate gradient: returns the
    /// scales and upstream gradients as f64 and the checked labels and ids. `logits`
    /// None: the logits are `grad_logits` itself (in place).
    fn prepare_backward<T, F: Element>(
        &self,
        logits: Option<&ArrayViewD<'_, T>>,
        grad_logits: &mut ArrayViewMutD<'_, T>,
        labels: &IndexView<'_>,
        response_ids: &IndexView<'_>,
        scale: &ArrayViewD<'_, F>,
        grad_logprobs: &ArrayViewD<'_, F>,
    ) -> Result<(Vec<f64>, Vec<f64>, Checked)> {
        let (sc, g, c) = {
            let logits = match logits {
                Some(l) => l.view(),
                None => grad_logits.view(),
            };
            check_logits_rank(&logits)?;
            let batch = &logits.shape()[..logits.ndim() - 1];
            check_same_shape("scale", scale.shape(), "logits without its last axis", batch)?;
            check_same_shape("grad_logprobs", grad_logprobs.shape(), "logits without its last axis", batch)?;
            check_same_shape("grad_logits", grad_logits.shape(), "logits", logits.shape())?;
            let (sc, g) = Self::backward_scalars(scale, grad_logprobs)?;
            (sc, g, self.check_inputs(&logits, labels, response_ids)?)
        };
        if logits.is_some() {
            advise_huge_pages(grad_logits);
        }
        Ok((sc, g, c))
    }

    /// The scales (finite and > 0, checked) and the upstream gradients as f64.
    fn backward_scalars<F: Element>(scale: &ArrayViewD<'_, F>, grad_logprobs: &ArrayViewD<'_, F>) -> Result<(Vec<f64>, Vec<f64>)> {
        let sc: Vec<f64> = scale.iter().map(|v| v.to_f64()).collect();
        for (t, &s) in sc.iter().enumerate() {
            if !(s.is_finite() && s > 0.0) {
                bail!(InvalidValue, "scale[{t}] = {s}: scales must be finite and > 0 (pass the forward's scale output)");
            }
        }
        Ok((sc, grad_logprobs.iter().map(|v| v.to_f64()).collect()))
    }

    /// The straightforward backward (f64, one thread): the reference of the
    /// vectorised kernel.
    pub fn backward_reference<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
        grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.reference_rows(Some(logits), labels, response_ids, scale, grad_logprobs, grad_logits)
    }

    /// [`TokenHead::backward_reference`] from `logits`, or in place from
    /// `grad_logits` itself when `logits` is None (each row is loaded into
    /// f64 before it is overwritten).
    fn reference_rows<T: Element, F: Element>(
        &self,
        logits: Option<ArrayViewD<'_, T>>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
        mut grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        let (sc, g, c) = self.prepare_backward(logits.as_ref(), &mut grad_logits, &labels, &response_ids, &scale, &grad_logprobs)?;
        let inv_t = 1.0 / self.cfg.temperature;
        let topk = self.effective_topk(c.v);
        let last = Axis(grad_logits.ndim() - 1);
        let mut rows = logits.as_ref().map(|x| x.lanes(last).into_iter());
        let mut z = vec![0.0; c.v];
        let mut out = vec![0.0; c.v];
        let mut heap = Vec::new();
        for (t, mut grow) in grad_logits.lanes_mut(last).into_iter().enumerate() {
            let row = rows.as_mut().and_then(|r| r.next());
            if c.ids[t] < 0 || g[t] == 0.0 {
                grow.fill(T::from_f64(0.0));
                continue;
            }
            match row {
                Some(row) => load(&mut z, row.iter()),
                None => load(&mut z, grow.iter()),
            }
            z.iter_mut().for_each(|x| *x *= inv_t);
            let ct = sc[t];
            kernel::reference_grad_row(&z, c.labels[t] as usize, ct, ct * inv_t * g[t], topk, &mut heap, &mut out);
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

/// Fails unless `logits` has rank >= 2 (`[..., V]` with at least one batch axis).
fn check_logits_rank<T>(logits: &ArrayViewD<'_, T>) -> Result<()> {
    if logits.ndim() < 2 {
        bail!(InvalidShape, "logits must have rank >= 2 ([..., V]), got rank {}", logits.ndim());
    }
    Ok(())
}

/// Per-row results of the fused forward pass.
struct FastRow {
    stats: kernel::RowStats,
    /// `x[label] / T` (unmasked tokens).
    zy: f64,
    /// With a vocabulary top-K: `None` for a masked token, `Some(None)` when
    /// the label is outside the top-K, else the top-K maximum and
    /// `ln(sum(exp(c*(z - max))))` for `c` in `{1, k, 1/k}`.
    topk_ln: Option<Option<(f64, [f64; 3])>>,
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
/// converted into `buf`.
fn row_f32<'a, T: Element>(row: &'a ndarray::ArrayView1<'_, T>, buf: &'a mut Vec<f32>) -> &'a [f32] {
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
