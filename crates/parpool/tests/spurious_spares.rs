//! Waiting for an imap's read token. A pool starts a spare thread only for
//! a wait that may need one: a wait for a bulk read of an input that never
//! waits (a range, a `Vec`) gains nothing from a spare (a slow or preempted
//! thread does not finish sooner), and the spare then competes for the CPU
//! with the pool's workers until it lingers out. But even such a read may
//! run user code under the token (a waker, a panic hook), and a read of any
//! other input may take its time or wait for anything: those waits still
//! get their stand-in, and unrelated work on the pool still gets a thread.
//!
//! Linux only: the threads are counted in `/proc/self/task`.
#![cfg(target_os = "linux")]

mod common;

use common::{guard, named, threads_named, Gate};
use futures_core::Stream;
use parpool::ThreadPool;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Samples how many threads named `prefix` live while `f` runs; returns
/// `f`'s value and the most seen.
fn most_threads_during<T>(prefix: &'static str, f: impl FnOnce() -> T) -> (T, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, most) = (Arc::clone(&stop), Arc::clone(&most));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                most.fetch_max(threads_named(prefix), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let out = f();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    most.fetch_max(threads_named(prefix), Ordering::Relaxed);
    (out, most.load(Ordering::Relaxed))
}

/// Reading a chunk of an input that never waits (here a `Vec`'s items of
/// 4 KiB, 1 024 per chunk: 4 MiB moved per read) takes long enough that the
/// other worker waits for the read token past the 200 µs a worker waits
/// before it asks for a spare. That wait is for a lock whose holder runs no
/// user code, so the pool must not start one: before the fix, every run
/// here started a spare.
#[test]
fn waiting_for_another_credits_read_of_an_input_that_never_waits_starts_no_spare() {
    guard(60, || {
        let pool = named("nospare-r", 2);
        let (sums, most) = most_threads_during("nospare-r", || {
            (0..4)
                .map(|round| {
                    let input: Vec<[u8; 4096]> = (0..4096u32)
                        .map(|i| [(i % 251) as u8 ^ round as u8; 4096])
                        .collect();
                    let want: u64 = input.iter().map(|b| u64::from(b[0] ^ b[4095])).sum();
                    let got: u64 = pool
                        .imap(|b: [u8; 4096]| u64::from(b[0] ^ b[4095]), input)
                        .chunksize(1024)
                        .sum();
                    (got, want)
                })
                .collect::<Vec<_>>()
        });
        for (got, want) in sums {
            assert_eq!(got, want);
        }
        assert_eq!(
            most, 2,
            "a spare was started for a wait on another credit's read"
        );
    });
}

/// The neighbour that keeps its stand-in: an input whose `next()` runs user
/// code may wait for anything, here for jobs of the same pool, while the
/// other worker waits for the read token. That wait still counts as
/// blocked (a spare, or the waiter's own help), so the stream ends.
#[test]
fn a_read_that_waits_for_the_pools_own_work_still_ends() {
    guard(60, || {
        let pool = named("nospare-w", 2);
        let inner = Arc::clone(&pool);
        // Each item is made by a job of the same pool, waited for inside
        // the input's `next()`.
        let input = (0..256u64).map(move |i| inner.apply(move || i * 3));
        let got: u64 = pool.imap(|x: u64| x + 1, input).chunksize(8).sum();
        assert_eq!(got, (0..256u64).map(|i| i * 3 + 1).sum::<u64>());
    });
}

/// The wait that does need a stand-in: a read of an input that may wait is
/// stuck in `next()` until a job of the same pool runs, which no waiter of
/// the pool can inline (it is a plain channel). Every worker is taken, by
/// the read or by credits waiting for the token, so the job runs only once
/// a waiter counts as blocked and the pool sends a spare. The stream must
/// end, in order.
#[test]
fn a_read_stuck_until_the_pool_runs_a_job_still_gets_a_spare() {
    guard(60, || {
        let pool = named("nospare-j", 2);
        let inner = Arc::clone(&pool);
        let input = (0..200u64).inspect(move |i| {
            if i % 50 == 49 {
                let (tx, rx) = std::sync::mpsc::channel();
                inner.spawn(move || tx.send(()).unwrap());
                rx.recv_timeout(Duration::from_secs(30))
                    .expect("the job the read waits for never ran");
            }
        });
        let got: Vec<u64> = pool.imap(|x: u64| x + 1, input).chunksize(16).collect();
        assert_eq!(got, (1..=200u64).collect::<Vec<_>>());
    });
}

/// A read that goes on, slowly (3 ms per item, 1 500 per chunk): the other
/// credit waits for the token, counted as blocked, so unrelated work queued
/// on the pool gets a spare at once. (A version that did not count such a
/// wait while the read went on made this `apply` wait 6.3 s.) The read
/// stays slow until the `apply` has returned (a gate): an `apply` that
/// waited for the first chunk's read would wait at least 4 s.
#[test]
fn unrelated_work_does_not_wait_behind_a_slow_read() {
    guard(120, || {
        let pool = named("nospare-u", 2);
        let p = Arc::clone(&pool);
        let gate = Gate::new();
        let g = gate.clone();
        let (reading_tx, reading_rx) = mpsc::channel::<()>();
        let consumer = std::thread::spawn(move || {
            let input = (0..3000u64).inspect(move |&i| {
                if i == 10 {
                    let _ = reading_tx.send(());
                }
                if !g.is_open() {
                    std::thread::sleep(Duration::from_millis(3));
                }
            });
            p.imap(|x: u64| x, input).chunksize(1500).count()
        });
        // The first chunk is being read. The credits were queued before
        // it, so the `apply` is queued behind them: whenever a worker takes
        // the other credit, it waits for the token.
        reading_rx.recv().unwrap();
        let t = Instant::now();
        assert_eq!(pool.apply(|| 42), 42);
        let took = t.elapsed();
        gate.open();
        assert_eq!(consumer.join().unwrap(), 3000);
        // A bound on starvation, not a speed claim: the rest of the first
        // chunk's read alone takes over 4 s.
        assert!(took < Duration::from_millis(1500), "apply waited {took:?}");
    });
}

/// Holds `n` workers of `pool` until the returned senders are dropped.
fn occupy(pool: &ThreadPool, n: usize) -> Vec<mpsc::Sender<()>> {
    (0..n)
        .map(|_| {
            let (busy_tx, busy_rx) = mpsc::channel::<()>();
            let (release_tx, release_rx) = mpsc::channel::<()>();
            pool.spawn(move || {
                busy_tx.send(()).unwrap();
                let _ = release_rx.recv();
            });
            busy_rx.recv().unwrap();
            release_tx
        })
        .collect()
}

/// Queues a job on `pool` and waits for it on a plain channel (which the
/// pool cannot see); returns whether it ran within 5 s.
fn job_ran(pool: &ThreadPool) -> bool {
    let (tx, rx) = mpsc::channel();
    pool.spawn(move || {
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(5)).is_ok()
}

/// A waker whose first wake waits for a job of the pool (see [`job_ran`]).
struct WaitingWaker {
    pool: Arc<ThreadPool>,
    fired: AtomicBool,
    /// 0: not done yet, 1: its job ran, 2: it did not within 5 s.
    outcome: AtomicUsize,
}

impl Wake for WaitingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.fired.swap(true, Ordering::SeqCst) {
            return;
        }
        let ran = job_ran(&self.pool);
        self.outcome
            .store(if ran { 1 } else { 2 }, Ordering::SeqCst);
    }
}

/// A credit that finds the input exhausted delivers that to the stream,
/// which wakes its executor: user code, here a waker that waits for a job
/// of the same pool. It used to run under the read token, and the other
/// worker, waiting for the token of an input that never waits, never
/// counted as blocked: the job never ran. (Found by a fresh-mind attack.)
fn waker_runs_beside_the_token<I>(prefix: &'static str, input: I)
where
    I: IntoIterator<Item = u64>,
    I::IntoIter: Send + 'static,
{
    let pool = named(prefix, 2);
    let state = Arc::new(WaitingWaker {
        pool: Arc::clone(&pool),
        fired: AtomicBool::new(false),
        outcome: AtomicUsize::new(0),
    });
    let waker = Waker::from(Arc::clone(&state));
    let mut cx = Context::from_waker(&waker);
    // Both workers held while the first poll issues one-item credits.
    let releases = occupy(&pool, 2);
    let slow_first = |x: u64| {
        if x == 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        x
    };
    let mut stream = pool.imap(slow_first, input).chunksize(1).into_stream();
    let mut got = Vec::new();
    if let Poll::Ready(Some(x)) = Pin::new(&mut stream).poll_next(&mut cx) {
        got.push(x);
    }
    drop(releases);
    loop {
        match Pin::new(&mut stream).poll_next(&mut cx) {
            Poll::Ready(Some(x)) => got.push(x),
            Poll::Ready(None) => break,
            Poll::Pending => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    drop(stream);
    assert_eq!(got, [0]);
    while state.fired.load(Ordering::SeqCst) && state.outcome.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_ne!(
        state.outcome.load(Ordering::SeqCst),
        2,
        "the job the waker waited for never ran"
    );
}

#[test]
fn a_waker_woken_by_a_credit_over_a_range_gets_its_job_run() {
    guard(60, || waker_runs_beside_the_token("tokwk-r", 0..1u64));
}

#[test]
fn a_waker_woken_by_a_credit_over_a_vec_gets_its_job_run() {
    guard(60, || waker_runs_beside_the_token("tokwk-v", vec![0u64]));
}

#[test]
fn a_waker_woken_by_a_credit_over_a_generic_input_gets_its_job_run() {
    guard(60, || {
        waker_runs_beside_the_token("tokwk-g", (0..1u64).filter(|_| true))
    });
}

/// Even an input that never waits runs user code under the token when it
/// overflows: `RangeFrom<u8>` panics at 255 in a debug build, and the
/// process's panic hook runs on the reading worker. Here the hook waits
/// for a job of the same pool; the worker waiting for the token must count
/// as blocked after a while, so the job runs. With 100 credits queued ahead
/// of that job, each waiter used to wait its own 100 ms before the next
/// spare came (1 s in all); now every waiter counts at once once the read
/// is 100 ms old. (Both found by fresh-mind attacks; the hook is global, so
/// it acts only on its own panic.)
#[cfg(debug_assertions)]
#[test]
fn a_panic_hook_run_under_the_token_of_an_overflowing_range_gets_its_job_run() {
    guard(60, || {
        let pool = named("tokhook", 2);
        let outcome = Arc::new(AtomicUsize::new(0));
        let waited = Arc::new(std::sync::Mutex::new(None::<Duration>));
        let previous = std::panic::take_hook();
        {
            let (pool, outcome) = (Arc::clone(&pool), Arc::clone(&outcome));
            let waited = Arc::clone(&waited);
            let fired = AtomicBool::new(false);
            std::panic::set_hook(Box::new(move |info| {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                if !name.starts_with("tokhook") || fired.swap(true, Ordering::SeqCst) {
                    return;
                }
                assert!(info.to_string().contains("overflow"), "{info}");
                let t = Instant::now();
                let ran = job_ran(&pool);
                *waited.lock().unwrap() = Some(t.elapsed());
                outcome.store(if ran { 1 } else { 2 }, Ordering::SeqCst);
            }));
        }
        let releases = std::sync::Mutex::new(occupy(&pool, 2));
        let slow = |x: u8| {
            std::thread::sleep(Duration::from_millis(1));
            x
        };
        let mut stream = pool
            .imap(slow, 250u8..)
            .chunksize(1)
            .buffer(100)
            .into_stream();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
            match Pin::new(&mut stream).poll_next(&mut cx) {
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) => break,
                Poll::Pending => {
                    drop(std::mem::take(&mut *releases.lock().unwrap()));
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }));
        drop(stream);
        let until = Instant::now() + Duration::from_secs(10);
        while outcome.load(Ordering::SeqCst) == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::panic::set_hook(previous);
        assert!(polled.is_err(), "the input's overflow was not raised");
        assert_eq!(
            outcome.load(Ordering::SeqCst),
            1,
            "the hook's job never ran"
        );
        // A bound on a chain of stalls, not a speed claim (one is 100 ms).
        let waited = waited.lock().unwrap().expect("the hook ran");
        assert!(
            waited < Duration::from_millis(700),
            "the hook's job waited {waited:?}"
        );
    });
}
