//! Device numbers from other ranks, translated into this node's.
//!
//! `st_dev` is a node's own numbering: NFS clients (and other network file
//! systems) may number the same file system differently on each node. A
//! file's listed stat and a directory's (dev, ino) travel with stolen work
//! and with hard-link names, and the checks that use them (a file replaced
//! or changed during its read, a directory replaced before it is listed,
//! `--one-file-system`, the `--follow` loop check) compare them with this
//! node's `fstat`. So before such items are used here, every device number
//! in them is translated: learnt by stat-ing one item of that device here
//! and confirming it is the same inode.
//!
//! Invariant: a number is translated only through a mapping confirmed by
//! an inode match; a device this node cannot confirm (every probe failed:
//! the items are gone or replaced) keeps its number, and the items then
//! fail their own checks as they would on the node that listed them.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use super::work::{Dir, FileTask, Queue};
use crate::walk::open_dir;

/// Test hook, read only under a launcher: every device number that rank r
/// sends is increased by r times this value, as if each node numbered its
/// file systems differently (see [`skew`]).
pub const DEV_SKEW_HOOK_VAR: &str = "PARSUM_TEST_MPI_DEV_SKEW";

/// What this rank adds to the device numbers it sends: 0, but for the test
/// hook [`DEV_SKEW_HOOK_VAR`].
pub fn skew() -> u64 {
    static SKEW: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SKEW.get_or_init(|| {
        let per_rank: u64 = std::env::var(DEV_SKEW_HOOK_VAR)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let rank: u64 = crate::launcher::rank().unwrap_or(0).into();
        per_rank.wrapping_mul(rank)
    })
}

/// Learnt translations: (sending rank, its device number) → this node's.
#[derive(Default)]
pub struct DevMap {
    known: HashMap<(i32, u64), u64>,
}

impl DevMap {
    /// Translates a share of work received from rank `from`.
    pub fn localise_queue(&mut self, from: i32, q: &mut Queue) {
        for d in &q.dirs {
            if let Dir::Below(_, r) = d {
                if let Some(&(dev, ino)) = r.ancestors.last() {
                    self.learn(from, dev, || {
                        let fd = open_dir(&r.path, r.via_link).ok()?;
                        let st = rustix::fs::fstat(&fd).ok()?;
                        (st.st_ino == ino).then_some(st.st_dev)
                    });
                }
            }
        }
        for batch in &q.files {
            for t in batch {
                self.learn_file(from, t);
            }
        }
        for d in &mut q.dirs {
            if let Dir::Below(_, r) = d {
                r.dev = self.map(from, r.dev);
                r.root_dev = self.map(from, r.root_dev);
                for a in &mut r.ancestors {
                    a.0 = self.map(from, a.0);
                }
            }
        }
        for batch in &mut q.files {
            for t in batch {
                t.stat.dev = self.map(from, t.stat.dev);
            }
        }
    }

    /// Translates a file name (a hard link) received from rank `from`.
    pub fn localise_file(&mut self, from: i32, t: &mut FileTask) {
        self.learn_file(from, t);
        t.stat.dev = self.map(from, t.stat.dev);
    }

    fn learn_file(&mut self, from: i32, t: &FileTask) {
        self.learn(from, t.stat.dev, || {
            // A path longer than PATH_MAX: from its directory, opened one
            // component at a time.
            if let Some(dir) = super::hasher::long_path_parent(&t.path) {
                let flags = if t.via_link {
                    rustix::fs::AtFlags::empty()
                } else {
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW
                };
                let st = rustix::fs::statat(dir.fd(), t.path.file_name()?, flags).ok()?;
                let st = crate::hash::FileStat::of_stat(&st);
                return (st.ino == t.stat.ino).then_some(st.dev);
            }
            let m = if t.via_link {
                std::fs::metadata(&t.path)
            } else {
                std::fs::symlink_metadata(&t.path)
            }
            .ok()?;
            (m.ino() == t.stat.ino).then_some(m.dev())
        });
    }

    /// Learns `dev` of rank `from` by `probe` (this node's device number of
    /// an item of that device, if it is the same inode), unless known.
    fn learn(&mut self, from: i32, dev: u64, probe: impl FnOnce() -> Option<u64>) {
        if let std::collections::hash_map::Entry::Vacant(v) = self.known.entry((from, dev)) {
            if let Some(local) = probe() {
                v.insert(local);
            }
        }
    }

    fn map(&self, from: i32, dev: u64) -> u64 {
        self.known.get(&(from, dev)).copied().unwrap_or(dev)
    }
}
