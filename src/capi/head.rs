//! `EraHead`: construction, forward/backward/entropy of the Gaussian and
//! softmax heads, the `delta` learner, JSON, and the truncated-normal entropy.

use std::ffi::{c_char, c_void, CStr};

use crate::capi::config::EraConfig;
use crate::capi::dlpack::{check_outputs, DLTensor, DType, Desc};
use crate::capi::{boundary, in_ref, out_ref, EraStatus};
use crate::error::{bail, Result};
use crate::heads::gaussian::{gaussian_entropy, truncated_normal_entropy, DeltaArg};
use crate::heads::softmax::categorical_entropy;
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

/// Runs `$body` with `$T` bound to the Rust type of a float dtype (f32/f64).
macro_rules! with_float {
    ($dtype:expr, $name:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            other => crate::error::bail!(
                UnsupportedDtype,
                "{} has dtype {}; this operation takes float32 or float64",
                $name,
                other.name()
            ),
        }
    };
}
pub(crate) use with_float;

/// Runs `$body` with `$T` bound to the Rust type of a logits dtype
/// (float32, float64, bfloat16, float16).
macro_rules! with_logits {
    ($dtype:expr, $name:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            DType::F16 => {
                type $T = half::f16;
                $body
            }
            other => crate::error::bail!(
                UnsupportedDtype,
                "{} has dtype {}; this operation takes float32, float64, bfloat16 or float16",
                $name,
                other.name()
            ),
        }
    };
}
pub(crate) use with_logits;

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
    boundary(|| {
        in_ref(config, "config")?;
        let out = out_ref(out, "out")?;
        let raw = EraConfig::read(config)?;
        Head::check_num_threads(raw.num_threads as usize)?;
        let head = Head::new(raw.to_head_config()?)?.with_num_threads(raw.num_threads as usize);
        *out = Box::into_raw(Box::new(EraHead { inner: head }));
        Ok(())
    })
}

/// Releases a head. NULL is accepted and ignored. The handle must not be
/// used afterwards.
///
/// # Safety
/// `head` is NULL or a handle from `era_head_new`/`era_head_from_json` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn era_head_free(head: *mut EraHead) {
    if !head.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(head))));
    }
}

/// Stores the head's kind (`ERA_HEAD_KIND_*`) in `*out`.
///
/// Errors: `ERA_STATUS_NULL_POINTER` (head, out).
///
/// # Safety
/// `head` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_kind(head: *const EraHead, out: *mut crate::capi::config::EraHeadKind) -> EraStatus {
    boundary(|| {
        let h = head_ref(head)?;
        let out = out_ref(out, "out")?;
        *out = match h {
            Head::Gaussian(_) => crate::capi::config::ERA_HEAD_KIND_GAUSSIAN,
            Head::Softmax(_) => crate::capi::config::ERA_HEAD_KIND_SOFTMAX,
            Head::Token(_) => crate::capi::config::ERA_HEAD_KIND_TOKEN,
        };
        Ok(())
    })
}

/// Copies the head's configuration into `*out`; the caller sets
/// `out->struct_size` first (to its `sizeof(EraConfig)`), and at most that
/// many bytes are written. For a Gaussian head `delta` holds the current value.
///
/// Errors: `ERA_STATUS_NULL_POINTER` (head, out); `ERA_STATUS_INVALID_ARGUMENT`
/// (`out->struct_size < 8`).
///
/// # Safety
/// `head` is NULL or a live handle; `out` is NULL or points to
/// `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn era_head_config(head: *const EraHead, out: *mut EraConfig) -> EraStatus {
    boundary(|| {
        let h = head_ref(head)?;
        if out.is_null() {
            bail!(NullPointer, "out must not be NULL");
        }
        let size = std::ptr::read_unaligned(out as *const u32) as usize;
        if size < 8 {
            bail!(InvalidArgument, "out->struct_size is {size}; set it to sizeof(EraConfig) before the call");
        }
        let mut cfg = EraConfig::from_head_config(&h.config());
        cfg.num_threads = h.num_threads() as u32;
        let n = size.min(std::mem::size_of::<EraConfig>());
        std::ptr::copy_nonoverlapping(&cfg as *const EraConfig as *const u8, out as *mut u8, n);
        std::ptr::write_unaligned(out as *mut u32, n as u32);
        Ok(())
    })
}

/// Forward of a Gaussian or softmax head: `out = g(z)` row-wise over the
/// last axis. `z` and `out`: same shape `[..., D]` (or `[..., n]`), rank >= 1,
/// float32 or float64 (the same for both), any strides; `out` may alias `z`.
/// The Gaussian head uses its current `delta`. `stream`: a `cudaStream_t`
/// for CUDA buffers; ignored for CPU buffers (may be NULL).
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND` (token head), `INVALID_SHAPE`,
/// `UNSUPPORTED_DTYPE`, `UNSUPPORTED_DEVICE`, `INVALID_LAYOUT`.
///
/// # Safety
/// Every pointer is NULL or valid; the tensors describe live memory.
#[no_mangle]
pub unsafe extern "C" fn era_head_forward(
    head: *const EraHead,
    z: *const DLTensor,
    out: *mut DLTensor,
    stream: *mut c_void,
) -> EraStatus {
    let _ = stream;
    boundary(|| {
        let h = head_ref(head)?;
        if let Head::Token(_) = h {
            bail!(WrongHeadKind, "era_head_forward needs a gaussian or softmax head; use era_token_forward for a token head");
        }
        let zd = Desc::new(z, "z")?;
        let od = Desc::new(out, "out")?;
        check_outputs(&[&od])?;
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
    })
}

/// Backward (vector-Jacobian product) of a Gaussian or softmax head:
/// `grad_z = J(z)^T grad_out`. All three tensors have the same shape and
/// dtype (float32/float64); `grad_z` may alias `z` or `grad_out`.
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
    let _ = stream;
    boundary(|| {
        let h = head_ref(head)?;
        if let Head::Token(_) = h {
            bail!(WrongHeadKind, "era_head_backward needs a gaussian or softmax head; use era_token_backward for a token head");
        }
        let zd = Desc::new(z, "z")?;
        let gd = Desc::new(grad_out, "grad_out")?;
        let od = Desc::new(grad_z, "grad_z")?;
        check_outputs(&[&od])?;
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
    })
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
    let _ = stream;
    boundary(|| {
        let h = head_ref(head)?;
        let xd = Desc::new(out, "out")?;
        let ed = Desc::new(entropy, "entropy")?;
        check_outputs(&[&ed])?;
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
    })
}

/// Reads a delta tensor: 0-d or one element = a scalar for all rows;
/// otherwise one value per row.
unsafe fn delta_arg<'a, T: crate::kernels::Element>(d: &'a Desc<'a>, outputs: &[&Desc<'_>]) -> Result<DeltaArgOwned<'a, T>> {
    Ok(if d.shape.is_empty() || (d.numel() == 1 && d.shape.len() <= 1) {
        let v = d.view::<T>();
        DeltaArgOwned::Scalar(v.iter().next().map(|x| x.to_f64()).unwrap_or(f64::NAN))
    } else {
        DeltaArgOwned::PerRow(d.input::<T>(outputs)?)
    })
}

enum DeltaArgOwned<'a, T> {
    Scalar(f64),
    PerRow(ndarray::CowArray<'a, T, ndarray::IxDyn>),
}

impl<T> DeltaArgOwned<'_, T> {
    fn arg(&self) -> DeltaArg<'_, T> {
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
    let _ = stream;
    boundary(|| {
        let g = head_ref(head)?.as_gaussian("era_gaussian_forward_delta")?;
        let zd = Desc::new(z, "z")?;
        let dd = Desc::new(delta, "delta")?;
        let od = Desc::new(out, "out")?;
        check_outputs(&[&od])?;
        with_float!(zd.dtype, "z", T => {
            dd.expect_dtype(zd.dtype)?;
            od.expect_dtype(zd.dtype)?;
            let zi = zd.input::<T>(&[&od])?;
            let da = delta_arg::<T>(&dd, &[&od])?;
            g.forward_with_delta(zi.view(), da.arg(), od.view_mut::<T>())
        })
    })
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
    let _ = stream;
    boundary(|| {
        let g = head_ref(head)?.as_gaussian("era_gaussian_backward_delta")?;
        let zd = Desc::new(z, "z")?;
        let dd = Desc::new(delta, "delta")?;
        let gd = Desc::new(grad_out, "grad_out")?;
        let od = Desc::new(grad_z, "grad_z")?;
        let gdd = Desc::optional(grad_delta, "grad_delta")?;
        let mut outs = vec![&od];
        if let Some(x) = &gdd {
            outs.push(x);
        }
        check_outputs(&outs)?;
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
    })
}

/// Stores the Gaussian head's current `delta` in `*out`.
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`.
///
/// # Safety
/// `head` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_delta(head: *const EraHead, out: *mut f64) -> EraStatus {
    boundary(|| {
        let g = head_ref(head)?.as_gaussian("era_head_delta")?;
        *out_ref(out, "out")? = g.delta();
        Ok(())
    })
}

/// Sets the Gaussian head's `delta`, clamped so that the target stays
/// feasible (`delta <= D*(log_std_max + 0.5*ln(2*pi*e)) - H0`). The learner's
/// Adam moments are kept. Safe to call while other threads run forward/backward.
///
/// Errors: `NULL_POINTER`, `WRONG_HEAD_KIND`, `INVALID_ARGUMENT` (NaN or -inf).
///
/// # Safety
/// `head` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn era_head_set_delta(head: *mut EraHead, delta: f64) -> EraStatus {
    boundary(|| {
        let g = head_ref(head)?.as_gaussian("era_head_set_delta")?;
        g.set_delta(delta)?;
        Ok(())
    })
}

/// One step of the `delta` learner (ERA_MATH.md 1.3): the gradient is
/// `mean_entropy - H0`, where `mean_entropy` is the batch-mean entropy of the
/// agent's *bounded* policy (tanh-squashed or truncated). SGD or Adam per the
/// config, then clamped feasible; with the FIXED optimizer nothing changes.
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
    boundary(|| {
        let g = head_ref(head)?.as_gaussian("era_head_update_delta")?;
        let d = g.update_delta(mean_entropy)?;
        if let Some(o) = new_delta.as_mut() {
            *o = d;
        }
        Ok(())
    })
}

/// Serialises the head (configuration, learned `delta` and optimiser state)
/// as UTF-8 JSON into `buf`, NUL-terminated, and stores its length (without
/// the NUL) in `*written`. With `buf == NULL` and `len == 0` it only stores
/// the length (a size query).
///
/// Errors: `NULL_POINTER` (head, written, or buf with len > 0);
/// `BUFFER_TOO_SMALL` when `len < length + 1` (nothing is written; the
/// message says how many bytes are needed).
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes; `written` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_to_json(
    head: *const EraHead,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> EraStatus {
    boundary(|| {
        let h = head_ref(head)?;
        let written = out_ref(written, "written")?;
        let json = h.to_json()?;
        if buf.is_null() {
            if len != 0 {
                bail!(NullPointer, "buf is NULL but len is {len} (use len 0 to query the size)");
            }
            *written = json.len();
            return Ok(());
        }
        if len < json.len() + 1 {
            bail!(BufferTooSmall, "the JSON needs {} bytes (with the NUL), the buffer has {len}", json.len() + 1);
        }
        std::ptr::copy_nonoverlapping(json.as_ptr(), buf as *mut u8, json.len());
        *buf.add(json.len()) = 0;
        *written = json.len();
        Ok(())
    })
}

/// Restores a head from the JSON of `era_head_to_json` (or from a bare
/// config document such as `{"kind": "softmax", "num_classes": 10,
/// "target_entropy": 1.0}`), validating it like `era_head_new`.
///
/// Errors: `NULL_POINTER` (json, out); `JSON` (invalid UTF-8, malformed
/// JSON, unknown or missing fields, wrong format/version); `INVALID_CONFIG`
/// and `INFEASIBLE_TARGET` as `era_head_new`.
///
/// # Safety
/// `json` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_from_json(json: *const c_char, out: *mut *mut EraHead) -> EraStatus {
    boundary(|| {
        in_ref(json, "json")?;
        let out = out_ref(out, "out")?;
        let s = match CStr::from_ptr(json).to_str() {
            Ok(s) => s,
            Err(e) => bail!(Json, "json is not valid UTF-8: {e}"),
        };
        let head = Head::from_json(s)?;
        *out = Box::into_raw(Box::new(EraHead { inner: head }));
        Ok(())
    })
}

/// Entropy of the truncated normal `TN(mean, exp(log_std), [low, high])`
/// (ERA_MATH.md 1.1), summed over the last axis: `mean`, `log_std`
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
    let _ = stream;
    boundary(|| {
        let md = Desc::new(mean, "mean")?;
        let ld = Desc::new(log_std, "log_std")?;
        let ed = Desc::new(entropy, "entropy")?;
        check_outputs(&[&ed])?;
        with_float!(md.dtype, "mean", T => {
            ld.expect_dtype(md.dtype)?;
            ed.expect_dtype(md.dtype)?;
            let m = md.input::<T>(&[&ed])?;
            let l = ld.input::<T>(&[&ed])?;
            truncated_normal_entropy(m.view(), l.view(), low, high, ed.view_mut::<T>())
        })
    })
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
    let _ = stream;
    boundary(|| {
        let ld = Desc::new(log_std, "log_std")?;
        let ed = Desc::new(entropy, "entropy")?;
        check_outputs(&[&ed])?;
        with_float!(ld.dtype, "log_std", T => {
            ed.expect_dtype(ld.dtype)?;
            let l = ld.input::<T>(&[&ed])?;
            gaussian_entropy(l.view(), ed.view_mut::<T>())
        })
    })
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
    let _ = stream;
    boundary(|| {
        let xd = Desc::new(logits, "logits")?;
        let ed = Desc::new(entropy, "entropy")?;
        check_outputs(&[&ed])?;
        with_float!(ed.dtype, "entropy", F => {
            with_logits!(xd.dtype, "logits", L => {
                let x = xd.input::<L>(&[&ed])?;
                categorical_entropy(x.view(), temperature, ed.view_mut::<F>())
            })
        })
    })
}
