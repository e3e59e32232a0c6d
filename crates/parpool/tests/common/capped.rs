//! Child processes whose pool `P` cannot start spares: `P`'s threads have
//! huge stacks, and the address space is capped once they are up, so the
//! system refuses every later one at once (`worker::start_failed` then
//! runs inside the count that asked for it). A second pool `Q`, and small
//! allocations, still work. Used with `child::run` (the cap must not reach
//! the test harness).
//!
//! Also: a waker that runs an action at its next wake, and a poll loop.

use parpool::ThreadPool;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// The stack of `P`'s threads: the first ones start before the cap, no
/// later one fits under it.
pub const BIG_STACK: usize = 512 << 20;
/// What the cap leaves above the address space in use: room for the
/// allocations and threads of everything but `P`'s spares, well short of
/// one `BIG_STACK`.
pub const HEADROOM: u64 = 256 << 20;
/// Past `worker::RETRY` (1 s): an executor wait then tries a spare again.
pub const PAST_RETRY: Duration = Duration::from_millis(1_100);

/// A `p_workers`-worker pool `P` whose spares the system refuses at once,
/// and a four-worker pool `Q` that works normally.
pub fn pools_with(p_workers: usize) -> (Arc<ThreadPool>, Arc<ThreadPool>) {
    one_malloc_arena();
    let p = ThreadPool::builder()
        .workers(p_workers)
        .thread_name("capped-p")
        .stack_size(BIG_STACK)
        .build()
        .unwrap();
    let q = ThreadPool::builder()
        .workers(4)
        .thread_name("capped-q")
        .build()
        .unwrap();
    // Both pools' threads are up before the cap.
    assert_eq!(p.map(|x: u32| x, 0..8).len(), 8);
    assert_eq!(q.map(|x: u32| x, 0..8).len(), 8);
    cap_address_space();
    (Arc::new(p), Arc::new(q))
}

/// Makes every thread allocate from glibc's main arena. Under contention
/// glibc gives a thread a new arena, which reserves 64 MiB of address
/// space at once: under the cap, a few of them used up the headroom and
/// an ordinary allocation failed (the child aborted with "memory
/// allocation of 2097152 bytes failed", 1 run in 12 with 4 copies of
/// a test file running at once).
pub fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only sets an allocator parameter; this child
    // process has not started its pools' threads yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Caps the process's address space at its current size plus `HEADROOM`.
pub fn cap_address_space() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status");
    let limit = libc::rlimit {
        rlim_cur: kb * 1024 + HEADROOM,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `setrlimit` reads the struct; it has no other preconditions.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
}

/// A waker that, once armed, runs its action at its next wake (by value
/// or by reference), on the waking thread.
pub struct Hostile {
    armed: AtomicBool,
    action: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Hostile {
    pub fn new(action: impl FnOnce() + Send + 'static) -> Arc<Hostile> {
        Arc::new(Hostile {
            armed: AtomicBool::new(false),
            action: Mutex::new(Some(Box::new(action))),
        })
    }

    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

impl Wake for Hostile {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.armed.swap(false, Ordering::SeqCst) {
            let action = self.action.lock().unwrap().take();
            if let Some(action) = action {
                action();
            }
        }
    }
}

/// Polls `f` with `waker` until it is ready (at most 20 s).
pub fn poll_until_ready<F: Future + Unpin>(f: &mut F, waker: &Waker) -> F::Output {
    let t0 = Instant::now();
    loop {
        if let Poll::Ready(v) = Pin::new(&mut *f).poll(&mut Context::from_waker(waker)) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "never ready");
        thread::sleep(Duration::from_millis(1));
    }
}

/// On a worker of `p`: polls a handle of a task queued behind this very
/// job once, stranded (its first `Pending` runs nothing), waits past
/// `RETRY`, arms `hostile` and polls with it until ready. The second
/// poll's count asks for a spare again, the system refuses it, and the
/// armed waker runs inside that count.
pub fn second_poll_wakes(
    p: &Arc<ThreadPool>,
    hostile: &Arc<Hostile>,
) -> Result<u32, parpool::TaskError> {
    let mut own = p.apply_async(|| 1u32);
    let noop = futures::task::noop_waker();
    let first = Pin::new(&mut own).poll(&mut Context::from_waker(&noop));
    assert!(first.is_pending(), "the first stranded poll runs nothing");
    thread::sleep(PAST_RETRY);
    hostile.arm();
    poll_until_ready(&mut own, &Waker::from(Arc::clone(hostile)))
}
