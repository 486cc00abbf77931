//! The benchmark table of BENCHMARKS.md: `cargo bench --bench table`
//! (`-- --quick` for a small smoke run, `-- --only token` or `-- --only heads`
//! for one section). Every number is measured in this
//! run: the machine's memory bandwidth (a large copy and a large
//! read-reduction), the token head against it, and every head against its
//! straightforward single-threaded version.

mod common;
use common::*;
use era::kernels::token::D_FLOOR;
use era::kernels::vmath::{exp_f32, exp_half, ln_f32};
use era::{IndexView, TokenConfig, TokenHead, TokenOutputs};
use half::bf16;
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};
use rayon::prelude::*;
use std::time::Instant;

/// Median wall time of `f` over at least `reps` runs and `secs` seconds (after one warm-up).
fn time(mut f: impl FnMut(), reps: usize, secs: f64) -> f64 {
    f();
    let mut ts = Vec::new();
    let start = Instant::now();
    while ts.len() < reps || start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f();
        ts.push(t.elapsed().as_secs_f64());
        if ts.len() >= 1000 {
            break;
        }
    }
    ts.sort_by(|a, b| a.total_cmp(b));
    ts[ts.len() / 2]
}

fn gbs(bytes: f64, t: f64) -> f64 {
    bytes / t / 1e9
}

struct Bandwidth {
    read: f64,
    copy: f64,
}

fn bandwidth(pool: &rayon::ThreadPool, quick: bool) -> Bandwidth {
    let n = if quick { 1 << 25 } else { 1 << 28 }; // floats: 128 MiB or 1 GiB
    let src = values(n, 1.0, 9);
    let mut dst = vec![0.0f32; n];
    let bytes = (n * 4) as f64;
    let copy1 = time(|| dst.copy_from_slice(&src), 3, 1.0);
    let copyp =
        time(|| pool.install(|| dst.par_chunks_mut(1 << 20).zip(src.par_chunks(1 << 20)).for_each(|(d, s)| d.copy_from_slice(s))), 3, 1.0);
    let sum = |s: &[f32]| -> f32 {
        let mut acc = [0.0f32; 16];
        for c in s.chunks_exact(16) {
            for i in 0..16 {
                acc[i] += c[i];
            }
        }
        acc.iter().sum()
    };
    let mut sink = 0.0f32;
    let read1 = time(|| sink += sum(&src), 3, 1.0);
    let readp = time(|| sink += pool.install(|| src.par_chunks(1 << 20).map(sum).sum::<f32>()), 3, 1.0);
    std::hint::black_box(sink);
    println!("## Memory bandwidth ({} MiB buffers)\n", (n * 4) >> 20);
    println!("| operation | 1 thread | {} threads |", pool.current_num_threads());
    println!("| --- | --- | --- |");
    // a copy moves 2x the buffer (read + write)
    println!("| copy (read + write) | {:.1} GB/s | {:.1} GB/s |", gbs(2.0 * bytes, copy1), gbs(2.0 * bytes, copyp));
    println!("| read-reduction | {:.1} GB/s | {:.1} GB/s |\n", gbs(bytes, read1), gbs(bytes, readp));
    Bandwidth { read: gbs(bytes, read1).max(gbs(bytes, readp)), copy: gbs(2.0 * bytes, copy1).max(gbs(2.0 * bytes, copyp)) }
}

fn accuracy() {
    let mut exp_ulp: f64 = 0.0;
    for i in 0..=1_000_000 {
        let x = -87.0 + 175.0 * i as f32 / 1e6;
        let want = (x as f64).exp();
        let ulp = (f32::from_bits((want as f32).to_bits() + 1) - want as f32) as f64;
        exp_ulp = exp_ulp.max((exp_f32(x) as f64 - want).abs() / ulp);
    }
    let mut ln_ulp: f64 = 0.0;
    let mut x = f32::MIN_POSITIVE;
    while x < 1e38 {
        for j in 0..256 {
            let v = x * (1.0 + j as f32 / 256.0);
            let want = (v as f64).ln();
            let ulp = (f32::from_bits((want.abs() as f32).to_bits() + 1) - want.abs() as f32) as f64;
            ln_ulp = ln_ulp.max((ln_f32(v) as f64 - want).abs() / ulp);
        }
        x *= 1.3;
    }
    let (mut half_ulp, mut half_abs): (f64, f64) = (0.0, 0.0);
    for i in 0..=1_000_000 {
        let d = D_FLOOR * i as f32 / 1e6;
        let want = (d as f64 / 2.0).exp();
        let got = exp_half(d) as f64;
        if d >= -2.0 {
            let ulp = (f32::from_bits((want as f32).to_bits() + 1) - want as f32) as f64;
            half_ulp = half_ulp.max((got - want).abs() / ulp);
        }
        half_abs = half_abs.max((got - want).abs());
    }
    println!("## Vectorised math accuracy (against f64)\n");
    println!("| function | range | max error |\n| --- | --- | --- |");
    println!("| exp_f32 | [-87, 88], 10^6 points | {exp_ulp:.2} ulp |");
    println!("| ln_f32 | normal floats, geometric sweep | {ln_ulp:.2} ulp |");
    println!(
        "| exp_half (token forward, exp(d/2)) | d in [-2, 0] / [-87, 0], 10^6 points | {half_ulp:.2} ulp / absolute {half_abs:.1e} |\n"
    );
}

#[allow(clippy::type_complexity)]
struct TokenBatch<T> {
    logits: ArrayD<T>,
    labels: ArrayD<i64>,
    ids: ArrayD<i64>,
    adv: ArrayD<f32>,
}

fn token_batch<T: era::Element + Clone>(n: usize, v: usize, conv: impl Fn(f32) -> T) -> TokenBatch<T> {
    let logits =
        ArrayD::from_shape_vec(IxDyn(&[n, v]), values(n * v, 6.0, 11).into_iter().map(conv).collect()).unwrap_or_else(|_| unreachable!());
    TokenBatch {
        logits,
        labels: ArrayD::from_shape_fn(IxDyn(&[n]), |i| ((i[0] * 7919) % v) as i64),
        ids: ArrayD::from_shape_fn(IxDyn(&[n]), |i| (i[0] / 256) as i64),
        adv: ArrayD::from_shape_fn(IxDyn(&[n]), |i| if (i[0] / 256) % 2 == 0 { 1.0 } else { -1.0 }),
    }
}

fn token_forward<T: era::Element>(head: &TokenHead, b: &TokenBatch<T>, x: ArrayViewD<'_, T>, rows: usize, reference: bool) {
    let mut o: Vec<ArrayD<f32>> = (0..4).map(|_| ArrayD::zeros(IxDyn(&[rows]))).collect();
    let [lp, h, s, a] = &mut o[..] else { unreachable!() };
    let out = TokenOutputs {
        logprobs: Some(lp.view_mut()),
        entropy: Some(h.view_mut()),
        scale: Some(s.view_mut()),
        advantages: Some(a.view_mut()),
        response_entropy: None,
    };
    let sl = ndarray::Slice::from(0..rows);
    let y = b.labels.slice_axis(ndarray::Axis(0), sl);
    let r = b.ids.slice_axis(ndarray::Axis(0), sl);
    let ad = b.adv.slice_axis(ndarray::Axis(0), sl);
    let res = if reference {
        head.forward_reference(x, IndexView::from(y), IndexView::from(r), ad, out)
    } else {
        head.forward(x, IndexView::from(y), IndexView::from(r), ad, out)
    };
    res.unwrap_or_else(|e| panic!("{e}"));
}

fn token_backward<T: era::Element>(
    head: &TokenHead,
    b: &TokenBatch<T>,
    x: ArrayViewD<'_, T>,
    g: ArrayViewMutD<'_, T>,
    rows: usize,
    reference: bool,
) {
    let sl = ndarray::Slice::from(0..rows);
    let y = b.labels.slice_axis(ndarray::Axis(0), sl);
    let r = b.ids.slice_axis(ndarray::Axis(0), sl);
    let gl = b.adv.slice_axis(ndarray::Axis(0), sl);
    let sc = ArrayD::from_elem(IxDyn(&[rows]), 1.0f32);
    let res = if reference {
        head.backward_reference(x, IndexView::from(y), IndexView::from(r), sc.view(), gl, g)
    } else {
        head.backward(x, IndexView::from(y), IndexView::from(r), sc.view(), gl, g)
    };
    res.unwrap_or_else(|e| panic!("{e}"));
}

fn token_rows<T: era::Element + Clone>(name: &str, n: usize, v: usize, bw: &Bandwidth, threads: usize, conv: impl Fn(f32) -> T, zero: T) {
    let b = token_batch(n, v, conv);
    let bytes = (n * v * std::mem::size_of::<T>()) as f64;
    let fast = TokenHead::new(TokenConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let one = TokenHead::new(TokenConfig::default()).unwrap_or_else(|e| panic!("{e}")).with_num_threads(1);
    let reps = 3;
    let tf = time(|| token_forward(&fast, &b, b.logits.view(), n, false), reps, 2.0);
    let tf1 = time(|| token_forward(&one, &b, b.logits.view(), n, false), 1, 0.0);
    // the straightforward kernel on a slice of the rows, scaled to all rows
    let nr = (n / 16).max(1);
    let xr = b.logits.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..nr));
    let tfr = time(|| token_forward(&one, &b, xr.view(), nr, true), 1, 0.0) * n as f64 / nr as f64;
    let mut g = ArrayD::from_elem(b.logits.raw_dim(), zero);
    let tb = time(|| token_backward(&fast, &b, b.logits.view(), g.view_mut(), n, false), reps, 2.0);
    let tb1 = time(|| token_backward(&one, &b, b.logits.view(), g.view_mut(), n, false), 1, 0.0);
    let mut gr = ArrayD::from_elem(IxDyn(&[nr, v]), zero);
    let tbr = time(|| token_backward(&one, &b, xr.view(), gr.view_mut(), nr, true), 1, 0.0) * n as f64 / nr as f64;
    println!(
        "| forward {n}x{v} {name} | {:.1} ms | {:.1} GB/s | {:.0}% of read | {:.1} ms | {:.2}x | {:.0} ms | {:.1}x |",
        tf * 1e3,
        gbs(bytes, tf),
        100.0 * gbs(bytes, tf) / bw.read,
        tf1 * 1e3,
        tf1 / tf,
        tfr * 1e3,
        tfr / tf
    );
    println!(
        "| backward {n}x{v} {name} | {:.1} ms | {:.1} GB/s | {:.0}% of copy | {:.1} ms | {:.2}x | {:.0} ms | {:.1}x |",
        tb * 1e3,
        gbs(2.0 * bytes, tb),
        100.0 * gbs(2.0 * bytes, tb) / bw.copy,
        tb1 * 1e3,
        tb1 / tb,
        tbr * 1e3,
        tbr / tb
    );
    let _ = threads;
}

/// Median time of the straightforward implementation of a head's forward +
/// backward: one thread, each row converted to f64, the f64 row functions of
/// docs/math.md.
fn time_straightforward(
    z: &ArrayD<f32>,
    g: &ArrayD<f32>,
    out: &mut ArrayD<f32>,
    fwd: impl Fn(&[f64], &mut [f64]),
    bwd: impl Fn(&[f64], &[f64], &mut [f64]),
) -> f64 {
    time(|| straightforward(z, g, out, &fwd, &bwd), 3, 0.3)
}

fn straightforward(
    z: &ArrayD<f32>,
    g: &ArrayD<f32>,
    out: &mut ArrayD<f32>,
    fwd: &impl Fn(&[f64], &mut [f64]),
    bwd: &impl Fn(&[f64], &[f64], &mut [f64]),
) {
    let n = *z.shape().last().unwrap_or(&1);
    let (mut zr, mut gr, mut o) = (vec![0.0f64; n], vec![0.0f64; n], vec![0.0f64; n]);
    let zs = z.as_slice().unwrap_or(&[]);
    let gs = g.as_slice().unwrap_or(&[]);
    let os = out.as_slice_mut().unwrap_or(&mut []);
    for ((zc, gc), oc) in zs.chunks_exact(n).zip(gs.chunks_exact(n)).zip(os.chunks_exact_mut(n)) {
        zr.iter_mut().zip(zc).for_each(|(a, &b)| *a = b as f64);
        gr.iter_mut().zip(gc).for_each(|(a, &b)| *a = b as f64);
        fwd(&zr, &mut o);
        oc.iter_mut().zip(&o).for_each(|(a, &b)| *a = b as f32);
        bwd(&zr, &gr, &mut o);
        oc.iter_mut().zip(&o).for_each(|(a, &b)| *a = b as f32);
    }
}

fn heads_table(quick: bool, threads: usize, bw: &Bandwidth) {
    println!("## Gaussian and softmax heads (forward + backward, f32)\n");
    println!("Bytes: the forward reads z and writes out, the backward reads z and grad_out and writes grad_z (5 arrays of the input's size), against the copy bandwidth. Straightforward: one thread, each row converted to f64 and run through the row functions of docs/math.md (the implementation before the vectorised kernels).\n");
    println!("| head | shape | time ({threads} threads) | of copy bandwidth | 1 thread | thread speed-up | straightforward | speed-up vs straightforward |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let row = |name: &str, shape: String, bytes: f64, t1: f64, tp: f64, tref: f64| {
        println!(
            "| {name} | {shape} | {:.3} ms | {:.0}% | {:.3} ms | {:.2}x | {:.3} ms | {:.1}x |",
            tp * 1e3,
            100.0 * gbs(bytes, tp) / bw.copy,
            t1 * 1e3,
            t1 / tp,
            tref * 1e3,
            tref / tp
        );
    };
    // 8192 x 6 and 32768 x 6 sit on either side of the Gaussian head's threading threshold
    let mut shapes: Vec<(usize, usize)> = Vec::new();
    for b in if quick { vec![256, 4096] } else { vec![256, 4096, 8192, 32768, 65536] } {
        let ds: &[usize] = if b == 8192 || b == 32768 { &[6] } else { &[6, 21, 61] };
        shapes.extend(ds.iter().map(|&d| (b, d)));
    }
    for &(b, d) in &shapes {
        let z = array(&[b, d], 2.0, 1);
        let gr = array(&[b, d], 1.0, 2);
        let mut out = ArrayD::<f32>::zeros(z.raw_dim());
        let mut run = |head: &era::GaussianHead| {
            time(
                || {
                    head.forward(z.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                    head.backward(z.view(), gr.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                },
                5,
                0.3,
            )
        };
        let t1 = run(&gaussian(d, 1));
        let tp = run(&gaussian(d, 0));
        let head = gaussian(d, 1);
        let c = head.config();
        let k = era::kernels::gaussian::gaussian_k(c, head.delta());
        let (lo, hi) = (c.log_std_min, c.log_std_max);
        let tref = time_straightforward(
            &z,
            &gr,
            &mut out,
            |zr, o| era::kernels::gaussian::forward_row(zr, k, lo, hi, o),
            |zr, g, o| {
                era::kernels::gaussian::backward_row(zr, g, k, lo, hi, o);
            },
        );
        row("gaussian", format!("{b}x{d}"), (5 * b * d * 4) as f64, t1, tp, tref);
    }
    let ns: &[usize] = if quick { &[10, 1000] } else { &[10, 128, 1000, 32000] };
    for &n in ns {
        let z = array(&[256, n], 3.0, 3);
        let gr = array(&[256, n], 1.0, 4);
        let mut out = ArrayD::<f32>::zeros(z.raw_dim());
        let mut run = |head: &era::SoftmaxHead| {
            time(
                || {
                    head.forward(z.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                    head.backward(z.view(), gr.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                },
                5,
                0.3,
            )
        };
        let t1 = run(&softmax(n, 1));
        let tp = run(&softmax(n, 0));
        let k = softmax(n, 1).constants();
        let tref = time_straightforward(
            &z,
            &gr,
            &mut out,
            |zr, o| era::kernels::softmax::forward_row(zr, k, o),
            |zr, g, o| era::kernels::softmax::backward_row(zr, g, k, o),
        );
        row("softmax", format!("256x{n}"), (5 * 256 * n * 4) as f64, t1, tp, tref);
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(String::as_str);
    let threads = era::kernels::parallel::default_threads();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap_or_else(|e| panic!("{e}"));
    println!("# era benchmark table ({} run, {threads} threads)\n", if quick { "quick" } else { "full" });
    if only.is_none() {
        accuracy();
    }
    let bw = bandwidth(&pool, quick);
    if only == Some("heads") {
        heads_table(quick, threads, &bw);
        return;
    }
    println!("## Token head (default config, {threads} threads)\n");
    println!("Fraction: forward bytes read / time against the read-reduction bandwidth; backward (read + write) / time against the copy bandwidth. Reference: the straightforward kernel (two reads per row, f64, one thread) timed on 1/16 of the rows and scaled.\n");
    println!("| op | time | throughput | of bandwidth | 1 thread | thread speed-up | reference | speed-up vs reference |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let n = if quick { 256 } else { 4096 };
    for &v in &[32000usize, 152064] {
        token_rows("f32", n, v, &bw, threads, |x| x, 0.0f32);
        token_rows("bf16", n, v, &bw, threads, bf16::from_f32, bf16::ZERO);
    }
    println!();
    if only.is_none() {
        heads_table(quick, threads, &bw);
    }
}
