//! The token head over vocabulary blocks (docs/math.md#vocabulary-blocks):
//! random logits (NaN/inf included), a padded vocabulary, random block widths,
//! offsets and accumulate flags, labels anywhere, top-K. Properties: no crash;
//! statuses carry messages; blocks that cover the real vocabulary once finish
//! with the split forward's columns and entropies (within f32 precision, on
//! finite rows); a block missed or passed twice is an INVALID_ARGUMENT, never a
//! wrong answer; the block backward of a finished forward succeeds.
#![no_main]

#[path = "common.rs"]
mod common;
use arbitrary::Arbitrary;
use common::*;
use libfuzzer_sys::fuzz_target;
use std::ptr::null_mut;

#[derive(Arbitrary, Debug)]
struct Input {
    n: u8,
    v: u8,
    pad: u8,
    logits: Vec<f32>,
    labels: Vec<i8>,
    widths: Vec<u8>,
    skip: Option<u8>,
    topk: u8,
    k: f32,
}

fuzz_target!(|inp: Input| {
    let n = (inp.n % 12) as usize + 1;
    let v = (inp.v % 40) as usize + 1;
    let vp = v + (inp.pad % 5) as usize;
    let pick = |i: usize| if inp.logits.is_empty() { (i as f32 * 0.37).sin() } else { inp.logits[i % inp.logits.len()] };
    let logits: Vec<f32> = (0..n * vp).map(|i| if i % vp < v { pick(i) } else { f32::NAN }).collect();
    let mut labels: Vec<i64> =
        (0..n).map(|i| if inp.labels.is_empty() { 0 } else { inp.labels[i % inp.labels.len()] as i64 % (vp as i64 + 1) }).collect();
    let mut cfg = EraConfig::defaults(ERA_HEAD_KIND_TOKEN).unwrap();
    // a valid head (the configuration's own checks are the config target's): k finite and > 1
    cfg.k = 1.0 + if inp.k.is_finite() { (inp.k.abs() % 5.0) as f64 } else { 1.0 } + 1e-3;
    cfg.vocab_topk = (inp.topk % 6) as u64;
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&cfg, &mut h) }, EraStatus::Ok);
    let kk = if cfg.vocab_topk > 0 && (cfg.vocab_topk as usize) < v { cfg.vocab_topk as usize } else { 0 };
    let (ni, ki) = (n as i64, kk.max(1) as i64);
    let mut stats = vec![0.0f64; 9 * n];
    let mut tv = vec![0.0f64; n * kk.max(1)];
    let mut ti = vec![0i64; n * kk.max(1)];
    let mut ts = Tensor::contiguous(&mut stats, F64, &[9, ni]);
    let mut ttv = Tensor::contiguous(&mut tv, F64, &[ni, ki]);
    let mut tti = Tensor::contiguous(&mut ti, I64, &[ni, ki]);
    let mut ty = Tensor::contiguous(&mut labels, I64, &[ni]);
    let labels_ok = labels.iter().all(|&y| y < v as i64);
    // blocks of random widths over the padded vocabulary, one perhaps skipped
    let mut off = 0usize;
    let mut b = 0usize;
    let mut skipped = false;
    let mut blocks = Vec::new();
    while off < vp {
        let w = (inp.widths.get(b).copied().unwrap_or(7) as usize % vp).max(1).min(vp - off);
        let skip = inp.skip.is_some_and(|s| s as usize % 8 == b) && off < v;
        if !skip {
            blocks.push((off, w));
        }
        skipped |= skip;
        off += w;
        b += 1;
    }
    let mut ok = true;
    for (i, &(o, w)) in blocks.iter().enumerate() {
        let mut blk: Vec<f32> = (0..n).flat_map(|t| logits[t * vp + o..t * vp + o + w].to_vec()).collect();
        let mut tb = Tensor::contiguous(&mut blk, F32, &[ni, w as i64]);
        let (pv, pi) = if kk > 0 { (ttv.p(), tti.p()) } else { (null_mut(), null_mut()) };
        let st = unsafe {
            era_token_block_stats(h, tb.p(), ty.p(), null_mut(), o as i64, vp as i64, v as i64, (i > 0) as i32, ts.p(), pv, pi, null_mut())
        };
        check_status(st);
        assert_eq!(st == EraStatus::Ok, labels_ok, "block status {st:?}: {}", last_error());
        ok &= st == EraStatus::Ok;
    }
    if !ok || blocks.is_empty() {
        unsafe { era_head_free(h) };
        return;
    }
    let mut cols = vec![0.0f32; 3 * n];
    let mut ent = vec![0.0f32; n];
    let mut saved = vec![0.0f64; 8 * n];
    let mut tc = Tensor::contiguous(&mut cols, F32, &[ni, 3]);
    let mut te = Tensor::contiguous(&mut ent, F32, &[ni]);
    let mut tsv = Tensor::contiguous(&mut saved, F64, &[ni, 8]);
    let (pv, pi) = if kk > 0 { (ttv.p(), tti.p()) } else { (null_mut(), null_mut()) };
    let st = unsafe { era_token_block_finish(h, ts.p(), pv, pi, ty.p(), v as i64, tc.p(), te.p(), null_mut(), tsv.p(), null_mut()) };
    check_status(st);
    assert_eq!(st == EraStatus::Ok, !skipped, "finish status {st:?} (a block skipped: {skipped}): {}", last_error());
    if st != EraStatus::Ok {
        unsafe { era_head_free(h) };
        return;
    }
    // the split forward on the real vocabulary, whole
    let mut whole: Vec<f32> = (0..n).flat_map(|t| logits[t * vp..t * vp + v].to_vec()).collect();
    let mut tw = Tensor::contiguous(&mut whole, F32, &[ni, v as i64]);
    let mut cols2 = vec![0.0f32; 3 * n];
    let mut ent2 = vec![0.0f32; n];
    let mut tc2 = Tensor::contiguous(&mut cols2, F32, &[ni, 3]);
    let mut te2 = Tensor::contiguous(&mut ent2, F32, &[ni]);
    let st = unsafe { era_token_logprob_columns(h, tw.p(), ty.p(), null_mut(), tc2.p(), te2.p(), null_mut(), null_mut()) };
    assert_eq!(st, EraStatus::Ok, "{}", last_error());
    for t in 0..n {
        let row = &logits[t * vp..t * vp + v];
        if row.iter().all(|x| x.is_finite() && x.abs() < 1e3) {
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-3 * (1.0 + b.abs());
            assert!(close(ent[t], ent2[t]), "entropy {} vs {} of row {row:?}", ent[t], ent2[t]);
            for j in 0..3 {
                assert!(close(cols[3 * t + j], cols2[3 * t + j]), "column {j}: {} vs {} of row {row:?}", cols[3 * t + j], cols2[3 * t + j]);
            }
        }
    }
    // the backward of every block
    let mut gc: Vec<f32> = (0..3 * n).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
    let mut tg = Tensor::contiguous(&mut gc, F32, &[ni, 3]);
    for &(o, w) in &blocks {
        let mut blk: Vec<f32> = (0..n).flat_map(|t| logits[t * vp + o..t * vp + o + w].to_vec()).collect();
        let mut tb = Tensor::contiguous(&mut blk, F32, &[ni, w as i64]);
        let st = unsafe {
            era_token_block_backward(h, tb.p(), ty.p(), null_mut(), o as i64, vp as i64, v as i64, tsv.p(), tg.p(), null_mut(), tb.p(), null_mut())
        };
        check_status(st);
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
    }
    unsafe { era_head_free(h) };
});
