//! Arguments and exit statuses as coreutils and find behave: `-`, `./`,
//! `-L` loops, `--device-jobs` checks, unreadable manifests, and coreutils'
//! wording in messages.

mod common;
use common::*;

use predicates::prelude::*;
use std::process::Command as StdCommand;

const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn dash_hashes_standard_input_like_sha256sum() {
    let ours = stdout_of(parsum().args(["-a", "sha256", "-"]).write_stdin("abc"));
    assert_eq!(ours, format!("{SHA_ABC}  -\n").as_bytes());
    if have("sha256sum") {
        let mut c = StdCommand::new("sha256sum");
        c.arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"abc").unwrap();
        assert_eq!(child.wait_with_output().unwrap().stdout, ours);
    }
    // In argument order with other paths.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"f", b"abc");
    let out = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["-a", "sha256", "f", "-", "f"])
            .write_stdin("abc"),
    );
    assert_eq!(
        out,
        format!("{SHA_ABC}  f\n{SHA_ABC}  -\n{SHA_ABC}  f\n").as_bytes()
    );
}

/// Standard input is read to its end by the first PATH `-`: a second one
/// had nothing left to read. Tree mode printed the empty stream's digest
/// under `-` (as `sha256sum - -` does), and `--audit SUMS - -` reported
/// the same input `matched` then `changed`. A repeated `-` is now a usage
/// error (exit 2, nothing read or printed), in tree mode and `--audit`;
/// `./-` names a file called `-`, any number of times.
#[test]
fn a_repeated_dash_path_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"-", b"abc");
    std::fs::write(d.path().join("SUMS"), format!("{SHA_ABC}  -\n")).unwrap();
    for args in [
        &["-", "-"][..],
        &["-", "./-", "-"],
        &["--audit", "SUMS", "-", "-"],
        &["--json", "-", "-"],
    ] {
        parsum()
            .current_dir(d.path())
            .args(["-a", "sha256"])
            .args(args)
            .write_stdin("abc")
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(
                "standard input ('-') can be a PATH only once",
            ));
    }
    let out = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["-a", "sha256", "./-", "-", "./-"])
            .write_stdin("abc"),
    );
    assert_eq!(
        out,
        format!("{SHA_ABC}  ./-\n{SHA_ABC}  -\n{SHA_ABC}  ./-\n").as_bytes()
    );
}

/// Only exactly `-` is standard input: `-/` is a directory called `-`, as
/// coreutils compares the name byte for byte. Rust's `Path` `==` compares
/// components, so `-/` equalled `-`: `- -/` was refused as a repeated
/// `-`, `--audit - -/` and `--update S -/` as standard input, and `-c -/`,
/// `--audit -/`, `--verify -/` read standard input, `-o -/` wrote to
/// standard output, none of them the directory.
#[test]
fn a_directory_called_dash_with_a_slash_is_not_standard_input() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("-")).unwrap();
    write(d.path(), b"-/f", b"abc");
    let run = |args: &[&str]| {
        parsum()
            .current_dir(d.path())
            .args(["-a", "sha256"])
            .args(args)
            .write_stdin("abc")
            .output()
            .unwrap()
    };
    let out = run(&["--", "-", "-/"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{SHA_ABC}  -\n{SHA_ABC}  -/f\n").as_bytes()
    );
    let sums = d.path().join("SUMS");
    std::fs::write(&sums, format!("{SHA_ABC}  -/f\n")).unwrap();
    let out = run(&["--audit", "SUMS", "--", "-/"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let state = d.path().join("STATE");
    let out = run(&["--update", "STATE", "--", "-/"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(state.exists());
    // The directory `-/` as MANIFEST, STATE or -o: Is a directory, and
    // standard input (a valid manifest here) is not read.
    for args in [
        &["-c", "--", "-/"][..],
        &["--audit=-/", "--", "-/"],
        &["--verify=-/"],
        &["-o=-/", "--", "-/f"],
    ] {
        let out = run(args);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("-/") && err.contains("Is a directory"),
            "{args:?}: {err}"
        );
    }
}

/// `parsum .` prints bare names, but a file called `-` at its top as `./-`:
/// a `-` line is standard input to `-c` (and to `sha256sum -c`), so the
/// manifest `parsum .` wrote failed its own check, and `--audit` of it
/// took the file for standard input's line. Its place in the output is
/// `-`'s; a directory called `-` is `./-/…` too.
#[test]
fn dot_prints_the_file_called_dash_as_dot_slash_dash() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"!", b"bang");
    write(d.path(), b"-", b"abc");
    write(d.path(), b"-a", b"dash a");
    write(d.path(), b"b/-", b"below");
    let out = stdout_of(parsum().current_dir(d.path()).args(["-a", "sha256", "."]));
    let names: Vec<String> = String::from_utf8(out.clone())
        .unwrap()
        .lines()
        .map(|l| l[66..].to_string())
        .collect();
    assert_eq!(names, ["!", "./-", "-a", "b/-"]);
    std::fs::write(d.path().join("SUMS"), &out).unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-c", "SUMS"])
        .write_stdin("not the file")
        .assert()
        .success();
    parsum()
        .current_dir(d.path())
        .args(["--audit", "SUMS", "--exclude", "SUMS"])
        .assert()
        .success()
        .stdout("matched  !\nmatched  ./-\nmatched  -a\nmatched  b/-\n");
    if have("sha256sum") {
        let (code, _, err) = run_std(
            StdCommand::new("timeout")
                .current_dir(d.path())
                .args(["30", "sha256sum", "-c", "--quiet", "SUMS"])
                .stdin(std::process::Stdio::null()),
        );
        assert_eq!(code, 0, "{err}");
    }
}

#[test]
fn dot_slash_root_prints_dot_slash_like_find() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"x");
    write(d.path(), b"sub/b", b"y");
    let out = stdout_of(parsum().current_dir(d.path()).arg("./"));
    let names: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| l[66..].to_string())
        .collect();
    assert_eq!(names, ["./a", "./sub/b"]);
    let find = run_std(
        StdCommand::new("find")
            .current_dir(d.path())
            .args(["./", "-type", "f"]),
    );
    let mut found: Vec<String> = String::from_utf8(find.1)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    found.sort();
    assert_eq!(found, names);
    // "." itself keeps the bare names, as `sha256sum *` writes them.
    let out = stdout_of(parsum().current_dir(d.path()).arg("."));
    assert!(String::from_utf8(out).unwrap().contains("  sub/b\n"));
}

#[test]
fn symlink_loop_under_follow_exits_1_like_find() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"d/f", b"x");
    std::os::unix::fs::symlink("..", d.path().join("d/up")).unwrap();
    parsum()
        .current_dir(d.path())
        .arg("-L")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("  d/f\n"))
        .stderr(
            predicate::str::contains("d/up: File system loop detected")
                .and(predicate::str::contains("1 error (1 loop)")),
        );
    let (code, _, _) = run_std(
        StdCommand::new("find")
            .current_dir(d.path())
            .args(["-L", "."]),
    );
    assert_eq!(code, 1, "find -L exits 1 on a loop");
}

#[test]
fn device_jobs_for_a_missing_device_is_a_usage_error() {
    for spec in ["nosuchdisk=1", "/dev/nosuchdisk=2", "0:99999=1"] {
        parsum()
            .args(["--device-jobs", spec, "."])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("no such device"));
    }
    // The device of "." by MAJOR:MINOR exists.
    let m = std::fs::metadata(".").unwrap();
    use std::os::unix::fs::MetadataExt;
    let spec = format!("{}:{}=1", libc::major(m.dev()), libc::minor(m.dev()));
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"x");
    parsum()
        .args(["--device-jobs", &spec])
        .arg(d.path())
        .assert()
        .success();
}

#[test]
fn unreadable_manifest_same_status_in_check_and_audit() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing");
    let c = parsum().arg("-c").arg(&missing).output().unwrap();
    let a = parsum()
        .arg("--audit")
        .arg(&missing)
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(c.status.code(), Some(1));
    assert_eq!(a.status.code(), c.status.code());
    for o in [&c, &a] {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("missing: No such file or directory\n"), "{e}");
    }
    // A directory as manifest: coreutils' "Is a directory", status 1.
    let c = parsum().arg("-c").arg(d.path()).output().unwrap();
    let a = parsum()
        .arg("--audit")
        .arg(d.path())
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!((c.status.code(), a.status.code()), (Some(1), Some(1)));
    assert!(String::from_utf8_lossy(&c.stderr).contains(": Is a directory"));
    if have("sha256sum") {
        let (code, _, _) = run_std(StdCommand::new("sha256sum").arg("-c").arg(&missing));
        assert_eq!(Some(code), c.status.code());
    }
}

#[test]
fn messages_use_coreutils_wording() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("dir")).unwrap();
    let m = d.path().join("m");
    std::fs::write(&m, format!("{SHA_ABC}  dir\n{SHA_ABC}  'gone file'\n")).unwrap();
    let ours = parsum()
        .current_dir(d.path())
        .args(["-c", "m"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&ours.stderr).into_owned();
    assert!(!err.contains("os error"), "{err}");
    if have("sha256sum") {
        let (code, out, theirs) = run_std(
            StdCommand::new("sha256sum")
                .current_dir(d.path())
                .args(["-c", "m"]),
        );
        assert_eq!(err, theirs.replace("sha256sum:", "parsum:"));
        assert_eq!((ours.status.code(), ours.stdout), (Some(code), out));
    } else {
        assert!(err.contains("parsum: dir: Is a directory\n"), "{err}");
    }
    // A bad manifest on stdin, with --warn.
    parsum()
        .args(["-c", "-w", "-a", "sha256"])
        .write_stdin("junk\n")
        .assert()
        .code(1)
        .stderr(
            "parsum: 'standard input': 1: improperly formatted SHA256 checksum line\n\
             parsum: 'standard input': no properly formatted checksum lines found\n",
        );
}

#[test]
fn summary_and_help() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"x");
    let f = write(d.path(), b"secret", b"x");
    let mut code_expected = 0;
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
        code_expected = 1;
    }
    let out = parsum().arg(d.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code_expected));
    if code_expected == 1 {
        assert!(err.contains("1 file, 1 B, 0 skipped, 1 error in"), "{err}");
    } else {
        assert!(
            err.contains("2 files, 2 B, 0 skipped, 0 errors in"),
            "{err}"
        );
    }
    parsum().arg("--help").assert().success().stdout(
        predicate::str::contains("--no-summary").and(predicate::str::contains("2 usage error")),
    );
    parsum().arg("--no-such-flag").assert().code(2);
}

/// `--device-jobs DEV=N` is bounded like `--jobs` (1..=1024): a huge N made
/// the thread pool panic (exit 101) instead of a usage error.
#[test]
fn device_jobs_too_many_readers_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"x");
    for n in [
        "1025",
        "100000",
        "18446744073709551615",
        "99999999999999999999999",
    ] {
        parsum()
            .current_dir(d.path())
            .args(["--device-jobs", &format!(".={n}"), "."])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("N must be"));
    }
    parsum()
        .current_dir(d.path())
        .args(["--device-jobs", ".=1024", "."])
        .assert()
        .success();
}
