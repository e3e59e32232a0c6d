//! The registry: the pool's queue, its lifecycle, and the one way jobs enter it.
//!
//! Every pool handle, worker and in-flight call holds an `Arc<Registry>`.
//! Jobs go into one lock-free [`JobQueue`]; the worker threads that pop them
//! live in [`crate::worker`].
//!
//! Invariants:
//! - Every job enters through [`Registry::accept`] and [`Accepted::push`];
//!   acceptance and the submitter's registration are one atomic step (see
//!   [`crate::lifecycle`]), so an accepted job is never stranded after the
//!   workers have exited, and a refused one is handed back to its submitter.
//! - Once the pool is terminated, every job still in the queue, or pushed
//!   later by a racing submitter, is dropped (= cancelled, see
//!   [`crate::job`]) instead of run. A submitter pushes, then leaves (a
//!   read-modify-write of the lifecycle word that returns the state) and
//!   drains the queue itself if it sees `TERMINATED`; `terminate` moves the
//!   word to `TERMINATED`, then drains. The two read-modify-writes are
//!   ordered in the word, and whichever comes second finds the job.
//! - User code reached from a job (its closure, its `Drop`, a callback) runs
//!   under [`crate::panic::contain`]: a worker thread never dies of it, and a
//!   drain that meets a panicking `Drop` goes on with the next job.
//! - Queue counts (`Stats::queued`) move here, at push and pop; running and
//!   completed items are counted by the code that runs them, so an item is
//!   counted completed only if it ran.

use crate::builder::Config;
use crate::error::BuildError;
use crate::job::JobRef;
use crate::lifecycle::{Lifecycle, State};
use crate::panic::{self, PanicPolicy, Payload};
use crate::queue::JobQueue;
use crate::slab;
use crate::sleep::Sleep;
use crate::stats::Counters;
use crate::sync::lock;
use crate::worker;
use std::cell::RefCell;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The most workers a pool may be built with. Far above any useful number;
/// it turns a typo such as `usize::MAX` into an error instead of an attempt
/// to start threads until the system refuses.
pub(crate) const MAX_WORKERS: usize = 1 << 14;

pub(crate) struct Registry {
    queue: JobQueue<JobRef>,
    pub(crate) sleep: Sleep,
    lifecycle: Lifecycle,
    counters: Counters,
    pub(crate) config: Config,
    workers: usize,
    /// Join handles of every worker thread started, replacements and spares
    /// included; a thread records the handles of threads it starts before it
    /// exits, so `join` never misses one.
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) next_index: AtomicUsize,
    /// Live and blocked worker threads (see `worker.rs`).
    pub(crate) census: worker::Census,
    /// Keeps task memory between bursts while the pool lives (`slab.rs`).
    _memory: slab::Keep,
}

/// A submitter the pool has accepted: it may push jobs until it is dropped.
/// While it lives, the workers of a closed pool wait for its jobs.
pub(crate) struct Accepted<'a> {
    registry: &'a Registry,
    pushed: usize,
}

impl Accepted<'_> {
    /// Queues `job`. It will run, or report itself cancelled.
    pub(crate) fn push(&mut self, job: impl Into<JobRef>) {
        self.registry.push(job.into());
        self.pushed += 1;
    }
}

impl Drop for Accepted<'_> {
    fn drop(&mut self) {
        let registry = self.registry;
        // Subtle: `leave` is a read-modify-write of the lifecycle word, after
        // our pushes; `terminate`'s is too, before its drain. Whichever comes
        // second in the word's order sees the other's work: `leave` sees
        // `TERMINATED` (and we drain), or the drain sees our jobs.
        let state = registry.lifecycle.leave();
        if state == State::Terminated && self.pushed > 0 {
            registry.drain();
        }
        if self.pushed > 0 {
            registry.sleep.notify(self.pushed);
            // After `notify`'s fence: a worker an executor parked with no
            // stand-in possible runs what was pushed (`exec_wait.rs`).
            registry.census.exec_waiters.wake_if_parked();
        }
        if state != State::Running {
            // A worker of a closed pool may be waiting for us to leave.
            registry.sleep.notify_all();
        }
    }
}

impl Registry {
    /// Starts the workers. On any failure, stops and joins those already
    /// started, so no thread outlives a failed build.
    pub(crate) fn start(config: Config, workers: usize) -> Result<Arc<Registry>, BuildError> {
        if workers == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        if workers > MAX_WORKERS {
            return Err(BuildError::TooManyWorkers {
                requested: workers,
                max: MAX_WORKERS,
            });
        }
        // `std` panics at the spawn of a thread whose name has a NUL byte
        // (a C string): refused here, as the error `build` promises, not
        // as a panic out of it (found by a hostile round).
        if config.name.contains('\0') {
            return Err(BuildError::Spawn(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a worker thread's name may not contain a null byte",
            )));
        }
        let registry = Arc::new(Registry {
            queue: JobQueue::new(),
            sleep: Sleep::default(),
            lifecycle: Lifecycle::new(),
            counters: Counters::default(),
            config,
            workers,
            threads: Mutex::new(Vec::with_capacity(workers)),
            next_index: AtomicUsize::new(0),
            census: worker::Census::default(),
            _memory: slab::Keep::new(),
        });
        let mut failure = None;
        let mut ready = Vec::with_capacity(workers);
        for _ in 0..workers {
            match worker::spawn(&registry) {
                Ok(rx) => ready.push(rx),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Without an initializer a worker has nothing to report but "up",
        // and nothing can fail after the spawn: the build does not wait for
        // the threads to be scheduled (W9 in `docs/design.md`).
        if registry.config.initializer.is_none() {
            ready.clear();
        }
        for rx in ready {
            let outcome = rx
                .recv()
                .unwrap_or_else(|_| Err("worker exited during start-up".to_owned()));
            if let (Err(msg), None) = (outcome, &failure) {
                failure = Some(BuildError::InitializerPanicked(msg));
            }
        }
        if let Some(e) = failure {
            registry.terminate();
            registry.join_threads();
            return Err(e);
        }
        Ok(registry)
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// From the word itself: a submission refused as "closed" is never
    /// followed by `is_running() == true` (the mirrors lag for a moment).
    pub(crate) fn is_running(&self) -> bool {
        self.lifecycle.state() == State::Running
    }

    #[inline]
    pub(crate) fn is_terminated(&self) -> bool {
        self.lifecycle.is_terminated()
    }

    /// A cheap check for hot loops that stop between items; it may see the
    /// change a little late, which only delays the stop.
    #[inline]
    pub(crate) fn is_terminated_relaxed(&self) -> bool {
        self.lifecycle.is_terminated_relaxed()
    }

    /// Whether the current thread is one of this pool's workers.
    pub(crate) fn is_current_worker(&self) -> bool {
        worker::current_is(self)
    }

    /// The one entry for work: `Some` if the pool accepts jobs from this
    /// thread (it runs, or it is closed and this is one of its workers, so
    /// queued tasks that nest keep working). `None` otherwise: the caller
    /// runs the work itself or reports it refused.
    #[inline]
    pub(crate) fn accept(&self) -> Option<Accepted<'_>> {
        match self.lifecycle.enter(|| self.is_current_worker()) {
            Ok(()) => Some(Accepted {
                registry: self,
                pushed: 0,
            }),
            Err(_) => {
                // We were counted for a moment; a closing worker may have seen it.
                self.sleep.notify_all();
                None
            }
        }
    }

    /// Only through [`Accepted`], whose drop finishes the protocol.
    fn push(&self, job: JobRef) {
        self.counters.queued(job.items() as isize);
        self.queue.push(job);
    }

    pub(crate) fn pop(&self) -> Option<JobRef> {
        let job = self.queue.pop()?;
        self.counters.queued(-(job.items() as isize));
        Some(job)
    }

    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether a worker that found no job may exit (see [`Lifecycle::may_exit`]).
    pub(crate) fn may_exit(&self) -> bool {
        self.lifecycle.may_exit(|| self.queue.is_empty())
    }

    /// Drops every queued job; each reports itself cancelled. A job whose
    /// `Drop` panics does not stop the drain.
    ///
    /// Dropping a task runs its error callbacks here, and one may wait for
    /// a task queued behind its own, which only this drain would reach:
    /// such a wait goes on draining from inside it ([`help_drain`]).
    fn drain(&self) {
        while let Some(job) = self.pop() {
            self.discard(job);
        }
    }

    /// Drops a job unrun (it reports itself cancelled), as a drain does;
    /// this thread counts as draining the pool meanwhile ([`discarding`](Self::discarding)).
    fn discard(&self, job: JobRef) {
        self.discarding(|| {
            if let Some(payload) = panic::drop_contained(job) {
                self.stray_panic(payload);
            }
        });
    }

    /// Runs `f`, which discards work of this terminated pool (running its
    /// error callbacks), with this thread marked as draining the pool: a
    /// callback's wait for a task still queued on it goes on draining
    /// ([`help_drain`]).
    pub(crate) fn discarding<T>(&self, f: impl FnOnce() -> T) -> T {
        let _draining = Draining::enter(self);
        f()
    }

    /// Runs a popped job, or cancels it if the pool was terminated meanwhile.
    /// Nothing a job does can unwind out of here.
    pub(crate) fn run_job(&self, job: JobRef) {
        // A job runs on this thread: whatever an executor here awaited is
        // put aside until it returns (`exec_wait.rs`).
        let _suspended = crate::exec_wait::suspend();
        if self.is_terminated() {
            self.discard(job);
        } else if let Err(payload) = panic::contain(|| job.run(self)) {
            self.stray_panic(payload);
        }
    }

    /// A panic of user code that has no consumer to go to (a closure's `Drop`
    /// during a drain, a result's `Drop` on a worker): counted, and subject
    /// to the pool's policy like a task's panic.
    pub(crate) fn stray_panic(&self, payload: Payload) {
        self.task_panicked(&payload);
        // The payload is user data whose `Drop` may panic; a `Payload` drops
        // it contained, so nothing unwinds out of a drain (leaving later
        // jobs queued) or out of a worker's `run_job`.
        drop(payload);
    }

    /// Called by every job whose user code panicked.
    pub(crate) fn task_panicked(&self, payload: &Payload) {
        self.counters.panicked();
        match self.config.on_panic {
            PanicPolicy::Propagate => {}
            PanicPolicy::Terminate => self.terminate(),
            PanicPolicy::Abort => {
                eprintln!(
                    "parpool: a task panicked ({}) and the pool's panic policy is Abort; aborting",
                    panic::message(payload.as_ref())
                );
                std::process::abort();
            }
        }
    }

    pub(crate) fn close(&self) {
        self.lifecycle.close();
        self.sleep.notify_all();
    }

    /// Terminates and drains, once: a later call (for instance from a
    /// `Drop` that panics during the drain, under `PanicPolicy::Terminate`)
    /// finds the state already moved and does not drain again, so drains
    /// never nest. Jobs pushed afterwards are drained by their submitters.
    pub(crate) fn terminate(&self) {
        if self.lifecycle.terminate() {
            self.drain();
        }
        self.sleep.notify_all();
    }

    /// Joins every worker thread, replacements and spares included, but
    /// the calling thread: a worker whose thread-local destructor drops the
    /// pool's last handle (its loop has ended, so it is no longer counted
    /// as a worker) cannot wait for itself, and is ending anyway. Joining
    /// it failed (`EDEADLK`) and aborted the process, a panic in a
    /// destructor.
    pub(crate) fn join_threads(&self) {
        let me = std::thread::current().id();
        loop {
            let handle = lock(&self.threads).pop();
            match handle {
                Some(h) if h.thread().id() == me => drop(h),
                // A worker never panics (user panics are caught), so an error
                // here cannot carry a user payload worth re-raising.
                Some(h) => drop(h.join()),
                None => return,
            }
        }
    }
}

thread_local! {
    /// The pools whose work this thread is discarding, innermost last (a
    /// callback run by one drain may terminate another pool).
    static DRAINING: RefCell<Vec<*const Registry>> = const { RefCell::new(Vec::new()) };
}

/// Marks the current thread as discarding a pool's work until dropped.
/// Holds whether the mark was pushed (not in a thread-local destructor
/// that runs after the stack's own).
struct Draining(bool);

impl Draining {
    fn enter(registry: &Registry) -> Self {
        Draining(DRAINING.try_with(|d| d.borrow_mut().push(registry)).is_ok())
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        if self.0 {
            DRAINING.with(|d| d.borrow_mut().pop());
        }
    }
}

/// The addresses of the pools this thread is discarding work of (compared
/// with tasks' pool keys); usually none.
pub(crate) fn draining_here() -> Vec<usize> {
    DRAINING
        .try_with(|d| d.borrow().iter().map(|&r| r as usize).collect())
        .unwrap_or_default()
}

/// What [`help_drain`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Drained {
    /// This thread is not discarding that pool's work: wait as usual.
    NotHere,
    /// `done()` holds, or the queue is empty (another thread holds the
    /// task, and will finish it): wait as usual.
    Done,
    /// The inlining depth ran out with the task still queued: only this
    /// thread, further down its stack, would ever reach it, so an untimed
    /// wait must fail rather than wait.
    Stuck,
}

/// For a wait on a thread discarding the terminated pool at `key` (a
/// task's error callback, run by `terminate`'s drain or by a worker
/// discarding a job, waiting for a task queued behind its own): goes on
/// draining here until `done()` or the queue is empty, one inlined level
/// per job (`park::nested`). Without it, the wait would wait for the very
/// drain it interrupted.
pub(crate) fn help_drain(key: usize, done: impl Fn() -> bool) -> Drained {
    let found = DRAINING
        .try_with(|d| {
            d.borrow()
                .iter()
                .rev()
                .copied()
                .find(|&r| r as usize == key)
        })
        .ok()
        .flatten();
    let Some(ptr) = found else {
        return Drained::NotHere;
    };
    // SAFETY: `discarding` pushed the pointer from `&self` on this thread
    // and pops it before it returns; this call runs inside it (in code it
    // called), so the registry is alive and borrowed.
    let registry = unsafe { &*ptr };
    while !done() {
        let ran = crate::park::nested(registry, || match registry.pop() {
            Some(job) => {
                registry.discard(job);
                true
            }
            None => false,
        });
        match ran {
            Some(true) => {}
            Some(false) => return Drained::Done,
            None => return Drained::Stuck,
        }
    }
    Drained::Done
}

/// Gives up a wait that only this thread, further down its stack, could
/// ever end ([`Drained::Stuck`]): a clear error, not a hang. A refusal
/// ([`panic::refuse`]): it returns only on a thread already unwinding,
/// and the wait then gives up without the panic (it must not go on).
#[track_caller]
pub(crate) fn stuck_in_drain() {
    panic::refuse(format_args!(
        "parpool: a wait in a callback of a task discarded by terminate waits for a task \
         queued behind it, through more nested waits than this thread may discard work \
         itself; giving up instead of hanging"
    ));
}
