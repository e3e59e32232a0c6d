//! `Builder`: every knob of a pool, set before its threads start.
//!
//! Invariant: `build` returns either a pool whose every worker has been
//! started (and, if there is an initializer, has run it), or an error with
//! no thread left behind.

use crate::error::BuildError;
use crate::panic::PanicPolicy;
use crate::pool::ThreadPool;
use crate::registry::Registry;
use std::fmt;
use std::sync::Arc;

/// Settings shared by every worker of one pool.
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) initializer: Option<Arc<dyn Fn() + Send + Sync>>,
    pub(crate) max_tasks_per_worker: Option<usize>,
    pub(crate) on_panic: PanicPolicy,
}

/// Configures and builds a [`ThreadPool`]. Made by [`ThreadPool::builder`].
///
/// # Examples
///
/// ```
/// use parpool::{PanicPolicy, ThreadPool};
///
/// let pool = ThreadPool::builder()
///     .workers(3)
///     .thread_name("hasher")
///     .stack_size(4 << 20)
///     .initializer(|| println!("worker {:?} up", std::thread::current().name()))
///     .max_tasks_per_worker(1000)
///     .on_panic(PanicPolicy::Propagate)
///     .build()?;
/// assert_eq!(pool.workers(), 3);
/// # Ok::<(), parpool::BuildError>(())
/// ```
#[must_use = "a Builder does nothing until .build() is called"]
pub struct Builder {
    workers: Option<usize>,
    config: Config,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: None,
            config: Config {
                name: "parpool".to_owned(),
                stack_size: None,
                initializer: None,
                max_tasks_per_worker: None,
                on_panic: PanicPolicy::Propagate,
            },
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("thread_name", &self.config.name)
            .field("stack_size", &self.config.stack_size)
            .field("initializer", &self.config.initializer.is_some())
            .field("max_tasks_per_worker", &self.config.max_tasks_per_worker)
            .field("on_panic", &self.config.on_panic)
            .finish()
    }
}

impl Builder {
    /// A builder with the defaults: one worker per available CPU, threads
    /// named `parpool-N`, the platform's stack size, no initializer, no task
    /// limit, [`PanicPolicy::Propagate`].
    ///
    /// ```
    /// let pool = parpool::Builder::new().build().unwrap();
    /// assert!(pool.workers() >= 1);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of worker threads. `0` makes [`build`](Self::build) fail with
    /// [`BuildError::ZeroWorkers`].
    ///
    /// ```
    /// let pool = parpool::ThreadPool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.workers(), 2);
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Prefix of the worker threads' names: workers are named `prefix-0`,
    /// `prefix-1`, … (replacements continue the count).
    ///
    /// ```
    /// let pool = parpool::ThreadPool::builder().workers(1).thread_name("io").build().unwrap();
    /// let name = pool.apply(|| std::thread::current().name().map(str::to_owned));
    /// assert_eq!(name.as_deref(), Some("io-0"));
    /// ```
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.config.name = prefix.into();
        self
    }

    /// Stack size of each worker thread, in bytes.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::builder().stack_size(8 << 20).build().unwrap();
    /// assert_eq!(pool.apply(|| 1 + 1), 2);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.config.stack_size = Some(bytes);
        self
    }

    /// Runs `f` once on every worker thread, replacements included, before the
    /// thread takes any work (Python's `initializer`). If it panics while the
    /// pool is built, [`build`](Self::build) returns
    /// [`BuildError::InitializerPanicked`]; if it panics in a replacement
    /// thread, the retiring worker stays on instead.
    ///
    /// Unlike Python's, [`build`](Self::build) returns only once every
    /// initializer has (that is how it can report the panic), so an
    /// initializer must not wait for anything the building thread does
    /// after `build` returns, such as a barrier it meets next or a
    /// `LazyLock` holding this very pool: the two would wait for each other
    /// for good.
    ///
    /// ```
    /// use std::cell::Cell;
    /// thread_local!(static READY: Cell<bool> = const { Cell::new(false) });
    ///
    /// let pool = parpool::ThreadPool::builder()
    ///     .initializer(|| READY.with(|r| r.set(true)))
    ///     .build()
    ///     .unwrap();
    /// assert!(pool.apply(|| READY.with(|r| r.get())));
    /// ```
    pub fn initializer(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.config.initializer = Some(Arc::new(f));
        self
    }

    /// After `n` jobs, a worker thread exits and a fresh one replaces it
    /// (Python's `maxtasksperchild`). A job is one `apply_async` call or one
    /// chunk of a map. `0` means no limit.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::builder().workers(1).max_tasks_per_worker(1).build().unwrap();
    /// let a = pool.apply_async(|| std::thread::current().id()).get().unwrap();
    /// let b = pool.apply_async(|| std::thread::current().id()).get().unwrap();
    /// assert_ne!(a, b);
    /// ```
    pub fn max_tasks_per_worker(mut self, n: usize) -> Self {
        self.config.max_tasks_per_worker = (n > 0).then_some(n);
        self
    }

    /// What happens when a task panics; see [`PanicPolicy`].
    ///
    /// ```
    /// use parpool::PanicPolicy;
    /// let pool = parpool::ThreadPool::builder().on_panic(PanicPolicy::Propagate).build().unwrap();
    /// assert!(pool.apply_async(|| panic!("x")).get().is_err());
    /// ```
    pub fn on_panic(mut self, policy: PanicPolicy) -> Self {
        self.config.on_panic = policy;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroWorkers`] for `workers(0)`, [`BuildError::Spawn`] if
    /// a thread cannot be started (also for a
    /// [`thread_name`](Self::thread_name) with a NUL byte, which no thread
    /// can have), [`BuildError::InitializerPanicked`] if the
    /// initializer panics. In each case every thread already started is
    /// stopped and joined before the error is returned.
    ///
    /// ```
    /// let err = parpool::ThreadPool::builder()
    ///     .initializer(|| panic!("no database"))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("no database"));
    /// ```
    pub fn build(self) -> Result<ThreadPool, BuildError> {
        let workers = self.workers.unwrap_or_else(default_workers);
        Registry::start(self.config, workers).map(ThreadPool::from_registry)
    }
}

pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
