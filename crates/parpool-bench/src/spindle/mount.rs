//! Mounting a [`SpindleFs`]: the checks that say why FUSE cannot work
//! here, and a guard that unmounts.
//!
//! Invariant: while a [`Mounted`] lives, the tree is mounted and served by
//! [`SERVER_THREADS`] threads (so concurrent reads really reach the model
//! together); when it drops, the file system is unmounted and its threads
//! joined, also on unwinding (unless someone unmounted it already; then
//! only the threads are joined). A mount that fails leaves nothing mounted.

use super::fs::SpindleFs;
use super::model::{Model, Params, Served};
use fuser::{BackgroundSession, Config, MountOption};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Threads serving requests: more than any reader count measured, so that
/// requests wait in the model, never in the kernel's queue.
pub const SERVER_THREADS: usize = 32;

/// The largest read request the kernel sends (`max_read`); with direct_io
/// a larger `read(2)` is split into requests of this size.
pub const MAX_READ: u32 = 1 << 20;

/// Why FUSE cannot be used here, or `None` if it can be tried.
pub fn unavailable() -> Option<String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Some(format!("cannot open /dev/fuse: {e}"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && which("fusermount3").is_none() && which("fusermount").is_none() {
        return Some(
            "not root and no fusermount3 in PATH (Debian: apt-get install fuse3)".to_string(),
        );
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// A mounted simulated device; unmounts on drop.
pub struct Mounted {
    session: Option<BackgroundSession>,
    model: Arc<Model>,
    mountpoint: PathBuf,
}

impl Mounted {
    /// Mounts `source` at `mountpoint`, read-only, through a model with `params`.
    pub fn mount(source: &Path, mountpoint: &Path, params: Params) -> Result<Mounted, String> {
        if let Some(why) = unavailable() {
            return Err(format!("FUSE is not available: {why}"));
        }
        let source = std::fs::canonicalize(source)
            .map_err(|e| format!("source {}: {e}", source.display()))?;
        if !source.is_dir() {
            return Err(format!("source {}: not a directory", source.display()));
        }
        if !mountpoint.is_dir() {
            return Err(format!(
                "mount point {}: not a directory",
                mountpoint.display()
            ));
        }
        let model = Arc::new(Model::new(params));
        let fs = SpindleFs::new(source, Arc::clone(&model));
        let mut cfg = Config::default();
        cfg.mount_options = vec![
            MountOption::RO,
            MountOption::FSName("spindle".into()),
            MountOption::Subtype(params.mode.to_string()),
            MountOption::CUSTOM(format!("max_read={MAX_READ}")),
        ];
        cfg.n_threads = Some(SERVER_THREADS);
        cfg.clone_fd = true;
        let session = fuser::spawn_mount(fs, mountpoint, &cfg)
            .map_err(|e| format!("mount {}: {e}", mountpoint.display()))?;
        Ok(Mounted {
            session: Some(session),
            model,
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// What the model has served so far.
    pub fn served(&self) -> Served {
        self.model.served()
    }

    /// Whether the server still runs (an outside `fusermount3 -u` ends it).
    pub fn is_serving(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Where the tree is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits for the server threads; reports a failure.
    pub fn unmount(mut self) -> Result<(), String> {
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> Result<(), String> {
        match self.session.take() {
            // Unmounted from outside (umount, fusermount3 -u): the server
            // has ended; unmounting again would fail with EINVAL.
            Some(s) if s.guard.is_finished() => s
                .join()
                .map_err(|e| format!("server of {}: {e}", self.mountpoint.display())),
            Some(s) => s
                .umount_and_join()
                .map_err(|e| format!("unmount {}: {e}", self.mountpoint.display())),
            None => Ok(()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_now() {
            eprintln!("spindle: {e}");
        }
    }
}
