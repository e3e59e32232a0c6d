//! `--check` with coreutils' flags, messages and exit codes.

mod common;
use common::*;

use predicates::prelude::*;

/// A tree with `a`, `b` and a sha256 manifest of both plus extra lines.
fn setup(manifest_extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    write(d.path(), b"b", b"");
    let mut m = String::from(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  b\n",
    );
    m.push_str(manifest_extra);
    let path = d.path().join("SHA256SUMS");
    std::fs::write(&path, m).unwrap();
    (d, path)
}

#[test]
fn all_ok() {
    let (d, m) = setup("");
    parsum()
        .current_dir(d.path())
        .arg("-c")
        .arg(&m)
        .assert()
        .success()
        .stdout("a: OK\nb: OK\n");
    // From stdin too.
    parsum()
        .current_dir(d.path())
        .arg("-c")
        .pipe_stdin(&m)
        .unwrap()
        .assert()
        .success()
        .stdout("a: OK\nb: OK\n");
}

#[test]
fn mismatch_fails_with_warning() {
    let (d, m) = setup("");
    write(d.path(), b"a", b"abd");
    parsum()
        .current_dir(d.path())
        .arg("-c")
        .arg(&m)
        .assert()
        .code(1)
        .stdout("a: FAILED\nb: OK\n")
        .stderr(predicate::str::contains(
            "WARNING: 1 computed checksum did NOT match",
        ));
}

#[test]
fn quiet_prints_only_failures() {
    let (d, m) = setup("");
    parsum()
        .current_dir(d.path())
        .args(["-c", "--quiet"])
        .arg(&m)
        .assert()
        .success()
        .stdout("");
    write(d.path(), b"b", b"x");
    parsum()
        .current_dir(d.path())
        .args(["-c", "--quiet"])
        .arg(&m)
        .assert()
        .code(1)
        .stdout("b: FAILED\n");
}

#[test]
fn status_prints_nothing() {
    let (d, m) = setup("");
    parsum()
        .current_dir(d.path())
        .args(["-c", "--status"])
        .arg(&m)
        .assert()
        .success()
        .stdout("")
        .stderr("");
    write(d.path(), b"b", b"x");
    parsum()
        .current_dir(d.path())
        .args(["-c", "--status"])
        .arg(&m)
        .assert()
        .code(1)
        .stdout("")
        .stderr("");
}

#[test]
fn improper_lines_warn_and_strict() {
    let (d, m) = setup("this is not a checksum line\n");
    parsum()
        .current_dir(d.path())
        .arg("-c")
        .arg(&m)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "WARNING: 1 line is improperly formatted",
        ));
    parsum()
        .current_dir(d.path())
        .args(["-c", "--warn"])
        .arg(&m)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "SHA256SUMS: 3: improperly formatted SHA256 checksum line",
        ));
    parsum()
        .current_dir(d.path())
        .args(["-c", "--strict"])
        .arg(&m)
        .assert()
        .code(1);
}

#[test]
fn no_proper_lines() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("junk");
    std::fs::write(&m, "junk\n").unwrap();
    parsum()
        .arg("-c")
        .arg(&m)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no properly formatted checksum lines found",
        ));
}

#[test]
fn missing_files_and_ignore_missing() {
    let (d, m) = setup("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  gone\n");
    parsum()
        .current_dir(d.path())
        .arg("-c")
        .arg(&m)
        .assert()
        .code(1)
        .stdout("a: OK\nb: OK\ngone: FAILED open or read\n")
        .stderr(
            predicate::str::contains("parsum: gone: No such file or directory").and(
                predicate::str::contains("WARNING: 1 listed file could not be read"),
            ),
        );
    parsum()
        .current_dir(d.path())
        .args(["-c", "--ignore-missing"])
        .arg(&m)
        .assert()
        .success()
        .stdout("a: OK\nb: OK\n")
        .stderr("");
    // Nothing verified at all is a failure.
    let only_missing = d.path().join("only-missing.sha256");
    std::fs::write(
        &only_missing,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  gone\n",
    )
    .unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-c", "--ignore-missing"])
        .arg(&only_missing)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no file was verified"));
}

#[test]
fn detects_algorithm_per_line() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    let m = d.path().join("mixed");
    std::fs::write(
        &m,
        "900150983cd24fb0d6963f7d28e17f72  a\n\
         a9993e364706816aba3e25717850c26c9cd0d89d *a\n\
         6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85  a\n\
         ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a\n\
         SHA512 (a) = ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f\n\
         BLAKE3 (a) = 6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85\n",
    )
    .unwrap();
    parsum()
        .current_dir(d.path())
        .arg("-c")
        .arg(&m)
        .assert()
        .success()
        .stdout("a: OK\n".repeat(6));
    // -a narrows: other lengths and tags become improper, and the 64-digit
    // BLAKE3 GNU line is read as SHA-256 (as sha256sum would) and fails.
    parsum()
        .current_dir(d.path())
        .args(["-c", "-a", "sha256"])
        .arg(&m)
        .assert()
        .code(1)
        .stdout("a: FAILED\na: OK\n")
        .stderr(predicate::str::contains(
            "WARNING: 4 lines are improperly formatted",
        ));
}

#[test]
fn unreadable_manifest() {
    let d = tempfile::tempdir().unwrap();
    parsum()
        .arg("-c")
        .arg(d.path().join("no-such-dir/manifest"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("No such file or directory"));
}
