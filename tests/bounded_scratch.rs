//! No token-head call reserves memory in proportion to a row's width: a row
//! of 2^20 + 1 logits with stride 0 (one value, broadcast) goes through every
//! token call while a counting allocator records the largest allocation and
//! the peak of live bytes. Before rows were read a block at a time, such a row
//! was gathered whole (4 MiB as f32, more as scratch estimates).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use era::heads::token::ColumnOutputs;
use era::{IndexView, TokenConfig, TokenHead, TokenOutputs};
use ndarray::{ArrayD, IxDyn};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
            LARGEST.fetch_max(layout.size(), Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        System.dealloc(p, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns (largest single allocation, peak live bytes above the start).
fn measure(f: impl FnOnce()) -> (usize, usize) {
    let start = LIVE.load(Ordering::SeqCst);
    PEAK.store(start, Ordering::SeqCst);
    LARGEST.store(0, Ordering::SeqCst);
    f();
    (LARGEST.load(Ordering::SeqCst), PEAK.load(Ordering::SeqCst) - start)
}

#[test]
#[cfg_attr(miri, ignore = "a row of 2^20 entries")]
fn wide_strided_rows_take_memory_independent_of_their_width() {
    const V: usize = (1 << 20) + 1; // wider than GATHER_MAX (2^20): 4 MiB as a gathered f32 row
    let one = ndarray::arr2(&[[0.25f32]]);
    let wide = one.broadcast((1, V)).unwrap().into_dyn(); // stride 0 along the row
    let y = ArrayD::from_elem(IxDyn(&[1]), 7i64);
    let ids = ArrayD::from_elem(IxDyn(&[1]), 0i64);
    let adv = ArrayD::from_elem(IxDyn(&[1]), 1.0f32);
    // one thread: the bound below is then the bound of a single worker
    // the forward with a vocabulary top-K (its selection read a block at a time too), the
    // columns and the entropy over the whole vocabulary
    for topk in [20usize, 0] {
        let head = TokenHead::new(TokenConfig { vocab_topk: topk, ..Default::default() }).unwrap().with_num_threads(1);
        let mut lp = ArrayD::<f32>::zeros(IxDyn(&[1]));
        let mut h = ArrayD::<f32>::zeros(IxDyn(&[1]));
        let (largest, peak) = measure(|| {
            let out = TokenOutputs {
                logprobs: Some(lp.view_mut()),
                entropy: Some(h.view_mut()),
                scale: None,
                advantages: None,
                response_entropy: None,
            };
            head.forward(wide.view(), IndexView::from(y.view()), IndexView::from(ids.view()), adv.view(), out).unwrap();
        });
        assert!(largest < 1 << 20 && peak < 1 << 20, "forward, top-K {topk}: largest allocation {largest}, peak {peak}");
        assert!((h[[0]] as f64 - (V as f64).ln()).abs() < 1e-5 * (V as f64).ln(), "a uniform row's entropy: {}", h[[0]]);
        assert!((lp[[0]] as f64 + (V.min(if topk > 0 { topk } else { V }) as f64).ln()).abs() < 1e-3, "{}", lp[[0]]);

        if topk > 0 {
            continue;
        }
        let mut cols = ArrayD::<f32>::zeros(IxDyn(&[1, 3]));
        let (largest, peak) = measure(|| {
            let out = ColumnOutputs { columns: Some(cols.view_mut()), entropy: Some(h.view_mut()), sum_sq: None };
            head.logprob_columns(wide.view(), IndexView::from(y.view()), None::<ndarray::ArrayViewD<'_, f32>>, out).unwrap();
        });
        assert!(largest < 1 << 20 && peak < 1 << 20, "columns, top-K {topk}: largest allocation {largest}, peak {peak}");

        let (largest, peak) = measure(|| head.entropy(wide.view(), h.view_mut()).unwrap());
        assert!(largest < 1 << 20 && peak < 1 << 20, "entropy: largest allocation {largest}, peak {peak}");
    }
    // the backward of a row that is not contiguous f32 and wider than GATHER_MAX streams
    // the row: the caller's gradient is the only buffer of its width
    let head = TokenHead::new(TokenConfig::default()).unwrap().with_num_threads(1);
    let mut g = ArrayD::<f32>::zeros(IxDyn(&[1, V]));
    let sc = ArrayD::from_elem(IxDyn(&[1]), 1.0f32);
    let gl = ArrayD::from_elem(IxDyn(&[1]), 1.0f32);
    let (largest, peak) = measure(|| {
        head.backward(wide.view(), IndexView::from(y.view()), IndexView::from(ids.view()), sc.view(), gl.view(), g.view_mut()).unwrap();
    });
    assert!(largest < 1 << 20 && peak < 1 << 20, "backward: largest allocation {largest}, peak {peak}");
    let p = 1.0 / V as f64;
    assert!((g[[0, 0]] as f64 + p).abs() < 1e-3 * p && (g[[0, 7]] as f64 - (1.0 - p)).abs() < 1e-6, "{} {}", g[[0, 0]], g[[0, 7]]);
}
