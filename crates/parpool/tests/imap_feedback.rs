//! imap over inputs that wait for the stream's own results: a producer
//! that sends item k+1 once it saw result k, a work queue the consumer
//! refills from results (a crawler), an input that stalls with items read.
//!
//! A credit reads its whole chunk before it maps it; such an input used to
//! hang as soon as automatic chunks grew past one item, since the items its
//! results depend on sat in the credit blocked in `next()`. The consumer now
//! rescues the items of a stalled read (`src/imap/stash.rs`): these tests
//! check that every such stream finishes, in order where ordered, with
//! every item mapped and dropped exactly once, and that panics and early
//! drops around a rescue behave as anywhere else.

mod common;

use common::kinds::{pool_stream, with_stream, Kind, KINDS};
use common::{counters, guard, panic_message, pick, quiet_panics_containing, Probe};
use parpool::{TaskError, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An input of `0..n` whose item k+1 is sent only once a result came back
/// for item k: the input, where results go back, and the producer, which
/// returns the results it got (it stops at the first that does not come
/// within 10 s, or once nobody can send any).
fn feedback_input(
    n: u64,
) -> (
    mpsc::Receiver<u64>,
    mpsc::Sender<u64>,
    std::thread::JoinHandle<Vec<u64>>,
) {
    let (in_tx, in_rx) = mpsc::channel::<u64>();
    let (res_tx, res_rx) = mpsc::channel::<u64>();
    let producer = std::thread::spawn(move || {
        let mut got = Vec::new();
        for k in 0..n {
            if in_tx.send(k).is_err() {
                break;
            }
            match res_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(r) => got.push(r),
                Err(_) => break,
            }
        }
        got
    });
    (in_rx, res_tx, producer)
}

/// A ping-pong over `n` items mapped with `x * 3`; returns the results in
/// the order the stream yielded them.
fn ping_pong(pool: &ThreadPool, kind: Kind, n: u64) -> Vec<u64> {
    let (in_rx, res_tx, producer) = feedback_input(n);
    let mut seen = Vec::new();
    with_stream(
        pool,
        kind,
        |x: u64| x * 3,
        in_rx,
        |s| {
            while let Some(v) = s.next_item() {
                seen.push(v);
                let _ = res_tx.send(v);
            }
        },
    );
    assert_eq!(
        producer.join().unwrap(),
        seen,
        "{kind:?}: the producer's view"
    );
    seen
}

#[test]
fn a_ping_pong_input_streams_with_automatic_chunks_in_every_kind() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(300, 6) as u64;
        for kind in KINDS {
            let before = pool.stats().completed;
            let seen = ping_pong(&pool, kind, n);
            let want: Vec<u64> = (0..n).map(|k| k * 3).collect();
            assert_eq!(seen, want, "{kind:?}");
            // Rescued items count as completed work like any other.
            assert_eq!(pool.stats().completed - before, n as usize, "{kind:?}");
        }
    });
}

/// An explicit chunksize above 1 held items the same way; the first credit
/// stalls at once, so this is the rescue's test under Miri (whose slow
/// items keep automatic chunks at one item).
#[test]
fn a_ping_pong_input_streams_with_a_set_chunksize() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(100, 5) as u64;
        for ordered in [true, false] {
            let (in_rx, res_tx, producer) = feedback_input(n);
            let send = |&v: &u64| {
                let _ = res_tx.send(v);
            };
            let got: Vec<u64> = pool_stream(&pool, ordered, |x: u64| x, in_rx, Some(3), None)
                .inspect(send)
                .collect();
            assert_eq!(producer.join().unwrap(), got, "ordered {ordered}");
            assert_eq!(got, (0..n).collect::<Vec<_>>(), "ordered {ordered}");
        }
    });
}

#[test]
fn a_ping_pong_input_streams_on_a_one_worker_pool() {
    if cfg!(miri) {
        return;
    }
    guard(60, || {
        let one = ThreadPool::with_workers(1);
        let seen = ping_pong(&one, Kind::Imap, 100);
        assert_eq!(seen, (0..100).map(|k| k * 3).collect::<Vec<_>>());
    });
}

/// A crawler: a work queue that the consumer refills from results. Node k
/// has children 2k+1 and 2k+2 below `n`; the input is the queue's
/// receiving end, which ends once the consumer has seen every node it sent
/// and drops the sender. Every node is visited exactly once.
#[test]
fn a_crawler_whose_queue_the_consumer_refills_visits_every_node_once() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(2000, 15) as u64;
        for kind in KINDS {
            let (tx, rx) = mpsc::channel::<u64>();
            tx.send(0).unwrap();
            let mut tx = Some(tx);
            let mut outstanding = 1usize;
            let mut visits = vec![0u32; n as usize];
            with_stream(
                &pool,
                kind,
                |k: u64| (k, [2 * k + 1, 2 * k + 2]),
                rx,
                |s| {
                    while let Some((k, children)) = s.next_item() {
                        visits[k as usize] += 1;
                        outstanding -= 1;
                        for c in children.into_iter().filter(|&c| c < n) {
                            tx.as_ref().unwrap().send(c).unwrap();
                            outstanding += 1;
                        }
                        if outstanding == 0 {
                            tx = None;
                        }
                    }
                },
            );
            assert!(visits.iter().all(|&v| v == 1), "{kind:?}: {visits:?}");
        }
    });
}

/// An input that yields a few items, then blocks (with no feedback at
/// all): the items read before the stall are handed out anyway (before,
/// they waited for the chunk to fill), and `next_timeout` then times out
/// on time. When the input ends, the stream ends.
#[test]
fn items_read_before_an_input_stalls_are_handed_out_and_timeouts_hold() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for kind in KINDS {
            let (tx, rx) = mpsc::channel::<u64>();
            // Enough items for credits beyond the first, one-item one.
            let burst = 40u64;
            for k in 0..burst {
                tx.send(k).unwrap();
            }
            let mut tx = Some(tx);
            with_stream(
                &pool,
                kind,
                |x: u64| x,
                rx,
                |s| {
                    let mut got = Vec::new();
                    while got.len() < burst as usize {
                        match s.next_within(Duration::from_secs(10)) {
                            Ok(Some(v)) => got.push(v),
                            other => panic!("{kind:?}: after {} items: {other:?}", got.len()),
                        }
                    }
                    got.sort_unstable();
                    assert_eq!(got, (0..burst).collect::<Vec<_>>(), "{kind:?}");
                    let t = Instant::now();
                    assert_eq!(
                        s.next_within(Duration::from_millis(50)),
                        Err(TaskError::Timeout)
                    );
                    assert!(
                        t.elapsed() < Duration::from_secs(5),
                        "{kind:?}: late timeout"
                    );
                    tx = None;
                    assert_eq!(s.next_within(Duration::from_secs(10)), Ok(None), "{kind:?}");
                },
            );
            drop(tx);
        }
    });
}

/// The mapped function panics on an item of a feedback input: the stream
/// yields every earlier result, then re-raises that panic at once, as for
/// any other item. (Ending the stream, the consumer used to wait for the
/// credit blocked in the input, to drop the input itself: that credit
/// waited for the very result that panicked, so the panic surfaced only
/// when the producer gave up, 10 s later.)
#[test]
fn a_panic_on_a_rescued_item_surfaces_in_order() {
    quiet_panics_containing("feedback-boom");
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let n = pick(60, 6) as u64;
        let k = n - 2;
        for kind in KINDS {
            let (in_rx, res_tx, producer) = feedback_input(n);
            let f = move |x: u64| {
                assert!(x != k, "feedback-boom at {x}");
                x
            };
            let mut seen = Vec::new();
            let r = catch_unwind(AssertUnwindSafe(|| {
                with_stream(&pool, kind, f, in_rx, |s| {
                    // Owned here: dropped as the stream unwinds, so the
                    // producer stops waiting before a scope waits for the
                    // credit blocked in the input.
                    let res_tx = res_tx;
                    while let Some(v) = s.next_item() {
                        seen.push(v);
                        let _ = res_tx.send(v);
                    }
                })
            }));
            producer.join().unwrap();
            let msg = panic_message(&*r.expect_err("the item's panic"));
            assert!(msg.contains("feedback-boom"), "{kind:?}: {msg}");
            assert_eq!(seen, (0..k).collect::<Vec<_>>(), "{kind:?}");
        }
    });
}

/// A stream dropped while a read is stalled holding items: once the input
/// moves again, the reader stops, and every item is dropped exactly once.
/// (A scope waits for its credits, so the input is moved from another
/// thread: a scope ends only once the stalled read returns.)
#[test]
fn dropping_a_stream_during_a_stalled_read_drops_every_item_once() {
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        let burst = 40usize;
        for kind in KINDS {
            let drops = counters(burst + 1);
            let (tx, rx) = mpsc::channel::<Probe>();
            for id in 0..burst {
                tx.send(Probe::new(id, &drops)).unwrap();
            }
            // Frees the reader after the stream was dropped: one more item,
            // then the end of the input. (If no read was left blocked, the
            // input is gone already: the item comes back in the error and
            // is dropped here.)
            let feeder = {
                let drops = Arc::clone(&drops);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(150));
                    let _ = tx.send(Probe::new(burst, &drops));
                })
            };
            with_stream(
                &pool,
                kind,
                |p: Probe| p,
                rx,
                |s| {
                    // One item out; the credits read the rest meanwhile, and
                    // the last one blocks in `recv`, holding what it read,
                    // when the stream is dropped.
                    let first = s.next_item().expect("a first item");
                    drop(first);
                    std::thread::sleep(Duration::from_millis(50));
                },
            );
            feeder.join().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while drops.iter().any(|d| d.load(Ordering::SeqCst) == 0) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let counts: Vec<usize> = drops.iter().map(|d| d.load(Ordering::SeqCst)).collect();
            assert!(counts.iter().all(|&c| c == 1), "{kind:?}: {counts:?}");
        }
        assert_eq!(pool.map(|x| x + 1, 0..3u8), [1, 2, 3]);
    });
}

/// Many rounds of a short ping-pong on a pool that also runs other work:
/// rescues racing deliveries and other credits never lose or repeat an
/// item.
#[test]
fn short_ping_pongs_beside_other_work_never_lose_or_repeat_an_item() {
    if cfg!(miri) {
        return;
    }
    guard(120, || {
        let pool = Arc::new(ThreadPool::with_workers(2));
        let busy = Arc::new(AtomicUsize::new(0));
        let noise = {
            let (pool, busy) = (Arc::clone(&pool), Arc::clone(&busy));
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let s: u64 = pool.map(|x: u64| x % 7, 0..2000u64).iter().sum();
                    busy.fetch_add(s as usize, Ordering::Relaxed);
                }
            })
        };
        for round in 0..40u64 {
            let kind = KINDS[(round % 4) as usize];
            let n = 5 + round % 13;
            let seen = ping_pong(&pool, kind, n);
            assert_eq!(
                seen,
                (0..n).map(|k| k * 3).collect::<Vec<_>>(),
                "{kind:?} round {round}"
            );
        }
        noise.join().unwrap();
        assert!(busy.load(Ordering::Relaxed) > 0);
    });
}

/// A consumer that polls with short timeouts (shorter than the stall
/// probe) over a ping-pong input: its timeouts probe the read too, so the
/// stream still moves, and every result comes in order.
#[test]
fn short_next_timeouts_in_a_loop_still_rescue_a_stalled_read() {
    if cfg!(miri) {
        return;
    }
    guard(60, || {
        let pool = ThreadPool::with_workers(2);
        for kind in KINDS {
            let n = 50u64;
            let (in_rx, res_tx, producer) = feedback_input(n);
            let mut seen = Vec::new();
            with_stream(
                &pool,
                kind,
                |x: u64| x,
                in_rx,
                |s| loop {
                    match s.next_within(Duration::from_millis(1)) {
                        Ok(Some(v)) => {
                            seen.push(v);
                            let _ = res_tx.send(v);
                        }
                        Ok(None) => break,
                        Err(TaskError::Timeout) => {}
                        Err(e) => panic!("{kind:?}: {e:?}"),
                    }
                },
            );
            assert_eq!(producer.join().unwrap(), seen, "{kind:?}");
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{kind:?}");
        }
    });
}
