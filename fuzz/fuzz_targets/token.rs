//! Random token batches and token-head configs: any labels, response ids,
//! NaN/inf logits, top-K. Properties: no crash; statuses carry messages;
//! for finite rows log-probs are <= 0 (or the top-K sentinel / -inf for a
//! -inf label logit), entropies lie in [0, ln V], scales in {k, 1, 1/k};
//! the backward of a valid forward succeeds and is finite on finite rows.
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
    logits: Vec<f32>,
    labels: Vec<i8>,
    ids: Vec<i8>,
    adv: Vec<f32>,
    k: f64,
    omega_low: f64,
    omega_high: f64,
    rho: f64,
    temperature: f64,
    topk: u8,
    scaling: bool,
    sane_config: bool,
}

fuzz_target!(|inp: Input| {
    let n = (inp.n % 48) as usize;
    let v = (inp.v % 40) as usize + 1;
    let pick = |xs: &[f32], i: usize, d: f32| if xs.is_empty() { d } else { xs[i % xs.len()] };
    let mut logits: Vec<f32> = (0..n * v).map(|i| pick(&inp.logits, i, (i as f32 * 0.37).sin())).collect();
    let mut labels: Vec<i64> =
        (0..n).map(|i| if inp.labels.is_empty() { 0 } else { inp.labels[i % inp.labels.len()] as i64 % (v as i64 + 1) }).collect();
    let mut ids: Vec<i64> = (0..n).map(|i| if inp.ids.is_empty() { 0 } else { (inp.ids[i % inp.ids.len()] % 6) as i64 }).collect();
    let mut adv: Vec<f32> = (0..n).map(|i| pick(&inp.adv, i, 1.0)).collect();
    let mut cfg = EraConfig::defaults(ERA_HEAD_KIND_TOKEN).unwrap();
    if inp.sane_config {
        cfg.k = 1.0 + inp.k.abs().min(10.0) + 1e-3;
        let (a, b) = (inp.omega_low.abs().min(10.0), inp.omega_high.abs().min(10.0));
        cfg.omega_low = a.min(b);
        cfg.omega_high = a.max(b);
        cfg.top_fraction = (inp.rho.abs() % 1.0).max(1e-3);
        cfg.temperature = inp.temperature.abs().clamp(0.05, 20.0);
    } else {
        (cfg.k, cfg.omega_low, cfg.omega_high, cfg.top_fraction, cfg.temperature) =
            (inp.k, inp.omega_low, inp.omega_high, inp.rho, inp.temperature);
    }
    cfg.vocab_topk = (inp.topk % 8) as u64;
    cfg.advantage_scaling = inp.scaling as u32;
    let mut h = null_mut();
    let st = unsafe { era_head_new(&cfg, &mut h) };
    check_status(st);
    if st != EraStatus::Ok {
        return;
    }
    let (ni, vi) = (n as i64, v as i64);
    let mut outs = vec![vec![0.0f32; n]; 5];
    let mut tl = Tensor::contiguous(&mut logits, F32, &[ni, vi]);
    let mut ty = Tensor::contiguous(&mut labels, I64, &[ni]);
    let mut tr = Tensor::contiguous(&mut ids, I64, &[ni]);
    let mut ta = Tensor::contiguous(&mut adv, F32, &[ni]);
    let [o1, o2, o3, o4, o5] = &mut outs[..] else { unreachable!() };
    let (mut t1, mut t2, mut t3, mut t4, mut t5) = (
        Tensor::contiguous(o1, F32, &[ni]),
        Tensor::contiguous(o2, F32, &[ni]),
        Tensor::contiguous(o3, F32, &[ni]),
        Tensor::contiguous(o4, F32, &[ni]),
        Tensor::contiguous(o5, F32, &[ni]),
    );
    let st = unsafe { era_token_forward(h, tl.p(), ty.p(), tr.p(), ta.p(), t1.p(), t2.p(), t3.p(), t4.p(), t5.p(), null_mut()) };
    check_status(st);
    let valid_values = (0..n).all(|t| ids[t] == -1 || (ids[t] >= 0 && (0..vi).contains(&labels[t])));
    let valid_ids = ids.iter().all(|&r| r >= -1);
    assert_eq!(st == EraStatus::Ok, valid_values && valid_ids, "status {st:?}: {}", last_error());
    if st != EraStatus::Ok {
        unsafe { era_head_free(h) };
        return;
    }
    let (lp, en, sc) = (&outs[0], &outs[1], &outs[2]);
    let ln_v = (v as f32).ln();
    for t in 0..n {
        let row = &logits[t * v..(t + 1) * v];
        let (k, inv_k) = (cfg.k as f32, (1.0 / cfg.k) as f32);
        assert!(sc[t] == 1.0 || sc[t] == k || sc[t] == inv_k, "scale {}", sc[t]);
        let scaled_finite =
            row.iter().all(|x| (x * sc[t] / cfg.temperature as f32).is_finite() && (x / cfg.temperature as f32).is_finite());
        if ids[t] >= 0 && scaled_finite {
            assert!(lp[t] <= 1e-5 || lp[t] == -1e4, "logprob {} of row {row:?}", lp[t]);
            assert!(en[t] >= -1e-5 && en[t] <= ln_v + 1e-4, "entropy {} of row {row:?}", en[t]);
        }
    }
    let mut grad = vec![0.0f32; n * v];
    let mut tg = Tensor::contiguous(&mut grad, F32, &[ni, vi]);
    let mut tsc = Tensor::contiguous(&mut outs[2], F32, &[ni]);
    let st = unsafe { era_token_backward(h, tl.p(), ty.p(), tr.p(), tsc.p(), ta.p(), tg.p(), null_mut()) };
    check_status(st);
    let scales_ok = outs[2].iter().all(|s| s.is_finite() && *s > 0.0);
    assert_eq!(st == EraStatus::Ok, scales_ok, "{}", last_error());
    if st == EraStatus::Ok {
        // rows whose scaled logits are finite and whose factor scale/T * grad
        // stays well inside f32 get a finite gradient
        for t in 0..n {
            let row = &logits[t * v..(t + 1) * v];
            let sc = outs[2][t];
            let f = sc as f64 / cfg.temperature * adv[t] as f64;
            let finite = row.iter().all(|x| (x * sc / cfg.temperature as f32).is_finite() && (x / cfg.temperature as f32).is_finite());
            if finite && f.is_finite() && f.abs() < 1e30 {
                let g = &grad[t * v..(t + 1) * v];
                assert!(g.iter().all(|x| x.is_finite()), "gradient {g:?} of row {row:?} (scale {sc}, factor {f})");
            }
        }
    }
    unsafe { era_head_free(h) };
});
