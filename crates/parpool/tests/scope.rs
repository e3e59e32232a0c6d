//! Scoped work: tasks that borrow from the caller's stack, how their panics
//! surface, and why `scope` must wait for every task even when a handle is
//! leaked with `mem::forget` or the body panics.

mod common;

use common::{guard, panic_message};
use parpool::{TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[test]
fn scope_tasks_borrow_closures_and_inputs_from_the_stack() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let words: Vec<String> = ["alpha", "beta", "gamma", "delta"]
            .iter()
            .map(|w| w.to_string())
            .collect();
        let factor = 10;
        let calls = AtomicUsize::new(0);
        let log = Mutex::new(Vec::new());

        let (joined, lengths, upper, scaled) = pool.scope(|s| {
            let joined = s.apply_async(|| {
                calls.fetch_add(1, Ordering::Relaxed);
                words.join("+")
            });
            let lengths = s.map_async(
                |w: &String| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    w.len() * factor
                },
                &words,
            );
            let upper: Vec<String> = s
                .imap(
                    |w: &String| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        log.lock().unwrap().push(w.as_str());
                        w.to_uppercase()
                    },
                    &words,
                )
                .collect();
            let mut scaled: Vec<usize> = s
                .imap_unordered(|w: &String| w.len() + factor, words.iter())
                .collect();
            scaled.sort_unstable();
            (joined.get(), lengths.get(), upper, scaled)
        });

        assert_eq!(joined, Ok("alpha+beta+gamma+delta".to_string()));
        assert_eq!(lengths, Ok(vec![50, 40, 50, 50]));
        assert_eq!(upper, ["ALPHA", "BETA", "GAMMA", "DELTA"]);
        assert_eq!(scaled, [14, 15, 15, 15]);
        assert_eq!(calls.load(Ordering::Relaxed), 1 + 4 + 4);
        let mut seen = log.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, ["alpha", "beta", "delta", "gamma"]);
    });
}

#[test]
fn scope_tasks_may_mutate_borrowed_state() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let mut rows = vec![vec![1u32, 2], vec![3], vec![4, 5, 6]];
        let totals = Mutex::new(vec![0u32; rows.len()]);
        pool.scope(|s| {
            let handles: Vec<_> = rows
                .iter_mut()
                .enumerate()
                .map(|(i, row)| {
                    let totals = &totals;
                    s.apply_async(move || {
                        row.push(100);
                        totals.lock().unwrap()[i] = row.iter().sum();
                    })
                })
                .collect();
            for h in handles {
                h.get().unwrap();
            }
        });
        assert_eq!(rows, [vec![1, 2, 100], vec![3, 100], vec![4, 5, 6, 100]]);
        assert_eq!(totals.into_inner().unwrap(), [103, 103, 115]);
    });
}

#[test]
fn consumed_task_panic_is_returned_by_get_and_not_reraised() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let data = [1, 2, 3];
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                let bad = s.apply_async(|| -> i32 {
                    if data.len() == 3 {
                        panic!("scoped boom");
                    }
                    0
                });
                let err = bad.get().unwrap_err();
                let good = s.apply_async(|| data.iter().sum::<i32>());
                (err, good.get())
            })
        }));
        let (err, good) = outcome.expect("a consumed panic must not re-raise at scope end");
        assert!(matches!(&err, TaskError::Panicked(m) if m.contains("scoped boom")));
        assert_eq!(good, Ok(6));
    });
}

#[test]
fn consumed_map_async_panic_is_returned_by_get() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let data: Vec<u32> = (0..50).collect();
        let err = pool.scope(|s| {
            s.map_async(
                |x: &u32| {
                    if *x == 17 {
                        panic!("bad item {x}");
                    }
                    x * 2
                },
                &data,
            )
            .get()
        });
        assert!(
            matches!(&err, Err(TaskError::Panicked(m)) if m.contains("bad item 17")),
            "{err:?}"
        );
    });
}

#[test]
fn unconsumed_task_panic_reraises_when_scope_returns() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let finished = AtomicBool::new(false);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                // Dropped at once: nobody will consume this panic.
                drop(s.apply_async(|| -> u8 { panic!("nobody looked") }));
                // The scope must still wait for this one before re-raising.
                let _sibling = s.apply_async(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    finished.store(true, Ordering::SeqCst);
                });
                "body finished"
            })
        }));
        let payload = outcome.expect_err("an unconsumed task panic must re-raise at scope end");
        assert!(panic_message(payload.as_ref()).contains("nobody looked"));
        assert!(
            finished.load(Ordering::SeqCst),
            "scope returned before its tasks finished"
        );
    });
}

#[test]
fn unconsumed_panic_of_a_kept_handle_reraises_when_scope_returns() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                let h = s.apply_async(|| -> u8 { panic!("kept but ignored") });
                // Waiting is not consuming: the panic is still unobserved.
                h.wait();
                assert!(h.ready());
            })
        }));
        let payload = outcome.expect_err("an unconsumed task panic must re-raise at scope end");
        assert!(panic_message(payload.as_ref()).contains("kept but ignored"));
    });
}

#[test]
fn unconsumed_map_async_panic_reraises_when_scope_returns() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let data: Vec<u32> = (0..20).collect();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                drop(s.map_async(
                    |x: &u32| {
                        if *x == 5 {
                            panic!("map item {x} failed");
                        }
                    },
                    &data,
                ));
            })
        }));
        let payload = outcome.expect_err("an unconsumed map_async panic must re-raise");
        assert!(panic_message(payload.as_ref()).contains("map item 5 failed"));
    });
}

#[test]
fn panicking_body_still_waits_for_its_tasks() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let flag = AtomicBool::new(false);
        let started = AtomicUsize::new(0);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                let _slow = s.apply_async(|| {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    flag.store(true, Ordering::SeqCst);
                });
                panic!("body gave up");
            })
        }));
        let payload = outcome.expect_err("the body's panic must propagate");
        assert_eq!(panic_message(payload.as_ref()), "body gave up");
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert!(
            flag.load(Ordering::SeqCst),
            "scope returned before its task finished"
        );
    });
}

#[test]
fn body_panic_takes_precedence_over_task_panic() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                let h = s.apply_async(|| -> u8 { panic!("task panic") });
                h.wait();
                drop(h);
                panic!("body panic");
            })
        }));
        let payload = outcome.expect_err("the scope must panic");
        assert_eq!(panic_message(payload.as_ref()), "body panic");
    });
}

/// Counts tasks that started and finished, with a sleep between, so a scope
/// that returned early would see `started > finished`.
struct Progress {
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl Progress {
    fn new() -> Self {
        Progress {
            started: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        }
    }

    fn work(&self, ms: u64) {
        self.started.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        self.finished.fetch_add(1, Ordering::SeqCst);
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.started.load(Ordering::SeqCst),
            self.finished.load(Ordering::SeqCst),
        )
    }
}

#[test]
fn forgotten_imap_inside_scope_is_still_waited_for() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let progress = Progress::new();
        {
            // Borrowed by the tasks; dropped right after the scope.
            let data: Vec<String> = (0..32).map(|i| i.to_string()).collect();
            pool.scope(|s| {
                let mut it = s
                    .imap(
                        |x: &String| {
                            progress.work(30);
                            x.parse::<usize>().unwrap()
                        },
                        &data,
                    )
                    .chunksize(1)
                    .buffer(6);
                assert_eq!(it.next(), Some(0));
                // Leaks the iterator: nothing cancels or waits on its behalf.
                std::mem::forget(it);
            });
            let (started, finished) = progress.counts();
            assert!(started >= 1);
            assert_eq!(
                started, finished,
                "scope returned while tasks of a forgotten imap were still running"
            );
        }
        // No task may start after the scope (its borrows have ended).
        let after_scope = progress.counts();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(progress.counts(), after_scope);
        pool.close();
        pool.join();
        assert_eq!(progress.counts(), after_scope);
    });
}

#[test]
fn forgotten_imap_unordered_inside_scope_is_still_waited_for() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let progress = Progress::new();
        let data: Vec<u64> = (0..32).collect();
        pool.scope(|s| {
            let mut it = s
                .imap_unordered(
                    |x: &u64| {
                        progress.work(30);
                        *x
                    },
                    &data,
                )
                .chunksize(1)
                .buffer(6);
            assert!(it.next().is_some());
            std::mem::forget(it);
        });
        let (started, finished) = progress.counts();
        assert_eq!(started, finished);
        pool.close();
        pool.join();
        assert_eq!(progress.counts(), (started, finished));
    });
}

#[test]
fn forgotten_async_result_inside_scope_is_still_waited_for() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let progress = Progress::new();
        let data: Vec<u32> = (0..8).collect();
        pool.scope(|s| {
            let single = s.apply_async(|| progress.work(150));
            std::mem::forget(single);
            let many = s.map_async(|_: &u32| progress.work(20), &data);
            std::mem::forget(many);
        });
        // Every task of the scope ran to the end before scope returned: the
        // apply_async task and all 8 items of the map.
        assert_eq!(progress.counts(), (1 + 8, 1 + 8));
    });
}

/// A result that borrows from the stack and counts its drops.
struct Noisy<'a>(&'a AtomicUsize);

impl Drop for Noisy<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn unread_results_are_dropped_before_scope_returns() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let drops = AtomicUsize::new(0);
        pool.scope(|s| {
            for i in 0..50u64 {
                let drops = &drops;
                // Handle dropped before the task runs or finishes: the result
                // (which borrows `drops`) is dropped by the pool's side.
                drop(s.apply_async(move || {
                    std::thread::sleep(Duration::from_micros(200 * (i % 3)));
                    Noisy(drops)
                }));
            }
        });
        assert_eq!(
            drops.load(Ordering::SeqCst),
            50,
            "every unread result must be dropped before scope returns"
        );
    });
}

#[test]
fn scoped_imap_panic_surfaces_at_its_item() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let data: Vec<u32> = (0..10).collect();
        let seen = Mutex::new(Vec::new());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                for x in s
                    .imap(
                        |x: &u32| {
                            if *x == 4 {
                                panic!("imap item {x}");
                            }
                            *x
                        },
                        &data,
                    )
                    .chunksize(1)
                {
                    seen.lock().unwrap().push(x);
                }
            })
        }));
        let payload = outcome.expect_err("the item's panic must reach the consumer");
        assert_eq!(panic_message(payload.as_ref()), "imap item 4");
        // Every result before the panicking item was yielded, in order.
        assert_eq!(seen.into_inner().unwrap(), [0, 1, 2, 3]);
    });
}

#[test]
fn scoped_imap_panic_left_unread_reraises_when_scope_returns() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let data: Vec<u32> = vec![0, 1];
        let panicked_before = pool.stats().panicked;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                let mut it = s
                    .imap(
                        |x: &u32| {
                            if *x == 1 {
                                panic!("unread imap panic");
                            }
                            *x
                        },
                        &data,
                    )
                    .chunksize(1);
                assert_eq!(it.next(), Some(0));
                // Wait until item 1 has panicked, then drop the iterator
                // without reading that item.
                while pool.stats().panicked == panicked_before {
                    std::thread::sleep(Duration::from_millis(1));
                }
                drop(it);
                "body done"
            })
        }));
        let payload = outcome.expect_err("a task panic nobody read must re-raise at scope end");
        assert_eq!(panic_message(payload.as_ref()), "unread imap panic");
    });
}

#[test]
fn terminate_inside_a_scope_cancels_its_queued_tasks_and_scope_returns() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let ran = AtomicUsize::new(0);
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (blocker, queued) = pool.scope(|s| {
            let blocker = s.apply_async(move || {
                blocked.recv().unwrap();
                parpool::cancelled()
            });
            let queued: Vec<_> = (0..5)
                .map(|_| s.apply_async(|| ran.fetch_add(1, Ordering::SeqCst)))
                .collect();
            // Wait until the blocker runs, so terminate finds it running.
            while pool.stats().running == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            pool.terminate();
            release.send(()).unwrap();
            let queued: Vec<_> = queued.into_iter().map(|h| h.get()).collect();
            (blocker.get(), queued)
        });
        // The running task finished and saw the terminate.
        assert_eq!(blocker, Ok(true));
        assert_eq!(queued, vec![Err(TaskError::Cancelled); 5]);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        pool.join();
    });
}

#[test]
fn unread_imap_results_are_dropped_before_scope_returns() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let made = AtomicUsize::new(0);
        let drops = AtomicUsize::new(0);
        let data: Vec<u64> = (0..64).collect();
        pool.scope(|s| {
            let mut it = s
                .imap(
                    |x: &u64| {
                        std::thread::sleep(Duration::from_micros(100 * (x % 4)));
                        made.fetch_add(1, Ordering::SeqCst);
                        Noisy(&drops)
                    },
                    &data,
                )
                .chunksize(2)
                .buffer(16);
            drop(it.next());
            drop(it.next());
            // Dropped with results queued, running and unread.
            drop(it);
        });
        let made = made.load(Ordering::SeqCst);
        assert!(made >= 2);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            made,
            "every result made in the scope must be dropped before it returns"
        );
    });
}
