//! A retiring worker's replacement runs the initializer, and an initializer
//! may wait for work of its own pool. On a 1-worker pool with
//! `max_tasks_per_worker`, nobody ran that work: the retiring worker waited
//! for the replacement's initializer, and the initializing thread may not
//! run pool jobs before its initializer returns (a hostile whole-API round
//! found `imap`, scopes, `as_completed`, `wait`, `block_on` and streams
//! deadlocking that way; `get` and `map` escaped by running work inline).
//! Each case runs in a child process under a time limit, with 40 tasks and
//! a limit of 8 per worker (above the jobs one initializer makes, so the
//! retirements cannot feed themselves: with a limit of 1, an initializer
//! that queues one job makes a chain of retirements without end, the
//! user's own recursion, as in Python).
#[path = "common/child.rs"]
mod child;
mod common;

use parpool::ThreadPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

const TASKS: usize = 40;

/// What an initializer does with its own pool.
fn use_own_pool(p: &ThreadPool, mode: &str) {
    match mode {
        "get" => assert_eq!(p.apply_async(|| 3).get(), Ok(3)),
        "map" => assert_eq!(p.map(|x| x, 0..100u32).len(), 100),
        "imap" => assert_eq!(p.imap(|x: u32| x, 0..10u32).sum::<u32>(), 45),
        "scope_spawn" => {
            let n = AtomicUsize::new(0);
            p.scope(|s| {
                for _ in 0..3 {
                    s.spawn(|| {
                        n.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
            assert_eq!(n.load(Ordering::SeqCst), 3);
        }
        "as_completed" => {
            let hs: Vec<_> = (0..3).map(|i| p.apply_async(move || i)).collect();
            assert_eq!(parpool::as_completed(hs).count(), 3);
        }
        "wait" => {
            let hs: Vec<_> = (0..3).map(|i| p.apply_async(move || i)).collect();
            let (done, pending) = parpool::wait(hs, None, parpool::WaitFor::AllCompleted);
            assert_eq!((done.len(), pending.len()), (3, 0));
        }
        "block_on" => assert_eq!(futures::executor::block_on(p.apply_async(|| 1)), Ok(1)),
        "stream" => {
            let s = p.imap(|x: u32| x, 0..10u32).chunksize(1).into_stream();
            assert_eq!(
                futures::executor::block_on(futures::StreamExt::count(s)),
                10
            );
        }
        other => panic!("unknown mode {other}"),
    }
}

macro_rules! case {
    ($name:ident, $mode:literal, $max_tasks:literal) => {
        #[test]
        fn $name() {
            child::run(stringify!($name), 30, || {
                static POOL: OnceLock<Arc<ThreadPool>> = OnceLock::new();
                static USES: AtomicUsize = AtomicUsize::new(0);
                let pool = Arc::new(
                    ThreadPool::builder()
                        .workers(1)
                        .max_tasks_per_worker($max_tasks)
                        .initializer(|| {
                            if let Some(p) = POOL.get() {
                                use_own_pool(p, $mode);
                                USES.fetch_add(1, Ordering::SeqCst);
                            }
                        })
                        .build()
                        .unwrap(),
                );
                let _ = POOL.set(Arc::clone(&pool));
                for i in 0..TASKS {
                    assert_eq!(pool.apply_async(move || i).get(), Ok(i));
                }
                pool.close();
                pool.join();
                // The first worker's initializer found no pool yet; a
                // replacement's used it (a retiring worker runs jobs while it
                // waits, uncounted, so fewer than one retirement per task).
                assert!(
                    USES.load(Ordering::SeqCst) >= 1,
                    "a replacement used the pool"
                );
            });
        }
    };
}

case!(get_in_a_replacements_initializer, "get", 8);
case!(map_in_a_replacements_initializer, "map", 8);
case!(imap_in_a_replacements_initializer, "imap", 8);
case!(
    imap_in_a_replacements_initializer_every_second_task,
    "imap",
    2
);
case!(scope_in_a_replacements_initializer, "scope_spawn", 8);
case!(
    as_completed_in_a_replacements_initializer,
    "as_completed",
    8
);
case!(wait_in_a_replacements_initializer, "wait", 8);
case!(block_on_in_a_replacements_initializer, "block_on", 8);
case!(stream_in_a_replacements_initializer, "stream", 8);

/// A spare's initializer has no retiring worker beside it: the only worker
/// blocks in `block_on` on a queued task (an executor's wait, which starts
/// a spare), and the spare's initializer consumes an imap of the same pool.
/// Nothing initialized is free to run the imap's chunks or the task.
#[test]
#[ignore = "known limit (docs/reliability.md section 6): a spare whose initializer waits for its own pool's work, beside a worker blocked in an executor, waits for good"]
fn an_imap_in_a_spares_initializer_beside_a_block_on() {
    child::run(
        "an_imap_in_a_spares_initializer_beside_a_block_on",
        10,
        || {
            static POOL: OnceLock<Arc<ThreadPool>> = OnceLock::new();
            let pool = Arc::new(
                ThreadPool::builder()
                    .workers(1)
                    .initializer(|| {
                        if let Some(p) = POOL.get() {
                            use_own_pool(p, "imap");
                        }
                    })
                    .build()
                    .unwrap(),
            );
            let _ = POOL.set(Arc::clone(&pool));
            let p = Arc::clone(&pool);
            let h = pool.apply_async(move || futures::executor::block_on(p.apply_async(|| 5)));
            assert_eq!(h.get(), Ok(Ok(5)));
            pool.close();
            pool.join();
        },
    );
}
