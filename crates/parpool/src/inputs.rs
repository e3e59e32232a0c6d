//! `Inputs`: what the blocking map family accepts, and how it is split.
//!
//! Blocking maps run items out of order on many threads, so they need random
//! access to their inputs. Slices, vectors, arrays, `&VecDeque` and integer
//! ranges give it directly (the fast paths: no copy, no allocation). Other
//! collections and iterators are first collected into a `Vec` on the calling
//! thread.
//!
//! Why a list of types and not every `IntoIterator`: stable Rust cannot pick
//! the fast path for "a slice of any `T`" inside a blanket impl over
//! `IntoIterator` (that needs specialization). `castaway`-style dispatch
//! compares `TypeId`s, so it only matches one concrete `'static` type, never
//! a family like `&'a [T]` for every `T` and `'a`; and a blanket impl would
//! overlap the range and slice impls. So the common types are listed, any
//! other iterator goes through [`iter`], and the trait's
//! `on_unimplemented` message says so.
//!
//! Invariant kept by every [`Source`]: index `i < len()` is taken at most once,
//! and the engine either takes or drops (`drop_range`) every index of an
//! owning source before the source itself is dropped.

use std::ops::Range;

#[doc(hidden)]
pub mod source {
    //! The engine's view of an input collection. Not public API.
    use std::ops::Range;

    /// Random access to `len()` items, each taken at most once.
    ///
    /// # Safety
    ///
    /// Implementors must be safe to share between threads that take distinct
    /// indices concurrently.
    #[allow(clippy::len_without_is_empty)] // a length, not a collection
    pub unsafe trait Source: Sync {
        type Item;
        fn len(&self) -> usize;
        /// # Safety
        /// `i < len()`, and `i` was neither taken nor dropped before.
        unsafe fn take(&self, i: usize) -> Self::Item;
        /// Drops the items of `range` without taking them, each under its
        /// own catch (an item's `Drop` is user code); returns the first
        /// panic. Every item is dropped even if some panic.
        ///
        /// # Safety
        /// No index of `range` was taken or dropped before.
        unsafe fn drop_range(&self, range: Range<usize>) -> Option<Box<dyn std::any::Any + Send>> {
            let _ = range;
            None
        }
    }
}

use source::Source;

/// A collection or iterator that the blocking map family
/// ([`ThreadPool::map`](crate::ThreadPool::map), `starmap`, `try_map`,
/// `map_async`) can split among workers.
///
/// Implemented for:
/// - borrowed slices, `&Vec<T>`, `&[T; N]` and `&VecDeque<T>` (items are
///   `&T`), and `&mut [T]`/`&mut Vec<T>` (items are `&mut T`): zero-copy
///   fast path;
/// - `Vec<T>`, `Box<[T]>` and `[T; N]` (items are moved out): zero-copy;
/// - integer `Range` and `RangeInclusive`: computed, nothing stored;
/// - the other collections of `std`, borrowed or owned (`&HashMap`,
///   `&HashSet`, `&BTreeMap`, `&BTreeSet`, `&mut HashMap`, `VecDeque`,
///   `HashMap`, …), and the common iterator types of `std` (`Map`, `Filter`,
///   `Enumerate`, `Zip`, `Chain`, `chunks_mut`, `Lines`, map and set
///   iterators, `Box<dyn Iterator>`, …), which are collected into a `Vec`
///   first;
/// - any other iterator, such as an `impl Iterator` returned by a function,
///   through [`parpool::iter`](crate::iter).
///
/// For lazy, bounded-memory processing of long or endless iterators, use
/// [`ThreadPool::imap`](crate::ThreadPool::imap) instead.
///
/// An opaque `impl Iterator` is not one of the listed types:
///
/// ```compile_fail,E0277
/// fn evens() -> impl Iterator<Item = u32> {
///     (0..10).filter(|x| x % 2 == 0)
/// }
/// let pool = parpool::ThreadPool::new();
/// // error[E0277]: `impl Iterator<Item = u32>` is not an input parpool's
/// // blocking maps can split ... wrap any iterator in `parpool::iter(..)`
/// pool.map(|x| x + 1, evens());
/// ```
///
/// [`parpool::iter`](crate::iter) takes any iterator:
///
/// ```
/// fn evens() -> impl Iterator<Item = u32> {
///     (0..10).filter(|x| x % 2 == 0)
/// }
/// let pool = parpool::ThreadPool::new();
/// assert_eq!(pool.map(|x| x + 1, parpool::iter(evens())), [1, 3, 5, 7, 9]);
/// ```
///
/// # Examples
///
/// ```
/// use parpool::ThreadPool;
///
/// let pool = ThreadPool::new();
/// let words = vec!["a", "bb", "ccc"];
/// assert_eq!(pool.map(|w| w.len(), &words), [1, 2, 3]);          // slice fast path
/// assert_eq!(pool.map(|i| i * i, 0..4u64), [0, 1, 4, 9]);         // range fast path
/// assert_eq!(pool.map(|w| w.len(), words.iter().rev()), [3, 2, 1]); // collected first
/// let mut counts = vec![1, 2, 3];
/// pool.map(|c| *c *= 10, &mut counts);                            // in place
/// assert_eq!(counts, [10, 20, 30]);
///
/// let mut buf = vec![0u8; 10];
/// pool.map(|chunk| chunk.fill(7), buf.chunks_mut(4));              // chunks_mut
/// assert_eq!(buf, [7; 10]);
/// let ages = std::collections::HashMap::from([("ann", 31), ("bob", 27)]);
/// let mut older = pool.map(|(_, age)| age + 1, &ages);             // &HashMap
/// older.sort();
/// assert_eq!(older, [28, 32]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an input parpool's blocking maps can split",
    label = "not a slice, Vec, array, integer range, std collection or common std iterator",
    note = "wrap any iterator in `parpool::iter(..)` to have it collected first: \
            `pool.map(f, parpool::iter(my_iter))`",
    note = "to process a long or endless iterator lazily, use `pool.imap(f, my_iter)`; \
            to borrow data that the call may not keep, use `pool.scope(|s| ..)`"
)]
pub trait Inputs {
    /// The type handed to the mapped function.
    type Item;
    #[doc(hidden)]
    type Source: Source<Item = Self::Item>;
    #[doc(hidden)]
    fn into_source(self) -> Self::Source;
}

/// Borrowed items: `&T` by index.
#[doc(hidden)]
pub struct SliceSource<'a, T>(&'a [T]);

// SAFETY: taking `&T` by index only reads; `&[T]` is Sync when T is.
unsafe impl<'a, T: Sync> Source for SliceSource<'a, T> {
    type Item = &'a T;
    fn len(&self) -> usize {
        self.0.len()
    }
    unsafe fn take(&self, i: usize) -> &'a T {
        // SAFETY: the caller passes i < len().
        unsafe { self.0.get_unchecked(i) }
    }
}

impl<'a, T: Sync> Inputs for &'a [T] {
    type Item = &'a T;
    type Source = SliceSource<'a, T>;
    fn into_source(self) -> Self::Source {
        SliceSource(self)
    }
}

impl<'a, T: Sync> Inputs for &'a Vec<T> {
    type Item = &'a T;
    type Source = SliceSource<'a, T>;
    fn into_source(self) -> Self::Source {
        SliceSource(self.as_slice())
    }
}

impl<'a, T: Sync, const N: usize> Inputs for &'a [T; N] {
    type Item = &'a T;
    type Source = SliceSource<'a, T>;
    fn into_source(self) -> Self::Source {
        SliceSource(self.as_slice())
    }
}

impl<'a, T: Sync> Inputs for std::slice::Iter<'a, T> {
    type Item = &'a T;
    type Source = SliceSource<'a, T>;
    fn into_source(self) -> Self::Source {
        SliceSource(self.as_slice())
    }
}

/// Borrowed items of a `VecDeque`: its two slices, `&T` by index.
#[doc(hidden)]
pub struct DequeSource<'a, T>(&'a [T], &'a [T]);

// SAFETY: taking `&T` by index only reads; `&[T]` is Sync when T is.
unsafe impl<'a, T: Sync> Source for DequeSource<'a, T> {
    type Item = &'a T;
    fn len(&self) -> usize {
        self.0.len() + self.1.len()
    }
    unsafe fn take(&self, i: usize) -> &'a T {
        match i.checked_sub(self.0.len()) {
            None => &self.0[i],
            Some(j) => &self.1[j],
        }
    }
}

impl<'a, T: Sync> Inputs for &'a std::collections::VecDeque<T> {
    type Item = &'a T;
    type Source = DequeSource<'a, T>;
    fn into_source(self) -> Self::Source {
        let (front, back) = self.as_slices();
        DequeSource(front, back)
    }
}

/// Mutably borrowed items: `&mut T` by index, each index handed out once.
#[doc(hidden)]
pub struct SliceMutSource<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: distinct indices give disjoint `&mut T`; sending `&mut T` to another
// thread needs `T: Send`.
unsafe impl<T: Send> Sync for SliceMutSource<'_, T> {}

// SAFETY: each index is taken at most once (trait contract), so the `&mut T`
// handed out never alias.
unsafe impl<'a, T: Send> Source for SliceMutSource<'a, T> {
    type Item = &'a mut T;
    fn len(&self) -> usize {
        self.len
    }
    unsafe fn take(&self, i: usize) -> &'a mut T {
        // SAFETY: i < len, taken once, and the slice is mutably borrowed for 'a.
        unsafe { &mut *self.ptr.add(i) }
    }
}

impl<'a, T: Send> Inputs for &'a mut [T] {
    type Item = &'a mut T;
    type Source = SliceMutSource<'a, T>;
    fn into_source(self) -> Self::Source {
        SliceMutSource {
            ptr: self.as_mut_ptr(),
            len: self.len(),
            _borrow: std::marker::PhantomData,
        }
    }
}

impl<'a, T: Send> Inputs for &'a mut Vec<T> {
    type Item = &'a mut T;
    type Source = SliceMutSource<'a, T>;
    fn into_source(self) -> Self::Source {
        self.as_mut_slice().into_source()
    }
}

/// Owned items, moved out of a vector's buffer by index.
#[doc(hidden)]
pub struct VecSource<T> {
    ptr: *mut T,
    len: usize,
    cap: usize,
}

impl<T> VecSource<T> {
    pub(crate) fn new(v: Vec<T>) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        VecSource {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }
}

// SAFETY: items are moved to other threads (`T: Send`); distinct indices
// touch distinct elements.
unsafe impl<T: Send> Sync for VecSource<T> {}
// SAFETY: as above; the buffer is owned.
unsafe impl<T: Send> Send for VecSource<T> {}

// SAFETY: each element is read (moved out) or dropped at most once, per the
// trait contract.
unsafe impl<T: Send> Source for VecSource<T> {
    type Item = T;
    fn len(&self) -> usize {
        self.len
    }
    unsafe fn take(&self, i: usize) -> T {
        // SAFETY: i < len and not taken before: the element is initialized
        // and ownership moves to the caller.
        unsafe { self.ptr.add(i).read() }
    }
    unsafe fn drop_range(&self, range: Range<usize>) -> Option<Box<dyn std::any::Any + Send>> {
        if !std::mem::needs_drop::<T>() {
            return None;
        }
        // SAFETY: the caller promises these elements were neither taken nor
        // dropped, so each is initialized and owned here; each is moved out
        // once and dropped (contained) by `drop_all_contained`.
        crate::panic::drop_all_contained(range.map(|i| unsafe { self.ptr.add(i).read() }))
            .map(crate::panic::Payload::into_inner)
    }
}

impl<T> Drop for VecSource<T> {
    fn drop(&mut self) {
        // SAFETY: rebuilds the original allocation with length 0: every
        // element was taken or dropped by the engine, so only the buffer is
        // freed here.
        unsafe { drop(Vec::from_raw_parts(self.ptr, 0, self.cap)) }
    }
}

impl<T: Send> Inputs for Vec<T> {
    type Item = T;
    type Source = VecSource<T>;
    fn into_source(self) -> Self::Source {
        VecSource::new(self)
    }
}

impl<T: Send> Inputs for Box<[T]> {
    type Item = T;
    type Source = VecSource<T>;
    fn into_source(self) -> Self::Source {
        VecSource::new(self.into_vec())
    }
}

impl<T: Send, const N: usize> Inputs for [T; N] {
    type Item = T;
    type Source = VecSource<T>;
    fn into_source(self) -> Self::Source {
        VecSource::new(Vec::from(self))
    }
}

/// An integer range: item `i` is `start + i`, computed on demand.
#[doc(hidden)]
pub struct RangeSource<T> {
    start: T,
    len: usize,
}

/// The integer types whose ranges the blocking maps split without storing.
///
/// Sealed: implemented for every primitive integer type up to 64 bits.
///
/// ```
/// let pool = parpool::ThreadPool::new();
/// // Item `i` of the range is computed on the thread that runs it.
/// assert_eq!(pool.map(|x: i16| x * 2, -2..=2i16), [-4, -2, 0, 2, 4]);
/// ```
pub trait RangeInt: Copy + PartialOrd + Send + Sync + private::Sealed {
    #[doc(hidden)]
    fn to_i128(self) -> i128;
    #[doc(hidden)]
    fn from_i128(v: i128) -> Self;
}

mod private {
    pub trait Sealed {}
}

macro_rules! range_ints {
    ($($t:ty),*) => {$(
        impl private::Sealed for $t {}
        impl RangeInt for $t {
            fn to_i128(self) -> i128 {
                self as i128
            }
            fn from_i128(v: i128) -> Self {
                v as $t
            }
        }
    )*};
}

range_ints!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

// SAFETY: items are computed from `start`; nothing is shared mutably.
unsafe impl<T: RangeInt> Source for RangeSource<T> {
    type Item = T;
    fn len(&self) -> usize {
        self.len
    }
    unsafe fn take(&self, i: usize) -> T {
        // In range by construction: i < len = end - start.
        T::from_i128(self.start.to_i128() + i as i128)
    }
}

fn range_len(len: i128) -> usize {
    usize::try_from(len.max(0)).expect("parpool: range too long for a blocking map; use imap")
}

impl<T: RangeInt> Inputs for Range<T> {
    type Item = T;
    type Source = RangeSource<T>;
    fn into_source(self) -> Self::Source {
        let len = range_len(self.end.to_i128() - self.start.to_i128());
        RangeSource {
            start: self.start,
            len,
        }
    }
}

impl<T: RangeInt> Inputs for std::ops::RangeInclusive<T> {
    type Item = T;
    type Source = RangeSource<T>;
    fn into_source(self) -> Self::Source {
        // Subtle: a range iterated to exhaustion keeps its bounds
        // (`into_inner` is unspecified then, `5..=5` stays `5..=5`); only
        // `is_empty` says it yields nothing.
        let exhausted = self.is_empty();
        let (start, end) = self.into_inner();
        let len = if exhausted {
            0
        } else {
            range_len(end.to_i128() - start.to_i128() + 1)
        };
        RangeSource { start, len }
    }
}

/// Wraps any iterator so the blocking map family accepts it; the items are
/// collected into a `Vec` on the calling thread first.
///
/// # Examples
///
/// ```
/// use parpool::ThreadPool;
///
/// let pool = ThreadPool::new();
/// let mut n = 0;
/// let counter = std::iter::from_fn(move || { n += 1; (n <= 3).then_some(n) });
/// assert_eq!(pool.map(|x| x * 10, parpool::iter(counter)), [10, 20, 30]);
/// ```
pub fn iter<I: IntoIterator>(iter: I) -> Iter<I::IntoIter> {
    Iter(iter.into_iter())
}

/// An iterator accepted by the blocking map family; made by [`iter`].
///
/// ```
/// let pool = parpool::ThreadPool::new();
/// let it: parpool::Iter<_> = parpool::iter("a b".split(' '));
/// assert_eq!(pool.map(str::len, it), [1, 1]);
/// ```
#[derive(Debug, Clone)]
pub struct Iter<I>(I);

impl<I: Iterator> Inputs for Iter<I>
where
    I::Item: Send,
{
    type Item = I::Item;
    type Source = VecSource<I::Item>;
    fn into_source(self) -> Self::Source {
        VecSource::new(self.0.collect())
    }
}

/// Collections (borrowed or owned) and iterators that are not split in
/// place: collected into a `Vec` of their items first.
macro_rules! via_into_iter {
    ($( [$($g:tt)*] $ty:ty; )*) => {$(
        impl<$($g)*> Inputs for $ty
        where
            $ty: IntoIterator,
            <$ty as IntoIterator>::Item: Send,
        {
            type Item = <$ty as IntoIterator>::Item;
            type Source = VecSource<Self::Item>;
            fn into_source(self) -> Self::Source {
                VecSource::new(self.into_iter().collect())
            }
        }
    )*};
}

use std::collections::{
    btree_map, btree_set, hash_map, hash_set, vec_deque, BTreeMap, BTreeSet, BinaryHeap, HashMap,
    HashSet, LinkedList, VecDeque,
};
use std::iter as it;

via_into_iter! {
    ['a, K, V, S] &'a HashMap<K, V, S>;
    ['a, K, V, S] &'a mut HashMap<K, V, S>;
    [K, V, S] HashMap<K, V, S>;
    ['a, T, S] &'a HashSet<T, S>;
    [T, S] HashSet<T, S>;
    ['a, K, V] &'a BTreeMap<K, V>;
    ['a, K, V] &'a mut BTreeMap<K, V>;
    [K, V] BTreeMap<K, V>;
    ['a, T] &'a BTreeSet<T>;
    [T] BTreeSet<T>;
    ['a, T] &'a mut VecDeque<T>;
    [T] VecDeque<T>;
    ['a, T] &'a BinaryHeap<T>;
    [T] BinaryHeap<T>;
    ['a, T] &'a LinkedList<T>;
    ['a, T] &'a mut LinkedList<T>;
    [T] LinkedList<T>;
}

via_into_iter! {
    [T] std::vec::IntoIter<T>;
    [I, F] it::Map<I, F>;
    [I, P] it::Filter<I, P>;
    [I, F] it::FilterMap<I, F>;
    [I] it::Enumerate<I>;
    [A, B] it::Zip<A, B>;
    [A, B] it::Chain<A, B>;
    [I] it::Take<I>;
    [I] it::Skip<I>;
    [I] it::StepBy<I>;
    [I] it::Cloned<I>;
    [I] it::Copied<I>;
    [I] it::Rev<I>;
    [I, P] it::TakeWhile<I, P>;
    [I, P] it::SkipWhile<I, P>;
    [I] it::Fuse<I>;
    [I, F] it::Inspect<I, F>;
    [T] it::Once<T>;
    [T] it::Empty<T>;
    [F] it::FromFn<F>;
    [T, F] it::Successors<T, F>;
    [I: Iterator] it::Peekable<I>;
    [I: Iterator<Item = U>, U: IntoIterator] it::Flatten<I>;
    [I, U: IntoIterator, F] it::FlatMap<I, U, F>;
    [I, St, F] it::Scan<I, St, F>;
    [I, P] it::MapWhile<I, P>;
    ['a, T] Box<dyn Iterator<Item = T> + 'a>;
    ['a, T] Box<dyn Iterator<Item = T> + Send + 'a>;
    [T] std::option::IntoIter<T>;
    ['a, T] std::slice::IterMut<'a, T>;
    ['a, T] std::slice::Chunks<'a, T>;
    ['a, T] std::slice::ChunksMut<'a, T>;
    ['a, T] std::slice::ChunksExact<'a, T>;
    ['a, T] std::slice::ChunksExactMut<'a, T>;
    ['a, T] std::slice::RChunks<'a, T>;
    ['a, T] std::slice::RChunksMut<'a, T>;
    ['a, T] std::slice::Windows<'a, T>;
    ['a, T] std::vec::Drain<'a, T>;
    ['a, 'b] std::str::Split<'a, &'b str>;
    ['a] std::str::Split<'a, char>;
    ['a] std::str::SplitAsciiWhitespace<'a>;
    [] std::env::Args;
    [R] std::io::Bytes<R>;
    [T] std::sync::mpsc::IntoIter<T>;
    ['a] std::str::Chars<'a>;
    ['a] std::str::CharIndices<'a>;
    ['a] std::str::Bytes<'a>;
    ['a] std::str::Lines<'a>;
    ['a] std::str::SplitWhitespace<'a>;
    [B] std::io::Lines<B>;
    [] std::fs::ReadDir;
    ['a, K, V] hash_map::Iter<'a, K, V>;
    ['a, K, V] hash_map::Keys<'a, K, V>;
    ['a, K, V] hash_map::Values<'a, K, V>;
    ['a, K, V] hash_map::IterMut<'a, K, V>;
    ['a, K, V] hash_map::ValuesMut<'a, K, V>;
    ['a, K, V] hash_map::Drain<'a, K, V>;
    [K, V] hash_map::IntoIter<K, V>;
    [K, V] hash_map::IntoKeys<K, V>;
    [K, V] hash_map::IntoValues<K, V>;
    ['a, T] hash_set::Iter<'a, T>;
    [T] hash_set::IntoIter<T>;
    ['a, K, V] btree_map::Iter<'a, K, V>;
    ['a, K, V] btree_map::Keys<'a, K, V>;
    ['a, K, V] btree_map::Values<'a, K, V>;
    ['a, K, V] btree_map::IterMut<'a, K, V>;
    ['a, K, V] btree_map::ValuesMut<'a, K, V>;
    ['a, K, V] btree_map::Range<'a, K, V>;
    [K, V] btree_map::IntoIter<K, V>;
    [K, V] btree_map::IntoKeys<K, V>;
    [K, V] btree_map::IntoValues<K, V>;
    ['a, T] btree_set::Iter<'a, T>;
    [T] btree_set::IntoIter<T>;
    ['a, T] vec_deque::Iter<'a, T>;
    ['a, T] vec_deque::IterMut<'a, T>;
    ['a, T] vec_deque::Drain<'a, T>;
    [T] vec_deque::IntoIter<T>;
    ['a, T] hash_set::Drain<'a, T>;
    ['a, T] btree_set::Range<'a, T>;
}

#[cfg(test)]
mod tests {
    use super::source::Source;
    use super::*;
    use std::sync::Arc;

    fn all<S: Source>(s: &S) -> Vec<S::Item> {
        // SAFETY: each index below len() is taken once.
        (0..s.len()).map(|i| unsafe { s.take(i) }).collect()
    }

    #[test]
    fn range_fast_path_at_the_edges_of_each_type() {
        assert_eq!(all(&(i8::MIN..=i8::MAX).into_source()).len(), 256);
        assert_eq!(
            all(&(250u8..=255).into_source()),
            [250, 251, 252, 253, 254, 255]
        );
        assert_eq!(all(&(-3i64..2).into_source()), [-3, -2, -1, 0, 1]);
        assert_eq!(
            all(&(u64::MAX - 2..u64::MAX).into_source()),
            [u64::MAX - 2, u64::MAX - 1]
        );
        assert_eq!((5u32..5).into_source().len(), 0);
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 9i32..3;
        assert_eq!(reversed.into_source().len(), 0);
        assert_eq!((7usize..=7).into_source().len(), 1);
    }

    #[test]
    fn slice_fast_path_hands_out_references_in_place() {
        let v = vec![10, 20, 30];
        let items = all(&v.as_slice().into_source());
        assert!(items.iter().zip(&v).all(|(a, b)| std::ptr::eq(*a, b)));
    }

    #[test]
    fn owned_items_are_taken_or_dropped_exactly_once() {
        let token = Arc::new(());
        let src = vec![Arc::clone(&token); 10].into_source();
        // SAFETY: indices 0..3 taken once, 3..10 dropped once.
        let taken: Vec<_> = (0..3).map(|i| unsafe { src.take(i) }).collect();
        assert!(unsafe { src.drop_range(3..10) }.is_none());
        assert_eq!(Arc::strong_count(&token), 4);
        drop(src); // frees the buffer, drops nothing more
        assert_eq!(Arc::strong_count(&token), 4);
        drop(taken);
        assert_eq!(Arc::strong_count(&token), 1);
    }

    #[test]
    fn a_panicking_drop_neither_stops_nor_repeats_the_others() {
        static DROPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        struct Bomb(bool);
        impl Drop for Bomb {
            fn drop(&mut self) {
                DROPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if self.0 {
                    panic!("bomb");
                }
            }
        }
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let src = (0..6)
            .map(|i| Bomb(i % 2 == 0))
            .collect::<Vec<_>>()
            .into_source();
        // SAFETY: 0..6 dropped once, nothing taken.
        let first = unsafe { src.drop_range(0..6) };
        std::panic::set_hook(prev);
        assert!(first.is_some(), "the first panic is reported");
        assert_eq!(
            DROPS.load(std::sync::atomic::Ordering::SeqCst),
            6,
            "all six dropped once"
        );
    }
}
