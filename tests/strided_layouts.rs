//! f32 tensors that are not contiguous (the columns `[:, D:]` of a network's
//! output, transposed or reversed storage, a batch with gaps, a strided
//! output) take the same vectorised kernels as contiguous ones: the Gaussian
//! and softmax heads give bit-for-bit the contiguous results, on 1 and 2
//! threads, and never touch the memory between a strided output's elements.

mod common;
use common::Rng;
use era::kernels::parallel::{PAR_MIN_ELEMENTS, PAR_MIN_ELEMENTS_GAUSSIAN};
use era::{DeltaArg, GaussianConfig, GaussianHead, Rows, SoftmaxConfig, SoftmaxHead};
use ndarray::{s, ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};

/// What the gaps of the strided arrays hold: a NaN read by mistake would show.
const GAP: f32 = f32::NAN;
/// What the gaps of a strided output hold before and after a call.
const UNTOUCHED: f32 = 7.25;

/// Non-contiguous layouts of a logical `[rows, n]` array.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// The columns `[:, n+1:]` of a `[rows, 2n+1]` array (rows apart, elements adjacent).
    Columns,
    /// Stored as `[n, rows]` and viewed transposed (no element adjacent to the next).
    Transposed,
    /// Rows stored in reverse order (a negative row stride).
    Reversed,
    /// A `[4, rows/4, n]` batch with a row-sized gap before each block.
    Gappy,
}

const LAYOUTS: [Layout; 4] = [Layout::Columns, Layout::Transposed, Layout::Reversed, Layout::Gappy];

/// The storage that holds `z` (`[rows, n]`) in `layout`, gaps filled with [`GAP`].
fn store(layout: Layout, z: &ArrayD<f32>) -> ArrayD<f32> {
    let (rows, n) = (z.shape()[0], z.shape()[1]);
    match layout {
        Layout::Columns => {
            let mut wide = ArrayD::from_elem(IxDyn(&[rows, 2 * n + 1]), GAP);
            wide.slice_mut(s![.., n + 1..]).assign(z);
            wide
        }
        Layout::Transposed => z.t().as_standard_layout().into_owned(),
        Layout::Reversed => z.slice(s![..;-1, ..]).as_standard_layout().into_owned().into_dyn(),
        Layout::Gappy => {
            assert_eq!(rows % 4, 0, "the batch layout needs rows divisible by 4");
            let mut gappy = ArrayD::from_elem(IxDyn(&[4, rows / 4 + 1, n]), GAP);
            gappy.slice_mut(s![.., 1.., ..]).assign(&z.to_shape((4, rows / 4, n)).unwrap());
            gappy
        }
    }
}

/// The view of `storage` (from [`store`]) that holds the logical array.
fn view(layout: Layout, storage: &ArrayD<f32>) -> ArrayViewD<'_, f32> {
    match layout {
        Layout::Columns => {
            let n = (storage.shape()[1] - 1) / 2;
            storage.slice(s![.., n + 1..]).into_dyn()
        }
        Layout::Transposed => storage.t().into_dyn(),
        Layout::Reversed => storage.slice(s![..;-1, ..]).into_dyn(),
        Layout::Gappy => storage.slice(s![.., 1.., ..]).into_dyn(),
    }
}

/// Calls `f` with an output of `rows x n` elements that is the columns `[:, :n]`
/// of a wider array, then checks that the other columns are untouched and
/// returns the output's elements in row-major order.
fn strided_output(rows: usize, n: usize, f: impl FnOnce(ArrayViewMutD<'_, f32>)) -> Vec<f32> {
    let mut wide = ArrayD::from_elem(IxDyn(&[rows, n + 3]), UNTOUCHED);
    f(wide.slice_mut(s![.., ..n]).into_dyn());
    assert!(wide.slice(s![.., n..]).iter().all(|&v| v == UNTOUCHED), "a call wrote between a strided output's rows");
    wide.slice(s![.., ..n]).iter().copied().collect()
}

fn bits(v: impl IntoIterator<Item = f32>) -> Vec<u32> {
    v.into_iter().map(f32::to_bits).collect()
}

/// `delta` for a call on an input of `batch` rows (its shape without the last axis).
fn delta_for<'a>(per_row: &'a Option<ArrayD<f32>>, batch: &[usize]) -> DeltaArg<'a, f32> {
    match per_row {
        None => DeltaArg::Scalar(0.3),
        Some(d) => DeltaArg::PerRow(d.view().into_shape_with_order(IxDyn(batch)).unwrap()),
    }
}

#[test]
fn gaussian_strided_f32_equals_contiguous() {
    let mut rng = Rng(81);
    for d in [6usize, 17] {
        let mut c = GaussianConfig::new(d, -(d as f64));
        c.log_std_min = -5.0;
        c.log_std_max = 2.0;
        // a batch below the threading threshold and one above it
        for rows in [256usize, (PAR_MIN_ELEMENTS_GAUSSIAN / d + 17).next_multiple_of(4)] {
            let z = rng.array(&[rows, d], 3.0).mapv(|v| v as f32);
            let g = rng.array(&[rows, d], 1.0).mapv(|v| v as f32);
            for per_row in [None, Some(ArrayD::from_shape_fn(IxDyn(&[rows]), |i| 0.1 * (i[0] % 5) as f32))] {
                let dd_len = per_row.as_ref().map_or(1, |_| rows);
                for threads in [1usize, 2] {
                    let head = GaussianHead::new(c).unwrap().with_num_threads(threads);
                    let what = format!("D={d} rows={rows} threads={threads} delta of {dd_len}");
                    let mut want = ArrayD::<f32>::zeros(z.raw_dim());
                    head.forward_with_delta(z.view(), delta_for(&per_row, &[rows]), want.view_mut()).unwrap();
                    let mut want_dz = ArrayD::<f32>::zeros(z.raw_dim());
                    let mut want_dd = ArrayD::<f32>::zeros(IxDyn(&[dd_len]));
                    head.backward_with_delta(
                        z.view(),
                        delta_for(&per_row, &[rows]),
                        g.view(),
                        want_dz.view_mut(),
                        Some(want_dd.view_mut()),
                    )
                    .unwrap();

                    for layout in LAYOUTS {
                        let (zst, gst) = (store(layout, &z), store(layout, &g));
                        let (zs, gs) = (view(layout, &zst), view(layout, &gst));
                        let batch = zs.shape()[..zs.ndim() - 1].to_vec();
                        let mut got = ArrayD::<f32>::zeros(zs.raw_dim());
                        head.forward_with_delta(zs.view(), delta_for(&per_row, &batch), got.view_mut()).unwrap();
                        assert_eq!(bits(got.iter().copied()), bits(want.iter().copied()), "{what}: forward, {layout:?}");
                        let mut dz = ArrayD::<f32>::zeros(zs.raw_dim());
                        let mut dd = ArrayD::<f32>::zeros(if dd_len == 1 { IxDyn(&[1]) } else { IxDyn(&batch) });
                        head.backward_with_delta(zs.view(), delta_for(&per_row, &batch), gs.view(), dz.view_mut(), Some(dd.view_mut()))
                            .unwrap();
                        assert_eq!(bits(dz.iter().copied()), bits(want_dz.iter().copied()), "{what}: backward, {layout:?}");
                        assert_eq!(bits(dd.iter().copied()), bits(want_dd.iter().copied()), "{what}: d/d delta, {layout:?}");
                    }
                    let got = strided_output(rows, d, |o| head.forward_with_delta(z.view(), delta_for(&per_row, &[rows]), o).unwrap());
                    assert_eq!(bits(got), bits(want.iter().copied()), "{what}: forward into a strided output");
                    let zst = store(Layout::Transposed, &z);
                    let got = strided_output(rows, d, |o| {
                        head.backward_with_delta(view(Layout::Transposed, &zst), delta_for(&per_row, &[rows]), g.view(), o, None).unwrap()
                    });
                    assert_eq!(bits(got), bits(want_dz.iter().copied()), "{what}: backward into a strided output");
                }
            }
        }
    }
}

#[test]
fn softmax_strided_f32_equals_contiguous() {
    let mut rng = Rng(82);
    // short rows (several rows across the vector lanes) and long rows (one at a time)
    for n in [10usize, 100] {
        let head_cfg = SoftmaxConfig { num_classes: n, target_entropy: 0.5 * (n as f64).ln(), tau: 4.0 };
        for rows in [256usize, (PAR_MIN_ELEMENTS / n + 17).next_multiple_of(4)] {
            let z = rng.array(&[rows, n], 3.0).mapv(|v| v as f32);
            let g = rng.array(&[rows, n], 1.0).mapv(|v| v as f32);
            for threads in [1usize, 2] {
                let head = SoftmaxHead::new(head_cfg).unwrap().with_num_threads(threads);
                assert!(head.f32_kernels());
                let what = format!("n={n} rows={rows} threads={threads}");
                let mut want = ArrayD::<f32>::zeros(z.raw_dim());
                head.forward(z.view(), want.view_mut()).unwrap();
                let mut want_dz = ArrayD::<f32>::zeros(z.raw_dim());
                head.backward(z.view(), g.view(), want_dz.view_mut()).unwrap();
                for layout in LAYOUTS {
                    let (zst, gst) = (store(layout, &z), store(layout, &g));
                    let (zs, gs) = (view(layout, &zst), view(layout, &gst));
                    let mut got = ArrayD::<f32>::zeros(zs.raw_dim());
                    head.forward(zs.view(), got.view_mut()).unwrap();
                    assert_eq!(bits(got.iter().copied()), bits(want.iter().copied()), "{what}: forward, {layout:?}");
                    let mut dz = ArrayD::<f32>::zeros(zs.raw_dim());
                    head.backward(zs.view(), gs.view(), dz.view_mut()).unwrap();
                    assert_eq!(bits(dz.iter().copied()), bits(want_dz.iter().copied()), "{what}: backward, {layout:?}");
                }
                let got = strided_output(rows, n, |o| head.forward(z.view(), o).unwrap());
                assert_eq!(bits(got), bits(want.iter().copied()), "{what}: forward into a strided output");
                let zst = store(Layout::Columns, &z);
                let got = strided_output(rows, n, |o| head.backward(view(Layout::Columns, &zst), g.view(), o).unwrap());
                assert_eq!(bits(got), bits(want_dz.iter().copied()), "{what}: backward into a strided output");
            }
        }
    }
}

/// `GaussianHead::forward_rows_f32` / `backward_rows_f32` (rows read where they
/// lie, one delta) give `forward_with_delta` / `backward_with_delta`'s bits and
/// reject rows of the wrong shape.
#[test]
fn gaussian_rows_api_matches_the_array_api_and_checks_shapes() {
    let mut rng = Rng(83);
    let (rows, d) = (37usize, 6usize);
    let head = GaussianHead::new(GaussianConfig::new(d, -(d as f64))).unwrap();
    let wide = rng.array(&[rows, 2 * d], 3.0).mapv(|v| v as f32);
    let g = rng.array(&[rows, d], 1.0).mapv(|v| v as f32);
    let z = wide.slice(s![.., d..]).into_dyn();
    let mut want = ArrayD::<f32>::zeros(IxDyn(&[rows, d]));
    head.forward_with_delta(z.view(), DeltaArg::Scalar(0.3), want.view_mut()).unwrap();
    let mut want_dz = ArrayD::<f32>::zeros(IxDyn(&[rows, d]));
    let mut want_dd = ArrayD::<f32>::zeros(IxDyn(&[1]));
    head.backward_with_delta(z.view(), DeltaArg::Scalar(0.3), g.view(), want_dz.view_mut(), Some(want_dd.view_mut())).unwrap();

    let ws = wide.as_slice().unwrap();
    // SAFETY: rows of d elements, 2d apart, inside `wide`, which is not written meanwhile
    let zr = unsafe { Rows::from_raw(ws[d..].as_ptr(), rows, d, 2 * d as isize) };
    let gr = Rows::contiguous(g.as_slice().unwrap(), d);
    let mut out = vec![0.0f32; rows * d];
    head.forward_rows_f32(zr, 0.3, &mut out).unwrap();
    assert_eq!(bits(out.iter().copied()), bits(want.iter().copied()));
    let mut dz = vec![0.0f32; rows * d];
    let dd = head.backward_rows_f32(zr, 0.3, gr, &mut dz).unwrap();
    assert_eq!(bits(dz.iter().copied()), bits(want_dz.iter().copied()));
    assert_eq!((dd as f32).to_bits(), want_dd[[0]].to_bits());

    fn shape_error<R: std::fmt::Debug>(r: era::Result<R>) {
        assert_eq!(r.unwrap_err().kind(), era::ErrorKind::InvalidShape);
    }
    let short = Rows::contiguous(&ws[..rows * (d - 1)], d - 1);
    shape_error(head.forward_rows_f32(short, 0.3, &mut out[..rows * (d - 1)]));
    shape_error(head.forward_rows_f32(zr, 0.3, &mut out[..(rows - 1) * d]));
    shape_error(head.backward_rows_f32(zr, 0.3, gr.range(0..rows - 1), &mut dz));
    shape_error(head.backward_rows_f32(zr, 0.3, gr, &mut dz[..d]));
    assert_eq!(head.forward_rows_f32(zr, f64::NAN, &mut out).unwrap_err().kind(), era::ErrorKind::InvalidArgument);
}
