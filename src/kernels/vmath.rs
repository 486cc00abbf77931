//! Vector math shared by the kernels of every head.
//!
//! The f32 functions are written as branch-free loops over lanes of
//! [`LANES`] floats, which the compiler turns into SIMD code inside the
//! kernels that call them; each public kernel is compiled several times
//! (AVX-512, AVX2+FMA, the x86-64 baseline, NEON on aarch64) and the best
//! version for the running CPU is picked at run time (`multiversion`), so
//! the shipped library needs no `target-cpu` flag.
//!
//! Accuracy (measured by the tests in this module, against f64 `exp`/`ln`;
//! docs/math.md#vectorised-f32-kernels): [`exp_f32`] is within 2 ulp on
//! [-87, 88] (0 below -87.3, where f32 underflows anyway); [`ln_f32`] within
//! 2 ulp on positive normal floats. Sums accumulate per lane in f32 over
//! blocks of [`BLOCK`] elements and then in f64 across blocks.
//!
//! The f64 row helpers ([`row_max`], [`logsumexp`], [`softmax_into`],
//! [`softmax_entropy`]) serve the f64 kernels and the references.

use std::marker::PhantomData;
use std::ops::Range;

use crate::kernels::element::Element;

/// Lanes per vector step (one AVX-512 register of f32; two AVX2 ones).
pub const LANES: usize = 16;
/// Elements per block: the lane sums are moved to f64 after each block.
pub const BLOCK: usize = 2048;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5*2^23 rounds an f32 to the nearest integer.
const ROUND: f32 = 12_582_912.0;

/// `exp(x)` in f32 (Cephes-style: range reduction by ln 2, degree-6
/// polynomial, exponent by bit manipulation). NaN propagates; below -87.33
/// the result is 0, above 88.37 it is clamped (callers only pass `x <= 0`).
/// Written with fused multiply-adds: every dispatched kernel version has FMA
/// (AVX-512, AVX2+FMA, NEON); the baseline x86-64 version computes them in
/// software (slower, same results).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let v = exp_nonpos_f32(if x > 88.37 { 88.37 } else { x });
    if x.is_nan() {
        x
    } else {
        v
    }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod avx2;
#[cfg(all(target_arch = "x86_64", not(miri)))]
pub(crate) use avx2::{exp8, exp8n};

/// `exp(x)` for `x <= 88.37` or NaN (the token kernels' arguments are
/// differences to the row maximum): [`exp_f32`] without the upper clamp and
/// the NaN select (a NaN input still gives NaN through the arithmetic).
#[inline(always)]
pub fn exp_nonpos_f32(x: f32) -> f32 {
    let xc = if x < -87.33 { -87.33 } else { x };
    let t = xc.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r + 1.0);
    let v = y * f32::from_bits(t.to_bits().wrapping_add(127) << 23);
    if x < -87.33 {
        0.0
    } else {
        v
    }
}

/// `ln(x)` in f32 for positive normal `x` (Cephes-style: mantissa in
/// [sqrt(1/2), sqrt(2)), degree-8 polynomial). Returns NaN for negative or
/// NaN input, -inf for 0 and for subnormals (callers keep inputs normal).
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // in [0.5, 1)
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = if small { e - 1 } else { e } as f32;
    let m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let mut p = 7.037_683_6e-2f32;
    p = p * m - 1.151_461e-1;
    p = p * m + 1.167_699_9e-1;
    p = p * m - 1.242_014_1e-1;
    p = p * m + 1.424_932_3e-1;
    p = p * m - 1.666_805_8e-1;
    p = p * m + 2.000_071_4e-1;
    p = p * m - 2.499_999_4e-1;
    p = p * m + 3.333_333e-1;
    let y = p * m * z + e * LN2_LO - 0.5 * z;
    let r = m + y + e * LN2_HI;
    if x.is_nan() || x < 0.0 {
        f32::NAN
    } else if x < f32::MIN_POSITIVE {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        x
    } else {
        r
    }
}

/// `2^(d * 0.5 * log2(e)) = exp(d / 2)` for `d` in [-87, 0] or NaN (the
/// token forward's one exponential, 12 vector operations): `t = d/2 * log2(e)`
/// is reduced to `f` in [-1/2, 1/2], a degree-6 polynomial gives `2^f`
/// (fitted here; the whole function is within 1.37 ulp for `|d| <= 2` in the
/// benchmark table's accuracy sweep), and the power of two is
/// built from the rounded exponent. The rounding of `t` costs a relative
/// error of about `|t| * 2^-24`, so the error is within 2 ulp for `|d| <= 2`
/// and grows with `|d|` (below `(1 + |d|) * 6e-8` relative), while the absolute error
/// stays below 1.2e-7 everywhere: relative to the row maximum's term 1,
/// which every sum holds, it is below one f32 ulp (the tests measure both).
/// NaN propagates through the polynomial.
#[inline(always)]
pub fn exp_half(d: f32) -> f32 {
    let t = d * (0.5 * LOG2E);
    let r = t + ROUND;
    let n = r - ROUND;
    let f = t - n;
    let mut p = 1.535_336e-4f32;
    p = p.mul_add(f, 1.339_887_5e-3);
    p = p.mul_add(f, 9.618_437e-3);
    p = p.mul_add(f, 5.550_332_4e-2);
    p = p.mul_add(f, 2.402_264_8e-1);
    p = p.mul_add(f, 6.931_472e-1);
    p = p.mul_add(f, 1.0);
    p * f32::from_bits(r.to_bits().wrapping_add(127) << 23)
}

/// One vector of lanes, passed by value so that the compiler keeps it in a register.
pub(crate) type V = [f32; LANES];

#[inline(always)]
pub(crate) fn vmap(a: V, f: impl Fn(f32) -> f32) -> V {
    let mut o = [0.0; LANES];
    for i in 0..LANES {
        o[i] = f(a[i]);
    }
    o
}

#[inline(always)]
pub(crate) fn vzip(a: V, b: V, f: impl Fn(f32, f32) -> f32) -> V {
    let mut o = [0.0; LANES];
    for i in 0..LANES {
        o[i] = f(a[i], b[i]);
    }
    o
}

#[inline(always)]
pub(crate) fn vzip3(a: V, b: V, c: V, f: impl Fn(f32, f32, f32) -> f32) -> V {
    let mut o = [0.0; LANES];
    for i in 0..LANES {
        o[i] = f(a[i], b[i], c[i]);
    }
    o
}

/// Rows of `n` f32 values that lie at a common distance (`stride` elements,
/// either sign) from each other, for reading: a contiguous slice of rows, or
/// the rows of a strided view whose elements within a row are adjacent (the
/// columns `[:, D:]` of a network's output), which the kernels then read where
/// they lie instead of from a gathered copy. A `Rows` only ever yields the
/// elements of its rows, never the memory between them.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    ptr: *const f32,
    rows: usize,
    n: usize,
    stride: isize,
    _data: PhantomData<&'a [f32]>,
}

// SAFETY: a `Rows` stands for shared slices (`&'a [f32]`), which may be sent
// to and shared between threads.
unsafe impl Send for Rows<'_> {}
unsafe impl Sync for Rows<'_> {}

impl<'a> Rows<'a> {
    /// The rows of a contiguous slice, `n` elements each (no rows when `n == 0`).
    pub fn contiguous(data: &'a [f32], n: usize) -> Self {
        let rows = data.len().checked_div(n).unwrap_or(0);
        Rows { ptr: data.as_ptr(), rows, n, stride: n as isize, _data: PhantomData }
    }

    /// `rows` rows of `n` adjacent elements, row `i` starting at `ptr + i*stride`.
    ///
    /// # Safety
    /// For every `i < rows`, the `n` elements from `ptr + i*stride` are valid
    /// for reads and not written for the lifetime `'a`.
    pub unsafe fn from_raw(ptr: *const f32, rows: usize, n: usize, stride: isize) -> Self {
        Rows { ptr, rows, n, stride, _data: PhantomData }
    }

    /// The rows of an array of shape `shape` and strides `strides` (in
    /// elements): their number and the distance between consecutive rows,
    /// when the elements of each row (the last axis) are adjacent and the rows
    /// lie at one distance from each other (the batch axes merge into one);
    /// else `None`. Axes of one element are ignored.
    pub fn layout(shape: &[usize], strides: &[isize]) -> Option<(usize, isize)> {
        let (&n, batch) = shape.split_last()?;
        if strides.len() != shape.len() || (n > 1 && strides[strides.len() - 1] != 1) {
            return None;
        }
        let rows: usize = batch.iter().product();
        // the batch axes of more than one element, innermost first: each must
        // step over the whole of the axes inside it
        let mut stride = None;
        let mut reach = 0isize; // the inner batch axes' extent, in elements
        for (&len, &s) in batch.iter().zip(strides).rev().filter(|(&len, _)| len > 1) {
            match stride {
                None => stride = Some(s),
                Some(_) if s != reach => return None,
                Some(_) => {}
            }
            reach = s.checked_mul(len as isize)?;
        }
        Some((rows, stride.unwrap_or(n as isize)))
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of elements in a row.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Where row 0 starts.
    pub(crate) fn ptr(&self) -> *const f32 {
        self.ptr
    }

    /// The distance from one row's start to the next, in elements.
    pub(crate) fn stride(&self) -> isize {
        self.stride
    }

    /// Row `i` (panics if `i >= self.rows()`).
    #[inline(always)]
    pub fn row(&self, i: usize) -> &'a [f32] {
        assert!(i < self.rows, "row {i} of {} rows", self.rows);
        // SAFETY: row `i` exists, and `from_raw`'s contract (or the slice of
        // `contiguous`) makes its `n` elements readable for `'a`.
        unsafe { std::slice::from_raw_parts(self.ptr.offset(i as isize * self.stride), self.n) }
    }

    /// The rows `range` (panics if it does not lie within `0..self.rows()`).
    pub fn range(&self, range: Range<usize>) -> Rows<'a> {
        assert!(range.start <= range.end && range.end <= self.rows, "rows {range:?} of {}", self.rows);
        // wrapping: the start of an empty range may lie past the last row
        let ptr = self.ptr.wrapping_offset(range.start as isize * self.stride);
        Rows { ptr, rows: range.end - range.start, ..*self }
    }
}

/// Loads rows `g0..g0 + LANES` of `src` into `t`, transposed so that lane `i`
/// holds row `g0 + i`: `t[j][i]` is element `j` of that row. Lanes past the
/// last row are zero (computed by the caller and dropped by [`store_lanes`]),
/// so each row gets the same arithmetic wherever group boundaries fall. The
/// layout of the rows-across-lanes kernels.
#[inline(always)]
pub(crate) fn load_lanes(src: &Rows<'_>, g0: usize, t: &mut [V]) {
    let n = t.len().min(src.n());
    if g0 + LANES <= src.rows() {
        let base = src.ptr.wrapping_offset(g0 as isize * src.stride);
        if n > 0 && super::transpose::available() {
            // SAFETY: AVX2 is there; rows g0..g0 + LANES exist, n <= src.n()
            // elements of each readable as `Rows` promises; n <= t.len()
            unsafe { super::transpose::load_group(base, src.stride, n, t) };
            return;
        }
        // a whole group: element j of the LANES rows at once, one vector per j
        // (copying row by row compiles to scatters into `t`, several times slower)
        let at: [isize; LANES] = std::array::from_fn(|i| i as isize * src.stride);
        for (j, tj) in t.iter_mut().enumerate().take(n) {
            // SAFETY: rows g0..g0 + LANES exist and j < n: each address is
            // element j of one of those rows, readable as `Rows` promises
            *tj = std::array::from_fn(|i| unsafe { *base.offset(at[i] + j as isize) });
        }
        return;
    }
    for i in 0..LANES {
        if g0 + i < src.rows() {
            t.iter_mut().zip(src.row(g0 + i)).for_each(|(tj, &v)| tj[i] = v);
        } else {
            t.iter_mut().for_each(|tj| tj[i] = 0.0);
        }
    }
}

/// Where each value of a whole group's rows comes from in the lanes (see
/// [`store_lanes`]), for rows of `n` values; made once per kernel call.
pub(crate) struct BlockOrder {
    n: usize,
    /// For value `k` of the group's `LANES * n` values (row `k / n`, element
    /// `k % n`): its index in the flattened lanes, `(k % n) * LANES + k / n`.
    from: Vec<u32>,
}

impl BlockOrder {
    /// The order for rows of `n` values.
    /// Empty where the CPU has AVX2: [`store_lanes`] then moves whole groups
    /// with the transposes and never reads it.
    pub(crate) fn new(n: usize) -> Self {
        let from =
            if super::transpose::available() { Vec::new() } else { (0..LANES * n).map(|k| ((k % n) * LANES + k / n) as u32).collect() };
        BlockOrder { n, from }
    }
}

/// Writes the lanes of `t` whose rows exist in `dst` (contiguous rows of `n`)
/// back as rows (the inverse of [`load_lanes`]); `order` is
/// [`BlockOrder::new(n)`](BlockOrder::new).
#[inline(always)]
pub(crate) fn store_lanes(t: &[V], n: usize, g0: usize, dst: &mut [f32], order: &BlockOrder) {
    let rows = dst.len() / n.max(1);
    if n > 0 && order.n == n && t.len() >= n && g0 + LANES <= rows {
        // a whole group: its rows are one block of LANES * n values, written in
        // order, each read from its lane (written so that it compiles to
        // gathers from `t` and whole-vector stores; row by row, it compiles to
        // gathers and stores of a few values at a time)
        let block = &mut dst[g0 * n..(g0 + LANES) * n];
        if super::transpose::available() {
            // SAFETY: AVX2 is there; `block` holds the LANES * n values; t.len() >= n
            unsafe { super::transpose::store_group(t, n, block.as_mut_ptr()) };
            return;
        }
        let src = t.as_ptr().cast::<f32>(); // t.len() * LANES values, lane after lane
        for (o, &k) in block.iter_mut().zip(&order.from) {
            // SAFETY: k < LANES * n <= LANES * t.len() (BlockOrder::new), and
            // an array of [f32; LANES] holds its values back to back
            *o = unsafe { *src.add(k as usize) };
        }
        return;
    }
    for i in 0..LANES.min(rows.saturating_sub(g0)) {
        let row = &mut dst[(g0 + i) * n..(g0 + i + 1) * n];
        for (o, tj) in row.iter_mut().zip(t) {
            *o = tj[i];
        }
    }
}

/// `t[j] = exp(t[j] - max_j t[j])` lane by lane; returns each lane's sum of
/// those. The maximum skips NaN (as [`block_max`] does): a NaN or +inf entry,
/// or a row of -inf, makes that lane's sum NaN.
#[inline(always)]
pub(crate) fn exp_lanes(t: &mut [V]) -> V {
    let mut m = [f32::NEG_INFINITY; LANES];
    for tj in t.iter() {
        m = vzip(m, *tj, |a, v| if v > a { v } else { a });
    }
    let mut s = [0.0f32; LANES];
    for tj in t.iter_mut() {
        let e = vzip(*tj, m, |v, mi| exp_f32(v - mi));
        *tj = e;
        s = vzip(s, e, |a, b| a + b);
    }
    s
}

/// Largest `x * inv_t` of a block (NaN entries are skipped here: they make
/// the exponential sums NaN, which is how the caller detects them). The
/// maximum is taken over `x` and scaled once: `inv_t > 0` and rounding is
/// monotone, so this equals the maximum of the scaled entries.
#[inline(always)]
pub(crate) fn block_max(x: &[f32], inv_t: f32) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let v = c[i];
            m[i] = if v > m[i] { v } else { m[i] };
        }
    }
    let mut mm = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &v in chunks.remainder() {
        mm = if v > mm { v } else { mm };
    }
    mm * inv_t
}

/// Asks the CPU to start loading the cache line at `p` (a hint: no access
/// happens, so any address is allowed, including past the end of a slice).
#[inline(always)]
pub(crate) fn prefetch(p: *const f32) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: prefetch is a hint that never dereferences or faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
}

/// The smaller of `a` and `b`, NaN if `b` is NaN (once NaN, it stays NaN).
#[inline(always)]
pub(crate) fn min_nan(a: f32, b: f32) -> f32 {
    if b < a || b.is_nan() {
        b
    } else {
        a
    }
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
    softmax_entropy_iter(|| x.iter().copied())
}

/// [`softmax_entropy`] of the row that `row()` yields (called twice: the
/// maximum, then the sums), with the same arithmetic in the same order.
#[inline]
pub fn softmax_entropy_iter<I: Iterator<Item = f64>>(row: impl Fn() -> I) -> f64 {
    let mut m = f64::NEG_INFINITY;
    for v in row() {
        if v > m || v.is_nan() {
            m = v;
            if v.is_nan() {
                break;
            }
        }
    }
    if !m.is_finite() {
        return f64::NAN;
    }
    let mut s = 0.0;
    let mut sz = 0.0;
    for v in row() {
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

    fn ulps(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        let ulp = (f32::from_bits(b32.abs().to_bits() + 1) - b32.abs()) as f64;
        (a as f64 - b).abs() / ulp
    }

    #[test]
    #[cfg_attr(miri, ignore = "a 200k-point sweep")]
    fn exp_error_is_within_two_ulp() {
        let mut worst: f64 = 0.0;
        let n = 200_000;
        for i in 0..=n {
            let x = -87.0 + 175.0 * i as f32 / n as f32;
            worst = worst.max(ulps(exp_f32(x), (x as f64).exp()));
        }
        assert!(worst <= 2.0, "max error {worst} ulp");
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a sweep over every binade")]
    fn ln_error_is_within_two_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = f32::MIN_POSITIVE;
        while x < 1e38 {
            for j in 0..64 {
                let v = x * (1.0 + j as f32 / 64.0);
                worst = worst.max(ulps(ln_f32(v), (v as f64).ln()));
            }
            x *= 1.7;
        }
        assert!(worst <= 2.0, "max error {worst} ulp");
        assert!(ln_f32(-1.0).is_nan());
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(1.0), 0.0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a 200k-point sweep")]
    fn exp_half_error_is_within_two_ulp() {
        let (mut near, mut abs, mut rel): (f64, f64, f64) = (0.0, 0.0, 0.0);
        let n = 400_000;
        for i in 0..=n {
            let d = crate::kernels::token::D_FLOOR * i as f32 / n as f32;
            let want = (d as f64 / 2.0).exp();
            let got = exp_half(d) as f64;
            if d >= -2.0 {
                near = near.max(ulps(got as f32, want));
            }
            abs = abs.max((got - want).abs());
            rel = rel.max((got / want - 1.0).abs() / (1.0 + d.abs() as f64));
        }
        assert!(near <= 2.0, "max error {near} ulp for |d| <= 2");
        assert!(abs <= 1.2e-7, "max absolute error {abs}");
        assert!(rel <= 6e-8, "relative error {rel} * (1 + |d|)");
        assert_eq!(exp_half(0.0), 1.0);
        assert!(exp_half(f32::NAN).is_nan());
        // a NaN with a payload stays NaN (the exponent is never built from it alone)
        assert!(exp_half(f32::from_bits(0x7fc0_1234)).is_nan());
        assert!(
            exp_half(crate::kernels::token::D_FLOOR) > 0.0
                && (exp_half(crate::kernels::token::D_FLOOR) * exp_half(crate::kernels::token::D_FLOOR)).is_normal()
        );
    }

    #[test]
    fn exp_nonpos_matches_exp() {
        for i in 0..=100_000 {
            let x = -100.0 * i as f32 / 100_000.0;
            assert_eq!(exp_nonpos_f32(x).to_bits(), exp_f32(x).to_bits(), "{x}");
        }
        assert!(exp_nonpos_f32(f32::NAN).is_nan());
        assert_eq!(exp_nonpos_f32(f32::NEG_INFINITY), 0.0);
    }

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
    fn row_max_propagates_nan() {
        assert!(row_max(&[1.0, f64::NAN, 3.0]).is_nan());
        assert_eq!(row_max(&[]), f64::NEG_INFINITY);
    }
}
