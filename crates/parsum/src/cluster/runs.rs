//! Sorted runs of records with bounded memory, and the one k-way merge.
//!
//! A rank's results arrive in no order. [`SortedRuns`] keeps at most
//! `spill_at` of them in memory; when that many have come, it sorts them and
//! writes them to an unnamed temporary file (a sorted run) and starts
//! again. [`SortedRuns::into_sorted`] merges the runs on disk and the last
//! one in memory into one stream in output order. [`KMerge`] is the merge,
//! used here and by rank 0 for the ranks' streams (`merge.rs`).
//!
//! Invariant: every record pushed comes out exactly once, in
//! [`Record::cmp_key`] order (ties in run order). Memory is `spill_at`
//! records plus one buffered reader per run, whatever the number of files.
//! If a run cannot be written (no space in `TMPDIR`), the records stay in
//! memory (said once on stderr): nothing is lost, only the bound.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

use super::record::{sort, Record};
use super::wire::{Dec, Enc};
use crate::progress::message;

/// Records kept in memory before a run is written out (about 10 MB).
pub const SPILL_AT: usize = 1 << 15;

/// A rank's records, in memory and in sorted runs on disk.
pub struct SortedRuns {
    mem: Vec<Record>,
    spill_at: usize,
    spilled: Vec<File>,
    /// A run could not be written: keep everything in memory from now on.
    spill_failed: bool,
}

impl SortedRuns {
    /// Runs that keep `spill_at` records in memory.
    pub fn new(spill_at: usize) -> SortedRuns {
        SortedRuns {
            mem: Vec::new(),
            spill_at: spill_at.max(1),
            spilled: Vec::new(),
            spill_failed: false,
        }
    }

    /// Adds a record (in any order).
    pub fn push(&mut self, r: Record) {
        self.mem.push(r);
        if self.mem.len() >= self.spill_at && !self.spill_failed {
            self.spill();
        }
    }

    /// Runs written to disk so far.
    pub fn spilled_runs(&self) -> usize {
        self.spilled.len()
    }

    fn spill(&mut self) {
        sort(&mut self.mem);
        match write_run(&self.mem) {
            Ok(f) => {
                self.spilled.push(f);
                self.mem.clear();
            }
            Err(e) => {
                self.spill_failed = true;
                // Which rank, and where: every rank may say it, and a bare
                // "No such file or directory" names nothing to fix.
                let rank = crate::launcher::rank().unwrap_or(0);
                message(&format!(
                    "parsum: rank {rank}: cannot write sorted results to a temporary file in {} \
                     (TMPDIR): {}; keeping them in memory",
                    crate::escape::quote(&std::env::temp_dir()),
                    crate::hash::os_message(&e)
                ));
            }
        }
    }

    /// Every record, in output order.
    pub fn into_sorted(mut self) -> KMerge<Box<dyn Iterator<Item = Record> + Send>> {
        sort(&mut self.mem);
        let mut sources: Vec<Box<dyn Iterator<Item = Record> + Send>> = Vec::new();
        for f in self.spilled {
            sources.push(Box::new(RunReader {
                r: BufReader::with_capacity(64 * 1024, f),
                buf: Vec::new(),
            }));
        }
        sources.push(Box::new(self.mem.into_iter()));
        KMerge::new(sources)
    }
}

/// Writes `records` (sorted) as frames: a u32 length, then the record.
fn write_run(records: &[Record]) -> io::Result<File> {
    let mut f = tempfile::tempfile()?;
    {
        let mut w = BufWriter::with_capacity(64 * 1024, &mut f);
        let mut e = Enc::default();
        for r in records {
            e.buf.clear();
            r.encode(&mut e);
            let len =
                u32::try_from(e.buf.len()).map_err(|_| io::Error::other("a record over 4 GiB"))?;
            w.write_all(&len.to_le_bytes())?;
            w.write_all(&e.buf)?;
        }
        w.flush()?;
    }
    f.rewind()?;
    Ok(f)
}

/// Reads a run written by [`write_run`].
struct RunReader {
    r: BufReader<File>,
    buf: Vec<u8>,
}

impl Iterator for RunReader {
    type Item = Record;
    fn next(&mut self) -> Option<Record> {
        let mut len = [0u8; 4];
        match self.r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
            // Our own temporary file, written moments ago: failing to read
            // it back means the results are gone; stop loudly.
            Err(e) => panic!("parsum: reading back a temporary run: {e}"),
        }
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        if let Err(e) = self.r.read_exact(&mut self.buf) {
            panic!("parsum: reading back a temporary run: {e}");
        }
        Some(
            Record::decode(&mut Dec::new(&self.buf))
                .unwrap_or_else(|e| panic!("parsum: a temporary run is corrupt: {e}")),
        )
    }
}

/// A source's current first record, ordered for a min-heap (ties: lower
/// source first).
struct Head {
    rec: Record,
    src: usize,
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
        o.rec.cmp_key(&self.rec).then_with(|| o.src.cmp(&self.src))
    }
}

/// The k-way merge of sorted sources into one sorted stream. A source is
/// asked for its next record only when its previous one has been taken.
pub struct KMerge<I> {
    sources: Vec<I>,
    heap: BinaryHeap<Head>,
    started: bool,
}

impl<I: Iterator<Item = Record>> KMerge<I> {
    /// The merge of `sources`, each already sorted.
    pub fn new(sources: Vec<I>) -> KMerge<I> {
        KMerge {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            started: false,
        }
    }
}

impl<I: Iterator<Item = Record>> Iterator for KMerge<I> {
    type Item = Record;
    fn next(&mut self) -> Option<Record> {
        if !self.started {
            self.started = true;
            for (src, s) in self.sources.iter_mut().enumerate() {
                if let Some(rec) = s.next() {
                    self.heap.push(Head { rec, src });
                }
            }
        }
        let Head { rec, src } = self.heap.pop()?;
        if let Some(next) = self.sources[src].next() {
            self.heap.push(Head { rec: next, src });
        }
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::record::Outcome;
    use std::path::PathBuf;

    fn rec(root: u32, p: &str) -> Record {
        Record {
            root,
            path: PathBuf::from(p),
            outcome: Outcome::WalkError(p.to_string()),
        }
    }

    fn keys(it: impl Iterator<Item = Record>) -> Vec<(u32, String)> {
        it.map(|r| (r.root, r.path.to_string_lossy().into_owned()))
            .collect()
    }

    #[test]
    fn spilled_runs_merge_back_in_order_with_nothing_lost() {
        // A pseudo-random order of 1000 paths, with a spill every 64.
        let mut want = Vec::new();
        let mut runs = SortedRuns::new(64);
        let mut x: u64 = 12345;
        for _ in 0..1000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let root = (x >> 60) as u32 % 3;
            let p = format!("d{}/{}", (x >> 40) % 7, (x >> 20) % 1000);
            want.push(rec(root, &p));
            runs.push(rec(root, &p));
        }
        assert_eq!(runs.spilled_runs(), 1000 / 64);
        sort(&mut want);
        assert_eq!(keys(runs.into_sorted()), keys(want.into_iter()));
    }

    #[test]
    fn merge_of_nothing_and_of_empty_sources() {
        let none: Vec<std::vec::IntoIter<Record>> = Vec::new();
        assert_eq!(KMerge::new(none).count(), 0);
        let m = KMerge::new(vec![
            vec![].into_iter(),
            vec![rec(0, "a"), rec(0, "a/b")].into_iter(),
            vec![].into_iter(),
            vec![rec(0, "a.b")].into_iter(),
        ]);
        assert_eq!(
            keys(m),
            [(0, "a".into()), (0, "a/b".into()), (0, "a.b".into())]
        );
        assert_eq!(SortedRuns::new(4).into_sorted().count(), 0);
    }
}
