//! A result of tree mode that can travel between ranks: one file's digest
//! or error, or one of the walk's notes (a skipped entry, a directory that
//! could not be read), with the key that puts it in parsum's output order.
//!
//! Invariant: sorting records by [`Record::cmp_key`] gives exactly the
//! order in which a single-process run prints them. The single-process walk
//! (`walk.rs`) visits the PATH arguments in order, and inside each one sorts
//! every directory's names by their bytes and goes depth first; that is the
//! order of the paths compared component by component, which is how
//! [`Path`]'s `Ord` compares them (`a/z` < `a.b`, because the component `a`
//! < `a.b`). So the key is (argument index, path as a `Path`), compared
//! fast by [`path_cmp`]: the path's bytes with `/` counted as the lowest
//! byte, which is the component order for the paths of one argument (they
//! all start with the argument as typed). Records are
//! written to the output by the same [`TreeSink`] as in a single-process
//! run: one home for formatting and escaping.

use std::cmp::Ordering;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::wire::{Dec, Enc, WireResult};
use crate::hash::{Algo, AlgoSet, Digest, FileHash, FileStat, HashError};
use crate::output::Note;
#[cfg(doc)]
use crate::output::TreeSink;
use crate::pipeline::{Item, Sink};
use crate::walk::Skip;

/// One line of output (or of stderr), with its place in the order.
#[derive(Debug)]
pub struct Record {
    /// Index of the PATH argument it is under.
    pub root: u32,
    /// The path as printed.
    pub path: PathBuf,
    /// What happened to it.
    pub outcome: Outcome,
}

/// What happened to a path.
#[derive(Debug)]
pub enum Outcome {
    Hashed(FileHash),
    /// The file's hash failed: `text` is the error as printed; `changed`
    /// says it changed during the read (counted apart in the summary).
    Failed {
        changed: bool,
        text: String,
    },
    /// The walk did not hash it (a link, a FIFO, an excluded name...).
    Skipped(Skip),
    /// The walk could not list or open it; `text` is the OS error.
    WalkError(String),
    /// `--audit`: a file compared with its manifest line by the rank that
    /// owns its path; its digest `matched`, or it changed.
    Compared {
        /// The digest matched the manifest's.
        matched: bool,
    },
}

impl Outcome {
    /// A hash result as it is sent.
    pub fn of_hash(r: Result<FileHash, HashError>) -> Outcome {
        match r {
            Ok(h) => Outcome::Hashed(h),
            Err(HashError::Changed(why)) => Outcome::Failed {
                changed: true,
                text: why,
            },
            Err(e) => Outcome::Failed {
                changed: false,
                text: e.to_string(),
            },
        }
    }
}

impl Record {
    /// The output order (see the module comment).
    pub fn cmp_key(&self, other: &Record) -> Ordering {
        self.root
            .cmp(&other.root)
            .then_with(|| path_cmp(&self.path, &other.path))
    }

    /// Whether the record is a file (hashed or failed), not a walk note.
    pub fn is_file(&self) -> bool {
        matches!(self.outcome, Outcome::Hashed(_) | Outcome::Failed { .. })
    }

    /// Writes the record through the single-process output code: a line on
    /// stdout, or a report on stderr, with the same tallies.
    /// Tree mode's [`TreeSink`] and `--audit`'s printer take every outcome
    /// but [`Outcome::Compared`], which only the audit's printer knows.
    pub fn deliver<S: Sink<(), Note>>(self, sink: &mut S, algos: AlgoSet) {
        let item = |path: PathBuf| Item {
            path,
            dir: None,
            stat: FileStat::default(),
            no_follow: false,
            algos,
            tag: (),
            known: None,
        };
        match self.outcome {
            Outcome::Hashed(h) => sink.done(item(self.path), Ok(h)),
            Outcome::Failed { changed, text } => {
                let e = if changed {
                    HashError::Changed(text)
                } else {
                    // Displayed as `text` itself (`os_message` of an
                    // `other` error is its text).
                    HashError::Io(io::Error::other(text))
                };
                sink.done(item(self.path), Err(e))
            }
            Outcome::Skipped(s) => sink.msg(Note::Skipped(self.path, s)),
            Outcome::WalkError(t) => sink.msg(Note::Error(self.path, io::Error::other(t))),
            Outcome::Compared { .. } => {
                unreachable!("--audit prints its comparisons itself (cluster/audit.rs)")
            }
        }
    }

    /// Appends the record to a message.
    pub fn encode(&self, e: &mut Enc) {
        e.u32(self.root);
        e.path(&self.path);
        match &self.outcome {
            Outcome::Hashed(h) => {
                e.u8(0);
                e.u64(h.size);
                e.i64(h.mtime);
                e.u32(h.mtime_nsec);
                encode_digests(e, &h.digests);
            }
            Outcome::Failed { changed, text } => {
                e.u8(1);
                e.bool(*changed);
                e.str(text);
            }
            Outcome::Skipped(s) => {
                e.u8(2);
                encode_skip(e, s);
            }
            Outcome::WalkError(t) => {
                e.u8(3);
                e.str(t);
            }
            Outcome::Compared { matched } => {
                e.u8(4);
                e.bool(*matched);
            }
        }
    }

    /// Reads a record written by [`Record::encode`].
    pub fn decode(d: &mut Dec<'_>) -> WireResult<Record> {
        let root = d.u32()?;
        let path = d.path()?;
        let outcome = match d.u8()? {
            0 => {
                let size = d.u64()?;
                let mtime = d.i64()?;
                let mtime_nsec = d.u32()?;
                let digests = decode_digests(d)?;
                if digests.is_empty() {
                    return Err("malformed message: a hashed file without a digest".into());
                }
                Outcome::Hashed(FileHash {
                    digests,
                    size,
                    mtime,
                    mtime_nsec,
                })
            }
            1 => Outcome::Failed {
                changed: d.bool()?,
                text: d.string()?,
            },
            2 => Outcome::Skipped(decode_skip(d)?),
            3 => Outcome::WalkError(d.string()?),
            4 => Outcome::Compared { matched: d.bool()? },
            k => return Err(format!("malformed message: outcome kind {k}")),
        };
        Ok(Record {
            root,
            path,
            outcome,
        })
    }
}

/// Compares two paths of the same PATH argument as [`Path`]'s `Ord` does
/// (component by component) without splitting them: byte by byte, with `/`
/// as the lowest byte (no name holds a NUL), so a name that is a prefix of
/// another (`a/` against `a.b`) and a directory's path against its
/// entries' sort as components do. A leading `./` is dropped: the paths
/// of an argument spelled `./…` all have it, and under `.` (whose entries
/// are `a`, not `./a`) only the entry `-` has it (shown `./-`, as a bare
/// `-` is standard input). The path `.`, which the walk shows for the
/// argument `.` itself, sorts first, as `CurDir`.
pub fn path_cmp(a: &Path, b: &Path) -> Ordering {
    fn key(p: &Path) -> &[u8] {
        match p.as_os_str().as_bytes() {
            b"." => b"",
            // Every path of an argument spelled `./…` has this prefix, and
            // under `.` only the entry `-` (shown as `./-`, `walk.rs`), which
            // sorts as the `-` it is.
            k => k.strip_prefix(b"./").unwrap_or(k),
        }
    }
    let low = |c: &u8| if *c == b'/' { 0 } else { *c };
    key(a).iter().map(low).cmp(key(b).iter().map(low))
}

/// A list of digests on the wire: a count, then each algorithm and hex.
pub(super) fn encode_digests(e: &mut Enc, digests: &[Digest]) {
    e.u8(digests.len() as u8);
    for d in digests {
        e.u8(algo_index(d.algo));
        e.str(&d.to_hex());
    }
}

/// Reads what [`encode_digests`] wrote.
pub(super) fn decode_digests(d: &mut Dec) -> WireResult<Vec<Digest>> {
    let n = d.u8()?;
    let mut digests = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let algo = algo_at(d.u8()?)?;
        let hex = d.string()?;
        digests.push(
            Digest::from_hex(algo, hex.as_bytes())
                .ok_or_else(|| format!("malformed message: digest {hex:?}"))?,
        );
    }
    Ok(digests)
}

fn algo_index(a: Algo) -> u8 {
    Algo::ALL
        .iter()
        .position(|&x| x == a)
        .expect("every algorithm is in ALL") as u8
}

fn algo_at(i: u8) -> WireResult<Algo> {
    Algo::ALL
        .get(i as usize)
        .copied()
        .ok_or_else(|| format!("malformed message: algorithm {i}"))
}

fn encode_skip(e: &mut Enc, s: &Skip) {
    match s {
        Skip::Symlink => e.u8(0),
        Skip::Special(kind) => {
            e.u8(1);
            e.str(kind);
        }
        Skip::Excluded => e.u8(2),
        Skip::OtherFileSystem => e.u8(3),
        Skip::Unbounded(fs) => {
            e.u8(4);
            e.str(fs);
        }
        Skip::Loop => e.u8(5),
    }
}

fn decode_skip(d: &mut Dec<'_>) -> WireResult<Skip> {
    Ok(match d.u8()? {
        0 => Skip::Symlink,
        1 => Skip::Special(intern(d.string()?)),
        2 => Skip::Excluded,
        3 => Skip::OtherFileSystem,
        4 => Skip::Unbounded(intern(d.string()?)),
        5 => Skip::Loop,
        k => return Err(format!("malformed message: skip kind {k}")),
    })
}

/// A `&'static str` for a kind or file-system name received from another
/// rank ([`Skip`] holds static names). Each distinct name is leaked once;
/// there are a handful (file types, pseudo file systems).
fn intern(s: String) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.iter().find(|n| **n == s) {
        return n;
    }
    let n: &'static str = Box::leak(s.into_boxed_str());
    names.push(n);
    n
}

/// Sorts records into output order (stable, so equal keys keep their order).
pub fn sort(records: &mut [Record]) {
    records.sort_by(Record::cmp_key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn rec(root: u32, path: &[u8], outcome: Outcome) -> Record {
        Record {
            root,
            path: PathBuf::from(OsStr::from_bytes(path)),
            outcome,
        }
    }

    #[test]
    fn order_is_the_walks() {
        let mut v = vec![
            rec(1, b"a", Outcome::WalkError("x".into())),
            rec(0, b"a.b", Outcome::Skipped(Skip::Symlink)),
            rec(0, b"a/z", Outcome::Skipped(Skip::Symlink)),
            rec(0, b"B", Outcome::Skipped(Skip::Symlink)),
            rec(0, b"a/sub/z", Outcome::Skipped(Skip::Symlink)),
            rec(0, b".", Outcome::WalkError("x".into())),
            rec(0, b"a\xff", Outcome::Skipped(Skip::Symlink)),
        ];
        sort(&mut v);
        let got: Vec<(u32, &[u8])> = v
            .iter()
            .map(|r| (r.root, r.path.as_os_str().as_bytes()))
            .collect();
        assert_eq!(
            got,
            [
                (0, &b"."[..]),
                (0, b"B"),
                (0, b"a/sub/z"),
                (0, b"a/z"),
                (0, b"a.b"),
                (0, b"a\xff"),
                (1, b"a"),
            ]
        );
    }

    #[test]
    fn path_cmp_is_path_order_for_one_arguments_paths() {
        // Every pair of paths below a few argument spellings, built from
        // names that stress the separator: prefixes, bytes below and above
        // '/', non-UTF-8.
        let names: [&[u8]; 8] = [b"a", b"a.b", b"a-", b"ab", b"-", b"A", b"a\xff", b"\x01"];
        for base in ["", "./", "x/", "/abs/dir/", "odd/./x/"] {
            let mut paths = vec![PathBuf::from(if base.is_empty() { "." } else { base })];
            for n in names {
                let one = [base.as_bytes(), n].concat();
                paths.push(PathBuf::from(OsStr::from_bytes(&one)));
                for m in names {
                    let two = [&one[..], b"/", m].concat();
                    paths.push(PathBuf::from(OsStr::from_bytes(&two)));
                }
            }
            for a in &paths {
                for b in &paths {
                    assert_eq!(path_cmp(a, b), a.cmp(b), "{a:?} vs {b:?} under {base:?}");
                }
            }
        }
    }

    /// Under `.`, the entry `-` is shown `./-` (and its entries `./-/x`);
    /// it sorts where the bare `-` would, as the single process walks it.
    #[test]
    fn the_entry_dash_of_dot_sorts_as_dash() {
        let names: [&[u8]; 7] = [b"-", b"\x01", b"!", b"-a", b"a", b"-/x", b"-/!"];
        let shown = |n: &[u8]| {
            let s = if n == b"-" || n.starts_with(b"-/") {
                [&b"./"[..], n].concat()
            } else {
                n.to_vec()
            };
            PathBuf::from(OsStr::from_bytes(&s))
        };
        for a in names {
            for b in names {
                let bare = |n: &[u8]| PathBuf::from(OsStr::from_bytes(n));
                assert_eq!(
                    path_cmp(&shown(a), &shown(b)),
                    bare(a).cmp(&bare(b)),
                    "{:?} vs {:?}",
                    shown(a),
                    shown(b)
                );
            }
        }
    }

    #[test]
    fn encode_decode_every_outcome() {
        let h = FileHash {
            digests: vec![hash_bytes(Algo::Sha256, b"x"), hash_bytes(Algo::Md5, b"x")],
            size: 1,
            mtime: -3,
            mtime_nsec: 4,
        };
        let all = vec![
            rec(0, b"f\n\xff", Outcome::Hashed(h)),
            rec(
                1,
                b"g",
                Outcome::Failed {
                    changed: true,
                    text: "size 1 -> 2".into(),
                },
            ),
            rec(2, b"h", Outcome::Skipped(Skip::Special("FIFO"))),
            rec(3, b"i", Outcome::Skipped(Skip::Unbounded("procfs"))),
            rec(4, b"j", Outcome::WalkError("Permission denied".into())),
            rec(5, b"k", Outcome::Skipped(Skip::Loop)),
        ];
        let mut e = Enc::default();
        for r in &all {
            r.encode(&mut e);
        }
        let mut d = Dec::new(&e.buf);
        for r in &all {
            let got = Record::decode(&mut d).unwrap();
            assert_eq!(format!("{got:?}"), format!("{r:?}"));
        }
        assert!(d.is_empty());
        // A cut message is an error, not a panic.
        for cut in 0..e.buf.len() {
            let mut d = Dec::new(&e.buf[..cut]);
            let mut r = Ok(());
            for _ in &all {
                if let Err(m) = Record::decode(&mut d) {
                    r = Err(m);
                    break;
                }
            }
            assert!(r.is_err(), "cut at {cut}");
        }
    }
}
