//! Micro numbers with divan: W1-sized maps and single-call latency, for
//! quick A/B checks while tuning (`cargo bench -p parpool-bench`). The full
//! side-by-side comparison and the target checks live in the `report`
//! binary.

use parpool_bench::peers;
use parpool_bench::work::tiny;
use std::sync::OnceLock;

fn main() {
    divan::main();
}

const N: u64 = 1_000_000;

fn input() -> &'static [u64] {
    static INPUT: OnceLock<Vec<u64>> = OnceLock::new();
    INPUT.get_or_init(|| (0..N).collect())
}

fn pool() -> &'static parpool::ThreadPool {
    static POOL: OnceLock<parpool::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| parpool::ThreadPool::with_workers(parpool_bench::workers()))
}

#[divan::bench(sample_count = 30)]
fn w1_sequential() -> Vec<u64> {
    peers::sequential(input(), tiny)
}

#[divan::bench(sample_count = 30)]
fn w1_rayon_collect() -> Vec<u64> {
    peers::rayon_collect(input(), tiny)
}

#[divan::bench(sample_count = 30)]
fn w1_rayon_range_collect() -> Vec<u64> {
    peers::rayon_range_collect(N, tiny)
}

#[divan::bench(sample_count = 30)]
fn w1_parpool_map_slice() -> Vec<u64> {
    pool().map(|&x: &u64| tiny(x), input())
}

#[divan::bench(sample_count = 30)]
fn w1_parpool_imap() -> Vec<u64> {
    pool().imap(tiny, 0..N).collect()
}

#[divan::bench(sample_count = 30)]
fn w1_parpool_imap_unordered() -> Vec<u64> {
    pool().imap_unordered(tiny, 0..N).collect()
}

/// One `apply` on a warm (recently busy) pool.
#[divan::bench(sample_count = 200)]
fn apply_hot() -> u64 {
    pool().apply(|| tiny(1))
}
