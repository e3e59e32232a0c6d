//! A large result returned by value from a task is written straight into
//! its slot, not copied from frame to frame on the worker's stack: a 512 KiB
//! result overflowed a 2 MiB worker stack, and a 1 MiB one a 4 MiB stack,
//! where a plain `std::thread` returns them (found by a whole-API hostile
//! round). Each case runs in a child process, since a stack overflow
//! aborts; the caller runs on a large stack of its own, since taking the
//! result out of its handle moves it there.
#[path = "common/child.rs"]
mod child;
mod common;

use parpool::ThreadPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Runs `body` on a thread with a 256 MiB stack.
fn on_big_stack(body: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(body)
        .unwrap()
        .join()
        .unwrap();
}

/// The worker's stack: `stack` in an optimized build. Unoptimized code
/// keeps a copy of the value in every frame it passes through, the
/// closure's own included, so a debug build gets 3 times as much: the old
/// code overflowed that too, and the new fits in 2 times.
fn pool(stack: usize) -> ThreadPool {
    let stack = if cfg!(debug_assertions) {
        3 * stack
    } else {
        stack
    };
    ThreadPool::builder()
        .workers(1)
        .stack_size(stack)
        .build()
        .unwrap()
}

macro_rules! by_value {
    ($name:ident, $stack:expr, $size:expr) => {
        #[test]
        fn $name() {
            child::run(stringify!($name), 60, || {
                on_big_stack(|| {
                    let pool = pool($stack);
                    let seen = Arc::new(AtomicUsize::new(0));
                    // Taken by `get`.
                    let h = pool.apply_async(|| [7u8; $size]);
                    let v = h.get().unwrap();
                    assert!(v.iter().all(|&b| b == 7));
                    // Seen by a callback, then taken.
                    let s = Arc::clone(&seen);
                    let h = pool
                        .apply_async(|| [9u8; $size])
                        .on_success(move |v: &[u8; $size]| {
                            s.fetch_add(v.iter().filter(|&&b| b == 9).count(), Ordering::SeqCst);
                        });
                    assert!(h.get().unwrap().iter().all(|&b| b == 9));
                    // Nobody takes it: dropped on the worker.
                    drop(pool.apply_async(|| [1u8; $size]));
                    assert_eq!(pool.apply(|| 5), 5);
                    // A callback registered before or after the run: either
                    // way it saw the whole value once.
                    assert_eq!(seen.load(Ordering::SeqCst), $size);
                });
            });
        }
    };
}

by_value!(half_a_mib_on_a_2_mib_worker_stack, 2 << 20, 512 << 10);
by_value!(one_mib_on_a_4_mib_worker_stack, 4 << 20, 1 << 20);
