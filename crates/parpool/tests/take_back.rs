//! An imap's consumer runs credits no worker has started instead of
//! waiting for them (`imap/takeback.rs`): over inputs that never wait, on
//! a pool without an initializer, in untimed waits only.

mod common;
use common::{guard, occupy_the_worker, pick, quiet_panics};
use parpool::ThreadPool;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

/// Every thread `f` ran on, by item.
fn threads_of(n: u64) -> Arc<Mutex<Vec<ThreadId>>> {
    Arc::new(Mutex::new(Vec::with_capacity(n as usize)))
}

/// A counter of calls made on this thread, and the function that counts
/// a call if it runs here.
fn calls_here() -> (Arc<AtomicUsize>, impl Fn() + Send + Sync + Clone + 'static) {
    let me = thread::current().id();
    let here = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&here);
    (here, move || {
        if thread::current().id() == me {
            count.fetch_add(1, Ordering::SeqCst);
        }
    })
}

#[test]
fn a_stream_whose_only_worker_is_busy_is_run_by_its_consumer() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let n = pick(100_000, 300) as u64;
        let ran_on = threads_of(n);
        let seen = Arc::clone(&ran_on);
        let me = thread::current().id();
        let got: Vec<u64> = pool
            .imap(
                move |x: u64| {
                    seen.lock().unwrap().push(thread::current().id());
                    x * 3
                },
                0..n,
            )
            .collect();
        assert_eq!(got, (0..n).map(|x| x * 3).collect::<Vec<_>>());
        // The worker never got out of the blocker: the consumer ran it all.
        assert!(ran_on.lock().unwrap().iter().all(|t| *t == me));
        // Credits it took back stay taken: the worker runs none of them.
        release.send(()).unwrap();
        blocker.get().unwrap();
        pool.close();
        pool.join();
        assert_eq!(ran_on.lock().unwrap().len(), n as usize);
    });
}

#[test]
fn unordered_and_internal_iteration_take_credits_back_too() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let n = pick(50_000, 200) as u64;
        let mut got: Vec<u64> = pool.imap_unordered(|x: u64| x + 1, 0..n).collect();
        got.sort_unstable();
        assert_eq!(got, (1..=n).collect::<Vec<_>>());
        let sum = pool
            .imap(|x: u64| x, 0..n)
            .fold(0u64, |a, x| a.wrapping_add(x));
        assert_eq!(sum, n * (n - 1) / 2);
        let batches: usize = pool.imap(|x: u64| x, 0..n).batches().map(|b| b.len()).sum();
        assert_eq!(batches, n as usize);
        release.send(()).unwrap();
        blocker.get().unwrap();
    });
}

#[test]
fn a_timed_wait_never_runs_a_credit_on_the_caller() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let (on_caller, count) = calls_here();
        let mut it = pool.imap(
            move |x: u64| {
                count();
                x
            },
            0..1000u64,
        );
        assert_eq!(
            it.next_timeout(Duration::from_millis(50)),
            Err(parpool::TaskError::Timeout)
        );
        release.send(()).unwrap();
        blocker.get().unwrap();
        // Now the worker runs the queued credits; the deadline-bound calls
        // still never run one here.
        let mut got = Vec::new();
        while let Some(x) = it.next_timeout(Duration::from_secs(10)).unwrap() {
            got.push(x);
        }
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert_eq!(on_caller.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn an_input_that_may_wait_is_never_read_by_the_consumer() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let (read_here, count) = calls_here();
        // An adapter may call anything, so it may wait: not taken back.
        let input = (0..2000u64).inspect(move |_| count());
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            release.send(()).unwrap();
        });
        let got: Vec<u64> = pool.imap(|x: u64| x, input).collect();
        assert_eq!(got, (0..2000).collect::<Vec<_>>());
        assert_eq!(read_here.load(Ordering::SeqCst), 0);
        releaser.join().unwrap();
        blocker.get().unwrap();
    });
}

thread_local! {
    static INITIALIZED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[test]
fn a_pool_with_an_initializer_keeps_f_on_its_threads() {
    guard(30, || {
        let pool = ThreadPool::builder()
            .workers(1)
            .initializer(|| INITIALIZED.with(|i| i.set(true)))
            .build()
            .unwrap();
        let (blocker, release) = occupy_the_worker(&pool);
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            release.send(()).unwrap();
        });
        let n = pick(100_000, 300) as u64;
        // `f` counts on the initializer's state: on the consumer it panics.
        let got: u64 = pool
            .imap(
                |x: u64| {
                    assert!(INITIALIZED.with(|i| i.get()), "f ran off the pool");
                    x
                },
                0..n,
            )
            .sum();
        assert_eq!(got, n * (n - 1) / 2);
        releaser.join().unwrap();
        blocker.get().unwrap();
    });
}

#[test]
fn a_panic_in_a_credit_taken_back_comes_in_order() {
    quiet_panics();
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let mut got = Vec::new();
        let out = catch_unwind(AssertUnwindSafe(|| {
            for x in pool.imap(
                |x: u64| {
                    assert!(x != 700, "item 700");
                    x
                },
                0..5000u64,
            ) {
                got.push(x);
            }
        }));
        let msg = common::panic_message(&*out.expect_err("item 700 panicked"));
        assert!(msg.contains("item 700"), "{msg}");
        assert_eq!(got, (0..700).collect::<Vec<_>>());
        release.send(()).unwrap();
        blocker.get().unwrap();
        // The pool is fine afterwards.
        assert_eq!(pool.imap(|x: u64| x, 0..10u64).count(), 10);
    });
}

#[test]
fn a_nested_stream_on_a_one_worker_pool_runs_on_its_consumer() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let inner = Arc::clone(&pool);
        let n = pick(20_000, 100) as u64;
        let sum = pool.apply(move || inner.imap(|x: u64| x * 2, 0..n).sum::<u64>());
        assert_eq!(sum, n * (n - 1));
    });
}

/// Taking back races with `terminate` draining the queue and with workers
/// popping the same credits: every stream ends complete or cancelled, never
/// hangs, and yields an in-order prefix.
#[test]
fn taking_back_races_with_terminate_and_workers() {
    quiet_panics();
    guard(60, || {
        for round in 0..pick(200, 4) {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let stop = Arc::new(AtomicBool::new(false));
            let killer = {
                let (pool, stop) = (Arc::clone(&pool), Arc::clone(&stop));
                thread::spawn(move || {
                    thread::sleep(Duration::from_micros(50 * (round % 20) as u64));
                    if !stop.load(Ordering::SeqCst) {
                        pool.terminate();
                    }
                })
            };
            let n = pick(200_000, 500) as u64;
            let mut got = Vec::new();
            let out = catch_unwind(AssertUnwindSafe(|| {
                for x in pool.imap(|x: u64| x, 0..n) {
                    got.push(x);
                }
            }));
            stop.store(true, Ordering::SeqCst);
            killer.join().unwrap();
            let len = got.len() as u64;
            assert!(
                got.iter().copied().eq(0..len),
                "round {round}: not a prefix"
            );
            match out {
                Ok(()) => assert_eq!(len, n, "round {round}: ended early without an error"),
                Err(p) => {
                    let msg = common::panic_message(&*p);
                    assert!(
                        msg.contains("Cancelled") || msg.contains("cancelled"),
                        "{msg}"
                    );
                }
            }
            pool.terminate();
            pool.join();
        }
    });
}

/// The consumer takes back only the credit that reads the chunk it waits
/// for: while a worker maps that chunk, no later item's `f` runs on the
/// consumer (it might wait for what the caller does after the item it
/// waits for), in either kind of imap.
#[test]
fn no_item_after_the_wanted_one_runs_on_the_consumer() {
    guard(30, || {
        for ordered in [true, false] {
            let pool = ThreadPool::with_workers(1);
            let (later_here, count) = calls_here();
            let release = Arc::new(AtomicBool::new(false));
            let gate = Arc::clone(&release);
            let f = move |x: u64| {
                if x == 0 {
                    while !gate.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(1));
                    }
                } else {
                    count();
                }
                x
            };
            let mut it: Box<dyn Iterator<Item = u64>> = if ordered {
                let mut it = pool.imap(f, 0..50u64).chunksize(1).buffer(4);
                // Issues the credits without taking one back; the worker
                // starts on item 0 and holds it.
                assert!(it.next_timeout(Duration::ZERO).is_err());
                Box::new(it)
            } else {
                let mut it = pool.imap_unordered(f, 0..50u64).chunksize(1).buffer(4);
                assert!(it.next_timeout(Duration::ZERO).is_err());
                Box::new(it)
            };
            thread::sleep(Duration::from_millis(50));
            let releaser = {
                let release = Arc::clone(&release);
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(150));
                    release.store(true, Ordering::SeqCst);
                })
            };
            assert_eq!(it.next(), Some(0));
            assert_eq!(later_here.load(Ordering::SeqCst), 0, "ordered: {ordered}");
            releaser.join().unwrap();
            let mut rest: Vec<u64> = it.collect();
            rest.sort_unstable();
            assert_eq!(rest, (1..50).collect::<Vec<_>>());
        }
    });
}
