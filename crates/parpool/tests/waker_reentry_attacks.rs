//! A hostile round on executor wakers that re-enter the pool from their
//! `clone` or `drop`: the pool stores a clone of the waker it is polled
//! with and drops the one it replaces, and both are the executor's code.
//! A waker may own anything (the last reference to an executor task, its
//! futures, a pool), so its clone or drop may call back into the pool:
//! `terminate` (whose drain discards the very task or credit being polled),
//! a poll of another handle, a submission. None of that may deadlock.

#[path = "common/child.rs"]
mod child;
mod common;

use common::occupy_until_terminate;
use futures::StreamExt;
use parpool::{TaskError, ThreadPool};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

/// What a [`hook_waker`] does: `on_clone` runs at its next clone, `on_drop`
/// at its next drop (each once), on the thread that clones or drops it.
/// Each test has its own, in a `static` (Miri's leak checker then does not
/// count a hook left unused).
struct Hooks {
    on_clone: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    on_drop: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    clones: AtomicUsize,
    drops: AtomicUsize,
    wakes: AtomicUsize,
}

impl Hooks {
    const fn new() -> Hooks {
        Hooks {
            on_clone: Mutex::new(None),
            on_drop: Mutex::new(None),
            clones: AtomicUsize::new(0),
            drops: AtomicUsize::new(0),
            wakes: AtomicUsize::new(0),
        }
    }

    fn arm_clone(&self, f: impl FnOnce() + Send + 'static) {
        *self.on_clone.lock().unwrap() = Some(Box::new(f));
    }

    fn arm_drop(&self, f: impl FnOnce() + Send + 'static) {
        *self.on_drop.lock().unwrap() = Some(Box::new(f));
    }
}

fn hooks(data: *const ()) -> &'static Hooks {
    // SAFETY: every data pointer is a `&'static Hooks` (a test's static).
    unsafe { &*(data as *const Hooks) }
}

fn hook_clone(data: *const ()) -> RawWaker {
    let h = hooks(data);
    h.clones.fetch_add(1, Ordering::SeqCst);
    let f = h.on_clone.lock().unwrap().take();
    if let Some(f) = f {
        f();
    }
    RawWaker::new(data, &HOOK_VTABLE)
}

fn hook_wake(data: *const ()) {
    hooks(data).wakes.fetch_add(1, Ordering::SeqCst);
    hook_drop(data);
}

fn hook_wake_by_ref(data: *const ()) {
    hooks(data).wakes.fetch_add(1, Ordering::SeqCst);
}

fn hook_drop(data: *const ()) {
    let h = hooks(data);
    h.drops.fetch_add(1, Ordering::SeqCst);
    let f = h.on_drop.lock().unwrap().take();
    if let Some(f) = f {
        f();
    }
}

static HOOK_VTABLE: RawWakerVTable =
    RawWakerVTable::new(hook_clone, hook_wake, hook_wake_by_ref, hook_drop);

fn hook_waker(h: &'static Hooks) -> Waker {
    // SAFETY: the vtable's functions only read the `'static` `Hooks`.
    unsafe { Waker::from_raw(RawWaker::new(h as *const Hooks as *const (), &HOOK_VTABLE)) }
}

/// A one-worker pool whose worker is busy until `terminate`, and a task
/// queued behind it.
fn queued_task() -> (
    Arc<ThreadPool>,
    parpool::AsyncResult<()>,
    parpool::AsyncResult<u32>,
) {
    let pool = Arc::new(ThreadPool::with_workers(1));
    let blocker = occupy_until_terminate(&pool);
    let h = pool.apply_async(|| 42u32);
    (pool, blocker, h)
}

/// A waker whose clone terminates the pool: the poll that stores the clone
/// of a task still queued has the terminate's drain discard that very task
/// (its completion locks the task's slot). It must not deadlock: the handle
/// reports `Cancelled`.
#[test]
fn a_waker_cloned_by_a_task_poll_may_terminate_the_pool() {
    child::run(
        "a_waker_cloned_by_a_task_poll_may_terminate_the_pool",
        20,
        || {
            let (pool, blocker, mut h) = queued_task();
            static HOOKS: Hooks = Hooks::new();
            let hk = &HOOKS;
            let p = Arc::clone(&pool);
            hk.arm_clone(move || p.terminate());
            let waker = hook_waker(hk);
            let mut cx = Context::from_waker(&waker);
            let first = Pin::new(&mut h).poll(&mut cx);
            let out = match first {
                Poll::Ready(r) => r,
                Poll::Pending => futures::executor::block_on(h),
            };
            assert_eq!(out, Err(TaskError::Cancelled));
            assert_eq!(blocker.get(), Ok(()));
            pool.join();
            drop(waker);
        },
    );
}

/// A waker whose drop terminates the pool: the second poll, with another
/// waker, drops the clone the first poll stored; the drain discards the
/// task being polled.
#[test]
fn a_replaced_waker_dropped_by_a_task_poll_may_terminate_the_pool() {
    child::run(
        "a_replaced_waker_dropped_by_a_task_poll_may_terminate_the_pool",
        20,
        || {
            let (pool, blocker, mut h) = queued_task();
            static HOOKS: Hooks = Hooks::new();
            let first = &HOOKS;
            let waker_a = hook_waker(first);
            assert!(Pin::new(&mut h)
                .poll(&mut Context::from_waker(&waker_a))
                .is_pending());
            // Armed now: the next drop is the stored clone's, replaced below.
            let p = Arc::clone(&pool);
            first.arm_drop(move || p.terminate());
            let waker_b = futures::task::noop_waker();
            let out = match Pin::new(&mut h).poll(&mut Context::from_waker(&waker_b)) {
                Poll::Ready(r) => r,
                Poll::Pending => futures::executor::block_on(h),
            };
            assert_eq!(out, Err(TaskError::Cancelled));
            assert_eq!(blocker.get(), Ok(()));
            pool.join();
            drop(waker_a);
        },
    );
}

/// The same for an imap stream: its consumer stores the waker under the
/// stream's mailbox lock, and a credit the drain discards reports to that
/// mailbox. The stream ends as cancelled (a panic saying so), never hangs.
#[test]
fn a_waker_cloned_by_a_stream_poll_may_terminate_the_pool() {
    child::run(
        "a_waker_cloned_by_a_stream_poll_may_terminate_the_pool",
        20,
        || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let blocker = occupy_until_terminate(&pool);
            let mut s = pool.imap(|x: u64| x * 2, 0..100u64).into_stream();
            static HOOKS: Hooks = Hooks::new();
            let hk = &HOOKS;
            let p = Arc::clone(&pool);
            hk.arm_clone(move || p.terminate());
            let waker = hook_waker(hk);
            let mut cx = Context::from_waker(&waker);
            let got = child::catch(|| {
                let mut got = Vec::new();
                loop {
                    match s.poll_next_unpin(&mut cx) {
                        Poll::Ready(Some(x)) => got.push(x),
                        Poll::Ready(None) => return got,
                        Poll::Pending => {
                            return futures::executor::block_on(async {
                                while let Some(x) = s.next().await {
                                    got.push(x);
                                }
                                got
                            })
                        }
                    }
                }
            });
            match got {
                Err(msg) => assert!(msg.contains("cancelled"), "{msg}"),
                Ok(got) => panic!("a terminated stream ended cleanly with {} items", got.len()),
            }
            assert_eq!(blocker.get(), Ok(()));
            pool.join();
            drop(waker);
        },
    );
}

/// A stream's replaced waker dropped under its mailbox lock terminates the
/// pool.
#[test]
fn a_replaced_waker_dropped_by_a_stream_poll_may_terminate_the_pool() {
    child::run(
        "a_replaced_waker_dropped_by_a_stream_poll_may_terminate_the_pool",
        20,
        || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let blocker = occupy_until_terminate(&pool);
            let mut s = pool.imap(|x: u64| x * 2, 0..100u64).into_stream();
            static HOOKS: Hooks = Hooks::new();
            let first = &HOOKS;
            let waker_a = hook_waker(first);
            assert!(s
                .poll_next_unpin(&mut Context::from_waker(&waker_a))
                .is_pending());
            let p = Arc::clone(&pool);
            first.arm_drop(move || p.terminate());
            let waker_b = futures::task::noop_waker();
            let got =
                child::catch(
                    || match s.poll_next_unpin(&mut Context::from_waker(&waker_b)) {
                        Poll::Ready(x) => x,
                        Poll::Pending => futures::executor::block_on(s.next()),
                    },
                );
            match got {
                Err(msg) => assert!(msg.contains("cancelled"), "{msg}"),
                Ok(x) => panic!("a terminated stream yielded {x:?}"),
            }
            assert_eq!(blocker.get(), Ok(()));
            pool.join();
            drop(waker_a);
        },
    );
}

/// An executor that polls inline, on the waking thread: the waker's `wake`
/// polls the stream (or the handle) right there, on the worker that
/// delivered, and the main thread polls too. Every result arrives exactly
/// once, in order, and nothing hangs.
#[test]
fn a_waker_polling_inline_on_the_waking_worker_loses_nothing() {
    child::run(
        "a_waker_polling_inline_on_the_waking_worker_loses_nothing",
        60,
        || {
            use std::task::Wake;
            type Stream = parpool::ImapStream<'static, u64>;
            struct Inline {
                stream: Mutex<Option<Stream>>,
                got: Mutex<Vec<u64>>,
                done: std::sync::atomic::AtomicBool,
            }
            impl Inline {
                fn drive(self: &Arc<Self>) {
                    let Ok(mut s) = self.stream.try_lock() else {
                        return; // another thread is polling: it will see the news
                    };
                    let Some(stream) = s.as_mut() else { return };
                    let waker = Waker::from(Arc::clone(self));
                    let mut cx = Context::from_waker(&waker);
                    loop {
                        match stream.poll_next_unpin(&mut cx) {
                            Poll::Ready(Some(x)) => self.got.lock().unwrap().push(x),
                            Poll::Ready(None) => {
                                *s = None;
                                self.done.store(true, Ordering::SeqCst);
                                return;
                            }
                            Poll::Pending => return,
                        }
                    }
                }
            }
            impl Wake for Inline {
                fn wake(self: Arc<Self>) {
                    self.drive();
                }
            }
            for round in 0..common::pick(50, 2) {
                let pool = ThreadPool::with_workers(1 + round % 2);
                let n = 2000u64;
                let stream = pool
                    .imap(
                        |x: u64| {
                            if x % 100 == 0 {
                                std::thread::sleep(std::time::Duration::from_micros(100));
                            }
                            x
                        },
                        0..n,
                    )
                    .into_stream();
                let ex = Arc::new(Inline {
                    stream: Mutex::new(Some(stream)),
                    got: Mutex::new(Vec::new()),
                    done: std::sync::atomic::AtomicBool::new(false),
                });
                while !ex.done.load(Ordering::SeqCst) {
                    ex.drive();
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                assert_eq!(*ex.got.lock().unwrap(), (0..n).collect::<Vec<_>>());
                drop(pool);
            }
        },
    );
}
