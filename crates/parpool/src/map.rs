//! The blocking map engine behind `map`, `starmap`, `try_map` and `map_async`.
//!
//! The calling thread and up to `workers` runner jobs claim chunks of input
//! indices from one atomic cursor and write each result straight into its
//! slot of the output `Vec`: no channel message, no lock and no allocation
//! per item. With automatic chunking the claims are *guided*: each takes a
//! fraction of what remains, so early chunks are large (little overhead) and
//! late ones small (good balance).
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
use crate::inputs::source::Source;
use crate::job::Job;
use crate::panic::Payload;
use crate::registry::Registry;
use crate::sync::lock;
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Automatic chunking: each claim takes `remaining / (GUIDED_FACTOR * threads)`.
const GUIDED_FACTOR: usize = 4;

const CLOSED: usize = 1;
const INSIDE: usize = 2;

/// The size of the next automatic claim when `remaining` items are left for
/// `threads` threads: a fraction of what remains, never 0.
fn guided_size(remaining: usize, threads: usize) -> usize {
    (remaining / (GUIDED_FACTOR * threads.max(1))).clamp(1, remaining.max(1))
}

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
    gate: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
    /// An item failed or panicked.
    failed: AtomicBool,
    /// The token of the task that called the map, if any. Cleared when the
    /// map returns, so a runner job left in the queue keeps nothing of the
    /// caller alive.
    parent: Mutex<Option<cancel::FlagRef>>,
    parent_follows_terminate: bool,
}

impl Header {
    fn enter(&self) -> bool {
        let prev = self.gate.fetch_add(INSIDE, Ordering::SeqCst);
        if prev & CLOSED != 0 {
            self.exit();
            return false;
        }
        true
    }

    fn exit(&self) {
        if self.gate.fetch_sub(INSIDE, Ordering::SeqCst) - INSIDE == CLOSED {
            let _guard = lock(&self.lock);
            self.cond.notify_all();
            crate::sleep::handed_off();
        }
    }

    fn is_empty_and_closed(&self) -> bool {
        self.gate.load(Ordering::SeqCst) == CLOSED
    }

    fn block(&self, timeout: Option<Duration>) {
        let guard = lock(&self.lock);
        if self.is_empty_and_closed() {
            return;
        }
        drop(crate::sync::wait(&self.cond, guard, timeout));
    }
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
        if let Some(chunk) = self.fixed_chunk {
            let start = self.cursor.fetch_add(chunk, Ordering::Relaxed);
            return (start < n).then(|| start..(start + chunk).min(n));
        }
        let mut cur = self.cursor.load(Ordering::Relaxed);
        loop {
            if cur >= n {
                return None;
            }
            let size = guided_size(n - cur, self.threads);
            match self.cursor.compare_exchange_weak(
                cur,
                cur + size,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(cur..cur + size),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Claims and runs chunks until none are left, under the map's token.
    /// `stops`: stop between items when the pool is terminated.
    fn work(&self, stops: bool) {
        let header: &Header = self.header;
        // SAFETY: the guard is a local of this call; `header` outlives it.
        let _token = unsafe { cancel::enter(header, header.parent_follows_terminate) };
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
    }

    fn run_chunk(&self, range: Range<usize>, stops: bool, done: &mut Vec<Range<usize>>) {
        let counters = &self.registry.counters;
        let len = range.len();
        counters.start(len);
        let start = range.start;
        let mut next = start; // first index not yet taken
        let mut handed_back = 0;
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let out = self.out.0;
            while next < range.end {
                let i = next;
                if self.limit.load(Ordering::Relaxed) <= i {
                    break;
                }
                if stops && self.registry.is_terminated_relaxed() {
                    lock(&self.returned).push(i..range.end);
                    handed_back = range.end - i;
                    next = range.end; // handed back, not ours to drop
                    return Some(i);
                }
                next = i + 1;
                // SAFETY: i < n was claimed by this thread only.
                let item = unsafe { self.source.take(i) };
                match (self.f)(item) {
                    // SAFETY: slot i is in bounds and written only here.
                    Ok(r) => unsafe { out.add(i).write(r) },
                    Err(e) => {
                        self.fail(i, e);
                        return Some(i);
                    }
                }
            }
            None
        }));
        let written_end = match caught {
            Ok(None) => next.min(range.end),
            Ok(Some(stop)) => stop,
            Err(payload) => {
                // Item `next - 1` panicked; its input was consumed by `f`.
                self.registry.task_panicked(&payload);
                self.limit.store(0, Ordering::Relaxed);
                self.header.failed.store(true, Ordering::Relaxed);
                let mut slot = lock(&self.panic);
                if slot.is_none() {
                    *slot = Some(payload);
                }
                next - 1
            }
        };
        // Items claimed but neither taken nor handed back.
        if next < range.end {
            // SAFETY: indices next..end were claimed by us and never taken.
            unsafe { self.source.drop_range(next..range.end) };
        }
        if written_end > start {
            match done.last_mut() {
                Some(last) if last.end == start => last.end = written_end,
                _ => done.push(start..written_end),
            }
        }
        // Handed-back items are queued again (whoever runs them counts them).
        counters.finish(len - handed_back, true);
        counters.finish(handed_back, false);
        counters.queued(handed_back as isize);
    }

    fn fail(&self, i: usize, e: E) {
        self.limit.fetch_min(i, Ordering::Relaxed);
        self.header.failed.store(true, Ordering::Relaxed);
        let mut slot = lock(&self.error);
        match &*slot {
            Some((j, _)) if *j < i => {}
            _ => *slot = Some((i, e)),
        }
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
    fn run(self: Box<Self>) {
        if self.header.enter() {
            // SAFETY: we are inside the gate, so the caller is still waiting
            // and `ctx` is alive.
            unsafe { (self.work)(self.ctx) };
            self.header.exit();
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
    registry: &'a Registry,
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.header.gate.fetch_or(CLOSED, Ordering::SeqCst);
        let header = self.header;
        self.registry
            .wait_until(|| header.is_empty_and_closed(), |t| header.block(t));
        // Subtle: runner jobs still queued hold the header; they must not keep
        // the calling task's state (and what it borrows) alive.
        lock(&header.parent).take();
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

/// A `map_async` stopped by `terminate`.
pub(crate) struct Cancelled;

/// Maps `f` over `source` on the pool and the calling thread. Re-raises the
/// first task panic; returns the error at the earliest failing index.
/// `caller_stops`: the caller is a `map_async` task, which stops (and
/// returns `Cancelled`) when the pool is terminated.
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
    let mut output: Vec<R> = Vec::with_capacity(n);
    if n == 0 {
        return Ok(output);
    }
    registry.counters.queued(n as isize);
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
        gate: AtomicUsize::new(0),
        lock: Mutex::new(()),
        cond: Condvar::new(),
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
    {
        let guard = GateGuard {
            header: &header,
            registry,
        };
        if runners > 0 {
            let ptr = &ctx as *const Ctx<'_, S, F, R, E> as *const ();
            registry.submit_all((0..runners).map(|_| {
                Box::new(Runner {
                    header: Arc::clone(&header),
                    ctx: ptr,
                    work: run_erased::<S, F, R, E>,
                }) as Box<dyn Job>
            }));
        }
        ctx.work(caller_stops);
        drop(guard); // closes the gate and waits for runners
    }
    let cancelled = caller_stops
        && registry.is_terminated()
        && (!lock(&ctx.returned).is_empty() || ctx.cursor.load(Ordering::Relaxed) < n);
    // Work handed back by runners that saw `terminate`: a blocking map's
    // caller finishes it; a stopped `map_async` drops it.
    loop {
        let range = lock(&ctx.returned).pop();
        match range {
            Some(r) if cancelled => {
                registry.counters.queued(-(r.len() as isize));
                // SAFETY: handed-back indices were claimed and never taken.
                unsafe { ctx.source.drop_range(r) };
            }
            Some(r) => {
                let mut done = Vec::new();
                ctx.run_chunk(r, false, &mut done);
                lock(&ctx.completed).extend(done);
            }
            None => break,
        }
    }
    // Items never claimed because the map stopped early.
    let claimed = ctx.cursor.load(Ordering::Relaxed).min(n);
    if claimed < n {
        registry.counters.queued(-((n - claimed) as isize));
        // SAFETY: these indices were never claimed, so never taken.
        unsafe { ctx.source.drop_range(claimed..n) };
    }
    let failed = cancelled || lock(&ctx.panic).is_some() || lock(&ctx.error).is_some();
    if failed {
        for range in ctx
            .completed
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
        {
            // SAFETY: exactly these slots were written, once each.
            unsafe {
                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                    output.as_mut_ptr().add(range.start),
                    range.len(),
                ))
            };
        }
        if let Some(payload) = ctx.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
            resume_unwind(payload);
        }
        return Err(
            match ctx.error.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some((_, e)) => MapError::Failed(e),
                None => MapError::Cancelled,
            },
        );
    }
    // SAFETY: no failure, so every index 0..n was claimed and its slot written.
    unsafe { output.set_len(n) };
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::guided_size;

    /// Claims `n` items the way the cursor does, one thread after another.
    fn claims(n: usize, threads: usize) -> Vec<usize> {
        let mut cur = 0;
        let mut sizes = Vec::new();
        while cur < n {
            let size = guided_size(n - cur, threads);
            sizes.push(size);
            cur += size;
        }
        sizes
    }

    #[test]
    fn guided_claims_cover_every_item_exactly_once() {
        for n in [1, 2, 3, 7, 8, 9, 100, 1_000, 99_991, 1_000_000] {
            for threads in [1, 2, 3, 8] {
                let sizes = claims(n, threads);
                assert_eq!(sizes.iter().sum::<usize>(), n, "n={n} threads={threads}");
                assert!(sizes.iter().all(|&s| s >= 1));
                // Sizes never grow: large chunks first, small ones for balance.
                assert!(
                    sizes.windows(2).all(|w| w[0] >= w[1]),
                    "n={n} threads={threads}"
                );
            }
        }
    }

    #[test]
    fn guided_claims_stay_few_and_balanced() {
        // One claim is at most a quarter of a thread's fair share...
        assert_eq!(guided_size(1_000_000, 2), 125_000);
        // ...so no thread can hold much more than its share at the end,
        assert_eq!(claims(1_000_000, 2).last(), Some(&1));
        // ...and the number of claims grows only logarithmically.
        assert!(
            claims(1_000_000, 2).len() < 200,
            "{}",
            claims(1_000_000, 2).len()
        );
        // Edge cases: nothing left, one thread, zero threads (treated as one).
        assert_eq!(guided_size(1, 8), 1);
        assert_eq!(guided_size(0, 2), 1);
        assert_eq!(guided_size(10, 0), 2);
    }
}
