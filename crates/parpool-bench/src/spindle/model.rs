//! The timing model of a simulated device: what a read costs, and how many
//! reads may be in flight at once.
//!
//! Two kinds of device:
//!
//! - a **spindle** has one head. Reads are served one at a time (the head is
//!   a mutex held for the whole read). A read that does not start where the
//!   previous read ended (same file, same offset) first pays a seek; then
//!   the bytes transfer at the configured rate.
//! - **flash** has `channels` independent channels (a counting semaphore).
//!   A read takes one channel for its transfer time; there is no seek.
//!
//! Invariant: a read returns no sooner than its modelled cost after it got
//! the head (or a channel), and the head is held until then, so the model's
//! time for a sequence of reads is the sum of their costs on a spindle and
//! at least that sum divided by `channels` on flash. The real bytes are
//! read while the head is held; their time counts toward the cost, never on
//! top of it (the source tree is expected to be in the page cache).
//!
//! Time goes through a [`Clock`], so tests can check the arithmetic on a
//! fake clock without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Which device the model simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One head, seeks cost time.
    Spindle,
    /// Parallel channels, no seeks.
    Flash,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "spindle" => Ok(Mode::Spindle),
            "flash" => Ok(Mode::Flash),
            _ => Err(format!("unknown mode '{s}': expected 'spindle' or 'flash'")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Spindle => "spindle",
            Mode::Flash => "flash",
        })
    }
}

/// The model's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Spindle or flash.
    pub mode: Mode,
    /// What a non-sequential read costs before its transfer (spindle only).
    pub seek: Duration,
    /// Transfer rate of the head, or of each flash channel, in bytes per second.
    pub bytes_per_sec: f64,
    /// Reads in flight at once (flash only; a spindle has one head).
    pub channels: usize,
}

impl Params {
    /// The defaults of `mode`: 8 ms seek, 150 MB/s, 4 channels.
    pub fn new(mode: Mode) -> Params {
        Params {
            mode,
            seek: Duration::from_millis(8),
            bytes_per_sec: 150e6,
            channels: 4,
        }
    }

    /// How long `bytes` take to transfer (at most a day: a rate near zero
    /// must not overflow the clock).
    pub fn transfer(&self, bytes: u64) -> Duration {
        const DAY: Duration = Duration::from_secs(86_400);
        Duration::try_from_secs_f64(bytes as f64 / self.bytes_per_sec).map_or(DAY, |d| d.min(DAY))
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        match self.mode {
            Mode::Spindle => format!(
                "spindle: one head, {} ms per seek, {:.0} MB/s",
                self.seek.as_secs_f64() * 1e3,
                self.bytes_per_sec / 1e6
            ),
            Mode::Flash => format!(
                "flash: {} channels of {:.0} MB/s each, no seek",
                self.channels,
                self.bytes_per_sec / 1e6
            ),
        }
    }
}

/// Where the model's time comes from.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Instant;
    /// Returns at or after `t`.
    fn sleep_until(&self, t: Instant);
}

/// The real clock.
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep_until(&self, t: Instant) {
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    }
}

/// Counters of what the model served.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Read requests served.
    pub reads: u64,
    /// Of those, the ones that paid a seek.
    pub seeks: u64,
    /// Bytes returned.
    pub bytes: u64,
}

/// Where the head is: the file and offset the last read ended at.
#[derive(Debug, Default)]
struct Head {
    at: Option<(u64, u64)>,
}

impl Head {
    /// The cost of reading `len` bytes of `file` at `offset`, and whether
    /// it seeks; moves the head to the read's end.
    fn cost(&mut self, p: &Params, file: u64, offset: u64, len: u64) -> (Duration, bool) {
        let seek = self.at != Some((file, offset));
        self.at = Some((file, offset + len));
        let t = p.transfer(len);
        if seek {
            (p.seek + t, true)
        } else {
            (t, false)
        }
    }
}

/// The simulated device: serves reads at the modelled speed.
pub struct Model<C: Clock = RealClock> {
    params: Params,
    clock: C,
    /// Spindle: the single head, held for a whole read.
    head: Mutex<Head>,
    /// Flash: channels free.
    free: Mutex<usize>,
    freed: Condvar,
    reads: AtomicU64,
    seeks: AtomicU64,
    bytes: AtomicU64,
}

impl Model<RealClock> {
    /// A model on the real clock.
    pub fn new(params: Params) -> Model<RealClock> {
        Model::with_clock(params, RealClock)
    }
}

impl<C: Clock> Model<C> {
    /// A model on `clock`.
    pub fn with_clock(params: Params, clock: C) -> Model<C> {
        Model {
            free: Mutex::new(params.channels.max(1)),
            params,
            clock,
            head: Mutex::new(Head::default()),
            freed: Condvar::new(),
            reads: AtomicU64::new(0),
            seeks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// The model's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// What the model has served so far.
    pub fn served(&self) -> Served {
        Served {
            reads: self.reads.load(Ordering::Relaxed),
            seeks: self.seeks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Serves one read of `file` (any stable id, e.g. its inode) at
    /// `offset`: `read` fetches the bytes and returns them with their count;
    /// the call returns once the model says the read is done.
    pub fn serve<R>(&self, file: u64, offset: u64, read: impl FnOnce() -> (R, u64)) -> R {
        match self.params.mode {
            Mode::Spindle => {
                // NOTE: the head stays locked across the sleep: that is the
                // model (one read at a time), not an accident.
                let mut head = self.head.lock().unwrap_or_else(|e| e.into_inner());
                let start = self.clock.now();
                let (r, n) = read();
                let (cost, seek) = head.cost(&self.params, file, offset, n);
                self.count(n, seek);
                self.clock.sleep_until(start + cost);
                r
            }
            Mode::Flash => {
                {
                    let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
                    while *free == 0 {
                        free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
                    }
                    *free -= 1;
                }
                // Gives the channel back even if `read` panics.
                struct Channel<'a>(&'a Mutex<usize>, &'a Condvar);
                impl Drop for Channel<'_> {
                    fn drop(&mut self) {
                        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                        self.1.notify_one();
                    }
                }
                let _channel = Channel(&self.free, &self.freed);
                let start = self.clock.now();
                let (r, n) = read();
                self.count(n, false);
                self.clock.sleep_until(start + self.params.transfer(n));
                r
            }
        }
    }

    fn count(&self, n: u64, seek: bool) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(n, Ordering::Relaxed);
        if seek {
            self.seeks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A clock that only moves when someone sleeps on it.
    struct FakeClock(Mutex<Instant>);

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
        fn sleep_until(&self, t: Instant) {
            let mut now = self.0.lock().unwrap();
            *now = (*now).max(t);
        }
    }

    fn fake(mode: Mode) -> (Model<FakeClock>, Instant) {
        let t0 = Instant::now();
        let p = Params {
            mode,
            seek: Duration::from_millis(8),
            bytes_per_sec: 100e6,
            channels: 4,
        };
        (Model::with_clock(p, FakeClock(Mutex::new(t0))), t0)
    }

    fn read(m: &Model<FakeClock>, file: u64, offset: u64, len: u64) {
        m.serve(file, offset, || ((), len));
    }

    #[test]
    fn spindle_sequential_reads_seek_once() {
        let (m, t0) = fake(Mode::Spindle);
        // 4 x 1 MB in order: one seek, then 4 x 10 ms of transfer.
        for i in 0..4 {
            read(&m, 7, i * 1_000_000, 1_000_000);
        }
        assert_eq!(m.clock.now() - t0, Duration::from_millis(8 + 40));
        assert_eq!(
            m.served(),
            Served {
                reads: 4,
                seeks: 1,
                bytes: 4_000_000
            }
        );
    }

    #[test]
    fn spindle_interleaved_files_seek_every_read() {
        let (m, t0) = fake(Mode::Spindle);
        for i in 0..3 {
            read(&m, 1, i * 500_000, 500_000);
            read(&m, 2, i * 500_000, 500_000);
        }
        assert_eq!(m.served().seeks, 6);
        assert_eq!(m.clock.now() - t0, Duration::from_millis(6 * (8 + 5)));
    }

    #[test]
    fn spindle_gap_or_short_read_moves_the_head() {
        let (m, _) = fake(Mode::Spindle);
        read(&m, 1, 0, 100); // seek
        read(&m, 1, 200, 100); // gap: seek
        read(&m, 1, 300, 40); // continues: no seek (a short read at EOF)
        read(&m, 1, 340, 0); // EOF probe continues where the short read ended
        read(&m, 1, 0, 100); // back to the start: seek
        assert_eq!(m.served().seeks, 3);
    }

    #[test]
    fn flash_never_seeks() {
        let (m, t0) = fake(Mode::Flash);
        read(&m, 1, 0, 1_000_000);
        read(&m, 2, 5_000_000, 1_000_000);
        assert_eq!(m.served().seeks, 0);
        assert_eq!(m.clock.now() - t0, Duration::from_millis(20));
    }

    /// On the real clock: a spindle serves concurrent reads one at a time,
    /// flash serves up to `channels` at once.
    #[test]
    fn concurrency_follows_the_mode() {
        let run = |mode: Mode| {
            let p = Params {
                mode,
                seek: Duration::ZERO,
                bytes_per_sec: 1e6,
                channels: 4,
            };
            let m = Arc::new(Model::new(p));
            let start = Instant::now();
            let threads: Vec<_> = (0..4)
                .map(|i| {
                    let m = Arc::clone(&m);
                    // 40 ms each at 1 MB/s.
                    std::thread::spawn(move || m.serve(i, 0, || ((), 40_000)))
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            start.elapsed()
        };
        let spindle = run(Mode::Spindle);
        let flash = run(Mode::Flash);
        assert!(spindle >= Duration::from_millis(160), "{spindle:?}");
        assert!(flash >= Duration::from_millis(40), "{flash:?}");
        assert!(flash < Duration::from_millis(120), "{flash:?}");
    }

    #[test]
    fn mode_parses() {
        assert_eq!("spindle".parse::<Mode>(), Ok(Mode::Spindle));
        assert_eq!("flash".parse::<Mode>(), Ok(Mode::Flash));
        assert!("disk".parse::<Mode>().unwrap_err().contains("expected"));
    }
}
