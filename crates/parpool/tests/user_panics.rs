//! User code that panics where the engine does not expect it: in a closure's
//! or callback's `Drop`, an input iterator, input items' or results' `Drop`.
//! The call returns or raises a clear panic; afterwards no worker is dead, no
//! counter is left half-updated (a 1-worker pool still completes a task
//! within a guard, and `stats().running == 0` once idle), and nothing is
//! dropped twice.
//!
//! A panicking `Drop` can abort the process (a second panic while unwinding),
//! so every case runs in a child process.
#[path = "common/child.rs"]
mod child;
mod common;

use child::{assert_pool_healthy, catch, DropBomb, Item, Tracker};
use parpool::{PanicPolicy, TaskError, ThreadPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

fn one_worker() -> Arc<ThreadPool> {
    Arc::new(ThreadPool::with_workers(1))
}

/// Asserts that no item was dropped twice, then (after the health check)
/// that none leaked.
fn assert_dropped_once(t: &Tracker, n: usize, what: &str) {
    let twice: Vec<usize> = t
        .drops()
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 1)
        .map(|(i, _)| i)
        .collect();
    assert!(twice.is_empty(), "{what}: dropped twice: {twice:?}");
    t.assert_all_dropped_once(n, what);
}

/// Items `0..n`; those with `id % 100 == 50` panic when dropped.
fn items_with_bombs(t: &'static Tracker, n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| if i % 100 == 50 { t.bomb(i) } else { t.item(i) })
        .collect()
}

#[test]
fn input_drop_panics_in_chunked_try_map_failing_at_item_0() {
    child::run(
        "input_drop_panics_in_chunked_try_map_failing_at_item_0",
        20,
        || {
            static T: Tracker = Tracker::new();
            let pool = one_worker();
            let r = catch(|| {
                pool.chunked(1000).try_map(
                    |x: Item| if x.seen() == 0 { Err(0usize) } else { Ok(x.id) },
                    items_with_bombs(&T, 1000),
                )
            });
            match &r {
                Ok(Err(0)) => {}
                Ok(other) => panic!("try_map returned {:?}", other.as_ref().map(|v| v.len())),
                Err(msg) => assert!(msg.contains("EXPECTED"), "unclear panic: {msg}"),
            }
            assert_pool_healthy(&pool, "after try_map with panicking input drops");
            assert_dropped_once(&T, 1000, "try_map inputs");
        },
    );
}

#[test]
fn closure_drop_panics_when_terminate_discards_it() {
    child::run("closure_drop_panics_when_terminate_discards_it", 20, || {
        let pool = one_worker();
        let (release, blocked) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        let blocker = pool.apply_async(move || {
            started_tx.send(()).unwrap();
            blocked.recv_timeout(Duration::from_secs(10)).is_ok()
        });
        started.recv().unwrap();
        let mut queued = Vec::new();
        for i in 0..50usize {
            if i == 10 {
                let bomb = DropBomb("a queued closure");
                queued.push(pool.apply_async(move || {
                    let _keep = &bomb;
                    i
                }));
            } else {
                queued.push(pool.apply_async(move || i));
            }
        }
        let t = catch(|| pool.terminate());
        if let Err(msg) = &t {
            assert!(
                msg.contains("EXPECTED"),
                "terminate raised an unclear panic: {msg}"
            );
        }
        release.send(()).unwrap();
        let r = child::guard_named(5, "the running task's get() after terminate", move || {
            blocker.get()
        });
        assert_eq!(r, Ok(true), "the running task");
        for (i, h) in queued.into_iter().enumerate() {
            let r = child::guard_named(5, "a discarded task's get() after terminate", move || {
                h.get()
            });
            if i == 10 {
                assert!(
                    r.is_err(),
                    "the discarded task with a panicking closure drop: {r:?}"
                );
            } else {
                assert_eq!(r, Err(TaskError::Cancelled), "queued task {i}");
            }
        }
        let p = Arc::clone(&pool);
        child::guard_named(5, "join() after terminate", move || p.join());
        let s = pool.stats();
        assert_eq!((s.queued, s.running), (0, 0), "{s:?}");
    });
}

#[test]
fn closure_panics_are_reported_and_the_pool_lives() {
    child::run("closure_panics_are_reported_and_the_pool_lives", 20, || {
        let pool = one_worker();
        let r = pool.apply_async(|| -> u8 { panic!("EXPECTED task") }).get();
        assert!(
            matches!(r, Err(TaskError::Panicked(ref m)) if m.contains("EXPECTED")),
            "{r:?}"
        );
        let r = catch(|| {
            pool.map(
                |x: u32| if x == 7 { panic!("EXPECTED map") } else { x },
                0..100u32,
            )
        });
        assert!(r.unwrap_err().contains("EXPECTED"));
        let r = catch(|| {
            pool.imap(
                |x: u32| if x == 7 { panic!("EXPECTED imap") } else { x },
                0..100u32,
            )
            .count()
        });
        assert!(r.unwrap_err().contains("EXPECTED"));
        assert_pool_healthy(&pool, "after closure panics");
    });
}

#[test]
fn closure_drop_panics_after_running() {
    child::run("closure_drop_panics_after_running", 20, || {
        let pool = one_worker();
        // apply_async: the FnOnce closure's captures are dropped as it returns.
        let bomb = DropBomb("apply_async closure");
        let r = pool
            .apply_async(move || {
                let _keep = &bomb;
                5
            })
            .get();
        assert!(
            r == Ok(5) || matches!(r, Err(TaskError::Panicked(_))),
            "{r:?}"
        );
        assert_pool_healthy(&pool, "after apply_async closure drop panic");
        // map_async: the engine owns `f` and drops it after the last item.
        let bomb = DropBomb("map_async closure");
        let h = pool.map_async(
            move |x: u32| {
                let _keep = &bomb;
                x + 1
            },
            vec![1u32, 2, 3],
        );
        let r = child::guard_named(
            5,
            "map_async get() with a panicking closure drop",
            move || h.get(),
        );
        assert!(
            r == Ok(vec![2, 3, 4]) || matches!(r, Err(TaskError::Panicked(_))),
            "{r:?}"
        );
        assert_pool_healthy(&pool, "after map_async closure drop panic");
        // imap: `f` lives as long as the stream's shared state.
        let bomb = DropBomb("imap closure");
        let p = Arc::clone(&pool);
        let r = child::guard_named(5, "imap with a panicking closure drop", move || {
            catch(|| {
                p.imap(
                    move |x: u32| {
                        let _keep = &bomb;
                        x * 2
                    },
                    0..100u32,
                )
                .collect::<Vec<_>>()
            })
        });
        if let Ok(v) = &r {
            assert_eq!(v, &(0..100).map(|x| x * 2).collect::<Vec<_>>());
        }
        assert_pool_healthy(&pool, "after imap closure drop panic");
        // A blocking map's `f` is the caller's: dropped on the caller.
        let bomb = DropBomb("map closure");
        let r = catch(move || {
            let f = move |x: u32| {
                let _keep = &bomb;
                x
            };
            pool.map(f, 0..10u32)
        });
        assert!(
            r.is_err(),
            "the map closure's drop panic should reach the caller"
        );
    });
}

/// An endless-looking input whose `next()` panics at `at`.
struct PanicNext {
    i: u32,
    at: u32,
}

impl Iterator for PanicNext {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.i == self.at {
            panic!("EXPECTED: input next() panics at {}", self.at);
        }
        self.i += 1;
        (self.i <= 1000).then_some(self.i - 1)
    }
}

#[test]
fn imap_input_next_panics() {
    child::run("imap_input_next_panics", 20, || {
        let pool = one_worker();
        for chunk in [None, Some(1), Some(7), Some(1000)] {
            for ordered in [true, false] {
                let p = Arc::clone(&pool);
                let r =
                    child::guard_named(5, "imap over an input whose next() panics", move || {
                        catch(|| {
                            let input = PanicNext { i: 0, at: 50 };
                            if ordered {
                                let it = p.imap(|x: u32| x, input);
                                let it = match chunk {
                                    Some(c) => it.chunksize(c),
                                    None => it,
                                };
                                it.collect::<Vec<_>>()
                            } else {
                                let it = p.imap_unordered(|x: u32| x, input);
                                let it = match chunk {
                                    Some(c) => it.chunksize(c),
                                    None => it,
                                };
                                it.collect::<Vec<_>>()
                            }
                        })
                    });
                let msg = r.expect_err("the input's panic must reach the consumer");
                assert!(
                    msg.contains("EXPECTED"),
                    "chunk {chunk:?} ordered {ordered}: {msg}"
                );
                assert_pool_healthy(&pool, "after an input next() panic");
            }
        }
    });
}

/// An input iterator whose `Drop` panics.
struct PanicDropIter {
    inner: std::ops::Range<u32>,
    _bomb: DropBomb,
}

impl Iterator for PanicDropIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        self.inner.next()
    }
}

#[test]
fn imap_input_iterator_drop_panics() {
    child::run("imap_input_iterator_drop_panics", 20, || {
        let pool = one_worker();
        for early in [false, true] {
            for ordered in [true, false] {
                let p = Arc::clone(&pool);
                let r = child::guard_named(
                    5,
                    "imap over an input iterator whose Drop panics",
                    move || {
                        catch(|| {
                            let input = PanicDropIter {
                                inner: 0..100,
                                _bomb: DropBomb("imap input iterator"),
                            };
                            let take = if early { 3 } else { usize::MAX };
                            if ordered {
                                p.imap(|x: u32| x, input).take(take).count()
                            } else {
                                p.imap_unordered(|x: u32| x, input).take(take).count()
                            }
                        })
                    },
                );
                if let Ok(n) = r {
                    assert_eq!(n, if early { 3 } else { 100 });
                }
                assert_pool_healthy(
                    &pool,
                    &format!("after input iterator drop panic (early {early})"),
                );
            }
        }
    });
}

#[test]
fn map_input_item_drops_panic() {
    child::run("map_input_item_drops_panic", 20, || {
        static T: Tracker = Tracker::new();
        let pool = one_worker();
        // Dropped inside `f` (by value): a task panic, re-raised.
        T.reset();
        let r = catch(|| pool.map(|x: Item| x.seen(), items_with_bombs(&T, 300)));
        assert!(r.unwrap_err().contains("EXPECTED"));
        assert_pool_healthy(&pool, "after map with panicking item drops in f");
        assert_dropped_once(&T, 300, "map, drops in f");
        // Dropped by the engine: `f` panics at item 0, the rest are
        // discarded, and some of those panic when dropped.
        for chunk in [None, Some(1), Some(1000)] {
            T.reset();
            let r = catch(|| {
                let f = |x: Item| {
                    if x.seen() == 0 {
                        panic!("EXPECTED: f panics at item 0");
                    }
                    if x.id % 100 == 50 {
                        std::mem::forget(x); // only the engine drops bombs here
                    }
                    0usize
                };
                match chunk {
                    Some(c) => pool.chunked(c).map(f, items_with_bombs(&T, 1000)),
                    None => pool.map(f, items_with_bombs(&T, 1000)),
                }
            });
            assert!(r.unwrap_err().contains("EXPECTED"), "chunk {chunk:?}");
            assert_pool_healthy(
                &pool,
                &format!("after map discarding panicking items (chunk {chunk:?})"),
            );
        }
    });
}

#[test]
fn imap_input_item_drops_panic() {
    child::run("imap_input_item_drops_panic", 20, || {
        static T: Tracker = Tracker::new();
        let pool = one_worker();
        // Dropped inside `f`.
        T.reset();
        let p = Arc::clone(&pool);
        let r = child::guard_named(5, "imap with panicking item drops in f", move || {
            catch(|| {
                // 200 items, bombs at 50 and 150: at most one bomb is left in
                // the unread input (std's `Vec` drop aborts on a second).
                p.imap(|x: Item| x.seen(), items_with_bombs(&T, 200))
                    .count()
            })
        });
        assert!(r.unwrap_err().contains("EXPECTED"));
        assert_pool_healthy(&pool, "after imap with panicking item drops in f");
        assert_dropped_once(&T, 200, "imap, drops in f");
        // Unread items dropped with the stream when it is dropped early.
        for ordered in [true, false] {
            T.reset();
            let p = Arc::clone(&pool);
            let r = child::guard_named(5, "dropping an imap over panicking items", move || {
                catch(|| {
                    // One bomb among the unread items: the input is a Vec, and
                    // std's own `Vec` drop aborts on a second panicking element
                    // wherever it is dropped; the pool cannot take it apart.
                    let items: Vec<Item> = (0..1000)
                        .map(|i| if i == 500 { T.bomb(i) } else { T.item(i) })
                        .collect();
                    let f = |x: Item| {
                        let id = x.seen();
                        std::mem::forget(x);
                        id
                    };
                    if ordered {
                        p.imap(f, items).chunksize(1).take(3).count()
                    } else {
                        p.imap_unordered(f, items).chunksize(1).take(3).count()
                    }
                })
            });
            if let Ok(n) = r {
                assert_eq!(n, 3);
            }
            assert_pool_healthy(
                &pool,
                &format!("after dropping an imap over panicking items (ordered {ordered})"),
            );
        }
    });
}

#[test]
fn callbacks_that_panic_are_contained() {
    child::run("callbacks_that_panic_are_contained", 20, || {
        let pool = one_worker();
        let h = pool
            .apply_async(|| 1)
            .on_success(|_| panic!("EXPECTED on_success"));
        assert_eq!(
            child::guard_named(5, "get() with a panicking on_success", move || h.get()),
            Ok(1)
        );
        let h = pool
            .apply_async(|| -> u8 { panic!("EXPECTED task") })
            .on_error(|_| panic!("EXPECTED on_error"));
        let r = child::guard_named(5, "get() with a panicking on_error", move || h.get());
        assert!(matches!(r, Err(TaskError::Panicked(_))), "{r:?}");
        // Attached after the task finished: runs on the caller, contained.
        let h = pool.apply_async(|| 2);
        h.wait();
        let r = catch(move || h.on_success(|_| panic!("EXPECTED late on_success")).get());
        assert_eq!(r, Ok(Ok(2)));
        assert_pool_healthy(&pool, "after panicking callbacks");
    });
}

#[test]
fn callback_drop_panics_when_it_does_not_run() {
    child::run("callback_drop_panics_when_it_does_not_run", 20, || {
        let pool = one_worker();
        // on_error on a task that succeeds: dropped unrun.
        let bomb = DropBomb("unrun on_error");
        let h = pool.apply_async(|| 1).on_error(move |_| {
            let _keep = &bomb;
        });
        let r = child::guard_named(
            5,
            "get() of a successful task whose unrun on_error's Drop panics",
            move || h.get(),
        );
        assert_eq!(r, Ok(1));
        assert_pool_healthy(&pool, "after an unrun on_error's drop panicked");
        // on_success on a task that panics.
        let bomb = DropBomb("unrun on_success");
        let h = pool
            .apply_async(|| -> u8 { panic!("EXPECTED task") })
            .on_success(move |_| {
                let _keep = &bomb;
            });
        let r = child::guard_named(
            5,
            "get() of a failed task whose unrun on_success's Drop panics",
            move || h.get(),
        );
        assert!(r.is_err(), "{r:?}");
        assert_pool_healthy(&pool, "after an unrun on_success's drop panicked");
        // on_success on a task that is cancelled before it runs.
        let (release, blocked) = mpsc::channel::<()>();
        let blocker =
            pool.apply_async(move || blocked.recv_timeout(Duration::from_secs(10)).is_ok());
        let bomb = DropBomb("on_success of a cancelled task");
        let h = pool.apply_async(|| 3).on_success(move |_| {
            let _keep = &bomb;
        });
        let c = catch(|| h.cancel());
        if let Err(m) = &c {
            assert!(m.contains("EXPECTED"), "{m}");
        }
        release.send(()).unwrap();
        assert_eq!(
            child::guard_named(5, "the blocker's get() after cancel", move || blocker.get()),
            Ok(true)
        );
        let r = child::guard_named(
            5,
            "get() of a cancelled task whose on_success's Drop panics",
            move || h.get(),
        );
        assert!(r.is_err(), "{r:?}");
        assert_pool_healthy(&pool, "after a cancelled task's on_success drop panicked");
    });
}

#[test]
fn result_drop_panics_when_the_handle_drops_it() {
    child::run("result_drop_panics_when_the_handle_drops_it", 20, || {
        static T: Tracker = Tracker::new();
        let pool = one_worker();
        // The handle is dropped after the task finished: dropped on the caller.
        let h = pool.apply_async(|| T.bomb(0));
        h.wait();
        let r = catch(move || drop(h));
        if let Err(m) = &r {
            assert!(m.contains("EXPECTED"), "{m}");
        }
        assert_pool_healthy(&pool, "after a finished handle dropped a panicking result");
        // The handle is dropped before the task runs: the result has no owner
        // when the worker finishes.
        let (release, blocked) = mpsc::channel::<()>();
        let blocker =
            pool.apply_async(move || blocked.recv_timeout(Duration::from_secs(10)).is_ok());
        let h = pool.apply_async(|| T.bomb(1));
        drop(h);
        release.send(()).unwrap();
        assert_eq!(
            child::guard_named(
                5,
                "the blocker's get() after an orphaned panicking result",
                move || blocker.get()
            ),
            Ok(true)
        );
        assert_pool_healthy(&pool, "after a worker dropped an orphaned panicking result");
        // map_async: results owned by the handle.
        let h = pool.map_async(
            // One bomb: the result is the user's `Vec`, whose own drop aborts
            // on a second panicking element wherever it is dropped.
            |i: usize| {
                if i == 5 {
                    T.bomb(2 + i)
                } else {
                    T.item(2 + i)
                }
            },
            0..40usize,
        );
        h.wait();
        let r = catch(move || drop(h));
        if let Err(m) = &r {
            assert!(m.contains("EXPECTED"), "{m}");
        }
        assert_pool_healthy(
            &pool,
            "after dropping a map_async handle with panicking results",
        );
        assert_dropped_once(&T, 42, "results");
    });
}

#[test]
fn result_drop_panics_when_a_dropped_imap_drops_it() {
    child::run(
        "result_drop_panics_when_a_dropped_imap_drops_it",
        20,
        || {
            static T: Tracker = Tracker::new();
            let pool = one_worker();
            for ordered in [true, false] {
                T.reset();
                let p = Arc::clone(&pool);
                let r = child::guard_named(
                    5,
                    "dropping an imap holding panicking results",
                    move || {
                        catch(|| {
                            let f = |i: usize| if i >= 2 { T.bomb(i) } else { T.item(i) };
                            if ordered {
                                let mut it = p.imap(f, 0..200usize).chunksize(10);
                                let a = it.next().map(|x| x.id);
                                let b = it.next().map(|x| x.id);
                                // Let more chunks finish, so the stream holds results.
                                std::thread::sleep(Duration::from_millis(20));
                                drop(it);
                                (a, b)
                            } else {
                                let mut it = p.imap_unordered(f, 0..200usize).chunksize(10);
                                let mut got = Vec::new();
                                while got.len() < 2 {
                                    let x = it.next().unwrap();
                                    got.push(x.id);
                                    if x.id >= 2 {
                                        std::mem::forget(x);
                                    }
                                }
                                std::thread::sleep(Duration::from_millis(20));
                                drop(it);
                                (Some(got[0]), Some(got[1]))
                            }
                        })
                    },
                );
                if let (true, Ok(v)) = (ordered, &r) {
                    assert_eq!(*v, (Some(0), Some(1)));
                }
                if let Err(m) = &r {
                    assert!(m.contains("EXPECTED"), "{m}");
                }
                assert_pool_healthy(
                    &pool,
                    &format!("after a dropped imap dropped panicking results (ordered {ordered})"),
                );
            }
        },
    );
}

#[test]
fn result_drop_panics_when_a_failed_map_drops_it() {
    child::run("result_drop_panics_when_a_failed_map_drops_it", 20, || {
        static T: Tracker = Tracker::new();
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let pool = one_worker();
        for chunk in [None, Some(1), Some(16)] {
            T.reset();
            let r = catch(|| {
                let f = |i: usize| {
                    CALLS.fetch_add(1, Ordering::Relaxed);
                    if i == 500 {
                        panic!("EXPECTED: f panics at 500");
                    }
                    if i % 10 == 3 {
                        T.bomb(i)
                    } else {
                        T.item(i)
                    }
                };
                match chunk {
                    Some(c) => pool.chunked(c).map(f, 0..1000usize).len(),
                    None => pool.map(f, 0..1000usize).len(),
                }
            });
            let m = r.expect_err("map must re-raise f's panic");
            assert!(m.contains("EXPECTED"), "{m}");
            assert_pool_healthy(
                &pool,
                &format!("after a failed map dropped panicking results (chunk {chunk:?})"),
            );
            let twice: Vec<usize> = T
                .drops()
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 1)
                .map(|(i, _)| i)
                .collect();
            assert!(twice.is_empty(), "dropped twice: {twice:?}");
            assert_eq!(T.live(), 0, "results leaked");
        }
        // try_map's results too.
        T.reset();
        let r = catch(|| {
            pool.chunked(8)
                .try_map(
                    |i: usize| {
                        if i == 300 {
                            Err(i)
                        } else if i % 10 == 3 {
                            Ok(T.bomb(i))
                        } else {
                            Ok(T.item(i))
                        }
                    },
                    0..1000usize,
                )
                .map(|v| v.len())
        });
        if let Ok(v) = &r {
            assert_eq!(*v, Err(300));
        }
        assert_pool_healthy(&pool, "after a failed try_map dropped panicking results");
        assert_eq!(T.live(), 0, "results leaked");
    });
}

/// Review finding: under `PanicPolicy::Terminate`, each panicking closure
/// `Drop` met during terminate's drain called terminate again, which
/// drained again: one nested drain per job, until the stack overflowed.
#[test]
fn terminate_drain_over_many_panicking_drops_does_not_nest() {
    child::run(
        "terminate_drain_over_many_panicking_drops_does_not_nest",
        60,
        || {
            let pool = common::terminating_on_panic(1);
            let (release, blocked) = mpsc::channel::<()>();
            let blocker = pool.apply_async(move || blocked.recv().is_ok());
            let handles: Vec<_> = (0..100_000)
                .map(|_| {
                    let bomb = DropBomb("EXPECTED closure drop");
                    pool.apply_async(move || {
                        let _b = &bomb;
                        1
                    })
                })
                .collect();
            pool.terminate();
            release.send(()).unwrap();
            assert!(handles
                .into_iter()
                .all(|h| h.get() == Err(TaskError::Cancelled)));
            let _ = blocker.get();
            pool.join();
            assert_eq!(pool.stats().queued, 0);
        },
    );
}

/// Review finding: `try_map` where one item returns `Err(E)` and another
/// panics re-raised the panic while still holding `E`; `E`'s panicking
/// `Drop` then ran during the unwinding and aborted the process.
#[test]
fn try_map_error_dropped_before_a_panic_is_reraised() {
    child::run(
        "try_map_error_dropped_before_a_panic_is_reraised",
        30,
        || {
            struct E;
            impl Drop for E {
                fn drop(&mut self) {
                    panic!("EXPECTED: E dropped");
                }
            }
            let pool = one_worker();
            let r = catch(|| {
                let _ = pool.chunked(1).try_map(
                    |&i: &u32| -> Result<u32, E> {
                        if i == 0 {
                            std::thread::sleep(Duration::from_millis(50));
                            panic!("EXPECTED: item 0");
                        }
                        Err(E)
                    },
                    &[0u32, 1],
                );
            });
            assert!(r.unwrap_err().contains("item 0"));
            assert_pool_healthy(&pool, "after try_map with a panicking error drop");
        },
    );
}

/// Review finding: a callback that drops its own handle (the "remove me
/// from the pending set" pattern) deadlocked on the slot's lock; one that
/// waits for its own result now panics (contained) instead of hanging.
#[test]
fn callbacks_may_drop_their_own_handle_and_never_wait_on_it_forever() {
    child::run(
        "callbacks_may_drop_their_own_handle_and_never_wait_on_it_forever",
        30,
        || {
            common::quiet_parpool_diagnostics();
            let pool = one_worker();
            let pending: Arc<Mutex<Vec<parpool::AsyncResult<u32>>>> = Arc::default();
            let (tx, rx) = mpsc::channel();
            for i in 0..20u32 {
                let pending2 = Arc::clone(&pending);
                let tx = tx.clone();
                let h = pool.apply_async(move || i).on_success(move |v| {
                    pending2.lock().unwrap().retain(|h| !h.ready());
                    tx.send(*v).unwrap();
                });
                pending.lock().unwrap().push(h);
            }
            let mut got: Vec<u32> = (0..20)
                .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
                .collect();
            got.sort();
            assert_eq!(got, (0..20).collect::<Vec<_>>());
            // A callback that waits for its own task: a clear panic, contained.
            let slot: Arc<Mutex<Option<parpool::AsyncResult<u32>>>> = Arc::default();
            let (tx, rx) = mpsc::channel();
            let (go, wait_go) = mpsc::channel::<()>();
            let s2 = Arc::clone(&slot);
            let h = pool
                .apply_async(move || {
                    wait_go.recv().unwrap();
                    5
                })
                .on_success(move |_| {
                    let own = s2.lock().unwrap().take().unwrap();
                    tx.send(catch(move || own.get())).unwrap();
                });
            *slot.lock().unwrap() = Some(h);
            go.send(()).unwrap();
            let r = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the callback returned");
            assert!(r.unwrap_err().contains("its own task"));
            assert_pool_healthy(&pool, "after callbacks that drop or wait on their handle");
        },
    );
}

/// Review finding: a panicking waker on the imap `Stream` counted as a task
/// panic and met the pool's policy (under `Abort`, the process aborted).
#[test]
fn a_panicking_stream_waker_is_contained_and_not_a_task_panic() {
    child::run(
        "a_panicking_stream_waker_is_contained_and_not_a_task_panic",
        30,
        || {
            use futures::Stream;
            use std::task::{Context, Poll, Wake, Waker};
            struct Bad;
            impl Wake for Bad {
                fn wake(self: Arc<Self>) {
                    panic!("EXPECTED: waker");
                }
            }
            let pool = ThreadPool::builder()
                .workers(1)
                .on_panic(PanicPolicy::Abort)
                .build()
                .unwrap();
            let mut it = pool
                .imap(
                    |x: u32| {
                        std::thread::sleep(Duration::from_millis(5));
                        x
                    },
                    0..3u32,
                )
                .into_stream();
            let waker = Waker::from(Arc::new(Bad));
            let mut cx = Context::from_waker(&waker);
            let mut got = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match std::pin::Pin::new(&mut it).poll_next(&mut cx) {
                    Poll::Ready(Some(x)) => got.push(x),
                    Poll::Ready(None) => break,
                    Poll::Pending => {
                        assert!(std::time::Instant::now() < deadline, "stream stalled");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            assert_eq!(got, [0, 1, 2]);
            assert_eq!(pool.stats().panicked, 0);
            assert!(pool.is_running());
        },
    );
}
