//! A third hostile round, byte for byte against sha256sum and b3sum on
//! hostile names, special files and manifests. The tests under "Defects"
//! each failed when this round found it; the others pin what held.

mod common;
use common::*;

// ---- Defects ----

/// `-z` writes names unescaped, so a name ending in CR is written raw
/// before its NUL; `-c -z` and `--audit -z` trimmed that CR as if the line
/// were a CRLF text line, and looked for `x` instead of `x\r`: parsum's own
/// `-z` manifest failed `parsum -c -z` (and an `x` beside it would have
/// passed for `x\r`). A trailing CR is a line end only where lines end in
/// newlines.
#[test]
fn nul_terminated_manifests_keep_a_trailing_cr() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"x\r", b"the file with a CR");
    write(d.path(), b"x", b"another file");
    for algo in ["blake3", "sha256"] {
        for tag in [&[][..], &["--tag"][..]] {
            let sums = stdout_of(
                parsum()
                    .current_dir(d.path())
                    .args(["-a", algo, "-z", "--no-summary"])
                    .args(tag),
            );
            let m = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(m.path(), &sums).unwrap();
            parsum()
                .current_dir(d.path())
                .args(["-c", "-z"])
                .arg(m.path())
                .assert()
                .success()
                .stdout(&b"x: OK\0x\r: OK\0"[..]);
            parsum()
                .current_dir(d.path())
                .args(["-z", "--no-summary", "--audit"])
                .arg(m.path())
                .assert()
                .success()
                .stdout("matched  x\nmatched  \\x\\r\n");
            // Only `x\r` listed: `x` is new, not a match for it.
            let only_cr = sums
                .split_inclusive(|&b| b == 0)
                .find(|l| l.windows(2).any(|w| w == b"x\r"))
                .unwrap();
            std::fs::write(m.path(), only_cr).unwrap();
            parsum()
                .current_dir(d.path())
                .args(["-z", "--no-summary", "--audit"])
                .arg(m.path())
                .assert()
                .code(1)
                .stdout("matched  \\x\\r\nnew      x\n");
        }
    }
}

/// coreutils takes any option twice (`sha256sum --tag --tag -c -c
/// --strict --strict`), as getopt does; parsum took only `--quiet`,
/// `--status` and `--warn` twice (they override each other) and refused
/// every other flag given twice with a usage error, exit 2: an alias
/// `parsum --no-progress` could not be called with `--no-progress`. Every
/// option now overrides itself, the last one given wins (`-a md5 -a
/// sha256` is SHA-256), and the repeatable ones (`--exclude`,
/// `--device-jobs`, `-v`, the PATHs) still add up.
#[test]
fn every_option_may_be_given_twice_as_in_coreutils() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    write(d.path(), b"skip/b", b"b");
    write(d.path(), b"also/c", b"c");
    let once = stdout_of(parsum().current_dir(d.path()).args(["-a", "sha256", "a"]));
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(once, format!("{abc}  a\n").as_bytes());
    for flag in [
        "--tag",
        "--json",
        "-z",
        "--follow",
        "--no-summary",
        "--no-progress",
        "--one-file-system",
    ] {
        let twice = parsum()
            .current_dir(d.path())
            .args(["-a", "sha256", flag, flag, "a"])
            .output()
            .unwrap();
        let single = parsum()
            .current_dir(d.path())
            .args(["-a", "sha256", flag, "a"])
            .output()
            .unwrap();
        assert_eq!(
            (twice.status.code(), &twice.stdout),
            (single.status.code(), &single.stdout),
            "{flag} twice: {}",
            String::from_utf8_lossy(&twice.stderr)
        );
    }
    // Valued options: the last one wins.
    parsum()
        .current_dir(d.path())
        .args([
            "-a",
            "md5",
            "-a",
            "sha256",
            "--max-depth",
            "0",
            "--max-depth",
            "1",
        ])
        .args(["-j", "3", "-j", "1", "--no-summary", "a"])
        .assert()
        .success()
        .stdout(format!("{abc}  a\n"));
    let out = tempfile::tempdir().unwrap();
    parsum()
        .current_dir(d.path())
        .arg("-o")
        .arg(out.path().join("first"))
        .arg("-o")
        .arg(out.path().join("second"))
        .args(["-a", "sha256", "a"])
        .assert()
        .success()
        .stdout("");
    assert!(!out.path().join("first").exists());
    assert_eq!(
        std::fs::read(out.path().join("second")).unwrap(),
        format!("{abc}  a\n").as_bytes()
    );
    // Repeatable ones add up.
    parsum()
        .current_dir(d.path())
        .args(["-a", "sha256", "--exclude", "skip", "--exclude", "also"])
        .args(["--no-summary", "-vv", "."])
        .assert()
        .success()
        .stdout(format!("{abc}  a\n"));
    // -c with every check flag twice, as sha256sum takes them.
    let m = d.path().join("SUMS");
    std::fs::write(&m, format!("{abc}  a\njunk\n")).unwrap();
    for flags in [
        &["-c", "-c", "--strict", "--strict"][..],
        &["-c", "--ignore-missing", "--ignore-missing"],
        &["-c", "--quiet", "--quiet", "--strict", "--strict"],
    ] {
        let ours = parsum()
            .current_dir(d.path())
            .args(flags)
            .arg("SUMS")
            .output()
            .unwrap();
        if have("sha256sum") {
            let theirs = std::process::Command::new("sha256sum")
                .current_dir(d.path())
                .args(flags)
                .arg("SUMS")
                .output()
                .unwrap();
            assert_eq!(ours.status.code(), theirs.status.code(), "{flags:?}");
            assert_eq!(ours.stdout, theirs.stdout, "{flags:?}");
        } else {
            assert_ne!(ours.status.code(), Some(2), "{flags:?}");
        }
    }
}

/// Runs as root without the capabilities that let root read anything
/// (`setpriv`), so that mode bits deny reads; `None` where that is not
/// possible (not root, no setpriv).
fn without_dac() -> Option<std::process::Command> {
    let ok = std::process::Command::new("setpriv")
        .args(["--bounding-set=-dac_override,-dac_read_search", "true"])
        .status()
        .is_ok_and(|s| s.success())
        && is_root_user();
    if !ok {
        eprintln!("note: not root or no setpriv; skipping");
        return None;
    }
    let mut c = std::process::Command::new("setpriv");
    c.args(["--bounding-set=-dac_override,-dac_read_search", "--"])
        .arg(env!("CARGO_BIN_EXE_parsum"))
        .arg("--no-progress");
    Some(c)
}

fn is_root_user() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// An unreadable file is neither matched nor missing in `--audit` (an
/// error); but the files below a directory that could not be listed were
/// reported `missing`, and one with a copy elsewhere `moved d/e/x ->
/// copy`, though it never moved: the audit claimed what it could not see.
/// The listed paths at or below a path the walk could not read (for any
/// reason but its absence) are now, as an unreadable file's, neither
/// missing nor moved: the error says why (`--update` keeps them too).
#[test]
fn audit_does_not_call_files_below_an_unlistable_directory_missing() {
    let Some(_) = without_dac() else { return };
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, b"d/e/x", b"x");
    write(r, b"d/e/sub/y", b"y");
    write(r, b"d/z", b"z");
    write(r, b"gone", b"g");
    let sums = stdout_of(
        parsum()
            .current_dir(r)
            .args(["-a", "sha256", "--no-summary", "."]),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let manifest = elsewhere.path().join("SUMS");
    std::fs::write(&manifest, &sums).unwrap();
    std::fs::remove_file(r.join("gone")).unwrap();
    write(r, b"copy", b"x");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(r.join("d/e"), std::fs::Permissions::from_mode(0o000)).unwrap();
    for root in [".", "d", "d/", "./d/e"] {
        let out = without_dac()
            .unwrap()
            .current_dir(r)
            .arg("--audit")
            .arg(&manifest)
            .arg(root)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{root}: {stdout}{stderr}");
        assert!(
            stderr.contains("d/e: Permission denied"),
            "{root}: {stderr}"
        );
        assert!(!stdout.contains("d/e/"), "{root}: {stdout}");
        if root == "." {
            assert_eq!(
                stdout, "matched  d/z\nnew      copy\nmissing  gone\n",
                "{stderr}"
            );
        }
    }
    // A root that is not there hides nothing: what it listed is missing.
    let out = without_dac()
        .unwrap()
        .current_dir(r)
        .arg("--audit")
        .arg(&manifest)
        .args(["gone", "d/z"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "matched  d/z\nmissing  copy\nmissing  d/e/sub/y\nmissing  d/e/x\nmissing  gone\n"
            .replace("missing  copy\n", ""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(r.join("d/e"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ---- Known limits, not fixed ----

/// b3sum (>= 1.5.5) echoes a `--check` line's name as the manifest spells
/// it, with a `\` first exactly when the line had one; parsum re-escapes
/// the unescaped name. The two agree on every line b3sum or parsum
/// writes, but not on hand-made ones: an unescaped line naming `a\b`
/// (b3sum: `a\b: OK`, parsum: `\a\\b: OK`) and an escaped line whose name
/// needs no escape (`\HASH  f`: b3sum `\f: OK`, parsum `f: OK`). Fixing it
/// needs a line's escaped flag carried to the report (and over MPI).
#[test]
#[ignore = "known limit: -c output of hand-made BLAKE3 lines differs from b3sum's echo"]
fn check_output_echoes_hand_made_blake3_lines_as_b3sum_does() {
    let Some(b3) = current_b3sum() else { return };
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a\\b", b"1");
    write(d.path(), b"f", b"2");
    let h = |n: &str| {
        let out = std::process::Command::new(&b3)
            .args(["--no-names", n])
            .current_dir(d.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let m = format!("{}  a\\b\n\\{}  f\n", h("a\\b"), h("f"));
    std::fs::write(d.path().join("SUMS"), m).unwrap();
    let theirs = std::process::Command::new(&b3)
        .args(["--check", "SUMS"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(theirs.stdout, b"a\\b: OK\n\\f: OK\n");
    parsum()
        .current_dir(d.path())
        .args(["-a", "blake3", "-c", "SUMS"])
        .assert()
        .success()
        .stdout(String::from_utf8(theirs.stdout).unwrap());
}
