//! The spindle measurement: parsum (adaptive, `--jobs 1/2/8`) and its peers
//! (`xargs -P8 sha256sum`, `xargs -P8 b3sum`, `rhash -r`) on a simulated
//! spindle and a simulated flash device, in one run, rounds alternating.
//!
//! Invariant: every timed run gets a fresh mount (so no run inherits the
//! kernel's name, attribute or mmap caches, nor the head position, of the
//! one before), and a run that fails makes the whole measurement fail: a
//! time is only reported for a command that succeeded. Before any timing,
//! parsum's output on each mount is checked to equal its output on the
//! source tree.

use super::model::{Mode, Params, Served};
use super::mount::{Mounted, MAX_READ};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOpts {
    /// Rounds per command and device (the median is reported).
    pub rounds: usize,
    /// Files in the test tree.
    pub files: usize,
    /// The (release) parsum binary.
    pub parsum: PathBuf,
    /// The b3sum binary.
    pub b3sum: PathBuf,
    /// Where the test tree and the mount point go.
    pub work: PathBuf,
    /// The devices to simulate.
    pub devices: Vec<Params>,
}

/// What a command is, for the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// parsum without `--jobs`.
    Adaptive,
    /// parsum with a fixed `--jobs N`.
    Fixed,
    /// Another tool.
    Peer,
}

/// One command and its timings on one device.
#[derive(Debug, Clone)]
pub struct Row {
    /// The command's label in the tables and chart.
    pub name: String,
    pub kind: Kind,
    /// Wall time of each run, in seconds.
    pub secs: Vec<f64>,
    /// Seeks the model charged in each run.
    pub seeks: Vec<u64>,
}

impl Row {
    /// The median wall time in seconds.
    pub fn median(&self) -> f64 {
        median(&self.secs)
    }
}

/// The results on one device.
#[derive(Debug, Clone)]
pub struct DeviceResult {
    /// The device simulated.
    pub params: Params,
    /// One row per command, in the order they ran.
    pub rows: Vec<Row>,
}

impl DeviceResult {
    fn best(&self, kind: Option<Kind>) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .min_by(|a, b| a.median().total_cmp(&b.median()))
    }

    /// adaptive / best fixed parsum setting.
    pub fn adaptive_vs_best_fixed(&self) -> Option<f64> {
        let a = self.rows.iter().find(|r| r.kind == Kind::Adaptive)?;
        Some(a.median() / self.best(Some(Kind::Fixed))?.median())
    }

    /// The fastest `-P8` peer's median / adaptive parsum's.
    pub fn p8_peers_vs_adaptive(&self) -> Option<f64> {
        let a = self.rows.iter().find(|r| r.kind == Kind::Adaptive)?;
        let p = self
            .rows
            .iter()
            .filter(|r| r.kind == Kind::Peer && r.name.contains("-P8"))
            .map(Row::median)
            .min_by(f64::total_cmp)?;
        Some(p / a.median())
    }
}

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The sizes of the test tree's files: log-uniform from 4 KiB to 8 MiB,
/// deterministic for a given count.
pub fn tree_sizes(files: usize) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..files)
        .map(|_| {
            x = xorshift(x);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            // 2^12 .. 2^23 bytes.
            2f64.powf(12.0 + 11.0 * u) as u64
        })
        .collect()
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Builds (or reuses, if a previous build finished) the test tree of
/// `files` files in 8 directories under `dir`; returns its total bytes.
pub fn build_tree(dir: &Path, files: usize) -> std::io::Result<u64> {
    let sizes = tree_sizes(files);
    let total: u64 = sizes.iter().sum();
    let done = dir.join(".complete");
    let stamp = format!("{files} files, {total} bytes\n");
    if std::fs::read_to_string(&done).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(total);
    }
    let _ = std::fs::remove_dir_all(dir);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for (i, &size) in sizes.iter().enumerate() {
        let sub = dir.join(format!("d{}", i % 8));
        std::fs::create_dir_all(&sub)?;
        let mut buf = Vec::with_capacity(size as usize);
        while (buf.len() as u64) < size {
            x = xorshift(x);
            buf.extend_from_slice(&x.to_le_bytes());
        }
        buf.truncate(size as usize);
        std::fs::write(sub.join(format!("f{i:04}.bin")), &buf)?;
    }
    std::fs::write(&done, stamp)?;
    Ok(total)
}

/// The commands, run with the mount point as working directory.
fn commands(o: &BenchOpts) -> Vec<(String, Kind, Vec<String>)> {
    let ps = o.parsum.display().to_string();
    let b3 = o.b3sum.display().to_string();
    let parsum = |args: &[&str]| {
        let mut v = vec![ps.clone(), "--no-progress".into()];
        v.extend(args.iter().map(|s| s.to_string()));
        v.push(".".into());
        v
    };
    let sh = |s: String| vec!["sh".into(), "-c".into(), s];
    vec![
        ("parsum (adaptive)".into(), Kind::Adaptive, parsum(&[])),
        (
            "parsum --jobs 1".into(),
            Kind::Fixed,
            parsum(&["--jobs", "1"]),
        ),
        (
            "parsum --jobs 2".into(),
            Kind::Fixed,
            parsum(&["--jobs", "2"]),
        ),
        (
            "parsum --jobs 8".into(),
            Kind::Fixed,
            parsum(&["--jobs", "8"]),
        ),
        (
            "xargs -P8 sha256sum".into(),
            Kind::Peer,
            sh("find . -type f ! -name .complete -print0 | xargs -0 -P8 -n16 sha256sum".into()),
        ),
        (
            "xargs -P8 b3sum".into(),
            Kind::Peer,
            sh(format!(
                "find . -type f ! -name .complete -print0 | xargs -0 -P8 -n16 '{b3}'"
            )),
        ),
        (
            "rhash -r --sha256".into(),
            Kind::Peer,
            vec!["rhash".into(), "-r".into(), "--sha256".into(), ".".into()],
        ),
    ]
}

/// Runs `argv` in `dir`; returns its stdout, or an error with its stderr.
fn run(dir: &Path, argv: &[String]) -> Result<Vec<u8>, String> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            argv,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// Runs the measurement; `progress` gets one line per timed run.
pub fn measure(
    o: &BenchOpts,
    mut progress: impl FnMut(&str),
) -> Result<(u64, Vec<DeviceResult>), String> {
    let tree = o.work.join("tree");
    let mnt = o.work.join("mnt");
    std::fs::create_dir_all(&mnt).map_err(|e| format!("{}: {e}", mnt.display()))?;
    let total = build_tree(&tree, o.files).map_err(|e| format!("{}: {e}", tree.display()))?;
    let cmds = commands(o);
    for c in &cmds {
        if let Err(e) = Command::new(&c.2[0]).arg("--version").output() {
            return Err(format!("{}: {e} (install it or pass its path)", c.2[0]));
        }
    }
    // parsum on the mount must say exactly what it says on the source.
    let direct = run(&tree, &cmds[0].2)?;
    for p in &o.devices {
        let m = Mounted::mount(&tree, &mnt, *p)?;
        let via = run(&mnt, &cmds[0].2);
        m.unmount()?;
        if via? != direct {
            return Err(format!(
                "{}: parsum's output differs from the source tree's",
                p.mode
            ));
        }
    }
    let mut results: Vec<DeviceResult> = o
        .devices
        .iter()
        .map(|p| DeviceResult {
            params: *p,
            rows: cmds
                .iter()
                .map(|(name, kind, _)| Row {
                    name: name.clone(),
                    kind: *kind,
                    secs: Vec::new(),
                    seeks: Vec::new(),
                })
                .collect(),
        })
        .collect();
    for round in 0..o.rounds {
        for dev in results.iter_mut() {
            for (row, (_, _, argv)) in dev.rows.iter_mut().zip(&cmds) {
                let m = Mounted::mount(&tree, &mnt, dev.params)?;
                let start = Instant::now();
                let r = run(&mnt, argv);
                let secs = start.elapsed().as_secs_f64();
                let served: Served = m.served();
                m.unmount()?;
                r?;
                progress(&format!(
                    "round {}/{} {}: {:<22} {secs:7.2} s ({} reads, {} seeks)",
                    round + 1,
                    o.rounds,
                    dev.params.mode,
                    row.name,
                    served.reads,
                    served.seeks
                ));
                row.secs.push(secs);
                row.seeks.push(served.seeks);
            }
        }
    }
    Ok((total, results))
}

/// The markdown tables and target checks for `results`.
pub fn tables(results: &[DeviceResult]) -> String {
    let mut s = String::new();
    for dev in results {
        let best = dev.best(None).map_or(f64::NAN, Row::median);
        s += &format!("### {}\n\n", dev.params.describe());
        s += "| command | median (s) | min (s) | max (s) | / best | seeks (median) |\n";
        s += "|---|---:|---:|---:|---:|---:|\n";
        for r in &dev.rows {
            let min = r.secs.iter().copied().fold(f64::INFINITY, f64::min);
            let max = r.secs.iter().copied().fold(0.0, f64::max);
            let seeks = median(&r.seeks.iter().map(|&x| x as f64).collect::<Vec<_>>());
            s += &format!(
                "| `{}` | {:.2} | {min:.2} | {max:.2} | {:.2} | {seeks:.0} |\n",
                r.name,
                r.median(),
                r.median() / best
            );
        }
        s += "\n";
        if let Some(r) = dev.adaptive_vs_best_fixed() {
            s += &format!(
                "- adaptive / best fixed `--jobs`: **{r:.2}** (target ≤ 1.15: {})\n",
                verdict(r <= 1.15)
            );
        }
        if dev.params.mode == Mode::Spindle {
            if let Some(r) = dev.p8_peers_vs_adaptive() {
                s += &format!(
                    "- fastest `-P8` peer / adaptive: **{r:.2}** (target ≥ 2: {})\n",
                    verdict(r >= 2.0)
                );
            }
        }
        s += "\n";
    }
    s
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// The chart: each device a group, each command's median / the device's best.
pub fn chart(path: &Path, results: &[DeviceResult]) -> Result<(), String> {
    let groups: Vec<(String, Vec<(String, f64)>)> = results
        .iter()
        .map(|dev| {
            let best = dev.best(None).map_or(f64::NAN, Row::median);
            let bars = dev
                .rows
                .iter()
                .map(|r| (r.name.clone(), r.median() / best))
                .collect();
            (dev.params.describe(), bars)
        })
        .collect();
    crate::chart::bars(
        path,
        "parsum on a simulated spindle and flash device: median time / fastest (log scale)",
        "time / fastest",
        &groups,
        &|name| name.starts_with("parsum"),
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// The report's header: machine, load, tree and model.
pub fn header(o: &BenchOpts, total: u64, load_start: &str) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut s = format!(
        "{} cores, Linux {}, load average at start: {}.\n\
         Tree: {} files in 8 directories, 4 KiB to 8 MiB (log-uniform), {:.0} MB in total, \
         served from the page cache through the model.\n\
         FUSE: direct_io, max_read {} KiB, a fresh mount per run. {} rounds, alternating.\n",
        crate::workers(),
        kernel.trim(),
        load_start,
        o.files,
        total as f64 / 1e6,
        MAX_READ / 1024,
        o.rounds
    );
    for p in &o.devices {
        s += &format!("Model: {}.\n", p.describe());
    }
    s
}

/// The first three fields of /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn tree_sizes_span_the_range_deterministically() {
        let s = tree_sizes(240);
        assert_eq!(s, tree_sizes(240));
        assert!(s.iter().all(|&b| (4096..=8 << 20).contains(&b)));
        assert!(*s.iter().min().unwrap() < 16 << 10);
        assert!(*s.iter().max().unwrap() > 4 << 20);
    }

    fn row(name: &str, kind: Kind, t: f64) -> Row {
        Row {
            name: name.into(),
            kind,
            secs: vec![t, t + 1.0, t - 1.0],
            seeks: vec![0; 3],
        }
    }

    #[test]
    fn ratios_pick_the_right_rows() {
        let d = DeviceResult {
            params: Params::new(Mode::Spindle),
            rows: vec![
                row("parsum (adaptive)", Kind::Adaptive, 11.0),
                row("parsum --jobs 1", Kind::Fixed, 10.0),
                row("parsum --jobs 8", Kind::Fixed, 30.0),
                row("xargs -P8 sha256sum", Kind::Peer, 44.0),
                row("xargs -P8 b3sum", Kind::Peer, 33.0),
                row("rhash -r --sha256", Kind::Peer, 5.0),
            ],
        };
        assert!((d.adaptive_vs_best_fixed().unwrap() - 1.1).abs() < 1e-9);
        assert!((d.p8_peers_vs_adaptive().unwrap() - 3.0).abs() < 1e-9);
        let t = tables(&[d]);
        assert!(t.contains("**1.10** (target ≤ 1.15: met)"), "{t}");
        assert!(t.contains("**3.00** (target ≥ 2: met)"), "{t}");
    }
}
