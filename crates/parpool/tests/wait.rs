//! Waiting on many handles: `as_completed` yields them as they finish, and
//! `wait` returns `(done, pending)` for each `WaitFor`, like
//! `concurrent.futures`.
//!
//! Only `as_completed_yields_in_order_of_known_sleep_times` depends on timing,
//! with widely spaced sleeps; the others hold tasks back on channels, so what
//! is done and what is pending is fixed by the test, not by the scheduler.

mod common;

use common::guard;
use parpool::{AsyncResult, TaskError, ThreadPool, WaitFor};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A task that returns `value` once the returned sender sends (or is dropped).
fn held(pool: &ThreadPool, value: i32) -> (AsyncResult<i32>, mpsc::Sender<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = pool.apply_async(move || {
        let _ = rx.recv();
        value
    });
    (handle, tx)
}

fn values(handles: Vec<AsyncResult<i32>>) -> Vec<Result<i32, TaskError>> {
    handles.into_iter().map(AsyncResult::get).collect()
}

#[test]
fn as_completed_yields_in_order_of_known_sleep_times() {
    guard(60, || {
        let pool = ThreadPool::with_workers(3);
        // The sleeps start together, once all three tasks run: a worker
        // slow to start (under Miri a thread's start-up takes a lot of
        // its virtual time) must not reorder them.
        let all_running = Arc::new(std::sync::Barrier::new(3));
        let handles: Vec<_> = [600u64, 20, 300]
            .into_iter()
            .map(|ms| {
                let all_running = Arc::clone(&all_running);
                pool.apply_async(move || {
                    all_running.wait();
                    std::thread::sleep(Duration::from_millis(ms));
                    ms
                })
            })
            .collect();
        let order: Vec<u64> = parpool::as_completed(handles)
            .map(|h| {
                assert!(h.ready());
                h.get().unwrap()
            })
            .collect();
        assert_eq!(order, [20, 300, 600]);
    });
}

#[test]
fn as_completed_follows_the_order_tasks_are_released() {
    guard(30, || {
        let pool = ThreadPool::with_workers(4);
        let (a, release_a) = held(&pool, 0);
        let (b, release_b) = held(&pool, 1);
        let (c, release_c) = held(&pool, 2);
        let mut it = parpool::as_completed(vec![a, b, c]);
        assert_eq!(it.size_hint(), (3, Some(3)));
        // Release in the order c, a, b; each is yielded before the next goes.
        for (release, expected) in [(release_c, 2), (release_a, 0), (release_b, 1)] {
            release.send(()).unwrap();
            let done = it.next().expect("a handle");
            assert_eq!(done.get(), Ok(expected));
        }
        assert!(it.next().is_none());
    });
}

#[test]
fn as_completed_yields_already_finished_handles_first_in_given_order() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let quick: Vec<_> = (10..13).map(|v| pool.apply_async(move || v)).collect();
        for h in &quick {
            h.wait();
        }
        let (slow, release) = held(&pool, 99);
        let mut quick = quick.into_iter();
        let (q10, q11, q12) = (
            quick.next().unwrap(),
            quick.next().unwrap(),
            quick.next().unwrap(),
        );
        let it = parpool::as_completed(vec![slow, q12, q10, q11]);
        release.send(()).unwrap();
        assert_eq!(values(it.collect()), [Ok(12), Ok(10), Ok(11), Ok(99)]);
    });
}

#[test]
fn as_completed_reports_failed_and_cancelled_handles_too() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = held(&pool, 0);
        let queued = pool.apply_async(|| 5);
        assert!(queued.cancel());
        // Runs on the only worker after the blocker.
        let panicking = pool.apply_async(|| -> i32 { panic!("as_completed boom") });
        let mut it = parpool::as_completed(vec![blocker, panicking, queued]);
        // The cancelled handle was already finished: it comes first.
        assert_eq!(it.next().unwrap().get(), Err(TaskError::Cancelled));
        release.send(()).unwrap();
        assert_eq!(it.next().unwrap().get(), Ok(0));
        let failed = it.next().unwrap().get();
        assert!(
            matches!(&failed, Err(TaskError::Panicked(m)) if m.contains("as_completed boom")),
            "{failed:?}"
        );
        assert!(it.next().is_none());
    });
}

#[test]
fn as_completed_next_timeout_times_out_and_stays_usable() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (slow, release) = held(&pool, 7);
        let mut it = parpool::as_completed(vec![slow]);
        assert_eq!(
            it.next_timeout(Duration::from_millis(20))
                .map(|h| h.is_some()),
            Err(TaskError::Timeout)
        );
        release.send(()).unwrap();
        let done = it.next_timeout(Duration::from_secs(20)).unwrap().unwrap();
        assert_eq!(done.get(), Ok(7));
        assert!(it.next_timeout(Duration::from_secs(20)).unwrap().is_none());
    });
}

#[test]
fn as_completed_of_nothing_is_empty() {
    guard(10, || {
        let mut it = parpool::as_completed(Vec::<AsyncResult<()>>::new());
        assert!(it.next().is_none());
    });
}

#[test]
fn wait_first_completed_returns_after_one_task() {
    guard(30, || {
        let pool = ThreadPool::with_workers(3);
        let (a, release_a) = held(&pool, 1);
        let (b, release_b) = held(&pool, 2);
        let (c, release_c) = held(&pool, 3);
        release_b.send(()).unwrap();
        let (done, pending) = parpool::wait(vec![a, b, c], None, WaitFor::FirstCompleted);
        assert_eq!(done.len(), 1);
        assert_eq!(pending.len(), 2);
        assert!(pending.iter().all(|h| !h.ready()));
        assert_eq!(values(done), [Ok(2)]);
        release_a.send(()).unwrap();
        release_c.send(()).unwrap();
        // Pending keeps the order given.
        assert_eq!(values(pending), [Ok(1), Ok(3)]);
    });
}

#[test]
fn wait_first_error_returns_at_the_first_failure() {
    guard(30, || {
        let pool = ThreadPool::with_workers(3);
        let (ok, release_ok) = held(&pool, 1);
        let (held_back, release_held) = held(&pool, 3);
        let (go, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let failing = pool.apply_async(move || -> i32 {
            let _ = gate.lock().unwrap().recv();
            panic!("first error")
        });
        // `ok` finishes first, then `failing` fails (before or during the
        // wait); `held_back` cannot finish before `wait` returns.
        release_ok.send(()).unwrap();
        ok.wait();
        go.send(()).unwrap();
        let (done, pending) =
            parpool::wait(vec![ok, held_back, failing], None, WaitFor::FirstError);
        assert_eq!(done.len(), 2, "done: the success, then the failure");
        assert_eq!(done[0].successful(), Some(true));
        assert_eq!(done[1].successful(), Some(false));
        assert_eq!(pending.len(), 1);
        assert!(!pending[0].ready());
        let done = values(done);
        assert_eq!(done[0], Ok(1));
        assert!(matches!(&done[1], Err(TaskError::Panicked(m)) if m.contains("first error")));
        release_held.send(()).unwrap();
        assert_eq!(values(pending), [Ok(3)]);
    });
}

#[test]
fn wait_first_error_counts_a_cancelled_task_as_a_failure() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (blocker, release) = held(&pool, 0);
        let queued = pool.apply_async(|| 1);
        assert!(queued.cancel());
        let (done, pending) = parpool::wait(vec![blocker, queued], None, WaitFor::FirstError);
        assert_eq!(values(done), [Err(TaskError::Cancelled)]);
        release.send(()).unwrap();
        assert_eq!(values(pending), [Ok(0)]);
    });
}

#[test]
fn wait_first_error_without_errors_waits_for_all() {
    guard(30, || {
        let pool = ThreadPool::with_workers(3);
        let (a, release_a) = held(&pool, 1);
        let (b, release_b) = held(&pool, 2);
        let waiter =
            std::thread::spawn(move || parpool::wait(vec![a, b], None, WaitFor::FirstError));
        release_b.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        release_a.send(()).unwrap();
        let (done, pending) = waiter.join().unwrap();
        assert!(pending.is_empty());
        let mut done: Vec<i32> = done.into_iter().map(|h| h.get().unwrap()).collect();
        done.sort_unstable();
        assert_eq!(done, [1, 2]);
    });
}

#[test]
fn wait_all_completed_waits_for_every_task_failures_included() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let (a, release_a) = held(&pool, 1);
        let failing = pool.apply_async(|| -> i32 { panic!("not fatal for AllCompleted") });
        let quick = pool.apply_async(|| 3);
        failing.wait();
        quick.wait();
        let waiter = std::thread::spawn(move || {
            parpool::wait(vec![a, failing, quick], None, WaitFor::AllCompleted)
        });
        std::thread::sleep(Duration::from_millis(20));
        release_a.send(()).unwrap();
        let (done, pending) = waiter.join().unwrap();
        assert!(pending.is_empty());
        assert_eq!(done.len(), 3);
        assert!(done.iter().all(AsyncResult::ready));
        let failures = done
            .iter()
            .filter(|h| h.successful() == Some(false))
            .count();
        assert_eq!(failures, 1);
        // The held task finished last (the others were done before `wait`).
        assert_eq!(values(done).pop(), Some(Ok(1)));
    });
}

#[test]
fn wait_with_a_timeout_returns_what_finished_in_time() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        for until in [
            WaitFor::FirstCompleted,
            WaitFor::FirstError,
            WaitFor::AllCompleted,
        ] {
            let (slow, release) = held(&pool, 9);
            let quick = pool.apply_async(|| 1);
            quick.wait();
            let (done, pending) =
                parpool::wait(vec![slow, quick], Some(Duration::from_millis(50)), until);
            assert_eq!(values(done), [Ok(1)], "{until:?}");
            assert_eq!(pending.len(), 1, "{until:?}");
            assert!(!pending[0].ready());
            release.send(()).unwrap();
            assert_eq!(values(pending), [Ok(9)]);
        }
    });
}

#[test]
fn wait_with_a_timeout_and_nothing_finished_returns_all_pending() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let (a, release_a) = held(&pool, 1);
        let (b, release_b) = held(&pool, 2);
        let (done, pending) = parpool::wait(
            vec![a, b],
            Some(Duration::from_millis(30)),
            WaitFor::AllCompleted,
        );
        assert!(done.is_empty());
        assert_eq!(pending.len(), 2);
        release_a.send(()).unwrap();
        release_b.send(()).unwrap();
        assert_eq!(values(pending), [Ok(1), Ok(2)]);
    });
}

#[test]
fn wait_on_nothing_returns_at_once() {
    guard(10, || {
        for until in [
            WaitFor::FirstCompleted,
            WaitFor::FirstError,
            WaitFor::AllCompleted,
        ] {
            let (done, pending) = parpool::wait(Vec::<AsyncResult<u8>>::new(), None, until);
            assert!(done.is_empty() && pending.is_empty());
        }
    });
}

#[test]
fn as_completed_and_wait_inside_a_task_of_a_one_worker_pool() {
    guard(30, || {
        let pool = std::sync::Arc::new(ThreadPool::with_workers(1));
        let p = std::sync::Arc::clone(&pool);
        let outer = pool.apply_async(move || {
            // The only worker is busy running this task, so the sub-tasks
            // can only run if waiting on them helps with queued work.
            let subs: Vec<_> = (1..=3).map(|i| p.apply_async(move || i * 10)).collect();
            let mut seen: Vec<i32> = parpool::as_completed(subs)
                .map(|h| h.get().unwrap())
                .collect();
            seen.sort_unstable();
            let subs: Vec<_> = (1..=3).map(|i| p.apply_async(move || i)).collect();
            let (done, pending) = parpool::wait(subs, None, WaitFor::AllCompleted);
            let total: i32 = done.into_iter().map(|h| h.get().unwrap()).sum();
            (seen, total, pending.len())
        });
        assert_eq!(outer.get(), Ok((vec![10, 20, 30], 6, 0)));
    });
}
