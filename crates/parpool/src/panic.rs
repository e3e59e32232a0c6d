//! What happens when a task panics, and how a panic payload becomes a message.
//!
//! A task's panic is always caught on the thread that ran it, so a worker never
//! dies of it. [`PanicPolicy`] then decides what else happens. The caught
//! payload travels to whoever consumes the task's result and is re-raised or
//! reported there; it is never dropped silently while someone waits for it.

use std::any::Any;

/// A caught panic's payload.
pub(crate) type Payload = Box<dyn Any + Send + 'static>;

/// What a pool does when one of its tasks panics.
///
/// # Examples
///
/// ```
/// use parpool::{PanicPolicy, ThreadPool};
///
/// let pool = ThreadPool::builder()
///     .workers(2)
///     .on_panic(PanicPolicy::Terminate)
///     .build()
///     .unwrap();
/// assert!(pool.apply_async(|| panic!("first")).get().is_err());
/// // The pool was terminated by the panic; it accepts no more work.
/// pool.join();
/// assert!(!pool.is_running());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PanicPolicy {
    /// The default. The panic is caught and handed to the task's consumer:
    /// [`AsyncResult::get`](crate::AsyncResult::get) returns
    /// [`TaskError::Panicked`](crate::TaskError::Panicked), and `map`, `starmap`
    /// and `imap` re-raise it in the calling thread.
    #[default]
    Propagate,
    /// As `Propagate`, and the first task panic also terminates the pool (like
    /// [`ThreadPool::terminate`](crate::ThreadPool::terminate)); the process lives on.
    Terminate,
    /// The process aborts at the first task panic.
    Abort,
}

/// The message a panic payload carries, as the default panic hook prints it.
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// The payload a task unwinds with to report [`TaskError::Cancelled`]
/// (crate::TaskError::Cancelled) instead of a panic: a `map_async` stopped by
/// `terminate`. It is not a panic of user code: the hook does not run, and it
/// is neither counted nor subject to the policy.
pub(crate) struct CancelledMarker;

/// Unwinds out of the current task, which then reports `Cancelled`.
pub(crate) fn unwind_cancelled() -> ! {
    std::panic::resume_unwind(Box::new(CancelledMarker))
}
