//! Final hostile round against the paths added last: `spawn`, `Scope::spawn`,
//! `Imap::batches`, the `fold`/`for_each` fast path, `into_stream`, and
//! `map` over `std` collections. Four classes:
//!
//! 1. sizes at 0 and at the maximum;
//! 2. `close` / `terminate` racing every new call;
//! 3. a panic in every user hook of the new paths (child processes);
//! 4. nesting on a 1-worker pool.
//!
//! Every case runs under a guard, so a hang fails instead of stalling.
#[path = "common/child.rs"]
mod child;
mod common;

use child::{assert_pool_healthy, catch, DropBomb, Item, Tracker};
use common::{close_or_terminate, guard};
use futures::StreamExt;
use parpool::{TaskError, ThreadPool};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

fn one_worker() -> Arc<ThreadPool> {
    Arc::new(ThreadPool::with_workers(1))
}

// ---------------------------------------------------------------------------
// 1. Sizes at 0 and at the maximum
// ---------------------------------------------------------------------------

#[test]
fn batches_of_empty_inputs_end_at_once() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        assert_eq!(pool.imap(|x: u32| x, 0..0u32).batches().count(), 0);
        assert_eq!(
            pool.imap_unordered(|x: u32| x, 0..0u32).batches().count(),
            0
        );
        assert_eq!(
            pool.imap(|x: u32| x, Vec::<u32>::new())
                .chunksize(usize::MAX)
                .buffer(usize::MAX)
                .batches()
                .count(),
            0
        );
        let mut b = pool.imap(|x: u32| x, 0..0u32).buffer(1).batches();
        assert!(b.next().is_none());
        // Fused enough: asking again neither hangs nor panics.
        assert!(b.next().is_none());
        assert!(b.next().is_none());
    });
}

#[test]
fn batches_with_chunksize_max_are_bounded_and_complete() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let n = 200_000u64;
        let batches: Vec<Vec<u64>> = pool
            .imap(|x: u64| x * 3, 0..n)
            .chunksize(usize::MAX)
            .batches()
            .collect();
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 65_536));
        let all = batches.concat();
        assert_eq!(all.len() as u64, n);
        assert!(all.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));

        let mut un: Vec<u64> = pool
            .imap_unordered(|x: u64| x, 0..n)
            .chunksize(usize::MAX)
            .batches()
            .flatten()
            .collect();
        un.sort_unstable();
        assert!(un.iter().enumerate().all(|(i, &v)| v == i as u64));
        assert_eq!(un.len() as u64, n);
    });
}

#[test]
fn batches_with_chunksize_max_over_an_endless_input() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let got: Vec<u64> = pool
            .imap(|x: u64| x, 0u64..)
            .chunksize(usize::MAX)
            .batches()
            .take(3)
            .flatten()
            .collect();
        assert!(!got.is_empty());
        assert!(got.iter().enumerate().all(|(i, &v)| v == i as u64));
    });
}

#[test]
fn batches_with_buffer_1_hand_out_one_item_each() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        for chunk in [None, Some(1usize), Some(7), Some(usize::MAX)] {
            let it = pool.imap(|x: u32| x + 1, 0..500u32).buffer(1);
            let it = match chunk {
                Some(c) => it.chunksize(c),
                None => it,
            };
            let batches: Vec<Vec<u32>> = it.batches().collect();
            assert!(
                batches.iter().all(|b| b.len() == 1),
                "chunk {chunk:?}: a batch larger than the read-ahead bound of 1"
            );
            assert_eq!(batches.concat(), (1..=500).collect::<Vec<u32>>());
        }
        let mut un: Vec<u32> = pool
            .imap_unordered(|x: u32| x, 0..500u32)
            .buffer(1)
            .chunksize(usize::MAX)
            .batches()
            .flatten()
            .collect();
        un.sort_unstable();
        assert_eq!(un, (0..500).collect::<Vec<u32>>());
    });
}

#[test]
fn fold_and_for_each_on_empty_inputs() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        assert_eq!(pool.imap(|x: u64| x, 0..0u64).fold(7u64, |a, x| a + x), 7);
        assert_eq!(pool.imap(|x: u64| x, 0..0u64).sum::<u64>(), 0);
        assert_eq!(pool.imap(|x: u64| x, 0..0u64).last(), None);
        assert_eq!(pool.imap_unordered(|x: u64| x, 0..0u64).count(), 0);
        let mut seen = 0;
        pool.imap(|x: u64| x, Vec::<u64>::new())
            .buffer(1)
            .chunksize(usize::MAX)
            .for_each(|_| seen += 1);
        assert_eq!(seen, 0);
        // A fold after a partial `next()`.
        let mut it = pool.imap(|x: u64| x, 0..1000u64).chunksize(3);
        assert_eq!(it.next(), Some(0));
        assert_eq!(
            it.fold(1u64, |a, x| a.wrapping_mul(31).wrapping_add(x)),
            (1..1000u64).fold(1u64, |a, x| a.wrapping_mul(31).wrapping_add(x))
        );
    });
}

#[test]
fn spawn_and_scope_spawn_with_zero_jobs() {
    guard(20, || {
        let pool = ThreadPool::with_workers(1);
        let v = pool.scope(|_s| 5);
        assert_eq!(v, 5);
        let v = pool.scope(|s| {
            let zero = std::hint::black_box(0);
            for _ in 0..zero {
                s.spawn(|| {});
            }
            6
        });
        assert_eq!(v, 6);
        pool.close();
        pool.join();
        // After close: a scope with zero jobs still returns.
        assert_eq!(pool.scope(|_s| 7), 7);
        let s = pool.stats();
        assert_eq!((s.running, s.queued, s.panicked), (0, 0, 0), "{s:?}");
    });
}

#[test]
fn map_over_vecdeque_and_hashmap_empty_and_large() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let empty_dq: VecDeque<u64> = VecDeque::new();
        assert!(pool.map(|x: &u64| *x, &empty_dq).is_empty());
        let empty_hm: HashMap<u64, u64> = HashMap::new();
        assert!(pool.map(|(k, v): (&u64, &u64)| k + v, &empty_hm).is_empty());
        assert!(pool
            .chunked(usize::MAX)
            .map(|x: &u64| *x, &empty_dq)
            .is_empty());

        // A deque split in two slices (wrapped around).
        let mut dq: VecDeque<u64> = VecDeque::with_capacity(8);
        for i in 0..100_000u64 {
            dq.push_back(i);
        }
        for _ in 0..50_000 {
            let x = dq.pop_front().unwrap();
            dq.push_back(x);
        }
        let (a, b) = dq.as_slices();
        assert!(!a.is_empty() && !b.is_empty(), "deque did not wrap");
        let want: Vec<u64> = dq.iter().map(|x| x * 2).collect();
        assert_eq!(pool.map(|x: &u64| x * 2, &dq), want);
        assert_eq!(pool.chunked(1).map(|x: &u64| x * 2, &dq), want);
        assert_eq!(pool.chunked(usize::MAX).map(|x: &u64| x * 2, &dq), want);
        assert_eq!(pool.chunked(99_999).map(|x: &u64| x * 2, &dq), want);

        let hm: HashMap<u64, u64> = (0..100_000u64).map(|i| (i, i * 10)).collect();
        let want: Vec<u64> = hm.iter().map(|(k, v)| k + v).collect();
        assert_eq!(pool.map(|(k, v): (&u64, &u64)| k + v, &hm), want);
        assert_eq!(
            pool.chunked(usize::MAX)
                .map(|(k, v): (&u64, &u64)| k + v, &hm),
            want
        );
        let owned = hm.clone();
        let mut keys = pool.map(|(k, _v): (u64, u64)| k, owned);
        keys.sort_unstable();
        assert_eq!(keys, (0..100_000u64).collect::<Vec<_>>());
    });
}

#[test]
fn into_stream_on_empty_inputs() {
    guard(20, || {
        let pool = ThreadPool::with_workers(1);
        let v: Vec<u32> =
            futures::executor::block_on(pool.imap(|x: u32| x, 0..0u32).into_stream().collect());
        assert!(v.is_empty());
        let v: Vec<u32> = futures::executor::block_on(
            pool.imap_unordered(|x: u32| x, Vec::<u32>::new())
                .buffer(1)
                .chunksize(usize::MAX)
                .into_stream()
                .collect(),
        );
        assert!(v.is_empty());
        let mut s = pool.imap(|x: u32| x, 0..0u32).into_stream();
        futures::executor::block_on(async {
            assert_eq!(s.next().await, None);
            assert_eq!(s.next().await, None);
        });
        // chunksize(MAX) over a larger input through the stream.
        let v: Vec<u32> = futures::executor::block_on(
            pool.imap(|x: u32| x, 0..100_000u32)
                .chunksize(usize::MAX)
                .into_stream()
                .collect(),
        );
        assert_eq!(v, (0..100_000u32).collect::<Vec<_>>());
    });
}

// ---------------------------------------------------------------------------
// 2. close / terminate racing the new calls
// ---------------------------------------------------------------------------

/// Counts runs and drops of a job's closure: each job must be dropped exactly
/// once, and run at most once.
struct Job {
    id: usize,
    ran: Arc<Vec<AtomicUsize>>,
    dropped: Arc<Vec<AtomicUsize>>,
}

impl Job {
    fn run(&self) {
        self.ran[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.dropped[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

fn counters(n: usize) -> Arc<Vec<AtomicUsize>> {
    Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect())
}

#[test]
fn spawn_racing_close_and_terminate() {
    guard(120, || {
        for round in 0..60 {
            let terminate = round % 2 == 1;
            let pool = Arc::new(ThreadPool::with_workers(2));
            let n = 400;
            let ran = counters(n);
            let dropped = counters(n);
            let start = Arc::new(Barrier::new(2));
            let stopper = {
                let pool = Arc::clone(&pool);
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..(round % 7) * 20 {
                        std::hint::spin_loop();
                    }
                    close_or_terminate(&pool, terminate);
                })
            };
            start.wait();
            for id in 0..n {
                let job = Job {
                    id,
                    ran: Arc::clone(&ran),
                    dropped: Arc::clone(&dropped),
                };
                pool.spawn(move || job.run());
            }
            stopper.join().unwrap();
            if !terminate {
                pool.close();
            }
            pool.join();
            for id in 0..n {
                let r = ran[id].load(Ordering::SeqCst);
                let d = dropped[id].load(Ordering::SeqCst);
                assert_eq!(d, 1, "round {round}: job {id} dropped {d} times");
                assert!(r <= 1, "round {round}: job {id} ran {r} times");
                if !terminate {
                    assert_eq!(r, 1, "round {round}: close lost job {id}");
                }
            }
            let s = pool.stats();
            assert_eq!((s.running, s.queued), (0, 0), "round {round}: {s:?}");
        }
    });
}

#[test]
fn scope_spawn_racing_close_and_terminate() {
    guard(120, || {
        for round in 0..60 {
            let terminate = round % 2 == 1;
            let pool = Arc::new(ThreadPool::with_workers(2));
            let n = 300;
            let ran = counters(n);
            let dropped = counters(n);
            let start = Arc::new(Barrier::new(2));
            let stopper = {
                let pool = Arc::clone(&pool);
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..(round % 5) * 30 {
                        std::hint::spin_loop();
                    }
                    close_or_terminate(&pool, terminate);
                })
            };
            let r = catch(|| {
                pool.scope(|s| {
                    start.wait();
                    for id in 0..n {
                        let job = Job {
                            id,
                            ran: Arc::clone(&ran),
                            dropped: Arc::clone(&dropped),
                        };
                        s.spawn(move || job.run());
                    }
                })
            });
            stopper.join().unwrap();
            // A discarded scoped job may be reported by the scope; it must
            // not be lost silently, and with close every job runs.
            let total_ran: usize = ran.iter().map(|a| a.load(Ordering::SeqCst)).sum();
            for id in 0..n {
                let d = dropped[id].load(Ordering::SeqCst);
                let rr = ran[id].load(Ordering::SeqCst);
                assert_eq!(d, 1, "round {round}: job {id} dropped {d} times");
                assert!(rr <= 1, "round {round}: job {id} ran {rr} times");
            }
            if !terminate {
                assert!(
                    r.is_ok(),
                    "round {round}: scope panicked under close: {r:?}"
                );
                assert_eq!(total_ran, n, "round {round}: close lost scoped jobs");
            }
            // Under terminate, discarded scoped jobs are dropped unrun and
            // not reported (documented on `Scope::spawn`).
            pool.join();
        }
    });
}

#[test]
fn batches_racing_terminate_end_with_a_clear_error() {
    guard(120, || {
        for round in 0..40 {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let stopper = {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros(200 * (round % 10)));
                    pool.terminate();
                })
            };
            let mut got = Vec::new();
            let r = catch(|| {
                for b in pool.imap(|x: u64| x, 0..200_000u64).chunksize(64).batches() {
                    got.extend(b);
                }
            });
            stopper.join().unwrap();
            assert!(
                got.iter().enumerate().all(|(i, &v)| v == i as u64),
                "round {round}: batches out of order or with holes"
            );
            match r {
                Ok(()) => assert_eq!(
                    got.len(),
                    200_000,
                    "round {round}: ended early without error"
                ),
                Err(m) => assert!(
                    m.contains("cancel") || m.contains("terminat"),
                    "round {round}: unclear panic: {m}"
                ),
            }
            pool.join();
        }
    });
}

#[test]
fn for_each_and_batches_racing_close_lose_nothing() {
    guard(120, || {
        for round in 0..40 {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let stopper = {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros(150 * (round % 10)));
                    pool.close();
                })
            };
            let n = 50_000u64;
            let mut next = 0u64;
            let r = catch(|| {
                if round % 2 == 0 {
                    pool.imap(|x: u64| x, 0..n).for_each(|x| {
                        assert_eq!(x, next);
                        next += 1;
                    });
                } else {
                    for b in pool.imap(|x: u64| x, 0..n).batches() {
                        for x in b {
                            assert_eq!(x, next);
                            next += 1;
                        }
                    }
                }
            });
            stopper.join().unwrap();
            // close lets accepted work finish: the imap must either deliver
            // everything or fail with a clear message, never stop short.
            match r {
                Ok(()) => assert_eq!(next, n, "round {round}: close truncated the imap silently"),
                Err(m) => assert!(
                    m.contains("not running") || m.contains("closed") || m.contains("cancel"),
                    "round {round}: unclear panic after {next} items: {m}"
                ),
            }
            pool.join();
        }
    });
}

#[test]
fn into_stream_racing_terminate_and_close() {
    guard(120, || {
        for round in 0..40 {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let terminate = round % 2 == 0;
            let stopper = {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros(150 * (round % 10)));
                    close_or_terminate(&pool, terminate);
                })
            };
            let n = 30_000u64;
            let mut got = 0u64;
            let r = catch(|| {
                let mut s = pool.imap(|x: u64| x, 0..n).chunksize(16).into_stream();
                futures::executor::block_on(async {
                    while let Some(x) = s.next().await {
                        assert_eq!(x, got);
                        got += 1;
                    }
                });
            });
            stopper.join().unwrap();
            match r {
                Ok(()) => assert_eq!(got, n, "round {round}: stream ended early without error"),
                Err(m) => assert!(
                    m.contains("cancel") || m.contains("terminat") || m.contains("not running"),
                    "round {round}: unclear panic: {m}"
                ),
            }
            if !terminate {
                assert!(catch(|| ()).is_ok());
            }
            pool.join();
        }
    });
}

#[test]
fn apply_racing_close_and_terminate_runs_exactly_once() {
    guard(120, || {
        for round in 0..40 {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let terminate = round % 2 == 0;
            let stop = Arc::new(AtomicBool::new(false));
            let stopper = {
                let pool = Arc::clone(&pool);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros(100 * (round % 10)));
                    close_or_terminate(&pool, terminate);
                    stop.store(true, Ordering::SeqCst);
                })
            };
            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    let stop = Arc::clone(&stop);
                    std::thread::spawn(move || {
                        let mut i = 0u64;
                        let mut after = 0;
                        while after < 50 {
                            if stop.load(Ordering::SeqCst) {
                                after += 1;
                            }
                            let runs = AtomicUsize::new(0);
                            let v = pool.apply(|| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                i * 2
                            });
                            assert_eq!(v, i * 2);
                            assert_eq!(
                                runs.load(Ordering::SeqCst),
                                1,
                                "apply ran f twice or never"
                            );
                            i += 1;
                        }
                    })
                })
                .collect();
            for c in callers {
                c.join().unwrap();
            }
            stopper.join().unwrap();
            pool.join();
        }
    });
}

// ---------------------------------------------------------------------------
// 3. A panic in every user hook of the new paths (child processes)
// ---------------------------------------------------------------------------

/// Items `0..n`; those with `id % 100 == 50` panic when dropped. Inputs
/// use `n <= 200`: std's own `Vec` drop aborts on a second panicking element
/// left unread, wherever it is dropped, so the pool cannot be blamed.
fn items_with_bombs(t: &'static Tracker, n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| if i % 100 == 50 { t.bomb(i) } else { t.item(i) })
        .collect()
}

#[test]
fn spawn_closure_and_its_drop_panic() {
    child::run("spawn_closure_and_its_drop_panic", 30, || {
        let pool = one_worker();
        pool.spawn(|| panic!("EXPECTED spawn closure"));
        let bomb = DropBomb("spawn closure after running");
        pool.spawn(move || {
            let _keep = &bomb;
        });
        assert_pool_healthy(&pool, "after panicking spawned jobs");
        // On a closed pool the job runs on the caller; spawn must not panic.
        pool.close();
        let r = catch(|| pool.spawn(|| panic!("EXPECTED refused spawn")));
        assert!(r.is_ok(), "spawn on a closed pool panicked: {r:?}");
        let bomb = DropBomb("refused spawn closure");
        let r = catch(|| {
            pool.spawn(move || {
                let _keep = &bomb;
            })
        });
        assert!(
            r.is_ok(),
            "spawn with a panicking Drop on a closed pool panicked: {r:?}"
        );
        pool.join();
    });
}

#[test]
fn spawn_drop_panics_when_terminate_discards_it() {
    child::run("spawn_drop_panics_when_terminate_discards_it", 30, || {
        let pool = one_worker();
        let (release, blocked) = mpsc::channel::<()>();
        pool.spawn(move || {
            let _ = blocked.recv_timeout(Duration::from_secs(10));
        });
        for i in 0..5 {
            let bomb = DropBomb(["d0", "d1", "d2", "d3", "d4"][i]);
            pool.spawn(move || {
                let _keep = &bomb;
            });
        }
        let r = catch(|| pool.terminate());
        // terminate may report the panics, but must terminate.
        let _ = r;
        release.send(()).ok();
        common::guard_named(10, "join after terminate", {
            let pool = Arc::clone(&pool);
            move || pool.join()
        });
        assert!(!pool.is_running());
    });
}

#[test]
fn spawn_under_terminate_policy_panics() {
    child::run("spawn_under_terminate_policy_panics", 30, || {
        let pool = Arc::new(common::terminating_on_panic(1));
        pool.spawn(|| panic!("EXPECTED spawn under Terminate"));
        let pool2 = Arc::clone(&pool);
        common::guard_named(10, "pool terminated by a spawned panic", move || {
            while pool2.is_running() {
                std::thread::sleep(Duration::from_millis(2));
            }
            pool2.join();
        });
        // Afterwards spawn runs on the caller, never panics.
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = Arc::clone(&ran);
        pool.spawn(move || r2.store(true, Ordering::SeqCst));
        assert!(ran.load(Ordering::SeqCst));
    });
}

#[test]
fn scope_spawn_closure_and_its_drop_panic() {
    child::run("scope_spawn_closure_and_its_drop_panic", 30, || {
        let pool = one_worker();
        let done = AtomicUsize::new(0);
        let r = catch(|| {
            pool.scope(|s| {
                s.spawn(|| panic!("EXPECTED scoped closure"));
                for _ in 0..10 {
                    s.spawn(|| {
                        done.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
        });
        let m = r.expect_err("scope must re-raise the spawned panic");
        assert!(m.contains("EXPECTED scoped closure"), "{m}");
        assert_eq!(done.load(Ordering::SeqCst), 10, "other scoped jobs lost");
        assert_pool_healthy(&pool, "after a scoped panic");

        let r = catch(|| {
            pool.scope(|s| {
                let bomb = DropBomb("scoped closure");
                s.spawn(move || {
                    let _keep = &bomb;
                });
            })
        });
        if let Err(m) = &r {
            assert!(m.contains("EXPECTED"), "{m}");
        }
        assert_pool_healthy(&pool, "after a scoped closure's drop panicked");

        // A closed pool: scoped jobs run on the caller.
        pool.close();
        let r = catch(|| {
            pool.scope(|s| {
                s.spawn(|| panic!("EXPECTED scoped on closed pool"));
                let bomb = DropBomb("scoped closure on closed pool");
                s.spawn(move || {
                    let _keep = &bomb;
                });
                s.spawn(|| {
                    done.fetch_add(1, Ordering::SeqCst);
                });
            })
        });
        assert!(r.is_err(), "the scoped panic on a closed pool was lost");
        assert_eq!(done.load(Ordering::SeqCst), 11);
        pool.join();
    });
}

#[test]
fn batches_function_panics_after_earlier_results() {
    child::run("batches_function_panics_after_earlier_results", 30, || {
        let pool = one_worker();
        let mut got = Vec::new();
        let r = catch(|| {
            for b in pool
                .imap(
                    |x: u32| {
                        if x == 777 {
                            panic!("EXPECTED f at 777");
                        }
                        x
                    },
                    0..5000u32,
                )
                .chunksize(100)
                .batches()
            {
                got.extend(b);
            }
        });
        let m = r.expect_err("the panic must be re-raised");
        assert!(m.contains("EXPECTED f at 777"), "{m}");
        assert_eq!(
            got,
            (0..777).collect::<Vec<u32>>(),
            "results before the panic"
        );
        assert_pool_healthy(&pool, "after batches re-raised");
    });
}

struct PanickyIter {
    i: u32,
    at: u32,
}

impl Iterator for PanickyIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.i == self.at {
            panic!("EXPECTED input iterator at {}", self.at);
        }
        self.i += 1;
        Some(self.i - 1)
    }
}

struct IterWithBomb {
    inner: std::ops::Range<u32>,
    _bomb: DropBomb,
}

impl Iterator for IterWithBomb {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        self.inner.next()
    }
}

#[test]
fn new_paths_input_iterator_panics() {
    child::run("new_paths_input_iterator_panics", 40, || {
        let pool = one_worker();
        // batches
        let mut got = Vec::new();
        let r = catch(|| {
            for b in pool
                .imap(|x: u32| x, PanickyIter { i: 0, at: 300 })
                .chunksize(7)
                .batches()
            {
                got.extend(b);
            }
        });
        assert!(r.unwrap_err().contains("EXPECTED input iterator"));
        assert_eq!(got, (0..300).collect::<Vec<u32>>());
        // for_each
        let mut n = 0u32;
        let r = catch(|| {
            pool.imap(|x: u32| x, PanickyIter { i: 0, at: 300 })
                .for_each(|x| {
                    assert_eq!(x, n);
                    n += 1;
                })
        });
        assert!(r.unwrap_err().contains("EXPECTED input iterator"));
        assert_eq!(n, 300);
        // into_stream
        let r = catch(|| {
            let s = pool
                .imap_unordered(|x: u32| x, PanickyIter { i: 0, at: 50 })
                .into_stream();
            futures::executor::block_on(s.collect::<Vec<u32>>())
        });
        assert!(r.unwrap_err().contains("EXPECTED input iterator"));
        assert_pool_healthy(&pool, "after input iterators panicked");
        // The iterator's Drop panics, consumed in full and abandoned.
        for take in [usize::MAX, 3] {
            let r = catch(|| {
                pool.imap(
                    |x: u32| x,
                    IterWithBomb {
                        inner: 0..1000,
                        _bomb: DropBomb("imap input iterator"),
                    },
                )
                .chunksize(10)
                .batches()
                .take(take)
                .count()
            });
            if let Err(m) = &r {
                assert!(m.contains("EXPECTED"), "{m}");
            }
            assert_pool_healthy(&pool, "after an input iterator's drop panicked");
        }
    });
}

#[test]
fn new_paths_input_and_result_drops_panic() {
    child::run("new_paths_input_and_result_drops_panic", 60, || {
        static T: Tracker = Tracker::new();
        let pool = one_worker();
        // Input items' Drop panics (f consumes them: dropped inside f).
        for mode in 0..3 {
            T.reset();
            let r = catch(|| match mode {
                0 => pool
                    .imap(|x: Item| x.seen(), items_with_bombs(&T, 200))
                    .chunksize(30)
                    .batches()
                    .map(|b| b.len())
                    .sum::<usize>(),
                1 => {
                    let mut n = 0;
                    pool.imap(|x: Item| x.seen(), items_with_bombs(&T, 200))
                        .for_each(|_| n += 1);
                    n
                }
                _ => futures::executor::block_on(
                    pool.imap(|x: Item| x.seen(), items_with_bombs(&T, 200))
                        .into_stream()
                        .count(),
                ),
            });
            if let Err(m) = &r {
                assert!(m.contains("EXPECTED"), "mode {mode}: {m}");
            }
            assert_pool_healthy(&pool, &format!("mode {mode}: after input drops panicked"));
            T.assert_no_call_twice(&format!("mode {mode}"));
            T.assert_all_dropped_once(200, &format!("mode {mode}: input items"));
        }
        // Results' Drop panics: batches, stream and imap abandoned midway.
        // The results are made by `f`: no bomb is left in an unread input.
        let mk = |i: usize| if i % 100 == 50 { T.bomb(i) } else { T.item(i) };
        for mode in 0..3 {
            T.reset();
            let r = catch(|| match mode {
                0 => {
                    let mut b = pool.imap(mk, 0..1000usize).chunksize(40).batches();
                    let first = b.next();
                    drop(first);
                    drop(b);
                }
                1 => {
                    let mut s = pool
                        .imap_unordered(mk, 0..1000usize)
                        .chunksize(40)
                        .into_stream();
                    let first = futures::executor::block_on(s.next());
                    drop(first);
                    drop(s);
                }
                _ => {
                    // for_each that drops each result itself.
                    pool.imap(mk, 0..1000usize).chunksize(40).for_each(drop);
                }
            });
            if let Err(m) = &r {
                assert!(m.contains("EXPECTED"), "mode {mode}: {m}");
            }
            assert_pool_healthy(&pool, &format!("mode {mode}: after result drops panicked"));
            let d = T.drops();
            let twice: Vec<usize> = (0..d.len()).filter(|&i| d[i] > 1).collect();
            assert!(twice.is_empty(), "mode {mode}: dropped twice {twice:?}");
            // Results never made (the imap was dropped) are not counted.
            assert_eq!(T.live(), 0, "mode {mode}: results leaked");
        }
    });
}

#[test]
fn for_each_consumer_closure_panics() {
    child::run("for_each_consumer_closure_panics", 30, || {
        static T: Tracker = Tracker::new();
        let pool = one_worker();
        let r = catch(|| {
            pool.imap(|x: Item| x, T.items(2000))
                .chunksize(64)
                .for_each(|x| {
                    if x.id == 100 {
                        panic!("EXPECTED consumer at 100");
                    }
                })
        });
        assert!(r.unwrap_err().contains("EXPECTED consumer"));
        assert_pool_healthy(&pool, "after a for_each consumer panicked");
        T.assert_all_dropped_once(2000, "for_each consumer panic");
        // fold whose closure panics from a Drop it runs, mid-chunk.
        let r = catch(|| {
            pool.imap(|x: u32| x, 0..1000u32)
                .chunksize(64)
                .fold(Vec::new(), |mut acc, x| {
                    if x == 500 {
                        drop(DropBomb("value dropped in fold's closure"));
                    }
                    acc.push(x);
                    acc
                })
                .len()
        });
        assert!(r.is_err());
        assert_pool_healthy(&pool, "after a fold closure panicked");
    });
}

#[test]
fn callbacks_on_scope_handles_panic() {
    child::run("callbacks_on_scope_handles_panic", 30, || {
        let pool = one_worker();
        let data = [1u32, 2, 3];
        let r = catch(|| {
            pool.scope(|s| {
                let h = s
                    .apply_async(|| data.iter().sum::<u32>())
                    .on_success(|_| panic!("EXPECTED scoped on_success"));
                let r1 = h.get();
                let bomb = DropBomb("scoped on_error unrun");
                let h2 = s.map_async(|x: &u32| x + 1, &data).on_error(move |_| {
                    let _keep = &bomb;
                });
                (r1, h2.get())
            })
        });
        match r {
            Ok((a, b)) => {
                assert_eq!(a, Ok(6));
                assert_eq!(b, Ok(vec![2, 3, 4]));
            }
            Err(m) => assert!(m.contains("EXPECTED"), "{m}"),
        }
        assert_pool_healthy(&pool, "after scoped callbacks panicked");
    });
}

// ---------------------------------------------------------------------------
// 4. Nesting on a 1-worker pool
// ---------------------------------------------------------------------------

#[test]
fn nested_spawn_inside_spawn_on_one_worker() {
    guard(20, || {
        let pool = one_worker();
        let (tx, rx) = mpsc::channel();
        let p = Arc::clone(&pool);
        pool.spawn(move || {
            for i in 0..100 {
                let tx = tx.clone();
                let p2 = Arc::clone(&p);
                p.spawn(move || {
                    let tx2 = tx.clone();
                    p2.spawn(move || tx2.send(i).unwrap());
                });
            }
        });
        let mut got: Vec<i32> = (0..100)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("nested spawn lost")
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    });
}

#[test]
fn nested_batches_inside_a_task_on_one_worker() {
    guard(30, || {
        let pool = one_worker();
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || {
            p.imap(|x: u64| x + 1, 0..10_000u64)
                .chunksize(100)
                .batches()
                .map(|b| b.iter().sum::<u64>())
                .sum::<u64>()
        });
        assert_eq!(h.get(), Ok((1..=10_000u64).sum()));
        // Inside a spawned job, with for_each and into_stream.
        let (tx, rx) = mpsc::channel();
        let p = Arc::clone(&pool);
        pool.spawn(move || {
            let mut s = 0u64;
            p.imap_unordered(|x: u64| x, 0..5000u64)
                .buffer(1)
                .for_each(|x| s += x);
            let s2: u64 = futures::executor::block_on(
                p.imap(|x: u64| x, 0..5000u64)
                    .into_stream()
                    .fold(0, |a, x| async move { a + x }),
            );
            tx.send((s, s2)).unwrap();
        });
        let want = (0..5000u64).sum::<u64>();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(20)).unwrap(),
            (want, want)
        );
    });
}

#[test]
fn nested_apply_inside_scope_spawn_on_one_worker() {
    guard(20, || {
        let pool = one_worker();
        let total = AtomicUsize::new(0);
        pool.scope(|s| {
            for i in 0..50 {
                let pool = &pool;
                let total = &total;
                s.spawn(move || {
                    let v = pool.apply(|| pool.apply(|| i * 2));
                    total.fetch_add(v, Ordering::SeqCst);
                    // A scope inside the scoped job.
                    pool.scope(|s2| {
                        s2.spawn(|| {
                            total.fetch_add(1, Ordering::SeqCst);
                        })
                    });
                });
            }
        });
        assert_eq!(
            total.into_inner(),
            (0..50).map(|i| i * 2 + 1).sum::<usize>()
        );
    });
}

#[test]
fn nested_for_each_over_imap_that_calls_apply_on_one_worker() {
    guard(30, || {
        let pool = one_worker();
        let p = Arc::clone(&pool);
        let mut sum = 0u64;
        pool.imap(move |x: u64| p.apply(|| x * 2), 0..2000u64)
            .chunksize(13)
            .for_each(|x| sum += x);
        assert_eq!(sum, (0..2000u64).map(|x| x * 2).sum());
        // The same inside a task, batches and an inner map.
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || {
            let p2 = Arc::clone(&p);
            p.imap(
                move |x: u64| p2.map(|y: u64| y + x, 0..10u64).len() as u64,
                0..500u64,
            )
            .batches()
            .flatten()
            .sum::<u64>()
        });
        assert_eq!(h.get(), Ok(5000));
    });
}

#[test]
fn nested_terminate_from_inside_a_spawned_job() {
    guard(20, || {
        let pool = one_worker();
        let p = Arc::clone(&pool);
        let (tx, rx) = mpsc::channel();
        pool.spawn(move || {
            let mut it = p.imap(|x: u32| x, 0..100_000u32).chunksize(10).batches();
            let first = it.next();
            p.terminate();
            let rest = catch(move || it.count());
            tx.send((first.map(|b| b.len()), rest.is_err())).unwrap();
        });
        let (first, _rest_err) = rx.recv_timeout(Duration::from_secs(10)).expect("hang");
        assert!(first.is_some());
        pool.join();
        assert_eq!(pool.apply_async(|| 1).get(), Err(TaskError::NotRunning));
    });
}

// ---------------------------------------------------------------------------
// 5. Leaks and the last handle dropped in odd places
// ---------------------------------------------------------------------------

#[test]
fn forgotten_scoped_imap_batches_and_stream_do_not_hang_the_scope() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let data: Vec<u32> = (0..100_000).collect();
        pool.scope(|s| {
            let it = s.imap(|x: &u32| *x + 1, &data).buffer(8);
            std::mem::forget(it);
        });
        pool.scope(|s| {
            let mut b = s.imap(|x: &u32| *x, &data).chunksize(usize::MAX).batches();
            assert!(b.next().is_some());
            std::mem::forget(b);
        });
        pool.scope(|s| {
            let mut st = s.imap_unordered(|x: &u32| *x, &data).into_stream();
            assert!(futures::executor::block_on(st.next()).is_some());
            std::mem::forget(st);
        });
        // The pool still works, and data was never touched after the scope.
        assert_eq!(pool.apply(|| 3), 3);
        let s = pool.stats();
        assert_eq!(s.queued, 0, "{s:?}");
    });
}

#[test]
fn last_pool_handle_dropped_inside_a_spawned_job() {
    guard(30, || {
        let done = Arc::new(AtomicUsize::new(0));
        let pool = one_worker();
        for _ in 0..20 {
            let d = Arc::clone(&done);
            pool.spawn(move || {
                d.fetch_add(1, Ordering::SeqCst);
            });
        }
        let p = Arc::clone(&pool);
        let d = Arc::clone(&done);
        pool.spawn(move || {
            // Nested work first, then this job holds the last handle.
            p.spawn(move || {
                d.fetch_add(1, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(20));
            drop(p);
        });
        drop(pool);
        // Dropping the last handle on a worker closes the pool; queued
        // work still runs.
        let start = std::time::Instant::now();
        while done.load(Ordering::SeqCst) < 21 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "jobs lost when the last handle was dropped on a worker: {}",
                done.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    });
}

#[test]
fn static_imap_outlives_its_dropped_pool() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let it = pool.imap(|x: u64| x * 2, 0..10_000u64).chunksize(7);
        let b = pool.imap(|x: u64| x, 0..10_000u64).batches();
        let st = pool.imap_unordered(|x: u64| x, 0..10_000u64).into_stream();
        drop(pool);
        // The pool was closed and joined: the iterators must finish or fail
        // clearly, never hang.
        let r = catch(move || it.sum::<u64>());
        if let Ok(v) = r {
            assert_eq!(v, (0..10_000u64).map(|x| x * 2).sum());
        } else {
            let m = r.unwrap_err();
            assert!(m.contains("not running") || m.contains("cancel"), "{m}");
        }
        let r = catch(move || b.flatten().count());
        if let Ok(n) = r {
            assert_eq!(n, 10_000);
        }
        let r = catch(move || futures::executor::block_on(st.count()));
        if let Ok(n) = r {
            assert_eq!(n, 10_000);
        }
    });
}

#[test]
fn zero_sized_results_through_batches_and_stream() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let b: Vec<Vec<()>> = pool
            .imap(|_x: u32| (), 0..300_000u32)
            .chunksize(usize::MAX)
            .batches()
            .collect();
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 300_000);
        assert!(b.iter().all(|v| !v.is_empty() && v.len() <= 65_536));
        let n = futures::executor::block_on(
            pool.imap_unordered(|_x: u32| (), 0..100_000u32)
                .buffer(1)
                .into_stream()
                .count(),
        );
        assert_eq!(n, 100_000);
    });
}

#[test]
fn many_scoped_spawns_on_one_worker() {
    guard(60, || {
        let pool = one_worker();
        let n = AtomicUsize::new(0);
        pool.scope(|s| {
            for _ in 0..100_000 {
                s.spawn(|| {
                    n.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(n.into_inner(), 100_000);
        let s = pool.stats();
        assert_eq!((s.running, s.queued), (0, 0), "{s:?}");
    });
}

#[test]
fn stream_abandoned_mid_wait_in_a_dropped_runtime() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        for _ in 0..20 {
            let mut s = pool
                .imap(
                    |x: u64| {
                        std::thread::sleep(Duration::from_millis(5));
                        x
                    },
                    0..100u64,
                )
                .chunksize(1)
                .into_stream();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let r = rt.block_on(async {
                tokio::time::timeout(Duration::from_micros(500), s.next()).await
            });
            drop(rt);
            // The waker registered by that poll belongs to a dead runtime.
            assert!(r.is_err() || r == Ok(Some(0)));
            // Keep polling elsewhere: must continue where it stopped.
            let rest: Vec<u64> = futures::executor::block_on(s.collect());
            let first = 100 - rest.len() as u64;
            assert_eq!(rest, (first..100).collect::<Vec<_>>());
        }
        pool.terminate();
        pool.join();
    });
}
