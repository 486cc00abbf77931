//! The three ERA heads and the [`Head`] that holds any of them.

pub mod gaussian;
pub mod softmax;
pub mod token;

use serde::{Deserialize, Serialize};

use crate::config::HeadConfig;
use crate::kernels::parallel;
use crate::error::{bail, Error, ErrorKind, Result};
use gaussian::{DeltaState, GaussianHead};
use softmax::SoftmaxHead;
use token::TokenHead;

/// Fails with [`ErrorKind::InvalidShape`] unless `a == b`.
pub(crate) fn check_same_shape(a_name: &str, a: &[usize], b_name: &str, b: &[usize]) -> Result<()> {
    if a != b {
        bail!(InvalidShape, "{a_name} has shape {a:?}, but {b_name} has shape {b:?}");
    }
    Ok(())
}

/// Any ERA head.
#[derive(Debug)]
pub enum Head {
    /// ERA_MATH.md section 1.
    Gaussian(GaussianHead),
    /// ERA_MATH.md section 2.
    Softmax(SoftmaxHead),
    /// ERA_MATH.md section 3.
    Token(TokenHead),
}

/// The JSON document of a saved head.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedHead {
    format: String,
    version: u32,
    config: HeadConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delta_state: Option<DeltaState>,
    /// Threads (0 = `ERA_NUM_THREADS` or all cores).
    #[serde(default, skip_serializing_if = "is_zero")]
    num_threads: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

const FORMAT: &str = "era-head";
const FORMAT_VERSION: u32 = 1;

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

    /// The Gaussian head, or a [`ErrorKind::WrongHeadKind`] error naming `op`.
    pub fn as_gaussian(&self, op: &str) -> Result<&GaussianHead> {
        match self {
            Head::Gaussian(h) => Ok(h),
            other => bail!(WrongHeadKind, "{op} needs a gaussian head, got a {} head", other.kind_name()),
        }
    }

    /// The token head, or a [`ErrorKind::WrongHeadKind`] error naming `op`.
    pub fn as_token(&self, op: &str) -> Result<&TokenHead> {
        match self {
            Head::Token(h) => Ok(h),
            other => bail!(WrongHeadKind, "{op} needs a token head, got a {} head", other.kind_name()),
        }
    }

    /// Serialises the configuration and, for a Gaussian head, the learned
    /// `delta` with the optimiser state, so that [`Head::from_json`] restores
    /// the head exactly.
    pub fn to_json(&self) -> Result<String> {
        let (config, delta_state) = match self {
            Head::Gaussian(h) => (HeadConfig::Gaussian(*h.config()), Some(h.state())),
            Head::Softmax(h) => (HeadConfig::Softmax(*h.config()), None),
            Head::Token(h) => (HeadConfig::Token(*h.config()), None),
        };
        let saved = SavedHead { format: FORMAT.into(), version: FORMAT_VERSION, config, delta_state, num_threads: self.num_threads() };
        serde_json::to_string_pretty(&saved).map_err(|e| Error::new(ErrorKind::Json, format!("cannot serialise head: {e}")))
    }

    /// Restores a head saved by [`Head::to_json`]; also accepts a bare
    /// [`HeadConfig`] document (`{"kind": "softmax", ...}`).
    pub fn from_json(json: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::new(ErrorKind::Json, format!("invalid JSON: {e}")))?;
        let is_saved = value.get("format").is_some();
        if !is_saved {
            let config: HeadConfig = serde_json::from_value(value)
                .map_err(|e| Error::new(ErrorKind::Json, format!("invalid head config: {e}")))?;
            return Head::new(config);
        }
        let saved: SavedHead = serde_json::from_value(value)
            .map_err(|e| Error::new(ErrorKind::Json, format!("invalid saved head: {e}")))?;
        if saved.format != FORMAT {
            bail!(Json, "not an era head document: format is {:?}, expected {FORMAT:?}", saved.format);
        }
        if saved.version != FORMAT_VERSION {
            bail!(Json, "unsupported era head format version {} (this library reads {FORMAT_VERSION})", saved.version);
        }
        let head = match (saved.config, saved.delta_state) {
            (HeadConfig::Gaussian(c), Some(st)) => Head::Gaussian(GaussianHead::with_state(c, st)?),
            (HeadConfig::Gaussian(c), None) => Head::Gaussian(GaussianHead::new(c)?),
            (other, None) => Head::new(other)?,
            (_, Some(_)) => bail!(Json, "delta_state is only valid for a gaussian head"),
        };
        Head::check_num_threads(saved.num_threads)?;
        Ok(head.with_num_threads(saved.num_threads))
    }
}
