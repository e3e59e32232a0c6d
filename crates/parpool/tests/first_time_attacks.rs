//! Hostile review of the "first time" rule of executor waits (commit
//! 9261c53, `exec_wait::first_time`): a parpool future's `Pending` on a
//! worker wakes its own waker and counts nothing unless that future
//! returned `Pending` earlier in the same job (`Waits::seen`) or on the
//! same thread within the last 10 ms (`SEEN`, a per-thread map of at most
//! 1024 keys, emptied when the worker goes idle). These tests try to make
//! a future a first time forever: a pool-driven executor whose polls land
//! on different threads, whose wake is deferred past the worker's idle
//! point or past the 10 ms window, a thread whose map is full, and a slow
//! poll loop whose polls each run in a nested job.
#[path = "common/child.rs"]
mod child;
mod common;
use common::pool_exec::{PoolTask, Via};

use common::{guard, named};
use futures::FutureExt;
use parpool::ThreadPool;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

// ------------------------------------------------------------- helpers --

/// Spawns on `pool` (through `via`) a task awaiting a handle of `slow`'s
/// pool whose task sleeps `ms`; returns the poll count once the result is
/// in (or panics after 10 s).
fn polls_while_awaiting(pool: &Arc<ThreadPool>, slow: &ThreadPool, via: Via, ms: u64) -> usize {
    let (done_tx, done_rx) = mpsc::channel();
    let h = slow.apply_async(move || {
        thread::sleep(Duration::from_millis(ms));
        7u32
    });
    let task = PoolTask::spawn(pool, via, async move {
        done_tx.send(h.await).unwrap();
    });
    assert_eq!(
        done_rx.recv_timeout(Duration::from_secs(10)),
        Ok(Ok(7)),
        "the awaited task's result"
    );
    task.polls()
}

/// Busy for `us` microseconds before each poll of the future it wraps (a
/// task that does a little work each time it is polled).
struct Costly<F>(F, u64);

impl<F: Future + Unpin> Future for Costly<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(self.1) {
            std::hint::spin_loop();
        }
        Pin::new(&mut self.0).poll(cx)
    }
}

/// Spawns `n` tasks on `pool` (one worker, `Via::Direct`), each awaiting
/// its own handle on `other`, whose tasks are all queued behind a gate of
/// `gate_ms`; each poll costs `us` microseconds first. Returns the total
/// poll count once every result is in.
fn many_tasks(n: usize, us: u64, gate_ms: u64) -> usize {
    let other = ThreadPool::with_workers(1);
    let pool = named("ftm", 1);
    let gate = other.apply_async(move || thread::sleep(Duration::from_millis(gate_ms)));
    let (tx, rx) = mpsc::channel();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let h = Costly(other.apply_async(move || i), us);
            let tx = tx.clone();
            PoolTask::spawn(&pool, Via::Direct, async move {
                tx.send(h.await.unwrap()).unwrap();
            })
        })
        .collect();
    let sum: usize = (0..n)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap())
        .sum();
    assert_eq!(sum, n * (n - 1) / 2);
    assert_eq!(gate.get(), Ok(()));
    tasks.iter().map(|t| t.polls()).sum()
}

// -------------------------------------------------------------- bugs --

/// 2000 tasks of a pool-driven executor on one worker, each awaiting its
/// own handle (queued behind a 300 ms gate on another pool). The first
/// pass puts 1024 keys in the thread's `SEEN` map; the other 976 find it
/// full, are never recorded, and so are a first time at every poll: each
/// wakes itself into a new poll job, the worker never runs out of jobs,
/// never idles, and the map is never emptied. Measured: about 124 000
/// polls and a whole core for the 300 ms (1000 tasks: about 3 800 polls).
#[test]
fn more_than_1024_tasks_of_a_pool_driven_executor_do_not_spin() {
    let n = 2000;
    let polls = guard(30, move || many_tasks(n, 0, 300));
    assert!(
        polls <= 8 * n,
        "{polls} polls for {n} tasks while their handles waited 300 ms (a busy loop of poll jobs)"
    );
}

/// 200 tasks of a pool-driven executor on one worker, each doing 100 µs
/// of work per poll: one pass over the queue takes 20 ms, so every task's
/// re-poll comes more than 10 ms after its self-wake, and every `Pending`
/// is a first time. The worker spins through poll jobs at full CPU for
/// the whole 500 ms wait (measured: about 4 700 polls and 520 ms of CPU).
/// The same with 100 tasks of 50 µs (a 5 ms pass): about 450 polls.
#[test]
fn a_pool_driven_executor_with_a_pass_longer_than_10_ms_does_not_spin() {
    let n = 200;
    let polls = guard(30, move || many_tasks(n, 100, 500));
    assert!(
        polls <= 8 * n,
        "{polls} polls for {n} tasks while their handles waited 500 ms (a busy loop of poll jobs)"
    );
}

/// The minimal form of the one above: one task whose executor polls it
/// 15 ms after a wake (a timer tick, or a dispatcher late under load).
/// Each re-poll is past the 10 ms window, so each `Pending` is a first
/// time and wakes itself again: about 40 polls for a 600 ms wait, one
/// every 15 ms, for as long as the awaited task runs.
#[test]
fn an_executor_that_repolls_after_15_ms_polls_a_bounded_number_of_times() {
    let polls = guard(30, || {
        let other = ThreadPool::with_workers(1);
        let pool = named("ftd", 1);
        polls_while_awaiting(&pool, &other, Via::Delayed(Duration::from_millis(15)), 600)
    });
    assert!(
        polls <= 10,
        "{polls} polls while the awaited task ran for 600 ms (a self-wake every 15 ms)"
    );
}

/// A pool-driven executor whose wakes reach the pool 2 ms later (a
/// dispatcher thread batching them): after each poll job the only worker
/// finds its queue empty and goes idle, which empties its `SEEN` map, so
/// the next poll is a first time again, and wakes itself again. Measured:
/// about 230 polls in 500 ms, for as long as the awaited task runs (a
/// dispatcher thread with no delay does it too whenever it loses the race
/// with the worker's idle: 36 to 117 polls in 300 ms, or 4).
#[test]
fn a_pool_driven_executor_whose_worker_idles_between_polls_does_not_spin() {
    let polls = guard(30, || {
        let other = ThreadPool::with_workers(1);
        let pool = named("fti", 1);
        polls_while_awaiting(&pool, &other, Via::Delayed(Duration::from_millis(2)), 500)
    });
    assert!(
        polls <= 10,
        "{polls} polls while the awaited task ran for 500 ms (the worker idled between polls)"
    );
}

/// A slow poll loop (a no-op waker, one poll every 25 ms) on the only
/// worker, whose every poll runs inside a nested job (`apply_async(..)
/// .get()`, the job run inline by its waiter), the awaited task queued
/// behind the loop's job. Each nested level has a fresh `seen` set
/// (suspended and dropped around the inlined job), and each poll is more
/// than 10 ms after the last, so each `Pending` is a first time: the
/// thread is never counted blocked, no stand-in starts, and the task never
/// runs (the same loop without the nested job gets a stand-in:
/// `first_pending_attacks::a_slow_poll_loop_in_one_job_gets_a_stand_in`).
#[test]
fn a_slow_poll_loop_whose_polls_run_in_nested_jobs_gets_a_stand_in() {
    let (got, polls) = guard(20, || {
        let pool = named("ftn", 1);
        let p = Arc::clone(&pool);
        pool.apply_async(move || {
            let h = Arc::new(Mutex::new(p.apply_async(|| 6u32)));
            let t = Instant::now();
            let mut polls = 0;
            loop {
                polls += 1;
                let h2 = Arc::clone(&h);
                let r = p
                    .apply_async(move || (&mut *h2.lock().unwrap()).now_or_never())
                    .get()
                    .unwrap();
                if r.is_some() || t.elapsed() > Duration::from_secs(2) {
                    break (r, polls);
                }
                thread::sleep(Duration::from_millis(25));
            }
        })
        .get()
        .unwrap()
    });
    assert_eq!(
        got,
        Some(Ok(6)),
        "the awaited task never ran ({polls} polls in 2 s)"
    );
}

// ------------------------------------------------ passing regressions --

/// A pool-driven executor whose waker submits the next poll at once, on
/// pools of 1, 2 and 4 workers (polls may land on any idle worker, each
/// with its own `SEEN`), awaiting a 300 ms task on another pool: a
/// bounded number of polls (measured: 3 to 5).
#[test]
fn a_pool_driven_executor_on_several_workers_polls_a_bounded_number_of_times() {
    let polls = guard(30, || {
        let other = ThreadPool::with_workers(1);
        [1, 2, 4].map(|w| polls_while_awaiting(&named("ftw", w), &other, Via::Direct, 300))
    });
    for (w, p) in [1, 2, 4].into_iter().zip(polls) {
        assert!(p <= 20, "{w} workers: {p} polls in 300 ms");
    }
}

/// The same executor on a stranded pool (no spare can start; 1 and 2
/// workers), awaiting a task of its own pool that the future submits in
/// its first poll: the task, queued before the self-woken poll, runs;
/// polls stay bounded and nothing loops in `help`.
#[test]
fn a_pool_driven_executor_on_a_stranded_pool_completes_with_few_polls() {
    for workers in [1, 2] {
        let polls = guard(30, move || {
            let pool = common::spares::stranded("fts", workers, parpool::PanicPolicy::default());
            let (tx, rx) = mpsc::channel();
            let p = Arc::clone(&pool);
            let task = PoolTask::spawn(&pool, Via::Direct, async move {
                let h = p.apply_async(|| {
                    thread::sleep(Duration::from_millis(100));
                    3u32
                });
                tx.send(h.await).unwrap();
            });
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(Ok(3)));
            task.polls()
        });
        assert!(polls <= 20, "{workers} workers: {polls} polls");
    }
}

/// On the only worker, `block_on` of a `select!` between a handle already
/// seen in this job (its `Pending` counts at once) and a fresh one (a
/// first time), then a `join_all` of the loser and ten more handles, with
/// ten jobs queued behind the awaiting job: everything completes, each
/// task once, promptly.
#[test]
fn select_and_join_all_of_seen_and_fresh_handles_on_the_only_worker_complete() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let (first, rest, took) = guard(20, move || {
        let pool = named("ftj", 1);
        let p = Arc::clone(&pool);
        let job = pool.apply_async(move || {
            let t = Instant::now();
            let run = |i: u32| {
                let r = Arc::clone(&r);
                p.apply_async(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(5));
                    i
                })
            };
            let mut seen = run(1);
            assert!((&mut seen).now_or_never().is_none());
            let mut fresh = run(2);
            let (first, loser) = futures::executor::block_on(async {
                futures::select! {
                    a = (&mut seen).fuse() => (a, fresh),
                    b = (&mut fresh).fuse() => (b, seen),
                }
            });
            let first = first.unwrap();
            let mut others: Vec<_> = (10..20).map(run).collect();
            others.push(loser);
            let rest: Vec<u32> = futures::executor::block_on(futures::future::join_all(others))
                .into_iter()
                .map(Result::unwrap)
                .collect();
            (first, rest, t.elapsed())
        });
        let behind: Vec<_> = (0..10).map(|i| pool.apply_async(move || i)).collect();
        for (i, h) in behind.into_iter().enumerate() {
            assert_eq!(h.get(), Ok(i));
        }
        job.get().unwrap()
    });
    assert!(first == 1 || first == 2);
    assert_eq!(rest[..10], (10..20).collect::<Vec<u32>>()[..]);
    assert_eq!(rest[10], 3 - first);
    assert_eq!(runs.load(Ordering::SeqCst), 12);
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
