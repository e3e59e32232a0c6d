//! The registry: the worker threads, their shared queue and the pool's lifecycle.
//!
//! Every pool handle, worker and in-flight call holds an `Arc<Registry>`.
//! Jobs go into one crossbeam `Injector` (a lock-free queue: no lock on the
//! hot path); idle workers sleep as described in [`crate::sleep`].
//!
//! Lifecycle invariants:
//! - The state only moves forward: `RUNNING` -> `CLOSED` -> `TERMINATED`
//!   (or straight to `TERMINATED`).
//! - Once the state is `TERMINATED`, every job still in the queue, or pushed
//!   later by a racing submitter, is dropped (= cancelled, see [`crate::job`])
//!   instead of run. A submitter pushes, then re-reads the state and drains
//!   the queue itself if it sees `TERMINATED`; `terminate` stores the state,
//!   then drains. Whichever comes second finds the job.
//! - A worker exits when the pool is terminated, or closed with an empty
//!   queue; a worker that retires after `max_tasks_per_worker` jobs first
//!   starts its replacement and records its handle, so `join` never misses a
//!   thread.

use crate::builder::Config;
use crate::error::BuildError;
use crate::job::{JobBox, JobRef};
use crate::panic::{self, PanicPolicy, Payload};
use crate::sleep::Sleep;
use crate::stats::Counters;
use crate::sync::lock;
use crossbeam_deque::{Injector, Steal};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

const RUNNING: u8 = 0;
const CLOSED: u8 = 1;
const TERMINATED: u8 = 2;

/// How long a worker that waits for a result sleeps before it looks for
/// queued work to help with again.
const HELP_POLL: Duration = Duration::from_millis(1);

pub(crate) struct Registry {
    injector: Injector<JobRef>,
    sleep: Sleep,
    state: AtomicU8,
    pub(crate) counters: Counters,
    config: Config,
    workers: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_index: AtomicUsize,
}

thread_local! {
    /// The registry whose worker this thread is, if any.
    static WORKER: RefCell<Option<Arc<Registry>>> = const { RefCell::new(None) };
}

/// The pool whose worker the current thread is, if any.
pub(crate) fn current_worker() -> Option<Arc<Registry>> {
    WORKER.with(|w| w.borrow().clone())
}

/// Waits until `done()`, like [`Registry::wait_until`]: on a worker of any
/// pool it runs that pool's queued jobs meanwhile, elsewhere it blocks.
pub(crate) fn wait_here(done: impl Fn() -> bool, block: impl Fn(Option<Duration>)) {
    if done() {
        return;
    }
    match current_worker() {
        Some(registry) => registry.wait_until(done, block),
        None => {
            while !done() {
                block(None);
            }
        }
    }
}

/// Whether the current thread is a worker of a terminated pool.
pub(crate) fn current_pool_terminated() -> bool {
    WORKER.with(|w| w.borrow().as_ref().is_some_and(|r| r.is_terminated()))
}

impl Registry {
    /// Starts the workers. On any failure, stops and joins those already
    /// started, so no thread outlives a failed build.
    pub(crate) fn start(config: Config, workers: usize) -> Result<Arc<Registry>, BuildError> {
        if workers == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        let registry = Arc::new(Registry {
            injector: Injector::new(),
            sleep: Sleep::default(),
            state: AtomicU8::new(RUNNING),
            counters: Counters::default(),
            config,
            workers,
            threads: Mutex::new(Vec::with_capacity(workers)),
            next_index: AtomicUsize::new(0),
        });
        let mut failure = None;
        let mut ready = Vec::with_capacity(workers);
        for _ in 0..workers {
            match registry.spawn_worker() {
                Ok(rx) => ready.push(rx),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
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

    /// Spawns one worker; the receiver reports whether its initializer ran.
    fn spawn_worker(self: &Arc<Self>) -> Result<mpsc::Receiver<Result<(), String>>, BuildError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let mut builder = thread::Builder::new().name(format!("{}-{index}", self.config.name));
        if let Some(size) = self.config.stack_size {
            builder = builder.stack_size(size);
        }
        let (tx, rx) = mpsc::channel();
        let registry = Arc::clone(self);
        let handle = builder
            .spawn(move || worker_main(registry, tx))
            .map_err(BuildError::Spawn)?;
        let mut threads = lock(&self.threads);
        // Reap retired workers, so a long-lived pool with a small
        // `max_tasks_per_worker` does not collect handles without end.
        let (done, live): (Vec<_>, Vec<_>) = threads.drain(..).partition(|h| h.is_finished());
        *threads = live;
        threads.push(handle);
        drop(threads);
        for h in done {
            drop(h.join());
        }
        Ok(rx)
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    #[inline]
    fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.state() == RUNNING
    }

    #[inline]
    pub(crate) fn is_terminated(&self) -> bool {
        self.state() == TERMINATED
    }

    /// A cheap check for hot loops that stop between items; it may see the
    /// change a little late, which only delays the stop.
    #[inline]
    pub(crate) fn is_terminated_relaxed(&self) -> bool {
        self.state.load(Ordering::Relaxed) == TERMINATED
    }

    /// Whether the current thread is one of this pool's workers.
    pub(crate) fn is_current_worker(&self) -> bool {
        WORKER.with(|w| {
            w.borrow()
                .as_ref()
                .is_some_and(|r| std::ptr::eq(Arc::as_ptr(r), self))
        })
    }

    /// Panics unless the pool accepts work. A closed pool still accepts work
    /// from its own workers, so queued tasks that nest keep working; they are
    /// drained before the workers exit.
    pub(crate) fn check_accepting(&self) {
        match self.state() {
            RUNNING => {}
            CLOSED if self.is_current_worker() => {}
            CLOSED => panic!("parpool: pool not running (it was closed); no new work is accepted"),
            _ => panic!("parpool: pool not running (it was terminated); no new work is accepted"),
        }
    }

    /// Queues one job without checking the state (the caller has). A job
    /// that races with `terminate` is cancelled, never lost.
    pub(crate) fn submit_unchecked(&self, job: impl Into<JobRef>) {
        let job = job.into();
        self.push(job);
        self.sleep.notify(1);
    }

    /// Queues several jobs and wakes as many workers.
    pub(crate) fn submit_all(&self, jobs: impl IntoIterator<Item = JobBox>) {
        self.check_accepting();
        let mut n = 0;
        for job in jobs {
            self.push(job.into());
            n += 1;
        }
        if n > 0 {
            self.sleep.notify(n);
        }
    }

    fn push(&self, job: JobRef) {
        self.counters.queued(job.items() as isize);
        self.injector.push(job);
        fence(Ordering::SeqCst);
        if self.is_terminated() {
            // Subtle: terminate() may have drained the queue before our push.
            self.drain();
        }
    }

    fn pop(&self) -> Option<JobRef> {
        loop {
            match self.injector.steal() {
                Steal::Success(job) => return Some(job),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    /// Drops every queued job; each reports itself cancelled.
    fn drain(&self) {
        while let Some(job) = self.pop() {
            self.counters.queued(-(job.items() as isize));
            drop(job);
        }
    }

    /// Runs a popped job, or cancels it if the pool was terminated meanwhile.
    fn execute(&self, job: JobRef) {
        let items = job.items();
        self.counters.start(items);
        if self.is_terminated() {
            self.counters.finish(items, false);
            drop(job);
        } else {
            job.run();
            self.counters.finish(items, true);
        }
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
        let _ = self
            .state
            .compare_exchange(RUNNING, CLOSED, Ordering::SeqCst, Ordering::SeqCst);
        self.sleep.notify_all();
    }

    pub(crate) fn terminate(&self) {
        self.state.store(TERMINATED, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.drain();
        self.sleep.notify_all();
    }

    /// Joins every worker thread, replacements included.
    pub(crate) fn join_threads(&self) {
        loop {
            let handle = lock(&self.threads).pop();
            match handle {
                // A worker never panics (user panics are caught), so an error
                // here cannot carry a user payload worth re-raising.
                Some(h) => drop(h.join()),
                None => return,
            }
        }
    }

    /// Waits until `done()`. On one of this pool's workers, it runs queued
    /// jobs meanwhile, so nested calls cannot deadlock even with one worker;
    /// elsewhere it blocks. `block(timeout)` blocks until `done()` may have
    /// changed or the timeout passes.
    pub(crate) fn wait_until(&self, done: impl Fn() -> bool, block: impl Fn(Option<Duration>)) {
        if self.is_current_worker() {
            while !done() {
                if !self.run_one() {
                    block(Some(HELP_POLL));
                }
            }
        } else {
            // Block at once, without spinning: a blocked thread frees its
            // CPU for the worker, and on virtual machines waking a thread on
            // an idle (halted) CPU costs tens of microseconds, while a
            // wake-up onto the CPU its waker leaves is fast (docs/design.md).
            while !done() {
                block(None);
            }
        }
    }

    /// Runs one queued job, if there is one (a waiting worker helps this way).
    pub(crate) fn run_one(&self) -> bool {
        match self.pop() {
            Some(job) => {
                self.execute(job);
                true
            }
            None => false,
        }
    }

    /// Retires the current worker after `max_tasks_per_worker` jobs: starts a
    /// replacement and reports whether it came up (if not, the current
    /// worker keeps going).
    fn replace_current(self: &Arc<Self>) -> bool {
        if self.is_terminated() {
            return true;
        }
        match self.spawn_worker() {
            Ok(rx) => matches!(rx.recv(), Ok(Ok(()))),
            Err(_) => false,
        }
    }
}

fn worker_main(registry: Arc<Registry>, ready: mpsc::Sender<Result<(), String>>) {
    WORKER.with(|w| *w.borrow_mut() = Some(Arc::clone(&registry)));
    if let Some(init) = &registry.config.initializer {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| init())) {
            let _ = ready.send(Err(panic::message(payload.as_ref())));
            WORKER.with(|w| w.borrow_mut().take());
            return;
        }
    }
    let _ = ready.send(Ok(()));
    drop(ready);
    let max_tasks = registry.config.max_tasks_per_worker;
    let mut ran = 0usize;
    loop {
        if let Some(job) = registry.pop() {
            registry.execute(job);
            ran += 1;
            if max_tasks.is_some_and(|max| ran >= max) {
                if registry.replace_current() {
                    break;
                }
                ran = 0;
            }
            continue;
        }
        match registry.state() {
            TERMINATED => break,
            CLOSED if registry.injector.is_empty() => break,
            _ => {}
        }
        registry
            .sleep
            .idle(|| !registry.injector.is_empty() || registry.state() != RUNNING);
    }
    // Drop the thread's handle on the registry before the thread ends, so a
    // pool whose last handle is gone is freed by its last worker.
    WORKER.with(|w| w.borrow_mut().take());
}
