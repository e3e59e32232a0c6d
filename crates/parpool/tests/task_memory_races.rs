//! Task memory (`slab.rs`, `task_ptr.rs`) under races: tasks of every size
//! class made, cancelled, dropped and completed across threads while pools
//! are closed, terminated, built and dropped; and `fork` while other
//! threads hold the slab's locks. From a hostile review of the slab.

mod common;

use parpool::ThreadPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn with_timeout<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("hung (timeout)")
}

/// terminate/close while 4 threads submit, handles dropped/cancelled/got on
/// other threads; pools created and dropped meanwhile on other threads.
#[test]
fn race_terminate_submit_cancel_and_pool_churn() {
    with_timeout(120, || {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        // churn: pools made and dropped (POOLS 0<->1 transitions, release_empty)
        let churn: Vec<_> = (0..2)
            .map(|k| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let p = ThreadPool::with_workers(1);
                        let hs: Vec<_> = (0..(200 + k * 3000) as u64)
                            .map(|i| p.apply_async(move || i))
                            .collect();
                        for (i, h) in hs.into_iter().enumerate() {
                            assert_eq!(h.get().unwrap(), i as u64);
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let lost = Arc::new(AtomicUsize::new(0));
        for round in 0..30 {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let (tx, rx) = mpsc::channel::<parpool::AsyncResult<u64>>();
            let rx = Arc::new(std::sync::Mutex::new(rx));
            let consumers: Vec<_> = (0..2)
                .map(|c| {
                    let rx = rx.clone();
                    let lost = lost.clone();
                    std::thread::spawn(move || loop {
                        let h = match rx.lock().unwrap().recv() {
                            Ok(h) => h,
                            Err(_) => break,
                        };
                        match (c + h.ready() as usize) % 3 {
                            0 => drop(h),
                            1 => {
                                h.cancel();
                                let _ = h.get();
                            }
                            _ => match h.get() {
                                Ok(_) => {}
                                Err(parpool::TaskError::Cancelled)
                                | Err(parpool::TaskError::NotRunning) => {}
                                Err(e) => {
                                    eprintln!("unexpected {e:?}");
                                    lost.fetch_add(1, Ordering::Relaxed);
                                }
                            },
                        }
                    })
                })
                .collect();
            let producers: Vec<_> = (0..3)
                .map(|_| {
                    let pool = pool.clone();
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        for i in 0..3000u64 {
                            let h = pool.apply_async(move || i);
                            if tx.send(h).is_err() {
                                break;
                            }
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_micros(200 * (round % 7)));
            if round % 2 == 0 {
                pool.terminate();
            } else {
                pool.close();
            }
            for p in producers {
                p.join().unwrap();
            }
            drop(tx);
            for c in consumers {
                c.join().unwrap();
            }
            pool.join();
        }
        stop.store(true, Ordering::Relaxed);
        for c in churn {
            c.join().unwrap();
        }
        assert_eq!(lost.load(Ordering::Relaxed), 0);
    })
}

/// Integrity: tasks of every class (and the global path) made on 3 threads,
/// handles passed to other threads that get/cancel/drop them; every result
/// must be exactly its input's (a slot handed out twice would corrupt one).
#[test]
fn integrity_all_classes_cross_thread() {
    with_timeout(120, || {
        use std::sync::Arc;
        type Check = Box<dyn FnOnce(u64) + Send>;
        fn sized<const N: usize>(pool: &ThreadPool, k: u64) -> Check {
            let pad = [k; N];
            let h = pool.apply_async(move || {
                let mut out = pad;
                out[N - 1] = out[0].wrapping_mul(3);
                out
            });
            Box::new(move |k: u64| {
                if k % 7 == 0 {
                    h.cancel();
                }
                if k % 5 == 0 {
                    drop(h);
                    return;
                }
                match h.get() {
                    Ok(v) => {
                        assert!(v[..N - 1].iter().all(|&x| x == k), "corrupt result for {k}");
                        assert_eq!(v[N - 1], k.wrapping_mul(3));
                    }
                    Err(parpool::TaskError::Cancelled) => {}
                    Err(e) => panic!("{e:?}"),
                }
            })
        }
        let pool = Arc::new(ThreadPool::with_workers(2));
        for round in 0..40u64 {
            let (tx, rx) = mpsc::channel::<(u64, Check)>();
            let rx = Arc::new(std::sync::Mutex::new(rx));
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let rx = rx.clone();
                    std::thread::spawn(move || loop {
                        let m = rx.lock().unwrap().recv();
                        match m {
                            Ok((k, f)) => f(k),
                            Err(_) => break,
                        }
                    })
                })
                .collect();
            let producers: Vec<_> = (0..3u64)
                .map(|p| {
                    let pool = pool.clone();
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        for i in 0..2000u64 {
                            let k = round * 1_000_000 + p * 100_000 + i;
                            let f = match i % 5 {
                                0 => sized::<1>(&pool, k),
                                1 => sized::<6>(&pool, k),
                                2 => sized::<12>(&pool, k),
                                3 => sized::<20>(&pool, k),
                                _ => sized::<40>(&pool, k),
                            };
                            tx.send((k, f)).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            for p in producers {
                p.join().unwrap();
            }
            for c in consumers {
                c.join().unwrap();
            }
        }
    })
}

/// A child forked while other threads allocate and free tasks makes tasks
/// of every class: none may wait for a lock a vanished thread held (the
/// slab takes its locks around `fork`; before, 29 of 1 500 children hung).
#[cfg(target_os = "linux")]
#[test]
fn fork_while_tasks_are_allocated_elsewhere() {
    // A pool made and terminated before any fork: in a child, apply_async on
    // it is refused without threads, but still allocates its handle in task
    // memory (Refused<[u8; 160]>: the 256-byte class), touching only the slab.
    let dead = ThreadPool::with_workers(1);
    dead.terminate();
    dead.join();
    let stop = Arc::new(AtomicBool::new(false));
    let pool = Arc::new(ThreadPool::with_workers(2));
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let pool = pool.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let pool = pool.clone();
                    // short-lived threads: each takes a batch and returns its cache on exit
                    std::thread::spawn(move || {
                        let pad = [1u8; 150]; // task of the 256-byte class
                        let hs: Vec<_> = (0..300u64)
                            .map(|i| pool.apply_async(move || pad[0] as u64 + i))
                            .collect();
                        let hs2: Vec<_> =
                            (0..300u64).map(|i| pool.apply_async(move || i)).collect();
                        let pad3 = [1u8; 90];
                        let hs3: Vec<_> = (0..300u64)
                            .map(|i| pool.apply_async(move || pad3[0] as u64 + i))
                            .collect();
                        for h in hs.into_iter().chain(hs2).chain(hs3) {
                            h.get().unwrap();
                        }
                    })
                    .join()
                    .unwrap();
                }
            })
        })
        .collect();
    let mut hung = 0;
    let tries = 600;
    for _ in 0..tries {
        let child = || {
            // One task allocation of each class (the forking thread's
            // cache is empty).
            drop(dead.apply_async(|| [0u8; 1]));
            drop(dead.apply_async(|| [0u8; 60]));
            drop(dead.apply_async(|| [0u8; 120]));
            drop(dead.apply_async(|| [0u8; 180]));
        };
        if common::memory::forked_child_hangs(child, Duration::from_secs(3)) {
            hung += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.join().unwrap();
    }
    eprintln!("{hung} of {tries} children hung on their first task allocation");
    assert_eq!(hung, 0, "{hung} of {tries} forked children deadlocked");
}
