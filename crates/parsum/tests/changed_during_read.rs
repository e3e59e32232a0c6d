//! A file truncated while parsum reads it is reported as changed, with exit
//! status 1, and never crashes (no mmap, so no SIGBUS).

mod common;
use common::*;

use std::time::Duration;

#[test]
fn truncated_during_read_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big");
    // A 4 GiB sparse file: MD5 needs seconds for it, the truncation below
    // comes after 300 ms, so it lands mid-read on any machine.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    write(d.path(), b"small", b"abc");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("parsum"))
        .args(["--no-progress", "-a", "md5", "--jobs", "1"])
        .arg(d.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    // Guard: the run must end promptly after the truncation.
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("parsum did not finish after the truncation");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("big: changed during read"), "{stderr}");
    assert!(
        stdout.contains("/small\n") && !stdout.contains("/big\n"),
        "{stdout}"
    );
}
