//! # era — Entropy Regularizing Activation
//!
//! ERA (ICLR 2026) builds an entropy lower bound into a network's output
//! layer: a fixed activation maps raw outputs to distribution parameters whose
//! entropy is at least a target `H0`, so the loss needs no entropy term.
//! This crate implements the three heads of the paper on CPU, for f32 and
//! f64 (and bf16/f16 token logits):
//!
//! - [`GaussianHead`]: log-stds of a diagonal Gaussian policy (SAC, PPO, TD-MPC2),
//!   with the learned compensation `delta` and the truncated-normal entropy;
//! - [`SoftmaxHead`]: logits of a categorical distribution;
//! - [`TokenHead`]: scaled log-probs for LLM RL (GRPO and friends).
//!
//! The exact mathematics is in `docs/math.md`. The Rust API works on
//! `ndarray` views of any rank (rows along the last axis, any strides).
//! The C ABI (module [`capi`], header `include/era.h`) is a thin layer over it.
//!
//! ```
//! use era::{GaussianConfig, GaussianHead};
//! use ndarray::array;
//!
//! let mut cfg = GaussianConfig::new(3, -1.5);
//! cfg.log_std_min = -5.0;
//! let head = GaussianHead::new(cfg).unwrap();
//! let z = array![[0.5f64, -1.0, 2.0]].into_dyn();
//! let mut out = z.clone();
//! head.forward(z.view(), out.view_mut()).unwrap();
//! assert!((out[[0, 0]] - -1.009114).abs() < 1e-6);
//! ```

#![warn(missing_docs)]

// Only `capi` is part of the C header: cbindgen skips the modules marked
// `cbindgen:ignore`, so their public items (constants included) never reach
// `era.h`, whatever they are called.
pub mod capi;
/// cbindgen:ignore
pub mod config;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod heads;
/// cbindgen:ignore
pub mod kernels;

pub use config::{DeltaLearning, DeltaOptimizer, GaussianConfig, HeadConfig, SoftmaxConfig, TokenConfig, L2PE};
pub use error::{Error, ErrorKind, Result};
pub use heads::delta::DeltaState;
pub use heads::gaussian::{gaussian_entropy, truncated_normal_entropy, DeltaArg, GaussianHead};
pub use heads::softmax::{categorical_entropy, SoftmaxHead};
pub use heads::token::{ColumnOutputs, DecideOutputs, IndexView, IndexViewMut, TokenHead, TokenOutputs, TopkMut, TopkView, VocabBlock};
pub use heads::Head;
pub use kernels::vmath::Rows;
pub use kernels::Element;
