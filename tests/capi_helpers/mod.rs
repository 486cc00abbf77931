//! What the C ABI tests (capi.rs, capi_heads.rs, capi_fuzz_regressions.rs, saved_softmax*.rs)
//! share: DLPack dtype and device constants, an owned tensor descriptor, the last error
//! message, Gaussian and softmax heads, and the Gaussian forward called as a C caller would.
#![allow(dead_code)]

use std::ffi::{c_void, CStr};
use std::ptr::null_mut;

use era::capi::*;

pub const F64: DLDataType = DLDataType { code: 2, bits: 64, lanes: 1 };
pub const F32: DLDataType = DLDataType { code: 2, bits: 32, lanes: 1 };
pub const I64: DLDataType = DLDataType { code: 0, bits: 64, lanes: 1 };
pub const CPU: DLDevice = DLDevice { device_type: 1, device_id: 0 };

/// Owns shape/strides so the descriptor stays valid.
pub struct T {
    pub shape: Vec<i64>,
    pub strides: Option<Vec<i64>>,
    pub t: DLTensor,
}

impl T {
    pub fn new(data: *mut c_void, dtype: DLDataType, shape: &[i64], strides: Option<&[i64]>) -> Box<T> {
        let mut b = Box::new(T {
            shape: shape.to_vec(),
            strides: strides.map(|s| s.to_vec()),
            t: DLTensor { data, device: CPU, ndim: shape.len() as i32, dtype, shape: null_mut(), strides: null_mut(), byte_offset: 0 },
        });
        b.t.shape = b.shape.as_mut_ptr();
        b.t.strides = b.strides.as_mut().map_or(null_mut(), |s| s.as_mut_ptr());
        b
    }
    pub fn f64(data: &mut [f64], shape: &[i64]) -> Box<T> {
        T::new(data.as_mut_ptr() as *mut c_void, F64, shape, None)
    }
    pub fn p(&mut self) -> *mut DLTensor {
        &mut self.t
    }
}

pub fn last_error() -> String {
    let mut buf = vec![0i8; 1024];
    unsafe { era_last_error(buf.as_mut_ptr() as *mut _, buf.len()) };
    unsafe { CStr::from_ptr(buf.as_ptr() as *const _) }.to_string_lossy().into_owned()
}

pub fn gaussian(dim: u64, h0: f64) -> *mut EraHead {
    let mut c = unsafe { std::mem::zeroed::<EraConfig>() };
    assert_eq!(unsafe { era_config_default(ERA_HEAD_KIND_GAUSSIAN, &mut c) }, EraStatus::Ok);
    c.dim = dim;
    c.target_entropy = h0;
    c.log_std_min = -5.0;
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&c, &mut h) }, EraStatus::Ok);
    h
}

/// A softmax head of `n` classes and target entropy `h0` (the other settings at their defaults).
pub fn softmax_capi(n: u64, h0: f64) -> *mut EraHead {
    let mut c = unsafe { std::mem::zeroed::<EraConfig>() };
    assert_eq!(unsafe { era_config_default(ERA_HEAD_KIND_SOFTMAX, &mut c) }, EraStatus::Ok);
    c.num_classes = n;
    c.target_entropy = h0;
    let mut h = null_mut();
    assert_eq!(unsafe { era_head_new(&c, &mut h) }, EraStatus::Ok);
    h
}

/// A contiguous float32 descriptor of `data` with `shape`.
pub fn f32t(data: &mut [f32], shape: &[i64]) -> Box<T> {
    T::new(data.as_mut_ptr() as *mut c_void, F32, shape, None)
}

pub fn forward(h: *const EraHead, z: &mut T, o: &mut T) -> EraStatus {
    unsafe { era_head_forward(h, z.p(), o.p(), null_mut()) }
}
