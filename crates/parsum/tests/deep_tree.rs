//! Deep trees: 4000 nested directories, deeper than PATH_MAX allows a
//! path to reach. The walk opens each directory relative to its parent's
//! descriptor and each file relative to its directory's, so every file is
//! hashed, as `find` sees them all.

mod common;
use common::*;

use std::time::Duration;

const DEPTH: usize = 4000;

fn deep_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    deep_chain(d.path(), DEPTH);
    d
}

#[test]
fn four_thousand_nested_directories_all_hashed() {
    let d = deep_tree();
    let out = parsum().current_dir(d.path()).arg(".").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", &err[..err.len().min(2000)]);
    let lines: Vec<&[u8]> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), DEPTH);
    // Sorted by name, depth first ("d" < "f"): the deepest file comes first,
    // and its path is ~8000 bytes long.
    let deepest = lines[0];
    assert_eq!(deepest.len(), 64 + 2 + 2 * DEPTH + 1);
    assert_eq!(&lines[DEPTH - 1][64..], b"  d/f");
    assert!(deepest.ends_with(b"d/f"));
    // The same count as find.
    let (code, found, _) = run_std(
        std::process::Command::new("find")
            .current_dir(d.path())
            .args([".", "-type", "f"]),
    );
    assert_eq!(code, 0);
    assert_eq!(found.iter().filter(|&&b| b == b'\n').count(), DEPTH);
    // The content of the deepest file is right: BLAKE3 of "3999\n".
    let mut want = blake3::Hasher::new();
    want.update(format!("{}\n", DEPTH - 1).as_bytes());
    assert_eq!(&deepest[..64], want.finalize().to_hex().as_bytes());
}

/// With the usual soft limit of 1024 open files (and a hard one as low):
/// the walk lets go of directories deeper than it holds and reopens them
/// as `..`, so the depth is not limited by descriptors either.
#[test]
fn deep_tree_within_1024_descriptors() {
    deep_tree_within(1024);
}

/// Far fewer descriptors than directories with files queued for hashing:
/// the walk waits for hashing to release directories (`dirfd.rs`) instead
/// of failing with "Too many open files". Before that budget, a loaded
/// machine (hashing behind the walk) made even 1024 descriptors run out.
#[test]
fn deep_tree_within_64_descriptors() {
    deep_tree_within(64);
}

fn deep_tree_within(descriptors: u32) {
    let d = deep_tree();
    let bin = assert_cmd::cargo::cargo_bin("parsum");
    let out = assert_cmd::Command::new("sh")
        .timeout(Duration::from_secs(60))
        .current_dir(d.path())
        .arg("-c")
        .arg(format!(
            "ulimit -n {descriptors} && exec \"$0\" --no-progress ."
        ))
        .arg(bin)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The tail: an error names a ~8000-byte path before saying what failed.
    assert!(
        out.status.success(),
        "{}",
        &err[err.len().saturating_sub(600)..]
    );
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), DEPTH);
}
