//! The disk model on real block devices: a loop device with a partition
//! table and two ext4 file systems is one disk group (one `parsum: disk`
//! line naming both partitions, one gate), and a second loop device is a
//! group of its own.
//!
//! Needs root, loop devices and `losetup`, `sfdisk`, `partx`, `mkfs.ext4`,
//! `mount` (`.ci/disks` installs them); skips with a message otherwise.
//! Everything it sets up is torn down by [`LoopDisk`]'s `Drop`, also when
//! an assertion fails, and by its reaper process when the test process is
//! killed (no `Drop` runs then).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{is_root, parsum};
use parsum::hash::{hash_reader, Algo, AlgoSet};

/// Runs a setup tool under a one-minute `timeout`; its output on failure.
fn run(tool: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .arg("60")
        .arg(tool)
        .args(args)
        .output()
        .map_err(|e| format!("{tool}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| d.join(tool).is_file())
            || ["/sbin", "/usr/sbin"]
                .iter()
                .any(|d| Path::new(d).join(tool).is_file())
    })
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    if !is_root() {
        return Some("not root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control".into());
    }
    let missing: Vec<&str> = [
        "losetup",
        "sfdisk",
        "partx",
        "mkfs.ext4",
        "mount",
        "umount",
        "timeout",
        "setsid",
    ]
    .into_iter()
    .filter(|t| !on_path(t))
    .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

/// A loop device over a sparse image, its partitions' file systems mounted
/// in a temporary directory. Dropping it unmounts, detaches and removes the
/// device nodes it made, whatever happened before. If the test process dies
/// without dropping it (SIGKILL, a timeout), its reaper does the same.
struct LoopDisk {
    /// `loop3`.
    name: String,
    dev: String,
    mounts: Vec<PathBuf>,
    made_nodes: Vec<PathBuf>,
    /// `queue/rotational` as found, restored on drop (the queue outlives
    /// the attachment: the next user of this loop device would see ours).
    rotational: Option<String>,
    dir: tempfile::TempDir,
    /// A `sh` in a session of its own that waits for its stdin (a pipe only
    /// this process holds: std's pipes are close-on-exec) to close, then
    /// runs `undo.sh` if it is still there. `Drop` removes the script
    /// first, so the reaper only acts when this process died.
    reaper: Option<std::process::Child>,
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let m = m.to_string_lossy();
            if run("umount", &[&m]).is_err() {
                let _ = run("umount", &["-l", &m]);
            }
        }
        if !self.dev.is_empty() {
            let _ = run("partx", &["-d", &self.dev]);
            let _ = run("losetup", &["-d", &self.dev]);
        }
        if let Some(r) = &self.rotational {
            let _ = std::fs::write(self.queue_rotational(), r);
        }
        for n in &self.made_nodes {
            let _ = std::fs::remove_file(n);
        }
        // Undone: the reaper must find nothing to do (killed before this
        // line, it undoes everything again, which is harmless).
        let _ = std::fs::remove_file(self.undo_script());
        if let Some(mut reaper) = self.reaper.take() {
            drop(reaper.stdin.take());
            let _ = reaper.wait();
        }
    }
}

impl LoopDisk {
    /// A 64 MiB loop device with `parts` ext4 partitions (0: ext4 on the
    /// whole device), each mounted.
    fn new(parts: usize) -> Result<LoopDisk, String> {
        let mut disk = LoopDisk::attach(64 << 20)?;
        let fs_devs = if parts == 0 {
            vec![disk.dev.clone()]
        } else {
            disk.partition(parts)?
        };
        for d in &fs_devs {
            run("mkfs.ext4", &["-q", "-F", d])?;
            disk.mount(d)?;
        }
        Ok(disk)
    }

    /// A loop device over a sparse image of `size` bytes, nothing on it.
    fn attach(size: u64) -> Result<LoopDisk, String> {
        let dir = tempfile::Builder::new()
            .prefix("parsum-loop-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let img = dir.path().join("disk.img");
        let mut disk = LoopDisk {
            name: String::new(),
            dev: String::new(),
            mounts: Vec::new(),
            made_nodes: Vec::new(),
            rotational: None,
            dir,
            reaper: None,
        };
        // The reaper is started before anything is attached: a kill while
        // losetup runs is undone too (it detaches by image, and waits a
        // moment for a setup tool that outlived this process).
        disk.arm()?;
        let script = r#"cat >/dev/null; [ -f "$0" ] || exit 0; sleep 1; sh "$0" >/dev/null 2>&1"#;
        let reaper = Command::new("setsid")
            .args(["sh", "-c", script])
            .arg(disk.undo_script())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("setsid: {e}"))?;
        disk.reaper = Some(reaper);
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(size))
            .map_err(|e| e.to_string())?;
        disk.dev = run("losetup", &["-f", "--show", "-P", &img.to_string_lossy()])?;
        disk.name = disk.dev.trim_start_matches("/dev/").to_string();
        disk.rotational = std::fs::read_to_string(disk.queue_rotational()).ok();
        disk.arm()?;
        Ok(disk)
    }

    fn undo_script(&self) -> PathBuf {
        self.dir.path().join("undo.sh")
    }

    /// Writes what the reaper runs if this process dies: what `Drop` does,
    /// for what is set up so far. Called after every step.
    fn arm(&self) -> Result<(), String> {
        let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut sh = String::new();
        for m in self.mounts.iter().rev() {
            let m = q(&m.to_string_lossy());
            sh += &format!("umount {m} || umount -l {m}\n");
        }
        let img = q(&self.dir.path().join("disk.img").to_string_lossy());
        sh += &format!(
            "for d in $(losetup -j {img} | cut -d: -f1); do partx -d $d; losetup -d $d; done\n"
        );
        if let Some(r) = &self.rotational {
            sh += &format!(
                "printf %s {} > {}\n",
                q(r.trim()),
                q(&self.queue_rotational())
            );
        }
        for n in &self.made_nodes {
            sh += &format!("rm -f {}\n", q(&n.to_string_lossy()));
        }
        sh += &format!("rm -rf {}\n", q(&self.dir.path().to_string_lossy()));
        let tmp = self.dir.path().join("undo.sh.new");
        std::fs::write(&tmp, sh)
            .and_then(|()| std::fs::rename(&tmp, self.undo_script()))
            .map_err(|e| format!("undo script: {e}"))
    }

    /// Writes a table of `parts` partitions; returns their device nodes.
    fn partition(&mut self, parts: usize) -> Result<Vec<String>, String> {
        let table = "size=24M\n".repeat(parts - 1) + ";\n";
        let mut child = Command::new("timeout")
            .args(["60", "sfdisk", "-q", &self.dev])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(table.as_bytes())
            .map_err(|e| e.to_string())?;
        if !child.wait().map_err(|e| e.to_string())?.success() {
            return Err("sfdisk failed".into());
        }
        // No udev here: the kernel learns the partitions from partx (if
        // sfdisk's re-read did not do it), and the nodes may be missing.
        let _ = run("partx", &["-a", &self.dev]);
        let _ = run("partx", &["-u", &self.dev]);
        (1..=parts)
            .map(|i| self.node(&format!("{}p{i}", self.name)))
            .collect()
    }

    /// Mounts the file system on `dev` in this disk's directory.
    fn mount(&mut self, dev: &str) -> Result<PathBuf, String> {
        let m = self.dir.path().join(format!("m{}", self.mounts.len()));
        std::fs::create_dir(&m).map_err(|e| e.to_string())?;
        self.mount_at(dev, m)
    }

    /// Mounts the file system on `dev` on the directory `m` (which may be
    /// on another of this disk's mounts).
    fn mount_at(&mut self, dev: &str, m: PathBuf) -> Result<PathBuf, String> {
        // Armed before mounting: a kill right after `mount` is undone too.
        self.mounts.push(m.clone());
        self.arm()?;
        if let Err(e) = run("mount", &[dev, &m.to_string_lossy()]) {
            self.mounts.pop();
            return Err(e);
        }
        Ok(m)
    }

    /// `/dev/NAME` for the partition `name`, waiting for the kernel to list
    /// it and making the node from sysfs' `dev` if there is none.
    fn node(&mut self, name: &str) -> Result<String, String> {
        let sys = Path::new("/sys/class/block").join(name).join("dev");
        let start = std::time::Instant::now();
        let id = loop {
            if let Ok(id) = std::fs::read_to_string(&sys) {
                break id.trim().to_string();
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                return Err(format!("{name} never appeared in /sys/class/block"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let node = PathBuf::from("/dev").join(name);
        let (maj, min) = id.split_once(':').ok_or("bad dev")?;
        let want = libc::makedev(
            maj.parse().map_err(|_| "bad dev")?,
            min.parse().map_err(|_| "bad dev")?,
        );
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        match std::fs::symlink_metadata(&node) {
            Ok(m) if m.file_type().is_block_device() && m.rdev() == want => {}
            found => {
                // Missing, or stale: partition minors are handed out anew
                // at every attachment, so a node an earlier run left may
                // name another device now. Never use it.
                if found.is_ok() {
                    std::fs::remove_file(&node).map_err(|e| format!("{}: {e}", node.display()))?;
                }
                self.made_nodes.push(node.clone());
                self.arm()?;
                run("mknod", &[&node.to_string_lossy(), "b", maj, min])?;
            }
        }
        Ok(node.to_string_lossy().into_owned())
    }

    fn queue_rotational(&self) -> String {
        format!("/sys/block/{}/queue/rotational", self.name)
    }

    fn set_rotational(&self, on: bool) -> Result<(), String> {
        let q = self.queue_rotational();
        std::fs::write(&q, if on { "1" } else { "0" }).map_err(|e| format!("{q}: {e}"))
    }
}

/// Writes files of assorted sizes under `root`; returns the GNU lines
/// parsum must print for them (BLAKE3), sorted as parsum sorts.
fn fill(root: &Path, seed: u8) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..40u32 {
        let size = match i % 4 {
            0 => 0,
            1 => 100,
            2 => 70_000,
            _ => 1 << 20,
        } + i as usize;
        let data: Vec<u8> = (0..size)
            .map(|j| (j as u32 * 31 + i * 7 + seed as u32) as u8)
            .collect();
        let path = root.join(format!("d{}/f{i:02}", i % 3));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &data).unwrap();
        let h = hash_reader(&mut &data[..], AlgoSet::of(Algo::Blake3)).unwrap();
        let hex: String = h.digests[0]
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        lines.push(format!("{hex}  {}", path.display()));
    }
    // parsum's order: by path bytes, component by component (d0/f00, ...).
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines
}

fn disk_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("parsum: disk "))
        .collect()
}

#[test]
fn two_partitions_of_one_disk_share_one_disk_group() {
    if let Some(why) = cannot_run() {
        eprintln!("note: skipping the loop-device test: {why}");
        return;
    }
    let disk = match LoopDisk::new(2) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("note: skipping the loop-device test: could not set up loop devices: {e}");
            return;
        }
    };
    disk.set_rotational(true).unwrap();
    let other = LoopDisk::new(0).expect("a second loop device (the first one worked)");
    other.set_rotational(false).unwrap();
    let (n, m) = (&disk.name, &other.name);
    let mut expected = fill(&disk.mounts[0], 1);
    expected.extend(fill(&disk.mounts[1], 2));
    expected.extend(fill(&other.mounts[0], 3));

    let out = parsum()
        .arg("-v")
        .args(&disk.mounts)
        .args(&other.mounts)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = disk_lines(&stderr);
    for l in &lines {
        eprintln!("{l}");
    }
    // One group for both partitions, named by the disk, rotational...
    let ours: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("parsum: disk {n} ")))
        .collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    let line = ours[0];
    assert!(
        line.contains(&format!("file systems {n}p1, {n}p2;")),
        "{line}"
    );
    assert!(line.contains("; rotational per sysfs)"), "{line}");
    assert!(
        line.contains("1 reader(s), adapting within 1..=")
            && line.contains("[rotational: start sequential, adapt]"),
        "{line}"
    );
    // ...and the second loop device its own, non-rotational.
    let theirs: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("parsum: disk {m} ")))
        .collect();
    assert_eq!(theirs.len(), 1, "{stderr}");
    assert!(
        theirs[0].contains(&format!("file systems {m};")),
        "{}",
        theirs[0]
    );
    assert!(
        theirs[0].contains("non-rotational per sysfs"),
        "{}",
        theirs[0]
    );
    assert!(
        !lines.iter().any(|l| l.contains(&format!("disk {n}p"))),
        "no partition is a group: {stderr}"
    );
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, expected);

    // Sequential on both, same bytes.
    let seq = parsum()
        .args(["--jobs", "1"])
        .args(&disk.mounts)
        .args(&other.mounts)
        .output()
        .unwrap();
    assert!(seq.status.success());
    assert_eq!(
        String::from_utf8(seq.stdout)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        got
    );

    // An override on one partition fixes the readers of its whole disk.
    let spec = format!("{n}p2=3");
    let out = parsum()
        .args(["-v", "--device-jobs", &spec])
        .args(&disk.mounts)
        .args(&other.mounts)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = disk_lines(&stderr);
    assert_eq!(lines.len(), 2, "{stderr}");
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("parsum: disk {n} ")))
        .unwrap();
    assert!(
        line.ends_with(&format!(": 3 reader(s) [--device-jobs {spec}]")),
        "{line}"
    );
}

/// btrfs RAID1 over two loop devices, with a subvolume: every subvolume has
/// an anonymous `st_dev` that mountinfo does not list (not even the top
/// one), so parsum must find the mount by path and the members through
/// `/sys/fs/btrfs/<uuid>/devices/`: one group over both disks.
#[test]
fn btrfs_over_two_disks_is_one_group_of_two_disks() {
    if let Some(why) =
        cannot_run().or_else(|| (!on_path("mkfs.btrfs")).then(|| "no mkfs.btrfs".into()))
    {
        eprintln!("note: skipping the btrfs loop-device test: {why}");
        return;
    }
    let second = match LoopDisk::attach(256 << 20) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("note: skipping the btrfs loop-device test: {e}");
            return;
        }
    };
    // Declared after `second`, so it is dropped (unmounted) first.
    let mut first = LoopDisk::attach(256 << 20).unwrap();
    if let Err(e) = run(
        "mkfs.btrfs",
        &[
            "-q",
            "-f",
            "-d",
            "raid1",
            "-m",
            "raid1",
            &first.dev,
            &second.dev,
        ],
    ) {
        eprintln!("note: skipping the btrfs loop-device test: {e}");
        return;
    }
    let _ = run("btrfs", &["device", "scan"]);
    let root = match first.mount(&first.dev.clone()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("note: skipping the btrfs loop-device test: {e}");
            return;
        }
    };
    first.set_rotational(true).unwrap();
    second.set_rotational(false).unwrap();
    run(
        "btrfs",
        &["subvolume", "create", &root.join("sub").to_string_lossy()],
    )
    .unwrap();
    let mut expected = fill(&root.join("sub"), 4);
    expected.extend(fill(&root.join("top"), 5));
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
    assert_eq!(libc::major(dev(&root)), 0, "btrfs has anonymous st_dev");
    assert_ne!(
        dev(&root),
        dev(&root.join("sub")),
        "a subvolume has its own"
    );

    let out = parsum()
        .arg("-v")
        .arg(root.join("sub"))
        .arg(root.join("top"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = disk_lines(&stderr);
    for l in &lines {
        eprintln!("{l}");
    }
    let mut names = [first.name.clone(), second.name.clone()];
    names.sort();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "parsum: disk {}+{} (2 disks; file systems {}; rotational per sysfs): 2 reader(s)",
            names[0], names[1], first.name
        )),
        "{}",
        lines[0]
    );
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, expected);

    // A path on a subvolume names the group too (its st_dev is anonymous).
    let spec = format!("{}=1", root.join("top").display());
    let out = parsum()
        .args(["-v", "--device-jobs", &spec])
        .arg(root.join("sub"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = disk_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].ends_with(&format!(": 1 reader(s) [--device-jobs {spec}]")),
        "{}",
        lines[0]
    );
}

/// Env var that makes [`cleanup_helper_holds_a_loop_disk`] set up a disk
/// and wait to be killed (it passes at once without it).
const HELPER: &str = "PARSUM_LOOP_HELPER";

/// Not a test of its own: the process [`a_killed_test_leaves_nothing_behind`]
/// kills while it holds a partitioned, mounted loop device.
#[test]
fn cleanup_helper_holds_a_loop_disk() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let disk = LoopDisk::new(2).expect("helper: set up a loop device");
    disk.set_rotational(true).unwrap();
    let img = disk.dir.path().join("disk.img");
    // On a line of its own: the harness prints the test's name before it.
    let mut line = format!("\nready {} {}", disk.name, img.display());
    for m in &disk.mounts {
        line += &format!(" {}", m.display());
    }
    println!("{line}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

/// A test killed midway (SIGKILL: no `Drop` runs; a timeout, a CI cancel)
/// must not leave mounts, loop devices, device nodes or a changed
/// `queue/rotational` behind: each [`LoopDisk`] has a reaper process that
/// undoes it when the test process dies.
#[test]
fn a_killed_test_leaves_nothing_behind() {
    if let Some(why) = cannot_run() {
        eprintln!("note: skipping the loop-device cleanup test: {why}");
        return;
    }
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cleanup_helper_holds_a_loop_disk",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = l.strip_prefix("ready ") {
                let _ = tx.send(rest.to_string());
                return;
            }
        }
    });
    let ready = rx.recv_timeout(std::time::Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    let Ok(ready) = ready else {
        eprintln!("note: skipping the loop-device cleanup test: the helper set up nothing");
        return;
    };
    let words: Vec<&str> = ready.split(' ').collect();
    let (name, img, mounts) = (words[0], words[1], &words[2..]);
    let leftovers = || -> Vec<String> {
        let mut left = Vec::new();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for m in mounts {
            if info.lines().any(|l| l.split(' ').nth(4) == Some(m)) {
                left.push(format!("mount {m}"));
            }
        }
        let backing = format!("/sys/block/{name}/loop/backing_file");
        if std::fs::read_to_string(&backing).is_ok_and(|b| b.trim() == img) {
            left.push(format!("loop device {name} over {img}"));
        }
        for p in ["p1", "p2"] {
            if Path::new(&format!("/dev/{name}{p}")).exists()
                && !Path::new(&format!("/sys/class/block/{name}{p}")).exists()
            {
                left.push(format!("node /dev/{name}{p}"));
            }
        }
        left
    };
    let start = std::time::Instant::now();
    let mut left = leftovers();
    while !left.is_empty() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = leftovers();
    }
    if !left.is_empty() {
        // Clean up here, so a failure leaves nothing behind either.
        for m in mounts.iter().rev() {
            let _ = run("umount", &["-l", m]);
        }
        let dev = format!("/dev/{name}");
        let _ = run("partx", &["-d", &dev]);
        let _ = run("losetup", &["-d", &dev]);
        for p in ["p1", "p2"] {
            let _ = std::fs::remove_file(format!("/dev/{name}{p}"));
        }
        let _ = std::fs::write(format!("/sys/block/{name}/queue/rotational"), "1");
        if let Some(dir) = Path::new(img).parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    assert!(left.is_empty(), "left behind by a killed test: {left:?}");
}

/// Writes `n` files `dir/fNNNNN`, empty (they take no block) but every
/// 500th, which holds its number.
fn many_files(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let content = if i % 500 == 0 {
            i.to_string()
        } else {
            String::new()
        };
        std::fs::write(dir.join(format!("f{i:05}")), content).unwrap();
    }
}

/// Two file systems of one disk share one pool and one gate; the second
/// is mounted inside the first, so its walk is a sub-producer of the
/// first's, and the first goes on producing while the consumer drains the
/// second. With one reader for the whole disk (`--jobs 1`, an override on
/// either partition) and the adaptive gate at one reader, and with far
/// more batches after the mount point than every channel and buffer on
/// the way holds, the run must finish (under the 30 s guard), print what
/// the one-thread run prints, and verify a manifest whose lines alternate
/// between the two file systems.
#[test]
fn nested_mounts_on_one_disk_share_one_reader_without_deadlock() {
    if let Some(why) = cannot_run() {
        eprintln!("note: skipping the nested-mount loop-device test: {why}");
        return;
    }
    let mut disk = match LoopDisk::attach(96 << 20) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("note: skipping the nested-mount loop-device test: {e}");
            return;
        }
    };
    let parts = disk.partition(2).unwrap();
    for p in &parts {
        // Enough inodes for the small files (the default is ~1 per 4 KiB).
        run("mkfs.ext4", &["-q", "-F", "-N", "30000", p]).unwrap();
    }
    let root = disk.mount(&parts[0]).unwrap();
    std::fs::create_dir(root.join("m")).unwrap();
    let inner = disk.mount_at(&parts[1], root.join("m")).unwrap();
    disk.set_rotational(true).unwrap();
    // Before the mount point, in it, and 24,000 files (375 batches) after it.
    many_files(&root.join("a"), 500);
    many_files(&inner.join("s"), 3000);
    // A large file first in the inner file system holds the consumer there
    // while the outer walk runs ahead and fills its channels.
    let big: Vec<u8> = (0..16u32 << 20).map(|i| ((i * 7) >> 5) as u8).collect();
    std::fs::write(inner.join("s/big"), big).unwrap();
    many_files(&root.join("z"), 24_000);
    let n = &disk.name;

    let one = parsum().args(["--jobs", "1"]).arg(&root).output().unwrap();
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let lines = one.stdout.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines, 27_501);
    let p1 = format!("{n}p1=1");
    let p2 = format!("{n}p2=1");
    for args in [
        vec!["-v"],
        vec!["-v", "--device-jobs", &p1],
        vec!["-v", "--device-jobs", &p2, "--jobs", "4"],
        vec!["-v", "--jobs", "2"],
    ] {
        let out = parsum().args(&args).arg(&root).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(
            out.stdout == one.stdout,
            "{args:?}: output differs from --jobs 1"
        );
        let groups = disk_lines(&stderr);
        assert_eq!(groups.len(), 1, "{args:?}: {stderr}");
        assert!(
            groups[0].starts_with(&format!(
                "parsum: disk {n} (file systems {n}p1, {n}p2; rotational per sysfs): "
            )),
            "{}",
            groups[0]
        );
        if args.len() > 1 && args[1] == "--device-jobs" {
            assert!(
                groups[0].contains(": 1 reader(s) [--device-jobs"),
                "{}",
                groups[0]
            );
        }
    }

    // A manifest alternating between the two file systems, line by line.
    let text = String::from_utf8(one.stdout).unwrap();
    let (a, b): (Vec<&str>, Vec<&str>) = text
        .lines()
        .partition(|l| !l.contains(&format!("{}/", inner.display())));
    let mut alternating = String::new();
    for (x, y) in a.iter().zip(&b).take(2000) {
        alternating += &format!("{x}\n{y}\n");
    }
    let manifest = disk.dir.path().join("alternating.b3");
    std::fs::write(&manifest, &alternating).unwrap();
    let mut took = Vec::new();
    for jobs in ["1", "2"] {
        let start = std::time::Instant::now();
        let out = parsum()
            .args(["-c", "--jobs", jobs])
            .arg(&manifest)
            .output()
            .unwrap();
        took.push(start.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ok = String::from_utf8(out.stdout).unwrap();
        assert_eq!(ok.lines().count(), 4000);
        assert!(ok.lines().all(|l| l.ends_with(": OK")), "{ok}");
    }
    // Alternating lines of one disk group are one run, as sorted ones are:
    // a run per line (a thread, a pool stage and a driver each) made the
    // alternating manifest 25 times slower than the same lines sorted.
    let mut sorted: Vec<&str> = alternating.lines().collect();
    sorted.sort_by_key(|l| &l[66..]);
    let sorted_manifest = disk.dir.path().join("sorted.b3");
    std::fs::write(&sorted_manifest, sorted.join("\n") + "\n").unwrap();
    let start = std::time::Instant::now();
    let out = parsum()
        .args(["-c", "--jobs", "2"])
        .arg(&sorted_manifest)
        .output()
        .unwrap();
    let sorted_took = start.elapsed();
    assert!(out.status.success());
    assert!(
        took[1] < sorted_took * 5 + std::time::Duration::from_millis(300),
        "alternating {:?}, sorted {sorted_took:?}",
        took[1]
    );
}

/// The kernel escapes only space, tab, newline and backslash in mountinfo:
/// a mount point whose name is not UTF-8 (a Latin-1 label) appears as raw
/// bytes. One such mount anywhere made the whole table unreadable as text,
/// so every file system with an anonymous `st_dev` lost its type (btrfs
/// on a rotational disk became "not mounted", one reader per core).
/// Run in a private mount namespace (`unshare -m`): its mounts vanish with
/// it, whatever happens to the test.
#[test]
fn a_non_utf8_mount_point_does_not_hide_the_mount_table() {
    if !is_root() || !on_path("unshare") {
        eprintln!("note: skipping the non-UTF-8 mount point test: not root or no unshare");
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::Builder::new()
        .prefix("parsum-ns-")
        .tempdir()
        .unwrap();
    let latin1 = d.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    let plain = d.path().join("plain");
    let script = r#"mkdir -p "$1" "$2" && mount -t tmpfs t1 "$1" && mount -t tmpfs t2 "$2" &&
        echo x > "$2/f" && exec "$3" -v --no-progress "$2/f""#;
    let out = Command::new("timeout")
        .args(["30", "unshare", "-m", "sh", "-c", script, "sh"])
        .arg(&latin1)
        .arg(&plain)
        .arg(assert_cmd::cargo::cargo_bin("parsum"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        eprintln!("note: skipping the non-UTF-8 mount point test: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let lines = disk_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("parsum: disk tmpfs "), "{}", lines[0]);
}

/// overlayfs gives its files per-layer `st_dev`s that mountinfo does not
/// list (the mount has another): they are one group with the mount, so
/// `--device-jobs MERGED=N` (the directory's `st_dev`) fixes the readers
/// of its files. It used to be ignored. In a private mount namespace.
#[test]
fn an_override_on_an_overlay_mount_covers_its_files() {
    if !is_root() || !on_path("unshare") {
        eprintln!("note: skipping the overlay test: not root or no unshare");
        return;
    }
    let d = tempfile::Builder::new()
        .prefix("parsum-ns-")
        .tempdir()
        .unwrap();
    for sub in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(d.path().join(sub)).unwrap();
    }
    std::fs::write(d.path().join("lower/a"), b"a").unwrap();
    let p = |s: &str| d.path().join(s).to_string_lossy().into_owned();
    // The upper layer on a tmpfs, the lower one where the temp dir is: two
    // file systems, so the files get layer st_devs (xino off).
    let script = r#"mount -t tmpfs t "$2" && mkdir "$2/u" "$2/w" &&
        mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/u,workdir=$2/w" "$3" &&
        echo b > "$3/b" && exec "$4" -v --no-progress --device-jobs "$3=1" "$3""#;
    let out = Command::new("timeout")
        .args(["30", "unshare", "-m", "sh", "-c", script, "sh"])
        .args([p("lower"), p("upper"), p("merged")])
        .arg(assert_cmd::cargo::cargo_bin("parsum"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && (stderr.contains("unshare failed") || stderr.contains("overlay")) {
        eprintln!("note: skipping the overlay test: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 2);
    let lines = disk_lines(&stderr);
    assert!(!lines.is_empty(), "{stderr}");
    for l in &lines {
        assert!(l.starts_with("parsum: disk overlay "), "{l}");
        assert!(l.contains(": 1 reader(s) [--device-jobs "), "{l}");
    }
}

/// Partition minors are handed out anew at every attachment, so a
/// `/dev/loopNpM` node left by an earlier run (no udev removes it) may
/// point at another device now, such as another test's partition. It must
/// be replaced, never used: the setup used any existing node and could
/// `mkfs` someone else's file system.
#[test]
fn a_stale_partition_node_is_replaced_not_formatted() {
    if let Some(why) = cannot_run() {
        eprintln!("note: skipping the stale-node test: {why}");
        return;
    }
    let Ok(victim) = LoopDisk::attach(8 << 20) else {
        eprintln!("note: skipping the stale-node test: no loop device");
        return;
    };
    let marker = b"parsum: not to be formatted";
    std::fs::write(&victim.dev, marker).unwrap();
    let mut disk = LoopDisk::attach(64 << 20).unwrap();
    // A stale node under the partition's name, with the victim's numbers.
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(&victim.dev).unwrap().rdev();
    let stale = format!("/dev/{}p1", disk.name);
    let _ = std::fs::remove_file(&stale);
    // Ours to remove, also if this test is killed.
    disk.made_nodes.push(PathBuf::from(&stale));
    disk.arm().unwrap();
    run(
        "mknod",
        &[
            &stale,
            "b",
            &libc::major(rdev).to_string(),
            &libc::minor(rdev).to_string(),
        ],
    )
    .unwrap();
    let parts = disk.partition(2);
    let fs = parts
        .as_ref()
        .map(|p| run("mkfs.ext4", &["-q", "-F", &p[0]]));
    let mut head = vec![0u8; marker.len()];
    use std::io::Read;
    std::fs::File::open(&victim.dev)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    let node_rdev = std::fs::metadata(&stale).map(|m| m.rdev()).ok();
    let _ = std::fs::remove_file(&stale); // whatever happened
    assert_eq!(head, marker, "the stale node's device was formatted");
    fs.unwrap().unwrap();
    let sys = std::fs::read_to_string(format!("/sys/class/block/{}p1/dev", disk.name)).unwrap();
    let (maj, min) = sys.trim().split_once(':').unwrap();
    assert_eq!(
        node_rdev,
        Some(libc::makedev(maj.parse().unwrap(), min.parse().unwrap()))
    );
}
