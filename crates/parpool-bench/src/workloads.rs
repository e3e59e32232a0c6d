//! W1..W4 and W7: the in-process workloads, each a list of rows timed side
//! by side. W5 and W6 measure whole-process quantities (peak RSS, idle CPU),
//! so they run in child processes; see [`crate::child`].

use crate::floor;
use crate::measure::{percentile, time_rows, Plan, Row, Timing};
use crate::peers::{self, Peers};
use crate::pp;
use crate::work::{checksum, checksum_unordered, skewed, spin, tiny, Body};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Workload sizes, as the issue fixes them.
pub const W1_ITEMS: u64 = 1_000_000;
pub const W2_ITEMS: u64 = 20_000;
pub const W3_ITEMS: u64 = 20_000;
pub const W3_HEAVY: u32 = 50;
pub const W4_JOBS: u64 = 1_000_000;
/// W4's second size: the standalone program found parpool's cost
/// per job differs most from threadpool's at this size.
pub const W4_JOBS_SMALL: u64 = 300_000;
/// The chunk size of W1's floor row: the largest an `imap` of tiny items
/// grows to.
pub const FLOOR_CHUNK: u64 = 65_536;
/// Pool lifecycles per W9 sample (one takes ~50-150 µs).
pub const W9_REPS: u64 = 20;

/// Row names the targets refer to.
pub mod names {
    pub const SEQ: &str = "sequential";
    pub const RAYON: &str = "rayon par_iter collect (slice)";
    pub const RAYON_RANGE: &str = "rayon into_par_iter collect (range)";
    pub const RAYON_SCOPE: &str = "rayon scope + spawn per chunk";
    pub const TP_JOIN: &str = "threadpool execute + join (chunks)";
    pub const ARTICLE: &str = "article: threadpool + mpsc + BTreeMap, job per item";
    pub const STD_SCOPE: &str = "std::thread::scope, even chunks";
    pub const TOKIO: &str = "tokio spawn_blocking + buffered(n) (chunks)";
    pub const POOLIO: &str = "poolio execute (chunks)";
    pub const PP_MAP: &str = "parpool map (&[u64])";
    pub const PP_MAP_RANGE: &str = "parpool map (range)";
    pub const PP_IMAP: &str = "parpool imap (range)";
    pub const PP_IMAP_UNORDERED: &str = "parpool imap_unordered (range)";
    pub const W4_TP: &str = "threadpool execute + join";
    pub const W4_TP_RESULTS: &str = "threadpool execute + mpsc, every result";
    pub const W4_RAYON: &str = "rayon scope + spawn per job";
    pub const W4_TOKIO: &str = "tokio spawn_blocking per job + buffered(n), every result";
    pub const W4_POOLIO: &str = "poolio execute + mpsc, every result";
    pub const W4_PP: &str = "parpool apply_async + get";
    pub const W4_PP_SPAWN: &str = "parpool scope + spawn per job";
    pub const PP_IMAP_FOR_EACH: &str = "parpool imap (range), for_each push";
    pub const PP_IMAP_BATCHES: &str = "parpool imap (range), batches() extend";
    pub const FLOOR: &str = "floor: one thread collects ready chunks through next(), no pool";
    pub const W4_FRESH_TP: &str = "threadpool execute + join, fresh process";
    pub const W4_FRESH_PP: &str = "parpool apply_async + get, fresh process";
    pub const W9_TP: &str = "threadpool new(2) + execute + join + drop";
    pub const W9_RAYON: &str = "rayon build(2) + install + drop";
    pub const W9_PP: &str = "parpool with_workers(2) + apply + drop";
}

/// Which rows a workload runs: all, or (W8, under load) only those that
/// keep a round short; rows that take seconds per round even on a quiet
/// machine are left out there.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    All,
    Loaded,
}

/// One measured workload.
pub struct Section {
    pub id: &'static str,
    pub title: String,
    /// The row every ratio in this section is taken against.
    pub baseline: &'static str,
    pub timings: Vec<Timing>,
}

impl Section {
    pub fn median_of(&self, name: &str) -> Option<Duration> {
        self.timings
            .iter()
            .find(|t| t.name == name && !t.samples.is_empty())
            .map(Timing::median)
    }

    /// Median of `row` divided by median of `base`, if both ran.
    pub fn ratio(&self, row: &str, base: &str) -> Option<f64> {
        let (r, b) = (self.median_of(row)?, self.median_of(base)?);
        Some(r.as_secs_f64() / b.as_secs_f64())
    }

    /// The median over rounds of `row`'s time divided by `base`'s time in
    /// the same round. Pairing by round cancels slow drifts in machine load
    /// that a ratio of medians would keep. Falls back to [`Self::ratio`] when
    /// the two rows were not timed in the same rounds.
    pub fn paired_ratio(&self, row: &str, base: &str) -> Option<f64> {
        let find = |name: &str| self.timings.iter().find(|t| t.name == name);
        let (r, b) = (find(row)?, find(base)?);
        if r.samples.is_empty() || r.samples.len() != b.samples.len() {
            return self.ratio(row, base);
        }
        let mut q: Vec<f64> = r
            .samples
            .iter()
            .zip(&b.samples)
            .map(|(r, b)| r.as_secs_f64() / b.as_secs_f64())
            .collect();
        q.sort_by(f64::total_cmp);
        let m = q.len() / 2;
        Some(if q.len() % 2 == 1 {
            q[m]
        } else {
            (q[m - 1] + q[m]) / 2.0
        })
    }
}

/// Everything the in-process workloads share.
pub struct Ctx {
    pub peers: Peers,
    pub pool: pp::Pool,
    pub plan: Plan,
    /// `spin` iterations for a ~2 µs item.
    pub iters_2us: u32,
}

/// The slice-vs-peers rows every map-style workload has.
fn slice_rows<'a, F: Body>(
    ctx: &'a Ctx,
    input: &'a Arc<Vec<u64>>,
    f: F,
    rows_wanted: Rows,
) -> Vec<Row<'a>> {
    let with_article = rows_wanted == Rows::All;
    use names::*;
    let want = checksum(&peers::sequential(input, f));
    let p = &ctx.peers;
    let mut rows = vec![
        Row::new(SEQ, move || peers::sequential(input, f)).expect(want),
        Row::new(RAYON, move || peers::rayon_collect(input, f))
            .expect(want)
            .key(),
        Row::new(RAYON_SCOPE, move || {
            peers::rayon_scope_spawn(input, f, p.chunks)
        })
        .expect(want),
        Row::new(TP_JOIN, move || peers::threadpool_execute_join(p, input, f)).expect(want),
        Row::new(STD_SCOPE, move || peers::std_scope(input, f, p.workers)).expect(want),
        Row::new(TOKIO, move || peers::tokio_buffered(p, input, f)).expect(want),
        Row::new(POOLIO, move || peers::poolio_execute(p, input, f)).expect(want),
    ];
    if with_article {
        rows.push(Row::new(ARTICLE, move || peers::article_design(p, input, f)).expect(want));
    }
    rows.extend(pp::slice_rows(&ctx.pool, input, f, want));
    rows
}

/// Range-fed rows: the rayon range baseline and parpool's streaming calls.
fn range_rows<F: Body>(ctx: &Ctx, n: u64, f: F, unordered_too: bool) -> Vec<Row<'_>> {
    let seq: Vec<u64> = (0..n).map(f).collect();
    let (want, want_unordered) = (checksum(&seq), {
        let mut s = seq;
        s.sort_unstable();
        checksum_unordered(&s)
    });
    let mut rows = vec![
        Row::new(names::RAYON_RANGE, move || peers::rayon_range_collect(n, f))
            .expect(want)
            .key(),
    ];
    rows.extend(pp::range_rows(
        &ctx.pool,
        n,
        f,
        want,
        want_unordered,
        unordered_too,
    ));
    rows
}

fn input(n: u64) -> Arc<Vec<u64>> {
    Arc::new((0..n).collect())
}

pub fn w1(ctx: &Ctx, id: &'static str, rows_wanted: Rows) -> Section {
    let input = input(W1_ITEMS);
    // Made before the rows, which borrow them; not timed.
    let ready = floor::chunks_of(W1_ITEMS, FLOOR_CHUNK, tiny);
    let mut rows = slice_rows(ctx, &input, tiny, rows_wanted);
    rows.extend(range_rows(ctx, W1_ITEMS, tiny, true));
    if rows_wanted == Rows::All {
        let want = checksum(&(0..W1_ITEMS).map(tiny).collect::<Vec<_>>());
        rows.extend(pp::imap_consumer_rows(&ctx.pool, W1_ITEMS, tiny, want));
        let ready = &ready;
        rows.push(
            Row::new(names::FLOOR, move || {
                floor::ReadyChunks::new(ready).collect()
            })
            .expect(want),
        );
    }
    Section {
        id,
        title: format!("map over {W1_ITEMS} tiny items, ordered Vec out"),
        baseline: names::RAYON,
        timings: time_rows(&mut rows, &ctx.plan),
    }
}

pub fn w2(ctx: &Ctx, id: &'static str, rows_wanted: Rows) -> Section {
    let input = input(W2_ITEMS);
    let iters = ctx.iters_2us;
    let f = move |x| spin(x, iters);
    let mut rows = slice_rows(ctx, &input, f, rows_wanted);
    rows.extend(range_rows(ctx, W2_ITEMS, f, false));
    Section {
        id,
        title: format!("{W2_ITEMS} CPU-bound items of ~2 µs"),
        baseline: names::RAYON,
        timings: time_rows(&mut rows, &ctx.plan),
    }
}

pub fn w3(ctx: &Ctx) -> Section {
    let input = input(W3_ITEMS);
    let iters = ctx.iters_2us;
    let f = move |x| skewed(x, iters, W3_HEAVY);
    let mut rows = slice_rows(ctx, &input, f, Rows::All);
    rows.extend(range_rows(ctx, W3_ITEMS, f, false));
    Section {
        id: "W3",
        title: format!("{W3_ITEMS} items of ~2 µs, every 100th {W3_HEAVY}x dearer (skewed)"),
        baseline: names::RAYON,
        timings: time_rows(&mut rows, &ctx.plan),
    }
}

pub fn w4(ctx: &Ctx, id: &'static str, jobs: u64, rows_wanted: Rows) -> Section {
    use names::*;
    let p = &ctx.peers;
    let want = checksum(&(0..jobs).map(tiny).collect::<Vec<_>>());
    let mut rows = vec![
        Row::new(W4_TP, move || peers::w4_threadpool_execute_join(p, jobs)).key(),
        Row::new(W4_TP_RESULTS, move || {
            peers::w4_threadpool_with_results(p, jobs)
        })
        .expect(want),
        Row::new(W4_RAYON, move || peers::w4_rayon_scope_spawn(jobs)),
    ];
    if rows_wanted == Rows::All {
        rows.push(Row::new(W4_TOKIO, move || peers::w4_tokio_buffered(p, jobs)).expect(want));
        rows.push(Row::new(W4_POOLIO, move || peers::w4_poolio_with_results(p, jobs)).expect(want));
    }
    rows.extend(pp::w4_rows(&ctx.pool, jobs, want));
    Section {
        id,
        title: format!("{jobs} independent tiny jobs submitted one by one"),
        baseline: W4_TP,
        timings: time_rows(&mut rows, &ctx.plan),
    }
}

/// W9: a pool's whole life, for a program that makes a small pool for one
/// call. Every row makes `W9_REPS` pools per sample.
pub fn w9(ctx: &Ctx) -> Section {
    use names::*;
    let want = checksum(&(0..W9_REPS).map(tiny).collect::<Vec<_>>());
    let mut rows = vec![
        Row::new(W9_TP, || peers::w9_threadpool(W9_REPS))
            .expect(want)
            .key(),
        Row::new(W9_RAYON, || peers::w9_rayon(W9_REPS)).expect(want),
        Row::new(W9_PP, || pp::w9_lifecycle(W9_REPS))
            .expect(want)
            .key(),
    ];
    Section {
        id: "W9",
        title: format!("a pool's life, {W9_REPS} times: build with 2 workers, one call, drop"),
        baseline: W9_TP,
        timings: time_rows(&mut rows, &ctx.plan),
    }
}

/// W7's result for one pool.
pub struct Latency {
    pub name: String,
    pub p50: Duration,
    pub p99: Duration,
    pub samples: usize,
}

/// Times `samples` single round trips through `call`, pausing `gap` before
/// each so the pool is idle (its workers asleep) when the call arrives.
pub fn latency(
    name: &str,
    samples: usize,
    gap: Duration,
    mut call: impl FnMut() -> u64,
) -> Latency {
    let mut v = Vec::with_capacity(samples);
    for _ in 0..samples {
        std::thread::sleep(gap);
        let t = Instant::now();
        std::hint::black_box(call());
        v.push(t.elapsed());
    }
    Latency {
        name: name.to_string(),
        p50: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
        samples,
    }
}

pub const PP_APPLY: &str = "parpool apply";
pub const TP_EXECUTE_RECV: &str = "threadpool execute + mpsc recv";

pub fn w7(ctx: &Ctx, samples: usize, gap: Duration) -> Vec<Latency> {
    let p = &ctx.peers;
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(p.workers)
        .build()
        .expect("rayon pool");
    let mut out = Vec::new();
    if let Some(l) = pp::w7_apply(&ctx.pool, samples, gap) {
        out.push(l);
    }
    out.push(latency("rayon ThreadPool::install", samples, gap, || {
        rayon_pool.install(|| tiny(1))
    }));
    out.push(latency(TP_EXECUTE_RECV, samples, gap, || {
        let (tx, rx) = mpsc::channel();
        p.threadpool
            .execute(move || tx.send(tiny(1)).expect("receiver alive"));
        rx.recv().expect("job ran")
    }));
    out.push(latency(
        "tokio spawn_blocking + block_on",
        samples,
        gap,
        || {
            p.tokio
                .block_on(async { tokio::task::spawn_blocking(|| tiny(1)).await })
                .expect("task ran")
        },
    ));
    out.push(latency("poolio execute + mpsc recv", samples, gap, || {
        let (tx, rx) = mpsc::channel();
        let job = std::panic::AssertUnwindSafe(move || tx.send(tiny(1)).expect("receiver alive"));
        p.poolio.execute(job);
        rx.recv().expect("job ran")
    }));
    out.push(latency("std::thread::spawn + join", samples, gap, || {
        std::thread::spawn(|| tiny(1)).join().expect("thread ran")
    }));
    out
}
