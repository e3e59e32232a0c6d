//! Attacks on `spawn` without a handle (the slot starts with its handle
//! gone; a claimer's scope count borrows the scope from the slot) and on the
//! one-pointer `AsyncResult` (whether the outcome was taken lives in the
//! slot).
mod common;

use common::{guard, panic_message, quiet_panics_containing};
use parpool::{PanicPolicy, TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

fn quiet() {
    quiet_panics_containing("attack");
}

fn wait_idle(pool: &ThreadPool) -> parpool::Stats {
    let start = Instant::now();
    loop {
        let s = pool.stats();
        if s.queued == 0 && s.running == 0 {
            std::thread::sleep(Duration::from_millis(5));
            if pool.stats() == s {
                return s;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never idle: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Counts its drops, and panics in `Drop` if asked.
struct Bomb<'a> {
    drops: &'a AtomicUsize,
    explode: bool,
}

impl Drop for Bomb<'_> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.explode && !std::thread::panicking() {
            panic!("attack: bomb drop");
        }
    }
}

#[test]
fn scoped_spawns_borrowing_the_stack_that_panic_reraise_after_every_job() {
    quiet();
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        let rounds = if cfg!(miri) { 8 } else { 100 };
        for round in 0..rounds {
            let data: Vec<String> = (0..8).map(|i| format!("item{i}")).collect();
            let ran = AtomicUsize::new(0);
            let out = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    for (i, item) in data.iter().enumerate() {
                        let ran = &ran;
                        s.spawn(move || {
                            if i == round % 8 {
                                panic!("attack: {item}");
                            }
                            assert!(item.starts_with("item"));
                            ran.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                })
            }));
            let p = out.expect_err("the scope re-raises the spawn's panic");
            assert_eq!(
                panic_message(p.as_ref()),
                format!("attack: item{}", round % 8)
            );
            assert_eq!(
                ran.load(Ordering::SeqCst),
                7,
                "every other job ran before the scope ended"
            );
        }
        let s = wait_idle(&pool);
        assert_eq!(s.completed, 8 * rounds);
        assert_eq!(s.panicked, rounds);
    });
}

#[test]
fn spawn_stats_are_exact() {
    quiet();
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        let n = if cfg!(miri) { 30 } else { 300 };
        for i in 0..n {
            pool.spawn(move || {
                if i % 10 == 0 {
                    panic!("attack: pool spawn {i}");
                }
            });
        }
        let s = wait_idle(&pool);
        assert_eq!((s.completed, s.panicked), (n, n / 10));
        let _ = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                for i in 0..n {
                    s.spawn(move || {
                        if i % 10 == 0 {
                            panic!("attack: scope spawn {i}");
                        }
                    });
                }
            })
        }))
        .expect_err("re-raised");
        let s = wait_idle(&pool);
        assert_eq!((s.completed, s.panicked), (2 * n, 2 * n / 10));
    });
}

#[test]
fn scoped_spawn_closures_whose_drop_panics_discarded_by_terminate_while_the_scope_waits() {
    quiet();
    guard(20, || {
        for _ in 0..if cfg!(miri) { 2 } else { 20 } {
            let pool = ThreadPool::with_workers(1);
            let drops = AtomicUsize::new(0);
            let ran = AtomicUsize::new(0);
            let (started_tx, started_rx) = mpsc::channel();
            let release = Barrier::new(2);
            let out = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    let release = &release;
                    s.spawn(move || {
                        started_tx.send(()).unwrap();
                        release.wait();
                    });
                    started_rx.recv().unwrap();
                    for _ in 0..10 {
                        let bomb = Bomb {
                            drops: &drops,
                            explode: true,
                        };
                        let ran = &ran;
                        s.spawn(move || {
                            let _b = &bomb;
                            ran.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    pool.terminate();
                    release.wait();
                })
            }));
            // Nothing panicked in a task; the bombs' `Drop` panics are strays.
            assert!(out.is_ok(), "no task panicked");
            assert_eq!(
                ran.load(Ordering::SeqCst),
                0,
                "terminate discards queued spawns"
            );
            assert_eq!(
                drops.load(Ordering::SeqCst),
                10,
                "each closure dropped once"
            );
            pool.join();
            let st = pool.stats();
            assert_eq!((st.completed, st.panicked, st.queued), (1, 10, 0));
        }
    });
}

#[test]
fn scoped_spawn_closures_whose_drop_panics_after_running() {
    quiet();
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        for _ in 0..if cfg!(miri) { 3 } else { 50 } {
            let drops = AtomicUsize::new(0);
            let ran = AtomicUsize::new(0);
            let out = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    for _ in 0..4 {
                        let bomb = Bomb {
                            drops: &drops,
                            explode: true,
                        };
                        let ran = &ran;
                        s.spawn(move || {
                            let b = bomb;
                            ran.fetch_add(1, Ordering::SeqCst);
                            drop(b);
                        });
                    }
                })
            }));
            let p = out.expect_err("a closure's panicking drop inside it is its panic");
            assert_eq!(panic_message(p.as_ref()), "attack: bomb drop");
            assert_eq!(ran.load(Ordering::SeqCst), 4);
            assert_eq!(drops.load(Ordering::SeqCst), 4);
        }
        // A closure's panicking `Drop` as it runs is its task's panic:
        // counted once, as run and as panicked.
        let rounds = if cfg!(miri) { 3 } else { 50 };
        let st = wait_idle(&pool);
        assert_eq!((st.completed, st.panicked), (4 * rounds, 4 * rounds));
        // The pool still works.
        assert_eq!(pool.apply_async(|| 5).get(), Ok(5));
    });
}

#[test]
fn many_tiny_scopes_whose_last_job_ends_as_the_owner_returns() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        let rounds = if cfg!(miri) { 30 } else { 3000 };
        for r in 0..rounds {
            let mut local = vec![r; 4];
            let total = AtomicUsize::new(0);
            pool.scope(|s| {
                let (a, b) = local.split_at_mut(2);
                let total = &total;
                s.spawn(move || {
                    a[0] += 1;
                    total.fetch_add(a.len(), Ordering::Relaxed);
                });
                s.spawn(move || {
                    b[1] += 1;
                    total.fetch_add(b.len(), Ordering::Relaxed);
                });
            });
            assert_eq!(local, [r + 1, r, r, r + 1]);
            assert_eq!(total.into_inner(), 4);
        }
    });
}

#[test]
fn nested_spawns_from_inside_spawned_jobs() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        let count = AtomicUsize::new(0);
        pool.scope(|s| {
            let count = &count;
            for _ in 0..8 {
                s.spawn(move || {
                    for _ in 0..8 {
                        s.spawn(move || {
                            s.spawn(move || {
                                count.fetch_add(1, Ordering::SeqCst);
                            });
                            count.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                });
            }
        });
        assert_eq!(count.load(Ordering::SeqCst), 128);

        let pool = Arc::new(ThreadPool::with_workers(2));
        let (tx, rx) = mpsc::channel();
        for i in 0..16 {
            let tx = tx.clone();
            let p = Arc::clone(&pool);
            pool.spawn(move || {
                let tx2 = tx.clone();
                p.spawn(move || tx2.send(i * 2 + 1).unwrap());
                tx.send(i * 2).unwrap();
            });
        }
        drop(tx);
        let mut got: Vec<i32> = rx.iter().collect();
        got.sort();
        assert_eq!(got, (0..32).collect::<Vec<_>>());
        let s = wait_idle(&pool);
        assert_eq!(s.completed, 32);
    });
}

/// Runs or drops exactly once.
struct Once<'a> {
    ran: &'a AtomicUsize,
    dropped: &'a AtomicUsize,
}

impl Drop for Once<'_> {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn spawn_racing_close_and_terminate_runs_or_drops_each_job_once() {
    guard(20, || {
        for mode in 0..3 {
            for _ in 0..if cfg!(miri) { 1 } else { 20 } {
                let pool = ThreadPool::with_workers(2);
                let ran = AtomicUsize::new(0);
                let dropped = AtomicUsize::new(0);
                let n = if cfg!(miri) { 20 } else { 200 };
                pool.scope(|s| {
                    std::thread::scope(|t| {
                        t.spawn(|| {
                            for _ in 0..n {
                                let once = Once {
                                    ran: &ran,
                                    dropped: &dropped,
                                };
                                s.spawn(move || {
                                    once.ran.fetch_add(1, Ordering::SeqCst);
                                });
                            }
                        });
                        std::thread::yield_now();
                        match mode {
                            0 => pool.close(),
                            _ => pool.terminate(),
                        }
                    });
                });
                assert_eq!(
                    dropped.load(Ordering::SeqCst),
                    n,
                    "every closure dropped once"
                );
                let r = ran.load(Ordering::SeqCst);
                if mode == 0 {
                    assert_eq!(r, n, "close runs queued and refused spawns");
                }
                assert!(r <= n);
                pool.join();
            }
        }
    });
}

#[test]
fn pool_spawn_racing_drop_of_the_pool() {
    guard(20, || {
        let (rounds, n) = if cfg!(miri) { (2, 10) } else { (50, 100) };
        for _ in 0..rounds {
            let ran = Arc::new(AtomicUsize::new(0));
            let pool = ThreadPool::with_workers(2);
            for _ in 0..n {
                let ran = Arc::clone(&ran);
                pool.spawn(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
            drop(pool);
            // Whatever ran, ran once; the pool's drop returned.
            // Drop is close + join: queued spawns still run, each once.
            assert_eq!(ran.load(Ordering::SeqCst), n);
            // Every closure (and its `Arc`) is gone once the workers are.
            let start = Instant::now();
            while Arc::strong_count(&ran) > 1 {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "a spawned closure leaked"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
}

#[test]
fn terminate_policy_with_spawn() {
    quiet();
    guard(20, || {
        let pool = common::terminating_on_panic(1);
        let ran = Arc::new(AtomicUsize::new(0));
        pool.spawn(|| panic!("attack: terminate"));
        let start = Instant::now();
        loop {
            // A refused spawn runs on the caller's thread.
            let r = Arc::clone(&ran);
            let here = std::thread::current().id();
            let (tx, rx) = mpsc::channel();
            pool.spawn(move || {
                r.fetch_add(1, Ordering::SeqCst);
                tx.send(std::thread::current().id()).unwrap();
            });
            if rx.recv_timeout(Duration::from_secs(5)).ok() == Some(here) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5));
        }
        pool.join();
        let s = pool.stats();
        assert_eq!(s.panicked, 1);

        // In a scope: the scope re-raises, the pool is terminated.
        let pool = common::terminating_on_panic(2);
        let data = vec![1, 2, 3];
        let out = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                for x in &data {
                    s.spawn(move || {
                        if *x == 2 {
                            panic!("attack: scoped terminate");
                        }
                    });
                }
            })
        }));
        assert_eq!(
            panic_message(out.unwrap_err().as_ref()),
            "attack: scoped terminate"
        );
        assert_eq!(pool.apply_async(|| 1).get(), Err(TaskError::NotRunning));
        pool.join();
    });
}

#[test]
fn abort_policy_with_spawn_aborts() {
    if std::env::var("PARPOOL_SPAWN_ABORT_CHILD").is_ok() {
        let pool = ThreadPool::builder()
            .workers(1)
            .on_panic(PanicPolicy::Abort)
            .build()
            .unwrap();
        let data = [1];
        pool.scope(|s| s.spawn(|| assert_eq!(data[0], 2, "attack: abort")));
        std::process::exit(0);
    }
    guard(60, || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "abort_policy_with_spawn_aborts", "--nocapture"])
            .env("PARPOOL_SPAWN_ABORT_CHILD", "1")
            .output()
            .unwrap();
        assert!(!out.status.success(), "the child must not exit normally");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(6), "SIGABRT");
        }
    });
}

#[test]
fn handle_shared_across_threads_then_moved_after_get_timeout() {
    quiet();
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        for ok in [true, false] {
            for _ in 0..if cfg!(miri) { 3 } else { 50 } {
                let mut h = pool.apply_async(move || {
                    std::thread::sleep(Duration::from_micros(200));
                    if !ok {
                        panic!("attack: shared");
                    }
                    String::from("v")
                });
                std::thread::scope(|t| {
                    let h = &h;
                    let a = t.spawn(move || loop {
                        if let Some(s) = h.successful() {
                            return s;
                        }
                        std::hint::spin_loop();
                    });
                    let b = t.spawn(move || {
                        h.wait();
                        (h.ready(), h.successful())
                    });
                    assert_eq!(a.join().unwrap(), ok);
                    assert_eq!(b.join().unwrap(), (true, Some(ok)));
                });
                let got = h.get_timeout(Duration::from_secs(5));
                match ok {
                    true => assert_eq!(got, Ok(String::from("v"))),
                    false => assert_eq!(got, Err(TaskError::Panicked("attack: shared".into()))),
                }
                // Moved to another thread after the value was taken.
                let (ready, succ, again) = std::thread::spawn(move || {
                    let again = catch_unwind(AssertUnwindSafe(|| {
                        let _ = h.get_timeout(Duration::from_millis(1));
                    }))
                    .map_err(|p| panic_message(p.as_ref()));
                    (h.ready(), h.successful(), again)
                })
                .join()
                .unwrap();
                assert!(ready);
                assert_eq!(succ, Some(ok));
                assert!(again.unwrap_err().contains("already returned"));
            }
        }
    });
}

#[test]
fn get_timeout_racing_successful_from_sharing_thread_is_impossible_but_sequence_holds() {
    // `get_timeout` needs `&mut`; the nearest legal race is `successful`
    // on one thread while the worker completes, then `get_timeout` with a
    // tiny timeout repeatedly until the value comes.
    guard(20, || {
        let pool = ThreadPool::with_workers(1);
        for _ in 0..if cfg!(miri) { 5 } else { 200 } {
            let mut h = pool.apply_async(|| vec![1u8; 16]);
            let v = loop {
                match h.get_timeout(Duration::from_micros(10)) {
                    // It may finish between the timeout and this look.
                    Err(TaskError::Timeout) => assert_ne!(h.successful(), Some(false)),
                    other => break other,
                }
            };
            assert_eq!(v, Ok(vec![1u8; 16]));
            assert_eq!(h.successful(), Some(true));
            assert!(h.ready());
        }
    });
}

#[test]
fn refused_handle_sequences() {
    guard(20, || {
        let pool = ThreadPool::with_workers(1);
        pool.close();
        let mut h = pool.apply_async(|| 1);
        assert!(h.ready());
        assert_eq!(h.successful(), Some(false));
        assert!(!h.cancel());
        assert!(h.wait_timeout(Duration::ZERO));
        assert_eq!(h.get_timeout(Duration::ZERO), Err(TaskError::NotRunning));
        assert_eq!(h.successful(), Some(false));
        let h = std::thread::spawn(move || {
            assert_eq!(h.successful(), Some(false));
            h
        })
        .join()
        .unwrap();
        let again = catch_unwind(AssertUnwindSafe(|| h.get()));
        assert!(again.is_err(), "a spent handle refuses a second get");
        // Callbacks on a refused handle.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let h = pool
            .apply_async(|| 1)
            .on_error(move |e| s2.lock().unwrap().push(e.clone()));
        assert_eq!(*seen.lock().unwrap(), [TaskError::NotRunning]);
        assert_eq!(h.get(), Err(TaskError::NotRunning));
        pool.join();
    });
}

#[test]
fn result_whose_drop_panics_with_handle_gone_is_contained() {
    quiet();
    guard(20, || {
        let drops = Arc::new(AtomicUsize::new(0));
        struct R(Arc<AtomicUsize>);
        impl Drop for R {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
                panic!("attack: result drop");
            }
        }
        let pool = ThreadPool::with_workers(1);
        let (tx, rx) = mpsc::channel::<()>();
        let blocker = pool.apply_async(move || {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        });
        for _ in 0..10 {
            let d = Arc::clone(&drops);
            drop(pool.apply_async(move || R(d)));
        }
        tx.send(()).unwrap();
        blocker.get().unwrap();
        let s = wait_idle(&pool);
        assert_eq!(drops.load(Ordering::SeqCst), 10);
        // A result's panicking `Drop` on a worker is a stray panic: counted.
        assert_eq!((s.completed, s.panicked), (11, 10));
        assert_eq!(pool.apply_async(|| 3).get(), Ok(3));
    });
}

#[test]
fn await_after_shared_successful() {
    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        for _ in 0..if cfg!(miri) { 5 } else { 100 } {
            let mut h = pool.apply_async(|| 7u64);
            let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
            let mut cx = Context::from_waker(&waker);
            let v = loop {
                let _ = h.successful();
                match std::pin::Pin::new(&mut h).poll(&mut cx) {
                    Poll::Ready(v) => break v,
                    Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
                }
            };
            assert_eq!(v, Ok(7));
            assert_eq!(h.successful(), Some(true));
            let again = catch_unwind(AssertUnwindSafe(|| {
                let _ = std::pin::Pin::new(&mut h).poll(&mut cx);
            }));
            assert!(again.is_err(), "polling a spent handle panics clearly");
        }
    });
}

#[test]
fn refused_spawn_counts_like_a_worker_run() {
    // Was: a refused spawn run on the caller's thread counted its panic but
    // not its run (completed 3, panicked 2 here: panicked ones are meant to
    // be among the completed), while a refused `map` counts its items.
    quiet();
    guard(20, || {
        let pool = ThreadPool::with_workers(1);
        pool.close();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        pool.spawn(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        pool.spawn(|| panic!("attack: refused spawn"));
        let out = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| s.spawn(|| panic!("attack: refused scoped spawn")))
        }));
        assert_eq!(
            panic_message(out.unwrap_err().as_ref()),
            "attack: refused scoped spawn"
        );
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        let m = pool.map(|x: &i32| x + 1, &[1, 2, 3]);
        assert_eq!(m, [2, 3, 4]);
        pool.join();
        let s = pool.stats();
        // Panicked ones are among the completed (`Stats::completed`).
        assert!(s.panicked <= s.completed, "{s:?}");
        assert_eq!((s.completed, s.panicked, s.running), (6, 2, 0), "{s:?}");
    });
}

#[test]
fn terminate_from_another_thread_discards_scoped_spawns_while_the_owner_waits() {
    quiet();
    guard(20, || {
        for _ in 0..if cfg!(miri) { 2 } else { 30 } {
            let pool = ThreadPool::with_workers(1);
            let drops = AtomicUsize::new(0);
            let ran = AtomicUsize::new(0);
            let (started_tx, started_rx) = mpsc::channel();
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            std::thread::scope(|t| {
                let pool = &pool;
                // Terminates once every job is queued, while the scope's
                // owner waits, then lets the one running job end.
                t.spawn(move || {
                    go_rx.recv().unwrap();
                    pool.terminate();
                    release_tx.send(()).unwrap();
                });
                let out = catch_unwind(AssertUnwindSafe(|| {
                    // Freed as soon as the scope returns (Miri checks no job
                    // touches it after).
                    let local: Vec<usize> = (0..5).collect();
                    let local = &local;
                    pool.scope(|s| {
                        s.spawn(move || {
                            started_tx.send(()).unwrap();
                            release_rx.recv().unwrap();
                        });
                        started_rx.recv().unwrap();
                        for (i, item) in local.iter().enumerate() {
                            let bomb = Bomb {
                                drops: &drops,
                                explode: i % 2 == 0,
                            };
                            let ran = &ran;
                            s.spawn(move || {
                                let _b = &bomb;
                                ran.fetch_add(*item, Ordering::SeqCst);
                            });
                        }
                        go_tx.send(()).unwrap();
                    })
                }));
                assert!(out.is_ok());
            });
            assert_eq!(ran.load(Ordering::SeqCst), 0);
            assert_eq!(drops.load(Ordering::SeqCst), 5);
            pool.join();
            let st = pool.stats();
            assert_eq!((st.completed, st.panicked), (1, 3));
        }
    });
}

#[test]
fn the_last_pool_handle_dropped_inside_a_spawned_job() {
    guard(20, || {
        for _ in 0..if cfg!(miri) { 2 } else { 50 } {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let (tx, rx) = mpsc::channel();
            let n = if cfg!(miri) { 8 } else { 64 };
            for i in 0..n {
                let p = Arc::clone(&pool);
                let tx = tx.clone();
                pool.spawn(move || {
                    // Nested spawn while other jobs may hold the last handle.
                    let tx2 = tx.clone();
                    p.spawn(move || tx2.send(n + i).unwrap());
                    tx.send(i).unwrap();
                    drop(p);
                });
            }
            drop(tx);
            drop(pool);
            let mut got: Vec<usize> = rx.iter().collect();
            got.sort_unstable();
            assert_eq!(
                got,
                (0..2 * n).collect::<Vec<_>>(),
                "each job ran exactly once"
            );
        }
    });
}
