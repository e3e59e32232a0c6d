//! Output that cannot be written: every mode reports the write error on
//! stderr and exits 1, after its summary; a reader that quits (`| head`)
//! stops the run early, without a message.

mod common;
use common::*;

use std::io::Read;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

fn full() -> Option<std::fs::File> {
    if !Path::new("/dev/full").exists() {
        eprintln!("note: no /dev/full; skipping");
        return None;
    }
    Some(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap(),
    )
}

/// Runs parsum in `dir` with stdout to /dev/full, under a 30 s guard;
/// returns the exit code and stderr.
fn to_full(dir: &Path, args: &[&str]) -> Option<(i32, String)> {
    let f = full()?;
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("parsum"))
        .arg("--no-progress")
        .args(args)
        .current_dir(dir)
        .stdout(f)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "parsum hangs");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    Some((status.code().unwrap(), err))
}

#[test]
fn write_errors_are_reported_in_every_mode() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    let m = d.path().join("m");
    std::fs::write(
        &m,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a\n",
    )
    .unwrap();
    let runs: [&[&str]; 3] = [&["-a", "sha256", "a"], &["-c", "m"], &["--audit", "m", "a"]];
    for args in runs {
        let Some((code, err)) = to_full(d.path(), args) else {
            return;
        };
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("parsum: write error: No space left on device\n"),
            "{err}"
        );
    }
    // The tree summary still comes after the error.
    let Some((_, err)) = to_full(d.path(), &["a"]) else {
        return;
    };
    assert!(err.contains("parsum: 1 file,"), "{err}");
}

#[test]
fn a_reader_that_quits_stops_the_run() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..3000 {
        write(d.path(), format!("f{i:05}").as_bytes(), b"x");
    }
    let start = Instant::now();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("parsum"))
        .arg("--no-progress")
        .arg(d.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // stdout is closed here: the next write fails with EPIPE.
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "parsum did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        !err.contains("write error"),
        "a closed pipe is no news: {err}"
    );
}

/// Whether `pid` has a descriptor open on `path`.
fn has_open(pid: u32, path: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
    })
}

/// A reader that quit is no news whatever `-o` calls the pipe: `-o -` was
/// silent, but `-o /dev/stdout`, `-o /dev/fd/1` and `-o FIFO` said
/// `write error: ...: Broken pipe`. All now end silently with exit 1, as
/// coreutils does on any pipe (its default SIGPIPE). Standard input is the
/// root, so nothing is written before the reader is gone.
#[test]
fn a_reader_that_quit_is_no_news_under_any_name_of_the_pipe() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    for out in ["-", "/dev/stdout", "/dev/fd/1", "fifo"] {
        // The FIFO's reader: opened first (without waiting for a writer),
        // so that parsum's open for writing does not wait either.
        let reader = (out == "fifo").then(|| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .unwrap()
        });
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("parsum"))
            .args(["--no-progress", "-o", out, "-"])
            .current_dir(d.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if reader.is_some() {
            let start = Instant::now();
            while !has_open(child.id(), &fifo) {
                assert!(start.elapsed() < Duration::from_secs(20), "{out}: no open");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Both readers quit, then standard input ends: the write fails.
        drop(reader);
        drop(child.stdout.take());
        drop(child.stdin.take());
        let (code, _, err) = wait_guarded(child, 20);
        assert_eq!(code, Some(1), "{out}: {err}");
        assert!(!err.contains("write error"), "{out}: {err}");
    }
}
