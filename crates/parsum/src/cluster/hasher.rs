//! One rank's hashing: file batches go through parsum's own per-device
//! pipeline (a pool and gate per device, `hash_file`), and their results
//! come back as [`Record`]s, gathered in [`SortedRuns`].
//!
//! Invariant: at most `in_flight` batches (see [`in_flight_for`]) are
//! inside the pipeline at a time; everything else stays in the rank's
//! queue, where thieves can take it. Every batch given to [`LocalHasher::send`] ends as one record per
//! file (a digest or an error), in the runs [`LocalHasher::finish`] returns; a
//! hashing thread that panics makes `finish` panic too, never lose files.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::record::{Outcome, Record};
use super::runs::SortedRuns;
use super::work::FileTask;
use crate::dirfd::DirFd;
use crate::hash::{AlgoSet, FileHash, HashError};
use crate::pipeline::{Feeder, Item, Pipeline, Runs, Sink};

/// Batches a rank hashes at once (the rest can still be stolen): alone,
/// enough to keep any pool busy, as the single-process pipeline does; with
/// other ranks, one per CPU, so that a big directory listed by one rank is
/// mostly left in its queue for the others.
pub fn in_flight_for(ranks: i32, cpus: usize) -> usize {
    if ranks <= 1 {
        64
    } else {
        cpus.max(2)
    }
}

/// The end of one batch, sent after its files.
struct BatchEnd;

/// The rank's hashing pipeline.
pub struct LocalHasher {
    tx: Option<SyncSender<Vec<FileTask>>>,
    ended: Receiver<()>,
    in_flight: usize,
    cap: usize,
    consumer: Option<JoinHandle<SortedRuns>>,
}

/// A test hook: after `after` files, abort the process (a rank that dies).
pub struct AbortHook {
    /// Files hashed before the abort.
    pub after: u64,
}

impl LocalHasher {
    /// Starts a producer on `pipe` and a consumer thread that collects its
    /// results (keeping `spill_at` in memory, see [`SortedRuns`]).
    pub fn start(
        pipe: &Arc<Pipeline>,
        algos: AlgoSet,
        cap: usize,
        spill_at: usize,
        abort: Option<AbortHook>,
    ) -> LocalHasher {
        let (tx, rx) = mpsc::sync_channel::<Vec<FileTask>>(cap);
        let stream = pipe.spawn(move |f: &mut Feeder<u32, BatchEnd>| {
            // One sub-producer per run of files on the same device, so each
            // device keeps its own pool (as for a manifest's lines).
            let mut runs = Runs::default();
            for batch in rx {
                for t in batch {
                    let dir = t.dir.or_else(|| long_path_parent(&t.path));
                    let item = Item {
                        path: t.path,
                        dir,
                        stat: t.stat,
                        no_follow: !t.via_link,
                        algos,
                        tag: t.root,
                        known: None,
                    };
                    runs.file(f, item);
                }
                // Also flushes the run's partial batch into the pool.
                runs.msg(f, BatchEnd);
            }
        });
        let (ended_tx, ended) = mpsc::channel();
        let consumer = std::thread::Builder::new()
            .name("parsum-collect".into())
            .spawn(move || {
                let mut sink = Collect {
                    records: SortedRuns::new(spill_at),
                    ended: ended_tx,
                    abort,
                    files: 0,
                };
                stream.drain(&mut sink);
                sink.records
            })
            .expect("spawn collector thread");
        LocalHasher {
            tx: Some(tx),
            ended,
            in_flight: 0,
            cap,
            consumer: Some(consumer),
        }
    }

    fn count_ended(&mut self) {
        while self.ended.try_recv().is_ok() {
            self.in_flight -= 1;
        }
    }

    /// Whether another batch may go in now.
    pub fn has_room(&mut self) -> bool {
        self.count_ended();
        self.in_flight < self.cap
    }

    /// Whether no batch is being hashed.
    pub fn is_idle(&mut self) -> bool {
        self.count_ended();
        self.in_flight == 0
    }

    /// Hands a batch to the pipeline; call only when [`Self::has_room`].
    pub fn send(&mut self, batch: Vec<FileTask>) {
        debug_assert!(self.in_flight < self.cap);
        self.in_flight += 1;
        let tx = self.tx.as_ref().expect("not finished");
        // The channel holds `cap` batches, so this does not block; it
        // fails only if the producer died, which `finish` reports.
        let _ = tx.send(batch);
    }

    /// Waits up to `timeout` for a batch to end.
    pub fn wait(&mut self, timeout: Duration) {
        match self.ended.recv_timeout(timeout) {
            Ok(()) => self.in_flight -= 1,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
    }

    /// Waits for every batch and returns one record per file sent.
    pub fn finish(mut self) -> SortedRuns {
        drop(self.tx.take());
        let consumer = self.consumer.take().expect("finished once");
        match consumer.join() {
            Ok(records) => records,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// A file not listed here is opened by path; for a path longer than the
/// kernel takes, the file's directory is opened one component at a time instead
/// ([`crate::walk::open_dir`]) and the file relative to it, as the
/// single-process walk does at any depth.
pub(super) fn long_path_parent(path: &Path) -> Option<Arc<DirFd>> {
    if path.as_os_str().len() < libc::PATH_MAX as usize {
        return None;
    }
    // On failure the open by path reports the error for this file.
    let parent = path.parent()?;
    crate::walk::open_dir(parent, true).ok().map(Arc::new)
}

struct Collect {
    records: SortedRuns,
    ended: mpsc::Sender<()>,
    abort: Option<AbortHook>,
    files: u64,
}

impl Sink<u32, BatchEnd> for Collect {
    fn done(&mut self, item: Item<u32>, result: Result<FileHash, HashError>) {
        self.records.push(Record {
            root: item.tag,
            path: item.path,
            outcome: Outcome::of_hash(result),
        });
        self.files += 1;
        if let Some(hook) = &self.abort {
            if self.files >= hook.after {
                super::test_abort(self.files);
            }
        }
    }

    fn msg(&mut self, _: BatchEnd) {
        let _ = self.ended.send(());
    }
}
