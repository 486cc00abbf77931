//! The Gaussian head under a per-row active-dimension mask
//! (docs/math.md#gaussian-mask): validation of the mask and dispatch to
//! [`crate::kernels::gaussian::mask`]. A mask of ones in every row takes the
//! unmasked head's path (the same results bit for bit, in every dtype).

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::{DeltaArg, GaussianHead};
use crate::error::{bail, check_same_shape, Result};
use crate::kernels::gaussian::mask::{masked_backward_row, masked_forward_row, Inactive};
use crate::kernels::gaussian::row_k;
use crate::kernels::{parallel, Element};

/// Fails unless every mask entry is 0 or 1; tells whether all are 1.
fn check_mask<T: Element>(mask: &ArrayViewD<'_, T>) -> Result<bool> {
    let mut all = true;
    for (i, v) in mask.iter().enumerate() {
        let v = v.to_f64();
        if v == 0.0 {
            all = false;
        } else if v != 1.0 {
            bail!(InvalidArgument, "mask entries must be 0 or 1, got {v} at flat index {i} (row-major)");
        }
    }
    Ok(all)
}

impl GaussianHead {
    /// Forward under a per-row active-dimension mask (docs/math.md#gaussian-mask):
    /// `z`, `mask` and `out` of shape `[..., D]`, `mask` of 0s and 1s in the dtype
    /// of `z`. Each row's active coordinates get the head of their count `a`
    /// (target `(a/D)*(H0 + delta)`); the inactive ones `z` or the fill value.
    pub fn forward_masked<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        mask: ArrayViewD<'_, T>,
        delta: DeltaArg<'_, T>,
        inactive: Inactive,
        mut out: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.check_last("z", z.shape())?;
        check_same_shape("mask", mask.shape(), "z", z.shape())?;
        check_same_shape("out", out.shape(), "z", z.shape())?;
        if check_mask(&mask)? {
            return self.forward_with_delta(z, delta, out);
        }
        let ks = self.ks(&z, &delta)?;
        let (lo, hi) = (self.cfg.log_std_min, self.cfg.log_std_max);
        let threads = parallel::resolve_threads(self.threads);
        let (zv, mv) = (z.view(), mask.view());
        parallel::map_rows(threads, &[&zv, &mv], &mut out, |r, ins, o| {
            masked_forward_row(ins[0], ins[1], row_k(&ks, r), lo, hi, inactive, o);
            0.0
        })?;
        Ok(())
    }

    /// Backward (VJP) of [`GaussianHead::forward_masked`]; `grad_delta`
    /// (optional) as in [`GaussianHead::backward_with_delta`]: one value per row
    /// for a per-row `delta`, the sum over rows for a scalar one.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_masked<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        mask: ArrayViewD<'_, T>,
        delta: DeltaArg<'_, T>,
        inactive: Inactive,
        grad_out: ArrayViewD<'_, T>,
        mut grad_z: ArrayViewMutD<'_, T>,
        grad_delta: Option<ArrayViewMutD<'_, T>>,
    ) -> Result<()> {
        self.check_last("z", z.shape())?;
        check_same_shape("mask", mask.shape(), "z", z.shape())?;
        check_same_shape("grad_out", grad_out.shape(), "z", z.shape())?;
        check_same_shape("grad_z", grad_z.shape(), "z", z.shape())?;
        if check_mask(&mask)? {
            return self.backward_with_delta(z, delta, grad_out, grad_z, grad_delta);
        }
        let ks = self.ks(&z, &delta)?;
        if let Some(g) = &grad_delta {
            match &delta {
                DeltaArg::PerRow(d) => check_same_shape("grad_delta", g.shape(), "delta", d.shape())?,
                DeltaArg::Scalar(_) if g.len() != 1 => {
                    bail!(InvalidShape, "grad_delta must hold one element for a scalar delta, got shape {:?}", g.shape())
                }
                DeltaArg::Scalar(_) => {}
            }
        }
        let (lo, hi) = (self.cfg.log_std_min, self.cfg.log_std_max);
        let threads = parallel::resolve_threads(self.threads);
        let (zv, mv, gv) = (z.view(), mask.view(), grad_out.view());
        let dd = parallel::map_rows(threads, &[&zv, &mv, &gv], &mut grad_z, |r, ins, o| {
            masked_backward_row(ins[0], ins[1], ins[2], row_k(&ks, r), lo, hi, inactive, o)
        })?;
        if let Some(mut g) = grad_delta {
            match delta {
                DeltaArg::PerRow(_) => parallel::store_values(&mut g, &dd),
                DeltaArg::Scalar(_) => g.fill(T::from_f64(dd.iter().sum())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array, ArrayD, IxDyn};

    use super::*;
    use crate::config::GaussianConfig;

    fn head(dim: usize, h0: f64) -> GaussianHead {
        let cfg = GaussianConfig { dim, target_entropy: h0, log_std_min: -5.0, log_std_max: 1.0, ..GaussianConfig::new(dim, h0) };
        GaussianHead::new(cfg).expect("a valid head")
    }

    fn data(rows: usize, d: usize, seed: f64) -> ArrayD<f64> {
        Array::from_shape_fn(IxDyn(&[rows, d]), |ix| ((ix[0] * d + ix[1]) as f64 * 0.731 + seed).sin() * 2.5)
    }

    #[test]
    fn ones_mask_is_the_unmasked_head_bit_for_bit_f32_and_f64() {
        let (rows, d) = (37, 6);
        let h = head(d, -2.0);
        let z = data(rows, d, 0.3);
        let g = data(rows, d, 1.1);
        let ones = ArrayD::<f64>::ones(IxDyn(&[rows, d]));
        let (mut a, mut b) = (ArrayD::<f64>::zeros(IxDyn(&[rows, d])), ArrayD::<f64>::zeros(IxDyn(&[rows, d])));
        h.forward_with_delta(z.view(), DeltaArg::Scalar(0.2), a.view_mut()).unwrap();
        h.forward_masked(z.view(), ones.view(), DeltaArg::Scalar(0.2), Inactive::PassThrough, b.view_mut()).unwrap();
        assert_eq!(a, b);
        let (zf, gf, of) = (z.mapv(|v| v as f32), g.mapv(|v| v as f32), ones.mapv(|v| v as f32));
        let (mut af, mut bf) = (ArrayD::<f32>::zeros(IxDyn(&[rows, d])), ArrayD::<f32>::zeros(IxDyn(&[rows, d])));
        let (mut ga, mut gb) = (ArrayD::<f32>::zeros(IxDyn(&[1])), ArrayD::<f32>::zeros(IxDyn(&[1])));
        h.forward_with_delta(zf.view(), DeltaArg::Scalar(0.2), af.view_mut()).unwrap();
        h.forward_masked(zf.view(), of.view(), DeltaArg::Scalar(0.2), Inactive::Fill(0.0), bf.view_mut()).unwrap();
        assert_eq!(af.mapv(f32::to_bits), bf.mapv(f32::to_bits));
        h.backward_with_delta(zf.view(), DeltaArg::Scalar(0.2), gf.view(), af.view_mut(), Some(ga.view_mut())).unwrap();
        h.backward_masked(zf.view(), of.view(), DeltaArg::Scalar(0.2), Inactive::Fill(0.0), gf.view(), bf.view_mut(), Some(gb.view_mut()))
            .unwrap();
        assert_eq!(af.mapv(f32::to_bits), bf.mapv(f32::to_bits));
        assert_eq!(ga[0].to_bits(), gb[0].to_bits());
    }

    #[test]
    fn rows_with_different_counts_are_smaller_heads() {
        let (d, h0, delta) = (5, -1.5, 0.4);
        let h = head(d, h0);
        let z = data(4, d, 0.0);
        let g = data(4, d, 2.0);
        let mask = ndarray::arr2(&[[1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0, 0.0], [0.0; 5]]).into_dyn();
        let deltas = ndarray::arr1(&[delta, delta, delta, delta]).into_dyn();
        let mut out = ArrayD::<f64>::zeros(IxDyn(&[4, d]));
        let mut gz = out.clone();
        let mut gd = ArrayD::<f64>::zeros(IxDyn(&[4]));
        h.forward_masked(z.view(), mask.view(), DeltaArg::PerRow(deltas.view()), Inactive::Fill(7.0), out.view_mut()).unwrap();
        h.backward_masked(
            z.view(),
            mask.view(),
            DeltaArg::PerRow(deltas.view()),
            Inactive::Fill(7.0),
            g.view(),
            gz.view_mut(),
            Some(gd.view_mut()),
        )
        .unwrap();
        for r in 0..4 {
            let act: Vec<usize> = (0..d).filter(|&i| mask[[r, i]] == 1.0).collect();
            let a = act.len();
            if a == 0 {
                assert!((0..d).all(|i| out[[r, i]] == 7.0 && gz[[r, i]] == 0.0) && gd[r] == 0.0);
                continue;
            }
            let f = a as f64 / d as f64;
            let sub = head(a, h0 * f);
            let zs = Array::from_shape_fn(IxDyn(&[1, a]), |ix| z[[r, act[ix[1]]]]);
            let gs = Array::from_shape_fn(IxDyn(&[1, a]), |ix| g[[r, act[ix[1]]]]);
            let (mut os, mut gzs, mut gds) = (ArrayD::zeros(IxDyn(&[1, a])), ArrayD::zeros(IxDyn(&[1, a])), ArrayD::zeros(IxDyn(&[1])));
            sub.forward_with_delta(zs.view(), DeltaArg::Scalar(delta * f), os.view_mut()).unwrap();
            sub.backward_with_delta(zs.view(), DeltaArg::Scalar(delta * f), gs.view(), gzs.view_mut(), Some(gds.view_mut())).unwrap();
            for (j, &i) in act.iter().enumerate() {
                assert!((out[[r, i]] - os[[0, j]]).abs() < 1e-12, "row {r}");
                assert!((gz[[r, i]] - gzs[[0, j]]).abs() < 1e-12, "row {r}");
            }
            // d/d delta of the row: d/d(delta*f) of the smaller head, times f
            assert!((gd[r] - gds[0] * f).abs() < 1e-12, "row {r}");
            let entropy: f64 = act.iter().map(|&i| out[[r, i]]).sum::<f64>() + 0.5 * a as f64 * crate::config::L2PE;
            assert!(entropy >= f * (h0 + delta) - 1e-12);
        }
    }

    #[test]
    fn the_floor_holds_on_every_active_set() {
        // random and extreme rows (scales up to 1000, so that most coordinates clip), every mask
        let (d, h0) = (5, -4.0);
        let h = head(d, h0);
        let rows = 1 << d;
        for (scale, delta) in [(0.1, 0.0), (3.0, -2.0), (1000.0, 1.5)] {
            let z = data(rows, d, scale) * scale;
            let mask = Array::from_shape_fn(IxDyn(&[rows, d]), |ix| f64::from(((ix[0] >> ix[1]) & 1) as u8));
            let mut out = ArrayD::<f64>::zeros(IxDyn(&[rows, d]));
            h.forward_masked(z.view(), mask.view(), DeltaArg::Scalar(delta), Inactive::Fill(0.0), out.view_mut()).unwrap();
            for r in 0..rows {
                let a = (0..d).filter(|&i| mask[[r, i]] == 1.0).count() as f64;
                let entropy: f64 = (0..d).map(|i| mask[[r, i]] * out[[r, i]]).sum::<f64>() + 0.5 * a * crate::config::L2PE;
                let floor = a / d as f64 * (h0 + delta);
                assert!(entropy >= floor - 1e-9 * (1.0 + floor.abs()), "row {r}: {entropy} < {floor}");
                assert!((0..d).all(|i| mask[[r, i]] == 1.0 || out[[r, i]] == 0.0));
            }
        }
    }

    #[test]
    fn mask_values_and_shapes_are_checked() {
        let h = head(3, -1.0);
        let z = data(2, 3, 0.0);
        let mut out = z.clone();
        let mut bad = ArrayD::<f64>::ones(IxDyn(&[2, 3]));
        bad[[1, 2]] = 0.5;
        let e = h.forward_masked(z.view(), bad.view(), DeltaArg::Scalar(0.0), Inactive::PassThrough, out.view_mut()).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument);
        bad[[1, 2]] = f64::NAN;
        assert!(h.forward_masked(z.view(), bad.view(), DeltaArg::Scalar(0.0), Inactive::PassThrough, out.view_mut()).is_err());
        let short = ArrayD::<f64>::ones(IxDyn(&[1, 3]));
        let e = h.forward_masked(z.view(), short.view(), DeltaArg::Scalar(0.0), Inactive::PassThrough, out.view_mut()).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidShape);
        let e = h.forward_masked(z.view(), bad.view(), DeltaArg::Scalar(1e9), Inactive::PassThrough, out.view_mut()).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument); // the mask is checked first
    }
}
