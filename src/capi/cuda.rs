//! CUDA: whether it can be used, and the CUDA branch of every compute
//! function (called by the functions of the other files once their tensors
//! turn out to be on a GPU).

#[cfg(feature = "cuda")]
use std::ffi::c_void;

use crate::capi::{ffi_boundary, out_ref, EraStatus};
use crate::error::Result;

fn device_count() -> Result<i32> {
    #[cfg(feature = "cuda")]
    {
        crate::kernels::cuda::device_count()
    }
    #[cfg(not(feature = "cuda"))]
    {
        crate::error::bail!(DeviceUnavailable, "this build of era has no CUDA support (build it with the cuda feature)")
    }
}

/// 1 if CUDA buffers can be computed on: the library was built with CUDA
/// support, the CUDA driver loads and at least one device is visible; else 0
/// (`era_cuda_device_count` then says why). Loads the driver on first use;
/// never fails.
#[no_mangle]
pub extern "C" fn era_cuda_available() -> i32 {
    ffi_boundary!(fallback = 0; i32::from(matches!(device_count(), Ok(n) if n > 0)))
}

/// Stores the number of visible CUDA devices in `*count`.
///
/// Errors: `NULL_POINTER` (count); `DEVICE_UNAVAILABLE` when CUDA cannot be
/// used (a build without CUDA support, no driver, a driver that fails to
/// initialise), with the reason in `era_last_error`.
///
/// # Safety
/// `count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_cuda_device_count(count: *mut i32) -> EraStatus {
    ffi_boundary! {
        let out = out_ref(count, "count")?;
        *out = device_count()?;
        Ok(())
    }
}

#[cfg(feature = "cuda")]
pub(crate) use branches::*;

/// The CUDA branches of the compute functions.
#[cfg(feature = "cuda")]
mod branches {
    use super::*;
    use crate::capi::calls::{with_float, with_logits};
    use crate::capi::dlpack::{DType, Desc};
    use crate::error::bail;
    use crate::heads::cuda::{self as hc, CudaDelta, TokenTensors};
    use crate::heads::Head;
    use crate::kernels::cuda::Tensor;

    // the dtype checks of the CPU branches (`with_float!`, `with_logits!`), without their dispatch
    fn floats(d: &Desc<'_>) -> Result<()> {
        with_float!(d.dtype, d.name, _T => Ok(()))
    }

    fn logits(d: &Desc<'_>) -> Result<()> {
        with_logits!(d.dtype, d.name, _T => Ok(()))
    }

    fn indices(d: &Desc<'_>) -> Result<()> {
        if !matches!(d.dtype, DType::I32 | DType::I64) {
            bail!(UnsupportedDtype, "{} has dtype {}; expected int32 or int64", d.name, d.dtype.name());
        }
        Ok(())
    }

    fn aliases(inputs: &[&Desc<'_>], outputs: &[&Desc<'_>]) -> Result<()> {
        for i in inputs {
            for o in outputs {
                i.cuda_alias_ok(o)?;
            }
        }
        Ok(())
    }

    /// `era_head_forward` / `era_head_backward` (`g` the upstream gradient) on CUDA.
    pub(crate) unsafe fn head_apply(
        h: &Head,
        dev: i32,
        stream: *mut c_void,
        z: &Desc<'_>,
        g: Option<&Desc<'_>>,
        out: &Desc<'_>,
    ) -> Result<()> {
        floats(z)?;
        for d in g.iter().copied().chain([out]) {
            d.expect_dtype(z.dtype)?;
        }
        aliases(&[z].into_iter().chain(g).collect::<Vec<_>>(), &[out])?;
        let zr = z.cuda_rows(true)?;
        let gr = g.map(|g| g.cuda_rows(true)).transpose()?;
        let or = out.cuda_rows(true)?;
        match (h, &gr) {
            (Head::Gaussian(x), None) => hc::gaussian_forward(x, dev, stream, &zr, CudaDelta::Head, &or),
            (Head::Gaussian(x), Some(gr)) => hc::gaussian_backward(x, dev, stream, &zr, CudaDelta::Head, gr, &or, None),
            (Head::Softmax(x), _) => hc::softmax(x, dev, stream, &zr, gr.as_ref(), &or),
            (Head::Token(_), _) => Ok(()),
        }
    }

    /// `era_gaussian_forward_delta` / `era_gaussian_backward_delta` on CUDA.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn gaussian_delta(
        h: &crate::heads::gaussian::GaussianHead,
        dev: i32,
        stream: *mut c_void,
        z: &Desc<'_>,
        delta: &Desc<'_>,
        scalar: bool,
        g: Option<&Desc<'_>>,
        out: &Desc<'_>,
        grad_delta: Option<&Desc<'_>>,
    ) -> Result<()> {
        floats(z)?;
        for d in [delta, out].into_iter().chain(g).chain(grad_delta) {
            d.expect_dtype(z.dtype)?;
        }
        let mut outs = vec![out];
        outs.extend(grad_delta);
        aliases(&[z, delta].into_iter().chain(g).collect::<Vec<_>>(), &outs)?;
        let zr = z.cuda_rows(true)?;
        let or = out.cuda_rows(true)?;
        let dt = if scalar {
            let r = delta.cuda_rows(false)?;
            Tensor::broadcast_scalar(r.t.data, r.dtype)
        } else {
            delta.cuda_rows(false)?.t
        };
        match g {
            None => hc::gaussian_forward(h, dev, stream, &zr, CudaDelta::Device(dt), &or),
            Some(g) => {
                let gr = g.cuda_rows(true)?;
                let gd = grad_delta.map(|d| d.cuda_rows(false).map(|r| (r.t, scalar))).transpose()?;
                hc::gaussian_backward(h, dev, stream, &zr, CudaDelta::Device(dt), &gr, &or, gd)
            }
        }
    }

    /// `era_gaussian_forward_masked` / `era_gaussian_backward_masked` on CUDA
    /// (`delta` None: the head's stored value).
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn gaussian_masked(
        h: &crate::heads::gaussian::GaussianHead,
        dev: i32,
        stream: *mut c_void,
        z: &Desc<'_>,
        mask: &Desc<'_>,
        delta: Option<(&Desc<'_>, bool)>,
        fill: Option<f64>,
        g: Option<&Desc<'_>>,
        out: &Desc<'_>,
        grad_delta: Option<&Desc<'_>>,
    ) -> Result<()> {
        floats(z)?;
        for d in [mask, out].into_iter().chain(delta.map(|d| d.0)).chain(g).chain(grad_delta) {
            d.expect_dtype(z.dtype)?;
        }
        let mut outs = vec![out];
        outs.extend(grad_delta);
        aliases(&[z, mask].into_iter().chain(delta.map(|d| d.0)).chain(g).collect::<Vec<_>>(), &outs)?;
        let zr = z.cuda_rows(true)?;
        let or = out.cuda_rows(true)?;
        let m = hc::CudaMask { mask: mask.cuda_rows(true)?, fill };
        let (cd, scalar) = match delta {
            None => (CudaDelta::Head, false),
            Some((d, true)) => {
                let r = d.cuda_rows(false)?;
                (CudaDelta::Device(Tensor::broadcast_scalar(r.t.data, r.dtype)), true)
            }
            Some((d, false)) => (CudaDelta::Device(d.cuda_rows(false)?.t), false),
        };
        let gr = g.map(|g| g.cuda_rows(true)).transpose()?;
        if let Some(d) = grad_delta {
            if scalar && d.numel() != 1 {
                bail!(InvalidShape, "grad_delta must hold one element for a scalar delta, got shape {:?}", d.shape);
            }
        }
        let gd = grad_delta.map(|d| d.cuda_rows(false).map(|r| (r.t, scalar))).transpose()?;
        hc::gaussian_masked(h, dev, stream, &zr, &m, cd, gr.as_ref(), &or, gd)
    }

    /// The entropies on CUDA: `family` as in [`hc::entropy`]; `x2` the log-stds
    /// of the truncated normal.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn entropy(
        family: &'static str,
        dev: i32,
        stream: *mut c_void,
        x: &Desc<'_>,
        x2: Option<&Desc<'_>>,
        out: &Desc<'_>,
        inv_temperature: f64,
        bounds: (f64, f64),
    ) -> Result<()> {
        floats(out)?;
        if family == "softmax_entropy" {
            logits(x)?;
        } else {
            floats(x)?;
            out.expect_dtype(x.dtype)?;
        }
        if let Some(x2) = x2 {
            x2.expect_dtype(x.dtype)?;
        }
        aliases(&[x].into_iter().chain(x2).collect::<Vec<_>>(), &[out])?;
        let xr = x.cuda_rows(true)?;
        let x2r = x2.map(|d| d.cuda_rows(true)).transpose()?;
        let or = out.cuda_rows(false)?;
        hc::entropy(family, dev, stream, &xr, x2r.as_ref(), &or, inv_temperature, bounds)
    }

    /// `era_token_forward` on CUDA (outputs in the order of the C function).
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn token_forward(
        h: &crate::heads::token::TokenHead,
        dev: i32,
        stream: *mut c_void,
        logits_d: &Desc<'_>,
        labels: &Desc<'_>,
        ids: &Desc<'_>,
        adv: &Desc<'_>,
        outs: [&Option<Desc<'_>>; 5],
    ) -> Result<()> {
        logits(logits_d)?;
        indices(labels)?;
        indices(ids)?;
        floats(adv)?;
        let present: Vec<&Desc<'_>> = outs.iter().filter_map(|o| o.as_ref()).collect();
        for o in &present {
            o.expect_dtype(adv.dtype)?;
        }
        aliases(&[logits_d, labels, ids, adv], &present)?;
        let mut outputs = [Tensor::ABSENT; 5];
        for (slot, o) in outputs.iter_mut().zip(outs) {
            if let Some(d) = o {
                *slot = d.cuda_rows(false)?.t;
            }
        }
        let t = TokenTensors {
            logits: logits_d.cuda_rows(true)?,
            labels: labels.cuda_rows(false)?.t,
            ids: ids.cuda_rows(false)?.t,
            advantages: adv.cuda_rows(false)?.t,
            scale: Tensor::ABSENT,
            grad_logprobs: Tensor::ABSENT,
            outputs,
            grad_logits: Tensor::ABSENT,
        };
        hc::token_forward(h, dev, stream, &t)
    }

    /// `era_token_backward` on CUDA.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn token_backward(
        h: &crate::heads::token::TokenHead,
        dev: i32,
        stream: *mut c_void,
        logits_d: &Desc<'_>,
        labels: &Desc<'_>,
        ids: &Desc<'_>,
        scale: &Desc<'_>,
        grad_logprobs: &Desc<'_>,
        out: &Desc<'_>,
    ) -> Result<()> {
        logits(logits_d)?;
        indices(labels)?;
        indices(ids)?;
        floats(scale)?;
        grad_logprobs.expect_dtype(scale.dtype)?;
        out.expect_dtype(logits_d.dtype)?;
        aliases(&[logits_d, labels, ids, scale, grad_logprobs], &[out])?;
        if logits_d.overlaps(out) {
            bail!(InvalidLayout, "grad_logits_out overlaps logits; on CUDA the token backward needs a separate output");
        }
        let t = TokenTensors {
            logits: logits_d.cuda_rows(true)?,
            labels: labels.cuda_rows(false)?.t,
            ids: ids.cuda_rows(false)?.t,
            advantages: Tensor::ABSENT,
            scale: scale.cuda_rows(false)?.t,
            grad_logprobs: grad_logprobs.cuda_rows(false)?.t,
            outputs: [Tensor::ABSENT; 5],
            grad_logits: out.cuda_rows(true)?.t,
        };
        hc::token_backward(h, dev, stream, &t)
    }
}
