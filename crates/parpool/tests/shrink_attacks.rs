//! Attacks on two "shrink" commits: the task's closure kept in a
//! `MaybeUninit` that the slot's claimer moves out (dropped by `Task`'s
//! `Drop` only if never claimed), with `handle_alive`/`waiters`/`source` as
//! atomics beside the status; and imap's automatic chunks targeting 1 ms.
//!
//! Every closure must be dropped exactly once, whatever ends it.
mod common;

use common::{
    close_or_terminate, counters, guard, panic_message, pick, quiet_panics_containing, Probe,
};
use parpool::{TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

fn quiet() {
    quiet_panics_containing("shrink-attack");
}

fn assert_all_once(drops: &[AtomicUsize], what: &str) {
    for (i, d) in drops.iter().enumerate() {
        assert_eq!(
            d.load(Ordering::SeqCst),
            1,
            "{what}: closure {i} dropped wrong"
        );
    }
}

/// A gate a task blocks on until the test opens it (or 5 s pass).
fn gate() -> (mpsc::Sender<()>, impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel::<()>();
    (tx, move || {
        let _ = rx.recv_timeout(Duration::from_secs(5));
    })
}

#[test]
fn every_way_a_closure_ends_drops_it_exactly_once() {
    guard(20, || {
        for round in 0..pick(30, 2) {
            let pool = ThreadPool::with_workers(2);
            let drops = counters(8);
            let ran = Arc::new(AtomicUsize::new(0));
            let p = |id| Probe::new(id, &drops);
            // 0: run, handle kept and read.
            let probe = p(0);
            let r = Arc::clone(&ran);
            let h0 = pool.apply_async(move || {
                let _k = &probe;
                r.fetch_add(1, Ordering::SeqCst);
                7u32
            });
            assert_eq!(h0.get(), Ok(7));
            // 1: handle dropped at once.
            let probe = p(1);
            drop(pool.apply_async(move || drop(probe)));
            // 2: spawn.
            let probe = p(2);
            pool.spawn(move || {
                let _k = probe;
            });
            // 3: handle leaked with mem::forget (the closure still runs once).
            let probe = p(3);
            let (tx, rx) = mpsc::channel();
            let leaked = pool.apply_async(move || {
                let _k = &probe;
                tx.send(()).unwrap();
            });
            // (Miri reports the forgotten task as a leak: dropped there.)
            if cfg!(miri) {
                drop(leaked);
            } else {
                std::mem::forget(leaked);
            }
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
            // Block both workers so the next tasks stay queued.
            let (open_a, wait_a) = gate();
            let (open_b, wait_b) = gate();
            let ba = pool.apply_async(wait_a);
            let bb = pool.apply_async(wait_b);
            // 4: cancelled while queued.
            let probe = p(4);
            let h4 = pool.apply_async(move || drop(probe));
            assert!(h4.cancel());
            assert_eq!(drops[4].load(Ordering::SeqCst), 1, "round {round}");
            assert_eq!(h4.get(), Err(TaskError::Cancelled));
            // 5: queued, its handle dropped, then discarded by terminate.
            let probe = p(5);
            drop(pool.apply_async(move || drop(probe)));
            // 6: queued spawn, discarded by terminate.
            let probe = p(6);
            pool.spawn(move || drop(probe));
            // 7: queued, handle kept, discarded by terminate.
            let probe = p(7);
            let h7 = pool.apply_async(move || drop(probe));
            open_a.send(()).unwrap();
            open_b.send(()).unwrap();
            pool.terminate();
            pool.join();
            let _ = ba.get();
            let _ = bb.get();
            let r7 = h7.get();
            assert!(matches!(r7, Ok(()) | Err(TaskError::Cancelled)), "{r7:?}");
            assert_all_once(&drops, &format!("round {round}"));
            assert_eq!(ran.load(Ordering::SeqCst), 1);
        }
    });
}

#[test]
fn terminate_racing_running_tasks_drops_every_closure_once() {
    guard(30, || {
        for round in 0..pick(60, 2) {
            let recycle = round % 2 == 1;
            let mut b = ThreadPool::builder().workers(2);
            if recycle {
                b = b.max_tasks_per_worker(1);
            }
            let pool = b.build().unwrap();
            let n = if cfg!(miri) { 6 } else { 40 };
            let drops = counters(n);
            let ran = counters(n);
            let mut handles = Vec::new();
            for id in 0..n {
                let probe = Probe::new(id, &drops);
                let ran = Arc::clone(&ran);
                let job = move || {
                    let _k = &probe;
                    ran[id].fetch_add(1, Ordering::SeqCst);
                    if id % 7 == 0 {
                        std::thread::yield_now();
                    }
                    id
                };
                match id % 3 {
                    0 => handles.push((id, pool.apply_async(job))),
                    1 => drop(pool.apply_async(job)),
                    _ => pool.spawn(move || {
                        job();
                    }),
                }
                if id == round % n {
                    pool.terminate();
                }
            }
            pool.terminate();
            pool.join();
            for (id, h) in handles {
                match h.get() {
                    Ok(v) => {
                        assert_eq!(v, id);
                        assert_eq!(ran[id].load(Ordering::SeqCst), 1);
                    }
                    Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => {
                        assert_eq!(ran[id].load(Ordering::SeqCst), 0, "cancelled but ran");
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            for id in 0..n {
                assert!(ran[id].load(Ordering::SeqCst) <= 1);
            }
            assert_all_once(&drops, &format!("round {round} recycle {recycle}"));
        }
    });
}

#[test]
fn cancel_racing_the_worker_drops_once_and_agrees_with_get() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(2000, 20);
        let drops = counters(n);
        let ran = counters(n);
        for id in 0..n {
            let probe = Probe::new(id, &drops);
            let r = Arc::clone(&ran);
            let h = pool.apply_async(move || {
                let _k = &probe;
                r[id].fetch_add(1, Ordering::SeqCst);
                id
            });
            if id % 3 == 0 {
                std::thread::yield_now();
            }
            let cancelled = h.cancel();
            // The second cancel never claims again.
            assert!(!h.cancel());
            let got = h.get();
            if cancelled {
                assert_eq!(got, Err(TaskError::Cancelled));
                assert_eq!(ran[id].load(Ordering::SeqCst), 0);
            } else {
                // Started before the cancel: it ran to the end.
                assert_eq!(got, Ok(id));
                assert_eq!(ran[id].load(Ordering::SeqCst), 1);
            }
            assert_eq!(drops[id].load(Ordering::SeqCst), 1, "task {id}");
        }
        pool.close();
        pool.join();
        assert_all_once(&drops, "cancel race");
    });
}

#[test]
fn nested_get_inlines_and_drops_each_closure_once() {
    guard(20, || {
        // One worker: an inner task can only run if the outer one inlines it.
        let pool = Arc::new(ThreadPool::with_workers(1));
        let n = pick(200, 3);
        let drops = counters(2 * n);
        for i in 0..n {
            let inner_probe = Probe::new(2 * i, &drops);
            let outer_probe = Probe::new(2 * i + 1, &drops);
            let p = Arc::clone(&pool);
            let got = pool
                .apply_async(move || {
                    let _k = &outer_probe;
                    let inner = p.apply_async(move || {
                        let _k = &inner_probe;
                        i * 2
                    });
                    match i % 3 {
                        0 => inner.get().unwrap(),
                        1 => {
                            inner.wait();
                            inner.get().unwrap()
                        }
                        _ => {
                            assert!(inner.wait_timeout(Duration::from_secs(5)));
                            inner.get().unwrap()
                        }
                    }
                })
                .get();
            assert_eq!(got, Ok(i * 2));
            assert_eq!(drops[2 * i].load(Ordering::SeqCst), 1);
            assert_eq!(drops[2 * i + 1].load(Ordering::SeqCst), 1);
        }
        drop(pool);
        assert_all_once(&drops, "nested");
    });
}

/// Counts its drops, then panics in `Drop`.
struct PanicOnDrop(Arc<AtomicUsize>);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("shrink-attack: closure drop");
    }
}

#[test]
fn a_closure_whose_drop_panics_is_dropped_once_on_every_path() {
    quiet();
    guard(20, || {
        let pool = ThreadPool::with_workers(1);
        // Cancelled: the drop's panic reaches the cancel caller, once.
        let (open, wait) = gate();
        let blocker = pool.apply_async(wait);
        let count = Arc::new(AtomicUsize::new(0));
        let bomb = PanicOnDrop(Arc::clone(&count));
        let h = pool.apply_async(move || {
            let _k = &bomb;
            1
        });
        let err = catch_unwind(AssertUnwindSafe(|| h.cancel())).unwrap_err();
        assert!(panic_message(err.as_ref()).contains("shrink-attack"));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(!h.cancel());
        assert_eq!(h.get(), Err(TaskError::Cancelled));

        // Run: the captured value is dropped inside the call, so the task
        // reports the panic; still one drop.
        let count2 = Arc::new(AtomicUsize::new(0));
        let bomb = PanicOnDrop(Arc::clone(&count2));
        let h2 = pool.apply_async(move || {
            let _k = bomb;
            2
        });
        open.send(()).unwrap();
        blocker.get().unwrap();
        assert!(matches!(h2.get(), Err(TaskError::Panicked(_))));
        assert_eq!(count2.load(Ordering::SeqCst), 1);

        // Discarded by terminate: one drop, and terminate/join return.
        let (open, wait) = gate();
        let blocker = pool.apply_async(wait);
        let count3 = Arc::new(AtomicUsize::new(0));
        let bomb = PanicOnDrop(Arc::clone(&count3));
        let h3 = pool.apply_async(move || {
            let _k = &bomb;
            3
        });
        let bomb = PanicOnDrop(Arc::clone(&count3));
        pool.spawn(move || {
            let _k = &bomb;
        });
        open.send(()).unwrap();
        let _ = catch_unwind(AssertUnwindSafe(|| pool.terminate()));
        let _ = catch_unwind(AssertUnwindSafe(|| pool.join()));
        let _ = blocker.get();
        let r3 = h3.get();
        assert!(
            matches!(r3, Err(TaskError::Cancelled) | Err(TaskError::Panicked(_))),
            "{r3:?}"
        );
        assert_eq!(count3.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn refused_submissions_drop_the_closure_once() {
    guard(10, || {
        for terminate in [false, true] {
            let pool = ThreadPool::with_workers(2);
            close_or_terminate(&pool, terminate);
            let drops = counters(2);
            let probe = Probe::new(0, &drops);
            let h = pool.apply_async(move || {
                let _k = &probe;
                1
            });
            assert_eq!(h.get(), Err(TaskError::NotRunning));
            let probe = Probe::new(1, &drops);
            let _ = catch_unwind(AssertUnwindSafe(|| {
                pool.spawn(move || {
                    let _k = &probe;
                })
            }));
            pool.join();
            assert_all_once(&drops, "refused");
        }
    });
}

/// A zero-sized value with a `Drop`: a closure capturing only it is a ZST.
struct ZstProbe;

static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);

impl Drop for ZstProbe {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn zst_and_large_closures_run_and_drop_once() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(50, 3);
        // ZST closures: run, cancelled, discarded.
        let z = ZstProbe;
        let f = move || {
            let _k = &z;
            5u8
        };
        assert_eq!(std::mem::size_of_val(&f), 0);
        let mut hs = Vec::new();
        for _ in 0..n {
            let z = ZstProbe;
            hs.push(pool.apply_async(move || {
                let _k = &z;
                5u8
            }));
        }
        for h in hs {
            assert_eq!(h.get(), Ok(5));
        }
        assert_eq!(pool.apply_async(f).get(), Ok(5));
        assert_eq!(ZST_DROPS.load(Ordering::SeqCst), n + 1);

        // Large captures, each with a probe: the bytes survive the move out.
        let drops = counters(n);
        let mut hs = Vec::new();
        for id in 0..n {
            let mut big = [0u64; 512];
            for (j, w) in big.iter_mut().enumerate() {
                *w = (id * 1000 + j) as u64;
            }
            let probe = Probe::new(id, &drops);
            let h = pool.apply_async(move || {
                let _k = &probe;
                big.iter().sum::<u64>()
            });
            if id % 4 == 3 {
                let _ = h.cancel();
                drop(h);
            } else {
                hs.push((id, h));
            }
        }
        for (id, h) in hs {
            let want: u64 = (0..512).map(|j| (id * 1000 + j) as u64).sum();
            assert_eq!(h.get(), Ok(want));
        }
        pool.close();
        pool.join();
        assert_all_once(&drops, "large");
    });
}

#[test]
fn scoped_borrowing_closures_are_gone_before_the_scope_ends() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        for round in 0..pick(40, 2) {
            let n = if cfg!(miri) { 4 } else { 24 };
            let drops = counters(n);
            let local: Vec<usize> = (0..n).collect();
            let sum = AtomicUsize::new(0);
            pool.scope(|s| {
                let mut hs = Vec::new();
                for id in 0..n {
                    let probe = Probe::new(id, &drops);
                    let local = &local;
                    let sum = &sum;
                    match id % 4 {
                        0 => s.spawn(move || {
                            let _k = &probe;
                            sum.fetch_add(local[id], Ordering::SeqCst);
                        }),
                        1 => drop(s.apply_async(move || {
                            let _k = &probe;
                            sum.fetch_add(local[id], Ordering::SeqCst);
                        })),
                        _ => hs.push(s.apply_async(move || {
                            let _k = &probe;
                            sum.fetch_add(local[id], Ordering::SeqCst);
                            local[id]
                        })),
                    }
                }
                for (i, h) in hs.into_iter().enumerate() {
                    if (i + round) % 3 == 0 {
                        let _ = h.cancel();
                    } else if i % 5 == 0 {
                        // Leaked handle: the scope still waits for the task.
                        // (Miri reports the leak: dropped there.)
                        if cfg!(miri) {
                            drop(h);
                        } else {
                            std::mem::forget(h);
                        }
                    } else {
                        let _ = h.get();
                    }
                }
            });
            // Every closure (they borrow `local`) is gone by now.
            assert_all_once(&drops, &format!("scope round {round}"));
            assert!(sum.load(Ordering::SeqCst) <= local.iter().sum());
        }
    });
}

#[test]
fn many_waiters_on_one_slot_all_wake() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        for round in 0..pick(100, 2) {
            let (open, wait) = gate();
            let h = Arc::new(pool.apply_async(move || {
                wait();
                round
            }));
            let waiters = if cfg!(miri) { 2 } else { 4 };
            let start = Arc::new(Barrier::new(waiters + 1));
            let mut ts = Vec::new();
            for w in 0..waiters {
                let h = Arc::clone(&h);
                let start = Arc::clone(&start);
                ts.push(std::thread::spawn(move || {
                    start.wait();
                    match w % 3 {
                        0 => h.wait(),
                        1 => assert!(h.wait_timeout(Duration::from_secs(10))),
                        _ => {
                            // Short timeouts: waiters come and go on the slot.
                            while !h.wait_timeout(Duration::from_micros(50)) {}
                        }
                    }
                    assert!(h.ready());
                }));
            }
            start.wait();
            if round % 2 == 0 {
                std::thread::yield_now();
            }
            open.send(()).unwrap();
            for t in ts {
                t.join().unwrap();
            }
            let h = Arc::try_unwrap(h).unwrap();
            assert_eq!(h.get(), Ok(round));
        }
    });
}

#[test]
fn callbacks_and_futures_see_one_outcome_and_one_closure_drop() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(300, 4);
        let drops = counters(n);
        let ok_calls = Arc::new(AtomicUsize::new(0));
        let err_calls = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for id in 0..n {
            let probe = Probe::new(id, &drops);
            let okc = Arc::clone(&ok_calls);
            let errc = Arc::clone(&err_calls);
            let h = pool
                .apply_async(move || {
                    let _k = &probe;
                    id
                })
                .on_success(move |v| {
                    assert!(*v < n);
                    okc.fetch_add(1, Ordering::SeqCst);
                })
                .on_error(move |_| {
                    errc.fetch_add(1, Ordering::SeqCst);
                });
            if id % 5 == 0 {
                let _ = h.cancel();
            }
            hs.push((id, h));
        }
        let mut oks = 0;
        for (id, h) in hs {
            let got = if id % 2 == 0 {
                futures::executor::block_on(h)
            } else {
                h.get()
            };
            match got {
                Ok(v) => {
                    assert_eq!(v, id);
                    oks += 1;
                }
                Err(e) => assert_eq!(e, TaskError::Cancelled),
            }
        }
        assert_eq!(ok_calls.load(Ordering::SeqCst), oks);
        assert_eq!(err_calls.load(Ordering::SeqCst), n - oks);
        pool.close();
        pool.join();
        assert_all_once(&drops, "callbacks");
    });
}

// ---- imap with 1 ms chunks -------------------------------------------------

/// An endless input that counts what was pulled.
fn counted(pulled: &Arc<AtomicUsize>) -> impl Iterator<Item = u64> + Send + 'static {
    let pulled = Arc::clone(pulled);
    (0u64..).inspect(move |_| {
        pulled.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn imap_read_ahead_stays_bounded_for_tiny_items() {
    if cfg!(miri) {
        return;
    }
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut it = pool.imap(|x: u64| x.wrapping_mul(3), counted(&pulled));
        let mut consumed = 0usize;
        for k in 0..300_000u64 {
            assert_eq!(it.next(), Some(k * 3));
            consumed += 1;
            if k % 1000 == 0 {
                let ahead = pulled.load(Ordering::SeqCst) - consumed;
                assert!(ahead <= 1 << 20, "read {ahead} items ahead");
            }
        }
        drop(it);
        // A user buffer bounds the read-ahead to about the buffer.
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut it = pool
            .imap_unordered(|x: u64| x + 1, counted(&pulled))
            .buffer(64);
        for k in 0..20_000usize {
            assert!(it.next().is_some());
            let ahead = pulled.load(Ordering::SeqCst) - (k + 1);
            assert!(ahead <= 2 * 64, "buffer(64) read {ahead} items ahead");
        }
    });
}

#[test]
fn terminate_mid_imap_ends_promptly_with_mixed_item_costs() {
    if cfg!(miri) {
        return;
    }
    for ordered in [true, false] {
        guard(10, move || {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let started = Arc::new(AtomicUsize::new(0));
            let s = Arc::clone(&started);
            let f = move |x: u64| {
                s.fetch_add(1, Ordering::SeqCst);
                // 1 µs to 2 ms, in a pattern that defeats the estimate.
                let us = match x % 10 {
                    0 => 2000,
                    1..=3 => 200,
                    _ => 1,
                };
                std::thread::sleep(Duration::from_micros(us));
                x
            };
            let p = Arc::clone(&pool);
            let (tx, rx) = mpsc::channel();
            let consumer = std::thread::spawn(move || {
                let mut n = 0usize;
                let mut run = |it: &mut dyn Iterator<Item = u64>| {
                    for _ in it {
                        n += 1;
                        if n == 200 {
                            tx.send(()).unwrap();
                        }
                    }
                };
                let r = catch_unwind(AssertUnwindSafe(|| {
                    if ordered {
                        run(&mut p.imap(f, 0u64..))
                    } else {
                        run(&mut p.imap_unordered(f, 0u64..))
                    }
                }));
                (n, r.is_err())
            });
            rx.recv_timeout(Duration::from_secs(5))
                .expect("imap produced 200 items");
            pool.terminate();
            pool.join();
            let after = started.load(Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(
                started.load(Ordering::SeqCst),
                after,
                "items ran after join"
            );
            let (n, _panicked) = consumer.join().unwrap();
            assert!(n >= 200);
        });
    }
}

#[test]
fn slow_imap_items_spread_over_the_workers() {
    if cfg!(miri) {
        return;
    }
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        // 5 ms items: far above the 1 ms target, so chunks of one item and
        // both workers take part.
        let ids: Vec<std::thread::ThreadId> = pool
            .imap(
                move |x: u32| {
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = x;
                    std::thread::current().id()
                },
                0..40u32,
            )
            .collect();
        let mut distinct = ids.clone();
        distinct.sort_by_key(|t| format!("{t:?}"));
        distinct.dedup();
        assert!(distinct.len() >= 2, "all 40 slow items on one thread");
    });
}

/// An input that yields item k+1 only once result k came back (a producer
/// reacting to results, as with a request/response channel).
fn ping_pong(ordered: bool, chunksize: Option<usize>) {
    guard(15, move || {
        let pool = ThreadPool::with_workers(2);
        let (in_tx, in_rx) = mpsc::channel::<u64>();
        let n = 300u64;
        let (res_tx, res_rx) = mpsc::channel::<u64>();
        let producer = std::thread::spawn(move || {
            for k in 0..n {
                in_tx.send(k).unwrap();
                match res_rx.recv_timeout(Duration::from_secs(5)) {
                    Ok(got) => assert_eq!(got, k),
                    Err(e) => panic!("result {k} never came back: {e:?}"),
                }
            }
        });
        let mut count = 0;
        let mut feed = |v: u64| {
            let _ = res_tx.send(v);
            count += 1;
        };
        if ordered {
            let mut it = pool.imap(|x: u64| x, in_rx);
            if let Some(c) = chunksize {
                it = it.chunksize(c);
            }
            it.for_each(&mut feed);
        } else {
            let mut it = pool.imap_unordered(|x: u64| x, in_rx);
            if let Some(c) = chunksize {
                it = it.chunksize(c);
            }
            it.for_each(&mut feed);
        }
        producer.join().unwrap();
        assert_eq!(count, n);
    });
}

#[test]
fn imap_over_a_ping_pong_input_with_chunksize_1_streams() {
    if cfg!(miri) {
        return;
    }
    ping_pong(true, Some(1));
    ping_pong(false, Some(1));
}

/// Was a hang: a credit read its whole chunk before mapping it, so an
/// input waiting for the result of an item the same credit held never got
/// it. Now the consumer rescues the items of a stalled read (`stash.rs`).
#[test]
fn imap_over_a_ping_pong_input_with_automatic_chunks_streams() {
    if cfg!(miri) {
        return;
    }
    ping_pong(true, None);
    ping_pong(false, None);
}

#[test]
fn dropping_imap_mid_stream_drops_every_input_once() {
    if cfg!(miri) {
        return;
    }
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        for round in 0..10usize {
            let n = 5000;
            let drops = counters(n);
            let inputs: Vec<Probe> = (0..n).map(|id| Probe::new(id, &drops)).collect();
            {
                let mut it = if round % 2 == 0 {
                    Box::new(pool.imap(|p: Probe| p.id, inputs)) as Box<dyn Iterator<Item = usize>>
                } else {
                    Box::new(pool.imap_unordered(|p: Probe| p.id, inputs))
                };
                for _ in 0..(round * 137) {
                    it.next().unwrap();
                }
            }
            // Credits still out may hold inputs for a moment: wait for idle.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while drops.iter().any(|d| d.load(Ordering::SeqCst) == 0)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_all_once(&drops, &format!("imap drop round {round}"));
        }
    });
}

#[test]
fn slow_imap_items_go_one_by_one_so_the_read_ahead_stays_small() {
    if cfg!(miri) {
        return;
    }
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        for ordered in [true, false] {
            let pulled = Arc::new(AtomicUsize::new(0));
            // 3 ms per item (at least: a sleep never ends early), far above
            // the 1 ms target: every chunk is one item, so the default
            // buffer (4 chunks per worker) lets at most 8 items be read
            // beyond those handed out.
            let f = |x: u64| {
                std::thread::sleep(Duration::from_millis(3));
                x
            };
            let mut it: Box<dyn Iterator<Item = u64>> = if ordered {
                Box::new(pool.imap(f, counted(&pulled)))
            } else {
                Box::new(pool.imap_unordered(f, counted(&pulled)))
            };
            for k in 1..=40usize {
                assert!(it.next().is_some());
                let ahead = pulled.load(Ordering::SeqCst) - k;
                assert!(
                    ahead <= 8,
                    "ordered={ordered}: {ahead} slow items read ahead after {k}"
                );
            }
        }
    });
}

#[test]
fn panicking_and_map_async_closures_are_dropped_once() {
    quiet();
    guard(20, || {
        for round in 0..pick(20, 2) {
            let pool = ThreadPool::with_workers(2);
            let drops = counters(4);
            let p = |id| Probe::new(id, &drops);
            // A closure that panics when run: its captures are dropped by the
            // unwinding, once, and the handle reports the panic.
            let probe = p(0);
            let h = pool.apply_async(move || -> u8 {
                let _k = &probe;
                panic!("shrink-attack: run");
            });
            match h.get() {
                Err(TaskError::Panicked(m)) => assert!(m.contains("shrink-attack")),
                other => panic!("{other:?}"),
            }
            assert_eq!(drops[0].load(Ordering::SeqCst), 1);
            // map_async: the function (shared by the items) is dropped once,
            // whether the map runs, is cancelled, or is discarded.
            let probe = p(1);
            let m = pool.map_async(
                move |x: u32| {
                    let _k = &probe;
                    x + 1
                },
                0..100u32,
            );
            assert_eq!(m.get().unwrap().len(), 100);
            let (open, wait) = gate();
            let (open2, wait2) = gate();
            let b1 = pool.apply_async(wait);
            let b2 = pool.apply_async(wait2);
            let probe = p(2);
            let m2 = pool.map_async(
                move |x: u32| {
                    let _k = &probe;
                    x
                },
                0..10u32,
            );
            let probe = p(3);
            let m3 = pool.map_async(
                move |x: u32| {
                    let _k = &probe;
                    x
                },
                0..10u32,
            );
            if round % 2 == 0 {
                let _ = m2.cancel();
            }
            open.send(()).unwrap();
            open2.send(()).unwrap();
            if round % 3 == 0 {
                pool.terminate();
            }
            pool.close();
            pool.join();
            let _ = (b1.get(), b2.get());
            let r2 = m2.get();
            let r3 = m3.get();
            assert!(r2.is_ok() || r2 == Err(TaskError::Cancelled), "{r2:?}");
            assert!(r3.is_ok() || r3 == Err(TaskError::Cancelled), "{r3:?}");
            assert_all_once(&drops, &format!("round {round}"));
        }
    });
}

/// A result that borrows from the scope's caller and counts its drop there.
struct Borrowed<'a>(&'a AtomicUsize);

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_dropped_handle_leaves_the_outcome_to_the_claimer_before_the_scope_ends() {
    quiet();
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        for round in 0..pick(50, 2) {
            // The handle is dropped while the task is queued: the claimer
            // drops the borrowed result itself, before the scope ends.
            let dropped = AtomicUsize::new(0);
            pool.scope(|s| {
                let (open, wait) = gate();
                let b = s.apply_async(wait);
                let d = &dropped;
                drop(s.apply_async(move || Borrowed(d)));
                open.send(()).unwrap();
                if round % 2 == 0 {
                    b.get().unwrap();
                }
            });
            assert_eq!(dropped.load(Ordering::SeqCst), 1, "round {round}");
            // Its panic, which no handle saw, is re-raised by the scope.
            let err = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    let (open, wait) = gate();
                    let b = s.apply_async(wait);
                    drop(s.apply_async(|| -> u8 { panic!("shrink-attack: unobserved") }));
                    open.send(()).unwrap();
                    drop(b);
                })
            }))
            .expect_err("the scope re-raises an unobserved panic");
            assert!(panic_message(err.as_ref()).contains("shrink-attack"));
        }
    });
}
