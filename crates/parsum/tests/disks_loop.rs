//! The disk model on real block devices: a loop device with a partition
//! table and two ext4 file systems is one disk group (one `parsum: disk`
//! line naming both partitions, one gate), and a second loop device is a
//! group of its own.
//!
//! Needs root, loop devices and `losetup`, `sfdisk`, `partx`, `mkfs.ext4`,
//! `mount` (`.ci/disks` installs them); skips with a message otherwise.
//! Everything it sets up is torn down by [`LoopDisk`]'s `Drop`, also when
//! an assertion fails.

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
    ]
    .into_iter()
    .filter(|t| !on_path(t))
    .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

/// A loop device over a sparse image, its partitions' file systems mounted
/// in a temporary directory. Dropping it unmounts, detaches and removes the
/// device nodes it made, whatever happened before.
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
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let m = m.to_string_lossy();
            if run("umount", &[&m]).is_err() {
                let _ = run("umount", &["-l", &m]);
            }
        }
        let _ = run("partx", &["-d", &self.dev]);
        let _ = run("losetup", &["-d", &self.dev]);
        if let Some(r) = &self.rotational {
            let _ = std::fs::write(self.queue_rotational(), r);
        }
        for n in &self.made_nodes {
            let _ = std::fs::remove_file(n);
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
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(size))
            .map_err(|e| e.to_string())?;
        let dev = run("losetup", &["-f", "--show", "-P", &img.to_string_lossy()])?;
        let name = dev.trim_start_matches("/dev/").to_string();
        let mut disk = LoopDisk {
            name,
            dev,
            mounts: Vec::new(),
            made_nodes: Vec::new(),
            rotational: None,
            dir,
        };
        disk.rotational = std::fs::read_to_string(disk.queue_rotational()).ok();
        Ok(disk)
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
        run("mount", &[dev, &m.to_string_lossy()])?;
        self.mounts.push(m.clone());
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
        if !node.exists() {
            let (maj, min) = id.split_once(':').ok_or("bad dev")?;
            run("mknod", &[&node.to_string_lossy(), "b", maj, min])?;
            self.made_nodes.push(node.clone());
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
