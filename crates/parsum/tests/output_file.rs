//! `-o FILE`: the same bytes as stdout, written whole or not at all.

mod common;

use common::*;
use predicates::prelude::*;

#[test]
fn output_file_holds_exactly_what_stdout_would() {
    let d = tempfile::tempdir().unwrap();
    for name in AWKWARD {
        write(d.path(), name, name);
    }
    let out = tempfile::tempdir().unwrap();
    for args in [&[][..], &["--tag"], &["--json"], &["-z"]] {
        let want = stdout_of(parsum().current_dir(d.path()).args(args));
        let sums = out.path().join("SUMS");
        parsum()
            .current_dir(d.path())
            .args(args)
            .arg("-o")
            .arg(&sums)
            .assert()
            .success()
            .stdout("");
        assert_eq!(std::fs::read(&sums).unwrap(), want, "{args:?}");
    }
    // Only SUMS: no temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["SUMS"]);
}

#[test]
fn an_unreadable_file_still_gives_the_whole_manifest_and_exit_1() {
    // The run finished writing: FILE holds every line a redirect would,
    // and the error is on stderr with exit 1, as without -o.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"a");
    std::os::unix::fs::symlink("nowhere", d.path().join("m")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let sums = out.path().join("SUMS");
    parsum()
        .current_dir(d.path())
        .args(["--follow", "-o"])
        .arg(&sums)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("m: No such file or directory"));
    let got = std::fs::read_to_string(&sums).unwrap();
    assert!(got.ends_with("  a\n"), "{got}");
}

#[test]
fn a_bad_output_path_fails_before_any_work_and_keeps_nothing() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"a");
    parsum()
        .current_dir(d.path())
        .args(["-o", "no/such/dir/SUMS"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(
            "parsum: no/such/dir/SUMS: No such file or directory",
        ))
        // Nothing was hashed: no summary.
        .stderr(predicate::str::contains("1 file").not());
    parsum()
        .current_dir(d.path())
        .args(["-c", "-o", "x", "SUMS"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--output is for hashing trees"));
}

#[test]
fn an_existing_file_is_replaced_only_at_the_end() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"tree/a", b"a");
    let sums = d.path().join("SUMS");
    std::fs::write(&sums, b"old\n").unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-o", "SUMS", "tree"])
        .assert()
        .success();
    let got = std::fs::read_to_string(&sums).unwrap();
    assert!(got.ends_with("  tree/a\n"), "{got}");
    assert!(!got.contains("old"));
}
