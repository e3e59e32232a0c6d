//! The consumer: the side of an imap that the iterator or stream's owner
//! drives, shared by [`Imap`](super::Imap) and
//! [`ImapUnordered`](super::ImapUnordered).
//!
//! It issues credits while the read-ahead allows, takes in what they report,
//! hands out the chunks its [`Window`] lets go, and waits (blocking, or by
//! registering a waker) when nothing is ready. Where it is in its life is one
//! [`Stage`].
//!
//! Invariants:
//! - Items count against the buffer from the moment a credit is issued until
//!   their chunk is handed to the consumer, including while they wait in the
//!   ordering window (`read_ahead`); the credits not yet reported are counted
//!   (`credits_out`), so the consumer never waits for one that will not
//!   report.
//! - The consumer yields every result before a task's panic, and a panic of
//!   the input iterator only after every result of the items before it.
//! - Once finished, it yields nothing more, and the cancellation flag is set
//!   so credits still out stop.
//! - A wait that can never end (`park::cannot_progress`) on a thread
//!   already unwinding gives up by finishing the stream, as a cancellation
//!   does: credits still out report to nobody and are dropped with the
//!   exchange, exactly as when the iterator is dropped mid-way, and no wait
//!   is made again (a retry would reach the same dead end: a hang).

use super::buffers::Cursor;
use super::credit::{report_end, Credit, End, Exchange, Report, Want};
use super::stash::STALL;
use super::takeback::TakeBack;
use super::window::Window;
use crate::chunking::{
    adapt_chunk, BUFFER_CHUNKS_PER_WORKER, MAX_CREDITS_PER_WORKER, MAX_READ_AHEAD,
};
use crate::error::TaskError;
use crate::exec_wait::Helped;
use crate::job::Job;
use crate::panic::{self, Payload};
use crate::park::{self, Deadline, Waitable};
use crate::submit::Queue;
use crate::sync::lock;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How many times a waiting consumer checks for news before it sleeps.
const SPIN_CHECKS: u32 = 200;
/// After its first rescue, the consumer issues this many one-item credits
/// before chunks may grow again; twice as many after each further rescue,
/// up to `PIN_MAX` (an input that merely pauses now and then must not end
/// up at one item per credit for good).
const PIN_AFTER_RESCUE: usize = 16;
const PIN_MAX: usize = 1024;
/// How long a consumer waits, after it first saw its pool terminated, for
/// credits still out (`Consumer::after_terminate`), also for the panic that
/// terminated the pool (`Consumer::terminating_panic`).
const TERMINATING_PANIC_WAIT: Duration = Duration::from_secs(1);

/// Why the consumer stopped without an item.
enum Stop {
    Timeout,
    Pending,
    Cancelled,
    Panic(Payload),
    /// A wait that could never end gave up, on a thread already unwinding
    /// (`park::Waited::GaveUp`): the stream is finished, and ends there
    /// (`next` gives `None`, `next_timeout` `TaskError::Timeout`).
    GaveUp,
}

/// What a consumer that may have seen `terminate` does next.
enum AfterTerminate {
    NotTerminated,
    /// A credit is stuck in the input: the stream ends as cancelled.
    Stuck,
    /// Reports were taken in: look at them.
    News,
    /// Credits still out will report: wait for them.
    Wait,
}

enum Mode<'w> {
    Block(Deadline),
    Poll(&'w Waker),
}

/// Rescues the items of a stalled read of the chunk wanted (any for
/// `None`) and maps them: `Source::rescue`.
pub(super) type Rescue<'a, R> =
    Box<dyn Fn(&Exchange<R>, Option<u64>) -> Option<(Vec<R>, End)> + Send + 'a>;

/// What the consumer asks of the input side (the `Source`), whose input
/// and function types it does not know.
pub(super) struct InputSide<'a, R> {
    /// Makes a credit of the given size, issued in the given rescue epoch.
    pub(super) make_job: Box<dyn Fn(usize, u64) -> Box<dyn Credit<'a> + 'a> + Send + 'a>,
    /// The input's `next()` provably never waits (`credit::never_waits`).
    pub(super) never_waits: bool,
    /// Stalled reads may be rescued: the pool has no initializer. (A
    /// rescue maps items on the consumer's thread, where an initializer's
    /// thread-local state is missing: `f` may count on it.)
    pub(super) may_rescue: bool,
    /// Whether a credit is reading the input (holds the read token).
    pub(super) is_reading: Box<dyn Fn() -> bool + Send + 'a>,
    /// Drops the unread rest of the input (contained), when the stream ends
    /// early: before a panic is re-raised, so no user `Drop` runs during the
    /// unwinding (a panic there would abort the process).
    pub(super) release_input: Box<dyn Fn() + Send + 'a>,
    /// Takes over a stalled read (see `stash.rs`).
    pub(super) rescue: Rescue<'a, R>,
    /// The largest chunk for this input's items and results
    /// ([`crate::chunking::max_chunk_for`]).
    pub(super) max_chunk: usize,
}

/// Where the consumer is in its life.
///
/// Transitions:
/// - `NotStarted` → `Reading`: the first `top_up` (the first `next()`,
///   `next_timeout` or poll). Only before it may `chunksize` and `buffer` be
///   set.
/// - `Reading` → `InputDone`: a credit found the end of the input (it
///   reported "exhausted", or a chunk that knows how many chunks the input
///   made).
/// - `Reading` or `InputDone` → `Returned`: a credit came back unrun, or
///   `top_up` found the pool terminated. A credit that finds the end of the
///   input later leaves `Returned` as it is: once a credit was returned, the
///   stream can only end early (cancelled) unless every chunk the input made
///   was handed out, whether or not the end was found.
/// - `Reading`, `InputDone` or `Returned` → `Finished`: `finish`, when the
///   stream ends (at the end, on a panic, on cancellation). It stays there.
///
/// Credits are issued only in `Reading`. Reports arrive only after the first
/// credit was issued, so never in `NotStarted`; and none are taken in after
/// `Finished`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Nothing was read; the settings may still change.
    NotStarted,
    /// Credits may be issued.
    Reading,
    /// The input's end was found: no more credits; the stream ends cleanly
    /// once the chunks out are handed out.
    InputDone,
    /// A credit came back unrun (the pool was terminated): no more credits;
    /// the stream ends as cancelled unless every chunk was handed out.
    Returned,
    /// The stream ended: nothing more is yielded.
    Finished,
}

impl Stage {
    /// A credit found the end of the input.
    fn input_done(self) -> Stage {
        match self {
            Stage::Reading => Stage::InputDone,
            other => other,
        }
    }

    /// A credit came back unrun.
    fn returned(self) -> Stage {
        match self {
            Stage::Reading | Stage::InputDone => Stage::Returned,
            other => other,
        }
    }
}

/// The consumer side shared by [`Imap`](super::Imap) and
/// [`ImapUnordered`](super::ImapUnordered).
pub(super) struct Consumer<'a, R> {
    shared: Arc<Exchange<R>>,
    input: InputSide<'a, R>,
    /// Stalled reads rescued so far: the epoch of new credits.
    rescues: u64,
    /// One-item credits still to issue after the last rescue, and how many
    /// the last rescue pinned (doubling with each).
    pin: usize,
    pin_len: usize,
    /// A credit was refused (the pool closed): credits run on this thread,
    /// which reads the input itself.
    inline: bool,
    /// Refused credits, run here one at a time once no other credit is
    /// out: a credit still out may be reading (and stalled), and this
    /// thread, waiting for the read token, could not rescue it.
    refused: VecDeque<Box<dyn Job + 'a>>,
    /// Credits the pool accepted, which this thread may take back and run
    /// while it would wait (`help`).
    issued: TakeBack<'a>,
    queue: Queue<'a>,
    workers: usize,
    chunksize: Option<usize>,
    buffer: Option<usize>,
    stage: Stage,
    chunk: usize,
    window: Window<R>,
    current: Cursor<R>,
    current_end: Option<End>,
    /// Items of credits issued whose chunk was not yet handed out.
    read_ahead: usize,
    /// Credits issued that have not reported.
    credits_out: usize,
    /// Unordered: an input panic waits until every earlier chunk is out.
    input_panic: Option<Payload>,
    /// The input's size hint when the iterator was made.
    input_hint: (usize, Option<usize>),
    /// Results moved into `current` so far.
    handed: usize,
    /// When this consumer first saw its pool terminated.
    terminated_seen: Option<Instant>,
}

impl<'a, R> Consumer<'a, R> {
    pub(super) fn new(
        shared: Arc<Exchange<R>>,
        input: InputSide<'a, R>,
        queue: Queue<'a>,
        ordered: bool,
        workers: usize,
        input_hint: (usize, Option<usize>),
    ) -> Self {
        Consumer {
            shared,
            input,
            rescues: 0,
            pin: 0,
            pin_len: 0,
            inline: false,
            refused: VecDeque::new(),
            issued: TakeBack::new(),
            queue,
            workers,
            chunksize: None,
            buffer: None,
            stage: Stage::NotStarted,
            chunk: 1,
            window: Window::new(ordered),
            current: Cursor::default(),
            current_end: None,
            read_ahead: 0,
            credits_out: 0,
            input_panic: None,
            input_hint,
            handed: 0,
            terminated_seen: None,
        }
    }
}

impl<'a, R> Consumer<'a, R> {
    pub(super) fn set_chunksize(&mut self, n: usize) {
        assert!(
            self.stage == Stage::NotStarted,
            "parpool: chunksize() must be called before the first next()"
        );
        assert!(n > 0, "parpool: chunksize must be at least 1");
        self.chunksize = Some(n);
    }

    pub(super) fn set_buffer(&mut self, n: usize) {
        assert!(
            self.stage == Stage::NotStarted,
            "parpool: buffer() must be called before the first next()"
        );
        assert!(n > 0, "parpool: buffer must be at least 1");
        self.buffer = Some(n);
    }

    fn next_chunk_size(&mut self) -> usize {
        if self.pin > 0 {
            self.pin -= 1;
            return 1;
        }
        // This thread reads the input itself if the pool refuses the
        // credit: a chunk of more than one item would leave it waiting in
        // the input's `next()` for the results of items it holds, if the
        // input waits on this stream's results (nobody could rescue them).
        let registry = &self.shared.registry;
        let inline = self.inline || (!registry.is_running() && !registry.is_current_worker());
        if inline && !self.input.never_waits {
            return 1;
        }
        // Within `1..=MAX_CHUNK` (`max_chunk_for`).
        let max = self.input.max_chunk;
        if let Some(c) = self.chunksize {
            return c.min(max);
        }
        let est = self.shared.ns_per_item.load(Ordering::Relaxed);
        self.chunk = adapt_chunk(self.chunk, est, self.buffer, self.workers).min(max);
        self.chunk
    }

    /// Issues credits while the read-ahead allows: at most the buffer (by
    /// default `BUFFER_CHUNKS_PER_WORKER` chunks per worker), and never more
    /// than `MAX_READ_AHEAD` items, whatever the settings. A credit is never
    /// larger than the read-ahead limit, and at most
    /// `MAX_CREDITS_PER_WORKER` credits per worker are out at once.
    fn top_up(&mut self) {
        if self.stage == Stage::NotStarted {
            self.stage = Stage::Reading;
        }
        let registry = Arc::clone(&self.shared.registry);
        if !self.refused.is_empty() {
            if self.credits_out <= self.refused.len() {
                // Only refused credits are out. One runs; its results go
                // out before this thread reads more: an input may wait for
                // them.
                if let Some(job) = self.refused.pop_front() {
                    job.run(&registry);
                    self.absorb();
                }
            }
            return;
        }
        while self.stage == Stage::Reading {
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
            if registry.is_terminated() && !self.shared.detached {
                self.stage = self.stage.returned();
                break;
            }
            let credit = (self.input.make_job)(chunk, self.rescues);
            self.read_ahead += chunk;
            self.credits_out += 1;
            if !self.submit(credit) {
                self.top_up();
                break;
            }
        }
    }

    /// Queues a credit; `false` if the pool refused it (closed, or
    /// terminated just now): the credit then runs here, and reports like
    /// any other, once only refused credits are out.
    fn submit(&mut self, credit: Box<dyn Credit<'a> + 'a>) -> bool {
        let registry = &self.shared.registry;
        if self.inline && !registry.is_running() && !registry.is_current_worker() {
            // Refused before, and the pool would refuse again (it never
            // runs again; only its own workers may still queue work): no
            // second refusal, with its wake-up call, and no wrapper.
            self.refused.push_back(credit.into_job());
            return false;
        }
        // Into the slot of a wrapper still queued, whose credit this
        // thread took back, if there is one: the queue does not grow with
        // take-backs.
        let queue = &self.queue;
        match self.issued.issue(credit, |job| queue.submit(job)) {
            Ok(()) => true,
            Err(job) => {
                self.inline = true;
                self.refused.push_back(job);
                false
            }
        }
    }

    /// Takes in what the credits reported; how many reports.
    fn absorb(&mut self) -> usize {
        let mut q = lock(&self.shared.queue);
        let took = q.arrived.len();
        for d in q.arrived.drain(..) {
            self.credits_out -= 1;
            if let Some(total) = d.total {
                self.stage = self.stage.input_done();
                self.window.set_total(total);
            }
            match d.report {
                Report::Chunk { seq, results, end } => {
                    self.window.insert(seq, (d.credit, results, end));
                }
                Report::Exhausted => {
                    self.stage = self.stage.input_done();
                    self.read_ahead -= d.credit;
                }
                Report::Returned => {
                    self.stage = self.stage.returned();
                    self.read_ahead -= d.credit;
                }
            }
        }
        took
    }

    /// Makes the next ready chunk current; `false` if none is here.
    fn take_next_ready(&mut self) -> bool {
        match self.window.next_ready() {
            Some((credit, results, end)) => {
                self.read_ahead -= credit;
                self.handed += results.len();
                let emptied = self.current.replace(results);
                self.shared.spare.give(emptied);
                self.current_end = Some(end);
                true
            }
            None => false,
        }
    }

    /// Blocks until news may have arrived, or the deadline. Each time a
    /// wait times out (at least every `STALL`, and also at the caller's
    /// deadline, so short `next_timeout` calls in a loop probe too), probes
    /// the read in progress and rescues its items if it stalled (an input
    /// waiting for results of the very items the read holds: see
    /// `stash.rs`). Called with nothing left to hand out, so rescued items
    /// go out at once, in order: they are the first ones of the chunk
    /// wanted next.
    fn wait_or_rescue(&mut self, deadline: Deadline) -> Result<(), Stop> {
        // A pool that never rescues (it has an initializer) waits as it
        // always did: each timed-out wait of a consumer on a worker counts
        // it blocked again and may start a spare.
        let until = if self.input.may_rescue {
            deadline.min(Deadline::after(STALL))
        } else {
            deadline
        };
        match self.wait_once(until) {
            Err(Stop::Timeout) => {
                match self.after_terminate() {
                    AfterTerminate::Stuck => {
                        self.finish();
                        return Err(Stop::Cancelled);
                    }
                    AfterTerminate::News => return Ok(()),
                    AfterTerminate::Wait | AfterTerminate::NotTerminated => {}
                }
                let want = match self.window.want() {
                    Want::Seq(seq) => Some(seq),
                    _ => None,
                };
                let rescued = if self.input.may_rescue {
                    (self.input.rescue)(&self.shared, want)
                } else {
                    None
                };
                match rescued {
                    Some((results, end)) => {
                        // One-item credits for a while, longer after each
                        // rescue; then chunks grow again from one item.
                        self.rescues += 1;
                        self.pin_len = (self.pin_len * 2).clamp(PIN_AFTER_RESCUE, PIN_MAX);
                        self.pin = self.pin_len;
                        self.chunk = 1;
                        self.handed += results.len();
                        let emptied = self.current.replace(results);
                        self.shared.spare.give(emptied);
                        self.current_end = Some(end);
                        Ok(())
                    }
                    None if deadline.has_passed() => Err(Stop::Timeout),
                    None => Ok(()),
                }
            }
            Err(Stop::GaveUp) => {
                // Subtle: the stream must end here. Returning `Ok` (news
                // may have come) or `Timeout` with an untimed deadline
                // would have `fill` wait again, reach the same dead end
                // and give up again: a loop of 10 ms rechecks, for good.
                self.finish();
                Err(Stop::GaveUp)
            }
            other => other,
        }
    }

    /// Instead of waiting, runs the oldest credit no worker has started
    /// yet, as a map's caller runs chunks: on a busy machine the stream then
    /// no longer waits for a worker to get a CPU. Only in untimed blocking
    /// waits (a deadline is honoured; a poll must not run user code in the
    /// caller's executor), over inputs that never wait (this thread reads:
    /// an input waiting for this stream's results would wait forever), and
    /// on a pool with an initializer only on its own workers once their
    /// initializer returned (`f` may need the thread-local state it set
    /// up). Returns whether it ran one.
    fn help(&mut self, mode: &Mode<'_>) -> bool {
        let Mode::Block(deadline) = mode else {
            return false;
        };
        if !(deadline.is_never() && self.input.never_waits) {
            return false;
        }
        let registry = Arc::clone(&self.shared.registry);
        if !self.input.may_rescue && !crate::worker::current_is_initialized(&registry) {
            return false;
        }
        // Bounded like any inlining: a chain of imaps nested in `f` would
        // otherwise recurse on this thread's stack without limit.
        park::nested(&registry, || self.run_taken_back(&registry)).unwrap_or(false)
    }

    /// Runs the oldest credit no worker has started, if the chunk it reads
    /// is the one this thread waits for: every chunk read so far was
    /// handed out (checked under the input lock). So `f` never runs here on
    /// an item after the one wanted, which might wait for what the caller
    /// does once it has that item (drop the stream, send a signal), and the
    /// wait is never longer than the wanted chunk. A credit that would read
    /// a later chunk goes back to the queue. Whether it ran one.
    fn run_taken_back(&mut self, registry: &crate::registry::Registry) -> bool {
        let Some(credit) = self.issued.take() else {
            return false;
        };
        // This thread runs `f`: what an executor here awaits is put aside.
        let _suspended = crate::exec_wait::suspend();
        match credit.run_if_next(self.window.handed(), registry) {
            Ok(()) => true,
            Err(credit) => {
                self.submit(credit);
                false
            }
        }
    }

    /// A chunk was cancelled. If a task's panic terminated the pool
    /// (`PanicPolicy::Terminate`), that panic is the cause, and the stream
    /// raises it rather than the cancellation: its chunk may be here
    /// already, behind this one (another credit's chunk, stopped by the
    /// terminate, can come first), or still on its way. Blocking, this
    /// waits for the credits still out, unless one is stuck in the input;
    /// polled, it looks only at what arrived.
    fn terminating_panic(&mut self, may_wait: bool) -> Option<Payload> {
        if self.shared.registry.config.on_panic != crate::PanicPolicy::Terminate {
            return None;
        }
        loop {
            // Takes in what arrived, within the same bound as every wait
            // after the terminate.
            let next = self.after_terminate();
            if let Some(p) = self.window.take_panic() {
                return Some(p);
            }
            match next {
                AfterTerminate::News => {}
                // Only credits on workers report by themselves: refused
                // ones run on this thread, in `top_up`, which this loop
                // never calls.
                AfterTerminate::Wait if may_wait && self.credits_out > self.refused.len() => {
                    // A wait that gave up cannot be made again.
                    if let Err(Stop::GaveUp) = self.wait_once(Deadline::after(STALL)) {
                        return None;
                    }
                }
                _ => return None,
            }
        }
    }

    /// After `terminate`: takes in what arrived, and tells what to do.
    /// The stream ends now as cancelled only if nothing arrived and a
    /// credit still out is stuck in the input (user code that may never
    /// return; its results would be dropped anyway). Credits that map or
    /// deliver are waited for, as any running task is: the one whose panic
    /// terminated the pool (`PanicPolicy::Terminate`) may not have
    /// delivered yet, and its panic, not a cancellation, is what the stream
    /// must raise (it raised `Cancelled` when the consumer's probe came
    /// first).
    fn after_terminate(&mut self) -> AfterTerminate {
        if !self.shared.registry.is_terminated() || self.shared.detached {
            return AfterTerminate::NotTerminated;
        }
        let since = *self.terminated_seen.get_or_insert_with(Instant::now);
        if self.absorb() > 0 {
            // Look at it before waiting: the last report may have ended
            // the stream, and no delivery would wake a wait then.
            AfterTerminate::News
        } else if (self.input.is_reading)() || since.elapsed() >= TERMINATING_PANIC_WAIT {
            // (A bound as well: credits still out after a second are not
            // waited for, whatever keeps them.)
            AfterTerminate::Stuck
        } else {
            AfterTerminate::Wait
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
        match park::wait(&News { core: self, seen }, deadline) {
            park::Waited::Done => Ok(()),
            park::Waited::TimedOut => Err(Stop::Timeout),
            park::Waited::GaveUp => Err(Stop::GaveUp),
        }
    }

    /// Registers the waker; returns `true` if news is already there.
    ///
    /// Subtle: a waker's `clone` and `drop` are the executor's code, and
    /// may re-enter the pool (`terminate`, whose drain has this stream's
    /// queued credits report to this mailbox). So neither runs with the
    /// mailbox locked: the clone is made before, and the waker it replaces
    /// is dropped (contained) after.
    fn register(&self, waker: &Waker) -> bool {
        let mut new = None;
        loop {
            let mut q = lock(&self.shared.queue);
            if self.window.arrived_wanted(&q) {
                drop(q);
                panic::drop_discarding(new);
                return true;
            }
            let old = match (&q.waker, new.take()) {
                (Some(w), new) if w.will_wake(waker) => new,
                (_, Some(new)) => q.waker.replace(new),
                (_, None) => {
                    drop(q);
                    new = Some(waker.clone());
                    continue;
                }
            };
            q.want = self.window.want();
            drop(q);
            panic::drop_discarding(old);
            return false;
        }
    }

    /// This stream's identity while it waits in an executor (`exec_wait`).
    fn wait_key(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    fn finish(&mut self) {
        self.stage = Stage::Finished;
        self.shared.cancelled.store(true, Ordering::Relaxed);
        (self.input.release_input)();
    }

    fn advance(&mut self, mode: Mode<'_>) -> Result<Option<R>, Stop> {
        Ok(if self.fill(mode)? {
            self.current.next()
        } else {
            None
        })
    }

    /// Makes sure the current chunk has a result to hand out: `true` if it
    /// has, `false` at the end of the stream.
    fn fill(&mut self, mode: Mode<'_>) -> Result<bool, Stop> {
        loop {
            if self.current.len() > 0 {
                return Ok(true);
            }
            match self.current_end.take() {
                Some(End::Panicked(p)) => {
                    self.finish();
                    return Err(Stop::Panic(p));
                }
                Some(End::Cancelled) => {
                    let cause = self.terminating_panic(matches!(mode, Mode::Block(_)));
                    self.finish();
                    return Err(cause.map_or(Stop::Cancelled, Stop::Panic));
                }
                Some(End::InputPanicked(p)) => {
                    if self.window.is_ordered() {
                        self.finish();
                        return Err(Stop::Panic(p));
                    }
                    self.input_panic = Some(p);
                }
                Some(End::Complete) | None => {}
            }
            if self.stage == Stage::Finished {
                return Ok(false);
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
            let all_handed = self.window.all_handed();
            if self.credits_out == 0 || all_handed {
                // Read before `finish`, which forgets how the input ended.
                let complete = all_handed || self.stage == Stage::InputDone;
                self.finish();
                if let Some(p) = self.input_panic.take() {
                    return Err(Stop::Panic(p));
                }
                return if complete {
                    Ok(false)
                } else {
                    Err(Stop::Cancelled)
                };
            }
            if self.help(&mode) {
                continue;
            }
            match mode {
                Mode::Block(deadline) => self.wait_or_rescue(deadline)?,
                Mode::Poll(waker) => {
                    // As the blocking path does at its probe; what it took
                    // in is looked at before this waits (the last report
                    // may have ended the stream: no delivery would wake it).
                    match self.after_terminate() {
                        AfterTerminate::Stuck => {
                            self.finish();
                            return Err(Stop::Cancelled);
                        }
                        AfterTerminate::News => continue,
                        AfterTerminate::Wait | AfterTerminate::NotTerminated => {}
                    }
                    if !self.register(waker) {
                        // On a worker, the executor may block this thread
                        // now: a stand-in runs its pool's queue. If none
                        // can come, this thread runs the queue (its
                        // credits among it) itself, and looks again.
                        let key = self.wait_key();
                        if crate::exec_wait::pending(key, waker, true) {
                            match crate::exec_wait::help(key, waker, |_| false) {
                                Helped::PollAgain => {
                                    crate::exec_wait::resumed(key);
                                    continue;
                                }
                                Helped::Pending => {}
                                Helped::GaveUp => {
                                    // As a blocking wait's give-up: the
                                    // stream ends, and is not awaited here
                                    // any more.
                                    crate::exec_wait::resumed(key);
                                    self.finish();
                                    return Err(Stop::GaveUp);
                                }
                            }
                        }
                        return Err(Stop::Pending);
                    }
                }
            }
        }
    }

    #[inline]
    pub(super) fn next_blocking(&mut self) -> Option<R> {
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
            Err(Stop::GaveUp) => None,
            Err(stop) => raise(stop),
        }
    }

    /// Internal iteration: every result in turn, each chunk drained in one
    /// tight loop. A panic of `g` leaves the rest of the chunk to the
    /// cursor, which drops it (contained) with the consumer.
    pub(super) fn fold<B>(&mut self, mut acc: B, mut g: impl FnMut(B, R) -> B) -> B {
        loop {
            acc = self.current.fold(acc, &mut g);
            match self.next_slow() {
                Some(x) => acc = g(acc, x),
                None => return acc,
            }
        }
    }

    /// The rest of the current chunk, or the next chunk, as one batch;
    /// `None` at the end. Panics as [`Self::next_blocking`] does.
    pub(super) fn next_batch(&mut self) -> Option<Vec<R>> {
        match self.fill(Mode::Block(Deadline::NEVER)) {
            Ok(true) => Some(self.current.take_rest()),
            Ok(false) | Err(Stop::GaveUp) => None,
            Err(stop) => raise(stop),
        }
    }

    pub(super) fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>, TaskError> {
        self.advance(Mode::Block(Deadline::after(timeout)))
            .map_err(|stop| match stop {
                Stop::Timeout | Stop::Pending | Stop::GaveUp => TaskError::Timeout,
                Stop::Cancelled => TaskError::Cancelled,
                Stop::Panic(p) => TaskError::Panicked(panic::message(p.as_ref())),
            })
    }

    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<R>> {
        crate::exec_wait::resumed(self.wait_key());
        match self.advance(Mode::Poll(cx.waker())) {
            Ok(x) => Poll::Ready(x),
            Err(Stop::GaveUp) => Poll::Ready(None),
            Err(Stop::Pending) => Poll::Pending,
            Err(stop) => raise(stop),
        }
    }

    /// Assumes the stream completes: after a task panic or a cancellation
    /// it yields fewer items than the input had.
    pub(super) fn size_hint(&self) -> (usize, Option<usize>) {
        if self.stage == Stage::Finished {
            return (self.current.len(), Some(self.current.len()));
        }
        let done = self.handed - self.current.len();
        let (lo, hi) = self.input_hint;
        (lo.saturating_sub(done), hi.map(|h| h.saturating_sub(done)))
    }

    /// The `Debug` output of the public iterator named `name`.
    pub(super) fn fmt_debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("chunksize", &self.chunksize)
            .field("buffer", &self.buffer)
            .field("credits_out", &self.credits_out)
            .finish_non_exhaustive()
    }
}

/// Re-raises a task's panic, or reports cancellation as a panic, in the consumer.
fn raise(stop: Stop) -> ! {
    match stop {
        Stop::Panic(p) => p.resume(),
        _ => panic!(
            "parpool: imap stopped early: {} (use next_timeout() to get this as an error)",
            TaskError::Cancelled
        ),
    }
}

/// What a waiting consumer waits for: a delivery after the `seen`-th, or
/// one it wants already waiting.
struct News<'c, 'a, R> {
    core: &'c Consumer<'a, R>,
    seen: usize,
}

impl<R> Waitable for News<'_, '_, R> {
    /// News arrived since `seen` was read, or a wanted delivery is waiting
    /// (it may have arrived between the consumer's last look and `seen`).
    fn done(&self) -> bool {
        let shared = &self.core.shared;
        shared.arrivals.load(Ordering::Acquire) != self.seen
            || self.core.window.arrived_wanted(&lock(&shared.queue))
    }

    fn block(&self, timeout: Option<Duration>) {
        let shared = &self.core.shared;
        let mut q = lock(&shared.queue);
        if self.core.window.arrived_wanted(&q) {
            return;
        }
        q.want = self.core.window.want();
        q = crate::sync::wait(&shared.cond, q, timeout);
        q.want = Want::Nothing;
    }

    /// Its own later chunks are in the queue: `f` must not run here on an
    /// item after the one wanted while another thread can run them.
    fn runs_jobs_only_as_a_last_resort(&self) -> bool {
        true
    }

    /// Ending early is sound: nothing this wait guards is borrowed by the
    /// credits (they share the exchange by `Arc`), and the stream's own
    /// early end (`Consumer::finish`) is the one a cancellation takes.
    fn gives_up_while_unwinding(&self) -> bool {
        true
    }
}

impl<R> Drop for Consumer<'_, R> {
    fn drop(&mut self) {
        // A stream dropped while pending is no longer awaited here.
        crate::exec_wait::ended(self.wait_key());
        self.shared.cancelled.store(true, Ordering::Relaxed);
        let ready = self.window.take_all();
        for (_, results, end) in ready {
            // Results nobody will read: dropped one by one, contained.
            panic::drop_all_discarding(results);
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
