//! The token backward advises its gradient onto transparent huge pages
//! (`era::kernels::advise_huge_pages`): checked through the advice flag the
//! kernel records on the memory (`hg` in the mapping's `VmFlags` in
//! /proc/self/smaps), which does not depend on whether huge pages were free.

#![cfg(target_os = "linux")]

use era::kernels::{advise_huge_pages, HUGE_PAGE_ADVICE_MIN_BYTES};
use era::{IndexView, TokenConfig, TokenHead};
use ndarray::{ArrayD, IxDyn};

const HUGE: usize = 2 << 20;

/// Whether the mapping that holds `addr` carries the huge-page advice.
fn advised(addr: usize) -> bool {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) {
                inside = lo <= addr && addr < hi;
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.split_whitespace().any(|f| f == "hg");
            }
        }
    }
    panic!("no mapping holds {addr:#x}");
}

/// The kernel supports transparent huge pages, so it records the advice
/// (whatever the system-wide mode in `enabled`, even `never`); a kernel built
/// without them refuses it, and then there is nothing to observe.
fn thp_available() -> bool {
    let ok = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").is_dir();
    if !ok {
        eprintln!("SKIPPED: this kernel has no transparent huge pages; the advice cannot be observed");
    }
    ok
}

/// The first whole 2 MiB page inside a buffer.
fn first_huge_page(ptr: *const f32) -> usize {
    (ptr as usize).div_ceil(HUGE) * HUGE
}

#[test]
fn advice_covers_the_whole_huge_pages_of_large_buffers_only() {
    if !thp_available() {
        return;
    }
    let mut big = vec![0.0f32; HUGE_PAGE_ADVICE_MIN_BYTES / 4 + 1000];
    let start = first_huge_page(big.as_ptr());
    assert!(!advised(start), "a fresh buffer carries no advice");
    advise_huge_pages(big.as_mut_ptr().cast(), big.len() * 4);
    assert!(advised(start));
    // below the size threshold: left alone
    let mut small = vec![0.0f32; HUGE_PAGE_ADVICE_MIN_BYTES / 4 - 1];
    let s = first_huge_page(small.as_ptr());
    advise_huge_pages(small.as_mut_ptr().cast(), small.len() * 4);
    assert!(!advised(s));
    // a range with no whole 2 MiB page inside, and an empty one: nothing to do
    advise_huge_pages((start + 4096) as *mut u8, 0);
    advise_huge_pages(std::ptr::null_mut(), 0);
    big[0] = 1.0; // still ordinary memory
    assert_eq!(big[0], 1.0);
}

#[test]
fn token_backward_advises_a_large_contiguous_gradient() {
    if !thp_available() {
        return;
    }
    // 256 x 32768 f32 = 32 MiB, the threshold
    let (n, v) = (256usize, 32768usize);
    let head = TokenHead::new(TokenConfig::default()).unwrap();
    let logits = ArrayD::from_shape_fn(IxDyn(&[n, v]), |i| ((i[0] * 7 + i[1] * 13) % 101) as f32 * 0.01);
    let labels = ArrayD::from_shape_fn(IxDyn(&[n]), |i| (i[0] * 31 % v) as i64);
    let ids = ArrayD::from_shape_fn(IxDyn(&[n]), |i| (i[0] / 64) as i64);
    let scale = ArrayD::from_elem(IxDyn(&[n]), 1.0f64);
    let g = ArrayD::from_elem(IxDyn(&[n]), 1.0f64);
    let (yv, iv) = (IndexView::from(labels.view()), IndexView::from(ids.view()));
    for reference in [false, true] {
        let mut grad = ArrayD::<f32>::zeros(IxDyn(&[n, v]));
        let start = first_huge_page(grad.as_ptr());
        assert!(!advised(start));
        if reference {
            head.backward_reference(logits.view(), yv.clone(), iv.clone(), scale.view(), g.view(), grad.view_mut()).unwrap();
        } else {
            head.backward(logits.view(), yv.clone(), iv.clone(), scale.view(), g.view(), grad.view_mut()).unwrap();
        }
        assert!(advised(start), "reference = {reference}");
        // the gradient of row 0 sums to 0 (softmax minus one-hot, scaled)
        let s: f64 = grad.index_axis(ndarray::Axis(0), 0).iter().map(|&x| x as f64).sum();
        assert!(s.abs() < 1e-3, "{s}");
    }
}
