//! The split token forward (docs/math.md#split-token-forward,
//! #split-token-backward) of [`TokenHead`]: the log-prob columns at the three
//! scales, the decision from per-token tensors, and the columns' backward. The
//! rows are the one-call head's ([`crate::kernels::token_rows`]); this module
//! holds what the split adds: its outputs, its checks and how it maps a loss's
//! gradients onto the rows.

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::{check_logits_rank, store_opt, IndexView, TokenHead};
use crate::error::{bail, check_same_shape, Result};
use crate::kernels::token_rows::GradJob;
use crate::kernels::{parallel, Element};

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

impl TokenHead {
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
}
