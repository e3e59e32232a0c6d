//! Pseudo file systems: procfs, sysfs, debugfs, configfs, tracefs and the
//! like, whose files are made up by the kernel when they are read.
//!
//! Their `st_size` means nothing: sysfs reports a 4096-byte placeholder,
//! procfs reports 0, and the content is generated anew on each read. So a
//! file on such a file system is read to EOF, as `sha256sum` does, and the
//! "changed during read" check compares the inode and the times (mtime and
//! ctime), never the size (see `hash.rs`).
//!
//! The file system is recognised by its `statfs` magic number, once per
//! device (`st_dev`) and thread. A few of their files never end, block, or
//! are the size of the address space (`/proc/kcore`, `pagemap`,
//! `trace_pipe`): [`unbounded`] names them, the walk reports them as
//! skipped, and no read of a pseudo-file goes past [`MAX_PSEUDO_READ`].

use std::cell::Cell;
use std::os::fd::AsFd;
use std::path::Path;

/// No pseudo-file is read past this many bytes: a read that goes on is
/// reported, not awaited.
pub const MAX_PSEUDO_READ: u64 = 1 << 30;

/// A pseudo file system, by its `statfs` magic number (linux/magic.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudoFs {
    Proc,
    Sys,
    Debug,
    Trace,
    Config,
    Security,
    Cgroup,
    Other(&'static str),
}

impl PseudoFs {
    /// The file system for a `statfs` `f_type`, if it is a pseudo one.
    pub fn from_magic(magic: u32) -> Option<PseudoFs> {
        Some(match magic {
            0x9fa0 => PseudoFs::Proc,
            0x6265_6572 => PseudoFs::Sys,
            0x6462_6720 => PseudoFs::Debug,
            0x7472_6163 => PseudoFs::Trace,
            0x6265_6570 => PseudoFs::Config,
            0x7363_6673 => PseudoFs::Security,
            0x0027_e0eb | 0x6367_7270 => PseudoFs::Cgroup,
            0xcafe_4a11 => PseudoFs::Other("bpf"),
            0x6165_676c => PseudoFs::Other("pstore"),
            0xde5e_81e4 => PseudoFs::Other("efivarfs"),
            0x6573_5543 => PseudoFs::Other("fusectl"),
            0x4249_4e4d => PseudoFs::Other("binfmt_misc"),
            0xf97c_ff8c => PseudoFs::Other("selinuxfs"),
            0x4341_5d53 => PseudoFs::Other("smackfs"),
            0x1cd1 => PseudoFs::Other("devpts"),
            0x6e73_6673 => PseudoFs::Other("nsfs"),
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            PseudoFs::Proc => "procfs",
            PseudoFs::Sys => "sysfs",
            PseudoFs::Debug => "debugfs",
            PseudoFs::Trace => "tracefs",
            PseudoFs::Config => "configfs",
            PseudoFs::Security => "securityfs",
            PseudoFs::Cgroup => "cgroupfs",
            PseudoFs::Other(n) => n,
        }
    }
}

thread_local! {
    /// The last device looked up on this thread, and its answer: files come
    /// in runs on one device, so this saves the `fstatfs` of almost all.
    static LAST: Cell<Option<(u64, Option<PseudoFs>)>> = const { Cell::new(None) };
}

/// The pseudo file system `fd` (a file or directory on device `dev`) is on.
pub fn of_fd(fd: impl AsFd, dev: u64) -> Option<PseudoFs> {
    if let Some((d, fs)) = LAST.get() {
        if d == dev {
            return fs;
        }
    }
    // An error answers "not pseudo": the file is then read as a regular one.
    let fs = rustix::fs::fstatfs(fd)
        .ok()
        .and_then(|s| PseudoFs::from_magic(s.f_type as u32));
    LAST.set(Some((dev, fs)));
    fs
}

/// [`of_fd`] for a path.
pub fn of_path(path: &Path, dev: u64) -> Option<PseudoFs> {
    if let Some((d, fs)) = LAST.get() {
        if d == dev {
            return fs;
        }
    }
    let fs = rustix::fs::statfs(path)
        .ok()
        .and_then(|s| PseudoFs::from_magic(s.f_type as u32));
    LAST.set(Some((dev, fs)));
    fs
}

/// Whether the file `name` on `fs` must not be read: it never ends, blocks
/// for data, or is as large as the address space.
pub fn unbounded(fs: PseudoFs, name: &[u8]) -> bool {
    match fs {
        PseudoFs::Proc => matches!(
            name,
            b"kcore" | b"kmsg" | b"pagemap" | b"kpagecount" | b"kpageflags" | b"kpagecgroup"
        ),
        PseudoFs::Trace | PseudoFs::Debug => {
            matches!(name, b"trace_pipe" | b"trace_pipe_raw" | b"snapshot_raw")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn recognises_proc_and_not_tmp() {
        if let Ok(m) = std::fs::metadata("/proc/self/status") {
            let f = std::fs::File::open("/proc/self/status").unwrap();
            assert_eq!(of_fd(&f, m.dev()), Some(PseudoFs::Proc));
        }
        let d = tempfile::tempdir().unwrap();
        let m = std::fs::metadata(d.path()).unwrap();
        // Whatever /tmp is on (tmpfs, ext4, overlay), it is not pseudo.
        assert_eq!(of_path(d.path(), m.dev()), None);
    }

    #[test]
    fn unbounded_names() {
        assert!(unbounded(PseudoFs::Proc, b"kcore"));
        assert!(unbounded(PseudoFs::Proc, b"pagemap"));
        assert!(!unbounded(PseudoFs::Proc, b"status"));
        assert!(unbounded(PseudoFs::Trace, b"trace_pipe"));
        assert!(!unbounded(PseudoFs::Config, b"kcore"));
    }
}
