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
            std::fs::write(m.path(), &only_cr).unwrap();
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
