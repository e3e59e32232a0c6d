//! Attacks on the rescue of stalled imap reads (`src/imap/stash.rs`,
//! `Source::rescue` in `src/imap/credit.rs`, `wait_or_rescue` in
//! `src/imap/consumer.rs`): a consumer blocked on a read that published
//! nothing for a probe interval maps the published items itself.

mod common;

use common::{counters, guard, Probe};
use parpool::{TaskError, ThreadPool};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An input that yields `first` items at once, then blocks until the
/// returned sender is dropped (or sent more).
fn stalling_input<T: Send + 'static>(
    first: impl IntoIterator<Item = T>,
) -> (mpsc::Sender<T>, mpsc::Receiver<T>) {
    let (tx, rx) = mpsc::channel();
    for x in first {
        tx.send(x).unwrap();
    }
    (tx, rx)
}

/// `cancelled()` inside `f` turns true after `terminate` for a running
/// task (pool.rs, `terminate` docs). An item mapped by a rescue runs on the
/// consumer's thread: there `cancelled()` never follows `terminate`, so an
/// `f` that polls it (the documented way to stop a long task) runs on, and
/// `next` with it.
///
/// Was a bug (fixed): `Source::map_items` (src/imap/credit.rs, `cancel::enter(shared,
/// true)`) pushes a token that "follows terminate", but `cancelled()`
/// (src/cancel.rs:129) checks `worker::current_pool_terminated()`, which is
/// false on a non-worker thread (src/worker.rs:83-85) and looks at the
/// wrong pool on a worker of another pool. The rescue should push a flag
/// that also checks the imap's own registry (`Exchange::should_stop`).
#[test]
fn cancelled_inside_a_rescued_item_follows_terminate() {
    guard(20, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        let (tx, rx) = stalling_input([0u32]);
        let started = Arc::new(AtomicBool::new(false));
        let f = {
            let started = Arc::clone(&started);
            move |_: u32| {
                started.store(true, Ordering::SeqCst);
                let t = Instant::now();
                while !parpool::cancelled() {
                    if t.elapsed() > Duration::from_secs(2) {
                        return false; // never saw the terminate
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                true
            }
        };
        let terminator = {
            let (pool, started) = (Arc::clone(&pool), Arc::clone(&started));
            std::thread::spawn(move || {
                while !started.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(20));
                pool.terminate();
            })
        };
        // Credits of 8: the first reads item 0, then blocks in `recv`.
        let mut it = pool.imap(f, rx).chunksize(8);
        let got = it.next_timeout(Duration::from_secs(10));
        terminator.join().unwrap();
        drop(tx);
        drop(it);
        assert_eq!(
            got,
            Ok(Some(true)),
            "f never saw cancelled() after terminate"
        );
    });
}

thread_local!(static READY: Cell<bool> = const { Cell::new(false) });

/// The pool's `initializer` runs on every worker thread before it takes
/// any work (Python's `initializer`, for per-worker state such as a
/// connection in a thread-local): `f` may count on it. A rescue maps items
/// on the consumer's thread, where the initializer never ran; so a pool
/// with an initializer does not rescue: a stalled read's items wait for the
/// input to move, on the workers, as before rescues existed.
///
/// Was a bug: the first rescue design mapped rescued items on the
/// consumer's thread in every pool (`f` saw `false` here). Now
/// `InputSide::may_rescue` (src/imap/consumer.rs) is false with an
/// initializer.
#[test]
fn rescued_items_see_the_workers_initializer_state() {
    guard(20, || {
        let pool = ThreadPool::builder()
            .workers(2)
            .initializer(|| READY.with(|r| r.set(true)))
            .build()
            .unwrap();
        assert!(pool.apply(|| READY.with(|r| r.get())));
        let (tx, rx) = stalling_input([0u32, 1, 2]);
        // The input moves again (it ends) after three probe intervals.
        let mover = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60));
            drop(tx);
        });
        let got: Vec<bool> = pool
            .imap(|_: u32| READY.with(|r| r.get()), rx)
            .chunksize(8)
            .collect();
        mover.join().unwrap();
        assert_eq!(got, [true, true, true]);
    });
}

/// A request/response input (item k+1 only once result k came back)
/// consumed with `next_timeout` polls shorter than the 10 ms probe
/// interval, as an event loop does between other work. Each poll times
/// out before a probe, so the stalled read is never rescued: the stream
/// never yields the items the stalled credit holds, however long the
/// caller keeps polling.
///
/// Was a bug (fixed): `Consumer::wait_or_rescue` (src/imap/consumer.rs) probes only when
/// a `STALL_PROBE` wait times out *and* the caller's deadline has not
/// passed; a deadline shorter than `STALL_PROBE` never probes. Fix: probe
/// on every timed-out wait (the stash keeps the previous probe across
/// calls; stall detection needs the time of the last probe, not the
/// length of this wait), e.g. keep `last_probe: Instant` in the consumer
/// and call `rescue` whenever `STALL_PROBE` has passed since.
#[test]
fn short_next_timeout_polls_still_rescue_a_stalled_read() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        let n = 6u64;
        let (in_tx, in_rx) = mpsc::channel::<u64>();
        let (res_tx, res_rx) = mpsc::channel::<u64>();
        let producer = std::thread::spawn(move || {
            for k in 0..n {
                in_tx.send(k).unwrap();
                if res_rx.recv_timeout(Duration::from_secs(3)).is_err() {
                    return k; // gave up: the stream hung
                }
            }
            n
        });
        let mut it = pool.imap(|x: u64| x * 3, in_rx).chunksize(4);
        let mut seen = Vec::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            match it.next_timeout(Duration::from_millis(5)) {
                Ok(Some(v)) => {
                    seen.push(v);
                    let _ = res_tx.send(v);
                }
                Ok(None) => break,
                Err(TaskError::Timeout) => {} // other work here
                Err(e) => panic!("{e:?}"),
            }
        }
        drop(res_tx);
        let produced = producer.join().unwrap();
        drop(it);
        assert_eq!(produced, n, "the producer gave up after {seen:?}");
        assert_eq!(seen, (0..n).map(|k| k * 3).collect::<Vec<_>>());
    });
}

/// A producer that sends item k+1 only once result k came back; gives up
/// (ending the input) after `patience` without a result. Returns the
/// sender of results and the producer, whose value is how many items it
/// got answers for.
fn ping_pong_input(
    n: u64,
    patience: Duration,
) -> (
    mpsc::Receiver<u64>,
    mpsc::Sender<u64>,
    std::thread::JoinHandle<u64>,
) {
    let (in_tx, in_rx) = mpsc::channel::<u64>();
    let (res_tx, res_rx) = mpsc::channel::<u64>();
    let producer = std::thread::spawn(move || {
        for k in 0..n {
            in_tx.send(k).unwrap();
            if res_rx.recv_timeout(patience).is_err() {
                return k;
            }
        }
        n
    });
    (in_rx, res_tx, producer)
}

/// `close()` while a ping-pong is streaming (after a rescue): later
/// credits run on the consumer's thread, which then blocks in the input's
/// `next()` for an item that waits for a result the consumer holds but has
/// not handed out. The stream only goes on when the producer gives up.
///
/// Was a bug (fixed): `Consumer::top_up` (src/imap/consumer.rs, the `queue.submit`
/// refusal branch) runs refused credits inline, several in one loop and
/// before the results already delivered are handed out; no rescue can
/// help a read on the consumer's own thread. (Same with a pool closed
/// before the `imap`: pool.rs documents that the work then runs on the
/// consumer's thread, and the new docs say waiting inputs stream.) Fix:
/// after an inline credit, hand out what is ready before issuing another,
/// and once the pool refuses, run inline credits of one item.
#[test]
fn closing_the_pool_during_a_ping_pong_does_not_hang_it() {
    guard(20, || {
        for close_first in [true, false] {
            let pool = ThreadPool::with_workers(2);
            if close_first {
                pool.close();
            }
            let n = 8u64;
            let (in_rx, res_tx, producer) = ping_pong_input(n, Duration::from_secs(2));
            let mut seen = Vec::new();
            let t = Instant::now();
            for v in pool.imap(|x: u64| x * 3, in_rx) {
                seen.push(v);
                if seen.len() == 3 {
                    pool.close();
                }
                let _ = res_tx.send(v);
            }
            drop(res_tx);
            let produced = producer.join().unwrap();
            assert_eq!(
                (produced, &seen[..]),
                (n, &(0..n).map(|k| k * 3).collect::<Vec<_>>()[..]),
                "close_first {close_first}: after {:?}",
                t.elapsed()
            );
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "close_first {close_first}: stalled until the producer gave up ({:?})",
                t.elapsed()
            );
        }
    });
}

/// `PanicPolicy::Terminate` and a panic of `f` on a rescued item: the
/// consumer terminates the pool from its own thread during the rescue;
/// the panic surfaces, the stream and the pool end, nothing hangs, and
/// every input item is dropped once.
#[test]
fn terminate_policy_panic_on_a_rescued_item_ends_cleanly() {
    common::quiet_panics_containing("rescue-boom");
    guard(20, || {
        let pool = ThreadPool::builder()
            .workers(2)
            .on_panic(parpool::PanicPolicy::Terminate)
            .build()
            .unwrap();
        let drops = counters(4);
        let (tx, rx) = stalling_input((0..3).map(|i| Probe::new(i, &drops)));
        let f = |p: Probe| {
            assert!(p.id != 1, "rescue-boom");
            p.id
        };
        let mut it = pool.imap(f, rx).chunksize(8);
        assert_eq!(it.next_timeout(Duration::from_secs(5)), Ok(Some(0)));
        match it.next_timeout(Duration::from_secs(5)) {
            Err(TaskError::Panicked(m)) => assert!(m.contains("rescue-boom"), "{m}"),
            other => panic!("{other:?}"),
        }
        drop(it);
        // Frees the reader still blocked in `recv`.
        let _ = tx.send(Probe::new(3, &drops));
        drop(tx);
        pool.join();
        let counts: Vec<usize> = drops.iter().map(|d| d.load(Ordering::SeqCst)).collect();
        assert_eq!(counts, [1, 1, 1, 1]);
    });
}

/// `terminate` while the reading credit is blocked in the input's `next()`
/// (with nothing read, or with its one item already rescued and handed
/// out): `terminate`'s docs promise that imap iterators report
/// `Cancelled` soon. The consumer waits for that credit instead, as long
/// as the input blocks (here until the input's sender goes, 3 s), and then
/// even ends the stream as complete (`Ok(None)`) after the terminate.
///
/// Was a bug (fixed; older than the rescue; a rescue ends the stream as cancelled only
/// if it happens after the terminate and finds items to map):
/// `Consumer::fill` (src/imap/consumer.rs) waits while `credits_out > 0`
/// and never looks at the pool's termination. Fix: in `wait_or_rescue`,
/// on each probe, end the stream as cancelled if the registry is
/// terminated (and not detached), leaving the blocked credit to report
/// into the dropped exchange.
#[test]
fn terminate_during_an_empty_stalled_read_cancels_the_stream_soon() {
    guard(20, || {
        for published in [1usize, 0] {
            let pool = Arc::new(ThreadPool::with_workers(2));
            let (tx, rx) = stalling_input(0..published as u32);
            let mut it = pool.imap(|x: u32| x, rx).chunksize(4);
            let releaser = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                drop(tx);
            });
            let terminator = {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    pool.terminate();
                })
            };
            let t = Instant::now();
            let mut got = Vec::new();
            let end = loop {
                match it.next_timeout(Duration::from_secs(10)) {
                    Ok(Some(v)) => got.push(v),
                    other => break other,
                }
            };
            let took = t.elapsed();
            terminator.join().unwrap();
            drop(it);
            releaser.join().unwrap();
            assert_eq!(end, Err(TaskError::Cancelled), "published {published}");
            assert!(
                took < Duration::from_secs(1),
                "published {published}: cancelled only after {took:?}"
            );
        }
    });
}

/// Waits (up to 5 s) until the pool shows no queued or running items, and
/// returns its stats.
fn settled(pool: &ThreadPool) -> parpool::Stats {
    let t = Instant::now();
    loop {
        let s = pool.stats();
        if (s.queued == 0 && s.running == 0) || t.elapsed() > Duration::from_secs(5) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An input that pauses 0–15 ms between items (about one gap in two
/// longer than the probe interval): rescues happen, of items read by a
/// progressing read too. Ordered streams yield exactly input order,
/// unordered ones every item once, every item and result is dropped once,
/// and the pool's stats end at 0 queued, 0 running, n completed.
#[test]
fn a_jittery_input_keeps_order_drops_and_stats() {
    guard(20, || {
        let n = common::pick(24, 6);
        for (round, ordered) in [(0u32, true), (1, false), (2, true)] {
            let pool = ThreadPool::with_workers(2);
            let drops = counters(n);
            let input = {
                let drops = Arc::clone(&drops);
                (0..n).map(move |i| {
                    let gap = [0u64, 12, 3, 15, 0, 11][(i + round as usize) % 6];
                    std::thread::sleep(Duration::from_millis(gap));
                    Probe::new(i, &drops)
                })
            };
            let f = |p: Probe| p;
            let ids: Vec<usize> = if round == 2 {
                // In a scope, where no input is read in bulk.
                pool.scope(|s| s.imap(f, input).map(|p| p.id).collect())
            } else if ordered {
                pool.imap(f, input).map(|p| p.id).collect()
            } else {
                let mut v: Vec<usize> = pool.imap_unordered(f, input).map(|p| p.id).collect();
                v.sort_unstable();
                v
            };
            assert_eq!(ids, (0..n).collect::<Vec<_>>(), "round {round}");
            let counts: Vec<usize> = drops.iter().map(|d| d.load(Ordering::SeqCst)).collect();
            assert!(counts.iter().all(|&c| c == 1), "round {round}: {counts:?}");
            let s = settled(&pool);
            assert_eq!(
                (s.queued, s.running, s.completed, s.panicked),
                (0, 0, n, 0),
                "round {round}"
            );
        }
    });
}

/// An input that stalls, resumes with a burst, stalls again (each stall
/// long enough for a rescue), then panics in `next`: the ordered stream
/// yields every item before the panic in order, then re-raises it; every
/// item is dropped once; the stats count every item read.
#[test]
fn stall_burst_stall_then_input_panic_after_rescues() {
    common::quiet_panics_containing("input-boom");
    guard(20, || {
        let bursts = [3usize, 5, 2];
        let n: usize = bursts.iter().sum();
        for ordered in [true, false] {
            let pool = ThreadPool::with_workers(2);
            let drops = counters(n);
            let (tx, rx) = mpsc::channel::<Option<Probe>>();
            let feeder = {
                let drops = Arc::clone(&drops);
                std::thread::spawn(move || {
                    let mut id = 0;
                    for b in bursts {
                        for _ in 0..b {
                            tx.send(Some(Probe::new(id, &drops))).unwrap();
                            id += 1;
                        }
                        std::thread::sleep(Duration::from_millis(40));
                    }
                    let _ = tx.send(None); // the input panics here
                })
            };
            let input = rx.into_iter().map(|p| p.expect("input-boom"));
            let mut ids = Vec::new();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if ordered {
                    let it = pool.imap(|p: Probe| p.id, input).chunksize(16);
                    it.for_each(|id| ids.push(id));
                } else {
                    let it = pool.imap_unordered(|p: Probe| p.id, input).chunksize(16);
                    it.for_each(|id| ids.push(id));
                }
            }));
            feeder.join().unwrap();
            let msg = common::panic_message(&*r.expect_err("the input's panic"));
            assert!(msg.contains("input-boom"), "{msg}");
            if !ordered {
                ids.sort_unstable();
            }
            assert_eq!(ids, (0..n).collect::<Vec<_>>(), "ordered {ordered}");
            let counts: Vec<usize> = drops.iter().map(|d| d.load(Ordering::SeqCst)).collect();
            assert!(counts.iter().all(|&c| c == 1), "{counts:?}");
            let s = settled(&pool);
            assert_eq!((s.queued, s.running, s.completed), (0, 0, n));
        }
    });
}

/// A ping-pong whose consumer is itself a task of a one-worker pool (the
/// consumer is the only worker; the pool lends a spare thread while it
/// waits): rescues on the worker keep the stream going, in order.
#[test]
fn a_ping_pong_inside_a_task_of_a_one_worker_pool_streams() {
    guard(20, || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        let inner = Arc::clone(&pool);
        let seen = pool.apply(move || {
            let n = 6u64;
            let (in_rx, res_tx, producer) = ping_pong_input(n, Duration::from_secs(5));
            let mut seen = Vec::new();
            for v in inner.imap(|x: u64| x * 3, in_rx) {
                seen.push(v);
                let _ = res_tx.send(v);
            }
            assert_eq!(producer.join().unwrap(), n);
            seen
        });
        assert_eq!(seen, [0, 3, 6, 9, 12, 15]);
    });
}

/// A stream dropped while its reading credit is blocked in the input's
/// `next()`: once the input moves again, that read returns the item it
/// was waiting for and stops (its limit is 0 after the rescue); nothing
/// else should be read from the input, whose items the caller may still
/// want (a shared queue). Credits that were already waiting for the right
/// to read each read a chunk after the drop instead, and drop it unmapped.
///
/// Was a bug (fixed): `PullJob::run` (src/imap/credit.rs) checks `should_stop` before
/// `source.reader.acquire()` but not after it; `release_input` no longer
/// takes the input while a credit reads (it used to wait for the token,
/// then take the input before most waiting credits got it), so every
/// waiting credit now reads after the drop. Fix: check `should_stop`
/// again once the token is held (report "returned").
#[test]
fn credits_waiting_to_read_do_not_read_after_the_stream_is_dropped() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        let (tx, rx) = mpsc::channel::<u32>();
        tx.send(0).unwrap();
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let input = {
            let pulled = Arc::clone(&pulled);
            std::iter::from_fn(move || {
                let x = rx.recv().ok()?;
                pulled.fetch_add(1, Ordering::SeqCst);
                Some(x)
            })
        };
        let mut it = pool.imap(|x: u32| x, input).chunksize(4);
        // Item 0 comes by a rescue; the read stays blocked for item 1, and
        // the other credits wait for it.
        assert_eq!(it.next_timeout(Duration::from_secs(5)), Ok(Some(0)));
        std::thread::sleep(Duration::from_millis(50));
        drop(it);
        for k in 1..=100 {
            // Once the blocked read returned item 1 and stopped, nothing
            // holds the input any more: later sends may find it gone.
            let _ = tx.send(k);
        }
        drop(tx);
        pool.close();
        pool.join();
        // Item 0, and item 1 that the blocked `next()` returned.
        assert_eq!(
            pulled.load(Ordering::SeqCst),
            2,
            "items read after the drop"
        );
    });
}

/// Zero-sized items go through the stash (dangling buffer pointer, no
/// bytes moved) and come out once each, rescued or not.
#[test]
fn zero_sized_items_are_rescued_once_each() {
    guard(20, || {
        let pool = ThreadPool::with_workers(2);
        let (tx, rx) = stalling_input([(), (), ()]);
        let mut it = pool.imap(|(): ()| 1u8, rx).chunksize(8);
        let mut got = 0;
        for _ in 0..3 {
            got += it.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
        }
        tx.send(()).unwrap();
        drop(tx);
        got += it.by_ref().sum::<u8>();
        assert_eq!(got, 4);
    });
}

/// One 30 ms pause in a long input of cheap items (a network
/// stream's hiccup): the blocked consumer rescues the paused read, and
/// from then on every credit reads one item, for the rest of the stream,
/// however fast the input is again. A 2 M-item stream took 1.5 s instead
/// of 4 ms in release builds (about 350×); here, 200 000 items in a debug
/// build, far more than the pause itself.
///
/// Was a bug (fixed, throughput): `Stash::rescue` sets `one_by_one` for good
/// (src/imap/stash.rs, `self.one_by_one.store(true, ..)`; `Reader::open`
/// then caps every credit at 1) and `Consumer::wait_or_rescue` sets
/// `self.one_by_one = true` (src/imap/consumer.rs), which
/// `next_chunk_size` never lets go. Fix: after a rescue, restart the
/// adaptive sizing at one item and let it grow again while reads do not
/// stall (a feedback input stalls again at once and drops back to one),
/// instead of pinning the chunk to 1.
#[test]
fn one_pause_does_not_pin_a_long_stream_to_one_item_per_credit() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let run = |pause: bool| {
            let input = (0..200_000u64).inspect(move |&i| {
                if pause && i == 50_000 {
                    std::thread::sleep(Duration::from_millis(30));
                }
            });
            let t = Instant::now();
            let it = pool.imap(|x: u64| x.wrapping_mul(3), input);
            let mut sum = 0u64;
            // Blocking `next()`: the consumer waits through the pause.
            for v in it {
                sum = sum.wrapping_add(v);
            }
            assert_eq!(sum, (0..200_000u64).map(|x| x * 3).sum::<u64>());
            t.elapsed()
        };
        let base = run(false).max(run(false));
        let paused = (0..2).map(|_| run(true)).max().unwrap();
        assert!(
            paused < base * 4 + Duration::from_millis(100),
            "no pause: {base:?}; one 30 ms pause: {paused:?}"
        );
    });
}
