//! The producer's side of the pipeline: a [`Feeder`] batches files for its
//! device's stage and puts every file, message and sub-producer on the order
//! channel, so the consumer sees them in the order they were produced.
//! [`Runs`] splits a sequence of files on several devices (a manifest) into
//! one sub-producer per run of same-device files.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::Arc;

use super::{
    device_stage, Item, Order, Pipeline, BATCH_BYTES, BATCH_FILES, BATCH_ITEMS, INPUT_BATCHES,
};

/// A producer's handle: send files and messages, in order.
pub struct Feeder<T, M> {
    pub(super) pipe: Arc<Pipeline>,
    pub(super) order: Sender<Order<T, M>>,
    /// The device of this producer's files, once the first one is seen.
    pub(super) dev: Option<u64>,
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

    /// Starts this producer's device stage and tells the consumer where
    /// its results arrive.
    fn start(&mut self, dev: u64) {
        let (input, results) = device_stage::start(&self.pipe, dev);
        self.dev = Some(dev);
        self.input = Some(input);
        let _ = self.order.send(Order::Start(results));
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
