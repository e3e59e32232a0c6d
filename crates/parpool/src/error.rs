//! Errors are values with a message that says what went wrong.
//!
//! [`TaskError`] is what a task's handle reports instead of a result: the task
//! panicked, the caller stopped waiting, the task never ran, the pool
//! no longer ran when it was submitted, or (asked from a thread already
//! unwinding, where a panic would abort) the result was already returned.
//! [`BuildError`]
//! is what [`Builder::build`](crate::Builder::build) reports instead of a pool;
//! when it is returned, no worker thread of the failed pool is left running.

use std::io;

/// Why a task's result is not available.
///
/// # Examples
///
/// ```
/// use parpool::{TaskError, ThreadPool};
///
/// let pool = ThreadPool::with_workers(1);
/// let err = pool.apply_async(|| -> u32 { panic!("boom") }).get().unwrap_err();
/// assert!(matches!(err, TaskError::Panicked(_)));
/// assert!(err.to_string().contains("boom"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the string is the panic message.
    #[error("task panicked: {0}")]
    Panicked(String),
    /// The result was not ready before the timeout. The handle can still be used.
    ///
    /// Also what an untimed wait that could never end gives up with (`get`
    /// for its own task, from one of its callbacks), on a thread already
    /// unwinding from another panic, where the panic it would raise would
    /// abort the process (see [`AsyncResult::wait`](crate::AsyncResult::wait)).
    /// `get` consumed its handle: the task's result is then dropped when it
    /// finishes, as a dropped handle's is.
    #[error("timed out waiting for the task's result (the task keeps running)")]
    Timeout,
    /// The task never ran, or stopped early: it was cancelled, or the pool was
    /// terminated before or while it ran.
    #[error("task cancelled: it was cancelled or its pool was terminated before it finished")]
    Cancelled,
    /// The pool was closed or terminated before the task was submitted, so
    /// it was never queued and never ran (Python raises `ValueError: Pool
    /// not running` at the call instead).
    ///
    /// ```
    /// use parpool::{TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::with_workers(1);
    /// pool.close();
    /// assert_eq!(pool.apply_async(|| 1).get(), Err(TaskError::NotRunning));
    /// ```
    #[error(
        "pool not running: it was closed or terminated before the task was submitted, so the \
         task never ran (check ThreadPool::is_running, or use apply, which runs on the caller)"
    )]
    NotRunning,
    /// The handle's result was already returned, by
    /// [`get_timeout`](crate::AsyncResult::get_timeout) or by awaiting it:
    /// a handle gives its result once. Asking again is a bug, and panics
    /// saying so; only on a thread that is already unwinding from another
    /// panic (a `Drop` asking), where a second panic would abort the
    /// process, is this returned instead.
    ///
    /// ```
    /// use parpool::{AsyncResult, TaskError, ThreadPool};
    /// use std::time::Duration;
    ///
    /// // A guard whose `Drop` asks for a result already taken.
    /// struct GetOnDrop(Option<AsyncResult<u8>>);
    /// impl Drop for GetOnDrop {
    ///     fn drop(&mut self) {
    ///         let handle = self.0.take().unwrap();
    ///         assert_eq!(handle.get(), Err(TaskError::Spent));
    ///     }
    /// }
    ///
    /// let pool = ThreadPool::with_workers(1);
    /// let mut handle = pool.apply_async(|| 7);
    /// assert_eq!(handle.get_timeout(Duration::from_secs(10)), Ok(7));
    /// let guard = GetOnDrop(Some(handle));
    /// let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
    ///     let _guard = guard;
    ///     panic!("the guard's Drop runs while this unwinds");
    /// }));
    /// assert!(unwound.is_err());
    /// ```
    #[error(
        "the task's result was already returned by this handle (by get_timeout, or by awaiting \
         it); a handle gives its result once"
    )]
    Spent,
}

/// Why [`Builder::build`](crate::Builder::build) could not make a pool.
///
/// # Examples
///
/// ```
/// use parpool::{BuildError, ThreadPool};
///
/// let err = ThreadPool::builder().workers(0).build().unwrap_err();
/// assert!(matches!(err, BuildError::ZeroWorkers));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A pool needs at least one worker.
    #[error("a thread pool needs at least one worker, but 0 were requested")]
    ZeroWorkers,
    /// More workers were requested than a pool may have.
    #[error("{requested} workers were requested, but a thread pool may have at most {max}")]
    TooManyWorkers {
        /// The number requested.
        requested: usize,
        /// The largest number allowed.
        max: usize,
    },
    /// The operating system refused to start a worker thread.
    #[error("could not spawn a worker thread: {0}")]
    Spawn(#[source] io::Error),
    /// The initializer panicked on a worker thread; the message is the panic's.
    #[error("the worker initializer panicked: {0}")]
    InitializerPanicked(String),
}
