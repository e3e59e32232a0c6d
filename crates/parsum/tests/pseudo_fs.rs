//! Pseudo file systems (procfs, sysfs): read to EOF as sha256sum does, no
//! false "changed during read" from sysfs' 4096-byte placeholder sizes, and
//! endless files (`/proc/kcore`, `pagemap`) skipped with a report, never
//! read. These run on the machine's real /proc and /sys and skip with a
//! note where they are absent.

mod common;
use common::*;

use predicates::prelude::*;
use std::path::Path;
use std::process::Command as StdCommand;

fn present(paths: &[&'static str]) -> Vec<&'static str> {
    let found: Vec<_> = paths
        .iter()
        .copied()
        .filter(|p| Path::new(p).is_file())
        .collect();
    if found.is_empty() {
        eprintln!("note: none of {paths:?} exists here; skipping");
    }
    found
}

#[test]
fn sysfs_and_procfs_files_hash_like_sha256sum() {
    let files = present(&[
        "/proc/version",
        "/proc/cmdline",
        "/proc/sys/kernel/ostype",
        "/sys/devices/system/cpu/online",
        "/sys/devices/system/cpu/possible",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/mm/transparent_hugepage/defrag",
    ]);
    if files.is_empty() || !have("sha256sum") {
        return;
    }
    let ours = parsum()
        .args(["-a", "sha256"])
        .args(&files)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&ours.stderr);
    assert!(ours.status.success(), "{err}");
    assert!(!err.contains("changed during read"), "{err}");
    let (code, theirs, _) = run_std(StdCommand::new("sha256sum").args(&files));
    assert_eq!(code, 0);
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs)
    );
    // sysfs sizes are a 4096-byte placeholder: the size reported is what was read.
    if let Some(f) = files.iter().find(|f| f.starts_with("/sys/")) {
        let out = stdout_of(parsum().arg("--json").arg(f));
        let len = std::fs::read(f).unwrap().len();
        assert!(
            String::from_utf8_lossy(&out).contains(&format!("\"size\":{len},")),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// A whole sysfs subtree: before, every file failed with "changed during
/// read (read N of 4096 bytes)".
#[test]
fn sysfs_tree_has_no_false_changes() {
    let root = ["/sys/devices/system/cpu", "/sys/kernel/mm", "/sys/module"]
        .into_iter()
        .find(|p| Path::new(p).is_dir());
    let Some(root) = root else {
        eprintln!("note: no sysfs here; skipping");
        return;
    };
    let out = parsum().args(["-a", "sha256", root]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("changed during read"), "{err}");
    let hashed = out.stdout.iter().filter(|&&b| b == b'\n').count();
    assert!(hashed > 0, "nothing hashed under {root}: {err}");
}

#[test]
fn endless_proc_files_are_skipped_and_reported() {
    let files = present(&[
        "/proc/kcore",
        "/proc/kpagecount",
        "/proc/kpageflags",
        "/proc/self/pagemap",
    ]);
    if files.is_empty() {
        return;
    }
    // Named on the command line: a reported skip, not a read (the 30 s
    // guard of `parsum()` fails the test if it reads).
    parsum()
        .arg("/proc/version")
        .args(&files)
        .assert()
        .success()
        .stdout(predicate::str::contains("/proc/version\n"))
        .stderr(predicate::str::contains(
            "skipped: an endless procfs file (not read)",
        ));
    // Listed in a manifest: it cannot be verified.
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    std::fs::write(&m, format!("{}  {}\n", "0".repeat(64), files[0])).unwrap();
    parsum()
        .args(["-c"])
        .arg(&m)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAILED open or read"))
        .stderr(predicate::str::contains("an endless procfs file; not read"));
}

/// Walking a process's /proc directory ends, skipping `pagemap`.
#[test]
fn walking_proc_self_terminates() {
    if !Path::new("/proc/self/pagemap").exists() {
        eprintln!("note: no /proc/self/pagemap; skipping");
        return;
    }
    // fdinfo/N describes parsum's own descriptor N, which parsum itself
    // closes and reuses while it walks: a genuinely different file, rightly
    // reported as replaced, so it is left out here.
    let out = parsum()
        .args(["--exclude", "fdinfo", "/proc/self/"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pagemap: skipped: an endless procfs file"),
        "{err}"
    );
    assert!(!err.contains("changed during read"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("/proc/self/status\n"));
}
