//! The resolved configuration of a run: [`crate::cli::Args`] (as close to
//! the flags as possible) become a [`Config`] with a [`Mode`] once, before
//! anything runs. Every cross-flag rule and every usage error is decided
//! here, so the modes never see an inconsistent combination.

use std::path::PathBuf;
use std::sync::Arc;

use crate::check::CheckOpts;
use crate::cli::Args;
use crate::device::DeviceJobs;
use crate::hash::{Algo, Splitter};
use crate::output::Format;
use crate::pipeline::Settings;
use crate::progress::Counters;
use crate::walk::{Excludes, WalkOpts};

/// Files at least this large are hashed in parallel inside (BLAKE3 only).
const SPLIT_THRESHOLD: u64 = 64 << 20;
/// Subtree size for split files.
const SPLIT_LEAF: u64 = 8 << 20;

/// What the run does.
pub enum Mode {
    /// Hash the trees under `roots` (`-` is standard input).
    Tree {
        roots: Vec<PathBuf>,
        algo: Algo,
        format: Format,
        /// `-o FILE`: written whole or not at all (`outfile.rs`).
        output: Option<PathBuf>,
    },
    /// `-c`: verify the `manifests` (`-` is standard input).
    Check {
        manifests: Vec<PathBuf>,
        opts: CheckOpts,
    },
    /// `--audit`: compare the trees under `roots` with `manifest`.
    Audit {
        manifest: PathBuf,
        roots: Vec<PathBuf>,
        /// `-a`: the manifest's algorithm, when its digest length is ambiguous.
        only: Option<Algo>,
    },
    /// `--update`: hash the trees under `roots`, rewrite `state`.
    Update {
        state: PathBuf,
        roots: Vec<PathBuf>,
        /// `-a`; else the state's own algorithm.
        algo: Option<Algo>,
        rehash: bool,
    },
    /// `--verify`: read every file `state` lists again.
    Verify {
        state: PathBuf,
        /// `-a`: for 64-digit lines of a manifest state.
        only: Option<Algo>,
        /// `--quiet`: no line for an OK file.
        quiet: bool,
    },
}

/// Everything a run needs, resolved.
pub struct Config {
    pub mode: Mode,
    pub walk: WalkOpts,
    /// The pipeline's settings (readers per device, splitting, counters).
    pub pipeline: Settings,
    /// `-z`: NUL-terminated lines, names not escaped.
    pub zero: bool,
    pub verbose: bool,
    /// Draw the progress bar (if stderr is a terminal).
    pub progress: bool,
    pub summary: bool,
}

impl Config {
    /// Resolves the arguments; an `Err` is a usage error (exit status 2).
    pub fn from_args(args: Args) -> Result<Config, String> {
        args.validate()?;
        let device_jobs = args
            .device_jobs
            .iter()
            .map(|s| DeviceJobs::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let excludes = Excludes::new(&args.exclude)?;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let splitter =
            (cpus > 1).then(|| Arc::new(Splitter::new(cpus, SPLIT_THRESHOLD, SPLIT_LEAF)));
        let pipeline = Settings {
            jobs: args.jobs.map(|j| j as usize),
            device_jobs,
            cpus,
            verbose: args.verbose > 0,
            splitter,
            counters: Arc::new(Counters::default()),
        };
        let only = args.algo.map(Algo::from);
        let or = |default: &str| {
            if args.paths.is_empty() {
                vec![PathBuf::from(default)]
            } else {
                args.paths.clone()
            }
        };
        let mode = if args.check {
            Mode::Check {
                manifests: or("-"),
                opts: CheckOpts {
                    quiet: args.quiet,
                    status: args.status,
                    strict: args.strict,
                    warn: args.warn,
                    ignore_missing: args.ignore_missing,
                    zero: args.zero,
                    algo: only,
                },
            }
        } else if let Some(state) = &args.update {
            Mode::Update {
                state: state.clone(),
                roots: or("."),
                algo: only,
                rehash: args.rehash,
            }
        } else if let Some(state) = &args.verify {
            Mode::Verify {
                state: state.clone(),
                only,
                quiet: args.quiet,
            }
        } else if let Some(manifest) = &args.audit {
            Mode::Audit {
                manifest: manifest.clone(),
                roots: or("."),
                only,
            }
        } else {
            Mode::Tree {
                roots: or("."),
                algo: args.algo(),
                format: if args.json {
                    Format::Json
                } else if args.tag {
                    Format::Tag
                } else {
                    Format::Gnu
                },
                // `-o -` is standard output, as `-c -` is standard input.
                output: args.output.clone().filter(|o| !crate::stdio::is_dash(o)),
            }
        };
        Ok(Config {
            // `--status` prints nothing at all, not even a bar.
            progress: !args.no_progress && !args.status,
            summary: !args.no_summary,
            zero: args.zero,
            verbose: args.verbose > 0,
            walk: WalkOpts {
                follow: args.follow,
                one_file_system: args.one_file_system,
                max_depth: args.max_depth,
                excludes,
            },
            pipeline,
            mode,
        })
    }
}
