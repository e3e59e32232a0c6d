//! A hostile review of the job queue as crossbeam's `SegQueue` (31-job
//! blocks, a pop that waits for a pusher between its slot reservation and
//! its write): the first push into a fresh pool's null block while its
//! workers sleep, single pushes at every offset of a block, submitters
//! stalled at random points (a signal handler that sleeps, so some stalls
//! land inside a push), terminate draining past such stalls, a chain of
//! single pushes through 200 sleeping workers, memory of repeated huge
//! backlogs and of one after its pool is dropped (the queue's blocks come
//! from glibc, which kept them resident until the slab learned to trim the
//! heap), and panicking drops across block boundaries.
// `/proc/self/statm`, glibc's `malloc_trim` and a POSIX signal handler (libc).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

#[path = "common/child.rs"]
mod child;
mod common;

use common::{assert_fifo_within, busy, counters, guard, BombDrop};
use parpool::{TaskError, ThreadPool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const BLOCK: usize = 31;

/// Stalling threads at random points: `SIGUSR1`, whose handler sleeps.
mod stall {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Once;

    pub static STALL_US: AtomicUsize = AtomicUsize::new(200);
    pub static STALLS: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn on_signal(_: libc::c_int) {
        STALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `usleep` (nanosleep) is async-signal-safe in practice.
        unsafe { libc::usleep(STALL_US.load(Ordering::Relaxed) as libc::c_uint) };
    }

    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: installs a handler that only sleeps and counts.
            unsafe {
                libc::signal(
                    libc::SIGUSR1,
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                )
            };
        });
    }

    /// The caller guarantees that `thread` is alive.
    pub fn hit(thread: libc::pthread_t) {
        // SAFETY: the thread is alive (the caller's promise).
        unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
    }

    pub fn me() -> libc::pthread_t {
        // SAFETY: no preconditions.
        unsafe { libc::pthread_self() }
    }
}

/// Runs `submitters` threads through `body(t)` while another thread keeps
/// stalling them (a sleeping signal handler) every `every_us`; no signal is
/// sent to a thread that has finished `body`.
fn with_stalled_submitters(submitters: usize, every_us: u64, body: impl Fn(usize) + Sync) -> usize {
    stall::install();
    let before = stall::STALLS.load(Ordering::Relaxed);
    let ids = Mutex::new(Vec::new());
    let done = AtomicUsize::new(0);
    let stop_signals = AtomicBool::new(false);
    let registered = Barrier::new(submitters + 1);
    std::thread::scope(|s| {
        for t in 0..submitters {
            let (ids, done, stop_signals, registered, body) =
                (&ids, &done, &stop_signals, &registered, &body);
            s.spawn(move || {
                ids.lock().unwrap().push(stall::me());
                registered.wait();
                body(t);
                done.fetch_add(1, Ordering::SeqCst);
                // Stay alive until no more signals can come.
                while !stop_signals.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
        }
        registered.wait();
        let ids = ids.lock().unwrap().clone();
        // Each thread is hit at most once per two stalls, so it runs at
        // least half the time whatever the host's sleeps really take. Hit
        // every `every_us` of a nominal sleep, a submitter got its next
        // signal before its handler's 300 µs sleep had ended on a host
        // where sleeps overshoot by ~60 µs: stalled all the time, it made
        // almost no progress, and the test ran into its 150 s timeout with
        // 5 s of CPU used (4 runs in 5 on an Intel Xeon machine).
        let gap = Duration::from_micros(2 * stall::STALL_US.load(Ordering::Relaxed) as u64);
        let mut last = vec![None::<Instant>; ids.len()];
        let mut k = 0usize;
        while done.load(Ordering::SeqCst) < submitters {
            let i = k % ids.len();
            if last[i].map_or(true, |t: Instant| t.elapsed() >= gap) {
                stall::hit(ids[i]);
                last[i] = Some(Instant::now());
            }
            k += 1;
            std::thread::sleep(Duration::from_micros(every_us));
        }
        stop_signals.store(true, Ordering::SeqCst);
    });
    stall::STALLS.load(Ordering::Relaxed) - before
}

/// A fresh pool's queue has no block yet: its first push installs one.
/// With the workers already asleep, that first job (and the first 31, 32)
/// must run; many pools live at once, then are dropped with work queued
/// (close and join run it all).
#[test]
fn fresh_pools_wake_for_their_first_jobs_and_drop_with_work_queued() {
    guard(120, || {
        for round in 0..60usize {
            let workers = 1 + round % 4;
            let pool = ThreadPool::with_workers(workers);
            // Past the spin and yield rounds: asleep on the condvar.
            std::thread::sleep(Duration::from_millis(2 + (round % 3) as u64));
            let mut h = pool.apply_async(move || round);
            assert_eq!(
                h.get_timeout(Duration::from_secs(10)),
                Ok(round),
                "round {round}: the first job of a fresh pool of {workers} never ran"
            );
        }
        let ran = Arc::new(AtomicUsize::new(0));
        let mut expected = 0;
        let pools: Vec<_> = (0..64usize)
            .map(|p| ThreadPool::with_workers(1 + p % 3))
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        for (p, pool) in pools.iter().enumerate() {
            let n = [1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 2 * BLOCK + 1][p % 6];
            expected += n;
            for _ in 0..n {
                let ran = Arc::clone(&ran);
                pool.spawn(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
        drop(pools);
        assert_eq!(ran.load(Ordering::SeqCst), expected);
    });
}

/// After the workers fell asleep, 1 to 3 jobs are pushed (from one or two
/// threads at once), so that over the rounds the pushes land on every
/// offset of a 31-job block, the block's last slot (whose push installs the
/// next block) included. A lost wake-up shows as a timeout.
#[test]
fn sleeping_workers_wake_for_pushes_at_every_block_offset() {
    guard(180, || {
        for workers in [1usize, 2, 5] {
            let pool = ThreadPool::with_workers(workers);
            for round in 0..(BLOCK * 5) {
                // Vary where the push meets the way to sleep: spinning,
                // yielding, announcing itself, waiting.
                match round % 4 {
                    0 => std::thread::sleep(Duration::from_millis(2)),
                    1 => std::thread::yield_now(),
                    2 => {
                        for _ in 0..(round * 37 % 5000) {
                            std::hint::spin_loop();
                        }
                    }
                    _ => std::thread::sleep(Duration::from_micros(50)),
                }
                let n = 1 + round % 3;
                if round % 2 == 0 {
                    let mut hs: Vec<_> = (0..n)
                        .map(|i| pool.apply_async(move || (round, i)))
                        .collect();
                    for (i, h) in hs.iter_mut().enumerate() {
                        assert_eq!(
                            h.get_timeout(Duration::from_secs(10)),
                            Ok((round, i)),
                            "{workers} workers, round {round}: job {i} of {n} never ran"
                        );
                    }
                } else {
                    let start = Barrier::new(2);
                    std::thread::scope(|s| {
                        for k in 0..2 {
                            let (pool, start) = (&pool, &start);
                            s.spawn(move || {
                                start.wait();
                                let mut h = pool.apply_async(move || (round, k));
                                assert_eq!(
                                    h.get_timeout(Duration::from_secs(10)),
                                    Ok((round, k)),
                                    "{workers} workers, round {round}: racing push {k} never ran"
                                );
                            });
                        }
                    });
                }
            }
            assert_eq!(pool.stats().queued, 0);
        }
    });
}

/// Submitters are stalled at random points by a signal handler that sleeps
/// (some stalls land between a push's slot reservation and its write, or
/// while it installs a block, where every pop waits for it). Nothing may be
/// lost or duplicated; with one worker, each submitter's jobs run in its
/// order; with four, a job overtakes at most three earlier ones.
#[test]
fn submitters_stalled_at_random_points_lose_and_reorder_nothing() {
    child::run(
        "submitters_stalled_at_random_points_lose_and_reorder_nothing",
        150,
        || {
            let _busy = busy(1);
            for workers in [1usize, 4] {
                for round in 0..3usize {
                    let pool = ThreadPool::with_workers(workers);
                    let submitters = 3;
                    let per = 20_000 + round * 7;
                    let log = Arc::new(Mutex::new(Vec::with_capacity(submitters * per)));
                    stall::STALL_US.store(50 + 150 * round, Ordering::Relaxed);
                    let stalls = with_stalled_submitters(submitters, 30, |t| {
                        let hs: Vec<_> = (0..per)
                            .map(|i| {
                                let log = Arc::clone(&log);
                                pool.apply_async(move || {
                                    log.lock().unwrap().push((t, i));
                                    i
                                })
                            })
                            .collect();
                        for (i, mut h) in hs.into_iter().enumerate() {
                            assert_eq!(h.get_timeout(Duration::from_secs(30)), Ok(i));
                        }
                    });
                    assert!(stalls > 0, "no stall happened");
                    let log = log.lock().unwrap();
                    assert_fifo_within(&log, submitters, per, workers);
                    assert_eq!(pool.stats().queued, 0);
                }
            }
        },
    );
}

/// `terminate` races submitters that are being stalled (some inside a
/// push, where the drain's pop waits for them) with a long backlog behind
/// a held worker. Every handle resolves to its value or `Cancelled`, every
/// closure is dropped exactly once, nothing stays queued, and a submitter's
/// jobs that ran form a prefix... of what ran before the terminate; at
/// least, a job never runs after a later job of its submitter was cancelled
/// by the drain with one worker.
#[test]
fn terminate_racing_stalled_submitters_resolves_every_handle_once() {
    child::run(
        "terminate_racing_stalled_submitters_resolves_every_handle_once",
        150,
        || {
            for round in 0..6usize {
                let workers = 1 + round % 3;
                let pool = Arc::new(
                    ThreadPool::builder()
                        .workers(workers)
                        .max_tasks_per_worker(if round % 2 == 1 { 50 } else { usize::MAX })
                        .build()
                        .unwrap(),
                );
                let submitters = 3;
                let per = 30_000;
                let drops = counters(submitters * per);
                let ran = counters(submitters * per);
                let outcomes = Mutex::new((0usize, 0usize, 0usize));
                stall::STALL_US.store(300, Ordering::Relaxed);
                let terminator = {
                    let pool = Arc::clone(&pool);
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(5 + 7 * round as u64));
                        pool.terminate();
                    })
                };
                with_stalled_submitters(submitters, 40, |t| {
                    let hs: Vec<_> = (0..per)
                        .map(|i| {
                            let id = t * per + i;
                            let probe = common::Probe::new(id, &drops);
                            let ran = Arc::clone(&ran);
                            pool.apply_async(move || {
                                let _p = &probe;
                                ran[id].fetch_add(1, Ordering::SeqCst);
                                i
                            })
                        })
                        .collect();
                    let (mut ok, mut cancelled, mut refused) = (0, 0, 0);
                    for (i, mut h) in hs.into_iter().enumerate() {
                        match h.get_timeout(Duration::from_secs(30)) {
                            Ok(v) => {
                                assert_eq!(v, i);
                                ok += 1;
                            }
                            Err(TaskError::Cancelled) => cancelled += 1,
                            Err(TaskError::NotRunning) => refused += 1,
                            Err(e) => panic!("round {round}: job ({t}, {i}): {e:?}"),
                        }
                    }
                    let mut o = outcomes.lock().unwrap();
                    o.0 += ok;
                    o.1 += cancelled;
                    o.2 += refused;
                });
                terminator.join().unwrap();
                pool.join();
                let (ok, cancelled, refused) = *outcomes.lock().unwrap();
                assert_eq!(ok + cancelled + refused, submitters * per);
                let runs: usize = ran.iter().map(|r| r.load(Ordering::SeqCst)).sum();
                assert!(
                    runs >= ok && runs <= ok + cancelled,
                    "round {round}: {runs} runs, {ok} ok, {cancelled} cancelled"
                );
                for (id, d) in drops.iter().enumerate() {
                    assert_eq!(d.load(Ordering::SeqCst), 1, "round {round}: closure {id}");
                }
                for (id, r) in ran.iter().enumerate() {
                    assert!(
                        r.load(Ordering::SeqCst) <= 1,
                        "round {round}: job {id} ran twice"
                    );
                }
                assert_eq!(pool.stats().queued, 0, "round {round}");
            }
        },
    );
}

/// 200 workers, all asleep; jobs that each push the next one (a worker as
/// the pusher), single pushes that cross a block boundary every 31 links,
/// and four such chains at once. A lost wake-up or a pop stuck on a block
/// boundary shows as a timeout.
#[test]
fn chains_of_single_pushes_through_two_hundred_sleeping_workers() {
    guard(120, || {
        let pool = Arc::new(ThreadPool::with_workers(200));
        fn link(pool: &Arc<ThreadPool>, left: usize, done: mpsc::Sender<usize>, chain: usize) {
            if left == 0 {
                let _ = done.send(chain);
                return;
            }
            let next = Arc::clone(pool);
            pool.spawn(move || link(&next, left - 1, done, chain));
        }
        for round in 0..4 {
            std::thread::sleep(Duration::from_millis(20));
            let (tx, rx) = mpsc::channel();
            let chains = 1 + round;
            for c in 0..chains {
                link(&pool, BLOCK * 40 + c, tx.clone(), c);
            }
            drop(tx);
            let start = Instant::now();
            let mut seen = vec![false; chains];
            for _ in 0..chains {
                let c = rx
                    .recv_timeout(Duration::from_secs(25))
                    .unwrap_or_else(|e| panic!("round {round}: a chain stopped ({e:?})"));
                seen[c] = true;
            }
            assert!(seen.iter().all(|&s| s));
            eprintln!("round {round}: {chains} chains in {:?}", start.elapsed());
        }
        assert_eq!(pool.stats().queued, 0);
    });
}

fn rss_kb() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// Holds a one-worker pool's worker (until the returned sender is dropped)
/// and queues `n` jobs behind it, each counting itself in the returned
/// counter when it runs.
fn backlog_behind_the_worker(pool: &ThreadPool, n: usize) -> (mpsc::Sender<()>, Arc<AtomicUsize>) {
    let (_blocker, hold_tx) = common::occupy_the_worker(pool);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..n {
        let ran = Arc::clone(&ran);
        pool.spawn(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        });
    }
    (hold_tx, ran)
}

/// Five rounds of a two-million-job backlog behind a held worker, each run
/// to the end: the queue's blocks (one per 31 jobs) are freed as they are
/// drained, so resident memory does not grow round after round.
#[test]
fn repeated_huge_backlogs_do_not_grow_memory() {
    child::run("repeated_huge_backlogs_do_not_grow_memory", 200, || {
        let pool = ThreadPool::with_workers(1);
        let n = 2_000_000usize;
        let mut after = Vec::new();
        let mut peaks = Vec::new();
        for round in 0..5 {
            let (hold_tx, ran) = backlog_behind_the_worker(&pool, n);
            assert_eq!(pool.stats().queued, n);
            peaks.push(rss_kb());
            drop(hold_tx);
            let until = Instant::now() + Duration::from_secs(60);
            while ran.load(Ordering::Relaxed) < n {
                assert!(Instant::now() < until, "round {round}: backlog never ran");
                std::thread::sleep(Duration::from_millis(5));
            }
            while pool.stats().queued > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            after.push(rss_kb());
        }
        eprintln!("RSS kB at peak {peaks:?}, after drain {after:?}");
        let first_peak = peaks[0];
        for (r, &p) in peaks.iter().enumerate() {
            assert!(
                p <= first_peak + first_peak / 4 + 16 * 1024,
                "round {r}: peak RSS {p} kB vs {first_peak} kB in round 0: memory grows"
            );
        }
    });
}

/// Jobs whose `Drop` panics, queued behind a held worker in counts around
/// block boundaries, discarded by `terminate`'s drain and by the worker
/// that meets them after it: every one dropped exactly once, the drain
/// goes on past each panic and leaves nothing queued.
#[test]
fn panicking_drops_across_block_boundaries_are_each_dropped_once() {
    child::run(
        "panicking_drops_across_block_boundaries_are_each_dropped_once",
        60,
        || {
            for n in [
                BLOCK - 1,
                BLOCK,
                BLOCK + 1,
                2 * BLOCK - 1,
                2 * BLOCK,
                5 * BLOCK + 3,
            ] {
                for workers in [1usize, 3] {
                    let pool = ThreadPool::with_workers(workers);
                    let gate = Arc::new(Barrier::new(workers + 1));
                    let blockers: Vec<_> = (0..workers)
                        .map(|_| {
                            let g = Arc::clone(&gate);
                            pool.apply_async(move || {
                                g.wait();
                                g.wait();
                            })
                        })
                        .collect();
                    gate.wait();
                    let drops = Arc::new(AtomicUsize::new(0));
                    let plain = counters(n);
                    let hs: Vec<_> = (0..n)
                        .map(|i| {
                            let bomb = (i % 3 == 0).then(|| BombDrop(Arc::clone(&drops)));
                            let probe = common::Probe::new(i, &plain);
                            pool.apply_async(move || {
                                let _b = &bomb;
                                let _p = &probe;
                            })
                        })
                        .collect();
                    assert_eq!(pool.stats().queued, n);
                    pool.terminate();
                    gate.wait();
                    for b in blockers {
                        let _ = b.get();
                    }
                    for (i, h) in hs.into_iter().enumerate() {
                        assert_eq!(h.get(), Err(TaskError::Cancelled), "n {n}: job {i}");
                    }
                    pool.join();
                    assert_eq!(drops.load(Ordering::SeqCst), n.div_ceil(3), "n {n}");
                    for (i, d) in plain.iter().enumerate() {
                        assert_eq!(d.load(Ordering::SeqCst), 1, "n {n}: closure {i}");
                    }
                    assert_eq!(pool.stats().queued, 0);
                }
            }
        },
    );
}

/// One worker, imap with chunks of one and a small buffer, plus a scope
/// whose tasks spawn more, while the submitting threads are stalled at
/// random points: results come back complete and in order.
#[test]
fn imap_and_scopes_on_one_worker_with_stalled_submitters() {
    child::run(
        "imap_and_scopes_on_one_worker_with_stalled_submitters",
        120,
        || {
            let pool = ThreadPool::with_workers(1);
            stall::STALL_US.store(200, Ordering::Relaxed);
            with_stalled_submitters(2, 50, |t| {
                if t == 0 {
                    let n = 20_000usize;
                    let got: Vec<usize> = pool
                        .imap(|x: usize| x * 2, 0..n)
                        .chunksize(1)
                        .buffer(BLOCK + 1)
                        .collect();
                    assert_eq!(got, (0..n).map(|x| x * 2).collect::<Vec<_>>());
                } else {
                    let log = Mutex::new(Vec::new());
                    pool.scope(|s| {
                        let log = &log;
                        for i in 0..(BLOCK * 50) {
                            s.spawn(move || {
                                log.lock().unwrap().push((0usize, i));
                                if i % BLOCK == 0 {
                                    for j in 0..BLOCK + 2 {
                                        s.spawn(move || log.lock().unwrap().push((1 + i, j)));
                                    }
                                }
                            });
                        }
                    });
                    let log = log.into_inner().unwrap();
                    assert_eq!(log.len(), BLOCK * 50 + 50 * (BLOCK + 2));
                    // Each submitter's jobs in its order (one worker).
                    let mut last = std::collections::HashMap::new();
                    for &(k, i) in &log {
                        if let Some(&l) = last.get(&k) {
                            assert!(i > l, "submitter {k}: {i} after {l}");
                        }
                        last.insert(k, i);
                    }
                }
            });
        },
    );
}

/// Measures (and prints) resident memory around one two-million-job
/// backlog: before, at its peak, once drained, once the pool is dropped,
/// and after `malloc_trim`. Once the pool is dropped, at most a tenth of
/// what the backlog took may stay resident. (The ring-and-list queue this
/// replaced: base 3.9 MB, peak 192 MB, dropped 6.2 MB. The `SegQueue`
/// before the slab trimmed the heap: dropped 72 MB, 6.3 MB only after
/// `malloc_trim`, its 31-job blocks kept in glibc's free lists. Now:
/// dropped 5.5 MB.)
#[test]
fn memory_of_a_huge_backlog_is_given_back() {
    child::run("memory_of_a_huge_backlog_is_given_back", 200, || {
        let base = rss_kb();
        let pool = ThreadPool::with_workers(1);
        let n = 2_000_000usize;
        let (hold_tx, ran) = backlog_behind_the_worker(&pool, n);
        let peak = rss_kb();
        drop(hold_tx);
        while ran.load(Ordering::Relaxed) < n || pool.stats().queued > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let drained = rss_kb();
        drop(pool);
        std::thread::sleep(Duration::from_millis(50));
        let dropped = rss_kb();
        // SAFETY: glibc's malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        let trimmed = rss_kb();
        eprintln!(
            "MEM kB: base {base}, peak {peak} (+{}), drained {drained}, pool dropped {dropped}, \
             after malloc_trim {trimmed}",
            peak - base
        );
        assert!(
            dropped <= base + (peak - base) / 10,
            "pool dropped, RSS {dropped} kB: most of the backlog's {} kB never given back \
             (malloc_trim then: {trimmed} kB)",
            peak - base
        );
    });
}

/// 200 workers that retire every few tasks (replacements start all the
/// time), submitters stalled at random points, and `close` landing while
/// they push: every accepted job runs exactly once and every handle
/// resolves to its value (a refused one to `NotRunning`); the pool's
/// threads all exit (join returns).
#[test]
fn two_hundred_retiring_workers_and_close_racing_stalled_submitters() {
    child::run(
        "two_hundred_retiring_workers_and_close_racing_stalled_submitters",
        150,
        || {
            for round in 0..3usize {
                let pool = Arc::new(
                    ThreadPool::builder()
                        .workers(200)
                        .max_tasks_per_worker(3 + round)
                        .build()
                        .unwrap(),
                );
                let submitters = 3;
                let per = 4_000;
                let ran = counters(submitters * per);
                let outcomes = Mutex::new((0usize, 0usize));
                stall::STALL_US.store(100, Ordering::Relaxed);
                let closer = {
                    let (pool, ran) = (Arc::clone(&pool), Arc::clone(&ran));
                    // Close once a share of the jobs ran (submitters still pushing).
                    let want = submitters * per * (round + 1) / 12;
                    std::thread::spawn(move || {
                        let until = Instant::now() + Duration::from_secs(30);
                        while ran.iter().map(|r| r.load(Ordering::Relaxed)).sum::<usize>() < want
                            && Instant::now() < until
                        {
                            std::thread::sleep(Duration::from_micros(500));
                        }
                        pool.close();
                    })
                };
                with_stalled_submitters(submitters, 40, |t| {
                    let hs: Vec<_> = (0..per)
                        .map(|i| {
                            let id = t * per + i;
                            let ran = Arc::clone(&ran);
                            pool.apply_async(move || {
                                ran[id].fetch_add(1, Ordering::SeqCst);
                                i
                            })
                        })
                        .collect();
                    let (mut ok, mut refused) = (0, 0);
                    for (i, mut h) in hs.into_iter().enumerate() {
                        match h.get_timeout(Duration::from_secs(60)) {
                            Ok(v) => {
                                assert_eq!(v, i);
                                ok += 1;
                            }
                            Err(TaskError::NotRunning) => refused += 1,
                            Err(e) => panic!("round {round}: job ({t}, {i}): {e:?}"),
                        }
                    }
                    let mut o = outcomes.lock().unwrap();
                    o.0 += ok;
                    o.1 += refused;
                });
                closer.join().unwrap();
                pool.join();
                let (ok, refused) = *outcomes.lock().unwrap();
                eprintln!("round {round}: {ok} ran, {refused} refused");
                assert_eq!(ok + refused, submitters * per);
                let runs: usize = ran.iter().map(|r| r.load(Ordering::SeqCst)).sum();
                assert_eq!(
                    runs, ok,
                    "round {round}: {runs} runs for {ok} accepted jobs"
                );
                assert!(ran.iter().all(|r| r.load(Ordering::SeqCst) <= 1));
                assert_eq!(pool.stats().queued, 0);
            }
        },
    );
}
