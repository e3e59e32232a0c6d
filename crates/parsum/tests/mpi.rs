//! parsum over MPI: `mpirun -np N parsum ARGS` must print, on stdout, the
//! very bytes of a single-process `parsum ARGS`, with the same exit status,
//! for 1, 2 and 4 ranks and every output format; a rank that dies must end
//! the job with an error and no output file that looks complete.
//!
//! Built only with `--features mpi`; each test is skipped, with a note, when
//! `mpirun` is not installed. Every mpirun runs under `timeout` (and the
//! test's own guard), so nothing here can hang.
#![cfg(feature = "mpi")]

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;

use common::mpirun::*;
use common::*;

/// The summary line without its timing: `parsum: 3 files, 2 B, 0 skipped,
/// 0 errors` (`-c` prints none).
fn summary(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .rfind(|l| l.starts_with("parsum: ") && l.contains(" in ") && l.contains("skipped"))
        .map(|l| l[..l.rfind(" in ").unwrap()].to_string())
}

/// Same bytes and same status as one process, for each rank count, and
/// the same `key` of parsum's stderr (`what` names it in a failure).
fn assert_same_by<T: PartialEq + std::fmt::Debug>(
    dir: &Path,
    args: &[&str],
    nps: &[usize],
    what: &str,
    key: impl Fn(&str) -> T,
) -> Run {
    assert_same_as_one_process(&[], dir, args, nps, b"", what, key)
}

/// Same bytes, same status, same summary counts, for each rank count.
fn assert_same(dir: &Path, args: &[&str], nps: &[usize]) -> Run {
    assert_same_by(dir, args, nps, "summary", summary)
}

/// An uneven tree: one big directory and many small ones, a deep chain,
/// hard links, awkward and non-UTF-8 names, a FIFO, symbolic links (one
/// dangling, one a loop under --follow).
fn uneven_tree(r: &Path) {
    for i in 0..300u32 {
        let body: Vec<u8> = (0..(i * 37 % 5000)).map(|b| (b * i) as u8).collect();
        write(r, format!("big/f{i:03}").as_bytes(), &body);
    }
    for d in 0..60 {
        write(r, format!("s{d}/a").as_bytes(), format!("{d}").as_bytes());
        if d % 3 == 0 {
            write(r, format!("s{d}/sub/b").as_bytes(), b"b");
        }
    }
    let deep: String = (0..40).map(|i| format!("d{i}/")).collect();
    write(r, format!("{deep}leaf").as_bytes(), b"deep");
    for name in AWKWARD {
        write(r, &[b"odd/", *name].concat(), name);
    }
    write(r, b"odd/\xe9t\xe9", b"latin-1");
    write(r, b"a.b", b"sorts after a/");
    write(r, b"a/z", b"sorts before a.b");
    std::fs::hard_link(r.join("big/f001"), r.join("hard1")).unwrap();
    std::fs::hard_link(r.join("big/f001"), r.join("s5/hard2")).unwrap();
    mkfifo(&r.join("s7/fifo"));
    std::os::unix::fs::symlink("big", r.join("s8/link")).unwrap();
    std::os::unix::fs::symlink("nowhere", r.join("s9/dangling")).unwrap();
    std::os::unix::fs::symlink("..", r.join("s10/up")).unwrap();
    std::fs::create_dir(r.join("empty")).unwrap();
}

#[test]
fn same_bytes_as_one_process_in_every_mode() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    let plain = assert_same(d.path(), &[], &[1, 2, 4]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(summary(&plain.stderr).is_some(), "{}", plain.stderr);
    assert!(
        plain.stdout.windows(4).any(|w| w == b"leaf"),
        "the deep file is there"
    );
    for args in [
        &["--tag"][..],
        &["--json"],
        &["-z"],
        &["-a", "sha256", "--tag", "-z"],
        &["--exclude", "s1*", "--max-depth", "3"],
        &["--exclude", "s2/sub", "--exclude", "odd/*\\*", "-x"],
    ] {
        assert_same(d.path(), args, &[2, 4]);
    }
    // Errors: a dangling link and a loop under --follow are errors (exit 1).
    let follow = assert_same(d.path(), &["--follow"], &[1, 4]);
    assert_eq!(follow.code, 1);
}

#[test]
fn results_spilled_to_sorted_runs_on_disk_give_the_same_bytes() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    for args in [&["--json"][..], &["-z", "--follow"]] {
        let want = single(d.path(), args);
        let mut with_v = args.to_vec();
        with_v.push("-v");
        // A run on disk every 7 records: dozens of runs per rank.
        let got = mpi(2, d.path(), &with_v, &[("PARSUM_TEST_MPI_SPILL_AT", "7")]);
        assert_eq!(got.code, want.code, "{}", got.stderr);
        assert!(got.stdout == want.stdout, "{args:?}: stdout differs");
        let runs = sum_of(&got.stderr, " sorted run(s) on disk");
        assert!(runs > 20, "spilled only {runs} runs:\n{}", got.stderr);
    }
}

/// The sum over ranks of the number before `what` in the `-v` rank lines.
fn sum_of(stderr: &str, what: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.contains(" of ") && l.starts_with("parsum: rank "))
        .map(|l| {
            let at = l.find(what).unwrap_or_else(|| panic!("no {what:?} in {l}"));
            l[..at].rsplit(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum()
}

#[test]
fn hard_links_are_hashed_once_in_the_whole_job() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, b"x", &vec![7u8; 100_000]);
    write(r, b"y", b"y");
    for i in 0..30 {
        write(r, format!("d{i}/plain").as_bytes(), b"p");
        std::fs::hard_link(r.join("x"), r.join(format!("d{i}/x-link"))).unwrap();
        if i % 6 == 0 {
            std::fs::hard_link(r.join("y"), r.join(format!("d{i}/y-link"))).unwrap();
        }
    }
    let want = single(r, &[]);
    let got = mpi(4, r, &["-v"], &[]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert!(got.stdout == want.stdout, "stdout differs:\n{}", got.stderr);
    assert_eq!(sum_of(&got.stderr, " hard-linked name(s)"), 31 + 6);
    let hashed = sum_of(&got.stderr, " linked file(s) hashed");
    let fsid = rustix::fs::statvfs(r).unwrap().f_fsid;
    if fsid != 0 {
        assert_eq!(hashed, 2, "each linked file once:\n{}", got.stderr);
    } else {
        // No file-system id: matched per rank only.
        assert!((2..=8).contains(&hashed), "{hashed}\n{}", got.stderr);
    }
}

#[test]
fn deeper_than_path_max() {
    if !have_mpirun() {
        return;
    }
    // 2500 levels: the deepest paths are 5000 bytes, more than PATH_MAX,
    // so ranks that take such a directory or file must open it by parts.
    let d = tempfile::tempdir().unwrap();
    deep_chain(d.path(), 2500);
    let run = assert_same(d.path(), &[], &[3]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.iter().filter(|&&b| b == b'\n').count(), 2500);
}

#[test]
fn repeated_runs_with_more_ranks_than_cores_never_differ_or_hang() {
    if !have_mpirun() {
        return;
    }
    // Stealing and termination under heavy oversubscription (up to 6 ranks
    // on 2 cores): timing differs from run to run, the bytes must not.
    let d = tempfile::tempdir().unwrap();
    for i in 0..40 {
        write(
            d.path(),
            format!("w{}/f{i}", i % 7).as_bytes(),
            &[i as u8; 3000],
        );
    }
    for i in 0..200 {
        write(d.path(), format!("one/f{i:03}").as_bytes(), &[i as u8; 10]);
    }
    let want = single(d.path(), &[]);
    for np in [5, 6, 2, 3, 6, 4, 5, 6] {
        let got = mpi(np, d.path(), &[], &[]);
        assert_eq!(got.code, 0, "-np {np}: {}", got.stderr);
        assert!(got.stdout == want.stdout, "-np {np}: stdout differs");
    }
}

#[test]
fn several_roots_a_file_root_and_a_missing_one() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    let run = assert_same(
        d.path(),
        &[
            "s3",
            "./big",
            "hard1",
            "no-such-dir",
            "odd/",
            "s3",
            "s8/link",
            "s7/fifo",
        ],
        &[3],
    );
    assert_eq!(run.code, 1, "the missing root is an error");
}

#[test]
fn a_reader_that_quits_early_ends_the_job_cleanly() {
    if !have_mpirun() {
        return;
    }
    // `mpirun ... | head -c 100`: the output closes early. The job must end
    // by itself, not hang. Its status is mpirun's own, as mpirun forwards
    // rank 0's stdout: 0 if the pipe took all of it before `head` quit, or
    // whatever Open MPI's SIGPIPE handling ends in (141, or 139 when 4.1's
    // mpirun crashes in it); a single parsum exits 1, silently.
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    let sh = format!(
        "timeout -s TERM 120 mpirun --allow-run-as-root --oversubscribe -np 3 {} --no-progress . \
         | head -c 100 > /dev/null; echo \"${{PIPESTATUS[0]}}\"",
        env!("CARGO_BIN_EXE_parsum")
    );
    let out = assert_cmd::Command::new("bash")
        .timeout(Duration::from_secs(150))
        .current_dir(d.path())
        .args(["-c", &sh])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(status.trim(), "124", "timed out: {stderr}");
    assert!(status.trim().parse::<u8>().is_ok(), "{status}: {stderr}");
}

#[test]
fn a_rank_with_no_files_and_an_empty_tree() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"one", b"1");
    write(d.path(), b"two", b"2");
    let run = assert_same(d.path(), &[], &[4]);
    assert_eq!(run.stdout.iter().filter(|&&b| b == b'\n').count(), 2);
    let e = tempfile::tempdir().unwrap();
    let run = assert_same(e.path(), &[], &[2]);
    assert!(run.stdout.is_empty());
}

#[test]
fn output_file_under_mpi_and_checked_under_mpi() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    let want = single(d.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let sums = out.path().join("SUMS");
    let got = mpi(4, d.path(), &["-o", sums.to_str().unwrap()], &[]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert!(got.stdout.is_empty(), "stdout stays empty with -o");
    assert_eq!(std::fs::read(&sums).unwrap(), want.stdout);
    // -c of the file written under MPI, itself split between the ranks.
    let check = assert_same(d.path(), &["-c", sums.to_str().unwrap()], &[2]);
    assert_eq!(check.code, 0, "{}", check.stderr);
}

/// `-o SUMS .` inside the tree, twice, under MPI: the SUMS being replaced
/// and a temporary file a killed run left are the output, not data, as in
/// one process (the ranks' walks read them; rank 0's merge drops them).
#[test]
fn output_file_inside_the_tree_under_mpi_lists_no_output() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    std::fs::write(d.path().join(".SUMS.parsum-4242.tmp"), b"half").unwrap();
    for _ in 0..2 {
        let got = mpi(3, d.path(), &["-o", "SUMS", "."], &[]);
        assert_eq!(got.code, 0, "{}", got.stderr);
    }
    let mpi_sums = std::fs::read(d.path().join("SUMS")).unwrap();
    let one = single(d.path(), &["-o", "SUMS", "."]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let single_sums = std::fs::read(d.path().join("SUMS")).unwrap();
    assert_eq!(mpi_sums, single_sums, "the same manifest as one process");
    let text = String::from_utf8_lossy(&single_sums);
    assert!(!text.contains("SUMS"), "{text}");
}

/// A hard link to the SUMS being replaced, under another name, is data
/// (it stays, holding the old SUMS): listed by MPI as by one process.
/// (They differed: one process left out every name of the file.)
#[test]
fn a_hard_link_to_the_output_is_listed_under_mpi_as_in_one_process() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    let one = single(d.path(), &["-o", "SUMS", "."]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    std::fs::hard_link(d.path().join("SUMS"), d.path().join("keep")).unwrap();
    let got = mpi(3, d.path(), &["-o", "SUMS", "."], &[]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    let mpi_sums = std::fs::read(d.path().join("SUMS")).unwrap();
    std::fs::remove_file(d.path().join("SUMS")).unwrap();
    std::fs::hard_link(d.path().join("keep"), d.path().join("SUMS")).unwrap();
    let one = single(d.path(), &["-o", "SUMS", "."]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let single_sums = std::fs::read(d.path().join("SUMS")).unwrap();
    assert_eq!(mpi_sums, single_sums, "the same manifest as one process");
    let text = String::from_utf8_lossy(&single_sums);
    assert!(text.contains("  keep\n"), "{text}");
    assert!(!text.contains("SUMS"), "{text}");
}

#[test]
fn a_rank_that_dies_fails_the_job_and_leaves_no_output_file() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    let out = tempfile::tempdir().unwrap();
    let sums = out.path().join("SUMS");
    for after in ["5", "1000000"] {
        let got = mpi(
            2,
            d.path(),
            &["-o", sums.to_str().unwrap()],
            &[("PARSUM_TEST_MPI_ABORT_AFTER", after)],
        );
        assert_ne!(got.code, 0, "after {after}: {}", got.stderr);
        assert!(
            got.stderr.contains("rank 1: aborting"),
            "after {after}: {}",
            got.stderr
        );
        assert!(!sums.exists(), "no complete-looking manifest");
        assert!(got.stdout.is_empty());
    }
    // Leftovers are at most the hidden temporary file of the killed run.
    for e in std::fs::read_dir(out.path()).unwrap() {
        let name = e.unwrap().file_name();
        assert!(name.as_bytes().starts_with(b".SUMS.parsum-"), "{name:?}");
    }
    // The hook is read only under a launcher: a single process ignores it.
    let mut c = StdCommand::new(env!("CARGO_BIN_EXE_parsum"));
    c.current_dir(d.path())
        .args(["--no-progress", "-o"])
        .arg(&sums)
        .env("PARSUM_TEST_MPI_ABORT_AFTER", "1");
    let (code, _, stderr) = run_std(&mut c);
    assert_eq!(code, 0, "{stderr}");
    assert!(sums.exists());
}

#[test]
fn without_a_launcher_mpi_is_not_started() {
    // The single path must not touch MPI: it works even where MPI is
    // absent at run time, and it is exactly the plain parsum.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), b"x", b"x");
    let run = single(d.path(), &["-v"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("rank"), "{}", run.stderr);
}

/// parsum's own stderr lines (mpirun adds notes when a rank exits
/// non-zero), less `-v`'s lines on disks and ranks (each rank prints its
/// own: see docs/many-nodes.md).
fn parsum_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("parsum: "))
        .filter(|l| {
            !["disk ", "device ", "rank "]
                .iter()
                .any(|v| l[8..].starts_with(v))
        })
        .collect()
}

/// `-c`: the same stdout, the same stderr lines in the same order and the
/// same status as one process, for each rank count.
fn assert_check_same(dir: &Path, args: &[&str], nps: &[usize]) -> Run {
    assert_same_by(dir, args, nps, "stderr", |stderr| {
        parsum_lines(stderr)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    })
}

/// Manifests for `-c`: every kind of line, in several formats.
fn check_manifests(d: &Path) {
    uneven_tree(d);
    let sums = single(d, &[]).stdout;
    // Some digests wrong, some names gone, odd lines between.
    let mut m = Vec::new();
    for (i, line) in sums.split_inclusive(|&b| b == b'\n').enumerate() {
        let mut line = line.to_vec();
        if i % 7 == 3 {
            let at = usize::from(line[0] == b'\\');
            line[at] = if line[at] == b'0' { b'1' } else { b'0' };
        }
        if i % 11 == 5 {
            // CRLF: one trailing CR is dropped, as coreutils does.
            line.insert(line.len() - 1, b'\r');
        }
        m.extend_from_slice(&line);
        match i % 13 {
            2 => m.extend_from_slice(b"not a checksum line\n"),
            4 => m.extend_from_slice(b"# a comment\n\n"),
            6 => m.extend_from_slice(&[&[b'a'; 64][..], b"  gone/missing\n"].concat()),
            8 => m.extend_from_slice(&[&[b'b'; 64][..], b"  big\n"].concat()),
            9 => m.extend_from_slice(&[&[b'c'; 64][..], b"  s7/fifo\n"].concat()),
            _ => {}
        }
    }
    std::fs::write(d.join("all.b3"), &m).unwrap();
    let tagged = single(d, &["-a", "md5", "--tag", "big", "s1", "s2"]).stdout;
    std::fs::write(d.join("tagged.md5"), tagged).unwrap();
    std::fs::write(d.join("empty.sum"), b"").unwrap();
    std::fs::write(d.join("tiny.sum"), b"x").unwrap();
}

#[test]
fn check_mode_same_bytes_messages_and_status() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    check_manifests(d.path());
    let all = assert_check_same(d.path(), &["-c", "all.b3"], &[1, 2, 4]);
    assert_eq!(all.code, 1);
    let out = String::from_utf8_lossy(&all.stdout);
    for want in [": OK\n", ": FAILED\n", ": FAILED open or read\n", "\\"] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    assert!(all.stderr.contains("did NOT match"), "{}", all.stderr);
    for args in [
        &["-c", "-w", "all.b3"][..],
        &["-c", "--strict", "--quiet", "all.b3"],
        &["-c", "--status", "all.b3"],
        &["-c", "--ignore-missing", "-w", "all.b3"],
        &["-c", "tagged.md5"],
        &["-c", "-w", "tiny.sum"],
        &["-c", "empty.sum"],
        &[
            "-c",
            "-w",
            "all.b3",
            "nowhere.sum",
            "big",
            "empty.sum",
            "tagged.md5",
            "tiny.sum",
        ],
    ] {
        assert_check_same(d.path(), args, &[2, 4]);
    }
    let ok = assert_check_same(d.path(), &["-c", "tagged.md5"], &[3]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

/// Lines whose meaning depends on the lines before them: the ranks' ranges
/// start in the middle of a PGP signature, after a reversed-format line,
/// and after the line that names the algorithm of "improperly formatted".
#[test]
fn check_mode_ranges_start_in_the_state_the_lines_before_left() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let mut files = Vec::new();
    for i in 0..40 {
        files.push(format!("f{i:02}"));
        write(r, format!("f{i:02}").as_bytes(), format!("{i}").as_bytes());
    }
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    let md5 = single(r, &[&["-a", "md5"][..], &names].concat()).stdout;
    // Signed: a long signature whose lines a parser outside it rejects.
    let mut pgp = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n".to_vec();
    pgp.extend_from_slice(&md5);
    pgp.extend_from_slice(b"-----BEGIN PGP SIGNATURE-----\n\n");
    for i in 0..200 {
        pgp.extend_from_slice(format!("iQIzBAEBCAAdFiEE{i:04}xyz==\n").as_bytes());
    }
    pgp.extend_from_slice(b"-----END PGP SIGNATURE-----\n");
    pgp.extend_from_slice(&md5);
    std::fs::write(r.join("signed.md5"), &pgp).unwrap();
    // Reversed: `HEX name` first, so `HEX  f01` later names " f01".
    let mut rev = Vec::new();
    for (i, line) in md5.split_inclusive(|&b| b == b'\n').enumerate() {
        if i == 0 {
            rev.extend_from_slice(&[&line[..32], b" ", &line[34..]].concat());
        } else {
            rev.extend_from_slice(line);
        }
        rev.extend_from_slice(b"junk\n");
    }
    std::fs::write(r.join("reversed.sum"), &rev).unwrap();
    for args in [
        &["-c", "-w", "signed.md5"][..],
        &["-c", "-w", "--strict", "reversed.sum"],
        &["-c", "-w", "signed.md5", "reversed.sum"],
    ] {
        let one = assert_check_same(r, args, &[1, 2, 3, 4]);
        assert!(!one.stdout.is_empty(), "{args:?}");
    }
    let signed = single(r, &["-c", "-w", "signed.md5"]);
    assert_eq!(
        signed.code, 0,
        "the signature is skipped:\n{}",
        signed.stderr
    );
    let reversed = single(r, &["-c", "-w", "reversed.sum"]);
    assert!(
        reversed.stderr.contains(": 4: improperly formatted MD5"),
        "{}",
        reversed.stderr
    );
}

/// A manifest on standard input is read by rank 0; one with NUL-ended
/// lines (`-z`) is split at NULs; a rank with more than a chunk of verdicts
/// sends them in several messages.
#[test]
fn check_mode_stdin_nul_lines_and_many_chunks() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    uneven_tree(r);
    let sums = single(r, &[]).stdout;
    let mut c = StdCommand::new(env!("CARGO_BIN_EXE_parsum"));
    c.current_dir(r).args(["--no-progress", "-c", "-"]);
    for v in parsum::launcher::LAUNCHER_VARS {
        c.env_remove(v);
    }
    let want = {
        use std::io::Write;
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&sums).unwrap();
        child.wait_with_output().unwrap()
    };
    assert_eq!(want.status.code(), Some(0));
    for np in [1, 3] {
        let got = mpi_with_stdin(np, r, &["-c", "-"], &[], &sums);
        assert_eq!(got.code, 0, "{}", got.stderr);
        assert!(got.stdout == want.stdout, "-np {np}: stdout differs");
    }

    let z = single(r, &["-z"]).stdout;
    std::fs::write(r.join("nul.sums"), &z).unwrap();
    let nul = assert_check_same(r, &["-c", "-z", "nul.sums"], &[2, 4]);
    assert_eq!(nul.code, 0, "{}", nul.stderr);

    // 12 000 lines naming missing files with long names: over 1 MiB of
    // verdicts (each with its message) per rank.
    let mut big = Vec::new();
    for i in 0..12_000 {
        let name = format!("gone/{i:05}/{}", "n".repeat(150));
        big.extend_from_slice(format!("{}  {name}\n", "ab".repeat(32)).as_bytes());
    }
    std::fs::write(r.join("big.sum"), &big).unwrap();
    let many = assert_check_same(r, &["-c", "big.sum"], &[2]);
    assert_eq!(many.code, 1);
    assert_eq!(
        parsum_lines(&many.stderr).len(),
        12_001,
        "each line failed, one warning"
    );
}

/// A tree changed since its manifest was made: files changed, removed,
/// added, moved (some with the same content as others, so the pairing
/// order shows), and awkward names.
fn audited_tree(r: &Path, algo: &[&str]) {
    uneven_tree(r);
    for i in 0..30 {
        write(r, format!("same/c{i:02}").as_bytes(), b"duplicated content");
    }
    let sums = single(r, &[algo, &["."][..]].concat()).stdout;
    let mut m = sums.clone();
    m.extend_from_slice(b"not a line\n");
    std::fs::write(r.join("../audit.sums"), &m).unwrap();
    std::fs::write(r.join("big/f007"), b"changed").unwrap();
    std::fs::remove_file(r.join("big/f008")).unwrap();
    std::fs::create_dir(r.join("moved")).unwrap();
    for i in 0..10 {
        let to = r.join(format!("moved/c{i:02}"));
        std::fs::rename(r.join(format!("same/c{i:02}")), to).unwrap();
    }
    for i in 0..5 {
        write(r, format!("extra/n{i}").as_bytes(), b"duplicated content");
    }
    std::fs::rename(r.join("big/f100"), r.join("s3/f100-moved")).unwrap();
    write(r, b"brand/new", b"never seen");
    std::fs::remove_file(r.join(std::ffi::OsStr::from_bytes(b"odd/bad\xffutf8"))).unwrap();
}

#[test]
fn audit_same_bytes_messages_and_status() {
    if !have_mpirun() {
        return;
    }
    for algo in [&[][..], &["-a", "md5"]] {
        let top = tempfile::tempdir().unwrap();
        let r = top.path().join("t");
        std::fs::create_dir(&r).unwrap();
        audited_tree(&r, algo);
        let run = assert_check_same(&r, &["--audit", "../audit.sums", "."], &[1, 2, 4]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let out = String::from_utf8_lossy(&run.stdout);
        for want in ["matched ", "changed ", "new ", "missing ", "moved ", " -> "] {
            assert!(out.contains(want), "{algo:?}: no {want:?} in:\n{out}");
        }
        assert!(
            run.stderr.contains("improperly formatted"),
            "{}",
            run.stderr
        );
        let moved = out.lines().filter(|l| l.starts_with("moved")).count();
        assert!(moved >= 11, "{algo:?}: {moved} moved:\n{out}");
        // Other roots and flags: a sub-tree, two roots, -v, --follow.
        for args in [
            &["--audit", "../audit.sums", "./big", "same"][..],
            &["--audit", "../audit.sums", "-v", "."],
            &["--audit", "../audit.sums", "--follow", "."],
        ] {
            assert_check_same(&r, args, &[2, 4]);
        }
    }
}

/// `--audit -` under MPI reads rank 0's standard input, as one process
/// does, not a file called `-` (a decoy here, which would make every file
/// new).
#[test]
fn audit_of_standard_input_under_mpi() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    for i in 0..20 {
        write(r, format!("t/f{i}").as_bytes(), format!("{i}").as_bytes());
    }
    let sums = single(r, &["t"]).stdout;
    write(r, b"-", b"# a decoy\n");
    for np in [1, 3] {
        let got = mpi_with_stdin(np, r, &["--audit", "-", "t"], &[], &sums);
        assert_eq!(got.code, 0, "-np {np}: {}", got.stderr);
        assert_eq!(
            String::from_utf8_lossy(&got.stdout).lines().count(),
            20,
            "-np {np}"
        );
        assert!(
            got.stderr.contains("20 matched"),
            "-np {np}: {}",
            got.stderr
        );
    }
}

/// Under a launcher, rank 0's standard output is a pipe to `mpirun`, which
/// copies it on and does not report its own write errors (with stdout
/// closed or on /dev/full the job exits 0: docs/many-nodes.md, "Output").
/// `-o FILE` is written by rank 0 itself: a write error there is reported
/// and fails the job, as in one process.
#[test]
fn an_output_file_that_cannot_be_written_fails_the_job() {
    if !have_mpirun() || !Path::new("/dev/full").exists() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    small_tree(d.path(), 30);
    for np in [1, 3] {
        let got = mpi(np, d.path(), &["-o", "/dev/full", "t"], &[]);
        assert_eq!(got.code, 1, "-np {np}: {}", got.stderr);
        assert!(
            got.stderr
                .contains("parsum: write error: /dev/full: No space left on device"),
            "-np {np}: {}",
            got.stderr
        );
    }
}

#[test]
fn audit_of_a_bad_manifest() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, b"t/a", b"a");
    write(r, b"t/b", b"b");
    std::fs::write(r.join("empty.sums"), b"").unwrap();
    std::fs::write(r.join("junk.sums"), b"x\ny\n").unwrap();
    let md5 = single(r, &["-a", "md5", "t/a", "t/b"]).stdout;
    let sha1 = single(r, &["-a", "sha1", "t/b"]).stdout;
    // Mixed from line 3 on, in the range of a rank past 0 under -np 2 and 4.
    let mixed = [&md5[..], &sha1, &md5, &md5, &md5].concat();
    std::fs::write(r.join("mixed.sums"), mixed).unwrap();
    for (m, code) in [
        ("nowhere.sums", 1),
        ("t", 1),
        ("empty.sums", 1),
        ("junk.sums", 1),
        ("mixed.sums", 2),
    ] {
        let run = assert_check_same(r, &["--audit", m, "t"], &[1, 2, 4]);
        assert_eq!(run.code, code, "{m}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{m}");
        if code == 2 {
            assert!(
                run.stderr
                    .contains("parsum: mixed.sums: 3: mixes hash algorithms (SHA1 after MD5)"),
                "{}",
                run.stderr
            );
        }
    }
    // Fewer manifest lines than ranks, and a rank with nothing to compare.
    let one = single(r, &["t/a"]).stdout;
    std::fs::write(r.join("one.sums"), one).unwrap();
    let run = assert_check_same(r, &["--audit", "one.sums", "t"], &[4]);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "matched  t/a\nnew      t/b\n"
    );
}

/// `--audit` over MPI with a path listed twice (agreeing, and with
/// different checksums, in both orders) and listed paths that are no
/// longer regular files (a FIFO, a link): the single process's warning,
/// report and status.
#[test]
fn audit_of_conflicting_lines_and_paths_no_longer_regular() {
    if !have_mpirun() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let r = &top.path().join("t");
    std::fs::create_dir(r).unwrap();
    uneven_tree(r);
    let sums = single(r, &["-a", "sha256", "."]).stdout;
    let text = String::from_utf8_lossy(&sums).into_owned();
    let line_of = |name: &str| {
        text.lines()
            .find(|l| l.ends_with(&format!("  {name}")))
            .unwrap()
            .to_string()
    };
    let (a, b) = (line_of("big/f010"), line_of("big/f011"));
    let hex_b = b.split_once("  ").unwrap().0;
    // With the line that conflicts with the manifest's own for big/f010.
    let lines = text.lines().count();
    for (extra, no) in [
        (
            format!("{hex_b}  big/f010\n{a}\n{a}\n{hex_b}  s7/fifo\n{a}\n"),
            lines + 1,
        ),
        (
            format!("{a}\n{hex_b}  ./big/f010\n{hex_b}  s8/link\n{hex_b}  gone\n{b}x\n"),
            lines + 2,
        ),
    ] {
        let mut m = sums.clone();
        m.extend_from_slice(extra.as_bytes());
        std::fs::write(r.join("../dup.sums"), &m).unwrap();
        let run = assert_check_same(r, &["--audit", "../dup.sums", "."], &[1, 2, 4]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let out = String::from_utf8_lossy(&run.stdout);
        assert!(out.contains("changed  big/f010\n"), "{out}");
        assert!(
            run.stderr.contains(&format!(
                "dup.sums: {no}: big/f010 is listed more than once"
            )),
            "{}",
            run.stderr
        );
    }
}

/// `--audit SUMS t -`: rank 0 hashes standard input as the file `-`,
/// compared with the manifest's line for `-`, as a single process does.
#[test]
fn audit_of_standard_input_as_a_root() {
    if !have_mpirun() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let r = &top.path().join("t");
    std::fs::create_dir(r).unwrap();
    uneven_tree(r);
    let mut sums = single(top.path(), &["-a", "sha256", "t"]).stdout;
    const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    sums.extend_from_slice(format!("{SHA_ABC}  -\n").as_bytes());
    std::fs::write(top.path().join("SUMS"), &sums).unwrap();
    let args = ["--audit", "SUMS", "t", "-"];
    for (stdin, code, line) in [
        (&b"abc"[..], 0, "matched  -\n"),
        (b"abd", 1, "changed  -\n"),
    ] {
        let run =
            assert_same_as_one_process(&[], top.path(), &args, &[2, 3], stdin, "stderr", |e| {
                parsum_lines(e)
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            });
        assert_eq!(run.code, code, "{}", run.stderr);
        assert!(
            String::from_utf8_lossy(&run.stdout).ends_with(line),
            "{}",
            run.stderr
        );
    }
}

/// `--audit SUMS . -` with a file called `-` at the top of `.`: the file
/// is `./-` and standard input is `-`, two paths, on every rank as in one
/// process (the owner ranks keyed both `-`: a false conflict).
#[test]
fn audit_keeps_the_file_called_dash_apart_from_standard_input() {
    if !have_mpirun() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let r = &top.path().join("t");
    std::fs::create_dir(r).unwrap();
    uneven_tree(r);
    std::fs::write(top.path().join("-"), "abc").unwrap();
    let mut sums = single(top.path(), &["-a", "sha256", "t"]).stdout;
    const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const SHA_STDIN: &str = "ac275db4b86a57a2fbc03170690191aa2bb403adad92e9f90762042e03ae9f2e";
    sums.extend_from_slice(format!("{SHA_ABC}  ./-\n{SHA_STDIN}  -\n").as_bytes());
    std::fs::write(top.path().join("SUMS"), &sums).unwrap();
    let args = ["--audit", "SUMS", "--exclude", "SUMS", ".", "-"];
    let run =
        assert_same_as_one_process(&[], top.path(), &args, &[2, 3], b"stdin\n", "stderr", |e| {
            parsum_lines(e)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.code, 0, "{out}{}", run.stderr);
    assert!(out.contains("matched  ./-\n"), "{out}");
    assert!(out.ends_with("matched  -\n"), "{out}");
}

/// `parsum .` shows an entry called `-` at its top as `./-` (a bare `-`
/// is standard input), at `-`'s place in the output: the ranks' merge
/// orders it as a single process walks it, a file or a directory.
#[test]
fn dot_shows_the_entry_called_dash_in_walk_order() {
    if !have_mpirun() {
        return;
    }
    for dash_is_dir in [false, true] {
        let top = tempfile::tempdir().unwrap();
        for name in ["!", "\x01", "-a", "a", "b/-"] {
            write(top.path(), name.as_bytes(), name.as_bytes());
        }
        if dash_is_dir {
            for name in ["-/!", "-/x", "-/-"] {
                write(top.path(), name.as_bytes(), b"below");
            }
        } else {
            write(top.path(), b"-", b"the file");
        }
        let run =
            assert_same_as_one_process(&[], top.path(), &["."], &[2, 3], b"", "stderr", |e| {
                parsum_lines(e)
                    .into_iter()
                    .filter(|l| !l.contains(" files, "))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            });
        assert_eq!(run.code, 0, "{}", run.stderr);
        let out = String::from_utf8_lossy(&run.stdout);
        assert!(out.contains("  ./-"), "{out}");
        assert!(!out.contains("  -\n") && !out.contains("  -/"), "{out}");
    }
}

/// A manifest with a line over 16 MiB amid others: each rank reads its
/// range with the single process's bounded reader, and what a single
/// process never reads (the lines after it) is not printed either.
#[test]
fn a_line_over_16_mib_ends_the_manifest_as_in_one_process() {
    if !have_mpirun() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let r = &top.path().join("t");
    std::fs::create_dir(r).unwrap();
    uneven_tree(r);
    let sums = single(r, &["-a", "sha256"]).stdout;
    let half = sums.len() / 2;
    let cut = half + sums[half..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut m = sums[..cut].to_vec();
    m.extend(std::iter::repeat_n(b'x', (16 << 20) + 5));
    m.push(b'\n');
    m.extend_from_slice(&sums[cut..]);
    std::fs::write(r.join("../long.sha256"), &m).unwrap();
    let run = assert_check_same(r, &["-c", "../long.sha256"], &[2, 4]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("a line longer than 16 MiB"),
        "{}",
        run.stderr
    );
    let run = assert_check_same(r, &["--audit", "../long.sha256", "."], &[2, 4]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("a line longer than 16 MiB"),
        "{}",
        run.stderr
    );
}

#[test]
fn help_version_and_usage_errors_are_printed_once_not_by_every_rank() {
    if !have_mpirun() {
        return;
    }
    // Every rank parses its arguments before MPI starts, but only rank 0
    // may speak: `--help` and `--version` go to stdout, which must hold
    // exactly the single-process bytes, and a usage error is said once.
    let d = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["--version"]] {
        let want = single(d.path(), args);
        assert_eq!(want.code, 0);
        let got = mpi(3, d.path(), args, &[]);
        assert_eq!(got.code, 0, "{args:?}: {}", got.stderr);
        assert!(
            got.stdout == want.stdout,
            "{args:?}: stdout differs:\n{}",
            String::from_utf8_lossy(&got.stdout)
        );
    }
    for (args, said) in [
        (&["--no-such-flag"][..], "--no-such-flag"),
        (&["--update", "S", "-o", "SUMS", "."], "parsum: "),
    ] {
        let want = single(d.path(), args);
        assert_eq!(want.code, 2, "{}", want.stderr);
        let got = mpi(3, d.path(), args, &[]);
        assert_eq!(got.code, 2, "{args:?}: {}", got.stderr);
        assert!(got.stdout.is_empty());
        let first = want.stderr.lines().next().unwrap();
        assert!(first.contains(said), "{first}");
        let times = got.stderr.lines().filter(|l| *l == first).count();
        assert_eq!(times, 1, "{args:?}: said {times} times:\n{}", got.stderr);
        // The other ranks waited for rank 0 and were ended with the job:
        // none failed first (mpirun would then kill rank 0 before it spoke)
        // and none said the error again.
        assert!(!got.stderr.contains("parsum: rank "), "{}", got.stderr);
    }
}

#[test]
fn output_to_a_directory_or_through_a_link_under_mpi() {
    if !have_mpirun() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    let out = tempfile::tempdir().unwrap();
    // A directory: refused by rank 0 before any work, said once, exit 1.
    let dir = out.path().to_str().unwrap();
    let got = mpi(3, d.path(), &["-o", dir], &[]);
    assert_eq!(got.code, 1, "{}", got.stderr);
    assert_eq!(
        got.stderr.matches("Is a directory").count(),
        1,
        "{}",
        got.stderr
    );
    assert!(
        summary(&got.stderr).is_none(),
        "nothing hashed: {}",
        got.stderr
    );
    // A link: the file it names gets the manifest, the link stays.
    let want = single(d.path(), &[]);
    std::fs::write(out.path().join("real"), b"old").unwrap();
    std::os::unix::fs::symlink("real", out.path().join("SUMS")).unwrap();
    let sums = out.path().join("SUMS");
    let got = mpi(3, d.path(), &["-o", sums.to_str().unwrap()], &[]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert!(std::fs::symlink_metadata(&sums)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read(out.path().join("real")).unwrap() == want.stdout);
}

#[test]
fn hard_links_exchanged_in_many_small_rounds_give_the_same_bytes() {
    if !have_mpirun() {
        return;
    }
    // The names of multiply-linked files go to their owners in one
    // all-to-all; millions of them (a tree of backup snapshots) would pass
    // MPI's 2 GiB count. They go in rounds of bounded size: here a round of
    // 100 bytes, so many rounds, and nothing lost or reordered.
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    for f in 0..3 {
        write(r, format!("orig/f{f}").as_bytes(), &vec![f as u8; 5000]);
    }
    for i in 0..60 {
        for f in 0..3 {
            let name = r.join(format!("snap{i:02}/f{f}"));
            std::fs::create_dir_all(name.parent().unwrap()).unwrap();
            std::fs::hard_link(r.join(format!("orig/f{f}")), name).unwrap();
        }
    }
    let want = single(r, &[]);
    let got = mpi(3, r, &["-v"], &[("PARSUM_TEST_MPI_EXCHANGE_BYTES", "100")]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert!(got.stdout == want.stdout, "stdout differs:\n{}", got.stderr);
    assert_eq!(sum_of(&got.stderr, " hard-linked name(s)"), 183);
    let rounds = sum_of(&got.stderr, " exchange round(s)");
    assert!(rounds > 3 * 2 * 4, "only {rounds} rounds:\n{}", got.stderr);
}

#[test]
fn nodes_that_number_devices_differently_give_the_same_bytes() {
    if !have_mpirun() {
        return;
    }
    // NFS clients may give the same file system another st_dev on each
    // node. Stolen files and directories and hard-link names carry the
    // lister's numbers; checked against the thief's own fstat, every stolen
    // file would be "replaced by another file", every stolen directory
    // "replaced during the walk", and -x would skip them all. The hook
    // shifts every device number rank r sends by r << 40, as another
    // node's numbering would.
    let d = tempfile::tempdir().unwrap();
    uneven_tree(d.path());
    let skew = ("PARSUM_TEST_MPI_DEV_SKEW", "1099511627776");
    for args in [&[][..], &["-x"], &["--follow", "--json"]] {
        let want = single(d.path(), args);
        for np in [2, 4] {
            let mut with_v = args.to_vec();
            with_v.push("-v");
            let got = mpi(np, d.path(), &with_v, &[skew]);
            assert_eq!(got.code, want.code, "-np {np} {args:?}: {}", got.stderr);
            assert!(
                got.stdout == want.stdout,
                "-np {np} {args:?}: stdout differs:\n{}",
                got.stderr
            );
            assert!(
                sum_of(&got.stderr, " share(s) stolen") > 0,
                "nothing was stolen, nothing tested:\n{}",
                got.stderr
            );
        }
    }
}

/// `mpirun -np 3 parsum ARGS` under `sh -c SCRIPT` (whose `"$0" "$@"` is
/// the mpirun command) and `/usr/bin/time`: the run, and the whole job's
/// CPU and wall seconds (every rank is a reaped descendant).
fn timed_job(dir: &Path, script: &str, args: &[&str]) -> (Run, f64, f64) {
    // At the highest priority (as root; otherwise `nice` says so and runs
    // it as it is), so that a spinning rank gets its CPU even on a loaded
    // machine, and the test sees the spinning.
    let prefix = [
        "nice",
        "-n",
        "-20",
        "/usr/bin/time",
        "-f",
        "job-cpu %U %S %e",
        "sh",
        "-c",
        script,
    ];
    let run = mpi_with(&prefix, 3, dir, args, &[], b"");
    let line = run
        .stderr
        .lines()
        .rfind(|l| l.starts_with("job-cpu "))
        .unwrap_or_else(|| panic!("no timing in {}", run.stderr))
        .to_string();
    let t: Vec<f64> = line[8..].split(' ').map(|x| x.parse().unwrap()).collect();
    (run, t[0] + t[1], t[2])
}

/// The job waited at least `waited` seconds (the slow part happened) and
/// spent under 1 s of CPU in all its ranks meanwhile: none spun.
fn assert_no_rank_spun(cpu: f64, wall: f64, waited: f64) {
    assert!(
        wall >= waited,
        "the job had to wait {waited} s, yet wall {wall} s"
    );
    assert!(
        cpu < 1.0,
        "the job used {cpu:.2} s of CPU in {wall:.2} s: waiting ranks spin"
    );
}

/// Ranks waiting for rank 0 do not spin. MPI's blocking broadcast
/// busy-polls, so while rank 0 read a slow `-c -` manifest (or ran
/// `--update`/`--verify` alone) every other rank took a CPU, on a node it
/// shares with rank 0's hashers. Here the manifest arrives on stdin after
/// 2 s; the whole job's CPU time stays far below the 2 s per waiting rank
/// that spinning costs (3.5 s in all before the fix, on a quiet machine;
/// about 0.2 s after).
#[test]
fn ranks_waiting_for_rank_0_do_not_spin() {
    if !have_mpirun() || !have_for("/usr/bin/time", "the MPI idle-CPU test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), b"a", b"hello\n");
    let sums = single(dir.path(), &["a"]);
    assert_eq!(sums.code, 0, "{}", sums.stderr);
    std::fs::write(dir.path().join("SUMS"), &sums.stdout).unwrap();
    let script = "(sleep 2; cat SUMS) | \"$0\" \"$@\"";
    let (run, cpu, wall) = timed_job(dir.path(), script, &["-c", "-"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "a: OK\n");
    assert_no_rank_spun(cpu, wall, 2.0);
}

/// The same while rank 0 reads a slow standard input given as a PATH
/// (`t -`): rank 0 read it before it took part in the walk, and the other
/// ranks, asking it for work, spun in the walk's loop (a thief waiting for
/// an answer napped 50 us at a time: 1.1 s of CPU for a 4 s wait, on a
/// quiet machine). Rank 0 now hashes standard input beside its walk, and
/// a thief's naps grow while it waits.
#[test]
fn ranks_waiting_for_a_slow_standard_input_do_not_spin() {
    if !have_mpirun() || !have_for("/usr/bin/time", "the MPI idle-CPU test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for i in 0..200u32 {
        write(
            &dir.path().join("t"),
            format!("d{}/f{i}", i % 5).as_bytes(),
            b"x",
        );
    }
    let want = single_with(&[], dir.path(), &["t", "-"], b"late\n");
    assert_eq!(want.code, 0, "{}", want.stderr);
    let script = "(sleep 5; echo late) | \"$0\" \"$@\"";
    let (run, cpu, wall) = timed_job(dir.path(), script, &["t", "-"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&want.stdout)
    );
    assert_no_rank_spun(cpu, wall, 5.0);
}

/// The same while rank 0 writes the merged output slowly: `-o` is a FIFO
/// whose reader opens it at once but reads only after 2 s, so rank 0
/// blocks writing past the pipe's 64 KiB while the other ranks wait for
/// its pulls, then in the final broadcast.
#[test]
fn ranks_waiting_for_a_slow_output_do_not_spin() {
    if !have_mpirun() || !have_for("/usr/bin/time", "the MPI idle-CPU test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    for i in 0..3000u32 {
        let name = format!("d{}/file-with-a-longer-name-{i:05}", i % 7);
        write(&tree, name.as_bytes(), b"x");
    }
    let fifo = dir.path().join("out");
    assert!(StdCommand::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let script = "{ sleep 2; cat; } < out > got & \"$0\" \"$@\"; s=$?; wait; exit $s";
    let (run, cpu, wall) = timed_job(dir.path(), script, &["-o", "out", "t"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = std::fs::read(dir.path().join("got")).unwrap();
    assert_eq!(got.iter().filter(|&&b| b == b'\n').count(), 3000);
    assert!(
        got.len() > 128 << 10,
        "the output must fill the pipe: {} B",
        got.len()
    );
    assert_no_rank_spun(cpu, wall, 2.0);
}
