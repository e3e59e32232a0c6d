//! Panic payloads nobody re-raises are dropped contained, everywhere.
//!
//! A panic payload is user data: its own `Drop` may panic. Wherever the
//! engine drops a payload it does not hand on (a callback that never runs,
//! a result nobody will read, a chunk's rest when a stream is dropped), a
//! payload whose `Drop` panics must neither unwind out of the engine's
//! bookkeeping (a task left claimed but never done: its `get` would hang)
//! nor abort the process (a second panic while the thread unwinds).
//!
//! Each case runs in a child process (an abort must fail the test, not
//! kill the test binary) under a deadline (a hang must fail it too).

#[path = "common/child.rs"]
mod child;
mod common;

use common::{BombDrop, PayloadBomb};
use parpool::{TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn bombs() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A mapped function making one bomb result per item, counted in `made`;
/// the bombs count their drops in `drops`.
fn make_bombs(
    made: &Arc<AtomicUsize>,
    drops: &Arc<AtomicUsize>,
) -> impl Fn(u32) -> BombDrop + Send + Sync + 'static {
    let (made, drops) = (Arc::clone(made), Arc::clone(drops));
    move |_| {
        made.fetch_add(1, Ordering::SeqCst);
        BombDrop(Arc::clone(&drops))
    }
}

/// Every result made but the one the test forgot was dropped, once; and
/// there were some to drop.
fn assert_dropped_all_but_one(made: &AtomicUsize, drops: &AtomicUsize, what: &str) {
    let made = made.load(Ordering::SeqCst);
    assert!(
        made >= 2,
        "{what}: only {made} result(s) made, nothing left unread"
    );
    assert_eq!(drops.load(Ordering::SeqCst), made - 1, "{what}");
}

/// A callback that never runs (`on_error` of a task that succeeds) is
/// dropped by the worker completing the task, before the task is marked
/// done: its `Drop` panicking with a bomb payload must not leave the task
/// claimed forever.
#[test]
fn an_unrun_callback_whose_drop_panics_with_a_bomb_does_not_hang_get() {
    child::run(
        "an_unrun_callback_whose_drop_panics_with_a_bomb_does_not_hang_get",
        20,
        || {
            let pool = ThreadPool::with_workers(1);
            let drops = bombs();
            let bomb = BombDrop(Arc::clone(&drops));
            let ok = pool.apply_async(|| 7).on_error(move |_| {
                let _b = &bomb;
            });
            assert_eq!(ok.get(), Ok(7));
            let bomb = BombDrop(Arc::clone(&drops));
            let failing = pool
                .apply_async(|| -> i32 { panic!("EXPECTED task") })
                .on_success(move |_| {
                    let _b = &bomb;
                });
            assert!(matches!(failing.get(), Err(TaskError::Panicked(_))));
            assert_eq!(drops.load(Ordering::SeqCst), 2);
            assert_eq!(pool.apply(|| 1), 1, "the pool still works");
        },
    );
}

/// An ordered stream dropped while its consumer unwinds, with results
/// ready that nobody will read (whole chunks waiting in the window, and the
/// rest of the chunk being handed out), each panicking with a bomb payload
/// when dropped: the consumer's panic reaches its caller, nothing aborts.
#[test]
fn an_imap_dropped_while_unwinding_with_bomb_results_does_not_abort() {
    child::run(
        "an_imap_dropped_while_unwinding_with_bomb_results_does_not_abort",
        20,
        || {
            for chunk in [1, 4] {
                let pool = ThreadPool::with_workers(2);
                let (made, drops) = (bombs(), bombs());
                let f = make_bombs(&made, &drops);
                let r = catch_unwind(AssertUnwindSafe(|| {
                    let mut it = pool.imap(f, 0..16).chunksize(chunk);
                    let first = it.next().expect("a first result");
                    std::mem::forget(first);
                    // Let the workers deliver more chunks into the window.
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("EXPECTED consumer");
                }));
                let msg = common::panic_message(&*r.expect_err("the consumer's panic"));
                assert!(msg.contains("EXPECTED consumer"), "{msg}");
                pool.close();
                pool.join();
                assert_dropped_all_but_one(&made, &drops, &format!("chunksize {chunk}"));
            }
        },
    );
}

/// The same stream dropped normally: dropping it does not panic, and every
/// unread result is dropped once.
#[test]
fn an_imap_dropped_with_bomb_results_does_not_panic() {
    child::run(
        "an_imap_dropped_with_bomb_results_does_not_panic",
        20,
        || {
            for chunk in [1, 4] {
                for unordered in [false, true] {
                    let pool = ThreadPool::with_workers(2);
                    let (made, drops) = (bombs(), bombs());
                    let f = make_bombs(&made, &drops);
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        let first = if unordered {
                            let mut it = pool.imap_unordered(f, 0..16).chunksize(chunk);
                            let first = it.next();
                            std::thread::sleep(Duration::from_millis(100));
                            drop(it);
                            first
                        } else {
                            let mut it = pool.imap(f, 0..16).chunksize(chunk);
                            let first = it.next();
                            std::thread::sleep(Duration::from_millis(100));
                            drop(it);
                            first
                        };
                        std::mem::forget(first.expect("a first result"));
                    }));
                    assert!(
                        r.is_ok(),
                        "dropping the stream panicked (chunksize {chunk})"
                    );
                    pool.close();
                    pool.join();
                    let what = format!("chunksize {chunk}, unordered {unordered}");
                    assert_dropped_all_but_one(&made, &drops, &what);
                }
            }
        },
    );
}

/// Results delivered after the stream was dropped (a slow credit still
/// out) go to the stream's exchange, which drops them when its last
/// reference goes, on a worker: a bomb payload there must not stop it
/// from dropping the other results, or kill the worker.
#[test]
fn late_bomb_results_of_a_dropped_stream_are_all_dropped() {
    child::run(
        "late_bomb_results_of_a_dropped_stream_are_all_dropped",
        20,
        || {
            let pool = ThreadPool::with_workers(2);
            let (made, drops) = (bombs(), bombs());
            let bomb = make_bombs(&made, &drops);
            let (started_tx, started) = std::sync::mpsc::channel();
            let mut it = pool
                .imap(
                    move |i: u32| {
                        if i > 0 {
                            let _ = started_tx.send(());
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        bomb(i)
                    },
                    0..5,
                )
                .chunksize(1);
            std::mem::forget(it.next().expect("a first result"));
            // A later item is being mapped: its result arrives after the drop.
            started.recv().unwrap();
            drop(it);
            pool.close();
            pool.join();
            assert_dropped_all_but_one(&made, &drops, "late results");
            let fresh = ThreadPool::with_workers(1);
            assert_eq!(fresh.apply(|| 1), 1);
        },
    );
}

/// `get`, `get_timeout` and awaiting report a task's panic as
/// `TaskError::Panicked` and drop its payload themselves: a payload whose
/// `Drop` panics must not turn that error into a panic of the caller.
#[test]
fn get_reports_a_bomb_payload_as_an_error_without_panicking() {
    child::run(
        "get_reports_a_bomb_payload_as_an_error_without_panicking",
        20,
        || {
            let pool = ThreadPool::with_workers(1);
            let bomb = || -> u8 { std::panic::panic_any(PayloadBomb) };
            let r = catch_unwind(AssertUnwindSafe(|| pool.apply_async(bomb).get()));
            assert!(matches!(r, Ok(Err(TaskError::Panicked(_)))), "get: {r:?}");
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.apply_async(bomb).get_timeout(Duration::from_secs(10))
            }));
            assert!(
                matches!(r, Ok(Err(TaskError::Panicked(_)))),
                "get_timeout: {r:?}"
            );
            let r = catch_unwind(AssertUnwindSafe(|| {
                futures_lite_block_on(pool.apply_async(bomb))
            }));
            assert!(matches!(r, Ok(Err(TaskError::Panicked(_)))), "await: {r:?}");
            assert_eq!(pool.apply(|| 1), 1);
        },
    );
}

/// Polls a future to completion on this thread (a minimal executor: the
/// waker unparks the thread).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// `cancel` called while the caller unwinds (from a guard's `Drop`), on a
/// queued task whose closure's `Drop` panics with a bomb payload: the
/// closure's panic would be re-raised, but not on an unwinding thread,
/// where it is discarded; the caller's own panic arrives, nothing aborts.
#[test]
fn cancel_while_unwinding_discards_a_closure_bomb() {
    child::run("cancel_while_unwinding_discards_a_closure_bomb", 20, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release_tx) = common::occupy_the_worker(&pool);
        let drops = bombs();
        let bomb = BombDrop(Arc::clone(&drops));
        let queued = pool.apply_async(move || {
            let _b = &bomb;
        });
        struct CancelOnDrop(parpool::AsyncResult<()>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                assert!(self.0.cancel(), "the task was still queued");
            }
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _guard = CancelOnDrop(queued);
            panic!("EXPECTED caller");
        }));
        let msg = common::panic_message(&*r.expect_err("the caller's panic"));
        assert!(msg.contains("EXPECTED caller"), "{msg}");
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        release_tx.send(()).unwrap();
        assert_eq!(blocker.get(), Ok(()));
        assert_eq!(pool.apply(|| 1), 1);
    });
}

/// An input that still holds an item whose `Drop` panics with a bomb
/// payload.
struct BombInput {
    left: u32,
    _held: BombDrop,
}

impl Iterator for BombInput {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        self.left = self.left.checked_sub(1)?;
        Some(self.left)
    }
}

/// A stream outside a scope whose consumer panics (in `for_each`) while
/// the unread input holds a bomb: the input is dropped with the stream's
/// last reference, on the unwinding consumer or on a worker; on neither may
/// its panic abort the process.
#[test]
fn an_unread_bomb_input_dropped_while_the_consumer_unwinds_does_not_abort() {
    child::run(
        "an_unread_bomb_input_dropped_while_the_consumer_unwinds_does_not_abort",
        30,
        || {
            for round in 0..20 {
                let pool = ThreadPool::with_workers(2);
                let drops = bombs();
                let input = BombInput {
                    left: 1_000_000,
                    _held: BombDrop(Arc::clone(&drops)),
                };
                let r = catch_unwind(AssertUnwindSafe(|| {
                    pool.imap(|x: u32| x, input)
                        .chunksize(1 + round % 3)
                        .for_each(|x| assert_eq!(x, u32::MAX, "EXPECTED consumer"))
                }));
                let msg = common::panic_message(&*r.expect_err("the consumer's panic"));
                assert!(msg.contains("EXPECTED consumer"), "{msg}");
                pool.close();
                pool.join();
                assert_eq!(drops.load(Ordering::SeqCst), 1, "round {round}");
            }
        },
    );
}

/// `terminate` called from a guard's `Drop` while a scope's body unwinds
/// drains the scope's queued task, whose closure's `Drop` panics with a
/// bomb payload: the body's panic arrives, nothing aborts. (A neighbour of
/// the cases above, which already held before `Payload`: the scope takes
/// that panic.)
#[test]
fn a_scope_task_drained_while_the_body_unwinds_contains_its_bomb() {
    child::run(
        "a_scope_task_drained_while_the_body_unwinds_contains_its_bomb",
        20,
        || {
            let pool = ThreadPool::with_workers(1);
            let (blocker, release_tx) = common::occupy_the_worker(&pool);
            let drops = bombs();
            struct TerminateOnDrop<'p>(&'p ThreadPool, std::sync::mpsc::Sender<()>);
            impl Drop for TerminateOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.terminate();
                    let _ = self.1.send(());
                }
            }
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    let bomb = BombDrop(Arc::clone(&drops));
                    s.spawn(move || {
                        let _b = &bomb;
                    });
                    let _guard = TerminateOnDrop(&pool, release_tx.clone());
                    panic!("EXPECTED body");
                })
            }));
            let msg = common::panic_message(&*r.expect_err("the body's panic"));
            assert!(msg.contains("EXPECTED body"), "{msg}");
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            assert_eq!(blocker.get(), Ok(()));
            pool.join();
        },
    );
}
