//! Running parsum under `mpirun` and alone, for the MPI tests (`mpi.rs`,
//! `mpi_hostile.rs`): one home for how a job is started, bounded and
//! compared. Every run is under a timeout, so no test can hang on one.

use std::path::Path;
use std::time::Duration;

/// Is Open MPI's `mpirun` here? Says so when it is not.
pub fn have_mpirun() -> bool {
    super::have_for("mpirun", "the MPI test (see .ci/mpi)")
}

/// One run's exit status and output.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    fn of(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The single-process run in `dir`: the same binary, with no launcher
/// variables, under `prefix` (a command that execs the rest; none for
/// `&[]`), killed after 60 s.
pub fn single_with(prefix: &[&str], dir: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let bin = env!("CARGO_BIN_EXE_parsum");
    let mut c = assert_cmd::Command::new(prefix.first().copied().unwrap_or(bin));
    if !prefix.is_empty() {
        c.args(&prefix[1..]).arg(bin);
    }
    c.timeout(Duration::from_secs(60))
        .current_dir(dir)
        .arg("--no-progress")
        .args(args)
        .write_stdin(stdin.to_vec());
    // Not mistaken for one rank of a job.
    for v in parsum::launcher::LAUNCHER_VARS {
        c.env_remove(v);
    }
    Run::of(c.output().unwrap())
}

/// [`single_with`], alone and without input.
pub fn single(dir: &Path, args: &[&str]) -> Run {
    single_with(&[], dir, args, b"")
}

/// `mpirun -np N parsum ARGS` in `dir`, under `prefix`, with `env` passed
/// to every rank and `stdin` on rank 0's standard input; killed after
/// 120 s.
///
/// Each run gets a session directory of its own: Open MPI 4 keeps every
/// job's under one per-user directory in `TMPDIR` and removes it when a
/// job ends, so a job starting meanwhile (the tests run in parallel)
/// failed with `orte_session_dir failed` (open-mpi/ompi#8510; the
/// workaround there is a unique `orte_tmpdir_base`, which follows
/// `TMPDIR`).
pub fn mpi_with(
    prefix: &[&str],
    np: usize,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Run {
    let session = tempfile::tempdir().unwrap();
    let mut c = assert_cmd::Command::new("timeout");
    c.timeout(Duration::from_secs(150))
        .current_dir(dir)
        .env("TMPDIR", session.path())
        .args(["-s", "TERM", "120"])
        .args(prefix)
        .args(["mpirun", "--allow-run-as-root", "--oversubscribe"])
        .arg("-np")
        .arg(np.to_string());
    for (k, v) in env {
        c.env(k, v).arg("-x").arg(k);
    }
    c.arg(env!("CARGO_BIN_EXE_parsum"))
        .arg("--no-progress")
        .args(args)
        .write_stdin(stdin.to_vec());
    Run::of(c.output().unwrap())
}

/// [`mpi_with`], with `stdin` on rank 0's standard input.
pub fn mpi_with_stdin(
    np: usize,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Run {
    mpi_with(&[], np, dir, args, env, stdin)
}

/// [`mpi_with`], without input.
pub fn mpi(np: usize, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    mpi_with(&[], np, dir, args, env, b"")
}

/// Runs `args` in `dir` alone and under `mpirun -np N` for each of `nps`,
/// under `prefix` and with `stdin` on both, and asserts the same exit
/// status, the same stdout bytes and the same `key` of stderr (`what`
/// names it in a failure). Returns the single-process run.
pub fn assert_same_as_one_process<T: PartialEq + std::fmt::Debug>(
    prefix: &[&str],
    dir: &Path,
    args: &[&str],
    nps: &[usize],
    stdin: &[u8],
    what: &str,
    key: impl Fn(&str) -> T,
) -> Run {
    let want = single_with(prefix, dir, args, stdin);
    for &np in nps {
        let got = mpi_with(prefix, np, dir, args, &[], stdin);
        assert_eq!(
            got.code, want.code,
            "exit status, -np {np} {args:?}\nsingle stderr:\n{}\nmpi stderr:\n{}",
            want.stderr, got.stderr
        );
        assert!(
            got.stdout == want.stdout,
            "stdout differs, -np {np} {args:?}:\n--- single\n{}\n--- mpi\n{}\n--- mpi stderr\n{}",
            String::from_utf8_lossy(&want.stdout),
            String::from_utf8_lossy(&got.stdout),
            got.stderr
        );
        assert_eq!(
            key(&got.stderr),
            key(&want.stderr),
            "{what}, -np {np} {args:?}"
        );
    }
    want
}
