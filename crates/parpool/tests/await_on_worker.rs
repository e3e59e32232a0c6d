//! A future or stream of the pool, awaited by an executor that blocks on
//! one of the pool's own workers (`block_on` inside a job): the pool cannot
//! see that worker wait, so before returning `Pending` there the future
//! counts the worker as blocked and a stand-in thread runs the queue
//! (`exec_wait.rs`); nothing runs inside the caller's executor.

mod common;
use common::{guard, pick};
use futures::StreamExt;
use parpool::ThreadPool;
use std::sync::Arc;

/// A one-worker pool, and its worker's result for `job`.
fn on_the_only_worker<R: Send + 'static>(
    job: impl FnOnce(Arc<ThreadPool>) -> R + Send + 'static,
) -> R {
    let pool = Arc::new(ThreadPool::with_workers(1));
    let inner = Arc::clone(&pool);
    pool.apply_async(move || job(inner)).get().unwrap()
}

#[test]
fn an_awaited_task_runs_on_the_worker_that_awaits_it() {
    let got = guard(20, || {
        on_the_only_worker(|pool| {
            let h = pool.apply_async(|| 7);
            futures::executor::block_on(h)
        })
    });
    assert_eq!(got, Ok(7));
}

#[test]
fn an_awaited_map_async_runs_on_the_worker_that_awaits_it() {
    let got = guard(20, || {
        on_the_only_worker(|pool| {
            let h = pool.map_async(|x: u64| x * 2, (0..1000u64).collect::<Vec<_>>());
            futures::executor::block_on(h)
        })
    });
    assert_eq!(
        got.unwrap(),
        (0..1000u64).map(|x| x * 2).collect::<Vec<_>>()
    );
}

#[test]
fn a_polled_stream_runs_its_credits_on_the_worker_that_polls_it() {
    let n = pick(20_000, 40) as u64;
    let (ordered, unordered) = guard(20, move || {
        on_the_only_worker(move |pool| {
            let ordered: Vec<u64> = futures::executor::block_on(
                pool.imap(|x: u64| x + 1, 0..n).into_stream().collect(),
            );
            let mut unordered: Vec<u64> = futures::executor::block_on(
                pool.imap_unordered(|x: u64| x + 1, 0..n)
                    .into_stream()
                    .collect(),
            );
            unordered.sort_unstable();
            (ordered, unordered)
        })
    });
    assert_eq!(ordered, (1..=n).collect::<Vec<_>>());
    assert_eq!(unordered, ordered);
}

#[test]
fn nested_awaits_on_the_only_worker_all_complete() {
    let got = guard(20, || {
        on_the_only_worker(|pool| {
            let p = Arc::clone(&pool);
            // (One executor per thread: the inner wait blocks with `get`.)
            let outer = pool.apply_async(move || p.apply_async(|| 5).get().unwrap() + 1);
            futures::executor::block_on(outer)
        })
    });
    assert_eq!(got, Ok(6));
}

#[test]
fn a_task_of_another_pool_is_left_to_that_pool() {
    let other = Arc::new(ThreadPool::with_workers(1));
    let o = Arc::clone(&other);
    let got = guard(20, move || {
        on_the_only_worker(move |_pool| {
            let h = o.apply_async(|| std::thread::current().id());
            (
                futures::executor::block_on(h).unwrap(),
                std::thread::current().id(),
            )
        })
    });
    assert_ne!(
        got.0, got.1,
        "the other pool's task ran on this pool's worker"
    );
}

#[test]
fn nothing_awaited_runs_inside_the_awaiting_executor() {
    let n = pick(2_000, 20) as u64;
    let (awaiter, task_ran_on, items_ran_on) = guard(20, move || {
        on_the_only_worker(move |pool| {
            let me = std::thread::current().id();
            let h = pool.apply_async(|| std::thread::current().id());
            let task = futures::executor::block_on(h).unwrap();
            let items: Vec<std::thread::ThreadId> = futures::executor::block_on(
                pool.imap(|_: u64| std::thread::current().id(), 0..n)
                    .into_stream()
                    .collect(),
            );
            (me, task, items)
        })
    });
    assert_ne!(task_ran_on, awaiter);
    assert!(items_ran_on.iter().all(|t| *t != awaiter));
}

#[test]
fn a_polled_stream_over_an_input_that_may_wait_completes_on_the_only_worker() {
    let n = pick(5_000, 30) as u64;
    let got = guard(20, move || {
        on_the_only_worker(move |pool| {
            let (tx, rx) = std::sync::mpsc::channel();
            for x in 0..n {
                tx.send(x).unwrap();
            }
            drop(tx);
            futures::executor::block_on(
                pool.imap(|x: u64| x * 3, rx)
                    .into_stream()
                    .collect::<Vec<_>>(),
            )
        })
    });
    assert_eq!(got, (0..n).map(|x| x * 3).collect::<Vec<_>>());
}
