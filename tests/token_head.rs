//! The token head against a naive reference written from docs/math.md#token-head.

mod common;
use common::{assert_close, naive_entropy, Rng};
use era::{IndexView, TokenConfig, TokenHead, TokenOutputs};
use half::bf16;
use ndarray::{ArrayD, IxDyn};

struct Reference {
    logp: Vec<f64>,
    h: Vec<f64>,
    c: Vec<f64>,
    adv: Vec<f64>,
    hresp: Vec<f64>,
}

/// Naive: sorts each response's entropies, picks the scale, log-softmax at that scale.
fn reference(cfg: &TokenConfig, logits: &[Vec<f64>], labels: &[i64], ids: &[i64], adv: &[f64]) -> Reference {
    let n = logits.len();
    let z: Vec<Vec<f64>> = logits.iter().map(|r| r.iter().map(|v| v / cfg.temperature).collect()).collect();
    let h: Vec<f64> = z.iter().map(|r| naive_entropy(r)).collect();
    let mut hresp = vec![0.0; n];
    for t in 0..n {
        if ids[t] < 0 {
            continue;
        }
        let mut hs: Vec<f64> = (0..n).filter(|&u| ids[u] == ids[t]).map(|u| h[u]).collect();
        hs.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let k = ((cfg.top_fraction * hs.len() as f64).floor() as usize).max(1);
        hresp[t] = hs[..k].iter().sum::<f64>() / k as f64;
    }
    let mut c = vec![1.0; n];
    let mut logp = vec![0.0; n];
    let mut a2 = adv.to_vec();
    for t in 0..n {
        if ids[t] < 0 {
            continue;
        }
        if adv[t] > 0.0 && hresp[t] < cfg.omega_low {
            c[t] = cfg.k;
        } else if adv[t] > 0.0 && hresp[t] > cfg.omega_high {
            c[t] = 1.0 / cfg.k;
        }
        let v = z[t].len();
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| z[t][b].partial_cmp(&z[t][a]).unwrap().then(a.cmp(&b)));
        let kk = if cfg.vocab_topk == 0 { v } else { cfg.vocab_topk.min(v) };
        let sel = &order[..kk];
        let y = labels[t] as usize;
        if !sel.contains(&y) {
            logp[t] = -1e4;
        } else {
            let m = sel.iter().map(|&i| c[t] * z[t][i]).fold(f64::NEG_INFINITY, f64::max);
            let lse = m + sel.iter().map(|&i| (c[t] * z[t][i] - m).exp()).sum::<f64>().ln();
            logp[t] = c[t] * z[t][y] - lse;
        }
        if cfg.advantage_scaling {
            a2[t] = adv[t] / c[t];
        }
    }
    Reference { logp, h, c, adv: a2, hresp }
}

struct Batch {
    logits: ArrayD<f64>,
    labels: ArrayD<i64>,
    ids: ArrayD<i64>,
    adv: ArrayD<f64>,
}

fn batch(rng: &mut Rng, n: usize, v: usize, n_resp: usize, scale: f64) -> Batch {
    // per-response logit scale so that response entropies spread around the thresholds
    let resp_scale: Vec<f64> = (0..n_resp).map(|r| scale * (0.2 + 3.0 * r as f64 / n_resp as f64)).collect();
    let ids = ArrayD::from_shape_fn(IxDyn(&[n]), |_| {
        let r = rng.below(n_resp + 1);
        if r == n_resp {
            -1
        } else {
            r as i64
        }
    });
    let logits = ArrayD::from_shape_fn(IxDyn(&[n, v]), |i| {
        let r = ids[[i[0]]];
        let s = if r >= 0 { resp_scale[r as usize] } else { 1.0 };
        s * rng.normal()
    });
    let labels = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if ids[[i[0]]] < 0 { -100 } else { rng.below(v) as i64 });
    let adv = ArrayD::from_shape_fn(IxDyn(&[n]), |i| {
        let r = ids[[i[0]]];
        if r % 3 == 1 {
            -0.7
        } else {
            1.3
        }
    });
    Batch { logits, labels, ids, adv }
}

fn run(head: &TokenHead, b: &Batch) -> Reference {
    let n = b.labels.len();
    let mut out: Vec<ArrayD<f64>> = (0..5).map(|_| ArrayD::zeros(IxDyn(&[n]))).collect();
    let [lp, h, c, a, r] = &mut out[..] else { unreachable!() };
    let o = TokenOutputs {
        logprobs: Some(lp.view_mut()),
        entropy: Some(h.view_mut()),
        scale: Some(c.view_mut()),
        advantages: Some(a.view_mut()),
        response_entropy: Some(r.view_mut()),
    };
    head.forward(b.logits.view(), IndexView::from(b.labels.view()), IndexView::from(b.ids.view()), b.adv.view(), o).unwrap();
    let v = |a: &ArrayD<f64>| a.iter().cloned().collect::<Vec<_>>();
    Reference { logp: v(lp), h: v(h), c: v(c), adv: v(a), hresp: v(r) }
}

fn rows(a: &ArrayD<f64>) -> Vec<Vec<f64>> {
    a.outer_iter().map(|r| r.iter().cloned().collect()).collect()
}

#[test]
fn forward_matches_reference() {
    let mut rng = Rng(11);
    let configs = [
        TokenConfig::default(),
        TokenConfig { omega_low: 1.0, omega_high: 1.5, ..Default::default() },
        TokenConfig { k: 3.0, top_fraction: 0.5, temperature: 0.6, advantage_scaling: false, ..Default::default() },
        TokenConfig { vocab_topk: 4, omega_low: 1.2, omega_high: 1.8, ..Default::default() },
        TokenConfig { top_fraction: 1.0, omega_low: 0.0, omega_high: 0.0, ..Default::default() },
    ];
    let mut scales_seen = [false; 3];
    for cfg in configs {
        let head = TokenHead::new(cfg).unwrap();
        for &(n, v, r, s) in &[(40usize, 12usize, 4usize, 1.0), (7, 3, 7, 2.0), (64, 50, 3, 0.5), (5, 1, 2, 1.0)] {
            let b = batch(&mut rng, n, v, r, s);
            let got = run(&head, &b);
            let want = reference(
                &cfg,
                &rows(&b.logits),
                &b.labels.iter().cloned().collect::<Vec<_>>(),
                &b.ids.iter().cloned().collect::<Vec<_>>(),
                &b.adv.iter().cloned().collect::<Vec<_>>(),
            );
            assert_close(&got.h, &want.h, 1e-12, "entropy");
            assert_close(&got.hresp, &want.hresp, 1e-12, "response entropy");
            assert_eq!(got.c, want.c, "scale");
            assert_close(&got.logp, &want.logp, 1e-12, "logprobs");
            assert_close(&got.adv, &want.adv, 1e-15, "advantages");
            for c in &got.c {
                scales_seen[if *c > 1.0 {
                    0
                } else if *c < 1.0 {
                    1
                } else {
                    2
                }] = true;
            }
        }
    }
    assert_eq!(scales_seen, [true; 3], "the batches must exercise sharpen, flatten and keep");
}

#[test]
fn thresholds_exactly_at_the_response_entropy_keep_the_scale() {
    // one response, two tokens: rho = 0.2 -> the single highest entropy
    let logits = ndarray::arr2(&[[0.0, 0.0], [0.0, 3.0]]).into_dyn();
    let hmax = 2f64.ln();
    let b = Batch {
        logits,
        labels: ndarray::arr1(&[0i64, 1]).into_dyn(),
        ids: ndarray::arr1(&[0i64, 0]).into_dyn(),
        adv: ndarray::arr1(&[1.0, 1.0]).into_dyn(),
    };
    for (lo, hi, want) in [(hmax, 5.0, 1.0), (hmax + 1e-12, 5.0, 2.0), (0.0, hmax, 1.0), (0.0, hmax - 1e-12, 0.5)] {
        let head = TokenHead::new(TokenConfig { omega_low: lo, omega_high: hi, ..Default::default() }).unwrap();
        let got = run(&head, &b);
        assert_eq!(got.c, vec![want, want], "omega [{lo}, {hi}]");
    }
}

#[test]
fn int32_ids_batched_shape_and_bf16_logits() {
    let mut rng = Rng(5);
    let b = batch(&mut rng, 24, 9, 3, 1.0);
    let head = TokenHead::new(TokenConfig::default()).unwrap();
    let want = run(&head, &b);
    // [2, 12, V] batch shape with int32 labels/ids, f32 outputs
    let logits3 = b.logits.clone().into_shape_with_order(IxDyn(&[2, 12, 9])).unwrap();
    let labels = b.labels.mapv(|v| v as i32).into_shape_with_order(IxDyn(&[2, 12])).unwrap();
    let ids = b.ids.mapv(|v| v as i32).into_shape_with_order(IxDyn(&[2, 12])).unwrap();
    let adv = b.adv.mapv(|v| v as f32).into_shape_with_order(IxDyn(&[2, 12])).unwrap();
    let mut o: Vec<ArrayD<f32>> = (0..4).map(|_| ArrayD::zeros(IxDyn(&[2, 12]))).collect();
    let [lp, h, c, a] = &mut o[..] else { unreachable!() };
    let out = TokenOutputs {
        logprobs: Some(lp.view_mut()),
        entropy: Some(h.view_mut()),
        scale: Some(c.view_mut()),
        advantages: Some(a.view_mut()),
        response_entropy: None,
    };
    head.forward(logits3.view(), IndexView::from(labels.view()), IndexView::from(ids.view()), adv.view(), out).unwrap();
    let lp: Vec<f64> = lp.iter().map(|&v| v as f64).collect();
    assert_close(&lp, &want.logp, 1e-6, "f32 logprobs");
    // bf16 logits take the f32 kernels: within their documented tolerance of the
    // f64 computation on the bf16-rounded logits
    let lb = b.logits.mapv(bf16::from_f64);
    let rounded = Batch { logits: lb.mapv(|v| v.to_f64()), labels: b.labels.clone(), ids: b.ids.clone(), adv: b.adv.clone() };
    let want_b = run(&head, &rounded);
    let n = 24;
    let mut o: Vec<ArrayD<f64>> = (0..4).map(|_| ArrayD::zeros(IxDyn(&[n]))).collect();
    let [lp, h, c, a] = &mut o[..] else { unreachable!() };
    let out = TokenOutputs {
        logprobs: Some(lp.view_mut()),
        entropy: Some(h.view_mut()),
        scale: Some(c.view_mut()),
        advantages: Some(a.view_mut()),
        response_entropy: None,
    };
    head.forward(lb.view(), IndexView::from(b.labels.view()), IndexView::from(b.ids.view()), b.adv.view(), out).unwrap();
    assert_close(&lp.iter().cloned().collect::<Vec<_>>(), &want_b.logp, 1e-5, "bf16 logprobs");
    // and the bf16 gradient is the f64 gradient rounded, within one bf16 step
    let g = ArrayD::from_elem(IxDyn(&[n]), 1.0);
    let mut gl = ArrayD::<bf16>::from_elem(lb.raw_dim(), bf16::ZERO);
    head.backward(lb.view(), IndexView::from(b.labels.view()), IndexView::from(b.ids.view()), c.view(), g.view(), gl.view_mut()).unwrap();
    let mut g64 = ArrayD::<f64>::zeros(lb.raw_dim());
    head.backward(
        rounded.logits.view(),
        IndexView::from(b.labels.view()),
        IndexView::from(b.ids.view()),
        c.view(),
        g.view(),
        g64.view_mut(),
    )
    .unwrap();
    for (x, y) in gl.iter().zip(g64.iter()) {
        assert!((x.to_f64() - y).abs() <= y.abs() / 128.0 + 1e-6, "{x} vs {y}");
    }
}

#[test]
fn invalid_values_are_rejected() {
    let head = TokenHead::new(TokenConfig::default()).unwrap();
    let logits = ArrayD::<f64>::zeros(IxDyn(&[3, 4]));
    let adv = ArrayD::<f64>::zeros(IxDyn(&[3]));
    let mut o: Vec<ArrayD<f64>> = (0..4).map(|_| ArrayD::zeros(IxDyn(&[3]))).collect();
    for (labels, ids, kind) in [
        ([0i64, 4, 1], [0i64, 0, 0], Some(era::ErrorKind::InvalidValue)),
        ([0, -1, 1], [0, 0, 0], Some(era::ErrorKind::InvalidValue)),
        ([0, 9, 1], [0, -1, 0], None), // a masked token's label is not read
        ([0, 1, 1], [0, -2, 0], Some(era::ErrorKind::InvalidValue)),
    ] {
        let l = ndarray::arr1(&labels).into_dyn();
        let r = ndarray::arr1(&ids).into_dyn();
        let [lp, h, c, a] = &mut o[..] else { unreachable!() };
        let out = TokenOutputs {
            logprobs: Some(lp.view_mut()),
            entropy: Some(h.view_mut()),
            scale: Some(c.view_mut()),
            advantages: Some(a.view_mut()),
            response_entropy: None,
        };
        let res = head.forward(logits.view(), IndexView::from(l.view()), IndexView::from(r.view()), adv.view(), out);
        match kind {
            None => {
                assert!(res.is_ok());
                assert_eq!(lp[[1]], 0.0);
                assert_eq!(c[[1]], 1.0);
            }
            Some(k) => assert_eq!(res.unwrap_err().kind(), k),
        }
    }
}
