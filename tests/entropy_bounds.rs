//! The entropy guarantees of docs/math.md on random (proptest) and
//! adversarial rows, and f32 against f64.

mod common;
use common::naive_entropy;
use era::{GaussianConfig, GaussianHead, SoftmaxConfig, SoftmaxHead, L2PE};
use ndarray::{Array2, ArrayD, IxDyn};
use proptest::prelude::*;

fn gaussian_entropies(head: &GaussianHead, z: &Array2<f64>) -> Vec<f64> {
    let z = z.clone().into_dyn();
    let mut out = ArrayD::zeros(z.raw_dim());
    head.forward(z.view(), out.view_mut()).unwrap();
    let mut e = ArrayD::zeros(IxDyn(&[z.shape()[0]]));
    head.entropy(out.view(), e.view_mut()).unwrap();
    // independent: sum of log-stds + 0.5*D*ln(2 pi e)
    for (row, &h) in out.rows().into_iter().zip(e.iter()) {
        assert!((row.sum() + 0.5 * row.len() as f64 * L2PE - h).abs() < 1e-9);
        assert!(row.iter().all(|&v| v >= head.config().log_std_min && v <= head.config().log_std_max));
    }
    e.iter().cloned().collect()
}

fn softmax_entropies(head: &SoftmaxHead, z: &Array2<f64>) -> Vec<f64> {
    let z = z.clone().into_dyn();
    let mut out = ArrayD::zeros(z.raw_dim());
    head.forward(z.view(), out.view_mut()).unwrap();
    out.rows().into_iter().map(|r| naive_entropy(r.as_slice().unwrap())).collect()
}

fn adversarial_rows(n: usize) -> Vec<Vec<f64>> {
    let mut rows = vec![vec![0.0; n]];
    for &big in &[30.0, 1e3, 1e6, 1e30, -1e30] {
        let mut one_hot = vec![0.0; n];
        one_hot[0] = big;
        rows.push(one_hot);
        let mut one_low = vec![0.0; n];
        one_low[n - 1] = -big;
        rows.push(one_low);
    }
    rows.push((0..n).map(|i| i as f64 * 50.0).collect());
    rows.push((0..n).map(|i| if i % 2 == 0 { 1e4 } else { -1e4 }).collect());
    rows
}

#[test]
fn gaussian_bound_on_adversarial_rows() {
    for &d in &[1usize, 2, 6, 21, 61] {
        for &(lo, hi) in &[(-8.0, 0.0), (-10.0, 2.0), (-5.0, 0.0)] {
            let max_h = d as f64 * (hi + 0.5 * L2PE);
            for &h0 in &[-(d as f64), 0.25 * d as f64, -0.5 * d as f64, max_h - 1e-3, -10.0 * d as f64] {
                if h0 > max_h {
                    continue;
                }
                let mut c = GaussianConfig::new(d, h0);
                c.log_std_min = lo;
                c.log_std_max = hi;
                let head = GaussianHead::new(c).unwrap();
                let rows = adversarial_rows(d);
                let z = Array2::from_shape_fn((rows.len(), d), |(i, j)| rows[i][j]);
                for h in gaussian_entropies(&head, &z) {
                    assert!(h >= h0 - 1e-9 * (1.0 + h0.abs()), "D={d} [{lo},{hi}] H0={h0}: entropy {h}");
                }
            }
        }
    }
}

#[test]
fn softmax_bound_on_adversarial_rows() {
    for &n in &[2usize, 3, 10, 100, 1000, 32000] {
        for &tau in &[std::f64::consts::E, 4.0, 10.0] {
            let (lo, hi) = SoftmaxConfig { num_classes: n, target_entropy: 0.0, tau }.target_range();
            for f in [0.0, 0.1, 0.5, 0.9, 1.0] {
                let h0 = lo + f * (hi - lo);
                let head = SoftmaxHead::new(SoftmaxConfig { num_classes: n, target_entropy: h0, tau }).unwrap();
                let rows = adversarial_rows(n);
                let z = Array2::from_shape_fn((rows.len(), n), |(i, j)| rows[i][j]);
                for h in softmax_entropies(&head, &z) {
                    assert!(h >= h0 - 1e-9, "n={n} tau={tau} H0={h0}: entropy {h}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn gaussian_bound_random(d in 1usize..64, h0_frac in 0.0f64..1.0, scale in 0.01f64..100.0, seed in any::<u64>(),
                             lo in -12.0f64..-1.0, hi in -1.0f64..3.0, delta in -3.0f64..3.0) {
        let max_h = d as f64 * (hi + 0.5 * L2PE);
        let h0 = max_h - 4.0 * d as f64 * h0_frac - delta.max(0.0);
        let mut c = GaussianConfig::new(d, h0);
        c.log_std_min = lo;
        c.log_std_max = hi;
        c.delta = delta.min(max_h - h0);
        let head = GaussianHead::new(c).unwrap();
        let mut rng = common::Rng(seed);
        let z = Array2::from_shape_fn((8, d), |_| scale * rng.normal());
        for h in gaussian_entropies(&head, &z) {
            prop_assert!(h >= h0 + c.delta - 1e-9 * (1.0 + h0.abs()), "entropy {} < {}", h, h0 + c.delta);
        }
    }

    #[test]
    fn softmax_bound_random(n in 2usize..300, frac in 0.0f64..1.0, tau in 2.72f64..20.0, scale in 0.01f64..1000.0, seed in any::<u64>()) {
        let (lo, hi) = SoftmaxConfig { num_classes: n, target_entropy: 0.0, tau }.target_range();
        let h0 = lo + frac * (hi - lo);
        let head = SoftmaxHead::new(SoftmaxConfig { num_classes: n, target_entropy: h0, tau }).unwrap();
        let mut rng = common::Rng(seed);
        let z = Array2::from_shape_fn((8, n), |_| scale * rng.normal());
        for h in softmax_entropies(&head, &z) {
            prop_assert!(h >= h0 - 1e-9, "entropy {} < {}", h, h0);
        }
    }

    #[test]
    fn f32_agrees_with_f64(n in 2usize..64, seed in any::<u64>(), scale in 0.1f64..20.0) {
        let mut rng = common::Rng(seed);
        let z64 = Array2::from_shape_fn((4, n), |_| scale * rng.normal()).into_dyn();
        let g64 = Array2::from_shape_fn((4, n), |_| rng.normal()).into_dyn();
        let z32 = z64.mapv(|v| v as f32);
        let g32 = g64.mapv(|v| v as f32);
        let (lo, hi) = SoftmaxConfig { num_classes: n, target_entropy: 0.0, tau: 4.0 }.target_range();
        let sh = SoftmaxHead::new(SoftmaxConfig { num_classes: n, target_entropy: 0.5 * (lo + hi), tau: 4.0 }).unwrap();
        let mut c = GaussianConfig::new(n, -(n as f64));
        c.log_std_min = -5.0;
        let gh = GaussianHead::new(c).unwrap();
        let mut o64 = ArrayD::zeros(z64.raw_dim());
        let mut o32 = ArrayD::<f32>::zeros(z64.raw_dim());
        for which in 0..4 {
            match which {
                0 => { sh.forward(z64.view(), o64.view_mut()).unwrap(); sh.forward(z32.view(), o32.view_mut()).unwrap(); }
                1 => { sh.backward(z64.view(), g64.view(), o64.view_mut()).unwrap(); sh.backward(z32.view(), g32.view(), o32.view_mut()).unwrap(); }
                2 => { gh.forward(z64.view(), o64.view_mut()).unwrap(); gh.forward(z32.view(), o32.view_mut()).unwrap(); }
                _ => { gh.backward(z64.view(), g64.view(), o64.view_mut()).unwrap(); gh.backward(z32.view(), g32.view(), o32.view_mut()).unwrap(); }
            }
            let m = o64.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for (a, b) in o32.iter().zip(o64.iter()) {
                // inputs were rounded to f32, so compare with a relative tolerance on the row scale
                prop_assert!((*a as f64 - b).abs() <= 1e-4 * (1.0 + m) * scale.max(1.0), "op {}: {} vs {}", which, a, b);
            }
        }
    }
}

#[test]
fn nan_rows_stay_in_their_row() {
    let mut c = GaussianConfig::new(3, -2.0);
    c.log_std_min = -5.0;
    let head = GaussianHead::new(c).unwrap();
    let z = ndarray::arr2(&[[0.0, f64::NAN, 1.0], [0.5, -1.0, 2.0], [f64::INFINITY, 0.0, 0.0]]).into_dyn();
    let mut out = ArrayD::zeros(z.raw_dim());
    head.forward(z.view(), out.view_mut()).unwrap();
    assert!(out.row_slice(0).iter().all(|v| v.is_nan()));
    assert!(out.row_slice(1).iter().all(|v| v.is_finite()));
    assert!(out.row_slice(2).iter().any(|v| v.is_nan()));
    let sh = SoftmaxHead::new(SoftmaxConfig::new(3, 0.5)).unwrap();
    sh.forward(z.view(), out.view_mut()).unwrap();
    assert!(out.row_slice(0).iter().all(|v| v.is_nan()));
    assert!(out.row_slice(1).iter().all(|v| v.is_finite()));
}

trait RowSlice {
    fn row_slice(&self, r: usize) -> Vec<f64>;
}
impl RowSlice for ArrayD<f64> {
    fn row_slice(&self, r: usize) -> Vec<f64> {
        self.index_axis(ndarray::Axis(0), r).iter().cloned().collect()
    }
}
