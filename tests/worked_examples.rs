//! the worked examples of docs/math.md, in f64 and f32, through the Rust API.

mod common;
use common::{assert_close, naive_entropy};
use era::{GaussianConfig, GaussianHead, SoftmaxConfig, SoftmaxHead};
use ndarray::{arr1, ArrayD};

fn gaussian_head() -> GaussianHead {
    let mut c = GaussianConfig::new(3, -1.5);
    c.log_std_min = -5.0;
    c.log_std_max = 0.0;
    GaussianHead::new(c).unwrap()
}

#[test]
fn gaussian_worked_example_f64() {
    let h = gaussian_head();
    let z = arr1(&[0.5, -1.0, 2.0]).into_dyn();
    let mut out = ArrayD::zeros(z.raw_dim());
    h.forward(z.view(), out.view_mut()).unwrap();
    assert_close(out.as_slice().unwrap(), &[-1.009114, -0.225164, -4.522537], 1e-6, "out");
    let g = arr1(&[1.0, 2.0, -1.0]).into_dyn();
    let mut dz = ArrayD::zeros(z.raw_dim());
    h.backward(z.view(), g.view(), dz.view_mut()).unwrap();
    assert_close(dz.as_slice().unwrap(), &[-1.546046, -0.570133, 2.116179], 1e-6, "dz");
    // entropy = sum(out) + 1.5*L2PE equals the target exactly (no coordinate clipped)
    let mut e = ArrayD::zeros(ndarray::IxDyn(&[]));
    h.entropy(out.view(), e.view_mut()).unwrap();
    assert!((e[[]] - -1.5).abs() < 1e-12, "{}", e[[]]);
}

#[test]
fn gaussian_worked_example_f32() {
    let h = gaussian_head();
    let z = arr1(&[0.5f32, -1.0, 2.0]).into_dyn();
    let mut out = ArrayD::<f32>::zeros(z.raw_dim());
    h.forward(z.view(), out.view_mut()).unwrap();
    let o: Vec<f64> = out.iter().map(|&v| v as f64).collect();
    assert_close(&o, &[-1.009114, -0.225164, -4.522537], 1e-6, "out f32");
    let g = arr1(&[1.0f32, 2.0, -1.0]).into_dyn();
    let mut dz = ArrayD::<f32>::zeros(z.raw_dim());
    h.backward(z.view(), g.view(), dz.view_mut()).unwrap();
    let d: Vec<f64> = dz.iter().map(|&v| v as f64).collect();
    assert_close(&d, &[-1.546046, -0.570133, 2.116179], 1e-6, "dz f32");
}

#[test]
fn softmax_worked_example() {
    let h = SoftmaxHead::new(SoftmaxConfig { num_classes: 4, target_entropy: 0.6, tau: 4.0 }).unwrap();
    let z = arr1(&[2.0, 0.0, -1.0, 0.5]).into_dyn();
    let mut out = ArrayD::zeros(z.raw_dim());
    h.forward(z.view(), out.view_mut()).unwrap();
    assert_close(out.as_slice().unwrap(), &[1.41745, 0.167547, 0.0, 0.325278], 2e-6, "out");
    assert!((naive_entropy(out.as_slice().unwrap()) - 1.195788).abs() < 1e-6);
    let mut e = ArrayD::zeros(ndarray::IxDyn(&[]));
    h.entropy(out.view(), e.view_mut()).unwrap();
    assert!((e[[]] - 1.195788).abs() < 1e-6, "{}", e[[]]);
    let g = arr1(&[1.0, -0.5, 0.25, 0.0]).into_dyn();
    let mut dz = ArrayD::zeros(z.raw_dim());
    h.backward(z.view(), g.view(), dz.view_mut()).unwrap();
    assert_close(dz.as_slice().unwrap(), &[0.440352, -0.239131, -0.015823, -0.185398], 2e-6, "dz");

    // f32 agrees
    let z32 = z.mapv(|v| v as f32);
    let mut o32 = ArrayD::<f32>::zeros(z.raw_dim());
    h.forward(z32.view(), o32.view_mut()).unwrap();
    for (a, b) in o32.iter().zip(out.iter()) {
        assert!((*a as f64 - b).abs() < 1e-6);
    }
}

#[test]
#[cfg_attr(miri, ignore = "a 200k-point numerical integration")]
fn truncated_normal_entropy_limits() {
    use era::kernels::gaussian::truncated_normal_entropy_1d as tn;
    use era::L2PE;
    // a huge interval is the plain Gaussian
    assert!((tn(0.3, -0.7, -1e6, 1e6) - (0.5 * L2PE - 0.7)).abs() < 1e-12);
    assert!((tn(0.3, -0.7, f64::NEG_INFINITY, f64::INFINITY) - (0.5 * L2PE - 0.7)).abs() < 1e-12);
    // a very wide Gaussian on [-1, 1] tends to the uniform: ln 2
    assert!((tn(0.0, 8.0, -1.0, 1.0) - 2f64.ln()).abs() < 1e-6);
    // truncation only lowers the entropy
    for &(m, l) in &[(0.0, 0.0), (0.9, -1.0), (-0.5, 0.5), (2.0, -2.0)] {
        assert!(tn(m, l, -1.0, 1.0) <= 0.5 * L2PE + l + 1e-12);
    }
    // a location deep in the tail stays finite (no cancellation in Z)
    let far = tn(12.0, -1.0, -1.0, 1.0);
    assert!(far.is_finite(), "{far}");
    // ... even where the mass underflows f64 (found by the JAX binding's tests):
    // then the density on the interval is an exponential of rate |beta|/sigma
    // at the near end, whose entropy is 1 - ln(rate)
    for &(m, l, h) in &[(6.0f64, -3.0f64, 1.0f64), (-40.0, -2.0, 1.0)] {
        let s = f64::exp(l);
        let near = if m > 0.0 { h } else { -h };
        let rate = (m - near).abs() / (s * s);
        let got = tn(m, l, -1.0, 1.0);
        assert!((got - (1.0 - rate.ln())).abs() < 1e-3, "m={m}: {got} vs {}", 1.0 - rate.ln());
    }
    // numeric integration of -p ln p for one case
    let (m, s, a, b) = (0.4f64, 0.6f64, -1.0f64, 1.0f64);
    let n = 200_000;
    let pdf = |x: f64| (-0.5 * ((x - m) / s).powi(2)).exp() / (s * (2.0 * std::f64::consts::PI).sqrt());
    let dx = (b - a) / n as f64;
    let zmass: f64 = (0..n).map(|i| pdf(a + (i as f64 + 0.5) * dx) * dx).sum();
    let h: f64 = (0..n)
        .map(|i| {
            let p = pdf(a + (i as f64 + 0.5) * dx) / zmass;
            -p * p.ln() * dx
        })
        .sum();
    assert!((tn(m, s.ln(), a, b) - h).abs() < 1e-8, "{} vs {h}", tn(m, s.ln(), a, b));
}
