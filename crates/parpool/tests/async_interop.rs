//! Async interop: `AsyncResult` is a `Future`, `Imap`/`ImapUnordered` are
//! `Stream`s, and awaiting them never blocks the executor's thread.
//!
//! Every test runs on a tokio *current-thread* runtime, where a blocked
//! thread would stall everything: the tests that prove non-blocking make the
//! pool task wait for something only the executor thread can provide, so a
//! blocking `poll` would deadlock (and fail under the guard) instead of
//! merely being slow.

mod common;

use common::guard;
use futures::{StreamExt, TryStreamExt};
use parpool::{TaskError, ThreadPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

#[test]
fn async_result_resolves_when_awaited() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let rt = current_thread_runtime();
        rt.block_on(async {
            let slow = pool.apply_async(|| {
                std::thread::sleep(Duration::from_millis(50));
                6 * 7
            });
            assert_eq!(slow.await, Ok(42));

            let failed = pool.apply_async(|| -> u8 { panic!("async boom") });
            assert!(
                matches!(failed.await, Err(TaskError::Panicked(m)) if m.contains("async boom"))
            );

            // Many handles awaited together.
            let handles: Vec<_> = (0..20u64)
                .map(|i| {
                    pool.apply_async(move || {
                        std::thread::sleep(Duration::from_millis(i % 4));
                        i * i
                    })
                })
                .collect();
            let results = futures::future::join_all(handles).await;
            let expected: Vec<Result<u64, TaskError>> = (0..20).map(|i| Ok(i * i)).collect();
            assert_eq!(results, expected);
        });
    });
}

#[test]
fn cancelled_async_result_resolves_to_cancelled() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (release, blocked) = mpsc::channel::<()>();
        let (started, has_started) = mpsc::channel::<()>();
        let blocker = pool.apply_async(move || {
            started.send(()).unwrap();
            blocked.recv().unwrap()
        });
        // The worker is inside `blocker` (under Miri a 20 ms sleep did not
        // always see it start, and `release` then failed).
        has_started.recv().unwrap();
        let queued = pool.apply_async(|| 1);
        assert!(queued.cancel());
        let rt = current_thread_runtime();
        rt.block_on(async {
            assert_eq!(queued.await, Err(TaskError::Cancelled));
            release.send(()).unwrap();
            assert_eq!(blocker.await, Ok(()));
        });
    });
}

#[test]
fn imap_and_imap_unordered_are_streams() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let rt = current_thread_runtime();
        rt.block_on(async {
            // `into_stream` makes a `Stream` that is not also an `Iterator`,
            // so `StreamExt`'s methods are called as methods: no E0034.
            let ordered: Vec<u64> = pool
                .imap(|x: u64| x * 3, 0..500)
                .into_stream()
                .collect()
                .await;
            assert_eq!(ordered, (0..500).map(|x| x * 3).collect::<Vec<_>>());

            // Slow items out of order still arrive in input order.
            let slow = pool
                .imap(
                    |ms: u64| {
                        std::thread::sleep(Duration::from_millis(ms));
                        ms
                    },
                    vec![30, 1, 20, 2, 10, 3],
                )
                .chunksize(1)
                .into_stream();
            let ordered: Vec<u64> = slow.collect().await;
            assert_eq!(ordered, [30, 1, 20, 2, 10, 3]);

            let mut unordered: Vec<u64> = pool
                .imap_unordered(|x: u64| x + 1, 0..500)
                .into_stream()
                .collect()
                .await;
            unordered.sort_unstable();
            assert_eq!(unordered, (1..=500).collect::<Vec<_>>());

            // Partial consumption with `next`, then drop.
            let mut stream = pool.imap(|x: u32| x * 2, 0..).buffer(16).into_stream();
            assert_eq!(stream.next().await, Some(0));
            assert_eq!(stream.next().await, Some(2));
            let rest: Vec<u32> = stream.take(3).collect().await;
            assert_eq!(rest, [4, 6, 8]);
        });
    });
}

#[test]
fn with_stream_ext_in_scope_iterators_and_streams_are_not_ambiguous() {
    // Issue 10: `Imap` used to be both an `Iterator` and a `Stream`, so
    // with `StreamExt` in scope `it.next()` and `.collect()` failed with
    // E0034. Now the iterator is only an iterator, and `into_stream` gives
    // the stream.
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let mut it = pool.imap(|x: u32| x + 1, 0..5);
        assert_eq!(it.next(), Some(1));
        let rest: Vec<u32> = it.collect();
        assert_eq!(rest, [2, 3, 4, 5]);
        let unordered: u32 = pool.imap_unordered(|x: u32| x, 0..5).sum();
        assert_eq!(unordered, 10);
        let got: Vec<u32> = futures::executor::block_on(async {
            let mut stream = pool.imap(|x: u32| x * 10, 0..3).into_stream();
            let mut got = Vec::new();
            while let Some(x) = stream.next().await {
                got.push(x);
            }
            let mut unordered = pool.imap_unordered(|x: u32| x, 7..8).into_stream();
            got.extend(unordered.next().await);
            assert_eq!(unordered.next().await, None);
            got
        });
        assert_eq!(got, [0, 10, 20, 7]);
    });
}

fn check(x: u64) -> Result<u64, String> {
    if x % 100 == 37 {
        Err(format!("bad input {x}"))
    } else {
        Ok(x * 2)
    }
}

#[test]
fn imap_buffer_try_collect_ok() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let rt = current_thread_runtime();
        let out: Result<Vec<u64>, String> = rt.block_on(async {
            pool.imap(check, (0..1000u64).filter(|x| x % 100 != 37))
                .buffer(8)
                .into_stream()
                .try_collect()
                .await
        });
        let expected: Vec<u64> = (0..1000u64)
            .filter(|x| x % 100 != 37)
            .map(|x| x * 2)
            .collect();
        assert_eq!(out, Ok(expected));
    });
}

#[test]
fn imap_buffer_try_collect_returns_first_error_in_input_order_and_stops() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let ran = Arc::new(AtomicUsize::new(0));
        let rt = current_thread_runtime();
        let counter = Arc::clone(&ran);
        let out: Result<Vec<u64>, String> = rt.block_on(async move {
            pool.imap(
                move |x: u64| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    // Item 37 is slow, so later failures finish first.
                    if x == 37 {
                        std::thread::sleep(Duration::from_millis(30));
                    }
                    check(x)
                },
                0..100_000u64,
            )
            .buffer(8)
            .into_stream()
            .try_collect()
            .await
        });
        assert_eq!(out, Err("bad input 37".to_string()));
        // The dropped stream cancelled the rest. Items read from the input
        // are at most those handed to the consumer (up to the end of the
        // chunk holding input 37; a chunk is at most `buffer` items) plus the
        // `buffer` read ahead. (The pool was moved into the future and
        // dropped with it, so all its work has finished.)
        let ran = ran.load(Ordering::SeqCst);
        assert!(
            ran <= 38 + 2 * 8,
            "{ran} items ran for a failure at input 37"
        );
    });
}

#[test]
fn imap_unordered_buffer_try_collect_fails_on_any_error() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let rt = current_thread_runtime();
        let out: Result<Vec<u64>, String> = rt.block_on(async {
            pool.imap_unordered(check, 0..10_000u64)
                .buffer(8)
                .into_stream()
                .try_collect()
                .await
        });
        let err = out.unwrap_err();
        assert!(err.starts_with("bad input "), "{err}");
        let x: u64 = err["bad input ".len()..].parse().unwrap();
        assert_eq!(x % 100, 37);
    });
}

#[test]
fn awaiting_a_pool_task_does_not_block_the_executor_thread() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let rt = current_thread_runtime();
        rt.block_on(async {
            let (tx, rx) = mpsc::channel::<u32>();
            // The pool task can only finish once the executor thread has run
            // the ticker below: a blocking `poll` would deadlock here.
            let task = pool.apply_async(move || rx.recv().unwrap() * 10);
            let ticker = async move {
                let mut ticks = 0;
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks += 1;
                }
                tx.send(ticks).unwrap();
                ticks
            };
            let (result, ticks) = tokio::join!(task, ticker);
            assert_eq!(ticks, 5);
            assert_eq!(result, Ok(50));
        });
    });
}

#[test]
fn a_spawned_task_runs_while_awaiting_a_slow_pool_task() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let rt = current_thread_runtime();
        rt.block_on(async {
            let ticks = Arc::new(AtomicUsize::new(0));
            let t = Arc::clone(&ticks);
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    t.fetch_add(1, Ordering::SeqCst);
                }
            });
            // The pool task waits until the executor thread has ticked 3 times.
            let seen = Arc::clone(&ticks);
            let slow = pool.apply_async(move || {
                while seen.load(Ordering::SeqCst) < 3 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                "done"
            });
            assert_eq!(slow.await, Ok("done"));
            assert!(ticks.load(Ordering::SeqCst) >= 3);
            ticker.abort();
        });
    });
}

#[test]
fn driving_an_imap_stream_does_not_block_the_executor_thread() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let rt = current_thread_runtime();
        rt.block_on(async {
            let (tx, rx) = mpsc::channel::<()>();
            let gate = Mutex::new(rx);
            // Item 3 waits for a message that the ticker, on the executor
            // thread, sends only after several timer ticks.
            let stream = pool
                .imap(
                    move |i: u32| {
                        if i == 3 {
                            gate.lock().unwrap().recv().unwrap();
                        }
                        i * i
                    },
                    0..8,
                )
                .chunksize(1)
                .buffer(4)
                .into_stream();
            let ticker = async move {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tx.send(()).unwrap();
            };
            let (squares, ()) = tokio::join!(stream.collect::<Vec<_>>(), ticker);
            assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49]);
        });
    });
}

#[test]
fn stream_works_on_a_multi_thread_runtime_too() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let p = Arc::clone(&pool);
        let total = rt.block_on(async move {
            let handle = tokio::spawn(async move {
                let stream = p.imap_unordered(|x: u64| x, 1..=1000).into_stream();
                stream.fold(0u64, |acc, x| async move { acc + x }).await
            });
            handle.await.unwrap()
        });
        assert_eq!(total, 500_500);
    });
}

#[test]
fn awaited_task_discarded_by_terminate_resolves_to_cancelled() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let (release, blocked) = mpsc::channel::<()>();
        let (started, has_started) = mpsc::channel::<()>();
        let blocker = pool.apply_async(move || {
            started.send(()).unwrap();
            blocked.recv().unwrap()
        });
        // The worker is inside `blocker` before the terminate: under Miri
        // the 20 ms below did not always see it start, and `release` failed.
        has_started.recv().unwrap();
        let queued = pool.apply_async(|| 1);
        let p = Arc::clone(&pool);
        let rt = current_thread_runtime();
        let result = rt.block_on(async move {
            // Terminate from another thread while `queued` is being awaited.
            let terminator = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                p.terminate();
                release.send(()).unwrap();
            });
            let result = queued.await;
            terminator.join().unwrap();
            result
        });
        assert_eq!(result, Err(TaskError::Cancelled));
        assert_eq!(blocker.get(), Ok(()));
        pool.join();
    });
}

#[test]
fn scoped_imap_is_a_stream_over_borrowed_data() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let words: Vec<String> = ["12", "7", "x", "40"]
            .iter()
            .map(|w| w.to_string())
            .collect();
        let offset = 100u32;
        let parse = |w: &String| {
            w.parse::<u32>()
                .map(|n| n + offset)
                .map_err(|_| format!("not a number: {w}"))
        };
        let (all, good) = pool.scope(|s| {
            let all: Result<Vec<u32>, String> = futures::executor::block_on(
                s.imap(parse, &words).buffer(2).into_stream().try_collect(),
            );
            let good: Result<Vec<u32>, String> = futures::executor::block_on(
                s.imap(parse, words.iter().filter(|w| *w != "x"))
                    .buffer(2)
                    .into_stream()
                    .try_collect(),
            );
            (all, good)
        });
        assert_eq!(all, Err("not a number: x".to_string()));
        assert_eq!(good, Ok(vec![112, 107, 140]));
    });
}

#[test]
fn stream_created_before_close_keeps_going_after_close() {
    guard(30, || {
        let rt = current_thread_runtime();
        let expected: Vec<u32> = (0..100).map(|x| x * 2).collect();

        let pool = ThreadPool::with_workers(2);
        let mut stream = pool
            .imap(|x: u32| x * 2, 0..100)
            .chunksize(1)
            .buffer(4)
            .into_stream();
        let ordered: Vec<u32> = rt.block_on(async {
            let first = stream.next().await.unwrap();
            pool.close();
            let rest: Vec<u32> = stream.collect().await;
            std::iter::once(first).chain(rest).collect()
        });
        assert_eq!(ordered, expected);
        pool.join();

        let pool = ThreadPool::with_workers(2);
        let mut stream = pool
            .imap_unordered(|x: u32| x * 2, 0..100)
            .chunksize(1)
            .buffer(4)
            .into_stream();
        let mut unordered: Vec<u32> = rt.block_on(async {
            let first = stream.next().await.unwrap();
            pool.close();
            let rest: Vec<u32> = stream.collect().await;
            std::iter::once(first).chain(rest).collect()
        });
        unordered.sort_unstable();
        assert_eq!(unordered, expected);
        pool.join();
    });
}
