//! The census while executor code runs inside a worker's count of its
//! pending set (`exec_wait.rs`): a spare the system refuses at once wakes
//! the pool's pending futures on the counting thread
//! (`worker::start_failed`), and a waker may wait there. The thread is
//! counted blocked once for its set; a wait inside must not count it a
//! second time (a double count makes the pool think a busy worker's
//! thread is blocked: past the inlining depth, a wait then panics "cannot
//! make progress" while another worker is about to run the queue).
//!
//! Each test runs in a child process whose pool `P`'s spares cannot start
//! (`common/capped.rs`).

#[path = "common/child.rs"]
mod child;
mod common;

use common::capped::{pools_with, second_poll_wakes, Hostile, PAST_RETRY};
use parpool::ThreadPool;
use std::future::Future;
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::Context;
use std::thread;
use std::time::Duration;

/// What an action run inside a wake saw: `Ok(what it got)`, or
/// `Err(its panic's message)`.
type Outcome = Arc<Mutex<Option<Result<String, String>>>>;

fn record(outcome: &Outcome, f: impl FnOnce() -> String) {
    *outcome.lock().unwrap() = Some(child::catch(f));
}

/// More than the inlining depth (`park::MAX_INLINE`, 32) of jobs of `p`,
/// each getting the next: on one thread the innermost cannot run its job
/// inline and blocks for it.
fn chain(p: &Arc<ThreadPool>, n: u32) -> Result<u32, String> {
    if n == 0 {
        return Ok(0);
    }
    let p2 = Arc::clone(p);
    match p.apply_async(move || chain(&p2, n - 1)).get() {
        Ok(inner) => inner.map(|v| v + 1),
        // The first error, not nested once per level.
        Err(e) => Err(format!("{e}").chars().take(400).collect()),
    }
}

/// On a two-worker `P` whose worker B is busy (on a job that waits on a
/// channel, released `busy_for` after the wake), worker A polls a handle
/// of a task queued behind B; its second poll's count is refused a spare
/// and the armed waker runs `act` inside that count.
fn beside_a_busy_worker(
    busy_for: Duration,
    act: impl FnOnce(Arc<ThreadPool>) -> String + Send + 'static,
) -> Option<Result<String, String>> {
    let (p, _q) = pools_with(2);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let busy = p.apply_async(move || {
        let _ = release_rx.recv_timeout(Duration::from_secs(20));
    });
    let outcome: Outcome = Arc::default();
    let (p2, o2) = (Arc::clone(&p), Arc::clone(&outcome));
    let hostile = Hostile::new(move || record(&o2, || act(p2)));
    let releaser = thread::spawn(move || {
        thread::sleep(PAST_RETRY + busy_for);
        let _ = release_tx.send(());
    });
    let p2 = Arc::clone(&p);
    let got = p.apply(move || second_poll_wakes(&p2, &hostile));
    assert_eq!(got, Ok(1));
    assert_eq!(busy.get(), Ok(()));
    releaser.join().unwrap();
    let out = outcome.lock().unwrap().take();
    out
}

/// A blocking wait past the inlining depth inside the count: the thread
/// counted once (the wait's own count), B active, so the wait waits for B.
#[test]
fn a_deep_wait_in_a_count_is_not_counted_twice() {
    child::run("a_deep_wait_in_a_count_is_not_counted_twice", 40, || {
        let got = beside_a_busy_worker(Duration::from_millis(1_500), |p| {
            format!("{:?}", chain(&p, 40))
        });
        assert_eq!(got, Some(Ok("Ok(40)".to_owned())));
    });
}

/// The wake leaves a handle of `P` pending (polled once, kept) before its
/// deep wait: the key joins the set being counted, which the wait puts
/// aside with it (one count, not two), and the handle is still answered.
#[test]
fn a_deep_wait_after_a_handle_left_pending_in_a_count_is_not_counted_twice() {
    child::run(
        "a_deep_wait_after_a_handle_left_pending_in_a_count_is_not_counted_twice",
        40,
        || {
            let (kept_tx, kept_rx) = mpsc::channel();
            let got = beside_a_busy_worker(Duration::from_millis(1_500), move |p| {
                let mut left = p.apply_async(|| 5u32);
                let noop = futures::task::noop_waker();
                let first = Pin::new(&mut left).poll(&mut Context::from_waker(&noop));
                kept_tx.send(left).unwrap();
                format!("{:?} {:?}", first.is_pending(), chain(&p, 40))
            });
            assert_eq!(got, Some(Ok("true Ok(40)".to_owned())));
            assert_eq!(kept_rx.recv().unwrap().get(), Ok(5));
        },
    );
}

/// The wake terminates `P`, whose worker it runs on, beside the busy
/// worker: the poll in progress ends (its task discarded or run), nothing
/// hangs.
#[test]
fn a_terminate_in_a_count_ends_the_poll() {
    child::run("a_terminate_in_a_count_ends_the_poll", 40, || {
        let (p, _q) = pools_with(2);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let busy = p.apply_async(move || {
            let _ = release_rx.recv_timeout(Duration::from_secs(20));
        });
        let p2 = Arc::clone(&p);
        let hostile = Hostile::new(move || {
            p2.terminate();
            let _ = release_tx.send(());
        });
        let p2 = Arc::clone(&p);
        let got = p.apply_async(move || second_poll_wakes(&p2, &hostile));
        // The outer task itself may be cut short by the terminate, or
        // answer with its inner task's outcome; either way it answers.
        let outcome = format!("{:?}", got.get());
        assert!(
            outcome.starts_with("Ok(Ok(1))")
                || outcome.starts_with("Ok(Err(")
                || outcome.starts_with("Err("),
            "{outcome}"
        );
        let _ = busy.get();
        p.join();
    });
}
