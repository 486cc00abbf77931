//! DLPack tensor descriptors: the `#[repr(C)]` mirror of `era/dlpack.h` and
//! the checks that turn a borrowed `DLTensor` into an ndarray view (one
//! tensor at a time; the checks across a call's tensors are in `calls.rs`).

use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr::NonNull;

use ndarray::{ArrayViewD, ArrayViewMutD, Axis, CowArray, IxDyn, ShapeBuilder};

use crate::error::{bail, Result};
use crate::kernels::vmath::Rows;

/// DLPack device (mirrors `DLDevice` of `era/dlpack.h`, which declares it for C).
///
/// cbindgen:ignore
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLDevice {
    /// `DLDeviceType` (1 = CPU, 2 = CUDA, 3 = CUDA host, ...).
    pub device_type: i32,
    /// Device ordinal.
    pub device_id: i32,
}

/// DLPack element type (mirrors `DLDataType`).
///
/// cbindgen:ignore
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLDataType {
    /// `DLDataTypeCode` (0 int, 1 uint, 2 float, 4 bfloat).
    pub code: u8,
    /// Bits per lane.
    pub bits: u8,
    /// Lanes (1 for scalars).
    pub lanes: u16,
}

/// DLPack tensor descriptor (mirrors `DLTensor`).
///
/// cbindgen:ignore
#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    /// Base pointer.
    pub data: *mut c_void,
    /// Where the data lives.
    pub device: DLDevice,
    /// Rank.
    pub ndim: i32,
    /// Element type.
    pub dtype: DLDataType,
    /// `ndim` extents.
    pub shape: *mut i64,
    /// `ndim` strides in elements, or null for row-major.
    pub strides: *mut i64,
    /// Offset in bytes from `data` to the first element.
    pub byte_offset: u64,
}

pub(crate) const KDL_CPU: i32 = 1;
pub(crate) const KDL_CUDA: i32 = 2;
pub(crate) const KDL_CUDA_HOST: i32 = 3;
pub(crate) const KDL_CUDA_MANAGED: i32 = 13;

/// Largest rank accepted (DLPack has no limit; this guards allocations).
pub(crate) const MAX_NDIM: i32 = 32;

/// Ranks up to this many keep a descriptor's extents and strides in place.
/// Four covers the heads' usual tensors (a batch of rows, with a time or group
/// axis or two) and keeps a descriptor small enough (152 bytes) that the
/// compiler moves it inline: with eight in place (216 bytes), every move of one
/// was a call to `memmove`, a large part of a small call's fixed cost
/// (BENCHMARKS.md, "The C ABI's fixed cost").
const INLINE_NDIM: usize = 4;

/// Up to [`MAX_NDIM`] values (a descriptor's extents or strides): held in place
/// up to [`INLINE_NDIM`], so that describing a tensor of a usual rank
/// allocates nothing and a descriptor stays small (every call builds several
/// and moves them around), else on the heap.
#[derive(Clone)]
pub(crate) enum Dims<T> {
    Inline(usize, [T; INLINE_NDIM]),
    Heap(Vec<T>),
}

impl<T: Copy + Default> Dims<T> {
    /// `len` default values (`len <= MAX_NDIM`, which [`Desc::new`] checks first).
    fn new(len: usize) -> Self {
        debug_assert!(len <= MAX_NDIM as usize);
        if len <= INLINE_NDIM {
            Dims::Inline(len, [T::default(); INLINE_NDIM])
        } else {
            Dims::Heap(vec![T::default(); len.min(MAX_NDIM as usize)])
        }
    }
}

impl<T> std::ops::Deref for Dims<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Dims::Inline(len, v) => &v[..*len],
            Dims::Heap(v) => v,
        }
    }
}

impl<T> std::ops::DerefMut for Dims<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Dims::Inline(len, v) => &mut v[..*len],
            Dims::Heap(v) => v,
        }
    }
}

impl<'a, T> IntoIterator for &'a Dims<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: PartialEq> PartialEq for Dims<T> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Dims<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self[..].fmt(f)
    }
}

/// An element type this library computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DType {
    F32,
    F64,
    BF16,
    F16,
    I32,
    I64,
}

impl DType {
    fn from_dl(t: DLDataType) -> Option<DType> {
        if t.lanes != 1 {
            return None;
        }
        Some(match (t.code, t.bits) {
            (2, 32) => DType::F32,
            (2, 64) => DType::F64,
            (2, 16) => DType::F16,
            (4, 16) => DType::BF16,
            (0, 32) => DType::I32,
            (0, 64) => DType::I64,
            _ => return None,
        })
    }

    pub(crate) fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::BF16 | DType::F16 => 2,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            DType::I32 => "int32",
            DType::I64 => "int64",
        }
    }
}

fn dl_name(t: DLDataType) -> String {
    let code = match t.code {
        0 => "int".to_string(),
        1 => "uint".to_string(),
        2 => "float".to_string(),
        3 => "opaque".to_string(),
        4 => "bfloat".to_string(),
        5 => "complex".to_string(),
        6 => "bool".to_string(),
        c => format!("code{c}"),
    };
    if t.lanes == 1 {
        format!("{code}{}", t.bits)
    } else {
        format!("{code}{}x{}", t.bits, t.lanes)
    }
}

/// Where a tensor's memory is, as far as computing on it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Device {
    /// Host memory (DLPack CPU, and pinned CUDA host memory).
    Cpu,
    /// Memory of CUDA device `ordinal` (DLPack CUDA and CUDA managed memory).
    Cuda(i32),
}

/// The one device every tensor of a call lives on. Tensors on different CUDA
/// devices, or host and CUDA tensors mixed, are `UNSUPPORTED_DEVICE`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn call_device(descs: &[&Desc<'_>]) -> Result<Device> {
    let Some(first) = descs.first() else { return Ok(Device::Cpu) };
    for d in &descs[1..] {
        if d.device != first.device {
            let place = |x: &Desc<'_>| match x.device {
                Device::Cpu => "in host memory".to_string(),
                Device::Cuda(i) => format!("on CUDA device {i}"),
            };
            bail!(
                UnsupportedDevice,
                "{} is {} but {} is {}: all tensors of one call must be on the same device",
                first.name,
                place(first),
                d.name,
                place(d)
            );
        }
    }
    Ok(first.device)
}

/// A checked tensor descriptor: what a `DLTensor` says, validated.
#[derive(Debug)]
pub(crate) struct Desc<'a> {
    pub name: &'static str,
    pub dtype: DType,
    /// Where the memory is.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub device: Device,
    pub shape: Dims<usize>,
    /// Strides in elements (signed).
    strides: Dims<isize>,
    /// Address of element (0, ..., 0); dangling when empty.
    first: *mut u8,
    /// Byte range `[lo, hi)` the tensor touches (empty when it has no elements).
    lo: usize,
    hi: usize,
    _life: PhantomData<&'a DLTensor>,
}

impl<'a> Desc<'a> {
    /// Checks a descriptor: pointer, rank, shape, dtype, device, strides,
    /// alignment and address-range overflow.
    ///
    /// # Safety
    /// `t` is null or points to a readable `DLTensor` whose `shape` (and
    /// `strides`, when non-null) point to `ndim` readable `int64_t`s.
    pub unsafe fn new(t: *const DLTensor, name: &'static str) -> Result<Desc<'a>> {
        let Some(t) = t.as_ref() else {
            bail!(NullPointer, "{name} must not be NULL");
        };
        let device = match t.device.device_type {
            KDL_CPU | KDL_CUDA_HOST => Device::Cpu,
            KDL_CUDA | KDL_CUDA_MANAGED if cfg!(feature = "cuda") => {
                if t.device.device_id < 0 {
                    bail!(UnsupportedDevice, "{name} is on CUDA device {}, which is not a device ordinal", t.device.device_id);
                }
                Device::Cuda(t.device.device_id)
            }
            KDL_CUDA | KDL_CUDA_MANAGED => bail!(
                UnsupportedDevice,
                "{name} is a CUDA buffer (device_type {}), but this build of era has no CUDA support",
                t.device.device_type
            ),
            d if cfg!(feature = "cuda") => {
                bail!(UnsupportedDevice, "{name} has device_type {d}, which era cannot compute on (CPU and CUDA only)")
            }
            d => bail!(UnsupportedDevice, "{name} has device_type {d}, which this build of era cannot compute on (CPU only)"),
        };
        if t.ndim < 0 || t.ndim > MAX_NDIM {
            bail!(InvalidShape, "{name} has rank {}, expected 0..={MAX_NDIM}", t.ndim);
        }
        let ndim = t.ndim as usize;
        if ndim > 0 && t.shape.is_null() {
            bail!(InvalidShape, "{name} has rank {ndim} but a NULL shape pointer");
        }
        let dtype = match DType::from_dl(t.dtype) {
            Some(d) => d,
            None => bail!(UnsupportedDtype, "{name} has dtype {}, which era does not support", dl_name(t.dtype)),
        };
        let raw_shape: &[i64] = if ndim == 0 { &[] } else { std::slice::from_raw_parts(t.shape, ndim) };
        let mut shape = Dims::<usize>::new(ndim);
        // the product of the non-zero extents must fit in memory even when another
        // extent is 0 (ndarray, and any strided indexing, relies on it)
        let mut nonzero: usize = 1;
        for (i, &s) in raw_shape.iter().enumerate() {
            if s < 0 {
                bail!(InvalidShape, "{name} has a negative extent {s} on axis {i}");
            }
            let s = s as usize;
            nonzero = match nonzero.checked_mul(s.max(1)) {
                Some(n) if n <= isize::MAX as usize / dtype.size() => n,
                _ => bail!(InvalidShape, "{name}'s shape {raw_shape:?} has more elements than memory can hold"),
            };
            shape[i] = s;
        }
        let numel: usize = if shape.contains(&0) { 0 } else { nonzero };
        let strides = if t.strides.is_null() {
            let mut st = Dims::<isize>::new(ndim);
            let mut acc: isize = 1;
            for i in (0..ndim).rev() {
                st[i] = acc;
                acc = acc.saturating_mul(shape[i].max(1) as isize);
            }
            st
        } else {
            let raw = std::slice::from_raw_parts(t.strides, ndim);
            let mut st = Dims::<isize>::new(ndim);
            for (i, &s) in raw.iter().enumerate() {
                // the stride of an axis of extent <= 1 is never used
                let s = if shape[i] <= 1 { 0 } else { s };
                match isize::try_from(s) {
                    Ok(v) if v.checked_mul(dtype.size() as isize).is_some() => st[i] = v,
                    _ => bail!(InvalidLayout, "{name} has stride {s} on axis {i}, which overflows"),
                }
            }
            st
        };
        if numel == 0 {
            return Ok(Desc { name, dtype, device, shape, strides, first: std::ptr::null_mut(), lo: 0, hi: 0, _life: PhantomData });
        }
        if t.data.is_null() {
            bail!(InvalidLayout, "{name} has {numel} elements but a NULL data pointer");
        }
        // element offsets of the lowest and highest elements
        let (mut min_off, mut max_off) = (0i128, 0i128);
        for (&n, &s) in shape.iter().zip(strides.iter()) {
            let span = (n as i128 - 1) * s as i128;
            if span < 0 {
                min_off += span;
            } else {
                max_off += span;
            }
        }
        let size = dtype.size() as i128;
        let base = t.data as usize as i128 + t.byte_offset as i128;
        let lo = base + min_off * size;
        let hi = base + (max_off + 1) * size;
        if lo < 0 || hi > isize::MAX as i128 {
            bail!(InvalidLayout, "{name}'s strides and byte_offset reach outside the address space");
        }
        if base % size != 0 {
            bail!(
                InvalidLayout,
                "{name}'s first element (data + byte_offset) is not aligned to {} bytes for {}",
                dtype.size(),
                dtype.name()
            );
        }
        Ok(Desc {
            name,
            dtype,
            device,
            shape,
            strides,
            // keep the pointer's provenance: derive it from `data`, not from the integer
            first: (t.data as *mut u8).wrapping_add(t.byte_offset as usize),
            lo: lo as usize,
            hi: hi as usize,
            _life: PhantomData,
        })
    }

    /// Like [`Desc::new`] but a null pointer means "absent".
    pub unsafe fn optional(t: *const DLTensor, name: &'static str) -> Result<Option<Desc<'a>>> {
        if t.is_null() {
            Ok(None)
        } else {
            Desc::new(t, name).map(Some)
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether two descriptors name exactly the same elements in the same
    /// order: the same first element, shape, strides and dtype.
    pub fn same_tensor(&self, other: &Desc<'_>) -> bool {
        self.first == other.first && self.shape == other.shape && self.strides == other.strides && self.dtype == other.dtype
    }

    /// Whether two tensors' byte ranges intersect.
    pub fn overlaps(&self, other: &Desc<'_>) -> bool {
        self.lo < self.hi && other.lo < other.hi && self.lo < other.hi && other.lo < self.hi
    }

    /// Fails unless no two indices of this (output) tensor address the same element.
    pub fn check_writable(&self) -> Result<()> {
        if self.is_row_major() {
            return Ok(()); // distinct offsets by construction: no sort needed
        }
        let mut all = Dims::<(usize, usize)>::new(self.shape.len());
        let mut k = 0;
        for (&n, &s) in self.shape.iter().zip(self.strides.iter()).filter(|(&n, _)| n > 1) {
            all[k] = (s.unsigned_abs(), n);
            k += 1;
        }
        let axes = &mut all[..k];
        axes.sort_unstable();
        let mut reach: usize = 0; // largest offset reachable by the axes so far
        for &mut (s, n) in axes {
            if s == 0 || s <= reach {
                bail!(InvalidLayout, "{} is an output, but its strides {:?} address some elements more than once", self.name, self.strides);
            }
            reach = reach.saturating_add(s.saturating_mul(n - 1));
        }
        Ok(())
    }

    /// Fails unless the dtype is `want`.
    pub fn expect_dtype(&self, want: DType) -> Result<()> {
        if self.dtype != want {
            bail!(UnsupportedDtype, "{} has dtype {}, expected {}", self.name, self.dtype.name(), want.name());
        }
        Ok(())
    }

    /// Lowest-address pointer, shape, absolute strides and the axes to invert.
    /// `None` for an empty tensor.
    unsafe fn parts<T>(&self) -> Option<(*mut T, Dims<usize>, Dims<usize>)> {
        debug_assert_eq!(std::mem::size_of::<T>(), self.dtype.size());
        if self.numel() == 0 {
            return None;
        }
        // move to the lowest address, use absolute strides, invert the negative axes
        let mut p = self.first as *mut T;
        let mut abs = Dims::<usize>::new(self.strides.len());
        for (i, (&n, &s)) in self.shape.iter().zip(self.strides.iter()).enumerate() {
            if s < 0 {
                p = p.offset(s * (n as isize - 1));
            }
            abs[i] = s.unsigned_abs();
        }
        Some((p, self.shape.clone(), abs))
    }

    fn negative_axes(&self) -> impl Iterator<Item = usize> + '_ {
        self.strides.iter().enumerate().filter(|(_, &s)| s < 0).map(|(i, _)| i)
    }

    /// The rows (last axis) of an f32 tensor in host memory, read where they
    /// lie, when it has elements and [`Rows::layout`] accepts its layout; else
    /// `None` (the caller takes the general path).
    ///
    /// # Safety
    /// As for [`Desc::view`].
    pub unsafe fn f32_rows(&self) -> Option<Rows<'a>> {
        if self.dtype != DType::F32 || self.device != Device::Cpu || self.numel() == 0 {
            return None;
        }
        let (rows, stride) = Rows::layout(&self.shape, &self.strides)?;
        // SAFETY: f32 elements (dtype), readable for 'a (the caller's promise);
        // Rows yields only the elements of each row
        Some(Rows::from_raw(self.first as *const f32, rows, *self.shape.last()?, stride))
    }

    /// The elements of a row-major contiguous f32 tensor in host memory as one
    /// slice, when it has elements; else `None`.
    ///
    /// # Safety
    /// As for [`Desc::view_mut`].
    pub unsafe fn f32_contiguous_mut(&self) -> Option<&'a mut [f32]> {
        if self.dtype != DType::F32 || self.device != Device::Cpu || self.numel() == 0 {
            return None;
        }
        if !self.is_row_major() {
            return None;
        }
        Some(std::slice::from_raw_parts_mut(self.first as *mut f32, self.numel()))
    }

    /// Whether the elements lie contiguously in row-major order: every axis
    /// of extent > 1 has the stride of a C-ordered array of this shape.
    pub fn is_row_major(&self) -> bool {
        let mut step = 1usize;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n > 1 && s != step as isize {
                return false;
            }
            step = step.saturating_mul(n);
        }
        true
    }

    /// The value of a one-element f32 tensor in host memory; else `None`.
    ///
    /// # Safety
    /// As for [`Desc::view`].
    pub unsafe fn f32_value(&self) -> Option<f64> {
        if self.dtype != DType::F32 || self.device != Device::Cpu || self.numel() != 1 {
            return None;
        }
        Some(f64::from(*(self.first as *const f32)))
    }

    /// A read-only view.
    ///
    /// # Safety
    /// The descriptor came from [`Desc::new`] on a live tensor of element type `T`,
    /// and nothing writes the memory while the view lives.
    pub unsafe fn view<T>(&self) -> ArrayViewD<'a, T> {
        let Some((p, shape, strides)) = self.parts::<T>() else {
            // an empty view with ndarray's own (valid) strides
            return ArrayViewD::from_shape_ptr(IxDyn(&self.shape), NonNull::<T>::dangling().as_ptr());
        };
        let mut v = ArrayViewD::from_shape_ptr(IxDyn(&shape).strides(IxDyn(&strides)), p as *const T);
        for i in self.negative_axes() {
            v.invert_axis(Axis(i));
        }
        v
    }

    /// A read-only view, copied when it overlaps one of `outputs` (so that
    /// in-place calls such as `out == z` are correct).
    ///
    /// # Safety
    /// As for [`Desc::view`].
    pub unsafe fn input<T: Clone>(&self, outputs: &[&Desc<'_>]) -> Result<CowArray<'a, T, IxDyn>> {
        let v = self.view::<T>();
        if outputs.iter().any(|o| self.overlaps(o)) {
            // the copy is as large as the logical tensor (a broadcast input may be huge)
            crate::kernels::reserve(self.numel().saturating_mul(self.dtype.size()), "a copy of an input that an output overlaps")?;
            Ok(CowArray::from(v.to_owned()))
        } else {
            Ok(CowArray::from(v))
        }
    }

    /// A mutable view.
    ///
    /// # Safety
    /// As for [`Desc::view`]; in addition [`Desc::check_writable`] passed and no
    /// other live view overlaps this tensor.
    pub unsafe fn view_mut<T>(&self) -> ArrayViewMutD<'a, T> {
        let Some((p, shape, strides)) = self.parts::<T>() else {
            return ArrayViewMutD::from_shape_ptr(IxDyn(&self.shape), NonNull::<T>::dangling().as_ptr());
        };
        let mut v = ArrayViewMutD::from_shape_ptr(IxDyn(&shape).strides(IxDyn(&strides)), p);
        for i in self.negative_axes() {
            v.invert_axis(Axis(i));
        }
        v
    }
}

#[cfg(feature = "cuda")]
impl Desc<'_> {
    /// The tensor as the CUDA kernels see it: rows along the last axis
    /// (`cols`), or one element per row (a per-row tensor: every axis is a
    /// batch axis).
    pub fn cuda_rows(&self, cols: bool) -> Result<crate::heads::cuda::Rows> {
        use crate::kernels::cuda::{Dtype, Tensor};
        let dtype = match self.dtype {
            DType::F32 => Dtype::F32,
            DType::F64 => Dtype::F64,
            DType::BF16 => Dtype::Bf16,
            DType::F16 => Dtype::F16,
            DType::I32 => Dtype::I32,
            DType::I64 => Dtype::I64,
        };
        let nb = if cols { self.shape.len().saturating_sub(1) } else { self.shape.len() };
        let (ncols, col_stride) = if cols && !self.shape.is_empty() { (self.shape[nb], self.strides[nb]) } else { (1, 0) };
        let t = Tensor::rows(self.first, dtype, &self.shape[..nb], &self.strides[..nb], col_stride, self.name)?;
        Ok(crate::heads::cuda::Rows { t, rows: self.shape[..nb].iter().product(), cols: ncols, dtype })
    }

    /// Fails if this input overlaps `output` other than as exactly the same
    /// tensor (same first element, shape, strides and dtype): the CUDA kernels
    /// read each row before writing it, which makes only exact aliasing safe.
    pub fn cuda_alias_ok(&self, output: &Desc<'_>) -> Result<()> {
        if !self.overlaps(output) {
            return Ok(());
        }
        if self.same_tensor(output) {
            return Ok(());
        }
        bail!(
            InvalidLayout,
            "{} overlaps {} in device memory other than as the same tensor; on CUDA an output may alias an input only exactly",
            self.name,
            output.name
        )
    }
}
