//! Printing a tree's checksums: the GNU, `--tag`, `--json` and `-z` formats,
//! the per-file reports on stderr, and the closing summary.
//!
//! Results arrive in path order from the pipeline; each is formatted into a
//! buffer that is written to stdout after every batch, so output streams
//! with one `write` per batch instead of one per line.
//!
//! JSON lines are `{"path", "size", "mtime", "mtime_nsec", "algo", "hash"}`.
//! `path` is always a valid JSON string; a name that is not valid UTF-8 is
//! shown there with U+FFFD and its exact bytes are added as `"path_hex"`
//! (lower-case hex), so the output stays byte-exact and plain JSON.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::escape::{json_str, quote, Escape};
use crate::exit::Exit;
use crate::hash::{os_message, Algo, Digest, FileHash, HashError};
use crate::manifest::{write_gnu, write_tag};
use crate::outfile::{NotData, OutFile};
use crate::pipeline::{Item, Sink};
use crate::progress::{human_bytes, message, Counters, Progress};
use crate::walk::Skip;

/// Output format for tree hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gnu,
    Tag,
    Json,
}

/// Non-file events of a walk, in order with the files.
pub enum Note {
    Skipped(std::path::PathBuf, Skip),
    Error(std::path::PathBuf, io::Error),
}

/// Tallies for the summary line and the exit status.
#[derive(Debug, Default)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
    pub errors: u64,
    pub changed: u64,
    pub symlinks: u64,
    pub special: u64,
    pub excluded: u64,
    pub other_fs: u64,
    pub loops: u64,
}

impl Tally {
    pub fn skipped(&self) -> u64 {
        self.symlinks + self.special + self.excluded + self.other_fs
    }

    /// Counts a skip and says so on stderr when it deserves a line of its own.
    pub fn skip(&mut self, path: &Path, why: &Skip, verbose: bool) {
        let line = match why {
            Skip::Symlink => {
                self.symlinks += 1;
                verbose.then(|| "symbolic link not followed (use --follow)".to_string())
            }
            Skip::Excluded => {
                self.excluded += 1;
                verbose.then(|| "excluded".to_string())
            }
            Skip::Special(kind) => {
                self.special += 1;
                Some(format!("skipped {kind} (not read)"))
            }
            Skip::Unbounded(fs) => {
                self.special += 1;
                Some(format!("skipped: an endless {fs} file (not read)"))
            }
            Skip::OtherFileSystem => {
                self.other_fs += 1;
                Some("skipped: another file system (--one-file-system)".to_string())
            }
            Skip::Loop => {
                // An error, as in `find -L`: part of the tree is not hashed.
                self.loops += 1;
                self.errors += 1;
                Some(
                    "File system loop detected (a symbolic link to an ancestor); not followed"
                        .to_string(),
                )
            }
        };
        if let Some(l) = line {
            message(&format!("parsum: {}: {l}", quote(path)));
        }
    }

    /// Reports a file whose hashing failed; a file that changed while it
    /// was read also counts as changed.
    pub fn hash_error(&mut self, path: &Path, e: &HashError) {
        self.error(path, e, matches!(e, HashError::Changed(_)));
    }

    /// Files finished so far, hashed or failed: the progress bar's count.
    pub fn finished(&self) -> u64 {
        self.files + self.errors
    }

    /// Reports a failed file.
    pub fn error(&mut self, path: &Path, e: &dyn std::fmt::Display, changed: bool) {
        self.errors += 1;
        if changed {
            self.changed += 1;
        }
        message(&format!("parsum: {}: {e}", quote(path)));
    }

    /// The one-line summary: files, bytes, skipped, errors, time, throughput.
    pub fn summary(&self, secs: f64) -> String {
        let mut skipped = Vec::new();
        for (n, what) in [
            (self.symlinks, "symlinks"),
            (self.special, "special"),
            (self.excluded, "excluded"),
            (self.other_fs, "other fs"),
        ] {
            if n > 0 {
                skipped.push(format!("{n} {what}"));
            }
        }
        let skipped = if skipped.is_empty() {
            "0 skipped".to_string()
        } else {
            format!("{} skipped ({})", self.skipped(), skipped.join(", "))
        };
        let mut detail = Vec::new();
        if self.changed > 0 {
            detail.push(format!("{} changed during read", self.changed));
        }
        if self.loops > 0 {
            detail.push(plural(self.loops, "loop", "loops"));
        }
        let mut errors = plural(self.errors, "error", "errors");
        if !detail.is_empty() {
            errors = format!("{errors} ({})", detail.join(", "));
        }
        format!(
            "parsum: {}, {}, {skipped}, {errors} in {secs:.2} s ({}/s)",
            plural(self.files, "file", "files"),
            human_bytes(self.bytes as f64),
            human_bytes(self.bytes as f64 / secs.max(1e-9))
        )
    }
}

/// Standard output (or `-o FILE`) through one buffer. Lines are collected
/// and written once per batch; the first write error is kept, nothing more
/// is written after it, and [`Out::finish`] reports it upward as the run's
/// status.
#[derive(Default)]
pub struct Out {
    pub buf: Vec<u8>,
    error: Option<io::Error>,
    /// `-o FILE`: written here instead, renamed into place by `finish`.
    file: Option<OutFile>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            buf: Vec::with_capacity(64 * 1024),
            error: None,
            file: None,
        }
    }

    /// An output to `dest` (`-o`), which appears only when [`Out::finish`]
    /// succeeds (see `outfile.rs`). An error names `dest`.
    pub fn to_file(dest: &Path) -> Result<Out, String> {
        let file = OutFile::create(dest)
            .map_err(|e| format!("parsum: {}: {}", quote(dest), os_message(&e)))?;
        Ok(Out {
            file: Some(file),
            ..Out::new()
        })
    }

    /// The files that are this output, not data (`-o FILE`: see
    /// [`OutFile::not_data`]); none for standard output.
    pub fn not_data(&self) -> NotData {
        self.file
            .as_ref()
            .map_or_else(NotData::default, OutFile::not_data)
    }

    /// Writes what was collected (hiding the progress bar meanwhile).
    pub fn flush(&mut self) {
        if !self.buf.is_empty() && self.error.is_none() {
            let written = match &mut self.file {
                Some(f) => f.write_all(&self.buf),
                None => crate::progress::write_stdout(&self.buf),
            };
            if let Err(e) = written {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    /// Whether stdout failed: nobody reads the rest (`parsum | head`), so
    /// the run may stop.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Flushes, and says how writing went: a write error is reported on
    /// stderr (a closed pipe silently, as a reader that quit is no news:
    /// standard output's, or one `-o` names, as coreutils' default SIGPIPE
    /// ends it silently on either).
    ///
    /// With `-o FILE`, a complete output is renamed into place; after a
    /// write error the temporary file is removed and FILE left as it was.
    pub fn finish(&mut self) -> Exit {
        self.flush();
        if self.error.is_none() {
            if let Some(f) = self.file.take() {
                let dest = f.dest().to_path_buf();
                if let Err(e) = f.commit() {
                    message(&format!(
                        "parsum: write error: {}: {}",
                        quote(&dest),
                        os_message(&e)
                    ));
                    return Exit::Failure;
                }
            }
        }
        match &self.error {
            None => Exit::Success,
            Some(e) => {
                // Dropping the file removes its temporary file.
                let file = self.file.take();
                let to = file
                    .as_ref()
                    .map(|f| format!("{}: ", quote(f.dest())))
                    .unwrap_or_default();
                // A reader that quit is no news, whichever name the pipe
                // was given: `-o -`, `-o /dev/stdout`, `-o FIFO` alike.
                if e.kind() != io::ErrorKind::BrokenPipe {
                    message(&format!("parsum: write error: {to}{}", os_message(e)));
                }
                Exit::Failure
            }
        }
    }
}

/// `1 file`, `2 files`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Writes a tree's checksums.
pub struct TreeSink<'a> {
    pub format: Format,
    pub algo: Algo,
    pub zero: bool,
    pub verbose: bool,
    pub tally: Tally,
    pub progress: &'a Progress,
    pub counters: &'a Counters,
    pub out: Out,
}

impl<'a> TreeSink<'a> {
    pub fn new(
        format: Format,
        algo: Algo,
        zero: bool,
        verbose: bool,
        progress: &'a Progress,
        counters: &'a Counters,
    ) -> Self {
        TreeSink {
            format,
            algo,
            zero,
            verbose,
            tally: Tally::default(),
            progress,
            counters,
            out: Out::new(),
        }
    }

    pub fn flush(&mut self) {
        self.out.flush();
    }
}

impl Sink<(), Note> for TreeSink<'_> {
    fn done(&mut self, item: Item<()>, result: Result<FileHash, HashError>) {
        match result {
            Ok(h) => {
                self.tally.files += 1;
                self.tally.bytes += h.size;
                let name = item.path.as_os_str().as_bytes();
                let term = if self.zero { b'\0' } else { b'\n' };
                let esc = Escape::for_terminator(term);
                match self.format {
                    Format::Gnu => write_gnu(&mut self.out.buf, &h.digests[0], name, esc, term),
                    Format::Tag => write_tag(&mut self.out.buf, &h.digests[0], name, esc, term),
                    Format::Json => {
                        write_json(&mut self.out.buf, name, &h.digests[0], &h, None, None, term)
                    }
                }
            }
            Err(e) => self.tally.hash_error(&item.path, &e),
        }
        self.progress
            .update(self.tally.finished(), self.tally.bytes, self.counters);
    }

    fn msg(&mut self, m: Note) {
        self.flush();
        match m {
            Note::Skipped(p, why) => self.tally.skip(&p, &why, self.verbose),
            Note::Error(p, e) => self.tally.error(&p, &crate::hash::os_message(&e), false),
        }
    }

    fn batch_end(&mut self) {
        self.flush();
    }

    fn stopped(&self) -> bool {
        self.out.failed()
    }
}

/// Appends one JSON line for a hashed file: its digest `d`, and size and
/// mtime from `h`. `ino` and `ctime` (`ctime`, `ctime_nsec`) are added
/// (after `mtime_nsec`) for `--update`'s state files; `--json` output has
/// none. `state::parse_record` reads these
/// lines back, byte-exact.
pub fn write_json(
    out: &mut Vec<u8>,
    name: &[u8],
    d: &Digest,
    h: &FileHash,
    ino: Option<u64>,
    ctime: Option<(i64, u32)>,
    term: u8,
) {
    use std::io::Write;
    out.extend_from_slice(b"{\"path\":");
    match std::str::from_utf8(name) {
        Ok(s) => json_str(out, s),
        Err(_) => {
            json_str(out, &String::from_utf8_lossy(name));
            out.extend_from_slice(b",\"path_hex\":\"");
            for b in name {
                let _ = write!(out, "{b:02x}");
            }
            out.push(b'"');
        }
    }
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        ",\"size\":{},\"mtime\":{},\"mtime_nsec\":{}",
        h.size, h.mtime, h.mtime_nsec
    );
    if let Some(ino) = ino {
        let _ = write!(out, ",\"ino\":{ino}");
    }
    if let Some((s, ns)) = ctime {
        let _ = write!(out, ",\"ctime\":{s},\"ctime_nsec\":{ns}");
    }
    let _ = write!(out, ",\"algo\":\"{}\",\"hash\":\"", d.algo);
    d.push_hex(out);
    out.extend_from_slice(b"\"}");
    out.push(term);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;

    #[test]
    fn json_escapes_and_hex_for_invalid_utf8() {
        let h = FileHash {
            digests: vec![hash_bytes(Algo::Md5, b"")],
            size: 0,
            mtime: 5,
            mtime_nsec: 6,
        };
        let mut out = Vec::new();
        write_json(
            &mut out,
            b"a\"b\\\n\x01\xff",
            &h.digests[0],
            &h,
            None,
            None,
            b'\n',
        );
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "{\"path\":\"a\\\"b\\\\\\n\\u0001\u{fffd}\",\"path_hex\":\"6122625c0a01ff\",\"size\":0,\"mtime\":5,\
             \"mtime_nsec\":6,\"algo\":\"md5\",\"hash\":\"d41d8cd98f00b204e9800998ecf8427e\"}\n"
        );
    }

    #[test]
    fn summary_line() {
        let t = Tally {
            files: 3,
            bytes: 2048,
            symlinks: 2,
            errors: 1,
            changed: 1,
            ..Default::default()
        };
        let s = t.summary(2.0);
        assert!(s.starts_with("parsum: 3 files, 2.0 KiB, 2 skipped (2 symlinks), 1 error (1 changed during read) in 2.00 s"), "{s}");
    }
}
