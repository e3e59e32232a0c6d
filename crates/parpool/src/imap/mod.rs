//! `imap` and `imap_unordered`: lazy, bounded, streaming maps.
//!
//! The consumer hands out *credits*: each credit is a job that, on a worker,
//! takes the input's lock, reads up to its size in items, tags them with the
//! next sequence number, releases the lock and maps them. The consumer keeps
//! credits out while fewer than `buffer` items are read ahead of it, and
//! yields finished chunks: by sequence number for [`Imap`], as they arrive for
//! [`ImapUnordered`]. So the input is read lazily and in parallel with the
//! consumer, and memory stays bounded by the buffer whatever the input's
//! length. Nothing is read before the first `next()`.
//!
//! Invariants:
//! - Every credit reports exactly once: a chunk (its results, and how it
//!   ended: complete, a task panic after the last result, cancelled, or the
//!   input panicked after it), or "input exhausted", or "returned" (dropped
//!   unrun, from its `Drop`). So the consumer counts credits out and never
//!   waits for one that will not report.
//! - Sequence numbers are taken under the input lock, in reading order, so
//!   they are contiguous and follow input order.
//! - Items count against the buffer from the moment a credit is issued until
//!   their chunk is handed to the consumer, including while they wait in the
//!   reorder buffer.
//! - The consumer yields every result before a task's panic, and a panic of
//!   the input iterator only after every result of the items before it.
//! - Dropping the iterator cancels what has not started: credits check a
//!   shared flag before reading and before each item.
//! - An input that waits for results never deadlocks the iterator: a read
//!   that stalls while the consumer waits for it has its items taken over
//!   by the consumer (`stash.rs`), in order.
//! - After `close`, an iterator created before it keeps going: new credits
//!   run on the consumer's own thread, since the workers may have exited.
//!   After `terminate`, it reports [`TaskError::Cancelled`].
//!
//! With automatic chunking the chunk size adapts: workers time each chunk,
//! and the consumer sizes the next one to take about `TARGET_CHUNK_NS` (in
//! `chunking.rs`), growing at most 16-fold per credit from 1. Slow items are
//! thus sent one by one (so `terminate` and load balance never wait on a
//! long chunk) and tiny items in large batches.
//!
//! The parts, one concept each: `credit.rs` (the credit job and what it
//! shares with the consumer: the worker side), `consumer.rs` (the consumer
//! and its stages), `window.rs` (the ordering window), `buffers.rs` (reused
//! result buffers), `stash.rs` (the items a credit is reading, which a
//! blocked consumer takes over when the read stalls); the sizes are
//! `chunking.rs`'s.

mod buffers;
mod consumer;
mod credit;
mod stash;
mod stream;
mod takeback;
mod window;

use crate::error::TaskError;
use crate::panic;
use crate::submit::Queue;
use consumer::{Consumer, InputSide};
pub(crate) use credit::never_waits;
use credit::{Exchange, PullJob, Source};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
pub use stream::{ImapStream, ImapUnorderedStream};

/// Builds the consumer for `f` over `inputs`; credits go to `queue` (the
/// pool, or a scope). On a pool that no longer runs, the credits run on the
/// consumer's thread.
pub(crate) fn build<'a, I, F, T, R>(
    queue: Queue<'a>,
    f: F,
    inputs: I,
    ordered: bool,
    never_waits: bool,
) -> CoreHandle<'a, R>
where
    I: IntoIterator<Item = T>,
    I::IntoIter: Send + 'a,
    F: Fn(T) -> R + Send + Sync + 'a,
    T: Send + 'a,
    R: Send + 'a,
{
    let registry = Arc::clone(queue.registry());
    let scope = queue.scope_state().cloned();
    let workers = registry.workers();
    let may_rescue = registry.config.initializer.is_none();
    let shared = Arc::new(Exchange::new(Arc::clone(&registry), scope.clone()));
    let iter = inputs.into_iter();
    // User code: a panicking `size_hint` must not panic in this call (the
    // documented promise) nor unwind past the input, whose `Drop` may panic
    // too (that aborted). The hint counts as unknown, and the panic goes
    // where the input's `Drop` panic would: to the scope, which re-raises
    // it when it ends, or to the pool as a stray panic (its policy may
    // terminate the pool, and the stream then ends `Cancelled`).
    let input_hint = panic::contain(|| iter.size_hint()).unwrap_or_else(|p| {
        match &scope {
            Some(scope) => scope.report_panic(p),
            None => registry.stray_panic(p),
        }
        (0, None)
    });
    let source = Arc::new(Source::new(iter, f, never_waits, registry, scope));
    let (input, stalled) = (Arc::clone(&source), Arc::clone(&source));
    let job_shared = Arc::clone(&shared);
    let side = InputSide {
        make_job: Box::new(move |credit, epoch| {
            Box::new(PullJob::new(
                Arc::clone(&source),
                Arc::clone(&job_shared),
                credit,
                epoch,
            ))
        }),
        never_waits,
        may_rescue,
        is_reading: {
            let source = Arc::clone(&input);
            Box::new(move || source.is_reading())
        },
        release_input: Box::new(move || input.release_input()),
        rescue: Box::new(move |shared, want| stalled.rescue(shared, want)),
        max_chunk: crate::chunking::max_chunk_for(
            std::mem::size_of::<T>(),
            std::mem::size_of::<R>(),
        ),
    };
    CoreHandle(Consumer::new(
        shared, side, queue, ordered, workers, input_hint,
    ))
}

/// Opaque carrier so `pool.rs` and `scope.rs` can build the public types.
pub(crate) struct CoreHandle<'a, R>(Consumer<'a, R>);

impl<'a, R> CoreHandle<'a, R> {
    pub(crate) fn ordered(self) -> Imap<'a, R> {
        Imap { core: self.0 }
    }
    pub(crate) fn unordered(self) -> ImapUnordered<'a, R> {
        ImapUnordered { core: self.0 }
    }
}

macro_rules! imap_type {
    ($(#[$doc:meta])* $name:ident, $method:literal) => {
        $(#[$doc])*
        #[must_use = "an imap iterator does nothing until iterated"]
        pub struct $name<'a, R> {
            core: Consumer<'a, R>,
        }

        impl<'a, R> $name<'a, R> {
            /// Sets how many input items each task gets. Call it before the
            /// first `next()`. Default: automatic, adapting to how long items
            /// take (one by one for slow items, large batches for tiny ones).
            ///
            /// A chunk never exceeds 65,536 items, nor 64 MiB of items or of
            /// results (one item at least: a chunk's buffers are reserved
            /// whole when it starts), nor the read-ahead bound (see
            /// [`buffer`](Self::buffer)): larger values are treated as that,
            /// since a larger chunk brings no speed and would hold all its
            /// items in memory at once.
            ///
            /// # Panics
            ///
            /// If iteration has started, or `n` is 0.
            ///
            /// ```
            /// let pool = parpool::ThreadPool::new();
            #[doc = concat!("let it = pool.", $method, "(|x: u32| x + 1, 0..10).chunksize(3);")]
            /// assert_eq!(it.count(), 10);
            /// ```
            pub fn chunksize(mut self, n: usize) -> Self {
                self.core.set_chunksize(n);
                self
            }

            /// Sets how many input items may be read ahead of the consumer
            /// (queued, running, or finished but not yet yielded). Memory use
            /// is bounded by it. Call it before the first `next()`. Default:
            /// 4 chunks per worker.
            ///
            /// Whatever the settings, at most 1,048,576 items are read ahead
            /// (larger buffers are treated as that), so an imap's memory is
            /// bounded in items even over an endless input.
            ///
            /// # Panics
            ///
            /// If iteration has started, or `n` is 0.
            ///
            /// ```
            /// let pool = parpool::ThreadPool::new();
            #[doc = concat!("let it = pool.", $method, "(|x: u64| x * 2, 0..).buffer(64);")]
            /// assert_eq!(it.take(1000).count(), 1000);
            /// ```
            pub fn buffer(mut self, n: usize) -> Self {
                self.core.set_buffer(n);
                self
            }

            /// Like `next()`, but waits at most `timeout` (Python's
            /// `IMapIterator.next(timeout)`). `Ok(None)` at the end.
            ///
            /// # Errors
            ///
            /// [`TaskError::Timeout`] if no result came in time (the iterator
            /// stays usable), [`TaskError::Panicked`] if the task for the next
            /// item (or the input iterator) panicked, and
            /// [`TaskError::Cancelled`] if the pool was terminated; after these
            /// two the iterator is finished.
            ///
            /// Also [`TaskError::Timeout`], whatever the timeout, where the
            /// wait gives up (see `next()`): on one of the pool's workers
            /// that can never make progress (no spare thread can start,
            /// its waits nested too deep to run the queue itself), on a
            /// thread already unwinding from another panic. The iterator
            /// is finished then: later calls return `Ok(None)`. Off an
            /// unwinding thread that wait panics, as `next()` does.
            ///
            /// ```
            /// use std::sync::{mpsc, Mutex};
            /// use std::time::Duration;
            /// let pool = parpool::ThreadPool::new();
            /// // `f` runs until it is released (at most 10 s).
            /// let (release, released) = mpsc::channel::<()>();
            /// let released = Mutex::new(released);
            /// let f = move |x: u32| {
            ///     let _ = released.lock().unwrap().recv_timeout(Duration::from_secs(10));
            ///     x
            /// };
            #[doc = concat!("let mut it = pool.", $method, "(f, [7]);")]
            /// assert_eq!(it.next_timeout(Duration::from_millis(1)), Err(parpool::TaskError::Timeout));
            /// release.send(()).unwrap();
            /// assert_eq!(it.next_timeout(Duration::from_secs(30)), Ok(Some(7)));
            /// assert_eq!(it.next_timeout(Duration::from_secs(30)), Ok(None));
            /// ```
            pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>, TaskError> {
                self.core.next_timeout(timeout)
            }

            /// The same results, handed out a chunk at a time: each batch is
            /// one task's results, moved out whole instead of item by item,
            /// which is the fastest way to consume an imap whose items are
            /// tiny. Concatenated, the batches are exactly what the iterator
            /// would have yielded, in the same order. A batch has at most
            /// the chunk size's items (see [`chunksize`](Self::chunksize)).
            ///
            /// # Panics
            ///
            /// As `next()`: a task's panic is re-raised when the batches
            /// reach its item (every result before it is handed out first,
            /// those of its own chunk as a last, shorter batch), and a
            /// terminated pool ends the batches with a panic. Where
            /// `next()` gives up (a wait that can never end, on a thread
            /// already unwinding), the batches end.
            ///
            /// ```
            /// let pool = parpool::ThreadPool::new();
            /// let mut all = Vec::new();
            #[doc = concat!("for batch in pool.", $method, "(|x: u64| x * 2, 0..10_000).batches() {")]
            ///     all.extend_from_slice(&batch);
            /// }
            /// assert_eq!(all.len(), 10_000);
            /// ```
            pub fn batches(self) -> Batches<'a, R> {
                Batches { core: self.core }
            }
        }

        impl<R> Iterator for $name<'_, R> {
            type Item = R;

            /// Waits for the next result. A task's panic is re-raised here, at
            /// its item's position; if the pool was terminated, this panics
            /// with [`TaskError::Cancelled`]'s message.
            ///
            /// Called on one of the pool's workers where the wait can never
            /// end (no spare thread can start, the initializer panics or
            /// the system refuses one, and the worker's waits are nested
            /// too deep for it to run the queue itself), it panics saying
            /// it "cannot make progress". On a thread already unwinding
            /// from another panic (a `Drop` iterating), where that second
            /// panic would abort the process, it gives up instead: it
            /// returns `None`, and the iteration is over (every later call
            /// returns `None`, and `fold`, `sum` and `for_each` stop there
            /// too). The results not handed out are dropped, as when the
            /// iterator is dropped.
            #[inline]
            fn next(&mut self) -> Option<R> {
                self.core.next_blocking()
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                self.core.size_hint()
            }

            /// Drains each ready chunk in one loop; `for_each`, `count`,
            /// `sum` and `last` go through here.
            fn fold<B, G>(mut self, init: B, g: G) -> B
            where
                G: FnMut(B, R) -> B,
            {
                self.core.fold(init, g)
            }
        }

        impl<R> Unpin for $name<'_, R> {}

        impl<R> fmt::Debug for $name<'_, R> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.core.fmt_debug(stringify!($name), f)
            }
        }
    };
}

imap_type!(
    /// The lazy, ordered iterator returned by
    /// [`ThreadPool::imap`](crate::ThreadPool::imap): results in input order.
    /// For async code, [`into_stream`](Imap::into_stream) turns it into a
    /// [`futures_core::Stream`].
    ///
    /// Dropping it cancels the work that has not started.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let squares: Vec<u64> = pool.imap(|x: u64| x * x, 1..=4).collect();
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// ```
    Imap,
    "imap"
);

imap_type!(
    /// The lazy iterator returned by
    /// [`ThreadPool::imap_unordered`](crate::ThreadPool::imap_unordered):
    /// results in completion order. For async code,
    /// [`into_stream`](ImapUnordered::into_stream) turns it into a
    /// [`futures_core::Stream`].
    ///
    /// Dropping it cancels the work that has not started.
    ///
    /// ```
    /// let pool = parpool::ThreadPool::new();
    /// let mut squares: Vec<u64> = pool.imap_unordered(|x: u64| x * x, 1..=4).collect();
    /// squares.sort();
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// ```
    ImapUnordered,
    "imap_unordered"
);

/// The results of an [`Imap`] or [`ImapUnordered`] a chunk at a time, made
/// by their `batches()`. Each item is one task's results, in the order the
/// iterator it came from hands them out.
///
/// ```
/// let pool = parpool::ThreadPool::new();
/// let batches: Vec<Vec<u32>> = pool.imap(|x: u32| x + 1, 0..6).chunksize(2).batches().collect();
/// assert_eq!(batches.concat(), [1, 2, 3, 4, 5, 6]);
/// assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 2));
/// ```
#[must_use = "batches do nothing until iterated"]
pub struct Batches<'a, R> {
    core: Consumer<'a, R>,
}

impl<R> Iterator for Batches<'_, R> {
    type Item = Vec<R>;

    /// Waits for the next chunk of results.
    ///
    /// # Panics
    ///
    /// As the imap iterator's `next()`: a task's panic is re-raised at its
    /// chunk, and a terminated pool ends the batches with a panic.
    fn next(&mut self) -> Option<Vec<R>> {
        self.core.next_batch()
    }
}

impl<R> fmt::Debug for Batches<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt_debug("Batches", f)
    }
}
