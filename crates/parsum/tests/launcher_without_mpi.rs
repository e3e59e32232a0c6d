//! The default build (no `mpi` feature) started by an MPI launcher as one
//! of several ranks: each rank would be a whole, separate parsum, so N
//! copies of the manifest would interleave on one stdout. It refuses,
//! before any work, with one message (from rank 0) that says how to build
//! the MPI binary. One rank alone (`-np 1`) is a plain run.
#![cfg(not(feature = "mpi"))]

mod common;
use common::*;

const VARS: [&str; 6] = [
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "PMI_SIZE",
    "PMI_RANK",
    "PMIX_RANK",
    "PMIX_SIZE",
];

/// parsum with no launcher variable inherited from the test's environment.
fn no_launcher() -> assert_cmd::Command {
    let mut c = parsum();
    for v in VARS {
        c.env_remove(v);
    }
    c
}

fn as_rank(rank: &str, size: &str) -> assert_cmd::Command {
    let mut c = no_launcher();
    c.env("OMPI_COMM_WORLD_SIZE", size)
        .env("OMPI_COMM_WORLD_RANK", rank);
    c
}

#[test]
fn several_ranks_of_a_build_without_mpi_refuse_once_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"f", b"abc");
    let out = as_rank("0", "3")
        .current_dir(d.path())
        .assert()
        .code(2)
        .stdout("")
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features mpi"), "{err}");
    assert!(!err.contains("1 file"), "nothing hashed: {err}");
    // Rank 1 fails alike but leaves the word to rank 0: it waits for the
    // launcher to end the job when rank 0 fails (failing at once could
    // kill rank 0 before it spoke). Alone, past its grace, it says the
    // error itself, with its rank.
    let out = as_rank("1", "3")
        .env("PARSUM_TEST_SILENT_GRACE_MS", "300")
        .current_dir(d.path())
        .assert()
        .code(2)
        .stdout("")
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("parsum: rank 1: started by an MPI launcher"),
        "{err}"
    );
    assert_eq!(err.matches("rank 1").count(), 1, "one message: {err}");
    assert!(err.ends_with("more information.\n"), "{err}");
}

#[test]
fn a_silent_rank_waits_for_rank_0_before_it_fails() {
    // Without the hook, the grace is seconds: a rank 1 killed meanwhile by
    // its launcher (as mpirun does when rank 0 fails) has printed nothing.
    let d = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_parsum"));
    for v in VARS {
        c.env_remove(v);
    }
    c.env("OMPI_COMM_WORLD_SIZE", "3")
        .env("OMPI_COMM_WORLD_RANK", "1")
        .arg("--no-such-flag")
        .current_dir(d.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "rank 1 failed at once");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn one_rank_alone_is_a_plain_run() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"f", b"abc");
    let out = as_rank("0", "1")
        .current_dir(d.path())
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert!(out.stdout.ends_with(b"  f\n"));
}

#[test]
fn a_rank_past_0_refuses_even_where_the_launcher_gives_no_size() {
    // PMIx (`srun --mpi=pmix`) sets PMIX_RANK and no size: rank 1 is still
    // one of several, and must not print a second manifest.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"f", b"abc");
    let out = no_launcher()
        .env("PMIX_RANK", "1")
        .env("PARSUM_TEST_SILENT_GRACE_MS", "0")
        .current_dir(d.path())
        .assert()
        .code(2)
        .stdout("")
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one of several ranks"), "{err}");
}
