//! `scope`: pool work that borrows from the caller's stack.
//!
//! A scope counts the jobs started in it. `ThreadPool::scope` returns only
//! after the count is back to zero, even when the body or a task panics, so
//! every borrow a task holds ends before the borrowed data can. The count is
//! decremented by a job's wrapper after the job has been dropped in full:
//! its closure, its inputs, and any result or panic payload nobody will read
//! (the rayon and std soundness bugs were results dropped after the signal).
//!
//! Only the scope waits; handles do not. So `mem::forget` on a handle or an
//! iterator leaks at worst, and can never let a task outlive its borrows.
//!
//! A task's panic surfaces where its result is consumed (`get`, the
//! iterator). A panic nobody consumed re-raises when `scope` returns; the
//! body's own panic takes precedence.

use crate::async_result::{AsyncResult, PanicSource};
use crate::imap::{self, Imap, ImapUnordered};
use crate::inputs::Inputs;
use crate::job::{self, Job, JobBox};
use crate::map;
use crate::panic::{self, Payload};
use crate::park::{self, Deadline, Waitable};
use crate::registry::Registry;
use crate::submit::Queue;
use crate::sync::lock;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub(crate) struct ScopeState {
    /// Jobs of the scope not yet run or dropped in full. An atomic, so
    /// that a job's start and end cost no lock; `lock` and `cond` are only
    /// for the scope's waiter.
    pending: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
    panic: Mutex<Option<Payload>>,
}

impl ScopeState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ScopeState {
            pending: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cond: Condvar::new(),
            panic: Mutex::new(None),
        })
    }

    /// Keeps the first panic that no handle observed.
    pub(crate) fn report_panic(&self, payload: Payload) {
        let mut slot = lock(&self.panic);
        if slot.is_none() {
            *slot = Some(payload);
            return;
        }
        drop(slot);
        // Only the first is re-raised. A later payload is user data whose
        // `Drop` may panic: discarded contained, so it never unwinds into a
        // submitter (`run_refused`) or out of a slot's completion.
        drop(payload);
    }

    pub(crate) fn add(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self) {
        // Subtle: the waiter checks the count under `lock` and waits with it
        // released atomically; the last job takes `lock` after its
        // decrement, so it cannot notify between the waiter's check and its
        // wait. The read-modify-writes on the count form one release
        // sequence: the waiter that loads 0 sees every job's effects.
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            drop(lock(&self.lock));
            // Notified after the mutex is released, so the woken waiter does
            // not block on it. `self` stays alive: the caller holds the
            // scope's `Arc`, or the task whose slot holds it.
            self.cond.notify_all();
            crate::sleep::handed_off();
        }
    }

    /// Waits until every job of the scope has been run or dropped.
    pub(crate) fn wait(&self) {
        // Untimed, and never gives up (it guards the borrows of the jobs
        // it counts): it returns done, or panics.
        let waited = park::wait(self, Deadline::NEVER);
        debug_assert_eq!(waited, park::Waited::Done);
    }

    /// Counts a job that may borrow for `'scope` and erases its lifetime
    /// for the queue (called by the one submission path, `submit.rs`).
    pub(crate) fn wrap<'scope>(self: &Arc<Self>, job: Box<dyn Job + 'scope>) -> JobBox {
        self.add();
        let wrapped: Box<dyn Job + 'scope> = Box::new(ScopedJob {
            inner: Some(job),
            scope: Arc::clone(self),
        });
        // SAFETY: the scope waits until `pending` is zero before 'scope ends,
        // and `ScopedJob` decrements it only after dropping `inner`, the only
        // part that borrows. Run or dropped unrun, the job decrements once.
        unsafe { job::erase(wrapped) }
    }
}

impl Waitable for ScopeState {
    fn done(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }

    fn block(&self, timeout: Option<Duration>) {
        let guard = lock(&self.lock);
        if self.pending.load(Ordering::SeqCst) == 0 {
            return;
        }
        drop(crate::sync::wait(&self.cond, guard, timeout));
    }
}

/// A task's count on its scope, taken over by the task's claimer (see
/// `async_result::Task`); dropping it ends the count. It borrows the scope
/// from the task's slot, which holds the scope's `Arc` for as long as the
/// claimer holds the task: no reference count is taken per task on the
/// `Arc` that every task of the scope shares.
pub(crate) struct ScopeHold<'a>(&'a ScopeState);

impl<'a> ScopeHold<'a> {
    pub(crate) fn adopt(scope: &'a ScopeState) -> Self {
        ScopeHold(scope)
    }
}

impl Drop for ScopeHold<'_> {
    fn drop(&mut self) {
        self.0.done();
    }
}

/// A job of a scope: decrements the scope's count once it is fully dropped.
struct ScopedJob<'scope> {
    inner: Option<Box<dyn Job + 'scope>>,
    scope: Arc<ScopeState>,
}

impl Job for ScopedJob<'_> {
    fn run(mut self: Box<Self>, registry: &Registry) {
        if let Some(job) = self.inner.take() {
            job.run(registry);
        }
    }

    fn items(&self) -> usize {
        self.inner.as_ref().map_or(0, |j| j.items())
    }
}

impl Drop for ScopedJob<'_> {
    fn drop(&mut self) {
        // Subtle: the count drops only after `inner` is gone, even if its
        // `Drop` panics; the panic then goes on to the job's runner.
        let payload = panic::drop_contained(self.inner.take());
        self.scope.done();
        if let Some(p) = payload {
            panic::reraise_unless_unwinding(p);
        }
    }
}

/// Work that may borrow from the enclosing stack; made by
/// [`ThreadPool::scope`](crate::ThreadPool::scope).
///
/// `'env` is the lifetime of the borrowed data, `'scope` the lifetime of the
/// scope itself, as in [`std::thread::scope`].
///
/// # Examples
///
/// ```
/// let pool = parpool::ThreadPool::new();
/// let text = String::from("borrowed, not cloned");
/// let words: Vec<&str> = text.split(' ').collect();
/// let total = pool.scope(|s| {
///     let lengths = s.imap(|w: &&str| w.len(), &words);
///     lengths.sum::<usize>()
/// });
/// assert_eq!(total, 18);
/// ```
///
/// Handles cannot escape the scope:
///
/// ```compile_fail
/// let pool = parpool::ThreadPool::new();
/// let data = vec![1, 2, 3];
/// let it = pool.scope(|s| s.imap(|x: &i32| x + 1, &data));
/// ```
///
/// Borrowed data must outlive the scope:
///
/// ```compile_fail
/// let pool = parpool::ThreadPool::new();
/// pool.scope(|s| {
///     let local = vec![1, 2, 3];
///     let _ = s.apply_async(|| local.len());
/// });
/// ```
pub struct Scope<'scope, 'env: 'scope> {
    /// The scope's queue; its scope state is this scope's.
    queue: Queue<'scope>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.state().pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<'scope> Scope<'scope, '_> {
    fn state(&self) -> &Arc<ScopeState> {
        self.queue
            .scope_state()
            .expect("a scope's queue belongs to the scope")
    }

    /// Like [`ThreadPool::apply_async`](crate::ThreadPool::apply_async), for
    /// a closure that borrows.
    ///
    /// On a pool that no longer runs, the handle reports
    /// [`TaskError::NotRunning`](crate::TaskError::NotRunning).
    ///
    /// # Panics
    ///
    /// Never in this call. A panic in `f` is reported by the handle; if the
    /// handle is dropped without observing it, the scope re-raises it when
    /// it ends.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let data = vec![1, 2, 3];
    /// let sum = pool.scope(|s| s.apply_async(|| data.iter().sum::<i32>()).get());
    /// assert_eq!(sum, Ok(6));
    /// ```
    pub fn apply_async<F, R>(&'scope self, f: F) -> AsyncResult<R>
    where
        F: FnOnce() -> R + Send + 'scope,
        R: Send + 'scope,
    {
        self.queue.task_or_refused(f, PanicSource::Task)
    }

    /// Runs `f` on a worker with no handle, like
    /// [`ThreadPool::spawn`](crate::ThreadPool::spawn) (and rayon's
    /// `Scope::spawn`), for a closure that borrows. The scope waits for it.
    ///
    /// On a pool that no longer runs, `f` runs on the calling thread before
    /// `spawn` returns (see [`ThreadPool::spawn`](crate::ThreadPool::spawn)
    /// for why, and for jobs that wait for one another). A job still queued
    /// when the pool is [terminated](crate::ThreadPool::terminate) is
    /// dropped unrun, as `terminate` promises, and nothing reports it: a
    /// scope whose body must know that every job ran uses
    /// [`apply_async`](Self::apply_async), whose handle then says
    /// [`TaskError::Cancelled`](crate::TaskError::Cancelled).
    ///
    /// # Panics
    ///
    /// Never in this call. A panic in `f` is kept and re-raised when the
    /// scope ends ([`ThreadPool::scope`](crate::ThreadPool::scope) re-raises
    /// the first one, after every job of the scope has finished); it also
    /// meets the pool's [`PanicPolicy`](crate::PanicPolicy).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    ///
    /// let pool = parpool::ThreadPool::new();
    /// let mut chunks = vec![0u32; 1000];
    /// let visited = AtomicUsize::new(0);
    /// pool.scope(|s| {
    ///     for (i, chunk) in chunks.chunks_mut(100).enumerate() {
    ///         let visited = &visited;
    ///         s.spawn(move || {
    ///             chunk.fill(i as u32);
    ///             visited.fetch_add(1, Ordering::Relaxed);
    ///         });
    ///     }
    /// });
    /// assert_eq!(visited.into_inner(), 10);
    /// assert_eq!(chunks[999], 9);
    /// ```
    ///
    /// ```should_panic
    /// let pool = parpool::ThreadPool::new();
    /// pool.scope(|s| s.spawn(|| panic!("re-raised when the scope ends")));
    /// ```
    pub fn spawn<F>(&'scope self, f: F)
    where
        F: FnOnce() + Send + 'scope,
    {
        self.queue.detached(f);
    }

    /// `apply_async`, or `f` back if the pool refuses work (for `apply`).
    pub(crate) fn try_apply_async<F, R>(&'scope self, f: F) -> Result<AsyncResult<R>, F>
    where
        F: FnOnce() -> R + Send + 'scope,
        R: Send + 'scope,
    {
        self.queue.task(f, PanicSource::Task)
    }

    /// Like [`ThreadPool::map_async`](crate::ThreadPool::map_async), for a
    /// function and inputs that borrow.
    ///
    /// On a pool that no longer runs, the handle reports
    /// [`TaskError::NotRunning`](crate::TaskError::NotRunning). Inputs of a
    /// type [`Inputs`] does not cover go through
    /// [`parpool::iter`](crate::iter).
    ///
    /// # Panics
    ///
    /// Never in this call. A panic in `f` is reported by the handle, as in
    /// [`apply_async`](Self::apply_async).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let data = vec![1, 2, 3];
    /// let factor = 10;
    /// let out = pool.scope(|s| s.map_async(|x| x * factor, &data).get());
    /// assert_eq!(out, Ok(vec![10, 20, 30]));
    /// ```
    pub fn map_async<F, I, R>(&'scope self, f: F, inputs: I) -> AsyncResult<Vec<R>>
    where
        F: Fn(I::Item) -> R + Send + Sync + 'scope,
        I: Inputs + Send + 'scope,
        R: Send + 'scope,
    {
        let registry = Arc::clone(self.queue.registry());
        self.queue.task_or_refused(
            {
                let task = map::MapAsync::new(inputs, f);
                move || task.run(&registry, None)
            },
            PanicSource::Relayed,
        )
    }

    /// Like [`ThreadPool::imap`](crate::ThreadPool::imap), for a function
    /// and inputs that borrow. As there, an input that waits for results of
    /// earlier items streams (an async stream of it needs
    /// [`chunksize(1)`](Imap::chunksize)).
    ///
    /// # Panics
    ///
    /// As [`ThreadPool::imap`](crate::ThreadPool::imap): not in this call;
    /// the iterator re-raises a task's or the input's panic at its position.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let names = vec![String::from("ada"), String::from("grace")];
    /// let upper: Vec<String> = pool.scope(|s| s.imap(|n: &String| n.to_uppercase(), &names).collect());
    /// assert_eq!(upper, ["ADA", "GRACE"]);
    /// ```
    pub fn imap<F, I, T, R>(&'scope self, f: F, inputs: I) -> Imap<'scope, R>
    where
        F: Fn(T) -> R + Send + Sync + 'scope,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'scope,
        T: Send + 'scope,
        R: Send + 'scope,
    {
        self.build_imap(f, inputs, true).ordered()
    }

    /// Like [`ThreadPool::imap_unordered`](crate::ThreadPool::imap_unordered),
    /// for a function and inputs that borrow.
    ///
    /// # Panics
    ///
    /// As [`ThreadPool::imap_unordered`](crate::ThreadPool::imap_unordered).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let data = vec![3, 1, 2];
    /// let mut out: Vec<i32> = pool.scope(|s| s.imap_unordered(|x: &i32| x * 2, &data).collect());
    /// out.sort();
    /// assert_eq!(out, [2, 4, 6]);
    /// ```
    pub fn imap_unordered<F, I, T, R>(&'scope self, f: F, inputs: I) -> ImapUnordered<'scope, R>
    where
        F: Fn(T) -> R + Send + Sync + 'scope,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'scope,
        T: Send + 'scope,
        R: Send + 'scope,
    {
        self.build_imap(f, inputs, false).unordered()
    }

    fn build_imap<F, I, T, R>(
        &'scope self,
        f: F,
        inputs: I,
        ordered: bool,
    ) -> imap::CoreHandle<'scope, R>
    where
        F: Fn(T) -> R + Send + Sync + 'scope,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'scope,
        T: Send + 'scope,
        R: Send + 'scope,
    {
        let queue = self.queue.clone();
        // Borrowing inputs are not `'static`: their type cannot be asked
        // whether they never wait (`imap::never_waits`), so they are read
        // with the per-item publication.
        imap::build(queue, f, inputs, ordered, false)
    }
}

/// Runs `body` with a new scope, then waits for every job of the scope.
pub(crate) fn run<'env, F, T>(registry: &Arc<Registry>, body: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        queue: Queue::scope(Arc::clone(registry), ScopeState::new()),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let result = panic::contain(|| body(&scope));
    scope.state().wait();
    let kept = lock(&scope.state().panic).take();
    match result {
        Err(payload) => {
            // Subtle: the body's panic wins; a kept task payload is user
            // data, and dropped by the unwinding (with the scope's state) a
            // panicking `Drop` would abort the process.
            panic::drop_discarding(kept);
            payload.resume()
        }
        Ok(value) => match kept {
            Some(payload) => {
                // The body's value is discarded: dropped before unwinding,
                // for the same reason.
                panic::drop_discarding(value);
                payload.resume()
            }
            None => value,
        },
    }
}
