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
mod registry;
#[cfg(not(parpool_loom))]
mod scope;
mod sleep;
#[cfg(not(parpool_loom))]
mod star;
#[cfg(not(parpool_loom))]
mod stats;
#[cfg(not(parpool_loom))]
mod submit;
mod sync;
#[cfg(not(parpool_loom))]
mod wait;
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
pub use imap::{Imap, ImapStream, ImapUnordered, ImapUnorderedStream};
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
