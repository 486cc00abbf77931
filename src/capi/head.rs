//! `EraHead`: the handle's lifecycle (new, free, kind, config) and the
//! forward, backward and entropy of the Gaussian and softmax heads.

use std::ffi::c_void;

use crate::capi::calls::{check_outputs, expect_batch_shape, expect_same_shape, with_float, with_logits};
use crate::capi::config::{EraConfig, EraHeadKind, ERA_HEAD_KIND_GAUSSIAN, ERA_HEAD_KIND_SOFTMAX, ERA_HEAD_KIND_TOKEN};
#[cfg(feature = "cuda")]
use crate::capi::cuda;
#[cfg(feature = "cuda")]
use crate::capi::dlpack::{call_device, Device};
use crate::capi::dlpack::{DLTensor, DType, Desc};
use crate::capi::{ffi_boundary, in_ref, out_ref, EraStatus};
use crate::error::{bail, Result};
use crate::heads::Head;

/// An ERA head (opaque). Created by `era_head_new` or `era_head_from_json`,
/// released by `era_head_free`. Forward, backward and entropy calls do not
/// mutate it and may run concurrently from many threads on one head; the
/// `delta` calls are internally synchronised.
pub struct EraHead {
    pub(crate) inner: Head,
}

/// Borrows the head behind a handle.
pub(crate) unsafe fn head_ref<'a>(p: *const EraHead) -> Result<&'a Head> {
    in_ref(p, "head").map(|h| &h.inner)
}

/// Builds a head from `*config` (read according to `config->struct_size`)
/// and stores the new handle in `*out`.
///
/// Errors: `ERA_STATUS_NULL_POINTER` (config, out); `ERA_STATUS_INVALID_CONFIG`
/// (bad struct_size, unknown kind, a value out of range, NaN, unset required
/// field); `ERA_STATUS_INFEASIBLE_TARGET` (target entropy unreachable).
///
/// # Safety
/// `config` is NULL or points to `config->struct_size` readable bytes; `out`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_new(config: *const EraConfig, out: *mut *mut EraHead) -> EraStatus {
    ffi_boundary! {
        in_ref(config, "config")?;
        let out = out_ref(out, "out")?;
        let raw = EraConfig::read(config)?;
        Head::check_num_threads(raw.num_threads as usize)?;
        let head = Head::new(raw.to_head_config()?)?.with_num_threads(raw.num_threads as usize);
        *out = Box::into_raw(Box::new(EraHead { inner: head }));
        Ok(())
    }
}

/// Releases a head. NULL is accepted and ignored. The handle must not be
/// used afterwards.
///
/// # Safety
/// `head` is NULL or a handle from `era_head_new`/`era_head_from_json` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn era_head_free(head: *mut EraHead) {
    ffi_boundary!(fallback = ();
        if !head.is_null() {
            drop(Box::from_raw(head));
        }
    )
}

/// Stores the head's kind (`ERA_HEAD_KIND_*`) in `*out`.
///
/// Errors: `ERA_STATUS_NULL_POINTER` (head, out).
///
/// # Safety
/// `head` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_kind(head: *const EraHead, out: *mut EraHeadKind) -> EraStatus {
    ffi_boundary! {
        let h = head_ref(head)?;
        let out = out_ref(out, "out")?;
        *out = match h {
            Head::Gaussian(_) => ERA_HEAD_KIND_GAUSSIAN,
            Head::Softmax(_) => ERA_HEAD_KIND_SOFTMAX,
            Head::Token(_) => ERA_HEAD_KIND_TOKEN,
        };
        Ok(())
    }
}

/// Copies the head's configuration into `*out`; the caller sets
/// `out->struct_size` first (to its `sizeof(EraConfig)`), and at most that
/// many bytes are written. For a Gaussian head `delta` holds the current value.
///
/// Errors: `ERA_STATUS_NULL_POINTER` (head, out); `ERA_STATUS_INVALID_ARGUMENT`
/// (`out->struct_size < 8`, or a size that ends inside a field).
///
/// # Safety
/// `head` is NULL or a live handle; `out` is NULL or points to
/// `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn era_head_config(head: *const EraHead, out: *mut EraConfig) -> EraStatus {
    ffi_boundary! {
        let h = head_ref(head)?;
        if out.is_null() {
            bail!(NullPointer, "out must not be NULL");
        }
        let size = std::ptr::read_unaligned(out as *const u32) as usize;
        if size < 8 {
            bail!(InvalidArgument, "out->struct_size is {size}; set it to sizeof(EraConfig) before the call");
        }
        if size < std::mem::size_of::<EraConfig>() && !crate::capi::config::CONFIG_FIELDS.iter().any(|&(_, o, l)| o + l == size) {
            bail!(InvalidArgument, "out->struct_size is {size}, which ends inside a field; set it to sizeof(EraConfig)");
        }
        let mut cfg = EraConfig::from_head_config(&h.config());
        cfg.num_threads = h.num_threads() as u32;
        let n = size.min(std::mem::size_of::<EraConfig>());
        std::ptr::copy_nonoverlapping(&cfg as *const EraConfig as *const u8, out as *mut u8, n);
        std::ptr::write_unaligned(out as *mut u32, n as u32);
        Ok(())
    }
}

/// Forward of a Gaussian or softmax head: `out = g(z)` row-wise over the
/// last axis. `z` and `out`: same shape `[..., D]` (or `[..., n]`), rank >= 1,
/// float32 or float64 (the same for both), any strides; `out` may alias `z`.
/// The Gaussian head uses its current `delta`. `stream`: a `cudaStream_t`
/// for CUDA buffers; ignored for CPU buffers (may be NULL).
///
/// Precision: float64 is computed in float64; contiguous float32 takes
/// vectorised float32 kernels (strided float32, and the softmax head near
/// `tau = e`, take the float64 rows and round once), so float32 results may
/// differ in the last bits between layouts. Results never depend on the
/// thread count.
///
/// CUDA buffers (a build with CUDA support, docs/cuda.md): kernels are launched on
/// `stream` and the call returns without synchronising. It launches only kernels and
/// stream-ordered allocations, so it can be captured into a CUDA graph, once one call
/// on the device has loaded era's kernels. A captured call keeps what was read on the
/// host at capture time: the Gaussian head's `delta` becomes part of the captured
/// launch, so a replay after `era_head_set_delta` or `era_head_update_delta` still
/// computes with the delta of the capture. To change delta between replays, pass it as
/// a device tensor (`era_gaussian_forward_delta`), which every replay reads, or capture
/// again.
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND` (token head), `INVALID_SHAPE`,
/// `UNSUPPORTED_DTYPE`, `UNSUPPORTED_DEVICE`, `INVALID_LAYOUT`; on CUDA buffers also
/// `DEVICE_UNAVAILABLE` (CUDA cannot be used, a failed launch), `DEVICE_FAULT` (the
/// device's context hit a sticky error, here or in earlier work), `INVALID_STREAM`
/// (`stream` is not a stream of the tensors' device) and `OUT_OF_MEMORY`.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_head_forward(head: *const EraHead, z: *const DLTensor, out: *mut DLTensor, stream: *mut c_void) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let h = head_ref(head)?;
        if let Head::Token(_) = h {
            bail!(WrongHeadKind, "era_head_forward needs a gaussian or softmax head; use era_token_forward for a token head");
        }
        let zd = Desc::new(z, "z")?;
        let od = Desc::new(out, "out")?;
        check_outputs(&[&od])?;
        expect_batch_shape(&zd, 1, &[])?;
        expect_same_shape(&zd, &[&od])?;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(dev) = call_device(&[&zd, &od])? {
            return cuda::head_apply(h, dev, stream, &zd, None, &od);
        }
        with_float!(zd.dtype, "z", T => {
            od.expect_dtype(zd.dtype)?;
            let zi = zd.input::<T>(&[&od])?;
            let o = od.view_mut::<T>();
            match h {
                Head::Gaussian(g) => g.forward(zi.view(), o),
                Head::Softmax(s) => s.forward(zi.view(), o),
                Head::Token(_) => Ok(()),
            }
        })
    }
}

/// Backward (vector-Jacobian product) of a Gaussian or softmax head:
/// `grad_z = J(z)^T grad_out`. All three tensors have the same shape and
/// dtype (float32/float64); `grad_z` may alias `z` or `grad_out`. On CUDA
/// buffers, a captured backward keeps the head's `delta` of the capture, as
/// `era_head_forward` does.
///
/// Errors: as `era_head_forward`.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_head_backward(
    head: *const EraHead,
    z: *const DLTensor,
    grad_out: *const DLTensor,
    grad_z: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let h = head_ref(head)?;
        if let Head::Token(_) = h {
            bail!(WrongHeadKind, "era_head_backward needs a gaussian or softmax head; use era_token_backward for a token head");
        }
        let zd = Desc::new(z, "z")?;
        let gd = Desc::new(grad_out, "grad_out")?;
        let od = Desc::new(grad_z, "grad_z")?;
        check_outputs(&[&od])?;
        expect_batch_shape(&zd, 1, &[])?;
        expect_same_shape(&zd, &[&gd, &od])?;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(dev) = call_device(&[&zd, &gd, &od])? {
            return cuda::head_apply(h, dev, stream, &zd, Some(&gd), &od);
        }
        with_float!(zd.dtype, "z", T => {
            gd.expect_dtype(zd.dtype)?;
            od.expect_dtype(zd.dtype)?;
            let zi = zd.input::<T>(&[&od])?;
            let gi = gd.input::<T>(&[&od])?;
            let o = od.view_mut::<T>();
            match h {
                Head::Gaussian(g) => g.backward(zi.view(), gi.view(), o),
                Head::Softmax(s) => s.backward(zi.view(), gi.view(), o),
                Head::Token(_) => Ok(()),
            }
        })
    }
}

/// Per-row entropy of a head's output distribution: `out` `[..., D]` ->
/// `entropy` `[...]`. Gaussian: `sum(out) + 0.5*D*ln(2*pi*e)` (the entropy of
/// `N(mu, diag(exp(out))^2)`); softmax: `H(softmax(out))`; token: `out` holds
/// raw logits `[..., V]` (float32/float64/bfloat16/float16) and the result is
/// `H(softmax(out / T))`. `entropy` is float32/float64 (for the Gaussian and
/// softmax heads the dtype of `out`).
///
/// Errors: as `era_head_forward` (no `WRONG_HEAD_KIND`).
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_head_entropy(
    head: *const EraHead,
    out: *const DLTensor,
    entropy: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let h = head_ref(head)?;
        let xd = Desc::new(out, "out")?;
        let ed = Desc::new(entropy, "entropy")?;
        check_outputs(&[&ed])?;
        expect_batch_shape(&xd, 1, &[&ed])?;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(dev) = call_device(&[&xd, &ed])? {
            return match h {
                Head::Gaussian(g) => {
                    if xd.shape.last() != Some(&g.config().dim) {
                        bail!(InvalidShape, "out has shape {:?}, but the head has dim D = {}", xd.shape, g.config().dim);
                    }
                    cuda::entropy("gaussian_entropy", dev, stream, &xd, None, &ed, 1.0, (0.0, 0.0))
                }
                Head::Softmax(s) => {
                    if xd.shape.last() != Some(&s.config().num_classes) {
                        bail!(InvalidShape, "out has shape {:?}, but the head has num_classes n = {}", xd.shape, s.config().num_classes);
                    }
                    ed.expect_dtype(xd.dtype)?;
                    cuda::entropy("softmax_entropy", dev, stream, &xd, None, &ed, 1.0, (0.0, 0.0))
                }
                Head::Token(t) => cuda::entropy("softmax_entropy", dev, stream, &xd, None, &ed, 1.0 / t.config().temperature, (0.0, 0.0)),
            };
        }
        if let Head::Token(t) = h {
            return with_float!(ed.dtype, "entropy", F => {
                with_logits!(xd.dtype, "out", L => {
                    let x = xd.input::<L>(&[&ed])?;
                    t.entropy(x.view(), ed.view_mut::<F>())
                })
            });
        }
        with_float!(xd.dtype, "out", T => {
            ed.expect_dtype(xd.dtype)?;
            let x = xd.input::<T>(&[&ed])?;
            let e = ed.view_mut::<T>();
            match h {
                Head::Gaussian(g) => g.entropy(x.view(), e),
                Head::Softmax(s) => s.entropy(x.view(), e),
                Head::Token(_) => Ok(()),
            }
        })
    }
}
