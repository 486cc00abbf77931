//! The softmax head's forward with two residuals, `saved = softmax(z)` and
//! `dwdh = dw/dh`, and the backward from both (docs/math.md#saved-softmax): the
//! same bits as the forward and backward from `z` on every f32 kernel (rows
//! across lanes and their tails, along the row with its tails and blocks,
//! strided inputs and outputs, several threads), `dwdh` against the formula
//! written here in f64, the f64 path against finite differences, and every
//! status of the two C functions.

use std::ptr::{null, null_mut};

use era::capi::*;
use era::{SoftmaxConfig, SoftmaxHead};
use ndarray::{s, ArrayD, IxDyn};

mod capi_helpers;
mod common;
use capi_helpers::*;
use common::Rng;

fn f32_array(rng: &mut Rng, shape: &[usize], scale: f64) -> ArrayD<f32> {
    rng.array(shape, scale).mapv(|v| v as f32)
}

/// The bits of each value, every NaN as one pattern.
fn bits(a: &ArrayD<f32>) -> Vec<u32> {
    a.iter().map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() }).collect()
}

fn softmax_head(n: usize, h0: f64, tau: Option<f64>, threads: usize) -> SoftmaxHead {
    let mut c = SoftmaxConfig::new(n, h0);
    if let Some(t) = tau {
        c.tau = t;
    }
    SoftmaxHead::new(c).unwrap().with_num_threads(threads)
}

/// `dw/dh` of one probability in f64, written here from docs/math.md#softmax-backward.
fn dwdh_ref(head: &SoftmaxHead, s: f64) -> f64 {
    let k = head.constants();
    let h = k.slope * s + k.b;
    let u = -1.0 - h.ln();
    (1.0 / (2.0 * u).sqrt() + 0.75) / h
}

/// Runs forward and backward both ways (from `z`, and with both residuals) on
/// `z` and `g` (views of any layout) and compares the bits.
fn same_bits(
    head: &SoftmaxHead,
    z: ndarray::ArrayViewD<'_, f32>,
    g: ndarray::ArrayViewD<'_, f32>,
    what: &str,
) -> (ArrayD<f32>, ArrayD<f32>) {
    let dim = z.raw_dim();
    let mut out = ArrayD::<f32>::zeros(dim.clone());
    head.forward(z.view(), out.view_mut()).unwrap();
    let (mut out2, mut saved, mut dwdh) =
        (ArrayD::<f32>::zeros(dim.clone()), ArrayD::<f32>::zeros(dim.clone()), ArrayD::<f32>::zeros(dim.clone()));
    head.forward_saving_dw(z.view(), out2.view_mut(), saved.view_mut(), dwdh.view_mut()).unwrap();
    assert_eq!(bits(&out), bits(&out2), "forward, {what}");
    let (mut out3, mut saved1) = (ArrayD::<f32>::zeros(dim.clone()), ArrayD::<f32>::zeros(dim.clone()));
    head.forward_saving(z.view(), out3.view_mut(), saved1.view_mut()).unwrap();
    assert_eq!(bits(&saved), bits(&saved1), "saved, {what}");
    let mut dz = ArrayD::<f32>::zeros(dim.clone());
    head.backward(z.view(), g.view(), dz.view_mut()).unwrap();
    let mut dz2 = ArrayD::<f32>::zeros(dim.clone());
    head.backward_saved_dw(saved.view(), dwdh.view(), g.view(), dz2.view_mut()).unwrap();
    assert_eq!(bits(&dz), bits(&dz2), "grad_z, {what}");
    (saved, dwdh)
}

#[test]
fn both_residuals_give_the_same_bits_on_the_f32_kernels() {
    let mut rng = Rng(51);
    // rows across lanes (n <= 16) with whole groups and tails; along the row with
    // scalar tails (< 8), vector tails, and more than one block of 2048
    let shapes = [
        (1usize, 2usize),
        (17, 10),
        (16, 16),
        (40, 3),
        (33, 17),
        (5, 100),
        (7, 21),
        (3, 1000),
        (2, 2051),
        (2, 4099),
        (70, 1000),
        (4000, 10),
    ];
    for &(b, n) in &shapes {
        for threads in [1, 2] {
            let head = softmax_head(n, 0.5 * (n as f64).ln(), None, threads);
            assert!(head.f32_kernels());
            let z = f32_array(&mut rng, &[b, n], 2.0);
            let mut g = f32_array(&mut rng, &[b, n], 1.0);
            // some zero upstream gradients and some -inf logits (s = 0)
            g.as_slice_mut().unwrap().iter_mut().step_by(7).for_each(|v| *v = 0.0);
            let mut z = z;
            if n > 2 {
                z.as_slice_mut().unwrap().iter_mut().skip(1).step_by(11).for_each(|v| *v = f32::NEG_INFINITY);
            }
            let (saved, dwdh) = same_bits(&head, z.view(), g.view(), &format!("B={b} n={n} threads={threads}"));
            for (i, (&s, &q)) in saved.iter().zip(dwdh.iter()).enumerate() {
                if s > 0.0 {
                    let want = dwdh_ref(&head, s as f64);
                    assert!((q as f64 - want).abs() <= 2e-5 * want, "dwdh[{i}] = {q}, want {want} (s = {s}, B={b} n={n})");
                }
            }
        }
    }
}

#[test]
fn both_residuals_read_strided_rows_and_write_strided_outputs() {
    let mut rng = Rng(52);
    for n in [10usize, 100] {
        let head = softmax_head(n, 0.5 * (n as f64).ln(), None, 1);
        let wide = f32_array(&mut rng, &[19, 2 * n], 2.0);
        let gw = f32_array(&mut rng, &[19, 2 * n], 1.0);
        // the columns [:, n:] (rows at a stride) and every other row reversed (gathered)
        same_bits(&head, wide.slice(s![.., n..]).into_dyn(), gw.slice(s![.., ..n]).into_dyn(), &format!("columns, n={n}"));
        let t = f32_array(&mut rng, &[n, 19], 2.0);
        let gt = f32_array(&mut rng, &[n, 19], 1.0);
        same_bits(&head, t.t().into_dyn(), gt.t().into_dyn(), &format!("transposed, n={n}"));
        // strided outputs: residuals and gradient written into column slices
        let z = f32_array(&mut rng, &[19, n], 2.0);
        let g = f32_array(&mut rng, &[19, n], 1.0);
        let mut out = ArrayD::<f32>::zeros(IxDyn(&[19, n]));
        head.forward(z.view(), out.view_mut()).unwrap();
        let mut buf = ArrayD::<f32>::zeros(IxDyn(&[19, 4 * n]));
        {
            let (mut a, mut rest) = buf.view_mut().into_dimensionality::<ndarray::Ix2>().unwrap().split_at(ndarray::Axis(1), n);
            let (mut b2, mut c) = rest.view_mut().split_at(ndarray::Axis(1), n);
            head.forward_saving_dw(z.view(), a.view_mut().into_dyn(), b2.view_mut().into_dyn(), c.slice_mut(s![.., ..n]).into_dyn())
                .unwrap();
        }
        assert_eq!(bits(&out), bits(&buf.slice(s![.., ..n]).to_owned().into_dyn()), "strided out, n={n}");
        let (saved, dwdh) = (buf.slice(s![.., n..2 * n]).to_owned().into_dyn(), buf.slice(s![.., 2 * n..3 * n]).to_owned().into_dyn());
        let mut dz = ArrayD::<f32>::zeros(IxDyn(&[19, n]));
        head.backward(z.view(), g.view(), dz.view_mut()).unwrap();
        let mut dzw = ArrayD::<f32>::zeros(IxDyn(&[n, 19]));
        head.backward_saved_dw(saved.view(), dwdh.view(), g.view(), dzw.view_mut().reversed_axes()).unwrap();
        assert_eq!(bits(&dz), bits(&dzw.t().to_owned().into_dyn()), "strided grad_z, n={n}");
    }
}

#[test]
fn the_f64_path_writes_dwdh_and_takes_the_backward_from_saved() {
    let mut rng = Rng(53);
    // tau = e: the f32 rows run in f64 too (u reaches 0 at s = 1)
    for &(n, h0, tau) in &[(2usize, 0.3, None), (10, 1.2, None), (10, 2.0, Some(std::f64::consts::E)), (100, 3.0, Some(4.0))] {
        let head = softmax_head(n, h0, tau, 1);
        let z = rng.array(&[3, n], 2.0);
        let g = rng.array(&[3, n], 1.0);
        let (mut out, mut saved, mut dwdh) = (ArrayD::zeros(z.raw_dim()), ArrayD::zeros(z.raw_dim()), ArrayD::zeros(z.raw_dim()));
        head.forward_saving_dw(z.view(), out.view_mut(), saved.view_mut(), dwdh.view_mut()).unwrap();
        let mut out_z = ArrayD::zeros(z.raw_dim());
        head.forward(z.view(), out_z.view_mut()).unwrap();
        assert_eq!(out, out_z, "n={n}: out");
        let (mut out1, mut saved1) = (ArrayD::zeros(z.raw_dim()), ArrayD::zeros(z.raw_dim()));
        head.forward_saving(z.view(), out1.view_mut(), saved1.view_mut()).unwrap();
        assert_eq!(saved, saved1, "n={n}: saved");
        for (i, (&s, &q)) in saved.iter().zip(dwdh.iter()).enumerate() {
            let want = dwdh_ref(&head, s);
            assert!((q - want).abs() <= 1e-9 * want, "n={n}: dwdh[{i}] = {q}, want {want}");
        }
        let (mut dz, mut dz1) = (ArrayD::zeros(z.raw_dim()), ArrayD::zeros(z.raw_dim()));
        head.backward_saved_dw(saved.view(), dwdh.view(), g.view(), dz.view_mut()).unwrap();
        head.backward_saved(saved.view(), g.view(), dz1.view_mut()).unwrap();
        assert_eq!(dz, dz1, "n={n}: the backward from saved");
        // and that is the head's gradient: finite differences of sum(g * (out + min w))
        let h = 1e-6;
        let loss = |z: &ArrayD<f64>| {
            let mut o = ArrayD::zeros(z.raw_dim());
            head.forward(z.view(), o.view_mut()).unwrap();
            let k = head.constants();
            let mut acc = 0.0;
            for r in 0..3 {
                let row: Vec<f64> = z.index_axis(ndarray::Axis(0), r).iter().copied().collect();
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
                let tot: f64 = e.iter().sum();
                // min w at this point (the shift is a stop-gradient constant)
                let wmin = e
                    .iter()
                    .map(|&v| {
                        let u = (-1.0 - (k.slope * v / tot + k.b).ln()).max(0.0);
                        -1.0 - (2.0 * u).sqrt() - 0.75 * u
                    })
                    .fold(f64::INFINITY, f64::min);
                for i in 0..n {
                    acc += g[[r, i]] * (o[[r, i]] + wmin);
                }
            }
            acc
        };
        for j in 0..z.len() {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp.as_slice_mut().unwrap()[j] += h;
            zm.as_slice_mut().unwrap()[j] -= h;
            let fd = (loss(&zp) - loss(&zm)) / (2.0 * h);
            let an = dz.as_slice().unwrap()[j];
            assert!((fd - an).abs() <= 1e-5 * (1.0 + fd.abs()), "n={n} d/dz[{j}]: {an} vs {fd}");
        }
    }
}

#[test]
fn the_degenerate_head_has_gradient_zero() {
    // H0 at the upper end of its range: slope = 0, out = 0, gradient 0
    let n = 10;
    let tau: f64 = 4.0;
    let h0 = 1.0 + (n as f64 * tau.ln() / tau).ln();
    let head = softmax_head(n, h0, Some(tau), 1);
    let mut rng = Rng(54);
    let z = f32_array(&mut rng, &[5, n], 2.0);
    let g = f32_array(&mut rng, &[5, n], 1.0);
    let (saved, dwdh) = same_bits(&head, z.view(), g.view(), "degenerate head");
    let mut dz = ArrayD::<f32>::from_elem(z.raw_dim(), 7.0);
    head.backward_saved_dw(saved.view(), dwdh.view(), g.view(), dz.view_mut()).unwrap();
    assert!(dz.iter().all(|&v| v == 0.0));
}

// ------------------------------------------------------------------ the C ABI

#[test]
fn the_dw_calls_match_the_head_calls_and_report_every_error() {
    let mut rng = Rng(55);
    let h = softmax_capi(10, 1.0);
    let gh = gaussian(10, -5.0);
    let b = 19usize;
    let sh = [b as i64, 10];
    let len = b * 10;
    let mut z: Vec<f32> = (0..len).map(|_| 2.0 * rng.normal() as f32).collect();
    let mut g: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
    let (mut out, mut out2, mut saved, mut dwdh, mut dz, mut dz2) =
        (vec![0f32; len], vec![0f32; len], vec![0f32; len], vec![0f32; len], vec![0f32; len], vec![0f32; len]);
    let (mut tz, mut tg) = (f32t(&mut z, &sh), f32t(&mut g, &sh));
    let (mut to, mut to2, mut ts, mut tq) = (f32t(&mut out, &sh), f32t(&mut out2, &sh), f32t(&mut saved, &sh), f32t(&mut dwdh, &sh));
    let (mut tdz, mut tdz2) = (f32t(&mut dz, &sh), f32t(&mut dz2, &sh));
    use EraStatus::*;
    unsafe {
        assert_eq!(era_head_forward(h, tz.p(), to.p(), null_mut()), Ok);
        assert_eq!(era_softmax_forward_saved_dw(h, tz.p(), to2.p(), ts.p(), tq.p(), null_mut()), Ok, "{}", last_error());
        assert_eq!(era_head_backward(h, tz.p(), tg.p(), tdz.p(), null_mut()), Ok);
        assert_eq!(era_softmax_backward_saved_dw(h, ts.p(), tq.p(), tg.p(), tdz2.p(), null_mut()), Ok, "{}", last_error());
    }
    assert_eq!(out, out2);
    assert_eq!(dz, dz2);
    let mut f64buf = vec![0f64; len];
    let mut t64 = T::f64(&mut f64buf, &sh);
    let mut short = vec![0f32; b * 9];
    let mut tshort = f32t(&mut short, &[b as i64, 9]);
    unsafe {
        let fwd = |h: *const EraHead, z: *const DLTensor, o: *mut DLTensor, s: *mut DLTensor, q: *mut DLTensor| {
            era_softmax_forward_saved_dw(h, z, o, s, q, null_mut())
        };
        assert_eq!(fwd(null(), tz.p(), to.p(), ts.p(), tq.p()), NullPointer);
        assert_eq!(fwd(h, null(), to.p(), ts.p(), tq.p()), NullPointer);
        assert_eq!(fwd(h, tz.p(), null_mut(), ts.p(), tq.p()), NullPointer);
        assert_eq!(fwd(h, tz.p(), to.p(), null_mut(), tq.p()), NullPointer);
        assert_eq!(fwd(h, tz.p(), to.p(), ts.p(), null_mut()), NullPointer);
        assert_eq!(fwd(gh, tz.p(), to.p(), ts.p(), tq.p()), WrongHeadKind);
        assert!(last_error().contains("needs a softmax head"), "{}", last_error());
        assert_eq!(fwd(h, tz.p(), to.p(), ts.p(), tshort.p()), InvalidShape);
        assert_eq!(fwd(h, tz.p(), to.p(), ts.p(), t64.p()), UnsupportedDtype);
        assert_eq!(fwd(h, tz.p(), to.p(), ts.p(), ts.p()), InvalidLayout);
        assert_eq!(fwd(h, tz.p(), to.p(), ts.p(), to.p()), InvalidLayout);
        let mut cuda = f32t(&mut out2, &sh);
        cuda.t.device = DLDevice { device_type: 2, device_id: 0 };
        assert_eq!(fwd(h, tz.p(), to.p(), ts.p(), cuda.p()), UnsupportedDevice);
        // z may alias an output: the forward in place over z
        let mut zc = z.clone();
        let mut tzc = f32t(&mut zc, &sh);
        assert_eq!(fwd(h, tzc.p(), tzc.p(), ts.p(), tq.p()), Ok);
        assert_eq!(zc, out);

        let bwd = |h: *const EraHead, s: *const DLTensor, q: *const DLTensor, g: *const DLTensor, o: *mut DLTensor| {
            era_softmax_backward_saved_dw(h, s, q, g, o, null_mut())
        };
        assert_eq!(bwd(null(), ts.p(), tq.p(), tg.p(), tdz.p()), NullPointer);
        assert_eq!(bwd(h, null(), tq.p(), tg.p(), tdz.p()), NullPointer);
        assert_eq!(bwd(h, ts.p(), null(), tg.p(), tdz.p()), NullPointer);
        assert_eq!(bwd(h, ts.p(), tq.p(), null(), tdz.p()), NullPointer);
        assert_eq!(bwd(h, ts.p(), tq.p(), tg.p(), null_mut()), NullPointer);
        assert_eq!(bwd(gh, ts.p(), tq.p(), tg.p(), tdz.p()), WrongHeadKind);
        assert_eq!(bwd(h, ts.p(), tshort.p(), tg.p(), tdz.p()), InvalidShape);
        assert_eq!(bwd(h, ts.p(), tq.p(), tshort.p(), tdz.p()), InvalidShape);
        assert_eq!(bwd(h, ts.p(), t64.p(), tg.p(), tdz.p()), UnsupportedDtype);
        let mut cuda = f32t(&mut dz2, &sh);
        cuda.t.device = DLDevice { device_type: 2, device_id: 0 };
        assert_eq!(bwd(h, ts.p(), tq.p(), tg.p(), cuda.p()), UnsupportedDevice);
        // grad_z over grad_out
        let mut tg2 = f32t(&mut g, &sh);
        assert_eq!(bwd(h, ts.p(), tq.p(), tg.p(), tg2.p()), Ok);
        era_head_free(h);
        era_head_free(gh);
    }
    assert_eq!(g, dz);
}
