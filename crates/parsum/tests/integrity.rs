//! `--update STATE` and `--verify STATE`: integrity over time.

mod common;
use common::*;

use std::fs::{File, FileTimes, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use predicates::prelude::*;

/// Overwrites the start of `path` with `bytes` and puts its mtime back:
/// what silent corruption looks like from the outside.
fn corrupt(path: &Path, bytes: &[u8]) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(bytes).unwrap();
    f.set_times(FileTimes::new().set_modified(mtime)).unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

/// A normal edit: new content, and an mtime clearly after the old one (a
/// fast test could otherwise land in the same timestamp tick).
fn edit(path: &Path, content: &[u8]) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(path, content).unwrap();
    let f = File::options().write(true).open(path).unwrap();
    f.set_times(FileTimes::new().set_modified(mtime + Duration::from_secs(10)))
        .unwrap();
}

fn update(dir: &Path) -> assert_cmd::Command {
    let mut c = parsum();
    c.current_dir(dir).args(["--update", "STATE"]);
    c
}

fn verify(dir: &Path) -> assert_cmd::Command {
    let mut c = parsum();
    c.current_dir(dir).args(["--verify", "STATE"]);
    c
}

fn state(dir: &Path) -> String {
    String::from_utf8(std::fs::read(dir.join("STATE")).unwrap()).unwrap()
}

/// The names in `dir`, sorted: no temporary file may be left behind.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn silent_corruption_is_its_own_line_and_exit_1() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/good", b"good");
    write(d.path(), b"t/rot", b"original content");
    update(d.path()).arg("t").assert().success();
    verify(d.path())
        .assert()
        .success()
        .stdout("t/good: OK\nt/rot: OK\n")
        .stderr(predicate::str::contains(
            "verify: 2 ok, 0 modified, 0 corrupted, 0 missing, 0 unreadable",
        ));

    corrupt(&d.path().join("t/rot"), b"ORIGINAL");
    verify(d.path())
        .arg("--quiet")
        .assert()
        .code(1)
        .stdout("t/rot: CORRUPTED (content changed, size and mtime unchanged)\n");
    verify(d.path())
        .assert()
        .code(1)
        .stdout("t/good: OK\nt/rot: CORRUPTED (content changed, size and mtime unchanged)\n")
        .stderr(
            predicate::str::contains("1 corrupted")
                .and(predicate::str::contains("WARNING: 1 file is CORRUPTED")),
        );
}

#[test]
fn a_normal_edit_is_modified_not_corrupted() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/doc", b"draft");
    write(d.path(), b"t/gone", b"x");
    update(d.path()).arg("t").assert().success();
    edit(&d.path().join("t/doc"), b"final");
    std::fs::remove_file(d.path().join("t/gone")).unwrap();
    verify(d.path())
        .assert()
        .code(1)
        .stdout("t/doc: MODIFIED\nt/gone: MISSING\n")
        .stderr(
            predicate::str::contains("0 ok, 1 modified, 0 corrupted, 1 missing")
                .and(predicate::str::contains("CORRUPTED").not()),
        );
    // A touch alone changes no content: still OK.
    let t = d.path().join("t/doc");
    let f = File::options().write(true).open(&t).unwrap();
    f.set_times(FileTimes::new().set_modified(SystemTime::UNIX_EPOCH))
        .unwrap();
    update(d.path()).arg("t").assert().success();
    let f = File::options().write(true).open(&t).unwrap();
    f.set_times(FileTimes::new().set_modified(SystemTime::now()))
        .unwrap();
    verify(d.path()).assert().success().stdout("t/doc: OK\n");
}

#[test]
fn update_reports_new_changed_missing_moved_and_unchanged() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/same", b"same");
    write(d.path(), b"t/edit", b"before");
    write(d.path(), b"t/gone", b"gone");
    write(d.path(), b"t/old/place", b"moving");
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("new      t/edit\nnew      t/gone\nnew      t/old/place\nnew      t/same\n")
        .stderr(predicate::str::contains(
            "update: 4 new, 0 changed, 0 missing, 0 moved, 0 unchanged (4 read, 0 carried over), 0 errors",
        ));
    let first = state(d.path());
    assert_eq!(first.lines().count(), 4);
    for l in first.lines() {
        for field in [
            "\"path\":",
            "\"size\":",
            "\"mtime\":",
            "\"mtime_nsec\":",
            "\"ino\":",
            "\"algo\":\"blake3\"",
            "\"hash\":",
        ] {
            assert!(l.contains(field), "{field} in {l}");
        }
    }

    // Nothing changed: nothing is read, the state is the same bytes.
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains(
            "0 new, 0 changed, 0 missing, 0 moved, 4 unchanged (0 read, 4 carried over)",
        ));
    assert_eq!(state(d.path()), first);

    edit(&d.path().join("t/edit"), b"after");
    std::fs::remove_file(d.path().join("t/gone")).unwrap();
    std::fs::create_dir(d.path().join("t/new")).unwrap();
    std::fs::rename(d.path().join("t/old/place"), d.path().join("t/new/place")).unwrap();
    write(d.path(), b"t/fresh", b"fresh");
    update(d.path())
        .arg("t")
        .arg("-v")
        .assert()
        .success()
        .stdout(
            "changed  t/edit\nunchanged t/same\nnew      t/fresh\n\
             moved    t/old/place -> t/new/place\nmissing  t/gone\n",
        )
        // The moved file is read: a rename gives it a new ctime, and only a
        // file untouched since its last read (same ctime) is carried over to
        // another path (see a_reused_inode_..._is_read_not_moved).
        .stderr(predicate::str::contains(
            "1 new, 1 changed, 1 missing, 1 moved, 1 unchanged (3 read, 1 carried over), 0 errors",
        ));
    // The state is in walk order (what `parsum t` prints), and verifies.
    let paths: Vec<String> = state(d.path())
        .lines()
        .map(|l| l.split('"').nth(3).unwrap().to_string())
        .collect();
    let tree = String::from_utf8(stdout_of(parsum().current_dir(d.path()).arg("t"))).unwrap();
    let tree: Vec<&str> = tree.lines().map(|l| &l[66..]).collect();
    assert_eq!(paths, tree);
    verify(d.path()).assert().success();
}

#[test]
fn unchanged_files_are_not_read_unless_rehash() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/f", b"content A");
    update(d.path()).arg("t").assert().success();
    let before = state(d.path());
    // Same size, same mtime, same inode, other bytes: only a read can tell.
    corrupt(&d.path().join("t/f"), b"CONTENT");
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains(
            "1 unchanged (0 read, 1 carried over)",
        ));
    assert_eq!(state(d.path()), before, "the old hash is carried over");
    // --verify reads everything, so it sees it.
    verify(d.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("CORRUPTED"));
    // --rehash reads the file and records what it holds now.
    update(d.path())
        .args(["t", "--rehash"])
        .assert()
        .success()
        .stdout("changed  t/f\n")
        .stderr(predicate::str::contains(
            "0 unchanged (1 read, 0 carried over)",
        ));
    assert_ne!(state(d.path()), before);
    verify(d.path()).assert().success().stdout("t/f: OK\n");
}

#[test]
fn a_checksum_manifest_is_a_degraded_state() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"abc");
    write(d.path(), b"t/b", b"b");
    let sums = stdout_of(parsum().current_dir(d.path()).args(["-a", "sha256", "t"]));
    std::fs::write(d.path().join("STATE"), &sums).unwrap();
    if have("sha256sum") {
        // It is a real sha256sum manifest.
        let (code, _, _) = run_std(
            std::process::Command::new("sha256sum")
                .current_dir(d.path())
                .args(["-c", "STATE"]),
        );
        assert_eq!(code, 0);
    }
    corrupt(&d.path().join("t/a"), b"X");
    verify(d.path())
        .args(["-a", "sha256"])
        .assert()
        .code(1)
        .stdout("t/a: CHANGED\nt/b: OK\n")
        .stderr(
            predicate::str::contains("without file metadata")
                .count(1)
                .and(predicate::str::contains(
                    "1 ok, 0 modified, 0 corrupted, 0 missing, 0 unreadable, 1 changed",
                )),
        );
    // --update reads everything and writes a full state in the same algorithm.
    update(d.path())
        .args(["-a", "sha256", "t"])
        .assert()
        .success()
        .stdout("changed  t/a\n")
        .stderr(
            predicate::str::contains("every file is read").and(predicate::str::contains(
                "1 unchanged (2 read, 0 carried over)",
            )),
        );
    let s = state(d.path());
    assert!(
        s.starts_with('{') && s.contains("\"algo\":\"sha256\""),
        "{s}"
    );
    verify(d.path()).assert().success();
}

#[test]
fn malformed_state_is_an_error_with_its_line_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    write(d.path(), b"t/b", b"b");
    update(d.path()).arg("t").assert().success();
    let good = state(d.path());
    let mut lines: Vec<&str> = good.lines().collect();
    let broken = lines[1].replace("\"size\":1", "\"size\":\"one\"");
    lines[1] = &broken;
    let bad = format!("{}\n", lines.join("\n"));
    std::fs::write(d.path().join("STATE"), &bad).unwrap();
    let mut up = update(d.path());
    up.arg("t");
    for mut cmd in [up, verify(d.path())] {
        cmd.assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(
                "STATE: 2: not a valid state line: invalid type: string \"one\", expected u64",
            ));
    }
    assert_eq!(state(d.path()), bad, "a bad state is left as it was");
    assert_eq!(listing(d.path()), ["STATE", "t"]);

    // Truncated JSON, and a manifest line in the middle of a JSON state.
    std::fs::write(d.path().join("STATE"), &good[..good.len() - 5]).unwrap();
    verify(d.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "STATE: 2: not a valid state line: EOF",
        ));
    std::fs::write(
        d.path().join("STATE"),
        format!("{good}{}  t/a\n", "0".repeat(64)),
    )
    .unwrap();
    update(d.path())
        .arg("t")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("STATE: 3: "));
    // The same path twice.
    let first = good.lines().next().unwrap();
    std::fs::write(d.path().join("STATE"), format!("{good}{first}\n")).unwrap();
    update(d.path())
        .arg("t")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "STATE: 3: t/a is listed twice (first on line 1)",
        ));
    // A manifest with an improper line.
    std::fs::write(d.path().join("STATE"), "not a checksum line\n").unwrap();
    verify(d.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "STATE: 1: improperly formatted checksum line",
        ));
    // No state at all: --verify cannot run; --update starts one.
    std::fs::remove_file(d.path().join("STATE")).unwrap();
    verify(d.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("No such file or directory"));
    // A directory as STATE, refused at the open by both (one home:
    // `stdio::open_input_with`).
    std::fs::create_dir(d.path().join("STATE")).unwrap();
    update(d.path())
        .arg("t")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Is a directory"));
    verify(d.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("STATE: Is a directory"));
    assert_eq!(listing(d.path()), ["STATE", "t"]);
}

#[test]
fn awkward_and_non_utf8_names_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    for (i, name) in AWKWARD.iter().enumerate() {
        write(&t, name, format!("content {i}").as_bytes());
    }
    update(d.path()).arg("t").assert().success();
    let s = std::fs::read(d.path().join("STATE")).unwrap();
    assert!(std::str::from_utf8(&s).is_ok(), "the state is UTF-8 JSON");
    assert!(String::from_utf8_lossy(&s).contains("\"path_hex\":\"742f626164ff75746638\""));
    let n = AWKWARD.len();
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "0 new, 0 changed, 0 missing, 0 moved, {n} unchanged (0 read, {n} carried over)"
        )));
    let out = verify(d.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        out.split(|&b| b == b'\n')
            .filter(|l| l.ends_with(b": OK"))
            .count(),
        n
    );
    // The byte name is opened by its exact bytes: corrupt it, and only it fails.
    corrupt(&p(&t, b"bad\xffutf8"), b"CONTENT");
    let out = verify(d.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("1 corrupted"))
        .get_output()
        .stdout
        .clone();
    assert!(out
        .windows(b"t/bad\xffutf8: CORRUPTED".len())
        .any(|w| w == b"t/bad\xffutf8: CORRUPTED"));
}

/// A STATE that lists no file (zero bytes, as an empty tree's update
/// writes; only blank lines; a byte-order mark; only comments, a manifest
/// with no line) verifies nothing and passes, where `-c` fails on the same
/// file (`no properly formatted checksum lines found`, as `sha256sum -c`):
/// a state describes a tree, and an empty tree is a tree. The decision is
/// made on what the STATE lists, not on how it is spelled.
#[test]
fn a_state_that_lists_no_file_verifies_nothing_and_passes() {
    let d = tempfile::tempdir().unwrap();
    for (content, manifest) in [
        (&b""[..], false),
        (b"\n\n  \n", false),
        (b"\r\n", false),
        (b"\xef\xbb\xbf\n", false),
        (b"# only\n\n# comments\n", true),
    ] {
        std::fs::write(d.path().join("STATE"), content).unwrap();
        let what = String::from_utf8_lossy(content).into_owned();
        let out = verify(d.path()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{what:?}: {err}");
        assert!(out.stdout.is_empty(), "{what:?}");
        assert!(
            err.contains("parsum: verify: 0 ok, 0 modified"),
            "{what:?}: {err}"
        );
        assert_eq!(
            err.contains("a checksum manifest, without file metadata"),
            manifest,
            "{what:?}: {err}"
        );
        parsum()
            .current_dir(d.path())
            .args(["-c", "STATE"])
            .assert()
            .code(1)
            .stdout("")
            .stderr("parsum: STATE: no properly formatted checksum lines found\n");
    }
    // A line of blanks once the STATE is known to be a manifest is
    // improperly formatted, as any malformed line of a state: an error.
    std::fs::write(d.path().join("STATE"), "# c\n  \n").unwrap();
    verify(d.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "parsum: STATE: 2: improperly formatted checksum line",
        ));
}

#[test]
fn empty_tree_gives_an_empty_state() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("t")).unwrap();
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains(
            "0 new, 0 changed, 0 missing, 0 moved, 0 unchanged",
        ));
    assert_eq!(state(d.path()), "");
    verify(d.path())
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("verify: 0 ok"));
    // Everything deleted since: all missing, the state empties.
    write(d.path(), b"t/x", b"x");
    update(d.path()).arg("t").assert().success();
    std::fs::remove_file(d.path().join("t/x")).unwrap();
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("missing  t/x\n");
    assert_eq!(state(d.path()), "");
}

#[test]
fn the_state_inside_its_tree_is_left_out_and_no_temp_file_remains() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"a");
    write(d.path(), b"sub/b", b"b");
    for _ in 0..2 {
        update(d.path()).assert().success();
    }
    // The second run found nothing new: not the state, not its temp file.
    update(d.path())
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains(
            "0 new, 0 changed, 0 missing, 0 moved, 2 unchanged",
        ));
    assert_eq!(state(d.path()).lines().count(), 2);
    assert_eq!(listing(d.path()), ["STATE", "a", "sub"]);
    // The old state is replaced by rename, not rewritten in place.
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(d.path().join("STATE")).unwrap().ino();
    update(d.path()).assert().success();
    assert_ne!(
        std::fs::metadata(d.path().join("STATE")).unwrap().ino(),
        ino
    );
}

#[test]
fn an_unlistable_root_keeps_its_entries() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    write(d.path(), b"t/d/b", b"b");
    write(d.path(), b"u/c", b"c");
    update(d.path()).args(["t", "u"]).assert().success();
    let before = state(d.path());
    // `t` is gone (say, an unmounted disk): its entries are not dropped.
    std::fs::rename(d.path().join("t"), d.path().join("t.away")).unwrap();
    update(d.path()).args(["t", "u"]).assert().code(1).stderr(
        predicate::str::contains("t: No such file or directory")
            .and(predicate::str::contains("0 missing"))
            .and(predicate::str::contains(
                "2 unreadable kept their previous entry",
            )),
    );
    assert_eq!(state(d.path()), before);
}

#[test]
fn flags_that_do_not_go_together() {
    let d = tempfile::tempdir().unwrap();
    for args in [
        &["--verify", "S", "path"][..],
        &["--rehash"],
        &["--update", "S", "--json"],
        &["--verify", "S", "--update", "S"],
        &["--update", "S", "-c"],
        &["--update", "S", "-z"],
        &["--update", "S", "--quiet"],
        // Standard input cannot be read again: not a PATH to record.
        &["--update", "S", "t", "-"],
    ] {
        parsum().current_dir(d.path()).args(args).assert().code(2);
    }
    assert!(!d.path().join("S").exists());
    parsum().arg("--help").assert().success().stdout(
        predicate::str::contains("--update <STATE>")
            .and(predicate::str::contains("--verify <STATE>"))
            .and(predicate::str::contains("--rehash")),
    );
}

#[test]
fn a_path_listed_twice_is_recorded_once() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    update(d.path())
        .args(["t", "./t", "t/a"])
        .assert()
        .success();
    assert_eq!(state(d.path()).lines().count(), 1);
    update(d.path())
        .args(["t", "./t"])
        .assert()
        .success()
        .stderr(predicate::str::contains("1 unchanged"));
}

#[test]
fn a_report_nobody_reads_still_writes_the_whole_state() {
    if !Path::new("/dev/full").exists() {
        eprintln!("note: no /dev/full; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    for i in 0..500 {
        write(d.path(), format!("t/{i:04}").as_bytes(), b"x");
    }
    let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("parsum"))
        .current_dir(d.path())
        .args(["--no-progress", "--update", "STATE", "t"])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A 30 s guard, as every test that runs the binary.
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("parsum --update to /dev/full hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("write error"));
    assert_eq!(state(d.path()).lines().count(), 500);
    assert_eq!(listing(d.path()), ["STATE", "t"]);
}

#[test]
fn hard_links_and_a_large_mixed_tree_keep_walk_order() {
    let d = tempfile::tempdir().unwrap();
    // More files than one batch of carried-over results (1024), a few of
    // them edited, so read and carried files interleave in the pipeline.
    for i in 0..3000 {
        write(
            d.path(),
            format!("t/{:02}/{i:04}", i % 7).as_bytes(),
            format!("{i}").as_bytes(),
        );
    }
    std::fs::hard_link(d.path().join("t/01/0001"), d.path().join("t/link")).unwrap();
    update(d.path()).arg("t").assert().success();
    for i in (0..3000).step_by(101) {
        edit(&d.path().join(format!("t/{:02}/{i:04}", i % 7)), b"edited");
    }
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "0 new, 30 changed, 0 missing, 0 moved, 2971 unchanged (30 read, 2971 carried over)",
        ));
    let paths: Vec<String> = state(d.path())
        .lines()
        .map(|l| l.split('"').nth(3).unwrap().to_string())
        .collect();
    let tree = String::from_utf8(stdout_of(parsum().current_dir(d.path()).arg("t"))).unwrap();
    let tree: Vec<&str> = tree.lines().map(|l| &l[66..]).collect();
    assert_eq!(paths, tree);
    verify(d.path()).assert().success();
}

#[test]
fn an_unreadable_file_keeps_its_entry_and_verifies_unreadable() {
    // /proc/self/mem is a regular file whose read fails (EIO) even for
    // root; reached through a followed link, it stands for a bad file.
    if !Path::new("/proc/self/mem").exists() {
        eprintln!("note: no /proc/self/mem; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    std::os::unix::fs::symlink("/proc/self/mem", d.path().join("t/mem")).unwrap();
    // No entry yet: reported, not recorded.
    update(d.path())
        .args(["-L", "t"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("t/mem: Input/output error"));
    assert_eq!(state(d.path()).lines().count(), 1);
    // With an entry from an earlier run, the entry is kept as it was.
    let entry = "{\"path\":\"t/mem\",\"size\":7,\"mtime\":1,\"mtime_nsec\":0,\"ino\":1,\
                 \"algo\":\"blake3\",\"hash\":\""
        .to_string()
        + &"0".repeat(64)
        + "\"}\n";
    let with_entry = state(d.path()) + &entry;
    std::fs::write(d.path().join("STATE"), &with_entry).unwrap();
    update(d.path())
        .args(["-L", "t"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::contains("0 missing").and(predicate::str::contains(
                "1 unreadable kept their previous entry",
            )),
        );
    assert_eq!(state(d.path()), with_entry);
    verify(d.path())
        .assert()
        .code(1)
        .stdout("t/a: OK\nt/mem: UNREADABLE\n")
        .stderr(predicate::str::contains("t/mem: Input/output error").and(
            predicate::str::contains("1 ok, 0 modified, 0 corrupted, 0 missing, 1 unreadable"),
        ));
}

#[test]
fn a_state_behind_a_symlink_is_replaced_at_its_target() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    std::fs::create_dir(d.path().join("keep")).unwrap();
    std::os::unix::fs::symlink("keep/real", d.path().join("STATE")).unwrap();
    // Dangling: a first state, created at the link's target (as `-o` and a
    // shell's `>` do), the link kept.
    update(d.path()).arg("t").assert().success();
    assert_eq!(state(d.path()).lines().count(), 1);
    // A link into a missing directory cannot be written: nothing is made.
    std::os::unix::fs::symlink("gone/real", d.path().join("LOST")).unwrap();
    parsum()
        .current_dir(d.path())
        .args(["--update", "LOST", "t"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot write a new state"));
    assert!(!d.path().join("gone").exists());
    std::fs::remove_file(d.path().join("LOST")).unwrap();
    update(d.path()).arg("t").assert().success();
    assert!(std::fs::symlink_metadata(d.path().join("STATE"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(state(d.path()).lines().count(), 1);
    assert_eq!(listing(&d.path().join("keep")), ["real"]);
}

#[test]
fn a_renamed_directory_is_carried_over_by_inode_and_reported_moved() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/photos/a.jpg", b"AAAA");
    write(d.path(), b"t/photos/b.jpg", b"BBBB");
    write(d.path(), b"t/photos/c.jpg", b"CCCC");
    update(d.path()).arg("t").assert().success();
    // Rewrite c.jpg in place (same size, mtime restored), then rename the
    // directory: its untouched files are carried over (not read), but
    // c.jpg's ctime moved, so its new path is read, and it is no move.
    corrupt(&d.path().join("t/photos/c.jpg"), b"XXXX");
    std::fs::rename(d.path().join("t/photos"), d.path().join("t/2026")).unwrap();
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout(
            "moved    t/photos/a.jpg -> t/2026/a.jpg\nmoved    t/photos/b.jpg -> t/2026/b.jpg\n\
             new      t/2026/c.jpg\nmissing  t/photos/c.jpg\n",
        )
        .stderr(predicate::str::contains(
            "1 new, 0 changed, 1 missing, 2 moved, 0 unchanged (1 read, 2 carried over)",
        ));
    // A copy is another inode: it is read.
    std::fs::copy(d.path().join("t/2026/b.jpg"), d.path().join("t/copy.jpg")).unwrap();
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("new      t/copy.jpg\n")
        .stderr(predicate::str::contains("(1 read, 3 carried over)"));
}

#[test]
fn a_state_that_fails_to_read_is_exit_2_with_its_name() {
    // /proc/self/mem opens as a regular file and fails to read (EIO).
    if !Path::new("/proc/self/mem").exists() {
        eprintln!("note: no /proc/self/mem; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    for mode in ["--verify", "--update"] {
        parsum()
            .current_dir(d.path())
            .args([mode, "/proc/self/mem"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(
                "/proc/self/mem: Input/output error",
            ));
    }
    assert!(listing(d.path()).is_empty());
}

/// The inode of `path`.
fn ino(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn a_reused_inode_with_the_same_size_and_mtime_is_read_not_moved() {
    // rm b; a new file (another name, other bytes) that gets b's inode
    // number back, with b's size and mtime (tar -x, cp -p, rsync -t do set
    // mtimes). File systems reuse freed inode numbers at once; the state is
    // edited so the test does not depend on the allocator.
    let d = tempfile::tempdir().unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    for (name, body) in [(&b"t/a"[..], &b"AAAA"[..]), (b"t/b", b"BBBB")] {
        let f = File::options()
            .write(true)
            .open(write(d.path(), name, body))
            .unwrap();
        f.set_times(FileTimes::new().set_modified(old)).unwrap();
    }
    update(d.path()).arg("t").assert().success();
    let b_ino = ino(&d.path().join("t/b"));
    std::fs::remove_file(d.path().join("t/b")).unwrap();
    let new = write(d.path(), b"t/new", b"XXXX");
    File::options()
        .write(true)
        .open(&new)
        .unwrap()
        .set_times(FileTimes::new().set_modified(old))
        .unwrap();
    let st = state(d.path()).replace(
        &format!("\"ino\":{b_ino},"),
        &format!("\"ino\":{},", ino(&new)),
    );
    std::fs::write(d.path().join("STATE"), st).unwrap();
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("new      t/new\nmissing  t/b\n")
        .stderr(predicate::str::contains(
            "1 new, 0 changed, 1 missing, 0 moved, 1 unchanged (1 read, 1 carried over)",
        ));
    // The state holds what t/new holds, not b's hash.
    verify(d.path())
        .assert()
        .success()
        .stdout("t/a: OK\nt/new: OK\n");
}

#[test]
fn a_temp_file_left_by_a_killed_run_is_not_part_of_the_tree() {
    // SIGKILL between the temp file's creation and the rename leaves
    // `.STATE.XXXXXX.parsum-tmp` behind: a half-written state, not data.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"a");
    update(d.path()).assert().success();
    write(
        d.path(),
        b".STATE.Xy12ab.parsum-tmp",
        b"{\"path\":\"a\",\"si",
    );
    write(d.path(), b".STATE.notes", b"a file of the user's");
    update(d.path())
        .assert()
        .success()
        .stdout("new      .STATE.notes\n")
        .stderr(predicate::str::contains(
            "1 new, 0 changed, 0 missing, 0 moved, 1 unchanged",
        ));
    assert!(!state(d.path()).contains("parsum-tmp"));
}

#[test]
fn a_state_that_cannot_be_created_is_exit_2_before_any_read() {
    // No directory for it: nothing is hashed, the message is coreutils'
    // wording about STATE (not the OS error code and the temp file's name).
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    parsum()
        .current_dir(d.path())
        .args(["--update", "nodir/STATE", "t"])
        .assert()
        .code(2)
        .stdout("")
        .stderr("parsum: nodir/STATE: cannot write a new state: No such file or directory\n");
    assert_eq!(listing(d.path()), ["t"]);
}

#[test]
fn a_state_from_a_pipe_is_verified_not_skipped() {
    // STATE is read twice (checked, then verified): from a pipe
    // (`--verify <(ssh host cat state)`, `/dev/stdin`) the second read found
    // nothing, and "0 ok ... 0 missing" passed with exit 0.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"before");
    write(d.path(), b"t/b", b"same");
    update(d.path()).arg("t").assert().success();
    edit(&d.path().join("t/a"), b"after!");
    let st = state(d.path());
    parsum()
        .current_dir(d.path())
        .args(["--verify", "/dev/stdin"])
        .write_stdin(st)
        .assert()
        .code(1)
        .stdout("t/a: MODIFIED\nt/b: OK\n")
        .stderr(predicate::str::contains("1 ok, 1 modified"));
}

#[test]
fn an_endless_state_is_refused_not_read_into_memory() {
    // /dev/zero has no newline: a line is not read without bound.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    parsum()
        .current_dir(d.path())
        .args(["--verify", "/dev/zero"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "/dev/zero: 1: a line longer than 16 MiB",
        ));
    // --update's STATE must be a regular file: a device is refused unread.
    parsum()
        .current_dir(d.path())
        .args(["--update", "/dev/zero", "t"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "/dev/zero: --update reads STATE, then replaces it whole",
        ));
}

#[test]
fn a_file_replaced_under_its_old_mtime_is_told_from_rot_in_place() {
    // cp -p, rsync -t, tar -x: another file (a new inode) takes the name,
    // with the old size and mtime. The issue's rule calls it corrupted;
    // the reason says it is another file (rot allocates no inode), so the
    // alarm about the disk is not raised for a tool's replacement.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/doc", b"version 1");
    write(d.path(), b"t/rot", b"original");
    update(d.path()).arg("t").assert().success();
    let doc = d.path().join("t/doc");
    let mtime = std::fs::metadata(&doc).unwrap().modified().unwrap();
    let tmp = write(d.path(), b"t/.doc.tmp", b"version 2");
    File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_times(FileTimes::new().set_modified(mtime))
        .unwrap();
    std::fs::rename(&tmp, &doc).unwrap();
    corrupt(&d.path().join("t/rot"), b"ORIG");
    verify(d.path())
        .assert()
        .code(1)
        .stdout(
            "t/doc: CORRUPTED (content changed, size and mtime unchanged; another file: \
             new inode and ctime, put in place with the old mtime)\n\
             t/rot: CORRUPTED (content changed, size and mtime unchanged)\n",
        )
        .stderr(predicate::str::contains(
            "0 ok, 0 modified, 2 corrupted, 0 missing",
        ));
}

#[test]
fn a_replaced_state_keeps_its_owner_and_mode() {
    // root's cron job updating a user's state must not take it from them.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !is_root() {
        eprintln!("note: not root; cannot give the state another owner; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    update(d.path()).arg("t").assert().success();
    let s = d.path().join("STATE");
    std::os::unix::fs::chown(&s, Some(65534), Some(65533)).unwrap();
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o600)).unwrap();
    write(d.path(), b"t/b", b"b");
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("new      t/b\n");
    let m = std::fs::metadata(&s).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (65534, 65533, 0o600));
}

#[test]
fn unreadable_entries_that_cannot_be_kept_keep_the_old_state() {
    // A manifest STATE has no metadata, and a state in another algorithm
    // than -a has no digest to write: an unreadable part of the tree could
    // keep no entry, and vanished from the new state, reported nowhere
    // ("0 missing"). The old state stays instead.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    write(d.path(), b"u/c", b"c");
    let sums = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["-a", "sha256", "t", "u"]),
    );
    std::fs::write(d.path().join("STATE"), &sums).unwrap();
    std::fs::rename(d.path().join("t"), d.path().join("t.away")).unwrap();
    update(d.path())
        .args(["t", "u"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "1 unreadable file has an entry that cannot be kept",
        ));
    assert_eq!(std::fs::read(d.path().join("STATE")).unwrap(), sums);
    assert_eq!(listing(d.path()), ["STATE", "t.away", "u"]);

    // A JSON state in BLAKE3, updated with -a sha256: the same.
    std::fs::rename(d.path().join("t.away"), d.path().join("t")).unwrap();
    std::fs::remove_file(d.path().join("STATE")).unwrap();
    update(d.path()).args(["t", "u"]).assert().success();
    let before = state(d.path());
    std::fs::rename(d.path().join("t"), d.path().join("t.away")).unwrap();
    update(d.path())
        .args(["-a", "sha256", "t", "u"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("the old state is unchanged"));
    assert_eq!(state(d.path()), before);
}

#[test]
fn a_new_hard_link_to_a_changed_file_does_not_hide_the_change() {
    // b's bytes change under its old size and mtime, then a new name `a`
    // links to it (rsnapshot and `cp -al` add links at every run). `a`
    // sorts first and is read; b, the second name, gets a's result but
    // its own entry still matches: it was counted unchanged while its
    // entry silently took the new hash, erasing what --verify would find.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/b", b"XXXX");
    update(d.path()).arg("t").assert().success();
    corrupt(&d.path().join("t/b"), b"YYYY");
    std::fs::hard_link(d.path().join("t/b"), d.path().join("t/a")).unwrap();
    update(d.path())
        .arg("t")
        .assert()
        .success()
        .stdout("changed  t/b\nnew      t/a\n")
        .stderr(predicate::str::contains(
            "1 new, 1 changed, 0 missing, 0 moved, 0 unchanged",
        ));
}

#[test]
fn an_unlistable_root_with_a_trailing_slash_keeps_its_entries() {
    // Shell completion writes `t/`: its files are `t/a`, and an error on
    // `t/` (an unmounted disk) matched none of them; the state was emptied.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/a", b"a");
    write(d.path(), b"t/d/b", b"b");
    update(d.path()).arg("t/").assert().success();
    let before = state(d.path());
    std::fs::rename(d.path().join("t"), d.path().join("t.away")).unwrap();
    for root in ["t/", "t//"] {
        update(d.path())
            .arg(root)
            .assert()
            .code(1)
            .stdout("")
            .stderr(
                predicate::str::contains("0 missing").and(predicate::str::contains(
                    "2 unreadable kept their previous entry",
                )),
            );
        assert_eq!(state(d.path()), before);
    }
}

#[test]
fn many_unreadable_files_in_a_large_state_stay_fast() {
    // Each unreadable file scanned every entry of the state for those
    // below it: 4000 errors x 150 000 entries took minutes (a non-root
    // user updating a shared tree meets thousands of EACCES). The guard's
    // 30 s timeout is the assertion.
    if !Path::new("/proc/self/mem").exists() {
        eprintln!("note: no /proc/self/mem; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("t/m")).unwrap();
    let zero = "0".repeat(64);
    let mut st = String::new();
    for i in 0..4000 {
        std::os::unix::fs::symlink("/proc/self/mem", d.path().join(format!("t/m/{i:05}"))).unwrap();
        st += &format!(
            "{{\"path\":\"t/m/{i:05}\",\"size\":7,\"mtime\":1,\"mtime_nsec\":0,\"ino\":1,\
             \"algo\":\"blake3\",\"hash\":\"{zero}\"}}\n"
        );
    }
    for i in 0..150_000 {
        st += &format!(
            "{{\"path\":\"t/x/{i:06}\",\"size\":7,\"mtime\":1,\"mtime_nsec\":0,\"ino\":{},\
             \"algo\":\"blake3\",\"hash\":\"{zero}\"}}\n",
            i + 10
        );
    }
    std::fs::write(d.path().join("STATE"), st).unwrap();
    update(d.path())
        .args(["-L", "t"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "150000 missing, 0 moved, 0 unchanged (0 read, 0 carried over), 4000 errors; \
             4000 unreadable kept their previous entry",
        ));
    assert_eq!(state(d.path()).lines().count(), 4000);
}

/// A STATE path and a walked one that name the same file by lexical
/// normalisation (`a//b`, `./a/./b`, `a/b`) are one entry: unchanged, not
/// a move (a state written from `a//` listed `a//b`).
#[test]
fn spellings_of_one_path_are_one_entry() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a/b", b"abc");
    update(d.path()).arg("a//").assert().success();
    for root in ["a", "./a/.", ".//a"] {
        update(d.path())
            .arg(root)
            .assert()
            .success()
            .stdout("")
            .stderr(predicate::str::contains(
                "0 new, 0 changed, 0 missing, 0 moved, 1 unchanged",
            ));
    }
}

/// One report, one spelling: `changed` and `unchanged` (`-v`) name a file
/// in the normal form that `new`, `moved` and `missing` use (`--update S
/// a//` said `changed  a//x` beside `new      a/y`), and the file called
/// `-` is `./-` in every line, never standard input's `-`.
#[test]
fn update_reports_every_path_in_one_normal_form() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a/x", b"x");
    write(d.path(), b"a/same", b"same");
    write(d.path(), b"-", b"dash");
    write(d.path(), b"b", b"b");
    update(d.path()).args(["a//", "."]).assert().success();
    write(d.path(), b"a/x", b"edited");
    write(d.path(), b"a/y", b"y");
    write(d.path(), b"-", b"dash, edited");
    update(d.path())
        .args(["-v", "a//", "--exclude", "STATE", "."])
        .assert()
        .success()
        .stdout("unchanged a/same\nchanged  a/x\nchanged  ./-\nunchanged b\nnew      a/y\n");
}

/// A STATE entry named `-` is standard input, as `-c` (and `sha256sum -c`)
/// reads a manifest's line `-`: `--verify` looked it up as a file called
/// `-` and said MISSING where `-c` said OK. Standard input has no mtime, so
/// other content is CHANGED (never CORRUPTED), also in a JSON state; in a
/// STATE read from standard input the entry is malformed (exit 2), as the
/// line is in `-c -`. A file called `-` is still `./-`.
#[test]
fn a_dash_entry_in_a_state_is_standard_input_as_in_check() {
    let d = tempfile::tempdir().unwrap();
    let sums = stdout_of(parsum().current_dir(d.path()).arg("-").write_stdin("abc"));
    std::fs::write(d.path().join("SUMS"), &sums).unwrap();
    let json = stdout_of(
        parsum()
            .current_dir(d.path())
            .args(["--json", "-"])
            .write_stdin("abc"),
    );
    std::fs::write(d.path().join("J"), &json).unwrap();
    // A file called `-` with other content: never read for the entry.
    std::fs::write(d.path().join("-"), "not stdin").unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-c", "SUMS"])
        .write_stdin("abc")
        .assert()
        .success()
        .stdout("-: OK\n");
    for state in ["SUMS", "J"] {
        parsum()
            .current_dir(d.path())
            .args(["--verify", state])
            .write_stdin("abc")
            .assert()
            .success()
            .stdout("-: OK\n");
        parsum()
            .current_dir(d.path())
            .args(["--verify", state])
            .write_stdin("abd")
            .assert()
            .code(1)
            .stdout("-: CHANGED\n")
            .stderr(predicate::str::contains("1 changed"));
        parsum()
            .current_dir(d.path())
            .args(["--verify", "-"])
            .write_stdin(std::fs::read(d.path().join(state)).unwrap())
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(
                "'standard input': 1: '-' is standard input",
            ));
    }
}

/// `--update` refuses a STATE entry named exactly `-` at its line, in every
/// way a state can write it: a plain, an escaped or a BSD-tag manifest
/// line, and a JSON `path` (also escaped in JSON) or `path_hex`. It is
/// standard input, as `--verify` and `-c` read it, which `--update` cannot
/// record; it read it as the file `./-` (`moved ./- -> f`, or `unchanged
/// ./-` beside a file called `-`), and the new state dropped it. Nothing is
/// written then. `./-` (and `.//-`) still names the file called `-`.
#[test]
fn a_dash_entry_is_refused_by_update_and_dot_slash_dash_is_the_file() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"t/f", b"abc");
    write(d.path(), b"-", b"abc");
    let sums = stdout_of(parsum().current_dir(d.path()).arg("-").write_stdin("abc"));
    let hex = String::from_utf8(sums).unwrap()[..64].to_string();
    let json = |path: &str| {
        format!(
            r#"{{{path},"size":3,"mtime":1,"mtime_nsec":0,"ino":1,"ctime":1,"ctime_nsec":0,"algo":"blake3","hash":"{hex}"}}"#
        )
    };
    // `bad`, as STATE, is refused at `line`, left as it was, and nothing
    // else is written.
    let refused = |bad: &str, line: usize| {
        std::fs::write(d.path().join("STATE"), bad).unwrap();
        update(d.path())
            .args(["t", "./-"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(format!(
                "parsum: STATE: {line}: '-' is standard input, which --update cannot record"
            )))
            .stderr(predicate::str::contains("parsum: STATE: not updated"));
        assert_eq!(state(d.path()), bad, "the state is left as it was");
        assert_eq!(listing(d.path()), ["-", "STATE", "t"]);
    };
    let first = format!("{hex}  t/f\n");
    for dash in [
        format!("{hex}  -"),
        format!("\\{hex}  -"),
        format!("BLAKE3 (-) = {hex}"),
    ] {
        refused(&format!("{first}{dash}\n"), 2);
    }
    for path in [
        r#""path":"-""#,
        r#""path":"\u002d""#,
        r#""path":"-","path_hex":"2d""#,
    ] {
        refused(
            &format!("\n{}\n{}\n", json(r#""path":"t/f""#), json(path)),
            3,
        );
    }
    // The file called `-`, in a manifest and in the JSON state written
    // from it (as the walk names it: `./-`), and as `.//-`.
    std::fs::write(d.path().join("STATE"), format!("{first}{hex}  ./-\n")).unwrap();
    for _ in 0..2 {
        update(d.path())
            .args(["-v", "t", "./-"])
            .assert()
            .success()
            .stdout("unchanged t/f\nunchanged ./-\n");
    }
    assert!(state(d.path()).contains(r#""path":"./-""#));
    let s = state(d.path()).replace(r#""path":"./-""#, r#""path":".//-""#);
    std::fs::write(d.path().join("STATE"), s).unwrap();
    update(d.path())
        .args(["-v", "t", "./-"])
        .assert()
        .success()
        .stdout("unchanged t/f\nunchanged ./-\n");
}

/// A STATE that turns malformed after `--verify` checked it (a line
/// appended while the verification waits on standard input, its first
/// entry) is refused at that line, named once: it was printed as `parsum:
/// STATE: parsum: STATE:N: ...`, the state's name and `parsum: ` twice.
#[test]
fn a_state_that_turns_malformed_during_verify_is_named_once() {
    use std::process::Stdio;
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"e", b"");
    let sums = stdout_of(parsum().current_dir(d.path()).args(["-a", "sha256", "e"]));
    // Enough entries after `-` that the producer waits, its queue full,
    // before it reaches the end of STATE.
    let n = 50_000;
    let mut st = b"0000000000000000000000000000000000000000000000000000000000000000  -\n".to_vec();
    for _ in 0..n {
        st.extend_from_slice(&sums);
    }
    std::fs::write(d.path().join("STATE"), &st).unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("parsum"))
        .current_dir(d.path())
        .args(["--no-progress", "--verify", "STATE"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The check read STATE whole before the verification starts on `-`.
    std::thread::sleep(Duration::from_millis(1500));
    let mut f = OpenOptions::new()
        .append(true)
        .open(d.path().join("STATE"))
        .unwrap();
    f.write_all(b"not a checksum line\n").unwrap();
    drop(f);
    drop(child.stdin.take());
    let out = wait_output_guarded(child, 60);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!(
        "parsum: STATE: {}: improperly formatted checksum line\n",
        n + 2
    );
    assert!(err.ends_with(&want), "{err}");
}
