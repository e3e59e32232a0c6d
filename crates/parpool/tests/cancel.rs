//! Cancellation: `AsyncResult::cancel` before and after a task starts, and
//! `parpool::cancelled()` as seen by running tasks after `cancel`,
//! `terminate`, or dropping their `imap`.
//!
//! Tasks that wait for cancellation poll `cancelled()` with a deadline well
//! within the guard's timeout and report whether they saw it, so a missing
//! signal fails an assertion with a clear message instead of a hang.

mod common;

use common::{guard, wait_for_cancelled};
use parpool::{TaskError, ThreadPool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

#[test]
fn cancel_before_start_returns_true_and_get_reports_cancelled() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (release, blocked) = mpsc::channel::<()>();
        let blocker = pool.apply_async(move || blocked.recv().unwrap());
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        let (err_tx, err_rx) = mpsc::channel();
        let queued = pool
            .apply_async(move || {
                r.store(true, Ordering::SeqCst);
                1
            })
            .on_error(move |e| err_tx.send(e.clone()).unwrap());
        assert!(!queued.ready());
        assert!(queued.cancel());
        // Cancelled at once: ready, failed, and the error callback has run.
        assert!(queued.ready());
        assert_eq!(queued.successful(), Some(false));
        assert_eq!(err_rx.try_recv(), Ok(TaskError::Cancelled));
        // A second cancel finds the task already settled.
        assert!(!queued.cancel());
        assert_eq!(queued.get(), Err(TaskError::Cancelled));

        release.send(()).unwrap();
        assert_eq!(blocker.get(), Ok(()));
        pool.close();
        pool.join();
        assert!(!ran.load(Ordering::SeqCst), "a cancelled task ran anyway");
    });
}

#[test]
fn cancel_after_start_returns_false_and_the_task_sees_cancelled() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (started_tx, started) = mpsc::channel();
        let running = pool.apply_async(move || {
            let before = parpool::cancelled();
            started_tx.send(()).unwrap();
            let seen = wait_for_cancelled(10);
            (before, seen)
        });
        started.recv().unwrap();
        assert!(
            !running.cancel(),
            "cancel of a running task must return false"
        );
        // The task keeps running and its result is still delivered.
        assert_eq!(running.get(), Ok((false, true)));
    });
}

#[test]
fn cancel_after_completion_returns_false_and_keeps_the_result() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let done = pool.apply_async(|| 7);
        done.wait();
        assert!(!done.cancel());
        assert_eq!(done.get(), Ok(7));
    });
}

#[test]
fn cancelling_one_queued_task_leaves_the_others_alone() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (release, blocked) = mpsc::channel::<()>();
        let blocker = pool.apply_async(move || blocked.recv().unwrap());
        let handles: Vec<_> = (0..5).map(|i| pool.apply_async(move || i)).collect();
        assert!(handles[2].cancel());
        release.send(()).unwrap();
        blocker.get().unwrap();
        let results: Vec<_> = handles.into_iter().map(|h| h.get()).collect();
        assert_eq!(
            results,
            [Ok(0), Ok(1), Err(TaskError::Cancelled), Ok(3), Ok(4)]
        );
    });
}

#[test]
fn a_long_task_sees_cancelled_after_terminate() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (started_tx, started) = mpsc::channel();
        let long = pool.apply_async(move || {
            started_tx.send(()).unwrap();
            if wait_for_cancelled(10) {
                "stopped early"
            } else {
                "never saw cancelled"
            }
        });
        let queued = pool.apply_async(|| "never runs");
        started.recv().unwrap();
        pool.terminate();
        assert_eq!(long.get(), Ok("stopped early"));
        assert_eq!(queued.get(), Err(TaskError::Cancelled));
        pool.join();
    });
}

#[test]
fn imap_tasks_see_cancelled_after_terminate() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (started_tx, started) = mpsc::channel();
        let started_tx = std::sync::Mutex::new(started_tx);
        let mut it = pool
            .imap(
                move |_: u32| {
                    started_tx.lock().unwrap().send(()).unwrap();
                    wait_for_cancelled(10)
                },
                0..4,
            )
            .chunksize(1);
        // Start the stream without consuming it: the first next() would
        // block until the first item finishes, so drive it from a thread.
        let consumer = std::thread::spawn(move || it.next_timeout(Duration::from_secs(20)));
        started.recv().unwrap();
        pool.terminate();
        // The running item saw the terminate and returned `true`.
        assert_eq!(consumer.join().unwrap(), Ok(Some(true)));
        pool.join();
    });
}

#[test]
fn imap_tasks_see_cancelled_after_the_iterator_is_dropped() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let saw = Arc::new(AtomicUsize::new(0));
        let missed = Arc::new(AtomicUsize::new(0));
        let (started_tx, started) = mpsc::channel();
        let started_tx = std::sync::Mutex::new(started_tx);
        let (s, m) = (Arc::clone(&saw), Arc::clone(&missed));
        let mut it = pool
            .imap(
                move |i: u32| {
                    if i == 0 {
                        return i;
                    }
                    let _ = started_tx.lock().unwrap().send(i);
                    if wait_for_cancelled(10) {
                        s.fetch_add(1, Ordering::SeqCst);
                    } else {
                        m.fetch_add(1, Ordering::SeqCst);
                    }
                    i
                },
                0..100,
            )
            .chunksize(1)
            .buffer(4);
        assert_eq!(it.next(), Some(0));
        // Some later item is running now; drop the iterator under it.
        started.recv().unwrap();
        drop(it);
        pool.close();
        pool.join();
        assert!(saw.load(Ordering::SeqCst) >= 1);
        assert_eq!(
            missed.load(Ordering::SeqCst),
            0,
            "a task never saw cancelled()"
        );
    });
}

#[test]
fn imap_unordered_tasks_see_cancelled_after_the_iterator_is_dropped() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (started_tx, started) = mpsc::channel();
        let started_tx = std::sync::Mutex::new(started_tx);
        let (seen_tx, seen) = mpsc::channel();
        let seen_tx = std::sync::Mutex::new(seen_tx);
        let mut it = pool
            .imap_unordered(
                move |_: u32| {
                    started_tx.lock().unwrap().send(()).unwrap();
                    let saw = wait_for_cancelled(10);
                    seen_tx.lock().unwrap().send(saw).unwrap();
                },
                0..10,
            )
            .chunksize(1);
        // Starts the stream; no item can finish before it is cancelled.
        assert_eq!(
            it.next_timeout(Duration::from_millis(1)),
            Err(TaskError::Timeout)
        );
        // Drop the iterator only once an item is running.
        started.recv().unwrap();
        drop(it);
        assert_eq!(seen.recv(), Ok(true));
        pool.close();
        pool.join();
    });
}

#[test]
fn cancelled_is_false_outside_tasks_and_in_wanted_tasks() {
    guard(30, || {
        assert!(!parpool::cancelled());
        assert!(!std::thread::spawn(parpool::cancelled).join().unwrap());

        let pool = ThreadPool::with_workers(2);
        assert!(!parpool::cancelled());
        assert_eq!(pool.apply_async(parpool::cancelled).get(), Ok(false));
        assert!(!pool.apply(parpool::cancelled));
        assert!(pool
            .map(|_: u32| parpool::cancelled(), 0..64)
            .iter()
            .all(|c| !c));
        assert!(pool.imap(|_: u32| parpool::cancelled(), 0..64).all(|c| !c));
        assert!(pool
            .scope(|s| s.apply_async(parpool::cancelled).get())
            .is_ok_and(|c| !c));

        // After terminate, the caller's own thread is still not in a task.
        pool.terminate();
        assert!(!parpool::cancelled());
        pool.join();
        assert!(!parpool::cancelled());
    });
}

#[test]
fn cancel_a_scoped_task_before_it_starts() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let ran = AtomicBool::new(false);
        let (release, blocked) = mpsc::channel::<()>();
        let result = pool.scope(|s| {
            let blocker = s.apply_async(move || blocked.recv().unwrap());
            let queued = s.apply_async(|| ran.store(true, Ordering::SeqCst));
            let cancelled = queued.cancel();
            release.send(()).unwrap();
            blocker.get().unwrap();
            (cancelled, queued.get())
        });
        assert_eq!(result, (true, Err(TaskError::Cancelled)));
        assert!(!ran.load(Ordering::SeqCst));
    });
}

/// `terminate`'s docs: "cancelled turns true inside running tasks". A
/// `map_async` is one task to its caller, so every one of its running items
/// should see it, whichever thread runs the item.
#[test]
fn map_async_items_see_cancelled_after_terminate() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let (started_tx, started) = mpsc::channel();
        let started_tx = std::sync::Mutex::new(started_tx);
        let missed = Arc::new(AtomicUsize::new(0));
        let m = Arc::clone(&missed);
        let handle = pool.chunked(1).map_async(
            move |i: u32| {
                let _ = started_tx.lock().unwrap().send(i);
                if !wait_for_cancelled(5) {
                    m.fetch_add(1, Ordering::SeqCst);
                }
            },
            0..2,
        );
        // Both items are running, one on each worker.
        started.recv().unwrap();
        started.recv().unwrap();
        pool.terminate();
        let _ = handle.get();
        pool.join();
        assert_eq!(
            missed.load(Ordering::SeqCst),
            0,
            "a running map_async item never saw cancelled() after terminate"
        );
    });
}

/// `AsyncResult::cancel`'s docs: a task that already started keeps running,
/// "but cancelled turns true inside it". For `map_async` the task is the
/// whole map, so each of its running items should see it.
#[test]
fn map_async_items_see_cancelled_after_cancel() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let (started_tx, started) = mpsc::channel();
        let started_tx = std::sync::Mutex::new(started_tx);
        let handle = pool.chunked(1).map_async(
            move |i: u32| {
                let _ = started_tx.lock().unwrap().send(i);
                wait_for_cancelled(5)
            },
            0..2,
        );
        started.recv().unwrap();
        started.recv().unwrap();
        assert!(!handle.cancel(), "the map has started");
        assert_eq!(
            handle.get(),
            Ok(vec![true, true]),
            "every running item of a cancelled map_async should see cancelled()"
        );
    });
}

/// `terminate`'s docs: a running chunk stops between items, so a
/// `map_async` handle reports `Cancelled` soon instead of running the rest.
#[test]
fn terminate_stops_a_running_map_async() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        let (started_tx, started) = mpsc::channel();
        let started_tx = std::sync::Mutex::new(started_tx);
        let handle = pool.chunked(1).map_async(
            move |_: u32| {
                r.fetch_add(1, Ordering::SeqCst);
                let _ = started_tx.lock().unwrap().send(());
                std::thread::sleep(Duration::from_millis(5));
            },
            0..400,
        );
        started.recv().unwrap();
        pool.terminate();
        assert_eq!(handle.get(), Err(TaskError::Cancelled));
        pool.join();
        // Only items already running (or claimed) when terminate came ran:
        // 400 items of 5 ms would take a second per worker.
        let ran = ran.load(Ordering::SeqCst);
        assert!(ran < 200, "{ran} of 400 items ran after terminate");
    });
}
