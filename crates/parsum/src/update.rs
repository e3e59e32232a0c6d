//! `--update STATE [PATH]...`: hash the tree and replace STATE with what it
//! is now, reading only the files that changed since STATE was written.
//!
//! The old state is loaded once, with an index by path and one by inode
//! (memory: one entry per file in STATE, about 400 bytes each with a short
//! path). The walk asks about every file it finds
//! ([`crate::pipeline::Lookup`]): a file whose size, mtime (with
//! nanoseconds) and inode equal its entry's keeps its place in the order
//! but is not opened; its hash is carried over (unless `--rehash`). A path
//! the state does not list is matched by inode instead, if the ctime is
//! also the one of the entry's last read, so a renamed directory's files
//! are not read again either (an inode number alone is reused by the next
//! new file; see [`Old::carry`]). Everything else is read. The new state is written
//! in walk order, streaming, through [`StateWriter`], and replaces STATE
//! whole at the end.
//!
//! Report (stdout, one line per file that differs, names escaped as in
//! `--audit`): `changed`, `new`, `moved    old -> new`, `missing`; with
//! `-v` also `unchanged`. The counts go to stderr. A file that cannot be
//! read keeps its old entry (if it had one), and a directory that cannot be
//! listed keeps the entries below it: an unreadable part of the tree is
//! never dropped from the state. STATE itself, its temporary file and
//! those that killed runs left are left out of the walk
//! ([`OutFile::not_data`](crate::outfile::OutFile::not_data)).
//!
//! An unreadable file whose old entry cannot be written into the new state
//! (STATE is a manifest, without metadata; or `-a` changed the algorithm)
//! leaves the old state as it is, rather than drop it.
//!
//! An entry named exactly `-` is standard input (as `--verify` reads it),
//! which `--update` cannot record: it is a malformed line (exit 2), as a
//! PATH `-` is a usage error. The file called `-` is `./-`.
//!
//! Exit status: 0 when the state was written and every file was read (any
//! number of changes is a normal update); 1 when some file or directory
//! could not be read, or STATE could not be written; 2 for a bad STATE
//! (unreadable, or a malformed line) or one that cannot be created at all
//! (its directory takes no new file: known before any read), in which case
//! nothing is written.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audit::{normalize, normalized, Joined};
use crate::escape::{push_marked_name, quote, quote_bytes, Escape};
use crate::exit::Exit;
use crate::hash::{os_message, Algo, AlgoSet, Digest, FileHash, FileStat, HashError};
use crate::manifest::Line;
use crate::output::{plural, Note, Out, Tally};
use crate::pipeline::{spawn_walk_with, Item, Lookup, Pipeline, Prior, Sink};
use crate::progress::{message, Counters, Progress};
use crate::state::{Entry, Kind, Reader, StateError, StateWriter};
use crate::walk::WalkOpts;

/// What `--update` was asked to do.
pub struct UpdateArgs {
    pub state: PathBuf,
    pub roots: Vec<PathBuf>,
    /// `-a`; else the old state's algorithm; else BLAKE3.
    pub algo: Option<Algo>,
    /// Read every file, trusting no carried-over hash.
    pub rehash: bool,
    pub verbose: bool,
}

/// The old state: its entries in STATE's order, and an index by
/// normalized path.
struct Old {
    entries: Vec<Entry>,
    index: HashMap<Vec<u8>, usize>,
    /// Entries by inode (the first of each), to carry a moved or renamed
    /// file over: a new path whose inode, size and mtime match an entry.
    by_ino: HashMap<u64, usize>,
    kind: Option<Kind>,
    /// Every algorithm its entries allow.
    algos: AlgoSet,
}

impl Old {
    fn get(&self, path: &[u8]) -> Option<(usize, &Entry)> {
        let i = *self.index.get(normalized(path).as_ref())?;
        Some((i, &self.entries[i]))
    }

    /// The hash to carry over for a file the walk found, if an entry still
    /// describes it: the entry of its path, or else (a path the state does
    /// not list: a move or a renamed directory) the entry of its inode.
    fn carry(&self, path: &[u8], st: &FileStat, algo: Algo) -> Option<FileHash> {
        match self.get(path) {
            Some((_, e)) => carry(e, st, algo),
            None => {
                // Another path's entry: the inode number alone is no proof
                // that this is that file. A freed number is soon given to a
                // new file, and tar, `cp -p` and rsync give it the old
                // file's size and mtime too. The ctime is set by the kernel
                // at every change and cannot be set back: an equal ctime
                // means the same file, untouched since (a renamed
                // directory's files). A file renamed by itself has a new
                // ctime, so it is read, and paired as a move by its hash.
                let e = &self.entries[*self.by_ino.get(&st.ino)?];
                let ctime = e.meta?.ctime?;
                if ctime != (st.ctime, st.ctime_nsec as u32) {
                    return None;
                }
                carry(e, st, algo)
            }
        }
    }
}

fn load(state: &Path, only: Option<Algo>) -> Result<Old, StateError> {
    let mut old = Old {
        entries: Vec::new(),
        index: HashMap::new(),
        by_ino: HashMap::new(),
        kind: None,
        algos: AlgoSet::EMPTY,
    };
    let Some(mut reader) = Reader::open(state, only)? else {
        return Ok(old); // the first update
    };
    // A line `-` is standard input (as `--verify` and `-c` read it), which
    // no walk finds: read as the file `./-` it was reported `moved ./- ->
    // f` (or `missing`) and dropped from the new state. Refused at its
    // line, as a PATH `-` is refused, and nothing is written.
    reader.refuse_dash(
        "'-' is standard input, which --update cannot record (it records files it \
         can read again); write ./- for a file called -",
    );
    let mut lines: Vec<u64> = Vec::new();
    while let Some(e) = reader.next_entry()? {
        let key = normalize(&e.line.name);
        if let Some(&first) = old.index.get(&key) {
            return Err(StateError::Line(
                reader.line_no(),
                format!(
                    "{} is listed twice (first on line {})",
                    quote_bytes(&key),
                    lines[first]
                ),
            ));
        }
        for a in e.line.algos.iter() {
            old.algos.insert(a);
        }
        if let Some(ino) = e.meta.and_then(|m| m.ino) {
            old.by_ino.entry(ino).or_insert(old.entries.len());
        }
        old.index.insert(key, old.entries.len());
        old.entries.push(e);
        lines.push(reader.line_no());
    }
    old.kind = reader.kind();
    Ok(old)
}

/// Runs the update; returns the exit status.
pub fn run(pipe: &Arc<Pipeline>, a: UpdateArgs, walk_opts: WalkOpts, progress: &Progress) -> Exit {
    if !crate::outfile::replaceable(&a.state) {
        message(&format!(
            "parsum: {}: --update reads STATE, then replaces it whole, so it must be a \
             regular file, not a FIFO, device or open descriptor; use -o for a stream",
            quote(&a.state)
        ));
        return Exit::Usage;
    }
    let old = match load(&a.state, a.algo) {
        Ok(o) => o,
        Err(e) => {
            message(&e.message(&a.state));
            message(&format!("parsum: {}: not updated", quote(&a.state)));
            return Exit::Usage;
        }
    };
    // The algorithm of the new state; the old state's digests are computed
    // in the same read when they differ, to compare with.
    let algo = a
        .algo
        .or_else(|| old.algos.single())
        .or_else(|| old.algos.contains(Algo::Blake3).then_some(Algo::Blake3))
        .unwrap_or(Algo::Blake3);
    let algos = old.algos.with(algo);
    if old.kind == Some(Kind::Manifest) {
        message(&format!(
            "parsum: {}: a checksum manifest, without file metadata: every file is read",
            quote(&a.state)
        ));
    }
    let writer = match StateWriter::create(&a.state) {
        Ok(w) => w,
        Err(e) => {
            message(&format!(
                "parsum: {}: cannot write a new state: {}",
                quote(&a.state),
                os_message(&e)
            ));
            return Exit::Usage;
        }
    };
    // STATE and its temporary files are not part of the tree.
    let ignore = writer.not_data();
    let old = Arc::new(old);
    let lookup: Lookup = {
        let old = Arc::clone(&old);
        let rehash = a.rehash;
        Arc::new(move |path: &Path, st: &FileStat| {
            if ignore.contains(path, (st.dev, st.ino)) {
                return Prior::Ignore;
            }
            if rehash {
                return Prior::Unknown;
            }
            old.carry(path.as_os_str().as_bytes(), st, algo)
                .map_or(Prior::Unknown, Prior::Hashed)
        })
    };
    let counters = Arc::clone(pipe.counters());
    let mut sink = UpdateSink {
        old: &old,
        sorted: None,
        algo,
        writer,
        seen: vec![false; old.entries.len()],
        new: BTreeMap::new(),
        counts: Counts::default(),
        tally: Tally::default(),
        verbose: a.verbose,
        out: Out::new(),
        progress,
        counters: &counters,
    };
    let walk_opts = Arc::new(walk_opts);
    let streams: Vec<_> = a
        .roots
        .into_iter()
        .map(|root| {
            spawn_walk_with(
                pipe,
                root,
                Arc::clone(&walk_opts),
                algos,
                Some(Arc::clone(&lookup)),
            )
        })
        .collect();
    for s in streams {
        s.drain(&mut sink);
    }
    sink.out.flush();
    progress.finish();

    let missing: BTreeMap<Vec<u8>, &Line> = old
        .entries
        .iter()
        .zip(&sink.seen)
        .filter(|(_, seen)| !**seen)
        .map(|(e, _)| (normalize(&e.line.name), &e.line))
        .collect();
    let joined = Joined::of(missing, &sink.new);
    joined.write(&mut sink.out.buf);
    let written = sink.out.finish();
    let c = &sink.counts;
    let mut line = format!(
        "parsum: update: {} new, {} changed, {} missing, {} moved, {} unchanged ({} read, {} carried over), {}",
        joined.new.len(),
        c.changed,
        joined.missing.len(),
        joined.moved.len(),
        c.unchanged,
        c.read,
        c.carried,
        plural(sink.tally.errors, "error", "errors"),
    );
    if c.kept > 0 {
        line.push_str(&format!(
            "; {} unreadable kept their previous entry",
            c.kept
        ));
    }
    message(&line);
    let state = quote(&a.state);
    if c.unkept > 0 {
        // Writing the new state would drop them without a word: the
        // promise is that nothing unreadable is dropped.
        message(&format!(
            "parsum: {state}: {} an entry that cannot be kept in the new state \
             ({}): the old state is unchanged; make {} readable, or --exclude {}",
            plural(c.unkept, "unreadable file has", "unreadable files have"),
            if old.kind == Some(Kind::Manifest) {
                "a checksum manifest has no file metadata".to_string()
            } else {
                format!("no {algo} digest")
            },
            if c.unkept == 1 { "it" } else { "them" },
            if c.unkept == 1 { "it" } else { "them" },
        ));
        return Exit::Failure.and(written);
    }
    let committed = match sink.writer.commit() {
        Ok(()) => Exit::Success,
        Err(e) => {
            message(&format!(
                "parsum: {state}: cannot write the new state: {}; the old one is unchanged",
                os_message(&e)
            ));
            Exit::Failure
        }
    };
    Exit::failed_if(sink.tally.errors > 0)
        .and(committed)
        .and(written)
}

/// The carried-over result for a file whose entry still describes it: same
/// size, mtime and inode, and a digest of `algo`. `None` means read it.
fn carry(e: &Entry, st: &FileStat, algo: Algo) -> Option<FileHash> {
    let m = e.meta?;
    let same = m.ino == Some(st.ino)
        && m.size == st.size
        && m.mtime == st.mtime
        && i64::from(m.mtime_nsec) == st.mtime_nsec;
    if !same {
        return None;
    }
    Some(FileHash {
        digests: vec![e.line.digest(algo)?],
        size: m.size,
        mtime: m.mtime,
        mtime_nsec: m.mtime_nsec,
    })
}

#[derive(Default)]
struct Counts {
    unchanged: u64,
    changed: u64,
    read: u64,
    carried: u64,
    /// Unreadable files whose old entry was kept.
    kept: u64,
    /// Unreadable files whose old entry could not be kept (no metadata, or
    /// no digest of the new state's algorithm): the old state then stays.
    unkept: u64,
}

struct UpdateSink<'a> {
    old: &'a Old,
    /// The old paths in byte order, for the entries below a path that
    /// failed (built at the first failure).
    sorted: Option<Vec<(&'a [u8], usize)>>,
    algo: Algo,
    writer: StateWriter,
    /// By old entry: accounted for (found again, or kept).
    seen: Vec<bool>,
    /// Paths the old state lacks, with their digests (for moves).
    new: BTreeMap<Vec<u8>, Vec<Digest>>,
    counts: Counts,
    tally: Tally,
    verbose: bool,
    out: Out,
    progress: &'a Progress,
    counters: &'a Counters,
}

impl<'a> UpdateSink<'a> {
    fn line(&mut self, what: &str, name: &[u8]) {
        let out = &mut self.out.buf;
        out.extend_from_slice(format!("{what:<8} ").as_bytes());
        push_marked_name(out, name, Escape::Backslash);
        out.push(b'\n');
    }

    /// Keeps the old entries at or below `path` (it could not be read or
    /// listed), in walk order.
    fn keep_below(&mut self, path: &Path) {
        let key = normalized(path.as_os_str().as_bytes());
        let mut p: &[u8] = &key;
        // `t/` (as shell completion writes it) and `t//` list `t/a`,
        // `t//a`: the directory is `t` (`/` stays `/`).
        while p.len() > 1 && p.ends_with(b"/") {
            p = &p[..p.len() - 1];
        }
        let old: &'a Old = self.old;
        let all = p == b"." || p.is_empty();
        let mut under: Vec<(&[u8], usize)> = Vec::new();
        if all {
            under.extend(old.index.iter().map(|(k, &i)| (&k[..], i)));
        } else {
            // Its own entry, then those below it: a range of the paths in
            // byte order (built once), not a scan of the state per error.
            if let Some((k, &i)) = old.index.get_key_value(p) {
                under.push((&k[..], i));
            }
            let prefix = if p == b"/" {
                p.to_vec()
            } else {
                [p, b"/"].concat()
            };
            let sorted = self.sorted.get_or_insert_with(|| {
                let mut v: Vec<(&'a [u8], usize)> =
                    old.index.iter().map(|(k, &i)| (&k[..], i)).collect();
                v.sort_unstable();
                v
            });
            let from = sorted.partition_point(|(k, _)| *k < &prefix[..]);
            under.extend(
                sorted[from..]
                    .iter()
                    .take_while(|(k, _)| k.starts_with(&prefix)),
            );
        }
        under.retain(|&(_, i)| !self.seen[i]);
        // Walk order: component by component (`a/z` before `a.b`).
        under.sort_by(|a, b| a.0.split(|&c| c == b'/').cmp(b.0.split(|&c| c == b'/')));
        for (_, i) in under {
            // Not missing either way; kept if the entry can be written.
            if self.writer.keep(&self.old.entries[i], self.algo) {
                self.counts.kept += 1;
            } else {
                self.counts.unkept += 1;
            }
            self.seen[i] = true;
        }
    }
}

impl Sink<(), Note> for UpdateSink<'_> {
    fn done(&mut self, item: Item<()>, result: Result<FileHash, HashError>) {
        let name = item.path.as_os_str().as_bytes();
        let old = self.old.get(name);
        let twice = match old {
            Some((i, _)) => self.seen[i],
            None => self.new.contains_key(normalized(name).as_ref()),
        };
        if twice {
            // Listed twice (`--update S t ./t`): the state keeps one entry,
            // or it could not be read back.
            return;
        }
        match result {
            Ok(h) => {
                self.tally.files += 1;
                let carried = item.known.is_some();
                if carried {
                    self.counts.carried += 1;
                } else {
                    self.counts.read += 1;
                    self.tally.bytes += h.size;
                }
                let d = *h
                    .digests
                    .iter()
                    .find(|d| d.algo == self.algo)
                    .expect("the state's algorithm is always computed");
                // The ctime kept is the one of the last read: a carried hash
                // keeps its entry's, so that a later move by inode needs a
                // file untouched since it was last read.
                let ctime = match old {
                    Some((_, e)) if carried => e.meta.and_then(|m| m.ctime),
                    _ => Some((item.stat.ctime, item.stat.ctime_nsec as u32)),
                };
                self.writer.record(name, &d, &h, item.stat.ino, ctime);
                match old {
                    Some((i, e)) => {
                        self.seen[i] = true;
                        // A carried hash is the entry's own.
                        if carried || h.digests.iter().any(|d| e.line.digest(d.algo) == Some(*d)) {
                            self.counts.unchanged += 1;
                            if self.verbose {
                                self.line("unchanged", &normalized(name));
                            }
                        } else {
                            self.counts.changed += 1;
                            self.line("changed", &normalized(name));
                        }
                    }
                    None => {
                        self.new.insert(normalize(name), h.digests);
                    }
                }
            }
            Err(e) => {
                self.out.flush();
                self.tally.hash_error(&item.path, &e);
                if old.is_some() {
                    self.keep_below(&item.path);
                }
            }
        }
        self.progress
            .update(self.tally.finished(), self.tally.bytes, self.counters);
    }

    fn msg(&mut self, m: Note) {
        self.out.flush();
        match m {
            Note::Skipped(p, why) => self.tally.skip(&p, &why, self.verbose),
            Note::Error(p, e) => {
                self.tally.error(&p, &os_message(&e), false);
                self.keep_below(&p);
            }
        }
    }

    fn batch_end(&mut self) {
        self.out.flush();
    }

    // Subtle: never stopped, even when stdout is gone (`--update S | head`):
    // a drain cut short would commit a state without the rest of the tree.
    // The report is dropped after a write error; the state is whole.
}
