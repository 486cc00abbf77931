//! The element types the kernels accept (f64, f32, bf16, f16) and the
//! vectorised bf16 conversions.

use half::{bf16, f16};
use multiversion::multiversion;

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
        bf16_to_f32(bytemuck_bf16(src), &mut dst[start..]);
    }
    fn store_f32(src: &[f32], dst: &mut [Self]) {
        // bf16 is a #[repr(transparent)] wrapper of u16: write the bit patterns in place
        let bits = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u16, dst.len()) };
        f32_to_bf16(src, bits);
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

/// bf16 bit patterns to f32 (exact: a shift).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn bf16_to_f32(src: &[u16], dst: &mut [f32]) {
    for (d, &b) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((b as u32) << 16);
    }
}

/// f32 to bf16 bit patterns, rounding to nearest even (NaN stays a quiet NaN).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn f32_to_bf16(src: &[f32], dst: &mut [u16]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        let b = v.to_bits();
        let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
        *d = if v.is_nan() { ((b >> 16) as u16) | 0x0040 } else { rounded };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_roundtrips() {
        assert_eq!(f32::from_f64(1.5).to_f64(), 1.5);
        assert_eq!(bf16::from_f64(1.5).to_f64(), 1.5);
        assert_eq!(<f16 as Element>::from_f64(-2.25).to_f64(), -2.25);
        assert_eq!(<bf16 as Element>::NAME, "bf16");
    }

    #[test]
    fn bf16_conversions_match_the_half_crate() {
        let xs: Vec<f32> = (0..70000u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
            .chain([f32::NAN, f32::INFINITY, -0.0, 1.0 + f32::EPSILON])
            .collect();
        let mut b = vec![0u16; xs.len()];
        f32_to_bf16(&xs, &mut b);
        for (x, &bits) in xs.iter().zip(&b) {
            let want = half::bf16::from_f32(*x);
            assert!(
                want.to_bits() == bits || (want.is_nan() && half::bf16::from_bits(bits).is_nan()),
                "{x}: {bits:#x} vs {:#x}",
                want.to_bits()
            );
        }
        let mut back = vec![0.0f32; b.len()];
        bf16_to_f32(&b, &mut back);
        for (&bits, &v) in b.iter().zip(&back) {
            let want = half::bf16::from_bits(bits).to_f32();
            assert!(want.to_bits() == v.to_bits() || (want.is_nan() && v.is_nan()));
        }
    }
}
