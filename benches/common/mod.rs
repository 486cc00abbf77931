//! Inputs shared by the benchmarks.
#![allow(dead_code)]

use era::{GaussianConfig, GaussianHead, SoftmaxConfig, SoftmaxHead};
use ndarray::{ArrayD, IxDyn};

/// Deterministic pseudo-random values in [-scale, scale).
pub fn values(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

pub fn array(shape: &[usize], scale: f32, seed: u64) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), values(shape.iter().product(), scale, seed)).unwrap_or_else(|_| unreachable!())
}

pub fn gaussian(d: usize, threads: usize) -> GaussianHead {
    let mut c = GaussianConfig::new(d, -(d as f64));
    c.log_std_min = -5.0;
    c.log_std_max = 2.0;
    GaussianHead::new(c).unwrap_or_else(|e| panic!("{e}")).with_num_threads(threads)
}

pub fn softmax(n: usize, threads: usize) -> SoftmaxHead {
    let (lo, hi) = SoftmaxConfig::new(n, 0.0).target_range();
    SoftmaxHead::new(SoftmaxConfig::new(n, 0.5 * (lo + hi))).unwrap_or_else(|e| panic!("{e}")).with_num_threads(threads)
}
