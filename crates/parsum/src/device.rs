//! Readers: how many threads read a disk group at once, and how that
//! limit adapts.
//!
//! Files are routed by `st_dev` to their *disk group* (`disks.rs`: the
//! physical disks under the file system; partitions of one disk, and file
//! systems whose disks overlap, are one group). Each group gets one pool of
//! threads and one [`Gate`] (`pipeline/disk_groups.rs`) that limits how many
//! of them read at once. The limit starts from a [`Plan`] and then follows
//! the measured throughput:
//!
//! - the hint is sysfs' `queue/rotational` of the group's disks (rotational
//!   if any is): rotational starts at one reader per disk, so a real HDD is
//!   read sequentially; non-rotational starts at one reader per core per
//!   disk. A group without queue information (no disk: FUSE, NFS, tmpfs,
//!   overlay) may sit on a spinning disk, so it also starts at one reader;
//!   if it is in fact fast, the first window says so (below);
//! - the limit may grow to [`IO_READERS`] (or two per core, if more) per
//!   disk: readers blocked in I/O use no CPU, and a device with parallel
//!   channels (flash behind FUSE or NFS) needs more readers in flight than
//!   cores;
//! - then the gate measures the bytes hashed per second over windows of
//!   at least [`WINDOW`] and 4 reads (batches). Bytes count as they are
//!   read ([`Gate::credit`]), not when their batch ends, and a window starts
//!   only once the reads begun under the previous limit are done: a batch
//!   may be one large file, and either shortcut made windows with more
//!   readers look slower than they were. Then it searches (see [`Phase`]):
//!   it doubles the limit while each doubling raises the throughput by more
//!   than [`NOISE`] (quadruples after a doubling that gained [`STEEP`]), and
//!   goes back to the best limit when one does not. If
//!   not even the first doubling helped, it halves the limit while that
//!   costs no throughput (a plateau is walked down: a disk that seeks is as
//!   slow with 2 readers as with 8, and fastest with 1). It then holds the
//!   best limit and now and then probes one reader more, or one fewer
//!   (alternately), keeping it only if it rises. A probe that fails
//!   doubles the hold; one that costs more than [`HARD_FALL`] of the
//!   throughput (seeks) holds for the longest, so a spindle is rarely
//!   disturbed. While the throughput is above what any spinning disk
//!   streams ([`NOT_A_DISK`]), the limit never drops below one reader per
//!   core: there is no seek to protect, and noise must not matter;
//! - one shortcut: if the first, short window (a quarter of [`WINDOW`]),
//!   read by a single reader, already runs faster than any spinning disk
//!   streams, the data comes from the page cache or flash, and the limit
//!   jumps to one reader per core instead of doubling. A "rotational"
//!   virtio disk with a warm cache thus uses every core after ~12 ms.
//!   Otherwise the first window runs on to full length before it counts.
//!
//! `--jobs N` and `--device-jobs DEV=N` fix the limit of a whole group and
//! turn adaptation off.
//! The measurements behind these rules (a simulated spindle and flash
//! device) are in `docs/parsum-bench.md`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::disks::{Group, Sysfs};

/// The shortest measuring window of the adaptive gate...
pub const WINDOW: Duration = Duration::from_millis(50);
/// ...which must also see this many finished reads (batches). Bytes count
/// as they are read ([`Gate::credit`]), so a few batches are enough.
const WINDOW_READS: u64 = 4;
/// A doubling that gains this much scales nearly linearly: the ramp's
/// next step quadruples.
const STEEP: f64 = 1.6;
/// Bytes per second no spinning disk reaches (the fastest stream ~270 MB/s).
pub(crate) const NOT_A_DISK: f64 = 400.0 * 1024.0 * 1024.0;
/// Throughput must move by this fraction to count as a rise or a fall.
const NOISE: f64 = 0.08;
/// A step that loses this fraction of the throughput is a hard fall: the
/// device punishes concurrent readers (seeks), so the gate holds longest.
const HARD_FALL: f64 = 0.25;
/// Windows the gate holds its best limit before the first probe...
const HOLD_MIN: u32 = 4;
/// ...and at most, after failed probes (or at once after a hard fall):
/// on a spindle each probe costs a large file read with seeks.
const HOLD_MAX: u32 = 256;
/// The most readers an adaptive device gets on a machine with few cores:
/// readers waiting for I/O use no CPU (a 4-channel flash device served
/// over FUSE is read fastest by about 8 on 2 cores).
pub const IO_READERS: usize = 16;

/// The most readers `--jobs` and `--device-jobs` may ask for (a pool's
/// workers are bounded; more readers than this never help).
pub const MAX_JOBS: usize = 1024;

/// A `--device-jobs DEV=N` override. It fixes the readers of the disk
/// group DEV is on (resolved in `pipeline/disk_groups.rs`).
#[derive(Debug, Clone)]
pub struct DeviceJobs {
    /// DEV as given.
    pub spec: String,
    /// st_dev, when `spec` was a path.
    pub dev: Option<u64>,
    /// N.
    pub jobs: usize,
}

impl DeviceJobs {
    /// Parses `DEV=N` and checks that DEV names a device (a usage error if not).
    pub fn parse(s: &str) -> Result<DeviceJobs, String> {
        let mut d = Self::parse_syntax(s)?;
        if d.dev.is_none() && !device_exists(&d.spec) {
            // Not a device: a relative path without a slash (`.`, `..`,
            // `data`) names the device it is on.
            if let Ok(m) = std::fs::metadata(&d.spec) {
                use std::os::unix::fs::MetadataExt;
                d.dev = Some(m.dev());
                return Ok(d);
            }
            return Err(format!(
                "--device-jobs '{s}': no such device '{}' (expected MAJOR:MINOR, \
                 a block device name such as sda, or a path on the device)",
                d.spec
            ));
        }
        Ok(d)
    }

    /// Parses `DEV=N` without looking DEV up (a path is still stat'ed).
    fn parse_syntax(s: &str) -> Result<DeviceJobs, String> {
        let (spec, n) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("--device-jobs '{s}': expected DEV=N"))?;
        let jobs: usize = n
            .parse()
            .ok()
            .filter(|n| (1..=MAX_JOBS).contains(n))
            .ok_or_else(|| format!("--device-jobs '{s}': N must be in 1..={MAX_JOBS}"))?;
        if spec.is_empty() {
            return Err(format!("--device-jobs '{s}': DEV is empty"));
        }
        // A path, other than a block device node under /dev (it names the
        // device itself) or a /dev name with no node (no udev: `/dev/sda1`
        // is still the partition sysfs knows). Anything else under /dev
        // that exists (`/dev/shm`, a tmpfs; `/dev/null`) is a path.
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::metadata(spec);
        let dev_name = spec.starts_with("/dev/")
            && meta
                .as_ref()
                .map_or(true, |m| m.file_type().is_block_device());
        let dev = if spec.contains('/') && !dev_name {
            Some(
                meta.map_err(|e| format!("--device-jobs '{s}': {spec}: {e}"))?
                    .dev(),
            )
        } else {
            None
        };
        Ok(DeviceJobs {
            spec: spec.to_string(),
            dev,
            jobs,
        })
    }
}

/// Whether a `--device-jobs` DEV that is not a path names a device: a block
/// device (`sda`, `/dev/sda`, `8:0`, a node such as `/dev/mapper/vg-home`)
/// or the MAJOR:MINOR of a mounted file system without one (tmpfs, NFS:
/// `0:27`).
fn device_exists(spec: &str) -> bool {
    device_exists_in(&Sysfs::new("/sys"), spec)
}

/// [`device_exists`] through the sysfs tree `sys` (tests use a fake one).
pub(crate) fn device_exists_in(sys: &Sysfs, spec: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    if spec.starts_with("/dev/")
        && std::fs::metadata(spec).is_ok_and(|m| m.file_type().is_block_device())
    {
        return true;
    }
    let name = spec.strip_prefix("/dev/").unwrap_or(spec);
    if name.contains(':') {
        sys.name_of(name).is_some()
            || std::fs::read("/proc/self/mountinfo").is_ok_and(|m| {
                m.split(|&b| b == b'\n')
                    .any(|l| l.split(|&b| b == b' ').nth(2) == Some(name.as_bytes()))
            })
    } else {
        // A sysfs name, or what a mount source may name (`/dev/mapper/x`
        // without a node: its dm/name), as `--device-jobs` resolves it.
        sys.exists(name) || sys.source_device(&format!("/dev/{name}")).is_some()
    }
}

/// How many readers a device gets, and whether that may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Readers at the start.
    pub start: usize,
    /// The most readers (and the size of the device's pool).
    pub max: usize,
    /// Whether the gate adapts the limit (no `--jobs`/`--device-jobs`).
    pub adaptive: bool,
    /// One reader per core: the jump target of a fast first window, and the
    /// floor while the device runs faster than any disk.
    pub cores: usize,
}

impl Plan {
    /// Chooses the plan for disk group `group`: `fixed` (the
    /// `--device-jobs` that names it) wins over `--jobs`, which wins over
    /// the hint. Both fix the readers of the whole group. The adaptive
    /// budget is the sum of the group's disks' budgets: per disk, one
    /// reader to start on a rotational group and one per core otherwise,
    /// and at most two per core.
    pub fn choose(
        group: &Group,
        jobs: Option<usize>,
        fixed: Option<&DeviceJobs>,
        cpus: usize,
    ) -> (Plan, String) {
        if let Some(o) = fixed {
            return (
                Plan {
                    start: o.jobs,
                    max: o.jobs,
                    adaptive: false,
                    cores: cpus.max(1),
                },
                format!("--device-jobs {}={}", o.spec, o.jobs),
            );
        }
        if let Some(j) = jobs {
            return (
                Plan {
                    start: j,
                    max: j,
                    adaptive: false,
                    cores: cpus.max(1),
                },
                format!("--jobs {j}"),
            );
        }
        let disks = group.disks();
        let cores = cpus.max(1);
        // Capped: a pool of more threads cannot be built, nor would help.
        let max = ((cpus * 2).max(IO_READERS) * disks).min(MAX_JOBS);
        let per_disk = if disks > 1 { " per disk" } else { "" };
        let (start, why) = match group.rotational {
            Some(true) => (disks, "rotational: start sequential"),
            Some(false) => (cores * disks, "start one reader per core"),
            None => (disks, "no queue info: start sequential"),
        };
        (
            Plan {
                start: start.min(max),
                max,
                adaptive: true,
                cores,
            },
            format!("{why}{per_disk}, adapt"),
        )
    }
}

/// Limits the number of concurrent readers of one device and adapts the
/// limit to measured throughput.
///
/// Invariant: `active <= limit` except transiently after the limit shrinks,
/// when readers already inside finish their file and no new one enters
/// until `active` is below the new limit.
pub struct Gate {
    limit: AtomicUsize,
    plan: Plan,
    state: Mutex<Readers>,
    cv: Condvar,
    bytes: AtomicU64,
    reads: AtomicU64,
    /// Reads that have entered (`reads` counts those that finished).
    started: AtomicU64,
    ctl: Mutex<Control>,
    label: String,
    verbose: bool,
}

#[derive(Default)]
struct Readers {
    active: usize,
    /// Threads waiting in `read`: notify only when someone listens (a
    /// condvar notify is a syscall even with no waiter).
    waiting: usize,
}

struct Control {
    window_start: Instant,
    window_bytes_at_start: u64,
    window_reads_at_start: u64,
    /// The limit with the best recent throughput, and that throughput
    /// (`None` until the first window is measured).
    best: usize,
    best_tp: Option<f64>,
    /// Windows to hold after the next failed probe.
    hold: u32,
    /// The direction of the next probe.
    probe_up: bool,
    /// After a change, the window starts only once this many reads have
    /// finished: those in flight at the change ran at the old limit.
    warm_until: u64,
    phase: Phase,
}

/// Where the adaptive gate is in its search. The window that just ended
/// was read with the current limit; `best` is the limit to go back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Doubling the limit while each doubling raises the throughput.
    /// `gained`: some doubling did (else the ramp turns down).
    RampUp { gained: bool },
    /// Halving the limit while that costs no throughput.
    RampDown,
    /// Keeping `best` for this many more windows, then probing one reader
    /// more or fewer (alternately, where both exist).
    Hold(u32),
    /// Trying `best + 1` (`up`) or `best - 1`; kept only if it rises.
    Probe { up: bool },
}

impl Gate {
    pub fn new(plan: Plan, label: String, verbose: bool) -> Gate {
        Gate {
            limit: AtomicUsize::new(plan.start.clamp(1, plan.max.max(1))),
            plan,
            state: Mutex::new(Readers::default()),
            cv: Condvar::new(),
            bytes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            started: AtomicU64::new(0),
            ctl: Mutex::new(Control::new(&plan)),
            label,
            verbose,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Counts `n` bytes read (by a reader inside [`Gate::read`]) toward the
    /// throughput now, rather than when its batch ends: a batch may be one
    /// large file, and crediting it whole makes short windows noisy.
    pub fn credit(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Runs `read` (one batch of files) as one reader of the device; `read`
    /// returns the bytes it read and has not yet [credited](Gate::credit).
    pub fn read<R>(&self, read: impl FnOnce() -> (R, u64)) -> R {
        // A fixed limit as large as the pool: the pool itself is the limit.
        if !self.plan.adaptive && self.plan.start >= self.plan.max {
            return read().0;
        }
        {
            let mut st = self.state.lock().unwrap();
            while st.active >= self.limit() {
                st.waiting += 1;
                st = self.cv.wait(st).unwrap();
                st.waiting -= 1;
            }
            st.active += 1;
            self.started.fetch_add(1, Ordering::Relaxed);
        }
        let (r, n) = read();
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        let wake = {
            let mut st = self.state.lock().unwrap();
            st.active -= 1;
            st.waiting > 0
        };
        if wake {
            self.cv.notify_one();
        }
        if self.plan.adaptive {
            self.adapt();
        }
        r
    }

    /// One step of the search, at most once per [`WINDOW`].
    fn adapt(&self) {
        let Ok(mut c) = self.ctl.try_lock() else {
            return;
        };
        let reads = self.reads.load(Ordering::Relaxed);
        let total = self.bytes.load(Ordering::Relaxed);
        // Subtle: right after a change, the reads that finish first are
        // the old limit's and the new readers' smallest batches, so a
        // window begun at the change undercounts a higher limit (by up to
        // a whole large file per reader). It begins once those are done.
        if reads < c.warm_until {
            c.window_start = Instant::now();
            c.window_bytes_at_start = total;
            c.window_reads_at_start = reads;
            return;
        }
        let elapsed = c.window_start.elapsed();
        let first = c.best_tp.is_none();
        let old = self.limit();
        let tp_now = |c: &Control| {
            (total - c.window_bytes_at_start) as f64 / elapsed.as_secs_f64().max(1e-9)
        };
        // The first window is short, but only to tell a disk from cache:
        // unless it is that fast, it runs on to full length.
        let n = reads - c.window_reads_at_start;
        let short = first
            && old == 1
            && elapsed >= WINDOW / 4
            && n >= WINDOW_READS / 2
            && tp_now(&c) >= NOT_A_DISK;
        // A window with more readers than the best limit ends at half
        // length once it has lost half the throughput: on a disk that
        // seeks every such window is expensive.
        let hard_fall = old > c.best
            && elapsed >= WINDOW / 2
            && n >= 1
            && c.best_tp.is_some_and(|b| tp_now(&c) < b * 0.5);
        // Ramping up compares doublings, which need less time to tell; the
        // first window, with one reader, is the slowest: half the batches.
        let (window, min_reads) = match c.phase {
            Phase::RampUp { .. } if first => (WINDOW / 2, WINDOW_READS / 2),
            Phase::RampUp { .. } => (WINDOW / 2, WINDOW_READS),
            _ => (WINDOW, WINDOW_READS),
        };
        if !short && !hard_fall && (elapsed < window || n < min_reads) {
            return;
        }
        let tp = tp_now(&c);
        c.window_reads_at_start = reads;
        c.window_start = Instant::now();
        c.window_bytes_at_start = total;
        let new = c.step(&self.plan, old, tp);
        if new != old {
            c.warm_until = self.started.load(Ordering::Relaxed);
            self.limit.store(new, Ordering::Relaxed);
            let _st = self.state.lock().unwrap();
            self.cv.notify_all();
            if self.verbose {
                crate::progress::message(&format!(
                    "parsum: device {}: {:.0} MiB/s with {old} reader(s), now {new}",
                    self.label,
                    tp / (1024.0 * 1024.0)
                ));
            }
        }
    }
}

impl Control {
    fn new(plan: &Plan) -> Control {
        Control {
            window_start: Instant::now(),
            window_bytes_at_start: 0,
            window_reads_at_start: 0,
            best: plan.start.clamp(1, plan.max.max(1)),
            best_tp: None,
            hold: HOLD_MIN,
            probe_up: true,
            warm_until: 0,
            phase: Phase::RampUp { gained: false },
        }
    }

    /// Decides the next limit from `tp`, measured with `cur` readers.
    fn step(&mut self, plan: &Plan, cur: usize, tp: f64) -> usize {
        let max = plan.max.max(1);
        // At a rate no spinning disk reaches there is no seek to protect.
        let floor = |tp: f64| {
            if tp >= NOT_A_DISK {
                plan.cores.min(max)
            } else {
                1
            }
        };
        let Some(best_tp) = self.best_tp else {
            // The first window.
            self.best = cur;
            self.best_tp = Some(tp);
            self.phase = Phase::RampUp { gained: false };
            if cur == 1 && tp >= NOT_A_DISK {
                // Cache or flash: one reader per core is the new floor, and
                // the best so far (the ramp must not settle back on 1).
                self.best = floor(tp);
                return self.best;
            }
            return (cur * 2).clamp(1, max);
        };
        let rise = tp > best_tp * (1.0 + NOISE);
        let fall = tp < best_tp * (1.0 - NOISE);
        let hard_fall = tp < best_tp * (1.0 - HARD_FALL);
        // Back to `best` after a step that did not pay: hold there.
        let settle = |c: &mut Control, failed_probe: bool| {
            if hard_fall {
                c.hold = HOLD_MAX;
            } else if failed_probe {
                c.hold = (c.hold * 2).min(HOLD_MAX);
            }
            c.phase = Phase::Hold(c.hold);
            // Never below the floor of the rate just seen.
            c.best = c.best.max(floor(tp));
            c.best
        };
        match self.phase {
            Phase::RampUp { gained } => {
                if rise {
                    let factor = if tp >= best_tp * STEEP { 4 } else { 2 };
                    self.best = cur;
                    self.best_tp = Some(tp);
                    self.phase = Phase::RampUp { gained: true };
                    if cur >= max {
                        self.phase = Phase::Hold(self.hold);
                        return cur;
                    }
                    return (cur * factor).min(max);
                }
                if !gained && self.best > floor(best_tp) {
                    // Not even one doubling helped: try fewer readers.
                    self.phase = Phase::RampDown;
                    return (self.best / 2).max(floor(best_tp));
                }
                settle(self, false)
            }
            Phase::RampDown => {
                if !fall {
                    // As fast (or faster) with fewer readers.
                    self.best = cur;
                    self.best_tp = Some(tp.max(best_tp));
                    let f = floor(tp);
                    if cur > f {
                        return (cur / 2).max(f);
                    }
                    self.phase = Phase::Hold(self.hold);
                    return cur;
                }
                settle(self, false)
            }
            Phase::Hold(left) => {
                // Track the device at `best`, so a probe compares with now.
                self.best_tp = Some(tp);
                let (can_up, can_down) = (cur < max, cur > floor(tp));
                if left > 1 || !(can_up || can_down) {
                    self.phase = Phase::Hold(left.saturating_sub(1).max(1));
                    return cur;
                }
                // Down probes find a peak below a plateau the ramp stopped
                // on; they move only on a rise, so a gentle slope (flash
                // near its channel count) is not drifted down.
                let up = !can_down || (can_up && self.probe_up);
                self.probe_up = !up;
                self.phase = Phase::Probe { up };
                if up {
                    cur + 1
                } else {
                    cur - 1
                }
            }
            Phase::Probe { up } => {
                if rise {
                    self.best = cur;
                    self.best_tp = Some(tp);
                    self.hold = HOLD_MIN;
                    let next = if up { cur + 1 } else { cur - 1 };
                    if (up && cur >= max) || (!up && cur <= floor(tp)) {
                        self.phase = Phase::Hold(self.hold);
                        return cur;
                    }
                    self.probe_up = up;
                    return next;
                }
                settle(self, true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(rot: Option<bool>, disks: &[&str]) -> Group {
        Group {
            name: disks.join("+"),
            keys: disks.iter().map(|d| d.to_string()).collect(),
            members: vec![],
            physical: true,
            rotational: rot,
        }
    }

    #[test]
    fn plan_from_hint_and_overrides() {
        let sda = group(Some(true), &["sda"]);
        assert_eq!(
            Plan::choose(&sda, None, None, 4).0,
            Plan {
                start: 1,
                max: 16,
                adaptive: true,
                cores: 4
            }
        );
        assert_eq!(
            Plan::choose(&group(Some(false), &["sda"]), None, None, 4).0,
            Plan {
                start: 4,
                max: 16,
                adaptive: true,
                cores: 4
            }
        );
        assert_eq!(
            Plan::choose(&group(None, &["sda"]), Some(3), None, 4).0,
            Plan {
                start: 3,
                max: 3,
                adaptive: false,
                cores: 4
            }
        );
        let o = DeviceJobs::parse_syntax("sda=2").unwrap();
        let (plan, why) = Plan::choose(&sda, Some(5), Some(&o), 4);
        assert_eq!((plan.start, plan.adaptive), (2, false));
        assert_eq!(why, "--device-jobs sda=2");
        assert!(DeviceJobs::parse("sda").is_err());
        assert!(DeviceJobs::parse("sda=0").is_err());
    }

    /// A group over several disks may use the sum of their budgets; fixed
    /// limits stay the group's total.
    #[test]
    fn multi_disk_group_sums_the_budgets() {
        let raid = group(Some(true), &["sda", "sdb", "sdc"]);
        let (plan, why) = Plan::choose(&raid, None, None, 2);
        assert_eq!(
            plan,
            Plan {
                start: 3,
                max: 3 * IO_READERS,
                adaptive: true,
                cores: 2
            }
        );
        assert!(why.contains("per disk"), "{why}");
        // No queue information (FUSE, NFS, tmpfs): one reader, then adapt.
        let (plan, why) = Plan::choose(&group(None, &["fuse 0:50"]), None, None, 2);
        assert_eq!((plan.start, plan.max), (1, IO_READERS));
        assert!(why.starts_with("no queue info"), "{why}");
        let flash = group(Some(false), &["nvme0n1", "nvme1n1"]);
        assert_eq!(Plan::choose(&flash, None, None, 4).0.start, 8);
        assert_eq!(Plan::choose(&raid, Some(1), None, 2).0.max, 1);
    }

    /// A group of many disks on a machine of many cores: the budget is
    /// capped, so its pool can be built (parpool refuses more than 16,384
    /// workers; parsum panicked for an md array of 65 disks on 128 cores).
    #[test]
    fn huge_groups_budget_is_capped() {
        let names: Vec<String> = (0..100).map(|i| format!("sd{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for rot in [Some(true), Some(false)] {
            let (plan, _) = Plan::choose(&group(rot, &refs), None, None, 128);
            assert!(plan.max <= MAX_JOBS && plan.start <= plan.max, "{plan:?}");
            assert!(plan.start >= 1);
        }
        let (plan, _) = Plan::choose(&group(Some(false), &refs), None, None, 128);
        assert_eq!(
            parpool::ThreadPool::with_workers(plan.max).workers(),
            plan.max
        );
    }

    #[test]
    fn gate_limits_concurrency() {
        crate::hash::tests::within_30s(gate_limits_concurrency_body);
    }

    fn gate_limits_concurrency_body() {
        let gate = Gate::new(
            Plan {
                start: 2,
                max: 4,
                adaptive: false,
                cores: 2,
            },
            "t".into(),
            false,
        );
        let peak = AtomicUsize::new(0);
        let now = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    gate.read(|| {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                        ((), 1)
                    })
                });
            }
        });
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    /// A "rotational" device that delivers far more than a disk can (a
    /// warm cache) leaves sequential mode after the first short window.
    #[test]
    fn cache_fast_device_jumps_to_one_reader_per_core() {
        crate::hash::tests::within_30s(|| {
            let gate = Gate::new(
                Plan {
                    start: 1,
                    max: 8,
                    adaptive: true,
                    cores: 4,
                },
                "t".into(),
                false,
            );
            let start = Instant::now();
            while gate.limit() == 1 && start.elapsed() < Duration::from_secs(5) {
                // 64 MiB per millisecond: no spinning disk does that.
                gate.read(|| {
                    std::thread::sleep(Duration::from_millis(1));
                    ((), 64 << 20)
                });
            }
            assert_eq!(gate.limit(), 4, "one reader per core");
        });
    }

    /// Bytes credited while a batch is read count like bytes returned at
    /// its end: a fast device credited only as it reads still jumps.
    #[test]
    fn credited_bytes_count_toward_throughput() {
        crate::hash::tests::within_30s(|| {
            let gate = Gate::new(adaptive(1, 4), "t".into(), false);
            let start = Instant::now();
            while gate.limit() == 1 && start.elapsed() < Duration::from_secs(5) {
                gate.read(|| {
                    for _ in 0..4 {
                        gate.credit(16 << 20);
                        std::thread::sleep(Duration::from_micros(250));
                    }
                    ((), 0)
                });
            }
            assert_eq!(gate.limit(), 4, "one reader per core");
        });
    }

    /// A slow device (disk speed) is left where the hint put it unless more
    /// readers make it faster.
    #[test]
    fn disk_speed_device_is_not_jumped() {
        crate::hash::tests::within_30s(|| {
            let gate = Gate::new(
                Plan {
                    start: 1,
                    max: 8,
                    adaptive: true,
                    cores: 4,
                },
                "t".into(),
                false,
            );
            let start = Instant::now();
            let mut limits = Vec::new();
            while start.elapsed() < Duration::from_millis(300) {
                // 64 KiB per millisecond = 62.5 MiB/s, whatever the readers.
                gate.read(|| {
                    std::thread::sleep(Duration::from_millis(1));
                    ((), 64 << 10)
                });
                limits.push(gate.limit());
            }
            // Probing may try 2, but never jumps straight to the core count
            // in the first window.
            let first_change = limits.iter().position(|&l| l != 1);
            if let Some(i) = first_change {
                assert_eq!(limits[i], 2, "{limits:?}");
            }
        });
    }

    const MB: f64 = 1e6;

    /// Runs the search for `windows` windows on a device whose throughput
    /// with `n` readers is `tp(n)`; returns the limit of every window.
    fn search(plan: Plan, windows: usize, tp: impl Fn(usize) -> f64) -> Vec<usize> {
        let mut c = Control::new(&plan);
        let mut cur = plan.start;
        let mut seen = Vec::new();
        for _ in 0..windows {
            seen.push(cur);
            cur = c.step(&plan, cur, tp(cur));
            assert!(
                (1..=plan.max).contains(&cur),
                "{cur} out of 1..={}",
                plan.max
            );
        }
        seen
    }

    fn adaptive(start: usize, cores: usize) -> Plan {
        Plan {
            start,
            max: IO_READERS,
            adaptive: true,
            cores,
        }
    }

    /// A spindle: one reader streams, two or more seek on every read.
    fn spindle(n: usize) -> f64 {
        if n == 1 {
            60.0 * MB
        } else {
            25.0 * MB
        }
    }

    #[test]
    fn spindle_settles_on_one_reader_and_rarely_probes() {
        let seen = search(adaptive(1, 2), 400, spindle);
        assert_eq!(&seen[..3], &[1, 2, 1], "one probe of 2, then back");
        let probes = seen.iter().filter(|&&n| n > 1).count();
        // A hard fall holds HOLD_MAX windows between probes.
        assert!(probes <= 1 + 400 / HOLD_MAX as usize, "{probes}: {seen:?}");
    }

    /// A plateau (2..16 readers all seek-bound) is walked down to 1 even
    /// from a start of one reader per core (a disk that says it is not
    /// rotational).
    #[test]
    fn spindle_found_from_one_reader_per_core() {
        let seen = search(adaptive(4, 4), 200, spindle);
        let settled = &seen[10..];
        let at_one = settled.iter().filter(|&&n| n == 1).count();
        assert!(at_one * 10 >= settled.len() * 9, "{seen:?}");
    }

    /// Four channels at 60 MB/s each, saturating towards 8 readers (the
    /// requests in flight also cover hashing): the ramp quadruples while
    /// doublings scale nearly linearly, settles on 8 and stays within one
    /// reader of it.
    #[test]
    fn flash_ramps_up_past_the_core_count() {
        let flash = |n: usize| 60.0 * MB * (n.min(8) as f64);
        let seen = search(adaptive(1, 2), 200, flash);
        assert_eq!(&seen[..5], &[1, 2, 8, 16, 8], "{seen:?}");
        // Then probes, one reader up or down, that fall back.
        assert!(seen[5..].iter().all(|&n| (7..=9).contains(&n)), "{seen:?}");
        let at_8 = seen[5..].iter().filter(|&&n| n == 8).count();
        assert!(at_8 * 10 >= seen[5..].len() * 8, "{seen:?}");
    }

    /// Page cache on 2 cores: 1 GB/s per core. The first window jumps to
    /// one reader per core, doubling past it brings nothing, and the limit
    /// never drops below the core count.
    #[test]
    fn cpu_bound_cache_holds_one_reader_per_core() {
        let cache = |n: usize| 1000.0 * MB * (n.min(2) as f64);
        let seen = search(adaptive(1, 2), 200, cache);
        assert_eq!(&seen[..4], &[1, 2, 8, 2], "{seen:?}");
        assert!(seen[3..].iter().all(|&n| n >= 2), "{seen:?}");
        let above = seen[3..].iter().filter(|&&n| n > 2).count();
        assert!(above * 10 <= seen.len(), "{seen:?}");
    }

    /// A fast device on which more readers gain nothing (a busy machine,
    /// or one core's worth of hashing): the first window jumps to one
    /// reader per core, and the search never goes back below it (it did:
    /// the ramp settled on its first window's single reader).
    #[test]
    fn flat_fast_device_stays_at_one_reader_per_core() {
        let seen = search(adaptive(1, 2), 200, |_| 2000.0 * MB);
        assert_eq!(seen[1], 2, "{seen:?}");
        assert!(seen[1..].iter().all(|&n| n >= 2), "{seen:?}");
    }

    /// A ramp misled onto 2 readers of a spindle (noise in its first
    /// window) finds 1 with a down probe after its hold.
    #[test]
    fn down_probe_leaves_a_plateau() {
        let plan = adaptive(1, 2);
        let mut c = Control::new(&plan);
        c.best = 2;
        c.best_tp = Some(spindle(2));
        c.phase = Phase::Hold(1);
        let mut cur = 2;
        let mut seen = Vec::new();
        for _ in 0..40 {
            cur = c.step(&plan, cur, spindle(cur));
            seen.push(cur);
        }
        assert_eq!(&seen[..2], &[3, 2], "an up probe first, flat: back");
        assert_eq!(c.best, 1, "{seen:?}");
        assert!(seen[seen.len() - 20..].iter().all(|&n| n == 1), "{seen:?}");
    }

    /// A probe that wins is kept, and the climb goes on from there.
    #[test]
    fn a_winning_probe_keeps_climbing() {
        let mut c = Control::new(&adaptive(4, 4));
        c.best_tp = Some(100.0 * MB);
        c.best = 4;
        c.phase = Phase::Probe { up: true };
        assert_eq!(c.step(&adaptive(4, 4), 5, 120.0 * MB), 6);
        assert_eq!(c.best, 5);
        // A flat probe goes back and holds twice as long as before.
        assert_eq!(c.step(&adaptive(4, 4), 6, 121.0 * MB), 5);
        assert_eq!(c.phase, Phase::Hold(2 * HOLD_MIN));
    }
}
