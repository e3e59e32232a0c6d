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
//!   read sequentially; anything else starts at one reader per core per
//!   disk. Groups without a disk (tmpfs, overlay, NFS, FUSE) have no queue
//!   and count as non-rotational;
//! - then, every [`WINDOW`] (and at least 8 reads), the gate compares the bytes hashed per second
//!   with the previous window and moves the limit one step (hill climbing):
//!   on in the same direction while throughput rises, back when it falls.
//!   A real HDD that thrashes at two readers falls back to one. While the
//!   throughput is above what any spinning disk streams ([`NOT_A_DISK`]),
//!   the limit never drops below one reader per core: there is no seek to
//!   protect, and throughput noise from other processes must not matter;
//! - one shortcut: if the first window, read by a single reader, already
//!   runs faster than any spinning disk streams ([`NOT_A_DISK`]), the data
//!   comes from the page cache or flash, and the limit jumps to one reader
//!   per core. A "rotational" virtio disk with a warm cache thus uses every
//!   core after the first ~12 ms (the first window is a quarter as long).
//!
//! `--jobs N` and `--device-jobs DEV=N` fix the limit of a whole group and
//! turn adaptation off.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::disks::{Group, Sysfs};

/// The shortest measuring window of the adaptive gate...
pub const WINDOW: Duration = Duration::from_millis(50);
/// ...which must also see this many finished reads (batches).
const WINDOW_READS: u64 = 8;
/// Bytes per second no spinning disk reaches (the fastest stream ~270 MB/s).
pub(crate) const NOT_A_DISK: f64 = 400.0 * 1024.0 * 1024.0;
/// Throughput must move by this fraction to count as a rise or a fall.
const NOISE: f64 = 0.08;

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
    pub start: usize,
    pub max: usize,
    pub adaptive: bool,
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
                },
                format!("--jobs {j}"),
            );
        }
        let disks = group.disks();
        // Capped: a pool of more threads cannot be built, nor would help.
        let max = ((cpus * 2).max(2) * disks).min(MAX_JOBS);
        let per_disk = if disks > 1 { " per disk" } else { "" };
        match group.rotational {
            Some(true) => (
                Plan {
                    start: disks.min(max),
                    max,
                    adaptive: true,
                },
                format!("rotational: start sequential{per_disk}, adapt"),
            ),
            _ => (
                Plan {
                    start: (cpus.max(1) * disks).min(max),
                    max,
                    adaptive: true,
                },
                format!("start one reader per core{per_disk}, adapt"),
            ),
        }
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
    last_tp: Option<f64>,
    direction: isize,
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
            ctl: Mutex::new(Control {
                window_start: Instant::now(),
                window_bytes_at_start: 0,
                window_reads_at_start: 0,
                last_tp: None,
                direction: 1,
            }),
            label,
            verbose,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Runs `read` (one batch of files) as one reader of the device; `read`
    /// returns the bytes it read.
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

    /// One hill-climbing step, at most once per [`WINDOW`].
    fn adapt(&self) {
        let Ok(mut c) = self.ctl.try_lock() else {
            return;
        };
        let elapsed = c.window_start.elapsed();
        let reads = self.reads.load(Ordering::Relaxed);
        // The first window is short: it only has to tell a disk from cache.
        let (window, min_reads) = if c.last_tp.is_none() {
            (WINDOW / 4, WINDOW_READS / 2)
        } else {
            (WINDOW, WINDOW_READS)
        };
        if elapsed < window || reads - c.window_reads_at_start < min_reads {
            return;
        }
        c.window_reads_at_start = reads;
        let total = self.bytes.load(Ordering::Relaxed);
        let tp = (total - c.window_bytes_at_start) as f64 / elapsed.as_secs_f64();
        c.window_start = Instant::now();
        c.window_bytes_at_start = total;
        let old = self.limit();
        // First window, one reader, and faster than any spinning disk can
        // stream: the data comes from the page cache or flash, whatever
        // sysfs says. Jump to one reader per core instead of climbing.
        if c.last_tp.is_none() && old == 1 && tp >= NOT_A_DISK {
            let new = (self.plan.max / 2).max(2).min(self.plan.max);
            c.last_tp = Some(tp);
            if new != old {
                self.limit.store(new, Ordering::Relaxed);
                let _st = self.state.lock().unwrap();
                self.cv.notify_all();
                if self.verbose {
                    crate::progress::message(&format!(
                        "parsum: device {}: {:.0} MiB/s with 1 reader: faster than a spinning disk, so cache or flash; now {new}",
                        self.label,
                        tp / (1024.0 * 1024.0)
                    ));
                }
            }
            return;
        }
        let step = match c.last_tp {
            None => c.direction,
            Some(prev) if tp > prev * (1.0 + NOISE) => c.direction,
            Some(prev) if tp < prev * (1.0 - NOISE) => {
                c.direction = -c.direction;
                c.direction
            }
            Some(_) => 0,
        };
        c.last_tp = Some(tp);
        // At a rate no spinning disk reaches there is no seeking to protect:
        // noise must not push the limit below one reader per core.
        let floor = if tp >= NOT_A_DISK {
            (self.plan.max / 2).max(1)
        } else {
            1
        };
        let new = (old as isize + step).clamp(floor as isize, self.plan.max as isize) as usize;
        if new != old {
            self.limit.store(new, Ordering::Relaxed);
            let _st = self.state.lock().unwrap();
            self.cv.notify_all();
            if self.verbose {
                crate::progress::message(&format!(
                    "parsum: device {}: {:.0} MiB/s with {old} reader(s), now trying {new}",
                    self.label,
                    tp / (1024.0 * 1024.0)
                ));
            }
        } else if step != 0 {
            // Hit a bound: turn around so the next rise or fall moves us.
            c.direction = -c.direction;
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
                max: 8,
                adaptive: true
            }
        );
        assert_eq!(
            Plan::choose(&group(Some(false), &["sda"]), None, None, 4).0,
            Plan {
                start: 4,
                max: 8,
                adaptive: true
            }
        );
        assert_eq!(
            Plan::choose(&group(None, &["sda"]), Some(3), None, 4).0,
            Plan {
                start: 3,
                max: 3,
                adaptive: false
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
                max: 12,
                adaptive: true
            }
        );
        assert!(why.contains("per disk"), "{why}");
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
            assert_eq!(gate.limit(), 4, "one reader per core (max / 2)");
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
}
