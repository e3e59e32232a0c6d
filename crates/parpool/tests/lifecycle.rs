//! close / terminate / join in every order, twice, and Drop.
mod common;

use common::{guard, panic_message, stopped};
use parpool::{TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn refused(pool: &ThreadPool) -> String {
    let err = pool.apply_async(|| 1).get().expect_err("must refuse");
    assert_eq!(err, TaskError::NotRunning);
    err.to_string()
}

#[test]
fn close_then_join_finishes_queued_work() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let handles: Vec<_> = (0..50)
            .map(|i| {
                pool.apply_async(move || {
                    std::thread::sleep(Duration::from_millis(1));
                    i
                })
            })
            .collect();
        pool.close();
        assert!(refused(&pool).contains("pool not running"));
        pool.join();
        let sum: i32 = handles.into_iter().map(|h| h.get().unwrap()).sum();
        assert_eq!(sum, (0..50).sum());
        // every ordering of repeated calls is fine
        pool.close();
        pool.join();
        pool.terminate();
        pool.join();
    });
}

#[test]
fn terminate_discards_queued_work_with_cancelled() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (release, wait) = mpsc::channel::<()>();
        let (started, has_started) = mpsc::channel::<()>();
        let running = pool.apply_async(move || {
            started.send(()).unwrap();
            wait.recv().unwrap();
            "ran"
        });
        // The worker is inside `running` (a sleep was not enough under
        // Miri, whose worker had not started it: `release` then failed).
        has_started.recv().unwrap();
        let queued: Vec<_> = (0..10).map(|i| pool.apply_async(move || i)).collect();
        pool.terminate();
        assert!(refused(&pool).contains("closed or terminated"));
        release.send(()).unwrap();
        pool.join();
        for q in queued {
            assert_eq!(q.get(), Err(TaskError::Cancelled));
        }
        let stats = pool.stats();
        assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
        // The running task finished (or, if it had not started, was cancelled).
        let r = running.get();
        assert!(r == Ok("ran") || r == Err(TaskError::Cancelled), "{r:?}");
        pool.terminate();
        pool.close();
        pool.join();
    });
}

#[test]
fn every_order_of_close_terminate_join_is_safe() {
    guard(60, || {
        type Op = fn(&ThreadPool);
        let ops: [(&str, Op); 3] = [
            ("close", |p| p.close()),
            ("terminate", |p| p.terminate()),
            ("join", |p| {
                if !p.is_running() {
                    p.join()
                }
            }),
        ];
        for a in 0..3 {
            for b in 0..3 {
                for c in 0..3 {
                    let pool = ThreadPool::with_workers(2);
                    let h = pool.apply_async(|| 1);
                    for i in [a, b, c, a] {
                        (ops[i].1)(&pool);
                    }
                    if pool.is_running() {
                        pool.close();
                    }
                    pool.join();
                    let r = h.get();
                    assert!(r == Ok(1) || r == Err(TaskError::Cancelled), "{r:?}");
                }
            }
        }
    });
}

#[test]
fn join_on_a_running_pool_panics() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let err = catch_unwind(AssertUnwindSafe(|| pool.join())).expect_err("must panic");
        assert!(panic_message(err.as_ref()).contains("running pool"));
        assert_eq!(pool.apply(|| 2), 2, "still usable");
    });
}

#[test]
fn task_submissions_to_a_closed_pool_report_not_running() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        pool.close();
        type Call = Box<dyn Fn(&ThreadPool) -> Option<TaskError>>;
        let calls: Vec<Call> = vec![
            Box::new(|p| p.apply_async(|| 1).get().err()),
            Box::new(|p| p.map_async(|x| x, 0..3u8).get().err()),
            Box::new(|p| p.starmap_async(|a: u8| a, vec![(1,)]).get().err()),
            Box::new(|p| p.scope(|s| s.apply_async(|| 1).get().err())),
        ];
        for (i, call) in calls.iter().enumerate() {
            let err = catch_unwind(AssertUnwindSafe(|| call(&pool))).expect("must not panic");
            assert_eq!(err, Some(TaskError::NotRunning), "call {i}");
        }
    });
}

#[test]
fn blocking_calls_and_streams_on_a_closed_or_terminated_pool_run_on_the_caller() {
    guard(30, || {
        for terminate in [false, true] {
            let pool = stopped(terminate);
            let me = std::thread::current().id();
            assert_eq!(pool.apply(|| std::thread::current().id()), me);
            assert_eq!(pool.map(|x| x * 2, 0..5u8), [0, 2, 4, 6, 8]);
            assert_eq!(pool.starmap(|a: u8, b: u8| a + b, vec![(1, 2)]), [3]);
            assert_eq!(pool.try_map(Ok::<u8, ()>, 0..3u8), Ok(vec![0, 1, 2]));
            assert_eq!(pool.chunked(1).map(|x| x + 1, vec![1, 2, 3]), [2, 3, 4]);
            // Streams made on a pool that no longer runs run on the consumer.
            let v: Vec<u8> = pool.imap(|x: u8| x + 1, 0..3u8).collect();
            assert_eq!(v, [1, 2, 3]);
            let mut u: Vec<u8> = pool.imap_unordered(|x: u8| x, 0..3u8).collect();
            u.sort();
            assert_eq!(u, [0, 1, 2]);
        }
    });
}

#[test]
fn drop_closes_and_joins_so_queued_work_finishes() {
    guard(30, || {
        let done = Arc::new(AtomicUsize::new(0));
        let pool = ThreadPool::with_workers(2);
        for _ in 0..20 {
            let done = Arc::clone(&done);
            drop(pool.apply_async(move || {
                std::thread::sleep(Duration::from_millis(2));
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        drop(pool);
        assert_eq!(done.load(Ordering::SeqCst), 20);
    });
}

#[test]
fn dropping_the_pool_on_its_own_worker_does_not_deadlock() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        let inner = Arc::clone(&pool);
        let h = pool.apply_async(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(inner); // may be the last handle by then
            "dropped"
        });
        drop(pool);
        assert_eq!(h.get(), Ok("dropped"));
    });
}

#[test]
fn terminate_stops_a_running_map_chunk_between_items() {
    guard(30, || {
        // 1 worker + the caller; the imap's chunk runs on the worker with a
        // forced large chunk of slow items. After terminate, the chunk stops
        // at the next item instead of finishing all 200 (2 s).
        let pool = Arc::new(ThreadPool::with_workers(1));
        let ran = Arc::new(AtomicUsize::new(0));
        let ran2 = Arc::clone(&ran);
        let mut it = pool
            .imap(
                move |_: u32| {
                    ran2.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                },
                0..200,
            )
            .chunksize(200);
        let t = std::thread::spawn({
            let pool = Arc::clone(&pool);
            move || {
                std::thread::sleep(Duration::from_millis(50));
                pool.terminate();
                pool.join();
            }
        });
        // Results computed before the terminate are delivered, then the
        // iterator reports the cancellation.
        let mut delivered = 0;
        let r = loop {
            match it.next_timeout(Duration::from_secs(20)) {
                Ok(Some(())) => delivered += 1,
                other => break other,
            }
        };
        t.join().unwrap();
        assert_eq!(r, Err(TaskError::Cancelled));
        let ran = ran.load(Ordering::SeqCst);
        assert!(ran < 200, "the chunk stopped early (ran {ran})");
        assert!(delivered <= ran);
    });
}

#[test]
fn a_blocking_map_still_returns_every_result_after_terminate() {
    guard(60, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        let p2 = Arc::clone(&pool);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            p2.terminate();
        });
        let out = pool.chunked(1).map(
            |x: u32| {
                std::thread::sleep(Duration::from_millis(1));
                x * 2
            },
            0..300,
        );
        t.join().unwrap();
        assert_eq!(out, (0..300).map(|x| x * 2).collect::<Vec<_>>());
        pool.join();
        let stats = pool.stats();
        assert_eq!(
            (stats.queued, stats.running, stats.completed),
            (0, 0, 300),
            "{stats:?}"
        );
    });
}
