//! The transposes of the rows-across-lanes kernels ([`super::vmath::load_lanes`],
//! [`super::vmath::store_lanes`]) with AVX2 shuffles: a whole group of
//! [`LANES`] rows moves through 8 x 8 blocks (eight rows, eight columns: eight
//! row loads, 24 shuffles, eight stores) instead of one element at a time. A
//! row's last columns (fewer than eight) go through masked loads and stores,
//! which touch no memory outside the row. Only whole groups come here, and only
//! where the CPU has AVX2 (checked at run time); the callers keep their
//! portable loops for everything else. Moving values does not change them, so
//! results are the same bits either way.

use super::vmath::{LANES, V};

/// Whether this CPU can run [`load_group`] and [`store_group`].
#[inline(always)]
pub(crate) fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        false
    }
}

/// `t[j][i] = row_i[j]` for `j < n` and the [`LANES`] rows `row_i = base + i*stride`.
///
/// # Safety
/// [`available`] is true; for each `i < LANES`, the `n` elements from
/// `base + i*stride` are readable; `t.len() >= n`.
#[inline]
pub(crate) unsafe fn load_group(base: *const f32, stride: isize, n: usize, t: &mut [V]) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: the caller's contract
    unsafe {
        avx2::load_group(base, stride, n, t)
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        let _ = (base, stride, n, t);
        unreachable!("load_group needs AVX2 (see `available`)")
    }
}

/// Writes the lanes of `t` as the [`LANES`] contiguous rows of `n` values
/// that start at `dst` (the inverse of [`load_group`]).
///
/// # Safety
/// [`available`] is true; `dst` is writable for `LANES * n` values; `t.len() >= n`.
#[inline]
pub(crate) unsafe fn store_group(t: &[V], n: usize, dst: *mut f32) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: the caller's contract
    unsafe {
        avx2::store_group(t, n, dst)
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        let _ = (t, n, dst);
        unreachable!("store_group needs AVX2 (see `available`)")
    }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::{LANES, V};
    use crate::kernels::vmath::Rows;

    /// Rows become columns: `out[j]` holds element `j` of `r[0..8]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// The first `w` of eight lanes (`1 <= w <= 8`), as a mask of sign bits.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn first(w: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(w as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// Eight rows of `D <= 8` values, row `i` at `base + i*stride`, as `D`
    /// columns of eight lanes (`out[j][i]` is element `j` of row `i`): one load
    /// per row and one 8 x 8 transpose, all in registers. Rows `i < whole` are
    /// read with whole eight-value loads (their values past `D` are dropped),
    /// the others with masked loads that read only their `D` values.
    ///
    /// # Safety
    /// The CPU has AVX2; for every `i < 8` the `D` values from `base + i*stride`
    /// are readable, and for `i < whole` so are eight.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn load8<const D: usize>(base: *const f32, stride: isize, whole: usize) -> [__m256; D] {
        const { assert!(D >= 1 && D <= 8) };
        // SAFETY: the caller's contract, columns 0..D
        let c = unsafe { load8w(base, stride, 0, D, whole) };
        std::array::from_fn(|j| c[j])
    }

    /// Writes `D <= 8` columns of eight lanes as eight contiguous rows of `D`
    /// values from `dst` (the inverse of [`load8`] with `stride = D`), rows in
    /// order. Rows `i < whole` are written with whole eight-value stores, whose
    /// values past `D` land on the next rows' first values and are overwritten
    /// by those rows' own stores right after; the others with masked stores
    /// that write only their `D` values.
    ///
    /// # Safety
    /// The CPU has AVX2; the `8 * D` values from `dst` are writable, and for
    /// `i < whole` so are the eight values from `dst + i*D`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn store8<const D: usize>(cols: &[__m256; D], dst: *mut f32, whole: usize) {
        const { assert!(D >= 1 && D <= 8) };
        let c: [__m256; 8] = std::array::from_fn(|j| if j < D { cols[j] } else { _mm256_setzero_ps() });
        // SAFETY: the caller's contract: rows of D values, columns 0..D
        unsafe { store8w(&c, dst, D, 0, D, whole) }
    }

    /// Columns `col0..col0 + w` (`1 <= w <= 8`) of eight rows, row `i` at
    /// `base + i*stride`, as eight columns of eight lanes (`out[j][i]` is
    /// element `col0 + j` of row `i`; lanes past `w` hold other values or 0).
    /// Rows `i < whole` are read with whole eight-value loads, the others with
    /// masked loads of their `w` values.
    ///
    /// # Safety
    /// The CPU has AVX2; for every `i < 8` the values `col0..col0 + w` of row
    /// `i` are readable, and for `i < whole` so are `col0..col0 + 8`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn load8w(base: *const f32, stride: isize, col0: usize, w: usize, whole: usize) -> [__m256; 8] {
        let mask = first(w);
        // SAFETY: the caller's contract
        let r: [__m256; 8] = std::array::from_fn(|i| unsafe {
            let p = base.wrapping_offset(i as isize * stride).add(col0);
            if w == 8 || i < whole {
                _mm256_loadu_ps(p)
            } else {
                _mm256_maskload_ps(p, mask)
            }
        });
        transpose8(r)
    }

    /// Writes the first `w` of eight columns as values `col0..col0 + w` of
    /// eight contiguous rows of `d` values from `dst`, rows in order. Rows
    /// `i < whole` are written with whole eight-value stores: past the row's
    /// end (`w < 8`) they land on the next row's first values, which the
    /// caller writes afterwards (a row's last columns are stored before its
    /// first ones, the rows in order); the others with masked stores.
    ///
    /// # Safety
    /// The CPU has AVX2; values `col0..col0 + w` of the eight rows from `dst`
    /// are writable, and for `i < whole` so are the eight from `dst + i*d + col0`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn store8w(cols: &[__m256; 8], dst: *mut f32, d: usize, col0: usize, w: usize, whole: usize) {
        let rows = transpose8(*cols);
        let mask = first(w);
        for (i, row) in rows.iter().enumerate() {
            // SAFETY: the caller's contract
            unsafe {
                let p = dst.add(i * d + col0);
                if w == 8 || i < whole {
                    _mm256_storeu_ps(p, *row)
                } else {
                    _mm256_maskstore_ps(p, mask, *row)
                }
            }
        }
    }

    /// How many of eight rows of `d` values, contiguous from a pointer with
    /// `avail` readable (or writable) values after it, may have their values
    /// `col0..col0 + 8` read or written whole: those with `i*d + col0 + 8 <= avail`.
    #[inline(always)]
    pub(crate) fn whole_rows_from(avail: usize, d: usize, col0: usize) -> usize {
        if avail < col0 + 8 || d == 0 {
            0
        } else {
            ((avail - col0 - 8) / d + 1).min(8)
        }
    }

    /// Rows `r0..r0 + 8` of `x` into `t[..d]` (`d = x.n()`, rounded up to a
    /// multiple of eight: the lanes past `d` hold other values or 0) as
    /// columns of eight lanes, eight columns at a time.
    ///
    /// # Safety
    /// The CPU has AVX2 and rows `r0..r0 + 8` exist.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn load_rows8(x: &Rows<'_>, r0: usize, t: &mut [__m256]) {
        let d = x.n();
        let base = x.ptr().wrapping_offset(r0 as isize * x.stride());
        let contiguous = x.stride() == d as isize;
        let avail = (x.rows() - r0) * d;
        for c0 in (0..d).step_by(8) {
            let w = (d - c0).min(8);
            // whole loads past a row's end run into the next row: contiguous rows only
            let whole = if contiguous { whole_rows_from(avail, d, c0) } else { 0 };
            // SAFETY: each row's d values are readable (`Rows`); whole loads only
            // where eight values lie within the contiguous rows r0..
            let c = unsafe { load8w(base, x.stride(), c0, w, whole) };
            t[c0..c0 + 8].copy_from_slice(&c);
        }
    }

    /// Writes columns `c0..c0 + 8` (those below `d`) of rows `r0..r0 + 8` of
    /// the contiguous rows `dst` (of `d` values); callers go from the last
    /// block of columns to the first (see [`store8w`]).
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn store_rows8(dst: &mut [f32], d: usize, r0: usize, c0: usize, cols: &[__m256; 8]) {
        let rest = &mut dst[r0 * d..];
        assert!(rest.len() >= 8 * d && c0 < d);
        let w = (d - c0).min(8);
        // SAFETY: the eight rows lie in `rest`; whole stores only where eight values do
        unsafe { store8w(cols, rest.as_mut_ptr(), d, c0, w, whole_rows_from(rest.len(), d, c0)) }
    }

    /// How many of eight rows of `d` values, contiguous from a pointer with
    /// `avail` readable (or writable) values after it, may be read or written
    /// with whole eight-value loads or stores: those with `i*d + 8 <= avail`.
    #[inline(always)]
    pub(crate) fn whole_rows(avail: usize, d: usize) -> usize {
        whole_rows_from(avail, d, 0)
    }

    /// See [`super::load_group`]. A row's last columns (fewer than eight) are read
    /// with whole loads that run into the next rows where the rows are contiguous
    /// (the extra lanes are dropped), else with masked loads, and masked where a
    /// whole load would pass the group's end, so that nothing outside the rows is read.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn load_group(base: *const f32, stride: isize, n: usize, t: &mut [V]) {
        assert!(t.len() >= n && LANES == 16);
        let contiguous = stride == n as isize;
        for h in 0..2 {
            let rows: [*const f32; 8] = std::array::from_fn(|i| base.wrapping_offset((8 * h + i) as isize * stride));
            let mut c = 0;
            while c < n {
                let w = (n - c).min(8);
                let mask = first(w);
                // SAFETY: lanes c..c + w of each row lie within its n readable elements; a
                // whole load past them stays within the group's next rows (contiguous rows,
                // LANES * n values); a masked load touches only its selected lanes
                let r: [__m256; 8] = std::array::from_fn(|i| unsafe {
                    let p = rows[i].add(c);
                    if w == 8 || (contiguous && (8 * h + i) * n + c + 8 <= LANES * n) {
                        _mm256_loadu_ps(p)
                    } else {
                        _mm256_maskload_ps(p, mask)
                    }
                });
                let cols = transpose8(r);
                for (j, col) in cols.iter().enumerate().take(w) {
                    // SAFETY: t[c + j] exists (c + j < n <= t.len()) and holds 16 lanes
                    unsafe { _mm256_storeu_ps(t[c + j].as_mut_ptr().add(8 * h), *col) };
                }
                c += 8;
            }
        }
    }

    /// See [`super::store_group`]. A row's last columns (fewer than eight) are
    /// written with a whole store that runs into the next rows' first columns,
    /// which are written afterwards (the column blocks go from the last to the
    /// first, the rows in order, and a row's own store comes after every store
    /// of the rows before it); a store that would pass the group's end is masked,
    /// so that nothing after the group is written.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn store_group(t: &[V], n: usize, dst: *mut f32) {
        assert!(t.len() >= n && LANES == 16);
        for h in 0..2 {
            for c in (0..n).step_by(8).rev() {
                let w = (n - c).min(8);
                // SAFETY: t[c + j] exists for j < w and holds 16 lanes
                let cols: [__m256; 8] =
                    std::array::from_fn(
                        |j| if j < w { unsafe { _mm256_loadu_ps(t[c + j].as_ptr().add(8 * h)) } } else { _mm256_setzero_ps() },
                    );
                let rows = transpose8(cols);
                for (i, row) in rows.iter().enumerate() {
                    // SAFETY: row 8h + i of the group, columns c..c + w, lies within the
                    // LANES * n writable values, and so does a whole store (checked)
                    unsafe {
                        let p = dst.add((8 * h + i) * n + c);
                        if w == 8 || (8 * h + i) * n + c + 8 <= LANES * n {
                            _mm256_storeu_ps(p, *row)
                        } else {
                            _mm256_maskstore_ps(p, first(w), *row)
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every width up to five column blocks, rows contiguous, spaced apart and
    /// in reverse order: the lanes hold the rows' elements (the NaN between and
    /// around the rows would show in a lane taken from the wrong place).
    #[test]
    fn load_group_moves_every_element_and_reads_only_the_rows() {
        if !available() {
            return;
        }
        for n in 1..=40usize {
            for gap in [0usize, 3] {
                for reverse in [false, true] {
                    let stride = n + gap;
                    let mut buf = vec![f32::NAN; 8 + LANES * stride + 8];
                    for i in 0..LANES {
                        for j in 0..n {
                            buf[8 + i * stride + j] = (1000 * i + j) as f32;
                        }
                    }
                    let (base, s) = if reverse {
                        (buf[8 + (LANES - 1) * stride..].as_ptr(), -(stride as isize))
                    } else {
                        (buf[8..].as_ptr(), stride as isize)
                    };
                    let mut t = vec![[0.0f32; LANES]; n];
                    // SAFETY: AVX2 is there; every row's n elements lie in `buf`
                    unsafe { load_group(base, s, n, &mut t) };
                    for (j, tj) in t.iter().enumerate() {
                        for (i, &v) in tj.iter().enumerate() {
                            let row = if reverse { LANES - 1 - i } else { i };
                            assert_eq!(v, (1000 * row + j) as f32, "n={n} gap={gap} reverse={reverse} t[{j}][{i}]");
                        }
                    }
                }
            }
        }
    }

    /// Every width up to five column blocks: the rows come back in order, and no
    /// value before or after the group's block is written.
    #[test]
    fn store_group_writes_the_block_and_nothing_else() {
        if !available() {
            return;
        }
        for n in 1..=40usize {
            let t: Vec<V> = (0..n).map(|j| std::array::from_fn(|i| (1000 * i + j) as f32)).collect();
            let mut buf = vec![-7.0f32; 8 + LANES * n + 8];
            // SAFETY: AVX2 is there; the block of LANES * n values lies in `buf`
            unsafe { store_group(&t, n, buf[8..].as_mut_ptr()) };
            assert!(buf[..8].iter().chain(&buf[8 + LANES * n..]).all(|&v| v == -7.0), "n={n}: written outside the block");
            for i in 0..LANES {
                for j in 0..n {
                    assert_eq!(buf[8 + i * n + j], (1000 * i + j) as f32, "n={n} row {i} column {j}");
                }
            }
        }
    }
}
