//! Final-round adversarial tests: extreme sizes through the refused paths,
//! close/terminate racing every call, panics in every user hook (on the
//! refused-apply path too), and nesting on a one-worker pool.

mod common;
#[path = "common/child.rs"]
mod child;

use common::{counters, guard, panic_message, Probe};
use parpool::{PanicPolicy, TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
enum State {
    Open,
    Closed,
    Terminated,
}

fn pool_in(state: State, workers: usize, policy: PanicPolicy) -> ThreadPool {
    let pool = ThreadPool::builder()
        .workers(workers)
        .on_panic(policy)
        .build()
        .unwrap();
    match state {
        State::Open => {}
        State::Closed => pool.close(),
        State::Terminated => pool.terminate(),
    }
    pool
}

fn assert_settled(pool: &ThreadPool) {
    let s = pool.stats();
    assert_eq!(s.queued, 0, "{s:?}");
    assert_eq!(s.running, 0, "{s:?}");
    assert!(s.panicked <= s.completed, "{s:?}");
}

fn finish(pool: &ThreadPool) {
    if pool.is_running() {
        pool.close();
    }
    pool.join();
    assert_settled(pool);
}

/// Empty inputs, chunksize 1 and `usize::MAX`, one worker with
/// `max_tasks_per_worker(1)`, and many workers: the same answers whether
/// the pool is open, closed or terminated.
#[test]
fn sizes_at_zero_and_max_in_every_pool_state() {
    guard(20, || {
        for state in [State::Open, State::Closed, State::Terminated] {
            for workers in [1, 48] {
                let pool = pool_in(state, workers, PanicPolicy::Propagate);
                let none: Vec<u32> = Vec::new();
                assert!(pool.map(|x: u32| x, none.clone()).is_empty());
                assert!(pool.chunked(usize::MAX).map(|x: u32| x, 0..0u32).is_empty());
                assert!(pool
                    .starmap(|a: u32, b: u32| a + b, Vec::<(u32, u32)>::new())
                    .is_empty());
                assert!(pool.imap(|x: u32| x, none.clone()).next().is_none());
                assert!(pool.imap_unordered(|x: u32| x, none.clone()).next().is_none());
                assert_eq!(
                    pool.try_map(|x: u32| Ok::<u32, ()>(x), none.clone()),
                    Ok(vec![])
                );
                let empty = pool.map_async(|x: u32| x, none.clone()).get();
                match state {
                    State::Open => assert_eq!(empty, Ok(vec![])),
                    _ => assert_eq!(empty, Err(TaskError::NotRunning), "{state:?}"),
                }
                let want: Vec<u64> = (0..37u64).map(|x| x * 3).collect();
                assert_eq!(pool.chunked(usize::MAX).map(|x| x * 3, 0..37u64), want);
                assert_eq!(pool.chunked(1).map(|x| x * 3, 0..37u64), want);
                assert_eq!(
                    pool.chunked(usize::MAX)
                        .starmap(|a: u64, b: u64| a * b, (0..37u64).map(|x| (x, 3))),
                    want
                );
                assert_eq!(
                    pool.chunked(usize::MAX).try_map(|x| Ok::<_, ()>(x * 3), 0..37u64),
                    Ok(want.clone())
                );
                assert_eq!(pool.apply(|| 5), 5);
                finish(&pool);
                let s = pool.stats();
                assert_eq!(s.panicked, 0);
            }
        }
        let pool = ThreadPool::builder()
            .workers(1)
            .max_tasks_per_worker(1)
            .build()
            .unwrap();
        let want: Vec<u32> = (0..200).collect();
        assert_eq!(pool.map(|x| x, 0..200u32), want);
        assert_eq!(pool.chunked(1).map(|x| x, 0..200u32), want);
        let hs: Vec<_> = (0..50u32).map(|i| pool.apply_async(move || i)).collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.get(), Ok(i as u32));
        }
        let got: Vec<u32> = pool.imap(|x| x, 0..100u32).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        finish(&pool);
    });
}

#[test]
fn chunksize_zero_is_a_clear_error_even_on_a_stopped_pool() {
    child::hide_expected_panics();
    for state in [State::Open, State::Terminated] {
        let pool = pool_in(state, 1, PanicPolicy::Propagate);
        let err = catch_unwind(AssertUnwindSafe(|| {
            let _ = pool.chunked(0);
        }))
        .unwrap_err();
        assert!(panic_message(&*err).contains("chunksize"));
        finish(&pool);
    }
}
