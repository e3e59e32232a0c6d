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

mod async_result;
mod builder;
mod cancel;
mod error;
mod imap;
mod inputs;
mod job;
mod map;
mod panic;
mod pool;
mod registry;
mod scope;
mod sleep;
mod star;
mod stats;
mod sync;
mod wait;

pub use async_result::AsyncResult;
pub use builder::Builder;
pub use cancel::cancelled;
pub use error::{BuildError, TaskError};
pub use imap::{Imap, ImapUnordered};
#[doc(hidden)]
pub use inputs::source;
pub use inputs::{iter, Inputs, Iter, RangeInt};
pub use panic::PanicPolicy;
pub use pool::{Chunked, ThreadPool};
pub use scope::Scope;
pub use star::{StarFn, Unpack};
pub use stats::Stats;
pub use wait::{as_completed, wait, AsCompleted, WaitFor};
