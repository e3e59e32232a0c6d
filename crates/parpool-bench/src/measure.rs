//! The timing harness and the process meters (CPU time, resident memory).
//!
//! Rows of one workload are timed in interleaved rounds: round `r` runs
//! every row once, starting at a different row each round, with a short
//! pause between runs so the previous pool's threads have gone quiet. A
//! burst of noise from another process then hits every row about equally,
//! which keeps the *ratios* in one run meaningful on a shared machine even
//! when the absolute times are not.

use std::time::{Duration, Instant};

/// One competitor in a workload: a name and a closure producing the output.
pub struct Row<'a> {
    pub name: String,
    /// The checksum this row's output must have (`None`: not checked, e.g.
    /// fire-and-forget rows that return nothing).
    pub expect: Option<u64>,
    /// Order-insensitive check (for `imap_unordered`).
    pub unordered: bool,
    /// A row a target is computed from (parpool's rows and their
    /// baselines): it is timed in every round, whatever the budget.
    pub key: bool,
    pub run: Box<dyn FnMut() -> Vec<u64> + 'a>,
}

impl<'a> Row<'a> {
    pub fn new(name: impl Into<String>, run: impl FnMut() -> Vec<u64> + 'a) -> Row<'a> {
        Row {
            name: name.into(),
            expect: None,
            unordered: false,
            key: false,
            run: Box::new(run),
        }
    }

    pub fn expect(mut self, sum: u64) -> Self {
        self.expect = Some(sum);
        self
    }

    pub fn key(mut self) -> Self {
        self.key = true;
        self
    }

    pub fn unordered(mut self, sum: u64) -> Self {
        self.expect = Some(sum);
        self.unordered = true;
        self
    }
}

/// The timings one row collected.
#[derive(Clone, Debug)]
pub struct Timing {
    pub name: String,
    pub samples: Vec<Duration>,
    /// `false` if the row's output did not match the sequential output.
    pub correct: bool,
}

impl Timing {
    pub fn median(&self) -> Duration {
        median(&self.samples)
    }

    pub fn min(&self) -> Duration {
        self.samples.iter().copied().min().unwrap_or_default()
    }
}

pub fn median(xs: &[Duration]) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let mut v = xs.to_vec();
    v.sort_unstable();
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2
    }
}

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Timed rounds per workload.
    pub rounds: usize,
    /// A row stops being timed once its samples add up to this (it keeps at
    /// least `min_samples`), so a very slow peer cannot eat the run. Key rows
    /// are exempt.
    pub row_budget: Duration,
    pub min_samples: usize,
    /// Pause before each timed run: long enough for the previous row's
    /// threads to stop spinning and fall asleep (so they steal no CPU from
    /// this row), short enough that the machine does not go cold. Every run
    /// so starts on an idle pool, as in a program that maps now and then.
    pub settle: Duration,
}

/// Runs every row once to warm it up and check its output, then times the
/// rows in interleaved rounds.
pub fn time_rows(rows: &mut [Row<'_>], plan: &Plan) -> Vec<Timing> {
    let mut timings: Vec<Timing> = rows
        .iter()
        .map(|r| Timing {
            name: r.name.clone(),
            samples: Vec::new(),
            correct: true,
        })
        .collect();
    for (row, timing) in rows.iter_mut().zip(&mut timings) {
        std::thread::sleep(plan.settle);
        let out = (row.run)();
        if let Some(want) = row.expect {
            let got = if row.unordered {
                let mut sorted = out.clone();
                sorted.sort_unstable();
                crate::work::checksum_unordered(&sorted)
            } else {
                crate::work::checksum(&out)
            };
            timing.correct = got == want;
            if !timing.correct {
                eprintln!("WRONG OUTPUT: row `{}`", row.name);
            }
        }
        drop(out);
    }
    let n = rows.len();
    for round in 0..plan.rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let spent: Duration = timings[i].samples.iter().sum();
            let enough = timings[i].samples.len() >= plan.min_samples;
            if !rows[i].key && enough && spent >= plan.row_budget {
                continue;
            }
            std::thread::sleep(plan.settle);
            let t = Instant::now();
            let out = (rows[i].run)();
            let d = t.elapsed();
            drop(std::hint::black_box(out));
            timings[i].samples.push(d);
        }
    }
    timings
}

/// CPU time (user + system) consumed so far by every thread of this process.
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a
    // constant the kernel knows; clock_gettime writes only into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A field of `/proc/self/status` in bytes (e.g. `VmRSS`, `VmHWM`).
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Resets the kernel's peak-RSS mark (`VmHWM`) to the current RSS. Returns
/// `false` where the kernel does not allow it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Percentile (0..=100) of a set of durations, nearest-rank.
pub fn percentile(xs: &[Duration], p: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let mut v = xs.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentile() {
        let ms = |x: u64| Duration::from_millis(x);
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(
            median(&[ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2500)
        );
        let v: Vec<_> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 50.0), ms(50));
        assert_eq!(percentile(&v, 99.0), ms(99));
        assert_eq!(percentile(&v, 100.0), ms(100));
    }

    #[test]
    fn meters_read_something() {
        assert!(process_cpu_time() > Duration::ZERO);
        assert!(proc_status_bytes("VmRSS").unwrap_or(1) > 0);
    }
}
