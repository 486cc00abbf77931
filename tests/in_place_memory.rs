//! The token backward in place (`grad_logits_out` = `logits` through the C
//! ABI) allocates nothing of the logits' size, where any other overlap of
//! the output with the logits copies them first. Checked through the
//! process's peak resident memory (`VmHWM`, reset through
//! /proc/self/clear_refs), in a test binary of its own so that no other test
//! allocates meanwhile.

#![cfg(target_os = "linux")]

use std::ffi::c_void;
use std::ptr::null_mut;

use era::capi::*;

const F32: DLDataType = DLDataType { code: 2, bits: 32, lanes: 1 };
const I64: DLDataType = DLDataType { code: 0, bits: 64, lanes: 1 };
const CPU: DLDevice = DLDevice { device_type: 1, device_id: 0 };

fn tensor(data: *mut c_void, dtype: DLDataType, shape: &mut [i64]) -> DLTensor {
    DLTensor { data, device: CPU, ndim: shape.len() as i32, dtype, shape: shape.as_mut_ptr(), strides: null_mut(), byte_offset: 0 }
}

/// Peak resident memory in bytes since the last reset, or None where the
/// kernel does not report or reset it.
fn peak() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: usize = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[test]
fn in_place_backward_allocates_nothing_of_the_logits_size() {
    let (n, v) = (512usize, 65536usize); // 128 MiB of f32 logits
    let bytes = n * v * 4;
    let mut buf: Vec<f32> = (0..(n + 1) * v).map(|i| ((i % 977) as f32) * 0.01).collect();
    let mut labels: Vec<i64> = (0..n as i64).map(|t| t * 7 % v as i64).collect();
    let mut ids: Vec<i64> = (0..n as i64).map(|t| t / 8).collect();
    let mut scale = vec![1.0f32; n];
    let mut g = vec![1.0f32; n];
    let (mut b1, mut b2, mut b3, mut b4) = ([n as i64], [n as i64], [n as i64], [n as i64]);
    let ty = tensor(labels.as_mut_ptr().cast(), I64, &mut b1);
    let tr = tensor(ids.as_mut_ptr().cast(), I64, &mut b2);
    let ts = tensor(scale.as_mut_ptr().cast(), F32, &mut b3);
    let tg = tensor(g.as_mut_ptr().cast(), F32, &mut b4);
    let mut c = unsafe { std::mem::zeroed::<EraConfig>() };
    assert_eq!(unsafe { era_config_default(ERA_HEAD_KIND_TOKEN, &mut c) }, EraStatus::Ok);
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&c, &mut h) }, EraStatus::Ok);
    let p = buf.as_mut_ptr();
    let grow = |out_offset: usize| -> Option<usize> {
        let (mut sh, mut sh2) = ([n as i64, v as i64], [n as i64, v as i64]);
        let x = tensor(p.cast(), F32, &mut sh);
        let mut o = tensor(unsafe { p.add(out_offset) }.cast(), F32, &mut sh2);
        if !reset_peak() {
            return None;
        }
        let before = peak()?;
        let st = unsafe { era_token_backward(h, &x, &ty, &tr, &ts, &tg, &mut o, null_mut()) };
        assert_eq!(st, EraStatus::Ok);
        Some(peak()?.saturating_sub(before))
    };
    let (Some(in_place), Some(shifted)) = (grow(0), grow(v)) else {
        eprintln!("SKIPPED: this kernel does not report or reset the peak resident memory");
        unsafe { era_head_free(h) };
        return;
    };
    unsafe { era_head_free(h) };
    // the overlapping output copies the logits: the peak grows by their size
    assert!(shifted >= bytes / 2, "the shifted output grew the peak by only {shifted} bytes; the check cannot see a copy");
    assert!(in_place < bytes / 8, "in place grew the peak by {in_place} bytes (logits: {bytes})");
    eprintln!("peak growth: in place {in_place} bytes, overlapping output {shifted} bytes, logits {bytes} bytes");
}
