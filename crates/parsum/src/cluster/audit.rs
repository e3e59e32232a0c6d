//! `--audit` over MPI: a distributed hash join of the tree with the
//! manifest, first by path, then by digest for "moved".
//!
//! Invariant: rank 0's printer ([`crate::audit::AuditSink`]) prints the
//! lines, messages, summary and exit status of a single process:
//! - each path has one owner rank (a hash of its normalized bytes), which
//!   gets every manifest line and every walked record of that path, each in
//!   the single-process order (manifest lines in file order, merged by
//!   [`crate::audit::list`]: a path listed with checksums that cannot all
//!   match is named to rank 0, which warns as a single process does; records
//!   in walk order), and classifies them with the single-process rules:
//!   matched or changed (sent on as [`Outcome::Compared`]), new (kept for
//!   the second join), unreadable or skipped (seen unless
//!   [`crate::audit::skipped_is_seen`] says missing; sent on);
//! - rank 0 merges the owners' sorted streams in walk order, as tree mode
//!   does, and prints them;
//! - the unmatched new files and missing lines meet at the owner of their
//!   digest, which pairs them with [`Joined::of`], the single-process
//!   pairing: a pair needs equal digests, so pairing inside each digest's
//!   owner, in path order, pairs as the whole does. (A manifest of
//!   64-digit lines, BLAKE3 or SHA-256, gives each file two digests; then
//!   one rank, rank 0, pairs them all.)
//!
//! The manifest is read in the line-aligned ranges of `-c` (`check.rs`,
//! with the parser's state carried across ranges); one that is not a
//! regular file is audited by rank 0 alone, as a single process would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::check::{open_range, plan_parts, set_code, set_of, Part, WHOLE};
use super::exchange::all_to_all;
use super::merge::{merge_each, send_run};
use super::record::{decode_digests, encode_digests, Outcome, Record};
use super::runs::KMerge;
use super::steal::fatal;
use super::wire::{fnv1a, Dec, Enc, WireResult};
use crate::audit::{
    is_conflicting, key, list, load_failed, loaded, matches, misformatted, skipped_is_seen,
    warn_conflicts, AlgoLines, AuditSink, Conflicts, Joined, LoadError, Unlisted,
};
use crate::check::{parse_step, CheckOpts, Reading, Step};
use crate::config::{Config, Mode};
use crate::escape::quote;
use crate::exit::Exit;
use crate::hash::{AlgoSet, Digest};
use crate::manifest::{read_error, read_line, Line};
use crate::pipeline::{Pipeline, Sink};
use crate::progress::Progress;

/// The rank that owns `key`.
fn owner(key: &[u8], ranks: usize) -> usize {
    (fnv1a(key) % ranks as u64) as usize
}

/// Sends `out[j]` to rank j; what each rank sent, decoded by `read`
/// (a malformed message ends the job).
fn exchange<T>(
    world: &SimpleCommunicator,
    out: Vec<Enc>,
    mut read: impl FnMut(&mut Dec) -> WireResult<T>,
) -> Vec<Vec<T>> {
    let got = all_to_all(world, out.into_iter().map(|e| e.buf).collect()).incoming;
    got.iter()
        .map(|buf| {
            let mut d = Dec::new(buf);
            let mut v = Vec::new();
            while !d.is_empty() {
                v.push(read(&mut d).unwrap_or_else(|e| fatal(world, &e)));
            }
            v
        })
        .collect()
}

fn encode_line(e: &mut Enc, name: &[u8], line: &Line) {
    e.bytes(name);
    e.u8(set_code(line.algos));
    e.bytes(&line.hex);
}

fn decode_line(d: &mut Dec) -> WireResult<(Vec<u8>, Line)> {
    let name = d.bytes()?.to_vec();
    let algos = set_of(d.u8()?)?;
    let hex = d.bytes()?.to_vec();
    let line = Line {
        algos,
        hex,
        name: name.clone(),
    };
    Ok((name, line))
}

fn encode_named(e: &mut Enc, name: &[u8], digests: &[Digest]) {
    e.bytes(name);
    encode_digests(e, digests);
}

fn decode_named(d: &mut Dec) -> WireResult<(Vec<u8>, Vec<Digest>)> {
    let name = d.bytes()?.to_vec();
    Ok((name, decode_digests(d)?))
}

/// What a rank tells rank 0 of its range of the manifest: the numbers of
/// its improperly formatted lines, the algorithms its lines allow (each
/// with its first line there), and a read error that ended it.
struct Loaded {
    bad: Vec<u64>,
    algos: AlgoLines,
    error: Option<String>,
}

/// `--audit` over all ranks.
pub fn run(world: &SimpleCommunicator, cfg: Config) -> Exit {
    let rank = world.rank();
    let ranks = world.size() as usize;
    let Mode::Audit {
        manifest,
        roots,
        only,
    } = &cfg.mode
    else {
        unreachable!("called for --audit only")
    };
    let (manifest, roots, only) = (manifest.clone(), roots.clone(), *only);

    // A manifest that is not a regular file (or is missing, or is `-`:
    // standard input, which only rank 0 has) is rank 0's.
    let mut size = [WHOLE];
    if rank == 0 && !crate::stdio::is_dash(&manifest) {
        if let Ok(meta) = std::fs::metadata(&manifest) {
            if meta.is_file() {
                size[0] = meta.len();
            }
        }
    }
    super::idle::broadcast_from_root(world, &mut size[..]);
    if size[0] == WHOLE {
        return if rank == 0 {
            crate::app::run_here(cfg)
        } else {
            Exit::Success
        };
    }
    let Config {
        walk,
        pipeline,
        zero,
        verbose,
        ..
    } = cfg;
    let started = std::time::Instant::now();
    let cpus = pipeline.cpus;
    let pipe = Pipeline::new(pipeline);

    // 1. The manifest: each rank parses its range and sends each line to
    //    its path's owner; rank 0 hears of the malformed lines.
    let opts = CheckOpts {
        algo: only,
        zero,
        ..CheckOpts::default()
    };
    let parts = plan_parts(world, std::slice::from_ref(&manifest), &size, &opts);
    let label = quote(&manifest);
    let how = Reading {
        hint: None,
        from_stdin: false,
        zero,
        label: label.clone(),
    };
    let mut lines_out: Vec<Enc> = (0..ranks).map(|_| Enc::default()).collect();
    let mut range = Loaded {
        bad: Vec::new(),
        algos: AlgoLines::default(),
        error: None,
    };
    if let Some(Part::Range {
        start,
        end,
        mut state,
    }) = parts.into_iter().next()
    {
        match open_range(&manifest, start, end) {
            Ok(mut r) => {
                let mut raw = Vec::new();
                loop {
                    // Bounded, as in a single process.
                    match read_line(&mut r, how.sep(), &mut raw) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            range.error = Some(read_error(&label, &e, state.no as u64 + 1));
                            break;
                        }
                    }
                    match parse_step(&mut state, &raw, &how) {
                        Step::Skip => {}
                        Step::Misformatted(no, _) => range.bad.push(no as u64),
                        Step::Line(line) => {
                            range.algos.add(line.algos, state.no as u64);
                            let name = key(&line.name);
                            let e = &mut lines_out[owner(&name, ranks)];
                            encode_line(e, &name, &line);
                            e.u64(state.no as u64);
                        }
                    }
                }
            }
            Err(e) => range.error = Some(crate::check::unopened(&manifest, &e)),
        }
    }
    let mut mine: HashMap<Vec<u8>, Line> = HashMap::new();
    let mut conflicts = Conflicts::new();
    // From every rank in rank order, each in file order.
    let numbered = |d: &mut Dec| Ok((decode_line(d)?, d.u64()?));
    for ((name, line), no) in exchange(world, lines_out, numbered).into_iter().flatten() {
        list(&mut mine, &mut conflicts, name, line, no);
    }
    let mut to_root: Vec<Enc> = (0..ranks).map(|_| Enc::default()).collect();
    {
        let e = &mut to_root[0];
        e.u64(mine.len() as u64);
        let firsts: Vec<_> = range.algos.iter().collect();
        e.u64(firsts.len() as u64);
        for (a, no) in firsts {
            e.u8(set_code(AlgoSet::of(a)));
            e.u64(no);
        }
        e.u64(range.bad.len() as u64);
        for &no in &range.bad {
            e.u64(no);
        }
        e.bool(range.error.is_some());
        e.str(range.error.as_deref().unwrap_or(""));
        e.u64(conflicts.len() as u64);
        for (name, &no) in &conflicts {
            e.bytes(name);
            e.u64(no);
        }
    }
    let heard = exchange(world, to_root, |d| {
        let lines = d.u64()?;
        let mut algos = AlgoLines::default();
        for _ in 0..d.u64()? {
            let set = set_of(d.u8()?)?;
            algos.add(set, d.u64()?);
        }
        let n = d.u64()?;
        let mut bad = Vec::new();
        for _ in 0..n {
            bad.push(d.u64()?);
        }
        let failed = d.bool()?;
        let error = d.string()?;
        let n = d.u64()?;
        let mut conflicts = Vec::new();
        for _ in 0..n {
            conflicts.push((d.bytes()?.to_vec(), d.u64()?));
        }
        Ok((lines, algos, bad, failed.then_some(error), conflicts))
    });
    // Rank 0 decides as a single process's load would: 0 to go on, else
    // the exit code; and the algorithms to compute.
    let mut verdict = [0u8, 0u8];
    if rank == 0 {
        let mut total = 0;
        let mut all = AlgoLines::default();
        let mut bad = 0u64;
        let mut error = None;
        let mut conflicts = Conflicts::new();
        for (lines, algos, nos, err, names) in heard.into_iter().flatten() {
            total += lines;
            conflicts.extend(names);
            all.merge(&algos);
            // A read error ends the load there, as in a single process.
            if error.is_none() {
                for no in nos {
                    bad += 1;
                    misformatted(&label, no);
                }
                error = err;
            }
        }
        let decided = match error {
            Some(e) => Err(LoadError::Unreadable(e)),
            None => loaded(&label, bad, total, &all),
        };
        verdict = match decided {
            Ok(all) => {
                warn_conflicts(&label, &conflicts);
                [0, set_code(all)]
            }
            Err(e) => [load_failed(e).code(), 0],
        };
    }
    super::idle::broadcast_from_root(world, &mut verdict[..]);
    match verdict[0] {
        0 => {}
        1 => return Exit::Failure,
        _ => return Exit::Usage,
    }
    let algos = set_of(verdict[1]).unwrap_or_else(|e| fatal(world, &e));

    // 2. The tree, walked and hashed by all ranks, as in tree mode. `-` is
    // standard input, as in a single process: its record, named `-`, is
    // keyed as the manifest's line `-` by the same rule ([`key`]).
    let record_key = |r: &Record| key(r.path.as_os_str().as_bytes());
    let (queue, stdin) = if rank == 0 {
        super::root_queue(roots, algos)
    } else {
        Default::default()
    };
    let records = super::walk_and_hash(
        world, &walk, &pipe, cpus, algos, queue, stdin, verbose, started,
    );

    // 3. The join by path: every record to its path's owner.
    let mut recs_out: Vec<Enc> = (0..ranks).map(|_| Enc::default()).collect();
    for r in records {
        let name = record_key(&r);
        r.encode(&mut recs_out[owner(&name, ranks)]);
    }
    let got = exchange(world, recs_out, Record::decode);
    let sources: Vec<_> = got.into_iter().map(|v| v.into_iter()).collect();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut new: BTreeMap<Vec<u8>, Vec<Digest>> = BTreeMap::new();
    let mut unlisted = Unlisted::default();
    let mut kept = Vec::new();
    for mut r in KMerge::new(sources) {
        let name = record_key(&r);
        match &r.outcome {
            Outcome::Hashed(h) => match mine.get(&name) {
                Some(line) => {
                    let matched = matches(line, &h.digests);
                    seen.insert(name);
                    r.outcome = Outcome::Compared { matched };
                }
                None => {
                    new.insert(name, h.digests.clone());
                    continue;
                }
            },
            // Listed but unreadable, or skipped but there: seen, not missing.
            Outcome::Failed { .. } => {
                seen.insert(name);
            }
            Outcome::Skipped(why) => {
                if skipped_is_seen(why) {
                    seen.insert(name);
                }
            }
            Outcome::WalkError(why) => unlisted.note(&name, why),
            Outcome::Compared { .. } => {}
        }
        kept.push(r);
    }
    // Every rank learns where the walk could not see: the lines below such
    // a path are spread over all ranks by owner.
    let mut unlisted_out: Vec<Enc> = (0..ranks).map(|_| Enc::default()).collect();
    for e in &mut unlisted_out {
        for p in unlisted.paths() {
            e.bytes(p);
        }
    }
    for p in exchange(world, unlisted_out, |d| Ok(d.bytes()?.to_vec()))
        .into_iter()
        .flatten()
    {
        unlisted.note(&p, "");
    }

    // Rank 0 prints the owners' streams in walk order.
    let progress = Progress::new(false, Arc::clone(pipe.counters()));
    let counters = Arc::clone(pipe.counters());
    let mut sink =
        (rank == 0).then(|| AuditSink::new(HashMap::new(), verbose, &progress, &counters));
    match &mut sink {
        None => send_run(world, kept.into_iter()),
        Some(sink) => {
            let mut since_flush = 0;
            merge_each(world, kept.into_iter(), |r| {
                match r.outcome {
                    Outcome::Compared { matched } => sink.compared(&record_key(&r), matched),
                    _ => r.deliver(sink, algos),
                }
                since_flush += 1;
                if since_flush == crate::pipeline::BATCH_FILES {
                    sink.batch_end();
                    since_flush = 0;
                }
            });
            sink.batch_end();
        }
    }

    // 4. The join by digest: the new files and missing lines that may pair.
    let by_digest = |hex: &[u8]| {
        if algos.len() == 1 {
            owner(hex, ranks)
        } else {
            0
        }
    };
    let mut pairs_out: Vec<Enc> = (0..ranks).map(|_| Enc::default()).collect();
    // A conflicting line pairs with nothing: missing here, not sent.
    let mut conflicted = Vec::new();
    for (name, line) in mine
        .iter()
        .filter(|(k, _)| !seen.contains(*k) && !unlisted.covers(k))
    {
        if is_conflicting(line) {
            conflicted.push(name.clone());
            continue;
        }
        let e = &mut pairs_out[by_digest(&line.hex)];
        e.u8(0);
        encode_line(e, name, line);
    }
    for (name, digests) in &new {
        let hex = digests.first().map(|d| d.to_hex()).unwrap_or_default();
        let e = &mut pairs_out[by_digest(hex.as_bytes())];
        e.u8(1);
        encode_named(e, name, digests);
    }
    let mut missing: BTreeMap<Vec<u8>, Line> = BTreeMap::new();
    let mut new: BTreeMap<Vec<u8>, Vec<Digest>> = BTreeMap::new();
    for side in exchange(world, pairs_out, |d| match d.u8()? {
        0 => decode_line(d).map(Ok),
        1 => decode_named(d).map(Err),
        k => Err(format!("malformed message: join side {k}")),
    })
    .into_iter()
    .flatten()
    {
        match side {
            Ok((name, line)) => {
                missing.insert(name, line);
            }
            Err((name, digests)) => {
                new.insert(name, digests);
            }
        }
    }
    let mut joined = Joined::of(missing.iter().map(|(k, v)| (k.clone(), v)).collect(), &new);
    joined.missing.extend(conflicted);

    // Rank 0 gathers the pairings and prints them in path order.
    let mut joined_out: Vec<Enc> = (0..ranks).map(|_| Enc::default()).collect();
    {
        let e = &mut joined_out[0];
        for n in &joined.new {
            e.u8(0);
            e.bytes(n);
        }
        for (old, n) in &joined.moved {
            e.u8(1);
            e.bytes(old);
            e.bytes(n);
        }
        for n in &joined.missing {
            e.u8(2);
            e.bytes(n);
        }
    }
    let all = exchange(world, joined_out, |d| {
        let kind = d.u8()?;
        let a = d.bytes()?.to_vec();
        let b = if kind == 1 {
            d.bytes()?.to_vec()
        } else {
            Vec::new()
        };
        if kind > 2 {
            return Err(format!("malformed message: pairing kind {kind}"));
        }
        Ok((kind, a, b))
    });
    let Some(sink) = sink else {
        return Exit::Success;
    };
    let mut joined = Joined {
        new: Vec::new(),
        moved: Vec::new(),
        missing: Vec::new(),
    };
    for (kind, a, b) in all.into_iter().flatten() {
        match kind {
            0 => joined.new.push(a),
            1 => joined.moved.push((a, b)),
            _ => joined.missing.push(a),
        }
    }
    joined.new.sort();
    joined.moved.sort_by(|x, y| x.1.cmp(&y.1));
    joined.missing.sort();
    sink.report(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_spread_and_agree() {
        let mut hit = [0usize; 4];
        for i in 0..1000 {
            let k = format!("dir/file{i}");
            let o = owner(k.as_bytes(), 4);
            assert_eq!(o, owner(k.as_bytes(), 4));
            hit[o] += 1;
        }
        assert!(hit.iter().all(|&n| n > 150), "{hit:?}");
        assert_eq!(owner(b"anything", 1), 0);
    }

    #[test]
    fn a_missing_path_is_normalized_before_it_is_owned() {
        assert_eq!(owner(&key(b"./a/b"), 3), owner(&key(b"a/b"), 3));
    }
}
