//! Vectorised f32 kernels with runtime CPU-feature dispatch.
//!
//! The kernels are written as branch-free loops over lanes of [`LANES`]
//! floats, which the compiler turns into SIMD code. Each public kernel is
//! compiled several times (AVX-512, AVX2+FMA, the x86-64 baseline, NEON on
//! aarch64) and the best version for the running CPU is picked at run time
//! (`multiversion`), so the shipped library needs no `target-cpu` flag.
//!
//! Accuracy (measured by the tests in this module, against f64 `exp`/`ln`):
//! [`exp_f32`] is within 2 ulp on [-87, 88] (0 below -87.3, where f32
//! underflows anyway); [`ln_f32`] within 2 ulp on positive normal floats.
//! Sums accumulate per lane in f32 over blocks of [`BLOCK`] elements and then
//! in f64 across blocks.

use multiversion::multiversion;

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

/// Statistics of one token row `z = x / T` gathered in one read:
/// `max`, `sum_c = sum(exp(c*(z - max)))` for `c` in `{1, k, 1/k}`, and
/// `w = sum(exp(z - max) * (z - max))` (so `H = ln(sum_1) - w/sum_1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats {
    /// Largest `z` (NaN if the row holds NaN or infinity).
    pub max: f32,
    /// `sum(exp(z - max))`.
    pub sum1: f64,
    /// `sum(exp(k*(z - max)))`.
    pub sumk: f64,
    /// `sum(exp((z - max)/k))`.
    pub suminvk: f64,
    /// `sum(exp(z - max) * (z - max))`.
    pub w: f64,
}

impl RowStats {
    /// Entropy of `softmax(z)`.
    pub fn entropy(&self) -> f64 {
        self.sum1.ln() - self.w / self.sum1
    }

    /// `ln(sum(exp(c*(z - max))))` for `c` in `{1, k, 1/k}` (selected by
    /// comparing with `k`).
    pub fn ln_sum(&self, c: f64, k: f64) -> f64 {
        if c == 1.0 {
            self.sum1.ln()
        } else if c == k {
            self.sumk.ln()
        } else {
            self.suminvk.ln()
        }
    }
}

/// Largest `x * inv_t` of a block (NaN entries are skipped here: they make
/// the exponential sums NaN, which is how the caller detects them). The
/// maximum is taken over `x` and scaled once: `inv_t > 0` and rounding is
/// monotone, so this equals the maximum of the scaled entries.
#[inline(always)]
fn block_max(x: &[f32], inv_t: f32) -> f32 {
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
fn prefetch(p: *const f32) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: prefetch is a hint that never dereferences or faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
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
    let mut p = 1.535_336_1e-4f32;
    p = p.mul_add(f, 1.339_887_5e-3);
    p = p.mul_add(f, 9.618_437e-3);
    p = p.mul_add(f, 5.550_332_4e-2);
    p = p.mul_add(f, 2.402_264_8e-1);
    p = p.mul_add(f, 6.931_472e-1);
    p = p.mul_add(f, 1.0);
    p * f32::from_bits(r.to_bits().wrapping_add(127) << 23)
}

/// One vector of lanes, passed by value so that the compiler keeps it in a register.
type V = [f32; LANES];

#[inline(always)]
fn vmap(a: V, f: impl Fn(f32) -> f32) -> V {
    let mut o = [0.0; LANES];
    for i in 0..LANES {
        o[i] = f(a[i]);
    }
    o
}

#[inline(always)]
fn vzip(a: V, b: V, f: impl Fn(f32, f32) -> f32) -> V {
    let mut o = [0.0; LANES];
    for i in 0..LANES {
        o[i] = f(a[i], b[i]);
    }
    o
}

#[inline(always)]
fn vzip3(a: V, b: V, c: V, f: impl Fn(f32, f32, f32) -> f32) -> V {
    let mut o = [0.0; LANES];
    for i in 0..LANES {
        o[i] = f(a[i], b[i], c[i]);
    }
    o
}

/// Lower clamp of `d = z - max` in the fused sums: `exp(-87)` is below
/// 2e-38 (it adds nothing to a sum that holds the maximum's 1), and both
/// `exp(-87/2)` and its square stay normal f32 numbers.
pub const D_FLOOR: f32 = -87.0;

/// The block's exponential sums relative to `m`: `[sum_1, sum_k, sum_1/k, w]`.
/// With `K2` (k = 2) one exponential serves all three scales: `h = exp(d/2)`,
/// `exp(d) = h^2`, `exp(2d) = h^4` (a few ulp each). The next block is
/// prefetched while this one is computed, so that the memory reads overlap
/// with the arithmetic.
#[inline(always)]
fn block_sums<const K2: bool>(x: &[f32], inv_t: f32, m: f32, k: f32, inv_k: f32) -> [f64; 4] {
    let mut s1 = [0.0f32; LANES];
    let mut sk = [0.0f32; LANES];
    let mut si = [0.0f32; LANES];
    let mut w = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        prefetch(c.as_ptr().wrapping_add(BLOCK));
        let c: &V = c.try_into().unwrap_or(&[0.0; LANES]);
        // rounded product, then the difference: the row maximum gives exactly 0 and
        // every d <= 0 (a fused multiply-add would leave the product's rounding
        // error, which is huge and may be positive when 1/T is huge)
        let d = vmap(*c, |v| v * inv_t - m);
        if K2 {
            // NaN stays NaN (the comparison is false)
            let d = vmap(d, |v| if v < D_FLOOR { D_FLOOR } else { v });
            let h = vmap(d, exp_half);
            let e = vzip(h, h, |a, b| a * b);
            s1 = vzip(s1, e, |a, b| a + b);
            w = vzip3(e, d, w, |a, b, c| a.mul_add(b, c));
            sk = vzip3(e, e, sk, |a, b, c| a.mul_add(b, c));
            si = vzip(si, h, |a, b| a + b);
        } else {
            let e = vmap(d, exp_f32);
            s1 = vzip(s1, e, |a, b| a + b);
            // d >= -100 keeps 0 * -inf out of w (e is 0 there anyway)
            w = vzip3(e, vmap(d, |v| v.max(-100.0)), w, |a, b, c| a.mul_add(b, c));
            sk = vzip(sk, vmap(d, |v| exp_f32(k * v)), |a, b| a + b);
            si = vzip(si, vmap(d, |v| exp_f32(inv_k * v)), |a, b| a + b);
        }
    }
    let mut out = [
        s1.iter().map(|&v| v as f64).sum::<f64>(),
        sk.iter().map(|&v| v as f64).sum::<f64>(),
        si.iter().map(|&v| v as f64).sum::<f64>(),
        w.iter().map(|&v| v as f64).sum::<f64>(),
    ];
    for &v in chunks.remainder() {
        let d = v * inv_t - m;
        let e = exp_f32(d);
        out[0] += e as f64;
        out[1] += if K2 { (e * e) as f64 } else { exp_f32(k * d) as f64 };
        out[2] += if K2 { e.sqrt() as f64 } else { exp_f32(inv_k * d) as f64 };
        out[3] += if e > 0.0 { (e * d) as f64 } else { 0.0 };
    }
    out
}

/// One read of a token row: [`RowStats`] of `z = x * inv_t` for scales
/// `{1, k, 1/k}`, block by block with running rescaling (online softmax).
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub fn token_row_stats(x: &[f32], inv_t: f32, k: f32) -> RowStats {
    let inv_k = 1.0 / k;
    let k_is_two = k == 2.0;
    let mut m = f32::NEG_INFINITY;
    let (mut s1, mut sk, mut si, mut w) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for blk in x.chunks(BLOCK) {
        let bm = block_max(blk, inv_t);
        if bm == f32::NEG_INFINITY {
            continue; // every entry is -inf: probability 0
        }
        if bm > m {
            if s1 > 0.0 {
                let f = (m - bm) as f64; // < 0
                let e1 = f.exp();
                w = e1 * (w + f * s1);
                s1 *= e1;
                sk *= (k as f64 * f).exp();
                si *= (inv_k as f64 * f).exp();
            }
            m = bm;
        }
        let [a, b2, c, d] = if k_is_two {
            block_sums::<true>(blk, inv_t, m, k, inv_k)
        } else {
            block_sums::<false>(blk, inv_t, m, k, inv_k)
        };
        s1 += a;
        sk += b2;
        si += c;
        w += d;
    }
    // a NaN or +inf entry makes every sum NaN (exp(NaN), exp(inf - inf))
    if s1.is_nan() {
        m = f32::NAN;
    }
    RowStats { max: m, sum1: s1, sumk: sk, suminvk: si, w }
}

/// The backward row of the token head, written into `out`:
/// `out_i = f * (onehot(label)_i - p_i)` with `p = softmax(c*z)` over the
/// kept entries (all, or the top-k given by `thr`) and 0 elsewhere, where
/// `z = x * inv_t`. Three passes over the row, which stays in cache: the
/// maximum, the exponentials (stored in `out`) with their sum, and the scaling.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub fn token_row_grad(x: &[f32], inv_t: f32, c: f32, f: f32, label: usize, thr: Option<(f32, usize)>, out: &mut [f32]) {
    let keep = |i: usize, v: f32| match thr {
        None => true,
        Some((t, ti)) => v > t || (v == t && i <= ti),
    };
    let m = match thr {
        None => block_max(x, inv_t),
        Some(_) => x
            .iter()
            .enumerate()
            .filter(|&(i, &v)| keep(i, v))
            .map(|(_, &v)| v * inv_t)
            .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a }),
    };
    let mut total = 0.0f64;
    for (bi, (xb, ob)) in x.chunks(BLOCK).zip(out.chunks_mut(BLOCK)).enumerate() {
        let mut s = [0.0f32; LANES];
        let base = bi * BLOCK;
        let mut xs = xb.chunks_exact(LANES);
        let mut os = ob.chunks_exact_mut(LANES);
        let mut off = 0;
        for (xc, oc) in (&mut xs).zip(&mut os) {
            let xv: &V = xc.try_into().unwrap_or(&[0.0; LANES]);
            let mut e = vmap(*xv, |v| exp_nonpos_f32(c * (v * inv_t - m)));
            if thr.is_some() {
                for i in 0..LANES {
                    if !keep(base + off + i, xv[i]) {
                        e[i] = 0.0;
                    }
                }
            }
            oc.copy_from_slice(&e);
            s = vzip(s, e, |a, b| a + b);
            off += LANES;
        }
        total += s.iter().map(|&v| v as f64).sum::<f64>();
        for (j, (&v, o)) in xs.remainder().iter().zip(os.into_remainder()).enumerate() {
            let e = if keep(base + off + j, v) { exp_f32(c * (v * inv_t - m)) } else { 0.0 };
            *o = e;
            total += e as f64;
        }
    }
    let scale = -((f as f64) / total) as f32;
    for o in out.iter_mut() {
        *o *= scale;
    }
    if label < out.len() {
        out[label] += f;
    }
}

/// `w_i = -1 - sqrt(2u) - 0.75u` of the softmax head (ERA_MATH.md 2) for one
/// probability `s`: `h = slope*s + b`, `u = -1 - ln(h)`, both clamped as in the
/// f64 kernel. NaN propagates.
#[inline(always)]
fn softmax_head_w(slope: f32, b: f32, s: f32) -> f32 {
    let h = slope.mul_add(s, b);
    let h = if h < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { h };
    let u = -1.0 - ln_f32(h);
    let u = if u < 0.0 { 0.0 } else { u };
    -1.0 - (2.0 * u).sqrt() - 0.75 * u
}

/// `a_i = g_i * (1/sqrt(2u) + 0.75) / h` of the softmax head's backward (0 where
/// `g_i` or `s_i` is 0, as in the f64 kernel).
#[inline(always)]
fn softmax_head_a(slope: f32, b: f32, g: f32, s: f32) -> f32 {
    let h = slope.mul_add(s, b);
    let h = if h < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { h };
    let u = -1.0 - ln_f32(h);
    let u = if u < f32::MIN_POSITIVE { f32::MIN_POSITIVE } else { u };
    let a = g * (1.0 / (2.0 * u).sqrt() + 0.75) / h;
    if g == 0.0 || s == 0.0 {
        0.0
    } else {
        a
    }
}

/// The smaller of `a` and `b`, NaN if `b` is NaN (once NaN, it stays NaN).
#[inline(always)]
fn min_nan(a: f32, b: f32) -> f32 {
    if b < a || b.is_nan() {
        b
    } else {
        a
    }
}

/// `out = exp(z - max(z))` and their sum (f32 lanes, f64 across blocks). A
/// NaN or +inf entry, or a row of -inf, makes the sum NaN.
#[inline(always)]
fn exp_row(z: &[f32], out: &mut [f32]) -> f64 {
    let m = block_max(z, 1.0);
    let mut total = 0.0f64;
    for (zb, ob) in z.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        let mut acc = [0.0f32; LANES];
        let mut zs = zb.chunks_exact(LANES);
        let mut os = ob.chunks_exact_mut(LANES);
        for (zc, oc) in (&mut zs).zip(&mut os) {
            let zv: &V = zc.try_into().unwrap_or(&[0.0; LANES]);
            let e = vmap(*zv, |v| exp_f32(v - m));
            oc.copy_from_slice(&e);
            acc = vzip(acc, e, |a, b| a + b);
        }
        // a long tail as one more vector, padded with -inf (exp gives 0 there)
        let (rem, orem) = (zs.remainder(), os.into_remainder());
        if rem.len() >= VECTOR_TAIL {
            let mut zv = [f32::NEG_INFINITY; LANES];
            zv[..rem.len()].copy_from_slice(rem);
            let e = vmap(zv, |v| exp_f32(v - m));
            orem.copy_from_slice(&e[..rem.len()]);
            acc = vzip(acc, e, |a, b| a + b);
        }
        total += acc.iter().map(|&v| v as f64).sum::<f64>();
        if rem.len() < VECTOR_TAIL {
            for (&v, o) in rem.iter().zip(orem) {
                *o = exp_f32(v - m);
                total += *o as f64;
            }
        }
    }
    total
}

/// Row tails at least this long run as one padded vector, shorter ones
/// element by element (measured: the padded vector's copies cost about as
/// much as 6-8 scalar elements).
const VECTOR_TAIL: usize = 8;

/// Softmax-head forward of one f32 row (ERA_MATH.md 2): `s = softmax(z)`,
/// `w_i` from `h_i = slope*s_i + b`, then `out = w - min(w)`. Three passes
/// over the row (the exponentials, the map, the shift), vectorised along it.
/// The caller keeps `u = -1 - ln(h)` away from 0 (see
/// `SoftmaxHead::f32_kernels`), where f32 would lose the square root's digits.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub fn softmax_head_row_f32(z: &[f32], slope: f32, b: f32, out: &mut [f32]) {
    let inv = (1.0 / exp_row(z, out)) as f32;
    let mut wmin = [f32::INFINITY; LANES];
    let mut os = out.chunks_exact_mut(LANES);
    for oc in &mut os {
        let ov: &V = (&*oc).try_into().unwrap_or(&[0.0; LANES]);
        let w = vmap(*ov, |e| softmax_head_w(slope, b, e * inv));
        oc.copy_from_slice(&w);
        wmin = vzip(wmin, w, min_nan);
    }
    let rem = os.into_remainder();
    if rem.len() >= VECTOR_TAIL {
        let mut ev = [0.0f32; LANES];
        ev[..rem.len()].copy_from_slice(rem);
        let mut w = vmap(ev, |e| softmax_head_w(slope, b, e * inv));
        w[rem.len()..].fill(f32::INFINITY); // padding takes no part in the minimum
        rem.copy_from_slice(&w[..rem.len()]);
        wmin = vzip(wmin, w, min_nan);
    }
    let mut m = wmin.iter().copied().fold(f32::INFINITY, min_nan);
    if rem.len() < VECTOR_TAIL {
        for o in rem.iter_mut() {
            *o = softmax_head_w(slope, b, *o * inv);
            m = min_nan(m, *o);
        }
    }
    for o in out.iter_mut() {
        *o -= m;
    }
}

/// Softmax-head backward of one f32 row: `dz_j = slope * s_j * (a_j - sum_i a_i s_i)`
/// (ERA_MATH.md 2; the min-shift is stop-gradient). `scratch` holds the `a_i`.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub fn softmax_head_row_grad_f32(z: &[f32], g: &[f32], slope: f32, b: f32, dz: &mut [f32], scratch: &mut Vec<f32>) {
    if slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    let inv = (1.0 / exp_row(z, dz)) as f32;
    scratch.clear();
    scratch.resize(dz.len(), 0.0);
    let mut dot = 0.0f64;
    for ((db, gb), ab) in dz.chunks_mut(BLOCK).zip(g.chunks(BLOCK)).zip(scratch.chunks_mut(BLOCK)) {
        let mut acc = [0.0f32; LANES];
        let mut ds = db.chunks_exact_mut(LANES);
        let mut gs = gb.chunks_exact(LANES);
        let mut as_ = ab.chunks_exact_mut(LANES);
        for ((dc, gc), ac) in (&mut ds).zip(&mut gs).zip(&mut as_) {
            let ev: &V = (&*dc).try_into().unwrap_or(&[0.0; LANES]);
            let gv: &V = gc.try_into().unwrap_or(&[0.0; LANES]);
            let sv = vmap(*ev, |e| e * inv);
            let av = vzip(*gv, sv, |gi, si| softmax_head_a(slope, b, gi, si));
            dc.copy_from_slice(&sv);
            ac.copy_from_slice(&av);
            acc = vzip3(av, sv, acc, |a, s, c| a.mul_add(s, c));
        }
        // a long tail as one more vector, padded with g = 0 (a = 0 there)
        let (dr, gr, ar) = (ds.into_remainder(), gs.remainder(), as_.into_remainder());
        if dr.len() < VECTOR_TAIL {
            for ((d, &gi), a) in dr.iter_mut().zip(gr).zip(ar.iter_mut()) {
                let si = *d * inv;
                *a = softmax_head_a(slope, b, gi, si);
                *d = si;
                dot += (*a * si) as f64;
            }
        } else {
            let r = dr.len();
            let (mut ev, mut gv) = ([0.0f32; LANES], [0.0f32; LANES]);
            ev[..r].copy_from_slice(dr);
            gv[..r].copy_from_slice(gr);
            let sv = vmap(ev, |e| e * inv);
            let av = vzip(gv, sv, |gi, si| softmax_head_a(slope, b, gi, si));
            dr.copy_from_slice(&sv[..r]);
            ar.copy_from_slice(&av[..r]);
            acc = vzip3(av, sv, acc, |a, s, c| a.mul_add(s, c));
        }
        dot += acc.iter().map(|&v| v as f64).sum::<f64>();
    }
    let dot = dot as f32;
    for (d, &a) in dz.iter_mut().zip(scratch.iter()) {
        *d = slope * *d * (a - dot);
    }
}

/// `k` of row `r` from a call's `k` values: one per row, or a single value
/// that serves every row (a scalar `delta`).
#[inline(always)]
pub fn row_k(ks: &[f64], r: usize) -> f64 {
    if ks.len() == 1 {
        ks[0]
    } else {
        ks[r]
    }
}

/// Gaussian-head forward over contiguous f32 rows of length `d`:
/// `out = clip(hi + k_r * softmax(z_r), lo, hi)` with `k_r = ks[r]`, or
/// `ks[0]` for every row when `ks` holds one value (a scalar `delta`).
/// Rows are processed [`LANES`] at a time with one row per lane, so that
/// short rows (a few action dimensions) still fill the vector registers.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub fn gaussian_rows_f32(z: &[f32], d: usize, ks: &[f64], lo: f32, hi: f32, out: &mut [f32]) {
    let rows = z.len() / d.max(1);
    let full = rows / LANES * LANES;
    // the group transposed: t[j] holds element j of LANES consecutive rows
    let mut t = vec![[0.0f32; LANES]; if full > 0 { d } else { 0 }];
    for g in (0..full).step_by(LANES) {
        let zg = &z[g * d..(g + LANES) * d];
        for (i, row) in zg.chunks_exact(d).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                t[j][i] = v;
            }
        }
        let mut m = [f32::NEG_INFINITY; LANES];
        for tj in &t {
            m = vzip(m, *tj, |a, v| if v > a || v.is_nan() { v } else { a });
        }
        let mut s = [0.0f32; LANES];
        for tj in t.iter_mut() {
            let e = vzip(*tj, m, |v, mi| exp_f32(v - mi));
            *tj = e;
            s = vzip(s, e, |a, b| a + b);
        }
        let f: [f32; LANES] = std::array::from_fn(|i| row_k(ks, g + i) as f32 / s[i]);
        for tj in t.iter_mut() {
            *tj = vzip(f, *tj, |fi, e| {
                let y = fi.mul_add(e, hi);
                if y < lo {
                    lo
                } else if y > hi {
                    hi
                } else {
                    y
                }
            });
        }
        let og = &mut out[g * d..(g + LANES) * d];
        for (i, row) in og.chunks_exact_mut(d).enumerate() {
            for (j, o) in row.iter_mut().enumerate() {
                *o = t[j][i];
            }
        }
    }
    for (j, (zr, or)) in z[full * d..].chunks_exact(d).zip(out[full * d..].chunks_exact_mut(d)).enumerate() {
        let k = row_k(ks, full + j);
        let m = zr.iter().copied().fold(f32::NEG_INFINITY, |a, b| if b > a || b.is_nan() { b } else { a });
        let mut s = 0.0f32;
        for (o, &v) in or.iter_mut().zip(zr) {
            let e = exp_f32(v - m);
            *o = e;
            s += e;
        }
        let f = k as f32 / s;
        for o in or.iter_mut() {
            let y = f.mul_add(*o, hi);
            *o = if y < lo { lo } else if y > hi { hi } else { y };
        }
    }
}

/// Gaussian-head backward over contiguous f32 rows: writes `dz` and the
/// per-row `d/d delta` into `dd` (one per row); `ks` as in [`gaussian_rows_f32`].
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
#[allow(clippy::too_many_arguments)]
pub fn gaussian_rows_grad_f32(z: &[f32], g: &[f32], d: usize, ks: &[f64], lo: f32, hi: f32, dz: &mut [f32], dd: &mut [f64]) {
    let rows = z.len() / d.max(1);
    let full = rows / LANES * LANES;
    // groups of LANES rows, transposed so that lane i holds row i
    let mut tz = vec![[0.0f32; LANES]; if full > 0 { d } else { 0 }];
    let mut tg = tz.clone();
    for r0 in (0..full).step_by(LANES) {
        for (i, (zr, gr)) in z[r0 * d..(r0 + LANES) * d].chunks_exact(d).zip(g[r0 * d..(r0 + LANES) * d].chunks_exact(d)).enumerate() {
            for j in 0..d {
                tz[j][i] = zr[j];
                tg[j][i] = gr[j];
            }
        }
        let mut m = [f32::NEG_INFINITY; LANES];
        for tj in &tz {
            m = vzip(m, *tj, |a, v| if v > a || v.is_nan() { v } else { a });
        }
        let mut s = [0.0f32; LANES];
        for tj in tz.iter_mut() {
            let e = vzip(*tj, m, |v, mi| exp_f32(v - mi));
            *tj = e;
            s = vzip(s, e, |a, b| a + b);
        }
        let inv: [f32; LANES] = vmap(s, |v| 1.0 / v);
        let k: [f32; LANES] = std::array::from_fn(|i| row_k(ks, r0 + i) as f32);
        let mut dot = [0.0f32; LANES];
        for (tj, gj) in tz.iter_mut().zip(tg.iter_mut()) {
            let si = vzip(*tj, inv, |e, v| e * v);
            let y = vzip(k, si, |kk, sv| kk.mul_add(sv, hi));
            let gm = vzip(*gj, y, |gv, yv| if lo < yv && yv < hi { gv } else { 0.0 });
            *tj = si;
            *gj = gm;
            dot = vzip3(gm, si, dot, |a, b, c| a.mul_add(b, c));
        }
        for (tj, gj) in tz.iter_mut().zip(tg.iter()) {
            let kd = vzip(*gj, dot, |gv, dv| gv - dv);
            *tj = vzip3(k, *tj, kd, |kk, sv, x| kk * sv * x);
        }
        for (i, row) in dz[r0 * d..(r0 + LANES) * d].chunks_exact_mut(d).enumerate() {
            for (j, o) in row.iter_mut().enumerate() {
                *o = tz[j][i];
            }
        }
        for i in 0..LANES {
            dd[r0 + i] = dot[i] as f64;
        }
    }
    let rest = (z[full * d..].chunks_exact(d).zip(g[full * d..].chunks_exact(d)))
        .zip(dz[full * d..].chunks_exact_mut(d))
        .zip(dd[full..].iter_mut())
        .enumerate();
    for (j, (((zr, gr), dr), ddr)) in rest {
        let k = row_k(ks, full + j);
        let m = zr.iter().copied().fold(f32::NEG_INFINITY, |a, b| if b > a || b.is_nan() { b } else { a });
        let mut s = 0.0f32;
        for (o, &v) in dr.iter_mut().zip(zr) {
            let e = exp_f32(v - m);
            *o = e;
            s += e;
        }
        let inv = 1.0 / s;
        let k32 = k as f32;
        let mut dot = 0.0f32;
        for (o, &gi) in dr.iter_mut().zip(gr) {
            let si = *o * inv;
            *o = si;
            let y = k32.mul_add(si, hi);
            let gm = if lo < y && y < hi { gi } else { 0.0 };
            dot = gm.mul_add(si, dot);
        }
        for (o, &gi) in dr.iter_mut().zip(gr) {
            let si = *o;
            let y = k32.mul_add(si, hi);
            let gm = if lo < y && y < hi { gi } else { 0.0 };
            *o = k32 * si * (gm - dot);
        }
        *ddr = dot as f64;
    }
}

/// bf16 bit patterns to f32 (exact: a shift).
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub fn bf16_to_f32(src: &[u16], dst: &mut [f32]) {
    for (d, &b) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((b as u32) << 16);
    }
}

/// f32 to bf16 bit patterns, rounding to nearest even (NaN stays a quiet NaN).
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub fn f32_to_bf16(src: &[f32], dst: &mut [u16]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        let b = v.to_bits();
        let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
        *d = if v.is_nan() { ((b >> 16) as u16) | 0x0040 } else { rounded };
    }
}

/// The `k` largest entries of a row (ties to the lower index), as the
/// threshold pair `(value, index)` of the k-th: entry `i` is in the top-k
/// iff `x_i > value || (x_i == value && i <= index)`. NaN entries are never
/// selected (the caller reports NaN rows separately).
pub fn topk_threshold(x: &[f32], k: usize, heap: &mut Vec<(f32, usize)>) -> (f32, usize) {
    heap.clear();
    // a sorted (descending) list of the best k so far; inserts are rare after the start
    for (i, &v) in x.iter().enumerate() {
        if heap.len() == k {
            let worst = heap[k - 1].0;
            // NaN compares false: never selected
            if v.partial_cmp(&worst) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            heap.pop();
        } else if v.is_nan() {
            continue;
        }
        let pos = heap.partition_point(|&(hv, _)| hv >= v);
        heap.insert(pos, (v, i));
    }
    heap.last().copied().unwrap_or((f32::INFINITY, 0))
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
    #[cfg_attr(miri, ignore = "rows of several thousand elements")]
    fn row_stats_match_f64() {
        for len in [1usize, 15, 16, 17, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0 + (i as f32) * 1e-3).collect();
            for (inv_t, k) in [(1.0f32, 2.0f32), (1.0 / 0.7, 3.0)] {
                let s = token_row_stats(&x, inv_t, k);
                let z: Vec<f64> = x.iter().map(|&v| (v * inv_t) as f64).collect();
                let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s1: f64 = z.iter().map(|v| (v - m).exp()).sum();
                let sk: f64 = z.iter().map(|v| (k as f64 * (v - m)).exp()).sum();
                let w: f64 = z.iter().map(|v| (v - m).exp() * (v - m)).sum();
                assert_eq!(s.max as f64, m);
                assert!((s.sum1 / s1 - 1.0).abs() < 1e-6, "{len}: {} vs {s1}", s.sum1);
                assert!((s.sumk / sk - 1.0).abs() < 1e-6);
                assert!((s.w - w).abs() < 1e-5 * (1.0 + w.abs()), "{len}: {} vs {w}", s.w);
            }
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "a 200k-point sweep")]
    fn exp_half_error_is_within_two_ulp() {
        let (mut near, mut abs, mut rel): (f64, f64, f64) = (0.0, 0.0, 0.0);
        let n = 400_000;
        for i in 0..=n {
            let d = D_FLOOR * i as f32 / n as f32;
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
        assert!(exp_half(D_FLOOR) > 0.0 && (exp_half(D_FLOOR) * exp_half(D_FLOOR)).is_normal());
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
    fn bf16_conversions_match_the_half_crate() {
        let xs: Vec<f32> = (0..70000u32).map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761))).chain([f32::NAN, f32::INFINITY, -0.0, 1.0 + f32::EPSILON]).collect();
        let mut b = vec![0u16; xs.len()];
        f32_to_bf16(&xs, &mut b);
        for (x, &bits) in xs.iter().zip(&b) {
            let want = half::bf16::from_f32(*x);
            assert!(want.to_bits() == bits || (want.is_nan() && half::bf16::from_bits(bits).is_nan()), "{x}: {bits:#x} vs {:#x}", want.to_bits());
        }
        let mut back = vec![0.0f32; b.len()];
        bf16_to_f32(&b, &mut back);
        for (&bits, &v) in b.iter().zip(&back) {
            let want = half::bf16::from_bits(bits).to_f32();
            assert!(want.to_bits() == v.to_bits() || (want.is_nan() && v.is_nan()));
        }
    }

    #[test]
    fn topk_threshold_breaks_ties_to_lower_index() {
        let x = [1.0f32, 3.0, 2.0, 3.0, 2.0, f32::NAN, 0.5];
        let mut h = Vec::new();
        assert_eq!(topk_threshold(&x, 1, &mut h), (3.0, 1));
        assert_eq!(topk_threshold(&x, 2, &mut h), (3.0, 3));
        assert_eq!(topk_threshold(&x, 3, &mut h), (2.0, 2));
        assert_eq!(topk_threshold(&x, 4, &mut h), (2.0, 4));
    }
}
