//! Helpers shared by the integration tests: run the real binary under a
//! timeout, build trees with arbitrary byte names.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

pub mod mpirun;

/// `parsum` with no progress bar and a 30 s guard: no test may hang.
pub fn parsum() -> Command {
    let mut c = Command::cargo_bin("parsum").unwrap();
    c.timeout(Duration::from_secs(30)).arg("--no-progress");
    c
}

/// Waits for `child` at most `secs`, killing it past that (and failing
/// the test); returns its output (stdout and stderr, where piped).
pub fn wait_output_guarded(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("parsum did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// [`wait_output_guarded`], as (exit code (None: killed by a signal),
/// stdout, stderr).
pub fn wait_guarded(child: std::process::Child, secs: u64) -> (Option<i32>, Vec<u8>, String) {
    let out = wait_output_guarded(child, secs);
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The path of a byte name under `dir`.
pub fn p(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// Writes `content` to `dir/name`, creating parents.
pub fn write(dir: &Path, name: &[u8], content: &[u8]) -> PathBuf {
    let path = p(dir, name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, content).unwrap();
    path
}

/// Writes `files` files `t/f0`, `t/f1`, … under `dir`, each holding `x`:
/// the small tree a test runs on when only the command around it matters.
pub fn small_tree(dir: &Path, files: usize) {
    for i in 0..files {
        write(dir, format!("t/f{i}").as_bytes(), b"x");
    }
}

/// The awkward names every format must survive.
pub const AWKWARD: &[&[u8]] = &[
    b"plain.txt",
    b"with space",
    b"new\nline",
    b"back\\slash",
    b"carriage\rreturn",
    b"bad\xffutf8",
    b"dir/nested\\both\nkinds",
    b"-dash",
];

/// Is `tool` on PATH? Prints a note when it is not, so skips are visible.
pub fn have(tool: &str) -> bool {
    have_for(tool, "its round trip")
}

/// [`have`], saying what is skipped without `tool`.
pub fn have_for(tool: &str, skipping: &str) -> bool {
    let ok = StdCommand::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("note: {tool} is not installed; skipping {skipping}");
    }
    ok
}

/// Whether `unshare FLAG true` works here (root, and namespaces allowed);
/// says so when it does not.
pub fn unshare_allows(flag: &str) -> bool {
    let ok = StdCommand::new("unshare")
        .args([flag, "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("note: unshare {flag} is not allowed here; skipping");
    }
    ok
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// stdout of a successful run.
pub fn stdout_of(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The version `tool --version` reports (`b3sum 1.8.7` -> `(1, 8, 7)`).
pub fn version_of(tool: &std::ffi::OsStr) -> Option<(u32, u32, u32)> {
    let out = StdCommand::new(tool).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut it = v.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
    Some((it.next()?, it.next().unwrap_or(0), it.next().unwrap_or(0)))
}

/// A b3sum that escapes CR (1.5.5 or newer): `$PARSUM_B3SUM`, else `b3sum`
/// on PATH. Prints why when there is none, so the skip is visible.
/// (`cargo install b3sum --root DIR` builds one; see docs/parsum.md.)
pub fn current_b3sum() -> Option<PathBuf> {
    let tool = std::env::var_os("PARSUM_B3SUM").unwrap_or_else(|| "b3sum".into());
    match version_of(&tool) {
        Some(v) if v >= (1, 5, 5) => Some(PathBuf::from(tool)),
        Some(v) => {
            eprintln!(
                "note: {} is b3sum {v:?}, older than 1.5.5; skipping the current-b3sum test \
                 (set PARSUM_B3SUM to a newer one)",
                tool.to_string_lossy()
            );
            None
        }
        None => {
            eprintln!("note: b3sum is not installed; skipping the current-b3sum test");
            None
        }
    }
}

/// Runs `cmd` and returns (exit code, stdout, stderr).
pub fn run_std(cmd: &mut StdCommand) -> (i32, Vec<u8>, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks `manifest` (written to `dir/SUMS`) with `parsum -c flags SUMS`
/// and, when installed, with `tool -c flags SUMS`, both run in `dir`: same
/// exit status, stdout and stderr (tool name aside). Returns parsum's
/// (code, stdout, stderr).
pub fn check_same_as(
    tool: &str,
    dir: &Path,
    manifest: &[u8],
    flags: &[&str],
) -> (i32, String, String) {
    std::fs::write(dir.join("SUMS"), manifest).unwrap();
    let out = parsum()
        .current_dir(dir)
        .arg("-c")
        .args(flags)
        .arg("SUMS")
        .output()
        .unwrap();
    let ours = (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    if have(tool) {
        let (code, stdout, stderr) = run_std(
            StdCommand::new(tool)
                .current_dir(dir)
                .arg("-c")
                .args(flags)
                .arg("SUMS"),
        );
        let theirs = (
            code,
            String::from_utf8_lossy(&stdout).into_owned(),
            stderr.replace(&format!("{tool}:"), "parsum:"),
        );
        assert_eq!(
            ours,
            theirs,
            "parsum vs {tool} {flags:?} on {:?}",
            String::from_utf8_lossy(manifest)
        );
    }
    ours
}

/// `d/d/.../d`, `depth` deep under `root`, with a file `f` (holding its
/// level) in each, made with `*at` calls: no path is ever longer than one
/// component, so it may go deeper than PATH_MAX.
pub fn deep_chain(root: &Path, depth: usize) {
    use rustix::fs::{Mode, OFlags};
    let mut dir: std::os::fd::OwnedFd =
        rustix::fs::open(root, OFlags::DIRECTORY, Mode::empty()).unwrap();
    for i in 0..depth {
        rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(&dir, "d", OFlags::DIRECTORY, Mode::empty()).unwrap();
        let f = rustix::fs::openat(
            &dir,
            "f",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::io::write(&f, format!("{i}\n").as_bytes()).unwrap();
    }
}

/// The parsum binary under test.
pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("parsum")
}

/// Runs parsum with fd `fd` closed, under a 20 s guard.
pub fn with_fd_closed(fd: i32, dir: &Path, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let mut c = StdCommand::new(bin());
    c.arg("--no-progress")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: close is async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            libc::close(fd);
            Ok(())
        });
    }
    wait_guarded(c.spawn().unwrap(), 20)
}

/// A pseudo-terminal of 80 columns: (master, slave).
pub fn pty() -> Option<(File, File)> {
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

/// Everything written on a pseudo-terminal's slave side, read from its
/// master on a thread of its own until the last writer is gone.
pub struct Transcript {
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Transcript {
    /// Starts reading `master`.
    pub fn of(mut master: std::fs::File) -> Transcript {
        use std::io::Read;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = {
            let seen = std::sync::Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Ends with EIO once the slave's last holder is gone.
                while let Ok(n @ 1..) = master.read(&mut buf) {
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Transcript { seen, reader }
    }

    /// Waits (at most 20 s, else fails) until a progress bar was drawn.
    pub fn wait_for_bar(&self) {
        let drawn = |s: &[u8]| s.windows(3).any(|w| w == b"ETA");
        let start = Instant::now();
        while !drawn(&self.seen.lock().unwrap()) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no bar drawn: {:?}",
                String::from_utf8_lossy(&self.seen.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written, once every writer is gone.
    pub fn finish(self) -> Vec<u8> {
        self.reader.join().unwrap();
        std::sync::Arc::try_unwrap(self.seen)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}
