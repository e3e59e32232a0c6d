//! Hostile review of the take-back (`imap/takeback.rs`) and of awaiting on
//! a worker (`exec_wait.rs`): ordering, exactly-once calls and
//! drops, which thread runs `f`, shutdown racing a take-back, timed and
//! untimed waits mixed. The first four tests were found failing against a
//! first version that ran the awaited work inline in `poll` (inside the
//! caller's executor, where `block_on` panics and a timer cannot win, and
//! past the inlining depth a hang); a poll on a worker now hands its
//! thread's place to a stand-in instead.
#[path = "common/child.rs"]
mod child;
mod common;

use child::{catch, Tracker};
use common::{guard, occupy_the_worker, pick};
use futures::StreamExt;
use parpool::{PanicPolicy, TaskError, ThreadPool};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// Runs `job` on a worker of a 2-worker pool whose other worker is held
/// until `job` has returned (or `hold` has passed, whichever is first), so
/// whatever `job` awaits is still queued when it is polled, however late
/// the scheduler runs `job`.
fn on_a_worker_while_the_other_is_busy<R: Send + 'static>(
    hold: Duration,
    job: impl FnOnce(Arc<ThreadPool>) -> R + Send + 'static,
) -> R {
    let pool = Arc::new(ThreadPool::with_workers(2));
    let (busy_tx, busy_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocker = pool.apply_async(move || {
        busy_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(hold);
    });
    busy_rx.recv().unwrap();
    let inner = Arc::clone(&pool);
    let r = pool.apply_async(move || job(inner)).get().unwrap();
    drop(release_tx);
    blocker.get().unwrap();
    r
}

/// A timer future driven by its own thread (no runtime needed).
struct Delay {
    state: Arc<Mutex<(bool, Option<Waker>)>>,
}

impl Delay {
    fn after(d: Duration) -> Self {
        let state = Arc::new(Mutex::new((false, None::<Waker>)));
        let s = Arc::clone(&state);
        thread::spawn(move || {
            thread::sleep(d);
            let mut g = s.lock().unwrap();
            g.0 = true;
            if let Some(w) = g.1.take() {
                w.wake();
            }
        });
        Delay { state }
    }
}

impl Future for Delay {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.state.lock().unwrap();
        if g.0 {
            Poll::Ready(())
        } else {
            g.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

// ------------------------------- found against inlining in `poll` --

/// A task that itself uses `block_on`, awaited from a worker, runs on
/// another thread, outside the awaiting executor (inlined into `poll`, its
/// `block_on` panicked with `EnterError`).
#[test]
fn an_awaited_task_that_uses_block_on_still_works() {
    let got = guard(20, || {
        on_a_worker_while_the_other_is_busy(Duration::from_millis(300), |pool| {
            let h = pool.apply_async(|| futures::executor::block_on(async { 5 }));
            futures::executor::block_on(h)
        })
    });
    assert_eq!(got, Ok(5));
}

/// The same through a stream: no credit runs inside `poll` (taken back
/// there, an `f` using `block_on` panicked).
#[test]
fn a_polled_stream_whose_f_uses_block_on_still_works() {
    let got = guard(20, || {
        on_a_worker_while_the_other_is_busy(Duration::from_millis(300), |pool| {
            let s = pool
                .imap(
                    |x: u64| futures::executor::block_on(async move { x + 1 }),
                    0..10u64,
                )
                .into_stream();
            catch(|| futures::executor::block_on(s.collect::<Vec<u64>>()))
        })
    });
    assert_eq!(got, Ok((1..=10).collect::<Vec<_>>()));
}

/// A `select` of a task that cannot end before the `select` does (it waits
/// for a gate opened after it, at most 10 s) and a 50 ms timer, on a
/// worker: the timer wins, since `poll` returns at once (inlined, the task
/// ran to its end first: the gate's 10 s, and the task won).
#[test]
fn a_timeout_raced_against_a_task_on_a_worker_is_honoured() {
    let (took, timer_won) = guard(20, || {
        on_a_worker_while_the_other_is_busy(Duration::from_secs(15), |pool| {
            let (gate_tx, gate_rx) = mpsc::channel::<()>();
            let h = pool.apply_async(move || {
                let _ = gate_rx.recv_timeout(Duration::from_secs(10));
            });
            let t0 = Instant::now();
            let r = futures::executor::block_on(futures::future::select(
                h,
                Delay::after(Duration::from_millis(50)),
            ));
            let took = t0.elapsed();
            drop(gate_tx);
            (took, matches!(r, futures::future::Either::Right(_)))
        })
    });
    assert!(timer_won, "the task finished before a 50 ms timer");
    // Normal: the timer's 50 ms; the task run inline: the gate's 10 s.
    assert!(took < Duration::from_secs(5), "select took {took:?}");
}

/// `block_on` on the only worker at inline depth 32: the poll counts the
/// worker blocked and a spare runs the task (inlining gave up at that
/// depth and the executor parked the only worker unseen: a hang).
#[test]
fn block_on_past_the_inlining_depth_does_not_hang() {
    fn nest(pool: Arc<ThreadPool>, k: u32) -> u32 {
        if k == 32 {
            // Running at inline depth 32: `poll` may not inline any more.
            return futures::executor::block_on(pool.apply_async(|| 1)).unwrap() + k;
        }
        let p = Arc::clone(&pool);
        pool.apply_async(move || nest(p, k + 1)).get().unwrap()
    }
    child::run("block_on_past_the_inlining_depth_does_not_hang", 10, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let r = catch(|| pool.apply_async(move || nest(p, 0)).get());
        // Completing, or a clear error, are both fine; hanging is not.
        if let Ok(r) = r {
            assert!(matches!(r, Ok(33) | Err(TaskError::Panicked(_))), "{r:?}");
        }
    });
}

// ------------------------------------------------------ guarded behaviour --

/// Credits handed back by `run_if_next` are resubmitted, or refused once the
/// pool closes mid-stream: every item is mapped once, yielded once and in
/// order, dropped once, and the stream ends complete.
#[test]
fn resubmitted_and_refused_credits_keep_every_item_exactly_once() {
    static T: Tracker = Tracker::new();
    guard(120, || {
        for round in 0..pick(60, 2) {
            for ordered in [true, false] {
                T.reset();
                let n = 300;
                let pool = Arc::new(ThreadPool::with_workers(2));
                let f = |it: child::Item| {
                    let id = it.seen();
                    if id % 7 == 0 {
                        // The worker holds the wanted chunk: a later credit
                        // taken back is not next and goes back.
                        thread::sleep(Duration::from_micros(300));
                    }
                    id
                };
                let chunk = 1 + round % 3;
                let mut it: Box<dyn Iterator<Item = usize>> = if ordered {
                    Box::new(pool.imap(f, T.items(n)).chunksize(chunk).buffer(8))
                } else {
                    Box::new(
                        pool.imap_unordered(f, T.items(n))
                            .chunksize(chunk)
                            .buffer(8),
                    )
                };
                let mut got = Vec::with_capacity(n);
                for (i, x) in it.by_ref().enumerate() {
                    got.push(x);
                    if i == 20 + round * 3 {
                        pool.close();
                    }
                }
                drop(it);
                if !ordered {
                    got.sort_unstable();
                }
                assert_eq!(got, (0..n).collect::<Vec<_>>(), "round {round} {ordered}");
                T.assert_no_call_twice("resubmit");
                pool.join();
                T.assert_all_dropped_once(n, "resubmit");
                assert_eq!(pool.stats().queued, 0);
            }
        }
    });
}

/// `terminate` while the consumer runs taken-back credits of a `Vec` of
/// live items: an in-order prefix, then `Cancelled`; every item dropped
/// exactly once (mapped, or with the unread input or a returned credit).
#[test]
fn terminate_during_take_back_drops_every_item_once() {
    static T: Tracker = Tracker::new();
    guard(120, || {
        for round in 0..pick(100, 2) {
            T.reset();
            let n = 2000;
            let pool = Arc::new(ThreadPool::with_workers(1));
            let (blocker, release) = occupy_the_worker(&pool);
            let killer = {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    thread::sleep(Duration::from_micros(30 * (round % 30) as u64));
                    pool.terminate();
                })
            };
            let mut got = Vec::new();
            let out = catch(|| {
                for x in pool.imap(|it: child::Item| it.seen(), T.items(n)) {
                    got.push(x);
                }
            });
            killer.join().unwrap();
            assert!(got.iter().copied().eq(0..got.len()), "round {round}");
            match out {
                Ok(()) => assert_eq!(got.len(), n),
                Err(msg) => assert!(msg.contains("ancelled"), "round {round}: {msg}"),
            }
            drop(release);
            let _ = blocker.get();
            pool.join();
            T.assert_no_call_twice("terminate");
            T.assert_all_dropped_once(n, "terminate");
        }
    });
}

/// Chunk and buffer extremes with every credit taken back by the consumer.
#[test]
fn take_back_at_chunk_and_buffer_extremes() {
    guard(60, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let n = pick(20_000, 100) as u64;
        let want: Vec<u64> = (0..n).map(|x| x ^ 5).collect();
        let settings = [
            (Some(usize::MAX), None),
            (None, Some(usize::MAX)),
            (Some(usize::MAX), Some(usize::MAX)),
            (Some(1), Some(1)),
            (None, Some(1)),
            (Some(usize::MAX), Some(1)),
        ];
        for (c, b) in settings {
            let mut it = pool.imap(|x: u64| x ^ 5, 0..n);
            if let Some(c) = c {
                it = it.chunksize(c);
            }
            if let Some(b) = b {
                it = it.buffer(b);
            }
            assert_eq!(it.collect::<Vec<_>>(), want, "{c:?} {b:?}");
            let mut it = pool.imap_unordered(|x: u64| x ^ 5, (0..n).collect::<Vec<_>>());
            if let Some(c) = c {
                it = it.chunksize(c);
            }
            if let Some(b) = b {
                it = it.buffer(b);
            }
            let mut got: Vec<u64> = it.collect();
            got.sort_unstable();
            let mut sorted = want.clone();
            sorted.sort_unstable();
            assert_eq!(got, sorted, "unordered {c:?} {b:?}");
        }
        release.send(()).unwrap();
        blocker.get().unwrap();
    });
}

/// `next()` and `next_timeout(0)` alternated while the only worker is busy:
/// `next()` runs the wanted item here, `next_timeout` never runs anything
/// (and times out), so `f` ran exactly as often as items came out.
#[test]
fn timed_and_untimed_waits_mixed() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let mut it = pool
            .imap(
                move |x: u64| {
                    c.fetch_add(1, Ordering::SeqCst);
                    x
                },
                0..200u64,
            )
            .chunksize(1);
        for k in 0..200u64 {
            let before = calls.load(Ordering::SeqCst);
            assert_eq!(
                it.next_timeout(Duration::ZERO),
                Err(TaskError::Timeout),
                "item {k}"
            );
            assert_eq!(calls.load(Ordering::SeqCst), before, "a timed wait ran f");
            assert_eq!(it.next(), Some(k));
            assert_eq!(calls.load(Ordering::SeqCst), k as usize + 1);
        }
        assert_eq!(it.next(), None);
        release.send(()).unwrap();
        blocker.get().unwrap();
    });
}

/// A task panic in a taken-back credit under `PanicPolicy::Terminate`: the
/// results before it come out, then the panic; the pool terminates (which
/// drains the credits still queued) and nothing hangs.
#[test]
fn a_panic_on_the_consumer_under_the_terminate_policy() {
    common::quiet_panics_containing("EXPECTED");
    guard(30, || {
        let pool = ThreadPool::builder()
            .workers(1)
            .on_panic(PanicPolicy::Terminate)
            .build()
            .unwrap();
        let (blocker, release) = occupy_the_worker(&pool);
        let me = thread::current().id();
        let mut got = Vec::new();
        let out = catch(|| {
            for x in pool
                .imap(
                    move |x: u64| {
                        assert_eq!(thread::current().id(), me);
                        if x == 5 {
                            panic!("EXPECTED boom at 5");
                        }
                        x
                    },
                    0..100u64,
                )
                .chunksize(1)
            {
                got.push(x);
            }
        });
        assert_eq!(got, (0..5).collect::<Vec<_>>());
        assert!(out.unwrap_err().contains("EXPECTED boom at 5"));
        release.send(()).unwrap();
        let _ = blocker.get();
        pool.join();
        assert_eq!(pool.stats().panicked, 1);
    });
}

/// Dropping a stream early with items of a `Vec` input left: the unread
/// rest (one of whose `Drop` panics) goes contained, as a stray panic.
#[test]
fn dropping_a_taken_back_stream_with_a_panicking_input_drop() {
    static T: Tracker = Tracker::new();
    child::run(
        "dropping_a_taken_back_stream_with_a_panicking_input_drop",
        30,
        || {
            let pool = ThreadPool::with_workers(1);
            let (blocker, release) = occupy_the_worker(&pool);
            let mut items = T.items(40);
            items.push(T.bomb(40));
            let mut it = pool.imap(|it: child::Item| it.id, items).chunksize(2);
            assert_eq!(it.next(), Some(0));
            assert_eq!(it.next(), Some(1));
            assert_eq!(it.next(), Some(2));
            drop(it);
            release.send(()).unwrap();
            blocker.get().unwrap();
            pool.close();
            pool.join();
            T.assert_all_dropped_once(41, "input drop");
            assert_eq!(pool.stats().panicked, 1);
        },
    );
}

/// Polled on a plain thread (not a worker), a stream never runs `f` there,
/// even on a pool without an initializer whose only worker is busy.
#[test]
fn a_stream_polled_off_the_pool_never_runs_f_on_the_poller() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let me = thread::current().id();
        let on_me = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&on_me);
        let s = pool
            .imap(
                move |x: u64| {
                    if thread::current().id() == me {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                    x
                },
                0..1000u64,
            )
            .into_stream();
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            release.send(()).unwrap();
        });
        let got: Vec<u64> = futures::executor::block_on(s.collect());
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert_eq!(on_me.load(Ordering::SeqCst), 0);
        releaser.join().unwrap();
        blocker.get().unwrap();
    });
}

/// A stream of pool A polled on a worker of pool B is left to A's threads
/// (B's worker may not run A's `f`), and still completes.
#[test]
fn a_stream_of_another_pool_polled_on_a_worker_stays_on_its_pool() {
    guard(30, || {
        let a = Arc::new(ThreadPool::with_workers(1));
        let b = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&a);
        let a2 = Arc::clone(&a);
        let h = b.apply_async(move || {
            let me = thread::current().id();
            let threads: Arc<Mutex<Vec<ThreadId>>> = Arc::default();
            let t = Arc::clone(&threads);
            let s = a2
                .imap(
                    move |x: u64| {
                        t.lock().unwrap().push(thread::current().id());
                        x
                    },
                    0..500u64,
                )
                .into_stream();
            let got: Vec<u64> = futures::executor::block_on(s.collect());
            let here = threads.lock().unwrap().iter().filter(|t| **t == me).count();
            (got, here)
        });
        thread::sleep(Duration::from_millis(100));
        release.send(()).unwrap();
        let (got, here) = h.get().unwrap();
        assert_eq!(got, (0..500).collect::<Vec<_>>());
        assert_eq!(here, 0, "pool A's f ran on pool B's worker");
        blocker.get().unwrap();
    });
}

/// On a pool with an initializer, a stream polled (and an iterator
/// iterated) on the pool's only worker runs its credits there, where the
/// initializer's thread-local state is set.
#[test]
fn nested_imaps_on_a_one_worker_pool_with_an_initializer() {
    thread_local!(static READY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    guard(30, || {
        let pool = Arc::new(
            ThreadPool::builder()
                .workers(1)
                .initializer(|| READY.with(|r| r.set(true)))
                .build()
                .unwrap(),
        );
        let p = Arc::clone(&pool);
        let (streamed, iterated) = pool
            .apply_async(move || {
                let f = |x: u64| {
                    assert!(READY.with(|r| r.get()), "f ran without the initializer");
                    x + 1
                };
                let s: Vec<u64> = futures::executor::block_on(
                    p.imap_unordered(f, 0..3000u64).into_stream().collect(),
                );
                let i: u64 = p.imap(f, 0..3000u64).sum();
                (s.len(), i)
            })
            .get()
            .unwrap();
        assert_eq!(streamed, 3000);
        assert_eq!(iterated, 3000 * 3001 / 2);
    });
}

/// A stream polled once on one thread (credits issued, waker registered),
/// then moved to another thread and finished there: the new waker is the
/// one woken, and no item is lost or repeated.
#[test]
fn a_stream_moved_between_threads_between_polls() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let mut s = pool.imap(|x: u64| x * 2, 0..2000u64).into_stream();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(s.poll_next_unpin(&mut cx).is_pending());
        let t = thread::spawn(move || futures::executor::block_on(s.collect::<Vec<u64>>()));
        thread::sleep(Duration::from_millis(50));
        release.send(()).unwrap();
        let got = t.join().unwrap();
        assert_eq!(got, (0..2000).map(|x| x * 2).collect::<Vec<_>>());
        blocker.get().unwrap();
    });
}

/// `map_async` whose items panic, awaited on the only worker: the error
/// comes back, nothing hangs, and the pool still works.
#[test]
fn a_panicking_map_async_awaited_on_the_only_worker() {
    common::quiet_panics_containing("EXPECTED");
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let r = pool
            .apply_async(move || {
                let h = p.map_async(
                    |x: u64| {
                        if x == 500 {
                            panic!("EXPECTED map_async item");
                        }
                        x
                    },
                    (0..1000u64).collect::<Vec<_>>(),
                );
                futures::executor::block_on(h)
            })
            .get()
            .unwrap();
        assert!(
            matches!(r, Err(TaskError::Panicked(ref m)) if m.contains("EXPECTED")),
            "{r:?}"
        );
        assert_eq!(pool.apply(|| 3), 3);
    });
}

/// A chain of 3000 imaps, each nested in the `f` of the one before, from a
/// thread outside a 1-worker pool: the consumer takes credits back only
/// within the inlining depth, then waits (the rest nests on the pool's
/// threads, as blocking waits do), so the stack never overflows. (Without
/// the limit, the chain recursed on the caller's stack and aborted.)
#[test]
fn a_deep_chain_of_nested_imaps_does_not_overflow_the_callers_stack() {
    fn nest(pool: Arc<ThreadPool>, k: u32) -> u64 {
        if k == 3000 {
            return 1;
        }
        let p = Arc::clone(&pool);
        pool.imap(move |_: u64| nest(Arc::clone(&p), k + 1), 0..1u64)
            .sum()
    }
    child::run(
        "a_deep_chain_of_nested_imaps_does_not_overflow_the_callers_stack",
        60,
        || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            // On a thread with std's default 2 MiB stack.
            let got = thread::spawn(move || nest(pool, 0)).join().unwrap();
            assert_eq!(got, 1);
        },
    );
}
