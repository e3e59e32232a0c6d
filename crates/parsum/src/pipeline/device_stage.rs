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

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

use super::{Done, Item, Pipeline, INPUT_BATCHES, RESULT_BATCHES};
use crate::hash::{hash_file_with_hook, Splitter};
use crate::progress::DiskMeter;

/// Where a producer sends its batches.
pub(super) type Batches<T> = SyncSender<Vec<Item<T>>>;
/// Where the stage sends them back, hashed, in the same order.
pub(super) type Results<T> = Receiver<Vec<Done<T>>>;

/// Starts the stage for a producer on device `dev` (`hint`: one of its
/// files): returns the sender of its batches and the receiver of their results.
pub(super) fn start<T: Send + 'static>(
    pipe: &Pipeline,
    dev: u64,
    hint: &Path,
) -> (Batches<T>, Results<T>) {
    let d = pipe.device(dev, hint);
    let (in_tx, in_rx) = mpsc::sync_channel::<Vec<Item<T>>>(INPUT_BATCHES);
    let (out_tx, out_rx) = mpsc::sync_channel(RESULT_BATCHES);
    let gate = Arc::clone(&d.gate);
    let meter = Arc::clone(&d.meter);
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
        // A batch of only carried-over results reads nothing: it takes no
        // reader from the gate and adds no zero-byte sample to its measure.
        let reads_nothing = batch.iter().all(|item| item.known.is_some());
        let hash_all = || {
            // Bytes go to the gate as they are read (a batch may be one
            // large file); the rest of each file's size when it is done.
            let mut rest = 0;
            let done = batch
                .into_iter()
                .map(|mut item| {
                    // A carried-over result is not read and not counted as
                    // bytes read, so the gate measures the device only.
                    if let Some(h) = item.known.clone() {
                        item.dir = None;
                        return (item, Ok(h));
                    }
                    let mut credited = 0;
                    let (item, r) = hash_counted(item, splitter, &meter, &mut |so_far| {
                        gate.credit(so_far.saturating_sub(credited));
                        credited = credited.max(so_far);
                    });
                    let size = r.as_ref().map(|h| h.size).unwrap_or(0);
                    rest += size.saturating_sub(credited);
                    (item, r)
                })
                .collect();
            meter.set_readers(gate.limit());
            (done, rest)
        };
        if reads_nothing {
            hash_all().0
        } else {
            gate.read(hash_all)
        }
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

/// Hashes one item and counts its bytes on its group's `meter` as they are
/// read, so the bar sees a large file on a slow disk move (`hook`: called
/// after every read, for tests).
fn hash_counted<T>(
    mut item: Item<T>,
    splitter: Option<&Splitter>,
    meter: &DiskMeter,
    hook: &mut dyn FnMut(u64),
) -> Done<T> {
    let opts = item.hash_opts(splitter);
    let mut counted = 0;
    let r = hash_file_with_hook(&item.path, item.algos, opts, &mut |so_far| {
        meter.add(so_far.saturating_sub(counted));
        counted = so_far;
        hook(so_far);
    });
    match &r {
        // What no read reported (a split file is read on the split pool).
        Ok(h) if h.size > counted => meter.add(h.size - counted),
        Ok(_) => {}
        // A failed file's bytes are no progress (the bar's count).
        Err(_) => meter.forget(counted),
    }
    item.dir = None;
    (item, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{Algo, AlgoSet, FileStat};

    /// The file at `path`, as the walk hands it on, to hash with SHA-256.
    fn sha256_item(path: &std::path::Path) -> Item<()> {
        Item {
            stat: FileStat::of(&std::fs::metadata(path).unwrap()),
            path: path.to_path_buf(),
            dir: None,
            no_follow: true,
            algos: AlgoSet::of(Algo::Sha256),
            tag: (),
            known: None,
        }
    }

    /// A group's meter counts a file's bytes while it is read, not once it
    /// is done: on a slow disk a large file takes minutes, and the bar
    /// (which shows groups that moved data in the last 2 s, below a fast
    /// device's rate) would show its group idle all along, then one burst
    /// "faster than a disk" that it hides too.
    #[test]
    fn bytes_are_counted_as_they_are_read() {
        crate::hash::tests::within_30s(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("big");
            let data: Vec<u8> = (0..4u32 << 20).map(|i| (i >> 3) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let meter = DiskMeter::new("t".into(), 1);
            let mut seen = Vec::new();
            let (_, r) = hash_counted(sha256_item(&path), None, &meter, &mut |so_far| {
                seen.push((so_far, meter.bytes()));
            });
            assert_eq!(r.unwrap().size, 4 << 20);
            assert!(seen.len() > 1, "{seen:?}");
            for (so_far, counted) in &seen {
                assert_eq!(so_far, counted, "counted as read: {seen:?}");
            }
            assert_eq!(meter.bytes(), 4 << 20, "and not twice");
            // A split file (read on the split pool) counts once, when done.
            let split = Splitter::new(2, 1 << 20, 1 << 16);
            let (_, r) = hash_counted(
                Item {
                    algos: AlgoSet::of(Algo::Blake3),
                    ..sha256_item(&path)
                },
                Some(&split),
                &meter,
                &mut |_| {},
            );
            assert_eq!(r.unwrap().size, 4 << 20);
            assert_eq!(meter.bytes(), 8 << 20);
            assert_eq!(meter.kept(), 8 << 20);
        });
    }

    /// A file that fails mid-read (here: cut short) leaves its bytes read
    /// on the meter's rate, but not in its progress ([`DiskMeter::kept`]).
    #[test]
    fn a_failed_file_is_no_progress() {
        crate::hash::tests::within_30s(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("big");
            std::fs::write(&path, vec![7u8; 4 << 20]).unwrap();
            let meter = DiskMeter::new("t".into(), 1);
            let (_, r) = hash_counted(sha256_item(&path), None, &meter, &mut |so_far| {
                if so_far < 4 << 20 {
                    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    f.set_len(so_far).unwrap();
                }
            });
            assert!(r.is_err());
            assert!(meter.bytes() > 0);
            assert_eq!(meter.kept(), 0);
        });
    }
}
