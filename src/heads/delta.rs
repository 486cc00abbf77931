//! The `delta` learner of the Gaussian head (docs/math.md#delta-learning):
//! its state and one optimiser step.

use serde::{Deserialize, Serialize};

use crate::config::{DeltaOptimizer, GaussianConfig};

/// The learner's state: `delta` and Adam's moments.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct DeltaState {
    /// Current compensation.
    pub delta: f64,
    /// Adam first moment.
    #[serde(default)]
    pub adam_m: f64,
    /// Adam second moment.
    #[serde(default)]
    pub adam_v: f64,
    /// Number of Adam steps taken.
    #[serde(default)]
    pub adam_t: u64,
}

/// One learner step (docs/math.md#delta-learning) from `state` with gradient
/// `mean_entropy - H0`, clamped to `delta <= max_delta`. Pure: used by the
/// head and mirrored by the bindings' functional learners.
pub fn delta_step(cfg: &GaussianConfig, state: &DeltaState, mean_entropy: f64) -> DeltaState {
    let l = &cfg.delta_learning;
    let grad = mean_entropy - cfg.target_entropy;
    let mut s = *state;
    match l.optimizer {
        DeltaOptimizer::Fixed => return s,
        DeltaOptimizer::Sgd => s.delta -= l.lr * grad,
        DeltaOptimizer::Adam => {
            s.adam_t += 1;
            s.adam_m = l.beta1 * s.adam_m + (1.0 - l.beta1) * grad;
            s.adam_v = l.beta2 * s.adam_v + (1.0 - l.beta2) * grad * grad;
            let t = s.adam_t.min(i32::MAX as u64) as i32;
            let mhat = s.adam_m / (1.0 - l.beta1.powi(t));
            let vhat = s.adam_v / (1.0 - l.beta2.powi(t));
            s.delta -= l.lr * mhat / (vhat.sqrt() + l.eps);
        }
    }
    s.delta = cfg.clamp_delta(s.delta);
    s
}
