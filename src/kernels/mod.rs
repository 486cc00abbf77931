//! The arithmetic of the heads, one module per head, and what they share.
//!
//! - [`gaussian`](crate::kernels::gaussian), [`softmax`](crate::kernels::softmax), [`token`](crate::kernels::token): each head's rows in f64 (the
//!   straightforward kernels, also the references) and in f32 (vectorised,
//!   for f32, bf16 and f16 inputs); later the CUDA kernels sit beside them
//!   (see CONTRIBUTING.md).
//! - [`vmath`](crate::kernels::vmath): vector math (f32 `exp`/`ln`, lane helpers) and the f64 row
//!   helpers (`logsumexp`, `softmax`, entropy).
//! - [`element`](crate::kernels::element): the element types and the bf16 conversions.
//! - [`parallel`](crate::kernels::parallel): the thread pools; the only module that decides whether
//!   work runs on the calling thread or is split across threads.
//!
//! Kernels are arithmetic on slices: no shape checks, no configuration
//! validation and no threading (those live in [`crate::heads`]).

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod element;
pub mod gaussian;
pub mod parallel;
pub mod softmax;
pub mod token;
pub mod token_block;
pub mod token_rows;
mod transpose;
pub mod vmath;

pub use element::Element;

/// Fails with [`crate::error::ErrorKind::OutOfMemory`] unless `bytes` of scratch
/// memory can be reserved now. Every head checks its scratch needs (per-row
/// buffers, per-row results) this way before it allocates, so that absurd
/// sizes (a broadcast input of huge extent) answer with a status instead of
/// aborting the process.
pub fn reserve(bytes: usize, what: &str) -> crate::error::Result<()> {
    let fail = || {
        crate::error::Error::new(
            crate::error::ErrorKind::OutOfMemory,
            format!("cannot allocate {bytes} bytes of scratch memory for {what}"),
        )
    };
    if bytes > physical_memory() {
        return Err(fail());
    }
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(bytes).map_err(|_| fail())
}

/// Fails with [`crate::error::ErrorKind::OutOfMemory`] when an input of
/// `elements` logical elements of `elem_size` bytes describes more bytes than
/// the machine has memory. The row kernels read such an input where it lies,
/// with no scratch in proportion to its size, so only a view that repeats its
/// data (a stride of 0) can be that large; reading it would take hours, and a
/// call of real data must fit its inputs in memory.
pub fn check_input_size(elements: usize, elem_size: usize, what: &str) -> crate::error::Result<()> {
    let bytes = elements.saturating_mul(elem_size);
    if bytes > physical_memory() {
        return Err(crate::error::Error::new(
            crate::error::ErrorKind::OutOfMemory,
            format!("{what} describe {bytes} bytes, more than this machine's memory: the inputs of a call must fit in memory"),
        ));
    }
    Ok(())
}

/// The machine's physical memory in bytes (`MemTotal` of /proc/meminfo, read
/// once); unbounded where it cannot be read.
fn physical_memory() -> usize {
    static MEM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MEM.get_or_init(|| {
        if cfg!(miri) {
            return 1 << 30; // Miri cannot report a failed allocation; keep requests small
        }
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
                kb.checked_mul(1024)
            })
            .unwrap_or(usize::MAX)
    })
}

/// Scratch estimate of a row-wise call: `rows` rows of `n` elements with
/// `arrays` row views each, on up to `threads` threads (4 chunks each).
pub fn row_scratch_bytes(rows: usize, n: usize, arrays: usize, threads: usize) -> usize {
    let per_row = arrays.saturating_mul(64).saturating_add(16);
    let per_chunk = arrays.saturating_add(1).saturating_mul(n).saturating_mul(8);
    let chunks = threads.saturating_mul(4).min(rows.max(1));
    rows.saturating_mul(per_row).saturating_add(chunks.saturating_mul(per_chunk))
}

/// Outputs at least this large are advised onto transparent huge pages
/// ([`advise_huge_pages`]).
pub const HUGE_PAGE_ADVICE_MIN_BYTES: usize = 32 << 20;

/// Asks the OS to back the whole 2 MiB pages inside `[ptr, ptr + bytes)` with
/// transparent huge pages (Linux `madvise(MADV_HUGEPAGE)`), for an output the
/// caller is about to write in full; nothing for smaller ranges, under Miri or
/// on other systems. A freshly allocated buffer (a framework's new gradient)
/// then takes one page fault per 2 MiB on its first write instead of one per
/// 4 KiB: 250 instead of 128,000 for the token head's gradient at 4096 x 32000
/// f32 (500 MiB; BENCHMARKS.md). It is advice: it changes no value, memory already
/// touched keeps its pages, and a refusal (a file mapping, huge pages
/// disabled) is ignored.
pub fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    if bytes < HUGE_PAGE_ADVICE_MIN_BYTES || cfg!(miri) || !cfg!(target_os = "linux") {
        return;
    }
    let start = (ptr as usize).div_ceil(HUGE).saturating_mul(HUGE);
    let end = (ptr as usize).saturating_add(bytes) / HUGE * HUGE;
    if end > start {
        os::madvise_hugepage(start, end - start);
    }
}

#[cfg(all(target_os = "linux", not(miri)))]
mod os {
    extern "C" {
        fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: core::ffi::c_int) -> core::ffi::c_int;
    }
    /// `MADV_HUGEPAGE` (the same value on every Linux architecture).
    const MADV_HUGEPAGE: core::ffi::c_int = 14;

    pub fn madvise_hugepage(start: usize, len: usize) {
        // SAFETY: [start, start + len) lies inside a buffer the caller owns; MADV_HUGEPAGE
        // is a hint that changes no contents; a failure (EINVAL for a range that cannot
        // take huge pages) leaves the memory as it was and is ignored.
        unsafe {
            madvise(start as *mut core::ffi::c_void, len, MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(all(target_os = "linux", not(miri))))]
mod os {
    pub fn madvise_hugepage(_start: usize, _len: usize) {}
}
