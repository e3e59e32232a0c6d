//! `-o FILE` and `--update STATE`: an output file that appears only once
//! it is complete. The one home of "replace a file whole".
//!
//! Invariant: a regular FILE is never written piecewise. The output goes
//! to a temporary file in FILE's directory, which is flushed to disk and
//! renamed over FILE only when the run has written all of its output
//! ([`OutFile::commit`], which then syncs the directory so the rename
//! itself is durable); any other end leaves an existing FILE as it was.
//! The new file keeps the mode of the one it replaces and, where the
//! process may give it away (root writing a user's file), its owner.
//!
//! FILE may be a symbolic link: the output then replaces the file it
//! points to, and the link stays, as with a shell's `>`. A FILE that is a
//! FIFO or a device node (`/dev/null`, a named pipe) cannot be
//! replaced without destroying it: the output is written into it as it
//! comes, as `>` would, and the commit only flushes. A FILE that names one
//! of the process's open descriptors through /proc (`/dev/stdout`,
//! `/dev/fd/N`, `/proc/self/fd/N`) is that descriptor, whatever it is open
//! on: the output is written into a duplicate of it, at its offset and in
//! its append mode, as `-o -` writes to standard output (replacing the file
//! behind it would lose what `>>` appended before). Written into a terminal
//! (`/dev/stderr`, `/dev/tty`), each write hides the progress bar
//! meanwhile, as a write to standard output on one does
//! ([`crate::progress::write_to_terminal`]).
//!
//! The temporary file is unnamed where the file system allows it
//! (`O_TMPFILE`): the walk cannot see it, and a process that is killed
//! outright (a crashed MPI rank ends the whole job) leaves nothing behind.
//! It gets a name (`.NAME.parsum-PID.tmp`, created exclusively; should a
//! killed run with the same PID have left that name,
//! `.NAME.parsum-PID-N.tmp`) only at the commit, for the rename, through
//! `/proc/self/fd`. Where `O_TMPFILE` is not supported, or /proc is not
//! mounted, it is that named file from the start, removed on drop; a
//! killed process may then leave it. [`OutFile::not_data`] lists what of
//! all this a walk of the tree must leave out: FILE itself (`parsum -o
//! SUMS .` does not hash the SUMS it replaces) and the temporary files.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

/// An output being written to a temporary file beside its final path (or,
/// for a FIFO or device node, into it).
#[derive(Debug)]
pub struct OutFile {
    file: File,
    /// The temporary name: already in use (named from the start), or
    /// given at the commit (unnamed file).
    tmp: PathBuf,
    named: bool,
    /// Written into `dest` itself (a FIFO or device node, or an open
    /// descriptor): nothing to rename or clean up.
    direct: bool,
    /// `dest` names an open descriptor of this process: like standard
    /// output, nothing of a tree is left out for it.
    descriptor: bool,
    /// Written into a terminal (`/dev/stderr` or `/dev/tty` on one): the
    /// bar is hidden meanwhile, as for standard output on a terminal.
    terminal: bool,
    dest: PathBuf,
    /// Set once renamed: nothing to clean up.
    committed: bool,
}

/// The files of a tree that are an output rather than data
/// ([`OutFile::not_data`]). The one rule, for every walk (a single
/// process's, which asks before it reads, and the MPI ranks', filtered at
/// the merge): a path is left out when its name is the output's or one of
/// its temporary names, and its file is one of them (`(device, inode)`).
/// Another name for the same file (a hard link) is data: it stays after
/// the run, holding what it held.
#[derive(Debug, Clone, Default)]
pub struct NotData {
    name: Option<OsString>,
    ids: Vec<(u64, u64)>,
}

impl NotData {
    /// Nothing to leave out (standard output).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `path`, whose file is `(device, inode)` `id`, is output.
    pub fn contains(&self, path: &Path, id: (u64, u64)) -> bool {
        self.may_be(path) && self.ids.contains(&id)
    }

    /// [`contains`](Self::contains), for a walk that cannot ask before it
    /// reads (the MPI ranks'): only names that could be output are looked
    /// at (one `lstat` each).
    pub fn contains_path(&self, path: &Path) -> bool {
        self.may_be(path)
            && std::fs::symlink_metadata(path).is_ok_and(|m| self.ids.contains(&(m.dev(), m.ino())))
    }

    fn may_be(&self, path: &Path) -> bool {
        match (&self.name, path.file_name()) {
            (Some(name), Some(entry)) => entry == name || is_temp_name(name, entry),
            _ => false,
        }
    }
}

impl OutFile {
    /// Creates the temporary file for `dest` (or opens `dest` itself if it
    /// is a FIFO or device node). Fails (with a message naming `dest`)
    /// when its directory cannot take a new file, before any work.
    pub fn create(dest: &Path) -> io::Result<OutFile> {
        let dest = &match follow_links(dest)? {
            Target::Descriptor(fd) => return OutFile::into_descriptor(dest, fd),
            Target::Path(path) => path,
        };
        let old = std::fs::metadata(dest).ok();
        if old.as_ref().is_some_and(|m| !m.is_file()) {
            // Not a directory (refused above): a FIFO, device or socket,
            // which a rename would destroy.
            let file = OpenOptions::new().write(true).open(dest)?;
            return Ok(OutFile {
                terminal: file.is_terminal(),
                file,
                tmp: PathBuf::new(),
                named: false,
                direct: true,
                descriptor: false,
                dest: dest.to_path_buf(),
                committed: false,
            });
        }
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let mut tmp = dest.with_file_name(temp_name(name, 0));
        let unnamed = rustix::fs::open(
            dir_of(dest),
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            // The kernel applies the umask, as for any created file.
            Mode::from_raw_mode(0o666),
        )
        .ok()
        // The commit names it through /proc: without /proc (a container or
        // chroot that has none mounted) it could not, after all the work.
        .filter(|fd| Path::new(&proc_path(fd)).exists());
        let (file, named) = match unnamed {
            Some(fd) => (File::from(fd), false),
            // Not supported here (the kernel, the file system, no /proc): a
            // named temporary file. Any other error is the directory's, and
            // the named create reports it as well.
            None => {
                let mut tries = 0..TEMP_TRIES;
                let file = loop {
                    match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            // Left by a killed run that had our PID.
                            let Some(n) = tries.next() else { return Err(e) };
                            tmp = dest.with_file_name(temp_name(name, n + 1));
                        }
                        r => break r?,
                    }
                };
                (file, true)
            }
        };
        let out = OutFile {
            file,
            tmp,
            named,
            direct: false,
            descriptor: false,
            terminal: false,
            dest: dest.to_path_buf(),
            committed: false,
        };
        if let Some(m) = old {
            // The owner first (a change of owner may clear set-id bits),
            // where we may: root replacing a user's file, else the new
            // file is root's and a mode of 0600 locks its owner out. Best
            // effort: anyone else can only give a file away.
            let me = (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            );
            if (m.uid(), m.gid()) != me {
                let _ = std::os::unix::fs::fchown(&out.file, Some(m.uid()), Some(m.gid()));
            }
            out.file
                .set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
        Ok(out)
    }

    /// The output written into a duplicate of this process's descriptor
    /// `fd`, which `dest` names through /proc (module doc). One not open
    /// for writing is refused here, before any work.
    fn into_descriptor(dest: &Path, fd: i32) -> io::Result<OutFile> {
        // Closed: /proc has no link for it (a link of ours that led here
        // may still be there), or it is one of 0-2 closed at start, where
        // the runtime put a /dev/null that would swallow the output (`-o -`
        // fails the same way: `stdio.rs`).
        if crate::stdio::closed_at_start(fd)
            || std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err()
        {
            return Err(crate::stdio::closed_error());
        }
        // SAFETY: `fd` is open in this process (its /proc link was there
        // just now, and parsum closes no descriptor it did not open), and
        // the borrow ends with this function, once it is duplicated.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let mode = rustix::fs::fcntl_getfl(borrowed)? & OFlags::RWMODE;
        if mode == OFlags::RDONLY {
            return Err(rustix::io::Errno::BADF.into());
        }
        let file = File::from(borrowed.try_clone_to_owned()?);
        Ok(OutFile {
            terminal: file.is_terminal(),
            file,
            tmp: PathBuf::new(),
            named: false,
            direct: true,
            descriptor: true,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// What of a tree this output is, rather than data, for a walk of a
    /// tree it may lie in to leave out: the file it replaces, its own
    /// temporary file, and temporary files of earlier runs that were
    /// killed before their rename (half-written outputs).
    pub fn not_data(&self) -> NotData {
        if self.descriptor {
            return NotData::default();
        }
        let mut ids = Vec::new();
        if let Ok(m) = std::fs::metadata(&self.dest) {
            ids.push((m.dev(), m.ino()));
        }
        let name = self.dest.file_name().map(ToOwned::to_owned);
        if !self.direct {
            if let Ok(m) = self.file.metadata() {
                ids.push((m.dev(), m.ino()));
            }
            if let (Some(name), Ok(list)) = (&name, std::fs::read_dir(dir_of(&self.dest))) {
                ids.extend(
                    list.filter_map(Result::ok)
                        .filter(|e| is_temp_name(name, &e.file_name()))
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| (m.dev(), m.ino())),
                );
            }
        }
        NotData { name, ids }
    }

    /// Appends `bytes` to the temporary file (or writes them into FILE;
    /// on a terminal with the progress bar hidden meanwhile).
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = &mut self.file;
        crate::progress::write_to_terminal(self.terminal, || file.write_all(bytes))
    }

    /// Flushes the temporary file to disk and renames it over the final
    /// path, then syncs the directory. On an error the temporary file is
    /// removed (by `Drop`).
    pub fn commit(mut self) -> io::Result<()> {
        if self.direct {
            return self.file.flush();
        }
        self.file.sync_all()?;
        if !self.named {
            // Name the unnamed file through /proc (no privilege needed,
            // unlike AT_EMPTY_PATH), then rename that name into place.
            let fd_path = proc_path(&self.file);
            let name = self.dest.file_name().unwrap_or_default().to_owned();
            let mut tries = 0..TEMP_TRIES;
            loop {
                match rustix::fs::linkat(
                    CWD,
                    fd_path.as_str(),
                    CWD,
                    &self.tmp,
                    AtFlags::SYMLINK_FOLLOW,
                ) {
                    // The name is taken: left by a killed run that had our
                    // PID (PIDs repeat: a container's parsum is often PID
                    // 1 every time).
                    Err(rustix::io::Errno::EXIST) => {
                        let Some(n) = tries.next() else {
                            return Err(rustix::io::Errno::EXIST.into());
                        };
                        self.tmp = self.dest.with_file_name(temp_name(&name, n + 1));
                    }
                    r => break r?,
                }
            }
            self.named = true;
        }
        std::fs::rename(&self.tmp, &self.dest)?;
        self.committed = true;
        File::open(dir_of(&self.dest))?.sync_all()
    }
}

/// The directory a path's file is in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The name of the open file `fd` under /proc (which [`OutFile::commit`]
/// links into place).
fn proc_path(fd: &impl std::os::fd::AsFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// The longest file name (one path component) Linux file systems take.
const NAME_MAX: usize = 255;

/// How many other temporary names to try when this process's is taken.
const TEMP_TRIES: u32 = 100;

/// This process's `n`-th temporary name for a file called `name`:
/// `.NAME.parsum-PID.tmp`, then `.NAME.parsum-PID-N.tmp` should that be
/// taken (by a killed run that had the same PID), with NAME cut short
/// where the whole would be longer than [`NAME_MAX`] (a NAME of 240 bytes
/// is a valid output, and its temporary file must be too).
fn temp_name(name: &std::ffi::OsStr, n: u32) -> OsString {
    let suffix = match n {
        0 => format!(".parsum-{}.tmp", std::process::id()),
        n => format!(".parsum-{}-{n}.tmp", std::process::id()),
    };
    let keep = name.len().min(NAME_MAX - 1 - suffix.len());
    let mut tmp = b".".to_vec();
    tmp.extend_from_slice(&name.as_bytes()[..keep]);
    tmp.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(tmp)
}

/// Whether `entry` is a temporary file of some run's output called
/// `name`: [`temp_name`]'s `.NAME.parsum-PID[-N].tmp` (NAME cut short if the
/// entry is [`NAME_MAX`] long), or `.NAME.*.parsum-tmp` (the states of
/// earlier versions' `--update`).
fn is_temp_name(name: &std::ffi::OsStr, entry: &std::ffi::OsStr) -> bool {
    let (name, entry) = (name.as_bytes(), entry.as_bytes());
    let Some(entry) = entry.strip_prefix(b".") else {
        return false;
    };
    let ours = entry
        .strip_suffix(b".tmp")
        .and_then(|r| {
            let at = r.windows(8).rposition(|w| w == b".parsum-")?;
            Some((&r[..at], &r[at + 8..]))
        })
        .is_some_and(|(stem, pid)| {
            let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
            let mut parts = pid.splitn(2, |&b| b == b'-');
            parts.all(digits)
                && (stem == name || (entry.len() + 1 == NAME_MAX && name.starts_with(stem)))
        });
    let legacy = entry
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix(b"."))
        .is_some_and(|r| r.ends_with(b".parsum-tmp"));
    ours || legacy
}

/// Links in a row followed at most this many times (Linux's limit).
const MAX_LINKS: usize = 40;

/// Whether `dest` can be read and then replaced whole, as `--update`'s
/// STATE is: a regular file, or a name that does not exist yet, once its
/// links are followed. A FIFO, socket or device, or one of this process's
/// descriptors named through /proc (`/dev/stdout`), is a stream: reading it
/// first would wait on it (a pipe's other end, reopened, is our own), and
/// it cannot be replaced. An error in the name is left to the create.
pub fn replaceable(dest: &Path) -> bool {
    match follow_links(dest) {
        Ok(Target::Path(path)) => std::fs::metadata(path).map_or(true, |m| m.is_file()),
        Ok(Target::Descriptor(_)) => false,
        Err(_) => true,
    }
}

/// What `-o` names, once its links are followed.
enum Target {
    /// A path: replaced whole, or written into (a FIFO or device node).
    Path(PathBuf),
    /// One of this process's open descriptors, named through /proc.
    Descriptor(i32),
}

/// The file `dest` names, as a shell's `>` would write it: symbolic links
/// at its end are followed (the output replaces what the last one points
/// to, even if that does not exist yet, and the links stay), but a link
/// of /proc's to one of our open descriptors is that descriptor. A
/// directory, or a loop of links, is refused here, before any work, rather
/// than at the rename after hours of hashing.
fn follow_links(dest: &Path) -> io::Result<Target> {
    // Before the kernel is asked what any link leads to: `/dev/stdout`
    // leads through `/proc/self/fd/1` to a pipe, a socket or `/dev/null`,
    // and reopening that is not writing to descriptor 1 (a socket cannot
    // be reopened; descriptor 0, a pipe's read end, reopened for writing
    // took parsum's own output). `descriptor_named` walks the same chain
    // as the loop below, so once is enough.
    if let Some(fd) = descriptor_named(dest) {
        return Ok(Target::Descriptor(fd));
    }
    let mut path = dest.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Not there yet: created at the commit, unless the path can
            // only name a directory (`S/`, `x/.`), which no rename of a
            // file can create.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return if names_a_directory(&path) {
                    Err(rustix::io::Errno::ISDIR.into())
                } else {
                    Ok(Target::Path(path))
                };
            }
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            return Err(rustix::io::Errno::ISDIR.into());
        }
        if !meta.file_type().is_symlink() {
            return Ok(Target::Path(path));
        }
        // A link to a FIFO, socket or device is written through, never
        // replaced: hand the link itself to the kernel, which also resolves
        // /proc's magic links (`/dev/stdout` on a pipe reads as
        // `pipe:[N]`, a name that resolves nowhere by hand).
        if std::fs::metadata(&path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            return Ok(Target::Path(path));
        }
        let target = std::fs::read_link(&path)?;
        // A relative target is relative to the link's directory (joining an
        // absolute one replaces the whole path).
        path = match path.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
    }
    Err(rustix::io::Errno::LOOP.into())
}

/// The descriptor of this process that `path` names, if any: as spelled
/// ([`own_descriptor`]), or at the end of the chain of symbolic links it
/// starts (`/dev/stdout` and `/dev/stdin` are links to `/proc/self/fd/1`
/// and `0`; a user's `out -> /dev/fd/3`). The chain is followed by hand,
/// link by link, never by the kernel: the kernel goes on through /proc's
/// link to the open file itself, and what that file is (a pipe, a socket,
/// `/dev/null`) must not hide that the name is a descriptor. Whether the
/// descriptor is open is not checked.
pub(crate) fn descriptor_named(path: &Path) -> Option<i32> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        if let Some(fd) = own_descriptor(&path) {
            return Some(fd);
        }
        // Not a link (or not there): the chain ends short of /proc.
        let target = std::fs::read_link(&path).ok()?;
        path = match path.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
    }
    None
}

/// The descriptor `link` stands for, if it is one of /proc's links to this
/// process's open files: `N` in our `fd` directory, however it is spelled
/// (`/dev/fd/N`, `/proc/self/fd/N`, `/proc/thread-self/fd/N`, our PID's as
/// /proc numbers it).
fn own_descriptor(link: &Path) -> Option<i32> {
    let name = link.file_name()?.as_bytes();
    // As /proc spells them: `01` names nothing there (ENOENT), so it must
    // not stand for descriptor 1 here either.
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) || name.len() > 1 && name[0] == b'0'
    {
        return None;
    }
    let fd = std::str::from_utf8(name).ok()?.parse().ok()?;
    let dir = std::fs::canonicalize(link.parent()?).ok()?;
    // Our directory as /proc knows us, which the kernel resolves
    // `/proc/self` to: in a PID namespace whose /proc is not its own
    // (`unshare -pf`, a container given the host's /proc), that is not
    // `getpid()`'s number, and `/dev/stdout` went unrecognised (`-o
    // /dev/stdout >> log` replaced log).
    let ours = std::fs::canonicalize("/proc/self")
        .unwrap_or_else(|_| Path::new("/proc").join(std::process::id().to_string()));
    let rest = dir.strip_prefix(&ours).ok()?;
    let mut parts = rest.components().map(|c| c.as_os_str().as_bytes());
    let is_ours = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(b"fd"), None, _, _) => true,
        (Some(b"task"), Some(tid), Some(b"fd"), None) => tid.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    is_ours.then_some(fd)
}

/// Whether `path`, as spelled, can only name a directory: it ends in `/`,
/// `.` or `..` (which `Path::file_name` hides: `S/` and `x/.` look like
/// `S` and `x` to it).
fn names_a_directory(path: &Path) -> bool {
    let b = path.as_os_str().as_bytes();
    b.ends_with(b"/") || b.ends_with(b"/.") || b.ends_with(b"/..") || b == b"." || b == b".."
}

impl Drop for OutFile {
    fn drop(&mut self) {
        if self.named && !self.committed && !self.direct {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn appears_only_on_commit() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("SUMS");
        let mut f = OutFile::create(&dest).unwrap();
        f.write_all(b"abc\n").unwrap();
        assert!(!dest.exists());
        assert!(entries(d.path()).len() <= 1, "at most the temporary file");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc\n");
        assert_eq!(entries(d.path()), ["SUMS"]);
    }

    #[test]
    fn dropped_uncommitted_leaves_old_file_and_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("SUMS");
        std::fs::write(&dest, b"old\n").unwrap();
        let mut f = OutFile::create(&dest).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old\n");
        assert_eq!(entries(d.path()), ["SUMS"]);
    }

    #[test]
    fn the_temporary_file_is_not_in_the_directory_while_written() {
        let d = tempfile::tempdir().unwrap();
        let f = OutFile::create(&d.path().join("SUMS")).unwrap();
        if f.named {
            eprintln!("note: no O_TMPFILE here; the temporary file is named");
            return;
        }
        assert!(entries(d.path()).is_empty());
        f.commit().unwrap();
        assert_eq!(entries(d.path()), ["SUMS"]);
    }

    #[test]
    fn a_bare_file_name_is_in_the_current_directory() {
        // `-o SUMS`: the parent is "", which means ".".
        let d = tempfile::tempdir().unwrap();
        let mut f = OutFile::create(&d.path().join("x")).unwrap();
        f.write_all(b"x").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(d.path().join("x")).unwrap(), b"x");
    }

    #[test]
    fn a_symbolic_link_is_written_through_and_kept() {
        // As a shell's `>` does: the file the link names gets the output.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::write(d.path().join("real/SUMS"), b"old\n").unwrap();
        std::os::unix::fs::symlink("real/SUMS", d.path().join("hop")).unwrap();
        std::os::unix::fs::symlink("hop", d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("nowhere", d.path().join("dangling")).unwrap();
        for (name, target) in [("link", "real/SUMS"), ("dangling", "nowhere")] {
            let mut f = OutFile::create(&d.path().join(name)).unwrap();
            f.write_all(name.as_bytes()).unwrap();
            f.commit().unwrap();
            let link = std::fs::symlink_metadata(d.path().join(name)).unwrap();
            assert!(link.file_type().is_symlink(), "{name} is still a link");
            assert_eq!(
                std::fs::read(d.path().join(target)).unwrap(),
                name.as_bytes()
            );
        }
        assert_eq!(entries(&d.path().join("real")), ["SUMS"]);
    }

    #[test]
    fn a_link_loop_and_a_directory_are_refused_before_any_work() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", d.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", d.path().join("b")).unwrap();
        let e = OutFile::create(&d.path().join("a")).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
        std::fs::create_dir(d.path().join("dir")).unwrap();
        std::os::unix::fs::symlink("dir", d.path().join("to-dir")).unwrap();
        std::os::unix::fs::symlink("new/", d.path().join("to-new-dir")).unwrap();
        for name in ["dir", "to-dir", ".", "new/", "new/.", "to-new-dir"] {
            let e = OutFile::create(&d.path().join(name)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::IsADirectory, "{name}");
        }
        let mut left = entries(d.path());
        left.sort();
        assert_eq!(
            left,
            ["a", "b", "dir", "to-dir", "to-new-dir"],
            "nothing created"
        );
    }

    #[test]
    fn a_name_near_name_max_gets_a_temporary_name_that_fits() {
        let d = tempfile::tempdir().unwrap();
        let long = "n".repeat(NAME_MAX);
        let tmp = temp_name(long.as_ref(), 0);
        assert_eq!(tmp.len(), NAME_MAX);
        assert!(is_temp_name(long.as_ref(), &tmp));
        assert!(!is_temp_name("m".as_ref(), &tmp));
        assert!(is_temp_name(
            "SUMS".as_ref(),
            ".SUMS.parsum-12.tmp".as_ref()
        ));
        assert!(is_temp_name(
            "SUMS".as_ref(),
            ".SUMS.x1.parsum-tmp".as_ref()
        ));
        assert!(!is_temp_name("SUMS".as_ref(), ".SUMS.parsum-.tmp".as_ref()));
        assert!(!is_temp_name(
            "SUMS".as_ref(),
            ".SUM.parsum-12.tmp".as_ref()
        ));
        for len in [200, 240, NAME_MAX] {
            let dest = d.path().join("n".repeat(len));
            let mut f = OutFile::create(&dest).unwrap();
            f.write_all(b"x").unwrap();
            f.commit().unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"x", "{len}");
        }
    }

    #[test]
    fn missing_directory_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = OutFile::create(&d.path().join("no/such/SUMS")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    /// Only /proc's own spelling of a descriptor is one: `/dev/fd/01`
    /// names nothing (ENOENT), and a link to it must not write into
    /// descriptor 1.
    #[test]
    fn a_descriptor_is_spelled_as_proc_spells_it() {
        if !Path::new("/proc/self/fd/1").exists() {
            return; // no /proc here
        }
        assert_eq!(own_descriptor(Path::new("/dev/fd/1")), Some(1));
        assert_eq!(own_descriptor(Path::new("/proc/self/fd/0")), Some(0));
        assert_eq!(own_descriptor(Path::new("/proc/self/fd/../fd/2")), Some(2));
        for name in [
            "/dev/fd/01",
            "/dev/fd/+1",
            "/dev/fd/",
            "/proc/self/fdinfo/1",
        ] {
            assert_eq!(own_descriptor(Path::new(name)), None, "{name}");
        }
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/fd/01", d.path().join("x")).unwrap();
        assert_eq!(descriptor_named(&d.path().join("x")), None);
        std::os::unix::fs::symlink("/dev/stdout", d.path().join("y")).unwrap();
        assert_eq!(descriptor_named(&d.path().join("y")), Some(1));
    }

    /// `-o /dev/stdout` with stdout on a pipe: the link chain ends in
    /// /proc's `pipe:[N]`, which names nothing when followed by hand; the
    /// pipe is written into. (It failed: `No such file or directory`.)
    #[test]
    fn a_proc_fd_link_to_a_pipe_is_written_into() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (mut r, w) = std::io::pipe().unwrap();
        let via = PathBuf::from(format!("/proc/self/fd/{}", w.as_raw_fd()));
        if !via.exists() {
            return; // no /proc here
        }
        let mut f = OutFile::create(&via).unwrap();
        f.write_all(b"through\n").unwrap();
        f.commit().unwrap();
        drop(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"through\n");
    }
}
