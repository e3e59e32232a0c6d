//! A hostile review of wait-cycle detection (`wait_graph.rs`): more shapes
//! of real cycles (claim 1: refused, not hung), and a long random stress of
//! legitimate waits (claim 2: never refused).
#[path = "common/child.rs"]
mod child;
mod common;

use common::rng::Rng;
use common::{guard, quiet_panics_containing};
use parpool::{AsyncResult, PanicPolicy, TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

const CYCLE: &str = "wait cycle across";

/// Like `wait_cycles::ring`, on `pool`, with `rings` independent rings of
/// `n` tasks each; `closing_with_wait`: tasks `wait()` then `get()`.
fn rings(
    pool: &ThreadPool,
    rings: usize,
    n: usize,
    closing_with_wait: bool,
) -> Vec<(usize, Result<usize, TaskError>)> {
    quiet_panics_containing(CYCLE);
    let started = Arc::new(Barrier::new(n * rings));
    let (report, reports) = mpsc::channel();
    let mut inboxes: Vec<Sender<AsyncResult<usize>>> = Vec::new();
    let mut handles: Vec<AsyncResult<usize>> = Vec::new();
    for i in 0..n * rings {
        let (to_me, inbox): (_, Receiver<AsyncResult<usize>>) = mpsc::channel();
        inboxes.push(to_me);
        let started = started.clone();
        let report = report.clone();
        handles.push(pool.apply_async(move || {
            started.wait();
            let next = inbox.recv().unwrap();
            if closing_with_wait {
                next.wait();
            }
            let got = next.get();
            report.send((i, got)).unwrap();
            i
        }));
    }
    drop(report);
    let mut by_ring: Vec<Vec<AsyncResult<usize>>> = Vec::new();
    let mut it = handles.into_iter();
    for _ in 0..rings {
        let mut ring: Vec<_> = it.by_ref().take(n).collect();
        ring.rotate_left(1);
        by_ring.push(ring);
    }
    for (inbox, handle) in inboxes.iter().zip(by_ring.into_iter().flatten()) {
        inbox.send(handle).unwrap();
    }
    let mut got: Vec<_> = reports.iter().collect();
    got.sort_by_key(|(i, _)| *i);
    got
}

fn cycle_panics(got: &[(usize, Result<usize, TaskError>)], threads: usize) -> usize {
    let want = format!("{CYCLE} {threads} threads");
    got.iter()
        .filter(|(_, r)| matches!(r, Err(TaskError::Panicked(m)) if m.contains(&want)))
        .count()
}

#[test]
fn rings_of_four_and_eight_threads_are_found() {
    guard(60, || {
        for n in [4, 8] {
            let pool = ThreadPool::with_workers(n);
            let got = rings(&pool, 1, n, false);
            // One wait panics (its task never reports); the one waiting for
            // it sees the panic, the rest get values.
            assert_eq!(got.len(), n - 1, "{got:?}");
            assert_eq!(cycle_panics(&got, n), 1, "{got:?}");
        }
    });
}

#[test]
fn a_cycle_closed_by_wait_rather_than_get_is_found() {
    guard(30, || {
        let pool = ThreadPool::with_workers(3);
        let got = rings(&pool, 1, 3, true);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(cycle_panics(&got, 3), 1, "{got:?}");
    });
}

#[test]
fn two_independent_cycles_at_once_are_both_found() {
    guard(30, || {
        let pool = ThreadPool::with_workers(6);
        let got = rings(&pool, 2, 3, false);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(cycle_panics(&got, 3), 2, "{got:?}");
    });
}

/// A cycle on a `Terminate` pool: the refusal is a task panic, which
/// terminates the pool; the other task still sees it and nothing hangs.
#[test]
fn a_cycle_on_a_terminate_pool_terminates_it_and_ends() {
    guard(30, || {
        let pool = ThreadPool::builder()
            .workers(2)
            .on_panic(PanicPolicy::Terminate)
            .build()
            .unwrap();
        let got = rings(&pool, 1, 2, false);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(cycle_panics(&got, 2), 1, "{got:?}");
        pool.join();
        assert!(!pool.is_running());
    });
}

/// On an `Abort` pool the refusal is a task panic like any other: the
/// process aborts (documented: "the process aborts at the first task
/// panic"), rather than hanging.
#[test]
fn a_cycle_on_an_abort_pool_aborts_the_process() {
    if std::env::var(child::CHILD_ENV).as_deref()
        == Ok("a_cycle_on_an_abort_pool_aborts_the_process")
    {
        let pool = ThreadPool::builder()
            .workers(2)
            .on_panic(PanicPolicy::Abort)
            .build()
            .unwrap();
        rings(&pool, 1, 2, false);
        unreachable!("the cycle's panic aborts the process");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_cycle_on_an_abort_pool_aborts_the_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            child::CHILD_ENV,
            "a_cycle_on_an_abort_pool_aborts_the_process",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(CYCLE), "{err}");
}

/// Two tasks on two workers whose success callbacks each wait for the other
/// task: both bodies are started before either returns, so the callbacks
/// run on different threads, each in the middle of its own task. The wait
/// that closes the cycle panics (in its callback, where it is caught); the
/// other callback's wait then returns.
#[test]
fn two_callbacks_on_two_threads_waiting_for_each_other_are_refused() {
    guard(30, || {
        quiet_panics_containing(CYCLE);
        let pool = ThreadPool::with_workers(2);
        let both = Arc::new(Barrier::new(2));
        let cells: Vec<Arc<OnceLock<AsyncResult<u32>>>> =
            (0..2).map(|_| Arc::new(OnceLock::new())).collect();
        let (said, saw) = mpsc::channel();
        let mut handles = Vec::new();
        for me in 0..2usize {
            let both = both.clone();
            let other = cells[1 - me].clone();
            let said = said.clone();
            let (go, gone) = mpsc::channel::<()>();
            let h = pool
                .apply_async(move || {
                    both.wait();
                    gone.recv().unwrap();
                    me as u32
                })
                .on_success(move |_| {
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        while other.get().is_none() {
                            std::thread::yield_now();
                        }
                        other.get().unwrap().wait()
                    }));
                    said.send(r.map_err(|p| common::panic_message(p.as_ref())))
                        .unwrap();
                });
            handles.push((h, go));
        }
        drop(said);
        let mut gos = Vec::new();
        for (cell, (h, go)) in cells.iter().zip(handles) {
            assert!(cell.set(h).is_ok());
            gos.push(go);
        }
        for go in &gos {
            go.send(()).unwrap();
        }
        let got: Vec<_> = saw.iter().collect();
        assert_eq!(got.len(), 2, "{got:?}");
        let refused: Vec<_> = got.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(refused.len(), 1, "{got:?}");
        assert!(
            refused[0].contains("wait cycle across 2 threads"),
            "{got:?}"
        );
        for cell in &cells {
            cell.get().unwrap().wait();
        }
    });
}

/// A cycle through inlined work: A (worker 1) waits for C, still queued,
/// and runs it inline; C waits for B; B (worker 2) waits for A. Worker 1 is
/// in the middle of C and A, so B's wait for A and C's wait for B close a
/// cycle across two threads, whichever blocks last.
#[test]
fn a_cycle_through_a_task_inlined_by_a_wait_is_found() {
    guard(30, || {
        quiet_panics_containing(CYCLE);
        let pool = Arc::new(ThreadPool::with_workers(2));
        let both = Arc::new(Barrier::new(2));
        let (to_a, a_inbox) = mpsc::channel::<AsyncResult<&str>>();
        let (to_b, b_inbox) = mpsc::channel::<AsyncResult<&str>>();
        let (said, saw) = mpsc::channel();
        let (p, s, said_a) = (pool.clone(), both.clone(), said.clone());
        let a = pool.apply_async(move || {
            s.wait();
            let b = b_inbox.recv().unwrap();
            let inline_here = std::thread::current().id();
            // Worker 2 is busy with B: C stays queued until A inlines it.
            let c = p.apply_async(move || {
                assert_eq!(std::thread::current().id(), inline_here, "C was inlined");
                b.get()
            });
            let got = c.get();
            said_a.send(("a", format!("{got:?}"))).unwrap();
            "a"
        });
        let b = pool.apply_async(move || {
            both.wait();
            // Let A inline C and block first.
            std::thread::sleep(Duration::from_millis(50));
            let got = a_inbox.recv().unwrap().get();
            said.send(("b", format!("{got:?}"))).unwrap();
            "b"
        });
        to_b.send(b).unwrap();
        to_a.send(a).unwrap();
        drop((to_a, to_b));
        let got: Vec<_> = saw.iter().collect();
        // B's wait closes the cycle: B panics; C gets B's panic and A gets
        // C's value (an Err inside Ok).
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "a", "{got:?}");
        assert!(got[0].1.contains("wait cycle across 2 threads"), "{got:?}");
    });
}

type Cells = Arc<Vec<OnceLock<AsyncResult<usize>>>>;

/// Waits, in one of several ways, for task `j`'s result; `j` ranks before
/// the waiting work, so the waits form a DAG whatever the timing.
fn wait_for(cells: &Cells, j: usize, how: u64) {
    let cell = &cells[j];
    let h = loop {
        if let Some(h) = cell.get() {
            break h;
        }
        std::thread::yield_now();
    };
    match how % 4 {
        0 | 1 => h.wait(),
        2 => {
            let _ = h.wait_timeout(Duration::from_micros(50 + how % 500));
            h.wait();
        }
        _ => {
            let _ = h.ready();
            h.wait();
        }
    }
}

/// Random DAGs of untimed waits across 1 to 8 workers, submitted in an
/// order unrelated to the DAG (so waits meet running, queued and inlined
/// tasks, and spares stand in), with waits in callbacks, in nested maps and
/// in tasks submitted by tasks: no wait may ever be refused as a cycle.
/// `PARPOOL_CYCLE_STRESS_SECS` sets how long (default 3 s).
/// Runs in a child process.
#[test]
fn random_dags_of_waits_are_never_refused() {
    let secs: u64 = std::env::var("PARPOOL_CYCLE_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // In a child process: the panic hook below must see only this test's
    // panics (the other tests here panic with the cycle's message on purpose).
    child::run(
        "random_dags_of_waits_are_never_refused",
        secs + 120,
        move || {
            static FALSE_ALARM: AtomicBool = AtomicBool::new(false);
            static FIRST: Mutex<Option<String>> = Mutex::new(None);
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let m = common::panic_message(info.payload());
                if m.contains(CYCLE) {
                    FALSE_ALARM.store(true, Ordering::SeqCst);
                    FIRST.lock().unwrap().get_or_insert(m.clone());
                }
                default(info);
            }));
            let end = Instant::now() + Duration::from_secs(secs);
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut rounds = 0;
            while Instant::now() < end || rounds < 8 {
                rounds += 1;
                seed = seed.wrapping_add(rounds);
                let mut rng = Rng(seed | 1);
                let workers = 1 + rng.below(8);
                let pool = Arc::new(ThreadPool::with_workers(workers));
                let n = 20 + rng.below(60);
                // rank[i]: task i's place in the DAG; it waits only for lower ranks.
                let mut rank: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    rank.swap(i, rng.below(i + 1));
                }
                let cells: Cells = Arc::new((0..n).map(|_| OnceLock::new()).collect());
                let ran = Arc::new(AtomicUsize::new(0));
                for i in 0..n {
                    let mut deps: Vec<(usize, u64)> = Vec::new();
                    for j in 0..n {
                        if rank[j] < rank[i] && rng.below(6) == 0 {
                            deps.push((j, rng.next()));
                        }
                    }
                    let (cb_deps, body_deps) = deps.split_at(deps.len() / 3);
                    let (cb_deps, body_deps) = (cb_deps.to_vec(), body_deps.to_vec());
                    let style = rng.below(4);
                    let (c, p, r) = (cells.clone(), pool.clone(), ran.clone());
                    let h = pool.apply_async(move || {
                        if style == 3 {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        match style {
                            // The waits inside a nested map's items.
                            1 if !body_deps.is_empty() => {
                                let c2 = c.clone();
                                p.map(move |(j, how)| wait_for(&c2, j, how), body_deps.clone());
                            }
                            // The waits inside a task this task submits (and
                            // waits for: it may run inline here).
                            2 => {
                                let c2 = c.clone();
                                let deps = body_deps.clone();
                                p.apply_async(move || {
                                    for (j, how) in deps {
                                        wait_for(&c2, j, how);
                                    }
                                })
                                .wait();
                            }
                            _ => {
                                for &(j, how) in &body_deps {
                                    wait_for(&c, j, how);
                                }
                            }
                        }
                        r.fetch_add(1, Ordering::Relaxed);
                        i
                    });
                    // Callbacks wait too (while this task is completing).
                    let c = cells.clone();
                    let h = h.on_success(move |_| {
                        for (j, how) in cb_deps {
                            wait_for(&c, j, how);
                        }
                    });
                    assert!(cells[i].set(h).is_ok());
                }
                // Near-cycles that end: X waits for Y with no limit while Y, and
                // then Y's callback, wait for X with a short one. Never refused.
                let mut near = Vec::new();
                for _ in 0..rng.below(4) {
                    let cell: Arc<OnceLock<AsyncResult<usize>>> = Arc::new(OnceLock::new());
                    let (c, us) = (cell.clone(), 1 + rng.below(2000) as u64);
                    let y = pool
                        .apply_async(move || {
                            while c.get().is_none() {
                                std::thread::yield_now();
                            }
                            let _ = c.get().unwrap().wait_timeout(Duration::from_micros(us));
                            0
                        })
                        .on_success({
                            let c = cell.clone();
                            move |_| {
                                let _ = c.get().unwrap().wait_timeout(Duration::from_micros(us));
                            }
                        });
                    let x = pool.apply_async(move || y.get().unwrap());
                    assert!(cell.set(x).is_ok());
                    near.push(cell);
                }
                // Cancelling a task others wait for ends their waits (some rounds).
                if rng.below(4) == 0 {
                    let j = rng.below(n);
                    if cells[j].get().unwrap().cancel() {
                        ran.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Some plain threads wait too, for random tasks.
                let waiters: Vec<_> = (0..2)
                    .map(|k| {
                        let c = cells.clone();
                        let j = (seed as usize + k) % n;
                        std::thread::spawn(move || wait_for(&c, j, 0))
                    })
                    .collect();
                for w in waiters {
                    w.join().unwrap();
                }
                for cell in cells.iter() {
                    cell.get().unwrap().wait();
                }
                for cell in &near {
                    assert!(cell.get().unwrap().wait_timeout(Duration::from_secs(60)));
                }
                assert_eq!(ran.load(Ordering::Relaxed), n);
                pool.close();
                pool.join();
                if FALSE_ALARM.load(Ordering::SeqCst) {
                    let first = FIRST.lock().unwrap().clone();
                    panic!(
                        "false alarm (round {rounds}, seed {seed}, {workers} workers): {first:?}"
                    );
                }
                assert_eq!(pool.stats().panicked, 0, "round {rounds}, seed {seed}");
            }
            eprintln!("{rounds} rounds");
        },
    );
}

/// `get_timeout(Duration::MAX)` has no limit (`Deadline::NEVER`, as the
/// pool's drain and `as_completed` treat it): closing a wait cycle, it
/// panics as `get` does (documented in its Panics section since this
/// review; the section listed only a spent handle).
#[test]
fn a_cycle_closed_by_get_timeout_max_panics_as_get_does() {
    guard(30, || {
        quiet_panics_containing(CYCLE);
        let pool = ThreadPool::with_workers(2);
        let both = Arc::new(Barrier::new(2));
        let (to_a, a_inbox) = mpsc::channel::<AsyncResult<()>>();
        let (to_b, b_inbox) = mpsc::channel::<AsyncResult<()>>();
        let (said, saw) = mpsc::channel();
        let (s, said_a) = (both.clone(), said.clone());
        let a = pool.apply_async(move || {
            s.wait();
            let mut b = b_inbox.recv().unwrap();
            let got = b.get_timeout(Duration::MAX);
            said_a.send(format!("{got:?}")).unwrap();
        });
        let b = pool.apply_async(move || {
            both.wait();
            let a = a_inbox.recv().unwrap();
            let got = a.wait_timeout(Duration::MAX);
            said.send(format!("{got:?}")).unwrap();
        });
        to_b.send(b).unwrap();
        to_a.send(a).unwrap();
        let got: Vec<_> = saw.iter().collect();
        // The closing wait panics; the other then sees the panic (A's
        // `get_timeout`) or that the task finished (B's `wait_timeout`).
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0] == "true" || got[0].contains("wait cycle across 2 threads"),
            "{got:?}"
        );
        assert_eq!(pool.stats().panicked, 1);
    });
}
