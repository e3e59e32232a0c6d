//! Work items of the distributed walk, and one rank's queue of them.
//!
//! A work item is a PATH argument to start from, a directory to list (one
//! level, [`crate::walk::walk_level`]), or a batch of files to hash. Listing
//! a root or a directory yields new items (its subdirectories, its files in
//! batches) and the walk's notes (skips, errors) as records. Items name
//! everything by path, so any rank can take any item; a file also keeps its
//! directory's descriptor while it stays on the rank that listed it (the
//! queue is bounded, see `steal.rs`, so few are held).
//!
//! Invariant: every item is in exactly one place: a rank's [`Queue`], a
//! message in flight, or the rank's hasher. [`Queue::split`] moves half of
//! a queue out (the oldest items, the ones nearest the root, which tend to
//! hold the most work) and keeps the rest; nothing is copied.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use super::record::{Outcome, Record};
use super::wire::{Dec, Enc, WireResult};
use crate::dirfd::DirFd;
use crate::hash::{os_message, FileStat};
use crate::pipeline::{BATCH_BYTES, BATCH_FILES};
use crate::walk::{walk_level, walk_subtree_level, DirRef, Event, WalkOpts};

/// A regular file to hash, found by some rank's listing.
#[derive(Debug, Clone)]
pub struct FileTask {
    /// Index of the PATH argument it is under.
    pub root: u32,
    /// The path as printed.
    pub path: PathBuf,
    /// As listed: the "before" of the changed-during-read check.
    pub stat: FileStat,
    /// Reached through a followed link (open it following links).
    pub via_link: bool,
    /// Its directory, on the rank that listed it, to open it with `openat`
    /// as the single-process walk does; not sent (a thief opens by path).
    pub dir: Option<Arc<DirFd>>,
}

/// A directory (or PATH argument) to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dir {
    /// The `root`-th PATH argument, as typed.
    Root(u32, PathBuf),
    /// A directory below the `u32`-th argument.
    Below(u32, DirRef),
}

/// What one listing produced.
#[derive(Default)]
pub struct Listing {
    /// Subdirectories to list.
    pub dirs: Vec<Dir>,
    /// The files, in batches.
    pub files: Vec<Vec<FileTask>>,
    /// Skips and errors, as records.
    pub notes: Vec<Record>,
}

/// Lists one directory level (or a root, which may also be a file).
pub fn list(dir: Dir, opts: &WalkOpts) -> Listing {
    let mut out = Listing::default();
    let mut files = Vec::new();
    let root = match &dir {
        Dir::Root(r, _) | Dir::Below(r, _) => *r,
    };
    let mut emit = |ev: Event| match ev {
        Event::File(e) => files.push(FileTask {
            root,
            path: e.path,
            stat: e.stat,
            via_link: e.via_link,
            dir: e.dir,
        }),
        // Dropping the subtree closes its descriptor: items hold none.
        Event::Mount(sub) => out.dirs.push(Dir::Below(root, sub.to_ref())),
        Event::Skipped(path, why) => out.notes.push(Record {
            root,
            path,
            outcome: Outcome::Skipped(why),
        }),
        Event::Error(path, e) => out.notes.push(Record {
            root,
            path,
            outcome: Outcome::WalkError(os_message(&e)),
        }),
    };
    match dir {
        Dir::Root(_, path) => walk_level(&path, opts, &mut emit),
        Dir::Below(_, d) => {
            let path = d.path.clone();
            match d.open() {
                Ok(sub) => walk_subtree_level(sub, opts, &mut emit),
                Err(e) => emit(Event::Error(path, e)),
            }
        }
    }
    out.files = batches(files);
    out
}

/// Cuts files into batches as the pipeline does ([`BATCH_FILES`] files or
/// [`BATCH_BYTES`] bytes), so a batch is a fair unit to hand out.
fn batches(files: Vec<FileTask>) -> Vec<Vec<FileTask>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for f in files {
        bytes += f.stat.size;
        cur.push(f);
        if cur.len() >= BATCH_FILES || bytes >= BATCH_BYTES {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A thief's share is cut at about this many encoded bytes: far below the
/// 2 GiB that an MPI message's i32 count allows, and still thousands of
/// batches.
pub const SHARE_BYTES: usize = 64 << 20;

impl Dir {
    /// Its size in a work message ([`Queue::encode`]).
    fn wire_size(&self) -> usize {
        match self {
            Dir::Root(_, p) => 1 + 4 + 8 + p.as_os_str().len(),
            Dir::Below(_, d) => {
                1 + 4
                    + 16
                    + d.path.as_os_str().len()
                    + d.rel.as_os_str().len()
                    + 4 * 8
                    + 16 * d.ancestors.len()
                    + 1
            }
        }
    }
}

impl FileTask {
    /// Its size in a work message ([`Queue::encode`]).
    fn wire_size(&self) -> usize {
        4 + 8 + self.path.as_os_str().len() + 6 * 8 + 1
    }
}

/// One rank's work not yet started: directories to list and file batches
/// not yet given to its hasher.
#[derive(Default)]
pub struct Queue {
    /// Directories not yet listed.
    pub dirs: VecDeque<Dir>,
    /// File batches not yet hashed.
    pub files: VecDeque<Vec<FileTask>>,
}

impl Queue {
    /// Whether there is no work (the rank is passive).
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.files.is_empty()
    }

    /// Adds a listing's items (its notes are the caller's).
    pub fn extend(&mut self, dirs: Vec<Dir>, files: Vec<Vec<FileTask>>) {
        self.dirs.extend(dirs);
        self.files.extend(files);
    }

    /// Takes half of the work for a thief: half the directories and half
    /// the file batches, rounded down, oldest first; a single item is kept
    /// (its owner is about to do it), except that a lone directory goes
    /// when file batches remain. The share stops at about [`SHARE_BYTES`]
    /// encoded (at least one item goes), so a queue of millions of files
    /// never makes a message near MPI's i32 count limit. `None` if nothing
    /// can be given.
    pub fn split(&mut self) -> Option<Queue> {
        self.split_within(SHARE_BYTES)
    }

    /// [`Queue::split`], with a share of at most `budget` encoded bytes
    /// (or one item, if that alone is more).
    pub(crate) fn split_within(&mut self, budget: usize) -> Option<Queue> {
        let mut give_dirs = self.dirs.len() / 2;
        let mut give_files = self.files.len() / 2;
        if give_dirs + give_files == 0 && !self.dirs.is_empty() && !self.files.is_empty() {
            give_dirs = 1;
        }
        if give_dirs + give_files == 0 {
            return None;
        }
        // The count's and the kinds' bytes, then item by item, oldest first.
        let mut used = 16;
        let mut fits = |size: usize| {
            let ok = used == 16 || used + size <= budget;
            if ok {
                used += size;
            }
            ok
        };
        give_dirs = self
            .dirs
            .iter()
            .take(give_dirs)
            .take_while(|d| fits(d.wire_size()))
            .count();
        give_files = self
            .files
            .iter()
            .take(give_files)
            .take_while(|b| fits(b.iter().map(FileTask::wire_size).sum::<usize>() + 8))
            .count();
        Some(Queue {
            dirs: self.dirs.drain(..give_dirs).collect(),
            files: self.files.drain(..give_files).collect(),
        })
    }

    /// Encodes the queue (a thief's share) for a work message.
    pub fn encode(&self, e: &mut Enc) {
        e.u64(self.dirs.len() as u64);
        for d in &self.dirs {
            match d {
                Dir::Root(r, p) => {
                    e.u8(0);
                    e.u32(*r);
                    e.path(p);
                }
                Dir::Below(r, d) => {
                    e.u8(1);
                    e.u32(*r);
                    e.path(&d.path);
                    e.path(&d.rel);
                    e.u64(d.depth as u64);
                    e.dev(d.dev);
                    e.dev(d.root_dev);
                    e.u64(d.ancestors.len() as u64);
                    for (dev, ino) in &d.ancestors {
                        e.dev(*dev);
                        e.u64(*ino);
                    }
                    e.bool(d.via_link);
                }
            }
        }
        e.u64(self.files.len() as u64);
        for batch in &self.files {
            e.u64(batch.len() as u64);
            for f in batch {
                e.u32(f.root);
                e.path(&f.path);
                e.stat(&f.stat);
                e.bool(f.via_link);
            }
        }
    }

    /// Reads a share written by [`Queue::encode`].
    pub fn decode(d: &mut Dec<'_>) -> WireResult<Queue> {
        let mut q = Queue::default();
        for _ in 0..d.u64()? {
            let dir = match d.u8()? {
                0 => Dir::Root(d.u32()?, d.path()?),
                1 => {
                    let root = d.u32()?;
                    let path = d.path()?;
                    let rel = d.path()?;
                    let depth = d.u64()? as usize;
                    let dev = d.u64()?;
                    let root_dev = d.u64()?;
                    let mut ancestors = Vec::new();
                    for _ in 0..d.u64()? {
                        ancestors.push((d.u64()?, d.u64()?));
                    }
                    let via_link = d.bool()?;
                    Dir::Below(
                        root,
                        DirRef {
                            path,
                            rel,
                            depth,
                            dev,
                            root_dev,
                            ancestors,
                            via_link,
                        },
                    )
                }
                k => return Err(format!("malformed message: directory kind {k}")),
            };
            q.dirs.push_back(dir);
        }
        for _ in 0..d.u64()? {
            let mut batch = Vec::new();
            for _ in 0..d.u64()? {
                batch.push(FileTask {
                    root: d.u32()?,
                    path: d.path()?,
                    stat: d.stat()?,
                    via_link: d.bool()?,
                    dir: None,
                });
            }
            if batch.is_empty() {
                return Err("malformed message: an empty file batch".into());
            }
            q.files.push_back(batch);
        }
        if !d.is_empty() {
            return Err("malformed message: bytes after the work items".into());
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn task(i: u64, size: u64) -> FileTask {
        FileTask {
            root: 0,
            path: PathBuf::from(format!("f{i}")),
            stat: FileStat {
                size,
                ..Default::default()
            },
            via_link: false,
            dir: None,
        }
    }

    #[test]
    fn batches_close_at_files_or_bytes() {
        let b = batches((0..130).map(|i| task(i, 1)).collect());
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [64, 64, 2]);
        let b = batches((0..3).map(|i| task(i, BATCH_BYTES)).collect());
        assert_eq!(b.len(), 3);
        assert!(batches(Vec::new()).is_empty());
    }

    #[test]
    fn split_gives_half_and_keeps_a_single_item() {
        let mut q = Queue::default();
        assert!(q.split().is_none());
        q.files.push_back(vec![task(0, 1)]);
        assert!(q.split().is_none(), "a lone batch stays");
        q.dirs.push_back(Dir::Root(0, "d".into()));
        let got = q.split().unwrap();
        assert_eq!((got.dirs.len(), got.files.len()), (1, 0));
        assert_eq!((q.dirs.len(), q.files.len()), (0, 1));
        for i in 1..=5 {
            q.files.push_back(vec![task(i, 1)]);
        }
        let got = q.split().unwrap();
        assert_eq!(got.files.len(), 3);
        assert_eq!(q.files.len(), 3);
        assert_eq!(got.files[0][0].path, PathBuf::from("f0"), "oldest first");
    }

    #[test]
    fn a_share_of_a_huge_queue_stays_within_its_byte_budget_and_loses_nothing() {
        // A directory of millions of files queues tens of thousands of
        // batches: half of them could pass 2 GiB (MPI's i32 count) and end
        // the whole job. The share is cut by its encoded size instead.
        let mut q = Queue::default();
        let long = "n".repeat(1000);
        for i in 0..400u64 {
            let batch = (0..64)
                .map(|j| FileTask {
                    path: PathBuf::from(format!("{long}/{i}/{j}")),
                    ..task(i, 1)
                })
                .collect();
            q.files.push_back(batch);
        }
        for i in 0..10 {
            q.dirs.push_back(Dir::Root(0, format!("{long}{i}").into()));
        }
        let budget = 1 << 20;
        let mut given = 0;
        while let Some(share) = q.split_within(budget) {
            let mut e = Enc::default();
            share.encode(&mut e);
            assert!(e.buf.len() <= budget, "{} bytes", e.buf.len());
            assert!(!share.is_empty());
            given += share.files.len();
            let back = Queue::decode(&mut Dec::new(&e.buf)).unwrap();
            assert_eq!(back.files.len(), share.files.len());
        }
        assert_eq!(given + q.files.len(), 400, "every batch in one place");
        assert!(q.files.len() <= 1 && q.dirs.len() <= 1);
        // The default budget still gives half of an ordinary queue.
        let mut q = Queue::default();
        for i in 0..100 {
            q.files.push_back(vec![task(i, 1)]);
        }
        assert_eq!(q.split().unwrap().files.len(), 50);
    }

    #[test]
    fn listing_a_tree_level_by_level_finds_what_the_walk_finds() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b/c")).unwrap();
        fs::write(r.join("a/b/c/f"), "x").unwrap();
        fs::write(r.join("a/g"), "y").unwrap();
        fs::write(r.join("top"), "z").unwrap();
        std::os::unix::fs::symlink("top", r.join("link")).unwrap();
        let opts = WalkOpts::default();
        let mut whole = Vec::new();
        crate::walk::walk(r, &opts, &mut |e| {
            if let Event::File(f) = e {
                whole.push(f.path)
            }
        });
        let mut q = Queue::default();
        q.dirs.push_back(Dir::Root(0, r.to_path_buf()));
        let (mut files, mut notes) = (Vec::new(), Vec::new());
        while let Some(dir) = q.dirs.pop_back() {
            // Through the wire, as a stolen item would go.
            let mut one = Queue::default();
            one.dirs.push_back(dir);
            let mut e = Enc::default();
            one.encode(&mut e);
            let mut one = Queue::decode(&mut Dec::new(&e.buf)).unwrap();
            let l = list(one.dirs.pop_back().unwrap(), &opts);
            q.extend(l.dirs, Vec::new());
            files.extend(l.files.into_iter().flatten().map(|f| f.path));
            notes.extend(l.notes.into_iter().map(|n| n.path));
        }
        files.sort();
        assert_eq!(files, whole);
        assert_eq!(notes, [r.join("link")]);
    }

    #[test]
    fn a_replaced_directory_is_reported_not_walked() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("a")).unwrap();
        let mut l = list(Dir::Root(0, r.to_path_buf()), &WalkOpts::default());
        let dir = l.dirs.pop().unwrap();
        // Another directory (so surely another inode) takes its name.
        fs::create_dir(r.join("b")).unwrap();
        fs::write(r.join("b/new"), "n").unwrap();
        fs::remove_dir(r.join("a")).unwrap();
        fs::rename(r.join("b"), r.join("a")).unwrap();
        let l = list(dir, &WalkOpts::default());
        assert!(l.files.is_empty());
        assert_eq!(l.notes.len(), 1);
        assert!(matches!(&l.notes[0].outcome, Outcome::WalkError(t) if t.contains("replaced")));
    }
}
