//! `ThreadPool`: the public face of the pool, with Python's `Pool` methods.
//!
//! A `ThreadPool` owns its registry (workers, queue, lifecycle) through an
//! `Arc`; every method here is a thin entry into one of the engines:
//! [`crate::map`] for the blocking map family, [`crate::imap`] for lazy
//! streams, [`crate::async_result`] for single tasks, [`crate::scope`] for
//! borrowing work. Dropping the pool closes it and joins its workers, so work
//! already queued finishes (see [`ThreadPool`]'s docs for why).

use crate::async_result::{AsyncResult, PanicSource};
use crate::builder::Builder;
use crate::imap::{self, Imap, ImapUnordered};
use crate::inputs::Inputs;
use crate::map;
use crate::registry::Registry;
use crate::scope::{self, Scope};
use crate::star::{StarFn, Unpack};
use crate::stats::Stats;
use crate::submit::{self, Queue};
use crate::sync::lock;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A pool of worker threads with Python's `multiprocessing.pool.ThreadPool` API.
///
/// | Python | parpool |
/// |---|---|
/// | `ThreadPool(processes)` | [`ThreadPool::with_workers`], [`ThreadPool::builder`] |
/// | `apply(f)` / `apply_async(f)` | [`apply`](Self::apply) / [`apply_async`](Self::apply_async) |
/// | `map(f, xs, chunksize)` | [`map`](Self::map), [`chunked(n)`](Self::chunked)`.map` |
/// | `imap` / `imap_unordered` | [`imap`](Self::imap) / [`imap_unordered`](Self::imap_unordered) |
/// | `starmap` | [`starmap`](Self::starmap) |
/// | `close` / `terminate` / `join` | [`close`](Self::close) / [`terminate`](Self::terminate) / [`join`](Self::join) |
/// | (rayon's `spawn`) | [`spawn`](Self::spawn) |
///
/// No method panics because the pool was closed or terminated, by this
/// thread or another: see each method for what it does instead.
///
/// # Dropping a pool
///
/// Dropping a `ThreadPool` is `close()` followed by `join()`: work already
/// queued finishes, then the workers exit. (Python's pool terminates instead
/// when it is garbage-collected, which silently discards queued work; a
/// destructor that loses work is the wrong default.) Call
/// [`terminate`](Self::terminate) first to discard queued work. A pool
/// dropped on one of its own worker threads is closed but not joined, since
/// a thread cannot wait for itself; its workers exit once the queue is empty.
///
/// # Borrowing rules
///
/// Blocking calls (`apply`, `map`, `starmap`, `try_map`) may borrow from the
/// caller's stack, since they return only after their tasks have finished.
/// Work that outlives the call (`apply_async`, `map_async`, `imap`, …) must
/// be `'static`; use [`scope`](Self::scope) to borrow there. These do not
/// compile:
///
/// ```compile_fail
/// let pool = parpool::ThreadPool::new();
/// let local = vec![1, 2, 3];
/// let handle = pool.apply_async(|| local.len()); // borrows `local`
/// drop(local);
/// handle.get().unwrap();
/// ```
///
/// ```compile_fail
/// let pool = parpool::ThreadPool::new();
/// let local = vec![1, 2, 3];
/// let it = pool.imap(|x: &i32| x + 1, &local); // borrows `local`
/// drop(local);
/// it.count();
/// ```
///
/// ```compile_fail
/// // Tasks must be Send: an Rc cannot cross to a worker.
/// let pool = parpool::ThreadPool::new();
/// let shared = std::rc::Rc::new(5);
/// pool.apply(|| *shared + 1);
/// ```
///
/// # Examples
///
/// ```
/// use parpool::ThreadPool;
///
/// let pool = ThreadPool::new();
/// let numbers: Vec<u64> = (1..=5).collect();
/// // map borrows; imap takes ownership (or use pool.scope to borrow).
/// assert_eq!(pool.map(|n| n * 2, &numbers), [2, 4, 6, 8, 10]);
/// for result in pool.imap(|n| n * 2, numbers) {
///     println!("{}", result);
/// }
/// ```
pub struct ThreadPool {
    registry: Arc<Registry>,
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("workers", &self.registry.workers())
            .field("running", &self.registry.is_running())
            .finish()
    }
}

impl Default for ThreadPool {
    /// Same as [`ThreadPool::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// Panics with `e`'s message: for constructors that cannot return errors.
fn built(result: Result<ThreadPool, crate::BuildError>) -> ThreadPool {
    result.unwrap_or_else(|e| panic!("parpool: could not build the pool: {e}"))
}

impl ThreadPool {
    /// A pool with one worker per available CPU
    /// ([`std::thread::available_parallelism`]).
    ///
    /// # Panics
    ///
    /// If a worker thread cannot be spawned; use [`builder`](Self::builder)
    /// to get that as an error.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// assert!(pool.workers() >= 1);
    /// ```
    pub fn new() -> Self {
        built(Builder::new().build())
    }

    /// A pool with `n` workers.
    ///
    /// # Panics
    ///
    /// If `n` is 0 ("a thread pool needs at least one worker"), or a thread
    /// cannot be spawned. [`builder`](Self::builder) returns these as errors.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::with_workers(3);
    /// assert_eq!(pool.workers(), 3);
    /// ```
    ///
    /// ```should_panic
    /// let pool = parpool::ThreadPool::with_workers(0); // panics
    /// ```
    pub fn with_workers(n: usize) -> Self {
        built(Builder::new().workers(n).build())
    }

    /// A [`Builder`] for every other setting.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::builder().workers(2).thread_name("app").build().unwrap();
    /// assert_eq!(pool.workers(), 2);
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn from_registry(registry: Arc<Registry>) -> Self {
        ThreadPool { registry }
    }

    /// The number of worker threads.
    ///
    /// ```
    /// assert_eq!(parpool::ThreadPool::with_workers(4).workers(), 4);
    /// ```
    pub fn workers(&self) -> usize {
        self.registry.workers()
    }

    /// A lock-free snapshot of the pool's counters, for progress reporting.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let before = pool.stats().completed;
    /// pool.map(|x| x + 1, 0..100u32);
    /// assert_eq!(pool.stats().completed - before, 100);
    /// ```
    pub fn stats(&self) -> Stats {
        self.registry.counters().snapshot(self.registry.workers())
    }

    /// Whether the pool still accepts work (neither closed nor terminated).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// assert!(pool.is_running());
    /// pool.close();
    /// assert!(!pool.is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        self.registry.is_running()
    }

    /// Runs `f` on a worker and returns its result. `f` may borrow from the
    /// caller's stack. A panic in `f` is re-raised here.
    ///
    /// Called from one of the pool's own workers, it runs `f` right there,
    /// so nested use cannot deadlock. On a pool that no longer runs (closed
    /// or terminated), `f` runs on the calling thread instead, and so it
    /// does if a `terminate` discards the queued task before a worker
    /// started it: `apply` always returns `f`'s result (Python raises
    /// `ValueError: Pool not running`). Run there, `f` counts in
    /// [`stats`](Self::stats) as a worker's run would, as a refused `map`'s
    /// items do.
    ///
    /// # Panics
    ///
    /// If `f` panics: the panic is re-raised here, once it has been counted
    /// and has met the pool's [`PanicPolicy`](crate::PanicPolicy), whether
    /// `f` ran on a worker or on the calling thread. Called from one of the
    /// pool's own workers, `f` is part of the calling task: its panic
    /// unwinds into that task uncounted, and counts (and meets the policy)
    /// as that task's panic only if the task lets it unwind.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let data = vec![1, 2, 3];
    /// assert_eq!(pool.apply(|| data.iter().sum::<i32>()), 6);
    /// ```
    pub fn apply<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        if self.registry.is_current_worker() {
            return f();
        }
        // `f` stays here until the task that runs it claims it: a task the
        // pool refuses, or that `terminate` discards unrun, leaves it
        // behind, and it runs on this thread instead.
        let waiting = Mutex::new(Some(f));
        let run_here = || {
            let f = lock(&waiting).take();
            f.expect("parpool: apply's closure is taken once")()
        };
        // The scope returns once the job has been dropped in full, so the
        // handle is ready: waiting on the scope alone costs one wake-up.
        let queued = scope::run(&self.registry, |s| s.try_apply_async(&run_here).ok());
        let Some(handle) = queued else {
            return submit::run_refused_blocking(&self.registry, run_here);
        };
        match handle.get_outcome() {
            Ok(value) => value,
            Err(failure) => match failure.payload {
                Some(payload) => payload.resume(),
                // Cancelled before a worker took `f` (a `terminate`).
                None if lock(&waiting).is_some() => {
                    submit::run_refused_blocking(&self.registry, run_here)
                }
                None => panic!("parpool: apply's task did not complete: {}", failure.error),
            },
        }
    }

    /// Queues `f` and returns a handle to its result at once.
    ///
    /// `f` must be `'static`: it outlives this call. Can't borrow here? Use
    /// [`scope`](Self::scope) (its [`Scope::apply_async`] may borrow), or
    /// move the data in (`move ||` with owned values or an `Arc`).
    ///
    /// On a pool that no longer runs (terminated, or closed and called
    /// from outside its workers, see [`close`](Self::close)), nothing is
    /// queued and the handle reports
    /// [`TaskError::NotRunning`](crate::TaskError::NotRunning); this never
    /// panics, so a thread racing another thread's `close` or `terminate`
    /// is safe (Python raises `ValueError: Pool not running`). A task that
    /// was accepted is never lost: it runs, or reports
    /// [`TaskError::Cancelled`](crate::TaskError::Cancelled) if `terminate`
    /// discards it.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let handle = pool.apply_async(|| 2 + 2);
    /// assert_eq!(handle.get(), Ok(4));
    /// ```
    ///
    /// Borrowing from the caller does not compile; a scope allows it:
    ///
    /// ```compile_fail,E0373
    /// let pool = parpool::ThreadPool::new();
    /// let data = vec![1, 2, 3];
    /// // error[E0373]: closure may outlive the current function, but it
    /// // borrows `data`, which is owned by the current function
    /// let handle = pool.apply_async(|| data.len());
    /// ```
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let data = vec![1, 2, 3];
    /// let len = pool.scope(|s| s.apply_async(|| data.len()).get());
    /// assert_eq!(len, Ok(3));
    /// ```
    pub fn apply_async<F, R>(&self, f: F) -> AsyncResult<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.submit_task(f, PanicSource::Task)
    }

    /// Queues a `'static` task, or returns a `NotRunning` handle.
    fn submit_task<F, R>(&self, f: F, source: PanicSource) -> AsyncResult<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        submit::pool_task(&self.registry, f, source)
            .unwrap_or_else(|f| submit::refused(&self.registry, f))
    }

    /// Runs `f` on a worker, fire and forget, like rayon's `spawn`: no
    /// handle, no result. Use [`apply_async`](Self::apply_async) to get
    /// one.
    ///
    /// A panic in `f` is caught on the worker and goes to the pool's
    /// [`PanicPolicy`](crate::PanicPolicy): counted in
    /// [`stats`](Self::stats) and printed by the panic hook under
    /// `Propagate` (there is no handle to propagate it to), the pool
    /// terminated under `Terminate`, the process aborted under `Abort`.
    ///
    /// On a pool that no longer runs (closed or terminated), `f` runs on
    /// the calling thread before `spawn` returns, its panic handled the
    /// same way: `spawn` never panics and never drops work silently. (Python
    /// raises `ValueError: Pool not running`; check
    /// [`is_running`](Self::is_running) first if the caller must not run
    /// the work itself.) Jobs that wait for one another (a channel between
    /// two spawned jobs) then run one after the other on the caller and can
    /// block it, as they can on a pool with too few workers. A `terminate`
    /// discards spawned jobs that have not started, like every queued task.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let pool = parpool::ThreadPool::new();
    /// let done = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..10 {
    ///     let done = Arc::clone(&done);
    ///     pool.spawn(move || {
    ///         done.fetch_add(1, Ordering::Relaxed);
    ///     });
    /// }
    /// pool.close();
    /// pool.join(); // queued work finishes
    /// assert_eq!(done.load(Ordering::Relaxed), 10);
    /// ```
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        submit::pool_spawn(&self.registry, f);
    }

    /// Applies `f` to every input in parallel and returns the results in
    /// input order. `f` and the inputs may borrow from the caller's stack.
    /// Chunking is automatic; see [`chunked`](Self::chunked) to set it.
    ///
    /// The calling thread works too, and the call returns (or unwinds) only
    /// after all its work has stopped. On a pool that no longer runs, the
    /// calling thread does all the work (Python raises `ValueError`); a `terminate` while the map runs
    /// stops the workers' part, and the calling thread finishes it. So `map`
    /// always returns every result.
    ///
    /// Inputs: slices, `Vec`s, arrays and integer ranges are split in place;
    /// `std` collections and common iterators are collected first (see
    /// [`Inputs`]). Any other iterator, such as an `impl Iterator` returned
    /// by a function, goes through [`parpool::iter`](crate::iter):
    /// `pool.map(f, parpool::iter(it))`.
    ///
    /// # Panics
    ///
    /// If `f` panics, or the `Drop` of an input the map drops unused: the
    /// panic is re-raised here, after the rest of the call's work has
    /// stopped. If the output vector cannot be allocated, or a range input
    /// has more items than `usize` counts (`0..=u64::MAX` on a 64-bit
    /// target), before any item runs: such inputs need
    /// [`imap`](Self::imap).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let offset = 100;
    /// let data = vec![1, 2, 3];
    /// assert_eq!(pool.map(|x| x + offset, &data), [101, 102, 103]);
    ///
    /// fn odd(n: u32) -> impl Iterator<Item = u32> {
    ///     (0..n).filter(|x| x % 2 == 1)
    /// }
    /// assert_eq!(pool.map(|x| x * 10, parpool::iter(odd(6))), [10, 30, 50]);
    /// ```
    pub fn map<I, F, R>(&self, f: F, inputs: I) -> Vec<R>
    where
        I: Inputs,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        self.chunked_opt(None).map(f, inputs)
    }

    /// Like [`map`](Self::map), but `f` returns a `Result`: stops at the
    /// first failure and returns the error of the earliest failing input.
    ///
    /// After a failure at input `k`, no input after `k` is started. Inputs
    /// before `k` still run, since one of them may fail too: the error
    /// returned is the one at the smallest position, whatever the timing.
    /// On a pool that no longer runs, the calling thread does the work, as
    /// in [`map`](Self::map).
    ///
    /// Inputs: slices, `Vec`s, arrays and integer ranges are split in place;
    /// `std` collections and common iterators are collected first (see
    /// [`Inputs`]). Any other iterator, such as an `impl Iterator` returned
    /// by a function, goes through [`parpool::iter`](crate::iter):
    /// `pool.map(f, parpool::iter(it))`.
    ///
    /// # Errors
    ///
    /// The first (by input position) `Err` that `f` returned.
    ///
    /// # Panics
    ///
    /// As [`map`](Self::map).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let parsed = pool.try_map(|s: &&str| s.parse::<u8>(), &["1", "x", "300"]);
    /// assert!(parsed.is_err());
    /// assert_eq!(pool.try_map(|s: &&str| s.parse::<u8>(), &["1", "2"]), Ok(vec![1, 2]));
    /// let words = "4 5 6".split(' ').filter(|w| !w.is_empty());
    /// assert_eq!(pool.try_map(|s: &str| s.parse::<u8>(), parpool::iter(words)), Ok(vec![4, 5, 6]));
    /// ```
    pub fn try_map<I, F, T, E>(&self, f: F, inputs: I) -> Result<Vec<T>, E>
    where
        I: Inputs,
        F: Fn(I::Item) -> Result<T, E> + Sync,
        T: Send,
        E: Send,
    {
        self.chunked_opt(None).try_map(f, inputs)
    }

    /// Calls `f(a, b, ..)` for every tuple input and returns the results in
    /// order (Python's `starmap`). Tuples of 1 to 8 elements; a borrowed
    /// tuple `&(A, B)` calls `f(&A, &B)`. Annotate the closure's argument
    /// types. On a pool that no longer runs, the calling thread does the
    /// work, as in [`map`](Self::map).
    ///
    /// Inputs: slices, `Vec`s, arrays and integer ranges are split in place;
    /// `std` collections and common iterators are collected first (see
    /// [`Inputs`]). Any other iterator, such as an `impl Iterator` returned
    /// by a function, goes through [`parpool::iter`](crate::iter):
    /// `pool.map(f, parpool::iter(it))`.
    ///
    /// # Panics
    ///
    /// As [`map`](Self::map).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let products = pool.starmap(|a: u32, b: u32| a * b, vec![(2, 3), (4, 5)]);
    /// assert_eq!(products, [6, 20]);
    /// let pairs = [(1, 'a'), (2, 'b')];
    /// let labels = pool.starmap(|n: &i32, c: &char| format!("{c}{n}"), &pairs);
    /// assert_eq!(labels, ["a1", "b2"]);
    /// let zipped = parpool::iter((1..3u8).zip(10..12u8));
    /// assert_eq!(pool.starmap(|a: u8, b: u8| a + b, zipped), [11, 13]);
    /// ```
    pub fn starmap<I, F>(&self, f: F, inputs: I) -> Vec<F::Output>
    where
        I: Inputs,
        I::Item: Unpack,
        F: StarFn<<I::Item as Unpack>::Args> + Sync,
        F::Output: Send,
    {
        self.chunked_opt(None).starmap(f, inputs)
    }

    /// Like [`map`](Self::map), but returns at once with a handle to the
    /// result vector. Needs `'static` work: can't borrow here? Use
    /// [`scope`](Self::scope) (its [`Scope::map_async`] may borrow), or move
    /// the data in (an owned `Vec`, or an `Arc`).
    ///
    /// On a pool that no longer runs, nothing is queued and the handle
    /// reports [`TaskError::NotRunning`](crate::TaskError::NotRunning)
    /// (Python raises `ValueError`); the inputs are dropped at the call.
    ///
    /// Inputs: slices, `Vec`s, arrays and integer ranges are split in place;
    /// `std` collections and common iterators are collected first (see
    /// [`Inputs`]). Any other iterator, such as an `impl Iterator` returned
    /// by a function, goes through [`parpool::iter`](crate::iter):
    /// `pool.map(f, parpool::iter(it))`.
    ///
    /// # Panics
    ///
    /// Never in this call. A panic in `f` is reported by the handle.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let handle = pool.map_async(|x| x * 2, vec![1, 2, 3]);
    /// assert_eq!(handle.get(), Ok(vec![2, 4, 6]));
    /// let handle = pool.map_async(|x| x + 1, parpool::iter((0..3u8).rev()));
    /// assert_eq!(handle.get(), Ok(vec![3, 2, 1]));
    /// ```
    pub fn map_async<I, F, R>(&self, f: F, inputs: I) -> AsyncResult<Vec<R>>
    where
        I: Inputs + Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        self.chunked_opt(None).map_async(f, inputs)
    }

    /// Like [`starmap`](Self::starmap), but returns at once with a handle.
    /// As [`map_async`](Self::map_async): `'static` work (or
    /// [`scope`](Self::scope)), and a pool that no longer runs gives a
    /// handle reporting [`TaskError::NotRunning`](crate::TaskError::NotRunning).
    ///
    /// Inputs: slices, `Vec`s, arrays and integer ranges are split in place;
    /// `std` collections and common iterators are collected first (see
    /// [`Inputs`]). Any other iterator, such as an `impl Iterator` returned
    /// by a function, goes through [`parpool::iter`](crate::iter):
    /// `pool.map(f, parpool::iter(it))`.
    ///
    /// # Panics
    ///
    /// Never in this call. A panic in `f` is reported by the handle.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let handle = pool.starmap_async(|a: i32, b: i32| a - b, vec![(5, 1), (9, 4)]);
    /// assert_eq!(handle.get(), Ok(vec![4, 5]));
    /// let pairs = parpool::iter((0..2).map(|i| (i, i * 10)));
    /// assert_eq!(pool.starmap_async(|a: i32, b: i32| a + b, pairs).get(), Ok(vec![0, 11]));
    /// ```
    pub fn starmap_async<I, F>(&self, f: F, inputs: I) -> AsyncResult<Vec<F::Output>>
    where
        I: Inputs + Send + 'static,
        I::Item: Unpack,
        F: StarFn<<I::Item as Unpack>::Args> + Send + Sync + 'static,
        F::Output: Send + 'static,
    {
        self.chunked_opt(None).starmap_async(f, inputs)
    }

    /// The blocking map family with a fixed chunksize: each task gets `n`
    /// consecutive inputs (Python's `chunksize` argument).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// assert_eq!(pool.chunked(2).map(|x| x * 10, 0..5u32), [0, 10, 20, 30, 40]);
    /// ```
    pub fn chunked(&self, n: usize) -> Chunked<'_> {
        assert!(n > 0, "parpool: chunksize must be at least 1");
        self.chunked_opt(Some(n))
    }

    fn chunked_opt(&self, chunksize: Option<usize>) -> Chunked<'_> {
        Chunked {
            pool: self,
            chunksize,
        }
    }

    /// A lazy iterator of `f` over `inputs`, in input order (Python's
    /// `imap`). Inputs are read as results are consumed, with a bounded
    /// number in flight ([`Imap::buffer`]), so endless inputs run in constant
    /// memory. Nothing starts until the first `next()`. For async code,
    /// [`Imap::into_stream`] gives a `Stream`.
    ///
    /// **Borrowing.** The iterator may outlive this call, so `f` and the
    /// inputs must be `'static`: `pool.imap(f, &vec)` does not compile
    /// (`vec` is "borrowed for `'static`"). Can't borrow here? Use
    /// [`scope`](Self::scope) (`pool.scope(|s| s.imap(f, &vec).collect())`)
    /// or move the data in (`pool.imap(f, vec)`, or an `Arc`).
    ///
    /// **Send input.** The workers read the input (that is what keeps the
    /// consumer fast), so its iterator must be `Send`. `stdin().lines()` is
    /// not (it holds a `StdinLock`); read `stdin()` through a `BufReader`,
    /// which is, as in the example below.
    ///
    /// **Memory.** At most [`buffer`](Imap::buffer) input items are read
    /// ahead of the consumer, together with their results. The default
    /// buffer is 4 chunks per worker, so with
    /// [`chunksize(n)`](Imap::chunksize) it is `4 × workers × n` items:
    /// memory grows linearly with the chunksize (never past 1,048,576 items).
    /// With automatic chunking (the default) chunks grow only while items
    /// are tiny.
    ///
    /// The input is read on the workers, a chunk at a time, and a chunk's
    /// results come back together. An input whose `next` waits for results
    /// of earlier items (a request/response loop over channels, a work
    /// queue that the consumer refills from results) still streams: when
    /// the worker reading the input has been stuck in `next` for about
    /// 10 ms while the iterator waits, the iterator maps the items that
    /// worker read so far itself (on its own thread) and yields them, and
    /// the stream reads one item per chunk for a while. The same goes for
    /// input that pauses (lines arriving interactively). Two cases do not
    /// do this, and need [`chunksize(1)`](Imap::chunksize) for such inputs:
    /// a stream used through [`into_stream`](Imap::into_stream), which
    /// cannot wait, and a pool with an
    /// [`initializer`](crate::Builder::initializer), since `f` may count
    /// on state the initializer set up on the pool's threads.
    ///
    /// ```
    /// use std::sync::mpsc;
    ///
    /// // A work queue the consumer refills from results: node k has
    /// // children 2k+1 and 2k+2 below 100.
    /// let pool = parpool::ThreadPool::new();
    /// let (tx, queue) = mpsc::channel();
    /// tx.send(0u32).unwrap();
    /// let mut tx = Some(tx);
    /// let (mut pending, mut visited) = (1, 0);
    /// for children in pool.imap(|k: u32| [2 * k + 1, 2 * k + 2], queue) {
    ///     visited += 1;
    ///     pending -= 1;
    ///     for c in children.into_iter().filter(|&c| c < 100) {
    ///         tx.as_ref().unwrap().send(c).unwrap();
    ///         pending += 1;
    ///     }
    ///     if pending == 0 {
    ///         tx = None; // the queue ends
    ///     }
    /// }
    /// assert_eq!(visited, 100);
    /// ```
    ///
    /// **The consumer works too.** When the iterator would wait (`next`,
    /// `fold`, `batches`; not `next_timeout`) for a chunk no worker has
    /// started, it maps that chunk itself, as [`map`](Self::map)'s caller
    /// does, so a busy machine or busy workers do not hold the stream up.
    /// It only ever runs the chunk it waits for, and only over inputs that
    /// never wait (integer ranges, `Vec` and `VecDeque`), on a pool without
    /// an [`initializer`](crate::Builder::initializer) (or on one of the
    /// pool's own workers).
    ///
    /// On a pool that no longer runs (closed or terminated before this
    /// call), the work runs on the consumer's thread; this never panics
    /// (Python raises `ValueError`). So does the rest of a stream whose pool
    /// is closed while it runs, since the pool refuses its later chunks:
    /// on a pool with an initializer, `f` then runs without the state the
    /// initializer set up, unless the consumer is one of the pool's
    /// workers.
    ///
    /// # Panics
    ///
    /// Not in this call. The iterator re-raises a task's panic at that
    /// item's position, after every earlier result, and a panic of the
    /// input iterator likewise. If the pool is terminated while the
    /// iterator runs, it ends with
    /// [`TaskError::Cancelled`](crate::TaskError::Cancelled), which `next()`
    /// raises as a panic and [`Imap::next_timeout`] returns as an error.
    /// Dropping the iterator never panics: a panic of the unread input's or
    /// of `f`'s `Drop` then is a stray panic of the pool (counted in
    /// [`Stats::panicked`](crate::Stats::panicked), and subject to the
    /// [`PanicPolicy`](crate::PanicPolicy)); in a scope, the scope
    /// re-raises it when it ends.
    ///
    /// ```
    /// use parpool::ThreadPool;
    /// let pool = ThreadPool::new();
    /// let numbers: Vec<u64> = (1..=5).collect();
    /// for result in pool.imap(|n| n * 2, numbers) {
    ///     println!("{}", result);
    /// }
    /// let first: Vec<u64> = pool.imap(|n: u64| n * n, 0..).take(3).collect();
    /// assert_eq!(first, [0, 1, 4]);
    /// ```
    ///
    /// Lines of standard input (any `Read`), processed in parallel, in order:
    ///
    /// ```no_run
    /// use std::io::{BufRead, BufReader};
    ///
    /// let pool = parpool::ThreadPool::new();
    /// // `BufReader<Stdin>` is Send; `stdin().lines()` (a `StdinLock`) is not.
    /// let lines = BufReader::new(std::io::stdin()).lines();
    /// for len in pool.imap(|line: std::io::Result<String>| line.map(|l| l.len()), lines) {
    ///     println!("{}", len.unwrap());
    /// }
    /// ```
    ///
    /// `stdin().lines()` itself is refused at compile time:
    ///
    /// ```compile_fail,E0277
    /// let pool = parpool::ThreadPool::new();
    /// // error[E0277]: `MutexGuard<'_, ..>` cannot be sent between threads safely
    /// let it = pool.imap(|line: std::io::Result<String>| line.is_ok(), std::io::stdin().lines());
    /// ```
    ///
    /// The working version, tested on an in-memory reader:
    ///
    /// ```
    /// use std::io::{BufRead, BufReader, Cursor};
    ///
    /// let pool = parpool::ThreadPool::new();
    /// let input = Cursor::new("a\nbb\nccc\n");
    /// let lens: Vec<usize> = pool
    ///     .imap(|line: std::io::Result<String>| line.unwrap().len(), BufReader::new(input).lines())
    ///     .collect();
    /// assert_eq!(lens, [1, 2, 3]);
    /// ```
    ///
    /// Borrowing a local does not compile, since the iterator could outlive
    /// it:
    ///
    /// ```compile_fail,E0597
    /// let pool = parpool::ThreadPool::new();
    /// let words = vec![String::from("a"), String::from("bb")];
    /// // error[E0597]: `words` does not live long enough
    /// //   argument requires that `words` is borrowed for `'static`
    /// let lens: Vec<usize> = pool.imap(|w: &String| w.len(), &words).collect();
    /// ```
    ///
    /// A scope allows it:
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let words = vec![String::from("a"), String::from("bb")];
    /// let lens: Vec<usize> = pool.scope(|s| s.imap(|w: &String| w.len(), &words).collect());
    /// assert_eq!(lens, [1, 2]);
    /// ```
    pub fn imap<F, I, T, R>(&self, f: F, inputs: I) -> Imap<'static, R>
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        self.build_imap(f, inputs, true).ordered()
    }

    /// Like [`imap`](Self::imap), but yields results as they complete
    /// (Python's `imap_unordered`).
    ///
    /// As for `imap`: `f` and the inputs must be `'static` (can't borrow
    /// here? Use [`scope`](Self::scope), or move the data in), the input
    /// iterator must be `Send`, memory is bounded by the buffer (`4 ×
    /// workers × chunksize` items by default), on a pool that no longer
    /// runs the work runs on the consumer's thread, and an input that waits
    /// for results of earlier items streams (except through
    /// [`into_stream`](ImapUnordered::into_stream), which then needs
    /// [`chunksize(1)`](ImapUnordered::chunksize)).
    ///
    /// # Panics
    ///
    /// Not in this call. The iterator re-raises a task's panic when it
    /// reaches it, and an input iterator's panic after every result read
    /// before it; if the pool is terminated while it runs, `next()` panics
    /// with [`TaskError::Cancelled`](crate::TaskError::Cancelled)'s message
    /// ([`ImapUnordered::next_timeout`] returns it as an error).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let mut out: Vec<u32> = pool.imap_unordered(|n: u32| n + 1, vec![3, 1, 2]).collect();
    /// out.sort();
    /// assert_eq!(out, [2, 3, 4]);
    /// ```
    pub fn imap_unordered<F, I, T, R>(&self, f: F, inputs: I) -> ImapUnordered<'static, R>
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        self.build_imap(f, inputs, false).unordered()
    }

    fn build_imap<F, I, T, R>(&self, f: F, inputs: I, ordered: bool) -> imap::CoreHandle<'static, R>
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        // Inputs that provably never wait are read in bulk (`imap/credit.rs`).
        let never_waits = imap::never_waits::<I::IntoIter>();
        imap::build(
            Queue::pool(Arc::clone(&self.registry)),
            f,
            inputs,
            ordered,
            never_waits,
        )
    }

    /// Runs `body` with a [`Scope`] whose tasks may borrow from the caller's
    /// stack, and returns when every task started in it has finished, even if
    /// the body or a task panicked. A task panic that no handle consumed is
    /// re-raised here.
    ///
    /// # Panics
    ///
    /// If `body` panics, or a job of the scope panicked and no handle
    /// observed it (a [`Scope::spawn`] job, or a task whose handle was
    /// dropped): re-raised here, after every job of the scope has finished.
    /// The body's own panic takes precedence.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let mut totals = vec![0; 3];
    /// let rows = vec![vec![1, 2], vec![3], vec![4, 5, 6]];
    /// pool.scope(|s| {
    ///     let sums: Vec<i32> = s.imap(|r: &Vec<i32>| r.iter().sum(), &rows).collect();
    ///     totals.copy_from_slice(&sums);
    /// });
    /// assert_eq!(totals, [3, 3, 15]);
    /// ```
    pub fn scope<'env, F, T>(&self, body: F) -> T
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
    {
        scope::run(&self.registry, body)
    }

    /// Stops accepting work; queued work still runs. Idempotent. The pool's
    /// own workers may still submit (so queued tasks that nest keep
    /// working): from them, calls on a closed pool queue their work as on
    /// a running one, and it runs before the workers exit.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let handle = pool.apply_async(|| 7);
    /// pool.close();
    /// pool.join();
    /// assert_eq!(handle.get(), Ok(7));
    /// ```
    pub fn close(&self) {
        self.registry.close();
    }

    /// Stops accepting work and discards queued tasks: their handles report
    /// [`TaskError::Cancelled`](crate::TaskError::Cancelled). Running tasks
    /// finish (threads cannot be killed safely), but a running chunk stops
    /// between items, and [`cancelled`](crate::cancelled) turns true inside
    /// running tasks. So `imap` iterators and `map_async` handles report
    /// `Cancelled` soon, without waiting for a whole chunk of slow items. A
    /// blocking `map` still returns every result: its calling thread finishes
    /// the work the workers dropped. Idempotent.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = parpool::ThreadPool::with_workers(1);
    /// let running = pool.apply_async(|| std::thread::sleep(Duration::from_millis(50)));
    /// let queued = pool.apply_async(|| 1);
    /// pool.terminate();
    /// pool.join();
    /// assert_eq!(queued.get(), Err(parpool::TaskError::Cancelled));
    /// # let _ = running;
    /// ```
    pub fn terminate(&self) {
        self.registry.terminate();
    }

    /// Waits until every worker thread has exited. Call [`close`](Self::close)
    /// or [`terminate`](Self::terminate) first. Idempotent.
    ///
    /// # Panics
    ///
    /// If the pool is still running (as Python raises), or if called from one
    /// of the pool's own workers (it would wait for itself).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// pool.close();
    /// pool.join();
    /// pool.join(); // again: returns at once
    /// ```
    ///
    /// ```should_panic
    /// let pool = parpool::ThreadPool::new();
    /// pool.join(); // panics: the pool is still running
    /// ```
    pub fn join(&self) {
        assert!(
            !self.registry.is_running(),
            "parpool: join() called on a running pool; call close() or terminate() first"
        );
        assert!(
            !self.registry.is_current_worker(),
            "parpool: join() called from one of the pool's own workers; it would wait for itself"
        );
        self.registry.join_threads();
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.registry.close();
        if !self.registry.is_current_worker() {
            self.registry.join_threads();
        }
    }
}

/// The blocking map family with a fixed chunksize; made by
/// [`ThreadPool::chunked`].
///
/// ```
/// let pool = parpool::ThreadPool::new();
/// let chunked = pool.chunked(7);
/// assert_eq!(chunked.map(|x| x + 1, &[1, 2]), [2, 3]);
/// assert_eq!(chunked.starmap(|a: i32, b: i32| a + b, vec![(1, 2)]), [3]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Chunked<'a> {
    pool: &'a ThreadPool,
    chunksize: Option<usize>,
}

impl Chunked<'_> {
    /// [`ThreadPool::map`] with this chunksize. Any iterator goes through
    /// [`parpool::iter`](crate::iter).
    ///
    /// # Panics
    ///
    /// As [`ThreadPool::map`].
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// assert_eq!(pool.chunked(3).map(|x| x * 2, &[1, 2, 3, 4]), [2, 4, 6, 8]);
    /// assert_eq!(pool.chunked(2).map(|x| x, parpool::iter("ab".chars())), ['a', 'b']);
    /// ```
    pub fn map<I, F, R>(&self, f: F, inputs: I) -> Vec<R>
    where
        I: Inputs,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        let registry = &self.pool.registry;
        let f = map::MapFn::new(f);
        let results = match map::run_map_infallible(
            registry,
            inputs.into_source(),
            self.chunksize,
            f.get(),
            false,
        ) {
            Ok(v) => v,
            Err(map::Cancelled) => unreachable!("a blocking map finishes after terminate"),
        };
        f.finish(results, crate::panic::drop_all_discarding)
    }

    /// [`ThreadPool::try_map`] with this chunksize. Any iterator goes
    /// through [`parpool::iter`](crate::iter).
    ///
    /// # Errors
    ///
    /// The `Err` at the earliest failing input position.
    ///
    /// # Panics
    ///
    /// As [`ThreadPool::map`].
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let r = pool.chunked(1).try_map(|x: u8| x.checked_mul(100).ok_or(x), vec![1, 2, 3]);
    /// assert_eq!(r, Err(3));
    /// let ok = pool.chunked(1).try_map(|x: u8| Ok::<u8, ()>(x), parpool::iter([1u8].into_iter()));
    /// assert_eq!(ok, Ok(vec![1]));
    /// ```
    pub fn try_map<I, F, T, E>(&self, f: F, inputs: I) -> Result<Vec<T>, E>
    where
        I: Inputs,
        F: Fn(I::Item) -> Result<T, E> + Sync,
        T: Send,
        E: Send,
    {
        let registry = &self.pool.registry;
        let f = map::MapFn::new(f);
        let results = map::run_map(
            registry,
            inputs.into_source(),
            self.chunksize,
            f.get(),
            false,
        )
        .map_err(|e| match e {
            map::MapError::Failed(e) => e,
            map::MapError::Cancelled => unreachable!("a blocking map finishes after terminate"),
        });
        f.finish(results, |r| match r {
            Ok(values) => crate::panic::drop_all_discarding(values),
            Err(e) => crate::panic::drop_discarding(e),
        })
    }

    /// [`ThreadPool::starmap`] with this chunksize. Any iterator goes
    /// through [`parpool::iter`](crate::iter).
    ///
    /// # Panics
    ///
    /// As [`ThreadPool::map`].
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// assert_eq!(pool.chunked(2).starmap(|a: i32, b: i32| a * b, vec![(2, 3), (4, 5)]), [6, 20]);
    /// let pairs = parpool::iter((1..3).zip(1..3));
    /// assert_eq!(pool.chunked(1).starmap(|a: i32, b: i32| a * b, pairs), [1, 4]);
    /// ```
    pub fn starmap<I, F>(&self, f: F, inputs: I) -> Vec<F::Output>
    where
        I: Inputs,
        I::Item: Unpack,
        F: StarFn<<I::Item as Unpack>::Args> + Sync,
        F::Output: Send,
    {
        let f = map::MapFn::new(f);
        let results = self.map(|t: I::Item| f.get().call(t.unpack()), inputs);
        f.finish(results, crate::panic::drop_all_discarding)
    }

    /// [`ThreadPool::map_async`] with this chunksize. Any iterator goes
    /// through [`parpool::iter`](crate::iter).
    ///
    /// # Panics
    ///
    /// Never in this call; as [`ThreadPool::map_async`].
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// assert_eq!(pool.chunked(4).map_async(|x| x + 1, 0..3u8).get(), Ok(vec![1, 2, 3]));
    /// let h = pool.chunked(4).map_async(|x| x, parpool::iter(std::iter::once(9)));
    /// assert_eq!(h.get(), Ok(vec![9]));
    /// ```
    pub fn map_async<I, F, R>(&self, f: F, inputs: I) -> AsyncResult<Vec<R>>
    where
        I: Inputs + Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        let registry = Arc::clone(&self.pool.registry);
        let chunksize = self.chunksize;
        self.pool.submit_task(
            {
                let task = map::MapAsync::new(inputs, f);
                move || task.run(&registry, chunksize)
            },
            PanicSource::Relayed,
        )
    }

    /// [`ThreadPool::starmap_async`] with this chunksize. Any iterator goes
    /// through [`parpool::iter`](crate::iter).
    ///
    /// # Panics
    ///
    /// Never in this call; as [`ThreadPool::map_async`].
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let h = pool.chunked(1).starmap_async(|a: u8, b: u8| a + b, vec![(1, 1)]);
    /// assert_eq!(h.get(), Ok(vec![2]));
    /// let h = pool.chunked(1).starmap_async(|a: u8| a, parpool::iter(std::iter::once((3,))));
    /// assert_eq!(h.get(), Ok(vec![3]));
    /// ```
    pub fn starmap_async<I, F>(&self, f: F, inputs: I) -> AsyncResult<Vec<F::Output>>
    where
        I: Inputs + Send + 'static,
        I::Item: Unpack,
        F: StarFn<<I::Item as Unpack>::Args> + Send + Sync + 'static,
        F::Output: Send + 'static,
    {
        self.map_async(move |t: I::Item| f.call(t.unpack()), inputs)
    }
}
