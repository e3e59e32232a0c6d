//! Sixth hostile round: user hooks that panic while an imap's consumer
//! runs credits it took back (`imap/takeback.rs`), and pools with an
//! initializer whose imaps are consumed on their own workers (where the
//! take-back applies). `f` panicking on the first, middle or last item of a
//! taken-back chunk, items and results whose `Drop` panics, an input whose
//! `next()` panics (a `u8` range running past 255, which the take-back
//! accepts), every `PanicPolicy` (`Abort` in a child process), nested
//! imaps, `terminate`/`close`/`cancelled()` inside `f`, initializers that
//! fail for spares, and consumers (`fold`, `batches`, `for_each`) whose own
//! closure panics.
//!
//! Unless said otherwise, the pool's only worker is held, so every credit
//! runs on the consumer's thread.
#[path = "common/child.rs"]
mod child;
mod common;

use child::{catch, Item, Tracker};
use common::{guard, occupy_the_worker};
use parpool::{PanicPolicy, ThreadPool};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const POLICIES: [PanicPolicy; 2] = [PanicPolicy::Propagate, PanicPolicy::Terminate];

fn pool_with(workers: usize, policy: PanicPolicy) -> ThreadPool {
    ThreadPool::builder()
        .workers(workers)
        .on_panic(policy)
        .build()
        .unwrap()
}

thread_local! {
    /// Set by the initializer of the pools below: the thread's number, from 1.
    static INIT: Cell<usize> = const { Cell::new(0) };
}

/// A pool of `workers` whose initializer sets `INIT`; with `spares_fail`,
/// the initializer panics on every thread after the first `workers` (so
/// no spare can ever start).
fn initialized(workers: usize, policy: PanicPolicy, spares_fail: bool) -> Arc<ThreadPool> {
    let started = AtomicUsize::new(0);
    Arc::new(
        ThreadPool::builder()
            .workers(workers)
            .on_panic(policy)
            .initializer(move || {
                let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                if spares_fail && n > workers {
                    panic!("EXPECTED spare initializer fails");
                }
                INIT.with(|i| i.set(n));
            })
            .build()
            .unwrap(),
    )
}

fn init_state() -> usize {
    INIT.with(|i| i.get())
}

/// The pool still works afterwards: a `map` (on the caller if the pool no
/// longer runs), and, if it runs, a task on a worker.
fn assert_usable(pool: &ThreadPool, what: &str) {
    assert_eq!(
        pool.map(|x: u64| x * 2, 0..100u64),
        (0..100).map(|x| x * 2).collect::<Vec<_>>(),
        "{what}: map afterwards"
    );
    if pool.is_running() {
        assert_eq!(pool.apply_async(|| 7).get(), Ok(7), "{what}: a task");
    }
}

/// `calls[i] == 1` for `i <= last`, 0 after (`None`: nothing called).
fn assert_called_up_to(t: &Tracker, last: Option<usize>, what: &str) {
    let calls = t.calls();
    for (i, &c) in calls.iter().enumerate() {
        let want = u32::from(last.is_some_and(|l| i <= l));
        assert_eq!(c, want, "{what}: item {i} mapped {c} times");
    }
    if let Some(l) = last {
        assert!(calls.len() > l, "{what}: item {l} never mapped");
    }
}

// --------------------------------------------- f panics on the consumer --

/// `f` panics on the first, a middle or the last item of a chunk the
/// consumer took back (chunks of 5: items 10, 12, 14 of chunk 10..15),
/// under `Propagate` and `Terminate`, ordered and not: exactly the results
/// before it come out, in order, then that panic (never `Cancelled`); no
/// item after it is mapped; every item is dropped exactly once; one panic
/// counted; the pool stays usable.
#[test]
fn f_panicking_on_the_first_middle_or_last_item_of_a_taken_back_chunk() {
    static T: Tracker = Tracker::new();
    child::hide_expected_panics();
    guard(60, || {
        for policy in POLICIES {
            for ordered in [true, false] {
                for k in [10usize, 12, 14] {
                    let what = format!("{policy:?} ordered={ordered} k={k}");
                    T.reset();
                    let pool = pool_with(1, policy);
                    let (blocker, release) = occupy_the_worker(&pool);
                    let me = thread::current().id();
                    let mut it = common::kinds::pool_stream(
                        &pool,
                        ordered,
                        move |x: Item| {
                            assert_eq!(thread::current().id(), me, "f ran off the consumer");
                            let id = x.seen();
                            if id == k {
                                panic!("EXPECTED f panics at {id}");
                            }
                            id
                        },
                        T.items(30),
                        Some(5),
                        None,
                    );
                    let mut got = Vec::new();
                    let end = catch(|| {
                        for x in it.by_ref() {
                            got.push(x);
                        }
                    });
                    let msg = end.expect_err("the panic must be raised");
                    assert!(
                        msg.contains(&format!("EXPECTED f panics at {k}")),
                        "{what}: {msg}"
                    );
                    assert_eq!(got, (0..k).collect::<Vec<_>>(), "{what}");
                    // Ended: nothing more, no second panic.
                    assert!(catch(|| it.next()).is_ok_and(|x| x.is_none()), "{what}");
                    drop(it);
                    assert_called_up_to(&T, Some(k), &what);
                    release.send(()).unwrap();
                    let _ = blocker.get();
                    assert_eq!(pool.stats().panicked, 1, "{what}");
                    assert_eq!(
                        pool.is_running(),
                        policy == PanicPolicy::Propagate,
                        "{what}"
                    );
                    assert_usable(&pool, &what);
                    pool.close();
                    pool.join();
                    T.assert_all_dropped_once(30, &what);
                }
            }
        }
    });
}

/// The same through `fold` and `batches`: `fold` unwinds with the task's
/// panic after folding exactly the results before it; `batches` yields
/// them in batches, then raises.
#[test]
fn f_panicking_on_a_taken_back_chunk_through_fold_and_batches() {
    child::hide_expected_panics();
    guard(60, || {
        for policy in POLICIES {
            for k in [0u64, 7, 9, 63] {
                let f = move |x: u64| {
                    if x == k {
                        panic!("EXPECTED fold/batches panic at {x}");
                    }
                    x
                };
                let pool = pool_with(1, policy);
                let (blocker, release) = occupy_the_worker(&pool);
                let folded = Mutex::new(Vec::new());
                let end = catch(|| {
                    pool.imap(f, 0..100u64).chunksize(8).fold((), |(), x| {
                        folded.lock().unwrap().push(x);
                    })
                });
                assert!(end.unwrap_err().contains("EXPECTED fold/batches panic"));
                assert_eq!(*folded.lock().unwrap(), (0..k).collect::<Vec<_>>());
                release.send(()).unwrap();
                let _ = blocker.get();
                assert_eq!(pool.stats().panicked, 1);

                let pool = pool_with(1, policy);
                let (blocker, release) = occupy_the_worker(&pool);
                let mut batched = Vec::new();
                let end = catch(|| {
                    for b in pool.imap_unordered(f, 0..100u64).chunksize(8).batches() {
                        batched.extend(b);
                    }
                });
                assert!(end.unwrap_err().contains("EXPECTED fold/batches panic"));
                assert_eq!(batched, (0..k).collect::<Vec<_>>());
                release.send(()).unwrap();
                let _ = blocker.get();
                assert_eq!(pool.stats().panicked, 1);
                assert_usable(&pool, "batches");
            }
        }
    });
}

// ------------------------------------------------ drops that panic --

/// Items whose `Drop` panics in a taken-back chunk: (a) the item `f` takes
/// (it drops at the end of `f`: a task panic at that item); (b) an item
/// the chunk never mapped, after `f` panicked on the one before; (c) an
/// item of the unread input. Each time: the results before the first
/// panic, then that panic; every item dropped exactly once; exactly one
/// panic counted (the others have nowhere to go); the pool usable.
#[test]
fn items_whose_drop_panics_in_a_taken_back_chunk() {
    static T: Tracker = Tracker::new();
    child::hide_expected_panics();
    guard(60, || {
        // (bomb, f panics at, the panic raised, results before it)
        let cases: [(usize, Option<usize>, &str, usize); 4] = [
            (12, None, "EXPECTED: drop of item 12", 12),
            (10, None, "EXPECTED: drop of item 10", 10),
            (13, Some(12), "EXPECTED f panics at 12", 12),
            (25, Some(12), "EXPECTED f panics at 12", 12),
        ];
        for policy in POLICIES {
            for ordered in [true, false] {
                for (bomb, panic_at, raised, before) in cases {
                    let what = format!("{policy:?} ordered={ordered} bomb={bomb}");
                    T.reset();
                    let pool = pool_with(1, policy);
                    let (blocker, release) = occupy_the_worker(&pool);
                    let items: Vec<Item> = (0..30)
                        .map(|i| if i == bomb { T.bomb(i) } else { T.item(i) })
                        .collect();
                    let mut it = common::kinds::pool_stream(
                        &pool,
                        ordered,
                        move |x: Item| {
                            let id = x.seen();
                            if Some(id) == panic_at {
                                panic!("EXPECTED f panics at {id}");
                            }
                            id
                        },
                        items,
                        Some(5),
                        None,
                    );
                    let mut got = Vec::new();
                    let end = catch(|| {
                        for x in it.by_ref() {
                            got.push(x);
                        }
                    });
                    let msg = end.expect_err("a panic must be raised");
                    assert!(msg.contains(raised), "{what}: {msg}");
                    assert_eq!(got, (0..before).collect::<Vec<_>>(), "{what}");
                    drop(it);
                    release.send(()).unwrap();
                    let _ = blocker.get();
                    assert_eq!(pool.stats().panicked, 1, "{what}");
                    assert_usable(&pool, &what);
                    pool.close();
                    pool.join();
                    T.assert_no_call_twice(&what);
                    T.assert_all_dropped_once(30, &what);
                }
            }
        }
    });
}

/// Results whose `Drop` panics, left unread on the consumer when it stops
/// (the stream dropped mid-chunk, `fold`'s closure panicking, a batch
/// dropped and then the stream), on a pool whose policy is `Terminate`:
/// each result is dropped exactly once, and since no task panicked, the
/// pool is neither terminated nor counts a panic.
#[test]
fn results_whose_drop_panics_do_not_terminate_the_pool() {
    struct Res(usize, Arc<Vec<AtomicUsize>>);
    impl Drop for Res {
        fn drop(&mut self) {
            self.1[self.0].fetch_add(1, Ordering::SeqCst);
            if self.0 % 3 == 1 {
                panic!("EXPECTED result drop {}", self.0);
            }
        }
    }
    child::hide_expected_panics();
    guard(60, || {
        for way in 0..3 {
            let pool = pool_with(1, PanicPolicy::Terminate);
            let (blocker, release) = occupy_the_worker(&pool);
            let drops = common::counters(60);
            let d = Arc::clone(&drops);
            let it = pool
                .imap(move |x: usize| Res(x, Arc::clone(&d)), 0..60usize)
                .chunksize(10);
            let handed = Arc::new(AtomicUsize::new(0));
            match way {
                0 => {
                    let mut it = it;
                    let first = it.next().unwrap();
                    assert_eq!(first.0, 0);
                    drop(first);
                    let second = it.next().unwrap();
                    std::mem::forget(second); // handed out: not the stream's
                    handed.store(2, Ordering::SeqCst);
                    assert!(
                        catch(move || drop(it)).is_ok(),
                        "dropping the stream panicked"
                    );
                }
                1 => {
                    let h = Arc::clone(&handed);
                    let end = catch(move || {
                        it.fold((), |(), r| {
                            h.fetch_add(1, Ordering::SeqCst);
                            if r.0 == 14 {
                                std::mem::forget(r);
                                panic!("EXPECTED fold closure");
                            }
                            if r.0 % 3 == 1 {
                                std::mem::forget(r); // its panic is not the test's
                            }
                        })
                    });
                    assert!(end.unwrap_err().contains("EXPECTED fold closure"));
                }
                _ => {
                    let mut batches = it.batches();
                    let b = batches.next().unwrap();
                    assert_eq!(b.len(), 10);
                    for r in b {
                        std::mem::forget(r);
                    }
                    handed.store(10, Ordering::SeqCst);
                    assert!(catch(move || drop(batches)).is_ok());
                }
            }
            release.send(()).unwrap();
            blocker.get().unwrap();
            assert!(
                pool.is_running(),
                "way {way}: a result's drop terminated the pool"
            );
            assert_usable(&pool, "results");
            pool.close();
            pool.join();
            assert_eq!(
                pool.stats().panicked,
                0,
                "way {way}: a result's drop counted"
            );
            let h = handed.load(Ordering::SeqCst);
            let mapped = [10, 20, 10][way];
            for (i, n) in drops.iter().enumerate() {
                let n = n.load(Ordering::SeqCst);
                if i < h {
                    assert!(n <= 1, "way {way}: result {i} dropped {n} times");
                } else if i < mapped {
                    assert_eq!(n, 1, "way {way}: result {i} dropped {n} times");
                } else {
                    assert_eq!(n, 0, "way {way}: result {i} was mapped");
                }
            }
        }
    });
}

// ---------------------------------------------- an input that panics --

/// A `u8` range read past 255 panics in `next()` (debug builds, as tests
/// are); `RangeFrom<u8>` and `Take` of it never wait, so the consumer
/// takes their credits back. The panic comes after every result read
/// before it, at every chunk size (even a credit whose very first `next()`
/// panics), ordered or not, and under `Terminate` it is not a task panic:
/// the pool is not terminated.
#[test]
fn an_input_that_panics_in_a_taken_back_credit() {
    if !cfg!(debug_assertions) {
        return; // the range wraps around instead
    }
    child::hide_expected_panics();
    guard(60, || {
        for policy in POLICIES {
            for ordered in [true, false] {
                for chunk in [None, Some(1), Some(2), Some(5), Some(7)] {
                    for start in [250u8, 255] {
                        let what = format!("{policy:?} {ordered} {chunk:?} {start}");
                        let pool = pool_with(1, policy);
                        let (blocker, release) = occupy_the_worker(&pool);
                        let me = thread::current().id();
                        let f = move |x: u8| {
                            assert_eq!(thread::current().id(), me);
                            u32::from(x) * 2
                        };
                        let mut it = if start == 255 {
                            common::kinds::pool_stream(&pool, ordered, f, 255u8.., chunk, None)
                        } else {
                            common::kinds::pool_stream(
                                &pool,
                                ordered,
                                f,
                                (250u8..).take(100),
                                chunk,
                                None,
                            )
                        };
                        let mut got = Vec::new();
                        let end = catch(|| {
                            for x in it.by_ref() {
                                got.push(x);
                            }
                        });
                        let msg = end.expect_err("the input's panic must be raised");
                        assert!(msg.contains("overflow"), "{what}: {msg}");
                        let want: Vec<u32> = (u32::from(start)..255).map(|x| x * 2).collect();
                        assert_eq!(got, want, "{what}");
                        drop(it);
                        release.send(()).unwrap();
                        blocker.get().unwrap();
                        assert!(
                            pool.is_running(),
                            "{what}: an input panic terminated the pool"
                        );
                        assert_eq!(pool.stats().panicked, 0, "{what}");
                        assert_usable(&pool, &what);
                    }
                }
            }
        }
    });
}

// ------------------------------------------------- PanicPolicy::Abort --

const ABORT_ENV: &str = "PARPOOL_ABORT_CHILD";

/// Runs case `what` of this binary's `test_name` in a child process (with
/// `PARPOOL_ABORT_CHILD=what`), killed after `secs` (plus slack) as hung.
/// Returns whether it died of `SIGABRT`, its stdout and its stderr.
fn run_case_in_child(test_name: &str, what: &str, secs: u64) -> (bool, String, String) {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            test_name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ABORT_ENV, what)
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(secs + 5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {test_name}/{what} hung");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    #[cfg(unix)]
    let aborted = {
        use std::os::unix::process::ExitStatusExt;
        out.status.signal() == Some(6)
    };
    #[cfg(not(unix))]
    let aborted = !out.status.success();
    (
        aborted,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The child's side of the `Abort` test: one case, on a 1-worker pool whose
/// worker is held, so the credits run on this thread.
fn abort_case(what: &str) {
    child::hide_expected_panics();
    let pool = pool_with(1, PanicPolicy::Abort);
    let (_blocker, _release) = occupy_the_worker(&pool);
    match what {
        "f" => {
            let f = |x: u64| {
                if x == 12 {
                    panic!("EXPECTED abort at 12");
                }
                x
            };
            for x in pool.imap(f, 0..30u64).chunksize(5) {
                println!("GOT {x}");
            }
        }
        "drop" => {
            static T: Tracker = Tracker::new();
            let items: Vec<Item> = (0..30)
                .map(|i| if i == 7 { T.bomb(i) } else { T.item(i) })
                .collect();
            for x in pool.imap(|x: Item| x.id, items).chunksize(5) {
                println!("GOT {x}");
            }
        }
        _ => {
            // The input's own panic: raised here, not a task panic.
            let r = catch(|| {
                for x in pool.imap(|x: u8| x, 250u8..).chunksize(2) {
                    println!("GOT {x}");
                }
            });
            assert!(r.unwrap_err().contains("overflow"));
            assert_eq!(pool.imap(|x: u8| x, 0..3u8).count(), 3);
        }
    }
    println!("CHILD SURVIVED");
}

/// Under `Abort`, `f` panicking in a taken-back credit aborts the process
/// with the policy's message, after the chunks before it were handed out;
/// an item whose `Drop` panics there aborts too. The input's own panic is
/// not a task panic: raised, no abort.
#[test]
fn the_abort_policy_on_a_taken_back_credit() {
    const NAME: &str = "the_abort_policy_on_a_taken_back_credit";
    if let Ok(what) = std::env::var(ABORT_ENV) {
        guard(20, move || abort_case(&what));
        return;
    }
    for (what, last, next) in [("f", "GOT 9\n", "GOT 10"), ("drop", "GOT 4\n", "GOT 5")] {
        let (aborted, out, err) = run_case_in_child(NAME, what, 20);
        assert!(aborted, "{what}: no abort\n{out}\n{err}");
        assert!(out.contains(last) && !out.contains(next), "{what}: {out}");
        assert!(!out.contains("CHILD SURVIVED"));
        assert!(err.contains("policy is Abort; aborting"), "{what}: {err}");
    }
    if cfg!(debug_assertions) {
        let (aborted, out, err) = run_case_in_child(NAME, "input", 20);
        assert!(!aborted, "an input panic aborted\n{out}\n{err}");
        assert!(
            out.contains("GOT 254\n") && out.contains("CHILD SURVIVED"),
            "{out}\n{err}"
        );
        assert!(out.contains("1 passed"), "{out}\n{err}");
    }
}

// ------------------------------ pools with an initializer, on a worker --

/// On a pool with an initializer, an imap consumed on the pool's own (only)
/// worker runs every credit there, where the initializer's thread-local
/// state is set: through `next`, `imap_unordered`, `fold` and `batches`.
#[test]
fn f_sees_the_initializers_state_when_taken_back_on_a_worker() {
    guard(60, || {
        for workers in [1usize, 2] {
            let pool = initialized(workers, PanicPolicy::Propagate, false);
            // With two workers, the second is held: the consumer is alone.
            let held = (workers == 2).then(|| occupy_the_worker(&pool));
            let p = Arc::clone(&pool);
            let (sums, on_me, total) = pool
                .apply_async(move || {
                    let me = thread::current().id();
                    assert_ne!(init_state(), 0);
                    let on_me = Arc::new(AtomicUsize::new(0));
                    let total = Arc::new(AtomicUsize::new(0));
                    let (c, t) = (Arc::clone(&on_me), Arc::clone(&total));
                    let f = move |x: u64| {
                        assert_ne!(init_state(), 0, "f ran where the initializer did not");
                        t.fetch_add(1, Ordering::SeqCst);
                        if thread::current().id() == me {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                        x
                    };
                    let n = 20_000u64;
                    let a: Vec<u64> = p.imap(f.clone(), 0..n).collect();
                    assert_eq!(a, (0..n).collect::<Vec<_>>());
                    let b: u64 = p
                        .imap_unordered(f.clone(), (0..n).collect::<Vec<_>>())
                        .sum();
                    let c2 = p.imap(f.clone(), 0..n).fold(0u64, |a, x| a.wrapping_add(x));
                    let d: u64 = p
                        .imap(f, 0..n)
                        .batches()
                        .map(|b| b.iter().sum::<u64>())
                        .sum();
                    let sums = [b, c2, d];
                    (
                        sums,
                        on_me.load(Ordering::SeqCst),
                        total.load(Ordering::SeqCst),
                    )
                })
                .get()
                .unwrap();
            let n = 20_000u64;
            assert_eq!(sums, [n * (n - 1) / 2; 3]);
            assert_eq!(total, 4 * n as usize);
            // Nobody else could run a credit: the consumer took all back.
            assert_eq!(on_me, total, "workers={workers}");
            if let Some((blocker, release)) = held {
                release.send(()).unwrap();
                blocker.get().unwrap();
            }
            assert_usable(&pool, "initializer");
        }
    });
}

/// A one-worker pool whose initializer fails on every later thread (no
/// spare can start), consumed on its worker, with an imap nested in `f`
/// (on the same pool) whose `f` panics: the results before the panic come
/// out in order, then the inner panic, raised through the outer stream
/// (under both policies); nothing runs off an initialized thread; nothing
/// hangs; the pool stays usable.
#[test]
fn nested_imaps_and_panics_on_a_worker_whose_spares_cannot_start() {
    child::hide_expected_panics();
    guard(60, || {
        for policy in POLICIES {
            for ordered in [true, false] {
                let pool = initialized(1, policy, true);
                let p = Arc::clone(&pool);
                let (got, msg) = pool
                    .apply_async(move || {
                        let inner_pool = Arc::clone(&p);
                        let f = move |x: u64| -> u64 {
                            assert_ne!(init_state(), 0, "outer f off the pool");
                            inner_pool
                                .imap(
                                    move |y: u64| {
                                        assert_ne!(init_state(), 0, "inner f off the pool");
                                        if x == 150 && y == 2 {
                                            panic!("EXPECTED inner panic at 150/2");
                                        }
                                        y
                                    },
                                    0..x % 7,
                                )
                                .sum()
                        };
                        let mut got = Vec::new();
                        let end = catch(|| {
                            let mut it =
                                common::kinds::pool_stream(&p, ordered, f, 0..200u64, None, None);
                            for s in it.by_ref() {
                                got.push(s);
                            }
                        });
                        (got, end.err())
                    })
                    .get()
                    .expect("the outer task itself returns");
                let msg = msg.expect("the inner panic must be raised");
                assert!(
                    msg.contains("EXPECTED inner panic at 150/2"),
                    "{policy:?}: {msg}"
                );
                let want: Vec<u64> = (0..150u64).map(|x| (0..x % 7).sum()).collect();
                if ordered {
                    assert_eq!(got, want, "{policy:?}");
                } else {
                    let (mut g, mut w) = (got, want);
                    g.sort_unstable();
                    w.sort_unstable();
                    assert_eq!(g, w, "{policy:?}");
                }
                assert!(pool.stats().panicked >= 1);
                assert_eq!(pool.is_running(), policy == PanicPolicy::Propagate);
                assert_usable(&pool, "spares fail");
                pool.terminate();
                pool.join();
            }
        }
    });
}

/// `terminate()` and `cancelled()` inside `f` of a credit taken back on the
/// worker of a pool with an initializer: `cancelled()` is false before and
/// true right after, the stream ends at once as cancelled with an in-order
/// prefix, no item is mapped twice, and `join` returns.
#[test]
fn terminate_and_cancelled_inside_f_taken_back_on_a_worker() {
    child::hide_expected_panics();
    guard(60, || {
        for ordered in [true, false] {
            for chunk in [Some(1), Some(4), None] {
                let pool = initialized(1, PanicPolicy::Propagate, false);
                let p = Arc::clone(&pool);
                let calls = common::counters(1000);
                let c = Arc::clone(&calls);
                let seen_flags = Arc::new(Mutex::new(Vec::new()));
                let flags = Arc::clone(&seen_flags);
                let start = Instant::now();
                let (got, end) = pool
                    .apply_async(move || {
                        let p2 = Arc::clone(&p);
                        let f = move |x: usize| {
                            c[x].fetch_add(1, Ordering::SeqCst);
                            if x == 10 {
                                let before = parpool::cancelled();
                                p2.terminate();
                                flags.lock().unwrap().push((before, parpool::cancelled()));
                            }
                            x
                        };
                        let mut it =
                            common::kinds::pool_stream(&p, ordered, f, 0..1000usize, chunk, None);
                        let mut got = Vec::new();
                        let end = catch(|| {
                            for x in it.by_ref() {
                                got.push(x);
                            }
                        });
                        (got, end)
                    })
                    .get()
                    .expect("the task that terminated its own pool still returns");
                pool.join();
                assert!(start.elapsed() < Duration::from_secs(3));
                assert_eq!(*seen_flags.lock().unwrap(), [(false, true)]);
                let msg = end.expect_err("a terminated stream raises");
                assert!(msg.contains("ancelled"), "{msg}");
                if chunk == Some(1) {
                    // (Larger chunks check for a stop only every ~10 µs:
                    // results mapped meanwhile still come out.)
                    assert!(got.len() <= 11, "{got:?}");
                }
                if ordered {
                    assert_eq!(got, (0..got.len()).collect::<Vec<_>>());
                }
                assert!(calls.iter().all(|n| n.load(Ordering::SeqCst) <= 1));
                assert_usable(&pool, "terminate inside f");
            }
        }
    });
}

/// `close()` inside `f` of a taken-back credit: the stream goes on to the
/// end with every result once, in order; on a pool with an initializer
/// consumed on its worker, every item still runs where the initializer
/// ran. Then `join` returns.
#[test]
fn close_inside_f_of_a_taken_back_credit() {
    guard(60, || {
        for with_init in [false, true] {
            for ordered in [true, false] {
                let pool = if with_init {
                    initialized(1, PanicPolicy::Propagate, false)
                } else {
                    Arc::new(ThreadPool::with_workers(1))
                };
                let held = (!with_init).then(|| occupy_the_worker(&pool));
                let p = Arc::clone(&pool);
                let run = move || {
                    let p2 = Arc::clone(&p);
                    let f = move |x: u64| {
                        if with_init {
                            assert_ne!(init_state(), 0, "f ran off the pool");
                        }
                        if x == 100 {
                            p2.close();
                        }
                        x
                    };
                    let mut got: Vec<u64> =
                        common::kinds::pool_stream(&p, ordered, f, 0..5000u64, None, None)
                            .collect();
                    if !ordered {
                        got.sort_unstable();
                    }
                    got
                };
                let got = if with_init {
                    pool.apply_async(run).get().unwrap()
                } else {
                    run()
                };
                assert_eq!(
                    got,
                    (0..5000).collect::<Vec<_>>(),
                    "init={with_init} {ordered}"
                );
                if let Some((blocker, release)) = held {
                    release.send(()).unwrap();
                    blocker.get().unwrap();
                }
                pool.join();
                assert!(!pool.is_running());
                assert_usable(&pool, "close inside f");
            }
        }
    });
}

/// The consumer's own closure panics (`for_each`, `fold`, `batches`) on the
/// worker of a pool with an initializer, with credits of the stream still
/// queued: the panic is the closure's, `f` ran at most once per item, every
/// item is dropped exactly once, and the pool runs a `map` afterwards.
#[test]
fn a_consumer_closure_panicking_on_a_worker_with_credits_out() {
    static T: Tracker = Tracker::new();
    child::hide_expected_panics();
    guard(60, || {
        for way in 0..3 {
            for policy in POLICIES {
                T.reset();
                let pool = initialized(2, policy, false);
                let p = Arc::clone(&pool);
                let end = pool
                    .apply_async(move || {
                        let it = p.imap(|x: Item| x.seen(), T.items(300)).chunksize(7);
                        catch(move || match way {
                            0 => it.for_each(|x| {
                                if x == 50 {
                                    panic!("EXPECTED consumer closure");
                                }
                            }),
                            1 => {
                                it.fold(0usize, |n, x| {
                                    if x == 50 {
                                        panic!("EXPECTED consumer closure");
                                    }
                                    n + x
                                });
                            }
                            _ => {
                                for b in it.batches() {
                                    if b.contains(&50) {
                                        panic!("EXPECTED consumer closure");
                                    }
                                }
                            }
                        })
                    })
                    .get()
                    .unwrap();
                assert!(end.unwrap_err().contains("EXPECTED consumer closure"));
                // Not a task panic: nothing terminated.
                assert!(pool.is_running(), "way {way} {policy:?}");
                assert_usable(&pool, "consumer closure");
                pool.close();
                pool.join();
                T.assert_no_call_twice("consumer closure");
                T.assert_all_dropped_once(300, "consumer closure");
            }
        }
    });
}

/// Polls `cancelled()` for at most `ms`; whether it turned true.
fn wait_for_cancelled(ms: u64) -> bool {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        if parpool::cancelled() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    false
}

/// The take-back's promise, on a worker of a pool with an initializer
/// whose spares cannot start: while the other worker maps item 0, the
/// consumer runs no later item (item 1 might wait for what the caller does
/// once it has item 0: here, drop the stream, which item 1 should see as
/// `cancelled()`, as `tests/cancel.rs` expects of a plain pool).
///
/// It did not: the consumer's wait counts its worker blocked, the spare
/// fails to start, and `park::blocked_loop` ran queued jobs on the
/// consumer, the stream's later credits among them, nested in its
/// `next()`. A consumer now runs queued jobs only once every thread of the
/// pool waits (`Waitable::runs_jobs_only_as_a_last_resort`).
#[test]
fn a_worker_consumer_whose_spares_cannot_start_runs_no_later_item() {
    child::hide_expected_panics();
    guard(30, || {
        let pool = initialized(2, PanicPolicy::Propagate, true);
        let p = Arc::clone(&pool);
        let (first, item1) = pool
            .apply_async(move || {
                let me = thread::current().id();
                let item1 = Arc::new(Mutex::new(None));
                let record = Arc::clone(&item1);
                let f = move |x: u64| {
                    if x == 0 {
                        thread::sleep(Duration::from_millis(300));
                    } else if x == 1 {
                        let on_consumer = thread::current().id() == me;
                        let saw = wait_for_cancelled(1500);
                        *record.lock().unwrap() = Some((on_consumer, saw));
                    }
                    x
                };
                let mut it = p.imap(f, 0..50u64).chunksize(1).buffer(4);
                // Issues the credits and runs none here; the other worker
                // starts on item 0.
                assert!(it.next_timeout(Duration::ZERO).is_err());
                thread::sleep(Duration::from_millis(50));
                let first = it.next();
                drop(it);
                // Item 1's `f` ran, or waits (for at most 1.5 s) elsewhere.
                let until = Instant::now() + Duration::from_secs(3);
                while item1.lock().unwrap().is_none() && Instant::now() < until {
                    thread::sleep(Duration::from_millis(5));
                }
                let item1 = *item1.lock().unwrap();
                (first, item1)
            })
            .get()
            .unwrap();
        assert_eq!(first, Some(0));
        if let Some((on_consumer, saw)) = item1 {
            assert!(
                !on_consumer,
                "item 1 ran on the consumer while it waited for item 0"
            );
            assert!(saw, "item 1 never saw the stream dropped");
        }
        pool.terminate();
        pool.join();
    });
}

/// A spare whose initializer consumes an imap of its own pool (a worker
/// retiring after `max_tasks_per_worker` starts it, and waits for its
/// initializer): the take-back counted the spare a worker of the pool,
/// where the initializer's state is set, but its initializer had not
/// finished, so `f` ran where the state was missing. Now only a worker
/// whose initializer returned takes back credits.
#[test]
fn a_spares_initializer_consuming_its_own_pools_imap() {
    static POOL: std::sync::OnceLock<Arc<ThreadPool>> = std::sync::OnceLock::new();
    static OFF: AtomicUsize = AtomicUsize::new(0);
    static ONCE: AtomicBool = AtomicBool::new(false);
    child::run(
        "a_spares_initializer_consuming_its_own_pools_imap",
        20,
        || {
            let started = AtomicUsize::new(0);
            let pool = Arc::new(
                ThreadPool::builder()
                    .workers(2)
                    .max_tasks_per_worker(1)
                    .initializer(move || {
                        let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                        if let Some(p) = POOL.get() {
                            if !ONCE.swap(true, Ordering::SeqCst) {
                                let off: usize = p
                                    .imap(|_: u64| usize::from(init_state() == 0), 0..200u64)
                                    .sum();
                                OFF.fetch_add(off, Ordering::SeqCst);
                            }
                        }
                        INIT.with(|i| i.set(n));
                    })
                    .build()
                    .unwrap(),
            );
            assert!(POOL.set(Arc::clone(&pool)).is_ok());
            // The worker that runs it retires and starts a replacement.
            assert_eq!(pool.apply_async(|| 1).get(), Ok(1));
            let until = Instant::now() + Duration::from_secs(5);
            while !ONCE.load(Ordering::SeqCst) && Instant::now() < until {
                thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(pool.apply_async(|| 2).get(), Ok(2));
            assert_eq!(
                OFF.load(Ordering::SeqCst),
                0,
                "f ran on a thread whose initializer had not finished"
            );
        },
    );
}

/// `close()` inside `f` while a plain thread consumes an imap of a pool
/// with an initializer (no take-back there): the pool refuses the later
/// credits, and they run on the consumer's thread, where the initializer
/// never ran, although the pool's workers are still there to run them.
/// The `imap` docs say the consumer runs `f` on a pool with an initializer
/// only if it is one of the pool's workers.
#[test]
#[ignore = "documented on imap: after close, the pool refuses a stream's later chunks and they run on the consumer's thread, without the initializer's state unless it is a worker"]
fn close_mid_stream_keeps_f_on_initialized_threads() {
    child::hide_expected_panics();
    guard(30, || {
        let pool = initialized(1, PanicPolicy::Propagate, false);
        let p = Arc::clone(&pool);
        let off = Arc::new(AtomicUsize::new(0));
        let o = Arc::clone(&off);
        let got: Vec<u64> = pool
            .imap(
                move |x: u64| {
                    if init_state() == 0 {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    if x == 10 {
                        p.close();
                    }
                    x
                },
                0..2000u64,
            )
            .chunksize(1)
            .collect();
        assert_eq!(got, (0..2000).collect::<Vec<_>>());
        pool.join();
        assert_eq!(
            off.load(Ordering::SeqCst),
            0,
            "f ran off the pool's threads"
        );
    });
}

// ------------------------------------------- nested, payloads, plain pool --

/// An imap nested in `f` of a taken-back credit, both over `Vec`s of live
/// items, the inner `f` panicking in the middle of the outer chunk: the
/// outer stream raises the inner panic after exactly the results before
/// it, every item of both levels is dropped exactly once and mapped at
/// most once, under both policies.
#[test]
fn a_panicking_nested_imap_inside_a_taken_back_credit() {
    static OUTER: Tracker = Tracker::new();
    static INNER: Tracker = Tracker::new();
    child::hide_expected_panics();
    guard(60, || {
        for policy in POLICIES {
            for ordered in [true, false] {
                OUTER.reset();
                INNER.reset();
                let pool = Arc::new(pool_with(1, policy));
                let (blocker, release) = occupy_the_worker(&pool);
                let p = Arc::clone(&pool);
                let f = move |x: Item| -> usize {
                    let id = x.seen();
                    let inner: Vec<Item> = (0..5).map(|j| INNER.item(id * 5 + j)).collect();
                    p.imap(
                        move |y: Item| {
                            let j = y.seen();
                            if j == 6 * 5 + 3 {
                                panic!("EXPECTED nested panic at 6/3");
                            }
                            j
                        },
                        inner,
                    )
                    .chunksize(2)
                    .sum()
                };
                let mut it =
                    common::kinds::pool_stream(&pool, ordered, f, OUTER.items(20), Some(4), None);
                let mut got = Vec::new();
                let end = catch(|| {
                    for x in it.by_ref() {
                        got.push(x);
                    }
                });
                assert!(end.unwrap_err().contains("EXPECTED nested panic at 6/3"));
                let want: Vec<usize> = (0..6).map(|i| (0..5).map(|j| i * 5 + j).sum()).collect();
                assert_eq!(got, want, "{policy:?} {ordered}");
                drop(it);
                release.send(()).unwrap();
                let _ = blocker.get();
                assert_usable(&pool, "nested");
                pool.close();
                pool.join();
                OUTER.assert_no_call_twice("outer");
                INNER.assert_no_call_twice("inner");
                OUTER.assert_all_dropped_once(20, "outer");
                INNER.assert_all_dropped_once(35, "inner");
                assert_called_up_to(&OUTER, Some(6), "outer");
                assert_called_up_to(&INNER, Some(33), "inner");
            }
        }
    });
}

/// `f` panics with a payload whose own `Drop` panics, in a taken-back
/// credit: the consumer raises that very payload (the caller owns it),
/// the engine never drops it, and the pool goes on.
#[test]
fn a_payload_bomb_from_a_taken_back_credit_is_raised_not_dropped() {
    child::hide_expected_panics();
    common::quiet_panics_containing("EXPECTED");
    guard(30, || {
        for policy in POLICIES {
            let pool = pool_with(1, policy);
            let (blocker, release) = occupy_the_worker(&pool);
            let mut got = Vec::new();
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for x in pool
                    .imap(
                        |x: u64| {
                            if x == 6 {
                                common::panic_with_bomb();
                            }
                            x
                        },
                        0..40u64,
                    )
                    .chunksize(4)
                {
                    got.push(x);
                }
            }));
            let payload = out.expect_err("the payload is raised");
            assert!(payload.is::<common::PayloadBomb>(), "{policy:?}");
            std::mem::forget(payload);
            assert_eq!(got, (0..6).collect::<Vec<_>>());
            release.send(()).unwrap();
            let _ = blocker.get();
            assert_eq!(pool.stats().panicked, 1);
            assert_usable(&pool, "payload bomb");
        }
    });
}
