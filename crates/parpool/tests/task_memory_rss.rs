//! Task memory (`slab.rs`) gives memory back: after the last pool is
//! dropped, with a pool kept alive (at most the documented 128 MiB of empty
//! regions), across many short-lived threads, and when a long-lived thread
//! freed the last task of many regions. From a hostile review of the slab:
//! the first version grew an idle process to 450 MiB (regions from glibc's
//! heap) and let one thread's cache pin 64 regions per class.
//!
//! Each test measures its own process's resident memory, so each runs in a
//! child process of its own (`common/child.rs`).

#[path = "common/child.rs"]
mod child;
mod common;

use common::memory::{burst, rss_kb, rss_settles_to};
use parpool::ThreadPool;
use std::sync::mpsc;
use std::time::Duration;

/// A 1M burst of apply_async + get; then every pool is dropped. Does RSS go back?
#[test]
fn mem_burst_then_drop_all_pools() {
    child::run("mem_burst_then_drop_all_pools", 300, || {
        let base = rss_kb();
        for round in 0..3 {
            let pool = ThreadPool::with_workers(2);
            let hs: Vec<_> = (0..1_000_000u64)
                .map(|i| pool.apply_async(move || i * 3))
                .collect();
            let mut sum = 0u64;
            for h in hs {
                sum += h.get().unwrap();
            }
            assert_eq!(sum, 3 * (999_999u64 * 1_000_000 / 2));
            let with_pool = rss_kb();
            drop(pool);
            std::thread::sleep(Duration::from_millis(200));
            eprintln!(
                "round {round}: base {base} kB, with pool after burst {with_pool} kB, after drop {} kB",
                rss_kb()
            );
        }
    })
}

/// A long-lived thread that drops one handle per region keeps one slot of
/// each region in its thread cache: after the pool is gone, nothing alive,
/// the regions stay (each fully touched).
#[test]
fn mem_thread_cache_pins_regions_after_pools_gone() {
    child::run(
        "mem_thread_cache_pins_regions_after_pools_gone",
        300,
        || {
            let base = rss_kb();
            // A long-lived thread (think: a tokio worker, a GUI thread).
            let (tx, rx) = mpsc::channel::<Vec<parpool::AsyncResult<u64>>>();
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let (quit_tx, quit_rx) = mpsc::channel::<()>();
            let holder = std::thread::spawn(move || {
                let hs = rx.recv().unwrap();
                for h in hs {
                    h.get().unwrap(); // the last reference: freed into this thread's cache
                }
                done_tx.send(()).unwrap();
                quit_rx.recv().unwrap();
            });
            let pool = ThreadPool::with_workers(2);
            // 80-byte task => 128-byte class: (2 MiB - 64) / 128 = 16383 slots per region.
            let per_region = 16383;
            let n = per_region * 64;
            let mut hs: Vec<_> = (0..n as u64).map(|i| pool.apply_async(move || i)).collect();
            for h in &hs {
                h.wait();
            }
            std::thread::sleep(Duration::from_millis(100)); // workers drop the queue refs
            let mut keep = Vec::new();
            // one handle from every region (indexes 16383*k + 8000: middle of region k or so)
            let mut i = hs.len();
            while i > 0 {
                i -= 1;
                if i % per_region == 8000 {
                    keep.push(hs.swap_remove(i));
                }
            }
            eprintln!("kept {} handles", keep.len());
            drop(hs);
            let peak = rss_kb();
            tx.send(keep).unwrap();
            done_rx.recv().unwrap();
            drop(pool);
            std::thread::sleep(Duration::from_millis(300));
            let after = rss_kb();
            eprintln!(
                "base {base} kB, peak {peak} kB, all tasks freed and pool dropped: {after} kB"
            );
            quit_tx.send(()).unwrap();
            holder.join().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            eprintln!("after the holder thread exits: {} kB", rss_kb());
            assert!(
                after < base + 40 * 1024,
                "{} MiB retained with no task alive and no pool",
                (after - base) / 1024
            );
        },
    )
}

/// Many short-lived threads each doing a few apply_async: bounded RSS?
#[test]
fn mem_short_lived_threads() {
    child::run("mem_short_lived_threads", 300, || {
        let pool = std::sync::Arc::new(ThreadPool::with_workers(2));
        let mut marks = Vec::new();
        for round in 0..20_000 {
            let p = pool.clone();
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..5u64).map(|i| p.apply_async(move || i)).collect();
                // drop some unfinished, get others
                for (k, h) in hs.into_iter().enumerate() {
                    if k % 2 == 0 {
                        h.get().unwrap();
                    }
                }
            })
            .join()
            .unwrap();
            if round % 4000 == 0 {
                marks.push(rss_kb());
            }
        }
        marks.push(rss_kb());
        eprintln!("RSS marks (kB): {marks:?}");
        assert!(
            marks.last().unwrap() < &(marks[1] + 20 * 1024),
            "grows: {marks:?}"
        );
    })
}

/// Bursts of 1M with a fresh pool each round, every pool dropped in between.
#[test]
fn mem_bursts_fresh_pool_each_round() {
    child::run("mem_bursts_fresh_pool_each_round", 500, || {
        let base = rss_kb();
        let mut after = Vec::new();
        for _ in 0..10 {
            let pool = ThreadPool::with_workers(2);
            burst(&pool, 1_000_000);
            drop(pool);
            std::thread::sleep(Duration::from_millis(50));
            after.push(rss_kb() / 1024);
        }
        eprintln!(
            "base {} MiB; RSS after each round, no pool alive (MiB): {after:?}",
            base / 1024
        );
        assert!(
            *after.last().unwrap() < base / 1024 + 40,
            "retained: {after:?}"
        );
    })
}

/// Bursts of 1M with one pool alive throughout: documented bound is 128 MiB
/// of empty regions plus a first region per class.
#[test]
fn mem_bursts_pool_alive() {
    child::run("mem_bursts_pool_alive", 500, || {
        let base = rss_kb();
        let pool = ThreadPool::with_workers(2);
        let mut idle = Vec::new();
        let mut peak = Vec::new();
        for _ in 0..10 {
            let hs: Vec<_> = (0..1_000_000u64)
                .map(|i| pool.apply_async(move || i))
                .collect();
            peak.push(rss_kb() / 1024);
            for h in hs {
                h.get().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
            idle.push(rss_kb() / 1024);
        }
        eprintln!(
            "base {} MiB; peak per round {peak:?}; idle per round {idle:?}",
            base / 1024
        );
        assert!(
            peak.last().unwrap() < &(peak[0] + 30),
            "peak grows: {peak:?}"
        );
    })
}

fn burst_sized<const N: usize>(pool: &ThreadPool, n: usize) {
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let mut pad = [0u8; N];
            pad[0] = i as u8;
            pool.apply_async(move || pad[0] as usize)
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.get().unwrap(), i % 256);
    }
}

/// One pool alive throughout; bursts rotate through the four size classes.
/// Documented retention while bursts follow each other: at most 64 empty
/// regions (128 MiB) + one per class, and the queue's blocks for the
/// largest backlog (about 20 MiB for 600 000 jobs) in glibc's free lists.
/// Once the pool idles (`slab::DECAY`), both go back.
#[test]
fn mem_bursts_rotating_classes_pool_alive() {
    child::run("mem_bursts_rotating_classes_pool_alive", 500, || {
        let base = rss_kb();
        let pool = ThreadPool::with_workers(2);
        let mut idle = Vec::new();
        let rounds: usize = std::env::var("ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(12);
        for round in 0..rounds {
            match round % 4 {
                0 => burst_sized::<1>(&pool, 600_000), // ~72-byte task: class 1 (128)
                1 => burst_sized::<100>(&pool, 600_000), // class 2 (192)
                2 => burst_sized::<160>(&pool, 600_000), // class 3 (256)
                _ => burst_sized::<40>(&pool, 600_000), // 128-byte class again or 192
            }
            std::thread::sleep(Duration::from_millis(50));
            idle.push(rss_kb() / 1024);
        }
        eprintln!(
            "base {} MiB; idle RSS per round with the pool alive (MiB): {idle:?}",
            base / 1024
        );
        assert!(
            *idle.last().unwrap() < 128 + 4 * 2 + 20 + 40,
            "over the documented bound: {idle:?}"
        );
        let settled = rss_settles_to(base + 40 * 1024, 40) / 1024;
        assert!(
            settled < base / 1024 + 40,
            "the pool idled for 40 s and still holds {settled} MiB: {idle:?}"
        );
    })
}

/// With a pool alive, documented retention is <= 128 MiB of empty regions
/// plus a first region per class. One long-lived thread that happened to
/// free one slot per region, in two classes, pins 2 x 64 non-empty regions
/// on top of that, with no task alive.
#[test]
fn mem_thread_cache_pins_regions_pool_alive_two_classes() {
    child::run(
        "mem_thread_cache_pins_regions_pool_alive_two_classes",
        300,
        || {
            let base = rss_kb();
            let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let holder = std::thread::spawn(move || {
                for f in rx {
                    f();
                    done_tx.send(()).unwrap();
                }
            });
            let pool = ThreadPool::with_workers(2);
            fn pin<const N: usize>(
                pool: &ThreadPool,
                per_region: usize,
                tx: &mpsc::Sender<Box<dyn FnOnce() + Send>>,
                done: &mpsc::Receiver<()>,
            ) {
                let n = per_region * 64;
                let mut hs: Vec<_> = (0..n)
                    .map(|i| {
                        let pad = [i as u8; N];
                        pool.apply_async(move || pad[0] as u64)
                    })
                    .collect();
                for h in &hs {
                    h.wait();
                }
                std::thread::sleep(Duration::from_millis(100));
                let mut keep = Vec::new();
                let mut i = hs.len();
                while i > 0 {
                    i -= 1;
                    if i % per_region == per_region / 2 {
                        keep.push(hs.swap_remove(i));
                    }
                }
                drop(hs);
                tx.send(Box::new(move || {
                    for h in keep {
                        h.get().unwrap();
                    }
                }))
                .unwrap();
                done.recv().unwrap();
            }
            pin::<1>(&pool, 16383, &tx, &done_rx); // 128-byte class
            pin::<100>(&pool, 10922, &tx, &done_rx); // 192-byte class
            std::thread::sleep(Duration::from_millis(200));
            let idle = rss_kb();
            eprintln!(
                "base {} MiB; pool alive, no task alive: {} MiB",
                base / 1024,
                idle / 1024
            );
            drop(tx);
            holder.join().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            eprintln!("after the holder thread exits: {} MiB", rss_kb() / 1024);
            drop(pool);
            assert!(
                idle / 1024 < 128 + 8 + 30,
                "over the documented bound: {} MiB",
                idle / 1024
            );
        },
    )
}

/// Asserts that a burst's memory went back once the pool idled: within
/// 40 s, the resident memory falls to `base` plus `kept_kb` (what the
/// caller itself still holds) plus a tenth of the rest of the burst's
/// growth to `peak`.
fn assert_given_back(what: &str, base: usize, peak: usize, kept_kb: usize) {
    let limit = base + kept_kb + (peak - base - kept_kb) / 10;
    let settled = rss_settles_to(limit, 40);
    eprintln!("{what}: base {base} kB, peak {peak} kB, idle pool {settled} kB");
    assert!(
        settled <= limit,
        "{what}: the pool idled for 40 s and kept {} of the burst's {} kB",
        settled - base,
        peak - base
    );
}

/// A burst on a pool that stays alive (a long-lived service pool): once
/// the pool has been idle for a while (`slab::DECAY`, 10 s), its memory goes
/// back, the kept regions and the queue's blocks in glibc alike, without
/// the pool being dropped. Before, the pool kept up to 128 MiB of regions
/// and the heap kept the queue's blocks for as long as it lived. A second
/// burst afterwards still works, and its memory goes back too.
#[test]
fn mem_burst_given_back_once_a_live_pool_idles() {
    child::run("mem_burst_given_back_once_a_live_pool_idles", 120, || {
        let pool = ThreadPool::with_workers(2);
        burst(&pool, 1000);
        // The handles' vector lives throughout: freeing an 8 MB buffer
        // makes glibc raise its trim threshold to 16 MB, and a thread
        // arena's free top below that stays (`malloc_trim` trims only the
        // main arena's top), which is glibc's and the caller's, not ours.
        let mut hs = Vec::with_capacity(1_000_000);
        let base = rss_kb();
        for round in 0..2 {
            // A backlog behind a held worker, so the queue's blocks pile up.
            let (held, hold_tx) = common::occupy_the_worker(&pool);
            hs.extend((0..1_000_000u64).map(|i| pool.apply_async(move || i * 3)));
            let peak = rss_kb();
            drop(hold_tx);
            held.get().unwrap();
            let mut sum = 0u64;
            for h in hs.drain(..) {
                sum += h.get().unwrap();
            }
            assert_eq!(sum, 3 * (999_999u64 * 1_000_000 / 2));
            // The vector's own pages, touched by the first round, stay.
            let vec_kb = hs.capacity() * std::mem::size_of::<parpool::AsyncResult<u64>>() / 1024;
            assert_given_back(&format!("round {round}"), base, peak, vec_kb);
        }
        assert_eq!(pool.apply(|| 5), 5);
    })
}

/// The same for a burst of tasks too big for the slab (global allocator):
/// the heap memory they freed goes back once the pool idles.
#[test]
fn mem_big_task_burst_given_back_once_a_live_pool_idles() {
    child::run(
        "mem_big_task_burst_given_back_once_a_live_pool_idles",
        120,
        || {
            let pool = ThreadPool::with_workers(2);
            burst(&pool, 1000);
            let (held, hold_tx) = common::occupy_the_worker(&pool);
            let mut hs = Vec::with_capacity(300_000);
            let base = rss_kb();
            hs.extend((0..300_000usize).map(|i| {
                let pad = [i as u8; 320];
                pool.apply_async(move || pad[319])
            }));
            let peak = rss_kb();
            drop(hold_tx);
            held.get().unwrap();
            for (i, h) in hs.drain(..).enumerate() {
                assert_eq!(h.get(), Ok(i as u8));
            }
            let vec_kb = hs.capacity() * std::mem::size_of::<parpool::AsyncResult<u8>>() / 1024;
            assert_given_back("big tasks", base, peak, vec_kb);
        },
    )
}
