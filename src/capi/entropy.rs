//! The functions that need no head: the Gaussian, categorical and
//! truncated-normal entropies.

use std::ffi::c_void;

use crate::capi::calls::{check_outputs, expect_batch_shape, expect_same_shape, with_float, with_logits};
#[cfg(feature = "cuda")]
use crate::capi::cuda;
#[cfg(feature = "cuda")]
use crate::capi::dlpack::{call_device, Device};
use crate::capi::dlpack::{DLTensor, DType, Desc};
use crate::capi::{ffi_boundary, EraStatus};
use crate::error::bail;
use crate::heads::gaussian::{gaussian_entropy, truncated_normal_entropy};
use crate::heads::softmax::categorical_entropy;

/// Entropy of the truncated normal `TN(mean, exp(log_std), [low, high])`
/// (docs/math.md#truncated-normal-entropy), summed over the last axis: `mean`, `log_std`
/// `[..., D]`, `entropy` `[...]`, all float32 or all float64. Infinite
/// bounds are allowed. Needs no head.
///
/// Errors: `NULL_POINTER`, `INVALID_ARGUMENT` (not `low < high`),
/// `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`, `UNSUPPORTED_DEVICE`, `INVALID_LAYOUT`.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_truncated_normal_entropy(
    mean: *const DLTensor,
    log_std: *const DLTensor,
    low: f64,
    high: f64,
    entropy: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let md = Desc::new(mean, "mean")?;
        let ld = Desc::new(log_std, "log_std")?;
        let ed = Desc::new(entropy, "entropy")?;
        check_outputs(&[&ed])?;
        expect_same_shape(&md, &[&ld])?;
        expect_batch_shape(&md, 1, &[&ed])?;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(dev) = call_device(&[&md, &ld, &ed])? {
            #[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN bounds must fail too
            if !(low < high) {
                bail!(InvalidArgument, "the truncation bounds must satisfy low < high, got low = {low}, high = {high}");
            }
            return cuda::entropy("truncnorm_entropy", dev, stream, &md, Some(&ld), &ed, 1.0, (low, high));
        }
        with_float!(md.dtype, "mean", T => {
            ld.expect_dtype(md.dtype)?;
            ed.expect_dtype(md.dtype)?;
            let m = md.input::<T>(&[&ed])?;
            let l = ld.input::<T>(&[&ed])?;
            truncated_normal_entropy(m.view(), l.view(), low, high, ed.view_mut::<T>())
        })
    }
}

/// Entropy of the diagonal Gaussian `N(mu, diag(exp(log_std))^2)` per row,
/// needing no head: `log_std` `[..., D]` -> `entropy` `[...]`, each
/// `sum(log_std) + 0.5*D*ln(2*pi*e)` (docs/math.md#gaussian-entropy). Both
/// float32 or both float64.
///
/// Errors: `NULL_POINTER`, `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`,
/// `UNSUPPORTED_DEVICE`, `INVALID_LAYOUT`.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_gaussian_entropy(log_std: *const DLTensor, entropy: *mut DLTensor, stream: *mut c_void) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let ld = Desc::new(log_std, "log_std")?;
        let ed = Desc::new(entropy, "entropy")?;
        check_outputs(&[&ed])?;
        expect_batch_shape(&ld, 1, &[&ed])?;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(dev) = call_device(&[&ld, &ed])? {
            return cuda::entropy("gaussian_entropy", dev, stream, &ld, None, &ed, 1.0, (0.0, 0.0));
        }
        with_float!(ld.dtype, "log_std", T => {
            ed.expect_dtype(ld.dtype)?;
            let l = ld.input::<T>(&[&ed])?;
            gaussian_entropy(l.view(), ed.view_mut::<T>())
        })
    }
}

/// Entropy of the categorical `softmax(logits / temperature)` per row,
/// needing no head: `logits` `[..., n]` (float32, float64, bfloat16 or
/// float16) -> `entropy` `[...]` (float32 or float64). `temperature` 1 gives
/// the softmax head's output entropy; the token head's sampling temperature
/// gives its per-token entropy.
///
/// Errors: `NULL_POINTER`, `INVALID_ARGUMENT` (temperature not finite and
/// positive), `INVALID_SHAPE`, `UNSUPPORTED_DTYPE`, `UNSUPPORTED_DEVICE`,
/// `INVALID_LAYOUT`.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_softmax_entropy(
    logits: *const DLTensor,
    temperature: f64,
    entropy: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let xd = Desc::new(logits, "logits")?;
        let ed = Desc::new(entropy, "entropy")?;
        check_outputs(&[&ed])?;
        if !(temperature.is_finite() && temperature > 0.0) {
            bail!(InvalidArgument, "temperature must be finite and > 0, got {temperature}");
        }
        expect_batch_shape(&xd, 1, &[&ed])?;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(dev) = call_device(&[&xd, &ed])? {
            return cuda::entropy("softmax_entropy", dev, stream, &xd, None, &ed, 1.0 / temperature, (0.0, 0.0));
        }
        with_float!(ed.dtype, "entropy", F => {
            with_logits!(xd.dtype, "logits", L => {
                let x = xd.input::<L>(&[&ed])?;
                categorical_entropy(x.view(), temperature, ed.view_mut::<F>())
            })
        })
    }
}
