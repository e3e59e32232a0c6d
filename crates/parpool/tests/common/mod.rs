//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod capped;
pub mod kinds;
pub mod memory;
pub mod pool_exec;
pub mod rng;
pub mod spares;

use parpool::ThreadPool;
use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on its own thread and fails the test if it takes longer than
/// `secs` seconds, so a hang fails instead of stalling CI. A panic in `f` is
/// re-raised with its original payload.
pub fn guard<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    guard_named(secs, "test", f)
}

/// Like [`guard`], but a timeout names `what` was hanging.
pub fn guard_named<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: timed out after {secs} s (likely a hang)")
        }
    }
}

/// `normal`, or `miri` when run under Miri, which is about a thousand
/// times slower: how many rounds or items a test takes.
pub fn pick(normal: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        normal
    }
}

/// Terminates `pool` if `terminate`, else closes it: the two ways a pool
/// stops running, which most shutdown tests try in turn.
pub fn close_or_terminate(pool: &ThreadPool, terminate: bool) {
    if terminate {
        pool.terminate();
    } else {
        pool.close();
    }
}

/// A 2-worker pool that was closed (or terminated) and joined.
pub fn stopped(terminate: bool) -> ThreadPool {
    let pool = ThreadPool::with_workers(2);
    close_or_terminate(&pool, terminate);
    pool.join();
    pool
}

/// A pool of `workers` workers whose panic policy is `Terminate`: the
/// first task panic terminates it.
pub fn terminating_on_panic(workers: usize) -> ThreadPool {
    ThreadPool::builder()
        .workers(workers)
        .on_panic(parpool::PanicPolicy::Terminate)
        .build()
        .unwrap()
}

/// Silences the default panic hook's output for expected panics.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// Silences the default panic hook for panics whose message contains
/// `marker` (the test's own, expected ones); every other panic is still
/// printed. Markers add up: each call adds one to the binary's list, and
/// the hook (installed once per test binary) silences a panic matching any.
/// (It was once per binary for the first marker only, so a second call
/// with another marker silently did nothing.)
pub fn quiet_panics_containing(marker: &'static str) {
    static MARKERS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    static ONCE: std::sync::Once = std::sync::Once::new();
    {
        let mut markers = MARKERS.lock().unwrap_or_else(|e| e.into_inner());
        if !markers.contains(&marker) {
            markers.push(marker);
        }
    }
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = panic_message(info.payload());
            let expected = MARKERS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|m| message.contains(m));
            if !expected {
                default(info);
            }
        }));
    });
}

/// Silences parpool's own diagnostic panics for a test that provokes them
/// on purpose: a wait for the caller's own work, a drain or a nested wait
/// that gives up instead of hanging.
pub fn quiet_parpool_diagnostics() {
    for marker in [
        "its own result",
        "its own task's result",
        "instead of hanging",
        "cannot make progress",
    ] {
        quiet_panics_containing(marker);
    }
}

/// Extracts a panic payload's message.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        String::new()
    }
}

/// Counts its drops in `drops[id]`: one per job, whether the job ran or was
/// discarded (made with [`counters`]).
pub struct Probe {
    pub id: usize,
    pub drops: std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>>,
}

impl Probe {
    /// The probe for job `id`, counting into `drops` (from [`counters`]).
    pub fn new(id: usize, drops: &std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>>) -> Self {
        Probe {
            id,
            drops: std::sync::Arc::clone(drops),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `n` drop counters for [`Probe`]s, all zero.
pub fn counters(n: usize) -> std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>> {
    std::sync::Arc::new(
        (0..n)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
    )
}

/// A panic payload whose own `Drop` panics (`panic_any(PayloadBomb)`): the
/// engine must drop the payloads it does not re-raise contained.
pub struct PayloadBomb;

impl Drop for PayloadBomb {
    fn drop(&mut self) {
        panic!("EXPECTED payload drop");
    }
}

/// Panics with a [`PayloadBomb`].
pub fn panic_with_bomb() {
    std::panic::panic_any(PayloadBomb)
}

/// Counts its drops; its `Drop` then panics with a [`PayloadBomb`].
pub struct BombDrop(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BombDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        panic_with_bomb()
    }
}

/// Holds the pool's one worker in a task until the returned sender sends
/// (or is dropped); returns once the worker is inside that task.
pub fn occupy_the_worker(pool: &ThreadPool) -> (parpool::AsyncResult<()>, mpsc::Sender<()>) {
    let (busy_tx, busy_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocker = pool.apply_async(move || {
        busy_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    busy_rx.recv().unwrap();
    (blocker, release_tx)
}

/// Occupies the only worker until the pool is terminated (the task polls
/// `cancelled()`), so that the worker is free to pop (and, terminated,
/// discard) queued jobs right after `terminate`.
pub fn occupy_until_terminate(pool: &ThreadPool) -> parpool::AsyncResult<()> {
    let (busy_tx, busy_rx) = mpsc::channel::<()>();
    let h = pool.apply_async(move || {
        busy_tx.send(()).unwrap();
        while !parpool::cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    busy_rx.recv().unwrap();
    h
}

/// Waits (up to 10 s) until `pool` has at least `n` items queued.
pub fn wait_queued(pool: &ThreadPool, n: usize) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while pool.stats().queued < n {
        assert!(std::time::Instant::now() < until, "never queued {n}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Live threads of this process whose name starts with `prefix` (Linux).
pub fn threads_named(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// Reads `read()` every `every` until it is at most `at_most` or `within`
/// has passed; returns the last reading (the caller asserts on it). The
/// one waiting loop behind [`settle`], [`strong_count_falls_to`] and
/// `memory::rss_settles_to`.
pub fn settles_to(
    mut read: impl FnMut() -> usize,
    at_most: usize,
    within: Duration,
    every: Duration,
) -> usize {
    let until = std::time::Instant::now() + within;
    loop {
        let now = read();
        if now <= at_most || std::time::Instant::now() > until {
            return now;
        }
        std::thread::sleep(every);
    }
}

/// Waits up to `secs` for the threads named `prefix` to be at most `n`;
/// returns how many are left.
pub fn settle(prefix: &str, n: usize, secs: u64) -> usize {
    settles_to(
        || threads_named(prefix),
        n,
        Duration::from_secs(secs),
        Duration::from_millis(20),
    )
}

/// A pool of `workers` threads named `prefix` (see [`threads_named`]).
pub fn named(prefix: &str, workers: usize) -> std::sync::Arc<ThreadPool> {
    std::sync::Arc::new(
        ThreadPool::builder()
            .workers(workers)
            .thread_name(prefix)
            .build()
            .unwrap(),
    )
}

/// A one-worker pool named `prefix` whose threads after the first take
/// `ms` milliseconds in their initializer (slow spares).
pub fn slow_spares(prefix: &str, ms: u64) -> std::sync::Arc<ThreadPool> {
    let started = std::sync::atomic::AtomicBool::new(false);
    std::sync::Arc::new(
        ThreadPool::builder()
            .workers(1)
            .thread_name(prefix)
            .initializer(move || {
                if started.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(ms));
                }
            })
            .build()
            .unwrap(),
    )
}

/// Threads that keep the CPUs busy (preemption of workers and submitters).
pub struct Busy(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
);

pub fn busy(n: usize) -> Busy {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hs = (0..n)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    Busy(stop, hs)
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in self.1.drain(..) {
            let _ = h.join();
        }
    }
}

/// Checks that `log` (start order of (submitter, index) pairs) has each
/// submitter's jobs start in submission order up to `workers - 1`
/// overtakes: when a job starts, every earlier job of its submitter was
/// popped, and at most `workers - 1` other threads can hold a popped job
/// they have not started yet.
pub fn assert_fifo_within(log: &[(usize, usize)], submitters: usize, per: usize, workers: usize) {
    assert_eq!(log.len(), submitters * per);
    let mut started = vec![vec![false; per]; submitters];
    // Per submitter: lowest index not started yet.
    let mut low = vec![0usize; submitters];
    for &(t, i) in log {
        assert!(!started[t][i], "job ({t}, {i}) started twice");
        started[t][i] = true;
        while low[t] < per && started[t][low[t]] {
            low[t] += 1;
        }
        // Earlier jobs of `t` not started yet when `i` started.
        let pending = (low[t]..i).filter(|&j| !started[t][j]).count();
        assert!(
            pending < workers,
            "submitter {t}: job {i} started while {pending} earlier ones had not \
             (pool of {workers}): per-submitter FIFO broken"
        );
    }
}

/// Waits (up to 10 s) until `Arc::strong_count(arc) <= want`, and returns
/// the count it saw last: a clone released by another thread (a task's
/// slot waking its waker, a worker ending its job, a census dropping a
/// kept waker) is gone a moment after the event that releases it, not at
/// once, so a count read right after that event, or after a sleep, can be
/// one too high. The caller asserts on the result; a clone that is kept
/// for good never goes, and the wait gives up after 10 s.
pub fn strong_count_falls_to<T>(arc: &std::sync::Arc<T>, want: usize) -> usize {
    settles_to(
        || std::sync::Arc::strong_count(arc),
        want,
        Duration::from_secs(10),
        Duration::from_millis(1),
    )
}

/// A gate that tasks wait at until the test opens it: a task that must
/// still be running when the test checks something waits here instead of
/// sleeping "long enough", so the scheduler no longer decides the outcome.
/// Clones share the gate. A wait gives up after its bound (10 s for
/// [`Gate::wait`]), so a test whose gate is never opened (a failed
/// assertion, or the waiter itself stuck behind the gate) ends instead of
/// hanging; a check that the waiter did *not* wait for the gated task can
/// then use a bound well below that (the failure takes the whole bound).
#[derive(Clone, Default)]
pub struct Gate(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until the gate is open, at most 10 s; returns whether it is.
    pub fn wait(&self) -> bool {
        self.wait_at_most(Duration::from_secs(10))
    }

    /// Waits until the gate is open, at most `max`; returns whether it is.
    pub fn wait_at_most(&self, max: Duration) -> bool {
        let (open, cv) = &*self.0;
        let open = open.lock().unwrap_or_else(|e| e.into_inner());
        let (open, _) = cv
            .wait_timeout_while(open, max, |open| !*open)
            .unwrap_or_else(|e| e.into_inner());
        *open
    }

    /// Whether the gate is open (without waiting).
    pub fn is_open(&self) -> bool {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the gate for good, waking every waiter.
    pub fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}

/// Terminates `pool` on a thread of its own and waits at most `secs` for
/// it; then calls `after` with whether `terminate` returned, before the
/// terminating thread is joined (so `after` can release whatever a hung
/// `terminate` waits for, and the test fails instead of hanging).
pub fn terminate_within<T>(pool: &ThreadPool, secs: u64, after: impl FnOnce(bool) -> T) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            pool.terminate();
            let _ = done_tx.send(());
        });
        let returned = done_rx.recv_timeout(Duration::from_secs(secs)).is_ok();
        after(returned)
    })
}

/// Polls `parpool::cancelled()` for at most `secs`; whether it turned true.
pub fn wait_for_cancelled(secs: u64) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if parpool::cancelled() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// A handle made later in a chain of waits ([`queue_wait_chain`]).
pub type ChainSlot = std::sync::Arc<std::sync::OnceLock<parpool::AsyncResult<u32>>>;

/// Queues `n` tasks on `pool`; task i's error callback counts itself in
/// `calls`, then calls `wait` on task i+1's handle (the last waits for
/// nothing). Such a chain unwinds only when `terminate`'s drain runs the
/// callbacks, each inside the one before.
pub fn queue_wait_chain(
    pool: &ThreadPool,
    n: usize,
    calls: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
    wait: impl Fn(&parpool::AsyncResult<u32>) + Clone + Send + 'static,
) -> Vec<ChainSlot> {
    use std::sync::atomic::Ordering;
    let slots: Vec<ChainSlot> = (0..n).map(|_| Default::default()).collect();
    for i in 0..n {
        let next = slots.get(i + 1).cloned();
        let (c, wait) = (std::sync::Arc::clone(calls), wait.clone());
        let h = pool.apply_async(move || i as u32).on_error(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            if let Some(next) = next {
                let h = loop {
                    if let Some(h) = next.get() {
                        break h;
                    }
                    std::thread::yield_now();
                };
                wait(h);
            }
        });
        slots[i].set(h).ok().unwrap();
    }
    slots
}

/// The drain's wait chain deeper than the inlining depth (32): on a
/// one-worker pool whose worker is busy, 40 tasks chained by
/// [`queue_wait_chain`] with `wait`, then `terminate`. It must return
/// within 8 s, run every callback once and leave every task done; `what`
/// names the wait in a failure.
pub fn terminate_through_wait_chain(
    what: &str,
    wait: impl Fn(&parpool::AsyncResult<u32>) + Clone + Send + 'static,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pool = ThreadPool::with_workers(1);
    let (occupant, release) = occupy_the_worker(&pool);
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let n = 40;
    let slots = queue_wait_chain(&pool, n, &calls, wait);
    wait_queued(&pool, n);
    terminate_within(&pool, 8, |returned| {
        let c = calls.load(Ordering::SeqCst);
        let _ = release.send(());
        assert!(
            returned,
            "terminate hung: {c} of {n} callbacks ran ({what})"
        );
    });
    occupant.get().unwrap();
    for s in &slots {
        assert!(s.get().unwrap().ready());
    }
    assert_eq!(calls.load(Ordering::SeqCst), n, "every callback ran once");
}

/// Runs `f` in a `Drop` that runs while its thread unwinds from another
/// panic (an `EXPECTED: ...` one, caught here), and returns what `f`
/// returned. A panic out of `f` there aborts the process: call this in a
/// child process (`child.rs`).
pub fn while_unwinding<T>(f: impl FnOnce() -> T) -> T {
    struct OnDrop<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for OnDrop<F> {
        fn drop(&mut self) {
            assert!(std::thread::panicking());
            (self.0.take().expect("dropped once"))();
        }
    }
    let mut out = None;
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _call = OnDrop(Some(|| out = Some(f())));
        panic!("EXPECTED: unwinding past a Drop that calls the pool");
    }));
    assert!(unwound.is_err());
    out.expect("the Drop ran")
}
