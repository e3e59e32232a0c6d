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
