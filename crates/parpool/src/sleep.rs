//! How idle workers sleep and how new work wakes them.
//!
//! An idle worker first spins briefly (new work often arrives within
//! microseconds, and a futex wake costs more than that), then yields, then
//! sleeps on a condition variable, so an idle pool burns no CPU.
//!
//! Invariant: a job pushed while a worker is going to sleep is never missed.
//! The pusher does `push; fence; load sleepers`, the sleeper does
//! `sleepers += 1; fence; check queue` (a Dekker pair: at least one of them
//! sees the other's write). If the pusher sees no sleeper, the sleeper's check
//! sees the job. If it sees a sleeper, it notifies under the mutex, which the
//! sleeper holds from its increment until `wait` releases it, so the
//! notification cannot arrive before the sleeper waits. The protocol is
//! described with its scenarios in `docs/design.md`.

use crate::sync::lock;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub(crate) struct Sleep {
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

/// Rounds of spinning, then of yielding, before a worker sleeps.
const SPIN_ROUNDS: u32 = 64;
const YIELD_ROUNDS: u32 = 16;

impl Sleep {
    /// Called after new work was made visible: wakes up to `n` sleepers.
    pub(crate) fn notify(&self, n: usize) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        let _guard = lock(&self.lock);
        if n == 1 {
            self.cond.notify_one();
        } else {
            self.cond.notify_all();
        }
    }

    /// Wakes every sleeper (state change: close, terminate).
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        let _guard = lock(&self.lock);
        self.cond.notify_all();
    }

    /// Idles until `ready()` may have become true. `ready` must be cheap and
    /// must not block. Spurious returns are allowed: the caller loops.
    pub(crate) fn idle(&self, ready: impl Fn() -> bool) {
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
        let guard = lock(&self.lock);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            // Subtle: `ready` is checked after the increment and while holding
            // the mutex; a notifier that saw the increment blocks on the mutex
            // until `wait` has released it.
            drop(self.cond.wait(guard).unwrap_or_else(|e| e.into_inner()));
        } else {
            drop(guard);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}
