//! An executor built on the pool itself, in the style of `async-task` or
//! `futures::executor::ThreadPool`: a task's waker schedules its next poll
//! as a job of the pool, so every poll runs in a job of its own. The
//! hostile executor-wait tests drive futures through it.

use parpool::ThreadPool;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::thread;
use std::time::Duration;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a [`PoolTask`]'s wake reaches the pool.
#[derive(Clone)]
pub enum Via {
    /// The waker submits the next poll as a pool job at once.
    Direct,
    /// The waker submits the next poll after this delay (an executor with
    /// a timer tick, or one whose dispatcher is slow under load).
    Delayed(Duration),
}

/// A future polled by jobs of a pool, one job per poll (see the module).
pub struct PoolTask {
    pool: Arc<ThreadPool>,
    via: Via,
    future: Mutex<Option<BoxFuture>>,
    polls: AtomicUsize,
}

impl PoolTask {
    /// Submits the first poll of `future` to `pool`; later polls go
    /// through `via`. The poll jobs' handles are not kept.
    pub fn spawn(
        pool: &Arc<ThreadPool>,
        via: Via,
        future: impl Future<Output = ()> + Send + 'static,
    ) -> Arc<Self> {
        let task = Arc::new(PoolTask {
            pool: Arc::clone(pool),
            via,
            future: Mutex::new(Some(Box::pin(future))),
            polls: AtomicUsize::new(0),
        });
        Arc::clone(&task).submit();
        task
    }

    fn submit(self: Arc<Self>) {
        let pool = Arc::clone(&self.pool);
        drop(pool.apply_async(move || self.run()));
    }

    fn run(self: Arc<Self>) {
        let mut slot = self.future.lock().unwrap();
        let Some(mut fut) = slot.take() else {
            return; // done already
        };
        self.polls.fetch_add(1, Ordering::SeqCst);
        let waker = Waker::from(Arc::clone(&self));
        let mut cx = Context::from_waker(&waker);
        if fut.as_mut().poll(&mut cx).is_pending() {
            *slot = Some(fut);
        }
    }

    /// How many times the future was polled so far.
    pub fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }
}

impl Wake for PoolTask {
    fn wake(self: Arc<Self>) {
        match self.via.clone() {
            Via::Direct => self.submit(),
            Via::Delayed(d) => {
                thread::spawn(move || {
                    thread::sleep(d);
                    self.submit();
                });
            }
        }
    }
}
