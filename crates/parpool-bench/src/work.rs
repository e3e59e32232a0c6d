//! Workload bodies: the per-item functions every row runs.
//!
//! Each body is real work whose result lands in the output, and the hot
//! loops go through [`std::hint::black_box`] so the optimizer cannot fold
//! them away. All bodies are `Copy` closures over `u64`, so the same body can
//! be handed to a borrowing pool (rayon, parpool `map`) and to a pool that
//! wants `'static` jobs (threadpool, tokio, poolio) without changing it.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// A per-item body every row can run: cheap to copy, shareable, `'static`.
pub trait Body: Fn(u64) -> u64 + Send + Sync + Copy + 'static {}
impl<T: Fn(u64) -> u64 + Send + Sync + Copy + 'static> Body for T {}

/// W1's item: a multiply-xorshift hash, a few nanoseconds.
#[inline]
pub fn tiny(x: u64) -> u64 {
    let y = black_box(x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    y ^ (y >> 29)
}

/// A CPU-bound loop of `iters` dependent LCG steps; `black_box` on every step
/// keeps the loop from being collapsed into a closed form.
#[inline]
pub fn spin(x: u64, iters: u32) -> u64 {
    let mut h = x;
    for _ in 0..iters {
        h = black_box(h)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    h
}

/// W3's item: every 100th item costs `heavy` times the others.
#[inline]
pub fn skewed(x: u64, iters: u32, heavy: u32) -> u64 {
    if x % 100 == 0 {
        spin(x, iters * heavy)
    } else {
        spin(x, iters)
    }
}

/// Finds the `spin` iteration count that takes `target` on this machine.
///
/// Takes the fastest of several trials, so a noisy neighbour makes the items
/// at most a little cheaper than `target`, never much dearer.
pub fn calibrate_spin(target: Duration) -> u32 {
    const PROBE: u32 = 200_000;
    let mut best = Duration::MAX;
    for trial in 0..15 {
        let t = Instant::now();
        black_box(spin(trial, PROBE));
        best = best.min(t.elapsed());
    }
    let per_iter_ns = best.as_nanos() as f64 / f64::from(PROBE);
    ((target.as_nanos() as f64 / per_iter_ns).round() as u32).max(1)
}

/// Order-sensitive checksum of an output, used to check every row computed
/// what the sequential row computed, in the same order.
pub fn checksum(v: &[u64]) -> u64 {
    v.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ x).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Order-insensitive checksum, for `imap_unordered`.
pub fn checksum_unordered(v: &[u64]) -> u64 {
    v.iter()
        .fold(0u64, |h, &x| h.wrapping_add(x.wrapping_mul(31) ^ 7))
}
