//! The pool's job queue: a bounded ring, spilling into an unbounded list.
//!
//! Jobs go into a crossbeam `ArrayQueue` sized when the pool is built; only
//! a backlog larger than the ring spills into a crossbeam `Injector`. The
//! ring allocates nothing per job. The `Injector` alone allocates a block per
//! 63 jobs on the pushing thread and frees it on the popping one; with glibc
//! that free locks the allocating thread's arena, where the submitter is
//! allocating its next tasks, and a contended glibc lock sleeps at once
//! (W4 in `docs/design.md`: up to 400 k context switches per 6 M jobs).
//!
//! Invariant: a job is popped only after every job that the same thread
//! pushed before it. A push goes to the ring only while nothing is spilled
//! (`spilled == 0`), and a pop tries the ring first. `spilled` rises before a
//! job enters the overflow and falls only after one left it, so a thread
//! whose earlier job is still in the overflow sends its next one there too;
//! and every job in the ring was pushed before every job in the overflow
//! was, by the same thread (jobs of different threads have no order).
//!
//! Both structures are lock-free; `is_empty` looks at both, which the sleep
//! protocol needs (a job is in exactly one of them, and never moves).

use crossbeam_deque::{Injector, Steal};
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Ring slots per worker: the backlog a pool takes without allocating.
const SLOTS_PER_WORKER: usize = 256;
/// The ring's bounds: at least this many slots (one-worker pools get bursts
/// too), at most that many (its memory is taken when the pool is built).
const MIN_SLOTS: usize = 512;
const MAX_SLOTS: usize = 8192;

pub(crate) struct Queue<T> {
    ring: ArrayQueue<T>,
    overflow: Injector<T>,
    /// Jobs in `overflow`, counted before they enter and after they leave.
    spilled: AtomicUsize,
}

impl<T> Queue<T> {
    /// A queue for a pool of `workers` threads.
    pub(crate) fn new(workers: usize) -> Self {
        let slots = workers
            .saturating_mul(SLOTS_PER_WORKER)
            .clamp(MIN_SLOTS, MAX_SLOTS);
        Queue {
            ring: ArrayQueue::new(slots),
            overflow: Injector::new(),
            spilled: AtomicUsize::new(0),
        }
    }

    pub(crate) fn push(&self, job: T) {
        // Acquire: pairs with the `Release` decrement in `pop`, so a job this
        // thread spilled earlier has left the overflow before we bypass it.
        let job = if self.spilled.load(Ordering::Acquire) == 0 {
            match self.ring.push(job) {
                Ok(()) => return,
                Err(job) => job,
            }
        } else {
            job
        };
        self.spilled.fetch_add(1, Ordering::Relaxed);
        self.overflow.push(job);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        if let Some(job) = self.ring.pop() {
            return Some(job);
        }
        loop {
            match self.overflow.steal() {
                Steal::Success(job) => {
                    self.spilled.fetch_sub(1, Ordering::Release);
                    return Some(job);
                }
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty() && self.overflow.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn spills_past_the_ring_and_keeps_order() {
        let q = Queue::new(1);
        let n = MIN_SLOTS * 3 + 7;
        for i in 0..n {
            q.push(i);
        }
        assert!(q.spilled.load(Ordering::Relaxed) > 0);
        // Drain half, then push more: they must queue behind the spill.
        let mut got: Vec<usize> = (0..n / 2).map(|_| q.pop().unwrap()).collect();
        for i in n..n + 100 {
            q.push(i);
        }
        while let Some(i) = q.pop() {
            got.push(i);
        }
        assert_eq!(got, (0..n + 100).collect::<Vec<_>>());
        assert!(q.is_empty());
        assert_eq!(q.spilled.load(Ordering::Relaxed), 0);
        // Back to the ring once the overflow is empty.
        q.push(1);
        assert_eq!(q.ring.len(), 1);
    }

    /// Each pushing thread's jobs come out in the order it pushed them,
    /// whether they went through the ring or the overflow, with poppers
    /// racing the pushers.
    #[test]
    fn per_thread_order_under_races() {
        let q = Arc::new(Queue::new(1));
        let pushers = 3;
        let per = 20_000usize;
        let popped = Arc::new(std::sync::Mutex::new(Vec::new()));
        std::thread::scope(|s| {
            for t in 0..pushers {
                let q = &q;
                s.spawn(move || {
                    for i in 0..per {
                        q.push((t, i));
                        if i % 1000 == 0 {
                            std::thread::yield_now();
                        }
                    }
                });
            }
            for _ in 0..2 {
                let (q, popped) = (&q, &popped);
                s.spawn(move || {
                    let mut last = vec![None::<usize>; pushers];
                    let mut mine = 0;
                    let mut idle = 0u32;
                    while idle < 1_000_000 {
                        match q.pop() {
                            Some((t, i)) => {
                                // One popper sees a subsequence of each
                                // thread's jobs, so it must be increasing.
                                assert!(
                                    last[t].map_or(true, |l| l < i),
                                    "thread {t}: {i} after {last:?}"
                                );
                                last[t] = Some(i);
                                mine += 1;
                                idle = 0;
                            }
                            None => idle += 1,
                        }
                    }
                    popped.lock().unwrap().push(mine);
                });
            }
        });
        while q.pop().is_some() {
            popped.lock().unwrap().push(1);
        }
        let total: usize = popped.lock().unwrap().iter().sum();
        assert_eq!(total, pushers * per);
    }
}
