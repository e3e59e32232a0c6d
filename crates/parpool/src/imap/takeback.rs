//! Credits the consumer may take back: a queued credit that no worker has
//! started can be run by the consumer itself while it would otherwise wait.
//!
//! A credit goes to the pool's queue inside a [`Queued`] wrapper that shares
//! one [`Slot`] with the consumer's [`TakeBack`] list. Whoever empties the
//! slot first (a worker running the wrapper, the consumer taking it back, or
//! the wrapper's `Drop` when the queue discards it) owns the credit.
//!
//! Invariants:
//! - A credit runs at most once, and is dropped unrun at most once: its
//!   only owner is whoever took it out of the slot.
//! - A wrapper dropped unrun (`terminate` drained the queue) drops its
//!   credit at once, which then reports "returned" as before: the consumer
//!   never waits for a credit that sits in its own list.
//! - The list holds only credits the pool accepted: a refused credit stays
//!   on its own path (it runs alone, once no other credit is out).

use super::credit::Credit;
use crate::job::Job;
use crate::registry::Registry;
use crate::sync::lock;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One credit, until someone takes it.
type Slot<'a> = Mutex<Option<Box<dyn Credit<'a> + 'a>>>;

/// The queue's share of a credit.
pub(super) struct Queued<'a> {
    slot: Arc<Slot<'a>>,
    items: usize,
}

impl Job for Queued<'_> {
    fn run(self: Box<Self>, registry: &Registry) {
        // The guard is released before the credit runs.
        let job = lock(&self.slot).take();
        if let Some(job) = job {
            job.run(registry);
        }
    }

    fn items(&self) -> usize {
        self.items
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        // Dropped unrun (or after `run` took it): the credit, if still
        // here, is dropped now and reports "returned".
        let job = lock(&self.slot).take();
        drop(job);
    }
}

/// The consumer's share: the credits it issued, oldest first.
pub(super) struct TakeBack<'a> {
    issued: VecDeque<Arc<Slot<'a>>>,
}

impl<'a> TakeBack<'a> {
    pub(super) fn new() -> Self {
        TakeBack {
            issued: VecDeque::new(),
        }
    }

    /// Wraps a credit for the queue; [`TakeBack::keep`] the returned slot
    /// once the queue accepted it.
    pub(super) fn wrap(job: Box<dyn Credit<'a> + 'a>) -> (Box<dyn Job + 'a>, Arc<Slot<'a>>) {
        let items = job.items();
        let slot = Arc::new(Mutex::new(Some(job)));
        let queued = Queued {
            slot: Arc::clone(&slot),
            items,
        };
        (Box::new(queued), slot)
    }

    /// Remembers an accepted credit, so it can be taken back.
    pub(super) fn keep(&mut self, slot: Arc<Slot<'a>>) {
        // Forget credits whose wrapper is gone (run or dropped): only this
        // list holds their slot, and it is empty.
        self.issued.retain(|s| Arc::strong_count(s) > 1);
        self.issued.push_back(slot);
    }

    /// Takes back the oldest credit no worker has started, if any.
    pub(super) fn take(&mut self) -> Option<Box<dyn Credit<'a> + 'a>> {
        while let Some(slot) = self.issued.pop_front() {
            let job = lock(&slot).take();
            if job.is_some() {
                return job;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts runs and drops.
    struct Probe(Arc<AtomicUsize>, Arc<AtomicUsize>);
    impl Job for Probe {
        fn run(self: Box<Self>, _: &Registry) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl<'a> Credit<'a> for Probe {
        fn run_if_next(
            self: Box<Self>,
            _: u64,
            _: &Registry,
        ) -> Result<(), Box<dyn Credit<'a> + 'a>> {
            Err(self)
        }

        fn into_job(self: Box<Self>) -> Box<dyn Job + 'a> {
            self
        }
    }
    impl Drop for Probe {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn probe() -> (Box<dyn Credit<'static>>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (runs, drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        (
            Box::new(Probe(Arc::clone(&runs), Arc::clone(&drops))),
            runs,
            drops,
        )
    }

    #[test]
    fn a_credit_taken_back_is_not_run_by_its_wrapper() {
        let (job, runs, drops) = probe();
        let mut list = TakeBack::new();
        let (queued, slot) = TakeBack::wrap(job);
        list.keep(slot);
        let taken = list.take().expect("the credit was not started");
        assert!(list.take().is_none());
        drop(queued); // the wrapper, dropped unrun: nothing left to drop
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(taken);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_wrapper_dropped_unrun_drops_its_credit_at_once() {
        let (job, runs, drops) = probe();
        let mut list = TakeBack::new();
        let (queued, slot) = TakeBack::wrap(job);
        list.keep(slot);
        drop(queued);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        // The emptied slot is forgotten at the next keep.
        let (job2, _, drops2) = probe();
        let (q2, slot2) = TakeBack::wrap(job2);
        list.keep(slot2);
        assert_eq!(list.issued.len(), 1);
        // The second is still there to take back.
        drop(list.take().expect("the second credit was not started"));
        assert!(list.take().is_none());
        drop(q2);
        assert_eq!(drops2.load(Ordering::SeqCst), 1);
    }
}
