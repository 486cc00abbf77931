//! The token head over vocabulary blocks (docs/math.md#vocabulary-blocks): a
//! pass over one block of the logits `[..., V_block]` that leaves a few
//! statistics per token, their merge (across blocks of one process, or across
//! ranks that each hold a slice of the vocabulary), a finish that gives the
//! split forward's outputs, and a backward of each block from what the
//! finish saved. The rows are [`crate::kernels::token_block`]'s; this module
//! holds the checks, the layouts and the threads.

use ndarray::{ArrayViewD, ArrayViewMutD, Axis};

use super::{store_opt, ColumnOutputs, IndexView, TokenHead};
use crate::error::{bail, check_same_shape, Result};
use crate::kernels::token_block::{self as kb, BlockRow, Cand, Stats, MAX, SAVED, STAT_ROWS};
use crate::kernels::{parallel, Element};

/// Where a block of logits lies in the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VocabBlock {
    /// The vocabulary index of the block's first column.
    pub offset: usize,
    /// The whole (possibly padded) vocabulary `V`.
    pub vocab_size: usize,
    /// Entries at indices `>= vocab_valid` are padding, never read
    /// (`1 <= vocab_valid <= vocab_size`; `vocab_size` without padding).
    pub vocab_valid: usize,
}

/// The running top-K of a block pass: candidates `z` `[..., K]` and their
/// vocabulary indices `[..., K]`, in selection order (empty slots NaN, -1).
pub struct TopkMut<'a> {
    /// The candidates' `z = logits/T`.
    pub values: ArrayViewMutD<'a, f64>,
    /// Their vocabulary indices.
    pub index: ArrayViewMutD<'a, i64>,
}

/// Read-only [`TopkMut`].
pub struct TopkView<'a> {
    /// The candidates' `z = logits/T`.
    pub values: ArrayViewD<'a, f64>,
    /// Their vocabulary indices.
    pub index: ArrayViewD<'a, i64>,
}

impl TokenHead {
    /// The vocabulary top-K of a vocabulary of `valid` real entries, if any.
    pub fn block_topk(&self, valid: usize) -> Option<usize> {
        self.effective_topk(valid)
    }

    fn check_block(&self, block: &VocabBlock, width: usize) -> Result<()> {
        let VocabBlock { offset, vocab_size, vocab_valid } = *block;
        if vocab_valid == 0 || vocab_valid > vocab_size {
            bail!(InvalidArgument, "vocab_valid = {vocab_valid} must be in [1, vocab_size = {vocab_size}]");
        }
        if offset.checked_add(width).is_none_or(|end| end > vocab_size) {
            bail!(InvalidArgument, "a block of {width} entries at offset {offset} does not fit in the vocabulary of {vocab_size}");
        }
        Ok(())
    }

    /// Labels as vocabulary indices (None: ignored, a negative label), each below `valid`.
    fn block_labels(labels: &IndexView<'_>, valid: usize) -> Result<Vec<Option<usize>>> {
        labels
            .to_vec()
            .into_iter()
            .enumerate()
            .map(|(t, y)| {
                if y >= valid as i64 {
                    bail!(
                        InvalidValue,
                        "labels[{t}] = {y} is outside the real vocabulary [0, {valid}) (a negative label marks a token to ignore)"
                    );
                }
                Ok((y >= 0).then_some(y as usize))
            })
            .collect()
    }

    fn check_stats_shape(name: &str, shape: &[usize], batch: &[usize]) -> Result<()> {
        let mut want = vec![STAT_ROWS];
        want.extend_from_slice(batch);
        check_same_shape(name, shape, "[9, ...] (the statistics rows, then the tokens)", &want)
    }

    fn check_topk_shape(&self, k: Option<usize>, topk: Option<(&[usize], &[usize])>, batch: &[usize]) -> Result<()> {
        match (k, topk) {
            (None, None) => Ok(()),
            (Some(k), Some((v, i))) => {
                let mut want = batch.to_vec();
                want.push(k);
                check_same_shape("topk_values", v, "[..., K] (the tokens, then the head's vocab_topk)", &want)?;
                check_same_shape("topk_index", i, "[..., K] (the tokens, then the head's vocab_topk)", &want)
            }
            (None, Some(_)) => {
                bail!(InvalidArgument, "topk_values/topk_index given, but the head has no vocabulary top-K for this vocabulary")
            }
            (Some(k), None) => bail!(InvalidArgument, "the head's vocabulary top-K ({k}) needs topk_values and topk_index"),
        }
    }

    /// The block pass (docs/math.md#vocabulary-blocks): the statistics of the
    /// logits block `[..., V_block]` lying at `block.offset` of the vocabulary,
    /// for every token with its label (global index; negative: ignored) at its
    /// temperature, written into `stats` `[9, ...]` or, with `accumulate`,
    /// merged into what it holds; likewise the block's top-K candidates into
    /// `topk` when the head has a vocabulary top-K.
    #[allow(clippy::too_many_arguments)]
    pub fn block_stats<T: Element, F: Element>(
        &self,
        logits: ArrayViewD<'_, T>,
        labels: IndexView<'_>,
        temperature: Option<ArrayViewD<'_, F>>,
        block: VocabBlock,
        accumulate: bool,
        mut stats: ArrayViewMutD<'_, f64>,
        topk: Option<TopkMut<'_>>,
    ) -> Result<()> {
        super::check_logits_rank(&logits)?;
        let batch = logits.shape()[..logits.ndim() - 1].to_vec();
        let width = logits.shape()[logits.ndim() - 1];
        self.check_block(&block, width)?;
        check_same_shape("labels", labels.shape(), "logits without its last axis", &batch)?;
        if let Some(t) = &temperature {
            check_same_shape("temperature", t.shape(), "logits without its last axis", &batch)?;
        }
        Self::check_stats_shape("stats", stats.shape(), &batch)?;
        let kk = self.block_topk(block.vocab_valid);
        self.check_topk_shape(kk, topk.as_ref().map(|t| (t.values.shape(), t.index.shape())), &batch)?;
        let n: usize = batch.iter().product();
        crate::kernels::check_input_size(n.saturating_mul(width), std::mem::size_of::<T>(), "the logits")?;
        let threads = parallel::resolve_threads(self.threads);
        let per_thread = (crate::kernels::vmath::BLOCK * 8).saturating_add(kk.unwrap_or(0).saturating_mul(64));
        crate::kernels::reserve(n.saturating_mul(256).saturating_add(per_thread.saturating_mul(threads)), "block statistics")?;
        let labels = Self::block_labels(&labels, block.vocab_valid)?;
        let inv_t = self.inv_temperatures(n, temperature.as_ref())?;
        let real = block.vocab_valid.saturating_sub(block.offset).min(width);
        let f32_z = !T::IS_F64 && self.f32_kernels(&inv_t);
        let rows = parallel::rows(&logits);
        let (k, offset) = (self.cfg.k, block.offset);
        let per_row = |sc: &mut (Vec<f32>, Vec<Cand>), t: usize| {
            let label = labels[t].filter(|&y| (offset..offset + real).contains(&y)).map(|y| y - offset);
            let b = BlockRow { inv_t: inv_t[t], k, offset, label, labeled: labels[t].is_some(), topk: kk, f32_z };
            let row = rows[t].slice(ndarray::s![..real]);
            let s = kb::block_stats_row(&row, &b, &mut sc.0, &mut sc.1);
            (s, sc.1.clone())
        };
        let got = parallel::map_init(threads, n.saturating_mul(width), n, || (Vec::new(), Vec::new()), per_row);
        let mut cur = if accumulate { read_stats(&stats.view()) } else { vec![kb::EMPTY; n] };
        for (c, (s, _)) in cur.iter_mut().zip(&got) {
            kb::merge(c, s, k);
        }
        write_stats(&mut stats, &cur);
        if let (Some(kk), Some(mut tk)) = (kk, topk) {
            let old = if accumulate { read_cands(&tk.values.view(), &tk.index.view(), kk) } else { vec![vec![kb::NO_CAND; kk]; n] };
            let mut merged = vec![kb::NO_CAND; kk];
            let mut vals = Vec::with_capacity(n * kk);
            let mut idx = Vec::with_capacity(n * kk);
            for (o, (_, c)) in old.iter().zip(&got) {
                kb::merge_candidates(o, c, &mut merged);
                vals.extend(merged.iter().map(|c| c.0));
                idx.extend(merged.iter().map(|c| c.1));
            }
            parallel::store_values(&mut tk.values, &vals);
            tk.index.iter_mut().zip(idx).for_each(|(o, v)| *o = v);
        }
        Ok(())
    }

    /// Merges `other` (statistics `[9, ...]` and, with a top-K, candidates)
    /// into `stats`: the associative merge of docs/math.md#vocabulary-blocks,
    /// for blocks whose passes ran apart (other threads, other ranks).
    pub fn stats_merge(
        &self,
        mut stats: ArrayViewMutD<'_, f64>,
        other: ArrayViewD<'_, f64>,
        topk: Option<(TopkMut<'_>, TopkView<'_>)>,
    ) -> Result<()> {
        if stats.ndim() < 1 || stats.shape()[0] != STAT_ROWS {
            bail!(InvalidShape, "stats has shape {:?}; expected [9, ...]", stats.shape());
        }
        let batch = stats.shape()[1..].to_vec();
        Self::check_stats_shape("other", other.shape(), &batch)?;
        let k = self.cfg.k;
        let mut a = read_stats(&stats.view());
        for (x, y) in a.iter_mut().zip(read_stats(&other)) {
            kb::merge(x, &y, k);
        }
        if let Some((mut mine, theirs)) = topk {
            let shape = mine.values.shape().to_vec();
            let kk = *shape.last().unwrap_or(&0);
            if shape[..shape.len().saturating_sub(1)] != batch[..] {
                bail!(InvalidShape, "topk_values has shape {shape:?}; expected the tokens' shape {batch:?} and a last axis K");
            }
            for (name, s) in
                [("topk_index", mine.index.shape()), ("other_values", theirs.values.shape()), ("other_index", theirs.index.shape())]
            {
                check_same_shape(name, s, "topk_values", &shape)?;
            }
            let x = read_cands(&mine.values.view(), &mine.index.view(), kk);
            let y = read_cands(&theirs.values, &theirs.index, kk);
            let mut merged = vec![kb::NO_CAND; kk];
            let mut vals = Vec::with_capacity(x.len() * kk);
            let mut idx = Vec::with_capacity(x.len() * kk);
            for (p, q) in x.iter().zip(&y) {
                kb::merge_candidates(p, q, &mut merged);
                vals.extend(merged.iter().map(|c| c.0));
                idx.extend(merged.iter().map(|c| c.1));
            }
            parallel::store_values(&mut mine.values, &vals);
            mine.index.iter_mut().zip(idx).for_each(|(o, v)| *o = v);
        }
        write_stats(&mut stats, &a);
        Ok(())
    }

    /// Rescales `stats` `[9, ...]` to the per-token maximum `max` `[...]` (each
    /// at least the token's own, as a max-reduction across ranks gives it):
    /// afterwards the summed rows (0 to 7) of statistics rebased to one maximum
    /// add entry by entry, so that a sum-reduction merges them.
    pub fn stats_rebase(&self, mut stats: ArrayViewMutD<'_, f64>, max: ArrayViewD<'_, f64>) -> Result<()> {
        Self::check_stats_shape("stats", stats.shape(), max.shape())?;
        let mut a = read_stats(&stats.view());
        for (t, (s, &m)) in a.iter_mut().zip(max.iter()).enumerate() {
            if m < s[MAX] {
                bail!(InvalidValue, "max[{t}] = {m} is below the token's own maximum {}", s[MAX]);
            }
            kb::rebase(s, m, self.cfg.k);
        }
        write_stats(&mut stats, &a);
        Ok(())
    }

    /// The finish (docs/math.md#vocabulary-blocks): from merged statistics
    /// (and candidates), the split forward's outputs (`out`: the columns, the
    /// entropies, the sums of squared probabilities, as
    /// [`TokenHead::logprob_columns`] gives them for the whole logits) and
    /// `saved` `[..., 8]` for [`TokenHead::block_backward`]. Fails when the
    /// merged blocks did not cover the `vocab_valid` real entries exactly once,
    /// or a token's label was not seen.
    pub fn block_finish<F: Element>(
        &self,
        stats: ArrayViewD<'_, f64>,
        topk: Option<TopkView<'_>>,
        labels: IndexView<'_>,
        vocab_valid: usize,
        out: ColumnOutputs<'_, F>,
        saved: Option<ArrayViewMutD<'_, f64>>,
    ) -> Result<()> {
        let batch = labels.shape().to_vec();
        Self::check_stats_shape("stats", stats.shape(), &batch)?;
        if vocab_valid == 0 {
            bail!(InvalidArgument, "vocab_valid must be at least 1");
        }
        let kk = self.block_topk(vocab_valid);
        self.check_topk_shape(kk, topk.as_ref().map(|t| (t.values.shape(), t.index.shape())), &batch)?;
        Self::check_out_shape(&batch, &[("entropy", &out.entropy), ("sum_sq", &out.sum_sq)])?;
        let mut want3 = batch.clone();
        want3.push(3);
        if let Some(c) = &out.columns {
            check_same_shape("columns", c.shape(), "the tokens' shape with a last axis of 3", &want3)?;
        }
        let mut want_saved = batch.clone();
        want_saved.push(SAVED);
        if let Some(s) = &saved {
            check_same_shape("saved", s.shape(), "the tokens' shape with a last axis of 8", &want_saved)?;
        }
        let labels = Self::block_labels(&labels, vocab_valid)?;
        let st = read_stats(&stats);
        let cands = topk.as_ref().map(|t| read_cands(&t.values, &t.index, kk.unwrap_or(0)));
        for (t, s) in st.iter().enumerate() {
            if s[kb::COUNT] != vocab_valid as f64 {
                bail!(InvalidArgument, "token {t}: the merged blocks hold {} real entries; the vocabulary has {vocab_valid}", s[kb::COUNT]);
            }
            if labels[t].is_some() && s[kb::LABEL_SEEN] != 1.0 {
                bail!(InvalidArgument, "token {t}: its label was seen in {} blocks; expected 1", s[kb::LABEL_SEEN]);
            }
        }
        let k = self.cfg.k;
        let rows: Vec<kb::Finished> =
            (0..st.len()).map(|t| kb::finish_row(&st[t], cands.as_ref().map(|c| &c[t][..]), labels[t], k)).collect();
        let ColumnOutputs { columns, entropy, sum_sq } = out;
        store_opt(columns, &rows.iter().flat_map(|r| r.cols).collect::<Vec<_>>());
        store_opt(entropy, &rows.iter().map(|r| r.entropy).collect::<Vec<_>>());
        store_opt(sum_sq, &rows.iter().map(|r| r.sum_sq).collect::<Vec<_>>());
        store_opt(saved, &rows.iter().flat_map(|r| r.saved).collect::<Vec<_>>());
        Ok(())
    }

    /// The block backward (docs/math.md#vocabulary-blocks): the gradient of
    /// the logits block `[..., V_block]` at `block.offset` from the
    /// gradients of the columns (`grad_columns` `[..., 3]`) and of the
    /// entropies (`grad_entropy` `[...]`), with the finish's `saved` `[..., 8]`;
    /// no communication. `logits` None: the gradient is written over
    /// `grad_logits`, which holds the logits on entry (in place). Padding
    /// entries (at indices `>= vocab_valid`) get 0.
    #[allow(clippy::too_many_arguments)]
    pub fn block_backward<T: Element, F: Element>(
        &self,
        logits: Option<ArrayViewD<'_, T>>,
        labels: IndexView<'_>,
        temperature: Option<ArrayViewD<'_, F>>,
        block: VocabBlock,
        saved: ArrayViewD<'_, f64>,
        grad_columns: Option<ArrayViewD<'_, F>>,
        grad_entropy: Option<ArrayViewD<'_, F>>,
        mut grad_logits: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        let shape = grad_logits.shape().to_vec();
        if let Some(l) = &logits {
            super::check_logits_rank(l)?;
            check_same_shape("grad_logits", &shape, "logits", l.shape())?;
        } else {
            super::check_logits_rank(&grad_logits.view())?;
        }
        let batch = shape[..shape.len() - 1].to_vec();
        let width = shape[shape.len() - 1];
        self.check_block(&block, width)?;
        check_same_shape("labels", labels.shape(), "logits without its last axis", &batch)?;
        if let Some(t) = &temperature {
            check_same_shape("temperature", t.shape(), "logits without its last axis", &batch)?;
        }
        let mut want = batch.clone();
        want.push(SAVED);
        check_same_shape("saved", saved.shape(), "the tokens' shape with a last axis of 8", &want)?;
        want.pop();
        want.push(3);
        if let Some(g) = &grad_columns {
            check_same_shape("grad_columns", g.shape(), "the tokens' shape with a last axis of 3", &want)?;
        }
        if let Some(g) = &grad_entropy {
            check_same_shape("grad_entropy", g.shape(), "logits without its last axis", &batch)?;
        }
        let n: usize = batch.iter().product();
        crate::kernels::check_input_size(n.saturating_mul(width), std::mem::size_of::<T>(), "the logits")?;
        crate::kernels::reserve(n.saturating_mul(256), "block backward buffers")?;
        let labels = Self::block_labels(&labels, block.vocab_valid)?;
        let inv_t = self.inv_temperatures(n, temperature.as_ref())?;
        let sv: Vec<f64> = saved.iter().copied().collect();
        let gc: Vec<f64> = grad_columns.map_or_else(|| vec![0.0; 3 * n], |g| g.iter().map(|v| v.to_f64()).collect());
        let ge: Vec<f64> = grad_entropy.map_or_else(|| vec![0.0; n], |g| g.iter().map(|v| v.to_f64()).collect());
        let kk = self.block_topk(block.vocab_valid);
        let f32_z = !T::IS_F64 && self.f32_kernels(&inv_t);
        let real = block.vocab_valid.saturating_sub(block.offset).min(width);
        let (k, offset) = (self.cfg.k, block.offset);
        let src_rows = logits.as_ref().map(parallel::rows);
        let mut out_rows = parallel::rows_mut(&mut grad_logits);
        let threads = parallel::resolve_threads(self.threads);
        parallel::for_each_init(
            threads,
            n.saturating_mul(width),
            &mut out_rows,
            || (),
            |_, t, orow| {
                let label = labels[t].filter(|&y| (offset..offset + real).contains(&y)).map(|y| y - offset);
                let b = BlockRow { inv_t: inv_t[t], k, offset, label, labeled: labels[t].is_some(), topk: kk, f32_z };
                let mut saved_t = [0.0; SAVED];
                saved_t.copy_from_slice(&sv[SAVED * t..SAVED * (t + 1)]);
                let g = [gc[3 * t], gc[3 * t + 1], gc[3 * t + 2]];
                let (mut head, mut pad) = orow.view_mut().split_at(Axis(0), real);
                let src = src_rows.as_ref().map(|r| r[t].slice(ndarray::s![..real]));
                kb::block_grad_row(src.as_ref(), &mut head, &b, &saved_t, g, ge[t]);
                pad.fill(T::from_f64(0.0));
            },
        );
        Ok(())
    }
}

/// `[9, ...]` statistics as one [`Stats`] per token (row-major token order),
/// read in the tensor's logical order: row 0 of every token, then row 1, ...
fn read_stats(stats: &ArrayViewD<'_, f64>) -> Vec<Stats> {
    let n = stats.len() / STAT_ROWS;
    let flat: Vec<f64> = stats.iter().copied().collect();
    (0..n).map(|t| std::array::from_fn(|r| flat[r * n + t])).collect()
}

fn write_stats(stats: &mut ArrayViewMutD<'_, f64>, values: &[Stats]) {
    let n = values.len();
    if n == 0 {
        return;
    }
    for (i, o) in stats.iter_mut().enumerate() {
        *o = values[i % n][i / n];
    }
}

/// `[..., K]` candidates as one list per token.
fn read_cands(values: &ArrayViewD<'_, f64>, index: &ArrayViewD<'_, i64>, kk: usize) -> Vec<Vec<Cand>> {
    let v: Vec<f64> = values.iter().copied().collect();
    let i: Vec<i64> = index.iter().copied().collect();
    if kk == 0 {
        return vec![Vec::new(); v.len()];
    }
    v.chunks(kk).zip(i.chunks(kk)).map(|(a, b)| a.iter().copied().zip(b.iter().copied()).collect()).collect()
}
