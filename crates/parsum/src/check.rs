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
//!
//! The verify step ([`feed_lines`]: parse, stat, hash, judge a line into a
//! [`Verdict`]) and the printer ([`CheckSink`]) are apart, so that under
//! MPI (`cluster/check.rs`) every rank verifies its byte range of a
//! manifest, from the [`Start`] the lines before it left, and rank 0 prints
//! all verdicts in order with the same printer.

use std::io::{self, BufRead};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::escape::{push_check_name, quote_bytes, Escape};
use crate::exit::Exit;
use crate::hash::{kind_name, Algo, AlgoSet, FileHash, FileStat, HashError};
use crate::manifest::{
    at_line, label as manifest_label, open_manifest, read_error, read_line, Line, LineParser,
    Parsed,
};
use crate::output::{plural, Out};
use crate::pipeline::{hash_stdin_item, Feeder, Item, Pipeline, Runs, Sink};
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
    /// Which manifest (index in the list).
    pub manifest: usize,
    /// The parsed line.
    pub line: Line,
}

/// Events between lines.
pub enum Msg {
    /// The manifest could not be read: the message after `parsum: `,
    /// naming the manifest (and the line, for a line too long).
    Unreadable(usize, String),
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

/// Where a stretch of a manifest starts: the parser's state, the algorithm
/// that "improperly formatted" messages name so far, and the number of the
/// line before it. A whole manifest starts [`Start::fresh`]; under MPI a
/// rank's byte range starts where the ranges before it left off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The line parser's state.
    pub parser: LineParser,
    /// The algorithm named in "improperly formatted ALGO checksum line".
    pub named: Option<Algo>,
    /// Lines read before this stretch.
    pub no: usize,
}

impl Start {
    /// The start of a whole manifest: a new parser, and the algorithm its
    /// name hints at.
    pub fn fresh(hint: Option<Algo>, opts: &CheckOpts) -> Start {
        Start {
            parser: LineParser::new(opts.algo, crate::manifest::line_end(opts.zero)),
            named: hint,
            no: 0,
        }
    }
}

/// How a manifest is read: what its lines may restrict 64-digit lines to,
/// whether it is standard input (where a line naming `-` is malformed),
/// its line terminator, and how messages name it.
#[derive(Debug, Clone)]
pub struct Reading {
    /// See [`hint_for`].
    pub hint: Option<Algo>,
    /// The manifest is standard input.
    pub from_stdin: bool,
    /// `-z`: lines end with NUL.
    pub zero: bool,
    /// The manifest's name in messages ([`manifest_label`]).
    pub label: String,
}

impl Reading {
    /// How the manifest `path` is read under `opts`.
    pub fn of(path: &Path, opts: &CheckOpts) -> Reading {
        Reading {
            hint: hint_for(path, opts),
            from_stdin: crate::stdio::is_dash(path),
            zero: opts.zero,
            label: manifest_label(path),
        }
    }

    /// The line terminator.
    pub fn sep(&self) -> u8 {
        crate::manifest::line_end(self.zero)
    }
}

/// What one manifest line asks for, after parsing.
pub enum Step {
    /// Nothing (a comment, blank line or PGP armor).
    Skip,
    /// An improperly formatted line: its number and the algorithm to name.
    Misformatted(usize, Option<Algo>),
    /// A line to verify.
    Line(Line),
}

/// The algorithm a 64-digit line may be restricted to: `-a`, else the
/// manifest's name (see [`hint_from_name`]).
pub fn hint_for(path: &Path, opts: &CheckOpts) -> Option<Algo> {
    opts.algo.or_else(|| hint_from_name(path))
}

/// Parses one line (without its terminator) at `state`, and moves `state`
/// past it. The one home of the per-line rules of `-c`.
pub fn parse_step(state: &mut Start, raw: &[u8], how: &Reading) -> Step {
    state.no += 1;
    let mut line = match state.parser.parse(raw) {
        Parsed::Line(l) if !(how.from_stdin && l.name == b"-") => l,
        Parsed::Skip => return Step::Skip,
        _ => return Step::Misformatted(state.no, state.named),
    };
    if line.algos.len() > 1 {
        if let Some(h) = how.hint.filter(|&h| line.algos.contains(h)) {
            line.algos = AlgoSet::of(h);
        }
    }
    // Ambiguous 64-digit lines are named SHA256, as sha256sum would.
    state.named = state.named.or_else(|| {
        let sha256 = line.algos.contains(Algo::Sha256);
        line.algos.single().or(sha256.then_some(Algo::Sha256))
    });
    Step::Line(line)
}

/// Reads the lines of `reader` (the `mi`-th manifest, from `state`) and
/// feeds each to the pipeline, or as a message: the verify step of `-c`.
/// Ends at the reader's end or at a read error (reported); sends no
/// [`Msg::End`].
pub fn feed_lines(
    f: &mut Feeder<Tag, Msg>,
    runs: &mut Runs<Tag, Msg>,
    mi: usize,
    reader: &mut dyn BufRead,
    state: &mut Start,
    how: &Reading,
) {
    let mut raw = Vec::new();
    loop {
        // Bounded: a line with no end ends the manifest's read.
        match read_line(reader, how.sep(), &mut raw) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let why = read_error(&how.label, &e, state.no as u64 + 1);
                runs.msg(f, Msg::Unreadable(mi, why));
                break;
            }
        }
        let line = match parse_step(state, &raw, how) {
            Step::Skip => continue,
            Step::Misformatted(no, named) => {
                runs.msg(f, Msg::Misformatted(mi, no, named));
                continue;
            }
            Step::Line(l) => l,
        };
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
}

/// Feeds the whole `mi`-th manifest, `m` (standard input for `-`), then
/// its [`Msg::End`].
pub fn feed_manifest(
    f: &mut Feeder<Tag, Msg>,
    runs: &mut Runs<Tag, Msg>,
    mi: usize,
    m: &Path,
    opts: &CheckOpts,
) {
    // Streamed line by line: memory does not grow with the manifest.
    match open_manifest(m) {
        Ok(mut reader) => {
            let how = Reading::of(m, opts);
            let mut state = Start::fresh(how.hint, opts);
            feed_lines(f, runs, mi, &mut reader, &mut state, &how);
        }
        // An unreadable manifest has no summary (as coreutils).
        Err(e) => return runs.msg(f, Msg::Unreadable(mi, unopened(m, &e))),
    }
    runs.msg(f, Msg::End(mi));
}

/// The message (after `parsum: `) of the manifest `m` that could not be
/// opened.
pub fn unopened(m: &Path, e: &io::Error) -> String {
    format!("{}: {}", manifest_label(m), crate::hash::os_message(e))
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
            feed_manifest(f, &mut runs, mi, m, &opts);
        }
    });
    let mut sink = CheckSink::new(progress, pipe, opts, manifests);
    stream.drain(&mut sink);
    progress.finish();
    sink.finish()
}

/// What verifying one listed file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The digest of this algorithm matched.
    Matched(Algo),
    /// No digest matched.
    Mismatched,
    /// The file could not be read: why, and whether it was missing.
    Failed {
        /// The error as printed.
        why: String,
        /// `ENOENT` (skipped by `--ignore-missing`).
        missing: bool,
    },
}

impl Verdict {
    /// The verdict on `line` of a hash (or its failure).
    pub fn of(line: &Line, result: &Result<FileHash, HashError>) -> Verdict {
        match result {
            Ok(h) => match h.digests.iter().find(|d| line.digest(d.algo) == Some(**d)) {
                Some(d) => Verdict::Matched(d.algo),
                None => Verdict::Mismatched,
            },
            Err(e) => Verdict::failed(e),
        }
    }

    /// The verdict of a file that could not be read.
    pub fn failed(e: &HashError) -> Verdict {
        Verdict::Failed {
            why: e.to_string(),
            missing: matches!(e, HashError::Io(io) if io.kind() == io::ErrorKind::NotFound),
        }
    }
}

#[derive(Default, Clone)]
struct Counts {
    formatted: u64,
    misformatted: u64,
    unreadable: u64,
    mismatched: u64,
    matched: u64,
}

/// The printer of `-c`: it turns verdicts and messages, in manifest order,
/// into coreutils' lines, warnings and exit status.
pub struct CheckSink<'a> {
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

impl<'a> CheckSink<'a> {
    /// A printer for `manifests` on stdout.
    pub fn new(
        progress: &'a Progress,
        pipe: &Pipeline,
        opts: CheckOpts,
        manifests: Vec<PathBuf>,
    ) -> CheckSink<'a> {
        CheckSink {
            progress,
            counters: Arc::clone(pipe.counters()),
            files: 0,
            bytes: 0,
            opts,
            manifests,
            per: Default::default(),
            out: Out::new(),
            exit: Exit::Success,
        }
    }

    /// Flushes the output; the exit status of the whole check.
    pub fn finish(mut self) -> Exit {
        let written = self.out.finish();
        self.exit.and(written)
    }

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

    /// Prints the verdict on `line` of the `mi`-th manifest (only its
    /// name and algorithms are read).
    pub fn verdict(&mut self, mi: usize, line: &Line, v: Verdict) {
        let c = self.per.entry(mi).or_default();
        c.formatted += 1;
        match v {
            Verdict::Matched(algo) => {
                c.matched += 1;
                if !self.opts.quiet && !self.opts.status {
                    // The name as the checker of the matching algorithm
                    // prints it (b3sum for BLAKE3).
                    self.line(&line.name, AlgoSet::of(algo), "OK");
                }
            }
            Verdict::Mismatched => {
                c.mismatched += 1;
                if !self.opts.status {
                    self.line(&line.name, line.algos, "FAILED");
                }
            }
            Verdict::Failed { why, missing } => {
                if missing && self.opts.ignore_missing {
                    return;
                }
                c.unreadable += 1;
                self.flush();
                message(&format!("parsum: {}: {why}", quote_bytes(&line.name)));
                if !self.opts.status {
                    self.line(&line.name, line.algos, "FAILED open or read");
                }
            }
        }
    }
}

impl Sink<Tag, Msg> for CheckSink<'_> {
    fn done(&mut self, item: Item<Tag>, result: Result<FileHash, HashError>) {
        let Tag { manifest: mi, line } = item.tag;
        self.files += 1;
        self.bytes += result.as_ref().map(|h| h.size).unwrap_or(0);
        self.progress.update(self.files, self.bytes, &self.counters);
        let v = Verdict::of(&line, &result);
        self.verdict(mi, &line, v);
    }

    fn msg(&mut self, m: Msg) {
        match m {
            Msg::Unreadable(_, e) => {
                self.flush();
                message(&format!("parsum: {e}"));
                self.exit = Exit::Failure;
            }
            Msg::Misformatted(mi, no, algo) => {
                self.per.entry(mi).or_default().misformatted += 1;
                if self.opts.warn {
                    self.flush();
                    let algo = algo.map(|a| format!("{} ", a.tag())).unwrap_or_default();
                    let at = at_line(&manifest_label(&self.manifests[mi]), no as u64);
                    message(&format!(
                        "parsum: {at}: improperly formatted {algo}checksum line"
                    ));
                }
            }
            Msg::Failed(mi, line, e) => self.verdict(mi, &line, Verdict::failed(&e)),
            Msg::Stdin(mi, line) => {
                let (item, r) = hash_stdin_item(line.algos, Tag { manifest: mi, line });
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
