//! `imap` and `imap_unordered`: lazy, bounded, streaming maps.
//!
//! The consumer drives everything. Each `next()` first tops up the work in
//! flight: it reads input items into chunks and queues them, while fewer than
//! `buffer` items are read ahead of the consumer; then it waits for the next
//! finished chunk (the next in input order for [`Imap`], any for
//! [`ImapUnordered`]). So the input is read lazily, on the consumer's thread
//! (it need not be `Sync`), and memory stays bounded by the buffer whatever
//! the input's length.
//!
//! Invariants:
//! - Every queued chunk delivers exactly one outcome: its results, plus how
//!   it ended (complete, panicked at the item after the last result, or
//!   cancelled). A chunk dropped unrun delivers "cancelled" from its `Drop`.
//!   So the consumer can count chunks in flight and never waits for a chunk
//!   that will not report.
//! - The consumer yields every result before a chunk's panic, and a panic of
//!   the input iterator only after every chunk read before it.
//! - Dropping the iterator cancels what has not started: chunk jobs check a
//!   shared flag before each item.
//!
//! With automatic chunking the chunk size adapts: workers time each chunk,
//! and the consumer sizes the next one to take about `TARGET_CHUNK_NS`,
//! growing at most twofold per chunk from 1. Slow items are thus sent one by
//! one (so `terminate` and load balance never wait on a long chunk) and tiny
//! items in large batches.

use crate::cancel::{self, CancelFlag};
use crate::error::TaskError;
use crate::job::Job;
use crate::panic::{self, Payload};
use crate::registry::Registry;
use crate::scope::ScopeState;
use crate::sync::lock;
use futures_core::Stream;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long one automatic chunk should take on a worker.
const TARGET_CHUNK_NS: u64 = 50_000;
/// The largest automatic chunk.
const MAX_CHUNK: usize = 1 << 16;
/// The default buffer is this many chunks per worker.
const BUFFER_CHUNKS_PER_WORKER: usize = 4;
/// How long a consumer on a worker sleeps before it helps with queued work.
const HELP_POLL: Duration = Duration::from_millis(1);

/// How a chunk ended.
enum End {
    Complete,
    Panicked(Payload),
    Cancelled,
}

struct Outcome<R> {
    /// Items the chunk was given.
    len: usize,
    results: Vec<R>,
    end: End,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Want {
    Nothing,
    Seq(u64),
    Any,
}

struct Queue<R> {
    arrived: VecDeque<(u64, Outcome<R>)>,
    want: Want,
    waker: Option<Waker>,
}

/// State shared by the consumer and the chunk jobs.
struct Shared<R> {
    queue: Mutex<Queue<R>>,
    cond: Condvar,
    cancelled: AtomicBool,
    ns_per_item: AtomicU64,
    registry: Arc<Registry>,
    scope: Option<Arc<ScopeState>>,
}

impl<R> Shared<R> {
    fn deliver(&self, seq: u64, outcome: Outcome<R>) {
        let mut q = lock(&self.queue);
        q.arrived.push_back((seq, outcome));
        let wake = match q.want {
            Want::Any => true,
            Want::Seq(s) => s == seq,
            Want::Nothing => false,
        };
        let waker = if wake {
            q.want = Want::Nothing;
            self.cond.notify_one();
            q.waker.take()
        } else {
            None
        };
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.registry.is_terminated()
    }
}

impl<R: Send> CancelFlag for Shared<R> {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

impl<R> Drop for Shared<R> {
    fn drop(&mut self) {
        // Outcomes nobody will read: in a scope, their panics re-raise there.
        if let Some(scope) = &self.scope {
            let q = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
            for (_, outcome) in q.arrived.drain(..) {
                if let End::Panicked(p) = outcome.end {
                    scope.report_panic(p);
                }
            }
        }
    }
}

/// One chunk of inputs and the function to apply.
struct ChunkJob<T, F, R> {
    items: Vec<T>,
    f: Arc<F>,
    shared: Arc<Shared<R>>,
    seq: u64,
    delivered: bool,
}

impl<T, F, R> Job for ChunkJob<T, F, R>
where
    T: Send,
    F: Fn(T) -> R + Send + Sync,
    R: Send,
{
    fn run(mut self: Box<Self>) {
        let shared = Arc::clone(&self.shared);
        if shared.is_cancelled() {
            return; // Drop delivers "cancelled"
        }
        let items = std::mem::take(&mut self.items);
        let len = items.len();
        let flag: Arc<dyn CancelFlag + '_> = shared.clone();
        // SAFETY: the guard is a local of this call and drops before it returns.
        let token = unsafe { cancel::enter(flag, true) };
        let mut results = Vec::with_capacity(len);
        let mut items = items.into_iter();
        let f = &*self.f;
        let started = Instant::now();
        let end = catch_unwind(AssertUnwindSafe(|| {
            for item in items.by_ref() {
                if shared.is_cancelled() {
                    return End::Cancelled;
                }
                results.push(f(item));
            }
            End::Complete
        }))
        .unwrap_or_else(|payload| {
            shared.registry.task_panicked(&payload);
            End::Panicked(payload)
        });
        drop(token);
        drop(items);
        if !results.is_empty() {
            let ns = started.elapsed().as_nanos() / results.len() as u128;
            shared
                .ns_per_item
                .store(ns.clamp(1, u64::MAX as u128) as u64, Ordering::Relaxed);
        }
        self.delivered = true;
        shared.deliver(self.seq, Outcome { len, results, end });
    }

    fn items(&self) -> usize {
        self.items.len()
    }
}

impl<T, F, R> Drop for ChunkJob<T, F, R> {
    fn drop(&mut self) {
        if !self.delivered {
            let len = self.items.len();
            self.items.clear();
            self.shared.deliver(
                self.seq,
                Outcome {
                    len,
                    results: Vec::new(),
                    end: End::Cancelled,
                },
            );
        }
    }
}

/// What reading one chunk of input produced.
struct Fed<'a> {
    job: Option<(Box<dyn Job + 'a>, usize)>,
    exhausted: bool,
    panic: Option<Payload>,
}

/// The input side, with its item type erased.
trait Feed<'a, R>: Send {
    fn chunk(&mut self, n: usize, seq: u64, shared: &Arc<Shared<R>>) -> Fed<'a>;
}

struct IterFeed<I, F> {
    iter: I,
    f: Arc<F>,
}

impl<'a, I, F, T, R> Feed<'a, R> for IterFeed<I, F>
where
    I: Iterator<Item = T> + Send + 'a,
    F: Fn(T) -> R + Send + Sync + 'a,
    T: Send + 'a,
    R: Send + 'a,
{
    fn chunk(&mut self, n: usize, seq: u64, shared: &Arc<Shared<R>>) -> Fed<'a> {
        let mut items = Vec::with_capacity(n);
        let mut exhausted = false;
        let read = catch_unwind(AssertUnwindSafe(|| {
            while items.len() < n {
                match self.iter.next() {
                    Some(item) => items.push(item),
                    None => {
                        exhausted = true;
                        break;
                    }
                }
            }
        }));
        let len = items.len();
        let job = (len > 0).then(|| {
            let job: Box<dyn Job + 'a> = Box::new(ChunkJob {
                items,
                f: Arc::clone(&self.f),
                shared: Arc::clone(shared),
                seq,
                delivered: false,
            });
            (job, len)
        });
        Fed {
            job,
            exhausted,
            panic: read.err(),
        }
    }
}

/// Why the consumer stopped without an item.
enum Stop {
    Timeout,
    Pending,
    Cancelled,
    Panic(Payload),
}

enum Mode<'w> {
    Block(Option<Instant>),
    Poll(&'w Waker),
}

type Submit<'a> = Box<dyn Fn(Box<dyn Job + 'a>) + Send + 'a>;

/// The consumer side shared by [`Imap`] and [`ImapUnordered`].
struct Core<'a, R> {
    shared: Arc<Shared<R>>,
    feed: Option<Box<dyn Feed<'a, R> + 'a>>,
    submit: Submit<'a>,
    ordered: bool,
    workers: usize,
    chunksize: Option<usize>,
    buffer: Option<usize>,
    started: bool,
    chunk: usize,
    next_seq: u64,
    head_seq: u64,
    reorder: BTreeMap<u64, Outcome<R>>,
    current: std::vec::IntoIter<R>,
    current_end: Option<End>,
    /// Items read from the input and not yet handed to `current`.
    read_ahead: usize,
    /// Chunks queued whose outcome has not been received.
    in_flight: usize,
    input_panic: Option<Payload>,
    finished: bool,
}

/// Builds the consumer for `f` over `inputs`; `submit` queues a chunk job
/// (directly on the pool, or through a scope).
pub(crate) fn build<'a, I, F, T, R>(
    registry: Arc<Registry>,
    scope: Option<Arc<ScopeState>>,
    submit: Submit<'a>,
    f: F,
    inputs: I,
    ordered: bool,
) -> CoreHandle<'a, R>
where
    I: IntoIterator<Item = T>,
    I::IntoIter: Send + 'a,
    F: Fn(T) -> R + Send + Sync + 'a,
    T: Send + 'a,
    R: Send + 'a,
{
    registry.check_accepting();
    let workers = registry.workers();
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            arrived: VecDeque::new(),
            want: Want::Nothing,
            waker: None,
        }),
        cond: Condvar::new(),
        cancelled: AtomicBool::new(false),
        ns_per_item: AtomicU64::new(0),
        registry,
        scope,
    });
    CoreHandle(Core {
        shared,
        feed: Some(Box::new(IterFeed {
            iter: inputs.into_iter(),
            f: Arc::new(f),
        })),
        submit,
        ordered,
        workers,
        chunksize: None,
        buffer: None,
        started: false,
        chunk: 1,
        next_seq: 0,
        head_seq: 0,
        reorder: BTreeMap::new(),
        current: Vec::new().into_iter(),
        current_end: None,
        read_ahead: 0,
        in_flight: 0,
        input_panic: None,
        finished: false,
    })
}

/// Opaque carrier so `pool.rs` and `scope.rs` can build the public types.
pub(crate) struct CoreHandle<'a, R>(Core<'a, R>);

impl<'a, R> CoreHandle<'a, R> {
    pub(crate) fn ordered(self) -> Imap<'a, R> {
        Imap { core: self.0 }
    }
    pub(crate) fn unordered(self) -> ImapUnordered<'a, R> {
        ImapUnordered { core: self.0 }
    }
}

impl<R> Core<'_, R> {
    fn set_chunksize(&mut self, n: usize) {
        assert!(
            !self.started,
            "parpool: chunksize() must be called before the first next()"
        );
        assert!(n > 0, "parpool: chunksize must be at least 1");
        self.chunksize = Some(n);
    }

    fn set_buffer(&mut self, n: usize) {
        assert!(
            !self.started,
            "parpool: buffer() must be called before the first next()"
        );
        assert!(n > 0, "parpool: buffer must be at least 1");
        self.buffer = Some(n);
    }

    fn next_chunk_size(&mut self) -> usize {
        if let Some(c) = self.chunksize {
            return c;
        }
        let est = self.shared.ns_per_item.load(Ordering::Relaxed);
        if est > 0 {
            let want = usize::try_from(TARGET_CHUNK_NS / est)
                .unwrap_or(MAX_CHUNK)
                .max(1);
            self.chunk = want.clamp((self.chunk / 2).max(1), self.chunk * 2);
        }
        self.chunk = self.chunk.min(MAX_CHUNK);
        if let Some(b) = self.buffer {
            self.chunk = self.chunk.min((b / self.workers).max(1));
        }
        self.chunk
    }

    /// Reads input and queues chunks while the read-ahead allows.
    fn top_up(&mut self) {
        if !self.started {
            self.started = true;
        }
        while self.feed.is_some() {
            let chunk = self.next_chunk_size();
            let limit = self
                .buffer
                .unwrap_or(BUFFER_CHUNKS_PER_WORKER * self.workers * chunk);
            if self.read_ahead > 0 && self.read_ahead + chunk > limit {
                break;
            }
            self.shared.registry.check_accepting();
            let feed = self.feed.as_mut().expect("checked above");
            let fed = feed.chunk(chunk, self.next_seq, &self.shared);
            if let Some((job, len)) = fed.job {
                self.read_ahead += len;
                self.in_flight += 1;
                self.next_seq += 1;
                (self.submit)(job);
            }
            if let Some(p) = fed.panic {
                self.input_panic = Some(p);
                self.feed = None;
            } else if fed.exhausted {
                self.feed = None;
            }
        }
    }

    /// Takes the next outcome the consumer may yield, if it has arrived.
    fn take_ready(&mut self) -> Option<Outcome<R>> {
        let mut q = lock(&self.shared.queue);
        if !self.ordered {
            return q.arrived.pop_front().map(|(_, o)| o);
        }
        for (seq, o) in q.arrived.drain(..) {
            self.reorder.insert(seq, o);
        }
        drop(q);
        let o = self.reorder.remove(&self.head_seq)?;
        self.head_seq += 1;
        Some(o)
    }

    fn want(&self) -> Want {
        if self.ordered {
            Want::Seq(self.head_seq)
        } else {
            Want::Any
        }
    }

    fn arrived_wanted(&self, q: &Queue<R>) -> bool {
        match self.want() {
            Want::Seq(s) => q.arrived.iter().any(|(seq, _)| *seq == s),
            _ => !q.arrived.is_empty(),
        }
    }

    /// Blocks until the wanted outcome may have arrived, or the deadline.
    fn wait_once(&self, deadline: Option<Instant>) -> Result<(), Stop> {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Stop::Timeout);
        }
        let mut timeout = deadline.map(|d| d - now);
        let registry = &self.shared.registry;
        if registry.is_current_worker() {
            // Nested use: run queued work (maybe our own chunks) meanwhile.
            if registry.run_one() {
                return Ok(());
            }
            timeout = Some(timeout.map_or(HELP_POLL, |t| t.min(HELP_POLL)));
        }
        let mut q = lock(&self.shared.queue);
        if self.arrived_wanted(&q) {
            return Ok(());
        }
        q.want = self.want();
        q = match timeout {
            None => self.shared.cond.wait(q).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.shared
                    .cond
                    .wait_timeout(q, t)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        q.want = Want::Nothing;
        Ok(())
    }

    /// Registers the waker; returns `true` if the outcome is already there.
    fn register(&self, waker: &Waker) -> bool {
        let mut q = lock(&self.shared.queue);
        if self.arrived_wanted(&q) {
            return true;
        }
        q.want = self.want();
        match &q.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => q.waker = Some(waker.clone()),
        }
        false
    }

    fn finish(&mut self) {
        self.finished = true;
        self.feed = None;
        self.shared.cancelled.store(true, Ordering::Relaxed);
    }

    fn advance(&mut self, mode: Mode<'_>) -> Result<Option<R>, Stop> {
        loop {
            if let Some(x) = self.current.next() {
                return Ok(Some(x));
            }
            if let Some(end) = self.current_end.take() {
                self.finish();
                return Err(match end {
                    End::Panicked(p) => Stop::Panic(p),
                    _ => Stop::Cancelled,
                });
            }
            if self.finished {
                return Ok(None);
            }
            self.top_up();
            if self.in_flight == 0 {
                self.finish();
                return match self.input_panic.take() {
                    Some(p) => Err(Stop::Panic(p)),
                    None => Ok(None),
                };
            }
            let outcome = match self.take_ready() {
                Some(o) => o,
                None => {
                    match mode {
                        Mode::Block(deadline) => self.wait_once(deadline)?,
                        Mode::Poll(waker) => {
                            if !self.register(waker) {
                                return Err(Stop::Pending);
                            }
                        }
                    }
                    continue;
                }
            };
            self.in_flight -= 1;
            self.read_ahead -= outcome.len;
            self.current = outcome.results.into_iter();
            self.current_end = match outcome.end {
                End::Complete => None,
                end => Some(end),
            };
        }
    }

    fn next_blocking(&mut self) -> Option<R> {
        match self.advance(Mode::Block(None)) {
            Ok(x) => x,
            Err(stop) => raise(stop),
        }
    }

    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>, TaskError> {
        let deadline = Instant::now().checked_add(timeout);
        self.advance(Mode::Block(deadline))
            .map_err(|stop| match stop {
                Stop::Timeout | Stop::Pending => TaskError::Timeout,
                Stop::Cancelled => TaskError::Cancelled,
                Stop::Panic(p) => TaskError::Panicked(panic::message(p.as_ref())),
            })
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<R>> {
        match self.advance(Mode::Poll(cx.waker())) {
            Ok(x) => Poll::Ready(x),
            Err(Stop::Pending) => Poll::Pending,
            Err(stop) => raise(stop),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.current.len(), None)
    }
}

/// Re-raises a task's panic, or reports cancellation as a panic, in the consumer.
fn raise(stop: Stop) -> ! {
    match stop {
        Stop::Panic(p) => resume_unwind(p),
        _ => panic!(
            "parpool: imap stopped early: {} (use next_timeout() to get this as an error)",
            TaskError::Cancelled
        ),
    }
}

impl<R> Drop for Core<'_, R> {
    fn drop(&mut self) {
        self.shared.cancelled.store(true, Ordering::Relaxed);
        if let Some(scope) = &self.shared.scope {
            let ends = std::mem::take(&mut self.reorder)
                .into_values()
                .map(|o| o.end)
                .chain(self.current_end.take());
            for end in ends {
                if let End::Panicked(p) = end {
                    scope.report_panic(p);
                }
            }
        }
    }
}

macro_rules! imap_type {
    ($(#[$doc:meta])* $name:ident, $method:literal) => {
        $(#[$doc])*
        #[must_use = "an imap iterator does nothing until iterated"]
        pub struct $name<'a, R> {
            core: Core<'a, R>,
        }

        impl<'a, R> $name<'a, R> {
            /// Sets how many input items each task gets. Call it before the
            /// first `next()`. Default: automatic, adapting to how long items
            /// take (one by one for slow items, large batches for tiny ones).
            ///
            /// # Panics
            ///
            /// If iteration has started, or `n` is 0.
            ///
            /// ```
            /// let pool = parpool::ThreadPool::new();
            #[doc = concat!("let it = pool.", $method, "(|x: u32| x + 1, 0..10).chunksize(3);")]
            /// assert_eq!(it.count(), 10);
            /// ```
            pub fn chunksize(mut self, n: usize) -> Self {
                self.core.set_chunksize(n);
                self
            }

            /// Sets how many input items may be read ahead of the consumer
            /// (queued, running, or finished but not yet yielded). Memory use
            /// is bounded by it. Call it before the first `next()`. Default:
            /// 4 chunks per worker.
            ///
            /// # Panics
            ///
            /// If iteration has started, or `n` is 0.
            ///
            /// ```
            /// let pool = parpool::ThreadPool::new();
            #[doc = concat!("let it = pool.", $method, "(|x: u64| x * 2, 0..).buffer(64);")]
            /// assert_eq!(it.take(1000).count(), 1000);
            /// ```
            pub fn buffer(mut self, n: usize) -> Self {
                self.core.set_buffer(n);
                self
            }

            /// Like `next()`, but waits at most `timeout` (Python's
            /// `IMapIterator.next(timeout)`). `Ok(None)` at the end.
            ///
            /// # Errors
            ///
            /// [`TaskError::Timeout`] if no result came in time (the iterator
            /// stays usable), [`TaskError::Panicked`] if the task for the next
            /// item (or the input iterator) panicked, and
            /// [`TaskError::Cancelled`] if the pool was terminated; after these
            /// two the iterator is finished.
            ///
            /// ```
            /// use std::time::Duration;
            /// let pool = parpool::ThreadPool::new();
            #[doc = concat!("let mut it = pool.", $method, "(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), [300]);")]
            /// assert_eq!(it.next_timeout(Duration::from_millis(1)), Err(parpool::TaskError::Timeout));
            /// assert_eq!(it.next_timeout(Duration::from_secs(30)), Ok(Some(())));
            /// assert_eq!(it.next_timeout(Duration::from_secs(30)), Ok(None));
            /// ```
            pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>, TaskError> {
                self.core.next_timeout(timeout)
            }
        }

        impl<R> Iterator for $name<'_, R> {
            type Item = R;

            /// Waits for the next result. A task's panic is re-raised here, at
            /// its item's position; if the pool was terminated, this panics
            /// with [`TaskError::Cancelled`]'s message.
            fn next(&mut self) -> Option<R> {
                self.core.next_blocking()
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                self.core.size_hint()
            }
        }

        impl<R> Stream for $name<'_, R> {
            type Item = R;

            /// The same items as the iterator, without blocking the
            /// executor's thread.
            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<R>> {
                self.get_mut().core.poll_next(cx)
            }
        }

        impl<R> Unpin for $name<'_, R> {}

        impl<R> fmt::Debug for $name<'_, R> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("chunksize", &self.core.chunksize)
                    .field("buffer", &self.core.buffer)
                    .field("in_flight_chunks", &self.core.in_flight)
                    .finish_non_exhaustive()
            }
        }
    };
}

imap_type!(
    /// The lazy, ordered iterator returned by
    /// [`ThreadPool::imap`](crate::ThreadPool::imap): results in input order.
    /// Also a [`Stream`].
    ///
    /// Dropping it cancels the work that has not started.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let squares: Vec<u64> = pool.imap(|x: u64| x * x, 1..=4).collect();
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// ```
    Imap,
    "imap"
);

imap_type!(
    /// The lazy iterator returned by
    /// [`ThreadPool::imap_unordered`](crate::ThreadPool::imap_unordered):
    /// results in completion order. Also a [`Stream`].
    ///
    /// Dropping it cancels the work that has not started.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let mut squares: Vec<u64> = pool.imap_unordered(|x: u64| x * x, 1..=4).collect();
    /// squares.sort();
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// ```
    ImapUnordered,
    "imap_unordered"
);
