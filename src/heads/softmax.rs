//! The softmax head (ERA_MATH.md section 2).

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::config::SoftmaxConfig;
use crate::error::{bail, Result};
use crate::heads::check_same_shape;
use crate::kernels::{map_rows, map_rows2, reduce_rows, softmax_entropy, softmax_into, Element};

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

/// Forward of one row; `s` and `w` are scratch of the row's length.
#[inline]
pub fn forward_row(z: &[f64], k: SoftmaxConstants, s: &mut [f64], out: &mut [f64]) {
    softmax_into(z, s);
    let mut wmin = f64::INFINITY;
    for (o, &si) in out.iter_mut().zip(s.iter()) {
        let h = h_of(k, si);
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

/// Backward of one row (the min-shift is a stop-gradient constant).
#[inline]
pub fn backward_row(z: &[f64], g: &[f64], k: SoftmaxConstants, s: &mut [f64], dz: &mut [f64]) {
    if k.slope == 0.0 {
        // degenerate head (C = n*ub): the output does not depend on z
        dz.fill(0.0);
        return;
    }
    softmax_into(z, s);
    let mut dot = 0.0;
    for ((a, &gi), &si) in dz.iter_mut().zip(g).zip(s.iter()) {
        let h = h_of(k, si);
        let u = u_of(h);
        // where s_i == 0 the term is multiplied by s_i below: skip it (its factor may overflow)
        // at tau = e and h = 1/e (u = 0) the derivative is infinite (the branch point of
        // Lambert W); keep it finite so that a one-hot row gets its exact zero gradient
        let u = if u < f64::MIN_POSITIVE { f64::MIN_POSITIVE } else { u };
        *a = if gi == 0.0 || si == 0.0 { 0.0 } else { gi * (1.0 / (2.0 * u).sqrt() + 0.75) / h };
        dot += *a * si;
    }
    for (d, &si) in dz.iter_mut().zip(s.iter()) {
        *d = k.slope * si * (*d - dot);
    }
}

/// The softmax head. Immutable; share it across threads freely.
#[derive(Debug, Clone)]
pub struct SoftmaxHead {
    cfg: SoftmaxConfig,
    k: SoftmaxConstants,
}

impl SoftmaxHead {
    /// Validates `cfg` (including the target range) and builds the head.
    pub fn new(cfg: SoftmaxConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(SoftmaxHead { cfg, k: SoftmaxConstants::new(&cfg) })
    }

    /// The configuration.
    pub fn config(&self) -> &SoftmaxConfig {
        &self.cfg
    }

    /// The derived constants.
    pub fn constants(&self) -> SoftmaxConstants {
        self.k
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
        let mut s = vec![0.0; self.cfg.num_classes];
        map_rows(&z, &mut out, |zr, or| forward_row(zr, self.k, &mut s, or));
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
        let mut s = vec![0.0; self.cfg.num_classes];
        map_rows2(&z, &grad_out, &mut grad_z, |zr, gr, dr| backward_row(zr, gr, self.k, &mut s, dr));
        Ok(())
    }

    /// Per-row `H(softmax(out))`: `out` `[..., n]` -> `entropy` `[...]`.
    pub fn entropy<T: Element>(&self, out: ArrayViewD<'_, T>, mut entropy: ArrayViewMutD<'_, T>) -> Result<()> {
        self.check_last("out", out.shape())?;
        check_same_shape("entropy", entropy.shape(), "out without its last axis", &out.shape()[..out.ndim() - 1])?;
        reduce_rows(&out, &mut entropy, softmax_entropy);
        Ok(())
    }
}
