//! The STATE file of `--update` and `--verify`: what a tree was at the last
//! update, one file per line, and how it is read and replaced.
//!
//! A state file is JSON lines, one per file, in parsum's sort order: the
//! `--json` line of the file plus its inode and its ctime as of its last
//! read, `{"path","size","mtime","mtime_nsec","ino","ctime","ctime_nsec",
//! "algo","hash"}` (`ctime` is optional: a state without it is read, but no
//! file of it is carried over to another path by inode), with
//! `"path_hex"` for a name that is not UTF-8 (the writer is
//! `output::write_json`). [`parse_record`] is its exact inverse: every name
//! reads back byte for byte. A `--json` listing (no `ino`) reads as a state
//! whose files must be read again before their hash is trusted.
//!
//! A checksum manifest (what `-c` reads: GNU, BSD tag, b3sum) is accepted
//! as a degraded state: the path and digest of each line, no metadata
//! ([`Entry::meta`] is `None`). The first line that is not blank decides:
//! `{` starts a JSON state, anything else a manifest. A state that lists no
//! file (zero bytes, as an empty tree's update writes; blank lines; only
//! comments) is an empty state, which `--verify` passes, where `-c` fails
//! on the same file as `sha256sum -c` does.
//!
//! An entry named exactly `-` is standard input, in either kind and however
//! it is written (a plain or an escaped manifest line, a BSD tag, a JSON
//! `path` or `path_hex`), as a `-c` manifest's line `-` is (the file called
//! `-` is `./-`, which any spelling that normalizes to it still names):
//! `--verify` hashes standard input for it; in a STATE read from standard
//! input (`--verify -`), and in any STATE of `--update` (which records only
//! files it can read again, and never writes a `-` entry), it is a
//! malformed line ([`Reader::refuse_dash`]).
//!
//! Invariants: a malformed line is an error naming its line number, never
//! skipped; and a state is only ever replaced whole ([`StateWriter`]: a
//! temporary file in the same directory, fsync, rename), so an interrupted
//! run leaves the old state or the new one, never half of one.

use std::io::{self, BufRead};
use std::path::Path;

use crate::escape::quote;
use crate::hash::{os_message, Algo, AlgoSet, Digest, FileHash};
use crate::manifest::{is_too_long, read_line, Line, LineParser, Parsed};

/// The stat metadata a JSON state keeps of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// `None` in a `--json` listing (it has no inode).
    pub ino: Option<u64>,
    /// The inode change time, seconds and nanoseconds; `None` in a
    /// `--json` listing.
    pub ctime: Option<(i64, u32)>,
}

/// One file of a state: its path and digest (as a manifest [`Line`], so
/// the comparisons of `--audit` apply), and its metadata if the state has
/// any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: Line,
    pub meta: Option<Meta>,
}

/// Which kind of file a state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// JSON lines with metadata.
    Json,
    /// A checksum manifest: paths and digests only.
    Manifest,
}

/// Why a state cannot be used. Both are exit status 2: nothing is read or
/// written when the state is bad.
#[derive(Debug)]
pub enum StateError {
    /// The file cannot be opened or read.
    Io(String),
    /// A line is malformed: its number (from 1) and what is wrong.
    Line(u64, String),
}

/// Reads a state file entry by entry (streaming: one line in memory).
pub struct Reader {
    input: Box<dyn BufRead + Send>,
    kind: Option<Kind>,
    parser: LineParser,
    /// For 64-digit manifest lines: `-a`, or the algorithm the file's name
    /// suggests (as `-c` decides).
    hint: Option<Algo>,
    line_no: u64,
    raw: Vec<u8>,
    /// The state's name, quoted, for a read error.
    label: String,
    /// Why an entry naming `-`, standard input, is malformed here, if it
    /// is: the state is standard input (`--verify -`), as such a line is in
    /// `-c -`; or the reader is `--update`'s ([`Reader::refuse_dash`]).
    dash_refused: Option<&'static str>,
}

impl Reader {
    /// Opens `path`; `only` is `-a`. `Ok(None)` if it does not exist.
    pub fn open(path: &Path, only: Option<Algo>) -> Result<Option<Reader>, StateError> {
        let label = quote(path);
        let fail = |e: io::Error| StateError::Io(format!("{label}: {}", os_message(&e)));
        // Without waiting: `--update` checked that STATE is no stream
        // (`outfile::replaceable`), but the name may be a FIFO by now, and
        // opening one for reading would wait for a writer for good.
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.read(true).custom_flags(libc::O_NONBLOCK);
        let (file, meta) = match crate::stdio::open_input_with(path, &options) {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        if !meta.is_file() {
            return Err(StateError::Io(format!(
                "{label}: not a regular file (a FIFO, device or socket)"
            )));
        }
        // A regular file reads the same with O_NONBLOCK, which is left on.
        Ok(Some(Reader::of(
            Box::new(io::BufReader::with_capacity(64 * 1024, file)),
            path,
            only,
        )))
    }

    /// A reader of `input`, the content of the state at `path` (for its
    /// name in messages and the algorithm it suggests); `only` is `-a`.
    pub fn of(input: Box<dyn BufRead + Send>, path: &Path, only: Option<Algo>) -> Reader {
        let hint = only.or_else(|| crate::check::hint_from_name(path));
        let mut r = Reader::new(input, only, hint);
        r.label = quote(path);
        if crate::stdio::is_dash(path) {
            r.refuse_dash("'-' is standard input, which STATE itself is read from");
        }
        r
    }

    /// Makes an entry named exactly `-` (standard input) a malformed line,
    /// `why` its message, for a reader that cannot take standard input
    /// for a file (`--update`). The file called `-` (`./-`) is unaffected.
    pub fn refuse_dash(&mut self, why: &'static str) {
        self.dash_refused = Some(why);
    }

    /// A reader of `input`; `only` is `-a`, `hint` decides 64-digit lines.
    pub fn new(input: Box<dyn BufRead + Send>, only: Option<Algo>, hint: Option<Algo>) -> Reader {
        Reader {
            input,
            kind: None,
            // A STATE's lines end in newlines (`-z` is refused with it).
            parser: LineParser::new(only, b'\n'),
            hint,
            line_no: 0,
            raw: Vec::new(),
            label: "STATE".into(),
            dash_refused: None,
        }
    }

    /// The kind, once the first entry was read (`None` for an empty state).
    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }

    /// The line number of the entry last returned.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The next entry; `Ok(None)` at the end.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, StateError> {
        loop {
            // Bounded: a STATE that is no state (/dev/zero, a binary file)
            // must not be read into memory whole.
            match read_line(&mut self.input, b'\n', &mut self.raw) {
                Ok(true) => self.line_no += 1,
                Ok(false) => return Ok(None),
                Err(e) if is_too_long(&e) => {
                    return Err(StateError::Line(
                        self.line_no + 1,
                        format!("{e}: not a state"),
                    ))
                }
                Err(e) => {
                    return Err(StateError::Io(format!(
                        "{}: {}",
                        self.label,
                        os_message(&e)
                    )))
                }
            }
            // A byte-order mark, as some editors save it: not part of a line.
            if self.line_no == 1 && self.raw.starts_with(b"\xef\xbb\xbf") {
                self.raw.drain(..3);
            }
            let kind = match self.kind {
                Some(k) => k,
                None if self.raw.iter().all(|b| b.is_ascii_whitespace()) => continue,
                None if self.raw.trim_ascii_start().starts_with(b"{") => Kind::Json,
                None => Kind::Manifest,
            };
            self.kind = Some(kind);
            let bad = |msg: String| Err(StateError::Line(self.line_no, msg));
            let entry = |e: Entry| match self.dash_refused {
                Some(why) if e.line.name == b"-" => bad(why.into()),
                _ => Ok(Some(e)),
            };
            match kind {
                Kind::Json if self.raw.trim_ascii().is_empty() => continue,
                Kind::Json => match parse_record(&self.raw) {
                    Ok(e) => return entry(e),
                    Err(msg) => return bad(msg),
                },
                Kind::Manifest => match self.parser.parse(&self.raw) {
                    Parsed::Skip => continue,
                    Parsed::Bad => return bad("improperly formatted checksum line".into()),
                    Parsed::Line(mut line) => {
                        if line.algos.len() > 1 {
                            if let Some(h) = self.hint.filter(|&h| line.algos.contains(h)) {
                                line.algos = AlgoSet::of(h);
                            }
                        }
                        return entry(Entry { line, meta: None });
                    }
                },
            }
        }
    }
}

impl StateError {
    /// The message for stderr, `STATE: LINE: what` for a malformed line
    /// ([`crate::manifest::at_line`], as for a manifest's line).
    pub fn message(&self, state: &Path) -> String {
        match self {
            StateError::Io(e) => format!("parsum: {e}"),
            StateError::Line(n, e) => {
                let at = crate::manifest::at_line(&crate::manifest::label(state), *n);
                format!("parsum: {at}: {e}")
            }
        }
    }
}

/// One JSON state line as written, before its fields are checked.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord<'a> {
    /// Borrowed unless it holds escapes.
    #[serde(borrow)]
    path: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    path_hex: Option<&'a str>,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
    ino: Option<u64>,
    ctime: Option<i64>,
    ctime_nsec: Option<u32>,
    #[serde(borrow)]
    algo: &'a str,
    #[serde(borrow)]
    hash: &'a str,
}

/// Parses one JSON state line (see the module header). Every field is
/// checked; unknown fields are refused, so a typo is not a silent default.
pub fn parse_record(raw: &[u8]) -> Result<Entry, String> {
    let r: RawRecord<'_> = serde_json::from_slice(raw).map_err(|e| {
        // serde_json's message without its position: a state line is one line.
        let msg = e.to_string();
        let msg = msg.rfind(" at line ").map_or(&msg[..], |i| &msg[..i]);
        format!("not a valid state line: {msg}")
    })?;
    let name = match r.path_hex {
        None => r.path.as_bytes().to_vec(),
        Some(hex) => {
            let bytes = from_hex(hex).ok_or("\"path_hex\" is not hex")?;
            if String::from_utf8_lossy(&bytes) != r.path {
                return Err("\"path_hex\" does not match \"path\"".into());
            }
            bytes
        }
    };
    if name.is_empty() || name.contains(&0) {
        return Err("\"path\" is empty or holds a NUL".into());
    }
    if r.mtime_nsec >= 1_000_000_000 {
        return Err("\"mtime_nsec\" is not below 1000000000".into());
    }
    let ctime = match (r.ctime, r.ctime_nsec) {
        (None, None) => None,
        (Some(_), Some(ns)) if ns >= 1_000_000_000 => {
            return Err("\"ctime_nsec\" is not below 1000000000".into())
        }
        (Some(s), Some(ns)) => Some((s, ns)),
        _ => return Err("\"ctime\" and \"ctime_nsec\" go together".into()),
    };
    let algo = Algo::ALL
        .into_iter()
        .find(|a| a.name() == r.algo)
        .ok_or_else(|| format!("unknown algorithm \"{}\"", r.algo))?;
    Digest::from_hex(algo, r.hash.as_bytes())
        .ok_or_else(|| format!("\"hash\" is not a {algo} digest"))?;
    Ok(Entry {
        line: Line {
            algos: AlgoSet::of(algo),
            hex: r.hash.to_ascii_lowercase().into_bytes(),
            name,
        },
        meta: Some(Meta {
            size: r.size,
            mtime: r.mtime,
            mtime_nsec: r.mtime_nsec,
            ino: r.ino,
            ctime,
        }),
    })
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| {
            let v = |c: u8| (c as char).to_digit(16);
            Some((v(p[0])? << 4 | v(p[1])?) as u8)
        })
        .collect()
}

/// Writes a new state next to the old one and puts it in place whole,
/// through [`OutFile`](crate::outfile::OutFile) (a temporary file in the
/// same directory, synced and renamed over the state by
/// [`StateWriter::commit`], with the old state's mode and owner). Dropped
/// without a commit, the temporary file is removed and the old state is
/// untouched.
pub struct StateWriter {
    out: crate::outfile::OutFile,
    buf: Vec<u8>,
    error: Option<io::Error>,
}

impl StateWriter {
    /// Creates the temporary file for a new `path`. A symbolic link is
    /// written through (its target replaced, the link kept).
    pub fn create(path: &Path) -> io::Result<StateWriter> {
        Ok(StateWriter {
            out: crate::outfile::OutFile::create(path)?,
            buf: Vec::with_capacity(128 * 1024),
            error: None,
        })
    }

    /// The state, its temporary file and those of runs killed before
    /// their rename, so a walk can leave them out: they are this state,
    /// not data.
    pub fn not_data(&self) -> crate::outfile::NotData {
        self.out.not_data()
    }

    /// Appends the record of a file: `name` as listed, its digest `d`,
    /// size and mtime from `h`, its inode and its ctime.
    pub fn record(
        &mut self,
        name: &[u8],
        d: &Digest,
        h: &FileHash,
        ino: u64,
        ctime: Option<(i64, u32)>,
    ) {
        crate::output::write_json(&mut self.buf, name, d, h, Some(ino), ctime, b'\n');
        if self.buf.len() >= 64 * 1024 {
            self.flush();
        }
    }

    /// Appends an entry of the old state unchanged (it must have metadata
    /// and a digest of `algo`); returns whether it could.
    pub fn keep(&mut self, e: &Entry, algo: Algo) -> bool {
        let (Some(m), Some(d)) = (e.meta, e.line.digest(algo)) else {
            return false;
        };
        let h = FileHash {
            digests: Vec::new(),
            size: m.size,
            mtime: m.mtime,
            mtime_nsec: m.mtime_nsec,
        };
        crate::output::write_json(&mut self.buf, &e.line.name, &d, &h, m.ino, m.ctime, b'\n');
        if self.buf.len() >= 64 * 1024 {
            self.flush();
        }
        true
    }

    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    /// Syncs the new state to disk and renames it over the old one, then
    /// syncs the directory so the rename itself is durable.
    pub fn commit(mut self) -> io::Result<()> {
        self.flush();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;

    /// `--update` refuses a STATE that is a stream before it opens it
    /// (`outfile::replaceable`), but the name may become a FIFO after that
    /// check: the open itself must not wait for a writer, and must refuse.
    #[test]
    fn open_refuses_a_fifo_without_waiting_for_a_writer() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Reader::open(&fifo, None).map(|r| r.is_some()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("Reader::open waited on the FIFO for a writer");
        match got {
            Err(StateError::Io(msg)) => assert!(msg.contains("not a regular file"), "{msg}"),
            other => panic!("a FIFO opened as a state: {other:?}"),
        }
    }

    fn record(name: &[u8], ino: Option<u64>) -> Vec<u8> {
        let h = FileHash {
            digests: vec![hash_bytes(Algo::Sha256, b"abc")],
            size: 3,
            mtime: -5,
            mtime_nsec: 999_999_999,
        };
        let mut out = Vec::new();
        let ctime = ino.map(|i| (-(i as i64), 42));
        crate::output::write_json(&mut out, name, &h.digests[0], &h, ino, ctime, b'\n');
        out.pop();
        out
    }

    #[test]
    fn records_round_trip_every_name() {
        for name in [
            &b"plain"[..],
            b"a\"b\\c\nd\re\tf\x01\x7f",
            b"bad\xff\xfeutf8",
            b"\xef\xbf\xbd", // a real U+FFFD: no path_hex, reads as itself
            b"mixed\xff\xef\xbf\xbd",
        ] {
            let e = parse_record(&record(name, Some(7))).unwrap();
            assert_eq!(e.line.name, name);
            assert_eq!(
                e.meta,
                Some(Meta {
                    size: 3,
                    mtime: -5,
                    mtime_nsec: 999_999_999,
                    ino: Some(7),
                    ctime: Some((-7, 42)),
                })
            );
            assert_eq!(
                e.line.digest(Algo::Sha256),
                Some(hash_bytes(Algo::Sha256, b"abc"))
            );
        }
        // A --json line (no inode) reads too.
        assert_eq!(
            parse_record(&record(b"x", None)).unwrap().meta.unwrap().ino,
            None
        );
    }

    #[test]
    fn malformed_records_say_why() {
        let good = String::from_utf8(record(b"x", Some(1))).unwrap();
        for (bad, why) in [
            ("", "EOF while parsing"),
            ("[1]", "invalid type"),
            ("\"x\"", "expected struct RawRecord"),
            ("{\"path\":\"x\"", "EOF while parsing"),
            (&good.replace("\"size\":3,", ""), "missing field `size`"),
            (&good.replace("\"size\":3", "\"size\":-3"), "expected u64"),
            (
                &good.replace("\"size\":3", "\"size\":\"3\""),
                "invalid type: string \"3\", expected u64",
            ),
            (&good.replace("sha256", "sha3"), "unknown algorithm"),
            (
                &good.replace("\"hash\":\"ba", "\"hash\":\"b"),
                "not a sha256 digest",
            ),
            (
                &good.replace("\"ino\"", "\"inode\""),
                "unknown field `inode`",
            ),
            (&good.replace("\"path\":\"x\"", "\"path\":\"\""), "empty"),
            (
                &good.replace("\"path\":\"x\"", "\"path\":\"a\\u0000\""),
                "NUL",
            ),
            (
                &good.replace("\"path\":\"x\"", "\"path\":\"x\",\"path_hex\":\"79\""),
                "does not match",
            ),
            (
                &good.replace("\"path\":\"x\"", "\"path\":\"x\",\"path_hex\":\"7\""),
                "not hex",
            ),
            (&good.replace("999999999", "1000000000"), "mtime_nsec"),
            (
                &good.replace("\"ctime_nsec\":42", "\"ctime_nsec\":1000000000"),
                "ctime_nsec",
            ),
            (&good.replace(",\"ctime_nsec\":42", ""), "go together"),
            (
                &good.replace("\"mtime\":-5", "\"mtime\":1.5"),
                "expected i64",
            ),
            (
                &good.replace("\"path\":\"x\"", "\"path\":\"\\ud800\""),
                "hex escape", // a lone surrogate is no name
            ),
            (&format!("{good} x"), "trailing characters"),
        ] {
            let e = parse_record(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    fn read_all(text: &[u8], only: Option<Algo>) -> Result<(Option<Kind>, Vec<Entry>), StateError> {
        let mut r = Reader::new(Box::new(io::Cursor::new(text.to_vec())), only, only);
        let mut v = Vec::new();
        while let Some(e) = r.next_entry()? {
            v.push(e);
        }
        Ok((r.kind(), v))
    }

    #[test]
    fn reader_tells_json_from_manifests_and_numbers_lines() {
        let mut json = b"\n".to_vec();
        json.extend(record(b"a", Some(1)));
        json.extend(b"\n\n");
        json.extend(record(b"b", Some(2)));
        json.push(b'\n');
        let (kind, v) = read_all(&json, None).unwrap();
        assert_eq!(kind, Some(Kind::Json));
        assert_eq!(v.len(), 2);

        json.extend(b"garbage\n");
        match read_all(&json, None) {
            Err(StateError::Line(5, m)) => assert!(m.contains("expected value"), "{m}"),
            other => panic!("{other:?}"),
        }

        let gnu = b"# comment\n900150983cd24fb0d6963f7d28e17f72  x y\n";
        let (kind, v) = read_all(gnu, None).unwrap();
        assert_eq!(kind, Some(Kind::Manifest));
        assert_eq!(v[0].line.name, b"x y");
        assert_eq!(v[0].meta, None);
        match read_all(b"900150983cd24fb0d6963f7d28e17f72  x\nnot a line\n", None) {
            Err(StateError::Line(2, m)) => assert!(m.contains("improperly formatted")),
            other => panic!("{other:?}"),
        }
        // 64 digits: -a (or the name) decides.
        let line = format!("{}  f\n", hash_bytes(Algo::Sha256, b"").to_hex());
        let (_, v) = read_all(line.as_bytes(), Some(Algo::Sha256)).unwrap();
        assert_eq!(v[0].line.algos, AlgoSet::of(Algo::Sha256));
        let (_, v) = read_all(line.as_bytes(), None).unwrap();
        assert_eq!(v[0].line.algos.len(), 2);

        assert_eq!(read_all(b"", None).unwrap(), (None, vec![]));
        // A UTF-8 byte-order mark before the first line is not part of it.
        let mut bom = b"\xef\xbb\xbf".to_vec();
        bom.extend(record(b"a", Some(1)));
        let (kind, v) = read_all(&bom, None).unwrap();
        assert_eq!(
            (kind, v[0].line.name.as_slice()),
            (Some(Kind::Json), &b"a"[..])
        );
    }

    #[test]
    fn writer_replaces_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        std::fs::write(&state, "old\n").unwrap();
        let h = FileHash {
            digests: vec![hash_bytes(Algo::Blake3, b"")],
            size: 0,
            mtime: 1,
            mtime_nsec: 2,
        };
        // Dropped without commit: the old state stays, no temp file is left.
        let mut w = StateWriter::create(&state).unwrap();
        w.record(b"f", &h.digests[0], &h, 9, Some((3, 4)));
        drop(w);
        assert_eq!(std::fs::read(&state).unwrap(), b"old\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);

        let mut w = StateWriter::create(&state).unwrap();
        w.record(b"f", &h.digests[0], &h, 9, Some((3, 4)));
        w.commit().unwrap();
        let text = std::fs::read(&state).unwrap();
        let e = parse_record(text.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(e.line.name, b"f");
        assert_eq!(e.meta.unwrap().ino, Some(9));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
