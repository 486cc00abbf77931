//! Random `EraConfig` bytes (any struct_size, kind, NaN/inf/huge values):
//! construction must succeed or fail with a status; a constructed head must
//! compute, save and load.
#![no_main]

#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use std::ptr::null_mut;

fuzz_target!(|data: &[u8]| {
    let size = std::mem::size_of::<EraConfig>();
    // the caller's struct: the fuzz bytes, zero-padded, at least as long as its struct_size says
    let mut bytes = vec![0u8; size + 64];
    let n = data.len().min(bytes.len());
    bytes[..n].copy_from_slice(&data[..n]);
    let claimed = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if claimed > bytes.len() {
        bytes.resize(claimed.min(1 << 17), 0);
    }
    // keep the buffer 8-aligned for the f64 fields
    let mut aligned = vec![0u64; bytes.len().div_ceil(8)];
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), aligned.as_mut_ptr() as *mut u8, bytes.len()) };
    let cfg = aligned.as_ptr() as *const EraConfig;
    let mut h = null_mut();
    let st = unsafe { era_head_new(cfg, &mut h) };
    check_status(st);
    if st != EraStatus::Ok {
        assert!(h.is_null(), "out written on failure");
        return;
    }
    let mut c: EraConfig = unsafe { std::mem::zeroed() };
    c.struct_size = size as u32;
    assert_eq!(unsafe { era_head_config(h, &mut c) }, EraStatus::Ok);
    let width = match c.kind {
        ERA_HEAD_KIND_GAUSSIAN => c.dim,
        ERA_HEAD_KIND_SOFTMAX => c.num_classes,
        _ => 7,
    };
    if width <= 4096 {
        let w = width as i64;
        let mut z: Vec<f64> = (0..2 * w).map(|i| (i as f64 * 0.7).sin() * 3.0).collect();
        let mut o = vec![0.0; z.len()];
        let mut tz = Tensor::contiguous(&mut z, F64, &[2, w]);
        let mut to = Tensor::contiguous(&mut o, F64, &[2, w]);
        let st = unsafe { era_head_forward(h, tz.p(), to.p(), null_mut()) };
        check_status(st);
        if c.kind != ERA_HEAD_KIND_TOKEN {
            assert_eq!(st, EraStatus::Ok, "{}", last_error());
            if c.kind == ERA_HEAD_KIND_GAUSSIAN {
                // the entropy bound holds for the head's own delta
                let mut e = [0.0f64; 2];
                let mut te = Tensor::contiguous(&mut e, F64, &[2]);
                assert_eq!(unsafe { era_head_entropy(h, to.p(), te.p(), null_mut()) }, EraStatus::Ok);
                // the bound holds to float rounding, whose scale is D * eps * (|H0 + delta| + D*(|lmax| + L2PE))
                let target = c.target_entropy + c.delta;
                let d = c.dim as f64;
                let tol = 1e-9 * (1.0 + target.abs()) + 16.0 * d * f64::EPSILON * (target.abs() + d * (c.log_std_max.abs() + 3.0));
                for v in e {
                    assert!(v >= target - tol, "{v} < {} + {} (tol {tol})", c.target_entropy, c.delta);
                }
            }
        }
    }
    if c.kind == ERA_HEAD_KIND_GAUSSIAN {
        let v = f64::from_bits(u64::from_ne_bytes(bytes[8..16].try_into().unwrap()));
        let mut d = 0.0;
        check_status(unsafe { era_head_update_delta(h, v, &mut d) });
        check_status(unsafe { era_head_set_delta(h, -v) });
    }
    json_roundtrip(h);
    unsafe { era_head_free(h) };
});
