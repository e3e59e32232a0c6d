//! Ctrl-C (SIGINT): the process dies of it, as without a handler, and a
//! progress bar drawn on a terminal is cleared first (it was left half
//! drawn). The terminal is a pseudo-terminal on stderr; skipped, with a
//! note, where none can be opened.

mod common;
use common::*;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `parsum ARGS` reading a standard input that never ends (so it runs until
/// it is interrupted), with stderr on `stderr`, SIGINT as from a terminal.
fn spawn_on_stdin(args: &[&str], stderr: Stdio) -> Child {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("parsum"));
    // A test started in the background by a shell without job control
    // inherits SIGINT ignored, which parsum (as any program) keeps.
    // SAFETY: `signal` is async-signal-safe, as `pre_exec` requires.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// A pseudo-terminal of 80 columns: (master, slave).
fn pty() -> Option<(File, File)> {
    let master = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/ptmx")
        .ok()?;
    let fd = master.as_raw_fd();
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `fd` is a ptmx master; `name` has room for its slave's name.
    let ok = unsafe {
        libc::grantpt(fd) == 0
            && libc::unlockpt(fd) == 0
            && libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) == 0
    };
    if !ok {
        return None;
    }
    // SAFETY: ptsname_r wrote a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(std::ffi::OsStr::from_bytes(name.to_bytes()))
        .ok()?;
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    Some((master, slave))
}

#[test]
fn sigint_clears_the_bar_and_ends_by_sigint() {
    let Some((mut master, slave)) = pty() else {
        eprintln!("note: no pseudo-terminal; skipping the progress bar's SIGINT test");
        return;
    };
    let child = spawn_on_stdin(&["-"], Stdio::from(slave));
    // Everything written on the terminal, until its last writer is gone.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child, the slave's last holder, ended.
            while let Ok(n @ 1..) = master.read(&mut buf) {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let drawn = |s: &[u8]| s.windows(3).any(|w| w == b"ETA");
    let start = Instant::now();
    while !drawn(&seen.lock().unwrap()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no bar drawn: {:?}",
            String::from_utf8_lossy(&seen.lock().unwrap())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait_output_guarded(child, 20);
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
    reader.join().unwrap();
    let seen = seen.lock().unwrap();
    // The bar is drawn as `\r\x1b[2K` and its text; cleared, nothing follows
    // the last clear.
    let clear = b"\x1b[2K";
    let last = seen
        .windows(clear.len())
        .rposition(|w| w == clear)
        .expect("the bar clears its line");
    assert_eq!(
        String::from_utf8_lossy(&seen[last + clear.len()..]),
        "",
        "the bar is left on the terminal"
    );
    assert!(out.stdout.is_empty());
}

/// Without a terminal there is no bar: SIGINT ends the run by SIGINT (130
/// in a shell), with nothing written on stderr or stdout.
#[test]
fn sigint_without_a_terminal_ends_by_sigint_and_writes_nothing() {
    let child = spawn_on_stdin(&["-"], Stdio::piped());
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait_output_guarded(child, 20);
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(out.stdout.is_empty());
}
