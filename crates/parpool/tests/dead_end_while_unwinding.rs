//! Waits that can never end, made from a `Drop` while the thread unwinds.
//!
//! The shape (`at_the_dead_end`): the only worker of a pool whose spare
//! threads cannot start (their initializer panics), its waits nested down
//! to the inlining depth, a job queued behind it. A wait there can never
//! end (`park::cannot_progress`), and off an unwinding thread it panics
//! "cannot make progress". From a `Drop` during unwinding that second panic
//! aborted the process, for an imap consumer's wait (`next`,
//! `next_timeout`, `batches`, `fold`, both orders) and for a poll reaching
//! the dead end in `exec_wait::help` (an awaited handle, a polled stream).
//! Each now gives up with its documented value, the imap iterator stays
//! ended, and the pool can still be closed, terminated, joined and dropped.
//! Every case runs in a child process (a failure is an abort) under a
//! time limit.
#[path = "common/child.rs"]
mod child;
mod common;

use common::while_unwinding;
use futures::{Stream, StreamExt};
use parpool::ThreadPool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MARK: &str = "EXPECTED";

/// Whether `op` runs from a `Drop` while unwinding, or plainly (its panic
/// caught and returned as `Err(message)`).
#[derive(Clone, Copy)]
enum On {
    Unwinding,
    Plain,
}

/// Runs `op` at the dead end: on the only worker of a one-worker pool
/// whose spares cannot start, 16 waits deep (1 MiB stacks: the inlining
/// depth), with a job queued behind it. Returns what `op` returned (or,
/// `On::Plain`, the message of its panic) and the pool.
fn at_the_dead_end(on: On, op: fn(&Arc<ThreadPool>) -> String) -> (String, Arc<ThreadPool>) {
    common::quiet_parpool_diagnostics();
    common::quiet_panics_containing(MARK);
    let pool = common::spares::stuck_one_worker();
    fn rec(p: Arc<ThreadPool>, d: u32, on: On, op: fn(&Arc<ThreadPool>) -> String) -> String {
        if d == 0 {
            let _queued = p.apply_async(|| 0u32);
            return match on {
                On::Unwinding => while_unwinding(|| op(&p)),
                On::Plain => child::catch(|| op(&p)).unwrap_or_else(|m| format!("panicked: {m}")),
            };
        }
        let q = Arc::clone(&p);
        p.apply_async(move || rec(q, d - 1, on, op))
            .get()
            .unwrap_or_else(|e| format!("outer {e:?}"))
    }
    let p = Arc::clone(&pool);
    // Under the child's time limit (`child::run`): a hang fails the test.
    let r = pool
        .apply_async(move || rec(p, 16, on, op))
        .get()
        .expect("the chain returns");
    (r, pool)
}

/// The pool still works, and closes and joins in time.
fn close_and_join(pool: Arc<ThreadPool>) {
    child::assert_pool_healthy(&pool, "after the give-up");
    pool.close();
    common::guard_named(10, "join after the give-up", move || pool.join());
}

/// The imap's `next()` ends the iteration there, and it stays ended: no
/// retry can spin on the dead end. (Aborted before.)
#[test]
fn an_imap_next_at_the_dead_end_ends_for_good() {
    child::run("an_imap_next_at_the_dead_end_ends_for_good", 40, || {
        let (r, pool) = at_the_dead_end(On::Unwinding, |p| {
            let mut it = p.imap(|x: u32| x, 0..3u32);
            let first = it.next();
            let again = it.next();
            let timed = it.next_timeout(Duration::from_millis(1));
            format!("{first:?} {again:?} {timed:?} {:?}", it.size_hint())
        });
        assert_eq!(r, "None None Ok(None) (0, Some(0))");
        close_and_join(pool);
    });
}

/// The same for `imap_unordered`, whose stream ends the same way.
/// (Aborted before.)
#[test]
fn an_imap_unordered_next_at_the_dead_end_ends_for_good() {
    child::run(
        "an_imap_unordered_next_at_the_dead_end_ends_for_good",
        40,
        || {
            let (r, pool) = at_the_dead_end(On::Unwinding, |p| {
                let mut it = p.imap_unordered(|x: u32| x, 0..3u32);
                let first = it.next();
                let again = it.next();
                format!("{first:?} {again:?} {:?}", it.size_hint())
            });
            assert_eq!(r, "None None (0, Some(0))");
            close_and_join(pool);
        },
    );
}

/// `next_timeout(Duration::MAX)` gives the timeout error once and ends
/// the iteration; a finite timeout there gives up at once rather than at
/// its deadline. Then the pool is terminated and joined. (Each aborted
/// before.)
#[test]
fn next_timeout_at_the_dead_end_times_out_and_ends() {
    child::run(
        "next_timeout_at_the_dead_end_times_out_and_ends",
        40,
        || {
            let (r, pool) = at_the_dead_end(On::Unwinding, |p| {
                let mut it = p.imap(|x: u32| x, 0..3u32);
                let first = it.next_timeout(Duration::MAX);
                let again = it.next_timeout(Duration::MAX);
                let next = it.next();
                let mut un = p.imap_unordered(|x: u32| x, 0..3u32);
                let start = Instant::now();
                let timed = un.next_timeout(Duration::from_secs(20));
                let early = start.elapsed() < Duration::from_secs(10);
                format!("{first:?} {again:?} {next:?} {timed:?} {early}")
            });
            assert_eq!(r, "Err(Timeout) Ok(None) None Err(Timeout) true");
            child::assert_pool_healthy(&pool, "after the give-up");
            pool.terminate();
            common::guard_named(10, "join after terminate", move || pool.join());
        },
    );
}

/// Internal iteration ends too: `batches()` (both orders), and `fold`
/// through `sum` and `for_each`. Then the pool is dropped, which joins.
/// (Aborted before.)
#[test]
fn batches_and_fold_at_the_dead_end_end() {
    child::run("batches_and_fold_at_the_dead_end_end", 40, || {
        let (r, pool) = at_the_dead_end(On::Unwinding, |p| {
            let mut b = p.imap(|x: u32| x, 0..3u32).batches();
            let (b1, b2) = (b.next(), b.next());
            let mut bu = p.imap_unordered(|x: u32| x, 0..3u32).batches();
            let bu1 = bu.next();
            let sum: u32 = p.imap(|x: u32| x, 0..3u32).sum();
            let mut seen = 0;
            p.imap_unordered(|x: u32| x, 0..3u32)
                .for_each(|_| seen += 1);
            format!("{b1:?} {b2:?} {bu1:?} {sum} {seen}")
        });
        assert_eq!(r, "None None None 0 0");
        child::assert_pool_healthy(&pool, "after the give-up");
        common::guard_named(10, "drop after the give-up", move || drop(pool));
    });
}

/// A stream polled to the dead end inside `exec_wait::help` (its poll runs
/// the queue itself once no stand-in can come) ends, and stays ended.
/// (Aborted before.)
#[test]
fn a_polled_stream_at_the_dead_end_ends() {
    child::run("a_polled_stream_at_the_dead_end_ends", 40, || {
        let (r, pool) = at_the_dead_end(On::Unwinding, |p| {
            let mut s = p.imap(|x: u32| x, 0..3u32).into_stream();
            let first = futures::executor::block_on(s.next());
            let again = futures::executor::block_on(s.next());
            let hint = s.size_hint();
            let u = p.imap_unordered(|x: u32| x, 0..3u32).into_stream();
            let all: Vec<u32> = futures::executor::block_on(u.collect());
            format!("{first:?} {again:?} {hint:?} {all:?}")
        });
        assert_eq!(r, "None None (0, Some(0)) []");
        close_and_join(pool);
    });
}

/// An awaited handle there gives up as its `get` does: `Timeout`, and the
/// handle is not spent (its task runs later; `get` off the dead end has
/// the result). (Aborted before.)
#[test]
fn an_awaited_handle_at_the_dead_end_times_out() {
    child::run("an_awaited_handle_at_the_dead_end_times_out", 40, || {
        static KEPT: std::sync::Mutex<Vec<parpool::AsyncResult<u32>>> =
            std::sync::Mutex::new(Vec::new());
        let (r, pool) = at_the_dead_end(On::Unwinding, |p| {
            let mut h = p.apply_async(|| 7u32);
            let polled = futures::executor::block_on(&mut h);
            KEPT.lock().unwrap().push(h);
            format!("{polled:?}")
        });
        assert_eq!(r, "Err(Timeout)");
        let mut h = KEPT.lock().unwrap().pop().expect("kept");
        assert_eq!(h.get_timeout(Duration::from_secs(10)), Ok(7));
        close_and_join(pool);
    });
}

/// `as_completed` that gave up there is over: `next` stays `None` and
/// `size_hint` says 0 (it counted the handles left before).
#[test]
fn as_completed_after_giving_up_is_empty() {
    child::run("as_completed_after_giving_up_is_empty", 40, || {
        let (r, pool) = at_the_dead_end(On::Unwinding, |p| {
            let mut it = parpool::as_completed(vec![p.apply_async(|| 1u32), p.apply_async(|| 2)]);
            let first = it.next().map(|h| h.get());
            let hint = it.size_hint();
            let again = it.next().map(|h| h.get());
            let timed = it
                .next_timeout(Duration::from_millis(1))
                .map(|h| h.is_some());
            format!("{first:?} {hint:?} {again:?} {timed:?} {}", it.count())
        });
        assert_eq!(r, "None (0, Some(0)) None Ok(false) 0");
        close_and_join(pool);
    });
}

/// Off an unwinding thread nothing changed: each of these waits panics
/// "cannot make progress" at the dead end, and the pool recovers.
#[test]
fn off_an_unwinding_thread_the_dead_end_still_panics() {
    child::run(
        "off_an_unwinding_thread_the_dead_end_still_panics",
        60,
        || {
            let ops: [fn(&Arc<ThreadPool>) -> String; 5] = [
                |p| format!("{:?}", p.imap(|x: u32| x, 0..3u32).next()),
                |p| {
                    format!(
                        "{:?}",
                        p.imap_unordered(|x: u32| x, 0..3u32)
                            .next_timeout(Duration::MAX)
                    )
                },
                |p| format!("{:?}", p.imap(|x: u32| x, 0..3u32).batches().next()),
                |p| {
                    let s = p.imap(|x: u32| x, 0..3u32).into_stream();
                    format!("{:?}", futures::executor::block_on(s.collect::<Vec<_>>()))
                },
                |p| format!("{:?}", futures::executor::block_on(p.apply_async(|| 1u32))),
            ];
            for (i, op) in ops.into_iter().enumerate() {
                let (r, pool) = at_the_dead_end(On::Plain, op);
                assert!(r.contains("cannot make progress"), "op {i}: {r}");
                close_and_join(pool);
            }
        },
    );
}
