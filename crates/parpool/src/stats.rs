//! Pool statistics: counters that workers bump and anyone can read without a lock.
//!
//! Counts are of user items (one `apply_async` call, or one input of a map),
//! updated once per chunk, not per item. `queued` moves where jobs enter and
//! leave the queue (`registry.rs`); `running` and `completed` are moved only
//! by the code that calls the user's function, so an item counts as
//! completed only if it ran. Each thread updates its own shard
//! (a cache line of its own), so counting adds no contention between the
//! submitter and the workers. A snapshot sums the shards with plain atomic
//! loads: taken while work runs, it may be off by a chunk between fields;
//! once the pool is idle every field is exact.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// A snapshot of a pool's counters, read lock-free by
/// [`ThreadPool::stats`](crate::ThreadPool::stats).
///
/// # Examples
///
/// ```
/// use parpool::ThreadPool;
///
/// let pool = ThreadPool::with_workers(2);
/// pool.map(|x: &u32| x + 1, &[1, 2, 3]);
/// let stats = pool.stats();
/// assert_eq!(stats.workers, 2);
/// assert_eq!(stats.completed, 3);
/// assert_eq!(stats.queued, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Worker threads the pool was built with.
    pub workers: usize,
    /// Items submitted that no worker has started yet.
    pub queued: usize,
    /// Items being worked on now.
    pub running: usize,
    /// Items finished since the pool started, panicked ones included.
    pub completed: usize,
    /// Panics of user code since the pool started: items whose task
    /// panicked (also counted in `completed`), and stray panics with no
    /// consumer to go to, such as the `Drop` of a result nobody takes or of
    /// a closure the pool refused or discarded unrun. Such a closure never
    /// ran, so `panicked` may exceed `completed`. Panics of an
    /// `AsyncResult`'s callbacks (`on_success`, `on_error`, and their
    /// `Drop`s) and of wakers are contained and printed by the panic hook,
    /// but not counted here: they are the handle owner's code, not the
    /// pool's work, and they never meet the pool's `PanicPolicy`.
    pub panicked: usize,
}

/// Counters sharded by thread: each thread bumps its own cache line, so
/// the submitter and the workers never contend on them; a snapshot sums the
/// shards.
pub(crate) struct Counters {
    shards: Box<[CachePadded<Shard>]>,
}

#[derive(Default)]
struct Shard {
    queued: AtomicIsize,
    running: AtomicIsize,
    completed: AtomicUsize,
    panicked: AtomicUsize,
}

const SHARDS: usize = 16;

impl Default for Counters {
    fn default() -> Self {
        Counters {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Shard::default()))
                .collect(),
        }
    }
}

/// This thread's shard index, handed out round-robin on first use.
fn shard_index() -> usize {
    use std::cell::Cell;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static INDEX: Cell<usize> = const { Cell::new(usize::MAX) });
    INDEX.with(|i| {
        if i.get() == usize::MAX {
            i.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        i.get()
    })
}

impl Counters {
    #[inline]
    fn mine(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    #[inline]
    pub(crate) fn queued(&self, delta: isize) {
        if delta != 0 {
            self.mine().queued.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// `n` items started running (`n < 0`: stopped running).
    #[inline]
    pub(crate) fn running(&self, n: isize) {
        if n != 0 {
            self.mine().running.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `n` items ran to their end (returned, failed or panicked).
    #[inline]
    pub(crate) fn completed(&self, n: usize) {
        if n != 0 {
            self.mine().completed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `running` items stopped running, `completed` of them ran to their
    /// end: one shard lookup for both.
    #[inline]
    pub(crate) fn finished(&self, running: usize, completed: usize) {
        let shard = self.mine();
        if running != 0 {
            shard.running.fetch_sub(running as isize, Ordering::Relaxed);
        }
        if completed != 0 {
            shard.completed.fetch_add(completed, Ordering::Relaxed);
        }
    }

    pub(crate) fn panicked(&self) {
        self.mine().panicked.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, workers: usize) -> Stats {
        let (mut queued, mut running, mut completed, mut panicked) =
            (0isize, 0isize, 0usize, 0usize);
        // Shards wrap on overflow (atomic adds do); their sum wraps the same
        // way, so a shard's decrement still cancels another's increment and
        // a debug build never panics reading a long-lived pool's counts.
        for shard in self.shards.iter() {
            queued = queued.wrapping_add(shard.queued.load(Ordering::Relaxed));
            running = running.wrapping_add(shard.running.load(Ordering::Relaxed));
            completed = completed.wrapping_add(shard.completed.load(Ordering::Relaxed));
            panicked = panicked.wrapping_add(shard.panicked.load(Ordering::Relaxed));
        }
        Stats {
            workers,
            queued: queued.max(0) as usize,
            running: running.max(0) as usize,
            completed,
            panicked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts moved on different shards cancel in the sum, and shards near
    /// the top of their range neither panic a debug build nor lose the
    /// cancellation (the sum wraps as the atomic adds do).
    #[test]
    fn the_sum_of_shards_wraps_as_the_shards_do() {
        let c = Counters::default();
        c.shards[0].queued.store(isize::MAX, Ordering::Relaxed);
        c.shards[1].queued.store(2, Ordering::Relaxed);
        c.shards[2].queued.store(isize::MIN + 1, Ordering::Relaxed);
        c.shards[3].completed.store(usize::MAX, Ordering::Relaxed);
        c.shards[4].completed.store(3, Ordering::Relaxed);
        c.shards[5].running.store(-4, Ordering::Relaxed);
        c.shards[6].running.store(5, Ordering::Relaxed);
        let s = c.snapshot(2);
        assert_eq!(s.queued, 2);
        assert_eq!(s.completed, 2);
        assert_eq!(s.running, 1);
        assert_eq!(s.panicked, 0);
        assert_eq!(s.workers, 2);
    }
}
