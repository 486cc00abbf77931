//! Every backward against central finite differences of its forward, in f64.

mod common;
use common::Rng;
use era::{DeltaArg, GaussianConfig, GaussianHead, IndexView, SoftmaxConfig, SoftmaxHead, TokenConfig, TokenHead, TokenOutputs};
use ndarray::{ArrayD, IxDyn};

/// Checks `vjp(z, g)` against `sum(g * (f(z + h e_j) - f(z - h e_j)) / 2h)`.
fn check_vjp(z: &ArrayD<f64>, g: &ArrayD<f64>, f: &dyn Fn(&ArrayD<f64>) -> ArrayD<f64>, dz: &ArrayD<f64>, tol: f64, what: &str) {
    let h = 1e-6;
    for j in 0..z.len() {
        let mut zp = z.clone();
        let mut zm = z.clone();
        zp.as_slice_mut().unwrap()[j] += h;
        zm.as_slice_mut().unwrap()[j] -= h;
        let fd: f64 = (&f(&zp) - &f(&zm)).iter().zip(g.iter()).map(|(d, gi)| d * gi).sum::<f64>() / (2.0 * h);
        let an = dz.as_slice().unwrap()[j];
        assert!((fd - an).abs() <= tol * (1.0 + fd.abs()), "{what}: d/dz[{j}] analytic {an} vs finite difference {fd}");
    }
}

#[test]
fn gaussian_backward_matches_finite_differences() {
    let mut rng = Rng(1);
    for &(d, lo, hi, h0) in
        &[(3usize, -5.0, 0.0, -1.5), (6, -8.0, 0.0, -6.0), (6, -10.0, 2.0, 1.5), (21, -5.0, 0.0, -40.0), (1, -5.0, 0.0, -2.0)]
    {
        let mut c = GaussianConfig::new(d, h0);
        c.log_std_min = lo;
        c.log_std_max = hi;
        let head = GaussianHead::new(c).unwrap();
        let z = rng.array(&[4, d], 1.5);
        let g = rng.array(&[4, d], 1.0);
        let f = |z: &ArrayD<f64>| {
            let mut o = ArrayD::zeros(z.raw_dim());
            head.forward(z.view(), o.view_mut()).unwrap();
            o
        };
        let mut dz = ArrayD::zeros(z.raw_dim());
        head.backward(z.view(), g.view(), dz.view_mut()).unwrap();
        check_vjp(&z, &g, &f, &dz, 1e-6, &format!("gaussian D={d}"));
    }
}

#[test]
fn gaussian_delta_gradient_matches_finite_differences() {
    let mut rng = Rng(2);
    let mut c = GaussianConfig::new(5, -4.0);
    c.log_std_min = -3.0;
    let head = GaussianHead::new(c).unwrap();
    let z = rng.array(&[3, 5], 2.0);
    let g = rng.array(&[3, 5], 1.0);
    let fwd = |delta: DeltaArg<'_, f64>| {
        let mut o = ArrayD::zeros(z.raw_dim());
        head.forward_with_delta(z.view(), delta, o.view_mut()).unwrap();
        o
    };
    // scalar delta
    let d0 = 0.3;
    let mut dz = ArrayD::zeros(z.raw_dim());
    let mut gd = ArrayD::zeros(IxDyn(&[]));
    head.backward_with_delta(z.view(), DeltaArg::Scalar(d0), g.view(), dz.view_mut(), Some(gd.view_mut())).unwrap();
    let h = 1e-6;
    let fd: f64 =
        (&fwd(DeltaArg::Scalar(d0 + h)) - &fwd(DeltaArg::Scalar(d0 - h))).iter().zip(g.iter()).map(|(a, b)| a * b).sum::<f64>() / (2.0 * h);
    assert!((fd - gd[[]]).abs() < 1e-6 * (1.0 + fd.abs()), "{fd} vs {}", gd[[]]);
    // per-row delta
    let deltas = ndarray::arr1(&[0.1, -0.5, 1.0]).into_dyn();
    let mut gdr = ArrayD::zeros(IxDyn(&[3]));
    head.backward_with_delta(z.view(), DeltaArg::PerRow(deltas.view()), g.view(), dz.view_mut(), Some(gdr.view_mut())).unwrap();
    for r in 0..3 {
        let mut p = deltas.clone();
        let mut m = deltas.clone();
        p[[r]] += h;
        m[[r]] -= h;
        let fd: f64 =
            (&fwd(DeltaArg::PerRow(p.view())) - &fwd(DeltaArg::PerRow(m.view()))).iter().zip(g.iter()).map(|(a, b)| a * b).sum::<f64>()
                / (2.0 * h);
        assert!((fd - gdr[[r]]).abs() < 1e-6 * (1.0 + fd.abs()), "row {r}: {fd} vs {}", gdr[[r]]);
    }
}

#[test]
fn softmax_backward_matches_finite_differences() {
    let mut rng = Rng(3);
    for &(n, h0, tau, scale) in
        &[(4usize, 0.6, 4.0, 1.0), (2, 0.3, 4.0, 3.0), (10, 2.0, 4.0, 2.0), (10, 0.0, 6.0, 5.0), (100, 3.5, 4.0, 1.0)]
    {
        let head = SoftmaxHead::new(SoftmaxConfig { num_classes: n, target_entropy: h0, tau }).unwrap();
        let z = rng.array(&[3, n], scale);
        let g = rng.array(&[3, n], 1.0);
        let f = |z: &ArrayD<f64>| {
            let mut o = ArrayD::zeros(z.raw_dim());
            head.forward(z.view(), o.view_mut()).unwrap();
            // the min-shift is a stop-gradient constant: differentiate the unshifted map
            // by removing the per-row shift computed at the unperturbed point
            o
        };
        // the shift only moves every entry of a row by the same constant, so the
        // finite difference must be taken of a g whose rows sum to zero
        let g = {
            let mut g = g;
            for mut row in g.rows_mut() {
                let m = row.mean().unwrap();
                row.mapv_inplace(|v| v - m);
            }
            g
        };
        let mut dz = ArrayD::zeros(z.raw_dim());
        head.backward(z.view(), g.view(), dz.view_mut()).unwrap();
        check_vjp(&z, &g, &f, &dz, 1e-5, &format!("softmax n={n} H0={h0}"));
    }
}

fn token_batch(rng: &mut Rng, n: usize, v: usize) -> (ArrayD<f64>, ArrayD<i64>, ArrayD<i64>, ArrayD<f64>) {
    let logits = rng.array(&[n, v], 2.0);
    let labels = ArrayD::from_shape_fn(IxDyn(&[n]), |_| rng.below(v) as i64);
    let ids = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if i[0] % 5 == 4 { -1 } else { (i[0] % 3) as i64 });
    let adv = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if i[0] % 2 == 0 { 1.0 } else { -0.5 });
    (logits, labels, ids, adv)
}

#[test]
fn token_backward_matches_finite_differences() {
    let mut rng = Rng(4);
    for (cfg, what) in [
        (TokenConfig { omega_low: 5.0, omega_high: 6.0, ..Default::default() }, "sharpen"),
        (TokenConfig { omega_low: 0.0, omega_high: 0.1, temperature: 0.7, ..Default::default() }, "flatten, T=0.7"),
        (TokenConfig { vocab_topk: 3, omega_low: 5.0, omega_high: 6.0, ..Default::default() }, "top-3"),
    ] {
        let head = TokenHead::new(cfg).unwrap();
        let (logits, labels, ids, adv) = token_batch(&mut rng, 10, 7);
        let n = 10;
        let run = |x: &ArrayD<f64>| {
            let mut lp = ArrayD::zeros(IxDyn(&[n]));
            let mut h = ArrayD::zeros(IxDyn(&[n]));
            let mut sc = ArrayD::zeros(IxDyn(&[n]));
            let mut ao = ArrayD::zeros(IxDyn(&[n]));
            let out = TokenOutputs {
                logprobs: Some(lp.view_mut()),
                entropy: Some(h.view_mut()),
                scale: Some(sc.view_mut()),
                advantages: Some(ao.view_mut()),
                response_entropy: None,
            };
            head.forward(x.view(), IndexView::from(labels.view()), IndexView::from(ids.view()), adv.view(), out).unwrap();
            (lp, sc)
        };
        let (_, scale) = run(&logits);
        assert!(scale.iter().any(|&c| c != 1.0), "{what}: the test must exercise a scale != 1");
        // the scale decision is a constant: differentiate logp at the fixed scale
        let f = |x: &ArrayD<f64>| {
            let (lp, sc) = run(x);
            assert_eq!(sc, scale, "finite-difference step changed the scale decision");
            lp
        };
        let g = rng.array(&[n], 1.0);
        let mut dl = ArrayD::zeros(logits.raw_dim());
        head.backward(logits.view(), IndexView::from(labels.view()), IndexView::from(ids.view()), scale.view(), g.view(), dl.view_mut())
            .unwrap();
        check_vjp(&logits, &g, &f, &dl, 1e-6, what);
    }
}
