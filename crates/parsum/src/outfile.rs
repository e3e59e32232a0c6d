//! `-o FILE`: an output file that appears only once it is complete.
//!
//! Invariant: FILE itself is never written piecewise. The output goes to a
//! temporary file in FILE's directory, which is flushed to disk and renamed
//! over FILE only when the run has written all of its output
//! ([`OutFile::commit`]); any other end leaves an existing FILE as it was.
//!
//! FILE may be a symbolic link: the output then replaces the file it
//! points to, and the link stays, as with a shell's `>`.
//!
//! The temporary file is unnamed where the file system allows it
//! (`O_TMPFILE`): the walk cannot see it (`parsum -o SUMS .` does not hash
//! its own output), and a process that is killed outright (a crashed MPI
//! rank ends the whole job) leaves nothing behind. It gets a name
//! (`.NAME.parsum-PID.tmp`, created exclusively) only at the commit, for
//! the rename. Where `O_TMPFILE` is not supported, it is that named file
//! from the start, removed on drop; a killed process may then leave it.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

/// An output being written to a temporary file beside its final path.
#[derive(Debug)]
pub struct OutFile {
    file: File,
    /// The temporary name: already in use (named from the start), or
    /// given at the commit (unnamed file).
    tmp: PathBuf,
    named: bool,
    dest: PathBuf,
    /// Set once renamed: nothing to clean up.
    committed: bool,
}

impl OutFile {
    /// Creates the temporary file for `dest`. Fails (with a message naming
    /// `dest`) when its directory cannot take a new file, before any work.
    pub fn create(dest: &Path) -> io::Result<OutFile> {
        let dest = &follow_links(dest)?;
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(OsString::from_vec(
            format!(".parsum-{}.tmp", std::process::id()).into_bytes(),
        ));
        let tmp = dest.with_file_name(tmp_name);
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let unnamed = rustix::fs::open(
            dir,
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            // The kernel applies the umask, as for any created file.
            Mode::from_raw_mode(0o666),
        );
        let (file, named) = match unnamed {
            Ok(fd) => (File::from(fd), false),
            // Not supported here (the kernel or the file system): a named
            // temporary file. Any other error is the directory's, and the
            // named create reports it as well.
            Err(_) => (
                OpenOptions::new().write(true).create_new(true).open(&tmp)?,
                true,
            ),
        };
        Ok(OutFile {
            file,
            tmp,
            named,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Appends `bytes` to the temporary file.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    /// Flushes the temporary file to disk and renames it over the final
    /// path. On an error the temporary file is removed (by `Drop`).
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        if !self.named {
            // Name the unnamed file through /proc (no privilege needed,
            // unlike AT_EMPTY_PATH), then rename that name into place.
            let fd_path = format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&self.file)
            );
            rustix::fs::linkat(
                CWD,
                fd_path.as_str(),
                CWD,
                &self.tmp,
                AtFlags::SYMLINK_FOLLOW,
            )?;
            self.named = true;
        }
        std::fs::rename(&self.tmp, &self.dest)?;
        self.committed = true;
        Ok(())
    }
}

/// Links in a row followed at most this many times (Linux's limit).
const MAX_LINKS: usize = 40;

/// The file `dest` names, as a shell's `>` would write it: symbolic links
/// at its end are followed (the output replaces what the last one points
/// to, even if that does not exist yet, and the links stay). A directory,
/// or a loop of links, is refused here, before any work, rather than at the
/// rename after hours of hashing.
fn follow_links(dest: &Path) -> io::Result<PathBuf> {
    let mut path = dest.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Not there yet: created at the commit.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path),
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            return Err(rustix::io::Errno::ISDIR.into());
        }
        if !meta.file_type().is_symlink() {
            return Ok(path);
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

impl Drop for OutFile {
    fn drop(&mut self) {
        if self.named && !self.committed {
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
        for name in ["dir", "to-dir", "."] {
            let e = OutFile::create(&d.path().join(name)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::IsADirectory, "{name}");
        }
        let mut left = entries(d.path());
        left.sort();
        assert_eq!(left, ["a", "b", "dir", "to-dir"], "nothing created");
    }

    #[test]
    fn missing_directory_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = OutFile::create(&d.path().join("no/such/SUMS")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
