//! The stash: the items the reading credit has read so far, published one
//! by one, so that a consumer waiting for them can take them over.
//!
//! Why. A credit reads its whole chunk before it maps it. An input whose
//! `next()` waits for results of items read before it (a work queue that
//! the consumer refills from results, as a crawler's) would wait forever:
//! the items its results depend on sit unmapped in the credit that is
//! blocked in `next()`. So the reading credit publishes each item as soon as
//! it has read it, and a consumer that finds the read stalled (nothing
//! published for [`STALL`] while it waited) *rescues* the
//! items published and not yet taken: it maps them itself and hands them
//! out, in order, ahead of the rest of their chunk. Credits issued before a
//! rescue then read one item each (the rescue's *epoch*), and the consumer
//! issues one-item credits for a while (as Python's default `chunksize=1`
//! does), longer after each rescue, so a feedback input streams with ever
//! rarer stalls, while an input that merely paused once soon goes back to
//! large chunks.
//!
//! Invariants:
//! - One credit reads at a time (the read token), so an imap has one stash,
//!   used by the reading credit between [`Reader::open`] and the reader's
//!   drop (the close).
//! - Slots `0..published` of the open buffer hold items the reader wrote;
//!   the reader writes only slot `published` (then stores `published + 1`
//!   with `Release`) and reads or moves no slot before the close.
//! - Slots `0..taken` were moved out by rescuers, under the mutex; the
//!   close (under the mutex) ends rescuing, so the reader then owns exactly
//!   `taken..published`, which it moves to the front of its buffer.

use crate::sync::lock;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a read must publish nothing, while the consumer waits for it,
/// to count as stalled.
pub(super) const STALL: Duration = Duration::from_millis(10);

pub(super) struct Stash<T> {
    /// Items written into the open buffer (stored by the reader only).
    published: AtomicUsize,
    /// Rescues so far. A credit issued before the latest one (with a lower
    /// epoch) reads at most one item: it was sized before the stall.
    epoch: AtomicU64,
    /// How many items the open read may read: its credit, or 1 for a credit
    /// of an older epoch; a rescue of the open read lowers it to 0, so the
    /// reader stops before it calls `next()` again.
    limit: AtomicUsize,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// The open buffer, while a credit reads.
    buf: Option<NonNull<T>>,
    /// The sequence number of the chunk being read.
    seq: u64,
    /// Slots moved out by rescuers.
    taken: usize,
    /// `published` as a probe first saw it, and when: stall detection.
    probe: Option<(usize, Instant)>,
}

// SAFETY: the stash hands items of type `T` from the reading thread to a
// rescuing one (hence `T: Send`); the raw buffer pointer is only used as
// the module invariants allow (the reader writes slots beyond `published`,
// rescuers move out slots below it under the mutex).
unsafe impl<T: Send> Send for Stash<T> {}
// SAFETY: as above; shared access goes through the mutex and the atomics.
unsafe impl<T: Send> Sync for Stash<T> {}

impl<T> Stash<T> {
    pub(super) fn new() -> Self {
        Stash {
            published: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            limit: AtomicUsize::new(0),
            state: Mutex::new(State {
                buf: None,
                seq: 0,
                taken: 0,
                probe: None,
            }),
        }
    }

    /// Rescues so far: the epoch of the credits the consumer issues now.
    #[cfg(test)]
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Takes the items published and not yet taken from the read of chunk
    /// `want` (any chunk for `None`), if that read has stalled: if probes
    /// have seen nothing new published for at least [`STALL`]. Otherwise,
    /// or if no such read is open, returns nothing and notes what it saw
    /// for the next call.
    pub(super) fn rescue(&self, want: Option<u64>) -> Vec<T> {
        let mut st = lock(&self.state);
        let Some(buf) = st.buf else {
            st.probe = None;
            return Vec::new();
        };
        if want.is_some_and(|seq| seq != st.seq) {
            st.probe = None;
            return Vec::new();
        }
        let published = self.published.load(Ordering::Acquire);
        let stalled = match st.probe {
            Some((seen, since)) if seen == published => since.elapsed() >= STALL,
            _ => {
                st.probe = Some((published, Instant::now()));
                false
            }
        };
        if published == st.taken || !stalled {
            return Vec::new();
        }
        let taken = st.taken;
        // SAFETY: slots `taken..published` were written by the reader
        // (the `Acquire` load above pairs with its `Release` stores) and not
        // moved out before (`taken` only grows, under this mutex); the
        // reader does not touch them before the close, which takes the
        // mutex. Each is read (moved out) exactly once, here.
        let items = (taken..published)
            .map(|i| unsafe { buf.as_ptr().add(i).read() })
            .collect();
        st.taken = published;
        st.probe = None;
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.limit.store(0, Ordering::Relaxed);
        items
    }
}

/// An open read: the reading credit writes items into `items`' spare
/// capacity and publishes each. Dropping it closes the read (also when the
/// input's `next` panicked) and leaves in `items` exactly the items no
/// rescuer took, in reading order.
pub(super) struct Reader<'a, T> {
    stash: &'a Stash<T>,
    items: &'a mut Vec<T>,
    base: NonNull<T>,
}

impl<'a, T> Reader<'a, T> {
    /// Opens the read of chunk `seq`, of at most `credit` items, into
    /// `items` (emptied first), for a credit issued in `epoch`.
    pub(super) fn open(
        stash: &'a Stash<T>,
        items: &'a mut Vec<T>,
        seq: u64,
        credit: usize,
        epoch: u64,
    ) -> Self {
        items.clear();
        items.reserve(credit);
        let base = NonNull::new(items.as_mut_ptr()).expect("a Vec's pointer is never null");
        let mut st = lock(&stash.state);
        stash.published.store(0, Ordering::Relaxed);
        let limit = if epoch < stash.epoch.load(Ordering::Relaxed) {
            credit.min(1)
        } else {
            credit
        };
        stash.limit.store(limit, Ordering::Relaxed);
        *st = State {
            buf: Some(base),
            seq,
            taken: 0,
            probe: None,
        };
        drop(st);
        Reader { stash, items, base }
    }

    /// Reads from `iter` until the credit is full (after one item for a
    /// credit of an older epoch, and at once if this read was rescued);
    /// returns `true` if the input ended.
    pub(super) fn read(&mut self, iter: &mut impl Iterator<Item = T>) -> bool {
        // The hot loop of every imap: locals only, one plain store and one
        // load per item besides the item itself. If `next` panics, the
        // count published so far is the count read (see `count`).
        let base = self.base.as_ptr();
        let (published, limit) = (&self.stash.published, &self.stash.limit);
        let mut read = published.load(Ordering::Relaxed);
        while read < limit.load(Ordering::Relaxed) {
            let Some(item) = iter.next() else {
                return true;
            };
            // SAFETY: `read < limit <= credit`, the reserved capacity; slot
            // `read` is at `published`, so no rescuer looks at it, and it
            // was never written before in this read.
            unsafe { base.add(read).write(item) };
            read += 1;
            published.store(read, Ordering::Release);
        }
        false
    }

    /// Items read so far, rescued ones included: what this reader
    /// published (only it stores `published` while the read is open).
    pub(super) fn count(&self) -> usize {
        self.stash.published.load(Ordering::Relaxed)
    }
}

impl<T> Drop for Reader<'_, T> {
    fn drop(&mut self) {
        let taken = {
            let mut st = lock(&self.stash.state);
            st.buf = None;
            st.taken
        };
        let rest = self.count() - taken;
        // SAFETY: the read is closed, so no rescuer moves anything out any
        // more: slots `0..taken` were moved out, `taken..count` are written
        // and ours. Moving them to the front (regions may overlap:
        // `ptr::copy`) makes `0..rest` exactly the initialised items.
        unsafe {
            if taken > 0 {
                std::ptr::copy(self.base.as_ptr().add(taken), self.base.as_ptr(), rest);
            }
            self.items.set_len(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_read_is_rescued_and_the_reader_keeps_the_rest() {
        let stash = Stash::new();
        let mut items: Vec<String> = Vec::new();
        let mut reader = Reader::open(&stash, &mut items, 7, 8, 0);
        let mut input = (0..4).map(|i| i.to_string());
        // (`take(2)` ends: the input looks exhausted to this read.)
        assert!(reader.read(&mut input.by_ref().take(2)));
        // Another chunk, or a read not yet seen stalled: nothing.
        assert!(stash.rescue(Some(6)).is_empty());
        assert!(stash.rescue(Some(7)).is_empty());
        // A probe less than `STALL` after the first: not stalled. The two
        // calls are not timed (a preemption between them could last
        // `STALL`): the first probe is dated in the future for this one,
        // and put back after.
        let first = lock(&stash.state).probe.expect("the first probe");
        assert_eq!(first.0, 2);
        let fresh = Some((first.0, Instant::now() + Duration::from_secs(3600)));
        lock(&stash.state).probe = fresh;
        assert!(stash.rescue(Some(7)).is_empty(), "not stalled for long yet");
        assert_eq!(lock(&stash.state).probe, fresh, "the probe was kept");
        lock(&stash.state).probe = Some(first);
        std::thread::sleep(STALL);
        // Nothing published for `STALL`: stalled.
        assert_eq!(stash.rescue(Some(7)), ["0", "1"]);
        assert_eq!(stash.epoch(), 1);
        // The rescued read stops before it calls `next()` again.
        assert!(!reader.read(&mut input));
        assert_eq!(reader.count(), 2);
        drop(reader);
        assert!(items.is_empty());
        assert!(stash.rescue(None).is_empty(), "closed");
        // A credit issued before the rescue reads one item; one issued
        // after it, its whole credit.
        let mut reader = Reader::open(&stash, &mut items, 8, 8, 0);
        assert!(!reader.read(&mut input));
        drop(reader);
        assert_eq!(items, ["2"]);
        let mut reader = Reader::open(&stash, &mut items, 9, 8, 1);
        assert!(reader.read(&mut input));
        drop(reader);
        assert_eq!(items, ["3"]);
    }

    #[test]
    fn items_published_after_a_rescue_stay_with_the_reader() {
        let stash = Stash::new();
        let mut items: Vec<u32> = Vec::new();
        let mut reader = Reader::open(&stash, &mut items, 0, 8, 0);
        assert!(reader.read(&mut [1, 2].into_iter()));
        assert!(stash.rescue(None).is_empty());
        std::thread::sleep(STALL);
        assert_eq!(stash.rescue(None), [1, 2]);
        // A read that was already past its limit check publishes one more
        // (as if `next()` returned after the rescue): the reader keeps it.
        stash.limit.store(8, Ordering::Relaxed);
        assert!(!reader.read(&mut [3].into_iter().chain(std::iter::repeat(9))));
        drop(reader);
        assert_eq!(items, [3, 9, 9, 9, 9, 9]);
    }

    #[test]
    fn an_unrescued_read_keeps_everything_and_a_panicking_input_too() {
        let stash = Stash::new();
        let mut items: Vec<Box<u32>> = Vec::new();
        let mut reader = Reader::open(&stash, &mut items, 0, 4, 0);
        assert!(reader.read(&mut (0..3).map(Box::new)));
        drop(reader);
        assert_eq!(items, [Box::new(0), Box::new(1), Box::new(2)]);
        let mut reader = Reader::open(&stash, &mut items, 1, 4, 0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            reader.read(&mut (0..4).map(|i| {
                assert!(i < 2, "input panics at 2");
                Box::new(i)
            }))
        }));
        assert!(r.is_err());
        drop(reader);
        assert_eq!(items, [Box::new(0), Box::new(1)]);
    }
}
