//! Waiting: the one loop every blocking call of the crate waits in.
//!
//! `AsyncResult::get`/`wait_timeout`, a scope's end, a map's gate, an imap's
//! consumer and `as_completed`/`wait` describe what they wait for as a
//! [`Waitable`] and call [`wait`]. The policy, in one place:
//!
//! 1. **A deadline is honoured.** A timed wait never runs a job on the
//!    waiting thread, so nothing but the scheduler can make it late.
//!    Durations are turned into a [`Deadline`] that saturates: a timeout of
//!    `Duration::MAX` means "no limit", never an overflow.
//! 2. **Only the awaited work is helped with.** An untimed wait on one of the
//!    pool's own workers may run the awaited task itself if it is still
//!    queued (as .NET inlines tasks), and nothing else: never an unrelated
//!    job, which might be slow, might wait for the waiter (a deadlock), or
//!    might need a lock the waiter holds. Inlining nests at most
//!    [`MAX_INLINE`] deep per thread (less on small stacks), so stack depth
//!    is bounded whatever the nesting of waits.
//! 3. **A blocked worker is replaced.** A worker that still has to block
//!    (after a short grace period, which covers the common short waits such
//!    as a map's last chunk) is counted blocked, and the pool starts or
//!    wakes a spare thread so `workers` threads keep running the queue (see
//!    [`crate::worker`]). So waiting for queued work never deadlocks, on any
//!    pool size, however deep the nesting. If no spare can start (the system
//!    refuses a thread, the initializer panics, or the spare limit is
//!    reached), the waiter runs queued jobs itself while it waits, within
//!    the inlining depth: late, rather than never. Past that depth, with
//!    every thread of the pool waiting and work queued, nothing can ever
//!    run it: the wait panics with a message saying so, instead of hanging;
//!    on a thread already unwinding, where that panic would abort the
//!    process, a wait that may ([`Waitable::gives_up_while_unwinding`])
//!    gives up instead ([`Waited::GaveUp`]).
//! 4. **A wait cycle is refused.** An untimed wait for one task's result
//!    publishes its edge while it blocks ([`block_once`]); the wait that
//!    closes a cycle of running tasks across threads panics instead of
//!    hanging ([`crate::wait_graph`]), or gives up while unwinding.
//!
//! Threads that are not workers of any pool simply block: they hold no
//! worker, and their work runs on the pool's threads.

use crate::registry::Registry;
use crate::worker;
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How deep tasks may be inlined into waits on one thread.
pub(crate) const MAX_INLINE: u32 = 32;
/// Stack assumed per inlined level when sizing the limit for small stacks.
const STACK_PER_LEVEL: usize = 64 << 10;
/// How long a worker blocks before it asks for a spare.
const GRACE: Duration = Duration::from_micros(200);
/// How soon a blocked worker first checks that a stand-in is still there;
/// the interval doubles up to `MAX_RECHECK`, so long waits cost no CPU.
/// A wait with no stand-in also looks at the queue this often for as long
/// as it lasts (it runs what is queued itself; a push does not wake it):
/// up to 100 cheap wake-ups a second, on a pool that could not start one.
const RECHECK: Duration = Duration::from_millis(10);
const MAX_RECHECK: Duration = Duration::from_secs(1);

thread_local! {
    static INLINE_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// When a timed wait gives up; `Deadline::NEVER` for untimed waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `timeout` from now; a timeout too large to represent never expires.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    pub(crate) fn is_never(self) -> bool {
        self.0.is_none()
    }

    /// Time left: `None` for no limit, `Some(ZERO)` once passed.
    pub(crate) fn remaining(self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The earlier of the two.
    pub(crate) fn min(self, other: Deadline) -> Deadline {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.min(b))),
            (a, b) => Deadline(a.or(b)),
        }
    }

    pub(crate) fn has_passed(self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }
}

/// Something a thread can wait for.
pub(crate) trait Waitable {
    /// Whether the wait is over. Cheap, and never blocks.
    fn done(&self) -> bool;

    /// Blocks until `done()` may have changed, or `timeout` passes (`None`:
    /// no limit). Spurious returns are allowed.
    fn block(&self, timeout: Option<Duration>);

    /// Runs the awaited work right here if it is still queued; returns
    /// whether it ran anything. Called only on a worker of `pool`, for
    /// untimed waits, within the inlining depth.
    fn help(&self, pool: &Registry) -> bool {
        let _ = pool;
        false
    }

    /// Whether, with no stand-in possible, this wait runs queued jobs only
    /// once every thread of the pool waits, instead of as soon as the pool
    /// is short of a thread: an imap consumer, whose own later chunks are
    /// among them (`f` must not run on it for an item after the one it
    /// waits for, which may wait for what its caller does next).
    fn runs_jobs_only_as_a_last_resort(&self) -> bool {
        false
    }

    /// Whether this wait may give up ([`Waited::GaveUp`]) where it cannot
    /// make progress on a thread already unwinding from another panic,
    /// instead of panicking a second time, which would abort the process
    /// ([`crate::panic::refuse`]): a wait whose caller has a documented
    /// give-up value and for which returning unfinished is sound, as a
    /// handle's (`AsyncResult`, `as_completed`: the task stays queued and
    /// runs later) and an imap consumer's (the stream ends, as it does
    /// when cancelled, with its credits still out). The waits that guard
    /// a borrow keep the panic, since returning before they are done would
    /// free what queued work still borrows: a scope's (so `apply`'s), a
    /// map's gate, and a credit's wait for the read token (it would read
    /// the input unlocked).
    fn gives_up_while_unwinding(&self) -> bool {
        false
    }

    /// The one task whose result this wait is for (its slot's address), if
    /// that is what it waits for: an untimed block then publishes its edge
    /// in the wait graph, which refuses a wait that closes a cycle across
    /// threads ([`crate::wait_graph`]). Only a handle's wait
    /// (`AsyncResult`) has one.
    fn awaited_task(&self) -> Option<usize> {
        None
    }
}

/// How a [`wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Waited {
    /// `done()` held.
    Done,
    /// The deadline passed first.
    TimedOut,
    /// Nothing could ever make it done ([`cannot_progress`]), on a thread
    /// already unwinding: the wait gave up instead of panicking a second
    /// time. Only for a [`Waitable::gives_up_while_unwinding`]; its caller
    /// must not simply wait again, which would reach the same dead end.
    GaveUp,
}

impl Waited {
    pub(crate) fn is_done(self) -> bool {
        self == Waited::Done
    }
}

/// Waits until `w.done()` or the deadline.
pub(crate) fn wait(w: &impl Waitable, deadline: Deadline) -> Waited {
    if w.done() {
        return Waited::Done;
    }
    let Some(pool) = worker::current() else {
        return block_loop(w, deadline);
    };
    // Busy here, not parked by an executor: this wait counts itself.
    let _suspended = crate::exec_wait::suspend();
    if deadline.is_never() {
        let helped_to_the_end = nested(&pool, || {
            while {
                // What the inlined task leaves pending cannot park this
                // thread.
                let _inner = crate::exec_wait::suspend();
                w.help(&pool)
            } {
                if w.done() {
                    return true;
                }
            }
            false
        });
        if helped_to_the_end == Some(true) {
            return Waited::Done;
        }
    }
    // Grace: most waits on a worker are short (a map's runners finishing).
    let grace = deadline.remaining().map_or(GRACE, |left| left.min(GRACE));
    let start = Instant::now();
    while !w.done() {
        let spent = start.elapsed();
        if spent >= grace {
            let blocked = worker::block(&pool, deadline);
            return blocked_loop(w, deadline, &pool, blocked);
        }
        if !block_once(w, deadline, Some(grace - spent)) {
            return Waited::GaveUp;
        }
    }
    Waited::Done
}

/// A worker's wait once it counts as blocked. Now and then it checks that
/// the pool still has `workers` unblocked threads (a backstop: a stand-in
/// may have left, or failed to start). Without one (the system refuses a
/// thread, the initializer panics, or the spare limit is reached) it runs
/// queued jobs here while it waits, within the inlining depth, so the
/// awaited work still gets a thread: late, rather than never. Only then may
/// a job run here make a timed wait late.
fn blocked_loop(
    w: &impl Waitable,
    deadline: Deadline,
    pool: &Arc<Registry>,
    mut blocked: worker::Blocked<'_>,
) -> Waited {
    let mut recheck = RECHECK;
    let mut next_recheck = Instant::now() + recheck;
    loop {
        if w.done() {
            return Waited::Done;
        }
        if deadline.has_passed() {
            return Waited::TimedOut;
        }
        if blocked.must_help(w.runs_jobs_only_as_a_last_resort())
            && run_a_queued_job(pool) == Some(true)
        {
            continue;
        }
        // Subtle: a wait that runs the queue itself (no stand-in) looks at
        // it every `RECHECK`, since a push does not wake it: with the
        // backed-off interval, work queued beside a long wait started up to
        // a second late (`tests/must_help_attacks.rs`). Only the rechecks,
        // which may try to start a spare, back off.
        let now = Instant::now();
        let nap = if blocked.compensated {
            next_recheck.saturating_duration_since(now)
        } else {
            next_recheck.saturating_duration_since(now).min(RECHECK)
        };
        let left = deadline.remaining();
        if !block_once(w, deadline, Some(left.map_or(nap, |l| l.min(nap)))) {
            return Waited::GaveUp;
        }
        if !w.done() && Instant::now() >= next_recheck {
            blocked.recheck(pool);
            // A spare still starting is looked at again soon: if it fails,
            // this thread runs the queue.
            recheck = if blocked.spare_starting() {
                RECHECK
            } else {
                (recheck * 2).min(MAX_RECHECK)
            };
            next_recheck = Instant::now() + recheck;
            if !blocked.compensated
                && !may_inline(pool)
                && blocked.all_blocked()
                && pool.has_queued()
                && !w.done()
            {
                if w.gives_up_while_unwinding() {
                    refuse_cannot_progress();
                    return Waited::GaveUp;
                }
                cannot_progress();
            }
        }
    }
}

/// Nothing can ever run the queued work: a clear error, not a hang (issue
/// 8's promise). For a blocking wait on a worker with every thread of the
/// pool waiting, no stand-in possible, and no more depth to run jobs in;
/// a wait that may give up, and an executor's wait (`exec_wait::help`),
/// go through [`refuse_cannot_progress`] instead.
pub(crate) fn cannot_progress() -> ! {
    panic!("{}", cannot_progress_why())
}

/// [`cannot_progress`] for a wait that may give up: panics as it does,
/// except on a thread already unwinding from another panic, where that
/// second panic would abort the process; it returns then
/// ([`crate::panic::refuse`]), and the wait gives up ([`Waited::GaveUp`]).
pub(crate) fn refuse_cannot_progress() {
    crate::panic::refuse(format_args!("{}", cannot_progress_why()));
}

/// [`cannot_progress`]'s message.
fn cannot_progress_why() -> String {
    format!(
        "parpool: a wait on a worker cannot make progress: every thread of the pool is \
         waiting, no spare thread could be started (the system refused one, the initializer \
         panicked, or {} spares are running), and the waits are nested deeper than this \
         thread may run jobs itself; giving up instead of hanging",
        worker::MAX_SPARES
    )
}

/// For a wait on a worker of `pool` that no stand-in can relieve: runs the
/// next queued job here, as one more inlined level ([`nested`]; `None` past
/// the depth). Returns whether it ran one. Rule 2 yields here, late rather
/// than never: the job may be unrelated to the wait, since a thread of the
/// pool may wait where the pool cannot see it, for a queued job (a channel
/// it feeds); except for an imap consumer, which waits until every thread
/// of the pool waits ([`Waitable::runs_jobs_only_as_a_last_resort`]).
pub(crate) fn run_a_queued_job(pool: &Arc<Registry>) -> Option<bool> {
    nested(pool, || pool.pop().map(|job| pool.run_job(job)).is_some())
}

/// Runs `f` as one more level of work inlined into a wait on this thread
/// (a worker's wait helping, an imap consumer running its own credit, on
/// any thread), if the inlining depth allows: `None` past it, so nesting
/// cannot grow the stack without bound. The one place the depth is kept.
pub(crate) fn nested<T>(pool: &Registry, f: impl FnOnce() -> T) -> Option<T> {
    if !may_inline(pool) {
        return None;
    }
    INLINE_DEPTH.with(|d| d.set(d.get() + 1));
    let _depth = DepthGuard;
    Some(f())
}

fn block_loop(w: &impl Waitable, deadline: Deadline) -> Waited {
    loop {
        if w.done() {
            return Waited::Done;
        }
        if deadline.has_passed() {
            return Waited::TimedOut;
        }
        if !block_once(w, deadline, deadline.remaining()) {
            return Waited::GaveUp;
        }
    }
}

/// Blocks in `w` once, for at most `timeout`. An untimed wait for one
/// task publishes its edge in the wait graph for exactly as long as it
/// blocks (so no user code runs on this thread while it is published:
/// [`crate::wait_graph`]'s invariant). If that closes a wait cycle, the
/// wait is refused instead; returns `false` only on a thread already
/// unwinding, where the wait then gives up unfinished.
fn block_once(w: &impl Waitable, deadline: Deadline, timeout: Option<Duration>) -> bool {
    let _edge = match w.awaited_task() {
        Some(task) if deadline.is_never() => match crate::wait_graph::block_for(task) {
            Ok(edge) => Some(edge),
            Err(cycle) => {
                crate::wait_graph::refuse(cycle);
                return false;
            }
        },
        _ => None,
    };
    w.block(timeout);
    true
}

fn may_inline(pool: &Registry) -> bool {
    let limit = match pool.config.stack_size {
        Some(bytes) => (bytes / STACK_PER_LEVEL).min(MAX_INLINE as usize) as u32,
        None => MAX_INLINE,
    };
    INLINE_DEPTH.with(|d| d.get()) < limit
}

struct DepthGuard;

impl Drop for DepthGuard {
    fn drop(&mut self) {
        INLINE_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        assert!(
            Deadline::after(Duration::MAX).is_never()
                || !Deadline::after(Duration::MAX).has_passed()
        );
        assert_eq!(Deadline::NEVER.remaining(), None);
        assert!(Deadline::after(Duration::ZERO).has_passed());
        let d = Deadline::after(Duration::from_secs(3600));
        assert!(d.remaining().unwrap() > Duration::from_secs(3500));
    }
}
