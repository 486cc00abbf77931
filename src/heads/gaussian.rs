//! The Gaussian head (docs/math.md#gaussian-head): validation, the `delta`
//! argument and learner state, and dispatch to [`crate::kernels::gaussian`];
//! the head-free Gaussian and truncated-normal entropies; `mask.rs`: the
//! head under a per-row active-dimension mask.

mod mask;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Zip};

use crate::config::GaussianConfig;
use crate::error::{bail, check_same_shape, Result};
use crate::heads::delta::{delta_step, DeltaState};
pub use crate::kernels::gaussian::mask::Inactive;
use crate::kernels::gaussian::{
    backward_row, backward_row_saved, forward_row, gaussian_entropy_view, gaussian_k, gaussian_rows_f32, gaussian_rows_grad_f32,
    gaussian_rows_grad_saved_f32, row_k, truncated_normal_entropy_1d,
};
use crate::kernels::vmath::{softmax_into, Rows};
use crate::kernels::{parallel, Element};

/// Rows per stack buffer of a chunk's per-row d/d delta when only their sum is
/// wanted (a scalar `delta`): a multiple of every kernel's group of rows.
const SCALAR_ROWS: usize = 512;

/// Row-wise Gaussian entropy of log-stds, needing no head: `log_std`
/// `[..., D]` -> `entropy` `[...]`, each `sum(log_std) + 0.5*D*ln(2*pi*e)`.
pub fn gaussian_entropy<T: Element>(log_std: ArrayViewD<'_, T>, mut entropy: ArrayViewMutD<'_, T>) -> Result<()> {
    if log_std.ndim() == 0 {
        bail!(InvalidShape, "log_std must have rank >= 1 (shape [..., D]), got a scalar");
    }
    check_same_shape("entropy", entropy.shape(), "log_std without its last axis", &log_std.shape()[..log_std.ndim() - 1])?;
    let h = parallel::reduce_rows(parallel::resolve_threads(0), &log_std, gaussian_entropy_view)?;
    parallel::store_values(&mut entropy, &h);
    Ok(())
}

/// Row-wise truncated-normal entropy summed over the last axis: `mean` and
/// `log_std` have shape `[..., D]`, `entropy` shape `[...]`.
pub fn truncated_normal_entropy<T: Element>(
    mean: ArrayViewD<'_, T>,
    log_std: ArrayViewD<'_, T>,
    low: f64,
    high: f64,
    mut entropy: ArrayViewMutD<'_, T>,
) -> Result<()> {
    if low.is_nan() || high.is_nan() || low >= high {
        bail!(InvalidArgument, "truncation interval must satisfy low < high, got [{low}, {high}]");
    }
    if mean.ndim() == 0 {
        bail!(InvalidShape, "mean must have rank >= 1 (shape [..., D])");
    }
    check_same_shape("mean", mean.shape(), "log_std", log_std.shape())?;
    check_same_shape("entropy", entropy.shape(), "mean without its last axis", &mean.shape()[..mean.ndim() - 1])?;
    let last = Axis(mean.ndim() - 1);
    Zip::from(mean.lanes(last)).and(log_std.lanes(last)).and(entropy.view_mut()).for_each(|m, l, e| {
        let h: f64 = m.iter().zip(l.iter()).map(|(&mi, &li)| truncated_normal_entropy_1d(mi.to_f64(), li.to_f64(), low, high)).sum();
        *e = T::from_f64(h);
    });
    Ok(())
}

/// The Gaussian head: immutable except for its synchronised `delta` learner.
#[derive(Debug)]
pub struct GaussianHead {
    cfg: GaussianConfig,
    threads: usize,
    state: Mutex<DeltaState>,
    /// Lock-free mirror of `state.delta` (f64 bits) for forward/backward.
    delta_bits: AtomicU64,
}

impl GaussianHead {
    /// Validates `cfg` and builds the head with `delta = cfg.delta`.
    pub fn new(cfg: GaussianConfig) -> Result<Self> {
        cfg.validate()?;
        let state = DeltaState { delta: cfg.delta, ..Default::default() };
        Ok(GaussianHead { cfg, threads: 0, state: Mutex::new(state), delta_bits: AtomicU64::new(cfg.delta.to_bits()) })
    }

    /// Sets the number of threads (0 = `ERA_NUM_THREADS` or all cores).
    pub fn with_num_threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// The configured number of threads (0 = default).
    pub fn num_threads(&self) -> usize {
        self.threads
    }

    /// Rebuilds a head with a saved learner state (validated).
    pub fn with_state(cfg: GaussianConfig, state: DeltaState) -> Result<Self> {
        let head = Self::new(cfg)?;
        if !(state.delta.is_finite() && state.adam_m.is_finite() && state.adam_v.is_finite() && state.adam_v >= 0.0) {
            bail!(InvalidConfig, "saved delta state must be finite (adam_v >= 0), got {state:?}");
        }
        cfg.check_delta(state.delta)?;
        head.delta_bits.store(state.delta.to_bits(), Ordering::SeqCst);
        *head.lock() = state;
        Ok(head)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeltaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration the head was built with.
    pub fn config(&self) -> &GaussianConfig {
        &self.cfg
    }

    /// The current compensation `delta`.
    pub fn delta(&self) -> f64 {
        f64::from_bits(self.delta_bits.load(Ordering::SeqCst))
    }

    /// A copy of the learner state.
    pub fn state(&self) -> DeltaState {
        *self.lock()
    }

    /// Sets `delta`, clamped to the feasible maximum; returns the value set.
    /// NaN is rejected; the Adam moments are kept.
    pub fn set_delta(&self, delta: f64) -> Result<f64> {
        if delta.is_nan() || delta == f64::NEG_INFINITY {
            bail!(InvalidArgument, "delta must be a number (+inf clamps to the feasible maximum), got {delta}");
        }
        let mut st = self.lock();
        st.delta = self.cfg.clamp_delta(delta);
        self.delta_bits.store(st.delta.to_bits(), Ordering::SeqCst);
        Ok(st.delta)
    }

    /// One learner step from the batch-mean entropy of the bounded policy;
    /// returns the new `delta`. Concurrent calls are serialised. A step whose
    /// result would not be finite (an overflowing learning rate) fails and
    /// leaves the state unchanged.
    pub fn update_delta(&self, mean_entropy: f64) -> Result<f64> {
        if !mean_entropy.is_finite() {
            bail!(InvalidArgument, "mean_entropy must be finite, got {mean_entropy}");
        }
        let mut st = self.lock();
        let next = delta_step(&self.cfg, &st, mean_entropy);
        if !(next.delta.is_finite() && next.adam_m.is_finite() && next.adam_v.is_finite()) {
            bail!(
                InvalidArgument,
                "this update would make delta non-finite ({} from {} with gradient {}); the state is unchanged (is the learning rate {} too large?)",
                next.delta,
                st.delta,
                mean_entropy - self.cfg.target_entropy,
                self.cfg.delta_learning.lr
            );
        }
        *st = next;
        self.delta_bits.store(st.delta.to_bits(), Ordering::SeqCst);
        Ok(st.delta)
    }

    fn check_last(&self, name: &str, shape: &[usize]) -> Result<()> {
        match shape.last() {
            None => bail!(InvalidShape, "{name} must have rank >= 1 (shape [..., D]), got a scalar"),
            Some(&d) if d != self.cfg.dim => {
                bail!(InvalidShape, "{name} has last dimension {d}, but the head has dim D = {}", self.cfg.dim)
            }
            _ => Ok(()),
        }
    }

    /// Forward with the head's current `delta`: `z`, `out` of shape `[..., D]`.
    pub fn forward<T: Element>(&self, z: ArrayViewD<'_, T>, out: ArrayViewMutD<'_, T>) -> Result<()> {
        self.forward_with_delta(z, DeltaArg::Scalar(self.delta()), out)
    }

    /// Forward with `delta` given per call (a scalar or one value per row).
    pub fn forward_with_delta<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        delta: DeltaArg<'_, T>,
        mut out: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.check_last("z", z.shape())?;
        check_same_shape("out", out.shape(), "z", z.shape())?;
        let ks = self.ks(&z, &delta)?;
        let (lo, hi) = (self.cfg.log_std_min, self.cfg.log_std_max);
        let threads = parallel::resolve_threads(self.threads);
        // f32: the vectorised kernel (the rows of strided tensors read where
        // they lie or gathered first, a strided output written from a
        // contiguous buffer)
        if let Some(zr) = parallel::rows_f32(&z)? {
            if parallel::with_dense_f32(&mut out, |os| self.forward_f32(zr.rows(), &ks, os))?.is_some() {
                return Ok(());
            }
        }
        parallel::map_rows(threads, &[&z], &mut out, |r, ins, o| {
            forward_row(ins[0], row_k(&ks, r), lo, hi, o);
            0.0
        })?;
        Ok(())
    }

    /// Backward (VJP) with the head's current `delta`.
    pub fn backward<T: Element>(&self, z: ArrayViewD<'_, T>, grad_out: ArrayViewD<'_, T>, grad_z: ArrayViewMutD<'_, T>) -> Result<()> {
        self.backward_with_delta(z, DeltaArg::Scalar(self.delta()), grad_out, grad_z, None)
    }

    /// Backward with `delta` given per call; `grad_delta` (optional) receives
    /// d/d`delta`, in the shape of `delta` (summed over rows for a scalar,
    /// which then needs a one-element `grad_delta`).
    pub fn backward_with_delta<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        delta: DeltaArg<'_, T>,
        grad_out: ArrayViewD<'_, T>,
        grad_z: ArrayViewMutD<'_, T>,
        grad_delta: Option<ArrayViewMutD<'_, T>>,
    ) -> Result<()> {
        self.backward_from(z, delta, grad_out, grad_z, grad_delta, false)
    }

    /// The backward from `z` (`saved` false) or from `softmax(z)`.
    fn backward_from<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        delta: DeltaArg<'_, T>,
        grad_out: ArrayViewD<'_, T>,
        mut grad_z: ArrayViewMutD<'_, T>,
        grad_delta: Option<ArrayViewMutD<'_, T>>,
        saved: bool,
    ) -> Result<()> {
        let name = if saved { "saved" } else { "z" };
        self.check_last(name, z.shape())?;
        check_same_shape("grad_out", grad_out.shape(), name, z.shape())?;
        check_same_shape("grad_z", grad_z.shape(), name, z.shape())?;
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
        let scalar = matches!(delta, DeltaArg::Scalar(_));
        // d/d delta: per row, or (scalar delta) the sum over rows, which each
        // parallel chunk accumulates on its own (no per-row buffer to fill first)
        let dense = match (parallel::rows_f32(&z)?, parallel::rows_f32(&grad_out)?) {
            (Some(zs), Some(gs)) => Some((zs, gs)),
            _ => None,
        };
        let fast = match &dense {
            // f32: the vectorised kernel (the rows of strided tensors read where
            // they lie or gathered first, a strided output written from a
            // contiguous buffer)
            Some((zr, gr)) => {
                parallel::with_dense_f32(&mut grad_z, |ds| self.backward_any_f32(zr.rows(), gr.rows(), &ks, scalar, ds, saved))?
            }
            None => None,
        };
        let dd: Vec<f64> = match fast {
            Some(dd) => dd,
            None => {
                let (zv, gv) = (z.view(), grad_out.view());
                parallel::map_rows(threads, &[&zv, &gv], &mut grad_z, |r, ins, o| {
                    if saved {
                        o.copy_from_slice(ins[0]);
                        backward_row_saved(ins[1], row_k(&ks, r), lo, hi, o)
                    } else {
                        backward_row(ins[0], ins[1], row_k(&ks, r), lo, hi, o)
                    }
                })?
            }
        };
        if let Some(mut g) = grad_delta {
            match delta {
                DeltaArg::PerRow(_) => parallel::store_values(&mut g, &dd),
                DeltaArg::Scalar(_) => g.fill(T::from_f64(dd.iter().sum())),
            }
        }
        Ok(())
    }

    /// [`GaussianHead::forward_with_delta`] that also writes the residual
    /// `saved = softmax(z)` (the shape and type of `z`), from which
    /// [`GaussianHead::backward_saved`] computes the backward without `z`
    /// (docs/math.md#gaussian-backward): one exponential per element for
    /// forward and backward together instead of two. `out` is the same bits
    /// as the forward's; f32 rows take the vectorised kernel for both outputs.
    pub fn forward_saving<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        delta: DeltaArg<'_, T>,
        mut out: ArrayViewMutD<'_, T>,
        mut saved: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.check_last("z", z.shape())?;
        check_same_shape("out", out.shape(), "z", z.shape())?;
        check_same_shape("saved", saved.shape(), "z", z.shape())?;
        let ks = self.ks(&z, &delta)?;
        if let Some(zr) = parallel::rows_f32(&z)? {
            let done = parallel::with_dense_f32(&mut out, |os| {
                parallel::with_dense_f32(&mut saved, |ss| self.forward_saving_f32(zr.rows(), &ks, os, ss))
            })?;
            if let Some(r) = done {
                return r.map(|_| ());
            }
        }
        let (lo, hi) = (self.cfg.log_std_min, self.cfg.log_std_max);
        let threads = parallel::resolve_threads(self.threads);
        parallel::map_rows(threads, &[&z], &mut out, |r, ins, o| {
            forward_row(ins[0], row_k(&ks, r), lo, hi, o);
            0.0
        })?;
        parallel::map_rows(threads, &[&z], &mut saved, |_, ins, o| {
            softmax_into(ins[0], o);
            0.0
        })?;
        Ok(())
    }

    /// [`GaussianHead::backward_with_delta`] from the residual `saved` that
    /// [`GaussianHead::forward_saving`] wrote (with the same `delta`) instead
    /// of `z`: the same results bit for bit, without an exponential.
    pub fn backward_saved<T: Element>(
        &self,
        saved: ArrayViewD<'_, T>,
        delta: DeltaArg<'_, T>,
        grad_out: ArrayViewD<'_, T>,
        grad_z: ArrayViewMutD<'_, T>,
        grad_delta: Option<ArrayViewMutD<'_, T>>,
    ) -> Result<()> {
        self.backward_from(saved, delta, grad_out, grad_z, grad_delta, true)
    }

    /// Forward of f32 rows with one `delta` for every row into contiguous rows
    /// `out`: the same results as [`GaussianHead::forward_with_delta`], without
    /// building array views (the C ABI's path for its most common call).
    pub fn forward_rows_f32(&self, z: Rows<'_>, delta: f64, out: &mut [f32]) -> Result<()> {
        self.check_rows("z", &z, out.len())?;
        self.cfg.check_delta(delta)?;
        self.forward_f32(z, &[gaussian_k(&self.cfg, delta)], out);
        Ok(())
    }

    /// Backward of f32 rows `z`, `grad_out` with one `delta` for every row:
    /// writes contiguous rows `grad_z` and returns d/d`delta` (the sum over
    /// rows); the same results as [`GaussianHead::backward_with_delta`].
    pub fn backward_rows_f32(&self, z: Rows<'_>, delta: f64, grad_out: Rows<'_>, grad_z: &mut [f32]) -> Result<f64> {
        self.check_rows("z", &z, grad_z.len())?;
        self.check_rows("grad_out", &grad_out, grad_z.len())?;
        self.cfg.check_delta(delta)?;
        let dd = self.backward_f32(z, grad_out, &[gaussian_k(&self.cfg, delta)], true, grad_z);
        Ok(dd.iter().sum())
    }

    /// [`GaussianHead::forward_rows_f32`] that also writes `saved = softmax(z)`
    /// (contiguous rows, as `out`); see [`GaussianHead::forward_saving`].
    pub fn forward_saving_rows_f32(&self, z: Rows<'_>, delta: f64, out: &mut [f32], saved: &mut [f32]) -> Result<()> {
        self.check_rows("z", &z, out.len())?;
        if saved.len() != out.len() {
            bail!(InvalidShape, "saved holds {} values, out {}", saved.len(), out.len());
        }
        self.cfg.check_delta(delta)?;
        if out.is_empty() {
            return Ok(());
        }
        self.forward_saving_f32(z, &[gaussian_k(&self.cfg, delta)], out, saved);
        Ok(())
    }

    /// [`GaussianHead::backward_rows_f32`] from rows of the saved `softmax(z)`
    /// (see [`GaussianHead::backward_saved`]); returns d/d`delta`.
    pub fn backward_saved_rows_f32(&self, saved: Rows<'_>, delta: f64, grad_out: Rows<'_>, grad_z: &mut [f32]) -> Result<f64> {
        self.check_rows("saved", &saved, grad_z.len())?;
        self.check_rows("grad_out", &grad_out, grad_z.len())?;
        self.cfg.check_delta(delta)?;
        let dd = self.backward_any_f32(saved, grad_out, &[gaussian_k(&self.cfg, delta)], true, grad_z, true);
        Ok(dd.iter().sum())
    }

    /// Fails unless `rows` holds rows of `D` values, `len / D` of them.
    fn check_rows(&self, name: &str, rows: &Rows<'_>, len: usize) -> Result<()> {
        let d = self.cfg.dim;
        if rows.n() != d || rows.rows().checked_mul(d) != Some(len) {
            bail!(InvalidShape, "{name} has {} rows of {}, expected {} rows of {d}", rows.rows(), rows.n(), len / d.max(1));
        }
        Ok(())
    }

    /// The vectorised f32 forward, rows split across threads; `ks` as in
    /// [`gaussian_rows_f32`].
    fn forward_f32(&self, zs: Rows<'_>, ks: &[f64], os: &mut [f32]) {
        self.forward_saving_f32(zs, ks, os, &mut []);
    }

    /// [`GaussianHead::forward_f32`] that also writes `softmax(z)` into `ss`
    /// (contiguous rows as `os`; empty for none), rows split across threads.
    fn forward_saving_f32(&self, zs: Rows<'_>, ks: &[f64], os: &mut [f32], ss: &mut [f32]) {
        let (lo, hi) = (self.cfg.log_std_min as f32, self.cfg.log_std_max as f32);
        let (d, threads) = (self.cfg.dim, parallel::resolve_threads(self.threads));
        let s_row = if ss.is_empty() { 0 } else { d };
        parallel::for_chunks2(parallel::PAR_MIN_ELEMENTS_GAUSSIAN, threads, zs.rows() * d, zs.rows(), os, d, ss, s_row, |c| {
            let kc = k_chunk(ks, c.rows.start, c.rows.len());
            let saved = if s_row == 0 { None } else { Some(c.b) };
            gaussian_rows_f32(zs.range(c.rows), kc, lo, hi, c.a, saved)
        });
    }

    /// The vectorised f32 backward, rows split into chunks: d/d delta per row,
    /// or (`scalar`) one sum per chunk, which each chunk accumulates on its own
    /// (no per-row buffer to fill first).
    fn backward_f32(&self, zs: Rows<'_>, gs: Rows<'_>, ks: &[f64], scalar: bool, ds: &mut [f32]) -> Vec<f64> {
        self.backward_any_f32(zs, gs, ks, scalar, ds, false)
    }

    /// [`GaussianHead::backward_f32`] from rows of `z` or (`saved`) of the
    /// saved `softmax(z)`.
    fn backward_any_f32(&self, zs: Rows<'_>, gs: Rows<'_>, ks: &[f64], scalar: bool, ds: &mut [f32], saved: bool) -> Vec<f64> {
        let kernel = if saved { gaussian_rows_grad_saved_f32 } else { gaussian_rows_grad_f32 };
        let (lo, hi) = (self.cfg.log_std_min as f32, self.cfg.log_std_max as f32);
        let (d, threads, rows) = (self.cfg.dim, parallel::resolve_threads(self.threads), zs.rows());
        let mut dd = if scalar { Vec::new() } else { vec![0.0f64; rows] };
        let sums = parallel::for_chunks2(
            parallel::PAR_MIN_ELEMENTS_GAUSSIAN,
            threads,
            rows * d,
            rows,
            ds,
            d,
            &mut dd,
            usize::from(!scalar),
            |c| {
                let kc = k_chunk(ks, c.rows.start, c.rows.len());
                let (zc, gc) = (zs.range(c.rows.clone()), gs.range(c.rows.clone()));
                if scalar {
                    // the rows' values a stack buffer at a time (a multiple of the kernels'
                    // groups), summed in row order as one buffer would be
                    let mut local = [0.0f64; SCALAR_ROWS];
                    let mut sum = -0.0f64; // where `Sum` for f64 starts
                    let n = c.rows.len();
                    for r in (0..n).step_by(SCALAR_ROWS) {
                        let e = (r + SCALAR_ROWS).min(n);
                        let kr = k_chunk(kc, r, e - r);
                        kernel(zc.range(r..e), gc.range(r..e), kr, lo, hi, &mut c.a[r * d..e * d], &mut local[..e - r]);
                        sum = local[..e - r].iter().fold(sum, |a, &v| a + v);
                    }
                    sum
                } else {
                    kernel(zc, gc, kc, lo, hi, c.a, c.b);
                    0.0
                }
            },
        );
        if scalar {
            sums
        } else {
            dd
        }
    }

    /// Per-row Gaussian entropy of head outputs: `out` `[..., D]` -> `entropy` `[...]`.
    pub fn entropy<T: Element>(&self, out: ArrayViewD<'_, T>, mut entropy: ArrayViewMutD<'_, T>) -> Result<()> {
        self.check_last("out", out.shape())?;
        check_same_shape("entropy", entropy.shape(), "out without its last axis", &out.shape()[..out.ndim() - 1])?;
        let h = parallel::reduce_rows(parallel::resolve_threads(self.threads), &out, gaussian_entropy_view)?;
        parallel::store_values(&mut entropy, &h);
        Ok(())
    }

    /// The `k` values (docs/math.md#gaussian-forward) of a call, validating the feasibility of
    /// every `delta`: one per row in row order for a per-row `delta`, a single
    /// value for a scalar one (see [`row_k`]).
    fn ks<T: Element>(&self, z: &ArrayViewD<'_, T>, delta: &DeltaArg<'_, T>) -> Result<Vec<f64>> {
        let batch = &z.shape()[..z.ndim() - 1];
        let rows: usize = batch.iter().product();
        match delta {
            DeltaArg::Scalar(d) => {
                self.cfg.check_delta(*d)?;
                Ok(vec![gaussian_k(&self.cfg, *d)])
            }
            DeltaArg::PerRow(d) => {
                check_same_shape("delta", d.shape(), "z without its last axis", batch)?;
                crate::kernels::reserve(rows.saturating_mul(16), "per-row k")?;
                d.iter()
                    .map(|x| {
                        let x = x.to_f64();
                        self.cfg.check_delta(x)?;
                        Ok(gaussian_k(&self.cfg, x))
                    })
                    .collect()
            }
        }
    }
}

/// The `k` values of rows `start..start + n` for a kernel call: the single
/// value of a scalar `delta` as it is, else that range.
fn k_chunk(ks: &[f64], start: usize, n: usize) -> &[f64] {
    if ks.len() == 1 {
        ks
    } else {
        &ks[start..start + n]
    }
}

/// `delta` for one call: one value for all rows, or one per row (shape of
/// the input without its last axis, iterated in logical row-major order).
pub enum DeltaArg<'a, T> {
    /// The same `delta` for every row.
    Scalar(f64),
    /// One `delta` per row.
    PerRow(ArrayViewD<'a, T>),
}
