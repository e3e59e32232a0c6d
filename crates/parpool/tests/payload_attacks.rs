//! Attacks on panic containment: user code (a mapped function's `Drop`, a
//! result's `Drop`, a panic payload's `Drop`) that panics where the engine
//! lets a value go during an unwinding, or lets a payload go.
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

/// Counts its drops; its `Drop` then panics (with a plain message).
struct Boom(Arc<AtomicUsize>);

impl Drop for Boom {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("EXPECTED: Boom dropped");
    }
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A mapped function that holds `bomb` (so its `Drop` panics) and makes
/// a [`Boom`] result per item, counted in `results`.
fn booming_f(bomb: Boom, results: &Arc<AtomicUsize>) -> impl Fn(u32) -> Boom + Send + Sync {
    let results = Arc::clone(results);
    move |_| {
        let _k = &bomb;
        Boom(Arc::clone(&results))
    }
}

/// A mapped function that holds `bomb` and panics on item 1.
fn panics_on_item_1(bomb: Boom) -> impl Fn(u32) -> u32 + Send + Sync {
    move |x| {
        let _k = &bomb;
        if x == 1 {
            panic!("EXPECTED item");
        }
        x
    }
}

// ---------------------------------------------------------------------------
// Were bugs: each aborted the process before `map::MapFn` and `map::MapAsync`
// ---------------------------------------------------------------------------

/// Was a bug, fixed by `map::MapFn` and `map::MapAsync`, which own a
/// map's function and a `map_async`'s captures and drop each contained.
/// A blocking `map` whose function's `Drop` panics, with results
/// whose `Drop` panics: `Chunked::map` (src/pool.rs:895) drops `f` while the
/// results are a local "so they are dropped by the unwinding"; the
/// unwinding then drops the `Vec<R>` in std's drop glue and the first
/// result's panic is a panic during a panic: the process aborts. The same
/// holds for `try_map` (src/pool.rs:931, the `Err(E)` or the `Vec<T>`),
/// `starmap` (src/pool.rs:957) and, on a worker, `map_async`
/// (src/map.rs:405, `map_async_task`). Each result's `Drop` alone, or
/// `f`'s alone, would be one ordinary panic.
#[test]
fn a_map_whose_f_and_results_panic_on_drop_does_not_abort() {
    child::run(
        "a_map_whose_f_and_results_panic_on_drop_does_not_abort",
        20,
        || {
            let pool = ThreadPool::with_workers(2);
            let (f_drops, r_drops) = (counter(), counter());
            let f_bomb = Boom(Arc::clone(&f_drops));
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.map(booming_f(f_bomb, &r_drops), 0..4u32)
            }));
            assert!(r.is_err(), "f's Drop panic reaches the caller");
            assert_eq!(f_drops.load(Ordering::SeqCst), 1);
            assert_eq!(
                r_drops.load(Ordering::SeqCst),
                4,
                "every result dropped once"
            );
        },
    );
}

/// Was a bug, fixed by `map::MapFn` and `map::MapAsync`, which own a
/// map's function and a `map_async`'s captures and drop each contained.
/// The same through `try_map` with an `Err` whose `Drop` panics.
#[test]
fn a_try_map_whose_f_and_error_panic_on_drop_does_not_abort() {
    child::run(
        "a_try_map_whose_f_and_error_panic_on_drop_does_not_abort",
        20,
        || {
            let pool = ThreadPool::with_workers(2);
            let (f_drops, e_drops) = (counter(), counter());
            let f_bomb = Boom(Arc::clone(&f_drops));
            let ed = Arc::clone(&e_drops);
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.try_map(
                    move |x: u32| {
                        let _k = &f_bomb;
                        if x == 2 {
                            Err(Boom(Arc::clone(&ed)))
                        } else {
                            Ok(x)
                        }
                    },
                    0..4u32,
                )
                .map(|_| ())
                .map_err(|_| ())
            }));
            // Either the error's or f's panic reaches the caller; nothing aborts.
            let _ = r;
            assert_eq!(f_drops.load(Ordering::SeqCst), 1);
            assert_eq!(e_drops.load(Ordering::SeqCst), 1);
        },
    );
}

/// Was a bug, fixed by `map::MapFn` and `map::MapAsync`, which own a
/// map's function and a `map_async`'s captures and drop each contained.
/// `map_async` on a worker: `map_async_task` (src/map.rs:405) drops
/// `f` with the results a local; with results that panic on drop, the
/// worker aborts the process instead of `get` reporting the panic.
#[test]
fn a_map_async_whose_f_and_results_panic_on_drop_does_not_abort() {
    child::run(
        "a_map_async_whose_f_and_results_panic_on_drop_does_not_abort",
        20,
        || {
            let pool = ThreadPool::with_workers(2);
            let (f_drops, r_drops) = (counter(), counter());
            let f_bomb = Boom(Arc::clone(&f_drops));
            let h = pool.map_async(booming_f(f_bomb, &r_drops), 0..4u32);
            let r = catch_unwind(AssertUnwindSafe(|| h.get().map(|_| ()).map_err(|_| ())));
            assert!(matches!(r, Ok(Err(()))), "get reports the panic");
            assert_eq!(f_drops.load(Ordering::SeqCst), 1);
            assert_eq!(r_drops.load(Ordering::SeqCst), 4);
            assert_eq!(pool.apply(|| 1), 1);
        },
    );
}

/// Was a bug, fixed by `map::MapFn` and `map::MapAsync`, which own a
/// map's function and a `map_async`'s captures and drop each contained.
/// A blocking `map` whose item panics re-raises that panic from
/// `run_map` (src/map.rs:536); the unwinding then leaves `Chunked::map`
/// (src/pool.rs:876), dropping its by-value `f` as a local. If `f`'s
/// `Drop` panics, that is a panic during a panic: abort. `map_async` does
/// the same on a worker (`map_async_task`, src/map.rs:393-406), so a task
/// panic there kills the process instead of reaching `get`.
#[test]
fn a_map_whose_item_panics_and_f_panics_on_drop_does_not_abort() {
    child::run(
        "a_map_whose_item_panics_and_f_panics_on_drop_does_not_abort",
        20,
        || {
            let pool = ThreadPool::with_workers(2);
            let f_drops = counter();
            let f_bomb = Boom(Arc::clone(&f_drops));
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.map(panics_on_item_1(f_bomb), 0..4u32)
            }));
            let msg = common::panic_message(&*r.expect_err("the item's panic"));
            assert!(msg.contains("EXPECTED"), "{msg}");
            assert_eq!(f_drops.load(Ordering::SeqCst), 1);
        },
    );
}

/// Was a bug, fixed by `map::MapFn` and `map::MapAsync`, which own a
/// map's function and a `map_async`'s captures and drop each contained.
/// The same through `map_async`, on a worker.
#[test]
fn a_map_async_whose_item_panics_and_f_panics_on_drop_does_not_abort() {
    child::run(
        "a_map_async_whose_item_panics_and_f_panics_on_drop_does_not_abort",
        20,
        || {
            let pool = ThreadPool::with_workers(2);
            let f_drops = counter();
            let f_bomb = Boom(Arc::clone(&f_drops));
            let h = pool.map_async(panics_on_item_1(f_bomb), 0..4u32);
            assert!(matches!(h.get(), Err(TaskError::Panicked(_))));
            assert_eq!(f_drops.load(Ordering::SeqCst), 1);
            assert_eq!(pool.apply(|| 1), 1);
        },
    );
}

/// Was a bug, fixed by `map::MapFn` and `map::MapAsync`, which own a
/// map's function and a `map_async`'s captures and drop each contained.
/// A `map_async` stopped by `terminate` unwinds with the internal
/// `CancelledMarker` (src/map.rs:386, `unwind_cancelled`), and that
/// unwinding drops `map_async_task`'s local `f` (src/map.rs:393-406). If `f`'s
/// `Drop` panics: panic during a panic, the worker aborts the process,
/// where `get` should report `Cancelled` (or the `Drop`'s panic).
#[test]
fn a_terminated_map_async_whose_f_panics_on_drop_does_not_abort() {
    child::run(
        "a_terminated_map_async_whose_f_panics_on_drop_does_not_abort",
        20,
        || {
            let pool = ThreadPool::with_workers(2);
            let f_drops = counter();
            let f_bomb = Boom(Arc::clone(&f_drops));
            let (started_tx, started) = std::sync::mpsc::channel();
            let started_tx = std::sync::Mutex::new(started_tx);
            let h = pool.chunked(1).map_async(
                move |x: u32| {
                    let _k = &f_bomb;
                    let _ = started_tx.lock().unwrap().send(());
                    std::thread::sleep(Duration::from_millis(20));
                    x
                },
                0..200u32,
            );
            started.recv().unwrap();
            pool.terminate();
            let r = h.get();
            assert!(
                matches!(r, Err(TaskError::Cancelled | TaskError::Panicked(_))),
                "{r:?}"
            );
            pool.join();
            assert_eq!(f_drops.load(Ordering::SeqCst), 1);
        },
    );
}

// ---------------------------------------------------------------------------
// Cases that hold (regression guards)
// ---------------------------------------------------------------------------

/// An initializer that panics with a bomb payload: the build reports it,
/// nothing aborts, no thread is left.
#[test]
fn an_initializer_panicking_with_a_bomb_payload_fails_the_build() {
    child::run(
        "an_initializer_panicking_with_a_bomb_payload_fails_the_build",
        20,
        || {
            let r = ThreadPool::builder()
                .workers(2)
                .initializer(|| std::panic::panic_any(PayloadBomb))
                .build();
            assert!(matches!(
                r,
                Err(parpool::BuildError::InitializerPanicked(_))
            ));
        },
    );
}

/// Callbacks whose body panics with a bomb payload: contained; `get` and
/// the pool are unharmed.
#[test]
fn callbacks_panicking_with_bomb_payloads_are_contained() {
    child::run(
        "callbacks_panicking_with_bomb_payloads_are_contained",
        20,
        || {
            let pool = ThreadPool::with_workers(1);
            let ok = pool
                .apply_async(|| 3)
                .on_success(|_| std::panic::panic_any(PayloadBomb));
            assert_eq!(ok.get(), Ok(3));
            let bad = pool
                .apply_async(|| -> u8 { panic!("EXPECTED task") })
                .on_error(|_| std::panic::panic_any(PayloadBomb));
            assert!(matches!(bad.get(), Err(TaskError::Panicked(_))));
            // Registered after the task is done: run on this thread.
            let done = pool.apply_async(|| 4);
            done.wait();
            let done = done.on_success(|_| std::panic::panic_any(PayloadBomb));
            assert_eq!(done.get(), Ok(4));
            assert_eq!(pool.apply(|| 1), 1);
        },
    );
}

/// A `map` whose inputs' `Drop` panics with a bomb payload, and an item
/// panics: the first panic reaches the caller, every input is dropped
/// once, nothing aborts.
#[test]
fn a_map_over_bomb_inputs_reports_one_panic() {
    child::run("a_map_over_bomb_inputs_reports_one_panic", 20, || {
        let pool = ThreadPool::with_workers(2);
        let (drops, calls) = (counter(), counter());
        let inputs: Vec<BombDrop> = (0..64).map(|_| BombDrop(Arc::clone(&drops))).collect();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.chunked(4).map(
                |b: BombDrop| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::mem::forget(b);
                    panic!("EXPECTED item")
                },
                inputs,
            )
        }));
        let msg = common::panic_message(&*r.expect_err("the item's panic"));
        assert!(msg.contains("EXPECTED item"), "{msg}");
        // The unused inputs were dropped once each (contained); the ones
        // `f` took (and forgot) not.
        let (drops, calls) = (drops.load(Ordering::SeqCst), calls.load(Ordering::SeqCst));
        assert_eq!(drops + calls, 64, "drops {drops}, calls {calls}");
        assert_eq!(pool.apply(|| 1), 1);
    });
}

/// An imap input whose `next` panics with a bomb payload, and whose own
/// `Drop` panics too: the consumer gets the input's panic after the items
/// before it; nothing aborts, nothing hangs.
#[test]
fn an_imap_input_panicking_with_a_bomb_payload_is_reraised() {
    child::run(
        "an_imap_input_panicking_with_a_bomb_payload_is_reraised",
        20,
        || {
            struct Input {
                n: u32,
                _held: BombDrop,
            }
            impl Iterator for Input {
                type Item = u32;
                fn next(&mut self) -> Option<u32> {
                    self.n += 1;
                    if self.n == 5 {
                        std::panic::panic_any(PayloadBomb);
                    }
                    Some(self.n)
                }
            }
            for unordered in [false, true] {
                let pool = ThreadPool::with_workers(2);
                let drops = counter();
                let input = Input {
                    n: 0,
                    _held: BombDrop(Arc::clone(&drops)),
                };
                let mut seen = 0;
                let r = catch_unwind(AssertUnwindSafe(|| {
                    if unordered {
                        for _ in pool.imap_unordered(|x: u32| x, input).chunksize(1) {
                            seen += 1;
                        }
                    } else {
                        for _ in pool.imap(|x: u32| x, input).chunksize(1) {
                            seen += 1;
                        }
                    }
                }));
                let p = r.expect_err("the input's panic");
                assert!(p.is::<PayloadBomb>(), "the input's own payload");
                std::mem::forget(p);
                assert_eq!(seen, 4);
                assert_eq!(drops.load(Ordering::SeqCst), 1);
                pool.close();
                pool.join();
            }
        },
    );
}

/// `PanicPolicy::Terminate` with a task panicking with a bomb payload
/// while another task's closure (queued, drained by that terminate) panics
/// with a bomb payload on drop: the drain is contained, handles report.
#[test]
fn terminate_policy_drains_bomb_closures_without_aborting() {
    child::run(
        "terminate_policy_drains_bomb_closures_without_aborting",
        20,
        || {
            let pool = common::terminating_on_panic(1);
            let (go_tx, go) = std::sync::mpsc::channel::<()>();
            let first = pool.apply_async(move || -> u8 {
                go.recv().unwrap();
                std::panic::panic_any(PayloadBomb)
            });
            let drops = counter();
            let bomb = BombDrop(Arc::clone(&drops));
            let queued = pool.apply_async(move || {
                let _k = &bomb;
            });
            go_tx.send(()).unwrap();
            assert!(matches!(first.get(), Err(TaskError::Panicked(_))));
            assert_eq!(queued.get(), Err(TaskError::Cancelled));
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            pool.join();
            assert!(pool.stats().panicked >= 2);
        },
    );
}

/// A scope whose spawned job panics with a bomb payload, while the body
/// returns a value whose `Drop` panics: the job's panic is re-raised, the
/// value dropped (contained); nothing aborts.
#[test]
fn a_scope_reraises_a_bomb_payload_and_drops_the_body_value() {
    child::run(
        "a_scope_reraises_a_bomb_payload_and_drops_the_body_value",
        20,
        || {
            let pool = ThreadPool::with_workers(2);
            let drops = counter();
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    s.spawn(|| std::panic::panic_any(PayloadBomb));
                    BombDrop(Arc::clone(&drops))
                })
            }));
            let p = match r {
                Err(p) => p,
                Ok(v) => {
                    std::mem::forget(v);
                    panic!("the job's panic was not re-raised");
                }
            };
            assert!(p.is::<PayloadBomb>());
            std::mem::forget(p);
            assert_eq!(drops.load(Ordering::SeqCst), 1);
        },
    );
}

/// The imap counterpart of the map bugs above holds: an item panics and
/// `f`'s `Drop` panics (with a bomb payload); `Source`'s `Drop` drops `f`
/// contained, the item's panic reaches the consumer, nothing aborts.
#[test]
fn an_imap_whose_item_panics_and_f_panics_on_drop_reraises_the_item() {
    child::run(
        "an_imap_whose_item_panics_and_f_panics_on_drop_reraises_the_item",
        20,
        || {
            for unordered in [false, true] {
                let pool = ThreadPool::with_workers(2);
                let f_drops = counter();
                let f_bomb = BombDrop(Arc::clone(&f_drops));
                let f = move |x: u32| {
                    let _k = &f_bomb;
                    if x == 3 {
                        panic!("EXPECTED item");
                    }
                    x
                };
                let r = catch_unwind(AssertUnwindSafe(|| {
                    if unordered {
                        pool.imap_unordered(f, 0..8u32).chunksize(1).count()
                    } else {
                        pool.imap(f, 0..8u32).chunksize(1).count()
                    }
                }));
                let msg = common::panic_message(&*r.expect_err("the item's panic"));
                assert!(msg.contains("EXPECTED item"), "{msg}");
                pool.close();
                pool.join();
                assert_eq!(f_drops.load(Ordering::SeqCst), 1);
            }
        },
    );
}

/// Was a bug, fixed by `map::MapFn` and `map::MapAsync`, which own a
/// map's function and a `map_async`'s captures and drop each contained.
/// `map_async` wraps the user's `f` and `inputs` in one task closure
/// (`move || map::map_async_task(&registry, inputs, chunksize, f)`,
/// src/pool.rs:983 and src/scope.rs:341). When that closure is dropped
/// unrun (a refused submission, `cancel`, a `terminate` drain), std's drop
/// glue drops both captures in one go: if the inputs' `Drop` panics (here
/// a one-item `Vec`, a single panic), `f` is then dropped by the
/// unwinding and its panicking `Drop` aborts the process. Each value alone
/// would be one contained panic (`submit::refused`, src/submit.rs:135, or
/// `drop_contained` in the drain). imap keeps the two apart (`Source`'s
/// `Drop`, src/imap/credit.rs:246), so it holds there.
#[test]
fn an_unrun_map_async_with_bomb_inputs_and_f_does_not_abort() {
    child::run(
        "an_unrun_map_async_with_bomb_inputs_and_f_does_not_abort",
        20,
        || {
            let drops = counter();
            let map_async = |pool: &ThreadPool| {
                let f_bomb = BombDrop(Arc::clone(&drops));
                let inputs = vec![BombDrop(Arc::clone(&drops))];
                pool.map_async(
                    move |b: BombDrop| {
                        let _k = &f_bomb;
                        std::mem::forget(b);
                    },
                    inputs,
                )
            };
            // Refused: the pool is closed.
            let pool = ThreadPool::with_workers(1);
            pool.close();
            let r = catch_unwind(AssertUnwindSafe(|| map_async(&pool).get()));
            assert!(matches!(r, Ok(Err(TaskError::NotRunning))), "{r:?}");
            assert_eq!(drops.load(Ordering::SeqCst), 2);
            pool.join();
            // Cancelled while queued behind a blocker.
            let pool = ThreadPool::with_workers(1);
            let (go_tx, go) = std::sync::mpsc::channel::<()>();
            let blocker = pool.apply_async(move || go.recv().unwrap());
            let h = map_async(&pool);
            // `cancel` re-raises the inputs' panic: its payload is a
            // `PayloadBomb`, which must not be dropped here.
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| h.cancel())) {
                std::mem::forget(p);
            }
            go_tx.send(()).unwrap();
            assert_eq!(blocker.get(), Ok(()));
            assert_eq!(drops.load(Ordering::SeqCst), 4);
        },
    );
}

/// A refused `apply_async` whose closure captures one value that panics
/// with a bomb payload on drop: the call neither panics nor aborts, and
/// the handle says `NotRunning`.
#[test]
fn a_refused_apply_async_with_a_bomb_capture_does_not_unwind() {
    child::run(
        "a_refused_apply_async_with_a_bomb_capture_does_not_unwind",
        20,
        || {
            let pool = ThreadPool::with_workers(1);
            pool.close();
            let drops = counter();
            let bomb = BombDrop(Arc::clone(&drops));
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.apply_async(move || {
                    let _k = &bomb;
                })
                .get()
            }));
            assert!(matches!(r, Ok(Err(TaskError::NotRunning))), "{r:?}");
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            assert_eq!(pool.stats().panicked, 1, "a stray panic, counted");
            pool.join();
        },
    );
}
