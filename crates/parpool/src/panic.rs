//! What happens when a task panics, and how a panic payload becomes a message.
//!
//! A task's panic is always caught on the thread that ran it, so a worker never
//! dies of it. [`PanicPolicy`] then decides what else happens. The caught
//! payload travels to whoever consumes the task's result and is re-raised or
//! reported there; it is never dropped silently while someone waits for it.
//!
//! Invariant: a payload the engine holds never unwinds when dropped. A
//! payload is user data, and its own `Drop` may panic; [`Payload`] drops it
//! under a catch, so no path that lets one go (a callback that never runs,
//! a result nobody reads, a panic already kept) can unwind out of the
//! engine's bookkeeping or abort a thread that is unwinding already.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// A caught panic's payload. Dropping it is contained: a panic of the
/// payload's own `Drop` is caught, and that second payload is leaked (it
/// may panic when dropped too). Only [`resume`](Payload::resume) hands the
/// payload back to an unwinding, and with it to the user.
pub(crate) struct Payload(Option<Box<dyn Any + Send + 'static>>);

impl Payload {
    pub(crate) fn new(payload: Box<dyn Any + Send + 'static>) -> Self {
        Payload(Some(payload))
    }

    /// Re-raises the panic on the current thread.
    pub(crate) fn resume(self) -> ! {
        resume_unwind(self.into_inner())
    }

    /// The payload itself, whose drop is no longer contained: only for a
    /// caller that wraps it again at once (an interface that predates
    /// this type) or re-raises it.
    pub(crate) fn into_inner(mut self) -> Box<dyn Any + Send + 'static> {
        self.0.take().expect("a payload is taken once")
    }

    pub(crate) fn is<T: Any>(&self) -> bool {
        self.as_ref().is::<T>()
    }
}

impl AsRef<dyn Any + Send + 'static> for Payload {
    fn as_ref(&self) -> &(dyn Any + Send + 'static) {
        self.0.as_deref().expect("a payload is taken once")
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        if let Some(payload) = self.0.take() {
            if let Err(nested) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(nested);
            }
        }
    }
}

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

/// The payload a task unwinds with to report
/// [`TaskError::Cancelled`](crate::TaskError::Cancelled) instead of a panic: a `map_async` stopped by
/// `terminate`. It is not a panic of user code: the hook does not run, and it
/// is neither counted nor subject to the policy.
pub(crate) struct CancelledMarker;

/// Unwinds out of the current task, which then reports `Cancelled`.
pub(crate) fn unwind_cancelled() -> ! {
    resume_unwind(Box::new(CancelledMarker))
}

/// Runs user code (a closure, a `Drop`, an iterator's `next`, a callback)
/// and catches its panic. This is the one way the engine calls user code
/// outside a task's own `catch_unwind`: a panic there must never kill a
/// worker or leave a counter, gate or slot half-updated, so every such call
/// goes through here and the caller decides where the payload goes.
#[inline]
pub(crate) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, Payload> {
    catch_unwind(AssertUnwindSafe(f)).map_err(Payload::new)
}

/// Drops `value`, catching a panic of its `Drop`.
#[inline]
pub(crate) fn drop_contained<T>(value: T) -> Option<Payload> {
    if !std::mem::needs_drop::<T>() {
        std::mem::forget(value);
        return None;
    }
    contain(move || drop(value)).err()
}

/// Keeps `p` in `first` unless a payload is there already; a later one is
/// dropped (contained, as every [`Payload`]).
pub(crate) fn keep_first(first: &mut Option<Payload>, p: Payload) {
    if first.is_none() {
        *first = Some(p);
    }
}

/// Drops `value` contained, discarding a panic of its `Drop` (for values
/// dropped while unwinding, or whose panic has nowhere to go).
pub(crate) fn drop_discarding<T>(value: T) {
    drop(drop_contained(value));
}

/// Drops every element of `items` one by one, each under its own catch, so
/// one panicking `Drop` neither leaks the rest nor (with a second panic)
/// aborts the process. Returns the first panic.
pub(crate) fn drop_all_contained<T>(items: impl IntoIterator<Item = T>) -> Option<Payload> {
    let mut first = None;
    let mut items = items.into_iter();
    loop {
        // `next()` itself may drop nothing of ours; a drain or a vec iterator
        // only moves values out.
        match contain(|| items.next()) {
            Ok(Some(item)) => {
                if let Some(p) = drop_contained(item) {
                    keep_first(&mut first, p);
                }
            }
            Ok(None) => break,
            Err(p) => {
                keep_first(&mut first, p);
                break;
            }
        }
    }
    if let Some(p) = drop_contained(items) {
        keep_first(&mut first, p);
    }
    first
}

/// Drops every element of `items` as [`drop_all_contained`] does, and
/// discards their panics (values nobody will read, whose panics have
/// nowhere to go; the panic hook has reported them).
pub(crate) fn drop_all_discarding<T>(items: impl IntoIterator<Item = T>) {
    drop(drop_all_contained(items));
}

/// Refuses a misuse of the API with a panic saying `why` (a spent handle
/// asked for its result again, a wait that could never end), unless this
/// thread is unwinding already: there (a `Drop` making the call while
/// another panic unwinds) a second panic would abort the process, so this
/// returns, and the caller gives up with the value it documents for that
/// case (an error, a wait that returns unfinished, a callback only
/// dropped). Every refusal of a handle goes through here.
#[track_caller]
pub(crate) fn refuse(why: std::fmt::Arguments<'_>) {
    if !std::thread::panicking() {
        panic!("{why}");
    }
}

/// Re-raises `p` on the current thread, unless the thread is unwinding
/// already: a second panic would abort the process, so `p` is dropped then.
pub(crate) fn reraise_unless_unwinding(p: Payload) {
    if !std::thread::panicking() {
        p.resume();
    }
}
