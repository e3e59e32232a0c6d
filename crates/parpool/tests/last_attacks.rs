//! Last hostile pass: size extremes, close/terminate racing every call, a
//! panic in every user hook (each in a child process), and nesting on a
//! one-worker pool. Every body that could hang runs under a timeout.

#[path = "common/child.rs"]
mod child;
mod common;

use child::catch;
use parpool::{BuildError, TaskError, ThreadPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn guard<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hang"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!(),
        },
    }
}

fn assert_clear(msg: &str, needle: &str) {
    assert!(
        msg.contains("parpool") || msg.contains(needle),
        "unclear panic message: {msg:?}"
    );
}

#[test]
fn size_extremes_give_clear_errors_or_work() {
    guard(|| {
        assert!(matches!(
            ThreadPool::builder().workers(0).build(),
            Err(BuildError::ZeroWorkers)
        ));
        assert!(matches!(
            ThreadPool::builder().workers(usize::MAX).build(),
            Err(BuildError::TooManyWorkers { .. })
        ));
        let m = catch(|| ThreadPool::with_workers(0))
            .map(|_| ())
            .unwrap_err();
        assert_clear(&m, "worker");
        let m = catch(|| ThreadPool::with_workers(usize::MAX))
            .map(|_| ())
            .unwrap_err();
        assert_clear(&m, "worker");

        let pool = ThreadPool::with_workers(2);
        let m = catch(|| pool.chunked(0).map(|x: u32| x, 0..3u32)).unwrap_err();
        assert_clear(&m, "chunksize");
        assert_eq!(
            pool.chunked(usize::MAX).map(|x| x + 1, 0..100u32),
            (1..101).collect::<Vec<_>>()
        );
        assert_eq!(
            pool.chunked(usize::MAX).try_map(Ok::<_, ()>, vec![1u8, 2]),
            Ok(vec![1, 2])
        );
        assert_eq!(
            pool.chunked(usize::MAX)
                .starmap(|a: u8, b: u8| a + b, vec![(1, 2)]),
            [3]
        );

        // Empty inputs everywhere.
        assert!(pool.map(|x: u8| x, Vec::<u8>::new()).is_empty());
        assert!(pool.map(|x: &u8| *x, &[] as &[u8]).is_empty());
        assert!(pool
            .map(|x: u8| x, parpool::iter(std::iter::empty::<u8>()))
            .is_empty());
        assert!(pool.map(|x: u32| x, 5..5u32).is_empty());
        assert_eq!(
            pool.try_map(|x: u8| Err::<u8, _>(x), Vec::<u8>::new()),
            Ok(vec![])
        );
        assert!(pool
            .starmap(|a: u8, b: u8| a + b, Vec::<(u8, u8)>::new())
            .is_empty());
        assert_eq!(
            pool.map_async(|x: u8| x, Vec::<u8>::new()).get(),
            Ok(vec![])
        );
        assert_eq!(pool.imap(|x: u8| x, Vec::<u8>::new()).count(), 0);
        assert_eq!(pool.imap_unordered(|x: u8| x, Vec::<u8>::new()).count(), 0);
        assert_eq!(
            pool.imap(|x: u8| x, Vec::<u8>::new())
                .chunksize(usize::MAX)
                .buffer(usize::MAX)
                .count(),
            0
        );

        // imap chunksize/buffer extremes.
        let m = catch(|| pool.imap(|x: u8| x, vec![1u8]).chunksize(0))
            .map(|_| ())
            .unwrap_err();
        assert_clear(&m, "chunksize");
        let m = catch(|| pool.imap(|x: u8| x, vec![1u8]).buffer(0))
            .map(|_| ())
            .unwrap_err();
        assert_clear(&m, "buffer");
        let m = catch(|| pool.imap_unordered(|x: u8| x, vec![1u8]).buffer(0))
            .map(|_| ())
            .unwrap_err();
        assert_clear(&m, "buffer");
        let v: Vec<u32> = pool
            .imap(|x: u32| x, 0..1000u32)
            .chunksize(usize::MAX)
            .buffer(usize::MAX)
            .collect();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
        let v: Vec<u32> = pool
            .imap(|x: u32| x, 0..1000u32)
            .chunksize(1)
            .buffer(1)
            .collect();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
        let mut v: Vec<u32> = pool
            .imap_unordered(|x: u32| x, 0..1000u32)
            .chunksize(usize::MAX)
            .collect();
        v.sort();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
        // Endless input, huge chunksize/buffer, take a few.
        assert_eq!(
            pool.imap(|x: u64| x, 0u64..)
                .chunksize(usize::MAX)
                .buffer(usize::MAX)
                .take(5)
                .count(),
            5
        );
        // A large worker count that the OS can still start.
        let big = ThreadPool::builder().workers(300).build().unwrap();
        assert_eq!(big.map(|x| x * 2, 0..1000u32).len(), 1000);
        big.close();
        big.join();
    });
}

/// Each call type raced against close() or terminate() from another thread.
#[test]
fn close_and_terminate_race_every_call() {
    guard(|| {
        for i in 0..300usize {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let p2 = pool.clone();
            let term = i % 2 == 0;
            let stopper =
                std::thread::spawn(move || if term { p2.terminate() } else { p2.close() });
            match i % 7 {
                0 => assert_eq!(pool.apply(|| 7), 7),
                1 => assert_eq!(pool.map(|x| x + 1, 0..50u32), (1..51).collect::<Vec<_>>()),
                2 => assert_eq!(pool.try_map(Ok::<_, ()>, 0..50u32), Ok((0..50).collect())),
                3 => assert_eq!(
                    pool.starmap(|a: u32, b: u32| a * b, vec![(2, 3); 20]),
                    vec![6; 20]
                ),
                4 => match pool.apply_async(|| 5).get() {
                    Ok(5) | Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => {}
                    other => panic!("apply_async under race: {other:?}"),
                },
                5 => match pool.map_async(|x| x, 0..50u32).get() {
                    Ok(v) => assert_eq!(v, (0..50).collect::<Vec<_>>()),
                    Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => {}
                    Err(e) => panic!("map_async under race: {e:?}"),
                },
                _ => {
                    let p = pool.clone();
                    let r = catch(move || p.imap(|x: u32| x, 0..50u32).collect::<Vec<_>>());
                    match r {
                        Ok(v) => assert_eq!(
                            v,
                            (0..50).collect::<Vec<_>>(),
                            "imap lost or reordered results"
                        ),
                        Err(m) => assert_clear(&m, "imap"),
                    }
                    // After terminate, a clear "stopped early" panic is the
                    // documented outcome; otherwise every item exactly once.
                    let p = pool.clone();
                    let r =
                        catch(move || p.imap_unordered(|x: u32| x, 0..50u32).collect::<Vec<_>>());
                    match r {
                        Ok(mut u) => {
                            u.sort();
                            assert_eq!(
                                u,
                                (0..50).collect::<Vec<_>>(),
                                "imap_unordered lost or duplicated results"
                            );
                        }
                        Err(m) => assert_clear(&m, "imap"),
                    }
                }
            }
            stopper.join().unwrap();
            pool.join();
        }
    });
}

// ---- a panic in every user hook, each in a child process -----------------

/// Panics on drop. Only one per collection: std itself aborts when a
/// second element's drop panics while the first one unwinds.
struct DropBoom;
impl Drop for DropBoom {
    fn drop(&mut self) {
        panic!("EXPECTED drop boom");
    }
}

/// Panics on drop only when armed.
struct Bomb(bool);
impl Drop for Bomb {
    fn drop(&mut self) {
        if self.0 && !std::thread::panicking() {
            panic!("EXPECTED item drop boom");
        }
    }
}

fn pool_still_works(pool: &ThreadPool) {
    assert_eq!(
        pool.map(|x| x * 2, 0..20u32),
        (0..20).map(|x| x * 2).collect::<Vec<_>>()
    );
    assert_eq!(pool.apply_async(|| 3).get(), Ok(3));
}

#[test]
fn hook_panic_in_closure() {
    child::run("hook_panic_in_closure", 20, || {
        let pool = ThreadPool::with_workers(1);
        assert!(catch(|| pool.apply(|| -> u8 { panic!("EXPECTED closure") })).is_err());
        assert!(matches!(
            pool.apply_async(|| -> u8 { panic!("EXPECTED closure") })
                .get(),
            Err(TaskError::Panicked(_))
        ));
        assert!(catch(|| pool.map(
            |x: u32| if x == 3 { panic!("EXPECTED") } else { x },
            0..10u32
        ))
        .is_err());
        assert!(catch(|| pool.try_map(
            |x: u32| if x == 3 {
                panic!("EXPECTED")
            } else {
                Ok::<_, ()>(x)
            },
            0..10u32
        ))
        .is_err());
        assert!(catch(|| pool
            .imap(
                |x: u32| if x == 3 { panic!("EXPECTED") } else { x },
                0..10u32
            )
            .count())
        .is_err());
        pool_still_works(&pool);
    });
}

#[test]
fn hook_panic_in_closure_drop() {
    child::run("hook_panic_in_closure_drop", 20, || {
        let pool = ThreadPool::with_workers(1);
        let d = DropBoom;
        let _ = catch(|| {
            pool.apply(move || {
                let _k = &d;
                1
            })
        });
        let d = DropBoom;
        let _ = catch(|| {
            pool.apply_async(move || {
                let _k = &d;
                1
            })
            .get()
        });
        let d = DropBoom;
        let _ = catch(|| {
            pool.map(
                move |x: u32| {
                    let _k = &d;
                    x
                },
                0..10u32,
            )
        });
        let d = DropBoom;
        let _ = catch(|| {
            pool.imap(
                move |x: u32| {
                    let _k = &d;
                    x
                },
                0..10u32,
            )
            .count()
        });
        let d = DropBoom;
        let _ = catch(|| {
            pool.map_async(
                move |x: u32| {
                    let _k = &d;
                    x
                },
                0..10u32,
            )
            .get()
        });
        // A closure whose drop panics, discarded unrun by terminate.
        let pool2 = ThreadPool::with_workers(1);
        let (tx, rx) = mpsc::channel::<()>();
        let blocker = pool2.apply_async(move || {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        });
        let d = DropBoom;
        let queued = pool2.apply_async(move || {
            let _k = &d;
            1
        });
        let _ = catch(|| pool2.terminate());
        drop(tx);
        let _ = blocker.get();
        let _ = catch(move || queued.get());
        pool2.join();
        pool_still_works(&pool);
    });
}

#[test]
fn hook_panic_in_input_next() {
    child::run("hook_panic_in_input_next", 20, || {
        let pool = ThreadPool::with_workers(1);
        let bad = || (0..10u32).map(|x| if x == 4 { panic!("EXPECTED next") } else { x });
        assert!(catch(|| pool.map(|x| x, parpool::iter(bad()))).is_err());
        assert!(catch(|| pool.try_map(Ok::<_, ()>, parpool::iter(bad()))).is_err());
        let v: Vec<Result<u32, String>> = {
            let mut it = pool.imap(|x: u32| x, bad());
            let mut out = vec![];
            loop {
                match catch(|| it.next()) {
                    Ok(Some(x)) => out.push(Ok(x)),
                    Ok(None) => break,
                    Err(m) => {
                        out.push(Err(m));
                        break;
                    }
                }
            }
            out
        };
        assert_eq!(v[..4], [Ok(0), Ok(1), Ok(2), Ok(3)], "{v:?}");
        assert!(v[4].is_err(), "{v:?}");
        assert!(catch(|| pool.imap_unordered(|x: u32| x, bad()).count()).is_err());
        pool_still_works(&pool);
    });
}

#[test]
fn hook_panic_in_input_item_drop() {
    child::run("hook_panic_in_input_item_drop", 20, || {
        let pool = ThreadPool::with_workers(1);
        let mk = || (0..6).map(|i| Bomb(i == 2)).collect::<Vec<_>>();
        let _ = catch(|| pool.map(|_d: Bomb| 1u8, mk()));
        let _ = catch(|| pool.map(|_d: &Bomb| 1u8, &mk()));
        let _ = catch(|| pool.chunked(2).map(|_d: Bomb| 1u8, mk()));
        let _ = catch(|| pool.chunked(usize::MAX).map(|_d: Bomb| 1u8, mk()));
        let _ = catch(|| pool.try_map(|_d: Bomb| Err::<u8, u8>(1), mk()));
        let _ = catch(|| pool.map(|_d: Bomb| 1u8, parpool::iter(mk())));
        let _ = catch(|| pool.imap(|_d: Bomb| 1u8, mk()).count());
        let _ = catch(|| pool.imap(|_d: Bomb| 1u8, mk()).next());
        let _ = catch(|| {
            pool.imap_unordered(|_d: Bomb| 1u8, mk())
                .chunksize(3)
                .count()
        });
        let _ = catch(|| pool.map_async(|_d: Bomb| 1u8, mk()).get());
        // Results whose drop panics, never read.
        let _ = catch(|| drop(pool.imap(|x: u32| Bomb(x == 2), 0..5u32)));
        let mut it = pool.imap(|x: u32| Bomb(x == 2), 0..5u32);
        let _ = catch(|| it.next());
        let _ = catch(move || drop(it));
        let _ = catch(|| drop(pool.map_async(|x: u32| Bomb(x == 2), 0..5u32)));
        pool_still_works(&pool);
    });
}

#[test]
fn hook_panic_in_callbacks() {
    child::run("hook_panic_in_callbacks", 20, || {
        let pool = ThreadPool::with_workers(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let r1 = ran.clone();
        let h = pool.apply_async(|| 1).on_success(move |_| {
            r1.fetch_add(1, Ordering::SeqCst);
            panic!("EXPECTED cb")
        });
        assert_eq!(catch(move || h.get()).ok(), Some(Ok(1)));
        let r2 = ran.clone();
        let h = pool
            .apply_async(|| -> u8 { panic!("EXPECTED task") })
            .on_error(move |_| {
                r2.fetch_add(1, Ordering::SeqCst);
                panic!("EXPECTED cb")
            });
        let _ = catch(move || h.get());
        // Callback registered after completion (runs on the caller).
        let h = pool.apply_async(|| 2);
        h.wait();
        let _ = catch(move || h.on_success(|_| panic!("EXPECTED late cb")).get());
        // Callback whose captured state panics on drop and is never called.
        let d = DropBoom;
        let h = pool.apply_async(|| 3).on_error(move |_| {
            let _k = &d;
        });
        let _ = catch(move || h.get());
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        pool_still_works(&pool);
    });
}

// ---- nesting on a one-worker pool --------------------------------------

#[test]
fn nesting_on_one_worker_does_not_deadlock() {
    guard(|| {
        let pool = Arc::new(ThreadPool::with_workers(1));
        assert_eq!(pool.apply(|| pool.apply(|| pool.apply(|| 3))), 3);
        let v = pool.map(
            |x: u32| pool.map(|y: u32| x * y, 0..4u32).iter().sum::<u32>(),
            0..4u32,
        );
        assert_eq!(v, [0, 6, 12, 18]);
        let p = pool.clone();
        let h = pool.apply_async(move || p.imap(|x: u32| x + 1, 0..10u32).sum::<u32>());
        assert_eq!(h.get(), Ok(55));
        let p = pool.clone();
        let h = pool.apply_async(move || {
            let q = p.clone();
            p.apply_async(move || q.map(|x: u32| x, 0..5u32).len())
                .get()
        });
        match h.get() {
            Ok(Ok(5)) => {}
            other => panic!("apply_async+get inside a task on 1 worker: {other:?}"),
        }
        let p = pool.clone();
        let h = pool.apply_async(move || p.map_async(|x: u32| x, 0..5u32).get());
        assert_eq!(h.get(), Ok(Ok(vec![0, 1, 2, 3, 4])));
        let p = pool.clone();
        let h = pool.apply_async(move || p.imap_unordered(|x: u32| x, 0..10u32).count());
        assert_eq!(h.get(), Ok(10));
        let r = pool.scope(|s| s.apply_async(|| pool.map(|x: u32| x, 0..3u32).len()).get());
        assert_eq!(r, Ok(3));
    });
}

/// Lifecycle calls from inside the pool's own threads (tasks and callbacks).
#[test]
fn lifecycle_calls_from_inside_workers_and_callbacks() {
    guard(|| {
        // join() from a worker of a closed pool: clear panic or return, never a hang.
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = pool.clone();
        let h = pool.apply_async(move || {
            p.close();
            catch(|| p.join()).err()
        });
        let r = h.get();
        assert!(r.is_ok(), "{r:?}");
        pool.join();

        // terminate() from inside an imap closure on one worker.
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = pool.clone();
        let r = catch(move || {
            let q = p.clone();
            p.imap(
                move |x: u32| {
                    if x == 3 {
                        q.terminate()
                    }
                    x
                },
                0..20u32,
            )
            .collect::<Vec<_>>()
        });
        if let Ok(v) = r {
            assert_eq!(v, (0..20).collect::<Vec<_>>());
        }
        pool.join();

        // apply / map / join inside an on_success callback that runs on the worker.
        let pool = Arc::new(ThreadPool::with_workers(1));
        let (tx, rx) = mpsc::channel();
        let p = pool.clone();
        let h = pool.apply_async(|| 4).on_success(move |v| {
            let a = p.apply(|| 1);
            let m = p.map(|x: u32| x, 0..3u32).len();
            let mut v2 = p.apply_async(|| 9);
            let g = v2.get_timeout(Duration::from_secs(10));
            let _ = tx.send((*v, a, m, g));
        });
        assert_eq!(h.get(), Ok(4));
        let got = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("callback never finished");
        assert_eq!(got, (4, 1, 3, Ok(9)));

        // Last handle dropped inside a callback.
        let pool = Arc::new(ThreadPool::with_workers(1));
        let p = pool.clone();
        let (tx, rx) = mpsc::channel();
        let h = pool.apply_async(|| 1).on_success(move |_| {
            drop(p);
            let _ = tx.send(());
        });
        drop(pool);
        assert_eq!(h.get(), Ok(1));
        rx.recv_timeout(Duration::from_secs(15))
            .expect("callback hung");
    });
}

/// Many threads hammering calls while another closes then terminates.
#[test]
fn many_callers_racing_close_then_terminate() {
    guard(|| {
        for _ in 0..30 {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let callers: Vec<_> = (0..4)
                .map(|k| {
                    let p = pool.clone();
                    std::thread::spawn(move || {
                        for j in 0..20u32 {
                            assert_eq!(p.apply(move || j + k), j + k);
                            assert_eq!(p.map(|x| x, 0..j).len(), j as usize);
                            let _ = catch(|| p.imap(|x: u32| x, 0..j).count());
                            let _ = p.apply_async(|| 1).get_timeout(Duration::from_secs(10));
                        }
                    })
                })
                .collect();
            pool.close();
            std::thread::yield_now();
            pool.terminate();
            for c in callers {
                c.join().unwrap();
            }
            pool.join();
        }
    });
}
