//! A pool starts a spare thread only for a wait that may need one: a wait
//! for code that always finishes by itself gains nothing from a spare (a
//! slow or preempted thread does not finish sooner), and the spare then
//! competes for the CPU with the pool's workers until it lingers out.
//!
//! Linux only: the threads are counted in `/proc/self/task`.
#![cfg(target_os = "linux")]

mod common;

use common::{guard, named, threads_named};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// An input whose `next()` runs user code and is slow but goes on (here
/// 300 µs per item, as a slow pipe or disk): every credit waiting for the
/// read token used to count as blocked after 200 µs and got a spare, so a
/// 2-worker pool grew to 17 threads. A waiter now counts as blocked only
/// once the read has published nothing for 10 ms.
#[test]
fn a_slow_input_that_goes_on_starts_no_spare_per_waiting_credit() {
    guard(60, || {
        let pool = named("nospare-s", 2);
        let (sum, most) = most_threads_during("nospare-s", || {
            let input = (0..600u64).inspect(|_| std::thread::sleep(Duration::from_micros(300)));
            pool.imap(|x: u64| x * 2, input).sum::<u64>()
        });
        assert_eq!(sum, (0..600u64).map(|i| i * 2).sum::<u64>());
        assert!(
            most <= 2,
            "{most} threads for a 2-worker pool over a slow input"
        );
    });
}

/// The wait that does need a stand-in: the read is stuck in `next()` until
/// a job of the same pool runs, which no waiter of the pool can inline (it
/// is a plain channel). Every worker is taken, by the read or by credits
/// waiting for the token, so the job runs only once a waiter sees the read
/// stalled and the pool sends a spare. The stream must end, in order.
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
