//! The Gaussian head's f32 rows of up to [`MAX_WIDE`] values on x86-64 with
//! AVX2 and FMA (docs/math.md#vectorised-f32-kernels): eight rows at a time,
//! one row per lane of a 256-bit register, moved in and out of the lanes with
//! one 8 x 8 transpose per eight rows and eight columns
//! ([`transpose::avx2`](crate::kernels::transpose::avx2)). Up to [`MAX_D`]
//! values a group's columns stay in registers from load to store (one instance
//! per width); wider rows keep their columns in an array on the stack between
//! passes. The arithmetic of each lane is that of [`super::gaussian_rows_f32`]
//! and [`super::gaussian_rows_grad_f32`]'s 16-lane kernels, operation for
//! operation (`exp_f32` as [`exp8`]/[`exp8n`], the same order of sums, the same
//! fused multiply-adds), so both give the same bits; a row's result does not
//! depend on which lane or group holds it. These kernels take the whole groups
//! of eight rows and return how many rows they did; the callers do the rest.

use std::arch::x86_64::*;

use super::row_k;
use crate::kernels::transpose::avx2::{load8, load_rows8, store8, store_rows8, whole_rows};
use crate::kernels::vmath::{exp8, exp8n, Rows};

/// Rows per group: the lanes of a 256-bit register of f32.
pub(crate) const ROWS: usize = 8;
/// The widest row whose columns all stay in registers.
pub(crate) const MAX_D: usize = 8;
/// The widest row these kernels take (wider than [`MAX_D`]: the columns wait
/// in an array on the stack between passes).
pub(crate) const MAX_WIDE: usize = 64;

/// Whether this CPU can run the kernels here (AVX2 and FMA, checked at run time).
#[inline(always)]
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Calls `$f::<D>($args)` for the row width `$d` in `1..=8`.
macro_rules! by_width {
    ($d:expr, $f:ident($($a:expr),*)) => {
        match $d {
            1 => $f::<1>($($a),*),
            2 => $f::<2>($($a),*),
            3 => $f::<3>($($a),*),
            4 => $f::<4>($($a),*),
            5 => $f::<5>($($a),*),
            6 => $f::<6>($($a),*),
            7 => $f::<7>($($a),*),
            8 => $f::<8>($($a),*),
            _ => 0,
        }
    };
}

/// The rows of `x` from group start `r0` as `D` columns of eight lanes.
///
/// # Safety
/// AVX2 is there, `x.n() == D` and rows `r0..r0 + 8` exist.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load<const D: usize>(x: &Rows<'_>, r0: usize) -> [__m256; D] {
    let base = x.ptr().wrapping_offset(r0 as isize * x.stride());
    // whole loads run into the next rows, so only where the rows are contiguous
    let whole = if x.stride() == D as isize { whole_rows((x.rows() - r0) * D, D) } else { 0 };
    // SAFETY: each row's D values are readable (`Rows`), and for the rows that
    // `whole` counts, eight values lie within the contiguous rows r0..
    unsafe { load8::<D>(base, x.stride(), whole) }
}

/// Writes `D` columns as rows `r0..r0 + 8` of the contiguous rows `dst`.
///
/// # Safety
/// AVX2 is there.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store<const D: usize>(t: &[__m256; D], dst: &mut [f32], r0: usize) {
    let rest = &mut dst[r0 * D..];
    assert!(rest.len() >= ROWS * D);
    // SAFETY: the 8*D values are in `rest`, and the whole stores that
    // `whole_rows` allows lie within it
    unsafe { store8::<D>(t, rest.as_mut_ptr(), whole_rows(rest.len(), D)) }
}

/// `t[j] = exp(t[j] - max_j t[j])` lane by lane, and each lane's sum (the
/// maximum skips NaN): [`crate::kernels::vmath::exp_lanes`] on eight lanes
/// (`max_ps(v, m)` is `v > m ? v : m`, its `if v > a { v } else { a }`).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp_cols<const D: usize>(t: &mut [__m256; D]) -> __m256 {
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    for tj in t.iter() {
        m = _mm256_max_ps(*tj, m);
    }
    *t = exp8n(std::array::from_fn(|j| _mm256_sub_ps(t[j], m)));
    let mut s = _mm256_setzero_ps();
    for tj in t.iter() {
        s = _mm256_add_ps(s, *tj);
    }
    s
}

/// [`exp_cols`] of the first `d` columns of `t`, four at a time side by side.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp_cols_wide(t: &mut [__m256; MAX_WIDE + ROWS], d: usize) -> __m256 {
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    for tj in &t[..d] {
        m = _mm256_max_ps(*tj, m);
    }
    let mut sum = _mm256_setzero_ps();
    let mut j = 0;
    while j + 4 <= d {
        let e = exp8n::<4>(std::array::from_fn(|i| _mm256_sub_ps(t[j + i], m)));
        for (i, ei) in e.iter().enumerate() {
            t[j + i] = *ei;
            sum = _mm256_add_ps(sum, *ei);
        }
        j += 4;
    }
    for tj in &mut t[j..d] {
        *tj = exp8(_mm256_sub_ps(*tj, m));
        sum = _mm256_add_ps(sum, *tj);
    }
    sum
}

/// `k` of the group's rows, in f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn group_k(ks: &[f64], r0: usize) -> __m256 {
    if ks.len() == 1 {
        _mm256_set1_ps(ks[0] as f32)
    } else {
        let k: [f32; ROWS] = std::array::from_fn(|i| row_k(ks, r0 + i) as f32);
        // SAFETY: eight f32 values
        unsafe { _mm256_loadu_ps(k.as_ptr()) }
    }
}

/// [`super::gaussian_rows_f32`] over the whole groups of eight rows of `z`
/// (rows of `D` values) into the contiguous rows `out` (and `saved`); returns
/// the number of rows done.
///
/// # Safety
/// AVX2 and FMA are there; `z.n() == D`.
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_d<const D: usize>(z: &Rows<'_>, ks: &[f64], lo: f32, hi: f32, out: &mut [f32], mut saved: Option<&mut [f32]>) -> usize {
    let full = z.rows() / ROWS * ROWS;
    let (vlo, vhi, one) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi), _mm256_set1_ps(1.0));
    for r0 in (0..full).step_by(ROWS) {
        // SAFETY: AVX2; rows r0..r0 + 8 exist in `z`
        let mut t = unsafe { load::<D>(z, r0) };
        let inv = _mm256_div_ps(one, exp_cols(&mut t));
        for tj in t.iter_mut() {
            *tj = _mm256_mul_ps(*tj, inv);
        }
        if let Some(sv) = saved.as_deref_mut() {
            // SAFETY: AVX2
            unsafe { store::<D>(&t, sv, r0) };
        }
        let k = group_k(ks, r0);
        for tj in t.iter_mut() {
            // clip(y): lo where y < lo, hi where y > hi, else y (NaN stays)
            let y = _mm256_fmadd_ps(k, *tj, vhi);
            let y = _mm256_blendv_ps(y, vlo, _mm256_cmp_ps::<_CMP_LT_OQ>(y, vlo));
            *tj = _mm256_blendv_ps(y, vhi, _mm256_cmp_ps::<_CMP_GT_OQ>(y, vhi));
        }
        // SAFETY: AVX2
        unsafe { store::<D>(&t, out, r0) };
    }
    full
}

/// [`super::gaussian_rows_grad_f32`] (`from_z`) or
/// [`super::gaussian_rows_grad_saved_f32`] over the whole groups of eight rows;
/// returns the number of rows done.
///
/// # Safety
/// AVX2 and FMA are there; `x.n() == g.n() == D` and `g.rows() == x.rows()`;
/// `dd` holds one value per row.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn grad_d<const D: usize>(
    x: &Rows<'_>,
    g: &Rows<'_>,
    ks: &[f64],
    lo: f32,
    hi: f32,
    dz: &mut [f32],
    dd: &mut [f64],
    from_z: bool,
) -> usize {
    let full = x.rows() / ROWS * ROWS;
    let (vlo, vhi, one) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi), _mm256_set1_ps(1.0));
    for r0 in (0..full).step_by(ROWS) {
        // SAFETY: AVX2; rows r0..r0 + 8 exist in `x` and `g`
        let (mut tz, mut tg) = unsafe { (load::<D>(x, r0), load::<D>(g, r0)) };
        let inv = if from_z { _mm256_div_ps(one, exp_cols(&mut tz)) } else { one };
        let k = group_k(ks, r0);
        let mut dot = _mm256_setzero_ps();
        for (tj, gj) in tz.iter_mut().zip(tg.iter_mut()) {
            let si = _mm256_mul_ps(*tj, inv);
            let y = _mm256_fmadd_ps(k, si, vhi);
            // g where lo < y < hi, else +0
            let inside = _mm256_and_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(vlo, y), _mm256_cmp_ps::<_CMP_LT_OQ>(y, vhi));
            let gm = _mm256_and_ps(*gj, inside);
            *tj = si;
            *gj = gm;
            dot = _mm256_fmadd_ps(gm, si, dot);
        }
        for (tj, gj) in tz.iter_mut().zip(tg.iter()) {
            *tj = _mm256_mul_ps(_mm256_mul_ps(k, *tj), _mm256_sub_ps(*gj, dot));
        }
        // SAFETY: AVX2
        unsafe { store::<D>(&tz, dz, r0) };
        let mut dots = [0.0f32; ROWS];
        // SAFETY: eight f32 values
        unsafe { _mm256_storeu_ps(dots.as_mut_ptr(), dot) };
        for (o, &v) in dd[r0..r0 + ROWS].iter_mut().zip(&dots) {
            *o = v as f64;
        }
    }
    full
}

/// [`forward_d`] for rows of `MAX_D < d <= MAX_WIDE` values.
///
/// # Safety
/// AVX2 and FMA are there; `z.n() <= MAX_WIDE`.
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_wide(z: &Rows<'_>, ks: &[f64], lo: f32, hi: f32, out: &mut [f32], mut saved: Option<&mut [f32]>) -> usize {
    let (d, full) = (z.n(), z.rows() / ROWS * ROWS);
    let (vlo, vhi, one) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi), _mm256_set1_ps(1.0));
    let mut t = [_mm256_setzero_ps(); MAX_WIDE + ROWS];
    for r0 in (0..full).step_by(ROWS) {
        // SAFETY: AVX2; rows r0..r0 + 8 exist
        unsafe { load_rows8(z, r0, &mut t) };
        let inv = _mm256_div_ps(one, exp_cols_wide(&mut t, d));
        let k = group_k(ks, r0);
        // the last columns first: their whole stores run into the next row
        for c0 in (0..d).step_by(ROWS).rev() {
            let mut c: [__m256; ROWS] = std::array::from_fn(|j| _mm256_mul_ps(t[c0 + j], inv));
            if let Some(sv) = saved.as_deref_mut() {
                // SAFETY: AVX2
                unsafe { store_rows8(sv, d, r0, c0, &c) };
            }
            for cj in c.iter_mut() {
                let y = _mm256_fmadd_ps(k, *cj, vhi);
                let y = _mm256_blendv_ps(y, vlo, _mm256_cmp_ps::<_CMP_LT_OQ>(y, vlo));
                *cj = _mm256_blendv_ps(y, vhi, _mm256_cmp_ps::<_CMP_GT_OQ>(y, vhi));
            }
            // SAFETY: AVX2
            unsafe { store_rows8(out, d, r0, c0, &c) };
        }
    }
    full
}

/// [`grad_d`] for rows of `MAX_D < d <= MAX_WIDE` values.
///
/// # Safety
/// AVX2 and FMA are there; `x.n() == g.n() <= MAX_WIDE` and `g.rows() == x.rows()`;
/// `dd` holds one value per row.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn grad_wide(x: &Rows<'_>, g: &Rows<'_>, ks: &[f64], lo: f32, hi: f32, dz: &mut [f32], dd: &mut [f64], from_z: bool) -> usize {
    let (d, full) = (x.n(), x.rows() / ROWS * ROWS);
    let (vlo, vhi, one) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi), _mm256_set1_ps(1.0));
    let mut tz = [_mm256_setzero_ps(); MAX_WIDE + ROWS];
    let mut tg = [_mm256_setzero_ps(); MAX_WIDE + ROWS];
    for r0 in (0..full).step_by(ROWS) {
        // SAFETY: AVX2; rows r0..r0 + 8 exist in `x` and `g`
        unsafe { (load_rows8(x, r0, &mut tz), load_rows8(g, r0, &mut tg)) };
        let inv = if from_z { _mm256_div_ps(one, exp_cols_wide(&mut tz, d)) } else { one };
        let k = group_k(ks, r0);
        let mut dot = _mm256_setzero_ps();
        for (tj, gj) in tz[..d].iter_mut().zip(tg[..d].iter_mut()) {
            let si = _mm256_mul_ps(*tj, inv);
            let y = _mm256_fmadd_ps(k, si, vhi);
            let inside = _mm256_and_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(vlo, y), _mm256_cmp_ps::<_CMP_LT_OQ>(y, vhi));
            let gm = _mm256_and_ps(*gj, inside);
            *tj = si;
            *gj = gm;
            dot = _mm256_fmadd_ps(gm, si, dot);
        }
        for c0 in (0..d).step_by(ROWS).rev() {
            let c: [__m256; ROWS] = std::array::from_fn(|j| _mm256_mul_ps(_mm256_mul_ps(k, tz[c0 + j]), _mm256_sub_ps(tg[c0 + j], dot)));
            // SAFETY: AVX2
            unsafe { store_rows8(dz, d, r0, c0, &c) };
        }
        let mut dots = [0.0f32; ROWS];
        // SAFETY: eight f32 values
        unsafe { _mm256_storeu_ps(dots.as_mut_ptr(), dot) };
        for (o, &v) in dd[r0..r0 + ROWS].iter_mut().zip(&dots) {
            *o = v as f64;
        }
    }
    full
}

/// [`forward_d`] for `z.n()` in `1..=8`, [`forward_wide`] up to [`MAX_WIDE`], where AVX2 and FMA are there; else 0 rows.
pub(crate) fn forward(z: &Rows<'_>, ks: &[f64], lo: f32, hi: f32, out: &mut [f32], saved: Option<&mut [f32]>) -> usize {
    let d = z.n();
    if !(1..=MAX_WIDE).contains(&d) || !available() {
        return 0;
    }
    if d > MAX_D {
        // SAFETY: AVX2 and FMA are there and d <= MAX_WIDE (the stores check their slices)
        return unsafe { forward_wide(z, ks, lo, hi, out, saved) };
    }
    // SAFETY: AVX2 and FMA are there and z.n() == d (the stores check their slices)
    unsafe { by_width!(d, forward_d(z, ks, lo, hi, out, saved)) }
}

/// [`grad_d`] for `x.n()` in `1..=8`, [`grad_wide`] up to [`MAX_WIDE`], where AVX2 and FMA are there; else 0 rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad(x: &Rows<'_>, g: &Rows<'_>, ks: &[f64], lo: f32, hi: f32, dz: &mut [f32], dd: &mut [f64], from_z: bool) -> usize {
    let d = x.n();
    if !(1..=MAX_WIDE).contains(&d) || !available() {
        return 0;
    }
    assert!(g.n() == d && g.rows() == x.rows() && dd.len() >= x.rows());
    if d > MAX_D {
        // SAFETY: AVX2 and FMA are there and the shapes agree (the stores check `dz`)
        return unsafe { grad_wide(x, g, ks, lo, hi, dz, dd, from_z) };
    }
    // SAFETY: AVX2 and FMA are there and the shapes agree (the stores check `dz`)
    unsafe { by_width!(d, grad_d(x, g, ks, lo, hi, dz, dd, from_z)) }
}

#[cfg(test)]
mod tests {
    use super::super::{
        gaussian_lanes_f32, gaussian_rows_f32, gaussian_rows_grad_f32, gaussian_rows_grad_saved_f32, grad_lanes_f32, grad_saved_lanes_f32,
    };
    use super::*;

    /// Values with every kind of row: ordinary, clipped at both bounds (large
    /// logits), a +inf, a NaN, ties.
    fn values(rows: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut v: Vec<f32> = (0..rows * d)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 12.0
            })
            .collect();
        if rows > 3 && d > 1 {
            v[d] = f32::INFINITY;
            v[2 * d + 1] = f32::NAN;
            for j in 0..d {
                v[3 * d + j] = 0.25;
            }
        }
        v
    }

    /// The values' bits, every NaN as one pattern (the compiler may order the
    /// operands of a product or sum either way, and a NaN's sign and payload
    /// follow that order: they are not part of the result).
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() }).collect()
    }

    /// The rows of `data` as `Rows`: contiguous (`gap == 0`) or `gap` values apart.
    fn rows_of(data: &[f32], rows: usize, d: usize, gap: usize) -> Rows<'_> {
        assert!(data.len() >= rows * (d + gap));
        // SAFETY: row i's d values start at i*(d + gap), within `data`
        unsafe { Rows::from_raw(data.as_ptr(), rows, d, (d + gap) as isize) }
    }

    /// The forward and both backwards of these kernels equal the 16-lane
    /// kernels' bit for bit, for every width they take, whole groups and the
    /// rows after them, contiguous and spaced rows, one `k` or one per row, and
    /// nothing past the outputs is written.
    #[test]
    fn the_same_bits_as_the_lane_kernels() {
        if !available() {
            return;
        }
        let (lo, hi) = (-3.0f32, 0.5f32);
        for d in (1..=20).chain([23, 24, 31, 33, 61, 64]) {
            for rows in [8usize, 13, 16, 40, 41] {
                for gap in [0usize, 3] {
                    let zd = values(rows, d + gap, d as u64);
                    let gd = values(rows, d + gap, 100 + d as u64);
                    let z = rows_of(&zd, rows, d, gap);
                    let g = rows_of(&gd, rows, d, gap);
                    let per_row: Vec<f64> = (0..rows).map(|r| -2.0 - 0.37 * r as f64).collect();
                    for ks in [&[-2.5f64][..], &per_row[..]] {
                        let n = rows * d;
                        // outputs with a tail that must stay untouched
                        let mut out = vec![7.0f32; n + 9];
                        let mut saved = vec![7.0f32; n + 9];
                        gaussian_rows_f32(z, ks, lo, hi, &mut out[..n], Some(&mut saved[..n]));
                        assert!(out[n..].iter().chain(&saved[n..]).all(|&v| v == 7.0), "d={d} rows={rows}: written past the end");
                        let (mut want, mut want_s) = (vec![0.0f32; n], vec![0.0f32; n]);
                        gaussian_lanes_f32(z, ks, lo, hi, &mut want, Some(&mut want_s));
                        assert_eq!(bits(&out[..n]), bits(&want), "forward d={d} rows={rows} gap={gap}");
                        assert_eq!(bits(&saved[..n]), bits(&want_s), "saved d={d} rows={rows} gap={gap}");
                        let s = Rows::contiguous(&saved[..n], d);
                        for from_z in [true, false] {
                            let mut dz = vec![7.0f32; n + 9];
                            let mut dd = vec![7.0f64; rows];
                            let (mut want_dz, mut want_dd) = (vec![0.0f32; n], vec![0.0f64; rows]);
                            if from_z {
                                gaussian_rows_grad_f32(z, g, ks, lo, hi, &mut dz[..n], &mut dd);
                                grad_lanes_f32(z, g, ks, lo, hi, &mut want_dz, &mut want_dd);
                            } else {
                                gaussian_rows_grad_saved_f32(s, g, ks, lo, hi, &mut dz[..n], &mut dd);
                                grad_saved_lanes_f32(s, g, ks, lo, hi, &mut want_dz, &mut want_dd);
                            }
                            assert!(dz[n..].iter().all(|&v| v == 7.0), "d={d} rows={rows}: gradient written past the end");
                            assert_eq!(bits(&dz[..n]), bits(&want_dz), "grad d={d} rows={rows} gap={gap} from_z={from_z}");
                            let (a, b): (Vec<u64>, Vec<u64>) =
                                (dd.iter().map(|v| v.to_bits()).collect(), want_dd.iter().map(|v| v.to_bits()).collect());
                            assert_eq!(a, b, "ddelta d={d} rows={rows} gap={gap} from_z={from_z}");
                        }
                    }
                }
            }
        }
    }

    /// The kernels do the whole groups only, and nothing where they do not apply.
    #[test]
    fn whole_groups_only() {
        if !available() {
            return;
        }
        let zd = values(13, 9, 1);
        let mut out = vec![0.0f32; 13 * 9];
        assert_eq!(forward(&rows_of(&zd, 13, 6, 0), &[-1.0], -3.0, 0.5, &mut out, None), 8);
        assert_eq!(forward(&rows_of(&zd, 7, 6, 0), &[-1.0], -3.0, 0.5, &mut out, None), 0);
        assert_eq!(forward(&rows_of(&zd, 13, 9, 0), &[-1.0], -3.0, 0.5, &mut out, None), 8);
        let wide = values(8, MAX_WIDE + 1, 2);
        let mut out = vec![0.0f32; wide.len()];
        assert_eq!(forward(&rows_of(&wide, 8, MAX_WIDE + 1, 0), &[-1.0], -3.0, 0.5, &mut out, None), 0);
    }
}
