//! The pipeline: producers (walks, manifest readers) feed files to a pool
//! per device through parpool's `imap`, and one consumer receives every
//! result in producer order.
//!
//! ```text
//!  producer thread ──batches──▶ pool.imap (its device's pool) ─▶ driver thread ─▶ results ─┐
//!        │                                                                                  │
//!        └── order channel: Start(results) / Batch / Alias / Msg / Sub(stream) ──▶ consumer ◀┘
//! ```
//!
//! One producer, one device. A producer's files all live on one device; a
//! directory on another device (a mount point) or a file there becomes a
//! sub-producer on its own thread, whose stream the consumer drains in place
//! (`Sub`). That is the article's mount-point parallelism: every mount point
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
//! [`BATCH_FILES`] files or [`BATCH_BYTES`] bytes).
//!
//! Memory: the batch channel, the `imap` read-ahead and the result channel
//! are bounded, so a producer is at most a fixed number of batches ahead of
//! the consumer, for any tree size. NOTE: the order channel itself is
//! unbounded; it holds one small entry per batch, skip message or
//! sub-stream, so only a tree made mostly of skipped entries (or of files
//! alternating between devices) can grow it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use crate::device::{DeviceInfo, DeviceJobs, Gate, Plan};
use crate::hash::{hash_file, AlgoSet, FileHash, FileStat, HashError, HashOpts, Splitter};
use crate::output::Note;
use crate::progress::{message, Counters};
use crate::walk::{walk, walk_subtree, Event, Subtree, WalkOpts};
use parpool::ThreadPool;

/// A batch closes after this many files...
pub const BATCH_FILES: usize = 64;
/// ...or once it holds this many bytes.
pub const BATCH_BYTES: u64 = 1 << 20;
/// Batches a producer may queue per device before it waits.
const INPUT_BATCHES: usize = 16;
/// Hashed batches a device may hold for the consumer.
const RESULT_BATCHES: usize = 256;

/// One file to hash, with the producer's data `T`.
pub struct Item<T> {
    pub path: PathBuf,
    /// The directory to open `path`'s last component in (see `walk.rs`);
    /// dropped once the file is hashed, so queued results hold no descriptor.
    pub dir: Option<Arc<std::os::fd::OwnedFd>>,
    /// As listed: the "before" of the changed-during-read check.
    pub stat: FileStat,
    /// Open with O_NOFOLLOW (the walk saw a regular file, not a link).
    pub no_follow: bool,
    /// The digests to compute, in one read.
    pub algos: AlgoSet,
    pub tag: T,
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

struct Device {
    pool: ThreadPool,
    gate: Arc<Gate>,
}

/// The devices seen so far, shared by all producers.
pub struct Pipeline {
    cfg: Settings,
    devices: Mutex<HashMap<u64, Arc<Device>>>,
}

/// A hashed file and its outcome.
type Done<T> = (Item<T>, Result<FileHash, HashError>);

enum Order<T, M> {
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
            devices: Mutex::new(HashMap::new()),
        })
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.cfg.counters
    }

    fn device(&self, dev: u64) -> Arc<Device> {
        let mut devices = self.devices.lock().unwrap();
        if let Some(d) = devices.get(&dev) {
            return Arc::clone(d);
        }
        let info = DeviceInfo::detect(dev);
        let (plan, why) = Plan::choose(&info, self.cfg.jobs, &self.cfg.device_jobs, self.cfg.cpus);
        if self.cfg.verbose {
            let range = if plan.adaptive {
                format!(", adapting within 1..={}", plan.max)
            } else {
                String::new()
            };
            message(&format!(
                "parsum: device {}: {} reader(s){range} [{why}]",
                info.describe(),
                plan.start
            ));
        }
        let d = Arc::new(Device {
            pool: ThreadPool::with_workers(plan.max),
            gate: Arc::new(Gate::new(plan, info.id.clone(), self.cfg.verbose)),
        });
        devices.insert(dev, Arc::clone(&d));
        d
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
                    input: None,
                    pending: Vec::new(),
                    pending_bytes: 0,
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

/// A producer's handle: send files and messages, in order.
pub struct Feeder<T, M> {
    pipe: Arc<Pipeline>,
    order: Sender<Order<T, M>>,
    /// The device of this producer's files, once the first one is seen.
    dev: Option<u64>,
    input: Option<SyncSender<Vec<Item<T>>>>,
    pending: Vec<Item<T>>,
    pending_bytes: u64,
    /// (dev, ino) of multiply-linked files already sent.
    links: HashSet<(u64, u64)>,
}

impl<T: Send + 'static, M: Send + 'static> Feeder<T, M> {
    /// Queues a file. A second name of a hard-linked file is not hashed
    /// again: the consumer gets the first name's result. A file on another
    /// device than this producer's goes to a sub-producer.
    pub fn file(&mut self, item: Item<T>) {
        match self.dev {
            None => self.start(item.stat.dev),
            Some(d) if d != item.stat.dev => return self.sub(move |f| f.file(item)),
            Some(_) => {}
        }
        let c = &self.pipe.cfg.counters;
        c.found_files.fetch_add(1, Ordering::Relaxed);
        if item.stat.nlink > 1 && !self.links.insert((item.stat.dev, item.stat.ino)) {
            self.flush();
            let _ = self.order.send(Order::Alias(item));
            return;
        }
        c.found_bytes.fetch_add(item.stat.size, Ordering::Relaxed);
        self.pending_bytes += item.stat.size;
        self.pending.push(item);
        if self.pending.len() >= BATCH_FILES || self.pending_bytes >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Runs `produce` as a sub-producer on its own thread (for another
    /// device); its results come at this point of this producer's order.
    pub fn sub<P>(&mut self, produce: P)
    where
        P: FnOnce(&mut Feeder<T, M>) + Send + 'static,
    {
        self.flush();
        let stream = self.pipe.spawn(produce);
        let _ = self.order.send(Order::Sub(stream));
    }

    /// Sends a message to the consumer, after everything sent before it.
    pub fn msg(&mut self, m: M) {
        self.flush();
        let _ = self.order.send(Order::Msg(m));
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        // The batch goes in before its order entry: the consumer only ever
        // waits for a batch that is already on its way.
        if let Some(input) = &self.input {
            if input.send(batch).is_ok() {
                let _ = self.order.send(Order::Batch);
            }
        }
    }

    /// Starts this producer's device pipeline: `imap` on the device's pool,
    /// driven by its own thread.
    fn start(&mut self, dev: u64) {
        let d = self.pipe.device(dev);
        let (in_tx, in_rx) = mpsc::sync_channel::<Vec<Item<T>>>(INPUT_BATCHES);
        let (out_tx, out_rx) = mpsc::sync_channel(RESULT_BATCHES);
        let gate = Arc::clone(&d.gate);
        let splitter = self.pipe.cfg.splitter.clone();
        // A batch is one read for the gate: its files are consecutive on
        // disk order, and gating per file would cost a wake-up per file.
        let hash_batch = move |batch: Vec<Item<T>>| -> Vec<Done<T>> {
            // Split large files only while the device takes parallel reads
            // (limit > 1): a device held to one reader is read in sequence.
            let splitter = if gate.limit() > 1 {
                splitter.as_deref()
            } else {
                None
            };
            gate.read(|| {
                let mut bytes = 0;
                let done = batch
                    .into_iter()
                    .map(|mut item| {
                        let opts = HashOpts {
                            no_follow: item.no_follow,
                            splitter,
                            listed: Some(item.stat),
                            dir: item.dir.as_deref(),
                        };
                        let r = hash_file(&item.path, item.algos, opts);
                        item.dir = None;
                        bytes += r.as_ref().map(|h| h.size).unwrap_or(0);
                        (item, r)
                    })
                    .collect();
                (done, bytes)
            })
        };
        // Each batch is one task (chunksize 1): batches are already sized.
        let results = d
            .pool
            .imap(hash_batch, in_rx)
            .chunksize(1)
            .buffer(d.pool.workers() * 2);
        // The driver pulls results as they are ready, so this device keeps
        // hashing while the consumer is still busy with earlier streams.
        std::thread::Builder::new()
            .name("parsum-drive".into())
            .spawn(move || {
                for batch in results {
                    if out_tx.send(batch).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn driver thread");
        self.dev = Some(dev);
        self.input = Some(in_tx);
        let _ = self.order.send(Order::Start(out_rx));
    }
}

/// Splits a sequence of files on many devices (a manifest's lines) into one
/// sub-producer per run of consecutive files on the same device, so each
/// device still gets its own pool and a run of any length costs one thread.
pub struct Runs<T, M> {
    current: Option<(u64, SyncSender<RunItem<T, M>>)>,
}

enum RunItem<T, M> {
    File(Item<T>),
    Msg(M),
}

impl<T: Send + 'static, M: Send + 'static> Default for Runs<T, M> {
    fn default() -> Self {
        Runs { current: None }
    }
}

impl<T: Send + 'static, M: Send + 'static> Runs<T, M> {
    /// Queues a file, starting a new run when its device differs.
    pub fn file(&mut self, f: &mut Feeder<T, M>, item: Item<T>) {
        if self.current.as_ref().map(|c| c.0) != Some(item.stat.dev) {
            // Dropping the old sender ends that run's producer.
            self.current = None;
            let (tx, rx) = mpsc::sync_channel::<RunItem<T, M>>(INPUT_BATCHES * BATCH_FILES);
            f.sub(move |g| {
                for it in rx {
                    match it {
                        RunItem::File(i) => g.file(i),
                        RunItem::Msg(m) => g.msg(m),
                    }
                }
            });
            self.current = Some((item.stat.dev, tx));
        }
        if let Some((_, tx)) = &self.current {
            let _ = tx.send(RunItem::File(item));
        }
    }

    /// Sends a message in order with the files.
    pub fn msg(&mut self, f: &mut Feeder<T, M>, m: M) {
        match &self.current {
            Some((_, tx)) => {
                let _ = tx.send(RunItem::Msg(m));
            }
            None => f.msg(m),
        }
    }
}

/// The ordered results of one producer.
pub struct Stream<T, M> {
    rx: Receiver<Order<T, M>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl<T, M> Stream<T, M> {
    /// Feeds every result and message to `sink`, in producer order, until
    /// the sink is [stopped](Sink::stopped).
    pub fn drain(mut self, sink: &mut dyn Sink<T, M>) {
        let mut results = None;
        // First result of each multiply-linked file, for its other names.
        let mut links: HashMap<(u64, u64), Result<FileHash, String>> = HashMap::new();
        for o in self.rx.iter() {
            if sink.stopped() {
                // Subtle: no join: the producer may walk on for a long
                // time; the process ends without it.
                return;
            }
            match o {
                Order::Start(rx) => results = Some(rx),
                Order::Sub(stream) => stream.drain(sink),
                Order::Batch => {
                    let rx: &Receiver<_> = results.as_ref().expect("Start precedes Batch");
                    let batch = rx
                        .recv()
                        .expect("a device pool stopped: a hashing thread panicked");
                    for (item, r) in batch {
                        if item.stat.nlink > 1 {
                            let keep = r.as_ref().map(Clone::clone).map_err(ToString::to_string);
                            links.insert((item.stat.dev, item.stat.ino), keep);
                        }
                        sink.done(item, r);
                    }
                    sink.batch_end();
                }
                Order::Alias(item) => {
                    let r = match links.get(&(item.stat.dev, item.stat.ino)) {
                        Some(Ok(h)) => Ok(h.clone()),
                        Some(Err(e)) => Err(HashError::Io(std::io::Error::other(format!(
                            "hard link to a file that failed: {e}"
                        )))),
                        None => hash_file(
                            &item.path,
                            item.algos,
                            HashOpts {
                                no_follow: item.no_follow,
                                splitter: None,
                                listed: Some(item.stat),
                                dir: item.dir.as_deref(),
                            },
                        ),
                    };
                    sink.done(item, r);
                }
                Order::Msg(m) => sink.msg(m),
            }
        }
        if let Some(h) = self.handle.take() {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
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
    pipe.spawn(move |f| walk_into(f, WalkStart::Root(root), opts, algos))
}

enum WalkStart {
    Root(PathBuf),
    Sub(Subtree),
}

fn walk_into(f: &mut Feeder<(), Note>, start: WalkStart, opts: Arc<WalkOpts>, algos: AlgoSet) {
    let mut emit = |ev: Event| match ev {
        Event::File(e) => f.file(Item {
            path: e.path,
            dir: e.dir,
            stat: e.stat,
            no_follow: !e.via_link,
            algos,
            tag: (),
        }),
        Event::Mount(sub) => {
            let opts = Arc::clone(&opts);
            f.sub(move |f| walk_into(f, WalkStart::Sub(sub), opts, algos))
        }
        Event::Skipped(p, s) => f.msg(Note::Skipped(p, s)),
        Event::Error(p, e) => f.msg(Note::Error(p, e)),
    };
    match start {
        WalkStart::Root(root) => walk(&root, &opts, &mut emit),
        WalkStart::Sub(sub) => walk_subtree(sub, &opts, &mut emit),
    }
}
