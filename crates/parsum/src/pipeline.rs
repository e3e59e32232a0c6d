//! The pipeline: producers (walks, manifest readers) feed files to one pool
//! per device, and one consumer receives the results in producer order.
//!
//! ```text
//!  producer thread (per root) ──batch──▶ device input ─▶ pool.imap ─▶ driver ──▶ result channel ─┐
//!        │                                 (one per device, per producer)                            │
//!        └──── order channel: NewDev(rx) / Batch(dev) / Alias / Msg ───────────────────▶ consumer ◀┘
//! ```
//!
//! Ordering: a producer sends each batch to its device first, then
//! `Batch(dev)` on its order channel. The consumer reads the order channel
//! and takes the next batch of that device: `imap` returns a device's batches
//! in the order they went in, so the consumer sees files in exactly the
//! producer's order, whatever the thread timing. Consecutive files on the
//! same device share a batch (small files are batched; a batch closes at
//! [`BATCH_FILES`] files, [`BATCH_BYTES`] bytes, or a change of device).
//!
//! Memory: every channel between producer and consumer is bounded, and
//! `imap` reads at most its buffer ahead, so a producer can be at most a
//! fixed number of batches ahead of the consumer, for any tree size.
//!
//! Concurrency: each producer runs on its own thread with its own drivers,
//! so roots on different devices hash at the same time; the consumer drains
//! them one root after another. A device's pool is shared by all producers,
//! and its [`Gate`] limits how many files of the device are read at once.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use crate::device::{DeviceInfo, DeviceJobs, Gate, Plan};
use crate::hash::{hash_file, Algo, FileHash, HashError, HashOpts, Splitter};
use crate::pool::ThreadPool;
use crate::progress::{message, Counters};

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
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub size: u64,
    /// Open with O_NOFOLLOW (the walk saw a regular file, not a link).
    pub no_follow: bool,
    /// The digests to compute, in one read.
    pub algos: &'static [Algo],
    pub tag: T,
}

/// The consumer's side: called in producer order.
pub trait Sink<T, M> {
    fn done(&mut self, item: Item<T>, result: Result<FileHash, HashError>);
    fn msg(&mut self, m: M);
    /// After each batch: a good moment to flush output.
    fn batch_end(&mut self) {}
}

/// Settings shared by every device.
pub struct Config {
    pub jobs: Option<usize>,
    pub device_jobs: Vec<DeviceJobs>,
    pub cpus: usize,
    pub verbose: bool,
    /// Split large BLAKE3 files on non-rotational devices.
    pub splitter: Option<Arc<Splitter>>,
    pub counters: Arc<Counters>,
}

struct Device {
    pool: ThreadPool,
    gate: Arc<Gate>,
    split: bool,
}

/// The devices seen so far, shared by all producers.
pub struct Pipeline {
    cfg: Config,
    devices: Mutex<HashMap<u64, Arc<Device>>>,
}

/// A hashed file and its outcome.
type Done<T> = (Item<T>, Result<FileHash, HashError>);

enum Order<T, M> {
    NewDev(Receiver<Vec<Done<T>>>),
    Batch(usize),
    /// A hard link to a file this producer already sent.
    Alias(Item<T>),
    Msg(M),
}

impl Pipeline {
    pub fn new(cfg: Config) -> Arc<Pipeline> {
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
        let split = info.rotational != Some(true) && plan.max > 1;
        let d = Arc::new(Device {
            pool: ThreadPool::with_workers(plan.max),
            gate: Arc::new(Gate::new(plan, info.id.clone(), self.cfg.verbose)),
            split,
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
                    devs: HashMap::new(),
                    inputs: Vec::new(),
                    pending: Vec::new(),
                    pending_dev: 0,
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
    devs: HashMap<u64, usize>,
    inputs: Vec<SyncSender<Vec<Item<T>>>>,
    pending: Vec<Item<T>>,
    pending_dev: usize,
    pending_bytes: u64,
    /// (dev, ino) of multiply-linked files already sent.
    links: HashSet<(u64, u64)>,
}

impl<T: Send + 'static, M: Send + 'static> Feeder<T, M> {
    /// Queues a file. A second name of a hard-linked file is not hashed
    /// again: the consumer gets the first name's result.
    pub fn file(&mut self, item: Item<T>) {
        let c = &self.pipe.cfg.counters;
        c.found_files.fetch_add(1, Ordering::Relaxed);
        if item.nlink > 1 && !self.links.insert((item.dev, item.ino)) {
            self.flush();
            let _ = self.order.send(Order::Alias(item));
            return;
        }
        c.found_bytes.fetch_add(item.size, Ordering::Relaxed);
        let idx = self.dev_index(item.dev);
        if !self.pending.is_empty() && idx != self.pending_dev {
            self.flush();
        }
        self.pending_dev = idx;
        self.pending_bytes += item.size;
        self.pending.push(item);
        if self.pending.len() >= BATCH_FILES || self.pending_bytes >= BATCH_BYTES {
            self.flush();
        }
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
        if self.inputs[self.pending_dev].send(batch).is_ok() {
            let _ = self.order.send(Order::Batch(self.pending_dev));
        }
    }

    fn dev_index(&mut self, dev: u64) -> usize {
        if let Some(&i) = self.devs.get(&dev) {
            return i;
        }
        let d = self.pipe.device(dev);
        let (in_tx, in_rx) = mpsc::sync_channel::<Vec<Item<T>>>(INPUT_BATCHES);
        let (out_tx, out_rx) = mpsc::sync_channel(RESULT_BATCHES);
        let gate = Arc::clone(&d.gate);
        let splitter = if d.split {
            self.pipe.cfg.splitter.clone()
        } else {
            None
        };
        let hash_batch = move |batch: Vec<Item<T>>| -> Vec<Done<T>> {
            batch
                .into_iter()
                .map(|item| {
                    let opts = HashOpts {
                        no_follow: item.no_follow,
                        splitter: splitter.as_deref(),
                    };
                    let r = gate.read(|| {
                        let r = hash_file(&item.path, item.algos, opts);
                        let n = r.as_ref().map(|h| h.size).unwrap_or(0);
                        (r, n)
                    });
                    (item, r)
                })
                .collect()
        };
        let results = d.pool.imap(hash_batch, in_rx).buffer(d.pool.workers() * 4);
        // The driver pulls results as they are ready, so this device keeps
        // hashing while the consumer is still busy with earlier roots.
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
        let i = self.inputs.len();
        self.inputs.push(in_tx);
        self.devs.insert(dev, i);
        let _ = self.order.send(Order::NewDev(out_rx));
        i
    }
}

/// The ordered results of one producer.
pub struct Stream<T, M> {
    rx: Receiver<Order<T, M>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl<T, M> Stream<T, M> {
    /// Feeds every result and message to `sink`, in producer order.
    pub fn drain(mut self, sink: &mut dyn Sink<T, M>) {
        let mut devs = Vec::new();
        // First result of each multiply-linked file, for its other names.
        let mut links: HashMap<(u64, u64), Result<FileHash, String>> = HashMap::new();
        for o in self.rx.iter() {
            match o {
                Order::NewDev(rx) => devs.push(rx),
                Order::Batch(i) => {
                    let batch = devs[i]
                        .recv()
                        .expect("a device pool stopped: a hashing thread panicked");
                    for (item, r) in batch {
                        if item.nlink > 1 {
                            let keep = r.as_ref().map(Clone::clone).map_err(ToString::to_string);
                            links.insert((item.dev, item.ino), keep);
                        }
                        sink.done(item, r);
                    }
                    sink.batch_end();
                }
                Order::Alias(item) => {
                    let r = match links.get(&(item.dev, item.ino)) {
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
