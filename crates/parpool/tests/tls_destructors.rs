//! The pool's API works from a thread-local destructor that runs after the
//! pool's own thread-locals were destroyed (destructors run in reverse
//! order of first use, so a thread-local used before the pool's is
//! destroyed after them). Before, `get` on a pending task there panicked
//! ("cannot access a Thread Local Storage value during or after
//! destruction") and, a panic in a destructor, aborted the process: found
//! by a hostile review of task memory.
//!
//! Each case runs in a child process (an abort must fail the test, not
//! kill the test binary) under a deadline.

#[path = "common/child.rs"]
mod child;
mod common;

use parpool::ThreadPool;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

static POOL: OnceLock<ThreadPool> = OnceLock::new();

/// Runs `body` in the destructor of a thread-local first used before any
/// pool call on a new thread, so it is destroyed after the pool's own.
fn in_a_late_destructor(body: fn() -> String) -> String {
    struct Late(Option<mpsc::Sender<String>>, fn() -> String);
    impl Drop for Late {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send((self.1)());
            }
        }
    }
    thread_local!(static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        LATE.with(|l| *l.borrow_mut() = Some(Late(Some(tx), body)));
        // The pool's thread-locals, used after: destroyed before `LATE`.
        let pool = POOL.get().unwrap();
        assert_eq!(pool.apply(|| 1), 1);
        assert!(!parpool::cancelled());
        let h = pool.apply_async(|| 2);
        assert_eq!(h.get(), Ok(2));
    })
    .join()
    .expect("the thread did not end cleanly");
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the destructor sent nothing")
}

#[test]
fn the_api_works_in_a_thread_local_destructor_after_the_pools_own() {
    child::run(
        "the_api_works_in_a_thread_local_destructor_after_the_pools_own",
        60,
        || {
            POOL.get_or_init(|| ThreadPool::with_workers(1));
            let out = in_a_late_destructor(|| {
                let pool = POOL.get().unwrap();
                // A pending task waited for (the worker is held busy), so
                // `get` parks or runs it inline.
                let (go, wait) = mpsc::channel::<()>();
                let blocker = pool.apply_async(move || wait.recv().unwrap());
                let h = pool.apply_async(|| 40 + 2);
                go.send(()).unwrap();
                let a = h.get().unwrap();
                blocker.get().unwrap();
                let b = pool.apply(parpool::cancelled);
                let c: Vec<u32> = pool.map(|x: u32| x * 2, 0..100u32);
                let d: u32 = pool.imap(|x: u32| x + 1, 0..10u32).sum();
                format!(
                    "{a} {b} {} {d} {}",
                    c.iter().sum::<u32>(),
                    parpool::cancelled()
                )
            });
            assert_eq!(out, "42 false 9900 55 false");
        },
    );
}

/// A worker whose thread-local destructor drops its pool's last handle: the
/// drop closes the pool and joins its threads but this one, which is ending
/// (joining itself failed and aborted the process). From a second hostile
/// review.
#[test]
fn a_pool_dropped_in_its_own_workers_thread_local_destructor() {
    child::run(
        "a_pool_dropped_in_its_own_workers_thread_local_destructor",
        60,
        || {
            static DONE: Mutex<Option<mpsc::Sender<usize>>> = Mutex::new(None);
            struct Holder(Option<Arc<ThreadPool>>);
            impl Drop for Holder {
                fn drop(&mut self) {
                    let pool = self.0.take().unwrap();
                    let others = Arc::strong_count(&pool) - 1;
                    drop(pool);
                    if let Some(tx) = DONE.lock().unwrap().take() {
                        let _ = tx.send(others);
                    }
                }
            }
            thread_local!(static HELD: std::cell::RefCell<Option<Holder>> = const { std::cell::RefCell::new(None) });
            let (tx, rx) = mpsc::channel();
            *DONE.lock().unwrap() = Some(tx);
            let pool = Arc::new(ThreadPool::with_workers(1));
            let inner = Arc::clone(&pool);
            pool.apply(move || HELD.with(|h| *h.borrow_mut() = Some(Holder(Some(inner)))));
            // The worker stays busy until this thread's handle is gone, so
            // the one its destructor drops is the last.
            let (go, wait) = mpsc::channel::<()>();
            drop(pool.apply_async(move || wait.recv()));
            pool.close();
            drop(pool);
            go.send(()).unwrap();
            let others = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("the worker's destructor did not finish dropping the pool");
            assert_eq!(others, 0, "the destructor held the last handle");
        },
    );
}
