//! A fresh-mind hostile round: exact accounting of every value a fallible
//! or cancelled map touches (inputs, results, errors) under errors, panics
//! and `terminate` racing each other; futures and streams polled from
//! several executors with changing wakers and dropped mid-flight.

#[path = "common/child.rs"]
mod child;
mod common;

use child::Tracker;
use common::rng::Rng;
use futures::{FutureExt, StreamExt};
use parpool::{TaskError, ThreadPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `try_map` over owned inputs, with an error at a random position, a
/// panic at another in some rounds, and `terminate` racing from another
/// thread in some rounds: every input, result and error is dropped exactly
/// once, the reported error is the earliest, and nothing is left live.
#[test]
fn try_map_drops_every_input_result_and_error_exactly_once() {
    child::run(
        "try_map_drops_every_input_result_and_error_exactly_once",
        120,
        || {
            static INPUTS: Tracker = Tracker::new();
            static RESULTS: Tracker = Tracker::new();
            static ERRORS: Tracker = Tracker::new();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            for round in 0..common::pick(300, 4) {
                INPUTS.reset();
                RESULTS.reset();
                ERRORS.reset();
                let n = 1 + rng.below(2000);
                let err_at = rng.below(n * 2); // maybe none
                let panic_at = if round % 3 == 0 {
                    rng.below(n)
                } else {
                    usize::MAX
                };
                let workers = 1 + (round % 4);
                let pool = Arc::new(ThreadPool::with_workers(workers));
                let racer = (round % 2 == 1).then(|| {
                    let p = Arc::clone(&pool);
                    let us = rng.below(300) as u64;
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_micros(us));
                        p.terminate();
                    })
                });
                let chunk = if round % 5 == 0 {
                    Some(1 + rng.below(50))
                } else {
                    None
                };
                let inputs = INPUTS.items(n);
                let f = move |it: child::Item| {
                    let id = it.seen();
                    if id == panic_at {
                        panic!("EXPECTED item panic {id}");
                    }
                    if id == err_at {
                        return Err(ERRORS.item(id));
                    }
                    Ok(RESULTS.item(id))
                };
                let out = child::catch(|| match chunk {
                    Some(c) => pool.chunked(c).try_map(f, inputs),
                    None => pool.try_map(f, inputs),
                });
                if let Some(r) = racer {
                    r.join().unwrap();
                }
                match out {
                    Ok(Ok(v)) => {
                        assert!(err_at >= n && panic_at >= n, "round {round}: no error");
                        assert_eq!(v.len(), n);
                        assert!(v.iter().enumerate().all(|(i, r)| r.id == i));
                        drop(v);
                    }
                    Ok(Err(e)) => {
                        assert_eq!(e.id, err_at, "round {round}: not the earliest error");
                        // Items before the error always run, so a panic
                        // among them always surfaces.
                        assert!(panic_at > err_at, "round {round}: a panic was lost");
                        drop(e);
                    }
                    Err(msg) => {
                        assert!(panic_at < n, "round {round}: {msg}");
                        assert!(msg.contains("EXPECTED item panic"), "round {round}: {msg}");
                    }
                }
                INPUTS.assert_all_dropped_once(n, &format!("round {round}: inputs"));
                INPUTS.assert_no_call_twice(&format!("round {round}"));
                assert_eq!(RESULTS.live(), 0, "round {round}: results leaked");
                assert!(RESULTS.drops().iter().all(|&d| d <= 1), "round {round}");
                assert_eq!(ERRORS.live(), 0, "round {round}: errors leaked");
                assert!(ERRORS.drops().iter().all(|&d| d <= 1), "round {round}");
            }
        },
    );
}

/// `map_async` handles cancelled, dropped, raced by `terminate` or awaited
/// with `now_or_never` in a loop: every input and result is dropped once.
#[test]
fn map_async_handles_in_every_state_drop_each_value_once() {
    child::run(
        "map_async_handles_in_every_state_drop_each_value_once",
        120,
        || {
            static INPUTS: Tracker = Tracker::new();
            static RESULTS: Tracker = Tracker::new();
            let mut rng = Rng(0x1234_5678_9abc_def1);
            for round in 0..common::pick(200, 3) {
                INPUTS.reset();
                RESULTS.reset();
                let n = 1 + rng.below(500);
                let pool = Arc::new(ThreadPool::with_workers(1 + round % 3));
                let mut h = pool.map_async(
                    |it: child::Item| {
                        let id = it.seen();
                        RESULTS.item(id)
                    },
                    INPUTS.items(n),
                );
                let terminated = match round % 5 {
                    0 => {
                        let _ = h.cancel();
                        false
                    }
                    1 => {
                        pool.terminate();
                        true
                    }
                    2 => {
                        let p = Arc::clone(&pool);
                        std::thread::spawn(move || p.terminate()).join().unwrap();
                        true
                    }
                    _ => false,
                };
                let out = match round % 4 {
                    0 => {
                        drop(h);
                        None
                    }
                    1 => Some(h.get()),
                    _ => loop {
                        if let Some(r) = (&mut h).now_or_never() {
                            break Some(r);
                        }
                        std::thread::yield_now();
                    },
                };
                if let Some(r) = out {
                    match r {
                        Ok(v) => {
                            assert_eq!(v.len(), n);
                            assert!(v.iter().enumerate().all(|(i, r)| r.id == i));
                        }
                        Err(TaskError::Cancelled) => assert!(round % 5 <= 2 || terminated),
                        Err(e) => panic!("round {round}: {e}"),
                    }
                }
                pool.terminate();
                pool.join();
                drop(pool);
                INPUTS.assert_all_dropped_once(n, &format!("round {round}: inputs"));
                INPUTS.assert_no_call_twice(&format!("round {round}"));
                assert_eq!(RESULTS.live(), 0, "round {round}: results leaked");
            }
        },
    );
}

/// An imap stream moved between executors: polled a few times by a
/// futures `LocalPool`, then by tokio on another thread, each poll with a
/// different waker, dropped mid-stream; results before the drop are
/// exact and in order, and nothing is left live after the pool is gone.
#[test]
fn an_imap_stream_moved_between_executors_stays_exact() {
    child::run(
        "an_imap_stream_moved_between_executors_stays_exact",
        120,
        || {
            static INPUTS: Tracker = Tracker::new();
            static RESULTS: Tracker = Tracker::new();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build()
                .unwrap();
            for round in 0..common::pick(100, 2) {
                INPUTS.reset();
                RESULTS.reset();
                let n = 200 + round * 7;
                let pool = ThreadPool::with_workers(1 + round % 3);
                let mut s = pool
                    .imap(
                        |it: child::Item| {
                            let id = it.seen();
                            if id % 17 == 0 {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            RESULTS.item(id)
                        },
                        INPUTS.items(n),
                    )
                    .into_stream();
                let mut next = 0usize;
                // A few polls here, each with a fresh waker.
                for _ in 0..5 {
                    let w = futures::task::noop_waker();
                    if let std::task::Poll::Ready(Some(r)) =
                        s.poll_next_unpin(&mut std::task::Context::from_waker(&w))
                    {
                        assert_eq!(r.id, next);
                        next += 1;
                    }
                }
                let stop = n / 2 + round;
                let (s, next) = rt.block_on(async move {
                    tokio::spawn(async move {
                        let mut next = next;
                        while next < stop {
                            let r = tokio::time::timeout(Duration::from_secs(10), s.next())
                                .await
                                .expect("a stream item within 10 s")
                                .expect("the stream ended early");
                            assert_eq!(r.id, next);
                            next += 1;
                        }
                        (s, next)
                    })
                    .await
                    .unwrap()
                });
                assert_eq!(next, stop);
                // Dropped from yet another thread, mid-stream.
                std::thread::spawn(move || drop(s)).join().unwrap();
                drop(pool);
                INPUTS.assert_no_call_twice(&format!("round {round}"));
                assert_eq!(INPUTS.live(), 0, "round {round}: inputs leaked");
                assert!(INPUTS.drops().iter().all(|&d| d <= 1), "round {round}");
                assert_eq!(RESULTS.live(), 0, "round {round}: results leaked");
            }
        },
    );
}

/// A handle raced in `select` against a timer, re-polled after losing, and
/// then awaited on tokio with a new waker every time: the value arrives
/// once, and a drop of the loser mid-flight loses nothing else.
#[test]
fn select_losers_and_executor_hops_lose_no_result() {
    common::guard(60, || {
        static DONE: AtomicUsize = AtomicUsize::new(0);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let pool = Arc::new(ThreadPool::with_workers(2));
        for round in 0..common::pick(300, 3) {
            let mut h = pool.apply_async(move || {
                std::thread::sleep(Duration::from_micros((round % 7) as u64 * 100));
                DONE.fetch_add(1, Ordering::SeqCst);
                round
            });
            let lost = rt.block_on(async {
                tokio::select! {
                    r = &mut h => Some(r),
                    _ = tokio::time::sleep(Duration::from_micros(50)) => None,
                }
            });
            let got = match lost {
                Some(r) => r,
                None => rt.block_on(rt.spawn(h)).unwrap(),
            };
            assert_eq!(got, Ok(round));
        }
        assert_eq!(DONE.load(Ordering::SeqCst), common::pick(300, 3));
    });
}

fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Pools built and dropped many times, each after work that starts spares
/// (a worker blocked in `get` on work queued behind it), leaves an imap
/// half consumed, or drops itself inside its own task: once the last handle
/// is gone no thread of theirs is left.
#[test]
fn create_drop_cycles_leave_no_thread_behind() {
    child::run("create_drop_cycles_leave_no_thread_behind", 120, || {
        let base = threads_now();
        for round in 0..common::pick(2000, 5) {
            let pool = Arc::new(ThreadPool::with_workers(1 + round % 2));
            match round % 4 {
                0 => {
                    let p = Arc::clone(&pool);
                    let v = pool.apply(move || p.apply_async(|| 5).get().unwrap());
                    assert_eq!(v, 5);
                }
                1 => {
                    let mut it = pool.imap(|x: u64| x + 1, 0..1_000_000u64);
                    assert_eq!(it.next(), Some(1));
                }
                2 => {
                    // The last handle goes inside the pool's own task.
                    let p = Arc::clone(&pool);
                    let h = pool.apply_async(move || {
                        drop(p);
                        7
                    });
                    drop(pool);
                    assert_eq!(h.get(), Ok(7));
                    continue;
                }
                _ => {
                    pool.terminate();
                }
            }
            drop(pool);
        }
        // Pools dropped inside their own task are not joined: their
        // threads exit by themselves, soon.
        let left = common::settles_to(
            threads_now,
            base,
            Duration::from_secs(10),
            Duration::from_millis(20),
        );
        assert!(left <= base, "{left} threads left, {base} before");
    });
}
