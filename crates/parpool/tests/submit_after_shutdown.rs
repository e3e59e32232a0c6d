//! Every submission method on a pool that was closed or terminated before
//! the call: none panics in the submitting thread. Task submissions report
//! `TaskError::NotRunning`; blocking calls, `spawn` and streams do the work
//! on the calling (consuming) thread. Also `spawn`'s panic routing.
mod common;

use common::{guard, stopped};
use parpool::{TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;

fn me() -> ThreadId {
    std::thread::current().id()
}

#[test]
fn task_submissions_report_not_running_after_close_and_after_terminate() {
    guard(30, || {
        for terminate in [false, true] {
            let pool = stopped(terminate);
            let nr = Err(TaskError::NotRunning);
            assert_eq!(pool.apply_async(|| 1).get(), nr);
            assert_eq!(
                pool.map_async(|x| x, 0..3u8).get(),
                nr.clone().map(|_| vec![])
            );
            assert_eq!(
                pool.starmap_async(|a: u8, b: u8| a + b, vec![(1, 2)]).get(),
                nr.clone().map(|_| vec![])
            );
            assert_eq!(
                pool.chunked(2).map_async(|x| x, vec![1]).get(),
                nr.clone().map(|_| vec![])
            );
            assert_eq!(
                pool.chunked(2).starmap_async(|a: u8| a, vec![(1,)]).get(),
                nr.clone().map(|_| vec![])
            );
            let data = [1, 2, 3];
            pool.scope(|s| {
                assert_eq!(s.apply_async(|| data.len()).get(), nr.clone().map(|_| 0));
                assert_eq!(
                    s.map_async(|x| x + 1, &data).get(),
                    nr.clone().map(|_| vec![])
                );
            });
            // The error says what happened and what to do.
            let msg = TaskError::NotRunning.to_string();
            assert!(
                msg.contains("not running") && msg.contains("closed or terminated"),
                "{msg}"
            );
        }
    });
}

#[test]
fn refused_handles_behave_like_finished_ones() {
    guard(30, || {
        let pool = stopped(false);
        let (tx, rx) = std::sync::mpsc::channel();
        let h = pool
            .apply_async(|| 1)
            .on_error(move |e| tx.send(e.clone()).unwrap());
        assert!(h.ready());
        assert_eq!(h.successful(), Some(false));
        assert!(!h.cancel(), "nothing left to cancel");
        assert_eq!(rx.try_recv(), Ok(TaskError::NotRunning));
        let mut h2 = pool.apply_async(|| 2);
        assert_eq!(
            h2.get_timeout(std::time::Duration::from_secs(1)),
            Err(TaskError::NotRunning)
        );
        // Owned inputs of a refused map_async are dropped once, at the call.
        let token = Arc::new(());
        let h3 = pool.map_async(
            |t: Arc<()>| Arc::strong_count(&t),
            vec![Arc::clone(&token); 4],
        );
        assert_eq!(Arc::strong_count(&token), 1);
        assert_eq!(h3.get(), Err(TaskError::NotRunning));
    });
}

#[test]
fn blocking_calls_spawn_and_streams_run_on_the_caller_after_close_and_after_terminate() {
    guard(30, || {
        for terminate in [false, true] {
            let pool = stopped(terminate);
            let caller = me();
            assert_eq!(pool.apply(me), caller);
            assert_eq!(pool.map(|_| me(), 0..3u8), [caller; 3]);
            assert_eq!(pool.starmap(|a: u8, b: u8| a * b, vec![(2, 3)]), [6]);
            assert_eq!(pool.try_map(Ok::<u8, ()>, 0..3u8), Ok(vec![0, 1, 2]));
            assert_eq!(pool.chunked(1).map(|x| x + 1, vec![1, 2]), [2, 3]);

            let ran_on = Arc::new(std::sync::Mutex::new(None));
            let r = Arc::clone(&ran_on);
            pool.spawn(move || *r.lock().unwrap() = Some(me()));
            assert_eq!(
                *ran_on.lock().unwrap(),
                Some(caller),
                "spawn ran before returning"
            );

            let mut hits = [0u8; 3];
            pool.scope(|s| {
                for (i, h) in hits.iter_mut().enumerate() {
                    s.spawn(move || *h = i as u8 + 1);
                }
                let v: Vec<u8> = s.imap(|x: &u8| x * 2, &[1u8, 2]).collect();
                assert_eq!(v, [2, 4]);
                let mut u: Vec<u8> = s.imap_unordered(|x: &u8| *x, &[3u8, 4]).collect();
                u.sort();
                assert_eq!(u, [3, 4]);
            });
            assert_eq!(hits, [1, 2, 3]);

            let v: Vec<ThreadId> = pool.imap(|_: u8| me(), 0..4u8).collect();
            assert_eq!(v, [caller; 4], "imap works on the consumer");
            let mut u: Vec<u8> = pool.imap_unordered(|x: u8| x, 0..4u8).collect();
            u.sort();
            assert_eq!(u, [0, 1, 2, 3]);
        }
    });
}

#[test]
fn spawn_runs_every_job_and_its_panics_go_to_the_policy() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let done = Arc::clone(&done);
            pool.spawn(move || {
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let before = pool.stats().panicked;
        common::quiet_panics();
        pool.spawn(|| panic!("EXPECTED spawned panic"));
        pool.close();
        pool.join();
        assert_eq!(done.load(Ordering::SeqCst), 100);
        assert_eq!(pool.stats().panicked, before + 1, "counted");

        // Under PanicPolicy::Terminate, a spawned job's panic terminates the
        // pool; one run on the caller (refused) does not unwind into it.
        let pool = common::terminating_on_panic(1);
        pool.spawn(|| panic!("EXPECTED terminate"));
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.is_running() && std::time::Instant::now() < until {
            std::thread::yield_now();
        }
        assert!(!pool.is_running(), "the panic terminated the pool");
        let caught = catch_unwind(AssertUnwindSafe(|| pool.spawn(|| panic!("EXPECTED here"))));
        assert!(caught.is_ok(), "spawn never panics in the caller");
        pool.join();
    });
}

#[test]
fn a_scope_spawned_panic_is_re_raised_when_the_scope_ends() {
    guard(30, || {
        common::quiet_panics();
        for closed in [false, true] {
            let pool = ThreadPool::with_workers(2);
            if closed {
                pool.close();
            }
            let after = AtomicUsize::new(0);
            let caught = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    s.spawn(|| panic!("EXPECTED scoped"));
                    s.spawn(|| {
                        after.fetch_add(1, Ordering::SeqCst);
                    });
                    "body returned"
                })
            }));
            let msg = common::panic_message(caught.expect_err("re-raised").as_ref());
            assert!(msg.contains("EXPECTED scoped"), "{msg}");
            assert_eq!(after.load(Ordering::SeqCst), 1, "the other job still ran");
        }
    });
}
