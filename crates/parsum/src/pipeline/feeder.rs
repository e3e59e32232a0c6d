//! The producer's side of the pipeline: a [`Feeder`] batches files for its
//! device's stage and puts every file, message and sub-producer on the order
//! channel, so the consumer sees them in the order they were produced.
//! [`Runs`] splits a sequence of files on several disk groups (a manifest)
//! into one sub-producer per run of files of one group.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::Arc;

use super::disk_groups::Device;
use super::{
    device_stage, Item, Order, Pipeline, BATCH_BYTES, BATCH_FILES, BATCH_ITEMS, INPUT_BATCHES,
};

/// A producer's handle: send files and messages, in order.
pub struct Feeder<T, M> {
    pub(super) pipe: Arc<Pipeline>,
    pub(super) order: Sender<Order<T, M>>,
    /// The `st_dev` of this producer's first file, once seen...
    pub(super) dev: Option<u64>,
    /// ...and its disk group's device: files of other `st_dev`s on it
    /// (another partition of the disk) join this producer's batches.
    pub(super) device: Option<Arc<Device>>,
    /// Whether an `st_dev` is on `device`, as found.
    pub(super) same_device: HashMap<u64, bool>,
    pub(super) input: Option<SyncSender<Vec<Item<T>>>>,
    pub(super) pending: Vec<Item<T>>,
    pub(super) pending_bytes: u64,
    /// Pending files that will be read (not carried over).
    pub(super) pending_reads: usize,
    /// (dev, ino) of multiply-linked files already sent.
    pub(super) links: HashSet<(u64, u64)>,
}

impl<T: Send + 'static, M: Send + 'static> Feeder<T, M> {
    /// Queues a file. A second name of a hard-linked file is not hashed
    /// again: the consumer gets the first name's result. A file of another
    /// disk group than this producer's goes to a sub-producer.
    pub fn file(&mut self, item: Item<T>) {
        match self.dev {
            None => self.start(item.stat.dev, &item.path),
            Some(d) if d == item.stat.dev => {}
            Some(_) => {
                if !self.on_my_device(item.stat.dev, &item.path) {
                    return self.sub(move |f| f.file(item));
                }
            }
        }
        let c = &self.pipe.cfg.counters;
        c.found_files.fetch_add(1, Ordering::Relaxed);
        if item.stat.nlink > 1 && !self.links.insert((item.stat.dev, item.stat.ino)) {
            self.flush();
            let _ = self.order.send(Order::Alias(item));
            return;
        }
        // A carried-over result costs no read: it fills the batch only
        // up to BATCH_ITEMS, so an unchanged tree costs few batches.
        let to_read = if item.known.is_some() {
            0
        } else {
            item.stat.size
        };
        c.found_bytes.fetch_add(to_read, Ordering::Relaxed);
        self.pending_bytes += to_read;
        self.pending_reads += usize::from(item.known.is_none());
        self.pending.push(item);
        if self.pending_reads >= BATCH_FILES
            || self.pending.len() >= BATCH_ITEMS
            || self.pending_bytes >= BATCH_BYTES
            || crate::dirfd::under_pressure()
        {
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

    pub(super) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.pending_reads = 0;
        // The batch goes in before its order entry: the consumer only ever
        // waits for a batch that is already on its way.
        if let Some(input) = &self.input {
            if input.send(batch).is_ok() {
                let _ = self.order.send(Order::Batch);
            }
        }
    }

    /// Whether files on `dev` (`hint`: one of them) share this producer's
    /// pool and gate.
    fn on_my_device(&mut self, dev: u64, hint: &std::path::Path) -> bool {
        if let Some(&same) = self.same_device.get(&dev) {
            return same;
        }
        let same = self
            .device
            .as_ref()
            .is_some_and(|mine| Arc::ptr_eq(mine, &self.pipe.device(dev, hint)));
        self.same_device.insert(dev, same);
        same
    }

    /// Starts this producer's device stage and tells the consumer where
    /// its results arrive.
    fn start(&mut self, dev: u64, hint: &std::path::Path) {
        let (input, results) = device_stage::start(&self.pipe, dev, hint);
        self.dev = Some(dev);
        self.device = Some(self.pipe.device(dev, hint));
        self.input = Some(input);
        let _ = self.order.send(Order::Start(results));
    }
}

/// Splits a sequence of files on many disk groups (a manifest's lines) into
/// one sub-producer per run of consecutive files of the same group, so each
/// group still gets its own pool and a run of any length costs one thread,
/// however its lines alternate between the group's file systems.
pub struct Runs<T, M> {
    current: Option<Run<T, M>>,
    /// Each `st_dev` met, with its group's device.
    devices: HashMap<u64, Arc<Device>>,
}

/// The current run: its disk group's device, and its producer's input.
type Run<T, M> = (Arc<Device>, SyncSender<RunItem<T, M>>);

enum RunItem<T, M> {
    File(Item<T>),
    Msg(M),
}

impl<T: Send + 'static, M: Send + 'static> Default for Runs<T, M> {
    fn default() -> Self {
        Runs {
            current: None,
            devices: HashMap::new(),
        }
    }
}

impl<T: Send + 'static, M: Send + 'static> Runs<T, M> {
    /// Queues a file, starting a new run when its disk group differs.
    pub fn file(&mut self, f: &mut Feeder<T, M>, item: Item<T>) {
        let device = Arc::clone(
            self.devices
                .entry(item.stat.dev)
                .or_insert_with(|| f.pipe.device(item.stat.dev, &item.path)),
        );
        if !self
            .current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.0, &device))
        {
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
            self.current = Some((device, tx));
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
