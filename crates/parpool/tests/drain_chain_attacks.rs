//! Hostile review of a wait that goes on draining (`registry::help_drain`):
//! a callback run while a terminated pool's work is discarded, waiting for
//! a task queued behind its own. Found: chains of such callbacks deeper
//! than the inlining depth (32) hung `terminate`, on the draining thread
//! and on a worker discarding jobs; and a drain of pool B nested in a
//! callback of pool A's drain hid A's drain from B's callbacks. Now every
//! thread discarding a pool's work marks it (a stack of pools), and a wait
//! that cannot go deeper fails with a clear panic (contained, as callback
//! panics are) instead of hanging; `terminate` returns.
#[path = "common/child.rs"]
mod child;
mod common;

use common::{guard, occupy_the_worker};
use parpool::{TaskError, ThreadPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

type Slot = common::ChainSlot;

/// Queues `n` tasks; task i's error callback waits (untimed) for task i+1.
fn queue_chain(pool: &ThreadPool, n: usize, calls: &Arc<AtomicUsize>) -> Vec<Slot> {
    common::queue_wait_chain(pool, n, calls, |h| h.wait())
}

/// A chain of error callbacks, each waiting for the next queued task, deeper
/// than the inlining depth (32). The only worker is busy with a task that
/// ends after `terminate` returns. Every callback runs, every task ends, and
/// `terminate` returns (the wait 32 levels down panics, contained).
#[test]
fn chain_of_drain_callbacks_deeper_than_the_inline_depth() {
    child::run(
        "chain_of_drain_callbacks_deeper_than_the_inline_depth",
        20,
        || {
            common::quiet_parpool_diagnostics();
            common::terminate_through_wait_chain("depth limit", |h| h.wait());
        },
    );
}

/// Same chain, 10_000 long, the worker freed by terminate (it polls
/// `cancelled()`): must finish, no stack overflow.
#[test]
fn chain_of_ten_thousand_drain_callbacks() {
    child::run("chain_of_ten_thousand_drain_callbacks", 20, || {
        common::quiet_parpool_diagnostics();
        let pool = ThreadPool::with_workers(1);
        let occupant = common::occupy_until_terminate(&pool);
        let calls = Arc::new(AtomicUsize::new(0));
        let n = 10_000;
        let slots = queue_chain(&pool, n, &calls);
        common::wait_queued(&pool, n);
        let c2 = Arc::clone(&calls);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(3));
            eprintln!(
                "progress: {} callbacks, threads {:?}",
                c2.load(Ordering::SeqCst),
                std::fs::read_dir("/proc/self/task").map(|d| d.count()).ok()
            );
        });
        let start = Instant::now();
        pool.terminate();
        eprintln!("terminate took {:?}", start.elapsed());
        occupant.get().unwrap();
        // The freed worker may still be discarding jobs it popped (and
        // running their callbacks) when `terminate` returns.
        pool.join();
        for s in &slots {
            assert!(s.get().unwrap().ready());
        }
        assert_eq!(calls.load(Ordering::SeqCst), n);
        eprintln!("stats {:?}", pool.stats());
    });
}

/// Nested drains of two pools: A's drain runs a1's callback, which
/// terminates B; B's drain runs b1's callback, which waits for a2, queued
/// on A behind a1. DRAINING now names B, so nothing drains A.
#[test]
fn nested_drains_callback_waits_for_the_outer_pool() {
    child::run(
        "nested_drains_callback_waits_for_the_outer_pool",
        20,
        || {
            common::quiet_parpool_diagnostics();
            let a = Arc::new(ThreadPool::with_workers(1));
            let b = Arc::new(ThreadPool::with_workers(1));
            let (occ_a, rel_a) = occupy_the_worker(&a);
            let (occ_b, rel_b) = occupy_the_worker(&b);
            let a2_slot: Slot = Arc::new(OnceLock::new());
            let s = Arc::clone(&a2_slot);
            let _b1 = b.apply_async(|| 0u32).on_error(move |_| {
                let _ = s.get().unwrap().wait_timeout(Duration::from_secs(6));
            });
            let bb = Arc::clone(&b);
            let a1 = a.apply_async(|| 0u32).on_error(move |_| bb.terminate());
            a2_slot.set(a.apply_async(|| 2u32)).ok().unwrap();
            // untimed version would hang; use timed in callback and measure.
            let start = Instant::now();
            a.terminate();
            let took = start.elapsed();
            let _ = rel_a.send(());
            let _ = rel_b.send(());
            occ_a.get().unwrap();
            occ_b.get().unwrap();
            assert_eq!(a1.get(), Err(TaskError::Cancelled));
            assert!(took < Duration::from_secs(3), "terminate took {took:?}: b1's callback waited for a2 which only A's (suspended) drain would reach");
        },
    );
}

/// Untimed version of the above (it hung).
#[test]
fn nested_drains_untimed_wait_hangs() {
    child::run("nested_drains_untimed_wait_hangs", 10, || {
        common::quiet_parpool_diagnostics();
        let a = Arc::new(ThreadPool::with_workers(1));
        let b = Arc::new(ThreadPool::with_workers(1));
        let (_occ_a, rel_a) = occupy_the_worker(&a);
        let (_occ_b, rel_b) = occupy_the_worker(&b);
        let a2_slot: Slot = Arc::new(OnceLock::new());
        let s = Arc::clone(&a2_slot);
        let _b1 = b.apply_async(|| 0u32).on_error(move |_| {
            s.get().unwrap().wait();
        });
        let bb = Arc::clone(&b);
        let _a1 = a.apply_async(|| 0u32).on_error(move |_| bb.terminate());
        a2_slot.set(a.apply_async(|| 2u32)).ok().unwrap();
        a.terminate();
        let _ = rel_a.send(());
        let _ = rel_b.send(());
    });
}

/// terminate on a small-stack thread, chain as deep as the pool allows
/// (pool built with a big stack_size, so depth 32).
#[test]
fn help_drain_on_a_small_stack_thread() {
    child::run("help_drain_on_a_small_stack_thread", 20, || {
        common::quiet_parpool_diagnostics();
        let pool = ThreadPool::builder()
            .workers(1)
            .stack_size(8 << 20)
            .build()
            .unwrap();
        let occupant = common::occupy_until_terminate(&pool);
        let calls = Arc::new(AtomicUsize::new(0));
        let n = 34;
        let slots = queue_chain(&pool, n, &calls);
        common::wait_queued(&pool, n);
        let kb: usize = std::env::var("R3_STACK_KB")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(256);
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(kb << 10)
                .spawn_scoped(s, || pool.terminate())
                .unwrap()
                .join()
                .unwrap();
        });
        occupant.get().unwrap();
        for s in &slots {
            assert!(s.get().unwrap().ready());
        }
    });
}

/// A timed own-wait in a loop inside its own callback: each wait times out
/// at once (documented: the result cannot come before the callback
/// returns), so the user's loop spins until it gives up; no panic, no hang.
#[test]
fn timed_own_wait_loop_spins() {
    guard(20, || {
        let pool = ThreadPool::with_workers(1);
        let slot: Slot = Arc::new(OnceLock::new());
        let s = Arc::clone(&slot);
        let spins = Arc::new(AtomicUsize::new(0));
        let sp = Arc::clone(&spins);
        let (tx, rx) = mpsc::channel::<()>();
        let h = pool
            .apply_async(move || {
                rx.recv().unwrap();
                1u32
            })
            .on_success(move |_| {
                let h = loop {
                    if let Some(h) = s.get() {
                        break h;
                    }
                    std::thread::yield_now();
                };
                let start = Instant::now();
                while !h.wait_timeout(Duration::from_millis(10)) {
                    sp.fetch_add(1, Ordering::SeqCst);
                    if start.elapsed() > Duration::from_secs(1) {
                        break;
                    }
                }
            });
        slot.set(h).ok().unwrap();
        tx.send(()).unwrap();
        slot.get().unwrap().wait();
        assert!(
            spins.load(Ordering::SeqCst) > 0,
            "the timed own-waits returned false"
        );
    });
}

struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("review3 bomb");
        }
    }
}

/// Stats after help_drain discards jobs (one closure's Drop panics inside
/// the nested drain): queued back to 0, exactly one panic counted.
#[test]
fn stats_after_help_drain() {
    child::run("stats_after_help_drain", 20, || {
        common::quiet_parpool_diagnostics();
        common::quiet_panics_containing("review3 bomb");
        let pool = ThreadPool::builder().workers(1).build().unwrap();
        let (occupant, release) = occupy_the_worker(&pool);
        let later: Slot = Arc::new(OnceLock::new());
        let l = Arc::clone(&later);
        let first = pool
            .apply_async(|| 0u32)
            .on_error(move |_| l.get().unwrap().wait());
        for _ in 0..5 {
            drop(pool.apply_async(|| 0u32));
        }
        let bomb = Bomb;
        let bombed = pool.apply_async(move || {
            let _b = &bomb;
            1u32
        });
        for _ in 0..5 {
            drop(pool.apply_async(|| 0u32));
        }
        later.set(pool.apply_async(|| 2u32)).ok().unwrap();
        for _ in 0..5 {
            drop(pool.apply_async(|| 0u32));
        }
        pool.terminate();
        let _ = release.send(());
        occupant.get().unwrap();
        assert_eq!(first.get(), Err(TaskError::Cancelled));
        assert_eq!(bombed.get(), Err(TaskError::Cancelled));
        let st = pool.stats();
        eprintln!("{st:?}");
        assert_eq!(st.queued, 0);
        assert_eq!(st.panicked, 1);
    });
}
