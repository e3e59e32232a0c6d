//! Hostile review of spent handles (`on_success`/`on_error` refusing a
//! callback once the result was returned) and of timed waits at the edges
//! (`Duration::ZERO`, `Duration::MAX`), with panics in every user hook,
//! nesting on a one-worker pool, shutdown races and `stats` read while
//! tasks run on more threads than there are counter shards. Found: a
//! `wait_timeout(Duration::MAX)` in a drain's callback chain deeper than
//! the inlining depth waited forever (`terminate` hung) where the untimed
//! wait panics clearly; it now panics the same way. The rest held.
#[path = "common/child.rs"]
mod child;
mod common;

use common::{guard, occupy_the_worker, while_unwinding};
use parpool::{AsyncResult, TaskError, ThreadPool};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};
use std::task::{Context, Poll};
use std::time::Duration;

const MARK: &str = "EXPECTED";

/// Counts its drops; its `Drop` panics if `bomb`.
struct Mark {
    drops: Arc<AtomicUsize>,
    bomb: bool,
}

impl Drop for Mark {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
        if self.bomb && !std::thread::panicking() {
            panic!("{MARK}: a Drop panicked");
        }
    }
}

fn mark(drops: &Arc<AtomicUsize>, bomb: bool) -> Mark {
    Mark {
        drops: Arc::clone(drops),
        bomb,
    }
}

fn spent_message(r: std::thread::Result<impl Sized>) -> String {
    match r {
        Ok(_) => panic!("attaching to a spent handle must panic"),
        Err(p) => common::panic_message(p.as_ref()),
    }
}

/// Polls `h` once with a no-op waker.
fn poll_once<R>(h: &mut AsyncResult<R>) -> Poll<Result<R, TaskError>> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    Pin::new(h).poll(&mut cx)
}

/// A handle polled once while pending (its waker registered, its wait
/// known to the executor bookkeeping), then timed out with `ZERO`, then
/// taken with `MAX`: a callback attached after that panics clearly and is
/// dropped once, never run; one attached between the two timed calls runs.
#[test]
fn poll_once_then_zero_then_max_then_callbacks() {
    guard(60, || {
        common::quiet_panics_containing(MARK);
        common::quiet_panics_containing("already returned");
        let pool = ThreadPool::with_workers(1);
        for ok in [true, false] {
            let (occ, release) = occupy_the_worker(&pool);
            let mut h = pool.apply_async(move || -> u32 {
                if !ok {
                    panic!("{MARK}: the task failed");
                }
                9
            });
            assert!(poll_once(&mut h).is_pending());
            assert_eq!(h.get_timeout(Duration::ZERO), Err(TaskError::Timeout));
            let ran = Arc::new(AtomicUsize::new(0));
            let (r1, r2) = (Arc::clone(&ran), Arc::clone(&ran));
            let mut h = h
                .on_success(move |v| {
                    assert_eq!(*v, 9);
                    r1.fetch_add(1, SeqCst);
                })
                .on_error(move |_| {
                    r2.fetch_add(1, SeqCst);
                });
            release.send(()).unwrap();
            let got = h.get_timeout(Duration::MAX);
            assert_eq!(got.is_ok(), ok);
            assert_eq!(ran.load(SeqCst), 1, "ok={ok}: one callback ran");
            // Spent now: every further use is refused clearly.
            let drops = Arc::new(AtomicUsize::new(0));
            for bomb in [false, true] {
                let m = mark(&drops, bomb);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    h.get_timeout(Duration::ZERO)
                }));
                assert!(spent_message(r).contains("already returned"));
                let mut fresh = pool.apply_async(|| 1);
                assert_eq!(fresh.get_timeout(Duration::MAX), Ok(1));
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    fresh.on_success(move |_| drop(m))
                }));
                assert!(spent_message(r).contains("already returned"));
            }
            assert_eq!(drops.load(SeqCst), 2, "each refused callback dropped once");
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(&mut h)));
            assert!(spent_message(r).contains("already returned"));
            occ.get().unwrap();
        }
        assert_eq!(pool.apply(|| 3), 3);
    });
}

/// Every user hook panics: the task (or the result's `Drop`), the
/// callback, the callback's `Drop`; the handle is spent through the
/// future. The refused callback's panicking `Drop` is contained and the
/// spent panic is the one seen; the pool is unharmed.
#[test]
fn panics_in_every_hook_with_spent_handles() {
    guard(60, || {
        common::quiet_panics_containing(MARK);
        common::quiet_panics_containing("already returned");
        let pool = ThreadPool::with_workers(1);
        let drops = Arc::new(AtomicUsize::new(0));
        for task_panics in [false, true] {
            let d = Arc::clone(&drops);
            let mut h = pool.apply_async(move || {
                if task_panics {
                    panic!("{MARK}: the task");
                }
                mark(&d, true)
            });
            // A live callback that panics and whose Drop panics.
            let cm = mark(&drops, true);
            let cm2 = mark(&drops, true);
            h = h
                .on_success(move |_| {
                    let _k = &cm;
                    panic!("{MARK}: on_success");
                })
                .on_error(move |_| {
                    let _k = &cm2;
                    panic!("{MARK}: on_error");
                });
            let got = futures::executor::block_on(&mut h);
            assert_eq!(got.is_err(), task_panics);
            // The result's Drop panics: the user's own value.
            if let Ok(v) = got {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(v)));
                assert!(r.is_err());
            }
            let refused = mark(&drops, true);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                if task_panics {
                    h.on_error(move |_| drop(refused))
                } else {
                    h.on_success(move |_| drop(refused))
                }
            }));
            assert!(spent_message(r).contains("already returned"));
        }
        // ok: result + 2 callbacks + refused; err: 2 callbacks + refused.
        assert_eq!(drops.load(SeqCst), 7);
        assert_eq!(pool.apply(|| 5), 5);
    });
}

/// On a one-worker pool, a task submits another, takes its result with
/// `get_timeout(MAX)` (inlined), then attaches a callback to the spent
/// handle: the task's own panic says why; callbacks attached to a pending
/// inner handle from inside the task run; `ZERO` from inside never hangs.
#[test]
fn nested_callbacks_on_a_one_worker_pool() {
    guard(60, || {
        common::quiet_panics_containing("already returned");
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let outer = pool.apply_async(move || {
            let ran = Arc::new(AtomicUsize::new(0));
            let r = Arc::clone(&ran);
            let mut inner = p.apply_async(|| 4u32).on_success(move |v| {
                r.fetch_add(*v as usize, SeqCst);
            });
            let _ = inner.get_timeout(Duration::ZERO);
            let v = inner.get_timeout(Duration::MAX).unwrap();
            assert_eq!(ran.load(SeqCst), 4);
            inner.on_success(|_| {}).get().map(|_| v)
        });
        match outer.get() {
            Err(TaskError::Panicked(m)) => assert!(m.contains("already returned"), "{m}"),
            other => panic!("expected the spent panic, got {other:?}"),
        }
        assert_eq!(pool.apply(|| 6), 6);
    });
}

/// Shutdown races: `close`/`terminate` against `apply_async`, callbacks,
/// `get_timeout(ZERO/MAX)` and polling, on many rounds. Every handle ends,
/// every callback runs or is dropped exactly once.
#[test]
fn shutdown_races_with_callbacks_and_timed_takes() {
    guard(120, || {
        common::quiet_panics_containing("already returned");
        for round in 0..common::pick(200, 4) {
            let terminate = round % 2 == 1;
            let pool = Arc::new(ThreadPool::with_workers(1 + round % 3));
            let drops = Arc::new(AtomicUsize::new(0));
            let calls = Arc::new(AtomicUsize::new(0));
            let barrier = Arc::new(Barrier::new(3));
            let mut threads = Vec::new();
            for t in 0..2 {
                let (pool, drops, calls, barrier) = (
                    Arc::clone(&pool),
                    Arc::clone(&drops),
                    Arc::clone(&calls),
                    Arc::clone(&barrier),
                );
                threads.push(std::thread::spawn(move || {
                    barrier.wait();
                    let mut made = 0;
                    for i in 0..20 {
                        let mut h = pool.apply_async(move || i);
                        // Polling once may take the result (spent then).
                        if t == 1 || poll_once(&mut h).is_pending() {
                            let _ = h.get_timeout(Duration::ZERO);
                        }
                        let (m1, m2) = (mark(&drops, false), mark(&drops, false));
                        let (c1, c2) = (Arc::clone(&calls), Arc::clone(&calls));
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                            h.on_success(move |_| {
                                let _k = &m1;
                                c1.fetch_add(1, SeqCst);
                            })
                            .on_error(move |_| {
                                let _k = &m2;
                                c2.fetch_add(1, SeqCst);
                            })
                        }));
                        made += 2;
                        match r {
                            Ok(mut h) => match h.get_timeout(Duration::MAX) {
                                Ok(v) => assert_eq!(v, i),
                                Err(TaskError::Cancelled | TaskError::NotRunning) => {}
                                Err(e) => panic!("{e:?}"),
                            },
                            // Spent by the ZERO take: both refused, dropped.
                            Err(p) => assert!(
                                common::panic_message(p.as_ref()).contains("already returned")
                            ),
                        }
                    }
                    made
                }));
            }
            barrier.wait();
            common::close_or_terminate(&pool, terminate);
            let made: usize = threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|p| panic!("{}", common::panic_message(p.as_ref())))
                })
                .sum();
            pool.join();
            assert_eq!(
                drops.load(SeqCst),
                made,
                "round {round}: every callback dropped once"
            );
            assert!(calls.load(SeqCst) <= made / 2);
        }
    });
}

/// `stats` read in a loop while 40 workers (more than the 16 shards) run
/// tasks and maps: never more queued or running than was submitted, the
/// completed count never goes back, and once idle every field is exact.
#[test]
fn stats_read_concurrently_past_the_shard_count() {
    guard(120, || {
        let pool = Arc::new(ThreadPool::with_workers(40));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let total = 40 * 50 + 4000;
        // The reader has read once before any work is submitted: on a
        // loaded machine it was not scheduled until the work was over
        // (read 0 times, failing the count below).
        let (reading, is_reading) = mpsc::channel::<()>();
        let reader = {
            let (pool, stop) = (Arc::clone(&pool), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut last = 0;
                let mut reads = 0u64;
                loop {
                    let s = pool.stats();
                    assert!(s.queued <= total, "{s:?}");
                    assert!(s.running <= total, "{s:?}");
                    assert!(s.completed >= last, "{s:?} after {last}");
                    assert!(s.completed <= total, "{s:?}");
                    assert_eq!(s.panicked, 0);
                    last = s.completed;
                    reads += 1;
                    if reads == 1 {
                        reading.send(()).unwrap();
                    }
                    if stop.load(SeqCst) {
                        break reads;
                    }
                }
            })
        };
        is_reading.recv().unwrap();
        let hs: Vec<_> = (0..40 * 50)
            .map(|i| {
                pool.apply_async(move || {
                    std::hint::black_box(i * 2);
                })
            })
            .collect();
        let v = pool.map(|x: &usize| x + 1, &(0..4000).collect::<Vec<_>>());
        assert_eq!(v.len(), 4000);
        for h in hs {
            h.get().unwrap();
        }
        stop.store(true, SeqCst);
        assert!(reader.join().unwrap() > 0);
        let s = pool.stats();
        assert_eq!(
            (s.queued, s.running, s.completed, s.panicked),
            (0, 0, total, 0)
        );
        assert_eq!(s.workers, 40);
    });
}

/// As `drain_chain_attacks`' chain deeper than the inlining depth, with
/// each error callback waiting with `wait_timeout(Duration::MAX)`, which
/// never expires: `terminate` must return, as with the untimed `wait`,
/// instead of the wait 32 levels down waiting forever for a task only
/// this thread, further down its stack, would reach.
#[test]
fn chain_of_max_timed_drain_waits_deeper_than_the_inline_depth() {
    child::run(
        "chain_of_max_timed_drain_waits_deeper_than_the_inline_depth",
        20,
        || {
            common::quiet_parpool_diagnostics();
            common::terminate_through_wait_chain("a MAX-timed wait", |h| {
                let _ = h.wait_timeout(Duration::MAX);
            });
        },
    );
}

/// A callback run by `terminate`'s drain consumes an `imap` of the same
/// one-worker pool whose chunks are queued behind the callback's task
/// (the worker is busy): with `next_timeout(MAX)`, `next_timeout(ZERO)`
/// and `next()`, the consumer must end (results or a clear error), and
/// `terminate` must return.
#[test]
fn drain_callback_consumes_an_imap_queued_behind_it() {
    child::run(
        "drain_callback_consumes_an_imap_queued_behind_it",
        20,
        || {
            common::quiet_parpool_diagnostics();
            common::quiet_panics_containing("parpool");
            for mode in 0..3 {
                let pool = ThreadPool::with_workers(1);
                let (occupant, release) = occupy_the_worker(&pool);
                let slot: Arc<std::sync::Mutex<Option<parpool::Imap<'static, u32>>>> =
                    Arc::new(std::sync::Mutex::new(None));
                let s = Arc::clone(&slot);
                let outcome = Arc::new(std::sync::Mutex::new(String::new()));
                let o = Arc::clone(&outcome);
                let h = pool.apply_async(|| 0u32).on_error(move |_| {
                    let it = s.lock().unwrap().take();
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                        let mut it = it.expect("the imap was made");
                        let mut got = Vec::new();
                        loop {
                            let next = match mode {
                                0 => it.next_timeout(Duration::MAX),
                                1 => it.next_timeout(Duration::ZERO),
                                _ => Ok(it.next()),
                            };
                            match next {
                                Ok(Some(v)) => got.push(v),
                                Ok(None) => break format!("ended with {got:?}"),
                                Err(e) => break format!("error {e:?} after {got:?}"),
                            }
                        }
                    }));
                    *o.lock().unwrap() = match r {
                        Ok(s) => s,
                        Err(p) => format!("panic: {}", common::panic_message(p.as_ref())),
                    };
                });
                let it = pool.imap(|x: u32| x * 2, 0..8u32).chunksize(2);
                *slot.lock().unwrap() = Some(it);
                common::terminate_within(&pool, 5, |returned| {
                    let _ = release.send(());
                    assert!(returned, "mode {mode}: terminate hung");
                });
                let _ = occupant.get();
                assert!(h.ready());
                eprintln!("mode {mode}: {}", outcome.lock().unwrap());
                assert!(
                    !outcome.lock().unwrap().is_empty(),
                    "mode {mode}: the callback ran"
                );
            }
        },
    );
}

/// A `Drop` that runs while its thread unwinds and attaches a callback to
/// a spent handle: the callback is dropped unrun, as on any thread, but
/// the call does not panic a second time, which would abort the process
/// (in a child process: a regression aborts it, not the test binary).
#[test]
fn a_callback_attached_to_a_spent_handle_while_unwinding_does_not_abort() {
    child::run(
        "a_callback_attached_to_a_spent_handle_while_unwinding_does_not_abort",
        20,
        || {
            common::quiet_panics();
            struct AttachOnDrop(Option<AsyncResult<u8>>, Arc<AtomicUsize>, Arc<AtomicUsize>);
            impl Drop for AttachOnDrop {
                fn drop(&mut self) {
                    assert!(std::thread::panicking());
                    let (ran, dropped) = (Arc::clone(&self.1), Arc::clone(&self.2));
                    let mark = DropCount(dropped);
                    let h = self.0.take().unwrap().on_success(move |_| {
                        let _keep = &mark;
                        ran.fetch_add(1, SeqCst);
                    });
                    drop(h);
                }
            }
            struct DropCount(Arc<AtomicUsize>);
            impl Drop for DropCount {
                fn drop(&mut self) {
                    self.0.fetch_add(1, SeqCst);
                }
            }
            let pool = ThreadPool::with_workers(1);
            let mut h = pool.apply_async(|| 7u8);
            assert_eq!(h.get_timeout(Duration::from_secs(10)), Ok(7));
            let (ran, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let guard = AttachOnDrop(Some(h), Arc::clone(&ran), Arc::clone(&dropped));
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _guard = guard;
                panic!("EXPECTED: unwinding past a Drop that attaches a callback");
            }));
            assert!(unwound.is_err());
            assert_eq!(ran.load(SeqCst), 0, "never run");
            assert_eq!(dropped.load(SeqCst), 1, "dropped once");
            assert_eq!(pool.apply(|| 5), 5);
        },
    );
}

/// A `Drop` that runs while its thread unwinds asks a spent handle for its
/// result (`get`, `get_timeout`, a poll): each returns `TaskError::Spent`
/// instead of panicking a second time, which aborted the process (in a
/// child process: a regression aborts it, not the test binary). Off the
/// unwinding, the same calls still panic.
#[test]
fn a_spent_handle_asked_for_its_result_while_unwinding_returns_spent() {
    child::run(
        "a_spent_handle_asked_for_its_result_while_unwinding_returns_spent",
        20,
        || {
            common::quiet_panics_containing(MARK);
            common::quiet_panics_containing("already returned");
            let pool = ThreadPool::with_workers(1);
            let long = Duration::from_secs(10);
            for ok in [true, false] {
                let task = move || -> u8 {
                    if !ok {
                        panic!("{MARK}: the task failed");
                    }
                    7
                };
                // Spent by `get_timeout`.
                let mut h = pool.apply_async(task);
                assert_eq!(h.get_timeout(long).is_ok(), ok);
                for timeout in [Duration::ZERO, Duration::MAX] {
                    let got = while_unwinding(|| h.get_timeout(timeout));
                    assert_eq!(got, Err(TaskError::Spent), "ok={ok}, {timeout:?}");
                }
                let got = while_unwinding(|| poll_once(&mut h));
                assert_eq!(got, Poll::Ready(Err(TaskError::Spent)), "ok={ok}");
                assert_eq!(while_unwinding(move || h.get()), Err(TaskError::Spent));
                // Spent by awaiting it.
                let mut h = pool.apply_async(task);
                assert_eq!(futures::executor::block_on(&mut h).is_ok(), ok);
                assert_eq!(while_unwinding(move || h.get()), Err(TaskError::Spent));
                // Off the unwinding, a spent handle still panics.
                let mut h = pool.apply_async(task);
                assert_eq!(h.get_timeout(long).is_ok(), ok);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || h.get()));
                assert!(spent_message(r).contains("already returned"));
            }
            assert_eq!(pool.apply(|| 5), 5);
        },
    );
}

/// A callback waits, in a `Drop` running while its thread unwinds, for its
/// own task (which is final only once the callback returns): every untimed
/// wait gives up at once, as the timed ones do (`wait` returns with the
/// task not ready, a poll and `get` give `Timeout`, `parpool::wait` leaves
/// it pending), where the panic saying the wait could never end aborted
/// the process (in a child process).
#[test]
fn a_wait_for_own_work_while_unwinding_gives_up_as_a_timed_wait_does() {
    child::run(
        "a_wait_for_own_work_while_unwinding_gives_up_as_a_timed_wait_does",
        20,
        || {
            common::quiet_panics_containing(MARK);
            let pool = ThreadPool::with_workers(1);
            let slot: Arc<std::sync::Mutex<Option<AsyncResult<u32>>>> = Arc::default();
            let own = Arc::clone(&slot);
            let (tx, rx) = mpsc::channel();
            let (go, wait_go) = mpsc::channel::<()>();
            let h = pool
                .apply_async(move || {
                    wait_go.recv().unwrap();
                    5
                })
                .on_success(move |_| {
                    let mut h = own.lock().unwrap().take().expect("the handle was kept");
                    let seen = while_unwinding(move || {
                        h.wait();
                        let ready = h.ready();
                        let timed = h.get_timeout(Duration::MAX);
                        let polled = poll_once(&mut h);
                        let (done, mut pending) =
                            parpool::wait(vec![h], None, parpool::WaitFor::AllCompleted);
                        let left = (done.len(), pending.len());
                        let got = pending.pop().map(AsyncResult::get);
                        (ready, timed, polled, left, got)
                    });
                    tx.send(seen).unwrap();
                });
            *slot.lock().unwrap() = Some(h);
            go.send(()).unwrap();
            let (ready, timed, polled, left, got) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the callback returned");
            assert!(!ready, "its own task cannot be ready in its callback");
            assert_eq!(timed, Err(TaskError::Timeout));
            assert_eq!(polled, Poll::Ready(Err(TaskError::Timeout)));
            assert_eq!(left, (0, 1), "parpool::wait leaves it pending");
            assert_eq!(got, Some(Err(TaskError::Timeout)));
            assert_eq!(pool.apply(|| 6), 6);
        },
    );
}

/// As `chain_of_max_timed_drain_waits_deeper_than_the_inline_depth`, with
/// each error callback's untimed `wait` for the next task made from a
/// `Drop` while the callback unwinds: at the inlining depth the wait gives
/// up and returns (the task not ready), where its panic saying so aborted
/// the process; `terminate` returns and every callback runs once.
#[test]
fn chain_of_drain_waits_while_unwinding_deeper_than_the_inline_depth() {
    child::run(
        "chain_of_drain_waits_while_unwinding_deeper_than_the_inline_depth",
        20,
        || {
            common::quiet_parpool_diagnostics();
            common::quiet_panics_containing(MARK);
            let gave_up = Arc::new(AtomicUsize::new(0));
            let g = Arc::clone(&gave_up);
            common::terminate_through_wait_chain("a wait while unwinding", move |h| {
                if !while_unwinding(|| {
                    h.wait();
                    h.ready()
                }) {
                    g.fetch_add(1, SeqCst);
                }
            });
            assert!(gave_up.load(SeqCst) >= 1, "the deepest wait gave up");
        },
    );
}

/// Review of the refusals: a wait on a worker that can never make progress
/// (no spare thread can start, the initializer panics for every thread
/// after the first, and the waits nest deeper than the thread may run jobs
/// inline) panics "cannot make progress" (`waiting_on_workers.rs`). Made
/// from a `Drop` while its thread unwinds, that panic aborted the process;
/// like the other refusals, the handle's wait now gives up there (`get`
/// returns `TaskError::Timeout`), and the chain still completes: the
/// abandoned task runs later, at a shallower depth (in a child process).
#[test]
fn a_wait_that_can_never_progress_while_unwinding_gives_up() {
    child::run(
        "a_wait_that_can_never_progress_while_unwinding_gives_up",
        60,
        || {
            common::quiet_parpool_diagnostics();
            common::quiet_panics_containing(MARK);
            static STARTED: AtomicUsize = AtomicUsize::new(0);
            static GAVE_UP: std::sync::Mutex<Vec<TaskError>> = std::sync::Mutex::new(Vec::new());
            fn rec(p: Arc<ThreadPool>, d: u32) -> u32 {
                if d == 0 {
                    return 0;
                }
                let q = Arc::clone(&p);
                let h = p.apply_async(move || rec(q, d - 1));
                match while_unwinding(move || h.get()) {
                    Ok(v) => v + 1,
                    Err(e) => {
                        GAVE_UP.lock().unwrap().push(e);
                        0
                    }
                }
            }
            let pool = Arc::new(
                ThreadPool::builder()
                    .workers(1)
                    .initializer(|| {
                        if STARTED.fetch_add(1, SeqCst) >= 1 {
                            panic!("{MARK}: no more threads");
                        }
                    })
                    .build()
                    .unwrap(),
            );
            let p = Arc::clone(&pool);
            let r = pool.apply_async(move || rec(p, 40)).get();
            assert!(r.is_ok(), "{r:?}");
            let gave_up = GAVE_UP.lock().unwrap().clone();
            assert!(!gave_up.is_empty(), "the deepest wait gave up");
            assert!(
                gave_up.iter().all(|e| *e == TaskError::Timeout),
                "{gave_up:?}"
            );
            assert_eq!(pool.apply_async(|| 6).get(), Ok(6));
            pool.close();
            pool.join();
        },
    );
}
