//! `parpool::cancelled()` and the own-result-wait check, context by
//! context: a table of what each context answers, pinned so that a change
//! to the token stack (`cancel.rs`) that changes an answer fails here.
//! Written by the hostile review of the intrusive token stack (337b71c),
//! which ran the same table against the `RefCell<Vec>` stack before it:
//! every answer below is the old one, except the one marked in
//! `the_token_stack_works_in_a_late_thread_local_destructor`.

mod common;

use common::{guard, quiet_panics_containing, wait_for_cancelled};
use parpool::ThreadPool;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

type Log = Arc<Mutex<Vec<(String, bool)>>>;

fn record(log: &Log, what: &str) {
    log.lock()
        .unwrap()
        .push((what.to_owned(), parpool::cancelled()));
}

/// Records `cancelled()` when dropped, also during unwinding.
struct Probe(Log, &'static str);

impl Drop for Probe {
    fn drop(&mut self) {
        record(&self.0, self.1);
    }
}

/// Runs `body` as a task of `pool` that `cancel` is called on once it
/// runs; returns the task's handle (spent) after the body returned.
fn in_a_cancelled_task(pool: &ThreadPool, body: impl FnOnce() + Send + 'static) {
    let (started_tx, started) = mpsc::channel();
    let (go_tx, go) = mpsc::channel::<()>();
    let h = pool.apply_async(move || {
        started_tx.send(()).unwrap();
        go.recv().unwrap();
        body();
    });
    started.recv().unwrap();
    assert!(!h.cancel(), "the task runs already");
    go_tx.send(()).unwrap();
    let _ = h.get();
}

fn table(log: &Log) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(w, c)| format!("{w}={c}"))
        .collect()
}

#[test]
fn cancelled_answers_the_same_in_every_context() {
    quiet_panics_containing("context probe");
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<Probe>() {
            hook(info);
        }
    }));
    let got = guard(120, || {
        let log: Log = Arc::default();
        record(&log, "plain thread");
        let pool = ThreadPool::with_workers(1);
        let l = log.clone();
        pool.apply(move || record(&l, "task"));

        // A running task cancelled through its handle: its body, a capture
        // dropped as the body ends, a local dropped while it unwinds, and a
        // panic payload's `Drop`.
        let l = log.clone();
        in_a_cancelled_task(&pool, move || record(&l, "cancelled task"));
        let l = log.clone();
        let captured = Probe(log.clone(), "capture dropped by a cancelled task");
        in_a_cancelled_task(&pool, move || {
            let _keep = &captured;
            record(&l, "cancelled task with a capture");
            drop(captured);
        });
        let l = log.clone();
        in_a_cancelled_task(&pool, move || {
            let _p = Probe(l, "local dropped unwinding a cancelled task");
            panic!("context probe: unwinding");
        });
        let l = log.clone();
        in_a_cancelled_task(&pool, move || {
            std::panic::panic_any(Probe(l, "panic payload of a cancelled task dropped"));
        });

        // Callbacks run after the task's token is gone.
        {
            let (started_tx, started) = mpsc::channel();
            let (go_tx, go) = mpsc::channel::<()>();
            let l = log.clone();
            let h = pool
                .apply_async(move || {
                    started_tx.send(()).unwrap();
                    go.recv().unwrap();
                })
                .on_success(move |_| record(&l, "on_success of a cancelled task"));
            started.recv().unwrap();
            h.cancel();
            go_tx.send(()).unwrap();
            h.get().unwrap();
            let (started_tx, started) = mpsc::channel();
            let (go_tx, go) = mpsc::channel::<()>();
            let l = log.clone();
            let h = pool
                .apply_async(move || {
                    started_tx.send(()).unwrap();
                    go.recv().unwrap();
                    panic!("context probe: for on_error");
                })
                .on_error(move |_| record(&l, "on_error of a cancelled task"));
            started.recv().unwrap();
            h.cancel();
            go_tx.send(()).unwrap();
            let _ = h.get();
        }

        // A task inlined by a cancelled task's `get` (one worker, so the
        // inner task is still queued): it answers for itself, and the
        // outer task's answer comes back after it, also after a panic.
        let p = Arc::new(ThreadPool::with_workers(1));
        let (l, p2) = (log.clone(), p.clone());
        in_a_cancelled_task(&p, move || {
            let l2 = l.clone();
            let inner = p2.apply_async(move || {
                record(&l2, "task inlined by a cancelled task");
                parpool::cancelled()
            });
            inner.get().unwrap();
            record(&l, "cancelled task after an inlined task");
            let l2 = l.clone();
            let inner = p2.apply_async(move || {
                let _p = Probe(l2, "unwinding a task inlined by a cancelled task");
                panic!("context probe: inlined");
            });
            assert!(inner.get().is_err());
            record(&l, "cancelled task after an inlined task panicked");
            // Nested twice: a task inlined into a task inlined here.
            let (l2, p3) = (l.clone(), p2.clone());
            let inner = p2.apply_async(move || {
                let l3 = l2.clone();
                let innermost = p3.apply_async(move || record(&l3, "inlined twice"));
                innermost.get().unwrap();
                record(&l2, "inlined once, after its own inlined task");
            });
            inner.get().unwrap();
            record(&l, "cancelled task after nested inlining");
        });

        // Blocking maps: from a plain thread, from a cancelled task, and a
        // failed `try_map`'s other items.
        for c in pool.map(|_| parpool::cancelled(), 0..4) {
            log.lock()
                .unwrap()
                .push(("map item from a plain thread".into(), c));
        }
        let (l, p2) = (log.clone(), p.clone());
        in_a_cancelled_task(&p, move || {
            let items = p2.map(|_| parpool::cancelled(), 0..3);
            for c in items {
                l.lock()
                    .unwrap()
                    .push(("map item in a cancelled task".into(), c));
            }
            record(&l, "cancelled task after its map");
            // A map item's panic re-raised in the task: a local of the
            // item and one of the task, each dropped unwinding.
            let l2 = l.clone();
            let caught = catch_unwind(AssertUnwindSafe(|| {
                let _outer = Probe(l.clone(), "task local unwinding from its map's panic");
                p2.map(
                    move |i: u32| {
                        let _p = Probe(l2.clone(), "map item local unwinding");
                        if i == 0 {
                            panic!("context probe: map item");
                        }
                    },
                    0..1u32,
                );
            }));
            assert!(caught.is_err());
            record(&l, "cancelled task after its map panicked");
        });
        let two = ThreadPool::with_workers(2);
        let l = log.clone();
        let r: Result<Vec<()>, u32> = two.chunked(1).try_map(
            |&i: &u32| {
                if i == 1 {
                    std::thread::sleep(Duration::from_millis(20));
                    Err(1)
                } else {
                    let seen = wait_for_cancelled(10);
                    l.lock()
                        .unwrap()
                        .push(("try_map item after another failed".into(), seen));
                    Ok(())
                }
            },
            &[0u32, 1],
        );
        assert_eq!(r, Err(1));

        // A future blocked on by a cancelled task on a worker.
        let (l, p2) = (log.clone(), Arc::new(ThreadPool::with_workers(2)));
        let p3 = p2.clone();
        in_a_cancelled_task(&p2, move || {
            let l2 = l.clone();
            futures::executor::block_on(p3.apply_async(move || record(&l2, "awaited task")))
                .unwrap();
            record(&l, "cancelled task after block_on");
        });

        // A scope inside a cancelled task.
        let (l, p2) = (log.clone(), p.clone());
        in_a_cancelled_task(&p, move || {
            p2.scope(|s| {
                let l2 = l.clone();
                s.apply_async(move || record(&l2, "scope task in a cancelled task"))
                    .get()
                    .unwrap();
                let v: Vec<bool> = s.imap(|_: u32| parpool::cancelled(), 0..2u32).collect();
                for c in v {
                    l.lock()
                        .unwrap()
                        .push(("scope imap item in a cancelled task".into(), c));
                }
            });
            record(&l, "cancelled task after its scope");
        });

        // An initializer, and `terminate` seen by a running task and by the
        // items of a map it runs.
        let l = log.clone();
        let t = ThreadPool::builder()
            .workers(1)
            .initializer(move || record(&l, "initializer"))
            .build()
            .unwrap();
        let (started_tx, started) = mpsc::channel();
        let (go_tx, go) = mpsc::channel::<()>();
        let t = Arc::new(t);
        let (l, t2) = (log.clone(), t.clone());
        let h = t.apply_async(move || {
            started_tx.send(()).unwrap();
            go.recv().unwrap();
            record(&l, "task of a terminated pool");
            let items = t2.map(|_| parpool::cancelled(), 0..2);
            for c in items {
                l.lock()
                    .unwrap()
                    .push(("map item in a task of a terminated pool".into(), c));
            }
        });
        started.recv().unwrap();
        t.terminate();
        go_tx.send(()).unwrap();
        let _ = h.get();
        t.join();
        record(&log, "plain thread at the end");
        table(&log)
    });
    let expected = [
        "plain thread=false",
        "initializer=false",
        "task=false",
        "cancelled task=true",
        "cancelled task with a capture=true",
        "capture dropped by a cancelled task=true",
        "local dropped unwinding a cancelled task=true",
        "panic payload of a cancelled task dropped=false",
        "on_success of a cancelled task=false",
        "on_error of a cancelled task=false",
        "task inlined by a cancelled task=false",
        "cancelled task after an inlined task=true",
        "unwinding a task inlined by a cancelled task=false",
        "cancelled task after an inlined task panicked=true",
        "inlined twice=false",
        "inlined once, after its own inlined task=false",
        "cancelled task after nested inlining=true",
        "map item from a plain thread=false",
        "map item in a cancelled task=true",
        "cancelled task after its map=true",
        "map item local unwinding=true",
        "task local unwinding from its map's panic=true",
        "cancelled task after its map panicked=true",
        "awaited task=false",
        "cancelled task after block_on=true",
        "scope task in a cancelled task=false",
        "scope imap item in a cancelled task=false",
        "cancelled task after its scope=true",
        "task of a terminated pool=true",
        "map item in a task of a terminated pool=true",
        "plain thread at the end=false",
        "try_map item after another failed=true",
    ];
    for line in &got {
        println!("{line}");
    }
    for e in expected {
        assert!(got.iter().any(|g| g == e), "missing {e:?} in {got:#?}");
    }
    for g in &got {
        assert!(expected.contains(&g.as_str()), "unexpected {g:?}");
    }
}

/// The one context whose answer the intrusive stack changed: a thread-local
/// destructor that runs after the token stack's own. The `RefCell<Vec>`
/// stack was gone there, so no token was pushed and `cancelled()` said
/// `false` even in a map item whose map had failed; the intrusive stack's
/// top pointer has no destructor, so the item sees the failure as
/// anywhere else. (Only maps' and imaps' items run on a thread that is in
/// its thread-local destructors: a task runs only on a worker, and a
/// worker's loop has ended by then.)
#[test]
fn the_token_stack_works_in_a_late_thread_local_destructor() {
    struct Late(Option<mpsc::Sender<(bool, bool)>>);
    impl Drop for Late {
        fn drop(&mut self) {
            let tx = self.0.take().unwrap();
            let pool = ThreadPool::builder()
                .workers(1)
                .thread_name("late")
                .build()
                .unwrap();
            let worker = |name: Option<&str>| name.is_some_and(|n| n.starts_with("late-"));
            // One item on the worker fails; the other, on this thread,
            // waits for `cancelled()`. Tried until the two items ran on the
            // two threads.
            for _ in 0..20 {
                let seen = Mutex::new(None);
                let r: Result<Vec<()>, ()> = pool.chunked(1).try_map(
                    |_: u32| {
                        if worker(std::thread::current().name()) {
                            std::thread::sleep(Duration::from_millis(20));
                            Err(())
                        } else {
                            *seen.lock().unwrap() = Some(wait_for_cancelled(2));
                            Ok(())
                        }
                    },
                    0..2u32,
                );
                let seen = seen.into_inner().unwrap();
                if let (Err(()), Some(seen)) = (r, seen) {
                    let _ = tx.send((seen, parpool::cancelled()));
                    return;
                }
            }
        }
    }
    thread_local!(static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) });
    guard(60, || {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            LATE.with(|l| *l.borrow_mut() = Some(Late(Some(tx))));
            // The token stack used after `LATE`: under the old stack, its
            // destructor ran before `LATE`'s.
            let pool = ThreadPool::with_workers(1);
            assert_eq!(
                pool.map(|x: u32| x + u32::from(parpool::cancelled()), 0..4u32),
                [0, 1, 2, 3]
            );
        })
        .join()
        .unwrap();
        let (item, after) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the destructor sent nothing");
        assert!(
            item,
            "a failed map's item on this thread saw no cancellation"
        );
        assert!(!after, "cancelled() after the map");
    });
}

type Shared = Arc<Mutex<Option<parpool::AsyncResult<u32>>>>;

/// Waits (untimed) for the handle in `cell`; what came of it: "waited", or
/// the start of the panic message.
fn wait_for(cell: &Shared) -> String {
    let guard = cell.lock().unwrap();
    let h = guard.as_ref().expect("the handle is there");
    match catch_unwind(AssertUnwindSafe(|| h.wait())) {
        Ok(()) => "waited".into(),
        Err(p) => {
            let m = common::panic_message(p.as_ref());
            if m.contains("a task waited for its own result") {
                "own result".into()
            } else {
                format!("other panic: {m}")
            }
        }
    }
}

/// Runs `body` as a task on a 1-worker pool, with the task's own handle in
/// the cell it is given; returns what `body` returned.
fn as_a_task(body: fn(&Arc<ThreadPool>, &Shared) -> String) -> String {
    let pool = Arc::new(ThreadPool::with_workers(1));
    let cell: Shared = Arc::default();
    let (tx, rx) = mpsc::channel();
    let (go_tx, go) = mpsc::channel::<()>();
    let (p, c) = (pool.clone(), cell.clone());
    let h = pool.apply_async(move || {
        go.recv().unwrap();
        tx.send(body(&p, &c)).unwrap();
        0
    });
    *cell.lock().unwrap() = Some(h);
    go_tx.send(()).unwrap();
    let out = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the task reported nothing (a hang?)");
    drop(cell.lock().unwrap().take());
    out
}

/// Where an untimed wait for a task that this very thread is running
/// panics ("a task waited for its own result"), context by context; the
/// same answers under the `RefCell<Vec>` stack before 337b71c.
#[test]
fn own_result_waits_are_refused_where_they_were() {
    quiet_panics_containing("its own result");
    let got = guard(120, || {
        let mut got = Vec::new();
        got.push(("the task itself", as_a_task(|_, cell| wait_for(cell))));
        got.push((
            "a task it inlined",
            as_a_task(|p, cell| {
                let c = cell.clone();
                let inner = p.apply_async(move || {
                    let _ = wait_for(&c);
                    1u32
                });
                let c = cell.clone();
                let inner2 = p.apply_async(move || u32::from(wait_for(&c) == "own result"));
                inner.get().unwrap();
                format!("{:?}", inner2.get())
            }),
        ));
        got.push((
            "a map item on its thread",
            as_a_task(|p, cell| {
                let c = cell.clone();
                p.map(move |_: u32| wait_for(&c), 0..2u32).join(",")
            }),
        ));
        got.push((
            "an imap item its consumer maps",
            as_a_task(|p, cell| {
                let c = cell.clone();
                p.imap(move |_: u32| wait_for(&c), 0..2u32)
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        ));
        got.push((
            "a map item in a task it inlined",
            as_a_task(|p, cell| {
                let (c, q) = (cell.clone(), p.clone());
                let inner = p.apply_async(move || {
                    let c = c.clone();
                    q.map(move |_: u32| wait_for(&c), 0..1u32).join(",")
                });
                inner.get().unwrap()
            }),
        ));
        got.push((
            "a scope task it inlined",
            as_a_task(|p, cell| {
                p.scope(|s| {
                    let c = cell.clone();
                    s.apply_async(move || wait_for(&c)).get().unwrap()
                })
            }),
        ));
        got.push((
            "after the inlined task that waited returned",
            as_a_task(|p, cell| {
                let inner = p.apply_async(|| 1u32);
                inner.get().unwrap();
                // Its own handle, timed: not refused, times out at once.
                let guard = cell.lock().unwrap();
                let timed = guard
                    .as_ref()
                    .unwrap()
                    .wait_timeout(Duration::from_millis(1));
                format!("timed wait: {timed}")
            }),
        ));
        got
    });
    let got: Vec<String> = got.into_iter().map(|(w, o)| format!("{w}: {o}")).collect();
    for line in &got {
        println!("{line}");
    }
    assert_eq!(
        got,
        [
            "the task itself: own result",
            "a task it inlined: Ok(1)",
            "a map item on its thread: own result,own result",
            "an imap item its consumer maps: own result,own result",
            "a map item in a task it inlined: own result",
            "a scope task it inlined: own result",
            "after the inlined task that waited returned: timed wait: false",
        ]
    );
}
