//! The report: every number of one run, rendered as markdown.

use crate::child::RssRun;
use crate::targets::{Target, Verdict};
use crate::workloads::{Latency, Section};
use std::fmt::Write as _;
use std::time::Duration;

/// Where the numbers came from.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub rustc: String,
    pub parpool: String,
    pub date: String,
    /// `/proc/loadavg`'s 1-minute load when the run started.
    pub load_before: String,
}

impl Machine {
    /// The 1-minute load average, as `/proc/loadavg` gives it.
    pub fn load() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "?".into())
    }

    pub fn probe(load_before: String) -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.into());
        let dir = env!("CARGO_MANIFEST_DIR");
        // The last commit that changed the library, not this branch's head.
        let commit = cmd(
            "git",
            &["-C", dir, "log", "-1", "--format=%h %s", "--", "../parpool"],
        );
        let dirty = cmd(
            "git",
            &["-C", dir, "status", "--porcelain", "--", "../parpool"],
        )
        .map(|s| !s.is_empty())
        .unwrap_or(false);
        let parpool = match (crate::pp::AVAILABLE, commit) {
            (false, _) => "not measured (placeholder build)".into(),
            (true, Some(c)) => format!("commit {c}{}", if dirty { " + local changes" } else { "" }),
            (true, None) => "unknown commit".into(),
        };
        Machine {
            cpu,
            cores: crate::workers(),
            kernel,
            rustc: cmd("rustc", &["--version"]).unwrap_or_else(|| "rustc (unknown)".into()),
            parpool,
            date: cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            load_before,
        }
    }
}

impl Machine {
    /// A short name for the machine kind, for the report's directory:
    /// `"AMD EPYC"` → `amd-epyc`, `"Intel(R) Xeon(R) Processor"` →
    /// `intel-xeon`.
    pub fn kind(&self) -> String {
        let mut words = Vec::new();
        for word in self.cpu.split_whitespace() {
            let word = word.replace("(R)", "").replace("(TM)", "").to_lowercase();
            let word: String = word.chars().filter(char::is_ascii_alphanumeric).collect();
            if word.is_empty() || matches!(word.as_str(), "processor" | "cpu") {
                continue;
            }
            if word.contains(char::is_numeric) && !words.is_empty() {
                break; // a model number: the kind is the words before it
            }
            words.push(word);
            if words.len() == 2 {
                break;
            }
        }
        if words.is_empty() {
            "unknown-cpu".into()
        } else {
            words.join("-")
        }
    }
}

fn cmd(prog: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(prog).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Every number of one run.
pub struct Report {
    pub quick: bool,
    pub machine: Machine,
    /// `spin` iterations per ~2 µs item, and the per-item time they took.
    pub iters_2us: u32,
    pub sections: Vec<Section>,
    pub w5: Vec<RssRun>,
    pub w5_consumer_ns: f64,
    pub w6: Vec<(String, Option<Duration>)>,
    pub w7: Vec<Latency>,
    pub targets: Vec<Target>,
    pub elapsed: Duration,
}

/// A duration with a unit that suits its size.
pub fn fmt_dur(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Report {
    pub fn targets_table(&self) -> String {
        let mut s = String::new();
        s.push_str("| target | measured | limit | of limit | result |\n");
        s.push_str("|---|---:|---:|---:|---|\n");
        for t in &self.targets {
            let m = t
                .measured
                .map(|v| t.fmt_value(v))
                .unwrap_or_else(|| "—".into());
            let of = t
                .of_limit()
                .map(|p| format!("{p:.0} %"))
                .unwrap_or_else(|| "—".into());
            let v = t.verdict();
            let v = if v == Verdict::Pass {
                v.to_string()
            } else {
                format!("**{v}**")
            };
            let _ = writeln!(s, "| {} | {m} | {} | {of} | {v} |", t.what, t.limit_text());
        }
        s
    }

    /// The short summary the crate README carries: machine, targets, chart.
    pub fn summary_markdown(&self, chart_link: &str, report_link: &str) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Last run: {} ({} mode, {:.0} s), {}, {} workers per pool, {}, load average {} → {}; parpool {}.\n",
            m.date,
            if self.quick { "quick" } else { "full" },
            self.elapsed.as_secs_f64(),
            m.cpu,
            m.cores,
            m.kernel,
            m.load_before,
            Machine::load(),
            m.parpool
        );
        s.push_str(&self.targets_table());
        let _ = writeln!(
            s,
            "\n![median time relative to baseline per workload]({chart_link})\n\nEvery row and number: [{report_link}]({report_link})."
        );
        s
    }

    pub fn to_markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "# parpool benchmark report\n");
        let _ = writeln!(
            s,
            "Generated by `cargo run --release -p parpool-bench --bin report{}` on {} in {:.0} s.\n",
            if self.quick { " -- --quick" } else { "" },
            m.date,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "- machine: {}, {} worker threads per pool, {}",
            m.cpu, m.cores, m.kernel
        );
        let _ = writeln!(
            s,
            "- load average (1 min) {} when the run started, {} when it ended, on {} cores",
            m.load_before,
            Machine::load(),
            m.cores
        );
        let _ = writeln!(s, "- toolchain: {}", m.rustc);
        let _ = writeln!(s, "- parpool: {}", m.parpool);
        let _ = writeln!(
            s,
            "- mode: {} (medians of interleaved rounds; the machine is shared, so trust ratios over absolute times)",
            if self.quick { "quick" } else { "full" }
        );
        let _ = writeln!(
            s,
            "- W2/W3 item: `spin` with {} iterations (calibrated to ~2 µs)\n",
            self.iters_2us
        );
        s.push_str(
            "## Targets\n\nA ratio target is the median over rounds of (row time / baseline time in the same round); \
             the workload tables below give ratios of medians.\n\n",
        );
        s.push_str(&self.targets_table());
        s.push_str("\n![time relative to rayon per workload](chart.svg)\n\n");
        for sec in &self.sections {
            let _ = writeln!(s, "## {}: {}\n", sec.id, sec.title);
            let _ = writeln!(
                s,
                "| row | median | min | vs `{}` | runs | output |",
                sec.baseline
            );
            s.push_str("|---|---:|---:|---:|---:|---|\n");
            for t in &sec.timings {
                if t.samples.is_empty() {
                    continue;
                }
                let ratio = sec
                    .ratio(&t.name, sec.baseline)
                    .map(|r| format!("{r:.2}×"))
                    .unwrap_or_else(|| "—".into());
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {ratio} | {} | {} |",
                    t.name,
                    fmt_dur(t.median()),
                    fmt_dur(t.min()),
                    t.samples.len(),
                    if t.correct { "ok" } else { "**WRONG**" }
                );
            }
            s.push('\n');
            if let Some(note) = floor_note(sec) {
                s.push_str(&note);
            }
        }
        let _ = writeln!(
            s,
            "## W5: ordered streaming over an endless input, consumer slower than the pool\n\n\
             Input `(0u64..).take(n)`; the consumer checks each item's position and then spins ~{:.0} ns on it. \
             Each row runs in a fresh child process; growth = peak RSS while streaming − RSS before.\n",
            self.w5_consumer_ns
        );
        let w1_imap = self
            .sections
            .iter()
            .find(|sec| sec.id == "W1")
            .and_then(|sec| sec.median_of(crate::workloads::names::PP_IMAP));
        if let Some(d) = w1_imap {
            let per_item = d.as_nanos() as f64 / crate::workloads::W1_ITEMS as f64;
            let _ = writeln!(
                s,
                "For scale: in W1, parpool `imap` with a consumer that does nothing delivers an item every {per_item:.0} ns, \
                 so here the consumer is the bottleneck and the pool must hold back.\n"
            );
        }
        s.push_str("| row | items | RSS before | peak RSS | growth | time |\n|---|---:|---:|---:|---:|---:|\n");
        for r in &self.w5 {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2} s |",
                r.name,
                r.items,
                mib(r.base),
                mib(r.peak),
                mib(r.growth()),
                r.secs
            );
        }
        s.push_str(
            "\n## W6: idle CPU\n\nEach pool in a fresh child process runs W2 three times, then the process sleeps; \
             the table shows the whole process's CPU time (all threads) during the 1 s after the work ended.\n\n\
             | pool | CPU during 1 s idle |\n|---|---:|\n",
        );
        for (name, d) in &self.w6 {
            let v = d.map(fmt_dur).unwrap_or_else(|| "not run".into());
            let _ = writeln!(s, "| {name} | {v} |");
        }
        s.push_str(
            "\n## W7: latency of one call on an idle pool\n\nOne call returning a value, from a thread outside the pool, \
             after a pause that lets the workers fall asleep.\n\n| call | p50 | p99 | samples |\n|---|---:|---:|---:|\n",
        );
        for l in &self.w7 {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                l.name,
                fmt_dur(l.p50),
                fmt_dur(l.p99),
                l.samples
            );
        }
        s
    }
}

/// Under W1's table: what its floor row is, and how far `imap` is above it.
fn floor_note(sec: &Section) -> Option<String> {
    use crate::workloads::names;
    let floor = sec.median_of(names::FLOOR)?;
    let imap = sec.median_of(names::PP_IMAP)?;
    Some(format!(
        "The floor row moves results that are already computed, in chunks of {} as a tiny-item \
         `imap` delivers them, from one thread into a `Vec` through `next()`, with no pool: \
         `imap` + `collect` cannot take less on this machine. Here `imap` takes {:.2}× the floor \
         (`docs/design.md` §12, \"W1 `imap`\").\n\n",
        crate::workloads::FLOOR_CHUNK,
        imap.as_secs_f64() / floor.as_secs_f64().max(1e-12),
    ))
}

#[cfg(test)]
mod tests {
    use super::Machine;

    fn kind(cpu: &str) -> String {
        Machine {
            cpu: cpu.into(),
            cores: 2,
            kernel: String::new(),
            rustc: String::new(),
            parpool: String::new(),
            date: String::new(),
            load_before: String::new(),
        }
        .kind()
    }

    #[test]
    fn machine_kinds() {
        assert_eq!(kind("AMD EPYC"), "amd-epyc");
        assert_eq!(kind("AMD EPYC 7B13 64-Core Processor"), "amd-epyc");
        assert_eq!(kind("Intel(R) Xeon(R) Processor"), "intel-xeon");
        assert_eq!(kind("Intel(R) Xeon(R) CPU @ 2.20GHz"), "intel-xeon");
        assert_eq!(kind(""), "unknown-cpu");
    }
}
