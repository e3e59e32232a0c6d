//! `AsyncResult`: the handle to one task's future result.
//!
//! A task and its handle share a *slot*. The slot's status moves
//! `QUEUED -> CLAIMED -> DONE`, and exactly one party claims it: the worker
//! that starts the task, a waiter that inlines it, `cancel`, or the queue
//! dropping the job unrun (terminate). The claimer runs the callbacks (with
//! the slot's mutex released, so a callback may drop or read its own
//! handle), then, under the mutex, stores the outcome, marks the slot done
//! and wakes every waiter; so callbacks have run before any `wait` returns,
//! and no outcome is ever written twice or never. A callback that waits for
//! its own task panics with a clear message instead of waiting forever.
//!
//! The outcome lives outside the mutex: the claimer writes it before the
//! `Release` store of `DONE` and never touches it again, and only the handle
//! reads or takes it, after an `Acquire` load of `DONE` (taking needs
//! `&mut` to the handle). So `get` on a finished task takes no lock: no
//! read-modify-write of a cache line the worker wrote last (W4 in
//! `docs/design.md`). It is stored untagged (a union, [`Held`]), with its
//! tag in a byte beside the slot's flags, under the same rules: a one-word
//! task then fits one cache line.
//!
//! Dropping a handle does not cancel its task. In a scope, a panic that no
//! handle observed is handed to the scope, which re-raises it when it ends.

use crate::cancel::CancelFlag;
use crate::error::TaskError;
use crate::panic::{self, Payload};
use crate::park::{self, Deadline, Waitable};
use crate::registry::Registry;
use crate::scope::{ScopeHold, ScopeState};
use crate::sync::lock;
use crate::task_ptr::{Counted, Refs, TaskPtr};
use std::cell::{RefCell, UnsafeCell};
use std::fmt;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

const QUEUED: u8 = 0;
const CLAIMED: u8 = 1;
const DONE: u8 = 2;

/// `Slot::taken`: whether the handle took the outcome, and what it was.
const NOT_TAKEN: u8 = 0;
const TAKEN_OK: u8 = 1;
const TAKEN_ERR: u8 = 2;

/// The panic of a call that needs the result of a spent handle.
const SPENT: &str =
    "parpool: this AsyncResult's result was already returned (by get_timeout, or by awaiting it)";

type SuccessCallback<R> = Box<dyn FnOnce(&R) + Send>;
type ErrorCallback = Box<dyn FnOnce(&TaskError) + Send>;

/// A task's outcome. The failure is boxed: slots stay small, and a million
/// pending handles cost a million small allocations, not large ones.
pub(crate) type Outcome<R> = Result<R, Box<Failure>>;

/// Why a task has no value, with the panic payload kept for re-raising.
pub(crate) struct Failure {
    pub(crate) error: TaskError,
    pub(crate) payload: Option<Payload>,
}

impl Failure {
    pub(crate) fn new(error: TaskError, payload: Option<Payload>) -> Box<Self> {
        Box::new(Failure { error, payload })
    }
}

pub(crate) struct Slot<R> {
    status: AtomicU8,
    unwanted: AtomicBool,
    /// A failure was seen through the handle (`get`, `successful`), so it
    /// is not handed to the scope as unobserved.
    observed: AtomicBool,
    /// Whether the handle has taken the outcome (`TAKEN_OK`/`TAKEN_ERR`):
    /// read and written only through the handle, which is not `Clone`, so
    /// `Relaxed` suffices. Kept here, in the slot's padding, rather than in
    /// the handle: W4 keeps a million handles alive in one `Vec`.
    taken: AtomicU8,
    /// Whether the handle still exists (`false` from the start for a task
    /// without one). Read and written only with `inner` locked, which
    /// orders it, so `Relaxed` suffices.
    handle_alive: AtomicBool,
    /// Whose panic the task's closure may raise. A property of the task,
    /// kept in the slot where it packs with the flags.
    source: PanicSource,
    /// Threads blocked in `block`; `complete` skips the wake-up syscall if
    /// 0. Read and written only with `inner` locked, as `handle_alive`.
    waiters: AtomicU32,
    /// Which of `outcome`'s fields holds a value (`EMPTY`, `HELD_OK`,
    /// `HELD_ERR`); read and written under the same rules as `outcome`.
    held: UnsafeCell<u8>,
    /// Written once, by the claimer, before `status` becomes `DONE`; after
    /// that read only through the handle (see the module doc), and taken
    /// only by the handle (`&mut`), or by the claimer if the handle is gone
    /// (decided under the mutex, before `DONE`). Accessed only through the
    /// `Slot` methods below, which keep `held` in step.
    outcome: UnsafeCell<MaybeUninit<Held<R>>>,
    inner: Mutex<Inner<R>>,
    cond: Condvar,
    scope: Option<Arc<ScopeState>>,
}

// SAFETY: every field but `outcome` is `Sync` for `R: Send`. `outcome` is
// written by one thread (the claimer) before the `Release` store of `DONE`,
// and read or moved out only by the handle's owner after an `Acquire` load
// of `DONE` (moved out only through `&mut AsyncResult`); shared reads
// through `&AsyncResult` look only at whether it is `Ok`. So no two threads
// access it at once unless both only read, and no `&R` is shared between
// threads: `R: Send` suffices.
unsafe impl<R: Send> Sync for Slot<R> {}

/// What the slot's mutex holds. The two flags the mutex also guards
/// (`handle_alive`, `waiters`) are atomics beside the other flags, where
/// they pack into the slot's first word: a million pending tasks (W4) are
/// a 96-byte malloc chunk each, not 112 (`docs/design.md` §12).
struct Inner<R> {
    /// Callbacks and an executor's waker, boxed: most tasks have none, and
    /// every task is smaller without them inline (W4 keeps a million alive).
    extras: Option<Box<Extras<R>>>,
}

struct Extras<R> {
    on_success: Vec<SuccessCallback<R>>,
    on_error: Vec<ErrorCallback>,
    waker: Option<Waker>,
}

/// A task's outcome as stored in its slot: an [`Outcome`] without the tags
/// of `Option` and `Result`, which cost a word for a result type without a
/// spare bit pattern (`u64`); the slot's `held` byte, beside its other
/// flags, says which field holds a value. That word is what puts a
/// one-word task in one cache line (W4, `docs/design.md` §12).
union Held<R> {
    ok: std::mem::ManuallyDrop<R>,
    err: std::mem::ManuallyDrop<Box<Failure>>,
}

/// `Slot::held`.
const EMPTY: u8 = 0;
const HELD_OK: u8 = 1;
const HELD_ERR: u8 = 2;

// Not derived: that would ask for `R: Default`.
impl<R> Default for Extras<R> {
    fn default() -> Self {
        Extras {
            on_success: Vec::new(),
            on_error: Vec::new(),
            waker: None,
        }
    }
}

impl<R> Slot<R> {
    /// A slot in `QUEUED`; `handle_alive: false` for a task without a
    /// handle (`spawn`), whose claimer drops the outcome itself.
    fn new_inline(scope: Option<Arc<ScopeState>>, handle_alive: bool, source: PanicSource) -> Self {
        Slot {
            status: AtomicU8::new(QUEUED),
            unwanted: AtomicBool::new(false),
            observed: AtomicBool::new(false),
            taken: AtomicU8::new(NOT_TAKEN),
            handle_alive: AtomicBool::new(handle_alive),
            source,
            waiters: AtomicU32::new(0),
            held: UnsafeCell::new(EMPTY),
            outcome: UnsafeCell::new(MaybeUninit::uninit()),
            inner: Mutex::new(Inner { extras: None }),
            cond: Condvar::new(),
            scope,
        }
    }

    /// Claims the right to fill in the outcome; `false` if someone else has.
    fn claim(&self) -> bool {
        self.status
            .compare_exchange(QUEUED, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn is_done(&self) -> bool {
        self.status.load(Ordering::Acquire) == DONE
    }

    /// Stores the outcome (the caller has claimed the slot), runs the
    /// callbacks, then marks the slot done and wakes every waiter.
    /// Returns the outcome back if its handle is gone: the claimer drops it
    /// (contained), so a result never outlives the claim in a task that
    /// only the queue still references (see [`Task`]).
    #[must_use = "an orphaned outcome must be dropped by the claimer"]
    fn complete(&self, outcome: Outcome<R>) -> Option<Outcome<R>> {
        // SAFETY: we are the claimer and the status is not `DONE` yet, so
        // no one else looks at the outcome (module doc), which is empty.
        unsafe { self.store(outcome) };
        if self.finish() {
            // SAFETY: `DONE`, and the handle is gone: no one else looks at
            // the outcome any more.
            unsafe { self.take_held() }
        } else {
            None
        }
    }

    /// [`complete`](Self::complete) for an outcome the claimer has stored
    /// in place already (a large result is not copied again): runs the
    /// callbacks, then marks the slot done and wakes every waiter. Returns
    /// whether the handle is gone, in which case the stored outcome is the
    /// claimer's to drop (contained).
    #[must_use = "an orphaned outcome must be dropped by the claimer"]
    fn finish(&self) -> bool {
        // SAFETY: stored by the claimer (the caller), and nobody takes or
        // writes it before `DONE` (module doc); the handle only reads it
        // after `DONE`. So a shared reference is sound until then.
        let outcome = unsafe { self.peek() }.expect("parpool: a completing slot holds its outcome");
        // Callbacks run without the slot's lock held: a callback may drop
        // its own handle (a "remove me from the pending set" pattern) or
        // read it. One registered while they run is picked up by the loop;
        // the slot is marked done only once none is left.
        let mut inner = loop {
            let mut inner = lock(&self.inner);
            let Some(extras) = inner
                .extras
                .as_mut()
                .filter(|e| !e.on_success.is_empty() || !e.on_error.is_empty())
            else {
                break inner;
            };
            let on_success = std::mem::take(&mut extras.on_success);
            let on_error = std::mem::take(&mut extras.on_error);
            drop(inner);
            let _completing = Completing::enter(self);
            // Callbacks that do not run are dropped one by one, contained:
            // their `Drop` is user code too.
            match outcome {
                Ok(value) => {
                    for cb in on_success {
                        run_callback(|| cb(value));
                    }
                    panic::drop_all_discarding(on_error);
                }
                Err(failure) => {
                    for cb in on_error {
                        run_callback(|| cb(&failure.error));
                    }
                    panic::drop_all_discarding(on_success);
                }
            }
        };
        let orphan = !self.handle_alive.load(Ordering::Relaxed);
        if orphan {
            // SAFETY: as above; the shared reference is not used again.
            if let Some(failure) = unsafe { self.failure_mut() } {
                self.hand_unobserved_panic_to_scope(failure);
            }
        }
        self.status.store(DONE, Ordering::Release);
        let waker = inner.extras.as_mut().and_then(|e| e.waker.take());
        let waiters = self.waiters.load(Ordering::Relaxed) > 0;
        drop(inner);
        // Notified after the mutex is released, so woken waiters do not
        // block on it; the claimer holds a reference to the task.
        if waiters {
            self.cond.notify_all();
            crate::sleep::handed_off();
        }
        if let Some(w) = waker {
            // An executor's waker is foreign code: contain it like a callback.
            run_callback(|| w.wake());
        }
        orphan
    }

    fn hand_unobserved_panic_to_scope(&self, failure: &mut Failure) {
        if let Some(scope) = &self.scope {
            if !self.observed.load(Ordering::Relaxed) {
                if let Some(p) = failure.payload.take() {
                    scope.report_panic(p);
                }
            }
        }
    }

    /// The outcome, once the slot is done; `None` if it was taken.
    ///
    /// # Safety
    ///
    /// Only through the handle, and the caller must not take the outcome
    /// (`outcome_mut`) while the returned reference lives.
    unsafe fn outcome(&self) -> Option<Result<&R, &Failure>> {
        if !self.is_done() {
            return None;
        }
        // SAFETY: `DONE` was loaded with `Acquire`: the claimer's write is
        // visible and it never writes again (module doc); the caller rules
        // out a concurrent take.
        unsafe { self.peek() }
    }

    /// Takes the outcome, once the slot is done; `None` before, or if it
    /// was taken.
    ///
    /// # Safety
    ///
    /// Only through the handle, with exclusive access to it (`&mut`), so
    /// nothing else reads the outcome meanwhile.
    unsafe fn take_done(&self) -> Option<Outcome<R>> {
        if !self.is_done() {
            return None;
        }
        // SAFETY: as in `outcome`; the caller's `&mut` handle rules out any
        // other access.
        unsafe { self.take_held() }
    }

    // The outcome cell's own operations. Each is `unsafe`: the caller has
    // the access that the module doc's rules give (the claimer before
    // `DONE`; the handle, or the claimer of an orphan, after it), and no
    // reference from `peek` or `failure_mut` is alive across a call that
    // writes or takes.

    /// Stores `outcome` in the empty cell.
    unsafe fn store(&self, outcome: Outcome<R>) {
        match outcome {
            // SAFETY: the caller's access; nothing is held, so nothing is
            // overwritten.
            Ok(value) => unsafe { self.store_ok_with(|| value) },
            Err(failure) => unsafe {
                debug_assert_eq!(*self.held.get(), EMPTY);
                (*self.outcome.get()).write(Held {
                    err: std::mem::ManuallyDrop::new(failure),
                });
                *self.held.get() = HELD_ERR;
            },
        }
    }

    /// Stores `f()`'s value in the empty cell, straight in place: a large
    /// `R` returned by value is not copied from frame to frame. If `f`
    /// panics, the cell stays empty.
    unsafe fn store_ok_with(&self, f: impl FnOnce() -> R) {
        // SAFETY: the caller's access. A union's fields start at its start,
        // so the cast points at `ok`'s value; nothing is held, so nothing
        // is overwritten. `held` changes only once the value is written.
        unsafe {
            debug_assert_eq!(*self.held.get(), EMPTY);
            (*self.outcome.get()).as_mut_ptr().cast::<R>().write(f());
            *self.held.get() = HELD_OK;
        }
    }

    /// The outcome held, if any.
    unsafe fn peek(&self) -> Option<Result<&R, &Failure>> {
        // SAFETY: the caller's access; `held` says which field holds a
        // value, written before `held` was set.
        unsafe {
            let held = (*self.outcome.get()).as_ptr();
            match *self.held.get() {
                HELD_OK => Some(Ok(&*(*held).ok)),
                HELD_ERR => Some(Err(&**(*held).err)),
                _ => None,
            }
        }
    }

    /// The failure held, if the outcome is one, for taking its payload.
    #[allow(clippy::mut_from_ref)]
    unsafe fn failure_mut(&self) -> Option<&mut Failure> {
        // SAFETY: as in `peek`, with the caller's exclusive access.
        unsafe {
            match *self.held.get() {
                HELD_ERR => Some(&mut **(*(*self.outcome.get()).as_mut_ptr()).err),
                _ => None,
            }
        }
    }

    /// Moves the outcome out, leaving the cell empty.
    unsafe fn take_held(&self) -> Option<Outcome<R>> {
        // SAFETY: the caller's access. The cell is marked empty as the value
        // moves out, so it is never read or dropped again.
        unsafe {
            let held = (*self.outcome.get()).as_ptr();
            let outcome = match *self.held.get() {
                HELD_OK => Ok(std::mem::ManuallyDrop::into_inner(std::ptr::read(
                    &(*held).ok,
                ))),
                HELD_ERR => Err(std::mem::ManuallyDrop::into_inner(std::ptr::read(
                    &(*held).err,
                ))),
                _ => return None,
            };
            *self.held.get() = EMPTY;
            Some(outcome)
        }
    }

    /// Drops the outcome in place, leaving the cell empty; a panic from
    /// the value's `Drop` is returned (the cell is empty either way).
    unsafe fn drop_held(&self) -> Result<(), Payload> {
        // SAFETY: the caller's access. The cell is marked empty before the
        // drop, so a panicking `Drop` (which still drops the rest of the
        // value while unwinding) leaves nothing to drop twice.
        unsafe {
            let held = (*self.outcome.get()).as_mut_ptr();
            let was = std::mem::replace(&mut *self.held.get(), EMPTY);
            panic::contain(|| match was {
                HELD_OK => std::mem::ManuallyDrop::drop(&mut (*held).ok),
                HELD_ERR => std::mem::ManuallyDrop::drop(&mut (*held).err),
                _ => {}
            })
        }
    }
}

impl<R> Drop for Slot<R> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: nothing else touches the cell. As an
        // `Option`'s drop would, a panic from the value's `Drop` unwinds
        // from here (the task's memory is freed regardless, `task_ptr.rs`),
        // unless this thread is unwinding already.
        if let Err(p) = unsafe { self.drop_held() } {
            panic::reraise_unless_unwinding(p);
        }
    }
}

impl<R> CancelFlag for Slot<R>
where
    R: Send,
{
    fn is_cancelled(&self) -> bool {
        self.unwanted.load(Ordering::Relaxed)
    }
}

thread_local! {
    /// The slots whose callbacks this thread is running, by address,
    /// innermost last (a callback may wait for a task that this thread then
    /// runs inline, callbacks and all).
    static COMPLETING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn addr_of<R>(slot: &Slot<R>) -> usize {
    slot as *const Slot<R> as usize
}

/// Marks the current thread as running `slot`'s callbacks until dropped.
/// Holds whether the mark was pushed (not in a thread-local destructor
/// that runs after the stack's own).
struct Completing(bool);

impl Completing {
    fn enter<R>(slot: &Slot<R>) -> Self {
        Completing(
            COMPLETING
                .try_with(|c| c.borrow_mut().push(addr_of(slot)))
                .is_ok(),
        )
    }
}

impl Drop for Completing {
    fn drop(&mut self) {
        if self.0 {
            COMPLETING.with(|c| c.borrow_mut().pop());
        }
    }
}

/// How this thread is itself finishing `slot`'s task, if it is: running
/// the task, or its callbacks, at any depth of work nested on this thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OwnWork {
    Task,
    Callback,
}

fn own_work<R>(slot: &Slot<R>) -> Option<OwnWork> {
    if slot.is_done() {
        return None;
    }
    let addr = addr_of(slot);
    if COMPLETING
        .try_with(|c| c.borrow().contains(&addr))
        .unwrap_or(false)
    {
        Some(OwnWork::Callback)
    } else if crate::cancel::runs_here(addr) {
        Some(OwnWork::Task)
    } else {
        None
    }
}

/// The addresses of every slot this thread is finishing (see
/// [`own_work`]), for a check over many handles; usually empty.
pub(crate) fn own_work_marks() -> Vec<usize> {
    let mut marks = crate::cancel::running_here();
    let _ = COMPLETING.try_with(|c| marks.extend(c.borrow().iter().copied()));
    marks
}

/// Panics instead of waiting forever: an untimed wait (`get`, `wait`, a
/// poll, `as_completed`) for a task that this very thread is finishing,
/// which is done only once its body and callbacks return. (Timed waits
/// time out at once instead; see `AsyncResult::settle`.) A refusal
/// ([`panic::refuse`]): it returns only on a thread already unwinding, and
/// the wait then gives up as a timed one does.
#[track_caller]
fn refuse_wait_for_own_work(own: OwnWork) {
    panic::refuse(match own {
        OwnWork::Callback => format_args!(
            "parpool: a callback waited for its own task's result (or for a task whose callbacks \
             this thread is running), which is final only after its callbacks return; use the \
             value the callback is given"
        ),
        OwnWork::Task => format_args!(
            "parpool: a task waited for its own result (or for a task that waits for it on \
             this thread), which comes only once it returns: it would wait forever"
        ),
    });
}

/// Runs a user callback; a panicking callback is contained (the default hook
/// has printed it) and cannot break the pool or the handle.
fn run_callback(f: impl FnOnce()) {
    if let Err(p) = panic::contain(f) {
        // The payload's own `Drop` is user code too: dropped contained.
        drop(p);
    }
}

/// Whose panic a job's closure may raise.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PanicSource {
    /// The closure is the task: its panic is counted and meets the policy.
    Task,
    /// The closure relays panics of tasks that were already counted
    /// (`map_async` re-raising one of its items' panics).
    Relayed,
}

fn cancelled<R>() -> Outcome<R> {
    Err(Failure::new(TaskError::Cancelled, None))
}

/// A task's closure was dropped unrun and its `Drop` panicked: the task's
/// slot is complete by now, so re-raise the panic for the drain (or the
/// `cancel` caller) to see, unless this thread is unwinding already.
fn relay_drop_panic(payload: Option<Payload>) {
    if let Some(p) = payload {
        panic::reraise_unless_unwinding(p);
    }
}

/// Runs a claimed task on a thread of `registry` and completes its slot.
fn execute<R>(slot: &Slot<R>, f: impl FnOnce() -> R, source: PanicSource, registry: &Registry)
where
    R: Send,
{
    // A relaying task (`map_async`'s) is not a user item: its map counts.
    let items = usize::from(source == PanicSource::Task);
    let counters = registry.counters();
    counters.running(items as isize);
    crate::cancel::with_token(slot, true, || {
        // The result goes straight into the slot: a large `R` returned by
        // value is not copied from frame to frame on the worker's stack (a
        // 512 KiB result overflowed a 2 MiB stack that way; found by review).
        // SAFETY: we claimed the slot and it is not `DONE`, so only we touch
        // the outcome (module doc); it is empty.
        if let Err(payload) = panic::contain(|| unsafe { slot.store_ok_with(f) }) {
            // SAFETY: as above; `f` panicked, so nothing was stored.
            unsafe { slot.store(Err(failure_of(payload, source, registry))) };
        }
    });
    counters.finished(items, items);
    if slot.finish() {
        // The handle is gone: the claimer drops the result, in place and
        // contained (its `Drop` is user code).
        // SAFETY: `DONE` with no handle: only we touch the outcome.
        if let Err(p) = unsafe { slot.drop_held() } {
            registry.stray_panic(p);
        }
    }
}

/// A task and its slot in one allocation: the job behind `apply_async` and
/// `map_async`, of a pool or of a scope. The queue and the handle each hold a
/// reference; the worker frees nothing, and the last owner (usually the
/// handle, after `get`) frees the whole task at once.
///
/// The closure is taken by whoever claims the slot: the queue's reference
/// (running or cancelling it), the handle's `cancel`, or a waiter that
/// inlines it (see `park.rs`). In a scope, the queue's reference is counted
/// by the scope until it is dropped, and a claim made through the handle
/// holds the scope open (see [`Task::claim_f`]): so the closure, which may
/// borrow for the scope, is run or dropped before the scope ends.
#[repr(C)]
pub(crate) struct Task<F, R> {
    /// First, as a [`Counted`] value's must be: the queue's and the
    /// handle's references (`task_ptr.rs`).
    refs: Refs,
    slot: Slot<R>,
    /// Initialised while the slot is `QUEUED`; moved out by the slot's
    /// claimer (exactly one party, once, so never concurrently), and
    /// dropped by [`Task`]'s `Drop` if nobody ever claimed it. No `Option`:
    /// its tag would cost a word per task for most closures.
    f: UnsafeCell<MaybeUninit<F>>,
}

// The pool a task was queued on is its `Refs` key, by address: only
// compared, never dereferenced (a waiter inlines the task only on that
// pool's workers). The key's low two bits must be clear.
const _: () = assert!(std::mem::align_of::<Registry>() >= 4);

// SAFETY: `f` is accessed by one thread at a time, the slot's claimer (see
// its doc), and moved to that thread (`F: Send`); the slot is `Sync` for
// `R: Send`.
unsafe impl<F: Send, R: Send> Sync for Task<F, R> {}

// SAFETY: `#[repr(C)]`, `refs` first.
unsafe impl<F, R> Counted for Task<F, R> {}

impl<F, R> Task<F, R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    /// Makes the task; returns the queue's job and, if `with_handle`, the
    /// handle. A task without one (`spawn`) costs no handle reference, and
    /// its claimer drops the outcome (a panic in a scope goes to the scope).
    /// In a scope, the task counts in the scope until its claimer is done
    /// with it.
    ///
    /// # Safety
    ///
    /// If `'a` is not `'static`, `scope` must be the scope that `'a` lives
    /// for. (The lifetimes of both references are erased here.)
    pub(crate) unsafe fn spawn<'a>(
        f: F,
        source: PanicSource,
        pool: &Registry,
        scope: Option<Arc<ScopeState>>,
        with_handle: bool,
    ) -> (crate::job::SharedJob, Option<AsyncResult<R>>)
    where
        F: 'a,
        R: 'a,
    {
        if let Some(scope) = &scope {
            scope.add();
        }
        let task = Task {
            refs: Refs::with_key(pool as *const Registry as usize),
            slot: Slot::new_inline(scope, with_handle, source),
            f: UnsafeCell::new(MaybeUninit::new(f)),
        };
        let (job, handle) = if with_handle {
            let (job, handle) = TaskPtr::new_pair(task);
            (job, Some(handle))
        } else {
            (TaskPtr::new(task), None)
        };
        // SAFETY: the cast only unsizes the pointer.
        let job = unsafe { job.coerce(|p| p as *mut (dyn crate::job::SharedRun + 'a)) };
        // SAFETY: as above.
        let handle = handle.map(|h| unsafe { h.coerce(|p| p as *mut (dyn HasSlot<R> + 'a)) });
        // SAFETY: only the trait objects' lifetime bounds change (same
        // layout and vtables). What may borrow for `'a` is never touched
        // after the scope ends: [1] the closure is taken and dropped by the
        // slot's one claimer, which holds the scope's count for the task
        // until it is done; the scope cannot end before some claim (it
        // waits for the count), so a reference that outlives the scope
        // finds the closure gone (`None`). [2] The result lives in the slot
        // only while the handle lives; a result whose handle is gone (or
        // was never made) is dropped by the claimer (`Slot::complete`
        // returns it), and the handle drops its own. A handle itself can
        // outlive the scope only if `R` does. So after the scope, the
        // queue's or the handle's reference drops a task holding no
        // borrowed value.
        unsafe {
            let job = std::mem::transmute::<
                TaskPtr<dyn crate::job::SharedRun + 'a>,
                TaskPtr<dyn crate::job::SharedRun + 'static>,
            >(job);
            let handle = handle.map(|handle| {
                AsyncResult::from_slot(std::mem::transmute::<
                    TaskPtr<dyn HasSlot<R> + 'a>,
                    TaskPtr<dyn HasSlot<R> + 'static>,
                >(handle))
            });
            (crate::job::SharedJob::new(job), handle)
        }
    }
}

impl<F, R> Drop for Task<F, R> {
    fn drop(&mut self) {
        // Not reached today: the queue's reference claims the task when it
        // is dropped unrun (`SharedJob`'s `Drop`), so a task is freed in
        // `QUEUED` only if that reference leaked, and then it is never
        // freed. Kept so that the closure is dropped as the `Option` it
        // replaced would have been, whatever a future path does.
        if *self.slot.status.get_mut() == QUEUED {
            // SAFETY: nobody claimed the slot, so `f` is still initialised
            // and was never moved out; `&mut self`: nothing else touches it.
            unsafe { self.f.get_mut().assume_init_drop() };
        }
    }
}

impl<F, R> Task<F, R> {
    /// Claims the slot and takes the closure; `None` if someone else has.
    /// In a scope, the claimer also takes over the scope's count for the
    /// task (added by [`Task::spawn`]): the scope stays open until the
    /// returned guard drops, after the closure and any orphaned result.
    fn claim_f(&self) -> Option<(F, Option<ScopeHold<'_>>)> {
        if !self.slot.claim() {
            return None;
        }
        let hold = self.slot.scope.as_deref().map(ScopeHold::adopt);
        // SAFETY: `f` was initialised in `QUEUED`, and we moved the slot out
        // of it: no one else reads `f`, now or later (the status never
        // returns to `QUEUED`, and `Drop` skips a claimed task's `f`).
        let f = unsafe { (*self.f.get()).assume_init_read() };
        Some((f, hold))
    }

    /// Cancels the task if nobody claimed it; see [`relay_drop_panic`].
    fn cancel_unclaimed(&self) -> bool
    where
        R: Send,
    {
        match self.claim_f() {
            Some((f, hold)) => {
                let payload = panic::drop_contained(f);
                drop(self.slot.complete(cancelled()));
                drop(hold);
                relay_drop_panic(payload);
                true
            }
            None => false,
        }
    }
}

impl<F, R> crate::job::SharedRun for Task<F, R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    fn run_shared(&self, registry: &Registry) {
        if let Some((f, hold)) = self.claim_f() {
            execute(&self.slot, f, self.slot.source, registry);
            drop(hold);
        }
    }

    fn cancel_shared(&self) {
        self.cancel_unclaimed();
    }

    fn items(&self) -> usize {
        usize::from(self.slot.source == PanicSource::Task)
    }
}

/// What a handle reaches of its task.
pub(crate) trait HasSlot<R>: Send + Sync {
    fn slot(&self) -> &Slot<R>;

    /// Runs the task right here if it is still queued on `pool`.
    fn run_inline(&self, pool: &Registry) -> bool;

    /// Cancels the task if nobody claimed it yet.
    fn cancel(&self) -> bool;

    /// The address of the pool the task was queued on; 0 if none.
    fn pool_key(&self) -> usize;
}

impl<F, R> HasSlot<R> for Task<F, R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    fn slot(&self) -> &Slot<R> {
        &self.slot
    }

    fn run_inline(&self, pool: &Registry) -> bool {
        if self.refs.key() != pool as *const Registry as usize {
            return false;
        }
        match self.claim_f() {
            // Queued when `terminate` came: discarded as its drain would
            // (which may not have reached it yet), never run.
            Some((f, hold)) if pool.is_terminated() => {
                pool.discarding(|| {
                    let payload = panic::drop_contained(f);
                    drop(self.slot.complete(cancelled()));
                    drop(hold);
                    if let Some(p) = payload {
                        pool.stray_panic(p);
                    }
                });
                true
            }
            Some((f, hold)) => {
                execute(&self.slot, f, self.slot.source, pool);
                drop(hold);
                true
            }
            None => false,
        }
    }

    fn cancel(&self) -> bool {
        self.cancel_unclaimed()
    }

    fn pool_key(&self) -> usize {
        self.refs.key()
    }
}

/// What a task's panic makes of its outcome (counted unless relayed).
fn failure_of(payload: Payload, source: PanicSource, registry: &Registry) -> Box<Failure> {
    if payload.is::<panic::CancelledMarker>() {
        return Failure::new(TaskError::Cancelled, None);
    }
    if source == PanicSource::Task {
        registry.task_panicked(&payload);
    }
    Failure::new(
        TaskError::Panicked(panic::message(payload.as_ref())),
        Some(payload),
    )
}

/// The handle to a task's result, returned by
/// [`ThreadPool::apply_async`](crate::ThreadPool::apply_async) and the other
/// `_async` methods. Like Python's `AsyncResult`, and also a [`Future`]
/// (`handle.await` resolves to what [`get`](Self::get) returns).
///
/// Dropping the handle does not cancel the task: it runs anyway, and its
/// result (or panic) is dropped. For work whose result nobody wants, use
/// [`ThreadPool::spawn`](crate::ThreadPool::spawn).
///
/// # Examples
///
/// ```
/// use parpool::ThreadPool;
/// use std::time::Duration;
///
/// let pool = ThreadPool::new();
/// let mut handle = pool.apply_async(|| 6 * 7);
/// handle.wait();
/// assert!(handle.ready());
/// assert_eq!(handle.successful(), Some(true));
/// assert_eq!(handle.get_timeout(Duration::from_secs(1)), Ok(42));
/// ```
#[must_use = "the task runs whether or not its AsyncResult is kept, but its result and any panic are lost with the handle; use ThreadPool::spawn for fire-and-forget work"]
pub struct AsyncResult<R> {
    task: TaskPtr<dyn HasSlot<R>>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.slot().is_done())
            .finish_non_exhaustive()
    }
}

impl<R> AsyncResult<R> {
    fn from_slot(task: TaskPtr<dyn HasSlot<R>>) -> Self {
        AsyncResult { task }
    }

    #[inline]
    fn slot(&self) -> &Slot<R> {
        self.task.slot()
    }

    /// This handle's identity while it waits in an executor (`exec_wait`).
    fn wait_key(&self) -> usize {
        self.task.addr()
    }

    /// Waits for the task and returns its result.
    ///
    /// # Errors
    ///
    /// [`TaskError::Panicked`] if the task panicked, [`TaskError::Cancelled`]
    /// if it was cancelled or its pool terminated before it ran. On a
    /// thread already unwinding from another panic, where the panics below
    /// would abort the process, [`TaskError::Spent`] or
    /// [`TaskError::Timeout`] (the wait gives up) instead of them.
    ///
    /// # Panics
    ///
    /// If [`get_timeout`](Self::get_timeout) or awaiting the handle already
    /// returned the result, or if called from one of this task's own
    /// callbacks or from the task itself, or if the wait closes a wait
    /// cycle across threads (see [`wait`](Self::wait)). On a
    /// thread already unwinding from another panic it returns
    /// [`TaskError::Spent`] or [`TaskError::Timeout`] instead (see Errors).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// assert_eq!(pool.apply_async(|| "done").get(), Ok("done"));
    /// ```
    pub fn get(self) -> Result<R, TaskError> {
        self.get_outcome().map_err(|f| f.error)
    }

    pub(crate) fn get_outcome(mut self) -> Outcome<R> {
        if !self.wait_done() {
            return Err(Failure::new(TaskError::Timeout, None));
        }
        self.take()
    }

    /// Waits at most `timeout` for the result. On [`TaskError::Timeout`] the
    /// handle stays usable; once the result has been returned, it is spent.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), plus [`TaskError::Timeout`].
    ///
    /// # Panics
    ///
    /// If the result was already returned by an earlier call (except on a
    /// thread already unwinding, as [`get`](Self::get) explains). Called
    /// from this task's own callbacks, or the task itself, it times out at
    /// once (see [`wait`](Self::wait)). A timeout too long to ever pass
    /// (`Duration::MAX`) waits as `get` does, with no limit: it panics as
    /// `get` does if the wait closes a wait cycle across threads.
    ///
    /// ```
    /// use parpool::TaskError;
    /// use std::time::Duration;
    ///
    /// let pool = parpool::ThreadPool::new();
    /// // A task that runs until it is released (at most 10 s).
    /// let (release, released) = std::sync::mpsc::channel::<()>();
    /// let mut slow = pool.apply_async(move || {
    ///     let _ = released.recv_timeout(Duration::from_secs(10));
    /// });
    /// assert_eq!(slow.get_timeout(Duration::from_millis(1)), Err(TaskError::Timeout));
    /// release.send(()).unwrap();
    /// assert_eq!(slow.get_timeout(Duration::from_secs(30)), Ok(()));
    /// ```
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R, TaskError> {
        if !self.wait_timeout(timeout) {
            return Err(TaskError::Timeout);
        }
        self.take().map_err(|f| f.error)
    }

    /// Takes the outcome of a finished task; no lock is taken.
    fn take(&mut self) -> Outcome<R> {
        // Spent: if it was pending in an executor here, it waits no more.
        crate::exec_wait::ended(self.wait_key());
        if self.is_spent() {
            panic::refuse(format_args!("{SPENT}"));
            return Err(Failure::new(TaskError::Spent, None));
        }
        let slot = self.task.slot();
        slot.observed.store(true, Ordering::Relaxed);
        // SAFETY: `&mut self`: this handle is the only one and nothing else
        // reads the outcome meanwhile.
        let outcome = unsafe { slot.take_done() }.expect("parpool: a done slot holds an outcome");
        let taken = if outcome.is_ok() { TAKEN_OK } else { TAKEN_ERR };
        slot.taken.store(taken, Ordering::Relaxed);
        outcome
    }

    /// Whether the handle is spent: its result was already returned (by
    /// `get_timeout`, or by awaiting it), so nothing can be taken or handed
    /// to a callback any more. `taken` is read and written only through
    /// the handle, so `Relaxed` suffices.
    fn is_spent(&self) -> bool {
        self.slot().taken.load(Ordering::Relaxed) != NOT_TAKEN
    }

    /// A callback attached to a spent handle would never see the result:
    /// it is dropped (contained: its `Drop` is user code) and the call
    /// panics, as `get` does, rather than losing it without a word; `None`
    /// then. On a thread already unwinding (a `Drop` attaching it) a second
    /// panic would abort the process, so it is only dropped
    /// ([`panic::refuse`]).
    fn callback_unless_spent<F>(&self, f: F) -> Option<F> {
        if !self.is_spent() {
            return Some(f);
        }
        panic::drop_discarding(f);
        panic::refuse(format_args!("{SPENT}"));
        None
    }

    /// Blocks until the task has finished (its callbacks included).
    ///
    /// On one of the pool's own workers it runs queued work while it waits,
    /// so waiting inside a task cannot deadlock the pool.
    ///
    /// # Panics
    ///
    /// If called from one of this task's own callbacks, which run before
    /// the task is done, or from the task itself (also through tasks this
    /// thread runs inline while the task waits): it would wait forever.
    /// The timed forms (`get_timeout`, `wait_timeout`) time out at once
    /// there instead.
    ///
    /// Likewise if the task is running on another thread that waits, with
    /// no time limit, for a task this thread is running (directly, or
    /// through more threads that each wait for the next one's task): the
    /// wait that closes such a cycle panics ("a wait cycle across N
    /// threads"), and the task it is in fails, which frees the others. That
    /// is a task panic like any other: under
    /// [`PanicPolicy::Abort`](crate::PanicPolicy::Abort) the process aborts.
    /// A timed wait is no part of a cycle (it ends), unless its timeout can
    /// never pass (`Duration::MAX`). Cycles through waits for many things
    /// at once (a scope, `apply` from a thread that is not this pool's, a
    /// map, an imap, `as_completed`), through an executor's poll or through
    /// anything else (a channel, a lock) are not seen.
    ///
    /// Also `get`. On a thread already unwinding from another panic (a
    /// `Drop` waiting), where a second panic would abort the process, this
    /// wait returns with the task unfinished instead of panicking.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let handle = pool.apply_async(|| 1);
    /// handle.wait();
    /// assert!(handle.ready());
    /// ```
    pub fn wait(&self) {
        self.wait_done();
    }

    /// [`wait`](Self::wait), returning whether the task is done: `false`
    /// only where the wait gave up ([`settle`](Self::settle)).
    fn wait_done(&self) -> bool {
        self.settle(None) && park::wait(self, Deadline::NEVER).is_done()
    }

    /// Waits at most `timeout`; returns whether the task has finished.
    /// Called from this task's own callbacks, or the task itself, it
    /// returns `false` at once (see [`wait`](Self::wait)).
    ///
    /// # Panics
    ///
    /// With a timeout too long to ever pass (`Duration::MAX`), which waits
    /// as [`wait`](Self::wait) does, with no limit: if the wait closes a
    /// wait cycle across threads, as `wait` does.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = parpool::ThreadPool::new();
    /// // A task that runs until it is released (at most 10 s).
    /// let (release, released) = std::sync::mpsc::channel::<()>();
    /// let handle = pool.apply_async(move || {
    ///     let _ = released.recv_timeout(Duration::from_secs(10));
    /// });
    /// assert!(!handle.wait_timeout(Duration::from_millis(1)));
    /// release.send(()).unwrap();
    /// assert!(handle.wait_timeout(Duration::from_secs(30)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Deadline::after(timeout);
        self.settle(Some(deadline)) && park::wait(self, deadline).is_done()
    }

    /// Whether the task has finished (Python's `ready()`).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let handle = pool.apply_async(|| 1);
    /// handle.wait();
    /// assert!(handle.ready());
    /// ```
    pub fn ready(&self) -> bool {
        self.slot().is_done()
    }

    /// `None` until the task has finished, then whether it returned normally
    /// (Python's `successful()`, which raises instead of returning `None`).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let bad = pool.apply_async(|| panic!("no"));
    /// bad.wait();
    /// assert_eq!(bad.successful(), Some(false));
    /// ```
    pub fn successful(&self) -> Option<bool> {
        match self.slot().taken.load(Ordering::Relaxed) {
            NOT_TAKEN => {}
            taken => return Some(taken == TAKEN_OK),
        }
        // SAFETY: through the handle; taking needs `&mut self`, which the
        // borrow rules out while this `&self` call runs.
        let ok = unsafe { self.slot().outcome() }?.is_ok();
        if !ok {
            self.slot().observed.store(true, Ordering::Relaxed);
        }
        Some(ok)
    }

    /// Cancels the task if it has not started (like
    /// `concurrent.futures.Future.cancel`): returns `true`, and
    /// [`get`](Self::get) then returns [`TaskError::Cancelled`]. A task that
    /// already started keeps running and `false` is returned, but
    /// [`cancelled`](crate::cancelled) turns true inside it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = parpool::ThreadPool::with_workers(1);
    /// let blocker = pool.apply_async(|| std::thread::sleep(Duration::from_millis(100)));
    /// let queued = pool.apply_async(|| 1);
    /// assert!(queued.cancel());
    /// assert_eq!(queued.get(), Err(parpool::TaskError::Cancelled));
    /// blocker.get().unwrap();
    /// ```
    pub fn cancel(&self) -> bool {
        self.slot().unwanted.store(true, Ordering::Relaxed);
        self.task.cancel()
    }

    /// Attaches Python's `callback`: `f` runs with the result once the task
    /// succeeds, before any `wait` returns. It runs on the worker that
    /// finished the task, or right here if the task has already finished. A
    /// panicking callback is contained: the result and the pool are unharmed.
    ///
    /// # Panics
    ///
    /// If [`get_timeout`](Self::get_timeout) (or awaiting the handle)
    /// already returned the result: the callback could never see it. It is
    /// dropped unrun first (and only dropped, without the panic, on a
    /// thread that is already unwinding, where a second panic would abort).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = parpool::ThreadPool::new();
    /// let (tx, rx) = mpsc::channel();
    /// let handle = pool.apply_async(|| 21 * 2).on_success(move |v| tx.send(*v).unwrap());
    /// handle.wait();
    /// assert_eq!(rx.try_recv(), Ok(42));
    /// ```
    pub fn on_success(self, f: impl FnOnce(&R) + Send + 'static) -> Self {
        let Some(f) = self.callback_unless_spent(f) else {
            return self;
        };
        let mut inner = lock(&self.slot().inner);
        if self.slot().is_done() {
            // SAFETY: through the handle, which this call owns.
            match unsafe { self.slot().outcome() } {
                Some(Ok(value)) => run_callback(|| f(value)),
                // Not run: its `Drop` is user code too.
                _ => panic::drop_discarding(f),
            }
        } else {
            inner.extras().on_success.push(Box::new(f));
        }
        drop(inner);
        self
    }

    /// Attaches Python's `error_callback`: `f` runs with the error if the task
    /// panics or is cancelled, before any `wait` returns. A panicking callback
    /// is contained.
    ///
    /// # Panics
    ///
    /// As [`on_success`](Self::on_success), once the result was returned.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = parpool::ThreadPool::new();
    /// let (tx, rx) = mpsc::channel();
    /// let handle = pool
    ///     .apply_async(|| -> u8 { panic!("bad input") })
    ///     .on_error(move |e| tx.send(e.to_string()).unwrap());
    /// handle.wait();
    /// assert!(rx.try_recv().unwrap().contains("bad input"));
    /// ```
    pub fn on_error(self, f: impl FnOnce(&TaskError) + Send + 'static) -> Self {
        let Some(f) = self.callback_unless_spent(f) else {
            return self;
        };
        let mut inner = lock(&self.slot().inner);
        if self.slot().is_done() {
            // SAFETY: through the handle, which this call owns.
            match unsafe { self.slot().outcome() } {
                Some(Err(failure)) => run_callback(|| f(&failure.error)),
                _ => panic::drop_discarding(f),
            }
        } else {
            inner.extras().on_error.push(Box::new(f));
        }
        drop(inner);
        self
    }

    /// What every wait for this handle does before it waits (`wait`, its
    /// timed form, each poll; `as_completed` before it blocks):
    /// - if this thread is itself finishing the task (running it, or its
    ///   callbacks, at any depth), the wait can never end: an untimed wait
    ///   panics saying so, and a timed one returns `false` (timed out) at
    ///   once, since the result cannot come before it returns;
    /// - on the thread draining the task's terminated pool (a callback the
    ///   drain runs, waiting for a task queued behind its own), it goes on
    ///   draining here until the task is done ([`crate::registry::help_drain`]);
    ///   if it cannot go deeper with the task still queued, a wait with no
    ///   limit panics saying so: an untimed one, and a timed one whose
    ///   deadline never comes (`Duration::MAX`, as `as_completed` and
    ///   [`crate::wait()`] treat it), which waited forever.
    ///
    /// `timed` is the timed form's deadline (`None` for the untimed forms).
    /// Returns whether the wait may go on: `false` when it cannot end, for
    /// a timed wait, and for any wait on a thread already unwinding, where
    /// the panic is not raised (it would abort the process;
    /// [`panic::refuse`]) and the wait gives up as a timed one does.
    fn settle(&self, timed: Option<Deadline>) -> bool {
        if let Some(own) = own_work(self.slot()) {
            if timed.is_none() {
                refuse_wait_for_own_work(own);
            }
            return false;
        }
        let drained = crate::registry::help_drain(self.task.pool_key(), || self.slot().is_done());
        if drained == crate::registry::Drained::Stuck && timed.map_or(true, Deadline::is_never) {
            crate::registry::stuck_in_drain();
            return false;
        }
        true
    }

    /// The address of the pool this handle's task was queued on (0 for a
    /// refused task), as [`crate::registry::draining_here`] gives it.
    pub(crate) fn pool_key(&self) -> usize {
        self.task.pool_key()
    }

    /// This handle's slot, as [`own_work_marks`] lists it.
    pub(crate) fn slot_addr(&self) -> usize {
        addr_of(self.slot())
    }

    /// Panics as an untimed wait for this handle's task on this thread
    /// does (if this thread is finishing it); see [`settle`](Self::settle).
    /// Returns only on a thread already unwinding, or if it is not.
    pub(crate) fn refuse_own_work(&self) {
        if let Some(own) = own_work(self.slot()) {
            refuse_wait_for_own_work(own);
        }
    }

    /// Registers a waker called when the task finishes; `true` if it is
    /// finished already.
    ///
    /// Subtle: a waker's `clone` and `drop` are the executor's code, and
    /// may re-enter the pool (a waker can own anything: `terminate`, whose
    /// drain completes this very task, takes the slot's mutex). So neither
    /// runs with the mutex held: the clone is made before it is taken, and
    /// the waker it replaces is dropped (contained, as any waker's code is)
    /// after it is released.
    pub(crate) fn register_waker(&self, waker: &Waker) -> bool {
        {
            let inner = lock(&self.slot().inner);
            if self.slot().is_done() {
                return true;
            }
            let stored = inner.extras.as_ref().and_then(|e| e.waker.as_ref());
            if stored.is_some_and(|w| w.will_wake(waker)) {
                return false;
            }
        }
        let new = waker.clone();
        let mut inner = lock(&self.slot().inner);
        let (done, old) = if self.slot().is_done() {
            (true, Some(new))
        } else {
            (false, inner.extras().waker.replace(new))
        };
        drop(inner);
        panic::drop_discarding(old);
        done
    }
}

impl<R> Inner<R> {
    fn extras(&mut self) -> &mut Extras<R> {
        self.extras.get_or_insert_with(Box::default)
    }
}

impl<R> Slot<R> {
    /// Blocks until done or the timeout passes (once; the caller loops).
    fn block(&self, timeout: Option<Duration>) {
        let mut inner = lock(&self.inner);
        if self.is_done() {
            return;
        }
        self.waiters.fetch_add(1, Ordering::Relaxed);
        inner = crate::sync::wait(&self.cond, inner, timeout);
        let before = self.waiters.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(before > 0, "parpool: a slot's waiter count went below 0");
        drop(inner);
    }
}

impl<R> Waitable for AsyncResult<R> {
    fn done(&self) -> bool {
        self.slot().is_done()
    }

    fn block(&self, timeout: Option<Duration>) {
        self.slot().block(timeout);
    }

    fn help(&self, pool: &Registry) -> bool {
        self.task.run_inline(pool)
    }

    fn gives_up_while_unwinding(&self) -> bool {
        true
    }

    fn awaited_task(&self) -> Option<usize> {
        Some(self.slot_addr())
    }
}

impl<R> Drop for AsyncResult<R> {
    fn drop(&mut self) {
        let slot = self.task.slot();
        if slot.taken.load(Ordering::Relaxed) != NOT_TAKEN {
            // The outcome was taken (`take` left any executor wait): the
            // task is done, nothing to do.
            return;
        }
        // A pending handle dropped after it waited in an executor (a peek,
        // a lost `select`): this thread no longer awaits it.
        crate::exec_wait::ended(self.wait_key());
        let inner = lock(&slot.inner);
        slot.handle_alive.store(false, Ordering::Relaxed);
        // SAFETY: `&mut self` in `drop`: nothing else reads the outcome.
        // Not done yet: the claimer, under this mutex later, sees the
        // handle gone and keeps the outcome to itself.
        let mut outcome = unsafe { slot.take_done() };
        drop(inner);
        if let Some(Err(failure)) = &mut outcome {
            slot.hand_unobserved_panic_to_scope(failure);
        }
        // Dropped here, while the handle's borrow (if scoped) is alive.
        // While this thread unwinds (its code panicked holding the handle),
        // a panicking `Drop` of the result or payload would abort the
        // process: contained then, as imap's input and function are.
        if std::thread::panicking() {
            panic::drop_discarding(outcome);
        } else {
            drop(outcome);
        }
    }
}

impl<R> Future for AsyncResult<R> {
    type Output = Result<R, TaskError>;

    /// Resolves to what [`get`](AsyncResult::get) returns, without blocking
    /// the executor's thread. Awaited on one of the pool's own workers
    /// (`block_on` inside a job), the worker counts as blocked while the
    /// handle is pending there, and another thread runs the pool's queue
    /// meanwhile, so even a one-worker pool completes the task. If no
    /// thread can (no spare can start, and the worker's waits are nested
    /// too deep for it to run the queue itself), the poll panics saying it
    /// cannot make progress; on a thread already unwinding from another
    /// panic it resolves to [`TaskError::Timeout`] instead, as `get` does
    /// there (the handle is not spent: the task still runs).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.settle(None) {
            // Only on a thread already unwinding: a wait that could never
            // end gives up, as `get` does there.
            return Poll::Ready(Err(TaskError::Timeout));
        }
        let key = self.wait_key();
        loop {
            crate::exec_wait::resumed(key);
            if self.register_waker(cx.waker()) {
                return Poll::Ready(self.take().map_err(|f| f.error));
            }
            // On a worker, an executor may block this thread now: a
            // stand-in runs its pool's queue meanwhile (`exec_wait.rs`).
            // If none can come, this thread runs the task, or the queue,
            // itself, and looks again.
            if !crate::exec_wait::pending(key, cx.waker(), false) {
                return Poll::Pending;
            }
            match crate::exec_wait::help(key, cx.waker(), |pool| self.task.run_inline(pool)) {
                crate::exec_wait::Helped::PollAgain => {}
                crate::exec_wait::Helped::Pending => return Poll::Pending,
                crate::exec_wait::Helped::GaveUp => {
                    // Only on a thread already unwinding, at a dead end: as
                    // `get` there. The task stays queued; the handle is not
                    // spent, and no longer awaited here.
                    crate::exec_wait::resumed(key);
                    return Poll::Ready(Err(TaskError::Timeout));
                }
            }
        }
    }
}

impl<R> Unpin for AsyncResult<R> {}

/// The handle of a task a pool refused because it no longer runs: already
/// done, with [`TaskError::NotRunning`]. Nothing was queued.
#[repr(C)]
struct Refused<R>(Refs, Slot<R>);

// SAFETY: `#[repr(C)]`, its `Refs` first.
unsafe impl<R> Counted for Refused<R> {}

impl<R: Send> HasSlot<R> for Refused<R> {
    fn slot(&self) -> &Slot<R> {
        &self.1
    }

    fn run_inline(&self, _pool: &Registry) -> bool {
        false
    }

    fn cancel(&self) -> bool {
        false
    }

    fn pool_key(&self) -> usize {
        0
    }
}

impl<R: Send> AsyncResult<R> {
    /// A handle that reports [`TaskError::NotRunning`]: what a task
    /// submission to a pool that no longer runs returns (see `submit.rs`).
    pub(crate) fn not_running() -> Self {
        let slot = Slot::new_inline(None, true, PanicSource::Task);
        let claimed = slot.claim();
        debug_assert!(claimed, "a new slot is unclaimed");
        // No callbacks yet and the handle is alive: nothing is handed back.
        drop(slot.complete(Err(Failure::new(TaskError::NotRunning, None))));
        let task = TaskPtr::new(Refused(Refs::new(), slot));
        // SAFETY: the cast only unsizes the pointer.
        let task = unsafe { task.coerce(|p| p as *mut (dyn HasSlot<R> + '_)) };
        // SAFETY: only the trait object's lifetime bound changes (same
        // layout and vtable). The slot never holds an `R`: its outcome is
        // the error stored above (taken out by `get`, or dropped with the
        // slot), and callbacks are `'static` boxes that only borrow an `R`
        // while they run, which never happens for a success here. So
        // dropping it after `R`'s borrows end touches nothing borrowed.
        let task = unsafe {
            std::mem::transmute::<TaskPtr<dyn HasSlot<R> + '_>, TaskPtr<dyn HasSlot<R> + 'static>>(
                task,
            )
        };
        AsyncResult::from_slot(task)
    }
}

/// The task's size is W4's memory: a million pending `apply_async` handles
/// are a million tasks (`docs/design.md` §12). On Linux (futex-based
/// `Mutex` and `Condvar`, 4 bytes each), a task of a closure capturing one
/// word and returning one is 64 bytes with its reference count (which also
/// holds the pool's address) and its outcome (whose tag is a flag byte): a
/// single cache line, one 64-byte slot of task memory (`slab.rs`). A
/// closure capturing more takes a 128-byte slot.
#[cfg(all(test, target_os = "linux", target_pointer_width = "64"))]
mod size {
    use super::{Slot, Task};

    fn task_size<F: FnOnce() -> u64>(_: &F) -> usize {
        std::mem::size_of::<Task<F, u64>>()
    }

    #[test]
    fn a_one_word_task_is_one_cache_line() {
        let word = std::hint::black_box(5u64);
        let f = move || word * 3;
        assert_eq!(std::mem::size_of::<Slot<u64>>(), 48);
        assert_eq!(task_size(&f), 64);
    }
}
