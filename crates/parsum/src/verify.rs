//! `--verify STATE`: read every file STATE lists again and say, for each,
//! whether it still is what STATE recorded, and if not, whether someone
//! changed it or it rotted.
//!
//! Each file ends in exactly one outcome, printed on stdout as `name: WHAT`
//! (the name escaped as in `-c` results):
//! - `OK`: same content (its mtime may have changed: a `touch` is no edit);
//! - `MODIFIED`: other content and another mtime, a normal edit;
//! - `CORRUPTED (content changed, size and mtime unchanged)`: other content
//!   under the recorded mtime (when another file holds the name, a new
//!   inode and ctime, put in place with the old mtime by `cp -p` or
//!   `rsync -t`, the reason says so). Nothing that writes through the file system
//!   does that without restoring the mtime on purpose, so this is silent
//!   corruption (bit rot, a bad disk or controller, a tool that hides its
//!   writes). When the size changed too, the reason says so;
//! - `CHANGED`: other content, for a manifest STATE, which has no mtime to
//!   tell the two apart (said once on stderr), and for standard input;
//! - `MISSING`: the path is gone;
//! - `UNREADABLE`: it cannot be read, or is no longer a regular file (the
//!   reason on stderr).
//!
//! An entry named `-` is standard input, hashed at its place in STATE's
//! order, as `-c` hashes it for a manifest's line `-` (`state.rs`).
//!
//! STATE is streamed in its own order through the per-device pipeline; it
//! is read twice, first whole to check every line (a malformed one stops the
//! run with its line number before any file is read), then to verify: a
//! regular file from the same descriptor, rewound; a pipe from a copy of
//! its bytes kept by the first read ([`Source`]).
//!
//! Exit status: 0 when every file is OK; 1 when any is not (as `sha256sum
//! -c` and hashdeep's audit: a missing or modified file is a difference to
//! look at), with CORRUPTED called out in a warning of its own; 2 for a
//! missing, unreadable or malformed STATE.

use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::escape::{push_marked_name, quote_bytes, Escape};
use crate::exit::Exit;
use crate::hash::{kind_name, Algo, FileHash, FileStat, HashError};
use crate::manifest::{label, open_input, Input};
use crate::output::{plural, Out};
use crate::pipeline::{hash_stdin_item, Feeder, Item, Pipeline, Runs, Sink};
use crate::progress::{message, Counters, Progress};
use crate::state::{Entry, Kind, Reader, StateError};

/// Events between files.
pub enum Msg {
    /// An entry naming `-`: standard input, hashed by the sink in order
    /// (as `-c` hashes it for a manifest's line `-`).
    Stdin(Entry),
    Missing(Entry),
    /// stat failed, or the path is not a regular file.
    Unreadable(Entry, HashError),
    /// The state changed between the check and the verification: the
    /// message, as [`StateError::message`] gives it.
    Bad(String),
}

/// The outcome for one file whose content was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Modified,
    /// Other content under the recorded mtime. `same_size`: the size is
    /// also the recorded one; `replaced`: another file holds the name (a
    /// new inode and a new ctime), so this was put in place with the old
    /// mtime (cp -p, rsync -t, tar -x), not rotted in place.
    Corrupted {
        same_size: bool,
        replaced: bool,
    },
    /// Other content; the state has no metadata to say more.
    Changed,
}

/// Classifies a file read again (`st`: its stat now) against its entry.
pub fn classify(e: &Entry, h: &FileHash, st: &FileStat) -> Verdict {
    if h.digests.iter().any(|d| e.line.digest(d.algo) == Some(*d)) {
        return Verdict::Ok;
    }
    match e.meta {
        None => Verdict::Changed,
        // The rule: other content under the same mtime is
        // corrupted. Whether another file now holds the name (another inode
        // and another ctime: rot allocates no inode) is said in its reason;
        // both, because some file systems (FAT, some FUSE) number inodes
        // anew at each mount but keep the ctime.
        Some(m) if (m.mtime, m.mtime_nsec) == (h.mtime, h.mtime_nsec) => Verdict::Corrupted {
            same_size: m.size == h.size,
            replaced: m.ino.is_some_and(|i| i != st.ino)
                && m.ctime
                    .is_some_and(|c| c != (st.ctime, st.ctime_nsec as u32)),
        },
        Some(_) => Verdict::Modified,
    }
}

/// STATE, opened once for its two reads (a check, then the verification):
/// a regular file is read again from its start (the same file, even if a
/// new state was renamed over it meanwhile); anything else (a pipe:
/// `--verify <(cmd)`, `/dev/stdin`) cannot be read twice, so its bytes are
/// kept from the first read.
pub enum Source {
    File(std::fs::File),
    Bytes(Vec<u8>),
}

/// Copies what it reads into `copy`.
struct Tee<R> {
    inner: R,
    copy: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl<R: std::io::Read> std::io::Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Opens STATE and checks every line; returns its kind (`None`: empty)
/// and where to read it again.
fn check_all(state: &Path, only: Option<Algo>) -> Result<(Option<Kind>, Source), StateError> {
    let fail = |e: std::io::Error| {
        StateError::Io(format!("{}: {}", label(state), crate::hash::os_message(&e)))
    };
    let copy = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tee = |inner: Box<dyn std::io::Read + Send>| -> Box<dyn std::io::BufRead + Send> {
        Box::new(BufReader::new(Tee {
            inner,
            copy: Arc::clone(&copy),
        }))
    };
    // Standard input for `-`, as for `-c`.
    let (input, source) = match open_input(state).map_err(fail)? {
        Input::Stdin(stdin) => (tee(Box::new(stdin)), None),
        Input::File(file, meta) if meta.is_file() => {
            let again = file.try_clone().map_err(fail)?;
            let input: Box<dyn std::io::BufRead + Send> = Box::new(BufReader::new(file));
            (input, Some(Source::File(again)))
        }
        Input::File(file, _) => (tee(Box::new(file)), None),
    };
    let mut r = Reader::of(input, state, only);
    while r.next_entry()?.is_some() {}
    let kind = r.kind();
    drop(r);
    let source = source.unwrap_or_else(|| {
        Source::Bytes(std::mem::take(
            &mut copy.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    });
    Ok((kind, source))
}

/// Runs the verification (`quiet`: no line for an OK file); returns the
/// exit status.
pub fn run(
    pipe: &Arc<Pipeline>,
    state: PathBuf,
    only: Option<Algo>,
    quiet: bool,
    progress: &Progress,
) -> Exit {
    let (kind, source) = match check_all(&state, only) {
        Ok(k) => k,
        Err(e) => {
            message(&e.message(&state));
            return Exit::Usage;
        }
    };
    if kind == Some(Kind::Manifest) {
        message(&format!(
            "parsum: {}: a checksum manifest, without file metadata: a changed file is \
             reported as CHANGED, not as MODIFIED or CORRUPTED",
            label(&state)
        ));
    }
    let path = state.clone();
    let stream = pipe.spawn(move |f: &mut Feeder<Entry, Msg>| produce(f, source, &path, only));
    let mut sink = VerifySink {
        counts: Counts::default(),
        quiet,
        bytes: 0,
        out: Out::new(),
        bad: None,
        progress,
        counters: Arc::clone(pipe.counters()),
    };
    stream.drain(&mut sink);
    progress.finish();
    let written = sink.out.finish();
    if let Some(e) = &sink.bad {
        message(e);
        return Exit::Usage;
    }
    let c = &sink.counts;
    let mut line = format!(
        "parsum: verify: {} ok, {} modified, {} corrupted, {} missing, {} unreadable",
        c.ok, c.modified, c.corrupted, c.missing, c.unreadable
    );
    if kind == Some(Kind::Manifest) || c.changed > 0 {
        line.push_str(&format!(", {} changed", c.changed));
    }
    message(&line);
    if c.corrupted > 0 {
        message(&format!(
            "parsum: WARNING: {} CORRUPTED: content changed while the mtime did not",
            plural(c.corrupted, "file is", "files are")
        ));
    }
    let differs = c.modified + c.corrupted + c.missing + c.unreadable + c.changed > 0;
    Exit::failed_if(differs).and(written)
}

/// The producer: each entry, stat'ed, to the pipeline (a run per device).
fn produce(f: &mut Feeder<Entry, Msg>, source: Source, state: &Path, only: Option<Algo>) {
    let mut runs = Runs::default();
    let input: Box<dyn std::io::BufRead + Send> = match source {
        Source::Bytes(b) => Box::new(std::io::Cursor::new(b)),
        Source::File(mut file) => {
            if let Err(e) = std::io::Seek::rewind(&mut file) {
                let e =
                    StateError::Io(format!("{}: {}", label(state), crate::hash::os_message(&e)));
                return runs.msg(f, Msg::Bad(e.message(state)));
            }
            Box::new(BufReader::with_capacity(64 * 1024, file))
        }
    };
    let mut reader = Reader::of(input, state, only);
    loop {
        let e = match reader.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => return runs.msg(f, Msg::Bad(e.message(state))),
        };
        if e.line.name == b"-" {
            // Standard input, not a file called `-` (that is `./-`). It has
            // no mtime: other content is CHANGED, never CORRUPTED.
            runs.msg(f, Msg::Stdin(Entry { meta: None, ..e }));
            continue;
        }
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&e.line.name));
        match std::fs::metadata(&path) {
            Ok(m) if !m.file_type().is_file() => {
                let err = HashError::NotRegular(kind_name(m.file_type()));
                runs.msg(f, Msg::Unreadable(e, err));
            }
            Ok(m) => runs.file(
                f,
                Item {
                    path,
                    dir: None,
                    stat: FileStat {
                        nlink: 1, // every entry is read, hard links too
                        ..FileStat::of(&m)
                    },
                    no_follow: false,
                    algos: e.line.algos,
                    known: None,
                    tag: e,
                },
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => runs.msg(f, Msg::Missing(e)),
            Err(err) => runs.msg(f, Msg::Unreadable(e, HashError::Io(err))),
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: u64,
    modified: u64,
    corrupted: u64,
    changed: u64,
    missing: u64,
    unreadable: u64,
}

struct VerifySink<'a> {
    counts: Counts,
    /// No line for an OK file.
    quiet: bool,
    /// Bytes read, for the progress bar.
    bytes: u64,
    out: Out,
    /// The state turned bad while it was verified.
    bad: Option<String>,
    progress: &'a Progress,
    counters: Arc<Counters>,
}

impl VerifySink<'_> {
    fn line(&mut self, name: &[u8], what: &str) {
        push_marked_name(&mut self.out.buf, name, Escape::Backslash);
        self.out.buf.extend_from_slice(b": ");
        self.out.buf.extend_from_slice(what.as_bytes());
        self.out.buf.push(b'\n');
    }

    fn unreadable(&mut self, name: &[u8], e: &HashError) {
        self.counts.unreadable += 1;
        self.out.flush();
        message(&format!("parsum: {}: {e}", quote_bytes(name)));
        self.line(name, "UNREADABLE");
    }
}

impl Sink<Entry, Msg> for VerifySink<'_> {
    fn done(&mut self, item: Item<Entry>, result: Result<FileHash, HashError>) {
        let name = &item.tag.line.name;
        match result {
            Ok(h) => {
                let verdict = classify(&item.tag, &h, &item.stat);
                let (what, count) = match verdict {
                    Verdict::Ok => ("OK".to_string(), &mut self.counts.ok),
                    Verdict::Modified => ("MODIFIED".to_string(), &mut self.counts.modified),
                    Verdict::Changed => ("CHANGED".to_string(), &mut self.counts.changed),
                    Verdict::Corrupted {
                        same_size,
                        replaced,
                    } => (
                        format!(
                            "CORRUPTED ({}{})",
                            if same_size {
                                "content changed, size and mtime unchanged"
                            } else {
                                "content and size changed, mtime unchanged"
                            },
                            if replaced {
                                "; another file: new inode and ctime, put in place with the old mtime"
                            } else {
                                ""
                            }
                        ),
                        &mut self.counts.corrupted,
                    ),
                };
                *count += 1;
                self.bytes += h.size;
                if !(self.quiet && verdict == Verdict::Ok) {
                    self.line(name, &what);
                }
            }
            Err(e) => self.unreadable(name, &e),
        }
        let c = &self.counts;
        let done = c.ok + c.modified + c.corrupted + c.changed + c.missing + c.unreadable;
        self.progress.update(done, self.bytes, &self.counters);
    }

    fn msg(&mut self, m: Msg) {
        match m {
            Msg::Stdin(e) => {
                let (item, r) = hash_stdin_item(e.line.algos, e);
                self.done(item, r);
            }
            Msg::Missing(e) => {
                self.counts.missing += 1;
                self.line(&e.line.name, "MISSING");
            }
            Msg::Unreadable(e, err) => self.unreadable(&e.line.name, &err),
            Msg::Bad(e) => self.bad = Some(e),
        }
    }

    fn batch_end(&mut self) {
        self.out.flush();
    }

    fn stopped(&self) -> bool {
        self.out.failed() || self.bad.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{hash_bytes, AlgoSet};
    use crate::manifest::Line;
    use crate::state::Meta;

    fn entry(content: &[u8], meta: Option<Meta>) -> Entry {
        Entry {
            line: Line {
                algos: AlgoSet::of(Algo::Blake3),
                hex: hash_bytes(Algo::Blake3, content).to_hex().into_bytes(),
                name: b"f".to_vec(),
            },
            meta,
        }
    }

    fn now(content: &[u8], size: u64, mtime: i64, nsec: u32) -> FileHash {
        FileHash {
            digests: vec![hash_bytes(Algo::Blake3, content)],
            size,
            mtime,
            mtime_nsec: nsec,
        }
    }

    fn st(ino: u64, ctime: i64) -> FileStat {
        FileStat {
            ino,
            ctime,
            ..FileStat::default()
        }
    }

    #[test]
    fn the_rules() {
        let meta = Some(Meta {
            size: 3,
            mtime: 100,
            mtime_nsec: 5,
            ino: Some(1),
            ctime: Some((7, 0)),
        });
        let e = entry(b"abc", meta);
        assert_eq!(
            classify(&e, &now(b"abc", 3, 200, 0), &st(1, 7)),
            Verdict::Ok
        );
        assert_eq!(
            classify(&e, &now(b"abd", 3, 200, 0), &st(1, 7)),
            Verdict::Modified
        );
        assert_eq!(
            classify(&e, &now(b"abd", 3, 100, 6), &st(1, 7)),
            Verdict::Modified
        );
        assert_eq!(
            classify(&e, &now(b"abd", 3, 100, 5), &st(1, 7)),
            Verdict::Corrupted {
                same_size: true,
                replaced: false
            }
        );
        assert_eq!(
            classify(&e, &now(b"ab", 2, 100, 5), &st(1, 7)),
            Verdict::Corrupted {
                same_size: false,
                replaced: false
            }
        );
        // The name is another file now (inode 2, a new ctime), under the
        // old mtime; a new inode number alone (FAT after a remount) is not.
        assert_eq!(
            classify(&e, &now(b"abd", 3, 100, 5), &st(2, 8)),
            Verdict::Corrupted {
                same_size: true,
                replaced: true
            }
        );
        assert_eq!(
            classify(&e, &now(b"abd", 3, 100, 5), &st(2, 7)),
            Verdict::Corrupted {
                same_size: true,
                replaced: false
            }
        );
        let bare = entry(b"abc", None);
        assert_eq!(
            classify(&bare, &now(b"abc", 3, 1, 0), &st(1, 7)),
            Verdict::Ok
        );
        assert_eq!(
            classify(&bare, &now(b"abd", 3, 100, 5), &st(1, 7)),
            Verdict::Changed
        );
    }
}
