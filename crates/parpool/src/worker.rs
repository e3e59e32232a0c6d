//! Worker threads: their loop, their number, and the spares that stand in
//! for workers blocked in a wait.
//!
//! A worker pops jobs and runs them ([`Registry::run_job`], which contains
//! every panic), sleeps when the queue is empty ([`crate::sleep`]), and exits
//! when the pool is terminated, or closed with nothing queued or being
//! submitted ([`crate::lifecycle`]).
//!
//! Compensation. A worker that blocks in a wait (see [`crate::park`]) would
//! leave the pool one thread short, and a pool whose every worker waits for
//! queued work would deadlock. So the *census* counts live threads and
//! blocked ones; when a worker blocks and fewer than `workers` threads are
//! left unblocked, a spare thread is started (or one held in reserve is
//! woken). When the blocked worker returns, the pool has a thread too many:
//! the first thread that then finds the queue empty rests in reserve for a
//! while and exits if it is still surplus. So at most `workers` threads run
//! jobs at a time, give or take the moments around a hand-over, and waiting
//! inside a task never starves the queue, on any pool size.
//!
//! Invariant: every thread started is counted live before it starts and
//! uncounted exactly once, when it exits; its join handle is recorded by its
//! starter, which is a thread that is itself joined later (or the builder).

use crate::error::BuildError;
use crate::exec_wait::Watched;
use crate::panic;
use crate::park::Deadline;
use crate::registry::Registry;
use crate::sync::lock;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The most spare threads a pool starts on top of its workers.
pub(crate) const MAX_SPARES: usize = 1 << 15;
/// How long a surplus thread waits in reserve before it exits.
const LINGER: Duration = Duration::from_millis(500);
/// After a thread failed to start, how long executor waits go without
/// asking for a spare before they try one again.
const RETRY: Duration = Duration::from_secs(1);

const LIVE: u64 = 1;
const BLOCKED: u64 = 1 << 32;

fn live(word: u64) -> usize {
    (word & (BLOCKED - 1)) as usize
}

fn blocked(word: u64) -> usize {
    (word >> 32) as usize
}

fn active(word: u64) -> usize {
    live(word).saturating_sub(blocked(word))
}

/// Live worker threads and how many of them are blocked in a wait.
#[derive(Default)]
pub(crate) struct Census {
    /// Live threads in the low 32 bits, blocked ones in the high 32.
    word: AtomicU64,
    /// Surplus threads resting in reserve.
    reserve: AtomicUsize,
    /// Set when a thread failed to start (the system refused it, or its
    /// initializer panicked), cleared when one starts. While set, executor
    /// waits start no spare: they run the queue themselves (see
    /// [`stranded`]).
    spares_failing: AtomicBool,
    /// While `spares_failing`: when an executor wait may try a spare again
    /// (a failure may be passing: the system out of threads for a moment).
    retry_at: Mutex<Option<Instant>>,
    /// The wakers of futures pending in an executor's wait on a worker of
    /// this pool (`exec_wait.rs`): a thread that fails to start wakes them
    /// all, so a worker its executor parked learns that no stand-in comes
    /// and runs the queue itself.
    pub(crate) exec_waiters: Watched,
}

thread_local! {
    /// The registry whose worker this thread is, if any.
    static WORKER: RefCell<Option<Arc<Registry>>> = const { RefCell::new(None) };
    /// Whether this worker's initializer has returned (a thread is a worker
    /// of its pool from its start, so waits inside the initializer count
    /// as a worker's).
    static INITIALIZED: Cell<bool> = const { Cell::new(false) };
}

/// The pool whose worker the current thread is, if any.
/// A thread-local destructor that runs after this one's is on no worker
/// (a worker's loop has ended before its thread-locals are destroyed).
pub(crate) fn current() -> Option<Arc<Registry>> {
    WORKER.try_with(|w| w.borrow().clone()).ok().flatten()
}

/// Whether the current thread is a worker of `registry`.
pub(crate) fn current_is(registry: &Registry) -> bool {
    WORKER
        .try_with(|w| {
            w.borrow()
                .as_ref()
                .is_some_and(|r| std::ptr::eq(Arc::as_ptr(r), registry))
        })
        .unwrap_or(false)
}

/// Whether the current thread is a worker of `registry` whose initializer
/// has returned: `f` may count on the state it set up.
pub(crate) fn current_is_initialized(registry: &Registry) -> bool {
    INITIALIZED.with(Cell::get) && current_is(registry)
}

/// Whether the current thread is a worker of a terminated pool.
pub(crate) fn current_pool_terminated() -> bool {
    WORKER
        .try_with(|w| w.borrow().as_ref().is_some_and(|r| r.is_terminated()))
        .unwrap_or(false)
}

/// Starts one worker thread; the receiver reports whether its initializer
/// ran. The thread is counted live before it starts.
pub(crate) fn spawn(
    registry: &Arc<Registry>,
) -> Result<mpsc::Receiver<Result<(), String>>, BuildError> {
    let index = registry.next_index.fetch_add(1, Ordering::Relaxed);
    let mut builder = thread::Builder::new().name(format!("{}-{index}", registry.config.name));
    if let Some(size) = registry.config.stack_size {
        builder = builder.stack_size(size);
    }
    let (tx, rx) = mpsc::channel();
    let census = &registry.census;
    census.word.fetch_add(LIVE, Ordering::SeqCst);
    let for_thread = Arc::clone(registry);
    let handle = match builder.spawn(move || main(for_thread, tx)) {
        Ok(handle) => handle,
        Err(e) => {
            census.word.fetch_sub(LIVE, Ordering::SeqCst);
            start_failed(registry);
            return Err(BuildError::Spawn(e));
        }
    };
    let mut threads = lock(&registry.threads);
    // Reap exited threads, so a long-lived pool with a small
    // `max_tasks_per_worker`, or many spares over time, does not collect
    // handles without end.
    let (done, live): (Vec<_>, Vec<_>) = threads.drain(..).partition(|h| h.is_finished());
    *threads = live;
    threads.push(handle);
    drop(threads);
    for h in done {
        drop(h.join());
    }
    Ok(rx)
}

fn main(registry: Arc<Registry>, ready: mpsc::Sender<Result<(), String>>) {
    WORKER.with(|w| *w.borrow_mut() = Some(Arc::clone(&registry)));
    let uncounted = run(&registry, ready);
    if !uncounted {
        registry.census.word.fetch_sub(LIVE, Ordering::SeqCst);
    }
    // Drop the thread's handle on the registry before the thread ends, so a
    // pool whose last handle is gone is freed by its last worker.
    WORKER.with(|w| w.borrow_mut().take());
}

/// The worker loop. Returns whether the thread already uncounted itself
/// (a surplus thread leaving).
fn run(registry: &Arc<Registry>, ready: mpsc::Sender<Result<(), String>>) -> bool {
    if let Some(init) = &registry.config.initializer {
        // What the initializer leaves pending in an executor is dropped
        // with it (`exec_wait.rs`), not kept for the thread's life.
        let init_result = {
            let _suspended = crate::exec_wait::suspend();
            panic::contain(|| init())
        };
        if let Err(payload) = init_result {
            // Uncounted before the starter hears of it, so a waiter that
            // asked for this spare sees the census without it.
            registry.census.word.fetch_sub(LIVE, Ordering::SeqCst);
            start_failed(registry);
            let _ = ready.send(Err(panic::message(payload.as_ref())));
            return true;
        }
    }
    INITIALIZED.with(|i| i.set(true));
    if registry.census.spares_failing.load(Ordering::Relaxed) {
        registry
            .census
            .spares_failing
            .store(false, Ordering::SeqCst);
    }
    let _ = ready.send(Ok(()));
    drop(ready);
    let max_tasks = registry.config.max_tasks_per_worker;
    let mut ran = 0usize;
    loop {
        if let Some(job) = registry.pop() {
            registry.run_job(job);
            ran += 1;
            if max_tasks.is_some_and(|max| ran >= max) {
                // Subtle: a retiring thread leaves through the same check as
                // any other, since a blocked worker may have counted it as
                // its stand-in; if the check keeps it, it works on.
                if replace_current(registry) && leave(registry) {
                    return true;
                }
                ran = 0;
            }
            continue;
        }
        if registry.may_exit() {
            if leave(registry) {
                return true;
            }
            continue;
        }
        if is_surplus(registry) {
            if rest_in_reserve(registry) {
                return true;
            }
            continue;
        }
        if crate::slab::prepare_ahead() {
            continue;
        }
        let ready = || registry.has_queued() || registry.may_exit();
        // Idle, but not for good: after a burst, its memory goes back
        // once it is `DECAY` old (`slab::decay`).
        match crate::slab::decay() {
            left if left.is_zero() => crate::slab::give_back_if_due(),
            left => registry.sleep.idle(ready, Some(left)),
        }
    }
}

/// A worker that may exit uncounts itself, unless that leaves queued work
/// without enough unblocked threads: a worker of a closed pool may have
/// queued a job and blocked on it after this thread's exit decision, with
/// this thread counted as its stand-in. Every exit of a thread that ran
/// jobs goes through here (idle in a closed pool, retiring, surplus). The
/// census's read-modify-writes order the two: either the blocker's count
/// comes first, and this thread sees it (and the job, pushed before it) and
/// stays; or this thread's uncounting comes first, and the blocker sees one
/// thread fewer and starts a spare. Returns whether the thread left.
fn leave(registry: &Registry) -> bool {
    let census = &registry.census;
    let word = census.word.fetch_sub(LIVE, Ordering::SeqCst) - LIVE;
    if active(word) < registry.workers() && registry.has_queued() && !registry.is_terminated() {
        census.word.fetch_add(LIVE, Ordering::SeqCst);
        return false;
    }
    true
}

fn is_surplus(registry: &Registry) -> bool {
    active(registry.census.word.load(Ordering::SeqCst)) > registry.workers()
}

/// Rests a surplus thread until it is needed again, work arrives, or
/// `LINGER` passes; returns `true` if the thread left (uncounted itself).
fn rest_in_reserve(registry: &Registry) -> bool {
    let census = &registry.census;
    let until = Instant::now() + LINGER;
    census.reserve.fetch_add(1, Ordering::SeqCst);
    loop {
        let needed = || !is_surplus(registry) || registry.has_queued() || registry.may_exit();
        if needed() {
            break;
        }
        let now = Instant::now();
        if now >= until {
            break;
        }
        registry.sleep.rest(needed, until - now);
    }
    census.reserve.fetch_sub(1, Ordering::SeqCst);
    if registry.has_queued() {
        return false;
    }
    let workers = registry.workers();
    census
        .word
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
            (active(w) > workers).then(|| w - LIVE)
        })
        .is_ok()
}

/// Retires the current worker after `max_tasks_per_worker` jobs: starts a
/// replacement and reports whether it came up (if not, the current worker
/// keeps going).
fn replace_current(registry: &Arc<Registry>) -> bool {
    if registry.is_terminated() {
        return true;
    }
    match spawn(registry) {
        Ok(rx) => matches!(rx.recv(), Ok(Ok(()))),
        Err(_) => false,
    }
}

/// A thread of the pool failed to start (uncounted already): executor
/// waits stop asking for spares, and every future pending in one on a
/// worker is woken (and forgotten: it records itself again if it still
/// waits), to look at [`stranded`] again.
fn start_failed(registry: &Registry) {
    let census = &registry.census;
    *lock(&census.retry_at) = Some(Instant::now() + RETRY);
    census.spares_failing.store(true, Ordering::SeqCst);
    census.exec_waiters.wake_all();
}

/// Counts the current thread, a worker of `registry`, blocked in a wait the
/// pool cannot see (an executor's, `exec_wait.rs`), and makes sure
/// `workers` threads are left to run the queue: wakes threads resting in
/// reserve, or starts a spare without waiting for it (its initializer may
/// be slow; a spare that fails to start uncounts itself and wakes the
/// pending futures, see [`start_failed`]). After a failed start it tries
/// again at most once per `RETRY`, and the waiters run the queue
/// themselves ([`stranded`]) until a thread starts again.
pub(crate) fn count_blocked(registry: &Arc<Registry>) {
    let census = &registry.census;
    let word = census.word.fetch_add(BLOCKED, Ordering::SeqCst) + BLOCKED;
    if census.reserve.load(Ordering::SeqCst) > 0 {
        registry.sleep.notify_all();
    }
    if active(word) < registry.workers()
        && !registry.is_terminated()
        && live(word) < registry.workers() + MAX_SPARES
        && may_try_a_spare(census)
    {
        drop(spawn(registry));
    }
}

/// Whether an executor wait may start a spare: no start failed lately.
fn may_try_a_spare(census: &Census) -> bool {
    if !census.spares_failing.load(Ordering::SeqCst) {
        return true;
    }
    let mut retry_at = lock(&census.retry_at);
    let now = Instant::now();
    match *retry_at {
        Some(at) if now < at => false,
        _ => {
            *retry_at = Some(now + RETRY);
            true
        }
    }
}

/// Whether a worker counted blocked by an executor's wait must run queued
/// jobs itself: fewer than `workers` unblocked threads are left (none at
/// all, if `last_resort`), and no stand-in will come (the last thread that
/// tried to start failed, or `MAX_SPARES` are running). The executor's
/// analogue of an uncompensated [`Blocked`]: late rather than never.
pub(crate) fn stranded(registry: &Registry, last_resort: bool) -> bool {
    let census = &registry.census;
    let word = census.word.load(Ordering::SeqCst);
    short_of_threads(registry, word, last_resort)
        && !registry.is_terminated()
        && (census.spares_failing.load(Ordering::SeqCst)
            || live(word) >= registry.workers() + MAX_SPARES)
}

/// The one statement of when a wait on a worker with no stand-in runs
/// queued jobs itself, for blocking waits (`park::blocked_loop`) and
/// executor waits ([`stranded`]): once fewer than `workers` unblocked
/// threads are left; for a wait that runs jobs only as a last resort (an
/// imap consumer, which must not run its own later chunks while a worker
/// could), once none is.
pub(crate) fn short_of_threads(registry: &Registry, word: u64, last_resort: bool) -> bool {
    if last_resort {
        active(word) == 0
    } else {
        active(word) < registry.workers()
    }
}

/// Whether every live thread of the pool is blocked in a wait: with jobs
/// queued and no stand-in possible, nothing will ever run them.
pub(crate) fn all_blocked(registry: &Registry) -> bool {
    active(registry.census.word.load(Ordering::SeqCst)) == 0
}

/// Undoes [`count_blocked`].
pub(crate) fn uncount_blocked(registry: &Registry) {
    registry.census.word.fetch_sub(BLOCKED, Ordering::SeqCst);
}

/// A worker blocked in a wait; unblocks when dropped.
pub(crate) struct Blocked<'a> {
    registry: &'a Registry,
    /// When the wait gives up: a spare's start-up is not waited for past
    /// it.
    deadline: Deadline,
    /// A spare started for this wait whose initializer had not finished
    /// within `START_WAIT`: counted live (so it stands in) until it reports.
    starting: Option<mpsc::Receiver<Result<(), String>>>,
    /// Whether `workers` unblocked threads are there to run the queue. If
    /// not (a spare could not start: the system refused a thread, the
    /// initializer panicked, or `MAX_SPARES` was reached), the waiter must
    /// run queued jobs itself (see `park.rs`).
    pub(crate) compensated: bool,
}

/// How long a blocking wait waits for a spare's start-up to learn whether
/// it started (a failure is usually known at once: the system refused the
/// thread, or the initializer panicked early); past it, the spare counts
/// as standing in until a recheck finds out, so a slow initializer does
/// not hold up the wait, whose work may be done meanwhile.
const START_WAIT: Duration = Duration::from_millis(10);

/// Marks the current worker of `registry` as blocked, and makes sure
/// `workers` threads are left to run the queue: wakes threads resting in
/// reserve, or starts a spare (see [`START_WAIT`]).
pub(crate) fn block(registry: &Arc<Registry>, deadline: Deadline) -> Blocked<'_> {
    let census = &registry.census;
    census.word.fetch_add(BLOCKED, Ordering::SeqCst);
    if census.reserve.load(Ordering::SeqCst) > 0 {
        registry.sleep.notify_all();
    }
    let mut blocked = Blocked {
        registry,
        deadline,
        starting: None,
        compensated: true,
    };
    blocked.compensate(registry);
    blocked
}

impl Blocked<'_> {
    /// Whether every live thread of the pool is blocked in a wait: with
    /// jobs queued and no stand-in possible, nothing will ever run them.
    pub(crate) fn all_blocked(&self) -> bool {
        all_blocked(self.registry)
    }

    /// Whether this wait runs queued jobs now ([`short_of_threads`]).
    /// "Fewer than `workers`" is the census as the last recheck read it
    /// (`compensated` is false only then), not as it is between two jobs:
    /// a thread the census counts active again may wait where the pool
    /// cannot see it, for a job still queued, which only this thread would
    /// then run (`tests/must_help_attacks.rs`). "None at all", for a wait
    /// that runs jobs only as a last resort, is read now, before each job.
    pub(crate) fn must_help(&self, last_resort: bool) -> bool {
        !self.compensated
            && (!last_resort
                || short_of_threads(
                    self.registry,
                    self.registry.census.word.load(Ordering::SeqCst),
                    true,
                ))
    }

    /// Whether a spare started for this wait has not reported yet: the
    /// waiter rechecks soon.
    pub(crate) fn spare_starting(&self) -> bool {
        self.starting.is_some()
    }

    /// Checks again that enough unblocked threads are left (a backstop,
    /// called periodically while the wait lasts), starting a spare if not.
    pub(crate) fn recheck(&mut self, registry: &Arc<Registry>) {
        self.compensate(registry);
    }

    fn compensate(&mut self, registry: &Arc<Registry>) {
        if let Some(ready) = self.starting.take() {
            match ready.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {
                    self.starting = Some(ready);
                    self.compensated = true;
                    return;
                }
                // Up: it counts in the census read below.
                Ok(Ok(())) => {}
                // Failed (it uncounted itself): help until the next
                // recheck, which tries another.
                Ok(Err(_)) | Err(mpsc::TryRecvError::Disconnected) => {
                    self.compensated = false;
                    return;
                }
            }
        }
        let word = registry.census.word.load(Ordering::SeqCst);
        self.compensated = true;
        if active(word) < registry.workers() && !registry.is_terminated() {
            self.compensated = false;
            if live(word) >= registry.workers() + MAX_SPARES {
                return;
            }
            let Ok(ready) = spawn(registry) else {
                return;
            };
            let limit = self
                .deadline
                .remaining()
                .map_or(START_WAIT, |left| left.min(START_WAIT));
            match ready.recv_timeout(limit) {
                Ok(Ok(())) => self.compensated = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.starting = Some(ready);
                    self.compensated = true;
                }
                Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
        }
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.registry
            .census
            .word
            .fetch_sub(BLOCKED, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn census_fields_do_not_bleed_into_each_other() {
        let w = 3 * LIVE + 2 * BLOCKED;
        assert_eq!((live(w), blocked(w), active(w)), (3, 2, 1));
        // More blocked than live cannot happen, but must not underflow.
        assert_eq!(active(BLOCKED), 0);
    }
}
