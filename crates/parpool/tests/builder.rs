//! Builder settings: initializer, max_tasks_per_worker, names, failures.
mod common;

use common::guard;
use parpool::{BuildError, ThreadPool};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

#[test]
fn initializer_runs_once_on_every_worker_before_any_task() {
    guard(30, || {
        thread_local!(static READY: Cell<bool> = const { Cell::new(false) });
        let inits = Arc::new(Mutex::new(Vec::<ThreadId>::new()));
        let i2 = Arc::clone(&inits);
        let pool = ThreadPool::builder()
            .workers(3)
            .initializer(move || {
                READY.with(|r| r.set(true));
                i2.lock().unwrap().push(std::thread::current().id());
            })
            .build()
            .unwrap();
        let init_ids: HashSet<ThreadId> = inits.lock().unwrap().iter().copied().collect();
        assert_eq!(init_ids.len(), 3, "once per worker");
        let seen: Vec<(bool, ThreadId)> = (0..200)
            .map(|_| pool.apply_async(|| (READY.with(|r| r.get()), std::thread::current().id())))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.get().unwrap())
            .collect();
        assert!(
            seen.iter().all(|(ready, _)| *ready),
            "initialized before taking work"
        );
        assert!(seen.iter().all(|(_, id)| init_ids.contains(id)));
    });
}

#[test]
fn max_tasks_per_worker_replaces_threads_and_reruns_the_initializer() {
    guard(30, || {
        let inits = Arc::new(AtomicUsize::new(0));
        let i2 = Arc::clone(&inits);
        let pool = ThreadPool::builder()
            .workers(1)
            .max_tasks_per_worker(2)
            .thread_name("short")
            .initializer(move || {
                i2.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap();
        let ids: Vec<(ThreadId, String)> = (0..6)
            .map(|_| {
                pool.apply_async(|| {
                    let t = std::thread::current();
                    (t.id(), t.name().unwrap_or("").to_owned())
                })
                .get()
                .unwrap()
            })
            .collect();
        assert_eq!(ids[0].0, ids[1].0);
        assert_ne!(ids[1].0, ids[2].0, "replaced after 2 tasks");
        assert_eq!(ids[2].0, ids[3].0);
        assert_ne!(ids[3].0, ids[4].0);
        let distinct: HashSet<_> = ids.iter().map(|(id, _)| *id).collect();
        assert_eq!(distinct.len(), 3);
        assert_eq!(ids[0].1, "short-0");
        assert_eq!(ids[2].1, "short-1", "replacements continue the count");
        assert!(
            inits.load(Ordering::SeqCst) >= 3,
            "initializer reran for replacements"
        );
        pool.close();
        pool.join(); // joins the replacements too
    });
}

#[test]
fn zero_workers_is_an_error_or_a_clear_panic() {
    guard(30, || {
        let err = ThreadPool::builder().workers(0).build().unwrap_err();
        assert!(matches!(err, BuildError::ZeroWorkers));
        assert!(err.to_string().contains("at least one worker"));
        let p = std::panic::catch_unwind(|| ThreadPool::with_workers(0)).unwrap_err();
        assert!(common::panic_message(p.as_ref()).contains("at least one worker"));
    });
}

#[test]
fn a_panicking_initializer_fails_the_build_and_leaves_no_thread() {
    guard(30, || {
        struct Exit(Arc<AtomicUsize>);
        impl Drop for Exit {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        thread_local!(static EXIT: RefCell<Option<Exit>> = const { RefCell::new(None) });
        let calls = Arc::new(AtomicUsize::new(0));
        let exited = Arc::new(AtomicUsize::new(0));
        let (c2, e2) = (Arc::clone(&calls), Arc::clone(&exited));
        let err = ThreadPool::builder()
            .workers(4)
            .initializer(move || {
                if c2.fetch_add(1, Ordering::SeqCst) == 2 {
                    panic!("no database");
                }
                EXIT.with(|e| *e.borrow_mut() = Some(Exit(Arc::clone(&e2))));
            })
            .build()
            .unwrap_err();
        assert!(
            matches!(err, BuildError::InitializerPanicked(ref m) if m == "no database"),
            "{err}"
        );
        // Every worker that initialized has exited (build joins them first).
        assert_eq!(
            exited.load(Ordering::SeqCst),
            calls.load(Ordering::SeqCst) - 1
        );
    });
}

#[test]
fn thread_names_and_stack_size() {
    guard(30, || {
        let pool = ThreadPool::builder()
            .workers(2)
            .thread_name("io")
            .stack_size(16 << 20)
            .build()
            .unwrap();
        let name = pool
            .apply(|| std::thread::current().name().map(str::to_owned))
            .unwrap();
        assert!(name == "io-0" || name == "io-1", "{name}");
        // A recursion that needs more than the default 2 MiB stack
        // (about 4 MiB here), well within the 16 MiB set.
        fn depth(n: u64) -> u64 {
            let pad = [n; 64];
            if n == 0 {
                0
            } else {
                std::hint::black_box(pad)[0].min(1) + depth(n - 1)
            }
        }
        assert_eq!(pool.apply(|| depth(6_000)), 6_000);
        assert_eq!(pool.workers(), 2);
    });
}
