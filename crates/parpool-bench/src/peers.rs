//! The peers parpool is measured against, each written the way a careful
//! user of that library would write "map this slice, keep the order".
//!
//! Rows that need `'static` jobs (threadpool, tokio, poolio) share the input
//! through an `Arc` and split it into [`Peers::chunks`] even chunks, one job
//! per chunk, so they are not charged for a per-item job they would never
//! choose. The one exception is the article design, whose whole point is one
//! job, one channel message and one `BTreeMap` insert per item.

use crate::work::Body;
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::Range;
use std::sync::{mpsc, Arc};

/// The peer pools, built once and reused by every measurement.
pub struct Peers {
    /// Worker threads each pool gets (the machine's available parallelism).
    pub workers: usize,
    /// Jobs a chunked `'static` row splits its input into.
    pub chunks: usize,
    pub threadpool: threadpool::ThreadPool,
    pub tokio: tokio::runtime::Runtime,
    pub poolio: poolio::ThreadPool,
}

impl Peers {
    pub fn new(workers: usize) -> Peers {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .max_blocking_threads(workers)
            .thread_name("bench-tokio")
            .build()
            .expect("tokio runtime");
        Peers {
            workers,
            chunks: workers * 4,
            threadpool: threadpool::ThreadPool::new(workers),
            tokio,
            poolio: poolio::ThreadPool::new(workers, poolio::PanicSwitch::Kill)
                .expect("poolio pool"),
        }
    }

    /// `n` split into `self.chunks` even index ranges.
    pub fn ranges(&self, n: usize) -> Vec<Range<usize>> {
        even_ranges(n, self.chunks)
    }
}

/// `n` split into at most `parts` contiguous ranges whose sizes differ by at
/// most one.
pub fn even_ranges(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    let (base, extra) = (n / parts, n % parts);
    let mut lo = 0;
    (0..parts)
        .map(|i| {
            let hi = lo + base + usize::from(i < extra);
            let r = lo..hi;
            lo = hi;
            r
        })
        .collect()
}

pub fn sequential<F: Body>(input: &[u64], f: F) -> Vec<u64> {
    input.iter().map(|&x| f(x)).collect()
}

/// rayon `par_iter().map().collect()` over a slice.
pub fn rayon_collect<F: Body>(input: &[u64], f: F) -> Vec<u64> {
    use rayon::prelude::*;
    input.par_iter().map(|&x| f(x)).collect()
}

/// rayon `into_par_iter().map().collect()` over `0..n`, the baseline for the
/// range-fed `imap` rows.
pub fn rayon_range_collect<F: Body>(n: u64, f: F) -> Vec<u64> {
    use rayon::prelude::*;
    (0..n).into_par_iter().map(f).collect()
}

/// rayon `scope` + one `spawn` per chunk, each writing its own output chunk.
pub fn rayon_scope_spawn<F: Body>(input: &[u64], f: F, chunks: usize) -> Vec<u64> {
    let mut out = vec![0u64; input.len()];
    let size = input.len().div_ceil(chunks).max(1);
    rayon::scope(|s| {
        for (src, dst) in input.chunks(size).zip(out.chunks_mut(size)) {
            s.spawn(move |_| {
                for (o, &x) in dst.iter_mut().zip(src) {
                    *o = f(x);
                }
            });
        }
    });
    out
}

/// `std::thread::scope` with one thread per worker over even chunks.
pub fn std_scope<F: Body>(input: &[u64], f: F, workers: usize) -> Vec<u64> {
    let mut out = vec![0u64; input.len()];
    let size = input.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        for (src, dst) in input.chunks(size).zip(out.chunks_mut(size)) {
            s.spawn(move || {
                for (o, &x) in dst.iter_mut().zip(src) {
                    *o = f(x);
                }
            });
        }
    });
    out
}

/// Puts chunk results that may arrive in any order back into one `Vec`.
fn assemble(n: usize, mut parts: Vec<(usize, Vec<u64>)>) -> Vec<u64> {
    parts.sort_unstable_by_key(|p| p.0);
    let mut out = Vec::with_capacity(n);
    for (_, part) in parts {
        out.extend_from_slice(&part);
    }
    out
}

/// `threadpool` execute + join: one job per chunk, each sending its chunk's
/// results back over an mpsc channel.
pub fn threadpool_execute_join<F: Body>(p: &Peers, input: &Arc<Vec<u64>>, f: F) -> Vec<u64> {
    let (tx, rx) = mpsc::channel();
    for (ci, r) in p.ranges(input.len()).into_iter().enumerate() {
        let (tx, input) = (tx.clone(), Arc::clone(input));
        p.threadpool.execute(move || {
            let part: Vec<u64> = input[r].iter().map(|&x| f(x)).collect();
            tx.send((ci, part)).expect("receiver alive");
        });
    }
    drop(tx);
    p.threadpool.join();
    assemble(input.len(), rx.iter().collect())
}

/// The article's design: `threadpool` + mpsc + `BTreeMap` reorder, one job
/// and one message per item, results emitted in input order as they become
/// contiguous.
pub fn article_design<F: Body>(p: &Peers, input: &[u64], f: F) -> Vec<u64> {
    let (tx, rx) = mpsc::channel();
    for (i, &x) in input.iter().enumerate() {
        let tx = tx.clone();
        p.threadpool.execute(move || {
            tx.send((i, f(x))).expect("receiver alive");
        });
    }
    drop(tx);
    let mut pending = BTreeMap::new();
    let mut out = Vec::with_capacity(input.len());
    for (i, v) in rx {
        pending.insert(i, v);
        while let Some(v) = pending.remove(&out.len()) {
            out.push(v);
        }
    }
    out
}

/// tokio `spawn_blocking` per chunk, driven by `futures` `buffered(n)` so at
/// most `2 * workers` chunks are in flight and results come back in order.
pub fn tokio_buffered<F: Body>(p: &Peers, input: &Arc<Vec<u64>>, f: F) -> Vec<u64> {
    let ranges = p.ranges(input.len());
    let n = input.len();
    let in_flight = p.workers * 2;
    p.tokio.block_on(async {
        let parts: Vec<Vec<u64>> = stream::iter(ranges)
            .map(|r| {
                let input = Arc::clone(input);
                tokio::task::spawn_blocking(move || {
                    input[r].iter().map(|&x| f(x)).collect::<Vec<u64>>()
                })
            })
            .buffered(in_flight)
            .map(|res| res.expect("spawn_blocking task panicked"))
            .collect()
            .await;
        let mut out = Vec::with_capacity(n);
        for part in parts {
            out.extend_from_slice(&part);
        }
        out
    })
}

/// poolio execute, one job per chunk. poolio has no `join`, so the channel
/// that carries the results is also what we wait on.
pub fn poolio_execute<F: Body>(p: &Peers, input: &Arc<Vec<u64>>, f: F) -> Vec<u64> {
    let (tx, rx) = mpsc::channel();
    let ranges = p.ranges(input.len());
    let jobs = ranges.len();
    for (ci, r) in ranges.into_iter().enumerate() {
        let (tx, input) = (tx.clone(), Arc::clone(input));
        let job = std::panic::AssertUnwindSafe(move || {
            let part: Vec<u64> = input[r].iter().map(|&x| f(x)).collect();
            tx.send((ci, part)).expect("receiver alive");
        });
        p.poolio.execute(job);
    }
    drop(tx);
    let parts: Vec<_> = rx.iter().take(jobs).collect();
    assemble(input.len(), parts)
}

// ---- W4: many tiny independent jobs ----

/// `threadpool` execute `n` fire-and-forget jobs, then `join`.
pub fn w4_threadpool_execute_join(p: &Peers, n: u64) -> Vec<u64> {
    for i in 0..n {
        p.threadpool.execute(move || {
            black_box(crate::work::tiny(i));
        });
    }
    p.threadpool.join();
    Vec::new()
}

/// `threadpool` execute `n` jobs that each send their result back, then
/// collect every result in order: the same output parpool's `apply_async`
/// + `get` returns.
pub fn w4_threadpool_with_results(p: &Peers, n: u64) -> Vec<u64> {
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        p.threadpool.execute(move || {
            tx.send((i as usize, crate::work::tiny(i)))
                .expect("receiver alive");
        });
    }
    drop(tx);
    let mut out = vec![0u64; n as usize];
    for (i, v) in rx {
        out[i] = v;
    }
    out
}

/// tokio: one `spawn_blocking` per job, at most `2 * workers` in flight
/// through `buffered(n)`, every result collected in order.
pub fn w4_tokio_buffered(p: &Peers, n: u64) -> Vec<u64> {
    let in_flight = p.workers * 2;
    p.tokio.block_on(
        stream::iter(0..n)
            .map(|i| tokio::task::spawn_blocking(move || crate::work::tiny(i)))
            .buffered(in_flight)
            .map(|res| res.expect("spawn_blocking task panicked"))
            .collect(),
    )
}

/// poolio execute `n` jobs that each send their result back (poolio has no
/// `join`), then collect every result in order.
pub fn w4_poolio_with_results(p: &Peers, n: u64) -> Vec<u64> {
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        let job = std::panic::AssertUnwindSafe(move || {
            tx.send((i as usize, crate::work::tiny(i)))
                .expect("receiver alive");
        });
        p.poolio.execute(job);
    }
    drop(tx);
    let mut out = vec![0u64; n as usize];
    for (i, v) in rx.iter().take(n as usize) {
        out[i] = v;
    }
    out
}

/// rayon `scope` with one `spawn` per job.
pub fn w4_rayon_scope_spawn(n: u64) -> Vec<u64> {
    rayon::scope(|s| {
        for i in 0..n {
            s.spawn(move |_| {
                black_box(crate::work::tiny(i));
            });
        }
    });
    Vec::new()
}

// ---- W9: a pool's whole life ----

/// W9 for threadpool: `reps` times, a 2-thread pool is made, runs one job
/// that stores its result, is joined and dropped (threadpool's drop does
/// not wait for its threads).
pub fn w9_threadpool(reps: u64) -> Vec<u64> {
    (0..reps)
        .map(|i| {
            let pool = threadpool::ThreadPool::new(2);
            let out = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let slot = Arc::clone(&out);
            pool.execute(move || {
                slot.store(crate::work::tiny(i), std::sync::atomic::Ordering::Relaxed)
            });
            pool.join();
            out.load(std::sync::atomic::Ordering::Relaxed)
        })
        .collect()
}

/// W9 for rayon: `reps` times, `ThreadPoolBuilder::build` with 2 threads,
/// one `install`, drop (rayon's drop does not wait for its threads).
pub fn w9_rayon(reps: u64) -> Vec<u64> {
    (0..reps)
        .map(|i| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .expect("rayon pool");
            pool.install(|| crate::work::tiny(i))
        })
        .collect()
}

/// W4 for threadpool in a fresh process: one pool, one timed run.
pub fn w4_fresh_threadpool(workers: usize, n: u64) -> std::time::Duration {
    let pool = threadpool::ThreadPool::new(workers);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let t = std::time::Instant::now();
    for i in 0..n {
        pool.execute(move || {
            black_box(crate::work::tiny(i));
        });
    }
    pool.join();
    t.elapsed()
}

#[cfg(test)]
mod tests {
    use super::even_ranges;

    #[test]
    fn even_ranges_cover_input_exactly() {
        for n in [0usize, 1, 7, 8, 9, 1000] {
            for parts in [1usize, 3, 8, 2000] {
                let rs = even_ranges(n, parts);
                let mut next = 0;
                for r in &rs {
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, n);
                let sizes: Vec<_> = rs.iter().map(|r| r.len()).collect();
                let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
                assert!(hi.unwrap() - lo.unwrap() <= 1, "{n} {parts} {sizes:?}");
            }
        }
    }
}
