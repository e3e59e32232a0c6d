//! Ctrl-C (SIGINT), `kill` (SIGTERM), a terminal's hang-up (SIGHUP) and
//! `Ctrl-\` (SIGQUIT): the process dies of the signal, as without a
//! handler, and a progress bar
//! drawn on a terminal is cleared first (it was left half drawn); a signal
//! the process was started with ignored stays ignored. The terminal is a
//! pseudo-terminal on stderr; skipped, with a note, where none can be
//! opened.

mod common;
use common::*;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The signals that clear the bar.
const SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// `parsum ARGS` reading a standard input that never ends (so it runs until
/// it is interrupted), with stderr on `stderr`, [`SIGNALS`] at their
/// default action but those in `ignored`, and no core dump (SIGQUIT's
/// default action) written.
fn spawn_on_stdin(args: &[&str], stderr: Stdio, ignored: &'static [i32]) -> Child {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("parsum"));
    // A test started in the background by a shell without job control
    // inherits SIGINT ignored, which parsum (as any program) keeps.
    // SAFETY: `signal` is async-signal-safe, as `pre_exec` requires;
    // `setrlimit` is a bare system call, taking no lock.
    unsafe {
        c.pre_exec(move || {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            for sig in SIGNALS {
                let action = if ignored.contains(&sig) {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                };
                libc::signal(sig, action);
            }
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

/// Sends `sig` to our own child `child`.
fn kill(child: &Child, sig: i32) {
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// That the bar was cleared at the end of `seen`, everything written on
/// the terminal: it is drawn as `\r\x1b[2K` and its text; cleared, nothing
/// follows the last clear.
fn assert_cleared(seen: &[u8], what: &str) {
    let clear = b"\x1b[2K";
    let last = seen
        .windows(clear.len())
        .rposition(|w| w == clear)
        .expect("the bar clears its line");
    assert_eq!(
        String::from_utf8_lossy(&seen[last + clear.len()..]),
        "",
        "{what}: the bar is left on the terminal"
    );
}

/// `sig` while the bar is drawn, with `ignored` ignored from the start:
/// the bar is cleared and the process dies of `sig`.
fn bar_cleared_by(sig: i32, ignored: &'static [i32]) {
    let Some((master, slave)) = pty() else {
        eprintln!("note: no pseudo-terminal; skipping the progress bar's signal test");
        return;
    };
    let child = spawn_on_stdin(&["-"], Stdio::from(slave), ignored);
    let seen = Transcript::of(master);
    seen.wait_for_bar();
    for &other in ignored {
        kill(&child, other);
    }
    if !ignored.is_empty() {
        // An ignored signal ends nothing: the run is still there.
        std::thread::sleep(Duration::from_millis(200));
    }
    kill(&child, sig);
    let out = wait_output_guarded(child, 20);
    assert_eq!(out.status.signal(), Some(sig), "{:?}", out.status);
    assert_cleared(&seen.finish(), &format!("signal {sig}"));
    assert!(out.stdout.is_empty());
}

#[test]
fn sigint_clears_the_bar_and_ends_by_sigint() {
    bar_cleared_by(libc::SIGINT, &[]);
}

/// SIGTERM (`kill`, a service manager, `timeout`) and SIGHUP (the terminal
/// closed) left the bar drawn: only SIGINT cleared it.
#[test]
fn sigterm_and_sighup_clear_the_bar_and_end_by_their_signal() {
    bar_cleared_by(libc::SIGTERM, &[]);
    bar_cleared_by(libc::SIGHUP, &[]);
}

/// SIGQUIT (`Ctrl-\` on a terminal) left the bar drawn; it clears it now
/// and still ends the process by SIGQUIT (its default action, a core dump
/// where enabled).
#[test]
fn sigquit_clears_the_bar_and_ends_by_sigquit() {
    bar_cleared_by(libc::SIGQUIT, &[]);
}

/// A signal ignored from the start (`nohup` ignores SIGHUP) stays ignored
/// while a bar is drawn: no handler is installed over it.
#[test]
fn an_ignored_signal_stays_ignored_while_the_bar_is_drawn() {
    bar_cleared_by(libc::SIGINT, &[libc::SIGHUP, libc::SIGTERM, libc::SIGQUIT]);
}

/// Without a terminal there is no bar: SIGINT ends the run by SIGINT (130
/// in a shell), with nothing written on stderr or stdout.
#[test]
fn sigint_without_a_terminal_ends_by_sigint_and_writes_nothing() {
    let child = spawn_on_stdin(&["-"], Stdio::piped(), &[]);
    std::thread::sleep(Duration::from_millis(300));
    kill(&child, libc::SIGINT);
    let out = wait_output_guarded(child, 20);
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(out.stdout.is_empty());
}

/// A signal while another one's clearing is stuck (the terminal stopped by
/// ^S, so the bar's write blocks) ends the process at once, as the same
/// signal again does: a `kill` (SIGTERM) after a Ctrl-C that seemed to do
/// nothing found the SIGTERM handler still installed, which only woke the
/// stuck thread again, and the process lived on, where without a handler
/// SIGTERM ends it.
#[test]
fn another_signal_ends_the_run_while_the_clearing_is_stuck() {
    use std::io::Write;
    let Some((master, slave)) = pty() else {
        eprintln!("note: no pseudo-terminal; skipping the progress bar's signal test");
        return;
    };
    let mut keys = master.try_clone().unwrap();
    let child = spawn_on_stdin(&["-"], Stdio::from(slave), &[]);
    let seen = Transcript::of(master);
    seen.wait_for_bar();
    // ^S: the terminal stops output (IXON), and every write to it blocks.
    keys.write_all(b"\x13").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    kill(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    kill(&child, libc::SIGTERM);
    let out = wait_output_guarded(child, 5);
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{:?}", out.status);
    // ^Q lets the reader see the terminal's end.
    let _ = keys.write_all(b"\x11");
}
