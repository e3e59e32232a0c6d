//! Every size and duration argument at 0, 1 and MAX gives correct results or
//! a clear panic at the call site: never UB, an abort, a dead worker or a hang.
//! Cases that could abort (overflowing arithmetic on raw buffers, huge
//! allocations) run in a child process.
#[path = "common/child.rs"]
mod child;
mod common;

use child::{catch, Tracker};
use common::guard;
use parpool::{TaskError, ThreadPool, WaitFor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const HUGE_CHUNKS: [usize; 3] = [usize::MAX, usize::MAX - 1, usize::MAX / 2 + 1];
const N: usize = 1000;
/// The documented hard cap on imap read-ahead, in items.
const READ_AHEAD_CAP: usize = 1 << 20;

/// A 1-worker pool must still run a fresh task: a dead or wedged worker
/// shows as a timeout.
fn assert_worker_alive(pool: &Arc<ThreadPool>, what: &str) {
    let p = Arc::clone(pool);
    let r = guard(5, move || p.apply_async(|| 1).get());
    assert_eq!(r, Ok(1), "{what}");
}

#[test]
fn chunked_huge_map_drops_every_input_once() {
    child::run("chunked_huge_map_drops_every_input_once", 30, || {
        static T: Tracker = Tracker::new();
        let pool = Arc::new(ThreadPool::with_workers(3));
        for n in HUGE_CHUNKS {
            T.reset();
            let out = pool
                .chunked(n)
                .map(|x: child::Item| x.seen() * 2, T.items(N));
            assert_eq!(
                out,
                (0..N).map(|i| i * 2).collect::<Vec<_>>(),
                "chunked({n}).map"
            );
            T.assert_no_call_twice(&format!("chunked({n}).map"));
            T.assert_all_dropped_once(N, &format!("chunked({n}).map"));
        }
        assert_worker_alive(&pool, "after huge chunked map");
    });
}

#[test]
fn chunked_huge_try_map_drops_every_input_once() {
    child::run("chunked_huge_try_map_drops_every_input_once", 30, || {
        static T: Tracker = Tracker::new();
        let pool = Arc::new(ThreadPool::with_workers(3));
        for n in HUGE_CHUNKS {
            T.reset();
            let out = pool
                .chunked(n)
                .try_map(|x: child::Item| Ok::<_, ()>(x.seen() + 1), T.items(N));
            assert_eq!(out, Ok((1..=N).collect::<Vec<_>>()), "chunked({n}).try_map");
            T.assert_no_call_twice(&format!("chunked({n}).try_map"));
            T.assert_all_dropped_once(N, &format!("chunked({n}).try_map"));
            // A failing one: everything still dropped exactly once.
            T.reset();
            let out = pool.chunked(n).try_map(
                |x: child::Item| if x.seen() == 500 { Err(500) } else { Ok(x.id) },
                T.items(N),
            );
            assert_eq!(out, Err(500), "chunked({n}).try_map failing at 500");
            T.assert_no_call_twice(&format!("chunked({n}).try_map failing"));
            T.assert_all_dropped_once(N, &format!("chunked({n}).try_map failing"));
        }
        assert_worker_alive(&pool, "after huge chunked try_map");
    });
}

#[test]
fn chunked_huge_map_async_drops_every_input_once() {
    child::run("chunked_huge_map_async_drops_every_input_once", 30, || {
        static T: Tracker = Tracker::new();
        let pool = Arc::new(ThreadPool::with_workers(3));
        for n in HUGE_CHUNKS {
            T.reset();
            let h = pool
                .chunked(n)
                .map_async(|x: child::Item| x.seen() * 3, T.items(N));
            let out = h.get();
            assert_eq!(
                out,
                Ok((0..N).map(|i| i * 3).collect::<Vec<_>>()),
                "chunked({n}).map_async"
            );
            T.assert_no_call_twice(&format!("chunked({n}).map_async"));
            T.assert_all_dropped_once(N, &format!("chunked({n}).map_async"));
        }
        assert_worker_alive(&pool, "after huge chunked map_async");
    });
}

#[test]
fn imap_chunksize_usize_max_keeps_the_worker_alive() {
    child::run_limited(
        "imap_chunksize_usize_max_keeps_the_worker_alive",
        30,
        Some(4096),
        || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let out: Vec<u64> = pool
                .imap(|x: u64| x * 2, 0..1000u64)
                .chunksize(usize::MAX)
                .collect();
            assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
            assert_worker_alive(&pool, "after imap chunksize(usize::MAX)");
            let mut out: Vec<u64> = pool
                .imap_unordered(|x: u64| x * 2, 0..1000u64)
                .chunksize(usize::MAX)
                .collect();
            out.sort_unstable();
            assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
            assert_worker_alive(&pool, "after imap_unordered chunksize(usize::MAX)");
        },
    );
}

#[test]
fn imap_chunksize_two_to_the_40_keeps_the_worker_alive() {
    child::run_limited(
        "imap_chunksize_two_to_the_40_keeps_the_worker_alive",
        30,
        Some(4096),
        || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let out: Vec<u64> = pool
                .imap(|x: u64| x + 1, 0..1000u64)
                .chunksize(1 << 40)
                .collect();
            assert_eq!(out, (1..=1000).collect::<Vec<_>>());
            assert_worker_alive(&pool, "after imap chunksize(1 << 40)");
            let mut out: Vec<u64> = pool
                .imap_unordered(|x: u64| x + 1, 0..1000u64)
                .chunksize(1 << 40)
                .collect();
            out.sort_unstable();
            assert_eq!(out, (1..=1000).collect::<Vec<_>>());
            assert_worker_alive(&pool, "after imap_unordered chunksize(1 << 40)");
        },
    );
}

/// An endless input that counts how many items it has produced.
fn counting(counter: Arc<AtomicUsize>) -> impl Iterator<Item = u64> + Send + 'static {
    (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn imap_huge_chunksize_read_ahead_is_capped() {
    child::run_limited(
        "imap_huge_chunksize_read_ahead_is_capped",
        30,
        Some(4096),
        || {
            for ordered in [true, false] {
                let pool = Arc::new(ThreadPool::with_workers(2));
                let produced = Arc::new(AtomicUsize::new(0));
                let first = if ordered {
                    let mut it = pool
                        .imap(|x: u64| x, counting(Arc::clone(&produced)))
                        .chunksize(10_000_000);
                    it.next()
                } else {
                    let mut it = pool
                        .imap_unordered(|x: u64| x, counting(Arc::clone(&produced)))
                        .chunksize(10_000_000);
                    it.next()
                };
                assert!(first.is_some());
                let n = produced.load(Ordering::SeqCst);
                assert!(
                n <= READ_AHEAD_CAP,
                "ordered={ordered}: input read {n} items before the first result (cap {READ_AHEAD_CAP})"
            );
                assert_worker_alive(&pool, "after huge chunksize over endless input");
            }
        },
    );
}

#[test]
fn imap_buffer_usize_max_over_endless_input_is_capped() {
    child::run_limited(
        "imap_buffer_usize_max_over_endless_input_is_capped",
        20,
        Some(2048),
        || {
            for ordered in [true, false] {
                let pool = Arc::new(ThreadPool::with_workers(2));
                let produced = Arc::new(AtomicUsize::new(0));
                let got: Vec<u64> = if ordered {
                    pool.imap(|x: u64| x, counting(Arc::clone(&produced)))
                        .buffer(usize::MAX)
                        .take(100)
                        .collect()
                } else {
                    let mut v: Vec<u64> = pool
                        .imap_unordered(|x: u64| x, counting(Arc::clone(&produced)))
                        .buffer(usize::MAX)
                        .take(100)
                        .collect();
                    v.sort_unstable();
                    v.dedup();
                    v
                };
                assert_eq!(got.len(), 100, "ordered={ordered}");
                if ordered {
                    assert_eq!(got, (0..100).collect::<Vec<_>>());
                }
                let n = produced.load(Ordering::SeqCst);
                assert!(
                n <= READ_AHEAD_CAP,
                "ordered={ordered}: buffer(usize::MAX) read {n} items ahead (cap {READ_AHEAD_CAP})"
            );
                assert_worker_alive(&pool, "after buffer(usize::MAX)");
            }
        },
    );
}

/// The Duration::MAX / Duration::ZERO checks, runnable on any thread.
/// `pool` must have a free worker besides the current thread.
fn duration_edges(pool: &Arc<ThreadPool>) {
    // AsyncResult::get_timeout / wait_timeout.
    let mut h = pool.apply_async(|| 7);
    assert_eq!(h.get_timeout(Duration::MAX), Ok(7), "get_timeout(MAX)");
    let h = pool.apply_async(|| 8);
    assert!(h.wait_timeout(Duration::MAX), "wait_timeout(MAX)");
    assert_eq!(h.get(), Ok(8));
    // ZERO on a finished task gives its value.
    let mut h = pool.apply_async(|| 9);
    h.wait();
    assert!(
        h.wait_timeout(Duration::ZERO),
        "wait_timeout(ZERO) on a finished task"
    );
    assert_eq!(
        h.get_timeout(Duration::ZERO),
        Ok(9),
        "get_timeout(ZERO) on a finished task"
    );
    // ZERO on an unfinished task (running on another worker) times out.
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let mut slow = pool.apply_async(move || {
        started_tx.send(()).unwrap();
        release_rx.recv_timeout(Duration::from_secs(5)).is_ok()
    });
    started_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("slow task started");
    assert_eq!(
        slow.get_timeout(Duration::ZERO),
        Err(TaskError::Timeout),
        "get_timeout(ZERO)"
    );
    assert!(
        !slow.wait_timeout(Duration::ZERO),
        "wait_timeout(ZERO) on an unfinished task"
    );
    release_tx.send(()).unwrap();
    assert_eq!(slow.get_timeout(Duration::MAX), Ok(true));

    // Imap::next_timeout.
    let mut it = pool.imap(|x: u32| x + 1, 0..3u32);
    assert_eq!(
        it.next_timeout(Duration::MAX),
        Ok(Some(1)),
        "imap next_timeout(MAX)"
    );
    assert_eq!(it.next_timeout(Duration::MAX), Ok(Some(2)));
    assert_eq!(it.next_timeout(Duration::MAX), Ok(Some(3)));
    assert_eq!(it.next_timeout(Duration::MAX), Ok(None));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let mut it = pool
        .imap(
            move |x: u32| {
                let _ = release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(5));
                x
            },
            // A range: its exact size hint tells the read that the input
            // is over, so the end is known once the item is. (A user
            // iterator's hint is not trusted for that, since it may lie:
            // an input such as `[5u32]` is known to be over only when one
            // more read finds `None`, and `next_timeout(ZERO)` may find
            // that read not done yet.)
            5u32..6,
        )
        .chunksize(1);
    assert_eq!(
        it.next_timeout(Duration::ZERO),
        Err(TaskError::Timeout),
        "imap next_timeout(ZERO)"
    );
    release_tx.send(()).unwrap();
    assert_eq!(it.next_timeout(Duration::MAX), Ok(Some(5)));
    assert_eq!(
        it.next_timeout(Duration::ZERO),
        Ok(None),
        "imap next_timeout(ZERO) at the end"
    );
    // next_timeout(ZERO) eventually yields a finished result.
    let mut it = pool.imap(|x: u32| x * 10, [4u32]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let v = loop {
        match it.next_timeout(Duration::ZERO) {
            Err(TaskError::Timeout) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            other => break other,
        }
    };
    assert_eq!(
        v,
        Ok(Some(40)),
        "imap next_timeout(ZERO) never gave the finished value"
    );

    // as_completed(..).next_timeout.
    let mut ac = parpool::as_completed(vec![pool.apply_async(|| 1), pool.apply_async(|| 2)]);
    let mut sum = 0;
    while let Some(h) = ac
        .next_timeout(Duration::MAX)
        .expect("as_completed next_timeout(MAX)")
    {
        sum += h.get().unwrap();
    }
    assert_eq!(sum, 3);
    let done = pool.apply_async(|| 3);
    done.wait();
    let mut ac = parpool::as_completed(vec![done]);
    let h = ac
        .next_timeout(Duration::ZERO)
        .expect("as_completed next_timeout(ZERO), finished");
    assert_eq!(h.map(|h| h.get()), Some(Ok(3)));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let slow = pool.apply_async(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(5));
        4
    });
    started_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("slow task started");
    let mut ac = parpool::as_completed(vec![slow]);
    assert!(
        matches!(ac.next_timeout(Duration::ZERO), Err(TaskError::Timeout)),
        "as_completed next_timeout(ZERO), unfinished"
    );
    release_tx.send(()).unwrap();
    let h = ac.next_timeout(Duration::MAX).unwrap().unwrap();
    assert_eq!(h.get(), Ok(4));

    // wait(.., Some(MAX) / Some(ZERO), ..).
    let (done, pending) = parpool::wait(
        vec![pool.apply_async(|| 1), pool.apply_async(|| 2)],
        Some(Duration::MAX),
        WaitFor::AllCompleted,
    );
    assert_eq!((done.len(), pending.len()), (2, 0), "wait(Some(MAX))");
    let finished = pool.apply_async(|| 5);
    finished.wait();
    let (done, pending) =
        parpool::wait(vec![finished], Some(Duration::ZERO), WaitFor::AllCompleted);
    assert_eq!(
        (done.len(), pending.len()),
        (1, 0),
        "wait(Some(ZERO)) on a finished task"
    );
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let slow = pool.apply_async(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(5));
        6
    });
    started_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("slow task started");
    let (done, pending) = parpool::wait(vec![slow], Some(Duration::ZERO), WaitFor::AllCompleted);
    assert_eq!(
        (done.len(), pending.len()),
        (0, 1),
        "wait(Some(ZERO)) on an unfinished task"
    );
    release_tx.send(()).unwrap();
    let (done, _) = parpool::wait(pending, Some(Duration::MAX), WaitFor::AllCompleted);
    assert_eq!(
        done.into_iter()
            .map(|h| h.get().unwrap())
            .collect::<Vec<_>>(),
        [6]
    );
}

#[test]
fn duration_max_and_zero_on_a_plain_thread() {
    guard(30, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        duration_edges(&pool);
    });
}

#[test]
fn duration_max_and_zero_inside_a_worker() {
    guard(30, || {
        // Three workers: one runs the checks, the others run what they wait on.
        let pool = Arc::new(ThreadPool::with_workers(3));
        let p = Arc::clone(&pool);
        let r = pool
            .apply_async(move || catch(|| duration_edges(&p)))
            .get()
            .expect("the checking task itself failed");
        if let Err(msg) = r {
            panic!("inside a worker: {msg}");
        }
    });
}

#[test]
fn builder_workers_usize_max_is_an_error() {
    child::run_limited(
        "builder_workers_usize_max_is_an_error",
        10,
        Some(8192),
        || {
            let start = Instant::now();
            let r = catch(|| {
                ThreadPool::builder()
                    .workers(usize::MAX)
                    .build()
                    .map(|_| ())
            });
            let took = start.elapsed();
            match r {
                Ok(Err(e)) => assert!(
                    e.to_string().to_lowercase().contains("worker"),
                    "error does not mention workers: {e}"
                ),
                Ok(Ok(())) => panic!("workers(usize::MAX) built a pool"),
                Err(msg) => panic!("build() panicked instead of returning Err: {msg}"),
            }
            assert!(took < Duration::from_secs(5), "build took {took:?}");
        },
    );
}

#[test]
fn with_workers_usize_max_panics_clearly() {
    child::run_limited(
        "with_workers_usize_max_panics_clearly",
        10,
        Some(8192),
        || {
            let start = Instant::now();
            let r = catch(|| drop(ThreadPool::with_workers(usize::MAX)));
            let msg = r.expect_err("with_workers(usize::MAX) returned a pool");
            assert!(
                msg.to_lowercase().contains("worker"),
                "unclear panic: {msg}"
            );
            assert!(start.elapsed() < Duration::from_secs(5));
        },
    );
}

#[test]
fn builder_stack_size_zero_never_aborts() {
    child::run("builder_stack_size_zero_never_aborts", 20, || {
        let r = catch(|| ThreadPool::builder().workers(2).stack_size(0).build());
        match r {
            Ok(Ok(pool)) => {
                assert_eq!(pool.apply_async(|| 1 + 1).get(), Ok(2));
                assert_eq!(pool.map(|x: u32| x * 2, 0..100u32).len(), 100);
            }
            Ok(Err(_)) => {}
            Err(msg) => panic!("build() panicked instead of returning Ok/Err: {msg}"),
        }
    });
}

#[test]
fn builder_stack_size_usize_max_never_aborts() {
    child::run("builder_stack_size_usize_max_never_aborts", 20, || {
        let r = catch(|| {
            ThreadPool::builder()
                .workers(2)
                .stack_size(usize::MAX)
                .build()
        });
        match r {
            Ok(Ok(pool)) => assert_eq!(pool.apply_async(|| 1 + 1).get(), Ok(2)),
            Ok(Err(_)) => {}
            Err(msg) => panic!("build() panicked instead of returning Ok/Err: {msg}"),
        }
    });
}

#[test]
fn max_tasks_per_worker_one_runs_every_task() {
    guard(30, || {
        let pool = ThreadPool::builder()
            .workers(2)
            .max_tasks_per_worker(1)
            .build()
            .unwrap();
        let handles: Vec<_> = (0..200u32)
            .map(|i| pool.apply_async(move || i * 2))
            .collect();
        let out: Vec<u32> = handles.into_iter().map(|h| h.get().unwrap()).collect();
        assert_eq!(out, (0..200).map(|i| i * 2).collect::<Vec<_>>());
        // Once idle, every task is counted.
        let start = Instant::now();
        while pool.stats().running != 0 && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(pool.stats().completed, 200);
    });
}

#[test]
fn zero_sizes_panic_clearly_at_the_call() {
    child::hide_expected_panics();
    guard(10, || {
        let pool = ThreadPool::with_workers(1);
        let m = catch(|| drop(pool.imap(|x: u32| x, 0..10u32).chunksize(0))).unwrap_err();
        assert!(m.contains("chunksize"), "{m}");
        let m = catch(|| drop(pool.imap_unordered(|x: u32| x, 0..10u32).chunksize(0))).unwrap_err();
        assert!(m.contains("chunksize"), "{m}");
        let m = catch(|| drop(pool.imap(|x: u32| x, 0..10u32).buffer(0))).unwrap_err();
        assert!(m.contains("buffer"), "{m}");
        let m = catch(|| drop(pool.imap_unordered(|x: u32| x, 0..10u32).buffer(0))).unwrap_err();
        assert!(m.contains("buffer"), "{m}");
        let m = catch(|| {
            let _ = pool.chunked(0);
        })
        .unwrap_err();
        assert!(m.contains("chunksize"), "{m}");
        // Size 1 everywhere works.
        assert_eq!(pool.chunked(1).map(|x| x + 1, 0..5u32), [1, 2, 3, 4, 5]);
        let out: Vec<u32> = pool
            .imap(|x: u32| x, 0..5u32)
            .chunksize(1)
            .buffer(1)
            .collect();
        assert_eq!(out, [0, 1, 2, 3, 4]);
        // And the pool is still fine.
        assert_eq!(pool.apply_async(|| 3).get(), Ok(3));
    });
}
