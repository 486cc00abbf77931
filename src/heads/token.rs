//! The token head (ERA_MATH.md section 3) for LLM policy updates: per-token
//! entropy, per-response top-`rho` ("forking token") entropy, the scale
//! decision, advantage scaling, and log-probs under the scaled logits.
//!
//! This is the straightforward implementation: two reads of each logit row
//! in the forward (entropy, then log-prob at the chosen scale), one read and
//! one write in the backward, O(V) scratch per row and O(N) extra memory.

use std::collections::BTreeMap;

use ndarray::{ArrayViewD, ArrayViewMutD, Axis};

use crate::config::TokenConfig;
use crate::error::{bail, Result};
use crate::heads::check_same_shape;
use crate::kernels::{load, row_max, softmax_entropy, Element};

/// Log-prob given to a label outside the vocabulary top-K.
pub const OUTSIDE_TOPK_LOGPROB: f64 = -1e4;

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
/// shape without its last axis.
pub struct TokenOutputs<'a, F> {
    /// `logp'_t = c_t*z_t[y_t] - logsumexp(c_t*z_t)` (0 for masked tokens).
    pub logprobs: ArrayViewMutD<'a, F>,
    /// `H_t = entropy(softmax(logits_t / T))` over the full vocabulary.
    pub entropy: ArrayViewMutD<'a, F>,
    /// The scale `c_t` in `{k, 1, 1/k}` (1 for masked tokens).
    pub scale: ArrayViewMutD<'a, F>,
    /// `A_t / c_t` with advantage scaling, else `A_t`.
    pub advantages: ArrayViewMutD<'a, F>,
    /// Optional: the token's response entropy `Hresp` (0 for masked tokens).
    pub response_entropy: Option<ArrayViewMutD<'a, F>>,
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
            // descending; NaN sorts first (as the largest), so it poisons the mean
            hs.sort_by(|a, b| b.total_cmp(a));
            let k = forking_count(rho, hs.len());
            (id, hs[..k].iter().sum::<f64>() / k as f64)
        })
        .collect();
    ids.iter().map(|id| if *id >= 0 { means[id] } else { 0.0 }).collect()
}

/// Marks the `k` largest entries of `z` (ties broken towards lower indices);
/// `idx` is scratch. Returns nothing; `mask[i]` is true for selected entries.
pub fn topk_mask(z: &[f64], k: usize, idx: &mut Vec<usize>, mask: &mut [bool]) {
    let v = z.len();
    idx.clear();
    idx.extend(0..v);
    let cmp = |a: &usize, b: &usize| z[*b].total_cmp(&z[*a]).then(a.cmp(b));
    if k < v {
        idx.select_nth_unstable_by(k - 1, cmp);
    }
    mask.fill(false);
    for &i in &idx[..k.min(v)] {
        mask[i] = true;
    }
}

/// `logsumexp(c*z)` over the entries where `mask` is true (all when `None`).
#[inline]
fn scaled_lse(z: &[f64], c: f64, mask: Option<&[bool]>) -> f64 {
    let sel = |i: usize| mask.map_or(true, |m| m[i]);
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
    if nan {
        return f64::NAN;
    }
    if m.is_infinite() {
        return m;
    }
    let mut s = 0.0;
    for (i, &v) in z.iter().enumerate() {
        if sel(i) {
            s += (c * v - m).exp();
        }
    }
    m + s.ln()
}

/// The token head. Immutable; share it across threads freely.
#[derive(Debug, Clone)]
pub struct TokenHead {
    cfg: TokenConfig,
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
        Ok(TokenHead { cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &TokenConfig {
        &self.cfg
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

    /// Forward: `logits` `[..., V]`, `labels`, `response_ids`, `advantages`
    /// and every output of shape `[...]`. See ERA_MATH.md section 3.
    pub fn forward<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        advantages: ArrayViewD<'_, F>,
        out: TokenOutputs<'_, F>,
    ) -> Result<()> {
        let c = self.check_inputs(&logits, &labels, &response_ids)?;
        let batch = &logits.shape()[..logits.ndim() - 1];
        check_same_shape("advantages", advantages.shape(), "logits without its last axis", batch)?;
        check_same_shape("logprobs", out.logprobs.shape(), "logits without its last axis", batch)?;
        check_same_shape("entropy", out.entropy.shape(), "logits without its last axis", batch)?;
        check_same_shape("scale", out.scale.shape(), "logits without its last axis", batch)?;
        check_same_shape("advantages_out", out.advantages.shape(), "logits without its last axis", batch)?;
        if let Some(r) = &out.response_entropy {
            check_same_shape("response_entropy", r.shape(), "logits without its last axis", batch)?;
        }
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
        let hresp = response_entropies(&h, &c.ids, self.cfg.top_fraction);
        let adv: Vec<f64> = advantages.iter().map(|a| a.to_f64()).collect();
        let scale: Vec<f64> = (0..c.n)
            .map(|t| if c.ids[t] >= 0 { choose_scale(&self.cfg, adv[t], hresp[t]) } else { 1.0 })
            .collect();

        // pass 2: log-probs at the chosen scale
        let topk = self.effective_topk(c.v);
        let mut idx = Vec::new();
        let mut mask = vec![true; c.v];
        let mut logp = Vec::with_capacity(c.n);
        for (t, row) in logits.lanes(last).into_iter().enumerate() {
            if c.ids[t] < 0 {
                logp.push(0.0);
                continue;
            }
            load(&mut z, row.iter());
            z.iter_mut().for_each(|x| *x *= inv_t);
            let y = c.labels[t] as usize;
            let ct = scale[t];
            let lp = match topk {
                None => ct * z[y] - scaled_lse(&z, ct, None),
                Some(k) => {
                    topk_mask(&z, k, &mut idx, &mut mask);
                    if mask[y] {
                        ct * z[y] - scaled_lse(&z, ct, Some(&mask))
                    } else {
                        OUTSIDE_TOPK_LOGPROB
                    }
                }
            };
            logp.push(lp);
        }

        let TokenOutputs { mut logprobs, mut entropy, scale: mut scale_out, advantages: mut adv_out, response_entropy } = out;
        let put = |dst: &mut ArrayViewMutD<'_, F>, src: &[f64]| {
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d = F::from_f64(s));
        };
        put(&mut logprobs, &logp);
        put(&mut entropy, &h);
        put(&mut scale_out, &scale);
        let a2: Vec<f64> = adv
            .iter()
            .zip(&scale)
            .map(|(&a, &s)| if self.cfg.advantage_scaling { a / s } else { a })
            .collect();
        put(&mut adv_out, &a2);
        if let Some(mut r) = response_entropy {
            put(&mut r, &hresp);
        }
        Ok(())
    }

    /// Backward: `d logits_t = (c_t/T) * (onehot(y_t) - softmax(c_t*z_t)) * g_t`
    /// (restricted to the top-K with `vocab_topk`; zero for masked tokens and
    /// for labels outside the top-K). `scale` is the forward's `scale` output.
    pub fn backward<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        response_ids: IndexView<'_>,
        scale: ArrayViewD<'_, F>,
        grad_logprobs: ArrayViewD<'_, F>,
        mut grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        let c = self.check_inputs(&logits, &labels, &response_ids)?;
        let batch = &logits.shape()[..logits.ndim() - 1];
        check_same_shape("scale", scale.shape(), "logits without its last axis", batch)?;
        check_same_shape("grad_logprobs", grad_logprobs.shape(), "logits without its last axis", batch)?;
        check_same_shape("grad_logits", grad_logits.shape(), "logits", logits.shape())?;
        let sc: Vec<f64> = scale.iter().map(|v| v.to_f64()).collect();
        for (t, &s) in sc.iter().enumerate() {
            if !(s.is_finite() && s > 0.0) {
                bail!(InvalidValue, "scale[{t}] = {s}: scales must be finite and > 0 (pass the forward's scale output)");
            }
        }
        let g: Vec<f64> = grad_logprobs.iter().map(|v| v.to_f64()).collect();
        let inv_t = 1.0 / self.cfg.temperature;
        let topk = self.effective_topk(c.v);
        let last = Axis(logits.ndim() - 1);
        let mut z = vec![0.0; c.v];
        let mut idx = Vec::new();
        let mut mask = vec![true; c.v];
        for (t, (row, mut grow)) in logits.lanes(last).into_iter().zip(grad_logits.lanes_mut(last)).enumerate() {
            let y = c.labels[t];
            if c.ids[t] < 0 || g[t] == 0.0 {
                grow.fill(T::from_f64(0.0));
                continue;
            }
            let y = y as usize;
            load(&mut z, row.iter());
            z.iter_mut().for_each(|x| *x *= inv_t);
            let ct = sc[t];
            if let Some(k) = topk {
                topk_mask(&z, k, &mut idx, &mut mask);
                if !mask[y] {
                    grow.fill(T::from_f64(0.0));
                    continue;
                }
            }
            let m = if topk.is_some() {
                z.iter().zip(&mask).filter(|(_, &s)| s).map(|(&v, _)| ct * v).fold(f64::NEG_INFINITY, f64::max)
            } else {
                ct * row_max(&z)
            };
            let mut s = 0.0;
            for (i, x) in z.iter_mut().enumerate() {
                *x = if mask[i] || topk.is_none() { (ct * *x - m).exp() } else { 0.0 };
                s += *x;
            }
            let f = ct * inv_t * g[t];
            for (i, (gz, &e)) in grow.iter_mut().zip(z.iter()).enumerate() {
                let onehot = if i == y { 1.0 } else { 0.0 };
                *gz = T::from_f64(f * (onehot - e / s));
            }
        }
        Ok(())
    }

    /// Per-token entropy `H(softmax(logits / T))`: `logits` `[..., V]` -> `entropy` `[...]`.
    pub fn entropy<T: Element, F: Element>(&self, logits: ArrayViewD<'_, T>, mut entropy: ArrayViewMutD<'_, F>) -> Result<()> {
        if logits.ndim() == 0 {
            bail!(InvalidShape, "logits must have rank >= 1 ([..., V]), got a scalar");
        }
        check_same_shape("entropy", entropy.shape(), "logits without its last axis", &logits.shape()[..logits.ndim() - 1])?;
        let inv_t = 1.0 / self.cfg.temperature;
        crate::kernels::reduce_rows(&logits, &mut entropy, |z| {
            let zs: Vec<f64> = z.iter().map(|x| x * inv_t).collect();
            softmax_entropy(&zs)
        });
        Ok(())
    }
}
