//! The lock-free outcome of a single task (`async_result.rs`): written once
//! by the claimer before `DONE`, read through the handle after it. These
//! tests race every handle operation that reads or takes the outcome against
//! the claimer (a worker, `cancel`, a waiter inlining it) and against other
//! readers, and count each result's drops. Sizes are small so Miri (with
//! several seeds) can check them for data races and leaks.
mod common;

use common::guard;
use parpool::{TaskError, ThreadPool};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

const ROUNDS: usize = if cfg!(miri) { 4 } else { 200 };

/// `successful()` and `ready()` from two threads through `&AsyncResult`
/// while the worker runs the task's callbacks and publishes the outcome;
/// then `get` takes it.
#[test]
fn successful_from_two_threads_while_the_callbacks_run() {
    guard(120, || {
        let pool = ThreadPool::with_workers(2);
        for round in 0..ROUNDS {
            let runs = Arc::new(AtomicUsize::new(0));
            let r = Arc::clone(&runs);
            let h = pool
                .apply_async(move || vec![round; 3])
                .on_success(move |v| {
                    assert_eq!(v.len(), 3);
                    r.fetch_add(1, Ordering::SeqCst);
                });
            std::thread::scope(|t| {
                for _ in 0..2 {
                    t.spawn(|| loop {
                        match h.successful() {
                            Some(ok) => {
                                assert!(ok);
                                assert!(h.ready());
                                break;
                            }
                            None => std::thread::yield_now(),
                        }
                    });
                }
            });
            assert_eq!(runs.load(Ordering::SeqCst), 1, "the callback ran once");
            assert_eq!(h.get(), Ok(vec![round; 3]));
        }
    });
}

/// `on_success` / `on_error` registered while the task completes: each
/// callback runs exactly once, whichever side wins.
#[test]
fn callbacks_registered_while_the_task_completes_run_once() {
    guard(120, || {
        let pool = ThreadPool::with_workers(2);
        let ok = Arc::new(AtomicUsize::new(0));
        let err = Arc::new(AtomicUsize::new(0));
        for round in 0..ROUNDS {
            let fail = round % 2 == 1;
            let (o, e) = (Arc::clone(&ok), Arc::clone(&err));
            let h = pool
                .apply_async(move || {
                    if fail {
                        std::panic::panic_any("EXPECTED: failing task".to_owned());
                    }
                    String::from("v")
                })
                .on_success(move |v| {
                    assert_eq!(v, "v");
                    o.fetch_add(1, Ordering::SeqCst);
                })
                .on_error(move |_| {
                    e.fetch_add(1, Ordering::SeqCst);
                });
            assert_eq!(h.get().is_ok(), !fail);
        }
        assert_eq!(ok.load(Ordering::SeqCst), ROUNDS / 2);
        assert_eq!(err.load(Ordering::SeqCst), ROUNDS / 2);
    });
}

/// Handles dropped before, while and after their task runs: every result is
/// dropped exactly once (by the handle or, orphaned, by the claimer), and
/// none is left behind once the pool is joined.
#[test]
fn results_of_dropped_handles_are_dropped_once() {
    guard(120, || {
        let token = Arc::new(());
        let pool = ThreadPool::with_workers(2);
        for round in 0..ROUNDS {
            let t = Arc::clone(&token);
            let h = pool.apply_async(move || {
                if round % 3 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                t
            });
            match round % 4 {
                0 => drop(h),
                1 => {
                    h.wait();
                    drop(h);
                }
                2 => {
                    let mut h = h;
                    let _ = h.get_timeout(Duration::ZERO);
                    drop(h);
                }
                _ => {
                    let mut h = h;
                    let got = h.get_timeout(Duration::from_secs(30)).unwrap();
                    assert_eq!(h.successful(), Some(true));
                    drop(got);
                    drop(h);
                }
            }
        }
        pool.close();
        pool.join();
        assert_eq!(Arc::strong_count(&token), 1, "a result leaked");
    });
}

/// `cancel` racing the worker's claim: exactly one wins, the handle reports
/// it, and the closure and result are each dropped once.
#[test]
fn cancel_racing_the_start_settles_once() {
    guard(120, || {
        let token = Arc::new(());
        let pool = ThreadPool::with_workers(2);
        let (mut cancelled, mut ran) = (0, 0);
        for _ in 0..ROUNDS {
            let t = Arc::clone(&token);
            let h = pool.apply_async(move || t);
            let won = h.cancel();
            match h.get() {
                Err(TaskError::Cancelled) => {
                    assert!(won);
                    cancelled += 1;
                }
                Ok(t) => {
                    assert!(!won);
                    ran += 1;
                    drop(t);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(cancelled + ran, ROUNDS);
        pool.close();
        pool.join();
        assert_eq!(Arc::strong_count(&token), 1, "a closure or result leaked");
    });
}

struct Flag(AtomicUsize);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polling a handle as a `Future` while the worker completes it, then once
/// more after `Ready`: the value comes out once; a poll after `Ready`
/// panics (allowed for a `Future`) rather than reading a taken outcome.
#[test]
fn polling_while_the_task_completes_yields_the_value_once() {
    guard(120, || {
        common::quiet_panics();
        let pool = ThreadPool::with_workers(1);
        for round in 0..ROUNDS {
            let flag = Arc::new(Flag(AtomicUsize::new(0)));
            let waker = Waker::from(Arc::clone(&flag));
            let mut cx = Context::from_waker(&waker);
            let mut h = pool.apply_async(move || round);
            let v = loop {
                match Pin::new(&mut h).poll(&mut cx) {
                    Poll::Ready(v) => break v,
                    Poll::Pending => std::thread::yield_now(),
                }
            };
            assert_eq!(v, Ok(round));
            assert_eq!(h.successful(), Some(true));
            if round == 0 {
                let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _ = Pin::new(&mut h).poll(&mut cx);
                }));
                assert!(again.is_err(), "a poll after Ready panics");
            }
        }
    });
}

/// A scoped task's panic, its handle dropped while the task may be running
/// (by the worker) or already done (by the handle): handed to the scope and
/// re-raised when the scope ends, every time; observed through
/// `successful()` first, it is not.
#[test]
fn scoped_unobserved_panics_reach_the_scope_whoever_drops_them() {
    guard(120, || {
        common::quiet_panics();
        let pool = ThreadPool::with_workers(2);
        for round in 0..ROUNDS {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.scope(|s| {
                    let h = s.apply_async(move || -> u8 {
                        if round % 2 == 0 {
                            std::thread::yield_now();
                        }
                        std::panic::panic_any(format!("EXPECTED: scoped {round}"))
                    });
                    if round % 3 == 0 {
                        h.wait();
                    }
                    drop(h);
                })
            }));
            let p = r.expect_err("the scope re-raises the unobserved panic");
            assert_eq!(
                common::panic_message(p.as_ref()),
                format!("EXPECTED: scoped {round}")
            );
            // Observed: the scope ends normally.
            pool.scope(|s| {
                let h = s.apply_async(|| -> u8 { panic!("EXPECTED: observed") });
                h.wait();
                assert_eq!(h.successful(), Some(false));
            });
        }
    });
}

/// A handle sent to another thread and dropped there while its task (which
/// borrows the scope's data) runs: its result, which borrows too, is dropped
/// before the scope ends.
#[test]
fn a_scoped_result_never_outlives_its_scope() {
    guard(120, || {
        struct Borrowing<'a>(&'a AtomicUsize);
        impl Drop for Borrowing<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let pool = ThreadPool::with_workers(2);
        for _ in 0..ROUNDS {
            let drops = AtomicUsize::new(0);
            pool.scope(|s| {
                let (tx, rx) = mpsc::channel();
                let h = s.apply_async(|| Borrowing(&drops));
                tx.send(h).unwrap();
                std::thread::scope(|t| {
                    t.spawn(move || drop(rx.recv().unwrap()));
                });
                s.apply_async(|| Borrowing(&drops)).wait();
            });
            assert_eq!(drops.load(Ordering::SeqCst), 2, "dropped within the scope");
        }
    });
}
