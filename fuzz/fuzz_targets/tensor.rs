//! Random tensor descriptors (ranks 0..9, overflowing shapes, zero-sized
//! dims, negative and non-contiguous strides, byte offsets, unknown dtypes
//! and devices, mismatched outputs) against every compute entry point.
//!
//! Descriptors that address memory outside the harness's buffer are only
//! passed when the documented rules force a rejection (then the call must
//! fail without touching memory); all others point inside the buffer.
#![no_main]

#[path = "common.rs"]
mod common;
use arbitrary::Arbitrary;
use common::*;
use libfuzzer_sys::fuzz_target;
use std::ptr::null_mut;

const BUF_BYTES: usize = 1 << 14;

#[derive(Arbitrary, Debug)]
struct Desc {
    ndim: u8,
    dims: [i16; 9],
    huge_dim: Option<(u8, i64)>,
    strides: Option<[i16; 9]>,
    huge_stride: Option<(u8, i64)>,
    offset_elems: u16,
    misalign: u8,
    dtype: u8,
    device: u8,
    null_data: bool,
    null_shape: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    op: u8,
    head: u8,
    dim: u8,
    tensors: [Desc; 4],
    fill: [f32; 8],
}

struct Built {
    t: Box<Tensor>,
    /// the documented rules reject it for sure
    must_reject: bool,
    /// every addressed byte lies inside the buffer
    inside: bool,
}

fn build(d: &Desc, buf: *mut u8) -> Built {
    let ndim = (d.ndim % 10) as usize;
    let mut shape: Vec<i64> = d.dims[..ndim.min(9)].iter().map(|&v| if v >= 0 { (v % 6) as i64 } else { v as i64 }).collect();
    if let Some((i, v)) = d.huge_dim {
        if ndim > 0 {
            shape[i as usize % ndim] = v;
        }
    }
    let strides: Option<Vec<i64>> = d.strides.map(|s| {
        let mut s: Vec<i64> = s[..ndim].iter().map(|&v| (v % 64) as i64).collect();
        if let Some((i, v)) = d.huge_stride {
            if ndim > 0 {
                s[i as usize % ndim] = v;
            }
        }
        s
    });
    let (dtype, size) = match d.dtype % 8 {
        0 | 1 => (F32, 4usize),
        2 | 3 => (F64, 8),
        4 => (DLDataType { code: 2, bits: 16, lanes: 1 }, 2),
        5 => (I64, 8),
        6 => (DLDataType { code: 0, bits: 32, lanes: 1 }, 4),
        _ => (DLDataType { code: d.misalign % 7, bits: d.dims[0] as u8, lanes: d.dims[1] as u16 }, 8),
    };
    let device = match d.device % 8 {
        0..=4 => 1,
        5 => 2,
        6 => 3,
        _ => d.device as i32 * 7,
    };
    let misalign = (d.misalign % 4 == 0) as usize * (d.misalign as usize % size.max(1));
    let offset = (d.offset_elems as usize % 512) * size + misalign;
    let data = if d.null_data { null_mut() } else { buf };
    let mut t = Tensor::new(data as *mut _, dtype, shape.clone(), strides.clone());
    t.t.device = DLDevice { device_type: device, device_id: 0 };
    t.t.byte_offset = offset as u64;
    if d.null_shape && ndim > 0 {
        t.t.shape = null_mut();
    }
    // the harness's own reading of the rules, in i128
    let negative = shape.iter().any(|&v| v < 0);
    let numel: i128 = shape.iter().fold(1i128, |a, &v| a.saturating_mul(v as i128));
    let bad_dtype = d.dtype % 8 == 7
        && !matches!((dtype.code, dtype.bits, dtype.lanes), (0, 32, 1) | (0, 64, 1) | (2, 16, 1) | (2, 32, 1) | (2, 64, 1) | (4, 16, 1));
    let bad_device = !matches!(device, 1 | 3);
    let too_many = numel.unsigned_abs() > (isize::MAX as u128) / size as u128;
    let must_reject = negative || bad_dtype || bad_device || too_many || (d.null_shape && ndim > 0) || (d.null_data && numel > 0);
    let inside = if numel == 0 || negative {
        true
    } else {
        let st: Vec<i128> = match &strides {
            Some(s) => s.iter().map(|&v| v as i128).collect(),
            None => {
                let mut acc = 1i128;
                let mut v = vec![0i128; ndim];
                for i in (0..ndim).rev() {
                    v[i] = acc;
                    acc = acc.saturating_mul(shape[i].max(1) as i128);
                }
                v
            }
        };
        let (mut lo, mut hi) = (0i128, 0i128);
        for (&n, &s) in shape.iter().zip(&st) {
            if n > 1 {
                let span = (n as i128 - 1).saturating_mul(s);
                if span < 0 {
                    lo = lo.saturating_add(span)
                } else {
                    hi = hi.saturating_add(span)
                }
            }
        }
        let lo_b = (offset as i128).saturating_add(lo.saturating_mul(size as i128));
        let hi_b = (offset as i128).saturating_add((hi.saturating_add(1)).saturating_mul(size as i128));
        lo_b >= 0 && hi_b <= BUF_BYTES as i128
    };
    Built { t, must_reject, inside }
}

fuzz_target!(|inp: Input| {
    let mut bufs: Vec<Vec<u64>> = (0..4).map(|_| vec![0u64; BUF_BYTES / 8]).collect();
    for (i, b) in bufs.iter_mut().enumerate() {
        for (j, w) in b.iter_mut().enumerate() {
            let v = inp.fill[(i + j) % 8] as f64 * (1.0 + j as f64 * 1e-3);
            *w = if j % 2 == 0 { v.to_bits() } else { ((v as f32).to_bits() as u64) | (((v as f32 * 0.5).to_bits() as u64) << 32) };
        }
    }
    let mut built: Vec<Built> = inp.tensors.iter().zip(bufs.iter_mut()).map(|(d, b)| build(d, b.as_mut_ptr() as *mut u8)).collect();
    // a call whose every descriptor is either inside its buffer or certainly rejected
    let safe = built.iter().all(|b| b.inside || b.must_reject);
    let some_reject = built.iter().any(|b| b.must_reject);
    if !safe {
        return;
    }
    // only some of the four tensors take part in each op; require the rule for those
    let dim = (inp.dim % 8) as u64 + 1;
    let mut cfg: EraConfig = EraConfig::defaults(1 + (inp.head % 3) as u32).unwrap();
    cfg.dim = dim;
    cfg.num_classes = dim.max(2);
    cfg.target_entropy = if cfg.kind == ERA_HEAD_KIND_SOFTMAX { 0.3 } else { -(dim as f64) };
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&cfg, &mut h) }, EraStatus::Ok);
    let [a, b, c, d] = &mut built[..] else { unreachable!() };
    let (ta, tb, tc, td) = (a.t.p(), b.t.p(), c.t.p(), d.t.p());
    let used_reject = |k: &[bool]| k.iter().any(|&x| x);
    let st = unsafe {
        match inp.op % 7 {
            0 => era_head_forward(h, ta, tb, null_mut()),
            1 => era_head_backward(h, ta, tb, tc, null_mut()),
            2 => era_head_entropy(h, ta, tb, null_mut()),
            3 => era_gaussian_forward_delta(h, ta, tb, tc, null_mut()),
            4 => era_gaussian_backward_delta(h, ta, tb, tc, td, null_mut(), null_mut()),
            5 => era_truncated_normal_entropy(ta, tb, -1.0, 1.0, tc, null_mut()),
            _ => era_token_backward(h, ta, tb, tc, td, ta, tb, null_mut()),
        }
    };
    check_status(st);
    let involved: Vec<bool> = match inp.op % 7 {
        0 | 2 => vec![a.must_reject, b.must_reject],
        1 | 3 | 5 => vec![a.must_reject, b.must_reject, c.must_reject],
        _ => vec![a.must_reject, b.must_reject, c.must_reject, d.must_reject],
    };
    if some_reject && used_reject(&involved) {
        assert_ne!(st, EraStatus::Ok, "a descriptor the rules reject was accepted");
    }
    unsafe { era_head_free(h) };
});
