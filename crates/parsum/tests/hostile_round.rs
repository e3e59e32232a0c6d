//! A hostile round: what a user coming from coreutils, or a hostile input,
//! does to parsum. The tests under "Defects" each failed when the round
//! found it (twelve, all fixed since: the node or mode an output replaced,
//! its own old output listed, closed standard streams, endless manifest
//! lines, `--audit`'s duplicate and no-longer-regular paths, `--exclude`
//! path globs, coreutils' last-flag-wins, progress inside a large file);
//! the others pin behaviours no other test covers.

mod common;
use common::*;

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;

const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const SHA_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// `a` ("abc"), `b` (empty) and awkward names, all holding "abc" but `b`.
fn check_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    write(d.path(), b"b", b"");
    for name in [
        &b"sp ace"[..],
        b"ta\tb",
        b"(p)",
        b"x) = y",
        b" lead",
        b"\\lead",
        b"new\nline",
        b"cr\r",
    ] {
        write(d.path(), name, b"abc");
    }
    d
}

/// `parsum -c flags SUMS` and, when installed, `sha256sum -c flags SUMS`
/// on the same manifest in [`check_tree`]: same exit status, stdout and
/// stderr (tool name aside). Returns parsum's.
fn same_as_sha256sum(manifest: &[u8], flags: &[&str]) -> (i32, String, String) {
    check_same_as("sha256sum", check_tree().path(), manifest, flags)
}

// ---------------------------------------------------------------------
// Defects
// ---------------------------------------------------------------------

/// `parsum -o /dev/null .` (as root) replaced the system's /dev/null with
/// a regular file: `-o` renames its temporary file over whatever FILE is,
/// device nodes and FIFOs included. A shell's `>` writes into them; a
/// directory is already refused. Here on a private FIFO and (as root) a
/// private null device: the node must still be there after the run.
#[test]
fn dash_o_onto_a_fifo_or_device_node_keeps_the_node() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"x", b"x");
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    // Hold the FIFO open both ways, so a writer neither blocks nor fails.
    let _hold = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut targets = vec![fifo];
    if is_root() {
        let dev = d.path().join("null");
        let c = std::ffi::CString::new(dev.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; makedev(1, 3) is /dev/null.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        assert_eq!(rc, 0, "mknod");
        targets.push(dev);
    } else {
        eprintln!("note: not root; the device-node half is skipped");
    }
    for t in &targets {
        let _ = parsum()
            .current_dir(d.path())
            .arg("-o")
            .arg(t)
            .arg("x")
            .output()
            .unwrap();
        let ft = std::fs::symlink_metadata(t).unwrap().file_type();
        assert!(
            ft.is_fifo() || ft.is_char_device(),
            "{} is now a {ft:?}, not the node it was",
            t.display()
        );
    }
}

/// The same for `--update STATE`: a STATE that is a device node (as root,
/// `parsum --update /dev/null .`) was replaced by a regular file holding
/// the state. Here a private null device. A STATE must be a regular file
/// (it is read, then replaced): a usage error, and the node stays.
#[test]
fn update_state_onto_a_device_node_keeps_the_node() {
    if !is_root() {
        eprintln!("note: not root; mknod is not allowed; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/x", b"x");
    let dev = d.path().join("null");
    let c = std::ffi::CString::new(dev.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; makedev(1, 3) is /dev/null.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(rc, 0, "mknod");
    parsum()
        .current_dir(d.path())
        .args(["--update", "null", "t"])
        .assert()
        .code(2);
    let ft = std::fs::symlink_metadata(&dev).unwrap().file_type();
    assert!(ft.is_char_device(), "null is now a {ft:?}");
}

/// `-o` over an existing FILE of mode 0600 leaves a 0644 FILE (umask
/// 022): a manifest kept private becomes world-readable. `>` keeps the
/// mode, and so does `--update` for its STATE (docs/parsum.md).
#[test]
fn dash_o_keeps_the_mode_of_the_file_it_replaces() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"tree/a", b"a");
    let sums = d.path().join("SUMS");
    std::fs::write(&sums, b"old\n").unwrap();
    std::fs::set_permissions(&sums, std::fs::Permissions::from_mode(0o600)).unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-o", "SUMS", "tree"])
        .assert()
        .success();
    let mode = std::fs::metadata(&sums).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
}

/// `parsum -o SUMS .` run twice: the second run hashes the first run's
/// SUMS and lists it, so the new SUMS holds a line for content it has just
/// replaced and `parsum -c SUMS` fails on it. outfile.rs says `parsum -o
/// SUMS .` does not hash its own output; `--update` leaves its STATE out.
#[test]
fn dash_o_inside_the_tree_twice_still_verifies() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"a");
    write(d.path(), b"sub/b", b"b");
    for _ in 0..2 {
        parsum()
            .current_dir(d.path())
            .args(["-o", "SUMS", "."])
            .assert()
            .success();
    }
    let sums = std::fs::read_to_string(d.path().join("SUMS")).unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-c", "SUMS"])
        .assert()
        .success();
    assert!(!sums.contains("SUMS"), "{sums}");
}

/// `--help`: a GLOB that holds a `/` matches the path below the root; so
/// does `./b` (it was trimmed to `b` before that test and became a name
/// glob: every `b` at any depth was skipped, silently).
#[test]
fn exclude_dot_slash_is_a_path_glob() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"r/b/f", b"1");
    write(d.path(), b"r/c/b/h", b"2");
    write(d.path(), b"r/g", b"3");
    let out = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["--exclude", "./b", "r"]),
    );
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("  r/b/f\n"), "{out}");
    assert!(
        out.contains("  r/c/b/h\n"),
        "--exclude ./b skipped r/c/b/h: {out}"
    );
}

/// A trailing `/` matches directories only (gitignore, fd, rsync): `b/`
/// skips the directories named `b` at any depth, not the files named `b`
/// (it used to skip both); `./c/b/` only the one below the root.
#[test]
fn exclude_trailing_slash_takes_directories_only() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"b/f", b"1");
    write(d.path(), b"c/b/h", b"2");
    write(d.path(), b"c/d/b", b"3");
    write(d.path(), b"b.txt", b"4");
    let run = |glob: &str| {
        let out = stdout_of(parsum().current_dir(d.path()).args(["--exclude", glob]));
        let mut names: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| l.split_once("  ").unwrap().1.to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(run("b/"), ["b.txt", "c/d/b"]);
    assert_eq!(run("b"), ["b.txt"]);
    assert_eq!(run("./c/b/"), ["b.txt", "b/f", "c/d/b"]);
    assert_eq!(run("c/d/b/"), ["b.txt", "b/f", "c/b/h", "c/d/b"]);
    assert_eq!(run("/b"), ["b.txt", "c/b/h", "c/d/b"]);
}

/// With stdout closed (`parsum >&-`), every line is lost and parsum exits
/// 0: the Rust runtime puts /dev/null on the closed descriptor. sha256sum
/// says `write error: Bad file descriptor` and exits 1. (b3sum, also Rust,
/// behaves like parsum.)
#[test]
fn closed_stdout_is_a_write_error() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    std::fs::write(d.path().join("SUMS"), format!("{SHA_ABC}  a\n")).unwrap();
    for args in [&["a"][..], &["-c", "SUMS"], &["--json", "a"]] {
        let (code, _, err) = with_fd_closed(1, d.path(), args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("write error"), "{args:?}: {err}");
    }
    if have("sha256sum") {
        let mut c = StdCommand::new("sha256sum");
        c.arg("a").current_dir(d.path()).stderr(Stdio::piped());
        // SAFETY: close is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::close(1);
                Ok(())
            });
        }
        let (code, _, err) = wait_guarded(c.spawn().unwrap(), 20);
        assert_eq!(code, Some(1), "{err}");
    }
}

/// `parsum -` with stdin closed (`<&-`) hashes the empty input and exits
/// 0 (the runtime's /dev/null again); `-c` with a line for `-` then says
/// OK. sha256sum: `-: Bad file descriptor`, exit 1.
#[test]
fn closed_stdin_is_not_hashed_as_empty() {
    let d = tempfile::tempdir().unwrap();
    let (code, out, err) = with_fd_closed(0, d.path(), &["-"]);
    assert_ne!(code, Some(0), "{}{err}", String::from_utf8_lossy(&out));
}

/// Neighbours of the two above. A closed stdout: `--audit` with a change
/// to report fails too; `-c --status` (nothing written) and `-o FILE`
/// (stdout unused) do not, as with coreutils, which fails only a write.
/// A closed stdin: a manifest read from it (`-c -`) and a line for `-` in
/// a manifest both fail. A closed stderr: messages are lost, nothing
/// panics, the status is kept.
#[test]
fn closed_stdio_neighbours() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    std::fs::write(d.path().join("SUMS"), format!("{SHA_ABC}  t/a\n")).unwrap();
    std::fs::write(d.path().join("OLD"), format!("{SHA_EMPTY}  t/a\n")).unwrap();
    std::fs::write(d.path().join("DASH"), format!("{SHA_EMPTY}  -\n")).unwrap();

    let (code, _, err) = with_fd_closed(1, d.path(), &["--audit", "OLD", "t"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("write error: Bad file descriptor"), "{err}");
    let (code, _, err) = with_fd_closed(1, d.path(), &["-c", "--status", "SUMS"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = with_fd_closed(1, d.path(), &["-a", "sha256", "-o", "OUT", "t"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("OUT")).unwrap(),
        format!("{SHA_ABC}  t/a\n")
    );

    let (code, out, err) = with_fd_closed(0, d.path(), &["-c", "-"]);
    assert_eq!(code, Some(1), "{}{err}", String::from_utf8_lossy(&out));
    assert!(err.contains("Bad file descriptor"), "{err}");
    let (code, out, err) = with_fd_closed(0, d.path(), &["-c", "DASH"]);
    assert_eq!(code, Some(1), "{}{err}", String::from_utf8_lossy(&out));
    assert!(!String::from_utf8_lossy(&out).contains("OK"), "{err}");
    let (code, _, err) = with_fd_closed(0, d.path(), &["-", "t"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("-: Bad file descriptor"), "{err}");

    let (code, out, _) = with_fd_closed(2, d.path(), &["-a", "sha256", "t"]);
    assert_eq!(code, Some(0));
    assert_eq!(out, format!("{SHA_ABC}  t/a\n").as_bytes());
    let (code, _, _) = with_fd_closed(2, d.path(), &["t", "missing"]);
    assert_eq!(code, Some(1));
}

/// `-c` and `--audit` read a manifest line without bound: `parsum -c
/// /dev/zero` grew past 5 GB in 5 s (sha256sum does too). `--verify` and
/// `--update` refuse a line longer than 16 MiB (an existing test), and
/// check_memory.rs promises -c memory does not grow with the manifest.
/// Run under a 2 GiB address-space limit, so the failure is an abort,
/// not the machine's memory.
#[test]
fn endless_manifest_line_is_refused_in_check_and_audit() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    for args in [&["-c", "/dev/zero"][..], &["--audit", "/dev/zero", "t"]] {
        let mut c = StdCommand::new(bin());
        c.arg("--no-progress")
            .args(args)
            .current_dir(d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 2 << 30,
                    rlim_max: 2 << 30,
                };
                libc::setrlimit(libc::RLIMIT_AS, &lim);
                Ok(())
            });
        }
        let (code, _, err) = wait_guarded(c.spawn().unwrap(), 20);
        assert!(
            matches!(code, Some(1) | Some(2)),
            "{args:?}: exit {code:?} (None: killed by a signal): {}",
            err.lines().next().unwrap_or("")
        );
        assert!(err.contains("/dev/zero"), "{args:?}: {err}");
    }
}

/// A regular manifest with one line over 16 MiB: `-c` verifies the lines
/// before it, then says where the manifest stopped being one (exit 1, as
/// for a read error); `--audit` refuses the manifest the same way.
#[test]
fn a_line_over_16_mib_ends_the_manifest_in_check_and_audit() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    let mut m = format!("{SHA_ABC}  a\n").into_bytes();
    m.extend(std::iter::repeat_n(b'x', (16 << 20) + 1));
    m.extend_from_slice(format!("\n{SHA_ABC}  a\n").as_bytes());
    std::fs::write(d.path().join("SUMS"), &m).unwrap();
    let out = parsum()
        .current_dir(d.path())
        .args(["-c", "SUMS"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a: OK\n");
    assert!(err.contains("SUMS: 2: a line longer than 16 MiB"), "{err}");
    let out = parsum()
        .current_dir(d.path())
        .args(["--audit", "SUMS", "a"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(err.contains("SUMS: 2: a line longer than 16 MiB"), "{err}");
    // 16 MiB exactly is still a line (improperly formatted here).
    let mut m = format!("{SHA_ABC}  a\n").into_bytes();
    m.extend(std::iter::repeat_n(b'x', 16 << 20));
    m.push(b'\n');
    std::fs::write(d.path().join("SUMS"), &m).unwrap();
    let out = parsum()
        .current_dir(d.path())
        .args(["-c", "--warn", "SUMS"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("SUMS: 2: improperly formatted"), "{err}");
}

/// A manifest that lists one path twice with different hashes: `--audit`
/// keeps the last line without a word, so the verdict depends on the
/// order of the lines (matched and exit 0 one way, changed and exit 1 the
/// other). `-c` checks both lines and fails.
#[test]
fn audit_verdict_does_not_depend_on_the_order_of_conflicting_lines() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    let mut runs = Vec::new();
    for m in [
        format!("{SHA_ABC}  a\n{SHA_EMPTY}  a\n"),
        format!("{SHA_EMPTY}  a\n{SHA_ABC}  a\n"),
    ] {
        std::fs::write(d.path().join("SUMS"), m).unwrap();
        let out = parsum()
            .current_dir(d.path())
            .args(["--audit", "SUMS", "a"])
            .output()
            .unwrap();
        runs.push((out.status.code(), out.stdout));
    }
    assert_eq!(runs[0], runs[1]);
    assert_ne!(runs[1].0, Some(0), "a conflicting manifest audited clean");
}

/// coreutils: `--status`, `--warn` and `--quiet` override each other, the
/// last one given wins (md5sum.c sets all three on each). parsum adds
/// them up: `--status --warn` prints no results, `--warn --quiet` keeps
/// the per-line warnings.
#[test]
fn status_warn_quiet_the_last_one_wins() {
    let m = format!("{SHA_ABC}  a\njunk\n{SHA_EMPTY}  a\n");
    let (code, out, err) = same_as_sha256sum(m.as_bytes(), &["--status", "--warn"]);
    assert_eq!((code, out.as_str()), (1, "a: OK\na: FAILED\n"), "{err}");
    assert!(err.contains("SUMS: 2: improperly formatted"), "{err}");
    let (code, out, err) = same_as_sha256sum(m.as_bytes(), &["--warn", "--quiet"]);
    assert_eq!((code, out.as_str()), (1, "a: FAILED\n"), "{err}");
    assert!(!err.contains("SUMS: 2:"), "{err}");
    let (code, out, err) = same_as_sha256sum(m.as_bytes(), &["--status", "--quiet"]);
    assert_eq!((code, out.as_str()), (1, "a: FAILED\n"), "{err}");
    let (code, out, err) = same_as_sha256sum(m.as_bytes(), &["--warn", "--status"]);
    assert_eq!((code, out.as_str(), err.as_str()), (1, "", ""));
}

/// Neighbours of the above: a flag given twice is no error, and
/// `--strict` is not one of the three: it survives any of them, before or
/// after.
#[test]
fn status_warn_quiet_repeat_and_strict_stays() {
    let m = format!("{SHA_ABC}  a\njunk\n");
    let (code, out, err) = same_as_sha256sum(m.as_bytes(), &["--status", "--status"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, out, err) = same_as_sha256sum(m.as_bytes(), &["-w", "--warn", "--quiet"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    for flags in [
        &["--strict", "--warn", "--status"][..],
        &["--status", "--strict", "--quiet"],
        &["--quiet", "--warn", "--strict"],
    ] {
        let (code, _, err) = same_as_sha256sum(m.as_bytes(), flags);
        assert_eq!(code, 1, "{flags:?}: --strict was dropped: {err}");
    }
}

/// The progress bar moves only when a file is done (`Progress::update`),
/// so while one large file is read it shows `0 B/0 B` throughout: a 100 GB
/// sparse file drew `0 B/0 B 0 B/s ETA 0s` for as long as it ran. (Only a
/// slow disk's group shows a rate meanwhile.) Here a 128 MiB sparse file,
/// read by one sha1 reader (about 2 s in a debug build) on a pty
/// (`script`): no frame shows a byte count between 0 and the end.
#[test]
fn progress_moves_while_a_large_file_is_read() {
    if !have("script") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let big = std::fs::File::create(d.path().join("big")).unwrap();
    big.set_len(128 << 20).unwrap();
    drop(big);
    let cmd = format!("{} -a sha1 -j 1 big", bin().display());
    // The frames go to a file, not a pipe nobody drains while we wait.
    let tty_out = d.path().join("tty");
    let child = StdCommand::new("script")
        .args(["-qfc", &cmd, "/dev/null"])
        .current_dir(d.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&tty_out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, _, err) = wait_guarded(child, 60);
    assert_eq!(code, Some(0), "{err}");
    let tty = String::from_utf8_lossy(&std::fs::read(&tty_out).unwrap()).into_owned();
    // Each frame holds `{bytes}/{total_bytes}`: take the bytes before
    // every `/128.00 MiB`.
    let done: Vec<String> = tty
        .match_indices("/128.00 MiB")
        .map(|(i, _)| {
            let before: Vec<&str> = tty[..i].split_whitespace().rev().take(2).collect();
            format!("{} {}", before[1], before[0])
        })
        .collect();
    assert!(!done.is_empty(), "no bar drawn: {tty:?}");
    assert!(
        done.iter().any(|b| b != "0 B" && b != "128.00 MiB"),
        "no frame between 0 and the end: {done:?}"
    );
}

/// A file the manifest lists that is now a FIFO or a symbolic link: the
/// walk skips it, and `--audit` then reports it as nothing (not changed,
/// not missing) and exits 0, with 1 of 3 lines matched. `--help`: "Exit 0
/// only if all matched"; `--update` reports such a path `missing`.
#[test]
fn audit_reports_a_listed_file_that_is_no_longer_regular() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"f", b"abc");
    let m = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        m.path(),
        format!("{SHA_ABC}  f\n{SHA_ABC}  fifo\n{SHA_ABC}  link\n"),
    )
    .unwrap();
    mkfifo(&d.path().join("fifo"));
    std::os::unix::fs::symlink("f", d.path().join("link")).unwrap();
    let out = parsum()
        .current_dir(d.path())
        .arg("--audit")
        .arg(m.path())
        .arg(".")
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("  fifo\n"), "{stdout}{stderr}");
    assert!(stdout.contains("  link\n"), "{stdout}{stderr}");
}

// ---------------------------------------------------------------------
// Checked and fine (not covered elsewhere)
// ---------------------------------------------------------------------

/// Line by line, what `sha256sum -c` does with: names with blanks, tabs,
/// parentheses and `) = `, a leading blank or backslash; the binary `*`
/// marker; a hash alone; upper-case hex; a hash one digit long or short; a
/// name listed twice; no final newline; escapes (`\\`, `\n`, `\r`: the
/// CR is printed raw, as coreutils 9.1 does; an
/// unknown `\x`, a trailing `\`).
#[test]
fn check_lines_like_sha256sum() {
    let ok = |m: &str, out: &str| {
        let (code, o, e) = same_as_sha256sum(m.as_bytes(), &["--strict"]);
        assert_eq!((code, o.as_str(), e.as_str()), (0, out, ""), "{m:?}");
    };
    ok(
        &format!("{SHA_ABC}  sp ace\n{SHA_ABC}  ta\tb\n"),
        "sp ace: OK\nta\tb: OK\n",
    );
    ok(&format!("{SHA_ABC} *a\n"), "a: OK\n");
    ok(&format!("{}  a\n", SHA_ABC.to_uppercase()), "a: OK\n");
    ok(
        &format!("SHA256 ((p)) = {SHA_ABC}\nSHA256 (x) = y) = {SHA_ABC}\n"),
        "(p): OK\nx) = y: OK\n",
    );
    ok(
        &format!("{SHA_ABC}   lead\n\\{SHA_ABC}  \\\\lead\n{SHA_ABC}  \\lead\n"),
        " lead: OK\n\\lead: OK\n\\lead: OK\n",
    );
    ok(
        &format!("\\{SHA_ABC}  new\\nline\n\\{SHA_ABC}  cr\\r\n"),
        "\\new\\nline: OK\ncr\r: OK\n",
    );
    ok(&format!("{SHA_ABC}  a\n{SHA_ABC}  a"), "a: OK\na: OK\n");
    // Improper lines: a hash alone, too long, too short, a bad escape, a
    // trailing backslash, an empty name.
    for bad in [
        format!("{SHA_ABC}\n"),
        format!("{SHA_ABC}0  a\n"),
        format!("{}  a\n", &SHA_ABC[1..]),
        format!("\\{SHA_ABC}  new\\xline\n"),
        format!("\\{SHA_ABC}  a\\\n"),
        format!("{SHA_ABC}  \n"),
    ] {
        let m = format!("{SHA_ABC}  a\n{bad}");
        let (code, out, err) = same_as_sha256sum(m.as_bytes(), &["--warn"]);
        assert_eq!((code, out.as_str()), (0, "a: OK\n"), "{bad:?}: {err}");
        assert!(
            err.contains("SUMS: 2: improperly formatted"),
            "{bad:?}: {err}"
        );
    }
    // A name that does not exist once unescaped, with and without
    // --ignore-missing, and quiet and status.
    let m = format!("\\{SHA_ABC}  gone\\nx\n{SHA_EMPTY}  a\n");
    for flags in [&[][..], &["--ignore-missing"], &["--quiet"], &["--status"]] {
        let (code, _, _) = same_as_sha256sum(m.as_bytes(), flags);
        assert_eq!(code, 1, "{flags:?}");
    }
}

/// A manifest naming a FIFO (no writer), a socket or a directory: each is
/// an error and the check goes on; nothing blocks on the FIFO.
#[test]
fn check_never_opens_a_fifo_or_socket_it_lists() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    mkfifo(&d.path().join("fifo"));
    let _sock = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
    std::fs::create_dir(d.path().join("dir")).unwrap();
    std::fs::write(
        d.path().join("SUMS"),
        format!("{SHA_EMPTY}  fifo\n{SHA_EMPTY}  sock\n{SHA_EMPTY}  dir\n{SHA_ABC}  a\n"),
    )
    .unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-c", "SUMS"])
        .timeout(Duration::from_secs(10))
        .assert()
        .code(1)
        .stdout(
            "fifo: FAILED open or read\nsock: FAILED open or read\n\
             dir: FAILED open or read\na: OK\n",
        )
        .stderr(predicate::str::contains(
            "WARNING: 3 listed files could not be read",
        ));
}

/// Sockets (and, as root, device nodes) in a tree or named on the command
/// line are reported on stderr, never opened, and do not fail the run.
#[test]
fn sockets_and_devices_are_skipped_and_reported() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/f", b"abc");
    let _sock = std::os::unix::net::UnixListener::bind(d.path().join("t/sock")).unwrap();
    let mut named = vec!["t/sock"];
    if is_root() {
        let c = std::ffi::CString::new(d.path().join("t/chr").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; makedev(1, 5) is /dev/zero.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) };
        assert_eq!(rc, 0, "mknod");
        named.push("t/chr");
    }
    parsum()
        .current_dir(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout(predicate::str::ends_with("  t/f\n"))
        .stderr(predicate::str::contains(
            "t/sock: skipped socket (not read)",
        ));
    let a = parsum()
        .current_dir(d.path())
        .args(&named)
        .timeout(Duration::from_secs(10))
        .assert()
        .success()
        .stdout("");
    if is_root() {
        a.stderr(predicate::str::contains(
            "t/chr: skipped character device (not read)",
        ));
    }
}

/// Under `-L`, a link to a FIFO (no writer) or to /dev/zero is skipped as
/// what it points to, never opened: no hang, no endless read.
#[test]
fn follow_never_opens_a_fifo_or_device_behind_a_link() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/f", b"abc");
    mkfifo(&d.path().join("t/fifo"));
    std::os::unix::fs::symlink("fifo", d.path().join("t/to-fifo")).unwrap();
    let zero = Path::new("/dev/zero").exists();
    if zero {
        std::os::unix::fs::symlink("/dev/zero", d.path().join("t/to-zero")).unwrap();
    }
    let a = parsum()
        .current_dir(d.path())
        .args(["-L", "t"])
        .timeout(Duration::from_secs(10))
        .assert()
        .success()
        .stdout(predicate::str::ends_with("  t/f\n"))
        .stderr(predicate::str::contains(
            "t/to-fifo: skipped FIFO (not read)",
        ));
    if zero {
        a.stderr(predicate::str::contains(
            "t/to-zero: skipped character device (not read)",
        ));
    }
}

/// Roots that overlap or repeat are each walked, as sha256sum lists each
/// argument: `parsum a a/b` lists `a/b/f` twice.
#[test]
fn overlapping_roots_are_each_listed_like_sha256sum() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a/b/f", b"1");
    write(d.path(), b"a/g", b"2");
    let out = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["-a", "sha256", "a", "a/b", "a/g"]),
    );
    if have("sha256sum") {
        let (code, theirs, _) = run_std(
            StdCommand::new("sha256sum")
                .current_dir(d.path())
                .args(["a/b/f", "a/g", "a/b/f", "a/g"]),
        );
        assert_eq!((code, out), (0, theirs));
    } else {
        assert_eq!(out.split(|&b| b == b'\n').count(), 5);
    }
}

/// `--tag` output of every coreutils algorithm verifies with the coreutils
/// tool, for names with parentheses, `) = `, blanks and tabs.
#[test]
fn tag_output_verifies_with_coreutils() {
    let d = check_tree();
    // The escaped names are covered for GNU lines (names.rs); keep to the
    // ones a BSD line shows as they are.
    for n in [&b"new\nline"[..], b"cr\r", b"\\lead"] {
        std::fs::remove_file(p(d.path(), n)).unwrap();
    }
    let m = tempfile::NamedTempFile::new().unwrap();
    for (algo, tool) in [
        ("sha256", "sha256sum"),
        ("md5", "md5sum"),
        ("sha1", "sha1sum"),
        ("sha512", "sha512sum"),
    ] {
        if !have(tool) {
            continue;
        }
        let out = stdout_of(parsum().current_dir(d.path()).args(["--tag", "-a", algo]));
        std::fs::write(m.path(), &out).unwrap();
        let (code, stdout, stderr) = run_std(
            StdCommand::new(tool)
                .current_dir(d.path())
                .args(["-c", "--strict"])
                .arg(m.path()),
        );
        assert_eq!(code, 0, "{tool}: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&stdout).matches(": OK\n").count(),
            7,
            "{tool}"
        );
    }
}

/// JSON stays valid for control characters, quotes, backslashes and
/// U+2028: each one escaped as JSON requires (no raw byte below 0x20).
#[test]
fn json_escapes_control_characters() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"ctl\x01\x1f\x7f", b"");
    write(d.path(), b"q\"b\\t\tn\nr\r", b"");
    write(d.path(), "u\u{e9}\u{2028}".as_bytes(), b"");
    let out = stdout_of(parsum().current_dir(d.path()).arg("--json"));
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert!(!text.bytes().any(|b| b < 0x20 && b != b'\n'), "{text:?}");
    assert!(
        lines[0].starts_with("{\"path\":\"ctl\\u0001\\u001f\\u007f\","),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("{\"path\":\"q\\\"b\\\\t\\tn\\nr\\r\","),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("{\"path\":\"u\u{e9}"), "{}", lines[2]);
    assert!(!lines.iter().any(|l| l.contains("path_hex")), "{text}");
}

/// SIGINT or SIGTERM in the middle of `-o SUMS`: the old SUMS is left as it
/// was, no temporary file is left beside it, and the exit says so.
#[test]
fn interrupted_dash_o_keeps_the_old_file() {
    let d = tempfile::tempdir().unwrap();
    // 4 GiB of holes: long enough to be interrupted, no disk used.
    let big = std::fs::File::create(d.path().join("big")).unwrap();
    big.set_len(4 << 30).unwrap();
    drop(big);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        std::fs::write(d.path().join("SUMS"), b"old\n").unwrap();
        let mut cmd = StdCommand::new(bin());
        // As from a terminal: a test run started in the background by a
        // shell without job control inherits SIGINT ignored, which parsum
        // (as any program) keeps, and then hashed the whole file.
        // SAFETY: `signal` is async-signal-safe, as `pre_exec` requires.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(sig, libc::SIG_DFL);
                Ok(())
            });
        }
        let child = cmd
            .args([
                "--no-progress",
                "-a",
                "sha512",
                "-j",
                "1",
                "-o",
                "SUMS",
                "big",
            ])
            .current_dir(d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        let start = Instant::now();
        let (code, _, err) = wait_guarded(child, 20);
        assert!(start.elapsed() < Duration::from_secs(5), "slow to stop");
        assert_ne!(code, Some(0), "{err}");
        assert_eq!(std::fs::read(d.path().join("SUMS")).unwrap(), b"old\n");
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["SUMS", "big"]);
    }
}

/// `-o` through a dangling symbolic link creates the file it names and
/// keeps the link, as `>` does.
#[test]
fn dash_o_through_a_dangling_link_creates_its_target() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    std::os::unix::fs::symlink("target", d.path().join("link")).unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-o", "link", "t"])
        .assert()
        .success();
    assert!(std::fs::symlink_metadata(d.path().join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    let got = std::fs::read_to_string(d.path().join("target")).unwrap();
    assert!(got.ends_with("  t/a\n"), "{got}");
}

/// As root, the permission errors come from a non-root user
/// (`setpriv`): an unreadable file, an unlistable and an untraversable
/// directory are each reported, the rest is hashed, exit 1; `-c` of the
/// same names says what `sha256sum -c` says. Skipped where not root, or
/// where the user cannot reach the binary.
#[test]
fn permission_errors_as_an_unprivileged_user() {
    if !is_root() || !have("setpriv") {
        eprintln!("note: needs root and setpriv; skipping");
        return;
    }
    let as_nobody = |dir: &Path| {
        let mut c = StdCommand::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(bin())
            .arg("--no-progress")
            .current_dir(dir);
        c
    };
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, _) = run_std(as_nobody(r).arg("--version"));
    if code != 0 {
        eprintln!("note: nobody cannot run {}; skipping", bin().display());
        return;
    }
    write(r, b"a", b"abc");
    write(r, b"secret", b"abc");
    write(r, b"unlistable/f", b"abc");
    write(r, b"closed/f", b"abc");
    let mode = |n: &str, m: u32| {
        std::fs::set_permissions(r.join(n), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("secret", 0o000);
    mode("unlistable", 0o311);
    mode("closed", 0o644);
    let (code, out, err) = run_std(as_nobody(r).args(["-a", "sha256", "."]));
    assert_eq!(
        (code, String::from_utf8_lossy(&out).into_owned()),
        (1, format!("{SHA_ABC}  a\n")),
        "{err}"
    );
    for e in [
        "parsum: closed: Permission denied\n",
        "parsum: secret: Permission denied\n",
        "parsum: unlistable: Permission denied\n",
    ] {
        assert!(err.contains(e), "{e}: {err}");
    }
    // -c: an unreadable file, a file in an untraversable directory, a
    // file in an unlistable (but traversable) one; with and without
    // --ignore-missing (neither is missing).
    std::fs::write(
        r.join("SUMS"),
        format!("{SHA_ABC}  secret\n{SHA_ABC}  closed/f\n{SHA_ABC}  unlistable/f\n{SHA_ABC}  a\n"),
    )
    .unwrap();
    for flags in [&[][..], &["--ignore-missing"], &["--quiet"]] {
        let (code, out, err) = run_std(as_nobody(r).arg("-c").args(flags).arg("SUMS"));
        assert_eq!(code, 1, "{flags:?}: {err}");
        let out = String::from_utf8_lossy(&out).into_owned();
        if have("sha256sum") {
            let (c2, o2, e2) = run_std(
                StdCommand::new("setpriv")
                    .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                    .args(["sha256sum", "-c"])
                    .args(flags)
                    .arg("SUMS")
                    .current_dir(r),
            );
            assert_eq!(
                (code, out, err),
                (
                    c2,
                    String::from_utf8_lossy(&o2).into_owned(),
                    e2.replace("sha256sum:", "parsum:")
                ),
                "{flags:?}"
            );
        } else {
            assert!(out.contains("secret: FAILED open or read\n"), "{out}");
        }
    }
}
