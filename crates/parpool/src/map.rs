//! The blocking map engine behind `map`, `starmap`, `try_map` and `map_async`.
//!
//! The calling thread and up to `workers` runner jobs claim chunks of input
//! indices from one atomic cursor and write each result straight into its
//! slot of the output `Vec`: no channel message, no lock and no allocation
//! per item. With automatic chunking the claims are *guided*: each takes a
//! fraction of what remains, so early chunks are large (little overhead) and
//! late ones small (good balance); the sizes are `chunking.rs`'s.
//!
//! Invariants:
//! - Every input index is claimed once; the output slot `i` is written at
//!   most once, by whoever claimed `i`.
//! - The caller returns (or unwinds) only after no runner can touch its stack
//!   any more. A runner enters through a *gate* (an atomic counter with a
//!   "closed" bit) and dereferences the caller's context only while inside.
//!   The caller closes the gate and waits until it is empty; a runner job
//!   that is popped later finds the gate closed and never touches the
//!   context. So the caller never waits for queued runners that have not
//!   started, and a `mem::forget` cannot skip the wait (it is not a handle
//!   that waits, it is the call itself).
//! - After a failure (panic or `Err`) at index `k`, no item after `k` is
//!   started; items before `k` still run, so `try_map` reports the error at
//!   the earliest failing position whatever the timing. A panic stops
//!   everything (`k = 0`).
//! - Runners on workers stop between items when the pool is terminated and
//!   hand the rest of their chunk back. A blocking map's caller finishes it,
//!   so a blocking map always returns every result; a `map_async` (whose
//!   caller is itself a task) stops too and reports `Cancelled`.
//! - Items run under the map's cancellation token: it turns true once an
//!   item failed, or when the task that called the map is no longer wanted
//!   (a cancelled or terminated `map_async`).

use crate::cancel::{self, CancelFlag};
use crate::chunking::next_claim;
use crate::gate::Gate;
use crate::inputs::source::Source;
use crate::job::Job;
use crate::panic::{self, Payload};
use crate::park::{self, Deadline};
use crate::registry::Registry;
use crate::sync::lock;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why a map stopped without its results.
pub(crate) enum MapError<E> {
    /// `f` returned this error (the earliest by input position).
    Failed(E),
    /// The pool was terminated while a `map_async` ran.
    Cancelled,
}

/// The part of a map's state that runner jobs may hold after the map
/// returned: the gate, and the map's cancellation token.
struct Header {
    gate: Gate,
    /// An item failed or panicked.
    failed: AtomicBool,
    /// The token of the task that called the map, if any. Cleared when the
    /// map returns, so a runner job left in the queue keeps nothing of the
    /// caller alive.
    parent: Mutex<Option<cancel::FlagRef>>,
    parent_follows_terminate: bool,
}

impl CancelFlag for Header {
    fn is_cancelled(&self) -> bool {
        // SAFETY: `parent` is the token of the task that called the map: it
        // lives until the map returns, and `GateGuard` clears it before then.
        self.failed.load(Ordering::Relaxed)
            || lock(&self.parent)
                .as_ref()
                .is_some_and(|p| unsafe { p.get() }.is_cancelled())
    }
}

/// A raw output pointer shared by the threads of one map.
struct Out<R>(*mut R);

// SAFETY: threads write disjoint slots (each index is claimed once), and the
// values written are `Send`.
unsafe impl<R: Send> Sync for Out<R> {}

/// How a chunk's loop stopped.
enum ChunkEnd {
    /// Every item of the chunk ran.
    Done,
    /// A failure elsewhere set the limit at or below the next item.
    Limit,
    /// The pool was terminated: the rest of the chunk is handed back.
    HandBack,
    /// `f` returned `Err` for the last item taken.
    Failed,
}

/// Everything a runner needs; lives on the caller's stack.
struct Ctx<'a, S, F, R, E> {
    registry: &'a Registry,
    header: &'a Arc<Header>,
    source: S,
    f: &'a F,
    out: Out<R>,
    n: usize,
    fixed_chunk: Option<usize>,
    threads: usize,
    cursor: AtomicUsize,
    /// No item at or after this index is started.
    limit: AtomicUsize,
    /// Ranges handed back by runners stopped by `terminate`.
    returned: Mutex<Vec<Range<usize>>>,
    /// Ranges whose output slots are initialized.
    completed: Mutex<Vec<Range<usize>>>,
    error: Mutex<Option<(usize, E)>>,
    panic: Mutex<Option<Payload>>,
}

impl<S, F, R, E> Ctx<'_, S, F, R, E>
where
    S: Source,
    F: Fn(S::Item) -> Result<R, E> + Sync,
    R: Send,
    E: Send,
{
    fn claim(&self) -> Option<Range<usize>> {
        let n = self.n;
        if self.limit.load(Ordering::Relaxed) < n {
            return None;
        }
        let mut cur = self.cursor.load(Ordering::Relaxed);
        loop {
            let range = next_claim(cur, n, self.fixed_chunk, self.threads)?;
            match self.cursor.compare_exchange_weak(
                cur,
                range.end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(range),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Claims and runs chunks until none are left, under the map's token.
    /// `stops`: stop between items when the pool is terminated.
    fn work(&self, stops: bool) {
        let header: &Header = self.header;
        cancel::with_token(header, header.parent_follows_terminate, || {
            let mut done: Vec<Range<usize>> = Vec::new();
            while let Some(range) = self.claim() {
                self.run_chunk(range, stops, &mut done);
                if stops && self.registry.is_terminated() {
                    break;
                }
            }
            if !done.is_empty() {
                lock(&self.completed).extend(done);
            }
        });
    }

    /// Runs the items of a claimed range. Never unwinds: `f`'s panics and
    /// the `Drop`s of items left unused are caught and recorded.
    fn run_chunk(&self, range: Range<usize>, stops: bool, done: &mut Vec<Range<usize>>) {
        let counters = self.registry.counters();
        let len = range.len() as isize;
        counters.queued(-len);
        counters.running(len);
        let start = range.start;
        let mut next = start; // first index not yet taken
        let caught = panic::contain(|| {
            let out = self.out.0;
            while next < range.end {
                let i = next;
                if self.limit.load(Ordering::Relaxed) <= i {
                    return ChunkEnd::Limit;
                }
                if stops && self.registry.is_terminated_relaxed() {
                    return ChunkEnd::HandBack;
                }
                next = i + 1;
                // SAFETY: i < n was claimed by this thread only.
                let item = unsafe { self.source.take(i) };
                match (self.f)(item) {
                    // SAFETY: slot i is in bounds and written only here.
                    Ok(r) => unsafe { out.add(i).write(r) },
                    Err(e) => {
                        self.fail(i, e);
                        return ChunkEnd::Failed;
                    }
                }
            }
            ChunkEnd::Done
        });
        // Items `start..next` were taken, so each ran (to a result, an error
        // or a panic); their slots are written up to `written_end`.
        let ran = next - start;
        let written_end = match &caught {
            Ok(ChunkEnd::Done | ChunkEnd::Limit | ChunkEnd::HandBack) => next,
            Ok(ChunkEnd::Failed) | Err(_) => next - 1,
        };
        let rest = next..range.end;
        let hand_back = matches!(caught, Ok(ChunkEnd::HandBack));
        if let Err(payload) = caught {
            // Item `next - 1` panicked; its input was consumed by `f`.
            self.registry.task_panicked(&payload);
            self.record_panic(payload);
        }
        let mut handed_back = 0;
        if !rest.is_empty() {
            if hand_back {
                handed_back = rest.len();
                lock(&self.returned).push(rest);
            } else {
                self.drop_unused(rest);
            }
        }
        if written_end > start {
            match done.last_mut() {
                Some(last) if last.end == start => last.end = written_end,
                _ => done.push(start..written_end),
            }
        }
        counters.running(-len);
        counters.completed(ran);
        // Handed-back items are queued again (whoever runs them counts them).
        counters.queued(handed_back as isize);
    }

    /// Drops claimed items that will not run; a panicking `Drop` fails the
    /// map like a panicking `f`.
    fn drop_unused(&self, range: Range<usize>) {
        // SAFETY: every caller passes indices claimed by it and never taken.
        if let Some(payload) = unsafe { self.source.drop_range(range) }.map(Payload::new) {
            self.registry.task_panicked(&payload);
            self.record_panic(payload);
        }
    }

    /// A panic stops the whole map (`k = 0`); the first payload is kept.
    fn record_panic(&self, payload: Payload) {
        self.limit.store(0, Ordering::Relaxed);
        self.header.failed.store(true, Ordering::Relaxed);
        let mut slot = lock(&self.panic);
        if slot.is_none() {
            *slot = Some(payload);
            return;
        }
        drop(slot);
        // Only the first is re-raised; a later one must not unwind from
        // here, in the middle of a chunk's bookkeeping.
        drop(payload);
    }

    /// Records item `i`'s error if it is the earliest so far. The error it
    /// replaces, or `e` itself, is user code to drop: dropped after the
    /// lock is released, so a `Drop` that waits for another item of this
    /// map (which may fail and come here) cannot deadlock on it.
    fn fail(&self, i: usize, e: E) {
        self.limit.fetch_min(i, Ordering::Relaxed);
        self.header.failed.store(true, Ordering::Relaxed);
        let mut slot = lock(&self.error);
        let unused = match &*slot {
            Some((j, _)) if *j < i => Some(e),
            _ => slot.replace((i, e)).map(|(_, replaced)| replaced),
        };
        drop(slot);
        drop(unused);
    }
}

/// The type-erased runner job: a pointer to the caller's `Ctx`.
struct Runner {
    header: Arc<Header>,
    ctx: *const (),
    work: unsafe fn(*const ()),
}

// SAFETY: `ctx` points to a `Ctx` that is `Sync` for the types `run_map`
// accepts, and it is only dereferenced inside the gate (see module docs).
unsafe impl Send for Runner {}

impl Job for Runner {
    fn run(self: Box<Self>, _registry: &Registry) {
        if let Some(_inside) = self.header.gate.enter() {
            // SAFETY: we are inside the gate, so the caller is still waiting
            // and `ctx` is alive.
            unsafe { (self.work)(self.ctx) };
        }
    }

    fn items(&self) -> usize {
        0
    }
}

unsafe fn run_erased<S, F, R, E>(ctx: *const ())
where
    S: Source,
    F: Fn(S::Item) -> Result<R, E> + Sync,
    R: Send,
    E: Send,
{
    // SAFETY: `ctx` was made from a `&Ctx<S, F, R, E>` by `run_map`, which
    // keeps it alive while any runner is inside the gate.
    let ctx = unsafe { &*(ctx as *const Ctx<'_, S, F, R, E>) };
    ctx.work(true);
}

/// Closes the gate and waits for runners inside it, even when unwinding.
struct GateGuard<'a> {
    header: &'a Header,
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.header.gate.close();
        // Untimed, and never gives up (runners inside borrow the caller's
        // inputs and outputs): it returns done, or panics.
        let waited = park::wait(&self.header.gate, Deadline::NEVER);
        debug_assert_eq!(waited, park::Waited::Done);
        // Subtle: runner jobs still queued hold the header; they must not keep
        // the calling task's state (and what it borrows) alive.
        lock(&self.header.parent).take();
    }
}

/// Drops what no one will run, on every path out of `run_map`: items handed
/// back and not finished, and items never claimed. Declared before the
/// `GateGuard`, so it runs after the runners are out.
struct Leftovers<'c, 'a, S, F, R, E>(&'c Ctx<'a, S, F, R, E>)
where
    S: Source,
    F: Fn(S::Item) -> Result<R, E> + Sync,
    R: Send,
    E: Send;

impl<S, F, R, E> Drop for Leftovers<'_, '_, S, F, R, E>
where
    S: Source,
    F: Fn(S::Item) -> Result<R, E> + Sync,
    R: Send,
    E: Send,
{
    fn drop(&mut self) {
        let ctx = self.0;
        let counters = ctx.registry.counters();
        let returned = std::mem::take(&mut *lock(&ctx.returned));
        let claimed = ctx.cursor.load(Ordering::Relaxed).min(ctx.n);
        for range in returned.into_iter().chain(std::iter::once(claimed..ctx.n)) {
            if !range.is_empty() {
                counters.queued(-(range.len() as isize));
                ctx.drop_unused(range);
            }
        }
    }
}

/// [`run_map`] for a function that cannot fail.
pub(crate) fn run_map_infallible<S, F, R>(
    registry: &Registry,
    source: S,
    chunksize: Option<usize>,
    f: &F,
    caller_stops: bool,
) -> Result<Vec<R>, Cancelled>
where
    S: Source,
    F: Fn(S::Item) -> R + Sync,
    R: Send,
{
    let f = |x| Ok::<R, std::convert::Infallible>(f(x));
    match run_map(registry, source, chunksize, &f, caller_stops) {
        Ok(v) => Ok(v),
        Err(MapError::Cancelled) => Err(Cancelled),
        Err(MapError::Failed(never)) => match never {},
    }
}

/// The body of a `map_async` task: the map stops when the pool is
/// terminated, and the task then reports `Cancelled`.
pub(crate) fn map_async_body<S, F, R>(
    registry: &Registry,
    source: S,
    chunksize: Option<usize>,
    f: &F,
) -> Vec<R>
where
    S: Source,
    F: Fn(S::Item) -> R + Sync,
    R: Send,
{
    run_map_infallible(registry, source, chunksize, f, true)
        .unwrap_or_else(|Cancelled| crate::panic::unwind_cancelled())
}

/// A map's function, owned while the map runs, and dropped contained
/// however the map ends, since its `Drop` is user code:
/// - the map returns: [`finish`](MapFn::finish) drops `f` while the
///   results are still held, so a panic of `f`'s `Drop` neither leaks them
///   (as a panic in a capture's `Drop` after a closure computed its return
///   value would: rust-lang/rust#47949) nor has the unwinding drop them in
///   std's drop glue (a second panicking `Drop` there aborts);
/// - the map unwinds (a task's panic re-raised, a `map_async` cancelled):
///   `Drop` drops `f` contained, since a second panic would abort.
pub(crate) struct MapFn<F>(Option<F>);

impl<F> MapFn<F> {
    pub(crate) fn new(f: F) -> Self {
        MapFn(Some(f))
    }

    pub(crate) fn get(&self) -> &F {
        self.0
            .as_ref()
            .expect("a map's function is dropped only at its end")
    }

    /// Drops `f` and returns `value`, the map's output; if `f`'s `Drop`
    /// panics, drops `value` with `drop_value` (contained, element by
    /// element) and re-raises that panic.
    pub(crate) fn finish<T>(mut self, value: T, drop_value: impl FnOnce(T)) -> T {
        match panic::drop_contained(self.0.take()) {
            None => value,
            Some(p) => {
                drop_value(value);
                p.resume()
            }
        }
    }
}

impl<F> Drop for MapFn<F> {
    fn drop(&mut self) {
        if let Some(p) = panic::drop_contained(self.0.take()) {
            panic::reraise_unless_unwinding(p);
        }
    }
}

/// What a `map_async` task captures: its inputs and function, each dropped
/// on its own, contained, if the task never runs (refused, cancelled or
/// discarded by `terminate`): dropped together by a closure's drop glue,
/// a panic of the inputs' `Drop` would have the unwinding drop `f`, and a
/// second panic there aborts. The first panic is re-raised, for whoever
/// drops the task to count.
pub(crate) struct MapAsync<I, F> {
    inputs: Option<I>,
    f: Option<F>,
}

impl<I, F> MapAsync<I, F> {
    pub(crate) fn new(inputs: I, f: F) -> Self {
        MapAsync {
            inputs: Some(inputs),
            f: Some(f),
        }
    }

    /// The whole `map_async` task: maps, then drops `f` (see [`MapFn`]).
    pub(crate) fn run<R>(mut self, registry: &Registry, chunksize: Option<usize>) -> Vec<R>
    where
        I: crate::inputs::Inputs,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        let taken = "a map_async task runs once";
        let f = MapFn::new(self.f.take().expect(taken));
        let inputs = self.inputs.take().expect(taken);
        let results = map_async_body(registry, inputs.into_source(), chunksize, f.get());
        f.finish(results, panic::drop_all_discarding)
    }
}

impl<I, F> Drop for MapAsync<I, F> {
    fn drop(&mut self) {
        let mut first = panic::drop_contained(self.inputs.take());
        if let Some(p) = panic::drop_contained(self.f.take()) {
            panic::keep_first(&mut first, p);
        }
        if let Some(p) = first {
            panic::reraise_unless_unwinding(p);
        }
    }
}

/// A `map_async` stopped by `terminate`.
pub(crate) struct Cancelled;

/// Maps `f` over `source` on the pool and the calling thread. Re-raises the
/// first task panic; returns the error at the earliest failing index.
/// `caller_stops`: the caller is a `map_async` task, which stops (and
/// returns `Cancelled`) when the pool is terminated.
///
/// The pool's workers only help: if the pool refuses work (closed or
/// terminated), the calling thread runs every item itself.
pub(crate) fn run_map<S, F, R, E>(
    registry: &Registry,
    source: S,
    chunksize: Option<usize>,
    f: &F,
    caller_stops: bool,
) -> Result<Vec<R>, MapError<E>>
where
    S: Source,
    F: Fn(S::Item) -> Result<R, E> + Sync,
    R: Send,
    E: Send,
{
    let n = source.len();
    let mut output: Vec<R> = Vec::new();
    if n == 0 {
        return Ok(output);
    }
    if let Err(e) = output.try_reserve_exact(n) {
        // SAFETY: nothing was taken yet.
        drop(unsafe { source.drop_range(0..n) }.map(Payload::new));
        panic!("parpool: cannot allocate the output of a map over {n} items: {e}");
    }
    registry.counters().queued(n as isize);
    let on_worker = registry.is_current_worker();
    let helpers = if on_worker {
        registry.workers() - 1
    } else {
        registry.workers()
    };
    let chunksize = chunksize.map(|c| c.max(1));
    let chunks = chunksize.map_or(n, |c| n.div_ceil(c));
    let runners = helpers.min(chunks.saturating_sub(1));
    let parent = cancel::current();
    let header = Arc::new(Header {
        gate: Gate::new(),
        failed: AtomicBool::new(false),
        parent_follows_terminate: parent.as_ref().is_some_and(|(_, follows)| *follows),
        parent: Mutex::new(parent.map(|(flag, _)| flag)),
    });
    let ctx = Ctx {
        registry,
        header: &header,
        source,
        f,
        out: Out(output.as_mut_ptr()),
        n,
        fixed_chunk: chunksize,
        threads: runners + 1,
        cursor: AtomicUsize::new(0),
        limit: AtomicUsize::new(usize::MAX),
        returned: Mutex::new(Vec::new()),
        completed: Mutex::new(Vec::new()),
        error: Mutex::new(None),
        panic: Mutex::new(None),
    };
    let cancelled;
    {
        let leftovers = Leftovers(&ctx);
        {
            let guard = GateGuard { header: &header };
            if runners > 0 {
                // Runners only help: a refusing pool leaves the work to us.
                if let Some(mut accepted) = registry.accept() {
                    let ptr = &ctx as *const Ctx<'_, S, F, R, E> as *const ();
                    for _ in 0..runners {
                        accepted.push(Box::new(Runner {
                            header: Arc::clone(&header),
                            ctx: ptr,
                            work: run_erased::<S, F, R, E>,
                        }) as Box<dyn Job>);
                    }
                }
            }
            ctx.work(caller_stops);
            drop(guard); // closes the gate and waits for runners
        }
        cancelled = caller_stops
            && registry.is_terminated()
            && (!lock(&ctx.returned).is_empty() || ctx.cursor.load(Ordering::Relaxed) < n);
        // Work handed back by runners that saw `terminate`: a blocking map's
        // caller finishes it; a stopped `map_async` leaves it to `leftovers`.
        if !cancelled {
            loop {
                let range = lock(&ctx.returned).pop();
                let Some(r) = range else { break };
                let mut done = Vec::new();
                ctx.run_chunk(r, false, &mut done);
                lock(&ctx.completed).extend(done);
            }
        }
        drop(leftovers);
    }
    let failed = cancelled || lock(&ctx.panic).is_some() || lock(&ctx.error).is_some();
    if failed {
        let mut drop_panic = None;
        for range in ctx
            .completed
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
        {
            // SAFETY: exactly these slots were written, once each; each is
            // read once here and dropped.
            let results = range.map(|i| unsafe { output.as_ptr().add(i).read() });
            if let Some(p) = panic::drop_all_contained(results) {
                panic::keep_first(&mut drop_panic, p);
            }
        }
        let error = ctx.error.into_inner().unwrap_or_else(|e| e.into_inner());
        let panic = ctx.panic.into_inner().unwrap_or_else(|e| e.into_inner());
        // A task's panic comes first; a result's `Drop` panic is dropped then.
        let panic = panic.or(drop_panic);
        if let Some(payload) = panic {
            // Subtle: the error is user data too; drop it (contained) before
            // unwinding, since a panic in its `Drop` during the unwinding
            // would abort the process.
            panic::drop_discarding(error);
            payload.resume();
        }
        return Err(match error {
            Some((_, e)) => MapError::Failed(e),
            None => MapError::Cancelled,
        });
    }
    // SAFETY: no failure, so every index 0..n was claimed and its slot written.
    unsafe { output.set_len(n) };
    Ok(output)
}
