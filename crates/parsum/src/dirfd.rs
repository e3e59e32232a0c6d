//! Directory descriptors, counted against a budget so that a walk never
//! runs the process out of descriptors.
//!
//! The walk opens directories relative to their parent (`walk.rs`), and a
//! file queued for hashing keeps its directory's descriptor until it is
//! hashed. In a deep tree with few files per directory (4000 nested
//! directories, one file each), every queued file holds a descriptor of its
//! own; when hashing falls behind (a loaded machine), the queue alone could
//! hold more descriptors than the process may open, and the directories
//! opened after that would fail with "Too many open files".
//!
//! Invariant: every directory descriptor of the walk is a [`DirFd`], counted
//! from its opening to its drop. A walk about to open one more while the
//! count is at the budget (the open-files limit less a reserve for the
//! files being hashed and the process's own) waits until hashing releases
//! one. The wait cannot deadlock: if no descriptor is released for a whole
//! second (every counted descriptor is held by walks themselves), the walk
//! goes on without waiting again until something is released, and an open
//! that then fails is reported as before. A walk keeps at most a quarter of
//! the budget open on its own path ([`held_levels`]).

use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// An open directory of the walk; released from the budget when dropped.
#[derive(Debug)]
pub struct DirFd(OwnedFd);

impl DirFd {
    /// Opens a directory through `open`, within the budget.
    pub fn open(open: impl FnOnce() -> rustix::io::Result<OwnedFd>) -> io::Result<DirFd> {
        BUDGET.acquire();
        match open() {
            Ok(fd) => Ok(DirFd(fd)),
            Err(e) => {
                BUDGET.release();
                Err(e.into())
            }
        }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.0
    }
}

impl Deref for DirFd {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        &self.0
    }
}

impl AsFd for DirFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Drop for DirFd {
    fn drop(&mut self) {
        BUDGET.release();
    }
}

struct Budget {
    /// Directory descriptors open now.
    open: AtomicUsize,
    /// A wait ran out of patience and nothing was released since: later
    /// opens do not wait again (see the module doc).
    starved: Mutex<bool>,
    released: Condvar,
    limit: OnceLock<usize>,
}

static BUDGET: Budget = Budget::new();

/// Whether half the budget is in use: a producer then sends the files it
/// has gathered to be hashed at once, instead of filling a whole batch
/// while the batch's files hold their directories open.
pub fn under_pressure() -> bool {
    BUDGET.open.load(Ordering::Relaxed) >= BUDGET.limit() / 2
}

/// How many directory levels a walk keeps open on its path before it lets
/// go of them and reopens them as `..` (`walk.rs`): at most 128, and a
/// quarter of the budget, so a walk alone never fills it.
pub fn held_levels() -> usize {
    (BUDGET.limit() / 4).clamp(4, 128)
}

/// Descriptors kept free for the files being hashed, standard streams,
/// pipes and the like.
const RESERVE: usize = 128;
/// How long a walk waits for a release before it goes on regardless.
const PATIENCE: Duration = Duration::from_secs(1);

impl Budget {
    const fn new() -> Budget {
        Budget {
            open: AtomicUsize::new(0),
            starved: Mutex::new(false),
            released: Condvar::new(),
            limit: OnceLock::new(),
        }
    }

    /// The open-files limit (read once, after `app` raised it) less the
    /// reserve and a few per hashing thread.
    fn limit(&self) -> usize {
        *self.limit.get_or_init(|| {
            let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(1 << 20)
                .min(1 << 20) as usize;
            let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
            soft.saturating_sub(RESERVE + 4 * threads).max(16)
        })
    }

    fn acquire(&self) {
        let limit = self.limit();
        if self.open.load(Ordering::SeqCst) >= limit {
            let mut starved = self.starved.lock().unwrap_or_else(PoisonError::into_inner);
            // Subtle: `release` decrements, then takes this lock to notify;
            // we check under the lock and wait with it released atomically,
            // so a release between the check and the wait is not missed.
            while self.open.load(Ordering::SeqCst) >= limit && !*starved {
                let (guard, waited) = self
                    .released
                    .wait_timeout(starved, PATIENCE)
                    .unwrap_or_else(PoisonError::into_inner);
                starved = guard;
                if waited.timed_out() {
                    *starved = true; // every descriptor is held by walks: go on
                }
            }
        }
        self.open.fetch_add(1, Ordering::SeqCst);
    }

    fn release(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        *self.starved.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    fn budget(limit: usize) -> Arc<Budget> {
        let b = Budget::new();
        b.limit.set(limit).unwrap();
        Arc::new(b)
    }

    #[test]
    fn a_walk_at_the_budget_waits_for_a_release() {
        let b = budget(2);
        b.acquire();
        b.acquire();
        let waiter = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                let t = Instant::now();
                b.acquire();
                t.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        b.release();
        let waited = waiter.join().unwrap();
        assert!(
            waited >= Duration::from_millis(90),
            "did not wait: {waited:?}"
        );
        assert!(waited < PATIENCE, "waited out its patience: {waited:?}");
        assert_eq!(b.open.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_walk_goes_on_when_nothing_is_released() {
        let b = budget(1);
        b.acquire();
        let t = Instant::now();
        b.acquire(); // nothing releases: waits PATIENCE, then goes on
        assert!(t.elapsed() >= PATIENCE);
        let t = Instant::now();
        b.acquire(); // still nothing released: no second wait
        assert!(t.elapsed() < PATIENCE);
        b.release();
        assert!(!*b.starved.lock().unwrap(), "a release ends the starvation");
        assert_eq!(b.open.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_open_is_not_counted() {
        let before = BUDGET.open.load(Ordering::SeqCst);
        let failed = DirFd::open(|| {
            rustix::fs::open(
                "/nonexistent/parsum-test",
                rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
        });
        assert!(failed.is_err());
        // Other tests may hold descriptors meanwhile; ours is not among them.
        assert!(BUDGET.open.load(Ordering::SeqCst) <= before + 8);
        assert!(BUDGET.limit() >= 16);
    }
}
