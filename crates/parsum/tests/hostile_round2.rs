//! A second hostile round, on the code of the first round's fixes: the
//! output file (`outfile.rs`), closed standard streams, the progress
//! ticker, `--audit`, `--exclude` and the bounded manifest line reader.
//! The tests under "Defects" each failed when this round found it (four,
//! all fixed: an output name near NAME_MAX, `-o S/`, a leftover temporary
//! name with our PID, a hard link to the output under another name), and
//! `-` read or written as a file where `-c -` reads standard input. The
//! MPI round (`mpi_hostile.rs`) added one: `-o /dev/stdout >> log` replaced
//! `log`, losing its earlier lines; an open descriptor named through /proc
//! is now written into, and `--update` refuses a STATE that is a stream.

mod common;
use common::*;

use std::time::Duration;

// ---- Defects ----

/// Runs `script` with `sh -c` in `dir`, `$0` being parsum, under a 30 s
/// guard; returns (exit code, stderr).
fn sh_with_parsum(dir: &std::path::Path, script: &str) -> (i32, String) {
    let out = std::process::Command::new("timeout")
        .args(["30", "sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_parsum"))
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `-o /dev/stdout >> log` followed /dev/stdout to `log` and replaced it by
/// rename: what `>>` had appended before was lost. A name of one of the
/// process's open descriptors (`/dev/stdout`, `/dev/fd/N`,
/// `/proc/self/fd/N`) is that descriptor, written at its offset and in its
/// append mode, as `-o -` writes to stdout; one open only for reading is
/// refused before any work.
#[test]
fn an_open_descriptor_named_through_proc_is_written_into() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    let line = stdout_of(parsum().current_dir(d.path()).arg("t"));
    let line = String::from_utf8(line).unwrap();
    let cases = [
        (
            "echo earlier > log; \"$0\" --no-progress -o /dev/stdout t >> log",
            "earlier\n",
        ),
        (
            "echo three > log; exec 3>>log; \"$0\" --no-progress -o /dev/fd/3 t",
            "three\n",
        ),
        (
            "{ echo header; \"$0\" --no-progress -o /proc/self/fd/1 t; } > log",
            "header\n",
        ),
    ];
    for (script, before) in cases {
        let (code, err) = sh_with_parsum(d.path(), script);
        assert_eq!(code, 0, "{script}: {err}");
        let log = std::fs::read_to_string(d.path().join("log")).unwrap();
        assert_eq!(log, format!("{before}{line}"), "{script}");
    }
    // Open only for reading: refused before any file is hashed.
    let (code, err) = sh_with_parsum(d.path(), "\"$0\" --no-progress -o /dev/stdin t < log");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/dev/stdin: Bad file descriptor"), "{err}");
    assert!(!err.contains("1 file"), "{err}");
}

/// `--update /dev/stdout t | cat` hung: STATE is read before it is
/// replaced, and reopening the pipe's end for reading waits on ourselves.
/// A STATE that is a stream (FIFO, device, open descriptor) cannot be read
/// and then replaced whole: a usage error, before any read.
#[test]
fn update_refuses_a_state_that_is_a_stream() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    mkfifo(&d.path().join("fifo"));
    for state in ["/dev/stdout", "/dev/fd/1", "fifo", "/dev/null"] {
        let (code, err) = sh_with_parsum(
            d.path(),
            &format!("\"$0\" --no-progress --update {state} t | cat"),
        );
        assert_eq!(code, 0, "the pipeline's status is cat's: {err}");
        assert!(
            err.contains(&format!(
                "parsum: {state}: --update reads STATE, then replaces it whole"
            )),
            "{state}: {err}"
        );
        let (code, _) = sh_with_parsum(
            d.path(),
            &format!("\"$0\" --no-progress --update {state} t > out"),
        );
        assert_eq!(code, 2, "{state}");
    }
    let ft = std::fs::symlink_metadata(d.path().join("fifo"))
        .unwrap()
        .file_type();
    use std::os::unix::fs::FileTypeExt;
    assert!(ft.is_fifo());
    // A link to a regular file is a STATE like any other.
    std::os::unix::fs::symlink("st", d.path().join("lnk")).unwrap();
    parsum()
        .current_dir(d.path())
        .args(["--update", "lnk", "t"])
        .assert()
        .success();
    assert!(d.path().join("st").is_file());
}

/// `-o NAME` with NAME 240 bytes long: NAME is valid, but the temporary
/// `.NAME.parsum-PID.tmp` is past NAME_MAX, and the run failed at the
/// commit, after all the hashing, with `File name too long`. Same for
/// `--update`'s STATE.
#[test]
fn an_output_name_near_name_max_is_written() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    for len in [240, 255] {
        let name = "o".repeat(len);
        parsum()
            .current_dir(d.path())
            .args(["-a", "sha256", "-o", &name, "t"])
            .assert()
            .success();
        let got = std::fs::read_to_string(d.path().join(&name)).unwrap();
        assert!(got.ends_with("  t/a\n"), "{got}");
        // A second run into the tree itself leaves out its output.
        let got = stdout_of(
            parsum()
                .current_dir(d.path())
                .args(["-a", "sha256", "-o", &name, "."]),
        );
        assert!(got.is_empty());
        let out = std::fs::read_to_string(d.path().join(&name)).unwrap();
        assert!(!out.contains(&name[..10]), "{out}");
        std::fs::remove_file(d.path().join(&name)).unwrap();
    }
    let state = "s".repeat(250);
    parsum()
        .current_dir(d.path())
        .args(["--update", &state, "t"])
        .assert()
        .success();
    assert!(d.path().join(&state).is_file());
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("parsum"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `ln SUMS keep; parsum -o SUMS .`: `keep` is another name of the SUMS
/// being replaced. It stays after the run, holding the old SUMS: it is
/// data. One process left it out (every name of the old file's inode was
/// "the output"), while MPI, which goes by name and inode, listed it.
#[test]
fn a_hard_link_to_the_output_under_another_name_is_data() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    parsum()
        .current_dir(d.path())
        .args(["-o", "SUMS", "."])
        .assert()
        .success();
    std::fs::hard_link(d.path().join("SUMS"), d.path().join("keep")).unwrap();
    let old = std::fs::read(d.path().join("SUMS")).unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-a", "sha256", "-o", "SUMS", "."])
        .assert()
        .success();
    let text = std::fs::read_to_string(d.path().join("SUMS")).unwrap();
    let lines: Vec<&str> = text.lines().map(|l| &l[66..]).collect();
    assert_eq!(lines, ["a", "keep"], "{text}");
    assert_eq!(std::fs::read(d.path().join("keep")).unwrap(), old);
}

/// `-o S/` (S not there) and `-o x/.`: names that can only be directories.
/// The run hashed the whole tree, then failed at the rename (`write error:
/// S/: Not a directory`); a directory is to be refused before any work,
/// as `-o DIR` is (and as a shell's `> S/` is).
#[test]
fn an_output_spelled_as_a_directory_is_refused_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    std::os::unix::fs::symlink("new/", d.path().join("link")).unwrap();
    for o in ["S/", "x/.", "link"] {
        let out = parsum()
            .current_dir(d.path())
            .args(["-o", o, "t"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{o}: {err}");
        assert!(err.contains("Is a directory"), "{o}: {err}");
        assert!(!err.contains("1 file"), "{o}: hashed first: {err}");
    }
    let mut left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["link", "t"]);
}

/// A temporary name left by a killed run whose PID this run has again
/// (PIDs repeat: in a container parsum is often PID 1 every time). The
/// commit's link to `.S.parsum-1.tmp` failed with `File exists` after all
/// the hashing, and every later run as PID 1 failed the same way. Run as
/// PID 1 in a new PID namespace (root only; skipped, with a note, else).
#[test]
fn a_leftover_temporary_name_with_our_pid_does_not_fail_the_commit() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    write(d.path(), b"t/.S.parsum-1.tmp", b"half");
    write(d.path(), b"t/.S.parsum-1-1.tmp", b"half");
    let bin = assert_cmd::cargo::cargo_bin("parsum");
    if !unshare_allows("-pf") {
        return;
    }
    let (code, _, err) = run_std(
        std::process::Command::new("timeout")
            .args(["30", "unshare", "-pf"])
            .arg(&bin)
            .args(["--no-progress", "-a", "sha256", "-o", "t/S", "t"])
            .current_dir(d.path()),
    );
    assert_eq!(code, 0, "{err}");
    let sums = std::fs::read_to_string(d.path().join("t/S")).unwrap();
    assert_eq!(
        sums,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  t/a\n"
    );
}

/// Without /proc mounted (a container or chroot), `-o` and `--update`
/// hashed everything and then failed with `No such file or directory`:
/// the unnamed temporary file is named through `/proc/self/fd` at the
/// commit. Now the temporary file is named from the start there.
#[test]
fn an_output_is_written_without_proc() {
    let ok = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "umount -l /proc",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("note: cannot unmount /proc in a mount namespace here; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    let bin = assert_cmd::cargo::cargo_bin("parsum");
    for args in [&["-o", "t/S", "t"][..], &["--update", "t/state", "t"][..]] {
        let (code, _, err) = run_std(
            std::process::Command::new("timeout")
                .args([
                    "30",
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                ])
                .arg(r#"umount -l /proc && exec "$0" "$@""#)
                .arg(&bin)
                .args(["--no-progress", "-a", "sha256"])
                .args(args)
                .current_dir(d.path()),
        );
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let sums = std::fs::read_to_string(d.path().join("t/S")).unwrap();
    assert_eq!(
        sums,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  t/a\n"
    );
    let state = std::fs::read_to_string(d.path().join("t/state")).unwrap();
    assert!(state.contains("\"t/a\""), "{state}");
    assert!(
        !state.contains("t/state") && !state.contains("parsum-"),
        "the state lists neither itself nor its temporary file: {state}"
    );
    let mut left: Vec<_> = std::fs::read_dir(d.path().join("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["S", "a", "state"], "no temporary file is left");
}

// ---- `-` is a standard stream wherever `-c -` is ----

/// `--audit -` and `--verify -` said `-: No such file or directory` where
/// `-c -` reads standard input; with a file called `-` in the directory,
/// they read that file instead. Now all three read standard input, and
/// name it `'standard input'` in messages, as `-c` does.
#[test]
fn audit_and_verify_read_standard_input_for_dash() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    write(d.path(), b"t/b", b"");
    let sums = stdout_of(parsum().current_dir(d.path()).args(["-a", "sha256", "t"]));
    // A decoy called `-` that lists nothing that matches.
    write(d.path(), b"-", b"# not this one\n");
    let audit = parsum()
        .current_dir(d.path())
        .args(["--audit", "-", "t"])
        .write_stdin(sums.clone())
        .timeout(Duration::from_secs(10))
        .assert()
        .success();
    let out = String::from_utf8_lossy(&audit.get_output().stdout).into_owned();
    assert_eq!(out, "matched  t/a\nmatched  t/b\n");
    let verify = parsum()
        .current_dir(d.path())
        .args(["--verify", "-"])
        .write_stdin(sums.clone())
        .timeout(Duration::from_secs(10))
        .assert()
        .success();
    let out = String::from_utf8_lossy(&verify.get_output().stdout).into_owned();
    assert_eq!(out, "t/a: OK\nt/b: OK\n");
    // A bad line is named by the stream, not by a file called `-`.
    for mode in ["--audit", "--verify"] {
        let bad = parsum()
            .current_dir(d.path())
            .args([mode, "-"])
            .write_stdin("garbage\n")
            .timeout(Duration::from_secs(10))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains("'standard input'"), "{mode}: {err}");
        assert_ne!(bad.status.code(), Some(0), "{mode}");
    }
}

/// `-o -` wrote a file called `-`; it is standard output now, as in curl
/// and wget. `--update -` wrote a file called `-` too, but STATE is read and
/// rewritten, which standard input cannot be: a usage error, before any
/// work, and nothing is created.
#[test]
fn dash_as_output_is_standard_output_and_as_state_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    let plain = stdout_of(parsum().current_dir(d.path()).args(["-a", "sha256", "t"]));
    let dashed = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["-a", "sha256", "-o", "-", "t"]),
    );
    assert_eq!(dashed, plain);
    assert!(!d.path().join("-").exists(), "no file called -");
    let out = parsum()
        .current_dir(d.path())
        .args(["--update", "-", "t"])
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--update"));
    assert!(out.stdout.is_empty());
    assert!(!d.path().join("-").exists(), "no file called -");
    // `./-` still names a file.
    parsum()
        .current_dir(d.path())
        .args(["--update", "./-", "t"])
        .timeout(Duration::from_secs(10))
        .assert()
        .success();
    assert!(d.path().join("-").is_file());
}
