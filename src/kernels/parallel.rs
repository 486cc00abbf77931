//! Row-parallel execution on thread pools that are created once. This is
//! the only module that knows about threads: the heads describe their work
//! (rows, chunks of contiguous rows, per-row results) and this module decides
//! whether it runs on the calling thread or is split across a pool.
//!
//! The number of threads comes from the head's config (`num_threads`), else
//! the `ERA_NUM_THREADS` environment variable (read once), else all cores.
//! Pools are cached per thread count for the life of the process. Inputs
//! smaller than [`PAR_MIN_ELEMENTS`] run on the calling thread: starting
//! work on other threads costs more than it saves there.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::{ArrayView1, ArrayViewD, ArrayViewMut1, ArrayViewMutD, Axis, Ix2};
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::element::Element;
use crate::kernels::vmath::{load, store, Rows};

/// The largest thread count a head accepts.
pub const MAX_THREADS: usize = 1024;

/// Inputs with fewer elements than this run single-threaded.
pub const PAR_MIN_ELEMENTS: usize = 1 << 15;

/// The default thread count: `ERA_NUM_THREADS` if set to a positive
/// integer, else the number of available cores.
pub fn default_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("ERA_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// Resolves a configured thread count (0 = default).
pub fn resolve_threads(configured: usize) -> usize {
    if configured == 0 {
        default_threads().min(MAX_THREADS)
    } else {
        configured.min(MAX_THREADS)
    }
}

/// The pool for `n` threads, created on first use and then shared.
/// `None` if the pool cannot be created (work then runs on the caller).
fn pool(n: usize) -> Option<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = pools.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = map.get(&n) {
        return Some(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("era-{i}")).build().ok()?;
    let p = Arc::new(p);
    map.insert(n, p.clone());
    Some(p)
}

/// Runs `f` on the pool for `threads` threads when `work` (elements) is large
/// enough to pay for it; `f` receives the number of parallel chunks to aim for.
pub fn run<R: Send>(threads: usize, work: usize, f: impl FnOnce(usize) -> R + Send) -> R {
    run_above(PAR_MIN_ELEMENTS, threads, work, f)
}

/// The single-threaded limit of the vectorised f32 Gaussian head. Measured
/// on a 2-vCPU virtual machine (forward only, `cargo bench --bench table`
/// with lower limits), 2 threads were slower than one at 8192 x 6 (49152
/// elements: 0.083 -> 0.094 ms, 0.88x) and faster from 4096 x 21 (86016
/// elements: 1.33x) and 32768 x 6 (1.51x) up.
pub const PAR_MIN_ELEMENTS_GAUSSIAN: usize = 1 << 16;

/// [`run`] with another single-threaded limit `min` (elements).
pub fn run_above<R: Send>(min: usize, threads: usize, work: usize, f: impl FnOnce(usize) -> R + Send) -> R {
    if threads <= 1 || work < min || cfg!(miri) {
        return f(1);
    }
    match pool(threads) {
        Some(p) => p.install(|| f(threads)),
        None => f(1),
    }
}

/// A range of contiguous rows and the matching parts of two outputs (an
/// output with zero elements per row gets empty parts).
pub struct Chunk<'a, A, B> {
    /// The rows of this chunk.
    pub rows: Range<usize>,
    /// The first output's elements for these rows.
    pub a: &'a mut [A],
    /// The second output's elements for these rows.
    pub b: &'a mut [B],
}

/// Splits `rows` rows into chunks of `per` rows, with the matching parts of
/// `a` (`a_row` elements per row) and `b` (`b_row` elements per row).
fn split<'a, A, B>(rows: usize, per: usize, mut a: &'a mut [A], a_row: usize, mut b: &'a mut [B], b_row: usize) -> Vec<Chunk<'a, A, B>> {
    let mut parts = Vec::with_capacity(rows.div_ceil(per.max(1)));
    let mut start = 0;
    while start < rows {
        let n = per.min(rows - start);
        let (na, nb) = ((n * a_row).min(a.len()), (n * b_row).min(b.len()));
        let (ha, ta) = std::mem::take(&mut a).split_at_mut(na);
        let (hb, tb) = std::mem::take(&mut b).split_at_mut(nb);
        a = ta;
        b = tb;
        parts.push(Chunk { rows: start..start + n, a: ha, b: hb });
        start += n;
    }
    parts
}

/// Runs `body` over chunks of contiguous rows (`rows` rows; outputs `a` and
/// `b` with `a_row` and `b_row` elements per row, 0 for an output that is not
/// used) and returns its results in row order. On one thread, or when `work`
/// (elements) is below `min`, `body` sees all rows as one chunk; otherwise
/// about four chunks per thread run on the pool.
#[allow(clippy::too_many_arguments)]
pub fn for_chunks2<A: Send, B: Send, R: Send>(
    min: usize,
    threads: usize,
    work: usize,
    rows: usize,
    a: &mut [A],
    a_row: usize,
    b: &mut [B],
    b_row: usize,
    body: impl Fn(Chunk<'_, A, B>) -> R + Sync + Send,
) -> Vec<R> {
    run_above(min, threads, work, |chunks| {
        if chunks > 1 {
            let per = rows.div_ceil(chunks * 4).max(1);
            split(rows, per, a, a_row, b, b_row).into_par_iter().map(&body).collect()
        } else {
            split(rows, rows.max(1), a, a_row, b, b_row).into_iter().map(&body).collect()
        }
    })
}

/// [`for_chunks2`] with three outputs of `n` elements per row each: `body`
/// gets a chunk's rows and its parts of `a`, `b` and `c`.
pub fn for_chunks3<R: Send>(
    min: usize,
    threads: usize,
    rows: usize,
    n: usize,
    (a, b, c): (&mut [f32], &mut [f32], &mut [f32]),
    body: impl Fn(Range<usize>, &mut [f32], &mut [f32], &mut [f32]) -> R + Sync + Send,
) -> Vec<R> {
    let parts = move |per: usize| {
        // `a` and `b` split as for_chunks2 splits them, `c` alongside
        let mut c = c;
        split(rows, per, a, n, b, n)
            .into_iter()
            .map(|ch| {
                let len = (ch.rows.len() * n).min(c.len());
                let (hc, tc) = std::mem::take(&mut c).split_at_mut(len);
                c = tc;
                (ch, hc)
            })
            .collect::<Vec<_>>()
    };
    let run_one = |(ch, hc): (Chunk<'_, f32, f32>, &mut [f32])| body(ch.rows, ch.a, ch.b, hc);
    run_above(min, threads, rows * n, |chunks| {
        if chunks > 1 {
            parts(rows.div_ceil(chunks * 4).max(1)).into_par_iter().map(run_one).collect()
        } else {
            parts(rows.max(1)).into_iter().map(run_one).collect()
        }
    })
}

/// [`for_chunks2`] with one output (`a`, `a_row` elements per row).
pub fn for_chunks<A: Send, R: Send>(
    min: usize,
    threads: usize,
    work: usize,
    rows: usize,
    a: &mut [A],
    a_row: usize,
    body: impl Fn(Chunk<'_, A, ()>) -> R + Sync + Send,
) -> Vec<R> {
    let none: &mut [()] = &mut [];
    for_chunks2(min, threads, work, rows, a, a_row, none, 0, body)
}

/// `f(scratch, i)` for `i` in `0..n`, in order, with one scratch value per
/// worker made by `init`; parallel when `work` (elements) is large enough.
pub fn map_init<S, R: Send>(
    threads: usize,
    work: usize,
    n: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize) -> R + Sync + Send,
) -> Vec<R> {
    run(threads, work, |chunks| {
        if chunks > 1 {
            (0..n).into_par_iter().map_init(&init, &f).collect()
        } else {
            let mut s = init();
            (0..n).map(|i| f(&mut s, i)).collect()
        }
    })
}

/// `f(scratch, i, item)` for every item of `items`, with one scratch value
/// per worker made by `init`; parallel when `work` (elements) is large enough.
pub fn for_each_init<X: Send, S>(
    threads: usize,
    work: usize,
    items: &mut [X],
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut X) + Sync + Send,
) {
    run(threads, work, |chunks| {
        if chunks > 1 {
            items.par_iter_mut().enumerate().for_each_init(&init, |s, (i, x)| f(s, i, x));
        } else {
            let mut s = init();
            items.iter_mut().enumerate().for_each(|(i, x)| f(&mut s, i, x));
        }
    })
}

/// Rows (lanes along the last axis) of an array, in logical row-major order.
pub fn rows<'a, T>(a: &'a ArrayViewD<'_, T>) -> Vec<ArrayView1<'a, T>> {
    a.lanes(Axis(a.ndim() - 1)).into_iter().collect()
}

/// Mutable rows of an array, in logical row-major order.
pub fn rows_mut<'a, T>(a: &'a mut ArrayViewMutD<'_, T>) -> Vec<ArrayViewMut1<'a, T>> {
    let last = Axis(a.ndim() - 1);
    a.lanes_mut(last).into_iter().collect()
}

/// Calls `f(row_index, input_rows, output_row)` for every row of `inputs`
/// (arrays of the same shape `[..., n]`) and `output` (same shape), with rows
/// converted to f64 scratch buffers; `f` returns a per-row scalar, collected
/// in row order. Rows are split across `threads` threads for large inputs.
pub fn map_rows<T: Element, U: Element>(
    threads: usize,
    inputs: &[&ArrayViewD<'_, T>],
    output: &mut ArrayViewMutD<'_, U>,
    f: impl Fn(usize, &[&[f64]], &mut [f64]) -> f64 + Sync,
) -> Result<Vec<f64>> {
    let n = output.shape().last().copied().unwrap_or(0);
    let nrows = output.len().checked_div(n).unwrap_or(0);
    crate::kernels::reserve(crate::kernels::row_scratch_bytes(nrows, n, inputs.len() + 1, threads), "row buffers")?;
    let ins: Vec<Vec<ArrayView1<'_, T>>> = inputs.iter().map(|a| rows(a)).collect();
    let mut outs = rows_mut(output);
    let mut extra = vec![0.0; outs.len()];
    let work = outs.len() * n.max(1);
    run(threads, work, |chunks| {
        let per = outs.len().div_ceil(chunks * 4).max(1);
        let body = |(c, (oc, ec)): (usize, (&mut [ArrayViewMut1<'_, U>], &mut [f64]))| {
            let mut bufs: Vec<Vec<f64>> = (0..ins.len()).map(|_| vec![0.0; n]).collect();
            let mut out = vec![0.0; n];
            for (j, (orow, e)) in oc.iter_mut().zip(ec.iter_mut()).enumerate() {
                let r = c * per + j;
                for (b, rows) in bufs.iter_mut().zip(&ins) {
                    load(b, rows[r].iter());
                }
                let refs: Vec<&[f64]> = bufs.iter().map(|b| b.as_slice()).collect();
                *e = f(r, &refs, &mut out);
                store(orow.iter_mut(), &out);
            }
        };
        if chunks > 1 {
            outs.par_chunks_mut(per).zip(extra.par_chunks_mut(per)).enumerate().for_each(body);
        } else {
            outs.chunks_mut(per).zip(extra.chunks_mut(per)).enumerate().for_each(body);
        }
    });
    Ok(extra)
}

/// Reduces every row of `input` (`[..., n]`) to `f(row)`, in row order. `f`
/// reads the row where it lies (no copy: a row's width costs no memory).
pub fn reduce_rows<T: Element>(
    threads: usize,
    input: &ArrayViewD<'_, T>,
    f: impl Fn(&ArrayView1<'_, T>) -> f64 + Sync,
) -> Result<Vec<f64>> {
    let n = input.shape().last().copied().unwrap_or(0);
    let nrows: usize = input.shape()[..input.ndim().saturating_sub(1)].iter().product();
    crate::kernels::check_input_size(nrows.saturating_mul(n), std::mem::size_of::<T>(), "the rows")?;
    crate::kernels::reserve(crate::kernels::row_scratch_bytes(nrows, 0, 1, threads), "row results")?;
    let rs = rows(input);
    let work = rs.len() * n.max(1);
    Ok(run(threads, work, |chunks| {
        let per = rs.len().div_ceil(chunks * 4).max(1);
        let body = |c: &[ArrayView1<'_, T>]| c.iter().map(&f).collect::<Vec<f64>>();
        if chunks > 1 {
            rs.par_chunks(per).map(body).collect::<Vec<_>>().concat()
        } else {
            rs.chunks(per).map(body).collect::<Vec<_>>().concat()
        }
    }))
}

/// Writes `values` (row order) into `out` (any layout, same number of elements).
pub fn store_values<U: Element>(out: &mut ArrayViewMutD<'_, U>, values: &[f64]) {
    for (o, &v) in out.iter_mut().zip(values) {
        *o = U::from_f64(v);
    }
}

/// f32 rows of an input for the vectorised kernels: [`Rows`] over the input's
/// own memory, or over a gathered copy.
pub enum RowsF32<'a> {
    /// The input's own rows, where they lie.
    InPlace(Rows<'a>),
    /// A contiguous copy, `n` elements per row.
    Gathered(Vec<f32>, usize),
}

impl RowsF32<'_> {
    /// The rows.
    pub fn rows(&self) -> Rows<'_> {
        match self {
            RowsF32::InPlace(r) => *r,
            RowsF32::Gathered(v, n) => Rows::contiguous(v, *n),
        }
    }
}

/// The rows (last axis) of `v` for the vectorised f32 kernels, in logical
/// row-major order: read where they lie when the elements of a row are
/// adjacent and the rows lie at one distance from each other (a contiguous
/// array, the columns `[:, D:]` of a wider one, rows in reverse order, a
/// `[B, T, D]` slice of a `[B, T, 2D]` array), else a copy gathered a row at a
/// time. `None` when `T` is not f32.
pub fn rows_f32<'a, T: Element>(v: &'a ArrayViewD<'_, T>) -> Result<Option<RowsF32<'a>>> {
    if T::as_f32_slice(&[]).is_none() {
        return Ok(None);
    }
    let n = v.shape().last().copied().unwrap_or(1);
    if let Some(s) = v.as_slice().and_then(T::as_f32_slice) {
        return Ok(Some(RowsF32::InPlace(Rows::contiguous(s, n))));
    }
    if let Some((rows, stride)) = Rows::layout(v.shape(), v.strides()) {
        // SAFETY: `T` is f32 (`as_f32_slice` gives slices of f32 only); every
        // row holds `n` adjacent elements of `v` from `v.as_ptr() + i*stride`,
        // readable (and, `v` being a shared view, not written) for `'a`.
        return Ok(Some(RowsF32::InPlace(unsafe { Rows::from_raw(v.as_ptr().cast::<f32>(), rows, n, stride) })));
    }
    crate::kernels::reserve(v.len().saturating_mul(4), "a contiguous copy of a strided f32 input")?;
    let mut buf = Vec::with_capacity(v.len());
    let mut push = |row: ArrayView1<'_, T>| match row.as_slice() {
        Some(s) => T::extend_f32(s, &mut buf),
        None => buf.extend(row.iter().map(|x| x.to_f32())),
    };
    // two axes through a fixed-rank view: iterating lanes of a dynamic-rank
    // view costs tens of nanoseconds per row
    if let Ok(v2) = v.view().into_dimensionality::<Ix2>() {
        v2.rows().into_iter().for_each(&mut push);
    } else if v.ndim() > 0 {
        rows(v).into_iter().for_each(&mut push);
    } else {
        buf.extend(v.iter().map(|x| x.to_f32()));
    }
    Ok(Some(RowsF32::Gathered(buf, n)))
}

/// Runs `f` on the elements of the f32 output `out` as one slice in logical
/// row-major order: `out`'s own memory when it is contiguous, else a buffer
/// that is copied into `out` after `f` returns. `None` (and `f` not run) when
/// `T` is not f32.
pub fn with_dense_f32<T: Element, R>(out: &mut ArrayViewMutD<'_, T>, f: impl FnOnce(&mut [f32]) -> R) -> Result<Option<R>> {
    if T::as_f32_slice(&[]).is_none() {
        return Ok(None);
    }
    if let Some(s) = out.as_slice_mut().and_then(T::as_f32_slice_mut) {
        return Ok(Some(f(s)));
    }
    crate::kernels::reserve(out.len().saturating_mul(4), "a contiguous buffer for a strided f32 output")?;
    let mut buf = vec![0.0f32; out.len()];
    let r = f(&mut buf);
    if let Ok(mut o2) = out.view_mut().into_dimensionality::<Ix2>() {
        let n = o2.ncols().max(1);
        for (mut row, src) in o2.rows_mut().into_iter().zip(buf.chunks(n)) {
            match row.as_slice_mut() {
                Some(dst) => T::store_f32(src, dst),
                None => row.iter_mut().zip(src).for_each(|(o, &v)| *o = T::from_f32(v)),
            }
        }
    } else {
        for (o, &v) in out.iter_mut().zip(&buf) {
            *o = T::from_f32(v);
        }
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use ndarray::{s, Array, ArrayD, IxDyn};

    use super::*;

    fn iota(shape: &[usize]) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        Array::from_iter((0..n).map(|i| i as f32)).into_shape_with_order(IxDyn(shape)).unwrap()
    }

    /// Each row of `rows_f32(v)` is the row of `v` (logical order), and the
    /// rows are read in place exactly when `in_place`.
    fn check(v: ArrayViewD<'_, f32>, in_place: bool) {
        let r = rows_f32(&v).unwrap().unwrap();
        assert_eq!(matches!(r, RowsF32::InPlace(_)), in_place, "shape {:?} strides {:?}", v.shape(), v.strides());
        let n = *v.shape().last().unwrap();
        let want: Vec<f32> = v.iter().copied().collect();
        let rows = r.rows();
        assert_eq!(rows.rows() * n, want.len());
        let got: Vec<f32> = (0..rows.rows()).flat_map(|i| rows.row(i).to_vec()).collect();
        assert_eq!(got, want);
        // a range of rows is those rows
        if rows.rows() >= 3 {
            let sub = rows.range(1..3);
            assert_eq!(sub.row(1), rows.row(2));
        }
    }

    #[test]
    fn rows_in_place_or_gathered() {
        let a = iota(&[8, 13]);
        check(a.view(), true); // contiguous
        check(a.slice(s![.., 7..]).into_dyn(), true); // the columns [:, D:] of a network's output
        check(a.slice(s![..;-1, 7..]).into_dyn(), true); // rows in reverse order
        check(a.slice(s![..;2, ..6]).into_dyn(), true); // every other row
        check(a.slice(s![.., 3..4]).into_dyn(), true); // one column: rows of one element
        check(a.slice(s![..1, 7..]).into_dyn(), true); // one row
        check(a.slice(s![..0, 7..]).into_dyn(), true); // no rows
        check(a.t().into_dyn(), false); // a row's elements not adjacent
        let b = iota(&[3, 4, 12]);
        check(b.slice(s![.., .., 6..]).into_dyn(), true); // [B, T, D] of [B, T, 2D]: one row stride
        check(b.slice(s![.., 1.., 6..]).into_dyn(), false); // a gap after each block of rows
        check(b.slice(s![1..2, .., 6..]).into_dyn(), true); // an axis of one element
        check(b.slice(s![.., 2..3, 6..]).into_dyn(), true); // the other axis of one element
    }
}
