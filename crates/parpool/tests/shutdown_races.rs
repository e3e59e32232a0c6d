//! Submission racing `close()` / `terminate()`: every accepted job runs or
//! reports `Cancelled`, a refused one reports `NotRunning` (task
//! submissions) or runs on the caller (blocking calls), no submission
//! panics, nothing hangs, every owned input is dropped exactly once. Each test loops a bounded number of rounds on a fresh pool, with the
//! two sides released by a barrier and skewed by a varying spin.
#[path = "common/child.rs"]
mod child;
mod common;

use child::{catch, Tracker};
use common::{close_or_terminate, guard};
use parpool::{TaskError, ThreadPool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Busy-waits `ns` nanoseconds, to skew the two sides of a race.
fn spin(ns: usize) {
    let until = Instant::now() + Duration::from_nanos(ns as u64);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Skews (in ns) for round `r`: sometimes the submitter is delayed,
/// sometimes the shutdown. The shutdown side is the quicker one (and, on a
/// busy 2-core machine, often the first to run), so it gets longer delays.
fn skew(r: usize) -> (usize, usize) {
    if r % 2 == 0 {
        ((r / 2 % 8) * 1000, 0)
    } else {
        (0, (r / 2 % 32) * 3000)
    }
}

/// A two-party barrier that spins, so both sides leave it at nearly the
/// same moment (a blocking barrier wakes one side tens of µs late).
struct Barrier {
    arrived: AtomicUsize,
    parties: usize,
}

impl Barrier {
    fn new(parties: usize) -> Self {
        Barrier {
            arrived: AtomicUsize::new(0),
            parties,
        }
    }

    fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        while self.arrived.load(Ordering::SeqCst) < self.parties {
            if start.elapsed() > Duration::from_millis(1) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Counts how each round ended, to show both sides of the race were hit.
#[derive(Default, Debug)]
struct Outcomes {
    ok: usize,
    refused: usize,
    cancelled: usize,
}

/// No submission panics in the submitting thread, whatever the race.
fn no_panic(msg: &str, what: &str) -> ! {
    panic!("{what}: a submission racing a shutdown panicked: {msg:?}")
}

#[test]
fn apply_async_racing_close() {
    child::hide_expected_panics();
    let o = guard(30, || {
        let mut o = Outcomes::default();
        let start = Instant::now();
        for r in 0..3000 {
            if start.elapsed() > Duration::from_secs(2) {
                break;
            }
            let pool = ThreadPool::with_workers(2);
            let barrier = Barrier::new(2);
            let (da, db) = skew(r);
            let refused = std::thread::scope(|s| {
                let a = s.spawn(|| {
                    barrier.wait();
                    spin(da);
                    match catch(|| pool.apply_async(|| 7).get()) {
                        Err(m) => no_panic(&m, "apply_async"),
                        Ok(Err(TaskError::NotRunning)) => true,
                        Ok(got) => {
                            assert_eq!(got, Ok(7), "round {r}: accepted apply_async");
                            false
                        }
                    }
                });
                s.spawn(|| {
                    barrier.wait();
                    spin(db);
                    pool.close();
                });
                a.join().unwrap()
            });
            if refused {
                o.refused += 1;
            } else {
                o.ok += 1;
            }
            pool.join();
        }
        o
    });
    eprintln!("apply_async vs close: {o:?}");
}

#[test]
fn apply_racing_close() {
    child::hide_expected_panics();
    let o = guard(30, || {
        let mut o = Outcomes::default();
        let start = Instant::now();
        for r in 0..3000 {
            if start.elapsed() > Duration::from_secs(2) {
                break;
            }
            let pool = ThreadPool::with_workers(2);
            let barrier = Barrier::new(2);
            let (da, db) = skew(r);
            let ran = AtomicBool::new(false);
            let result = std::thread::scope(|s| {
                let a = s.spawn(|| {
                    barrier.wait();
                    spin(da);
                    catch(|| {
                        pool.apply(|| {
                            ran.store(true, Ordering::SeqCst);
                            7
                        })
                    })
                });
                s.spawn(|| {
                    barrier.wait();
                    spin(db);
                    pool.close();
                });
                a.join().unwrap()
            });
            match result {
                Ok(v) => {
                    assert_eq!(v, 7);
                    o.ok += 1;
                }
                Err(m) => no_panic(&m, "apply"),
            }
            assert!(
                ran.load(Ordering::SeqCst),
                "round {r}: apply returned without f"
            );
            pool.join();
        }
        o
    });
    eprintln!("apply vs close: {o:?}");
}

/// `apply` racing `terminate`: a task discarded by the terminate drain
/// before a worker took `f` used to panic ("apply's task did not
/// complete"); now `f` runs on the caller. Either way `f` runs exactly once
/// and `apply` returns its result.
#[test]
fn apply_racing_terminate_always_returns_and_runs_f_once() {
    child::hide_expected_panics();
    let o = guard(30, || {
        let mut o = Outcomes::default();
        let start = Instant::now();
        for r in 0..3000 {
            if start.elapsed() > Duration::from_secs(2) {
                break;
            }
            let pool = ThreadPool::with_workers(1);
            let barrier = Barrier::new(2);
            let (da, db) = skew(r);
            let runs = AtomicUsize::new(0);
            let (result, me) = std::thread::scope(|s| {
                let a = s.spawn(|| {
                    barrier.wait();
                    spin(da);
                    let ran_on = catch(|| {
                        pool.apply(|| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::current().id()
                        })
                    });
                    (ran_on, std::thread::current().id())
                });
                s.spawn(|| {
                    barrier.wait();
                    spin(db);
                    pool.terminate();
                });
                a.join().unwrap()
            });
            match result {
                // On the caller: refused, or discarded by the drain.
                Ok(id) if id == me => o.refused += 1,
                Ok(_) => o.ok += 1,
                Err(m) => no_panic(&m, "apply"),
            }
            assert_eq!(runs.load(Ordering::SeqCst), 1, "round {r}: f ran once");
            pool.join();
        }
        o
    });
    eprintln!("apply vs terminate: {o:?}");
}

/// `spawn` (pool and scope) racing `close`: never panics, and the job runs
/// exactly once (queued, or on the caller if refused).
#[test]
fn spawn_racing_close_runs_every_job_once() {
    child::hide_expected_panics();
    guard(30, || {
        let start = Instant::now();
        for r in 0..3000 {
            if start.elapsed() > Duration::from_secs(2) {
                break;
            }
            let pool = ThreadPool::with_workers(2);
            let barrier = Barrier::new(2);
            let (da, db) = skew(r);
            let runs = Arc::new(AtomicUsize::new(0));
            let scoped_runs = AtomicUsize::new(0);
            let result = std::thread::scope(|s| {
                let a = s.spawn(|| {
                    barrier.wait();
                    spin(da);
                    catch(|| {
                        let runs = Arc::clone(&runs);
                        pool.spawn(move || {
                            runs.fetch_add(1, Ordering::SeqCst);
                        });
                        pool.scope(|sc| {
                            sc.spawn(|| {
                                scoped_runs.fetch_add(1, Ordering::SeqCst);
                            })
                        });
                    })
                });
                s.spawn(|| {
                    barrier.wait();
                    spin(db);
                    pool.close();
                });
                a.join().unwrap()
            });
            if let Err(m) = result {
                no_panic(&m, "spawn");
            }
            pool.join();
            assert_eq!(runs.load(Ordering::SeqCst), 1, "round {r}: pool spawn");
            assert_eq!(
                scoped_runs.load(Ordering::SeqCst),
                1,
                "round {r}: scope spawn"
            );
        }
    });
}

#[test]
fn scoped_apply_async_racing_close() {
    child::hide_expected_panics();
    let o = guard(30, || {
        let mut o = Outcomes::default();
        let start = Instant::now();
        for r in 0..3000 {
            if start.elapsed() > Duration::from_secs(2) {
                break;
            }
            let pool = ThreadPool::with_workers(2);
            let barrier = Barrier::new(2);
            let (da, db) = skew(r);
            let local = 7;
            let result = std::thread::scope(|s| {
                let a = s.spawn(|| {
                    barrier.wait();
                    spin(da);
                    catch(|| pool.scope(|sc| sc.apply_async(|| local).get()))
                        .unwrap_or_else(|m| no_panic(&m, "scope apply_async"))
                });
                s.spawn(|| {
                    barrier.wait();
                    spin(db);
                    pool.close();
                });
                a.join().unwrap()
            });
            match result {
                Err(TaskError::NotRunning) => o.refused += 1,
                v => {
                    assert_eq!(v, Ok(7), "round {r}: accepted scoped apply_async");
                    o.ok += 1;
                }
            }
            pool.join();
        }
        o
    });
    eprintln!("scope apply_async vs close: {o:?}");
}

#[test]
fn imap_created_before_close_yields_everything_in_order() {
    guard(30, || {
        let start = Instant::now();
        let expected: Vec<u64> = (0..200u64).map(|x| x * 2).collect();
        for r in 0..2000 {
            if start.elapsed() > Duration::from_secs(2) {
                break;
            }
            let pool = ThreadPool::with_workers(2);
            let barrier = Barrier::new(2);
            let (da, db) = skew(r);
            let mut it = pool.imap(|x: u64| x * 2, 0..200u64);
            if r % 3 == 1 {
                it = it.chunksize(1);
            }
            let mut first = Vec::new();
            if r % 4 == 0 {
                first.extend(it.next());
            }
            let barrier = &barrier;
            let out = std::thread::scope(|s| {
                let a = s.spawn(move || {
                    barrier.wait();
                    spin(da);
                    first.extend(it);
                    first
                });
                s.spawn(|| {
                    barrier.wait();
                    spin(db);
                    pool.close();
                });
                a.join().unwrap()
            });
            assert_eq!(
                out, expected,
                "round {r}: imap after close lost or reordered results"
            );
            pool.join();
        }
    });
}

#[test]
fn map_async_racing_terminate_is_ok_or_cancelled_and_drops_inputs_once() {
    child::hide_expected_panics();
    static T: Tracker = Tracker::new();
    const N: usize = 64;
    let o = guard(30, || {
        let mut o = Outcomes::default();
        let start = Instant::now();
        for r in 0..2000 {
            if start.elapsed() > Duration::from_secs(2) {
                break;
            }
            T.reset();
            let pool = ThreadPool::with_workers(2);
            let barrier = Barrier::new(2);
            let (da, db) = skew(r);
            let chunk = [1usize, 3, 64][r % 3];
            let result = std::thread::scope(|s| {
                let a = s.spawn(|| {
                    let items = T.items(N);
                    barrier.wait();
                    spin(da);
                    catch(|| {
                        pool.chunked(chunk)
                            .map_async(|x: child::Item| x.seen() * 2, items)
                    })
                    .map(|h| h.get())
                });
                s.spawn(|| {
                    barrier.wait();
                    spin(db);
                    pool.terminate();
                });
                a.join().unwrap()
            });
            let outcome = match result {
                Ok(Ok(v)) => {
                    assert_eq!(v, (0..N).map(|i| i * 2).collect::<Vec<_>>(), "round {r}");
                    o.ok += 1;
                    "Ok"
                }
                Ok(Err(TaskError::Cancelled)) => {
                    o.cancelled += 1;
                    "Cancelled"
                }
                Ok(Err(TaskError::NotRunning)) => {
                    o.refused += 1;
                    "refused"
                }
                Ok(Err(e)) => panic!("round {r}: map_async racing terminate gave {e:?}"),
                Err(m) => no_panic(&m, "map_async"),
            };
            pool.join();
            drop(pool);
            let what = format!("round {r} (map_async {outcome})");
            T.assert_no_call_twice(&what);
            T.assert_all_dropped_once(N, &what);
        }
        o
    });
    eprintln!("map_async vs terminate: {o:?}");
}

/// A blocking `map` from a plain thread while another thread shuts the pool
/// down part-way through: every result, in order, each input dropped once.
fn blocking_map_racing(terminate: bool, tracker: &'static Tracker, started: &'static AtomicUsize) {
    const N: usize = 40;
    let mut o = Outcomes::default();
    let start = Instant::now();
    for r in 0..400 {
        if start.elapsed() > Duration::from_secs(2) {
            break;
        }
        tracker.reset();
        started.store(0, Ordering::SeqCst);
        let pool = ThreadPool::with_workers(2);
        let barrier = Barrier::new(2);
        // Shut down once `k` items have started (k = 0: a pure race).
        let k = r % 20;
        let chunk = [None, Some(1), Some(4)][r % 3];
        let result = std::thread::scope(|s| {
            let a = s.spawn(|| {
                let items = tracker.items(N);
                barrier.wait();
                let f = |x: child::Item| {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(50));
                    x.seen()
                };
                catch(|| match chunk {
                    Some(c) => pool.chunked(c).map(f, items),
                    None => pool.map(f, items),
                })
            });
            s.spawn(|| {
                barrier.wait();
                let until = Instant::now() + Duration::from_millis(200);
                while started.load(Ordering::SeqCst) < k && Instant::now() < until {
                    std::hint::spin_loop();
                }
                close_or_terminate(&pool, terminate);
            });
            a.join().unwrap()
        });
        let outcome = match result {
            Ok(v) => {
                assert_eq!(
                    v,
                    (0..N).collect::<Vec<_>>(),
                    "round {r}: blocking map lost results"
                );
                o.ok += 1;
                "returned"
            }
            Err(m) => no_panic(&m, "blocking map"),
        };
        pool.join();
        drop(pool);
        let what = format!("round {r} (map {outcome})");
        tracker.assert_no_call_twice(&what);
        tracker.assert_all_dropped_once(N, &what);
    }
    eprintln!(
        "blocking map vs {}: {o:?}",
        if terminate { "terminate" } else { "close" }
    );
}

#[test]
fn blocking_map_racing_terminate_returns_every_result() {
    child::hide_expected_panics();
    static T: Tracker = Tracker::new();
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    guard(30, || blocking_map_racing(true, &T, &STARTED));
}

#[test]
fn blocking_map_racing_close_returns_every_result() {
    child::hide_expected_panics();
    static T: Tracker = Tracker::new();
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    guard(30, || blocking_map_racing(false, &T, &STARTED));
}

#[test]
fn apply_async_from_many_threads_racing_terminate_all_settle() {
    // Several submitters and one terminate: every accepted handle settles
    // (Ok or Cancelled), and the pool's counters end at zero.
    child::hide_expected_panics();
    guard(30, || {
        let start = Instant::now();
        for r in 0..1000 {
            if start.elapsed() > Duration::from_secs(2) {
                break;
            }
            let pool = Arc::new(ThreadPool::with_workers(2));
            let barrier = Arc::new(Barrier::new(4));
            let mut subs = Vec::new();
            for t in 0..3 {
                let pool = Arc::clone(&pool);
                let barrier = Arc::clone(&barrier);
                subs.push(std::thread::spawn(move || {
                    barrier.wait();
                    let mut hs = Vec::new();
                    for i in 0..20 {
                        match catch(|| pool.apply_async(move || t * 100 + i)) {
                            Ok(h) => hs.push((t * 100 + i, h)),
                            Err(m) => no_panic(&m, "apply_async"),
                        }
                    }
                    for (want, h) in hs {
                        match h.get() {
                            Ok(v) => assert_eq!(v, want),
                            Err(TaskError::Cancelled | TaskError::NotRunning) => {}
                            Err(e) => panic!("round {r}: {e:?}"),
                        }
                    }
                }));
            }
            barrier.wait();
            spin((r % 16) * 2000);
            pool.terminate();
            for s in subs {
                s.join().unwrap();
            }
            pool.join();
            let s = pool.stats();
            assert_eq!((s.queued, s.running), (0, 0), "round {r}: {s:?}");
        }
    });
}
