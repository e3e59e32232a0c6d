//! The four kinds of imap stream (ordered or not, on the pool or in a
//! scope) and one iterator over either ordering, for tests that run the
//! same check through every kind.

use parpool::{Imap, ImapUnordered, TaskError, ThreadPool};
use std::time::Duration;

/// Where an imap runs, and whether it is ordered.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Imap,
    Unordered,
    ScopeImap,
    ScopeUnordered,
}

pub const KINDS: [Kind; 4] = [
    Kind::Imap,
    Kind::Unordered,
    Kind::ScopeImap,
    Kind::ScopeUnordered,
];

impl Kind {
    /// `imap` (in order), not `imap_unordered`.
    pub fn is_ordered(self) -> bool {
        matches!(self, Kind::Imap | Kind::ScopeImap)
    }

    /// Made by a scope, not by the pool.
    pub fn in_scope(self) -> bool {
        matches!(self, Kind::ScopeImap | Kind::ScopeUnordered)
    }
}

/// Either kind of stream, as one iterator.
pub enum Stream<'a, R> {
    Ordered(Imap<'a, R>),
    Unordered(ImapUnordered<'a, R>),
}

impl<R> Iterator for Stream<'_, R> {
    type Item = R;
    fn next(&mut self) -> Option<R> {
        match self {
            Stream::Ordered(it) => it.next(),
            Stream::Unordered(it) => it.next(),
        }
    }
}

impl<R> Stream<'_, R> {
    pub fn next_timeout(&mut self, t: Duration) -> Result<Option<R>, TaskError> {
        match self {
            Stream::Ordered(it) => it.next_timeout(t),
            Stream::Unordered(it) => it.next_timeout(t),
        }
    }
}

/// `pool.imap` (if `ordered`) or `pool.imap_unordered` of `f` over
/// `input`, with `chunksize` and then `buffer` set where given.
pub fn pool_stream<T, R, I, F>(
    pool: &ThreadPool,
    ordered: bool,
    f: F,
    input: I,
    chunksize: Option<usize>,
    buffer: Option<usize>,
) -> Stream<'static, R>
where
    T: Send + 'static,
    R: Send + 'static,
    I: IntoIterator<Item = T>,
    I::IntoIter: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    if ordered {
        let mut it = pool.imap(f, input);
        if let Some(c) = chunksize {
            it = it.chunksize(c);
        }
        if let Some(b) = buffer {
            it = it.buffer(b);
        }
        Stream::Ordered(it)
    } else {
        let mut it = pool.imap_unordered(f, input);
        if let Some(c) = chunksize {
            it = it.chunksize(c);
        }
        if let Some(b) = buffer {
            it = it.buffer(b);
        }
        Stream::Unordered(it)
    }
}

/// Runs `body` with a stream of `f` over `input` of the given kind.
pub fn with_stream<T, R, I, F, B>(pool: &ThreadPool, kind: Kind, f: F, input: I, body: B)
where
    T: Send + 'static,
    R: Send + 'static,
    I: IntoIterator<Item = T>,
    I::IntoIter: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
    B: FnOnce(&mut dyn StreamLike<R>),
{
    match kind {
        Kind::Imap => body(&mut Stream::Ordered(pool.imap(f, input))),
        Kind::Unordered => body(&mut Stream::Unordered(pool.imap_unordered(f, input))),
        Kind::ScopeImap => pool.scope(|s| body(&mut Stream::Ordered(s.imap(f, input)))),
        Kind::ScopeUnordered => {
            pool.scope(|s| body(&mut Stream::Unordered(s.imap_unordered(f, input))))
        }
    }
}

/// What the tests do with a stream.
pub trait StreamLike<R> {
    fn next_item(&mut self) -> Option<R>;
    fn next_within(&mut self, t: Duration) -> Result<Option<R>, TaskError>;
}

impl<R> StreamLike<R> for Stream<'_, R> {
    fn next_item(&mut self) -> Option<R> {
        self.next()
    }
    fn next_within(&mut self, t: Duration) -> Result<Option<R>, TaskError> {
        self.next_timeout(t)
    }
}
