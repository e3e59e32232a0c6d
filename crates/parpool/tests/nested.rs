//! Tasks that use their own pool do not deadlock, even with one worker.
mod common;

use common::guard;
use parpool::ThreadPool;
use std::sync::Arc;

#[test]
fn nested_map_on_a_one_worker_pool() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || p.map(|x| x * 2, 0..1000u32).iter().sum::<u32>());
        assert_eq!(h.get(), Ok(999_000));
        // map inside map
        let out = pool.map(
            |i: u32| pool.map(|j: u32| i * j, 0..10u32).iter().sum::<u32>(),
            0..10u32,
        );
        assert_eq!(out, (0..10).map(|i| i * 45).collect::<Vec<_>>());
    });
}

#[test]
fn nested_apply_imap_and_get_on_a_one_worker_pool() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || {
            let a = p.apply(|| 1);
            let b: u32 = p.imap(|x: u32| x, 0..100).sum();
            let c = p.apply_async(|| 10).get().unwrap();
            let d = p.map_async(|x: u32| x, vec![5]).get().unwrap()[0];
            let e: u32 = p.imap_unordered(|x: u32| x, 0..10).sum();
            a + b + c + d + e
        });
        assert_eq!(h.get(), Ok(1 + 4950 + 10 + 5 + 45));
    });
}

#[test]
fn nested_scope_inside_a_task() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || {
            let data = [1, 2, 3];
            p.scope(|s| s.imap(|x: &i32| x * 2, &data).sum::<i32>())
        });
        assert_eq!(h.get(), Ok(12));
    });
}

#[test]
fn queued_nested_work_still_runs_after_close() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = Arc::clone(&pool);
        let h = pool.apply_async(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            p.map(|x| x + 1, 0..10u8).len()
        });
        pool.close();
        assert_eq!(h.get(), Ok(10));
    });
}
