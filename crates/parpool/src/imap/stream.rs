//! `into_stream`: an imap as a `futures_core::Stream`.
//!
//! [`Imap`] and [`ImapUnordered`] are iterators only. A type that is both an
//! `Iterator` and a `Stream` makes `next`, `map`, `collect`, … ambiguous
//! (E0034) wherever `futures::StreamExt` is in scope, so the stream is a
//! separate type, made by `into_stream`. It yields the same items in the
//! same order, and waits by registering the task's waker instead of
//! blocking the executor's thread.
//!
//! Invariant: a stream and the iterator it came from share one consumer;
//! nothing is read, issued or dropped differently.

use super::consumer::Consumer;
use super::{Imap, ImapUnordered};
use futures_core::Stream;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

macro_rules! stream_type {
    ($(#[$doc:meta])* $name:ident, $from:ident, $method:literal) => {
        $(#[$doc])*
        #[must_use = "streams do nothing unless polled"]
        pub struct $name<'a, R> {
            core: Consumer<'a, R>,
        }

        impl<'a, R> $from<'a, R> {
            /// This iterator as a [`Stream`], for async code: it yields the
            /// same items, and waits without blocking the executor's thread.
            ///
            /// Unlike the iterator, a stream does not take over the items of
            /// a worker stuck in the input's `next` (it never waits, so it
            /// cannot tell): an input that waits for results of earlier
            /// items needs `chunksize(1)` here.
            ///
            /// # Panics
            ///
            /// Not here. Polling the stream re-raises a task's panic at its
            /// item's position, as the iterator's `next()` does, and panics
            /// with [`TaskError::Cancelled`](crate::TaskError::Cancelled)'s
            /// message if the pool was terminated while it ran. Where the
            /// iterator's `next()` gives up (a wait that can never end, on
            /// a thread already unwinding), the stream ends (`None`) and
            /// stays ended.
            ///
            /// ```
            /// use futures::StreamExt; // no ambiguity: the stream is not an Iterator
            ///
            /// let pool = parpool::ThreadPool::new();
            #[doc = concat!("let mut stream = pool.", $method, "(|x: u64| x * 2, 0..4).into_stream();")]
            /// let all: Vec<u64> = futures::executor::block_on(async {
            ///     let mut all = Vec::new();
            ///     while let Some(x) = stream.next().await {
            ///         all.push(x);
            ///     }
            ///     all
            /// });
            /// assert_eq!(all.len(), 4);
            /// ```
            pub fn into_stream(self) -> $name<'a, R> {
                $name { core: self.core }
            }
        }

        impl<R> Stream for $name<'_, R> {
            type Item = R;

            /// The same items as the iterator, without blocking the
            /// executor's thread.
            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<R>> {
                self.get_mut().core.poll_next(cx)
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                self.core.size_hint()
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

stream_type!(
    /// [`Imap`] as a [`Stream`]: results in input order; made by
    /// [`Imap::into_stream`].
    ///
    /// Dropping it cancels the work that has not started.
    ///
    /// ```
    /// use futures::StreamExt;
    ///
    /// let pool = parpool::ThreadPool::new();
    /// let stream = pool.imap(|x: u64| x * x, 1..=4).into_stream();
    /// let squares: Vec<u64> = futures::executor::block_on(stream.collect());
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// ```
    ImapStream,
    Imap,
    "imap"
);

stream_type!(
    /// [`ImapUnordered`] as a [`Stream`]: results in completion order; made
    /// by [`ImapUnordered::into_stream`].
    ///
    /// Dropping it cancels the work that has not started.
    ///
    /// ```
    /// use futures::StreamExt;
    ///
    /// let pool = parpool::ThreadPool::new();
    /// let stream = pool.imap_unordered(|x: u64| x * x, 1..=4).into_stream();
    /// let mut squares: Vec<u64> = futures::executor::block_on(stream.collect());
    /// squares.sort();
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// ```
    ImapUnorderedStream,
    ImapUnordered,
    "imap_unordered"
);
