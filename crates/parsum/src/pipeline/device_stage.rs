//! The per-device stage: a producer's batches go through `imap` on its
//! device's pool, each batch read under the device's [`Gate`], and a driver
//! thread moves the hashed batches, in input order, to a bounded channel
//! that the consumer reads when the producer's stream reaches them.
//!
//! A batch is one read for the gate: its files are consecutive on disk
//! order, and gating per file would cost a wake-up per file. Large BLAKE3
//! files are split only while the gate allows more than one reader. A file's
//! directory descriptor is dropped as soon as it is hashed, so results
//! waiting for the consumer hold none.
//!
//! [`Gate`]: crate::device::Gate

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

use super::{Done, Item, Pipeline, INPUT_BATCHES, RESULT_BATCHES};
use crate::hash::{hash_file_with_hook, HashOpts};

/// Where a producer sends its batches.
pub(super) type Batches<T> = SyncSender<Vec<Item<T>>>;
/// Where the stage sends them back, hashed, in the same order.
pub(super) type Results<T> = Receiver<Vec<Done<T>>>;

/// Starts the stage for a producer on device `dev`: returns the sender of
/// its batches and the receiver of their results.
pub(super) fn start<T: Send + 'static>(pipe: &Pipeline, dev: u64) -> (Batches<T>, Results<T>) {
    let d = pipe.device(dev);
    let (in_tx, in_rx) = mpsc::sync_channel::<Vec<Item<T>>>(INPUT_BATCHES);
    let (out_tx, out_rx) = mpsc::sync_channel(RESULT_BATCHES);
    let gate = Arc::clone(&d.gate);
    let splitter = pipe.cfg.splitter.clone();
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
            // Bytes go to the gate as they are read (a batch may be one
            // large file); the rest of each file's size when it is done.
            let mut rest = 0;
            let done = batch
                .into_iter()
                .map(|mut item| {
                    let opts = HashOpts {
                        no_follow: item.no_follow,
                        splitter,
                        listed: Some(item.stat),
                        dir: item.dir.as_deref().map(crate::dirfd::DirFd::fd),
                    };
                    let mut credited = 0;
                    let r = hash_file_with_hook(&item.path, item.algos, opts, &mut |so_far| {
                        gate.credit(so_far.saturating_sub(credited));
                        credited = credited.max(so_far);
                    });
                    item.dir = None;
                    let size = r.as_ref().map(|h| h.size).unwrap_or(0);
                    rest += size.saturating_sub(credited);
                    (item, r)
                })
                .collect();
            (done, rest)
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
    (in_tx, out_rx)
}
