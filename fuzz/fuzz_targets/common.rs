//! Shared pieces of the fuzz targets: C-style tensor descriptors over
//! harness-owned buffers.
#![allow(dead_code, unused_imports)]

use std::ffi::c_void;
use std::ptr::null_mut;

pub use era::capi::*;

pub const F32: DLDataType = DLDataType { code: 2, bits: 32, lanes: 1 };
pub const F64: DLDataType = DLDataType { code: 2, bits: 64, lanes: 1 };
pub const I64: DLDataType = DLDataType { code: 0, bits: 64, lanes: 1 };
pub const CPU: DLDevice = DLDevice { device_type: 1, device_id: 0 };

/// A descriptor that owns its shape and strides arrays.
pub struct Tensor {
    pub shape: Vec<i64>,
    pub strides: Option<Vec<i64>>,
    pub t: DLTensor,
}

impl Tensor {
    pub fn new(data: *mut c_void, dtype: DLDataType, shape: Vec<i64>, strides: Option<Vec<i64>>) -> Box<Tensor> {
        let mut b = Box::new(Tensor {
            shape,
            strides,
            t: DLTensor { data, device: CPU, ndim: 0, dtype, shape: null_mut(), strides: null_mut(), byte_offset: 0 },
        });
        b.t.ndim = b.shape.len() as i32;
        b.t.shape = b.shape.as_mut_ptr();
        b.t.strides = b.strides.as_mut().map_or(null_mut(), |s| s.as_mut_ptr());
        b
    }

    pub fn contiguous<T>(data: &mut [T], dtype: DLDataType, shape: &[i64]) -> Box<Tensor> {
        assert_eq!(shape.iter().product::<i64>() as usize, data.len());
        Tensor::new(data.as_mut_ptr() as *mut c_void, dtype, shape.to_vec(), None)
    }

    pub fn p(&mut self) -> *mut DLTensor {
        &mut self.t
    }
}

/// The last error message of this thread.
pub fn last_error() -> String {
    let mut buf = vec![0u8; 512];
    let n = unsafe { era_last_error(buf.as_mut_ptr() as *mut _, buf.len()) };
    buf.truncate(n.min(511));
    String::from_utf8(buf).expect("era_last_error must produce UTF-8")
}

/// Every failing status must come with a message.
pub fn check_status(st: EraStatus) {
    assert_ne!(st, EraStatus::Internal, "internal error (caught panic): {}", last_error());
    if st != EraStatus::Ok {
        assert!(!last_error().is_empty(), "status {st:?} without a message");
    }
}

/// A JSON round trip must reproduce the document.
pub fn json_roundtrip(h: *const EraHead) {
    let mut n = 0usize;
    check_status(unsafe { era_head_to_json(h, null_mut(), 0, &mut n) });
    let mut buf = vec![0u8; n + 1];
    assert_eq!(unsafe { era_head_to_json(h, buf.as_mut_ptr() as _, buf.len(), &mut n) }, EraStatus::Ok);
    let mut back = null_mut();
    let st = unsafe { era_head_from_json(buf.as_ptr() as _, &mut back) };
    assert_eq!(st, EraStatus::Ok, "a saved head must load: {} from {}", last_error(), String::from_utf8_lossy(&buf));
    let mut m = 0usize;
    let mut buf2 = vec![0u8; n + 1];
    assert_eq!(unsafe { era_head_to_json(back, buf2.as_mut_ptr() as _, buf2.len(), &mut m) }, EraStatus::Ok);
    assert_eq!(buf[..n], buf2[..m], "JSON round trip changed the head");
    unsafe { era_head_free(back) };
}
