//! Hostile review, third round, of `215d9e9` and `da7f97e`: the executor
//! wait's thread-wide count (`worker::executor_waits`/`executor_resumed`),
//! the read token's waiter count, and a refused consumer that stops asking
//! a closed pool. These tests try to uncount a worker whose executor still
//! parks it (a hang: the stand-in then counts as surplus), to lose a read
//! token wake-up, and to confuse a refused consumer moved between threads.
//! The four tests of section 1 hung against that thread-wide count (each
//! resume point uncounted the thread while a sibling future still waited);
//! they pass since the count follows each pending future (`exec_wait.rs`).
//! Their comments describe how the old count failed.
mod common;

use common::{guard, slow_spares, threads_named};
use futures::{FutureExt, StreamExt};
use parpool::{AsyncResult, ThreadPool};

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

// ------------------------------------------------------------- helpers --

/// A task of `pool` that sleeps `ms`, then awaits (with `block_on`, on its
/// worker) a fresh task of the same pool: it finishes only if some
/// unblocked thread runs that fresh task.
fn awaits_a_fresh_task(pool: &Arc<ThreadPool>, ms: u64) -> AsyncResult<u32> {
    let p = Arc::clone(pool);
    pool.apply_async(move || {
        thread::sleep(Duration::from_millis(ms));
        let inner = p.apply_async(|| 7u32);
        futures::executor::block_on(inner).unwrap()
    })
}

/// Returns `Pending` once, waking itself: the executor polls again at once.
async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

// ------------------------------ 1. the executor wait is thread-wide --

/// `join!(a, b)` on the only worker, where `b` (a task of another pool)
/// finishes first. At the wake-up, `join` polls `a` (Pending: counted) and
/// then `b` (Ready): `AsyncResult::poll` starts with `executor_resumed`,
/// which uncounts the thread although `a` is still pending and the executor
/// parks it again. The spare started for the first poll is now surplus in
/// the census (2 live, 0 blocked, 1 worker). When `a`'s task (on the spare)
/// then awaits a fresh task, the spare counts itself blocked, sees one
/// active thread (the parked worker) and starts nobody: the fresh task is
/// queued with no thread to run it.
#[test]
fn a_join_whose_second_future_finishes_first_does_not_hang() {
    let out = guard(20, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let other = ThreadPool::with_workers(1);
        let b = other.apply_async(|| {
            thread::sleep(Duration::from_millis(50));
            2u32
        });
        let p = Arc::clone(&pool);
        let job = pool.apply_async(move || {
            let a = awaits_a_fresh_task(&p, 400);
            futures::executor::block_on(async move {
                let (a, b) = futures::join!(a, b);
                a.unwrap() + b.unwrap()
            })
        });
        job.get().unwrap()
    });
    assert_eq!(out, 9);
}

/// The same hole through `AsyncResult::drop`: inside the `join!`, the
/// second branch drops a pending fire-and-forget handle, which uncounts
/// the thread while the first branch still parks it.
#[test]
fn dropping_a_pending_handle_beside_a_pending_future_does_not_hang() {
    let out = guard(20, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let job = pool.apply_async(move || {
            let a = awaits_a_fresh_task(&p, 400);
            let p2 = Arc::clone(&p);
            futures::executor::block_on(async move {
                let dropper = async move {
                    // Let the first poll of `a` count the thread first.
                    yield_now().await;
                    drop(p2.apply_async(|| thread::sleep(Duration::from_millis(100))));
                };
                let (a, ()) = futures::join!(a, dropper);
                a.unwrap()
            })
        });
        job.get().unwrap()
    });
    assert_eq!(out, 7);
}

/// The brief's nested case: inside the executor's poll, after a sibling
/// future returned Pending (counted), a blocking `get()` (here on another
/// pool's task) starts with `executor_resumed` and, on return, leaves the
/// thread uncounted while the executor parks it on the sibling.
#[test]
fn a_blocking_get_inside_a_poll_does_not_uncount_the_pending_sibling() {
    let out = guard(20, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let other = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let job = pool.apply_async(move || {
            let a = awaits_a_fresh_task(&p, 400);
            futures::executor::block_on(async move {
                let getter = async move {
                    yield_now().await;
                    other.apply_async(|| 3u32).get().unwrap()
                };
                let (a, b) = futures::join!(a, getter);
                a.unwrap() + b
            })
        });
        job.get().unwrap()
    });
    assert_eq!(out, 10);
}

/// The same with an imap stream as the sibling that completes: its
/// `poll_next` starts with `executor_resumed`.
#[test]
fn a_stream_finishing_beside_a_pending_future_does_not_hang() {
    let out = guard(20, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let other = ThreadPool::with_workers(1);
        let s = other
            .imap(|x: u32| x, 0..3u32)
            .into_stream()
            .collect::<Vec<_>>();
        let p = Arc::clone(&pool);
        let job = pool.apply_async(move || {
            let a = awaits_a_fresh_task(&p, 400);
            futures::executor::block_on(async move {
                let (a, v) = futures::join!(a, s);
                a.unwrap() + v.iter().sum::<u32>()
            })
        });
        job.get().unwrap()
    });
    assert_eq!(out, 10);
}

/// Control: the same shapes without a sibling completing in between (both
/// branches pending together) complete.
#[test]
fn a_join_of_two_pending_tasks_completes() {
    let out = guard(20, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let job = pool.apply_async(move || {
            let a = awaits_a_fresh_task(&p, 100);
            let b = awaits_a_fresh_task(&p, 100);
            futures::executor::block_on(async move {
                let (a, b) = futures::join!(a, b);
                a.unwrap() + b.unwrap()
            })
        });
        job.get().unwrap()
    });
    assert_eq!(out, 14);
}

// ------------------- 2. spares started without waiting, at shutdown --

/// `terminate` and `join` while the stand-in a poll started (not waited
/// for) is still in its initializer: `join` returns once it is up and
/// gone, the awaited handle reports an error or its value, and no thread
/// is left.
#[test]
fn terminate_and_join_while_a_polls_spare_is_still_starting() {
    for round in 0..3 {
        let prefix = format!("t3term{round}");
        let p2 = prefix.clone();
        guard(20, move || {
            let pool = slow_spares(&p2, 400);
            let p = Arc::clone(&pool);
            let (polled_tx, polled_rx) = mpsc::channel();
            let job = pool.apply_async(move || {
                let mut inner = p.apply_async(|| 1u32);
                // One poll: Pending, counts this worker, starts the spare.
                assert!((&mut inner).now_or_never().is_none());
                polled_tx.send(()).unwrap();
                futures::executor::block_on(inner)
            });
            polled_rx.recv().unwrap();
            pool.terminate();
            let t = Instant::now();
            pool.join();
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "join took {:?}",
                t.elapsed()
            );
            // Terminated: the inner task was discarded (Err) or ran (Ok(1)).
            match job.get() {
                Ok(Ok(1)) | Ok(Err(_)) | Err(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        });
        let until = Instant::now() + Duration::from_secs(5);
        while threads_named(&prefix) > 0 && Instant::now() < until {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(threads_named(&prefix), 0, "threads left after join");
    }
}

/// `close` and `join` in the same window: the spare finishes starting,
/// runs the awaited task, and every result arrives.
#[test]
fn close_and_join_while_a_polls_spare_is_still_starting() {
    for _ in 0..3 {
        let out = guard(20, || {
            let pool = slow_spares("t3close", 400);
            let p = Arc::clone(&pool);
            let (polled_tx, polled_rx) = mpsc::channel();
            let job = pool.apply_async(move || {
                let mut inner = p.apply_async(|| 1u32);
                assert!((&mut inner).now_or_never().is_none());
                polled_tx.send(()).unwrap();
                futures::executor::block_on(inner).unwrap() + 1
            });
            polled_rx.recv().unwrap();
            pool.close();
            pool.join();
            job.get().unwrap()
        });
        assert_eq!(out, 2);
    }
}

/// Retiring after every task while every job awaits a fresh task with
/// `block_on`: each retirement goes through `leave`, which must not strand
/// the awaited task (a worker counted blocked by its executor, a
/// replacement, a spare) and the pool must settle back to one thread.
#[test]
fn retiring_after_each_task_while_awaiting_in_a_chain() {
    let out = guard(30, || {
        let pool = Arc::new(
            ThreadPool::builder()
                .workers(1)
                .max_tasks_per_worker(1)
                .thread_name("t3retire")
                .build()
                .unwrap(),
        );
        let handles: Vec<_> = (0..20).map(|_| awaits_a_fresh_task(&pool, 1)).collect();
        handles.into_iter().map(|h| h.get().unwrap()).sum::<u32>()
    });
    assert_eq!(out, 140);
}

// ------------------------------------------ 3. the read token's waiters --

/// Many workers contend for the read token of an input that is not read in
/// bulk (an `inspect` adapter) and sometimes stalls inside `next()`, past the
/// waiters' spin and grace, so they block counted and a release must
/// notify them. A lost wake-up would leave a credit asleep until a
/// recheck; the stream must finish complete, in order, well within the
/// guard, also with `next_timeout` polling from the consumer.
#[test]
fn contended_read_token_loses_no_wake_up() {
    for round in 0..4 {
        let out = guard(60, move || {
            let pool = ThreadPool::with_workers(4);
            let input = (0..3000u32).inspect(|&x| {
                if x % 97 == 0 {
                    thread::sleep(Duration::from_millis(2));
                }
            });
            let mut it = pool.imap(|x: u32| x * 2, input).chunksize(1);
            let mut got = Vec::new();
            let t = Instant::now();
            loop {
                let r = if round % 2 == 0 {
                    it.next_timeout(Duration::from_millis(1))
                } else {
                    Ok(it.next())
                };
                match r {
                    Ok(Some(x)) => got.push(x),
                    Ok(None) => break,
                    Err(parpool::TaskError::Timeout) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            (got, t.elapsed())
        });
        let (got, took) = out;
        assert_eq!(got, (0..3000u32).map(|x| x * 2).collect::<Vec<_>>());
        assert!(took < Duration::from_secs(20), "took {took:?}");
    }
}

// ----------------------------------- 4. a refused consumer moving around --

/// A consumer made outside a closed pool and refused once (its credits run
/// on the caller) is sent to a worker of that closed pool still running a
/// job, which finishes it: there it may queue credits again (a closed
/// pool's own workers may), its refused credits run only when only they
/// are out, and every result arrives once, in order.
#[test]
fn a_refused_consumer_finished_on_a_worker_of_the_closed_pool() {
    for ordered in [true, false] {
        let (first, rest) = guard(30, move || {
            let pool = ThreadPool::with_workers(1);
            let (tx, rx) = mpsc::channel::<Box<dyn Iterator<Item = u32> + Send>>();
            let job = pool.apply_async(move || {
                let it = rx.recv().unwrap();
                it.collect::<Vec<u32>>()
            });
            pool.close();
            let mut it: Box<dyn Iterator<Item = u32> + Send> = if ordered {
                Box::new(pool.imap(|x: u32| x + 1, 0..2000u32).chunksize(7))
            } else {
                Box::new(pool.imap_unordered(|x: u32| x + 1, 0..2000u32).chunksize(7))
            };
            // Refused: runs here.
            let first: Vec<u32> = it.by_ref().take(50).collect();
            tx.send(it).unwrap();
            let rest = job.get().unwrap();
            pool.join();
            (first, rest)
        });
        let mut all = first.clone();
        all.extend(&rest);
        if ordered {
            assert_eq!(all, (1..=2000u32).collect::<Vec<_>>());
        } else {
            all.sort_unstable();
            assert_eq!(all, (1..=2000u32).collect::<Vec<_>>());
        }
    }
}

/// The other way round: a consumer started on a worker of a closed pool
/// (its credits queued there), handed back to the caller mid-stream, where
/// the pool refuses it from then on (the rule "refused credits run only
/// when only refused credits are out" with queued credits still out).
#[test]
fn a_consumer_moved_off_a_closed_pools_worker_mid_stream() {
    for _ in 0..3 {
        let all = guard(30, || {
            let pool = ThreadPool::with_workers(2);
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (back_tx, back_rx) = mpsc::channel();
            let p = Arc::new(pool);
            let p2 = Arc::clone(&p);
            let job = p.apply_async(move || {
                go_rx.recv().unwrap();
                let mut it = p2.imap(|x: u32| x * 3, 0..5000u32).chunksize(3);
                let first: Vec<u32> = it.by_ref().take(100).collect();
                back_tx.send((first, it)).unwrap();
            });
            p.close();
            go_tx.send(()).unwrap();
            let (mut all, it) = back_rx.recv().unwrap();
            all.extend(it);
            job.get().unwrap();
            p.join();
            all
        });
        assert_eq!(all, (0..5000u32).map(|x| x * 3).collect::<Vec<_>>());
    }
}

/// A refused stream polled on a worker of the closed pool after the
/// caller got its first items: the executor's polls complete the stream.
#[test]
fn a_refused_stream_polled_on_a_worker_of_the_closed_pool() {
    let all = guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (tx, rx) = mpsc::channel::<parpool::Imap<'static, u32>>();
        let job = pool.apply_async(move || {
            let it = rx.recv().unwrap();
            futures::executor::block_on(it.into_stream().collect::<Vec<u32>>())
        });
        pool.close();
        let mut it = pool.imap(|x: u32| x, 0..1000u32).chunksize(5);
        let first: Vec<u32> = it.by_ref().take(10).collect();
        tx.send(it).unwrap();
        let mut all = first;
        all.extend(job.get().unwrap());
        pool.join();
        all
    });
    assert_eq!(all, (0..1000u32).collect::<Vec<_>>());
}
