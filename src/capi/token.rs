//! The token head's C functions.

use std::ffi::c_void;

use crate::capi::calls::{check_outputs, expect_batch_shape, expect_same_shape, optional_input, with_float, with_logits};
#[cfg(feature = "cuda")]
use crate::capi::cuda;
#[cfg(feature = "cuda")]
use crate::capi::dlpack::{call_device, Device};
use crate::capi::dlpack::{DLTensor, DType, Desc};
use crate::capi::head::{head_ref, EraHead};
use crate::capi::{ffi_boundary, EraStatus};
use crate::error::{bail, Result};
use crate::heads::token::{IndexView, TokenOutputs};

/// Log-prob reported for a label outside the vocabulary top-K (`vocab_topk`).
pub const ERA_OUTSIDE_TOPK_LOGPROB: f64 = -1e4;

/// An integer input (labels, response ids) as an [`IndexView`].
pub(crate) unsafe fn index_view<'a>(d: &'a Desc<'a>, outputs: &[&Desc<'_>]) -> Result<IndexCow<'a>> {
    Ok(match d.dtype {
        DType::I32 => IndexCow::I32(d.input::<i32>(outputs)?),
        DType::I64 => IndexCow::I64(d.input::<i64>(outputs)?),
        other => bail!(UnsupportedDtype, "{} has dtype {}; expected int32 or int64", d.name, other.name()),
    })
}

pub(crate) enum IndexCow<'a> {
    I32(ndarray::CowArray<'a, i32, ndarray::IxDyn>),
    I64(ndarray::CowArray<'a, i64, ndarray::IxDyn>),
}

impl IndexCow<'_> {
    pub(crate) fn view(&self) -> IndexView<'_> {
        match self {
            IndexCow::I32(a) => IndexView::I32(a.view()),
            IndexCow::I64(a) => IndexView::I64(a.view()),
        }
    }
}

/// Token-head forward (docs/math.md#token-head) over `N` tokens laid out as
/// any batch shape `[...]`:
///
/// - `logits` `[..., V]`: float32, float64, bfloat16 or float16. float64 logits are
///   computed in f64; the others in f32 with the per-row sums carried in f64 (see
///   docs/math.md#numerics): f32 results may differ in the last bits between contiguous
///   and strided layouts, and never depend on the thread count. With a vocabulary top-K,
///   ties at the K-th value go to the lower index;
/// - `labels` `[...]`: sampled token ids (int32/int64), in `[0, V)` for unmasked tokens;
/// - `response_ids` `[...]`: int32/int64, the response each token belongs to
///   (`>= 0`, any order, need not be contiguous), or -1 for masked tokens;
/// - `advantages` `[...]`: float32/float64.
///
/// Outputs, all `[...]` with the dtype of `advantages`, each optional (NULL
/// = not wanted; the call does the same work and skips the store, so a
/// caller that only wants old log-probs passes NULL for the others):
/// `logprobs_out` (`c*z[y] - logsumexp(c*z)` with `z = logits/T`; -1e4 for a
/// label outside the vocabulary top-K), `entropy_out` (`H(softmax(z))` over
/// the full vocabulary), `scale_out` (`c` in {k, 1, 1/k}; the backward needs
/// it), `advantages_out` (`A/c` with advantage scaling), and
/// `response_entropy_out`: the mean entropy of the response's top-`rho` tokens. Masked tokens get
/// logprob 0, scale 1, their advantage unchanged and response entropy 0;
/// their labels are not read.
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`, `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`,
/// `UNSUPPORTED_DEVICE`, `INVALID_LAYOUT`, `INVALID_VALUE` (label outside
/// `[0, V)` on an unmasked token, response id < -1).
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_forward(
    head: *const EraHead,
    logits: *const DLTensor,
    labels: *const DLTensor,
    response_ids: *const DLTensor,
    advantages: *const DLTensor,
    logprobs_out: *mut DLTensor,
    entropy_out: *mut DLTensor,
    scale_out: *mut DLTensor,
    advantages_out: *mut DLTensor,
    response_entropy_out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        forward_impl(
            "era_token_forward",
            head,
            [logits, labels, response_ids, advantages, std::ptr::null()],
            [logprobs_out, entropy_out, scale_out, advantages_out, response_entropy_out],
            stream,
        )
    }
}

/// `era_token_forward` at a temperature per token: `temperature` `[...]`
/// (the dtype of `advantages`, each finite and `> 0`, else `INVALID_VALUE`)
/// replaces the head's temperature for each token, as verl 0.8+ samples each
/// prompt at its own temperature. NULL takes the head's temperature (the call
/// is then `era_token_forward`). Pass the same temperatures to
/// `era_token_backward_temperature`. CPU tensors only when `temperature` is
/// given (`UNSUPPORTED_DEVICE` on CUDA).
///
/// # Safety
/// As `era_token_forward`.
#[no_mangle]
pub unsafe extern "C" fn era_token_forward_temperature(
    head: *const EraHead,
    logits: *const DLTensor,
    labels: *const DLTensor,
    response_ids: *const DLTensor,
    advantages: *const DLTensor,
    temperature: *const DLTensor,
    logprobs_out: *mut DLTensor,
    entropy_out: *mut DLTensor,
    scale_out: *mut DLTensor,
    advantages_out: *mut DLTensor,
    response_entropy_out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        forward_impl(
            "era_token_forward_temperature",
            head,
            [logits, labels, response_ids, advantages, temperature],
            [logprobs_out, entropy_out, scale_out, advantages_out, response_entropy_out],
            stream,
        )
    }
}

/// The one-call forward, with an optional temperature per token (the fifth input).
unsafe fn forward_impl(
    name: &'static str,
    head: *const EraHead,
    inputs: [*const DLTensor; 5],
    outputs: [*mut DLTensor; 5],
    stream: *mut c_void,
) -> Result<()> {
    let [logits, labels, response_ids, advantages, temperature] = inputs;
    let [logprobs_out, entropy_out, scale_out, advantages_out, response_entropy_out] = outputs;
    let _ = stream; // CUDA calls launch on it; CPU calls ignore it
    let t = head_ref(head)?.as_token(name)?;
    let ld = Desc::new(logits, "logits")?;
    let yd = Desc::new(labels, "labels")?;
    let rd = Desc::new(response_ids, "response_ids")?;
    let ad = Desc::new(advantages, "advantages")?;
    let td = Desc::optional(temperature, "temperature")?;
    let lp = Desc::optional(logprobs_out, "logprobs_out")?;
    let en = Desc::optional(entropy_out, "entropy_out")?;
    let sc = Desc::optional(scale_out, "scale_out")?;
    let ao = Desc::optional(advantages_out, "advantages_out")?;
    let re = Desc::optional(response_entropy_out, "response_entropy_out")?;
    let outs: Vec<&Desc<'_>> = [&lp, &en, &sc, &ao, &re].into_iter().flatten().collect();
    check_outputs(&outs)?;
    let mut batch = vec![&yd, &rd, &ad];
    batch.extend(td.as_ref());
    batch.extend(outs.iter().copied());
    expect_batch_shape(&ld, 2, &batch)?;
    #[cfg(feature = "cuda")]
    {
        let mut all = batch.clone();
        all.push(&ld);
        if let Device::Cuda(dev) = call_device(&all)? {
            if td.is_some() {
                bail!(UnsupportedDevice, "{name}: a temperature per token is computed on CPU tensors only");
            }
            return cuda::token_forward(t, dev, stream, &ld, &yd, &rd, &ad, [&lp, &en, &sc, &ao, &re]);
        }
    }
    with_float!(ad.dtype, "advantages", F => {
        for o in &outs {
            o.expect_dtype(ad.dtype)?;
        }
        if let Some(td) = &td {
            td.expect_dtype(ad.dtype)?;
        }
        let y = index_view(&yd, &outs)?;
        let r = index_view(&rd, &outs)?;
        let tv = optional_input::<F>(td.as_ref(), &outs)?;
        with_logits!(ld.dtype, "logits", L => {
            let x = ld.input::<L>(&outs)?;
            let a = ad.input::<F>(&outs)?;
            let o = TokenOutputs {
                logprobs: lp.as_ref().map(|d| d.view_mut::<F>()),
                entropy: en.as_ref().map(|d| d.view_mut::<F>()),
                scale: sc.as_ref().map(|d| d.view_mut::<F>()),
                advantages: ao.as_ref().map(|d| d.view_mut::<F>()),
                response_entropy: re.as_ref().map(|d| d.view_mut::<F>()),
            };
            t.forward_t(x.view(), y.view(), r.view(), a.view(), tv.as_ref().map(|v| v.view()), o)
        })
    })
}

/// Token-head backward: `grad_logits_out[t] = (c_t/T) * (onehot(y_t) -
/// softmax(c_t*z_t)) * grad_logprobs[t]` (over the top-K only with
/// `vocab_topk`; zero for masked tokens and labels outside the top-K). The
/// scale decision is not differentiated: pass the forward's `scale_out`.
/// `scale` and `grad_logprobs` `[...]` are float32/float64 (the same);
/// `grad_logits_out` has the shape and dtype of `logits`.
///
/// What the backward reads: `logits` (recomputes the softmax; nothing of the
/// forward is stored), `labels` (the one-hot term), `response_ids` (only to
/// zero masked tokens; the per-response statistics are not recomputed),
/// `scale` (the forward's `scale_out`) and `grad_logprobs`. It needs neither
/// the advantages nor any other forward output.
///
/// In place: on CPU, `grad_logits_out` may be `logits` itself (the same
/// data, byte offset, shape, strides and dtype); each row is then read
/// before its gradient overwrites it, and the call needs no memory of the
/// logits' size (a training step can give up its logits, which are dead
/// after their backward). Any other overlap of an output with an input is
/// handled by copying the input first. On CUDA, `grad_logits_out` must not
/// overlap `logits` (`INVALID_LAYOUT`).
///
/// On Linux, a contiguous CPU `grad_logits_out` of 32 MiB or more is advised
/// onto transparent huge pages (`madvise(MADV_HUGEPAGE)`) before it is
/// written: a buffer the caller has just allocated then takes one page fault
/// per 2 MiB instead of one per 4 KiB. The advice changes no value.
///
/// Errors: as `era_token_forward`; `INVALID_VALUE` also for a scale that is
/// not finite and positive.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_token_backward(
    head: *const EraHead,
    logits: *const DLTensor,
    labels: *const DLTensor,
    response_ids: *const DLTensor,
    scale: *const DLTensor,
    grad_logprobs: *const DLTensor,
    grad_logits_out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        backward_impl("era_token_backward", head, [logits, labels, response_ids, std::ptr::null(), scale, grad_logprobs], grad_logits_out, stream)
    }
}

/// `era_token_backward` at a temperature per token: `temperature` `[...]`
/// (the dtype of `scale`), the temperatures given to
/// `era_token_forward_temperature`; NULL takes the head's. CPU tensors only
/// when `temperature` is given (`UNSUPPORTED_DEVICE` on CUDA).
///
/// # Safety
/// As `era_token_backward`.
#[no_mangle]
pub unsafe extern "C" fn era_token_backward_temperature(
    head: *const EraHead,
    logits: *const DLTensor,
    labels: *const DLTensor,
    response_ids: *const DLTensor,
    temperature: *const DLTensor,
    scale: *const DLTensor,
    grad_logprobs: *const DLTensor,
    grad_logits_out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        backward_impl(
            "era_token_backward_temperature",
            head,
            [logits, labels, response_ids, temperature, scale, grad_logprobs],
            grad_logits_out,
            stream,
        )
    }
}

/// The one-call backward, with an optional temperature per token.
unsafe fn backward_impl(
    name: &'static str,
    head: *const EraHead,
    inputs: [*const DLTensor; 6],
    grad_logits_out: *mut DLTensor,
    stream: *mut c_void,
) -> Result<()> {
    let [logits, labels, response_ids, temperature, scale, grad_logprobs] = inputs;
    let _ = stream; // CUDA calls launch on it; CPU calls ignore it
    let t = head_ref(head)?.as_token(name)?;
    let ld = Desc::new(logits, "logits")?;
    let yd = Desc::new(labels, "labels")?;
    let rd = Desc::new(response_ids, "response_ids")?;
    let td = Desc::optional(temperature, "temperature")?;
    let sd = Desc::new(scale, "scale")?;
    let gd = Desc::new(grad_logprobs, "grad_logprobs")?;
    let od = Desc::new(grad_logits_out, "grad_logits_out")?;
    let outs = [&od];
    check_outputs(&outs)?;
    let mut batch = vec![&yd, &rd, &sd, &gd];
    batch.extend(td.as_ref());
    expect_batch_shape(&ld, 2, &batch)?;
    expect_same_shape(&ld, &[&od])?;
    #[cfg(feature = "cuda")]
    {
        let mut all = batch.clone();
        all.extend([&ld, &od]);
        if let Device::Cuda(dev) = call_device(&all)? {
            if td.is_some() {
                bail!(UnsupportedDevice, "{name}: a temperature per token is computed on CPU tensors only");
            }
            return cuda::token_backward(t, dev, stream, &ld, &yd, &rd, &sd, &gd, &od);
        }
    }
    with_float!(sd.dtype, "scale", F => {
        gd.expect_dtype(sd.dtype)?;
        if let Some(td) = &td {
            td.expect_dtype(sd.dtype)?;
        }
        with_logits!(ld.dtype, "logits", L => {
            od.expect_dtype(ld.dtype)?;
            let y = index_view(&yd, &outs)?;
            let r = index_view(&rd, &outs)?;
            let s = sd.input::<F>(&outs)?;
            let g = gd.input::<F>(&outs)?;
            let tv = optional_input::<F>(td.as_ref(), &outs)?;
            let tv = tv.as_ref().map(|v| v.view());
            if ld.same_tensor(&od) {
                // in place: each row is read before the gradient overwrites it
                t.backward_in_place_t(od.view_mut::<L>(), y.view(), r.view(), tv, s.view(), g.view())
            } else {
                let x = ld.input::<L>(&outs)?;
                t.backward_t(x.view(), y.view(), r.view(), tv, s.view(), g.view(), od.view_mut::<L>())
            }
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_constant_matches_the_head() {
        assert_eq!(super::ERA_OUTSIDE_TOPK_LOGPROB, crate::kernels::token::OUTSIDE_TOPK_LOGPROB);
    }
}
