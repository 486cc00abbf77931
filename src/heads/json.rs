//! Saving and restoring heads as JSON.

use serde::{Deserialize, Serialize};

use crate::config::HeadConfig;
use crate::error::{bail, Error, ErrorKind, Result};
use crate::heads::delta::DeltaState;
use crate::heads::gaussian::GaussianHead;
use crate::heads::Head;

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
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::new(ErrorKind::Json, format!("invalid JSON: {e}")))?;
        let is_saved = value.get("format").is_some();
        if !is_saved {
            let config: HeadConfig =
                serde_json::from_value(value).map_err(|e| Error::new(ErrorKind::Json, format!("invalid head config: {e}")))?;
            return Head::new(config);
        }
        let saved: SavedHead =
            serde_json::from_value(value).map_err(|e| Error::new(ErrorKind::Json, format!("invalid saved head: {e}")))?;
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
