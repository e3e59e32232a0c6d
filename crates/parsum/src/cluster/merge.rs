//! The one sorted output: every rank sorts its records by the output order
//! ([`Record::cmp_key`], in bounded memory: `runs.rs`) and rank 0 merges the
//! ranks' sorted streams ([`KMerge`]), pulling each rank's in chunks as it
//! needs them.
//!
//! Invariant: rank 0 holds at most one decoded chunk per rank (each under
//! [`CHUNK_BYTES`] encoded) besides its own sorted runs' buffers, so its
//! memory is bounded by ranks × chunk, not by the number of files. A chunk is sent only when asked for (PULL), so no rank runs ahead
//! of the merge. Every message holds at least one byte (a chunk starts
//! with its "last" flag), never an empty buffer, and stays far below the
//! i32 count limit.

use std::collections::VecDeque;

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::record::Record;
use super::runs::KMerge;
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
fn next_chunk(run: &mut std::iter::Peekable<impl Iterator<Item = Record>>) -> Vec<u8> {
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

/// Any rank but 0: sends its sorted records, one chunk per PULL.
pub fn send_run(world: &SimpleCommunicator, records: impl Iterator<Item = Record>) {
    let root = world.process_at_rank(0);
    let mut run = records.peekable();
    loop {
        let _ = super::idle::receive_vec(&root, TAG_PULL);
        let chunk = next_chunk(&mut run);
        let last = chunk[0] == 1;
        super::idle::send(&root, &chunk[..], TAG_CHUNK);
        if last {
            return;
        }
    }
}

/// Another rank's sorted records, pulled a chunk at a time.
struct Remote<'a> {
    world: &'a SimpleCommunicator,
    from: i32,
    buf: VecDeque<Record>,
    ended: bool,
}

impl Iterator for Remote<'_> {
    type Item = Record;
    fn next(&mut self) -> Option<Record> {
        while self.buf.is_empty() && !self.ended {
            let p = self.world.process_at_rank(self.from);
            p.send_with_tag(&[1u8][..], TAG_PULL);
            let chunk = super::idle::receive_vec(&p, TAG_CHUNK);
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
                Err(e) => fatal(self.world, &format!("results from rank {}: {e}", self.from)),
            }
        }
        self.buf.pop_front()
    }
}

/// Rank 0: merges its own sorted records with every other rank's into
/// `sink`, in output order. If the output is gone, it still drains every
/// rank (they must not wait forever) but writes nothing more.
pub fn merge_into(
    world: &SimpleCommunicator,
    own: impl Iterator<Item = Record>,
    sink: &mut TreeSink<'_>,
    algos: AlgoSet,
) {
    // `-o FILE` inside the tree: FILE and its temporary files are the
    // output, not data (the ranks' walks could not ask before reading).
    let not_data = sink.out.not_data();
    let mut since_flush = 0;
    merge_each(world, own, |rec| {
        if sink.stopped() || not_data.contains_path(&rec.path) {
            return;
        }
        rec.deliver(sink, algos);
        since_flush += 1;
        if since_flush == crate::pipeline::BATCH_FILES {
            sink.flush();
            since_flush = 0;
        }
    });
    sink.flush();
}

/// Rank 0: merges its own sorted records with every other rank's (each
/// sending with [`send_run`]) and gives each to `each`, in output order.
pub fn merge_each(
    world: &SimpleCommunicator,
    own: impl Iterator<Item = Record>,
    each: impl FnMut(Record),
) {
    let mut sources: Vec<Box<dyn Iterator<Item = Record> + '_>> = vec![Box::new(own)];
    for from in 1..world.size() {
        sources.push(Box::new(Remote {
            world,
            from,
            buf: VecDeque::new(),
            ended: false,
        }));
    }
    KMerge::new(sources).for_each(each);
}
