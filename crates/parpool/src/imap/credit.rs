//! Credits: the worker side of an imap.
//!
//! A credit ([`PullJob`]) is a job that, on a worker, takes the right to read
//! the input ([`ReadToken`]), reads up to its size in items, tags them with
//! the next sequence number, gives the right back and maps them. It then
//! delivers one [`Delivery`] to the consumer's [`Mailbox`] in [`Exchange`] and
//! wakes the consumer if that is what it waits for ([`Want`]).
//!
//! Invariants:
//! - Every credit reports exactly once: a chunk (its results, and how it
//!   ended, [`End`]), or "input exhausted", or "returned" (dropped unrun, from
//!   its `Drop`). So the consumer counts credits out and never waits for one
//!   that will not report.
//! - Sequence numbers are taken under the input lock, in reading order, so
//!   they are contiguous and follow input order.
//! - A credit checks the shared cancellation flag before reading and while
//!   it maps (every item while items are slow, about every 10 µs for tiny
//!   ones).

use super::buffers::Spare;
use super::stash::{Reader, Stash};
use crate::cancel::{self, CancelFlag};
use crate::job::Job;
use crate::panic::{self, Payload};
use crate::park::{self, Deadline, Waitable};
use crate::registry::Registry;
use crate::scope::ScopeState;
use crate::sync::lock;
use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

/// How often a running chunk checks for cancellation, in time.
const CHECK_EVERY_NS: u64 = 10_000;
/// ... and at most this many items apart.
const MAX_BLOCK: usize = 1024;

/// How a chunk ended.
pub(super) enum End {
    Complete,
    Panicked(Payload),
    Cancelled,
    /// All items ran; then the input iterator panicked.
    InputPanicked(Payload),
}

/// What one credit reports.
pub(super) enum Report<R> {
    Chunk { seq: u64, results: Vec<R>, end: End },
    Exhausted,
    Returned,
}

pub(super) struct Delivery<R> {
    /// The size of the credit, released when the chunk is handed out.
    pub(super) credit: usize,
    /// The input had no more items after this credit read; then how many
    /// chunks it made in all (sequence numbers `0..total`).
    pub(super) total: Option<u64>,
    pub(super) report: Report<R>,
}

#[derive(PartialEq, Eq, Clone, Copy)]
pub(super) enum Want {
    Nothing,
    Seq(u64),
    Any,
}

pub(super) struct Mailbox<R> {
    pub(super) arrived: VecDeque<Delivery<R>>,
    pub(super) want: Want,
    pub(super) waker: Option<Waker>,
}

/// Where credits deliver and the consumer collects: the mailbox, the
/// stream's cancellation flag, and what both sides share.
pub(super) struct Exchange<R> {
    pub(super) queue: Mutex<Mailbox<R>>,
    pub(super) cond: Condvar,
    /// Deliveries so far; a waiting consumer spins on it before sleeping.
    pub(super) arrivals: AtomicUsize,
    pub(super) cancelled: AtomicBool,
    pub(super) ns_per_item: AtomicU64,
    pub(super) registry: Arc<Registry>,
    pub(super) scope: Option<Arc<ScopeState>>,
    /// Made on a pool that was already terminated: every credit runs on
    /// the consumer's thread, and `terminate` does not stop them.
    pub(super) detached: bool,
    /// Result buffers the consumer emptied, for the credits to reuse.
    pub(super) spare: Spare<R>,
}

impl<R> Exchange<R> {
    pub(super) fn new(registry: Arc<Registry>, scope: Option<Arc<ScopeState>>) -> Self {
        Exchange {
            queue: Mutex::new(Mailbox {
                arrived: VecDeque::new(),
                want: Want::Nothing,
                waker: None,
            }),
            cond: Condvar::new(),
            arrivals: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            ns_per_item: AtomicU64::new(0),
            detached: registry.is_terminated(),
            registry,
            scope,
            spare: Spare::new(),
        }
    }

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
            q.waker.take()
        } else {
            None
        };
        drop(q);
        // Notified after the mutex is released, so the woken consumer does
        // not block on it; the credit holds the exchange's `Arc`.
        if wake {
            self.cond.notify_one();
            crate::sleep::handed_off();
        }
        if let Some(w) = waker {
            // An executor's waker is foreign code: contained, and not a task
            // panic (no count, no policy).
            if let Err(p) = panic::contain(|| w.wake()) {
                drop(p);
            }
        }
    }

    /// Whether credits should stop: the stream was dropped or ended, or
    /// the pool was terminated (unless the stream was made after it). Also
    /// the `CancelFlag` answer, for `cancelled()` inside `f`.
    #[inline]
    fn should_stop(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
            || (self.registry.is_terminated_relaxed() && !self.detached)
    }
}

impl<R: Send> CancelFlag for Exchange<R> {
    /// The stream's own stop condition, `terminate` of its pool included:
    /// items may be mapped off the pool's workers (a rescue, on the
    /// consumer), where the token stack cannot tell which pool to follow.
    fn is_cancelled(&self) -> bool {
        self.should_stop()
    }
}

impl<R> Drop for Exchange<R> {
    fn drop(&mut self) {
        // Outcomes nobody will read: in a scope, their panics re-raise there.
        // Results are dropped one by one, contained: this may run on a worker.
        let q = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
        // An executor's waker is foreign code, as when it is woken.
        panic::drop_discarding(q.waker.take());
        for d in q.arrived.drain(..) {
            if let Report::Chunk { end, results, .. } = d.report {
                panic::drop_all_discarding(results);
                if let Some(scope) = &self.scope {
                    report_end(scope, end);
                }
            }
        }
    }
}

pub(super) fn report_end(scope: &ScopeState, end: End) {
    if let End::Panicked(p) | End::InputPanicked(p) = end {
        scope.report_panic(p);
    }
}

/// Whether `I`'s `next()` provably never waits: std's integer ranges
/// (also under `take`) and the owning iterators of `Vec` and `VecDeque`.
/// Such inputs never stall a read, so they skip the per-item publication
/// that lets a consumer rescue one (`stash.rs`), which costs about 8
/// instructions per item and the vectorised copy (W1 in `docs/design.md`).
/// Only `'static` types can be asked; every other input is published.
pub(crate) fn never_waits<I>() -> bool
where
    I: Iterator + 'static,
    I::Item: 'static,
{
    use std::any::TypeId;
    use std::iter::Take;
    use std::ops::{Range, RangeFrom, RangeInclusive};
    let id = TypeId::of::<I>();
    macro_rules! any_range {
        ($($t:ty),*) => {
            false $(
                || id == TypeId::of::<Range<$t>>()
                || id == TypeId::of::<RangeFrom<$t>>()
                || id == TypeId::of::<RangeInclusive<$t>>()
                || id == TypeId::of::<Take<Range<$t>>>()
                || id == TypeId::of::<Take<RangeFrom<$t>>>()
            )*
        };
    }
    any_range!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize)
        || id == TypeId::of::<std::vec::IntoIter<I::Item>>()
        || id == TypeId::of::<std::collections::vec_deque::IntoIter<I::Item>>()
}

/// The input iterator and the next sequence number, under one lock.
struct Input<I> {
    iter: Option<I>,
    next_seq: u64,
}

/// What every credit of one imap shares: its input, its function, and
/// emptied item buffers to reuse (fresh large buffers cost page faults).
pub(super) struct Source<I: Iterator, F> {
    /// Held while the input is read, which runs user code that may wait.
    reader: ReadToken,
    input: Mutex<Input<I>>,
    /// Dropped only by `Source`'s `Drop`, contained.
    f: ManuallyDrop<F>,
    spare: Spare<I::Item>,
    /// What the reading credit has read so far, for a consumer to rescue.
    stash: Stash<I::Item>,
    /// The input is one whose `next()` provably never waits
    /// ([`never_waits`]): it is read in bulk, without the stash.
    never_waits: bool,
    /// Where a panic of the input's or `f`'s `Drop` goes, whichever thread
    /// drops the last reference: the imap's scope, or else its pool (a
    /// stray panic).
    registry: Arc<Registry>,
    scope: Option<Arc<ScopeState>>,
}

impl<I: Iterator, F> Source<I, F> {
    pub(super) fn new(
        iter: I,
        f: F,
        never_waits: bool,
        registry: Arc<Registry>,
        scope: Option<Arc<ScopeState>>,
    ) -> Self {
        Source {
            reader: ReadToken::new(),
            input: Mutex::new(Input {
                iter: Some(iter),
                next_seq: 0,
            }),
            f: ManuallyDrop::new(f),
            spare: Spare::new(),
            stash: Stash::new(),
            never_waits,
            registry,
            scope,
        }
    }

    /// Maps `items` (emptied) with `f` on this thread, for a credit or a
    /// rescuing consumer: counts them running, lets `cancelled()` see the
    /// stream's flag, checks for a stop about every 10 µs, and records the
    /// time per item that sizes later chunks. Items a stop or a panic left
    /// unmapped are dropped, contained.
    fn map_items<R>(
        &self,
        shared: &Exchange<R>,
        registry: &Registry,
        items: &mut Vec<I::Item>,
    ) -> (Vec<R>, End)
    where
        F: Fn(I::Item) -> R,
        R: Send,
    {
        let counters = registry.counters();
        let taken = items.len();
        counters.running(taken as isize);
        let mut results = shared.spare.take(taken);
        let mut drain = items.drain(..);
        let f = &*self.f;
        // Check for cancellation every `block` items: every item while items
        // are slow or of unknown cost, about every 10 µs for tiny ones.
        let est = shared.ns_per_item.load(Ordering::Relaxed);
        let block = match CHECK_EVERY_NS.checked_div(est) {
            Some(n) => usize::try_from(n).unwrap_or(MAX_BLOCK).clamp(1, MAX_BLOCK),
            None => 1,
        };
        let started = Instant::now();
        // The flag follows `terminate` itself (`should_stop`).
        let end = cancel::with_token(shared, false, || {
            panic::contain(|| {
                while drain.len() > 0 {
                    if shared.should_stop() {
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
            })
        });
        // Items a stop left unmapped; their `Drop` is user code.
        let unused = drain.len();
        let end = match (end, panic::drop_all_contained(drain)) {
            (End::Complete | End::Cancelled, Some(p)) => {
                registry.task_panicked(&p);
                End::Panicked(p)
            }
            (end, _) => end,
        };
        counters.running(-(taken as isize));
        counters.completed(taken - unused);
        if !results.is_empty() {
            let ns = started.elapsed().as_nanos() / results.len() as u128;
            shared
                .ns_per_item
                .store(ns.clamp(1, u64::MAX as u128) as u64, Ordering::Relaxed);
        }
        (results, end)
    }

    /// The consumer's side of a stalled read (see `stash.rs`): takes the
    /// items the reading credit published for chunk `want` (any chunk for
    /// `None`), if the read stalled, and maps them here. `None` if there
    /// was nothing to take.
    pub(super) fn rescue<R>(&self, shared: &Exchange<R>, want: Option<u64>) -> Option<(Vec<R>, End)>
    where
        F: Fn(I::Item) -> R,
        R: Send,
    {
        let mut items = self.stash.rescue(want);
        if items.is_empty() {
            return None;
        }
        Some(self.map_items(shared, &shared.registry, &mut items))
    }

    /// Whether a credit holds the read token: it reads the input (user
    /// code that may never return).
    pub(super) fn is_reading(&self) -> bool {
        !self.reader.done()
    }

    /// Drops the unread rest of the input, contained (its `Drop` is user
    /// code). Credits that come later find the input exhausted. If a credit
    /// is reading, it is left alone: its `next()` may wait for anything,
    /// even for this stream's results (which will not come now), and the
    /// input then goes with the last reference to the `Source`, contained
    /// as well.
    pub(super) fn release_input(&self) {
        let iter = match self.reader.try_acquire() {
            Some(_reading) => lock(&self.input).iter.take(),
            None => return,
        };
        panic::drop_discarding(iter);
    }
}

impl<I: Iterator, F> Drop for Source<I, F> {
    /// The last reference goes on the consumer's thread (which may be
    /// unwinding: its own closure panicked in `for_each`, say) or on a
    /// worker (a credit still out when the stream was dropped early),
    /// depending on timing. So the input's and the mapped function's `Drop`
    /// run contained, and their panic goes to the same place on either
    /// thread: to the scope, which re-raises it when it ends, or else to the
    /// pool as a stray panic (counted, and subject to its panic policy).
    /// Dropping a stream never panics.
    fn drop(&mut self) {
        let iter = self
            .input
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter
            .take();
        let input_panic = panic::drop_contained(iter);
        // SAFETY: `f` is never used again: this is `Source`'s own `Drop`.
        let f = unsafe { ManuallyDrop::take(&mut self.f) };
        let f_panic = panic::drop_contained(f);
        if let Some(p) = input_panic.or(f_panic) {
            match &self.scope {
                Some(scope) => scope.report_panic(p),
                None => self.registry.stray_panic(p),
            }
        }
    }
}

/// How long a wait for a bulk read stays uncounted: far beyond a chunk's
/// read (65 536 items of a `Vec` or range: well under 1 ms unless they are
/// huge) and a preemption on a busy machine (a 4 MiB read beside 4 busy
/// loops on 2 cores outlasted 10 ms in 2 runs of 12), short enough for
/// the rare read that runs user code which waits for the pool.
const BULK_READ_LIMIT: Duration = Duration::from_millis(100);

/// The right to read the input: one credit at a time. The input's own mutex
/// is taken only by the token's holder, so no thread ever blocks on it;
/// waiting for the token goes through [`park`], so a worker that waits while
/// another credit's read is stuck in user code (an input iterator that waits
/// for work of the same pool) counts as blocked and the pool sends a spare.
/// Over an input that never waits ([`never_waits`]) a read is a bulk move of
/// at most a chunk, which ends by itself: a spare could not make it end
/// sooner (it is only slow when its thread was preempted) and would then
/// compete for the CPU. So a wait for such reads counts as blocked only once
/// the read holding the token is older than [`BULK_READ_LIMIT`], or this
/// waiter has waited that long in all (for one read or several): the holder
/// may yet run user code (a panic hook, if the range overflows), and
/// unrelated work queued behind the waiting credits needs a thread.
struct ReadToken {
    state: Mutex<TokenState>,
    cond: Condvar,
}

#[derive(Default)]
struct TokenState {
    busy: bool,
    /// Threads blocked waiting for the token: only then does a release
    /// notify (a notification is a system call, once per read otherwise).
    waiters: usize,
    /// When the read holding the token began.
    since: Option<Instant>,
}

struct Reading<'t>(&'t ReadToken);

impl ReadToken {
    fn new() -> Self {
        ReadToken {
            state: Mutex::new(TokenState::default()),
            cond: Condvar::new(),
        }
    }

    /// The token if it is free; `None` while a credit reads.
    fn try_acquire(&self) -> Option<Reading<'_>> {
        let mut state = lock(&self.state);
        if state.busy {
            return None;
        }
        state.busy = true;
        state.since = Some(Instant::now());
        Some(Reading(self))
    }

    /// Waits for the token; `bulk`: the input never waits (see above).
    fn acquire(&self, bulk: bool) -> Reading<'_> {
        // Read from the clock only once the token is found taken.
        let mut until = None;
        loop {
            if let Some(reading) = self.try_acquire() {
                return reading;
            }
            if !bulk
                || self.must_count(*until.get_or_insert_with(|| Instant::now() + BULK_READ_LIMIT))
            {
                // Never gives up (the token guards the input): done, or a
                // panic; the loop takes the token if nobody came first.
                let _ = park::wait(self, Deadline::NEVER);
            }
        }
    }

    /// Waits, uncounted, while the token is held by a read younger than
    /// [`BULK_READ_LIMIT`] and `until` (this waiter's own limit) has not
    /// passed. Returns `false` once the token is free, `true` once the
    /// wait must count.
    fn must_count(&self, until: Instant) -> bool {
        loop {
            let state = lock(&self.state);
            if !state.busy {
                return false;
            }
            let read_limit = state.since.map_or(until, |since| since + BULK_READ_LIMIT);
            let left = until
                .min(read_limit)
                .saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            drop(state);
            self.block(Some(left));
        }
    }
}

impl Waitable for ReadToken {
    fn done(&self) -> bool {
        !lock(&self.state).busy
    }

    fn block(&self, timeout: Option<Duration>) {
        let mut state = lock(&self.state);
        if state.busy {
            state.waiters += 1;
            let mut state = crate::sync::wait(&self.cond, state, timeout);
            state.waiters -= 1;
        }
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.busy = false;
        if state.waiters > 0 {
            // Under the mutex: a waiter counted itself under it before it
            // slept, so none can be missed.
            self.0.cond.notify_all();
        }
    }
}

/// A credit: read up to `credit` items, map them, report.
pub(super) struct PullJob<I: Iterator, F, R> {
    source: Arc<Source<I, F>>,
    shared: Arc<Exchange<R>>,
    credit: usize,
    /// The consumer's rescue count when it issued this credit (`stash.rs`).
    epoch: u64,
    delivered: bool,
}

impl<I: Iterator, F, R> PullJob<I, F, R> {
    pub(super) fn new(
        source: Arc<Source<I, F>>,
        shared: Arc<Exchange<R>>,
        credit: usize,
        epoch: u64,
    ) -> Self {
        PullJob {
            source,
            shared,
            credit,
            epoch,
            delivered: false,
        }
    }

    fn deliver(&mut self, total: Option<u64>, report: Report<R>) {
        self.delivered = true;
        self.shared.deliver(Delivery {
            credit: self.credit,
            total,
            report,
        });
    }
}

/// A credit as its consumer holds it, to take it back (`takeback.rs`).
pub(super) trait Credit<'a>: Job + 'a {
    /// Runs the credit here only if the chunk it reads will be number
    /// `seq` (checked under the input lock); else hands it back unrun.
    fn run_if_next(
        self: Box<Self>,
        seq: u64,
        registry: &Registry,
    ) -> Result<(), Box<dyn Credit<'a> + 'a>>;

    /// The credit as a plain job (no trait upcasting on the MSRV).
    fn into_job(self: Box<Self>) -> Box<dyn Job + 'a>;
}

impl<'a, I, F, T, R> Credit<'a> for PullJob<I, F, R>
where
    I: Iterator<Item = T> + Send + 'a,
    F: Fn(T) -> R + Send + Sync + 'a,
    T: Send + 'a,
    R: Send + 'a,
{
    fn run_if_next(
        self: Box<Self>,
        seq: u64,
        registry: &Registry,
    ) -> Result<(), Box<dyn Credit<'a> + 'a>> {
        match self.run_checked(registry, Some(seq)) {
            Some(unrun) => Err(unrun),
            None => Ok(()),
        }
    }

    fn into_job(self: Box<Self>) -> Box<dyn Job + 'a> {
        self
    }
}

impl<I, F, T, R> PullJob<I, F, R>
where
    I: Iterator<Item = T> + Send,
    F: Fn(T) -> R + Send + Sync,
    T: Send,
    R: Send,
{
    /// Runs the credit; with `only_seq`, only if the chunk it reads would
    /// be that one, else it comes back unrun (and reports nothing).
    fn run_checked(
        mut self: Box<Self>,
        registry: &Registry,
        only_seq: Option<u64>,
    ) -> Option<Box<Self>> {
        let shared = Arc::clone(&self.shared);
        if shared.should_stop() {
            return None; // Drop reports "returned"
        }
        let source = Arc::clone(&self.source);
        let mut items = source.spare.take(self.credit);
        let mut finished_iter = None;
        let (seq, total, mut input_panic, read_any) = {
            let reading = source.reader.acquire(source.never_waits);
            if shared.should_stop() {
                // Stopped while this credit waited for its turn: no read.
                return None; // Drop reports "returned"
            }
            let mut input = lock(&source.input);
            let seq = input.next_seq;
            if only_seq.is_some_and(|want| want != seq) {
                drop(input);
                source.spare.give(items);
                return Some(self);
            }
            let Some(iter) = input.iter.as_mut() else {
                let total = input.next_seq;
                drop(input);
                // Not under the token: delivering may wake the consumer's
                // executor, which is user code.
                drop(reading);
                self.deliver(Some(total), Report::Exhausted);
                return None;
            };
            let credit = self.credit;
            let (read, read_any) = if source.never_waits {
                // A `TrustedLen` extend: no publication per item.
                let read = panic::contain(|| {
                    items.extend(iter.by_ref().take(credit));
                    // Exhausted, or known to be (an exact size hint of 0
                    // saves the consumer a credit just to learn of the end;
                    // trusted only here, from std's own ranges).
                    items.len() < credit || iter.size_hint().1 == Some(0)
                });
                (read, !items.is_empty())
            } else {
                // Items are published as they are read: a consumer may
                // rescue them if the input stalls in `next()` (`stash.rs`).
                let mut reader = Reader::open(&source.stash, &mut items, seq, credit, self.epoch);
                // No shortcut through `size_hint` here: a user iterator's
                // hint may be wrong (safe code may lie), and trusting a
                // hint of "none left" cut such an input short, silently.
                let read = panic::contain(|| reader.read(iter));
                let read_any = reader.count() > 0;
                // Closes the read: `items` keeps what no rescuer took.
                drop(reader);
                (read, read_any)
            };
            let (input_done, input_panic) = match read {
                Ok(exhausted) => (exhausted, None),
                Err(p) => (true, Some(p)),
            };
            if input_done {
                // Dropped below, outside the lock: its `Drop` is user code.
                finished_iter = input.iter.take();
            }
            if read_any || input_panic.is_some() {
                input.next_seq += 1;
            }
            (
                seq,
                input_done.then_some(input.next_seq),
                input_panic,
                read_any,
            )
        };
        if let Some(p) = panic::drop_contained(finished_iter) {
            panic::keep_first(&mut input_panic, p);
        }
        // (Items a consumer rescued count as read: the chunk is delivered,
        // with the results of the rest, maybe none.)
        if !read_any && input_panic.is_none() {
            self.deliver(total, Report::Exhausted);
            return None;
        }
        let (results, end) = source.map_items(&shared, registry, &mut items);
        source.spare.give(items);
        let end = match (end, input_panic) {
            (End::Complete, Some(p)) => End::InputPanicked(p),
            (end, _) => end,
        };
        self.deliver(total, Report::Chunk { seq, results, end });
        None
    }
}

impl<I, F, T, R> Job for PullJob<I, F, R>
where
    I: Iterator<Item = T> + Send,
    F: Fn(T) -> R + Send + Sync,
    T: Send,
    R: Send,
{
    fn run(self: Box<Self>, registry: &Registry) {
        // Unconditional: nothing comes back.
        let _ = self.run_checked(registry, None);
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

#[cfg(test)]
mod tests {
    use super::never_waits;

    #[test]
    fn only_std_ranges_and_owning_collection_iterators_never_wait() {
        assert!(never_waits::<std::ops::Range<u64>>());
        assert!(never_waits::<std::ops::RangeInclusive<i8>>());
        assert!(never_waits::<std::iter::Take<std::ops::RangeFrom<usize>>>());
        assert!(never_waits::<std::vec::IntoIter<String>>());
        assert!(never_waits::<std::collections::vec_deque::IntoIter<u8>>());
        // A function or a channel may wait for anything.
        assert!(!never_waits::<
            std::iter::Map<std::ops::Range<u64>, fn(u64) -> u64>,
        >());
        assert!(!never_waits::<std::sync::mpsc::IntoIter<u64>>());
    }
}
