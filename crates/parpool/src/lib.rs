//! # parpool
//!
//! Python's `multiprocessing.pool.ThreadPool`, for Rust: `map`, `imap`,
//! `imap_unordered`, `starmap`, `apply_async`, `close`/`terminate`/`join`,
//! with Rust's guarantees added. Blocking calls may borrow from the stack,
//! streams run in bounded memory, and every panic, timeout or misuse ends in
//! a clear error instead of a hang.
//!
//! ## A quick tour
//!
//! ```
//! use parpool::ThreadPool;
//! use std::time::Duration;
//!
//! let pool = ThreadPool::new();
//!
//! // map: blocking, ordered, may borrow.
//! let words = vec!["apple", "banana", "cherry"];
//! assert_eq!(pool.map(|w| w.len(), &words), [5, 6, 6]);
//!
//! // imap: lazy and ordered, bounded memory, even over an endless input.
//! let squares: Vec<u64> = pool.imap(|n: u64| n * n, 0..).take(4).collect();
//! assert_eq!(squares, [0, 1, 4, 9]);
//!
//! // apply_async: a handle with get, timeouts, ready, successful.
//! let mut handle = pool.apply_async(|| 6 * 7);
//! assert_eq!(handle.get_timeout(Duration::from_secs(5)), Ok(42));
//!
//! // Panics become errors, never hangs.
//! let failed = pool.apply_async(|| -> u8 { panic!("bad row") });
//! assert!(failed.get().unwrap_err().to_string().contains("bad row"));
//!
//! // Fallible work stops early and reports the earliest error.
//! let parsed = pool.try_map(|s: &&str| s.parse::<i32>(), &["1", "2", "x"]);
//! assert!(parsed.is_err());
//!
//! // Scoped work: lazy streams over borrowed data.
//! let total: usize = pool.scope(|s| s.imap(|w: &&str| w.len(), &words).sum());
//! assert_eq!(total, 17);
//!
//! // Fire and forget.
//! pool.spawn(|| println!("hello from a worker"));
//!
//! pool.close();
//! pool.join();
//! ```
//!
//! ## Python to parpool
//!
//! | Python `Pool` | parpool |
//! |---|---|
//! | `ThreadPool(processes=n)` | [`ThreadPool::with_workers(n)`](ThreadPool::with_workers) |
//! | `initializer`, `maxtasksperchild` | [`Builder::initializer`], [`Builder::max_tasks_per_worker`] |
//! | `apply(f, args)` | [`ThreadPool::apply`] (closure captures the args) |
//! | `apply_async(f, callback=, error_callback=)` | [`ThreadPool::apply_async`] + [`AsyncResult::on_success`] / [`AsyncResult::on_error`] |
//! | `AsyncResult.get(timeout)` | [`AsyncResult::get`], [`AsyncResult::get_timeout`] |
//! | `map(f, xs, chunksize)` | [`ThreadPool::map`], [`ThreadPool::chunked`] |
//! | `map_async`, `starmap`, `starmap_async` | same names |
//! | `imap(f, xs, chunksize)`, `imap_unordered` | [`ThreadPool::imap`] + [`Imap::chunksize`], [`ThreadPool::imap_unordered`] |
//! | `IMapIterator.next(timeout)` | [`Imap::next_timeout`] |
//! | `close()`, `terminate()`, `join()` | same names |
//! | any call on a closed pool: `ValueError: Pool not running` | never panics: blocking calls, [`ThreadPool::spawn`] and `imap` run on the calling thread; `_async` handles report [`TaskError::NotRunning`] |
//!
//! | Python `concurrent.futures` | parpool |
//! |---|---|
//! | `executor.submit(f, *args)` | [`ThreadPool::apply_async`] (closure captures the args) |
//! | `executor.map(f, xs)` (lazy, ordered) | [`ThreadPool::imap`] |
//! | `executor.shutdown(wait=True)` | [`ThreadPool::close`] + [`ThreadPool::join`] (or drop the pool) |
//! | `executor.shutdown(cancel_futures=True)` | [`ThreadPool::terminate`] + [`ThreadPool::join`]: queued tasks report [`TaskError::Cancelled`] |
//! | `future.add_done_callback(fn)` | [`AsyncResult::on_success`] / [`AsyncResult::on_error`] |
//! | `future.result(timeout=)` | [`AsyncResult::get`], [`AsyncResult::get_timeout`] |
//! | `future.exception()` | `get().err()`: [`TaskError::Panicked`] carries the panic message |
//! | `future.cancel()`, `done()` | [`AsyncResult::cancel`], [`AsyncResult::ready`] |
//! | `as_completed`, `wait(return_when=)` | [`as_completed`], [`wait()`] with [`WaitFor`] |
//! | `asyncio.wrap_future` | `handle.await` ([`AsyncResult`] is a `Future`); [`Imap::into_stream`] |
//!
//! ## Coming from rayon
//!
//! | rayon | parpool |
//! |---|---|
//! | `spawn(f)`, `ThreadPool::spawn` | [`ThreadPool::spawn`]: panics go to the [`PanicPolicy`] instead of aborting |
//! | `scope(\|s\| s.spawn(..))` | [`ThreadPool::scope`] + [`Scope::spawn`]; also [`Scope::apply_async`] (a handle), [`Scope::imap`] |
//! | `pool.install(\|\| ..)` | [`ThreadPool::apply`]: runs a closure on the pool and returns its result. Nested parallel calls inside use the pool only if they name it (there is no implicit "current pool") |
//! | `join(a, b)` | `pool.scope(\|s\| { let b = s.apply_async(b); (a(), b.get()) })`; fine-grained recursive fork-join is rayon's job |
//! | `xs.par_iter().map(f).collect()` | [`ThreadPool::map`] (borrows, ordered `Vec`), [`ThreadPool::imap`] (lazy, bounded) |
//! | `par_iter().filter().reduce()` … | left to rayon: parpool has no parallel iterator combinators; map, then reduce the `Vec` or the `imap` |
//! | `broadcast(f)` | left to rayon: parpool does not address individual workers (use [`Builder::initializer`] for per-thread setup) |
//!
//! parpool is a pool with Python's lifecycle (`close`, `terminate`, `join`,
//! retiring workers, timeouts, streaming with bounded memory); rayon is a
//! work-stealing parallel-iterator engine. Use both if you need both.
//!
//! ## Design
//!
//! See `docs/design.md` in the repository for the engine (chunks written
//! straight into their output slots, one lock-free queue, sleeping idle
//! workers) and the protocols behind the guarantees.

#![warn(missing_docs)]
// Under the model checker only the protocol modules are built, so parts of
// them that the rest of the crate uses look unused.
#![cfg_attr(parpool_loom, allow(dead_code))]
#![deny(unsafe_op_in_unsafe_fn)]

// Under `cfg(parpool_loom)` only the protocol modules are built, on loom's
// primitives (see `sync.rs` and `.ci/loom`).
#[cfg(not(parpool_loom))]
mod async_result;
#[cfg(not(parpool_loom))]
mod builder;
#[cfg(not(parpool_loom))]
mod cancel;
#[cfg(not(parpool_loom))]
mod chunking;
#[cfg(not(parpool_loom))]
mod error;
#[cfg(not(parpool_loom))]
mod exec_wait;
mod gate;
#[cfg(not(parpool_loom))]
mod imap;
#[cfg(not(parpool_loom))]
mod inputs;
#[cfg(not(parpool_loom))]
mod job;
mod lifecycle;
#[cfg(not(parpool_loom))]
mod map;
#[cfg(not(parpool_loom))]
mod panic;
#[cfg(not(parpool_loom))]
mod park;
#[cfg(not(parpool_loom))]
mod pool;
#[cfg(not(parpool_loom))]
mod queue;
#[cfg(not(parpool_loom))]
mod registry;
#[cfg(not(parpool_loom))]
mod scope;
mod slab;
mod sleep;
#[cfg(not(parpool_loom))]
mod star;
#[cfg(not(parpool_loom))]
mod stats;
#[cfg(not(parpool_loom))]
mod submit;
mod sync;
mod task_ptr;
#[cfg(not(parpool_loom))]
mod wait;
#[cfg(not(parpool_loom))]
mod wait_graph;
#[cfg(not(parpool_loom))]
mod worker;

#[cfg(not(parpool_loom))]
pub use async_result::AsyncResult;
#[cfg(not(parpool_loom))]
pub use builder::Builder;
#[cfg(not(parpool_loom))]
pub use cancel::cancelled;
#[cfg(not(parpool_loom))]
pub use error::{BuildError, TaskError};
#[cfg(not(parpool_loom))]
pub use imap::{Batches, Imap, ImapStream, ImapUnordered, ImapUnorderedStream};
#[cfg(not(parpool_loom))]
#[doc(hidden)]
pub use inputs::source;
#[cfg(not(parpool_loom))]
pub use inputs::{iter, Inputs, Iter, RangeInt};
#[cfg(not(parpool_loom))]
pub use panic::PanicPolicy;
#[cfg(not(parpool_loom))]
pub use pool::{Chunked, ThreadPool};
#[cfg(not(parpool_loom))]
pub use scope::Scope;
#[cfg(not(parpool_loom))]
pub use star::{StarFn, Unpack};
#[cfg(not(parpool_loom))]
pub use stats::Stats;
#[cfg(not(parpool_loom))]
pub use wait::{as_completed, wait, AsCompleted, WaitFor};

/// The README's Rust example, run as a doc test so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
