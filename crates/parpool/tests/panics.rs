//! Task panics: a clear error at the right place, never a hang, nothing lost,
//! and the pool stays usable. Also the panic policies.
mod common;

use common::{guard, panic_message};
use parpool::{PanicPolicy, TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};

const N: u64 = 1000;

fn positions() -> [u64; 3] {
    [0, N / 2, N - 1]
}

fn boom_at(k: u64) -> impl Fn(u64) -> u64 + Send + Sync + Clone + 'static {
    move |x| {
        if x == k {
            panic!("boom at {k}");
        }
        x * 2
    }
}

fn expect_panic<T>(what: &str, k: u64, f: impl FnOnce() -> T) {
    let err = catch_unwind(AssertUnwindSafe(f))
        .err()
        .unwrap_or_else(|| panic!("{what}: no panic for k={k}"));
    assert_eq!(
        panic_message(err.as_ref()),
        format!("boom at {k}"),
        "{what}"
    );
}

#[test]
fn map_and_starmap_reraise_the_tasks_panic() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for k in positions() {
            for chunk in [None, Some(1), Some(7)] {
                let f = boom_at(k);
                expect_panic("map", k, || match chunk {
                    Some(c) => pool.chunked(c).map(&f, 0..N),
                    None => pool.map(&f, 0..N),
                });
                let f = boom_at(k);
                let pairs: Vec<(u64, u64)> = (0..N).map(|i| (i, 0)).collect();
                expect_panic("starmap", k, || {
                    pool.starmap(|a: &u64, _b: &u64| f(*a), &pairs)
                });
            }
            // The pool is still usable.
            assert_eq!(pool.map(|x| x + 1, 0..3u64), [1, 2, 3]);
        }
    });
}

#[test]
fn imap_reraises_at_the_items_position_after_every_earlier_result() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for k in positions() {
            for chunk in [None, Some(1), Some(3), Some(N as usize + 1)] {
                let it = pool.imap(boom_at(k), 0..N);
                let mut it = match chunk {
                    Some(c) => it.chunksize(c),
                    None => it,
                };
                let mut seen = Vec::new();
                let r = catch_unwind(AssertUnwindSafe(|| {
                    for x in it.by_ref() {
                        seen.push(x);
                    }
                }));
                let err = r.expect_err("imap must re-raise");
                assert_eq!(panic_message(err.as_ref()), format!("boom at {k}"));
                let expected: Vec<u64> = (0..k).map(|x| x * 2).collect();
                assert_eq!(
                    seen, expected,
                    "k={k} chunk={chunk:?}: every earlier result first"
                );
                assert_eq!(it.next(), None, "finished after the panic");
            }
        }
        assert_eq!(pool.imap(|x: u8| x, [1, 2]).collect::<Vec<_>>(), [1, 2]);
    });
}

#[test]
fn imap_unordered_reraises_and_keeps_other_results() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for k in positions() {
            let mut seen = Vec::new();
            let r = catch_unwind(AssertUnwindSafe(|| {
                for x in pool.imap_unordered(boom_at(k), 0..N).chunksize(1) {
                    seen.push(x);
                }
            }));
            assert!(r.is_err(), "k={k}");
            assert!(!seen.contains(&(k * 2)), "no result for the panicked item");
        }
    });
}

#[test]
fn next_timeout_reports_a_panic_as_an_error() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let mut it = pool.imap(boom_at(1), 0..3).chunksize(1);
        let t = std::time::Duration::from_secs(30);
        assert_eq!(it.next_timeout(t), Ok(Some(0)));
        assert_eq!(
            it.next_timeout(t),
            Err(TaskError::Panicked("boom at 1".into()))
        );
        assert_eq!(it.next_timeout(t), Ok(None));
    });
}

#[test]
fn async_handles_return_panicked() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let h = pool.apply_async(|| -> u8 { panic!("boom at 0") });
        match h.get() {
            Err(TaskError::Panicked(msg)) => assert_eq!(msg, "boom at 0"),
            other => panic!("unexpected {other:?}"),
        }
        for k in positions() {
            let h = pool.map_async(boom_at(k), 0..N);
            let err = h.get().unwrap_err();
            assert_eq!(err, TaskError::Panicked(format!("boom at {k}")));
            assert!(err.to_string().contains(&format!("boom at {k}")));
        }
        assert_eq!(pool.stats().panicked, 4);
        assert_eq!(pool.apply(|| 5), 5);
    });
}

#[test]
fn apply_reraises_in_the_caller() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        expect_panic("apply", 3, || pool.apply(|| boom_at(3)(3)));
        assert_eq!(pool.apply(|| 1), 1);
    });
}

/// An input iterator that yields `0..k` and then panics.
fn panicking_input(k: u64) -> impl Iterator<Item = u64> + Send {
    (0..).map(move |x| {
        if x == k {
            panic!("input broke at {k}")
        } else {
            x
        }
    })
}

#[test]
fn an_input_panic_reaches_the_consumer_after_earlier_results() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for k in [0, 1, 50, 999] {
            for chunk in [None, Some(1), Some(7)] {
                let it = pool.imap(|x: u64| x + 1, panicking_input(k));
                let mut it = match chunk {
                    Some(c) => it.chunksize(c),
                    None => it,
                };
                let mut seen = Vec::new();
                let err = catch_unwind(AssertUnwindSafe(|| {
                    for x in it.by_ref() {
                        seen.push(x);
                    }
                }))
                .expect_err("the input's panic must reach the consumer");
                assert_eq!(panic_message(err.as_ref()), format!("input broke at {k}"));
                assert_eq!(seen, (1..=k).collect::<Vec<_>>(), "k={k} chunk={chunk:?}");
            }
            // unordered: every result of the items before it, then the panic
            let mut seen = Vec::new();
            let r = catch_unwind(AssertUnwindSafe(|| {
                for x in pool.imap_unordered(|x: u64| x + 1, panicking_input(k)) {
                    seen.push(x);
                }
            }));
            assert!(r.is_err());
            seen.sort_unstable();
            assert_eq!(seen, (1..=k).collect::<Vec<_>>());
        }
        // The pool stays usable.
        assert_eq!(pool.map(|x| x * 3, &[1, 2]), [3, 6]);
    });
}

#[test]
fn a_panicking_callback_does_not_break_the_pool() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let h = pool
            .apply_async(|| 1)
            .on_success(|_| panic!("callback broke"));
        assert_eq!(h.get(), Ok(1));
        let h = pool
            .apply_async(|| -> u8 { panic!("task") })
            .on_error(|_| panic!("error callback broke"));
        assert!(h.get().is_err());
        // Later results still arrive.
        let handles: Vec<_> = (0..100).map(|i| pool.apply_async(move || i)).collect();
        let sum: i32 = handles.into_iter().map(|h| h.get().unwrap()).sum();
        assert_eq!(sum, 4950);
    });
}

#[test]
fn terminate_policy_terminates_the_pool_on_the_first_panic() {
    guard(30, || {
        let pool = common::terminating_on_panic(2);
        assert_eq!(pool.apply_async(|| 1).get(), Ok(1));
        assert!(pool
            .apply_async(|| -> u8 { panic!("fatal") })
            .get()
            .is_err());
        assert!(!pool.is_running());
        pool.join();
        assert_eq!(pool.apply_async(|| 1).get(), Err(TaskError::NotRunning));
    });
}

/// Runs only in a child process started by `abort_policy_aborts_the_process`.
#[test]
#[ignore = "run as a child process by abort_policy_aborts_the_process"]
fn abort_policy_child() {
    if std::env::var_os("PARPOOL_ABORT_CHILD").is_none() {
        return;
    }
    let pool = ThreadPool::builder()
        .workers(1)
        .on_panic(PanicPolicy::Abort)
        .build()
        .unwrap();
    let _ = pool.apply_async(|| panic!("abort me")).get();
    // Not reached: the process aborted.
    std::process::exit(0);
}

#[test]
fn abort_policy_aborts_the_process() {
    guard(60, || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "abort_policy_child", "--nocapture"])
            .env("PARPOOL_ABORT_CHILD", "1")
            .output()
            .unwrap();
        assert!(!out.status.success(), "the child must not exit normally");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("policy is Abort"), "stderr: {stderr}");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(6), "SIGABRT");
        }
    });
}

/// Under `PanicPolicy::Terminate`, the panic of an imap's `f` terminates the
/// pool before its chunk is delivered; here the chunk's unread items take
/// 30 ms each to drop, so the consumer's 10 ms probe sees the pool
/// terminated first. The stream must still raise the panic that caused it,
/// not a cancellation (it raised "cancelled" when the probe gave up on the
/// credits still out; now only a credit stuck reading the input ends the
/// stream early).
#[test]
fn a_terminating_panic_in_imap_is_raised_not_reported_as_cancelled() {
    struct SlowDrop(u32);
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            if self.0 > 3 {
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        }
    }
    common::quiet_panics_containing("f-boom");
    guard(30, || {
        for ordered in [true, false] {
            let pool = ThreadPool::builder()
                .workers(2)
                .on_panic(PanicPolicy::Terminate)
                .build()
                .unwrap();
            let f = |x: SlowDrop| {
                assert!(x.0 != 3, "f-boom");
                x.0
            };
            // Made by an adapter, so a worker reads and maps it (the
            // consumer would take a `Vec`'s only credit back and run it).
            let inputs = (0..8).map(SlowDrop);
            let out = catch_unwind(AssertUnwindSafe(|| {
                if ordered {
                    pool.imap(f, inputs).chunksize(8).count()
                } else {
                    pool.imap_unordered(f, inputs).chunksize(8).count()
                }
            }));
            let msg = panic_message(&*out.expect_err("f panicked"));
            assert!(msg.contains("f-boom"), "ordered {ordered}: {msg}");
            // The panic terminated the pool: nothing more is accepted.
            assert!(pool.apply_async(|| 1).get().is_err());
        }
    });
}
