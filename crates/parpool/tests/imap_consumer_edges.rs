//! Edges of the fast imap consumers (`fold` and `batches()`, and the cursor's
//! `take_rest` under them) that `imap_consumers.rs` leaves out: batches after
//! a partial `next()` / timed-out `next_timeout`, zero-sized results,
//! results that borrow in a scope, unordered input panics, and a consumer
//! closure that panics while user `Drop`s are still to run.
//!
//! Sizes are small so Miri can run the in-process tests.
#[path = "common/child.rs"]
mod child;
mod common;

use child::{catch, DropBomb, Tracker};
use common::guard;
use parpool::{TaskError, ThreadPool};
use std::sync::Arc;
use std::time::Duration;

/// A result that counts the live ones (the mapped function captures
/// nothing, so no count is held by the function while credits finish).
struct Counted(usize);

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Counted {
    fn new(i: usize) -> Self {
        LIVE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Counted(i)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `batches()` right after `next()` took part of a chunk moves the rest of
/// that chunk to the front of its buffer (`Cursor::take_rest` with
/// `pos > 0`): every result is handed out once, none dropped or copied twice.
#[test]
fn batches_after_a_partial_chunk_move_each_result_once() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let mut it = pool.imap(Counted::new, 0..23).chunksize(5);
        let (a, b) = (it.next().unwrap(), it.next().unwrap());
        assert_eq!((a.0, b.0), (0, 1));
        let mut batches = it.batches();
        let rest = batches.next().unwrap();
        assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3, 4]);
        let mut ids: Vec<usize> = rest.iter().map(|r| r.0).collect();
        for b in batches.by_ref() {
            assert!(!b.is_empty() && b.len() <= 5);
            ids.extend(b.iter().map(|r| r.0));
        }
        assert_eq!(ids, (2..23).collect::<Vec<_>>());
        assert!(batches.next().is_none(), "stays at the end");
        assert_eq!(LIVE.load(std::sync::atomic::Ordering::SeqCst), 5);
        drop((a, b, rest, batches));
        assert_eq!(
            LIVE.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a result leaked or was dropped twice"
        );
    });
}

/// Same, when the whole chunk was handed out by `next()` (`pos == len`):
/// the batches go on with the next chunk, no empty batch.
#[test]
fn batches_after_a_whole_chunk_was_taken_by_next() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let mut it = pool.imap(|i: u32| i, 0..9).chunksize(3);
        assert_eq!(it.by_ref().take(3).collect::<Vec<_>>(), [0, 1, 2]);
        let batches: Vec<Vec<u32>> = it.batches().collect();
        assert!(batches.iter().all(|b| !b.is_empty()), "{batches:?}");
        assert_eq!(batches.concat(), [3, 4, 5, 6, 7, 8]);
    });
}

/// Zero-sized results through `next`, `batches` (after a partial chunk) and
/// `fold`.
#[test]
fn zero_sized_results_through_every_consumer() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let mut it = pool.imap(|_: u32| (), 0..17).chunksize(4);
        assert_eq!(it.next(), Some(()));
        let n: usize = it.batches().map(|b| b.len()).sum();
        assert_eq!(n, 16);
        assert_eq!(pool.imap(|_: u32| (), 0..17).chunksize(4).count(), 17);
        assert_eq!(pool.imap_unordered(|_: u32| (), 0..17).count(), 17);
        assert_eq!(
            pool.imap_unordered(|_: u32| (), 0..17)
                .chunksize(3)
                .batches()
                .map(|b| b.len())
                .sum::<usize>(),
            17
        );
    });
}

/// A scoped imap whose results borrow from the caller's stack, consumed by
/// batches and by fold.
#[test]
fn scoped_batches_and_fold_of_borrowed_results() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let words: Vec<String> = (0..11).map(|i| format!("w{i}")).collect();
        let (batches, folded) = pool.scope(|s| {
            let mut it = s.imap(|w: &String| w.as_str(), &words).chunksize(3);
            let first = it.next().unwrap();
            let mut all = vec![first];
            for b in it.batches() {
                all.extend(b);
            }
            let folded = s
                .imap_unordered(|w: &String| w.as_str(), &words)
                .chunksize(2)
                .fold(0usize, |n, w| n + w.len());
            (all, folded)
        });
        assert_eq!(
            batches,
            words.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(folded, words.iter().map(String::len).sum::<usize>());
    });
}

/// After `next_timeout` timed out, `fold` and `batches` pick up exactly
/// where it left off.
#[test]
fn fold_and_batches_after_next_timeout_timed_out() {
    guard(60, || {
        let pool = ThreadPool::with_workers(1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let mut it = pool
            .imap(
                move |i: u32| {
                    if i == 0 {
                        let _ = rx.lock().unwrap().recv();
                    }
                    i
                },
                0..10,
            )
            .chunksize(2);
        assert_eq!(
            it.next_timeout(Duration::from_millis(20)),
            Err(TaskError::Timeout)
        );
        tx.send(()).unwrap();
        let batches: Vec<Vec<u32>> = it.batches().collect();
        assert_eq!(batches.concat(), (0..10).collect::<Vec<_>>());
    });
}

/// Unordered: the input iterator panics after some items; the batches hand
/// out every result read before it, then re-raise the input's panic.
#[test]
fn unordered_batches_with_an_input_panic() {
    child::run("unordered_batches_with_an_input_panic", 30, || {
        let pool = ThreadPool::with_workers(2);
        let input = (0..40u32).inspect(|&i| {
            if i == 25 {
                panic!("EXPECTED: input panics at 25");
            }
        });
        let mut seen = Vec::new();
        let err = catch(|| {
            for b in pool
                .imap_unordered(|x: u32| x, input)
                .chunksize(4)
                .batches()
            {
                seen.extend(b);
            }
        });
        assert!(err.unwrap_err().contains("input panics at 25"));
        seen.sort_unstable();
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
    });
}

/// An input iterator whose `Drop` panics.
struct BombIter {
    inner: std::ops::Range<u32>,
    _bomb: DropBomb,
}

impl Iterator for BombIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        self.inner.next()
    }
}

/// The consumer's own closure panics (`for_each` through the `fold`
/// override, or a `for` body) on an imap whose unread input has a `Drop`
/// that panics, and the consumer holds the last reference to the input (every
/// credit reported): the imap is dropped while unwinding, so the input's
/// `Drop` must run contained (found by review; it aborted the process).
#[test]
fn a_panicking_for_each_over_an_input_whose_drop_panics_does_not_abort() {
    child::run(
        "a_panicking_for_each_over_an_input_whose_drop_panics_does_not_abort",
        30,
        || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let input = BombIter {
                inner: 0..1000,
                _bomb: DropBomb("imap input iterator"),
            };
            let err = catch(|| {
                pool.imap(|x: u32| x, input)
                    .chunksize(1)
                    .buffer(2)
                    .for_each(|x| {
                        if x == 1 {
                            // Let every credit out report, so the consumer
                            // holds the last reference to the input.
                            std::thread::sleep(Duration::from_millis(200));
                            panic!("EXPECTED: consumer stops at 1");
                        }
                    })
            });
            assert!(err.unwrap_err().contains("consumer stops at 1"));
            child::assert_pool_healthy(&pool, "after a panicking for_each");
        },
    );
}

/// A result whose `Drop` panics, left in the current chunk when the `fold`
/// closure panics: dropped contained with the iterator, the closure's panic
/// is the one that reaches the caller, and no result is dropped twice.
static FOLD_BOMB: Tracker = Tracker::new();

#[test]
fn a_panicking_fold_with_panicking_result_drops_left_in_the_chunk() {
    child::run(
        "a_panicking_fold_with_panicking_result_drops_left_in_the_chunk",
        30,
        || {
            let t = &FOLD_BOMB;
            let pool = Arc::new(ThreadPool::with_workers(1));
            let err = catch(|| {
                pool.imap(
                    move |i: usize| if i == 7 { t.bomb(i) } else { t.item(i) },
                    0..40,
                )
                .chunksize(10)
                .for_each(|item| {
                    if item.id == 3 {
                        std::mem::forget(item);
                        panic!("EXPECTED: consumer stops at 3");
                    }
                })
            });
            assert!(err.unwrap_err().contains("consumer stops at 3"));
            child::assert_pool_healthy(&pool, "after a panicking fold");
            let drops = t.drops();
            assert!(drops.iter().all(|&d| d <= 1), "dropped twice: {drops:?}");
            assert_eq!(t.live(), 1, "only the forgotten item is live");
        },
    );
}

/// The same for the mapped function: `f` lives with the input (`Source`),
/// and a closure whose captured state panics when dropped must not abort the
/// process when the consumer's closure panics and the consumer holds the
/// last reference.
#[test]
fn a_panicking_for_each_with_a_closure_whose_drop_panics_does_not_abort() {
    child::run(
        "a_panicking_for_each_with_a_closure_whose_drop_panics_does_not_abort",
        30,
        || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let bomb = DropBomb("imap closure");
            let err = catch(|| {
                pool.imap(
                    move |x: u32| {
                        let _ = &bomb;
                        x
                    },
                    0..1000u32,
                )
                .chunksize(1)
                .buffer(2)
                .for_each(|x| {
                    if x == 1 {
                        std::thread::sleep(Duration::from_millis(200));
                        panic!("EXPECTED: consumer stops at 1");
                    }
                })
            });
            assert!(err.unwrap_err().contains("consumer stops at 1"));
            child::assert_pool_healthy(&pool, "after a panicking for_each");
        },
    );
}

/// `batches()` and `fold` of an imap made before `close` and of one made
/// after it (whose credits run on the consumer's thread): every result,
/// in order.
#[test]
fn batches_and_fold_around_close() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let before = pool.imap(|x: u32| x + 1, 0..50).chunksize(4);
        let mut before_unordered = pool.imap_unordered(|x: u32| x + 1, 0..50).chunksize(4);
        assert!(before_unordered.next().is_some());
        pool.close();
        let after = pool.imap(|x: u32| x + 1, 0..50).chunksize(4);
        let want: Vec<u32> = (1..=50).collect();
        assert_eq!(before.batches().collect::<Vec<_>>().concat(), want);
        assert_eq!(after.batches().collect::<Vec<_>>().concat(), want);
        assert_eq!(before_unordered.count(), 49);
        assert_eq!(
            pool.imap_unordered(|x: u32| x + 1, 0..50)
                .fold(0u64, |a, x| a + u64::from(x)),
            want.iter().map(|&x| u64::from(x)).sum::<u64>()
        );
        pool.join();
    });
}

/// A scoped imap whose `for_each` closure panics halfway: the scope waits
/// for the credits still out (they borrow its data), then the consumer's
/// panic reaches the caller; no borrowed result is dropped twice or leaked.
#[test]
fn a_panicking_for_each_on_a_scoped_imap() {
    child::run("a_panicking_for_each_on_a_scoped_imap", 30, || {
        let pool = ThreadPool::with_workers(2);
        let data: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        let token = Arc::new(());
        let err = catch(|| {
            pool.scope(|s| {
                s.imap(|w: &String| (w.as_str(), Arc::clone(&token)), &data)
                    .chunksize(8)
                    .for_each(|(w, _t)| {
                        if w == "77" {
                            panic!("EXPECTED: consumer stops at 77");
                        }
                    })
            })
        });
        assert!(err.unwrap_err().contains("consumer stops at 77"));
        assert_eq!(Arc::strong_count(&token), 1, "a result leaked");
        assert_eq!(pool.imap(|x: u8| x, 0..10).count(), 10);
    });
}
