//! Edges of submission, from a hostile review of the second API round:
//! `apply` keeping `f` on the caller's stack, `spawn`/`Scope::spawn` and
//! refused work, `NotRunning` handles, streams on stopped pools, the new
//! input types, and panic payloads whose own `Drop` panics.
#[path = "common/child.rs"]
mod child;
mod common;

use common::{guard, occupy_the_worker, panic_with_bomb, BombDrop, PayloadBomb};
use parpool::{TaskError, ThreadPool};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

fn me() -> ThreadId {
    std::thread::current().id()
}

/// Counts its drops in a shared counter.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Under `PanicPolicy::Terminate`, one `apply` whose `f` panics terminates
/// the pool while other threads' `apply` calls are queued behind it: each of
/// those runs its `f` exactly once (on a worker or, discarded, on its caller)
/// and returns its value; none reports "did not complete".
#[test]
fn apply_under_terminate_policy_queued_calls_all_return() {
    child::hide_expected_panics();
    guard(60, || {
        for round in 0..20 {
            let pool = common::terminating_on_panic(1);
            let runs = AtomicUsize::new(0);
            let drops = Arc::new(AtomicUsize::new(0));
            let start = Barrier::new(5);
            std::thread::scope(|s| {
                let bad = s.spawn(|| {
                    start.wait();
                    catch_unwind(AssertUnwindSafe(|| {
                        pool.apply(|| -> u32 {
                            std::thread::sleep(Duration::from_millis(round % 3));
                            panic!("EXPECTED apply panic")
                        })
                    }))
                });
                let good: Vec<_> = (0..4u32)
                    .map(|i| {
                        let (runs, drops, start, pool) = (&runs, &drops, &start, &pool);
                        s.spawn(move || {
                            start.wait();
                            let t = Tracked(Arc::clone(drops));
                            pool.apply(move || {
                                let _t = t;
                                runs.fetch_add(1, Ordering::SeqCst);
                                i * 10
                            })
                        })
                    })
                    .collect();
                let msg = common::panic_message(&*bad.join().unwrap().expect_err("re-raised"));
                assert!(msg.contains("EXPECTED apply panic"), "{msg}");
                for (i, g) in good.into_iter().enumerate() {
                    assert_eq!(g.join().expect("apply returned"), i as u32 * 10);
                }
            });
            assert_eq!(runs.load(Ordering::SeqCst), 4, "round {round}");
            assert_eq!(drops.load(Ordering::SeqCst), 4, "each f dropped once");
            assert!(!pool.is_running(), "the panic terminated the pool");
            pool.join();
        }
    });
}

/// `f` terminates its own pool from inside `apply` (on the worker); the
/// call returns `f`'s value, and nested work in `f` after the terminate
/// runs inline. Later `apply`s run on the caller.
#[test]
fn apply_whose_f_terminates_the_pool() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        let p = Arc::clone(&pool);
        let caller = me();
        let (v, nested_on) = pool.apply(move || {
            p.terminate();
            let nested = p.apply(me);
            let mapped = p.map(|x| x * 2, 0..4u8);
            assert_eq!(mapped, [0, 2, 4, 6]);
            (7, nested)
        });
        assert_eq!(v, 7);
        assert_ne!(nested_on, caller, "nested apply ran inline on the worker");
        assert_eq!(pool.apply(me), caller);
        pool.join();
    });
}

/// A queued `apply` discarded by `terminate` while its only worker is busy:
/// `f` runs on the caller, once, and its panic reaches the caller with its
/// own payload (and is not counted twice).
#[test]
fn apply_discarded_by_terminate_runs_a_panicking_f_on_the_caller() {
    child::hide_expected_panics();
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release_tx) = occupy_the_worker(&pool);
        let runs = AtomicUsize::new(0);
        let before = pool.stats().panicked;
        std::thread::scope(|s| {
            let caller = s.spawn(|| {
                let id = me();
                catch_unwind(AssertUnwindSafe(|| {
                    pool.apply(|| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(me(), id, "ran on the caller");
                        panic!("EXPECTED on the caller")
                    })
                }))
            });
            // Wait until the apply task is queued behind the blocker.
            while pool.stats().queued == 0 {
                std::thread::yield_now();
            }
            pool.terminate();
            let r: Result<(), _> = caller.join().unwrap();
            let msg = common::panic_message(&*r.expect_err("re-raised"));
            assert!(msg.contains("EXPECTED on the caller"), "{msg}");
        });
        release_tx.send(()).unwrap();
        assert_eq!(blocker.get(), Ok(()));
        pool.join();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let s = pool.stats();
        // Counted once, as a worker's run would be: the blocker and `f`.
        assert_eq!((s.panicked, s.completed, s.running), (before + 1, 2, 0));
    });
}

/// A blocking `apply` refused by a stopped pool runs on the caller and
/// counts as a worker's run would (it was not counted at all), like a
/// refused `map`'s items and a refused `spawn`.
#[test]
fn refused_apply_counts_like_a_worker_run() {
    child::hide_expected_panics();
    guard(30, || {
        for stop in ["close", "terminate"] {
            let pool = ThreadPool::with_workers(1);
            assert_eq!(pool.apply(|| 1), 1);
            if stop == "close" {
                pool.close();
            } else {
                pool.terminate();
            }
            let id = me();
            assert_eq!(pool.apply(|| (me() == id, 7)), (true, 7), "{stop}");
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.apply(|| -> i32 { panic!("EXPECTED refused apply") })
            }));
            let msg = common::panic_message(&*r.expect_err("re-raised"));
            assert!(msg.contains("EXPECTED refused apply"), "{msg}");
            assert_eq!(pool.map(|x: &i32| x + 1, &[1, 2]), [2, 3]);
            pool.join();
            let s = pool.stats();
            assert_eq!(
                (s.completed, s.panicked, s.running, s.queued),
                (5, 1, 0, 0),
                "{stop}: {s:?}"
            );
        }
    });
}

/// A refused `apply` whose `f` panics on the caller meets the pool's
/// policy as a worker's panic would: under `Terminate`, a closed pool's
/// queued tasks are cancelled (the one running finishes), and the panic
/// still reaches the caller.
#[test]
fn refused_apply_panic_meets_the_terminate_policy() {
    child::hide_expected_panics();
    guard(30, || {
        let pool = common::terminating_on_panic(1);
        let (blocker, release_tx) = occupy_the_worker(&pool);
        let queued: Vec<_> = (0..3).map(|i| pool.apply_async(move || i)).collect();
        pool.close();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.apply(|| -> i32 { panic!("EXPECTED refused apply") })
        }));
        let msg = common::panic_message(&*r.expect_err("re-raised"));
        assert!(msg.contains("EXPECTED refused apply"), "{msg}");
        release_tx.send(()).unwrap();
        assert_eq!(blocker.get(), Ok(()), "the running task finished");
        for h in queued {
            assert_eq!(
                h.get(),
                Err(TaskError::Cancelled),
                "terminated by the policy"
            );
        }
        pool.join();
        let s = pool.stats();
        assert_eq!((s.completed, s.panicked, s.queued), (2, 1, 0), "{s:?}");
    });
}

/// Every way a detached job's panic can go counts it exactly once, and a
/// scope re-raises exactly one of its spawned panics.
#[test]
fn spawn_panics_are_counted_once_on_workers_and_on_the_caller() {
    child::hide_expected_panics();
    guard(30, || {
        for stopped in [false, true] {
            let pool = ThreadPool::with_workers(2);
            if stopped {
                pool.close();
            }
            let p0 = pool.stats().panicked;
            pool.spawn(|| panic!("EXPECTED pool spawn"));
            if !stopped {
                pool.close();
            }
            pool.join();
            assert_eq!(
                pool.stats().panicked,
                p0 + 1,
                "pool spawn, stopped={stopped}"
            );

            let pool = ThreadPool::with_workers(2);
            if stopped {
                pool.close();
            }
            let p0 = pool.stats().panicked;
            let ran = AtomicUsize::new(0);
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    for i in 0..3 {
                        let ran = &ran;
                        s.spawn(move || {
                            ran.fetch_add(1, Ordering::SeqCst);
                            panic!("EXPECTED scoped {i}")
                        });
                    }
                })
            }));
            let msg = common::panic_message(&*r.expect_err("re-raised once"));
            assert!(msg.contains("EXPECTED scoped"), "{msg}");
            assert_eq!(ran.load(Ordering::SeqCst), 3);
            assert_eq!(
                pool.stats().panicked,
                p0 + 3,
                "scope spawn, stopped={stopped}"
            );
            // The scope left nothing behind: the pool still works.
            if !stopped {
                assert_eq!(pool.apply(|| 5), 5);
            }
        }
    });
}

/// Scoped spawns under `PanicPolicy::Terminate`: the first panic terminates
/// the pool, jobs not started are discarded (their borrowed captures
/// dropped once, before the scope returns), and the scope re-raises.
#[test]
fn scope_spawn_under_terminate_policy_drops_discarded_jobs_in_the_scope() {
    child::hide_expected_panics();
    guard(30, || {
        let pool = common::terminating_on_panic(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let ran = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(20));
                    panic!("EXPECTED first")
                });
                for _ in 0..50 {
                    let t = Tracked(Arc::clone(&drops));
                    let ran = &ran;
                    s.spawn(move || {
                        let _t = t;
                        ran.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
        }));
        let msg = common::panic_message(&*r.expect_err("re-raised"));
        assert!(msg.contains("EXPECTED first"), "{msg}");
        // Every closure is gone once the scope returned, run or not.
        assert_eq!(drops.load(Ordering::SeqCst), 50);
        assert!(!pool.is_running());
        pool.join();
    });
}

/// `spawn` racing `terminate`: a job runs at most once, and every job's
/// closure is dropped exactly once (run, discarded, or run on the caller).
#[test]
fn spawn_racing_terminate_drops_every_job_once() {
    guard(30, || {
        for _ in 0..50 {
            let pool = ThreadPool::with_workers(2);
            let runs = Arc::new(AtomicUsize::new(0));
            let drops = Arc::new(AtomicUsize::new(0));
            std::thread::scope(|s| {
                for _ in 0..3 {
                    s.spawn(|| {
                        for _ in 0..200 {
                            let t = Tracked(Arc::clone(&drops));
                            let r = Arc::clone(&runs);
                            pool.spawn(move || {
                                let _t = t;
                                r.fetch_add(1, Ordering::SeqCst);
                            });
                        }
                    });
                }
                s.spawn(|| {
                    std::thread::yield_now();
                    pool.terminate();
                });
            });
            pool.join();
            assert_eq!(drops.load(Ordering::SeqCst), 600);
            assert!(runs.load(Ordering::SeqCst) <= 600);
        }
    });
}

/// A `NotRunning` handle: `.await` resolves at once; `on_success` is dropped
/// unrun (once); a panicking `on_error` is contained; the handle of a
/// scoped refused task works after the scope's borrow would end.
#[test]
fn not_running_handles_await_and_callbacks() {
    child::hide_expected_panics();
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        pool.terminate();
        pool.join();
        let h = pool.apply_async(|| 1u8);
        assert_eq!(futures::executor::block_on(h), Err(TaskError::NotRunning));
        let drops = Arc::new(AtomicUsize::new(0));
        let t = Tracked(Arc::clone(&drops));
        let called = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&called);
        let h = pool
            .apply_async(|| String::from("x"))
            .on_success(move |_| {
                let _t = &t;
                c.fetch_add(1, Ordering::SeqCst);
            })
            .on_error(|_| panic!("EXPECTED callback panic"));
        assert_eq!(drops.load(Ordering::SeqCst), 1, "on_success dropped unrun");
        assert_eq!(called.load(Ordering::SeqCst), 0);
        assert_eq!(h.get(), Err(TaskError::NotRunning));

        let data = vec![String::from("borrowed")];
        let h = pool.scope(|s| s.apply_async(|| data[0].clone()));
        drop(data);
        assert_eq!(h.get(), Err(TaskError::NotRunning));
    });
}

/// A stream made on a stopped pool yields every item, polled by an executor
/// on the consumer; one made before `terminate` ends (or panics) instead of
/// hanging.
#[test]
fn streams_on_stopped_pools_finish() {
    use futures::StreamExt;
    child::hide_expected_panics();
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        pool.close();
        let v: Vec<u32> = futures::executor::block_on(
            pool.imap(|x: u32| x * 3, 0..100u32).into_stream().collect(),
        );
        assert_eq!(v, (0..100).map(|x| x * 3).collect::<Vec<_>>());
        pool.join();

        let pool = ThreadPool::with_workers(2);
        let stream = pool
            .imap_unordered(
                |x: u32| {
                    std::thread::sleep(Duration::from_millis(1));
                    x
                },
                0..10_000u32,
            )
            .into_stream();
        let pool2 = &pool;
        let r = catch_unwind(AssertUnwindSafe(|| {
            futures::executor::block_on(async move {
                let mut n = 0;
                let mut stream = stream;
                while let Some(_x) = stream.next().await {
                    n += 1;
                    if n == 10 {
                        pool2.terminate();
                    }
                }
                n
            })
        }));
        if let Ok(n) = r {
            assert!(n < 10_000, "terminate stopped the stream: {n}");
        }
        pool.join();
    });
}

/// Inputs that moved items out (`Vec`, `VecDeque`, `HashMap`, `BTreeMap`
/// by value) when `f` panics midway: every item dropped exactly once.
#[test]
fn owned_inputs_drop_every_item_once_when_f_panics() {
    child::hide_expected_panics();
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let n = if cfg!(miri) { 24 } else { 64 };
        let drops = Arc::new(AtomicUsize::new(0));
        let mk = |i: usize| (i, Tracked(Arc::clone(&drops)));
        let f = |(i, t): (usize, Tracked)| {
            if i == 17 {
                panic!("EXPECTED item {i}");
            }
            drop(t);
        };
        let cases: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| drop(pool.map(f, (0..n).map(mk).collect::<Vec<_>>()))),
            Box::new(|| drop(pool.map(f, (0..n).map(mk).collect::<VecDeque<_>>()))),
            Box::new(|| drop(pool.map(f, (0..n).map(mk).collect::<HashMap<_, _>>()))),
            Box::new(|| drop(pool.map(f, (0..n).map(mk).collect::<BTreeMap<_, _>>()))),
            Box::new(|| drop(pool.chunked(5).map(f, (0..n).map(mk).collect::<Box<[_]>>()))),
        ];
        for (k, case) in cases.iter().enumerate() {
            drops.store(0, Ordering::SeqCst);
            let r = catch_unwind(AssertUnwindSafe(case));
            assert!(r.is_err(), "case {k}: re-raised");
            assert_eq!(
                drops.load(Ordering::SeqCst),
                n,
                "case {k}: each item dropped once"
            );
        }
    });
}

/// `&mut` inputs (`&mut Vec`, `&mut VecDeque`, `&mut HashMap`,
/// `&mut BTreeMap`, `chunks_mut`) on a pool terminated midway by `f`: each
/// element is visited exactly once (the caller finishes the work).
#[test]
fn mut_inputs_visit_each_element_once_across_terminate() {
    guard(60, || {
        let n: usize = if cfg!(miri) { 24 } else { 200 };
        for case in 0..5 {
            let pool = ThreadPool::with_workers(2);
            let seen = AtomicUsize::new(0);
            let bump = |x: &mut usize| {
                *x += 1;
                if seen.fetch_add(1, Ordering::SeqCst) == n / 4 {
                    pool.terminate();
                }
            };
            fn all_one(v: impl IntoIterator<Item = usize>) -> bool {
                v.into_iter().all(|x| x == 1)
            }
            match case {
                0 => {
                    let mut v = vec![0usize; n];
                    pool.map(bump, &mut v);
                    assert!(all_one(v));
                }
                1 => {
                    let mut v: VecDeque<usize> = VecDeque::with_capacity(n);
                    for _ in 0..n / 2 {
                        v.push_back(0);
                    }
                    for _ in 0..n / 2 {
                        v.push_front(0);
                    }
                    pool.map(bump, &mut v);
                    assert!(all_one(v));
                }
                2 => {
                    let mut m: HashMap<usize, usize> = (0..n).map(|i| (i, 0)).collect();
                    pool.map(|(_, x)| bump(x), &mut m);
                    assert!(all_one(m.into_values()));
                }
                3 => {
                    let mut m: BTreeMap<usize, usize> = (0..n).map(|i| (i, 0)).collect();
                    pool.map(|(_, x)| bump(x), &mut m);
                    assert!(all_one(m.into_values()));
                }
                _ => {
                    let mut v = vec![0usize; n];
                    pool.map(
                        |c: &mut [usize]| c.iter_mut().for_each(bump),
                        v.chunks_mut(3),
                    );
                    assert!(all_one(v));
                }
            }
            assert_eq!(seen.load(Ordering::SeqCst), n, "case {case}");
            pool.join();
        }
    });
}

/// Zero-sized and empty inputs, and huge zero-sized ones stopped early by
/// `try_map`: no overflow, no hang, no double drop.
#[test]
fn zero_sized_empty_and_huge_inputs() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let empty: VecDeque<u8> = VecDeque::new();
        assert!(pool.map(|x| *x, &empty).is_empty());
        let mut nothing: Vec<u8> = Vec::new();
        assert!(pool
            .map(|c: &mut [u8]| c.len(), nothing.chunks_mut(4))
            .is_empty());
        assert!(pool.map(|x: &mut ()| *x, &mut [(); 0][..]).is_empty());
        let mut zs = vec![(); 1000];
        assert_eq!(pool.map(|x: &mut ()| *x, &mut zs).len(), 1000);
        let d: VecDeque<()> = std::iter::repeat(()).take(1000).collect();
        assert_eq!(pool.map(|x| *x, &d).len(), 1000);

        // usize::MAX zero-sized items, the first fails: returns at once.
        let huge = vec![(); usize::MAX];
        assert_eq!(pool.try_map(|()| Err::<(), u8>(1), huge), Err(1));
        let r = pool.try_map(|x: u64| if x == 0 { Err(x) } else { Ok(()) }, 0..u64::MAX);
        assert_eq!(r, Err(0));
        // The counters are back where they were.
        let st = pool.stats();
        assert_eq!(st.queued, 0, "{st:?}");
        assert_eq!(st.running, 0, "{st:?}");

        // Zero-sized items with a Drop, moved in and out.
        static ZD: AtomicUsize = AtomicUsize::new(0);
        struct Z;
        impl Drop for Z {
            fn drop(&mut self) {
                ZD.fetch_add(1, Ordering::SeqCst);
            }
        }
        let zs: Vec<Z> = (0..300).map(|_| Z).collect();
        let out = pool.chunked(7).map(|z: Z| z, zs);
        assert_eq!(ZD.load(Ordering::SeqCst), 0);
        drop(out);
        assert_eq!(ZD.load(Ordering::SeqCst), 300);
        let zs: Vec<Z> = (0..300).map(|_| Z).collect();
        let r = pool.try_map(
            |z: Z| {
                if ZD.load(Ordering::SeqCst) > 310 {
                    Err(z)
                } else {
                    Ok(())
                }
            },
            zs,
        );
        drop(r);
        assert_eq!(ZD.load(Ordering::SeqCst), 600);
    });
}

/// Concurrent `apply` from many threads into a 1-worker pool that is dropped
/// right after (the applies borrow it, so it cannot go away first), and
/// `apply` from inside a scoped task on a worker.
#[test]
fn apply_from_a_scoped_task_and_from_many_threads() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let data = [1, 2, 3];
        let sum = pool.scope(|s| {
            s.apply_async(|| pool.apply(|| data.iter().sum::<i32>()))
                .get()
        });
        assert_eq!(sum, Ok(6));
        let total = Mutex::new(0);
        std::thread::scope(|s| {
            for i in 0..8 {
                let (pool, total) = (&pool, &total);
                s.spawn(move || {
                    let v = pool.apply(|| i * 2);
                    *total.lock().unwrap() += v;
                });
            }
        });
        assert_eq!(*total.lock().unwrap(), 56);
    });
}

// Panic payloads whose own `Drop` panics (`common::PayloadBomb`): the
// engine drops payloads it does not re-raise contained.

// Was BUG review-10 (fixed): `scope::run` re-raises the body's panic with
// `resume_unwind` while the scope's state still holds a spawned job's
// unobserved panic payload; the state (its last `Arc`) is dropped by that
// unwinding, so a payload whose `Drop` panics aborts the process instead of
// the body's panic reaching the caller. Fix: on the body-panic path, take
// the kept payload out and drop it contained before `resume_unwind` (done).
#[test]
fn scope_body_panic_with_a_kept_bomb_payload_does_not_abort() {
    child::run(
        "scope_body_panic_with_a_kept_bomb_payload_does_not_abort",
        20,
        || {
            let pool = ThreadPool::with_workers(1);
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    s.spawn(panic_with_bomb);
                    // Let the job finish, so its payload is kept by the scope.
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("EXPECTED body");
                })
            }));
            let msg = common::panic_message(&*r.expect_err("the body's panic"));
            assert!(msg.contains("EXPECTED body"), "{msg}");
        },
    );
}

// Was BUG review-10 (fixed): `Scope::spawn` on a stopped pool runs `f` on the caller
// (`run_refused`) and hands its payload to `ScopeState::report_panic`,
// which keeps only the first and drops any later one uncontained, right in
// the submitting thread: the second `s.spawn` unwinds into the scope body,
// although `submit.rs` promises a refused detached job "never unwinds into
// the caller". (On a worker the same drop happens inside `Slot::complete`,
// before the slot is marked done.) Fix: drop the extra payload with
// `panic::drop_contained` in `report_panic` (done).
#[test]
fn refused_scope_spawn_never_unwinds_into_the_caller_even_for_bomb_payloads() {
    child::run(
        "refused_scope_spawn_never_unwinds_into_the_caller_even_for_bomb_payloads",
        20,
        || {
            let pool = ThreadPool::with_workers(1);
            pool.close();
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    s.spawn(panic_with_bomb);
                    let second = catch_unwind(AssertUnwindSafe(|| s.spawn(panic_with_bomb)));
                    assert!(second.is_ok(), "s.spawn unwound into its caller");
                })
            }));
            // The scope re-raises the first payload; dropping it is the
            // caller's business (contained here).
            let p = r.expect_err("re-raised");
            assert!(p.is::<PayloadBomb>());
            let _ = catch_unwind(AssertUnwindSafe(move || drop(p)));
            pool.join();
        },
    );
}

// Was BUG review-10 (lower severity, fixed): `AsyncResult::drop` drops an unobserved
// outcome uncontained. When the handle is dropped during unwinding (the
// caller's own code panicked while holding it), a task panic payload whose
// `Drop` panics aborts the process. b7c4d0c fixed exactly this for imap's
// input and function ("the consumer may be unwinding from its own
// closure's panic"); handles were left out. Fix: in `AsyncResult::drop`,
// when `std::thread::panicking()`, drop the outcome with
// `panic::drop_contained` (done; the drop panic is not counted).
#[test]
fn handle_dropped_while_unwinding_with_a_bomb_payload_does_not_abort() {
    child::run(
        "handle_dropped_while_unwinding_with_a_bomb_payload_does_not_abort",
        20,
        || {
            let pool = ThreadPool::with_workers(1);
            let r = catch_unwind(AssertUnwindSafe(|| {
                let h = pool.apply_async(panic_with_bomb);
                h.wait();
                panic!("EXPECTED caller panic holding the handle");
            }));
            let msg = common::panic_message(&*r.expect_err("the caller's panic"));
            assert!(msg.contains("EXPECTED caller panic"), "{msg}");
        },
    );
}

/// Two items of one `map` panic with payloads whose `Drop` panics: the map
/// keeps the first payload and must drop the second without unwinding
/// from the middle of a chunk's bookkeeping (`record_panic`), which would
/// skip the chunk's counters and its unused inputs, or abort.
#[test]
fn map_with_two_bomb_payloads_re_raises_one_and_keeps_the_pool_sane() {
    child::run(
        "map_with_two_bomb_payloads_re_raises_one_and_keeps_the_pool_sane",
        20,
        || {
            let pool = ThreadPool::with_workers(2);
            let both = Barrier::new(2);
            let drops = Arc::new(AtomicUsize::new(0));
            let inputs: Vec<(usize, Tracked)> =
                (0..2).map(|i| (i, Tracked(Arc::clone(&drops)))).collect();
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.chunked(1).map(
                    |(_i, t): (usize, Tracked)| {
                        drop(t);
                        both.wait();
                        panic_with_bomb()
                    },
                    inputs,
                )
            }));
            let p = r.expect_err("re-raised");
            let _ = catch_unwind(AssertUnwindSafe(move || drop(p)));
            assert_eq!(drops.load(Ordering::SeqCst), 2);
            let st = pool.stats();
            assert_eq!((st.queued, st.running), (0, 0), "{st:?}");
            assert_eq!(pool.map(|x| x + 1, 0..3u8), [1, 2, 3]);
        },
    );
}

/// `terminate` discards a queued task whose closure's `Drop` panics with a
/// payload whose own `Drop` panics. The drain counts that panic as a stray
/// one; it must not unwind out of `terminate` (leaving the tasks queued
/// after it undrained, their handles never completing) or kill a thread.
#[test]
fn terminate_draining_a_closure_whose_drop_panics_with_a_bomb() {
    child::run(
        "terminate_draining_a_closure_whose_drop_panics_with_a_bomb",
        20,
        || {
            let pool = ThreadPool::with_workers(1);
            let (blocker, release_tx) = occupy_the_worker(&pool);
            let bomb = BombDrop(Arc::new(AtomicUsize::new(0)));
            let first = pool.apply_async(move || {
                let _b = &bomb;
            });
            let second = pool.apply_async(|| 2);
            let before = pool.stats().panicked;
            let r = catch_unwind(AssertUnwindSafe(|| pool.terminate()));
            assert!(r.is_ok(), "terminate unwound into its caller");
            release_tx.send(()).unwrap();
            assert_eq!(blocker.get(), Ok(()));
            assert_eq!(first.get(), Err(TaskError::Cancelled));
            assert_eq!(second.get(), Err(TaskError::Cancelled));
            assert_eq!(pool.stats().panicked, before + 1);
            pool.join();
        },
    );
}

/// A `RangeInclusive` iterated to exhaustion is empty, but `into_inner`
/// still returns its bounds ("unspecified after exhaustion"): the map must
/// go by `is_empty`, not by the bounds, and map nothing, as iterating does.
#[test]
fn exhausted_inclusive_range_maps_nothing() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let mut r = 5..=5u32;
        assert_eq!(r.next(), Some(5));
        assert!(r.is_empty());
        assert_eq!(pool.map(|x| x, r.clone()), Vec::<u32>::new());
        assert_eq!(r.count(), 0);
        let mut r = 0..=3i8;
        while r.next_back().is_some() {}
        assert_eq!(pool.map(|x| x, r), Vec::<i8>::new());
        // Partly iterated ones map what is left.
        let mut r = 0..=4u8;
        r.next();
        r.next_back();
        assert_eq!(pool.map(|x| x, r), [1, 2, 3]);
    });
}
