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

fn as_rank(rank: &str, size: &str) -> assert_cmd::Command {
    let mut c = parsum();
    for v in VARS {
        c.env_remove(v);
    }
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
    // Rank 1 says nothing (rank 0 speaks for the job) and fails alike.
    as_rank("1", "3")
        .current_dir(d.path())
        .assert()
        .code(2)
        .stdout("")
        .stderr("");
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
