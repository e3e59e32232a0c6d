//! Memory measurements for the tests of task memory and its give-back
//! (`slab.rs`): the process's resident memory, bursts and backlogs of
//! `apply_async` tasks, and a forked child that must not hang.

use parpool::ThreadPool;
use std::time::{Duration, Instant};

/// This process's resident memory, in kB.
pub fn rss_kb() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Polls the resident memory for up to `secs` until it is at most `limit`
/// kB; returns the last reading.
pub fn rss_settles_to(limit: usize, secs: u64) -> usize {
    super::settles_to(
        rss_kb,
        limit,
        Duration::from_secs(secs),
        Duration::from_millis(50),
    )
}

/// `n` tasks submitted at once, then every result read and checked.
pub fn burst(pool: &ThreadPool, n: u64) {
    let hs: Vec<_> = (0..n).map(|i| pool.apply_async(move || i * 3)).collect();
    check_all(hs);
}

/// As [`burst`], behind a held worker, so that the whole backlog is queued
/// at once (the queue's blocks and the slab's burst regions pile up).
pub fn backlog(pool: &ThreadPool, n: u64) {
    let (held, release) = super::occupy_the_worker(pool);
    let hs: Vec<_> = (0..n).map(|i| pool.apply_async(move || i * 3)).collect();
    drop(release);
    held.get().unwrap();
    check_all(hs);
}

/// Reads every result of a burst of `i * 3` tasks and checks their sum.
fn check_all(hs: Vec<parpool::AsyncResult<u64>>) {
    let n = hs.len() as u64;
    let mut sum = 0u64;
    for h in hs {
        sum += h.get().unwrap();
    }
    assert_eq!(sum, 3 * ((n - 1) * n / 2));
}

/// Forks a child that runs `child` and exits; returns whether it hung
/// (had not exited after `limit`; it is then killed).
#[cfg(target_os = "linux")]
pub fn forked_child_hangs(child: impl FnOnce(), limit: Duration) -> bool {
    // SAFETY: the child runs only `child`, which the caller keeps to what
    // is under test, then `_exit`s; the parent goes on as before.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child();
        // SAFETY: ends the child without running the parent's destructors
        // or atexit handlers, which it does not own.
        unsafe { libc::_exit(0) };
    }
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child; `status` is a valid `c_int`.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return false;
        }
        if start.elapsed() > limit {
            // SAFETY: `pid` is our child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
