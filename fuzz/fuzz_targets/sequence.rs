//! Random call sequences over a pool of handles: create (valid or not),
//! free, compute, update/set delta, save/load, config, error buffer reads,
//! including using a handle again after one of its calls failed.
#![no_main]

#[path = "common.rs"]
mod common;
use arbitrary::Arbitrary;
use common::*;
use libfuzzer_sys::fuzz_target;
use std::ptr::null_mut;

#[derive(Arbitrary, Debug)]
enum Op {
    New { kind: u8, dim: u8, target: f64, lo: f64, hi: f64, opt: u8, lr: f64 },
    Free(u8),
    Forward { h: u8, rows: u8, width: u8, f32: bool, inplace: bool },
    Backward { h: u8, rows: u8, f32: bool },
    Update { h: u8, mean_entropy: f64 },
    SetDelta { h: u8, delta: f64 },
    GetDelta(u8),
    Save { h: u8, len: u16 },
    Load(u8),
    Config { h: u8, size: u8 },
    Error { len: u8 },
}

fuzz_target!(|ops: Vec<Op>| {
    let mut pool: Vec<*mut EraHead> = Vec::new();
    let get = |pool: &Vec<*mut EraHead>, i: u8| if pool.is_empty() { null_mut() } else { pool[i as usize % pool.len()] };
    for op in ops.into_iter().take(64) {
        match op {
            Op::New { kind, dim, target, lo, hi, opt, lr } => {
                let mut c = match EraConfig::defaults(1 + (kind % 3) as u32) {
                    Ok(c) => c,
                    Err(_) => unreachable!(),
                };
                c.dim = (dim % 9) as u64;
                c.num_classes = (dim % 9) as u64;
                c.target_entropy = target;
                c.log_std_min = lo;
                c.log_std_max = hi;
                c.delta_optimizer = (opt % 4) as u32;
                c.delta_lr = lr;
                let mut h = null_mut();
                let st = unsafe { era_head_new(&c, &mut h) };
                check_status(st);
                if st == EraStatus::Ok {
                    pool.push(h);
                } else {
                    assert!(h.is_null());
                }
            }
            Op::Free(i) => {
                if !pool.is_empty() {
                    let h = pool.remove(i as usize % pool.len());
                    unsafe { era_head_free(h) };
                }
            }
            Op::Forward { h, rows, width, f32, inplace } => {
                let (r, w) = ((rows % 5) as i64, (width % 9) as i64);
                let mut a = vec![0.5f64; (r * w) as usize];
                let mut b = vec![0.0f64; (r * w) as usize];
                let mut a32 = vec![0.5f32; (r * w) as usize];
                let dt = if f32 { F32 } else { F64 };
                let p = if f32 { a32.as_mut_ptr() as *mut _ } else { a.as_mut_ptr() as *mut _ };
                let mut ta = Tensor::new(p, dt, vec![r, w], None);
                let mut tb = if inplace {
                    Tensor::new(p, dt, vec![r, w], None)
                } else {
                    Tensor::new(b.as_mut_ptr() as *mut _, F64, vec![r, w], None)
                };
                check_status(unsafe { era_head_forward(get(&pool, h), ta.p(), tb.p(), null_mut()) });
            }
            Op::Backward { h, rows, f32 } => {
                let r = (rows % 5) as i64;
                let w = 4;
                let mut a = vec![0.25f64; (r * w) as usize];
                let mut a32 = vec![0.25f32; (r * w) as usize];
                let (dt, p) = if f32 { (F32, a32.as_mut_ptr() as *mut _) } else { (F64, a.as_mut_ptr() as *mut _) };
                let mut tz = Tensor::new(p, dt, vec![r, w], None);
                let mut tg = Tensor::new(p, dt, vec![r, w], None);
                let mut to = Tensor::new(p, dt, vec![r, w], None);
                check_status(unsafe { era_head_backward(get(&pool, h), tz.p(), tg.p(), to.p(), null_mut()) });
            }
            Op::Update { h, mean_entropy } => {
                let mut d = f64::NAN;
                check_status(unsafe { era_head_update_delta(get(&pool, h), mean_entropy, &mut d) });
            }
            Op::SetDelta { h, delta } => check_status(unsafe { era_head_set_delta(get(&pool, h), delta) }),
            Op::GetDelta(h) => {
                let mut d = 0.0;
                check_status(unsafe { era_head_delta(get(&pool, h), &mut d) });
            }
            Op::Save { h, len } => {
                let mut buf = vec![0u8; len as usize % 2048];
                let mut n = 0usize;
                let p = if buf.is_empty() { null_mut() } else { buf.as_mut_ptr() as *mut _ };
                let st = unsafe { era_head_to_json(get(&pool, h), p, buf.len(), &mut n) };
                check_status(st);
                if st == EraStatus::Ok && !buf.is_empty() {
                    assert_eq!(buf[n], 0);
                }
            }
            Op::Load(h) => {
                let hh = get(&pool, h);
                if !hh.is_null() {
                    json_roundtrip(hh);
                }
            }
            Op::Config { h, size } => {
                let mut c: EraConfig = unsafe { std::mem::zeroed() };
                c.struct_size = (size as u32).min(std::mem::size_of::<EraConfig>() as u32);
                check_status(unsafe { era_head_config(get(&pool, h), &mut c) });
            }
            Op::Error { len } => {
                let mut buf = vec![0xffu8; len as usize];
                let p = if buf.is_empty() { null_mut() } else { buf.as_mut_ptr() as *mut _ };
                let n = unsafe { era_last_error(p, buf.len()) };
                if !buf.is_empty() {
                    let end = buf.iter().position(|&b| b == 0).expect("NUL-terminated");
                    assert!(end <= n && std::str::from_utf8(&buf[..end]).is_ok());
                }
            }
        }
    }
    for h in pool {
        unsafe { era_head_free(h) };
    }
});
