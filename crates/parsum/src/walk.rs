//! The directory walk: a depth-first traversal that yields entries sorted by
//! path and reports everything it does not hash.
//!
//! Order: the entries of each directory are sorted by their name's bytes and
//! visited depth first, so the output is sorted component by component
//! (`a/z` before `a.b`, since the directory `a` sorts before `a.b`). Memory
//! is one sorted listing per directory level on the current path, so a
//! million-file tree costs no more than its widest directories.
//!
//! Nothing is skipped silently: symbolic links (unless `--follow`), FIFOs,
//! sockets and devices, mount points under `--one-file-system`, excluded
//! names and symlink loops each produce a [`Event::Skipped`]. Special files
//! are classified from `lstat` and never opened.
//!
//! Descriptors, not paths: each directory is opened relative to its parent's
//! descriptor (`openat`), its entries are stat'ed with `fstatat` and its
//! files are later opened with `openat` too (a [`FileEntry`] carries its
//! directory's descriptor). So the depth of a tree is not limited by
//! `PATH_MAX` (a path of 4000 nested directories is longer than the kernel
//! takes), and no lookup walks the full path again for each file. The cost is
//! one open descriptor per directory level being walked, plus one per
//! directory with files still queued for hashing; `app::run` raises the soft
//! `RLIMIT_NOFILE` to the hard limit for that, and every directory
//! descriptor counts against a budget below that limit (`dirfd.rs`).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use crate::dirfd::DirFd;
use crate::hash::FileStat;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A regular file found by the walk.
#[derive(Debug, Clone)]
pub struct FileEntry {
    pub path: PathBuf,
    /// The directory it is in, to open it by name (`openat`); `None` for a
    /// file named on the command line, opened by its path.
    pub dir: Option<Arc<DirFd>>,
    pub stat: FileStat,
    /// Reached through a symbolic link (so opening must follow links).
    pub via_link: bool,
}

/// Why an entry was not hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    Symlink,
    Special(&'static str),
    Excluded,
    OtherFileSystem,
    /// A pseudo-file that never ends (`/proc/kcore`, `trace_pipe`), on the
    /// named pseudo file system.
    Unbounded(&'static str),
    /// A directory that is its own ancestor through symlinks. Counted as an
    /// error (exit 1), as `find -L` does.
    Loop,
}

/// A directory on another device than its parent: walked separately (on
/// its own thread, by its own producer) with [`walk_subtree`].
#[derive(Debug, Clone)]
pub struct Subtree {
    pub path: PathBuf,
    /// The directory, already opened.
    fd: Arc<DirFd>,
    rel: PathBuf,
    depth: usize,
    dev: u64,
    root_dev: u64,
    ancestors: Vec<(u64, u64)>,
    via_link: bool,
}

/// What the walk reports, in path order.
#[derive(Debug)]
pub enum Event {
    File(FileEntry),
    /// A mount point (or, with `--follow`, a linked directory elsewhere):
    /// its contents belong here in the order, walked by the receiver.
    Mount(Subtree),
    Skipped(PathBuf, Skip),
    Error(PathBuf, io::Error),
}

/// Walk options, from the command line.
#[derive(Debug, Default, Clone)]
pub struct WalkOpts {
    pub follow: bool,
    pub one_file_system: bool,
    pub max_depth: Option<usize>,
    pub excludes: Excludes,
}

/// `--exclude` globs: those without `/` match a name, the others match the
/// path below the root. As in gitignore and fd, a leading `./` (or `/`)
/// anchors a glob at the root (`./b` is the path `b`, not every `b`), and a trailing
/// `/` restricts it to directories (`b/` skips directories named `b`, not
/// files).
#[derive(Debug, Default, Clone)]
pub struct Excludes {
    /// Any type, then directories only.
    any: Globs,
    dirs: Globs,
}

/// Name globs and path globs.
#[derive(Debug, Default, Clone)]
struct Globs {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
}

impl Globs {
    fn is_match(&self, name: &OsString, rel: impl FnOnce(&OsString) -> PathBuf) -> bool {
        self.names.as_ref().is_some_and(|s| s.is_match(name))
            || self.paths.as_ref().is_some_and(|s| s.is_match(rel(name)))
    }
}

impl Excludes {
    pub fn new(globs: &[String]) -> Result<Excludes, String> {
        // [any, dirs] x [names, paths], with their counts.
        let mut b: [[(GlobSetBuilder, usize); 2]; 2] =
            std::array::from_fn(|_| std::array::from_fn(|_| (GlobSetBuilder::new(), 0)));
        for g in globs {
            let dir_only = g.ends_with('/');
            let trimmed = g.trim_end_matches('/');
            // A `/` anywhere but at the end makes a path glob: `./b` too.
            let path = trimmed.contains('/');
            // Below the root, as in gitignore: `./b`, `/b` and `.//b` are `b`.
            let mut trimmed = trimmed;
            while let Some(t) = trimmed
                .strip_prefix("./")
                .or_else(|| trimmed.strip_prefix('/'))
            {
                trimmed = t;
            }
            let glob = GlobBuilder::new(trimmed)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("invalid --exclude glob '{g}': {e}"))?;
            let slot = &mut b[dir_only as usize][path as usize];
            slot.0.add(glob);
            slot.1 += 1;
        }
        let build = |(b, n): (GlobSetBuilder, usize)| -> Result<Option<GlobSet>, String> {
            if n == 0 {
                return Ok(None);
            }
            b.build().map(Some).map_err(|e| e.to_string())
        };
        let [[any_n, any_p], [dir_n, dir_p]] = b;
        Ok(Excludes {
            any: Globs {
                names: build(any_n)?,
                paths: build(any_p)?,
            },
            dirs: Globs {
                names: build(dir_n)?,
                paths: build(dir_p)?,
            },
        })
    }

    /// Whether an entry of any type is excluded (known before its stat).
    fn excluded(&self, name: &OsString, rel: impl FnOnce(&OsString) -> PathBuf) -> bool {
        self.any.is_match(name, rel)
    }

    /// Whether a directory is excluded by a glob ending in `/`.
    fn excluded_dir(&self, name: &OsString, rel: impl FnOnce(&OsString) -> PathBuf) -> bool {
        self.dirs.is_match(name, rel)
    }
}

/// Walks `root`, calling `emit` for each event in path order.
///
/// A root that is a symbolic link is followed (like `find -H`): naming a
/// link on the command line means its target.
pub fn walk(root: &Path, opts: &WalkOpts, emit: &mut dyn FnMut(Event)) {
    walk_root(root, opts, Reach::Whole, emit)
}

/// How far one call walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The whole tree below (only other devices become [`Event::Mount`]).
    Whole,
    /// One directory: every subdirectory becomes an [`Event::Mount`], for
    /// a caller that walks it later, elsewhere (parsum over MPI).
    Level,
}

/// [`walk`] of `root` itself only: its subdirectories come back as
/// [`Event::Mount`]s, to be walked with [`walk_subtree_level`] later or by
/// another process (as a [`DirRef`]).
pub fn walk_level(root: &Path, opts: &WalkOpts, emit: &mut dyn FnMut(Event)) {
    walk_root(root, opts, Reach::Level, emit)
}

fn walk_root(root: &Path, opts: &WalkOpts, reach: Reach, emit: &mut dyn FnMut(Event)) {
    // `/dev/stdin` after `<&-`: the runtime's /dev/null is there, not the
    // input the name stands for (`stdio.rs`); as `-` is, it is EBADF.
    if crate::outfile::descriptor_named(root).is_some_and(crate::stdio::closed_at_start) {
        return emit(Event::Error(
            root.to_path_buf(),
            crate::stdio::closed_error(),
        ));
    }
    let meta = match fs::metadata(root) {
        Ok(m) => m,
        Err(e) => {
            // A dangling link named on the command line: say so precisely.
            return emit(Event::Error(root.to_path_buf(), e));
        }
    };
    let ft = meta.file_type();
    if ft.is_file() {
        let pseudo = crate::pseudofs::of_path(root, meta.dev());
        if let Some(fs) = pseudo {
            let name = root.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
            if crate::pseudofs::unbounded(fs, name) {
                return emit(Event::Skipped(
                    root.to_path_buf(),
                    Skip::Unbounded(fs.name()),
                ));
            }
        }
        let via_link = fs::symlink_metadata(root)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        return emit(Event::File(FileEntry {
            path: root.to_path_buf(),
            dir: None,
            stat: FileStat::of(&meta),
            via_link,
        }));
    }
    if !ft.is_dir() {
        return emit(Event::Skipped(
            root.to_path_buf(),
            Skip::Special(crate::hash::kind_name(ft)),
        ));
    }
    let fd = match DirFd::open(|| rustix::fs::open(root, dir_flags(true), Mode::empty())) {
        Ok(fd) => Arc::new(fd),
        Err(e) => return emit(Event::Error(root.to_path_buf(), e)),
    };
    let mut w = Walker {
        opts,
        dev: meta.dev(),
        root_dev: meta.dev(),
        ancestors: vec![(meta.dev(), meta.ino())],
        emit,
        reach,
    };
    // Only exactly "." (Path compares "./" equal to it): `parsum ./` prints
    // "./a", as `find ./` does; `parsum .` prints bare relative names
    // ("a/b", not "./a/b"), as people type them and as `sha256sum *` writes them.
    let base = if root.as_os_str() == "." {
        PathBuf::new()
    } else {
        root.to_path_buf()
    };
    w.dir(fd, &base, Path::new(""), 1, false);
}

/// The path of `name` in the directory shown as `shown`. At the top of
/// `parsum .` (`shown` empty) an entry called `-` is `./-`: a bare `-`
/// names standard input to every reader (`-c`, `--audit`, `sha256sum -c`),
/// never the file. Its place in walk order is `-`'s: under MPI, the
/// order of records (`cluster/record.rs`, `path_cmp`) drops a leading
/// `./` from every path.
fn shown_path(shown: &Path, name: &OsStr) -> PathBuf {
    if shown.as_os_str().is_empty() && name == "-" {
        PathBuf::from("./-")
    } else {
        shown.join(name)
    }
}

/// Walks a [`Subtree`] handed out by [`Event::Mount`].
pub fn walk_subtree(sub: Subtree, opts: &WalkOpts, emit: &mut dyn FnMut(Event)) {
    walk_sub(sub, opts, Reach::Whole, emit)
}

/// [`walk_subtree`] of the directory itself only, as [`walk_level`].
pub fn walk_subtree_level(sub: Subtree, opts: &WalkOpts, emit: &mut dyn FnMut(Event)) {
    walk_sub(sub, opts, Reach::Level, emit)
}

fn walk_sub(sub: Subtree, opts: &WalkOpts, reach: Reach, emit: &mut dyn FnMut(Event)) {
    let mut w = Walker {
        opts,
        dev: sub.dev,
        root_dev: sub.root_dev,
        ancestors: sub.ancestors,
        emit,
        reach,
    };
    w.dir(sub.fd, &sub.path, &sub.rel, sub.depth, sub.via_link);
}

/// A [`Subtree`] without its descriptor, named by its path: what another
/// process needs to walk it (parsum over MPI sends these between ranks).
/// [`DirRef::open`] opens it again by path and checks that it is still the
/// same directory (device and inode), so a directory replaced meanwhile is
/// reported, never walked in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRef {
    /// The path as shown (the root's spelling joined with the names below).
    pub path: PathBuf,
    /// The path below the root, for `--exclude` globs with a `/`.
    pub rel: PathBuf,
    /// The depth of its entries (the root's are at 1).
    pub depth: usize,
    /// The device of the directory and of the root (`--one-file-system`).
    pub dev: u64,
    pub root_dev: u64,
    /// (dev, ino) of every directory from the root to this one, itself
    /// last: the loop check under `--follow`.
    pub ancestors: Vec<(u64, u64)>,
    /// Reached through a followed symbolic link.
    pub via_link: bool,
}

impl Subtree {
    /// This subtree as a [`DirRef`]; its descriptor is closed when `self` drops.
    pub fn to_ref(&self) -> DirRef {
        DirRef {
            path: self.path.clone(),
            rel: self.rel.clone(),
            depth: self.depth,
            dev: self.dev,
            root_dev: self.root_dev,
            ancestors: self.ancestors.clone(),
            via_link: self.via_link,
        }
    }
}

/// Opens the directory at `path` (following a final symbolic link only if
/// `follow`). A path longer than the kernel takes (`ENAMETOOLONG`, deeper
/// than `PATH_MAX`) is opened one component at a time, each relative to the
/// one before, so depth is no limit here either; the caller checks that it
/// got the directory it expected.
pub fn open_dir(path: &Path, follow: bool) -> io::Result<DirFd> {
    DirFd::open(
        || match rustix::fs::open(path, dir_flags(follow), Mode::empty()) {
            Err(rustix::io::Errno::NAMETOOLONG) => open_by_components(path, follow),
            r => r,
        },
    )
}

fn open_by_components(path: &Path, follow: bool) -> rustix::io::Result<std::os::fd::OwnedFd> {
    use std::path::Component;
    let mut cur: Option<std::os::fd::OwnedFd> = None;
    let mut comps = path.components().peekable();
    while let Some(c) = comps.next() {
        let name: &OsStr = match c {
            Component::RootDir => "/".as_ref(),
            Component::CurDir => ".".as_ref(),
            Component::ParentDir => "..".as_ref(),
            Component::Normal(n) => n,
            Component::Prefix(_) => return Err(rustix::io::Errno::INVAL),
        };
        // Links on the way were followed when the path was listed.
        let flags = dir_flags(follow || comps.peek().is_some());
        let next = match &cur {
            Some(dir) => rustix::fs::openat(dir, name, flags, Mode::empty())?,
            None => rustix::fs::openat(rustix::fs::CWD, name, flags, Mode::empty())?,
        };
        cur = Some(next);
    }
    cur.ok_or(rustix::io::Errno::NOENT)
}

impl DirRef {
    /// Opens the directory again by its path, as a [`Subtree`]; an error if
    /// it is gone or is now another directory.
    pub fn open(self) -> io::Result<Subtree> {
        let fd = open_dir(&self.path, self.via_link)?;
        let st = FileStat::of_stat(&rustix::fs::fstat(&fd)?);
        if self.ancestors.last() != Some(&(st.dev, st.ino)) {
            return Err(io::Error::other(
                "directory replaced during the walk; its entries were not read",
            ));
        }
        Ok(Subtree {
            path: self.path,
            fd: Arc::new(fd),
            rel: self.rel,
            depth: self.depth,
            dev: self.dev,
            root_dev: self.root_dev,
            ancestors: self.ancestors,
            via_link: self.via_link,
        })
    }
}

/// Flags to open a directory; `follow`: through a symbolic link too.
fn dir_flags(follow: bool) -> OFlags {
    let f = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if follow {
        f
    } else {
        f | OFlags::NOFOLLOW
    }
}

fn entry(path: PathBuf, dir: &Arc<DirFd>, st: &Stat, via_link: bool) -> FileEntry {
    FileEntry {
        path,
        dir: Some(Arc::clone(dir)),
        stat: FileStat::of_stat(st),
        via_link,
    }
}

struct Walker<'a> {
    opts: &'a WalkOpts,
    /// The device this walker's directories are on.
    dev: u64,
    root_dev: u64,
    /// (dev, ino) of the directories on the current path, for loop checks.
    ancestors: Vec<(u64, u64)>,
    emit: &'a mut dyn FnMut(Event),
    reach: Reach,
}

impl Walker<'_> {
    /// Lists the directory open as `fd` (displayed under `shown`, `rel`
    /// below the root), whose entries are at `depth`. Returns a descriptor
    /// so that a parent that let go of its own can reopen it as `..`: `fd`
    /// itself, or, if this directory could not be reopened after a child
    /// (out of descriptors), a descriptor some levels below it.
    fn dir(
        &mut self,
        fd: Arc<DirFd>,
        shown: &Path,
        rel: &Path,
        depth: usize,
        via_link: bool,
    ) -> Below {
        if self.opts.max_depth.is_some_and(|m| depth > m) {
            return Below { fd, levels: 0 };
        }
        let listing = match rustix::fs::Dir::read_from(&*fd) {
            Ok(d) => d,
            Err(e) => {
                (self.emit)(Event::Error(shown_or_dot(shown), e.into()));
                return Below { fd, levels: 0 };
            }
        };
        let mut names: Vec<OsString> = Vec::new();
        for de in listing {
            match de {
                Ok(de) => {
                    let n = de.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.push(OsStr::from_bytes(n).to_os_string());
                    }
                }
                Err(e) => {
                    (self.emit)(Event::Error(shown_or_dot(shown), e.into()));
                    break;
                }
            }
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        // Cached per device and thread: one statfs per walker, in effect.
        let pseudo = crate::pseudofs::of_fd(&*fd, self.dev);
        // Subtle: `cur` is only `None` while a child is walked (below).
        let mut cur = Some(fd);
        for name in names {
            let fd = Arc::clone(cur.as_ref().expect("reopened after each child"));
            let path = shown_path(shown, &name);
            // The path below the root is only needed by path globs and
            // for directories: skip its allocation for plain files.
            let rel_of = |name: &OsString| rel.join(name);
            if self.opts.excludes.excluded(&name, rel_of) {
                (self.emit)(Event::Skipped(path, Skip::Excluded));
                continue;
            }
            // lstat, not d_type: we need dev, inode and link count anyway.
            let lst = match rustix::fs::statat(&*fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(m) => m,
                Err(e) => {
                    (self.emit)(Event::Error(path, e.into()));
                    continue;
                }
            };
            let mut link = via_link;
            let is_link = FileType::from_raw_mode(lst.st_mode as _) == FileType::Symlink;
            let st = if is_link {
                if !self.opts.follow {
                    (self.emit)(Event::Skipped(path, Skip::Symlink));
                    continue;
                }
                link = true;
                match rustix::fs::statat(&*fd, name.as_os_str(), AtFlags::empty()) {
                    Ok(m) => m,
                    Err(e) => {
                        (self.emit)(Event::Error(path, e.into()));
                        continue;
                    }
                }
            } else {
                lst
            };
            let ft = FileType::from_raw_mode(st.st_mode as _);
            let FileStat { dev, ino, .. } = FileStat::of_stat(&st);
            if ft == FileType::RegularFile {
                if let Some(fs) =
                    pseudo.filter(|&fs| crate::pseudofs::unbounded(fs, name.as_bytes()))
                {
                    (self.emit)(Event::Skipped(path, Skip::Unbounded(fs.name())));
                    continue;
                }
                (self.emit)(Event::File(entry(path, &fd, &st, link)));
            } else if ft == FileType::Directory {
                if self.opts.excludes.excluded_dir(&name, rel_of) {
                    (self.emit)(Event::Skipped(path, Skip::Excluded));
                    continue;
                }
                if self.opts.one_file_system && dev != self.root_dev {
                    (self.emit)(Event::Skipped(path, Skip::OtherFileSystem));
                    continue;
                }
                let id = (dev, ino);
                if self.ancestors.contains(&id) {
                    (self.emit)(Event::Skipped(path, Skip::Loop));
                    continue;
                }
                if self.opts.max_depth.is_some_and(|m| depth + 1 > m) {
                    continue;
                }
                let child = match DirFd::open(|| {
                    rustix::fs::openat(&*fd, name.as_os_str(), dir_flags(is_link), Mode::empty())
                }) {
                    Ok(c) => Arc::new(c),
                    Err(e) => {
                        (self.emit)(Event::Error(path, e));
                        continue;
                    }
                };
                if dev != self.dev || self.reach == Reach::Level {
                    let mut ancestors = self.ancestors.clone();
                    ancestors.push(id);
                    let sub = Subtree {
                        path,
                        fd: child,
                        rel: rel_of(&name),
                        depth: depth + 1,
                        dev,
                        root_dev: self.root_dev,
                        ancestors,
                        via_link: link,
                    };
                    (self.emit)(Event::Mount(sub));
                    continue;
                }
                // Deep down, let go of this directory while the child is
                // walked and reopen it as the child's `..` afterwards, so a
                // walk holds at most HELD_LEVELS descriptors for its path.
                // Not through a followed link: its `..` is elsewhere.
                let me = *self.ancestors.last().expect("the current directory");
                drop(fd);
                if depth > crate::dirfd::held_levels() && !link {
                    cur = None;
                }
                self.ancestors.push(id);
                let child = self.dir(child, &path, &rel_of(&name), depth + 1, link);
                self.ancestors.pop();
                if cur.is_none() {
                    match reopen_parent(&child, me) {
                        Ok(p) => cur = Some(p),
                        Err(e) => {
                            // The rest of this directory is lost; the parent
                            // retries from the same descriptor, one level up.
                            (self.emit)(Event::Error(shown_or_dot(shown), e));
                            return Below {
                                fd: child.fd,
                                levels: child.levels + 1,
                            };
                        }
                    }
                }
            } else {
                (self.emit)(Event::Skipped(
                    path,
                    Skip::Special(crate::hash::kind_of_type(ft)),
                ));
            }
        }
        Below {
            fd: cur.expect("reopened after each child"),
            levels: 0,
        }
    }
}

/// A directory descriptor `levels` directories below the one walked.
struct Below {
    fd: Arc<DirFd>,
    levels: usize,
}

/// Reopens the parent of the directory `child` came back from, which must
/// be the directory `expected` (dev, ino): it is not if the tree was moved
/// meanwhile.
fn reopen_parent(child: &Below, expected: (u64, u64)) -> io::Result<Arc<DirFd>> {
    let up = vec![".."; child.levels + 1].join("/");
    let p = DirFd::open(|| {
        rustix::fs::openat(&*child.fd, up.as_str(), dir_flags(false), Mode::empty())
    })?;
    let st = FileStat::of_stat(&rustix::fs::fstat(&p)?);
    if (st.dev, st.ino) != expected {
        return Err(io::Error::other(
            "directory moved during the walk; its remaining entries were not read",
        ));
    }
    Ok(Arc::new(p))
}

fn shown_or_dot(p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        p.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(root: &Path, opts: &WalkOpts) -> Vec<String> {
        let mut out = Vec::new();
        walk(root, opts, &mut |e| {
            let s = match e {
                Event::Mount(m) => format!("M {}", m.path.display()),
                Event::File(f) => format!("F {}", f.path.strip_prefix(root).unwrap().display()),
                Event::Skipped(p, s) => {
                    format!("S {} {s:?}", p.strip_prefix(root).unwrap().display())
                }
                Event::Error(p, _) => format!("E {}", p.strip_prefix(root).unwrap().display()),
            };
            out.push(s);
        });
        out
    }

    #[test]
    fn sorted_depth_first_with_skips() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/sub")).unwrap();
        fs::write(r.join("a/sub/z"), "z").unwrap();
        fs::write(r.join("a.b"), "x").unwrap();
        fs::write(r.join("B"), "x").unwrap();
        fs::write(r.join(".hidden"), "x").unwrap();
        std::os::unix::fs::symlink("a.b", r.join("link")).unwrap();
        let got = names(r, &WalkOpts::default());
        assert_eq!(
            got,
            ["F .hidden", "F B", "F a/sub/z", "F a.b", "S link Symlink"]
        );
        let opts = WalkOpts {
            max_depth: Some(1),
            ..Default::default()
        };
        assert_eq!(
            names(r, &opts),
            ["F .hidden", "F B", "F a.b", "S link Symlink"]
        );
        let opts = WalkOpts {
            excludes: Excludes::new(&["a".into(), "*.b".into()]).unwrap(),
            ..Default::default()
        };
        assert_eq!(
            names(r, &opts),
            [
                "F .hidden",
                "F B",
                "S a Excluded",
                "S a.b Excluded",
                "S link Symlink"
            ]
        );
        let opts = WalkOpts {
            excludes: Excludes::new(&["a/sub".into()]).unwrap(),
            ..Default::default()
        };
        assert!(names(r, &opts).contains(&"S a/sub Excluded".to_string()));
        // `./` anchors at the root; a trailing `/` takes directories only.
        fs::write(r.join("a/a.b"), "x").unwrap();
        fs::write(r.join("a/B"), "x").unwrap();
        let opts = WalkOpts {
            excludes: Excludes::new(&["./a.b".into(), "B/".into(), "./a/sub/".into()]).unwrap(),
            ..Default::default()
        };
        assert_eq!(
            names(r, &opts),
            [
                "F .hidden",
                "F B",
                "F a/B",
                "F a/a.b",
                "S a/sub Excluded",
                "S a.b Excluded",
                "S link Symlink"
            ]
        );
        let opts = WalkOpts {
            excludes: Excludes::new(&["a/".into(), ".//B".into(), "/a.b/".into()]).unwrap(),
            ..Default::default()
        };
        assert_eq!(
            names(r, &opts),
            [
                "F .hidden",
                "S B Excluded",
                "S a Excluded",
                "F a.b",
                "S link Symlink"
            ]
        );
    }

    #[test]
    fn follow_detects_loops() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f"), "f").unwrap();
        std::os::unix::fs::symlink("..", r.join("d/up")).unwrap();
        let opts = WalkOpts {
            follow: true,
            ..Default::default()
        };
        assert_eq!(names(r, &opts), ["F d/f", "S d/up Loop"]);
    }
}
