//! The three ERA heads and the [`Head`] that holds any of them.
//!
//! A head validates its configuration and its arguments (shapes, values)
//! and dispatches to the arithmetic in [`crate::kernels`]; it holds no
//! arithmetic loops and never touches threads itself.

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod delta;
pub mod gaussian;
mod json;
pub mod softmax;
pub mod token;

use crate::config::HeadConfig;
use crate::error::{bail, Result};
use crate::kernels::parallel;
use gaussian::GaussianHead;
use softmax::SoftmaxHead;
use token::TokenHead;

/// Any ERA head.
#[derive(Debug)]
pub enum Head {
    /// docs/math.md#gaussian-head
    Gaussian(GaussianHead),
    /// docs/math.md#softmax-head
    Softmax(SoftmaxHead),
    /// docs/math.md#token-head
    Token(TokenHead),
}

impl Head {
    /// Validates `config` and builds the head.
    pub fn new(config: HeadConfig) -> Result<Self> {
        Ok(match config {
            HeadConfig::Gaussian(c) => Head::Gaussian(GaussianHead::new(c)?),
            HeadConfig::Softmax(c) => Head::Softmax(SoftmaxHead::new(c)?),
            HeadConfig::Token(c) => Head::Token(TokenHead::new(c)?),
        })
    }

    /// Checks a thread count (0 = default, at most [`parallel::MAX_THREADS`]).
    pub fn check_num_threads(n: usize) -> Result<()> {
        if n > parallel::MAX_THREADS {
            bail!(InvalidConfig, "num_threads must be at most {}, got {n}", parallel::MAX_THREADS);
        }
        Ok(())
    }

    /// Sets the number of threads of the head's kernels (0 = the
    /// `ERA_NUM_THREADS` environment variable, else all cores; counts above
    /// [`parallel::MAX_THREADS`] act as that maximum).
    pub fn with_num_threads(self, n: usize) -> Self {
        match self {
            Head::Gaussian(h) => Head::Gaussian(h.with_num_threads(n)),
            Head::Softmax(h) => Head::Softmax(h.with_num_threads(n)),
            Head::Token(h) => Head::Token(h.with_num_threads(n)),
        }
    }

    /// The configured number of threads (0 = default).
    pub fn num_threads(&self) -> usize {
        match self {
            Head::Gaussian(h) => h.num_threads(),
            Head::Softmax(h) => h.num_threads(),
            Head::Token(h) => h.num_threads(),
        }
    }

    /// The configuration the head was built with (the Gaussian `delta` field
    /// holds the *current* delta).
    pub fn config(&self) -> HeadConfig {
        match self {
            Head::Gaussian(h) => HeadConfig::Gaussian(crate::config::GaussianConfig { delta: h.delta(), ..*h.config() }),
            Head::Softmax(h) => HeadConfig::Softmax(*h.config()),
            Head::Token(h) => HeadConfig::Token(*h.config()),
        }
    }

    /// The kind's name ("gaussian", "softmax", "token").
    pub fn kind_name(&self) -> &'static str {
        match self {
            Head::Gaussian(_) => "gaussian",
            Head::Softmax(_) => "softmax",
            Head::Token(_) => "token",
        }
    }

    /// The Gaussian head, or a [`ErrorKind::WrongHeadKind`](crate::ErrorKind::WrongHeadKind) error naming `op`.
    pub fn as_gaussian(&self, op: &str) -> Result<&GaussianHead> {
        match self {
            Head::Gaussian(h) => Ok(h),
            other => bail!(WrongHeadKind, "{op} needs a gaussian head, got a {} head", other.kind_name()),
        }
    }

    /// The softmax head, or a [`ErrorKind::WrongHeadKind`](crate::ErrorKind::WrongHeadKind) error naming `op`.
    pub fn as_softmax(&self, op: &str) -> Result<&SoftmaxHead> {
        match self {
            Head::Softmax(h) => Ok(h),
            other => bail!(WrongHeadKind, "{op} needs a softmax head, got a {} head", other.kind_name()),
        }
    }

    /// The token head, or a [`ErrorKind::WrongHeadKind`](crate::ErrorKind::WrongHeadKind) error naming `op`.
    pub fn as_token(&self, op: &str) -> Result<&TokenHead> {
        match self {
            Head::Token(h) => Ok(h),
            other => bail!(WrongHeadKind, "{op} needs a token head, got a {} head", other.kind_name()),
        }
    }
}
