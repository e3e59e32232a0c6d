//! Every output format, on a small tree with known digests.

mod common;
use common::*;

use predicates::prelude::*;

const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const ABC_BLAKE3: &str = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";

fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"abc", b"abc");
    write(d.path(), b"sub/abc2", b"abc");
    d
}

#[test]
fn gnu_default_is_blake3_relative_and_sorted() {
    let d = tree();
    parsum()
        .current_dir(d.path())
        .assert()
        .success()
        .stdout(format!("{ABC_BLAKE3}  abc\n{ABC_BLAKE3}  sub/abc2\n"))
        .stderr(predicate::str::contains(
            "parsum: 2 files, 6 B, 0 skipped, 0 errors",
        ));
}

#[test]
fn gnu_with_a_root_prefixes_it() {
    let d = tree();
    parsum()
        .current_dir(d.path())
        .args(["-a", "sha256", "sub"])
        .assert()
        .success()
        .stdout(format!("{ABC_SHA256}  sub/abc2\n"));
}

#[test]
fn every_algo_known_answer() {
    let d = tree();
    for (algo, hex) in [
        ("md5", "900150983cd24fb0d6963f7d28e17f72"),
        ("sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("sha256", ABC_SHA256),
        (
            "sha512",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
        ("blake3", ABC_BLAKE3),
    ] {
        parsum().current_dir(d.path()).args(["-a", algo, "abc"]).assert().success().stdout(format!("{hex}  abc\n"));
    }
}

#[test]
fn tag_format() {
    let d = tree();
    parsum()
        .current_dir(d.path())
        .args(["--tag", "-a", "sha256"])
        .assert()
        .success()
        .stdout(format!(
            "SHA256 (abc) = {ABC_SHA256}\nSHA256 (sub/abc2) = {ABC_SHA256}\n"
        ));
    parsum()
        .current_dir(d.path())
        .args(["--tag", "abc"])
        .assert()
        .success()
        .stdout(format!("BLAKE3 (abc) = {ABC_BLAKE3}\n"));
}

#[test]
fn json_lines() {
    let d = tree();
    write(d.path(), b"q\"uote\xff", b"");
    let out = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["--json", "-a", "sha256"]),
    );
    let text = String::from_utf8(out).expect("JSON output is always UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("{\"path\":\"abc\",\"size\":3,\"mtime\":"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with(&format!("\"algo\":\"sha256\",\"hash\":\"{ABC_SHA256}\"}}")),
        "{}",
        lines[0]
    );
    // Non-UTF-8: lossy `path` plus byte-exact `path_hex`.
    assert!(
        lines[1].starts_with(
            "{\"path\":\"q\\\"uote\u{fffd}\",\"path_hex\":\"7122756f7465ff\",\"size\":0"
        ),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("{\"path\":\"sub/abc2\""));
}

#[test]
fn zero_terminated_and_unescaped() {
    let d = tree();
    write(d.path(), b"new\nline", b"abc");
    let out = stdout_of(parsum().current_dir(d.path()).args(["-z", "-a", "sha256"]));
    let expected = format!("{ABC_SHA256}  abc\0{ABC_SHA256}  new\nline\0{ABC_SHA256}  sub/abc2\0");
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn help_has_examples_and_usage_errors_exit_2() {
    parsum()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"));
    parsum().arg("--bogus").assert().code(2);
    parsum()
        .arg("--quiet")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("-c"));
    parsum().args(["--device-jobs", "sda"]).assert().code(2);
    parsum().args(["--jobs", "0"]).assert().code(2);
    parsum().args(["--exclude", "a[", "."]).assert().code(2);
    parsum().args(["--json", "-z"]).assert().code(2);
}

#[test]
fn verbose_reports_devices() {
    let d = tree();
    parsum()
        .current_dir(d.path())
        .arg("-v")
        .assert()
        .success()
        .stderr(
            predicate::str::contains("parsum: disk ").and(predicate::str::contains("reader(s)")),
        );
    parsum()
        .current_dir(d.path())
        .args(["-v", "--jobs", "3"])
        .assert()
        .success()
        .stderr(predicate::str::contains("3 reader(s) [--jobs 3]"));
}

#[test]
fn device_jobs_by_path() {
    let d = tree();
    let spec = format!("{}=1", d.path().display());
    parsum()
        .current_dir(d.path())
        .args(["-v", "--device-jobs", &spec])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "1 reader(s) [--device-jobs {spec}]"
        )));
}

/// A path under `/dev/` that is not a block device node (`/dev/shm` is a
/// tmpfs, `/dev/null` is on devtmpfs) is a path on a file system, as any
/// other path: it used to be taken for a device name and refused.
#[test]
fn device_jobs_by_path_under_dev() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() || tempfile::tempdir_in(shm).is_err() {
        eprintln!("note: no writable /dev/shm; skipping");
        return;
    }
    let d = tempfile::tempdir_in(shm).unwrap();
    std::fs::write(d.path().join("f"), b"x").unwrap();
    for spec in [
        format!("{}=1", d.path().display()),
        "/dev/shm=1".to_string(),
    ] {
        parsum()
            .args(["-v", "--device-jobs", &spec])
            .arg(d.path())
            .assert()
            .success()
            .stderr(predicate::str::contains(format!(
                "1 reader(s) [--device-jobs {spec}]"
            )));
    }
    // /dev/null is a path on devtmpfs: accepted (it names /dev's group).
    parsum()
        .args(["--device-jobs", "/dev/null=2"])
        .arg(d.path())
        .assert()
        .success();
}

/// A path without a slash (`.`, `..`, a directory's name) is a path too,
/// unless a block device has that name: `.` was taken for a device
/// (`/sys/class/block/.` exists) and silently fixed nothing.
#[test]
fn device_jobs_by_relative_path() {
    let d = tree();
    std::fs::create_dir(d.path().join("subdir2")).unwrap();
    std::fs::write(d.path().join("subdir2/f"), b"x").unwrap();
    for (cwd, spec) in [
        (d.path().to_path_buf(), ".=1"),
        (d.path().join("subdir2"), "..=1"),
        (d.path().to_path_buf(), "subdir2=1"),
    ] {
        parsum()
            .current_dir(&cwd)
            .args(["-v", "--device-jobs", spec])
            .arg(d.path())
            .assert()
            .success()
            .stderr(predicate::str::contains(format!(
                "1 reader(s) [--device-jobs {spec}]"
            )));
    }
    // A name that is neither a device nor a path is still refused.
    parsum()
        .current_dir(d.path())
        .args(["--device-jobs", "nosuchdisk=1", "."])
        .assert()
        .code(2);
}
