//! `-o FILE`: an output file that appears only once it is complete.
//!
//! Invariant: FILE itself is never written piecewise. The output goes to a
//! temporary file in the same directory (`.NAME.parsum-PID.tmp`, created
//! exclusively, so it never clobbers anything), which is flushed to disk
//! and renamed over FILE only when the run has written all of its output
//! ([`OutFile::commit`]). Any other end (a write error, a panic, the
//! temporary file dropped uncommitted) removes the temporary file and
//! leaves an existing FILE as it was. A process that is killed outright
//! (a crashed MPI rank ends the whole job) leaves at most the hidden
//! temporary file, never a FILE that looks complete.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// An output being written to a temporary file beside its final path.
#[derive(Debug)]
pub struct OutFile {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    /// Set once renamed: nothing to clean up.
    committed: bool,
}

impl OutFile {
    /// Creates the temporary file for `dest`. Fails (with a message naming
    /// `dest`) when its directory cannot take a new file, before any work.
    pub fn create(dest: &Path) -> io::Result<OutFile> {
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(OsString::from_vec(
            format!(".parsum-{}.tmp", std::process::id()).into_bytes(),
        ));
        let tmp = dest.with_file_name(tmp_name);
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(OutFile {
            file,
            tmp,
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
        std::fs::rename(&self.tmp, &self.dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for OutFile {
    fn drop(&mut self) {
        if !self.committed {
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
        assert_eq!(entries(d.path()).len(), 1, "only the temporary file");
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
    fn missing_directory_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = OutFile::create(&d.path().join("no/such/SUMS")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
