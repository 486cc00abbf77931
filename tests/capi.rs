//! The C ABI driven from Rust as a C caller would: descriptors, layouts,
//! statuses and messages, JSON and configuration, thread counts. The heads'
//! calls are in capi_heads.rs, the cases found by fuzzing in
//! capi_fuzz_regressions.rs.

use std::ptr::{null, null_mut};

use era::capi::*;

mod capi_helpers;
use capi_helpers::*;

#[test]
fn strided_negative_and_in_place_layouts_agree() {
    let h = gaussian(3, -1.5);
    let want = [-1.009114, -0.225164, -4.522537];
    // contiguous
    let mut z = [0.5, -1.0, 2.0];
    let mut o = [0.0; 3];
    assert_eq!(forward(h, &mut T::f64(&mut z, &[1, 3]), &mut T::f64(&mut o, &[1, 3])), EraStatus::Ok);
    for (a, b) in o.iter().zip(want) {
        assert!((a - b).abs() < 1e-6);
    }
    // column-major [3 rows of the same z] with strides (1, 3)
    let mut zc = [0.5, 0.5, 0.5, -1.0, -1.0, -1.0, 2.0, 2.0, 2.0];
    let mut oc = [0.0; 9];
    let mut zt = T::new(zc.as_mut_ptr() as _, F64, &[3, 3], Some(&[1, 3]));
    let mut ot = T::new(oc.as_mut_ptr() as _, F64, &[3, 3], Some(&[1, 3]));
    assert_eq!(forward(h, &mut zt, &mut ot), EraStatus::Ok);
    for r in 0..3 {
        for j in 0..3 {
            assert!((oc[r + 3 * j] - want[j]).abs() < 1e-6);
        }
    }
    // negative stride: z reversed in memory
    let mut zr = [2.0, -1.0, 0.5];
    let mut zt = T::new(unsafe { zr.as_mut_ptr().add(2) } as _, F64, &[3], Some(&[-1]));
    let mut o1 = [0.0; 3];
    assert_eq!(forward(h, &mut zt, &mut T::f64(&mut o1, &[3])), EraStatus::Ok);
    for (a, b) in o1.iter().zip(want) {
        assert!((a - b).abs() < 1e-6);
    }
    // byte_offset + every other element
    let mut zs = [9.0, 0.5, 9.0, -1.0, 9.0, 2.0];
    let mut zt = T::new(zs.as_mut_ptr() as _, F64, &[3], Some(&[2]));
    zt.t.byte_offset = 8;
    let mut o2 = [0.0; 3];
    assert_eq!(forward(h, &mut zt, &mut T::f64(&mut o2, &[3])), EraStatus::Ok);
    assert_eq!(o1, o2);
    // in place: out aliases z
    let mut zi = [0.5, -1.0, 2.0];
    let p = zi.as_mut_ptr();
    let mut a = T::new(p as _, F64, &[3], None);
    let mut b = T::new(p as _, F64, &[3], None);
    assert_eq!(forward(h, &mut a, &mut b), EraStatus::Ok);
    assert_eq!(zi, o1);
    // zero rows
    let mut e = T::new(null_mut(), F64, &[0, 3], None);
    let mut e2 = T::new(null_mut(), F64, &[0, 3], None);
    assert_eq!(forward(h, &mut e, &mut e2), EraStatus::Ok);
    unsafe { era_head_free(h) };
}

#[test]
fn descriptor_errors_have_statuses_and_messages() {
    let h = gaussian(3, -1.5);
    let mut z = [0.5f64, -1.0, 2.0, 0.0];
    let mut o = [0.0f64; 4];
    let zp = z.as_mut_ptr();
    let op = o.as_mut_ptr();
    let mut good_z = T::f64(&mut z[..3], &[3]);
    let mut good_o = T::f64(&mut o[..3], &[3]);
    let cases: Vec<(Box<T>, EraStatus, &str)> = vec![
        (T::new(zp as _, F64, &[4], None), EraStatus::InvalidShape, "out has shape [3], but z has shape [4]"),
        (T::new(zp as _, F32, &[3], None), EraStatus::UnsupportedDtype, "float32"),
        (T::new(zp as _, I64, &[3], None), EraStatus::UnsupportedDtype, "int64"),
        (T::new(zp as _, DLDataType { code: 2, bits: 64, lanes: 2 }, &[3], None), EraStatus::UnsupportedDtype, "float64x2"),
        (T::new(zp as _, DLDataType { code: 2, bits: 16, lanes: 1 }, &[3], None), EraStatus::UnsupportedDtype, "float16"),
        (T::new(zp as _, F64, &[], None), EraStatus::InvalidShape, "rank"),
        (T::new(zp as _, F64, &[-3], None), EraStatus::InvalidShape, "negative"),
        (T::new(null_mut(), F64, &[3], None), EraStatus::InvalidLayout, "NULL data"),
        (T::new((zp as *mut u8).wrapping_add(1) as _, F64, &[3], None), EraStatus::InvalidLayout, "aligned"),
        (T::new(zp as _, F64, &[i64::MAX, 3], None), EraStatus::InvalidShape, "more elements"),
        (T::new(zp as _, F64, &[2, 3], Some(&[i64::MAX / 2, 1])), EraStatus::InvalidLayout, "overflow"),
    ];
    for (mut zt, want, msg) in cases {
        assert_eq!(forward(h, &mut zt, &mut good_o), want, "{msg}");
        assert!(last_error().contains(msg), "{msg}: {}", last_error());
    }
    // devices
    let mut cuda = T::f64(&mut z[..3], &[3]);
    cuda.t.device = DLDevice { device_type: 2, device_id: 0 };
    assert_eq!(forward(h, &mut cuda, &mut good_o), EraStatus::UnsupportedDevice);
    // a CPU build has no CUDA path; a CUDA build rejects host and device tensors mixed
    let want = if cfg!(feature = "cuda") { "same device" } else { "no CUDA support" };
    assert!(last_error().contains(want), "{}", last_error());
    cuda.t.device = DLDevice { device_type: 999, device_id: 0 };
    assert_eq!(forward(h, &mut cuda, &mut good_o), EraStatus::UnsupportedDevice);
    // outputs: wrong shape, broadcast, mixed dtype, NULL shape
    assert_eq!(forward(h, &mut good_z, &mut T::new(op as _, F64, &[1, 3], None)), EraStatus::InvalidShape);
    assert_eq!(
        forward(h, &mut T::new(zp as _, F64, &[2, 3], Some(&[0, 1])), &mut T::new(op as _, F64, &[2, 3], Some(&[0, 1]))),
        EraStatus::InvalidLayout
    );
    assert!(last_error().contains("more than once"));
    let mut o32 = [0f32; 3];
    assert_eq!(forward(h, &mut good_z, &mut T::new(o32.as_mut_ptr() as _, F32, &[3], None)), EraStatus::UnsupportedDtype);
    let mut ns = T::f64(&mut o[..3], &[3]);
    ns.t.shape = null_mut();
    assert_eq!(forward(h, &mut good_z, &mut ns), EraStatus::InvalidShape);
    // nulls
    assert_eq!(unsafe { era_head_forward(null(), good_z.p(), good_o.p(), null_mut()) }, EraStatus::NullPointer);
    assert_eq!(unsafe { era_head_forward(h, null(), good_o.p(), null_mut()) }, EraStatus::NullPointer);
    assert_eq!(unsafe { era_head_forward(h, good_z.p(), null_mut(), null_mut()) }, EraStatus::NullPointer);
    assert!(last_error().contains("out"));
    unsafe { era_head_free(h) };
}

#[test]
fn json_and_config_functions() {
    let h = gaussian(3, -1.5);
    let mut n = 0usize;
    assert_eq!(unsafe { era_head_to_json(h, null_mut(), 0, &mut n) }, EraStatus::Ok);
    let mut buf = vec![0u8; n + 1];
    assert_eq!(unsafe { era_head_to_json(h, buf.as_mut_ptr() as _, n, &mut n) }, EraStatus::BufferTooSmall);
    assert_eq!(unsafe { era_head_to_json(h, buf.as_mut_ptr() as _, n + 1, &mut n) }, EraStatus::Ok);
    let mut back = null_mut();
    assert_eq!(unsafe { era_head_from_json(buf.as_ptr() as _, &mut back) }, EraStatus::Ok);
    let mut c = unsafe { std::mem::zeroed::<EraConfig>() };
    c.struct_size = std::mem::size_of::<EraConfig>() as u32;
    assert_eq!(unsafe { era_head_config(back, &mut c) }, EraStatus::Ok);
    assert_eq!((c.kind, c.dim, c.target_entropy, c.log_std_min), (ERA_HEAD_KIND_GAUSSIAN, 3, -1.5, -5.0));
    let bad = b"{\"kind\": \xff}\0";
    let mut out = null_mut();
    assert_eq!(unsafe { era_head_from_json(bad.as_ptr() as _, &mut out) }, EraStatus::Json);
    assert!(out.is_null(), "output parameters are written only on success");
    unsafe {
        era_head_free(h);
        era_head_free(back);
        era_head_free(null_mut());
    }
}

#[test]
fn num_threads_is_configured_reported_and_saved() {
    let mut c = EraConfig::defaults(ERA_HEAD_KIND_SOFTMAX).unwrap();
    c.num_classes = 4;
    c.target_entropy = 0.6;
    c.num_threads = 2;
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&c, &mut h) }, EraStatus::Ok);
    let mut back = EraConfig::defaults(ERA_HEAD_KIND_TOKEN).unwrap();
    assert_eq!(unsafe { era_head_config(h, &mut back) }, EraStatus::Ok);
    assert_eq!((back.kind, back.num_threads), (ERA_HEAD_KIND_SOFTMAX, 2));
    let mut n = 0usize;
    let mut buf = vec![0u8; 4096];
    assert_eq!(unsafe { era_head_to_json(h, buf.as_mut_ptr() as _, buf.len(), &mut n) }, EraStatus::Ok);
    let json = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(json.contains("\"num_threads\": 2"), "{json}");
    let mut h2 = null_mut();
    assert_eq!(unsafe { era_head_from_json(buf.as_ptr() as _, &mut h2) }, EraStatus::Ok);
    assert_eq!(unsafe { era_head_config(h2, &mut back) }, EraStatus::Ok);
    assert_eq!(back.num_threads, 2);
    unsafe {
        era_head_free(h);
        era_head_free(h2);
    }
}

/// Ranks above the four a descriptor keeps in place (up to the largest, 32)
/// give the results of rank 2, with strides given or implied, into outputs of
/// any of those ranks; rank 33 is refused.
#[test]
fn every_rank_up_to_the_largest_gives_the_rank_two_results() {
    let h = gaussian(3, -1.5);
    let mut z = [0.5f64, -1.0, 2.0, 0.25, 1.5, -0.5];
    let mut want = [0.0f64; 6];
    let zp = z.as_mut_ptr();
    assert_eq!(forward(h, &mut T::new(zp as _, F64, &[2, 3], None), &mut T::f64(&mut want, &[2, 3])), EraStatus::Ok);
    for rank in [3usize, 4, 5, 8, 9, 17, 32] {
        // [2, 1, ..., 1, 3]
        let mut shape = vec![1i64; rank];
        shape[0] = 2;
        shape[rank - 1] = 3;
        let mut strides = vec![3i64; rank];
        strides[rank - 1] = 1;
        for given in [None, Some(&strides[..])] {
            let mut o = [0.0f64; 6];
            let op = o.as_mut_ptr();
            let status = forward(h, &mut T::new(zp as _, F64, &shape, given), &mut T::new(op as _, F64, &shape, given));
            assert_eq!(status, EraStatus::Ok, "rank {rank}: {}", last_error());
            assert_eq!(o, want, "rank {rank}");
        }
    }
    let shape = vec![1i64; 33];
    let mut o = [0.0f64; 1];
    let op = o.as_mut_ptr();
    assert_eq!(forward(h, &mut T::new(zp as _, F64, &shape, None), &mut T::new(op as _, F64, &shape, None)), EraStatus::InvalidShape);
    assert!(last_error().contains("rank 33"), "{}", last_error());
    unsafe { era_head_free(h) };
}
