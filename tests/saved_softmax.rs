//! The forward that saves `softmax(z)` and the backward from it
//! (docs/math.md#saved-softmax), Gaussian and softmax heads: the same bits as the
//! forward and backward from `z` on every f32 kernel (rows across lanes with their
//! tails, along the row, strided inputs, one delta or one per row), the saved
//! values against a softmax written here, f64 finite differences, and every
//! status of the four C functions.

use std::ptr::{null, null_mut};

use era::capi::*;
use era::{DeltaArg, GaussianConfig, GaussianHead, SoftmaxConfig, SoftmaxHead};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};

mod capi_helpers;
mod common;
use capi_helpers::*;
use common::Rng;

fn f32_array(rng: &mut Rng, shape: &[usize], scale: f64) -> ArrayD<f32> {
    rng.array(shape, scale).mapv(|v| v as f32)
}

/// Row-wise softmax in f64, written here (independent of the library's kernels).
fn softmax_rows(z: &ArrayD<f64>) -> Vec<f64> {
    let n = *z.shape().last().unwrap();
    let flat: Vec<f64> = z.iter().copied().collect();
    let mut out = Vec::with_capacity(flat.len());
    for row in flat.chunks(n) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    out
}

fn bits(a: &ArrayD<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

fn gaussian_head(d: usize, h0: f64) -> GaussianHead {
    let mut c = GaussianConfig::new(d, h0);
    c.log_std_min = -5.0;
    GaussianHead::new(c).unwrap()
}

/// Every width the f32 kernels treat differently (one lane group and its tail,
/// the tail alone) and batch sizes around the 16-row groups.
const SHAPES: &[(usize, usize)] = &[(1, 1), (1, 6), (15, 2), (16, 6), (17, 6), (33, 21), (256, 6), (64, 61), (40, 128)];

#[test]
fn gaussian_saved_path_gives_the_same_bits_in_f32() {
    let mut rng = Rng(11);
    for &(b, d) in SHAPES {
        let head = gaussian_head(d, -0.5 * d as f64);
        let z = f32_array(&mut rng, &[b, d], 2.0);
        let g = f32_array(&mut rng, &[b, d], 1.0);
        let per_row = ArrayD::from_shape_fn(IxDyn(&[b]), |i| (0.1 * (i[0] % 5) as f64 - 0.2) as f32);
        for delta in [DeltaArg::Scalar(0.25), DeltaArg::PerRow(per_row.view())] {
            let again = || match &delta {
                DeltaArg::Scalar(v) => DeltaArg::Scalar(*v),
                DeltaArg::PerRow(a) => DeltaArg::PerRow(a.view()),
            };
            let mut out = ArrayD::<f32>::zeros(z.raw_dim());
            head.forward_with_delta(z.view(), again(), out.view_mut()).unwrap();
            let (mut out2, mut saved) = (ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(z.raw_dim()));
            head.forward_saving(z.view(), again(), out2.view_mut(), saved.view_mut()).unwrap();
            assert_eq!(bits(&out), bits(&out2), "forward B={b} D={d}");
            let want = softmax_rows(&z.mapv(|v| v as f64));
            for (i, (&s, &w)) in saved.iter().zip(&want).enumerate() {
                assert!((s as f64 - w).abs() <= 1e-6 * (1.0 + w), "saved[{i}] = {s}, softmax {w} (B={b} D={d})");
            }
            let gd_len = if matches!(delta, DeltaArg::Scalar(_)) { vec![1] } else { vec![b] };
            let (mut dz, mut gd) = (ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(IxDyn(&gd_len)));
            head.backward_with_delta(z.view(), again(), g.view(), dz.view_mut(), Some(gd.view_mut())).unwrap();
            let (mut dz2, mut gd2) = (ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(IxDyn(&gd_len)));
            head.backward_saved(saved.view(), again(), g.view(), dz2.view_mut(), Some(gd2.view_mut())).unwrap();
            assert_eq!(bits(&dz), bits(&dz2), "grad_z B={b} D={d}");
            assert_eq!(bits(&gd), bits(&gd2), "grad_delta B={b} D={d}");
        }
    }
}

#[test]
fn gaussian_saved_path_reads_strided_rows_and_writes_strided_outputs() {
    let mut rng = Rng(12);
    let (b, d) = (37, 6);
    let head = gaussian_head(d, -3.0);
    // z: the last D columns of a [B, 2D] array; outputs in column-major order
    let wide = f32_array(&mut rng, &[b, 2 * d], 1.5);
    let z = wide.slice_each_axis(|ax| if ax.axis.0 == 1 { ndarray::Slice::from(d..) } else { ndarray::Slice::from(..) });
    let g = f32_array(&mut rng, &[b, d], 1.0);
    let mut out = ArrayD::<f32>::zeros(IxDyn(&[b, d]));
    head.forward_with_delta(z.view(), DeltaArg::Scalar(0.0), out.view_mut()).unwrap();
    let mut out2 = ArrayD::<f32>::zeros(IxDyn(&[b, d]).f());
    let mut saved = ArrayD::<f32>::zeros(IxDyn(&[b, d]).f());
    head.forward_saving(z.view(), DeltaArg::Scalar(0.0), out2.view_mut(), saved.view_mut()).unwrap();
    assert_eq!(bits(&out), bits(&out2.as_standard_layout().to_owned()));
    let mut dz = ArrayD::<f32>::zeros(IxDyn(&[b, d]));
    head.backward_with_delta(z.view(), DeltaArg::Scalar(0.0), g.view(), dz.view_mut(), None).unwrap();
    let mut dz2 = ArrayD::<f32>::zeros(IxDyn(&[b, d]).f());
    head.backward_saved(saved.view(), DeltaArg::Scalar(0.0), g.view(), dz2.view_mut(), None).unwrap();
    assert_eq!(bits(&dz), bits(&dz2.as_standard_layout().to_owned()));
}

#[test]
fn gaussian_saved_path_in_f64_matches_finite_differences_and_the_z_path() {
    let mut rng = Rng(13);
    for &(d, h0) in &[(1usize, -2.0), (3, -1.5), (6, -6.0), (21, -40.0)] {
        let head = gaussian_head(d, h0);
        let z = rng.array(&[4, d], 1.5);
        let g = rng.array(&[4, d], 1.0);
        let delta = ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.1, -0.2, 0.0, 0.3]).unwrap();
        let (mut out, mut saved) = (ArrayD::zeros(z.raw_dim()), ArrayD::zeros(z.raw_dim()));
        head.forward_saving(z.view(), DeltaArg::PerRow(delta.view()), out.view_mut(), saved.view_mut()).unwrap();
        common::assert_close(saved.as_slice().unwrap(), &softmax_rows(&z), 1e-15, "saved softmax");
        let (mut dz, mut gd) = (ArrayD::zeros(z.raw_dim()), ArrayD::zeros(IxDyn(&[4])));
        head.backward_saved(saved.view(), DeltaArg::PerRow(delta.view()), g.view(), dz.view_mut(), Some(gd.view_mut())).unwrap();
        let (mut dz_z, mut gd_z) = (ArrayD::zeros(z.raw_dim()), ArrayD::zeros(IxDyn(&[4])));
        head.backward_with_delta(z.view(), DeltaArg::PerRow(delta.view()), g.view(), dz_z.view_mut(), Some(gd_z.view_mut())).unwrap();
        assert_eq!(dz, dz_z, "f64 grad_z, D={d}");
        assert_eq!(gd, gd_z, "f64 grad_delta, D={d}");
        // central differences of the forward, each coordinate of z and each row's delta
        let f = |z: &ArrayD<f64>, delta: &ArrayD<f64>| {
            let mut o = ArrayD::zeros(z.raw_dim());
            head.forward_with_delta(z.view(), DeltaArg::PerRow(delta.view()), o.view_mut()).unwrap();
            o
        };
        let h = 1e-6;
        let dot = |a: &ArrayD<f64>, b: &ArrayD<f64>| (a - b).iter().zip(g.iter()).map(|(x, y)| x * y).sum::<f64>() / (2.0 * h);
        for j in 0..z.len() {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp.as_slice_mut().unwrap()[j] += h;
            zm.as_slice_mut().unwrap()[j] -= h;
            let fd = dot(&f(&zp, &delta), &f(&zm, &delta));
            let an = dz.as_slice().unwrap()[j];
            assert!((fd - an).abs() <= 1e-6 * (1.0 + fd.abs()), "D={d} d/dz[{j}]: {an} vs {fd}");
        }
        for r in 0..4 {
            let (mut dp, mut dm) = (delta.clone(), delta.clone());
            dp[[r]] += h;
            dm[[r]] -= h;
            let fd = dot(&f(&z, &dp), &f(&z, &dm));
            assert!((fd - gd[[r]]).abs() <= 1e-6 * (1.0 + fd.abs()), "D={d} d/d delta[{r}]: {} vs {fd}", gd[[r]]);
        }
    }
}

fn softmax_head(n: usize, h0: f64, tau: Option<f64>) -> SoftmaxHead {
    let mut c = SoftmaxConfig::new(n, h0);
    if let Some(t) = tau {
        c.tau = t;
    }
    SoftmaxHead::new(c).unwrap()
}

#[test]
fn softmax_saved_path_gives_the_same_bits_on_the_f32_kernels() {
    let mut rng = Rng(21);
    for &(b, n) in &[(1usize, 2usize), (17, 10), (16, 16), (33, 17), (5, 100), (3, 1000), (2, 2051)] {
        let head = softmax_head(n, 0.5 * (n as f64).ln(), None);
        assert!(head.f32_kernels());
        let z = f32_array(&mut rng, &[b, n], 2.0);
        let g = f32_array(&mut rng, &[b, n], 1.0);
        let mut out = ArrayD::<f32>::zeros(z.raw_dim());
        head.forward(z.view(), out.view_mut()).unwrap();
        let (mut out2, mut saved) = (ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(z.raw_dim()));
        head.forward_saving(z.view(), out2.view_mut(), saved.view_mut()).unwrap();
        assert_eq!(bits(&out), bits(&out2), "forward B={b} n={n}");
        let want = softmax_rows(&z.mapv(|v| v as f64));
        for (i, (&s, &w)) in saved.iter().zip(&want).enumerate() {
            assert!((s as f64 - w).abs() <= 1e-6 * w + 1e-12, "saved[{i}] = {s}, softmax {w} (B={b} n={n})");
        }
        let mut dz = ArrayD::<f32>::zeros(z.raw_dim());
        head.backward(z.view(), g.view(), dz.view_mut()).unwrap();
        let mut dz2 = ArrayD::<f32>::zeros(z.raw_dim());
        head.backward_saved(saved.view(), g.view(), dz2.view_mut()).unwrap();
        assert_eq!(bits(&dz), bits(&dz2), "grad_z B={b} n={n}");
    }
}

#[test]
fn softmax_saved_path_in_f64_matches_finite_differences_and_the_z_path() {
    let mut rng = Rng(22);
    // tau = e takes the path that sums the largest probability's complement
    for &(n, h0, tau) in &[(2usize, 0.3, None), (10, 1.2, None), (10, 2.0, Some(std::f64::consts::E)), (100, 3.0, Some(4.0))] {
        let head = softmax_head(n, h0, tau);
        let z = rng.array(&[3, n], 2.0);
        let g = rng.array(&[3, n], 1.0);
        let (mut out, mut saved) = (ArrayD::zeros(z.raw_dim()), ArrayD::zeros(z.raw_dim()));
        head.forward_saving(z.view(), out.view_mut(), saved.view_mut()).unwrap();
        let mut out_z = ArrayD::zeros(z.raw_dim());
        head.forward(z.view(), out_z.view_mut()).unwrap();
        assert_eq!(out, out_z);
        common::assert_close(saved.as_slice().unwrap(), &softmax_rows(&z), 1e-15, "saved softmax");
        let mut dz = ArrayD::zeros(z.raw_dim());
        head.backward_saved(saved.view(), g.view(), dz.view_mut()).unwrap();
        let mut dz_z = ArrayD::zeros(z.raw_dim());
        head.backward(z.view(), g.view(), dz_z.view_mut()).unwrap();
        common::assert_close(dz.as_slice().unwrap(), dz_z.as_slice().unwrap(), 1e-13, &format!("n={n}: saved path vs z path"));
        let h = 1e-6;
        for j in 0..z.len() {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp.as_slice_mut().unwrap()[j] += h;
            zm.as_slice_mut().unwrap()[j] -= h;
            let (mut op, mut om) = (ArrayD::zeros(z.raw_dim()), ArrayD::zeros(z.raw_dim()));
            head.forward(zp.view(), op.view_mut()).unwrap();
            head.forward(zm.view(), om.view_mut()).unwrap();
            // the min-shift is a stop-gradient constant: compare the unshifted w
            let fd: f64 = {
                let mut acc = 0.0;
                for r in 0..3 {
                    // w = out + min(w), each at its own point
                    let (pr, mr) = (op.index_axis(ndarray::Axis(0), r), om.index_axis(ndarray::Axis(0), r));
                    let (pmin, mmin) = (min_w(&head, &zp, r), min_w(&head, &zm, r));
                    let gr = g.index_axis(ndarray::Axis(0), r);
                    for i in 0..n {
                        acc += gr[i] * ((pr[i] + pmin) - (mr[i] + mmin));
                    }
                }
                acc / (2.0 * h)
            };
            let an = dz.as_slice().unwrap()[j];
            assert!((fd - an).abs() <= 1e-5 * (1.0 + fd.abs()), "n={n} d/dz[{j}]: {an} vs {fd}");
        }
    }
}

/// `min(w)` of row `r` of the softmax head at `z` (the shift the forward subtracts),
/// recovered from the head's output and the unshifted `w` written here.
fn min_w(head: &SoftmaxHead, z: &ArrayD<f64>, r: usize) -> f64 {
    let k = head.constants();
    let row: Vec<f64> = z.index_axis(ndarray::Axis(0), r).iter().copied().collect();
    let s = softmax_rows(&ArrayD::from_shape_vec(IxDyn(&[1, row.len()]), row).unwrap());
    s.iter()
        .map(|&p| {
            let h = k.slope * p + k.b;
            let u = (-1.0 - h.ln()).max(0.0);
            -1.0 - (2.0 * u).sqrt() - 0.75 * u
        })
        .fold(f64::INFINITY, f64::min)
}

// ------------------------------------------------------------------ the C ABI

#[test]
fn gaussian_saved_calls_match_the_delta_calls_through_the_abi() {
    let mut rng = Rng(31);
    let h = gaussian(6, -3.0);
    let (b, d) = (20usize, 6usize);
    let mut z: Vec<f32> = (0..b * d).map(|_| rng.normal() as f32).collect();
    let mut g: Vec<f32> = (0..b * d).map(|_| rng.normal() as f32).collect();
    let mut delta = [0.2f32];
    let (mut out, mut out2, mut saved) = (vec![0f32; b * d], vec![0f32; b * d], vec![0f32; b * d]);
    let sh = [b as i64, d as i64];
    let (mut tz, mut tdelta) = (f32t(&mut z, &sh), f32t(&mut delta, &[]));
    let (mut to, mut to2, mut ts) = (f32t(&mut out, &sh), f32t(&mut out2, &sh), f32t(&mut saved, &sh));
    unsafe {
        assert_eq!(era_gaussian_forward_delta(h, tz.p(), tdelta.p(), to.p(), null_mut()), EraStatus::Ok);
        let st = era_gaussian_forward_saved(h, tz.p(), tdelta.p(), to2.p(), ts.p(), null_mut());
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
    }
    assert_eq!(out, out2);
    let (mut dz, mut dz2) = (vec![0f32; b * d], vec![0f32; b * d]);
    let (mut gd, mut gd2) = ([0f32], [0f32]);
    let (mut tg, mut tdz, mut tdz2) = (f32t(&mut g, &sh), f32t(&mut dz, &sh), f32t(&mut dz2, &sh));
    let (mut tgd, mut tgd2) = (f32t(&mut gd, &[1]), f32t(&mut gd2, &[1]));
    unsafe {
        assert_eq!(era_gaussian_backward_delta(h, tz.p(), tdelta.p(), tg.p(), tdz.p(), tgd.p(), null_mut()), EraStatus::Ok);
        let st = era_gaussian_backward_saved(h, ts.p(), tdelta.p(), tg.p(), tdz2.p(), tgd2.p(), null_mut());
        assert_eq!(st, EraStatus::Ok, "{}", last_error());
    }
    assert_eq!(dz, dz2);
    assert_eq!(gd, gd2);
    // NULL delta: the head's stored value (0 here), against era_head_forward/backward
    let (mut o3, mut s3, mut dz3, mut dz4) = (vec![0f32; b * d], vec![0f32; b * d], vec![0f32; b * d], vec![0f32; b * d]);
    let (mut to3, mut ts3, mut tdz3, mut tdz4) = (f32t(&mut o3, &sh), f32t(&mut s3, &sh), f32t(&mut dz3, &sh), f32t(&mut dz4, &sh));
    unsafe {
        assert_eq!(era_gaussian_forward_saved(h, tz.p(), null(), to3.p(), ts3.p(), null_mut()), EraStatus::Ok);
        assert_eq!(era_head_forward(h, tz.p(), to.p(), null_mut()), EraStatus::Ok);
        assert_eq!(era_gaussian_backward_saved(h, ts3.p(), null(), tg.p(), tdz3.p(), null_mut(), null_mut()), EraStatus::Ok);
        assert_eq!(era_head_backward(h, tz.p(), tg.p(), tdz4.p(), null_mut()), EraStatus::Ok);
    }
    assert_eq!(out, o3);
    assert_eq!(dz3, dz4);
    // grad_z written over saved (aliasing an input is allowed)
    let mut s5 = s3.clone();
    let mut ts5 = f32t(&mut s5, &sh);
    let mut ts5b = f32t(&mut s5, &sh);
    unsafe { assert_eq!(era_gaussian_backward_saved(h, ts5.p(), null(), tg.p(), ts5b.p(), null_mut(), null_mut()), EraStatus::Ok) };
    assert_eq!(s5, dz3);
    // f64 through the general path
    let mut z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    let (mut o64, mut s64) = (vec![0f64; b * d], vec![0f64; b * d]);
    let (mut tz64, mut to64, mut ts64) = (T::f64(&mut z64, &sh), T::f64(&mut o64, &sh), T::f64(&mut s64, &sh));
    unsafe { assert_eq!(era_gaussian_forward_saved(h, tz64.p(), null(), to64.p(), ts64.p(), null_mut()), EraStatus::Ok) };
    let want = softmax_rows(&ArrayD::from_shape_vec(IxDyn(&[b, d]), z64.clone()).unwrap());
    common::assert_close(&s64, &want, 1e-15, "f64 saved through the ABI");
    unsafe { era_head_free(h) };
}

#[test]
fn gaussian_saved_calls_report_every_error() {
    let h = gaussian(3, -1.5);
    let s = softmax_capi(3, 0.5);
    let mut z = [0.1f64, 0.2, 0.3, -1.0, 0.0, 1.0];
    let (mut out, mut saved, mut g, mut dz) = ([0f64; 6], [0f64; 6], [1f64; 6], [0f64; 6]);
    let mut wide = [0f64; 8];
    let mut z32 = [0f32; 6];
    let (mut tz, mut to, mut ts, mut tg, mut tdz) = (
        T::f64(&mut z, &[2, 3]),
        T::f64(&mut out, &[2, 3]),
        T::f64(&mut saved, &[2, 3]),
        T::f64(&mut g, &[2, 3]),
        T::f64(&mut dz, &[2, 3]),
    );
    let mut twide = T::f64(&mut wide, &[2, 4]);
    let mut t32 = f32t(&mut z32, &[2, 3]);
    let mut nan = [f64::NAN];
    let mut big = [1e6f64];
    let (mut tnan, mut tbig) = (T::f64(&mut nan, &[]), T::f64(&mut big, &[]));
    let mut gd = [0f64];
    let mut tgd = T::f64(&mut gd, &[]);
    use EraStatus::*;
    unsafe {
        let fwd = |h: *const EraHead, z: *const DLTensor, d: *const DLTensor, o: *mut DLTensor, s: *mut DLTensor| {
            era_gaussian_forward_saved(h, z, d, o, s, null_mut())
        };
        assert_eq!(fwd(null(), tz.p(), null(), to.p(), ts.p()), NullPointer);
        assert_eq!(fwd(h, null(), null(), to.p(), ts.p()), NullPointer);
        assert_eq!(fwd(h, tz.p(), null(), null_mut(), ts.p()), NullPointer);
        assert_eq!(fwd(h, tz.p(), null(), to.p(), null_mut()), NullPointer);
        assert_eq!(fwd(s, tz.p(), null(), to.p(), ts.p()), WrongHeadKind);
        assert!(last_error().contains("needs a gaussian head"), "{}", last_error());
        assert_eq!(fwd(h, tz.p(), null(), to.p(), twide.p()), InvalidShape);
        assert_eq!(fwd(h, tz.p(), null(), to.p(), t32.p()), UnsupportedDtype);
        assert_eq!(fwd(h, tz.p(), null(), to.p(), to.p()), InvalidLayout);
        assert_eq!(fwd(h, tz.p(), tnan.p(), to.p(), ts.p()), InvalidArgument);
        assert_eq!(fwd(h, tz.p(), tbig.p(), to.p(), ts.p()), InfeasibleTarget);
        assert_eq!(fwd(h, twide.p(), null(), to.p(), ts.p()), InvalidShape);
        // a buffer of its own: in a CUDA build the descriptor is taken as a device
        // tensor, and one over `out` would overlap `out` (INVALID_LAYOUT comes first)
        let mut elsewhere = [0f64; 6];
        let mut cuda = T::f64(&mut elsewhere, &[2, 3]);
        cuda.t.device = DLDevice { device_type: 2, device_id: 0 };
        assert_eq!(fwd(h, tz.p(), null(), to.p(), cuda.p()), UnsupportedDevice);
        assert_eq!(fwd(h, tz.p(), null(), to.p(), ts.p()), Ok, "{}", last_error());

        let bwd = |h: *const EraHead, s: *const DLTensor, d: *const DLTensor, g: *const DLTensor, o: *mut DLTensor, gd: *mut DLTensor| {
            era_gaussian_backward_saved(h, s, d, g, o, gd, null_mut())
        };
        assert_eq!(bwd(null(), ts.p(), null(), tg.p(), tdz.p(), null_mut()), NullPointer);
        assert_eq!(bwd(h, null(), null(), tg.p(), tdz.p(), null_mut()), NullPointer);
        assert_eq!(bwd(h, ts.p(), null(), null(), tdz.p(), null_mut()), NullPointer);
        assert_eq!(bwd(h, ts.p(), null(), tg.p(), null_mut(), null_mut()), NullPointer);
        assert_eq!(bwd(h, ts.p(), null(), tg.p(), tdz.p(), tgd.p()), NullPointer);
        assert!(last_error().contains("grad_delta needs a delta"), "{}", last_error());
        assert_eq!(bwd(s, ts.p(), null(), tg.p(), tdz.p(), null_mut()), WrongHeadKind);
        assert_eq!(bwd(h, ts.p(), null(), twide.p(), tdz.p(), null_mut()), InvalidShape);
        assert_eq!(bwd(h, ts.p(), null(), t32.p(), tdz.p(), null_mut()), UnsupportedDtype);
        assert_eq!(bwd(h, ts.p(), tnan.p(), tg.p(), tdz.p(), null_mut()), InvalidArgument);
        assert_eq!(bwd(h, ts.p(), tbig.p(), tg.p(), tdz.p(), null_mut()), InfeasibleTarget);
        let mut cuda = T::f64(&mut dz, &[2, 3]);
        cuda.t.device = DLDevice { device_type: 2, device_id: 0 };
        assert_eq!(bwd(h, ts.p(), null(), tg.p(), cuda.p(), null_mut()), UnsupportedDevice);
        let mut zero = [0f64];
        let mut tzero = T::f64(&mut zero, &[]);
        assert_eq!(bwd(h, ts.p(), tzero.p(), tg.p(), tdz.p(), tgd.p()), Ok, "{}", last_error());
        era_head_free(h);
        era_head_free(s);
    }
}

#[test]
fn softmax_saved_calls_match_the_head_calls_and_report_every_error() {
    let mut rng = Rng(41);
    let h = softmax_capi(10, 1.0);
    let gh = gaussian(10, -5.0);
    let b = 19usize;
    let sh = [b as i64, 10];
    let mut z: Vec<f32> = (0..b * 10).map(|_| 2.0 * rng.normal() as f32).collect();
    let mut g: Vec<f32> = (0..b * 10).map(|_| rng.normal() as f32).collect();
    let (mut out, mut out2, mut saved, mut dz, mut dz2) =
        (vec![0f32; b * 10], vec![0f32; b * 10], vec![0f32; b * 10], vec![0f32; b * 10], vec![0f32; b * 10]);
    let (mut tz, mut tg) = (f32t(&mut z, &sh), f32t(&mut g, &sh));
    let (mut to, mut to2, mut ts) = (f32t(&mut out, &sh), f32t(&mut out2, &sh), f32t(&mut saved, &sh));
    let (mut tdz, mut tdz2) = (f32t(&mut dz, &sh), f32t(&mut dz2, &sh));
    use EraStatus::*;
    unsafe {
        assert_eq!(era_head_forward(h, tz.p(), to.p(), null_mut()), Ok);
        assert_eq!(era_softmax_forward_saved(h, tz.p(), to2.p(), ts.p(), null_mut()), Ok, "{}", last_error());
        assert_eq!(era_head_backward(h, tz.p(), tg.p(), tdz.p(), null_mut()), Ok);
        assert_eq!(era_softmax_backward_saved(h, ts.p(), tg.p(), tdz2.p(), null_mut()), Ok, "{}", last_error());
    }
    assert_eq!(out, out2);
    assert_eq!(dz, dz2);
    let mut f64buf = vec![0f64; b * 10];
    let mut t64 = T::f64(&mut f64buf, &sh);
    let mut short = vec![0f32; b * 9];
    let mut tshort = f32t(&mut short, &[b as i64, 9]);
    unsafe {
        let fwd =
            |h: *const EraHead, z: *const DLTensor, o: *mut DLTensor, s: *mut DLTensor| era_softmax_forward_saved(h, z, o, s, null_mut());
        assert_eq!(fwd(null(), tz.p(), to.p(), ts.p()), NullPointer);
        assert_eq!(fwd(h, null(), to.p(), ts.p()), NullPointer);
        assert_eq!(fwd(h, tz.p(), null_mut(), ts.p()), NullPointer);
        assert_eq!(fwd(h, tz.p(), to.p(), null_mut()), NullPointer);
        assert_eq!(fwd(gh, tz.p(), to.p(), ts.p()), WrongHeadKind);
        assert!(last_error().contains("needs a softmax head"), "{}", last_error());
        assert_eq!(fwd(h, tz.p(), to.p(), tshort.p()), InvalidShape);
        assert_eq!(fwd(h, tshort.p(), tshort.p(), tshort.p()), InvalidLayout);
        assert_eq!(fwd(h, tz.p(), to.p(), t64.p()), UnsupportedDtype);
        assert_eq!(fwd(h, tz.p(), to.p(), to.p()), InvalidLayout);
        let mut short2 = vec![0f32; b * 9];
        let mut tshort2 = f32t(&mut short2, &[b as i64, 9]);
        let mut short3 = vec![0f32; b * 9];
        let mut tshort3 = f32t(&mut short3, &[b as i64, 9]);
        assert_eq!(fwd(h, tshort.p(), tshort2.p(), tshort3.p()), InvalidShape);
        let mut cuda = f32t(&mut out2, &sh);
        cuda.t.device = DLDevice { device_type: 2, device_id: 0 };
        assert_eq!(fwd(h, tz.p(), cuda.p(), ts.p()), UnsupportedDevice);

        let bwd = |h: *const EraHead, s: *const DLTensor, g: *const DLTensor, o: *mut DLTensor| {
            era_softmax_backward_saved(h, s, g, o, null_mut())
        };
        assert_eq!(bwd(null(), ts.p(), tg.p(), tdz.p()), NullPointer);
        assert_eq!(bwd(h, null(), tg.p(), tdz.p()), NullPointer);
        assert_eq!(bwd(h, ts.p(), null(), tdz.p()), NullPointer);
        assert_eq!(bwd(h, ts.p(), tg.p(), null_mut()), NullPointer);
        assert_eq!(bwd(gh, ts.p(), tg.p(), tdz.p()), WrongHeadKind);
        assert_eq!(bwd(h, ts.p(), tshort.p(), tdz.p()), InvalidShape);
        assert_eq!(bwd(h, ts.p(), t64.p(), tdz.p()), UnsupportedDtype);
        let mut cuda = f32t(&mut dz2, &sh);
        cuda.t.device = DLDevice { device_type: 2, device_id: 0 };
        assert_eq!(bwd(h, ts.p(), tg.p(), cuda.p()), UnsupportedDevice);
        // grad_z over grad_out
        let mut tg2 = f32t(&mut g, &sh);
        assert_eq!(bwd(h, ts.p(), tg.p(), tg2.p()), Ok);
        era_head_free(h);
        era_head_free(gh);
    }
    assert_eq!(g, dz);
}
