//! Races between submitters and terminate: never a hang, never a lost result.
mod common;

use common::{close_or_terminate, guard};
use parpool::{TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

#[test]
fn submit_terminate_races_never_hang_or_lose_results() {
    guard(300, || {
        let live = Arc::new(());
        for round in 0..1000 {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let p = Arc::clone(&pool);
            let live2 = Arc::clone(&live);
            let submitter = std::thread::spawn(move || {
                let mut handles = Vec::new();
                for i in 0..20u32 {
                    let token = Arc::clone(&live2); // dropped with the task
                    match catch_unwind(AssertUnwindSafe(|| {
                        p.apply_async(move || {
                            drop(token);
                            i
                        })
                    })) {
                        Ok(h) => handles.push((i, h)),
                        Err(_) => panic!("a submission racing terminate panicked"),
                    }
                }
                let mut it = None;
                if let Ok(i) =
                    catch_unwind(AssertUnwindSafe(|| p.imap(|x: u32| x, 0..50).chunksize(3)))
                {
                    it = Some(i);
                }
                (handles, it)
            });
            if round % 2 == 0 {
                std::thread::yield_now();
            }
            pool.terminate();
            let (handles, it) = submitter.join().unwrap();
            for (i, h) in handles {
                match h.get() {
                    Ok(v) => assert_eq!(v, i),
                    Err(e) => assert!(
                        matches!(e, TaskError::Cancelled | TaskError::NotRunning),
                        "{e:?}"
                    ),
                }
            }
            if let Some(mut it) = it {
                // Results in order, then possibly a cancellation error (an
                // imap created after terminate runs on the consumer).
                let mut expected = 0;
                loop {
                    match catch_unwind(AssertUnwindSafe(|| {
                        it.next_timeout(std::time::Duration::from_secs(30))
                    })) {
                        Ok(Ok(Some(x))) => {
                            assert_eq!(x, expected);
                            expected += 1;
                        }
                        Ok(Ok(None)) => {
                            assert_eq!(expected, 50);
                            break;
                        }
                        Ok(Err(e)) => {
                            assert_eq!(e, TaskError::Cancelled);
                            break;
                        }
                        Err(_) => panic!("an imap racing terminate panicked"),
                    }
                }
            }
            pool.join();
        }
        // Every task closure was run or dropped: no leaked work.
        assert_eq!(Arc::strong_count(&live), 1);
    });
}

#[test]
fn many_concurrent_submitters() {
    guard(120, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    let mut sum = 0u64;
                    for r in 0..50u64 {
                        sum += pool.map(|x: u64| x + t, 0..100u64).iter().sum::<u64>();
                        sum += pool.imap(|x: u64| x, 0..100u64).sum::<u64>();
                        sum += pool.apply_async(move || r).get().unwrap();
                    }
                    sum
                })
            })
            .collect();
        for (t, th) in threads.into_iter().enumerate() {
            let per_round = (4950 + 100 * t as u64) + 4950;
            assert_eq!(th.join().unwrap(), 50 * per_round + (0..50).sum::<u64>());
        }
    });
}

#[test]
fn imap_close_and_terminate_races_never_hang() {
    guard(300, || {
        for round in 0..300u32 {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let unordered = round % 2 == 1;
            let terminate = round % 3 == 0;
            let mut it: Box<dyn Iterator<Item = u32> + Send> = if unordered {
                Box::new(
                    pool.imap_unordered(|x: u32| x, 0..200)
                        .chunksize(1 + round as usize % 4)
                        .buffer(4),
                )
            } else {
                Box::new(
                    pool.imap(|x: u32| x, 0..200)
                        .chunksize(1 + round as usize % 4)
                        .buffer(4),
                )
            };
            let first = it.next();
            assert!(first.is_some());
            let p = Arc::clone(&pool);
            let stopper = std::thread::spawn(move || {
                if round % 4 == 0 {
                    std::thread::yield_now();
                }
                close_or_terminate(&p, terminate);
            });
            // After close: every item arrives. After terminate: the results
            // so far, then a clear cancellation panic.
            let rest = catch_unwind(AssertUnwindSafe(move || it.count()));
            stopper.join().unwrap();
            match rest {
                Ok(n) => assert_eq!(n + 1, 200, "round {round}: all items after close"),
                Err(_) => assert!(
                    terminate,
                    "round {round}: only terminate may cut the stream"
                ),
            }
            if !terminate {
                pool.join();
            }
        }
    });
}
