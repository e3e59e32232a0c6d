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
//! | `concurrent.futures.as_completed`, `wait` | [`as_completed`], [`wait`] |
//! | `Future.cancel()` | [`AsyncResult::cancel`] |
//!
//! ## Design
//!
//! See `docs/design.md` in the repository for the engine (chunks written
//! straight into their output slots, one lock-free queue, sleeping idle
//! workers) and the protocols behind the guarantees.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

// Under `cfg(loom)` only the protocol modules are built, on loom's
// primitives (see `sync.rs` and `.ci/loom`).
#[cfg(not(loom))]
mod async_result;
#[cfg(not(loom))]
mod builder;
#[cfg(not(loom))]
mod cancel;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod imap;
#[cfg(not(loom))]
mod inputs;
#[cfg(not(loom))]
mod job;
mod lifecycle;
#[cfg(not(loom))]
mod map;
#[cfg(not(loom))]
mod panic;
#[cfg(not(loom))]
mod park;
#[cfg(not(loom))]
mod pool;
#[cfg(not(loom))]
mod registry;
#[cfg(not(loom))]
mod scope;
mod sleep;
#[cfg(not(loom))]
mod spawn;
#[cfg(not(loom))]
mod star;
#[cfg(not(loom))]
mod stats;
mod sync;
#[cfg(not(loom))]
mod wait;
#[cfg(not(loom))]
mod worker;

#[cfg(not(loom))]
pub use async_result::AsyncResult;
#[cfg(not(loom))]
pub use builder::Builder;
#[cfg(not(loom))]
pub use cancel::cancelled;
#[cfg(not(loom))]
pub use error::{BuildError, TaskError};
#[cfg(not(loom))]
pub use imap::{Imap, ImapUnordered};
#[cfg(not(loom))]
#[doc(hidden)]
pub use inputs::source;
#[cfg(not(loom))]
pub use inputs::{iter, Inputs, Iter, RangeInt};
#[cfg(not(loom))]
pub use panic::PanicPolicy;
#[cfg(not(loom))]
pub use pool::{Chunked, ThreadPool};
#[cfg(not(loom))]
pub use scope::Scope;
#[cfg(not(loom))]
pub use star::{StarFn, Unpack};
#[cfg(not(loom))]
pub use stats::Stats;
#[cfg(not(loom))]
pub use wait::{as_completed, wait, AsCompleted, WaitFor};
