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

use crate::async_result::{ApplyJob, AsyncResult, PanicSource, Slot};
use crate::imap::{self, Imap, ImapUnordered};
use crate::inputs::Inputs;
use crate::job::{self, Job};
use crate::map;
use crate::panic::Payload;
use crate::registry::Registry;
use crate::sync::lock;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub(crate) struct ScopeState {
    pending: Mutex<usize>,
    cond: Condvar,
    panic: Mutex<Option<Payload>>,
}

impl ScopeState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ScopeState {
            pending: Mutex::new(0),
            cond: Condvar::new(),
            panic: Mutex::new(None),
        })
    }

    /// Keeps the first panic that no handle observed.
    pub(crate) fn report_panic(&self, payload: Payload) {
        let mut slot = lock(&self.panic);
        if slot.is_none() {
            *slot = Some(payload);
        }
    }

    fn add(&self) {
        *lock(&self.pending) += 1;
    }

    fn done(&self) {
        let mut pending = lock(&self.pending);
        *pending -= 1;
        if *pending == 0 {
            self.cond.notify_all();
            crate::sleep::handed_off();
        }
    }

    fn is_idle(&self) -> bool {
        *lock(&self.pending) == 0
    }

    fn block(&self, timeout: Option<Duration>) {
        let pending = lock(&self.pending);
        if *pending == 0 {
            return;
        }
        drop(crate::sync::wait(&self.cond, pending, timeout));
    }

    pub(crate) fn wait(&self, registry: &Registry) {
        registry.wait_until(|| self.is_idle(), |t| self.block(t));
    }

    /// Queues a job that may borrow for `'scope`.
    pub(crate) fn submit<'scope>(
        self: &Arc<Self>,
        registry: &Registry,
        job: Box<dyn Job + 'scope>,
    ) {
        self.add();
        let wrapped: Box<dyn Job + 'scope> = Box::new(ScopedJob {
            inner: Some(job),
            scope: Arc::clone(self),
        });
        // SAFETY: the scope waits until `pending` is zero before 'scope ends,
        // and `ScopedJob` decrements it only after dropping `inner`, the only
        // part that borrows. Run or dropped unrun, the job decrements once.
        let job = unsafe { job::erase(wrapped) };
        registry.submit_unchecked(job);
    }
}

/// A job of a scope: decrements the scope's count once it is fully dropped.
struct ScopedJob<'scope> {
    inner: Option<Box<dyn Job + 'scope>>,
    scope: Arc<ScopeState>,
}

impl Job for ScopedJob<'_> {
    fn run(mut self: Box<Self>) {
        if let Some(job) = self.inner.take() {
            job.run();
        }
    }

    fn items(&self) -> usize {
        self.inner.as_ref().map_or(0, |j| j.items())
    }
}

impl Drop for ScopedJob<'_> {
    fn drop(&mut self) {
        drop(self.inner.take());
        self.scope.done();
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
    registry: Arc<Registry>,
    state: Arc<ScopeState>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &*lock(&self.state.pending))
            .finish_non_exhaustive()
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Like [`ThreadPool::apply_async`](crate::ThreadPool::apply_async), for
    /// a closure that borrows.
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
        self.spawn(f, PanicSource::Task)
    }

    fn spawn<F, R>(&'scope self, f: F, source: PanicSource) -> AsyncResult<R>
    where
        F: FnOnce() -> R + Send + 'scope,
        R: Send + 'scope,
    {
        self.registry.check_accepting();
        let slot = Slot::new(Some(Arc::clone(&self.state)));
        let job = ApplyJob::new(f, Arc::clone(&slot), source);
        self.state.submit(&self.registry, Box::new(job));
        AsyncResult::new(slot)
    }

    /// Like [`ThreadPool::map_async`](crate::ThreadPool::map_async), for a
    /// function and inputs that borrow.
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
        let registry = Arc::clone(&self.registry);
        self.spawn(
            move || map::map_async_body(&registry, inputs.into_source(), None, &f),
            PanicSource::Relayed,
        )
    }

    /// Like [`ThreadPool::imap`](crate::ThreadPool::imap), for a function
    /// and inputs that borrow.
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
        let state = Arc::clone(&self.state);
        let registry = Arc::clone(&self.registry);
        let submit = Box::new(move |job: Box<dyn Job + 'scope>| state.submit(&registry, job));
        imap::build(
            Arc::clone(&self.registry),
            Some(Arc::clone(&self.state)),
            submit,
            f,
            inputs,
            ordered,
        )
    }
}

/// Runs `body` with a new scope, then waits for every job of the scope.
pub(crate) fn run<'env, F, T>(registry: &Arc<Registry>, body: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        registry: Arc::clone(registry),
        state: ScopeState::new(),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&scope)));
    scope.state.wait(registry);
    match result {
        Err(payload) => std::panic::resume_unwind(payload),
        Ok(value) => match lock(&scope.state.panic).take() {
            Some(payload) => std::panic::resume_unwind(payload),
            None => value,
        },
    }
}
