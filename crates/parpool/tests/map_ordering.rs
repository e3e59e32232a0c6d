//! Ordered results from the map family on every size and chunksize, and the
//! fast paths (slice, range, owned vec, in-place) against a sequential map.
mod common;

use common::guard;
use parpool::ThreadPool;
use std::sync::Arc;

const SIZES: [usize; 4] = [0, 1, 10, 100_000];

fn chunksizes(n: usize) -> [usize; 4] {
    [1, 2, 7, n + 5]
}

fn f(x: u64) -> u64 {
    x.wrapping_mul(2_654_435_761) ^ (x >> 3)
}

#[test]
fn map_keeps_order_for_every_size_and_chunksize() {
    guard(120, || {
        let pool = ThreadPool::with_workers(3);
        for n in SIZES {
            let input: Vec<u64> = (0..n as u64).collect();
            let expected: Vec<u64> = input.iter().map(|&x| f(x)).collect();
            assert_eq!(pool.map(|&x| f(x), &input), expected, "auto, n={n}");
            for c in chunksizes(n) {
                assert_eq!(
                    pool.chunked(c).map(|&x| f(x), &input),
                    expected,
                    "n={n} c={c}"
                );
            }
        }
    });
}

#[test]
fn imap_keeps_order_for_every_size_and_chunksize() {
    guard(120, || {
        let pool = ThreadPool::with_workers(3);
        for n in SIZES {
            let expected: Vec<u64> = (0..n as u64).map(f).collect();
            let got: Vec<u64> = pool.imap(f, 0..n as u64).collect();
            assert_eq!(got, expected, "auto, n={n}");
            for c in chunksizes(n) {
                let got: Vec<u64> = pool.imap(f, 0..n as u64).chunksize(c).collect();
                assert_eq!(got, expected, "n={n} c={c}");
            }
        }
    });
}

#[test]
fn imap_unordered_returns_the_same_multiset() {
    guard(120, || {
        let pool = ThreadPool::with_workers(3);
        for n in SIZES {
            let mut expected: Vec<u64> = (0..n as u64).map(f).collect();
            expected.sort_unstable();
            for c in [None, Some(1), Some(2), Some(7), Some(n + 5)] {
                let it = pool.imap_unordered(f, 0..n as u64);
                let it = match c {
                    Some(c) => it.chunksize(c),
                    None => it,
                };
                let mut got: Vec<u64> = it.collect();
                got.sort_unstable();
                assert_eq!(got, expected, "n={n} c={c:?}");
            }
        }
    });
}

#[test]
fn starmap_keeps_order_for_every_size_and_chunksize() {
    guard(120, || {
        let pool = ThreadPool::with_workers(3);
        for n in SIZES {
            let pairs: Vec<(u64, u64)> = (0..n as u64).map(|i| (i, i + 1)).collect();
            let expected: Vec<u64> = pairs.iter().map(|&(a, b)| a * b).collect();
            assert_eq!(pool.starmap(|a: &u64, b: &u64| a * b, &pairs), expected);
            for c in chunksizes(n) {
                let got = pool
                    .chunked(c)
                    .starmap(|a: u64, b: u64| a * b, pairs.clone());
                assert_eq!(got, expected, "n={n} c={c}");
            }
        }
    });
}

#[test]
fn starmap_takes_tuples_of_six() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let rows = vec![(1u8, 2u16, 3u32, 4u64, 5i8, 6i16); 5];
        let sums = pool.starmap(
            |a: u8, b: u16, c: u32, d: u64, e: i8, f: i16| {
                a as i64 + b as i64 + c as i64 + d as i64 + e as i64 + f as i64
            },
            rows,
        );
        assert_eq!(sums, vec![21; 5]);
        let h = pool.starmap_async(|a: u8, b: u8| a + b, vec![(1, 2), (3, 4)]);
        assert_eq!(h.get(), Ok(vec![3, 7]));
    });
}

#[test]
fn map_borrows_from_the_callers_stack() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let names = vec![
            String::from("ada"),
            String::from("grace"),
            String::from("barbara"),
        ];
        let suffix = String::from("!");
        let shouted = pool.map(|n| format!("{n}{suffix}"), &names);
        assert_eq!(shouted, ["ada!", "grace!", "barbara!"]);
        // Still usable: nothing was moved.
        assert_eq!(names.len(), 3);
        let total = pool.apply(|| names.iter().map(String::len).sum::<usize>());
        assert_eq!(total, 15);
    });
}

#[test]
fn map_fast_paths_match_sequential() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let n = 50_001u32;
        let seq: Vec<u64> = (0..n).map(|x| x as u64 * 3).collect();
        // range fast path, each integer type family
        assert_eq!(pool.map(|x: u32| x as u64 * 3, 0..n), seq);
        assert_eq!(pool.map(|x: u32| x as u64 * 3, 0..=n - 1), seq);
        assert_eq!(pool.map(|x: i64| x, -5..5i64), (-5..5).collect::<Vec<_>>());
        assert_eq!(
            pool.map(|x: u8| x, 250..=255u8),
            [250, 251, 252, 253, 254, 255]
        );
        let (hi, lo) = (5, 3);
        assert!(
            pool.map(|x: i32| x, hi..lo).is_empty(),
            "a reversed range is empty"
        );
        // slice fast path: &Vec, &[T], &[T; N], slice::Iter
        let v: Vec<u32> = (0..n).collect();
        assert_eq!(pool.map(|&x| x as u64 * 3, &v), seq);
        assert_eq!(pool.map(|&x| x as u64 * 3, &v[..]), seq);
        assert_eq!(pool.map(|&x| x as u64 * 3, v.iter()), seq);
        assert_eq!(pool.map(|&x| x * 2, &[1, 2, 3]), [2, 4, 6]);
        // owned: Vec<T>, [T; N], Box<[T]>
        let strings: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let lens = pool.map(|s: String| s.len(), strings.clone());
        assert_eq!(lens, strings.iter().map(String::len).collect::<Vec<_>>());
        assert_eq!(
            pool.map(|s: String| s, strings.clone().into_boxed_slice()),
            strings
        );
        // in place
        let mut m: Vec<u32> = (0..n).collect();
        pool.map(|x: &mut u32| *x *= 2, &mut m);
        assert!(m.iter().enumerate().all(|(i, &x)| x == 2 * i as u32));
        // collected iterator adapters
        assert_eq!(
            pool.map(|(i, &x)| i as u32 + x, v.iter().enumerate().take(3)),
            [0, 2, 4]
        );
        assert_eq!(pool.map(|l: &str| l.len(), "a\nbb\nccc".lines()), [1, 2, 3]);
        assert_eq!(
            pool.map(|x| x, parpool::iter(std::iter::repeat(7).take(3))),
            [7, 7, 7]
        );
    });
}

#[test]
fn owned_inputs_are_dropped_exactly_once() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let tracker = Arc::new(());
        let items: Vec<Arc<()>> = (0..10_000).map(|_| Arc::clone(&tracker)).collect();
        let out = pool.map(|a: Arc<()>| Arc::strong_count(&a) > 0, items);
        assert!(out.into_iter().all(|b| b));
        assert_eq!(
            Arc::strong_count(&tracker),
            1,
            "every moved input was dropped once"
        );
        // ... also when the map panics part-way
        let items: Vec<Arc<()>> = (0..10_000).map(|_| Arc::clone(&tracker)).collect();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.chunked(16).map(
                |a: Arc<()>| {
                    assert!(Arc::strong_count(&a) > 0);
                    if Arc::as_ptr(&a) == Arc::as_ptr(&tracker) && rand_hit(&a) {
                        panic!("midway");
                    }
                    a
                },
                items,
            )
        }));
        assert!(r.is_err());
        assert_eq!(
            Arc::strong_count(&tracker),
            1,
            "inputs and outputs dropped after a panic"
        );
    });
}

/// Panics on the 5000th call, whichever thread makes it.
fn rand_hit(_: &Arc<()>) -> bool {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    CALLS.fetch_add(1, Ordering::Relaxed) == 5000
}

#[test]
fn map_async_returns_ordered_results() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let h = pool.map_async(f, 0..100_000u64);
        let expected: Vec<u64> = (0..100_000).map(f).collect();
        assert_eq!(h.get().unwrap(), expected);
        let h = pool.chunked(7).map_async(|x: u64| x + 1, vec![1, 2, 3]);
        assert_eq!(h.get(), Ok(vec![2, 3, 4]));
    });
}
