//! The ordering window: the chunks that arrived and wait to be handed to the
//! consumer, and the order they leave in.
//!
//! [`Imap`](super::Imap) hands chunks out by sequence number: a chunk that
//! arrives early waits in `reorder` until every chunk before it has left, and
//! `head_seq` is the number of the next one to leave.
//! [`ImapUnordered`](super::ImapUnordered) hands them out in arrival order
//! (`fifo`). The window also counts the chunks handed out, and learns from
//! the credits how many the input made in all, so the consumer knows when
//! nothing more can come.
//!
//! Invariants:
//! - Ordered, chunks leave in sequence order with no gaps: `head_seq` only
//!   moves past the chunk it hands out. Only one of `reorder` (ordered) and
//!   `fifo` (unordered) is ever used.
//! - `chunks_handed` counts every chunk that left; once `chunks_total` is
//!   known and equal to it, no chunk is left to arrive.

use super::credit::{End, Mailbox, Report, Want};
use std::collections::{BTreeMap, VecDeque};

/// A chunk waiting to be handed out: its credit, results and end.
pub(super) type Ready<R> = (usize, Vec<R>, End);

/// The chunks that arrived and were not yet handed out, in the order they
/// leave in.
pub(super) struct Window<R> {
    ordered: bool,
    head_seq: u64,
    reorder: BTreeMap<u64, Ready<R>>,
    fifo: VecDeque<Ready<R>>,
    /// How many chunks the input made in all, once a credit found its end.
    chunks_total: Option<u64>,
    /// Chunks handed to the consumer so far.
    chunks_handed: u64,
}

impl<R> Window<R> {
    pub(super) fn new(ordered: bool) -> Self {
        Window {
            ordered,
            head_seq: 0,
            reorder: BTreeMap::new(),
            fifo: VecDeque::new(),
            chunks_total: None,
            chunks_handed: 0,
        }
    }

    /// Chunks leave by sequence number (`Imap`), not as they arrive.
    pub(super) fn is_ordered(&self) -> bool {
        self.ordered
    }

    /// Takes in the chunk with sequence number `seq`.
    pub(super) fn insert(&mut self, seq: u64, ready: Ready<R>) {
        if self.ordered {
            self.reorder.insert(seq, ready);
        } else {
            self.fifo.push_back(ready);
        }
    }

    /// A credit found the input's end: it made `total` chunks in all.
    pub(super) fn set_total(&mut self, total: u64) {
        self.chunks_total = Some(total);
    }

    /// Every chunk the input made was handed out.
    pub(super) fn all_handed(&self) -> bool {
        self.chunks_total == Some(self.chunks_handed)
    }

    /// The next chunk the consumer may hand out, if it is here; it counts as
    /// handed out.
    pub(super) fn next_ready(&mut self) -> Option<Ready<R>> {
        let ready = if self.ordered {
            let ready = self.reorder.remove(&self.head_seq)?;
            self.head_seq += 1;
            ready
        } else {
            self.fifo.pop_front()?
        };
        self.chunks_handed += 1;
        Some(ready)
    }

    /// How many chunks were handed out. When the input made no more than
    /// that, the chunk read next is the one the consumer waits for.
    pub(super) fn handed(&self) -> u64 {
        self.chunks_handed
    }

    /// Takes the panic out of the first chunk waiting here that ended in
    /// one (that chunk then counts as cancelled).
    pub(super) fn take_panic(&mut self) -> Option<crate::panic::Payload> {
        let ends = self
            .reorder
            .values_mut()
            .chain(self.fifo.iter_mut())
            .map(|(_, _, end)| end);
        for end in ends {
            if matches!(end, End::Panicked(_)) {
                if let End::Panicked(p) = std::mem::replace(end, End::Cancelled) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// What the consumer waits for.
    pub(super) fn want(&self) -> Want {
        if self.ordered {
            Want::Seq(self.head_seq)
        } else {
            Want::Any
        }
    }

    /// Whether a delivery the consumer waits for is in the mailbox.
    pub(super) fn arrived_wanted(&self, q: &Mailbox<R>) -> bool {
        match self.want() {
            Want::Seq(s) => q.arrived.iter().any(|d| match d.report {
                Report::Chunk { seq, .. } => seq == s,
                _ => true,
            }),
            _ => !q.arrived.is_empty(),
        }
    }

    /// Takes out every chunk still waiting (in sequence order, then arrival
    /// order), for a consumer that goes away.
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = Ready<R>> {
        std::mem::take(&mut self.reorder)
            .into_values()
            .chain(std::mem::take(&mut self.fifo))
    }
}
