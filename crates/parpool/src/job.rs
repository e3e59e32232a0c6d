//! A job: one unit the workers pop from the queue and run.
//!
//! A job is a boxed trait object, or the queue's share of a task that also
//! holds its result slot (`apply_async`: one allocation per task). Running
//! it consumes it; dropping it without running it means "cancelled": every
//! job type reports cancellation to its consumer in its `Drop`, so a job
//! discarded by `terminate`, or left in a queue for any other reason, can
//! never leave anyone waiting.
//!
//! Jobs are run by [`Registry::run_job`](crate::registry::Registry::run_job),
//! which is handed the registry so that a job counts the items it actually
//! runs, and which contains any panic a job lets through.
//!
//! Jobs that borrow from a caller's stack (blocking `apply`, scoped work) have
//! their lifetime erased by [`erase`]; the caller of `erase` promises to wait
//! until the job has been run or dropped before the borrow ends.

use crate::registry::Registry;
use crate::task_ptr::TaskPtr;

/// One unit of work in the queue.
pub(crate) trait Job: Send {
    /// Runs the job on a thread of `registry`. Panics inside user code are
    /// caught by the job itself.
    fn run(self: Box<Self>, registry: &Registry);

    /// How many user items the job carries, for `Stats::queued`.
    fn items(&self) -> usize {
        1
    }
}

pub(crate) type JobBox = Box<dyn Job>;

/// A job that shares its allocation with its result handle: the queue holds
/// one reference, the handle another, so submitting costs one allocation and
/// the worker frees nothing (see `async_result::Task`).
pub(crate) trait SharedRun: Send + Sync {
    /// Runs the job unless someone else (its handle's `cancel`, or a waiter
    /// that inlined it) claimed it first.
    fn run_shared(&self, registry: &Registry);
    /// The queue's reference is dropped unrun: cancel, unless already claimed.
    fn cancel_shared(&self);
    /// How many user items the job carries, for `Stats::queued`.
    fn items(&self) -> usize;
}

/// The queue's reference to a shared job, and its item count (kept here:
/// the queue reads it twice per job, without a virtual call). Dropping it
/// unrun cancels it.
pub(crate) struct SharedJob(Option<TaskPtr<dyn SharedRun>>, usize);

impl SharedJob {
    pub(crate) fn new(job: TaskPtr<dyn SharedRun>) -> Self {
        let items = job.items();
        SharedJob(Some(job), items)
    }
}

impl Drop for SharedJob {
    fn drop(&mut self) {
        if let Some(job) = self.0.take() {
            job.cancel_shared();
        }
    }
}

/// What the queue holds: a boxed job, or the queue's share of a shared one.
pub(crate) enum JobRef {
    Boxed(JobBox),
    Shared(SharedJob),
}

impl JobRef {
    pub(crate) fn run(self, registry: &Registry) {
        match self {
            JobRef::Boxed(job) => job.run(registry),
            JobRef::Shared(mut job) => {
                if let Some(job) = job.0.take() {
                    job.run_shared(registry);
                }
            }
        }
    }

    pub(crate) fn items(&self) -> usize {
        match self {
            JobRef::Boxed(job) => job.items(),
            JobRef::Shared(job) => job.1,
        }
    }
}

impl From<JobBox> for JobRef {
    fn from(job: JobBox) -> Self {
        JobRef::Boxed(job)
    }
}

impl From<SharedJob> for JobRef {
    fn from(job: SharedJob) -> Self {
        JobRef::Shared(job)
    }
}

/// Extends a job's lifetime to `'static` so it can sit in the shared queue.
///
/// # Safety
///
/// The caller must not let `'a` end before the returned job has been run or
/// dropped: it must wait for a signal that the job sends after it has dropped
/// every borrowed value it holds.
pub(crate) unsafe fn erase<'a>(job: Box<dyn Job + 'a>) -> JobBox {
    // SAFETY: only the lifetime bound of the trait object changes; layout and
    // vtable are identical. The caller guarantees the borrow outlives the job.
    unsafe { std::mem::transmute::<Box<dyn Job + 'a>, Box<dyn Job + 'static>>(job) }
}
