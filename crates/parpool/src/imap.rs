//! `imap` and `imap_unordered`: lazy, bounded, streaming maps.
//!
//! The consumer hands out *credits*: each credit is a job that, on a worker,
//! takes the input's lock, reads up to its size in items, tags them with the
//! next sequence number, releases the lock and maps them. The consumer keeps
//! credits out while fewer than `buffer` items are read ahead of it, and
//! yields finished chunks: by sequence number for [`Imap`], as they arrive for
//! [`ImapUnordered`]. So the input is read lazily and in parallel with the
//! consumer, and memory stays bounded by the buffer whatever the input's
//! length. Nothing is read before the first `next()`.
//!
//! Invariants:
//! - Every credit reports exactly once: a chunk (its results, and how it
//!   ended: complete, a task panic after the last result, cancelled, or the
//!   input panicked after it), or "input exhausted", or "returned" (dropped
//!   unrun, from its `Drop`). So the consumer counts credits out and never
//!   waits for one that will not report.
//! - Sequence numbers are taken under the input lock, in reading order, so
//!   they are contiguous and follow input order.
//! - Items count against the buffer from the moment a credit is issued until
//!   their chunk is handed to the consumer, including while they wait in the
//!   reorder buffer.
//! - The consumer yields every result before a task's panic, and a panic of
//!   the input iterator only after every result of the items before it.
//! - Dropping the iterator cancels what has not started: credits check a
//!   shared flag before reading and before each item.
//! - After `close`, an iterator created before it keeps going: new credits
//!   run on the consumer's own thread, since the workers may have exited.
//!   After `terminate`, it reports [`TaskError::Cancelled`].
//!
//! With automatic chunking the chunk size adapts: workers time each chunk,
//! and the consumer sizes the next one to take about `TARGET_CHUNK_NS`,
//! growing at most 16-fold per credit from 1. Slow items are thus sent one by
//! one (so `terminate` and load balance never wait on a long chunk) and tiny
//! items in large batches.

use crate::cancel::{self, CancelFlag};
use crate::error::TaskError;
use crate::job::Job;
use crate::panic::{self, Payload};
use crate::park::{self, Deadline, Waitable};
use crate::registry::Registry;
use crate::scope::ScopeState;
use crate::spawn::Queue;
use crate::sync::lock;
use futures_core::Stream;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long one automatic chunk should take on a worker.
const TARGET_CHUNK_NS: u64 = 200_000;
/// How much an automatic chunk may grow from one credit to the next.
const GROWTH: usize = 16;
/// The largest chunk, automatic or set with `chunksize`: a larger chunk
/// brings no speed, and its items would all be held in memory at once.
pub(crate) const MAX_CHUNK: usize = 1 << 16;
/// The most items read ahead of the consumer, whatever the buffer and chunk
/// settings: the hard bound on an imap's memory, in items.
pub(crate) const MAX_READ_AHEAD: usize = 1 << 20;
/// The default buffer is this many chunks per worker.
const BUFFER_CHUNKS_PER_WORKER: usize = 4;
/// The most credits out at once, per worker: a large buffer of small chunks
/// must not queue a job per item (1 M one-item credits for `buffer(1 << 20)`).
const MAX_CREDITS_PER_WORKER: usize = 8;
/// How often a running chunk checks for cancellation, in time.
const CHECK_EVERY_NS: u64 = 10_000;
/// ... and at most this many items apart.
const MAX_BLOCK: usize = 1024;
/// How many times a waiting consumer checks for news before it sleeps.
const SPIN_CHECKS: u32 = 200;

/// How a chunk ended.
enum End {
    Complete,
    Panicked(Payload),
    Cancelled,
    /// All items ran; then the input iterator panicked.
    InputPanicked(Payload),
}

/// What one credit reports.
enum Report<R> {
    Chunk { seq: u64, results: Vec<R>, end: End },
    Exhausted,
    Returned,
}

struct Delivery<R> {
    /// The size of the credit, released when the chunk is handed out.
    credit: usize,
    /// The input had no more items after this credit read; then how many
    /// chunks it made in all (sequence numbers `0..total`).
    total: Option<u64>,
    report: Report<R>,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Want {
    Nothing,
    Seq(u64),
    Any,
}

struct Mailbox<R> {
    arrived: VecDeque<Delivery<R>>,
    want: Want,
    waker: Option<Waker>,
}

/// State shared by the consumer and the credits.
struct Shared<R> {
    queue: Mutex<Mailbox<R>>,
    cond: Condvar,
    /// Deliveries so far; a waiting consumer spins on it before sleeping.
    arrivals: AtomicUsize,
    cancelled: AtomicBool,
    ns_per_item: AtomicU64,
    registry: Arc<Registry>,
    scope: Option<Arc<ScopeState>>,
    /// Result buffers the consumer emptied, for the credits to reuse.
    spare: Spare<R>,
}

impl<R> Shared<R> {
    fn deliver(&self, delivery: Delivery<R>) {
        let mut q = lock(&self.queue);
        let wake = match (q.want, &delivery.report) {
            (Want::Nothing, _) => false,
            (Want::Seq(s), Report::Chunk { seq, .. }) => *seq == s,
            _ => true,
        };
        q.arrived.push_back(delivery);
        self.arrivals.fetch_add(1, Ordering::Release);
        let waker = if wake {
            q.want = Want::Nothing;
            self.cond.notify_one();
            crate::sleep::handed_off();
            q.waker.take()
        } else {
            None
        };
        drop(q);
        if let Some(w) = waker {
            // An executor's waker is foreign code: contained, and not a task
            // panic (no count, no policy).
            drop(panic::contain(|| w.wake()));
        }
    }

    #[inline]
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.registry.is_terminated_relaxed()
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
        // Results are dropped one by one, contained: this may run on a worker.
        let q = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
        for d in q.arrived.drain(..) {
            if let Report::Chunk { end, results, .. } = d.report {
                panic::drop_all_contained(results);
                if let Some(scope) = &self.scope {
                    report_end(scope, end);
                }
            }
        }
    }
}

fn report_end(scope: &ScopeState, end: End) {
    if let End::Panicked(p) | End::InputPanicked(p) = end {
        scope.report_panic(p);
    }
}

/// The input iterator and the next sequence number, under one lock.
struct Input<I> {
    iter: Option<I>,
    next_seq: u64,
}

/// What every credit of one imap shares: its input, its function, and
/// emptied item buffers to reuse (fresh large buffers cost page faults).
struct Source<I: Iterator, F> {
    /// Held while the input is read, which runs user code that may wait.
    reader: ReadToken,
    input: Mutex<Input<I>>,
    f: F,
    spare: Spare<I::Item>,
}

/// The right to read the input: one credit at a time. The input's own mutex
/// is taken only by the token's holder, so no thread ever blocks on it;
/// waiting for the token goes through [`park`], so a worker that waits while
/// another credit's read is stuck in user code (an input iterator that waits
/// for work of the same pool) counts as blocked and the pool sends a spare.
struct ReadToken {
    busy: Mutex<bool>,
    cond: Condvar,
}

struct Reading<'t>(&'t ReadToken);

impl ReadToken {
    fn new() -> Self {
        ReadToken {
            busy: Mutex::new(false),
            cond: Condvar::new(),
        }
    }

    fn acquire(&self) -> Reading<'_> {
        loop {
            {
                let mut busy = lock(&self.busy);
                if !*busy {
                    *busy = true;
                    return Reading(self);
                }
            }
            park::wait(self, Deadline::NEVER);
        }
    }
}

impl Waitable for ReadToken {
    fn done(&self) -> bool {
        !*lock(&self.busy)
    }

    fn block(&self, timeout: Option<Duration>) {
        let busy = lock(&self.busy);
        if *busy {
            drop(crate::sync::wait(&self.cond, busy, timeout));
        }
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        *lock(&self.0.busy) = false;
        self.0.cond.notify_all();
    }
}

/// A few emptied buffers, kept for reuse.
struct Spare<T>(Mutex<Vec<Vec<T>>>);

impl<T> Spare<T> {
    const KEEP: usize = 4;

    fn new() -> Self {
        Spare(Mutex::new(Vec::new()))
    }

    fn take(&self, capacity: usize) -> Vec<T> {
        let mut v = lock(&self.0).pop().unwrap_or_default();
        v.reserve(capacity);
        v
    }

    fn give(&self, mut v: Vec<T>) {
        v.clear();
        let mut spare = lock(&self.0);
        if spare.len() < Self::KEEP {
            spare.push(v);
        }
    }
}

/// A credit: read up to `credit` items, map them, report.
struct PullJob<I: Iterator, F, R> {
    source: Arc<Source<I, F>>,
    shared: Arc<Shared<R>>,
    credit: usize,
    delivered: bool,
}

impl<I: Iterator, F, R> PullJob<I, F, R> {
    fn deliver(&mut self, total: Option<u64>, report: Report<R>) {
        self.delivered = true;
        self.shared.deliver(Delivery {
            credit: self.credit,
            total,
            report,
        });
    }
}

impl<I, F, T, R> Job for PullJob<I, F, R>
where
    I: Iterator<Item = T> + Send,
    F: Fn(T) -> R + Send + Sync,
    T: Send,
    R: Send,
{
    fn run(mut self: Box<Self>, registry: &Registry) {
        let shared = Arc::clone(&self.shared);
        if shared.is_cancelled() {
            return; // Drop reports "returned"
        }
        let source = Arc::clone(&self.source);
        let mut items = source.spare.take(self.credit);
        let mut finished_iter = None;
        let (seq, total, mut input_panic) = {
            let _reading = source.reader.acquire();
            let mut input = lock(&source.input);
            let Some(iter) = input.iter.as_mut() else {
                let total = input.next_seq;
                drop(input);
                self.deliver(Some(total), Report::Exhausted);
                return;
            };
            let credit = self.credit;
            let read = panic::contain(|| {
                items.extend(iter.by_ref().take(credit));
                // Exhausted, or known to be (an exact size hint of 0 saves
                // the consumer a credit just to learn of the end).
                items.len() < credit || iter.size_hint().1 == Some(0)
            });
            let (input_done, input_panic) = match read {
                Ok(exhausted) => (exhausted, None),
                Err(p) => (true, Some(p)),
            };
            if input_done {
                // Dropped below, outside the lock: its `Drop` is user code.
                finished_iter = input.iter.take();
            }
            let seq = input.next_seq;
            if !items.is_empty() || input_panic.is_some() {
                input.next_seq += 1;
            }
            (seq, input_done.then_some(input.next_seq), input_panic)
        };
        if let Some(p) = panic::drop_contained(finished_iter) {
            input_panic.get_or_insert(p);
        }
        if items.is_empty() && input_panic.is_none() {
            self.deliver(total, Report::Exhausted);
            return;
        }
        let counters = registry.counters();
        let taken = items.len();
        counters.running(taken as isize);
        // SAFETY: the guard is a local of this call and drops before `shared`.
        let token = unsafe { cancel::enter(&*shared, true) };
        let mut results = shared.spare.take(items.len());
        let mut drain = items.drain(..);
        let f = &source.f;
        // Check for cancellation every `block` items: every item while items
        // are slow or of unknown cost, about every 10 µs for tiny ones.
        let est = shared.ns_per_item.load(Ordering::Relaxed);
        let block = match CHECK_EVERY_NS.checked_div(est) {
            Some(n) => usize::try_from(n).unwrap_or(MAX_BLOCK).clamp(1, MAX_BLOCK),
            None => 1,
        };
        let started = Instant::now();
        let end = panic::contain(|| {
            while drain.len() > 0 {
                if shared.is_cancelled() {
                    return End::Cancelled;
                }
                // A `TrustedLen` extend: no capacity check per item.
                results.extend(drain.by_ref().take(block).map(f));
            }
            End::Complete
        })
        .unwrap_or_else(|payload| {
            registry.task_panicked(&payload);
            End::Panicked(payload)
        });
        drop(token);
        // Items a stop left unmapped; their `Drop` is user code.
        let unused = drain.len();
        let end = match (end, panic::drop_all_contained(drain)) {
            (End::Complete | End::Cancelled, Some(p)) => {
                registry.task_panicked(&p);
                End::Panicked(p)
            }
            (end, _) => end,
        };
        let ran = taken - unused;
        counters.running(-(taken as isize));
        counters.completed(ran);
        source.spare.give(items);
        if !results.is_empty() {
            let ns = started.elapsed().as_nanos() / results.len() as u128;
            shared
                .ns_per_item
                .store(ns.clamp(1, u64::MAX as u128) as u64, Ordering::Relaxed);
        }
        let end = match (end, input_panic) {
            (End::Complete, Some(p)) => End::InputPanicked(p),
            (end, _) => end,
        };
        self.deliver(total, Report::Chunk { seq, results, end });
    }

    fn items(&self) -> usize {
        self.credit
    }
}

impl<I: Iterator, F, R> Drop for PullJob<I, F, R> {
    fn drop(&mut self) {
        if !self.delivered {
            self.deliver(None, Report::Returned);
        }
    }
}

/// Hands out the results of one chunk by value, then gives its buffer back
/// for reuse (`vec::IntoIter` cannot return its allocation).
///
/// Invariant: `buf[pos..len]` are the results not yet handed out; the ones
/// before `pos` have been moved out, so they must not be dropped again.
struct Cursor<R> {
    buf: Vec<R>,
    pos: usize,
}

impl<R> Default for Cursor<R> {
    fn default() -> Self {
        Cursor {
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl<R> Cursor<R> {
    #[inline]
    fn next(&mut self) -> Option<R> {
        if self.pos < self.buf.len() {
            // SAFETY: `pos < len`, so the slot is initialized, and it is read
            // once: `pos` moves past it at once.
            let item = unsafe { self.buf.as_ptr().add(self.pos).read() };
            self.pos += 1;
            Some(item)
        } else {
            None
        }
    }

    fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Starts handing out `buf`; returns the previous buffer, emptied.
    fn replace(&mut self, buf: Vec<R>) -> Vec<R> {
        self.drop_rest();
        self.pos = 0;
        std::mem::replace(&mut self.buf, buf)
    }

    /// Drops the results not handed out and marks the buffer empty.
    fn drop_rest(&mut self) {
        let (pos, len) = (self.pos, self.buf.len());
        self.pos = 0;
        if pos == len {
            // SAFETY: every slot was moved out.
            unsafe { self.buf.set_len(0) };
            return;
        }
        // SAFETY: set the length first, so a panicking `Drop` cannot lead to
        // a double drop; then move out exactly the slots not yet moved out,
        // once each, and drop each under its own catch (user code).
        unsafe { self.buf.set_len(0) };
        let base = self.buf.as_ptr();
        let rest = (pos..len).map(|i| unsafe { base.add(i).read() });
        // A result nobody will read whose `Drop` panics: the hook has
        // reported it; the consumer goes on.
        drop(panic::drop_all_contained(rest));
    }
}

impl<R> Drop for Cursor<R> {
    fn drop(&mut self) {
        self.drop_rest();
    }
}

/// The next automatic chunk size after `prev`, given the last measured cost
/// per item (`0`: none yet): about `TARGET_CHUNK_NS` of work, shrinking at
/// most by half and growing at most `GROWTH`-fold per credit, within
/// `1..=MAX_CHUNK`, and small enough that every worker gets a chunk of a
/// user-set buffer.
fn adapt_chunk(prev: usize, est_ns: u64, buffer: Option<usize>, workers: usize) -> usize {
    let mut chunk = prev.max(1);
    if let Some(per_chunk) = TARGET_CHUNK_NS.checked_div(est_ns) {
        let want = usize::try_from(per_chunk).unwrap_or(MAX_CHUNK).max(1);
        chunk = want.clamp((chunk / 2).max(1), chunk.saturating_mul(GROWTH));
    }
    chunk = chunk.min(MAX_CHUNK);
    if let Some(b) = buffer {
        chunk = chunk.min((b / workers.max(1)).max(1));
    }
    chunk
}

/// Why the consumer stopped without an item.
enum Stop {
    Timeout,
    Pending,
    Cancelled,
    Panic(Payload),
}

enum Mode<'w> {
    Block(Deadline),
    Poll(&'w Waker),
}

type MakeJob<'a> = Box<dyn Fn(usize) -> Box<dyn Job + 'a> + Send + 'a>;
type ReleaseInput<'a> = Box<dyn Fn() + Send + 'a>;

/// A chunk waiting to be handed out: its credit, results and end.
type Ready<R> = (usize, Vec<R>, End);

/// The consumer side shared by [`Imap`] and [`ImapUnordered`].
struct Core<'a, R> {
    shared: Arc<Shared<R>>,
    make_job: MakeJob<'a>,
    /// Drops the unread rest of the input (contained), when the stream ends
    /// early: before a panic is re-raised, so no user `Drop` runs during the
    /// unwinding (a panic there would abort the process).
    release_input: ReleaseInput<'a>,
    queue: Queue<'a>,
    ordered: bool,
    workers: usize,
    chunksize: Option<usize>,
    buffer: Option<usize>,
    started: bool,
    chunk: usize,
    head_seq: u64,
    reorder: BTreeMap<u64, Ready<R>>,
    fifo: VecDeque<Ready<R>>,
    current: Cursor<R>,
    current_end: Option<End>,
    /// Items of credits issued whose chunk was not yet handed out.
    read_ahead: usize,
    /// Credits issued that have not reported.
    credits_out: usize,
    input_done: bool,
    /// How many chunks the input made in all, once a credit found its end.
    chunks_total: Option<u64>,
    /// Chunks handed to the consumer so far.
    chunks_handed: u64,
    returned: bool,
    /// Unordered: an input panic waits until every earlier chunk is out.
    input_panic: Option<Payload>,
    finished: bool,
    /// The input's size hint when the iterator was made.
    input_hint: (usize, Option<usize>),
    /// Results moved into `current` so far.
    handed: usize,
}

/// Builds the consumer for `f` over `inputs`; credits go to `queue` (the
/// pool, or a scope). On a pool that no longer runs, the credits run on the
/// consumer's thread.
pub(crate) fn build<'a, I, F, T, R>(
    queue: Queue<'a>,
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
    let registry = Arc::clone(queue.registry());
    let scope = queue.scope_state().cloned();
    let workers = registry.workers();
    let shared = Arc::new(Shared {
        queue: Mutex::new(Mailbox {
            arrived: VecDeque::new(),
            want: Want::Nothing,
            waker: None,
        }),
        cond: Condvar::new(),
        arrivals: AtomicUsize::new(0),
        cancelled: AtomicBool::new(false),
        ns_per_item: AtomicU64::new(0),
        registry,
        scope,
        spare: Spare::new(),
    });
    let iter = inputs.into_iter();
    let input_hint = iter.size_hint();
    let source = Arc::new(Source {
        reader: ReadToken::new(),
        input: Mutex::new(Input {
            iter: Some(iter),
            next_seq: 0,
        }),
        f,
        spare: Spare::new(),
    });
    let input = Arc::clone(&source);
    let release_input: ReleaseInput<'a> = Box::new(move || {
        let iter = {
            let _reading = input.reader.acquire();
            lock(&input.input).iter.take()
        };
        drop(panic::drop_contained(iter));
    });
    let job_shared = Arc::clone(&shared);
    let make_job: MakeJob<'a> = Box::new(move |credit| {
        Box::new(PullJob {
            source: Arc::clone(&source),
            shared: Arc::clone(&job_shared),
            credit,
            delivered: false,
        })
    });
    CoreHandle(Core {
        shared,
        make_job,
        release_input,
        queue,
        ordered,
        workers,
        chunksize: None,
        buffer: None,
        started: false,
        chunk: 1,
        head_seq: 0,
        reorder: BTreeMap::new(),
        fifo: VecDeque::new(),
        current: Cursor::default(),
        current_end: None,
        read_ahead: 0,
        credits_out: 0,
        input_done: false,
        chunks_total: None,
        chunks_handed: 0,
        returned: false,
        input_panic: None,
        finished: false,
        input_hint,
        handed: 0,
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
            return c.min(MAX_CHUNK);
        }
        let est = self.shared.ns_per_item.load(Ordering::Relaxed);
        self.chunk = adapt_chunk(self.chunk, est, self.buffer, self.workers);
        self.chunk
    }

    /// Issues credits while the read-ahead allows: at most the buffer (by
    /// default `BUFFER_CHUNKS_PER_WORKER` chunks per worker), and never more
    /// than `MAX_READ_AHEAD` items, whatever the settings. A credit is never
    /// larger than the read-ahead limit, and at most
    /// `MAX_CREDITS_PER_WORKER` credits per worker are out at once.
    fn top_up(&mut self) {
        self.started = true;
        let registry = Arc::clone(&self.shared.registry);
        while !self.input_done && !self.returned {
            let chunk = self.next_chunk_size();
            let limit = self
                .buffer
                .unwrap_or_else(|| {
                    BUFFER_CHUNKS_PER_WORKER
                        .saturating_mul(self.workers)
                        .saturating_mul(chunk)
                })
                .min(MAX_READ_AHEAD);
            let chunk = chunk.min(limit);
            if self.read_ahead > 0 && self.read_ahead + chunk > limit {
                break;
            }
            if self.credits_out >= MAX_CREDITS_PER_WORKER.saturating_mul(self.workers) {
                break;
            }
            if registry.is_terminated() {
                self.returned = true;
                break;
            }
            let job = (self.make_job)(chunk);
            self.read_ahead += chunk;
            self.credits_out += 1;
            if let Err(job) = self.queue.submit(job) {
                // The pool refused (closed, or terminated just now): the
                // credit runs here, and reports like any other.
                job.run(&registry);
                self.absorb();
            }
        }
    }

    /// Takes in what the credits reported.
    fn absorb(&mut self) {
        let mut q = lock(&self.shared.queue);
        for d in q.arrived.drain(..) {
            self.credits_out -= 1;
            if let Some(total) = d.total {
                self.input_done = true;
                self.chunks_total = Some(total);
            }
            match d.report {
                Report::Chunk { seq, results, end } => {
                    if self.ordered {
                        self.reorder.insert(seq, (d.credit, results, end));
                    } else {
                        self.fifo.push_back((d.credit, results, end));
                    }
                }
                Report::Exhausted => {
                    self.input_done = true;
                    self.read_ahead -= d.credit;
                }
                Report::Returned => {
                    self.returned = true;
                    self.read_ahead -= d.credit;
                }
            }
        }
    }

    /// Makes the next ready chunk current; `false` if none is here.
    fn take_next_ready(&mut self) -> bool {
        match self.next_ready() {
            Some((results, end)) => {
                self.handed += results.len();
                self.chunks_handed += 1;
                let emptied = self.current.replace(results);
                self.shared.spare.give(emptied);
                self.current_end = Some(end);
                true
            }
            None => false,
        }
    }

    /// The next chunk the consumer may hand out, if it is here.
    fn next_ready(&mut self) -> Option<(Vec<R>, End)> {
        let (credit, results, end) = if self.ordered {
            let ready = self.reorder.remove(&self.head_seq)?;
            self.head_seq += 1;
            ready
        } else {
            self.fifo.pop_front()?
        };
        self.read_ahead -= credit;
        Some((results, end))
    }

    fn want(&self) -> Want {
        if self.ordered {
            Want::Seq(self.head_seq)
        } else {
            Want::Any
        }
    }

    fn arrived_wanted(&self, q: &Mailbox<R>) -> bool {
        match self.want() {
            Want::Seq(s) => q.arrived.iter().any(|d| match d.report {
                Report::Chunk { seq, .. } => seq == s,
                _ => true,
            }),
            _ => !q.arrived.is_empty(),
        }
    }

    /// Blocks until news may have arrived, or the deadline.
    fn wait_once(&self, deadline: Deadline) -> Result<(), Stop> {
        let seen = self.shared.arrivals.load(Ordering::Acquire);
        for _ in 0..SPIN_CHECKS {
            if self.shared.arrivals.load(Ordering::Acquire) != seen {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        if park::wait(&News { core: self, seen }, deadline) {
            Ok(())
        } else {
            Err(Stop::Timeout)
        }
    }

    /// Registers the waker; returns `true` if news is already there.
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
        self.shared.cancelled.store(true, Ordering::Relaxed);
        (self.release_input)();
    }

    fn advance(&mut self, mode: Mode<'_>) -> Result<Option<R>, Stop> {
        loop {
            if let Some(x) = self.current.next() {
                return Ok(Some(x));
            }
            match self.current_end.take() {
                Some(End::Panicked(p)) => {
                    self.finish();
                    return Err(Stop::Panic(p));
                }
                Some(End::Cancelled) => {
                    self.finish();
                    return Err(Stop::Cancelled);
                }
                Some(End::InputPanicked(p)) => {
                    if self.ordered {
                        self.finish();
                        return Err(Stop::Panic(p));
                    }
                    self.input_panic = Some(p);
                }
                Some(End::Complete) | None => {}
            }
            if self.finished {
                return Ok(None);
            }
            self.absorb();
            if self.take_next_ready() {
                continue;
            }
            self.top_up();
            // Subtle: after `close`, top_up runs credits here and absorbs
            // them, so what we wait for may already be in the reorder buffer;
            // the wait below only looks at new arrivals.
            if self.take_next_ready() {
                continue;
            }
            // Every chunk the input made was handed out: credits still out
            // can only report that the input is exhausted.
            let all_handed = self.chunks_total == Some(self.chunks_handed);
            if self.credits_out == 0 || all_handed {
                self.finish();
                if let Some(p) = self.input_panic.take() {
                    return Err(Stop::Panic(p));
                }
                return if all_handed || (self.input_done && !self.returned) {
                    Ok(None)
                } else {
                    Err(Stop::Cancelled)
                };
            }
            match mode {
                Mode::Block(deadline) => self.wait_once(deadline)?,
                Mode::Poll(waker) => {
                    if !self.register(waker) {
                        return Err(Stop::Pending);
                    }
                }
            }
        }
    }

    #[inline]
    fn next_blocking(&mut self) -> Option<R> {
        // Fast path: the next result of the chunk being handed out.
        if let Some(x) = self.current.next() {
            return Some(x);
        }
        self.next_slow()
    }

    #[inline(never)]
    fn next_slow(&mut self) -> Option<R> {
        match self.advance(Mode::Block(Deadline::NEVER)) {
            Ok(x) => x,
            Err(stop) => raise(stop),
        }
    }

    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>, TaskError> {
        self.advance(Mode::Block(Deadline::after(timeout)))
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

    /// Assumes the stream completes: after a task panic or a cancellation
    /// it yields fewer items than the input had.
    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished {
            return (self.current.len(), Some(self.current.len()));
        }
        let done = self.handed - self.current.len();
        let (lo, hi) = self.input_hint;
        (lo.saturating_sub(done), hi.map(|h| h.saturating_sub(done)))
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

/// What a waiting consumer waits for: a delivery after the `seen`-th, or
/// one it wants already waiting.
struct News<'c, 'a, R> {
    core: &'c Core<'a, R>,
    seen: usize,
}

impl<R> Waitable for News<'_, '_, R> {
    /// News arrived since `seen` was read, or a wanted delivery is waiting
    /// (it may have arrived between the consumer's last look and `seen`).
    fn done(&self) -> bool {
        let shared = &self.core.shared;
        shared.arrivals.load(Ordering::Acquire) != self.seen
            || self.core.arrived_wanted(&lock(&shared.queue))
    }

    fn block(&self, timeout: Option<Duration>) {
        let shared = &self.core.shared;
        let mut q = lock(&shared.queue);
        if self.core.arrived_wanted(&q) {
            return;
        }
        q.want = self.core.want();
        q = crate::sync::wait(&shared.cond, q, timeout);
        q.want = Want::Nothing;
    }
}

impl<R> Drop for Core<'_, R> {
    fn drop(&mut self) {
        self.shared.cancelled.store(true, Ordering::Relaxed);
        let ready = std::mem::take(&mut self.reorder)
            .into_values()
            .chain(std::mem::take(&mut self.fifo));
        for (_, results, end) in ready {
            // Results nobody will read: dropped one by one, contained.
            drop(panic::drop_all_contained(results));
            if let Some(scope) = &self.shared.scope {
                report_end(scope, end);
            }
        }
        if let Some(scope) = &self.shared.scope {
            if let Some(end) = self.current_end.take() {
                report_end(scope, end);
            }
            if let Some(p) = self.input_panic.take() {
                scope.report_panic(p);
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
            /// A chunk never exceeds 65,536 items, nor the read-ahead bound
            /// (see [`buffer`](Self::buffer)): larger values are treated as
            /// that, since a larger chunk brings no speed and would hold all
            /// its items in memory at once.
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
            /// Whatever the settings, at most 1,048,576 items are read ahead
            /// (larger buffers are treated as that), so an imap's memory is
            /// bounded in items even over an endless input.
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
            #[inline]
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
                    .field("credits_out", &self.core.credits_out)
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
    /// Since it is both an `Iterator` and a `Stream`, methods both traits
    /// name (`next`, `map`, `collect`, …) are ambiguous while
    /// `futures::StreamExt` is in scope: write `StreamExt::next(&mut it)`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_start_at_one_and_wait_for_a_measurement() {
        assert_eq!(adapt_chunk(1, 0, None, 2), 1);
        assert_eq!(adapt_chunk(37, 0, None, 2), 37);
    }

    #[test]
    fn chunks_grow_at_most_sixteenfold_and_stop_at_the_cap() {
        // Tiny items (1 ns): the target is 200 000 items, reached in steps.
        let mut chunk = 1;
        let mut steps = Vec::new();
        for _ in 0..6 {
            chunk = adapt_chunk(chunk, 1, None, 2);
            steps.push(chunk);
        }
        assert_eq!(steps, [16, 256, 4096, 65_536, 65_536, 65_536]);
    }

    #[test]
    fn slow_items_go_one_by_one_and_shrink_gradually() {
        // 1 ms per item is far above the 200 µs target: one item per chunk.
        assert_eq!(adapt_chunk(1, 1_000_000, None, 2), 1);
        // A chunk that was too big halves at most per credit.
        assert_eq!(adapt_chunk(1000, 1_000_000, None, 2), 500);
        // 2 µs per item: 100 items.
        assert_eq!(adapt_chunk(100, 2_000, None, 2), 100);
    }

    #[test]
    fn a_user_buffer_caps_the_chunk_so_every_worker_gets_one() {
        assert_eq!(adapt_chunk(65_536, 1, Some(64), 2), 32);
        assert_eq!(adapt_chunk(65_536, 1, Some(1), 2), 1);
        assert_eq!(adapt_chunk(1, 1, Some(10), 0), 10);
    }

    #[test]
    fn the_cursor_drops_exactly_the_results_not_handed_out() {
        let token = Arc::new(());
        let mut cursor = Cursor::default();
        let old = cursor.replace((0..5).map(|_| Arc::clone(&token)).collect());
        assert!(old.is_empty());
        let first = cursor.next().unwrap();
        let second = cursor.next().unwrap();
        assert_eq!(cursor.len(), 3);
        assert_eq!(Arc::strong_count(&token), 6);
        let emptied = cursor.replace(Vec::new());
        assert!(
            emptied.is_empty() && emptied.capacity() >= 5,
            "the buffer comes back for reuse"
        );
        assert_eq!(Arc::strong_count(&token), 3, "the 3 left were dropped once");
        drop((first, second));
        assert_eq!(Arc::strong_count(&token), 1);
        assert!(cursor.next().is_none());
    }
}
