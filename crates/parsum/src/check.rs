//! `-c/--check`: verify files against GNU, BSD-tag and b3sum manifests, with
//! coreutils' messages, flags and exit status.
//!
//! Each line names its algorithm: a BSD tag says it outright, a GNU line by
//! its digest length. A 64-digit GNU line is BLAKE3 or SHA-256; unless `-a`
//! says which, a manifest whose file name names the algorithm decides,
//! and otherwise both digests are computed in the same
//! read and either may match. (The name hints: `*.b3`, `*b3sum*`,
//! `*blake3*` for BLAKE3; `*sha256*` for SHA-256.)
//!
//! Files are hashed through the same per-device pipeline as a tree, so a
//! manifest spanning disks is verified on all of them at once, and results
//! are printed in manifest order.

use std::fs::File;
use std::io::{self, BufRead};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::escape::{push_check_name, quote, quote_bytes, Escape};
use crate::exit::Exit;
use crate::hash::{kind_name, Algo, AlgoSet, FileHash, FileStat, HashError};
use crate::manifest::{Line, LineParser, Parsed};
use crate::output::{plural, Out};
use crate::pipeline::{Item, Pipeline, Runs, Sink};
use crate::progress::{message, Counters, Progress};

/// Flags of `--check`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOpts {
    pub quiet: bool,
    pub status: bool,
    pub strict: bool,
    pub warn: bool,
    pub ignore_missing: bool,
    pub zero: bool,
    pub algo: Option<Algo>,
}

/// A line to verify.
pub struct Tag {
    manifest: usize,
    line: Line,
}

/// Events between lines.
pub enum Msg {
    /// The manifest could not be read.
    Unreadable(usize, io::Error),
    /// An improperly formatted line: manifest, line number, and the
    /// algorithm the manifest seems to be in (for the message).
    Misformatted(usize, usize, Option<Algo>),
    /// stat failed before hashing (missing file, usually), or the name is
    /// not a regular file.
    Failed(usize, Line, HashError),
    /// A line naming `-` in a manifest read from a file: hash standard input.
    Stdin(usize, Line),
    End(usize),
}

/// The algorithm a manifest's name suggests for 64-digit lines.
pub(crate) fn hint_from_name(name: &Path) -> Option<Algo> {
    let n = name.file_name()?.to_string_lossy().to_ascii_lowercase();
    if n.ends_with(".b3") || n.contains("b3sum") || n.contains("blake3") {
        Some(Algo::Blake3)
    } else if n.contains("sha256") || n.contains("sha2-256") {
        Some(Algo::Sha256)
    } else {
        None
    }
}

/// Opens a manifest for streaming: standard input for `-`.
fn open_manifest(path: &Path) -> io::Result<Box<dyn BufRead>> {
    const BUF: usize = 64 * 1024;
    if path == Path::new("-") {
        Ok(Box::new(io::BufReader::with_capacity(BUF, io::stdin())))
    } else {
        let f = File::open(path)?;
        if f.metadata()?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        Ok(Box::new(io::BufReader::with_capacity(BUF, f)))
    }
}

fn manifest_label(path: &Path) -> String {
    if path == Path::new("-") {
        quote_bytes(b"standard input")
    } else {
        quote(path)
    }
}

/// Runs the check of `manifests`; returns the exit status.
pub fn run(
    pipe: &Arc<Pipeline>,
    manifests: Vec<PathBuf>,
    opts: CheckOpts,
    progress: &Progress,
) -> Exit {
    let list = manifests.clone();
    let stream = pipe.spawn(move |f: &mut crate::pipeline::Feeder<Tag, Msg>| {
        let mut runs = Runs::default();
        for (mi, m) in list.iter().enumerate() {
            // Streamed line by line: memory does not grow with the manifest.
            let mut reader = match open_manifest(m) {
                Ok(r) => r,
                Err(e) => {
                    runs.msg(f, Msg::Unreadable(mi, e));
                    continue;
                }
            };
            let from_stdin = m == Path::new("-");
            let hint = opts.algo.or_else(|| hint_from_name(m));
            let sep = if opts.zero { b'\0' } else { b'\n' };
            let mut parser = LineParser::new(opts.algo);
            // The algorithm named in "improperly formatted ALGO checksum line".
            let mut named = hint;
            let mut raw = Vec::new();
            for no in 1.. {
                raw.clear();
                match reader.read_until(sep, &mut raw) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        runs.msg(f, Msg::Unreadable(mi, e));
                        break;
                    }
                }
                if raw.last() == Some(&sep) {
                    raw.pop();
                }
                let mut line = match parser.parse(&raw) {
                    Parsed::Line(l) if !(from_stdin && l.name == b"-") => l,
                    Parsed::Skip => continue,
                    _ => {
                        runs.msg(f, Msg::Misformatted(mi, no, named));
                        continue;
                    }
                };
                if line.algos.len() > 1 {
                    if let Some(h) = hint.filter(|&h| line.algos.contains(h)) {
                        line.algos = AlgoSet::of(h);
                    }
                }
                // Ambiguous 64-digit lines are named SHA256, as sha256sum would.
                named = named.or_else(|| {
                    let sha256 = line.algos.contains(Algo::Sha256);
                    line.algos.single().or(sha256.then_some(Algo::Sha256))
                });
                if line.name == b"-" {
                    runs.msg(f, Msg::Stdin(mi, line));
                    continue;
                }
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(&line.name));
                match std::fs::metadata(&path) {
                    // Never open a FIFO, socket or device listed in a manifest.
                    Ok(meta) if !meta.file_type().is_file() => {
                        let e = HashError::NotRegular(kind_name(meta.file_type()));
                        runs.msg(f, Msg::Failed(mi, line, e));
                    }
                    Ok(meta) => runs.file(
                        f,
                        Item {
                            path,
                            dir: None,
                            stat: FileStat {
                                nlink: 1, // verify every line, even of the same file
                                ..FileStat::of(&meta)
                            },
                            no_follow: false,
                            algos: line.algos,
                            known: None,
                            tag: Tag { manifest: mi, line },
                        },
                    ),
                    Err(e) => runs.msg(f, Msg::Failed(mi, line, HashError::Io(e))),
                }
            }
            runs.msg(f, Msg::End(mi));
        }
    });
    let mut sink = CheckSink {
        progress,
        counters: Arc::clone(pipe.counters()),
        files: 0,
        bytes: 0,
        opts,
        manifests,
        per: Default::default(),
        out: Out::new(),
        exit: Exit::Success,
    };
    stream.drain(&mut sink);
    progress.finish();
    let written = sink.out.finish();
    sink.exit.and(written)
}

#[derive(Default, Clone)]
struct Counts {
    formatted: u64,
    misformatted: u64,
    unreadable: u64,
    mismatched: u64,
    matched: u64,
}

struct CheckSink<'a> {
    progress: &'a Progress,
    counters: Arc<Counters>,
    files: u64,
    bytes: u64,
    opts: CheckOpts,
    manifests: Vec<PathBuf>,
    per: std::collections::HashMap<usize, Counts>,
    out: Out,
    exit: Exit,
}

impl CheckSink<'_> {
    fn flush(&mut self) {
        self.out.flush();
    }

    /// `name: STATUS`, the name escaped as the usual checker of `algos`
    /// escapes it (b3sum for BLAKE3, coreutils for the others).
    fn line(&mut self, name: &[u8], algos: AlgoSet, status: &str) {
        let esc = if self.opts.zero {
            Escape::None
        } else {
            Escape::Backslash
        };
        let out = &mut self.out.buf;
        push_check_name(out, name, esc, algos == AlgoSet::of(Algo::Blake3));
        out.extend_from_slice(b": ");
        out.extend_from_slice(status.as_bytes());
        out.push(if self.opts.zero { b'\0' } else { b'\n' });
    }

    fn read_failed(&mut self, mi: usize, line: &Line, err: &dyn std::fmt::Display, missing: bool) {
        let name = &line.name[..];
        if missing && self.opts.ignore_missing {
            return;
        }
        self.per.entry(mi).or_default().unreadable += 1;
        self.flush();
        message(&format!("parsum: {}: {err}", quote_bytes(name)));
        if !self.opts.status {
            self.line(name, line.algos, "FAILED open or read");
        }
    }
}

impl Sink<Tag, Msg> for CheckSink<'_> {
    fn done(&mut self, item: Item<Tag>, result: Result<FileHash, HashError>) {
        let Tag { manifest: mi, line } = item.tag;
        self.per.entry(mi).or_default().formatted += 1;
        self.files += 1;
        self.bytes += result.as_ref().map(|h| h.size).unwrap_or(0);
        self.progress.update(self.files, self.bytes, &self.counters);
        match result {
            Ok(h) => {
                let matched = h.digests.iter().find(|d| line.digest(d.algo) == Some(**d));
                let c = self.per.entry(mi).or_default();
                if let Some(d) = matched {
                    c.matched += 1;
                    if !self.opts.quiet && !self.opts.status {
                        // The name as the checker of the matching algorithm
                        // prints it (b3sum for BLAKE3).
                        self.line(&line.name, AlgoSet::of(d.algo), "OK");
                    }
                } else {
                    c.mismatched += 1;
                    if !self.opts.status {
                        self.line(&line.name, line.algos, "FAILED");
                    }
                }
            }
            Err(e) => {
                let missing =
                    matches!(&e, HashError::Io(io) if io.kind() == io::ErrorKind::NotFound);
                self.read_failed(mi, &line, &e, missing);
            }
        }
    }

    fn msg(&mut self, m: Msg) {
        match m {
            Msg::Unreadable(mi, e) => {
                self.flush();
                message(&format!(
                    "parsum: {}: {}",
                    manifest_label(&self.manifests[mi]),
                    crate::hash::os_message(&e)
                ));
                self.exit = Exit::Failure;
            }
            Msg::Misformatted(mi, no, algo) => {
                self.per.entry(mi).or_default().misformatted += 1;
                if self.opts.warn {
                    self.flush();
                    let algo = algo.map(|a| format!("{} ", a.tag())).unwrap_or_default();
                    message(&format!(
                        "parsum: {}: {no}: improperly formatted {algo}checksum line",
                        manifest_label(&self.manifests[mi])
                    ));
                }
            }
            Msg::Failed(mi, line, e) => {
                self.per.entry(mi).or_default().formatted += 1;
                let missing =
                    matches!(&e, HashError::Io(io) if io.kind() == io::ErrorKind::NotFound);
                self.read_failed(mi, &line, &e, missing);
            }
            Msg::Stdin(mi, line) => {
                let algos = line.algos;
                let r = crate::hash::hash_reader(&mut io::stdin().lock(), algos);
                let item = Item::stdin(algos, Tag { manifest: mi, line });
                self.done(item, r);
            }
            Msg::End(mi) => {
                self.flush();
                let c = self.per.get(&mi).cloned().unwrap_or_default();
                let label = manifest_label(&self.manifests[mi]);
                if c.formatted == 0 {
                    message(&format!(
                        "parsum: {label}: no properly formatted checksum lines found"
                    ));
                } else if !self.opts.status {
                    if c.misformatted > 0 {
                        let w = plural(c.misformatted, "line is", "lines are");
                        message(&format!("parsum: WARNING: {w} improperly formatted"));
                    }
                    if c.unreadable > 0 {
                        let w = plural(c.unreadable, "listed file", "listed files");
                        message(&format!("parsum: WARNING: {w} could not be read"));
                    }
                    if c.mismatched > 0 {
                        let w = plural(c.mismatched, "computed checksum", "computed checksums");
                        message(&format!("parsum: WARNING: {w} did NOT match"));
                    }
                    if self.opts.ignore_missing && c.matched == 0 {
                        message(&format!("parsum: {label}: no file was verified"));
                    }
                }
                let ok = c.formatted > 0
                    && c.matched > 0
                    && c.mismatched == 0
                    && c.unreadable == 0
                    && (!self.opts.strict || c.misformatted == 0);
                if !ok {
                    self.exit = Exit::Failure;
                }
            }
        }
    }

    fn batch_end(&mut self) {
        self.flush();
    }

    fn stopped(&self) -> bool {
        self.out.failed()
    }
}
