//! A hostile round on a task's outcome cell and its reference word: the
//! outcome is stored untagged (a union, its tag a flag byte beside the
//! slot's flags), and the pool's address shares the reference count's
//! word. Every result, of every shape (zero-sized, over-aligned, large,
//! with and without niches, with a panicking `Drop`), is dropped exactly
//! once, on the right thread, on every path (taken, dropped with its
//! handle before, during and after the run, orphaned, cancelled,
//! terminated, awaited); a scope sees a panic exactly when no handle
//! observed it; and a task is inlined only by its own pool's worker.
#[path = "common/child.rs"]
mod child;
mod common;

use common::{guard, pick};
use parpool::{TaskError, ThreadPool};
use std::any::Any;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

/// Counts drops per id, and the thread each was dropped on.
#[derive(Default)]
struct Ledger {
    made: AtomicUsize,
    drops: Mutex<HashMap<usize, usize>>,
}

impl Ledger {
    fn tok(self: &Arc<Self>) -> Tok {
        let id = self.made.fetch_add(1, Ordering::SeqCst);
        Tok {
            id,
            ledger: Arc::clone(self),
            panic_on_drop: false,
        }
    }
    fn check(&self, what: &str) {
        let made = self.made.load(Ordering::SeqCst);
        let d = self.drops.lock().unwrap();
        for id in 0..made {
            assert_eq!(
                d.get(&id).copied().unwrap_or(0),
                1,
                "{what}: token {id} dropped wrong number of times ({made} made)"
            );
        }
        assert_eq!(d.len(), made, "{what}: foreign drop ids");
    }
}

struct Tok {
    id: usize,
    ledger: Arc<Ledger>,
    panic_on_drop: bool,
}

impl Drop for Tok {
    fn drop(&mut self) {
        *self
            .ledger
            .drops
            .lock()
            .unwrap()
            .entry(self.id)
            .or_insert(0) += 1;
        if self.panic_on_drop && !std::thread::panicking() {
            panic!("tok {} drop panics", self.id);
        }
    }
}

#[repr(align(64))]
#[allow(dead_code)]
struct A64(Tok, u8);
#[repr(align(4096))]
#[allow(dead_code)]
struct A4096(Tok, u8);

fn blocker(pool: &ThreadPool) -> (mpsc::Sender<()>, parpool::AsyncResult<()>, Arc<Barrier>) {
    let (tx, rx) = mpsc::channel::<()>();
    let started = Arc::new(Barrier::new(2));
    let s = Arc::clone(&started);
    let h = pool.apply_async(move || {
        s.wait();
        let _ = rx.recv_timeout(Duration::from_secs(30));
    });
    started.wait();
    (tx, h, started)
}

/// Every path a result can take, for one result type made by `mk`.
fn all_paths<R, M>(what: &str, mk: M)
where
    R: Send + 'static,
    M: Fn(&Arc<Ledger>) -> R + Send + Sync + Clone + 'static,
{
    let ledger = Arc::new(Ledger::default());
    {
        let pool = ThreadPool::with_workers(1);
        // 1. get.
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let v = pool.apply_async(move || m(&l)).get().ok().unwrap();
        drop(v);
        // 2. handle dropped while queued (behind a blocker).
        let (tx, hb, _) = blocker(&pool);
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        drop(pool.apply_async(move || m(&l)));
        // 3. cancelled while queued.
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let h = pool.apply_async(move || m(&l));
        assert!(h.cancel());
        assert_eq!(h.get().err(), Some(TaskError::Cancelled));
        // 4. get_timeout times out, then succeeds.
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let mut h = pool.apply_async(move || m(&l));
        assert_eq!(
            h.get_timeout(Duration::from_millis(1)).err(),
            Some(TaskError::Timeout)
        );
        tx.send(()).unwrap();
        hb.get().unwrap();
        assert!(h.get_timeout(Duration::from_secs(30)).is_ok());
        drop(h); // spent handle
                 // 5. dropped after done, never taken; successful() read first.
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let h = pool.apply_async(move || m(&l));
        h.wait();
        assert_eq!(h.successful(), Some(true));
        assert!(h.ready());
        drop(h);
        // 6. dropped while running.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let started = Arc::new(Barrier::new(2));
        let s = Arc::clone(&started);
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let h = pool.apply_async(move || {
            s.wait();
            let _ = go_rx.recv_timeout(Duration::from_secs(30));
            m(&l)
        });
        started.wait();
        drop(h);
        go_tx.send(()).unwrap();
        // 7. callbacks: on_success reads, on_error not run; registered before and after.
        let hits = Arc::new(AtomicUsize::new(0));
        let (tx, hb, _) = blocker(&pool);
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let h1 = Arc::clone(&hits);
        let h2 = Arc::clone(&hits);
        let h = pool
            .apply_async(move || m(&l))
            .on_success(move |_| {
                h1.fetch_add(1, Ordering::SeqCst);
            })
            .on_error(move |_| {
                h2.fetch_add(100, Ordering::SeqCst);
            });
        tx.send(()).unwrap();
        hb.get().unwrap();
        h.wait();
        let h3 = Arc::clone(&hits);
        let h = h.on_success(move |_| {
            h3.fetch_add(1, Ordering::SeqCst);
        });
        assert!(h.get().is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 2, "{what}: callbacks");
        // 8. a callback that drops its own handle (sent to it by channel).
        let (tx, hb, _) = blocker(&pool);
        let (htx, hrx) = mpsc::channel::<parpool::AsyncResult<R>>();
        let hrx = Mutex::new(hrx);
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let dropped_in_cb = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&dropped_in_cb);
        let h = pool.apply_async(move || m(&l)).on_success(move |_| {
            if let Ok(own) = hrx.lock().unwrap().recv_timeout(Duration::from_secs(30)) {
                assert!(!own.ready());
                assert_eq!(own.successful(), None);
                drop(own);
                d.store(true, Ordering::SeqCst);
            }
        });
        htx.send(h).unwrap();
        tx.send(()).unwrap();
        hb.get().unwrap();
        // 9. map_async.
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let v = pool
            .map_async(move |_: usize| m(&l), 0..5)
            .get()
            .ok()
            .unwrap();
        assert_eq!(v.len(), 5);
        drop(v);
        // 10. future through futures' executor.
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let r = futures::executor::block_on(pool.apply_async(move || m(&l)));
        assert!(r.is_ok());
        drop(r);
        // 11. scope.
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        pool.scope(|s| {
            let l2 = Arc::clone(&l);
            let m2 = m.clone();
            let a = s.apply_async(move || m(&l));
            let b = s.apply_async(move || m2(&l2));
            drop(b);
            assert!(a.get().is_ok());
        });
        // 12. terminate with queued tasks: cancelled, some with handles dropped.
        let (tx, hb, _) = blocker(&pool);
        let mut keep = Vec::new();
        for i in 0..6 {
            let l = Arc::clone(&ledger);
            let m = mk.clone();
            let h = pool.apply_async(move || m(&l));
            if i % 2 == 0 {
                keep.push(h);
            }
        }
        let t = std::thread::spawn({
            let tx = tx.clone();
            move || {
                std::thread::sleep(Duration::from_millis(50));
                let _ = tx.send(());
            }
        });
        pool.terminate();
        t.join().unwrap();
        let _ = hb.get();
        for h in keep {
            let r = h.get();
            assert!(
                matches!(r, Err(TaskError::Cancelled)) || r.is_ok(),
                "{what}"
            );
        }
        assert!(
            dropped_in_cb.load(Ordering::SeqCst),
            "{what}: cb dropped own handle"
        );
        // 13. closed pool: not_running handles.
        let l = Arc::clone(&ledger);
        let m = mk.clone();
        let h = pool.apply_async(move || m(&l));
        assert_eq!(h.get().err(), Some(TaskError::NotRunning));
        drop(pool);
    }
    ledger.check(what);
}

macro_rules! path_test {
    ($name:ident, $ty:ty, $mk:expr) => {
        #[test]
        fn $name() {
            guard(120, || all_paths::<$ty, _>(stringify!($name), $mk));
        }
    };
}

path_test!(paths_tok, Tok, |l: &Arc<Ledger>| l.tok());
path_test!(paths_a64, A64, |l: &Arc<Ledger>| A64(l.tok(), 3));
path_test!(paths_a4096, A4096, |l: &Arc<Ledger>| A4096(l.tok(), 3));
path_test!(paths_opt_box_tok, (Option<Box<u64>>, Tok), |l: &Arc<
    Ledger,
>| (
    None,
    l.tok()
));
path_test!(
    paths_dyn_any,
    Box<dyn Any + Send>,
    |l: &Arc<Ledger>| Box::new(l.tok()) as Box<dyn Any + Send>
);
path_test!(paths_big, ([u64; 8192], Tok), |l: &Arc<Ledger>| (
    [5u64; 8192],
    l.tok()
));

/// Values come back intact for niche and tiny types.
#[test]
fn niche_and_small_values_round_trip() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for _ in 0..pick(200, 3) {
            assert_eq!(pool.apply_async(|| ()).get(), Ok(()));
            assert_eq!(pool.apply_async(|| 0u8).get(), Ok(0));
            assert_eq!(pool.apply_async(|| 255u8).get(), Ok(255));
            assert_eq!(pool.apply_async(|| u64::MAX).get(), Ok(u64::MAX));
            assert_eq!(pool.apply_async(|| false).get(), Ok(false));
            assert_eq!(pool.apply_async(|| '\u{10FFFF}').get(), Ok('\u{10FFFF}'));
            assert_eq!(pool.apply_async(|| None::<Box<u64>>).get(), Ok(None));
            assert_eq!(
                pool.apply_async(|| Some(Box::new(9u64))).get(),
                Ok(Some(Box::new(9)))
            );
            assert_eq!(
                pool.apply_async(|| NonZeroU64::new(1).unwrap()).get(),
                Ok(NonZeroU64::new(1).unwrap())
            );
            assert_eq!(pool.apply_async(|| "").get(), Ok(""));
            assert_eq!(pool.apply_async(|| "static").get(), Ok("static"));
            assert_eq!(pool.apply_async(|| Ok::<u8, ()>(1)).get(), Ok(Ok(1)));
            assert_eq!(pool.apply_async(|| Err::<(), u8>(2)).get(), Ok(Err(2)));
            let h = pool.apply_async(|| -> Option<Box<u64>> { panic!("x") });
            h.wait();
            assert_eq!(h.successful(), Some(false));
            assert!(matches!(h.get(), Err(TaskError::Panicked(_))));
            let mut h = pool.apply_async(|| None::<&'static str>);
            h.wait();
            assert_eq!(h.successful(), Some(true));
            assert_eq!(h.get_timeout(Duration::from_secs(5)), Ok(None));
            assert_eq!(h.successful(), Some(true));
        }
    });
}

/// A task of pool A waited for on a worker of pool B is never run by B;
/// waited for on A's own worker it may be.
#[test]
fn other_pool_never_inlines() {
    guard(60, || {
        let a = Arc::new(ThreadPool::builder().workers(1).build().unwrap());
        let b = ThreadPool::builder().workers(1).build().unwrap();
        for _ in 0..pick(20, 2) {
            let (tx, hb, _) = blocker(&a);
            let ran_on = Arc::new(Mutex::new(None));
            let r = Arc::clone(&ran_on);
            let h = a.apply_async(move || {
                *r.lock().unwrap() = Some(std::thread::current().id());
                7u64
            });
            let (btx, brx) = mpsc::channel();
            let waiter = b.apply_async(move || {
                let _ = btx.send(std::thread::current().id());
                h.get()
            });
            let b_thread = brx.recv_timeout(Duration::from_secs(30)).unwrap();
            std::thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 20 }));
            assert!(ran_on.lock().unwrap().is_none(), "B's worker ran A's task");
            tx.send(()).unwrap();
            hb.get().unwrap();
            assert_eq!(waiter.get(), Ok(Ok(7)));
            assert_ne!(ran_on.lock().unwrap().unwrap(), b_thread);
            // Same pool: A's only worker waits for a task queued behind it:
            // it must inline it (else deadlock).
            let a2 = Arc::clone(&a);
            let outer = a.apply_async(move || {
                let inner = a2.apply_async(|| 5u8);
                inner.get()
            });
            assert_eq!(outer.get(), Ok(Ok(5)));
        }
    });
}

/// Result Drop that panics, on each path: dropped exactly once.
#[test]
fn panicking_result_drop_exactly_once() {
    in_a_child("panicking_result_drop_exactly_once", bomb_body);
}

/// Runs `body` in a child process (a panicking `Drop` may abort), or in
/// process under Miri, which cannot re-execute the test binary.
fn in_a_child(test_name: &str, body: fn()) {
    if cfg!(miri) {
        guard(600, body)
    } else {
        child::run(test_name, 60, body)
    }
}

fn bomb_body() {
    {
        let ledger = Arc::new(Ledger::default());
        let bomb = |l: &Arc<Ledger>| {
            let mut t = l.tok();
            t.panic_on_drop = true;
            t
        };
        {
            let pool = ThreadPool::with_workers(1);
            // Handle dropped before completion: the worker drops it.
            let (tx, hb, _) = blocker(&pool);
            let l = Arc::clone(&ledger);
            drop(pool.apply_async(move || bomb(&l)));
            tx.send(()).unwrap();
            hb.get().unwrap();
            // Handle dropped after completion: the drop panics here.
            let l = Arc::clone(&ledger);
            let h = pool.apply_async(move || bomb(&l));
            h.wait();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(h)));
            assert!(r.is_err());
            // Taken then dropped by us.
            let l = Arc::clone(&ledger);
            let v = pool.apply_async(move || bomb(&l)).get().ok().unwrap();
            assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(v))).is_err());
            // The pool still works.
            assert_eq!(pool.apply_async(|| 1u64).get(), Ok(1));
            pool.close();
            pool.join();
        }
        ledger.check("bomb");
    }
}

/// In a scope, a panic reaches the scope exactly when no handle saw it.
#[test]
fn scope_panic_reaches_scope_iff_unobserved() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for case in 0..5 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.scope(|s| {
                    let h = s.apply_async(|| -> u64 { panic!("boom") });
                    match case {
                        0 => drop(h),
                        1 => assert!(h.get().is_err()),
                        2 => {
                            h.wait();
                            assert_eq!(h.successful(), Some(false));
                        }
                        3 => {
                            h.wait();
                            drop(h)
                        }
                        _ => {
                            let h = h.on_error(|_| {});
                            h.wait();
                            drop(h)
                        }
                    }
                })
            }));
            let expect_panic = matches!(case, 0 | 3 | 4);
            assert_eq!(r.is_err(), expect_panic, "case {case}");
        }
    });
}

/// Many tasks racing drop-vs-complete; exact counts.
#[test]
fn racing_drops_exact() {
    guard(120, || {
        let ledger = Arc::new(Ledger::default());
        {
            let pool = ThreadPool::with_workers(4);
            let n = pick(20_000, 20);
            let mut hs = Vec::new();
            for i in 0..n {
                let l = Arc::clone(&ledger);
                let h = pool.apply_async(move || (l.tok(), i as u8));
                match i % 4 {
                    0 => drop(h),
                    1 => hs.push(h),
                    2 => {
                        let _ = h.cancel();
                        hs.push(h)
                    }
                    _ => {
                        if i % 8 == 3 {
                            h.wait();
                        }
                        drop(h)
                    }
                }
            }
            for h in hs {
                let _ = h.get();
            }
            pool.close();
            pool.join();
        }
        ledger.check("racing");
    });
}

#[repr(align(4096))]
#[derive(Debug, PartialEq, Clone, Copy)]
struct Page(u64);

#[repr(align(4096))]
#[derive(Debug, PartialEq, Clone, Copy)]
struct ZPage;

/// Callbacks and `successful` see the value in place, aligned and intact.
#[test]
fn callbacks_see_aligned_intact_values() {
    guard(60, || {
        let pool = ThreadPool::with_workers(1);
        for _ in 0..pick(50, 2) {
            let ok = Arc::new(AtomicUsize::new(0));
            let (tx, hb, _) = blocker(&pool);
            let o = Arc::clone(&ok);
            let h1 = pool.apply_async(|| Page(0xdead_beef)).on_success(move |v| {
                assert_eq!(v as *const Page as usize % 4096, 0);
                assert_eq!(*v, Page(0xdead_beef));
                o.fetch_add(1, Ordering::SeqCst);
            });
            let o = Arc::clone(&ok);
            let h2 = pool.apply_async(|| ZPage).on_success(move |v| {
                assert_eq!(v as *const ZPage as usize % 4096, 0);
                o.fetch_add(1, Ordering::SeqCst);
            });
            let o = Arc::clone(&ok);
            let h3 = pool.apply_async(|| [0xA5u8; 1 << 16]).on_success(move |v| {
                assert!(v.iter().all(|&b| b == 0xA5));
                o.fetch_add(1, Ordering::SeqCst);
            });
            let o = Arc::clone(&ok);
            let h4 = pool
                .apply_async(|| NonZeroU64::new(u64::MAX).unwrap())
                .on_success(move |v| {
                    assert_eq!(v.get(), u64::MAX);
                    o.fetch_add(1, Ordering::SeqCst);
                });
            let o = Arc::clone(&ok);
            let h5 = pool
                .apply_async(|| -> std::convert::Infallible { panic!("never") })
                .on_error(move |e| {
                    assert!(matches!(e, TaskError::Panicked(_)));
                    o.fetch_add(1, Ordering::SeqCst);
                });
            tx.send(()).unwrap();
            hb.get().unwrap();
            assert_eq!(h1.get(), Ok(Page(0xdead_beef)));
            assert_eq!(h2.get(), Ok(ZPage));
            let big = h3.get().unwrap();
            assert!(big.iter().all(|&b| b == 0xA5));
            assert_eq!(h4.get().unwrap().get(), u64::MAX);
            assert!(h5.get().is_err());
            assert_eq!(ok.load(Ordering::SeqCst), 5);
            // After done: callbacks run here, on the value in place.
            let h = pool.apply_async(|| Page(3));
            h.wait();
            let seen = Arc::new(AtomicUsize::new(0));
            let s = Arc::clone(&seen);
            let h = h.on_success(move |v| {
                assert_eq!(v as *const Page as usize % 4096, 0);
                assert_eq!(*v, Page(3));
                s.fetch_add(1, Ordering::SeqCst);
            });
            assert_eq!(h.successful(), Some(true));
            assert_eq!(h.get(), Ok(Page(3)));
            assert_eq!(seen.load(Ordering::SeqCst), 1);
        }
    });
}

/// A task of pool A awaited as a future on pool B's worker is not run by B;
/// awaited on A's only worker, it completes.
#[test]
fn other_pool_future_never_inlines() {
    guard(60, || {
        for _ in 0..pick(20, 2) {
            // Fresh pools: a `block_on` on A's worker below may leave A a
            // stand-in thread for a while.
            let a = Arc::new(
                ThreadPool::builder()
                    .workers(1)
                    .thread_name("poolA")
                    .build()
                    .unwrap(),
            );
            let b = ThreadPool::builder()
                .workers(1)
                .thread_name("poolB")
                .build()
                .unwrap();
            let a_worker = a.apply_async(|| std::thread::current().id()).get().unwrap();
            let (tx, hb, _) = blocker(&a);
            let ran_on = Arc::new(Mutex::new(None));
            let r = Arc::clone(&ran_on);
            let h = a.apply_async(move || {
                *r.lock().unwrap() = Some((
                    std::thread::current().id(),
                    std::thread::current().name().map(str::to_owned),
                ));
                Page(11)
            });
            let (btx, brx) = mpsc::channel();
            let waiter = b.apply_async(move || {
                let _ = btx.send(std::thread::current().id());
                futures::executor::block_on(h)
            });
            let b_thread = brx.recv_timeout(Duration::from_secs(30)).unwrap();
            std::thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 30 }));
            let early = ran_on.lock().unwrap().clone();
            assert!(
                early.is_none(),
                "A's task ran while A's only worker was blocked: on {:?} (A's worker {:?}, B's worker is {:?}, main {:?})",
                early, a_worker,
                b_thread,
                std::thread::current().id()
            );
            tx.send(()).unwrap();
            hb.get().unwrap();
            assert_eq!(waiter.get(), Ok(Ok(Page(11))));
            assert_ne!(ran_on.lock().unwrap().clone().unwrap().0, b_thread);
            let a2 = Arc::clone(&a);
            let outer = a.apply_async(move || {
                let inner = a2.apply_async(|| Page(5));
                futures::executor::block_on(inner)
            });
            assert_eq!(outer.get(), Ok(Ok(Page(5))));
        }
    });
}

/// Which thread drops the result: the taker, the late dropper, or (orphan)
/// the worker.
#[test]
fn result_dropped_on_the_right_thread() {
    guard(60, || {
        struct D(Arc<Mutex<Vec<(u8, std::thread::ThreadId)>>>, u8);
        impl Drop for D {
            fn drop(&mut self) {
                self.0
                    .lock()
                    .unwrap()
                    .push((self.1, std::thread::current().id()));
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let pool = ThreadPool::with_workers(1);
        let wid = pool
            .apply_async(|| std::thread::current().id())
            .get()
            .unwrap();
        let me = std::thread::current().id();
        let l = Arc::clone(&log);
        drop(pool.apply_async(move || D(l, 1)).get().unwrap());
        let l = Arc::clone(&log);
        let h = pool.apply_async(move || D(l, 2));
        h.wait();
        let other = std::thread::spawn(move || {
            drop(h);
            std::thread::current().id()
        })
        .join()
        .unwrap();
        let (tx, hb, _) = blocker(&pool);
        let l = Arc::clone(&log);
        drop(pool.apply_async(move || D(l, 3)));
        tx.send(()).unwrap();
        hb.get().unwrap();
        pool.close();
        pool.join();
        let mut v = log.lock().unwrap().clone();
        v.sort_by_key(|x| x.0);
        assert_eq!(v, vec![(1, me), (2, other), (3, wid)]);
    });
}

/// `terminate` racing handle drops and `get`s on other threads: every
/// closure and every result dropped exactly once.
#[test]
fn terminate_races_handle_drops_exact() {
    guard(120, || {
        for round in 0..pick(30, 2) {
            let ledger = Arc::new(Ledger::default());
            {
                let pool = Arc::new(ThreadPool::with_workers(2));
                let n = pick(400, 12);
                let mut hs = Vec::new();
                for i in 0..n {
                    let l = Arc::clone(&ledger);
                    let captured = ledger.tok();
                    hs.push(pool.apply_async(move || {
                        let _c = captured;
                        (l.tok(), i as u32)
                    }));
                }
                let mut odd = Vec::new();
                let mut even = Vec::new();
                for (i, h) in hs.into_iter().enumerate() {
                    if i % 2 == 0 {
                        even.push(h)
                    } else {
                        odd.push(h)
                    }
                }
                let t1 = std::thread::spawn(move || {
                    for h in odd {
                        drop(h);
                    }
                });
                let t2 = std::thread::spawn(move || {
                    let mut got = 0;
                    for h in even {
                        if let Ok((_t, _)) = h.get() {
                            got += 1;
                        }
                    }
                    got
                });
                if round % 2 == 0 {
                    std::thread::yield_now();
                }
                pool.terminate();
                t1.join().unwrap();
                let _ = t2.join().unwrap();
            }
            ledger.check("terminate race");
        }
    });
}

#[test]
fn tokio_await_exact() {
    guard(60, || {
        let ledger = Arc::new(Ledger::default());
        {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut v = Vec::new();
                for i in 0..pick(200, 4) {
                    let l = Arc::clone(&ledger);
                    let h = pool.apply_async(move || (l.tok(), Page(i as u64)));
                    v.push(tokio::spawn(async move {
                        let (t, p) = h.await.unwrap();
                        drop(t);
                        p
                    }));
                }
                // Some handles polled once then dropped (a lost select).
                for _ in 0..pick(50, 2) {
                    let l = Arc::clone(&ledger);
                    let mut h = pool.apply_async(move || {
                        std::thread::sleep(Duration::from_millis(1));
                        l.tok()
                    });
                    let _ = futures::poll!(&mut h);
                    drop(h);
                }
                for (i, j) in v.into_iter().enumerate() {
                    assert_eq!(j.await.unwrap(), Page(i as u64));
                }
            });
            drop(rt);
            pool.close();
            pool.join();
        }
        ledger.check("tokio");
    });
}

/// A callback drops its own handle: the result (whose `Drop` panics) is
/// orphaned mid-completion and dropped once, by the claimer; in a scope,
/// a panicking task's handle dropped by its own callback hands the panic
/// to the scope.
#[test]
fn callback_orphans_own_result() {
    in_a_child("callback_orphans_own_result", orphan_body);
}

fn orphan_body() {
    let ledger = Arc::new(Ledger::default());
    {
        let pool = ThreadPool::with_workers(1);
        for bomb in [false, true] {
            let (tx, hb, _) = blocker(&pool);
            let (htx, hrx) = mpsc::channel::<parpool::AsyncResult<Tok>>();
            let hrx = Mutex::new(hrx);
            let l = Arc::clone(&ledger);
            let h = pool
                .apply_async(move || {
                    let mut t = l.tok();
                    t.panic_on_drop = bomb;
                    t
                })
                .on_success(move |v| {
                    assert!(v.id < 1000);
                    let own = hrx
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(30))
                        .unwrap();
                    drop(own);
                    assert!(v.id < 1000);
                });
            htx.send(h).unwrap();
            tx.send(()).unwrap();
            hb.get().unwrap();
        }
        assert_eq!(pool.apply_async(|| 1u8).get(), Ok(1));
        // Behind a blocker, so `on_error` is registered before the task
        // completes (else it would run here and wait for itself).
        let (tx, hb, _) = blocker(&pool);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.scope(|s| {
                let (htx, hrx) = mpsc::channel::<parpool::AsyncResult<u64>>();
                let hrx = Mutex::new(hrx);
                let h = s
                    .apply_async(|| -> u64 { panic!("scoped boom") })
                    .on_error(move |_| {
                        drop(
                            hrx.lock()
                                .unwrap()
                                .recv_timeout(Duration::from_secs(30))
                                .unwrap(),
                        );
                    });
                htx.send(h).unwrap();
                tx.send(()).unwrap();
            })
        }));
        hb.get().unwrap();
        let msg = r.err().map(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or(p.downcast_ref::<String>().cloned())
        });
        assert_eq!(msg, Some(Some("scoped boom".to_string())));
        pool.close();
        pool.join();
    }
    ledger.check("orphan via callback");
}

/// After `get_timeout` took the outcome, the spent handle's reads see an
/// empty cell, not a stale value.
#[test]
fn spent_handle_sees_empty_cell() {
    guard(120, || {
        let ledger = Arc::new(Ledger::default());
        {
            let pool = ThreadPool::with_workers(1);
            let l = Arc::clone(&ledger);
            let mut h = pool.apply_async(move || l.tok());
            let t = h.get_timeout(Duration::from_secs(30)).ok().unwrap();
            let ran = Arc::new(AtomicUsize::new(0));
            assert_eq!(h.successful(), Some(true));
            assert!(h.ready());
            h.wait();
            let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = h.get_timeout(Duration::from_millis(1));
            }));
            assert!(again.is_err());
            // A callback attached now could only see the empty cell: the
            // call panics and the callback never runs.
            let r1 = Arc::clone(&ran);
            let attach = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                h.on_success(move |_| {
                    r1.fetch_add(1, Ordering::SeqCst);
                })
            }));
            assert!(attach.is_err());
            assert_eq!(ran.load(Ordering::SeqCst), 0);
            drop(t);
            // Same for a failure.
            let mut h = pool.apply_async(|| -> Tok { panic!("x") });
            assert!(matches!(
                h.get_timeout(Duration::from_secs(30)),
                Err(TaskError::Panicked(_))
            ));
            assert_eq!(h.successful(), Some(false));
            let r3 = Arc::clone(&ran);
            let attach = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                h.on_error(move |_| {
                    r3.fetch_add(1, Ordering::SeqCst);
                })
            }));
            assert!(attach.is_err());
            assert_eq!(ran.load(Ordering::SeqCst), 0);
        }
        ledger.check("spent");
    });
}
