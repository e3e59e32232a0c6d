//! The run of one command: parse arguments, build the pipeline, choose the
//! mode (hash a tree, `--check`, `--audit`) and turn the outcome into an exit
//! status (0 fine, 1 a file failed, 2 usage error).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use crate::check::CheckOpts;
use crate::cli::Args;
use crate::device::DeviceJobs;
use crate::hash::Splitter;
use crate::output::{Format, Note, TreeSink};
use crate::pipeline::{spawn_walk, Config, Item, Pipeline, Sink, Stream};
use crate::progress::{message, Counters, Progress};
use crate::walk::{Excludes, WalkOpts};

/// Files at least this large are hashed in parallel inside (BLAKE3 only).
const SPLIT_THRESHOLD: u64 = 64 << 20;
/// Subtree size for split files.
const SPLIT_LEAF: u64 = 8 << 20;

fn usage_error(msg: &str) -> u8 {
    message(&format!(
        "parsum: {msg}\nTry 'parsum --help' for more information."
    ));
    2
}

/// A PATH argument in tree mode: a walk, or `-` for standard input.
enum Root {
    Walk(Stream<(), Note>),
    Stdin,
}

/// The item that stands for standard input (`-`), as sha256sum names it.
fn stdin_item(algos: &'static [crate::hash::Algo]) -> Item<()> {
    Item {
        path: PathBuf::from("-"),
        dir: None,
        dev: 0,
        ino: 0,
        nlink: 1,
        size: 0,
        mtime: 0,
        mtime_nsec: 0,
        no_follow: false,
        algos,
        tag: (),
    }
}

/// Raises the soft limit on open files to the hard one: the walk holds one
/// descriptor per directory level (see `walk.rs`), and a tree deeper than
/// the usual soft limit of 1024 must still be walked whole.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let max = l.maximum.unwrap_or(1 << 20).min(1 << 20);
    if l.current.is_some_and(|c| c < max) {
        // Failing leaves the limit as it was; a too-deep walk then reports
        // "Too many open files" for the directories it cannot open.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(max),
                maximum: l.maximum,
            },
        );
    }
}

pub fn run() -> u8 {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if let Err(msg) = args.validate() {
        return usage_error(&msg);
    }
    raise_open_files_limit();
    let device_jobs = match args
        .device_jobs
        .iter()
        .map(|s| DeviceJobs::parse(s))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(d) => d,
        Err(msg) => return usage_error(&msg),
    };
    let excludes = match Excludes::new(&args.exclude) {
        Ok(x) => x,
        Err(msg) => return usage_error(&msg),
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let counters = Arc::new(Counters::default());
    let splitter = (cpus > 1).then(|| Arc::new(Splitter::new(cpus, SPLIT_THRESHOLD, SPLIT_LEAF)));
    let pipe = Pipeline::new(Config {
        jobs: args.jobs.map(|j| j as usize),
        device_jobs,
        cpus,
        verbose: args.verbose > 0,
        splitter,
        counters: Arc::clone(&counters),
    });
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(if args.check { "-" } else { "." })]
    } else {
        args.paths.clone()
    };

    if args.check {
        let opts = CheckOpts {
            quiet: args.quiet,
            status: args.status,
            strict: args.strict,
            warn: args.warn,
            ignore_missing: args.ignore_missing,
            zero: args.zero,
            algo: args.algo.map(Into::into),
        };
        let progress = Progress::new(!args.no_progress && !args.status);
        return crate::check::run(&pipe, paths, opts, &progress) as u8;
    }

    let walk_opts = WalkOpts {
        follow: args.follow,
        one_file_system: args.one_file_system,
        max_depth: args.max_depth,
        excludes,
    };
    let progress = Progress::new(!args.no_progress);
    if let Some(manifest) = &args.audit {
        let paths = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths.clone()
        };
        let audit = crate::audit::AuditArgs {
            manifest,
            roots: paths,
            only: args.algo.map(Into::into),
            zero: args.zero,
            verbose: args.verbose > 0,
        };
        let code = crate::audit::run(&pipe, audit, walk_opts, &progress);
        return code as u8;
    }

    let algo = args.algo();
    let format = if args.json {
        Format::Json
    } else if args.tag {
        Format::Tag
    } else {
        Format::Gnu
    };
    // One producer per root, each on its own thread: roots on different
    // devices hash at the same time; output follows argument order.
    let walk_opts = Arc::new(walk_opts);
    let streams: Vec<_> = paths
        .into_iter()
        .map(|root| {
            if root.as_os_str() == "-" {
                Root::Stdin
            } else {
                Root::Walk(spawn_walk(&pipe, root, Arc::clone(&walk_opts), algo.only()))
            }
        })
        .collect();
    let mut sink = TreeSink::new(
        format,
        algo,
        args.zero,
        args.verbose > 0,
        &progress,
        &counters,
    );
    for s in streams {
        match s {
            Root::Walk(s) => s.drain(&mut sink),
            Root::Stdin => {
                let r = crate::hash::hash_reader(&mut std::io::stdin().lock(), algo.only());
                sink.done(stdin_item(algo.only()), r);
                sink.flush();
            }
        }
    }
    sink.flush();
    progress.finish();
    let t = &sink.tally;
    if t.symlinks > 0 && args.verbose == 0 {
        message(&format!(
            "parsum: skipped {} symbolic link(s); use --follow to hash their targets",
            t.symlinks
        ));
    }
    if !args.no_summary {
        message(&t.summary(progress.elapsed().as_secs_f64()));
    }
    if let Some(e) = &sink.write_error {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            message(&format!(
                "parsum: write error: {}",
                crate::hash::os_message(e)
            ));
        }
        return 1;
    }
    if t.errors > 0 {
        1
    } else {
        0
    }
}
