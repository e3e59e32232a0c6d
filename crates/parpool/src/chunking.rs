//! Chunk sizing: how many items one unit of work takes, for both engines.
//!
//! A chunk trades overhead (one claim or one job per chunk) against balance
//! and responsiveness (a long chunk keeps the others waiting at the end, and
//! `terminate` waits on it). The blocking map (`map.rs`) claims *guided*
//! ranges from one cursor: each claim takes a fraction of what remains, so
//! early chunks are large and late ones small. `imap` (`imap/`) cannot see
//! the input's length, so it *adapts*: workers time each chunk and the next
//! one is sized to take about `TARGET_CHUNK_NS`.
//!
//! Invariants:
//! - A chunk is never empty, and a map claim never runs past the input's end
//!   (so the map's cursor never wraps, whatever the chunk size).
//! - An imap chunk never exceeds `MAX_CHUNK` items nor `MAX_CHUNK_BYTES` of
//!   items or of results (one item at least), and an imap never reads
//!   more than `MAX_READ_AHEAD` items ahead of its consumer, whatever the
//!   settings: the hard bound on its memory.

use std::ops::Range;

/// Automatic chunking: each claim takes `remaining / (GUIDED_FACTOR * threads)`.
const GUIDED_FACTOR: usize = 4;

/// The size of the next automatic claim when `remaining` items are left for
/// `threads` threads: a fraction of what remains, never 0.
fn guided_size(remaining: usize, threads: usize) -> usize {
    (remaining / GUIDED_FACTOR.saturating_mul(threads.max(1))).clamp(1, remaining.max(1))
}

/// The next claim from `cursor` of `n` items: `cursor..cursor + size`, never
/// past `n` (so the cursor never wraps, whatever the chunk size).
pub(crate) fn next_claim(
    cursor: usize,
    n: usize,
    fixed: Option<usize>,
    threads: usize,
) -> Option<Range<usize>> {
    if cursor >= n {
        return None;
    }
    let remaining = n - cursor;
    let size = match fixed {
        Some(chunk) => chunk.clamp(1, remaining),
        None => guided_size(remaining, threads),
    };
    Some(cursor..cursor + size)
}

/// How long one automatic chunk should take on a worker. Each chunk that
/// completes in order may wake the consumer, which on a machine whose
/// cores the workers keep busy preempts one of them: at 200 µs that cost
/// W2 `imap` about 9% against rayon, at 1 ms about 3% (`docs/design.md`
/// §12). Longer chunks also mean more items in flight (the buffer counts
/// chunks) and a longer last chunk; `terminate` is still seen between
/// items.
const TARGET_CHUNK_NS: u64 = 1_000_000;
/// How much an automatic chunk may grow from one credit to the next.
const GROWTH: usize = 16;
/// The largest chunk, automatic or set with `chunksize`: a larger chunk
/// brings no speed, and its items would all be held in memory at once.
pub(crate) const MAX_CHUNK: usize = 1 << 16;
/// The most bytes of items, or of results, one imap chunk holds. A chunk's
/// buffers are reserved whole when it starts (a reader's cannot move while
/// another thread may rescue the items in it), so a chunk of large values
/// is cut to fit, whatever `chunksize` says: with 1 MiB items,
/// `chunksize(65536)` reserved 64 GiB up front and aborted the process
/// on the failed allocation, even for an input of three items.
pub(crate) const MAX_CHUNK_BYTES: usize = 64 << 20;

/// The largest imap chunk for items of `item` bytes and results of
/// `result` bytes: `MAX_CHUNK_BYTES` of the larger, within `1..=MAX_CHUNK`.
pub(crate) fn max_chunk_for(item: usize, result: usize) -> usize {
    (MAX_CHUNK_BYTES / item.max(result).max(1)).clamp(1, MAX_CHUNK)
}

/// The most items read ahead of the consumer, whatever the buffer and chunk
/// settings: the hard bound on an imap's memory, in items.
pub(crate) const MAX_READ_AHEAD: usize = 1 << 20;
/// The default buffer is this many chunks per worker.
pub(crate) const BUFFER_CHUNKS_PER_WORKER: usize = 4;
/// The most credits out at once, per worker: a large buffer of small chunks
/// must not queue a job per item (1 M one-item credits for `buffer(1 << 20)`).
pub(crate) const MAX_CREDITS_PER_WORKER: usize = 8;

/// The next automatic chunk size after `prev`, given the last measured cost
/// per item (`0`: none yet): about `TARGET_CHUNK_NS` of work, shrinking at
/// most by half and growing at most `GROWTH`-fold per credit, within
/// `1..=MAX_CHUNK`, and small enough that every worker gets a chunk of a
/// user-set buffer.
pub(crate) fn adapt_chunk(
    prev: usize,
    est_ns: u64,
    buffer: Option<usize>,
    workers: usize,
) -> usize {
    let mut chunk = prev.max(1);
    if let Some(per_chunk) = TARGET_CHUNK_NS.checked_div(est_ns) {
        let want = usize::try_from(per_chunk).unwrap_or(MAX_CHUNK).max(1);
        chunk = want.clamp((chunk / 2).max(1), chunk.saturating_mul(GROWTH));
    }
    chunk = chunk.min(MAX_CHUNK);
    if let Some(b) = buffer {
        chunk = chunk.min((b / workers.max(1)).max(1));
    }
    chunk
}

#[cfg(test)]
mod tests {
    use super::{adapt_chunk, guided_size};

    /// Claims `n` items the way the cursor does, one thread after another.
    fn claims(n: usize, threads: usize) -> Vec<usize> {
        let mut cur = 0;
        let mut sizes = Vec::new();
        while cur < n {
            let size = guided_size(n - cur, threads);
            sizes.push(size);
            cur += size;
        }
        sizes
    }

    #[test]
    fn a_chunk_of_large_values_is_cut_to_its_byte_limit() {
        use super::{max_chunk_for, MAX_CHUNK, MAX_CHUNK_BYTES};
        assert_eq!(max_chunk_for(8, 8), MAX_CHUNK);
        assert_eq!(max_chunk_for(0, 0), MAX_CHUNK);
        assert_eq!(max_chunk_for(1 << 20, 8), MAX_CHUNK_BYTES >> 20);
        assert_eq!(max_chunk_for(8, 1 << 20), MAX_CHUNK_BYTES >> 20);
        assert_eq!(max_chunk_for(usize::MAX, 1), 1);
    }

    #[test]
    fn guided_claims_cover_every_item_exactly_once() {
        for n in [1, 2, 3, 7, 8, 9, 100, 1_000, 99_991, 1_000_000] {
            for threads in [1, 2, 3, 8] {
                let sizes = claims(n, threads);
                assert_eq!(sizes.iter().sum::<usize>(), n, "n={n} threads={threads}");
                assert!(sizes.iter().all(|&s| s >= 1));
                // Sizes never grow: large chunks first, small ones for balance.
                assert!(
                    sizes.windows(2).all(|w| w[0] >= w[1]),
                    "n={n} threads={threads}"
                );
            }
        }
    }

    #[test]
    fn guided_claims_stay_few_and_balanced() {
        // One claim is at most a quarter of a thread's fair share...
        assert_eq!(guided_size(1_000_000, 2), 125_000);
        // ...so no thread can hold much more than its share at the end,
        assert_eq!(claims(1_000_000, 2).last(), Some(&1));
        // ...and the number of claims grows only logarithmically.
        assert!(
            claims(1_000_000, 2).len() < 200,
            "{}",
            claims(1_000_000, 2).len()
        );
        // Edge cases: nothing left, one thread, zero threads (treated as one).
        assert_eq!(guided_size(1, 8), 1);
        assert_eq!(guided_size(0, 2), 1);
        assert_eq!(guided_size(10, 0), 2);
    }

    #[test]
    fn chunks_start_at_one_and_wait_for_a_measurement() {
        assert_eq!(adapt_chunk(1, 0, None, 2), 1);
        assert_eq!(adapt_chunk(37, 0, None, 2), 37);
    }

    #[test]
    fn chunks_grow_at_most_sixteenfold_and_stop_at_the_cap() {
        // Tiny items (1 ns): the target is 1 000 000 items, capped at
        // `MAX_CHUNK` and reached in steps.
        let mut chunk = 1;
        let mut steps = Vec::new();
        for _ in 0..6 {
            chunk = adapt_chunk(chunk, 1, None, 2);
            steps.push(chunk);
        }
        assert_eq!(steps, [16, 256, 4096, 65_536, 65_536, 65_536]);
    }

    #[test]
    fn slow_items_go_one_by_one_and_shrink_gradually() {
        // 5 ms per item is far above the 1 ms target: one item per chunk.
        assert_eq!(adapt_chunk(1, 5_000_000, None, 2), 1);
        // A chunk that was too big halves at most per credit.
        assert_eq!(adapt_chunk(1000, 5_000_000, None, 2), 500);
        // 2 µs per item: 500 items, grown to from 100 within one credit.
        assert_eq!(adapt_chunk(500, 2_000, None, 2), 500);
        assert_eq!(adapt_chunk(100, 2_000, None, 2), 500);
        // A chunk never drops below one item, however slow.
        assert_eq!(adapt_chunk(1, u64::MAX, None, 2), 1);
    }

    #[test]
    fn a_user_buffer_caps_the_chunk_so_every_worker_gets_one() {
        assert_eq!(adapt_chunk(65_536, 1, Some(64), 2), 32);
        assert_eq!(adapt_chunk(65_536, 1, Some(1), 2), 1);
        assert_eq!(adapt_chunk(1, 1, Some(10), 0), 10);
    }
}
