//! The synchronization facade: std's primitives, or loom's under `cfg(parpool_loom)`.
//!
//! The protocol modules (`lifecycle`, `sleep`, the map gate) take their
//! atomics, mutexes and condition variables from here, so the model checker
//! runs the real code (`RUSTFLAGS="--cfg parpool_loom" cargo test -p parpool --lib
//! --release`; see `.ci/loom`).
//!
//! Locking and waiting ignore poison: every mutex in this crate guards state
//! that stays consistent even if a holder panicked (user code never runs
//! while one is held, except callbacks and user `Drop`s, which are caught),
//! so a poisoned lock is simply taken over.

#[cfg(not(parpool_loom))]
pub(crate) use std::sync::{atomic, Condvar, Mutex, MutexGuard};

#[cfg(parpool_loom)]
pub(crate) use loom::sync::{atomic, Condvar, Mutex, MutexGuard};

use std::time::Duration;

/// Locks `m`, ignoring poison.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cond` once, for at most `timeout` (`None`: no limit), ignoring
/// poison. Callers re-check their condition: wake-ups may be spurious.
pub(crate) fn wait<'a, T>(
    cond: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Option<Duration>,
) -> MutexGuard<'a, T> {
    match timeout {
        None => cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
        #[cfg(not(parpool_loom))]
        Some(t) => {
            cond.wait_timeout(guard, t)
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
        // loom has no time: a timed wait is a wait that may return at once.
        #[cfg(parpool_loom)]
        Some(_) => {
            drop(guard);
            unreachable!("loom models use untimed waits only")
        }
    }
}
