//! Wait cycles across threads (`wait_graph.rs`): tasks on different
//! workers that wait, untimed, for each other's results are refused with a
//! clear panic in the wait that closes the cycle, which frees the rest;
//! waits that only look like cycles (timed ones, chains, fan-in, inlined
//! work) are never refused.
#[path = "common/child.rs"]
mod child;
mod common;

use common::{guard, quiet_panics_containing};
use parpool::{AsyncResult, TaskError, ThreadPool};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

const CYCLE: &str = "wait cycle across";

/// `n` tasks on `n` workers, all started at once (so none can be inlined
/// by another's wait); task `i` waits, untimed, for task `i + 1`'s result
/// (the last for the first's) and reports what its wait gave. Returns the
/// reports: one per task that did not panic.
fn ring(n: usize) -> Vec<(usize, Result<usize, TaskError>)> {
    quiet_panics_containing(CYCLE);
    let pool = ThreadPool::with_workers(n);
    let started = Arc::new(Barrier::new(n));
    let (report, reports) = mpsc::channel();
    let mut inboxes: Vec<Sender<AsyncResult<usize>>> = Vec::new();
    let mut handles = Vec::new();
    for i in 0..n {
        let (to_me, inbox): (_, Receiver<AsyncResult<usize>>) = mpsc::channel();
        inboxes.push(to_me);
        let started = started.clone();
        let report = report.clone();
        handles.push(pool.apply_async(move || {
            started.wait();
            let next = inbox.recv().unwrap();
            let got = next.get();
            report.send((i, got)).unwrap();
            i
        }));
    }
    drop(report);
    // Task i gets task i+1's handle.
    handles.rotate_left(1);
    for (inbox, handle) in inboxes.iter().zip(handles) {
        inbox.send(handle).unwrap();
    }
    let mut got: Vec<_> = reports.iter().collect();
    got.sort_by_key(|(i, _)| *i);
    got
}

#[test]
fn two_tasks_waiting_for_each_other_end_with_one_clear_panic() {
    guard(30, || {
        let got = ring(2);
        // The wait that closed the cycle panicked (its task never reports);
        // the other task's wait then saw that panic, with its message.
        assert_eq!(got.len(), 1, "{got:?}");
        match &got[0].1 {
            Err(TaskError::Panicked(msg)) => {
                assert!(msg.contains("wait cycle across 2 threads"), "{msg}")
            }
            other => panic!("expected the cycle's panic, got {other:?}"),
        }
    });
}

#[test]
fn a_cycle_through_three_workers_is_found_and_unwinds_in_order() {
    guard(30, || {
        let got = ring(3);
        // One panics; the task waiting for it sees the panic; the third
        // then gets that task's value.
        assert_eq!(got.len(), 2, "{got:?}");
        let panicked: Vec<_> = got
            .iter()
            .filter(
                |(_, r)| matches!(r, Err(TaskError::Panicked(m)) if m.contains("across 3 threads")),
            )
            .collect();
        let values: Vec<_> = got.iter().filter(|(_, r)| r.is_ok()).collect();
        assert_eq!((panicked.len(), values.len()), (1, 1), "{got:?}");
    });
}

#[test]
fn a_timed_wait_in_a_ring_is_not_a_cycle() {
    guard(30, || {
        let pool = ThreadPool::with_workers(2);
        let started = Arc::new(Barrier::new(2));
        let (to_a, a_inbox) = mpsc::channel::<AsyncResult<&str>>();
        let (to_b, b_inbox) = mpsc::channel::<AsyncResult<&str>>();
        let s = started.clone();
        let a = pool.apply_async(move || {
            s.wait();
            let mut b = b_inbox.recv().unwrap();
            // Ends on its own: not refused, whatever B does meanwhile.
            assert_eq!(
                b.get_timeout(Duration::from_millis(300)),
                Err(TaskError::Timeout)
            );
            "a timed out"
        });
        let b = pool.apply_async(move || {
            started.wait();
            a_inbox.recv().unwrap().get().unwrap()
        });
        to_a.send(a).unwrap();
        to_b.send(b).unwrap();
        drop(to_a);
        // Nothing panicked: B got A's value once A's timed wait ended.
        pool.close();
        pool.join();
        assert_eq!(pool.stats().panicked, 0);
    });
}

/// Many tasks waiting, untimed, for earlier ones (chains, fan-in, waits on
/// queued tasks that get inlined, on few workers so spares stand in): no
/// wait is ever refused, and every task finishes.
#[test]
fn waits_without_a_cycle_are_never_refused() {
    guard(120, || {
        for workers in [1, 2, 3] {
            let pool = ThreadPool::with_workers(workers);
            let n = common::pick(300, 20);
            let cells: Vec<Arc<OnceLock<AsyncResult<usize>>>> =
                (0..n).map(|_| Arc::new(OnceLock::new())).collect();
            for i in 0..n {
                // Task i waits for i-1, i-2 and the first (fan-in).
                let deps: Vec<_> = [i.checked_sub(1), i.checked_sub(2), (i > 2).then_some(0)]
                    .into_iter()
                    .flatten()
                    .map(|j| cells[j].clone())
                    .collect();
                let handle = pool.apply_async(move || {
                    if i % 7 == 0 {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                    for d in &deps {
                        d.get().expect("set before this task was queued").wait();
                    }
                    i
                });
                assert!(cells[i].set(handle).is_ok());
            }
            // Joined: every task ran and dropped its closure, and with it
            // its clones of the cells.
            pool.close();
            pool.join();
            for (i, cell) in cells.into_iter().enumerate() {
                let handle = Arc::try_unwrap(cell).ok().and_then(OnceLock::into_inner);
                assert_eq!(handle.expect("one owner left").get(), Ok(i));
            }
            assert_eq!(pool.stats().panicked, 0, "{workers} workers");
        }
    });
}

/// A `Drop` that runs while its task unwinds and closes a wait cycle: the
/// refusal must not panic a second time (that aborts the process), so the
/// wait gives up with `Timeout`, the task's own panic goes on, and the
/// task waiting for it sees that panic.
#[test]
fn a_cycle_closed_while_unwinding_gives_up_instead_of_aborting() {
    child::run(
        "a_cycle_closed_while_unwinding_gives_up_instead_of_aborting",
        30,
        || {
            quiet_panics_containing("boom");
            let pool = ThreadPool::with_workers(2);
            let started = Arc::new(Barrier::new(2));
            let (to_a, a_inbox) = mpsc::channel::<AsyncResult<()>>();
            let (to_b, b_inbox) = mpsc::channel::<AsyncResult<()>>();
            let (said, saw) = mpsc::channel();
            let s = started.clone();
            let a_said = said.clone();
            let a = pool.apply_async(move || {
                s.wait();
                let b = b_inbox.recv().unwrap();
                a_said.send(("a", format!("{:?}", b.get()))).unwrap();
            });
            struct WaitOnDrop(Option<AsyncResult<()>>, Sender<(&'static str, String)>);
            impl Drop for WaitOnDrop {
                fn drop(&mut self) {
                    let got = self.0.take().unwrap().get();
                    self.1.send(("b's drop", format!("{got:?}"))).unwrap();
                }
            }
            let b = pool.apply_async(move || {
                started.wait();
                let _wait = WaitOnDrop(Some(a_inbox.recv().unwrap()), said);
                // Let A block first, so that B's unwinding wait closes it.
                std::thread::sleep(Duration::from_millis(100));
                panic!("boom");
            });
            to_b.send(b).unwrap();
            to_a.send(a).unwrap();
            let mut got: Vec<_> = saw.iter().collect();
            got.sort();
            assert_eq!(
                got,
                [
                    ("a", "Err(Panicked(\"boom\"))".to_string()),
                    ("b's drop", "Err(Timeout)".to_string()),
                ]
            );
        },
    );
}
