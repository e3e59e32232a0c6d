//! Executor waits: parpool futures awaited by an executor that blocks on a
//! worker (`futures::executor::block_on` inside a job).
//!
//! The pool cannot see such a wait: the executor, not the pool, parks the
//! thread. On a pool whose every worker awaits that way, the awaited work
//! (or work it waits for, queued on this pool) would have no thread. So a
//! parpool future or stream that returns `Pending` on a worker records
//! itself in the thread's set of *pending* futures, and while that set is
//! not empty the worker counts as blocked in its own pool's census, and a
//! thread resting in reserve or a spare runs the queue in its place
//! (`worker::count_blocked`).
//!
//! Invariants:
//! - The thread counts as blocked exactly while its set is not empty: one
//!   count however many futures wait, added when the set fills and removed
//!   when it empties.
//! - A future leaves the set only itself: at its next poll, or when it is
//!   dropped. So one future finishing, or dropped, while another still
//!   waits does not uncount the thread (an executor's `join` parks with
//!   the other pending).
//! - Nested runs do not mix: a blocking wait (`park::wait`) and a job
//!   (`Registry::run_job`, also inlined into a wait) suspend the thread's
//!   set on entry (uncounting it: the thread is busy, not parked) and
//!   restore it on exit (counting it again), after dropping whatever the
//!   inner run left (its futures can no longer park this thread).
//!
//! - A key leaves the set when its future is polled again, spent (a
//!   handle's outcome taken, by `get` too) or dropped; whatever a job or an
//!   initializer leaves is dropped when it returns, and a thread that exits
//!   gives its count back (`Waits`'s `Drop`).
//!
//! If no stand-in can come (a thread of the pool failed to start, or the
//! spare limit is reached: `worker::stranded`), the poll runs queued jobs
//! itself before it returns `Pending` ([`help`]), its awaited task first:
//! late rather than never, as a blocking wait does (`park.rs`). A thread
//! that fails to start later wakes every future pending this way on the
//! pool (their wakers are kept by key in the pool's census), so an
//! executor that parked on the promise of a stand-in polls again. In this
//! mode a job run inside `poll` that itself blocks on an executor panics
//! (`EnterError`, contained as that job's panic): a clear error where
//! there would be a hang.
//!
//! The count above may ask for a spare, and one the system refuses at
//! once wakes the pool's pending futures on this thread
//! (`worker::start_failed`), where a waker may wait on a pool, poll or
//! drop a handle, run jobs, or panic. So no code outside this module runs
//! inside a borrow of the set: the count is marked in the set under the
//! borrow and made after it ([`Waits::count`]), as are the drops of
//! wakers and of the pool's handle. Code woken by the count finds the set
//! as it is, counted: a wait there puts it aside (uncounting it) and
//! restores it, so the thread is counted once, never twice or not at all.
//! Every access still takes the set with `try_borrow_mut`, a backstop
//! that cannot panic: a wait or job finding it borrowed puts nothing aside
//! ([`Suspended::Busy`]), and a poll there helps at once if stranded.
//!
//! A future dropped on another thread than the one it waited on leaves its
//! key in the first thread's set until that thread's job returns: the pool
//! then runs one thread too many for a while, never one too few. A
//! thread-local flag keeps the common paths (every job, every handle's drop)
//! at one check when nothing is pending.

use crate::panic;
use crate::registry::Registry;
use crate::sync::lock;
use crate::worker;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

/// A pool's futures pending in an executor's wait on one of its workers:
/// their wakers by key, and which of them returned `Pending` stranded
/// with nothing to run (they are woken when a job is queued).
///
/// Invariant: `parked` is the number of entries marked so, changed only
/// under the map's lock. A submitter reads it without the lock after its
/// push and a `SeqCst` fence; a stranded poll marks itself, fences, and
/// then looks at the queue (a Dekker pair, as in `sleep.rs`): either the
/// poll sees the job, or the submitter sees the mark and wakes it.
#[derive(Default)]
pub(crate) struct Watched {
    wakers: Mutex<HashMap<usize, (Waker, bool)>>,
    parked: AtomicUsize,
}

impl Watched {
    /// Records the waker of the future `key` (replacing an older one, and
    /// its mark).
    fn watch(&self, key: usize, waker: &Waker) {
        // Cloned and dropped outside the lock: a waker's clone and drop
        // are the executor's code.
        let new = waker.clone();
        let old = {
            let mut wakers = lock(&self.wakers);
            let old = wakers.insert(key, (new, false));
            self.unmark(&old);
            old
        };
        panic::drop_discarding(old);
    }

    /// Forgets the waker recorded for `key`, and returns it: the caller
    /// drops it once it holds no borrow of the thread's set (the waker may
    /// own the last reference to futures, whose drop comes back here).
    #[must_use]
    fn unwatch(&self, key: usize) -> Option<(Waker, bool)> {
        let mut wakers = lock(&self.wakers);
        let old = wakers.remove(&key);
        self.unmark(&old);
        old
    }

    /// Under the lock: `entry` left the map.
    fn unmark(&self, entry: &Option<(Waker, bool)>) {
        if let Some((_, true)) = entry {
            self.parked.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Marks `key` as returning `Pending` stranded, with nothing to run.
    fn mark_parked(&self, key: usize) {
        let mut wakers = lock(&self.wakers);
        if let Some((_, parked @ false)) = wakers.get_mut(&key) {
            *parked = true;
            self.parked.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes every future recorded, and forgets them: each polls again,
    /// and records itself again if it still waits.
    pub(crate) fn wake_all(&self) {
        let wakers = {
            let mut wakers = lock(&self.wakers);
            self.parked.store(0, Ordering::SeqCst);
            std::mem::take(&mut *wakers)
        };
        for (w, _) in wakers.into_values() {
            // An executor's waker is foreign code: contained, and not a
            // task panic (no count, no policy).
            drop(panic::contain(|| w.wake()));
        }
    }

    /// After a push and a `SeqCst` fence: wakes the futures if any
    /// returned `Pending` stranded (one load when none did).
    #[inline]
    pub(crate) fn wake_if_parked(&self) {
        if self.parked.load(Ordering::SeqCst) != 0 {
            self.wake_all();
        }
    }
}

/// What one thread has pending, in which pool, and whether it holds a
/// count in that pool's census. Dropped (at thread exit) it gives the count
/// back.
#[derive(Default)]
pub(crate) struct Waits {
    pool: Option<Arc<Registry>>,
    pending: HashSet<usize>,
    counted: bool,
    /// Futures that returned `Pending` stranded in this job (or wait)
    /// already: their next stranded `Pending` helps (see [`pending`]).
    seen: HashSet<usize>,
}

impl Waits {
    /// Marks the thread counted blocked if something is pending and it is
    /// not yet, and returns the pool the caller must then count it in with
    /// [`count_now`], once it holds no borrow of the set.
    ///
    /// Subtle: the count may ask for a spare, and one the system refuses
    /// at once wakes the pool's pending futures on this thread
    /// (`worker::start_failed`): an executor's code, which may wait, poll,
    /// drop or run jobs, and so reach this set. Marked first, counted
    /// after: the count is in the census before any such code runs
    /// (`worker::count_blocked` adds it before it asks), and that code
    /// finds a set which says so (a wait there puts it aside and uncounts
    /// it, so the thread is not counted twice).
    #[must_use]
    fn count(&mut self) -> Option<Arc<Registry>> {
        match (&self.pool, self.pending.is_empty(), self.counted) {
            (Some(pool), false, false) => {
                self.counted = true;
                Some(Arc::clone(pool))
            }
            _ => None,
        }
    }

    /// Gives the count back, if it holds one; the keys stay.
    fn uncount(&mut self) {
        if let (Some(pool), true) = (&self.pool, self.counted) {
            worker::uncount_blocked(pool);
            self.counted = false;
        }
    }
}

/// Counts the thread blocked in `pool`, as [`Waits::count`] said, with no
/// borrow of the set held.
fn count_now(pool: Option<Arc<Registry>>) {
    if let Some(pool) = pool {
        worker::count_blocked(&pool);
    }
}

/// Dropped with no borrow of `WAITS` held (see [`Watched::unwatch`]).
impl Drop for Waits {
    fn drop(&mut self) {
        self.uncount();
        if let Some(pool) = &self.pool {
            let old: Vec<_> = self
                .pending
                .iter()
                .map(|&key| pool.census.exec_waiters.unwatch(key))
                .collect();
            panic::drop_all_discarding(old);
        }
    }
}

thread_local! {
    static WAITS: RefCell<Waits> = RefCell::new(Waits::default());
    /// Whether `WAITS` may hold a key: the common paths (every job, every
    /// handle's drop) look only at this.
    static ANY: Cell<bool> = const { Cell::new(false) };
}

fn any() -> bool {
    ANY.try_with(Cell::get).unwrap_or(false)
}

/// Whether this stranded `Pending` of `key` is a first time in this job,
/// and records it (see [`pending`]). `false` if the set cannot be reached.
fn first_time(key: usize) -> bool {
    WAITS
        .try_with(|w| {
            w.try_borrow_mut().is_ok_and(|mut w| {
                let _ = ANY.try_with(|a| a.set(true));
                w.seen.insert(key)
            })
        })
        .unwrap_or(false)
}

/// The future identified by `key` is about to return `Pending` on this
/// thread, to be woken through `waker`. Returns whether the thread is
/// stranded: a worker no stand-in will replace, which must run queued jobs
/// itself ([`help`]) rather than let its executor park it
/// (`worker::stranded`; `last_resort`: only once every thread of the pool
/// waits, for a stream, as `park::Waitable::runs_jobs_only_as_a_last_resort`
/// says).
pub(crate) fn pending(key: usize, waker: &Waker, last_resort: bool) -> bool {
    let Some(pool) = worker::current() else {
        return false;
    };
    // The waker first: a thread that fails to start after the count below
    // started it finds it.
    pool.census.exec_waiters.watch(key, waker);
    // `try_with`: a handle may be polled or dropped by another
    // thread-local's destructor, after this one is gone. `try_borrow_mut`:
    // or from an executor's code (a waker) run while the set is borrowed.
    let recorded = WAITS.try_with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else {
            return None;
        };
        let old = if w.pending.is_empty() {
            w.pool.replace(Arc::clone(&pool))
        } else {
            None
        };
        w.pending.insert(key);
        // Up before the count: code it runs on this thread finds the key
        // (a wait there puts the set aside, and restores it).
        let _ = ANY.try_with(|a| a.set(true));
        Some((w.count(), old))
    });
    match recorded {
        Ok(Some((to_count, old))) => {
            drop(old);
            count_now(to_count);
        }
        // The set borrowed: no code outside this module runs inside its
        // borrows (counts and drops come after them, see [`Waits::count`]),
        // so this is a backstop, never reached. If it were: if no
        // stand-in comes, the future helps now, as a recorded one would
        // (an executor that parks here would wait for work queued behind
        // this very thread), and its waker stays watched, so that a job
        // queued later wakes it if it marks itself; its end unwatches it
        // ([`forget`]), or else the pool's next `wake_all` drops it.
        Ok(None) if worker::stranded(&pool, last_resort) => return true,
        _ => {
            panic::drop_discarding(pool.census.exec_waiters.unwatch(key));
            return false;
        }
    }
    if !worker::stranded(&pool, last_resort) {
        return false;
    }
    // Nothing queued: the future is marked, so that a job queued later
    // wakes it (a self-wake here made an executor that runs each poll as a
    // job of the pool spin), and returns `Pending`: nothing to run.
    // Subtle: marked, then the queue is looked at again; a submitter
    // pushes, then looks at the mark (`Watched`). A job that came in
    // meanwhile is not run inside this poll, which found none: it may be
    // this executor's own next poll of this very future, queued by a wake,
    // and running it here re-enters the executor, which may hold a lock
    // around this poll (`tests/nested_poll_attacks.rs`: the only worker
    // deadlocked). The future asks to be polled again instead (unless
    // its waker panics: then, as below, it helps now).
    if !pool.has_queued() {
        pool.census.exec_waiters.mark_parked(key);
        fence(Ordering::SeqCst);
        return pool.has_queued() && panic::contain(|| waker.wake_by_ref()).is_err();
    }
    // Subtle: the first time in a job, a stranded future asks to be polled
    // again at once and runs nothing. An executor about to park
    // (`block_on`) polls it again, and then it helps; a peek
    // (`now_or_never`), which polls once, never runs a queued job (one
    // that waits for what the peeking code does next would wait forever).
    // If the waker panics, it may not have woken anything: it helps now.
    !(first_time(key) && panic::contain(|| waker.wake_by_ref()).is_ok())
}

/// What a stranded poll does after [`help`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Helped {
    /// It ran something (or its waker panicked): poll again.
    PollAgain,
    /// Nothing to run here: return `Pending` (the future is marked, or
    /// woken).
    Pending,
    /// Nothing could ever run the queued work, on a thread already
    /// unwinding: the poll gives up with its documented value (a handle's
    /// `TaskError::Timeout`, a stream's end) instead of `Pending`, which
    /// would park the thread for good.
    GaveUp,
}

/// For the future `key` whose [`pending`] found the thread stranded: runs
/// `own` (the awaited task, if still queued) or else one queued job of the
/// thread's pool, here, as one more inlined level (`park::nested`,
/// `park::run_a_queued_job`), and says what the poll does next. With
/// nothing to run, it marks the future, so that the next job queued on the
/// pool wakes it ([`Helped::Pending`]); work that came in meanwhile wakes
/// it through `waker` instead of running here (as in [`pending`]). Past
/// the inlining depth, with every thread of the pool waiting and work
/// queued, nothing could ever run that work: it panics
/// (`park::refuse_cannot_progress`), except on a thread already
/// unwinding, where a second panic would abort the process: the poll
/// gives up then ([`Helped::GaveUp`]). Both its callers (a handle's poll,
/// a stream's) have a give-up value, and returning one is sound: the
/// awaited work stays queued, owned by the pool.
pub(crate) fn help(key: usize, waker: &Waker, own: impl FnOnce(&Registry) -> bool) -> Helped {
    let Some(pool) = worker::current() else {
        return Helped::Pending;
    };
    let ran = crate::park::nested(&pool, || {
        // Busy, not parked, while the task runs; what it leaves pending
        // cannot park this thread (as `Registry::run_job` does).
        let _inner = suspend();
        own(&pool)
    })
    .and_then(|ran| {
        if ran {
            Some(true)
        } else {
            crate::park::run_a_queued_job(&pool)
        }
    });
    match ran {
        Some(true) => Helped::PollAgain,
        Some(false) => {
            // Subtle: marked, then the queue is looked at; a submitter
            // pushes, then looks at the mark (`Watched`). What came in
            // meanwhile may be this executor's own next poll: not run here.
            pool.census.exec_waiters.mark_parked(key);
            fence(Ordering::SeqCst);
            if pool.has_queued() && panic::contain(|| waker.wake_by_ref()).is_err() {
                Helped::PollAgain
            } else {
                Helped::Pending
            }
        }
        None if worker::all_blocked(&pool) && pool.has_queued() => {
            crate::park::refuse_cannot_progress();
            Helped::GaveUp
        }
        None => Helped::Pending,
    }
}

/// The future identified by `key` is polled again, spent or dropped: it no
/// longer waits (if it still does, its poll records it again).
#[inline]
pub(crate) fn resumed(key: usize) {
    forget(key, false);
}

/// The future identified by `key` is spent or dropped: as [`resumed`], and
/// its first `Pending` is forgotten too (a new future may come to live at
/// its address).
#[inline]
pub(crate) fn ended(key: usize) {
    forget(key, true);
}

#[inline]
fn forget(key: usize, ended: bool) {
    if !any() {
        return;
    }
    // Not recorded if the set is borrowed (a backstop: no code outside
    // this module runs inside its borrows): the key then stays until the
    // job ends, a thread too many for a while, never one too few. A future
    // that ends there forgets its waker, which [`pending`] may have kept
    // watched.
    let old = WAITS.try_with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else {
            let old = ended
                .then(worker::current)
                .flatten()
                .and_then(|pool| pool.census.exec_waiters.unwatch(key));
            return (old, None);
        };
        if ended {
            w.seen.remove(&key);
        }
        let mut old = None;
        let mut pool = None;
        if w.pending.remove(&key) {
            if let Some(pool) = &w.pool {
                old = pool.census.exec_waiters.unwatch(key);
            }
            if w.pending.is_empty() {
                w.uncount();
                pool = w.pool.take();
            }
        }
        let _ = ANY.try_with(|a| a.set(!w.pending.is_empty() || !w.seen.is_empty()));
        (old, pool)
    });
    // After the borrow: the waker's drop is the executor's code, and so may
    // be the pool's (its last handle gone, it drops queued jobs).
    if let Ok((old, pool)) = old {
        panic::drop_discarding(old);
        drop(pool);
    }
}

/// The thread's pending set, put aside while a blocking wait or a job runs
/// on it; restored (and counted again) when dropped.
pub(crate) enum Suspended {
    /// Nothing was pending: whatever the inner run leaves is dropped.
    Empty,
    /// The set put aside, uncounted.
    Aside(Waits),
    /// The set was borrowed (a backstop, never made: no code outside this
    /// module runs inside its borrows, see [`Waits::count`]). Nothing was
    /// put aside and nothing is restored: the outer set stays as it is.
    Busy,
}

/// Puts the thread's pending set aside (uncounting it) until the guard
/// drops.
///
/// Subtle: counting the thread blocked may start a spare which the system
/// refuses at once; the refusal wakes every future pending on the pool
/// (`worker::start_failed`) on this thread, and a waker is the executor's
/// code, which may wait on a pool (`tests/borrowed_waits_attacks.rs`).
/// The count runs after the set's borrow ([`Waits::count`]), so such a
/// wait puts the set aside and uncounts it like any other: the thread is
/// counted once, by the wait (`tests/borrowed_census_attacks.rs`: counted
/// twice, a wait past the inlining depth panicked "cannot make progress"
/// beside a busy worker). [`Suspended::Busy`], for a set found borrowed,
/// is a backstop.
#[inline]
pub(crate) fn suspend() -> Suspended {
    if !any() {
        return Suspended::Empty;
    }
    WAITS
        .try_with(|w| {
            let Ok(mut w) = w.try_borrow_mut() else {
                return Suspended::Busy;
            };
            w.uncount();
            let _ = ANY.try_with(|a| a.set(false));
            Suspended::Aside(std::mem::take(&mut *w))
        })
        .unwrap_or(Suspended::Empty)
}

impl Drop for Suspended {
    fn drop(&mut self) {
        let outer = match self {
            Suspended::Busy => return,
            // The common case: nothing waits, nothing was put aside.
            Suspended::Empty if !any() => return,
            Suspended::Empty => Waits::default(),
            // Taken in place: moving the guard's set out first would copy
            // it on the common path, where there is nothing to restore.
            Suspended::Aside(outer) => std::mem::take(outer),
        };
        // `try_borrow_mut`, a backstop: the set cannot be borrowed here (no
        // code outside this module runs inside its borrows, see
        // [`Waits::count`]). If it were, what the inner run left stays, and
        // the outer set is dropped (uncounted already): its futures record
        // themselves again at their next poll.
        let restored = WAITS.try_with(|w| {
            let Ok(mut w) = w.try_borrow_mut() else {
                return (outer, None);
            };
            let inner = std::mem::replace(&mut *w, outer);
            let _ = ANY.try_with(|a| a.set(!w.pending.is_empty() || !w.seen.is_empty()));
            (inner, w.count())
        });
        if let Ok((inner, to_count)) = restored {
            // After the borrow (see [`Waits::count`]); before the inner
            // set's count goes back: a thread too many for a moment, never
            // one too few.
            count_now(to_count);
            // What the inner run left can no longer park this thread: its
            // count goes back as the inner set is dropped.
            drop(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_the_pool_nothing_is_recorded() {
        assert!(!pending(1, futures::task::noop_waker_ref(), false));
        WAITS.with(|w| assert!(w.borrow().pending.is_empty()));
        resumed(1);
        drop(suspend());
        WAITS.with(|w| assert!(w.borrow().pool.is_none()));
    }
}
