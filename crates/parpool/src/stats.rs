//! Pool statistics: counters that workers bump and anyone can read without a lock.
//!
//! Counts are of user items (one `apply_async` call, or one input of a map),
//! updated once per chunk, not per item, so they cost nothing on the hot path.
//! Each counter is read with its own atomic load, so a snapshot taken while
//! work runs may be off by one chunk between fields; each field on its own is
//! exact once the pool is idle.

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
    /// Items whose task panicked since the pool started.
    pub panicked: usize,
}

#[derive(Default)]
pub(crate) struct Counters {
    queued: CachePadded<AtomicIsize>,
    running: CachePadded<AtomicIsize>,
    completed: CachePadded<AtomicUsize>,
    panicked: CachePadded<AtomicUsize>,
}

impl Counters {
    pub(crate) fn queued(&self, delta: isize) {
        if delta != 0 {
            self.queued.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// `n` queued items started running.
    pub(crate) fn start(&self, n: usize) {
        if n != 0 {
            self.queued.fetch_sub(n as isize, Ordering::Relaxed);
            self.running.fetch_add(n as isize, Ordering::Relaxed);
        }
    }

    /// `n` running items stopped; `completed` says whether they count as done.
    pub(crate) fn finish(&self, n: usize, completed: bool) {
        if n != 0 {
            self.running.fetch_sub(n as isize, Ordering::Relaxed);
            if completed {
                self.completed.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn panicked(&self) {
        self.panicked.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, workers: usize) -> Stats {
        let clamp = |v: isize| v.max(0) as usize;
        Stats {
            workers,
            queued: clamp(self.queued.load(Ordering::Relaxed)),
            running: clamp(self.running.load(Ordering::Relaxed)),
            completed: self.completed.load(Ordering::Relaxed),
            panicked: self.panicked.load(Ordering::Relaxed),
        }
    }
}
