//! Pools whose spare threads cannot start, or start slowly, and a waker
//! that counts: the shapes of the tests of waits that no stand-in can
//! relieve (`exec_wait.rs`, `park.rs`).

use parpool::{PanicPolicy, ThreadPool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

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

/// Sets a no-spare pool's `spares_failing` flag, and proves it: every
/// worker but one is held busy, and the last `block_on`s a handle of
/// another pool whose task waits for a job queued on this one. No spare
/// can start, so only the stranded poll's help can run that job, and it
/// helps only once a spare's failure set the flag. So when this returns
/// the flag is set, however long the failing spare took (a panic with
/// `RUST_BACKTRACE=1` on a loaded machine can take longer than any fixed
/// sleep). It stays set until a thread starts, which in a no-spare pool
/// none does; a wait more than `RETRY` (1 s) later may try one more spare,
/// and while that spare is on its way the pool counts on it (tests built
/// on this must not need the help to come within a fixed time).
pub fn mark_spares_failing(pool: &Arc<ThreadPool>) {
    let workers = pool.stats().workers;
    let release = Arc::new(AtomicBool::new(false));
    let (held_tx, held_rx) = mpsc::channel();
    let holds: Vec<_> = (1..workers)
        .map(|_| {
            let (release, held) = (Arc::clone(&release), held_tx.clone());
            pool.apply_async(move || {
                held.send(()).unwrap();
                while !release.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    for _ in 1..workers {
        held_rx.recv().unwrap();
    }
    let other = ThreadPool::with_workers(1);
    let p = Arc::clone(pool);
    let got = pool
        .apply_async(move || {
            let ran = Arc::new(AtomicBool::new(false));
            let r = Arc::clone(&ran);
            let queued = p.apply_async(move || r.store(true, Ordering::SeqCst));
            let waited = other.apply_async(move || {
                let t0 = Instant::now();
                while !ran.load(Ordering::SeqCst) {
                    if t0.elapsed() > Duration::from_secs(20) {
                        return false;
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                true
            });
            let helped = futures::executor::block_on(waited);
            (helped, queued.get())
        })
        .get();
    release.store(true, Ordering::SeqCst);
    for h in holds {
        assert_eq!(h.get(), Ok(()));
    }
    assert_eq!(
        got,
        Ok((Ok(true), Ok(()))),
        "no stranded poll ran the queued job in 20 s: the spare never failed?"
    );
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

/// A one-worker pool with 1 MiB stacks (a shallow inlining depth) whose
/// later threads all panic in their initializer (`EXPECTED: ...`): a wait
/// nested past the depth on its worker, with work queued, is at the
/// "cannot make progress" dead end.
pub fn stuck_one_worker() -> Arc<ThreadPool> {
    let started = AtomicUsize::new(0);
    Arc::new(
        ThreadPool::builder()
            .workers(1)
            .stack_size(1 << 20)
            .initializer(move || {
                if started.fetch_add(1, Ordering::SeqCst) >= 1 {
                    panic!("EXPECTED: no more threads");
                }
            })
            .build()
            .unwrap(),
    )
}
