//! Poison-tolerant locking and condition-variable waits.
//!
//! Every mutex in this crate guards state that stays consistent even if a
//! holder panicked: user code never runs while one is held, except result
//! callbacks, which are caught. So a poisoned lock is simply taken over.

use std::sync::{Condvar, Mutex, MutexGuard};
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
        Some(t) => {
            cond.wait_timeout(guard, t)
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
    }
}
