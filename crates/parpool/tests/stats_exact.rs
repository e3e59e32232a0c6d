//! `stats()` counts what ran: `completed` grows by exactly the number of
//! items whose function was called, and `queued`/`running` return to 0.
mod common;

use common::guard;
use parpool::ThreadPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Waits until the pool is idle (nothing queued or running), then returns
/// its stats.
fn idle_stats(pool: &ThreadPool) -> parpool::Stats {
    let start = Instant::now();
    loop {
        let s = pool.stats();
        if s.queued == 0 && s.running == 0 {
            // Settle: a worker may still be publishing its last chunk.
            std::thread::sleep(Duration::from_millis(5));
            let s2 = pool.stats();
            if s2 == s {
                return s;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "pool never went idle: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn try_map_failing_at_item_0_counts_only_the_calls_made() {
    guard(30, || {
        for workers in [1, 2] {
            let pool = ThreadPool::with_workers(workers);
            for chunk in [Some(1000), Some(1), Some(10), None] {
                let before = idle_stats(&pool).completed;
                let calls = AtomicUsize::new(0);
                let f = |x: u32| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    if x == 0 {
                        Err(x)
                    } else {
                        Ok(x)
                    }
                };
                let r = match chunk {
                    Some(c) => pool.chunked(c).try_map(f, 0..1000u32),
                    None => pool.try_map(f, 0..1000u32),
                };
                assert_eq!(r, Err(0));
                let after = idle_stats(&pool).completed;
                let calls = calls.load(Ordering::SeqCst);
                if chunk == Some(1000) {
                    assert_eq!(calls, 1, "one chunk: only item 0 runs");
                }
                assert_eq!(
                    after - before,
                    calls,
                    "workers {workers}, chunk {chunk:?}: completed grew by {} but f ran {calls} times",
                    after - before
                );
            }
        }
    });
}

#[test]
fn map_panicking_at_item_0_counts_only_the_calls_made() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        for chunk in [1000usize, 7] {
            let before = idle_stats(&pool).completed;
            let calls = AtomicUsize::new(0);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.chunked(chunk).map(
                    |x: u32| {
                        calls.fetch_add(1, Ordering::SeqCst);
                        if x == 0 {
                            panic!("EXPECTED: item 0");
                        }
                        x
                    },
                    0..1000u32,
                )
            }));
            assert!(r.is_err());
            let s = idle_stats(&pool);
            let calls = calls.load(Ordering::SeqCst);
            assert_eq!(
                s.completed - before,
                calls,
                "chunk {chunk}: completed grew by {} but f ran {calls} times",
                s.completed - before
            );
        }
    });
}

#[test]
fn imap_over_three_items_counts_three() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        for chunk in [None, Some(1), Some(2), Some(3), Some(100)] {
            for ordered in [true, false] {
                let before = idle_stats(&pool).completed;
                let n = if ordered {
                    let it = pool.imap(|x: u32| x, vec![1u32, 2, 3]);
                    match chunk {
                        Some(c) => it.chunksize(c).count(),
                        None => it.count(),
                    }
                } else {
                    let it = pool.imap_unordered(|x: u32| x, vec![1u32, 2, 3]);
                    match chunk {
                        Some(c) => it.chunksize(c).count(),
                        None => it.count(),
                    }
                };
                assert_eq!(n, 3);
                let after = idle_stats(&pool).completed;
                assert_eq!(
                    after - before,
                    3,
                    "chunk {chunk:?} ordered {ordered}: completed grew by {}",
                    after - before
                );
            }
        }
    });
}

#[test]
fn imap_dropped_early_counts_only_what_ran() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let before = idle_stats(&pool).completed;
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let got: Vec<u64> = pool
            .imap(
                move |x: u64| {
                    c.fetch_add(1, Ordering::SeqCst);
                    x
                },
                0u64..,
            )
            .chunksize(4)
            .take(10)
            .collect();
        assert_eq!(got.len(), 10);
        let after = idle_stats(&pool).completed;
        assert_eq!(
            after - before,
            calls.load(Ordering::SeqCst),
            "completed vs calls of f"
        );
    });
}

#[test]
fn apply_async_and_map_count_exactly() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let before = idle_stats(&pool);
        let hs: Vec<_> = (0..100u32).map(|i| pool.apply_async(move || i)).collect();
        for h in hs {
            h.get().unwrap();
        }
        pool.map(|x: u32| x, 0..500u32);
        pool.chunked(7).map(|x: u32| x, 0..500u32);
        pool.map_async(|x: u32| x, vec![1u32; 50]).get().unwrap();
        let bad = pool.apply_async(|| -> u8 { panic!("EXPECTED") });
        assert!(bad.get().is_err());
        let after = idle_stats(&pool);
        assert_eq!(after.completed - before.completed, 100 + 500 + 500 + 50 + 1);
        assert_eq!(after.panicked - before.panicked, 1);
    });
}

#[test]
fn cancelled_tasks_are_not_counted_as_completed() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let before = idle_stats(&pool).completed;
        let (release, blocked) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        let blocker = pool.apply_async(move || {
            started_tx.send(()).unwrap();
            blocked.recv_timeout(Duration::from_secs(10)).is_ok()
        });
        started.recv().unwrap();
        let queued: Vec<_> = (0..10u32).map(|i| pool.apply_async(move || i)).collect();
        for h in &queued {
            assert!(h.cancel());
        }
        release.send(()).unwrap();
        assert_eq!(blocker.get(), Ok(true));
        let s = idle_stats(&pool);
        assert_eq!(s.completed - before, 1, "only the blocker ran: {s:?}");
    });
}

#[test]
fn terminate_with_queued_work_leaves_nothing_queued_or_running() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let (release, blocked) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        let blocker = pool.apply_async(move || {
            started_tx.send(()).unwrap();
            blocked.recv_timeout(Duration::from_secs(10)).is_ok()
        });
        started.recv().unwrap();
        let queued: Vec<_> = (0..100u32).map(|i| pool.apply_async(move || i)).collect();
        let mapped = pool
            .chunked(5)
            .map_async(|x: u32| x, (0..100u32).collect::<Vec<_>>());
        let mut it = pool.imap(|x: u32| x, 0..1000u32).chunksize(10);
        let p = Arc::clone(&pool);
        // Start the imap from another thread: its credits get queued too.
        let consumer = std::thread::spawn(move || {
            let first = it.next_timeout(Duration::from_secs(5));
            drop(p);
            first.is_ok()
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            pool.stats().queued > 0,
            "nothing queued before terminate: {:?}",
            pool.stats()
        );
        pool.terminate();
        release.send(()).unwrap();
        let _ = consumer.join();
        pool.join();
        assert_eq!(blocker.get(), Ok(true));
        for h in queued {
            assert!(h.get().is_err());
        }
        assert!(mapped.get().is_err());
        let s = pool.stats();
        assert_eq!(
            (s.queued, s.running),
            (0, 0),
            "after terminate + join: {s:?}"
        );
        // Only the blocker ran.
        assert_eq!(s.completed, 1, "after terminate + join: {s:?}");
    });
}
