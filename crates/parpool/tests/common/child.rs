//! Helpers for the regression tests: running a dangerous case in a child
//! process, live-object counters, and a panic hook that hides expected panics.
//!
//! Declared from a test file with `#[path = "common/child.rs"] mod child;`.
#![allow(dead_code)]

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// The environment variable that tells a re-executed test binary which case
/// to run.
pub const CHILD_ENV: &str = "PARPOOL_CHILD";

/// Runs `body` in a child process: the current test binary is re-executed
/// with `--exact test_name`, and the same test function, seeing
/// `PARPOOL_CHILD=test_name`, runs `body` (under a `secs` guard). The parent
/// asserts that the child exited successfully, ran exactly one test, and did
/// so within `secs` seconds (plus start-up slack); otherwise it kills the
/// child and fails with the child's exit status and the tail of its output.
///
/// `test_name` must be the test function's name (the file's tests are at
/// the top level of the test crate).
pub fn run(test_name: &str, secs: u64, body: impl FnOnce() + Send + 'static) {
    run_limited(test_name, secs, None, body)
}

/// Like [`run`], with the child's virtual memory limited to `mem_mb`
/// megabytes (through `ulimit -v`), so runaway allocation fails inside the
/// child instead of exhausting the machine.
pub fn run_limited(
    test_name: &str,
    secs: u64,
    mem_mb: Option<u64>,
    body: impl FnOnce() + Send + 'static,
) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(test_name) {
        hide_expected_panics();
        guard(secs, body);
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    // `--include-ignored`: an `#[ignore]`d test (a known bug) run on purpose
    // with `--include-ignored` runs its body in the child too.
    let args = [
        test_name,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    let mut cmd = match mem_mb {
        Some(mb) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg(format!("ulimit -v {}; exec \"$0\" \"$@\"", mb * 1024))
                .arg(&exe)
                .args(args);
            c
        }
        None => {
            let mut c = Command::new(&exe);
            c.args(args);
            c
        }
    };
    cmd.env(CHILD_ENV, test_name)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn child test process");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let limit = Duration::from_secs(secs + 5);
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    };
    match status {
        None => panic!(
            "child `{test_name}` hung: killed after {} s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            limit.as_secs(),
            tail(&out),
            tail(&err)
        ),
        Some(st) => {
            #[cfg(unix)]
            let signal = {
                use std::os::unix::process::ExitStatusExt;
                st.signal()
            };
            #[cfg(not(unix))]
            let signal: Option<i32> = None;
            assert!(
                st.success() && out.contains("1 passed"),
                "child `{test_name}` failed: status {st:?} (signal {signal:?}) after {:.1} s\n\
                 --- stdout ---\n{}\n--- stderr ---\n{}",
                start.elapsed().as_secs_f64(),
                tail(&out),
                tail(&err)
            );
        }
    }
}

pub use crate::common::{guard, guard_named};

/// Marker that every intentional panic message in these tests contains.
pub const EXPECTED: &str = "EXPECTED";

/// Installs (once) a panic hook that hides panics whose message starts with
/// [`EXPECTED`], and the pool's own "parpool: pool not running" refusals;
/// it prints every other panic
/// as the default hook does, so real failures keep their message.
pub fn hide_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = message(info.payload());
            let refusal = msg.starts_with("parpool:") && msg.contains("not running");
            if msg.starts_with(EXPECTED) || refusal {
                return;
            }
            default(info);
        }));
    });
}

pub use crate::common::panic_message as message;

/// Runs `f`, returning `Err(message)` if it panicked.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| message(p.as_ref()))
}

/// Counts live [`Item`]s and, per id, how often each was dropped and how
/// often the mapped function saw it. One static per test.
pub struct Tracker {
    live: AtomicUsize,
    drops: Mutex<Vec<u32>>,
    calls: Mutex<Vec<u32>>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub const fn new() -> Self {
        Tracker {
            live: AtomicUsize::new(0),
            drops: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
        }
    }

    fn grow(v: &mut Vec<u32>, id: usize) {
        if v.len() <= id {
            v.resize(id + 1, 0);
        }
    }

    /// Forgets earlier counts (call between rounds), the live count included.
    pub fn reset(&self) {
        self.live.store(0, Ordering::SeqCst);
        self.drops.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn item(&'static self, id: usize) -> Item {
        self.live.fetch_add(1, Ordering::SeqCst);
        Item {
            id,
            bomb: false,
            tracker: self,
        }
    }

    /// An item whose `Drop` panics (after being counted).
    pub fn bomb(&'static self, id: usize) -> Item {
        let mut it = self.item(id);
        it.bomb = true;
        it
    }

    /// Items `0..n`.
    pub fn items(&'static self, n: usize) -> Vec<Item> {
        (0..n).map(|i| self.item(i)).collect()
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Records that the mapped function saw `id`.
    pub fn call(&self, id: usize) {
        let mut c = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        Self::grow(&mut c, id);
        c[id] += 1;
    }

    pub fn calls(&self) -> Vec<u32> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn total_calls(&self) -> u64 {
        self.calls().iter().map(|&c| c as u64).sum()
    }

    pub fn drops(&self) -> Vec<u32> {
        self.drops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asserts that no item is live and each of `0..n` was dropped exactly once.
    pub fn assert_all_dropped_once(&self, n: usize, what: &str) {
        assert_eq!(
            self.live(),
            0,
            "{what}: live items left (leaked or not yet dropped)"
        );
        let d = self.drops();
        let bad: Vec<(usize, u32)> = (0..n)
            .map(|i| (i, d.get(i).copied().unwrap_or(0)))
            .filter(|&(_, c)| c != 1)
            .take(10)
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: items not dropped exactly once (id, drops): {bad:?}"
        );
        assert!(d.len() <= n, "{what}: unknown ids dropped");
    }

    /// Asserts that no id was seen twice by the mapped function.
    pub fn assert_no_call_twice(&self, what: &str) {
        let twice: Vec<usize> = self
            .calls()
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 1)
            .map(|(i, _)| i)
            .take(10)
            .collect();
        assert!(
            twice.is_empty(),
            "{what}: items processed more than once: {twice:?}"
        );
    }
}

/// A live-counted object; see [`Tracker`].
pub struct Item {
    pub id: usize,
    bomb: bool,
    tracker: &'static Tracker,
}

impl Item {
    /// Records a call of the mapped function on this item; returns its id.
    pub fn seen(&self) -> usize {
        self.tracker.call(self.id);
        self.id
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        {
            let mut d = self.tracker.drops.lock().unwrap_or_else(|e| e.into_inner());
            Tracker::grow(&mut d, self.id);
            d[self.id] += 1;
        }
        self.tracker.live.fetch_sub(1, Ordering::SeqCst);
        if self.bomb {
            panic!("EXPECTED: drop of item {} panics", self.id);
        }
    }
}

/// A value whose `Drop` panics; for closures, callbacks and iterators.
pub struct DropBomb(pub &'static str);

impl Drop for DropBomb {
    fn drop(&mut self) {
        panic!("EXPECTED: drop of {} panics", self.0);
    }
}

/// Asserts that a 1-worker (or any) pool still works: a fresh task completes
/// within 5 s, and `stats().running` drops to 0 once it is idle.
pub fn assert_pool_healthy(pool: &std::sync::Arc<parpool::ThreadPool>, what: &str) {
    let p = std::sync::Arc::clone(pool);
    let r = guard_named(5, &format!("{what}: a fresh task on the pool"), move || {
        p.apply_async(|| 41 + 1).get()
    });
    assert_eq!(r, Ok(42), "{what}: pool no longer completes a task");
    let start = Instant::now();
    loop {
        let s = pool.stats();
        if s.running == 0 && s.queued == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: pool idle but stats not settled: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
