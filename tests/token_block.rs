//! The token head over vocabulary blocks (docs/math.md#vocabulary-blocks)
//! against the split forward on whole logits: block widths that do not divide
//! V, a padded vocabulary, labels in every block, ignored tokens, the three
//! scales, top-K with ties across block borders, the merge in any order and
//! through rebasing (as ranks do it), the block backward against the columns'
//! backward, and every rejected input.

mod common;
use common::{assert_close, Rng};
use era::{ColumnOutputs, Element, ErrorKind, IndexView, TokenConfig, TokenHead, TopkMut, TopkView, VocabBlock};
use half::bf16;
use ndarray::{s, Array2, ArrayD, Axis, IxDyn};

/// What the finish (or the split forward) gives: columns, entropies, sums of squares.
#[derive(Debug)]
struct Outs {
    cols: Vec<f64>,
    h: Vec<f64>,
    sq: Vec<f64>,
}

fn whole<T: Element>(head: &TokenHead, x: &Array2<T>, y: &ArrayD<i64>, temp: &ArrayD<f64>) -> Outs {
    let n = y.len();
    let mut cols = ArrayD::<f64>::zeros(IxDyn(&[n, 3]));
    let mut h = ArrayD::<f64>::zeros(IxDyn(&[n]));
    let mut sq = ArrayD::<f64>::zeros(IxDyn(&[n]));
    let o = ColumnOutputs { columns: Some(cols.view_mut()), entropy: Some(h.view_mut()), sum_sq: Some(sq.view_mut()) };
    head.logprob_columns(x.view().into_dyn(), IndexView::from(y.view()), Some(temp.view()), o).unwrap();
    Outs { cols: cols.iter().copied().collect(), h: h.iter().copied().collect(), sq: sq.iter().copied().collect() }
}

/// Block passes over `x` (real width `valid`, padded to `x`'s width) in blocks
/// of `bw`, accumulated in one set of statistics, then the finish.
fn blocks<T: Element>(
    head: &TokenHead,
    x: &Array2<T>,
    y: &ArrayD<i64>,
    temp: &ArrayD<f64>,
    bw: usize,
    valid: usize,
) -> (Outs, ArrayD<f64>) {
    let (n, v) = x.dim();
    let kk = head.block_topk(valid);
    let mut stats = ArrayD::<f64>::zeros(IxDyn(&[9, n]));
    let mut tv = ArrayD::<f64>::zeros(IxDyn(&[n, kk.unwrap_or(1)]));
    let mut ti = ArrayD::<i64>::zeros(IxDyn(&[n, kk.unwrap_or(1)]));
    let mut off = 0;
    while off < v {
        let end = (off + bw).min(v);
        let blk = x.slice(s![.., off..end]).into_dyn();
        let topk = kk.map(|_| TopkMut { values: tv.view_mut(), index: ti.view_mut() });
        let b = VocabBlock { offset: off, vocab_size: v, vocab_valid: valid };
        head.block_stats(blk, IndexView::from(y.view()), Some(temp.view()), b, off > 0, stats.view_mut(), topk).unwrap();
        off = end;
    }
    finish(head, &stats, kk.map(|_| (&tv, &ti)), y, valid)
}

fn finish(
    head: &TokenHead,
    stats: &ArrayD<f64>,
    topk: Option<(&ArrayD<f64>, &ArrayD<i64>)>,
    y: &ArrayD<i64>,
    valid: usize,
) -> (Outs, ArrayD<f64>) {
    let n = y.len();
    let mut cols = ArrayD::<f64>::zeros(IxDyn(&[n, 3]));
    let mut h = ArrayD::<f64>::zeros(IxDyn(&[n]));
    let mut sq = ArrayD::<f64>::zeros(IxDyn(&[n]));
    let mut saved = ArrayD::<f64>::zeros(IxDyn(&[n, 8]));
    let o = ColumnOutputs { columns: Some(cols.view_mut()), entropy: Some(h.view_mut()), sum_sq: Some(sq.view_mut()) };
    let tk = topk.map(|(v, i)| TopkView { values: v.view(), index: i.view() });
    head.block_finish(stats.view(), tk, IndexView::from(y.view()), valid, o, Some(saved.view_mut())).unwrap();
    (Outs { cols: cols.iter().copied().collect(), h: h.iter().copied().collect(), sq: sq.iter().copied().collect() }, saved)
}

fn heads() -> Vec<TokenHead> {
    let mut out = Vec::new();
    for k in [2.0, 3.0] {
        for topk in [0usize, 5] {
            out.push(TokenHead::new(TokenConfig { k, vocab_topk: topk, ..Default::default() }).unwrap());
        }
    }
    out
}

/// Logits with labels in every block, one ignored token, per-token temperatures.
fn case(rng: &mut Rng, n: usize, v: usize, valid: usize, scale: f64) -> (Array2<f64>, ArrayD<i64>, ArrayD<f64>) {
    let x = Array2::from_shape_fn((n, v), |(_, j)| if j < valid { rng.normal() * scale } else { f64::NAN });
    let y: Vec<i64> = (0..n).map(|t| if t == 1 { -100 } else { ((t * 7919) % valid) as i64 }).collect();
    let temp: Vec<f64> = (0..n).map(|t| 0.6 + 0.1 * (t % 5) as f64).collect();
    (x, ArrayD::from_shape_vec(IxDyn(&[n]), y).unwrap(), ArrayD::from_shape_vec(IxDyn(&[n]), temp).unwrap())
}

#[test]
fn f64_blocks_match_whole_logits() {
    let mut rng = Rng(11);
    for head in heads() {
        for (v, valid, bw) in [(37, 37, 8), (37, 37, 37), (64, 50, 7), (40, 33, 16), (300, 300, 128)] {
            let (x, y, temp) = case(&mut rng, 12, v, valid, 3.0);
            let reference = whole(&head, &x.slice(s![.., ..valid]).to_owned(), &y, &temp);
            let (got, _) = blocks(&head, &x, &y, &temp, bw, valid);
            let what = format!("V {v} valid {valid} blocks {bw} k {} topk {}", head.config().k, head.config().vocab_topk);
            assert_close(&got.cols, &reference.cols, 1e-12, &format!("columns, {what}"));
            assert_close(&got.h, &reference.h, 1e-12, &format!("entropy, {what}"));
            assert_close(&got.sq, &reference.sq, 1e-12, &format!("sum_sq, {what}"));
        }
    }
}

#[test]
fn f32_and_bf16_blocks_match_whole_logits() {
    let mut rng = Rng(12);
    for head in heads() {
        let (x, y, temp) = case(&mut rng, 9, 3000, 2999, 2.0);
        let x32 = x.mapv(|v| v as f32);
        let reference = whole(&head, &x32.slice(s![.., ..2999]).to_owned(), &y, &temp);
        let (got, _) = blocks(&head, &x32, &y, &temp, 1000, 2999);
        assert_close(&got.cols, &reference.cols, 2e-5, "f32 columns");
        assert_close(&got.h, &reference.h, 2e-5, "f32 entropy");
        let xb = x.mapv(bf16::from_f64);
        let reference = whole(&head, &xb.slice(s![.., ..2999]).to_owned(), &y, &temp);
        let (got, _) = blocks(&head, &xb, &y, &temp, 777, 2999);
        assert_close(&got.cols, &reference.cols, 2e-5, "bf16 columns");
        assert_close(&got.h, &reference.h, 2e-5, "bf16 entropy");
    }
}

#[test]
fn topk_ties_across_block_borders_go_to_the_lower_index() {
    // entries 3..9 share the largest value; blocks of 4 split the tie three ways
    let head = TokenHead::new(TokenConfig { vocab_topk: 4, ..Default::default() }).unwrap();
    let mut x = Array2::<f64>::zeros((3, 14));
    for j in 3..9 {
        x[[0, j]] = 2.0;
        x[[1, j]] = 2.0;
        x[[2, j]] = 2.0;
    }
    let y = ArrayD::from_shape_vec(IxDyn(&[3]), vec![6i64, 7, 0]).unwrap();
    let temp = ArrayD::from_elem(IxDyn(&[3]), 1.0);
    let reference = whole(&head, &x, &y, &temp);
    for bw in [1, 3, 4, 5, 14] {
        let (got, saved) = blocks(&head, &x, &y, &temp, bw, 14);
        assert_eq!(got.cols, reference.cols, "blocks of {bw}");
        // label 6 is the 4th of the tie (selected), 7 the 5th (not), 0 is far below
        assert_eq!(saved[[0, 6]], 6.0);
        assert_eq!(got.cols[3], -1e4);
        assert_eq!(got.cols[6], -1e4);
    }
}

#[test]
fn the_merge_is_associative_and_rebasing_is_a_sum_reduction() {
    let mut rng = Rng(13);
    let head = TokenHead::new(TokenConfig { k: 2.5, vocab_topk: 3, ..Default::default() }).unwrap();
    let (x, y, temp) = case(&mut rng, 6, 90, 90, 4.0);
    let reference = whole(&head, &x, &y, &temp);
    // four "ranks" of unequal width, each a block pass of its own
    let cuts = [0usize, 17, 40, 41, 90];
    let mut parts = Vec::new();
    for w in cuts.windows(2) {
        let mut st = ArrayD::<f64>::zeros(IxDyn(&[9, 6]));
        let mut tv = ArrayD::<f64>::zeros(IxDyn(&[6, 3]));
        let mut ti = ArrayD::<i64>::zeros(IxDyn(&[6, 3]));
        let b = VocabBlock { offset: w[0], vocab_size: 90, vocab_valid: 90 };
        let tk = TopkMut { values: tv.view_mut(), index: ti.view_mut() };
        head.block_stats(
            x.slice(s![.., w[0]..w[1]]).into_dyn(),
            IndexView::from(y.view()),
            Some(temp.view()),
            b,
            false,
            st.view_mut(),
            Some(tk),
        )
        .unwrap();
        parts.push((st, tv, ti));
    }
    // merged right to left
    let mut acc = parts[3].clone();
    for p in parts[..3].iter().rev() {
        let (mut st, mut tv, mut ti) = p.clone();
        let other = TopkView { values: acc.1.view(), index: acc.2.view() };
        head.stats_merge(st.view_mut(), acc.0.view(), Some((TopkMut { values: tv.view_mut(), index: ti.view_mut() }, other))).unwrap();
        acc = (st, tv, ti);
    }
    let (got, _) = finish(&head, &acc.0, Some((&acc.1, &acc.2)), &y, 90);
    assert_close(&got.cols, &reference.cols, 1e-12, "merged columns");
    assert_close(&got.h, &reference.h, 1e-12, "merged entropy");
    // as ranks do it: max-reduce the maxima, rebase, sum-reduce rows 0..8
    let gmax: Vec<f64> = (0..6).map(|t| parts.iter().map(|p| p.0[[8, t]]).fold(f64::NEG_INFINITY, f64::max)).collect();
    let gmax = ArrayD::from_shape_vec(IxDyn(&[6]), gmax).unwrap();
    let mut total = ArrayD::<f64>::zeros(IxDyn(&[9, 6]));
    for p in &parts {
        let mut st = p.0.clone();
        head.stats_rebase(st.view_mut(), gmax.view()).unwrap();
        assert_eq!(st.index_axis(Axis(0), 8), gmax.view());
        total += &st;
    }
    total.index_axis_mut(Axis(0), 8).assign(&gmax);
    let (got2, _) = finish(&head, &total, Some((&acc.1, &acc.2)), &y, 90);
    assert_close(&got2.cols, &reference.cols, 1e-12, "rebased columns");
    assert_close(&got2.sq, &reference.sq, 1e-12, "rebased sum_sq");
}

fn column_grads(head: &TokenHead, x: &Array2<f64>, y: &ArrayD<i64>, temp: &ArrayD<f64>, gc: &ArrayD<f64>, ge: &ArrayD<f64>) -> Array2<f64> {
    let mut g = Array2::<f64>::zeros(x.dim());
    head.columns_backward(
        x.view().into_dyn(),
        IndexView::from(y.view()),
        Some(temp.view()),
        Some(gc.view()),
        Some(ge.view()),
        g.view_mut().into_dyn(),
    )
    .unwrap();
    g
}

#[test]
fn the_block_backward_matches_the_columns_backward() {
    let mut rng = Rng(14);
    for head in heads() {
        for (v, valid, bw) in [(37, 37, 8), (64, 50, 7)] {
            let (x, y, temp) = case(&mut rng, 10, v, valid, 2.0);
            let xr = x.slice(s![.., ..valid]).to_owned();
            let gc = rng.array(&[10, 3], 1.0);
            let ge = rng.array(&[10], 1.0);
            let want = column_grads(&head, &xr, &y, &temp, &gc, &ge);
            let (_, saved) = blocks(&head, &x, &y, &temp, bw, valid);
            let mut got = Array2::<f64>::from_elem((10, v), 7.0);
            let mut off = 0;
            while off < v {
                let end = (off + bw).min(v);
                let b = VocabBlock { offset: off, vocab_size: v, vocab_valid: valid };
                // in place on odd blocks, from the logits on even ones
                let mut dst = got.slice_mut(s![.., off..end]);
                if (off / bw) % 2 == 1 {
                    dst.assign(&x.slice(s![.., off..end]));
                    head.block_backward::<f64, f64>(
                        None,
                        IndexView::from(y.view()),
                        Some(temp.view()),
                        b,
                        saved.view(),
                        Some(gc.view()),
                        Some(ge.view()),
                        dst.into_dyn(),
                    )
                    .unwrap();
                } else {
                    let src = x.slice(s![.., off..end]).into_dyn();
                    head.block_backward(
                        Some(src),
                        IndexView::from(y.view()),
                        Some(temp.view()),
                        b,
                        saved.view(),
                        Some(gc.view()),
                        Some(ge.view()),
                        dst.into_dyn(),
                    )
                    .unwrap();
                }
                off = end;
            }
            let what = format!("V {v} valid {valid} k {} topk {}", head.config().k, head.config().vocab_topk);
            let g: Vec<f64> = got.slice(s![.., ..valid]).iter().copied().collect();
            assert_close(&g, &want.iter().copied().collect::<Vec<_>>(), 1e-12, &what);
            assert!(got.slice(s![.., valid..]).iter().all(|&v| v == 0.0), "padding gets 0: {what}");
        }
    }
}

#[test]
fn bad_protocol_inputs_are_rejected() {
    let head = TokenHead::new(TokenConfig { vocab_topk: 2, ..Default::default() }).unwrap();
    let x = Array2::<f64>::zeros((2, 4));
    let y = ArrayD::from_shape_vec(IxDyn(&[2]), vec![0i64, 5]).unwrap();
    let mut st = ArrayD::<f64>::zeros(IxDyn(&[9, 2]));
    let mut tv = ArrayD::<f64>::zeros(IxDyn(&[2, 2]));
    let mut ti = ArrayD::<i64>::zeros(IxDyn(&[2, 2]));
    let none: Option<ndarray::ArrayViewD<'_, f64>> = None;
    let mut run = |b: VocabBlock, y: &ArrayD<i64>, topk: bool, st: &mut ArrayD<f64>| {
        let tk = topk.then(|| TopkMut { values: tv.view_mut(), index: ti.view_mut() });
        head.block_stats(x.view().into_dyn(), IndexView::from(y.view()), none.clone(), b, false, st.view_mut(), tk).map_err(|e| e.kind())
    };
    let ok = VocabBlock { offset: 4, vocab_size: 8, vocab_valid: 8 };
    assert_eq!(run(ok, &y, true, &mut st), Ok(()));
    assert_eq!(run(VocabBlock { offset: 5, ..ok }, &y, true, &mut st), Err(ErrorKind::InvalidArgument), "block past V");
    assert_eq!(run(VocabBlock { vocab_valid: 9, ..ok }, &y, true, &mut st), Err(ErrorKind::InvalidArgument), "valid > V");
    assert_eq!(run(VocabBlock { vocab_valid: 0, ..ok }, &y, true, &mut st), Err(ErrorKind::InvalidArgument), "valid 0");
    assert_eq!(run(VocabBlock { vocab_valid: 5, ..ok }, &y, true, &mut st), Err(ErrorKind::InvalidValue), "label in the padding");
    assert_eq!(run(ok, &y, false, &mut st), Err(ErrorKind::InvalidArgument), "top-K without its tensors");
    let mut bad = ArrayD::<f64>::zeros(IxDyn(&[8, 2]));
    assert_eq!(run(ok, &y, true, &mut bad), Err(ErrorKind::InvalidShape), "stats of 8 rows");
    // a finish over blocks that miss part of the vocabulary, or the label
    let tk = TopkView { values: tv.view(), index: ti.view() };
    let mut h = ArrayD::<f64>::zeros(IxDyn(&[2]));
    let o = ColumnOutputs { columns: None, entropy: Some(h.view_mut()), sum_sq: None };
    let err = head.block_finish(st.view(), Some(tk), IndexView::from(y.view()), 8, o, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("real entries"), "{err}");
    // rebasing to a maximum below the token's own
    let low = ArrayD::from_elem(IxDyn(&[2]), -1.0);
    assert_eq!(head.stats_rebase(st.view_mut(), low.view()).unwrap_err().kind(), ErrorKind::InvalidValue);
    // temperatures must be finite and positive
    let bad_t = ArrayD::from_elem(IxDyn(&[2]), 0.0);
    let mut st2 = ArrayD::<f64>::zeros(IxDyn(&[9, 2]));
    let mut tv2 = ArrayD::<f64>::zeros(IxDyn(&[2, 2]));
    let mut ti2 = ArrayD::<i64>::zeros(IxDyn(&[2, 2]));
    let tk = TopkMut { values: tv2.view_mut(), index: ti2.view_mut() };
    let e = head.block_stats(x.view().into_dyn(), IndexView::from(y.view()), Some(bad_t.view()), ok, false, st2.view_mut(), Some(tk));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidValue);
}

#[test]
fn nan_in_one_block_spoils_the_token_only() {
    let head = TokenHead::new(TokenConfig::default()).unwrap();
    let mut x = Array2::<f64>::zeros((2, 10));
    x[[0, 7]] = f64::NAN;
    let y = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1i64, 2]).unwrap();
    let temp = ArrayD::from_elem(IxDyn(&[2]), 1.0);
    let (got, _) = blocks(&head, &x, &y, &temp, 4, 10);
    assert!(got.h[0].is_nan() && got.cols[..3].iter().all(|v| v.is_nan()));
    assert!((got.h[1] - 10f64.ln()).abs() < 1e-12);
    assert!((got.cols[3] + 10f64.ln()).abs() < 1e-12);
}
