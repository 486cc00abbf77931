//! The C ABI. Only argument checking, handle casting and status conversion
//! live here; all math is in [`crate::heads`] and [`crate::kernels`]. One
//! file per C object:
//!
//! - [`boundary`]: the `ffi_boundary!` macro every export runs its body in,
//!   the last-error message and `era_last_error`;
//! - [`status`]: `EraStatus` and its table;
//! - [`config`]: `EraConfig` and `era_config_default`;
//! - [`dlpack`]: reading and checking borrowed `DLTensor`s, dtype dispatch;
//! - [`head`]: the `EraHead` handle's lifecycle, forward/backward/entropy;
//! - [`json`]: saving and restoring heads;
//! - [`gaussian`]: the Gaussian head's `delta` API;
//! - [`saved`]: the Gaussian and softmax heads' forward that saves `softmax(z)`
//!   and the backward from it;
//! - [`token`]: the token head's forward and backward;
//! - [`entropy`]: the functions that need no head (entropies).

use std::ffi::c_char;

pub mod boundary;
mod calls;
pub mod config;
pub mod cuda;
pub mod dlpack;
pub mod entropy;
pub mod gaussian;
pub mod head;
pub mod json;
pub mod saved;
pub mod status;
pub mod token;
pub mod token_block;
pub mod token_split;

// Every C function and type, at one path (`era::capi::*`) for Rust callers and tests.
pub use boundary::era_last_error;
pub(crate) use boundary::{ffi_boundary, in_ref, out_ref};
pub use config::*;
pub use cuda::{era_cuda_available, era_cuda_device_count};
pub use dlpack::{DLDataType, DLDevice, DLTensor};
pub use entropy::*;
pub use gaussian::*;
pub use head::*;
pub use json::*;
pub use saved::*;
pub use status::EraStatus;
pub use token::*;
pub use token_block::*;
pub use token_split::*;

/// Major version of the library (from Cargo.toml; checked by a test).
pub const ERA_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const ERA_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const ERA_VERSION_PATCH: u32 = 0;
/// Version of the C ABI described by this header; bumped on any incompatible change.
pub const ERA_ABI_VERSION: u32 = 1;

/// `ln(2*pi*e)`: the entropy of a D-dimensional Gaussian is
/// `sum(log_std) + 0.5*D*ERA_LN_2PI_E` (docs/math.md#gaussian-head).
pub const ERA_LN_2PI_E: f64 = 2.837_877_066_409_345_3;

/// Returns `ERA_ABI_VERSION` as compiled into the library; compare it with the
/// header's `ERA_ABI_VERSION` to detect a mismatched library at run time.
#[no_mangle]
pub extern "C" fn era_abi_version() -> u32 {
    ffi_boundary!(fallback = ERA_ABI_VERSION; ERA_ABI_VERSION)
}

/// The library version, NUL-terminated.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Returns the library version as a static NUL-terminated string "MAJOR.MINOR.PATCH".
#[no_mangle]
pub extern "C" fn era_version() -> *const c_char {
    ffi_boundary!(fallback = VERSION.as_ptr() as *const c_char; VERSION.as_ptr() as *const c_char)
}

/// The name `era_status_str` gives a number that is not a status.
const UNKNOWN: &[u8] = b"ERA_STATUS_UNKNOWN\0";

/// Returns the static name of a status code (e.g. "ERA_STATUS_OK"), or
/// "ERA_STATUS_UNKNOWN" for a number that is not a status. Never NULL.
#[no_mangle]
pub extern "C" fn era_status_str(status: i32) -> *const c_char {
    ffi_boundary!(fallback = UNKNOWN.as_ptr() as *const c_char;
        match EraStatus::from_code(status) {
            Some(s) => s.c_name().as_ptr() as *const c_char,
            None => UNKNOWN.as_ptr() as *const c_char,
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_cargo_toml() {
        assert_eq!(ERA_VERSION_MAJOR.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
        assert_eq!(ERA_VERSION_MINOR.to_string(), env!("CARGO_PKG_VERSION_MINOR"));
        assert_eq!(ERA_VERSION_PATCH.to_string(), env!("CARGO_PKG_VERSION_PATCH"));
        let v = unsafe { std::ffi::CStr::from_ptr(era_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn abi_constants_match_the_crate() {
        assert_eq!(ERA_LN_2PI_E, crate::config::L2PE);
        assert_eq!(ERA_LN_2PI_E, (2.0 * std::f64::consts::PI * std::f64::consts::E).ln());
    }
}
