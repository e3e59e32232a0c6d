//! `cancelled()`: how a running task learns that its result is no longer wanted.
//!
//! While a job runs, the thread keeps a stack of tokens (nested work pushes
//! more). [`cancelled`] asks the innermost one. A token is the shared state of
//! the call the task belongs to: an `AsyncResult`'s slot (cancelled by
//! `cancel`), an `imap`'s state (cancelled when the iterator is dropped), a
//! `try_map`'s state (cancelled after a failure). Tokens of work that the
//! caller waits for itself (blocking `map`) do not follow `terminate`, since
//! their results are still wanted; the others do.

use std::cell::RefCell;

/// Shared state that can tell whether its task's result is still wanted.
pub(crate) trait CancelFlag: Send + Sync {
    fn is_cancelled(&self) -> bool;
}

/// A borrowed flag with its lifetime erased. Tokens hold no reference count:
/// pushing one costs no atomic operation on state other threads touch.
#[derive(Clone, Copy)]
pub(crate) struct FlagRef(*const (dyn CancelFlag + 'static));

// SAFETY: the pointee is `Sync` (a `CancelFlag` bound); the pointer is only
// dereferenced while it is valid (see `enter` and `FlagRef::get`).
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
}

#[derive(Clone, Copy)]
struct Token {
    flag: FlagRef,
    follows_terminate: bool,
}

thread_local! {
    static TOKENS: RefCell<Vec<Token>> = const { RefCell::new(Vec::new()) };
}

/// Marks the current thread as running a task of a flag until dropped.
/// Holds whether the token was pushed: not in a thread-local destructor
/// that runs after the stack's own (a task inlined by a `get` there runs
/// as outside any task).
pub(crate) struct TokenGuard<'a>(bool, std::marker::PhantomData<&'a ()>);

/// Pushes `flag` on the thread's token stack until the guard drops.
///
/// # Safety
///
/// The guard must be dropped (not leaked) before `flag` dies: the token
/// stack is thread-local and `'static`, so the flag's lifetime is erased
/// there.
pub(crate) unsafe fn enter<'a>(
    flag: &'a (dyn CancelFlag + 'a),
    follows_terminate: bool,
) -> TokenGuard<'a> {
    // SAFETY: only the trait object's lifetime bound changes; the caller
    // pops the token (drops the guard) before the flag dies.
    let flag = FlagRef(unsafe {
        std::mem::transmute::<*const (dyn CancelFlag + 'a), *const (dyn CancelFlag + 'static)>(flag)
    });
    let pushed = TOKENS
        .try_with(|t| {
            t.borrow_mut().push(Token {
                flag,
                follows_terminate,
            })
        })
        .is_ok();
    TokenGuard(pushed, std::marker::PhantomData)
}

/// The innermost token of the current thread: its flag and whether it
/// follows `terminate`. The flag is valid while that token is on the stack.
pub(crate) fn current() -> Option<(FlagRef, bool)> {
    TOKENS
        .try_with(|t| {
            t.borrow()
                .last()
                .map(|tok| (tok.flag, tok.follows_terminate))
        })
        .ok()
        .flatten()
}

/// The addresses of the flags on this thread's token stack: the tasks it
/// is running, at every depth (a waiter inlining tasks nests them). None
/// of them can finish while this thread waits for it.
pub(crate) fn running_here() -> Vec<usize> {
    TOKENS
        .try_with(|t| {
            t.borrow()
                .iter()
                .map(|tok| tok.flag.0 as *const () as usize)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `addr` is among [`running_here`].
pub(crate) fn runs_here(addr: usize) -> bool {
    TOKENS
        .try_with(|t| {
            t.borrow()
                .iter()
                .any(|tok| tok.flag.0 as *const () as usize == addr)
        })
        .unwrap_or(false)
}

impl Drop for TokenGuard<'_> {
    fn drop(&mut self) {
        if self.0 {
            // Pushed, so the stack is not yet destroyed: it is destroyed
            // only after every guard of this thread has dropped.
            TOKENS.with(|t| t.borrow_mut().pop());
        }
    }
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
    TOKENS
        .try_with(|t| {
            let tokens = t.borrow();
            match tokens.last() {
                None => false,
                Some(token) => {
                    // SAFETY: a token is on the stack only while its flag lives.
                    unsafe { token.flag.get() }.is_cancelled()
                        || (token.follows_terminate && crate::worker::current_pool_terminated())
                }
            }
        })
        .unwrap_or(false)
}
