//! parpool's rows, written against the public API in `parpool-api.md`.

use crate::measure::Row;
use crate::work::{tiny, Body};
use crate::workloads::{latency, names, Latency, PP_APPLY};
use std::sync::Arc;
use std::time::Duration;

/// Whether this build measures a real parpool.
pub const AVAILABLE: bool = true;

/// The parpool pool the in-process workloads share.
pub struct Pool(pub parpool::ThreadPool);

impl Pool {
    pub fn new(workers: usize) -> Pool {
        Pool(parpool::ThreadPool::with_workers(workers))
    }
}

/// `map` over a borrowed slice.
pub fn slice_rows<'a, F: Body>(
    pool: &'a Pool,
    input: &'a Arc<Vec<u64>>,
    f: F,
    want: u64,
) -> Vec<Row<'a>> {
    let slice: &'a [u64] = input.as_slice();
    vec![
        Row::new(names::PP_MAP, move || pool.0.map(|&x: &u64| f(x), slice))
            .expect(want)
            .key(),
    ]
}

/// `map` over a range (its fast path), `imap` and, if asked,
/// `imap_unordered`, each collected into a `Vec`.
pub fn range_rows<F: Body>(
    pool: &Pool,
    n: u64,
    f: F,
    want: u64,
    want_unordered: u64,
    unordered_too: bool,
) -> Vec<Row<'_>> {
    let mut rows = vec![
        Row::new(names::PP_MAP_RANGE, move || pool.0.map(f, 0..n))
            .expect(want)
            .key(),
        Row::new(names::PP_IMAP, move || pool.0.imap(f, 0..n).collect())
            .expect(want)
            .key(),
    ];
    if unordered_too {
        rows.push(
            Row::new(names::PP_IMAP_UNORDERED, move || {
                pool.0.imap_unordered(f, 0..n).collect()
            })
            .unordered(want_unordered)
            .key(),
        );
    }
    rows
}

/// The faster imap consumers (W1's extra rows): internal iteration, which
/// drains each chunk in one loop, and `batches()`, which moves whole chunks.
pub fn imap_consumer_rows<F: Body>(pool: &Pool, n: u64, f: F, want: u64) -> Vec<Row<'_>> {
    vec![
        Row::new(names::PP_IMAP_FOR_EACH, move || {
            let mut out = Vec::with_capacity(n as usize);
            pool.0.imap(f, 0..n).for_each(|x| out.push(x));
            out
        })
        .expect(want),
        Row::new(names::PP_IMAP_BATCHES, move || {
            let mut out = Vec::with_capacity(n as usize);
            for batch in pool.0.imap(f, 0..n).batches() {
                out.extend_from_slice(&batch);
            }
            out
        })
        .expect(want),
    ]
}

/// `apply_async` `n` times, then `get` every result in order.
pub fn w4_rows(pool: &Pool, n: u64, want: u64) -> Vec<Row<'_>> {
    vec![
        Row::new(names::W4_PP, move || w4_run(pool, n))
            .expect(want)
            .key(),
        // The same fire-and-forget work threadpool's and rayon's rows do:
        // no result per job, one wait for all of them.
        Row::new(names::W4_PP_SPAWN, move || {
            pool.0.scope(|s| {
                for i in 0..n {
                    s.spawn(move || {
                        std::hint::black_box(tiny(i));
                    });
                }
            });
            Vec::new()
        }),
    ]
}

/// W4 in a fresh process: one pool, one timed run of `n` jobs.
pub fn w4_fresh(workers: usize, n: u64) -> Option<std::time::Duration> {
    let pool = Pool::new(workers);
    std::thread::sleep(Duration::from_millis(5));
    let t = std::time::Instant::now();
    let out = w4_run(&pool, n);
    let d = t.elapsed();
    assert_eq!(out.len() as u64, n);
    Some(d)
}

fn w4_run(pool: &Pool, n: u64) -> Vec<u64> {
    let handles: Vec<_> = (0..n)
        .map(|i| pool.0.apply_async(move || tiny(i)))
        .collect();
    handles
        .into_iter()
        .map(|h| h.get().expect("apply_async task failed"))
        .collect()
}

/// W9: `reps` times, a 2-worker pool is built, runs one `apply` and is
/// dropped (which closes it and joins its threads).
pub fn w9_lifecycle(reps: u64) -> Vec<u64> {
    (0..reps)
        .map(|i| {
            let pool = parpool::ThreadPool::with_workers(2);
            pool.apply(move || tiny(i))
        })
        .collect()
}

pub fn w7_apply(pool: &Pool, samples: usize, gap: Duration) -> Option<Latency> {
    Some(latency(PP_APPLY, samples, gap, || pool.0.apply(|| tiny(1))))
}

/// W6: a fresh pool runs W2's work three times and is kept alive.
pub fn w6_busy<F: Body>(workers: usize, input: &Arc<Vec<u64>>, f: F) -> Box<dyn std::any::Any> {
    let pool = parpool::ThreadPool::with_workers(workers);
    for _ in 0..3 {
        std::hint::black_box(pool.map(|&x: &u64| f(x), input.as_slice()));
    }
    Box::new(pool)
}

/// A W5 stream: `(items, consumer_iters) -> items consumed`.
pub type W5Stream = Box<dyn FnMut(u64, u32) -> u64>;

/// W5: a pool is built (and warmed) before the RSS baseline is taken; the
/// returned stream then runs `imap` over `(0u64..).take(n)` with the slow
/// consumer.
pub fn w5_prepare(workers: usize) -> Option<W5Stream> {
    let pool = parpool::ThreadPool::with_workers(workers);
    let warm: u64 = pool.imap(tiny, 0u64..10_000).fold(0, u64::wrapping_add);
    std::hint::black_box(warm);
    Some(Box::new(move |n, consumer_iters| {
        let mut pos = 0u64;
        for v in pool.imap(tiny, (0u64..).take(n as usize)) {
            crate::child::consume(pos, v, consumer_iters);
            pos += 1;
        }
        pos
    }))
}
