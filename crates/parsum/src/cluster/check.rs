//! `-c` over MPI: each manifest split into newline-aligned byte ranges, one
//! per rank; each rank verifies its range with the check code of a single
//! process ([`crate::check::feed_lines`]); rank 0 prints every verdict in
//! manifest order with the single-process printer
//! ([`crate::check::CheckSink`]).
//!
//! Invariant: rank 0's printer sees exactly the verdicts and messages, in
//! exactly the order, that a single process's printer sees, so stdout,
//! stderr and the exit status are the single-process ones. Three things
//! make a range read apart equal to the same lines read in sequence:
//! - ranges are cut at line starts: a range owns the lines that *start* in
//!   it (a line crossing the cut is read whole by the range it starts in);
//! - the parser's state at a range's start (GNU reversed format or not, PGP
//!   armor), the algorithm "improperly formatted" lines name, and the line
//!   number are those the ranges before it end with. Each rank first scans
//!   its range from every possible parser state (few stay apart after a few
//!   lines), the ranks exchange those tables, and each rank chains them to
//!   find its true start (a prefix over a finite automaton);
//! - standard input and manifests that are not regular files (pipes) are
//!   read by rank 0 alone, as a single process reads them.
//!
//! Every rank's verdicts are kept encoded until its range is done, then sent
//! to rank 0 in chunks of at most [`CHUNK_BYTES`], each message non-empty
//! (it starts with its "last" flag). Rank 0 prints its own range, then rank
//! 1's, and so on, then the manifest's summary.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::exchange::all_to_all;
use super::merge::CHUNK_BYTES;
use super::steal::fatal;
use super::wire::{Dec, Enc, WireResult};
use crate::check::{
    feed_lines, feed_manifest, parse_step, CheckOpts, CheckSink, Msg, Reading, Start, Tag, Verdict,
};
use crate::config::{Config, Mode};
use crate::exit::Exit;
use crate::hash::{Algo, AlgoSet, FileHash, HashError};
use crate::manifest::{read_line, Line, LineParser};
use crate::pipeline::{Item, Pipeline, Runs, Sink};
use crate::progress::{message, Progress};

const TAG_VERDICTS: i32 = 8;

/// A manifest read by rank 0 alone (its size slot in the broadcast plan).
pub(super) const WHOLE: u64 = u64::MAX;

/// Where rank `rank` of `ranks` starts and ends in a manifest of `size`
/// bytes: the first line start at or after its even share's cut; `None`
/// as the end of the last rank (it reads to the end of the file).
fn range_of(file: &File, size: u64, rank: u64, ranks: u64, sep: u8) -> (u64, Option<u64>) {
    let cut = |r: u64| (size as u128 * r as u128 / ranks as u128) as u64;
    let start = line_start(file, cut(rank), sep);
    let end = (rank + 1 < ranks).then(|| line_start(file, cut(rank + 1), sep));
    (start, end.map(|e| e.max(start)))
}

/// The first line start at or after `off`: `off` itself when it is 0 or
/// follows a terminator, else just past the next terminator (or the end of
/// the file, or where a read fails: the ranges then agree on that point).
fn line_start(file: &File, off: u64, sep: u8) -> u64 {
    if off == 0 {
        return 0;
    }
    let mut pos = off - 1;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read_at(&mut buf, pos) {
            Ok(0) | Err(_) => return pos,
            Ok(n) => match buf[..n].iter().position(|&b| b == sep) {
                Some(i) => return pos + i as u64 + 1,
                None => pos += n as u64,
            },
        }
    }
}

/// A reader of `path` from `start` to `end` (or its end of file).
pub(super) fn open_range(
    path: &Path,
    start: u64,
    end: Option<u64>,
) -> io::Result<Box<dyn BufRead>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(start))?;
    const BUF: usize = 64 * 1024;
    Ok(match end {
        Some(e) => Box::new(BufReader::with_capacity(BUF, f.take(e - start))),
        None => Box::new(BufReader::with_capacity(BUF, f)),
    })
}

/// What a range does from each parser state: its line count, and for each
/// state of [`LineParser::all_states`] the state it ends in and the first
/// algorithm it names (see [`Start::named`]).
struct Scan {
    lines: u64,
    ends: Vec<(u8, Option<Algo>)>,
}

impl Scan {
    fn encode(&self, e: &mut Enc) {
        e.u64(self.lines);
        for &(end, named) in &self.ends {
            e.u8(end);
            e.u8(algo_code(named));
        }
    }

    fn decode(d: &mut Dec, states: usize) -> WireResult<Scan> {
        let lines = d.u64()?;
        let mut ends = Vec::with_capacity(states);
        for _ in 0..states {
            ends.push((d.u8()?, algo_of(d.u8()?)?));
        }
        Ok(Scan { lines, ends })
    }
}

/// Scans a range from the first `from` parser states at once (parsing
/// only, no hashing), merging the states that meet.
fn scan(reader: &mut dyn BufRead, how: &Reading, states: &[LineParser], from: usize) -> Scan {
    // Each group: the initial states it stands for, and where they are now.
    let mut groups: Vec<(Vec<usize>, Start)> = states[..from]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let start = Start {
                parser: p.clone(),
                named: None,
                no: 0,
            };
            (vec![i], start)
        })
        .collect();
    let mut raw = Vec::new();
    let mut lines = 0u64;
    loop {
        // A read error (or a line too long) ends the scan; the verifying
        // read reports it.
        match read_line(reader, how.sep(), &mut raw) {
            Ok(false) | Err(_) => break,
            Ok(true) => {}
        }
        lines += 1;
        for (_, state) in &mut groups {
            let _ = parse_step(state, &raw, how);
        }
        if groups.len() > 1 {
            let mut merged: Vec<(Vec<usize>, Start)> = Vec::with_capacity(groups.len());
            for (ids, state) in groups {
                match merged.iter_mut().find(|(_, s)| *s == state) {
                    Some((into, _)) => into.extend(ids),
                    None => merged.push((ids, state)),
                }
            }
            groups = merged;
        }
    }
    // States not scanned from (never the start of this range) map to
    // themselves.
    let mut ends: Vec<_> = (0..states.len()).map(|i| (i as u8, None)).collect();
    for (ids, state) in groups {
        let end = states
            .iter()
            .position(|p| *p == state.parser)
            .expect("all_states holds every state a parser reaches");
        for i in ids {
            ends[i] = (end as u8, state.named);
        }
    }
    Scan { lines, ends }
}

fn algo_code(a: Option<Algo>) -> u8 {
    a.map_or(0, |a| {
        1 + Algo::ALL.iter().position(|&x| x == a).expect("in ALL") as u8
    })
}

fn algo_of(code: u8) -> WireResult<Option<Algo>> {
    match code {
        0 => Ok(None),
        c => Algo::ALL
            .get(c as usize - 1)
            .map(|&a| Some(a))
            .ok_or_else(|| format!("malformed message: no algorithm {c}")),
    }
}

pub(super) fn set_code(s: AlgoSet) -> u8 {
    s.iter().map(|a| 1u8 << (algo_code(Some(a)) - 1)).sum()
}

pub(super) fn set_of(code: u8) -> WireResult<AlgoSet> {
    let mut s = AlgoSet::EMPTY;
    for (i, &a) in Algo::ALL.iter().enumerate() {
        if code & (1 << i) != 0 {
            s.insert(a);
        }
    }
    if s.is_empty() || code >> Algo::ALL.len() != 0 {
        return Err(format!("malformed message: algorithm set {code:#x}"));
    }
    Ok(s)
}

/// One thing for rank 0's printer, as a rank found it.
enum Event {
    Verdict(Line, Verdict),
    Misformatted(usize, Option<Algo>),
    Unreadable(String),
    Stdin(Line),
    End,
}

impl Event {
    fn encode(&self, e: &mut Enc) {
        match self {
            Event::Verdict(line, v) => {
                e.u8(0);
                e.bytes(&line.name);
                e.u8(set_code(line.algos));
                match v {
                    Verdict::Matched(a) => {
                        e.u8(0);
                        e.u8(algo_code(Some(*a)));
                    }
                    Verdict::Mismatched => e.u8(1),
                    Verdict::Failed { why, missing } => {
                        e.u8(2);
                        e.str(why);
                        e.bool(*missing);
                    }
                }
            }
            Event::Misformatted(no, named) => {
                e.u8(1);
                e.u64(*no as u64);
                e.u8(algo_code(*named));
            }
            Event::Unreadable(why) => {
                e.u8(2);
                e.str(why);
            }
            Event::Stdin(line) => {
                e.u8(3);
                e.bytes(&line.name);
                e.u8(set_code(line.algos));
                e.bytes(&line.hex);
            }
            Event::End => e.u8(4),
        }
    }

    fn decode(d: &mut Dec) -> WireResult<Event> {
        Ok(match d.u8()? {
            0 => {
                let name = d.bytes()?.to_vec();
                let algos = set_of(d.u8()?)?;
                let v = match d.u8()? {
                    0 => Verdict::Matched(
                        algo_of(d.u8()?)?.ok_or("malformed message: no matched algorithm")?,
                    ),
                    1 => Verdict::Mismatched,
                    2 => Verdict::Failed {
                        why: d.string()?,
                        missing: d.bool()?,
                    },
                    k => return Err(format!("malformed message: verdict {k}")),
                };
                let hex = Vec::new();
                Event::Verdict(Line { algos, hex, name }, v)
            }
            1 => Event::Misformatted(d.u64()? as usize, algo_of(d.u8()?)?),
            2 => Event::Unreadable(d.string()?),
            3 => {
                let name = d.bytes()?.to_vec();
                let algos = set_of(d.u8()?)?;
                let hex = d.bytes()?.to_vec();
                Event::Stdin(Line { algos, hex, name })
            }
            k => {
                if k != 4 {
                    return Err(format!("malformed message: check event {k}"));
                }
                Event::End
            }
        })
    }

    /// Gives this event of the `mi`-th manifest to the printer.
    fn print(self, mi: usize, sink: &mut CheckSink) {
        match self {
            Event::Verdict(line, v) => sink.verdict(mi, &line, v),
            Event::Misformatted(no, named) => sink.msg(Msg::Misformatted(mi, no, named)),
            Event::Unreadable(why) => sink.msg(Msg::Unreadable(mi, why)),
            Event::Stdin(line) => sink.msg(Msg::Stdin(mi, line)),
            Event::End => sink.msg(Msg::End(mi)),
        }
    }
}

/// The sink of a rank's own verifying: it encodes each verdict and message,
/// per manifest, in chunks of whole events for rank 0's printer.
struct Recorder {
    per: Vec<Vec<Enc>>,
    /// Lines given a verdict here (for `-v`).
    verdicts: u64,
    /// Files hashed here, and their bytes (for `-v`).
    files: u64,
    bytes: u64,
}

impl Recorder {
    fn put(&mut self, mi: usize, ev: Event) {
        if matches!(ev, Event::Verdict(..)) {
            self.verdicts += 1;
        }
        let chunks = &mut self.per[mi];
        if chunks.last().is_none_or(|c| c.buf.len() >= CHUNK_BYTES) {
            chunks.push(Enc::default());
        }
        ev.encode(chunks.last_mut().expect("pushed"));
    }
}

impl Sink<Tag, Msg> for Recorder {
    fn done(&mut self, item: Item<Tag>, result: Result<FileHash, HashError>) {
        let Tag { manifest, line } = item.tag;
        self.files += 1;
        self.bytes += result.as_ref().map_or(0, |h| h.size);
        let v = Verdict::of(&line, &result);
        self.put(manifest, Event::Verdict(line, v));
    }

    fn msg(&mut self, m: Msg) {
        match m {
            Msg::Unreadable(mi, why) => self.put(mi, Event::Unreadable(why)),
            Msg::Misformatted(mi, no, named) => self.put(mi, Event::Misformatted(no, named)),
            Msg::Failed(mi, line, e) => {
                let v = Verdict::failed(&e);
                self.put(mi, Event::Verdict(line, v));
            }
            Msg::Stdin(mi, line) => self.put(mi, Event::Stdin(line)),
            Msg::End(mi) => self.put(mi, Event::End),
        }
    }
}

/// What this rank reads of a manifest.
#[derive(Clone)]
pub(super) enum Part {
    /// Nothing (another rank reads it all, or this rank's range is empty).
    Nothing,
    /// All of it, as a single process (rank 0: standard input, a pipe, a
    /// manifest it could not open).
    Whole,
    /// Lines from `start` to `end`, from `state`.
    Range {
        start: u64,
        end: Option<u64>,
        state: Start,
    },
}

/// `-c` over all ranks.
pub fn run(world: &SimpleCommunicator, cfg: Config) -> Exit {
    let Mode::Check { manifests, opts } = cfg.mode else {
        unreachable!("called for -c only")
    };
    let rank = world.rank();
    let cpus = cfg.pipeline.cpus;
    let started = std::time::Instant::now();
    let pipe = Pipeline::new(cfg.pipeline);

    // Rank 0 says which manifests are split (their size) and which it
    // reads alone, so every rank cuts the same ranges.
    let mut plan = vec![WHOLE; manifests.len()];
    if rank == 0 {
        for (slot, m) in plan.iter_mut().zip(&manifests) {
            if !crate::stdio::is_dash(m) {
                if let Ok(meta) = std::fs::metadata(m) {
                    if meta.is_file() {
                        *slot = meta.len();
                    }
                }
            }
        }
    }
    super::idle::broadcast_from_root(world, &mut plan[..]);

    let parts = plan_parts(world, &manifests, &plan, &opts);

    let list = manifests.clone();
    let stream = pipe.spawn(move |f: &mut crate::pipeline::Feeder<Tag, Msg>| {
        let mut runs = Runs::default();
        for (mi, (m, part)) in list.iter().zip(parts).enumerate() {
            match part {
                Part::Nothing => {}
                Part::Whole => feed_manifest(f, &mut runs, mi, m, &opts),
                Part::Range {
                    start,
                    end,
                    mut state,
                } => {
                    let how = Reading::of(m, &opts);
                    match open_range(m, start, end) {
                        Ok(mut r) => feed_lines(f, &mut runs, mi, &mut r, &mut state, &how),
                        Err(e) => {
                            runs.msg(f, Msg::Unreadable(mi, crate::check::unopened(m, &e)));
                            continue;
                        }
                    }
                    // Rank 0 ends every split manifest (printed last).
                    if rank == 0 {
                        runs.msg(f, Msg::End(mi));
                    }
                }
            }
        }
    });
    let mut rec = Recorder {
        per: (0..manifests.len()).map(|_| Vec::new()).collect(),
        verdicts: 0,
        files: 0,
        bytes: 0,
    };
    stream.drain(&mut rec);
    if cfg.verbose {
        message(&format!(
            "parsum: rank {rank} of {} ({cpus} CPU(s)): {} manifest line(s) verified, \
             {} file(s) and {} byte(s) hashed in {:.3} s",
            world.size(),
            rec.verdicts,
            rec.files,
            rec.bytes,
            started.elapsed().as_secs_f64(),
        ));
    }

    let root = world.process_at_rank(0);
    if rank != 0 {
        for chunks in rec.per {
            // At least one message per manifest, each at least its flag.
            let n = chunks.len().max(1);
            let mut chunks = chunks.into_iter();
            for i in 0..n {
                let mut msg = vec![(i + 1 == n) as u8];
                if let Some(c) = chunks.next() {
                    msg.extend_from_slice(&c.buf);
                }
                super::idle::send(&root, &msg[..], TAG_VERDICTS);
            }
        }
        return Exit::Success;
    }

    // The progress bar of -c is not drawn under MPI: rank 0 prints what
    // the ranks already verified.
    let progress = Progress::new(false, Arc::clone(pipe.counters()));
    let mut sink = CheckSink::new(&progress, &pipe, opts, manifests);
    for (mi, own) in rec.per.into_iter().enumerate() {
        let mut ended = Ended::default();
        for c in own {
            print_events(world, mi, &c.buf, &mut sink, &mut ended);
        }
        for r in 1..world.size() {
            let from = world.process_at_rank(r);
            loop {
                let msg = super::idle::receive_vec(&from, TAG_VERDICTS);
                let Some((&last, body)) = msg.split_first() else {
                    fatal(world, "an empty chunk of -c verdicts");
                };
                print_events(world, mi, body, &mut sink, &mut ended);
                if last == 1 {
                    break;
                }
            }
        }
        if ended.ended {
            Event::End.print(mi, &mut sink);
        }
    }
    sink.finish()
}

/// What the events of one manifest printed so far said.
#[derive(Default)]
struct Ended {
    /// Its `End` came (printed after all ranks' events).
    ended: bool,
    /// A read error (or a line too long) ended a range: a single process
    /// reads no further, so the later ranges' events are dropped.
    unreadable: bool,
}

/// Decodes and prints one chunk's events (whole events: the [`Recorder`]
/// cuts chunks between them), all but an `End` (noted in `ended`) and
/// what follows a read error.
fn print_events(
    world: &SimpleCommunicator,
    mi: usize,
    buf: &[u8],
    sink: &mut CheckSink,
    ended: &mut Ended,
) {
    let mut d = Dec::new(buf);
    while !d.is_empty() {
        match Event::decode(&mut d) {
            Ok(Event::End) => ended.ended = true,
            Ok(_) if ended.unreadable => {}
            Ok(ev) => {
                ended.unreadable = matches!(ev, Event::Unreadable(_));
                ev.print(mi, sink)
            }
            Err(e) => fatal(world, &e),
        }
    }
}

/// This rank's part of each manifest: the ranges cut, every range scanned
/// from every parser state, the tables exchanged, and each range's true
/// start chained from the ranges before it.
pub(super) fn plan_parts(
    world: &SimpleCommunicator,
    manifests: &[PathBuf],
    plan: &[u64],
    opts: &CheckOpts,
) -> Vec<Part> {
    let rank = world.rank() as u64;
    let ranks = world.size() as u64;
    let states = LineParser::all_states(opts.algo, crate::manifest::line_end(opts.zero));
    let mut ranges = Vec::with_capacity(manifests.len());
    let mut table = Enc::default();
    for (m, &size) in manifests.iter().zip(plan) {
        let how = Reading::of(m, opts);
        let mut range = None;
        let mut sc = Scan {
            lines: 0,
            ends: (0..states.len()).map(|i| (i as u8, None)).collect(),
        };
        if size != WHOLE {
            if let Ok(file) = File::open(m) {
                let (start, end) = range_of(&file, size, rank, ranks, how.sep());
                // Rank 0 keeps even an empty range: it ends the manifest.
                if end != Some(start) || rank == 0 {
                    if let Ok(mut r) = open_range(m, start, end) {
                        // Rank 0's range starts fresh: scan it from there only.
                        let from = if rank == 0 { 1 } else { states.len() };
                        sc = scan(&mut r, &how, &states, from);
                    }
                    range = Some((start, end));
                }
            } else {
                // Its verifying read reports the error.
                range = Some((0, Some(0)));
            }
        }
        ranges.push(range);
        sc.encode(&mut table);
    }
    let tables = all_to_all(world, vec![table.buf; ranks as usize]).incoming;
    let mut decs: Vec<Dec> = tables.iter().map(|t| Dec::new(t)).collect();
    let mut parts = Vec::with_capacity(manifests.len());
    for ((m, &size), range) in manifests.iter().zip(plan).zip(ranges) {
        let how = Reading::of(m, opts);
        // Chain the ranks before this one: their end state is the next's start.
        let mut s = 0usize;
        let mut named = how.hint;
        let mut no = 0usize;
        for (r, d) in decs.iter_mut().enumerate() {
            let Scan { lines, ends } =
                Scan::decode(d, states.len()).unwrap_or_else(|e| fatal(world, &e));
            if r as u64 >= rank {
                continue;
            }
            let (end, first) = ends[s];
            if end as usize >= states.len() {
                fatal(world, "a parser state out of range");
            }
            s = end as usize;
            named = named.or(first);
            no += lines as usize;
        }
        parts.push(match range {
            _ if size == WHOLE => {
                if rank == 0 {
                    Part::Whole
                } else {
                    Part::Nothing
                }
            }
            None => Part::Nothing,
            Some((start, end)) => Part::Range {
                start,
                end,
                state: Start {
                    parser: states[s].clone(),
                    named,
                    no,
                },
            },
        });
    }
    parts
}
