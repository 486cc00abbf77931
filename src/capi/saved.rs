//! The Gaussian and softmax heads' forward that also writes the residual
//! `saved = softmax(z)`, and the backward from that residual instead of `z`
//! (docs/math.md#saved-softmax): what a framework's autodiff keeps between
//! its forward and backward passes, so that the pair computes each
//! exponential once; for the softmax head, also the second residual
//! `dwdh = dw/dh`, with which its backward computes no transcendental at all.

use std::ffi::c_void;

use crate::capi::calls::{check_outputs, expect_batch_shape, expect_same_shape, with_float, Descs};
use crate::capi::dlpack::{call_device, DLTensor, DType, Desc, Device};
use crate::capi::gaussian::{check_delta_shape, delta_or_stored, is_scalar, one_f32_delta};
use crate::capi::head::{head_ref, EraHead};
use crate::capi::{ffi_boundary, EraStatus};
use crate::error::{bail, Result};

/// Fails for tensors in CUDA memory: these calls compute on the host only.
fn host_only(descs: &[&Desc<'_>], op: &str, instead: &str) -> Result<()> {
    if let Device::Cuda(_) = call_device(descs)? {
        bail!(UnsupportedDevice, "{op} computes on host memory only; on CUDA buffers call {instead}, which recomputes the softmax");
    }
    Ok(())
}

/// Gaussian forward that also writes the residual of the backward:
/// `out = clip(log_std_max + k*softmax(z), log_std_min, log_std_max)` as
/// `era_gaussian_forward_delta` computes it (the same bits), and `saved =
/// softmax(z)` row-wise. Pass `saved` to `era_gaussian_backward_saved`
/// in place of `z`: that backward needs no exponential.
/// `z`, `out`, `saved`: the same shape `[..., D]` and dtype (float32 or
/// float64); `out` and `saved` must not overlap each other (either may alias
/// `z`). `delta` as in `era_gaussian_forward_delta`, or NULL for the head's
/// stored value. Host memory only.
///
/// Errors: as `era_gaussian_forward_delta`; `INVALID_LAYOUT` when `out` and
/// `saved` overlap; `UNSUPPORTED_DEVICE` for CUDA buffers (use
/// `era_gaussian_forward_delta` and `era_gaussian_backward_delta` there).
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_gaussian_forward_saved(
    head: *const EraHead,
    z: *const DLTensor,
    delta: *const DLTensor,
    out: *mut DLTensor,
    saved: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // host memory only
        let g = head_ref(head)?.as_gaussian("era_gaussian_forward_saved")?;
        let zd = Desc::new(z, "z")?;
        let dd = Desc::optional(delta, "delta")?;
        let od = Desc::new(out, "out")?;
        let sd = Desc::new(saved, "saved")?;
        check_outputs(&[&od, &sd])?;
        expect_batch_shape(&zd, 1, &[])?;
        expect_same_shape(&zd, &[&od, &sd])?;
        if let Some(x) = &dd {
            check_delta_shape(&zd, x)?;
        }
        let all = Descs::new(&zd, [Some(&od), Some(&sd), dd.as_ref()]);
        host_only(&all, "era_gaussian_forward_saved", "era_gaussian_forward_delta")?;
        // f32 rows read where they lie, one delta for every row, contiguous
        // outputs that no input overlaps: the head's rows path, no array views
        let one = one_f32_delta(g, dd.as_ref());
        let overlap = [&od, &sd].iter().any(|o| o.overlaps(&zd) || dd.as_ref().is_some_and(|x| o.overlaps(x)));
        if !overlap {
            if let (Some(zr), Some(delta), Some(os), Some(ss)) = (zd.f32_rows(), one, od.f32_contiguous_mut(), sd.f32_contiguous_mut()) {
                return g.forward_saving_rows_f32(zr, delta, os, ss);
            }
        }
        with_float!(zd.dtype, "z", T => {
            od.expect_dtype(zd.dtype)?;
            sd.expect_dtype(zd.dtype)?;
            let outs = [&od, &sd];
            let zi = zd.input::<T>(&outs)?;
            let da = delta_or_stored::<T>(g, dd.as_ref(), zd.dtype, &outs)?;
            g.forward_saving(zi.view(), da.arg(), od.view_mut::<T>(), sd.view_mut::<T>())
        })
    }
}

/// Gaussian backward (VJP) from the residual `saved` that
/// `era_gaussian_forward_saved` wrote, instead of `z`: the same `grad_z`
/// and `grad_delta` as `era_gaussian_backward_delta` (the same bits), with
/// no exponential. `saved`, `grad_out`, `grad_z`: the same shape and dtype;
/// `grad_z` may alias `saved` or `grad_out`. `delta`: the one given to the
/// forward, or NULL for the head's stored value. `grad_delta` (may be NULL)
/// as in `era_gaussian_backward_delta`; it needs a `delta` tensor.
/// A `saved` that is not a row-wise softmax gives a result without meaning
/// (it is not checked). Host memory only.
///
/// Errors: as `era_gaussian_forward_saved`; `NULL_POINTER` for a
/// `grad_delta` without `delta`.
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_gaussian_backward_saved(
    head: *const EraHead,
    saved: *const DLTensor,
    delta: *const DLTensor,
    grad_out: *const DLTensor,
    grad_z: *mut DLTensor,
    grad_delta: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // host memory only
        let g = head_ref(head)?.as_gaussian("era_gaussian_backward_saved")?;
        let sd = Desc::new(saved, "saved")?;
        let dd = Desc::optional(delta, "delta")?;
        let gd = Desc::new(grad_out, "grad_out")?;
        let od = Desc::new(grad_z, "grad_z")?;
        let gdd = Desc::optional(grad_delta, "grad_delta")?;
        let outs = Descs::new(&od, [gdd.as_ref()]);
        check_outputs(&outs)?;
        expect_batch_shape(&sd, 1, &[])?;
        expect_same_shape(&sd, &[&gd, &od])?;
        if let Some(x) = &dd {
            check_delta_shape(&sd, x)?;
        }
        match (&dd, &gdd) {
            (None, Some(_)) => bail!(NullPointer, "grad_delta needs a delta tensor (delta is NULL)"),
            (Some(x), Some(y)) if !is_scalar(x) => expect_same_shape(x, &[y])?,
            _ => {}
        }
        let all = Descs::new(&sd, [Some(&gd), Some(&od), dd.as_ref(), gdd.as_ref()]);
        host_only(&all, "era_gaussian_backward_saved", "era_gaussian_backward_delta")?;
        // as in the forward: f32 rows, one delta, contiguous outputs that no
        // input overlaps, a one-element grad_delta (or none)
        let one = one_f32_delta(g, dd.as_ref());
        let ins = Descs::new(&sd, [Some(&gd), dd.as_ref()]);
        let overlap = outs.iter().any(|o| ins.iter().any(|i| o.overlaps(i)));
        if !overlap && gdd.as_ref().is_none_or(|x| x.numel() == 1) {
            let gdv = match &gdd {
                Some(x) => x.f32_contiguous_mut().map(Some),
                None => Some(None),
            };
            if let (Some(sr), Some(delta), Some(gr), Some(os), Some(gdv)) = (sd.f32_rows(), one, gd.f32_rows(), od.f32_contiguous_mut(), gdv) {
                let sum = g.backward_saved_rows_f32(sr, delta, gr, os)?;
                if let Some(v) = gdv {
                    v[0] = sum as f32;
                }
                return Ok(());
            }
        }
        with_float!(sd.dtype, "saved", T => {
            gd.expect_dtype(sd.dtype)?;
            od.expect_dtype(sd.dtype)?;
            if let Some(x) = &gdd {
                x.expect_dtype(sd.dtype)?;
            }
            let si = sd.input::<T>(&outs)?;
            let gi = gd.input::<T>(&outs)?;
            let da = delta_or_stored::<T>(g, dd.as_ref(), sd.dtype, &outs)?;
            let gdv = gdd.as_ref().map(|x| x.view_mut::<T>());
            g.backward_saved(si.view(), da.arg(), gi.view(), od.view_mut::<T>(), gdv)
        })
    }
}

/// Softmax-head forward that also writes the residual of the backward:
/// `out` as `era_head_forward` computes it (the same bits) and `saved =
/// softmax(z)` row-wise. Pass `saved` to `era_softmax_backward_saved` in
/// place of `z`. `z`, `out`, `saved`: the same shape `[..., n]` and dtype
/// (float32 or float64); `out` and `saved` must not overlap each other
/// (either may alias `z`). Host memory only.
///
/// Errors: as `era_head_forward`; `WRONG_HEAD_KIND` for a head that is not a
/// softmax head; `INVALID_LAYOUT` when `out` and `saved` overlap;
/// `UNSUPPORTED_DEVICE` for CUDA buffers (use `era_head_forward` and
/// `era_head_backward` there).
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_softmax_forward_saved(
    head: *const EraHead,
    z: *const DLTensor,
    out: *mut DLTensor,
    saved: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // host memory only
        softmax_forward_saved("era_softmax_forward_saved", head, z, out, saved, None)
    }
}

/// The body of `era_softmax_forward_saved` (`dwdh` `None`) and of
/// `era_softmax_forward_saved_dw`.
unsafe fn softmax_forward_saved(
    op: &str,
    head: *const EraHead,
    z: *const DLTensor,
    out: *mut DLTensor,
    saved: *mut DLTensor,
    dwdh: Option<*mut DLTensor>,
) -> Result<()> {
    let h = head_ref(head)?.as_softmax(op)?;
    let zd = Desc::new(z, "z")?;
    let od = Desc::new(out, "out")?;
    let sd = Desc::new(saved, "saved")?;
    let qd = dwdh.map(|q| Desc::new(q, "dwdh")).transpose()?;
    let outs = Descs::new(&od, [Some(&sd), qd.as_ref()]);
    check_outputs(&outs)?;
    expect_batch_shape(&zd, 1, &[])?;
    expect_same_shape(&zd, &outs)?;
    let all = Descs::new(&zd, [Some(&od), Some(&sd), qd.as_ref()]);
    host_only(&all, op, "era_head_forward")?;
    with_float!(zd.dtype, "z", T => {
        for d in outs.iter() {
            d.expect_dtype(zd.dtype)?;
        }
        let zi = zd.input::<T>(&outs)?;
        match &qd {
            None => h.forward_saving(zi.view(), od.view_mut::<T>(), sd.view_mut::<T>()),
            Some(q) => h.forward_saving_dw(zi.view(), od.view_mut::<T>(), sd.view_mut::<T>(), q.view_mut::<T>()),
        }
    })
}

/// Softmax-head backward (VJP) from the residual `saved` that
/// `era_softmax_forward_saved` wrote, instead of `z`: no exponential; the
/// same bits as `era_head_backward` on the vectorised float32 kernels, equal
/// to rounding elsewhere (docs/math.md#saved-softmax). `saved`, `grad_out`,
/// `grad_z`: the same shape and dtype; `grad_z` may alias either input.
/// A `saved` that is not a row-wise softmax gives a result without meaning
/// (it is not checked). Host memory only.
///
/// Errors: as `era_softmax_forward_saved`.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_softmax_backward_saved(
    head: *const EraHead,
    saved: *const DLTensor,
    grad_out: *const DLTensor,
    grad_z: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // host memory only
        softmax_backward_saved("era_softmax_backward_saved", head, saved, None, grad_out, grad_z)
    }
}

/// The body of `era_softmax_backward_saved` (`dwdh` `None`) and of
/// `era_softmax_backward_saved_dw`.
unsafe fn softmax_backward_saved(
    op: &str,
    head: *const EraHead,
    saved: *const DLTensor,
    dwdh: Option<*const DLTensor>,
    grad_out: *const DLTensor,
    grad_z: *mut DLTensor,
) -> Result<()> {
    let h = head_ref(head)?.as_softmax(op)?;
    let sd = Desc::new(saved, "saved")?;
    let qd = dwdh.map(|q| Desc::new(q, "dwdh")).transpose()?;
    let gd = Desc::new(grad_out, "grad_out")?;
    let od = Desc::new(grad_z, "grad_z")?;
    check_outputs(&[&od])?;
    expect_batch_shape(&sd, 1, &[])?;
    let others = match &qd {
        Some(q) => Descs::new(q, [Some(&gd), Some(&od)]),
        None => Descs::new(&gd, [Some(&od), None]),
    };
    expect_same_shape(&sd, &others)?;
    let all = Descs::new(&sd, [qd.as_ref(), Some(&gd), Some(&od)]);
    host_only(&all, op, "era_head_backward")?;
    with_float!(sd.dtype, "saved", T => {
        for d in others.iter() {
            d.expect_dtype(sd.dtype)?;
        }
        let si = sd.input::<T>(&[&od])?;
        let gi = gd.input::<T>(&[&od])?;
        match &qd {
            None => h.backward_saved(si.view(), gi.view(), od.view_mut::<T>()),
            Some(q) => {
                let qi = q.input::<T>(&[&od])?;
                h.backward_saved_dw(si.view(), qi.view(), gi.view(), od.view_mut::<T>())
            }
        }
    })
}

/// `era_softmax_forward_saved` that also writes a second residual, `dwdh =
/// dw/dh = (1/sqrt(2u) + 0.75)/h` per element (docs/math.md#saved-softmax):
/// with both, `era_softmax_backward_saved_dw` computes the backward with a
/// few multiplications per element on the vectorised float32 kernels. `out` and
/// `saved` are the same bits as `era_softmax_forward_saved` writes. `z`,
/// `out`, `saved`, `dwdh`: the same shape `[..., n]` and dtype (float32 or
/// float64); the three outputs must not overlap each other (any may alias
/// `z`). Host memory only.
///
/// Errors: as `era_softmax_forward_saved`; `INVALID_LAYOUT` when two outputs
/// overlap.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_softmax_forward_saved_dw(
    head: *const EraHead,
    z: *const DLTensor,
    out: *mut DLTensor,
    saved: *mut DLTensor,
    dwdh: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // host memory only
        softmax_forward_saved("era_softmax_forward_saved_dw", head, z, out, saved, Some(dwdh))
    }
}

/// Softmax-head backward (VJP) from the two residuals that
/// `era_softmax_forward_saved_dw` wrote: on the vectorised float32 kernels
/// a few multiplications per element and a sum per row (no exponential,
/// logarithm, square root or division), the same bits as
/// `era_head_backward`; elsewhere (float64, and heads whose float32 rows run
/// in float64) it computes what `era_softmax_backward_saved` computes from
/// `saved` and does not read `dwdh`. `saved`, `dwdh`, `grad_out`, `grad_z`:
/// the same shape and dtype; `grad_z` may alias any input. Residuals that
/// are not what the forward wrote give a result without meaning (they are
/// not checked). Host memory only.
///
/// Errors: as `era_softmax_backward_saved`.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_softmax_backward_saved_dw(
    head: *const EraHead,
    saved: *const DLTensor,
    dwdh: *const DLTensor,
    grad_out: *const DLTensor,
    grad_z: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // host memory only
        softmax_backward_saved("era_softmax_backward_saved_dw", head, saved, Some(dwdh), grad_out, grad_z)
    }
}
