//! Result and item buffers that travel between the credits and the consumer
//! and are reused instead of freed (fresh large buffers cost page faults).
//!
//! [`Spare`] keeps a few emptied buffers (at most `Spare::KEEP`). [`Cursor`]
//! hands out one chunk's results by value and then gives its buffer back;
//! it keeps the invariant that every result is moved out or dropped exactly
//! once.

use crate::panic;
use crate::sync::lock;
use std::sync::Mutex;

/// A few emptied buffers, kept for reuse.
pub(super) struct Spare<T>(Mutex<Vec<Vec<T>>>);

impl<T> Spare<T> {
    const KEEP: usize = 4;

    pub(super) fn new() -> Self {
        Spare(Mutex::new(Vec::new()))
    }

    pub(super) fn take(&self, capacity: usize) -> Vec<T> {
        let mut v = lock(&self.0).pop().unwrap_or_default();
        v.reserve(capacity);
        v
    }

    pub(super) fn give(&self, mut v: Vec<T>) {
        v.clear();
        let mut spare = lock(&self.0);
        if spare.len() < Self::KEEP {
            spare.push(v);
        }
    }
}

/// Hands out the results of one chunk by value, then gives its buffer back
/// for reuse (`vec::IntoIter` cannot return its allocation).
///
/// Invariant: `buf[pos..len]` are the results not yet handed out; the ones
/// before `pos` have been moved out, so they must not be dropped again.
pub(super) struct Cursor<R> {
    buf: Vec<R>,
    pos: usize,
}

impl<R> Default for Cursor<R> {
    fn default() -> Self {
        Cursor {
            buf: Vec::new(),
            pos: 0,
        }
    }
}

/// How far (bytes) ahead of the result handed out the cursor asks the CPU to
/// fetch: a worker on another core wrote the results, and W1's consumer,
/// the critical path of a tiny-item `imap`, spent half its samples on that
/// load (`docs/design.md` §12).
const PREFETCH_AHEAD: usize = 1024;

/// Asks the CPU to bring `p`'s cache line in for reading. Only a hint.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults and has no effect on memory, so
        // any address will do, also one past the buffer's end.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
}

impl<R> Cursor<R> {
    #[inline]
    pub(super) fn next(&mut self) -> Option<R> {
        if self.pos < self.buf.len() {
            // SAFETY: `pos < len`, so the slot is initialized, and it is read
            // once: `pos` moves past it at once.
            let item = unsafe { self.buf.as_ptr().add(self.pos).read() };
            prefetch(
                self.buf
                    .as_ptr()
                    .wrapping_add(self.pos)
                    .cast::<u8>()
                    .wrapping_add(PREFETCH_AHEAD),
            );
            self.pos += 1;
            Some(item)
        } else {
            None
        }
    }

    /// Hands every result not yet handed out to `g`, in order.
    #[inline]
    pub(super) fn fold<B>(&mut self, mut acc: B, g: &mut impl FnMut(B, R) -> B) -> B {
        while let Some(x) = self.next() {
            acc = g(acc, x);
        }
        acc
    }

    /// Moves out every result not yet handed out, as one `Vec` (the buffer
    /// itself when nothing was handed out yet); the cursor is left empty.
    pub(super) fn take_rest(&mut self) -> Vec<R> {
        let (pos, len) = (self.pos, self.buf.len());
        self.pos = 0;
        let mut buf = std::mem::take(&mut self.buf);
        if pos > 0 {
            // SAFETY: `buf[..pos]` were moved out and `buf[pos..len]` are
            // initialized; the length is set to 0 before the move so that
            // nothing is dropped twice, then to the count of results moved
            // to the front (`copy` allows overlap).
            unsafe {
                buf.set_len(0);
                let base = buf.as_mut_ptr();
                std::ptr::copy(base.add(pos), base, len - pos);
                buf.set_len(len - pos);
            }
        }
        buf
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Starts handing out `buf`; returns the previous buffer, emptied.
    pub(super) fn replace(&mut self, buf: Vec<R>) -> Vec<R> {
        self.drop_rest();
        self.pos = 0;
        std::mem::replace(&mut self.buf, buf)
    }

    /// Drops the results not handed out and marks the buffer empty.
    fn drop_rest(&mut self) {
        let (pos, len) = (self.pos, self.buf.len());
        self.pos = 0;
        if pos == len {
            // SAFETY: every slot was moved out.
            unsafe { self.buf.set_len(0) };
            return;
        }
        // SAFETY: set the length first, so a panicking `Drop` cannot lead to
        // a double drop; then move out exactly the slots not yet moved out,
        // once each, and drop each under its own catch (user code).
        unsafe { self.buf.set_len(0) };
        let base = self.buf.as_ptr();
        let rest = (pos..len).map(|i| unsafe { base.add(i).read() });
        // A result nobody will read whose `Drop` panics: the hook has
        // reported it; the consumer goes on.
        panic::drop_all_discarding(rest);
    }
}

impl<R> Drop for Cursor<R> {
    fn drop(&mut self) {
        self.drop_rest();
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;
    use std::sync::Arc;

    #[test]
    fn the_cursor_drops_exactly_the_results_not_handed_out() {
        let token = Arc::new(());
        let mut cursor = Cursor::default();
        let old = cursor.replace((0..5).map(|_| Arc::clone(&token)).collect());
        assert!(old.is_empty());
        let first = cursor.next().unwrap();
        let second = cursor.next().unwrap();
        assert_eq!(cursor.len(), 3);
        assert_eq!(Arc::strong_count(&token), 6);
        let emptied = cursor.replace(Vec::new());
        assert!(
            emptied.is_empty() && emptied.capacity() >= 5,
            "the buffer comes back for reuse"
        );
        assert_eq!(Arc::strong_count(&token), 3, "the 3 left were dropped once");
        drop((first, second));
        assert_eq!(Arc::strong_count(&token), 1);
        assert!(cursor.next().is_none());
    }

    #[test]
    fn take_rest_moves_out_exactly_the_results_not_handed_out() {
        let token = Arc::new(());
        let mut cursor = Cursor::default();
        drop(cursor.replace((0..5).map(|i| (i, Arc::clone(&token))).collect()));
        let first = cursor.next().unwrap();
        assert_eq!(first.0, 0);
        let rest = cursor.take_rest();
        assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(cursor.len(), 0);
        assert!(cursor.next().is_none());
        assert_eq!(
            Arc::strong_count(&token),
            6,
            "nothing dropped, nothing copied twice"
        );
        drop((first, rest));
        assert_eq!(Arc::strong_count(&token), 1);
        drop(cursor.replace(vec![(9, Arc::clone(&token))]));
        assert_eq!(
            cursor.take_rest().len(),
            1,
            "a fresh chunk is handed over whole"
        );
        assert_eq!(Arc::strong_count(&token), 1);
    }

    #[test]
    fn fold_hands_out_the_rest_in_order() {
        let mut cursor = Cursor::default();
        drop(cursor.replace(vec![1, 2, 3, 4]));
        assert_eq!(cursor.next(), Some(1));
        let seen = cursor.fold(Vec::new(), &mut |mut v, x| {
            v.push(x);
            v
        });
        assert_eq!(seen, [2, 3, 4]);
        assert_eq!(cursor.len(), 0);
    }
}
