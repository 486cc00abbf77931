//! Cases of the C ABI found by fuzzing (fuzz/), driven from Rust as a C caller
//! would: empty tensors with long or overflowing extents, huge broadcast inputs,
//! absurd thread counts.

use std::ptr::null_mut;

use era::capi::*;

mod capi_helpers;
use capi_helpers::*;

/// Found by fuzzing (target `sequence`): an empty tensor with another axis
/// longer than one (shape [3, 0]) built a view with overlapping strides.
#[test]
fn empty_tensor_with_long_axis() {
    let h = gaussian(3, -1.5);
    for shape in [[3i64, 0], [0, 3]] {
        let mut z = [0.0f64; 1];
        let mut o = [0.0f64; 1];
        let s = if shape[1] == 0 { vec![3, 0] } else { vec![0, 3] };
        let mut zt = T::new(z.as_mut_ptr() as _, F64, &s, None);
        let mut ot = T::new(o.as_mut_ptr() as _, F64, &s, None);
        let st = forward(h, &mut zt, &mut ot);
        // [3, 0] has the wrong last dimension; [0, 3] is an empty batch
        assert_eq!(st, if shape[1] == 0 { EraStatus::InvalidShape } else { EraStatus::Ok });
        let mut st2 = T::new(z.as_mut_ptr() as _, F64, &[3, 0, 3], None);
        let mut ot2 = T::new(o.as_mut_ptr() as _, F64, &[3, 0, 3], None);
        assert_eq!(forward(h, &mut st2, &mut ot2), EraStatus::Ok);
    }
    unsafe { era_head_free(h) };
}

/// Found by fuzzing (target `tensor`): an empty tensor whose other extents
/// multiply past the address space must be rejected, not handed to ndarray.
#[test]
fn empty_tensor_with_overflowing_extents() {
    let h = gaussian(3, -1.5);
    let mut z = [0.0f64; 3];
    let mut o = [0.0f64; 3];
    let mut zt = T::new(z.as_mut_ptr() as _, F64, &[1 << 62, 0, 3], None);
    let mut ot = T::new(o.as_mut_ptr() as _, F64, &[1 << 62, 0, 3], None);
    assert_eq!(forward(h, &mut zt, &mut ot), EraStatus::InvalidShape);
    assert!(last_error().contains("more elements than memory"));
    unsafe { era_head_free(h) };
}

/// Found by fuzzing (target `tensor`): a broadcast input (stride 0) of huge
/// extent; the call must answer `ERA_STATUS_OUT_OF_MEMORY` (more than the
/// machine's memory, described) instead of aborting or reading it for hours.
#[test]
fn huge_broadcast_inputs_are_out_of_memory_not_an_abort() {
    let mut c = EraConfig::defaults(ERA_HEAD_KIND_TOKEN).unwrap();
    c.temperature = 1.0;
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&c, &mut h) }, EraStatus::Ok);
    let mut x = [0.5f64];
    let mut e = [0.0f64; 2];
    let v: i64 = 1 << 50;
    let mut xt = T::new(x.as_mut_ptr() as _, F64, &[2, v], Some(&[0, 0]));
    let mut et = T::f64(&mut e, &[2]);
    let st = unsafe { era_head_entropy(h, xt.p(), et.p(), null_mut()) };
    assert_eq!(st, EraStatus::OutOfMemory, "{}", last_error());
    assert!(last_error().contains("more than this machine's memory"), "{}", last_error());
    // an in-place call that must copy a huge broadcast input
    let g = gaussian(3, -1.5);
    let mut z = [0.1f64, 0.2, 0.3];
    let mut zt = T::new(z.as_mut_ptr() as _, F64, &[1 << 58, 3], Some(&[0, 1]));
    let mut ot = T::new(z.as_mut_ptr() as _, F64, &[1, 3], None);
    let mut dt = T::new(z.as_mut_ptr() as _, F64, &[1 << 58], Some(&[0]));
    let st = unsafe { era_gaussian_forward_delta(g, ot.p(), dt.p(), zt.p(), null_mut()) };
    assert_ne!(st, EraStatus::Ok);
    assert_ne!(st, EraStatus::Internal);
    unsafe {
        era_head_free(h);
        era_head_free(g);
    }
}

/// Found by fuzzing (target `config`): a thread count of billions asked for
/// scratch per thread; counts above the maximum are a config error.
#[test]
fn absurd_thread_counts_are_rejected() {
    let mut c = EraConfig::defaults(ERA_HEAD_KIND_GAUSSIAN).unwrap();
    c.dim = 3;
    c.target_entropy = -3.0;
    c.num_threads = 1025;
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&c, &mut h) }, EraStatus::InvalidConfig);
    assert!(last_error().contains("num_threads"));
    c.num_threads = 1024;
    assert_eq!(unsafe { era_head_new(&c, &mut h) }, EraStatus::Ok);
    let mut z = vec![0.5f64; 2 * 3];
    let mut o = vec![0.0f64; 2 * 3];
    assert_eq!(forward(h, &mut T::f64(&mut z, &[2, 3]), &mut T::f64(&mut o, &[2, 3])), EraStatus::Ok);
    unsafe { era_head_free(h) };
}
