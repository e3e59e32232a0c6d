//! Pools whose spare threads cannot start, or start slowly, and a waker
//! that counts: the shapes of the tests of waits that no stand-in can
//! relieve (`exec_wait.rs`, `park.rs`).

use parpool::{PanicPolicy, ThreadPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread;
use std::time::Duration;

/// A pool of `workers` workers whose later threads all panic in their
/// initializer: no spare can ever start. Returns the pool and the count
/// of start attempts.
pub fn no_spares_counted(
    prefix: &str,
    workers: usize,
    policy: PanicPolicy,
) -> (Arc<ThreadPool>, Arc<AtomicUsize>) {
    let starts = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&starts);
    let pool = ThreadPool::builder()
        .workers(workers)
        .thread_name(prefix)
        .on_panic(policy)
        .initializer(move || {
            if s.fetch_add(1, Ordering::SeqCst) >= workers {
                panic!("EXPECTED: no spare may start");
            }
        })
        .build()
        .unwrap();
    (Arc::new(pool), starts)
}

/// [`no_spares_counted`] without the count.
pub fn no_spares_with(prefix: &str, workers: usize, policy: PanicPolicy) -> Arc<ThreadPool> {
    no_spares_counted(prefix, workers, policy).0
}

/// A one-worker pool whose spares cannot start.
pub fn no_spares(prefix: &str) -> Arc<ThreadPool> {
    no_spares_with(prefix, 1, PanicPolicy::default())
}

/// A one-worker pool whose spares spend `ms` in their initializer and then
/// start (`fail == false`) or panic (`fail == true`).
pub fn late_spares(prefix: &str, ms: u64, fail: bool) -> Arc<ThreadPool> {
    let starts = AtomicUsize::new(0);
    Arc::new(
        ThreadPool::builder()
            .workers(1)
            .thread_name(prefix)
            .initializer(move || {
                if starts.fetch_add(1, Ordering::SeqCst) >= 1 {
                    thread::sleep(Duration::from_millis(ms));
                    if fail {
                        panic!("EXPECTED: this spare fails late");
                    }
                }
            })
            .build()
            .unwrap(),
    )
}

/// Sets a no-spare pool's `spares_failing` flag: one `block_on` on a
/// worker of a handle whose task (on another pool) takes a moment, so the
/// spare its count starts fails meanwhile.
pub fn mark_spares_failing(pool: &Arc<ThreadPool>) {
    let other = ThreadPool::with_workers(1);
    let got = pool
        .apply_async(move || {
            futures::executor::block_on(
                other.apply_async(|| thread::sleep(Duration::from_millis(100))),
            )
        })
        .get();
    assert_eq!(got, Ok(Ok(())));
}

/// A stranded pool of `workers` workers: no spare can start, and the pool
/// knows it.
pub fn stranded(prefix: &str, workers: usize, policy: PanicPolicy) -> Arc<ThreadPool> {
    let p = no_spares_with(prefix, workers, policy);
    mark_spares_failing(&p);
    p
}

/// A waker counting its wakes; its `Arc`'s strong count tells how many
/// clones are kept anywhere.
pub struct Counting {
    pub wakes: AtomicUsize,
}

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// A [`Counting`] waker, and its count.
pub fn counting() -> (Arc<Counting>, Waker) {
    let c = Arc::new(Counting {
        wakes: AtomicUsize::new(0),
    });
    (Arc::clone(&c), Waker::from(Arc::clone(&c)))
}
