//! Ctrl-C (SIGINT), `kill` (SIGTERM), a terminal's hang-up (SIGHUP) or
//! `Ctrl-\` (SIGQUIT) while the progress bar is drawn: the bar is cleared,
//! then the process dies of that signal as it would have without a handler
//! (a shell sees status 128 + N: 130 for Ctrl-C, and stops its loop, as for
//! any program; SIGQUIT still dumps core where core dumps are enabled).
//! [`SIGNALS`] is the one list of them.
//!
//! Without this, the signal killed the process in the middle of the bar's
//! line and left it half drawn on the terminal. Nothing else changes: no
//! summary is printed, and `-o FILE` and `--update STATE` are left as a
//! kill leaves them (see `outfile.rs`).
//!
//! The protocol, in three steps, each allowed only what is safe where it
//! runs:
//! 1. The handler, run on whatever thread the signal lands on, only writes
//!    one byte, the signal's number, to a pipe (`write` is
//!    async-signal-safe; the write end is non-blocking, and a full pipe
//!    already holds a signal to act on). It is installed with
//!    `SA_RESETHAND`: the same signal again kills at once, even if the
//!    clearing is stuck (a stderr stopped by ^S), and `SA_RESTART`, so
//!    that no read or write of the run fails with EINTR meanwhile.
//! 2. A thread waiting on the pipe restores the default action of every
//!    signal handled here (so that another of them, too, kills at once
//!    while the clearing is stuck), then clears the bar under the lock
//!    that every stderr message takes ([`crate::progress::clear_bar`]), so
//!    that no message is cut and the bar is not drawn again.
//! 3. It raises the signal it read.
//!
//! Installed once, only when a bar is drawn (stderr is a terminal), and
//! for each signal only over its default action: never over an ignored one
//! (`nohup` ignores SIGHUP; a background job of a shell without job
//! control ignores SIGINT), which stays ignored, nor over a handler
//! someone else installed (a library's, an MPI runtime's).

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// The signals that clear the bar before they end the process: those a
/// terminal (`^C`, `^\`, a hang-up) or a `kill` sends to end a run. The
/// one list: installing, resetting and the module doc follow it.
const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The write end of the pipe, once installed; never closed.
static WAKE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WAKE.load(Ordering::Relaxed);
    // Every signal of `SIGNALS` fits a byte.
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe and `fd` is the pipe's write
    // end, open for the life of the process (installed before the
    // handler). NOTE: a failed write may change errno under the
    // interrupted code; it fails only on a full pipe, which already wakes
    // the thread, and the process is about to end.
    unsafe { libc::write(fd, [byte].as_ptr().cast(), 1) };
}

/// Clears the bar on each of [`SIGNALS`] from now on (see the module doc).
pub(crate) fn clear_bar_on_signals() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Failing leaves the signals as they were: the bar is left drawn.
        let _ = install();
    });
}

/// Whether `sig`'s action is the default one (neither ignored nor handled
/// by someone else).
fn is_default(sig: libc::c_int) -> std::io::Result<bool> {
    // SAFETY: a zeroed sigaction is a valid value to be written into, and
    // a null new action only reads the current one.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(old.sa_sigaction == libc::SIG_DFL)
}

fn install() -> std::io::Result<()> {
    let err = std::io::Error::last_os_error;
    let mut ours = Vec::new();
    for sig in SIGNALS {
        if is_default(sig)? {
            ours.push(sig);
        }
    }
    if ours.is_empty() {
        return Ok(());
    }
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(err());
    }
    // SAFETY: pipe(2) just opened both; each is owned here, once.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), fds[1]) };
    for (fd, flags) in [(fds[0], 0), (fds[1], libc::O_NONBLOCK)] {
        // SAFETY: fcntl on descriptors this function opened.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            if flags != 0 {
                libc::fcntl(fd, libc::F_SETFL, flags);
            }
        }
    }
    WAKE.store(write_end, Ordering::Relaxed);
    let mut pipe = File::from(read_end);
    let handled = ours.clone();
    std::thread::Builder::new()
        .name("parsum-signal".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            if pipe.read_exact(&mut b).is_err() {
                return;
            }
            let sig = libc::c_int::from(b[0]);
            // Every handled signal's default action back before clearing:
            // if the clearing is stuck (a stderr stopped by ^S), another
            // of them (a `kill` after a Ctrl-C) ends the process at once,
            // as the same one again does (`SA_RESETHAND`), instead of
            // waking this thread again.
            for &s in &handled {
                // SAFETY: restoring a default action.
                unsafe { libc::signal(s, libc::SIG_DFL) };
            }
            crate::progress::clear_bar();
            // SAFETY: the signal again, at its default action: the process
            // ends as the signal ends it without a handler.
            unsafe { libc::raise(sig) };
        })?;
    // SAFETY: `act` is fully initialised; `on_signal` only writes to the
    // pipe, which is open before it can run.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    act.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
    // SAFETY: `act` is ours and valid to write into; the handler it
    // installs is async-signal-safe (above), and no old action is asked for.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    for sig in ours {
        // SAFETY: as above, for each signal found at its default action.
        if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
            return Err(err());
        }
    }
    Ok(())
}
