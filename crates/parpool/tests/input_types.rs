//! The inputs people pass to the blocking map family (issue 10): every
//! `std` collection, borrowed and owned, `chunks_mut`, boxed and opaque
//! iterators. Each gives every item exactly once, in the collection's
//! iteration order.
mod common;

use common::guard;
use parpool::ThreadPool;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn chunks_mut_is_split_among_workers() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let mut buf: Vec<u32> = (0..10_000).collect();
        let sums = pool.map(
            |chunk: &mut [u32]| {
                chunk.iter_mut().for_each(|x| *x *= 2);
                chunk.len()
            },
            buf.chunks_mut(4096),
        );
        assert_eq!(sums, [4096, 4096, 10_000 - 8192]);
        assert!(buf.iter().enumerate().all(|(i, &x)| x == 2 * i as u32));
        pool.chunked(1).map(|c| c.fill(1), buf.chunks_exact_mut(3));
        assert_eq!(buf[..9_999].iter().filter(|&&x| x == 1).count(), 9_999);
        pool.map(|c| c.fill(5), buf.rchunks_mut(7));
        assert!(buf.iter().all(|&x| x == 5));
    });
}

#[test]
fn borrowed_maps_and_sets() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let hm: HashMap<u32, String> = (0..100).map(|i| (i, i.to_string())).collect();
        let got = pool.map(|(k, v): (&u32, &String)| (*k, v.len()), &hm);
        assert_eq!(got.len(), 100);
        assert_eq!(sorted(got)[99], (99, 2));

        let hs: HashSet<u32> = (0..100).collect();
        assert_eq!(
            sorted(pool.map(|x: &u32| x * 2, &hs)),
            (0..100).map(|x| x * 2).collect::<Vec<_>>()
        );

        let bm: BTreeMap<u32, u32> = (0..100).map(|i| (i, i * i)).collect();
        // Ordered collections keep their order.
        assert_eq!(
            pool.map(|(_, v)| *v, &bm),
            (0..100).map(|i| i * i).collect::<Vec<_>>()
        );

        let bs: BTreeSet<&str> = ["b", "a", "c"].into_iter().collect();
        assert_eq!(pool.map(|s: &&str| s.to_uppercase(), &bs), ["A", "B", "C"]);

        let mut hm2 = hm.clone();
        pool.map(|(_, v): (&u32, &mut String)| v.push('!'), &mut hm2);
        assert!(hm2.values().all(|v| v.ends_with('!')));
        let mut bm2 = bm.clone();
        pool.map(|(_, v)| *v += 1, &mut bm2);
        assert_eq!(bm2[&3], 10);

        let heap: BinaryHeap<u8> = [3, 1, 2].into_iter().collect();
        assert_eq!(sorted(pool.map(|x: &u8| *x, &heap)), [1, 2, 3]);
        let list: LinkedList<u8> = [1, 2, 3].into_iter().collect();
        assert_eq!(pool.map(|x: &u8| x + 1, &list), [2, 3, 4]);
    });
}

#[test]
fn vec_deque_borrowed_in_place_even_when_wrapped() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let mut dq: VecDeque<u32> = VecDeque::with_capacity(8);
        dq.extend(0..6);
        dq.drain(..4);
        dq.extend(6..12); // wraps around: two slices
        let (front, back) = dq.as_slices();
        assert!(
            !front.is_empty() && !back.is_empty(),
            "test needs a wrapped deque"
        );
        let refs = pool.map(|x: &u32| x as *const u32 as usize, &dq);
        let direct: Vec<usize> = dq.iter().map(|x| x as *const u32 as usize).collect();
        assert_eq!(refs, direct, "items are the deque's own, in order");
        assert_eq!(
            pool.map(|x| x * 10, &dq),
            (4..12).map(|x| x * 10).collect::<Vec<_>>()
        );
        pool.map(|x| *x += 1, &mut dq);
        assert_eq!(pool.map(|x| x, dq.clone()), (5..13).collect::<Vec<_>>());
        assert!(pool.map(|x: &u8| *x, &VecDeque::new()).is_empty());
    });
}

#[test]
fn owned_collections_move_their_items_out() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let hm: HashMap<u8, String> = [(1, "a".to_string()), (2, "b".to_string())].into();
        assert_eq!(
            sorted(pool.map(|(k, v)| format!("{k}{v}"), hm)),
            ["1a", "2b"]
        );
        let hs: HashSet<String> = ["x".to_string()].into();
        assert_eq!(pool.map(|s| s + "!", hs), ["x!"]);
        let bm: BTreeMap<u8, u8> = [(2, 20), (1, 10)].into();
        assert_eq!(pool.map(|(k, v)| k + v, bm), [11, 22]);
        let bs: BTreeSet<u8> = [3, 1].into();
        assert_eq!(pool.map(|x| x, bs), [1, 3]);
        let dq: VecDeque<String> = ["p".to_string(), "q".to_string()].into();
        assert_eq!(pool.map(|s| s.len(), dq), [1, 1]);
    });
}

fn evens(n: u32) -> impl Iterator<Item = u32> {
    (0..n).filter(|x| x % 2 == 0)
}

#[test]
fn boxed_and_opaque_iterators() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let boxed: Box<dyn Iterator<Item = u32>> = Box::new(0..4);
        assert_eq!(pool.map(|x| x + 1, boxed), [1, 2, 3, 4]);
        let boxed: Box<dyn Iterator<Item = u32> + Send> = Box::new(evens(6));
        assert_eq!(pool.map(|x| x + 1, boxed), [1, 3, 5]);
        // An opaque `impl Iterator` goes through `parpool::iter`.
        assert_eq!(pool.map(|x| x * 3, parpool::iter(evens(8))), [0, 6, 12, 18]);
        assert_eq!(pool.map(|x| x, (0..3u8).peekable()), [0, 1, 2]);
        assert_eq!(
            pool.map(|x| x, vec![vec![1], vec![2, 3]].into_iter().flatten()),
            [1, 2, 3]
        );
        assert_eq!(
            pool.map(|s: &str| s.len(), "a,bb,ccc".split(',')),
            [1, 2, 3]
        );
        // map_async takes the owned ones too.
        let h = pool.map_async(|(k, v)| k * v, BTreeMap::from([(2u32, 3u32), (4, 5)]));
        assert_eq!(h.get(), Ok(vec![6, 20]));
    });
}
