//! W1's floor row: what one consumer thread needs to collect results that
//! are already computed, chunk by chunk, through `Iterator::next`, with no
//! pool at all.
//!
//! An `imap` hands every result to one thread through `next()`, and
//! `Vec::from_iter` on an iterator that is not `TrustedLen` (a lazy stream
//! cannot be) calls it per item. [`ReadyChunks`] has the shape of an
//! `imap` consumer's fast path: a cursor over the current chunk, and a
//! refill that the compiler cannot inline (the real one may block), so the
//! cursor's position lives in memory across the loop. The row's time is a
//! lower bound for `imap` + `collect` on the machine that ran it
//! (`docs/design.md` §12, "W1 `imap`").

/// Results in chunks, handed out one by one; the refill is out of line.
///
/// Invariant: `pos <= chunk.len()`; the items before `pos` were handed
/// out, and `left_after` items wait in the chunks after `chunk`.
pub struct ReadyChunks<'a> {
    chunks: std::slice::Iter<'a, Vec<u64>>,
    chunk: &'a [u64],
    pos: usize,
    left_after: usize,
}

impl<'a> ReadyChunks<'a> {
    /// A cursor over `chunks`, in order, with an exact size hint (as an
    /// `imap` over a range gives).
    pub fn new(chunks: &'a [Vec<u64>]) -> ReadyChunks<'a> {
        ReadyChunks {
            chunks: chunks.iter(),
            chunk: &[],
            pos: 0,
            left_after: chunks.iter().map(Vec::len).sum(),
        }
    }

    /// Moves to the next chunk that has an item and hands out its first.
    #[inline(never)]
    fn refill(&mut self) -> Option<u64> {
        loop {
            let next = std::hint::black_box(self.chunks.next())?;
            self.left_after -= next.len();
            if let Some(&first) = next.first() {
                self.chunk = next;
                self.pos = 1;
                return Some(first);
            }
        }
    }
}

impl Iterator for ReadyChunks<'_> {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        match self.chunk.get(self.pos) {
            Some(&x) => {
                self.pos += 1;
                Some(x)
            }
            None => self.refill(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.chunk.len() - self.pos + self.left_after;
        (left, Some(left))
    }
}

/// `0..n` mapped by `f`, in chunks of `chunk` items (the last may be
/// shorter).
pub fn chunks_of(n: u64, chunk: u64, f: impl Fn(u64) -> u64) -> Vec<Vec<u64>> {
    (0..n.div_ceil(chunk))
        .map(|c| (c * chunk..((c + 1) * chunk).min(n)).map(&f).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_every_item_in_order_across_chunks() {
        let chunks = chunks_of(10, 4, |x| x * 3);
        assert_eq!(chunks.len(), 3);
        let v: Vec<u64> = ReadyChunks::new(&chunks).collect();
        assert_eq!(v, (0..10).map(|x| x * 3).collect::<Vec<_>>());
    }

    #[test]
    fn empty_chunks_are_skipped_and_no_chunks_is_an_empty_stream() {
        let chunks = vec![vec![], vec![1], vec![], vec![], vec![2, 3], vec![]];
        let mut it = ReadyChunks::new(&chunks);
        assert_eq!(it.size_hint(), (3, Some(3)));
        assert_eq!(it.next(), Some(1));
        assert_eq!(it.size_hint(), (2, Some(2)));
        assert_eq!(it.next(), Some(2));
        assert_eq!(it.size_hint(), (1, Some(1)));
        assert_eq!(it.collect::<Vec<_>>(), [3]);
        assert_eq!(ReadyChunks::new(&[]).count(), 0);
        assert_eq!(chunks_of(0, 4, |x| x), Vec::<Vec<u64>>::new());
    }
}
