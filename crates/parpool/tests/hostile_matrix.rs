//! Hostile review matrix (issue 9's broad round, 2026-12-03): close and
//! terminate racing every call, from every kind of thread; a panic in every
//! user hook under each panic policy; nesting on small pools.
//!
//! The round found, and these tests pin the fixes of:
//! - a wait for a task that this very thread is finishing hanging instead of
//!   panicking when it went through `as_completed`, `wait()` or a poll
//!   (`callback_waits_own_task_via_*`), or came from the task itself
//!   (`task_waits_for_its_own_handle`): every wait now checks
//!   (`AsyncResult::settle`);
//! - `terminate` hanging when an error callback its drain ran waited for a
//!   task queued behind it (`terminate_then_signal_with_waiting_error_callback`,
//!   `drain_callback_waits_for_later_task`, `terminate_from_worker_*`): the
//!   drain now marks every queued task abandoned before it cancels any, and a
//!   waiter cancels an abandoned task itself;
//! - a task queued at `terminate` still run, with an `Ok` result, by a waiter
//!   that inlined it (`queued_task_runs_after_terminate_via_inline_help`).
mod common;

use common::{counters, guard_named, panic_message, Gate, Probe};
use parpool::{PanicPolicy, TaskError, ThreadPool, WaitFor};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

type Counts = Arc<Vec<AtomicUsize>>;

const N: usize = 48;

fn quiet() {
    for marker in ["HOSTILE", "cancel", "not running"] {
        common::quiet_panics_containing(marker);
    }
    common::quiet_parpool_diagnostics();
}

fn spin(ns: u64) {
    let t = std::time::Instant::now();
    while (t.elapsed().as_nanos() as u64) < ns {
        std::hint::spin_loop();
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Close,
    Terminate,
}

fn stop(pool: &ThreadPool, s: Stop) {
    match s {
        Stop::Close => pool.close(),
        Stop::Terminate => pool.terminate(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum From {
    Thread,
    Task,
    Callback,
    InputIter,
    Initializer,
}

/// A result that counts its creation and drop per id.
struct Out {
    id: usize,
    dropped: Counts,
}
impl Drop for Out {
    fn drop(&mut self) {
        self.dropped[self.id].fetch_add(1, SeqCst);
    }
}

#[derive(Clone)]
struct Ctx {
    pool: Arc<ThreadPool>,
    ins: Counts,
    inmade: Counts,
    made: Counts,
    dropped: Counts,
    stop: Stop,
    from: From,
    round: u64,
}

impl Ctx {
    fn out(&self, id: usize) -> Out {
        self.made[id].fetch_add(1, SeqCst);
        Out {
            id,
            dropped: Arc::clone(&self.dropped),
        }
    }
    fn probe(&self, i: usize) -> Probe {
        self.inmade[i].fetch_add(1, SeqCst);
        Probe::new(i, &self.ins)
    }
    fn probes(&self) -> Vec<Probe> {
        (0..N)
            .map(|i| {
                self.inmade[i].fetch_add(1, SeqCst);
                Probe::new(i, &self.ins)
            })
            .collect()
    }
    /// Inputs as an iterator; under `From::InputIter` it stops the pool at item N/2.
    fn input_iter(&self) -> impl Iterator<Item = Probe> + Send + 'static {
        let ins = Arc::clone(&self.ins);
        let inmade = Arc::clone(&self.inmade);
        let pool = if self.from == From::InputIter {
            Some(Arc::downgrade(&self.pool))
        } else {
            None
        };
        let s = self.stop;
        (0..N).map(move |i| {
            if i == N / 2 {
                if let Some(p) = pool.as_ref().and_then(|w| w.upgrade()) {
                    stop(&p, s);
                }
            }
            inmade[i].fetch_add(1, SeqCst);
            Probe::new(i, &ins)
        })
    }
}

fn is_clear(msg: &str) -> bool {
    let m = msg.to_lowercase();
    m.contains("cancel") || m.contains("not running") || m.contains("parpool")
}

fn check_ok_or(e: &TaskError, allow_cancel: bool) -> Result<(), String> {
    match e {
        TaskError::NotRunning => Ok(()),
        TaskError::Cancelled if allow_cancel => Ok(()),
        other => Err(format!("unexpected error {other:?}")),
    }
}

const OPS: usize = 21;

/// Runs op `k`. Err = contract violation. A panic escapes to the caller.
fn op(k: usize, c: &Ctx) -> Result<(), String> {
    let pool = &*c.pool;
    let term = c.stop == Stop::Terminate;
    match k {
        0 => {
            let p = c.probe(0);
            let c2 = c.clone();
            let v = pool.apply(move || {
                let _p = p;
                c2.out(0)
            });
            if v.id != 0 {
                return Err("apply wrong".into());
            }
            Ok(())
        }
        1..=4 => {
            let p = c.probe(0);
            let c2 = c.clone();
            let mut h = pool.apply_async(move || {
                let _p = p;
                spin(2000);
                c2.out(0)
            });
            let r = match k {
                1 => h.get(),
                2 => h.get_timeout(Duration::from_secs(10)),
                3 => {
                    h.wait();
                    if !h.ready() {
                        return Err("wait returned but not ready".into());
                    }
                    if h.successful().is_none() {
                        return Err("ready but successful() None".into());
                    }
                    h.get()
                }
                _ => {
                    let cancelled = h.cancel();
                    let r = h.get();
                    if cancelled && r.is_ok() {
                        return Err("cancel() true but got Ok".into());
                    }
                    return match r {
                        Ok(o) if o.id == 0 => Ok(()),
                        Ok(_) => Err("wrong".into()),
                        Err(e) => check_ok_or(&e, true),
                    };
                }
            };
            match r {
                Ok(o) if o.id == 0 => Ok(()),
                Ok(_) => Err("wrong".into()),
                Err(e) => check_ok_or(&e, term),
            }
        }
        5 => {
            let c2 = c.clone();
            let v = pool.map(move |p: Probe| c2.out(p.id), c.probes());
            check_full(&v)
        }
        6 => {
            let c2 = c.clone();
            let h = pool.map_async(move |p: Probe| c2.out(p.id), c.probes());
            match h.get() {
                Ok(v) => check_full(&v),
                Err(e) => check_ok_or(&e, term),
            }
        }
        7 => {
            let c2 = c.clone();
            let ins: Vec<(Probe, usize)> = c.probes().into_iter().map(|p| (p, 1)).collect();
            let v = pool.starmap(move |p: Probe, one: usize| c2.out(p.id * one), ins);
            check_full(&v)
        }
        8 => {
            let c2 = c.clone();
            let v = pool.try_map(move |p: Probe| Ok::<_, ()>(c2.out(p.id)), c.probes());
            match v {
                Ok(v) => check_full(&v),
                Err(()) => Err("try_map Err".into()),
            }
        }
        9 | 12 => {
            let c2 = c.clone();
            let it = pool
                .imap(move |p: Probe| c2.out(p.id), c.input_iter())
                .chunksize(1 + (c.round as usize % 4));
            let v: Vec<Out> = if k == 9 {
                it.collect()
            } else {
                use futures::StreamExt;
                futures::executor::block_on(it.into_stream().collect())
            };
            check_full(&v)
        }
        10 => {
            let c2 = c.clone();
            let it = pool.imap(move |p: Probe| c2.out(p.id), c.input_iter());
            let v: Vec<Out> = it.take(N / 3).collect();
            for (i, o) in v.iter().enumerate() {
                if o.id != i {
                    return Err("imap prefix wrong".into());
                }
            }
            Ok(())
        }
        11 => {
            let c2 = c.clone();
            let mut v: Vec<Out> = pool
                .imap_unordered(move |p: Probe| c2.out(p.id), c.input_iter())
                .collect();
            v.sort_by_key(|o| o.id);
            check_full(&v)
        }
        13 => {
            let ran = AtomicUsize::new(0);
            let (ok, cancelled) = pool.scope(|s| {
                let mut hs = Vec::new();
                for i in 0..N {
                    let p = c.probe(i);
                    let ran = &ran;
                    if i % 2 == 0 {
                        s.spawn(move || {
                            let _p = p;
                            ran.fetch_add(1, SeqCst);
                        });
                    } else {
                        let c2 = c.clone();
                        hs.push(s.apply_async(move || {
                            let _p = p;
                            c2.out(i)
                        }));
                    }
                }
                let mut ok = 0;
                let mut bad = 0;
                for h in hs {
                    match h.get() {
                        Ok(_) => ok += 1,
                        Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => bad += 1,
                        Err(e) => panic!("scope handle: unexpected {e:?}"),
                    }
                }
                (ok, bad)
            });
            if ok + cancelled != N / 2 {
                return Err("scope handles missing".into());
            }
            if !term && cancelled > 0 && c.stop == Stop::Close {
                // close: NotRunning allowed, Cancelled not (checked above as bad)
            }
            if !term && ran.load(SeqCst) != N / 2 {
                return Err(format!(
                    "scope spawn under close ran {} of {}",
                    ran.load(SeqCst),
                    N / 2
                ));
            }
            Ok(())
        }
        14 => {
            let succ = Arc::new(AtomicUsize::new(0));
            let errs = Arc::new(AtomicUsize::new(0));
            let p1 = c.probe(0);
            let p2 = c.probe(1);
            let p3 = c.probe(2);
            let (s2, e2) = (Arc::clone(&succ), Arc::clone(&errs));
            let h = pool
                .apply_async(move || {
                    let _p = p3;
                    spin(1000);
                    5u32
                })
                .on_success(move |v| {
                    let _p = &p1;
                    assert_eq!(*v, 5);
                    s2.fetch_add(1, SeqCst);
                })
                .on_error(move |_| {
                    let _p = &p2;
                    e2.fetch_add(1, SeqCst);
                });
            let r = h.get();
            let (s, e) = (succ.load(SeqCst), errs.load(SeqCst));
            match r {
                Ok(5) if s == 1 && e == 0 => Ok(()),
                Err(_) if s == 0 && e == 1 => Ok(()),
                other => Err(format!("callbacks: result {other:?} succ={s} err={e}")),
            }
        }
        15 => {
            let ran = Arc::new(AtomicUsize::new(0));
            for i in 0..N {
                let p = c.probe(i);
                let ran = Arc::clone(&ran);
                pool.spawn(move || {
                    let _p = p;
                    ran.fetch_add(1, SeqCst);
                });
            }
            Ok(())
        }
        16 => {
            let c2 = c.clone();
            let h = pool
                .chunked(5)
                .map_async(move |p: Probe| c2.out(p.id), parpool::iter(c.input_iter()));
            match h.get() {
                Ok(v) => check_full(&v),
                Err(e) => check_ok_or(&e, term),
            }
        }
        17 | 18 => {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let c2 = c.clone();
                    let p = c.probe(i);
                    pool.apply_async(move || {
                        let _p = p;
                        spin(500);
                        c2.out(i)
                    })
                })
                .collect();
            if k == 17 {
                let mut n = 0;
                for h in parpool::as_completed(hs) {
                    if !h.ready() {
                        return Err("as_completed yielded unready".into());
                    }
                    match h.get() {
                        Ok(_) => {}
                        Err(e) => check_ok_or(&e, term)?,
                    }
                    n += 1;
                }
                if n != 8 {
                    return Err(format!("as_completed yielded {n}"));
                }
            } else {
                let (done, pending) = parpool::wait(hs, None, WaitFor::AllCompleted);
                if done.len() != 8 || !pending.is_empty() {
                    return Err("wait AllCompleted wrong".into());
                }
            }
            Ok(())
        }
        19 => {
            let c2 = c.clone();
            let mut it = pool.imap_unordered(move |p: Probe| c2.out(p.id), c.input_iter());
            let mut got = 0;
            loop {
                match it.next_timeout(Duration::from_secs(10)) {
                    Ok(Some(_)) => got += 1,
                    Ok(None) => break,
                    Err(TaskError::Cancelled) if term => break,
                    Err(e) => return Err(format!("next_timeout {e:?}")),
                }
            }
            if !term && got != N {
                return Err(format!("imap_unordered got {got}"));
            }
            Ok(())
        }
        20 => {
            let c2 = c.clone();
            let v: Vec<Out> = pool
                .imap(move |p: Probe| c2.out(p.id), c.input_iter())
                .batches()
                .flatten()
                .collect();
            check_full(&v)
        }
        _ => unreachable!(),
    }
}

fn check_full(v: &[Out]) -> Result<(), String> {
    if v.len() != N {
        return Err(format!("len {} != {N}", v.len()));
    }
    for (i, o) in v.iter().enumerate() {
        if o.id != i {
            return Err(format!("position {i} has id {}", o.id));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    One,
    Two,
    Init,
}

fn make_pool(kind: Kind, from: From, s: Stop) -> Arc<ThreadPool> {
    match kind {
        Kind::One => Arc::new(ThreadPool::with_workers(1)),
        Kind::Two => Arc::new(ThreadPool::with_workers(2)),
        Kind::Init => {
            let cell: Arc<OnceLock<Weak<ThreadPool>>> = Arc::new(OnceLock::new());
            let calls = AtomicUsize::new(0);
            let cell2 = Arc::clone(&cell);
            let pool = Arc::new(
                ThreadPool::builder()
                    .workers(2)
                    .max_tasks_per_worker(3)
                    .initializer(move || {
                        let n = calls.fetch_add(1, SeqCst);
                        if from == From::Initializer && n >= 3 {
                            if let Some(p) = cell2.get().and_then(|w| w.upgrade()) {
                                stop(&p, s);
                            }
                        }
                    })
                    .build()
                    .unwrap(),
            );
            let _ = cell.set(Arc::downgrade(&pool));
            pool
        }
    }
}

fn arm(c: &Ctx) -> Option<std::thread::JoinHandle<()>> {
    let s = c.stop;
    let delay = (c.round * 7919) % 300_000;
    match c.from {
        From::Thread => {
            let p = Arc::clone(&c.pool);
            Some(std::thread::spawn(move || {
                spin(delay);
                stop(&p, s)
            }))
        }
        From::Task => {
            let p = Arc::downgrade(&c.pool);
            c.pool.spawn(move || {
                spin(delay);
                if let Some(p) = p.upgrade() {
                    stop(&p, s)
                }
            });
            None
        }
        From::Callback => {
            let p = Arc::downgrade(&c.pool);
            drop(
                c.pool
                    .apply_async(move || spin(delay))
                    .on_success(move |_| {
                        if let Some(p) = p.upgrade() {
                            stop(&p, s)
                        }
                    }),
            );
            None
        }
        From::InputIter | From::Initializer => None,
    }
}

fn race(stop_: Stop, from: From, rounds: u64) {
    quiet();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    for k in 0..OPS {
        for kind in [Kind::One, Kind::Two, Kind::Init] {
            if from == From::Initializer && !matches!(kind, Kind::Init) {
                continue;
            }
            for round in 0..rounds {
                let label =
                    format!("op={k} kind={kind:?} stop={stop_:?} from={from:?} round={round}");
                let f2 = Arc::clone(&failures);
                let label2 = label.clone();
                guard_named(20, &label, move || {
                    let c = Ctx {
                        pool: make_pool(kind, from, stop_),
                        ins: counters(N),
                        inmade: counters(N),
                        made: counters(N),
                        dropped: counters(N),
                        stop: stop_,
                        from,
                        round,
                    };
                    let th = arm(&c);
                    let r = catch_unwind(AssertUnwindSafe(|| op(k, &c)));
                    let fail = |m: String| f2.lock().unwrap().push(format!("{label2}: {m}"));
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(m)) => fail(m),
                        Err(p) => {
                            let m = panic_message(p.as_ref());
                            let imap_like = matches!(k, 9 | 10 | 11 | 12 | 20);
                            if !(imap_like
                                && stop_ == Stop::Terminate
                                && m.to_lowercase().contains("cancel"))
                            {
                                fail(format!("panicked: {m:?} (clear={})", is_clear(&m)));
                            }
                        }
                    }
                    if let Some(th) = th {
                        th.join().unwrap();
                    }
                    c.pool.close();
                    c.pool.join();
                    let _ = c.pool.stats();
                    // every input dropped exactly once (ops that use fewer: 0 or 1)
                    for i in 0..N {
                        let d = c.ins[i].load(SeqCst);
                        if d > 1 {
                            fail(format!("input {i} dropped {d} times"));
                        }
                        let (m, dr) = (c.made[i].load(SeqCst), c.dropped[i].load(SeqCst));
                        if m > 1 || m != dr {
                            fail(format!("output {i}: made {m} dropped {dr}"));
                        }
                    }
                    for i in 0..N {
                        let (m, d) = (c.inmade[i].load(SeqCst), c.ins[i].load(SeqCst));
                        if m != d {
                            fail(format!("input {i}: made {m} dropped {d}"));
                        }
                    }
                });
            }
        }
    }
    let f = failures.lock().unwrap();
    assert!(
        f.is_empty(),
        "{} failures:\n{}",
        f.len(),
        f.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

macro_rules! race_tests {
    ($($name:ident: $s:expr, $f:expr;)*) => {$(
        #[test]
        fn $name() {
            race($s, $f, std::env::var("HOSTILE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6));
        }
    )*};
}

race_tests! {
    race_close_from_thread: Stop::Close, From::Thread;
    race_terminate_from_thread: Stop::Terminate, From::Thread;
    race_close_from_task: Stop::Close, From::Task;
    race_terminate_from_task: Stop::Terminate, From::Task;
    race_close_from_callback: Stop::Close, From::Callback;
    race_terminate_from_callback: Stop::Terminate, From::Callback;
    race_close_from_input_iter: Stop::Close, From::InputIter;
    race_terminate_from_input_iter: Stop::Terminate, From::InputIter;
    race_close_from_initializer: Stop::Close, From::Initializer;
    race_terminate_from_initializer: Stop::Terminate, From::Initializer;
}

// ---------------------------------------------------------------------------
// Part 2: a panic in every user hook, under each policy.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hook {
    Task,
    Next,
    InDrop,
    ResDrop,
    SuccessCb,
    ErrorCb,
    InitReplacement,
    Wake,
    WakerDrop,
    SizeHint,
    CaptureDrop,
    Fold,
    IterDrop,
}

const K: usize = 5;

struct Item {
    id: usize,
    bomb: bool,
    dropped: Counts,
}
impl Drop for Item {
    fn drop(&mut self) {
        self.dropped[self.id].fetch_add(1, SeqCst);
        if self.bomb {
            panic!("HOSTILE drop of {}", self.id);
        }
    }
}

struct Cap(bool, Arc<AtomicUsize>);
impl Drop for Cap {
    fn drop(&mut self) {
        self.1.fetch_add(1, SeqCst);
        if self.0 {
            panic!("HOSTILE capture drop");
        }
    }
}

struct PIter {
    i: usize,
    hook: Hook,
    made: Counts,
    dropped: Counts,
    iter_dropped: Arc<AtomicUsize>,
}
impl Iterator for PIter {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        if self.i >= N {
            return None;
        }
        let i = self.i;
        self.i += 1;
        if self.hook == Hook::Next && i == K {
            panic!("HOSTILE next at {i}");
        }
        self.made[i].fetch_add(1, SeqCst);
        Some(Item {
            id: i,
            bomb: self.hook == Hook::InDrop && i == K,
            dropped: Arc::clone(&self.dropped),
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.hook == Hook::SizeHint {
            panic!("HOSTILE size_hint");
        }
        (N - self.i, Some(N - self.i))
    }
}
impl Drop for PIter {
    fn drop(&mut self) {
        self.iter_dropped.fetch_add(1, SeqCst);
        if self.hook == Hook::IterDrop {
            panic!("HOSTILE iterator drop");
        }
    }
}

struct PWaker(Hook);
impl std::task::Wake for PWaker {
    fn wake(self: Arc<Self>) {
        if self.0 == Hook::Wake {
            panic!("HOSTILE wake");
        }
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.0 == Hook::Wake {
            panic!("HOSTILE wake_by_ref");
        }
    }
}
impl Drop for PWaker {
    fn drop(&mut self) {
        if self.0 == Hook::WakerDrop {
            panic!("HOSTILE waker drop");
        }
    }
}

struct PCtx {
    hook: Hook,
    in_made: Counts,
    in_dropped: Counts,
    res_made: Counts,
    res_dropped: Counts,
    iter_dropped: Arc<AtomicUsize>,
    cap_dropped: Arc<AtomicUsize>,
}

impl PCtx {
    fn iter(&self) -> PIter {
        PIter {
            i: 0,
            hook: self.hook,
            made: Arc::clone(&self.in_made),
            dropped: Arc::clone(&self.in_dropped),
            iter_dropped: Arc::clone(&self.iter_dropped),
        }
    }
    fn vec(&self) -> Vec<Item> {
        // collected by the test itself: a Next/SizeHint hook is applied only
        // through `iter()` ops, so collect from a clean iterator.
        (0..N)
            .map(|i| {
                self.in_made[i].fetch_add(1, SeqCst);
                Item {
                    id: i,
                    bomb: self.hook == Hook::InDrop && i == K,
                    dropped: Arc::clone(&self.in_dropped),
                }
            })
            .collect()
    }
    /// The mapped function.
    fn f(&self) -> impl Fn(Item) -> Item + Send + Sync + 'static {
        let hook = self.hook;
        let made = Arc::clone(&self.res_made);
        let dropped = Arc::clone(&self.res_dropped);
        let cap = Cap(hook == Hook::CaptureDrop, Arc::clone(&self.cap_dropped));
        move |x: Item| {
            let _c = &cap;
            if hook == Hook::Task && x.id == K {
                panic!("HOSTILE task at {}", x.id);
            }
            let id = x.id;
            drop(x);
            made[id].fetch_add(1, SeqCst);
            Item {
                id,
                bomb: hook == Hook::ResDrop && id == K,
                dropped: Arc::clone(&dropped),
            }
        }
    }
}

fn drop_each<T>(v: Vec<T>) {
    for x in v {
        let _ = catch_unwind(AssertUnwindSafe(move || drop(x)));
    }
}

const POPS: usize = 15;

fn pop(k: usize, pool: &ThreadPool, c: &PCtx) -> Result<(), String> {
    let hook = c.hook;
    match k {
        0 => {
            // apply on one item
            let f = c.f();
            let x = c.vec().into_iter().nth(K).unwrap();
            let r = pool.apply(move || f(x));
            drop_each(vec![r]);
            Ok(())
        }
        1 | 2 => {
            let f = c.f();
            let x = c.vec().into_iter().nth(K).unwrap();
            let mut h = pool.apply_async(move || f(x));
            if k == 2 {
                let succ_hook = hook == Hook::SuccessCb;
                let err_hook = hook == Hook::ErrorCb;
                h = h
                    .on_success(move |_| {
                        if succ_hook {
                            panic!("HOSTILE success callback")
                        }
                    })
                    .on_error(move |_| {
                        if err_hook {
                            panic!("HOSTILE error callback")
                        }
                    });
            }
            match h.get() {
                Ok(r) => drop_each(vec![r]),
                Err(TaskError::Panicked(m)) if m.contains("HOSTILE") => {}
                Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => {}
                Err(e) => return Err(format!("get: {e:?}")),
            }
            Ok(())
        }
        3 => {
            let v = pool.map(c.f(), c.vec());
            drop_each(v);
            Ok(())
        }
        4 => {
            let v = pool.map(c.f(), parpool::iter(c.iter()));
            drop_each(v);
            Ok(())
        }
        5 => {
            match pool.map_async(c.f(), c.vec()).get() {
                Ok(v) => drop_each(v),
                Err(TaskError::Panicked(m)) if m.contains("HOSTILE") => {}
                Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => {}
                Err(e) => return Err(format!("map_async: {e:?}")),
            }
            Ok(())
        }
        6 => {
            let f = c.f();
            let ins: Vec<(Item, u8)> = c.vec().into_iter().map(|x| (x, 0)).collect();
            let v = pool.starmap(move |x: Item, _z: u8| f(x), ins);
            drop_each(v);
            Ok(())
        }
        7 => {
            let f = c.f();
            let v = pool.try_map(
                move |x: Item| if x.id == K + 3 { Err(x.id) } else { Ok(f(x)) },
                c.vec(),
            );
            match v {
                Ok(v) => drop_each(v),
                Err(e) if e == K + 3 => {}
                Err(e) => return Err(format!("try_map wrong error {e}")),
            }
            Ok(())
        }
        8 => {
            let v: Vec<Item> = pool.imap(c.f(), c.iter()).chunksize(2).collect();
            drop_each(v);
            Ok(())
        }
        9 => {
            let v: Vec<Item> = pool.imap_unordered(c.f(), c.iter()).collect();
            drop_each(v);
            Ok(())
        }
        10 => {
            // stream polled with a hostile waker
            use futures::Stream;
            let mut s = pool.imap(c.f(), c.iter()).into_stream();
            let w = std::task::Waker::from(Arc::new(PWaker(hook)));
            let mut cx = std::task::Context::from_waker(&w);
            let mut got = Vec::new();
            let t0 = std::time::Instant::now();
            loop {
                match std::pin::Pin::new(&mut s).poll_next(&mut cx) {
                    std::task::Poll::Ready(Some(x)) => got.push(x),
                    std::task::Poll::Ready(None) => break,
                    std::task::Poll::Pending => {
                        if t0.elapsed() > Duration::from_secs(8) {
                            return Err("stream pending for 8 s".into());
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
            drop(w);
            drop_each(got);
            Ok(())
        }
        11 => {
            // AsyncResult future polled with a hostile waker
            use std::future::Future;
            let f = c.f();
            let x = c.vec().into_iter().nth(K).unwrap();
            let mut h = pool.apply_async(move || {
                std::thread::sleep(Duration::from_millis(2));
                f(x)
            });
            let w = std::task::Waker::from(Arc::new(PWaker(hook)));
            let mut cx = std::task::Context::from_waker(&w);
            let t0 = std::time::Instant::now();
            let r = loop {
                match std::pin::Pin::new(&mut h).poll(&mut cx) {
                    std::task::Poll::Ready(r) => break r,
                    std::task::Poll::Pending => {
                        if t0.elapsed() > Duration::from_secs(8) {
                            return Err("future pending for 8 s".into());
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            };
            drop(w);
            match r {
                Ok(r) => drop_each(vec![r]),
                Err(TaskError::Panicked(m)) if m.contains("HOSTILE") => {}
                Err(TaskError::Cancelled) | Err(TaskError::NotRunning) => {}
                Err(e) => return Err(format!("future: {e:?}")),
            }
            Ok(())
        }
        12 => {
            let f = c.f();
            pool.scope(|s| {
                let f = &f;
                let mut hs = Vec::new();
                for x in c.vec() {
                    if x.id % 2 == 0 {
                        s.spawn(move || drop_each(vec![f(x)]));
                    } else {
                        hs.push(s.apply_async(move || f(x)));
                    }
                }
                for h in hs {
                    if let Ok(r) = h.get() {
                        drop_each(vec![r]);
                    }
                }
            });
            Ok(())
        }
        13 => {
            // fold closure panics at K (Fold hook), otherwise sums
            let n = pool
                .imap(c.f(), c.iter())
                .chunksize(3)
                .fold(0usize, |acc, x| {
                    if hook == Hook::Fold && x.id == K {
                        panic!("HOSTILE fold at {}", x.id);
                    }
                    drop_each(vec![x]);
                    acc + 1
                });
            if n != N {
                return Err(format!("fold counted {n}"));
            }
            Ok(())
        }
        14 => {
            let f = Arc::new(c.f());
            for x in c.vec() {
                let f = Arc::clone(&f);
                pool.spawn(move || drop_each(vec![f(x)]));
            }
            Ok(())
        }
        _ => unreachable!(),
    }
}

fn panic_matrix(policy: PanicPolicy, hooks: &[Hook], workers: usize) {
    quiet();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    for &hook in hooks {
        for k in 0..POPS {
            for round in 0..3 {
                let label = format!(
                    "pop={k} hook={hook:?} policy={policy:?} workers={workers} round={round}"
                );
                let f2 = Arc::clone(&failures);
                let l2 = label.clone();
                guard_named(20, &label, move || {
                    let fail = |m: String| f2.lock().unwrap().push(format!("{l2}: {m}"));
                    let inits = Arc::new(AtomicUsize::new(0));
                    let i2 = Arc::clone(&inits);
                    let mut b = ThreadPool::builder().workers(workers).on_panic(policy);
                    if hook == Hook::InitReplacement {
                        b = b.max_tasks_per_worker(2).initializer(move || {
                            if i2.fetch_add(1, SeqCst) >= workers {
                                panic!("HOSTILE initializer");
                            }
                        });
                    }
                    let pool = Arc::new(b.build().unwrap());
                    let c = PCtx {
                        hook,
                        in_made: counters(N),
                        in_dropped: counters(N),
                        res_made: counters(N),
                        res_dropped: counters(N),
                        iter_dropped: Arc::new(AtomicUsize::new(0)),
                        cap_dropped: Arc::new(AtomicUsize::new(0)),
                    };
                    let r = catch_unwind(AssertUnwindSafe(|| pop(k, &pool, &c)));
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(m)) => fail(m),
                        Err(p) => {
                            let m = panic_message(p.as_ref());
                            if !(m.contains("HOSTILE") || is_clear(&m)) {
                                fail(format!("unclear panic {m:?}"));
                            }
                        }
                    }
                    // health
                    if policy == PanicPolicy::Propagate {
                        let p2 = Arc::clone(&pool);
                        let h = std::thread::spawn(move || p2.apply_async(|| 42).get());
                        let t0 = std::time::Instant::now();
                        while !h.is_finished() && t0.elapsed() < Duration::from_secs(5) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        if !h.is_finished() {
                            fail("pool unhealthy: fresh task did not finish in 5 s".into());
                        } else {
                            match h.join() {
                                Ok(Ok(42)) => {}
                                other => fail(format!("fresh task: {other:?}")),
                            }
                        }
                    }
                    pool.close();
                    pool.join();
                    for i in 0..N {
                        let (m, d) = (c.in_made[i].load(SeqCst), c.in_dropped[i].load(SeqCst));
                        if m != d {
                            fail(format!("input {i}: made {m} dropped {d}"));
                        }
                        let (m, d) = (c.res_made[i].load(SeqCst), c.res_dropped[i].load(SeqCst));
                        // CaptureDrop in a FnOnce wrapping f: rust#47949, documented limit.
                        let limit = hook == Hook::CaptureDrop && matches!(k, 0 | 1 | 2 | 11);
                        if (m != d && !limit) || m > 1 {
                            fail(format!("result {i}: made {m} dropped {d}"));
                        }
                    }
                    let cd = c.cap_dropped.load(SeqCst);
                    drop(c);
                    let _ = cd;
                });
            }
        }
    }
    let f = failures.lock().unwrap();
    assert!(
        f.is_empty(),
        "{} failures:\n{}",
        f.len(),
        f.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

const ALL_HOOKS: [Hook; 13] = [
    Hook::Task,
    Hook::Next,
    Hook::InDrop,
    Hook::ResDrop,
    Hook::SuccessCb,
    Hook::ErrorCb,
    Hook::InitReplacement,
    Hook::Wake,
    Hook::WakerDrop,
    Hook::SizeHint,
    Hook::CaptureDrop,
    Hook::Fold,
    Hook::IterDrop,
];

#[test]
fn panics_propagate_1_worker() {
    panic_matrix(PanicPolicy::Propagate, &ALL_HOOKS, 1);
}
#[test]
fn panics_propagate_2_workers() {
    panic_matrix(PanicPolicy::Propagate, &ALL_HOOKS, 2);
}
#[test]
fn panics_terminate_1_worker() {
    panic_matrix(PanicPolicy::Terminate, &ALL_HOOKS, 1);
}
#[test]
fn panics_terminate_2_workers() {
    panic_matrix(PanicPolicy::Terminate, &ALL_HOOKS, 2);
}

// ---------------------------------------------------------------------------
// Part 3: nesting on 1- and 2-worker pools.

const NEST_KINDS: usize = 11;

fn nest(pool: &Arc<ThreadPool>, kinds: &[usize], end: Option<Stop>) -> usize {
    let Some((&k, rest)) = kinds.split_first() else {
        if let Some(s) = end {
            stop(pool, s);
        }
        return 1;
    };
    let rest: Vec<usize> = rest.to_vec();
    let p = Arc::clone(pool);
    let inner = move || nest(&p, &rest, end);
    match k {
        0 => pool.apply(inner),
        1 => {
            pool.map(|_: usize| inner(), 0..2usize)
                .into_iter()
                .sum::<usize>()
                / 2
        }
        2 => {
            let inner = Arc::new(inner);
            let v: Vec<usize> = pool.imap(move |_: usize| inner(), 0..2usize).collect();
            v.into_iter().sum::<usize>() / 2
        }
        3 => pool
            .scope(|s| s.apply_async(&inner).get())
            .unwrap_or_else(|e| panic!("nested scope get: {e}")),
        4 => pool
            .apply_async(inner)
            .get()
            .unwrap_or_else(|e| panic!("nested get: {e}")),
        5 => {
            let h = pool.apply_async(inner);
            h.wait();
            h.get().unwrap_or_else(|e| panic!("nested wait/get: {e}"))
        }
        6 => {
            let hs = vec![pool.apply_async(inner), pool.apply_async(|| 1)];
            let mut t = 0;
            for h in parpool::as_completed(hs) {
                t += h
                    .get()
                    .unwrap_or_else(|e| panic!("nested as_completed: {e}"));
            }
            t - 1
        }
        7 => futures::executor::block_on(pool.apply_async(inner))
            .unwrap_or_else(|e| panic!("nested block_on: {e}")),
        8 => {
            use futures::StreamExt;
            let inner = Arc::new(inner);
            let v: Vec<usize> = futures::executor::block_on(
                pool.imap(move |_: usize| inner(), 0..2usize)
                    .chunksize(1)
                    .into_stream()
                    .collect(),
            );
            v.into_iter().sum::<usize>() / 2
        }
        9 => {
            let (done, _) =
                parpool::wait(vec![pool.apply_async(inner)], None, WaitFor::AllCompleted);
            done.into_iter()
                .map(|h| h.get().unwrap_or_else(|e| panic!("nested wait(): {e}")))
                .sum()
        }
        10 => {
            let mut h = pool.apply_async(inner);
            h.get_timeout(Duration::from_secs(15))
                .unwrap_or_else(|e| panic!("nested get_timeout: {e}"))
        }
        _ => unreachable!(),
    }
}

fn nest_case(
    workers: usize,
    kinds: Vec<usize>,
    end: Option<Stop>,
    fails: &Arc<Mutex<Vec<String>>>,
) {
    let label = format!("workers={workers} kinds={kinds:?} end={end:?}");
    let f2 = Arc::clone(fails);
    let l2 = label.clone();
    let r = catch_unwind(AssertUnwindSafe(|| {
        guard_named(20, &label, move || {
            let pool = Arc::new(ThreadPool::with_workers(workers));
            let p = Arc::clone(&pool);
            // run the nest from inside a task
            let h = pool.apply_async(move || nest(&p, &kinds, end));
            match h.get() {
                Ok(1) => {}
                Ok(n) => f2.lock().unwrap().push(format!("{l2}: got {n}")),
                Err(TaskError::Cancelled) if end == Some(Stop::Terminate) => {}
                Err(TaskError::Panicked(m)) if end == Some(Stop::Terminate) && is_clear(&m) => {}
                Err(e) => f2.lock().unwrap().push(format!("{l2}: {e}")),
            }
            pool.close();
            pool.join();
        })
    }));
    if let Err(p) = r {
        fails.lock().unwrap().push(format!(
            "{}: PANIC/TIMEOUT {}",
            label,
            panic_message(p.as_ref())
        ));
    }
}

fn nest_matrix(workers: usize, end: Option<Stop>) {
    quiet();
    let fails = Arc::new(Mutex::new(Vec::new()));
    for a in 0..NEST_KINDS {
        for b in 0..NEST_KINDS {
            nest_case(workers, vec![a, b], end, &fails);
        }
    }
    // deeper: pseudo-random sequences
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for depth in 3..=5 {
        for _ in 0..60 {
            let kinds: Vec<usize> = (0..depth)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % NEST_KINDS as u64) as usize
                })
                .collect();
            nest_case(workers, kinds, end, &fails);
        }
    }
    let f = fails.lock().unwrap();
    assert!(
        f.is_empty(),
        "{} failures:\n{}",
        f.len(),
        f.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn nest_1_worker() {
    nest_matrix(1, None);
}
#[test]
fn nest_2_workers() {
    nest_matrix(2, None);
}
#[test]
fn nest_1_worker_close_inside() {
    nest_matrix(1, Some(Stop::Close));
}
#[test]
fn nest_1_worker_terminate_inside() {
    nest_matrix(1, Some(Stop::Terminate));
}
#[test]
fn nest_2_workers_terminate_inside() {
    nest_matrix(2, Some(Stop::Terminate));
}

/// Tasks that wait for tasks submitted after them, in a chain.
fn wait_for_later(workers: usize, chain: usize, how: usize) {
    quiet();
    guard_named(
        20,
        &format!("wait_for_later workers={workers} chain={chain} how={how}"),
        move || {
            let pool = Arc::new(ThreadPool::with_workers(workers));
            let mut txs = Vec::new();
            let mut hs = Vec::new();
            for i in 0..chain {
                let (tx, rx) = std::sync::mpsc::channel::<parpool::AsyncResult<usize>>();
                txs.push(tx);
                hs.push(pool.apply_async(move || {
                    if i + 1 == chain {
                        return 1;
                    }
                    let h = rx.recv().unwrap();
                    1 + match how {
                        0 => h.get().unwrap(),
                        1 => futures::executor::block_on(h).unwrap(),
                        2 => parpool::as_completed(vec![h])
                            .next()
                            .unwrap()
                            .get()
                            .unwrap(),
                        _ => {
                            h.wait();
                            h.get().unwrap()
                        }
                    }
                }));
            }
            // hand each task the handle of the one submitted after it
            let mut later: Vec<_> = hs.drain(1..).collect();
            for (i, tx) in txs.iter().enumerate().take(chain - 1) {
                let _ = i;
                tx.send(later.remove(0)).unwrap();
            }
            assert_eq!(hs.remove(0).get(), Ok(chain));
            pool.close();
            pool.join();
        },
    );
}

#[test]
fn wait_for_later_matrix() {
    for workers in [1, 2] {
        for chain in [2, 3, 5] {
            for how in 0..4 {
                wait_for_later(workers, chain, how);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Extra: close/terminate + join from user code running on a NON-worker
// thread while that thread is inside a pool call.

fn on_caller_join(what: &str, workers: usize, s: Stop, body: fn(Arc<ThreadPool>, Stop)) {
    quiet();
    for round in 0..10 {
        let pool = Arc::new(ThreadPool::with_workers(workers));
        let r = catch_unwind(AssertUnwindSafe(|| {
            guard_named(
                15,
                &format!("{what} workers={workers} {s:?} round={round}"),
                {
                    let pool = Arc::clone(&pool);
                    move || body(pool, s)
                },
            )
        }));
        if let Err(p) = r {
            let m = panic_message(p.as_ref());
            assert!(!m.contains("timed out"), "{m}");
            assert!(m.contains("HOSTILE") || is_clear(&m), "unclear: {m}");
        }
    }
}

fn stop_join(p: &ThreadPool, s: Stop) {
    stop(p, s);
    p.join();
}

#[test]
fn join_from_map_f_on_caller() {
    for w in [1, 2] {
        for s in [Stop::Close, Stop::Terminate] {
            on_caller_join("map f", w, s, |pool, s| {
                let me = std::thread::current().id();
                let done = AtomicUsize::new(0);
                let v = pool.chunked(1).map(
                    |i: usize| {
                        if std::thread::current().id() == me && done.fetch_add(1, SeqCst) == 0 {
                            stop_join(&pool, s);
                        }
                        spin(20_000);
                        i
                    },
                    0..64usize,
                );
                assert_eq!(v, (0..64).collect::<Vec<_>>());
            });
        }
    }
}

#[test]
fn join_from_imap_f_on_consumer() {
    for w in [1, 2] {
        for s in [Stop::Close, Stop::Terminate] {
            on_caller_join("imap f", w, s, |pool, s| {
                let me = std::thread::current().id();
                let p2 = Arc::downgrade(&pool);
                let hit = Arc::new(AtomicUsize::new(0));
                // keep the workers busy so the consumer takes credits back
                let (_b, release) = common::occupy_the_worker(&pool);
                let rel = Mutex::new(None::<std::sync::mpsc::Sender<()>>);
                let releaser = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    drop(release);
                });
                let hit2 = Arc::clone(&hit);
                let it = pool.imap(
                    move |i: usize| {
                        if std::thread::current().id() == me && hit2.fetch_add(1, SeqCst) == 0 {
                            if let Some(p) = p2.upgrade() {
                                stop_join(&p, s);
                            }
                        }
                        i
                    },
                    (0..40usize).collect::<Vec<_>>(),
                );
                let mut n = 0;
                for x in it {
                    if n == 5 {
                        drop(rel.lock().unwrap().take());
                    }
                    assert_eq!(x, n);
                    n += 1;
                }
                drop(rel.lock().unwrap().take());
                releaser.join().unwrap();
                assert_eq!(n, 40);
            });
        }
    }
}

/// The last handle of the pool lives in the imap input iterator; dropped
/// when the input is exhausted, on whatever thread reads last.
#[test]
fn last_pool_handle_dropped_by_imap_input() {
    quiet();
    for w in [1, 2] {
        for round in 0..20 {
            guard_named(
                15,
                &format!("last handle in input w={w} round={round}"),
                move || {
                    let pool = Arc::new(ThreadPool::with_workers(w));
                    struct Holder(Option<Arc<ThreadPool>>, usize);
                    impl Iterator for Holder {
                        type Item = usize;
                        fn next(&mut self) -> Option<usize> {
                            if self.1 >= 30 {
                                self.0 = None; // drops the pool
                                return None;
                            }
                            self.1 += 1;
                            Some(self.1)
                        }
                    }
                    let it = pool.imap(|x: usize| x, Holder(Some(Arc::clone(&pool)), 0));
                    drop(pool);
                    let v: Vec<usize> = it.collect();
                    assert_eq!(v, (1..=30).collect::<Vec<_>>());
                },
            );
        }
    }
}

/// The last handle of the pool in a task's capture, dropped on a worker,
/// and in a result dropped on the caller thread while other tasks run.
#[test]
fn last_pool_handle_dropped_in_odd_places() {
    quiet();
    for round in 0..20 {
        guard_named(15, &format!("round={round}"), move || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let p2 = Arc::clone(&pool);
            let h = pool.apply_async(move || {
                spin(10_000);
                p2
            });
            let other = pool.apply_async(|| 3);
            drop(pool);
            let p = h.get().unwrap();
            assert_eq!(other.get(), Ok(3));
            // the only handle left: drop it inside a task of its own pool
            let p3 = Arc::clone(&p);
            let h2 = p.apply_async(move || drop(p3));
            drop(p);
            let _ = h2.get();
        });
    }
}

#[test]
fn join_inside_scope_body_then_spawn() {
    for w in [1, 2] {
        for s in [Stop::Close, Stop::Terminate] {
            on_caller_join("scope body", w, s, |pool, s| {
                let ran = AtomicUsize::new(0);
                pool.scope(|sc| {
                    for _ in 0..10 {
                        sc.spawn(|| {
                            spin(5_000);
                            ran.fetch_add(1, SeqCst);
                        });
                    }
                    stop_join(&pool, s);
                    for _ in 0..10 {
                        sc.spawn(|| {
                            ran.fetch_add(1, SeqCst);
                        });
                    }
                    let h = sc.apply_async(|| 1);
                    let _ = h.get();
                });
                if s == Stop::Close {
                    assert_eq!(ran.load(SeqCst), 20);
                }
            });
        }
    }
}

#[test]
fn join_from_dropped_unused_input_of_try_map() {
    struct J(Arc<ThreadPool>, Stop, usize);
    impl Drop for J {
        fn drop(&mut self) {
            if self.2 == 40 && !self.0.is_current_worker_hack() {
                stop_join(&self.0, self.1);
            }
        }
    }
    trait Hack {
        fn is_current_worker_hack(&self) -> bool;
    }
    impl Hack for ThreadPool {
        fn is_current_worker_hack(&self) -> bool {
            std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("parpool"))
        }
    }
    for w in [1, 2] {
        for s in [Stop::Close, Stop::Terminate] {
            on_caller_join("try_map input drop", w, s, |pool, s| {
                let ins: Vec<J> = (0..64).map(|i| J(Arc::clone(&pool), s, i)).collect();
                let r = pool.chunked(4).try_map(
                    |j: J| {
                        spin(5_000);
                        if j.2 == 3 {
                            Err(j.2)
                        } else {
                            Ok(j.2)
                        }
                    },
                    ins,
                );
                assert_eq!(r, Err(3));
            });
        }
    }
}

#[test]
fn join_from_refused_apply_on_caller() {
    for w in [1, 2] {
        on_caller_join("apply refused", w, Stop::Terminate, |pool, _s| {
            let (_b, release) = common::occupy_the_worker(&pool);
            let p2 = Arc::clone(&pool);
            let t = std::thread::spawn(move || {
                spin(200_000);
                p2.terminate();
                drop(release);
            });
            let v = pool.apply(|| {
                if !std::thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("parpool"))
                {
                    pool.join();
                }
                5
            });
            assert_eq!(v, 5);
            t.join().unwrap();
        });
    }
}

// ---------------------------------------------------------------------------
// A callback waiting for its own task through every waiting API. The
// documented limit: it "panics (contained) with a message instead of
// waiting forever".

type Cell = Arc<Mutex<Option<parpool::AsyncResult<u32>>>>;

fn own_wait(how: usize, workers: usize) {
    quiet();
    guard_named(
        10,
        &format!("callback waits for own task: how={how} workers={workers}"),
        move || {
            let pool = ThreadPool::with_workers(workers);
            let cell: Cell = Arc::new(Mutex::new(None));
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let (cb_tx, cb_rx) = std::sync::mpsc::channel::<String>();
            let c2 = Arc::clone(&cell);
            let h = pool
                .apply_async(move || {
                    go_rx.recv().unwrap();
                    7u32
                })
                .on_success(move |_| {
                    let h = c2.lock().unwrap().take().unwrap();
                    let r = catch_unwind(AssertUnwindSafe(|| match how {
                        0 => {
                            h.wait();
                            "returned".to_string()
                        }
                        1 => format!(
                            "{:?}",
                            parpool::as_completed(vec![h]).next().map(|h| h.ready())
                        ),
                        2 => {
                            let mut it = parpool::as_completed(vec![h]);
                            format!(
                                "{:?}",
                                it.next_timeout(Duration::from_secs(3600))
                                    .map(|o| o.is_some())
                            )
                        }
                        3 => {
                            let (d, p) = parpool::wait(vec![h], None, WaitFor::AllCompleted);
                            format!("done={} pending={}", d.len(), p.len())
                        }
                        4 => format!("{:?}", futures::executor::block_on(h)),
                        5 => {
                            let (d, p) = parpool::wait(vec![h], None, WaitFor::FirstCompleted);
                            format!("done={} pending={}", d.len(), p.len())
                        }
                        _ => unreachable!(),
                    }));
                    let _ = cb_tx.send(match r {
                        Ok(s) => s,
                        Err(p) => format!("panicked: {}", panic_message(p.as_ref())),
                    });
                });
            *cell.lock().unwrap() = Some(h);
            go_tx.send(()).unwrap();
            let msg = cb_rx
                .recv_timeout(Duration::from_secs(8))
                .expect("callback never finished: a hang");
            if how == 2 {
                // Timed: the result cannot come before the callback returns.
                assert_eq!(msg, "Err(Timeout)", "how={how}");
            } else {
                assert!(
                    msg.starts_with("panicked: ") && msg.contains("its own task"),
                    "how={how}: {msg}"
                );
            }
            pool.close();
            pool.join();
        },
    );
}

#[test]
fn callback_waits_own_task_via_wait() {
    own_wait(0, 1);
}
#[test]
fn callback_waits_own_task_via_as_completed() {
    own_wait(1, 1);
}
#[test]
fn callback_waits_own_task_via_as_completed_next_timeout() {
    own_wait(2, 1);
}
#[test]
fn callback_waits_own_task_via_wait_all() {
    own_wait(3, 1);
}
#[test]
fn callback_waits_own_task_via_block_on() {
    own_wait(4, 1);
}
#[test]
fn callback_waits_own_task_via_wait_first() {
    own_wait(5, 2);
}

// ---------------------------------------------------------------------------
// More re-entrancy.

/// A callback (on the only worker) waits for a task queued behind its own.
#[test]
fn callback_waits_for_task_queued_behind_on_one_worker() {
    quiet();
    for how in 0..4 {
        guard_named(10, &format!("cb waits later task how={how}"), move || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let later: Cell = Arc::new(Mutex::new(None));
            let l2 = Arc::clone(&later);
            let (tx, rx) = std::sync::mpsc::channel();
            let p2 = Arc::clone(&pool);
            let h = pool
                .apply_async(move || {
                    go_rx.recv().unwrap();
                    1u32
                })
                .on_success(move |_| {
                    let h = l2.lock().unwrap().take().unwrap();
                    let v = match how {
                        0 => h.get().unwrap(),
                        1 => futures::executor::block_on(h).unwrap(),
                        2 => parpool::as_completed(vec![h])
                            .next()
                            .unwrap()
                            .get()
                            .unwrap(),
                        _ => p2.map(|x: u32| x, vec![1u32, 2, 3]).len() as u32 + h.get().unwrap(),
                    };
                    tx.send(v).unwrap();
                });
            *later.lock().unwrap() = Some(pool.apply_async(|| 2u32));
            go_tx.send(()).unwrap();
            assert_eq!(h.get(), Ok(1));
            assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
            pool.close();
            pool.join();
        });
    }
}

/// A task's capture whose Drop, run during terminate's drain on the
/// terminating (non-worker) thread, calls join / apply / map / scope.
#[test]
fn reentrant_drop_during_terminate_drain() {
    quiet();
    struct D(Weak<ThreadPool>, usize);
    impl Drop for D {
        fn drop(&mut self) {
            if let Some(p) = self.0.upgrade() {
                match self.1 {
                    0 => p.join(),
                    1 => assert_eq!(p.apply(|| 3), 3),
                    2 => assert_eq!(p.map(|x: u32| x + 1, vec![1u32, 2]), [2, 3]),
                    3 => p.scope(|s| s.spawn(|| ())),
                    4 => assert!(p.apply_async(|| 1).get().is_err()),
                    5 => assert_eq!(p.imap(|x: u32| x, vec![1u32, 2]).count(), 2),
                    _ => p.terminate(),
                }
            }
        }
    }
    for which in 0..7 {
        for w in [1, 2] {
            guard_named(10, &format!("drain drop which={which} w={w}"), move || {
                let pool = Arc::new(ThreadPool::with_workers(w));
                let (_b, release) = common::occupy_the_worker(&pool);
                let (_b2, release2) = if w == 2 {
                    let (a, b) = common::occupy_the_worker(&pool);
                    (Some(a), Some(b))
                } else {
                    (None, None)
                };
                let hs: Vec<_> = (0..5)
                    .map(|_| {
                        let d = D(Arc::downgrade(&pool), which);
                        pool.apply_async(move || drop(d))
                    })
                    .collect();
                let t = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    drop(release);
                    drop(release2);
                });
                pool.terminate();
                for h in hs {
                    assert_eq!(h.get(), Err(TaskError::Cancelled));
                }
                t.join().unwrap();
                pool.join();
            });
        }
    }
}

/// An imap created on the caller and consumed on the only worker of its pool.
#[test]
fn imap_consumed_on_the_only_worker() {
    quiet();
    for chunks in [1, 3] {
        guard_named(15, &format!("imap on worker chunks={chunks}"), move || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let it = pool
                .imap(|x: u32| x * 2, (0..100u32).collect::<Vec<_>>())
                .chunksize(chunks);
            let it2 = pool
                .imap_unordered(|x: u32| x * 2, std::iter::repeat(1u32).take(50))
                .chunksize(chunks);
            let s: u32 = pool.apply(move || it.sum::<u32>() + it2.sum::<u32>());
            assert_eq!(s, 9900 + 100);
            let it = pool.imap(|x: u32| x, 0..10u32);
            let h = pool.apply_async(move || {
                use futures::StreamExt;
                futures::executor::block_on(it.into_stream().collect::<Vec<_>>())
            });
            assert_eq!(h.get().unwrap().len(), 10);
            pool.close();
            pool.join();
        });
    }
}

/// A waker whose wake() (run on the worker that completes the task) calls
/// back into the same 1-worker pool.
#[test]
fn waker_that_uses_the_pool() {
    quiet();
    struct W(Weak<ThreadPool>, usize, std::sync::mpsc::Sender<u32>);
    impl std::task::Wake for W {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            if let Some(p) = self.0.upgrade() {
                let v = match self.1 {
                    0 => p.apply(|| 1),
                    1 => p.apply_async(|| 1).get().unwrap(),
                    2 => p.map(|x: u32| x, vec![1u32]).len() as u32,
                    3 => {
                        p.terminate();
                        1
                    }
                    _ => p.imap(|x: u32| x, vec![1u32]).sum(),
                };
                let _ = self.2.send(v);
            }
        }
    }
    for which in 0..5 {
        guard_named(10, &format!("waker uses pool which={which}"), move || {
            use std::future::Future;
            let pool = Arc::new(ThreadPool::with_workers(1));
            let (tx, rx) = std::sync::mpsc::channel();
            // The task ends only after the poll below (opens the gate).
            let gate = Gate::new();
            let g = gate.clone();
            let mut h = pool.apply_async(move || {
                g.wait();
                5u32
            });
            let w = std::task::Waker::from(Arc::new(W(Arc::downgrade(&pool), which, tx)));
            let mut cx = std::task::Context::from_waker(&w);
            assert!(std::pin::Pin::new(&mut h).poll(&mut cx).is_pending());
            gate.open();
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
            assert_eq!(h.get(), Ok(5));
            pool.close();
            pool.join();
        });
    }
}

/// Two callbacks that wait for each other's task (a user-made cycle). When
/// one thread runs both (the second task inlined by the first callback's
/// wait), the second callback's wait panics as a wait for its own work;
/// across two threads, the wait that closes the cycle panics as a wait
/// cycle (`wait_graph.rs`; it waited for good before, and this test was
/// ignored as a known limit).
#[test]
fn two_callbacks_wait_for_each_other() {
    quiet();
    guard_named(10, "mutual callbacks", || {
        let pool = ThreadPool::with_workers(2);
        let ca: Cell = Arc::new(Mutex::new(None));
        let cb: Cell = Arc::new(Mutex::new(None));
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (go2_tx, go2_rx) = std::sync::mpsc::channel::<()>();
        let (ca2, cb2) = (Arc::clone(&ca), Arc::clone(&cb));
        let (res_tx, res_rx) = std::sync::mpsc::channel::<String>();
        let res2 = res_tx.clone();
        let a = pool
            .apply_async(move || {
                go_rx.recv().unwrap();
                1u32
            })
            .on_success(move |_| {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    cb2.lock().unwrap().as_ref().unwrap().wait()
                }));
                let _ = res_tx.send(format!("a: {:?}", r.map_err(|p| panic_message(p.as_ref()))));
            });
        let b = pool
            .apply_async(move || {
                go2_rx.recv().unwrap();
                2u32
            })
            .on_success(move |_| {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    ca2.lock().unwrap().as_ref().unwrap().wait()
                }));
                let _ = res2.send(format!("b: {:?}", r.map_err(|p| panic_message(p.as_ref()))));
            });
        *ca.lock().unwrap() = Some(a);
        *cb.lock().unwrap() = Some(b);
        go_tx.send(()).unwrap();
        go2_tx.send(()).unwrap();
        let m = res_rx
            .recv_timeout(Duration::from_secs(8))
            .expect("mutual callback wait hung");
        assert!(
            m.contains("wait cycle across 2 threads")
                || m.contains("a callback waited for its own task's result"),
            "{m}"
        );
    });
}

/// An error callback, run by terminate's drain for a discarded task, that
/// waits for a task queued behind it (still in the queue being drained).
fn drain_callback_waits_for_later(how: usize, workers: usize) {
    drain_callback_waits_for_later_rel(how, workers, None)
}

fn drain_callback_waits_for_later_rel(how: usize, workers: usize, release_after_ms: Option<u64>) {
    quiet();
    guard_named(
        10,
        &format!("drain callback waits how={how} workers={workers}"),
        move || {
            let pool = Arc::new(ThreadPool::with_workers(workers));
            let mut rels = Vec::new();
            let mut blockers = Vec::new();
            for _ in 0..workers {
                let (b, r) = common::occupy_the_worker(&pool);
                blockers.push(b);
                rels.push(r);
            }
            let later: Cell = Arc::new(Mutex::new(None));
            let l2 = Arc::clone(&later);
            let (tx, rx) = std::sync::mpsc::channel::<String>();
            let a = pool.apply_async(|| 1u32).on_error(move |e| {
                let h = l2.lock().unwrap().take();
                let r = catch_unwind(AssertUnwindSafe(move || {
                    let h = h.expect("later handle");
                    match how {
                        0 => format!("{:?}", h.get()),
                        1 => {
                            h.wait();
                            "waited".into()
                        }
                        2 => format!(
                            "{:?}",
                            parpool::as_completed(vec![h]).next().map(|h| h.get())
                        ),
                        3 => format!("{:?}", futures::executor::block_on(h)),
                        _ => {
                            let mut h = h;
                            format!("{:?}", h.get_timeout(Duration::from_secs(3600)))
                        }
                    }
                }));
                let _ = tx.send(format!(
                    "a's error {e:?}; later: {:?}",
                    r.map_err(|p| panic_message(p.as_ref()))
                ));
            });
            *later.lock().unwrap() = Some(pool.apply_async(|| 2u32));
            let p2 = Arc::clone(&pool);
            let t = std::thread::spawn(move || p2.terminate());
            let rels = match release_after_ms {
                Some(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    drop(rels);
                    Vec::new()
                }
                None => rels,
            };
            let m = rx
                .recv_timeout(Duration::from_secs(8))
                .expect("drain callback hung");
            eprintln!("how={how} workers={workers}: {m}");
            t.join().unwrap();
            assert_eq!(a.get(), Err(TaskError::Cancelled));
            drop(rels);
            pool.join();
        },
    );
}

#[test]
fn drain_callback_waits_for_later_task_workers_freed_later() {
    for how in 0..5 {
        for w in [1, 2] {
            drain_callback_waits_for_later_rel(how, w, Some(300));
        }
    }
}

#[test]
fn drain_callback_waits_for_later_task() {
    for how in 0..5 {
        for w in [1, 2] {
            drain_callback_waits_for_later(how, w);
        }
    }
}

/// As above, but the waited-for task is queued *before* (already drained,
/// or being drained) and the callback is on cancel() from the caller.
#[test]
fn cancel_callback_waits_for_blocker() {
    quiet();
    for how in 0..3 {
        guard_named(10, &format!("cancel callback waits how={how}"), move || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let (blocker, release) = common::occupy_the_worker(&pool);
            let cell: Cell = Arc::new(Mutex::new(None));
            let c2 = Arc::clone(&cell);
            let (tx, rx) = std::sync::mpsc::channel::<String>();
            let q = pool.apply_async(|| 1u32).on_error(move |_| {
                let h = c2.lock().unwrap().take().unwrap();
                let s = match how {
                    0 => format!("{:?}", h.get()),
                    1 => format!("{:?}", futures::executor::block_on(h)),
                    _ => format!(
                        "{:?}",
                        parpool::as_completed(vec![h]).next().map(|h| h.get())
                    ),
                };
                let _ = tx.send(s);
            });
            *cell.lock().unwrap() = Some(pool.apply_async(|| 3u32));
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                drop(release);
            });
            assert!(q.cancel());
            let m = rx
                .recv_timeout(Duration::from_secs(8))
                .expect("cancel callback hung");
            eprintln!("how={how}: {m}");
            t.join().unwrap();
            let _ = blocker.get();
            pool.close();
            pool.join();
        });
    }
}

/// Minimal: `terminate()` then tell the running job to stop. An error
/// callback of a discarded task waits for a task queued behind it: the
/// drain (on the terminating thread) stops in the callback, the later task
/// is never discarded, terminate() never returns, the running job never
/// hears "stop".
#[test]
fn terminate_then_signal_with_waiting_error_callback() {
    quiet();
    guard_named(10, "terminate then signal", || {
        let pool = ThreadPool::with_workers(1);
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
        let running = pool.apply_async(move || {
            up_tx.send(()).unwrap();
            stop_rx.recv().unwrap(); // runs until told to stop
        });
        up_rx.recv().unwrap();
        let later: Cell = Arc::new(Mutex::new(None));
        let l2 = Arc::clone(&later);
        let a = pool.apply_async(|| 1u32).on_error(move |_| {
            // e.g. "if this failed, also wait for the follow-up"
            let _ = l2.lock().unwrap().take().unwrap().get();
        });
        *later.lock().unwrap() = Some(pool.apply_async(|| 2u32));
        pool.terminate(); // hangs here
        stop_tx.send(()).unwrap();
        assert_eq!(a.get(), Err(TaskError::Cancelled));
        running.get().unwrap();
        pool.join();
    });
}

/// Same, the terminate run from inside a task on the only worker.
#[test]
fn terminate_from_worker_with_error_callback_get() {
    terminate_from_worker_with_waiting_error_callback(0)
}
#[test]
fn terminate_from_worker_with_error_callback_block_on() {
    terminate_from_worker_with_waiting_error_callback(1)
}
#[test]
fn terminate_from_worker_with_error_callback_as_completed() {
    terminate_from_worker_with_waiting_error_callback(2)
}

fn terminate_from_worker_with_waiting_error_callback(how: usize) {
    quiet();
    {
        guard_named(10, &format!("worker terminate how={how}"), move || {
            let pool = Arc::new(ThreadPool::with_workers(1));
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let p2 = Arc::clone(&pool);
            let t = pool.apply_async(move || {
                go_rx.recv().unwrap();
                p2.terminate();
            });
            let later: Cell = Arc::new(Mutex::new(None));
            let l2 = Arc::clone(&later);
            let a = pool.apply_async(|| 1u32).on_error(move |_| {
                let h = l2.lock().unwrap().take().unwrap();
                let _ = match how {
                    0 => h.get(),
                    1 => futures::executor::block_on(h),
                    _ => parpool::as_completed(vec![h]).next().unwrap().get(),
                };
            });
            *later.lock().unwrap() = Some(pool.apply_async(|| 2u32));
            go_tx.send(()).unwrap();
            t.get().unwrap();
            assert_eq!(a.get(), Err(TaskError::Cancelled));
            pool.join();
        });
    }
}

/// A task queued when terminate() is called still runs if a waiter on a
/// worker inlines it while the drain is busy with an earlier job.
#[test]
fn queued_task_runs_after_terminate_via_inline_help() {
    quiet();
    guard_named(10, "run after terminate", || {
        let pool = Arc::new(ThreadPool::with_workers(1));
        struct Slow;
        impl Drop for Slow {
            fn drop(&mut self) {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        let cell: Cell = Arc::new(Mutex::new(None));
        let c2 = Arc::clone(&cell);
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
        let ran_after = Arc::new(AtomicUsize::new(0));
        let r2 = Arc::clone(&ran_after);
        let p2 = Arc::clone(&pool);
        let runner = pool.apply_async(move || {
            up_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50)); // terminate is in its drain now
            let h = c2.lock().unwrap().take().unwrap();
            let _ = &p2;
            h.get()
        });
        up_rx.recv().unwrap();
        let slow = Slow;
        let a = pool.apply_async(move || drop(slow));
        let b = pool.apply_async(move || {
            r2.fetch_add(1, SeqCst);
            if parpool::cancelled() {
                99u32
            } else {
                2u32
            }
        });
        *cell.lock().unwrap() = Some(b);
        go_tx.send(()).unwrap();
        pool.terminate();
        assert_eq!(a.get(), Err(TaskError::Cancelled));
        let b_result = runner.get().unwrap();
        pool.join();
        assert_eq!(
            (b_result, ran_after.load(SeqCst)),
            (Err(TaskError::Cancelled), 0),
            "task B was queued when terminate() was called, yet it ran"
        );
    });
}

/// A task that waits for its own handle (user error, analogous to the
/// documented callback case, which panics with a message).
#[test]
fn task_waits_for_its_own_handle() {
    quiet();
    guard_named(10, "task waits for itself", || {
        let pool = ThreadPool::with_workers(2);
        let cell: Cell = Arc::new(Mutex::new(None));
        let c2 = Arc::clone(&cell);
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let h = pool.apply_async(move || {
            go_rx.recv().unwrap();
            let me = c2.lock().unwrap().take().unwrap();
            let r = catch_unwind(AssertUnwindSafe(|| me.get()));
            let _ = tx.send(format!("{:?}", r.map_err(|p| panic_message(p.as_ref()))));
            1u32
        });
        // keep a second handle-less path: move the handle in
        *cell.lock().unwrap() = Some(h);
        go_tx.send(()).unwrap();
        let m = rx
            .recv_timeout(Duration::from_secs(8))
            .expect("task waiting for itself hung");
        eprintln!("{m}");
    });
}
