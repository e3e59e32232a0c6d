//! Waiting on many handles: `as_completed` and `wait`, as in `concurrent.futures`.
//!
//! Each pending handle gets a waker that pushes the handle's index onto one
//! shared ready-list and signals it. So finding the next finished handle
//! costs O(1), not a scan, and no handle is reported twice or missed:
//! a handle already finished at registration is listed at once, and a slot
//! calls its waker exactly once, when it completes.

use crate::async_result::{self, AsyncResult};
use crate::error::TaskError;
use crate::park::{self, Deadline, Waitable};
use crate::registry;
use crate::sync::lock;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Wake, Waker};
use std::time::Duration;

struct Signal {
    ready: Mutex<VecDeque<usize>>,
    cond: Condvar,
}

impl Waitable for Signal {
    fn done(&self) -> bool {
        !lock(&self.ready).is_empty()
    }

    fn block(&self, timeout: Option<Duration>) {
        let ready = lock(&self.ready);
        if ready.is_empty() {
            drop(crate::sync::wait(&self.cond, ready, timeout));
        }
    }

    fn gives_up_while_unwinding(&self) -> bool {
        true
    }
}

struct IndexWaker {
    index: usize,
    signal: Arc<Signal>,
}

impl Wake for IndexWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.signal.ready).push_back(self.index);
        self.signal.cond.notify_all();
    }
}

/// Yields handles as their tasks finish; made by [`as_completed`].
///
/// ```
/// let pool = parpool::ThreadPool::new();
/// let handles = vec![pool.apply_async(|| 1), pool.apply_async(|| 2)];
/// let mut sum = 0;
/// for done in parpool::as_completed(handles) {
///     assert!(done.ready());
///     sum += done.get().unwrap();
/// }
/// assert_eq!(sum, 3);
/// ```
#[must_use = "as_completed does nothing unless iterated"]
pub struct AsCompleted<R> {
    handles: Vec<Option<AsyncResult<R>>>,
    signal: Arc<Signal>,
    /// Handles not yielded yet; 0 once iteration gave up (`next` then
    /// returned `None` for good, and the handles left are only dropped).
    remaining: usize,
    /// The tasks the waiting thread was finishing itself when it last had
    /// to block ([`async_result::own_work_marks`]), and the indices of the
    /// handles among them; worked out again only when those change.
    own: Option<(Vec<usize>, Vec<usize>)>,
}

impl<R> std::fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// Yields the handles in the order their tasks finish (Python's
/// `concurrent.futures.as_completed`). Handles already finished come first,
/// in the order given.
///
/// # Panics
///
/// Iterating panics, rather than wait forever, once every handle left is
/// of a task the iterating thread is itself finishing (a callback of it,
/// or the task itself, as [`AsyncResult::wait`] explains);
/// [`next_timeout`](AsCompleted::next_timeout) times out at once then.
/// Iterating on one of the pool's workers also panics where it could
/// never make progress (no spare thread can start and the waits are
/// nested too deep for the worker to run the queue itself; see
/// [`AsyncResult::wait`]). On a thread already unwinding from another
/// panic (a `Drop` iterating), where a second panic would abort the
/// process, iterating gives up instead: `next` returns `None`, and the
/// iterator is then over (every later call returns `None`, and its
/// `size_hint` is `(0, Some(0))`; the handles left are dropped with it,
/// and their tasks still run). [`wait()`] leaves such handles pending.
///
/// ```
/// use std::time::Duration;
/// let pool = parpool::ThreadPool::with_workers(3);
/// let handles: Vec<_> = [60u64, 10, 30]
///     .into_iter()
///     .map(|ms| pool.apply_async(move || { std::thread::sleep(Duration::from_millis(ms)); ms }))
///     .collect();
/// let order: Vec<u64> = parpool::as_completed(handles).map(|h| h.get().unwrap()).collect();
/// assert_eq!(order, [10, 30, 60]);
/// ```
pub fn as_completed<R>(handles: impl IntoIterator<Item = AsyncResult<R>>) -> AsCompleted<R> {
    let signal = Arc::new(Signal {
        ready: Mutex::new(VecDeque::new()),
        cond: Condvar::new(),
    });
    let handles: Vec<_> = handles.into_iter().map(Some).collect();
    for (index, handle) in handles.iter().enumerate() {
        let handle = handle.as_ref().expect("just wrapped");
        let waker = Waker::from(Arc::new(IndexWaker {
            index,
            signal: Arc::clone(&signal),
        }));
        if handle.register_waker(&waker) {
            lock(&signal.ready).push_back(index);
        }
    }
    AsCompleted {
        remaining: handles.len(),
        handles,
        signal,
        own: None,
    }
}

impl<R> AsCompleted<R> {
    /// Like `next()`, but waits at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TaskError::Timeout`] if no further handle finished in time; the
    /// iterator stays usable.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = parpool::ThreadPool::new();
    /// // A task that runs until it is released (at most 10 s).
    /// let (release, released) = std::sync::mpsc::channel::<()>();
    /// let slow = pool.apply_async(move || {
    ///     let _ = released.recv_timeout(Duration::from_secs(10));
    /// });
    /// let mut it = parpool::as_completed(vec![slow]);
    /// assert!(it.next_timeout(Duration::from_millis(1)).is_err());
    /// release.send(()).unwrap();
    /// assert!(it.next_timeout(Duration::from_secs(30)).unwrap().is_some());
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<AsyncResult<R>>, TaskError> {
        self.next_until(Deadline::after(timeout))
    }

    fn next_until(&mut self, deadline: Deadline) -> Result<Option<AsyncResult<R>>, TaskError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        loop {
            {
                let mut ready = lock(&self.signal.ready);
                while let Some(index) = ready.pop_front() {
                    if let Some(handle) = self.handles[index].take() {
                        self.remaining -= 1;
                        return Ok(Some(handle));
                    }
                }
            }
            if self.only_own_work_left() {
                if deadline.is_never() {
                    // Returns only on a thread already unwinding: the
                    // untimed wait then gives up as a timed one does.
                    let first = self.handles.iter().flatten().next();
                    first.expect("one is left").refuse_own_work();
                    return Err(self.give_up());
                }
                return Err(TaskError::Timeout);
            }
            let draining = registry::draining_here();
            if !draining.is_empty() {
                let mut keys = self.handles.iter().flatten().map(|h| h.pool_key());
                if let Some(key) = keys.find(|k| draining.contains(k)) {
                    let signal = &*self.signal;
                    if registry::help_drain(key, || signal.done()) == registry::Drained::Stuck
                        && deadline.is_never()
                    {
                        // Returns only on a thread already unwinding.
                        registry::stuck_in_drain();
                        return Err(self.give_up());
                    }
                }
            }
            match park::wait(&*self.signal, deadline) {
                park::Waited::Done => {}
                park::Waited::TimedOut => return Err(TaskError::Timeout),
                park::Waited::GaveUp => return Err(self.give_up()),
            }
        }
    }

    /// An untimed wait that could never end gave up (on a thread already
    /// unwinding, where refusing it with a panic would abort): iteration
    /// ends here for good, so `next` does not wait again for what cannot
    /// come, and `size_hint` says so. What [`wait()`] gets: the handles
    /// left stay in the iterator, for [`Self::into_pending`].
    fn give_up(&mut self) -> TaskError {
        self.remaining = 0;
        TaskError::Timeout
    }

    /// Whether every handle still pending is of a task this thread is
    /// itself finishing (running it, or its callbacks, at any depth): none
    /// can finish while it waits, so an untimed wait would wait forever (it
    /// panics, as `AsyncResult::wait` does) and a timed one times out.
    fn only_own_work_left(&mut self) -> bool {
        let marks = async_result::own_work_marks();
        if marks.is_empty() {
            return false;
        }
        if !matches!(&self.own, Some((seen, _)) if *seen == marks) {
            let indices = (self.handles.iter().enumerate())
                .filter(|(_, h)| h.as_ref().is_some_and(|h| marks.contains(&h.slot_addr())))
                .map(|(i, _)| i)
                .collect();
            self.own = Some((marks, indices));
        }
        let (_, indices) = self.own.as_ref().expect("just set");
        let pending_own = (indices.iter())
            .filter(|&&i| self.handles[i].is_some())
            .count();
        pending_own > 0 && pending_own == self.remaining
    }

    /// Takes back the handles not yielded yet, in the order given.
    fn into_pending(self) -> Vec<AsyncResult<R>> {
        self.handles.into_iter().flatten().collect()
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = AsyncResult<R>;

    fn next(&mut self) -> Option<AsyncResult<R>> {
        self.next_until(Deadline::NEVER).unwrap_or(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// When [`wait`] returns (Python's `return_when`).
///
/// ```
/// assert_ne!(parpool::WaitFor::FirstCompleted, parpool::WaitFor::AllCompleted);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// As soon as any task has finished.
    FirstCompleted,
    /// As soon as any task has failed (panicked or been cancelled), or all
    /// have finished.
    FirstError,
    /// When every task has finished.
    AllCompleted,
}

/// Waits for handles like `concurrent.futures.wait`: returns `(done,
/// pending)` once `until` is met or `timeout` passes (`None`: no limit).
/// `done` lists finished handles in the order they finished; `pending` the
/// rest, in the order given.
///
/// ```
/// use parpool::WaitFor;
/// use std::time::Duration;
///
/// let pool = parpool::ThreadPool::with_workers(2);
/// let quick = pool.apply_async(|| 1);
/// let slow = pool.apply_async(|| { std::thread::sleep(Duration::from_millis(300)); 2 });
/// let (done, pending) = parpool::wait(vec![quick, slow], None, WaitFor::FirstCompleted);
/// assert_eq!((done.len(), pending.len()), (1, 1));
/// ```
pub fn wait<R>(
    handles: impl IntoIterator<Item = AsyncResult<R>>,
    timeout: Option<Duration>,
    until: WaitFor,
) -> (Vec<AsyncResult<R>>, Vec<AsyncResult<R>>) {
    let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
    let mut it = as_completed(handles);
    let mut done = Vec::new();
    while let Ok(Some(handle)) = it.next_until(deadline) {
        let failed = handle.successful() == Some(false);
        done.push(handle);
        match until {
            WaitFor::FirstCompleted => break,
            WaitFor::FirstError if failed => break,
            _ => {}
        }
    }
    (done, it.into_pending())
}
