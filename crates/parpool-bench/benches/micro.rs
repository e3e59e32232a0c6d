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

fn input() -> &'static [u64] {
    static INPUT: OnceLock<Vec<u64>> = OnceLock::new();
    INPUT.get_or_init(|| (0..1_000_000).collect())
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
fn w1_std_scope() -> Vec<u64> {
    peers::std_scope(input(), tiny, 2)
}
