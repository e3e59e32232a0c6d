//! Which of the standard descriptors 0, 1 and 2 were closed when the
//! process started (`parsum a >&-`, `parsum - <&-`), and standard input
//! opened for reading ([`stdin`], which also refuses a directory).
//!
//! Rust's runtime, on Unix, opens /dev/null on a closed 0, 1 or 2 before
//! `main` runs, so from `main` on a closed stdout swallows every line and a
//! closed stdin reads as empty. coreutils instead fails: `sha256sum a >&-`
//! says `write error: Bad file descriptor`, `sha256sum - <&-` says `-: Bad
//! file descriptor`, both exit 1. So a function in `.init_array`, which the
//! dynamic loader (or the static start code) runs before the Rust runtime,
//! records which of the three were closed.
//!
//! Invariant: [`closed_at_start`] is true only for a descriptor that was
//! closed when the process started (and is now /dev/null): it is written
//! once, before `main`, and only read after. Where `.init_array` is not
//! available (not an ELF target), nothing is recorded and every descriptor
//! counts as open, as before. A closed stderr is left to /dev/null: the
//! messages are lost, as with coreutils, and nothing fails.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

/// Bit `fd` set: descriptor `fd` (0, 1 or 2) was closed at start.
static CLOSED: AtomicU8 = AtomicU8::new(0);

/// Whether standard descriptor `fd` (0, 1 or 2) was closed when the
/// process started.
pub fn closed_at_start(fd: i32) -> bool {
    (0..=2).contains(&fd) && CLOSED.load(Ordering::Relaxed) & (1 << fd) != 0
}

/// The error of a read from or a write to a descriptor closed at start.
pub fn closed_error() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

/// Standard input, or the error its first read would end in: EBADF if it
/// was closed at start, EISDIR if it is a directory. The one home of
/// reading standard input, for every reader of it (a PATH `-`, a `-c` or
/// STATE line `-`, a manifest or STATE `-`), in one process or as rank 0
/// of an MPI job.
///
/// Under a launcher, standard input reaches the rank through the
/// launcher's pipe, so the rank cannot see what it was: Open MPI's
/// `mpirun`, reading a directory, takes the error for the end of input,
/// and the rank read an empty input and hashed it (`mpirun parsum - <
/// DIR` printed the empty input's digest and passed). So a rank also asks
/// what the launcher's own standard input is ([`launcher_stdin_is_dir`]).
pub fn stdin() -> io::Result<io::Stdin> {
    if closed_at_start(0) {
        return Err(closed_error());
    }
    if fd_is_dir(0) || (crate::launcher::launched() && launcher_stdin_is_dir()) {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    Ok(io::stdin())
}

/// Whether descriptor `fd` is open on a directory.
fn fd_is_dir(fd: i32) -> bool {
    // SAFETY: fstat only writes into `st`, a plain struct, and fails
    // without effect on a bad descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    unsafe { libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR }
}

/// Whether the parent process's standard input is a directory: under Open
/// MPI's `mpirun`, the parent of a rank on the launching node (rank 0,
/// which alone reads standard input, is one unless a host file puts it
/// elsewhere) is `mpirun` itself, and its standard input is the user's.
/// Read through `/proc` (Linux); anywhere else, or with a wrapper between
/// the launcher and parsum, or on another node (whose daemon's standard
/// input is not the user's), the answer is no and an empty input stays
/// empty: a limit, documented in docs/many-nodes.md.
///
/// NOTE: only a directory is refused this way. A launcher whose standard
/// input is anything else forwards it, and the rank reads what it sent.
fn launcher_stdin_is_dir() -> bool {
    let parent = std::os::unix::process::parent_id();
    std::fs::metadata(format!("/proc/{parent}/fd/0")).is_ok_and(|m| m.is_dir())
}

/// Whether `path` is exactly `-`, standard input (or output, for `-o`):
/// byte for byte, as coreutils compares it. Not `Path`'s `==`, which
/// compares components and so takes `-/`, a directory called `-`, for `-`.
/// The one test for every place a name may be `-`.
pub fn is_dash(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes() == b"-"
}

/// Opens `path` with `options` to read it whole as an input (a manifest, a
/// state), and gives its metadata. The one home of two rules for every
/// reader of a named input (`-c`, `--audit`, `--verify`, `--update`):
/// - a name of a standard descriptor closed at start (`/dev/stdin` or
///   `/dev/fd/0` after `<&-`, or a link to one) is EBADF, as `-` is: it
///   would open the runtime's /dev/null and read as empty (`--verify
///   /dev/stdin <&-` checked nothing and passed);
/// - a directory opens but reads nothing (EISDIR at the first read): it is
///   refused here, at the open, as `Is a directory`.
pub fn open_input_with(
    path: &std::path::Path,
    options: &std::fs::OpenOptions,
) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    if crate::outfile::descriptor_named(path).is_some_and(closed_at_start) {
        return Err(closed_error());
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    Ok((file, meta))
}

/// Records which of 0, 1 and 2 are closed; run before the Rust runtime.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos",
    target_os = "solaris"
))]
mod record {
    use super::CLOSED;
    use std::sync::atomic::Ordering;

    extern "C" fn record_closed() {
        let mut closed = 0u8;
        for fd in 0..=2 {
            // SAFETY: F_GETFD only reads the descriptor's flags; on a
            // closed descriptor it fails with EBADF and changes nothing.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
            {
                closed |= 1 << fd;
            }
        }
        CLOSED.store(closed, Ordering::Relaxed);
    }

    /// Run by the loader before `main` and before the Rust runtime's own
    /// start, which would put /dev/null on a closed 0, 1 or 2.
    #[used]
    #[link_section = ".init_array"]
    static RECORD_CLOSED: extern "C" fn() = record_closed;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_descriptors() {
        // The test harness runs with 0, 1 and 2 open (or not: either way
        // nothing beyond 2 is ever closed at start).
        assert!(!closed_at_start(3));
        assert!(!closed_at_start(-1));
        assert_eq!(closed_error().raw_os_error(), Some(libc::EBADF));
    }
}
