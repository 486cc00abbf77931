//! The softmax head at and near `tau = e`, where `1/sqrt(2u)` is singular at
//! `h = ub` (docs/math.md#softmax-numerics-near-the-upper-bound): gradients
//! stay bounded on near-one-hot rows at both ends of the target range, in f64
//! and f32, and agree with finite differences where those are accurate.
//! (`bindings/jax/tests/test_softmax_tau_e.py` compares them with a
//! 50-digit reference.)

mod common;
use common::Rng;
use era::{SoftmaxConfig, SoftmaxHead};
use ndarray::{Array2, ArrayD};

const E: f64 = std::f64::consts::E;

fn head(n: usize, h0: f64, tau: f64) -> SoftmaxHead {
    SoftmaxHead::new(SoftmaxConfig { num_classes: n, target_entropy: h0, tau }).unwrap()
}

fn grad(h: &SoftmaxHead, z: &ArrayD<f64>, g: &ArrayD<f64>) -> ArrayD<f64> {
    let mut dz = ArrayD::zeros(z.raw_dim());
    h.backward(z.view(), g.view(), dz.view_mut()).unwrap();
    dz
}

fn grad_f32(h: &SoftmaxHead, z: &ArrayD<f64>, g: &ArrayD<f64>) -> ArrayD<f64> {
    let (z, g) = (z.mapv(|v| v as f32), g.mapv(|v| v as f32));
    let mut dz = ArrayD::<f32>::zeros(z.raw_dim());
    h.backward(z.view(), g.view(), dz.view_mut()).unwrap();
    dz.mapv(|v| v as f64)
}

/// Rows whose top class leads the others by `gap` (some exactly, some with jitter).
fn near_one_hot(n: usize, gap: f64, rng: &mut Rng) -> ArrayD<f64> {
    let rows = 4;
    Array2::from_shape_fn((rows, n), |(r, j)| {
        let top = r % n;
        if j == top {
            gap
        } else if r < 2 {
            0.0
        } else {
            rng.normal()
        }
    })
    .into_dyn()
}

/// The reproduction: n = 2, H0 = 0.3, tau = e, z = [37, 0], g = [1, -0.5] gave 1e137.
#[test]
fn the_reported_row_has_a_small_gradient() {
    let h = head(2, 0.3, E);
    let z = ArrayD::from_shape_vec(vec![1, 2], vec![37.0, 0.0]).unwrap();
    let g = ArrayD::from_shape_vec(vec![1, 2], vec![1.0, -0.5]).unwrap();
    for dz in [grad(&h, &z, &g), grad_f32(&h, &z, &g)] {
        // the exact VJP is of order sqrt(exp(-37)) ~ 1e-8 here
        assert!(dz.iter().all(|v| v.is_finite() && v.abs() < 1e-6), "{dz:?}");
        // a VJP of a shift-invariant map sums to 0
        assert!(dz.sum().abs() < 1e-12);
    }
}

#[test]
fn gradients_stay_bounded_across_the_range_at_tau_e() {
    let mut rng = Rng(7);
    for &n in &[2usize, 3, 10, 1000, 32000] {
        let (lo, hi) = SoftmaxConfig { num_classes: n, target_entropy: 0.0, tau: E }.target_range();
        for f in [0.0, 1e-12, 0.01, 0.5, 0.99, 1.0 - 1e-12, 1.0] {
            let h = head(n, lo + f * (hi - lo), E);
            for gap in [20.0, 37.0, 40.0, 100.0, 300.0, 700.0, 800.0] {
                let z = near_one_hot(n, gap, &mut rng);
                let g = Array2::from_shape_fn((4, n), |_| rng.normal()).into_dyn();
                for (which, dz) in [("f64", grad(&h, &z, &g)), ("f32", grad_f32(&h, &z, &g))] {
                    for r in 0..4 {
                        let gsum: f64 = (0..n).map(|j| g[[r, j]].abs()).sum();
                        let bound = 10.0 * (1.0 + gsum);
                        for j in 0..n {
                            let v = dz[[r, j]];
                            assert!(v.is_finite() && v.abs() <= bound, "{which} n={n} f={f} gap={gap} row {r}: dz[{j}] = {v}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_upper_end_is_degenerate_with_zero_gradient() {
    for &n in &[2usize, 3, 10, 11, 1000, 32000] {
        for tau in [E, 4.0] {
            let (_, hi) = SoftmaxConfig { num_classes: n, target_entropy: 0.0, tau }.target_range();
            let h = head(n, hi, tau);
            assert_eq!(h.constants().slope, 0.0, "n={n} tau={tau}");
            let mut rng = Rng(n as u64);
            let z = Array2::from_shape_fn((3, n), |_| 5.0 * rng.normal()).into_dyn();
            let g = Array2::from_shape_fn((3, n), |_| rng.normal()).into_dyn();
            assert!(grad(&h, &z, &g).iter().all(|&v| v == 0.0));
            let mut out = ArrayD::zeros(z.raw_dim());
            h.forward(z.view(), out.view_mut()).unwrap();
            assert!(out.iter().all(|&v| v == 0.0), "uniform output");
        }
    }
}

#[test]
fn a_one_hot_row_in_floating_point_gets_zero_gradient() {
    for &n in &[2usize, 10] {
        let h = head(n, 0.5 * (1.0 + (n as f64 / E).ln()), E);
        let mut z = ArrayD::zeros(vec![1, n]);
        z[[0, 0]] = 800.0; // exp(-800) underflows: the other probabilities are exactly 0
        let g = ArrayD::from_elem(vec![1, n], 1.5);
        assert!(grad(&h, &z, &g).iter().all(|&v| v == 0.0));
    }
}

#[test]
fn near_tau_e_gradients_match_finite_differences() {
    // gaps where the other probabilities are large enough for f64 differences; no ties,
    // so that the class holding the row minimum does not change under the steps
    let mut rng = Rng(3);
    for &n in &[2usize, 3, 10] {
        let (lo, hi) = SoftmaxConfig { num_classes: n, target_entropy: 0.0, tau: E }.target_range();
        for f in [0.1, 0.5, 0.9] {
            for tau in [E, E * (1.0 + 1e-9), 3.0] {
                let h = head(n, lo + f * (hi - lo), tau);
                for gap in [0.5, 3.0, 8.0] {
                    let z = Array2::from_shape_fn((3, n), |(_, j)| if j == 0 { gap } else { 0.0 } + 0.3 * rng.normal()).into_dyn();
                    let g = Array2::from_shape_fn((3, n), |_| rng.normal()).into_dyn();
                    let dz = grad(&h, &z, &g);
                    let step = 1e-6;
                    for r in 0..3 {
                        // the row minimum of w sits at the class with the smallest logit
                        let kmin = (0..n).min_by(|&a, &b| z[[r, a]].total_cmp(&z[[r, b]])).unwrap();
                        let gsum: f64 = (0..n).map(|i| g[[r, i]]).sum();
                        for j in 0..n {
                            let (mut zp, mut zm) = (z.clone(), z.clone());
                            zp[[r, j]] += step;
                            zm[[r, j]] -= step;
                            let (op, om) = (forward(&h, &zp), forward(&h, &zm));
                            // out = w - min(w): add back the minimum's change, which the VJP holds constant
                            let fd = (0..n).map(|i| g[[r, i]] * (op[[r, i]] - om[[r, i]])).sum::<f64>() / (2.0 * step)
                                + gsum * (w_of(&h, &zp, r, kmin) - w_of(&h, &zm, r, kmin)) / (2.0 * step);
                            let an = dz[[r, j]];
                            assert!(
                                (fd - an).abs() <= 1e-5 * (1.0 + fd.abs()),
                                "n={n} tau={tau} f={f} gap={gap}: dz[{r},{j}] {an} vs {fd}"
                            );
                        }
                    }
                }
            }
        }
    }
}

fn forward(h: &SoftmaxHead, z: &ArrayD<f64>) -> ArrayD<f64> {
    let mut o = ArrayD::zeros(z.raw_dim());
    h.forward(z.view(), o.view_mut()).unwrap();
    o
}

/// `w_k` of row `r` before the shift by the row minimum, written out from the
/// formulas (docs/math.md#softmax-forward), independent of the kernels.
fn w_of(h: &SoftmaxHead, z: &ArrayD<f64>, r: usize, k: usize) -> f64 {
    let c = h.constants();
    let n = z.shape()[1];
    let row: Vec<f64> = (0..n).map(|i| z[[r, i]]).collect();
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
    let hk = c.slope * (row[k] - m).exp() / s + c.b;
    let u = -1.0 - hk.ln();
    -1.0 - (2.0 * u).sqrt() - 0.75 * u
}
