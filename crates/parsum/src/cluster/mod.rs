//! parsum over MPI (`--features mpi`): the same command and the same bytes
//! on rank 0's stdout, from 1 to N ranks (`mpirun -np N parsum ARGS`).
//!
//! Invariants:
//! - Without a launcher in the environment ([`launched`] is false) none of
//!   this runs and MPI is never initialised: the MPI build is then the
//!   single-machine parsum.
//! - Under a launcher, MPI is initialised funneled: only the main thread of
//!   each rank calls MPI; hashing runs on the rank's own pools.
//! - Only rank 0 writes to stdout (or `-o FILE`), and every rank ends with
//!   rank 0's exit status.
//!
//! Tree mode runs in three phases: the distributed walk with work stealing
//! ([`steal`]), each rank hashing what it took ([`hasher`]); each rank
//! sorting its [`record`]s; rank 0 merging the sorted runs into the output
//! ([`merge`]). `-c` splits each manifest into byte ranges, one per rank
//! ([`check`]). `--audit`, `--update` and `--verify` run on rank 0 alone
//! (the other ranks wait), so their output is the single-process output too. The protocol is
//! written out in docs/many-nodes.md.

pub mod audit;
pub mod check;
pub mod devmap;
pub mod exchange;
pub mod hasher;
pub mod idle;
pub mod links;
pub mod merge;
pub mod record;
pub mod runs;
pub mod steal;
pub mod wire;
pub mod work;

use std::path::PathBuf;
use std::sync::Arc;

use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use crate::config::{Config, Mode};
use crate::exit::Exit;
use crate::hash::AlgoSet;
use crate::output::TreeSink;
use crate::pipeline::Pipeline;
use crate::progress::{message, Progress};

pub use crate::launcher::{launched, LAUNCHER_VARS};

/// A test hook, read only under a launcher: rank 1 aborts after hashing
/// this many files, or at the end of the walk if it hashed fewer, as a
/// rank that dies mid-run.
pub const ABORT_HOOK_VAR: &str = "PARSUM_TEST_MPI_ABORT_AFTER";

/// A test hook, read only under a launcher: how many records a rank keeps
/// in memory before it writes a sorted run to disk (default
/// [`runs::SPILL_AT`]), so tests reach the spilling with small trees.
pub const SPILL_HOOK_VAR: &str = "PARSUM_TEST_MPI_SPILL_AT";

/// A test hook, read only under a launcher: how many bytes a rank sends in
/// one round of an all-to-all exchange (default [`exchange::ROUND_BYTES`]),
/// so tests reach many rounds with few hard links.
pub const EXCHANGE_HOOK_VAR: &str = "PARSUM_TEST_MPI_EXCHANGE_BYTES";

/// Runs `cfg` as one rank of the job.
pub fn run(cfg: Config) -> Exit {
    let Some((universe, threading)) = mpi::initialize_with_threading(Threading::Funneled) else {
        message("parsum: MPI could not be initialised (it already was)");
        return Exit::Failure;
    };
    if threading < Threading::Funneled {
        message("parsum: this MPI library cannot run threads beside MPI (MPI_THREAD_FUNNELED)");
        return Exit::Failure;
    }
    let exit = run_rank(&universe, cfg);
    // Every rank ends with rank 0's status (a usage error, a failed file).
    let world = universe.world();
    let mut code = exit.code();
    idle::broadcast_from_root(&world, &mut code);
    match code {
        0 => Exit::Success,
        1 => Exit::Failure,
        _ => Exit::Usage,
    }
}

fn run_rank(universe: &Universe, cfg: Config) -> Exit {
    let world = universe.world();
    match cfg.mode {
        Mode::Tree { .. } => tree(&world, cfg),
        Mode::Check { .. } => check::run(&world, cfg),
        Mode::Audit { .. } => audit::run(&world, cfg),
        // Not distributed (yet): rank 0 runs them as a single process would.
        Mode::Update { .. } | Mode::Verify { .. } => {
            if world.rank() == 0 {
                crate::app::run_here(cfg)
            } else {
                Exit::Success
            }
        }
    }
}

/// The test hook's value, on rank 1 only.
fn abort_hook(rank: i32) -> Option<u64> {
    if rank != 1 {
        return None;
    }
    let v = std::env::var(ABORT_HOOK_VAR).ok()?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            message(&format!(
                "parsum: ignoring {ABORT_HOOK_VAR}={v:?}: not a number"
            ));
            None
        }
    }
}

/// Ends this rank as a crash would (the test hook).
pub(crate) fn test_abort(files: u64) -> ! {
    message(&format!(
        "parsum: rank 1: aborting after {files} file(s), as {ABORT_HOOK_VAR} asks"
    ));
    std::process::abort()
}

/// Tree mode over all ranks.
fn tree(world: &SimpleCommunicator, cfg: Config) -> Exit {
    let Config {
        mode,
        walk,
        pipeline,
        zero,
        verbose,
        progress,
        summary,
    } = cfg;
    let Mode::Tree {
        roots,
        algo,
        format,
        output,
    } = mode
    else {
        unreachable!("called for tree mode only")
    };
    let rank = world.rank();
    let algos = AlgoSet::of(algo);
    // The clock of the summary starts here, as in a single-process run.
    let cpus = pipeline.cpus;
    let pipe = Pipeline::new(pipeline);
    let progress = Progress::new(progress && rank == 0, Arc::clone(pipe.counters()));
    let started = std::time::Instant::now();

    // Rank 0 opens the output first; a bad -o FILE stops every rank.
    let mut out = None;
    let mut ok = 1u8;
    if rank == 0 {
        match crate::app::open_output(output.as_deref()) {
            Ok(o) => out = Some(o),
            Err(_) => ok = 0,
        }
    }
    idle::broadcast_from_root(world, &mut ok);
    if ok == 0 {
        return Exit::Failure;
    }

    let (queue, stdin) = if rank == 0 {
        root_queue(roots, algos)
    } else {
        Default::default()
    };
    let records = walk_and_hash(
        world, &walk, &pipe, cpus, algos, queue, stdin, verbose, started,
    );

    if rank != 0 {
        merge::send_run(world, records);
        return Exit::Success;
    }
    let counters = Arc::clone(pipe.counters());
    let mut sink = TreeSink::new(format, algo, zero, verbose, &progress, &counters);
    sink.out = out.expect("rank 0 opened the output");
    merge::merge_into(world, records, &mut sink, algos);
    crate::app::finish_tree(&mut sink, &progress, summary)
}

/// Standard input's records (a PATH `-`): being hashed beside rank 0's
/// walk, or already hashed; none on other ranks.
#[derive(Default)]
pub(super) struct StdinRecords {
    ready: Vec<record::Record>,
    pending: Option<std::thread::JoinHandle<Vec<record::Record>>>,
}

impl StdinRecords {
    /// The records, once standard input has ended.
    fn wait(self) -> Vec<record::Record> {
        match self.pending.map(std::thread::JoinHandle::join) {
            None => self.ready,
            Some(Ok(records)) => records,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }
}

/// The record of root `root`, standard input (a PATH `-`, given at most
/// once: `cli.rs`).
fn hash_dash(root: u32, algos: AlgoSet) -> Vec<record::Record> {
    vec![record::Record {
        root,
        path: PathBuf::from("-"),
        outcome: record::Outcome::of_hash(crate::hash::hash_stdin(algos)),
    }]
}

/// Rank 0's start of a walk of `roots` (tree mode and `--audit`): the
/// queue of their walks, and the record of a `-`, standard input (only
/// rank 0 has the user's), hashed on a thread of its own. Rank 0 walks
/// meanwhile: the other ranks, asking it for work, no longer wait for a
/// slow standard input in the walk's loop (which naps only briefly,
/// `steal.rs`), but after the walk, with [`idle`]'s naps.
fn root_queue(roots: Vec<PathBuf>, algos: AlgoSet) -> (work::Queue, StdinRecords) {
    let mut queue = work::Queue::default();
    let mut dash = None;
    for (i, root) in roots.into_iter().enumerate() {
        let i = i as u32;
        if crate::stdio::is_dash(&root) {
            dash = Some(i);
        } else {
            queue.dirs.push_front(work::Dir::Root(i, root));
        }
    }
    let Some(dash) = dash else {
        return (queue, StdinRecords::default());
    };
    let thread = std::thread::Builder::new()
        .name("parsum-stdin".into())
        .spawn(move || hash_dash(dash, algos));
    let stdin = match thread {
        Ok(t) => StdinRecords {
            ready: Vec::new(),
            pending: Some(t),
        },
        // No thread to spare: read it here, before the walk.
        Err(_) => StdinRecords {
            ready: hash_dash(dash, algos),
            pending: None,
        },
    };
    (queue, stdin)
}

/// The distributed walk of `queue` and the hashing of what it finds, on
/// every rank (tree mode and `--audit`): this rank's records, `extra`
/// (standard input's, waited for after this rank's hashing) among them,
/// sorted in output order.
#[allow(clippy::too_many_arguments)]
fn walk_and_hash(
    world: &SimpleCommunicator,
    walk: &crate::walk::WalkOpts,
    pipe: &Arc<Pipeline>,
    cpus: usize,
    algos: AlgoSet,
    queue: work::Queue,
    extra: StdinRecords,
    verbose: bool,
    started: std::time::Instant,
) -> runs::KMerge<Box<dyn Iterator<Item = record::Record> + Send>> {
    let rank = world.rank();
    let cap = hasher::in_flight_for(world.size(), cpus);
    let hook = abort_hook(rank);
    let spill_at = std::env::var(SPILL_HOOK_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(runs::SPILL_AT);
    let hasher = hasher::LocalHasher::start(
        pipe,
        algos,
        cap,
        spill_at,
        hook.map(|after| hasher::AbortHook { after }),
    );
    let steal::Walked {
        notes,
        links,
        hasher,
        stats,
    } = steal::Walk::new(world, walk, queue, hasher, cap).run();
    if hook.is_some() {
        // Rank 1 hashed fewer files than the hook's count: die here.
        test_abort(stats.files);
    }
    let walked = started.elapsed();
    let (linked, link_stats) = links::resolve(world, links, algos, cpus);
    let mut records = hasher.finish();
    let hashed = started.elapsed();
    for r in notes.into_iter().chain(extra.wait()).chain(linked) {
        records.push(r);
    }
    let spilled = records.spilled_runs();
    let records = records.into_sorted();
    if verbose {
        message(&format!(
            "parsum: rank {rank} of {} ({cpus} CPU(s)): {} file(s), {} byte(s) hashed; \
             {} director(ies) listed; \
             {} share(s) stolen in {} request(s); {} hard-linked name(s), {} linked file(s) \
             hashed in {} exchange round(s); walk over at {:.3} s, hashing at {:.3} s; {spilled} sorted run(s) on disk",
            world.size(),
            stats.files,
            stats.bytes,
            stats.dirs,
            stats.steals,
            stats.requests,
            link_stats.names,
            link_stats.hashed,
            link_stats.rounds,
            walked.as_secs_f64(),
            hashed.as_secs_f64(),
        ));
    }

    records
}
