//! The disk groups a run has met, each with its [`Device`]: one pool and
//! one [`Gate`] shared by every file system on the group's disks.
//!
//! A producer asks for the device of its files' `st_dev`; the `st_dev` is
//! resolved to its disk group (`disks.rs`) and the group's device is made
//! on first use, with its plan (`--device-jobs`, `--jobs` or the hint) and
//! its `-v` line. Invariant: every disk maps to at most one device for the
//! whole run, and an `st_dev` keeps the device it first got, so two
//! partitions of one disk never get two gates.
//!
//! [`Gate`]: crate::device::Gate

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parpool::ThreadPool;

use super::Settings;
use crate::device::{DeviceJobs, Gate, Plan};
use crate::disks::{DiskMap, Group};
use crate::progress::{message, DiskMeter};

/// A disk group's readers: its pool, its gate, and its progress meter.
pub(crate) struct Device {
    pub(crate) pool: ThreadPool,
    pub(crate) gate: Arc<Gate>,
    pub(crate) meter: Arc<DiskMeter>,
}

/// The groups met so far.
#[derive(Default)]
pub(crate) struct DiskGroups {
    /// Built on the first request (it reads the mount table and sysfs).
    map: Option<DiskMap>,
    /// Each `--device-jobs` with the disks (group keys) its DEV names.
    overrides: Vec<(DeviceJobs, Vec<String>)>,
    by_dev: HashMap<u64, Arc<Device>>,
    by_key: HashMap<String, Arc<Device>>,
}

impl DiskGroups {
    /// Groups resolved through `map` instead of this machine's (tests).
    #[cfg(test)]
    fn with_map(map: DiskMap) -> DiskGroups {
        DiskGroups {
            map: Some(map),
            ..DiskGroups::default()
        }
    }

    /// The device for files on `dev`; `hint` is one such file (it finds
    /// the mount of an anonymous `st_dev` that mountinfo does not list).
    pub(crate) fn device(&mut self, dev: u64, hint: &Path, cfg: &Settings) -> Arc<Device> {
        if let Some(d) = self.by_dev.get(&dev) {
            return Arc::clone(d);
        }
        let map = self.map.get_or_insert_with(DiskMap::system);
        if self.overrides.len() != cfg.device_jobs.len() {
            self.overrides = cfg
                .device_jobs
                .iter()
                .map(|o| (o.clone(), map.keys_of_spec(&o.spec, o.dev)))
                .collect();
        }
        let group = map.group_of(dev, Some(hint));
        // A group that grew after its device was made (an unmounted file
        // system joining two groups) keeps the first device found.
        let d = match group.keys.iter().find_map(|k| self.by_key.get(k)) {
            Some(d) => Arc::clone(d),
            None => self.make(&group, cfg),
        };
        for k in &group.keys {
            self.by_key
                .entry(k.clone())
                .or_insert_with(|| Arc::clone(&d));
        }
        self.by_dev.insert(dev, Arc::clone(&d));
        d
    }

    fn make(&self, group: &Group, cfg: &Settings) -> Arc<Device> {
        // The last --device-jobs that names any disk of the group wins.
        let fixed = self
            .overrides
            .iter()
            .rev()
            .find(|(_, keys)| keys.iter().any(|k| group.keys.contains(k)))
            .map(|(o, _)| o);
        let (plan, why) = Plan::choose(group, cfg.jobs, fixed, cfg.cpus);
        if cfg.verbose {
            message(&describe(group, &plan, &why));
        }
        let meter = Arc::new(DiskMeter::new(group.name.clone(), plan.start));
        cfg.counters.add_disk(Arc::clone(&meter));
        Arc::new(Device {
            pool: ThreadPool::with_workers(plan.max),
            gate: Arc::new(Gate::new(plan, group.name.clone(), cfg.verbose)),
            meter,
        })
    }
}

/// The `-v` line of a group: `parsum: disk NAME (what it holds): readers`.
fn describe(group: &Group, plan: &Plan, why: &str) -> String {
    let what = if group.physical {
        let disks = if group.keys.len() > 1 {
            format!("{} disks; ", group.keys.len())
        } else {
            String::new()
        };
        let rot = match group.rotational {
            Some(true) => "rotational per sysfs",
            Some(false) => "non-rotational per sysfs",
            None => "no queue info",
        };
        format!("{disks}file systems {}; {rot}", group.members.join(", "))
    } else {
        "no disk: network, FUSE, memory or unresolved file system, its own group".to_string()
    };
    let range = if plan.adaptive {
        format!(", adapting within 1..={}", plan.max)
    } else {
        String::new()
    };
    format!(
        "parsum: disk {} ({what}): {} reader(s){range} [{why}]",
        group.name, plan.start
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disks::{MountTable, Sysfs};
    use crate::progress::Counters;

    fn settings(device_jobs: Vec<DeviceJobs>) -> Settings {
        Settings {
            jobs: None,
            device_jobs,
            cpus: 2,
            verbose: false,
            splitter: None,
            counters: Arc::new(Counters::default()),
        }
    }

    /// sda (two partitions, rotational) and sdb (one), as the kernel
    /// lays them out in sysfs; tmpfs beside.
    fn map() -> (tempfile::TempDir, DiskMap) {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for (name, id, rel, rot) in [
            ("sda", "8:0", "sda", Some("1")),
            ("sda1", "8:1", "sda/sda1", None),
            ("sda2", "8:2", "sda/sda2", None),
            ("sdb", "8:16", "sdb", Some("0")),
            ("sdb1", "8:17", "sdb/sdb1", None),
        ] {
            let real = r.join("devices").join(rel);
            std::fs::create_dir_all(&real).unwrap();
            match rot {
                Some(v) => {
                    std::fs::create_dir_all(real.join("queue")).unwrap();
                    std::fs::write(real.join("queue/rotational"), v).unwrap();
                }
                None => std::fs::write(real.join("partition"), "1").unwrap(),
            }
            for d in ["class/block", "dev/block"] {
                std::fs::create_dir_all(r.join(d)).unwrap();
            }
            std::os::unix::fs::symlink(&real, r.join("class/block").join(name)).unwrap();
            std::os::unix::fs::symlink(&real, r.join("dev/block").join(id)).unwrap();
        }
        let mounts = MountTable::parse(
            "1 0 8:1 / /a rw - ext4 /dev/sda1 rw\n\
             2 0 8:2 / /b rw - ext4 /dev/sda2 rw\n\
             3 0 8:17 / /c rw - ext4 /dev/sdb1 rw\n\
             4 0 0:27 / /shm rw - tmpfs tmpfs rw\n",
        );
        let map = DiskMap::new(Sysfs::new(r), mounts);
        (t, map)
    }

    fn dev(maj: u32, min: u32) -> u64 {
        libc::makedev(maj, min)
    }

    #[test]
    fn partitions_of_one_disk_share_one_gate() {
        let (_t, map) = map();
        let mut g = DiskGroups::with_map(map);
        let cfg = settings(vec![]);
        let a = g.device(dev(8, 1), Path::new("/a/f"), &cfg);
        let b = g.device(dev(8, 2), Path::new("/b/f"), &cfg);
        let c = g.device(dev(8, 17), Path::new("/c/f"), &cfg);
        let shm = g.device(dev(0, 27), Path::new("/shm/f"), &cfg);
        assert!(
            Arc::ptr_eq(&a.gate, &b.gate),
            "sda1 and sda2 share sda's gate"
        );
        assert!(!Arc::ptr_eq(&a.gate, &c.gate), "sdb has its own");
        assert!(!Arc::ptr_eq(&a.gate, &shm.gate));
        assert_eq!(a.gate.limit(), 1, "sda is rotational");
        assert_eq!(c.gate.limit(), 2, "sdb is not: one reader per core");
        assert!(Arc::ptr_eq(
            &a.gate,
            &g.device(dev(8, 1), Path::new("/"), &cfg).gate
        ));
        let names: Vec<String> = cfg
            .counters
            .disks()
            .iter()
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(names, ["sda", "sdb", "tmpfs 0:27"]);
    }

    #[test]
    fn an_override_on_a_partition_fixes_its_whole_disk() {
        let (_t, map) = map();
        let mut g = DiskGroups::with_map(map);
        let o = |s: &str| DeviceJobs {
            spec: s.into(),
            dev: None,
            jobs: 3,
        };
        let cfg = settings(vec![o("sda2")]);
        // The group is first met through sda1: sda2's override still applies.
        let a = g.device(dev(8, 1), Path::new("/a/f"), &cfg);
        assert_eq!(a.gate.limit(), 3);
        assert_eq!(a.pool.workers(), 3);
        let c = g.device(dev(8, 17), Path::new("/c/f"), &cfg);
        assert_eq!(
            c.pool.workers(),
            crate::device::IO_READERS,
            "sdb keeps its adaptive budget"
        );
        let line = describe(
            &g.map.as_mut().unwrap().group_of(dev(8, 2), None),
            &Plan {
                start: 3,
                max: 3,
                adaptive: false,
                cores: 2,
            },
            "--device-jobs sda2=3",
        );
        assert_eq!(
            line,
            "parsum: disk sda (file systems sda1, sda2; rotational per sysfs): \
             3 reader(s) [--device-jobs sda2=3]"
        );
    }
}
