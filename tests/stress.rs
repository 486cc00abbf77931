//! Concurrency stress through the C ABI: 8 threads share one Gaussian head,
//! one softmax head and one token head; each makes 10^4 forward/backward
//! calls while other calls update `delta` and save the head as JSON. Under Miri
//! (which explores thread interleavings and checks every access, slowly): 4
//! threads, 2 calls each.
//!
//! Semantics checked: forward/backward are pure functions of their inputs
//! (bit-identical to single-threaded results); `delta` after the run equals
//! the serial sum of all SGD updates (every update adds the same increment, so
//! the order does not matter); every JSON save parses and holds a `delta` that
//! was reached by some prefix of the updates.

use era::capi::*;
use std::ffi::c_void;
use std::ptr::{null_mut, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};

const THREADS: usize = if cfg!(miri) { 4 } else { 8 };
const CALLS: usize = if cfg!(miri) { 20 } else { 10_000 };
const F64: DLDataType = DLDataType { code: 2, bits: 64, lanes: 1 };
const I64: DLDataType = DLDataType { code: 0, bits: 64, lanes: 1 };

fn tensor(data: *mut c_void, dtype: DLDataType, shape: &mut [i64]) -> DLTensor {
    DLTensor {
        data,
        device: DLDevice { device_type: 1, device_id: 0 },
        ndim: shape.len() as i32,
        dtype,
        shape: shape.as_mut_ptr(),
        strides: null_mut(),
        byte_offset: 0,
    }
}

struct Handle(NonNull<EraHead>);
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn new_head(cfg: &EraConfig) -> Handle {
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(cfg, &mut h) }, EraStatus::Ok);
    Handle(NonNull::new(h).unwrap())
}

/// One round of pure calls; returns every output concatenated.
fn pure_round(g: &Handle, s: &Handle, t: &Handle, seed: usize) -> Vec<f64> {
    let mut z: Vec<f64> = (0..24).map(|i| ((i * 7 + seed * 13) % 17) as f64 / 3.0 - 2.5).collect();
    let mut gr: Vec<f64> = (0..24).map(|i| ((i * 5 + seed) % 11) as f64 / 5.0 - 1.0).collect();
    let mut out = vec![0.0; 24];
    let mut dz = vec![0.0; 24];
    let mut delta = [0.25 * (seed % 4) as f64];
    let mut sh = [4i64, 6];
    let mut sh0: [i64; 0] = [];
    let tz = tensor(z.as_mut_ptr() as _, F64, &mut sh);
    let mut sh1 = sh;
    let tg = tensor(gr.as_mut_ptr() as _, F64, &mut sh1);
    let mut sh2 = sh;
    let mut to = tensor(out.as_mut_ptr() as _, F64, &mut sh2);
    let mut sh3 = sh;
    let mut td = tensor(dz.as_mut_ptr() as _, F64, &mut sh3);
    let tdelta = tensor(delta.as_mut_ptr() as _, F64, &mut sh0);
    let mut res = Vec::new();
    unsafe {
        let (g, s, t) = (g.0.as_ptr(), s.0.as_ptr(), t.0.as_ptr());
        assert_eq!(era_gaussian_forward_delta(g, &tz, &tdelta, &mut to, null_mut()), EraStatus::Ok);
        res.extend_from_slice(&out);
        assert_eq!(era_gaussian_backward_delta(g, &tz, &tdelta, &tg, &mut td, null_mut(), null_mut()), EraStatus::Ok);
        res.extend_from_slice(&dz);
        assert_eq!(era_head_forward(s, &tz, &mut to, null_mut()), EraStatus::Ok);
        res.extend_from_slice(&out);
        assert_eq!(era_head_backward(s, &tz, &tg, &mut td, null_mut()), EraStatus::Ok);
        res.extend_from_slice(&dz);
        // token head over the same 4 x 6 logits: 4 tokens, 2 responses
        let mut labels = [1i64, 5, 0, 3];
        let mut ids = [0i64, 1, 0, -1];
        let mut adv = [1.0, 1.0, -1.0, 1.0];
        let mut outs = [[0.0f64; 4]; 4];
        let mut n = [4i64];
        let (mut na, mut nb, mut nc) = (n, n, n);
        let ty = tensor(labels.as_mut_ptr() as _, I64, &mut na);
        let tr = tensor(ids.as_mut_ptr() as _, I64, &mut nb);
        let ta = tensor(adv.as_mut_ptr() as _, F64, &mut nc);
        let [a, b, c, d] = &mut outs;
        let (mut n1, mut n2, mut n3, mut n4) = (n, n, n, n);
        let mut o1 = tensor(a.as_mut_ptr() as _, F64, &mut n1);
        let mut o2 = tensor(b.as_mut_ptr() as _, F64, &mut n2);
        let mut o3 = tensor(c.as_mut_ptr() as _, F64, &mut n3);
        let mut o4 = tensor(d.as_mut_ptr() as _, F64, &mut n4);
        assert_eq!(era_token_forward(t, &tz, &ty, &tr, &ta, &mut o1, &mut o2, &mut o3, &mut o4, null_mut(), null_mut()), EraStatus::Ok);
        let tsc = tensor(c.as_mut_ptr() as _, F64, &mut n);
        assert_eq!(era_token_backward(t, &tz, &ty, &tr, &tsc, &ta, &mut td, null_mut()), EraStatus::Ok);
        res.extend(outs.iter().flatten());
        res.extend_from_slice(&dz);
    }
    res
}

#[test]
#[cfg_attr(miri, ignore = "too slow under Miri; stress_small runs instead")]
fn eight_threads_share_heads() {
    run(CALLS);
}

#[test]
fn stress_small() {
    run(if cfg!(miri) { 2 } else { 200 });
}

fn run(calls: usize) {
    let mut gc = EraConfig::defaults(ERA_HEAD_KIND_GAUSSIAN).unwrap();
    gc.dim = 6;
    gc.target_entropy = -6.0;
    gc.log_std_min = -5.0;
    gc.delta_optimizer = ERA_DELTA_OPTIMIZER_SGD;
    gc.delta_lr = 1.0 / 1024.0; // exact binary increments
    let mut sc = EraConfig::defaults(ERA_HEAD_KIND_SOFTMAX).unwrap();
    sc.num_classes = 6;
    sc.target_entropy = 1.0;
    let tc = EraConfig::defaults(ERA_HEAD_KIND_TOKEN).unwrap();
    let (g, s, t) = (new_head(&gc), new_head(&sc), new_head(&tc));
    let expected: Vec<Vec<f64>> = (0..16).map(|seed| pure_round(&g, &s, &t, seed)).collect();
    let updates = AtomicUsize::new(0);
    let increment = gc.delta_lr * 0.5; // each update reports an entropy 0.5 below target
    std::thread::scope(|scope| {
        for th in 0..THREADS {
            let (g, s, t, expected, updates) = (&g, &s, &t, &expected, &updates);
            scope.spawn(move || {
                let mut json = vec![0u8; 4096];
                for i in 0..calls {
                    let seed = (i + th) % 16;
                    let got = pure_round(g, s, t, seed);
                    assert!(got.iter().zip(&expected[seed]).all(|(a, b)| a.to_bits() == b.to_bits()), "thread {th} call {i}");
                    if i % 4 == th % 4 {
                        let mut d = 0.0;
                        assert_eq!(unsafe { era_head_update_delta(g.0.as_ptr(), -6.5, &mut d) }, EraStatus::Ok);
                        updates.fetch_add(1, Ordering::SeqCst);
                    }
                    if i % 64 == 0 {
                        let mut n = 0;
                        let st = unsafe { era_head_to_json(g.0.as_ptr(), json.as_mut_ptr() as _, json.len(), &mut n) };
                        assert_eq!(st, EraStatus::Ok);
                        let v: serde_json::Value = serde_json::from_slice(&json[..n]).unwrap();
                        let delta = v["delta_state"]["delta"].as_f64().unwrap();
                        let steps = delta / increment;
                        assert!(steps >= 0.0 && steps.fract() == 0.0, "saved delta {delta} is not a prefix sum");
                    }
                }
            });
        }
    });
    let mut d = f64::NAN;
    assert_eq!(unsafe { era_head_delta(g.0.as_ptr(), &mut d) }, EraStatus::Ok);
    assert_eq!(d, updates.load(Ordering::SeqCst) as f64 * increment);
    unsafe {
        era_head_free(g.0.as_ptr());
        era_head_free(s.0.as_ptr());
        era_head_free(t.0.as_ptr());
    }
}
