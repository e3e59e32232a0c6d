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

/// What a FIFO or device node named by `-o` receives: the output itself,
/// written into it as `>` would (it cannot be replaced without destroying
/// it), and the node stays. A symbolic link to it (`/dev/stdout` is one)
/// is followed.
#[test]
fn a_fifo_gets_the_output_written_into_it() {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"tree/a", b"a");
    let want = stdout_of(parsum().current_dir(d.path()).arg("tree"));
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    std::os::unix::fs::symlink("fifo", d.path().join("to-fifo")).unwrap();
    for target in ["fifo", "to-fifo"] {
        // Open for reading first (non-blocking), so the writer's open
        // does not block; the manifest is far below a pipe's buffer.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        parsum()
            .current_dir(d.path())
            .args(["-o", target, "tree"])
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .success();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, want, "-o {target}");
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
    }
    let mut names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["fifo", "to-fifo", "tree"], "no temporary file left");
}

/// `-o` over a file of another owner (root writing a user's manifest)
/// keeps its owner, group and mode, as `>` would: a replaced file is not
/// handed to root with its owner locked out.
#[test]
fn a_replaced_file_keeps_its_owner_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !is_root() {
        eprintln!("note: not root; cannot make a file of another owner; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"tree/a", b"a");
    let sums = d.path().join("SUMS");
    std::fs::write(&sums, b"old\n").unwrap();
    std::os::unix::fs::chown(&sums, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&sums, std::fs::Permissions::from_mode(0o640)).unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-o", "SUMS", "tree"])
        .assert()
        .success();
    let m = std::fs::metadata(&sums).unwrap();
    assert_eq!((m.uid(), m.gid()), (65534, 65534), "owner");
    assert_eq!(m.mode() & 0o7777, 0o640, "mode");
    assert!(std::fs::read_to_string(&sums)
        .unwrap()
        .ends_with("  tree/a\n"));
}

/// The output's own files are not data: with `-o SUMS` inside the tree,
/// neither the SUMS being replaced nor a temporary file that a killed
/// run left (`.SUMS.parsum-PID.tmp`, where `O_TMPFILE` is missing) is
/// listed; a file that merely looks similar is.
#[test]
fn the_output_and_leftover_temporary_files_are_not_listed() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"a");
    write(d.path(), b"SUMS", b"old manifest\n");
    write(d.path(), b".SUMS.parsum-12345.tmp", b"half a manifest");
    write(d.path(), b".SUMS.parsum-x.tmp", b"not ours");
    parsum()
        .current_dir(d.path())
        .args(["-o", "SUMS", "."])
        .assert()
        .success();
    let got = std::fs::read_to_string(d.path().join("SUMS")).unwrap();
    let names: Vec<&str> = got.lines().map(|l| &l[66..]).collect();
    assert_eq!(names, [".SUMS.parsum-x.tmp", "a"], "{got}");
}

/// `-o /dev/stderr` with the progress bar drawn on that terminal: each
/// write of results hides the bar first, as a write to standard output on
/// a terminal does, so a line never starts in the middle of the bar's
/// (it was written right after the bar's text: `... ETA 0s6437b3ac...  -`).
#[test]
fn output_to_the_terminal_of_the_bar_hides_the_bar_while_written() {
    let Some((master, slave)) = pty() else {
        eprintln!("note: no pseudo-terminal; skipping the -o /dev/stderr bar test");
        return;
    };
    let mut child = std::process::Command::new(bin())
        .args(["-o", "/dev/stderr", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(slave))
        .spawn()
        .unwrap();
    let seen = Transcript::of(master);
    seen.wait_for_bar();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"abc").unwrap();
    }
    let (code, stdout, _) = wait_guarded(child, 20);
    assert_eq!(code, Some(0));
    assert!(stdout.is_empty());
    let seen = seen.finish();
    let line = b"6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85  -";
    let at = seen
        .windows(line.len())
        .position(|w| w == line)
        .unwrap_or_else(|| panic!("no output line: {:?}", String::from_utf8_lossy(&seen)));
    // Cleared (`\r\x1b[2K`) before the line, not the bar's text.
    let before = String::from_utf8_lossy(&seen[..at]);
    assert!(
        before.ends_with("\x1b[2K") || before.ends_with('\r') || before.ends_with('\n'),
        "the line follows the bar: {before:?}"
    );
}
