//! [`super`]'s f32 functions on the eight lanes of AVX2 registers, for the
//! kernels written with intrinsics (x86-64 only, not under Miri): the same
//! operations in the same order as the scalar functions, so the same bits in
//! every lane.

use std::arch::x86_64::*;

use super::{LN2_HI, LN2_LO, LOG2E, ROUND};

/// [`exp_f32`](super::exp_f32) on the eight lanes of a 256-bit register, for the kernels
/// written with AVX2 intrinsics: the same operations in the same order, so the
/// same bits in every lane (NaN lanes return their input, as [`exp_f32`](super::exp_f32) does).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp8(x: __m256) -> __m256 {
    exp8n([x])[0]
}

/// [`exp8`] of `N` registers at once, each step done for all `N` before the
/// next: `N` independent chains side by side, which the CPU overlaps (one
/// exponential is a chain of about twenty dependent operations).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp8n<const N: usize>(x: [__m256; N]) -> [__m256; N] {
    use std::array::from_fn as each;
    // min/max give the clamps' values for every non-NaN lane; NaN lanes are
    // replaced by their input at the end
    let (hi, lo) = (_mm256_set1_ps(88.37), _mm256_set1_ps(-87.33));
    let xa: [__m256; N] = each(|i| _mm256_min_ps(x[i], hi));
    let xc: [__m256; N] = each(|i| _mm256_max_ps(xa[i], lo));
    let round = _mm256_set1_ps(ROUND);
    let t: [__m256; N] = each(|i| _mm256_fmadd_ps(xc[i], _mm256_set1_ps(LOG2E), round));
    let n: [__m256; N] = each(|i| _mm256_sub_ps(t[i], round));
    let r: [__m256; N] = each(|i| _mm256_fmadd_ps(n[i], _mm256_set1_ps(-LN2_HI), xc[i]));
    let r: [__m256; N] = each(|i| _mm256_fmadd_ps(n[i], _mm256_set1_ps(-LN2_LO), r[i]));
    let mut p = [_mm256_set1_ps(1.987_569_1e-4); N];
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = each(|i| _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(c)));
    }
    let y: [__m256; N] = each(|i| _mm256_fmadd_ps(_mm256_mul_ps(p[i], r[i]), r[i], _mm256_add_ps(r[i], _mm256_set1_ps(1.0))));
    each(|i| {
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_castps_si256(t[i]), _mm256_set1_epi32(127))));
        let v = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(xa[i], lo), _mm256_mul_ps(y[i], scale));
        _mm256_blendv_ps(v, x[i], _mm256_cmp_ps::<_CMP_UNORD_Q>(x[i], x[i]))
    })
}

#[cfg(test)]
mod tests {
    use super::super::exp_f32;
    use super::*;

    /// `exp8` gives `exp_f32`'s bits in every lane: a sweep over the whole
    /// range and past both clamps, the clamps' edges, infinities, signed zeros
    /// and NaN.
    #[test]
    fn exp8_is_exp_f32_bit_for_bit() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let mut xs: Vec<f32> = (0..=400_000).map(|i| -100.0 + 200.0 * i as f32 / 400_000.0).collect();
        xs.extend([88.37, -87.33, 88.370_01, -87.330_01, 0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, 1e-30, -1e-30]);
        while !xs.len().is_multiple_of(8) {
            xs.push(0.5);
        }
        for c in xs.chunks_exact(8) {
            let mut got = [0.0f32; 8];
            // SAFETY: AVX2 and FMA are there; eight values in and out
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr()))) };
            for (&x, &g) in c.iter().zip(&got) {
                assert_eq!(g.to_bits(), exp_f32(x).to_bits(), "exp8({x:e})");
            }
        }
    }
}
