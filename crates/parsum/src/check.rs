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
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::hash::{kind_name, Algo, FileHash, HashError};
use crate::manifest::{escape_name, parse_line, Escape, Line};
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
    Misformatted(usize, usize),
    /// stat failed before hashing (missing file, usually).
    Failed(usize, Vec<u8>, io::Error),
    End(usize),
}

/// The `'static` slice for a line's algorithms.
fn static_algos(v: &[Algo]) -> &'static [Algo] {
    match v {
        [a] => a.only(),
        _ => Algo::candidates_for_hex_len(64),
    }
}

/// The algorithm a manifest's name suggests for 64-digit lines.
fn hint_from_name(name: &Path) -> Option<Algo> {
    let n = name.file_name()?.to_string_lossy().to_ascii_lowercase();
    if n.ends_with(".b3") || n.contains("b3sum") || n.contains("blake3") {
        Some(Algo::Blake3)
    } else if n.contains("sha256") || n.contains("sha2-256") {
        Some(Algo::Sha256)
    } else {
        None
    }
}

fn read_manifest(path: &Path) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    if path == Path::new("-") {
        io::stdin().lock().read_to_end(&mut data)?;
    } else {
        File::open(path)?.read_to_end(&mut data)?;
    }
    Ok(data)
}

fn manifest_label(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".into()
    } else {
        crate::output::quote(path)
    }
}

/// Runs the check of `manifests`; returns the exit status.
pub fn run(
    pipe: &Arc<Pipeline>,
    manifests: Vec<PathBuf>,
    opts: CheckOpts,
    progress: &Progress,
) -> i32 {
    let list = manifests.clone();
    let stream = pipe.spawn(move |f: &mut crate::pipeline::Feeder<Tag, Msg>| {
        let mut runs = Runs::default();
        for (mi, m) in list.iter().enumerate() {
            let data = match read_manifest(m) {
                Ok(d) => d,
                Err(e) => {
                    runs.msg(f, Msg::Unreadable(mi, e));
                    continue;
                }
            };
            let hint = opts.algo.or_else(|| hint_from_name(m));
            let sep = if opts.zero { b'\0' } else { b'\n' };
            let mut lines: Vec<&[u8]> = data.split(|&b| b == sep).collect();
            if lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            for (no, raw) in lines.into_iter().enumerate() {
                let Some(mut line) = parse_line(raw, opts.algo) else {
                    runs.msg(f, Msg::Misformatted(mi, no + 1));
                    continue;
                };
                if line.algos.len() > 1 {
                    if let Some(h) = hint.filter(|h| line.algos.contains(h)) {
                        line.algos = vec![h];
                    }
                }
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(&line.name));
                match std::fs::metadata(&path) {
                    // Never open a FIFO, socket or device listed in a manifest.
                    Ok(meta) if !meta.file_type().is_file() => {
                        let e = HashError::NotRegular(kind_name(meta.file_type()));
                        runs.msg(
                            f,
                            Msg::Failed(mi, line.name, io::Error::other(e.to_string())),
                        );
                    }
                    Ok(meta) => runs.file(
                        f,
                        Item {
                            path,
                            dev: meta.dev(),
                            ino: meta.ino(),
                            nlink: 1, // verify every line, even of the same file
                            size: meta.len(),
                            mtime: meta.mtime(),
                            mtime_nsec: meta.mtime_nsec(),
                            no_follow: false,
                            algos: static_algos(&line.algos),
                            tag: Tag { manifest: mi, line },
                        },
                    ),
                    Err(e) => runs.msg(f, Msg::Failed(mi, line.name, e)),
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
        out: Vec::new(),
        exit: 0,
    };
    stream.drain(&mut sink);
    progress.finish();
    sink.flush();
    sink.exit
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
    out: Vec<u8>,
    exit: i32,
}

impl CheckSink<'_> {
    fn flush(&mut self) {
        let _ = crate::progress::write_stdout(&self.out);
        self.out.clear();
    }

    /// `name: STATUS`, name escaped as coreutils does.
    fn line(&mut self, name: &[u8], status: &str) {
        let esc = if self.opts.zero {
            Escape::None
        } else {
            Escape::Coreutils
        };
        let (escaped, n) = escape_name(name, esc);
        if escaped {
            self.out.push(b'\\');
        }
        self.out.extend_from_slice(&n);
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(status.as_bytes());
        self.out.push(if self.opts.zero { b'\0' } else { b'\n' });
    }

    fn read_failed(&mut self, mi: usize, name: &[u8], err: &dyn std::fmt::Display, missing: bool) {
        if missing && self.opts.ignore_missing {
            return;
        }
        self.per.entry(mi).or_default().unreadable += 1;
        self.flush();
        message(&format!(
            "parsum: {}: {err}",
            crate::output::quote(Path::new(std::ffi::OsStr::from_bytes(name)))
        ));
        if !self.opts.status {
            self.line(name, "FAILED open or read");
        }
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
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
                let ok = h.digests.iter().any(|d| line.digest(d.algo) == Some(*d));
                let c = self.per.entry(mi).or_default();
                if ok {
                    c.matched += 1;
                    if !self.opts.quiet && !self.opts.status {
                        self.line(&line.name, "OK");
                    }
                } else {
                    c.mismatched += 1;
                    if !self.opts.status {
                        self.line(&line.name, "FAILED");
                    }
                }
            }
            Err(e) => {
                let missing =
                    matches!(&e, HashError::Io(io) if io.kind() == io::ErrorKind::NotFound);
                self.read_failed(mi, &line.name, &e, missing);
            }
        }
    }

    fn msg(&mut self, m: Msg) {
        match m {
            Msg::Unreadable(mi, e) => {
                self.flush();
                message(&format!(
                    "parsum: {}: {e}",
                    manifest_label(&self.manifests[mi])
                ));
                self.exit = 1;
            }
            Msg::Misformatted(mi, no) => {
                self.per.entry(mi).or_default().misformatted += 1;
                if self.opts.warn {
                    self.flush();
                    message(&format!(
                        "parsum: {}: {no}: improperly formatted checksum line",
                        manifest_label(&self.manifests[mi])
                    ));
                }
            }
            Msg::Failed(mi, name, e) => {
                self.per.entry(mi).or_default().formatted += 1;
                let missing = e.kind() == io::ErrorKind::NotFound;
                self.read_failed(mi, &name, &e, missing);
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
                    self.exit = 1;
                }
            }
        }
    }

    fn batch_end(&mut self) {
        self.flush();
    }
}
