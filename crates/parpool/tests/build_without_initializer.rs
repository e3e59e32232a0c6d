//! A pool built without an initializer returns from `build` before its
//! worker threads have been scheduled (`Registry::start`). Everything done
//! right after `build` must behave as if they were up: close, terminate,
//! join and drop leave no thread behind; submitted work runs or reports
//! `Cancelled`; retirement (`max_tasks_per_worker`) and spares (a task that
//! waits) still keep the pool going.
#[path = "common/child.rs"]
mod child;
mod common;

use common::guard;
use parpool::{Builder, TaskError, ThreadPool};
use std::time::Duration;

const ROUNDS: usize = if cfg!(miri) { 3 } else { 100 };

/// Threads of this process whose name starts with `prefix` (Linux only:
/// `/proc/self/task/*/comm`; `None` elsewhere). A joined thread may still be
/// listed for a moment (the kernel wakes `pthread_join` before it removes
/// the exiting task), so this looks again for up to a second.
fn threads_named(prefix: &str) -> Option<usize> {
    if !cfg!(target_os = "linux") || cfg!(miri) {
        return None;
    }
    let count = || -> Option<usize> {
        let dir = std::fs::read_dir("/proc/self/task").ok()?;
        Some(
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count(),
        )
    };
    let start = std::time::Instant::now();
    loop {
        let n = count()?;
        if n == 0 || start.elapsed() > Duration::from_secs(1) {
            return Some(n);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn build(prefix: &str, workers: usize, max_tasks: Option<usize>) -> ThreadPool {
    let b = Builder::new().workers(workers).thread_name(prefix);
    match max_tasks {
        Some(n) => b.max_tasks_per_worker(n),
        None => b,
    }
    .build()
    .expect("build")
}

/// Close, terminate, join or drop at once after `build`: no hang, and once
/// joined (or dropped) no thread of the pool is left.
#[test]
fn stopping_a_pool_right_after_build_leaves_no_thread() {
    guard(120, || {
        for round in 0..ROUNDS {
            let prefix = "pp-rb";
            let pool = build(prefix, 3, None);
            match round % 4 {
                0 => drop(pool),
                1 => {
                    pool.close();
                    pool.join();
                }
                2 => {
                    pool.terminate();
                    pool.join();
                }
                _ => {
                    pool.terminate();
                    drop(pool);
                }
            }
            if let Some(n) = threads_named(prefix) {
                assert_eq!(n, 0, "round {round}: threads left after join");
            }
        }
    });
}

/// Work submitted, then the pool terminated at once: every handle settles
/// (ran, or `Cancelled`), and `join` returns.
#[test]
fn terminate_right_after_build_settles_every_handle() {
    guard(120, || {
        for _ in 0..ROUNDS {
            let pool = build("pp-tb", 2, None);
            let handles: Vec<_> = (0..8u32).map(|i| pool.apply_async(move || i)).collect();
            pool.terminate();
            for (i, h) in handles.into_iter().enumerate() {
                match h.get() {
                    Ok(v) => assert_eq!(v as usize, i),
                    Err(TaskError::Cancelled) => {}
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            pool.join();
        }
    });
}

/// `max_tasks_per_worker(1)` and a waiting task (which needs a spare on a
/// 1-worker pool) at once after `build`, then the census settles: `stats`
/// reports the pool's workers and nothing running.
#[test]
fn retirement_and_spares_right_after_build() {
    guard(120, || {
        for round in 0..ROUNDS.min(30) {
            let pool = std::sync::Arc::new(build("pp-rs", 1, (round % 2 == 0).then_some(1)));
            let p = std::sync::Arc::clone(&pool);
            let outer = pool.apply_async(move || p.apply_async(|| 20).get().unwrap() + 1);
            assert_eq!(outer.get(), Ok(21));
            assert_eq!(
                pool.map(|x: u32| x * 2, 0..10u32),
                (0..10).map(|x| x * 2).collect::<Vec<_>>()
            );
            let s = pool.stats();
            assert_eq!(s.workers, 1);
            let start = std::time::Instant::now();
            while pool.stats().running != 0 {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "running never settles"
                );
                std::thread::yield_now();
            }
            pool.close();
            pool.join();
            if let Some(n) = threads_named("pp-rs") {
                assert_eq!(n, 0, "round {round}: threads left after join");
            }
        }
    });
}

/// A pool built, used once and dropped from a thread that ends right after:
/// the workers, which may only start after the builder's thread is gone,
/// still run the work and exit.
#[test]
fn a_pool_built_and_dropped_on_a_short_lived_thread() {
    guard(120, || {
        for _ in 0..ROUNDS {
            let r = std::thread::spawn(|| {
                let pool = build("pp-sl", 2, None);
                let h = pool.apply_async(|| 7);
                drop(pool);
                h.get()
            })
            .join()
            .unwrap();
            assert_eq!(r, Ok(7));
            if let Some(n) = threads_named("pp-sl") {
                assert_eq!(n, 0, "threads left after drop");
            }
        }
    });
}

/// The same with `ThreadPool::with_workers` (no builder, no initializer).
#[test]
fn with_workers_then_immediate_join() {
    guard(60, || {
        for _ in 0..ROUNDS {
            let pool = ThreadPool::with_workers(4);
            pool.close();
            pool.join();
            assert!(matches!(
                pool.apply_async(|| 1).get(),
                Err(TaskError::NotRunning)
            ));
        }
    });
}

/// A build whose thread spawns start failing midway (each worker reserves a
/// large stack, under a virtual memory limit): `build` returns
/// `BuildError::Spawn`, and the workers already started, which `build` did
/// not wait for, are stopped and joined: none is left.
#[test]
fn a_build_failing_to_spawn_midway_leaves_no_thread() {
    child::run_limited(
        "a_build_failing_to_spawn_midway_leaves_no_thread",
        60,
        Some(2048),
        || {
            // Two such workers fit under the limit, so 64 fail midway.
            let small = Builder::new()
                .workers(2)
                .stack_size(128 << 20)
                .build()
                .expect("two large-stack workers fit");
            assert_eq!(small.apply_async(|| 1).get(), Ok(1));
            drop(small);
            let r = Builder::new()
                .workers(64)
                .stack_size(128 << 20)
                .thread_name("pp-sf")
                .build();
            assert!(
                matches!(r, Err(parpool::BuildError::Spawn(_))),
                "expected a spawn failure, got {:?}",
                r.map(|p| p.workers())
            );
            if let Some(n) = threads_named("pp-sf") {
                assert_eq!(n, 0, "threads left after a failed build");
            }
            // The process can still start a pool.
            let pool = ThreadPool::with_workers(2);
            assert_eq!(pool.apply_async(|| 5).get(), Ok(5));
        },
    );
}
