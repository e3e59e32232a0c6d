//! Hostile review of the first-`Pending` handshake of executor waits
//! (commit 6809c48, `exec_wait::pending`, `Waits::seen`): a parpool future
//! or stream whose first `Pending` on a worker wakes its own waker and
//! counts nothing; only from its second `Pending` (same future, same
//! thread, same job level) does the thread count blocked. These tests try
//! to make the handshake spin, hang an executor that does not honour the
//! self-wake, leave a thread counted, and slow down the stand-in that a
//! `block_on` on a worker needs.
#[path = "common/child.rs"]
mod child;
mod common;
use common::pool_exec::{PoolTask, Via};

use common::{guard, named, settle, settles_to, threads_named};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use parpool::{AsyncResult, TaskError, ThreadPool};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

// ------------------------------------------------------------- helpers --

/// Busy for `ms` milliseconds (a CPU-bound task).
fn spin_for(ms: u64) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(ms) {
        std::hint::spin_loop();
    }
}

/// A hand-written `block_on` that parks without a timeout until woken,
/// with the given waker (which must unpark this thread on `wake`).
fn park_block_on<F: Future + Unpin>(mut f: F, waker: &Waker) -> F::Output {
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready(v) = Pin::new(&mut f).poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// Counts the polls of the future it wraps.
struct CountPolls<F> {
    inner: F,
    polls: Arc<AtomicUsize>,
}

impl<F: Future + Unpin> Future for CountPolls<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// How long a job on the only worker of `pool` takes to `block_on`
/// (through `exec`) a task queued behind it, in each of `rounds` rounds.
/// The executor (a tokio runtime, say) is made by `setup` in the job
/// before the clock starts, and dropped after it stops: only the wait is
/// timed, not a runtime's start-up or shutdown.
fn latencies<S: 'static>(
    pool: &Arc<ThreadPool>,
    rounds: usize,
    setup: fn() -> S,
    exec: fn(&S, AsyncResult<u32>) -> Result<u32, TaskError>,
) -> Vec<Duration> {
    let mut took = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let p = Arc::clone(pool);
        took.push(
            pool.apply_async(move || {
                let executor = setup();
                let t = Instant::now();
                let got = exec(&executor, p.apply_async(move || i as u32));
                let took = t.elapsed();
                assert_eq!(got, Ok(i as u32));
                drop(executor);
                took
            })
            .get()
            .unwrap(),
        );
        // Let the stand-in of this round go back to rest.
        thread::sleep(Duration::from_millis(5));
    }
    took
}

/// Asserts that the stand-in came promptly in `took` (from [`latencies`]):
/// the median under 200 ms and the worst under 1 s. Without a stand-in
/// the wait hangs (the guard fails it); a stand-in that comes only after
/// a retry or a linger (`worker::RETRY`, 1 s; `LINGER`, 500 ms) takes that
/// long in every round, far above the median bound. A prompt one takes
/// well under a millisecond to a few, so one round preempted for a few
/// hundred ms on a loaded machine does not fail the test.
fn assert_prompt(what: &str, mut took: Vec<Duration>) {
    took.sort();
    let median = took[took.len() / 2];
    let worst = took[took.len() - 1];
    assert!(
        median < Duration::from_millis(200) && worst < Duration::from_secs(1),
        "{what}: median {median:?}, worst {worst:?}"
    );
}

// ------------------------------------------------- the self-wake spins --

/// An executor on the pool itself (a waker that schedules the next poll as
/// a pool job) awaits a task that takes 300 ms on the other worker. Each
/// poll runs in a fresh job, whose `seen` set starts empty, so every
/// `Pending` is a "first" one: it wakes itself, which queues the next poll
/// job, which polls again at once. The free worker spins through poll jobs
/// at full CPU for the whole 300 ms instead of waiting for the wake-up
/// (before 6809c48: one poll, then one at completion).
#[test]
fn a_pool_driven_executor_does_not_spin_while_its_task_runs() {
    guard(20, || {
        let pool = named("fpx", 2);
        let (done_tx, done_rx) = mpsc::channel();
        let slow = pool.apply_async(|| {
            thread::sleep(Duration::from_millis(300));
            7u32
        });
        // The other worker is inside the slow task.
        thread::sleep(Duration::from_millis(20));
        let task = PoolTask::spawn(&pool, Via::Direct, async move {
            let got = slow.await;
            done_tx.send(got).unwrap();
        });
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(10)),
            Ok(Ok(7)),
            "the awaited task's result"
        );
        let polls = task.polls();
        assert!(
            polls <= 10,
            "{polls} polls while the awaited task ran for 300 ms (a busy loop of poll jobs)"
        );
    });
}

/// The same executor on the pool, awaiting an imap stream whose `f` takes
/// 300 ms for its one item: the stream's key is the same across polls,
/// but each poll runs in a fresh job, so again every `Pending` is a first
/// one and wakes itself.
#[test]
fn a_pool_driven_executor_does_not_spin_on_a_stream() {
    guard(20, || {
        let pool = named("fps", 2);
        let (done_tx, done_rx) = mpsc::channel();
        let mut stream = pool
            .imap(
                |x: u32| {
                    thread::sleep(Duration::from_millis(300));
                    x + 1
                },
                0..1u32,
            )
            .into_stream();
        let task = PoolTask::spawn(&pool, Via::Direct, async move {
            let mut got = Vec::new();
            while let Some(x) = stream.next().await {
                got.push(x);
            }
            done_tx.send(got).unwrap();
        });
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)), Ok(vec![1]));
        let polls = task.polls();
        assert!(
            polls <= 10,
            "{polls} polls while the stream's one credit ran for 300 ms (a busy loop of poll jobs)"
        );
    });
}

// ------------------------------------- a self-wake that does not arrive --

/// A waker whose `wake_by_ref` panics but whose `wake` works (it unparks
/// the executor's thread). The first `Pending`'s self-wake is the only
/// thing that stands between the executor and its park: its panic is
/// contained and swallowed, the thread is not counted blocked, no stand-in
/// starts, and the task, queued behind the awaiting job on the only
/// worker, never runs. Before 6809c48 the first `Pending` counted the
/// thread, a spare ran the task, and its completion `wake` unparked the
/// executor. A contained panic ends in a hang, not an error.
#[test]
fn a_waker_whose_wake_by_ref_panics_does_not_hang_the_only_worker() {
    child::run(
        "a_waker_whose_wake_by_ref_panics_does_not_hang_the_only_worker",
        5,
        || {
            struct HalfBroken(thread::Thread);
            impl Wake for HalfBroken {
                fn wake(self: Arc<Self>) {
                    self.0.unpark();
                }
                fn wake_by_ref(self: &Arc<Self>) {
                    panic!("EXPECTED: wake_by_ref is not supported by this waker");
                }
            }
            let pool = named("fpw", 1);
            let p = Arc::clone(&pool);
            let got = pool
                .apply_async(move || {
                    let waker = Waker::from(Arc::new(HalfBroken(thread::current())));
                    park_block_on(p.apply_async(|| 5u32), &waker)
                })
                .get();
            assert_eq!(got, Ok(Ok(5)));
        },
    );
}

/// Control: the same hand-written parking executor with a waker whose
/// `wake_by_ref` works completes at once.
#[test]
fn control_a_parking_executor_with_a_sound_waker_completes() {
    guard(10, || {
        struct Unpark(thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let pool = named("fpc", 1);
        let p = Arc::clone(&pool);
        let got = pool
            .apply_async(move || {
                let waker = Waker::from(Arc::new(Unpark(thread::current())));
                park_block_on(p.apply_async(|| 5u32), &waker)
            })
            .get();
        assert_eq!(got, Ok(Ok(5)));
    });
}

// ------------------------------------------ the stand-in is still prompt --

/// A tokio runtime on the calling thread, for `latencies`' set-up.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// `block_on` on the only worker of a task queued behind the awaiting job:
/// the second poll (right after the self-wake) starts a stand-in, and the
/// task completes promptly (see [`assert_prompt`]), for `futures`'
/// `block_on`, a tokio current-thread runtime and a tokio multi-thread
/// runtime's `block_on`. The runtimes are built before the clock starts.
#[test]
fn block_on_of_a_task_queued_behind_gets_a_stand_in_promptly() {
    let took = guard(30, || {
        let pool = named("fpl", 1);
        let a = latencies(&pool, 20, || (), |(), h| futures::executor::block_on(h));
        let b = latencies(&pool, 20, current_thread_runtime, |rt, h| rt.block_on(h));
        let c = latencies(
            &pool,
            10,
            || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .build()
                    .unwrap()
            },
            |rt, h| rt.block_on(h),
        );
        [("futures", a), ("tokio ct", b), ("tokio mt", c)]
    });
    for (what, t) in took {
        assert_prompt(what, t);
    }
}

/// `LocalPool::run_until`, a biased `select!` whose first branch never
/// completes, a task spawned on a tokio current-thread runtime and one on a
/// `LocalSet`: each honours the handle's self-wake, and a task queued
/// behind on the only worker completes promptly (see [`assert_prompt`];
/// the runtimes are built before the clock starts).
#[test]
fn local_pool_and_biased_select_get_a_stand_in_promptly() {
    let took = guard(30, || {
        let pool = named("fpb", 1);
        let a = latencies(
            &pool,
            20,
            || (),
            |(), h| futures::executor::LocalPool::new().run_until(h),
        );
        let b = latencies(
            &pool,
            20,
            || (),
            |(), mut h| {
                futures::executor::block_on(async {
                    let mut never = futures::future::pending::<()>().fuse();
                    futures::select_biased! {
                        () = never => unreachable!(),
                        r = (&mut h).fuse() => r,
                    }
                })
            },
        );
        // A tokio task spawned on a current-thread runtime (self-woken
        // tasks go back to the run queue), and one on a `LocalSet`.
        let c = latencies(&pool, 20, current_thread_runtime, |rt, h| {
            rt.block_on(async { tokio::spawn(h).await.unwrap() })
        });
        let d = latencies(
            &pool,
            20,
            || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                (rt, tokio::task::LocalSet::new())
            },
            |(rt, local), h| {
                local.block_on(rt, async { tokio::task::spawn_local(h).await.unwrap() })
            },
        );
        [
            ("LocalPool", a),
            ("select_biased", b),
            ("tokio::spawn", c),
            ("LocalSet", d),
        ]
    });
    for (what, t) in took {
        assert_prompt(what, t);
    }
}

/// 5000 handles in a `FuturesUnordered` on the only worker (all queued
/// behind the awaiting job): `FuturesUnordered` yields to its executor
/// after two self-wakes, so the first polls take many rounds; every handle
/// completes, each is polled a bounded number of times (no busy loop), and
/// in bounded time.
#[test]
fn futures_unordered_of_thousands_of_handles_polls_each_a_bounded_number_of_times() {
    let n = 5000usize;
    let (sum, polls, took) = guard(30, move || {
        let pool = named("fpu", 1);
        let p = Arc::clone(&pool);
        pool.apply_async(move || {
            let polls = Arc::new(AtomicUsize::new(0));
            let t = Instant::now();
            let all: FuturesUnordered<_> = (0..n)
                .map(|i| CountPolls {
                    inner: p.apply_async(move || i),
                    polls: Arc::clone(&polls),
                })
                .collect();
            let sum: usize = futures::executor::block_on(
                all.map(|r| r.unwrap()).fold(0, |a, b| async move { a + b }),
            );
            (sum, polls.load(Ordering::Relaxed), t.elapsed())
        })
        .get()
        .unwrap()
    });
    assert_eq!(sum, n * (n - 1) / 2);
    assert!(polls <= 4 * n, "{polls} polls for {n} handles");
    // Normal (debug): about 15 ms and 5 000-6 000 polls, also beside two
    // busy loops, so 3 s is 200 times that; a timed wait of even 1 ms per
    // handle (a stall check, a stand-in's start) would take 5 s.
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// Every worker of a 4-worker pool runs a tokio current-thread runtime
/// whose `block_on` awaits a task queued behind all of them: each first
/// `Pending` counts nothing, each second one counts, and four stand-ins
/// run the four tasks.
#[test]
fn every_worker_in_a_tokio_block_on_at_once_completes() {
    let got = guard(20, || {
        let pool = named("fpt", 4);
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let hs: Vec<_> = (0..4u32)
            .map(|i| {
                let (p, b) = (Arc::clone(&pool), Arc::clone(&barrier));
                pool.apply_async(move || {
                    // All four workers are inside these jobs.
                    b.wait();
                    let h = p.apply_async(move || i * 10);
                    tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap()
                        .block_on(h)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.get().unwrap().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(got, vec![0, 10, 20, 30]);
}

// ----------------------------------------------- seen across threads --

/// A handle peeked once on worker A (its key in A's `seen`), then moved to
/// worker B and awaited there with `block_on`: B's first `Pending` wakes
/// itself, its second counts B and starts the stand-in; the task runs
/// exactly once, and afterwards the pool settles back to its two workers
/// (A was never counted, B uncounted when the handle was spent).
#[test]
fn a_handle_peeked_on_one_worker_and_awaited_on_another_completes_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let got = guard(20, move || {
        let pool = named("fpm", 2);
        let (to_b, from_a) = mpsc::channel::<AsyncResult<u32>>();
        let from_a = Mutex::new(from_a);
        let (p1, p2) = (Arc::clone(&pool), Arc::clone(&pool));
        let b_started = Arc::new(std::sync::Barrier::new(2));
        let b2 = Arc::clone(&b_started);
        // B: waits for the handle, then awaits it.
        let b = pool.apply_async(move || {
            b2.wait();
            let h = from_a.lock().unwrap().recv().unwrap();
            futures::executor::block_on(h)
        });
        let a = pool.apply_async(move || {
            b_started.wait();
            // Both workers are busy: the task is queued.
            let mut h = p1.apply_async(move || {
                r.fetch_add(1, Ordering::SeqCst);
                11u32
            });
            assert!((&mut h).now_or_never().is_none());
            to_b.send(h).unwrap();
            // A keeps computing while B awaits; A is not counted blocked.
            spin_for(50);
        });
        a.get().unwrap();
        let got = b.get().unwrap();
        drop(p2);
        got
    });
    assert_eq!(got, Ok(11));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(settle("fpm", 2, 3) <= 2, "the pool did not settle");
}

/// A handle whose first poll happens inside an inlined nested job (the
/// awaited task of a blocking `get`, run by its waiter), and which is then
/// awaited at the outer level: the inner `seen` is dropped with the
/// nested job, so the outer first `Pending` wakes itself again, and the
/// second counts: the task queued behind on the only worker completes.
#[test]
fn a_handle_first_polled_inside_a_nested_job_is_awaited_outside() {
    let got = guard(20, || {
        let pool = named("fpn", 1);
        let p = Arc::clone(&pool);
        pool.apply_async(move || {
            let h = Arc::new(Mutex::new(p.apply_async(|| 21u32)));
            let h2 = Arc::clone(&h);
            // Queued behind `h`'s task, but run inline by the `get` below
            // (the awaited task of an untimed wait on a worker).
            let peek = p.apply_async(move || (&mut *h2.lock().unwrap()).now_or_never().is_none());
            let peeked = peek.get().unwrap();
            let h = Arc::try_unwrap(h).ok().unwrap().into_inner().unwrap();
            (peeked, futures::executor::block_on(h))
        })
        .get()
        .unwrap()
    });
    assert_eq!(got.1, Ok(21));
    let _ = got.0; // pending or done: either is right
}

// ------------------------------------------- streams after their count --

/// A stream polled twice on the only worker while its credit is queued
/// behind (the second `Pending` counts the thread and starts a stand-in),
/// then dropped mid-way: the drop uncounts the thread, so while the job
/// keeps running the stand-in is surplus and exits after its rest
/// (500 ms). A key left counted would keep it for the whole job, which
/// here waits (up to 10 s) for the pool to be down to one thread.
#[test]
fn a_stream_dropped_mid_way_after_counting_releases_its_stand_in() {
    guard(20, || {
        let pool = named("fpd", 1);
        let p = Arc::clone(&pool);
        let job = pool.apply_async(move || {
            let mut s = p
                .imap(
                    |x: u32| {
                        thread::sleep(Duration::from_millis(50));
                        x
                    },
                    0..1000u32,
                )
                .into_stream();
            let w = futures::task::noop_waker();
            let mut cx = Context::from_waker(&w);
            assert!(s.poll_next_unpin(&mut cx).is_pending());
            assert!(s.poll_next_unpin(&mut cx).is_pending());
            drop(s);
            settles_to(
                || threads_named("fpd"),
                1,
                Duration::from_secs(10),
                Duration::from_millis(20),
            )
        });
        let low = job.get().unwrap();
        assert_eq!(low, 1, "the stand-in stayed while the job computed");
    });
}

// --------------------------------------------------------- deadlines --

/// A handle seen once (its first `Pending`) and then waited for with
/// `get_timeout`: the deadline is honoured (no inlining of an unrelated
/// job, no stand-in wait), and then `block_on` takes it. The task waits
/// for a release sent only after the timed wait (or 5 s), so it cannot
/// finish within it however the threads are scheduled: a timed wait that
/// overstays its deadline waits those 5 s, far past the 1 s bound.
#[test]
fn a_timed_wait_after_a_first_pending_honours_its_deadline() {
    let (first, took, then) = guard(20, || {
        let pool = named("fpg", 2);
        let p = Arc::clone(&pool);
        pool.apply_async(move || {
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let mut h = p.apply_async(move || {
                let _ = release_rx.recv_timeout(Duration::from_secs(5));
                4u32
            });
            let first = (&mut h).now_or_never().is_none();
            let t = Instant::now();
            let timed = h.get_timeout(Duration::from_millis(30));
            let took = t.elapsed();
            release_tx.send(()).unwrap();
            assert_eq!(timed, Err(TaskError::Timeout));
            (first, took, futures::executor::block_on(h))
        })
        .get()
        .unwrap()
    });
    assert!(first);
    assert!(
        took < Duration::from_secs(1),
        "get_timeout(30 ms) took {took:?}"
    );
    assert_eq!(then, Ok(4));
}

// ------------------------------------------------ spin with no waker --

/// A `noop_waker` executor spinning on `poll` on the only worker, with
/// the awaited task queued behind it and, behind that, a job that waits
/// for a flag the spinner sets only once it has its result: the spin never
/// parks, its second poll counts the thread, a stand-in runs the task (and
/// then the flag's waiter), and both jobs finish.
#[test]
fn a_noop_waker_spin_on_the_only_worker_completes() {
    let got = guard(20, || {
        let pool = named("fpo", 1);
        let p = Arc::clone(&pool);
        pool.apply_async(move || {
            let mut h = p.apply_async(|| 9u32);
            let flag = Arc::new(AtomicBool::new(false));
            let f = Arc::clone(&flag);
            let waiter = p.apply_async(move || {
                while !f.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(1));
                }
            });
            let w = futures::task::noop_waker();
            let mut cx = Context::from_waker(&w);
            let mut polls = 0u64;
            let r = loop {
                polls += 1;
                if let Poll::Ready(r) = Pin::new(&mut h).poll(&mut cx) {
                    break r;
                }
            };
            flag.store(true, Ordering::SeqCst);
            assert_eq!(futures::executor::block_on(waiter), Ok(()));
            (r, polls)
        })
        .get()
        .unwrap()
    });
    assert_eq!(got.0, Ok(9));
    assert!(got.1 >= 2);
}

/// A poll loop slower than the self-wake window (a frame loop polling a
/// kept handle every 25 ms with a no-op waker), on the only worker, the
/// awaited task queued behind it: the second `Pending` in the same job
/// counts the thread, so a stand-in runs the task. (When a first time was
/// judged by time alone, every such poll was a first time: no stand-in,
/// and the loop never ended.)
#[test]
fn a_slow_poll_loop_in_one_job_gets_a_stand_in() {
    child::run("a_slow_poll_loop_in_one_job_gets_a_stand_in", 20, || {
        let pool = named("fps", 1);
        let p = Arc::clone(&pool);
        let (got, polls) = pool
            .apply_async(move || {
                let mut h = p.apply_async(|| 6);
                let waker = futures::task::noop_waker();
                let mut cx = Context::from_waker(&waker);
                let mut polls = 0;
                loop {
                    polls += 1;
                    if let Poll::Ready(r) = Pin::new(&mut h).poll(&mut cx) {
                        break (r, polls);
                    }
                    thread::sleep(Duration::from_millis(25));
                }
            })
            .get()
            .unwrap();
        assert_eq!(got, Ok(6));
        assert!(polls <= 5, "{polls} polls");
    });
}
