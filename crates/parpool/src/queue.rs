//! The pool's job queue: one unbounded lock-free FIFO (crossbeam's
//! `SegQueue`).
//!
//! No push or pop takes a lock of the pool's, so a thread preempted in the
//! middle of one does not hold up another: on a loaded machine the
//! submitter no longer sleeps behind a worker descheduled inside the queue
//! (W8-W4 in `docs/design.md` §12, where the ring-and-spill-list queue this
//! replaced put the submitter to sleep on the list's mutex). What remains
//! shared is the global allocator: the queue allocates one block per 31
//! jobs on the pushing thread, freed by whichever thread takes the block's
//! last job, so once per 31 jobs a push or a pop may take the allocator's
//! own lock (glibc's arena lock; task memory itself comes from `slab.rs`,
//! so this is no longer once per job). A pop that meets a pusher between
//! its slot reservation and its write spins, then yields, until the write
//! lands: it burns CPU while that pusher is descheduled, but never sleeps.
//!
//! **Memory.** A backlog costs about 33 bytes per queued job in blocks,
//! freed as they drain. glibc keeps such small freed blocks in its heap
//! for the next allocation rather than giving them back, so after a burst
//! `slab.rs` asks it to trim the heap: when the last pool is dropped, or
//! once no burst has used task memory for 10 s and a worker idles
//! (`slab::give_back_if_due`; `docs/design.md` §12, "Giving a burst
//! back"). Bursts closer together reuse the blocks.
//!
//! Invariants the rest of the pool relies on:
//! - **Order.** A job is popped only after every job that the same thread
//!   pushed before it (one FIFO, linearizable).
//! - **No missed job.** `is_empty` returns `false` for a job pushed before
//!   it began (it reads both ends with `SeqCst`; the push's `SeqCst`
//!   reservation of its slot is what it sees). The sleep protocol
//!   (`sleep.rs`) rests on that.
//! - **An exact `None`.** `pop` returns `None` only if the queue was empty
//!   at some instant during the call: a job queued throughout is never
//!   missed, which `terminate`'s drain relies on (it stops at the first
//!   `None`).
//! - A pop that meets a push between its slot reservation and its write
//!   waits for the write (spinning, then yielding), so a popped job is
//!   always whole.

use crossbeam_queue::SegQueue;

pub(crate) struct JobQueue<T> {
    jobs: SegQueue<T>,
}

impl<T> JobQueue<T> {
    pub(crate) fn new() -> Self {
        JobQueue {
            jobs: SegQueue::new(),
        }
    }

    pub(crate) fn push(&self, job: T) {
        self.jobs.push(job);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.jobs.pop()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn keeps_order_across_many_blocks_and_refills() {
        let q = JobQueue::new();
        // Several of the queue's 31-job blocks, drained halfway, then more.
        let n = 31 * 5 + 7;
        for i in 0..n {
            q.push(i);
        }
        let mut got: Vec<usize> = (0..n / 2).map(|_| q.pop().unwrap()).collect();
        for i in n..n + 100 {
            q.push(i);
        }
        while let Some(i) = q.pop() {
            got.push(i);
        }
        assert_eq!(got, (0..n + 100).collect::<Vec<_>>());
        assert!(q.is_empty());
        q.push(1);
        assert!(!q.is_empty());
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), None);
    }

    /// Each pushing thread's jobs come out in the order it pushed them,
    /// with poppers racing the pushers across block boundaries; nothing is
    /// lost or duplicated.
    #[test]
    fn per_thread_order_under_races() {
        let q = Arc::new(JobQueue::new());
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
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A queue dropped with jobs in several blocks drops each exactly once
    /// (Miri checks for leaks and double frees); pushers and poppers
    /// racing lose and duplicate nothing.
    #[test]
    fn queued_jobs_are_dropped_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = JobQueue::new();
        let n = 31 * 2 + 5;
        for _ in 0..n {
            q.push(Counted(Arc::clone(&drops)));
        }
        drop(q.pop());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(q);
        assert_eq!(drops.load(Ordering::SeqCst), n);

        let q = Arc::new(JobQueue::new());
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

    /// `is_empty` never reports empty while a job pushed before the call is
    /// queued, even with another thread pushing and popping around it.
    #[test]
    fn is_empty_sees_a_job_queued_before_it() {
        let q = JobQueue::new();
        let rounds = if cfg!(miri) { 20 } else { 20_000 };
        std::thread::scope(|s| {
            for _ in 0..2 {
                let q = &q;
                s.spawn(move || {
                    for i in 0..rounds {
                        q.push(i);
                        // Each thread pops only after its own push, so at
                        // least this job (or an equal count) is queued.
                        assert!(!q.is_empty(), "round {i}: own job not seen");
                        while q.pop().is_none() {
                            std::hint::spin_loop();
                        }
                    }
                });
            }
        });
        assert!(q.is_empty());
    }

    /// Round after round, three jobs are pushed and popped while another
    /// thread calls `is_empty` without pause: while jobs are surely queued
    /// (an odd phase that did not change across the call), it never says
    /// empty. The rounds cross the queue's 31-job block boundaries again
    /// and again. (Ported from the ring-and-list queue, where the race was
    /// with a refill that emptied the list.)
    #[test]
    fn is_empty_holds_while_jobs_are_queued_across_blocks() {
        let rounds = if cfg!(miri) { 15 } else { 300_000 };
        let q = JobQueue::new();
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
                for i in 0..3 {
                    q.push(i);
                }
                phase.store(2 * r + 1, Ordering::SeqCst);
                for i in 0..2 {
                    assert_eq!(q.pop(), Some(i));
                }
                phase.store(2 * r + 2, Ordering::SeqCst);
                assert_eq!(q.pop(), Some(2));
                assert_eq!(q.pop(), None);
            }
            phase.store(usize::MAX, Ordering::SeqCst);
        });
        let (checks, misses) = (checks.into_inner(), misses.into_inner());
        assert_eq!(misses, 0, "is_empty said empty {misses} times of {checks}");
    }

    /// Two poppers take three jobs at once, round after round, one of them
    /// popping without pause, across block boundaries. A `None` returned
    /// within one round while fewer than two were taken (the other popper
    /// holds at most one more) came with a job queued throughout the call:
    /// `terminate`'s drain, which stops at its first `None`, would stop
    /// early. (Ported from the ring-and-list queue.)
    #[test]
    fn racing_poppers_see_none_only_once_the_queue_is_drained() {
        let rounds = if cfg!(miri) { 15 } else { 400_000 };
        let q = JobQueue::new();
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
        let early = early.into_inner();
        assert_eq!(early, 0, "{early} early `None`s of {}", nones.into_inner());
    }
}
