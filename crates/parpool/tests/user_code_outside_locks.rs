//! No user code runs under one of the pool's locks: a user `Drop` may
//! re-enter the pool or wait for other work of the same call, which would
//! take that lock again. (Wakers: `waker_reentry_attacks.rs`.)
mod common;

use common::guard;
use parpool::ThreadPool;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

static E10_MADE: AtomicBool = AtomicBool::new(false);
static E10_DROPPING: AtomicBool = AtomicBool::new(false);
static E7_DROPPED: AtomicBool = AtomicBool::new(false);
static E10_SAW_E7: AtomicBool = AtomicBool::new(false);

fn until(flag: &AtomicBool, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while !flag.load(SeqCst) {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[derive(Debug)]
struct Failure(u32);

impl Drop for Failure {
    fn drop(&mut self) {
        match self.0 {
            // The error that an earlier item's replaces: its `Drop` waits
            // for item 7's error to be recorded and dropped.
            10 => {
                E10_DROPPING.store(true, SeqCst);
                E10_SAW_E7.store(until(&E7_DROPPED, 5), SeqCst);
            }
            7 => E7_DROPPED.store(true, SeqCst),
            _ => {}
        }
    }
}

/// `try_map` keeps the earliest error: item 10 fails first, item 3 then
/// replaces it, and the replaced error's `Drop` waits for item 7, which
/// fails meanwhile on another worker. The replaced error was dropped under
/// the map's error lock, which item 7's failure needs: item 7 waited for
/// the lock, and the `Drop` for item 7, for good (here: 5 s).
#[test]
fn a_replaced_try_map_error_is_dropped_outside_the_error_lock() {
    guard(30, || {
        let pool = ThreadPool::with_workers(3);
        let got = pool.chunked(1).try_map(
            |i: u32| match i {
                3 => {
                    assert!(until(&E10_MADE, 10));
                    std::thread::sleep(Duration::from_millis(30));
                    Err(Failure(3))
                }
                7 => {
                    assert!(until(&E10_DROPPING, 10));
                    Err(Failure(7))
                }
                10 => {
                    E10_MADE.store(true, SeqCst);
                    Err(Failure(10))
                }
                _ => Ok(i),
            },
            0..11u32,
        );
        assert_eq!(got.unwrap_err().0, 3);
        assert!(E7_DROPPED.load(SeqCst));
        assert!(
            E10_SAW_E7.load(SeqCst),
            "the replaced error's Drop ran under the error lock: item 7 could not record its error"
        );
    });
}
