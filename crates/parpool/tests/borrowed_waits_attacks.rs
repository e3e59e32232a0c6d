//! Executor code run while a worker's set of pending futures is borrowed
//! (`exec_wait.rs`). The set's borrow is held while the thread counts
//! itself blocked; when that count starts a spare the system refuses at
//! once, the refusal wakes every future pending on the pool
//! (`worker::start_failed`), on this thread, inside the borrow: an
//! executor's `Waker::wake` is foreign code, and it may wait on the pool,
//! poll or drop a handle, or panic with a payload that does so when
//! dropped. A blocking wait there put the set aside with `borrow_mut` and
//! panicked ("already borrowed"); the pool contains a waker's panic, so
//! the executor's wake never finished its work: a hang in the executor.
//!
//! Two borrows reach it: the count of a future's poll (`pending`), once a
//! stranded `Pending` left the set's thread-local flag up, and the count
//! when a job run inside a stranded poll returns and the set it put aside
//! comes back (`Suspended`'s drop), once the job left something pending.
//! (A first poll with nothing seen had the flag still down while the
//! count ran, and a wait inside then took the fast path.) The count now
//! runs after the borrow (`Waits::count`), so code woken by it finds the
//! set reachable and counted.
//!
//! A spare's start fails at once only when the system refuses the thread:
//! each test runs in a child process whose pool `P` has huge stacks and
//! whose address space is then capped, so `P`'s spares cannot start
//! while everything else (a second pool `Q`, small allocations) can
//! (`common/capped.rs`).

#[path = "common/child.rs"]
mod child;
mod common;

use common::capped::{pools_with, second_poll_wakes, Hostile, PAST_RETRY};
use parpool::ThreadPool;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

/// A one-worker pool `P` whose spares the system refuses at once, and a
/// four-worker pool `Q` that works normally (`common/capped.rs`).
fn pools() -> (Arc<ThreadPool>, Arc<ThreadPool>) {
    pools_with(1)
}

/// What an action run inside a wake saw: `Ok(what it got)`, or
/// `Err(its panic's message)`.
type Outcome = Arc<Mutex<Option<Result<String, String>>>>;

/// What a hostile wake does, given `P` and `Q`; it records what it got.
type Act = fn(Arc<ThreadPool>, Arc<ThreadPool>, Outcome);

/// Runs `act` in a wake inside the borrow of a poll's count: a worker of
/// `P` polls a handle of a task queued behind it. The first poll counts
/// the thread (the spare's start fails, which sets `spares_failing`) and,
/// stranded, returns its first `Pending` (the set's flag stays up while
/// the key is seen). Past `RETRY` the second poll empties the set, records
/// the key again and counts again: the spare is refused again, inside the
/// borrow, and the waker runs there.
fn in_a_polls_count(act: Act) -> Option<Result<String, String>> {
    let (p, q) = pools();
    let outcome: Outcome = Arc::default();
    let (p2, q2, o2) = (Arc::clone(&p), Arc::clone(&q), Arc::clone(&outcome));
    let hostile = Hostile::new(move || act(p2, q2, o2));
    let p2 = Arc::clone(&p);
    let got = p.apply(move || second_poll_wakes(&p2, &hostile));
    assert_eq!(got, Ok(1));
    let out = outcome.lock().unwrap().take();
    out
}

/// Runs `act` in a wake inside the borrow of a set put back: a worker of
/// `P` awaits a slow task of `Q` while a job is queued on `P`; stranded, its
/// second poll runs that job, which leaves a future pending and returns
/// past `RETRY`. The set put back is counted again, the spare is refused
/// inside that borrow, and the first future's waker runs there.
fn in_a_restores_count(act: Act) -> Option<Result<String, String>> {
    let (p, q) = pools();
    let outcome: Outcome = Arc::default();
    let (p2, q2, o2) = (Arc::clone(&p), Arc::clone(&q), Arc::clone(&outcome));
    let hostile = Hostile::new(move || act(p2, q2, o2));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let slow = move || {
        let rx = Arc::clone(&release_rx);
        move || {
            let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
            2u32
        }
    };
    let (kept_tx, kept_rx) = mpsc::channel();
    let (p2, q2, h2) = (Arc::clone(&p), Arc::clone(&q), Arc::clone(&hostile));
    let got = p.apply(move || {
        let mut awaited = q2.apply_async(slow());
        let (q3, h3) = (Arc::clone(&q2), Arc::clone(&h2));
        let job = p2.apply_async(move || {
            // Left pending past the job's end: the set it leaves keeps the
            // thread-local flag up while the outer set is counted again.
            let mut left = q3.apply_async(slow());
            let noop = futures::task::noop_waker();
            assert!(Pin::new(&mut left)
                .poll(&mut Context::from_waker(&noop))
                .is_pending());
            kept_tx.send(left).unwrap();
            h3.arm();
            thread::sleep(PAST_RETRY);
        });
        let waker = Waker::from(Arc::clone(&h2));
        for _ in 0..2 {
            let polled = Pin::new(&mut awaited).poll(&mut Context::from_waker(&waker));
            assert!(polled.is_pending());
        }
        assert_eq!(job.get(), Ok(()));
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        awaited.get()
    });
    assert_eq!(got, Ok(2));
    assert_eq!(kept_rx.recv().unwrap().get(), Ok(2));
    let out = outcome.lock().unwrap().take();
    out
}

fn record(outcome: &Outcome, f: impl FnOnce() -> String) {
    *outcome.lock().unwrap() = Some(child::catch(f));
}

/// A blocking `get` of a task of another pool.
fn get_elsewhere(_p: Arc<ThreadPool>, q: Arc<ThreadPool>, o: Outcome) {
    record(&o, || {
        let h = q.apply_async(|| {
            thread::sleep(Duration::from_millis(20));
            7u32
        });
        format!("{:?}", h.get())
    });
}

/// A blocking `get` of a task queued on the waking worker's own pool,
/// which no spare can run: the wait runs it inline.
fn get_own(p: Arc<ThreadPool>, _q: Arc<ThreadPool>, o: Outcome) {
    record(&o, || format!("{:?}", p.apply_async(|| 7u32).get()));
}

/// A `map` on another pool.
fn map_elsewhere(_p: Arc<ThreadPool>, q: Arc<ThreadPool>, o: Outcome) {
    record(&o, || {
        let v = q.map(
            |x: u32| {
                thread::sleep(Duration::from_millis(20));
                x * 2
            },
            0..8,
        );
        format!("{}", v.iter().sum::<u32>())
    });
}

/// An `imap`'s `next` on another pool.
fn imap_elsewhere(_p: Arc<ThreadPool>, q: Arc<ThreadPool>, o: Outcome) {
    record(&o, || {
        let mut it = q.imap(
            |x: u32| {
                thread::sleep(Duration::from_millis(20));
                x + 1
            },
            0..3u32,
        );
        format!("{:?}", it.next())
    });
}

/// A scope on another pool.
fn scope_elsewhere(_p: Arc<ThreadPool>, q: Arc<ThreadPool>, o: Outcome) {
    record(&o, || {
        let hits = AtomicBool::new(false);
        q.scope(|s| {
            s.spawn(|| {
                thread::sleep(Duration::from_millis(20));
                hits.store(true, Ordering::SeqCst);
            })
        });
        format!("{}", hits.load(Ordering::SeqCst))
    });
}

/// An executor wait (`block_on`) on a handle of another pool: polls a
/// parpool future inside the borrow.
fn block_on_elsewhere(_p: Arc<ThreadPool>, q: Arc<ThreadPool>, o: Outcome) {
    record(&o, || {
        let h = q.apply_async(|| {
            thread::sleep(Duration::from_millis(20));
            7u32
        });
        format!("{:?}", futures::executor::block_on(h))
    });
}

/// An executor wait (`block_on`) on a task queued on the waking worker's
/// own pool, which no spare can run.
fn block_on_own(p: Arc<ThreadPool>, _q: Arc<ThreadPool>, o: Outcome) {
    record(&o, || {
        let h = p.apply_async(|| 7u32);
        format!("{:?}", futures::executor::block_on(h))
    });
}

/// Drops a handle polled once and one never polled, of tasks of the
/// waking worker's own pool. (While the count held the borrow, a stranded
/// poll could not record its first `Pending` and helped at once, running
/// its task inline; now it records it and returns `Pending`: both are
/// accepted.)
fn drop_own(p: Arc<ThreadPool>, _q: Arc<ThreadPool>, o: Outcome) {
    record(&o, || {
        let mut polled = p.apply_async(|| 1u32);
        let noop = futures::task::noop_waker();
        let first = Pin::new(&mut polled).poll(&mut Context::from_waker(&noop));
        drop(polled);
        drop(p.apply_async(|| 2u32));
        match first {
            Poll::Ready(Ok(1)) | Poll::Pending => "dropped".to_owned(),
            Poll::Ready(other) => format!("{other:?}"),
        }
    });
}

/// Panics with a payload whose `Drop` does a blocking `get` on another
/// pool: the pool drops a waker's payload where it contains it.
fn panic_with_a_waiting_payload(_p: Arc<ThreadPool>, q: Arc<ThreadPool>, o: Outcome) {
    struct WaitsOnDrop(Arc<ThreadPool>, Outcome);
    impl Drop for WaitsOnDrop {
        fn drop(&mut self) {
            let q = Arc::clone(&self.0);
            record(&self.1, move || {
                let h = q.apply_async(|| {
                    thread::sleep(Duration::from_millis(20));
                    7u32
                });
                format!("{:?}", h.get())
            });
        }
    }
    std::panic::panic_any(WaitsOnDrop(q, o));
}

fn ok(s: &str) -> Option<Result<String, String>> {
    Some(Ok(s.to_owned()))
}

macro_rules! child_test {
    ($name:ident, $driver:ident, $act:ident, $expected:expr) => {
        #[test]
        fn $name() {
            child::run(stringify!($name), 30, || {
                assert_eq!($driver($act), ok($expected));
            });
        }
    };
}

child_test!(
    a_wake_in_a_polls_count_may_get_elsewhere,
    in_a_polls_count,
    get_elsewhere,
    "Ok(7)"
);
child_test!(
    a_wake_in_a_polls_count_may_get_its_own_pools_task,
    in_a_polls_count,
    get_own,
    "Ok(7)"
);
child_test!(
    a_wake_in_a_polls_count_may_map,
    in_a_polls_count,
    map_elsewhere,
    "56"
);
child_test!(
    a_wake_in_a_polls_count_may_imap,
    in_a_polls_count,
    imap_elsewhere,
    "Some(1)"
);
child_test!(
    a_wake_in_a_polls_count_may_scope,
    in_a_polls_count,
    scope_elsewhere,
    "true"
);
child_test!(
    a_wake_in_a_polls_count_may_block_on,
    in_a_polls_count,
    block_on_elsewhere,
    "Ok(7)"
);
child_test!(
    a_wake_in_a_polls_count_may_block_on_its_own_pools_task,
    in_a_polls_count,
    block_on_own,
    "Ok(7)"
);
child_test!(
    a_wake_in_a_polls_count_may_drop_handles,
    in_a_polls_count,
    drop_own,
    "dropped"
);
child_test!(
    a_waker_payload_dropped_in_a_polls_count_may_wait,
    in_a_polls_count,
    panic_with_a_waiting_payload,
    "Ok(7)"
);
child_test!(
    a_wake_in_a_restores_count_may_get_elsewhere,
    in_a_restores_count,
    get_elsewhere,
    "Ok(7)"
);
child_test!(
    a_wake_in_a_restores_count_may_get_its_own_pools_task,
    in_a_restores_count,
    get_own,
    "Ok(7)"
);
child_test!(
    a_wake_in_a_restores_count_may_map,
    in_a_restores_count,
    map_elsewhere,
    "56"
);
