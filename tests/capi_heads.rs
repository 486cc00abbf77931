//! The heads' calls of the C ABI driven from Rust as a C caller would: the token
//! functions (in place and with overlapping outputs), the head-free entropies, and
//! the Gaussian delta calls' rows path against the general path.

use std::ffi::c_void;
use std::ptr::{null, null_mut};

use era::capi::*;

mod capi_helpers;
use capi_helpers::*;

#[test]
fn token_functions_through_the_abi() {
    let mut c = unsafe { std::mem::zeroed::<EraConfig>() };
    assert_eq!(unsafe { era_config_default(ERA_HEAD_KIND_TOKEN, &mut c) }, EraStatus::Ok);
    c.omega_low = 10.0;
    c.omega_high = 20.0;
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&c, &mut h) }, EraStatus::Ok);
    let mut logits = [0.0, 1.0, 2.0, 3.0, 0.5, 0.5, 0.0, -1.0, 1.0];
    let mut labels = [2i64, 0, -100];
    let mut ids = [0i64, 0, -1];
    let mut adv = [1.0, 1.0, 1.0];
    let mut bufs = [[0.0f64; 3]; 5];
    let [lp, en, sc, ao, re] = &mut bufs;
    let mut tl = T::f64(&mut logits, &[3, 3]);
    let mut ty = T::new(labels.as_mut_ptr() as _, I64, &[3], None);
    let mut tr = T::new(ids.as_mut_ptr() as _, I64, &[3], None);
    let mut ta = T::f64(&mut adv, &[3]);
    let (mut t1, mut t2, mut t3, mut t4, mut t5) =
        (T::f64(lp, &[3]), T::f64(en, &[3]), T::f64(sc, &[3]), T::f64(ao, &[3]), T::f64(re, &[3]));
    let st = unsafe { era_token_forward(h, tl.p(), ty.p(), tr.p(), ta.p(), t1.p(), t2.p(), t3.p(), t4.p(), t5.p(), null_mut()) };
    assert_eq!(st, EraStatus::Ok, "{}", last_error());
    assert_eq!(*sc, [2.0, 2.0, 1.0]); // sharpened, masked token keeps 1
    assert_eq!(*ao, [0.5, 0.5, 1.0]);
    assert_eq!(lp[2], 0.0);
    let want0 = 2.0 * 2.0 - (0.0f64.exp() + 2.0f64.exp() + 4.0f64.exp()).ln();
    assert!((lp[0] - want0).abs() < 1e-12);
    // outputs overlapping each other are rejected
    let mut t4b = T::f64(lp, &[3]);
    let st = unsafe { era_token_forward(h, tl.p(), ty.p(), tr.p(), ta.p(), t1.p(), t2.p(), t3.p(), t4b.p(), null_mut(), null_mut()) };
    assert_eq!(st, EraStatus::InvalidLayout);
    // backward on a gaussian head is the wrong kind; forward on the token head too
    let g = gaussian(3, -1.5);
    let mut grad = [0.0f64; 9];
    let mut tg = T::f64(&mut grad, &[3, 3]);
    let mut gl = T::f64(&mut adv, &[3]);
    let st = unsafe { era_token_backward(g, tl.p(), ty.p(), tr.p(), t3.p(), gl.p(), tg.p(), null_mut()) };
    assert_eq!(st, EraStatus::WrongHeadKind);
    assert_eq!(unsafe { era_head_forward(h, tl.p(), tg.p(), null_mut()) }, EraStatus::WrongHeadKind);
    let st = unsafe { era_token_backward(h, tl.p(), ty.p(), tr.p(), t3.p(), gl.p(), tg.p(), null_mut()) };
    assert_eq!(st, EraStatus::Ok, "{}", last_error());
    assert!(grad[6..].iter().all(|&v| v == 0.0), "masked token has zero gradient");
    unsafe { era_head_free(h) };
    unsafe { era_head_free(g) };
}

#[test]
fn head_free_entropies_match_the_heads_and_report_errors() {
    // Gaussian: sum(log_std) + 0.5*D*ln(2*pi*e), equal to the head's entropy of the same rows
    let mut ls = [-1.0, -0.5, 0.0, -2.0, -3.0, 0.25];
    let mut e = [0.0; 2];
    let st = unsafe { era_gaussian_entropy(T::f64(&mut ls, &[2, 3]).p(), T::f64(&mut e, &[2]).p(), null_mut()) };
    assert_eq!(st, EraStatus::Ok);
    assert!((e[0] - (-1.5 + 1.5 * ERA_LN_2PI_E)).abs() < 1e-12);
    assert!((e[1] - (-4.75 + 1.5 * ERA_LN_2PI_E)).abs() < 1e-12);
    let h = gaussian(3, -1.5);
    let mut e2 = [0.0; 2];
    assert_eq!(unsafe { era_head_entropy(h, T::f64(&mut ls, &[2, 3]).p(), T::f64(&mut e2, &[2]).p(), null_mut()) }, EraStatus::Ok);
    assert_eq!(e, e2);
    unsafe { era_head_free(h) };

    // categorical: H(softmax(z / T)), f32 logits into f64 entropies
    let mut z = [1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0];
    let mut hz = [0.0; 2];
    let zp = z.as_mut_ptr() as *mut c_void;
    let zt = || T::new(zp, F32, &[2, 3], None);
    let st = unsafe { era_softmax_entropy(zt().p(), 2.0, T::f64(&mut hz, &[2]).p(), null_mut()) };
    assert_eq!(st, EraStatus::Ok);
    let p: Vec<f64> = [0.5f64, 1.0, 1.5].iter().map(|v| v.exp()).collect();
    let s: f64 = p.iter().sum();
    let want: f64 = -p.iter().map(|v| v / s * (v / s).ln()).sum::<f64>();
    assert!((hz[0] - want).abs() < 1e-6, "{} vs {want}", hz[0]);
    assert!((hz[1] - 3f64.ln()).abs() < 1e-12);

    // errors: NULL, bad temperature, shape, dtype
    assert_eq!(unsafe { era_gaussian_entropy(null(), T::f64(&mut e, &[2]).p(), null_mut()) }, EraStatus::NullPointer);
    assert!(last_error().contains("log_std"));
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let st = unsafe { era_softmax_entropy(zt().p(), t, T::f64(&mut hz, &[2]).p(), null_mut()) };
        assert_eq!(st, EraStatus::InvalidArgument, "temperature {t}");
        assert!(last_error().contains("temperature"));
    }
    let st = unsafe { era_gaussian_entropy(T::f64(&mut ls, &[2, 3]).p(), T::f64(&mut e, &[1, 2]).p(), null_mut()) };
    assert_eq!(st, EraStatus::InvalidShape);
    let mut ls32 = [0.0f32; 6];
    let st = unsafe { era_gaussian_entropy(T::new(ls32.as_mut_ptr() as _, F32, &[2, 3], None).p(), T::f64(&mut e, &[2]).p(), null_mut()) };
    assert_eq!(st, EraStatus::UnsupportedDtype);
    let mut ids = [0i64; 2];
    let st = unsafe { era_softmax_entropy(zt().p(), 1.0, T::new(ids.as_mut_ptr() as _, I64, &[2], None).p(), null_mut()) };
    assert_eq!(st, EraStatus::UnsupportedDtype);
    // a dtype that is not a float: the message names it and the dtypes the operation takes
    let mut ints = [0i64; 6];
    let st =
        unsafe { era_softmax_entropy(T::new(ints.as_mut_ptr() as _, I64, &[2, 3], None).p(), 1.0, T::f64(&mut hz, &[2]).p(), null_mut()) };
    assert_eq!(st, EraStatus::UnsupportedDtype);
    assert!(last_error().contains("int64; this operation takes float32, float64, bfloat16 or float16"), "{}", last_error());
    let st = unsafe { era_gaussian_entropy(T::new(ints.as_mut_ptr() as _, I64, &[2, 3], None).p(), T::f64(&mut e, &[2]).p(), null_mut()) };
    assert_eq!(st, EraStatus::UnsupportedDtype);
    assert!(last_error().contains("int64; this operation takes float32 or float64"), "{}", last_error());
}

/// The token backward with its gradient written over the logits (the same
/// tensor, however its address is split between `data` and `byte_offset`)
/// equals the backward into a separate buffer; an output that overlaps the
/// logits in any other way is still correct (the logits are copied first);
/// an invalid call in place leaves the logits as they were.
#[test]
fn token_backward_in_place_and_overlapping_outputs() {
    let mut c = unsafe { std::mem::zeroed::<EraConfig>() };
    assert_eq!(unsafe { era_config_default(ERA_HEAD_KIND_TOKEN, &mut c) }, EraStatus::Ok);
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&c, &mut h) }, EraStatus::Ok);
    let (n, v) = (4usize, 40usize);
    let logits: Vec<f32> = (0..n * v).map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0).collect();
    let mut labels = [3i64, 0, 39, 7];
    let mut ids = [0i64, 0, -1, 1];
    let mut scale = [2.0f64, 1.0, 1.0, 0.5];
    let mut g = [1.0f64, -0.5, 2.0, 0.25];
    let (sh, bsh) = ([n as i64, v as i64], [n as i64]);
    let mut ty = T::new(labels.as_mut_ptr() as _, I64, &bsh, None);
    let mut tr = T::new(ids.as_mut_ptr() as _, I64, &bsh, None);
    let mut ts = T::f64(&mut scale, &bsh);
    let mut tg = T::f64(&mut g, &bsh);
    let f32t = |p: *mut f32, off: u64| {
        let mut t = T::new(p as *mut c_void, F32, &sh, None);
        t.t.byte_offset = off;
        t
    };
    // separate output
    let mut x = logits.clone();
    let mut want = vec![0.0f32; n * v];
    let (mut tx, mut tw) = (f32t(x.as_mut_ptr(), 0), f32t(want.as_mut_ptr(), 0));
    let st = unsafe { era_token_backward(h, tx.p(), ty.p(), tr.p(), ts.p(), tg.p(), tw.p(), null_mut()) };
    assert_eq!(st, EraStatus::Ok, "{}", last_error());
    assert_eq!(x, logits, "the logits are an input");
    assert!(want[2 * v..3 * v].iter().all(|&e| e == 0.0), "masked token");
    // in place, the same descriptor twice and the address split differently
    for split in [false, true] {
        // with `split`, the logits start at element 1: `data` + 4 bytes for the
        // input, `data + 1` for the output
        let mut buf = vec![0.0f32; 1];
        buf.extend_from_slice(&logits);
        let p = buf.as_mut_ptr();
        let (mut tin, mut tout) =
            if split { (f32t(p, 4), f32t(unsafe { p.add(1) }, 0)) } else { (f32t(unsafe { p.add(1) }, 0), f32t(unsafe { p.add(1) }, 0)) };
        let st = unsafe { era_token_backward(h, tin.p(), ty.p(), tr.p(), ts.p(), tg.p(), tout.p(), null_mut()) };
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
        assert_eq!(&buf[1..], &want[..], "in place (split = {split})");
        assert_eq!(buf[0], 0.0, "written outside the tensor");
    }
    // an output one row past the logits in the same buffer: overlapping, not the same tensor
    let mut buf = vec![0.0f32; (n + 1) * v];
    buf[..n * v].copy_from_slice(&logits);
    let p = buf.as_mut_ptr();
    let (mut tin, mut tout) = (f32t(p, 0), f32t(unsafe { p.add(v) }, 0));
    let st = unsafe { era_token_backward(h, tin.p(), ty.p(), tr.p(), ts.p(), tg.p(), tout.p(), null_mut()) };
    assert_eq!(st, EraStatus::Ok, "{}", last_error());
    assert_eq!(&buf[v..], &want[..], "overlapping output");
    // in place with an invalid scale: rejected, nothing written
    let mut bad = [2.0f64, 1.0, 1.0, 0.0];
    let mut tb = T::f64(&mut bad, &bsh);
    let mut buf = logits.clone();
    let (mut tin, mut tout) = (f32t(buf.as_mut_ptr(), 0), f32t(buf.as_mut_ptr(), 0));
    let st = unsafe { era_token_backward(h, tin.p(), ty.p(), tr.p(), tb.p(), tg.p(), tout.p(), null_mut()) };
    assert_eq!(st, EraStatus::InvalidValue);
    assert_eq!(buf, logits, "an invalid in-place call wrote the logits");
    unsafe { era_head_free(h) };
}

/// f32 calls of `era_gaussian_forward_delta` / `era_gaussian_backward_delta`
/// whose rows can be read where they lie, with one delta and contiguous
/// outputs, take the head's rows path (no array views); every other call
/// takes the general path. Both give the same bits, and the rows path reports
/// the same errors.
#[test]
fn gaussian_delta_rows_path_matches_the_general_path() {
    let (d, rows) = (6usize, 37usize); // two whole groups of 16 rows and a partial one
    let g = gaussian(d as u64, -(d as f64));
    let wide = 2 * d + 1;
    // z as the columns [:, d+1:] of a [rows, 2d+1] array, its transpose stored
    // [d, rows] (rows not readable in place), and the gradient contiguous
    let mut storage: Vec<f32> = (0..rows * wide).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 6.0).collect();
    let z: Vec<f32> = (0..rows).flat_map(|r| storage[r * wide + d + 1..(r + 1) * wide].to_vec()).collect();
    let mut zt: Vec<f32> = (0..d * rows).map(|k| z[(k % rows) * d + k / rows]).collect();
    let mut grad: Vec<f32> = (0..rows * d).map(|i| ((i * 104_729 % 997) as f32 / 997.0) - 0.5).collect();
    let (r, dd) = (rows as i64, d as i64);
    let cols = |s: &mut Vec<f32>| T::new(s[d + 1..].as_mut_ptr() as _, F32, &[r, dd], Some(&[wide as i64, 1]));
    let transposed = |s: &mut Vec<f32>| T::new(s.as_mut_ptr() as _, F32, &[r, dd], Some(&[1, r]));
    for delta_shape in [&[][..], &[1][..]] {
        let mut delta = [0.25f32];
        let mut dt = T::new(delta.as_mut_ptr() as _, F32, delta_shape, None);
        // the general path: z not readable by rows, a strided output
        let mut out_wide = vec![7.0f32; rows * (d + 3)];
        let mut ow = T::new(out_wide.as_mut_ptr() as _, F32, &[r, dd], Some(&[(d + 3) as i64, 1]));
        let st = unsafe { era_gaussian_forward_delta(g, transposed(&mut zt).p(), dt.p(), ow.p(), null_mut()) };
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
        let want: Vec<u32> = (0..rows * d).map(|i| out_wide[(i / d) * (d + 3) + i % d].to_bits()).collect();
        // the rows path: z as columns of a wider array, contiguous and in reverse row order
        let mut out = vec![0.0f32; rows * d];
        let mut ot = T::new(out.as_mut_ptr() as _, F32, &[r, dd], None);
        let st = unsafe { era_gaussian_forward_delta(g, cols(&mut storage).p(), dt.p(), ot.p(), null_mut()) };
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
        assert_eq!(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "forward, delta of shape {delta_shape:?}");
        let mut zc = z.clone();
        let mut zct = T::new(zc.as_mut_ptr() as _, F32, &[r, dd], None);
        let mut out2 = vec![0.0f32; rows * d];
        let st =
            unsafe { era_gaussian_forward_delta(g, zct.p(), dt.p(), T::new(out2.as_mut_ptr() as _, F32, &[r, dd], None).p(), null_mut()) };
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
        assert_eq!(out2, out);
        let mut zrev: Vec<f32> = z.chunks(d).rev().flatten().copied().collect();
        // the pointer comes from the whole vector: the rows lie before it
        let last_row = unsafe { zrev.as_mut_ptr().add((rows - 1) * d) };
        let mut rev = T::new(last_row as _, F32, &[r, dd], Some(&[-dd, 1]));
        let mut out3 = vec![0.0f32; rows * d];
        let st =
            unsafe { era_gaussian_forward_delta(g, rev.p(), dt.p(), T::new(out3.as_mut_ptr() as _, F32, &[r, dd], None).p(), null_mut()) };
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
        assert_eq!(out3, out, "rows in reverse order");
        // in place (the output is z): the general path, the same values
        let zp = zct.p(); // one descriptor for both
        let st = unsafe { era_gaussian_forward_delta(g, zp, dt.p(), zp, null_mut()) };
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
        assert_eq!(zc, out, "in place");

        // backward: the general path (z transposed, strided grad_z), then the rows path,
        // with grad_delta of one element and without it
        let mut gz_wide = vec![7.0f32; rows * (d + 3)];
        let mut gzw = T::new(gz_wide.as_mut_ptr() as _, F32, &[r, dd], Some(&[(d + 3) as i64, 1]));
        let mut gd_want = [0.0f32];
        let mut gt = T::new(grad.as_mut_ptr() as _, F32, &[r, dd], None);
        let st = unsafe {
            era_gaussian_backward_delta(
                g,
                transposed(&mut zt).p(),
                dt.p(),
                gt.p(),
                gzw.p(),
                T::new(gd_want.as_mut_ptr() as _, F32, delta_shape, None).p(),
                null_mut(),
            )
        };
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
        let want_gz: Vec<u32> = (0..rows * d).map(|i| gz_wide[(i / d) * (d + 3) + i % d].to_bits()).collect();
        for with_gd in [true, false] {
            let mut gz = vec![0.0f32; rows * d];
            let mut gd = [0.0f32];
            let mut gdt = T::new(gd.as_mut_ptr() as _, F32, delta_shape, None);
            let gdp = if with_gd { gdt.p() } else { null_mut() };
            let st = unsafe {
                era_gaussian_backward_delta(
                    g,
                    cols(&mut storage).p(),
                    dt.p(),
                    gt.p(),
                    T::new(gz.as_mut_ptr() as _, F32, &[r, dd], None).p(),
                    gdp,
                    null_mut(),
                )
            };
            assert_eq!(st, EraStatus::Ok, "{}", last_error());
            assert_eq!(gz.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want_gz, "backward, delta of shape {delta_shape:?}");
            if with_gd {
                assert_eq!(gd[0].to_bits(), gd_want[0].to_bits(), "d/d delta");
                assert!(gd[0] != 0.0);
            }
        }
    }
    // the rows path's errors: a NaN delta, an infeasible delta; a grad_delta of two
    // elements for a scalar delta goes to the general path, which rejects it
    let mut out = vec![0.0f32; rows * d];
    let mut gz = vec![0.0f32; rows * d];
    let mut gt = T::new(grad.as_mut_ptr() as _, F32, &[r, dd], None);
    for (value, status, words) in [(f32::NAN, EraStatus::InvalidArgument, "NaN"), (1.0e4, EraStatus::InfeasibleTarget, "exceeds")] {
        let mut delta = [value];
        let mut dt = T::new(delta.as_mut_ptr() as _, F32, &[], None);
        let st = unsafe {
            era_gaussian_forward_delta(
                g,
                cols(&mut storage).p(),
                dt.p(),
                T::new(out.as_mut_ptr() as _, F32, &[r, dd], None).p(),
                null_mut(),
            )
        };
        assert_eq!(st, status);
        assert!(last_error().contains(words), "{}", last_error());
        let st = unsafe {
            era_gaussian_backward_delta(
                g,
                cols(&mut storage).p(),
                dt.p(),
                gt.p(),
                T::new(gz.as_mut_ptr() as _, F32, &[r, dd], None).p(),
                null_mut(),
                null_mut(),
            )
        };
        assert_eq!(st, status);
        assert!(last_error().contains(words), "{}", last_error());
    }
    let mut delta = [0.25f32];
    let mut gd2 = [0.0f32; 2];
    let st = unsafe {
        era_gaussian_backward_delta(
            g,
            cols(&mut storage).p(),
            T::new(delta.as_mut_ptr() as _, F32, &[], None).p(),
            gt.p(),
            T::new(gz.as_mut_ptr() as _, F32, &[r, dd], None).p(),
            T::new(gd2.as_mut_ptr() as _, F32, &[2], None).p(),
            null_mut(),
        )
    };
    assert_eq!(st, EraStatus::InvalidShape);
    assert!(last_error().contains("grad_delta"), "{}", last_error());
    unsafe { era_head_free(g) };
}
