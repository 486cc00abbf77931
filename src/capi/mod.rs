//! The C ABI. Only argument checking, handle casting and status conversion
//! live here; all math is in [`crate::heads`] and [`crate::kernels`].
//!
//! Every exported function runs its body inside `boundary`, which catches
//! panics (reported as [`EraStatus::Internal`]) and records the message of a
//! failure in a thread-local buffer readable with [`era_last_error`].

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, ErrorKind, Result};

pub mod config;
pub mod dlpack;
pub mod head;
pub mod token;

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

/// Status of every fallible call. The numbers are part of the ABI and are never reused.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EraStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// A configuration value is out of range, NaN or missing; unknown head kind; bad struct_size.
    InvalidConfig = 2,
    /// The target entropy cannot be met (Gaussian: H0 + delta above D*(log_std_max + 0.5*ln(2*pi*e));
    /// softmax: H0 outside [1 + ln(ln(tau)/tau), 1 + ln(n*ln(tau)/tau)]).
    InfeasibleTarget = 3,
    /// Wrong rank, mismatched shapes, wrong last dimension, negative or overflowing extents.
    InvalidShape = 4,
    /// An element type the argument does not accept (or mixed float types where one is required).
    UnsupportedDtype = 5,
    /// A buffer on a device this build cannot compute on (e.g. CUDA memory in a CPU build).
    UnsupportedDevice = 6,
    /// Bad strides, misaligned data, NULL data with elements, or overlapping outputs.
    InvalidLayout = 7,
    /// A data value out of range: a token label outside [0, V), a response id below -1, a scale <= 0.
    InvalidValue = 8,
    /// The operation does not exist for this kind of head.
    WrongHeadKind = 9,
    /// Malformed JSON, invalid UTF-8, or a document that is not a saved era head.
    Json = 10,
    /// A caller-provided buffer is too small.
    BufferTooSmall = 11,
    /// Another invalid scalar argument (NaN delta, non-finite mean entropy, low >= high).
    InvalidArgument = 12,
    /// The scratch memory the call needs (per-row buffers, a copy of an input that an
    /// output overlaps) could not be allocated, e.g. for a broadcast input of huge extent.
    OutOfMemory = 13,
    /// A bug in era: a panic was caught at the ABI boundary. Please report it.
    Internal = 99,
}

impl From<ErrorKind> for EraStatus {
    fn from(k: ErrorKind) -> Self {
        match k {
            ErrorKind::NullPointer => EraStatus::NullPointer,
            ErrorKind::InvalidConfig => EraStatus::InvalidConfig,
            ErrorKind::InfeasibleTarget => EraStatus::InfeasibleTarget,
            ErrorKind::InvalidShape => EraStatus::InvalidShape,
            ErrorKind::UnsupportedDtype => EraStatus::UnsupportedDtype,
            ErrorKind::UnsupportedDevice => EraStatus::UnsupportedDevice,
            ErrorKind::InvalidLayout => EraStatus::InvalidLayout,
            ErrorKind::InvalidValue => EraStatus::InvalidValue,
            ErrorKind::WrongHeadKind => EraStatus::WrongHeadKind,
            ErrorKind::Json => EraStatus::Json,
            ErrorKind::BufferTooSmall => EraStatus::BufferTooSmall,
            ErrorKind::InvalidArgument => EraStatus::InvalidArgument,
            ErrorKind::OutOfMemory => EraStatus::OutOfMemory,
            ErrorKind::Internal => EraStatus::Internal,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(msg: String) {
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

/// Runs `f` at the ABI boundary: converts its error into a status (recording
/// the message for [`era_last_error`]) and a panic into [`EraStatus::Internal`].
pub(crate) fn boundary(f: impl FnOnce() -> Result<()>) -> EraStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => EraStatus::Ok,
        Ok(Err(e)) => {
            let status = EraStatus::from(e.kind());
            set_last_error(e.message().to_string());
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(format!("internal error in era (please report): {what}"));
            EraStatus::Internal
        }
    }
}

/// Dereferences an output pointer, or fails with [`ErrorKind::NullPointer`].
pub(crate) unsafe fn out_ref<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T> {
    p.as_mut().ok_or_else(|| Error::new(ErrorKind::NullPointer, format!("{name} must not be NULL")))
}

/// Dereferences an input pointer, or fails with [`ErrorKind::NullPointer`].
pub(crate) unsafe fn in_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    p.as_ref().ok_or_else(|| Error::new(ErrorKind::NullPointer, format!("{name} must not be NULL")))
}

/// Returns `ERA_ABI_VERSION` as compiled into the library; compare it with the
/// header's `ERA_ABI_VERSION` to detect a mismatched library at run time.
#[no_mangle]
pub extern "C" fn era_abi_version() -> u32 {
    ERA_ABI_VERSION
}

/// Returns the library version as a static NUL-terminated string "MAJOR.MINOR.PATCH".
#[no_mangle]
pub extern "C" fn era_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// Returns the static name of a status code (e.g. "ERA_STATUS_OK"), or
/// "ERA_STATUS_UNKNOWN" for a number that is not a status. Never NULL.
#[no_mangle]
pub extern "C" fn era_status_str(status: i32) -> *const c_char {
    let s: &'static str = match status {
        0 => "ERA_STATUS_OK\0",
        1 => "ERA_STATUS_NULL_POINTER\0",
        2 => "ERA_STATUS_INVALID_CONFIG\0",
        3 => "ERA_STATUS_INFEASIBLE_TARGET\0",
        4 => "ERA_STATUS_INVALID_SHAPE\0",
        5 => "ERA_STATUS_UNSUPPORTED_DTYPE\0",
        6 => "ERA_STATUS_UNSUPPORTED_DEVICE\0",
        7 => "ERA_STATUS_INVALID_LAYOUT\0",
        8 => "ERA_STATUS_INVALID_VALUE\0",
        9 => "ERA_STATUS_WRONG_HEAD_KIND\0",
        10 => "ERA_STATUS_JSON\0",
        11 => "ERA_STATUS_BUFFER_TOO_SMALL\0",
        12 => "ERA_STATUS_INVALID_ARGUMENT\0",
        13 => "ERA_STATUS_OUT_OF_MEMORY\0",
        99 => "ERA_STATUS_INTERNAL\0",
        _ => "ERA_STATUS_UNKNOWN\0",
    };
    s.as_ptr() as *const c_char
}

/// Copies the message of the last failed call on this thread into `buf`
/// (at most `len - 1` bytes, cut at a UTF-8 character boundary, then a NUL)
/// and returns the full message length in bytes, without the NUL. With
/// `buf == NULL` or `len == 0` nothing is written: a call with `len == 0`
/// asks for the length. The message is "" before the first failure; a
/// successful call does not clear it.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn era_last_error(buf: *mut c_char, len: usize) -> usize {
    let r = catch_unwind(AssertUnwindSafe(|| {
        LAST_ERROR.with(|e| {
            let msg = e.borrow();
            if !buf.is_null() && len > 0 {
                let mut n = msg.len().min(len - 1);
                while !msg.is_char_boundary(n) {
                    n -= 1;
                }
                std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
                *buf.add(n) = 0;
            }
            msg.len()
        })
    }));
    r.unwrap_or(0)
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

    #[test]
    fn boundary_converts_panics_and_errors() {
        let s = boundary(|| panic!("boom"));
        assert_eq!(s, EraStatus::Internal);
        let mut buf = [0 as c_char; 128];
        let n = unsafe { era_last_error(buf.as_mut_ptr(), buf.len()) };
        let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(n, msg.len());
        assert!(msg.contains("boom"), "{msg}");
        let s = boundary(|| Err(Error::new(ErrorKind::InvalidShape, "héllo")));
        assert_eq!(s, EraStatus::InvalidShape);
        // truncation never splits a UTF-8 character ("h" + 2-byte "é")
        let mut small = [1 as c_char; 3];
        let n = unsafe { era_last_error(small.as_mut_ptr(), small.len()) };
        assert_eq!(n, "héllo".len());
        assert_eq!(small[0] as u8, b'h');
        assert_eq!(small[1], 0);
        assert_eq!(unsafe { era_last_error(std::ptr::null_mut(), 0) }, "héllo".len());
    }

    #[test]
    fn every_status_has_a_name() {
        for (s, name) in [(EraStatus::Ok, "ERA_STATUS_OK"), (EraStatus::Internal, "ERA_STATUS_INTERNAL")] {
            let got = unsafe { std::ffi::CStr::from_ptr(era_status_str(s as i32)) };
            assert_eq!(got.to_str().unwrap(), name);
        }
        for code in 0..=13 {
            let got = unsafe { std::ffi::CStr::from_ptr(era_status_str(code)) };
            assert_ne!(got.to_str().unwrap(), "ERA_STATUS_UNKNOWN", "{code}");
        }
        let got = unsafe { std::ffi::CStr::from_ptr(era_status_str(14)) };
        assert_eq!(got.to_str().unwrap(), "ERA_STATUS_UNKNOWN");
    }
}
