//! The ABI boundary: every exported function's body runs inside
//! `ffi_boundary!`, which catches panics and turns errors into a status
//! (recording the message for `era_last_error`) or, for functions that do
//! not return a status, into that function's fallback value.
//!
//! `tests/abi_boundary.rs` fails if an exported `era_*` function does not
//! start its body with this macro.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::capi::status::EraStatus;
use crate::error::{Error, ErrorKind, Result};

/// The body of every exported function.
///
/// - `ffi_boundary! { ...statements returning Result<()>... }`: for functions
///   returning [`EraStatus`]. `Ok(())` gives `ERA_STATUS_OK`; an error gives
///   its status and records its message; a panic gives `ERA_STATUS_INTERNAL`.
/// - `ffi_boundary!(fallback = EXPR; ...statements returning T...)`: for
///   functions returning another type `T`; a panic gives `EXPR`.
macro_rules! ffi_boundary {
    (fallback = $fallback:expr; $($body:tt)*) => {
        $crate::capi::boundary::catch_value(|| { $($body)* }, || $fallback)
    };
    ($($body:tt)*) => {
        $crate::capi::boundary::catch_status(|| -> $crate::error::Result<()> { $($body)* })
    };
}
pub(crate) use ffi_boundary;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(msg: String) {
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs a status function's body (see [`ffi_boundary!`]).
pub(crate) fn catch_status(f: impl FnOnce() -> Result<()>) -> EraStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => EraStatus::Ok,
        Ok(Err(e)) => {
            let status = EraStatus::from(e.kind());
            set_last_error(e.message().to_string());
            status
        }
        Err(panic) => {
            set_last_error(format!("internal error in era (please report): {}", panic_message(&*panic)));
            EraStatus::Internal
        }
    }
}

/// Runs a value function's body (see [`ffi_boundary!`]): its value, or
/// `fallback()` after a panic (whose message is recorded when possible).
pub(crate) fn catch_value<T>(f: impl FnOnce() -> T, fallback: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(panic) => {
            let msg = format!("internal error in era (please report): {}", panic_message(&*panic));
            let _ = catch_unwind(AssertUnwindSafe(|| set_last_error(msg)));
            fallback()
        }
    }
}

/// Dereferences an output pointer, or fails with [`ErrorKind::NullPointer`].
///
/// # Safety
/// `p` is NULL or valid for writes for the returned lifetime.
pub(crate) unsafe fn out_ref<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T> {
    p.as_mut().ok_or_else(|| Error::new(ErrorKind::NullPointer, format!("{name} must not be NULL")))
}

/// Dereferences an input pointer, or fails with [`ErrorKind::NullPointer`].
///
/// # Safety
/// `p` is NULL or valid for reads for the returned lifetime.
pub(crate) unsafe fn in_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    p.as_ref().ok_or_else(|| Error::new(ErrorKind::NullPointer, format!("{name} must not be NULL")))
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
    ffi_boundary!(fallback = 0;
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        let mut buf = [0 as c_char; 256];
        let n = unsafe { era_last_error(buf.as_mut_ptr(), buf.len()) };
        let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap().to_string();
        assert_eq!(n, msg.len());
        msg
    }

    #[test]
    fn status_bodies_convert_panics_and_errors() {
        let s = ffi_boundary! { panic!("boom") };
        assert_eq!(s, EraStatus::Internal);
        assert!(last_error().contains("boom"));
        let s = ffi_boundary! { Err(Error::new(ErrorKind::InvalidShape, "héllo")) };
        assert_eq!(s, EraStatus::InvalidShape);
        // truncation never splits a UTF-8 character ("h" + 2-byte "é")
        let mut small = [1 as c_char; 3];
        let n = unsafe { era_last_error(small.as_mut_ptr(), small.len()) };
        assert_eq!(n, "héllo".len());
        assert_eq!(small[0] as u8, b'h');
        assert_eq!(small[1], 0);
        assert_eq!(unsafe { era_last_error(std::ptr::null_mut(), 0) }, "héllo".len());
        let s = ffi_boundary! { Ok(()) };
        assert_eq!(s, EraStatus::Ok);
        // a success does not clear the message
        assert_eq!(last_error(), "héllo");
    }

    #[test]
    fn value_bodies_return_their_fallback_after_a_panic() {
        let v: u32 = ffi_boundary!(fallback = 7; 3);
        assert_eq!(v, 3);
        let v: u32 = ffi_boundary!(fallback = 7; panic!("value boom"));
        assert_eq!(v, 7);
        assert!(last_error().contains("value boom"));
    }
}
