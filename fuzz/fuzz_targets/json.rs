//! Random bytes as JSON for `era_head_from_json`; a head that loads must
//! save and load again to the same document.
#![no_main]

#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use std::ptr::null_mut;

fuzz_target!(|data: &[u8]| {
    let mut s: Vec<u8> = data.iter().copied().take_while(|&b| b != 0).collect();
    s.push(0);
    let mut h = null_mut();
    let st = unsafe { era_head_from_json(s.as_ptr() as *const _, &mut h) };
    check_status(st);
    if st == EraStatus::Ok {
        json_roundtrip(h);
        unsafe { era_head_free(h) };
    } else {
        assert!(h.is_null());
    }
});
