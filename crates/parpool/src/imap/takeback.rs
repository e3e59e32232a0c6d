//! Credits the consumer may take back: a queued credit that no worker has
//! started can be run by the consumer itself while it would otherwise wait.
//!
//! A credit goes to the pool's queue inside a [`Queued`] wrapper that shares
//! one [`Slot`] with the consumer's [`TakeBack`] list. Whoever empties the
//! slot first (a worker running the wrapper, the consumer taking it back, or
//! the wrapper's `Drop` when the queue discards it) owns the credit.
//!
//! A wrapper whose credit was taken back stays in the queue, empty, until a
//! worker pops it. While it is there its slot is reused: the next credit
//! the consumer issues goes into an empty slot whose wrapper is still
//! queued instead of into a new wrapper, so a busy pool's queue holds at
//! most as many of a stream's wrappers as it has credits out (the first
//! version pushed one per credit: 1 M one-item credits taken back from a
//! busy pool left 1.1 M empty wrappers, 109 MB).
//!
//! Invariants:
//! - A credit runs at most once, and is dropped unrun at most once: its
//!   only owner is whoever took it out of the slot.
//! - A slot is filled only while its wrapper is queued (`queued`, under the
//!   slot's mutex): the wrapper clears `queued` in the same critical
//!   section in which it takes the slot's credit, when it runs or is
//!   dropped, so no credit is ever left in a slot that nothing will run.
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

/// A slot's content: the credit, until someone takes it, and whether its
/// wrapper is still in the queue.
struct SlotState<'a> {
    credit: Option<Box<dyn Credit<'a> + 'a>>,
    queued: bool,
}

type Slot<'a> = Mutex<SlotState<'a>>;

/// The queue's share of a credit.
pub(super) struct Queued<'a> {
    slot: Arc<Slot<'a>>,
    items: usize,
}

impl<'a> Queued<'a> {
    /// Leaves the queue: takes the credit, if any, and closes the slot.
    fn leave(&self) -> Option<Box<dyn Credit<'a> + 'a>> {
        let mut state = lock(&self.slot);
        if !state.queued {
            return None;
        }
        state.queued = false;
        state.credit.take()
    }
}

impl Job for Queued<'_> {
    fn run(self: Box<Self>, registry: &Registry) {
        // The guard is released before the credit runs.
        if let Some(job) = self.leave() {
            job.run(registry);
        }
    }

    fn items(&self) -> usize {
        self.items
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        // Dropped unrun (after `run`, the slot is closed already): the
        // credit, if still here, is dropped now and reports "returned".
        drop(self.leave());
    }
}

/// The consumer's share: the slots of the credits it issued, oldest first.
pub(super) struct TakeBack<'a> {
    issued: VecDeque<Arc<Slot<'a>>>,
}

impl<'a> TakeBack<'a> {
    pub(super) fn new() -> Self {
        TakeBack {
            issued: VecDeque::new(),
        }
    }

    /// Issues a credit: into the slot of a wrapper still queued whose
    /// credit was taken back, or else in a new wrapper handed to `submit`
    /// (the pool's queue). A refused wrapper comes back, its credit inside.
    pub(super) fn issue(
        &mut self,
        credit: Box<dyn Credit<'a> + 'a>,
        submit: impl FnOnce(Box<dyn Job + 'a>) -> Result<(), Box<dyn Job + 'a>>,
    ) -> Result<(), Box<dyn Job + 'a>> {
        let credit = match self.refill(credit) {
            Ok(()) => return Ok(()),
            Err(credit) => credit,
        };
        let (job, slot) = Self::wrap(credit);
        submit(job)?;
        self.keep(slot);
        Ok(())
    }

    /// Puts a credit into the slot of a wrapper still queued whose credit
    /// was taken back: no new wrapper, nothing more in the queue. The
    /// credit comes back if there is no such slot.
    fn refill(&mut self, credit: Box<dyn Credit<'a> + 'a>) -> Result<(), Box<dyn Credit<'a> + 'a>> {
        for slot in &self.issued {
            let mut state = lock(slot);
            if state.queued && state.credit.is_none() {
                state.credit = Some(credit);
                return Ok(());
            }
        }
        Err(credit)
    }

    /// Wraps a credit for the queue; [`TakeBack::keep`] the returned slot
    /// once the queue accepted it.
    fn wrap(credit: Box<dyn Credit<'a> + 'a>) -> (Box<dyn Job + 'a>, Arc<Slot<'a>>) {
        let items = credit.items();
        let slot = Arc::new(Mutex::new(SlotState {
            credit: Some(credit),
            queued: true,
        }));
        let queued = Queued {
            slot: Arc::clone(&slot),
            items,
        };
        (Box::new(queued), slot)
    }

    /// Remembers an accepted credit, so it can be taken back.
    fn keep(&mut self, slot: Arc<Slot<'a>>) {
        // Forget slots whose wrapper left the queue (run or dropped).
        self.issued.retain(|s| lock(s).queued);
        self.issued.push_back(slot);
    }

    /// Takes back the oldest credit no worker has started, if any. Its
    /// slot stays listed: its wrapper is still queued, for `refill`.
    pub(super) fn take(&mut self) -> Option<Box<dyn Credit<'a> + 'a>> {
        self.issued.iter().find_map(|slot| lock(slot).credit.take())
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

    #[test]
    fn a_taken_back_credits_slot_is_refilled_while_its_wrapper_is_queued() {
        let (job, _, _) = probe();
        let mut list = TakeBack::new();
        let (queued, slot) = TakeBack::wrap(job);
        list.keep(slot);
        drop(list.take().expect("the credit was not started"));
        let (second, _, second_drops) = probe();
        assert!(list.refill(second).is_ok(), "the wrapper is still queued");
        // The queue discards the wrapper: the refilled credit goes with it.
        drop(queued);
        assert_eq!(second_drops.load(Ordering::SeqCst), 1);
        let (third, _, _) = probe();
        assert!(list.refill(third).is_err(), "no wrapper is queued any more");
    }
}
