//! The softmax head (ERA_MATH.md section 2).

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::config::SoftmaxConfig;
use crate::error::{bail, Result};
use crate::heads::check_same_shape;
use rayon::prelude::*;

use crate::kernels::{parallel, simd, softmax_entropy, softmax_into, Element};

/// The constants of the affine map `h = slope*s + b` (derived once per head).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftmaxConstants {
    /// `slope = (ub - C/n) / (1 - 1/n)`, >= 0.
    pub slope: f64,
    /// `b = (C - slope) / n`, >= 0.
    pub b: f64,
}

impl SoftmaxConstants {
    /// Derives `slope` and `b` from a validated config. `C` is clamped into
    /// `[ub, n*ub]` so that targets exactly at the ends of the valid range
    /// stay in range after rounding.
    pub fn new(cfg: &SoftmaxConfig) -> Self {
        let n = cfg.num_classes as f64;
        let ub = cfg.tau.ln() / cfg.tau;
        let c = (cfg.target_entropy - 1.0).exp().clamp(ub, n * ub);
        let slope = ((ub - c / n) / (1.0 - 1.0 / n)).max(0.0);
        let b = ((c - slope) / n).max(0.0);
        SoftmaxConstants { slope, b }
    }
}

/// `h = slope*s + b`, kept >= the smallest normal f64: at the lower end of
/// the target range `b = 0`, and a probability that underflows to 0 would
/// give `ln(0)` and an infinite logit (the class still gets the smallest one).
#[inline]
fn h_of(k: SoftmaxConstants, s: f64) -> f64 {
    let h = k.slope * s + k.b;
    if h < f64::MIN_POSITIVE {
        f64::MIN_POSITIVE
    } else {
        h
    }
}

/// `u = -1 - ln(h)`, clamped at 0 (rounding can push `h` a hair past 1/e).
#[inline]
fn u_of(h: f64) -> f64 {
    let u = -1.0 - h.ln();
    if u < 0.0 {
        0.0
    } else {
        u
    }
}

/// Forward of one row (`out` first holds `softmax(z)`).
#[inline]
pub fn forward_row(z: &[f64], k: SoftmaxConstants, out: &mut [f64]) {
    softmax_into(z, out);
    let mut wmin = f64::INFINITY;
    for o in out.iter_mut() {
        let h = h_of(k, *o);
        let u = u_of(h);
        let w = -1.0 - (2.0 * u).sqrt() - 0.75 * u;
        *o = w;
        if w < wmin || w.is_nan() {
            wmin = w;
        }
    }
    for o in out.iter_mut() {
        *o -= wmin;
    }
}

/// `a_i = g_i * dw/dh(h_i)`, 0 where `g_i` or `s_i` is 0.
#[inline]
fn a_of(k: SoftmaxConstants, gi: f64, si: f64) -> f64 {
    let h = h_of(k, si);
    let u = u_of(h);
    // at tau = e and h = 1/e (u = 0) the derivative is infinite (the branch point of
    // Lambert W); keep it finite so that a one-hot row gets its exact zero gradient
    let u = if u < f64::MIN_POSITIVE { f64::MIN_POSITIVE } else { u };
    // where s_i == 0 the term is multiplied by s_i: skip it (its factor may overflow)
    if gi == 0.0 || si == 0.0 {
        0.0
    } else {
        gi * (1.0 / (2.0 * u).sqrt() + 0.75) / h
    }
}

/// Backward of one row (the min-shift is a stop-gradient constant;
/// `dz` first holds `softmax(z)`).
#[inline]
pub fn backward_row(z: &[f64], g: &[f64], k: SoftmaxConstants, dz: &mut [f64]) {
    if k.slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    softmax_into(z, dz);
    let dot: f64 = dz.iter().zip(g).map(|(&si, &gi)| a_of(k, gi, si) * si).sum();
    for (d, &gi) in dz.iter_mut().zip(g) {
        let si = *d;
        *d = k.slope * si * (a_of(k, gi, si) - dot);
    }
}

/// The softmax head. Immutable; share it across threads freely.
#[derive(Debug, Clone)]
pub struct SoftmaxHead {
    cfg: SoftmaxConfig,
    k: SoftmaxConstants,
    threads: usize,
}

impl SoftmaxHead {
    /// Validates `cfg` (including the target range) and builds the head.
    pub fn new(cfg: SoftmaxConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(SoftmaxHead { cfg, k: SoftmaxConstants::new(&cfg), threads: 0 })
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

    /// The configuration.
    pub fn config(&self) -> &SoftmaxConfig {
        &self.cfg
    }

    /// The derived constants.
    pub fn constants(&self) -> SoftmaxConstants {
        self.k
    }

    /// Whether f32 inputs may take the vectorised f32 kernels: `u = -1 - ln(h)`
    /// stays at least 1e-3 (it is smallest at `h = ub`, and 0 only for `tau = e`,
    /// where `sqrt(2u)` would amplify f32 rounding), and `b` is a normal f32 (at
    /// the lower end of the H0 range `b = 0` and `h` can underflow, which f32 and
    /// f64 clamp at different floors). Other heads run f32 inputs through f64.
    pub fn f32_kernels(&self) -> bool {
        let ub = self.cfg.tau.ln() / self.cfg.tau;
        -1.0 - ub.ln() >= 1e-3 && self.k.b >= 1e-30
    }

    fn check_last(&self, name: &str, shape: &[usize]) -> Result<()> {
        match shape.last() {
            None => bail!(InvalidShape, "{name} must have rank >= 1 (shape [..., n]), got a scalar"),
            Some(&d) if d != self.cfg.num_classes => bail!(
                InvalidShape,
                "{name} has last dimension {d}, but the head has num_classes n = {}",
                self.cfg.num_classes
            ),
            _ => Ok(()),
        }
    }

    /// Forward: `z`, `out` of shape `[..., n]`.
    pub fn forward<T: Element>(&self, z: ArrayViewD<'_, T>, mut out: ArrayViewMutD<'_, T>) -> Result<()> {
        self.check_last("z", z.shape())?;
        check_same_shape("out", out.shape(), "z", z.shape())?;
        let k = self.k;
        let threads = parallel::resolve_threads(self.threads);
        let n = self.cfg.num_classes;
        if self.f32_kernels() {
            if let (Some(zs), Some(os)) = (z.as_slice().and_then(T::as_f32_slice), out.as_slice_mut().and_then(T::as_f32_slice_mut)) {
                let (slope, b) = (k.slope as f32, k.b as f32);
                let body = |(zc, oc): (&[f32], &mut [f32])| {
                    for (zr, or) in zc.chunks_exact(n).zip(oc.chunks_exact_mut(n)) {
                        simd::softmax_head_row_f32(zr, slope, b, or);
                    }
                };
                parallel::run(threads, zs.len(), |chunks| {
                    let per = (zs.len() / n).div_ceil(chunks * 4).max(1) * n;
                    if chunks > 1 {
                        zs.par_chunks(per).zip(os.par_chunks_mut(per)).for_each(body);
                    } else {
                        body((zs, os));
                    }
                });
                return Ok(());
            }
        }
        parallel::map_rows(threads, &[&z], &mut out, |_, ins, o| {
            forward_row(ins[0], k, o);
            0.0
        })?;
        Ok(())
    }

    /// Backward (VJP): `grad_z = (d out / d z)^T grad_out`.
    pub fn backward<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        grad_out: ArrayViewD<'_, T>,
        mut grad_z: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.check_last("z", z.shape())?;
        check_same_shape("grad_out", grad_out.shape(), "z", z.shape())?;
        check_same_shape("grad_z", grad_z.shape(), "z", z.shape())?;
        let k = self.k;
        let threads = parallel::resolve_threads(self.threads);
        let n = self.cfg.num_classes;
        if self.f32_kernels() {
            if let (Some(zs), Some(gs), Some(ds)) = (
                z.as_slice().and_then(T::as_f32_slice),
                grad_out.as_slice().and_then(T::as_f32_slice),
                grad_z.as_slice_mut().and_then(T::as_f32_slice_mut),
            ) {
                let (slope, b) = (k.slope as f32, k.b as f32);
                let body = |((zc, gc), dc): ((&[f32], &[f32]), &mut [f32])| {
                    let mut scratch = Vec::new();
                    for ((zr, gr), dr) in zc.chunks_exact(n).zip(gc.chunks_exact(n)).zip(dc.chunks_exact_mut(n)) {
                        simd::softmax_head_row_grad_f32(zr, gr, slope, b, dr, &mut scratch);
                    }
                };
                parallel::run(threads, zs.len(), |chunks| {
                    let per = (zs.len() / n).div_ceil(chunks * 4).max(1) * n;
                    if chunks > 1 {
                        zs.par_chunks(per).zip(gs.par_chunks(per)).zip(ds.par_chunks_mut(per)).for_each(body);
                    } else {
                        body(((zs, gs), ds));
                    }
                });
                return Ok(());
            }
        }
        let (zv, gv) = (z.view(), grad_out.view());
        parallel::map_rows(threads, &[&zv, &gv], &mut grad_z, |_, ins, o| {
            backward_row(ins[0], ins[1], k, o);
            0.0
        })?;
        Ok(())
    }

    /// Per-row `H(softmax(out))`: `out` `[..., n]` -> `entropy` `[...]`.
    pub fn entropy<T: Element>(&self, out: ArrayViewD<'_, T>, mut entropy: ArrayViewMutD<'_, T>) -> Result<()> {
        self.check_last("out", out.shape())?;
        check_same_shape("entropy", entropy.shape(), "out without its last axis", &out.shape()[..out.ndim() - 1])?;
        let h = parallel::reduce_rows(parallel::resolve_threads(self.threads), &out, softmax_entropy)?;
        parallel::store_values(&mut entropy, &h);
        Ok(())
    }
}

/// Row-wise entropy of `softmax(logits / temperature)`, needing no head:
/// `logits` `[..., n]` (any float element type) -> `entropy` `[...]`.
/// `temperature` must be finite and positive.
pub fn categorical_entropy<T: Element, F: Element>(
    logits: ArrayViewD<'_, T>,
    temperature: f64,
    mut entropy: ArrayViewMutD<'_, F>,
) -> Result<()> {
    if !(temperature.is_finite() && temperature > 0.0) {
        bail!(InvalidArgument, "temperature must be finite and > 0, got {temperature}");
    }
    if logits.ndim() == 0 {
        bail!(InvalidShape, "logits must have rank >= 1 (shape [..., n]), got a scalar");
    }
    check_same_shape("entropy", entropy.shape(), "logits without its last axis", &logits.shape()[..logits.ndim() - 1])?;
    let inv_t = 1.0 / temperature;
    let h = parallel::reduce_rows(parallel::resolve_threads(0), &logits, |z| {
        if inv_t == 1.0 {
            softmax_entropy(z)
        } else {
            let zs: Vec<f64> = z.iter().map(|x| x * inv_t).collect();
            softmax_entropy(&zs)
        }
    })?;
    parallel::store_values(&mut entropy, &h);
    Ok(())
}
