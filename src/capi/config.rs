//! `EraConfig`: the C view of [`HeadConfig`], versioned by `struct_size`.

use std::ffi::{c_char, CStr};

use crate::capi::{ffi_boundary, in_ref, out_ref, EraStatus};
use crate::config::{DeltaLearning, DeltaOptimizer, GaussianConfig, HeadConfig, SoftmaxConfig, TokenConfig};
use crate::error::{bail, Result};

/// Kind of head (values of `EraConfig::kind`).
pub type EraHeadKind = u32;
/// Gaussian head (docs/math.md#gaussian-head): continuous-control log-stds.
pub const ERA_HEAD_KIND_GAUSSIAN: EraHeadKind = 1;
/// Softmax head (section 2): classification and discrete policies.
pub const ERA_HEAD_KIND_SOFTMAX: EraHeadKind = 2;
/// Token head (section 3): LLM policy updates.
pub const ERA_HEAD_KIND_TOKEN: EraHeadKind = 3;

/// How the Gaussian head learns `delta` (values of `EraConfig::delta_optimizer`).
pub type EraDeltaOptimizer = u32;
/// `delta` stays fixed; updates leave it unchanged.
pub const ERA_DELTA_OPTIMIZER_FIXED: EraDeltaOptimizer = 0;
/// Gradient descent: `delta -= lr * (mean_entropy - H0)`.
pub const ERA_DELTA_OPTIMIZER_SGD: EraDeltaOptimizer = 1;
/// Adam with bias correction (the default).
pub const ERA_DELTA_OPTIMIZER_ADAM: EraDeltaOptimizer = 2;

/// The configuration of any head: one flat struct; fields that belong to
/// another kind are ignored. Always start from `era_config_default`, which
/// fills the defaults and `struct_size`; a caller compiled against an older,
/// shorter struct passes its own `sizeof` and gets defaults for the fields it
/// does not know.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EraConfig {
    /// `sizeof(EraConfig)` as the caller was compiled; at least 8.
    pub struct_size: u32,
    /// One of `ERA_HEAD_KIND_*`.
    pub kind: EraHeadKind,
    /// Target entropy H0 in nats (Gaussian: of the whole D-dimensional Gaussian; softmax:
    /// of the categorical). Default NaN: must be set for those kinds. Ignored by the token head.
    pub target_entropy: f64,
    /// Gaussian: action dimension D >= 1 (default 0: must be set).
    pub dim: u64,
    /// Gaussian: lower log-std bound (default -8), in [-1000, 1000].
    pub log_std_min: f64,
    /// Gaussian: upper log-std bound (default 0), > log_std_min, in [-1000, 1000].
    pub log_std_max: f64,
    /// Gaussian: initial compensation delta (default 0); `era_head_config` reports the current one.
    pub delta: f64,
    /// Gaussian: one of `ERA_DELTA_OPTIMIZER_*` (default ADAM, as SAC's temperature learner; the
    /// recommended learner is SGD at rate 0.5, and docs/settings.md says why the default differs).
    pub delta_optimizer: EraDeltaOptimizer,
    /// Reserved (explicit alignment padding): must be 0; `era_config_default` sets it.
    pub reserved0: u32,
    /// Gaussian: learning rate of the delta learner, >= 0 (default 3e-4, Adam's; 0.5 with SGD is the
    /// recommendation of docs/settings.md).
    pub delta_lr: f64,
    /// Gaussian: Adam beta1 in [0, 1) (default 0.9).
    pub delta_beta1: f64,
    /// Gaussian: Adam beta2 in [0, 1) (default 0.999).
    pub delta_beta2: f64,
    /// Gaussian: Adam epsilon > 0 (default 1e-8).
    pub delta_eps: f64,
    /// Softmax: number of classes n >= 2 (default 0: must be set).
    pub num_classes: u64,
    /// Softmax: tau >= e (default 4).
    pub tau: f64,
    /// Token: scale factor k > 1 (default 2).
    pub k: f64,
    /// Token: sharpen when the response's forking-token entropy is below this (default 0.45).
    pub omega_low: f64,
    /// Token: flatten when it is above this (default 3.0); omega_low <= omega_high.
    pub omega_high: f64,
    /// Token: fraction rho of highest-entropy tokens per response, in (0, 1] (default 0.2).
    pub top_fraction: f64,
    /// Token: sampling temperature T > 0 (default 1).
    pub temperature: f64,
    /// Token: nonzero to divide advantages by the scale (default 1).
    pub advantage_scaling: u32,
    /// Reserved (explicit alignment padding): must be 0; `era_config_default` sets it.
    pub reserved1: u32,
    /// Token: log-probs over the K largest logits only; 0 = full vocabulary (default 0).
    pub vocab_topk: u64,
    /// All kinds: threads of the head's kernels, at most 1024; 0 (default) = the
    /// `ERA_NUM_THREADS` environment variable if set, else all cores. Inputs below
    /// 32768 elements always run on the calling thread.
    pub num_threads: u32,
    /// Reserved (explicit tail padding): must be 0; `era_config_default` sets it.
    pub reserved2: u32,
}

/// `sizeof(EraConfig)` in this version of the header: 168 bytes, with no
/// implicit padding (every byte belongs to a named field). `era_config_size`
/// returns the library's value and `era_config_field` each field's offset, so
/// that a binding can check its own declaration at run time.
pub const ERA_CONFIG_SIZE: usize = 168;

/// Lists the fields of [`EraConfig`] with their types, and generates the
/// table of names, offsets and sizes, with compile-time checks that the
/// types are the struct's and that the fields cover it without a gap.
macro_rules! config_fields {
    ($($field:ident: $ty:ty,)*) => {
        /// Every field of `EraConfig` in order: name, offset and size in bytes.
        pub(crate) const CONFIG_FIELDS: &[(&str, usize, usize)] =
            &[$((stringify!($field), std::mem::offset_of!(EraConfig, $field), std::mem::size_of::<$ty>()),)*];

        const _: () = {
            // each listed type is the field's type
            $(let _: fn(&EraConfig) -> &$ty = |c| &c.$field;)*
            // the fields follow each other without a gap and fill the struct
            let mut end = 0;
            let mut i = 0;
            while i < CONFIG_FIELDS.len() {
                assert!(CONFIG_FIELDS[i].1 == end, "implicit padding in EraConfig");
                end += CONFIG_FIELDS[i].2;
                i += 1;
            }
            assert!(end == std::mem::size_of::<EraConfig>(), "implicit tail padding in EraConfig");
            assert!(end == ERA_CONFIG_SIZE, "ERA_CONFIG_SIZE is not sizeof(EraConfig)");
        };
    };
}

config_fields! {
    struct_size: u32,
    kind: EraHeadKind,
    target_entropy: f64,
    dim: u64,
    log_std_min: f64,
    log_std_max: f64,
    delta: f64,
    delta_optimizer: EraDeltaOptimizer,
    reserved0: u32,
    delta_lr: f64,
    delta_beta1: f64,
    delta_beta2: f64,
    delta_eps: f64,
    num_classes: u64,
    tau: f64,
    k: f64,
    omega_low: f64,
    omega_high: f64,
    top_fraction: f64,
    temperature: f64,
    advantage_scaling: u32,
    reserved1: u32,
    vocab_topk: u64,
    num_threads: u32,
    reserved2: u32,
}

/// Fails unless `size` (a caller's `struct_size`, at most ours) ends on a field boundary.
fn check_field_boundary(size: usize, what: &str) -> Result<()> {
    if CONFIG_FIELDS.iter().any(|&(_, off, len)| off + len == size) {
        return Ok(());
    }
    let (name, off, _) = CONFIG_FIELDS.iter().copied().rev().find(|&(_, off, _)| off < size).unwrap_or(("struct_size", 0, 4));
    bail!(
        InvalidConfig,
        "{what} is {size}, which ends inside the field {name} (offset {off}); it must be sizeof(EraConfig) of some version of era.h"
    )
}

/// Largest `struct_size` accepted (a guard against garbage).
const MAX_STRUCT_SIZE: u32 = 1 << 16;

impl EraConfig {
    /// The defaults for `kind`.
    pub fn defaults(kind: EraHeadKind) -> Result<EraConfig> {
        if !(ERA_HEAD_KIND_GAUSSIAN..=ERA_HEAD_KIND_TOKEN).contains(&kind) {
            bail!(InvalidConfig, "unknown head kind {kind} (expected 1 = gaussian, 2 = softmax, 3 = token)");
        }
        Ok(Self::base(kind))
    }

    /// The defaults with `kind` stored as given (not checked).
    fn base(kind: EraHeadKind) -> EraConfig {
        let d = DeltaLearning::default();
        let t = TokenConfig::default();
        EraConfig {
            struct_size: std::mem::size_of::<EraConfig>() as u32,
            kind,
            target_entropy: f64::NAN,
            dim: 0,
            log_std_min: -8.0,
            log_std_max: 0.0,
            delta: 0.0,
            delta_optimizer: ERA_DELTA_OPTIMIZER_ADAM,
            reserved0: 0,
            delta_lr: d.lr,
            delta_beta1: d.beta1,
            delta_beta2: d.beta2,
            delta_eps: d.eps,
            num_classes: 0,
            tau: 4.0,
            k: t.k,
            omega_low: t.omega_low,
            omega_high: t.omega_high,
            top_fraction: t.top_fraction,
            temperature: t.temperature,
            advantage_scaling: t.advantage_scaling as u32,
            reserved1: 0,
            vocab_topk: t.vocab_topk as u64,
            num_threads: 0,
            reserved2: 0,
        }
    }

    /// Reads a caller's struct honouring `struct_size`: a shorter struct gets
    /// defaults for the missing fields; a longer one must be zero past ours.
    ///
    /// # Safety
    /// `p` points to at least `struct_size` readable bytes (and at least 8).
    pub unsafe fn read(p: *const EraConfig) -> Result<EraConfig> {
        let bytes = p as *const u8;
        let size = std::ptr::read_unaligned(bytes as *const u32);
        if size < 8 {
            bail!(InvalidConfig, "config struct_size is {size}; set it with era_config_default (sizeof(EraConfig))");
        }
        if size > MAX_STRUCT_SIZE {
            bail!(InvalidConfig, "config struct_size is {size}, which is not a plausible sizeof(EraConfig)");
        }
        let ours = std::mem::size_of::<EraConfig>();
        if (size as usize) < ours {
            check_field_boundary(size as usize, "config struct_size")?;
        } else if !size.is_multiple_of(4) {
            bail!(InvalidConfig, "config struct_size is {size}, which is not a multiple of 4");
        }
        let kind = std::ptr::read_unaligned(bytes.add(4) as *const u32);
        let mut cfg = EraConfig::defaults(kind)?;
        let n = (size as usize).min(ours);
        std::ptr::copy_nonoverlapping(bytes, &mut cfg as *mut EraConfig as *mut u8, n);
        for i in ours..size as usize {
            if *bytes.add(i) != 0 {
                bail!(
                    InvalidConfig,
                    "config struct_size is {size} (newer than this library's {ours}) and sets fields this library does not know"
                );
            }
        }
        if cfg.reserved0 != 0 || cfg.reserved1 != 0 || cfg.reserved2 != 0 {
            bail!(
                InvalidConfig,
                "config reserved fields must be 0, got {}, {}, {} (start from era_config_default or zero the struct)",
                cfg.reserved0,
                cfg.reserved1,
                cfg.reserved2
            );
        }
        cfg.struct_size = ours as u32;
        Ok(cfg)
    }

    /// Converts to the Rust configuration (not yet validated).
    pub fn to_head_config(&self) -> Result<HeadConfig> {
        let usize_of = |v: u64, name: &str| -> Result<usize> {
            match usize::try_from(v) {
                Ok(v) => Ok(v),
                Err(_) => bail!(InvalidConfig, "{name} = {v} does not fit in size_t"),
            }
        };
        Ok(match self.kind {
            ERA_HEAD_KIND_GAUSSIAN => {
                let optimizer = match self.delta_optimizer {
                    ERA_DELTA_OPTIMIZER_FIXED => DeltaOptimizer::Fixed,
                    ERA_DELTA_OPTIMIZER_SGD => DeltaOptimizer::Sgd,
                    ERA_DELTA_OPTIMIZER_ADAM => DeltaOptimizer::Adam,
                    o => bail!(InvalidConfig, "unknown delta_optimizer {o} (expected 0 = fixed, 1 = sgd, 2 = adam)"),
                };
                HeadConfig::Gaussian(GaussianConfig {
                    dim: usize_of(self.dim, "dim")?,
                    target_entropy: self.target_entropy,
                    log_std_min: self.log_std_min,
                    log_std_max: self.log_std_max,
                    delta: self.delta,
                    delta_learning: DeltaLearning {
                        optimizer,
                        lr: self.delta_lr,
                        beta1: self.delta_beta1,
                        beta2: self.delta_beta2,
                        eps: self.delta_eps,
                    },
                })
            }
            ERA_HEAD_KIND_SOFTMAX => HeadConfig::Softmax(SoftmaxConfig {
                num_classes: usize_of(self.num_classes, "num_classes")?,
                target_entropy: self.target_entropy,
                tau: self.tau,
            }),
            ERA_HEAD_KIND_TOKEN => HeadConfig::Token(TokenConfig {
                k: self.k,
                omega_low: self.omega_low,
                omega_high: self.omega_high,
                top_fraction: self.top_fraction,
                temperature: self.temperature,
                advantage_scaling: self.advantage_scaling != 0,
                vocab_topk: usize_of(self.vocab_topk, "vocab_topk")?,
            }),
            k => bail!(InvalidConfig, "unknown head kind {k}"),
        })
    }

    /// The C view of a Rust configuration (defaults for other kinds' fields).
    pub fn from_head_config(c: &HeadConfig) -> EraConfig {
        match c {
            HeadConfig::Gaussian(g) => {
                let mut e = Self::base(ERA_HEAD_KIND_GAUSSIAN);
                e.target_entropy = g.target_entropy;
                e.dim = g.dim as u64;
                e.log_std_min = g.log_std_min;
                e.log_std_max = g.log_std_max;
                e.delta = g.delta;
                e.delta_optimizer = match g.delta_learning.optimizer {
                    DeltaOptimizer::Fixed => ERA_DELTA_OPTIMIZER_FIXED,
                    DeltaOptimizer::Sgd => ERA_DELTA_OPTIMIZER_SGD,
                    DeltaOptimizer::Adam => ERA_DELTA_OPTIMIZER_ADAM,
                };
                e.delta_lr = g.delta_learning.lr;
                e.delta_beta1 = g.delta_learning.beta1;
                e.delta_beta2 = g.delta_learning.beta2;
                e.delta_eps = g.delta_learning.eps;
                e
            }
            HeadConfig::Softmax(s) => {
                let mut e = Self::base(ERA_HEAD_KIND_SOFTMAX);
                e.target_entropy = s.target_entropy;
                e.num_classes = s.num_classes as u64;
                e.tau = s.tau;
                e
            }
            HeadConfig::Token(t) => {
                let mut e = Self::base(ERA_HEAD_KIND_TOKEN);
                e.k = t.k;
                e.omega_low = t.omega_low;
                e.omega_high = t.omega_high;
                e.top_fraction = t.top_fraction;
                e.temperature = t.temperature;
                e.advantage_scaling = t.advantage_scaling as u32;
                e.vocab_topk = t.vocab_topk as u64;
                e
            }
        }
    }
}

/// Fills `*out` with the defaults of head `kind` (`ERA_HEAD_KIND_*`) and
/// sets `struct_size`. The fields marked "must be set" (target_entropy, dim,
/// num_classes) are left NaN or 0 so that forgetting them fails loudly.
///
/// Errors: `ERA_STATUS_NULL_POINTER` (out), `ERA_STATUS_INVALID_CONFIG` (unknown kind).
///
/// # Safety
/// `out` is NULL or points to a writable `EraConfig`.
#[no_mangle]
pub unsafe extern "C" fn era_config_default(kind: EraHeadKind, out: *mut EraConfig) -> EraStatus {
    ffi_boundary! {
        let out = out_ref(out, "out")?;
        *out = EraConfig::defaults(kind)?;
        Ok(())
    }
}

/// Returns `sizeof(EraConfig)` as this library was built (`ERA_CONFIG_SIZE`
/// of its header); a binding compares it with its own declaration.
#[no_mangle]
pub extern "C" fn era_config_size() -> usize {
    ffi_boundary!(fallback = ERA_CONFIG_SIZE; std::mem::size_of::<EraConfig>())
}

/// Looks up a field of `EraConfig` by name (e.g. "vocab_topk") and stores its
/// offset and size in bytes, as this library was built, in `*offset` and
/// `*size` (either may be NULL). A binding checks every field of its own
/// declaration this way.
///
/// Errors: `ERA_STATUS_NULL_POINTER` (name), `ERA_STATUS_INVALID_ARGUMENT`
/// (no such field; invalid UTF-8).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `offset` and `size` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_config_field(name: *const c_char, offset: *mut usize, size: *mut usize) -> EraStatus {
    ffi_boundary! {
        in_ref(name, "name")?;
        let name = match CStr::from_ptr(name).to_str() {
            Ok(s) => s,
            Err(_) => bail!(InvalidArgument, "name is not valid UTF-8"),
        };
        let Some(&(_, off, len)) = CONFIG_FIELDS.iter().find(|f| f.0 == name) else {
            bail!(InvalidArgument, "EraConfig has no field {name:?}");
        };
        if let Some(o) = offset.as_mut() {
            *o = off;
        }
        if let Some(s) = size.as_mut() {
            *s = len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_roundtrip_through_head_config() {
        for kind in 1..=3 {
            let mut e = EraConfig::defaults(kind).unwrap();
            e.target_entropy = 0.5;
            e.dim = 4;
            e.num_classes = 10;
            let h = e.to_head_config().unwrap();
            let back = EraConfig::from_head_config(&h);
            assert_eq!(back.to_head_config().unwrap(), h);
        }
        assert!(EraConfig::defaults(0).is_err());
        assert!(EraConfig::defaults(4).is_err());
    }

    #[test]
    fn struct_size_versioning() {
        let mut full = EraConfig::defaults(ERA_HEAD_KIND_SOFTMAX).unwrap();
        full.num_classes = 7;
        full.tau = 5.0;
        // an "old" caller that only knew the first 8 bytes gets all defaults
        let mut short = full;
        short.struct_size = 8;
        let got = unsafe { EraConfig::read(&short) }.unwrap();
        assert_eq!(got.num_classes, 0);
        assert_eq!(got.tau, 4.0);
        let got = unsafe { EraConfig::read(&full) }.unwrap();
        assert_eq!(got.num_classes, 7);
        // a "newer" caller: trailing zero bytes are fine, non-zero are not
        #[repr(C)]
        struct Newer {
            c: EraConfig,
            extra: [u8; 16],
        }
        let mut n = Newer { c: full, extra: [0; 16] };
        n.c.struct_size = std::mem::size_of::<Newer>() as u32;
        // the pointer must carry the provenance of the whole (longer) struct
        let p = &n as *const Newer as *const EraConfig;
        assert!(unsafe { EraConfig::read(p) }.is_ok());
        n.extra[3] = 1;
        let p = &n as *const Newer as *const EraConfig;
        assert!(unsafe { EraConfig::read(p) }.is_err());
        let mut tiny = full;
        tiny.struct_size = 4;
        assert!(unsafe { EraConfig::read(&tiny) }.is_err());
        // sizes that end inside a field are rejected, field ends are accepted
        for (size, ok) in [(20, false), (16, true), (24, true), (52, true), (53, false), (164, true), (166, false)] {
            let mut c = full;
            c.struct_size = size;
            assert_eq!(unsafe { EraConfig::read(&c) }.is_ok(), ok, "struct_size {size}");
        }
        // reserved fields must be 0
        let mut r = full;
        r.reserved1 = 7;
        let e = unsafe { EraConfig::read(&r) }.unwrap_err();
        assert!(e.message().contains("reserved"), "{}", e.message());
    }

    #[test]
    fn the_field_table_describes_the_struct() {
        assert_eq!(era_config_size(), std::mem::size_of::<EraConfig>());
        assert_eq!(era_config_size(), ERA_CONFIG_SIZE);
        let (mut off, mut sz) = (0usize, 0usize);
        let st = unsafe { era_config_field(c"vocab_topk".as_ptr(), &mut off, &mut sz) };
        assert_eq!(st, EraStatus::Ok);
        assert_eq!((off, sz), (std::mem::offset_of!(EraConfig, vocab_topk), 8));
        let st = unsafe { era_config_field(c"nope".as_ptr(), &mut off, &mut sz) };
        assert_eq!(st, EraStatus::InvalidArgument);
        let st = unsafe { era_config_field(std::ptr::null(), &mut off, &mut sz) };
        assert_eq!(st, EraStatus::NullPointer);
        assert_eq!(CONFIG_FIELDS.len(), 25);
    }
}
