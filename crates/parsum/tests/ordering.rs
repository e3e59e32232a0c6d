//! Output is sorted by path whatever the thread count, and equal to what
//! single-file hashing gives.

mod common;
use common::*;

#[test]
fn sorted_and_identical_at_jobs_1_and_8() {
    let d = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for i in 0..40 {
        for j in 0..(i % 7 + 1) {
            let name = format!(
                "d{:02}/{}/f{j}",
                (i * 37) % 40,
                if i % 3 == 0 { "x" } else { "y.z" }
            );
            // Sizes from empty to a few MiB so batches and big files mix.
            let size = if (i + j) % 13 == 0 {
                3 << 20
            } else {
                (i * 997 + j * 131) % 20000
            };
            let data: Vec<u8> = (0..size).map(|k| (k * 31 + i) as u8).collect();
            write(d.path(), name.as_bytes(), &data);
            expected.push(name);
        }
    }
    expected.sort();
    expected.dedup();
    let one = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["--jobs", "1", "-a", "sha256"]),
    );
    let eight = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["--jobs", "8", "-a", "sha256"]),
    );
    assert_eq!(one, eight);
    let adaptive = stdout_of(parsum().current_dir(d.path()).args(["-a", "sha256"]));
    assert_eq!(one, adaptive);
    let text = String::from_utf8(one).unwrap();
    let names: Vec<&str> = text.lines().map(|l| &l[66..]).collect();
    assert_eq!(names, expected);
    if have("sha256sum") {
        let theirs = std::process::Command::new("sha256sum")
            .current_dir(d.path())
            .args(&expected)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(theirs.stdout).unwrap(), text);
    }
}

#[test]
fn multiple_roots_in_argument_order() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"b/1", b"1");
    write(d.path(), b"a/2", b"2");
    let out =
        String::from_utf8(stdout_of(parsum().current_dir(d.path()).args(["b", "a"]))).unwrap();
    let names: Vec<&str> = out.lines().map(|l| &l[66..]).collect();
    assert_eq!(names, ["b/1", "a/2"]);
}

#[test]
fn large_file_split_hash_matches_b3sum() {
    if !have("b3sum") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // Above the split threshold (64 MiB) and not a multiple of the leaf.
    let data: Vec<u8> = (0..(70u32 << 20) + 12345)
        .map(|k| (k.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    write(d.path(), b"big", &data);
    // --jobs 2: the device takes parallel reads, so the file is split.
    let ours = stdout_of(parsum().current_dir(d.path()).args(["--jobs", "2", "big"]));
    let theirs = std::process::Command::new("b3sum")
        .current_dir(d.path())
        .arg("big")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(ours).unwrap(),
        String::from_utf8(theirs.stdout).unwrap()
    );
}

/// Roots (and a manifest) on two devices: each gets its own pool, results
/// stay in argument order. Uses /dev/shm when it is a separate mount.
#[test]
fn roots_on_two_devices() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("note: no /dev/shm; skipping");
        return;
    };
    if std::fs::metadata(d.path()).unwrap().dev() == std::fs::metadata(shm.path()).unwrap().dev() {
        eprintln!("note: /dev/shm is on the same device; skipping");
        return;
    }
    for i in 0..200 {
        write(
            d.path(),
            format!("disk/{i:03}").as_bytes(),
            &[i as u8; 5000],
        );
        write(
            shm.path(),
            format!("mem/{i:03}").as_bytes(),
            &[i as u8; 5000],
        );
    }
    let disk = d.path().join("disk");
    let mem = shm.path().join("mem");
    let out = parsum()
        .arg("-v")
        .arg(&mem)
        .arg(&disk)
        .arg(&mem)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 600);
    assert!(
        lines[0].ends_with("mem/000")
            && lines[200].ends_with("disk/000")
            && lines[599].ends_with("mem/199")
    );
    let err = String::from_utf8(out.stderr).unwrap();
    // One line per disk group (the adaptive gate may add lines
    // about its changes, which depend on timing).
    let detected = err
        .lines()
        .filter(|l| l.starts_with("parsum: disk ") && l.ends_with(']'))
        .count();
    assert_eq!(detected, 2, "{err}");
    // A manifest that alternates devices line by line verifies in order.
    let mut manifest = String::new();
    for i in 0..200 {
        manifest.push_str(lines[i]);
        manifest.push('\n');
        manifest.push_str(lines[200 + i]);
        manifest.push('\n');
    }
    let m = d.path().join("alternating.b3");
    std::fs::write(&m, manifest).unwrap();
    let out = stdout_of(parsum().arg("-c").arg(&m));
    let ok: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
    assert_eq!(ok.len(), 400);
    assert!(
        ok[0].ends_with("mem/000: OK")
            && ok[1].ends_with("disk/000: OK")
            && ok[399].ends_with("disk/199: OK")
    );
}
