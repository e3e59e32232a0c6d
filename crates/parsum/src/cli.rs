//! Command-line interface: the clap-derived argument struct and its checks.
//!
//! Everything the user can type is declared here, with help text written for
//! people. Cross-argument rules that clap cannot express (for example "`--audit`
//! takes no `--check`") are checked in [`Args::validate`], which returns a usage
//! error that `main` turns into exit code 2.

use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};

use crate::hash::Algo;
use crate::stdio::is_dash;

const EXAMPLES: &str = "\
Examples:
  parsum                          checksum the current directory (BLAKE3)
  parsum -a sha256 src > SHA256SUMS
                                  write a manifest that `sha256sum -c` verifies
  parsum -c SHA256SUMS            verify it again (also reads b3sum and --tag manifests)
  parsum --audit SUMS.b3 data/    what changed, appeared, vanished or moved since SUMS.b3
  parsum --update .state data/    record the tree; the next update reads only changed files
  parsum --verify .state          re-read everything: OK, MODIFIED, CORRUPTED, MISSING
  parsum --json --exclude '*.tmp' --exclude target .
                                  JSON lines with size and mtime, skipping temp files
  parsum -v --device-jobs sda=1 /mnt/hdd /home
                                  two disks at once, the HDD read sequentially

Output is sorted by path and streamed, whatever the number of threads.
Exit status: 0 all good, 1 some file could not be read, failed its check or
changed during the read, 2 usage error (or, for --update/--verify, a bad STATE).
--update exits 0 when the state was written, whatever changed; --verify exits 1
when any file is not OK.";

/// Recursively checksum files, in parallel per device, in a stable order.
///
/// parsum walks each PATH (default: the current directory), hashes every
/// regular file and prints one line per file in the format of sha256sum /
/// b3sum, sorted by path. Symbolic links are not followed unless --follow is
/// given (links named on the command line are followed); FIFOs, sockets and
/// device nodes are reported and never opened.
#[derive(Debug, Parser)]
#[command(
    name = "parsum",
    version,
    after_help = EXAMPLES,
    max_term_width = 100,
    args_override_self = true
)]
pub struct Args {
    /// Files or directories to checksum [default: .]; with -c, manifests
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Hash algorithm. blake3 is the fastest; sha256 matches `sha256sum`
    #[arg(short = 'a', long = "algo", value_enum, value_name = "ALGO")]
    pub algo: Option<AlgoArg>,

    /// Print BSD-style lines: `BLAKE3 (path) = hash`
    #[arg(long, conflicts_with = "json")]
    pub tag: bool,

    /// Print JSON lines: {"path", "size", "mtime", "mtime_nsec", "hash", "algo"}
    #[arg(long)]
    pub json: bool,

    /// Write the checksums to FILE instead of standard output (`-`: standard
    /// output). FILE appears only once complete (written to a temporary file
    /// beside it, then renamed)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// End each output line with NUL instead of newline, and do not escape names
    #[arg(short = 'z', long = "zero")]
    pub zero: bool,

    /// Skip files and directories whose name (or, if GLOB holds a `/`, whose
    /// path below the root: `./b` is `b` at the top only) matches GLOB. A
    /// trailing `/` matches directories only. Repeatable
    #[arg(long, value_name = "GLOB", action = ArgAction::Append)]
    pub exclude: Vec<String>,

    /// Stay on the file system of each PATH; do not descend into mount points
    #[arg(short = 'x', long = "one-file-system")]
    pub one_file_system: bool,

    /// Follow symbolic links, detecting loops (by default links are counted and skipped)
    #[arg(short = 'L', long)]
    pub follow: bool,

    /// Descend at most N directory levels below each PATH (0: only PATH itself)
    #[arg(long, value_name = "N")]
    pub max_depth: Option<usize>,

    /// Verify files against the manifests given as PATHs (standard input if
    /// none or `-`): GNU, BSD --tag or b3sum format, algorithm detected per line
    #[arg(short = 'c', long = "check", conflicts_with_all = ["tag", "json", "audit"])]
    pub check: bool,

    /// With --check or --verify: do not print OK for each verified file.
    /// The last of --quiet, --status and --warn wins, as in coreutils
    #[arg(long, overrides_with_all = ["quiet", "status", "warn"])]
    pub quiet: bool,

    /// With --check: print nothing, the exit status says it all
    #[arg(long, overrides_with_all = ["quiet", "status", "warn"])]
    pub status: bool,

    /// With --check: exit non-zero for improperly formatted lines
    #[arg(long)]
    pub strict: bool,

    /// With --check: warn about improperly formatted lines
    #[arg(short = 'w', long, overrides_with_all = ["quiet", "status", "warn"])]
    pub warn: bool,

    /// With --check: do not fail or report status for missing files
    #[arg(long)]
    pub ignore_missing: bool,

    /// Compare the tree (PATHs, default .) with MANIFEST and report each file
    /// as matched, changed, new, missing or moved (`-`: MANIFEST from standard
    /// input; a PATH `-` is standard input, as the file `-`). Exit 0 only if
    /// all matched
    #[arg(long, value_name = "MANIFEST", conflicts_with_all = ["tag", "json"])]
    pub audit: Option<PathBuf>,

    /// Hash the tree (PATHs, default .) and write STATE (JSON lines: path,
    /// size, mtime, inode, hash). Files whose size, mtime and inode match the
    /// old STATE are not read again; reports new, changed, missing and moved
    #[arg(long, value_name = "STATE", conflicts_with_all = ["check", "audit", "tag", "json", "zero"])]
    pub update: Option<PathBuf>,

    /// With --update: read every file again, carrying no hash over
    #[arg(long, requires = "update")]
    pub rehash: bool,

    /// Read every file STATE lists (or a -c manifest) and report it as OK,
    /// MODIFIED, CORRUPTED (content changed, mtime not), MISSING or UNREADABLE.
    /// Exit 0 only if all are OK (`-`: STATE from standard input)
    #[arg(long, value_name = "STATE", conflicts_with_all = ["check", "audit", "update", "tag", "json", "zero"])]
    pub verify: Option<PathBuf>,

    /// Readers per disk group (all file systems on one disk share them), fixed
    /// (disables the adaptive choice)
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,

    /// Readers for the disk group DEV is on, fixed. DEV is a disk or partition
    /// (sda, sda1, nvme0n1), MAJOR:MINOR, or any path on it (`.` too); a partition's
    /// override covers its whole disk. Repeatable
    #[arg(long, value_name = "DEV=N", action = ArgAction::Append)]
    pub device_jobs: Vec<String>,

    /// Print each disk group (its disks, file systems, rotational hint) and the
    /// readers chosen (and changes) on stderr
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Never draw the progress bar (it is only drawn when stderr is a terminal)
    #[arg(long)]
    pub no_progress: bool,

    /// Do not print the summary line (files, bytes, skips, errors, time) on stderr at the end
    #[arg(long)]
    pub no_summary: bool,
}

/// The `-a` values, with their lower-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgoArg {
    Blake3,
    Sha256,
    Sha512,
    Sha1,
    Md5,
}

impl From<AlgoArg> for Algo {
    fn from(a: AlgoArg) -> Algo {
        match a {
            AlgoArg::Blake3 => Algo::Blake3,
            AlgoArg::Sha256 => Algo::Sha256,
            AlgoArg::Sha512 => Algo::Sha512,
            AlgoArg::Sha1 => Algo::Sha1,
            AlgoArg::Md5 => Algo::Md5,
        }
    }
}

impl Args {
    /// Checks the rules clap cannot express; the message becomes a usage error.
    pub fn validate(&self) -> Result<(), String> {
        let check_only = [
            (self.quiet && self.verify.is_none(), "--quiet"),
            (self.status, "--status"),
            (self.strict, "--strict"),
            (self.warn, "--warn"),
            (self.ignore_missing, "--ignore-missing"),
        ];
        if !self.check {
            if let Some((_, name)) = check_only.iter().find(|(on, _)| *on) {
                return Err(format!(
                    "{name} is meaningful only when verifying checksums (-c)"
                ));
            }
        }
        if self.update.as_deref().is_some_and(is_dash) {
            return Err(
                "--update rewrites STATE, so it cannot be standard input ('-'); \
                        name a file (./- for one called -)"
                    .into(),
            );
        }
        let dashes = self.paths.iter().filter(|p| is_dash(p)).count();
        let stdin_root = dashes > 0;
        if stdin_root && self.update.is_some() {
            return Err(
                "--update records files it can read again, so a PATH cannot be standard \
                 input ('-'); name ./- for a file called -"
                    .into(),
            );
        }
        if stdin_root && self.audit.as_deref().is_some_and(is_dash) {
            return Err(
                "--audit - reads MANIFEST from standard input, so a PATH cannot be standard \
                 input ('-') too; name ./- for a file called -"
                    .into(),
            );
        }
        if dashes > 1 && !self.check {
            // Read once, standard input has nothing left for a second `-`:
            // sha256sum prints the empty stream's digest for it, and
            // `--audit` called it `changed`. (`-c - -` reads a second,
            // empty manifest and says so, as coreutils does.)
            return Err(
                "standard input ('-') can be a PATH only once: it is read to its end the \
                 first time; name ./- for a file called -"
                    .into(),
            );
        }
        if self.verify.is_some() && !self.paths.is_empty() {
            return Err("--verify takes no PATH: STATE lists the files".into());
        }
        if self.output.is_some()
            && (self.check
                || self.audit.is_some()
                || self.update.is_some()
                || self.verify.is_some())
        {
            return Err(
                "--output is for hashing trees; -c, --audit, --update and --verify \
                 print their reports to standard output"
                    .into(),
            );
        }
        if self.json && self.zero {
            return Err("--json and -z cannot be combined".into());
        }
        Ok(())
    }

    /// The algorithm for hashing a tree: `-a`, or BLAKE3.
    pub fn algo(&self) -> Algo {
        self.algo.map(Algo::from).unwrap_or(Algo::Blake3)
    }
}
