//! The fast ways to consume an imap: internal iteration (`fold`, and
//! `for_each`, `count`, `sum`, `last` through it) and `batches()`. Each must
//! yield exactly what `next()` yields, in the same order, with the same
//! panics at the same positions, and drop every result exactly once, also
//! when the consumer's own closure panics halfway through a chunk.
//!
//! Cases where a `Drop` may run while unwinding run in a child process.
#[path = "common/child.rs"]
mod child;
mod common;

use child::{catch, Item, Tracker};
use common::guard;
use parpool::ThreadPool;
use std::sync::Arc;

fn f(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 7
}

#[test]
fn every_consumer_sees_the_same_ordered_stream() {
    guard(60, || {
        let pool = ThreadPool::with_workers(3);
        for n in [0u64, 1, 2, 7, 1000, 100_003] {
            let want: Vec<u64> = (0..n).map(f).collect();
            for chunk in [None, Some(1), Some(3), Some(64), Some(70_000)] {
                let it = || {
                    let it = pool.imap(f, 0..n);
                    match chunk {
                        Some(c) => it.chunksize(c),
                        None => it,
                    }
                };
                let what = format!("n={n} chunksize={chunk:?}");
                let mut folded = Vec::new();
                it().for_each(|x| folded.push(x));
                assert_eq!(folded, want, "for_each, {what}");
                assert_eq!(it().count() as u64, n, "count, {what}");
                let sum = it().fold(0u64, u64::wrapping_add);
                assert_eq!(
                    sum,
                    want.iter().copied().fold(0, u64::wrapping_add),
                    "{what}"
                );
                assert_eq!(it().last(), want.last().copied(), "last, {what}");
                let batches: Vec<Vec<u64>> = it().batches().collect();
                assert_eq!(batches.concat(), want, "batches, {what}");
                assert!(batches.iter().all(|b| !b.is_empty()), "empty batch, {what}");
                if let Some(c) = chunk {
                    assert!(
                        batches.iter().all(|b| b.len() <= c),
                        "batch too big, {what}"
                    );
                }
            }
        }
    });
}

#[test]
fn unordered_consumers_see_every_result_once() {
    guard(60, || {
        let pool = ThreadPool::with_workers(3);
        let n = 50_000u64;
        let mut want: Vec<u64> = (0..n).map(f).collect();
        want.sort_unstable();
        let mut got = Vec::new();
        pool.imap_unordered(f, 0..n).for_each(|x| got.push(x));
        got.sort_unstable();
        assert_eq!(got, want);
        let mut got: Vec<u64> = pool.imap_unordered(f, 0..n).batches().flatten().collect();
        got.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(pool.imap_unordered(f, 0..n).count() as u64, n);
    });
}

#[test]
fn batches_and_fold_continue_where_next_stopped() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let mut it = pool.imap(f, 0..10_000u64).chunksize(100);
        let head: Vec<u64> = it.by_ref().take(150).collect();
        assert_eq!(head, (0..150).map(f).collect::<Vec<_>>());
        let mut rest = Vec::new();
        let mut batches = it.batches();
        let first = batches.next().unwrap();
        assert_eq!(
            first,
            (150..200).map(f).collect::<Vec<_>>(),
            "the rest of the chunk"
        );
        rest.extend(first);
        let tail: Vec<u64> = batches.flatten().collect();
        rest.extend(tail);
        assert_eq!(rest, (150..10_000).map(f).collect::<Vec<_>>());

        let mut it = pool.imap(f, 0..1000u64).chunksize(64);
        assert_eq!(it.next(), Some(f(0)));
        let sum = it.fold(0u64, u64::wrapping_add);
        assert_eq!(sum, (1..1000).map(f).fold(0, u64::wrapping_add));
    });
}

#[test]
fn a_task_panic_reaches_fold_and_batches_at_its_position() {
    child::run(
        "a_task_panic_reaches_fold_and_batches_at_its_position",
        30,
        || {
            let pool = ThreadPool::with_workers(2);
            let g = |x: u64| {
                if x == 500 {
                    panic!("EXPECTED: item 500");
                }
                x
            };
            let mut seen = Vec::new();
            let err = catch(|| {
                pool.imap(g, 0..1000u64)
                    .chunksize(7)
                    .for_each(|x| seen.push(x))
            });
            assert!(err.unwrap_err().contains("item 500"));
            assert_eq!(
                seen,
                (0..500).collect::<Vec<_>>(),
                "every result before the panic"
            );

            let mut seen = Vec::new();
            let err = catch(|| {
                for b in pool.imap(g, 0..1000u64).chunksize(7).batches() {
                    seen.extend(b);
                }
            });
            assert!(err.unwrap_err().contains("item 500"));
            assert_eq!(
                seen,
                (0..500).collect::<Vec<_>>(),
                "every result before the panic, the panicking chunk's first ones included"
            );
            assert_eq!(pool.imap(f, 0..10u64).count(), 10, "the pool still works");
        },
    );
}

static FOLD_PANIC: Tracker = Tracker::new();

#[test]
fn a_panicking_fold_closure_drops_every_result_once() {
    child::run(
        "a_panicking_fold_closure_drops_every_result_once",
        30,
        || {
            let t = &FOLD_PANIC;
            let pool = Arc::new(ThreadPool::with_workers(2));
            let n = 2000;
            let err = catch(|| {
                pool.imap(move |i: usize| t.item(i), 0..n)
                    .chunksize(50)
                    .for_each(|item| {
                        if item.id == 1234 {
                            panic!("EXPECTED: consumer stops at 1234");
                        }
                    })
            });
            assert!(err.unwrap_err().contains("1234"));
            child::assert_pool_healthy(&pool, "after a panicking fold");
            // Results already made but never handed out are dropped with the
            // iterator, or by the worker whose credit was still mapping (the
            // pool's drop joins it); items never mapped are never made.
            drop(pool);
            assert_eq!(t.live(), 0, "a result leaked");
            let drops = t.drops();
            assert!(
                drops.iter().all(|&d| d <= 1),
                "a result was dropped twice: {drops:?}"
            );
            assert!(drops.len() >= 1235, "results up to the panic were dropped");
        },
    );
}

static BATCH_DROP: Tracker = Tracker::new();

#[test]
fn dropping_batches_midway_drops_every_result_once() {
    guard(30, || {
        let t = &BATCH_DROP;
        let pool = ThreadPool::with_workers(2);
        let mut batches = pool
            .imap(move |i: usize| t.item(i), 0..5000)
            .chunksize(100)
            .batches();
        let first: Vec<Item> = batches.next().unwrap();
        assert_eq!(
            first.iter().map(|i| i.id).collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
        drop(batches);
        drop(first);
        // A credit that was mapping when the batches went finishes (or
        // stops) on its worker and drops its results there: the pool's
        // drop joins the workers, so after it nothing can still hold one.
        drop(pool);
        assert_eq!(t.live(), 0, "a result leaked");
        assert!(t.drops().iter().all(|&d| d <= 1), "a result dropped twice");
    });
}

#[test]
fn batches_on_a_terminated_pool_end_with_a_panic_not_a_hang() {
    child::run(
        "batches_on_a_terminated_pool_end_with_a_panic_not_a_hang",
        30,
        || {
            let pool = ThreadPool::with_workers(2);
            let mut batches = pool
                .imap(
                    |x: u64| {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        x
                    },
                    0..100_000,
                )
                .chunksize(10)
                .batches();
            assert!(batches.next().is_some());
            pool.terminate();
            let err = catch(|| batches.by_ref().count());
            assert!(
                err.unwrap_err().contains("cancelled"),
                "terminate is reported"
            );
        },
    );
}
