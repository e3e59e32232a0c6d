//! A hostile review of the job queue (`src/queue.rs`), written when it was a
//! bounded lock-free ring (512..8192 slots, 256 per worker) that spilled
//! into a locked list; it is now crossbeam's `SegQueue`, and the same
//! attacks cross its 31-job block boundaries instead. Lost wake-ups at a
//! boundary, per-submitter order across it, terminate/close racing
//! submitters of a long backlog, extreme sizes, nested submission behind a
//! backlog, and user `Drop`s (panicking or re-entering the pool) run by a
//! terminate that drains the queue.
#[path = "common/child.rs"]
mod child;
mod common;

use common::{assert_fifo_within, busy, counters, guard, Probe};
use parpool::{PanicPolicy, TaskError, ThreadPool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

/// The ring's size for a pool of `workers` when `queue.rs` was a ring with
/// a spill list; the backlogs here are still sized by it, and each crosses
/// many of the `SegQueue`'s 31-job blocks.
fn ring(workers: usize) -> usize {
    (workers * 256).clamp(512, 8192)
}

/// Queues one task per worker that waits at the returned barrier, so the
/// pool's workers are held until the caller waits there too.
fn hold_every_worker(
    pool: &ThreadPool,
    workers: usize,
) -> (Arc<Barrier>, Vec<parpool::AsyncResult<()>>) {
    let gate = Arc::new(Barrier::new(workers + 1));
    let blockers = (0..workers)
        .map(|_| {
            let gate = Arc::clone(&gate);
            pool.apply_async(move || {
                gate.wait();
            })
        })
        .collect();
    (gate, blockers)
}

/// Every worker of the pool is asleep (idle, past its spin and yield
/// rounds); then bursts are pushed from two threads at once, sized around
/// the ring's capacity so that some pushes spill while the ring is being
/// drained and the `spilled` flag flips back. Every job must finish; a lost
/// wake-up shows as a `Timeout`.
#[test]
fn sleeping_workers_wake_for_bursts_at_the_spill_boundary() {
    guard(60, || {
        for workers in [1usize, 2, 3] {
            let pool = ThreadPool::with_workers(workers);
            let cap = ring(workers);
            for round in 0..40usize {
                // Let every worker go to sleep on the condition variable.
                std::thread::sleep(Duration::from_millis(3));
                let start = Barrier::new(2);
                // Together the two bursts straddle the ring's capacity.
                let sizes = [cap / 2 + round % 5, cap / 2 - 3 + (round % 12) * 7];
                let done = AtomicUsize::new(0);
                std::thread::scope(|s| {
                    for (k, &n) in sizes.iter().enumerate() {
                        let (pool, start, done) = (&pool, &start, &done);
                        s.spawn(move || {
                            start.wait();
                            let hs: Vec<_> = (0..n)
                                .map(|i| {
                                    // The second submitter trickles: its
                                    // pushes race the drain and the flag.
                                    if k == 1 && i % 64 == 0 {
                                        std::thread::yield_now();
                                    }
                                    pool.apply_async(move || i)
                                })
                                .collect();
                            for (i, mut h) in hs.into_iter().enumerate() {
                                assert_eq!(
                                    h.get_timeout(Duration::from_secs(10)),
                                    Ok(i),
                                    "{workers} workers, round {round}: job {i} of submitter {k}"
                                );
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                });
                assert_eq!(done.load(Ordering::Relaxed), sizes.iter().sum::<usize>());
                assert_eq!(pool.stats().queued, 0);
            }
        }
    });
}

/// One job at a time, pushed after a varying delay, so that it lands at
/// every point of a worker's way to sleep (spinning, yielding, announcing
/// itself, waiting), with the queue having just spilled and emptied before
/// each: a job pushed as the last worker falls asleep must still run.
#[test]
fn single_jobs_pushed_as_workers_fall_asleep_after_a_spill() {
    guard(60, || {
        for workers in [1usize, 2] {
            let pool = ThreadPool::with_workers(workers);
            let cap = ring(workers);
            for round in 0..400u32 {
                if round % 25 == 0 {
                    // A spill, drained: the flag has flipped back to false.
                    let hs: Vec<_> = (0..cap + 40).map(|i| pool.apply_async(move || i)).collect();
                    for h in hs {
                        h.get().unwrap();
                    }
                }
                // From 0 to ~150 µs: spinning, yielding, then asleep.
                let spins = (round % 30) * 1000;
                for _ in 0..spins {
                    std::hint::spin_loop();
                }
                let mut h = pool.apply_async(move || round);
                assert_eq!(
                    h.get_timeout(Duration::from_secs(10)),
                    Ok(round),
                    "{workers} workers, round {round}: a lone job was never run"
                );
            }
        }
    });
}

/// Several submitters, thousands of jobs each (a sure spill behind a held
/// worker, or racing workers from the start), busy threads preempting
/// everyone: with one worker each submitter's jobs start exactly in its
/// order; with three, no job overtakes more than two earlier ones.
#[test]
fn per_submitter_order_across_spills_with_one_and_three_workers() {
    guard(90, || {
        let _busy = busy(1);
        for workers in [1usize, 3] {
            for round in 0..8 {
                let pool = ThreadPool::with_workers(workers);
                let submitters = 3;
                let per = ring(workers) * 2;
                let log = Arc::new(Mutex::new(Vec::with_capacity(submitters * per)));
                let hold = round % 2 == 0;
                let (gate, blockers) = hold_every_worker(&pool, workers);
                if !hold {
                    gate.wait();
                }
                std::thread::scope(|s| {
                    for t in 0..submitters {
                        let (pool, log) = (&pool, &log);
                        s.spawn(move || {
                            let hs: Vec<_> = (0..per)
                                .map(|i| {
                                    let log = Arc::clone(log);
                                    pool.apply_async(move || log.lock().unwrap().push((t, i)))
                                })
                                .collect();
                            for h in hs {
                                h.get().unwrap();
                            }
                        });
                    }
                    if hold {
                        while pool.stats().queued < submitters * per {
                            std::thread::yield_now();
                        }
                        gate.wait();
                    }
                });
                for b in blockers {
                    b.get().unwrap();
                }
                let log = log.lock().unwrap();
                assert_fifo_within(&log, submitters, per, workers);
            }
        }
    });
}

/// `Scope::spawn` from the scope's body, and from inside a running task
/// (a worker as the submitter), past the ring: on one worker each
/// submitter's jobs start in its order.
#[test]
fn scope_spawns_keep_order_across_spills_on_one_worker() {
    guard(60, || {
        let pool = ThreadPool::with_workers(1);
        let n = ring(1) * 3 + 11;
        let log = Mutex::new(Vec::new());
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        pool.scope(|s| {
            let log = &log;
            s.spawn(move || {
                go_rx.recv().unwrap();
            });
            for i in 0..n {
                s.spawn(move || log.lock().unwrap().push((0, i)));
            }
            // From the worker: its jobs queue behind the body's.
            s.spawn(move || {
                for i in 0..n {
                    s.spawn(move || log.lock().unwrap().push((1, i)));
                }
            });
            go_tx.send(()).unwrap();
        });
        let log = log.into_inner().unwrap();
        assert_fifo_within(&log, 2, n, 1);
        // The body's jobs were all queued before the worker's.
        assert!(log[..n].iter().all(|&(t, _)| t == 0));
    });
}

/// `map`, `imap`, `imap_unordered` and `map_async` push their runners
/// through the same queue; with the ring (and then the list) full of
/// another submitter's backlog they still complete, in order.
#[test]
fn maps_complete_behind_a_spilled_backlog() {
    guard(60, || {
        for workers in [1usize, 2] {
            let pool = ThreadPool::with_workers(workers);
            let (gate, blockers) = hold_every_worker(&pool, workers);
            let backlog: Vec<_> = (0..ring(workers) + 300)
                .map(|i| pool.apply_async(move || i))
                .collect();
            let m = pool.map_async(|x: u32| x * 2, 0..2000u32);
            std::thread::scope(|s| {
                let pool = &pool;
                let a = s.spawn(move || pool.chunked(1).map(|x: u32| x + 1, 0..1500u32));
                let b = s.spawn(move || pool.imap(|x: u32| x + 3, 0..1500u32).collect::<Vec<_>>());
                let c = s.spawn(move || {
                    let mut v: Vec<u32> = pool.imap_unordered(|x: u32| x, 0..1500u32).collect();
                    v.sort_unstable();
                    v
                });
                std::thread::sleep(Duration::from_millis(20));
                gate.wait();
                assert_eq!(a.join().unwrap(), (1..1501).collect::<Vec<_>>());
                assert_eq!(b.join().unwrap(), (3..1503).collect::<Vec<_>>());
                assert_eq!(c.join().unwrap(), (0..1500).collect::<Vec<_>>());
            });
            assert_eq!(
                m.get().unwrap(),
                (0..2000).map(|x| x * 2).collect::<Vec<_>>()
            );
            for (i, h) in backlog.into_iter().enumerate() {
                assert_eq!(h.get(), Ok(i));
            }
            for b in blockers {
                b.get().unwrap();
            }
        }
    });
}

/// Terminate races submitters whose pushes spill (a held worker, the ring
/// full): every handle resolves (a value, or `Cancelled`), no job runs
/// twice, a job that ran reports its value, and every job's closure is
/// dropped exactly once (none lost in the ring or the list).
#[test]
fn terminate_racing_spilling_submitters_resolves_every_handle_once() {
    guard(90, || {
        for round in 0..60usize {
            let workers = 1 + round % 2;
            let pool = ThreadPool::with_workers(workers);
            let submitters = 3;
            let per = ring(workers) / 2 + 64;
            let total = submitters * per;
            let runs = counters(total);
            let drops = counters(total);
            let release = Arc::new(AtomicBool::new(round % 4 >= 2));
            let blockers: Vec<_> = (0..workers)
                .map(|_| {
                    let release = Arc::clone(&release);
                    pool.apply_async(move || {
                        while !release.load(Ordering::SeqCst) {
                            std::thread::yield_now();
                        }
                    })
                })
                .collect();
            let start = Barrier::new(submitters + 1);
            let results: Vec<Vec<(usize, Result<usize, TaskError>)>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..submitters)
                    .map(|t| {
                        let (pool, runs, drops, start) = (&pool, &runs, &drops, &start);
                        s.spawn(move || {
                            start.wait();
                            let hs: Vec<_> = (0..per)
                                .map(|i| {
                                    let id = t * per + i;
                                    let probe = Probe::new(id, drops);
                                    let runs = Arc::clone(runs);
                                    (
                                        id,
                                        pool.apply_async(move || {
                                            runs[probe.id].fetch_add(1, Ordering::SeqCst);
                                            probe.id
                                        }),
                                    )
                                })
                                .collect();
                            hs.into_iter().map(|(id, h)| (id, h.get())).collect()
                        })
                    })
                    .collect();
                start.wait();
                // Terminate at a varying point of the pushes.
                for _ in 0..(round * 37) % 300 {
                    std::thread::yield_now();
                }
                release.store(true, Ordering::SeqCst);
                pool.terminate();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for b in blockers {
                let _ = b.get();
            }
            pool.join();
            for (id, r) in results.into_iter().flatten() {
                let ran = runs[id].load(Ordering::SeqCst);
                assert!(ran <= 1, "round {round}: job {id} ran {ran} times");
                match r {
                    Ok(v) => assert!(
                        v == id && ran == 1,
                        "round {round}: job {id}: Ok({v}), ran {ran}"
                    ),
                    Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => {}
                    Err(e) => panic!("round {round}: job {id}: unexpected {e:?}"),
                }
            }
            for (id, d) in drops.iter().enumerate() {
                assert_eq!(
                    d.load(Ordering::SeqCst),
                    1,
                    "round {round}: job {id}'s closure dropped wrongly"
                );
            }
            assert_eq!(pool.stats().queued, 0, "round {round}");
        }
    });
}

/// `close` races spilling submitters: every accepted job runs, each once;
/// a refused one reports `NotRunning` and never runs; none hangs.
#[test]
fn close_racing_spilling_submitters_runs_every_accepted_job() {
    guard(60, || {
        for round in 0..30usize {
            let pool = ThreadPool::with_workers(1);
            let per = ring(1);
            let runs = counters(2 * per);
            let start = Barrier::new(3);
            let results: Vec<(usize, Result<(), TaskError>)> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..2)
                    .map(|t| {
                        let (pool, runs, start) = (&pool, &runs, &start);
                        s.spawn(move || {
                            start.wait();
                            let hs: Vec<_> = (0..per)
                                .map(|i| {
                                    let id = t * per + i;
                                    let runs = Arc::clone(runs);
                                    (
                                        id,
                                        pool.apply_async(move || {
                                            runs[id].fetch_add(1, Ordering::SeqCst);
                                        }),
                                    )
                                })
                                .collect();
                            hs.into_iter()
                                .map(|(id, h)| (id, h.get()))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                start.wait();
                for _ in 0..(round * 53) % 400 {
                    std::thread::yield_now();
                }
                pool.close();
                hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
            });
            pool.join();
            for (id, r) in results {
                let ran = runs[id].load(Ordering::SeqCst);
                match r {
                    Ok(()) => assert_eq!(ran, 1, "round {round}: job {id}"),
                    Err(TaskError::NotRunning) => assert_eq!(ran, 0, "round {round}: job {id}"),
                    Err(e) => panic!("round {round}: accepted job {id} failed: {e:?}"),
                }
            }
        }
    });
}

static MILLION_DROPS: AtomicUsize = AtomicUsize::new(0);
static MILLION_RUNS: AtomicUsize = AtomicUsize::new(0);

struct MillionProbe;

impl Drop for MillionProbe {
    fn drop(&mut self) {
        MILLION_DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

/// A million jobs queued behind a held worker (512 in the ring, the rest in
/// the list), some run, then terminate: every closure is dropped exactly
/// once, the queue count returns to zero, and the pool's memory goes with
/// the pool (nothing is left holding a job).
#[test]
fn a_million_queued_jobs_are_all_dropped_after_terminate() {
    guard(120, || {
        let n = 1_000_000usize;
        let pool = ThreadPool::with_workers(1);
        let release = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&release);
        let blocker = pool.apply_async(move || {
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        for _ in 0..n {
            let p = MillionProbe;
            pool.spawn(move || {
                let _p = &p;
                MILLION_RUNS.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(pool.stats().queued, n);
        release.store(true, Ordering::SeqCst);
        while MILLION_RUNS.load(Ordering::Relaxed) < 1000 {
            std::thread::yield_now();
        }
        pool.terminate();
        pool.join();
        blocker.get().unwrap();
        assert_eq!(pool.stats().queued, 0);
        let ran = MILLION_RUNS.load(Ordering::SeqCst);
        assert!((1000..n).contains(&ran), "ran {ran}");
        drop(pool);
        assert_eq!(MILLION_DROPS.load(Ordering::SeqCst), n);
    });
}

/// A large pool (the ring at its 8 192 cap) and four submitters pushing
/// past it at once: everything runs, once.
#[test]
fn large_pool_with_capped_ring_runs_a_spilling_burst() {
    guard(60, || {
        let workers = 200;
        let pool = ThreadPool::with_workers(workers);
        let per = 3000;
        let runs = counters(4 * per);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (pool, runs) = (&pool, &runs);
                s.spawn(move || {
                    let hs: Vec<_> = (0..per)
                        .map(|i| {
                            let runs = Arc::clone(runs);
                            let id = t * per + i;
                            pool.apply_async(move || runs[id].fetch_add(1, Ordering::SeqCst))
                        })
                        .collect();
                    for h in hs {
                        h.get().unwrap();
                    }
                });
            }
        });
        assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
        assert_eq!(pool.stats().queued, 0);
    });
}

/// Tasks submit to their own pool while the ring is full (a worker as the
/// submitter, its pushes spilling), then wait for those jobs: no deadlock,
/// on one worker and on two.
#[test]
fn nested_submission_into_a_full_ring_does_not_deadlock() {
    guard(60, || {
        for workers in [1usize, 2] {
            let pool = Arc::new(ThreadPool::with_workers(workers));
            let outer: Vec<_> = (0..workers * 2)
                .map(|k| {
                    let p = Arc::clone(&pool);
                    pool.apply_async(move || {
                        let hs: Vec<_> = (0..ring(1) + 200)
                            .map(|i| p.apply_async(move || i + k))
                            .collect();
                        hs.into_iter().map(|h| h.get().unwrap()).sum::<usize>()
                    })
                })
                .collect();
            let m = 712usize;
            for (k, h) in outer.into_iter().enumerate() {
                assert_eq!(h.get(), Ok(m * (m - 1) / 2 + m * k));
            }
        }
    });
}

static DRAIN_TRACKER: child::Tracker = child::Tracker::new();

/// What a discarded job's closure owns: an item whose `Drop` may panic, and
/// perhaps a handle on the pool that its `Drop` uses (submitting, and
/// terminating again).
struct Reenter {
    _item: child::Item,
    pool: Option<Arc<ThreadPool>>,
    refused: Arc<AtomicUsize>,
}

impl Drop for Reenter {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            // The pool is terminated: refused, on this thread, at once.
            if pool.apply_async(|| 1).get() == Err(TaskError::NotRunning) {
                self.refused.fetch_add(1, Ordering::SeqCst);
            }
            pool.spawn(|| {});
            pool.terminate();
        }
    }
}

/// Terminate drains a spilled queue whose jobs' `Drop`s panic, or re-enter
/// the pool (submit, terminate again), under both panic policies: no user
/// code runs under the queue's lock (a re-entrant push would deadlock, a
/// panic would poison it), the drain goes on past every panic, every
/// handle resolves, every item is dropped exactly once.
#[test]
fn terminate_drain_survives_panicking_and_reentrant_drops() {
    child::run(
        "terminate_drain_survives_panicking_and_reentrant_drops",
        60,
        || {
            for policy in [PanicPolicy::Propagate, PanicPolicy::Terminate] {
                DRAIN_TRACKER.reset();
                let pool = Arc::new(
                    ThreadPool::builder()
                        .workers(1)
                        .on_panic(policy)
                        .build()
                        .unwrap(),
                );
                let n = ring(1) * 2 + 100;
                let refused = Arc::new(AtomicUsize::new(0));
                let gate = Arc::new(Barrier::new(2));
                let g = Arc::clone(&gate);
                let blocker = pool.apply_async(move || {
                    g.wait();
                    g.wait();
                });
                gate.wait(); // the worker holds the blocker
                let mut reentrant = 0;
                let hs: Vec<_> = (0..n)
                    .map(|i| {
                        let item = if i % 7 == 3 {
                            DRAIN_TRACKER.bomb(i)
                        } else {
                            DRAIN_TRACKER.item(i)
                        };
                        let re = i % 11 == 5;
                        reentrant += re as usize;
                        let r = Reenter {
                            _item: item,
                            pool: re.then(|| Arc::clone(&pool)),
                            refused: Arc::clone(&refused),
                        };
                        pool.apply_async(move || {
                            let _r = &r;
                            i
                        })
                    })
                    .collect();
                assert_eq!(pool.stats().queued, n);
                pool.terminate();
                gate.wait();
                let _ = blocker.get();
                for h in hs {
                    assert_eq!(h.get(), Err(TaskError::Cancelled));
                }
                pool.join();
                assert_eq!(pool.stats().queued, 0);
                assert_eq!(refused.load(Ordering::SeqCst), reentrant);
                let bombs = (0..n).filter(|i| i % 7 == 3).count();
                assert!(pool.stats().panicked >= bombs, "{:?}", pool.stats());
                drop(pool);
                DRAIN_TRACKER.assert_all_dropped_once(n, "terminate drain");
            }
        },
    );
}

/// The last handle on the pool is dropped (close, then join) by another
/// thread while a spilled backlog drains: every queued job runs, once, and
/// every handle resolves to its value.
#[test]
fn dropping_the_pool_during_a_spilled_drain_runs_everything() {
    guard(60, || {
        for round in 0..20usize {
            let pool = Arc::new(ThreadPool::with_workers(1 + round % 2));
            let n = ring(2) + 300 + round * 13;
            let gate = Arc::new(Barrier::new(2));
            let g = Arc::clone(&gate);
            let blocker = pool.apply_async(move || {
                g.wait();
            });
            let hs: Vec<_> = (0..n).map(|i| pool.apply_async(move || i)).collect();
            let p = Arc::clone(&pool);
            let dropper = std::thread::spawn(move || drop(p));
            gate.wait();
            drop(pool);
            dropper.join().unwrap();
            blocker.get().unwrap();
            for (i, h) in hs.into_iter().enumerate() {
                assert_eq!(h.get(), Ok(i), "round {round}");
            }
        }
    });
}

/// Order follows causality, not just threads: submitters take turns (each
/// submits, then hands a token to the next), so their jobs are ordered by
/// happens-before; with one worker, held until the backlog has spilled or
/// racing it from the start, the jobs start exactly in that order.
#[test]
fn one_worker_runs_causally_ordered_submissions_in_order() {
    guard(60, || {
        for round in 0..6usize {
            let pool = ThreadPool::with_workers(1);
            let n = ring(1) * 2 + 77;
            let submitters = 3;
            let log = Arc::new(Mutex::new(Vec::with_capacity(n)));
            let gate = Arc::new(Barrier::new(2));
            let g = Arc::clone(&gate);
            let blocker = pool.apply_async(move || {
                g.wait();
            });
            let hold = round % 2 == 0;
            if !hold {
                gate.wait();
            }
            // Turn `k` belongs to submitter `k % submitters`.
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..submitters)
                .map(|_| std::sync::mpsc::channel::<usize>())
                .unzip();
            std::thread::scope(|s| {
                for (t, rx) in rxs.into_iter().enumerate() {
                    let next = txs[(t + 1) % submitters].clone();
                    let (pool, log) = (&pool, &log);
                    s.spawn(move || {
                        let mut hs = Vec::new();
                        while let Ok(k) = rx.recv() {
                            if k >= n {
                                let _ = next.send(k);
                                break;
                            }
                            let log = Arc::clone(log);
                            hs.push(pool.apply_async(move || log.lock().unwrap().push(k)));
                            let _ = next.send(k + 1);
                        }
                        for h in hs {
                            h.get().unwrap();
                        }
                    });
                }
                txs[0].send(0).unwrap();
                drop(txs);
                if hold {
                    while pool.stats().queued < n {
                        std::thread::yield_now();
                    }
                    gate.wait();
                }
            });
            blocker.get().unwrap();
            let log = log.lock().unwrap();
            assert_eq!(*log, (0..n).collect::<Vec<_>>(), "round {round}");
        }
    });
}

/// Workers that retire after every job (`max_tasks_per_worker(1)`) and the
/// spares a blocked worker brings in drain a spilled queue: each job runs
/// once, and a task waiting for a job at the far end of the list (behind
/// the whole backlog) gets it.
#[test]
fn retiring_workers_and_spares_drain_a_spilled_queue() {
    guard(60, || {
        let pool = Arc::new(
            ThreadPool::builder()
                .workers(1)
                .max_tasks_per_worker(1)
                .build()
                .unwrap(),
        );
        let n = ring(1) + 200;
        let runs = counters(n);
        let (tx, rx) = std::sync::mpsc::channel::<parpool::AsyncResult<usize>>();
        // The one worker takes this task first; it waits for the last job.
        let waiter = pool.apply_async(move || rx.recv().unwrap().get().unwrap());
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let runs = Arc::clone(&runs);
                pool.apply_async(move || runs[i].fetch_add(1, Ordering::SeqCst))
            })
            .collect();
        tx.send(pool.apply_async(|| 7)).unwrap();
        assert_eq!(waiter.get(), Ok(7));
        for h in hs {
            h.get().unwrap();
        }
        assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
        // The awaited job ran inline in the wait; the queue's reference to it
        // is popped (as a no-op) a moment later: nothing stays stranded.
        let t = std::time::Instant::now();
        while pool.stats().queued != 0 {
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", pool.stats());
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}
