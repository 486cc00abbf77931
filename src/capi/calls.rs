//! The checks one C function makes across its tensors (shapes that agree,
//! outputs writable and disjoint) and the dtype dispatch macros, over the
//! descriptors of `dlpack.rs`.

use crate::capi::dlpack::Desc;
use crate::error::{bail, Result};

/// Most descriptors one [`Descs`] holds.
const MAX_DESCS: usize = 8;

/// A few descriptors of one call that a check takes together (its outputs,
/// all its tensors), held on the stack: the checks of a call on small tensors
/// allocate nothing, since their cost is paid on every call.
pub(crate) struct Descs<'r, 'a> {
    len: usize,
    items: [&'r Desc<'a>; MAX_DESCS],
}

impl<'r, 'a> Descs<'r, 'a> {
    /// `first`, then the tensors of `rest` that are present, in order.
    pub(crate) fn new<const N: usize>(first: &'r Desc<'a>, rest: [Option<&'r Desc<'a>>; N]) -> Self {
        const { assert!(N < MAX_DESCS) };
        let mut items = [first; MAX_DESCS];
        let mut len = 1;
        for d in rest.into_iter().flatten() {
            items[len] = d; // len <= N < MAX_DESCS (asserted at compile time)
            len += 1;
        }
        Descs { len, items }
    }
}

impl<'r, 'a> std::ops::Deref for Descs<'r, 'a> {
    type Target = [&'r Desc<'a>];
    fn deref(&self) -> &Self::Target {
        &self.items[..self.len]
    }
}

/// [`Desc::input`] of a tensor that may be absent (a NULL pointer).
///
/// # Safety
/// As for [`Desc::input`].
pub(crate) unsafe fn optional_input<'a, T: Clone>(
    d: Option<&Desc<'a>>,
    outputs: &[&Desc<'_>],
) -> Result<Option<ndarray::CowArray<'a, T, ndarray::IxDyn>>> {
    d.map(|d| d.input::<T>(outputs)).transpose()
}

/// Fails unless every tensor of `others` has the shape of `reference`.
/// Every C function checks its shapes this way before it reads data or
/// reserves memory (an input that an output overlaps is copied, and a
/// broadcast input of huge extent must be rejected before that copy).
pub(crate) fn expect_same_shape(reference: &Desc<'_>, others: &[&Desc<'_>]) -> Result<()> {
    for o in others {
        if o.shape != reference.shape {
            bail!(InvalidShape, "{} has shape {:?}, but {} has shape {:?}", o.name, o.shape, reference.name, reference.shape);
        }
    }
    Ok(())
}

/// Fails unless `reference` has rank >= `min_rank` and every tensor of
/// `others` has its shape without the last axis (see [`expect_same_shape`]).
pub(crate) fn expect_batch_shape(reference: &Desc<'_>, min_rank: usize, others: &[&Desc<'_>]) -> Result<()> {
    if reference.shape.len() < min_rank.max(1) {
        bail!(InvalidShape, "{} must have rank >= {}, got shape {:?}", reference.name, min_rank.max(1), reference.shape);
    }
    let batch = &reference.shape[..reference.shape.len() - 1];
    for o in others {
        if o.shape[..] != *batch {
            bail!(InvalidShape, "{} has shape {:?}, but {} without its last axis has shape {batch:?}", o.name, o.shape, reference.name);
        }
    }
    Ok(())
}

/// Checks that the outputs of one call are writable and pairwise disjoint.
pub(crate) fn check_outputs(outputs: &[&Desc<'_>]) -> Result<()> {
    for (i, a) in outputs.iter().enumerate() {
        a.check_writable()?;
        for b in &outputs[i + 1..] {
            if a.overlaps(b) {
                bail!(InvalidLayout, "outputs {} and {} overlap in memory", a.name, b.name);
            }
        }
    }
    Ok(())
}

/// Runs `$body` with `$T` bound to the Rust type of a float dtype (f32/f64).
/// The `@` form names, in its error, the dtypes the caller takes: [`with_logits`]
/// hands it the dtypes it has not matched.
macro_rules! with_float {
    ($dtype:expr, $name:expr, $T:ident => $body:expr) => {
        $crate::capi::calls::with_float!(@ $dtype, $name, "float32 or float64", $T => $body)
    };
    (@ $dtype:expr, $name:expr, $takes:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            other => crate::error::bail!(UnsupportedDtype, "{} has dtype {}; this operation takes {}", $name, other.name(), $takes),
        }
    };
}
pub(crate) use with_float;

/// Runs `$body` with `$T` bound to the Rust type of a logits dtype
/// (float32, float64, bfloat16, float16).
macro_rules! with_logits {
    ($dtype:expr, $name:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            DType::F16 => {
                type $T = half::f16;
                $body
            }
            other => $crate::capi::calls::with_float!(
                @ other, $name, "float32, float64, bfloat16 or float16", $T => $body
            ),
        }
    };
}
pub(crate) use with_logits;
