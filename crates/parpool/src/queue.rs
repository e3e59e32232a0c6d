//! The pool's job queue: a bounded lock-free ring, spilling into a locked list.
//!
//! Jobs go into a crossbeam `ArrayQueue` sized when the pool is built; only
//! a backlog larger than the ring spills into a `VecDeque` under a mutex.
//! Neither allocates per job, and a worker frees no memory a submitter
//! allocated. (A crossbeam `Injector` allocates a block per 63 jobs on the
//! pushing thread and frees it on the popping one; with glibc that free
//! locks the submitter's arena, where it is allocating its next tasks, and a
//! contended glibc lock sleeps at once: W4 in `docs/design.md`, up to 400 k
//! context switches per 6 M jobs.) The list keeps up to 4096 slots of
//! capacity between bursts; a larger one is freed when it drains.
//!
//! A popper that takes a job from the list moves the next ones (up to
//! `REFILL`) into the ring, under the list's lock: a steady backlog then
//! costs the workers one lock per batch, not one per job (W8-W4 in
//! `docs/design.md`). Pushers keep going to the list until it is empty.
//!
//! Invariant: a job is popped only after every job that the same thread
//! pushed before it. A push goes to the ring only while the list is empty
//! (`spilled` is false), and the list is popped (or moved into the ring)
//! only under its lock, after the ring was found empty under that same lock.
//! A job enters the list under the lock after its thread's earlier ring jobs
//! entered the ring, so a popper that finds it there also finds those,
//! unless they are gone; the list's front moves into the (then empty) ring
//! in list order, ahead of any later list job. `spilled` changes only under
//! the lock, and becomes false only once the list is empty; a thread that
//! saw its own job go to the list sees `spilled` until that job left it.
//!
//! A job is in one of the two at a time and moves only from the list to the
//! ring, before `spilled` is cleared. `is_empty` reads `spilled` first, then
//! the ring: a job queued throughout the call is in the list at the first
//! read (so `spilled` is seen) or in the ring at the second. That is what
//! the sleep protocol needs (`sleep.rs`). For the same reason `pop`, having
//! found the ring empty and then `spilled` false, checks the ring again: a
//! `None` from it means no job was queued throughout (a drain relies on it).

use crate::sync::lock;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Ring slots per worker: the backlog a pool takes without its lock.
const SLOTS_PER_WORKER: usize = 256;
/// The ring's bounds: at least this many slots (one-worker pools get bursts
/// too), at most that many (its memory is taken when the pool is built).
const MIN_SLOTS: usize = 512;
const MAX_SLOTS: usize = 8192;
/// The list's capacity kept once it is empty again; a larger one (left by a
/// burst) is freed, so a pool does not hold a burst's memory until it drops.
const KEEP_SPILL_CAPACITY: usize = 4096;
/// Jobs a popper moves from the list into the ring at once.
const REFILL: usize = 128;

pub(crate) struct JobQueue<T> {
    ring: ArrayQueue<T>,
    /// Padded apart from `spilled`, which idle workers poll: the pushing
    /// thread's lock and unlock then miss no cache line they read.
    overflow: CachePadded<Mutex<VecDeque<T>>>,
    /// Whether `overflow` holds a job; written only under its lock.
    spilled: CachePadded<AtomicBool>,
}

impl<T> JobQueue<T> {
    /// A queue for a pool of `workers` threads.
    pub(crate) fn new(workers: usize) -> Self {
        Self::with_slots(
            workers
                .saturating_mul(SLOTS_PER_WORKER)
                .clamp(MIN_SLOTS, MAX_SLOTS),
        )
    }

    fn with_slots(slots: usize) -> Self {
        JobQueue {
            ring: ArrayQueue::new(slots),
            overflow: CachePadded::new(Mutex::new(VecDeque::new())),
            spilled: CachePadded::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn push(&self, job: T) {
        let job = if self.spilled.load(Ordering::SeqCst) {
            job
        } else {
            match self.ring.push(job) {
                Ok(()) => return,
                Err(job) => job,
            }
        };
        let mut overflow = lock(&self.overflow);
        overflow.push_back(job);
        // Written only under the lock, so a `Relaxed` read of it here is
        // exact; a steady backlog skips the full-barrier store.
        if !self.spilled.load(Ordering::Relaxed) {
            self.spilled.store(true, Ordering::SeqCst);
        }
    }

    pub(crate) fn pop(&self) -> Option<T> {
        if let Some(job) = self.ring.pop() {
            return Some(job);
        }
        self.pop_after_ring_miss()
    }

    /// The rest of `pop`, once the ring was found empty.
    fn pop_after_ring_miss(&self) -> Option<T> {
        if !self.spilled.load(Ordering::SeqCst) {
            // Subtle: a refill may have moved the list's last jobs into the
            // ring since our ring check, and cleared `spilled` (which it
            // does after the moves). Checking the ring again after this
            // read finds them: a job queued throughout the call is never
            // missed, which `terminate`'s drain relies on (it stops at the
            // first `None`).
            return self.ring.pop();
        }
        let mut overflow = lock(&self.overflow);
        // Under the lock: a job in the list was pushed after its thread's
        // ring jobs, which are visible here if they are still queued.
        if let Some(job) = self.ring.pop() {
            return Some(job);
        }
        let job = overflow.pop_front();
        // The ring was empty just now: the list's next jobs go there, in
        // order, so the other workers take them without this lock.
        for _ in 0..REFILL {
            let Some(next) = overflow.pop_front() else {
                break;
            };
            if let Err(next) = self.ring.push(next) {
                overflow.push_front(next);
                break;
            }
        }
        if !overflow.is_empty() {
            return job;
        }
        self.spilled.store(false, Ordering::SeqCst);
        if overflow.capacity() > KEEP_SPILL_CAPACITY {
            // Freed after unlocking: the list is empty, so this runs no
            // user code, but a large free need not hold up pushers.
            let burst = std::mem::take(&mut *overflow);
            drop(overflow);
            drop(burst);
        }
        job
    }

    pub(crate) fn is_empty(&self) -> bool {
        // `spilled` first: a job moves only from the list to the ring.
        !self.spilled.load(Ordering::SeqCst) && self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn spills_past_the_ring_and_keeps_order() {
        let q = JobQueue::with_slots(8);
        let n = 8 * 3 + 7;
        for i in 0..n {
            q.push(i);
        }
        assert!(q.spilled.load(Ordering::Relaxed));
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
        assert!(!q.spilled.load(Ordering::Relaxed));
        // Back to the ring once the overflow is empty.
        q.push(1);
        assert_eq!(q.ring.len(), 1);
    }

    /// Each pushing thread's jobs come out in the order it pushed them,
    /// whether they went through the ring or the overflow, with poppers
    /// racing the pushers.
    #[test]
    fn per_thread_order_under_races() {
        // A small ring: the pushes spill and return to it many times.
        let q = Arc::new(JobQueue::with_slots(16));
        let pushers = 3;
        // Miri runs this file's tests too (`.ci/miri`).
        let per = if cfg!(miri) { 100 } else { 20_000usize };
        let patience = if cfg!(miri) { 100 } else { 1_000_000 };
        let popped = Arc::new(std::sync::Mutex::new(Vec::new()));
        std::thread::scope(|s| {
            for t in 0..pushers {
                let q = &q;
                s.spawn(move || {
                    for i in 0..per {
                        q.push((t, i));
                        if i % 1000 == 0 || (cfg!(miri) && i % 50 == 0) {
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
                    while idle < patience {
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

    /// Counts drops of what the queue holds.
    struct Counted(Arc<std::sync::atomic::AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A queue dropped with jobs in both the ring and the list drops each
    /// exactly once (Miri checks for leaks and double frees); pushers and
    /// poppers racing across the boundary lose and duplicate nothing.
    #[test]
    fn jobs_in_ring_and_list_are_dropped_once() {
        use std::sync::atomic::AtomicUsize;
        let drops = Arc::new(AtomicUsize::new(0));
        let q = JobQueue::with_slots(8);
        let n = 8 + 40;
        for _ in 0..n {
            q.push(Counted(Arc::clone(&drops)));
        }
        assert!(q.spilled.load(Ordering::SeqCst));
        drop(q.pop());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(q);
        assert_eq!(drops.load(Ordering::SeqCst), n);

        let q = Arc::new(JobQueue::with_slots(8));
        let drops = Arc::new(AtomicUsize::new(0));
        let popped = AtomicUsize::new(0);
        let per = if cfg!(miri) { 100 } else { 5_000 };
        std::thread::scope(|s| {
            for _ in 0..2 {
                let (q, drops) = (&q, &drops);
                s.spawn(move || {
                    for _ in 0..per {
                        q.push(Counted(Arc::clone(drops)));
                    }
                });
            }
            let (q, popped) = (&q, &popped);
            s.spawn(move || {
                for _ in 0..per {
                    if q.pop().is_some() {
                        popped.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        });
        let mut left = 0;
        while q.pop().is_some() {
            left += 1;
        }
        assert!(q.is_empty());
        assert_eq!(popped.load(Ordering::SeqCst) + left, 2 * per);
        assert_eq!(drops.load(Ordering::SeqCst), 2 * per);
    }

    /// A burst's list memory is given back once the list is empty again; a
    /// small list keeps its capacity.
    #[test]
    fn a_burst_s_list_memory_is_freed_when_it_drains() {
        let q = JobQueue::with_slots(8);
        let n = if cfg!(miri) {
            100
        } else {
            3 * KEEP_SPILL_CAPACITY
        };
        for i in 0..n {
            q.push(i);
        }
        let big = lock(&q.overflow).capacity();
        while q.pop().is_some() {}
        let left = lock(&q.overflow).capacity();
        if big > KEEP_SPILL_CAPACITY {
            assert_eq!(left, 0);
        } else {
            assert_eq!(left, big);
        }
        q.push(1);
        assert_eq!(q.pop(), Some(1));
    }

    /// A popper that takes a job from the list moves the next ones into the
    /// ring, in order; `spilled` stays set while the list holds any.
    #[test]
    fn a_list_pop_refills_the_ring_in_order() {
        let q = JobQueue::with_slots(8);
        // A refill stops when the ring is full: 8 move, 5 stay listed.
        let n = 8 + 1 + 8 + 5;
        for i in 0..n {
            q.push(i);
        }
        for i in 0..8 {
            assert_eq!(q.pop(), Some(i));
        }
        assert!(q.ring.is_empty());
        assert_eq!(q.pop(), Some(8), "the list's front");
        assert_eq!(q.ring.len(), 8, "the ring refilled up to its size");
        assert!(q.spilled.load(Ordering::Relaxed));
        assert_eq!(lock(&q.overflow).front(), Some(&17));
        let rest: Vec<usize> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, (9..n).collect::<Vec<_>>());
        assert!(q.is_empty());
        assert!(!q.spilled.load(Ordering::Relaxed));
    }

    /// A popper that found the ring empty and then sees `spilled` false must
    /// not report the queue empty when, in between, another popper's refill
    /// moved the list's last jobs into the ring (they were queued all along).
    /// `terminate`'s drain stops at its first `None`: it would leave them
    /// queued, and workers retiring after each job may never pop them.
    #[test]
    fn a_pop_overlapping_a_refill_that_empties_the_list_finds_the_moved_jobs() {
        let q = JobQueue::with_slots(8);
        for i in 0..8 + 4 {
            q.push(i);
        }
        for i in 0..8 {
            assert_eq!(q.pop(), Some(i));
        }
        // Popper A: its ring check comes first, and finds the ring empty.
        assert_eq!(q.ring.pop(), None);
        // Popper B takes the list's front and moves the rest to the ring.
        assert_eq!(q.pop(), Some(8));
        assert!(!q.spilled.load(Ordering::SeqCst));
        assert_eq!(q.ring.len(), 3);
        assert!(!q.is_empty());
        // Popper A goes on: three jobs were queued throughout its pop.
        assert_eq!(q.pop_after_ring_miss(), Some(9), "a job queued throughout");
        assert_eq!(q.pop(), Some(10));
        assert_eq!(q.pop(), Some(11));
        assert_eq!(q.pop(), None);
    }

    /// Refill after refill, each emptying the list (two jobs listed: the
    /// front is taken, the other moves to the ring, `spilled` is cleared),
    /// while another thread calls `is_empty` without pause: while jobs are
    /// surely queued (an odd phase that did not change across the call), it
    /// never says empty. One long race rather than a thread per round, so
    /// the checker meets many refills.
    #[test]
    fn is_empty_holds_across_refills_that_empty_the_list() {
        use std::sync::atomic::AtomicUsize;
        let (rounds, slots) = if cfg!(miri) { (15, 1) } else { (300_000, 1) };
        let q = JobQueue::with_slots(slots);
        // Odd: jobs are queued throughout; `usize::MAX`: done.
        let phase = AtomicUsize::new(0);
        let (checks, misses) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            s.spawn(|| loop {
                let p = phase.load(Ordering::SeqCst);
                if p == usize::MAX {
                    break;
                }
                let empty = q.is_empty();
                if p % 2 == 1 && phase.load(Ordering::SeqCst) == p {
                    checks.fetch_add(1, Ordering::Relaxed);
                    if empty {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            for r in 0..rounds {
                for i in 0..slots + 2 {
                    q.push(i);
                }
                phase.store(2 * r + 1, Ordering::SeqCst);
                // The ring's jobs, then the list's front (a refill).
                for i in 0..=slots {
                    assert_eq!(q.pop(), Some(i));
                }
                phase.store(2 * r + 2, Ordering::SeqCst);
                assert_eq!(q.pop(), Some(slots + 1));
                assert_eq!(q.pop(), None);
            }
            phase.store(usize::MAX, Ordering::SeqCst);
        });
        let (checks, misses) = (checks.into_inner(), misses.into_inner());
        assert_eq!(misses, 0, "is_empty said empty {misses} times of {checks}");
    }

    /// Two poppers take three jobs (one in a one-slot ring, two listed) at
    /// once, round after round, one of them popping without pause, so its
    /// pops overlap the other's refill that empties the list. A `None`
    /// returned within one round while fewer than two were taken (the other
    /// popper holds at most one more) came with a job queued throughout the
    /// call: a drain would stop early.
    #[test]
    fn racing_poppers_see_none_only_once_the_queue_is_drained() {
        use std::sync::atomic::AtomicUsize;
        let rounds = if cfg!(miri) { 15 } else { 400_000 };
        let q = JobQueue::with_slots(1);
        // Odd while round `r` runs (`2 r + 1`); `usize::MAX`: done.
        let phase = AtomicUsize::new(0);
        let taken = AtomicUsize::new(0);
        let (nones, early) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let pop = |p: usize| match q.pop() {
            Some(_) => {
                taken.fetch_add(1, Ordering::SeqCst);
            }
            None => {
                nones.fetch_add(1, Ordering::Relaxed);
                if taken.load(Ordering::SeqCst) < 2 && phase.load(Ordering::SeqCst) == p {
                    early.fetch_add(1, Ordering::SeqCst);
                }
            }
        };
        /// Ends the helper's loop even if the test fails.
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(usize::MAX, Ordering::SeqCst);
            }
        }
        std::thread::scope(|s| {
            s.spawn(|| loop {
                let p = phase.load(Ordering::SeqCst);
                if p == usize::MAX {
                    break;
                }
                if p % 2 == 1 && taken.load(Ordering::SeqCst) < 3 {
                    pop(p);
                }
            });
            let _done = Done(&phase);
            for r in 0..rounds {
                // Reset first: a late helper pop of this round counts here.
                taken.store(0, Ordering::SeqCst);
                for i in 0..3 {
                    q.push(i);
                }
                phase.store(2 * r + 1, Ordering::SeqCst);
                while taken.load(Ordering::SeqCst) < 3 {
                    pop(2 * r + 1);
                }
                phase.store(2 * r + 2, Ordering::SeqCst);
                assert!(q.is_empty(), "round {r}");
            }
        });
        let (nones, early) = (nones.into_inner(), early.into_inner());
        assert_eq!(early, 0, "{early} of {nones} Nones came with jobs queued");
    }

    /// `is_empty` (what a worker checks after announcing itself asleep) sees
    /// a job left in the list once the ring has drained: the list's job
    /// must not be missed (a lost wake-up) nor strand a closing pool.
    #[test]
    fn is_empty_sees_a_job_left_in_the_list() {
        let q = JobQueue::with_slots(8);
        for i in 0..=8 {
            q.push(i);
        }
        for i in 0..8 {
            assert_eq!(q.ring.pop(), Some(i));
        }
        assert!(q.ring.is_empty());
        assert!(!q.is_empty(), "a job in the list, none in the ring");
        assert_eq!(q.pop(), Some(8));
        assert!(q.is_empty());
    }
}
