//! Saving a head as JSON and restoring it.

use std::ffi::{c_char, CStr};

use crate::capi::head::{head_ref, EraHead};
use crate::capi::{ffi_boundary, in_ref, out_ref, EraStatus};
use crate::error::bail;
use crate::heads::Head;

/// Serialises the head (configuration, learned `delta` and optimiser state)
/// as UTF-8 JSON into `buf`, NUL-terminated, and stores its length (without
/// the NUL) in `*written`. With `buf == NULL` and `len == 0` it only stores
/// the length (a size query).
///
/// Errors: `NULL_POINTER` (head, written, or buf with len > 0);
/// `BUFFER_TOO_SMALL` when `len < length + 1` (nothing is written; the
/// message says how many bytes are needed).
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes; `written` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_to_json(head: *const EraHead, buf: *mut c_char, len: usize, written: *mut usize) -> EraStatus {
    ffi_boundary! {
        let h = head_ref(head)?;
        let written = out_ref(written, "written")?;
        let json = h.to_json()?;
        if buf.is_null() {
            if len != 0 {
                bail!(NullPointer, "buf is NULL but len is {len} (use len 0 to query the size)");
            }
            *written = json.len();
            return Ok(());
        }
        if len < json.len() + 1 {
            bail!(BufferTooSmall, "the JSON needs {} bytes (with the NUL), the buffer has {len}", json.len() + 1);
        }
        std::ptr::copy_nonoverlapping(json.as_ptr(), buf as *mut u8, json.len());
        *buf.add(json.len()) = 0;
        *written = json.len();
        Ok(())
    }
}

/// Restores a head from the JSON of `era_head_to_json` (or from a bare
/// config document such as `{"kind": "softmax", "num_classes": 10,
/// "target_entropy": 1.0}`), validating it like `era_head_new`.
///
/// Errors: `NULL_POINTER` (json, out); `JSON` (invalid UTF-8, malformed
/// JSON, unknown or missing fields, wrong format/version); `INVALID_CONFIG`
/// and `INFEASIBLE_TARGET` as `era_head_new`.
///
/// # Safety
/// `json` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn era_head_from_json(json: *const c_char, out: *mut *mut EraHead) -> EraStatus {
    ffi_boundary! {
        in_ref(json, "json")?;
        let out = out_ref(out, "out")?;
        let s = match CStr::from_ptr(json).to_str() {
            Ok(s) => s,
            Err(e) => bail!(Json, "json is not valid UTF-8: {e}"),
        };
        let head = Head::from_json(s)?;
        *out = Box::into_raw(Box::new(EraHead { inner: head }));
        Ok(())
    }
}
