//! What people see on stderr: the progress bar, messages, and the summary.
//!
//! The bar is drawn only when stderr is a terminal and `--no-progress` was
//! not given. Every stderr message goes through [`message`], which hides the
//! bar while printing so lines never interleave with it. Stdout carries
//! only results.
//!
//! On slow disks the bar also says what it waits for: each disk group that
//! moved data in the last [`RATE_WINDOW`] at less than a fast device's rate
//! is shown with its throughput and its current readers
//! (`loop0 48.2 MiB/s, 1 reader`). A group's bytes are counted as they are
//! read ([`DiskMeter`], one atomic add per 256 KiB read), so a large file
//! on a slow disk shows its rate while it is read, and sampling costs one
//! atomic load per group.
//!
//! The same meters move the bar's byte count while a file is read: the
//! bar's ticker (8 times a second, only while a bar is drawn) sets it to
//! the larger of the bytes of files done (what the mode's output counted)
//! and the bytes the meters counted, less those of files that failed
//! ([`DiskMeter::forget`]). A file read to its end counts its size once in
//! each, so nothing is counted twice; a file that failed mid-read counts
//! in neither once it failed. Hashing pays nothing more for it: the meters'
//! one add per read was there already.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn bar_slot() -> &'static Mutex<Option<ProgressBar>> {
    BAR.get_or_init(|| Mutex::new(None))
}

/// Prints one line on stderr without breaking the progress bar.
pub fn message(line: &str) {
    let slot = bar_slot().lock().unwrap_or_else(|e| e.into_inner());
    match slot.as_ref() {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => {
            // One write per line: stderr is unbuffered, and processes that
            // share it (MPI ranks) must not split each other's lines.
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Clears the bar, if one is drawn, for good: on SIGINT (Ctrl-C), SIGTERM,
/// SIGHUP or SIGQUIT, before the process dies of it (`interrupt.rs`). Under the lock [`message`] takes, so no
/// line is cut; a finished bar is not drawn again, and messages after it
/// are plain lines.
pub(crate) fn clear_bar() {
    let mut slot = bar_slot().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bar) = slot.take() {
        bar.finish_and_clear();
    }
}

/// Writes `bytes` to stdout. When a bar is drawn it is hidden meanwhile, so
/// results printed to the same terminal never mix with it.
/// A stdout closed at start (`parsum >&-`) fails with EBADF, as it would
/// without the runtime's /dev/null (see `stdio.rs`).
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    if crate::stdio::closed_at_start(1) {
        return Err(crate::stdio::closed_error());
    }
    let write = || {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).and_then(|_| out.flush())
    };
    static STDOUT_IS_TTY: OnceLock<bool> = OnceLock::new();
    write_to_terminal(
        *STDOUT_IS_TTY.get_or_init(|| std::io::stdout().is_terminal()),
        write,
    )
}

/// Runs `write`, a write of results; when they go to a terminal
/// (`terminal`), with the bar hidden meanwhile, as [`message`] hides it:
/// the one rule for every output on a terminal, standard output and `-o`
/// alike (`-o /dev/stderr`, `-o /dev/tty`: likely the very terminal the bar
/// is drawn on). Another terminal's output costs a redraw of the bar.
pub fn write_to_terminal(
    terminal: bool,
    write: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    if !terminal {
        return write();
    }
    let slot = bar_slot().lock().unwrap_or_else(|e| e.into_inner());
    match slot.as_ref() {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Counters shared by the walk (discovered) and the output (done).
#[derive(Default)]
pub struct Counters {
    pub found_files: AtomicU64,
    pub found_bytes: AtomicU64,
    /// One meter per disk group, in the order the groups were met.
    disks: Mutex<Vec<Arc<DiskMeter>>>,
}

impl Counters {
    /// Registers a disk group's meter.
    pub fn add_disk(&self, meter: Arc<DiskMeter>) {
        self.disks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(meter);
    }

    /// The disk groups' meters so far.
    pub fn disks(&self) -> Vec<Arc<DiskMeter>> {
        self.disks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Bytes read so far of files read to their end or still being read
    /// (not of files that failed): the sum of [`DiskMeter::kept`].
    pub fn bytes_read(&self) -> u64 {
        self.disks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|m| m.kept())
            .sum()
    }
}

/// One disk group's bytes read so far and its current readers.
pub struct DiskMeter {
    pub name: String,
    bytes: AtomicU64,
    /// Of `bytes`, those of files that failed: not progress.
    forgotten: AtomicU64,
    readers: AtomicUsize,
}

impl DiskMeter {
    pub fn new(name: String, readers: usize) -> DiskMeter {
        DiskMeter {
            name,
            bytes: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
            readers: AtomicUsize::new(readers),
        }
    }

    /// Counts `bytes` read.
    pub fn add(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes `bytes` already counted, of a file that failed, out of the
    /// progress ([`DiskMeter::kept`]); the rate still counts them, they
    /// were read.
    pub fn forget(&self, bytes: u64) {
        self.forgotten.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes counted, less those forgotten.
    pub fn kept(&self) -> u64 {
        // The two loads are no one snapshot: never below zero.
        let forgotten = self.forgotten.load(Ordering::Relaxed);
        self.bytes.load(Ordering::Relaxed).saturating_sub(forgotten)
    }

    /// The readers the gate allows now.
    pub fn set_readers(&self, readers: usize) {
        self.readers.store(readers, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }
}

/// How often (and over how long) the bar samples the disk groups' rates.
pub const RATE_WINDOW: Duration = Duration::from_secs(2);

/// A disk group's rate over the last window.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskRate<'a> {
    pub name: &'a str,
    /// Bytes per second.
    pub rate: f64,
    pub readers: usize,
}

/// The bar's text for the disk groups: those that moved data at less than
/// a fast device's rate ([`crate::device::NOT_A_DISK`]), at most four, then
/// how many more. Empty when there are none, so fast runs look as before.
pub fn disk_status(rates: &[DiskRate]) -> String {
    const SHOWN: usize = 4;
    let slow: Vec<&DiskRate> = rates
        .iter()
        .filter(|r| r.rate > 0.0 && r.rate < crate::device::NOT_A_DISK)
        .collect();
    let mut parts: Vec<String> = slow
        .iter()
        .take(SHOWN)
        .map(|r| {
            let s = if r.readers == 1 { "" } else { "s" };
            format!(
                "{} {}/s, {} reader{s}",
                r.name,
                human_bytes(r.rate),
                r.readers
            )
        })
        .collect();
    if slow.len() > SHOWN {
        parts.push(format!("+{} more", slow.len() - SHOWN));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" | {}", parts.join(" | "))
    }
}

/// The bar's last sample of the disk groups.
struct Sampler {
    at: Instant,
    /// Bytes per meter at `at`, by position in [`Counters::disks`].
    bytes: Vec<u64>,
    status: String,
}

impl Sampler {
    /// Samples again if the window has passed; returns whether it did.
    fn sample(&mut self, counters: &Counters) -> bool {
        let dt = self.at.elapsed();
        if dt < RATE_WINDOW {
            return false;
        }
        let meters = counters.disks();
        let now: Vec<u64> = meters.iter().map(|m| m.bytes()).collect();
        let rates: Vec<DiskRate> = meters
            .iter()
            .zip(&now)
            .enumerate()
            .map(|(i, (m, &b))| DiskRate {
                name: &m.name,
                rate: b.saturating_sub(self.bytes.get(i).copied().unwrap_or(0)) as f64
                    / dt.as_secs_f64(),
                readers: m.readers(),
            })
            .collect();
        self.status = disk_status(&rates);
        self.bytes = now;
        self.at = Instant::now();
        true
    }
}

/// The bar's disk group text, sampled when the bar is drawn: the bar's
/// steady tick draws it 8 times a second, also while no file finishes (a
/// large file on a slow disk, the very case the text is for).
pub struct DiskStatus {
    counters: Arc<Counters>,
    sampler: Mutex<Sampler>,
}

impl DiskStatus {
    pub fn new(counters: Arc<Counters>) -> DiskStatus {
        DiskStatus {
            counters,
            sampler: Mutex::new(Sampler {
                at: Instant::now(),
                bytes: Vec::new(),
                status: String::new(),
            }),
        }
    }

    /// The text now (sampled again if the window has passed).
    pub fn text(&self) -> String {
        let mut sampler = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        sampler.sample(&self.counters);
        sampler.status.clone()
    }
}

/// How often the ticker moves the bar's byte count.
const TICK: Duration = Duration::from_millis(125);

/// The progress bar, if one is drawn.
pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    /// Bytes of files done, as the mode's output last said.
    done: Arc<AtomicU64>,
    /// The ticker thread and its stop flag, while a bar is drawn.
    ticker: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

/// Sets the bar to the larger of the bytes done and the bytes read, and its
/// length to the bytes found (or more, if more were read).
fn set_bytes(bar: &ProgressBar, done: u64, counters: &Counters) {
    let pos = done.max(counters.bytes_read());
    bar.set_length(counters.found_bytes.load(Ordering::Relaxed).max(pos));
    bar.set_position(pos);
}

impl Progress {
    pub fn new(enabled: bool, counters: Arc<Counters>) -> Progress {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
            let status = Arc::new(DiskStatus::new(Arc::clone(&counters)));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg}{disks} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .with_key(
                    "disks",
                    move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&status.text());
                    },
                ),
            );
            bar.enable_steady_tick(TICK);
            *bar_slot().lock().unwrap() = Some(bar.clone());
            crate::interrupt::clear_bar_on_signals();
            bar
        });
        let done = Arc::new(AtomicU64::new(0));
        // The ticker moves the byte count while files are read, also when
        // none finishes (one large file).
        let ticker = bar.as_ref().map(|bar| {
            let stop = Arc::new(AtomicBool::new(false));
            let (bar, done, stop2) = (bar.clone(), Arc::clone(&done), Arc::clone(&stop));
            let handle = std::thread::Builder::new()
                .name("parsum-progress".into())
                .spawn(move || {
                    while !stop2.load(Ordering::Relaxed) {
                        set_bytes(&bar, done.load(Ordering::Relaxed), &counters);
                        std::thread::park_timeout(TICK);
                    }
                })
                .expect("spawn progress thread");
            (stop, handle)
        });
        Progress {
            bar,
            start: Instant::now(),
            done,
            ticker: Mutex::new(ticker),
        }
    }

    /// Updates the bar after a file is done.
    pub fn update(&self, files_done: u64, bytes_done: u64, counters: &Counters) {
        if let Some(bar) = &self.bar {
            let found = counters.found_files.load(Ordering::Relaxed);
            // The ticker adds the bytes being read; per file only what
            // is cheap (no walk over the meters).
            self.done.store(bytes_done, Ordering::Relaxed);
            let pos = bar.position().max(bytes_done);
            bar.set_length(counters.found_bytes.load(Ordering::Relaxed).max(pos));
            bar.set_position(pos);
            if files_done.is_multiple_of(64) || files_done == found {
                bar.set_message(format!("{files_done}/{found} files"));
            }
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Stops the ticker, if any; the bar stays as it is.
    fn stop_ticker(&self) {
        let ticker = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, handle)) = ticker {
            stop.store(true, Ordering::Relaxed);
            handle.thread().unpark();
            let _ = handle.join();
        }
    }

    pub fn finish(&self) {
        self.stop_ticker();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            *bar_slot().lock().unwrap() = None;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

/// Formats a byte count for people: `78.1 MiB`.
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[0])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_status_shows_slow_groups_only() {
        let r = |name, mib: f64, readers| DiskRate {
            name,
            rate: mib * 1024.0 * 1024.0,
            readers,
        };
        assert_eq!(disk_status(&[]), "");
        // A cache-fast group and an idle one are not shown.
        assert_eq!(disk_status(&[r("vda", 900.0, 2), r("sdb", 0.0, 1)]), "");
        assert_eq!(
            disk_status(&[
                r("vda", 900.0, 2),
                r("loop0", 48.25, 1),
                r("sda+sdb", 120.0, 2)
            ]),
            " | loop0 48.2 MiB/s, 1 reader | sda+sdb 120.0 MiB/s, 2 readers"
        );
        let many: Vec<DiskRate> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|n| r(n, 10.0, 1))
            .collect();
        let s = disk_status(&many);
        assert!(
            s.starts_with(" | a 10.0 MiB/s") && s.ends_with(" | d 10.0 MiB/s, 1 reader | +2 more"),
            "{s}"
        );
    }

    #[test]
    fn sampler_measures_each_meter_over_the_window() {
        let c = Counters::default();
        let m = Arc::new(DiskMeter::new("loop0".into(), 1));
        c.add_disk(Arc::clone(&m));
        let mut s = Sampler {
            at: Instant::now() - RATE_WINDOW,
            bytes: Vec::new(),
            status: String::new(),
        };
        // 20 MiB in one 2 s window: 10 MiB/s, with the readers last seen.
        m.add(20 << 20);
        m.set_readers(3);
        assert!(s.sample(&c));
        assert!(s.status.starts_with(" | loop0 "), "{}", s.status);
        assert!(s.status.ends_with(", 3 readers"), "{}", s.status);
        let rate: f64 = s.status[" | loop0 ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rate > 5.0 && rate <= 10.0, "{}", s.status);
        // Not again before the window has passed; then idle: nothing shown.
        assert!(!s.sample(&c));
        s.at = Instant::now() - RATE_WINDOW;
        assert!(s.sample(&c));
        assert_eq!(s.status, "");
    }

    /// The disk text is sampled when asked for (each draw of the bar), not
    /// only when a file is done: while one large file is read for minutes,
    /// no file is done, and the text stayed as it was before it.
    #[test]
    fn disk_status_samples_without_a_file_done() {
        let c = Arc::new(Counters::default());
        let m = Arc::new(DiskMeter::new("sda".into(), 1));
        c.add_disk(Arc::clone(&m));
        let status = DiskStatus::new(Arc::clone(&c));
        assert_eq!(status.text(), "");
        // Bytes of a file still being read, a window later.
        m.add(20 << 20);
        status.sampler.lock().unwrap().at = Instant::now() - RATE_WINDOW;
        let t = status.text();
        assert!(t.starts_with(" | sda ") && t.ends_with(", 1 reader"), "{t}");
    }

    /// The bar's bytes move with the meters while a file is read, end at
    /// the bytes done (a file read to its end counts once), and drop the
    /// bytes of a file that failed mid-read.
    #[test]
    fn bar_bytes_follow_reads_without_counting_twice() {
        let c = Counters::default();
        c.found_bytes.store(100, Ordering::Relaxed);
        let (a, b) = (
            Arc::new(DiskMeter::new("a".into(), 1)),
            Arc::new(DiskMeter::new("b".into(), 1)),
        );
        c.add_disk(Arc::clone(&a));
        c.add_disk(Arc::clone(&b));
        let bar = ProgressBar::hidden();
        set_bytes(&bar, 0, &c);
        assert_eq!((bar.position(), bar.length()), (0, Some(100)));
        // 30 bytes of a 60-byte file on a, 10 of a 40-byte file on b.
        a.add(30);
        b.add(10);
        set_bytes(&bar, 0, &c);
        assert_eq!(bar.position(), 40);
        // b's file fails: its 10 bytes are no progress (the rate keeps them).
        b.forget(10);
        assert_eq!((b.kept(), b.bytes()), (0, 10));
        set_bytes(&bar, 0, &c);
        assert_eq!(bar.position(), 30);
        // a's file is read to its end and done: 60, not 120.
        a.add(30);
        set_bytes(&bar, 60, &c);
        assert_eq!((bar.position(), bar.length()), (60, Some(100)));
        // Bytes done that no meter saw (stdin) count too.
        set_bytes(&bar, 65, &c);
        assert_eq!(bar.position(), 65);
    }

    /// Without a bar there is no ticker thread.
    #[test]
    fn no_bar_no_ticker() {
        let p = Progress::new(false, Arc::new(Counters::default()));
        assert!(p.ticker.lock().unwrap().is_none());
        p.update(1, 10, &Counters::default());
        p.finish();
    }

    #[test]
    fn human() {
        assert_eq!(super::human_bytes(10.0), "10 B");
        assert_eq!(super::human_bytes(1536.0), "1.5 KiB");
        assert_eq!(
            super::human_bytes(3.0 * 1024.0 * 1024.0 * 1024.0),
            "3.0 GiB"
        );
    }
}
