//! Hard links hashed once cluster-wide.
//!
//! A file with more than one name is not hashed where its name was taken:
//! the walk sets such names aside, and after the walk every name goes to
//! the rank that owns its file's identity, which hashes each file once,
//! through one of its names, and answers every name with that result. A
//! file's identity is (file-system id from `statvfs`, inode, size, mtime):
//! `st_dev` can differ between NFS clients, the file-system id does not.
//!
//! Invariant: every name set aside gets exactly one record, with the
//! digest (or error) of its file. A file system that reports no id (0,
//! as some pseudo and temporary file systems do) cannot be matched across
//! nodes safely; its names are matched by this rank's `st_dev` and hashed
//! on this rank's own file-system-id-0 share, so two different files are
//! never given one digest.

use std::collections::HashMap;
use std::path::PathBuf;

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::exchange::all_to_all;
use super::hasher::long_path_parent;
use super::record::{Outcome, Record};
use super::steal::fatal;
use super::wire::{Dec, Enc, WireResult};
use super::work::FileTask;
use crate::hash::{hash_file, AlgoSet, HashOpts};
use rustix::fs::{Mode, OFlags};

/// A file's identity across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    /// The file-system id, or (when the file system has none) this
    /// rank's device number, marked by `local`.
    fs: u64,
    local: Option<u32>,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    fn owner(&self, ranks: i32) -> i32 {
        if let Some(rank) = self.local {
            return rank as i32;
        }
        // FNV-1a over the fields that are the same on every node.
        let key = [self.fs.to_le_bytes(), self.ino.to_le_bytes()].concat();
        (super::wire::fnv1a(&key) % ranks as u64) as i32
    }

    fn encode(&self, e: &mut Enc) {
        e.u64(self.fs);
        match self.local {
            Some(r) => {
                e.u8(1);
                e.u32(r);
            }
            None => e.u8(0),
        }
        e.u64(self.ino);
        e.u64(self.size);
        e.i64(self.mtime);
        e.i64(self.mtime_nsec);
    }

    fn decode(d: &mut Dec<'_>) -> WireResult<FileId> {
        Ok(FileId {
            fs: d.u64()?,
            local: match d.u8()? {
                0 => None,
                _ => Some(d.u32()?),
            },
            ino: d.u64()?,
            size: d.u64()?,
            mtime: d.i64()?,
            mtime_nsec: d.i64()?,
        })
    }
}

/// The file-system id of each device, asked once per device.
#[derive(Default)]
struct FsIds(HashMap<u64, u64>);

impl FsIds {
    fn id_of(&mut self, t: &FileTask, rank: i32) -> FileId {
        let fs = *self.0.entry(t.stat.dev).or_insert_with(|| {
            // The file's own file system (`st_dev` is the file's), never
            // its directory's: a followed link or a mount point leads to
            // another one, and its id given to this device would match
            // files there with files here. Through the file's directory
            // where there is one (or must be: a path longer than PATH_MAX
            // cannot be looked up whole), opened as a path only.
            let dir = t.dir.clone().or_else(|| long_path_parent(&t.path));
            match (dir, t.path.file_name()) {
                (Some(dir), Some(name)) => {
                    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
                    if !t.via_link {
                        flags |= OFlags::NOFOLLOW;
                    }
                    rustix::fs::openat(dir.fd(), name, flags, Mode::empty())
                        .and_then(|f| rustix::fs::fstatvfs(&f))
                }
                _ => rustix::fs::statvfs(&t.path),
            }
            .map_or(0, |s| s.f_fsid)
        });
        let (fs, local) = if fs == 0 {
            (t.stat.dev, Some(rank as u32))
        } else {
            (fs, None)
        };
        FileId {
            fs,
            local,
            ino: t.stat.ino,
            size: t.stat.size,
            mtime: t.stat.mtime,
            mtime_nsec: t.stat.mtime_nsec,
        }
    }
}

/// What [`resolve`] did here, for `-v`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkStats {
    /// Names this rank set aside.
    pub names: u64,
    /// Files this rank hashed for everyone's names.
    pub hashed: u64,
    /// Rounds of the two exchanges (names out, results back).
    pub rounds: u32,
}

/// Gives every name in `names` (files with more than one link) its
/// record, hashing each file once in the whole job on `threads` threads. A
/// collective: every rank calls it after the walk.
pub fn resolve(
    world: &SimpleCommunicator,
    names: Vec<FileTask>,
    algos: AlgoSet,
    threads: usize,
) -> (Vec<Record>, LinkStats) {
    let (rank, size) = (world.rank(), world.size());
    let mut ids = FsIds::default();
    // Ask each owner about the names whose file it owns.
    let mut asks: Vec<Enc> = (0..size).map(|_| Enc::default()).collect();
    let mut asked: Vec<Vec<usize>> = vec![Vec::new(); size as usize];
    for (i, t) in names.iter().enumerate() {
        let id = ids.id_of(t, rank);
        let owner = id.owner(size) as usize;
        let e = &mut asks[owner];
        id.encode(e);
        e.u32(t.root);
        e.path(&t.path);
        e.stat(&t.stat);
        e.bool(t.via_link);
        asked[owner].push(i);
    }
    let asked_out = all_to_all(world, asks.into_iter().map(|e| e.buf).collect());
    let incoming = asked_out.incoming;

    // As owner: one hash per file, through the first name asked about.
    let mut files: HashMap<FileId, usize> = HashMap::new();
    let mut first: Vec<FileTask> = Vec::new();
    let mut per_rank: Vec<Vec<usize>> = Vec::with_capacity(size as usize);
    let mut devs = super::devmap::DevMap::default();
    for (from, msg) in incoming.iter().enumerate() {
        let mut d = Dec::new(msg);
        let mut which = Vec::new();
        let decoded: WireResult<()> = (|| {
            while !d.is_empty() {
                let id = FileId::decode(&mut d)?;
                let mut t = FileTask {
                    root: d.u32()?,
                    path: d.path()?,
                    stat: d.stat()?,
                    via_link: d.bool()?,
                    dir: None,
                };
                // Its stat is in the asking node's device numbering.
                devs.localise_file(from as i32, &mut t);
                let k = *files.entry(id).or_insert_with(|| {
                    first.push(t);
                    first.len() - 1
                });
                which.push(k);
            }
            Ok(())
        })();
        if let Err(e) = decoded {
            fatal(world, &format!("hard links from rank {from}: {e}"));
        }
        per_rank.push(which);
    }
    let mut stats = LinkStats {
        names: names.len() as u64,
        hashed: first.len() as u64,
        rounds: asked_out.rounds,
    };
    let outcomes: Vec<Vec<u8>> = if first.is_empty() {
        Vec::new()
    } else {
        let pool = parpool::ThreadPool::with_workers(threads.clamp(1, first.len()));
        pool.map(
            |t: &FileTask| {
                // A path longer than PATH_MAX is opened from its directory,
                // itself opened one component at a time, as the walk's
                // hashing does (`hasher.rs`): depth is no limit here either.
                let dir = long_path_parent(&t.path);
                let r = hash_file(
                    &t.path,
                    algos,
                    HashOpts {
                        no_follow: !t.via_link,
                        listed: Some(t.stat),
                        dir: dir.as_deref().map(crate::dirfd::DirFd::fd),
                        ..Default::default()
                    },
                );
                let mut e = Enc::default();
                Record {
                    root: 0,
                    path: PathBuf::new(),
                    outcome: Outcome::of_hash(r),
                }
                .encode(&mut e);
                e.buf
            },
            &first,
        )
    };

    // Answer each rank, name by name, in the order it asked.
    let answers = per_rank
        .iter()
        .map(|which| {
            let mut buf = Vec::new();
            for &k in which {
                buf.extend_from_slice(&outcomes[k]);
            }
            buf
        })
        .collect();
    let answered = all_to_all(world, answers);
    let replies = answered.incoming;
    stats.rounds += answered.rounds;

    let mut records = Vec::with_capacity(names.len());
    let mut names: Vec<Option<FileTask>> = names.into_iter().map(Some).collect();
    for (owner, reply) in replies.iter().enumerate() {
        let mut d = Dec::new(reply);
        for &i in &asked[owner] {
            let t = names[i].take().expect("each name asked once");
            let got = Record::decode(&mut d).unwrap_or_else(|e| {
                fatal(world, &format!("hard-link digests from rank {owner}: {e}"))
            });
            records.push(Record {
                root: t.root,
                path: t.path,
                outcome: got.outcome,
            });
        }
        if !d.is_empty() {
            fatal(
                world,
                &format!("hard-link digests from rank {owner}: too many"),
            );
        }
    }
    (records, stats)
}
