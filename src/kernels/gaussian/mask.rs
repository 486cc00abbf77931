//! Rows of the Gaussian head under a per-row active-dimension mask
//! (docs/math.md#gaussian-mask), in f64. A mask entry is active when it is
//! not 0 (the head checks beforehand that every entry is 0 or 1).
//!
//! With every entry active these rows do the arithmetic of
//! [`super::forward_row`] and [`super::backward_row`] in the same order, so
//! their results are the same bit for bit.

/// What a masked row writes at its inactive coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Inactive {
    /// The input `z_i` (gradient `g_i`).
    PassThrough,
    /// This value (gradient 0).
    Fill(f64),
}

/// The number of active entries of a mask row.
#[inline]
pub fn active_count(mask: &[f64]) -> usize {
    mask.iter().filter(|&&m| m != 0.0).count()
}

/// `k_a = k * (a/D)` of a row with `a` of its `D = mask.len()` entries active.
#[inline]
pub fn masked_k(k: f64, mask: &[f64]) -> f64 {
    k * (active_count(mask) as f64 / mask.len().max(1) as f64)
}

/// `softmax` over the active entries of `z` into the active entries of
/// `out` (the maximum, the exponentials and their sum taken over them
/// alone, in index order; a NaN among them makes them all NaN). Inactive
/// entries of `out` are left as they are.
#[inline]
fn masked_softmax_into(z: &[f64], mask: &[f64], out: &mut [f64]) {
    let mut m = f64::NEG_INFINITY;
    for (&v, _) in z.iter().zip(mask).filter(|(_, &mi)| mi != 0.0) {
        if v > m || v.is_nan() {
            m = v;
            if v.is_nan() {
                break;
            }
        }
    }
    let mut s = 0.0;
    for ((o, &v), _) in out.iter_mut().zip(z).zip(mask).filter(|(_, &mi)| mi != 0.0) {
        *o = (v - m).exp();
        s += *o;
    }
    let inv = 1.0 / s;
    for (o, _) in out.iter_mut().zip(mask).filter(|(_, &mi)| mi != 0.0) {
        *o *= inv;
    }
}

/// Forward of one masked row: `out_i = clip(hi + k_a*s_i, lo, hi)` at the
/// active entries (`s` the softmax over them, `k_a = k*(a/D)`), `z_i` or the
/// fill value at the inactive ones. `k` is the unmasked head's `k` of the row.
#[inline]
pub fn masked_forward_row(z: &[f64], mask: &[f64], k: f64, lo: f64, hi: f64, inactive: Inactive, out: &mut [f64]) {
    let ka = masked_k(k, mask);
    masked_softmax_into(z, mask, out);
    for ((o, &zi), &mi) in out.iter_mut().zip(z).zip(mask) {
        if mi != 0.0 {
            let y = hi + ka * *o;
            // NaN-preserving clip
            *o = if y < lo {
                lo
            } else if y > hi {
                hi
            } else {
                y
            };
        } else {
            *o = match inactive {
                Inactive::PassThrough => zi,
                Inactive::Fill(v) => v,
            };
        }
    }
}

/// Backward of one masked row: writes `dz` and returns
/// `ddelta = (a/D) * sum_{i active} g_i mm_i s_i`, where `mm_i = 1` iff `i`
/// is active and `lo < y_i < hi` strictly; inactive entries get `g_i`
/// (pass-through) or 0 (fill).
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn masked_backward_row(z: &[f64], mask: &[f64], g: &[f64], k: f64, lo: f64, hi: f64, inactive: Inactive, dz: &mut [f64]) -> f64 {
    let (a, d) = (active_count(mask), mask.len().max(1));
    let frac = a as f64 / d as f64;
    let ka = k * frac;
    masked_softmax_into(z, mask, dz);
    let gm = |gi: f64, si: f64| {
        let y = hi + ka * si;
        if lo < y && y < hi {
            gi
        } else {
            0.0
        }
    };
    let dot: f64 = dz.iter().zip(g).zip(mask).filter(|(_, &mi)| mi != 0.0).map(|((&si, &gi), _)| gm(gi, si) * si).sum();
    for ((o, &gi), &mi) in dz.iter_mut().zip(g).zip(mask) {
        if mi != 0.0 {
            let si = *o;
            *o = ka * si * (gm(gi, si) - dot);
        } else {
            *o = match inactive {
                Inactive::PassThrough => gi,
                Inactive::Fill(_) => 0.0,
            };
        }
    }
    if a == 0 {
        0.0
    } else {
        dot * frac
    }
}

#[cfg(test)]
mod tests {
    use super::super::{backward_row, forward_row};
    use super::*;

    const LO: f64 = -5.0;
    const HI: f64 = 0.5;

    fn row(seed: u64, d: usize) -> Vec<f64> {
        // a small deterministic generator (values in [-3, 3))
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..d)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64 * 6.0 - 3.0
            })
            .collect()
    }

    #[test]
    fn all_active_is_the_unmasked_row_bit_for_bit() {
        for d in [1usize, 2, 3, 6, 17] {
            let (z, g) = (row(d as u64, d), row(100 + d as u64, d));
            let ones = vec![1.0; d];
            let k = -0.7 * d as f64;
            let (mut a, mut b) = (vec![0.0; d], vec![0.0; d]);
            forward_row(&z, k, LO, HI, &mut a);
            masked_forward_row(&z, &ones, k, LO, HI, Inactive::Fill(9.0), &mut b);
            assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            let da = backward_row(&z, &g, k, LO, HI, &mut a);
            let db = masked_backward_row(&z, &ones, &g, k, LO, HI, Inactive::PassThrough, &mut b);
            assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            assert_eq!(da.to_bits(), db.to_bits());
        }
    }

    #[test]
    fn a_masked_row_is_the_unmasked_row_of_its_active_entries() {
        let d = 6;
        let (z, g) = (row(7, d), row(8, d));
        let k = -4.2;
        for bits in 0u32..(1 << d) {
            let mask: Vec<f64> = (0..d).map(|i| f64::from((bits >> i) & 1)).collect();
            let act: Vec<usize> = (0..d).filter(|&i| mask[i] != 0.0).collect();
            let a = act.len();
            let (mut out, mut dz) = (vec![0.0; d], vec![0.0; d]);
            masked_forward_row(&z, &mask, k, LO, HI, Inactive::Fill(-1.5), &mut out);
            let dd = masked_backward_row(&z, &mask, &g, k, LO, HI, Inactive::Fill(-1.5), &mut dz);
            let zs: Vec<f64> = act.iter().map(|&i| z[i]).collect();
            let gs: Vec<f64> = act.iter().map(|&i| g[i]).collect();
            let ka = k * a as f64 / d as f64;
            let (mut sub, mut dsub) = (vec![0.0; a], vec![0.0; a]);
            forward_row(&zs, ka, LO, HI, &mut sub);
            let dds = if a > 0 { backward_row(&zs, &gs, ka, LO, HI, &mut dsub) * a as f64 / d as f64 } else { 0.0 };
            for (j, &i) in act.iter().enumerate() {
                assert!((out[i] - sub[j]).abs() < 1e-12 && (dz[i] - dsub[j]).abs() < 1e-12, "mask {mask:?}");
            }
            for i in (0..d).filter(|i| mask[*i] == 0.0) {
                assert_eq!((out[i], dz[i]), (-1.5, 0.0));
            }
            assert!((dd - dds).abs() < 1e-12);
        }
    }

    #[test]
    fn finite_differences_f64() {
        let d = 5;
        let mask = [1.0, 0.0, 1.0, 1.0, 0.0];
        let (z, g) = (row(3, d), row(4, d));
        let k = -3.1;
        for inactive in [Inactive::PassThrough, Inactive::Fill(0.0)] {
            let loss = |z: &[f64], k: f64| {
                let mut o = vec![0.0; d];
                masked_forward_row(z, &mask, k, LO, HI, inactive, &mut o);
                o.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
            };
            let mut dz = vec![0.0; d];
            let dd = masked_backward_row(&z, &mask, &g, k, LO, HI, inactive, &mut dz);
            let h = 1e-6;
            for j in 0..d {
                let (mut zp, mut zm) = (z.clone(), z.clone());
                zp[j] += h;
                zm[j] -= h;
                let fd = (loss(&zp, k) - loss(&zm, k)) / (2.0 * h);
                assert!((fd - dz[j]).abs() < 1e-7, "{j}: {fd} vs {}", dz[j]);
            }
            // k moves one-for-one with delta
            let fd = (loss(&z, k + h) - loss(&z, k - h)) / (2.0 * h);
            assert!((fd - dd).abs() < 1e-7, "{fd} vs {dd}");
        }
    }

    #[test]
    fn empty_and_single_active_rows() {
        let z = [0.3, -2.0, 1.0];
        let g = [1.0, 2.0, 3.0];
        let (mut o, mut dz) = (vec![0.0; 3], vec![0.0; 3]);
        masked_forward_row(&z, &[0.0; 3], -3.0, LO, HI, Inactive::PassThrough, &mut o);
        assert_eq!(o, z);
        assert_eq!(masked_backward_row(&z, &[0.0; 3], &g, -3.0, LO, HI, Inactive::PassThrough, &mut dz), 0.0);
        assert_eq!(dz, g);
        let mask = [0.0, 1.0, 0.0];
        masked_forward_row(&z, &mask, -3.0, LO, HI, Inactive::Fill(0.0), &mut o);
        assert_eq!(o, vec![0.0, HI - 1.0, 0.0]);
        let dd = masked_backward_row(&z, &mask, &g, -3.0, LO, HI, Inactive::Fill(0.0), &mut dz);
        assert_eq!(dz, vec![0.0, 0.0, 0.0]);
        assert!((dd - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn nan_in_an_inactive_entry_stays_there() {
        let z = [f64::NAN, 0.5, -0.5];
        let mask = [0.0, 1.0, 1.0];
        let mut o = vec![0.0; 3];
        masked_forward_row(&z, &mask, -2.0, LO, HI, Inactive::PassThrough, &mut o);
        assert!(o[0].is_nan() && o[1].is_finite() && o[2].is_finite());
    }
}
