//! The split token forward's C functions (docs/math.md#split-token-forward):
//! the log-prob columns, the decision from per-token tensors, the columns'
//! backward. CPU tensors only in this version.

use std::ffi::c_void;

use crate::capi::calls::{check_outputs, expect_batch_shape, expect_same_shape, optional_input, with_float, with_logits};
#[cfg(feature = "cuda")]
use crate::capi::dlpack::{call_device, Device};
use crate::capi::dlpack::{DLTensor, DType, Desc};
use crate::capi::head::{head_ref, EraHead};
use crate::capi::token::index_view;
use crate::capi::{ffi_boundary, EraStatus};
use crate::error::{bail, Result};
use crate::heads::token::{ColumnOutputs, DecideOutputs, IndexViewMut};

/// Fails unless `columns` has the shape of `logits` with a last axis of 3.
fn expect_columns_shape(columns: &Desc<'_>, logits: &Desc<'_>) -> Result<()> {
    let mut want = logits.shape.clone();
    if let Some(last) = want.last_mut() {
        *last = 3;
    }
    if columns.shape != want {
        bail!(
            InvalidShape,
            "{} has shape {:?}; expected {:?} (the logits' shape with a last axis of 3)",
            columns.name,
            columns.shape,
            want
        );
    }
    Ok(())
}

/// Fails with `UNSUPPORTED_DEVICE` when the tensors of a split-forward call live on a CUDA device.
#[cfg(feature = "cuda")]
pub(crate) fn cpu_only(name: &str, descs: &[&Desc<'_>]) -> Result<()> {
    if let Device::Cuda(_) = call_device(descs)? {
        bail!(UnsupportedDevice, "{name} computes on CPU tensors only in this version");
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
pub(crate) fn cpu_only(_name: &str, _descs: &[&Desc<'_>]) -> Result<()> {
    Ok(())
}

/// The split token forward, first half (docs/math.md#split-token-forward): per
/// token, in one read of its logits row,
///
/// - `columns_out` `[..., 3]`: the label's log-prob `c*z[y] - logsumexp(c*z)` at
///   the three scales the head may choose, in the order `c = 1, k, 1/k`, with
///   `z = logits/T` (over the vocabulary top-K with `vocab_topk`, -1e4 at every
///   scale for a label outside it); each column is bit for bit the `logprobs_out`
///   that `era_token_forward` gives a token whose scale is that column's;
/// - `entropy_out` `[...]`: `H(softmax(z))` over the full vocabulary;
/// - `sum_sq_out` `[...]`: `sum_i softmax(z)_i^2` over the full vocabulary (free
///   with `k = 2`: one more exponential per logit otherwise).
///
/// Inputs: `logits` `[..., V]` (float32, float64, bfloat16, float16; any
/// layout), `labels` `[...]` (int32/int64; a negative label, such as -100,
/// marks a token to ignore: its columns are 0 and it gets no column gradient;
/// a label `>= V` is `INVALID_VALUE`), and optionally `temperature` `[...]` (one
/// per token, each finite and `> 0`; NULL: the head's). Outputs are optional
/// (NULL: not wanted) and share one float dtype (float32/float64), which
/// `temperature` has too. The call needs no response ids nor advantages: the
/// scale decision is `era_token_decide`'s, from these per-token outputs.
///
/// Memory: the outputs and O(N) bookkeeping; rows that are not contiguous f32
/// are read a block at a time (no buffer of a row's width).
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`, `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`,
/// `UNSUPPORTED_DEVICE` (CUDA tensors: CPU only in this version), `INVALID_LAYOUT`,
/// `INVALID_VALUE`.
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_logprob_columns(
    head: *const EraHead,
    logits: *const DLTensor,
    labels: *const DLTensor,
    temperature: *const DLTensor,
    columns_out: *mut DLTensor,
    entropy_out: *mut DLTensor,
    sum_sq_out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream;
        let t = head_ref(head)?.as_token("era_token_logprob_columns")?;
        let ld = Desc::new(logits, "logits")?;
        let yd = Desc::new(labels, "labels")?;
        let td = Desc::optional(temperature, "temperature")?;
        let cd = Desc::optional(columns_out, "columns_out")?;
        let en = Desc::optional(entropy_out, "entropy_out")?;
        let sq = Desc::optional(sum_sq_out, "sum_sq_out")?;
        let outs: Vec<&Desc<'_>> = [&cd, &en, &sq].into_iter().flatten().collect();
        check_outputs(&outs)?;
        let mut batch = vec![&yd];
        batch.extend(td.as_ref());
        batch.extend(en.as_ref());
        batch.extend(sq.as_ref());
        expect_batch_shape(&ld, 2, &batch)?;
        if let Some(cd) = &cd {
            expect_columns_shape(cd, &ld)?;
        }
        let mut all = batch.clone();
        all.push(&ld);
        all.extend(cd.as_ref());
        cpu_only("era_token_logprob_columns", &all)?;
        let dtype = outs.first().map(|d| d.dtype).or(td.as_ref().map(|d| d.dtype)).unwrap_or(DType::F32);
        with_float!(dtype, "the outputs", F => {
            for o in &outs {
                o.expect_dtype(dtype)?;
            }
            if let Some(td) = &td {
                td.expect_dtype(dtype)?;
            }
            let y = index_view(&yd, &outs)?;
            let tv = optional_input::<F>(td.as_ref(), &outs)?;
            with_logits!(ld.dtype, "logits", L => {
                let x = ld.input::<L>(&outs)?;
                let o = ColumnOutputs {
                    columns: cd.as_ref().map(|d| d.view_mut::<F>()),
                    entropy: en.as_ref().map(|d| d.view_mut::<F>()),
                    sum_sq: sq.as_ref().map(|d| d.view_mut::<F>()),
                };
                t.logprob_columns(x.view(), y.view(), tv.as_ref().map(|v| v.view()), o)
            })
        })
    }
}

/// The split token forward, second half (docs/math.md#split-token-forward):
/// the scale decision from per-token tensors, without the logits, so that it
/// can run inside a loss that sees only per-token tensors.
///
/// Inputs, each `[...]` (the token layout of `era_token_logprob_columns`):
/// `entropy` (its `entropy_out`), `response_ids` (int32/int64: `>= 0`, or -1 for
/// a masked token), `advantages`; and `columns` `[..., 3]` (its `columns_out`),
/// needed only for `logprobs_out` (NULL otherwise). Outputs, each optional:
/// `logprobs_out` (the column the scale selects: `logp'`; 0 for masked tokens),
/// `scale_out` (`c` in {k, 1, 1/k}), `advantages_out` (`A/c` with advantage
/// scaling), `response_entropy_out` (`Hresp`), all of the float dtype of
/// `entropy`, and `column_out` (int32 or int64: 0, 1 or 2, the index of the chosen
/// column; 0 for masked tokens). Given the same logits, labels, response ids,
/// advantages and temperatures, the outputs are those of `era_token_forward`
/// (or `era_token_forward_temperature`) bit for bit.
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`, `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`,
/// `UNSUPPORTED_DEVICE` (CUDA tensors), `INVALID_LAYOUT`, `INVALID_ARGUMENT`
/// (`logprobs_out` without `columns`), `INVALID_VALUE` (a response id below -1).
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_decide(
    head: *const EraHead,
    entropy: *const DLTensor,
    response_ids: *const DLTensor,
    advantages: *const DLTensor,
    columns: *const DLTensor,
    logprobs_out: *mut DLTensor,
    scale_out: *mut DLTensor,
    advantages_out: *mut DLTensor,
    response_entropy_out: *mut DLTensor,
    column_out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream;
        let t = head_ref(head)?.as_token("era_token_decide")?;
        let ed = Desc::new(entropy, "entropy")?;
        let rd = Desc::new(response_ids, "response_ids")?;
        let ad = Desc::new(advantages, "advantages")?;
        let cd = Desc::optional(columns, "columns")?;
        let lp = Desc::optional(logprobs_out, "logprobs_out")?;
        let sc = Desc::optional(scale_out, "scale_out")?;
        let ao = Desc::optional(advantages_out, "advantages_out")?;
        let re = Desc::optional(response_entropy_out, "response_entropy_out")?;
        let co = Desc::optional(column_out, "column_out")?;
        let outs: Vec<&Desc<'_>> = [&lp, &sc, &ao, &re, &co].into_iter().flatten().collect();
        check_outputs(&outs)?;
        let mut same = vec![&rd, &ad];
        same.extend(outs.iter().copied());
        expect_same_shape(&ed, &same)?;
        if let Some(cd) = &cd {
            let mut want = ed.shape.to_vec();
            want.push(3);
            if cd.shape[..] != want[..] {
                bail!(InvalidShape, "columns has shape {:?}; expected {:?} (entropy's shape with a last axis of 3)", cd.shape, want);
            }
        }
        let mut all = same.clone();
        all.push(&ed);
        all.extend(cd.as_ref());
        cpu_only("era_token_decide", &all)?;
        if let Some(co) = &co {
            if !matches!(co.dtype, DType::I32 | DType::I64) {
                bail!(UnsupportedDtype, "column_out has dtype {}; expected int32 or int64", co.dtype.name());
            }
        }
        with_float!(ed.dtype, "entropy", F => {
            ad.expect_dtype(ed.dtype)?;
            if let Some(cd) = &cd {
                cd.expect_dtype(ed.dtype)?;
            }
            for o in [&lp, &sc, &ao, &re].into_iter().flatten() {
                o.expect_dtype(ed.dtype)?;
            }
            let r = index_view(&rd, &outs)?;
            let e = ed.input::<F>(&outs)?;
            let a = ad.input::<F>(&outs)?;
            let c = optional_input::<F>(cd.as_ref(), &outs)?;
            let o = DecideOutputs {
                logprobs: lp.as_ref().map(|d| d.view_mut::<F>()),
                scale: sc.as_ref().map(|d| d.view_mut::<F>()),
                advantages: ao.as_ref().map(|d| d.view_mut::<F>()),
                response_entropy: re.as_ref().map(|d| d.view_mut::<F>()),
                column: co.as_ref().map(|d| match d.dtype {
                    DType::I32 => IndexViewMut::from(d.view_mut::<i32>()),
                    _ => IndexViewMut::from(d.view_mut::<i64>()),
                }),
            };
            t.decide(e.view(), r.view(), a.view(), c.as_ref().map(|v| v.view()), o)
        })
    }
}

/// The split token forward's backward (docs/math.md#split-token-backward):
/// `grad_logits_out` from the gradients of the columns (`grad_columns`
/// `[..., 3]`, NULL for none) and of the entropies (`grad_entropy` `[...]`, NULL
/// for none), at the forward's labels and temperatures:
///
/// `d logits_t = sum_j (c_j/T) (onehot(y_t) - softmax(c_j*z_t)) * grad_columns[t, j]
///             - (1/T) p_t (ln p_t + H_t) * grad_entropy[t]`,  `p_t = softmax(z_t)`.
///
/// A token whose only gradient is one column's gets, bit for bit, what
/// `era_token_backward` gives it at that column's scale (a loss that uses the
/// column `era_token_decide` selected is the common case). An ignored token
/// (negative label) gets the entropy's term only. `grad_columns` and
/// `grad_entropy` share a float dtype, which `temperature` has too;
/// `grad_logits_out` has the shape and dtype of `logits`, and may be `logits`
/// itself (in place, as in `era_token_backward`).
///
/// Errors: as `era_token_logprob_columns`.
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_columns_backward(
    head: *const EraHead,
    logits: *const DLTensor,
    labels: *const DLTensor,
    temperature: *const DLTensor,
    grad_columns: *const DLTensor,
    grad_entropy: *const DLTensor,
    grad_logits_out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream;
        let t = head_ref(head)?.as_token("era_token_columns_backward")?;
        let ld = Desc::new(logits, "logits")?;
        let yd = Desc::new(labels, "labels")?;
        let td = Desc::optional(temperature, "temperature")?;
        let gc = Desc::optional(grad_columns, "grad_columns")?;
        let ge = Desc::optional(grad_entropy, "grad_entropy")?;
        let od = Desc::new(grad_logits_out, "grad_logits_out")?;
        let outs = [&od];
        check_outputs(&outs)?;
        let mut batch = vec![&yd];
        batch.extend(td.as_ref());
        batch.extend(ge.as_ref());
        expect_batch_shape(&ld, 2, &batch)?;
        expect_same_shape(&ld, &[&od])?;
        if let Some(gc) = &gc {
            expect_columns_shape(gc, &ld)?;
        }
        let mut all = batch.clone();
        all.extend([&ld, &od]);
        all.extend(gc.as_ref());
        cpu_only("era_token_columns_backward", &all)?;
        let dtype = gc.as_ref().or(ge.as_ref()).or(td.as_ref()).map_or(DType::F32, |d| d.dtype);
        with_float!(dtype, "grad_columns", F => {
            for d in [&gc, &ge, &td].into_iter().flatten() {
                d.expect_dtype(dtype)?;
            }
            with_logits!(ld.dtype, "logits", L => {
                od.expect_dtype(ld.dtype)?;
                let y = index_view(&yd, &outs)?;
                let tv = optional_input::<F>(td.as_ref(), &outs)?;
                let gcv = optional_input::<F>(gc.as_ref(), &outs)?;
                let gev = optional_input::<F>(ge.as_ref(), &outs)?;
                let (tv, gcv, gev) = (tv.as_ref().map(|v| v.view()), gcv.as_ref().map(|v| v.view()), gev.as_ref().map(|v| v.view()));
                if ld.same_tensor(&od) {
                    t.columns_backward_in_place(od.view_mut::<L>(), y.view(), tv, gcv, gev)
                } else {
                    let x = ld.input::<L>(&outs)?;
                    t.columns_backward(x.view(), y.view(), tv, gcv, gev, od.view_mut::<L>())
                }
            })
        })
    }
}
