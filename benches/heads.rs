//! Criterion benchmarks of the heads (`cargo bench --bench heads`). The
//! table with bandwidth fractions and speed-ups is `cargo bench --bench table`.

mod common;
use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use era::{DeltaArg, IndexView, TokenConfig, TokenHead, TokenOutputs};
use ndarray::{ArrayD, IxDyn};

fn gaussian_heads(c: &mut Criterion) {
    let mut g = c.benchmark_group("gaussian_fwd_bwd");
    for &(b, d) in &[(256usize, 6usize), (4096, 21), (65536, 61)] {
        let z = array(&[b, d], 2.0, 1);
        let gr = array(&[b, d], 1.0, 2);
        let mut out = ArrayD::<f32>::zeros(z.raw_dim());
        g.throughput(Throughput::Elements((b * d) as u64));
        for threads in [1usize, 0] {
            let head = gaussian(d, threads);
            g.bench_with_input(BenchmarkId::new(format!("threads={threads}"), format!("{b}x{d}")), &(), |bch, _| {
                bch.iter(|| {
                    head.forward(z.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                    head.backward(z.view(), gr.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                })
            });
        }
    }
    g.finish();
}

fn softmax_heads(c: &mut Criterion) {
    let mut g = c.benchmark_group("softmax_fwd_bwd");
    for &n in &[10usize, 1000, 32000] {
        let z = array(&[256, n], 3.0, 3);
        let gr = array(&[256, n], 1.0, 4);
        let mut out = ArrayD::<f32>::zeros(z.raw_dim());
        g.throughput(Throughput::Elements((256 * n) as u64));
        for threads in [1usize, 0] {
            let head = softmax(n, threads);
            g.bench_with_input(BenchmarkId::new(format!("threads={threads}"), format!("256x{n}")), &(), |bch, _| {
                bch.iter(|| {
                    head.forward(z.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                    head.backward(z.view(), gr.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                })
            });
        }
    }
    g.finish();
}

/// Forward + backward from `z` against the forward that saves `softmax(z)` and
/// the backward from it (docs/math.md#saved-softmax), one thread, f32.
fn saved_softmax(c: &mut Criterion) {
    let mut g = c.benchmark_group("saved_vs_z");
    for &(b, d) in &[(256usize, 6usize), (256, 21), (256, 61), (4096, 61)] {
        let z = array(&[b, d], 2.0, 5);
        let gr = array(&[b, d], 1.0, 6);
        let (mut out, mut saved, mut dz) =
            (ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(z.raw_dim()));
        let head = gaussian(d, 1);
        g.throughput(Throughput::Elements((b * d) as u64));
        g.bench_with_input(BenchmarkId::new("gaussian z", format!("{b}x{d}")), &(), |bch, _| {
            bch.iter(|| {
                head.forward(z.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                head.backward(z.view(), gr.view(), dz.view_mut()).unwrap_or_else(|e| panic!("{e}"));
            })
        });
        g.bench_with_input(BenchmarkId::new("gaussian saved", format!("{b}x{d}")), &(), |bch, _| {
            bch.iter(|| {
                let delta = DeltaArg::Scalar(head.delta());
                head.forward_saving(z.view(), delta, out.view_mut(), saved.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                let delta = DeltaArg::Scalar(head.delta());
                head.backward_saved(saved.view(), delta, gr.view(), dz.view_mut(), None).unwrap_or_else(|e| panic!("{e}"));
            })
        });
    }
    for &n in &[10usize, 1000] {
        let z = array(&[256, n], 3.0, 7);
        let gr = array(&[256, n], 1.0, 8);
        let (mut out, mut saved, mut dz) =
            (ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(z.raw_dim()));
        let head = softmax(n, 1);
        g.throughput(Throughput::Elements((256 * n) as u64));
        g.bench_with_input(BenchmarkId::new("softmax z", format!("256x{n}")), &(), |bch, _| {
            bch.iter(|| {
                head.forward(z.view(), out.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                head.backward(z.view(), gr.view(), dz.view_mut()).unwrap_or_else(|e| panic!("{e}"));
            })
        });
        g.bench_with_input(BenchmarkId::new("softmax saved", format!("256x{n}")), &(), |bch, _| {
            bch.iter(|| {
                head.forward_saving(z.view(), out.view_mut(), saved.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                head.backward_saved(saved.view(), gr.view(), dz.view_mut()).unwrap_or_else(|e| panic!("{e}"));
            })
        });
        let mut dwdh = ArrayD::<f32>::zeros(z.raw_dim());
        g.bench_with_input(BenchmarkId::new("softmax saved dw", format!("256x{n}")), &(), |bch, _| {
            bch.iter(|| {
                head.forward_saving_dw(z.view(), out.view_mut(), saved.view_mut(), dwdh.view_mut()).unwrap_or_else(|e| panic!("{e}"));
                head.backward_saved_dw(saved.view(), dwdh.view(), gr.view(), dz.view_mut()).unwrap_or_else(|e| panic!("{e}"));
            })
        });
    }
    g.finish();
}

/// A DLPack descriptor of a contiguous f32 array (`shape` must outlive it).
fn dl(a: &mut ArrayD<f32>, shape: &mut [i64]) -> era::capi::DLTensor {
    use era::capi::{DLDataType, DLDevice, DLTensor};
    DLTensor {
        data: a.as_mut_ptr().cast(),
        device: DLDevice { device_type: 1, device_id: 0 },
        ndim: shape.len() as i32,
        dtype: DLDataType { code: 2, bits: 32, lanes: 1 },
        shape: shape.as_mut_ptr(),
        strides: std::ptr::null_mut(),
        byte_offset: 0,
    }
}

/// The fixed cost of a call: the Gaussian forward that saves softmax(z) on 8 x 6 and
/// 256 x 6 f32 rows, through the Rust API and through the C ABI (descriptors checked,
/// the boundary, the head handle), one thread.
fn call_cost(c: &mut Criterion) {
    use era::capi::*;
    let mut g = c.benchmark_group("call_cost");
    for b in [8usize, 256] {
        let d = 6usize;
        let head = gaussian(d, 1);
        let mut z = array(&[b, d], 2.0, 9);
        let (mut out, mut saved, mut delta) =
            (ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::zeros(z.raw_dim()), ArrayD::<f32>::from_elem(IxDyn(&[]), 0.1));
        g.bench_with_input(BenchmarkId::new("rust", format!("{b}x{d}")), &(), |bch, _| {
            bch.iter(|| {
                head.forward_saving(z.view(), DeltaArg::Scalar(0.1), out.view_mut(), saved.view_mut()).unwrap_or_else(|e| panic!("{e}"))
            })
        });
        let mut cfg = unsafe { std::mem::zeroed::<EraConfig>() };
        assert_eq!(unsafe { era_config_default(ERA_HEAD_KIND_GAUSSIAN, &mut cfg) }, EraStatus::Ok);
        cfg.dim = d as u64;
        cfg.target_entropy = -0.5 * d as f64;
        cfg.num_threads = 1;
        let mut h = std::ptr::null_mut();
        assert_eq!(unsafe { era_head_new(&cfg, &mut h) }, EraStatus::Ok);
        let (mut sz, mut so, mut ss, mut s0) = ([b as i64, d as i64], [b as i64, d as i64], [b as i64, d as i64], []);
        let (tz, td) = (dl(&mut z, &mut sz), dl(&mut delta, &mut s0));
        let (mut to, mut ts) = (dl(&mut out, &mut so), dl(&mut saved, &mut ss));
        g.bench_with_input(BenchmarkId::new("c_abi", format!("{b}x{d}")), &(), |bch, _| {
            bch.iter(|| {
                let st = unsafe { era_gaussian_forward_saved(h, &tz, &td, &mut to, &mut ts, std::ptr::null_mut()) };
                assert_eq!(st, EraStatus::Ok);
            })
        });
        unsafe { era_head_free(h) };
    }
    g.finish();
}

fn token_head(c: &mut Criterion) {
    let mut g = c.benchmark_group("token");
    g.sample_size(10);
    let (n, v) = (512usize, 32000usize);
    let logits = array(&[n, v], 4.0, 5);
    let labels = ArrayD::from_shape_fn(IxDyn(&[n]), |i| ((i[0] * 7919) % v) as i64);
    let ids = ArrayD::from_shape_fn(IxDyn(&[n]), |i| (i[0] / 64) as i64);
    let adv = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if i[0] % 2 == 0 { 1.0f32 } else { -1.0 });
    let head = TokenHead::new(TokenConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut outs: Vec<ArrayD<f32>> = (0..4).map(|_| ArrayD::zeros(IxDyn(&[n]))).collect();
    let mut grad = ArrayD::<f32>::zeros(logits.raw_dim());
    g.throughput(Throughput::Bytes((n * v * 4) as u64));
    g.bench_function(format!("forward {n}x{v} f32"), |b| {
        b.iter(|| {
            let [lp, h, s, a] = &mut outs[..] else { unreachable!() };
            let o = TokenOutputs {
                logprobs: Some(lp.view_mut()),
                entropy: Some(h.view_mut()),
                scale: Some(s.view_mut()),
                advantages: Some(a.view_mut()),
                response_entropy: None,
            };
            head.forward(logits.view(), IndexView::from(labels.view()), IndexView::from(ids.view()), adv.view(), o)
                .unwrap_or_else(|e| panic!("{e}"));
        })
    });
    let scale = ArrayD::from_elem(IxDyn(&[n]), 1.0f32);
    g.bench_function(format!("backward {n}x{v} f32"), |b| {
        b.iter(|| {
            head.backward(
                logits.view(),
                IndexView::from(labels.view()),
                IndexView::from(ids.view()),
                scale.view(),
                adv.view(),
                grad.view_mut(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        })
    });
    g.finish();
}

criterion_group!(benches, gaussian_heads, softmax_heads, saved_softmax, call_cost, token_head);
criterion_main!(benches);
