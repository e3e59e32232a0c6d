//! Waiting from inside a worker: timeouts are honoured, helping with queued
//! work never runs something that waits on the waiter, and deep or long
//! chains of nested waits complete (deep cases run in a child process, since
//! running every awaited task inline on one stack can overflow it).
#[path = "common/child.rs"]
mod child;
mod common;

use common::{guard, Gate};
use parpool::{TaskError, ThreadPool};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn get_timeout_inside_a_worker_returns_on_time() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        // Keep the second worker busy, so what the task waits on stays queued.
        let (release, blocked) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        let blocker = pool.apply_async(move || {
            started_tx.send(()).unwrap();
            blocked.recv_timeout(Duration::from_secs(10)).is_ok()
        });
        started.recv().unwrap();
        let p = Arc::clone(&pool);
        let waiter = pool.apply_async(move || {
            // Both jobs wait at a gate opened only after the timed wait: run
            // inline by it, either makes it take the gate's 10 s.
            let gate = Gate::new();
            // An unrelated job, queued first.
            let g = gate.clone();
            let unrelated = p.apply_async(move || {
                g.wait();
            });
            // The task waited on cannot finish before the wait ends either.
            let g = gate.clone();
            let mut h = p.apply_async(move || {
                g.wait();
                1
            });
            let t0 = Instant::now();
            let r = h.get_timeout(Duration::from_millis(10));
            let took = t0.elapsed();
            gate.open();
            (r, took, h, unrelated)
        });
        let (r, took, h, unrelated) = waiter.get().unwrap();
        // (Gone if the waiter overstayed 10 s: the checks below say why.)
        let _ = release.send(());
        assert_eq!(
            r,
            Err(TaskError::Timeout),
            "get_timeout(10 ms) inside a worker"
        );
        // Normal: about 10 ms; helping with a gated job: 10 s.
        assert!(
            took < Duration::from_secs(5),
            "get_timeout(10 ms) inside a worker took {took:?}"
        );
        assert_eq!(blocker.get(), Ok(true));
        assert_eq!(h.get(), Ok(1));
        assert_eq!(unrelated.get(), Ok(()));
    });
}

#[test]
fn wait_timeout_and_imap_next_timeout_inside_a_worker_return_on_time() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        let (release, blocked) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        let blocker = pool.apply_async(move || {
            started_tx.send(()).unwrap();
            blocked.recv_timeout(Duration::from_secs(10)).is_ok()
        });
        started.recv().unwrap();
        let p = Arc::clone(&pool);
        let waiter = pool.apply_async(move || {
            // Every job waits at a gate opened only after both timed waits:
            // run inline by one, it makes that wait take the gate's 10 s.
            let gate = Gate::new();
            let g = gate.clone();
            let unrelated = p.apply_async(move || {
                g.wait();
            });
            let g = gate.clone();
            let h = p.apply_async(move || {
                g.wait();
            });
            let t0 = Instant::now();
            let done = h.wait_timeout(Duration::from_millis(10));
            let took_wait = t0.elapsed();
            let g = gate.clone();
            let mut it = p.imap(
                move |_: u64| {
                    g.wait();
                },
                [1u64],
            );
            let t0 = Instant::now();
            let r = it.next_timeout(Duration::from_millis(10));
            let took_next = t0.elapsed();
            gate.open();
            drop(it);
            (done, took_wait, r.is_err(), took_next, h, unrelated)
        });
        let (done, took_wait, timed_out, took_next, h, unrelated) = waiter.get().unwrap();
        let _ = release.send(());
        assert!(!done, "wait_timeout(10 ms) reported a gated task finished");
        // Normal: about 10 ms each; helping with a gated job: 10 s.
        assert!(
            took_wait < Duration::from_secs(5),
            "wait_timeout(10 ms) took {took_wait:?}"
        );
        assert!(timed_out, "imap next_timeout(10 ms) did not time out");
        assert!(
            took_next < Duration::from_secs(5),
            "imap next_timeout(10 ms) took {took_next:?}"
        );
        assert_eq!(blocker.get(), Ok(true));
        let _ = (h.get(), unrelated.get());
    });
}

#[test]
fn helping_never_runs_a_task_that_waits_for_the_waiter() {
    // 1 worker. A queues B, then X, and waits for X. B waits for a signal A
    // sends only after its get() returns. Running B inline inside A's wait
    // deadlocks (here: B gives up after 3 s); correct behaviour finishes fast.
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let t0 = Instant::now();
        let a = pool.apply_async(move || {
            let (signal, wait_signal) = mpsc::channel::<()>();
            let b = p.apply_async(move || wait_signal.recv_timeout(Duration::from_secs(3)).is_ok());
            let x = p.apply_async(|| 42);
            let v = x.get();
            let _ = signal.send(());
            (v, b)
        });
        let (v, b) = a.get().unwrap();
        assert_eq!(v, Ok(42));
        let b_got_signal = b.get().unwrap();
        let took = t0.elapsed();
        assert!(
            b_got_signal,
            "B never got A's signal: it ran inside A's wait (took {took:?})"
        );
        assert!(took < Duration::from_secs(2), "took {took:?}");
    });
}

#[test]
fn helping_inside_a_scope_never_runs_a_task_that_waits_for_the_waiter() {
    // The same shape, through a scope inside the task.
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let t0 = Instant::now();
        let a = pool.apply_async(move || {
            let (signal, wait_signal) = mpsc::channel::<()>();
            let b = p.apply_async(move || wait_signal.recv_timeout(Duration::from_secs(3)).is_ok());
            let v = p.scope(|s| s.apply_async(|| 42).get());
            let _ = signal.send(());
            (v, b)
        });
        let (v, b) = a.get().unwrap();
        assert_eq!(v, Ok(42));
        let took = t0.elapsed();
        assert!(
            b.get().unwrap(),
            "B never got A's signal: it ran inside A's wait (took {took:?})"
        );
        assert!(took < Duration::from_secs(2), "took {took:?}");
    });
}

#[test]
fn five_thousand_queued_tasks_each_waiting_for_a_subtask() {
    child::run(
        "five_thousand_queued_tasks_each_waiting_for_a_subtask",
        60,
        || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let handles: Vec<_> = (0..5000u64)
                .map(|i| {
                    let p = Arc::clone(&pool);
                    pool.apply_async(move || p.apply_async(move || i * 2).get().unwrap() + 1)
                })
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                assert_eq!(h.get(), Ok(i as u64 * 2 + 1));
            }
        },
    );
}

fn nest(pool: Arc<ThreadPool>, k: u32, depth: u32) -> u32 {
    if k == depth {
        return k;
    }
    let p = Arc::clone(&pool);
    pool.apply_async(move || nest(p, k + 1, depth))
        .get()
        .unwrap()
}

#[test]
fn twenty_thousand_nested_waits_on_one_worker() {
    child::run("twenty_thousand_nested_waits_on_one_worker", 60, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || nest(p, 1, 20_000));
        assert_eq!(h.get(), Ok(20_000));
    });
}

/// An input iterator that calls back into the pool for every item.
struct Reentrant {
    pool: Arc<ThreadPool>,
    i: u32,
    n: u32,
    via_map: bool,
}

impl Iterator for Reentrant {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.i == self.n {
            return None;
        }
        let i = self.i;
        self.i += 1;
        Some(if self.via_map {
            self.pool.map(|x: u32| x + i, 0..4u32).iter().sum::<u32>() // 4i + 6
        } else {
            let v = self.pool.apply(|| i * 4);
            v + 6
        })
    }
}

#[test]
fn imap_input_iterator_that_uses_the_same_pool() {
    guard(60, || {
        for workers in [1, 2] {
            for via_map in [false, true] {
                for chunk in [None, Some(1), Some(5)] {
                    for ordered in [true, false] {
                        let pool = Arc::new(ThreadPool::with_workers(workers));
                        let input = Reentrant {
                            pool: Arc::clone(&pool),
                            i: 0,
                            n: 50,
                            via_map,
                        };
                        let p = Arc::clone(&pool);
                        let mut out: Vec<u32> = common::guard(10, move || {
                            if ordered {
                                let it = p.imap(|x: u32| x + 1, input);
                                match chunk {
                                    Some(c) => it.chunksize(c).collect(),
                                    None => it.collect(),
                                }
                            } else {
                                let it = p.imap_unordered(|x: u32| x + 1, input);
                                match chunk {
                                    Some(c) => it.chunksize(c).collect(),
                                    None => it.collect(),
                                }
                            }
                        });
                        if !ordered {
                            out.sort_unstable();
                        }
                        assert_eq!(
                            out,
                            (0..50).map(|i| 4 * i + 7).collect::<Vec<_>>(),
                            "workers {workers} via_map {via_map} chunk {chunk:?} ordered {ordered}"
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn imap_inside_a_task_whose_input_uses_the_same_pool() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || {
            let input = Reentrant {
                pool: Arc::clone(&p),
                i: 0,
                n: 20,
                via_map: true,
            };
            p.imap(|x: u32| x, input).sum::<u32>()
        });
        assert_eq!(h.get(), Ok((0..20).map(|i| 4 * i + 6).sum()));
    });
}

#[test]
fn nested_map_scope_and_imap_inside_tasks_on_one_worker() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || {
            let a: u32 = p.map(|x: u32| x * 2, 0..100u32).iter().sum();
            let data = vec![1u32, 2, 3];
            let b: u32 = p.scope(|s| {
                let h = s.apply_async(|| data.iter().sum::<u32>());
                let m: u32 = s.imap(|x: &u32| x * 10, &data).sum();
                h.get().unwrap() + m
            });
            let c: u32 = p.imap(|x: u32| x + 1, 0..10u32).chunksize(3).sum();
            let d: u32 = p.imap_unordered(|x: u32| x + 1, 0..10u32).sum();
            let e = p.map_async(|x: u32| x, vec![7u32]).get().unwrap()[0];
            // A nested apply_async waited with a timeout.
            let f = p
                .apply_async(|| 9)
                .get_timeout(Duration::from_secs(5))
                .unwrap();
            a + b + c + d + e + f
        });
        assert_eq!(h.get(), Ok(9900 + 66 + 55 + 55 + 7 + 9));
    });
}

#[test]
fn many_tasks_each_running_a_map_on_one_worker() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let handles: Vec<_> = (0..200u32)
            .map(|i| {
                let p = Arc::clone(&pool);
                pool.apply_async(move || p.map(|x: u32| x + i, 0..10u32).iter().sum::<u32>())
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.get(), Ok(45 + 10 * i as u32));
        }
    });
}

#[test]
fn waiting_in_a_task_for_a_task_queued_later_by_the_caller() {
    // Two waits crossing: A (on the only worker) waits for C, which the
    // caller submits only after A has started; meanwhile unrelated work is
    // queued ahead of C.
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let slot: Arc<Mutex<Option<parpool::AsyncResult<u32>>>> = Arc::new(Mutex::new(None));
        let (started_tx, started) = mpsc::channel();
        let s2 = Arc::clone(&slot);
        let a = pool.apply_async(move || {
            started_tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let h = loop {
                if let Some(h) = s2.lock().unwrap().take() {
                    break h;
                }
                assert!(Instant::now() < deadline, "C never arrived");
                std::thread::sleep(Duration::from_millis(1));
            };
            h.get().unwrap() + 1
        });
        started.recv().unwrap();
        let others: Vec<_> = (0..50u32).map(|i| pool.apply_async(move || i)).collect();
        *slot.lock().unwrap() = Some(pool.apply_async(|| 41));
        assert_eq!(a.get(), Ok(42));
        for (i, h) in others.into_iter().enumerate() {
            assert_eq!(h.get(), Ok(i as u32));
        }
    });
}

/// Review finding: an imap whose input iterator does a nested wait that
/// cannot be inlined (a nested imap) hung: a spare popped the next credit
/// and blocked on the input's lock, uncounted. Readers now wait for the
/// input through the pool's waiting loop.
#[test]
fn imap_input_iterator_running_a_nested_imap_on_the_same_pool() {
    for workers in [1, 2, 3] {
        guard(60, move || {
            let pool = Arc::new(ThreadPool::with_workers(workers));
            let p = Arc::clone(&pool);
            let total: u64 = pool.scope(|s| {
                s.imap(
                    |x: u64| x * 2,
                    (0..40u64).map(|i| i + p.imap(|x: u64| x + 1, 0..1u64).next().unwrap()),
                )
                .sum()
            });
            assert_eq!(total, (0..40u64).map(|i| (i + 1) * 2).sum::<u64>());
        });
    }
}

/// Review finding: a closed pool's own worker queues a job and waits for it
/// (a wait that cannot inline); another worker had already decided to exit
/// and still counted as live, so no spare was started and the job stranded.
#[test]
fn a_closed_pools_worker_waiting_for_its_own_submission_never_strands_it() {
    for max_tasks in [0usize, 1, 2] {
        guard(60, move || {
            let mut b = ThreadPool::builder().workers(1);
            if max_tasks > 0 {
                b = b.max_tasks_per_worker(max_tasks);
            }
            let pool = Arc::new(b.build().unwrap());
            let p = Arc::clone(&pool);
            let h = pool.apply_async(move || {
                let mut sum = 0u64;
                for _ in 0..2000 {
                    let h = parpool::as_completed(vec![p.apply_async(|| 1u64)])
                        .next()
                        .unwrap();
                    sum += h.get().unwrap();
                }
                sum
            });
            pool.close();
            assert_eq!(h.get(), Ok(2000));
        });
    }
}

/// Review finding: a spare whose initializer panics left its blocked worker
/// without a stand-in, forever. The waiter now runs queued work itself.
#[test]
fn a_spare_that_cannot_start_does_not_strand_the_waiter() {
    guard(60, || {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        common::quiet_panics();
        let pool = Arc::new(
            ThreadPool::builder()
                .workers(1)
                .initializer(|| {
                    if STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1 {
                        panic!("EXPECTED: no more threads");
                    }
                })
                .build()
                .unwrap(),
        );
        let p = Arc::clone(&pool);
        let sum = pool
            .apply_async(move || p.scope(|s| s.imap(|x: u32| x + 1, 0..4u32).sum::<u32>()))
            .get();
        assert_eq!(sum, Ok(10));
    });
}

/// Review finding: a chain of 4200 nested timed waits (timed waits never
/// inline, so every level blocks a thread) outgrew the spare limit and hung.
#[test]
fn a_deep_chain_of_timed_waits_completes() {
    child::run("a_deep_chain_of_timed_waits_completes", 120, || {
        fn chain(pool: Arc<ThreadPool>, depth: usize) -> usize {
            if depth == 0 {
                return 0;
            }
            let p = Arc::clone(&pool);
            let mut h = pool.apply_async(move || chain(p, depth - 1));
            h.get_timeout(Duration::from_secs(3600)).unwrap() + 1
        }
        let pool = Arc::new(
            ThreadPool::builder()
                .workers(1)
                .stack_size(128 << 10)
                .build()
                .unwrap(),
        );
        let p = Arc::clone(&pool);
        assert_eq!(pool.apply_async(move || chain(p, 4200)).get(), Ok(4200));
    });
}

/// Second review: no spare thread can start (the initializer panics for
/// every thread after the first) and untimed waits nest deeper than a thread
/// may run jobs inline. Nothing can ever run the queued work, so the wait
/// fails with a clear message instead of hanging.
#[test]
fn a_wait_that_can_never_progress_fails_clearly_instead_of_hanging() {
    child::run(
        "a_wait_that_can_never_progress_fails_clearly_instead_of_hanging",
        60,
        || {
            common::quiet_parpool_diagnostics();
            static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            fn rec(p: Arc<ThreadPool>, d: u32) -> u32 {
                if d == 0 {
                    return 0;
                }
                let q = Arc::clone(&p);
                match p.apply_async(move || rec(q, d - 1)).get() {
                    Ok(v) => v + 1,
                    // Pass the reason up with a message of constant size.
                    Err(e) if e.to_string().contains("cannot make progress") => {
                        panic!("cannot make progress (from a nested wait)")
                    }
                    Err(e) => panic!("unexpected: {e}"),
                }
            }
            child::hide_expected_panics();
            for (depth, stack) in [(40u32, None), (10, Some(256usize << 10))] {
                STARTED.store(0, std::sync::atomic::Ordering::SeqCst);
                let mut b = ThreadPool::builder().workers(1).initializer(|| {
                    if STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1 {
                        panic!("EXPECTED: no more threads");
                    }
                });
                if let Some(s) = stack {
                    b = b.stack_size(s);
                }
                let pool = Arc::new(b.build().unwrap());
                let p = Arc::clone(&pool);
                let r = pool.apply_async(move || rec(p, depth)).get();
                let msg = r
                    .expect_err("cannot succeed without a second thread")
                    .to_string();
                assert!(msg.contains("cannot make progress"), "{msg}");
                pool.terminate();
            }
        },
    );
}
