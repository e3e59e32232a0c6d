//! Waits that can never end, because the waiting thread is itself finishing
//! what it waits for, panic with a message in every untimed form of wait
//! (timed ones time out at once); and a callback run by `terminate`'s drain
//! that waits for a task queued behind its own goes on draining.
//! Neighbours of `hostile_matrix.rs`'s findings: each form of wait, a wait
//! nested through an inlined task, `as_completed` with other handles still
//! able to finish, and the drain's callbacks waiting on a plain thread.
mod common;

use common::{guard, occupy_the_worker, quiet_panics_containing};
use parpool::{AsyncResult, TaskError, ThreadPool, WaitFor};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

type Cell = Arc<Mutex<Option<AsyncResult<u32>>>>;

const HOUR: Duration = Duration::from_secs(3600);

fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Waits for `h` in the way named by `how`; returns what the wait gave.
fn wait_in(how: &str, mut h: AsyncResult<u32>) -> String {
    match how {
        "get" => format!("{:?}", h.get()),
        "get_timeout" => format!("{:?}", h.get_timeout(HOUR)),
        "wait" => {
            h.wait();
            "waited".into()
        }
        "wait_timeout" => format!("{}", h.wait_timeout(HOUR)),
        "block_on" => format!("{:?}", futures::executor::block_on(h)),
        "as_completed" => format!("{}", parpool::as_completed(vec![h]).count()),
        "wait_all" => {
            let (done, pending) = parpool::wait(vec![h], Some(HOUR), WaitFor::AllCompleted);
            format!("{} {}", done.len(), pending.len())
        }
        other => panic!("unknown wait {other}"),
    }
}

const WAYS: [&str; 7] = [
    "get",
    "get_timeout",
    "wait",
    "wait_timeout",
    "block_on",
    "as_completed",
    "wait_all",
];

/// Whether `how` is a timed wait (an hour here).
fn timed(how: &str) -> bool {
    matches!(how, "get_timeout" | "wait_timeout" | "wait_all")
}

/// A task that waits for its own handle, in every way and on pools of one
/// and two workers: an untimed wait panics naming the mistake; a timed one
/// times out at once instead of waiting out its hour (the result cannot
/// come before the task returns).
#[test]
fn every_wait_of_a_task_for_itself_panics_or_times_out_at_once() {
    quiet_panics_containing("its own result");
    guard(60, || {
        for workers in [1, 2] {
            let pool = ThreadPool::with_workers(workers);
            for how in WAYS {
                let cell: Cell = Arc::default();
                let (go, went) = mpsc::channel::<()>();
                let (tx, rx) = mpsc::channel();
                let c = Arc::clone(&cell);
                let h = pool.apply_async(move || {
                    went.recv().unwrap();
                    let me = c.lock().unwrap().take().expect("the handle was stored");
                    let t = Instant::now();
                    let r = catch_unwind(AssertUnwindSafe(|| wait_in(how, me)));
                    tx.send((r.map_err(|p| message(&*p)), t.elapsed())).unwrap();
                    7
                });
                *cell.lock().unwrap() = Some(h);
                go.send(()).unwrap();
                let (r, took) = rx
                    .recv_timeout(Duration::from_secs(20))
                    .expect("a wait hung");
                let what = format!("{workers} workers, {how}");
                match how {
                    "get_timeout" => assert_eq!(r.as_deref(), Ok("Err(Timeout)"), "{what}"),
                    "wait_timeout" => assert_eq!(r.as_deref(), Ok("false"), "{what}"),
                    "wait_all" => assert_eq!(r.as_deref(), Ok("0 1"), "{what}"),
                    _ => {
                        let m = r.expect_err(&format!("{what}: the wait returned"));
                        assert!(m.contains("its own result"), "{what}: {m}");
                    }
                }
                assert!(took < Duration::from_secs(10), "{what} waited {took:?}");
            }
            pool.close();
            pool.join();
        }
    });
}

/// On a one-worker pool, task A waits for B, queued behind it, so the
/// worker runs B inline; B then waits for A, which this very thread runs
/// below it. An untimed wait of B's panics (B fails with that message, and
/// A's wait for B returns that failure); a timed one times out at once and
/// B returns: nothing hangs.
#[test]
fn a_task_inlined_by_its_waiter_that_waits_for_the_waiter_panics() {
    quiet_panics_containing("its own result");
    guard(60, || {
        for how in WAYS {
            let pool = ThreadPool::with_workers(1);
            let (a_cell, b_cell): (Cell, Cell) = (Arc::default(), Arc::default());
            let (go, went) = mpsc::channel::<()>();
            let b_of_a = Arc::clone(&b_cell);
            let a = pool.apply_async(move || {
                went.recv().unwrap();
                let b = b_of_a.lock().unwrap().take().expect("B was stored");
                match b.get() {
                    Err(TaskError::Panicked(m)) if m.contains("its own result") => 1,
                    Ok(2) if timed(how) => 1,
                    other => panic!("{how}: A's wait for B gave {other:?}"),
                }
            });
            let a_of_b = Arc::clone(&a_cell);
            let b = pool.apply_async(move || {
                let a = a_of_b.lock().unwrap().take().expect("A was stored");
                wait_in(how, a);
                2
            });
            *b_cell.lock().unwrap() = Some(b);
            // A's own handle goes to B; the test keeps nothing to wait on A
            // with, so it learns A's verdict from the pool's stats.
            *a_cell.lock().unwrap() = Some(a);
            go.send(()).unwrap();
            pool.close();
            pool.join();
            let stats = pool.stats();
            let panicked = usize::from(!timed(how));
            assert_eq!(stats.panicked, panicked, "{how}: {stats:?}");
            assert_eq!(stats.completed, 2, "{how}: {stats:?}");
        }
    });
}

/// `as_completed` and `wait()` inside a task, over its own handle and two
/// others: the others come out; only once the task's own handle is all
/// that is left does the wait panic. `FirstCompleted` returns with one of
/// the others and never panics.
#[test]
fn as_completed_refuses_only_when_nothing_but_own_work_is_left() {
    quiet_panics_containing("its own result");
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for how in ["as_completed", "wait_all", "wait_first"] {
            let cell: Cell = Arc::default();
            let (go, went) = mpsc::channel::<()>();
            let (tx, rx) = mpsc::channel();
            let c = Arc::clone(&cell);
            let p = Arc::new(ThreadPool::with_workers(2));
            let h = pool.apply_async(move || {
                went.recv().unwrap();
                let me = c.lock().unwrap().take().unwrap();
                let others = [p.apply_async(|| 1), p.apply_async(|| 2)];
                let mut seen = Vec::new();
                let r = catch_unwind(AssertUnwindSafe(|| match how {
                    "as_completed" => {
                        let mut it = parpool::as_completed([me].into_iter().chain(others));
                        for h in &mut it {
                            seen.push(h.get().unwrap());
                        }
                    }
                    "wait_all" => {
                        parpool::wait([me].into_iter().chain(others), None, WaitFor::AllCompleted);
                    }
                    _ => {
                        let (done, pending) = parpool::wait(
                            [me].into_iter().chain(others),
                            None,
                            WaitFor::FirstCompleted,
                        );
                        seen.extend(done.into_iter().map(|h| h.get().unwrap()));
                        assert_eq!(pending.len(), 2, "the own handle and one other");
                    }
                }));
                seen.sort_unstable();
                tx.send((r.map_err(|p| message(&*p)), seen)).unwrap();
                0
            });
            *cell.lock().unwrap() = Some(h);
            go.send(()).unwrap();
            let (r, seen) = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("a wait hung");
            match how {
                "wait_first" => {
                    assert_eq!(r, Ok(()), "{how}");
                    assert_eq!(seen.len(), 1, "{how}: {seen:?}");
                }
                _ => {
                    let m = r.expect_err(how);
                    assert!(m.contains("its own result"), "{how}: {m}");
                    if how == "as_completed" {
                        assert_eq!(seen, [1, 2], "the others came out first");
                    }
                }
            }
        }
    });
}

/// `terminate` called on a plain thread drains a task whose error callback
/// waits for a task queued behind it, in every way: the wait goes on
/// draining, so it sees that task cancelled, and `terminate` returns while
/// the worker is still busy.
#[test]
fn a_drained_callback_waiting_for_a_later_task_sees_it_cancelled() {
    guard(60, || {
        for how in WAYS {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let (blocker, release) = occupy_the_worker(&pool);
            let later: Cell = Arc::default();
            let (tx, rx) = mpsc::channel();
            let l = Arc::clone(&later);
            let first = pool.apply_async(|| 1).on_error(move |e| {
                assert_eq!(*e, TaskError::Cancelled);
                let b = l.lock().unwrap().take().expect("the later task was stored");
                tx.send(wait_in(how, b)).unwrap();
            });
            *later.lock().unwrap() = Some(pool.apply_async(|| 2));
            pool.terminate();
            let got = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("no wait result");
            let want = match how {
                "get" | "get_timeout" | "block_on" => "Err(Cancelled)",
                "wait" => "waited",
                "wait_timeout" => "true",
                "as_completed" => "1",
                _ => "1 0",
            };
            assert_eq!(got, want, "{how}");
            assert_eq!(first.get(), Err(TaskError::Cancelled));
            release.send(()).unwrap();
            drop(blocker);
            pool.join();
        }
    });
}
