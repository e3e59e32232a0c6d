//! Executor waits: parpool futures awaited by an executor that blocks on a
//! worker (`futures::executor::block_on` inside a job).
//!
//! The pool cannot see such a wait: the executor, not the pool, parks the
//! thread. On a pool whose every worker awaits that way, the awaited work
//! (or work it waits for, queued on this pool) would have no thread. So a
//! parpool future or stream that returns `Pending` on a worker records
//! itself in the thread's set of *pending* futures, and while that set is
//! not empty the worker counts as blocked in its own pool's census, and a
//! thread resting in reserve or a spare runs the queue in its place
//! (`worker::count_blocked`).
//!
//! Invariants:
//! - The thread counts as blocked exactly while its set is not empty: one
//!   count however many futures wait, added when the set fills and removed
//!   when it empties.
//! - A future leaves the set only itself: at its next poll, or when it is
//!   dropped. So one future finishing, or dropped, while another still
//!   waits does not uncount the thread (an executor's `join` parks with
//!   the other pending).
//! - Nested runs do not mix: a blocking wait (`park::wait`) and a job
//!   (`Registry::run_job`, also inlined into a wait) suspend the thread's
//!   set on entry (uncounting it: the thread is busy, not parked) and
//!   restore it on exit (counting it again), after dropping whatever the
//!   inner run left (its futures can no longer park this thread).
//!
//! A future dropped on another thread than the one it waited on leaves its
//! key in the first thread's set until that thread's job returns: the pool
//! then runs one thread too many for a while, never one too few.

use crate::registry::Registry;
use crate::worker;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

/// What one thread has pending, and in which pool it counts.
#[derive(Default)]
pub(crate) struct Waits {
    pool: Option<Arc<Registry>>,
    pending: HashSet<usize>,
}

impl Waits {
    fn count(&self) {
        if let (Some(pool), false) = (&self.pool, self.pending.is_empty()) {
            worker::count_blocked(pool);
        }
    }

    fn uncount(&self) {
        if let (Some(pool), false) = (&self.pool, self.pending.is_empty()) {
            worker::uncount_blocked(pool);
        }
    }
}

thread_local! {
    static WAITS: RefCell<Waits> = RefCell::new(Waits::default());
}

/// The future identified by `key` returns `Pending` on this thread.
pub(crate) fn pending(key: usize) {
    let Some(pool) = worker::current() else {
        return;
    };
    // `try_with`: a handle may be dropped by another thread-local's
    // destructor, after this one is gone.
    let _ = WAITS.try_with(|w| {
        let mut w = w.borrow_mut();
        if w.pending.is_empty() {
            w.pool = Some(pool);
            w.pending.insert(key);
            w.count();
        } else {
            w.pending.insert(key);
        }
    });
}

/// The future identified by `key` is polled again, or dropped: it no
/// longer waits (if it still does, its poll records it again).
#[inline]
pub(crate) fn resumed(key: usize) {
    let _ = WAITS.try_with(|w| {
        let mut w = w.borrow_mut();
        if w.pending.remove(&key) && w.pending.is_empty() {
            if let Some(pool) = w.pool.take() {
                worker::uncount_blocked(&pool);
            }
        }
    });
}

/// The thread's pending set, put aside while a blocking wait or a job runs
/// on it; restored (and counted again) when dropped.
pub(crate) struct Suspended(Option<Waits>);

/// Puts the thread's pending set aside (uncounting it) until the guard
/// drops.
#[inline]
pub(crate) fn suspend() -> Suspended {
    WAITS
        .try_with(|w| {
            let mut w = w.borrow_mut();
            if w.pending.is_empty() {
                return Suspended(None);
            }
            w.uncount();
            Suspended(Some(std::mem::take(&mut *w)))
        })
        .unwrap_or(Suspended(None))
}

impl Drop for Suspended {
    fn drop(&mut self) {
        let outer = self.0.take();
        let _ = WAITS.try_with(|w| {
            let mut w = w.borrow_mut();
            if outer.is_none() && w.pending.is_empty() {
                return; // the common case: nothing waits, nothing was put aside
            }
            // What the inner run left can no longer park this thread.
            w.uncount();
            match outer {
                Some(outer) => {
                    *w = outer;
                    w.count();
                }
                None => {
                    w.pending.clear();
                    w.pool = None;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_the_pool_nothing_is_recorded() {
        pending(1);
        WAITS.with(|w| assert!(w.borrow().pending.is_empty()));
        resumed(1);
        drop(suspend());
        WAITS.with(|w| assert!(w.borrow().pool.is_none()));
    }
}
