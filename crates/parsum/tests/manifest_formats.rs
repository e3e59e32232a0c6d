//! Every manifest format coreutils reads, read by `parsum -c` and
//! `--audit`: CRLF, comments and blank lines, PGP armor, OpenSSL and BSD
//! reversed lines, tabs and leading blanks. Where coreutils is installed,
//! parsum's stdout, exit status and messages must equal `sha256sum -c`'s
//! or `md5sum -c`'s for the same manifest.

mod common;
use common::*;

use std::process::Command as StdCommand;

const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const SHA_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const MD5_ABC: &str = "900150983cd24fb0d6963f7d28e17f72";
const MD5_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// A tree with `a` ("abc"), `b` (empty) and `back\slash` ("abc").
fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"a", b"abc");
    write(d.path(), b"b", b"");
    write(d.path(), b"back\\slash", b"abc");
    d
}

/// Checks `manifest` in [`tree`] with parsum and, when installed, with
/// `tool -c` ([`check_same_as`]).
fn same_as(tool: &str, manifest: &[u8], flags: &[&str]) -> (i32, String, String) {
    check_same_as(tool, tree().path(), manifest, flags)
}

#[test]
fn crlf_lines_read_like_lf() {
    let m = format!("{SHA_ABC}  a\r\n{SHA_EMPTY}  b\r\n\\{SHA_ABC}  back\\\\slash\r\n");
    let (code, out, err) = same_as("sha256sum", m.as_bytes(), &["--strict"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "a: OK\nb: OK\nback\\slash: OK\n", "")
    );
}

#[test]
fn comments_and_blank_lines_are_not_improper() {
    let m = format!("# made by hand\n\n{SHA_ABC}  a\n\r\n#{SHA_EMPTY}  b\n\n");
    let (code, out, err) = same_as("sha256sum", m.as_bytes(), &["--strict", "--warn"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "a: OK\n", ""));
    // A line of blanks is not empty: improperly formatted, with the
    // algorithm named as coreutils names it.
    let m = format!("{SHA_ABC}  a\n  \n");
    let (code, _, err) = same_as("sha256sum", m.as_bytes(), &["--warn"]);
    assert_eq!(code, 0);
    assert!(
        err.contains("SUMS: 2: improperly formatted SHA256 checksum line"),
        "{err}"
    );
}

#[test]
fn openssl_and_bsd_tag_lines() {
    let m = format!(
        "SHA256(a)= {SHA_ABC}\nSHA256 (b) = {SHA_EMPTY}\nSHA256 (a)={SHA_ABC}\n\\SHA256(back\\\\slash)= {SHA_ABC}\n"
    );
    let (code, out, _) = same_as("sha256sum", m.as_bytes(), &["--strict"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "a: OK\nb: OK\na: OK\nback\\slash: OK\n")
    );
    let m = format!("MD5(a)= {MD5_ABC}\nMD5 (b) = {MD5_EMPTY}\n");
    let (code, out, _) = same_as("md5sum", m.as_bytes(), &["--strict"]);
    assert_eq!((code, out.as_str()), (0, "a: OK\nb: OK\n"));
    // Deliberate differences (docs/parsum.md): parsum takes a lower-case
    // tag, which coreutils calls improperly formatted, and a NUL inside a
    // name is an error on its line, where coreutils checks the name up to
    // the NUL.
    let d = tree();
    let sums = d.path().join("SUMS");
    let lower = format!("sha256 (a) = {SHA_ABC}\n");
    std::fs::write(&sums, lower).unwrap();
    let out = parsum()
        .current_dir(d.path())
        .args(["--strict", "-c", "SUMS"])
        .output()
        .unwrap();
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), &b"a: OK\n"[..])
    );
    std::fs::write(&sums, format!("{SHA_ABC}  a\0b\n")).unwrap();
    let out = parsum()
        .current_dir(d.path())
        .args(["-c", "SUMS"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!out.stdout.starts_with(b"a: OK"), "{out:?}");
}

#[test]
fn bsd_reversed_lines_with_one_space() {
    // `md5 -r` output.
    let m = format!("{MD5_ABC} a\n{MD5_EMPTY} b\n");
    let (code, out, _) = same_as("md5sum", m.as_bytes(), &["--strict"]);
    assert_eq!((code, out.as_str()), (0, "a: OK\nb: OK\n"));
    // Mixing reversed and GNU lines: the second kind is improper.
    let m = format!("{MD5_ABC}  a\n{MD5_EMPTY} b\n");
    let (code, out, _) = same_as("md5sum", m.as_bytes(), &["--strict"]);
    assert_eq!((code, out.as_str()), (1, "a: OK\n"));
}

#[test]
fn tab_separator_and_leading_blanks() {
    // A tab right before the name reads as the one-blank reversed form.
    let m = format!("{SHA_ABC}\ta\n{SHA_EMPTY}\tb\n");
    let (code, out, _) = same_as("sha256sum", m.as_bytes(), &["--strict"]);
    assert_eq!((code, out.as_str()), (0, "a: OK\nb: OK\n"));
    // A tab, then the text-mode blank.
    let m = format!("{SHA_ABC}\t a\n");
    let (code, out, _) = same_as("sha256sum", m.as_bytes(), &["--strict"]);
    assert_eq!((code, out.as_str()), (0, "a: OK\n"));
    // Leading blanks, also before the escape marker.
    let m = format!(" \t{SHA_EMPTY}  b\n  \\{SHA_ABC}  back\\\\slash\n");
    let (code, out, _) = same_as("sha256sum", m.as_bytes(), &["--strict"]);
    assert_eq!((code, out.as_str()), (0, "b: OK\nback\\slash: OK\n"));
    // Once reversed, a GNU line's name keeps its leading blank.
    let m = format!("{SHA_ABC}\ta\n \t{SHA_EMPTY}  b\n");
    let (code, out, _) = same_as("sha256sum", m.as_bytes(), &[]);
    assert_eq!(
        (code, out.as_str()),
        (1, "a: OK\n b: FAILED open or read\n")
    );
}

/// A clear-signed manifest (as `gpg --clearsign` writes it): parsum skips
/// the armor; coreutils would count its lines as improperly formatted.
#[test]
fn pgp_signed_manifest() {
    let d = tree();
    let m = d.path().join("SHA256SUMS.asc");
    std::fs::write(
        &m,
        format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{SHA_ABC}  a\n{SHA_EMPTY}  b\n\
             -----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n=Xb8d\n-----END PGP SIGNATURE-----\n"
        ),
    )
    .unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-c", "--strict", "--warn"])
        .arg(&m)
        .assert()
        .success()
        .stdout("a: OK\nb: OK\n")
        .stderr("");
}

/// `--audit` reads the same formats; a CRLF manifest is not "all moved",
/// and a bad line is a warning, not the end of the audit.
#[test]
fn audit_reads_crlf_and_warns_about_bad_lines() {
    let d = tree();
    let m = d.path().join("SUMS");
    std::fs::write(
        &m,
        format!("# comment\r\n{SHA_ABC}  a\r\n{SHA_EMPTY}  b\r\nnot a line\r\n\\{SHA_ABC}  back\\\\slash\r\n"),
    )
    .unwrap();
    let out = parsum()
        .current_dir(d.path())
        .args(["--audit", "SUMS", "a", "b", "back\\slash"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "matched  a\nmatched  b\nmatched  \\back\\\\slash\n",
        "{stderr}"
    );
    assert!(
        stderr.contains("SUMS: 4: improperly formatted checksum line"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARNING: 1 line is improperly formatted"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// A manifest on stdin that names `-` is improperly formatted (it would
/// be ambiguous), as in coreutils.
#[test]
fn dash_in_a_manifest_on_stdin_is_improper() {
    let m = format!("{SHA_ABC}  -\n");
    let d = tree();
    let out = parsum()
        .current_dir(d.path())
        .args(["-c", "-"])
        .write_stdin(m.clone())
        .output()
        .unwrap();
    let ours = (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(ours.0, 1);
    assert!(
        ours.1
            .contains("'standard input': no properly formatted checksum lines found"),
        "{}",
        ours.1
    );
    if have("sha256sum") {
        let mut c = StdCommand::new("sha256sum");
        c.args(["-c", "-"]).stdin(std::process::Stdio::piped());
        let mut child = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        let theirs = String::from_utf8_lossy(&o.stderr).replace("sha256sum:", "parsum:");
        assert_eq!((o.status.code().unwrap(), theirs), ours);
    }
}

/// In a manifest read from a file, `-` is standard input.
#[test]
fn dash_in_a_manifest_file_hashes_stdin() {
    let d = tree();
    std::fs::write(d.path().join("SUMS"), format!("{SHA_ABC}  -\n")).unwrap();
    parsum()
        .current_dir(d.path())
        .args(["-c", "SUMS"])
        .write_stdin("abc")
        .assert()
        .success()
        .stdout("-: OK\n");
}

/// A manifest without one checksum line (zero bytes, only comments, only
/// empty lines, a CRLF, a byte-order mark) checks nothing: `-c` fails with
/// `no properly formatted checksum lines found`, exit 1, whatever the
/// flags, as `sha256sum -c` does (compared where it is installed). b3sum
/// (1.2 and 1.8) instead passes a zero-byte manifest silently and refuses
/// comments; parsum follows coreutils for every format.
#[test]
fn a_manifest_without_checksum_lines_fails_as_sha256sum_does() {
    for m in [
        &b""[..],
        b"# only\n# comments\n",
        b"\n\n\n",
        b"\r\n",
        b"\xef\xbb\xbf\n",
    ] {
        // Not --warn: the byte-order mark's line is improperly formatted,
        // which sha256sum names SHA256 and parsum, with no line or name to
        // tell the algorithm by, names none.
        for flags in [&[][..], &["--status"], &["--ignore-missing"], &["--strict"]] {
            let (code, out, err) = same_as("sha256sum", m, flags);
            let what = format!("{flags:?} {:?}", String::from_utf8_lossy(m));
            assert_eq!((code, out.as_str()), (1, ""), "{what}");
            assert!(
                err.ends_with("parsum: SUMS: no properly formatted checksum lines found\n"),
                "{what}: {err}"
            );
        }
    }
}
