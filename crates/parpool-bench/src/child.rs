//! W5 (peak memory) and W6 (idle CPU) measure the whole process, so each
//! row runs in a fresh child process of the report binary
//! (`report --child ...`). A child prints `key=value` lines on stdout; the
//! parent parses them. A fresh process per row means no other pool's
//! threads or freed-but-kept heap pages can blur the number.

use crate::measure::{proc_status_bytes, process_cpu_time, reset_peak_rss};
use crate::peers::{self, Peers};
use crate::pp;
use crate::work::{spin, tiny};
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// What one W5 row measured.
#[derive(Clone, Debug)]
pub struct RssRun {
    pub name: String,
    pub items: u64,
    /// Resident set size just before the streaming started.
    pub base: u64,
    /// Highest RSS seen while streaming (max of the kernel's `VmHWM`, when it
    /// could be reset, and of our 2 ms sampling).
    pub peak: u64,
    pub secs: f64,
}

impl RssRun {
    pub fn growth(&self) -> u64 {
        self.peak.saturating_sub(self.base)
    }
}

/// Runs `stream` (which returns the number of items it consumed) while
/// watching the process's resident memory.
pub fn watch_rss(name: &str, stream: impl FnOnce() -> u64) -> RssRun {
    let base = proc_status_bytes("VmRSS").unwrap_or(0);
    let hwm_ok = reset_peak_rss();
    let stop = Arc::new(AtomicBool::new(false));
    let sampled = Arc::new(AtomicU64::new(base));
    let sampler = {
        let (stop, sampled) = (Arc::clone(&stop), Arc::clone(&sampled));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = proc_status_bytes("VmRSS") {
                    sampled.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let t = Instant::now();
    let items = stream();
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("rss sampler");
    let mut peak = sampled.load(Ordering::Relaxed);
    if hwm_ok {
        peak = peak.max(proc_status_bytes("VmHWM").unwrap_or(0));
    }
    RssRun {
        name: name.to_string(),
        items,
        base,
        peak,
        secs,
    }
}

/// The slow consumer: checks the item is the one expected at this
/// position, then spends `consumer_iters` of `spin` on it.
#[inline]
pub fn consume(pos: u64, v: u64, consumer_iters: u32) {
    assert_eq!(v, tiny(pos), "item {pos} out of order");
    std::hint::black_box(spin(v, consumer_iters));
}

/// W5 for the article's design: a producer submits one job per item as
/// fast as it can; the consumer reorders through a `BTreeMap`. Nothing
/// bounds how far the producer runs ahead.
fn article_stream(workers: usize, n: u64, consumer_iters: u32) -> u64 {
    let pool = threadpool::ThreadPool::new(workers);
    let (tx, rx) = mpsc::channel();
    let producer = std::thread::spawn(move || {
        for i in 0u64.. {
            if i == n {
                break;
            }
            let tx = tx.clone();
            pool.execute(move || {
                let _ = tx.send((i, tiny(i)));
            });
        }
        pool
    });
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    for (i, v) in rx {
        pending.insert(i, v);
        while let Some(v) = pending.remove(&next) {
            consume(next, v, consumer_iters);
            next += 1;
        }
    }
    producer.join().expect("producer").join();
    next
}

/// W5 for tokio: one `spawn_blocking` per item through `buffered(n)`, which
/// bounds how far the pool runs ahead of the consumer.
fn tokio_stream(workers: usize, n: u64, consumer_iters: u32) -> u64 {
    use futures::stream::{self, StreamExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(workers)
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut next = 0u64;
        let mut results = stream::iter(0u64..)
            .take(n as usize)
            .map(|i| tokio::task::spawn_blocking(move || tiny(i)))
            .buffered(workers * 2);
        while let Some(v) = results.next().await {
            consume(
                next,
                v.expect("spawn_blocking task panicked"),
                consumer_iters,
            );
            next += 1;
        }
        next
    })
}

/// W6: build the named pool, run W2's work through it three times, keep the
/// pool alive and return it.
fn w6_busy(name: &str, workers: usize, iters: u32) -> Box<dyn Any> {
    let input = Arc::new((0..crate::workloads::W2_ITEMS).collect::<Vec<u64>>());
    let f = move |x| spin(x, iters);
    match name {
        "rayon" => {
            for _ in 0..3 {
                std::hint::black_box(peers::rayon_collect(&input, f));
            }
            Box::new(())
        }
        "threadpool" | "tokio" | "poolio" => {
            let p = Peers::new(workers);
            for _ in 0..3 {
                std::hint::black_box(match name {
                    "threadpool" => peers::threadpool_execute_join(&p, &input, f),
                    "tokio" => peers::tokio_buffered(&p, &input, f),
                    _ => peers::poolio_execute(&p, &input, f),
                });
            }
            Box::new(p)
        }
        "parpool" => pp::w6_busy(workers, &input, f),
        "sequential" => {
            std::hint::black_box(peers::sequential(&input, f));
            Box::new(())
        }
        other => panic!("unknown W6 row {other}"),
    }
}

/// Entry point of `report --child <args>`.
pub fn main(args: &[String]) {
    let workers = crate::workers();
    match args {
        [w, row, n, consumer_iters] if w == "w5" => {
            let (n, ci): (u64, u32) = (
                n.parse().expect("n"),
                consumer_iters.parse().expect("iters"),
            );
            let run = match row.as_str() {
                "parpool" => match pp::w5_prepare(workers) {
                    Some(mut stream) => watch_rss(row, || stream(n, ci)),
                    None => return,
                },
                "article" => watch_rss(row, || article_stream(workers, n, ci)),
                "tokio" => watch_rss(row, || tokio_stream(workers, n, ci)),
                other => panic!("unknown W5 row {other}"),
            };
            println!("items={}", run.items);
            println!("base={}", run.base);
            println!("peak={}", run.peak);
            println!("secs={}", run.secs);
        }
        [w, row, iters] if w == "w6" => {
            let iters: u32 = iters.parse().expect("iters");
            if row == "parpool" && !pp::AVAILABLE {
                return;
            }
            let keep = w6_busy(row, workers, iters);
            let cpu0 = process_cpu_time();
            std::thread::sleep(Duration::from_secs(1));
            let idle = process_cpu_time() - cpu0;
            drop(keep);
            println!("idle_cpu_ns={}", idle.as_nanos());
        }
        [w, row, n] if w == "w4fresh" => {
            let n: u64 = n.parse().expect("n");
            let d = match row.as_str() {
                "parpool" => match pp::w4_fresh(workers, n) {
                    Some(d) => d,
                    None => return,
                },
                "threadpool" => peers::w4_fresh_threadpool(workers, n),
                other => panic!("unknown W4 fresh row {other}"),
            };
            println!("ns={}", d.as_nanos());
        }
        [w] if w == "spin" => spin_until_orphaned(),
        other => panic!("unknown child mode {other:?}"),
    }
}

/// W4 in a fresh process per run: `runs` rounds, each running parpool's and
/// threadpool's row once, each in a child process of its own (the order
/// alternates between rounds).
pub fn w4_fresh(id: &'static str, n: u64, runs: usize) -> crate::workloads::Section {
    use crate::measure::Timing;
    use crate::workloads::names::{W4_FRESH_PP, W4_FRESH_TP};
    let rows = [("threadpool", W4_FRESH_TP), ("parpool", W4_FRESH_PP)];
    let mut timings: Vec<Timing> = rows
        .iter()
        .map(|(_, name)| Timing {
            name: (*name).to_string(),
            samples: Vec::new(),
            correct: true,
        })
        .collect();
    for round in 0..runs {
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            let (row, _) = rows[i];
            let m = spawn(&["w4fresh".into(), row.into(), n.to_string()]);
            match m.and_then(|m| m.get("ns")?.parse::<u64>().ok()) {
                Some(ns) => timings[i].samples.push(Duration::from_nanos(ns)),
                None => timings[i].correct = false,
            }
        }
    }
    // A row whose child failed in some round has no pairs to report.
    for t in &mut timings {
        if t.samples.len() != runs {
            t.correct = false;
        }
    }
    crate::workloads::Section {
        id,
        title: format!("{n} tiny jobs, one timed run per fresh process"),
        baseline: W4_FRESH_TP,
        timings,
    }
}

/// A busy-looping child (W8's load): spins until killed, or until its
/// parent is gone (then it is re-parented), so no spinner outlives a report
/// that died.
fn spin_until_orphaned() {
    let parent = std::os::unix::process::parent_id();
    let mut x = 0u64;
    loop {
        for _ in 0..1_000_000 {
            x = std::hint::black_box(spin(x, 1));
        }
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

/// One busy-looping process per core, for W8; they are killed when this is
/// dropped.
pub struct Spinners(Vec<std::process::Child>);

impl Spinners {
    pub fn start(n: usize) -> Spinners {
        let exe = std::env::current_exe().expect("current_exe");
        let kids = (0..n)
            .filter_map(|_| {
                Command::new(&exe)
                    .args(["--child", "spin"])
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .map_err(|e| eprintln!("W8: could not start a spinner: {e}"))
                    .ok()
            })
            .collect();
        // Let the scheduler see them as busy before anything is timed.
        std::thread::sleep(Duration::from_millis(200));
        Spinners(kids)
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for kid in &mut self.0 {
            let _ = kid.kill();
            let _ = kid.wait();
        }
    }
}

/// Runs `report --child <args>` and parses its `key=value` output. `None`
/// if the child printed nothing (row not available) or failed.
pub fn spawn(args: &[String]) -> Option<HashMap<String, String>> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe).arg("--child").args(args).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "child {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let map: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    (!map.is_empty()).then_some(map)
}

/// W5 in a child process.
pub fn w5(row: &str, n: u64, consumer_iters: u32) -> Option<RssRun> {
    let m = spawn(&[
        "w5".into(),
        row.into(),
        n.to_string(),
        consumer_iters.to_string(),
    ])?;
    Some(RssRun {
        name: row.to_string(),
        items: m.get("items")?.parse().ok()?,
        base: m.get("base")?.parse().ok()?,
        peak: m.get("peak")?.parse().ok()?,
        secs: m.get("secs")?.parse().ok()?,
    })
}

/// W6 in a child process: CPU burned during one idle second.
pub fn w6(row: &str, iters: u32) -> Option<Duration> {
    let m = spawn(&["w6".into(), row.into(), iters.to_string()])?;
    Some(Duration::from_nanos(m.get("idle_cpu_ns")?.parse().ok()?))
}
