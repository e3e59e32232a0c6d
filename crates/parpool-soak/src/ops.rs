//! The operations a round runs, their result checks and outcome classes.

use crate::ctx::{fval, mix, Ctx, FaultIter, Hook, Item, Out};
use crate::track::{self, outcome, payload_msg, Fail};
use fastrand::Rng;
use parpool::{AsyncResult, Imap, ImapUnordered, TaskError, ThreadPool, WaitFor};
use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------- pickers

pub(crate) fn pick_timeout(rng: &mut Rng) -> Duration {
    match rng.u8(..10) {
        0 | 1 => Duration::ZERO,
        2 | 3 => Duration::from_micros(rng.u64(1..200)),
        4 | 5 => Duration::from_millis(rng.u64(1..5)),
        6 if !track::skipped("duration-max") => Duration::MAX,
        _ => Duration::from_millis(20),
    }
}

fn pick_n(rng: &mut Rng) -> usize {
    match rng.u8(..10) {
        0 => 0,
        1..=5 => rng.usize(1..16),
        6..=8 => rng.usize(16..200),
        _ => rng.usize(200..1500),
    }
}

/// A chunk size: automatic, 1, huge (`usize::MAX`, `1 << 40`) or small.
/// `feature` is the `--skip` name that turns the huge ones off.
fn pick_chunk(rng: &mut Rng, feature: &str) -> Option<usize> {
    match rng.u8(..8) {
        3 | 4 if track::skipped(feature) => Some(rng.usize(2..64)),
        0 | 1 => None,
        2 => Some(1),
        3 => Some(usize::MAX),
        4 => Some(1 << 40),
        _ => Some(rng.usize(2..64)),
    }
}

fn pick_buffer(rng: &mut Rng) -> Option<usize> {
    match rng.u8(..8) {
        4 | 5 if track::skipped("huge-imap") => Some(rng.usize(2..64)),
        0..=2 => None,
        3 => Some(1),
        4 => Some(usize::MAX),
        5 => Some(1 << 40),
        _ => Some(rng.usize(2..64)),
    }
}

// ---------------------------------------------------------------- helpers

/// Drops `x`, containing (and classifying) a panic from its `Drop`.
pub(crate) fn quiet_drop<T>(ctx: &Ctx, what: &str, x: T) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(x))) {
        classify_panic(ctx, what, &*p, "drop-");
    }
}

/// Classifies a panic caught around a parpool call (or a drop).
pub(crate) fn classify_panic(ctx: &Ctx, what: &str, p: &(dyn Any + Send), prefix: &str) {
    let msg = payload_msg(p);
    let class: &'static str = if track::is_injected(&msg) {
        if prefix.is_empty() {
            "panic: injected re-raised"
        } else {
            "drop-panic: injected"
        }
    } else if msg.contains("not running") {
        check_not_running(ctx, what, &msg);
        "panic: not running"
    } else if msg.contains("imap stopped early") || msg.contains("did not complete") {
        if !ctx.cancel_ok() {
            track::fail(
                Fail::Other,
                "cancelled-without-terminate",
                format!("{what}: panicked with a cancellation though the pool was never terminated: {msg}"),
            );
        }
        "panic: cancelled"
    } else {
        // Already recorded, with its location, by the panic hook.
        "panic: UNEXPECTED"
    };
    outcome(class);
}

/// A "not running" complaint is legitimate only once the pool left RUNNING.
fn check_not_running(ctx: &Ctx, what: &str, msg: &str) {
    if let Some(pool) = ctx.weak.upgrade() {
        let running = pool.is_running();
        // If this was the last reference, the pool is dropped (closed and
        // joined) right here: a legitimate place for that too.
        if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(pool))) {
            outcome(if track::is_injected(&payload_msg(&*p)) {
                "drop-panic: injected"
            } else {
                "drop-panic: UNEXPECTED"
            });
        }
        if running {
            track::fail(
                Fail::Other,
                "not-running-while-running",
                format!("{what}: '{msg}' but the pool is running"),
            );
        }
    }
}

/// Classifies a `TaskError` that ended an operation.
fn on_task_err(ctx: &Ctx, what: &str, e: &TaskError, we_cancelled: bool) {
    match e {
        TaskError::Panicked(msg) if track::is_injected(msg) => outcome("err: panicked (injected)"),
        TaskError::Panicked(msg) if msg.contains("not running") => {
            check_not_running(ctx, what, msg);
            outcome("err: panicked (not running)")
        }
        TaskError::Panicked(msg)
            if msg.contains("imap stopped early") || msg.contains("did not complete") =>
        {
            if !ctx.cancel_ok() {
                track::fail(
                    Fail::Other,
                    "cancelled-without-terminate",
                    format!("{what}: task failed with a cancellation though the pool was never terminated: {msg}"),
                );
            }
            outcome("err: panicked (nested cancel)")
        }
        TaskError::Panicked(_) => outcome("err: panicked (UNEXPECTED, see hook)"),
        TaskError::Cancelled => {
            if !(we_cancelled || ctx.cancel_ok()) {
                track::fail(
                    Fail::Other,
                    "cancelled-without-terminate",
                    format!("{what}: Cancelled though neither cancel() nor terminate() was called"),
                );
            }
            outcome("err: cancelled")
        }
        TaskError::NotRunning => {
            check_not_running(ctx, what, &e.to_string());
            outcome("err: not running")
        }
        TaskError::Timeout => outcome("err: timeout"),
        other => track::fail(
            Fail::Other,
            "unknown-task-error",
            format!("{what}: {other:?}"),
        ),
    }
}

fn expected(ctx: &Ctx, base: u64, n: usize) -> Vec<(u64, u64)> {
    (0..n as u64)
        .map(|i| (base + i, fval(ctx.input_val(base + i))))
        .collect()
}

/// Checks results against the expected (id, value) list. `complete`: the
/// operation reported success, so every id must be there.
pub(crate) fn check(
    what: &str,
    expected: &[(u64, u64)],
    got: &[(u64, u64)],
    ordered: bool,
    complete: bool,
) {
    let want: HashMap<u64, u64> = expected.iter().copied().collect();
    let mut seen: HashMap<u64, u32> = HashMap::with_capacity(got.len());
    for &(id, val) in got {
        *seen.entry(id).or_insert(0) += 1;
        match want.get(&id) {
            None => track::fail(
                Fail::Other,
                "unknown-id",
                format!("{what}: result carries id {id}, which was never an input"),
            ),
            Some(&w) if w != val => track::fail(
                Fail::Other,
                "wrong-value",
                format!("{what}: id {id} has value {val:#x}, expected f(input) = {w:#x}"),
            ),
            _ => {}
        }
    }
    let dups: u64 = seen
        .values()
        .filter(|&&c| c > 1)
        .map(|&c| u64::from(c - 1))
        .sum();
    if dups > 0 {
        let example = seen.iter().find(|(_, &c)| c > 1).map(|(id, c)| (*id, *c));
        track::fail(
            Fail::Duplicated(dups),
            "duplicated",
            format!("{what}: {dups} duplicate result(s); e.g. id {:?} returned {} times ({} results for {} inputs)",
                example.map(|e| e.0), example.map_or(0, |e| e.1), got.len(), expected.len()),
        );
    }
    if complete {
        let missing: Vec<u64> = expected
            .iter()
            .map(|e| e.0)
            .filter(|id| !seen.contains_key(id))
            .collect();
        if !missing.is_empty() {
            track::fail(
                Fail::Lost(missing.len() as u64),
                "lost",
                format!(
                    "{what}: reported success but {} of {} ids are missing (first: {:?})",
                    missing.len(),
                    expected.len(),
                    &missing[..missing.len().min(5)]
                ),
            );
        }
    }
    if ordered && dups == 0 {
        let bad = got.iter().zip(expected).position(|(g, e)| g.0 != e.0);
        if let Some(i) = bad {
            track::fail(
                Fail::Other,
                "out-of-order",
                format!(
                    "{what}: result {i} has id {}, expected id {}",
                    got[i].0, expected[i].0
                ),
            );
        } else if got.len() > expected.len() {
            track::fail(
                Fail::Other,
                "too-many",
                format!(
                    "{what}: {} results for {} inputs",
                    got.len(),
                    expected.len()
                ),
            );
        }
    }
}

fn outs_to_pairs(v: &[Out]) -> Vec<(u64, u64)> {
    v.iter().map(|o| (o.id, o.val)).collect()
}

/// Callback invocation counts of one handle.
#[derive(Default)]
struct Cb {
    has_s: bool,
    has_e: bool,
    s: AtomicU32,
    e: AtomicU32,
}

fn attach<R: Send + 'static>(
    ctx: &Arc<Ctx>,
    rng: &mut Rng,
    mut h: AsyncResult<R>,
) -> (AsyncResult<R>, Arc<Cb>) {
    let cb = Arc::new(Cb {
        has_s: rng.u8(..3) == 0,
        has_e: rng.u8(..3) == 0,
        ..Cb::default()
    });
    if cb.has_s {
        let (c, cx, p, key) = (
            Arc::clone(&cb),
            Arc::clone(ctx),
            ctx.closure_probe(),
            ctx.ids(1),
        );
        h = h.on_success(move |_v: &R| {
            let _p = &p;
            c.s.fetch_add(1, SeqCst);
            cx.inject(Hook::OnSuccess, key);
        });
    }
    if cb.has_e {
        let (c, cx, p, key) = (
            Arc::clone(&cb),
            Arc::clone(ctx),
            ctx.closure_probe(),
            ctx.ids(1),
        );
        h = h.on_error(move |_e: &TaskError| {
            let _p = &p;
            c.e.fetch_add(1, SeqCst);
            cx.inject(Hook::OnError, key);
        });
    }
    (h, cb)
}

/// Waits on a handle in a random way, then checks the outcome.
fn drive<R: Send + 'static>(
    ctx: &Arc<Ctx>,
    rng: &mut Rng,
    what: &str,
    h: AsyncResult<R>,
    validate: impl FnOnce(R),
) {
    let (mut h, cb) = attach(ctx, rng, h);
    let mut we_cancelled = false;
    let res = match rng.u8(..10) {
        0 => {
            quiet_drop(ctx, what, h);
            outcome("handle dropped unwaited");
            return;
        }
        1 => {
            we_cancelled = h.cancel();
            if we_cancelled {
                outcome("cancel() = true");
            }
            h.get()
        }
        2 | 3 => {
            let mut r = None;
            for _ in 0..6 {
                match h.get_timeout(pick_timeout(rng)) {
                    Err(TaskError::Timeout) => outcome("get_timeout: timeout"),
                    other => {
                        r = Some(other);
                        break;
                    }
                }
            }
            match r {
                Some(r) => r,
                None => h.get(),
            }
        }
        4 => {
            let fin = h.wait_timeout(pick_timeout(rng));
            if fin && !h.ready() {
                track::fail(
                    Fail::Other,
                    "wait-not-ready",
                    format!("{what}: wait_timeout true but not ready"),
                );
            }
            h.get()
        }
        5 => {
            h.wait();
            if !h.ready() || h.successful().is_none() {
                track::fail(
                    Fail::Other,
                    "wait-not-ready",
                    format!("{what}: wait() returned but not ready"),
                );
            }
            h.get()
        }
        _ => h.get(),
    };
    let (s, e) = (cb.s.load(SeqCst), cb.e.load(SeqCst));
    match res {
        Ok(v) => {
            outcome("ok");
            if (cb.has_s && s != 1) || e != 0 {
                track::fail(
                    Fail::Other,
                    "callbacks",
                    format!("{what}: succeeded but on_success ran {s} times (attached: {}), on_error {e} times", cb.has_s),
                );
            }
            validate(v);
        }
        Err(TaskError::Timeout) => {
            track::fail(
                Fail::Other,
                "get-timeout",
                format!("{what}: get() returned Timeout"),
            );
        }
        Err(err) => {
            on_task_err(ctx, what, &err, we_cancelled);
            if (cb.has_e && e != 1) || s != 0 {
                track::fail(
                    Fail::Other,
                    "callbacks",
                    format!("{what}: failed ({err}) but on_error ran {e} times (attached: {}), on_success {s} times", cb.has_e),
                );
            }
        }
    }
}

fn check_one(ctx: &Ctx, what: &str, out: Out, id: u64) {
    check(
        what,
        &expected(ctx, id, 1),
        &[(out.id, out.val)],
        true,
        true,
    );
    quiet_drop(ctx, what, out);
}

fn check_vec(ctx: &Ctx, what: &str, v: Vec<Out>, exp: &[(u64, u64)]) {
    check(what, exp, &outs_to_pairs(&v), true, true);
    quiet_drop(ctx, what, v);
}

// ---------------------------------------------------------------- imap consumption

pub(crate) trait TimedIter: Iterator<Item = Out> {
    fn next_t(&mut self, d: Duration) -> Result<Option<Out>, TaskError>;
}
impl TimedIter for Imap<'_, Out> {
    fn next_t(&mut self, d: Duration) -> Result<Option<Out>, TaskError> {
        self.next_timeout(d)
    }
}
impl TimedIter for ImapUnordered<'_, Out> {
    fn next_t(&mut self, d: Duration) -> Result<Option<Out>, TaskError> {
        self.next_timeout(d)
    }
}

/// After an error, "the iterator is finished": it must yield `Ok(None)`.
fn check_finished<I: TimedIter>(ctx: &Ctx, what: &str, it: &mut I) {
    match catch_unwind(AssertUnwindSafe(|| it.next_t(Duration::ZERO))) {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(o))) => {
            track::fail(
                Fail::Other,
                "imap-not-finished",
                format!("{what}: yielded id {} after its error", o.id),
            );
            quiet_drop(ctx, what, o);
        }
        Ok(Err(e)) => track::fail(
            Fail::Other,
            "imap-not-finished",
            format!("{what}: next_timeout after the error gave {e:?}, expected Ok(None)"),
        ),
        Err(p) => classify_panic(ctx, what, &*p, ""),
    }
}

fn consume<I: TimedIter>(
    ctx: &Ctx,
    rng: &mut Rng,
    what: &str,
    mut it: I,
    exp: &[(u64, u64)],
    ordered: bool,
    stop_at: Option<usize>,
) {
    let mut got = Vec::new();
    let mut complete = false;
    let mut timeouts = 0;
    let style = rng.u8(..3);
    loop {
        if stop_at.is_some_and(|k| got.len() >= k) {
            outcome("imap: dropped early");
            break;
        }
        let timed = match style {
            0 => false,
            1 => true,
            _ => rng.bool(),
        } && timeouts < 100;
        if timed {
            let d = pick_timeout(rng);
            match catch_unwind(AssertUnwindSafe(|| it.next_t(d))) {
                Err(p) => {
                    classify_panic(ctx, what, &*p, "");
                    break;
                }
                Ok(Ok(Some(o))) => {
                    got.push((o.id, o.val));
                    quiet_drop(ctx, what, o);
                }
                Ok(Ok(None)) => {
                    complete = true;
                    break;
                }
                Ok(Err(TaskError::Timeout)) => {
                    timeouts += 1;
                    outcome("imap: next_timeout timeout");
                }
                Ok(Err(e)) => {
                    on_task_err(ctx, what, &e, false);
                    check_finished(ctx, what, &mut it);
                    break;
                }
            }
        } else {
            match catch_unwind(AssertUnwindSafe(|| it.next())) {
                Err(p) => {
                    classify_panic(ctx, what, &*p, "");
                    // A task's panic or a cancellation finishes the stream. A
                    // result's `Drop` panicking inside `next()` is not a task
                    // failure, so the stream's state after it is unspecified.
                    if !track::is_drop_injected(&payload_msg(&*p)) {
                        check_finished(ctx, what, &mut it);
                    }
                    break;
                }
                Ok(Some(o)) => {
                    got.push((o.id, o.val));
                    quiet_drop(ctx, what, o);
                }
                Ok(None) => {
                    complete = true;
                    break;
                }
            }
        }
    }
    if complete {
        outcome("imap: complete");
    }
    check(what, exp, &got, ordered, complete);
    quiet_drop(ctx, what, it);
}

// ---------------------------------------------------------------- nesting

/// Work a task does on a worker: submits to its own pool and waits.
/// Panics (injected, "not running", cancellation) propagate to the task.
pub(crate) fn nested(cx: &Arc<Ctx>, seed: u64) {
    let Some(pool) = cx.weak.upgrade() else {
        outcome("nested: pool gone");
        return;
    };
    let n = (mix(seed) % 24) as usize;
    let base = cx.ids(n as u64);
    let exp = expected(cx, base, n);
    let kind = mix(seed ^ 7) % 5;
    const KINDS: [&str; 5] = ["apply", "map", "imap", "imap", "apply_async+get"];
    track::log_op(format!(
        "  nested on a worker: {} n={n}",
        KINDS[kind as usize]
    ));
    match kind {
        0 => {
            let id = cx.ids(1);
            let out = pool.apply(|| cx.work(id, cx.input_val(id)));
            check_one(cx, "nested apply", out, id);
        }
        1 => {
            let items = cx.items(base, n);
            let f = |it: Item| {
                let (id, val) = it.into_parts();
                cx.work(id, val)
            };
            let v = match mix(seed ^ 9) % 4 {
                0 => pool.map(f, items),
                1 => pool.chunked(1).map(f, items),
                2 => pool.chunked(usize::MAX).map(f, items),
                _ => pool.chunked(3).map(f, items),
            };
            check_vec(cx, "nested map", v, &exp);
        }
        2 | 3 => {
            let c2 = Arc::clone(cx);
            let f = move |it: Item| {
                let (id, val) = it.into_parts();
                c2.work(id, val)
            };
            let mut it = pool.imap(f, FaultIter::new(cx, base, n as u64));
            if mix(seed ^ 11) % 2 == 0 {
                it = it.chunksize(1 + (mix(seed) % 5) as usize);
            }
            let v: Vec<Out> = it.by_ref().collect();
            check_vec(cx, "nested imap", v, &exp);
            quiet_drop(cx, "nested imap drop", it);
        }
        _ => {
            let id = cx.ids(1);
            let c2 = Arc::clone(cx);
            let h = pool.apply_async(move || c2.work(id, c2.input_val(id)));
            match h.get() {
                Ok(out) => check_one(cx, "nested apply_async", out, id),
                Err(e) => on_task_err(cx, "nested apply_async", &e, false),
            }
        }
    }
    quiet_drop(cx, "nested pool ref", pool);
}

// ---------------------------------------------------------------- operations

type Op = fn(&Arc<Ctx>, &Arc<ThreadPool>, &mut Rng, &str);

/// The operation names (for `--ops`).
pub const OP_NAMES: &[&str] = &[
    "apply",
    "apply_async",
    "map",
    "try_map",
    "map_async",
    "imap",
    "scope",
    "as_completed/wait",
    "stats",
];

const OPS: &[(&str, Op, u32)] = &[
    ("apply", op_apply, 8),
    ("apply_async", op_apply_async, 14),
    ("map", op_map, 12),
    ("try_map", op_try_map, 6),
    ("map_async", op_map_async, 10),
    ("imap", op_imap, 16),
    ("scope", op_scope, 9),
    ("as_completed/wait", op_completed, 6),
    ("stats", op_stats, 2),
];

/// Runs one random operation against the round's pool (if it still exists).
pub(crate) fn run_op(ctx: &Arc<Ctx>, rng: &mut Rng, who: &str) {
    let Some(pool) = ctx.weak.upgrade() else {
        outcome("op skipped: pool dropped");
        return;
    };
    let only = track::only_ops();
    let allowed = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let total: u32 = OPS.iter().filter(|o| allowed(o.0)).map(|o| o.2).sum();
    let mut pick = rng.u32(..total);
    let &(name, op, _) = OPS
        .iter()
        .filter(|o| allowed(o.0))
        .find(|o| {
            if pick < o.2 {
                true
            } else {
                pick -= o.2;
                false
            }
        })
        .expect("weights");
    track::doing(who, format!("round {} {name}", ctx.round));
    let what = format!("{who} {name}");
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| op(ctx, &pool, rng, &what))) {
        classify_panic(ctx, &what, &*p, "");
    }
    track::doing(
        who,
        format!("round {} dropping pool reference after {name}", ctx.round),
    );
    quiet_drop(ctx, &what, pool);
    track::OPS.fetch_add(1, SeqCst);
    track::progress();
}

fn note(what: &str, detail: String) {
    let who = what.split(' ').next().unwrap_or("?");
    track::log_op(format!("{what} {detail}"));
    track::doing(who, format!("{what} {detail}"));
}

/// Whether nested submissions (tasks that use their own pool) are on.
fn nesting(rng: &mut Rng, one_in: u8) -> bool {
    rng.u8(..one_in) == 0 && !track::skipped("nesting")
}

fn op_apply(ctx: &Arc<Ctx>, pool: &Arc<ThreadPool>, rng: &mut Rng, what: &str) {
    let id = ctx.ids(1);
    let p = ctx.closure_probe();
    let nest = nesting(rng, 6);
    let nest_seed = rng.u64(..);
    note(what, format!("nest={nest}"));
    let out = pool.apply(|| {
        drop(p);
        ctx.inject(Hook::Task, id);
        if nest {
            nested(ctx, nest_seed);
        }
        ctx.work(id, ctx.input_val(id))
    });
    check_one(ctx, what, out, id);
}

fn op_apply_async(ctx: &Arc<Ctx>, pool: &Arc<ThreadPool>, rng: &mut Rng, what: &str) {
    let k = rng.usize(1..4);
    for _ in 0..k {
        let id = ctx.ids(1);
        let p = ctx.closure_probe();
        let nest = nesting(rng, 5);
        let nest_seed = rng.u64(..);
        // Sometimes the task holds a strong pool reference, so the pool may
        // be dropped on a worker (or inside the engine, with the closure).
        let held = (rng.u8(..8) == 0).then(|| Arc::clone(pool));
        let cx = Arc::clone(ctx);
        note(what, format!("nest={nest} holds_pool={}", held.is_some()));
        let h = pool.apply_async(move || {
            drop(p);
            drop(held);
            cx.inject(Hook::Task, id);
            if nest {
                nested(&cx, nest_seed);
            }
            cx.work(id, cx.input_val(id))
        });
        drive(ctx, rng, what, h, |out| check_one(ctx, what, out, id));
    }
}

/// Blocking `map` / `starmap`, over owned, borrowed, range or iterator inputs.
fn op_map(ctx: &Arc<Ctx>, pool: &Arc<ThreadPool>, rng: &mut Rng, what: &str) {
    let n = pick_n(rng);
    let base = ctx.ids(n as u64);
    let exp = expected(ctx, base, n);
    let chunk = pick_chunk(rng, "huge-map");
    let kind = rng.u8(..5);
    let nest = nesting(rng, 10);
    note(
        what,
        format!("n={n} chunk={chunk:?} inputs={kind} nest={nest}"),
    );
    let cx: &Arc<Ctx> = ctx;
    let p = ctx.closure_probe();
    let work = move |id: u64, val: u64| {
        let _p = &p;
        if nest && id == base {
            nested(cx, id);
        }
        cx.work(id, val)
    };
    let c = chunk.map(|c| pool.chunked(c));
    macro_rules! map {
        ($f:expr, $inputs:expr) => {
            match &c {
                Some(c) => c.map($f, $inputs),
                None => pool.map($f, $inputs),
            }
        };
    }
    let v: Vec<Out> = match kind {
        0 => map!(
            move |it: Item| {
                let (id, val) = it.into_parts();
                work(id, val)
            },
            ctx.items(base, n)
        ),
        1 => {
            let items = ctx.items(base, n);
            let v = map!(|it: &Item| work(it.id, it.val), &items);
            quiet_drop(ctx, what, items);
            v
        }
        2 => map!(
            move |id: u64| work(id, cx.input_val(id)),
            base..base + n as u64
        ),
        3 => map!(
            move |it: Item| {
                let (id, val) = it.into_parts();
                work(id, val)
            },
            parpool::iter(FaultIter::new(ctx, base, n as u64))
        ),
        _ => {
            let tuples: Vec<(Item, u64)> =
                ctx.items(base, n).into_iter().map(|it| (it, 0)).collect();
            let f = move |it: Item, k: u64| {
                let (id, val) = it.into_parts();
                work(id, val ^ k)
            };
            match &c {
                Some(c) => c.starmap(f, tuples),
                None => pool.starmap(f, tuples),
            }
        }
    };
    check_vec(ctx, what, v, &exp);
}

fn op_try_map(ctx: &Arc<Ctx>, pool: &Arc<ThreadPool>, rng: &mut Rng, what: &str) {
    let n = pick_n(rng);
    let base = ctx.ids(n as u64);
    let exp = expected(ctx, base, n);
    let chunk = pick_chunk(rng, "huge-map");
    let err_rate = [0, 2_000, 20_000][rng.usize(..3)];
    let first_err = (base..base + n as u64).find(|&id| ctx.roll(Hook::TryErr, id, err_rate));
    let owned = rng.bool();
    note(
        what,
        format!("n={n} chunk={chunk:?} owned={owned} first_err={first_err:?}"),
    );
    let cx: &Ctx = ctx;
    let p = ctx.closure_probe();
    let f = move |id: u64, val: u64| -> Result<Out, u64> {
        let _p = &p;
        if cx.roll(Hook::TryErr, id, err_rate) {
            Err(id)
        } else {
            Ok(cx.work(id, val))
        }
    };
    let c = chunk.map(|c| pool.chunked(c));
    let r = match (owned, &c) {
        (true, Some(c)) => c.try_map(
            move |it: Item| {
                let (id, val) = it.into_parts();
                f(id, val)
            },
            ctx.items(base, n),
        ),
        (true, None) => pool.try_map(
            move |it: Item| {
                let (id, val) = it.into_parts();
                f(id, val)
            },
            ctx.items(base, n),
        ),
        (false, Some(c)) => c.try_map(
            move |id: u64| f(id, cx.input_val(id)),
            base..base + n as u64,
        ),
        (false, None) => pool.try_map(
            move |id: u64| f(id, cx.input_val(id)),
            base..base + n as u64,
        ),
    };
    match r {
        Ok(v) => {
            if let Some(e) = first_err {
                track::fail(
                    Fail::Other,
                    "try_map-ok-despite-err",
                    format!("{what}: Ok though id {e} returned Err"),
                );
            }
            check_vec(ctx, what, v, &exp);
        }
        Err(e) => {
            outcome("try_map: Err");
            if Some(e) != first_err {
                track::fail(
                    Fail::Other,
                    "try_map-wrong-err",
                    format!(
                        "{what}: returned Err({e}), the earliest failing input is {first_err:?}"
                    ),
                );
            }
        }
    }
}

fn op_map_async(ctx: &Arc<Ctx>, pool: &Arc<ThreadPool>, rng: &mut Rng, what: &str) {
    let n = pick_n(rng);
    let base = ctx.ids(n as u64);
    let exp = expected(ctx, base, n);
    let chunk = pick_chunk(rng, "huge-map");
    let kind = rng.u8(..3);
    let nest = nesting(rng, 8);
    note(
        what,
        format!("n={n} chunk={chunk:?} inputs={kind} nest={nest}"),
    );
    let cx = Arc::clone(ctx);
    let p = ctx.closure_probe();
    let work = move |id: u64, val: u64| {
        let _p = &p;
        if nest && id == base {
            nested(&cx, id);
        }
        cx.work(id, val)
    };
    let c = chunk.map(|c| pool.chunked(c));
    macro_rules! map_async {
        ($f:expr, $inputs:expr) => {
            match &c {
                Some(c) => c.map_async($f, $inputs),
                None => pool.map_async($f, $inputs),
            }
        };
    }
    let cx2 = Arc::clone(ctx);
    let h = match kind {
        0 => map_async!(
            move |it: Item| {
                let (id, val) = it.into_parts();
                work(id, val)
            },
            ctx.items(base, n)
        ),
        1 => map_async!(
            move |id: u64| work(id, cx2.input_val(id)),
            base..base + n as u64
        ),
        _ => map_async!(
            move |it: Item| {
                let (id, val) = it.into_parts();
                work(id, val)
            },
            parpool::iter(FaultIter::new(ctx, base, n as u64))
        ),
    };
    drive(ctx, rng, what, h, |v| check_vec(ctx, what, v, &exp));
}

fn op_imap(ctx: &Arc<Ctx>, pool: &Arc<ThreadPool>, rng: &mut Rng, what: &str) {
    let n = pick_n(rng);
    let endless = rng.u8(..8) == 0;
    let cap = if endless { n + 5000 } else { n };
    let base = ctx.ids(cap as u64);
    let exp = expected(ctx, base, cap);
    let (chunk, buffer) = if endless {
        (
            [None, Some(1), Some(rng.usize(2..64))][rng.usize(..3)],
            [None, Some(1), Some(rng.usize(2..256))][rng.usize(..3)],
        )
    } else {
        (pick_chunk(rng, "huge-imap"), pick_buffer(rng))
    };
    // An endless stream is always dropped early; a finite one sometimes.
    let stop_at = (endless || rng.u8(..5) == 0).then(|| rng.usize(0..=n));
    let ordered = rng.bool();
    let fault_iter = rng.u8(..3) != 0;
    let nest = nesting(rng, 8);
    note(
        what,
        format!("n={n} endless={endless} ordered={ordered} chunk={chunk:?} buffer={buffer:?} stop_at={stop_at:?} fault_iter={fault_iter} nest={nest}"),
    );
    let cx = Arc::clone(ctx);
    let p = ctx.closure_probe();
    let f = move |it: Item| {
        let _p = &p;
        let (id, val) = it.into_parts();
        if nest && id == base {
            nested(&cx, id);
        }
        cx.work(id, val)
    };
    let input: Box<dyn Iterator<Item = Item> + Send> = if fault_iter {
        Box::new(FaultIter::new(ctx, base, cap as u64))
    } else {
        Box::new(ctx.items(base, cap).into_iter())
    };
    macro_rules! setup {
        ($it:expr) => {{
            let mut it = $it;
            if let Some(c) = chunk {
                it = it.chunksize(c);
            }
            if let Some(b) = buffer {
                it = it.buffer(b);
            }
            it
        }};
    }
    if ordered {
        let it = setup!(pool.imap(f, input));
        consume(ctx, rng, what, it, &exp, true, stop_at);
    } else {
        let it = setup!(pool.imap_unordered(f, input));
        consume(ctx, rng, what, it, &exp, false, stop_at);
    }
}

fn op_scope(ctx: &Arc<Ctx>, pool: &Arc<ThreadPool>, rng: &mut Rng, what: &str) {
    let n = pick_n(rng).min(300);
    let base = ctx.ids(n as u64);
    let exp = expected(ctx, base, n);
    let items = ctx.items(base, n);
    let choice = rng.u8(..4);
    let chunk = pick_chunk(rng, "huge-imap");
    let buffer = pick_buffer(rng);
    note(
        what,
        format!("n={n} kind={choice} chunk={chunk:?} buffer={buffer:?}"),
    );
    let cx: &Arc<Ctx> = ctx;
    let (items_ref, exp_ref) = (&items, &exp);
    pool.scope(|s| match choice {
        0 => {
            // Borrowing apply_async: one task per item (at most 4); some
            // handles are dropped unobserved (their panics go to the scope).
            for it in items_ref.iter().take(4) {
                let p = cx.closure_probe();
                let h = s.apply_async(move || {
                    drop(p);
                    cx.inject(Hook::Task, it.id);
                    cx.work(it.id, it.val)
                });
                if rng.u8(..3) == 0 {
                    quiet_drop(cx, what, h);
                    outcome("scope: handle dropped unobserved");
                } else {
                    let id = it.id;
                    drive(cx, rng, what, h, |out| check_one(cx, what, out, id));
                }
            }
        }
        1 => {
            let p = cx.closure_probe();
            let h = s.map_async(
                move |it: &Item| {
                    let _p = &p;
                    cx.work(it.id, it.val)
                },
                items_ref,
            );
            drive(cx, rng, what, h, |v| check_vec(cx, what, v, exp_ref));
        }
        _ => {
            let p = cx.closure_probe();
            let f = move |it: &Item| {
                let _p = &p;
                cx.work(it.id, it.val)
            };
            let stop_at = (rng.u8(..4) == 0).then(|| rng.usize(0..=n));
            macro_rules! setup {
                ($it:expr) => {{
                    let mut it = $it;
                    if let Some(c) = chunk {
                        it = it.chunksize(c);
                    }
                    if let Some(b) = buffer {
                        it = it.buffer(b);
                    }
                    it
                }};
            }
            if choice == 2 {
                consume(
                    cx,
                    rng,
                    what,
                    setup!(s.imap(f, items_ref)),
                    exp_ref,
                    true,
                    stop_at,
                );
            } else {
                consume(
                    cx,
                    rng,
                    what,
                    setup!(s.imap_unordered(f, items_ref)),
                    exp_ref,
                    false,
                    stop_at,
                );
            }
        }
    });
    quiet_drop(ctx, what, items);
}

fn op_completed(ctx: &Arc<Ctx>, pool: &Arc<ThreadPool>, rng: &mut Rng, what: &str) {
    let k = rng.usize(1..7);
    let base = ctx.ids(k as u64);
    let exp = expected(ctx, base, k);
    let mut handles = Vec::with_capacity(k);
    for id in base..base + k as u64 {
        let p = ctx.closure_probe();
        let cx = Arc::clone(ctx);
        handles.push(pool.apply_async(move || {
            drop(p);
            cx.inject(Hook::Task, id);
            cx.work(id, cx.input_val(id))
        }));
    }
    let mut got = Vec::new();
    let mut all_ok = true;
    let mut finish = |h: AsyncResult<Out>, got: &mut Vec<(u64, u64)>| match h.get() {
        Ok(o) => {
            got.push((o.id, o.val));
            quiet_drop(ctx, what, o);
        }
        Err(e) => {
            all_ok = false;
            on_task_err(ctx, what, &e, false);
        }
    };
    if rng.bool() {
        note(what, format!("as_completed k={k}"));
        let mut ac = parpool::as_completed(handles);
        let mut yielded = 0;
        let mut timeouts = 0;
        loop {
            let next = if timeouts < 50 && rng.bool() {
                ac.next_timeout(pick_timeout(rng))
            } else {
                Ok(ac.next())
            };
            match next {
                Ok(Some(h)) => {
                    yielded += 1;
                    if !h.ready() {
                        track::fail(
                            Fail::Other,
                            "as_completed-not-ready",
                            format!("{what}: yielded an unfinished handle"),
                        );
                    }
                    finish(h, &mut got);
                }
                Ok(None) => break,
                Err(TaskError::Timeout) => timeouts += 1,
                Err(e) => {
                    track::fail(
                        Fail::Other,
                        "as_completed-error",
                        format!("{what}: next_timeout gave {e:?}"),
                    );
                    break;
                }
            }
        }
        if yielded != k {
            track::fail(
                Fail::Lost(k.abs_diff(yielded) as u64),
                "as_completed-count",
                format!("{what}: as_completed yielded {yielded} of {k} handles"),
            );
        }
    } else {
        let timeout = [
            None,
            Some(Duration::ZERO),
            Some(Duration::from_micros(300)),
            Some(Duration::MAX),
        ][rng.usize(..if track::skipped("duration-max") { 3 } else { 4 })];
        let until = [
            WaitFor::FirstCompleted,
            WaitFor::FirstError,
            WaitFor::AllCompleted,
        ][rng.usize(..3)];
        note(
            what,
            format!("wait k={k} timeout={timeout:?} until={until:?}"),
        );
        let (done, pending) = parpool::wait(handles, timeout, until);
        if done.len() + pending.len() != k {
            track::fail(
                Fail::Lost(k.abs_diff(done.len() + pending.len()) as u64),
                "wait-count",
                format!(
                    "{what}: wait returned {} + {} of {k} handles",
                    done.len(),
                    pending.len()
                ),
            );
        }
        if until == WaitFor::AllCompleted && timeout.is_none() && !pending.is_empty() {
            track::fail(
                Fail::Other,
                "wait-pending",
                format!(
                    "{what}: AllCompleted without timeout left {} pending",
                    pending.len()
                ),
            );
        }
        for h in done {
            if !h.ready() {
                track::fail(
                    Fail::Other,
                    "wait-not-ready",
                    format!("{what}: a 'done' handle is not ready"),
                );
            }
            finish(h, &mut got);
        }
        for h in pending {
            finish(h, &mut got);
        }
    }
    check(what, &exp, &got, false, all_ok);
}

fn op_stats(ctx: &Arc<Ctx>, pool: &Arc<ThreadPool>, _rng: &mut Rng, what: &str) {
    let s = pool.stats();
    if s.workers != ctx.workers {
        track::fail(
            Fail::Other,
            "stats",
            format!(
                "{what}: stats().workers = {}, built with {}",
                s.workers, ctx.workers
            ),
        );
    }
    outcome("stats");
}
