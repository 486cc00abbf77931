//! CPU kernels: element types and the row primitives every head is built from.
//!
//! Every head works row by row over the last axis of its input. A row is
//! loaded into an `f64` scratch buffer (so f32, bf16 and f16 inputs accumulate
//! in f64, which is "f32 or wider"), computed, and stored back in the output
//! element type. Rows of any stride pattern are supported through ndarray
//! lanes.

pub mod parallel;
pub mod simd;

use half::{bf16, f16};

/// A floating-point element type the heads accept.
pub trait Element: Copy + Send + Sync + 'static {
    /// Short name for messages ("f32", "bf16", ...).
    const NAME: &'static str;
    /// Widens to f64 (exact for every supported type).
    fn to_f64(self) -> f64;
    /// Rounds from f64 to nearest.
    fn from_f64(v: f64) -> Self;
    /// True for f64, whose heads keep the straightforward f64 kernels; the
    /// other types take the vectorised f32 kernels where they exist.
    const IS_F64: bool = false;
    /// Converts to f32 (exact for f32, bf16 and f16).
    #[inline]
    fn to_f32(self) -> f32 {
        self.to_f64() as f32
    }
    /// Rounds from f32.
    #[inline]
    fn from_f32(v: f32) -> Self {
        Self::from_f64(v as f64)
    }
    /// The slice itself when the type is f32 (no copy needed).
    #[inline]
    fn as_f32_slice(_s: &[Self]) -> Option<&[f32]> {
        None
    }
    /// The mutable slice itself when the type is f32.
    #[inline]
    fn as_f32_slice_mut(_s: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
    /// Appends `src` converted to f32 to `dst` (vectorised for bf16).
    #[inline]
    fn extend_f32(src: &[Self], dst: &mut Vec<f32>) {
        dst.extend(src.iter().map(|v| v.to_f32()));
    }
    /// Stores `src` into `dst` (same length), rounding to nearest (vectorised for bf16).
    #[inline]
    fn store_f32(src: &[f32], dst: &mut [Self]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = Self::from_f32(v);
        }
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    const IS_F64: bool = true;
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline]
    fn as_f32_slice(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
    #[inline]
    fn as_f32_slice_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }
}

impl Element for bf16 {
    const NAME: &'static str = "bf16";
    #[inline]
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn extend_f32(src: &[Self], dst: &mut Vec<f32>) {
        let start = dst.len();
        dst.resize(start + src.len(), 0.0);
        simd::bf16_to_f32(bytemuck_bf16(src), &mut dst[start..]);
    }
    fn store_f32(src: &[f32], dst: &mut [Self]) {
        // bf16 is a #[repr(transparent)] wrapper of u16: write the bit patterns in place
        let bits = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u16, dst.len()) };
        simd::f32_to_bf16(src, bits);
    }
}

/// The bit patterns of a bf16 slice.
fn bytemuck_bf16(s: &[bf16]) -> &[u16] {
    // bf16 is a #[repr(transparent)] wrapper of u16
    unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u16, s.len()) }
}

impl Element for f16 {
    const NAME: &'static str = "f16";
    #[inline]
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

/// Fails with [`crate::ErrorKind::OutOfMemory`] unless `bytes` of scratch
/// memory can be reserved now. Every head checks its scratch needs (per-row
/// buffers, per-row results) this way before it allocates, so that absurd
/// sizes (a broadcast input of huge extent) answer with a status instead of
/// aborting the process.
pub fn reserve(bytes: usize, what: &str) -> crate::Result<()> {
    let fail = || crate::Error::new(crate::ErrorKind::OutOfMemory, format!("cannot allocate {bytes} bytes of scratch memory for {what}"));
    if bytes > physical_memory() {
        return Err(fail());
    }
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(bytes).map_err(|_| fail())
}

/// The machine's physical memory in bytes (`MemTotal` of /proc/meminfo, read
/// once); unbounded where it cannot be read.
fn physical_memory() -> usize {
    static MEM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MEM.get_or_init(|| {
        if cfg!(miri) {
            return 1 << 30; // Miri cannot report a failed allocation; keep requests small
        }
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
                kb.checked_mul(1024)
            })
            .unwrap_or(usize::MAX)
    })
}

/// Scratch estimate of a row-wise call: `rows` rows of `n` elements with
/// `arrays` row views each, on up to `threads` threads (4 chunks each).
pub fn row_scratch_bytes(rows: usize, n: usize, arrays: usize, threads: usize) -> usize {
    let per_row = arrays.saturating_mul(64).saturating_add(16);
    let per_chunk = arrays.saturating_add(1).saturating_mul(n).saturating_mul(8);
    let chunks = threads.saturating_mul(4).min(rows.max(1));
    rows.saturating_mul(per_row).saturating_add(chunks.saturating_mul(per_chunk))
}

/// Maximum of a row (NaN-propagating; -inf for an empty row).
#[inline]
pub fn row_max(x: &[f64]) -> f64 {
    let mut m = f64::NEG_INFINITY;
    for &v in x {
        if v > m || v.is_nan() {
            m = v;
            if v.is_nan() {
                break;
            }
        }
    }
    m
}

/// `ln(sum(exp(x)))`, stable (subtracts the row max). An all -inf row gives -inf;
/// a row with NaN or +inf gives a non-finite result.
#[inline]
pub fn logsumexp(x: &[f64]) -> f64 {
    let m = row_max(x);
    if m == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let s: f64 = x.iter().map(|&v| (v - m).exp()).sum();
    m + s.ln()
}

/// Writes `softmax(x)` into `out` (same length); stable.
#[inline]
pub fn softmax_into(x: &[f64], out: &mut [f64]) {
    let m = row_max(x);
    let mut s = 0.0;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m).exp();
        s += *o;
    }
    let inv = 1.0 / s;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// Entropy of `softmax(x)` in nats: `lse(x) - sum(p*x)`. Entries with `p = 0`
/// (including -inf logits) contribute nothing.
#[inline]
pub fn softmax_entropy(x: &[f64]) -> f64 {
    let m = row_max(x);
    if !m.is_finite() {
        return f64::NAN;
    }
    let mut s = 0.0;
    let mut sz = 0.0;
    for &v in x {
        let e = (v - m).exp();
        s += e;
        if e > 0.0 {
            sz += e * (v - m);
        }
    }
    // H = lse - E[x] = ln(s) - E[x - m]
    s.ln() - sz / s
}

/// Loads a row of any element type into an f64 scratch buffer.
#[inline]
pub fn load<'a, T: Element + 'a>(dst: &mut [f64], src: impl Iterator<Item = &'a T>) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f64();
    }
}

/// Stores an f64 scratch buffer into a row of any element type (rounding).
#[inline]
pub fn store<'a, T: Element + 'a>(dst: impl Iterator<Item = &'a mut T>, src: &[f64]) {
    for (d, s) in dst.zip(src) {
        *d = T::from_f64(*s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lse_and_softmax_are_stable() {
        let x = [1000.0, 1000.0];
        assert!((logsumexp(&x) - (1000.0 + 2f64.ln())).abs() < 1e-12);
        let mut p = [0.0; 2];
        softmax_into(&x, &mut p);
        assert_eq!(p, [0.5, 0.5]);
        assert!((softmax_entropy(&x) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(logsumexp(&[f64::NEG_INFINITY; 3]), f64::NEG_INFINITY);
    }

    #[test]
    fn entropy_of_one_hot_limit_is_zero() {
        assert!(softmax_entropy(&[0.0, -1e30, f64::NEG_INFINITY]).abs() < 1e-12);
        assert!(softmax_entropy(&[f64::NAN, 0.0]).is_nan());
        assert!(softmax_entropy(&[f64::INFINITY, 0.0]).is_nan());
    }

    #[test]
    fn element_roundtrips() {
        assert_eq!(f32::from_f64(1.5).to_f64(), 1.5);
        assert_eq!(bf16::from_f64(1.5).to_f64(), 1.5);
        assert_eq!(<f16 as Element>::from_f64(-2.25).to_f64(), -2.25);
        assert_eq!(<bf16 as Element>::NAME, "bf16");
    }

    #[test]
    fn row_max_propagates_nan() {
        assert!(row_max(&[1.0, f64::NAN, 3.0]).is_nan());
        assert_eq!(row_max(&[]), f64::NEG_INFINITY);
    }
}
