//! parpool-bench: measures parpool against its peers on the workloads of
//! issues 3 and 9 and checks the targets set there: W1..W7 on a quiet
//! machine, W4 also at 300 k jobs and in a fresh process per run, W8 (W1,
//! W2 and W4 again beside one busy-looping process per core) and W9 (a
//! pool's whole life).
//!
//! The `report` binary is the entry point; this library holds the pieces:
//! the workload bodies ([`work`]), W1's consumer floor ([`floor`]), the peers ([`peers`]) and parpool's rows
//! ([`pp`]), the timing harness and process meters ([`measure`]), the
//! child-process workloads ([`child`]), the targets ([`targets`]) and the
//! output ([`report`], [`chart`]).
//!
//! [`spindle`] is separate: a simulated spindle and flash device (FUSE) and
//! the measurement of parsum's adaptive reader gate on them (issue 12),
//! run by the `spindle` and `spindle_bench` binaries.

pub mod chart;
pub mod child;
pub mod floor;
pub mod measure;
pub mod peers;
pub mod pp;
pub mod python;
pub mod report;
pub mod spindle;
pub mod targets;
pub mod work;
pub mod workloads;

use measure::Plan;
use report::{Machine, Report};
use std::time::{Duration, Instant};
use targets::{Target, Unit};
use workloads::{names, Ctx, Section};

/// Worker threads every pool gets: the machine's available parallelism.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    /// Workloads to run ("W1".."W7"); empty means all.
    pub only: Vec<String>,
    /// Overrides the pause before each timed run.
    pub settle: Option<Duration>,
}

impl Options {
    /// Whether workload `id` runs; "W4" also selects W4's variants
    /// ("W4-300k", "W4-fresh", ...).
    fn wants(&self, id: &str) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|w| {
                let family = id.split('-').next().unwrap_or(id);
                w.eq_ignore_ascii_case(id) || w.eq_ignore_ascii_case(family)
            })
    }
}

/// Items W5 streams.
pub const W5_ITEMS: u64 = 10_000_000;
/// Items the article design streams in W5 (it queues every job up front,
/// so it gets fewer).
pub const W5_ARTICLE_ITEMS: u64 = 1_000_000;
/// Items tokio streams in W5 (it pays ~9 µs a `spawn_blocking` round trip
/// per item here, so it gets fewer still).
pub const W5_TOKIO_ITEMS: u64 = 200_000;

/// Runs the selected workloads and checks the targets.
pub fn run(opts: &Options) -> Report {
    let started = Instant::now();
    let load_before = Machine::load();
    let workers = workers();
    let plan = if opts.quick {
        Plan {
            rounds: 7,
            row_budget: Duration::from_millis(1500),
            min_samples: 3,
            settle: Duration::from_millis(2),
        }
    } else {
        Plan {
            rounds: 31,
            row_budget: Duration::from_secs(5),
            min_samples: 5,
            settle: Duration::from_millis(2),
        }
    };
    let plan = Plan {
        settle: opts.settle.unwrap_or(plan.settle),
        ..plan
    };
    let iters_2us = work::calibrate_spin(Duration::from_micros(2));
    eprintln!("calibrated: {iters_2us} spin iterations ≈ 2 µs; {workers} workers per pool");
    let mut ctx = Ctx {
        peers: peers::Peers::new(workers),
        pool: pp::Pool::new(workers),
        plan,
        iters_2us,
    };

    let mut sections: Vec<Section> = Vec::new();
    use workloads::{Rows, W4_JOBS, W4_JOBS_SMALL};
    type Workload = Box<dyn Fn(&Ctx) -> Section>;
    let list: Vec<(&str, Workload)> = vec![
        ("W1", Box::new(|c| workloads::w1(c, "W1", Rows::All))),
        ("W2", Box::new(|c| workloads::w2(c, "W2", Rows::All))),
        ("W3", Box::new(workloads::w3)),
        (
            "W4",
            Box::new(|c| workloads::w4(c, "W4", W4_JOBS, Rows::All)),
        ),
        (
            "W4-300k",
            Box::new(|c| workloads::w4(c, "W4-300k", W4_JOBS_SMALL, Rows::All)),
        ),
        ("W9", Box::new(workloads::w9)),
    ];
    for (id, w) in &list {
        if opts.wants(id) {
            eprintln!("{id} ...");
            let mut sec = w(&ctx);
            if *id == "W1" {
                let reps = if opts.quick { 3 } else { 7 };
                if let Some(samples) = python::w1(workloads::W1_ITEMS, reps, workers) {
                    sec.timings.push(measure::Timing {
                        name: python::ROW.into(),
                        samples,
                        correct: true,
                    });
                }
            }
            sections.push(sec);
        }
    }
    let fresh_runs = if opts.quick { 5 } else { 15 };
    for (id, n) in [("W4-fresh", W4_JOBS), ("W4-300k-fresh", W4_JOBS_SMALL)] {
        if opts.wants(id) {
            eprintln!("{id} ...");
            sections.push(child::w4_fresh(id, n, fresh_runs));
        }
    }
    if opts.wants("W8") {
        // Under load every run takes longer: fewer rounds keep W8 short.
        let loaded = Ctx {
            plan: Plan {
                rounds: if opts.quick { 5 } else { 11 },
                ..ctx.plan
            },
            ..ctx
        };
        let spinners = child::Spinners::start(workers);
        eprintln!("W8: {} busy-looping processes started", spinners.count());
        let w8: Vec<(&str, Workload)> = vec![
            (
                "W8-W1",
                Box::new(|c| workloads::w1(c, "W8-W1", Rows::Loaded)),
            ),
            (
                "W8-W2",
                Box::new(|c| workloads::w2(c, "W8-W2", Rows::Loaded)),
            ),
            (
                "W8-W4",
                Box::new(|c| workloads::w4(c, "W8-W4", W4_JOBS, Rows::Loaded)),
            ),
        ];
        for (id, w) in &w8 {
            eprintln!("{id} ...");
            let mut sec = w(&loaded);
            sec.title = format!(
                "{}, beside {} busy-looping processes",
                sec.title,
                spinners.count()
            );
            sections.push(sec);
        }
        drop(spinners);
        ctx = loaded;
        ctx.plan = plan;
    }

    // W5: the consumer spins ~200 ns per item, several times the pool's cost
    // per tiny item, so the pool is always ahead of it.
    let consumer_iters = (iters_2us / 10).max(1);
    let mut w5 = Vec::new();
    if opts.wants("W5") {
        eprintln!("W5 ...");
        w5.extend(child::w5("parpool", W5_ITEMS, consumer_iters));
        w5.extend(child::w5("article", W5_ARTICLE_ITEMS, consumer_iters));
        w5.extend(child::w5("tokio", W5_TOKIO_ITEMS, consumer_iters));
    }
    let mut w6 = Vec::new();
    if opts.wants("W6") {
        eprintln!("W6 ...");
        for row in [
            "parpool",
            "rayon",
            "threadpool",
            "tokio",
            "poolio",
            "sequential",
        ] {
            if row == "parpool" && !pp::AVAILABLE {
                continue;
            }
            w6.push((row.to_string(), child::w6(row, iters_2us)));
        }
    }
    let mut w7 = Vec::new();
    if opts.wants("W7") {
        eprintln!("W7 ...");
        let samples = if opts.quick { 300 } else { 2000 };
        w7 = workloads::w7(&ctx, samples, Duration::from_millis(2));
    }
    drop(ctx);

    let consumer_ns = {
        let t = Instant::now();
        for i in 0..10_000u64 {
            std::hint::black_box(work::spin(i, consumer_iters));
        }
        t.elapsed().as_nanos() as f64 / 10_000.0
    };
    let targets = targets(&sections, &w5, &w6, &w7);
    Report {
        quick: opts.quick,
        machine: Machine::probe(load_before),
        iters_2us,
        sections,
        w5,
        w5_consumer_ns: consumer_ns,
        w6,
        w7,
        targets,
        elapsed: started.elapsed(),
    }
}

/// The targets, filled in from this run.
fn targets(
    sections: &[Section],
    w5: &[child::RssRun],
    w6: &[(String, Option<Duration>)],
    w7: &[workloads::Latency],
) -> Vec<Target> {
    use names::*;
    let sec = |id: &str| sections.iter().find(|s| s.id == id);
    let ratio = |id: &str, row: &str, base: &str, limit: f64, what: String| {
        let s = sec(id);
        let correct = s
            .and_then(|s| s.timings.iter().find(|t| t.name == row))
            .is_none_or(|t| t.correct);
        Target::new(
            what,
            s.and_then(|s| s.paired_ratio(row, base)),
            limit,
            Unit::Ratio,
        )
        .correct(correct)
    };
    // The quiet limits; W8 allows each 1.5 times its quiet limit.
    let ratios: [(&str, &str, &str, f64, &str); 7] = [
        (
            "W1",
            PP_MAP,
            RAYON,
            1.10,
            "`map` (slice) / rayon par_iter collect",
        ),
        (
            "W1",
            PP_IMAP,
            RAYON_RANGE,
            2.5,
            "`imap` (range) / rayon collect (range)",
        ),
        (
            "W1",
            PP_IMAP_UNORDERED,
            RAYON_RANGE,
            2.5,
            "`imap_unordered` (range) / rayon collect (range)",
        ),
        (
            "W2",
            PP_MAP,
            RAYON,
            1.05,
            "`map` (slice) / rayon par_iter collect",
        ),
        (
            "W2",
            PP_IMAP,
            RAYON_RANGE,
            1.10,
            "`imap` (range) / rayon collect (range)",
        ),
        (
            "W3",
            PP_MAP,
            RAYON,
            1.05,
            "`map` (slice) / rayon par_iter collect",
        ),
        (
            "W3",
            PP_IMAP,
            RAYON_RANGE,
            1.10,
            "`imap` (range) / rayon collect (range)",
        ),
    ];
    let w4 = [
        ("W4", W4_PP, W4_TP, "1 M"),
        ("W4-300k", W4_PP, W4_TP, "300 k"),
        ("W4-fresh", W4_FRESH_PP, W4_FRESH_TP, "1 M, fresh process"),
        (
            "W4-300k-fresh",
            W4_FRESH_PP,
            W4_FRESH_TP,
            "300 k, fresh process",
        ),
    ];
    let mut t = Vec::new();
    for (id, row, base, limit, what) in ratios {
        t.push(ratio(id, row, base, limit, format!("{id} {what}")));
    }
    for (id, row, base, what) in w4 {
        t.push(ratio(
            id,
            row,
            base,
            1.0,
            format!("{id} `apply_async`+`get` / threadpool execute+join ({what})"),
        ));
    }
    for (id, row, base, limit, what) in ratios {
        if id == "W3" {
            continue;
        }
        let loaded = format!("W8-{id}");
        t.push(ratio(
            &loaded,
            row,
            base,
            limit * 1.5,
            format!("{loaded} {what}, under load"),
        ));
    }
    t.push(ratio(
        "W8-W4",
        W4_PP,
        W4_TP,
        1.5,
        "W8-W4 `apply_async`+`get` / threadpool execute+join (1 M), under load".into(),
    ));
    t.push(ratio(
        "W9",
        W9_PP,
        W9_TP,
        1.2,
        "W9 parpool build + apply + drop / threadpool's".into(),
    ));
    let w5pp = w5.iter().find(|r| r.name == "parpool");
    t.push(
        Target::new(
            format!("W5 `imap` peak RSS growth over {W5_ITEMS} items"),
            w5pp.map(|r| r.growth() as f64 / (1024.0 * 1024.0)),
            16.0,
            Unit::MiB,
        )
        .strict()
        .correct(w5pp.is_none_or(|r| r.items == W5_ITEMS)),
    );
    let idle = w6.iter().find(|r| r.0 == "parpool").and_then(|r| r.1);
    t.push(
        Target::new(
            "W6 process CPU during 1 s idle after work",
            idle.map(|d| d.as_secs_f64() * 1e3),
            10.0,
            Unit::Millis,
        )
        .strict(),
    );
    let p50 = |name: &str| {
        w7.iter()
            .find(|l| l.name == name)
            .map(|l| l.p50.as_secs_f64() * 1e6)
    };
    let tp = p50(workloads::TP_EXECUTE_RECV);
    t.push(Target::new(
        "W7 `apply` latency on an idle pool, p50 (limit: threadpool's p50 in this run)",
        p50(workloads::PP_APPLY).filter(|_| tp.is_some()),
        tp.unwrap_or(f64::NAN),
        Unit::Micros,
    ));
    t
}
