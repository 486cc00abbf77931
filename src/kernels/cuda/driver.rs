//! The CUDA driver, loaded at run time.
//!
//! `libera` never links against `libcuda` or `libcudart`: the first CUDA call
//! opens `libcuda.so.1` with `dlopen` and resolves the handful of driver
//! functions the launcher needs. On a machine without a driver the library
//! loads and runs every CPU path as usual; CUDA calls answer
//! [`ErrorKind::DeviceUnavailable`] with the reason.
//!
//! Contexts: each call runs in the primary context of the tensors' device
//! (the context PyTorch, JAX and the CUDA runtime use), pushed for the
//! duration of the call and popped again, so the caller's current context is
//! left as it was. The kernel image is loaded, and every kernel of it
//! resolved and loaded ([`crate::kernels::cuda::KERNELS`]), when a device is
//! first used: nothing is loaded later, inside a call that a CUDA graph may be
//! capturing (CUDA loads module code lazily unless told otherwise).
//!
//! Failures: out of memory is [`ErrorKind::OutOfMemory`]; an error that
//! leaves the context unusable (an illegal or misaligned address, a kernel
//! that trapped, an uncorrectable ECC error: CUDA's sticky errors) is
//! [`ErrorKind::DeviceFault`]; a stream that belongs to another device or
//! context is [`ErrorKind::InvalidStream`]; anything else is
//! [`ErrorKind::DeviceUnavailable`].

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, ErrorKind, Result};

type CuResult = c_int;
type CuDevice = c_int;
/// `CUcontext`, `CUmodule`, `CUfunction`, `CUstream`: opaque driver handles.
pub type Handle = *mut c_void;
/// `CUdeviceptr`.
pub type DevicePtr = u64;

const CUDA_SUCCESS: CuResult = 0;
const RTLD_NOW: c_int = 2;
const RTLD_LOCAL: c_int = 0;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *mut c_char;
}

/// The driver entry points era uses (names as `cuGetProcAddress` would give them).
struct Api {
    init: unsafe extern "C" fn(c_uint) -> CuResult,
    device_get_count: unsafe extern "C" fn(*mut c_int) -> CuResult,
    device_get: unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult,
    primary_ctx_retain: unsafe extern "C" fn(*mut Handle, CuDevice) -> CuResult,
    ctx_push: unsafe extern "C" fn(Handle) -> CuResult,
    ctx_pop: unsafe extern "C" fn(*mut Handle) -> CuResult,
    module_load_data: unsafe extern "C" fn(*mut Handle, *const c_void) -> CuResult,
    module_get_function: unsafe extern "C" fn(*mut Handle, Handle, *const c_char) -> CuResult,
    launch_kernel: unsafe extern "C" fn(
        Handle,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        Handle,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> CuResult,
    mem_alloc_async: unsafe extern "C" fn(*mut DevicePtr, usize, Handle) -> CuResult,
    mem_free_async: unsafe extern "C" fn(DevicePtr, Handle) -> CuResult,
    get_error_string: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    driver_get_version: unsafe extern "C" fn(*mut c_int) -> CuResult,
    /// `cuStreamGetCtx` (CUDA 9.2 on): the context a stream belongs to.
    stream_get_ctx: Option<unsafe extern "C" fn(Handle, *mut Handle) -> CuResult>,
    /// `cuStreamIsCapturing` (CUDA 10 on): whether a stream is being captured into a graph.
    stream_is_capturing: Option<unsafe extern "C" fn(Handle, *mut c_int) -> CuResult>,
    /// `cuFuncLoad` (CUDA 12.4 on): finishes loading a function that lazy loading deferred.
    func_load: Option<unsafe extern "C" fn(Handle) -> CuResult>,
}

// SAFETY: the table holds plain function pointers into the driver, which is thread-safe.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

/// What loading the driver gave: the API, or why there is none.
static DRIVER: OnceLock<std::result::Result<Api, String>> = OnceLock::new();

/// One device's primary context and its kernels, every one resolved and loaded.
#[derive(Clone, Copy)]
struct DeviceState {
    ctx: Handle,
    /// `(name, CUfunction)` of every kernel of the image (leaked once per device).
    functions: &'static [(&'static str, usize)],
}
// SAFETY: driver handles may be used from any thread.
unsafe impl Send for DeviceState {}

static DEVICES: Mutex<Vec<(i32, DeviceState)>> = Mutex::new(Vec::new());

/// CUDA's sticky errors: the context cannot be used again in this process.
/// ECC uncorrectable (214), illegal address (700), launch timeout (702),
/// hardware stack error (714), illegal instruction (715), misaligned address
/// (716), invalid address space (717), invalid program counter (718), launch
/// failure (719).
const STICKY: [CuResult; 9] = [214, 700, 702, 714, 715, 716, 717, 718, 719];

/// What a driver result `r` means to a caller: out of memory, a sticky device
/// fault, a stream of another context (only for calls that take a stream:
/// invalid context (201), invalid handle (400), context destroyed (709)), or
/// an unavailable device.
fn kind_of(r: CuResult, stream_call: bool) -> ErrorKind {
    match r {
        2 => ErrorKind::OutOfMemory,
        _ if STICKY.contains(&r) => ErrorKind::DeviceFault,
        201 | 400 | 709 if stream_call => ErrorKind::InvalidStream,
        _ => ErrorKind::DeviceUnavailable,
    }
}

fn unavailable(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::DeviceUnavailable, msg)
}

unsafe fn sym<T>(lib: *mut c_void, name: &CStr) -> std::result::Result<T, String> {
    let p = dlsym(lib, name.as_ptr());
    if p.is_null() {
        return Err(format!("the CUDA driver has no {}", name.to_string_lossy()));
    }
    // SAFETY: T is a function pointer type of the symbol's C signature
    Ok(std::mem::transmute_copy::<*mut c_void, T>(&p))
}

fn load() -> std::result::Result<Api, String> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; the symbols are the
    // driver's documented C entry points with the signatures declared in Api.
    unsafe {
        let mut lib = std::ptr::null_mut();
        for name in [c"libcuda.so.1", c"libcuda.so"] {
            lib = dlopen(name.as_ptr(), RTLD_NOW | RTLD_LOCAL);
            if !lib.is_null() {
                break;
            }
        }
        if lib.is_null() {
            let e = dlerror();
            let why = if e.is_null() { String::new() } else { CStr::from_ptr(e).to_string_lossy().into_owned() };
            return Err(format!("the CUDA driver (libcuda.so.1) could not be loaded: {why}"));
        }
        let api = Api {
            init: sym(lib, c"cuInit")?,
            device_get_count: sym(lib, c"cuDeviceGetCount")?,
            device_get: sym(lib, c"cuDeviceGet")?,
            primary_ctx_retain: sym(lib, c"cuDevicePrimaryCtxRetain")?,
            ctx_push: sym(lib, c"cuCtxPushCurrent_v2")?,
            ctx_pop: sym(lib, c"cuCtxPopCurrent_v2")?,
            module_load_data: sym(lib, c"cuModuleLoadData")?,
            module_get_function: sym(lib, c"cuModuleGetFunction")?,
            launch_kernel: sym(lib, c"cuLaunchKernel")?,
            mem_alloc_async: sym(lib, c"cuMemAllocAsync")?,
            mem_free_async: sym(lib, c"cuMemFreeAsync")?,
            get_error_string: sym(lib, c"cuGetErrorString")?,
            driver_get_version: sym(lib, c"cuDriverGetVersion")?,
            stream_get_ctx: sym(lib, c"cuStreamGetCtx").ok(),
            stream_is_capturing: sym(lib, c"cuStreamIsCapturing").ok(),
            func_load: sym(lib, c"cuFuncLoad").ok(),
        };
        let r = (api.init)(0);
        if r != CUDA_SUCCESS {
            return Err(format!("cuInit failed: {}", describe(&api, r)));
        }
        Ok(api)
    }
}

fn describe(api: &Api, r: CuResult) -> String {
    let mut s: *const c_char = std::ptr::null();
    // SAFETY: cuGetErrorString writes a pointer to a static string or leaves it null
    unsafe {
        if (api.get_error_string)(r, &mut s) == CUDA_SUCCESS && !s.is_null() {
            return format!("{} (CUDA error {r})", CStr::from_ptr(s).to_string_lossy());
        }
    }
    format!("CUDA error {r}")
}

fn api() -> Result<&'static Api> {
    match DRIVER.get_or_init(load) {
        Ok(a) => Ok(a),
        Err(why) => Err(unavailable(why.clone())),
    }
}

fn check(api: &Api, r: CuResult, what: &str) -> Result<()> {
    check_kind(api, r, what, false)
}

/// [`check`] for a call that takes the caller's stream.
fn check_stream(api: &Api, r: CuResult, what: &str) -> Result<()> {
    check_kind(api, r, what, true)
}

fn check_kind(api: &Api, r: CuResult, what: &str, stream_call: bool) -> Result<()> {
    if r == CUDA_SUCCESS {
        return Ok(());
    }
    let kind = kind_of(r, stream_call);
    let hint = match kind {
        ErrorKind::DeviceFault => "; the CUDA context is unusable for the rest of this process (a sticky error)",
        ErrorKind::InvalidStream => "; is the stream one of the tensors' device?",
        _ => "",
    };
    Err(Error::new(kind, format!("{what}: {}{hint}", describe(api, r))))
}

/// Whether CUDA is usable: the driver loads, initialises and reports at least one device.
pub fn available() -> bool {
    device_count().map(|n| n > 0).unwrap_or(false)
}

/// The number of CUDA devices, or why CUDA cannot be used.
pub fn device_count() -> Result<i32> {
    let a = api()?;
    let mut n: c_int = 0;
    // SAFETY: n is writable
    check(a, unsafe { (a.device_get_count)(&mut n) }, "cuDeviceGetCount")?;
    Ok(n)
}

/// The driver's CUDA version (e.g. 13000 for 13.0).
pub fn driver_version() -> Result<i32> {
    let a = api()?;
    let mut v: c_int = 0;
    // SAFETY: v is writable
    check(a, unsafe { (a.driver_get_version)(&mut v) }, "cuDriverGetVersion")?;
    Ok(v)
}

fn device_state(a: &Api, device: i32, image: &[u8], kernels: &[&'static str]) -> Result<DeviceState> {
    let mut devices = DEVICES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = devices.iter().find(|(d, _)| *d == device) {
        return Ok(*s);
    }
    let count = device_count()?;
    if device < 0 || device >= count {
        return Err(unavailable(format!("CUDA device {device} does not exist ({count} device(s) visible)")));
    }
    let mut dev: CuDevice = 0;
    let mut ctx: Handle = std::ptr::null_mut();
    let mut module: Handle = std::ptr::null_mut();
    // SAFETY: out-pointers are writable; the image is a fatbinary that lives for the program
    unsafe {
        check(a, (a.device_get)(&mut dev, device), "cuDeviceGet")?;
        check(a, (a.primary_ctx_retain)(&mut ctx, dev), "cuDevicePrimaryCtxRetain")?;
        check(a, (a.ctx_push)(ctx), "cuCtxPushCurrent")?;
        let loaded = load_kernels(a, image, kernels, &mut module);
        let mut popped: Handle = std::ptr::null_mut();
        let _ = (a.ctx_pop)(&mut popped);
        let functions = loaded?;
        let s = DeviceState { ctx, functions: Box::leak(functions.into_boxed_slice()) };
        devices.push((device, s));
        Ok(s)
    }
}

/// Loads `image` into the current context and resolves and loads every
/// kernel of `kernels` (so that no code is loaded later, during a capture).
///
/// # Safety
/// A context is current; `image` is a fatbinary.
unsafe fn load_kernels(a: &Api, image: &[u8], kernels: &[&'static str], module: &mut Handle) -> Result<Vec<(&'static str, usize)>> {
    // SAFETY: module is writable, the image lives for the program
    let r = unsafe { (a.module_load_data)(module, image.as_ptr() as *const c_void) };
    check(a, r, "loading era's CUDA kernels (cuModuleLoadData; is the driver older than the toolkit they were built with?)")?;
    let mut functions = Vec::with_capacity(kernels.len());
    for &name in kernels {
        let c = std::ffi::CString::new(name).map_err(|_| Error::new(ErrorKind::Internal, "kernel name with a NUL"))?;
        let mut f: Handle = std::ptr::null_mut();
        // SAFETY: f is writable, the module is loaded in the current context
        check(a, unsafe { (a.module_get_function)(&mut f, *module, c.as_ptr()) }, name)?;
        if let Some(load) = a.func_load {
            // SAFETY: f is a function of the loaded module
            check(a, unsafe { load(f) }, "cuFuncLoad")?;
        }
        functions.push((name, f as usize));
    }
    Ok(functions)
}

/// A device's primary context made current for the life of the guard.
pub struct Scope {
    api: &'static Api,
    state: DeviceState,
    device: i32,
}

impl Scope {
    /// Enters device `device`'s primary context; its first use loads `image`
    /// and resolves and loads every kernel named in `kernels`.
    pub fn enter(device: i32, image: &'static [u8], kernels: &[&'static str]) -> Result<Scope> {
        let a = api()?;
        let state = device_state(a, device, image, kernels)?;
        // SAFETY: ctx is a retained primary context
        check(a, unsafe { (a.ctx_push)(state.ctx) }, "cuCtxPushCurrent")?;
        Ok(Scope { api: a, state, device })
    }

    fn function(&self, name: &'static str) -> Result<Handle> {
        match self.state.functions.iter().find(|(n, _)| *n == name) {
            Some((_, f)) => Ok(*f as Handle),
            None => {
                Err(Error::new(ErrorKind::Internal, format!("the CUDA kernel {name} is not in the kernel list (device {})", self.device)))
            }
        }
    }

    /// Fails with [`ErrorKind::InvalidStream`] if `stream` belongs to a context
    /// other than this device's primary context. The driver's special handles
    /// (NULL, `CU_STREAM_LEGACY` = 1, `CU_STREAM_PER_THREAD` = 2) always pass,
    /// and so does a stream being captured into a graph (nothing but stream
    /// operations is called during a capture; a wrong stream there fails at the
    /// launch, which [`check_stream`] maps); a driver without `cuStreamGetCtx`
    /// and `cuStreamIsCapturing`, or one that cannot answer, leaves the question
    /// to the launch.
    ///
    /// # Safety
    /// `stream` is a special handle or a live `CUstream`.
    unsafe fn check_stream_context(&self, stream: Handle) -> Result<()> {
        if (stream as usize) <= 2 {
            return Ok(());
        }
        let (Some(get), Some(capturing)) = (self.api.stream_get_ctx, self.api.stream_is_capturing) else { return Ok(()) };
        let mut status: c_int = 0;
        // SAFETY: status is writable, stream is live and not a special handle
        if unsafe { capturing(stream, &mut status) } != CUDA_SUCCESS || status != 0 {
            return Ok(()); // being captured (or unknown): leave it to the launch
        }
        let mut ctx: Handle = std::ptr::null_mut();
        // SAFETY: ctx is writable, stream is live
        if unsafe { get(stream, &mut ctx) } == CUDA_SUCCESS && !ctx.is_null() && ctx != self.state.ctx {
            return Err(Error::new(
                ErrorKind::InvalidStream,
                format!(
                    "the stream belongs to another CUDA context than device {}'s primary context (a stream of another device?)",
                    self.device
                ),
            ));
        }
        Ok(())
    }

    /// Launches kernel `name` with one parameter block `params` on `stream`.
    ///
    /// # Safety
    /// `P` is the `#[repr(C)]` mirror of the kernel's parameter struct and every
    /// pointer in it addresses device memory valid for the kernel's accesses.
    pub unsafe fn launch<P>(&self, name: &'static str, grid: u32, block: u32, stream: Handle, params: &P) -> Result<()> {
        let f = self.function(name)?;
        // SAFETY: stream is the caller's (NULL, a special handle or a live stream)
        unsafe { self.check_stream_context(stream)? };
        let mut args = [params as *const P as *mut c_void];
        let r = (self.api.launch_kernel)(f, grid.max(1), 1, 1, block, 1, 1, 0, stream, args.as_mut_ptr(), std::ptr::null_mut());
        check_stream(self.api, r, name)
    }

    /// Stream-ordered allocation of `bytes` on `stream` (capturable into a CUDA graph).
    ///
    /// # Safety
    /// `stream` is NULL or a stream of this scope's device.
    pub unsafe fn alloc(&self, bytes: usize, stream: Handle) -> Result<DevicePtr> {
        // SAFETY: stream is the caller's (NULL, a special handle or a live stream)
        unsafe { self.check_stream_context(stream)? };
        let mut p: DevicePtr = 0;
        // SAFETY: p is writable
        check_stream(self.api, (self.api.mem_alloc_async)(&mut p, bytes.max(16), stream), "cuMemAllocAsync")?;
        Ok(p)
    }

    /// Stream-ordered free of an [`Scope::alloc`] allocation.
    ///
    /// # Safety
    /// `p` came from [`Scope::alloc`] of this scope and `stream` is a stream of its device.
    pub unsafe fn free(&self, p: DevicePtr, stream: Handle) -> Result<()> {
        // SAFETY: p came from alloc on this device
        check_stream(self.api, (self.api.mem_free_async)(p, stream), "cuMemFreeAsync")
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let mut popped: Handle = std::ptr::null_mut();
        // SAFETY: this scope pushed the context
        let _ = unsafe { (self.api.ctx_pop)(&mut popped) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_results_map_to_kinds() {
        assert_eq!(kind_of(2, false), ErrorKind::OutOfMemory);
        assert_eq!(kind_of(2, true), ErrorKind::OutOfMemory);
        for r in STICKY {
            assert_eq!(kind_of(r, false), ErrorKind::DeviceFault, "{r}");
            assert_eq!(kind_of(r, true), ErrorKind::DeviceFault, "{r}");
        }
        for r in [201, 400, 709] {
            assert_eq!(kind_of(r, true), ErrorKind::InvalidStream, "{r}");
            assert_eq!(kind_of(r, false), ErrorKind::DeviceUnavailable, "{r}");
        }
        for r in [1, 3, 100, 101, 209, 218, 222, 500, 701, 999] {
            assert_eq!(kind_of(r, true), ErrorKind::DeviceUnavailable, "{r}");
        }
    }
}
