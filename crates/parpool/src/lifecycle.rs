//! The pool's lifecycle and the submissions in flight, in one atomic word.
//!
//! The low two bits hold the state, which only moves forward:
//! `RUNNING -> CLOSED -> TERMINATED` (or straight to `TERMINATED`). The rest
//! of the word counts submitters between their acceptance check and the end
//! of their push.
//!
//! Invariant: a job that was accepted is never stranded in the queue after
//! every worker has exited. A submitter is accepted by the same atomic
//! operation that registers it (`fetch_add`), so it either saw `RUNNING`
//! (or `CLOSED` from one of the pool's own workers, which is alive by
//! definition) and is counted, or it is refused. A worker may exit a closed
//! pool only when it reads the word as "closed, no submitter in flight" and
//! then finds the queue empty; a submitter counted before `close` pushes
//! before it uncounts itself, so that worker sees its job. After
//! `TERMINATED`, jobs are cancelled rather than run (see `registry.rs`).
//!
//! A submitter that uncounts itself from a pool that no longer runs must wake
//! the sleeping workers, since one of them may be waiting for the count to
//! reach zero before it exits.
//!
//! The word is written twice per submission, so reading it on every job
//! would make each worker's check miss in cache behind the submitter. Hot
//! checks ("terminated?") read a separate, read-mostly flag instead, set
//! after the word by `terminate`. (Splitting state and count into two words
//! instead would rest the protocol on `SeqCst` loads alone; the model
//! checker, which treats those as acquire/release, then finds a stranded
//! job. One word's read-modify-writes need no such argument.)

use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;

const STATE_MASK: usize = 0b11;
const RUNNING: usize = 0;
const CLOSED: usize = 1;
const TERMINATED: usize = 2;
const SUBMITTER: usize = 4;

/// The lifecycle state of a pool.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    Running,
    Closed,
    Terminated,
}

fn state_of(word: usize) -> State {
    match word & STATE_MASK {
        RUNNING => State::Running,
        CLOSED => State::Closed,
        _ => State::Terminated,
    }
}

pub(crate) struct Lifecycle {
    word: CachePadded<AtomicUsize>,
    /// Read-mostly mirrors of the state, set after the word changes; read on
    /// hot paths (every job, every idle check).
    open: CachePadded<AtomicBool>,
    terminated: AtomicBool,
}

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Lifecycle {
            word: CachePadded::new(AtomicUsize::new(RUNNING)),
            open: CachePadded::new(AtomicBool::new(true)),
            terminated: AtomicBool::new(false),
        }
    }

    /// The state, from the word itself (not a mirror).
    pub(crate) fn state(&self) -> State {
        state_of(self.word.load(Ordering::SeqCst))
    }

    /// Whether `terminate` was called (the read-mostly flag, `SeqCst`).
    #[inline]
    pub(crate) fn is_terminated(&self) -> bool {
        self.terminated.load(Ordering::SeqCst)
    }

    /// A cheap read for hot loops that stop between items; it may see
    /// `terminate` a little late, which only delays the stop.
    #[inline]
    pub(crate) fn is_terminated_relaxed(&self) -> bool {
        self.terminated.load(Ordering::Relaxed)
    }

    /// Registers a submitter if the pool accepts work from it: always while
    /// running, and after `close` only from the pool's own workers
    /// (`own_worker` is asked only then). On refusal nothing stays
    /// registered and the state seen is returned; the caller must then wake
    /// the workers (see the module docs).
    #[inline]
    pub(crate) fn enter(&self, own_worker: impl FnOnce() -> bool) -> Result<(), State> {
        let prev = self.word.fetch_add(SUBMITTER, Ordering::SeqCst);
        let state = state_of(prev);
        match state {
            State::Running => Ok(()),
            State::Closed if own_worker() => Ok(()),
            _ => {
                self.word.fetch_sub(SUBMITTER, Ordering::SeqCst);
                Err(state)
            }
        }
    }

    /// Unregisters a submitter after its pushes; returns the state, so the
    /// caller wakes the workers when it is no longer `Running`.
    #[inline]
    pub(crate) fn leave(&self) -> State {
        state_of(self.word.fetch_sub(SUBMITTER, Ordering::SeqCst))
    }

    /// Whether the pool still runs (the read-mostly mirror: it may lag the
    /// word for a moment during `close`, which then wakes every worker).
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// `RUNNING -> CLOSED`; returns whether this call changed the state.
    /// The caller wakes the workers afterwards.
    pub(crate) fn close(&self) -> bool {
        let changed = self.advance(CLOSED);
        self.open.store(false, Ordering::SeqCst);
        changed
    }

    /// `-> TERMINATED`; returns whether this call changed the state.
    /// The caller wakes the workers afterwards.
    pub(crate) fn terminate(&self) -> bool {
        let changed = self.advance(TERMINATED);
        self.open.store(false, Ordering::SeqCst);
        self.terminated.store(true, Ordering::SeqCst);
        changed
    }

    fn advance(&self, to: usize) -> bool {
        self.word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w & STATE_MASK < to).then_some((w & !STATE_MASK) | to)
            })
            .is_ok()
    }

    /// Whether a worker that found no job may exit: the pool is terminated,
    /// or closed with no submitter in flight and `queue_empty()`.
    pub(crate) fn may_exit(&self, queue_empty: impl FnOnce() -> bool) -> bool {
        if self.is_open() {
            // Subtle: the mirror is set after the word, and `close` and
            // `terminate` wake every worker after setting it, so a worker
            // that reads "open" here re-checks once it is woken.
            return false;
        }
        let word = self.word.load(Ordering::SeqCst);
        match state_of(word) {
            State::Running => false,
            State::Terminated => true,
            State::Closed => word / SUBMITTER == 0 && queue_empty(),
        }
    }
}

#[cfg(all(test, not(parpool_loom)))]
mod tests {
    use super::*;

    #[test]
    fn state_only_moves_forward() {
        let l = Lifecycle::new();
        assert_eq!(l.state(), State::Running);
        assert!(l.close());
        assert!(!l.close());
        assert_eq!(l.state(), State::Closed);
        assert!(l.terminate());
        assert!(!l.close(), "terminated never goes back to closed");
        assert!(!l.terminate());
        assert_eq!(l.state(), State::Terminated);
        assert!(l.is_terminated() && l.is_terminated_relaxed());
    }

    #[test]
    fn refused_submitters_leave_no_count() {
        let l = Lifecycle::new();
        assert!(l.enter(|| false).is_ok());
        l.close();
        assert!(
            !l.may_exit(|| true),
            "a counted submitter keeps workers alive"
        );
        assert_eq!(l.leave(), State::Closed);
        assert!(l.may_exit(|| true));
        assert!(!l.may_exit(|| false), "queued work keeps workers alive");
        assert_eq!(l.enter(|| false), Err(State::Closed));
        assert!(
            l.enter(|| true).is_ok(),
            "own workers may submit after close"
        );
        assert!(!l.may_exit(|| true));
        l.leave();
        l.terminate();
        assert_eq!(l.enter(|| true), Err(State::Terminated));
        assert!(l.may_exit(|| false), "terminated: exit whatever is queued");
    }
}

#[cfg(all(test, parpool_loom))]
mod loom_tests {
    //! Model check: a submitter racing `close` and a worker deciding to
    //! exit. Either the submission is refused, or the worker sees its job.
    use super::*;
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;

    #[test]
    fn accepted_job_is_never_stranded() {
        loom::model(|| {
            let life = Arc::new(Lifecycle::new());
            let queued = Arc::new(AtomicBool::new(false));
            let submitter = {
                let (life, queued) = (Arc::clone(&life), Arc::clone(&queued));
                loom::thread::spawn(move || {
                    if life.enter(|| false).is_ok() {
                        queued.store(true, Ordering::SeqCst);
                        life.leave();
                        true
                    } else {
                        false
                    }
                })
            };
            life.close();
            // The worker: exits only when allowed; otherwise it would wait
            // for the job (or for the submitter to leave) and run it.
            let exited_early = life.may_exit(|| !queued.load(Ordering::SeqCst));
            let accepted = submitter.join().unwrap();
            // An accepted job is either seen by the worker (it stays) or was
            // refused; a worker never exits past an accepted job.
            assert!(!(exited_early && accepted), "an accepted job was stranded");
        });
    }
}
