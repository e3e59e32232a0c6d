//! Hostile: panicking input iterators (next at first/middle/last, lying or
//! panicking size_hint, panicking Drop), panicking item and result drops,
//! for every map-like call. Every case runs in a child process under a guard.
#[path = "common/child.rs"]
mod child;
mod common;

use child::catch;
use parpool::{TaskError, ThreadPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hint {
    Honest,
    TooFew,  // (0, Some(0)) while items remain
    TooMany, // (usize::MAX, Some(usize::MAX))
    Panics,
}

struct Evil {
    i: usize,
    n: usize,
    panic_at: Option<usize>,
    hint: Hint,
    drop_panics: bool,
    live: Arc<AtomicUsize>,
}

struct It {
    v: usize,
    live: Arc<AtomicUsize>,
    bomb: bool,
}
impl Drop for It {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        if self.bomb && !std::thread::panicking() {
            panic!("EXPECTED item drop {}", self.v);
        }
    }
}

impl Iterator for Evil {
    type Item = It;
    fn next(&mut self) -> Option<It> {
        if Some(self.i) == self.panic_at {
            self.i += 1;
            panic!("EXPECTED next at {}", self.i - 1);
        }
        if self.i >= self.n {
            return None;
        }
        self.i += 1;
        self.live.fetch_add(1, Ordering::SeqCst);
        Some(It {
            v: self.i - 1,
            live: Arc::clone(&self.live),
            bomb: false,
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.hint {
            Hint::Honest => {
                if self.panic_at.is_some() {
                    (0, None)
                } else {
                    (0, Some(self.n - self.i.min(self.n)))
                }
            }
            Hint::TooFew => (0, Some(0)),
            Hint::TooMany => (usize::MAX, Some(usize::MAX)),
            Hint::Panics => panic!("EXPECTED size_hint"),
        }
    }
}
impl Drop for Evil {
    fn drop(&mut self) {
        if self.drop_panics && !std::thread::panicking() {
            panic!("EXPECTED iterator drop");
        }
    }
}

const N: usize = 200;
fn evil(panic_at: Option<usize>, hint: Hint, drop_panics: bool, live: &Arc<AtomicUsize>) -> Evil {
    Evil {
        i: 0,
        n: N,
        panic_at,
        hint,
        drop_panics,
        live: Arc::clone(live),
    }
}

fn positions() -> [Option<usize>; 4] {
    [Some(0), Some(N / 2), Some(N - 1), Some(N)]
}
fn positions_none() -> [Option<usize>; 5] {
    [Some(0), Some(N / 2), Some(N - 1), Some(N), None]
}

/// imap / imap_unordered: results before the panic point, then the panic;
/// nothing duplicated, nothing leaked.
fn check_imap(ordered: bool, workers: usize, chunk: Option<usize>) {
    for &hint in &[Hint::Honest, Hint::TooMany] {
        for at in positions() {
            for drop_panics in [false, true] {
                let pool = ThreadPool::with_workers(workers);
                let live = Arc::new(AtomicUsize::new(0));
                let input = evil(at, hint, drop_panics, &live);
                let mut got = Vec::new();
                let r = catch(|| {
                    if ordered {
                        let mut it = pool.imap(|x: It| x.v, input);
                        if let Some(c) = chunk {
                            it = it.chunksize(c);
                        }
                        for v in it {
                            got.push(v);
                        }
                    } else {
                        let mut it = pool.imap_unordered(|x: It| x.v, input);
                        if let Some(c) = chunk {
                            it = it.chunksize(c);
                        }
                        for v in it {
                            got.push(v);
                        }
                    }
                });
                let k = at.unwrap();
                let what = format!("ordered={ordered} w={workers} chunk={chunk:?} hint={hint:?} at={at:?} dp={drop_panics}");
                let err = r.expect_err(&format!("{what}: no panic"));
                assert!(err.contains("EXPECTED"), "{what}: {err}");
                if !ordered {
                    got.sort();
                }
                if k < N {
                    assert_eq!(got, (0..k).collect::<Vec<_>>(), "{what}: {err}");
                } else {
                    assert_eq!(got, (0..N).collect::<Vec<_>>(), "{what}: {err}");
                }
                drop(pool);
                assert_eq!(live.load(Ordering::SeqCst), 0, "{what}: leaked items");
            }
        }
    }
}

/// Ordered and unordered, 1 and 3 workers, several chunk sizes.
#[test]
fn imap_input_panics() {
    child::run("imap_input_panics", 120, || {
        let rows = [
            (true, 1, None),
            (true, 1, Some(7)),
            (true, 1, Some(usize::MAX)),
            (true, 3, None),
            (true, 3, Some(1)),
            (true, 3, Some(64)),
            (false, 1, None),
            (false, 3, Some(1)),
            (false, 3, Some(64)),
        ];
        for (ordered, workers, chunk) in rows {
            check_imap(ordered, workers, chunk);
        }
    });
}

/// A lying (0, Some(0)) hint must not cut the stream short.
#[test]
fn imap_size_hint_too_few_loses_nothing() {
    child::run("imap_size_hint_too_few_loses_nothing", 30, || {
        let mut bad = Vec::new();
        for ordered in [true, false] {
            for chunk in [1usize, 5, 64] {
                let pool = ThreadPool::with_workers(2);
                let live = Arc::new(AtomicUsize::new(0));
                let input = evil(None, Hint::TooFew, false, &live);
                let mut got: Vec<usize> = if ordered {
                    pool.imap(|x: It| x.v, input).chunksize(chunk).collect()
                } else {
                    pool.imap_unordered(|x: It| x.v, input)
                        .chunksize(chunk)
                        .collect()
                };
                got.sort();
                if got.len() != N {
                    bad.push(format!(
                        "ordered={ordered} chunk={chunk}: got {} of {N}",
                        got.len()
                    ));
                }
            }
        }
        assert!(bad.is_empty(), "lost results: {bad:#?}");
    });
}

/// A panicking size_hint: imap's docs say "Panics: Not in this call".
#[test]
fn imap_size_hint_panics_not_in_the_call() {
    child::run("imap_size_hint_panics_not_in_the_call", 30, || {
        let pool = ThreadPool::with_workers(2);
        let live = Arc::new(AtomicUsize::new(0));
        let r = catch(|| pool.imap(|x: It| x.v, evil(None, Hint::Panics, false, &live)));
        assert!(r.is_ok(), "pool.imap() itself panicked: {:?}", r.err());
        // The hint counts as unknown; every item still comes out, in order.
        let got: Vec<usize> = r.unwrap().collect();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
        assert_eq!(pool.stats().panicked, 1, "the hint's panic is counted");
    });
}

#[test]
fn imap_unordered_size_hint_panics_not_in_the_call() {
    child::run(
        "imap_unordered_size_hint_panics_not_in_the_call",
        30,
        || {
            let pool = ThreadPool::with_workers(2);
            let live = Arc::new(AtomicUsize::new(0));
            let r =
                catch(|| pool.imap_unordered(|x: It| x.v, evil(None, Hint::Panics, false, &live)));
            assert!(
                r.is_ok(),
                "pool.imap_unordered() itself panicked: {:?}",
                r.err()
            );
            let mut got: Vec<usize> = r.unwrap().collect();
            got.sort_unstable();
            assert_eq!(got, (0..N).collect::<Vec<_>>());
        },
    );
}

/// Panicking size_hint plus panicking Drop: must not abort.
#[test]
fn imap_size_hint_and_drop_panic_no_abort() {
    child::run("imap_size_hint_and_drop_panic_no_abort", 30, || {
        let pool = ThreadPool::with_workers(2);
        let live = Arc::new(AtomicUsize::new(0));
        let mut e = evil(None, Hint::Panics, true, &live);
        e.drop_panics = true;
        let r = catch(|| pool.imap(|x: It| x.v, e).count());
        let _ = r;
    });
}

#[test]
fn scope_imap_size_hint_panics_not_in_the_call() {
    child::run("scope_imap_size_hint_panics_not_in_the_call", 30, || {
        let pool = ThreadPool::with_workers(2);
        let live = Arc::new(AtomicUsize::new(0));
        let mut in_call = None;
        let r = catch(|| {
            pool.scope(|s| {
                let made = catch(|| s.imap(|x: It| x.v, evil(None, Hint::Panics, false, &live)));
                in_call = Some(made.is_ok());
                // Every item still comes out, in order.
                let got: Vec<usize> = made.unwrap().collect();
                assert_eq!(got, (0..N).collect::<Vec<_>>());
            })
        });
        assert_eq!(in_call, Some(true), "scope.imap() panicked in the call");
        // A panic nobody consumed re-raises when the scope ends (as the
        // input's `Drop` panic does), not counted as the pool's stray one.
        let msg = r.expect_err("the scope re-raises the hint's panic");
        assert!(msg.contains("size_hint"), "{msg}");
        assert_eq!(pool.stats().panicked, 0);
    });
}

/// map family via parpool::iter: the input is collected on the caller, so a
/// panic there propagates from map; nothing leaked, pool healthy afterwards.
#[test]
fn blocking_maps_input_panics() {
    child::run("blocking_maps_input_panics", 60, || {
        for hint in [Hint::Honest, Hint::TooFew, Hint::TooMany, Hint::Panics] {
            for at in positions_none() {
                for dp in [false, true] {
                    let pool = ThreadPool::with_workers(1);
                    let live = Arc::new(AtomicUsize::new(0));
                    let what = format!("hint={hint:?} at={at:?} dp={dp}");
                    let r =
                        catch(|| pool.map(|x: It| x.v, parpool::iter(evil(at, hint, dp, &live))));
                    if at.is_none() && hint != Hint::Panics && hint != Hint::TooMany && !dp {
                        assert_eq!(r.as_ref().map(|v| v.len()), Ok(N), "{what}");
                    }
                    let r = catch(|| {
                        pool.try_map(
                            |x: It| Ok::<_, ()>(x.v),
                            parpool::iter(evil(at, hint, dp, &live)),
                        )
                    });
                    if at.is_none() && hint != Hint::Panics && hint != Hint::TooMany && !dp {
                        assert_eq!(
                            r.as_ref().map(|v| v.as_ref().map(|v| v.len())),
                            Ok(Ok(N)),
                            "{what}"
                        );
                    }
                    let r = catch(|| {
                        pool.chunked(3).starmap(
                            |x: It| x.v,
                            parpool::iter(evil(at, hint, dp, &live).map(|x| (x,))),
                        )
                    });
                    let _ = r;
                    assert_eq!(pool.apply(|| 5), 5);
                    drop(pool);
                    assert_eq!(live.load(Ordering::SeqCst), 0, "{what}: leaked");
                }
            }
        }
    });
}

/// map_async / scope.map_async with a panicking input: the handle reports
/// Panicked (collection runs in the task), the call itself never panics.
#[test]
fn map_async_input_panics() {
    child::run("map_async_input_panics", 60, || {
        for hint in [Hint::Honest, Hint::TooFew, Hint::TooMany, Hint::Panics] {
            for at in positions_none() {
                for dp in [false, true] {
                    let pool = ThreadPool::with_workers(1);
                    let live = Arc::new(AtomicUsize::new(0));
                    let what = format!("hint={hint:?} at={at:?} dp={dp}");
                    let h = catch(|| {
                        pool.map_async(|x: It| x.v, parpool::iter(evil(at, hint, dp, &live)))
                    })
                    .unwrap_or_else(|e| panic!("{what}: map_async panicked in the call: {e}"));
                    let r = h.get();
                    let expect_ok =
                        at.is_none() && !dp && hint != Hint::Panics && hint != Hint::TooMany;
                    if expect_ok {
                        assert_eq!(r.map(|v| v.len()), Ok(N), "{what}");
                    } else if hint != Hint::TooMany || at.is_some() {
                        assert!(matches!(r, Err(TaskError::Panicked(_))), "{what}: {r:?}");
                    }
                    let r2 = catch(|| {
                        pool.scope(|s| {
                            let h =
                                s.map_async(|x: It| x.v, parpool::iter(evil(at, hint, dp, &live)));
                            h.get().map(|v| v.len())
                        })
                    });
                    let _ = r2;
                    // Closed pool: inputs dropped at the call, never panics.
                    pool.close();
                    let r3 = catch(|| {
                        pool.map_async(|x: It| x.v, parpool::iter(evil(at, hint, dp, &live)))
                            .get()
                    });
                    match r3 {
                        Ok(Err(TaskError::NotRunning)) => {}
                        other => panic!("{what}: closed map_async gave {other:?}"),
                    }
                    drop(pool);
                    assert_eq!(live.load(Ordering::SeqCst), 0, "{what}: leaked");
                }
            }
        }
    });
}

/// Stream interop with a panicking input.
#[test]
fn into_stream_input_panics() {
    child::run("into_stream_input_panics", 60, || {
        use futures::StreamExt;
        for at in positions() {
            let pool = ThreadPool::with_workers(2);
            let live = Arc::new(AtomicUsize::new(0));
            let s = pool
                .imap(|x: It| x.v, evil(at, Hint::Honest, false, &live))
                .chunksize(1)
                .into_stream();
            let r = catch(|| futures::executor::block_on(s.collect::<Vec<_>>()));
            let k = at.unwrap();
            let _ = k;
            assert!(r.is_err(), "at={at:?}: {r:?}");
            let s = pool
                .imap_unordered(|x: It| x.v, evil(at, Hint::Honest, false, &live))
                .chunksize(1)
                .into_stream();
            let _ = catch(|| futures::executor::block_on(s.collect::<Vec<_>>()));
            drop(pool);
            assert_eq!(live.load(Ordering::SeqCst), 0, "leaked");
        }
    });
}

/// Results whose Drop panics, dropped unread by imap / map failure paths /
/// handle drop / pool drop.
#[derive(Debug)]
struct BombR(usize);
impl Drop for BombR {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("EXPECTED result drop {}", self.0);
        }
    }
}

#[test]
fn result_drop_panics_everywhere() {
    child::run("result_drop_panics_everywhere", 60, || {
        let pool = ThreadPool::with_workers(2);
        // imap dropped with unread results: never panics.
        for c in [1usize, 8] {
            let mut it = pool.imap(|x: usize| BombR(x), 0..100usize).chunksize(c);
            let first = it.next().unwrap();
            std::mem::forget(first);
            std::thread::sleep(Duration::from_millis(20));
            let r = catch(move || drop(it));
            assert!(r.is_ok(), "dropping imap panicked: {r:?}");
            let mut it = pool
                .imap_unordered(|x: usize| BombR(x), 0..100usize)
                .chunksize(c);
            std::mem::forget(it.next().unwrap());
            std::thread::sleep(Duration::from_millis(20));
            let r = catch(move || drop(it));
            assert!(r.is_ok(), "dropping imap_unordered panicked: {r:?}");
        }
        // map with a panicking f: the finished results are dropped contained.
        let r = catch(|| {
            pool.chunked(1).map(
                |x: usize| {
                    if x == 50 {
                        panic!("EXPECTED f")
                    } else {
                        BombR(x)
                    }
                },
                0..100usize,
            )
        });
        assert!(r.unwrap_err().contains("EXPECTED f"));
        // try_map error: earlier results dropped, first panicking drop is re-raised or contained.
        let r = catch(|| {
            pool.chunked(1).try_map(
                |x: usize| if x == 50 { Err(x) } else { Ok(BombR(x)) },
                0..100usize,
            )
        });
        let _ = r;
        // handle dropped after completion, on a thread that is unwinding: must not abort.
        let h = pool.apply_async(|| BombR(1));
        h.wait();
        let r = catch(move || {
            let _h = h;
            panic!("EXPECTED unwinding with a handle");
        });
        assert!(r.is_err());
        // map_async result vec dropped by the handle while unwinding.
        let h = pool.map_async(BombR, 0..10usize);
        h.wait();
        let r = catch(move || {
            let _h = h;
            panic!("EXPECTED unwinding with a map_async handle");
        });
        assert!(r.is_err());
        // imap dropped while unwinding with unread results.
        let it = pool.imap(BombR, 0..10usize).chunksize(1);
        let r = catch(move || {
            let mut it = it;
            std::mem::forget(it.next());
            std::thread::sleep(Duration::from_millis(20));
            panic!("EXPECTED unwinding with an imap");
        });
        assert!(r.is_err());
        // Handle never read, pool dropped: result dropped wherever, no abort.
        let h = pool.apply_async(|| BombR(2));
        std::mem::forget(h.on_success(|_| {}));
        let _h2 = pool.apply_async(|| BombR(3));
        assert_eq!(pool.apply(|| 1), 1);
        pool.close();
        pool.join();
        let r = catch(move || drop(_h2));
        let _ = r;
    });
}

/// Items whose Drop panics, left unused by a failing map.
#[test]
fn item_drop_panics_on_failed_maps() {
    child::run("item_drop_panics_on_failed_maps", 60, || {
        for w in [1usize, 3] {
            let pool = ThreadPool::with_workers(w);
            let live = Arc::new(AtomicUsize::new(0));
            let mk = |n: usize| -> Vec<It> {
                (0..n)
                    .map(|v| {
                        live.fetch_add(1, Ordering::SeqCst);
                        It {
                            v,
                            live: Arc::clone(&live),
                            bomb: true,
                        }
                    })
                    .collect()
            };
            let r = catch(|| {
                pool.chunked(2).map(
                    |x: It| {
                        let v = x.v;
                        std::mem::forget(x);
                        live.fetch_sub(1, Ordering::SeqCst);
                        if v == 3 {
                            panic!("EXPECTED f 3")
                        }
                        v
                    },
                    mk(50),
                )
            });
            assert!(r.unwrap_err().contains("EXPECTED"));
            let r = catch(|| {
                pool.chunked(2).try_map(
                    |x: It| {
                        let v = x.v;
                        std::mem::forget(x);
                        live.fetch_sub(1, Ordering::SeqCst);
                        if v == 3 {
                            Err(v)
                        } else {
                            Ok(v)
                        }
                    },
                    mk(50),
                )
            });
            let _ = r;
            let l2 = Arc::clone(&live);
            let h = pool.chunked(2).map_async(
                move |x: It| {
                    let v = x.v;
                    std::mem::forget(x);
                    l2.fetch_sub(1, Ordering::SeqCst);
                    if v == 3 {
                        panic!("EXPECTED f 3")
                    }
                    v
                },
                mk(50),
            );
            let r = h.get();
            assert!(matches!(r, Err(TaskError::Panicked(_))), "{r:?}");
            // imap over bomb items, dropped early.
            let mut it = pool
                .imap(
                    |x: It| {
                        let v = x.v;
                        std::mem::forget(x);
                        v
                    },
                    mk(50),
                )
                .chunksize(4);
            let _ = it.next();
            let r = catch(move || drop(it));
            assert!(r.is_ok(), "drop(imap) panicked: {r:?}");
            assert_eq!(pool.apply(|| 9), 9);
            drop(pool);
            let _ = live;
        }
    });
}

/// size_hint that panics once 50 items were read. The read loop used to
/// ask it after each chunk (and trusted a "none left"); now only the call
/// asks it, so every item comes out and nothing panics.
struct LateHintPanic(usize);
impl Iterator for LateHintPanic {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 >= 200 {
            return None;
        }
        self.0 += 1;
        Some(self.0 - 1)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.0 >= 50 {
            panic!("EXPECTED late size_hint");
        }
        (0, None)
    }
}

#[test]
fn imap_late_size_hint_panic_is_never_reached() {
    child::run("imap_late_size_hint_panic_is_never_reached", 30, || {
        let mut bad = Vec::new();
        for ordered in [true, false] {
            for chunk in [1usize, 10, 7, 64] {
                for w in [1usize, 2] {
                    let pool = ThreadPool::with_workers(w);
                    let mut got = Vec::new();
                    let r = catch(|| {
                        if ordered {
                            for v in pool.imap(|x: usize| x, LateHintPanic(0)).chunksize(chunk) {
                                got.push(v);
                            }
                        } else {
                            for v in pool
                                .imap_unordered(|x: usize| x, LateHintPanic(0))
                                .chunksize(chunk)
                            {
                                got.push(v);
                            }
                        }
                    });
                    got.sort();
                    // The hint is asked once, in the call (when it does not
                    // panic yet); reading never trusts it, so every item
                    // comes out and nothing panics.
                    if r.is_err() || got != (0..200).collect::<Vec<_>>() {
                        bad.push(format!("ordered={ordered} chunk={chunk} w={w}: got {} items (first missing {:?}), r={r:?}", got.len(), (0..50).find(|i| !got.contains(i))));
                    }
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    });
}

/// An empty input whose `Drop` panics, and whose `size_hint` panics too if
/// asked to.
struct DropBomb {
    hint_panics: bool,
}
impl Iterator for DropBomb {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        None
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.hint_panics {
            panic!("EXPECTED hint")
        }
        (0, Some(0))
    }
}
impl Drop for DropBomb {
    fn drop(&mut self) {
        panic!("EXPECTED drop")
    }
}

/// `pool.imap()` used to panic in the call (size_hint at imap/mod.rs
/// `build`) and drop the iterator during that unwinding, uncontained: a
/// double panic aborted the process. Now the hint's panic is contained,
/// and the drop's is reported at the end of the stream, as it is for an
/// input whose hint is fine (the control).
#[test]
fn imap_hint_panic_then_drop_panic_does_not_abort() {
    child::run("imap_hint_panic_then_drop_panic_does_not_abort", 20, || {
        for hint_panics in [true, false] {
            let pool = ThreadPool::with_workers(1);
            let r = catch(|| pool.imap(|x: u32| x, DropBomb { hint_panics }).count());
            let msg = r.expect_err("the input's Drop panic reaches the consumer");
            assert!(
                msg.contains("EXPECTED drop"),
                "hint_panics={hint_panics}: {msg}"
            );
            // Dropped unstarted: contained, whatever it reports.
            let _ = catch(|| drop(pool.imap(|x: u32| x, DropBomb { hint_panics })));
            assert_eq!(pool.apply(|| 1), 1);
        }
    });
}
