//! The run of one command: arguments → [`Config`] → one run per [`Mode`] →
//! an [`Exit`]. Tree hashing lives here; `--check`, `--audit`, `--update`
//! and `--verify` have modules of their own.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::Args;
use crate::config::{Config, Mode};
use crate::exit::Exit;
use crate::hash::{Algo, AlgoSet};
use crate::launcher;
use crate::output::{Format, Note, Out, TreeSink};
use crate::pipeline::{hash_stdin_item, spawn_walk_with, Lookup, Pipeline, Prior, Sink, Stream};
use crate::progress::{message, Progress};

fn usage_error(msg: &str) -> Exit {
    let text = format!("parsum: {msg}\nTry 'parsum --help' for more information.");
    if launcher::silent_rank() {
        launcher::silent_rank_fails(&text);
    } else {
        message(&text);
    }
    Exit::Usage
}

/// Parses the command line and runs it.
pub fn run() -> Exit {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            // --help and --version are not errors.
            if !e.use_stderr() {
                if !launcher::silent_rank() {
                    let _ = e.print();
                }
                return Exit::Success;
            }
            if launcher::silent_rank() {
                launcher::silent_rank_fails(&e.render().to_string());
            } else {
                let _ = e.print();
            }
            return Exit::Usage;
        }
    };
    match Config::from_args(args) {
        Ok(cfg) => match rank_descriptor_named(&cfg) {
            Some(msg) => usage_error(&msg),
            None => run_config(cfg),
        },
        Err(msg) => usage_error(&msg),
    }
}

/// Under an MPI launcher, a path that names one of the process's own
/// descriptors past the standard three (`/dev/fd/3`, `/proc/self/fd/4`,
/// or a symbolic link to one)
/// names the rank's, not the shell's: the launcher passes on only 0, 1
/// and 2, and under Open MPI descriptor 3 is its own channel, which a read
/// waited on for good (`-c /dev/fd/3 3<SUMS` hung). Refused, before any
/// work, as a usage error that says what to give instead.
fn rank_descriptor_named(cfg: &Config) -> Option<String> {
    if !launcher::launched() {
        return None;
    }
    let mut paths: Vec<&std::path::Path> = Vec::new();
    match &cfg.mode {
        Mode::Tree { roots, output, .. } => {
            paths.extend(roots.iter().map(PathBuf::as_path));
            paths.extend(output.as_deref());
        }
        Mode::Check { manifests, .. } => paths.extend(manifests.iter().map(PathBuf::as_path)),
        Mode::Audit {
            manifest, roots, ..
        } => {
            paths.push(manifest);
            paths.extend(roots.iter().map(PathBuf::as_path));
        }
        Mode::Update { state, roots, .. } => {
            paths.push(state);
            paths.extend(roots.iter().map(PathBuf::as_path));
        }
        Mode::Verify { state, .. } => paths.push(state),
    }
    let path = paths
        .into_iter()
        .find(|p| crate::outfile::descriptor_named(p).is_some_and(|fd| fd > 2))?;
    Some(format!(
        "{}: under an MPI launcher this names a descriptor of the rank, not of your \
         shell (only standard input, output and error are passed on); give a file",
        crate::escape::quote(path)
    ))
}

/// The command line as [`Args`]. Under an MPI launcher clap never colours:
/// the launcher gives each rank a pseudo-terminal for stdout even when its
/// own stdout is a pipe, and the bytes must be a single process's.
fn parse_args() -> Result<Args, clap::Error> {
    use clap::{ColorChoice, CommandFactory, FromArgMatches};
    let mut cmd = Args::command();
    if launcher::launched() {
        cmd = cmd.color(ColorChoice::Never);
    }
    let mut m = cmd.try_get_matches()?;
    Args::from_arg_matches_mut(&mut m)
}

/// Runs a resolved configuration: here, or across the ranks of an MPI job
/// when the binary was built with `--features mpi` and started by a
/// launcher (`cluster/`).
pub fn run_config(cfg: Config) -> Exit {
    raise_open_files_limit();
    #[cfg(feature = "mpi")]
    if launcher::launched() {
        return crate::cluster::run(cfg);
    }
    #[cfg(not(feature = "mpi"))]
    {
        // Every rank would hash the whole tree and print it again. A rank
        // past 0 is one of several even where the launcher does not say how
        // many (PMIx sets no size).
        let several = match (launcher::size(), launcher::rank()) {
            (Some(n), _) if n > 1 => Some(n.to_string()),
            (_, Some(r)) if r > 0 => Some("several".to_owned()),
            _ => None,
        };
        if let Some(n) = several {
            return usage_error(&format!(
                "started by an MPI launcher as one of {n} ranks, but this parsum was built \
                 without MPI; build it with `cargo build --release -p parsum --features mpi`, \
                 or run it without the launcher (or with one rank)"
            ));
        }
    }
    run_here(cfg)
}

/// Runs a resolved configuration in this process alone.
pub fn run_here(cfg: Config) -> Exit {
    let Config {
        mode,
        walk,
        pipeline,
        zero,
        verbose,
        progress,
        summary,
    } = cfg;
    let pipe = Pipeline::new(pipeline);
    let progress = Progress::new(progress, Arc::clone(pipe.counters()));
    match mode {
        Mode::Check { manifests, opts } => crate::check::run(&pipe, manifests, opts, &progress),
        Mode::Audit {
            manifest,
            roots,
            only,
        } => {
            let audit = crate::audit::AuditArgs {
                manifest: &manifest,
                roots,
                only,
                zero,
                verbose,
            };
            crate::audit::run(&pipe, audit, walk, &progress)
        }
        Mode::Update {
            state,
            roots,
            algo,
            rehash,
        } => {
            let update = crate::update::UpdateArgs {
                state,
                roots,
                algo,
                rehash,
                verbose,
            };
            crate::update::run(&pipe, update, walk, &progress)
        }
        Mode::Verify { state, only, quiet } => {
            crate::verify::run(&pipe, state, only, quiet, &progress)
        }
        Mode::Tree {
            roots,
            algo,
            format,
            output,
        } => {
            let tree = Tree {
                roots,
                algo,
                format,
                output,
                zero,
                verbose,
                summary,
            };
            tree.run(&pipe, Arc::new(walk), &progress)
        }
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

/// A PATH argument of tree mode or `--audit`: a walk, or `-` for standard
/// input (hashed as the file `-`, at its place in argument order).
pub(crate) enum Root {
    Walk(Stream<(), Note>),
    Stdin,
}

impl Root {
    /// One producer per root, each on its own thread: roots on different
    /// devices hash at the same time; output follows argument order.
    pub(crate) fn spawn_all(
        pipe: &Arc<Pipeline>,
        roots: Vec<PathBuf>,
        walk: &Arc<crate::walk::WalkOpts>,
        algos: AlgoSet,
        lookup: Option<Lookup>,
    ) -> Vec<Root> {
        roots
            .into_iter()
            .map(|root| {
                if crate::stdio::is_dash(&root) {
                    Root::Stdin
                } else {
                    let walk = Arc::clone(walk);
                    Root::Walk(spawn_walk_with(pipe, root, walk, algos, lookup.clone()))
                }
            })
            .collect()
    }

    /// Gives `sink` this root's results: the walk's, or standard input's,
    /// read here.
    pub(crate) fn drain(self, sink: &mut impl Sink<(), Note>, algos: AlgoSet) {
        match self {
            Root::Walk(s) => s.drain(sink),
            Root::Stdin => {
                let (item, r) = hash_stdin_item(algos, ());
                sink.done(item, r);
                sink.batch_end();
            }
        }
    }
}

/// Tree mode: hash every root, print lines in order.
struct Tree {
    roots: Vec<PathBuf>,
    algo: Algo,
    format: Format,
    output: Option<PathBuf>,
    zero: bool,
    verbose: bool,
    summary: bool,
}

/// Where tree mode writes: standard output, or `-o FILE` (created before
/// any work, so a bad FILE costs nothing; its error is already reported).
pub(crate) fn open_output(output: Option<&std::path::Path>) -> Result<Out, Exit> {
    match output {
        None => Ok(Out::new()),
        Some(p) => Out::to_file(p).map_err(|m| {
            message(&m);
            Exit::Failure
        }),
    }
}

/// The end of tree mode, once every result went through `sink`: write the
/// rest (renaming `-o FILE` into place), the symlink note and the summary.
pub(crate) fn finish_tree(sink: &mut TreeSink, progress: &Progress, summary: bool) -> Exit {
    let written = sink.out.finish();
    progress.finish();
    let t = &sink.tally;
    if t.symlinks > 0 && !sink.verbose {
        message(&format!(
            "parsum: skipped {} symbolic link(s); use --follow to hash their targets",
            t.symlinks
        ));
    }
    if summary {
        message(&t.summary(progress.elapsed().as_secs_f64()));
    }
    Exit::failed_if(t.errors > 0).and(written)
}

impl Tree {
    fn run(
        self,
        pipe: &Arc<Pipeline>,
        walk: Arc<crate::walk::WalkOpts>,
        progress: &Progress,
    ) -> Exit {
        let out = match open_output(self.output.as_deref()) {
            Ok(out) => out,
            Err(exit) => return exit,
        };
        let algos = AlgoSet::of(self.algo);
        // `-o FILE` inside a tree: FILE (the one being replaced) and the
        // temporary files are the output, not data.
        let not_data = out.not_data();
        let lookup: Option<Lookup> = (!not_data.is_empty()).then(|| {
            Arc::new(move |path: &std::path::Path, st: &crate::hash::FileStat| {
                if not_data.contains(path, (st.dev, st.ino)) {
                    Prior::Ignore
                } else {
                    Prior::Unknown
                }
            }) as Lookup
        });
        let streams = Root::spawn_all(pipe, self.roots, &walk, algos, lookup);
        let counters = Arc::clone(pipe.counters());
        let mut sink = TreeSink::new(
            self.format,
            self.algo,
            self.zero,
            self.verbose,
            progress,
            &counters,
        );
        sink.out = out;
        for s in streams {
            if sink.stopped() {
                break;
            }
            s.drain(&mut sink, algos);
        }
        finish_tree(&mut sink, progress, self.summary)
    }
}
