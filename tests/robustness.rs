//! Numerical robustness (README "Numerics"): non-finite rows, all-equal
//! logits, magnitudes of 1e30, denormals, empty batches, V = 1, n = 2.

use era::{GaussianConfig, GaussianHead, IndexView, SoftmaxConfig, SoftmaxHead, TokenConfig, TokenHead, TokenOutputs};
use ndarray::{arr2, ArrayD, IxDyn};

fn rows() -> ArrayD<f64> {
    arr2(&[
        [0.0, 0.0],                     // all equal
        [1e30, -1e30],                  // huge
        [-1e30, -1e30],                 // huge, equal
        [5e-324, -5e-324],              // denormals
        [f64::MIN_POSITIVE / 4.0, 0.0], // denormal
        [f64::NAN, 0.0],                // NaN
        [f64::INFINITY, 0.0],           // +inf
        [f64::NEG_INFINITY, 0.0],       // -inf: a legitimate zero probability
        [0.3, -0.2],                    // ordinary
    ])
    .into_dyn()
}

const FINITE_ROWS: [usize; 7] = [0, 1, 2, 3, 4, 7, 8];

fn row(a: &ArrayD<f64>, r: usize) -> Vec<f64> {
    a.index_axis(ndarray::Axis(0), r).iter().cloned().collect()
}

#[test]
fn gaussian_rows() {
    let mut c = GaussianConfig::new(2, -2.0);
    c.log_std_min = -5.0;
    let h = GaussianHead::new(c).unwrap();
    let z = rows();
    let mut out = ArrayD::zeros(z.raw_dim());
    h.forward(z.view(), out.view_mut()).unwrap();
    let mut g = ArrayD::zeros(z.raw_dim());
    h.backward(z.view(), ArrayD::from_elem(z.raw_dim(), 1.0).view(), g.view_mut()).unwrap();
    for r in FINITE_ROWS {
        let o = row(&out, r);
        assert!(o.iter().all(|v| v.is_finite()), "row {r}: {o:?}");
        assert!(o.iter().sum::<f64>() + era::L2PE >= -2.0 - 1e-12, "row {r}: entropy bound");
        assert!(row(&g, r).iter().all(|v| v.is_finite()), "row {r} gradient");
    }
    assert!(row(&out, 5).iter().all(|v| v.is_nan()));
    assert!(row(&out, 6).iter().any(|v| v.is_nan()));
    // all-equal row: both log-stds equal S/2
    let o = row(&out, 0);
    assert!((o[0] - o[1]).abs() < 1e-15);
}

#[test]
fn softmax_rows_n2() {
    let (lo, hi) = SoftmaxConfig::new(2, 0.0).target_range();
    for h0 in [lo, 0.5 * (lo + hi), hi] {
        let h = SoftmaxHead::new(SoftmaxConfig::new(2, h0)).unwrap();
        let z = rows();
        let mut out = ArrayD::zeros(z.raw_dim());
        h.forward(z.view(), out.view_mut()).unwrap();
        let mut g = ArrayD::zeros(z.raw_dim());
        h.backward(z.view(), ArrayD::from_elem(z.raw_dim(), 0.5).view(), g.view_mut()).unwrap();
        let mut e = ArrayD::zeros(IxDyn(&[z.shape()[0]]));
        h.entropy(out.view(), e.view_mut()).unwrap();
        for r in FINITE_ROWS {
            assert!(row(&out, r).iter().all(|v| v.is_finite()), "H0={h0} row {r}: {:?}", row(&out, r));
            assert!(e[[r]] >= h0 - 1e-12, "H0={h0} row {r}: entropy {} < {h0}", e[[r]]);
            assert!(row(&g, r).iter().all(|v| v.is_finite()), "H0={h0} row {r} gradient {:?}", row(&g, r));
        }
        assert!(row(&out, 5).iter().all(|v| v.is_nan()));
    }
}

#[test]
fn empty_batches_and_single_entry_vocabulary() {
    let h = GaussianHead::new(GaussianConfig::new(3, -3.0)).unwrap();
    let z = ArrayD::<f32>::zeros(IxDyn(&[0, 3]));
    let mut o = z.clone();
    h.forward(z.view(), o.view_mut()).unwrap();
    let mut e = ArrayD::<f32>::zeros(IxDyn(&[0]));
    h.entropy(z.view(), e.view_mut()).unwrap();
    let s = SoftmaxHead::new(SoftmaxConfig::new(3, 0.5)).unwrap();
    s.backward(z.view(), z.view(), o.view_mut()).unwrap();

    let t = TokenHead::new(TokenConfig::default()).unwrap();
    for n in [0usize, 3] {
        let logits = ArrayD::from_shape_fn(IxDyn(&[n, 1]), |i| i[0] as f64 * 1e30);
        let labels = ArrayD::<i64>::zeros(IxDyn(&[n]));
        let ids = ArrayD::<i64>::zeros(IxDyn(&[n]));
        let adv = ArrayD::from_elem(IxDyn(&[n]), 1.0);
        let mut outs: Vec<ArrayD<f64>> = (0..4).map(|_| ArrayD::from_elem(IxDyn(&[n]), 7.0)).collect();
        let [lp, en, sc, ao] = &mut outs[..] else { unreachable!() };
        let o = TokenOutputs {
            logprobs: Some(lp.view_mut()),
            entropy: Some(en.view_mut()),
            scale: Some(sc.view_mut()),
            advantages: Some(ao.view_mut()),
            response_entropy: None,
        };
        t.forward(logits.view(), IndexView::from(labels.view()), IndexView::from(ids.view()), adv.view(), o).unwrap();
        // V = 1: probability one, entropy zero, the response is "sharp" -> scale k
        assert!(lp.iter().all(|&v| v == 0.0), "{lp:?}");
        assert!(en.iter().all(|&v| v == 0.0), "{en:?}");
        assert!(sc.iter().all(|&v| v == 2.0), "{sc:?}");
        let mut gl = ArrayD::from_elem(IxDyn(&[n, 1]), 9.0);
        t.backward(logits.view(), IndexView::from(labels.view()), IndexView::from(ids.view()), sc.view(), adv.view(), gl.view_mut())
            .unwrap();
        assert!(gl.iter().all(|&v| v == 0.0));
    }
}

#[test]
fn token_rows_with_extremes() {
    let t = TokenHead::new(TokenConfig { vocab_topk: 1, ..Default::default() }).unwrap();
    let full = TokenHead::new(TokenConfig::default()).unwrap();
    let logits = rows();
    let n = logits.shape()[0];
    let labels = ArrayD::<i64>::zeros(IxDyn(&[n]));
    let ids = ArrayD::from_shape_fn(IxDyn(&[n]), |i| i[0] as i64); // one response per token
    let adv = ArrayD::from_elem(IxDyn(&[n]), 1.0);
    for head in [&t, &full] {
        let mut outs: Vec<ArrayD<f64>> = (0..4).map(|_| ArrayD::zeros(IxDyn(&[n]))).collect();
        let [lp, en, sc, ao] = &mut outs[..] else { unreachable!() };
        let o = TokenOutputs {
            logprobs: Some(lp.view_mut()),
            entropy: Some(en.view_mut()),
            scale: Some(sc.view_mut()),
            advantages: Some(ao.view_mut()),
            response_entropy: None,
        };
        head.forward(logits.view(), IndexView::from(labels.view()), IndexView::from(ids.view()), adv.view(), o).unwrap();
        for r in FINITE_ROWS {
            if r == 7 {
                // the label's logit is -inf: probability zero (outside the top-1 for the top-K head)
                let want = if head.config().vocab_topk == 1 { -1e4 } else { f64::NEG_INFINITY };
                assert_eq!(lp[[r]], want);
                continue;
            }
            assert!(lp[[r]].is_finite() && lp[[r]] <= 0.0, "row {r}: logprob {}", lp[[r]]);
            assert!(en[[r]].is_finite() && en[[r]] >= 0.0, "row {r}: entropy {}", en[[r]]);
        }
        assert!(lp[[5]].is_nan() && en[[5]].is_nan());
        assert_eq!(sc[[5]], 1.0, "a NaN response entropy keeps scale 1");
        let mut gl = ArrayD::zeros(logits.raw_dim());
        head.backward(logits.view(), IndexView::from(labels.view()), IndexView::from(ids.view()), sc.view(), adv.view(), gl.view_mut())
            .unwrap();
        for r in FINITE_ROWS {
            assert!(row(&gl, r).iter().all(|v| v.is_finite()), "row {r}: {:?}", row(&gl, r));
        }
    }
}

/// At the lower end of the valid range `b = 0`, so a class whose softmax
/// probability underflows to exactly 0 has `h = 0`; the output must stay
/// finite (the class gets the smallest logit) and so must the gradient.
#[test]
fn softmax_lower_end_with_underflowing_probabilities() {
    for n in [2usize, 3, 10, 1000] {
        for tau in [std::f64::consts::E, 4.0, 9.0] {
            let (lo, _) = SoftmaxConfig { num_classes: n, target_entropy: 0.0, tau }.target_range();
            // force b == 0 exactly through the clamp, whatever exp's rounding does
            for h0 in [lo, lo - 1e-13] {
                let Ok(h) = SoftmaxHead::new(SoftmaxConfig { num_classes: n, target_entropy: h0, tau }) else { continue };
                let mut z = ArrayD::<f64>::zeros(IxDyn(&[2, n]));
                z[[0, 0]] = 1e30;
                z[[1, n - 1]] = -1e30;
                let mut out = ArrayD::zeros(z.raw_dim());
                h.forward(z.view(), out.view_mut()).unwrap();
                assert!(out.iter().all(|v| v.is_finite()), "n={n} tau={tau} H0={h0}: {out:?}");
                let mut e = ArrayD::zeros(IxDyn(&[2]));
                h.entropy(out.view(), e.view_mut()).unwrap();
                assert!(e.iter().all(|&v| v >= h0 - 1e-9), "n={n} tau={tau}: {e:?} < {h0}");
                let mut g = ArrayD::zeros(z.raw_dim());
                h.backward(z.view(), ArrayD::from_elem(z.raw_dim(), 1.0).view(), g.view_mut()).unwrap();
                assert!(g.iter().all(|v| v.is_finite()), "n={n} tau={tau}: gradient {g:?}");
            }
        }
    }
}
