//! A hostile round of `-o PATH` naming one of parsum's own descriptors
//! (`outfile.rs`), of `--update`'s refusal of streams, and of the
//! launcher's refusal of descriptors past 2. Each test under "Defects"
//! failed when the round found it; the rest pin behaviour worth keeping.

mod common;
use common::*;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::{Command as StdCommand, Stdio};

/// A directory with `a` ("abc") and `b` (empty).
fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    write(d.path(), b"t/b", b"");
    d
}

/// What `parsum t` prints for [`tree`].
fn sums(d: &std::path::Path) -> Vec<u8> {
    stdout_of(parsum().current_dir(d).arg("t"))
}

// ---------------------------------------------------------------- Defects

/// `-o /dev/stdout >&-` exited 0 with every line lost: the name reached
/// the /dev/null that Rust's runtime puts on a closed 0, 1 or 2, where `-o
/// -` (and a plain run) says `write error: Bad file descriptor`. Likewise
/// `-o /dev/stdin <&-`, which wrote into that /dev/null too.
#[test]
fn a_standard_descriptor_closed_at_start_is_not_written_by_name() {
    let d = tree();
    for (fd, names) in [
        (1, &["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"][..]),
        (0, &["/dev/stdin", "/dev/fd/0"]),
    ] {
        for name in names {
            let (code, _, err) = with_fd_closed(fd, d.path(), &["-o", name, "t"]);
            assert_eq!(code, Some(1), "-o {name} with {fd} closed: {err}");
            assert!(err.contains("Bad file descriptor"), "-o {name}: {err}");
        }
    }
    // A link to a descriptor that is not open at all: refused, not
    // borrowed (`into_descriptor`'s unsafe relies on the descriptor being
    // open).
    std::os::unix::fs::symlink("/dev/fd/1000", d.path().join("gone")).unwrap();
    let (code, _, err) = with_fd_closed(1000, d.path(), &["-o", "gone", "t"]);
    assert_eq!(code, Some(1), "-o gone: {err}");
    assert!(err.contains("Bad file descriptor"), "-o gone: {err}");
}

/// `-c /dev/stdin <&-`, `--verify /dev/stdin <&-`: the name read the
/// runtime's /dev/null as an empty manifest; `--verify` then checked
/// nothing and exited 0. `-` says `Bad file descriptor`, as sha256sum does.
#[test]
fn a_manifest_named_as_a_standard_descriptor_closed_at_start_is_unreadable() {
    let d = tree();
    for args in [
        &["-c", "/dev/stdin"][..],
        &["--verify", "/dev/stdin"],
        &["--audit", "/dev/fd/0", "t"],
    ] {
        let (code, _, err) = with_fd_closed(0, d.path(), args);
        assert_ne!(code, Some(0), "{args:?}: {err}");
        assert!(err.contains("Bad file descriptor"), "{args:?}: {err}");
    }
}

/// `parsum /dev/stdin <&-` said `skipped character device` and exited 0:
/// the root reached the runtime's /dev/null. It is `Bad file descriptor`,
/// exit 1, as `parsum - <&-` (sha256sum: `No such file or directory`).
#[test]
fn a_root_named_as_a_standard_descriptor_closed_at_start_is_an_error() {
    let d = tree();
    for args in [&["/dev/stdin"][..], &["/dev/fd/0", "t"]] {
        let (code, _, err) = with_fd_closed(0, d.path(), args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("/dev/"), "{args:?}: {err}");
        assert!(err.contains("Bad file descriptor"), "{args:?}: {err}");
    }
}

/// `-o /dev/stdin` with standard input on a pipe: `/dev/stdin` is a link
/// to `/proc/self/fd/0`, and as that ended at a FIFO it was reopened for
/// writing instead of taken as descriptor 0, which is open only for
/// reading (`-o /dev/fd/0` was refused). parsum wrote its output into its
/// own standard input: lost, exit 0, and once the pipe was full (64 KiB)
/// it waited for good. A user's link to `/dev/fd/0` did the same.
#[test]
fn dev_stdin_on_a_pipe_is_descriptor_0_not_a_reopened_pipe() {
    let d = tree();
    std::os::unix::fs::symlink("/dev/fd/0", d.path().join("in")).unwrap();
    for name in ["/dev/stdin", "in", "/dev/fd/0"] {
        let mut c = StdCommand::new(bin());
        c.args(["--no-progress", "-o", name, "t"])
            .current_dir(d.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The pipe's write end stays open (in `child`) while parsum runs.
        let (code, _, err) = wait_guarded(c.spawn().unwrap(), 20);
        assert_eq!(code, Some(1), "-o {name}: {err}");
        assert!(err.contains("Bad file descriptor"), "-o {name}: {err}");
    }
}

/// `-o /dev/stdout` with standard output on a socket (a service manager's
/// journal stream, `socat`, an `ssh` channel) failed with `No such device
/// or address`: the name was reopened, and a socket cannot be opened
/// through /proc. It is descriptor 1, written as `-o -` would.
#[test]
fn dev_stdout_on_a_socket_is_written_into() {
    let d = tree();
    let want = sums(d.path());
    std::os::unix::fs::symlink("/dev/stdout", d.path().join("out")).unwrap();
    for name in ["/dev/stdout", "out", "/dev/fd/1"] {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut c = StdCommand::new(bin());
        c.args(["--no-progress", "-o", name, "t"])
            .current_dir(d.path())
            .stdin(Stdio::null())
            .stdout(std::os::fd::OwnedFd::from(ours))
            .stderr(Stdio::piped());
        let (code, _, err) = wait_guarded(c.spawn().unwrap(), 20);
        assert_eq!(code, Some(0), "-o {name}: {err}");
        // The socket's other end is in `c` until it goes; no read may hang.
        drop(c);
        theirs
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(got, want, "-o {name}");
    }
}

/// Under a launcher a path naming a descriptor past 2 is refused (the
/// rank's descriptor 3 is Open MPI's channel: reading it hung), but only
/// as spelled: a symbolic link to `/dev/fd/3` was read, and hung the same
/// way under mpirun. A launcher is faked by its variable: this build has
/// no MPI, and one rank of it runs as a plain process (`launcher.rs`).
#[cfg(not(feature = "mpi"))]
#[test]
fn a_link_to_a_descriptor_past_2_is_refused_under_a_launcher() {
    let d = tree();
    std::fs::write(d.path().join("SUMS"), sums(d.path())).unwrap();
    std::os::unix::fs::symlink("/dev/fd/3", d.path().join("l3")).unwrap();
    std::os::unix::fs::symlink("l3", d.path().join("l3b")).unwrap();
    for args in [
        &["-c", "l3"][..],
        &["-c", "l3b"],
        &["--verify", "l3"],
        &["--audit", "l3", "t"],
        &["--update", "l3", "t"],
        &["-o", "l3", "t"],
        &["l3"],
    ] {
        let mut c = parsum();
        for v in parsum::launcher::LAUNCHER_VARS
            .iter()
            .chain(&parsum::launcher::RANK_VARS)
        {
            c.env_remove(v);
        }
        let out = c
            .env("OMPI_COMM_WORLD_SIZE", "1")
            .current_dir(d.path())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("names a descriptor of the rank"),
            "{args:?}: {err}"
        );
    }
}

/// In a PID namespace whose /proc is not its own (`unshare -pf` without
/// `--mount-proc`, a container given the host's /proc), parsum's PID is
/// not the one /proc knows it by: `/dev/stdout` was not recognised as
/// ours, and `-o /dev/stdout >> log` replaced `log` by rename, losing its
/// lines (the defect the descriptor rule was made for).
#[test]
fn a_descriptor_is_ours_in_a_pid_namespace_with_a_foreign_proc() {
    if !is_root() || !have_for("unshare", "the PID namespace test") {
        return;
    }
    if !unshare_allows("-pf") {
        return;
    }
    let d = tree();
    let want = sums(d.path());
    let log = d.path().join("log");
    std::fs::write(&log, b"old\n").unwrap();
    let append = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut c = StdCommand::new("unshare");
    c.arg("-pf")
        .arg(bin())
        .args(["--no-progress", "-o", "/dev/stdout", "t"])
        .current_dir(d.path())
        .stdin(Stdio::null())
        .stdout(append)
        .stderr(Stdio::piped());
    let (code, _, err) = wait_guarded(c.spawn().unwrap(), 20);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        [&b"old\n"[..], &want].concat()
    );
}

// ------------------------------------------------------ What held (pinned)

/// `-o /dev/fd/N` on a file opened read-write at an offset writes at that
/// offset and leaves the rest (as `1<>` does), and a descriptor far past
/// the usual 1024 works as any other.
#[test]
fn a_read_write_descriptor_is_written_at_its_offset() {
    use std::io::{Seek, SeekFrom};
    use std::os::fd::AsRawFd;
    let d = tree();
    let want = sums(d.path());
    let path = d.path().join("rw");
    std::fs::write(&path, vec![b'X'; 5 + want.len() + 3]).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.seek(SeekFrom::Start(5)).unwrap();
    let raw = f.as_raw_fd();
    // Past 1024 where the hard limit allows (a select()-sized set would
    // not hold it); the soft limit is raised to reach it.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let target: i32 = if lim.rlim_max >= 2048 { 1500 } else { 100 };
    let name = format!("/dev/fd/{target}");
    let mut c = StdCommand::new(bin());
    c.args(["--no-progress", "-o", &name, "t"])
        .current_dir(d.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: dup2 and setrlimit are async-signal-safe; `raw` is open (as
    // `f` lives past the spawn) and its duplicate is not close-on-exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(move || {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max.min(4096),
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
            if libc::dup2(raw, target) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (code, _, err) = wait_guarded(c.spawn().unwrap(), 20);
    assert_eq!(code, Some(0), "{err}");
    let mut expect = b"XXXXX".to_vec();
    expect.extend_from_slice(&want);
    expect.extend_from_slice(b"XXX");
    assert_eq!(std::fs::read(&path).unwrap(), expect);
}

/// `--update STATE` where STATE leads to a stream or a directory is a
/// usage error before any read: a link to a FIFO, a directory, a link to
/// one, a path with a trailing slash. A dangling link is a first update
/// that creates what it points to, and the link stays.
#[test]
fn update_state_through_links_and_slashes() {
    let d = tree();
    mkfifo(&d.path().join("fifo"));
    std::fs::create_dir(d.path().join("dir")).unwrap();
    for (link, to) in [("tofifo", "fifo"), ("todir", "dir"), ("dangling", "new")] {
        std::os::unix::fs::symlink(to, d.path().join(link)).unwrap();
    }
    for state in ["tofifo", "dir", "todir", "st/", "t/a/"] {
        parsum()
            .current_dir(d.path())
            .args(["--update", state, "t"])
            .assert()
            .code(2)
            .stdout("");
    }
    parsum()
        .current_dir(d.path())
        .args(["--update", "dangling", "t"])
        .assert()
        .success();
    assert!(std::fs::symlink_metadata(d.path().join("dangling"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(d.path().join("new"))
        .unwrap()
        .contains("\"path\":\"t/a\""));
}
