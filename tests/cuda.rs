//! The CUDA build (`--features cuda`) where no GPU can be used, and the checks
//! every CUDA call makes before it launches anything: the device query, the
//! status of CUDA buffers without a driver, mixed devices, dtypes, shapes,
//! layouts the kernels cannot take, and aliasing. The GPU results themselves
//! are checked on a GPU machine by scripts/gpu-check.sh.
#![cfg(feature = "cuda")]

use std::ffi::{c_void, CStr};

use era::capi::*;

const KDL_CPU: i32 = 1;
const KDL_CUDA: i32 = 2;
const F32: DLDataType = DLDataType { code: 2, bits: 32, lanes: 1 };
const F64: DLDataType = DLDataType { code: 2, bits: 64, lanes: 1 };
const I64: DLDataType = DLDataType { code: 0, bits: 64, lanes: 1 };

/// A descriptor that is never dereferenced on the host: the CUDA path reads
/// shapes and strides only. `addr` is a fake, well-aligned device address.
struct T {
    shape: Vec<i64>,
    strides: Option<Vec<i64>>,
    dl: DLTensor,
}

fn t(addr: usize, device_type: i32, dtype: DLDataType, shape: &[i64], strides: Option<&[i64]>) -> Box<T> {
    let mut b = Box::new(T {
        shape: shape.to_vec(),
        strides: strides.map(|s| s.to_vec()),
        dl: DLTensor {
            data: addr as *mut c_void,
            device: DLDevice { device_type, device_id: 0 },
            ndim: shape.len() as i32,
            dtype,
            shape: std::ptr::null_mut(),
            strides: std::ptr::null_mut(),
            byte_offset: 0,
        },
    });
    b.dl.shape = b.shape.as_mut_ptr();
    if let Some(s) = b.strides.as_mut() {
        b.dl.strides = s.as_mut_ptr();
    }
    b
}

fn cuda(addr: usize, dtype: DLDataType, shape: &[i64]) -> Box<T> {
    t(addr, KDL_CUDA, dtype, shape, None)
}

fn last_error() -> String {
    let mut buf = vec![0u8; 1024];
    unsafe { era_last_error(buf.as_mut_ptr() as *mut _, buf.len()) };
    CStr::from_bytes_until_nul(&buf).unwrap().to_string_lossy().into_owned()
}

fn head(kind: EraHeadKind, set: impl FnOnce(&mut EraConfig)) -> *mut EraHead {
    let mut cfg: EraConfig = unsafe { std::mem::zeroed() };
    cfg.struct_size = std::mem::size_of::<EraConfig>() as u32;
    assert_eq!(unsafe { era_config_default(kind, &mut cfg) }, EraStatus::Ok);
    set(&mut cfg);
    let mut h = std::ptr::null_mut();
    assert_eq!(unsafe { era_head_new(&cfg, &mut h) }, EraStatus::Ok, "{}", last_error());
    h
}

fn gaussian(dim: u64) -> *mut EraHead {
    head(ERA_HEAD_KIND_GAUSSIAN, |c| {
        c.dim = dim;
        c.target_entropy = -(dim as f64);
    })
}

fn gpu() -> bool {
    era_cuda_available() == 1
}

const NULL: *mut c_void = std::ptr::null_mut();

#[test]
fn the_device_query_agrees_with_the_driver() {
    let mut n = -1;
    let s = unsafe { era_cuda_device_count(&mut n) };
    if gpu() {
        assert_eq!(s, EraStatus::Ok);
        assert!(n > 0);
    } else {
        eprintln!("no usable CUDA here ({}); the GPU checks run in scripts/gpu-check.sh", last_error());
        assert!(matches!(s, EraStatus::Ok | EraStatus::DeviceUnavailable));
        if s == EraStatus::Ok {
            assert_eq!(n, 0);
        } else {
            assert!(last_error().contains("CUDA"), "{}", last_error());
            assert_eq!(n, -1, "count is written only on success");
        }
    }
    assert_eq!(unsafe { era_cuda_device_count(std::ptr::null_mut()) }, EraStatus::NullPointer);
}

#[test]
fn cuda_buffers_without_a_usable_driver_answer_device_unavailable() {
    if gpu() {
        eprintln!("skipped: a GPU is usable here (the GPU path is checked by scripts/gpu-check.sh)");
        return;
    }
    let g = gaussian(3);
    let s = head(ERA_HEAD_KIND_SOFTMAX, |c| {
        c.num_classes = 4;
        c.target_entropy = 1.0;
    });
    let tok = head(ERA_HEAD_KIND_TOKEN, |_| {});
    let z = cuda(0x1000, F32, &[2, 3]);
    let o = cuda(0x2000, F32, &[2, 3]);
    let gr = cuda(0x3000, F32, &[2, 3]);
    let e = cuda(0x4000, F32, &[2]);
    let d = cuda(0x5000, F32, &[]);
    let gd = cuda(0x6000, F32, &[]);
    let zs = cuda(0x1000, F64, &[2, 4]);
    let os = cuda(0x2000, F64, &[2, 4]);
    let want = EraStatus::DeviceUnavailable;
    unsafe {
        assert_eq!(era_head_forward(g, &z.dl, &mut o.dl.clone_desc(), NULL), want);
        assert!(last_error().contains("CUDA"), "{}", last_error());
        assert_eq!(era_head_backward(g, &z.dl, &gr.dl, &mut o.dl.clone_desc(), NULL), want);
        assert_eq!(era_head_entropy(g, &o.dl, &mut e.dl.clone_desc(), NULL), want);
        assert_eq!(era_head_forward(s, &zs.dl, &mut os.dl.clone_desc(), NULL), want);
        assert_eq!(era_gaussian_forward_delta(g, &z.dl, &d.dl, &mut o.dl.clone_desc(), NULL), want);
        assert_eq!(era_gaussian_backward_delta(g, &z.dl, &d.dl, &gr.dl, &mut o.dl.clone_desc(), &mut gd.dl.clone_desc(), NULL), want);
        assert_eq!(era_gaussian_entropy(&o.dl, &mut e.dl.clone_desc(), NULL), want);
        // the masked head: head delta, scalar and per-row delta tensors, fill and pass-through
        let mk = cuda(0x7000, F32, &[2, 3]);
        let dr = cuda(0x8000, F32, &[2]);
        let gdr = cuda(0x9000, F32, &[2]);
        let fill = -1.0f64;
        assert_eq!(era_gaussian_forward_masked(g, &z.dl, &mk.dl, std::ptr::null(), &fill, &mut o.dl.clone_desc(), NULL), want);
        assert_eq!(era_gaussian_forward_masked(g, &z.dl, &mk.dl, &dr.dl, std::ptr::null(), &mut o.dl.clone_desc(), NULL), want);
        let (mut gdd, mut gdrd) = (gd.dl.clone_desc(), gdr.dl.clone_desc());
        let (gdp, gdrp) = (&mut gdd as *mut DLTensor, &mut gdrd as *mut DLTensor);
        assert_eq!(era_gaussian_backward_masked(g, &z.dl, &mk.dl, &d.dl, &fill, &gr.dl, &mut o.dl.clone_desc(), gdp, NULL), want);
        assert_eq!(
            era_gaussian_backward_masked(g, &z.dl, &mk.dl, &dr.dl, std::ptr::null(), &gr.dl, &mut o.dl.clone_desc(), gdrp, NULL),
            want
        );
        assert_eq!(era_truncated_normal_entropy(&z.dl, &gr.dl, -1.0, 1.0, &mut e.dl.clone_desc(), NULL), want);
        assert_eq!(era_softmax_entropy(&z.dl, 1.0, &mut e.dl.clone_desc(), NULL), want);
        let logits = cuda(0x10000, F32, &[2, 5]);
        let ids = cuda(0x20000, I64, &[2]);
        let labels = cuda(0x30000, I64, &[2]);
        let adv = cuda(0x40000, F32, &[2]);
        let lp = cuda(0x50000, F32, &[2]);
        let gl = cuda(0x60000, F32, &[2, 5]);
        assert_eq!(
            era_token_forward(
                tok,
                &logits.dl,
                &labels.dl,
                &ids.dl,
                &adv.dl,
                &mut lp.dl.clone_desc(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                NULL
            ),
            want
        );
        assert_eq!(era_token_backward(tok, &logits.dl, &labels.dl, &ids.dl, &adv.dl, &lp.dl, &mut gl.dl.clone_desc(), NULL), want);
        for h in [g, s, tok] {
            era_head_free(h);
        }
    }
}

#[test]
fn host_and_device_tensors_in_one_call_are_unsupported_device() {
    let g = gaussian(3);
    let mut host = [0f32; 6];
    let z = t(host.as_mut_ptr() as usize, KDL_CPU, F32, &[2, 3], None);
    let o = cuda(0x2000, F32, &[2, 3]);
    unsafe {
        assert_eq!(era_head_forward(g, &z.dl, &mut o.dl.clone_desc(), NULL), EraStatus::UnsupportedDevice);
        let msg = last_error();
        assert!(msg.contains("host memory") && msg.contains("CUDA device 0"), "{msg}");
        // two CUDA devices
        let mut o1 = o.dl.clone_desc();
        o1.device.device_id = 1;
        let zc = cuda(0x1000, F32, &[2, 3]);
        assert_eq!(era_head_forward(g, &zc.dl, &mut o1, NULL), EraStatus::UnsupportedDevice);
        assert!(last_error().contains("CUDA device 1"), "{}", last_error());
        // a negative ordinal
        let mut bad = zc.dl.clone_desc();
        bad.device.device_id = -1;
        assert_eq!(era_head_forward(g, &bad, &mut o.dl.clone_desc(), NULL), EraStatus::UnsupportedDevice);
        era_head_free(g);
    }
}

#[test]
fn what_the_cuda_path_rejects_before_launching() {
    // these fail before the driver is touched, so they hold with and without a GPU
    let g = gaussian(3);
    unsafe {
        // wrong last dimension for the head
        let z = cuda(0x1000, F32, &[2, 4]);
        let o = cuda(0x2000, F32, &[2, 4]);
        assert_eq!(era_head_forward(g, &z.dl, &mut o.dl.clone_desc(), NULL), EraStatus::InvalidShape);
        // dtypes: bf16 z for the Gaussian head, f64 out for f32 z
        let bf = DLDataType { code: 4, bits: 16, lanes: 1 };
        let zb = cuda(0x1000, bf, &[2, 3]);
        let ob = cuda(0x2000, bf, &[2, 3]);
        assert_eq!(era_head_forward(g, &zb.dl, &mut ob.dl.clone_desc(), NULL), EraStatus::UnsupportedDtype);
        let z3 = cuda(0x1000, F32, &[2, 3]);
        let o64 = cuda(0x2000, F64, &[2, 3]);
        assert_eq!(era_head_forward(g, &z3.dl, &mut o64.dl.clone_desc(), NULL), EraStatus::UnsupportedDtype);
        // an output that overlaps the input other than exactly (shifted by one row)
        let shifted = cuda(0x1000 + 12, F32, &[2, 3]);
        assert_eq!(era_head_forward(g, &z3.dl, &mut shifted.dl.clone_desc(), NULL), EraStatus::InvalidLayout);
        assert!(last_error().contains("alias"), "{}", last_error());
        // seven batch axes of extent 2 whose strides cannot merge (every axis skips one slot)
        let shape = [2i64, 2, 2, 2, 2, 2, 2, 3];
        // axis i steps 6 * 4^(6-i) elements: twice what a contiguous layout would
        let mut strides: Vec<i64> = (0..7).map(|i| 6 * 4i64.pow(6 - i as u32)).collect();
        strides.push(1);
        let zz = t(0x100000, KDL_CUDA, F32, &shape, Some(&strides));
        let oo = t(0x900000, KDL_CUDA, F32, &shape, Some(&strides));
        assert_eq!(era_head_forward(g, &zz.dl, &mut oo.dl.clone_desc(), NULL), EraStatus::InvalidLayout);
        assert!(last_error().contains("at most 6"), "{}", last_error());
        // the same seven axes contiguous merge into one: no layout error, the driver
        // decides (only without a GPU: the addresses are fake)
        if !gpu() {
            let zc = cuda(0x100000, F32, &shape);
            let oc = cuda(0x900000, F32, &shape);
            assert_eq!(era_head_forward(g, &zc.dl, &mut oc.dl.clone_desc(), NULL), EraStatus::DeviceUnavailable);
        }
        // the masked head: a mask of another dtype or shape, a grad_delta of more than one
        // element for a scalar delta, a grad_delta without a delta
        let mk64 = cuda(0x3000, F64, &[2, 3]);
        let mk4 = cuda(0x3000, F32, &[2, 4]);
        let mk = cuda(0x3000, F32, &[2, 3]);
        let d0 = cuda(0x4000, F32, &[]);
        let gd2 = cuda(0x5000, F32, &[2]);
        let gr = cuda(0x6000, F32, &[2, 3]);
        let (nul, nof) = (std::ptr::null::<DLTensor>(), std::ptr::null::<f64>());
        let o3 = cuda(0x2000, F32, &[2, 3]);
        assert_eq!(era_gaussian_forward_masked(g, &z3.dl, &mk64.dl, nul, nof, &mut o3.dl.clone_desc(), NULL), EraStatus::UnsupportedDtype);
        assert_eq!(era_gaussian_forward_masked(g, &z3.dl, &mk4.dl, nul, nof, &mut o3.dl.clone_desc(), NULL), EraStatus::InvalidShape);
        let mut gd2d = gd2.dl.clone_desc();
        let gdp = &mut gd2d as *mut DLTensor;
        assert_eq!(
            era_gaussian_backward_masked(g, &z3.dl, &mk.dl, &d0.dl, nof, &gr.dl, &mut o3.dl.clone_desc(), gdp, NULL),
            EraStatus::InvalidShape
        );
        assert_eq!(
            era_gaussian_backward_masked(g, &z3.dl, &mk.dl, nul, nof, &gr.dl, &mut o3.dl.clone_desc(), gdp, NULL),
            EraStatus::NullPointer
        );
        // NaN truncation bounds
        let m = cuda(0x1000, F32, &[2, 3]);
        let e = cuda(0x8000, F32, &[2]);
        assert_eq!(era_truncated_normal_entropy(&m.dl, &m.dl, 1.0, f64::NAN, &mut e.dl.clone_desc(), NULL), EraStatus::InvalidArgument);
        era_head_free(g);
    }
}

/// A copy of a descriptor (the shape and stride pointers are shared).
trait CloneDesc {
    fn clone_desc(&self) -> DLTensor;
}

impl CloneDesc for DLTensor {
    fn clone_desc(&self) -> DLTensor {
        DLTensor {
            data: self.data,
            device: self.device,
            ndim: self.ndim,
            dtype: self.dtype,
            shape: self.shape,
            strides: self.strides,
            byte_offset: self.byte_offset,
        }
    }
}

#[test]
fn the_saved_softmax_calls_answer_unsupported_device_on_cuda_buffers() {
    // host memory only (docs/math.md#saved-softmax): with or without a GPU, CUDA
    // buffers are refused before anything runs, naming the calls to use instead
    let g = gaussian(3);
    let s = head(ERA_HEAD_KIND_SOFTMAX, |c| {
        c.num_classes = 3;
        c.target_entropy = 0.5;
    });
    let z = cuda(0x1000, F32, &[2, 3]);
    let o = cuda(0x2000, F32, &[2, 3]);
    let sv = cuda(0x3000, F32, &[2, 3]);
    let gr = cuda(0x4000, F32, &[2, 3]);
    let d = cuda(0x5000, F32, &[]);
    let gd = cuda(0x6000, F32, &[]);
    let (zp, op, sp, gp) =
        (&z.dl as *const DLTensor, &o.dl as *const DLTensor as *mut DLTensor, &sv.dl as *const DLTensor, &gr.dl as *const DLTensor);
    let (dp, gdp) = (&d.dl as *const DLTensor, &gd.dl as *const DLTensor as *mut DLTensor);
    unsafe {
        assert_eq!(era_gaussian_forward_saved(g, zp, dp, op, sp as *mut DLTensor, NULL), EraStatus::UnsupportedDevice);
        assert!(last_error().contains("era_gaussian_forward_delta"), "{}", last_error());
        assert_eq!(era_gaussian_backward_saved(g, sp, dp, gp, op, gdp, NULL), EraStatus::UnsupportedDevice);
        assert!(last_error().contains("era_gaussian_backward_delta"), "{}", last_error());
        assert_eq!(era_softmax_forward_saved(s, zp, op, sp as *mut DLTensor, NULL), EraStatus::UnsupportedDevice);
        assert!(last_error().contains("era_head_forward"), "{}", last_error());
        assert_eq!(era_softmax_backward_saved(s, sp, gp, op, NULL), EraStatus::UnsupportedDevice);
        assert!(last_error().contains("era_head_backward"), "{}", last_error());
        era_head_free(g);
        era_head_free(s);
    }
}
