//! `--audit`: the five outcomes and the exit status.

mod common;
use common::*;

use predicates::prelude::*;

#[test]
fn five_outcomes() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("tree");
    write(&t, b"same", b"same");
    write(&t, b"edit", b"before");
    write(&t, b"gone", b"gone");
    write(&t, b"old/place", b"moving");
    let manifest = d.path().join("SUMS.b3");
    std::fs::write(&manifest, stdout_of(parsum().current_dir(&t))).unwrap();

    // Unchanged: all matched, exit 0.
    parsum()
        .current_dir(&t)
        .arg("--audit")
        .arg(&manifest)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("matched  same")
                .and(predicate::str::contains("changed").not()),
        )
        .stderr(predicate::str::contains(
            "4 matched, 0 changed, 0 new, 0 missing, 0 moved",
        ));

    write(&t, b"edit", b"after");
    std::fs::remove_file(t.join("gone")).unwrap();
    std::fs::create_dir(t.join("new")).unwrap();
    std::fs::rename(t.join("old/place"), t.join("new/place")).unwrap();
    write(&t, b"fresh", b"fresh");
    parsum()
        .current_dir(&t)
        .arg("--audit")
        .arg(&manifest)
        .assert()
        .code(1)
        .stdout("changed  edit\nmatched  same\nnew      fresh\nmoved    old/place -> new/place\nmissing  gone\n")
        .stderr(predicate::str::contains("1 matched, 1 changed, 1 new, 1 missing, 1 moved"));
}

#[test]
fn audit_with_a_sha256sum_manifest_and_a_root() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"data/x", b"abc");
    let manifest = d.path().join("m");
    std::fs::write(
        &manifest,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  data/x\n",
    )
    .unwrap();
    parsum()
        .current_dir(d.path())
        .arg("--audit")
        .arg(&manifest)
        .arg("data")
        .assert()
        .success()
        .stdout("matched  data/x\n");
    parsum()
        .current_dir(d.path())
        // Not `/nonexistent`: that is nobody's home, and something on a
        // shared machine may create it.
        .args(["--audit", "no-such-manifest"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("No such file or directory"));
}

#[test]
fn audit_reads_nul_terminated_manifests() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"new\nline", b"abc");
    let manifest = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        manifest.path(),
        stdout_of(parsum().current_dir(d.path()).arg("-z")),
    )
    .unwrap();
    parsum()
        .current_dir(d.path())
        .arg("-z")
        .arg("--audit")
        .arg(manifest.path())
        .assert()
        .success()
        .stdout("matched  \\new\\nline\n");
}
