//! Poison-tolerant locking.
//!
//! Every mutex in this crate guards state that stays consistent even if a
//! holder panicked: user code never runs while one is held, except result
//! callbacks, which are caught. So a poisoned lock is simply taken over.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poison.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
