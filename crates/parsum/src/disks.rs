//! Disks: which physical block devices a file system sits on, and the disk
//! groups that share one reader budget.
//!
//! A file system (an `st_dev`) is resolved to a set of *physical disks*
//! through sysfs and `/proc/self/mountinfo`:
//!
//! - a block device with `slaves/` (`dm-*`: LVM, dm-crypt; `md*`: RAID) is
//!   replaced by its slaves, recursively;
//! - a partition (it has a `partition` file) is replaced by its parent
//!   directory, the disk (which may itself be an `md` or `dm` device);
//! - an anonymous `st_dev` (major 0: btrfs subvolumes, ZFS) is looked up in
//!   mountinfo; a `/dev/...` mount source is resolved as above, and btrfs
//!   adds every member listed in `/sys/fs/btrfs/<uuid>/devices/`;
//! - network, FUSE, memory and pseudo file systems (NFS, SMB, `fuse.*`,
//!   tmpfs, overlay, proc...) have no disk: each is its own group, keyed by
//!   its `st_dev` (ZFS: by its pool).
//!
//! Every mounted file system is resolved once, up front ([`DiskMap::new`]),
//! and file systems whose disk sets overlap are merged (union-find over
//! disks). An anonymous `st_dev` the table does not list makes the map read
//! mountinfo again: it may have been mounted during the run. Invariant: two file systems that share a disk are in the same
//! group, whatever order they are met in. Resolution never loops (a device
//! is visited once per walk through `slaves/`) and never fails: anything
//! missing or unreadable makes the device count as a disk of its own.
//!
//! The sysfs root and the mountinfo text are parameters, so the rules are
//! unit-tested against fake trees without root.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The file system's `st_dev`.
    pub dev: u64,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// The mount table, parsed.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    mounts: Vec<Mount>,
    /// `st_dev` → index of its first mount.
    first: HashMap<u64, usize>,
}

impl MountTable {
    /// Parses mountinfo; malformed lines are ignored.
    ///
    /// A line is `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] -
    /// FSTYPE SOURCE SUPER_OPTIONS`, with space, tab, newline and backslash
    /// in paths escaped as octal (`\040`). Nothing else is escaped: a path
    /// that is not UTF-8 comes as raw bytes, so the table is bytes, not
    /// text (one such mount point must not cost the whole table).
    pub fn parse(text: impl AsRef<[u8]>) -> MountTable {
        let mounts = text
            .as_ref()
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
                let id = std::str::from_utf8(fields.get(2)?).ok()?;
                let (maj, min) = id.split_once(':')?;
                let dev = libc::makedev(maj.parse().ok()?, min.parse().ok()?);
                let mount_point = PathBuf::from(OsString::from_vec(unescape(fields.get(4)?)));
                let sep = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
                Some(Mount {
                    dev,
                    mount_point,
                    fstype: String::from_utf8_lossy(fields.get(sep + 1)?).into_owned(),
                    source: String::from_utf8_lossy(&unescape(fields.get(sep + 2)?)).into_owned(),
                })
            })
            .collect::<Vec<Mount>>();
        let mut first = HashMap::new();
        for (i, m) in mounts.iter().enumerate() {
            first.entry(m.dev).or_insert(i);
        }
        MountTable { mounts, first }
    }

    /// This process's mount table (empty if `/proc` is not readable).
    pub fn read() -> MountTable {
        MountTable::parse(std::fs::read("/proc/self/mountinfo").unwrap_or_default())
    }

    /// The mount of `dev` (the first listed: later ones are bind mounts or
    /// remounts of the same file system).
    pub fn by_dev(&self, dev: u64) -> Option<&Mount> {
        self.first.get(&dev).map(|&i| &self.mounts[i])
    }

    /// The mount that holds the absolute path `path`: the longest mount
    /// point that is a prefix of it (the last one listed if stacked).
    pub fn containing(&self, path: &Path) -> Option<&Mount> {
        self.mounts
            .iter()
            .filter(|m| path.starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.components().count())
    }

    /// Every distinct `st_dev` mounted, in table order.
    pub fn devs(&self) -> impl Iterator<Item = u64> + '_ {
        let mut seen = HashSet::new();
        self.mounts
            .iter()
            .map(|m| m.dev)
            .filter(move |d| seen.insert(*d))
    }
}

/// Undoes mountinfo's octal escapes (`\040` is a space); the bytes may
/// not be UTF-8.
fn unescape(s: impl AsRef<[u8]>) -> Vec<u8> {
    let b = s.as_ref();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |a, c| a.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// `MAJOR:MINOR` of a device number.
pub fn dev_id(dev: u64) -> String {
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

/// What a file system reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// These physical disks (block device names: `sda`, `nvme0n1`, `loop0`).
    Disks(BTreeSet<String>),
    /// No disk parsum can see (network, FUSE, memory, pseudo, or
    /// unresolvable): a group of its own, under this name (`tmpfs 0:27`).
    Own(String),
}

impl Backing {
    /// The union-find keys of this backing: its disks, or its own name.
    fn keys(&self) -> Vec<String> {
        match self {
            Backing::Disks(d) => d.iter().cloned().collect(),
            Backing::Own(name) => vec![name.clone()],
        }
    }
}

/// A file system, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSystem {
    pub dev: u64,
    /// How `-v` names it: its block device (`loop0p1`, `dm-0`), or its
    /// type and `MAJ:MIN` when it has none (`tmpfs 0:27`).
    pub label: String,
    pub backing: Backing,
}

/// File system types that have no disk of their own: each such file system
/// is its own group. (`fuseblk` is not here: its source is a block device.)
const NO_DISK: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "virtiofs",
    "ceph",
    "glusterfs",
    "afs",
    "lustre",
    "fuse",
    "tmpfs",
    "ramfs",
    "overlay",
    "aufs",
    "squashfuse",
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "configfs",
    "bpf",
    "mqueue",
    "hugetlbfs",
    "pstore",
    "efivarfs",
    "binfmt_misc",
    "autofs",
    "nsfs",
];

fn has_no_disk(fstype: &str) -> bool {
    NO_DISK.contains(&fstype) || fstype.starts_with("fuse.") || fstype.starts_with("nfs")
}

/// Resolves devices through a sysfs tree (`/sys`, or a fake one in tests).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

/// How deep `slaves/` and partition parents may nest (dm-crypt on LVM on md
/// on partitions is 4); deeper is a cycle or nonsense.
const MAX_DEPTH: usize = 16;

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    fn block(&self, name: &str) -> PathBuf {
        self.root.join("class/block").join(name)
    }

    /// The block device named by `MAJ:MIN` (its sysfs name), if any.
    pub fn name_of(&self, id: &str) -> Option<String> {
        let p = std::fs::canonicalize(self.root.join("dev/block").join(id)).ok()?;
        Some(p.file_name()?.to_string_lossy().into_owned())
    }

    /// The physical disks under block device `name`. Never empty: a device
    /// whose slaves cannot be followed counts as a disk itself.
    pub fn disks_of(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut seen = HashSet::new();
        self.collect_disks(name, 0, &mut out, &mut seen);
        if out.is_empty() {
            out.insert(name.to_string());
        }
        out
    }

    fn collect_disks(
        &self,
        name: &str,
        depth: usize,
        out: &mut BTreeSet<String>,
        seen: &mut HashSet<String>,
    ) {
        if depth > MAX_DEPTH || !seen.insert(name.to_string()) {
            return;
        }
        let dir = self.block(name);
        let mut slaves: Vec<String> = std::fs::read_dir(dir.join("slaves"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !slaves.is_empty() {
            slaves.sort();
            for s in slaves {
                self.collect_disks(&s, depth + 1, out, seen);
            }
            return;
        }
        if dir.join("partition").exists() {
            let parent = std::fs::canonicalize(&dir)
                .ok()
                .and_then(|p| Some(p.parent()?.file_name()?.to_string_lossy().into_owned()));
            if let Some(parent) = parent.filter(|p| self.block(p).exists()) {
                return self.collect_disks(&parent, depth + 1, out, seen);
            }
        }
        out.insert(name.to_string());
    }

    /// sysfs' `queue/rotational` of a disk, if it has one.
    pub fn rotational(&self, disk: &str) -> Option<bool> {
        let s = std::fs::read_to_string(self.block(disk).join("queue/rotational")).ok()?;
        Some(s.trim() == "1")
    }

    /// Whether sysfs knows a block device of this name.
    pub fn exists(&self, name: &str) -> bool {
        !matches!(name, "" | "." | "..") && !name.contains('/') && self.block(name).exists()
    }

    /// The block device a mount source names (`/dev/sda2`,
    /// `/dev/mapper/vg-home`, `/dev/disk/by-uuid/...`), if it names one.
    pub(crate) fn source_device(&self, source: &str) -> Option<String> {
        if !source.starts_with("/dev/") {
            return None;
        }
        let real = std::fs::canonicalize(source).unwrap_or_else(|_| PathBuf::from(source));
        if let Some(name) = real.file_name().map(|n| n.to_string_lossy().into_owned()) {
            if self.exists(&name) {
                return Some(name);
            }
        }
        // A device node under another name (no udev symlinks): its rdev.
        if let Ok(m) = std::fs::metadata(source) {
            if m.file_type().is_block_device() {
                if let Some(name) = self.name_of(&dev_id(m.rdev())) {
                    return Some(name);
                }
            }
        }
        // /dev/mapper/NAME without the node: the dm device whose dm/name it is.
        let mapped = source.strip_prefix("/dev/mapper/")?;
        std::fs::read_dir(self.root.join("class/block"))
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| {
                std::fs::read_to_string(self.block(n).join("dm/name"))
                    .is_ok_and(|s| s.trim() == mapped)
            })
    }

    /// The members of the btrfs file system that has `member` among its
    /// devices (`/sys/fs/btrfs/<uuid>/devices/`), or none if not found.
    fn btrfs_members(&self, member: &str) -> Vec<String> {
        let Ok(fss) = std::fs::read_dir(self.root.join("fs/btrfs")) else {
            return Vec::new();
        };
        for fs in fss.filter_map(|e| e.ok()) {
            let devices = fs.path().join("devices");
            if devices.join(member).exists() {
                let mut names: Vec<String> = std::fs::read_dir(&devices)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                return names;
            }
        }
        Vec::new()
    }

    /// Resolves a mounted file system from its mount table entry.
    fn resolve_mount(&self, dev: u64, m: &Mount) -> FileSystem {
        let id = dev_id(dev);
        if m.fstype == "zfs" {
            // A dataset's pool is the part of the source before '/': all
            // datasets of a pool share its disks, which sysfs does not show.
            let pool = m.source.split('/').next().unwrap_or(&m.source);
            return FileSystem {
                dev,
                label: format!("zfs {id}"),
                backing: Backing::Own(format!("zfs {pool}")),
            };
        }
        let block = (!has_no_disk(&m.fstype))
            .then(|| self.source_device(&m.source))
            .flatten();
        let Some(block) = block else {
            let label = format!("{} {id}", m.fstype);
            return FileSystem {
                dev,
                label: label.clone(),
                backing: Backing::Own(label),
            };
        };
        let mut disks = self.disks_of(&block);
        if m.fstype == "btrfs" {
            for member in self.btrfs_members(&block) {
                disks.extend(self.disks_of(&member));
            }
        }
        FileSystem {
            dev,
            label: block,
            backing: Backing::Disks(disks),
        }
    }

    /// Resolves the file system `dev`. `mounts` is the mount table; `hint`
    /// is a path on the file system, used when `dev` is anonymous and not
    /// mounted itself (a btrfs subvolume below its mount).
    pub fn resolve(&self, dev: u64, mounts: &MountTable, hint: Option<&Path>) -> FileSystem {
        let id = dev_id(dev);
        if libc::major(dev) != 0 {
            if let Some(name) = self.name_of(&id) {
                return FileSystem {
                    dev,
                    backing: Backing::Disks(self.disks_of(&name)),
                    label: name,
                };
            }
        }
        if let Some(m) = mounts.by_dev(dev) {
            return self.resolve_mount(dev, m);
        }
        let hint = hint.map(|h| std::fs::canonicalize(h).unwrap_or_else(|_| h.to_path_buf()));
        if let Some(m) = hint.and_then(|h| mounts.containing(&h)) {
            if libc::major(m.dev) == 0 && !has_no_disk(&m.fstype) {
                let outer = self.resolve_mount(m.dev, m);
                // The same file system as its mount (btrfs gives every
                // subvolume, even the top one, an `st_dev` of its own).
                if let Backing::Disks(_) = outer.backing {
                    return FileSystem { dev, ..outer };
                }
            }
            // A file system without disk that reports unlisted devices
            // (overlayfs: one per layer for its files) is one group with
            // its mount, so an override on the mount covers its files.
            if has_no_disk(&m.fstype) {
                return FileSystem {
                    dev,
                    label: format!("{} {id}", m.fstype),
                    backing: Backing::Own(format!("{} {}", m.fstype, dev_id(m.dev))),
                };
            }
        }
        let label = format!("{id} (not mounted)");
        FileSystem {
            dev,
            label: label.clone(),
            backing: Backing::Own(label),
        }
    }
}

/// A disk group: the disks that share one reader budget, and the file
/// systems on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `loop0`, `sda+sdb`, or an own group's name (`tmpfs 0:27`).
    pub name: String,
    /// The disks (or the own group's name), sorted: its union-find keys.
    pub keys: Vec<String>,
    /// The file systems known on it, by label, sorted.
    pub members: Vec<String>,
    /// Whether these are disks (not an own group).
    pub physical: bool,
    /// Rotational if any disk is; `None` if sysfs says nothing (or no disk).
    pub rotational: Option<bool>,
}

impl Group {
    /// How many disks share the budget (1 for an own group).
    pub fn disks(&self) -> usize {
        self.keys.len().max(1)
    }
}

/// Every file system seen, resolved, and the groups they form.
#[derive(Debug)]
pub struct DiskMap {
    sys: Sysfs,
    mounts: MountTable,
    /// Where `mounts` was read from: read again when a file system that
    /// it does not list is met (mounted since). `None`: a fixed table.
    mountinfo: Option<PathBuf>,
    /// The text `mounts` was parsed from: parsed again only if it changed.
    mountinfo_text: Vec<u8>,
    fs: HashMap<u64, FileSystem>,
    /// Each distinct file system label → the first key of its backing:
    /// members are listed from these, not from every file system (a btrfs
    /// volume with thousands of snapshots has thousands of `st_dev`s and
    /// one label).
    labels: HashMap<String, String>,
    /// Union-find over disk keys: key → parent.
    parent: HashMap<String, String>,
}

impl DiskMap {
    /// Resolves every mounted file system and groups them.
    pub fn new(sys: Sysfs, mounts: MountTable) -> DiskMap {
        let mut map = DiskMap {
            sys,
            mounts,
            mountinfo: None,
            mountinfo_text: Vec::new(),
            fs: HashMap::new(),
            labels: HashMap::new(),
            parent: HashMap::new(),
        };
        let devs: Vec<u64> = map.mounts.devs().collect();
        for dev in devs {
            map.file_system(dev, None);
        }
        map
    }

    /// This machine's map (`/sys`, `/proc/self/mountinfo`).
    pub fn system() -> DiskMap {
        DiskMap::with_mountinfo(Sysfs::new("/sys"), "/proc/self/mountinfo")
    }

    /// The map of the mount table in the file `mountinfo`, read now and
    /// again whenever a file system it does not list is met.
    pub fn with_mountinfo(sys: Sysfs, mountinfo: impl Into<PathBuf>) -> DiskMap {
        let path = mountinfo.into();
        let text = std::fs::read(&path).unwrap_or_default();
        let mut map = DiskMap::new(sys, MountTable::parse(&text));
        map.mountinfo = Some(path);
        map.mountinfo_text = text;
        map
    }

    pub fn sysfs(&self) -> &Sysfs {
        &self.sys
    }

    /// The resolved file system `dev` (resolved and grouped now if new).
    pub fn file_system(&mut self, dev: u64, hint: Option<&Path>) -> &FileSystem {
        if !self.fs.contains_key(&dev) {
            // An anonymous st_dev the table does not list was mounted since
            // it was read (or is a btrfs subvolume, never listed): read it
            // again, or the file system would be taken for part of the
            // mount it sits under.
            if libc::major(dev) == 0 && self.mounts.by_dev(dev).is_none() {
                self.reload_mounts();
            }
            let fs = self.sys.resolve(dev, &self.mounts, hint);
            let keys = fs.backing.keys();
            for k in &keys {
                self.parent.entry(k.clone()).or_insert_with(|| k.clone());
            }
            for w in keys.windows(2) {
                self.union(&w[0], &w[1]);
            }
            self.labels
                .entry(fs.label.clone())
                .or_insert_with(|| keys[0].clone());
            self.fs.insert(dev, fs);
        }
        &self.fs[&dev]
    }

    /// Reads the mount table again, if it came from a file that is still
    /// readable; file systems resolved already keep their resolution.
    fn reload_mounts(&mut self) {
        let Some(path) = &self.mountinfo else {
            return;
        };
        if let Ok(text) = std::fs::read(path) {
            if text != self.mountinfo_text {
                self.mounts = MountTable::parse(&text);
                self.mountinfo_text = text;
            }
        }
    }

    fn find(&mut self, k: &str) -> String {
        let mut root = k.to_string();
        let mut steps = 0;
        while let Some(p) = self.parent.get(&root).filter(|p| **p != root) {
            root = p.clone();
            steps += 1;
            if steps > self.parent.len() {
                break; // cannot happen (union links roots only); never loop
            }
        }
        // Path compression.
        let mut cur = k.to_string();
        while cur != root {
            match self.parent.insert(cur.clone(), root.clone()) {
                Some(next) if next != cur => cur = next,
                _ => break,
            }
        }
        root
    }

    fn union(&mut self, a: &str, b: &str) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // The smaller name is the root: deterministic.
            let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent.insert(child, root);
        }
    }

    /// The group of file system `dev` (see [`Sysfs::resolve`] for `hint`).
    pub fn group_of(&mut self, dev: u64, hint: Option<&Path>) -> Group {
        let first = self.file_system(dev, hint).backing.keys()[0].clone();
        let root = self.find(&first);
        let all: Vec<String> = self.parent.keys().cloned().collect();
        let keys: Vec<String> = {
            let mut k: Vec<String> = all.into_iter().filter(|k| self.find(k) == root).collect();
            k.sort();
            k
        };
        let labels: Vec<(String, String)> = self
            .labels
            .iter()
            .map(|(l, k)| (l.clone(), k.clone()))
            .collect();
        let mut members: Vec<String> = labels
            .into_iter()
            .filter(|(_, k)| self.find(k) == root)
            .map(|(l, _)| l)
            .collect();
        members.sort();
        let physical = matches!(self.fs[&dev].backing, Backing::Disks(_));
        let rotational = if physical {
            keys.iter()
                .filter_map(|d| self.sys.rotational(d))
                .reduce(|a, b| a || b)
        } else {
            None
        };
        let name = if physical {
            keys.join("+")
        } else {
            keys.join(" ")
        };
        Group {
            name,
            keys,
            members,
            physical,
            rotational,
        }
    }

    /// The union-find keys (disks, or an own group's name) a
    /// `--device-jobs` DEV names: a block device name (`sda`, `sda1`,
    /// `dm-0`, `/dev/sda1`, `/dev/mapper/x`), a `MAJ:MIN`, or a path whose
    /// `st_dev` is `dev`. Nothing is added to the map: a device an override
    /// names is not a member of its group unless it is mounted.
    pub fn keys_of_spec(&self, spec: &str, dev: Option<u64>) -> Vec<String> {
        let fs_keys = |d: u64, hint: Option<&Path>| match self.fs.get(&d) {
            Some(fs) => fs.backing.keys(),
            None => self.sys.resolve(d, &self.mounts, hint).backing.keys(),
        };
        if let Some(d) = dev {
            return fs_keys(d, Some(Path::new(spec)));
        }
        let name = spec.strip_prefix("/dev/").unwrap_or(spec);
        if let Some((maj, min)) = name.split_once(':') {
            if let (Ok(maj), Ok(min)) = (maj.parse(), min.parse()) {
                return fs_keys(libc::makedev(maj, min), None);
            }
        }
        if let Some(block) = self.sys.source_device(&format!("/dev/{name}")) {
            return self.sys.disks_of(&block).into_iter().collect();
        }
        vec![name.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs: `disk(name)` and `part(disk, part)` make the device
    /// directories and the `class/block` and `dev/block` links.
    struct FakeSys {
        dir: tempfile::TempDir,
    }

    impl FakeSys {
        fn new() -> FakeSys {
            let f = FakeSys {
                dir: tempfile::tempdir().unwrap(),
            };
            for d in [
                "class/block",
                "dev/block",
                "devices/virtual/block",
                "fs/btrfs",
            ] {
                std::fs::create_dir_all(f.root().join(d)).unwrap();
            }
            f
        }
        fn root(&self) -> &Path {
            self.dir.path()
        }
        fn sysfs(&self) -> Sysfs {
            Sysfs::new(self.root())
        }
        fn link(&self, name: &str, id: &str, rel: &str) {
            let real = self.root().join("devices").join(rel);
            std::fs::create_dir_all(&real).unwrap();
            std::fs::write(real.join("dev"), format!("{id}\n")).unwrap();
            symlink(&real, self.root().join("class/block").join(name)).unwrap();
            symlink(&real, self.root().join("dev/block").join(id)).unwrap();
        }
        fn disk(&self, name: &str, id: &str, rotational: bool) {
            let rel = format!("virtual/block/{name}");
            self.link(name, id, &rel);
            let q = self.root().join("devices").join(&rel).join("queue");
            std::fs::create_dir_all(&q).unwrap();
            std::fs::write(q.join("rotational"), if rotational { "1\n" } else { "0\n" }).unwrap();
        }
        fn part(&self, disk: &str, name: &str, id: &str) {
            let rel = format!("virtual/block/{disk}/{name}");
            self.link(name, id, &rel);
            std::fs::write(
                self.root().join("devices").join(&rel).join("partition"),
                "1\n",
            )
            .unwrap();
        }
        /// A stacked device (dm, md) over `slaves`.
        fn stacked(&self, name: &str, id: &str, slaves: &[&str], dm_name: Option<&str>) {
            let rel = format!("virtual/block/{name}");
            self.link(name, id, &rel);
            let dir = self.root().join("devices").join(&rel);
            std::fs::create_dir_all(dir.join("slaves")).unwrap();
            for s in slaves {
                symlink(
                    self.root().join("class/block").join(s),
                    dir.join("slaves").join(s),
                )
                .unwrap();
            }
            if let Some(n) = dm_name {
                std::fs::create_dir_all(dir.join("dm")).unwrap();
                std::fs::write(dir.join("dm/name"), format!("{n}\n")).unwrap();
            }
        }
    }

    fn dev(maj: u32, min: u32) -> u64 {
        libc::makedev(maj, min)
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn mountinfo(lines: &[(&str, &str, &str, &str)]) -> MountTable {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, (id, mp, fstype, source))| {
                format!(
                    "{} 1 {id} / {mp} rw,relatime shared:{i} - {fstype} {source} rw\n",
                    20 + i
                )
            })
            .collect();
        MountTable::parse(&text)
    }

    #[test]
    fn mountinfo_parses_optional_fields_and_escapes() {
        let t = MountTable::parse(
            "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\
             garbage line\n\
             37 35 0:27 / /dev/shm rw - tmpfs tmpfs rw\n\
             38 35 8:1 / /mnt/bad\\377name rw - ext4 /dev/sda1 rw\n",
        );
        let m = t.by_dev(dev(98, 0)).unwrap();
        assert_eq!(m.mount_point, Path::new("/mnt/with space"));
        assert_eq!(
            (m.fstype.as_str(), m.source.as_str()),
            ("ext3", "/dev/root")
        );
        assert_eq!(t.by_dev(dev(0, 27)).unwrap().fstype, "tmpfs");
        assert_eq!(t.devs().count(), 3);
        let bad = PathBuf::from(OsString::from_vec(b"/mnt/bad\xffname/f".to_vec()));
        assert_eq!(t.containing(&bad).unwrap().dev, dev(8, 1));
        assert_eq!(
            t.containing(Path::new("/mnt/with space/a/b")).unwrap().dev,
            dev(98, 0)
        );
        assert!(t.containing(Path::new("/mnt/with")).is_none());
        assert_eq!(unescape("a\\134b\\011"), b"a\\b\t");
        assert_eq!(unescape("trailing\\04"), b"trailing\\04");
        assert_eq!(unescape("bad\\377"), b"bad\xff");
        // The kernel does not escape bytes that are not UTF-8: one such
        // mount point must not cost the other lines.
        let raw = MountTable::parse(
            b"40 1 0:50 / /mnt/caf\xe9 rw - tmpfs t rw\n41 1 0:51 / /b rw - btrfs /dev/sda rw\n",
        );
        assert_eq!(raw.devs().count(), 2);
        assert_eq!(raw.by_dev(dev(0, 51)).unwrap().fstype, "btrfs");
        let latin1 = PathBuf::from(OsString::from_vec(b"/mnt/caf\xe9/x".to_vec()));
        assert_eq!(raw.containing(&latin1).unwrap().dev, dev(0, 50));
    }

    #[test]
    fn partition_goes_to_its_disk() {
        let f = FakeSys::new();
        f.disk("sda", "8:0", true);
        f.part("sda", "sda1", "8:1");
        f.part("sda", "sda2", "8:2");
        let s = f.sysfs();
        assert_eq!(s.disks_of("sda1"), set(&["sda"]));
        assert_eq!(s.disks_of("sda"), set(&["sda"]));
        let fs = s.resolve(dev(8, 2), &MountTable::default(), None);
        assert_eq!(fs.label, "sda2");
        assert_eq!(fs.backing, Backing::Disks(set(&["sda"])));
        assert_eq!(s.rotational("sda"), Some(true));
        assert_eq!(s.rotational("sda1"), None);
    }

    #[test]
    fn dm_and_md_go_through_slaves_recursively() {
        let f = FakeSys::new();
        f.disk("sda", "8:0", true);
        f.part("sda", "sda1", "8:1");
        f.disk("sdb", "8:16", false);
        f.part("sdb", "sdb1", "8:17");
        f.disk("sdc", "8:32", true);
        f.part("sdc", "sdc1", "8:33");
        f.disk("sdd", "8:48", true);
        f.part("sdd", "sdd1", "8:49");
        // LVM over two partitions of two disks.
        f.stacked("dm-0", "253:0", &["sda1", "sdb1"], Some("vg-home"));
        // md RAID1 over partitions, LVM on it, dm-crypt on that.
        f.stacked("md0", "9:0", &["sdc1", "sdd1"], None);
        f.stacked("dm-1", "253:1", &["md0"], Some("vg2-lv"));
        f.stacked("dm-2", "253:2", &["dm-1"], Some("crypt"));
        let s = f.sysfs();
        assert_eq!(s.disks_of("dm-0"), set(&["sda", "sdb"]));
        assert_eq!(s.disks_of("md0"), set(&["sdc", "sdd"]));
        assert_eq!(s.disks_of("dm-2"), set(&["sdc", "sdd"]));
        // A partition of an md array goes to the array, then its disks.
        f.part("md0", "md0p1", "259:0");
        assert_eq!(s.disks_of("md0p1"), set(&["sdc", "sdd"]));
        // /dev/mapper names without nodes are found through dm/name.
        assert_eq!(
            s.source_device("/dev/mapper/crypt").as_deref(),
            Some("dm-2")
        );
        assert_eq!(s.source_device("/dev/mapper/nosuch"), None);
        assert_eq!(s.source_device("server:/export"), None);
        // --device-jobs takes what the resolution takes: a /dev/mapper name
        // without node (no udev) was refused as "no such device".
        use crate::device::device_exists_in;
        assert!(device_exists_in(&s, "/dev/mapper/crypt"));
        assert!(device_exists_in(&s, "mapper/crypt"));
        assert!(!device_exists_in(&s, "/dev/mapper/nosuch"));
        assert!(device_exists_in(&s, "sda1") && device_exists_in(&s, "/dev/dm-2"));
        assert!(device_exists_in(&s, "253:2"));
        assert!(!device_exists_in(&s, ".") && !device_exists_in(&s, "nosuch"));
    }

    #[test]
    fn cycles_and_missing_entries_do_not_loop_or_panic() {
        let f = FakeSys::new();
        // dm-0 and dm-1 are each other's slave: nonsense, but must end.
        f.stacked("dm-0", "253:0", &[], None);
        f.stacked("dm-1", "253:1", &["dm-0"], None);
        symlink(
            f.root().join("class/block/dm-1"),
            f.root().join("devices/virtual/block/dm-0/slaves/dm-1"),
        )
        .unwrap();
        let s = f.sysfs();
        assert_eq!(s.disks_of("dm-0"), set(&["dm-0"]));
        // A slave that does not exist counts as a disk; an unknown name too.
        f.stacked("dm-5", "253:5", &["ghost"], None);
        assert_eq!(s.disks_of("dm-5"), set(&["ghost"]));
        assert_eq!(s.disks_of("nosuch"), set(&["nosuch"]));
        // A partition whose parent is not a block device is its own disk.
        let orphan = f.root().join("devices/orphan/p1");
        std::fs::create_dir_all(&orphan).unwrap();
        std::fs::write(orphan.join("partition"), "1").unwrap();
        symlink(&orphan, f.root().join("class/block/p1")).unwrap();
        assert_eq!(s.disks_of("p1"), set(&["p1"]));
        // No sysfs at all.
        let none = Sysfs::new("/nonexistent-sysfs");
        let fs = none.resolve(dev(8, 1), &MountTable::default(), None);
        assert!(matches!(fs.backing, Backing::Own(_)), "{fs:?}");
        assert_eq!(none.rotational("sda"), None);
    }

    #[test]
    fn anonymous_btrfs_goes_through_mountinfo_to_all_members() {
        let f = FakeSys::new();
        f.disk("sda", "8:0", true);
        f.part("sda", "sda2", "8:2");
        f.disk("nvme0n1", "259:0", false);
        f.part("nvme0n1", "nvme0n1p3", "259:3");
        let members = f.root().join("fs/btrfs/0f1e-uuid/devices");
        std::fs::create_dir_all(&members).unwrap();
        for m in ["sda2", "nvme0n1p3"] {
            symlink(f.root().join("class/block").join(m), members.join(m)).unwrap();
        }
        // A single-device btrfs elsewhere, not listed in /sys/fs/btrfs.
        f.disk("sdx", "8:96", true);
        let mounts = mountinfo(&[
            ("0:40", "/data", "btrfs", "/dev/sda2"),
            ("0:41", "/data/snap", "btrfs", "/dev/sda2"),
            ("0:42", "/other", "btrfs", "/dev/sdx"),
        ]);
        let s = f.sysfs();
        let fs = s.resolve(dev(0, 40), &mounts, None);
        assert_eq!(fs.label, "sda2");
        assert_eq!(fs.backing, Backing::Disks(set(&["nvme0n1", "sda"])));
        assert_eq!(
            s.resolve(dev(0, 42), &mounts, None).backing,
            Backing::Disks(set(&["sdx"]))
        );
        // A subvolume that is not mounted: found through the path's mount.
        let sub = s.resolve(dev(0, 77), &mounts, Some(Path::new("/data/vol/file")));
        assert_eq!(sub.backing, Backing::Disks(set(&["nvme0n1", "sda"])));
        assert_eq!(sub.label, "sda2");
        // Without a hint it is its own group, and says so.
        let lost = s.resolve(dev(0, 78), &mounts, None);
        assert_eq!(lost.backing, Backing::Own("0:78 (not mounted)".into()));

        let mut map = DiskMap::new(s, mounts);
        let g = map.group_of(dev(0, 41), None);
        assert_eq!(g.name, "nvme0n1+sda");
        assert_eq!(g.members, vec!["sda2"]);
        assert_eq!(g.rotational, Some(true), "rotational if any disk is");
        assert_eq!(g.disks(), 2);
    }

    /// A file system mounted after the map was built (during the run) is
    /// found by reading mountinfo again, not taken for a subvolume of the
    /// mount it sits under: a tmpfs mounted inside a btrfs on a rotational
    /// disk used to join that disk's group (and its one reader).
    #[test]
    fn mounts_made_during_the_run_are_read_again() {
        let f = FakeSys::new();
        f.disk("sda", "8:0", true);
        f.disk("sdx", "8:96", true);
        let info = f.root().join("mountinfo");
        let line = |id: u32, devid: &str, mp: &str, fstype: &str, src: &str| {
            format!("{id} 1 {devid} / {mp} rw - {fstype} {src} rw\n")
        };
        let before = line(20, "0:40", "/data", "btrfs", "/dev/sda");
        std::fs::write(&info, &before).unwrap();
        let mut map = DiskMap::with_mountinfo(f.sysfs(), &info);
        assert_eq!(map.group_of(dev(0, 40), None).name, "sda");
        // Now a tmpfs is mounted under /data, and a btrfs elsewhere.
        let after = before
            + &line(21, "0:99", "/data/t", "tmpfs", "tmpfs")
            + &line(22, "0:50", "/new", "btrfs", "/dev/sdx");
        std::fs::write(&info, after).unwrap();
        let t = map.group_of(dev(0, 99), Some(Path::new("/data/t/f")));
        assert_eq!(t.name, "tmpfs 0:99", "{t:?}");
        assert!(!t.physical);
        // A subvolume of the new btrfs (its st_dev is never listed).
        let sub = map.group_of(dev(0, 51), Some(Path::new("/new/vol/f")));
        assert_eq!(sub.name, "sdx", "{sub:?}");
        // Unreadable mountinfo: the table read before stays.
        std::fs::remove_file(&info).unwrap();
        assert_eq!(
            map.group_of(dev(0, 52), Some(Path::new("/data/x"))).name,
            "sda"
        );
    }

    /// A btrfs backup volume with thousands of snapshots: every snapshot
    /// is a new anonymous st_dev, resolved through its path. Grouping them
    /// must stay cheap (it was quadratic in the file systems seen).
    #[test]
    fn thousands_of_subvolumes_resolve_to_one_group() {
        let f = FakeSys::new();
        f.disk("sda", "8:0", true);
        let info = f.root().join("mountinfo");
        let mut text = String::from("20 1 0:40 / /backup rw - btrfs /dev/sda rw\n");
        // A busy host: many other mounts.
        for i in 0..300 {
            text += &format!(
                "{} 1 0:{} / /run/c{i} rw - tmpfs tmpfs rw\n",
                100 + i,
                1000 + i
            );
        }
        std::fs::write(&info, text).unwrap();
        let mut map = DiskMap::with_mountinfo(f.sysfs(), &info);
        let start = std::time::Instant::now();
        for i in 0..5000u32 {
            let path = format!("/backup/snap{i}/f");
            let g = map.group_of(dev(0, 2000 + i), Some(Path::new(&path)));
            assert_eq!(g.name, "sda");
        }
        // Speed is not asserted here (tests do not time; a busy machine
        // made a 6 s limit flaky): 17 s before the fix (debug build), 1.3 s
        // after. The bound only catches a hang or a return to quadratic
        // time by orders of magnitude.
        let took = start.elapsed();
        assert!(took < std::time::Duration::from_secs(120), "{took:?}");
    }

    /// overlayfs reports its files' `st_dev` as a per-layer anonymous
    /// device mountinfo does not list: such a file system is in the group
    /// of the mount that holds it, not "(not mounted)".
    #[test]
    fn overlay_files_pseudo_devices_are_named_after_their_mount() {
        let f = FakeSys::new();
        let mounts = mountinfo(&[("0:40", "/merged", "overlay", "overlay")]);
        let mut map = DiskMap::new(f.sysfs(), mounts);
        let g = map.group_of(dev(0, 42), Some(Path::new("/merged/f1")));
        assert_eq!(g.name, "overlay 0:40", "the mount's group");
        assert_eq!(g.members, vec!["overlay 0:40", "overlay 0:42"]);
        assert!(!g.physical);
        assert_eq!(map.group_of(dev(0, 40), None), g);
        // Outside any mount: still "(not mounted)".
        let lost = map.group_of(dev(0, 43), Some(Path::new("relative/f")));
        assert_eq!(lost.name, "0:43 (not mounted)");
    }

    #[test]
    fn network_fuse_and_memory_file_systems_are_their_own_groups() {
        let f = FakeSys::new();
        f.disk("vda", "254:0", true);
        let mounts = mountinfo(&[
            ("254:0", "/", "ext4", "/dev/vda"),
            ("0:27", "/dev/shm", "tmpfs", "tmpfs"),
            ("0:28", "/run", "tmpfs", "tmpfs"),
            ("0:50", "/net", "nfs4", "server:/export"),
            ("0:51", "/smb", "cifs", "//server/share"),
            ("0:52", "/fuse", "fuse.sshfs", "me@host:"),
            ("0:53", "/ovl", "overlay", "overlay"),
            ("0:60", "/tank/a", "zfs", "tank/a"),
            ("0:61", "/tank/b", "zfs", "tank/b"),
            // A FUSE file system whose source looks like a device is still FUSE.
            ("0:62", "/fz", "fuse.foo", "/dev/vda"),
        ]);
        let mut map = DiskMap::new(f.sysfs(), mounts);
        let shm = map.group_of(dev(0, 27), None);
        assert_eq!(shm.name, "tmpfs 0:27");
        assert!(!shm.physical);
        assert_eq!(shm.rotational, None);
        assert_ne!(
            map.group_of(dev(0, 28), None),
            shm,
            "each tmpfs its own group"
        );
        assert_eq!(map.group_of(dev(0, 50), None).name, "nfs4 0:50");
        assert_eq!(map.group_of(dev(0, 51), None).name, "cifs 0:51");
        assert_eq!(map.group_of(dev(0, 52), None).name, "fuse.sshfs 0:52");
        assert_eq!(map.group_of(dev(0, 53), None).name, "overlay 0:53");
        assert_eq!(map.group_of(dev(0, 62), None).name, "fuse.foo 0:62");
        let a = map.group_of(dev(0, 60), None);
        assert_eq!(a.name, "zfs tank");
        assert_eq!(a.members, vec!["zfs 0:60", "zfs 0:61"]);
        let root = map.group_of(dev(254, 0), None);
        assert_eq!((root.name.as_str(), root.physical), ("vda", true));
        assert_eq!(root.members, vec!["vda"]);
    }

    #[test]
    fn overlapping_file_systems_share_one_group() {
        let f = FakeSys::new();
        for (d, id) in [("sda", "8:0"), ("sdb", "8:16"), ("sdc", "8:32")] {
            f.disk(d, id, false);
        }
        f.part("sda", "sda1", "8:1");
        f.part("sda", "sda2", "8:2");
        f.part("sdb", "sdb1", "8:17");
        f.part("sdb", "sdb2", "8:18");
        f.part("sdc", "sdc1", "8:33");
        f.stacked("md0", "9:0", &["sda2", "sdb2"], None);
        // sda1 and sdb1 alone would be two groups; md0 spans both disks.
        let mounts = mountinfo(&[
            ("8:1", "/a", "ext4", "/dev/sda1"),
            ("8:17", "/b", "ext4", "/dev/sdb1"),
            ("9:0", "/raid", "xfs", "/dev/md0"),
            ("8:33", "/c", "ext4", "/dev/sdc1"),
        ]);
        let mut map = DiskMap::new(f.sysfs(), mounts);
        let a = map.group_of(dev(8, 1), None);
        assert_eq!(a.name, "sda+sdb");
        assert_eq!(a.members, vec!["md0", "sda1", "sdb1"]);
        assert_eq!(map.group_of(dev(8, 17), None), a);
        assert_eq!(map.group_of(dev(9, 0), None), a);
        assert_eq!(a.rotational, Some(false));
        let c = map.group_of(dev(8, 33), None);
        assert_eq!((c.name.as_str(), c.disks()), ("sdc", 1));
        // --device-jobs specs name disks, partitions, stacks, MAJ:MIN.
        assert_eq!(map.keys_of_spec("sdb1", None), vec!["sdb"]);
        assert_eq!(map.keys_of_spec("/dev/md0", None), vec!["sda", "sdb"]);
        assert_eq!(map.keys_of_spec("8:33", None), vec!["sdc"]);
        assert_eq!(map.keys_of_spec("sdc", None), vec!["sdc"]);
        // An unmounted partition named by an override joins no member list.
        f.part("sdc", "sdc2", "8:34");
        assert_eq!(map.keys_of_spec("8:34", None), vec!["sdc"]);
        assert_eq!(map.group_of(dev(8, 33), None).members, vec!["sdc1"]);
    }
}
