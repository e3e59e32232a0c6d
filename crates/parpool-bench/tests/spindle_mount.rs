//! The simulated spindle serves the source tree's bytes, names and links,
//! read-only, and charges its model: mounted for real through FUSE (skipped
//! with a message where FUSE cannot mount: no /dev/fuse, not root and no
//! fusermount3).

use parpool_bench::spindle::mount::unavailable;
use parpool_bench::spindle::{Mode, Mounted, Params};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Runs `body` on a thread and fails if it takes over 60 s (a hung mount).
fn within_60s(body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => t.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p)
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("spindle test hung for 60 s"),
    }
}

fn source(dir: &Path) -> Vec<u8> {
    let big: Vec<u8> = (0..3_000_017u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("big"), &big).unwrap();
    std::fs::write(dir.join("sub/small"), b"hello\n").unwrap();
    std::fs::write(dir.join(OsStr::from_bytes(b"n\xffx")), b"").unwrap();
    std::os::unix::fs::symlink("sub/small", dir.join("link")).unwrap();
    big
}

fn mount_or_skip(src: &Path, mnt: &Path, p: Params) -> Option<Mounted> {
    if let Some(why) = unavailable() {
        eprintln!("skipped: FUSE unavailable: {why}");
        return None;
    }
    match Mounted::mount(src, mnt, p) {
        Ok(m) => Some(m),
        // A container may have /dev/fuse yet forbid mount(2).
        Err(e) => {
            eprintln!("skipped: cannot mount: {e}");
            None
        }
    }
}

#[test]
fn spindle_serves_the_tree_read_only_and_charges_seeks() {
    within_60s(|| {
        let tmp = tempfile::tempdir().unwrap();
        let (src, mnt) = (tmp.path().join("src"), tmp.path().join("mnt"));
        std::fs::create_dir(&mnt).unwrap();
        let big = source(&src);
        let mut p = Params::new(Mode::Spindle);
        p.seek = Duration::from_millis(1);
        p.bytes_per_sec = 1e9;
        let Some(m) = mount_or_skip(&src, &mnt, p) else {
            return;
        };
        assert_eq!(std::fs::read(mnt.join("big")).unwrap(), big);
        assert_eq!(std::fs::read(mnt.join("link")).unwrap(), b"hello\n");
        assert_eq!(
            std::fs::read_link(mnt.join("link")).unwrap(),
            Path::new("sub/small")
        );
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(&mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [&b"big"[..], b"link", b"n\xffx", b"sub"].map(<[u8]>::to_vec)
        );
        let e = std::fs::read(mnt.join("missing")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(std::fs::write(mnt.join("big"), b"x").is_err(), "read-only");
        let s = m.served();
        // big (one seek, then in order) and small (one seek); direct_io
        // sends every read to the model.
        assert_eq!(s.bytes, big.len() as u64 + 6);
        assert!(s.seeks >= 2 && s.seeks < s.reads, "{s:?}");
        m.unmount().unwrap();
        assert!(!std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .contains(&*mnt.to_string_lossy()));
    });
}

#[test]
fn flash_serves_concurrent_readers_the_same_bytes() {
    within_60s(|| {
        let tmp = tempfile::tempdir().unwrap();
        let (src, mnt) = (tmp.path().join("src"), tmp.path().join("mnt"));
        std::fs::create_dir(&mnt).unwrap();
        let big = source(&src);
        let Some(m) = mount_or_skip(&src, &mnt, Params::new(Mode::Flash)) else {
            return;
        };
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| assert_eq!(std::fs::read(mnt.join("big")).unwrap(), big));
            }
        });
        assert_eq!(m.served().seeks, 0);
        assert_eq!(m.served().bytes, 6 * big.len() as u64);
    });
}
