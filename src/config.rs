//! Head configurations: serde-serialisable, validated at construction.
//!
//! Every field has the default of docs/math.md (the official ERA code) unless
//! it must be chosen by the user (`dim`, `num_classes`, `target_entropy`).

use serde::{Deserialize, Serialize};

use crate::error::{bail, Result};

/// `ln(2*pi*e)`: the entropy of a standard normal is `0.5 * L2PE`.
pub const L2PE: f64 = 2.837_877_066_409_345_3;

/// How the Gaussian head's compensation `delta` is learned (docs/math.md#delta-learning).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeltaOptimizer {
    /// `delta` stays at its configured value; updates are no-ops.
    Fixed,
    /// Plain gradient descent: `delta -= lr * (H - H0)`.
    Sgd,
    /// Adam with bias correction, as SAC uses for its temperature.
    Adam,
}

/// Settings of the `delta` learner.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeltaLearning {
    /// Which update rule (default Adam).
    pub optimizer: DeltaOptimizer,
    /// Learning rate, >= 0 (default 3e-4, SAC's temperature learning rate).
    pub lr: f64,
    /// Adam's first-moment decay, in [0, 1) (default 0.9).
    pub beta1: f64,
    /// Adam's second-moment decay, in [0, 1) (default 0.999).
    pub beta2: f64,
    /// Adam's denominator epsilon, > 0 (default 1e-8).
    pub eps: f64,
}

impl Default for DeltaLearning {
    fn default() -> Self {
        DeltaLearning { optimizer: DeltaOptimizer::Adam, lr: 3e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

impl DeltaLearning {
    /// A learner that keeps `delta` fixed.
    pub fn fixed() -> Self {
        DeltaLearning { optimizer: DeltaOptimizer::Fixed, ..Default::default() }
    }

    /// Checks the ranges of every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            bail!(InvalidConfig, "delta learning rate must be finite and >= 0, got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.beta1) {
            bail!(InvalidConfig, "delta Adam beta1 must be in [0, 1), got {}", self.beta1);
        }
        if !(0.0..1.0).contains(&self.beta2) {
            bail!(InvalidConfig, "delta Adam beta2 must be in [0, 1), got {}", self.beta2);
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            bail!(InvalidConfig, "delta Adam eps must be finite and > 0, got {}", self.eps);
        }
        Ok(())
    }
}

/// The Gaussian head (docs/math.md#gaussian-head): maps a raw log-std
/// pre-activation `z` in R^D to log-stds whose Gaussian entropy is at least
/// `target_entropy + delta`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GaussianConfig {
    /// Action dimension `D` >= 1.
    pub dim: usize,
    /// Target entropy `H0` of the whole D-dimensional Gaussian, in nats.
    pub target_entropy: f64,
    /// Lower log-std bound (default -8).
    #[serde(default = "default_log_std_min")]
    pub log_std_min: f64,
    /// Upper log-std bound (default 0), > `log_std_min`.
    #[serde(default)]
    pub log_std_max: f64,
    /// Initial compensation `delta` (default 0).
    #[serde(default)]
    pub delta: f64,
    /// How `delta` is learned.
    #[serde(default)]
    pub delta_learning: DeltaLearning,
}

/// Largest accepted `|log_std_min|`, `|log_std_max|`. Standard deviations of
/// `e^1000` are far outside f64 (which overflows at `e^709.8`); the bound also
/// keeps the rounding error of `sum(out)` (about `D * eps * D*|log_std_max|`)
/// negligible next to the entropy target.
pub const MAX_ABS_LOG_STD: f64 = 1000.0;

fn default_log_std_min() -> f64 {
    -8.0
}

impl GaussianConfig {
    /// A config with the official defaults for the given dimension and target.
    pub fn new(dim: usize, target_entropy: f64) -> Self {
        GaussianConfig { dim, target_entropy, log_std_min: -8.0, log_std_max: 0.0, delta: 0.0, delta_learning: DeltaLearning::default() }
    }

    /// The largest total entropy the bounds allow: `D*(log_std_max + 0.5*L2PE)`.
    pub fn max_entropy(&self) -> f64 {
        self.dim as f64 * (self.log_std_max + 0.5 * L2PE)
    }

    /// The largest feasible `delta`: `max_entropy() - target_entropy`.
    pub fn max_delta(&self) -> f64 {
        self.max_entropy() - self.target_entropy
    }

    /// The largest value `<= delta` that passes [`Self::check_delta`]:
    /// `min(delta, max_delta())`, stepped down where rounding of
    /// `target_entropy + delta` would still exceed `max_entropy()`.
    pub fn clamp_delta(&self, delta: f64) -> f64 {
        let mut d = delta.min(self.max_delta());
        let mut step = f64::EPSILON * d.abs().max(f64::MIN_POSITIVE);
        while self.target_entropy + d > self.max_entropy() && d.is_finite() {
            d -= step;
            step *= 2.0;
        }
        d
    }

    /// Checks that `delta` keeps the target feasible.
    pub fn check_delta(&self, delta: f64) -> Result<()> {
        if delta.is_nan() {
            bail!(InvalidArgument, "delta must not be NaN");
        }
        if self.target_entropy + delta > self.max_entropy() {
            bail!(
                InfeasibleTarget,
                "target_entropy + delta = {} exceeds the widest Gaussian the bounds allow, D*(log_std_max + 0.5*ln(2*pi*e)) = {} (D = {}, log_std_max = {})",
                self.target_entropy + delta,
                self.max_entropy(),
                self.dim,
                self.log_std_max
            );
        }
        Ok(())
    }

    /// Checks every field and the feasibility of `target_entropy + delta`.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            bail!(InvalidConfig, "gaussian dim must be >= 1, got 0");
        }
        if !self.target_entropy.is_finite() {
            bail!(InvalidConfig, "gaussian target_entropy must be finite, got {}", self.target_entropy);
        }
        if !self.log_std_min.is_finite() || !self.log_std_max.is_finite() {
            bail!(InvalidConfig, "log_std_min and log_std_max must be finite, got {} and {}", self.log_std_min, self.log_std_max);
        }
        if self.log_std_min.abs() > MAX_ABS_LOG_STD || self.log_std_max.abs() > MAX_ABS_LOG_STD {
            bail!(
                InvalidConfig,
                "log_std_min and log_std_max must lie in [-{MAX_ABS_LOG_STD}, {MAX_ABS_LOG_STD}] (exp overflows long before), got {} and {}",
                self.log_std_min,
                self.log_std_max
            );
        }
        if self.log_std_min >= self.log_std_max {
            bail!(InvalidConfig, "log_std_min must be < log_std_max, got {} >= {}", self.log_std_min, self.log_std_max);
        }
        if !self.delta.is_finite() {
            bail!(InvalidConfig, "delta must be finite, got {}", self.delta);
        }
        self.delta_learning.validate()?;
        self.check_delta(self.delta)
    }
}

/// The softmax head (docs/math.md#softmax-head): maps logits in R^n to logits
/// whose softmax has entropy at least `target_entropy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxConfig {
    /// Number of classes `n` >= 2.
    pub num_classes: usize,
    /// Target entropy `H0` in nats.
    pub target_entropy: f64,
    /// Sharpness `tau` >= e (default 4).
    #[serde(default = "default_tau")]
    pub tau: f64,
}

fn default_tau() -> f64 {
    4.0
}

impl SoftmaxConfig {
    /// A config with the default `tau = 4`.
    pub fn new(num_classes: usize, target_entropy: f64) -> Self {
        SoftmaxConfig { num_classes, target_entropy, tau: 4.0 }
    }

    /// The valid range of `target_entropy` for this `n` and `tau`:
    /// `[1 + ln(ln(tau)/tau), 1 + ln(n*ln(tau)/tau)]`.
    pub fn target_range(&self) -> (f64, f64) {
        let ub = self.tau.ln() / self.tau;
        (1.0 + ub.ln(), 1.0 + (self.num_classes as f64 * ub).ln())
    }

    /// Checks every field and that the target lies in [`Self::target_range`].
    pub fn validate(&self) -> Result<()> {
        if self.num_classes < 2 {
            bail!(InvalidConfig, "softmax num_classes must be >= 2, got {}", self.num_classes);
        }
        if !(self.tau.is_finite() && self.tau >= std::f64::consts::E) {
            bail!(InvalidConfig, "softmax tau must be finite and >= e = 2.718281828..., got {}", self.tau);
        }
        if !self.target_entropy.is_finite() {
            bail!(InvalidConfig, "softmax target_entropy must be finite, got {}", self.target_entropy);
        }
        let (lo, hi) = self.target_range();
        let tol = 1e-12 * (1.0 + self.target_entropy.abs());
        if self.target_entropy < lo - tol || self.target_entropy > hi + tol {
            bail!(
                InfeasibleTarget,
                "softmax target_entropy must lie in [{lo}, {hi}] for n = {} and tau = {} (1 + ln(ln(tau)/tau) <= H0 <= 1 + ln(n*ln(tau)/tau)), got {}",
                self.num_classes,
                self.tau,
                self.target_entropy
            );
        }
        Ok(())
    }
}

/// The token head (docs/math.md#token-head) for LLM policy updates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Scale factor `k` > 1 (default 2).
    pub k: f64,
    /// Sharpen responses whose forking-token entropy is below this (default 0.45).
    pub omega_low: f64,
    /// Flatten responses whose forking-token entropy is above this (default 3.0).
    pub omega_high: f64,
    /// Fraction `rho` of highest-entropy tokens per response, in (0, 1] (default 0.2).
    pub top_fraction: f64,
    /// Sampling temperature `T` > 0 (default 1).
    pub temperature: f64,
    /// Divide advantages by the scale (default true).
    pub advantage_scaling: bool,
    /// Restrict the log-prob to the K largest logits; 0 = full vocabulary (default 0).
    pub vocab_topk: usize,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            k: 2.0,
            omega_low: 0.45,
            omega_high: 3.0,
            top_fraction: 0.2,
            temperature: 1.0,
            advantage_scaling: true,
            vocab_topk: 0,
        }
    }
}

impl TokenConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.k.is_finite() && self.k > 1.0) {
            bail!(InvalidConfig, "token k must be finite and > 1, got {}", self.k);
        }
        if !(self.omega_low.is_finite() && self.omega_high.is_finite()) {
            bail!(InvalidConfig, "token omega_low and omega_high must be finite, got {} and {}", self.omega_low, self.omega_high);
        }
        if !(0.0 <= self.omega_low && self.omega_low <= self.omega_high) {
            bail!(
                InvalidConfig,
                "token thresholds must satisfy 0 <= omega_low <= omega_high, got {} and {}",
                self.omega_low,
                self.omega_high
            );
        }
        if !(self.top_fraction > 0.0 && self.top_fraction <= 1.0) {
            bail!(InvalidConfig, "token top_fraction must be in (0, 1], got {}", self.top_fraction);
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!(InvalidConfig, "token temperature must be finite and > 0, got {}", self.temperature);
        }
        Ok(())
    }
}

/// The configuration of any head; in JSON the `kind` field tells which.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HeadConfig {
    /// docs/math.md#gaussian-head.
    Gaussian(GaussianConfig),
    /// docs/math.md#softmax-head.
    Softmax(SoftmaxConfig),
    /// docs/math.md#token-head.
    Token(TokenConfig),
}

impl HeadConfig {
    /// Validates the contained config.
    pub fn validate(&self) -> Result<()> {
        match self {
            HeadConfig::Gaussian(c) => c.validate(),
            HeadConfig::Softmax(c) => c.validate(),
            HeadConfig::Token(c) => c.validate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn l2pe_is_ln_2_pi_e() {
        assert!((L2PE - (2.0 * std::f64::consts::PI * std::f64::consts::E).ln()).abs() < 1e-14);
        // ln is not correctly rounded
    }

    #[test]
    fn gaussian_feasibility() {
        let mut c = GaussianConfig::new(3, -1.5);
        c.log_std_min = -5.0;
        assert!(c.validate().is_ok());
        c.target_entropy = 3.0 * 0.5 * L2PE + 1e-9; // above the widest Gaussian with log_std_max = 0
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InfeasibleTarget);
        c.target_entropy = 3.0 * 0.5 * L2PE; // exactly the widest: legal, degenerate
        assert!(c.validate().is_ok());
        c.target_entropy = 0.0;
        c.delta = 10.0;
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InfeasibleTarget);
    }

    #[test]
    fn gaussian_invalid_fields() {
        let base = GaussianConfig::new(2, -2.0);
        let cases: Vec<GaussianConfig> = vec![
            GaussianConfig { dim: 0, ..base },
            GaussianConfig { target_entropy: f64::NAN, ..base },
            GaussianConfig { log_std_min: 0.0, ..base },
            GaussianConfig { log_std_min: f64::NEG_INFINITY, ..base },
            GaussianConfig { log_std_max: 1.4550511270166113e135, ..base }, // found by fuzzing
            GaussianConfig { log_std_min: -1000.5, ..base },
            GaussianConfig { delta: f64::INFINITY, ..base },
            GaussianConfig { delta_learning: DeltaLearning { lr: -1.0, ..Default::default() }, ..base },
            GaussianConfig { delta_learning: DeltaLearning { beta1: 1.0, ..Default::default() }, ..base },
            GaussianConfig { delta_learning: DeltaLearning { beta2: -0.1, ..Default::default() }, ..base },
            GaussianConfig { delta_learning: DeltaLearning { eps: 0.0, ..Default::default() }, ..base },
        ];
        for c in cases {
            assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidConfig, "{c:?}");
        }
    }

    #[test]
    fn softmax_range_matches_the_documented_numbers() {
        let (lo, hi) = SoftmaxConfig::new(2, 0.0).target_range();
        assert!((lo - -0.0597).abs() < 1e-4, "{lo}");
        assert!((hi - 0.633).abs() < 1e-3, "{hi}");
        let (_, hi10) = SoftmaxConfig::new(10, 0.0).target_range();
        assert!((hi10 - 2.243).abs() < 1e-3, "{hi10}");
    }

    #[test]
    fn softmax_validation() {
        assert!(SoftmaxConfig::new(4, 0.6).validate().is_ok());
        let e = |c: SoftmaxConfig| c.validate().unwrap_err().kind();
        assert_eq!(e(SoftmaxConfig::new(1, 0.6)), ErrorKind::InvalidConfig);
        assert_eq!(e(SoftmaxConfig { tau: 2.7, ..SoftmaxConfig::new(4, 0.6) }), ErrorKind::InvalidConfig);
        assert_eq!(e(SoftmaxConfig { tau: f64::NAN, ..SoftmaxConfig::new(4, 0.6) }), ErrorKind::InvalidConfig);
        assert_eq!(e(SoftmaxConfig::new(4, f64::INFINITY)), ErrorKind::InvalidConfig);
        assert_eq!(e(SoftmaxConfig::new(10, -0.1)), ErrorKind::InfeasibleTarget);
        assert_eq!(e(SoftmaxConfig::new(10, 2.3)), ErrorKind::InfeasibleTarget);
        // both ends exactly are legal
        let (lo, hi) = SoftmaxConfig::new(10, 0.0).target_range();
        assert!(SoftmaxConfig::new(10, lo).validate().is_ok());
        assert!(SoftmaxConfig::new(10, hi).validate().is_ok());
    }

    #[test]
    fn token_validation() {
        assert!(TokenConfig::default().validate().is_ok());
        let d = TokenConfig::default();
        for c in [
            TokenConfig { k: 1.0, ..d },
            TokenConfig { k: f64::INFINITY, ..d },
            TokenConfig { omega_low: -0.1, ..d },
            TokenConfig { omega_low: 4.0, ..d },
            TokenConfig { omega_high: f64::NAN, ..d },
            TokenConfig { top_fraction: 0.0, ..d },
            TokenConfig { top_fraction: 1.5, ..d },
            TokenConfig { temperature: 0.0, ..d },
            TokenConfig { temperature: f64::NAN, ..d },
        ] {
            assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidConfig, "{c:?}");
        }
    }

    #[test]
    fn config_json_roundtrip_and_defaults() {
        let c = HeadConfig::Gaussian(GaussianConfig::new(6, -6.0));
        let s = serde_json::to_string(&c).unwrap();
        assert!(s.contains("\"kind\":\"gaussian\""), "{s}");
        assert_eq!(serde_json::from_str::<HeadConfig>(&s).unwrap(), c);
        let t: HeadConfig = serde_json::from_str(r#"{"kind":"token"}"#).unwrap();
        assert_eq!(t, HeadConfig::Token(TokenConfig::default()));
        let g: HeadConfig = serde_json::from_str(r#"{"kind":"softmax","num_classes":3,"target_entropy":0.5}"#).unwrap();
        assert_eq!(g, HeadConfig::Softmax(SoftmaxConfig::new(3, 0.5)));
        assert!(serde_json::from_str::<HeadConfig>(r#"{"kind":"softmax","num_classes":3,"target_entropy":0.5,"bogus":1}"#).is_err());
    }
}
