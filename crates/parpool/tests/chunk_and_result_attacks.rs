//! Attacks on imap's automatic 1 ms chunks (panics in every user hook with
//! tiny items, so chunks grow large; extreme `chunksize`/`buffer`
//! settings), on nesting imap on a one-worker pool, and on `apply_async`
//! results of unusual types (ZST, 4 KB, a `Drop` that panics).
//!
//! Not repeated from `shrink_attacks.rs` / `final_round_attacks.rs`: those
//! use short inputs (chunks stay at one item) or fixed chunks; here the
//! panics sit deep in long inputs of 1 ns items, behind chunks of thousands.
mod common;

use common::kinds::{pool_stream, with_stream, Kind, StreamLike, KINDS};
use common::{counters, guard, panic_message, pick, quiet_panics_containing, Probe};
use parpool::{TaskError, ThreadPool};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const MARK: &str = "chunk-attack";

fn quiet() {
    quiet_panics_containing(MARK);
}

/// Waits (up to 5 s) until every counter is non-zero, then asserts each is
/// exactly 1. Credits still out may hold items for a moment after the
/// consumer is gone.
fn settle_all_once(drops: &[AtomicUsize], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while drops.iter().any(|d| d.load(SeqCst) == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    // A second look after a pause catches late double drops.
    std::thread::sleep(Duration::from_millis(5));
    for (i, d) in drops.iter().enumerate() {
        assert_eq!(d.load(SeqCst), 1, "{what}: item {i} dropped wrong");
    }
}

/// An input item counted in `drops[id]`; its `Drop` panics if `bomb`.
struct Item {
    id: usize,
    bomb: bool,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, SeqCst);
        if self.bomb && !std::thread::panicking() {
            panic!("{MARK}: item-drop-boom {}", self.id);
        }
    }
}

fn items(n: usize, bomb_at: Option<usize>, drops: &Arc<Vec<AtomicUsize>>) -> VecDeque<Item> {
    (0..n)
        .map(|id| Item {
            id,
            bomb: Some(id) == bomb_at,
            drops: Arc::clone(drops),
        })
        .collect()
}

/// An input over owned items whose `next` panics when asked for item
/// `panic_at` (which stays in the deque, dropped with the iterator).
struct PanickyInput {
    rest: VecDeque<Item>,
    panic_at: Option<usize>,
}

impl Iterator for PanickyInput {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        if let (Some(front), Some(at)) = (self.rest.front(), self.panic_at) {
            if front.id == at {
                panic!("{MARK}: next-boom {at}");
            }
        }
        self.rest.pop_front()
    }
}

/// Runs `f` over `input` with `kind`, collecting into `seen` until the end
/// or a panic; returns the panic message, if any. In a scope, a panic the
/// scope re-raises at its end is returned as well (second element).
fn run_kind<I, F>(
    pool: &ThreadPool,
    kind: Kind,
    f: F,
    input: I,
    seen: &mut Vec<usize>,
) -> (Option<String>, Option<String>)
where
    I: Iterator<Item = Item> + Send + 'static,
    F: Fn(Item) -> usize + Send + Sync + 'static,
{
    let mut inner = None;
    let outer = catch_unwind(AssertUnwindSafe(|| match kind {
        Kind::Imap => {
            inner = catch_unwind(AssertUnwindSafe(|| {
                for x in pool.imap(f, input) {
                    seen.push(x);
                }
            }))
            .err();
        }
        Kind::Unordered => {
            inner = catch_unwind(AssertUnwindSafe(|| {
                for x in pool.imap_unordered(f, input) {
                    seen.push(x);
                }
            }))
            .err();
        }
        Kind::ScopeImap => pool.scope(|s| {
            inner = catch_unwind(AssertUnwindSafe(|| {
                for x in s.imap(&f, input) {
                    seen.push(x);
                }
            }))
            .err();
        }),
        Kind::ScopeUnordered => pool.scope(|s| {
            inner = catch_unwind(AssertUnwindSafe(|| {
                for x in s.imap_unordered(&f, input) {
                    seen.push(x);
                }
            }))
            .err();
        }),
    }));
    (
        inner.map(|p| panic_message(&*p)),
        outer.err().map(|p| panic_message(&*p)),
    )
}

fn check_prefix(kind: Kind, seen: &[usize], k: usize, what: &str) {
    match kind {
        Kind::Imap | Kind::ScopeImap => {
            // In order: every result before item k, then the panic.
            assert_eq!(seen.len(), k, "{what}: results before the panic");
            assert!(
                seen.iter().enumerate().all(|(i, &x)| i == x),
                "{what}: out of order"
            );
        }
        Kind::Unordered | Kind::ScopeUnordered => {
            let mut s = seen.to_vec();
            s.sort_unstable();
            let len = s.len();
            s.dedup();
            assert_eq!(s.len(), len, "{what}: a result yielded twice");
            assert!(!s.contains(&k), "{what}: the panicking item yielded");
        }
    }
}

/// Runs `f` over `input` (items counted in `drops`) with `kind`, where
/// something panics at item `k`, and checks what every such run shows: the
/// panic surfaces while reading, a scope does not re-raise it, the results
/// before it are as [`check_prefix`] wants, and every item is dropped
/// exactly once. Returns the panic's message and the results read.
fn panic_surfaces_at<I, F>(
    pool: &ThreadPool,
    kind: Kind,
    f: F,
    input: I,
    k: usize,
    drops: &[AtomicUsize],
    what: &str,
) -> (String, Vec<usize>)
where
    I: Iterator<Item = Item> + Send + 'static,
    F: Fn(Item) -> usize + Send + Sync + 'static,
{
    let mut seen = Vec::new();
    let (inner, outer) = run_kind(pool, kind, f, input, &mut seen);
    let inner = inner.unwrap_or_else(|| panic!("{what}: no panic surfaced"));
    assert_eq!(outer, None, "{what}: the scope re-raised a read panic");
    check_prefix(kind, &seen, k, what);
    settle_all_once(drops, what);
    (inner, seen)
}

/// The input iterator's `next` panics deep into a long input of tiny items
/// (chunks have grown to thousands): the panic surfaces after exactly the
/// items before it (in order for imap; every one of them for
/// imap_unordered, whose docs promise the input panic after every result
/// read before it), and every item, read or not, is dropped exactly once.
#[test]
fn input_next_panic_deep_in_large_automatic_chunks() {
    quiet();
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(120_000, 60);
        let k = pick(100_003, 41);
        for kind in KINDS {
            let what = format!("{kind:?}");
            let drops = counters(n);
            let input = PanickyInput {
                rest: items(n, None, &drops),
                panic_at: Some(k),
            };
            // A few slow items just before the panic, so that an earlier
            // chunk is still running when the panicking read's chunk is in.
            let f = move |it: Item| {
                if it.id + pick(20_000, 10) > k && it.id % pick(1000, 3) == 0 {
                    std::thread::sleep(Duration::from_millis(3));
                }
                it.id
            };
            let (inner, seen) = panic_surfaces_at(&pool, kind, f, input, k, &drops, &what);
            assert!(inner.contains("next-boom"), "{what}: {inner}");
            if !kind.is_ordered() {
                assert_eq!(seen.len(), k, "{what}: results before the input panic");
            }
        }
        assert_eq!(pool.map(|x| x + 1, 0..4u32), [1, 2, 3, 4]);
    });
}

/// An input item's `Drop` panics (inside the mapped function, which
/// consumes it) deep in a long tiny-item input: the panic surfaces at that
/// item for imap, every other item is dropped once, the pool lives on.
#[test]
fn item_drop_panic_deep_in_large_automatic_chunks() {
    quiet();
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(120_000, 60);
        let k = pick(90_001, 33);
        for kind in KINDS {
            let what = format!("{kind:?}");
            let drops = counters(n);
            let input = items(n, Some(k), &drops).into_iter();
            let f = |it: Item| it.id;
            let (inner, _) = panic_surfaces_at(&pool, kind, f, input, k, &drops, &what);
            assert!(inner.contains("item-drop-boom"), "{what}: {inner}");
        }
        assert_eq!(pool.map(|x| x + 1, 0..4u32), [1, 2, 3, 4]);
    });
}

/// The mapped function panics deep in a long tiny-item input, once on
/// its own and once on an item whose neighbours in the same (large) chunk
/// are never mapped: those are dropped once, the panic surfaces in order.
#[test]
fn mapped_function_panic_deep_in_large_automatic_chunks() {
    if cfg!(miri) {
        return; // heavy: many streams and threads
    }
    quiet();
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(150_000, 60);
        for k in [pick(131_071, 29), n - 1] {
            for kind in KINDS {
                let what = format!("{kind:?}/k={k}");
                let drops = counters(n);
                let input = items(n, None, &drops).into_iter();
                let f = move |it: Item| {
                    if it.id == k {
                        panic!("{MARK}: f-boom {k}");
                    }
                    it.id
                };
                let (inner, _) = panic_surfaces_at(&pool, kind, f, input, k, &drops, &what);
                assert_eq!(inner, format!("{MARK}: f-boom {k}"), "{what}");
            }
        }
    });
}

/// A result whose `Drop` panics.
struct Bomb {
    id: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, SeqCst);
        if !std::thread::panicking() {
            panic!("{MARK}: result-drop-boom {}", self.id);
        }
    }
}

/// The consumer reads some results (forgetting each, since their `Drop`
/// panics) and drops the iterator mid-stream while large chunks of
/// results whose `Drop` panics are buffered, in flight and unread: no
/// panic escapes the drop (they are contained), every input is dropped
/// once, every result made is dropped once, nothing hangs, the pool
/// still works. In a scope the same holds and the scope ends cleanly.
#[test]
fn dropping_imap_mid_stream_with_panicking_result_drops() {
    if cfg!(miri) {
        return; // heavy: many streams and threads
    }
    quiet();
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(100_000, 50);
        for (kind, stop_after) in KINDS.iter().flat_map(|&k| [(k, 0), (k, pick(20_000, 10))]) {
            let what = format!("{kind:?}/after {stop_after}");
            let in_drops = counters(n);
            let out_drops = counters(n);
            let made = counters(n);
            let od = Arc::clone(&out_drops);
            let m2 = Arc::clone(&made);
            let f = move |it: Item| {
                m2[it.id].fetch_add(1, SeqCst);
                Bomb {
                    id: it.id,
                    drops: Arc::clone(&od),
                }
            };
            let input = items(n, None, &in_drops).into_iter();
            let read = |it: &mut dyn StreamLike<Bomb>| {
                // Take the first one (waits for the first chunk), then a few.
                for _ in 0..stop_after.max(1) {
                    let b = it.next_item().expect("a result");
                    b.drops[b.id].fetch_add(1, SeqCst);
                    std::mem::forget(b);
                }
            };
            let r = catch_unwind(AssertUnwindSafe(|| {
                with_stream(&pool, kind, f, input, read);
            }));
            if let Err(p) = r {
                panic!("{what}: dropping the imap raised {:?}", panic_message(&*p));
            }
            settle_all_once(&in_drops, &format!("{what}: inputs"));
            // A credit still out when the stream was dropped delivers its
            // results to the dropped stream's mailbox, which drops them
            // when its last reference goes: give them the same grace.
            let deadline = Instant::now() + Duration::from_secs(5);
            while (0..n).any(|i| out_drops[i].load(SeqCst) != made[i].load(SeqCst))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            for i in 0..n {
                assert_eq!(
                    out_drops[i].load(SeqCst),
                    made[i].load(SeqCst),
                    "{what}: result {i} dropped {} times, made {}",
                    out_drops[i].load(SeqCst),
                    made[i].load(SeqCst)
                );
            }
        }
        assert_eq!(pool.map(|x| x * 2, 0..3u32), [0, 2, 4]);
    });
}

/// Dropping an imap mid-stream whose unread input still holds an item
/// whose `Drop` panics: every item dropped once, no hang, no dead worker.
/// The input goes with the last reference to the imap's `Source`, on the
/// consumer or on a worker (a credit still out), depending on timing; its
/// panic goes to the same place either way. In a scope, the scope re-raises
/// it (the next test checks that it always does). Outside one, dropping the
/// stream does not panic, and the pool counts one stray panic. (It used to
/// be re-raised by the stream's drop when the consumer held the last
/// reference, and counted when a worker did.)
#[test]
fn dropping_imap_with_a_bomb_left_in_the_input() {
    quiet();
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        let n = pick(50_000, 40);
        for kind in KINDS {
            let what = format!("{kind:?}");
            let drops = counters(n);
            let input = items(n, Some(n - 1), &drops).into_iter();
            let mut got = 0;
            let strays = pool.stats().panicked;
            let dropped = catch_unwind(AssertUnwindSafe(|| {
                with_stream(
                    &pool,
                    kind,
                    |it: Item| it.id,
                    input,
                    |it| {
                        // Up to three results, as `take(3).count()` would read.
                        got += (0..3).map_while(|_| it.next_item()).count();
                    },
                );
            }));
            let in_scope = kind.in_scope();
            match dropped {
                Err(p) => {
                    let msg = panic_message(&*p);
                    assert!(in_scope, "{what}: dropping the stream panicked: {msg}");
                    assert!(msg.contains("item-drop-boom"), "{what}: {msg}");
                }
                Ok(()) => assert!(!in_scope, "{what}: the scope lost the input's panic"),
            }
            settle_all_once(&drops, &what);
            if !in_scope {
                // Counted right after the item's drop, maybe on a worker.
                let deadline = Instant::now() + Duration::from_secs(5);
                while pool.stats().panicked == strays && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert_eq!(pool.stats().panicked, strays + 1, "{what}: one stray panic");
            }
            // Both workers still take work: two tasks that meet.
            let (tx, rx) = mpsc::channel();
            let (tx2, rx2) = mpsc::channel::<()>();
            let a = pool.apply_async(move || {
                tx.send(()).unwrap();
                rx2.recv_timeout(Duration::from_secs(5)).is_ok()
            });
            let b = pool.apply_async(move || {
                let ok = rx.recv_timeout(Duration::from_secs(5)).is_ok();
                tx2.send(()).unwrap();
                ok
            });
            assert_eq!((a.get(), b.get()), (Ok(true), Ok(true)), "{what}");
            assert!(pool.is_running(), "{what}");
        }
    });
}

/// A scope imap dropped mid-stream whose unread input holds an item whose
/// `Drop` panics: the scope docs promise that a panic of the scope's work
/// that nobody observed re-raises at the scope's end. The input is dropped
/// with the last reference to the imap's shared `Source`: on the consumer,
/// or on a worker if a credit still out holds that reference. Before the
/// fix, the worker's `Source::drop` re-raised it as a stray panic (counted
/// in `stats().panicked`) that never reached the scope: lost in 9–18 of 40
/// rounds. Now the `Source` hands it to its scope on either thread.
#[test]
fn scope_imap_dropped_with_a_bomb_in_the_input_always_raises() {
    quiet();
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(50_000, 40);
        let mut lost = 0;
        let rounds = pick(40, 2);
        for round in 0..rounds {
            let drops = counters(n);
            let input = items(n, Some(n - 1), &drops).into_iter();
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    let it = if round % 2 == 0 {
                        s.imap(|it: Item| it.id, input).take(3).count()
                    } else {
                        s.imap_unordered(|it: Item| it.id, input).take(3).count()
                    };
                    assert_eq!(it, 3);
                });
            }));
            settle_all_once(&drops, &format!("round {round}"));
            match r {
                Err(p) => assert!(panic_message(&*p).contains("item-drop-boom")),
                Ok(()) => lost += 1,
            }
        }
        assert_eq!(
            lost, 0,
            "the input item's Drop panic was lost in {lost} of {rounds} scopes"
        );
    });
}

// ---- extreme settings -------------------------------------------------------

/// `chunksize(usize::MAX)`, `buffer(1)`, `buffer(usize::MAX)` and the
/// defaults, with items of 1 ns and of 2 ms, over empty, one-item and
/// longer inputs: every result once (in order for imap), every input
/// dropped once, no hang.
#[test]
fn extreme_chunksize_and_buffer_settings() {
    if cfg!(miri) {
        return; // heavy: many streams and threads
    }
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let settings: [(Option<usize>, Option<usize>); 6] = [
            (Some(usize::MAX), None),
            (None, Some(1)),
            (None, Some(usize::MAX)),
            (Some(usize::MAX), Some(1)),
            (Some(usize::MAX), Some(usize::MAX)),
            (Some(1), Some(usize::MAX)),
        ];
        for (chunk, buf) in settings {
            for slow in [false, true] {
                // One item at a time (buffer(1)) costs a round trip each.
                let long = if buf == Some(1) { 2_000 } else { 30_000 };
                let lens: &[usize] = if slow {
                    &[0, 1, 8]
                } else {
                    &[0, 1, pick(long, 30)]
                };
                for &n in lens {
                    for ordered in [true, false] {
                        let what =
                            format!("chunk {chunk:?} buf {buf:?} slow {slow} n {n} ord {ordered}");
                        let drops = counters(n);
                        let input = items(n, None, &drops).into_iter();
                        let f = move |it: Item| {
                            if slow {
                                std::thread::sleep(Duration::from_millis(2));
                            }
                            it.id
                        };
                        let mut out: Vec<usize> =
                            pool_stream(&pool, ordered, f, input, chunk, buf).collect();
                        if !ordered {
                            out.sort_unstable();
                        }
                        assert_eq!(out, (0..n).collect::<Vec<_>>(), "{what}");
                        settle_all_once(&drops, &what);
                    }
                }
            }
        }
        // Also through `scope` and `next_timeout`, on an endless input:
        // the read-ahead bound holds with the widest settings.
        let pulled = Arc::new(AtomicUsize::new(0));
        let p2 = Arc::clone(&pulled);
        let got = pool.scope(|s| {
            let mut it = s
                .imap(
                    |x: u64| x,
                    (0u64..).inspect(move |_| {
                        p2.fetch_add(1, SeqCst);
                    }),
                )
                .chunksize(usize::MAX)
                .buffer(usize::MAX);
            let mut v = Vec::new();
            for _ in 0..pick(1000, 5) {
                v.push(it.next_timeout(Duration::from_secs(10)).unwrap().unwrap());
            }
            v
        });
        assert_eq!(got, (0..pick(1000, 5) as u64).collect::<Vec<_>>());
        assert!(pulled.load(SeqCst) <= (1 << 20) + pick(1000, 5));
    });
}

/// `buffer(1)` with `chunksize(usize::MAX)`: one item at a time in flight;
/// the read-ahead stays at most a couple of items over an endless input.
#[test]
fn buffer_one_reads_ahead_at_most_a_little() {
    if cfg!(miri) {
        return; // heavy: many streams and threads
    }
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        for ordered in [true, false] {
            let pulled = Arc::new(AtomicUsize::new(0));
            let p2 = Arc::clone(&pulled);
            let input = (0u64..).inspect(move |_| {
                p2.fetch_add(1, SeqCst);
            });
            let mut it = pool_stream(&pool, ordered, |x| x, input, Some(usize::MAX), Some(1));
            for k in 1..=pick(2000, 10) {
                assert!(it.next().is_some());
                let ahead = pulled.load(SeqCst) - k;
                assert!(
                    ahead <= 2,
                    "ordered {ordered}: buffer(1) read {ahead} ahead"
                );
            }
        }
    });
}

// ---- nesting on a one-worker pool -------------------------------------------

/// On a one-worker pool: an imap consumed inside a task of the same pool
/// (automatic and fixed chunks, tiny and long inputs); `apply_async(..).get()`
/// inside an imap's function; close and terminate from inside an imap's
/// function. Nothing hangs; every result arrives (or terminate ends the
/// stream with `Cancelled`), every input is dropped once.
#[test]
fn imap_nesting_on_a_one_worker_pool() {
    if cfg!(miri) {
        return; // heavy: many streams and threads
    }
    guard(30, || {
        let n = pick(20_000, 20);
        // An imap inside a task of the same pool.
        let pool = Arc::new(ThreadPool::with_workers(1));
        for ordered in [true, false] {
            for chunk in [None, Some(1), Some(usize::MAX)] {
                let p = Arc::clone(&pool);
                let drops = counters(n);
                let d2 = Arc::clone(&drops);
                let mut h = pool.apply_async(move || {
                    let input = items(n, None, &d2).into_iter();
                    let mut v: Vec<usize> =
                        pool_stream(&p, ordered, |it: Item| it.id, input, chunk, None).collect();
                    v.sort_unstable();
                    v
                });
                let got = h
                    .get_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("ordered {ordered} chunk {chunk:?}: {e:?}"));
                assert_eq!(got, (0..n).collect::<Vec<_>>());
                settle_all_once(&drops, "imap in a task");
            }
        }

        // apply_async(..).get() inside an imap's function (and a scope imap).
        let p = Arc::clone(&pool);
        let got: Vec<u64> = pool
            .imap(
                move |x: u64| p.apply_async(move || x * 3).get().unwrap(),
                0..pick(300, 6) as u64,
            )
            .collect();
        assert_eq!(
            got,
            (0..pick(300, 6) as u64).map(|x| x * 3).collect::<Vec<_>>()
        );
        let p = Arc::clone(&pool);
        let mut got: Vec<u64> = pool.scope(|s| {
            s.imap_unordered(
                |x: u64| p.apply_async(move || x + 7).get().unwrap(),
                0..pick(300, 6) as u64,
            )
            .collect()
        });
        got.sort_unstable();
        assert_eq!(got, (7..7 + pick(300, 6) as u64).collect::<Vec<_>>());

        // close from inside an imap's function: the stream still completes.
        for ordered in [true, false] {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let p = Arc::clone(&pool);
            let drops = counters(n);
            let input = items(n, None, &drops).into_iter();
            let f = move |it: Item| {
                if it.id == n / 2 {
                    p.close();
                }
                it.id
            };
            let mut v: Vec<usize> = pool_stream(&pool, ordered, f, input, None, None).collect();
            v.sort_unstable();
            assert_eq!(
                v,
                (0..n).collect::<Vec<_>>(),
                "close inside, ordered {ordered}"
            );
            pool.join();
            settle_all_once(&drops, "close inside imap");
        }

        // terminate from inside an imap's function: the stream ends with
        // Cancelled (or completes), never hangs, drops every input once.
        for ordered in [true, false] {
            for chunk in [None, Some(1)] {
                let what = format!("terminate inside, ordered {ordered} chunk {chunk:?}");
                let pool = Arc::new(ThreadPool::with_workers(1));
                let p = Arc::clone(&pool);
                let drops = counters(n);
                let input = items(n, None, &drops).into_iter();
                let f = move |it: Item| {
                    if it.id == n / 2 {
                        p.terminate();
                    }
                    it.id
                };
                let mut seen = Vec::new();
                let mut err = None;
                {
                    let mut it = pool_stream(&pool, ordered, f, input, chunk, None);
                    loop {
                        match it.next_timeout(Duration::from_secs(10)) {
                            Ok(Some(x)) => seen.push(x),
                            Ok(None) => break,
                            Err(e) => {
                                err = Some(e);
                                break;
                            }
                        }
                    }
                }
                assert!(
                    matches!(err, None | Some(TaskError::Cancelled)),
                    "{what}: {err:?}"
                );
                if err.is_none() {
                    assert_eq!(seen.len(), n, "{what}: ended early without an error");
                }
                if ordered {
                    assert!(
                        seen.iter().enumerate().all(|(i, &x)| i == x),
                        "{what}: out of order"
                    );
                }
                pool.join();
                settle_all_once(&drops, &what);
            }
        }
    });
}

// ---- apply_async result types ----------------------------------------------

/// A result type whose `Drop` panics (counted first).
struct DropBomb(Arc<AtomicUsize>);

impl Drop for DropBomb {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
        if !std::thread::panicking() {
            panic!("{MARK}: async-result-drop-boom");
        }
    }
}

/// Drops a handle whose result's `Drop` panics. By design, an unread
/// handle dropped after completion drops the result on the dropping thread,
/// so its panic re-raises there (as any `Drop`'s); dropped before, the
/// worker drops it, contained. Either way: only that panic, never another.
fn drop_handle(h: parpool::AsyncResult<DropBomb>) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| drop(h))) {
        let msg = panic_message(&*p);
        assert!(msg.contains("async-result-drop-boom"), "{msg}");
    }
}

/// ZST, 4 KB and `Drop`-panicking results, with handles read, dropped
/// before completion, dropped after completion, and with terminate racing:
/// each closure and each result made is dropped exactly once, and the
/// pool lives.
#[test]
fn apply_async_result_types_and_handle_lifetimes() {
    quiet();
    guard(30, || {
        #[derive(Debug, PartialEq)]
        struct Zst;
        for round in 0..pick(40, 2) {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let closures = counters(12);
            let results = Arc::new(AtomicUsize::new(0));
            let made = Arc::new(AtomicUsize::new(0));
            let probe = |id| Probe {
                id,
                drops: Arc::clone(&closures),
            };
            let bomb = |probe: Probe| {
                let results = Arc::clone(&results);
                let made = Arc::clone(&made);
                move || {
                    let _keep = &probe;
                    made.fetch_add(1, SeqCst);
                    DropBomb(results)
                }
            };
            let (open, gate) = mpsc::channel::<()>();
            let gate = Arc::new(std::sync::Mutex::new(gate));

            // ZST: read, dropped before completion (behind a gate), after.
            let pr = probe(0);
            assert_eq!(
                pool.apply_async(move || {
                    let _keep = &pr;
                    Zst
                })
                .get(),
                Ok(Zst)
            );
            let pr = probe(1);
            let g = Arc::clone(&gate);
            drop(pool.apply_async(move || {
                let _keep = &pr;
                let _ = g.lock().unwrap().recv_timeout(Duration::from_secs(5));
                Zst
            }));
            // 4 KB: read, dropped before completion (queued behind the gate).
            let pr = probe(2);
            let big = pool.apply_async(move || {
                let _keep = &pr;
                let mut a = [0u8; 4096];
                a[4095] = 7;
                a[0] = round as u8;
                a
            });
            let pr = probe(3);
            drop(pool.apply_async(move || {
                let _keep = &pr;
                [9u8; 4096]
            }));
            // DropBomb: dropped before completion, read (and forgotten).
            drop_handle(pool.apply_async(bomb(probe(4))));
            let read = pool.apply_async(bomb(probe(5)));
            open.send(()).unwrap();
            let a = big.get().unwrap();
            assert_eq!((a[0], a[4095], a[1]), (round as u8, 7, 0));
            let b = read.get().unwrap();
            let r = catch_unwind(AssertUnwindSafe(|| drop(b)));
            assert!(r.is_err(), "a result's Drop panic on the caller re-raises");
            // DropBomb: dropped after completion, unread.
            let h = pool.apply_async(bomb(probe(6)));
            assert!(h.wait_timeout(Duration::from_secs(5)));
            drop_handle(h);
            let zst_done = pool.apply_async({
                let pr = probe(7);
                move || {
                    let _keep = &pr;
                    Zst
                }
            });
            assert!(zst_done.wait_timeout(Duration::from_secs(5)));
            drop(zst_done);

            // terminate racing: a few of each kind in flight, handles kept
            // (8, 9) or dropped (10, 11).
            let kept_bomb = pool.apply_async(bomb(probe(8)));
            let pr = probe(9);
            let kept_big = pool.apply_async(move || {
                let _keep = &pr;
                [1u8; 4096]
            });
            drop_handle(pool.apply_async(bomb(probe(10))));
            let pr = probe(11);
            drop(pool.apply_async(move || {
                let _keep = &pr;
                Zst
            }));
            if round % 2 == 0 {
                std::thread::yield_now();
            }
            pool.terminate();
            match kept_bomb.get() {
                Ok(b) => {
                    let r = catch_unwind(AssertUnwindSafe(|| drop(b)));
                    assert!(r.is_err());
                }
                Err(e) => assert_eq!(e, TaskError::Cancelled, "round {round}"),
            }
            match kept_big.get() {
                Ok(a) => assert!(a.iter().all(|&x| x == 1)),
                Err(e) => assert_eq!(e, TaskError::Cancelled, "round {round}"),
            }
            pool.join();
            drop(pool);
            for (i, d) in closures.iter().enumerate() {
                assert_eq!(d.load(SeqCst), 1, "round {round}: closure {i}");
            }
            assert_eq!(
                results.load(SeqCst),
                made.load(SeqCst),
                "round {round}: bomb results made vs dropped"
            );
        }
    });
}
