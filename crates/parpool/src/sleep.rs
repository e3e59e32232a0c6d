//! How idle workers sleep and how new work wakes them.
//!
//! An idle worker first spins a few rounds, then yields its CPU up to 64
//! times, then sleeps on a condition variable. New work often arrives within
//! microseconds, and a futex wake-up costs more than that; yielding (rather
//! than spinning) lets a runnable producer, such as the thread submitting
//! work on a machine with as many workers as cores, have the CPU meanwhile.
//! An idle pool burns no CPU: its workers wake once per 10 s, for a few
//! microseconds, to see whether a burst's memory is due to go back
//! (`slab::decay`).
//!
//! Invariant: a job pushed while a worker is going to sleep is never missed.
//! The pusher does `push; fence; load sleepers`, the sleeper does
//! `sleepers += 1; fence; check queue` (a Dekker pair: at least one of them
//! sees the other's write). If the pusher sees no sleeper, the sleeper's check
//! sees the job. If it sees a sleeper, it takes the mutex, which the sleeper
//! holds from its increment until `wait` releases it, and notifies once it
//! has it (after releasing it again), so the notification cannot arrive
//! before the sleeper waits. The protocol is
//! described with its scenarios in `docs/design.md`.

use crate::sync::atomic::{fence, AtomicUsize, Ordering};
use crate::sync::{lock, Condvar, Mutex};
use std::cell::Cell;
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Sleep {
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

thread_local! {
    /// Set when this thread has just woken a thread blocked on a result.
    static HANDED_OFF: Cell<bool> = const { Cell::new(false) };
}

/// Notes that the current thread woke a thread blocked on a result. If it
/// then finds no work, it sleeps at once instead of spinning, leaving its
/// CPU to the thread it woke (see `docs/design.md`, "Handing off the CPU").
pub(crate) fn handed_off() {
    HANDED_OFF.with(|h| h.set(true));
}

/// Rounds of spinning, then of yielding, before a worker sleeps
/// (measured on W4: 64 spins + 16 yields gave 1.54x threadpool, 4 + 64 gave 1.20x).
const SPIN_ROUNDS: u32 = 4;
const YIELD_ROUNDS: u32 = 64;

impl Sleep {
    /// Called after new work was made visible: wakes up to `n` sleepers.
    pub(crate) fn notify(&self, n: usize) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        // Taking the mutex waits until a sleeper that was seen is inside
        // `wait`; the notification itself goes out after the mutex is
        // released, so the woken thread does not run into it (on a 2-vCPU
        // machine it may preempt us at once and would block on the mutex).
        drop(lock(&self.lock));
        if n == 1 {
            self.cond.notify_one();
        } else {
            self.cond.notify_all();
        }
    }

    /// Wakes every sleeper (state change: close, terminate). Unlike
    /// `notify`, it notifies under the mutex: measured faster on W9 (pool
    /// drop), see `docs/design.md` section 2.
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        let _guard = lock(&self.lock);
        self.cond.notify_all();
    }

    /// Idles until `ready()` may have become true, or `timeout` passes if
    /// given. `ready` must be cheap and must not block. Spurious returns
    /// are allowed: the caller loops.
    pub(crate) fn idle(&self, ready: impl Fn() -> bool, timeout: Option<Duration>) {
        if !HANDED_OFF.with(|h| h.replace(false)) {
            self.spin(&ready);
        }
        self.sleep(ready, timeout);
    }

    /// Sleeps until `ready()` may have become true or `timeout` passes,
    /// without spinning first (a thread held in reserve, see `worker.rs`).
    pub(crate) fn rest(&self, ready: impl Fn() -> bool, timeout: Duration) {
        self.sleep(ready, Some(timeout));
    }

    fn spin(&self, ready: &impl Fn() -> bool) {
        for round in 0..SPIN_ROUNDS {
            if ready() {
                return;
            }
            for _ in 0..(1u32 << round.min(6)) {
                std::hint::spin_loop();
            }
        }
        for _ in 0..YIELD_ROUNDS {
            if ready() {
                return;
            }
            std::thread::yield_now();
        }
    }

    fn sleep(&self, ready: impl Fn() -> bool, timeout: Option<Duration>) {
        let guard = lock(&self.lock);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            // Subtle: `ready` is checked after the increment and while holding
            // the mutex; a notifier that saw the increment blocks on the mutex
            // until `wait` has released it.
            drop(crate::sync::wait(&self.cond, guard, timeout));
        } else {
            drop(guard);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(all(test, parpool_loom))]
mod loom_tests {
    //! Model check of the Dekker pair: a job pushed while a worker goes to
    //! sleep is never missed (loom reports a deadlock if the worker could
    //! sleep forever).
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    #[test]
    fn a_push_racing_a_sleeper_always_wakes_it() {
        loom::model(|| {
            let sleep = Arc::new(Sleep::default());
            let queued = Arc::new(AtomicBool::new(false));
            let worker = {
                let (sleep, queued) = (Arc::clone(&sleep), Arc::clone(&queued));
                loom::thread::spawn(move || {
                    while !queued.load(Ordering::SeqCst) {
                        sleep.sleep(|| queued.load(Ordering::SeqCst), None);
                    }
                })
            };
            queued.store(true, Ordering::SeqCst);
            sleep.notify(1);
            worker.join().unwrap();
        });
    }
}
