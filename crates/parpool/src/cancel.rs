//! `cancelled()`: how a running task learns that its result is no longer wanted.
//!
//! While a job runs, the thread keeps a stack of tokens (nested work pushes
//! more). [`cancelled`] asks the innermost one. A token is the shared state of
//! the call the task belongs to: an `AsyncResult`'s slot (cancelled by
//! `cancel`), an `imap`'s state (cancelled when the iterator is dropped), a
//! `try_map`'s state (cancelled after a failure). Tokens of work that the
//! caller waits for itself (blocking `map`) do not follow `terminate`, since
//! their results are still wanted; the others do.
//!
//! **The stack is intrusive.** Each token is a [`Node`] in the frame of the
//! [`with_token`] call that runs the work, linked to the one below it; the
//! thread keeps only a pointer to the top. Pushing and popping are two
//! stores to a thread-local with no destructor (so it is never gone, not
//! even in other thread-local destructors), with no allocation and no
//! borrow flag: every `apply_async` task pays it (W4, `docs/design.md`
//! §12). **Invariant:** the top and every `prev` below it point to nodes
//! whose `with_token` calls are still running on this thread, innermost
//! first. A node is pushed on entry and popped by a guard on every exit,
//! unwinding included, and frames end in the reverse order they began.

use std::cell::Cell;
use std::ptr;

/// Shared state that can tell whether its task's result is still wanted.
pub(crate) trait CancelFlag: Send + Sync {
    fn is_cancelled(&self) -> bool;
}

/// A borrowed flag with its lifetime erased. Tokens hold no reference count:
/// pushing one costs no atomic operation on state other threads touch.
#[derive(Clone, Copy)]
pub(crate) struct FlagRef(*const (dyn CancelFlag + 'static));

// SAFETY: the pointee is `Sync` (a `CancelFlag` bound); the pointer is only
// dereferenced while it is valid (see `with_token` and `FlagRef::get`).
unsafe impl Send for FlagRef {}
// SAFETY: as above.
unsafe impl Sync for FlagRef {}

impl FlagRef {
    /// # Safety
    /// The flag this was made from must still be alive.
    pub(crate) unsafe fn get(&self) -> &dyn CancelFlag {
        // SAFETY: the caller guarantees the pointee is alive.
        unsafe { &*self.0 }
    }

    fn addr(self) -> usize {
        self.0 as *const () as usize
    }
}

/// One token of the stack, in the frame of the [`with_token`] call that
/// pushed it.
struct Node {
    flag: FlagRef,
    follows_terminate: bool,
    /// The token below this one; null at the bottom.
    prev: *const Node,
}

thread_local! {
    /// The innermost token; null outside any task.
    static TOP: Cell<*const Node> = const { Cell::new(ptr::null()) };
}

/// Runs `body` as work of `flag`: [`cancelled`] inside it asks `flag`, and
/// also the pool's `terminate` if `follows_terminate`.
pub(crate) fn with_token<T>(
    flag: &(dyn CancelFlag + '_),
    follows_terminate: bool,
    body: impl FnOnce() -> T,
) -> T {
    /// Pops the node on every exit from `with_token`, unwinding included.
    struct Pop(*const Node);
    impl Drop for Pop {
        fn drop(&mut self) {
            TOP.with(|top| top.set(self.0));
        }
    }
    // SAFETY: only the trait object's lifetime bound changes. The node that
    // holds it is reachable from `TOP` only until `Pop` below restores the
    // previous top, before this call returns, and `flag` is borrowed for
    // the whole call.
    let flag = FlagRef(unsafe {
        std::mem::transmute::<*const (dyn CancelFlag + '_), *const (dyn CancelFlag + 'static)>(flag)
    });
    let prev = TOP.with(Cell::get);
    let node = Node {
        flag,
        follows_terminate,
        prev,
    };
    TOP.with(|top| top.set(&node));
    let _pop = Pop(prev);
    body()
}

/// Calls `f` on each token of this thread's stack, innermost first, until
/// it returns `Some`.
fn find<T>(mut f: impl FnMut(&Node) -> Option<T>) -> Option<T> {
    let mut node = TOP.with(Cell::get);
    while !node.is_null() {
        // SAFETY: the module's invariant: every node reachable from `TOP`
        // is in the frame of a `with_token` call still running here.
        let n = unsafe { &*node };
        if let Some(found) = f(n) {
            return Some(found);
        }
        node = n.prev;
    }
    None
}

/// The innermost token of the current thread: its flag and whether it
/// follows `terminate`. The flag is valid while that token is on the stack.
pub(crate) fn current() -> Option<(FlagRef, bool)> {
    find(|n| Some((n.flag, n.follows_terminate)))
}

/// The addresses of the flags on this thread's token stack: the tasks it
/// is running, at every depth (a waiter inlining tasks nests them). None
/// of them can finish while this thread waits for it.
pub(crate) fn running_here() -> Vec<usize> {
    let mut addrs = Vec::new();
    find(|n| {
        addrs.push(n.flag.addr());
        None::<()>
    });
    addrs
}

/// Whether `addr` is among [`running_here`].
pub(crate) fn runs_here(addr: usize) -> bool {
    find(|n| (n.flag.addr() == addr).then_some(())).is_some()
}

/// Returns `true` inside a task whose result is no longer wanted.
///
/// That is the case after [`ThreadPool::terminate`](crate::ThreadPool::terminate),
/// after [`AsyncResult::cancel`](crate::AsyncResult::cancel), after the task's
/// `imap` iterator was dropped, and after a `try_map` saw an earlier failure.
/// A long task can poll it and return early. Outside a task it returns `false`.
///
/// # Examples
///
/// ```
/// use parpool::ThreadPool;
/// use std::time::Duration;
///
/// let pool = ThreadPool::with_workers(1);
/// let (started, is_started) = std::sync::mpsc::channel();
/// let handle = pool.apply_async(move || {
///     started.send(()).unwrap();
///     while !parpool::cancelled() {
///         std::thread::sleep(Duration::from_millis(1));
///     }
///     "stopped early"
/// });
/// is_started.recv().unwrap();
/// pool.terminate();
/// // A running task finishes; this one noticed the terminate and returned.
/// assert_eq!(handle.get(), Ok("stopped early"));
/// pool.join();
/// ```
pub fn cancelled() -> bool {
    match current() {
        None => false,
        Some((flag, follows_terminate)) => {
            // SAFETY: a token is on the stack only while its flag lives.
            unsafe { flag.get() }.is_cancelled()
                || (follows_terminate && crate::worker::current_pool_terminated())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flag(AtomicBool);

    impl CancelFlag for Flag {
        fn is_cancelled(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn addr(flag: &Flag) -> usize {
        flag as *const Flag as *const () as usize
    }

    /// Nested tokens stack innermost first, each exit (by return or by
    /// unwinding) restores the one below, and `cancelled` asks only the
    /// innermost. Miri runs this (`.ci/miri`, unit tests): the stack's
    /// nodes live in frames that end while the thread goes on.
    #[test]
    fn tokens_nest_and_every_exit_restores_the_one_below() {
        let outer = Flag(AtomicBool::new(true));
        let inner = Flag(AtomicBool::new(false));
        assert!(current().is_none());
        assert!(!cancelled());
        with_token(&outer, false, || {
            assert!(cancelled());
            assert_eq!(running_here(), vec![addr(&outer)]);
            let out = with_token(&inner, false, || {
                assert!(!cancelled(), "only the innermost token is asked");
                assert_eq!(running_here(), vec![addr(&inner), addr(&outer)]);
                assert!(runs_here(addr(&outer)) && runs_here(addr(&inner)));
                7
            });
            assert_eq!(out, 7);
            assert_eq!(running_here(), vec![addr(&outer)]);
            assert!(!runs_here(addr(&inner)));
            // An unwinding body pops its token too.
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                with_token(&inner, false, || {
                    with_token(&inner, false, || panic!("unwinds through two tokens"))
                })
            }));
            assert!(caught.is_err());
            assert_eq!(running_here(), vec![addr(&outer)]);
            assert!(cancelled());
        });
        assert!(current().is_none());
        assert!(running_here().is_empty());
        assert!(!runs_here(addr(&outer)));
    }

    /// The exits a hostile review tried (337b71c): a `Drop` asking during
    /// the unwinding sees the token it unwinds through, a payload caught
    /// inside one token and resumed in the one below, and a payload whose
    /// own `Drop` panics, dropped after the tokens it unwound through:
    /// each leaves exactly the tokens still running. Under Miri too.
    #[test]
    fn unwinding_payloads_leave_exactly_the_tokens_still_running() {
        use std::panic::{catch_unwind, panic_any, resume_unwind, AssertUnwindSafe};
        struct Asks(bool);
        impl Drop for Asks {
            fn drop(&mut self) {
                assert_eq!(cancelled(), self.0);
            }
        }
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                assert!(current().is_none());
                panic!("the payload's Drop panics");
            }
        }
        let outer = Flag(AtomicBool::new(false));
        let inner = Flag(AtomicBool::new(true));
        let caught = catch_unwind(AssertUnwindSafe(|| {
            with_token(&outer, false, || {
                let _asks = Asks(false);
                let p = catch_unwind(AssertUnwindSafe(|| {
                    with_token(&inner, false, || {
                        let _asks = Asks(true);
                        panic_any(Bomb)
                    })
                }))
                .unwrap_err();
                assert_eq!(running_here(), vec![addr(&outer)]);
                resume_unwind(p)
            })
        }));
        assert!(current().is_none());
        let bomb = caught.unwrap_err();
        assert!(bomb.is::<Bomb>());
        assert!(catch_unwind(AssertUnwindSafe(|| drop(bomb))).is_err());
        assert!(current().is_none() && !cancelled());
    }

    /// A thread-local destructor that runs after every other one of its
    /// thread can still run work with a token: the top pointer has no
    /// destructor. (The `RefCell<Vec>` stack before it was gone there, and
    /// work ran as outside any task.) Under Miri too.
    #[test]
    fn tokens_work_in_a_thread_local_destructor() {
        use std::sync::mpsc;
        struct Late(mpsc::Sender<(bool, usize)>);
        impl Drop for Late {
            fn drop(&mut self) {
                let flag = Flag(AtomicBool::new(true));
                let seen = with_token(&flag, false, || (cancelled(), running_here().len()));
                assert!(current().is_none());
                self.0.send(seen).unwrap();
            }
        }
        thread_local!(static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            LATE.with(|l| *l.borrow_mut() = Some(Late(tx)));
            let flag = Flag(AtomicBool::new(false));
            with_token(&flag, false, || assert!(!cancelled()));
        })
        .join()
        .unwrap();
        assert_eq!(rx.recv().unwrap(), (true, 1));
    }
}
