//! The Gaussian head's `delta`: as a per-call input tensor (forward and
//! backward with d/d delta), the head under a per-row active-dimension mask,
//! and the head's stored value and its learner.

use std::ffi::c_void;

use crate::capi::calls::{check_outputs, expect_batch_shape, expect_same_shape, with_float, Descs};
#[cfg(feature = "cuda")]
use crate::capi::cuda;
#[cfg(feature = "cuda")]
use crate::capi::dlpack::{call_device, Device};
use crate::capi::dlpack::{DLTensor, DType, Desc};
use crate::capi::head::{head_ref, EraHead};
use crate::capi::{ffi_boundary, out_ref, EraStatus};
use crate::error::Result;
use crate::heads::gaussian::{DeltaArg, GaussianHead};

/// Whether a delta tensor is a scalar for all rows (0-d, or one element of rank <= 1).
pub(crate) fn is_scalar(d: &Desc<'_>) -> bool {
    d.shape.is_empty() || (d.numel() == 1 && d.shape.len() <= 1)
}

/// Fails unless `delta` is a scalar or has the shape of `z` without its last axis.
pub(crate) fn check_delta_shape(z: &Desc<'_>, delta: &Desc<'_>) -> Result<()> {
    if is_scalar(delta) {
        return Ok(());
    }
    expect_batch_shape(z, 1, &[delta])
}

/// Reads a delta tensor: 0-d or one element = a scalar for all rows;
/// otherwise one value per row.
pub(crate) unsafe fn delta_arg<'a, T: crate::kernels::Element>(d: &'a Desc<'a>, outputs: &[&Desc<'_>]) -> Result<DeltaArgOwned<'a, T>> {
    Ok(if is_scalar(d) {
        let v = d.view::<T>();
        DeltaArgOwned::Scalar(v.iter().next().map(|x| x.to_f64()).unwrap_or(f64::NAN))
    } else {
        DeltaArgOwned::PerRow(d.input::<T>(outputs)?)
    })
}

/// The `delta` of a call: its tensor (which must have `dtype`), or the head's
/// stored value where the caller passed NULL.
pub(crate) unsafe fn delta_or_stored<'a, T: crate::kernels::Element>(
    g: &GaussianHead,
    d: Option<&'a Desc<'a>>,
    dtype: DType,
    outputs: &[&Desc<'_>],
) -> Result<DeltaArgOwned<'a, T>> {
    match d {
        Some(x) => {
            x.expect_dtype(dtype)?;
            delta_arg::<T>(x, outputs)
        }
        None => Ok(DeltaArgOwned::Scalar(g.delta())),
    }
}

/// One `delta` for every row as a number, for the f32 rows paths: the head's stored
/// value (NULL tensor) or a one-element f32 tensor's; `None` otherwise.
pub(crate) unsafe fn one_f32_delta(g: &GaussianHead, d: Option<&Desc<'_>>) -> Option<f64> {
    match d {
        None => Some(g.delta()),
        Some(x) if is_scalar(x) => x.f32_value(),
        Some(_) => None,
    }
}

pub(crate) enum DeltaArgOwned<'a, T> {
    Scalar(f64),
    PerRow(ndarray::CowArray<'a, T, ndarray::IxDyn>),
}

impl<T> DeltaArgOwned<'_, T> {
    pub(crate) fn arg(&self) -> DeltaArg<'_, T> {
        match self {
            DeltaArgOwned::Scalar(v) => DeltaArg::Scalar(*v),
            DeltaArgOwned::PerRow(a) => DeltaArg::PerRow(a.view()),
        }
    }
}

/// Gaussian forward with `delta` as an input tensor instead of the head's
/// stored value (for frameworks that treat `delta` as a traced operand).
/// `delta` has the dtype of `z` and is 0-d or `[1]` (one value for every row)
/// or the shape of `z` without its last axis (one value per row).
///
/// Errors: as `era_head_forward`; `WRONG_HEAD_KIND` for a non-Gaussian head;
/// `INFEASIBLE_TARGET` if some `H0 + delta` exceeds the widest Gaussian;
/// `INVALID_ARGUMENT` for a NaN delta.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_gaussian_forward_delta(
    head: *const EraHead,
    z: *const DLTensor,
    delta: *const DLTensor,
    out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let g = head_ref(head)?.as_gaussian("era_gaussian_forward_delta")?;
        let zd = Desc::new(z, "z")?;
        let dd = Desc::new(delta, "delta")?;
        let od = Desc::new(out, "out")?;
        check_outputs(&[&od])?;
        expect_batch_shape(&zd, 1, &[])?;
        expect_same_shape(&zd, &[&od])?;
        check_delta_shape(&zd, &dd)?;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(dev) = call_device(&[&zd, &dd, &od])? {
            return cuda::gaussian_delta(g, dev, stream, &zd, &dd, is_scalar(&dd), None, &od, None);
        }
        // f32 rows in host memory read where they lie, one delta for every
        // row, a contiguous output that no input overlaps (a framework op's
        // usual call): straight to the head's rows path, no array views
        if is_scalar(&dd) && !od.overlaps(&zd) && !od.overlaps(&dd) {
            if let (Some(zr), Some(delta), Some(os)) = (zd.f32_rows(), dd.f32_value(), od.f32_contiguous_mut()) {
                return g.forward_rows_f32(zr, delta, os);
            }
        }
        with_float!(zd.dtype, "z", T => {
            dd.expect_dtype(zd.dtype)?;
            od.expect_dtype(zd.dtype)?;
            let zi = zd.input::<T>(&[&od])?;
            let da = delta_arg::<T>(&dd, &[&od])?;
            g.forward_with_delta(zi.view(), da.arg(), od.view_mut::<T>())
        })
    }
}

/// Gaussian backward with `delta` as an input tensor (see
/// `era_gaussian_forward_delta`). `grad_delta` (may be NULL) receives
/// d loss / d delta with the shape of `delta`: for a scalar delta, the sum
/// over all rows.
///
/// Errors: as `era_gaussian_forward_delta`.
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_gaussian_backward_delta(
    head: *const EraHead,
    z: *const DLTensor,
    delta: *const DLTensor,
    grad_out: *const DLTensor,
    grad_z: *mut DLTensor,
    grad_delta: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let g = head_ref(head)?.as_gaussian("era_gaussian_backward_delta")?;
        let zd = Desc::new(z, "z")?;
        let dd = Desc::new(delta, "delta")?;
        let gd = Desc::new(grad_out, "grad_out")?;
        let od = Desc::new(grad_z, "grad_z")?;
        let gdd = Desc::optional(grad_delta, "grad_delta")?;
        let outs = Descs::new(&od, [gdd.as_ref()]);
        check_outputs(&outs)?;
        expect_batch_shape(&zd, 1, &[])?;
        expect_same_shape(&zd, &[&gd, &od])?;
        check_delta_shape(&zd, &dd)?;
        if let Some(x) = &gdd {
            if !is_scalar(&dd) {
                expect_same_shape(&dd, &[x])?;
            }
        }
        #[cfg(feature = "cuda")]
        {
            let mut all = vec![&zd, &dd, &gd, &od];
            all.extend(gdd.as_ref());
            if let Device::Cuda(dev) = call_device(&all)? {
                return cuda::gaussian_delta(g, dev, stream, &zd, &dd, is_scalar(&dd), Some(&gd), &od, gdd.as_ref());
            }
        }
        // as in the forward: f32 rows read where they lie, one delta, contiguous
        // outputs that no input overlaps, a one-element grad_delta (or none)
        let overlap = outs.iter().any(|o| [&zd, &dd, &gd].iter().any(|i| o.overlaps(i)));
        if is_scalar(&dd) && !overlap && gdd.as_ref().is_none_or(|x| x.numel() == 1) {
            let gdv = match &gdd {
                Some(x) => x.f32_contiguous_mut().map(Some),
                None => Some(None),
            };
            if let (Some(zr), Some(delta), Some(gr), Some(os), Some(gdv)) =
                (zd.f32_rows(), dd.f32_value(), gd.f32_rows(), od.f32_contiguous_mut(), gdv)
            {
                let sum = g.backward_rows_f32(zr, delta, gr, os)?;
                if let Some(v) = gdv {
                    v[0] = sum as f32;
                }
                return Ok(());
            }
        }
        with_float!(zd.dtype, "z", T => {
            dd.expect_dtype(zd.dtype)?;
            gd.expect_dtype(zd.dtype)?;
            od.expect_dtype(zd.dtype)?;
            if let Some(x) = &gdd {
                x.expect_dtype(zd.dtype)?;
            }
            let zi = zd.input::<T>(&outs)?;
            let gi = gd.input::<T>(&outs)?;
            let da = delta_arg::<T>(&dd, &outs)?;
            let gdv = gdd.as_ref().map(|x| x.view_mut::<T>());
            g.backward_with_delta(zi.view(), da.arg(), gi.view(), od.view_mut::<T>(), gdv)
        })
    }
}

/// Stores the Gaussian head's current `delta` in `*out`.
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`.
///
/// # Safety
/// `head` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_delta(head: *const EraHead, out: *mut f64) -> EraStatus {
    ffi_boundary! {
        let g = head_ref(head)?.as_gaussian("era_head_delta")?;
        *out_ref(out, "out")? = g.delta();
        Ok(())
    }
}

/// Sets the Gaussian head's `delta`, clamped so that the target stays
/// feasible (`delta <= D*(log_std_max + 0.5*ln(2*pi*e)) - H0`). The learner's
/// Adam moments are kept. Safe to call while other threads run forward/backward.
/// A CUDA graph captured earlier keeps the delta of its capture (see `era_head_forward`).
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`, `INVALID_ARGUMENT` (NaN or -inf).
///
/// # Safety
/// `head` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn era_head_set_delta(head: *mut EraHead, delta: f64) -> EraStatus {
    ffi_boundary! {
        let g = head_ref(head)?.as_gaussian("era_head_set_delta")?;
        g.set_delta(delta)?;
        Ok(())
    }
}

/// One step of the `delta` learner (docs/math.md#delta-learning): the gradient is
/// `mean_entropy - H0`, where `mean_entropy` is the batch-mean entropy of the
/// agent's *bounded* policy (tanh-squashed or truncated). SGD or Adam per the
/// config, then clamped feasible; with the FIXED optimizer nothing changes.
/// A CUDA graph captured earlier keeps the delta of its capture (see `era_head_forward`).
/// The new value is stored in `*new_delta` unless it is NULL. Concurrent
/// updates are serialised.
///
/// Errors: `NULL_POINTER` (head), `WRONG_HEAD_KIND`, `INVALID_ARGUMENT`
/// (non-finite mean_entropy, or a step whose result would not be finite:
/// the state is then unchanged).
///
/// # Safety
/// `head` is NULL or a live handle; `new_delta` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_update_delta(head: *mut EraHead, mean_entropy: f64, new_delta: *mut f64) -> EraStatus {
    ffi_boundary! {
        let g = head_ref(head)?.as_gaussian("era_head_update_delta")?;
        let d = g.update_delta(mean_entropy)?;
        if let Some(o) = new_delta.as_mut() {
            *o = d;
        }
        Ok(())
    }
}

/// What a masked call writes at inactive coordinates: `*fill`, or (NULL) `z`.
unsafe fn inactive_of(fill: *const f64) -> crate::heads::gaussian::Inactive {
    use crate::heads::gaussian::Inactive;
    match fill.as_ref() {
        Some(&v) => Inactive::Fill(v),
        None => Inactive::PassThrough,
    }
}

/// Gaussian forward under a per-row active-dimension mask
/// (docs/math.md#gaussian-mask). `mask` has the shape and dtype of `z` and
/// holds 0 (inactive) or 1 (active) only; each row's active coordinates get
/// the head of their count `a` (target `(a/D)*(H0 + delta)`), the inactive
/// ones `*fill`, or `z` itself when `fill` is NULL. `delta` as in
/// `era_gaussian_forward_delta`, or NULL for the head's stored value. A mask
/// of ones gives `era_gaussian_forward_delta`'s result bit for bit. CUDA
/// buffers are computed on `stream` (float32 and float64; a row of ones as
/// by the unmasked head, other rows in float64 as on the host); there the
/// mask's values are not checked: a row with an entry other than 0 or 1 gets NaN at every
/// coordinate, and a per-row delta that makes the target infeasible gives NaN
/// log-stds at the active coordinates (see docs/cuda.md).
///
/// Errors: as `era_gaussian_forward_delta`; `INVALID_ARGUMENT` for a mask
/// entry other than 0 or 1 (host memory); `INVALID_SHAPE` for a mask of
/// another shape; `UNSUPPORTED_DTYPE` for a mask of another dtype.
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_gaussian_forward_masked(
    head: *const EraHead,
    z: *const DLTensor,
    mask: *const DLTensor,
    delta: *const DLTensor,
    fill: *const f64,
    out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let g = head_ref(head)?.as_gaussian("era_gaussian_forward_masked")?;
        let zd = Desc::new(z, "z")?;
        let md = Desc::new(mask, "mask")?;
        let dd = Desc::optional(delta, "delta")?;
        let od = Desc::new(out, "out")?;
        check_outputs(&[&od])?;
        expect_batch_shape(&zd, 1, &[])?;
        expect_same_shape(&zd, &[&md, &od])?;
        if let Some(x) = &dd {
            check_delta_shape(&zd, x)?;
        }
        #[cfg(feature = "cuda")]
        {
            let mut all = vec![&zd, &md, &od];
            all.extend(dd.as_ref());
            if let Device::Cuda(dev) = call_device(&all)? {
                let delta = dd.as_ref().map(|x| (x, is_scalar(x)));
                return cuda::gaussian_masked(g, dev, stream, &zd, &md, delta, fill.as_ref().copied(), None, &od, None);
            }
        }
        let inactive = inactive_of(fill);
        with_float!(zd.dtype, "z", T => {
            md.expect_dtype(zd.dtype)?;
            od.expect_dtype(zd.dtype)?;
            let zi = zd.input::<T>(&[&od])?;
            let mi = md.input::<T>(&[&od])?;
            let da = delta_or_stored::<T>(g, dd.as_ref(), zd.dtype, &[&od])?;
            g.forward_masked(zi.view(), mi.view(), da.arg(), inactive, od.view_mut::<T>())
        })
    }
}

/// Gaussian backward (VJP) under a per-row active-dimension mask (see
/// `era_gaussian_forward_masked`, with the same `mask`, `delta` and `fill`).
/// Inactive coordinates get `grad_out` (pass-through, `fill` NULL) or 0.
/// `grad_delta` (may be NULL) as in `era_gaussian_backward_delta`; it needs
/// a `delta` tensor.
///
/// Errors: as `era_gaussian_forward_masked`; `NULL_POINTER` for a
/// `grad_delta` without `delta`.
///
/// # Safety
/// Every pointer is NULL (where allowed) or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_gaussian_backward_masked(
    head: *const EraHead,
    z: *const DLTensor,
    mask: *const DLTensor,
    delta: *const DLTensor,
    fill: *const f64,
    grad_out: *const DLTensor,
    grad_z: *mut DLTensor,
    grad_delta: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    ffi_boundary! {
        let _ = stream; // CUDA calls launch on it; CPU calls ignore it
        let g = head_ref(head)?.as_gaussian("era_gaussian_backward_masked")?;
        let zd = Desc::new(z, "z")?;
        let md = Desc::new(mask, "mask")?;
        let dd = Desc::optional(delta, "delta")?;
        let gd = Desc::new(grad_out, "grad_out")?;
        let od = Desc::new(grad_z, "grad_z")?;
        let gdd = Desc::optional(grad_delta, "grad_delta")?;
        let mut outs = vec![&od];
        outs.extend(gdd.as_ref());
        check_outputs(&outs)?;
        expect_batch_shape(&zd, 1, &[])?;
        expect_same_shape(&zd, &[&md, &gd, &od])?;
        if let Some(x) = &dd {
            check_delta_shape(&zd, x)?;
        }
        match (&dd, &gdd) {
            (None, Some(_)) => crate::error::bail!(NullPointer, "grad_delta needs a delta tensor (delta is NULL)"),
            (Some(x), Some(y)) if !is_scalar(x) => expect_same_shape(x, &[y])?,
            _ => {}
        }
        #[cfg(feature = "cuda")]
        {
            let mut all = vec![&zd, &md, &gd, &od];
            all.extend(dd.as_ref());
            all.extend(gdd.as_ref());
            if let Device::Cuda(dev) = call_device(&all)? {
                let delta = dd.as_ref().map(|x| (x, is_scalar(x)));
                let fill = fill.as_ref().copied();
                return cuda::gaussian_masked(g, dev, stream, &zd, &md, delta, fill, Some(&gd), &od, gdd.as_ref());
            }
        }
        let inactive = inactive_of(fill);
        with_float!(zd.dtype, "z", T => {
            md.expect_dtype(zd.dtype)?;
            gd.expect_dtype(zd.dtype)?;
            od.expect_dtype(zd.dtype)?;
            if let Some(x) = &gdd {
                x.expect_dtype(zd.dtype)?;
            }
            let zi = zd.input::<T>(&outs)?;
            let mi = md.input::<T>(&outs)?;
            let gi = gd.input::<T>(&outs)?;
            let da = delta_or_stored::<T>(g, dd.as_ref(), zd.dtype, &outs)?;
            let gdv = gdd.as_ref().map(|x| x.view_mut::<T>());
            g.backward_masked(zi.view(), mi.view(), da.arg(), inactive, gi.view(), od.view_mut::<T>(), gdv)
        })
    }
}
