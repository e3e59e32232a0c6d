//! Hostile review of `Blocked::must_help` (`worker.rs`): when an
//! uncompensated blocking wait on a worker runs queued jobs. Commit 936eeeb
//! made it re-read the census before every job and stop once the pool no
//! longer looked short; this test broke that (the old rule, "short as of the
//! last recheck", is back). Every wait here is timed, so nothing can hang;
//! the assertions are on how long things took.
mod common;

use parpool::ThreadPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One worker; the first spare starts, every later one panics in its
/// initializer (a thread limit reached mid-run, an initializer whose
/// resource ran out).
fn one_spare_then_none(name: &str) -> Arc<ThreadPool> {
    let starts = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&starts);
    Arc::new(
        ThreadPool::builder()
            .workers(1)
            .thread_name(name)
            .initializer(move || {
                if s.fetch_add(1, Ordering::SeqCst) >= 2 {
                    panic!("EXPECTED: no second spare");
                }
            })
            .build()
            .unwrap(),
    )
}

fn me() -> String {
    thread::current().name().unwrap_or("?").to_string()
}

/// W0 waits (timed, so it does not inline) for B; the spare S1 runs B.
/// B waits (timed) for X, which S1 runs inline (no second spare); X queues
/// L, which the now uncompensated W0 runs inline (600 ms). X ends at
/// 300 ms: S1 is active again, and B queues D and waits for it on a plain
/// channel (a wait the pool cannot see). When L returns, W0 is the only
/// thread that could run D, and must: it is uncompensated as of its last
/// recheck. Had it re-read the census between jobs (936eeeb), it would
/// count S1 active and stop helping, and D would wait until B gave up.
#[test]
fn an_uncompensated_waiter_stops_helping_when_a_thread_that_waits_invisibly_comes_back() {
    // The set-up leans on timing (B's 15 ms sleep lands between W0's first
    // two rechecks). On a loaded machine the threads may reach another
    // state, in which W0 is compensated when L is queued; the pool then
    // cannot see B's channel wait, and D waits for W0's next backed-off
    // recheck: the invisible-wait limit, not what this test is about. So
    // an attempt counts only if it reached the state under test (L ran on
    // W0, uncompensated, while X ran on S1), and a few are allowed.
    const ATTEMPTS: usize = 5;
    let mut missed = Vec::new();
    for attempt in 0..ATTEMPTS {
        let name = format!("mh1a{attempt}");
        let (ended, r, log) = uncompensated_waiter_scenario(&name);
        let reached =
            log.contains(&format!("X on {name}-1")) && log.contains(&format!("L on {name}-0"));
        if !reached {
            missed.push(log);
            continue;
        }
        assert!(ended, "B never ended: {log:?}");
        let (got, waited) = r.expect("B failed");
        assert!(
            got && waited < Duration::from_millis(1500),
            "D ran {} after {waited:?}; W0 was free to run it once L returned: {log:?}",
            if got { "only" } else { "never (B gave up)" }
        );
        return;
    }
    panic!("the state under test was never reached in {ATTEMPTS} attempts: {missed:?}");
}

/// One run of the scenario above on a fresh pool named `name`: whether B
/// ended, B's outcome (whether D ran, and how long B waited for it), and
/// the log of which thread ran what, in order, as one string.
fn uncompensated_waiter_scenario(
    name: &str,
) -> (bool, Result<(bool, Duration), parpool::TaskError>, String) {
    let pool = one_spare_then_none(name);
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (res_tx, res_rx) = mpsc::channel();
    let p = Arc::clone(&pool);
    let lg = Arc::clone(&log);
    let _a = pool.apply_async(move || {
        lg.lock().unwrap().push(format!("A on {}", me()));
        let (p2, lg2) = (Arc::clone(&p), Arc::clone(&lg));
        let hb = p.apply_async(move || {
            lg2.lock().unwrap().push(format!("B on {}", me()));
            // Let W0's first recheck (10 ms) find this spare active, so
            // that this thread blocks, fails to start a spare and takes X
            // before W0's next recheck (30 ms) leaves W0 uncompensated.
            thread::sleep(Duration::from_millis(15));
            let (p3, lg3) = (Arc::clone(&p2), Arc::clone(&lg2));
            let hx = p2.apply_async(move || {
                lg3.lock().unwrap().push(format!("X on {}", me()));
                let lg4 = Arc::clone(&lg3);
                drop(p3.apply_async(move || {
                    lg4.lock().unwrap().push(format!("L on {}", me()));
                    thread::sleep(Duration::from_millis(600));
                }));
                thread::sleep(Duration::from_millis(300));
            });
            assert!(hx.wait_timeout(Duration::from_secs(4)), "X never ended");
            let (tx, rx) = mpsc::channel();
            let lg5 = Arc::clone(&lg2);
            drop(p2.apply_async(move || {
                lg5.lock().unwrap().push(format!("D on {}", me()));
                let _ = tx.send(());
            }));
            let t = Instant::now();
            let got = rx.recv_timeout(Duration::from_secs(3)).is_ok();
            (got, t.elapsed())
        });
        let ended = hb.wait_timeout(Duration::from_secs(8));
        let _ = res_tx.send((ended, hb.get()));
    });
    let (ended, r) = res_rx
        .recv_timeout(Duration::from_secs(15))
        .expect("A never reported");
    let log = log.lock().unwrap().clone();
    pool.terminate();
    (ended, r, log.join(", "))
}

/// A worker of a one-worker pool whose spares cannot start waits (a
/// blocking `get`) for 2.5 s on another pool's task. Nothing can relieve
/// it, so it runs what is queued here itself; but it looked at the queue
/// only at its rechecks, which back off to 1 s: a job queued from another
/// thread 700 ms into the wait started about 560 ms late (at the 1.27 s
/// recheck), one queued later up to a second late. An uncompensated wait
/// now looks at the queue every 10 ms; only its spare retries back off.
#[test]
fn work_queued_beside_a_long_uncompensated_wait_starts_soon() {
    common::guard(30, || {
        let pool = common::spares::stranded("mh-late", 1, parpool::PanicPolicy::Propagate);
        let other = Arc::new(ThreadPool::with_workers(1));
        let (blocked_tx, blocked_rx) = mpsc::channel();
        let o = Arc::clone(&other);
        let waiter = pool.apply_async(move || {
            let h = o.apply_async(|| thread::sleep(Duration::from_millis(2500)));
            blocked_tx.send(()).unwrap();
            h.get().unwrap();
        });
        blocked_rx.recv().unwrap();
        for delay_ms in [700u64, 400] {
            thread::sleep(Duration::from_millis(delay_ms));
            let queued = Instant::now();
            let mut started = pool.apply_async(move || queued.elapsed());
            let late = started
                .get_timeout(Duration::from_secs(5))
                .expect("the queued job never ran");
            assert!(
                late < Duration::from_millis(200),
                "queued {delay_ms} ms later, it started {late:?} after it was queued"
            );
        }
        assert_eq!(waiter.get(), Ok(()));
        pool.terminate();
        pool.join();
    });
}
