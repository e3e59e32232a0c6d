//! The FUSE file system: a real directory tree served read-only, every
//! file read going through the timing [`Model`].
//!
//! Invariant: the bytes served are the source file's bytes at the requested
//! offset (a short read only at end of file), and every read of file data
//! pays the model's cost. Files are opened with `FOPEN_DIRECT_IO`, so the
//! kernel's page cache neither serves repeated reads nor reads ahead: each
//! `read(2)` of a reader becomes read requests of at most `max_read` bytes
//! that reach the model. Metadata (lookup, getattr, readdir, readlink)
//! costs nothing in the model.
//!
//! Inode numbers are handed out on first lookup and kept for the life of
//! the mount (1 is the root); a name is an `OsStr` all the way, so non-UTF-8
//! names work. Errors from the source are passed on with their errno.

use super::model::Model;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may cache names and attributes: the tree is static.
const TTL: Duration = Duration::from_secs(60);

/// Paths by inode number and back.
#[derive(Default)]
struct Inodes {
    /// `paths[i]` is inode `i + 1`, relative to the source root.
    paths: Vec<PathBuf>,
    by_path: HashMap<PathBuf, u64>,
}

impl Inodes {
    fn ino(&mut self, rel: PathBuf) -> u64 {
        if let Some(&i) = self.by_path.get(&rel) {
            return i;
        }
        self.paths.push(rel.clone());
        let i = self.paths.len() as u64;
        self.by_path.insert(rel, i);
        i
    }
}

/// The file system; mount it with [`super::mount::Mounted::mount`].
pub struct SpindleFs {
    root: PathBuf,
    model: Arc<Model>,
    inodes: Mutex<Inodes>,
    open: Mutex<HashMap<u64, Arc<File>>>,
    next_fh: AtomicU64,
}

impl SpindleFs {
    /// Serves the tree under `root` through `model`.
    pub fn new(root: PathBuf, model: Arc<Model>) -> SpindleFs {
        let mut inodes = Inodes::default();
        inodes.ino(PathBuf::new()); // the root is inode 1
        SpindleFs {
            root,
            model,
            inodes: Mutex::new(inodes),
            open: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    /// The source path and relative path of `ino`.
    fn path(&self, ino: INodeNo) -> Result<(PathBuf, PathBuf), Errno> {
        let inodes = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        let rel = usize::try_from(u64::from(ino))
            .ok()
            .and_then(|i| inodes.paths.get(i.checked_sub(1)?))
            .ok_or(Errno::ENOENT)?
            .clone();
        Ok((self.root.join(&rel), rel))
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&u64::from(fh)).cloned().ok_or(Errno::EBADF)
    }
}

fn kind(md: &Metadata) -> FileType {
    let t = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else if t.is_char_device() {
        FileType::CharDevice
    } else {
        FileType::RegularFile
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let ns = Duration::from_nanos(nsecs.clamp(0, 999_999_999) as u64);
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + ns
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + ns
    }
}

fn attr(ino: u64, md: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: md.size(),
        blocks: md.blocks(),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(md),
        // Read-only: the write bits go.
        perm: (md.mode() & 0o7555) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: md.blksize() as u32,
        flags: 0,
    }
}

fn lstat(p: &Path) -> Result<Metadata, Errno> {
    std::fs::symlink_metadata(p).map_err(Errno::from)
}

/// Reads up to `len` bytes at `offset`, short only at end of file.
fn read_at(f: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

impl Filesystem for SpindleFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Lets mmap (b3sum maps large files) work on direct_io files; its
        // page faults still read through the model. Older kernels lack it,
        // and then such a mapping fails with ENODEV.
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = (|| {
            let (_, rel) = self.path(parent)?;
            let rel = rel.join(name);
            let md = lstat(&self.root.join(&rel))?;
            let ino = self
                .inodes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ino(rel);
            Ok(attr(ino, &md))
        })();
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.path(ino).and_then(|(p, _)| lstat(&p)) {
            Ok(md) => reply.attr(&TTL, &attr(ino.into(), &md)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        use std::os::unix::ffi::OsStrExt;
        match self
            .path(ino)
            .and_then(|(p, _)| std::fs::read_link(p).map_err(Errno::from))
        {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self
            .path(ino)
            .and_then(|(p, _)| File::open(p).map_err(Errno::from))
        {
            Ok(f) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.open
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(fh, Arc::new(f));
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let f = match self.file(fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let r = self.model.serve(ino.into(), offset, || {
            let r = read_at(&f, offset, size as usize);
            let n = r.as_ref().map_or(0, |b| b.len() as u64);
            (r, n)
        });
        match r {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&u64::from(fh));
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let r = (|| {
            let (p, rel) = self.path(ino)?;
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .map_err(Errno::from)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect();
            // The same order on every call, so offsets stay valid.
            names.sort();
            Ok((rel, names))
        })();
        let (rel, names) = match r {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        // Offsets: 1 = ".", 2 = "..", 3.. = names; an entry's offset is
        // where the next call resumes.
        let mut entries: Vec<(u64, FileType, std::ffi::OsString)> = vec![
            (u64::from(ino), FileType::Directory, ".".into()),
            (1, FileType::Directory, "..".into()),
        ];
        for name in names {
            let child = rel.join(&name);
            let Ok(md) = std::fs::symlink_metadata(self.root.join(&child)) else {
                continue; // gone since read_dir
            };
            let i = self
                .inodes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ino(child);
            entries.push((i, kind(&md), name));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }
}
