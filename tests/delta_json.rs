//! The delta learner, JSON round trips and sharing a head across threads.

use era::{DeltaLearning, DeltaOptimizer, ErrorKind, GaussianConfig, GaussianHead, Head, HeadConfig, SoftmaxConfig, TokenConfig, L2PE};
use ndarray::{ArrayD, IxDyn};
use std::sync::Arc;

fn cfg(opt: DeltaOptimizer, lr: f64) -> GaussianConfig {
    let mut c = GaussianConfig::new(4, -4.0);
    c.delta_learning = DeltaLearning { optimizer: opt, lr, ..Default::default() };
    c
}

#[test]
fn sgd_moves_delta_against_the_entropy_gap() {
    let h = GaussianHead::new(cfg(DeltaOptimizer::Sgd, 0.1)).unwrap();
    // bounded entropy above the target: delta falls by lr * gap
    assert!((h.update_delta(-3.0).unwrap() - -0.1).abs() < 1e-15);
    // below: rises
    assert!((h.update_delta(-6.0).unwrap() - 0.1).abs() < 1e-15);
    assert!((h.delta() - 0.1).abs() < 1e-15);
}

#[test]
fn adam_first_step_is_lr_and_converges() {
    let h = GaussianHead::new(cfg(DeltaOptimizer::Adam, 0.01)).unwrap();
    let d = h.update_delta(-5.0).unwrap();
    assert!((d - 0.01).abs() < 1e-9, "{d}"); // bias-corrected first step = lr * sign(-gap)
                                             // a bounded policy whose entropy is the Gaussian's minus a bias of 2 nats:
                                             // delta must converge to the bias
    let h = GaussianHead::new(cfg(DeltaOptimizer::Adam, 0.05)).unwrap();
    for _ in 0..3000 {
        let gaussian_entropy = -4.0 + h.delta();
        h.update_delta(gaussian_entropy - 2.0).unwrap();
    }
    assert!((h.delta() - 2.0).abs() < 0.05, "{}", h.delta());
}

#[test]
fn fixed_never_moves_and_learning_is_clamped_feasible() {
    let h = GaussianHead::new(cfg(DeltaOptimizer::Fixed, 0.1)).unwrap();
    assert_eq!(h.update_delta(-100.0).unwrap(), 0.0);
    let c = cfg(DeltaOptimizer::Sgd, 10.0);
    let max_delta = 4.0 * (0.0 + 0.5 * L2PE) - -4.0;
    assert!((c.max_delta() - max_delta).abs() < 1e-12);
    let h = GaussianHead::new(c).unwrap();
    assert_eq!(h.update_delta(-100.0).unwrap(), c.max_delta());
    // at the clamp the head is still usable (degenerate: all log-stds at the maximum)
    let z = ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![1.0f64, 2.0, 3.0, 4.0]).unwrap();
    let mut out = z.clone();
    h.forward(z.view(), out.view_mut()).unwrap();
    assert!(out.iter().all(|&v| v.abs() < 1e-12), "{out:?}");
    assert_eq!(h.set_delta(1e9).unwrap(), c.max_delta());
    assert_eq!(h.set_delta(f64::NAN).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(h.update_delta(f64::INFINITY).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn json_roundtrip_restores_learned_state() {
    let h = Head::new(HeadConfig::Gaussian(cfg(DeltaOptimizer::Adam, 0.02))).unwrap();
    let Head::Gaussian(g) = &h else { unreachable!() };
    for e in [-5.0, -4.5, -3.0] {
        g.update_delta(e).unwrap();
    }
    let json = h.to_json().unwrap();
    let back = Head::from_json(&json).unwrap();
    let Head::Gaussian(b) = &back else { panic!("kind changed") };
    assert_eq!(b.state(), g.state());
    // the next update is identical too (Adam moments restored)
    assert_eq!(b.update_delta(-4.2).unwrap(), g.update_delta(-4.2).unwrap());
    for c in [HeadConfig::Softmax(SoftmaxConfig::new(10, 1.0)), HeadConfig::Token(TokenConfig { vocab_topk: 20, ..Default::default() })] {
        let h = Head::new(c).unwrap();
        assert_eq!(Head::from_json(&h.to_json().unwrap()).unwrap().config(), c);
    }
    // a bare config document is accepted
    let h = Head::from_json(r#"{"kind": "softmax", "num_classes": 10, "target_entropy": 1.0}"#).unwrap();
    assert_eq!(h.config(), HeadConfig::Softmax(SoftmaxConfig::new(10, 1.0)));
}

#[test]
fn bad_json_is_rejected_with_the_right_kind() {
    let good = Head::new(HeadConfig::Gaussian(GaussianConfig::new(3, -3.0))).unwrap().to_json().unwrap();
    let cases = [
        ("", ErrorKind::Json),
        ("{", ErrorKind::Json),
        ("null", ErrorKind::Json),
        ("[]", ErrorKind::Json),
        (r#"{"kind":"nope"}"#, ErrorKind::Json),
        (r#"{"kind":"softmax","num_classes":10}"#, ErrorKind::Json),
        (r#"{"kind":"softmax","num_classes":10,"target_entropy":5.0}"#, ErrorKind::InfeasibleTarget),
        (r#"{"kind":"softmax","num_classes":10,"target_entropy":1.0,"tau":2.0}"#, ErrorKind::InvalidConfig),
        (r#"{"kind":"gaussian","dim":3,"target_entropy":100.0}"#, ErrorKind::InfeasibleTarget),
        (r#"{"kind":"token","k":0.5}"#, ErrorKind::InvalidConfig),
    ];
    for (doc, kind) in cases {
        assert_eq!(Head::from_json(doc).unwrap_err().kind(), kind, "{doc}");
    }
    let wrong_version = good.replace("\"version\": 1", "\"version\": 7");
    assert_eq!(Head::from_json(&wrong_version).unwrap_err().kind(), ErrorKind::Json);
    let wrong_format = good.replace("era-head", "other");
    assert_eq!(Head::from_json(&wrong_format).unwrap_err().kind(), ErrorKind::Json);
    let infeasible_state = good.replace("\"delta\": 0.0,\n    \"adam_m\"", "\"delta\": 100.0,\n    \"adam_m\"");
    assert_ne!(infeasible_state, good, "the test must actually edit the saved delta");
    assert_eq!(Head::from_json(&infeasible_state).unwrap_err().kind(), ErrorKind::InfeasibleTarget);
}

#[test]
fn one_head_shared_across_threads() {
    let mut c = cfg(DeltaOptimizer::Sgd, 0.001);
    c.log_std_min = -5.0;
    let head = Arc::new(GaussianHead::new(c).unwrap());
    let z = ArrayD::from_shape_fn(IxDyn(&[16, 4]), |i| (i[0] as f64 * 0.37 + i[1] as f64).sin());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (head, z) = (head.clone(), z.clone());
            std::thread::spawn(move || {
                for _ in 0..200 {
                    head.update_delta(-4.5).unwrap(); // each step adds exactly lr * 0.5
                    let mut out = ArrayD::zeros(z.raw_dim());
                    head.forward(z.view(), out.view_mut()).unwrap();
                    assert!(out.iter().all(|v| v.is_finite()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!((head.delta() - 800.0 * 0.001 * 0.5).abs() < 1e-9, "{}", head.delta());
}

/// Found by fuzzing (target `config`): without exact float parsing a saved
/// head did not load back to the same values.
#[test]
fn json_floats_roundtrip_exactly() {
    let mut c = GaussianConfig::new(3, 6.23e-322);
    c.log_std_min = -824.5486516244437;
    c.log_std_max = 824.5488526429966;
    c.delta_learning.lr = 5.075883674631299e-116;
    c.delta_learning.beta2 = 4.079765e-317;
    c.delta_learning.eps = 8.245484915707265e136;
    let h = Head::new(HeadConfig::Gaussian(c)).unwrap();
    let json = h.to_json().unwrap();
    let back = Head::from_json(&json).unwrap();
    assert_eq!(back.config(), h.config());
    assert_eq!(back.to_json().unwrap(), json);
}

/// Found by fuzzing (target `config`): `H0 + max_delta` can round above the
/// widest Gaussian, so a clamped head saved a document
/// that did not load.
#[test]
fn clamped_delta_stays_feasible_under_rounding() {
    let mut c = GaussianConfig::new(1000, -5106681239.904146);
    c.log_std_min = -1000.0;
    c.log_std_max = -580.0903872570457;
    c.delta_learning = DeltaLearning { optimizer: DeltaOptimizer::Sgd, lr: 1.0, ..Default::default() };
    // the precondition of the bug: the naive clamp is infeasible after rounding
    assert!(c.target_entropy + c.max_delta() > c.max_entropy());
    let h = Head::new(HeadConfig::Gaussian(c)).unwrap();
    let Head::Gaussian(g) = &h else { unreachable!() };
    for v in [5106681239.904146 * 2.0, 1e300, 3.0] {
        let d = g.set_delta(v).unwrap();
        assert!(c.check_delta(d).is_ok(), "set_delta({v}) -> {d}");
        let d = g.update_delta(-v).unwrap();
        assert!(c.check_delta(d).is_ok(), "update_delta(-{v}) -> {d}");
        Head::from_json(&h.to_json().unwrap()).unwrap();
    }
}

/// Found by fuzzing (target `sequence`): an SGD step with a huge learning
/// rate overflowed delta to -inf, which no JSON document can hold.
#[test]
fn overflowing_updates_fail_and_leave_the_state() {
    let h = GaussianHead::new(cfg(DeltaOptimizer::Sgd, 2.856815480867747e151)).unwrap();
    let before = h.state();
    let err = h.update_delta(1e300).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("non-finite"), "{err}");
    assert_eq!(h.state(), before);
    assert_eq!(h.set_delta(f64::NEG_INFINITY).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert!(h.set_delta(f64::INFINITY).unwrap().is_finite());
    Head::from_json(&Head::Gaussian(h).to_json().unwrap()).unwrap();
}
