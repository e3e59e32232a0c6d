//! parpool-bench: measures parpool against its peers on the workloads of
//! issue 3 and checks the targets set there.
//!
//! The `report` binary is the entry point; this library holds the pieces:
//! the workload bodies ([`work`]), the peers ([`peers`]) and parpool's rows
//! ([`pp`]), the timing harness and process meters ([`measure`]), the
//! child-process workloads ([`child`]), the targets ([`targets`]) and the
//! output ([`report`], [`chart`]).

pub mod chart;
pub mod child;
pub mod measure;
pub mod peers;
pub mod pp;
pub mod python;
pub mod report;
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
    fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w.eq_ignore_ascii_case(id))
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
    let ctx = Ctx {
        peers: peers::Peers::new(workers),
        pool: pp::Pool::new(workers),
        plan,
        iters_2us,
    };

    let mut sections: Vec<Section> = Vec::new();
    type Workload = fn(&Ctx) -> Section;
    let list: [(&str, Workload); 4] = [
        ("W1", workloads::w1),
        ("W2", workloads::w2),
        ("W3", workloads::w3),
        ("W4", workloads::w4),
    ];
    for (id, w) in list {
        if opts.wants(id) {
            eprintln!("{id} ...");
            let mut sec = w(&ctx);
            if id == "W1" {
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
    let mut t = vec![
        ratio(
            "W1",
            PP_MAP,
            RAYON,
            1.5,
            "W1 `map` (slice) / rayon par_iter collect".into(),
        ),
        ratio(
            "W1",
            PP_IMAP,
            RAYON_RANGE,
            3.0,
            "W1 `imap` (range) / rayon collect (range)".into(),
        ),
        ratio(
            "W1",
            PP_IMAP_UNORDERED,
            RAYON_RANGE,
            3.0,
            "W1 `imap_unordered` (range) / rayon collect (range)".into(),
        ),
        ratio(
            "W2",
            PP_MAP,
            RAYON,
            1.10,
            "W2 `map` (slice) / rayon par_iter collect".into(),
        ),
        ratio(
            "W2",
            PP_IMAP,
            RAYON_RANGE,
            1.15,
            "W2 `imap` (range) / rayon collect (range)".into(),
        ),
        ratio(
            "W3",
            PP_MAP,
            RAYON,
            1.15,
            "W3 `map` (slice) / rayon par_iter collect".into(),
        ),
        ratio(
            "W3",
            PP_IMAP,
            RAYON_RANGE,
            1.25,
            "W3 `imap` (range) / rayon collect (range)".into(),
        ),
        ratio(
            "W4",
            W4_PP,
            W4_TP,
            2.0,
            "W4 `apply_async`+`get` / threadpool execute+join".into(),
        ),
    ];
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
    let apply = w7.iter().find(|l| l.name == workloads::PP_APPLY);
    t.push(Target::new(
        "W7 `apply` latency on an idle pool, p50",
        apply.map(|l| l.p50.as_secs_f64() * 1e6),
        50.0,
        Unit::Micros,
    ));
    t
}
