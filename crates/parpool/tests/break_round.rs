//! Fifth hostile round: the consumer's take-back (`imap/takeback.rs`) at
//! extreme sizes, racing close/terminate, with panicking user hooks, and
//! nested on a one-worker pool. The pool's only worker is held in most
//! tests, so every credit the consumer issues is taken back and run on the
//! consumer's own thread.
#[path = "common/child.rs"]
mod child;
mod common;

use child::catch;
use common::{guard, occupy_the_worker, terminating_on_panic};
use futures::StreamExt;
use parpool::{PanicPolicy, ThreadPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

/// A range ending at `u64::MAX`, ordered and unordered, through every
/// consumer shape, while the only worker is held: exact, in order, ends.
#[test]
fn a_range_ending_at_u64_max_is_taken_back_exactly() {
    guard(30, || {
        for ordered in [true, false] {
            for chunk in [None, Some(1), Some(usize::MAX)] {
                for buffer in [None, Some(1), Some(usize::MAX)] {
                    let pool = ThreadPool::with_workers(1);
                    let (blocker, release) = occupy_the_worker(&pool);
                    let calls = Arc::new(AtomicUsize::new(0));
                    let c = Arc::clone(&calls);
                    let it = common::kinds::pool_stream(
                        &pool,
                        ordered,
                        move |x: u64| {
                            c.fetch_add(1, Ordering::SeqCst);
                            x
                        },
                        u64::MAX - 5..=u64::MAX,
                        chunk,
                        buffer,
                    );
                    let mut got: Vec<u64> = it.collect();
                    if !ordered {
                        got.sort_unstable();
                    }
                    assert_eq!(got, (u64::MAX - 5..=u64::MAX).collect::<Vec<_>>());
                    assert_eq!(calls.load(Ordering::SeqCst), 6);
                    release.send(()).unwrap();
                    blocker.get().unwrap();
                }
            }
        }
    });
}

/// An endless `0..=u64::MAX` (size hint `usize::MAX, None`) with the largest
/// settings: a few results, then the drop, all on the consumer.
#[test]
fn an_endless_u64_range_with_max_settings_stops_on_drop() {
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
                0..=u64::MAX,
            )
            .chunksize(usize::MAX)
            .buffer(usize::MAX);
        for want in 0..5u64 {
            assert_eq!(it.next(), Some(want));
        }
        drop(it);
        // Bounded read-ahead: never more than MAX_READ_AHEAD items mapped.
        assert!(calls.load(Ordering::SeqCst) <= 1 << 20);
        release.send(()).unwrap();
        blocker.get().unwrap();
    });
}

/// Empty inputs, one item, zero-sized items and results: every consumer
/// shape ends, with exactly the items given.
#[test]
fn empty_single_and_zero_sized_streams_end_on_the_consumer() {
    guard(30, || {
        for _ in 0..ROUNDS {
            let pool = ThreadPool::with_workers(1);
            let (blocker, release) = occupy_the_worker(&pool);
            assert_eq!(pool.imap(|x: u64| x, 0..0u64).count(), 0);
            assert_eq!(pool.imap_unordered(|x: u64| x, 0..0u64).count(), 0);
            assert_eq!(pool.imap(|x: u64| x, 7..8u64).collect::<Vec<_>>(), [7]);
            let units = pool.imap(|()| (), vec![(); 100_000]).count();
            assert_eq!(units, 100_000);
            let batches: usize = pool
                .imap_unordered(|()| (), vec![(); 10_000])
                .chunksize(1)
                .batches()
                .map(|b| b.len())
                .sum();
            assert_eq!(batches, 10_000);
            let mut t = pool.imap(|x: u8| x, vec![u8::MAX; 3]);
            // A deadline is honoured: nothing is taken back, and the held
            // worker cannot run the credit: a timeout, then the items.
            assert!(t.next_timeout(Duration::from_millis(20)).is_err());
            release.send(()).unwrap();
            assert_eq!(t.collect::<Vec<_>>(), [u8::MAX; 3]);
            blocker.get().unwrap();
        }
    });
}

/// `close` while the consumer runs taken-back credits (and while a credit
/// that is not next is resubmitted and refused): every item exactly once,
/// in order, and the stream ends.
#[test]
fn close_racing_the_take_back_loses_nothing() {
    guard(60, || {
        for round in 0..ROUNDS * 4 {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let calls = Arc::new(Mutex::new(vec![0u32; 200]));
            let c = Arc::clone(&calls);
            let (started_tx, started_rx) = mpsc::channel::<()>();
            let started = Mutex::new(Some(started_tx));
            // Item 0 is slow on the worker: the consumer takes back credit 1,
            // which is not next, and resubmits it while close lands.
            let it = pool
                .imap(
                    move |x: usize| {
                        if x == 0 {
                            if let Some(tx) = started.lock().unwrap().take() {
                                let _ = tx.send(());
                            }
                            thread::sleep(Duration::from_millis(20));
                        }
                        c.lock().unwrap()[x] += 1;
                        x
                    },
                    0..200usize,
                )
                .chunksize(1 + round % 3);
            let p = Arc::clone(&pool);
            let closer = thread::spawn(move || {
                let _ = started_rx.recv();
                thread::sleep(Duration::from_micros(50 * (round as u64 % 8)));
                p.close();
            });
            let got: Vec<usize> = it.collect();
            closer.join().unwrap();
            assert_eq!(got, (0..200).collect::<Vec<_>>(), "round {round}");
            assert!(
                calls.lock().unwrap().iter().all(|&n| n == 1),
                "round {round}"
            );
            pool.join();
        }
    });
}

/// `terminate` from inside `f` on a credit the consumer took back: the
/// stream ends with `Cancelled` (no hang, no lost earlier result), within
/// the post-terminate bound, and no item is mapped twice.
#[test]
fn terminate_from_f_on_a_taken_back_credit_ends_the_stream() {
    child::run(
        "terminate_from_f_on_a_taken_back_credit_ends_the_stream",
        60,
        || {
            for ordered in [true, false] {
                for _ in 0..ROUNDS {
                    let pool = Arc::new(ThreadPool::with_workers(1));
                    let (_blocker, _release) = occupy_the_worker(&pool);
                    let calls = Arc::new(Mutex::new(vec![0u32; 1000]));
                    let c = Arc::clone(&calls);
                    let p = Arc::clone(&pool);
                    let mut it = common::kinds::pool_stream(
                        &pool,
                        ordered,
                        move |x: usize| {
                            c.lock().unwrap()[x] += 1;
                            if x == 10 {
                                p.terminate();
                            }
                            x
                        },
                        0..1000usize,
                        Some(1),
                        None,
                    );
                    let start = Instant::now();
                    let mut seen = Vec::new();
                    let end = catch(|| {
                        for x in it.by_ref() {
                            seen.push(x);
                        }
                    });
                    assert!(start.elapsed() < Duration::from_secs(3));
                    assert!(seen.len() <= 11, "{seen:?}");
                    if ordered {
                        assert_eq!(seen, (0..seen.len()).collect::<Vec<_>>());
                    }
                    if seen.len() < 1000 {
                        assert!(end.is_err(), "a cut stream must raise");
                    }
                    assert!(calls.lock().unwrap().iter().all(|&n| n <= 1));
                }
            }
        },
    );
}

/// Under `PanicPolicy::Terminate`, `f` panics on a credit the consumer
/// took back (the only worker is held): the stream raises that panic, not
/// `Cancelled`, and soon.
#[test]
fn a_terminating_panic_on_a_taken_back_credit_is_raised() {
    child::run(
        "a_terminating_panic_on_a_taken_back_credit_is_raised",
        60,
        || {
            for ordered in [true, false] {
                for _ in 0..ROUNDS {
                    let pool = terminating_on_panic(1);
                    let (_blocker, _release) = occupy_the_worker(&pool);
                    let mut it = common::kinds::pool_stream(
                        &pool,
                        ordered,
                        |x: usize| {
                            if x == 3 {
                                panic!("EXPECTED take-back panic");
                            }
                            x
                        },
                        0..100usize,
                        Some(1),
                        None,
                    );
                    let start = Instant::now();
                    let mut seen = Vec::new();
                    let end = catch(|| {
                        for x in it.by_ref() {
                            seen.push(x);
                        }
                    });
                    assert!(start.elapsed() < Duration::from_secs(3));
                    let msg = end.expect_err("the panic must be raised");
                    assert!(msg.contains("EXPECTED take-back panic"), "got {msg:?}");
                    if ordered {
                        assert_eq!(seen, [0, 1, 2]);
                    }
                }
            }
        },
    );
}

/// A result whose `Drop` panics, buffered on the consumer (taken-back
/// credits), then the stream dropped: the drop does not panic, and the
/// pool keeps working.
#[test]
fn results_that_panic_on_drop_from_taken_back_credits_are_contained() {
    child::run(
        "results_that_panic_on_drop_from_taken_back_credits_are_contained",
        60,
        || {
            struct Bomb(usize);
            impl Drop for Bomb {
                fn drop(&mut self) {
                    if self.0 % 2 == 1 {
                        panic!("EXPECTED result drop");
                    }
                }
            }
            for _ in 0..ROUNDS {
                let pool = ThreadPool::with_workers(1);
                let (blocker, release) = occupy_the_worker(&pool);
                let mut it = pool.imap(Bomb, 0..100usize).chunksize(10);
                let first = it.next().unwrap();
                assert_eq!(first.0, 0);
                drop(first);
                assert!(
                    catch(move || drop(it)).is_ok(),
                    "dropping a stream panicked"
                );
                release.send(()).unwrap();
                blocker.get().unwrap();
                assert_eq!(pool.apply_async(|| 5).get().unwrap(), 5);
            }
        },
    );
}

/// A Vec item whose `Drop` panics (one: two in one `Vec` abort in std), and an `f` whose `Drop` panics, with the
/// stream cut short by a task panic on a taken-back credit: the task panic
/// is raised, every item dropped exactly once, no abort.
#[test]
fn panicking_item_and_f_drops_on_a_cut_take_back_stream() {
    child::run(
        "panicking_item_and_f_drops_on_a_cut_take_back_stream",
        60,
        || {
            static T: child::Tracker = child::Tracker::new();
            for ordered in [true, false] {
                T.reset();
                let pool = ThreadPool::with_workers(1);
                let (blocker, release) = occupy_the_worker(&pool);
                let items: Vec<child::Item> = (0..50)
                    .map(|i| if i == 45 { T.bomb(i) } else { T.item(i) })
                    .collect();
                let guard_bomb = child::DropBomb("EXPECTED f drop");
                let mut it = common::kinds::pool_stream(
                    &pool,
                    ordered,
                    move |x: child::Item| {
                        let _keep = &guard_bomb;
                        T.call(x.id);
                        if x.id == 21 {
                            panic!("EXPECTED task panic");
                        }
                        x.id
                    },
                    items,
                    Some(4),
                    None,
                );
                let end = catch(|| for _ in it.by_ref() {});
                let msg = end.expect_err("task panic raised");
                assert!(msg.contains("EXPECTED task panic"), "got {msg:?}");
                drop(it);
                release.send(()).unwrap();
                blocker.get().unwrap();
                pool.close();
                pool.join();
                T.assert_no_call_twice("cut take-back");
                T.assert_all_dropped_once(50, "cut take-back");
            }
        },
    );
}

/// Nesting on a one-worker pool: an imap inside `f` of an imap inside `f`
/// of an imap, each consumer taking back its own credits.
#[test]
fn triple_nested_imaps_on_one_worker_complete() {
    guard(60, || {
        for _ in 0..ROUNDS {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let p1 = Arc::clone(&pool);
            let total: u64 = pool
                .imap(
                    move |a: u64| {
                        let p2 = Arc::clone(&p1);
                        p1.imap(
                            move |b: u64| p2.imap(move |c: u64| a + b + c, 0..4u64).sum::<u64>(),
                            0..4u64,
                        )
                        .sum::<u64>()
                    },
                    0..8u64,
                )
                .sum();
            // sum over a<8,b<4,c<4 of a+b+c
            assert_eq!(total, 16 * 28 + 8 * 4 * 6 * 2);
        }
    });
}

/// `block_on` of an imap stream inside a job of a one-worker pool, its `f`
/// awaiting an `apply_async` of the same pool, and the input at u64::MAX.
#[test]
fn block_on_of_a_stream_of_futures_on_the_only_worker() {
    guard(60, || {
        for _ in 0..ROUNDS {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let p = Arc::clone(&pool);
            let got = pool
                .apply_async(move || {
                    let q = Arc::clone(&p);
                    futures::executor::block_on(async move {
                        let s = p
                            .imap(
                                move |x: u64| {
                                    futures::executor::block_on(q.apply_async(move || x / 2))
                                        .unwrap()
                                },
                                u64::MAX - 3..=u64::MAX,
                            )
                            .chunksize(1)
                            .into_stream();
                        s.collect::<Vec<u64>>().await
                    })
                })
                .get()
                .unwrap();
            assert_eq!(
                got,
                (u64::MAX - 3..=u64::MAX).map(|x| x / 2).collect::<Vec<_>>()
            );
        }
    });
}

/// `apply_async` awaited as a future while the pool is terminated: the
/// future resolves (to the result or `Cancelled`), never hangs.
#[test]
fn an_awaited_task_resolves_when_terminate_races_it() {
    guard(60, || {
        for i in 0..ROUNDS * 4 {
            let pool = Arc::new(
                ThreadPool::builder()
                    .workers(1)
                    .on_panic(PanicPolicy::Propagate)
                    .build()
                    .unwrap(),
            );
            let (blocker, _release) = occupy_the_worker(&pool);
            let h = pool.apply_async(|| 1u8);
            let p = Arc::clone(&pool);
            let t = thread::spawn(move || {
                thread::sleep(Duration::from_micros(100 * i as u64));
                p.terminate();
            });
            let r = futures::executor::block_on(h);
            assert!(r.is_err() || r == Ok(1));
            t.join().unwrap();
            drop(blocker);
        }
    });
}

/// Every credit the consumer takes back leaves its empty wrapper in the
/// pool's queue until a worker pops it; while the workers are busy, a long
/// stream piles them up without bound, against the promise that an imap's
/// memory is bounded by `buffer` whatever the input's length.
#[test]
fn taken_back_credits_do_not_pile_up_in_a_busy_queue() {
    guard(60, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = occupy_the_worker(&pool);
        let n = 200_000u64;
        let s: u64 = pool.imap(|x: u64| x, 0..n).chunksize(1).sum();
        assert_eq!(s, n * (n - 1) / 2);
        let queued = pool.stats().queued;
        release.send(()).unwrap();
        blocker.get().unwrap();
        // A stream keeps at most `buffer` credits out (default 4 per
        // worker, capped at 1 M items): nothing near one per item.
        assert!(
            queued <= 1024,
            "{queued} jobs left queued by a finished stream"
        );
    });
}

/// A waker that panics when woken, cloned or dropped.
mod bomb_waker {
    use std::task::{RawWaker, RawWakerVTable, Waker};
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn wake(_: *const ()) {
        panic!("EXPECTED waker wake");
    }
    fn wake_by_ref(_: *const ()) {
        panic!("EXPECTED waker wake_by_ref");
    }
    fn drop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop);
    pub fn waker() -> Waker {
        // SAFETY: the vtable's functions ignore the null data pointer.
        unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
    }
}

/// A waker that panics when woken, registered by a poll of a task and of
/// an imap stream: the result is not lost, the stream ends exact, the pool
/// keeps working.
#[test]
fn a_panicking_waker_loses_no_result() {
    child::run("a_panicking_waker_loses_no_result", 60, || {
        use std::future::Future;
        use std::task::{Context, Poll};
        for _ in 0..ROUNDS {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let waker = bomb_waker::waker();
            let mut cx = Context::from_waker(&waker);
            let (blocker, release) = occupy_the_worker(&pool);
            let mut h = pool.apply_async(|| 41u32 + 1);
            assert!(std::pin::Pin::new(&mut h).poll(&mut cx).is_pending());
            let mut s = pool.imap(|x: u64| x, u64::MAX - 9..=u64::MAX).into_stream();
            let mut got = Vec::new();
            match s.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(x)) => got.push(x),
                Poll::Ready(None) => panic!("ended early"),
                Poll::Pending => {}
            }
            release.send(()).unwrap();
            blocker.get().unwrap();
            assert_eq!(h.get().unwrap(), 42);
            got.extend(futures::executor::block_on(s.collect::<Vec<u64>>()));
            assert_eq!(got, (u64::MAX - 9..=u64::MAX).collect::<Vec<_>>());
            assert_eq!(pool.apply_async(|| 7).get().unwrap(), 7);
        }
    });
}

/// Polled streams at the extremes: empty, one item, zero-sized, a range
/// ending at `u64::MAX`; polled again after the end they stay ended.
#[test]
fn polled_streams_at_the_extremes_end_and_stay_ended() {
    guard(30, || {
        use futures::FutureExt;
        let pool = ThreadPool::with_workers(1);
        futures::executor::block_on(async {
            let mut s = pool.imap(|x: u64| x, 0..0u64).into_stream();
            assert_eq!(s.next().await, None);
            assert_eq!(s.next().await, None);
            let mut s = pool
                .imap_unordered(|()| (), vec![(); 3])
                .chunksize(usize::MAX)
                .buffer(1)
                .into_stream();
            for _ in 0..3 {
                assert_eq!(s.next().await, Some(()));
            }
            assert_eq!(s.next().await, None);
            assert_eq!(s.next().now_or_never(), Some(None));
            let s = pool
                .imap(|x: u64| x, u64::MAX..=u64::MAX)
                .buffer(usize::MAX)
                .into_stream();
            assert_eq!(s.collect::<Vec<_>>().await, [u64::MAX]);
        });
    });
}

/// `next_timeout` at the extremes while the only worker is held:
/// `Duration::MAX` is untimed (the consumer takes back and runs the
/// credits), `Duration::ZERO` never runs anything and times out.
#[test]
fn next_timeout_at_zero_and_max_with_the_worker_held() {
    guard(30, || {
        for ordered in [true, false] {
            let pool = ThreadPool::with_workers(1);
            let (blocker, release) = occupy_the_worker(&pool);
            let mut it = common::kinds::pool_stream(
                &pool,
                ordered,
                |x: u64| x,
                u64::MAX - 2..=u64::MAX,
                Some(1),
                None,
            );
            assert!(it.next_timeout(Duration::ZERO).is_err());
            let mut got = Vec::new();
            while let Some(x) = it.next_timeout(Duration::MAX).unwrap() {
                got.push(x);
            }
            got.sort_unstable();
            assert_eq!(got, [u64::MAX - 2, u64::MAX - 1, u64::MAX]);
            release.send(()).unwrap();
            blocker.get().unwrap();
        }
    });
}

/// `terminate` from another thread while the consumer is inside a slow,
/// taken-back `f` that ignores cancellation: once `f` returns, the stream
/// ends promptly as cancelled (not another second), with nothing after.
#[test]
fn terminate_while_the_consumer_runs_a_slow_taken_back_f() {
    child::run(
        "terminate_while_the_consumer_runs_a_slow_taken_back_f",
        60,
        || {
            for ordered in [true, false] {
                let pool = Arc::new(ThreadPool::with_workers(1));
                let (_blocker, _release) = occupy_the_worker(&pool);
                let (in_f_tx, in_f_rx) = mpsc::channel::<()>();
                let in_f = Mutex::new(in_f_tx);
                let mut it = common::kinds::pool_stream(
                    &pool,
                    ordered,
                    move |x: u64| {
                        if x == 2 {
                            in_f.lock().unwrap().send(()).unwrap();
                            thread::sleep(Duration::from_millis(700));
                        }
                        x
                    },
                    0..100u64,
                    Some(1),
                    None,
                );
                let p = Arc::clone(&pool);
                let t = thread::spawn(move || {
                    in_f_rx.recv().unwrap();
                    p.terminate();
                    Instant::now()
                });
                let mut seen = Vec::new();
                let end = catch(|| {
                    for x in it.by_ref() {
                        seen.push(x);
                    }
                });
                let done = Instant::now();
                let terminated = t.join().unwrap();
                assert!(end.is_err(), "a terminated stream must raise");
                assert!(seen.len() <= 3, "{seen:?}");
                assert!(
                    done - terminated < Duration::from_millis(1500),
                    "took {:?} after terminate",
                    done - terminated
                );
            }
        },
    );
}

/// `fold` over taken-back chunks whose `g` panics mid-chunk: the rest of
/// the chunk and the unread results are dropped exactly once, `f` ran at
/// most once per item, and the panic is `g`'s.
#[test]
fn a_panicking_fold_drops_every_result_exactly_once() {
    guard(60, || {
        common::quiet_panics_containing("EXPECTED");
        for ordered in [true, false] {
            for chunk in [1usize, 7, usize::MAX] {
                let drops = common::counters(300);
                let calls = common::counters(300);
                let pool = ThreadPool::with_workers(1);
                let (blocker, release) = occupy_the_worker(&pool);
                let (d, c) = (Arc::clone(&drops), Arc::clone(&calls));
                let it = common::kinds::pool_stream(
                    &pool,
                    ordered,
                    move |x: usize| {
                        c[x].fetch_add(1, Ordering::SeqCst);
                        common::Probe::new(x, &d)
                    },
                    0..300usize,
                    Some(chunk),
                    None,
                );
                let r = catch(move || {
                    it.fold(0usize, |n, p| {
                        if n == 40 {
                            panic!("EXPECTED fold panic");
                        }
                        drop(p);
                        n + 1
                    })
                });
                assert!(r.expect_err("g panicked").contains("EXPECTED fold panic"));
                release.send(()).unwrap();
                blocker.get().unwrap();
                pool.close();
                pool.join();
                for i in 0..300 {
                    let (called, dropped) = (
                        calls[i].load(Ordering::SeqCst),
                        drops[i].load(Ordering::SeqCst),
                    );
                    assert!(called <= 1, "item {i} mapped {called} times");
                    assert_eq!(called, dropped, "item {i}: {called} calls, {dropped} drops");
                }
            }
        }
    });
}

/// `PanicPolicy::Terminate` on two workers with the consumer taking back
/// too: a panic at item 5 on whichever thread is raised as itself (never
/// `Cancelled`), quickly, with nothing mapped twice.
#[test]
fn a_terminating_panic_racing_the_take_back_on_two_workers() {
    child::run(
        "a_terminating_panic_racing_the_take_back_on_two_workers",
        120,
        || {
            for round in 0..ROUNDS * 6 {
                let ordered = round % 2 == 0;
                let pool = terminating_on_panic(2);
                let calls = common::counters(200);
                let c = Arc::clone(&calls);
                let mut it = common::kinds::pool_stream(
                    &pool,
                    ordered,
                    move |x: usize| {
                        c[x].fetch_add(1, Ordering::SeqCst);
                        if x == 5 {
                            panic!("EXPECTED terminating panic");
                        }
                        thread::sleep(Duration::from_micros(200));
                        x
                    },
                    0..200usize,
                    Some(1 + round % 3),
                    None,
                );
                let start = Instant::now();
                let end = catch(|| for _ in it.by_ref() {});
                let msg = end.expect_err("the panic must be raised");
                assert!(
                    msg.contains("EXPECTED terminating panic"),
                    "round {round}: got {msg:?}"
                );
                assert!(start.elapsed() < Duration::from_secs(3));
                assert!(calls.iter().all(|n| n.load(Ordering::SeqCst) <= 1));
            }
        },
    );
}
