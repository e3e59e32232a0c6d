//! A hostile review of a first fix for `terminate`'s drain (commit
//! 5b41e95, replaced): it took every job out of the queue and marked it
//! abandoned before dropping any, and let any waiter cancel an abandoned
//! task itself. These tests found what that broke, and pin what the drain
//! must keep doing: jobs stay in the queue, where a freed worker discards
//! them (a blocking `apply` behind a waiting callback then runs on its
//! caller); a closure's panicking `Drop` is a stray panic of the pool,
//! never re-raised out of someone's `get`; `cancel()` returns `false` only
//! for a task that started; and a timed wait never panics. The drain now
//! works in one pass, and only a wait on the draining thread itself goes
//! on draining (`registry::help_drain`).
mod common;

use common::{guard, quiet_panics_containing};
use parpool::{AsyncResult, TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// X's error callback (run by terminate's drain) waits for a message that
/// another thread sends once its blocking `apply`, queued behind X,
/// returns. Nothing here is a cycle: the apply job only has to be
/// discarded (it then runs on its caller), which the pool's worker does
/// as soon as it is free. A two-pass drain held the apply job in a local
/// `Vec` while it ran X's callback, so nobody could discard it.
#[test]
fn drain_callback_waiting_for_a_blocking_apply_behind_it() {
    let took = guard(60, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let occupant = common::occupy_until_terminate(&pool);
        let (go_tx, go_rx) = mpsc::channel::<u32>();
        let timed_out = Arc::new(AtomicBool::new(false));
        let t = Arc::clone(&timed_out);
        let x = pool.apply_async(|| 0u32).on_error(move |_| {
            if go_rx.recv_timeout(Duration::from_secs(8)).is_err() {
                t.store(true, Ordering::SeqCst);
            }
        });
        common::wait_queued(&pool, 1);
        let p = Arc::clone(&pool);
        let m = std::thread::spawn(move || {
            let v = p.apply(|| 7u32);
            let _ = go_tx.send(v);
        });
        common::wait_queued(&pool, 2);
        let start = Instant::now();
        pool.terminate();
        let took = start.elapsed();
        m.join().unwrap();
        assert_eq!(x.get(), Err(TaskError::Cancelled));
        occupant.get().unwrap();
        pool.join();
        assert!(
            !timed_out.load(Ordering::SeqCst),
            "the callback waited 8 s for the apply caller, whose job the drain held (terminate took {took:?})"
        );
        took
    });
    eprintln!("terminate took {took:?}");
}

/// As above, with a plain thread blocked in `y.get()` since before the
/// terminate.
#[test]
fn drain_callback_waiting_for_a_thread_blocked_in_get_of_a_later_task() {
    let took = guard(60, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let occupant = common::occupy_until_terminate(&pool);
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let timed_out = Arc::new(AtomicBool::new(false));
        let t = Arc::clone(&timed_out);
        let x = pool.apply_async(|| 0u32).on_error(move |_| {
            if go_rx.recv_timeout(Duration::from_secs(8)).is_err() {
                t.store(true, Ordering::SeqCst);
            }
        });
        let y = pool.apply_async(|| 1u32);
        let m = std::thread::spawn(move || {
            let r = y.get();
            let _ = go_tx.send(());
            r
        });
        // Let `m` block in get.
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        pool.terminate();
        let took = start.elapsed();
        assert_eq!(m.join().unwrap(), Err(TaskError::Cancelled));
        assert_eq!(x.get(), Err(TaskError::Cancelled));
        occupant.get().unwrap();
        pool.join();
        assert!(
            !timed_out.load(Ordering::SeqCst),
            "the callback waited 8 s for a thread in y.get(), y held by the drain (terminate took {took:?})"
        );
        took
    });
    eprintln!("terminate took {took:?}");
}

struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("review2 bomb: closure dropped");
        }
    }
}

/// A closure whose `Drop` panics is queued at terminate. Its handle's
/// `get` on a plain thread, while the drain is busy with an earlier task,
/// must report `Cancelled` (the drain contains that panic as a stray one);
/// a waiter that cancelled the task itself re-raised the closure's `Drop`
/// panic out of `get()`, and the pool never counted it.
#[test]
fn get_of_an_abandoned_task_does_not_raise_its_closures_drop_panic() {
    quiet_panics_containing("review2 bomb");
    guard(60, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let (occupant, release) = common::occupy_the_worker(&pool);
        // The drain spends a while on X's callback.
        let x = pool
            .apply_async(|| 0u32)
            .on_error(|_| std::thread::sleep(Duration::from_millis(500)));
        let bomb = Bomb;
        let y = pool.apply_async(move || {
            let _b = &bomb;
            1u32
        });
        let panicked_before = pool.stats().panicked;
        let p = Arc::clone(&pool);
        let t = std::thread::spawn(move || p.terminate());
        std::thread::sleep(Duration::from_millis(150));
        let got = catch_unwind(AssertUnwindSafe(|| y.get()));
        t.join().unwrap();
        drop(release);
        let _ = occupant.get();
        pool.join();
        let stray = pool.stats().panicked - panicked_before;
        match got {
            Ok(r) => assert_eq!(r, Err(TaskError::Cancelled)),
            Err(p) => panic!(
                "y.get() panicked with the closure's Drop panic: {:?} (stray panics counted: {stray})",
                message(p.as_ref()).replace("review2 bomb", "BOMB")
            ),
        }
        assert_eq!(
            stray, 1,
            "the closure's Drop panic was not counted as a stray panic"
        );
        drop(x);
    });
}

/// Same, deterministic: X's error callback (on the drain) gets Y.
#[test]
fn drain_callback_get_of_a_later_task_whose_closure_drop_panics() {
    quiet_panics_containing("review2 bomb");
    guard(60, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let (occupant, release) = common::occupy_the_worker(&pool);
        let cell: Arc<Mutex<Option<AsyncResult<u32>>>> = Arc::new(Mutex::new(None));
        let seen: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (c, s) = (Arc::clone(&cell), Arc::clone(&seen));
        let x = pool.apply_async(|| 0u32).on_error(move |_| {
            let y = c.lock().unwrap().take().unwrap();
            let got = catch_unwind(AssertUnwindSafe(|| y.get()));
            *s.lock().unwrap() = Some(match got {
                Ok(r) => format!("{r:?}"),
                Err(p) => format!(
                    "PANIC {}",
                    message(p.as_ref()).replace("review2 bomb", "BOMB")
                ),
            });
        });
        let bomb = Bomb;
        let y = pool.apply_async(move || {
            let _b = &bomb;
            1u32
        });
        *cell.lock().unwrap() = Some(y);
        pool.terminate();
        drop(release);
        let _ = occupant.get();
        pool.join();
        let _ = x.get();
        let seen = seen.lock().unwrap().clone().unwrap();
        assert_eq!(seen, "Err(Cancelled)", "y.get() in the drain's callback");
    });
}

/// `cancel()` returns `false` only for a task that already started (it
/// keeps running). A second thread that merely waits on the same handle
/// (shared by reference) must not cancel it between `cancel`'s store of
/// its flag and its claim (a waiter that cancelled "abandoned" tasks did:
/// `cancel()` said false, and the task never ran).
#[test]
fn cancel_returns_false_but_the_task_never_ran() {
    guard(120, || {
        let pool = ThreadPool::with_workers(1);
        let (occupant, release) = common::occupy_the_worker(&pool);
        let rounds = 200_000;
        let mut bad = 0;
        let mut first = None;
        let budget = Instant::now() + Duration::from_secs(3);
        let mut done_rounds = 0;
        for round in 0..rounds {
            if Instant::now() > budget {
                break;
            }
            done_rounds = round + 1;
            let ran = Arc::new(AtomicBool::new(false));
            let r = Arc::clone(&ran);
            let h = Arc::new(pool.apply_async(move || {
                r.store(true, Ordering::SeqCst);
                1u32
            }));
            let stop = Arc::new(AtomicBool::new(false));
            let started = Arc::new(AtomicUsize::new(0));
            let (h2, stop2, started2) = (Arc::clone(&h), Arc::clone(&stop), Arc::clone(&started));
            let waiter = std::thread::spawn(move || {
                started2.store(1, Ordering::SeqCst);
                while !stop2.load(Ordering::Relaxed) {
                    if h2.wait_timeout(Duration::ZERO) {
                        break;
                    }
                }
            });
            while started.load(Ordering::SeqCst) == 0 {
                std::hint::spin_loop();
            }
            let said = h.cancel();
            stop.store(true, Ordering::Relaxed);
            waiter.join().unwrap();
            let h = Arc::try_unwrap(h).ok().unwrap();
            let got = h.get();
            if !said {
                bad += 1;
                first.get_or_insert((round, got.clone(), ran.load(Ordering::SeqCst)));
            }
            if bad >= 3 {
                break;
            }
        }
        drop(release);
        occupant.get().unwrap();
        assert_eq!(
            bad, 0,
            "cancel() returned false for a task nobody else could start (worker occupied), {bad} times in {done_rounds} rounds; first (round, get, ran): {first:?}"
        );
        eprintln!("{done_rounds} rounds clean");
    });
}

/// A task B inlined into its parent A's `get` (one worker: always inlined)
/// peeks at A with a *timed* wait. A timed wait cannot hang: it returns
/// `Timeout` when B runs on another worker, so it must not panic when the
/// pool happens to inline B (it did, with the first fix).
#[test]
fn timed_peek_at_the_outer_task_from_an_inlined_task() {
    quiet_panics_containing("a task waited for its own result");
    for how in ["get_timeout_50ms", "wait_timeout_zero"] {
        let got = guard(30, move || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let cell: Arc<Mutex<Option<AsyncResult<String>>>> = Arc::new(Mutex::new(None));
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (p, c) = (Arc::clone(&pool), Arc::clone(&cell));
            let a = pool.apply_async(move || {
                go_rx.recv().unwrap();
                let b = p.apply_async(move || {
                    let mut a = c.lock().unwrap().take().unwrap();
                    let r = catch_unwind(AssertUnwindSafe(|| match how {
                        "get_timeout_50ms" => {
                            format!("{:?}", a.get_timeout(Duration::from_millis(50)))
                        }
                        _ => format!("{}", a.wait_timeout(Duration::ZERO)),
                    }))
                    .unwrap_or_else(|p| {
                        format!(
                            "PANIC: {}",
                            message(p.as_ref()).replace("its own result", "ITS OWN")
                        )
                    });
                    *c.lock().unwrap() = Some(a);
                    r
                });
                format!("{:?}", b.get())
            });
            *cell.lock().unwrap() = Some(a);
            go_tx.send(()).unwrap();
            // Take A's handle back once B is done with it.
            let until = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(a) = cell.lock().unwrap().as_ref() {
                    if a.ready() {
                        break;
                    }
                }
                assert!(Instant::now() < until);
                std::thread::sleep(Duration::from_millis(5));
            }
            let a = cell.lock().unwrap().take().unwrap();
            a.get().unwrap()
        });
        let want = if how == "get_timeout_50ms" {
            "Ok(\"Err(Timeout)\")"
        } else {
            "Ok(\"false\")"
        };
        assert_eq!(got, want, "{how}");
    }
}

/// The same hostage, in a common shape: an error callback records the
/// error in shared state behind a mutex; another thread holds that mutex
/// around a blocking `apply`. (The callback polls `try_lock` for 8 s so
/// that the test fails instead of deadlocking for good.)
#[test]
fn drain_callback_locking_a_mutex_held_around_a_blocking_apply() {
    guard(60, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let occupant = common::occupy_until_terminate(&pool);
        let state = Arc::new(Mutex::new(Vec::<String>::new()));
        let timed_out = Arc::new(AtomicBool::new(false));
        let (s, t) = (Arc::clone(&state), Arc::clone(&timed_out));
        let x = pool.apply_async(|| 0u32).on_error(move |e| {
            let until = Instant::now() + Duration::from_secs(8);
            loop {
                if let Ok(mut g) = s.try_lock() {
                    g.push(e.to_string());
                    return;
                }
                if Instant::now() > until {
                    t.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        common::wait_queued(&pool, 1);
        let (p, s2) = (Arc::clone(&pool), Arc::clone(&state));
        let m = std::thread::spawn(move || {
            let mut g = s2.lock().unwrap();
            let v = p.apply(|| 7u32);
            g.push(format!("apply gave {v}"));
        });
        common::wait_queued(&pool, 2);
        let start = Instant::now();
        pool.terminate();
        let took = start.elapsed();
        m.join().unwrap();
        let _ = x.get();
        occupant.get().unwrap();
        pool.join();
        assert!(
            !timed_out.load(Ordering::SeqCst),
            "terminate took {took:?}: the drain's callback could not take the mutex, held by a thread in apply whose job the drain held"
        );
    });
}
