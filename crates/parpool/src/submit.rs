//! Submission: the one path by which pool and scope work enters the queue,
//! and what becomes of work the pool refuses.
//!
//! Every job goes through [`Registry::accept`] then [`Accepted::push`]
//! (`registry.rs`); this module decides what wraps it. A [`Queue`] is where
//! jobs of lifetime `'a` go: the pool itself (`'static` jobs) or a scope
//! (jobs that borrow for the scope, counted by it so the scope waits for
//! them). `apply_async`, `map_async`, `spawn` and `imap` are written once
//! against it.
//!
//! A refused submission (the pool was closed or terminated) hands the job
//! back, and the caller decides, by kind; no kind panics in the submitting
//! thread:
//! - blocking calls (`apply`, `map`, `starmap`, `try_map`) and imap credits
//!   run it on the caller's thread, counted in the stats as a worker's run
//!   (`apply`'s through [`run_refused_blocking`]);
//! - a task with a handle (`apply_async`, `map_async`, `starmap_async`)
//!   gets a handle that reports [`TaskError::NotRunning`] ([`refused`]);
//! - a detached job (`spawn`) runs on the caller's thread, its panic going
//!   where a worker's would ([`run_refused`]): it has no handle to report a
//!   refusal through, and dropping it would lose work silently.
//!
//! [`Accepted::push`]: crate::registry::Accepted::push
//! [`TaskError::NotRunning`]: crate::TaskError::NotRunning

use crate::async_result::{AsyncResult, PanicSource, Task};
use crate::job::{self, Job, JobRef};
use crate::panic;
use crate::registry::Registry;
use crate::scope::ScopeState;
use std::marker::PhantomData;
use std::sync::Arc;

/// Where jobs that live for `'a` are queued.
pub(crate) struct Queue<'a> {
    registry: Arc<Registry>,
    /// `None`: the pool itself, for `'static` jobs only (see [`Queue::pool`]).
    scope: Option<Arc<ScopeState>>,
    _jobs: PhantomData<fn(&'a ())>,
}

impl Clone for Queue<'_> {
    fn clone(&self) -> Self {
        Queue {
            registry: Arc::clone(&self.registry),
            scope: self.scope.clone(),
            _jobs: PhantomData,
        }
    }
}

impl Queue<'static> {
    /// The pool itself. Only `'static` jobs can be queued here.
    pub(crate) fn pool(registry: Arc<Registry>) -> Self {
        Queue {
            registry,
            scope: None,
            _jobs: PhantomData,
        }
    }
}

impl<'a> Queue<'a> {
    /// A scope whose `wait` returns only after every job submitted here has
    /// been run or dropped, before `'a` ends.
    pub(crate) fn scope(registry: Arc<Registry>, scope: Arc<ScopeState>) -> Self {
        Queue {
            registry,
            scope: Some(scope),
            _jobs: PhantomData,
        }
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub(crate) fn scope_state(&self) -> Option<&Arc<ScopeState>> {
        self.scope.as_ref()
    }

    /// Queues `job`, or hands it back if the pool refuses work.
    pub(crate) fn submit(&self, job: Box<dyn Job + 'a>) -> Result<(), Box<dyn Job + 'a>> {
        let Some(mut accepted) = self.registry.accept() else {
            return Err(job);
        };
        let job = match &self.scope {
            Some(scope) => scope.wrap(job),
            // SAFETY: a queue without a scope is made only by `Queue::pool`,
            // as a `Queue<'static>`, so `'a` is `'static` here.
            None => unsafe { job::erase(job) },
        };
        accepted.push(job);
        Ok(())
    }

    /// Queues a task of `f` with its handle (closure and result slot in one
    /// allocation), or hands `f` back if the pool refuses work.
    pub(crate) fn task<F, R>(&self, f: F, source: PanicSource) -> Result<AsyncResult<R>, F>
    where
        F: FnOnce() -> R + Send + 'a,
        R: Send + 'a,
    {
        // SAFETY: a queue without a scope is a `Queue<'static>`.
        unsafe { task(&self.registry, self.scope.as_ref(), f, source, true) }
            .map(|handle| handle.expect("parpool: a task made with a handle has one"))
    }

    /// Queues a task of `f` with its handle; on a pool that refuses work,
    /// the handle reports `NotRunning` (see [`refused`]).
    pub(crate) fn task_or_refused<F, R>(&self, f: F, source: PanicSource) -> AsyncResult<R>
    where
        F: FnOnce() -> R + Send + 'a,
        R: Send + 'a,
    {
        self.task(f, source)
            .unwrap_or_else(|f| refused(&self.registry, f))
    }

    /// Queues `f` with no handle (`Scope::spawn`): its panic is kept by
    /// the scope, which re-raises it when it ends. On a pool that refuses
    /// work, `f` runs here (see [`run_refused`]).
    pub(crate) fn detached<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'a,
    {
        // SAFETY: a queue without a scope is a `Queue<'static>`.
        unsafe { detached(&self.registry, self.scope.as_ref(), f) }
    }
}

/// A task submission the pool refused: `f` is dropped (contained: its
/// `Drop` is user code) and the handle reports `NotRunning`.
pub(crate) fn refused<F, R: Send>(registry: &Registry, f: F) -> AsyncResult<R> {
    if let Some(p) = panic::drop_contained(f) {
        registry.stray_panic(p);
    }
    AsyncResult::not_running()
}

/// Runs a refused detached job on the calling thread. Its panic goes where
/// it would have gone from a worker: it is counted and meets the pool's
/// [`PanicPolicy`](crate::PanicPolicy), and in a scope it is kept for the
/// scope to re-raise when it ends. It never unwinds into the caller. It
/// counts in the stats as a worker's run would (`running`, then one
/// `completed`, panicked or not), as a refused `map` run here does.
pub(crate) fn run_refused(registry: &Registry, scope: Option<&ScopeState>, f: impl FnOnce()) {
    let Err(payload) = run_counted(registry, f) else {
        return;
    };
    match scope {
        Some(scope) => scope.report_panic(payload),
        None => {
            if let Some(p) = panic::drop_contained(payload) {
                registry.stray_panic(p);
            }
        }
    }
}

/// Runs a blocking `apply`'s closure on the calling thread, where the pool
/// refused it or `terminate` discarded it unrun: counted as a worker's run
/// would be (see [`run_refused`]), and a panic, once counted and put to the
/// pool's policy, unwinds into the caller, as `apply` re-raises a worker's.
pub(crate) fn run_refused_blocking<R>(registry: &Registry, f: impl FnOnce() -> R) -> R {
    run_counted(registry, f).unwrap_or_else(|payload| payload.resume())
}

/// Runs `f` here as one item of the pool's stats (`running`, then one
/// `completed`); a panic is counted and meets the pool's policy, and its
/// payload is handed back.
fn run_counted<R>(registry: &Registry, f: impl FnOnce() -> R) -> Result<R, panic::Payload> {
    let counters = registry.counters();
    counters.running(1);
    let outcome = panic::contain(f);
    counters.finished(1, 1);
    if let Err(payload) = &outcome {
        registry.task_panicked(payload);
    }
    outcome
}

/// Queues a `'static` task on the pool itself: `apply_async`'s fast path,
/// with no reference count taken on the registry.
pub(crate) fn pool_task<F, R>(
    registry: &Registry,
    f: F,
    source: PanicSource,
) -> Result<AsyncResult<R>, F>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // SAFETY: `'static` work needs no scope.
    unsafe { task(registry, None, f, source, true) }
        .map(|handle| handle.expect("parpool: a task made with a handle has one"))
}

/// Queues `'static` work on the pool itself with no handle
/// (`ThreadPool::spawn`); on a pool that refuses work, `f` runs here.
pub(crate) fn pool_spawn<F>(registry: &Registry, f: F)
where
    F: FnOnce() + Send + 'static,
{
    // SAFETY: `'static` work needs no scope.
    unsafe { detached(registry, None, f) }
}

/// A task without a handle: its outcome is dropped by whoever claims it,
/// and a panic goes to the scope (or is counted and meets the pool's
/// policy, as every task's). On a pool that refuses work, `f` runs here
/// (see [`run_refused`]).
///
/// # Safety
///
/// As [`task`].
unsafe fn detached<'a, F>(registry: &Registry, scope: Option<&Arc<ScopeState>>, f: F)
where
    F: FnOnce() + Send + 'a,
{
    // SAFETY: the caller's promise.
    if let Err(f) = unsafe { task(registry, scope, f, PanicSource::Task, false) } {
        run_refused(registry, scope.map(|s| &**s), f);
    }
}

/// # Safety
///
/// Without a scope, `'a` must be `'static`; with one, `'a` must be the
/// scope's lifetime.
unsafe fn task<'a, F, R>(
    registry: &Registry,
    scope: Option<&Arc<ScopeState>>,
    f: F,
    source: PanicSource,
    with_handle: bool,
) -> Result<Option<AsyncResult<R>>, F>
where
    F: FnOnce() -> R + Send + 'a,
    R: Send + 'a,
{
    let Some(mut accepted) = registry.accept() else {
        return Err(f);
    };
    // SAFETY: with a scope, the slot knows the scope, which counts the task
    // until its claim is done; without one, the caller promises `'static`.
    let (job, handle) = unsafe { Task::spawn(f, source, registry, scope.cloned(), with_handle) };
    // A scoped task counts in its scope through its claim, not its queued
    // reference, so a task inlined by its waiter does not keep the scope
    // waiting for the reference to be popped.
    accepted.push(JobRef::from(job));
    Ok(handle)
}
