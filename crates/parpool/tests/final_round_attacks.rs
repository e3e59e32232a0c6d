//! Final-round adversarial tests: extreme sizes through the refused paths,
//! close/terminate racing every call, panics in every user hook (on the
//! refused-apply path too), and nesting on a one-worker pool.

#[path = "common/child.rs"]
mod child;
mod common;

use common::{close_or_terminate, counters, guard, panic_message, Probe};
use parpool::{PanicPolicy, TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
enum State {
    Open,
    Closed,
    Terminated,
}

fn pool_in(state: State, workers: usize, policy: PanicPolicy) -> ThreadPool {
    let pool = ThreadPool::builder()
        .workers(workers)
        .on_panic(policy)
        .build()
        .unwrap();
    match state {
        State::Open => {}
        State::Closed => pool.close(),
        State::Terminated => pool.terminate(),
    }
    pool
}

/// Nothing queued or running, and (with no stray panics, which count in
/// `panicked` but never ran) no more panicked items than completed ones.
fn assert_settled(pool: &ThreadPool) {
    assert_idle(pool);
    let s = pool.stats();
    assert!(s.panicked <= s.completed, "{s:?}");
}

fn assert_idle(pool: &ThreadPool) {
    let s = pool.stats();
    assert_eq!((s.queued, s.running), (0, 0), "{s:?}");
}

/// Closes (if still running) and joins the pool.
fn close_and_join(pool: &ThreadPool) {
    if pool.is_running() {
        pool.close();
    }
    pool.join();
}

fn finish(pool: &ThreadPool) {
    close_and_join(pool);
    assert_settled(pool);
}

/// Empty inputs, chunksize 1 and `usize::MAX`, one worker with
/// `max_tasks_per_worker(1)`, and many workers: the same answers whether
/// the pool is open, closed or terminated.
#[test]
fn sizes_at_zero_and_max_in_every_pool_state() {
    guard(20, || {
        for state in [State::Open, State::Closed, State::Terminated] {
            for workers in [1, 48] {
                let pool = pool_in(state, workers, PanicPolicy::Propagate);
                let none: Vec<u32> = Vec::new();
                assert!(pool.map(|x: u32| x, none.clone()).is_empty());
                assert!(pool.chunked(usize::MAX).map(|x: u32| x, 0..0u32).is_empty());
                assert!(pool
                    .starmap(|a: u32, b: u32| a + b, Vec::<(u32, u32)>::new())
                    .is_empty());
                assert!(pool.imap(|x: u32| x, none.clone()).next().is_none());
                assert!(pool
                    .imap_unordered(|x: u32| x, none.clone())
                    .next()
                    .is_none());
                assert_eq!(
                    pool.try_map(|x: u32| Ok::<u32, ()>(x), none.clone()),
                    Ok(vec![])
                );
                let empty = pool.map_async(|x: u32| x, none.clone()).get();
                match state {
                    State::Open => assert_eq!(empty, Ok(vec![])),
                    _ => assert_eq!(empty, Err(TaskError::NotRunning), "{state:?}"),
                }
                let want: Vec<u64> = (0..37u64).map(|x| x * 3).collect();
                assert_eq!(pool.chunked(usize::MAX).map(|x| x * 3, 0..37u64), want);
                assert_eq!(pool.chunked(1).map(|x| x * 3, 0..37u64), want);
                assert_eq!(
                    pool.chunked(usize::MAX)
                        .starmap(|a: u64, b: u64| a * b, (0..37u64).map(|x| (x, 3))),
                    want
                );
                assert_eq!(
                    pool.chunked(usize::MAX)
                        .try_map(|x| Ok::<_, ()>(x * 3), 0..37u64),
                    Ok(want.clone())
                );
                assert_eq!(pool.apply(|| 5), 5);
                finish(&pool);
                let s = pool.stats();
                assert_eq!(s.panicked, 0);
            }
        }
        let pool = ThreadPool::builder()
            .workers(1)
            .max_tasks_per_worker(1)
            .build()
            .unwrap();
        let want: Vec<u32> = (0..200).collect();
        assert_eq!(pool.map(|x| x, 0..200u32), want);
        assert_eq!(pool.chunked(1).map(|x| x, 0..200u32), want);
        let hs: Vec<_> = (0..50u32).map(|i| pool.apply_async(move || i)).collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.get(), Ok(i as u32));
        }
        let got: Vec<u32> = pool.imap(|x| x, 0..100u32).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        finish(&pool);
    });
}

#[test]
fn chunksize_zero_is_a_clear_error_even_on_a_stopped_pool() {
    child::hide_expected_panics();
    for state in [State::Open, State::Terminated] {
        let pool = pool_in(state, 1, PanicPolicy::Propagate);
        let err = catch_unwind(AssertUnwindSafe(|| {
            let _ = pool.chunked(0);
        }))
        .unwrap_err();
        assert!(panic_message(&*err).contains("chunksize"));
        finish(&pool);
    }
}

/// Per-id run and drop counters for one round.
struct Book {
    runs: Arc<Vec<AtomicUsize>>,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Book {
    fn new(n: usize) -> Self {
        Book {
            runs: counters(n),
            drops: counters(n),
        }
    }
    fn probe(&self, id: usize) -> (Probe, Arc<Vec<AtomicUsize>>) {
        (Probe::new(id, &self.drops), Arc::clone(&self.runs))
    }
    fn check(&self, what: &str) {
        for (i, (r, d)) in self.runs.iter().zip(self.drops.iter()).enumerate() {
            assert!(r.load(SeqCst) <= 1, "{what}: job {i} ran twice");
            assert_eq!(d.load(SeqCst), 1, "{what}: job {i} dropped != once");
        }
    }
    fn ran(&self, id: usize) -> usize {
        self.runs[id].load(SeqCst)
    }
}

/// `close` or `terminate` from another thread racing every kind of call.
/// Each call resolves; nothing runs twice; every closure and input is
/// dropped once; blocking calls return every result; stats settle.
#[test]
fn close_and_terminate_race_every_call() {
    child::hide_expected_panics();
    guard(30, || {
        for round in 0..60u64 {
            let terminate = round % 2 == 0;
            let pool = Arc::new(ThreadPool::with_workers(2));
            let p2 = Arc::clone(&pool);
            let delay = Duration::from_micros((round * 37) % 400);
            let stopper = std::thread::spawn(move || {
                std::thread::sleep(delay);
                close_or_terminate(&p2, terminate);
            });
            let b = Book::new(12);
            // apply: always returns its value, run exactly once.
            let (p, runs) = b.probe(0);
            assert_eq!(
                pool.apply(move || {
                    let _p = p;
                    runs[0].fetch_add(1, SeqCst);
                    7
                }),
                7
            );
            assert_eq!(b.ran(0), 1);
            // apply_async: value, Cancelled or NotRunning; ran iff value.
            let (p, runs) = b.probe(1);
            let h = pool.apply_async(move || {
                let _p = p;
                runs[1].fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_micros(50));
                1
            });
            // spawn: runs at most once (discarded by terminate), dropped once.
            let (p, runs) = b.probe(2);
            pool.spawn(move || {
                let _p = p;
                runs[2].fetch_add(1, SeqCst);
            });
            // map / starmap / try_map: every item, once, in order.
            let items: Vec<(Probe, usize)> = (3..6).map(|i| (b.probe(i).0, i)).collect();
            let runs = Arc::clone(&b.runs);
            let got = pool.chunked(1).map(
                move |(p, i): (Probe, usize)| {
                    runs[i].fetch_add(1, SeqCst);
                    drop(p);
                    i
                },
                items,
            );
            assert_eq!(got, [3, 4, 5]);
            let want: Vec<u32> = (0..64).map(|x| x + 1).collect();
            assert_eq!(
                pool.starmap(|a: u32, b: u32| a + b, (0..64).map(|x| (x, 1))),
                want
            );
            assert_eq!(
                pool.try_map(|x: u32| Ok::<_, ()>(x + 1), 0..64u32),
                Ok(want.clone())
            );
            // map_async: the full vector or an error.
            let (p, runs) = b.probe(6);
            let ma = pool.map_async(
                move |x: u32| {
                    if x == 0 {
                        runs[6].fetch_add(1, SeqCst);
                    }
                    let _ = &p;
                    x + 1
                },
                0..64u32,
            );
            // imap / imap_unordered: a prefix (or all) of the results, or a
            // clear panic; never a hang or a wrong value.
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.imap(|x: u32| x + 1, 0..64u32).collect::<Vec<_>>()
            }));
            if let Ok(v) = r {
                assert_eq!(v, want[..v.len()], "imap yields in order");
            }
            let r = catch_unwind(AssertUnwindSafe(|| {
                let mut v: Vec<u32> = pool.imap_unordered(|x: u32| x + 1, 0..64u32).collect();
                v.sort();
                v
            }));
            if let Ok(v) = r {
                let mut d = v.clone();
                d.dedup();
                assert_eq!(d.len(), v.len(), "imap_unordered yielded a duplicate");
                assert!(v.iter().all(|x| (1..=64).contains(x)));
            }
            // scope: borrows, returns after every job was run or dropped.
            let local = AtomicUsize::new(0);
            let (p7, _) = b.probe(7);
            let (p8, _) = b.probe(8);
            pool.scope(|s| {
                let l = &local;
                s.spawn(move || {
                    let _p = p7;
                    l.fetch_add(1, SeqCst);
                });
                let h = s.apply_async(move || {
                    let _p = p8;
                    l.fetch_add(10, SeqCst);
                });
                match h.get() {
                    Ok(()) | Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => {}
                    Err(e) => panic!("scope apply_async: {e}"),
                }
            });
            assert!(local.load(SeqCst) <= 11);
            stopper.join().unwrap();
            match h.get() {
                Ok(1) => assert_eq!(b.ran(1), 1),
                Err(TaskError::Cancelled) => {}
                Err(TaskError::NotRunning) => assert_eq!(b.ran(1), 0),
                other => panic!("apply_async resolved as {other:?}"),
            }
            match ma.get() {
                Ok(v) => assert_eq!(v, want),
                Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => {}
                Err(e) => panic!("map_async: {e}"),
            }
            pool.join();
            for i in 9..12 {
                drop(b.probe(i).0);
            }
            b.check(&format!("round {round}"));
            if !terminate {
                // close discards nothing: the spawned job ran.
                assert_eq!(b.ran(2), 1, "round {round}: close lost a spawned job");
            }
            assert_settled(&pool);
        }
    });
}

/// Panics in its `Drop` with `msg`.
#[derive(Debug)]
struct DropBomb(&'static str);

impl Drop for DropBomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{}", self.0);
        }
    }
}

fn expect_panic<T>(what: &str, want: &str, f: impl FnOnce() -> T) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("{what}: expected a panic {want:?}"),
        Err(p) => assert_eq!(panic_message(&*p), want, "{what}"),
    }
}

/// A refused `apply` (closed or terminated pool) under Propagate and
/// Terminate: a panic in the closure, or in its captures' `Drop`, is
/// re-raised with its own message and counted once; a panicking result
/// `Drop` is the caller's own and not counted.
#[test]
fn refused_apply_hook_panics_under_each_policy() {
    child::hide_expected_panics();
    guard(20, || {
        for policy in [PanicPolicy::Propagate, PanicPolicy::Terminate] {
            for state in [State::Closed, State::Terminated] {
                let what = format!("{policy:?}/{state:?}");
                let pool = pool_in(state, 1, policy);
                expect_panic(&what, "f-boom", || {
                    pool.apply(|| -> u8 { panic!("f-boom") })
                });
                let s = pool.stats();
                assert_eq!((s.completed, s.panicked), (1, 1), "{what}: {s:?}");
                let bomb = DropBomb("capture-boom");
                expect_panic(&what, "capture-boom", || {
                    pool.apply(move || {
                        let _b = bomb;
                        3
                    })
                });
                let s = pool.stats();
                assert_eq!((s.completed, s.panicked), (2, 2), "{what}: {s:?}");
                // The result's Drop runs in the caller, after apply returned.
                expect_panic(&what, "result-boom", || {
                    drop(pool.apply(|| DropBomb("result-boom")))
                });
                let s = pool.stats();
                assert_eq!((s.completed, s.panicked), (3, 2), "{what}: {s:?}");
                assert!(!pool.is_running());
                finish(&pool);
            }
        }
    });
}

/// An `apply` discarded by `terminate` before a worker took it runs on the
/// caller; its closure's capture panics on drop: re-raised, counted once,
/// and the pool settles.
#[test]
fn apply_discarded_by_terminate_with_a_panicking_capture() {
    child::hide_expected_panics();
    guard(20, || {
        for policy in [PanicPolicy::Propagate, PanicPolicy::Terminate] {
            let pool = Arc::new(pool_in(State::Open, 1, policy));
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
            let blocker = pool.apply_async(move || {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            });
            started_rx.recv().unwrap();
            let p2 = Arc::clone(&pool);
            let ran_on = Arc::new(std::sync::Mutex::new(None));
            let r2 = Arc::clone(&ran_on);
            let caller = std::thread::spawn(move || {
                let bomb = DropBomb("discarded-capture-boom");
                catch_unwind(AssertUnwindSafe(|| {
                    p2.apply(move || {
                        let _b = bomb;
                        *r2.lock().unwrap() = Some(std::thread::current().id());
                    })
                }))
                .map_err(|p| panic_message(&*p))
            });
            while pool.stats().queued == 0 {
                std::thread::yield_now();
            }
            pool.terminate();
            let caller_id = caller.thread().id();
            let out = caller.join().unwrap();
            assert_eq!(out, Err("discarded-capture-boom".to_owned()), "{policy:?}");
            assert_eq!(
                *ran_on.lock().unwrap(),
                Some(caller_id),
                "ran on the caller"
            );
            go_tx.send(()).unwrap();
            assert!(blocker.get().is_ok());
            pool.join();
            let s = pool.stats();
            assert_eq!((s.completed, s.panicked), (2, 1), "{policy:?}: {s:?}");
            assert_settled(&pool);
        }
    });
}

/// Panicking `on_success` / `on_error` callbacks, attached before and after
/// the outcome and on refused handles, under Propagate and Terminate: the
/// result is unharmed, nothing unwinds into the caller, and the pool keeps
/// running (a callback is not a task).
#[test]
fn panicking_callbacks_are_contained_under_each_policy() {
    child::hide_expected_panics();
    guard(20, || {
        for policy in [PanicPolicy::Propagate, PanicPolicy::Terminate] {
            let pool = pool_in(State::Open, 1, policy);
            let h = pool
                .apply_async(|| {
                    std::thread::sleep(Duration::from_millis(5));
                    1
                })
                .on_success(|_| panic!("cb-success"));
            assert_eq!(h.get(), Ok(1));
            let done = pool.apply_async(|| 2);
            done.wait();
            let h = done.on_success(|_| panic!("cb-late"));
            assert_eq!(h.get(), Ok(2));
            let h = pool
                .apply_async(|| -> u8 { panic!("task") })
                .on_error(|_| panic!("cb-error"));
            assert!(matches!(h.get(), Err(TaskError::Panicked(m)) if m == "task"));
            if policy == PanicPolicy::Propagate {
                assert!(pool.is_running(), "a callback panic terminated the pool");
                assert_eq!(pool.apply_async(|| 3).get(), Ok(3));
            }
            pool.close();
            let h = pool.apply_async(|| 4).on_error(|_| panic!("cb-refused"));
            assert_eq!(h.get(), Err(TaskError::NotRunning));
            finish(&pool);
            let s = pool.stats();
            assert_eq!(
                s.panicked, 1,
                "{policy:?}: callbacks counted as tasks: {s:?}"
            );
        }
    });
}

/// One item's result panics on drop and a later item panics: `map`
/// re-raises one of them, never aborts, and the pool stays usable. Run in
/// a child: an abort would kill the test binary.
#[test]
fn map_with_a_panicking_result_drop_and_a_panicking_item() {
    child::run(
        "map_with_a_panicking_result_drop_and_a_panicking_item",
        20,
        || {
            for state in [State::Open, State::Closed] {
                let pool = pool_in(state, 2, PanicPolicy::Propagate);
                let r = catch_unwind(AssertUnwindSafe(|| {
                    pool.chunked(1).map(
                        |i: u32| {
                            if i == 5 {
                                panic!("item-boom");
                            }
                            if i == 0 {
                                Some(DropBomb("result-drop-boom"))
                            } else {
                                None
                            }
                        },
                        0..8u32,
                    )
                }));
                let msg = panic_message(&*r.unwrap_err());
                assert!(
                    msg == "item-boom" || msg == "result-drop-boom",
                    "{state:?}: {msg}"
                );
                assert_eq!(pool.map(|x| x + 1, 0..3u32), [1, 2, 3]);
                finish(&pool);
            }
        },
    );
}

/// Input items whose `Drop` panics, on an open and a refused map: the
/// panic is re-raised, every other item is dropped once.
#[test]
fn input_item_drop_panics_drop_every_other_item_once() {
    child::run(
        "input_item_drop_panics_drop_every_other_item_once",
        20,
        || {
            struct Item(usize, Arc<Vec<AtomicUsize>>);
            impl Drop for Item {
                fn drop(&mut self) {
                    self.1[self.0].fetch_add(1, SeqCst);
                    if self.0 == 3 && !std::thread::panicking() {
                        panic!("item-drop-boom");
                    }
                }
            }
            for state in [State::Open, State::Closed, State::Terminated] {
                let drops = counters(10);
                let items: Vec<Item> = (0..10).map(|i| Item(i, Arc::clone(&drops))).collect();
                let pool = pool_in(state, 2, PanicPolicy::Propagate);
                expect_panic(&format!("{state:?}"), "item-drop-boom", || {
                    pool.chunked(1).map(|it: Item| it.0, items)
                });
                for (i, d) in drops.iter().enumerate() {
                    assert_eq!(d.load(SeqCst), 1, "{state:?}: item {i}");
                }
                finish(&pool);
            }
        },
    );
}

/// Nesting on a one-worker pool: apply, map, imap and a scope inside a
/// job run (inline or on the caller) without deadlock; apply on a closed
/// pool from inside a job; terminate from inside a job while the caller
/// waits in `apply`, `map` and on a handle.
#[test]
fn nesting_on_a_one_worker_pool() {
    guard(20, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || {
            let a = p.apply(|| 1);
            let m = p.map(|x| x * 2, 0..10u32);
            let i: Vec<u32> = p.imap(|x| x + 1, 0..5u32).collect();
            let data = [1u32, 2, 3];
            let s = p.scope(|s| {
                let h = s.apply_async(|| data.iter().sum::<u32>());
                let m = s.map_async(|x: &u32| x * 10, &data);
                (h.get().unwrap(), m.get().unwrap())
            });
            (a, m, i, s)
        });
        let (a, m, i, s) = h.get().unwrap();
        assert_eq!(a, 1);
        assert_eq!(m, (0..10).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(i, [1, 2, 3, 4, 5]);
        assert_eq!(s, (6, vec![10, 20, 30]));

        // close from inside a job, then apply and map there.
        let p = Arc::clone(&pool);
        let got = pool.apply(move || {
            p.close();
            (
                p.apply(|| 9),
                p.map(|x| x + 1, 0..3u32),
                p.apply_async(|| 0).get(),
            )
        });
        // A closed pool still accepts work from its own workers (so queued
        // tasks that nest keep working): the handle resolves with the value.
        assert_eq!(got, (9, vec![1, 2, 3], Ok(0)));
        pool.join();
        assert_settled(&pool);

        // terminate from inside a job while the caller waits.
        for how in 0..3 {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let p = Arc::clone(&pool);
            match how {
                0 => assert_eq!(
                    pool.apply(move || {
                        p.terminate();
                        p.apply(|| 5) + 1
                    }),
                    6
                ),
                1 => {
                    let got = pool.chunked(1).map(
                        move |x: u32| {
                            if x == 2 {
                                p.terminate();
                            }
                            x
                        },
                        0..20u32,
                    );
                    assert_eq!(got, (0..20).collect::<Vec<_>>(), "map returns every result");
                }
                _ => {
                    let queued_after = {
                        let h = pool.apply_async(move || {
                            p.terminate();
                            1
                        });
                        let q = pool.apply_async(|| 2);
                        (h.get(), q.get())
                    };
                    assert_eq!(queued_after.0, Ok(1));
                    assert!(
                        matches!(
                            queued_after.1,
                            Ok(2) | Err(TaskError::Cancelled | TaskError::NotRunning)
                        ),
                        "{:?}",
                        queued_after.1
                    );
                }
            }
            pool.join();
            assert_settled(&pool);
        }
    });
}

/// Under `Abort`, a refused apply's panic (closed pool) and a discarded
/// apply's panic (terminated while queued) abort the process, as a
/// worker's would; a panicking callback or a result's `Drop` on the caller
/// does not. Each case runs in its own child process.
#[test]
fn abort_policy_on_the_refused_apply_path() {
    guard(60, || {
        for (case, must_abort) in [
            ("closed", true),
            ("terminated", true),
            ("stray", true),
            ("callback", false),
        ] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "final_round_abort_child",
                    "--nocapture",
                ])
                .env("PARPOOL_FINAL_ABORT_CASE", case)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            if must_abort {
                assert!(
                    !out.status.success(),
                    "{case}: the child must not exit normally"
                );
                assert!(
                    stderr.contains("policy is Abort"),
                    "{case}: stderr: {stderr}"
                );
                #[cfg(unix)]
                {
                    use std::os::unix::process::ExitStatusExt;
                    assert_eq!(out.status.signal(), Some(6), "{case}: SIGABRT");
                }
            } else {
                assert!(
                    out.status.success() && stdout.contains("CHILD-OK"),
                    "{case}: {:?}\n{stdout}\n{stderr}",
                    out.status
                );
            }
        }
    });
}

#[test]
#[ignore = "run as a child process by abort_policy_on_the_refused_apply_path"]
fn final_round_abort_child() {
    let Ok(case) = std::env::var("PARPOOL_FINAL_ABORT_CASE") else {
        return;
    };
    let pool = pool_in(State::Open, 1, PanicPolicy::Abort);
    match case.as_str() {
        "closed" => {
            pool.close();
            let _ = catch_unwind(AssertUnwindSafe(|| {
                pool.apply(|| -> u8 { panic!("refused") })
            }));
        }
        "terminated" => {
            let pool = Arc::new(pool);
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let (st_tx, st_rx) = std::sync::mpsc::channel::<()>();
            let _blocker = pool.apply_async(move || {
                st_tx.send(()).unwrap();
                let _ = go_rx.recv();
            });
            st_rx.recv().unwrap();
            let p2 = Arc::clone(&pool);
            let caller = std::thread::spawn(move || {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    p2.apply(|| -> u8 { panic!("discarded") })
                }));
            });
            while pool.stats().queued == 0 {
                std::thread::yield_now();
            }
            pool.terminate();
            let _ = caller.join();
            drop(go_tx);
        }
        "stray" => {
            // A refused closure's panicking `Drop` is a stray panic: it
            // meets the policy too.
            pool.close();
            let bomb = DropBomb("stray");
            let _ = pool.apply_async(move || drop(bomb)).get();
        }
        _ => {
            std::panic::set_hook(Box::new(|_| {}));
            let h = pool.apply_async(|| 1).on_success(|_| panic!("cb"));
            assert_eq!(h.get(), Ok(1));
            let _ = catch_unwind(AssertUnwindSafe(|| drop(pool.apply(|| DropBomb("result")))));
            pool.close();
            pool.join();
            println!("CHILD-OK");
            return;
        }
    }
    println!("NOT ABORTED");
    std::process::exit(0);
}

/// Workers that retire after every task (`max_tasks_per_worker(1)`) on a
/// closed pool: the backlog, and work a job submits from its worker after
/// `close` (accepted there), still runs; `join` returns; nothing stranded.
#[test]
fn retiring_workers_after_close_strand_nothing() {
    guard(20, || {
        for workers in [1, 3] {
            let pool = Arc::new(
                ThreadPool::builder()
                    .workers(workers)
                    .max_tasks_per_worker(1)
                    .build()
                    .unwrap(),
            );
            let hs: Vec<_> = (0..40u32).map(|i| pool.apply_async(move || i)).collect();
            let p = Arc::clone(&pool);
            let (tx, rx) = std::sync::mpsc::channel();
            let nested = pool.apply_async(move || {
                p.close();
                // Accepted from a worker after close; this worker retires
                // once this job ends, so another must run it.
                let inner = p.apply_async(|| 99);
                tx.send(inner).unwrap();
                1
            });
            pool.close();
            pool.join();
            for (i, h) in hs.into_iter().enumerate() {
                assert_eq!(h.get(), Ok(i as u32));
            }
            assert_eq!(nested.get(), Ok(1));
            let inner = rx.recv().unwrap();
            assert_eq!(inner.get(), Ok(99), "work nested after close was stranded");
            assert_settled(&pool);
            assert_eq!(pool.stats().completed, 42);
        }
    });
}

/// An input iterator whose `next` panics at item 5, and an `f` that panics
/// at item 7, through `imap`, `imap_unordered` and `map` in every pool state
/// and under Propagate and Terminate: the consumer gets a clear panic (with
/// the right message) after at most the items before it, never a hang,
/// never a duplicate; each Probe input is dropped once; stats settle.
#[test]
fn panicking_input_iterators_and_items_through_every_map_kind() {
    child::hide_expected_panics();
    guard(30, || {
        for policy in [PanicPolicy::Propagate, PanicPolicy::Terminate] {
            for state in [State::Open, State::Closed, State::Terminated] {
                for kind in 0..3 {
                    for bad_input in [true, false] {
                        let what =
                            format!("{policy:?}/{state:?}/kind {kind}/bad_input {bad_input}");
                        let pool = pool_in(state, 2, policy);
                        let drops = counters(20);
                        let d2 = Arc::clone(&drops);
                        let made = counters(20);
                        let m2 = Arc::clone(&made);
                        let inputs = (0..20usize).map(move |i| {
                            if bad_input && i == 5 {
                                panic!("input-boom");
                            }
                            m2[i].fetch_add(1, SeqCst);
                            Probe::new(i, &d2)
                        });
                        let runs = counters(20);
                        let r2 = Arc::clone(&runs);
                        let f = move |p: Probe| {
                            r2[p.id].fetch_add(1, SeqCst);
                            if p.id == 7 {
                                panic!("f-boom");
                            }
                            p.id
                        };
                        let mut seen = Vec::new();
                        let out = catch_unwind(AssertUnwindSafe(|| match kind {
                            0 => {
                                for x in pool.imap(f, inputs) {
                                    seen.push(x);
                                }
                            }
                            1 => {
                                for x in pool.imap_unordered(f, inputs) {
                                    seen.push(x);
                                }
                            }
                            _ => seen = pool.chunked(1).map(f, inputs),
                        }));
                        let msg = panic_message(&*out.expect_err(&what));
                        let want = if bad_input { "input-boom" } else { "f-boom" };
                        assert_eq!(msg, want, "{what}");
                        let mut s = seen.clone();
                        s.sort();
                        s.dedup();
                        assert_eq!(s.len(), seen.len(), "{what}: duplicate");
                        assert!(seen.iter().all(|&i| i != 7), "{what}");
                        if bad_input {
                            assert!(seen.iter().all(|&i| i < 5), "{what}: {seen:?}");
                        }
                        if kind == 0 {
                            assert_eq!(seen, (0..seen.len()).collect::<Vec<_>>(), "{what}");
                        }
                        if pool.is_running() {
                            pool.close();
                        }
                        pool.join();
                        for i in 0..20 {
                            // Lazily pulled inputs (imap on a terminated
                            // pool) may never be made; each made one is
                            // dropped once.
                            let want = made[i].load(SeqCst);
                            assert!(want <= 1, "{what}: input {i} pulled twice");
                            if bad_input && i >= 5 || kind == 2 && !bad_input {
                                assert_eq!(want, usize::from(!bad_input), "{what}: made {i}");
                            }
                            assert_eq!(drops[i].load(SeqCst), want, "{what}: drops of {i}");
                            assert!(runs[i].load(SeqCst) <= 1, "{what}: {i} ran twice");
                        }
                        assert_settled(&pool);
                    }
                }
            }
        }
    });
}

/// `cancel`, `terminate` and the worker racing for one task, with an
/// `on_error` callback and a `map_async` beside it: `cancel() == true`
/// means the closure never ran and `get` is `Cancelled`; a closure runs at
/// most once and is dropped once; callbacks run exactly once per error.
#[test]
fn cancel_terminate_and_the_worker_race_for_a_task() {
    guard(30, || {
        for round in 0..300u64 {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let b = Book::new(2);
            let errs = Arc::new(AtomicUsize::new(0));
            let (p, runs) = b.probe(0);
            let e2 = Arc::clone(&errs);
            let h = pool
                .apply_async(move || {
                    let _p = p;
                    runs[0].fetch_add(1, SeqCst);
                    5
                })
                .on_error(move |_| {
                    e2.fetch_add(1, SeqCst);
                });
            let (p, runs) = b.probe(1);
            let ma = pool.map_async(
                move |x: u32| {
                    if x == 0 {
                        runs[1].fetch_add(1, SeqCst);
                    }
                    let _ = &p;
                    x
                },
                0..8u32,
            );
            let p2 = Arc::clone(&pool);
            let spin = round % 50;
            let t = std::thread::spawn(move || {
                for _ in 0..spin {
                    std::hint::spin_loop();
                }
                p2.terminate();
            });
            for _ in 0..(round % 7) {
                std::hint::spin_loop();
            }
            let cancelled = h.cancel();
            let ma_cancelled = ma.cancel();
            t.join().unwrap();
            let out = h.get();
            pool.join();
            if cancelled {
                assert_eq!(out, Err(TaskError::Cancelled), "round {round}");
                assert_eq!(b.ran(0), 0, "round {round}: cancelled yet ran");
            }
            match out {
                Ok(5) => assert_eq!(b.ran(0), 1),
                Err(TaskError::Cancelled) => {}
                other => panic!("round {round}: {other:?}"),
            }
            let ma_out = ma.get();
            if ma_cancelled {
                assert_eq!(ma_out, Err(TaskError::Cancelled), "round {round}");
            }
            if let Ok(v) = &ma_out {
                assert_eq!(*v, (0..8).collect::<Vec<_>>());
            }
            assert_eq!(
                errs.load(SeqCst),
                usize::from(out.is_err()),
                "round {round}"
            );
            b.check(&format!("round {round}"));
            assert_settled(&pool);
        }
    });
}

/// A scope whose own job terminates the pool, on the caller and inside a
/// job of a one-worker pool: the scope returns; each spawned closure runs
/// at most once and is dropped once; after the terminate, `spawn` runs on
/// the submitting thread (exactly once) and `apply_async` reports
/// `NotRunning` (from a non-worker).
#[test]
fn scopes_whose_jobs_terminate_the_pool() {
    guard(20, || {
        for inside_job in [false, true] {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let b = Arc::new(Book::new(40));
            let p = Arc::clone(&pool);
            let b2 = Arc::clone(&b);
            let body = move || {
                let pool = p;
                let b = b2;
                let local = AtomicUsize::new(0);
                pool.scope(|s| {
                    let l = &local;
                    for i in 0..30 {
                        let (probe, runs) = b.probe(i);
                        let pool = Arc::clone(&pool);
                        s.spawn(move || {
                            let _p = probe;
                            runs[i].fetch_add(1, SeqCst);
                            l.fetch_add(1, SeqCst);
                            if i == 3 {
                                pool.terminate();
                            }
                        });
                    }
                    while pool.is_running() {
                        std::thread::yield_now();
                        if inside_job {
                            // The one worker is this thread: terminate here.
                            pool.terminate();
                        }
                    }
                    let (probe, runs) = b.probe(30);
                    let here = std::thread::current().id();
                    s.spawn(move || {
                        let _p = probe;
                        assert_eq!(std::thread::current().id(), here);
                        runs[30].fetch_add(1, SeqCst);
                    });
                    let h = s.apply_async(|| 1);
                    if inside_job {
                        // A worker may still submit to its terminated pool?
                        // Whatever it says, it resolves.
                        let _ = h.get();
                    } else {
                        assert_eq!(h.get(), Err(TaskError::NotRunning));
                    }
                });
                local.load(SeqCst)
            };
            let ran = if inside_job { pool.apply(body) } else { body() };
            pool.join();
            for i in 31..40 {
                drop(b.probe(i).0);
            }
            b.check(&format!("inside_job {inside_job}"));
            assert_eq!(b.ran(30), 1, "spawn after terminate ran on the caller");
            let total: usize = (0..30).map(|i| b.ran(i)).sum();
            assert_eq!(total, ran);
            assert_settled(&pool);
        }
    });
}

/// Stray panics (user code with no consumer: a refused or discarded
/// closure's `Drop`) are counted in `panicked` but are not items that ran,
/// so `panicked` may exceed `completed` once the pool is idle; under
/// Terminate they terminate the pool, as `Stats::panicked` documents.
#[test]
fn stray_panics_count_in_panicked_but_not_in_completed() {
    child::hide_expected_panics();
    guard(20, || {
        // A refused apply_async whose closure's capture panics on drop.
        let pool = pool_in(State::Closed, 1, PanicPolicy::Propagate);
        let bomb = DropBomb("refused-drop");
        let h = pool.apply_async(move || {
            let _b = bomb;
        });
        assert_eq!(h.get(), Err(TaskError::NotRunning));
        finish_lax(&pool);
        let s = pool.stats();
        assert_eq!((s.completed, s.panicked), (0, 1), "{s:?}");

        // Discarded by terminate, under Terminate on an open pool.
        let pool = pool_in(State::Open, 1, PanicPolicy::Terminate);
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let blocker = pool.apply_async(move || {
            let _ = go_rx.recv();
        });
        let bomb = DropBomb("discarded-drop");
        let h = pool.apply_async(move || {
            let _b = bomb;
        });
        pool.terminate();
        assert_eq!(h.get(), Err(TaskError::Cancelled));
        drop(go_tx);
        let _ = blocker.get();
        finish_lax(&pool);
        let s = pool.stats();
        assert_eq!(s.panicked, 1, "{s:?}");
        assert!(s.completed <= 1, "{s:?}");
    });
}

/// [`finish`] for a pool with stray panics: `panicked` may exceed
/// `completed` there.
fn finish_lax(pool: &ThreadPool) {
    close_and_join(pool);
    assert_idle(pool);
}

/// The last handle to a pool dropped inside its own job (on a worker): the
/// pool is closed, not joined; work queued behind still runs and every
/// handle resolves.
#[test]
fn last_pool_handle_dropped_on_its_worker() {
    guard(20, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let p = Arc::clone(&pool);
        let a = pool.apply_async(move || {
            go_rx.recv().unwrap();
            drop(p);
            1
        });
        let hs: Vec<_> = (0..20u32).map(|i| pool.apply_async(move || i)).collect();
        drop(pool);
        go_tx.send(()).unwrap();
        assert_eq!(a.get(), Ok(1));
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.get(), Ok(i as u32));
        }
    });
}

/// `terminate` while `apply`'s closure runs on a worker (and while a scoped
/// `apply_async` runs): the closure finishes, `apply` returns its value,
/// never a "did not complete" panic, and it ran once.
#[test]
fn terminate_while_apply_runs_on_a_worker() {
    guard(20, || {
        for round in 0..20u64 {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let runs = Arc::new(AtomicUsize::new(0));
            let p2 = Arc::clone(&pool);
            let (st_tx, st_rx) = std::sync::mpsc::channel::<()>();
            let t = std::thread::spawn(move || {
                st_rx.recv().unwrap();
                std::thread::sleep(Duration::from_micros(round * 50));
                p2.terminate();
            });
            let r2 = Arc::clone(&runs);
            let v = pool.apply(move || {
                st_tx.send(()).unwrap();
                r2.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                // `cancelled()` may turn true; the result still counts.
                round
            });
            assert_eq!(v, round);
            assert_eq!(runs.load(SeqCst), 1);
            t.join().unwrap();
            pool.join();
            assert_settled(&pool);
            assert_eq!(pool.stats().completed, 1);
        }
    });
}

/// `try_map` stopping at an `Err` in every pool state and chunksize
/// (1 and `usize::MAX`): the first error in input order is returned (or an
/// earlier one's), each input is dropped once and run at most once, and
/// stats settle.
#[test]
fn try_map_errors_in_every_state_and_chunksize() {
    guard(20, || {
        for state in [State::Open, State::Closed, State::Terminated] {
            for chunk in [1, usize::MAX] {
                let what = format!("{state:?}/chunk {chunk}");
                let pool = pool_in(state, 2, PanicPolicy::Propagate);
                let b = Book::new(50);
                let items: Vec<(Probe, usize)> = (0..50).map(|i| (b.probe(i).0, i)).collect();
                let runs = Arc::clone(&b.runs);
                let out = pool.chunked(chunk).try_map(
                    move |(p, i): (Probe, usize)| {
                        runs[i].fetch_add(1, SeqCst);
                        drop(p);
                        if i == 17 || i == 33 {
                            Err(i)
                        } else {
                            Ok(i)
                        }
                    },
                    items,
                );
                assert_eq!(out, Err(17), "{what}");
                assert_eq!(b.ran(17), 1, "{what}");
                finish(&pool);
                b.check(&what);
            }
        }
    });
}

/// A long backlog (once past the ring, spilled and refilled; now many of
/// the queue's blocks) on workers that retire after every task, with
/// `close` or `terminate` landing mid-drain: every handle resolves (all
/// `Ok` after `close`), every closure runs at most once and is dropped
/// once, stats settle.
#[test]
fn spilled_backlog_on_retiring_workers_across_close_and_terminate() {
    guard(30, || {
        for round in 0..6u64 {
            let terminate = round % 2 == 1;
            let pool = ThreadPool::builder()
                .workers(2)
                .max_tasks_per_worker(1)
                .build()
                .unwrap();
            let n = 1500;
            let b = Book::new(n);
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    let (p, runs) = b.probe(i);
                    pool.apply_async(move || {
                        let _p = p;
                        runs[i].fetch_add(1, SeqCst);
                        i
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_micros(round * 300));
            close_or_terminate(&pool, terminate);
            pool.join();
            for (i, h) in hs.into_iter().enumerate() {
                match h.get() {
                    Ok(v) => {
                        assert_eq!(v, i);
                        assert_eq!(b.ran(i), 1);
                    }
                    Err(TaskError::Cancelled) if terminate => assert_eq!(b.ran(i), 0),
                    other => panic!("round {round}: task {i}: {other:?}"),
                }
            }
            b.check(&format!("round {round}"));
            assert_settled(&pool);
            let s = pool.stats();
            let ran: usize = (0..n).map(|i| b.ran(i)).sum();
            assert_eq!(s.completed, ran, "{s:?}");
        }
    });
}

/// `apply` nested in one of the pool's own jobs runs `f` right there, as
/// part of that job: a panic the job catches is not counted and does not
/// meet the policy (counting it there would count an uncaught one twice);
/// one the job lets unwind counts once, as the job's, and meets the policy.
#[test]
fn nested_apply_panic_counts_once_as_its_job_s() {
    child::hide_expected_panics();
    guard(20, || {
        for policy in [PanicPolicy::Propagate, PanicPolicy::Terminate] {
            let pool = Arc::new(pool_in(State::Open, 1, policy));
            let p = Arc::clone(&pool);
            let caught = pool
                .apply_async(move || {
                    catch_unwind(AssertUnwindSafe(|| p.apply(|| -> u8 { panic!("inner") })))
                        .map_err(|e| panic_message(&*e))
                })
                .get();
            assert_eq!(caught, Ok(Err("inner".to_owned())), "{policy:?}");
            let s = pool.stats();
            assert_eq!((s.completed, s.panicked), (1, 0), "{policy:?}: {s:?}");
            assert!(pool.is_running(), "{policy:?}");
            let p = Arc::clone(&pool);
            let uncaught = pool
                .apply_async(move || p.apply(|| -> u8 { panic!("inner") }))
                .get();
            assert_eq!(uncaught, Err(TaskError::Panicked("inner".to_owned())));
            let s = pool.stats();
            assert_eq!(
                (s.completed, s.panicked),
                (2, 1),
                "{policy:?}: counted once: {s:?}"
            );
            assert_eq!(pool.is_running(), policy == PanicPolicy::Propagate);
            finish(&pool);
        }
    });
}
