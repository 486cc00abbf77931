//! The softmax head (docs/math.md#softmax-head): validation and dispatch to
//! [`crate::kernels::softmax`]; the head-free categorical entropy.

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::config::SoftmaxConfig;
use crate::error::{bail, check_same_shape, Result};
use crate::kernels::softmax::{
    backward_row, backward_row_saved, dwdh_row, forward_row, softmax_head_row_dw_f32, softmax_head_row_f32, softmax_head_row_grad_dw_f32,
    softmax_head_row_grad_f32, softmax_head_row_grad_saved_f32, softmax_head_rows_dw_f32, softmax_head_rows_f32,
    softmax_head_rows_grad_dw_f32, softmax_head_rows_grad_f32, softmax_head_rows_grad_saved_f32, ROWS_ACROSS_LANES_MAX_N,
};
use crate::kernels::vmath::{softmax_entropy_iter, softmax_into, Rows};

/// A rows-across-lanes f32 backward kernel (from `z` or from the saved softmax).
type RowsGrad = for<'a, 'b, 'c> fn(Rows<'a>, Rows<'b>, f32, f32, &'c mut [f32]);
/// An along-row f32 backward kernel (from `z` or from the saved softmax).
type RowGrad = for<'a, 'b, 'c, 'd> fn(&'a [f32], &'b [f32], f32, f32, &'c mut [f32], &'d mut Vec<f32>);
use crate::kernels::{parallel, Element};

pub use crate::kernels::softmax::SoftmaxConstants;

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
            Some(&d) if d != self.cfg.num_classes => {
                bail!(InvalidShape, "{name} has last dimension {d}, but the head has num_classes n = {}", self.cfg.num_classes)
            }
            _ => Ok(()),
        }
    }

    /// Forward: `z`, `out` of shape `[..., n]`.
    pub fn forward<T: Element>(&self, z: ArrayViewD<'_, T>, out: ArrayViewMutD<'_, T>) -> Result<()> {
        self.forward_impl(z, out, None)
    }

    /// [`SoftmaxHead::forward`] that also writes the residual `saved =
    /// softmax(z)` (the shape and type of `z`), from which
    /// [`SoftmaxHead::backward_saved`] computes the backward without `z`
    /// (docs/math.md#softmax-backward): one exponential per element for
    /// forward and backward together instead of two. `out` is the same bits
    /// as the forward's.
    pub fn forward_saving<T: Element>(&self, z: ArrayViewD<'_, T>, out: ArrayViewMutD<'_, T>, saved: ArrayViewMutD<'_, T>) -> Result<()> {
        check_same_shape("saved", saved.shape(), "z", z.shape())?;
        self.forward_impl(z, out, Some(saved))
    }

    fn forward_impl<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        mut out: ArrayViewMutD<'_, T>,
        mut saved: Option<ArrayViewMutD<'_, T>>,
    ) -> Result<()> {
        self.check_last("z", z.shape())?;
        check_same_shape("out", out.shape(), "z", z.shape())?;
        let k = self.k;
        let threads = parallel::resolve_threads(self.threads);
        let n = self.cfg.num_classes;
        // f32: the vectorised kernels (the rows of strided tensors read where
        // they lie or gathered first, a strided output written from a
        // contiguous buffer)
        if self.f32_kernels() {
            if let Some(zr) = parallel::rows_f32(&z)? {
                let zs = zr.rows();
                let (slope, b) = (k.slope as f32, k.b as f32);
                let run = |os: &mut [f32], ss: &mut [f32]| {
                    let s_row = if ss.is_empty() { 0 } else { n };
                    parallel::for_chunks2(parallel::PAR_MIN_ELEMENTS, threads, zs.rows() * n, zs.rows(), os, n, ss, s_row, |c| {
                        let zc = zs.range(c.rows);
                        let sv = if s_row == 0 { None } else { Some(c.b) };
                        if n <= ROWS_ACROSS_LANES_MAX_N {
                            softmax_head_rows_f32(zc, slope, b, c.a, sv);
                            return;
                        }
                        let mut sv = sv;
                        for (i, or) in c.a.chunks_exact_mut(n).enumerate() {
                            let si = sv.as_deref_mut().map(|s| &mut s[i * n..(i + 1) * n]);
                            softmax_head_row_f32(zc.row(i), slope, b, or, si);
                        }
                    });
                };
                let done = match saved.as_mut() {
                    Some(sa) => parallel::with_dense_f32(&mut out, |os| parallel::with_dense_f32(sa, |ss| run(os, ss)))?,
                    None => parallel::with_dense_f32(&mut out, |os| {
                        run(os, &mut []);
                        Ok(Some(()))
                    })?,
                };
                if let Some(r) = done {
                    r?;
                    return Ok(());
                }
            }
        }
        parallel::map_rows(threads, &[&z], &mut out, |_, ins, o| {
            forward_row(ins[0], k, o);
            0.0
        })?;
        if let Some(sa) = saved.as_mut() {
            parallel::map_rows(threads, &[&z], sa, |_, ins, o| {
                softmax_into(ins[0], o);
                0.0
            })?;
        }
        Ok(())
    }

    /// [`SoftmaxHead::forward_saving`] that also writes a second residual,
    /// `dwdh = dw/dh = (1/sqrt(2u) + 0.75)/h` per element (the shape and type
    /// of `z`; [`dwdh_row`]), from which [`SoftmaxHead::backward_saved_dw`]
    /// computes the backward with no logarithm, square root or division on
    /// the vectorised f32 kernels (docs/math.md#saved-softmax). `out` and
    /// `saved` are the same bits as [`SoftmaxHead::forward_saving`]'s.
    pub fn forward_saving_dw<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        mut out: ArrayViewMutD<'_, T>,
        mut saved: ArrayViewMutD<'_, T>,
        mut dwdh: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.check_last("z", z.shape())?;
        check_same_shape("out", out.shape(), "z", z.shape())?;
        check_same_shape("saved", saved.shape(), "z", z.shape())?;
        check_same_shape("dwdh", dwdh.shape(), "z", z.shape())?;
        let k = self.k;
        let threads = parallel::resolve_threads(self.threads);
        let n = self.cfg.num_classes;
        if self.f32_kernels() {
            if let Some(zr) = parallel::rows_f32(&z)? {
                let zs = zr.rows();
                let (slope, b) = (k.slope as f32, k.b as f32);
                let run = |os: &mut [f32], ss: &mut [f32], qs: &mut [f32]| {
                    parallel::for_chunks3(parallel::PAR_MIN_ELEMENTS, threads, zs.rows(), n, (os, ss, qs), |rows, o, s, q| {
                        let zc = zs.range(rows);
                        if n <= ROWS_ACROSS_LANES_MAX_N {
                            softmax_head_rows_dw_f32(zc, slope, b, o, s, q);
                            return;
                        }
                        let rows = o.chunks_exact_mut(n).zip(s.chunks_exact_mut(n)).zip(q.chunks_exact_mut(n));
                        for (i, ((or, sr), qr)) in rows.enumerate() {
                            softmax_head_row_dw_f32(zc.row(i), slope, b, or, sr, qr);
                        }
                    });
                };
                let done = parallel::with_dense_f32(&mut out, |os| {
                    parallel::with_dense_f32(&mut saved, |ss| parallel::with_dense_f32(&mut dwdh, |qs| run(os, ss, qs)))
                })?;
                // every level is Some: T is f32 (rows_f32 gave rows)
                if let Some(inner) = done {
                    if let Some(inner) = inner? {
                        if inner?.is_some() {
                            return Ok(());
                        }
                    }
                }
            }
        }
        self.forward_impl(z, out.view_mut(), Some(saved.view_mut()))?;
        parallel::map_rows(threads, &[&saved.view()], &mut dwdh, |_, ins, o| {
            dwdh_row(ins[0], k, o);
            0.0
        })?;
        Ok(())
    }

    /// [`SoftmaxHead::backward_saved`] from both residuals that
    /// [`SoftmaxHead::forward_saving_dw`] wrote: on the vectorised f32 kernels
    /// a few multiplications per element and a sum per row, the same bits as the backward
    /// from `z`; elsewhere the backward from `saved` (`dwdh` unread), where
    /// near `tau = e` the largest entry's `dw/dh` alone would not be accurate.
    pub fn backward_saved_dw<T: Element>(
        &self,
        saved: ArrayViewD<'_, T>,
        dwdh: ArrayViewD<'_, T>,
        grad_out: ArrayViewD<'_, T>,
        mut grad_z: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.check_last("saved", saved.shape())?;
        check_same_shape("dwdh", dwdh.shape(), "saved", saved.shape())?;
        check_same_shape("grad_out", grad_out.shape(), "saved", saved.shape())?;
        check_same_shape("grad_z", grad_z.shape(), "saved", saved.shape())?;
        let threads = parallel::resolve_threads(self.threads);
        let n = self.cfg.num_classes;
        if self.f32_kernels() {
            if let (Some(sr), Some(qr), Some(gr)) =
                (parallel::rows_f32(&saved)?, parallel::rows_f32(&dwdh)?, parallel::rows_f32(&grad_out)?)
            {
                let (ss, qs, gs) = (sr.rows(), qr.rows(), gr.rows());
                let slope = self.k.slope as f32;
                let done = parallel::with_dense_f32(&mut grad_z, |ds| {
                    parallel::for_chunks(parallel::PAR_MIN_ELEMENTS, threads, ss.rows() * n, ss.rows(), ds, n, |c| {
                        let (sc, qc, gc) = (ss.range(c.rows.clone()), qs.range(c.rows.clone()), gs.range(c.rows));
                        if n <= ROWS_ACROSS_LANES_MAX_N {
                            softmax_head_rows_grad_dw_f32(sc, qc, gc, slope, c.a);
                            return;
                        }
                        for (i, dr) in c.a.chunks_exact_mut(n).enumerate() {
                            softmax_head_row_grad_dw_f32(sc.row(i), qc.row(i), gc.row(i), slope, dr);
                        }
                    });
                })?;
                if done.is_some() {
                    return Ok(());
                }
            }
        }
        self.backward_impl(saved, grad_out, grad_z, true)
    }

    /// Backward (VJP): `grad_z = (d out / d z)^T grad_out`.
    pub fn backward<T: Element>(&self, z: ArrayViewD<'_, T>, grad_out: ArrayViewD<'_, T>, grad_z: ArrayViewMutD<'_, T>) -> Result<()> {
        self.backward_impl(z, grad_out, grad_z, false)
    }

    /// [`SoftmaxHead::backward`] from the residual `saved` that
    /// [`SoftmaxHead::forward_saving`] wrote, instead of `z`: without an
    /// exponential; the same bits on the vectorised f32 kernels, equal to
    /// rounding elsewhere (the largest probability's complement `1 - s_j` is
    /// summed from the saved probabilities rather than from the exponentials).
    pub fn backward_saved<T: Element>(
        &self,
        saved: ArrayViewD<'_, T>,
        grad_out: ArrayViewD<'_, T>,
        grad_z: ArrayViewMutD<'_, T>,
    ) -> Result<()> {
        self.backward_impl(saved, grad_out, grad_z, true)
    }

    fn backward_impl<T: Element>(
        &self,
        z: ArrayViewD<'_, T>,
        grad_out: ArrayViewD<'_, T>,
        mut grad_z: ArrayViewMutD<'_, T>,
        saved: bool,
    ) -> Result<()> {
        let name = if saved { "saved" } else { "z" };
        self.check_last(name, z.shape())?;
        check_same_shape("grad_out", grad_out.shape(), name, z.shape())?;
        check_same_shape("grad_z", grad_z.shape(), name, z.shape())?;
        let k = self.k;
        let threads = parallel::resolve_threads(self.threads);
        let n = self.cfg.num_classes;
        if self.f32_kernels() {
            if let (Some(zr), Some(gr)) = (parallel::rows_f32(&z)?, parallel::rows_f32(&grad_out)?) {
                let (zs, gs) = (zr.rows(), gr.rows());
                let (slope, b) = (k.slope as f32, k.b as f32);
                let (rows_kernel, row_kernel) = if saved {
                    (softmax_head_rows_grad_saved_f32 as RowsGrad, softmax_head_row_grad_saved_f32 as RowGrad)
                } else {
                    (softmax_head_rows_grad_f32 as RowsGrad, softmax_head_row_grad_f32 as RowGrad)
                };
                let done = parallel::with_dense_f32(&mut grad_z, |ds| {
                    parallel::for_chunks(parallel::PAR_MIN_ELEMENTS, threads, zs.rows() * n, zs.rows(), ds, n, |c| {
                        let (zc, gc) = (zs.range(c.rows.clone()), gs.range(c.rows));
                        if n <= ROWS_ACROSS_LANES_MAX_N {
                            rows_kernel(zc, gc, slope, b, c.a);
                            return;
                        }
                        let mut scratch = Vec::new();
                        for (i, dr) in c.a.chunks_exact_mut(n).enumerate() {
                            row_kernel(zc.row(i), gc.row(i), slope, b, dr, &mut scratch);
                        }
                    });
                })?;
                if done.is_some() {
                    return Ok(());
                }
            }
        }
        let (zv, gv) = (z.view(), grad_out.view());
        parallel::map_rows(threads, &[&zv, &gv], &mut grad_z, |_, ins, o| {
            if saved {
                o.copy_from_slice(ins[0]);
                backward_row_saved(ins[1], k, o);
            } else {
                backward_row(ins[0], ins[1], k, o);
            }
            0.0
        })?;
        Ok(())
    }

    /// Per-row `H(softmax(out))` (docs/math.md#categorical-entropy): `out`
    /// `[..., n]` -> `entropy` `[...]`.
    pub fn entropy<T: Element>(&self, out: ArrayViewD<'_, T>, entropy: ArrayViewMutD<'_, T>) -> Result<()> {
        self.check_last("out", out.shape())?;
        categorical_entropy_threads(out, 1.0, entropy, self.threads)
    }
}

/// Row-wise entropy of `softmax(logits / temperature)`, needing no head
/// (docs/math.md#categorical-entropy): `logits` `[..., n]` (any float
/// element type) -> `entropy` `[...]`. `temperature` must be finite and positive.
pub fn categorical_entropy<T: Element, F: Element>(
    logits: ArrayViewD<'_, T>,
    temperature: f64,
    entropy: ArrayViewMutD<'_, F>,
) -> Result<()> {
    categorical_entropy_threads(logits, temperature, entropy, 0)
}

/// [`categorical_entropy`] on `threads` threads (0 = the default count).
pub(crate) fn categorical_entropy_threads<T: Element, F: Element>(
    logits: ArrayViewD<'_, T>,
    temperature: f64,
    mut entropy: ArrayViewMutD<'_, F>,
    threads: usize,
) -> Result<()> {
    if !(temperature.is_finite() && temperature > 0.0) {
        bail!(InvalidArgument, "temperature must be finite and > 0, got {temperature}");
    }
    if logits.ndim() == 0 {
        bail!(InvalidShape, "logits must have rank >= 1 (shape [..., n]), got a scalar");
    }
    check_same_shape("entropy", entropy.shape(), "logits without its last axis", &logits.shape()[..logits.ndim() - 1])?;
    let inv_t = 1.0 / temperature;
    let h = parallel::reduce_rows(parallel::resolve_threads(threads), &logits, |row| {
        softmax_entropy_iter(|| row.iter().map(|x| if inv_t == 1.0 { x.to_f64() } else { x.to_f64() * inv_t }))
    })?;
    parallel::store_values(&mut entropy, &h);
    Ok(())
}
