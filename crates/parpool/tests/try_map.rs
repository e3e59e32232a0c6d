//! Fallible maps: `try_map` returns the error at the earliest failing input
//! position whatever the timing, starts no input after a failure, and
//! `imap(..).collect::<Result<Vec<_>, _>>()` short-circuits and cancels the
//! rest when the iterator is dropped.

mod common;

use common::guard;
use parpool::ThreadPool;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const N: usize = 300;

/// `Err(i)` at every position in `failing`, `Ok(i * 2)` elsewhere.
fn run(pool: &ThreadPool, chunk: Option<usize>, failing: &[usize]) -> Result<Vec<usize>, usize> {
    let f = |i: usize| {
        if failing.contains(&i) {
            Err(i)
        } else {
            Ok(i * 2)
        }
    };
    match chunk {
        None => pool.try_map(f, 0..N),
        Some(c) => pool.chunked(c).try_map(f, 0..N),
    }
}

#[test]
fn try_map_without_failure_returns_every_result_in_order() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        for chunk in [None, Some(1), Some(7)] {
            let out = run(&pool, chunk, &[]);
            assert_eq!(out, Ok((0..N).map(|i| i * 2).collect::<Vec<_>>()));
        }
        // Borrowed inputs, borrowed closure state.
        let words = vec!["1", "22", "333"];
        let base = 1000usize;
        let parsed = pool.try_map(|w: &&str| w.parse::<usize>().map(|n| n + base), &words);
        assert_eq!(parsed, Ok(vec![1001, 1022, 1333]));
    });
}

#[test]
fn try_map_failure_at_first_middle_and_last_position() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for _ in 0..10 {
            for chunk in [None, Some(1), Some(7)] {
                assert_eq!(run(&pool, chunk, &[0]), Err(0), "chunk {chunk:?}");
                assert_eq!(run(&pool, chunk, &[N / 2]), Err(N / 2), "chunk {chunk:?}");
                assert_eq!(run(&pool, chunk, &[N - 1]), Err(N - 1), "chunk {chunk:?}");
            }
        }
    });
}

#[test]
fn try_map_returns_the_earliest_failing_position_when_several_fail() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for _ in 0..10 {
            for chunk in [None, Some(1), Some(7)] {
                assert_eq!(run(&pool, chunk, &[0, N / 2, N - 1]), Err(0));
                assert_eq!(run(&pool, chunk, &[N / 2, N - 1]), Err(N / 2));
                assert_eq!(run(&pool, chunk, &[N - 2, N - 1]), Err(N - 2));
                let every_tenth: Vec<usize> = (5..N).step_by(10).collect();
                assert_eq!(run(&pool, chunk, &every_tenth), Err(5));
            }
        }
    });
}

#[test]
fn try_map_reports_an_earlier_slow_failure_over_a_later_fast_one() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for _ in 0..5 {
            // Input 3 fails only after 40 ms; inputs 150 and 299 fail at once,
            // so they are (very likely) recorded first. The error returned
            // must still be input 3's: earlier inputs keep running.
            let out = pool.chunked(1).try_map(
                |i: usize| {
                    if i == 3 {
                        std::thread::sleep(Duration::from_millis(40));
                        return Err(format!("input {i}"));
                    }
                    if i == 150 || i == 299 {
                        return Err(format!("input {i}"));
                    }
                    Ok(i)
                },
                0..300usize,
            );
            assert_eq!(out, Err("input 3".to_string()));
        }
    });
}

#[test]
fn try_map_runs_every_input_before_the_failure() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for chunk in [1, 5] {
            let started = Mutex::new(BTreeSet::new());
            let k = 40;
            let out = pool.chunked(chunk).try_map(
                |i: usize| {
                    started.lock().unwrap().insert(i);
                    if i == k {
                        return Err(i);
                    }
                    // Items before `k` are slow, so the failure is seen first.
                    if i < k {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(i)
                },
                0..1000usize,
            );
            assert_eq!(out, Err(k));
            let started = started.into_inner().unwrap();
            // Documented: inputs before the failure still run.
            for i in 0..=k {
                assert!(started.contains(&i), "input {i} < {k} did not run");
            }
        }
    });
}

/// With the pool's only worker busy, the calling thread runs every item of a
/// `try_map` itself, one after the other, so "no input after the failure is
/// started" is exact: the items started are precisely `0..=k`.
#[test]
fn try_map_starts_no_input_after_the_failure_single_runner() {
    guard(60, || {
        let pool = ThreadPool::with_workers(1);
        for (k, chunk) in [(0, 1), (17, 1), (17, 4), (299, 1), (299, 16)] {
            let (release, blocked) = mpsc::channel::<()>();
            let blocker = pool.apply_async(move || blocked.recv().unwrap());
            let started = Mutex::new(Vec::new());
            let out = pool.chunked(chunk).try_map(
                |i: usize| {
                    started.lock().unwrap().push(i);
                    if i == k {
                        Err(i)
                    } else {
                        Ok(i)
                    }
                },
                0..300usize,
            );
            assert_eq!(out, Err(k));
            assert_eq!(
                started.into_inner().unwrap(),
                (0..=k).collect::<Vec<_>>(),
                "k = {k}, chunk = {chunk}"
            );
            release.send(()).unwrap();
            blocker.get().unwrap();
        }
    });
}

/// With several threads, items claimed before the failure may still start,
/// but nothing far past it: after input 3 fails, the threads stop claiming.
/// (Reaching input 1000 would need 1000 ms of 1 ms items on 3 threads after
/// the failure was returned and before it was recorded.)
#[test]
fn try_map_starts_no_input_far_past_the_failure() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for _ in 0..3 {
            let max_started = AtomicUsize::new(0);
            let count = AtomicUsize::new(0);
            let out = pool.chunked(1).try_map(
                |i: usize| {
                    max_started.fetch_max(i, Ordering::SeqCst);
                    count.fetch_add(1, Ordering::SeqCst);
                    if i == 3 {
                        return Err(i);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    Ok(i)
                },
                0..4000usize,
            );
            assert_eq!(out, Err(3));
            let max = max_started.load(Ordering::SeqCst);
            assert!(max < 1000, "input {max} started after input 3 failed");
            assert!(count.load(Ordering::SeqCst) < 1000);
        }
    });
}

#[test]
fn try_map_with_owned_inputs_drops_every_input_on_failure() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let live = Arc::new(AtomicUsize::new(0));
        struct Tracked(Arc<AtomicUsize>, usize);
        impl Drop for Tracked {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let inputs: Vec<Tracked> = (0..500)
            .map(|i| {
                live.fetch_add(1, Ordering::SeqCst);
                Tracked(Arc::clone(&live), i)
            })
            .collect();
        let out = pool.try_map(
            |t: Tracked| if t.1 == 123 { Err(t.1) } else { Ok(t) },
            inputs,
        );
        assert_eq!(out.err(), Some(123));
        // Inputs never started, results already produced: all dropped.
        assert_eq!(live.load(Ordering::SeqCst), 0);
    });
}

/// The module docs of `cancelled` promise it turns true "after a `try_map`
/// saw an earlier failure", so a long item can stop early.
#[test]
fn cancelled_turns_true_inside_try_map_after_an_earlier_failure() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let saw_cancel = AtomicBool::new(false);
        let long_items = AtomicUsize::new(0);
        let out = pool.chunked(1).try_map(
            |i: usize| {
                if i == 0 {
                    // Fail only once a later item is running.
                    while long_items.load(Ordering::SeqCst) == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    return Err("first input failed");
                }
                long_items.fetch_add(1, Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if parpool::cancelled() {
                        saw_cancel.store(true, Ordering::SeqCst);
                        return Ok(i);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(i)
            },
            0..2usize,
        );
        assert_eq!(out, Err("first input failed"));
        assert!(
            saw_cancel.load(Ordering::SeqCst),
            "a running item never saw cancelled() after an earlier input failed"
        );
    });
}

#[test]
fn imap_collect_into_result_short_circuits_and_cancels_the_rest() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        let total = 1_000_000usize;
        // Items take at least 10 µs, so automatic chunks stay small and the
        // default read-ahead (4 chunks per worker) is a few dozen items. (For
        // items of a few ns, chunks grow to thousands of items, and so does
        // the read-ahead: still bounded, but not "well below" a short input.)
        let out: Result<Vec<usize>, String> = pool
            .imap(
                move |i: usize| {
                    r.fetch_add(1, Ordering::SeqCst);
                    if i == 5 {
                        return Err(format!("input {i}"));
                    }
                    std::thread::sleep(Duration::from_micros(10));
                    Ok(i)
                },
                0..total,
            )
            .collect();
        assert_eq!(out, Err("input 5".to_string()));
        // Let every queued chunk run or be cancelled, then count.
        pool.close();
        pool.join();
        let ran = ran.load(Ordering::SeqCst);
        assert!(
            ran < total / 100,
            "{ran} of {total} items ran after a failure at input 5"
        );
    });
}

#[test]
fn imap_collect_into_result_with_a_buffer_runs_at_most_the_buffer_past_the_failure() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        let out: Result<Vec<usize>, usize> = pool
            .imap(
                move |i: usize| {
                    r.fetch_add(1, Ordering::SeqCst);
                    if i == 50 {
                        Err(i)
                    } else {
                        Ok(i)
                    }
                },
                0..100_000usize,
            )
            .chunksize(1)
            .buffer(16)
            .collect();
        assert_eq!(out, Err(50));
        pool.close();
        pool.join();
        // 51 items consumed, at most 16 read ahead of the consumer.
        let ran = ran.load(Ordering::SeqCst);
        assert!(ran <= 51 + 16, "{ran} items ran");
    });
}

#[test]
fn imap_collect_into_result_stops_slow_items_after_the_failure() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        let out: Result<Vec<usize>, usize> = pool
            .imap(
                move |i: usize| {
                    r.fetch_add(1, Ordering::SeqCst);
                    if i == 2 {
                        return Err(i);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    Ok(i)
                },
                0..2_000usize,
            )
            .collect();
        assert_eq!(out, Err(2));
        pool.close();
        pool.join();
        let ran = ran.load(Ordering::SeqCst);
        assert!(
            ran < 200,
            "{ran} of 2000 slow items ran after a failure at input 2"
        );
    });
}
