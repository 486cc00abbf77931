//! CUDA kernels: the launcher side.
//!
//! The kernels are CUDA C (`*.cu` beside this file), compiled by `build.rs`
//! with nvcc into one fatbinary (native code for sm_90 and PTX for compute_80,
//! which the driver compiles for any newer GPU) and embedded in the library.
//! This module mirrors their parameter blocks (`era_cuda.h`, which is the
//! contract) and launches them through the driver loaded at run time
//! ([`driver`]). Like the CPU kernels it does arithmetic only: shapes, dtypes
//! and configurations are checked by the callers in `crate::heads::cuda`.
//!
//! Streams: every launch goes to the caller's stream (`NULL` = the legacy
//! default stream; the driver's `CU_STREAM_LEGACY` (1) and
//! `CU_STREAM_PER_THREAD` (2) handles are accepted as they are). Nothing here
//! synchronises; scratch memory is allocated and freed stream-ordered
//! (`cuMemAllocAsync`), so calls can be captured into CUDA graphs.

pub mod driver;

use std::ffi::c_void;

use crate::error::{bail, Result};

pub use driver::{available, device_count, driver_version, Scope};

/// The embedded kernel image (a fatbinary).
pub static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/era_kernels.fatbin"));

/// `ERA_CUDA_MAX_BATCH`.
pub const MAX_BATCH: usize = 6;
/// `ERA_CUDA_BLOCK_ROWS`, `ERA_CUDA_BLOCK_VECTOR`, `ERA_CUDA_BLOCK_ITEMS`.
pub const BLOCK_ROWS: u32 = 256;
/// One block per row of a long vector.
pub const BLOCK_VECTOR: u32 = 256;
/// One thread per item.
pub const BLOCK_ITEMS: u32 = 256;
/// Most blocks in a launch; the kernels loop over the rest (grid-stride).
const MAX_GRID: u64 = 1 << 20;

/// Element type codes (`ERA_CUDA_F32`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Dtype {
    /// float32
    F32 = 0,
    /// float64
    F64 = 1,
    /// bfloat16
    Bf16 = 2,
    /// float16
    F16 = 3,
    /// int32
    I32 = 4,
    /// int64
    I64 = 5,
}

impl Dtype {
    /// The kernel-name suffix of a floating dtype.
    pub fn suffix(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
            Dtype::I32 => "i32",
            Dtype::I64 => "i64",
        }
    }
}

/// `EraCudaTensor`: a strided device tensor seen as rows (see `era_cuda.h`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Tensor {
    /// Address of element (0, ..., 0); null when absent.
    pub data: *mut u8,
    /// [`Dtype`] code.
    pub dtype: i32,
    /// Batch axes kept.
    pub nbatch: i32,
    /// Stride of the last axis (elements).
    pub col_stride: i64,
    /// Batch extents.
    pub shape: [i64; MAX_BATCH],
    /// Batch strides (elements).
    pub stride: [i64; MAX_BATCH],
}

impl Tensor {
    /// An absent optional tensor.
    pub const ABSENT: Tensor =
        Tensor { data: std::ptr::null_mut(), dtype: 0, nbatch: 0, col_stride: 0, shape: [0; MAX_BATCH], stride: [0; MAX_BATCH] };

    /// Describes a tensor whose batch axes are `shape`/`strides` (row-major
    /// order) and whose columns have stride `col_stride`. Axes of extent 1 are
    /// dropped and neighbours that address memory like one axis are merged;
    /// more than [`MAX_BATCH`] axes left is an error (`InvalidLayout`).
    pub fn rows(data: *mut u8, dtype: Dtype, shape: &[usize], strides: &[isize], col_stride: isize, name: &str) -> Result<Tensor> {
        let mut axes: Vec<(i64, i64)> = Vec::with_capacity(shape.len());
        for (&n, &s) in shape.iter().zip(strides) {
            if n == 1 {
                continue;
            }
            match axes.last_mut() {
                // the previous (outer) axis steps exactly over this one: one axis
                Some((pn, ps)) if *ps == s as i64 * n as i64 => {
                    *pn *= n as i64;
                    *ps = s as i64;
                }
                _ => axes.push((n as i64, s as i64)),
            }
        }
        if axes.len() > MAX_BATCH {
            bail!(
                InvalidLayout,
                "{name} has {} batch axes that cannot be merged (strides {strides:?}); CUDA calls take at most {MAX_BATCH}",
                axes.len()
            );
        }
        let mut t = Tensor { data, dtype: dtype as i32, nbatch: axes.len() as i32, col_stride: col_stride as i64, ..Tensor::ABSENT };
        for (i, (n, s)) in axes.into_iter().enumerate() {
            t.shape[i] = n;
            t.stride[i] = s;
        }
        Ok(t)
    }

    /// The same tensor, every row reading the same element (a broadcast scalar).
    pub fn broadcast_scalar(data: *mut u8, dtype: Dtype) -> Tensor {
        Tensor { data, dtype: dtype as i32, ..Tensor::ABSENT }
    }
}

/// `EraCudaGaussian`; each field is documented there (`era_cuda.h`).
#[allow(missing_docs)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct GaussianParams {
    pub z: Tensor,
    pub grad_out: Tensor,
    pub out: Tensor,
    pub delta: Tensor,
    pub grad_delta: Tensor,
    pub row_sums: *mut f64,
    pub rows: i64,
    pub dim: i64,
    pub delta_mode: i32,
    pub grad_delta_mode: i32,
    pub k_scalar: f64,
    pub k_base: f64,
    pub lo: f64,
    pub hi: f64,
}

/// `EraCudaGaussianMasked`; each field is documented there (`era_cuda.h`).
#[allow(missing_docs)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct GaussianMaskedParams {
    pub g: GaussianParams,
    pub mask: Tensor,
    pub fill: f64,
    pub fill_mode: i32,
    pub pad: i32,
}

/// `EraCudaSumRows`; each field is documented there (`era_cuda.h`).
#[allow(missing_docs)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SumRowsParams {
    pub src: *const f64,
    pub n: i64,
    pub dst: *mut u8,
    pub dst_dtype: i32,
    pub pad: i32,
}

/// `EraCudaSoftmax`; each field is documented there (`era_cuda.h`).
#[allow(missing_docs)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SoftmaxParams {
    pub z: Tensor,
    pub grad_out: Tensor,
    pub out: Tensor,
    pub rows: i64,
    pub n: i64,
    pub slope: f64,
    pub b: f64,
    pub ub: f64,
    pub u_ub: f64,
    pub f64_math: i32,
    pub pad: i32,
}

/// `EraCudaEntropy`; each field is documented there (`era_cuda.h`).
#[allow(missing_docs)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EntropyParams {
    pub x: Tensor,
    pub x2: Tensor,
    pub out: Tensor,
    pub rows: i64,
    pub cols: i64,
    pub inv_temperature: f64,
    pub low: f64,
    pub high: f64,
}

/// `EraCudaToken`; each field is documented there (`era_cuda.h`).
#[allow(missing_docs)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TokenParams {
    pub logits: Tensor,
    pub labels: Tensor,
    pub ids: Tensor,
    pub advantages: Tensor,
    pub scale: Tensor,
    pub grad_logprobs: Tensor,
    pub logprobs_out: Tensor,
    pub entropy_out: Tensor,
    pub scale_out: Tensor,
    pub advantages_out: Tensor,
    pub response_entropy_out: Tensor,
    pub grad_logits: Tensor,
    pub n: i64,
    pub v: i64,
    pub vocab_topk: i64,
    pub k: f64,
    pub omega_low: f64,
    pub omega_high: f64,
    pub top_fraction: f64,
    pub inv_temperature: f64,
    pub advantage_scaling: i32,
    pub pad: i32,
    pub workspace: *mut c_void,
}

/// `ERA_CUDA_TOKEN_WORKSPACE_BYTES(n)`.
pub fn token_workspace_bytes(n: usize) -> usize {
    n.saturating_mul(64)
}

/// Blocks for `items` units of `per_block` each, capped (the kernels loop).
pub fn grid(items: usize, per_block: u32) -> u32 {
    let blocks = (items as u64).div_ceil(per_block.max(1) as u64);
    blocks.clamp(1, MAX_GRID) as u32
}

/// Every kernel of the image: each one is resolved and loaded when a device is
/// first used ([`driver::Scope::enter`]), so that no call loads code later
/// (a first use inside a CUDA graph capture would otherwise load it there).
pub const KERNELS: &[&str] = &[
    "era_gaussian_forward_f32",
    "era_gaussian_forward_f64",
    "era_gaussian_backward_f32",
    "era_gaussian_backward_f64",
    "era_gaussian_masked_forward_f32",
    "era_gaussian_masked_forward_f64",
    "era_gaussian_masked_backward_f32",
    "era_gaussian_masked_backward_f64",
    "era_gaussian_entropy_f32",
    "era_gaussian_entropy_f64",
    "era_truncnorm_entropy_f32",
    "era_truncnorm_entropy_f64",
    "era_sum_rows",
    "era_softmax_forward_f32",
    "era_softmax_forward_f64",
    "era_softmax_backward_f32",
    "era_softmax_backward_f64",
    "era_softmax_entropy_f32",
    "era_softmax_entropy_f64",
    "era_softmax_entropy_bf16",
    "era_softmax_entropy_f16",
    "era_token_stats_f32",
    "era_token_stats_f64",
    "era_token_stats_bf16",
    "era_token_stats_f16",
    "era_token_group",
    "era_token_finish",
    "era_token_backward_f32",
    "era_token_backward_f64",
    "era_token_backward_bf16",
    "era_token_backward_f16",
];

/// `(family, dtype suffix, kernel)` of every kernel chosen by dtype.
const NAMES: &[(&str, &str, &str)] = &[
    ("gaussian_forward", "f32", "era_gaussian_forward_f32"),
    ("gaussian_forward", "f64", "era_gaussian_forward_f64"),
    ("gaussian_backward", "f32", "era_gaussian_backward_f32"),
    ("gaussian_backward", "f64", "era_gaussian_backward_f64"),
    ("gaussian_masked_forward", "f32", "era_gaussian_masked_forward_f32"),
    ("gaussian_masked_forward", "f64", "era_gaussian_masked_forward_f64"),
    ("gaussian_masked_backward", "f32", "era_gaussian_masked_backward_f32"),
    ("gaussian_masked_backward", "f64", "era_gaussian_masked_backward_f64"),
    ("gaussian_entropy", "f32", "era_gaussian_entropy_f32"),
    ("gaussian_entropy", "f64", "era_gaussian_entropy_f64"),
    ("truncnorm_entropy", "f32", "era_truncnorm_entropy_f32"),
    ("truncnorm_entropy", "f64", "era_truncnorm_entropy_f64"),
    ("softmax_forward", "f32", "era_softmax_forward_f32"),
    ("softmax_forward", "f64", "era_softmax_forward_f64"),
    ("softmax_backward", "f32", "era_softmax_backward_f32"),
    ("softmax_backward", "f64", "era_softmax_backward_f64"),
    ("softmax_entropy", "f32", "era_softmax_entropy_f32"),
    ("softmax_entropy", "f64", "era_softmax_entropy_f64"),
    ("softmax_entropy", "bf16", "era_softmax_entropy_bf16"),
    ("softmax_entropy", "f16", "era_softmax_entropy_f16"),
    ("token_stats", "f32", "era_token_stats_f32"),
    ("token_stats", "f64", "era_token_stats_f64"),
    ("token_stats", "bf16", "era_token_stats_bf16"),
    ("token_stats", "f16", "era_token_stats_f16"),
    ("token_backward", "f32", "era_token_backward_f32"),
    ("token_backward", "f64", "era_token_backward_f64"),
    ("token_backward", "bf16", "era_token_backward_bf16"),
    ("token_backward", "f16", "era_token_backward_f16"),
];

/// A kernel name from its family and dtype: `era_<family>_<suffix>`, as a
/// `&'static str` (the names are a fixed set; see [`kernel_name`]).
pub fn kernel_name(family: &'static str, dtype: Dtype) -> Result<&'static str> {
    match NAMES.iter().find(|(f, s, _)| *f == family && *s == dtype.suffix()) {
        Some((_, _, n)) => Ok(n),
        None => bail!(UnsupportedDtype, "no CUDA kernel {family} for {}", dtype.suffix()),
    }
}

/// Runs `f` inside device `device`'s context with `stream` (a `CUstream`).
pub fn with_device<R>(device: i32, f: impl FnOnce(&Scope) -> Result<R>) -> Result<R> {
    let scope = Scope::enter(device, IMAGE, KERNELS)?;
    f(&scope)
}

/// A stream-ordered scratch allocation, freed (stream-ordered) on drop.
pub struct Workspace<'s> {
    scope: &'s Scope,
    stream: driver::Handle,
    /// Device address.
    pub ptr: driver::DevicePtr,
}

impl<'s> Workspace<'s> {
    /// Allocates `bytes` on `stream`.
    ///
    /// # Safety
    /// `stream` is NULL or a stream of the scope's device.
    pub unsafe fn new(scope: &'s Scope, bytes: usize, stream: driver::Handle) -> Result<Self> {
        Ok(Workspace { scope, stream, ptr: unsafe { scope.alloc(bytes, stream)? } })
    }
}

impl Drop for Workspace<'_> {
    fn drop(&mut self) {
        // SAFETY: allocated by this workspace on this stream
        let _ = unsafe { self.scope.free(self.ptr, self.stream) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_merge_contiguous_axes_and_drop_unit_axes() {
        let p = std::ptr::null_mut();
        // [4, 1, 5, 6] contiguous batch axes of a [4, 1, 5, 6, 7] tensor: one axis of 120 rows
        let t = Tensor::rows(p, Dtype::F32, &[4, 1, 5, 6], &[210, 999, 42, 7], 1, "x").unwrap();
        assert_eq!((t.nbatch, t.shape[0], t.stride[0], t.col_stride), (1, 120, 7, 1));
        // a permuted layout keeps its axes
        let t = Tensor::rows(p, Dtype::F64, &[3, 4], &[1, 3], 12, "x").unwrap();
        assert_eq!((t.nbatch, &t.shape[..2], &t.stride[..2]), (2, &[3i64, 4][..], &[1i64, 3][..]));
        // broadcast (stride 0) axes merge with each other
        let t = Tensor::rows(p, Dtype::F32, &[2, 3], &[0, 0], 1, "x").unwrap();
        assert_eq!((t.nbatch, t.shape[0], t.stride[0]), (1, 6, 0));
        // no batch axes: a single row
        let t = Tensor::rows(p, Dtype::F32, &[], &[], 1, "x").unwrap();
        assert_eq!(t.nbatch, 0);
        // seven axes that cannot merge
        let shape = [2usize; 7];
        let strides: Vec<isize> = (0..7).map(|i| 4isize.pow(7 - i as u32)).collect();
        let e = Tensor::rows(p, Dtype::F32, &shape, &strides, 1, "x").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidLayout);
    }

    #[test]
    fn every_kernel_name_is_known_and_unknown_ones_fail() {
        assert_eq!(kernel_name("token_stats", Dtype::Bf16).unwrap(), "era_token_stats_bf16");
        assert_eq!(kernel_name("softmax_entropy", Dtype::F16).unwrap(), "era_softmax_entropy_f16");
        assert!(kernel_name("gaussian_forward", Dtype::Bf16).is_err());
        assert_eq!(grid(0, 256), 1);
        assert_eq!(grid(257, 256), 2);
        assert_eq!(grid(usize::MAX, 1), 1 << 20);
    }

    #[test]
    fn the_kernel_list_is_every_kernel_of_the_sources() {
        // every `extern "C" __global__` function of the .cu sources, and nothing else
        let sources = [
            include_str!("gaussian.cu"),
            include_str!("softmax.cu"),
            include_str!("token_forward.cu"),
            include_str!("token_group.cu"),
            include_str!("token_backward.cu"),
        ];
        let mut found: Vec<&str> = Vec::new();
        for src in sources {
            for line in src.lines().filter(|l| l.starts_with("extern \"C\" __global__ void")) {
                let name = line.split('(').next().and_then(|h| h.split_whitespace().last()).unwrap();
                found.push(name);
            }
        }
        found.sort_unstable();
        let mut listed = KERNELS.to_vec();
        listed.sort_unstable();
        assert_eq!(found, listed);
        let cu_files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/kernels/cuda"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cu"))
            .count();
        assert_eq!(cu_files, sources.len(), "a .cu file is missing from this test");
        for (_, _, n) in NAMES {
            assert!(KERNELS.contains(n), "{n}");
        }
    }
}
