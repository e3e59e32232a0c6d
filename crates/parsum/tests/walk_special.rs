//! What the walk does with things that are not plain files: FIFOs, symlinks
//! (skipped, followed, looping, dangling), hard links, unreadable files,
//! excludes and depth.

mod common;
use common::*;

use predicates::prelude::*;

#[test]
fn fifo_is_skipped_and_never_opened() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    mkfifo(&d.path().join("pipe"));
    parsum()
        .current_dir(d.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("  a\n").and(predicate::str::contains("pipe").not()))
        .stderr(
            predicate::str::contains("pipe: skipped FIFO (not read)")
                .and(predicate::str::contains("1 skipped (1 special)")),
        );
    // Named directly on the command line, too.
    parsum()
        .current_dir(d.path())
        .arg("pipe")
        .assert()
        .success()
        .stderr(predicate::str::contains("skipped FIFO"));
    // And listed in a manifest: a read failure, not a hang.
    let m = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(m.path(), format!("{}  pipe\n", "0".repeat(64))).unwrap();
    parsum()
        .current_dir(d.path())
        .arg("-c")
        .arg(m.path())
        .assert()
        .code(1)
        .stdout("pipe: FAILED open or read\n")
        .stderr(predicate::str::contains("is a FIFO"));
}

#[test]
fn symlinks_are_counted_not_followed_by_default() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    std::os::unix::fs::symlink("a", d.path().join("link")).unwrap();
    parsum()
        .current_dir(d.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("link").not())
        .stderr(predicate::str::contains(
            "skipped 1 symbolic link(s); use --follow",
        ));
    parsum()
        .current_dir(d.path())
        .arg("--follow")
        .assert()
        .success()
        .stdout(predicate::str::contains("  link\n"));
}

#[test]
fn symlink_loop_with_follow_terminates() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"d/f", b"abc");
    std::os::unix::fs::symlink("..", d.path().join("d/up")).unwrap();
    std::os::unix::fs::symlink(".", d.path().join("d/self")).unwrap();
    parsum()
        .current_dir(d.path())
        .arg("--follow")
        .assert()
        .code(1) // as `find -L`: a loop is an error
        .stdout(predicate::str::contains("  d/f\n"))
        .stderr(
            predicate::str::contains("d/up: File system loop detected").and(
                predicate::str::contains("d/self: File system loop detected"),
            ),
        );
}

#[test]
fn dangling_link_under_follow_is_an_error_and_the_run_continues() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    write(d.path(), b"z", b"abc");
    std::os::unix::fs::symlink("nowhere", d.path().join("m")).unwrap();
    parsum()
        .current_dir(d.path())
        .arg("--follow")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("  a\n").and(predicate::str::contains("  z\n")))
        .stderr(
            predicate::str::contains("parsum: m: No such file or directory")
                .and(predicate::str::contains("1 error in")),
        );
}

#[test]
fn unreadable_file_reports_os_error_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    if !is_root() {
        let f = write(d.path(), b"secret", b"x");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
        parsum()
            .current_dir(d.path())
            .assert()
            .code(1)
            .stdout(predicate::str::contains("  a\n"))
            .stderr(predicate::str::contains("secret: Permission denied"));
    }
    // Root reads everything chmod can forbid; /proc/self/mem is a regular
    // file whose read at offset 0 fails (EIO) for everyone.
    if std::path::Path::new("/proc/self/mem").exists() {
        parsum()
            .arg(d.path().join("a"))
            .arg("/proc/self/mem")
            .assert()
            .code(1)
            .stdout(predicate::str::contains("/a\n"))
            .stderr(
                // coreutils' wording: no Rust "(os error 5)" suffix.
                predicate::str::contains("/proc/self/mem: Input/output error\n")
                    .and(predicate::str::contains("os error").not()),
            );
    }
    // A path that does not exist.
    parsum()
        .arg(d.path().join("nope"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("No such file or directory"));
}

#[test]
fn hard_links_listed_under_each_name() {
    let d = tempfile::tempdir().unwrap();
    let a = write(d.path(), b"a", b"abc");
    std::fs::hard_link(&a, d.path().join("b")).unwrap();
    let out = String::from_utf8(stdout_of(parsum().current_dir(d.path()))).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0][..64], lines[1][..64]);
    assert!(lines[0].ends_with("  a") && lines[1].ends_with("  b"));
}

#[test]
fn exclude_and_max_depth() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"keep.txt", b"1");
    write(d.path(), b"skip.tmp", b"2");
    write(d.path(), b"target/x", b"3");
    write(d.path(), b"deep/er/y", b"4");
    let out = String::from_utf8(stdout_of(parsum().current_dir(d.path()).args([
        "--exclude",
        "*.tmp",
        "--exclude",
        "target",
    ])))
    .unwrap();
    assert!(out.contains("  keep.txt\n") && out.contains("  deep/er/y\n"));
    assert!(!out.contains("skip.tmp") && !out.contains("target"));
    let out = String::from_utf8(stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["--exclude", "deep/er"]),
    ))
    .unwrap();
    assert!(!out.contains("deep/er/y"));
    let out = String::from_utf8(stdout_of(
        parsum().current_dir(d.path()).args(["--max-depth", "1"]),
    ))
    .unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    parsum()
        .current_dir(d.path())
        .args(["--exclude", "*.tmp"])
        .assert()
        .stderr(predicate::str::contains("1 skipped (1 excluded)"));
}

#[test]
fn one_file_system_stops_at_mount_points() {
    use std::os::unix::fs::MetadataExt;
    let (root, proc_) = (std::fs::metadata("/").unwrap(), std::fs::metadata("/proc"));
    let Ok(proc_) = proc_ else { return };
    if root.dev() == proc_.dev() {
        eprintln!("note: /proc is not a separate mount here; skipping");
        return;
    }
    parsum()
        .args(["-x", "--max-depth", "1", "/"])
        .assert()
        .stderr(predicate::str::contains(
            "/proc: skipped: another file system",
        ));
}
