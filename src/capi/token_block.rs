//! The token head over vocabulary blocks, in C (docs/math.md#vocabulary-blocks):
//! the block pass, the merge and rebase of its statistics, the finish and the
//! block backward. CPU tensors only in this version.

use std::ffi::c_void;

use crate::capi::calls::{check_outputs, expect_batch_shape, optional_input, with_float, with_logits};
use crate::capi::dlpack::{DLTensor, DType, Desc};
use crate::capi::head::{head_ref, EraHead};
use crate::capi::token::index_view;
use crate::capi::token_split::cpu_only;
use crate::capi::{ffi_boundary, EraStatus};
use crate::error::{bail, Result};
use crate::heads::token::{ColumnOutputs, TopkMut, TopkView, VocabBlock};

/// Rows of a token-statistics tensor (`[ERA_TOKEN_STATS_ROWS, ...]`, float64):
/// rows 0 to 7 add under a common maximum, row 8 is the maximum.
pub const ERA_TOKEN_STATS_ROWS: i64 = 9;

/// Entries per token of the tensor that `era_token_block_finish` saves for
/// `era_token_block_backward` (`[..., ERA_TOKEN_SAVED]`, float64).
pub const ERA_TOKEN_SAVED: i64 = 8;

/// The block's place in the vocabulary, checked for sign.
fn vocab_block(offset: i64, size: i64, valid: i64) -> Result<VocabBlock> {
    if offset < 0 || size < 1 || valid < 1 {
        bail!(
            InvalidArgument,
            "vocab_offset = {offset}, vocab_size = {size}, vocab_valid = {valid}: expected offset >= 0, size >= 1, valid >= 1"
        );
    }
    Ok(VocabBlock { offset: offset as usize, vocab_size: size as usize, vocab_valid: valid as usize })
}

/// Fails unless every given tensor is float64 (statistics, candidates' values, saved).
fn expect_f64(descs: &[&Desc<'_>]) -> Result<()> {
    descs.iter().try_for_each(|d| d.expect_dtype(DType::F64))
}

/// Fails unless every given tensor is int64 (the candidates' indices).
fn expect_i64(descs: &[&Desc<'_>]) -> Result<()> {
    descs.iter().try_for_each(|d| d.expect_dtype(DType::I64))
}

/// Both candidate tensors, or neither.
fn pair<'a>(v: Option<Desc<'a>>, i: Option<Desc<'a>>, what: &str) -> Result<Option<(Desc<'a>, Desc<'a>)>> {
    match (v, i) {
        (Some(v), Some(i)) => Ok(Some((v, i))),
        (None, None) => Ok(None),
        _ => bail!(InvalidArgument, "{what}: give both the values and the indices, or neither"),
    }
}

/// The block pass (docs/math.md#vocabulary-blocks): for every token of the
/// logits block `logits` `[..., V_block]` (columns `vocab_offset` to
/// `vocab_offset + V_block - 1` of a vocabulary of `vocab_size`, whose entries
/// at indices `>= vocab_valid` are padding and never read), with its label
/// `labels` `[...]` (int32/int64, an index into the whole vocabulary; negative:
/// ignored) at its temperature (`temperature` `[...]` float32/float64, or NULL
/// for the head's), the block's statistics in `stats` `[9, ...]` (float64,
/// `ERA_TOKEN_STATS_ROWS`): sums relative to the block's maximum for the
/// scales `1, k, 1/k`, the entropy's and the squared probabilities' sums, the
/// label's `z` where it lies in the block, the count of real entries, and the
/// maximum (row 8). With `accumulate` nonzero the block is merged into what
/// `stats` holds (a loop over blocks needs no other call); zero overwrites it.
///
/// When the head has a vocabulary top-K (`0 < vocab_topk < vocab_valid`),
/// `topk_values` `[..., K]` (float64: `z = logits/T`) and `topk_index` `[..., K]`
/// (int64: vocabulary indices) receive the K best entries seen (ties to the
/// lower index; an empty slot is NaN, -1); otherwise both must be NULL.
///
/// Memory: the outputs and O(N) bookkeeping; the block is read once (f32,
/// bf16, f16: the fused kernels; float64: twice, in f64).
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`, `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`,
/// `UNSUPPORTED_DEVICE` (CUDA tensors), `INVALID_LAYOUT`, `INVALID_ARGUMENT` (a
/// block outside the vocabulary, `vocab_valid` outside `[1, vocab_size]`, top-K
/// tensors given or missing against the head), `INVALID_VALUE` (a label `>=
/// vocab_valid`, a temperature not finite and `> 0`), `OUT_OF_MEMORY`.
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_block_stats(
    head: *const EraHead,
    logits: *const DLTensor,
    labels: *const DLTensor,
    temperature: *const DLTensor,
    vocab_offset: i64,
    vocab_size: i64,
    vocab_valid: i64,
    accumulate: i32,
    stats: *mut DLTensor,
    topk_values: *mut DLTensor,
    topk_index: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream;
        let t = head_ref(head)?.as_token("era_token_block_stats")?;
        let ld = Desc::new(logits, "logits")?;
        let yd = Desc::new(labels, "labels")?;
        let td = Desc::optional(temperature, "temperature")?;
        let sd = Desc::new(stats, "stats")?;
        let tk = pair(Desc::optional(topk_values, "topk_values")?, Desc::optional(topk_index, "topk_index")?, "topk")?;
        let block = vocab_block(vocab_offset, vocab_size, vocab_valid)?;
        let mut outs = vec![&sd];
        if let Some((v, i)) = &tk {
            outs.extend([v, i]);
        }
        check_outputs(&outs)?;
        let mut batch = vec![&yd];
        batch.extend(td.as_ref());
        expect_batch_shape(&ld, 2, &batch)?;
        let mut all = outs.clone();
        all.extend([&ld, &yd]);
        all.extend(td.as_ref());
        cpu_only("era_token_block_stats", &all)?;
        expect_f64(&[&sd])?;
        if let Some((v, i)) = &tk {
            expect_f64(&[v])?;
            expect_i64(&[i])?;
        }
        let dtype = td.as_ref().map_or(DType::F32, |d| d.dtype);
        with_float!(dtype, "temperature", F => {
            let y = index_view(&yd, &outs)?;
            let tv = optional_input::<F>(td.as_ref(), &outs)?;
            with_logits!(ld.dtype, "logits", L => {
                let x = ld.input::<L>(&outs)?;
                let topk = tk.as_ref().map(|(v, i)| TopkMut { values: v.view_mut::<f64>(), index: i.view_mut::<i64>() });
                t.block_stats(x.view(), y.view(), tv.as_ref().map(|v| v.view()), block, accumulate != 0, sd.view_mut::<f64>(), topk)
            })
        })
    }
}

/// Merges `other` into `stats` (both `[9, ...]` float64 from
/// `era_token_block_stats`), and, with the head's vocabulary top-K, the
/// candidates `other_values`/`other_index` into `topk_values`/`topk_index`
/// (`[..., K]`, float64/int64; all four NULL without a top-K): the associative
/// merge of docs/math.md#vocabulary-blocks, for blocks whose passes ran apart
/// (threads, ranks after an all-gather).
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`, `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`,
/// `UNSUPPORTED_DEVICE`, `INVALID_LAYOUT`, `INVALID_ARGUMENT` (some of the four
/// candidate tensors given, not all).
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_stats_merge(
    head: *const EraHead,
    stats: *mut DLTensor,
    other: *const DLTensor,
    topk_values: *mut DLTensor,
    topk_index: *mut DLTensor,
    other_values: *const DLTensor,
    other_index: *const DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream;
        let t = head_ref(head)?.as_token("era_token_stats_merge")?;
        let sd = Desc::new(stats, "stats")?;
        let od = Desc::new(other, "other")?;
        let mine = pair(Desc::optional(topk_values, "topk_values")?, Desc::optional(topk_index, "topk_index")?, "topk")?;
        let theirs = pair(Desc::optional(other_values, "other_values")?, Desc::optional(other_index, "other_index")?, "other topk")?;
        if mine.is_some() != theirs.is_some() {
            bail!(InvalidArgument, "era_token_stats_merge: give the candidates of both sides, or of neither");
        }
        let mut outs = vec![&sd];
        if let Some((v, i)) = &mine {
            outs.extend([v, i]);
        }
        check_outputs(&outs)?;
        let mut all = outs.clone();
        all.push(&od);
        if let Some((v, i)) = &theirs {
            all.extend([v, i]);
        }
        cpu_only("era_token_stats_merge", &all)?;
        expect_f64(&[&sd, &od])?;
        if let (Some((mv, mi)), Some((ov, oi))) = (&mine, &theirs) {
            expect_f64(&[mv, ov])?;
            expect_i64(&[mi, oi])?;
        }
        let o = od.input::<f64>(&outs)?;
        let th = match &theirs {
            Some((v, i)) => Some((v.input::<f64>(&outs)?, i.input::<i64>(&outs)?)),
            None => None,
        };
        let topk = match (&mine, &th) {
            (Some((v, i)), Some((ov, oi))) => {
                Some((TopkMut { values: v.view_mut::<f64>(), index: i.view_mut::<i64>() }, TopkView { values: ov.view(), index: oi.view() }))
            }
            _ => None,
        };
        t.stats_merge(sd.view_mut::<f64>(), o.view(), topk)
    }
}

/// Rescales `stats` `[9, ...]` (float64) to the per-token maximum `max`
/// `[...]` (float64, each at least the token's own row 8, as a max-reduction
/// across ranks gives it), writing `max` into row 8: afterwards rows 0 to 7 of
/// statistics rebased to one maximum add entry by entry, so that ranks merge
/// them with a sum-reduction (docs/math.md#vocabulary-blocks).
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`, `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`,
/// `UNSUPPORTED_DEVICE`, `INVALID_LAYOUT`, `INVALID_VALUE` (a maximum below the token's own).
///
/// # Safety
/// Every pointer is valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_stats_rebase(
    head: *const EraHead,
    stats: *mut DLTensor,
    max: *const DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream;
        let t = head_ref(head)?.as_token("era_token_stats_rebase")?;
        let sd = Desc::new(stats, "stats")?;
        let md = Desc::new(max, "max")?;
        let outs = [&sd];
        check_outputs(&outs)?;
        cpu_only("era_token_stats_rebase", &[&sd, &md])?;
        expect_f64(&[&sd, &md])?;
        let m = md.input::<f64>(&outs)?;
        t.stats_rebase(sd.view_mut::<f64>(), m.view())
    }
}

/// The finish (docs/math.md#vocabulary-blocks): from statistics merged over
/// blocks covering the `vocab_valid` real entries once (`stats` `[9, ...]`)
/// and, with the head's vocabulary top-K, the merged candidates
/// (`topk_values`, `topk_index` `[..., K]`; NULL otherwise), per token with its
/// label (`labels` `[...]`, as in the block passes): `columns_out` `[..., 3]`,
/// `entropy_out` and `sum_sq_out` `[...]` as `era_token_logprob_columns` gives
/// them for the whole logits (float32 or float64, one dtype; each optional),
/// and `saved_out` `[..., 8]` (float64, `ERA_TOKEN_SAVED`; optional) for
/// `era_token_block_backward`: the log-normalisers at the three scales over the
/// selection, the full vocabulary's at scale 1, the entropy, the top-K
/// threshold and whether the label is selected. The scale decision is then
/// `era_token_decide`'s, on these entropies.
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`, `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`,
/// `UNSUPPORTED_DEVICE`, `INVALID_LAYOUT`, `INVALID_ARGUMENT` (`vocab_valid < 1`;
/// blocks that did not cover the vocabulary exactly once, or a label not seen;
/// top-K tensors given or missing against the head), `INVALID_VALUE` (a label
/// `>= vocab_valid`).
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_block_finish(
    head: *const EraHead,
    stats: *const DLTensor,
    topk_values: *const DLTensor,
    topk_index: *const DLTensor,
    labels: *const DLTensor,
    vocab_valid: i64,
    columns_out: *mut DLTensor,
    entropy_out: *mut DLTensor,
    sum_sq_out: *mut DLTensor,
    saved_out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream;
        let t = head_ref(head)?.as_token("era_token_block_finish")?;
        let sd = Desc::new(stats, "stats")?;
        let tk = pair(Desc::optional(topk_values, "topk_values")?, Desc::optional(topk_index, "topk_index")?, "topk")?;
        let yd = Desc::new(labels, "labels")?;
        let cd = Desc::optional(columns_out, "columns_out")?;
        let en = Desc::optional(entropy_out, "entropy_out")?;
        let sq = Desc::optional(sum_sq_out, "sum_sq_out")?;
        let sv = Desc::optional(saved_out, "saved_out")?;
        if vocab_valid < 1 {
            bail!(InvalidArgument, "vocab_valid = {vocab_valid} must be at least 1");
        }
        let float_outs: Vec<&Desc<'_>> = [&cd, &en, &sq].into_iter().flatten().collect();
        let mut outs = float_outs.clone();
        outs.extend(sv.as_ref());
        check_outputs(&outs)?;
        let mut all = outs.clone();
        all.extend([&sd, &yd]);
        if let Some((v, i)) = &tk {
            all.extend([v, i]);
        }
        cpu_only("era_token_block_finish", &all)?;
        expect_f64(&[&sd])?;
        if let Some(s) = &sv {
            expect_f64(&[s])?;
        }
        if let Some((v, i)) = &tk {
            expect_f64(&[v])?;
            expect_i64(&[i])?;
        }
        let dtype = float_outs.first().map_or(DType::F64, |d| d.dtype);
        with_float!(dtype, "the outputs", F => {
            for o in &float_outs {
                o.expect_dtype(dtype)?;
            }
            let y = index_view(&yd, &outs)?;
            let s = sd.input::<f64>(&outs)?;
            let cand = match &tk {
                Some((v, i)) => Some((v.input::<f64>(&outs)?, i.input::<i64>(&outs)?)),
                None => None,
            };
            let o = ColumnOutputs {
                columns: cd.as_ref().map(|d| d.view_mut::<F>()),
                entropy: en.as_ref().map(|d| d.view_mut::<F>()),
                sum_sq: sq.as_ref().map(|d| d.view_mut::<F>()),
            };
            let topk = cand.as_ref().map(|(v, i)| TopkView { values: v.view(), index: i.view() });
            t.block_finish(s.view(), topk, y.view(), vocab_valid as usize, o, sv.as_ref().map(|d| d.view_mut::<f64>()))
        })
    }
}

/// The block backward (docs/math.md#vocabulary-blocks): `grad_logits_out`
/// `[..., V_block]` (the shape and dtype of `logits`; may be `logits` itself,
/// in place, for a block that is a temporary) from the gradients of the
/// columns (`grad_columns` `[..., 3]`, NULL for none) and of the entropies
/// (`grad_entropy` `[...]`, NULL for none), with the finish's `saved`
/// `[..., 8]`, the labels and temperatures of the block passes, and the
/// block's place in the vocabulary as there. Padding entries get 0. No
/// communication: each block (each rank) computes its own part.
/// `grad_columns`, `grad_entropy` and `temperature` share a float dtype.
///
/// Errors: as `era_token_block_stats`.
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_block_backward(
    head: *const EraHead,
    logits: *const DLTensor,
    labels: *const DLTensor,
    temperature: *const DLTensor,
    vocab_offset: i64,
    vocab_size: i64,
    vocab_valid: i64,
    saved: *const DLTensor,
    grad_columns: *const DLTensor,
    grad_entropy: *const DLTensor,
    grad_logits_out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream;
        let t = head_ref(head)?.as_token("era_token_block_backward")?;
        let ld = Desc::new(logits, "logits")?;
        let yd = Desc::new(labels, "labels")?;
        let td = Desc::optional(temperature, "temperature")?;
        let sv = Desc::new(saved, "saved")?;
        let gc = Desc::optional(grad_columns, "grad_columns")?;
        let ge = Desc::optional(grad_entropy, "grad_entropy")?;
        let od = Desc::new(grad_logits_out, "grad_logits_out")?;
        let block = vocab_block(vocab_offset, vocab_size, vocab_valid)?;
        let outs = [&od];
        check_outputs(&outs)?;
        let mut batch = vec![&yd];
        batch.extend(td.as_ref());
        batch.extend(ge.as_ref());
        expect_batch_shape(&ld, 2, &batch)?;
        let mut all = batch.clone();
        all.extend([&ld, &od, &sv]);
        all.extend(gc.as_ref());
        cpu_only("era_token_block_backward", &all)?;
        expect_f64(&[&sv])?;
        let dtype = gc.as_ref().or(ge.as_ref()).or(td.as_ref()).map_or(DType::F32, |d| d.dtype);
        with_float!(dtype, "grad_columns", F => {
            for d in [&gc, &ge, &td].into_iter().flatten() {
                d.expect_dtype(dtype)?;
            }
            with_logits!(ld.dtype, "logits", L => {
                od.expect_dtype(ld.dtype)?;
                let y = index_view(&yd, &outs)?;
                let s = sv.input::<f64>(&outs)?;
                let tv = optional_input::<F>(td.as_ref(), &outs)?;
                let gcv = optional_input::<F>(gc.as_ref(), &outs)?;
                let gev = optional_input::<F>(ge.as_ref(), &outs)?;
                let (tv, gcv, gev) = (tv.as_ref().map(|v| v.view()), gcv.as_ref().map(|v| v.view()), gev.as_ref().map(|v| v.view()));
                if ld.same_tensor(&od) {
                    t.block_backward::<L, F>(None, y.view(), tv, block, s.view(), gcv, gev, od.view_mut::<L>())
                } else {
                    let x = ld.input::<L>(&outs)?;
                    t.block_backward(Some(x.view()), y.view(), tv, block, s.view(), gcv, gev, od.view_mut::<L>())
                }
            })
        })
    }
}
