//! imap reads its input lazily and keeps a bounded number of items in flight;
//! dropping it early cancels what has not started.
mod common;

use common::guard;
use parpool::ThreadPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An endless input that counts how many items were pulled from it.
fn counted(pulled: &Arc<AtomicUsize>) -> impl Iterator<Item = u64> + Send + 'static {
    let pulled = Arc::clone(pulled);
    (0u64..).inspect(move |_| {
        pulled.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn imap_over_an_endless_input_with_take_finishes_in_bounded_memory() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let pulled = Arc::new(AtomicUsize::new(0));
        let out: Vec<u64> = pool
            .imap(|x: u64| x * 2, counted(&pulled))
            .take(1000)
            .collect();
        assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
        // Bounded: only a buffer's worth beyond what was consumed was read.
        let read = pulled.load(Ordering::SeqCst);
        assert!(
            (1000..=1000 + 4 * 2 * (1 << 16)).contains(&read),
            "read {read}"
        );
    });
}

#[test]
fn buffer_bounds_the_read_ahead() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for unordered in [false, true] {
            let pulled = Arc::new(AtomicUsize::new(0));
            let f = |x: u64| x;
            let mut it: Box<dyn Iterator<Item = u64>> = if unordered {
                Box::new(pool.imap_unordered(f, counted(&pulled)).buffer(10))
            } else {
                Box::new(pool.imap(f, counted(&pulled)).buffer(10))
            };
            for consumed in 1..=500usize {
                it.next().unwrap();
                // A slow consumer: the pool may run ahead only `buffer` items
                // (plus the chunk being handed out).
                if consumed % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let read = pulled.load(Ordering::SeqCst);
                assert!(
                    read <= consumed + 10 + 5,
                    "consumed {consumed}, read {read}"
                );
            }
        }
    });
}

#[test]
fn nothing_is_read_before_the_first_next() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let pulled = Arc::new(AtomicUsize::new(0));
        let it = pool.imap(|x: u64| x, counted(&pulled));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pulled.load(Ordering::SeqCst), 0);
        drop(it);
    });
}

#[test]
fn dropping_a_half_consumed_imap_cancels_work_not_started() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for unordered in [false, true] {
            let ran = Arc::new(AtomicUsize::new(0));
            let ran2 = Arc::clone(&ran);
            let f = move |x: u64| {
                ran2.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
                x
            };
            let inputs = 0..10_000u64;
            {
                let mut it: Box<dyn Iterator<Item = u64>> = if unordered {
                    Box::new(pool.imap_unordered(f, inputs).chunksize(1).buffer(20))
                } else {
                    Box::new(pool.imap(f, inputs).chunksize(1).buffer(20))
                };
                for _ in 0..50 {
                    it.next().unwrap();
                }
            } // dropped half-way (far less than half, in fact)
              // Let queued chunks drain: they must be skipped, not run.
            pool.apply(|| ());
            std::thread::sleep(Duration::from_millis(50));
            let ran = ran.load(Ordering::SeqCst);
            assert!(ran < 50 + 20 + 3, "ran {ran} items after dropping at 50");
            // The pool is fine afterwards.
            assert_eq!(pool.map(|x| x + 1, &[1]), [2]);
        }
    });
}

#[test]
fn imap_results_are_dropped_when_the_iterator_is() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let token = Arc::new(());
        let t2 = Arc::clone(&token);
        let mut it = pool
            .imap(move |_: u32| Arc::clone(&t2), 0..1000)
            .chunksize(10);
        let first = it.next().unwrap();
        drop(first);
        drop(it);
        // Chunks still running finish and drop their results and closure.
        let start = std::time::Instant::now();
        while Arc::strong_count(&token) > 1 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(Arc::strong_count(&token), 1);
    });
}

#[test]
fn automatic_chunking_edges() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        // One item; items slower than the chunk target; tiny items in bulk.
        assert_eq!(pool.imap(|x: u8| x, [7]).collect::<Vec<_>>(), [7]);
        let slow: Vec<u32> = pool
            .imap(
                |x: u32| {
                    std::thread::sleep(Duration::from_millis(2));
                    x
                },
                0..20,
            )
            .collect();
        assert_eq!(slow, (0..20).collect::<Vec<_>>());
        let n = 300_000u64;
        let sum: u64 = pool.imap(|x: u64| x, 0..n).sum();
        assert_eq!(sum, n * (n - 1) / 2);
        // buffer smaller than the worker count still makes progress
        let v: Vec<u32> = pool.imap(|x: u32| x, 0..100).buffer(1).collect();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
        // explicit chunk larger than the buffer still makes progress
        let v: Vec<u32> = pool
            .imap(|x: u32| x, 0..100)
            .chunksize(50)
            .buffer(3)
            .collect();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    });
}

#[test]
fn builder_calls_after_iteration_started_panic() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let mut it = pool.imap(|x: u8| x, 0..10);
        it.next();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || it.chunksize(2)));
        let msg = common::panic_message(r.unwrap_err().as_ref());
        assert!(msg.contains("before the first next()"), "{msg}");
    });
}
