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
