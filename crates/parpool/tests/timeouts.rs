//! Expiry of get_timeout, wait_timeout and next_timeout; the handles stay usable.
mod common;

use common::guard;
use parpool::{TaskError, ThreadPool};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn get_timeout_expires_then_the_handle_still_works() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let (tx, rx) = mpsc::channel::<()>();
        let mut h = pool.apply_async(move || {
            rx.recv().unwrap();
            42
        });
        let start = Instant::now();
        assert_eq!(
            h.get_timeout(Duration::from_millis(30)),
            Err(TaskError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(!h.ready());
        assert_eq!(h.successful(), None);
        assert!(!h.wait_timeout(Duration::from_millis(5)));
        tx.send(()).unwrap();
        assert_eq!(h.get_timeout(Duration::from_secs(20)), Ok(42));
        assert!(h.ready());
        assert_eq!(
            h.successful(),
            Some(true),
            "still known after the value was taken"
        );
    });
}

#[test]
fn successful_after_get_timeout_took_a_failure_is_false() {
    guard(30, || {
        common::quiet_panics();
        let pool = ThreadPool::with_workers(1);
        let mut h = pool.apply_async(|| -> u8 { panic!("EXPECTED: failing task") });
        assert!(matches!(
            h.get_timeout(Duration::from_secs(20)),
            Err(TaskError::Panicked(_))
        ));
        assert_eq!(h.successful(), Some(false));
    });
}

/// Counts how often a callback ran and whether it was dropped.
#[derive(Default)]
struct CallbackLog {
    ran: std::sync::atomic::AtomicUsize,
    dropped: std::sync::atomic::AtomicUsize,
}

struct DropMark(std::sync::Arc<CallbackLog>);

impl Drop for DropMark {
    fn drop(&mut self) {
        self.0
            .dropped
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A callback attached after the result was returned (by `get_timeout`,
/// or by awaiting the handle) could never see it: the call panics clearly,
/// like a second `get`, and the callback is dropped unrun, never lost
/// without a word. Every pairing: success and failure, `on_success` and
/// `on_error`.
#[test]
fn a_callback_attached_after_the_result_was_returned_panics_and_is_dropped_unrun() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;
    guard(60, || {
        common::quiet_panics();
        let pool = ThreadPool::with_workers(1);
        for ok in [true, false] {
            for awaited in [false, true] {
                for on_success in [true, false] {
                    let mut h = pool.apply_async(move || -> u8 {
                        if !ok {
                            panic!("EXPECTED: failing task");
                        }
                        7
                    });
                    let got = if awaited {
                        futures::executor::block_on(&mut h)
                    } else {
                        h.get_timeout(Duration::from_secs(20))
                    };
                    assert_eq!(got.is_ok(), ok);
                    let log = Arc::new(CallbackLog::default());
                    let mark = DropMark(Arc::clone(&log));
                    let log2 = Arc::clone(&log);
                    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                        if on_success {
                            drop(h.on_success(move |_| {
                                let _keep = &mark;
                                log2.ran.fetch_add(1, SeqCst);
                            }));
                        } else {
                            drop(h.on_error(move |_| {
                                let _keep = &mark;
                                log2.ran.fetch_add(1, SeqCst);
                            }));
                        }
                    }))
                    .expect_err("attaching to a spent handle must panic");
                    let case = format!("ok={ok} awaited={awaited} on_success={on_success}");
                    assert!(
                        common::panic_message(err.as_ref()).contains("already returned"),
                        "{case}"
                    );
                    assert_eq!(log.ran.load(SeqCst), 0, "{case}: never run");
                    assert_eq!(log.dropped.load(SeqCst), 1, "{case}: dropped once");
                }
            }
        }
        // The pool is unharmed.
        assert_eq!(pool.apply(|| 5), 5);
    });
}

#[test]
fn get_after_get_timeout_took_the_value_panics_clearly() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        let mut h = pool.apply_async(|| 1);
        assert_eq!(h.get_timeout(Duration::from_secs(20)), Ok(1));
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.get())).unwrap_err();
        assert!(common::panic_message(err.as_ref()).contains("already returned"));
    });
}

#[test]
fn next_timeout_expires_then_the_iterator_still_works() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let (tx, rx) = mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let mut it = pool
            .imap(
                move |x: u32| {
                    if x == 1 {
                        rx.lock().unwrap().recv().unwrap();
                    }
                    x
                },
                0..3,
            )
            .chunksize(1);
        let t = Duration::from_secs(20);
        assert_eq!(it.next_timeout(t), Ok(Some(0)));
        assert_eq!(
            it.next_timeout(Duration::from_millis(30)),
            Err(TaskError::Timeout)
        );
        assert_eq!(
            it.next_timeout(Duration::from_millis(1)),
            Err(TaskError::Timeout)
        );
        tx.send(()).unwrap();
        assert_eq!(it.next_timeout(t), Ok(Some(1)));
        assert_eq!(it.next_timeout(t), Ok(Some(2)));
        assert_eq!(it.next_timeout(t), Ok(None));
    });
}

#[test]
fn unordered_next_timeout_expires() {
    guard(30, || {
        let pool = ThreadPool::with_workers(1);
        // The item waits for the test, not for a clock: a consumer thread
        // not scheduled for longer than a sleeping item would find it done
        // (Miri's scheduler did that once the pool's timing changed).
        let (tx, rx) = mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let mut it = pool.imap_unordered(move |_: u64| rx.lock().unwrap().recv().unwrap(), [200]);
        assert_eq!(
            it.next_timeout(Duration::from_millis(1)),
            Err(TaskError::Timeout)
        );
        tx.send(()).unwrap();
        assert_eq!(it.next_timeout(Duration::from_secs(20)), Ok(Some(())));
        assert_eq!(it.next_timeout(Duration::from_secs(20)), Ok(None));
    });
}
