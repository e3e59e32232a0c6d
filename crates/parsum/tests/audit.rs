//! `--audit`: the five outcomes and the exit status.

mod common;
use common::*;

use predicates::prelude::*;
use std::os::unix::ffi::OsStrExt;

#[test]
fn five_outcomes() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("tree");
    write(&t, b"same", b"same");
    write(&t, b"edit", b"before");
    write(&t, b"gone", b"gone");
    write(&t, b"old/place", b"moving");
    let manifest = d.path().join("SUMS.b3");
    std::fs::write(&manifest, stdout_of(parsum().current_dir(&t))).unwrap();

    // Unchanged: all matched, exit 0.
    parsum()
        .current_dir(&t)
        .arg("--audit")
        .arg(&manifest)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("matched  same")
                .and(predicate::str::contains("changed").not()),
        )
        .stderr(predicate::str::contains(
            "4 matched, 0 changed, 0 new, 0 missing, 0 moved",
        ));

    write(&t, b"edit", b"after");
    std::fs::remove_file(t.join("gone")).unwrap();
    std::fs::create_dir(t.join("new")).unwrap();
    std::fs::rename(t.join("old/place"), t.join("new/place")).unwrap();
    write(&t, b"fresh", b"fresh");
    parsum()
        .current_dir(&t)
        .arg("--audit")
        .arg(&manifest)
        .assert()
        .code(1)
        .stdout("changed  edit\nmatched  same\nnew      fresh\nmoved    old/place -> new/place\nmissing  gone\n")
        .stderr(predicate::str::contains("1 matched, 1 changed, 1 new, 1 missing, 1 moved"));
}

#[test]
fn audit_with_a_sha256sum_manifest_and_a_root() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"data/x", b"abc");
    let manifest = d.path().join("m");
    std::fs::write(
        &manifest,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  data/x\n",
    )
    .unwrap();
    parsum()
        .current_dir(d.path())
        .arg("--audit")
        .arg(&manifest)
        .arg("data")
        .assert()
        .success()
        .stdout("matched  data/x\n");
    // A path of our own: a machine may well have a /nonexistent.
    parsum()
        .current_dir(d.path())
        .arg("--audit")
        .arg(d.path().join("no-such-manifest"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("No such file or directory"));
}

#[test]
fn audit_reads_nul_terminated_manifests() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"new\nline", b"abc");
    let manifest = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        manifest.path(),
        stdout_of(parsum().current_dir(d.path()).arg("-z")),
    )
    .unwrap();
    parsum()
        .current_dir(d.path())
        .arg("-z")
        .arg("--audit")
        .arg(manifest.path())
        .assert()
        .success()
        .stdout("matched  \\new\\nline\n");
}

/// Runs `parsum --audit SUMS ARGS` in `dir`: (exit code, stdout, stderr).
fn audit(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = parsum()
        .current_dir(dir)
        .args(["--audit", "SUMS"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const SHA_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A path listed more than once: lines that agree are one listing (also a
/// 64-digit line and a SHA256 tag of the same digest); lines that cannot
/// all match are named in a warning, and the file is `changed` if it is
/// there (even if it matches one of them), `missing` if not, and never
/// paired as a move, whatever the order of the lines.
#[test]
fn a_path_listed_twice() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    let sums = |m: String| std::fs::write(d.path().join("SUMS"), m).unwrap();

    sums(format!(
        "{SHA_ABC}  a\n{SHA_ABC}  ./a\nSHA256 (a) = {SHA_ABC}\n"
    ));
    let (code, out, err) = audit(d.path(), &["a"]);
    assert_eq!((code, out.as_str()), (0, "matched  a\n"), "{err}");
    assert!(!err.contains("more than once"), "{err}");

    // Named with the line that cannot match the ones before it.
    for (m, no) in [
        (format!("{SHA_EMPTY}  a\n{SHA_ABC}  a\n{SHA_ABC}  a\n"), 2),
        (format!("{SHA_ABC}  a\n{SHA_ABC}  a\n{SHA_EMPTY}  ./a\n"), 3),
    ] {
        sums(m);
        let (code, out, err) = audit(d.path(), &["a"]);
        assert_eq!((code, out.as_str()), (1, "changed  a\n"), "{err}");
        let warning =
            format!("parsum: SUMS: {no}: a is listed more than once with different checksums\n");
        assert!(err.contains(&warning), "{err}");
        assert!(err.contains("0 matched, 1 changed"), "{err}");
    }

    // Gone, with its content elsewhere: missing, not moved.
    sums(format!("{SHA_ABC}  b\n{SHA_EMPTY}  b\n{SHA_ABC}  a\n"));
    let (code, out, err) = audit(d.path(), &["a"]);
    assert_eq!(
        (code, out.as_str()),
        (1, "matched  a\nmissing  b\n"),
        "{err}"
    );
    assert!(err.contains("SUMS: 2: b is listed more than once"), "{err}");

    // Several, in line order (after the improperly formatted lines, with
    // the same kind of position), whatever the order of their names.
    sums(format!(
        "{SHA_ABC}  z\n{SHA_ABC}  a\n{SHA_EMPTY}  z\nbad\n{SHA_EMPTY}  a\n"
    ));
    let (code, _, err) = audit(d.path(), &["a"]);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().take(4).collect();
    assert_eq!(
        lines,
        [
            "parsum: SUMS: 4: improperly formatted checksum line",
            "parsum: WARNING: 1 line is improperly formatted",
            "parsum: SUMS: 3: z is listed more than once with different checksums",
            "parsum: SUMS: 5: a is listed more than once with different checksums",
        ],
        "{err}"
    );
}

/// A manifest whose lines need more than one read (MD5 beside SHA-256)
/// is refused (exit 2) with the line where it starts to, in the position
/// format of its other messages (`SUMS: 3:`); it gave no line at all.
/// 64-digit lines (BLAKE3 or SHA-256) beside SHA256 or BLAKE3 tags mix
/// with neither; `-a` chooses one (the other lines are then improperly
/// formatted).
#[test]
fn a_manifest_mixing_algorithms_names_the_line() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    let md5_abc = "900150983cd24fb0d6963f7d28e17f72";
    std::fs::write(
        d.path().join("SUMS"),
        format!(
            "# made by hand\n{SHA_ABC}  a\nSHA256 (b) = {SHA_EMPTY}\n{md5_abc}  c\n{md5_abc}  d\n"
        ),
    )
    .unwrap();
    let (code, out, err) = audit(d.path(), &["a"]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(
        err,
        "parsum: SUMS: 4: mixes hash algorithms (MD5 after BLAKE3/SHA256); pass -a to choose one\n"
    );
    let (code, out, err) = audit(d.path(), &["-a", "sha256", "a"]);
    assert_eq!(
        (code, out.as_str()),
        (1, "matched  a\nmissing  b\n"),
        "{err}"
    );
    assert!(err.contains("SUMS: 4: improperly formatted"), "{err}");
}

/// A listed path that is no longer a regular file is `missing`, and pairs
/// as a move when its content is elsewhere; with `--follow` a link to the
/// same content matches; an excluded listed file is left out of the report.
#[test]
fn a_listed_path_no_longer_regular() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"f", b"abc");
    write(d.path(), b"moved", b"");
    std::os::unix::fs::symlink("f", d.path().join("link")).unwrap();
    mkfifo(&d.path().join("fifo"));
    std::fs::write(
        d.path().join("SUMS"),
        format!("{SHA_ABC}  f\n{SHA_EMPTY}  fifo\n{SHA_ABC}  link\n"),
    )
    .unwrap();
    let (code, out, err) = audit(d.path(), &["--exclude", "SUMS", "."]);
    assert_eq!(
        (code, out.as_str()),
        (1, "matched  f\nmoved    fifo -> moved\nmissing  link\n"),
        "{err}"
    );
    let (code, out, err) = audit(d.path(), &["--follow", "--exclude", "SUMS", "."]);
    assert_eq!(
        (code, out.as_str()),
        (1, "matched  f\nmatched  link\nmoved    fifo -> moved\n"),
        "{err}"
    );
    let (code, out, err) = audit(
        d.path(),
        &[
            "--exclude",
            "SUMS",
            "--exclude",
            "fifo",
            "--exclude",
            "link",
            "--exclude",
            "moved",
            ".",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "matched  f\n"), "{err}");
}

/// Manifest paths and roots that name the same file by lexical
/// normalisation (repeated `/`, `.` components, a leading `./`) meet, also
/// in non-UTF-8 names and escaped lines (unescaped first: a `\` in a name
/// is a byte); `..` is never resolved, so `a/../x` is another path.
#[test]
fn spellings_of_one_path_meet() {
    let d = tempfile::tempdir().unwrap();
    for name in [&b"x"[..], b"a/b", b"d\xff/e", b"s\\l/n\nl"] {
        write(d.path(), name, b"abc");
    }
    let mut m = Vec::new();
    for line in [
        format!("{SHA_ABC}  .//x\n").as_bytes(),
        format!("{SHA_ABC}  a/.//b\n").as_bytes(),
        format!("\\{SHA_ABC}  ./s\\\\l/.//n\\nl\n").as_bytes(),
        format!("{SHA_ABC}  d").as_bytes(),
        b"\xff//./e\n",
    ] {
        m.extend_from_slice(line);
    }
    std::fs::write(d.path().join("SUMS"), &m).unwrap();
    let out = parsum()
        .current_dir(d.path())
        .args(["--audit", "SUMS", "./x", "a//", "./s\\l"])
        .arg(std::ffi::OsStr::from_bytes(b".//d\xff/"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("4 matched, 0 changed, 0 new, 0 missing, 0 moved, 0 errors"),
        "{err}"
    );
    // Reported under the one spelling.
    let mut want = b"matched  x\nmatched  a/b\nmatched  \\s\\\\l/n\\nl\nmatched  d".to_vec();
    want.extend_from_slice(b"\xff/e\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want)
    );

    // `..` is kept: the line is missing, the file new, paired as a move.
    std::fs::write(d.path().join("SUMS"), format!("{SHA_ABC}  a/../x\n")).unwrap();
    let (code, out, err) = audit(d.path(), &["./x"]);
    assert_eq!((code, out.as_str()), (1, "moved    a/../x -> x\n"), "{err}");
}

/// A PATH `-` is standard input, as in tree mode (`parsum -`) and in a
/// `-c` manifest's line: compared with the manifest's line for `-`, at its
/// place in argument order; a file called `-` is `./-`. With MANIFEST on
/// standard input too, it is a usage error.
#[test]
fn a_dash_root_is_standard_input() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"f", b"abc");
    write(d.path(), b"-", b"a file called -");
    std::fs::write(
        d.path().join("SUMS"),
        format!("{SHA_ABC}  f\n{SHA_ABC}  -\n"),
    )
    .unwrap();
    let run = |stdin: &str, roots: &[&str]| {
        let out = parsum()
            .current_dir(d.path())
            .args(["--audit", "SUMS"])
            .args(roots)
            .write_stdin(stdin)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run("abc", &["-", "f"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "matched  -\nmatched  f\n"),
        "{err}"
    );
    let (code, out, err) = run("abd", &["f", "-"]);
    assert_eq!(
        (code, out.as_str()),
        (1, "matched  f\nchanged  -\n"),
        "{err}"
    );
    // The file called `-` is not standard input: SUMS's line for `-` is.
    let (code, out, err) = run("abc", &["./-", "f"]);
    assert_eq!(
        (code, out.as_str()),
        (1, "matched  f\nnew      ./-\nmissing  -\n"),
        "{err}"
    );

    parsum()
        .current_dir(d.path())
        .args(["--audit", "-", "-"])
        .write_stdin(format!("{SHA_ABC}  -\n"))
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "--audit - reads MANIFEST from standard input, so a PATH cannot be standard input",
        ));
}

/// The file called `-` (`./-`, or `-` in a walk of `.`) and standard input
/// (a PATH `-`, a manifest's line for `-`) are two paths: listed both, with
/// different checksums, they conflict with nothing and each matches its
/// own line. Normalisation made `./-` into `-`: the two lines were "listed
/// more than once with different checksums", and both `changed`.
#[test]
fn the_file_called_dash_is_not_standard_input() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"-", b"abc");
    let sha_stdin = "ac275db4b86a57a2fbc03170690191aa2bb403adad92e9f90762042e03ae9f2e";
    std::fs::write(
        d.path().join("SUMS"),
        format!("{SHA_ABC}  ./-\n{sha_stdin}  -\n"),
    )
    .unwrap();
    let run = |roots: &[&str]| {
        let out = parsum()
            .current_dir(d.path())
            .args(["--audit", "SUMS", "--exclude", "SUMS"])
            .args(roots)
            .write_stdin("stdin\n")
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for roots in [&["./-", "-"][..], &[".//-", "-"], &[".", "-"]] {
        let (code, out, err) = run(roots);
        assert_eq!(
            (code, out.as_str()),
            (0, "matched  ./-\nmatched  -\n"),
            "{roots:?}: {err}"
        );
        assert!(!err.contains("more than once"), "{roots:?}: {err}");
    }
    // Without standard input, its line is missing, and the file matched.
    let (code, out, err) = run(&["."]);
    assert_eq!(
        (code, out.as_str()),
        (1, "matched  ./-\nmissing  -\n"),
        "{err}"
    );
}
