//! `--audit MANIFEST [PATH]...`: compare a tree with a manifest, file by file.
//!
//! Every file ends in exactly one of five outcomes:
//! - `matched`: in the manifest under the same path, same hash;
//! - `changed`: same path, different hash;
//! - `new`: a path the manifest does not list, whose hash it does not list
//!   under a missing path either;
//! - `missing`: listed, but absent from the tree (and not moved);
//! - `moved`: a new path whose hash a missing path had (`old -> new`).
//!
//! A listed path that is now a symbolic link (not followed), a FIFO, a
//! socket or a device is `missing`, as `--update` says: the file listed is
//! gone (an excluded one, or one on a pseudo file system that never ends, is
//! left out of the report). A path listed more than once with different
//! checksums cannot match them all, whatever their order: it is named in a
//! warning with the line that conflicts ([`warn_conflicts`]), and is
//! `changed` if it is there, `missing` if not (never moved).
//!
//! matched and changed stream in walk order; new, moved and missing need the
//! whole walk and follow it, each sorted by path. Paths compare by lexical
//! normalisation on both sides ([`normalize`]: `.//x`, `./x` and `x` are one
//! path; `..` is not resolved), and are reported in that form; so audit with
//! PATHs that reach the files under the names the manifest lists. The exit
//! status is 0 only when every file matched and nothing failed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app::Root;
use crate::escape::{push_marked_name, Escape};
use crate::exit::Exit;
use crate::hash::{Algo, AlgoSet, Digest, FileHash, HashError};
use crate::manifest::{at_line, read_error, read_line, Line, LineParser, Parsed};
use crate::output::{Note, Out, Tally};
use crate::pipeline::{Item, Pipeline, Sink};
use crate::progress::{message, Counters, Progress};
use crate::walk::{Skip, WalkOpts};

/// A path as a key: two spellings that name the same file by lexical
/// normalisation give the same key, so `parsum .`'s `a/b`, `parsum ./`'s
/// `./a/b`, `parsum a//`'s `a//b` and a manifest's `.//a/./b` all meet.
///
/// The rule (on bytes, never on text: a name need not be UTF-8, and an
/// escaped manifest name is unescaped before it gets here, so a `\` is
/// an ordinary byte): repeated `/` are one, `.` components are dropped, a
/// leading `/` stays. Nothing else changes: `..` is kept (`a/../b` is not
/// `b` when `a` is a symbolic link), no link is resolved, and a trailing
/// `/` (or `/.`) stays as one `/`, since `x/` names no regular file `x`.
/// A path of nothing but `.` and `/` is `.` (or `/`). A relative path that
/// would be `-` alone (`-`, `./-`, `.//-`: the file called `-`) is `./-`,
/// never `-`, which is standard input's key ([`STDIN_KEY`]).
pub(crate) fn normalize(name: &[u8]) -> Vec<u8> {
    normalized(name).into_owned()
}

/// [`normalize`], borrowed where `name` is already normal after a leading
/// `./` (the walk's names): lookups per file allocate nothing.
pub(crate) fn normalized(name: &[u8]) -> Cow<'_, [u8]> {
    let mut rest = name;
    // `./` and the `/`s after it, while a name is left: `.//x` is `x`.
    while let Some(r) = rest.strip_prefix(b"./") {
        let r = &r[r.iter().position(|&b| b != b'/').unwrap_or(r.len())..];
        if r.is_empty() {
            break;
        }
        rest = r;
    }
    if is_normal(rest) {
        Cow::Borrowed(rest)
    } else {
        Cow::Owned(normal_form(name))
    }
}

/// The key of standard input, a PATH `-`, and of a manifest's line for
/// `-` (which `-c` reads as standard input): no file's path normalizes to
/// it ([`normalize`] spells the file called `-` as `./-`).
pub(crate) const STDIN_KEY: &[u8] = b"-";

/// The key of a name on either side of the audit, a manifest line's or a
/// result's: [`STDIN_KEY`] for exactly `-`, else the name's [`normalize`]d
/// path. The one rule for both sides, in one process and under MPI: a
/// manifest's line `-` is standard input (as `-c` reads it), and a result
/// is named `-` only when it is standard input's (a PATH `-`), since no
/// walk names a file `-` (the file called `-` at the top of `.` is `./-`,
/// `walk.rs`).
pub(crate) fn key(name: &[u8]) -> Vec<u8> {
    if name == STDIN_KEY {
        STDIN_KEY.to_vec()
    } else {
        normalize(name)
    }
}

/// Whether [`normal_form`] would return `s` itself.
fn is_normal(s: &[u8]) -> bool {
    if s == b"." || s == b"/" || s == b"./-" {
        return true;
    }
    if s == b"-" {
        return false;
    }
    let n = s.split(|&b| b == b'/').count();
    !s.is_empty()
        && s.split(|&b| b == b'/').enumerate().all(|(i, c)| {
            // An empty component is the leading `/` or the trailing one.
            c != b"." && (!c.is_empty() || i == 0 || i == n - 1)
        })
}

/// The normal form of [`normalize`], built.
fn normal_form(name: &[u8]) -> Vec<u8> {
    let absolute = name.first() == Some(&b'/');
    let mut out = Vec::with_capacity(name.len());
    if absolute {
        out.push(b'/');
    }
    let mut any = false;
    for c in name.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        if any {
            out.push(b'/');
        }
        out.extend_from_slice(c);
        any = true;
    }
    let last = name.rsplit(|&b| b == b'/').next().unwrap_or_default();
    if !any {
        if !absolute {
            out.push(b'.');
        }
    } else if last.is_empty() || last == b"." {
        out.push(b'/');
    } else if out == b"-" {
        // The file called `-`, not standard input.
        out.splice(0..0, *b"./");
    }
    out
}

/// A manifest by normalized path, and the algorithms its lines allow.
type Loaded = (HashMap<Vec<u8>, Line>, AlgoSet);

/// The paths a manifest lists with checksums that cannot all match, each
/// with the number of the line that made it so (the first whose checksum
/// disagrees with the lines of its path before it).
pub(crate) type Conflicts = BTreeMap<Vec<u8>, u64>;

/// Adds `line`, line `no` of the manifest, listed under the normalized path
/// `key`, to `map`: the one home of the rule for a path listed more than
/// once (a single process's load and the owner ranks of MPI use it, in
/// manifest order). A file must match every line of its path, so lines
/// that agree (the same digest, in an algorithm both allow) stay one line;
/// lines that cannot all match become [`conflicting`], and `key` is added
/// to `conflicts` with `no`. Whether a path conflicts does not depend on
/// the order of the lines (only the line named does).
pub(crate) fn list(
    map: &mut HashMap<Vec<u8>, Line>,
    conflicts: &mut Conflicts,
    key: Vec<u8>,
    line: Line,
    no: u64,
) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, line);
        }
        Some(had) => {
            let both = had.algos.intersect(line.algos);
            if had.hex == line.hex && !both.is_empty() {
                had.algos = both;
            } else if !had.algos.is_empty() {
                *had = conflicting(&had.name);
                conflicts.insert(key, no);
            }
        }
    }
}

/// What a path listed with checksums that cannot all match stands for: a
/// line that allows no algorithm, so that no file matches it (`changed`
/// if the file is there) and no new file pairs with it as a move
/// (`missing` if not). Never sent between ranks (see [`Joined::of`]'s
/// caller in `cluster/audit.rs`).
pub(crate) fn conflicting(name: &[u8]) -> Line {
    Line {
        algos: AlgoSet::EMPTY,
        hex: Vec::new(),
        name: name.to_vec(),
    }
}

/// Whether `line` is [`conflicting`].
#[cfg(any(test, feature = "mpi"))]
pub(crate) fn is_conflicting(line: &Line) -> bool {
    line.algos.is_empty()
}

/// Warns of each path (normalized) the manifest `label` lists with
/// checksums that cannot all match, in line order, each as
/// `MANIFEST: LINE: NAME is listed ...` (the position as coreutils gives
/// it for an improperly formatted line: [`at_line`]).
pub(crate) fn warn_conflicts(label: &str, conflicts: &Conflicts) {
    let mut by_line: Vec<(u64, &[u8])> = conflicts.iter().map(|(k, &no)| (no, &k[..])).collect();
    by_line.sort_unstable();
    for (no, name) in by_line {
        message(&format!(
            "parsum: {}: {} is listed more than once with different checksums",
            at_line(label, no),
            crate::escape::quote_bytes(name)
        ));
    }
}

/// Whether a listed path the walk skipped for `why` counts as seen (left
/// out of the report) rather than `missing`. A path that is no longer a
/// regular file (a symbolic link not followed, a FIFO, a socket, a device)
/// is missing, as `--update` says; one excluded, on another file system
/// or a pseudo file system's endless file is still there, only not read.
pub(crate) fn skipped_is_seen(why: &Skip) -> bool {
    match why {
        Skip::Symlink | Skip::Special(_) => false,
        Skip::Excluded | Skip::OtherFileSystem | Skip::Unbounded(_) | Skip::Loop => true,
    }
}

/// The paths the walk could not list or read for a reason other than
/// their absence (a directory without permission, a loop of links, an I/O
/// error), by [`key`]. A listed path at or below one of them is neither
/// missing nor matched, as an unreadable file's is: its error says why,
/// and it is never paired as a move (`--update` keeps such entries). One
/// home for a single process and for ranks, which learn every rank's.
#[derive(Debug, Default)]
pub(crate) struct Unlisted {
    paths: HashSet<Vec<u8>>,
    /// `.` (or `./`) could not be listed: every path is below it.
    all: bool,
}

impl Unlisted {
    /// The walk could not read `path`; `why` is its error's
    /// [`crate::hash::os_message`]. A path that is not there (`No such
    /// file or directory`: a root that does not exist, a dangling link
    /// under `--follow`, a directory removed during the walk) hides
    /// nothing: what was listed below it is missing indeed.
    pub(crate) fn note(&mut self, path: &[u8], why: &str) {
        let absent = crate::hash::os_message(&std::io::Error::from_raw_os_error(libc::ENOENT));
        if why == absent {
            return;
        }
        let k = key(path);
        let mut p: &[u8] = &k;
        // `t/` and `t//` list `t/a`: the directory is `t` (`/` stays `/`).
        while p.len() > 1 && p.ends_with(b"/") {
            p = &p[..p.len() - 1];
        }
        if p == b"." || p.is_empty() {
            self.all = true;
        } else {
            self.paths.insert(p.to_vec());
        }
    }

    /// The paths noted, to send to other ranks (`.` for all).
    #[cfg(feature = "mpi")]
    pub(crate) fn paths(&self) -> impl Iterator<Item = &[u8]> {
        let all: &[u8] = b".";
        self.all
            .then_some(all)
            .into_iter()
            .chain(self.paths.iter().map(Vec::as_slice))
    }

    /// Whether the listed path `k` (a [`key`]) is at or below a path
    /// noted.
    pub(crate) fn covers(&self, k: &[u8]) -> bool {
        if k == STDIN_KEY {
            return false;
        }
        if self.all {
            return true;
        }
        if self.paths.is_empty() {
            return false;
        }
        self.paths.contains(k)
            || k.iter().enumerate().any(|(i, &b)| {
                b == b'/' && self.paths.contains(if i == 0 { &k[..1] } else { &k[..i] })
            })
    }
}

/// Why the manifest cannot be audited against.
pub(crate) enum LoadError {
    /// It could not be read (exit 1, as `-c` does).
    Unreadable(String),
    /// It cannot be used as given (exit 2).
    Usage(String),
}

/// Loads the manifest: path -> line, plus the algorithms to compute.
/// Improperly formatted lines are reported and skipped, as `-c` does.
fn load(manifest: &Path, only: Option<Algo>, zero: bool) -> Result<Loaded, LoadError> {
    let label = crate::manifest::label(manifest);
    let unreadable = |e: std::io::Error| {
        LoadError::Unreadable(format!("{label}: {}", crate::hash::os_message(&e)))
    };
    let mut reader = crate::manifest::open_manifest(manifest).map_err(unreadable)?;
    let mut map = HashMap::new();
    let mut conflicts = Conflicts::new();
    let mut algos = AlgoLines::default();
    let sep = crate::manifest::line_end(zero);
    let mut parser = LineParser::new(only, sep);
    let mut bad = 0u64;
    let mut raw = Vec::new();
    for no in 1.. {
        // Bounded: a line with no end ends the load, as a read error.
        match read_line(&mut reader, sep, &mut raw) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(LoadError::Unreadable(read_error(&label, &e, no))),
        }
        let line = match parser.parse(&raw) {
            Parsed::Line(l) => l,
            Parsed::Skip => continue,
            Parsed::Bad => {
                bad += 1;
                misformatted(&label, no);
                continue;
            }
        };
        algos.add(line.algos, no);
        list(&mut map, &mut conflicts, key(&line.name), line, no);
    }
    let algos = loaded(&label, bad, map.len() as u64, &algos)?;
    warn_conflicts(&label, &conflicts);
    Ok((map, algos))
}

/// Says that line `no` of the manifest `label` is improperly formatted.
pub(crate) fn misformatted(label: &str, no: u64) {
    message(&format!(
        "parsum: {}: improperly formatted checksum line",
        at_line(label, no)
    ));
}

/// The algorithms a manifest's lines allow, each with the first line that
/// allows it: the algorithms to compute, and the line from which the
/// manifest mixes them ([`AlgoLines::mixed_at`]). Filled in line order by
/// a single process's load, by range under MPI and then merged; either
/// way the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AlgoLines {
    /// `(algorithm, first line)`, one entry per algorithm.
    first: Vec<(Algo, u64)>,
}

impl AlgoLines {
    /// Line `no` allows `algos`.
    pub(crate) fn add(&mut self, algos: AlgoSet, no: u64) {
        for a in algos.iter() {
            match self.first.iter_mut().find(|(b, _)| *b == a) {
                Some((_, first)) => *first = (*first).min(no),
                None => self.first.push((a, no)),
            }
        }
    }

    /// What `other` (another range of the same manifest) saw too.
    #[cfg(any(test, feature = "mpi"))]
    pub(crate) fn merge(&mut self, other: &AlgoLines) {
        for &(a, no) in &other.first {
            self.add(AlgoSet::of(a), no);
        }
    }

    /// Each algorithm with its first line.
    #[cfg(feature = "mpi")]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Algo, u64)> + '_ {
        self.first.iter().copied()
    }

    /// Every algorithm seen.
    pub(crate) fn set(&self) -> AlgoSet {
        self.first
            .iter()
            .fold(AlgoSet::EMPTY, |s, &(a, _)| s.with(a))
    }

    /// The first line at which the lines so far allow more algorithms than
    /// one read computes (one, or BLAKE3 and SHA-256 for 64-digit lines),
    /// with the algorithms it adds and those before it; `None` if the
    /// manifest never does.
    fn mixed_at(&self) -> Option<MixedAt> {
        let mut lines: Vec<u64> = self.first.iter().map(|&(_, no)| no).collect();
        lines.sort_unstable();
        lines.dedup();
        let mut before = AlgoSet::EMPTY;
        for no in lines {
            let at = self
                .first
                .iter()
                .filter(|&&(_, n)| n == no)
                .fold(AlgoSet::EMPTY, |s, &(a, _)| s.with(a));
            let all = at.iter().fold(before, AlgoSet::with);
            if mixes(all) {
                return Some((no, at, before));
            }
            before = all;
        }
        None
    }
}

/// Where a manifest starts to mix algorithms: the line, the algorithms it
/// adds, and those of the lines before it.
type MixedAt = (u64, AlgoSet, AlgoSet);

/// Whether the algorithms `algos` need more than one read: more than one,
/// unless they are BLAKE3 and SHA-256 (64-digit lines), both computed in
/// one read. More than that needs `-a`.
fn mixes(algos: AlgoSet) -> bool {
    algos.len() > 1 && algos != Algo::candidates_for_hex_len(64)
}

/// `BLAKE3/SHA256`: the tags of `algos`.
fn tags(algos: AlgoSet) -> String {
    algos.iter().map(Algo::tag).collect::<Vec<_>>().join("/")
}

/// The end of a load that read every line: the warning for `bad` lines,
/// and whether `lines` distinct paths in `algos` can be audited (the
/// algorithms to compute).
pub(crate) fn loaded(
    label: &str,
    bad: u64,
    lines: u64,
    algos: &AlgoLines,
) -> Result<AlgoSet, LoadError> {
    if bad > 0 {
        let w = if bad == 1 { "line is" } else { "lines are" };
        message(&format!("parsum: WARNING: {bad} {w} improperly formatted"));
    }
    if lines == 0 {
        return Err(LoadError::Unreadable(format!(
            "{label}: no properly formatted checksum lines found"
        )));
    }
    if let Some((no, at, before)) = algos.mixed_at() {
        return Err(LoadError::Usage(format!(
            "{}: mixes hash algorithms ({} after {}); pass -a to choose one",
            at_line(label, no),
            tags(at),
            tags(before)
        )));
    }
    Ok(algos.set())
}

/// Reports a failed load; its exit status.
pub(crate) fn load_failed(e: LoadError) -> Exit {
    match e {
        LoadError::Unreadable(e) => {
            message(&format!("parsum: {e}"));
            Exit::Failure
        }
        LoadError::Usage(e) => {
            message(&format!("parsum: {e}"));
            Exit::Usage
        }
    }
}

/// The printer of `--audit` (and its sink in a single process): matched
/// and changed lines as they come, then [`Joined`]'s lines and the summary.
pub(crate) struct AuditSink<'a> {
    manifest: HashMap<Vec<u8>, Line>,
    seen: HashSet<Vec<u8>>,
    /// Where the walk could not see (a single process's; ranks gather
    /// theirs from their records).
    unlisted: Unlisted,
    /// New paths and their digests, for the moved/new decision at the end.
    new: BTreeMap<Vec<u8>, Vec<Digest>>,
    matched: u64,
    changed: u64,
    tally: Tally,
    verbose: bool,
    out: Out,
    progress: &'a Progress,
    counters: &'a Counters,
}

impl<'a> AuditSink<'a> {
    /// A printer on stdout; `manifest` is what a single process looks
    /// paths up in (empty where ranks compare, see [`Self::compared`]).
    pub(crate) fn new(
        manifest: HashMap<Vec<u8>, Line>,
        verbose: bool,
        progress: &'a Progress,
        counters: &'a Counters,
    ) -> AuditSink<'a> {
        AuditSink {
            manifest,
            seen: HashSet::new(),
            unlisted: Unlisted::default(),
            new: BTreeMap::new(),
            matched: 0,
            changed: 0,
            tally: Tally::default(),
            verbose,
            out: Out::new(),
            progress,
            counters,
        }
    }

    /// A listed file, compared with its line: `matched` or `changed`.
    pub(crate) fn compared(&mut self, name: &[u8], matched: bool) {
        if matched {
            self.matched += 1;
            self.line("matched", name);
        } else {
            self.changed += 1;
            self.line("changed", name);
        }
    }

    /// Prints `joined` and the summary; the exit status.
    pub(crate) fn report(mut self, joined: &Joined) -> Exit {
        joined.write(&mut self.out.buf);
        self.flush();
        let (n_new, n_moved) = (joined.new.len() as u64, joined.moved.len() as u64);
        let n_missing = joined.missing.len() as u64;
        message(&format!(
            "parsum: audit: {} matched, {} changed, {n_new} new, {n_missing} missing, {n_moved} moved, {}",
            self.matched,
            self.changed,
            crate::output::plural(self.tally.errors, "error", "errors")
        ));
        let differs = self.changed + n_new + n_missing + n_moved + self.tally.errors > 0;
        Exit::failed_if(differs).and(self.out.finish())
    }

    fn line(&mut self, what: &str, name: &[u8]) {
        let out = &mut self.out.buf;
        out.extend_from_slice(format!("{what:<8} ").as_bytes());
        push_marked_name(out, name, Escape::Backslash);
        out.push(b'\n');
    }
    fn flush(&mut self) {
        self.out.flush();
    }
}

impl Sink<(), Note> for AuditSink<'_> {
    fn done(&mut self, item: Item<()>, result: Result<FileHash, HashError>) {
        let name = key(item.path.as_os_str().as_bytes());
        match result {
            Ok(h) => {
                self.tally.files += 1;
                self.tally.bytes += h.size;
                match self.manifest.get(&name) {
                    Some(line) => {
                        self.seen.insert(name.clone());
                        let matched = matches(line, &h.digests);
                        self.compared(&name, matched);
                    }
                    None => {
                        self.new.insert(name, h.digests);
                    }
                }
            }
            Err(e) => {
                // Listed but unreadable: neither missing nor matched.
                self.seen.insert(name);
                self.flush();
                self.tally.hash_error(&item.path, &e);
            }
        }
        self.progress
            .update(self.tally.finished(), self.tally.bytes, self.counters);
    }

    fn msg(&mut self, m: Note) {
        self.flush();
        match m {
            Note::Skipped(p, why) => {
                if skipped_is_seen(&why) {
                    self.seen.insert(key(p.as_os_str().as_bytes()));
                }
                self.tally.skip(&p, &why, self.verbose)
            }
            Note::Error(p, e) => {
                let why = crate::hash::os_message(&e);
                self.unlisted.note(p.as_os_str().as_bytes(), &why);
                self.tally.error(&p, &why, false)
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

/// Runs the audit; returns the exit status.
/// What `--audit` was asked to do.
pub struct AuditArgs<'a> {
    pub manifest: &'a Path,
    pub roots: Vec<PathBuf>,
    /// `-a`: the manifest's algorithm, when its digest length is ambiguous.
    pub only: Option<Algo>,
    /// `-z`: the manifest's lines end with NUL.
    pub zero: bool,
    pub verbose: bool,
}

pub fn run(
    pipe: &Arc<Pipeline>,
    a: AuditArgs<'_>,
    walk_opts: WalkOpts,
    progress: &Progress,
) -> Exit {
    let AuditArgs {
        manifest,
        roots,
        only,
        zero,
        verbose,
    } = a;
    let (map, algos) = match load(manifest, only, zero) {
        Ok(x) => x,
        Err(e) => return load_failed(e),
    };
    let counters = Arc::clone(pipe.counters());
    let mut sink = AuditSink::new(map, verbose, progress, &counters);
    let walk_opts = Arc::new(walk_opts);
    // `-` is standard input, its result named `-` and keyed as the
    // manifest's line `-` ([`key`]), as in tree mode and `-c`.
    for s in Root::spawn_all(pipe, roots, &walk_opts, algos, None) {
        s.drain(&mut sink, algos);
    }
    sink.flush();
    progress.finish();

    let manifest = std::mem::take(&mut sink.manifest);
    let seen = std::mem::take(&mut sink.seen);
    let unlisted = std::mem::take(&mut sink.unlisted);
    let missing: BTreeMap<Vec<u8>, &Line> = manifest
        .iter()
        .filter(|(k, _)| !seen.contains(*k) && !unlisted.covers(k))
        .map(|(k, v)| (k.clone(), v))
        .collect();
    let new = std::mem::take(&mut sink.new);
    let joined = Joined::of(missing, &new);
    sink.report(&joined)
}

/// Whether a file's digests match its manifest line.
pub(crate) fn matches(line: &Line, digests: &[Digest]) -> bool {
    digests.iter().any(|d| line.digest(d.algo) == Some(*d))
}

/// The end of a comparison of a tree with an earlier listing: the paths
/// the listing had and the tree lacks (`missing`) and those the tree has and
/// the listing lacked (`new`), paired into moves where a new path has the
/// digest of a missing one. Each old path pairs at most once; a line pairs
/// only for an algorithm it allows. Every list is sorted by path.
pub(crate) struct Joined {
    pub new: Vec<Vec<u8>>,
    /// `(old, new)`.
    pub moved: Vec<(Vec<u8>, Vec<u8>)>,
    pub missing: Vec<Vec<u8>>,
}

impl Joined {
    /// Pairs `new` paths (with their digests) with `missing` ones.
    pub fn of(
        mut missing: BTreeMap<Vec<u8>, &Line>,
        new: &BTreeMap<Vec<u8>, Vec<Digest>>,
    ) -> Joined {
        // Missing paths by hash, to pair with new paths as moves.
        let mut by_hash: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
        for (name, line) in &missing {
            by_hash
                .entry(line.hex.clone())
                .or_default()
                .push(name.clone());
        }
        let mut joined = Joined {
            new: Vec::new(),
            moved: Vec::new(),
            missing: Vec::new(),
        };
        for (name, digests) in new {
            let from = digests.iter().find_map(|d| {
                let list = by_hash.get_mut(d.to_hex().as_bytes())?;
                let pos = list
                    .iter()
                    .position(|m| missing.get(m).is_some_and(|l| l.digest(d.algo) == Some(*d)))?;
                Some(list.remove(pos))
            });
            match from {
                Some(old) => {
                    missing.remove(&old);
                    joined.moved.push((old, name.clone()));
                }
                None => joined.new.push(name.clone()),
            }
        }
        joined.missing = missing.into_keys().collect();
        joined
    }

    /// The report lines: `new`, then `moved    old -> new`, then `missing`
    /// (names escaped as in `-c` results), in path order within each kind
    /// the way `--audit` has always printed them: new and moved interleaved
    /// by new path, then missing.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut lines: Vec<(&[u8], Vec<u8>)> = Vec::new();
        for name in &self.new {
            let mut l = format!("{:<8} ", "new").into_bytes();
            push_marked_name(&mut l, name, Escape::Backslash);
            lines.push((name, l));
        }
        for (old, name) in &self.moved {
            let mut l = format!("{:<8} ", "moved").into_bytes();
            push_marked_name(&mut l, old, Escape::Backslash);
            l.extend_from_slice(b" -> ");
            push_marked_name(&mut l, name, Escape::Backslash);
            lines.push((name, l));
        }
        lines.sort_by(|a, b| a.0.cmp(b.0));
        for name in &self.missing {
            let mut l = format!("{:<8} ", "missing").into_bytes();
            push_marked_name(&mut l, name, Escape::Backslash);
            lines.push((name, l));
        }
        for (_, l) in lines {
            out.extend_from_slice(&l);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(algos: AlgoSet, hex: &str) -> Line {
        Line {
            algos,
            hex: hex.as_bytes().to_vec(),
            name: b"a".to_vec(),
        }
    }

    /// Spellings of one path by lexical normalisation meet; `..`, a
    /// trailing `/` and non-UTF-8 bytes are kept as they are.
    #[test]
    fn normalize_is_lexical() {
        for (name, want) in [
            (&b"x"[..], &b"x"[..]),
            (b"./x", b"x"),
            (b".//x", b"x"),
            (b"././/./x", b"x"),
            (b"a//b", b"a/b"),
            (b"a/./b", b"a/b"),
            (b"a/.//./b", b"a/b"),
            (b"a/../b", b"a/../b"),
            (b"../a", b"../a"),
            (b"/a//b", b"/a/b"),
            (b"//a", b"/a"),
            (b"/./a", b"/a"),
            (b"a/", b"a/"),
            (b"a//", b"a/"),
            (b"a/.", b"a/"),
            (b".", b"."),
            (b"./", b"."),
            (b".//.", b"."),
            (b"/", b"/"),
            (b"/.", b"/"),
            (b"\\a\\/./b", b"\\a\\/b"),
            (b"\xff//\xfe/./\n", b"\xff/\xfe/\n"),
            (b".hidden/..x", b".hidden/..x"),
            (b"-", b"./-"),
            (b"./-", b"./-"),
            (b".//./-", b"./-"),
            (b"-/", b"-/"),
            (b"-/./x", b"-/x"),
            (b"/-", b"/-"),
            (b"a/-", b"a/-"),
        ] {
            assert_eq!(normalize(name), want, "{:?}", String::from_utf8_lossy(name));
        }
    }

    /// The borrowed path agrees with the built one, and a key is its own
    /// key, on every name of up to six bytes of `/`, `.`, `-` and `a`.
    #[test]
    fn normalized_agrees_with_normal_form() {
        let mut names: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..6 {
            let longer: Vec<Vec<u8>> = names
                .iter()
                .filter(|n| n.len() == names.last().map_or(0, Vec::len))
                .flat_map(|n| [b'/', b'.', b'-', b'a'].map(|b| [&n[..], &[b]].concat()))
                .collect();
            names.extend(longer);
        }
        for n in names.iter().filter(|n| !n.is_empty()) {
            let key = normalize(n);
            assert_eq!(key, normal_form(n), "{:?}", String::from_utf8_lossy(n));
            assert_eq!(normalize(&key), key, "{:?}", String::from_utf8_lossy(n));
            assert_eq!(is_normal(n), normal_form(n) == *n);
        }
    }

    /// The line a manifest starts mixing algorithms at is the same
    /// whether its lines are seen in one pass or as ranges merged in any
    /// order (MPI); 64-digit lines (BLAKE3 or SHA-256) mix with neither.
    #[test]
    fn algo_lines_name_the_first_mixing_line_however_merged() {
        let b3 = AlgoSet::of(Algo::Blake3);
        let sha = AlgoSet::of(Algo::Sha256);
        let both = Algo::candidates_for_hex_len(64);
        let md5 = AlgoSet::of(Algo::Md5);
        let cases: [(&[AlgoSet], Option<MixedAt>); 4] = [
            (&[both, sha, b3, both], None),
            (&[sha, both, md5, md5], Some((3, md5, both))),
            (&[md5, md5, both], Some((3, both, md5))),
            (
                &[both, both, AlgoSet::of(Algo::Sha1)],
                Some((3, AlgoSet::of(Algo::Sha1), both)),
            ),
        ];
        for (lines, want) in cases {
            let mut whole = AlgoLines::default();
            let mut ranges = vec![AlgoLines::default(); lines.len()];
            for ((no, &l), range) in (1..).zip(lines).zip(&mut ranges) {
                whole.add(l, no);
                range.add(l, no);
            }
            assert_eq!(whole.mixed_at(), want, "{lines:?}");
            let mut merged = AlgoLines::default();
            for r in ranges.iter().rev() {
                merged.merge(r);
            }
            assert_eq!(merged.mixed_at(), want, "{lines:?}");
            assert_eq!(merged.set(), whole.set());
        }
    }

    /// Every order of the same lines lists the same thing.
    #[test]
    fn list_is_order_independent() {
        let both = Algo::candidates_for_hex_len(64);
        let sha = AlgoSet::of(Algo::Sha256);
        let x = "ab".repeat(32);
        let y = "cd".repeat(32);
        let cases: [(&[Line], Option<AlgoSet>); 3] = [
            (&[line(both, &x), line(sha, &x), line(both, &x)], Some(sha)),
            (&[line(both, &x), line(both, &y), line(both, &x)], None),
            (&[line(AlgoSet::of(Algo::Blake3), &x), line(sha, &x)], None),
        ];
        for (lines, want) in cases {
            let mut orders = vec![lines.to_vec()];
            orders.push(lines.iter().rev().cloned().collect());
            for order in orders {
                let (mut map, mut conflicts) = (HashMap::new(), Conflicts::new());
                for (no, l) in (1..).zip(order) {
                    list(&mut map, &mut conflicts, b"a".to_vec(), l, no);
                }
                let got = &map[&b"a"[..]];
                assert_eq!(
                    (!is_conflicting(got)).then_some(got.algos),
                    want,
                    "{lines:?}"
                );
                assert_eq!(conflicts.is_empty(), want.is_some());
            }
        }
    }
}
