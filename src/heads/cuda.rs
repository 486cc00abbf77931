//! The heads on CUDA buffers: what the C functions call when their tensors
//! live on a GPU. Each function checks what the CPU path checks without
//! reading device memory (shapes against the configuration, scalar
//! arguments), derives the kernel constants from the head exactly as the CPU
//! path does, and launches the kernels of `crate::kernels::cuda` on the
//! caller's stream.
//!
//! What cannot be checked without reading device memory (and so without a
//! synchronisation) is not checked: a per-row `delta` outside the feasible
//! range gives that row NaN log-stds instead of `INFEASIBLE_TARGET`; token
//! labels outside `[0, V)` give NaN log-probs and zero gradients instead of
//! `INVALID_VALUE`; a response id below -1 counts as masked; a scale that is
//! not finite and positive propagates into the gradient.

use std::ffi::c_void;

use crate::error::{bail, Result};
use crate::heads::gaussian::GaussianHead;
use crate::heads::softmax::SoftmaxHead;
use crate::heads::token::TokenHead;
use crate::kernels::cuda::{
    grid, kernel_name, token_workspace_bytes, with_device, Dtype, EntropyParams, GaussianMaskedParams, GaussianParams, SoftmaxParams,
    SumRowsParams, Tensor, TokenParams, Workspace, BLOCK_ITEMS, BLOCK_ROWS, BLOCK_VECTOR,
};
use crate::kernels::gaussian::gaussian_k;

/// A `CUstream` (NULL: the legacy default stream).
pub type Stream = *mut c_void;

/// Rows of `dtype` elements and their count.
#[derive(Clone, Copy)]
pub struct Rows {
    /// The tensor seen as rows.
    pub t: Tensor,
    /// How many rows.
    pub rows: usize,
    /// Columns per row (the last extent; 1 for a per-row tensor).
    pub cols: usize,
    /// Its element type.
    pub dtype: Dtype,
}

/// `delta` of a Gaussian call on the device.
pub enum CudaDelta {
    /// The head's stored value (read on the host).
    Head,
    /// A device tensor: one value per row, or (a 0-d or one-element tensor) one for all.
    Device(Tensor),
}

fn need_dim(name: &str, r: &Rows, want: usize, what: &str) -> Result<()> {
    if r.cols != want {
        bail!(InvalidShape, "{name} has last dimension {}, but the head has {what} = {want}", r.cols);
    }
    Ok(())
}

/// Gaussian forward (docs/math.md#gaussian-forward) on device `device`.
///
/// # Safety
/// The tensors describe live memory of CUDA device `device`, and `stream` is
/// NULL (the legacy default stream) or a stream of that device.
pub unsafe fn gaussian_forward(h: &GaussianHead, device: i32, stream: Stream, z: &Rows, delta: CudaDelta, out: &Rows) -> Result<()> {
    gaussian(h, device, stream, z, delta, None, out, None, None)
}

/// Gaussian backward (docs/math.md#gaussian-backward): `grad_z`, and d/d delta
/// per row (`grad_delta` with one value per row) or summed (`sum_delta`).
///
/// # Safety
/// The tensors describe live memory of CUDA device `device`, and `stream` is
/// NULL (the legacy default stream) or a stream of that device.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gaussian_backward(
    h: &GaussianHead,
    device: i32,
    stream: Stream,
    z: &Rows,
    delta: CudaDelta,
    grad_out: &Rows,
    grad_z: &Rows,
    grad_delta: Option<(Tensor, bool)>,
) -> Result<()> {
    gaussian(h, device, stream, z, delta, Some(grad_out), grad_z, grad_delta, None)
}

/// The mask of a masked Gaussian call (docs/math.md#gaussian-mask): the mask
/// rows (the dtype of `z`) and the inactive entries' value (`None`: `z`
/// itself, gradient `grad_out`).
pub struct CudaMask {
    /// The mask, with the shape of `z`.
    pub mask: Rows,
    /// The fill value, or pass-through.
    pub fill: Option<f64>,
}

/// The masked Gaussian head's forward (`grad_out` None) or backward on device
/// `device`: as [`gaussian_forward`] / [`gaussian_backward`] under `mask`. Mask
/// entries are not checked on the device: a row with an entry other than 0 or
/// 1 gets NaN at every coordinate (and a NaN d/d delta).
///
/// # Safety
/// The tensors describe live memory of CUDA device `device`, and `stream` is
/// NULL (the legacy default stream) or a stream of that device.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gaussian_masked(
    h: &GaussianHead,
    device: i32,
    stream: Stream,
    z: &Rows,
    mask: &CudaMask,
    delta: CudaDelta,
    grad_out: Option<&Rows>,
    out: &Rows,
    grad_delta: Option<(Tensor, bool)>,
) -> Result<()> {
    need_dim("mask", &mask.mask, h.config().dim, "dim D")?;
    gaussian(h, device, stream, z, delta, grad_out, out, grad_delta, Some(mask))
}

#[allow(clippy::too_many_arguments)]
unsafe fn gaussian(
    h: &GaussianHead,
    device: i32,
    stream: Stream,
    z: &Rows,
    delta: CudaDelta,
    grad_out: Option<&Rows>,
    out: &Rows,
    grad_delta: Option<(Tensor, bool)>,
    mask: Option<&CudaMask>,
) -> Result<()> {
    let cfg = h.config();
    need_dim("z", z, cfg.dim, "dim D")?;
    let (delta_mode, k_scalar, delta_t) = match delta {
        CudaDelta::Head => {
            let d = h.delta();
            cfg.check_delta(d)?;
            (0, gaussian_k(cfg, d), Tensor::ABSENT)
        }
        CudaDelta::Device(t) => (1, 0.0, t),
    };
    let mut p = GaussianParams {
        z: z.t,
        grad_out: grad_out.map_or(Tensor::ABSENT, |g| g.t),
        out: out.t,
        delta: delta_t,
        grad_delta: Tensor::ABSENT,
        row_sums: std::ptr::null_mut(),
        rows: z.rows as i64,
        dim: cfg.dim as i64,
        delta_mode,
        grad_delta_mode: 0,
        k_scalar,
        k_base: gaussian_k(cfg, 0.0),
        lo: cfg.log_std_min,
        hi: cfg.log_std_max,
    };
    let backward = grad_out.is_some();
    with_device(device, |s| {
        if z.rows == 0 {
            // no rows: a summed d/d delta is 0
            if let Some((t, true)) = grad_delta {
                let sum = SumRowsParams { src: std::ptr::null(), n: 0, dst: t.data, dst_dtype: t.dtype, pad: 0 };
                // SAFETY: dst is the caller's one-element device tensor
                unsafe { s.launch("era_sum_rows", 1, BLOCK_ITEMS, stream, &sum)? };
            }
            return Ok(());
        }
        let family = match (backward, mask.is_some()) {
            (false, false) => "gaussian_forward",
            (true, false) => "gaussian_backward",
            (false, true) => "gaussian_masked_forward",
            (true, true) => "gaussian_masked_backward",
        };
        let name = kernel_name(family, z.dtype)?;
        let ws = match grad_delta {
            Some((t, false)) => {
                p.grad_delta = t;
                p.grad_delta_mode = 1;
                None
            }
            Some((_, true)) => {
                let w = Workspace::new(s, z.rows.saturating_mul(8), stream)?;
                p.row_sums = w.ptr as *mut f64;
                p.grad_delta_mode = 2;
                Some(w)
            }
            None => None,
        };
        // SAFETY: the tensors were checked by the caller to describe device memory of
        // these shapes; the workspace holds one f64 per row
        match mask {
            None => unsafe { s.launch(name, grid(z.rows, BLOCK_ROWS), BLOCK_ROWS, stream, &p)? },
            Some(m) => {
                let q = GaussianMaskedParams {
                    g: p,
                    mask: m.mask.t,
                    fill: m.fill.unwrap_or(0.0),
                    fill_mode: i32::from(m.fill.is_some()),
                    pad: 0,
                };
                // SAFETY: as above; the mask has the shape of z
                unsafe { s.launch(name, grid(z.rows, BLOCK_ROWS), BLOCK_ROWS, stream, &q)? }
            }
        }
        if let (Some(w), Some((t, true))) = (&ws, grad_delta) {
            let sum = SumRowsParams { src: w.ptr as *const f64, n: z.rows as i64, dst: t.data, dst_dtype: t.dtype, pad: 0 };
            // SAFETY: as above
            unsafe { s.launch("era_sum_rows", 1, BLOCK_ITEMS, stream, &sum)? };
        }
        Ok(())
    })
}

/// Softmax head forward (`grad_out` None) or backward on device `device`.
///
/// # Safety
/// The tensors describe live memory of CUDA device `device`, and `stream` is
/// NULL (the legacy default stream) or a stream of that device.
pub unsafe fn softmax(h: &SoftmaxHead, device: i32, stream: Stream, z: &Rows, grad_out: Option<&Rows>, out: &Rows) -> Result<()> {
    need_dim("z", z, h.config().num_classes, "num_classes n")?;
    let k = h.constants();
    let p = SoftmaxParams {
        z: z.t,
        grad_out: grad_out.map_or(Tensor::ABSENT, |g| g.t),
        out: out.t,
        rows: z.rows as i64,
        n: z.cols as i64,
        slope: k.slope,
        b: k.b,
        ub: k.ub,
        u_ub: k.u_ub,
        f64_math: i32::from(!h.f32_kernels()),
        pad: 0,
    };
    if z.rows == 0 {
        return Ok(());
    }
    let name = kernel_name(if grad_out.is_some() { "softmax_backward" } else { "softmax_forward" }, z.dtype)?;
    with_device(device, |s| {
        // SAFETY: shapes checked by the caller
        unsafe { s.launch(name, grid(z.rows, 1), BLOCK_VECTOR, stream, &p) }
    })
}

/// Per-row entropies: `family` is "gaussian_entropy", "softmax_entropy" or
/// "truncnorm_entropy" (`x2` the log-stds, `bounds` the truncation).
///
/// # Safety
/// The tensors describe live memory of CUDA device `device`, and `stream` is
/// NULL (the legacy default stream) or a stream of that device.
#[allow(clippy::too_many_arguments)]
pub unsafe fn entropy(
    family: &'static str,
    device: i32,
    stream: Stream,
    x: &Rows,
    x2: Option<&Rows>,
    out: &Rows,
    inv_temperature: f64,
    bounds: (f64, f64),
) -> Result<()> {
    let p = EntropyParams {
        x: x.t,
        x2: x2.map_or(Tensor::ABSENT, |r| r.t),
        out: out.t,
        rows: x.rows as i64,
        cols: x.cols as i64,
        inv_temperature,
        low: bounds.0,
        high: bounds.1,
    };
    if x.rows == 0 {
        return Ok(());
    }
    let name = kernel_name(family, x.dtype)?;
    let (blocks, threads) =
        if family == "softmax_entropy" { (grid(x.rows, 1), BLOCK_VECTOR) } else { (grid(x.rows, BLOCK_ROWS), BLOCK_ROWS) };
    with_device(device, |s| {
        // SAFETY: shapes checked by the caller
        unsafe { s.launch(name, blocks, threads, stream, &p) }
    })
}

/// The token head's tensors on the device (outputs absent where not wanted).
pub struct TokenTensors {
    /// `[N, V]` logits.
    pub logits: Rows,
    /// Labels, response ids (per token).
    pub labels: Tensor,
    /// Response ids.
    pub ids: Tensor,
    /// Forward: advantages; backward: absent.
    pub advantages: Tensor,
    /// Backward: the forward's scales and the upstream gradient.
    pub scale: Tensor,
    /// Backward: d loss / d logprob.
    pub grad_logprobs: Tensor,
    /// Forward outputs.
    pub outputs: [Tensor; 5],
    /// Backward output `[N, V]`.
    pub grad_logits: Tensor,
}

fn token_params(h: &TokenHead, t: &TokenTensors, workspace: *mut c_void) -> TokenParams {
    let c = h.config();
    let v = t.logits.cols;
    let [lp, en, sc, ao, re] = t.outputs;
    TokenParams {
        logits: t.logits.t,
        labels: t.labels,
        ids: t.ids,
        advantages: t.advantages,
        scale: t.scale,
        grad_logprobs: t.grad_logprobs,
        logprobs_out: lp,
        entropy_out: en,
        scale_out: sc,
        advantages_out: ao,
        response_entropy_out: re,
        grad_logits: t.grad_logits,
        n: t.logits.rows as i64,
        v: v as i64,
        vocab_topk: if c.vocab_topk >= v { 0 } else { c.vocab_topk as i64 },
        k: c.k,
        omega_low: c.omega_low,
        omega_high: c.omega_high,
        top_fraction: c.top_fraction,
        inv_temperature: 1.0 / c.temperature,
        advantage_scaling: i32::from(c.advantage_scaling),
        pad: 0,
        workspace,
    }
}

/// Token forward (docs/math.md#token-forward): per-token statistics (one read
/// of the logits), the per-response forking-token entropy, the scale decision
/// and the outputs; three launches on `stream`.
///
/// # Safety
/// The tensors describe live memory of CUDA device `device`, and `stream` is
/// NULL (the legacy default stream) or a stream of that device.
pub unsafe fn token_forward(h: &TokenHead, device: i32, stream: Stream, t: &TokenTensors) -> Result<()> {
    let n = t.logits.rows;
    if n == 0 {
        return Ok(());
    }
    let stats = kernel_name("token_stats", t.logits.dtype)?;
    with_device(device, |s| {
        let ws = Workspace::new(s, token_workspace_bytes(n), stream)?;
        let p = token_params(h, t, ws.ptr as *mut c_void);
        // SAFETY: shapes checked by the caller; the workspace has the size the kernels need
        unsafe {
            s.launch(stats, grid(n, 1), BLOCK_VECTOR, stream, &p)?;
            s.launch("era_token_group", grid(n, BLOCK_ITEMS), BLOCK_ITEMS, stream, &p)?;
            s.launch("era_token_finish", grid(n, BLOCK_ITEMS), BLOCK_ITEMS, stream, &p)?;
        }
        Ok(())
    })
}

/// Token backward (docs/math.md#token-backward): one read of the logits, one
/// write of their gradient.
///
/// # Safety
/// The tensors describe live memory of CUDA device `device`, and `stream` is
/// NULL (the legacy default stream) or a stream of that device.
pub unsafe fn token_backward(h: &TokenHead, device: i32, stream: Stream, t: &TokenTensors) -> Result<()> {
    let n = t.logits.rows;
    if n == 0 {
        return Ok(());
    }
    let name = kernel_name("token_backward", t.logits.dtype)?;
    let p = token_params(h, t, std::ptr::null_mut());
    with_device(device, |s| {
        // SAFETY: shapes checked by the caller
        unsafe { s.launch(name, grid(n, 1), BLOCK_VECTOR, stream, &p) }
    })
}
