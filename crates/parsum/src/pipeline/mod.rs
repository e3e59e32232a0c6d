//! The pipeline: producers (walks, manifest readers) feed files to a pool
//! per disk group (`disk_groups.rs`; all file systems on one disk share
//! it) through parpool's `imap`, and one consumer receives every result in
//! producer order.
//!
//! ```text
//!  producer thread ──batches──▶ pool.imap (its device's pool) ─▶ driver thread ─▶ results ─┐
//!        │                                                                                  │
//!        └── order channel: Start(results) / Batch / Alias / Msg / Sub(stream) ──▶ consumer ◀┘
//! ```
//!
//! One producer, one device. A producer's files all live on one disk group
//! (most often one `st_dev`); a directory on another device (a mount point)
//! becomes a sub-producer on its own thread, whose stream the consumer
//! drains in place (`Sub`), and so does a file of another disk group. That is the article's mount-point parallelism: every mount point
//! under a root, and every root, walks and hashes at the same time.
//!
//! It is also what makes blocking inputs safe with parpool's `imap`, which
//! reads its input lazily, under a lock, on the pool's workers: a worker may
//! block in a producer's channel until that producer sends more or
//! finishes, and a producer only ever waits on its own bounded channel,
//! which that very reader is draining. Streams depend only on earlier
//! streams, so the consumer always makes progress.
//!
//! Ordering: a producer sends each batch into its `imap` input before it
//! sends `Batch` on its order channel; `imap` yields batches in input
//! order, so the consumer sees files exactly in producer order, whatever
//! the thread timing. Consecutive small files share a batch (it closes at
//! [`BATCH_FILES`] files or [`BATCH_BYTES`] bytes; files whose result is
//! carried over from an earlier run count only toward [`BATCH_ITEMS`]).
//!
//! Memory: the batch channel, the `imap` read-ahead and the result channel
//! are bounded, so a producer is at most a fixed number of batches ahead of
//! the consumer, for any tree size. NOTE: the order channel itself is
//! unbounded; it holds one small entry per batch, skip message or
//! sub-stream, so only a tree made mostly of skipped entries (or of files
//! alternating between devices) can grow it.
//!
//! The parts: [`Feeder`] and [`Runs`] (feeder.rs) on the producer's side,
//! `device_stage.rs` for the pool, gate and driver of each producer, and
//! [`Stream`] (stream.rs) on the consumer's side.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use crate::device::DeviceJobs;
use crate::hash::{AlgoSet, FileHash, FileStat, HashError, HashOpts, Splitter};
use crate::output::Note;
use crate::progress::Counters;
use crate::walk::{walk, walk_subtree, Event, Subtree, WalkOpts};
use disk_groups::{Device, DiskGroups};

mod device_stage;
mod disk_groups;
mod feeder;
mod stream;

pub use feeder::{Feeder, Runs};
pub use stream::Stream;

/// A batch closes after this many files...
pub const BATCH_FILES: usize = 64;
/// ...or once it holds this many bytes...
pub const BATCH_BYTES: u64 = 1 << 20;
/// ...or this many items in all, counting those with a carried-over
/// result (`Item::known`), which are not read.
pub const BATCH_ITEMS: usize = 1024;
/// Batches a producer may queue per device before it waits.
const INPUT_BATCHES: usize = 16;
/// Hashed batches a device may hold for the consumer.
const RESULT_BATCHES: usize = 256;

/// One file to hash, with the producer's data `T`.
pub struct Item<T> {
    pub path: PathBuf,
    /// The directory to open `path`'s last component in (see `walk.rs`);
    /// dropped once the file is hashed, so queued results hold no descriptor.
    pub dir: Option<Arc<crate::dirfd::DirFd>>,
    /// As listed: the "before" of the changed-during-read check.
    pub stat: FileStat,
    /// Open with O_NOFOLLOW (the walk saw a regular file, not a link).
    pub no_follow: bool,
    /// The digests to compute, in one read.
    pub algos: AlgoSet,
    /// A result carried over from an earlier run (`--update`): the stage
    /// hands it on in order without opening the file, and the item keeps it,
    /// so the consumer can tell a carried result from a read one.
    pub known: Option<FileHash>,
    pub tag: T,
}

impl<T> Item<T> {
    /// How to open and read this item: as listed, in its directory, large
    /// files split by `splitter` (if any).
    pub(crate) fn hash_opts<'a>(&'a self, splitter: Option<&'a Splitter>) -> HashOpts<'a> {
        HashOpts {
            no_follow: self.no_follow,
            splitter,
            listed: Some(self.stat),
            dir: self.dir.as_deref().map(crate::dirfd::DirFd::fd),
        }
    }

    /// The item that stands for standard input (`-`), as sha256sum names it.
    /// No walk names a file `-` (the file called `-` is `./-`, see
    /// `walk.rs`), so an item's path is `-` exactly when it is this one.
    pub fn stdin(algos: AlgoSet, tag: T) -> Item<T> {
        Item {
            path: PathBuf::from("-"),
            dir: None,
            stat: FileStat {
                nlink: 1,
                ..FileStat::default()
            },
            no_follow: false,
            algos,
            known: None,
            tag,
        }
    }
}

/// Reads standard input to its end now, on the calling thread: the item
/// that stands for it and its hash. The one home of "hash `-`" for every
/// reader that meets it in order: a PATH `-` (tree mode, `--audit`), a `-c`
/// manifest's line `-`, a `--verify` STATE's entry `-`.
pub fn hash_stdin_item<T>(algos: AlgoSet, tag: T) -> (Item<T>, Result<FileHash, HashError>) {
    let result = crate::hash::hash_stdin(algos);
    (Item::stdin(algos, tag), result)
}

/// The consumer's side: called in producer order.
pub trait Sink<T, M> {
    fn done(&mut self, item: Item<T>, result: Result<FileHash, HashError>);
    fn msg(&mut self, m: M);
    /// After each batch: a good moment to flush output.
    fn batch_end(&mut self) {}
    /// Whether the consumer wants no more (its output is gone): the drain
    /// then returns at once and leaves the producers to the process's end.
    fn stopped(&self) -> bool {
        false
    }
}

/// Settings shared by every device.
pub struct Settings {
    pub jobs: Option<usize>,
    pub device_jobs: Vec<DeviceJobs>,
    pub cpus: usize,
    pub verbose: bool,
    /// Splits large BLAKE3 files on devices that take parallel reads.
    pub splitter: Option<Arc<Splitter>>,
    pub counters: Arc<Counters>,
}

/// The disk groups seen so far, shared by all producers.
pub struct Pipeline {
    cfg: Settings,
    devices: Mutex<DiskGroups>,
}

/// A hashed file and its outcome.
pub(crate) type Done<T> = (Item<T>, Result<FileHash, HashError>);

pub(crate) enum Order<T, M> {
    /// The producer's device pipeline started; its batches arrive here.
    Start(Receiver<Vec<Done<T>>>),
    Batch,
    /// A sub-producer (another device): drain it here, in place.
    Sub(Stream<T, M>),
    /// A hard link to a file this producer already sent.
    Alias(Item<T>),
    Msg(M),
}

impl Pipeline {
    pub fn new(cfg: Settings) -> Arc<Pipeline> {
        Arc::new(Pipeline {
            cfg,
            devices: Mutex::new(DiskGroups::default()),
        })
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.cfg.counters
    }

    /// The device (pool and gate) of `dev`'s disk group; `hint` is a file
    /// on `dev` (see `disk_groups.rs`).
    pub(crate) fn device(&self, dev: u64, hint: &Path) -> Arc<Device> {
        self.devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .device(dev, hint, &self.cfg)
    }

    /// Starts a producer on its own thread. `produce` gets a [`Feeder`]; the
    /// returned [`Stream`] yields its results in order.
    pub fn spawn<T, M, P>(self: &Arc<Self>, produce: P) -> Stream<T, M>
    where
        T: Send + 'static,
        M: Send + 'static,
        P: FnOnce(&mut Feeder<T, M>) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let pipe = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("parsum-walk".into())
            .stack_size(64 << 20) // deep trees recurse
            .spawn(move || {
                let mut f = Feeder {
                    pipe,
                    order: tx,
                    dev: None,
                    device: None,
                    same_device: HashMap::new(),
                    input: None,
                    pending: Vec::new(),
                    pending_bytes: 0,
                    pending_reads: 0,
                    links: HashSet::new(),
                };
                produce(&mut f);
                f.flush();
            })
            .expect("spawn producer thread");
        Stream {
            rx,
            handle: Some(handle),
        }
    }
}

/// Starts a producer that walks `root` and queues every file for `algos`;
/// mount points below it get sub-producers of their own.
pub fn spawn_walk(
    pipe: &Arc<Pipeline>,
    root: PathBuf,
    opts: Arc<WalkOpts>,
    algos: AlgoSet,
) -> Stream<(), Note> {
    spawn_walk_with(pipe, root, opts, algos, None)
}

/// What an earlier run knows of a file the walk found (see [`Lookup`]).
pub enum Prior {
    /// Nothing usable: read and hash the file.
    Unknown,
    /// Its result, still valid: carried over, the file is not opened.
    Hashed(FileHash),
    /// Not part of the tree (the state file being replaced): not queued.
    Ignore,
}

/// Asked by a walk for every file it finds, before it is queued, with its
/// path as listed and the walk's `lstat`. Called on producer threads.
pub type Lookup = Arc<dyn Fn(&Path, &FileStat) -> Prior + Send + Sync>;

/// [`spawn_walk`], asking `lookup` (if any) about each file first: a
/// [`Prior::Hashed`] file keeps its place in the order but is not read.
pub fn spawn_walk_with(
    pipe: &Arc<Pipeline>,
    root: PathBuf,
    opts: Arc<WalkOpts>,
    algos: AlgoSet,
    lookup: Option<Lookup>,
) -> Stream<(), Note> {
    let walk = WalkJob {
        opts,
        algos,
        lookup,
    };
    pipe.spawn(move |f| walk_into(f, WalkStart::Root(root), Arc::new(walk)))
}

/// What every producer of one walk (root and mount points) shares.
struct WalkJob {
    opts: Arc<WalkOpts>,
    algos: AlgoSet,
    lookup: Option<Lookup>,
}

enum WalkStart {
    Root(PathBuf),
    Sub(Subtree),
}

fn walk_into(f: &mut Feeder<(), Note>, start: WalkStart, job: Arc<WalkJob>) {
    let mut emit = |ev: Event| match ev {
        Event::File(e) => {
            let known = match job.lookup.as_ref().map(|l| l(&e.path, &e.stat)) {
                None | Some(Prior::Unknown) => None,
                Some(Prior::Hashed(h)) => Some(h),
                Some(Prior::Ignore) => return,
            };
            f.file(Item {
                path: e.path,
                dir: e.dir,
                stat: e.stat,
                no_follow: !e.via_link,
                algos: job.algos,
                known,
                tag: (),
            })
        }
        Event::Mount(sub) => {
            let job = Arc::clone(&job);
            f.sub(move |f| walk_into(f, WalkStart::Sub(sub), job))
        }
        Event::Skipped(p, s) => f.msg(Note::Skipped(p, s)),
        Event::Error(p, e) => f.msg(Note::Error(p, e)),
    };
    match start {
        WalkStart::Root(root) => walk(&root, &job.opts, &mut emit),
        WalkStart::Sub(sub) => walk_subtree(sub, &job.opts, &mut emit),
    }
}
