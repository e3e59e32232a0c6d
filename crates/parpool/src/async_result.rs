//! `AsyncResult`: the handle to one task's future result.
//!
//! A task and its handle share a *slot*. The slot's status moves
//! `QUEUED -> CLAIMED -> DONE`, and exactly one party claims it: the worker
//! that starts the task, or `cancel`, or the queue dropping the job unrun
//! (terminate). The claimer fills in the outcome, runs the callbacks, marks
//! the slot done and wakes every waiter, in that order, under the slot's
//! mutex; so callbacks have run before any `wait` returns, and no outcome is
//! ever written twice or never.
//!
//! Dropping a handle does not cancel its task. In a scope, a panic that no
//! handle observed is handed to the scope, which re-raises it when it ends.

use crate::cancel::CancelFlag;
use crate::error::TaskError;
use crate::job::Job;
use crate::panic::{self, Payload};
use crate::registry;
use crate::scope::ScopeState;
use crate::sync::lock;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

const QUEUED: u8 = 0;
const CLAIMED: u8 = 1;
const DONE: u8 = 2;

type SuccessCallback<R> = Box<dyn FnOnce(&R) + Send>;
type ErrorCallback = Box<dyn FnOnce(&TaskError) + Send>;

/// A task's outcome. The failure is boxed: slots stay small, and a million
/// pending handles cost a million small allocations, not large ones.
pub(crate) type Outcome<R> = Result<R, Box<Failure>>;

/// Why a task has no value, with the panic payload kept for re-raising.
pub(crate) struct Failure {
    pub(crate) error: TaskError,
    pub(crate) payload: Option<Payload>,
}

impl Failure {
    pub(crate) fn new(error: TaskError, payload: Option<Payload>) -> Box<Self> {
        Box::new(Failure { error, payload })
    }
}

pub(crate) struct Slot<R> {
    status: AtomicU8,
    unwanted: AtomicBool,
    inner: Mutex<Inner<R>>,
    cond: Condvar,
    scope: Option<Arc<ScopeState>>,
}

struct Inner<R> {
    outcome: Option<Outcome<R>>,
    taken: bool,
    observed: bool,
    handle_alive: bool,
    /// Threads blocked in `block`; `complete` skips the wake-up syscall if 0.
    waiters: u32,
    /// Boxed: most tasks have none.
    callbacks: Option<Box<Callbacks<R>>>,
    waker: Option<Waker>,
}

struct Callbacks<R> {
    on_success: Vec<SuccessCallback<R>>,
    on_error: Vec<ErrorCallback>,
}

impl<R> Slot<R> {
    pub(crate) fn new(scope: Option<Arc<ScopeState>>) -> Arc<Self> {
        Arc::new(Self::new_inline(scope))
    }

    fn new_inline(scope: Option<Arc<ScopeState>>) -> Self {
        Slot {
            status: AtomicU8::new(QUEUED),
            unwanted: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                outcome: None,
                taken: false,
                observed: false,
                handle_alive: true,
                waiters: 0,
                callbacks: None,
                waker: None,
            }),
            cond: Condvar::new(),
            scope,
        }
    }

    /// Claims the right to fill in the outcome; `false` if someone else has.
    fn claim(&self) -> bool {
        self.status
            .compare_exchange(QUEUED, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn is_done(&self) -> bool {
        self.status.load(Ordering::Acquire) == DONE
    }

    /// Stores the outcome (the caller has claimed the slot), runs the
    /// callbacks, then marks the slot done and wakes every waiter.
    fn complete(&self, outcome: Outcome<R>) {
        let mut inner = lock(&self.inner);
        if let Some(callbacks) = inner.callbacks.take() {
            match &outcome {
                Ok(value) => {
                    for cb in callbacks.on_success {
                        run_callback(|| cb(value));
                    }
                }
                Err(failure) => {
                    for cb in callbacks.on_error {
                        run_callback(|| cb(&failure.error));
                    }
                }
            }
        }
        inner.outcome = Some(outcome);
        if !inner.handle_alive {
            self.hand_unobserved_panic_to_scope(&mut inner);
        }
        self.status.store(DONE, Ordering::Release);
        let waker = inner.waker.take();
        if inner.waiters > 0 {
            self.cond.notify_all();
            crate::sleep::handed_off();
        }
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn hand_unobserved_panic_to_scope(&self, inner: &mut Inner<R>) {
        if let (Some(scope), false) = (&self.scope, inner.observed) {
            if let Some(Err(failure)) = &mut inner.outcome {
                if let Some(p) = failure.payload.take() {
                    scope.report_panic(p);
                }
            }
        }
    }
}

impl<R> CancelFlag for Slot<R>
where
    R: Send,
{
    fn is_cancelled(&self) -> bool {
        self.unwanted.load(Ordering::Relaxed)
    }
}

/// Runs a user callback; a panicking callback is contained (the default hook
/// has printed it) and cannot break the pool or the handle.
fn run_callback(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// Whose panic a job's closure may raise.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PanicSource {
    /// The closure is the task: its panic is counted and meets the policy.
    Task,
    /// The closure relays panics of tasks that were already counted
    /// (`map_async` re-raising one of its items' panics).
    Relayed,
}

/// The job behind a scope's `apply_async`: a closure that may borrow, and its
/// slot in a separate allocation (a scoped task's lifetime is erased only in
/// the scope's job wrapper; see [`Task`] for the `'static` fast path).
pub(crate) struct ApplyJob<F, R> {
    f: Option<F>,
    slot: Arc<Slot<R>>,
    source: PanicSource,
}

impl<F, R> ApplyJob<F, R> {
    pub(crate) fn new(f: F, slot: Arc<Slot<R>>, source: PanicSource) -> Self {
        ApplyJob {
            f: Some(f),
            slot,
            source,
        }
    }
}

impl<F, R> Job for ApplyJob<F, R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    fn run(mut self: Box<Self>) {
        let Some(f) = self.f.take() else { return };
        if !self.slot.claim() {
            return; // cancelled by its handle; `f` drops here
        }
        let slot = Arc::clone(&self.slot);
        // SAFETY: the guard is a local of this call and drops before `slot`.
        let token = unsafe { crate::cancel::enter(&*slot, true) };
        let outcome = run_task(f, self.source);
        drop(token);
        slot.complete(outcome);
    }
}

impl<F, R> Drop for ApplyJob<F, R> {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            drop(f);
            if self.slot.claim() {
                self.slot
                    .complete(Err(Failure::new(TaskError::Cancelled, None)));
            }
        }
    }
}

/// A `'static` task and its slot in one allocation (the job behind
/// [`ThreadPool::apply_async`](crate::ThreadPool::apply_async)). The queue and
/// the handle each hold a reference; the worker frees nothing, and the last
/// owner (usually the handle, after `get`) frees the whole task at once.
pub(crate) struct Task<F, R> {
    slot: Slot<R>,
    /// Touched only by the queue's reference (`run_shared` or
    /// `cancel_shared`, at most one call in all), so never concurrently.
    f: std::cell::UnsafeCell<Option<F>>,
    source: PanicSource,
}

// SAFETY: `f` is accessed by one thread at a time (see its doc), and moved
// to the running thread (`F: Send`); the slot is `Sync` for `R: Send`.
unsafe impl<F: Send, R: Send> Sync for Task<F, R> {}

impl<F, R> Task<F, R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    /// Makes the task; returns the queue's job and the handle.
    pub(crate) fn spawn(f: F, source: PanicSource) -> (crate::job::SharedJob, AsyncResult<R>) {
        let task = Arc::new(Task {
            slot: Slot::new_inline(None),
            f: std::cell::UnsafeCell::new(Some(f)),
            source,
        });
        let job = crate::job::SharedJob::new(Arc::clone(&task) as Arc<dyn crate::job::SharedRun>);
        (job, AsyncResult::from_task(task))
    }

    fn take_f(&self) -> Option<F> {
        // SAFETY: only the queue's single reference calls this, once.
        unsafe { (*self.f.get()).take() }
    }
}

impl<F, R> crate::job::SharedRun for Task<F, R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    fn run_shared(&self) {
        let Some(f) = self.take_f() else { return };
        if !self.slot.claim() {
            return; // cancelled by its handle; `f` drops here
        }
        // SAFETY: the guard is a local of this call and drops before `self`.
        let token = unsafe { crate::cancel::enter(&self.slot, true) };
        let outcome = run_task(f, self.source);
        drop(token);
        self.slot.complete(outcome);
    }

    fn cancel_shared(&self) {
        drop(self.take_f());
        if self.slot.claim() {
            self.slot
                .complete(Err(Failure::new(TaskError::Cancelled, None)));
        }
    }
}

/// Where a handle finds its slot: in a task's allocation, or on its own.
pub(crate) trait HasSlot<R>: Send + Sync {
    fn slot(&self) -> &Slot<R>;
}

impl<F, R> HasSlot<R> for Task<F, R>
where
    F: Send,
    R: Send,
{
    fn slot(&self) -> &Slot<R> {
        &self.slot
    }
}

enum SlotRef<R> {
    Own(Arc<Slot<R>>),
    InTask(Arc<dyn HasSlot<R>>),
}

/// Runs a task's closure and turns a panic into a failure.
fn run_task<R>(f: impl FnOnce() -> R, source: PanicSource) -> Outcome<R> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        if payload.is::<panic::CancelledMarker>() {
            return Failure::new(TaskError::Cancelled, None);
        }
        if source == PanicSource::Task {
            // Jobs run only on their pool's workers.
            if let Some(registry) = registry::current_worker() {
                registry.task_panicked(&payload);
            }
        }
        Failure::new(
            TaskError::Panicked(panic::message(payload.as_ref())),
            Some(payload),
        )
    })
}

/// The handle to a task's result, returned by
/// [`ThreadPool::apply_async`](crate::ThreadPool::apply_async) and the other
/// `_async` methods. Like Python's `AsyncResult`, and also a [`Future`].
///
/// Dropping the handle does not cancel the task.
///
/// # Examples
///
/// ```
/// use parpool::ThreadPool;
/// use std::time::Duration;
///
/// let pool = ThreadPool::new();
/// let mut handle = pool.apply_async(|| 6 * 7);
/// handle.wait();
/// assert!(handle.ready());
/// assert_eq!(handle.successful(), Some(true));
/// assert_eq!(handle.get_timeout(Duration::from_secs(1)), Ok(42));
/// ```
#[must_use = "an AsyncResult does nothing unless you get() or await it; dropping it does not cancel the task"]
pub struct AsyncResult<R> {
    slot: SlotRef<R>,
    /// The outcome was taken: the task is done, so `Drop` has nothing to do.
    spent: bool,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.slot().is_done())
            .finish_non_exhaustive()
    }
}

impl<R> AsyncResult<R> {
    pub(crate) fn new(slot: Arc<Slot<R>>) -> Self {
        AsyncResult {
            slot: SlotRef::Own(slot),
            spent: false,
        }
    }

    fn from_task<F>(task: Arc<Task<F, R>>) -> Self
    where
        F: Send + 'static,
        R: Send + 'static,
    {
        AsyncResult {
            slot: SlotRef::InTask(task),
            spent: false,
        }
    }

    #[inline]
    fn slot(&self) -> &Slot<R> {
        match &self.slot {
            SlotRef::Own(slot) => slot,
            SlotRef::InTask(task) => task.slot(),
        }
    }

    /// Waits for the task and returns its result.
    ///
    /// # Errors
    ///
    /// [`TaskError::Panicked`] if the task panicked, [`TaskError::Cancelled`]
    /// if it was cancelled or its pool terminated before it ran.
    ///
    /// # Panics
    ///
    /// If [`get_timeout`](Self::get_timeout) already returned the result.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// assert_eq!(pool.apply_async(|| "done").get(), Ok("done"));
    /// ```
    pub fn get(self) -> Result<R, TaskError> {
        self.get_outcome().map_err(|f| f.error)
    }

    pub(crate) fn get_outcome(mut self) -> Outcome<R> {
        self.wait();
        self.take()
    }

    /// Waits at most `timeout` for the result. On [`TaskError::Timeout`] the
    /// handle stays usable; once the result has been returned, it is spent.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), plus [`TaskError::Timeout`].
    ///
    /// # Panics
    ///
    /// If the result was already returned by an earlier call.
    ///
    /// ```
    /// use parpool::TaskError;
    /// use std::time::Duration;
    ///
    /// let pool = parpool::ThreadPool::new();
    /// let mut slow = pool.apply_async(|| std::thread::sleep(Duration::from_millis(200)));
    /// assert_eq!(slow.get_timeout(Duration::from_millis(1)), Err(TaskError::Timeout));
    /// assert_eq!(slow.get_timeout(Duration::from_secs(30)), Ok(()));
    /// ```
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R, TaskError> {
        if !self.wait_timeout(timeout) {
            return Err(TaskError::Timeout);
        }
        self.take().map_err(|f| f.error)
    }

    fn take(&mut self) -> Outcome<R> {
        let mut inner = lock(&self.slot().inner);
        assert!(
            !inner.taken,
            "parpool: this AsyncResult's result was already returned by get_timeout"
        );
        inner.taken = true;
        inner.observed = true;
        let outcome = inner
            .outcome
            .take()
            .expect("parpool: a done slot holds an outcome");
        drop(inner);
        self.spent = true;
        outcome
    }

    /// Blocks until the task has finished (its callbacks included).
    ///
    /// On one of the pool's own workers it runs queued work while it waits,
    /// so waiting inside a task cannot deadlock the pool.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let handle = pool.apply_async(|| 1);
    /// handle.wait();
    /// assert!(handle.ready());
    /// ```
    pub fn wait(&self) {
        let slot = self.slot();
        registry::wait_here(|| slot.is_done(), |timeout| slot.block(timeout));
    }

    /// Waits at most `timeout`; returns whether the task has finished.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = parpool::ThreadPool::new();
    /// let handle = pool.apply_async(|| std::thread::sleep(Duration::from_millis(100)));
    /// assert!(!handle.wait_timeout(Duration::from_millis(1)));
    /// assert!(handle.wait_timeout(Duration::from_secs(30)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let slot = self.slot();
        match registry::current_worker() {
            // Help with queued work, but never past the deadline.
            Some(registry) => registry.wait_until(
                || slot.is_done() || Instant::now() >= deadline,
                |t| slot.block(t),
            ),
            None => slot.block(Some(timeout)),
        }
        slot.is_done()
    }

    /// Whether the task has finished (Python's `ready()`).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let handle = pool.apply_async(|| 1);
    /// handle.wait();
    /// assert!(handle.ready());
    /// ```
    pub fn ready(&self) -> bool {
        self.slot().is_done()
    }

    /// `None` until the task has finished, then whether it returned normally
    /// (Python's `successful()`, which raises instead of returning `None`).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let bad = pool.apply_async(|| panic!("no"));
    /// bad.wait();
    /// assert_eq!(bad.successful(), Some(false));
    /// ```
    pub fn successful(&self) -> Option<bool> {
        if !self.slot().is_done() {
            return None;
        }
        let mut inner = lock(&self.slot().inner);
        let ok = match &inner.outcome {
            Some(outcome) => outcome.is_ok(),
            None => !inner.taken, // taken: the caller already saw it
        };
        if !ok {
            inner.observed = true;
        }
        Some(ok)
    }

    /// Cancels the task if it has not started (like
    /// `concurrent.futures.Future.cancel`): returns `true`, and
    /// [`get`](Self::get) then returns [`TaskError::Cancelled`]. A task that
    /// already started keeps running and `false` is returned, but
    /// [`cancelled`](crate::cancelled) turns true inside it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = parpool::ThreadPool::with_workers(1);
    /// let blocker = pool.apply_async(|| std::thread::sleep(Duration::from_millis(100)));
    /// let queued = pool.apply_async(|| 1);
    /// assert!(queued.cancel());
    /// assert_eq!(queued.get(), Err(parpool::TaskError::Cancelled));
    /// blocker.get().unwrap();
    /// ```
    pub fn cancel(&self) -> bool {
        self.slot().unwanted.store(true, Ordering::Relaxed);
        if self.slot().claim() {
            self.slot()
                .complete(Err(Failure::new(TaskError::Cancelled, None)));
            true
        } else {
            false
        }
    }

    /// Attaches Python's `callback`: `f` runs with the result once the task
    /// succeeds, before any `wait` returns. It runs on the worker that
    /// finished the task, or right here if the task has already finished. A
    /// panicking callback is contained: the result and the pool are unharmed.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = parpool::ThreadPool::new();
    /// let (tx, rx) = mpsc::channel();
    /// let handle = pool.apply_async(|| 21 * 2).on_success(move |v| tx.send(*v).unwrap());
    /// handle.wait();
    /// assert_eq!(rx.try_recv(), Ok(42));
    /// ```
    pub fn on_success(self, f: impl FnOnce(&R) + Send + 'static) -> Self {
        let mut inner = lock(&self.slot().inner);
        if self.slot().is_done() {
            if let Some(Ok(value)) = &inner.outcome {
                run_callback(|| f(value));
            }
        } else {
            inner.callbacks().on_success.push(Box::new(f));
        }
        drop(inner);
        self
    }

    /// Attaches Python's `error_callback`: `f` runs with the error if the task
    /// panics or is cancelled, before any `wait` returns. A panicking callback
    /// is contained.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = parpool::ThreadPool::new();
    /// let (tx, rx) = mpsc::channel();
    /// let handle = pool
    ///     .apply_async(|| -> u8 { panic!("bad input") })
    ///     .on_error(move |e| tx.send(e.to_string()).unwrap());
    /// handle.wait();
    /// assert!(rx.try_recv().unwrap().contains("bad input"));
    /// ```
    pub fn on_error(self, f: impl FnOnce(&TaskError) + Send + 'static) -> Self {
        let mut inner = lock(&self.slot().inner);
        if self.slot().is_done() {
            if let Some(Err(failure)) = &inner.outcome {
                run_callback(|| f(&failure.error));
            }
        } else {
            inner.callbacks().on_error.push(Box::new(f));
        }
        drop(inner);
        self
    }

    /// Registers a waker called when the task finishes.
    pub(crate) fn register_waker(&self, waker: &Waker) -> bool {
        let mut inner = lock(&self.slot().inner);
        if self.slot().is_done() {
            return true;
        }
        match &inner.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => inner.waker = Some(waker.clone()),
        }
        false
    }
}

impl<R> Inner<R> {
    fn callbacks(&mut self) -> &mut Callbacks<R> {
        self.callbacks.get_or_insert_with(|| {
            Box::new(Callbacks {
                on_success: Vec::new(),
                on_error: Vec::new(),
            })
        })
    }
}

impl<R> Slot<R> {
    /// Blocks until done or the timeout passes.
    fn block(&self, timeout: Option<Duration>) {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut inner = lock(&self.inner);
        inner.waiters += 1;
        while !self.is_done() {
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break,
                },
            };
            inner = crate::sync::wait(&self.cond, inner, left);
        }
        inner.waiters -= 1;
    }
}

impl<R> Drop for AsyncResult<R> {
    fn drop(&mut self) {
        if self.spent {
            return;
        }
        let mut inner = lock(&self.slot().inner);
        inner.handle_alive = false;
        if self.slot().is_done() {
            self.slot().hand_unobserved_panic_to_scope(&mut inner);
        }
    }
}

impl<R> Future for AsyncResult<R> {
    type Output = Result<R, TaskError>;

    /// Resolves to what [`get`](AsyncResult::get) returns, without blocking
    /// the executor's thread.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.register_waker(cx.waker()) {
            Poll::Ready(self.take().map_err(|f| f.error))
        } else {
            Poll::Pending
        }
    }
}

impl<R> Unpin for AsyncResult<R> {}
