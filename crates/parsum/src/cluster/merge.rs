//! The one sorted output: every rank sorts its records by the output order
//! ([`Record::cmp_key`]) and rank 0 merges the sorted runs, pulling each
//! rank's run in chunks as it needs them.
//!
//! Invariant: rank 0 holds at most one decoded chunk per rank (each under
//! [`CHUNK_BYTES`] encoded) besides its own run, so its memory for the
//! other ranks' results is bounded by ranks × chunk, not by the number of
//! files. A chunk is sent only when asked for (PULL), so no rank runs ahead
//! of the merge. Every message holds at least one byte (a chunk starts
//! with its "last" flag), never an empty buffer, and stays far below the
//! i32 count limit.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::record::Record;
use super::steal::fatal;
use super::wire::{Dec, Enc};
use crate::hash::AlgoSet;
use crate::output::TreeSink;
use crate::pipeline::Sink;

pub(super) const TAG_PULL: i32 = 6;
pub(super) const TAG_CHUNK: i32 = 7;

/// A chunk closes once it holds this many bytes.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Encodes the next chunk of `run`: a "last" flag, a count, records.
fn next_chunk(run: &mut std::iter::Peekable<std::vec::IntoIter<Record>>) -> Vec<u8> {
    let mut body = Enc::default();
    let mut n: u64 = 0;
    while body.buf.len() < CHUNK_BYTES {
        match run.next() {
            Some(r) => {
                r.encode(&mut body);
                n += 1;
            }
            None => break,
        }
    }
    let mut e = Enc::default();
    e.bool(run.peek().is_none());
    e.u64(n);
    e.buf.extend_from_slice(&body.buf);
    e.buf
}

/// Any rank but 0: sends its sorted run, one chunk per PULL.
pub fn send_run(world: &SimpleCommunicator, records: Vec<Record>) {
    let root = world.process_at_rank(0);
    let mut run = records.into_iter().peekable();
    loop {
        let _ = root.receive_vec_with_tag::<u8>(TAG_PULL);
        let chunk = next_chunk(&mut run);
        let last = chunk[0] == 1;
        root.send_with_tag(&chunk[..], TAG_CHUNK);
        if last {
            return;
        }
    }
}

/// One run being merged.
struct Run {
    /// The rank it comes from; `None` for rank 0's own.
    from: Option<i32>,
    buf: VecDeque<Record>,
    ended: bool,
}

impl Run {
    /// The next record, pulling a chunk when the buffer is empty.
    fn next(&mut self, world: &SimpleCommunicator) -> Option<Record> {
        while self.buf.is_empty() && !self.ended {
            let r = self.from.expect("the local run is never refilled");
            let p = world.process_at_rank(r);
            p.send_with_tag(&[1u8][..], TAG_PULL);
            let (chunk, _) = p.receive_vec_with_tag::<u8>(TAG_CHUNK);
            let mut d = Dec::new(&chunk);
            let decoded = (|| {
                let last = d.bool()?;
                let n = d.u64()?;
                let mut v = VecDeque::new();
                for _ in 0..n {
                    v.push_back(Record::decode(&mut d)?);
                }
                if !d.is_empty() {
                    return Err("bytes after the records".to_string());
                }
                Ok((last, v))
            })();
            match decoded {
                Ok((last, v)) => {
                    self.ended = last;
                    self.buf = v;
                }
                Err(e) => fatal(world, &format!("results from rank {r}: {e}")),
            }
        }
        self.buf.pop_front()
    }
}

/// A run's current first record, ordered for a min-heap (ties: lower run
/// first, so equal keys come out in rank order).
struct Head {
    rec: Record,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        o.rec.cmp_key(&self.rec).then_with(|| o.run.cmp(&self.run))
    }
}

/// Rank 0: merges its own sorted run with every other rank's into `sink`,
/// in output order. Stops early, still draining every rank, if the output
/// is gone (the other ranks must not wait forever).
pub fn merge_into(
    world: &SimpleCommunicator,
    own: Vec<Record>,
    sink: &mut TreeSink<'_>,
    algos: AlgoSet,
) {
    let mut runs = vec![Run {
        from: None,
        buf: own.into(),
        ended: true,
    }];
    for r in 1..world.size() {
        runs.push(Run {
            from: Some(r),
            buf: VecDeque::new(),
            ended: false,
        });
    }
    let mut heap = BinaryHeap::with_capacity(runs.len());
    for (i, run) in runs.iter_mut().enumerate() {
        if let Some(rec) = run.next(world) {
            heap.push(Head { rec, run: i });
        }
    }
    let mut since_flush = 0;
    while let Some(Head { rec, run }) = heap.pop() {
        if !sink.stopped() {
            rec.deliver(sink, algos);
            since_flush += 1;
            if since_flush == crate::pipeline::BATCH_FILES {
                sink.flush();
                since_flush = 0;
            }
        }
        if let Some(next) = runs[run].next(world) {
            heap.push(Head { rec: next, run });
        }
    }
    sink.flush();
}
