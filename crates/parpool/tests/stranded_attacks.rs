//! Hostile review of stranded executor waits (commit d2d79dc,
//! `exec_wait::help`, `worker::stranded`, `worker::watch`): a parpool
//! future awaited by an executor on a worker of a pool whose spares cannot
//! start runs the awaited task, or the queue, inside its poll. These tests
//! try to hang it anyway, to leak the wakers it keeps, to spawn threads
//! without end, to overflow the stack through nesting, and to break it
//! with hostile wakers, terminate and panic policies.
#[path = "common/child.rs"]
mod child;
mod common;

use common::spares::{
    counting, late_spares, mark_spares_failing, no_spares, no_spares_counted, no_spares_with,
};
use common::{settle, threads_named};
use futures::{FutureExt, StreamExt};
use parpool::{PanicPolicy, TaskError, ThreadPool};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

// ------------------------------------------------------------- helpers --

/// A minimal executor that does not mark the thread as inside an executor
/// (unlike `futures::executor::block_on`, so it nests): polls, parks until
/// woken, polls again.
fn spin_block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park_timeout(Duration::from_millis(50));
    }
}

// ------------------------------------------------------ remaining hangs --

/// Control for the next test: the same shape with a blocking `get`
/// instead of `block_on`. The uncompensated blocking wait rechecks and runs
/// the job queued after it started waiting.
#[test]
fn control_blocking_get_runs_work_queued_after_it_started_waiting() {
    child::run(
        "control_blocking_get_runs_work_queued_after_it_started_waiting",
        20,
        || {
            let p = no_spares("sc");
            let q = ThreadPool::with_workers(1);
            let pp = Arc::clone(&p);
            let got = p
                .apply_async(move || {
                    let h = q.apply_async(move || {
                        thread::sleep(Duration::from_millis(300));
                        pp.apply_async(|| 5).get_timeout(Duration::from_secs(3))
                    });
                    h.get()
                })
                .get();
            assert_eq!(got, Ok(Ok(Ok(5))));
        },
    );
}

/// A worker stranded in `block_on` of a handle of another pool whose task
/// then queues work on the stranded pool and waits for it. The stranded
/// poll found nothing to run and returned `Pending`; the executor parked
/// the only worker. The push wakes it (`exec_wait::Watched`), and it runs
/// the queued task (it never ran before: nothing woke the worker).
#[test]
fn stranded_block_on_runs_work_queued_after_it_returned_pending() {
    child::run(
        "stranded_block_on_runs_work_queued_after_it_returned_pending",
        20,
        || {
            let p = no_spares("sx");
            let q = ThreadPool::with_workers(1);
            let pp = Arc::clone(&p);
            let got = p
                .apply_async(move || {
                    let h = q.apply_async(move || {
                        thread::sleep(Duration::from_millis(300));
                        pp.apply_async(|| 5).get_timeout(Duration::from_secs(3))
                    });
                    futures::executor::block_on(h)
                })
                .get();
            assert_eq!(
                got,
                Ok(Ok(Ok(5))),
                "the task queued on the stranded pool never ran"
            );
        },
    );
}

/// The same within one pool: a 2-worker pool, no spare possible. Worker 2
/// runs B, which waits (as user code may) for a job X the main thread
/// queues later; worker 1 `block_on`s B's handle, finds nothing queued and
/// returns `Pending`. X is then queued: a pool short of a worker (worker 1
/// counts blocked, no stand-in) must run it (nothing did before the push
/// woke stranded waiters).
#[test]
fn stranded_worker_runs_a_job_queued_later_in_the_same_pool() {
    child::run(
        "stranded_worker_runs_a_job_queued_later_in_the_same_pool",
        20,
        || {
            let (pool, _) = no_spares_counted("sw", 2, PanicPolicy::default());
            mark_spares_failing(&pool);
            let (x_tx, x_rx) = mpsc::channel::<u32>();
            let (b_started_tx, b_started_rx) = mpsc::channel::<()>();
            let b = pool.apply_async(move || {
                b_started_tx.send(()).unwrap();
                x_rx.recv_timeout(Duration::from_secs(3))
            });
            b_started_rx.recv().unwrap();
            let (a_parked_tx, a_parked_rx) = mpsc::channel::<()>();
            let a = pool.apply_async(move || {
                let mut b = b;
                // One poll: stranded, nothing queued, Pending.
                assert!((&mut b).now_or_never().is_none());
                a_parked_tx.send(()).unwrap();
                futures::executor::block_on(b)
            });
            a_parked_rx.recv().unwrap();
            thread::sleep(Duration::from_millis(100));
            pool.spawn(move || {
                let _ = x_tx.send(7);
            });
            assert_eq!(a.get(), Ok(Ok(Ok(7))), "X was never run");
        },
    );
}

/// A non-blocking peek (`now_or_never`) of a handle whose task runs on
/// another pool, on a stranded worker: the peek runs an unrelated queued
/// job inline, and that job waits for what the peeking task does after
/// the peek. Before d2d79dc the peek returned at once; now the job runs
/// inside the peek and can never see it: a deadlock (bounded here by the
/// job's 2 s timeout).
#[test]
fn a_peek_on_a_stranded_worker_does_not_run_a_job_that_waits_for_the_peeker() {
    child::run(
        "a_peek_on_a_stranded_worker_does_not_run_a_job_that_waits_for_the_peeker",
        20,
        || {
            let p = no_spares("sp");
            mark_spares_failing(&p);
            let q = ThreadPool::with_workers(1);
            let peeked = Arc::new(AtomicBool::new(false));
            let pp = Arc::clone(&p);
            let pk = Arc::clone(&peeked);
            let got = p
                .apply_async(move || {
                    // The task on `q` ends only once the gate opens, after
                    // the peek: a peek that waited for it would take the
                    // gate's whole 10 s, not a time the scheduler decides.
                    let (gate_tx, gate_rx) = mpsc::channel::<()>();
                    let mut h = q.apply_async(move || {
                        let _ = gate_rx.recv_timeout(Duration::from_secs(10));
                    });
                    // J: queued behind this job, waits for the peek below.
                    let pk2 = Arc::clone(&pk);
                    let j = pp.apply_async(move || {
                        let until = Instant::now() + Duration::from_secs(2);
                        while !pk2.load(Ordering::SeqCst) {
                            if Instant::now() > until {
                                return false;
                            }
                            thread::sleep(Duration::from_millis(5));
                        }
                        true
                    });
                    let t0 = Instant::now();
                    let first = (&mut h).now_or_never();
                    let peek_took = t0.elapsed();
                    pk.store(true, Ordering::SeqCst);
                    drop(gate_tx);
                    drop(first);
                    drop(h);
                    (peek_took, j)
                })
                .get()
                .unwrap();
            let (peek_took, j) = got;
            assert_eq!(
                j.get(),
                Ok(true),
                "J ran inside the peek and never saw it end"
            );
            // Normal: well under a millisecond; waiting for the gated task:
            // 10 s.
            assert!(
                peek_took < Duration::from_secs(5),
                "the peek took {peek_took:?}"
            );
        },
    );
}

// ------------------------------------------------ what must keep working --

/// Two workers, no spare possible, each `block_on`s a handle whose task
/// is queued: each stranded poll runs its own task.
#[test]
fn two_workers_each_stranded_both_complete() {
    child::run("two_workers_each_stranded_both_complete", 20, || {
        let (pool, _) = no_spares_counted("s2", 2, PanicPolicy::default());
        mark_spares_failing(&pool);
        let hs: Vec<_> = (0..2u32)
            .map(|i| {
                let p = Arc::clone(&pool);
                pool.apply_async(move || {
                    let hs: Vec<_> = (0..50u32).map(|k| p.apply_async(move || k * i)).collect();
                    futures::executor::block_on(futures::future::join_all(hs))
                        .into_iter()
                        .map(Result::unwrap)
                        .sum::<u32>()
                })
            })
            .collect();
        let got: Vec<_> = hs.into_iter().map(|h| h.get()).collect();
        assert_eq!(got, vec![Ok(0), Ok((0..50).sum())]);
    });
}

/// Two one-worker pools, no spare possible in either: P's worker
/// `block_on`s a task of Q, which `block_on`s a task it queues on P. P's
/// stranded poll found nothing queued on P and returned `Pending`; the task
/// Q queues on P afterwards wakes it, and it runs that task (it never ran
/// before, as in `stranded_block_on_runs_work_queued_after_it_returned_pending`).
/// Q's wait is bounded by a 3 s timer so the test ends.
#[test]
fn two_pools_stranded_on_each_other_complete() {
    child::run("two_pools_stranded_on_each_other_complete", 20, || {
        let p = no_spares("sa");
        let q = no_spares("sb");
        mark_spares_failing(&p);
        mark_spares_failing(&q);
        let (pp, qq) = (Arc::clone(&p), Arc::clone(&q));
        let got = p
            .apply_async(move || {
                let pp2 = Arc::clone(&pp);
                futures::executor::block_on(qq.apply_async(move || {
                    thread::sleep(Duration::from_millis(100));
                    let (tx, rx) = futures::channel::oneshot::channel::<()>();
                    thread::Builder::new()
                        .name("timer".into())
                        .spawn(move || {
                            thread::sleep(Duration::from_secs(3));
                            let _ = tx.send(());
                        })
                        .unwrap();
                    futures::executor::block_on(async {
                        futures::select! {
                            r = pp2.apply_async(|| 11).fuse() => r,
                            _ = rx.fuse() => Err(TaskError::Timeout),
                        }
                    })
                }))
            })
            .get();
        assert_eq!(got, Ok(Ok(Ok(11))), "the task queued on P never ran");
    });
}

/// Control: the same nesting where P's task is queued before P's worker
/// polls (Q's task queues it at once, and P's spare fails only after):
/// completes.
#[test]
fn two_pools_stranded_control_task_queued_before_the_poll() {
    child::run(
        "two_pools_stranded_control_task_queued_before_the_poll",
        20,
        || {
            let p = late_spares("sf", 300, true);
            let q = no_spares("sg");
            let (pp, qq) = (Arc::clone(&p), Arc::clone(&q));
            let got = p
                .apply_async(move || {
                    let pp2 = Arc::clone(&pp);
                    futures::executor::block_on(
                        qq.apply_async(move || futures::executor::block_on(pp2.apply_async(|| 11))),
                    )
                })
                .get();
            assert_eq!(got, Ok(Ok(Ok(11))));
        },
    );
}

/// No double run, no lost result: two stranded workers each await 300
/// handles with `join_all`; every task runs exactly once and the stats
/// agree.
#[test]
fn stranded_join_all_runs_every_task_exactly_once() {
    child::run("stranded_join_all_runs_every_task_exactly_once", 20, || {
        let (pool, _) = no_spares_counted("so", 2, PanicPolicy::default());
        mark_spares_failing(&pool);
        let before = pool.stats().completed;
        let runs = common::counters(600);
        let hs: Vec<_> = (0..2usize)
            .map(|w| {
                let p = Arc::clone(&pool);
                let runs = Arc::clone(&runs);
                pool.apply_async(move || {
                    let hs: Vec<_> = (0..300usize)
                        .map(|k| {
                            let runs = Arc::clone(&runs);
                            let id = w * 300 + k;
                            p.apply_async(move || {
                                runs[id].fetch_add(1, Ordering::SeqCst);
                                id
                            })
                        })
                        .collect();
                    futures::executor::block_on(futures::future::join_all(hs))
                        .into_iter()
                        .map(Result::unwrap)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let got: Vec<usize> = hs.into_iter().flat_map(|h| h.get().unwrap()).collect();
        assert_eq!(got, (0..600).collect::<Vec<_>>());
        for (i, r) in runs.iter().enumerate() {
            assert_eq!(r.load(Ordering::SeqCst), 1, "task {i}");
        }
        assert_eq!(pool.stats().completed - before, 602);
    });
}

/// A stream created on a stranded worker, the pool closed, then consumed
/// by `block_on`: refused credits run in the poll, in order, and the pool
/// then joins.
#[test]
fn stranded_stream_after_close_completes_and_the_pool_joins() {
    child::run(
        "stranded_stream_after_close_completes_and_the_pool_joins",
        20,
        || {
            for unordered in [false, true] {
                let p = no_spares(if unordered { "scu" } else { "sco" });
                mark_spares_failing(&p);
                let pp = Arc::clone(&p);
                let h = p.apply_async(move || {
                    let s = if unordered {
                        pp.imap_unordered(|x: u32| x + 1, 0..300)
                            .into_stream()
                            .boxed()
                    } else {
                        pp.imap(|x: u32| x + 1, 0..300).into_stream().boxed()
                    };
                    pp.close();
                    let mut v: Vec<u32> = futures::executor::block_on(s.collect());
                    v.sort_unstable();
                    v
                });
                assert_eq!(h.get(), Ok((1..=300).collect::<Vec<u32>>()));
                p.join();
            }
        },
    );
}

/// `select` of a stranded handle (its task running on another worker until
/// a gate the test opens only after its checks, at most 10 s) against a
/// 50 ms timer: the stranded poll finds nothing to run and returns, so the
/// timer wins, long before the task could end.
#[test]
fn select_of_a_stranded_handle_against_a_timer_lets_the_timer_win() {
    child::run(
        "select_of_a_stranded_handle_against_a_timer_lets_the_timer_win",
        20,
        || {
            let (pool, _) = no_spares_counted("st", 2, PanicPolicy::default());
            mark_spares_failing(&pool);
            let (started_tx, started_rx) = mpsc::channel();
            let (gate_tx, gate_rx) = mpsc::channel::<()>();
            let long = pool.apply_async(move || {
                started_tx.send(()).unwrap();
                let _ = gate_rx.recv_timeout(Duration::from_secs(10));
                1
            });
            started_rx.recv().unwrap();
            let got = pool
                .apply_async(move || {
                    let t0 = Instant::now();
                    let timer = futures::future::ready(()).then(|_| async {
                        let (tx, rx) = futures::channel::oneshot::channel::<()>();
                        thread::Builder::new()
                            .name("timer".into())
                            .spawn(move || {
                                thread::sleep(Duration::from_millis(50));
                                let _ = tx.send(());
                            })
                            .unwrap();
                        let _ = rx.await;
                    });
                    let r = futures::executor::block_on(async {
                        futures::select! {
                            _ = long.fuse() => "handle",
                            _ = timer.fuse() => "timer",
                        }
                    });
                    (r, t0.elapsed())
                })
                .get()
                .unwrap();
            assert_eq!(got.0, "timer");
            // Normal: the timer's 50 ms; a poll that waited for the task:
            // the gate's 10 s.
            assert!(got.1 < Duration::from_secs(5), "took {:?}", got.1);
            drop(gate_tx);
        },
    );
}

/// `terminate` while a stranded poll runs its own task inline: the task
/// finishes, the other joined handle is cancelled, the job returns, and
/// `join` completes.
#[test]
fn terminate_during_a_stranded_poll_ends_cleanly() {
    child::run("terminate_during_a_stranded_poll_ends_cleanly", 20, || {
        let p = no_spares("sk");
        mark_spares_failing(&p);
        let pp = Arc::clone(&p);
        let (inside_tx, inside_rx) = mpsc::channel();
        let h = p.apply_async(move || {
            let a = pp.apply_async(move || {
                inside_tx.send(()).unwrap();
                thread::sleep(Duration::from_millis(300));
                1
            });
            let b = pp.apply_async(|| 2);
            futures::executor::block_on(async { futures::join!(a, b) })
        });
        inside_rx.recv().unwrap();
        p.terminate();
        let got = h.get();
        match got {
            Ok((Ok(1), Err(TaskError::Cancelled))) | Ok((Ok(1), Ok(2))) => {}
            other => panic!("unexpected {other:?}"),
        }
        common::guard(5, move || p.join());
    });
}

/// `PanicPolicy::Terminate`: a task run inside a stranded poll panics;
/// the pool terminates, the awaiting job gets the panic, the other
/// handle is cancelled, and `join` completes.
#[test]
fn a_panic_inside_a_stranded_poll_with_terminate_policy_ends_cleanly() {
    child::run(
        "a_panic_inside_a_stranded_poll_with_terminate_policy_ends_cleanly",
        20,
        || {
            let p = no_spares_with("sq", 1, PanicPolicy::Terminate);
            mark_spares_failing(&p);
            let pp = Arc::clone(&p);
            let h = p.apply_async(move || {
                let a = pp.apply_async(|| -> u32 { panic!("EXPECTED: inline task panics") });
                let b = pp.apply_async(|| 2u32);
                futures::executor::block_on(async { futures::join!(a, b) })
            });
            let got = h.get();
            match got {
                Ok((Err(TaskError::Panicked(m)), b)) => {
                    assert!(m.contains("EXPECTED"), "{m}");
                    assert!(matches!(b, Err(TaskError::Cancelled) | Ok(2)), "{b:?}");
                }
                // The outer job itself may be cancelled by the terminate
                // only if it had not started: it had.
                other => panic!("unexpected {other:?}"),
            }
            common::guard(5, move || p.join());
        },
    );
}

/// Nesting through a nesting-capable executor on a stranded one-worker
/// pool, 200 levels: the inlining depth bounds the stack; past it the
/// poll panics with "cannot make progress", reported as task panics, not a
/// stack overflow or a hang.
#[test]
fn deep_nesting_in_stranded_polls_fails_clearly_not_by_overflow() {
    fn nest(pool: Arc<ThreadPool>, k: u32) -> Result<u32, TaskError> {
        if k == 200 {
            return Ok(k);
        }
        let p = Arc::clone(&pool);
        spin_block_on(pool.apply_async(move || nest(p, k + 1)))?
    }
    child::run(
        "deep_nesting_in_stranded_polls_fails_clearly_not_by_overflow",
        30,
        || {
            common::quiet_parpool_diagnostics();
            let p = no_spares("sn");
            mark_spares_failing(&p);
            let pp = Arc::clone(&p);
            let got = p.apply_async(move || nest(pp, 0)).get();
            match got {
                Ok(Err(TaskError::Panicked(m))) => {
                    assert!(m.contains("cannot make progress"), "{m}")
                }
                Ok(Ok(200)) => {}
                other => panic!("unexpected {other:?}"),
            }
            child::assert_pool_healthy(&p, "after deep nesting");
        },
    );
}

// ------------------------------------------------------------- wakers --

/// The waker kept in the census is released when the future is dropped,
/// or polled to completion, on the worker it waited on. The first task
/// waits for a release sent once the pending poll's clones were counted;
/// each release is then waited for (up to 10 s) rather than slept on.
///
/// The pool is known to be stranded before the poll
/// (`mark_spares_failing`). Otherwise the pending poll asks for a spare,
/// whose initializer fails on its own thread a moment later, and that
/// failure wakes (and so releases) the census's clone, as designed: the
/// count just after the poll was then one short in about 1 run in 5 on a
/// loaded machine.
#[test]
fn kept_wakers_are_released_when_the_future_ends_on_its_worker() {
    child::run(
        "kept_wakers_are_released_when_the_future_ends_on_its_worker",
        20,
        || {
            common::quiet_parpool_diagnostics();
            let p = no_spares("sr");
            mark_spares_failing(&p);
            let q = ThreadPool::with_workers(1);
            let (c, waker) = counting();
            let c2 = Arc::clone(&c);
            // Here: `c`, `c2`, `waker`.
            let base = Arc::strong_count(&c);
            let got = p
                .apply_async(move || {
                    let mut cx = Context::from_waker(&waker);
                    // Pending (the slot's clone and the census's).
                    let (release_tx, release_rx) = mpsc::channel::<()>();
                    let mut h = q.apply_async(move || {
                        let _ = release_rx.recv_timeout(Duration::from_secs(10));
                    });
                    assert!(Pin::new(&mut h).poll(&mut cx).is_pending());
                    let held = Arc::strong_count(&c2);
                    drop(h);
                    // The task ends and wakes (consumes) the slot's clone.
                    release_tx.send(()).unwrap();
                    let after_drop = common::strong_count_falls_to(&c2, base);
                    let mut h = q.apply_async(|| {
                        thread::sleep(Duration::from_millis(100));
                        3
                    });
                    let r = loop {
                        if let Poll::Ready(r) = Pin::new(&mut h).poll(&mut cx) {
                            break r;
                        }
                        thread::sleep(Duration::from_millis(5));
                    };
                    // The task's thread may still hold the slot's clone
                    // it is waking when the poll sees the result.
                    let after_ready = common::strong_count_falls_to(&c2, base);
                    (held, after_drop, after_ready, r)
                })
                .get()
                .unwrap();
            assert_eq!(got, (base + 2, base, base, Ok(3)));
            drop(c);
        },
    );
}

/// A future pending on a worker, then moved to another thread and dropped
/// there: its waker stays in the census until the worker's job returns
/// (documented), then is released (soon after: the count is waited for,
/// up to 10 s, rather than read once).
#[test]
fn a_waker_left_by_a_moved_future_is_released_when_the_job_returns() {
    child::run(
        "a_waker_left_by_a_moved_future_is_released_when_the_job_returns",
        20,
        || {
            let p = no_spares("sm");
            let q = ThreadPool::with_workers(1);
            let (c, waker) = counting();
            let (tx, rx) = mpsc::channel();
            let (back_tx, back_rx) = mpsc::channel::<()>();
            let job = p.apply_async(move || {
                let mut cx = Context::from_waker(&waker);
                let mut h = q.apply_async(|| thread::sleep(Duration::from_millis(300)));
                assert!(Pin::new(&mut h).poll(&mut cx).is_pending());
                drop(waker);
                tx.send(h).unwrap();
                back_rx.recv().unwrap();
            });
            let h = rx.recv().unwrap();
            // Completed on this thread: resumes nothing in the worker's set.
            assert_eq!(futures::executor::block_on(h), Ok(()));
            // The task's thread may still hold the slot's clone it is
            // waking when `block_on` sees the result.
            let while_job_runs = common::strong_count_falls_to(&c, 2);
            back_tx.send(()).unwrap();
            job.get().unwrap();
            let after = common::strong_count_falls_to(&c, 1);
            assert_eq!(after, 1, "the census kept the waker after the job returned");
            assert!(while_job_runs <= 2, "{while_job_runs}");
        },
    );
}

/// A waker that panics when woken, pending on a worker when the spare
/// fails: the failure's wake is contained, and is not a task panic (the
/// `Terminate` policy does not fire); a later poll finds the thread
/// stranded and runs the task. The spare's initializer says it is about
/// to panic, and the test waits for that and then for the failed thread
/// to be gone (it has woken the waiters by then) before it polls again.
#[test]
fn a_waker_panicking_on_wake_is_contained_and_not_a_task_panic() {
    child::run(
        "a_waker_panicking_on_wake_is_contained_and_not_a_task_panic",
        20,
        || {
            struct Bomb;
            impl Wake for Bomb {
                fn wake(self: Arc<Self>) {
                    panic!("EXPECTED: waker panics on wake");
                }
            }
            let started = Arc::new(AtomicBool::new(false));
            let failing = Arc::new(AtomicBool::new(false));
            let f2 = Arc::clone(&failing);
            let pool = Arc::new(
                ThreadPool::builder()
                    .workers(1)
                    .thread_name("sb")
                    .on_panic(PanicPolicy::Terminate)
                    .initializer(move || {
                        if started.swap(true, Ordering::SeqCst) {
                            thread::sleep(Duration::from_millis(100));
                            f2.store(true, Ordering::SeqCst);
                            panic!("EXPECTED: this spare fails late");
                        }
                    })
                    .build()
                    .unwrap(),
            );
            let p = Arc::clone(&pool);
            let got = pool
                .apply_async(move || {
                    let bomb = Waker::from(Arc::new(Bomb));
                    let mut cx = Context::from_waker(&bomb);
                    let mut h = p.apply_async(|| 8);
                    assert!(Pin::new(&mut h).poll(&mut cx).is_pending());
                    let until = Instant::now() + Duration::from_secs(10);
                    while !failing.load(Ordering::SeqCst) {
                        assert!(Instant::now() < until, "the spare never started");
                        thread::sleep(Duration::from_millis(1));
                    }
                    // Gone once it has uncounted itself and woken the
                    // waiters (`worker::start_failed`).
                    assert_eq!(settle("sb", 1, 10), 1, "the failed spare stayed");
                    // The spare failed (waking the bomb, contained):
                    // stranded. The first such poll asks to be polled again
                    // at once (it woke its waker), the next runs the task.
                    let (c, w) = counting();
                    let mut cx = Context::from_waker(&w);
                    assert!(Pin::new(&mut h).poll(&mut cx).is_pending());
                    assert_eq!(c.wakes.load(Ordering::SeqCst), 1, "not woken to poll again");
                    Pin::new(&mut h).poll(&mut cx)
                })
                .get();
            assert_eq!(got, Ok(Poll::Ready(Ok(8))));
            // Not terminated by the waker's panic.
            child::assert_pool_healthy(&pool, "after a panicking waker");
        },
    );
}

/// A waker whose `Drop` panics (every clone): the census's clone is
/// dropped contained, when replaced and when the future ends; nothing
/// aborts, and the task's result arrives.
#[test]
fn a_waker_panicking_on_drop_is_contained() {
    child::run("a_waker_panicking_on_drop_is_contained", 20, || {
        static CLONES: AtomicUsize = AtomicUsize::new(0);
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        fn clone(_: *const ()) -> RawWaker {
            CLONES.fetch_add(1, Ordering::SeqCst);
            RawWaker::new(std::ptr::null(), &VTABLE)
        }
        fn wake(_: *const ()) {}
        fn wake_by_ref(_: *const ()) {}
        fn drop_it(_: *const ()) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            if !thread::panicking() {
                panic!("EXPECTED: waker panics on drop");
            }
        }
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_it);
        let p = late_spares("sd", 100, true);
        let q = ThreadPool::with_workers(1);
        let pp = Arc::clone(&p);
        let got = p
            .apply_async(move || {
                // SAFETY: the vtable's functions ignore the data pointer.
                let waker = std::mem::ManuallyDrop::new(unsafe {
                    Waker::from_raw(clone(std::ptr::null()))
                });
                let mut cx = Context::from_waker(&waker);
                // Pending, then stranded (the spare failed), then
                // replaced by the other handle's poll, then done.
                let mut h = q.apply_async(|| thread::sleep(Duration::from_millis(300)));
                let mut own = pp.apply_async(|| 4);
                let (mut a, mut b) = (None, None);
                while a.is_none() || b.is_none() {
                    if a.is_none() {
                        if let Poll::Ready(r) = Pin::new(&mut h).poll(&mut cx) {
                            a = Some(r);
                        }
                    }
                    if b.is_none() {
                        if let Poll::Ready(r) = Pin::new(&mut own).poll(&mut cx) {
                            b = Some(r);
                        }
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                (a.unwrap(), b.unwrap())
            })
            .get();
        assert_eq!(got, Ok((Ok(()), Ok(4))));
        child::assert_pool_healthy(&p, "after a waker panicking on drop");
        assert!(DROPS.load(Ordering::SeqCst) >= 1);
    });
}

/// A waker that re-enters the pool when the failing spare wakes it
/// (submits a task and drops a handle, on the failing thread): the task
/// runs, and the awaiting job completes.
#[test]
fn a_waker_reentering_the_pool_on_wake_works() {
    child::run("a_waker_reentering_the_pool_on_wake_works", 20, || {
        struct Reenter {
            pool: Arc<ThreadPool>,
            ran: Arc<AtomicUsize>,
            inner: Waker,
        }
        impl Wake for Reenter {
            fn wake(self: Arc<Self>) {
                self.wake_by_ref()
            }
            fn wake_by_ref(self: &Arc<Self>) {
                let ran = Arc::clone(&self.ran);
                drop(
                    self.pool
                        .apply_async(move || ran.fetch_add(1, Ordering::SeqCst)),
                );
                self.inner.wake_by_ref();
            }
        }
        let p = late_spares("se", 150, true);
        let ran = Arc::new(AtomicUsize::new(0));
        let (pp, r2) = (Arc::clone(&p), Arc::clone(&ran));
        let got = p
            .apply_async(move || {
                let h = pp.apply_async(|| 9);
                let q = Arc::clone(&pp);
                futures::executor::block_on(futures::future::poll_fn({
                    let mut h = Some(h);
                    move |cx| {
                        let w = Waker::from(Arc::new(Reenter {
                            pool: Arc::clone(&q),
                            ran: Arc::clone(&r2),
                            inner: cx.waker().clone(),
                        }));
                        let mut cx2 = Context::from_waker(&w);
                        match Pin::new(h.as_mut().unwrap()).poll(&mut cx2) {
                            Poll::Ready(r) => {
                                h = None;
                                Poll::Ready(r)
                            }
                            Poll::Pending => Poll::Pending,
                        }
                    }
                }))
            })
            .get();
        assert_eq!(got, Ok(Ok(9)));
        let until = Instant::now() + Duration::from_secs(3);
        while ran.load(Ordering::SeqCst) == 0 && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            ran.load(Ordering::SeqCst) >= 1,
            "the task the waker submitted never ran"
        );
        child::assert_pool_healthy(&p, "after a re-entering waker");
    });
}

// ------------------------------------------------ threads and retries --

/// Four workers stranded for ~2 s, each `block_on`-ing a stream of short
/// tasks (thousands of polls, counts and uncounts): start attempts stay
/// at about one per second, and the pool never has more than its workers.
#[test]
fn stranded_waits_retry_spares_at_most_about_once_a_second() {
    child::run(
        "stranded_waits_retry_spares_at_most_about_once_a_second",
        30,
        || {
            let (pool, starts) = no_spares_counted("sy", 4, PanicPolicy::default());
            mark_spares_failing(&pool);
            let base = starts.load(Ordering::SeqCst);
            let peak = Arc::new(AtomicUsize::new(0));
            let t0 = Instant::now();
            // All four outer jobs run before any awaits: a stranded poll
            // runs whatever is queued, and an outer job run inside another
            // one's `block_on` would panic there (`EnterError`, documented).
            let all_running = Arc::new(std::sync::Barrier::new(4));
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let p = Arc::clone(&pool);
                    let pk = Arc::clone(&peak);
                    let all_running = Arc::clone(&all_running);
                    pool.apply_async(move || {
                        all_running.wait();
                        let mut n = 0u64;
                        while t0.elapsed() < Duration::from_millis(2000) {
                            let pk = Arc::clone(&pk);
                            let h = p.apply_async(move || {
                                pk.fetch_max(threads_named("sy"), Ordering::SeqCst);
                                1u64
                            });
                            n += futures::executor::block_on(h).unwrap();
                        }
                        n
                    })
                })
                .collect();
            for h in hs {
                assert!(h.get().unwrap() > 0);
            }
            let attempts = starts.load(Ordering::SeqCst) - base;
            let secs = t0.elapsed().as_secs() as usize + 1;
            assert!(
                attempts <= 2 * secs + 2,
                "{attempts} start attempts in {secs} s"
            );
            assert!(peak.load(Ordering::SeqCst) <= 5, "peak {peak:?} threads");
        },
    );
}

/// Starts that alternate: fail, succeed, fail, ... A worker awaiting in a
/// loop for ~2.5 s completes everything, and the pool does not start
/// threads without end.
#[test]
fn alternating_start_failures_neither_hang_nor_spawn_without_end() {
    child::run(
        "alternating_start_failures_neither_hang_nor_spawn_without_end",
        30,
        || {
            let starts = Arc::new(AtomicUsize::new(0));
            let s = Arc::clone(&starts);
            let pool = Arc::new(
                ThreadPool::builder()
                    .workers(1)
                    .thread_name("sz")
                    .initializer(move || {
                        if s.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
                            panic!("EXPECTED: every other start fails");
                        }
                    })
                    .build()
                    .unwrap(),
            );
            let p = Arc::clone(&pool);
            let peak = Arc::new(AtomicUsize::new(0));
            let pk = Arc::clone(&peak);
            let t0 = Instant::now();
            let n = pool
                .apply_async(move || {
                    let mut n = 0u64;
                    while t0.elapsed() < Duration::from_millis(2500) {
                        let h = p.apply_async(|| thread::sleep(Duration::from_millis(2)));
                        futures::executor::block_on(h).unwrap();
                        n += 1;
                        pk.fetch_max(threads_named("sz"), Ordering::SeqCst);
                    }
                    n
                })
                .get()
                .unwrap();
            assert!(n > 10, "{n}");
            let attempts = starts.load(Ordering::SeqCst);
            assert!(attempts < 40, "{attempts} start attempts");
            assert!(peak.load(Ordering::SeqCst) <= 3, "peak {peak:?}");
        },
    );
}

/// A handle polled pending on one worker, then moved to the other worker
/// of the same stranded pool and awaited there: it completes, and the
/// first worker's job ending does not break the second's wait. The task
/// waits for a release sent once the first job returned, so it is still
/// pending then; the census's clone is waited for (up to 10 s) to go.
#[test]
fn a_handle_moved_between_stranded_workers_completes() {
    child::run(
        "a_handle_moved_between_stranded_workers_completes",
        20,
        || {
            let (pool, _) = no_spares_counted("sv", 2, PanicPolicy::default());
            mark_spares_failing(&pool);
            let q = Arc::new(ThreadPool::with_workers(1));
            let (tx, rx) = mpsc::channel();
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let (c, waker) = counting();
            let q2 = Arc::clone(&q);
            let first = pool.apply_async(move || {
                let mut cx = Context::from_waker(&waker);
                let mut h = q2.apply_async(move || {
                    let _ = release_rx.recv_timeout(Duration::from_secs(10));
                    6
                });
                assert!(Pin::new(&mut h).poll(&mut cx).is_pending());
                tx.send(h).unwrap();
            });
            let h = rx.recv().unwrap();
            let second = pool.apply_async(move || futures::executor::block_on(h));
            first.get().unwrap();
            release_tx.send(()).unwrap();
            assert_eq!(second.get(), Ok(Ok(6)));
            assert_eq!(
                common::strong_count_falls_to(&c, 1),
                1,
                "a waker stayed in the census"
            );
        },
    );
}

/// Known limit, found by a fresh-mind attack (session of 2026-12-03), older
/// than the read token's wait rules: an imap whose input (not a range or a
/// `Vec`) runs another such imap per item, on a 2-worker pool whose spares
/// cannot start, never ends. The reading worker consumes the inner stream
/// while it holds the outer read token; the other waits for that token,
/// and with no stand-in possible it helps with queued jobs, which are
/// outer credits first: each waits for the same token, one level deeper.
/// The inner credits sit behind them, and the inner input is not one the
/// consumer may take back. With spares, or with a range as either input,
/// it ends.
#[test]
#[ignore = "known limit, degraded pools only: nested imaps over generic inputs on a pool whose spares cannot start hang"]
fn nested_imaps_over_generic_inputs_on_a_pool_without_spares_end() {
    common::guard(30, || {
        let pool = common::spares::no_spares_with("strnest", 2, PanicPolicy::default());
        let inner = Arc::clone(&pool);
        let input = (0..100u64)
            .map(move |i| -> u64 { inner.imap(|x: u64| x, (0..4u64).map(move |x| x + i)).sum() });
        let got: u64 = pool.imap(|x: u64| x, input).chunksize(4).sum();
        assert_eq!(got, (0..100u64).map(|i| 6 + 4 * i).sum::<u64>());
    });
}
