//! Fault-injection soak test for `parpool`.
//!
//! [`run`] loops rounds until the time is up. Each round builds a pool with
//! random settings (1..=4 workers, `max_tasks_per_worker` none or 1..=5,
//! `PanicPolicy::Propagate` or `Terminate`), drives a random mix of
//! operations from several threads while a controller thread closes,
//! terminates or drops the pool at a random moment, and injects panics with
//! a small probability in every user hook: task closures and their `Drop`,
//! mapped functions, input items' `Drop`, the `imap` input iterator's
//! `next()` and `Drop`, `on_success`/`on_error` callbacks, and result values'
//! `Drop`.
//!
//! Checks: every id comes back at most once, a successful call returns every
//! id (in order, where ordered) with the value `f(input)`; live-object
//! counters return to zero after each round; a watchdog exits the process
//! with code 2 if nothing progresses for `watchdog` seconds.
//!
//! The bookkeeping is process-global: run one [`run`] at a time.

mod ctx;
mod ops;
mod track;

use ctx::{mix, Ctx};
use parpool::{PanicPolicy, ThreadPool};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};
use track::{outcome, Fail};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Start no new round after this long.
    pub duration: Duration,
    /// Seed of the whole run; each round derives its own from it.
    pub seed: u64,
    /// No progress for this long is a hang: report and exit with code 2.
    pub watchdog: Duration,
    /// Features to leave out, to look past a known bug: see [`SKIPPABLE`].
    pub skip: Vec<String>,
    /// Restrict the rounds to these operation kinds ([`OP_NAMES`]); empty: all.
    pub ops: Vec<String>,
}

pub use ops::OP_NAMES;

/// The feature names [`Config::skip`] accepts.
pub const SKIPPABLE: &[(&str, &str)] = &[
    (
        "huge-imap",
        "huge chunksize()/buffer() values (usize::MAX, 1<<40) on imap streams",
    ),
    (
        "huge-map",
        "huge chunked(n) values (usize::MAX, 1<<40) on the map family",
    ),
    ("duration-max", "Duration::MAX timeouts"),
    (
        "drop-faults",
        "panics injected in Drop impls (inputs, closures, results, iterators)",
    ),
    ("nesting", "tasks that submit to their own pool and wait"),
    (
        "lifecycle",
        "close/terminate/drop of the pool in the middle of a round",
    ),
];

impl Config {
    /// A seed from the clock, for runs that do not pass one.
    pub fn seed_from_time() -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        mix(t.as_nanos() as u64 ^ u64::from(std::process::id())) % 1_000_000_000_000
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            duration: Duration::from_secs(60),
            seed: Config::seed_from_time(),
            watchdog: Duration::from_secs(30),
            skip: Vec::new(),
            ops: Vec::new(),
        }
    }
}

/// The totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Rounds run.
    pub rounds: u64,
    /// Operations run.
    pub ops: u64,
    /// Hangs detected (a hang exits the process, so at most 1).
    pub hangs: u64,
    /// Ids missing from results reported as successful.
    pub lost: u64,
    /// Ids returned more than once.
    pub duplicated: u64,
    /// Objects still alive (or dropped too often) after their round.
    pub leaked: u64,
    /// Other failures: wrong values or order, unexpected panics or errors,
    /// double drops, callback counts, ...
    pub other: u64,
    /// Injected panics actually raised.
    pub injected: u64,
}

impl Summary {
    /// Whether the run found nothing wrong.
    pub fn passed(&self) -> bool {
        self.hangs == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.leaked == 0
            && self.other == 0
    }
}

impl fmt::Display for Summary {
    /// The one-line summary: `soak: seed=S rounds=R ops=O hangs=H lost=L
    /// duplicated=D leaked=K passed|FAILED`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "soak: seed={} rounds={} ops={} hangs={} lost={} duplicated={} leaked={} {}",
            self.seed,
            self.rounds,
            self.ops,
            self.hangs,
            self.lost,
            self.duplicated,
            self.leaked,
            if self.passed() { "passed" } else { "FAILED" }
        )
    }
}

fn snapshot(seed: u64, hangs: u64) -> Summary {
    Summary {
        seed,
        rounds: track::ROUNDS.load(SeqCst),
        ops: track::OPS.load(SeqCst),
        hangs,
        lost: track::LOST.load(SeqCst),
        duplicated: track::DUPLICATED.load(SeqCst),
        leaked: track::LEAKED.load(SeqCst),
        other: track::OTHER.load(SeqCst),
        injected: track::INJECTED.load(SeqCst),
    }
}

/// Prints the outcome classes and failure kinds (everything but the summary line).
pub fn print_totals() {
    let classes: Vec<String> = track::outcomes()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("soak: outcomes: {}", classes.join(", "));
    println!(
        "soak: injected panics raised={} late drops={} late creates={} other failures={}",
        track::INJECTED.load(SeqCst),
        track::LATE_DROPS.load(SeqCst),
        track::LATE_CREATES.load(SeqCst),
        track::OTHER.load(SeqCst)
    );
    let keys = track::failure_keys();
    if !keys.is_empty() {
        let keys: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("soak: failure kinds: {}", keys.join(", "));
    }
}

/// The pool of the running round, for the hang report.
static CURRENT_POOL: Mutex<Option<Weak<ThreadPool>>> = Mutex::new(None);

fn watchdog(cfg: Config, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("soak-watchdog".into())
        .spawn(move || {
            let mut last = track::PROGRESS.load(SeqCst);
            let mut since = Instant::now();
            while !stop.load(SeqCst) {
                thread::sleep(Duration::from_millis(50));
                let now = track::PROGRESS.load(SeqCst);
                if now != last {
                    last = now;
                    since = Instant::now();
                    continue;
                }
                if since.elapsed() < cfg.watchdog {
                    continue;
                }
                println!(
                    "soak: HANG seed={} round={} round_seed={:#x}: no progress for {:?}",
                    cfg.seed,
                    track::ROUND.load(SeqCst),
                    track::ROUND_SEED.load(SeqCst),
                    cfg.watchdog
                );
                for (who, what) in track::current() {
                    println!("soak:   {who}: {what}");
                }
                if let Ok(guard) = CURRENT_POOL.try_lock() {
                    if let Some(pool) = guard.as_ref().and_then(Weak::upgrade) {
                        println!(
                            "soak:   pool: running={} {:?}",
                            pool.is_running(),
                            pool.stats()
                        );
                        // Dropping it might be the last reference: a join.
                        std::mem::forget(pool);
                    } else {
                        println!("soak:   pool: already dropped");
                    }
                }
                println!("soak:   live objects: {:?}", track::live_counts());
                println!("soak:   round's ops: {}", track::round_log());
                print_totals();
                println!("{}", snapshot(cfg.seed, 1));
                std::process::exit(2);
            }
        })
        .expect("spawn watchdog")
}

/// For the allocator guard: reports an allocation so large that
/// it would abort the process (what was running, the totals, a FAILED
/// summary line), then exits with code 3. Must not be called re-entrantly.
fn report_absurd_allocation(bytes: usize) -> ! {
    track::fail(
        Fail::Other,
        "absurd-allocation",
        format!("an allocation of {bytes} bytes was requested (the process would abort)"),
    );
    println!(
        "soak: CRASH seed={} round={} round_seed={:#x}: allocation of {bytes} bytes on thread '{}'",
        track::SEED.load(SeqCst),
        track::ROUND.load(SeqCst),
        track::ROUND_SEED.load(SeqCst),
        thread::current().name().unwrap_or("<unnamed>")
    );
    for (who, what) in track::current() {
        println!("soak:   {who}: {what}");
    }
    println!("soak:   round's ops: {}", track::round_log());
    print_totals();
    println!("{}", snapshot(track::SEED.load(SeqCst), 0));
    std::process::exit(3);
}

/// The global allocator of every binary linking this crate (the soak binary
/// and its test): reports an allocation that would abort the process (an
/// engine sizing a buffer from a huge chunk size, say) instead of letting
/// it die silently.
struct AllocGuard;

/// Larger requests are bugs: the soak's own data is tiny.
const ABSURD: usize = 1 << 38;
static REPORTING: AtomicBool = AtomicBool::new(false);

fn check_size(size: usize) {
    if size > ABSURD {
        if !REPORTING.swap(true, Ordering::SeqCst) {
            report_absurd_allocation(size);
        }
        // Another thread is reporting and will exit the process.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

// SAFETY: forwards to `System`; the check never unwinds (it reports and exits).
unsafe impl GlobalAlloc for AllocGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: AllocGuard = AllocGuard;

/// Runs the soak for `cfg.duration` and returns its totals. Prints the seed
/// first, and each failure (the first few of each kind) as it is found. On a
/// hang it prints a report and exits the process with code 2.
pub fn run(cfg: Config) -> Summary {
    for c in [
        &track::LOST,
        &track::DUPLICATED,
        &track::LEAKED,
        &track::OTHER,
        &track::ROUNDS,
        &track::OPS,
        &track::INJECTED,
        &track::LATE_DROPS,
    ] {
        c.store(0, SeqCst);
    }
    track::SEED.store(cfg.seed, SeqCst);
    *track::SKIP.lock().unwrap_or_else(|e| e.into_inner()) = cfg.skip.clone();
    *track::ONLY_OPS.lock().unwrap_or_else(|e| e.into_inner()) = cfg.ops.clone();
    let mut skip = String::new();
    if !cfg.skip.is_empty() {
        skip += &format!(" skip={}", cfg.skip.join(","));
    }
    if !cfg.ops.is_empty() {
        skip += &format!(" ops={}", cfg.ops.join(","));
    }
    println!(
        "soak: seed={} duration={:?} watchdog={:?}{skip} (reproduce with --seed {})",
        cfg.seed, cfg.duration, cfg.watchdog, cfg.seed
    );
    let old_hook = std::panic::take_hook();
    track::install_hook();
    let stop = Arc::new(AtomicBool::new(false));
    let dog = watchdog(cfg.clone(), Arc::clone(&stop));

    let start = Instant::now();
    let mut round = 0u64;
    while round == 0 || start.elapsed() < cfg.duration {
        round += 1;
        let round_seed = mix(cfg.seed ^ mix(round));
        track::ROUND_SEED.store(round_seed, SeqCst);
        track::new_round(round);
        run_round(round, round_seed);
        track::ROUNDS.fetch_add(1, SeqCst);
        track::progress();
    }

    stop.store(true, SeqCst);
    let _ = dog.join();
    std::panic::set_hook(old_hook);
    snapshot(cfg.seed, 0)
}

fn run_round(round: u64, round_seed: u64) {
    let mut rng = fastrand::Rng::with_seed(round_seed);
    let workers = rng.usize(1..=4);
    let max_tasks = (rng.u8(..2) == 0).then(|| rng.usize(1..=5));
    let policy = if rng.u8(..3) == 0 {
        PanicPolicy::Terminate
    } else {
        PanicPolicy::Propagate
    };
    let rate = [0, 500, 2_000, 10_000, 30_000][rng.usize(..5)];
    let config = format!(
        "workers={workers} max_tasks_per_worker={max_tasks:?} on_panic={policy:?} fault_rate={rate}ppm"
    );
    track::doing("main", format!("round {round} building pool ({config})"));

    let mut builder = ThreadPool::builder().workers(workers).on_panic(policy);
    if let Some(m) = max_tasks {
        builder = builder.max_tasks_per_worker(m);
    }
    let pool = Arc::new(builder.build().expect("building the pool"));
    let weak = Arc::downgrade(&pool);
    *CURRENT_POOL.lock().unwrap_or_else(|e| e.into_inner()) = Some(weak.clone());
    let ctx = Arc::new(Ctx::new(round, round_seed, rate, policy, workers, pool));

    // Driving threads.
    let threads = rng.usize(1..=3);
    let mut joins = Vec::new();
    for t in 0..threads {
        let (ctx, seed, nops) = (Arc::clone(&ctx), rng.u64(..), rng.usize(1..12));
        let who = format!("op{t}");
        joins.push(
            thread::Builder::new()
                .name(format!("soak-{who}"))
                .spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    for _ in 0..nops {
                        ops::run_op(&ctx, &mut rng, &who);
                    }
                    track::done(&who);
                })
                .expect("spawn op thread"),
        );
    }
    track::doing(
        "main",
        format!("round {round} waiting for the driving threads ({config})"),
    );
    // The controller: close / terminate / drop at a random moment.
    let action = if track::skipped("lifecycle") {
        0
    } else {
        rng.u8(..8)
    };
    let delay = if rng.u8(..5) == 0 {
        0
    } else {
        rng.u64(0..5_000)
    };
    let gap = rng.u64(0..2_000);
    let cctx = Arc::clone(&ctx);
    joins.push(
        thread::Builder::new()
            .name("soak-ctl".into())
            .spawn(move || controller(&cctx, action, delay, gap))
            .expect("spawn controller"),
    );
    for j in joins {
        if j.join().is_err() {
            track::fail(
                Fail::Other,
                "driver-thread-panicked",
                "a driving thread panicked".into(),
            );
        }
    }

    // End of round: close or terminate, join, drop.
    let held = ctx.strong.lock().unwrap_or_else(|e| e.into_inner()).take();
    let joined_here = held.is_some();
    if let Some(pool) = held {
        let terminate = rng.bool();
        track::doing(
            "main",
            format!(
                "round {round} final {} + join ({config})",
                if terminate { "terminate" } else { "close" }
            ),
        );
        if terminate {
            ctx.terminate_requested.store(true, SeqCst);
            pool.terminate();
        } else {
            pool.close();
        }
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| pool.join())) {
            ops::classify_panic(&ctx, "main join", &*p, "");
        }
        let stats = pool.stats();
        if stats.workers != workers {
            track::fail(
                Fail::Other,
                "stats",
                format!("stats().workers = {}, built with {workers}", stats.workers),
            );
        }
        track::doing(
            "main",
            format!("round {round} dropping the pool ({config})"),
        );
        ops::quiet_drop(&ctx, "main drop", pool);
    }
    track::doing(
        "main",
        format!("round {round} waiting for the pool to be freed ({config})"),
    );
    if !wait_until(Duration::from_secs(2), || weak.strong_count() == 0) {
        track::fail(
            Fail::Leaked(1),
            "pool-leaked",
            format!("the pool is still referenced 2s after its round ended ({config})"),
        );
    }
    // A pool whose last handle was dropped on one of its own workers is
    // closed there, not joined: its workers may still be finishing the
    // round's tasks, which make results. Every task, callback and stream of
    // the round holds the round's context, so the round ends when this
    // thread holds the last reference (before, such a result could be made
    // after the next round began, and was charged to it as a leak).
    if !wait_until(Duration::from_secs(2), || Arc::strong_count(&ctx) == 1) {
        track::fail(
            Fail::Leaked(1),
            "context-leaked",
            format!(
                "the round's context is still referenced 2s after its pool was dropped: \
                 a task, callback or stream was never dropped ({config}); round's ops: {}",
                track::round_log()
            ),
        );
    }
    drop(ctx);

    // Leak check: every tracked object of the round must be gone.
    track::doing("main", format!("round {round} leak check ({config})"));
    let t0 = Instant::now();
    // The counts the check last saw are the ones reported.
    let mut live = [0; 4];
    if !wait_until(Duration::from_secs(2), || {
        live = track::live_counts();
        live == [0; 4]
    }) {
        let n: u64 = live.iter().map(|c| c.unsigned_abs() as u64).sum();
        let desc: Vec<String> = track::KIND_NAMES
            .iter()
            .zip(live)
            .map(|(k, c)| format!("{k}={c}"))
            .collect();
        track::fail(
            Fail::Leaked(n),
            if live.iter().any(|&c| c < 0) {
                "leak (negative: dropped twice)"
            } else {
                "leak"
            },
            format!(
                "live objects after the round: {} ({config}); the pool was {}; round's ops: {}",
                desc.join(" "),
                if joined_here {
                    "closed or terminated and joined by the main thread"
                } else {
                    "dropped by another thread (a worker's drop does not join)"
                },
                track::round_log()
            ),
        );
        // How long the leak lasts tells a slow release from a lost one.
        wait_until(Duration::from_secs(10), || track::live_counts() == [0; 4]);
        println!(
            "soak:   the round's objects were {} {:?} after the leak check began",
            if track::live_counts() == [0; 4] {
                "all dropped"
            } else {
                "still live"
            },
            t0.elapsed()
        );
    }
    outcome("round done");
}

/// Polls `done` every millisecond for up to `limit`; whether it came true.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while !done() {
        if t0.elapsed() > limit {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

fn controller(ctx: &Arc<Ctx>, action: u8, delay_us: u64, gap_us: u64) {
    let get = || ctx.strong.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let terminate = || {
        if let Some(p) = get() {
            ctx.terminate_requested.store(true, SeqCst);
            p.terminate();
            ops::quiet_drop(ctx, "ctl", p);
        }
    };
    let close = || {
        if let Some(p) = get() {
            p.close();
            ops::quiet_drop(ctx, "ctl", p);
        }
    };
    let drop_strong = || {
        let p = ctx.strong.lock().unwrap_or_else(|e| e.into_inner()).take();
        ops::quiet_drop(ctx, "ctl drop", p);
    };
    track::doing(
        "ctl",
        format!(
            "round {} sleeping {delay_us}us before action {action}",
            ctx.round
        ),
    );
    thread::sleep(Duration::from_micros(delay_us));
    track::doing("ctl", format!("round {} action {action}", ctx.round));
    let gap = || thread::sleep(Duration::from_micros(gap_us));
    match action {
        0 | 1 => {}
        2 => close(),
        3 => terminate(),
        4 => drop_strong(),
        5 => {
            close();
            gap();
            terminate();
        }
        6 => {
            terminate();
            gap();
            drop_strong();
        }
        _ => {
            close();
            gap();
            drop_strong();
        }
    }
    track::done("ctl");
}
