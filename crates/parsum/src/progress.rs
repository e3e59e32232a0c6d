//! What people see on stderr: the progress bar, messages, and the summary.
//!
//! The bar is drawn only when stderr is a terminal and `--no-progress` was
//! not given. Every stderr message goes through [`message`], which hides the
//! bar while printing so lines never interleave with it. Stdout carries
//! only results.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
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

/// Writes `bytes` to stdout. When a bar is drawn it is hidden meanwhile, so
/// results printed to the same terminal never mix with it.
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let write = || {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).and_then(|_| out.flush())
    };
    static STDOUT_IS_TTY: OnceLock<bool> = OnceLock::new();
    if !*STDOUT_IS_TTY.get_or_init(|| std::io::stdout().is_terminal()) {
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
}

/// The progress bar, if one is drawn.
pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(125));
            *bar_slot().lock().unwrap() = Some(bar.clone());
            bar
        });
        Progress {
            bar,
            start: Instant::now(),
        }
    }

    /// Updates the bar after a file is done.
    pub fn update(&self, files_done: u64, bytes_done: u64, counters: &Counters) {
        if let Some(bar) = &self.bar {
            let found = counters.found_files.load(Ordering::Relaxed);
            bar.set_length(counters.found_bytes.load(Ordering::Relaxed).max(bytes_done));
            bar.set_position(bytes_done);
            if files_done.is_multiple_of(64) || files_done == found {
                bar.set_message(format!("{files_done}/{found} files"));
            }
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            *bar_slot().lock().unwrap() = None;
        }
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
