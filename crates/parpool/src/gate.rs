//! The gate: how a blocking map knows that no runner touches its stack any more.
//!
//! A runner job holds a pointer to the map's context on the caller's stack.
//! It dereferences it only *inside* the gate: [`Gate::enter`] succeeds only
//! while the gate is open, and the returned guard leaves on drop, even when
//! unwinding. The caller closes the gate and waits until it is empty; after
//! that, a runner popped later finds the gate closed and never touches the
//! context. So the caller never waits for queued runners that have not
//! started, and nothing can skip the wait (it is the call itself that
//! waits, not a handle).
//!
//! The word holds a "closed" bit and twice the number of runners inside.
//! `enter` is one `fetch_add`: a runner that saw the closed bit backs out
//! (and may be the one whose leaving empties the closed gate, so it notifies
//! too). The last runner out of a closed gate takes the lock before it
//! notifies, and the waiter checks under the same lock, so the wake-up
//! cannot be lost.

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{lock, Condvar, Mutex};
use std::time::Duration;

const CLOSED: usize = 1;
const INSIDE: usize = 2;

pub(crate) struct Gate {
    word: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

/// A runner inside the gate; it leaves when this drops.
pub(crate) struct Inside<'a>(&'a Gate);

impl Gate {
    pub(crate) fn new() -> Self {
        Gate {
            word: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    /// Enters the gate if it is open.
    pub(crate) fn enter(&self) -> Option<Inside<'_>> {
        let prev = self.word.fetch_add(INSIDE, Ordering::SeqCst);
        let inside = Inside(self);
        if prev & CLOSED != 0 {
            drop(inside);
            return None;
        }
        Some(inside)
    }

    /// Closes the gate: no runner enters after this.
    pub(crate) fn close(&self) {
        self.word.fetch_or(CLOSED, Ordering::SeqCst);
    }

    /// Closed, and no runner inside.
    pub(crate) fn is_empty_and_closed(&self) -> bool {
        self.word.load(Ordering::SeqCst) == CLOSED
    }

    /// Blocks until the gate may be empty and closed, or `timeout` passes.
    pub(crate) fn block(&self, timeout: Option<Duration>) {
        let guard = lock(&self.lock);
        if self.is_empty_and_closed() {
            return;
        }
        drop(crate::sync::wait(&self.cond, guard, timeout));
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let gate = self.0;
        if gate.word.fetch_sub(INSIDE, Ordering::SeqCst) - INSIDE == CLOSED {
            // Taking the lock waits until a waiter that saw the gate busy is
            // inside `wait`; the notification goes out after it is
            // released, so the woken waiter does not block on it. The gate
            // outlives this: runners hold the map's header by `Arc`.
            drop(lock(&gate.lock));
            gate.cond.notify_all();
            crate::sleep::handed_off();
        }
    }
}

#[cfg(not(parpool_loom))]
impl crate::park::Waitable for Gate {
    fn done(&self) -> bool {
        self.is_empty_and_closed()
    }

    fn block(&self, timeout: Option<Duration>) {
        Gate::block(self, timeout);
    }
}

#[cfg(all(test, parpool_loom))]
mod loom_tests {
    //! Model check: the caller closes and waits while a runner tries to
    //! enter and work. The runner either never enters, or the caller's wait
    //! ends only after it left; and the wait always ends.
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    #[test]
    fn the_caller_never_returns_while_a_runner_is_inside() {
        loom::model(|| {
            let gate = Arc::new(Gate::new());
            let stack_alive = Arc::new(AtomicBool::new(true));
            let runner = {
                let (gate, stack_alive) = (Arc::clone(&gate), Arc::clone(&stack_alive));
                loom::thread::spawn(move || {
                    if let Some(_inside) = gate.enter() {
                        assert!(stack_alive.load(Ordering::SeqCst), "touched a dead stack");
                    }
                })
            };
            gate.close();
            while !gate.is_empty_and_closed() {
                gate.block(None);
            }
            stack_alive.store(false, Ordering::SeqCst);
            runner.join().unwrap();
        });
    }
}
