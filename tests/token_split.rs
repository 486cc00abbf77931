//! The split token forward (docs/math.md#split-token-forward) against the
//! one-call head, bit for bit; per-token temperatures; the columns' backward
//! against the one-call backward (bit for bit) and against f64 central
//! finite differences; the sum of squared probabilities against a direct sum;
//! rows read a block at a time against contiguous rows.

mod common;
use common::{naive_entropy, Rng};
use era::heads::token::{ColumnOutputs, DecideOutputs, GATHER_MAX};
use era::{Element, IndexView, TokenConfig, TokenHead, TokenOutputs};
use half::bf16;
use ndarray::{s, Array2, ArrayD, ArrayViewD, IxDyn};

struct OneCall {
    lp: Vec<f64>,
    h: Vec<f64>,
    c: Vec<f64>,
    a: Vec<f64>,
    r: Vec<f64>,
}

fn vec_of<F: Element>(a: &ArrayD<F>) -> Vec<f64> {
    a.iter().map(|v| v.to_f64()).collect()
}

fn one_call<T: Element, F: Element>(
    head: &TokenHead,
    x: ArrayViewD<'_, T>,
    y: &ArrayD<i64>,
    ids: &ArrayD<i64>,
    adv: &ArrayD<F>,
    temp: Option<&ArrayD<F>>,
) -> OneCall {
    let n = y.len();
    let mut o: Vec<ArrayD<F>> = (0..5).map(|_| ArrayD::from_elem(IxDyn(&[n]), F::from_f64(0.0))).collect();
    let [lp, h, c, a, r] = &mut o[..] else { unreachable!() };
    let out = TokenOutputs {
        logprobs: Some(lp.view_mut()),
        entropy: Some(h.view_mut()),
        scale: Some(c.view_mut()),
        advantages: Some(a.view_mut()),
        response_entropy: Some(r.view_mut()),
    };
    head.forward_t(x, IndexView::from(y.view()), IndexView::from(ids.view()), adv.view(), temp.map(|t| t.view()), out).unwrap();
    OneCall { lp: vec_of(lp), h: vec_of(h), c: vec_of(c), a: vec_of(a), r: vec_of(r) }
}

struct Split {
    cols: Vec<f64>,
    h: Vec<f64>,
    sq: Vec<f64>,
    lp: Vec<f64>,
    c: Vec<f64>,
    a: Vec<f64>,
    r: Vec<f64>,
    col: Vec<i64>,
}

fn split<T: Element, F: Element>(
    head: &TokenHead,
    x: ArrayViewD<'_, T>,
    y: &ArrayD<i64>,
    ids: &ArrayD<i64>,
    adv: &ArrayD<F>,
    temp: Option<&ArrayD<F>>,
) -> Split {
    let n = y.len();
    let z = || ArrayD::from_elem(IxDyn(&[n]), F::from_f64(0.0));
    let mut cols = ArrayD::from_elem(IxDyn(&[n, 3]), F::from_f64(0.0));
    let (mut h, mut sq) = (z(), z());
    // the split forward ignores a token by its label: the one-call head masks it by its id
    let labels = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if ids[[i[0]]] < 0 { -100 } else { y[[i[0]]] });
    let out = ColumnOutputs { columns: Some(cols.view_mut()), entropy: Some(h.view_mut()), sum_sq: Some(sq.view_mut()) };
    head.logprob_columns(x, IndexView::from(labels.view()), temp.map(|t| t.view()), out).unwrap();
    let (mut lp, mut c, mut a, mut r) = (z(), z(), z(), z());
    let mut col = ArrayD::<i64>::zeros(IxDyn(&[n]));
    let out = DecideOutputs {
        logprobs: Some(lp.view_mut()),
        scale: Some(c.view_mut()),
        advantages: Some(a.view_mut()),
        response_entropy: Some(r.view_mut()),
        column: Some(col.view_mut().into()),
    };
    head.decide(h.view(), IndexView::from(ids.view()), adv.view(), Some(cols.view()), out).unwrap();
    Split {
        cols: vec_of(&cols),
        h: vec_of(&h),
        sq: vec_of(&sq),
        lp: vec_of(&lp),
        c: vec_of(&c),
        a: vec_of(&a),
        r: vec_of(&r),
        col: col.iter().copied().collect(),
    }
}

fn bits(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{what}[{i}]: {x} vs {y}");
    }
}

/// Logits whose responses fall in all three scale branches: response 0 is
/// peaked (low entropy: sharpen), response 1 flat (high entropy: flatten),
/// response 2 in between, response 3 has a negative advantage; a few masked tokens.
fn data(rng: &mut Rng, v: usize) -> (Array2<f64>, ArrayD<i64>, ArrayD<i64>, Vec<f64>) {
    let per = 6;
    let n = 4 * per + 3;
    let mut x = Array2::zeros((n, v));
    let mut y = Vec::new();
    let mut ids = Vec::new();
    let mut adv = Vec::new();
    for t in 0..n {
        let r = if t < 4 * per { (t / per) as i64 } else { -1 };
        let scale = match r {
            0 => 1.0,
            1 => 0.05,
            _ => 1.5,
        };
        for j in 0..v {
            x[[t, j]] = scale * rng.normal();
        }
        let label = rng.below(v);
        if r == 0 {
            x[[t, label]] = 60.0; // one dominant logit: entropy near 0
        }
        y.push(label as i64);
        ids.push(r);
        adv.push(if r == 3 { -0.7 } else { 0.4 + 0.1 * rng.normal() });
    }
    (x, ArrayD::from_shape_vec(IxDyn(&[n]), y).unwrap(), ArrayD::from_shape_vec(IxDyn(&[n]), ids).unwrap(), adv)
}

fn heads() -> Vec<TokenHead> {
    let mut out = Vec::new();
    for k in [2.0, 3.0] {
        for topk in [0usize, 5] {
            for temperature in [1.0, 0.7] {
                let cfg = TokenConfig { k, vocab_topk: topk, temperature, omega_low: 0.45, omega_high: 3.0, ..Default::default() };
                out.push(TokenHead::new(cfg).unwrap());
            }
        }
    }
    out
}

fn check_same(one: &OneCall, sp: &Split, k: f64, what: &str) {
    bits(&one.h, &sp.h, &format!("{what} entropy"));
    bits(&one.lp, &sp.lp, &format!("{what} logprobs"));
    bits(&one.c, &sp.c, &format!("{what} scale"));
    bits(&one.a, &sp.a, &format!("{what} advantages"));
    bits(&one.r, &sp.r, &format!("{what} response entropy"));
    for (t, &c) in one.c.iter().enumerate() {
        let j = sp.col[t] as usize;
        let want = if c == 1.0 {
            0
        } else if c == k {
            1
        } else {
            2
        };
        assert_eq!(j, want, "{what}: column of token {t}");
    }
}

#[test]
fn split_forward_is_the_one_call_head_bit_for_bit() {
    let mut rng = Rng(7);
    for v in [37usize, 2 * era::kernels::vmath::BLOCK + 3] {
        let (x, y, ids, adv) = data(&mut rng, v);
        let n = y.len();
        for head in heads() {
            let k = head.config().k;
            let what = format!("V={v} k={k} topk={} T={}", head.config().vocab_topk, head.config().temperature);
            // f32 logits, f32 outputs
            let x32 = x.mapv(|v| v as f32).into_dyn();
            let a32 = ArrayD::from_shape_vec(IxDyn(&[n]), adv.iter().map(|&a| a as f32).collect()).unwrap();
            let one = one_call(&head, x32.view(), &y, &ids, &a32, None);
            let sp = split(&head, x32.view(), &y, &ids, &a32, None);
            check_same(&one, &sp, k, &format!("f32 {what}"));
            let scales: std::collections::BTreeSet<u64> = one.c.iter().map(|c| c.to_bits()).collect();
            assert_eq!(scales.len(), 3, "{what}: every scale branch occurs ({:?})", one.c);
            // bf16 logits
            let xb = x.mapv(bf16::from_f64).into_dyn();
            check_same(
                &one_call(&head, xb.view(), &y, &ids, &a32, None),
                &split(&head, xb.view(), &y, &ids, &a32, None),
                k,
                &format!("bf16 {what}"),
            );
            // f64 logits, f64 outputs
            let x64 = x.clone().into_dyn();
            let a64 = ArrayD::from_shape_vec(IxDyn(&[n]), adv.clone()).unwrap();
            check_same(
                &one_call(&head, x64.view(), &y, &ids, &a64, None),
                &split(&head, x64.view(), &y, &ids, &a64, None),
                k,
                &format!("f64 {what}"),
            );
            // strided f32 logits (every other column of a wider array): the same bits as contiguous
            let mut wide = ndarray::Array2::<f32>::zeros((n, 2 * v));
            wide.slice_mut(s![.., ..;2]).assign(&x32.view().into_dimensionality::<ndarray::Ix2>().unwrap());
            let strided = wide.slice(s![.., ..;2]).into_dyn();
            let st = split(&head, strided.view(), &y, &ids, &a32, None);
            bits(&st.cols, &sp.cols, &format!("strided {what} columns"));
            bits(&st.h, &sp.h, &format!("strided {what} entropy"));
        }
    }
}

#[test]
fn columns_are_the_log_probs_at_each_scale_and_sum_sq_is_the_squared_sum() {
    let mut rng = Rng(11);
    let v = 50;
    let (x, y, ids, adv) = data(&mut rng, v);
    let n = y.len();
    let head = TokenHead::new(TokenConfig { k: 3.0, temperature: 0.8, ..Default::default() }).unwrap();
    let a64 = ArrayD::from_shape_vec(IxDyn(&[n]), adv).unwrap();
    let sp = split(&head, x.view().into_dyn(), &y, &ids, &a64, None);
    for t in 0..n {
        let z: Vec<f64> = x.row(t).iter().map(|v| v / 0.8).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s1: f64 = z.iter().map(|v| (v - m).exp()).sum();
        let sq: f64 = z.iter().map(|v| ((v - m).exp() / s1).powi(2)).sum();
        assert!((sp.sq[t] - sq).abs() <= 1e-13 * (1.0 + sq), "sum_sq[{t}]: {} vs {sq}", sp.sq[t]);
        assert!((sp.h[t] - naive_entropy(&z)).abs() <= 1e-12);
        if ids[[t]] < 0 {
            assert_eq!(&sp.cols[3 * t..3 * t + 3], &[0.0; 3], "ignored token");
            continue;
        }
        for (j, c) in [1.0, 3.0, 1.0 / 3.0].into_iter().enumerate() {
            let zc: Vec<f64> = z.iter().map(|v| c * v).collect();
            let mc = zc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = mc + zc.iter().map(|v| (v - mc).exp()).sum::<f64>().ln();
            let want = zc[y[[t]] as usize] - lse;
            assert!((sp.cols[3 * t + j] - want).abs() <= 1e-12 * (1.0 + want.abs()), "column {j} of token {t}");
        }
    }
    // f32 with k != 2 (the squared sum takes its own exponential)
    let x32 = x.mapv(|v| v as f32).into_dyn();
    let a32 = a64.mapv(|v| v as f32);
    let sp32 = split(&head, x32.view(), &y, &ids, &a32, None);
    for t in 0..n {
        assert!((sp32.sq[t] - sp.sq[t]).abs() <= 2e-5 * (1.0 + sp.sq[t]), "f32 sum_sq[{t}]: {} vs {}", sp32.sq[t], sp.sq[t]);
    }
}

#[test]
fn a_temperature_per_token_is_each_token_at_its_own_temperature() {
    let mut rng = Rng(13);
    let v = 40;
    let (x, y, ids, adv) = data(&mut rng, v);
    let n = y.len();
    let temps: Vec<f64> = (0..n).map(|t| [0.6, 1.0, 1.3][t % 3]).collect();
    let x32 = x.mapv(|v| v as f32).into_dyn();
    let a32 = ArrayD::from_shape_vec(IxDyn(&[n]), adv.iter().map(|&a| a as f32).collect()).unwrap();
    let t32 = ArrayD::from_shape_vec(IxDyn(&[n]), temps.iter().map(|&t| t as f32).collect()).unwrap();
    let head = TokenHead::new(TokenConfig::default()).unwrap();
    let sp = split(&head, x32.view(), &y, &ids, &a32, Some(&t32));
    check_same(&one_call(&head, x32.view(), &y, &ids, &a32, Some(&t32)), &sp, 2.0, "per-token temperature");
    // each token's columns and entropy are those of a head configured at its temperature
    for tv in [0.6f32, 1.0, 1.3] {
        let at = TokenHead::new(TokenConfig { temperature: tv as f64, ..Default::default() }).unwrap();
        let ref_sp = split(&at, x32.view(), &y, &ids, &a32, None);
        for t in (0..n).filter(|&t| t32[[t]] == tv) {
            bits(&sp.cols[3 * t..3 * t + 3], &ref_sp.cols[3 * t..3 * t + 3], &format!("T={tv} token {t} columns"));
            bits(&sp.h[t..t + 1], &ref_sp.h[t..t + 1], &format!("T={tv} token {t} entropy"));
        }
    }
    // a uniform tensor is the configured temperature
    let at = TokenHead::new(TokenConfig { temperature: 0.6, ..Default::default() }).unwrap();
    let t06 = ArrayD::from_elem(IxDyn(&[n]), 0.6f32);
    check_same(&one_call(&head, x32.view(), &y, &ids, &a32, Some(&t06)), &split(&at, x32.view(), &y, &ids, &a32, None), 2.0, "uniform");
    // bad temperatures are refused
    for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let mut tb = t32.clone();
        tb[[4]] = bad;
        let mut h = ArrayD::<f32>::zeros(IxDyn(&[n]));
        let out = ColumnOutputs { columns: None, entropy: Some(h.view_mut()), sum_sq: None };
        let err = head.logprob_columns(x32.view(), IndexView::from(y.view()), Some(tb.view()), out).unwrap_err();
        assert_eq!(err.kind(), era::ErrorKind::InvalidValue, "{bad}: {err}");
    }
}

/// `grad_logits` of the columns' backward.
fn columns_grad<T: Element, F: Element>(
    head: &TokenHead,
    x: ArrayViewD<'_, T>,
    y: &ArrayD<i64>,
    temp: Option<&ArrayD<F>>,
    gc: Option<&ArrayD<F>>,
    ge: Option<&ArrayD<F>>,
) -> ArrayD<T> {
    let mut g = ArrayD::from_elem(x.raw_dim(), T::from_f64(0.0));
    head.columns_backward(x, IndexView::from(y.view()), temp.map(|t| t.view()), gc.map(|a| a.view()), ge.map(|a| a.view()), g.view_mut())
        .unwrap();
    g
}

#[test]
fn one_column_gradient_is_the_one_call_backward_bit_for_bit() {
    let mut rng = Rng(17);
    for v in [33usize, era::kernels::vmath::BLOCK + 9] {
        let (x, y, ids, _) = data(&mut rng, v);
        let n = y.len();
        let labels = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if ids[[i[0]]] < 0 { -100 } else { y[[i[0]]] });
        for head in heads() {
            let k = head.config().k;
            for (j, c) in [1.0, k, 1.0 / k].into_iter().enumerate() {
                let g: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
                let mut gc = ArrayD::<f32>::zeros(IxDyn(&[n, 3]));
                for t in 0..n {
                    gc[[t, j]] = g[t] as f32;
                }
                let x32 = x.mapv(|v| v as f32).into_dyn();
                let sc = ArrayD::from_elem(IxDyn(&[n]), c as f32);
                let g32 = ArrayD::from_shape_vec(IxDyn(&[n]), g.iter().map(|&v| v as f32).collect()).unwrap();
                let mut want = ArrayD::<f32>::zeros(x32.raw_dim());
                head.backward(x32.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), g32.view(), want.view_mut())
                    .unwrap();
                let got = columns_grad::<f32, f32>(&head, x32.view(), &labels, None, Some(&gc), None);
                assert!(got.iter().zip(want.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "column {j}, V={v}");
                // in place: the same bits
                let mut inplace = x32.clone();
                head.columns_backward_in_place(
                    inplace.view_mut(),
                    IndexView::from(labels.view()),
                    None::<ArrayViewD<'_, f32>>,
                    Some(gc.view()),
                    None,
                )
                .unwrap();
                assert!(inplace.iter().zip(want.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "in place, column {j}, V={v}");
                // bf16 logits
                let xb = x.mapv(bf16::from_f64).into_dyn();
                let mut wb = ArrayD::from_elem(xb.raw_dim(), bf16::ZERO);
                head.backward(xb.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), g32.view(), wb.view_mut())
                    .unwrap();
                let gb = columns_grad::<bf16, f32>(&head, xb.view(), &labels, None, Some(&gc), None);
                assert!(gb.iter().zip(wb.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "bf16 column {j}, V={v}");
            }
        }
    }
}

/// The loss `sum_t (a_t . columns_t + b_t * H_t)` in f64 at logits `x`.
fn loss(head: &TokenHead, x: &Array2<f64>, y: &ArrayD<i64>, temp: &ArrayD<f64>, a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    let n = y.len();
    let mut cols = ArrayD::<f64>::zeros(IxDyn(&[n, 3]));
    let mut h = ArrayD::<f64>::zeros(IxDyn(&[n]));
    let out = ColumnOutputs { columns: Some(cols.view_mut()), entropy: Some(h.view_mut()), sum_sq: None };
    head.logprob_columns(x.view().into_dyn(), IndexView::from(y.view()), Some(temp.view()), out).unwrap();
    (&cols * a).sum() + (&h * b).sum()
}

#[test]
fn columns_and_entropy_gradients_match_finite_differences() {
    let mut rng = Rng(19);
    let (n, v) = (6, 9);
    let x = Array2::from_shape_fn((n, v), |_| 1.5 * rng.normal());
    // token 2 is ignored (only its entropy has a gradient)
    let y = ArrayD::from_shape_vec(IxDyn(&[n]), vec![0i64, 3, -100, 8, 5, 1]).unwrap();
    let temp = ArrayD::from_shape_vec(IxDyn(&[n]), vec![1.0, 0.7, 1.2, 1.0, 0.5, 2.0]).unwrap();
    for topk in [0usize, 4] {
        let head = TokenHead::new(TokenConfig { k: 3.0, vocab_topk: topk, ..Default::default() }).unwrap();
        let a = ArrayD::from_shape_fn(IxDyn(&[n, 3]), |_| rng.normal());
        let b = ArrayD::from_shape_fn(IxDyn(&[n]), |_| rng.normal());
        let g = columns_grad::<f64, f64>(&head, x.view().into_dyn(), &y, Some(&temp), Some(&a), Some(&b));
        // labels outside the top-K add constant -1e4 columns to the loss: a step of 1e-5
        // keeps the rounding of the difference (1e4 * 1e-16 / 1e-5) below the tolerance
        let eps = 1e-5;
        for t in 0..n {
            for i in 0..v {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[[t, i]] += eps;
                xm[[t, i]] -= eps;
                let fd = (loss(&head, &xp, &y, &temp, &a, &b) - loss(&head, &xm, &y, &temp, &a, &b)) / (2.0 * eps);
                assert!((g[[t, i]] - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "topk {topk}: d/dx[{t},{i}] = {} vs {fd}", g[[t, i]]);
            }
        }
    }
}

#[test]
fn wide_rows_that_are_not_contiguous_f32_take_the_streaming_backward() {
    // a bf16 row wider than GATHER_MAX: read a block at a time; against the f64 gradient
    let v = GATHER_MAX + 17;
    let mut rng = Rng(23);
    let xf: Vec<f64> = (0..v).map(|_| 2.0 * rng.normal()).collect();
    let xb = ArrayD::from_shape_vec(IxDyn(&[1, v]), xf.iter().map(|&v| bf16::from_f64(v)).collect()).unwrap();
    let x64 = xb.mapv(|v| v.to_f64());
    let y = ArrayD::from_elem(IxDyn(&[1]), 12345i64);
    let head = TokenHead::new(TokenConfig::default()).unwrap();
    let mut gc = ArrayD::<f32>::zeros(IxDyn(&[1, 3]));
    gc[[0, 1]] = 0.5;
    let gb = columns_grad::<bf16, f32>(&head, xb.view(), &y, None, Some(&gc), None);
    let g64 = columns_grad::<f64, f32>(&head, x64.view(), &y, None, Some(&gc), None);
    for (i, (a, b)) in gb.iter().zip(g64.iter()).enumerate() {
        let want = bf16::from_f64(*b).to_f64();
        assert!((a.to_f64() - want).abs() <= 1e-2 * want.abs() + 1e-30, "[{i}] {a} vs {b}");
    }
    // and the forward's columns against f64
    let n1 = ArrayD::from_elem(IxDyn(&[1]), 0i64);
    let a1 = ArrayD::from_elem(IxDyn(&[1]), 1.0f32);
    let sb = split(&head, xb.view(), &y, &n1, &a1, None);
    let s64 = split(&head, x64.view(), &y, &n1, &a1, None);
    for j in 0..3 {
        assert!((sb.cols[j] - s64.cols[j]).abs() <= 2e-5 * (1.0 + s64.cols[j].abs()), "column {j}");
    }
}

#[test]
fn split_calls_refuse_what_the_contract_refuses() {
    let head = TokenHead::new(TokenConfig::default()).unwrap();
    let x = ArrayD::<f32>::zeros(IxDyn(&[2, 4]));
    let y = ArrayD::from_shape_vec(IxDyn(&[2]), vec![0i64, 4]).unwrap();
    let mut h = ArrayD::<f32>::zeros(IxDyn(&[2]));
    let out = ColumnOutputs { columns: None, entropy: Some(h.view_mut()), sum_sq: None };
    let e = head.logprob_columns(x.view(), IndexView::from(y.view()), None::<ArrayViewD<'_, f32>>, out).unwrap_err();
    assert_eq!(e.kind(), era::ErrorKind::InvalidValue, "{e}");
    let mut cols = ArrayD::<f32>::zeros(IxDyn(&[2, 4]));
    let y0 = ArrayD::from_elem(IxDyn(&[2]), 0i64);
    let out = ColumnOutputs { columns: Some(cols.view_mut()), entropy: None, sum_sq: None };
    let e = head.logprob_columns(x.view(), IndexView::from(y0.view()), None::<ArrayViewD<'_, f32>>, out).unwrap_err();
    assert_eq!(e.kind(), era::ErrorKind::InvalidShape, "{e}");
    // decide: logprobs without columns, an id below -1
    let ent = ArrayD::<f32>::zeros(IxDyn(&[2]));
    let ids = ArrayD::from_shape_vec(IxDyn(&[2]), vec![0i64, -2]).unwrap();
    let mut lp = ArrayD::<f32>::zeros(IxDyn(&[2]));
    let out = DecideOutputs { logprobs: Some(lp.view_mut()), scale: None, advantages: None, response_entropy: None, column: None };
    let e = head.decide(ent.view(), IndexView::from(y0.view()), ent.view(), None, out).unwrap_err();
    assert_eq!(e.kind(), era::ErrorKind::InvalidArgument, "{e}");
    let mut sc = ArrayD::<f32>::zeros(IxDyn(&[2]));
    let out = DecideOutputs { logprobs: None, scale: Some(sc.view_mut()), advantages: None, response_entropy: None, column: None };
    let e = head.decide(ent.view(), IndexView::from(ids.view()), ent.view(), None, out).unwrap_err();
    assert_eq!(e.kind(), era::ErrorKind::InvalidValue, "{e}");
    // backward: grad_columns of the wrong shape
    let gc = ArrayD::<f32>::zeros(IxDyn(&[2, 2]));
    let mut g = ArrayD::<f32>::zeros(IxDyn(&[2, 4]));
    let e = head.columns_backward(x.view(), IndexView::from(y0.view()), None, Some(gc.view()), None, g.view_mut()).unwrap_err();
    assert_eq!(e.kind(), era::ErrorKind::InvalidShape, "{e}");
}

#[test]
fn f64_backward_with_top_k_ignores_what_lies_outside_it() {
    // NaN and -inf outside the top-K, +inf inside it in one row, a label outside the top-K in
    // another: the streaming f64 rows give what the reference backward gives (finite where the
    // top-K is finite, zero rows for labels outside it, NaN where +inf is selected)
    let head = TokenHead::new(TokenConfig { vocab_topk: 3, ..Default::default() }).unwrap();
    let nan = f64::NAN;
    let x = ndarray::arr2(&[
        [3.0, nan, 2.0, -1.0, 1.5, f64::NEG_INFINITY],
        [0.1, 0.2, 0.3, 5.0, 4.0, 3.0],
        [f64::INFINITY, 1.0, 2.0, 3.0, nan, 0.0],
    ])
    .into_dyn();
    let y = ArrayD::from_shape_vec(IxDyn(&[3]), vec![2i64, 0, 3]).unwrap();
    let ids = ArrayD::from_elem(IxDyn(&[3]), 0i64);
    let sc = ArrayD::from_elem(IxDyn(&[3]), 1.0f64);
    let g = ArrayD::from_elem(IxDyn(&[3]), 1.0f64);
    let mut got = ArrayD::<f64>::zeros(IxDyn(&[3, 6]));
    let mut want = ArrayD::<f64>::zeros(IxDyn(&[3, 6]));
    head.backward(x.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), g.view(), got.view_mut()).unwrap();
    head.backward_reference(x.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), g.view(), want.view_mut())
        .unwrap();
    for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
        assert!((a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-15, "[{i}] {a} vs {b}");
    }
    assert!(got.row_finite(0) && got.index_axis(ndarray::Axis(0), 1).iter().all(|&v| v == 0.0));
}

trait RowFinite {
    fn row_finite(&self, r: usize) -> bool;
}

impl RowFinite for ArrayD<f64> {
    fn row_finite(&self, r: usize) -> bool {
        self.index_axis(ndarray::Axis(0), r).iter().all(|v| v.is_finite())
    }
}
