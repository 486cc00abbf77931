//! The vectorised, multithreaded kernels against the straightforward ones
//! on the same inputs: random rows, rows with inf/NaN, lengths one past a
//! SIMD width and a block, strided logits, 1 and 2 threads.

mod common;
use common::Rng;
use era::kernels::parallel::{PAR_MIN_ELEMENTS, PAR_MIN_ELEMENTS_GAUSSIAN};
use era::kernels::vmath::{Rows, BLOCK, LANES};
use era::{IndexView, TokenConfig, TokenHead, TokenOutputs};
use half::{bf16, f16};
use ndarray::{s, ArrayD, IxDyn};

/// Documented tolerance of the f32 token kernels against f64: absolute on
/// log-probs and entropies, relative to (1 + |value|).
const TOL: f64 = 2e-5;

struct Out {
    lp: Vec<f64>,
    h: Vec<f64>,
    c: Vec<f64>,
    a: Vec<f64>,
    r: Vec<f64>,
}

fn forward<T: era::Element>(
    head: &TokenHead,
    x: ndarray::ArrayViewD<'_, T>,
    y: &ArrayD<i64>,
    ids: &ArrayD<i64>,
    adv: &ArrayD<f64>,
    reference: bool,
) -> Out {
    let n = y.len();
    let mut o: Vec<ArrayD<f64>> = (0..5).map(|_| ArrayD::zeros(IxDyn(&[n]))).collect();
    let [lp, h, c, a, r] = &mut o[..] else { unreachable!() };
    let out = TokenOutputs {
        logprobs: Some(lp.view_mut()),
        entropy: Some(h.view_mut()),
        scale: Some(c.view_mut()),
        advantages: Some(a.view_mut()),
        response_entropy: Some(r.view_mut()),
    };
    let (yv, iv) = (IndexView::from(y.view()), IndexView::from(ids.view()));
    if reference {
        head.forward_reference(x, yv, iv, adv.view(), out).unwrap();
    } else {
        head.forward(x, yv, iv, adv.view(), out).unwrap();
    }
    let v = |a: &ArrayD<f64>| a.iter().cloned().collect();
    Out { lp: v(lp), h: v(h), c: v(c), a: v(a), r: v(r) }
}

fn same(got: &[f64], want: &[f64], tol: f64, what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "{what}[{i}]: fast {g} vs reference {w}");
    }
}

fn batch(rng: &mut Rng, n: usize, v: usize, scale: f64) -> (ArrayD<f32>, ArrayD<i64>, ArrayD<i64>, ArrayD<f64>) {
    let logits = ArrayD::from_shape_fn(IxDyn(&[n, v]), |i| (scale * (0.3 + (i[0] % 4) as f64) * rng.normal()) as f32);
    let ids = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if i[0] % 7 == 6 { -1 } else { (i[0] % 3) as i64 });
    let labels = ArrayD::from_shape_fn(IxDyn(&[n]), |_| rng.below(v) as i64);
    let adv = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if i[0] % 2 == 0 { 1.0 } else { -1.0 });
    (logits, labels, ids, adv)
}

fn configs() -> Vec<TokenConfig> {
    vec![
        TokenConfig { omega_low: 2.0, omega_high: 2.5, ..Default::default() },
        TokenConfig { k: 3.0, temperature: 0.7, omega_low: 1.0, omega_high: 1.2, ..Default::default() },
        TokenConfig { vocab_topk: 5, omega_low: 2.0, omega_high: 2.5, ..Default::default() },
        TokenConfig { vocab_topk: 1, temperature: 1.3, ..Default::default() },
    ]
}

#[test]
fn forward_matches_reference_on_awkward_lengths() {
    let mut rng = Rng(21);
    for v in [1usize, LANES - 1, LANES, LANES + 1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7] {
        for cfg in configs() {
            let head = TokenHead::new(cfg).unwrap();
            let (x, y, ids, adv) = batch(&mut rng, 14, v, 2.0);
            let want = forward(&head, x.view(), &y, &ids, &adv, true);
            let got = forward(&head, x.view(), &y, &ids, &adv, false);
            let what = format!("V={v} {cfg:?}");
            same(&got.h, &want.h, TOL, &format!("entropy {what}"));
            same(&got.r, &want.r, TOL, &format!("response entropy {what}"));
            same(&got.lp, &want.lp, TOL, &format!("logprobs {what}"));
            // the scale decision may only differ where a response entropy sits within
            // the tolerance of a threshold
            for t in 0..got.c.len() {
                if got.c[t] != want.c[t] {
                    let d = [cfg.omega_low, cfg.omega_high].iter().map(|o| (want.r[t] - o).abs()).fold(f64::INFINITY, f64::min);
                    assert!(d < 1e-4, "{what}: scale differs at {t} far from a threshold");
                } else {
                    assert_eq!(got.a[t], want.a[t]);
                }
            }
        }
    }
}

#[test]
fn non_finite_rows_and_huge_logits() {
    let head = TokenHead::new(TokenConfig::default()).unwrap();
    let topk = TokenHead::new(TokenConfig { vocab_topk: 3, ..Default::default() }).unwrap();
    let v = LANES + 1;
    let mut x = ArrayD::<f32>::zeros(IxDyn(&[6, v]));
    x[[0, 3]] = f32::NAN;
    x[[1, 5]] = f32::INFINITY;
    x[[2, 0]] = f32::NEG_INFINITY;
    x.slice_mut(s![3, ..]).fill(1e30);
    x[[4, 2]] = 3e38;
    for j in 0..v {
        x[[5, j]] = -1e30 * j as f32;
    }
    let y = ArrayD::from_shape_vec(IxDyn(&[6]), vec![1i64, 1, 1, 1, 2, 0]).unwrap();
    let ids = ArrayD::from_shape_vec(IxDyn(&[6]), vec![0i64, 1, 2, 3, 4, 5]).unwrap();
    let adv = ArrayD::from_elem(IxDyn(&[6]), 1.0);
    for h in [&head, &topk] {
        let want = forward(h, x.view(), &y, &ids, &adv, true);
        let got = forward(h, x.view(), &y, &ids, &adv, false);
        assert!(got.lp[0].is_nan() && got.h[0].is_nan(), "NaN row");
        assert!(got.lp[1].is_nan() && got.h[1].is_nan(), "inf row");
        same(&got.lp[2..], &want.lp[2..], TOL, "finite rows");
        same(&got.h[2..], &want.h[2..], TOL, "finite rows");
        // backward: finite rows agree, non-finite rows stay in their row
        let g = ArrayD::from_elem(IxDyn(&[6]), 1.0);
        let sc = ArrayD::from_shape_vec(IxDyn(&[6]), want.c.clone()).unwrap();
        let mut gf = ArrayD::<f32>::zeros(x.raw_dim());
        let mut gr = ArrayD::<f32>::zeros(x.raw_dim());
        let (yv, iv) = (IndexView::from(y.view()), IndexView::from(ids.view()));
        h.backward(x.view(), yv.clone(), iv.clone(), sc.view(), g.view(), gf.view_mut()).unwrap();
        h.backward_reference(x.view(), yv, iv, sc.view(), g.view(), gr.view_mut()).unwrap();
        for r in 2..6 {
            for j in 0..v {
                let (a, b) = (gf[[r, j]] as f64, gr[[r, j]] as f64);
                assert!((a - b).abs() <= 1e-5, "row {r} col {j}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn backward_matches_reference_for_every_dtype_and_layout() {
    let mut rng = Rng(22);
    for cfg in configs() {
        for v in [LANES + 1, BLOCK + 1] {
            let head = TokenHead::new(cfg).unwrap();
            let (x, y, ids, adv) = batch(&mut rng, 9, v, 1.5);
            let fwd = forward(&head, x.view(), &y, &ids, &adv, true);
            let sc = ArrayD::from_shape_vec(IxDyn(&[9]), fwd.c.clone()).unwrap();
            let g = ArrayD::from_shape_fn(IxDyn(&[9]), |_| rng.normal());
            let (yv, iv) = (IndexView::from(y.view()), IndexView::from(ids.view()));
            let mut want = ArrayD::<f32>::zeros(x.raw_dim());
            head.backward_reference(x.view(), yv.clone(), iv.clone(), sc.view(), g.view(), want.view_mut()).unwrap();
            // contiguous f32
            let mut got = ArrayD::<f32>::zeros(x.raw_dim());
            head.backward(x.view(), yv.clone(), iv.clone(), sc.view(), g.view(), got.view_mut()).unwrap();
            for (a, b) in got.iter().zip(want.iter()) {
                assert!((a - b).abs() <= 1e-6 + 1e-5 * b.abs(), "{a} vs {b}");
            }
            // a transposed (column-major) copy of the logits and of the gradient
            let xt = x.t().as_standard_layout().into_owned();
            let xv = xt.t();
            let mut gt = ArrayD::<f32>::zeros(IxDyn(&[v, 9]));
            head.backward(xv.view(), yv.clone(), iv.clone(), sc.view(), g.view(), gt.view_mut().reversed_axes()).unwrap();
            for (a, b) in gt.t().iter().zip(got.iter()) {
                assert_eq!(a, b, "layout changed the result");
            }
            // bf16 and f16 logits and gradients
            let xb = x.mapv(bf16::from_f32);
            let mut gb = ArrayD::from_elem(x.raw_dim(), bf16::ZERO);
            head.backward(xb.view(), yv.clone(), iv.clone(), sc.view(), g.view(), gb.view_mut()).unwrap();
            let xb64 = xb.mapv(|v| v.to_f32());
            let mut wb = ArrayD::<f32>::zeros(x.raw_dim());
            head.backward_reference(xb64.view(), yv.clone(), iv.clone(), sc.view(), g.view(), wb.view_mut()).unwrap();
            for (a, b) in gb.iter().zip(wb.iter()) {
                assert!((a.to_f32() - b).abs() <= b.abs() / 128.0 + 1e-6, "bf16 {a} vs {b}");
            }
            let xh = x.mapv(f16::from_f32);
            let mut gh = ArrayD::from_elem(x.raw_dim(), f16::ZERO);
            head.backward(xh.view(), yv, iv, sc.view(), g.view(), gh.view_mut()).unwrap();
            assert!(gh.iter().all(|v| v.is_finite()));
        }
    }
}

/// The in-place backward (gradient over the logits) against the backward
/// into a separate buffer: bit for bit, for every dtype, contiguous and
/// strided rows, top-K, masked tokens, zero upstream gradients, NaN/inf rows
/// and both thread counts; on an error the logits are left untouched.
#[test]
fn backward_in_place_equals_the_separate_output() {
    fn check<T: era::Element + PartialEq + std::fmt::Debug>(
        head: &TokenHead,
        x: &ArrayD<T>,
        y: &ArrayD<i64>,
        ids: &ArrayD<i64>,
        sc: &ArrayD<f64>,
        g: &ArrayD<f64>,
        what: &str,
    ) {
        let (yv, iv) = (IndexView::from(y.view()), IndexView::from(ids.view()));
        let mut want = x.clone();
        head.backward(x.view(), yv.clone(), iv.clone(), sc.view(), g.view(), want.view_mut()).unwrap();
        let mut got = x.clone();
        head.backward_in_place(got.view_mut(), yv.clone(), iv.clone(), sc.view(), g.view()).unwrap();
        let bits = |a: &ArrayD<T>| a.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{what}: contiguous");
        // column-major storage: the rows are strided
        let mut xt = x.t().as_standard_layout().into_owned();
        head.backward_in_place(xt.view_mut().reversed_axes(), yv, iv, sc.view(), g.view()).unwrap();
        assert_eq!(bits(&xt.t().to_owned()), bits(&want), "{what}: strided rows");
    }
    let mut rng = Rng(26);
    for cfg in configs() {
        for v in [LANES + 1, BLOCK + 1, 3 * BLOCK + 7] {
            for threads in [1, 2] {
                let head = TokenHead::new(cfg).unwrap().with_num_threads(threads);
                let n = 9;
                let (mut x, y, ids, adv) = batch(&mut rng, n, v, 1.5);
                x[[2, 1]] = f32::NAN;
                x[[3, 0]] = f32::INFINITY;
                let fwd = forward(&head, x.view(), &y, &ids, &adv, true);
                let sc = ArrayD::from_shape_vec(IxDyn(&[n]), fwd.c.iter().map(|c| if c.is_nan() { 1.0 } else { *c }).collect()).unwrap();
                let g = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if i[0] == 4 { 0.0 } else { rng.normal() });
                let what = format!("{cfg:?} V={v} threads={threads}");
                check(&head, &x, &y, &ids, &sc, &g, &format!("f32 {what}"));
                check(&head, &x.mapv(bf16::from_f32), &y, &ids, &sc, &g, &format!("bf16 {what}"));
                check(&head, &x.mapv(f16::from_f32), &y, &ids, &sc, &g, &format!("f16 {what}"));
                check(&head, &x.mapv(|v| v as f64), &y, &ids, &sc, &g, &format!("f64 {what}"));
                // an invalid scale: an error, and the logits as they were
                let mut bad = sc.clone();
                bad[[n - 1]] = 0.0;
                let mut kept = x.clone();
                let err =
                    head.backward_in_place(kept.view_mut(), IndexView::from(y.view()), IndexView::from(ids.view()), bad.view(), g.view());
                assert!(err.is_err(), "{what}: a zero scale must be rejected");
                assert_eq!(format!("{kept:?}"), format!("{x:?}"), "{what}: the logits were written before the error");
            }
        }
    }
}

#[test]
fn thread_counts_give_identical_results() {
    let mut rng = Rng(23);
    let (x, y, ids, adv) = batch(&mut rng, 300, 257, 1.0);
    let cfg = TokenConfig { omega_low: 2.0, omega_high: 2.5, ..Default::default() };
    let one = TokenHead::new(cfg).unwrap().with_num_threads(1);
    let two = TokenHead::new(cfg).unwrap().with_num_threads(2);
    let a = forward(&one, x.view(), &y, &ids, &adv, false);
    let b = forward(&two, x.view(), &y, &ids, &adv, false);
    assert_eq!(a.lp, b.lp);
    assert_eq!(a.h, b.h);
    let sc = ArrayD::from_shape_vec(IxDyn(&[300]), a.c.clone()).unwrap();
    let g = ArrayD::from_elem(IxDyn(&[300]), 0.5);
    let (mut g1, mut g2) = (ArrayD::<f32>::zeros(x.raw_dim()), ArrayD::<f32>::zeros(x.raw_dim()));
    one.backward(x.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), g.view(), g1.view_mut()).unwrap();
    two.backward(x.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), g.view(), g2.view_mut()).unwrap();
    assert_eq!(g1, g2);
}

#[test]
fn gaussian_f32_kernel_matches_the_f64_path() {
    use era::{DeltaArg, GaussianConfig, GaussianHead};
    let mut rng = Rng(24);
    for d in [1usize, 6, 17, 61] {
        let mut c = GaussianConfig::new(d, -(d as f64));
        c.log_std_min = -5.0;
        c.log_std_max = 2.0;
        for threads in [1usize, 2] {
            let head = GaussianHead::new(c).unwrap().with_num_threads(threads);
            let rows = PAR_MIN_ELEMENTS_GAUSSIAN / d + 17; // above the Gaussian head's threading threshold
            let mut z64 = rng.array(&[rows, d], 3.0);
            z64[[0, 0]] = f64::NAN;
            z64[[1, d - 1]] = 1e30;
            let g64 = rng.array(&[rows, d], 1.0);
            let deltas = ArrayD::from_shape_fn(IxDyn(&[rows]), |i| 0.1 * (i[0] % 5) as f64);
            let (z32, g32, d32) = (z64.mapv(|v| v as f32), g64.mapv(|v| v as f32), deltas.mapv(|v| v as f32));
            // the f64 path on the f32-rounded inputs is the reference
            let (zr, gr, deltas) = (z32.mapv(|v| v as f64), g32.mapv(|v| v as f64), d32.mapv(|v| v as f64));
            let mut want = ArrayD::<f64>::zeros(zr.raw_dim());
            head.forward_with_delta(zr.view(), DeltaArg::PerRow(deltas.view()), want.view_mut()).unwrap();
            let mut got = ArrayD::<f32>::zeros(zr.raw_dim());
            head.forward_with_delta(z32.view(), DeltaArg::PerRow(d32.view()), got.view_mut()).unwrap();
            for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                assert!((a.is_nan() && b.is_nan()) || (*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()), "D={d} [{i}]: {a} vs {b}");
            }
            let mut want_dz = ArrayD::<f64>::zeros(zr.raw_dim());
            let mut want_dd = ArrayD::<f64>::zeros(IxDyn(&[rows]));
            head.backward_with_delta(zr.view(), DeltaArg::PerRow(deltas.view()), gr.view(), want_dz.view_mut(), Some(want_dd.view_mut()))
                .unwrap();
            let mut dz = ArrayD::<f32>::zeros(zr.raw_dim());
            let mut dd = ArrayD::<f32>::zeros(IxDyn(&[rows]));
            head.backward_with_delta(z32.view(), DeltaArg::PerRow(d32.view()), g32.view(), dz.view_mut(), Some(dd.view_mut())).unwrap();
            // rows where f32 and f64 disagree on which entries sit on a bound (y within
            // rounding of lo or hi) have different masks, hence different gradients: skip them
            let (lo, hi) = (c.log_std_min, c.log_std_max);
            let flipped = |r: usize| {
                (0..d).any(|j| (want[[r, j]] == lo) != (got[[r, j]] as f64 == lo) || (want[[r, j]] == hi) != (got[[r, j]] as f64 == hi))
            };
            let mut skipped = 0;
            for r in 0..rows {
                if flipped(r) {
                    skipped += 1;
                    continue;
                }
                let pairs = (0..d).map(|j| (dz[[r, j]], want_dz[[r, j]])).chain(std::iter::once((dd[[r]], want_dd[[r]])));
                for (a, b) in pairs {
                    assert!((a.is_nan() && b.is_nan()) || (a as f64 - b).abs() <= 2e-5 * (1.0 + b.abs()), "D={d} row {r}: {a} vs {b}");
                }
            }
            assert!(skipped * 1000 <= rows, "D={d}: {skipped} of {rows} rows flip a bound");
        }
    }
}

/// With a scalar `delta`, d/d delta is the per-row values summed in row order,
/// bit for bit, also over more rows than the head sums at a time (from `z`
/// and from the saved softmax, one thread).
#[test]
fn gaussian_scalar_delta_gradient_is_the_row_sum() {
    use era::{DeltaArg, GaussianConfig, GaussianHead};
    let mut rng = Rng(31);
    for d in [6usize, 61] {
        let mut c = GaussianConfig::new(d, -(d as f64));
        c.log_std_min = -5.0;
        c.log_std_max = 2.0;
        let head = GaussianHead::new(c).unwrap().with_num_threads(1);
        let rows = 1300;
        let z = rng.array(&[rows, d], 3.0).mapv(|v| v as f32);
        let g = rng.array(&[rows, d], 1.0).mapv(|v| v as f32);
        let mut saved = ArrayD::<f32>::zeros(z.raw_dim());
        let mut out = ArrayD::<f32>::zeros(z.raw_dim());
        head.forward_saving(z.view(), DeltaArg::Scalar(0.3), out.view_mut(), saved.view_mut()).unwrap();
        let same = ArrayD::from_elem(IxDyn(&[rows]), 0.3f32);
        let mut per_row = ArrayD::<f32>::zeros(IxDyn(&[rows]));
        let mut dz = ArrayD::<f32>::zeros(z.raw_dim());
        head.backward_with_delta(z.view(), DeltaArg::PerRow(same.view()), g.view(), dz.view_mut(), Some(per_row.view_mut())).unwrap();
        let want = per_row.iter().fold(-0.0f64, |a, &v| a + v as f64) as f32;
        for from_saved in [false, true] {
            let mut total = ArrayD::<f32>::zeros(IxDyn(&[]));
            if from_saved {
                head.backward_saved(saved.view(), DeltaArg::Scalar(0.3), g.view(), dz.view_mut(), Some(total.view_mut())).unwrap();
            } else {
                head.backward_with_delta(z.view(), DeltaArg::Scalar(0.3), g.view(), dz.view_mut(), Some(total.view_mut())).unwrap();
            }
            assert_eq!(total[[]].to_bits(), want.to_bits(), "D={d} from_saved={from_saved}: {} vs {want}", total[[]]);
        }
    }
}

/// Found by fuzzing (target `token`): with a temperature below f32's range
/// of `1/T` the fused kernel computed `x * inf`; such heads use the f64 kernels.
#[test]
fn tiny_temperatures_stay_exact() {
    let head = TokenHead::new(TokenConfig { temperature: 1e-40, ..Default::default() }).unwrap();
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![2.5385776e-35f32, -1.0]).unwrap();
    let y = ArrayD::from_elem(IxDyn(&[2]), 0i64);
    let ids = ArrayD::from_shape_vec(IxDyn(&[2]), vec![0i64, 1]).unwrap();
    let adv = ArrayD::from_elem(IxDyn(&[2]), 1.0);
    let got = forward(&head, x.view(), &y, &ids, &adv, false);
    assert_eq!(got.lp, vec![0.0, 0.0]);
    assert_eq!(got.h, vec![0.0, 0.0]);
    let sc = ArrayD::from_shape_vec(IxDyn(&[2]), got.c.clone()).unwrap();
    let mut g = ArrayD::<f32>::zeros(x.raw_dim());
    head.backward(x.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), adv.view(), g.view_mut()).unwrap();
    assert!(g.iter().all(|v| *v == 0.0), "{g:?}");
}

/// The vectorised f32 softmax head against the f64 path on the same
/// (f32-rounded) inputs: lengths around the SIMD width and a block, rows with
/// NaN, +inf, -inf and huge logits, both ends of the H0 range that the f32
/// kernels accept, 1 and 2 threads (bit-identical), and the entropy bound.
#[test]
fn softmax_f32_kernel_matches_the_f64_path() {
    use era::{SoftmaxConfig, SoftmaxHead};
    let mut rng = Rng(25);
    let cases: &[(usize, f64, f64)] = &[
        (2, 0.0, 4.0),
        (10, 1.0, 4.0),
        (10, 2.2, 4.0),
        (15, 0.5, 3.0),
        (16, 2.0, 10.0),
        (17, 0.0, 4.0),
        (1000, 4.0, 4.0),
        (BLOCK + 1, 3.0, 6.0),
    ];
    for &(n, h0, tau) in cases {
        let cfg = SoftmaxConfig { num_classes: n, target_entropy: h0, tau };
        // above the threading threshold, so that 2 threads split the rows
        let rows = (PAR_MIN_ELEMENTS + 7_000).div_ceil(n).max(8);
        let mut z64 = rng.array(&[rows, n], 4.0);
        z64[[0, 0]] = f64::NAN;
        z64[[1, n - 1]] = f64::INFINITY;
        z64[[2, 0]] = f64::NEG_INFINITY;
        z64[[3, 1]] = 1e30;
        for j in 0..n {
            z64[[4, j]] = f64::NEG_INFINITY;
            z64[[5, j]] = if j == 0 { 80.0 } else { -80.0 }; // probabilities below f32's range
        }
        let g64 = rng.array(&[rows, n], 1.0);
        let (z32, g32) = (z64.mapv(|v| v as f32), g64.mapv(|v| v as f32));
        let (zr, gr) = (z32.mapv(|v| v as f64), g32.mapv(|v| v as f64));
        let mut results = Vec::new();
        for threads in [1usize, 2] {
            let head = SoftmaxHead::new(cfg).unwrap().with_num_threads(threads);
            assert!(head.f32_kernels(), "{cfg:?}");
            let mut want = ArrayD::<f64>::zeros(zr.raw_dim());
            head.forward(zr.view(), want.view_mut()).unwrap();
            let mut got = ArrayD::<f32>::zeros(zr.raw_dim());
            head.forward(z32.view(), got.view_mut()).unwrap();
            for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                assert!((a.is_nan() && b.is_nan()) || (*a as f64 - b).abs() <= 2e-5 * (1.0 + b.abs()), "n={n} H0={h0} [{i}]: {a} vs {b}");
            }
            // the guarantee on the f32 outputs (rows without NaN)
            let mut h = ArrayD::<f64>::zeros(IxDyn(&[rows]));
            head.entropy(got.mapv(|v| v as f64).view(), h.view_mut()).unwrap();
            for (r, &e) in h.iter().enumerate() {
                assert!(e.is_nan() || e >= h0 - 1e-5, "n={n} H0={h0} row {r}: H = {e}");
            }
            let mut want_dz = ArrayD::<f64>::zeros(zr.raw_dim());
            head.backward(zr.view(), gr.view(), want_dz.view_mut()).unwrap();
            let mut dz = ArrayD::<f32>::zeros(zr.raw_dim());
            head.backward(z32.view(), g32.view(), dz.view_mut()).unwrap();
            for (i, (a, b)) in dz.iter().zip(want_dz.iter()).enumerate() {
                assert!((a.is_nan() && b.is_nan()) || (*a as f64 - b).abs() <= 2e-5 * (1.0 + b.abs()), "n={n} H0={h0} dz[{i}]: {a} vs {b}");
            }
            results.push((got, dz));
        }
        let bits = |a: &ArrayD<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&results[0].0), bits(&results[1].0), "n={n}: 1 and 2 threads differ");
        assert_eq!(bits(&results[0].1), bits(&results[1].1), "n={n}: 1 and 2 threads differ");
    }
}

/// Short rows (`n` up to the SIMD width) run one row per lane, 16 rows at a
/// time: every row count around a group (the last group padded) gives the
/// f64 path's values, and a row's result does not depend on its neighbours
/// or on where the group boundaries fall.
#[test]
fn softmax_short_rows_across_lanes_match_the_f64_path_for_any_row_count() {
    use era::{SoftmaxConfig, SoftmaxHead};
    let mut rng = Rng(27);
    for n in [2usize, 3, 10, LANES] {
        let head = SoftmaxHead::new(SoftmaxConfig { num_classes: n, target_entropy: 0.3 * (n as f64).ln(), tau: 4.0 }).unwrap();
        assert!(head.f32_kernels());
        let all = rng.array(&[2 * LANES + 1, n], 3.0).mapv(|v| v as f32);
        let g_all = rng.array(&[2 * LANES + 1, n], 1.0).mapv(|v| v as f32);
        let run = |z: ndarray::ArrayViewD<'_, f32>, g: ndarray::ArrayViewD<'_, f32>| {
            let mut o = ArrayD::<f32>::zeros(z.raw_dim());
            head.forward(z.view(), o.view_mut()).unwrap();
            let mut d = ArrayD::<f32>::zeros(z.raw_dim());
            head.backward(z, g, d.view_mut()).unwrap();
            (o, d)
        };
        let (full_o, full_d) = run(all.view(), g_all.view());
        // the head dispatches these rows to the rows-across-lanes kernels: the same
        // values as those kernels called directly
        let (slope, b) = (head.constants().slope as f32, head.constants().b as f32);
        let (zs, gs) = (all.as_slice().unwrap(), g_all.as_slice().unwrap());
        let mut direct = vec![0.0f32; zs.len()];
        era::kernels::softmax::softmax_head_rows_f32(Rows::contiguous(zs, n), slope, b, &mut direct, None);
        assert_eq!(direct.as_slice(), full_o.as_slice().unwrap(), "n={n}: forward not through the rows kernel");
        era::kernels::softmax::softmax_head_rows_grad_f32(Rows::contiguous(zs, n), Rows::contiguous(gs, n), slope, b, &mut direct);
        assert_eq!(direct.as_slice(), full_d.as_slice().unwrap(), "n={n}: backward not through the rows kernel");
        for rows in [1usize, LANES - 1, LANES, LANES + 1, 2 * LANES + 1] {
            for start in [0usize, 1, LANES - 1] {
                if start + rows > 2 * LANES + 1 {
                    continue;
                }
                let z = all.slice(s![start..start + rows, ..]).to_owned().into_dyn();
                let g = g_all.slice(s![start..start + rows, ..]).to_owned().into_dyn();
                let (o, d) = run(z.view(), g.view());
                let bits = |a: ndarray::ArrayViewD<'_, f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(o.view()), bits(full_o.slice(s![start..start + rows, ..]).into_dyn()), "n={n} rows={rows} start={start}");
                assert_eq!(bits(d.view()), bits(full_d.slice(s![start..start + rows, ..]).into_dyn()), "n={n} rows={rows} start={start}");
                let (zr, gr) = (z.mapv(|v| v as f64), g.mapv(|v| v as f64));
                let mut want = ArrayD::<f64>::zeros(zr.raw_dim());
                head.forward(zr.view(), want.view_mut()).unwrap();
                let mut want_d = ArrayD::<f64>::zeros(zr.raw_dim());
                head.backward(zr.view(), gr.view(), want_d.view_mut()).unwrap();
                for (a, b) in o.iter().zip(want.iter()).chain(d.iter().zip(want_d.iter())) {
                    assert!((*a as f64 - b).abs() <= 2e-5 * (1.0 + b.abs()), "n={n} rows={rows}: {a} vs {b}");
                }
            }
        }
    }
}

/// Heads whose `u = -1 - ln(h)` can reach 0 (tau = e) or whose `b` is below
/// 1e-30 (the lower end of the H0 range, where `b` is 0 up to rounding) keep
/// f32 inputs on the f64 kernels; strided f32 inputs take the f64 path too.
/// All give the f64 results.
#[test]
fn softmax_f32_inputs_outside_the_fast_kernels() {
    use era::{SoftmaxConfig, SoftmaxHead};
    let mut rng = Rng(26);
    let e = std::f64::consts::E;
    let lower = 1.0 + (4f64.ln() / 4.0).ln(); // C = ub: b = 0
    for (cfg, fast) in [
        (SoftmaxConfig { num_classes: 5, target_entropy: 0.5, tau: e }, Some(false)),
        (SoftmaxConfig { num_classes: 5, target_entropy: lower, tau: 4.0 }, None),
        (SoftmaxConfig { num_classes: 5, target_entropy: 0.5, tau: 4.0 }, Some(true)),
    ] {
        let head = SoftmaxHead::new(cfg).unwrap();
        // at the lower end b is 0 up to rounding, which may leave it on either side
        // of 1e-30: either kernel, each within its own tolerance of the f64 results below
        if let Some(fast) = fast {
            assert_eq!(head.f32_kernels(), fast, "{cfg:?}");
        }
        let z64 = rng.array(&[64, 10], 3.0);
        let z32 = z64.mapv(|v| v as f32);
        let zs = z32.slice(s![.., ..;2]).into_dyn(); // strided rows of 5
        let zr = zs.mapv(|v| v as f64);
        let mut want = ArrayD::<f64>::zeros(zr.raw_dim());
        head.forward(zr.view(), want.view_mut()).unwrap();
        let mut got = ArrayD::<f32>::zeros(zr.raw_dim());
        head.forward(zs.view(), got.view_mut()).unwrap();
        if head.f32_kernels() {
            // a head that takes the f32 kernels takes them for strided rows too: the
            // contiguous call's bits, within the f32 kernels' documented tolerance (TOL, as
            // in softmax_f32_kernel_matches_the_f64_path) of the f64 results
            let mut dense = ArrayD::<f32>::zeros(zr.raw_dim());
            head.forward(zs.as_standard_layout().view(), dense.view_mut()).unwrap();
            let bits = |a: &ArrayD<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&dense), "{cfg:?}: strided and contiguous rows differ");
            for (a, b) in got.iter().zip(want.iter()) {
                assert!((*a as f64 - b).abs() <= TOL * (1.0 + b.abs()), "{cfg:?}: {a} vs {b}");
            }
            continue;
        }
        // the f64 kernels round once, to f32
        for (a, b) in got.iter().zip(want.iter()) {
            assert!((*a as f64 - b).abs() <= 1e-6 * (1.0 + b.abs()), "{cfg:?}: {a} vs {b}");
        }
    }
}

/// Found by the fuzz smoke run (target `token`): with a temperature of 1e-27
/// (1/T about 8e26, still a finite f32) a fused multiply-add `x/T - max`
/// kept the product's rounding error, up to +3e19 at the row maximum, and
/// the exponential overflowed to a NaN entropy. The kernels now round the
/// product first, so the maximum's difference is exactly 0 and all others are
/// negative; the results match the f64 kernels.
#[test]
fn huge_inverse_temperatures_keep_differences_nonpositive() {
    let row = [0.0f32, 0.36161545, 0.6742879, 0.89569867, 0.99588084, 0.9612752, 0.7965655, 0.5240442, 0.18059623];
    for (k, topk) in [(2.0, 0), (3.8369828151719897e117, 6), (3.0, 0)] {
        for len in [9usize, 40] {
            let cfg = TokenConfig {
                temperature: 1.2212247398712134e-27,
                k,
                vocab_topk: topk,
                omega_low: 1e-300,
                omega_high: 1e-290,
                ..Default::default()
            };
            let head = TokenHead::new(cfg).unwrap();
            let x = ArrayD::from_shape_fn(IxDyn(&[2, len]), |i| row[i[1] % row.len()] * if i[0] == 0 { 1.0 } else { -3.0 });
            let y = ArrayD::from_shape_vec(IxDyn(&[2]), vec![4i64, 0]).unwrap();
            let ids = ArrayD::from_shape_vec(IxDyn(&[2]), vec![0i64, 1]).unwrap();
            let adv = ArrayD::from_elem(IxDyn(&[2]), 1.0);
            let got = forward(&head, x.view(), &y, &ids, &adv, false);
            let want = forward(&head, x.view(), &y, &ids, &adv, true);
            assert!(got.h.iter().all(|h| h.is_finite() && *h >= 0.0), "k={k} len={len}: {:?}", got.h);
            same(&got.h, &want.h, TOL, "entropy");
            same(&got.lp, &want.lp, TOL, "logprob");
            let sc = ArrayD::from_shape_vec(IxDyn(&[2]), got.c.clone()).unwrap();
            let mut g = ArrayD::<f32>::zeros(x.raw_dim());
            head.backward(x.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), adv.view(), g.view_mut()).unwrap();
            let mut gr = ArrayD::<f32>::zeros(x.raw_dim());
            head.backward_reference(x.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), adv.view(), gr.view_mut())
                .unwrap();
            let (g, gr): (Vec<f64>, Vec<f64>) = (g.iter().map(|&v| v as f64).collect(), gr.iter().map(|&v| v as f64).collect());
            same(&g, &gr, TOL, "gradient");
            if k < 10.0 {
                assert!(g.iter().all(|v| v.is_finite()), "k={k} len={len}: {g:?}");
            }
        }
    }
}

/// A scalar `delta` passes one `k` to the f32 kernels (no per-row buffer) and
/// sums `d/d delta` per parallel chunk: the results equal the per-row path's,
/// on 1 and 2 threads, above the threading threshold.
#[test]
fn gaussian_scalar_delta_matches_per_row_delta() {
    use era::{DeltaArg, GaussianConfig, GaussianHead};
    let mut rng = Rng(27);
    for d in [6usize, 61] {
        let mut c = GaussianConfig::new(d, -(d as f64));
        c.log_std_min = -5.0;
        c.log_std_max = 2.0;
        let rows = PAR_MIN_ELEMENTS_GAUSSIAN / d + 3; // above the threading threshold
        let z = rng.array(&[rows, d], 3.0).mapv(|v| v as f32);
        let g = rng.array(&[rows, d], 1.0).mapv(|v| v as f32);
        let per_row = ArrayD::from_elem(IxDyn(&[rows]), 0.25f32);
        for threads in [1usize, 2] {
            let head = GaussianHead::new(c).unwrap().with_num_threads(threads);
            let (mut a, mut b) = (ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(z.raw_dim()));
            head.forward_with_delta(z.view(), DeltaArg::Scalar(0.25), a.view_mut()).unwrap();
            head.forward_with_delta(z.view(), DeltaArg::PerRow(per_row.view()), b.view_mut()).unwrap();
            assert_eq!(a, b, "D={d} threads={threads}: forward");
            let (mut da, mut db) = (ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(z.raw_dim()));
            let mut gd_scalar = ArrayD::<f32>::zeros(IxDyn(&[1]));
            let mut gd_rows = ArrayD::<f32>::zeros(IxDyn(&[rows]));
            head.backward_with_delta(z.view(), DeltaArg::Scalar(0.25), g.view(), da.view_mut(), Some(gd_scalar.view_mut())).unwrap();
            head.backward_with_delta(z.view(), DeltaArg::PerRow(per_row.view()), g.view(), db.view_mut(), Some(gd_rows.view_mut()))
                .unwrap();
            assert_eq!(da, db, "D={d} threads={threads}: backward");
            let total: f64 = gd_rows.iter().map(|&v| v as f64).sum();
            let got = gd_scalar[[0]] as f64;
            assert!((got - total).abs() <= 1e-4 * (1.0 + total.abs()), "D={d} threads={threads}: {got} vs {total}");
        }
    }
}
