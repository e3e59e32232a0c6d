//! Manifest lines: writing the GNU (`HASH  name`) and BSD (`ALGO (name) =
//! HASH`) formats, and reading every format coreutils' `sha256sum -c` reads.
//!
//! [`LineParser`] follows coreutils' `digest_check` and `split_3` (9.x) line by
//! line, so that a manifest is read the same way by both tools:
//!
//! - a line starting with `#` is a comment, and an empty line is skipped
//!   (after one trailing CR is trimmed: CRLF manifests read as LF ones);
//!   neither counts as improperly formatted;
//! - leading spaces and tabs are skipped, then a `\` marks an escaped name;
//! - `ALGO (name) = HEX` (BSD, `--tag`) and `ALGO(name)= HEX` (OpenSSL): the
//!   name ends at the last `)`, blanks around `=` are optional;
//! - `HEX  name` and `HEX *name` (GNU text/binary), `HEX<tab>name`, and the BSD
//!   reversed `HEX name` with one blank (`md5 -r`). As in coreutils, a
//!   manifest is either reversed or not: once one kind of line is seen, the
//!   other kind is improperly formatted, so a name cannot gain or lose a
//!   leading blank depending on the line.
//!
//! parsum also skips the armor of a PGP clear-signed manifest (the header
//! up to its blank line, and the signature block) and undoes its dash
//! escaping; coreutils counts those lines as improperly formatted. The
//! signature is not verified.
//!
//! A manifest named `-` is standard input, for every reader (`-c`,
//! `--audit`, `--verify`): [`open_input`] opens it and [`label`] names it
//! in messages. [`at_line`] names one of its lines, in coreutils' form.
//!
//! Names are bytes throughout; escaping lives in [`crate::escape`].

use std::io::{self, BufRead, Read};
use std::path::Path;

use crate::escape::{escape_name, quote, quote_bytes, unescape_name, Escape};
use crate::hash::{Algo, AlgoSet, Digest};

/// A manifest (or `--verify`'s STATE), opened: standard input, or a file
/// with its metadata (never a directory).
pub enum Input {
    Stdin(io::Stdin),
    File(std::fs::File, std::fs::Metadata),
}

/// Opens the manifest or state `path`: standard input for `-`; a directory
/// is `EISDIR` ([`crate::stdio::open_input_with`]).
pub fn open_input(path: &Path) -> io::Result<Input> {
    if crate::stdio::is_dash(path) {
        return Ok(Input::Stdin(crate::stdio::stdin()?));
    }
    let (file, meta) = crate::stdio::open_input_with(path, std::fs::OpenOptions::new().read(true))?;
    Ok(Input::File(file, meta))
}

/// Opens a manifest for streaming ([`open_input`]).
pub fn open_manifest(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    const BUF: usize = 64 * 1024;
    Ok(match open_input(path)? {
        Input::Stdin(s) => Box::new(io::BufReader::with_capacity(BUF, s)),
        Input::File(f, _) => Box::new(io::BufReader::with_capacity(BUF, f)),
    })
}

/// How messages name the manifest at `path`: `'standard input'` for `-`,
/// as coreutils does.
pub fn label(path: &Path) -> String {
    if crate::stdio::is_dash(path) {
        quote_bytes(b"standard input")
    } else {
        quote(path)
    }
}

/// Names line `no` (from 1) of the input file `label` (as [`label`] gives
/// it) in a message: `FILE: LINE`, the form coreutils gives a position
/// (`sha256sum -c -w`: `SUMS: 3: improperly formatted SHA256 checksum
/// line`). The one home of that form: every reader of lines (`-c`,
/// `--audit`, `--update`'s and `--verify`'s STATE, and their MPI merges)
/// names a line through it, as `parsum: FILE: LINE: what`.
pub fn at_line(label: &str, no: u64) -> String {
    format!("{label}: {no}")
}

/// The longest line a manifest or a state may have: a path of 4000 nested
/// directories is 10-100 KiB even as JSON; a line with no end (`/dev/zero`,
/// a binary file) is not read into memory. Every reader of manifest and
/// state lines (`-c`, `--audit`, `--update`, `--verify`, and their MPI
/// ranges) reads through [`read_line`].
pub const MAX_LINE: usize = 16 << 20;

/// The error of a line longer than [`MAX_LINE`] (see [`is_too_long`]).
#[derive(Debug)]
struct LineTooLong;

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a line longer than {} MiB", MAX_LINE >> 20)
    }
}

impl std::error::Error for LineTooLong {}

/// The terminator of manifest lines: NUL under `-z`, else newline. Read
/// with [`read_line`] and parsed by a [`LineParser`] made for it.
pub fn line_end(zero: bool) -> u8 {
    if zero {
        b'\0'
    } else {
        b'\n'
    }
}

/// Reads the next line ending in `sep` (or at the end of input) into `raw`,
/// cleared first, without its terminator; `Ok(false)` at the end of input.
/// A line longer than [`MAX_LINE`] is an error ([`is_too_long`]), read no
/// further than that: the input is then no manifest. One CR before the
/// terminator does not count (a CRLF manifest's lines are as long as an LF
/// one's: the parser trims it; a NUL-terminated line has no CRLF end, but
/// the slack of one byte is harmless there).
pub fn read_line<R: BufRead + ?Sized>(r: &mut R, sep: u8, raw: &mut Vec<u8>) -> io::Result<bool> {
    raw.clear();
    if (&mut *r).take(MAX_LINE as u64 + 2).read_until(sep, raw)? == 0 {
        return Ok(false);
    }
    if raw.last() == Some(&sep) {
        raw.pop();
    }
    let cr = usize::from(raw.last() == Some(&b'\r'));
    if raw.len() - cr > MAX_LINE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, LineTooLong));
    }
    Ok(true)
}

/// Whether `e` is [`read_line`]'s error for a line longer than [`MAX_LINE`].
pub fn is_too_long(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<LineTooLong>())
}

/// The message (after `parsum: `) for an error of [`read_line`] on line
/// `no` (from 1) of the input file `label`: `FILE: LINE: a line longer than
/// 16 MiB` ([`at_line`]), or `FILE: ` and the OS error.
pub fn read_error(label: &str, e: &io::Error, no: u64) -> String {
    if is_too_long(e) {
        format!("{}: {e}", at_line(label, no))
    } else {
        format!("{label}: {}", crate::hash::os_message(e))
    }
}

/// Appends one GNU line (`HASH  name`) to `out`, terminated by `term`.
pub fn write_gnu(out: &mut Vec<u8>, d: &Digest, name: &[u8], esc: Escape, term: u8) {
    let (escaped, name) = escape_name(name, esc);
    if escaped {
        out.push(b'\\');
    }
    out.extend_from_slice(d.to_hex().as_bytes());
    out.extend_from_slice(b"  ");
    out.extend_from_slice(&name);
    out.push(term);
}

/// Appends one BSD line (`ALGO (name) = HASH`) to `out`.
pub fn write_tag(out: &mut Vec<u8>, d: &Digest, name: &[u8], esc: Escape, term: u8) {
    let (escaped, name) = escape_name(name, esc);
    if escaped {
        out.push(b'\\');
    }
    out.extend_from_slice(d.algo.tag().as_bytes());
    out.extend_from_slice(b" (");
    out.extend_from_slice(&name);
    out.extend_from_slice(b") = ");
    out.extend_from_slice(d.to_hex().as_bytes());
    out.push(term);
}

/// One parsed manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Algorithms the line may be in: one from a BSD tag or a unique hex
    /// length, two for a 64-digit GNU line (BLAKE3 or SHA-256).
    pub algos: AlgoSet,
    /// The hex digest as written (lower-cased).
    pub hex: Vec<u8>,
    /// The file name, unescaped.
    pub name: Vec<u8>,
}

impl Line {
    /// The expected digest for `algo`, if the line allows that algorithm.
    pub fn digest(&self, algo: Algo) -> Option<Digest> {
        if !self.algos.contains(algo) {
            return None;
        }
        Digest::from_hex(algo, &self.hex)
    }
}

/// What one manifest line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A checksum line.
    Line(Line),
    /// A comment, an empty line or PGP armor: skipped silently.
    Skip,
    /// An improperly formatted line.
    Bad,
}

/// Where a PGP clear-signed manifest is (RFC 4880, section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pgp {
    /// Nothing but comments and blank lines so far.
    Start,
    /// Not signed, or past the signature.
    Plain,
    /// Inside the armor headers (`Hash: SHA256`), up to a blank line.
    Header,
    /// The signed text.
    Body,
    /// Inside `BEGIN PGP SIGNATURE` .. `END PGP SIGNATURE`.
    Signature,
}

/// Reads the lines of one manifest, in order. It keeps the little state
/// coreutils keeps across lines (reversed format or not) and the PGP armor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineParser {
    only: Option<Algo>,
    /// Lines end with newlines, so one trailing CR is part of a CRLF line
    /// end, not of the line. Not so with NUL-terminated lines (`-z`),
    /// whose names are written unescaped: a CR there ends a name.
    crlf: bool,
    /// `Some(true)` once a BSD reversed line is seen, `Some(false)` once a
    /// GNU line is (coreutils' `bsd_reversed`).
    reversed: Option<bool>,
    pgp: Pgp,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_hex(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_hexdigit)
}

impl LineParser {
    /// A parser for one manifest whose lines end in `sep` (see
    /// [`line_end`]); `only` restricts the algorithm (`-a`).
    pub fn new(only: Option<Algo>, sep: u8) -> LineParser {
        LineParser {
            only,
            crlf: sep == b'\n',
            reversed: None,
            pgp: Pgp::Start,
        }
    }

    /// Every state a parser for `only` can be in, the new parser's first:
    /// a stretch of a manifest read apart from the lines before it (a
    /// rank's range under MPI) is parsed from each, until the state it
    /// really starts in is known.
    pub fn all_states(only: Option<Algo>, sep: u8) -> Vec<LineParser> {
        let mut all = Vec::new();
        for reversed in [None, Some(false), Some(true)] {
            for pgp in [
                Pgp::Start,
                Pgp::Plain,
                Pgp::Header,
                Pgp::Body,
                Pgp::Signature,
            ] {
                all.push(LineParser {
                    only,
                    crlf: sep == b'\n',
                    reversed,
                    pgp,
                });
            }
        }
        all
    }

    /// Parses one line, given without its terminator.
    pub fn parse(&mut self, raw: &[u8]) -> Parsed {
        // As coreutils: `#` first, then one trailing CR (of a newline
        // terminated line), then emptiness.
        if raw.first() == Some(&b'#') {
            return Parsed::Skip;
        }
        let mut line = match raw.strip_suffix(b"\r") {
            Some(l) if self.crlf => l,
            _ => raw,
        };
        match self.pgp {
            Pgp::Start if line == b"-----BEGIN PGP SIGNED MESSAGE-----" => {
                self.pgp = Pgp::Header;
                return Parsed::Skip;
            }
            Pgp::Header => {
                if line.is_empty() {
                    self.pgp = Pgp::Body;
                }
                return Parsed::Skip;
            }
            Pgp::Body => {
                if line == b"-----BEGIN PGP SIGNATURE-----" {
                    self.pgp = Pgp::Signature;
                    return Parsed::Skip;
                }
                line = line.strip_prefix(b"- ").unwrap_or(line);
            }
            Pgp::Signature => {
                if line == b"-----END PGP SIGNATURE-----" {
                    self.pgp = Pgp::Plain;
                }
                return Parsed::Skip;
            }
            _ => {}
        }
        if line.is_empty() {
            return Parsed::Skip;
        }
        if self.pgp == Pgp::Start {
            self.pgp = Pgp::Plain;
        }
        match self.split(line) {
            Some(l) => Parsed::Line(l),
            None => Parsed::Bad,
        }
    }

    /// coreutils' `split_3`: one non-empty line into algorithms, hex, name.
    fn split(&mut self, s: &[u8]) -> Option<Line> {
        let s = &s[s.iter().position(|&b| !is_blank(b)).unwrap_or(s.len())..];
        let (escaped, s) = match s.strip_prefix(b"\\") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let tag_len = s
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-'))
            .unwrap_or(s.len());
        let (mut algos, hex, raw_name) = match Algo::from_tag(&s[..tag_len]) {
            Some(algo) => {
                let rest = &s[tag_len..];
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                let (hex, name) = split_bsd(rest.strip_prefix(b"(")?)?;
                if hex.len() != algo.digest_len() * 2 {
                    return None;
                }
                (AlgoSet::of(algo), hex, name)
            }
            None => self.split_gnu(s)?,
        };
        if let Some(a) = self.only {
            algos = algos.intersect(AlgoSet::of(a));
        }
        if algos.is_empty() || raw_name.is_empty() {
            return None;
        }
        let name = if escaped {
            unescape_name(raw_name)?
        } else {
            raw_name.to_vec()
        };
        Some(Line {
            algos,
            hex: hex.to_ascii_lowercase(),
            name,
        })
    }

    /// `HEX  name`, `HEX *name`, `HEX<tab>name` or reversed `HEX name`.
    fn split_gnu<'a>(&mut self, s: &'a [u8]) -> Option<(AlgoSet, &'a [u8], &'a [u8])> {
        let end = s.iter().position(|b| !b.is_ascii_hexdigit())?;
        let hex = &s[..end];
        let algos = Algo::candidates_for_hex_len(hex.len());
        if algos.is_empty() || !is_blank(s[end]) {
            return None;
        }
        let rest = &s[end + 1..];
        let reversed = rest.len() == 1 || !matches!(rest.first(), Some(b' ' | b'*'));
        let name = if reversed {
            if self.reversed == Some(false) {
                return None;
            }
            self.reversed = Some(true);
            rest
        } else if self.reversed != Some(true) {
            self.reversed = Some(false);
            &rest[1..]
        } else {
            rest
        };
        Some((algos, hex, name))
    }
}

/// After `TAG (`: `name) = HEX`, the name ending at the last `)`.
fn split_bsd(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let close = s.iter().rposition(|&b| b == b')')?;
    let name = &s[..close];
    let mut rest = &s[close + 1..];
    while let Some((&b, r)) = rest.split_first() {
        if !is_blank(b) {
            break;
        }
        rest = r;
    }
    let mut rest = rest.strip_prefix(b"=")?;
    while let Some((&b, r)) = rest.split_first() {
        if !is_blank(b) {
            break;
        }
        rest = r;
    }
    is_hex(rest).then_some((rest, name))
}

/// Parses one line on its own (no state across lines); `None` unless it is
/// a checksum line. For callers that read a single line.
pub fn parse_line(line: &[u8], only: Option<Algo>) -> Option<Line> {
    match LineParser::new(only, b'\n').parse(line) {
        Parsed::Line(l) => Some(l),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_max_line_bytes_is_read_with_lf_crlf_or_none_and_one_more_is_not() {
        // (what ends the line, whether the input ends there, whether read)
        for (end, last, ok) in [
            (&b"\n"[..], false, true),
            (&b"\r\n"[..], false, true),
            (&b""[..], true, true),
            (&b"\r"[..], true, true),
            (&b"x\n"[..], false, false),
            (&b"x\r\n"[..], false, false),
            (&b"\r\r\n"[..], false, false),
            (&b"x"[..], true, false),
        ] {
            let mut input = vec![b'a'; MAX_LINE];
            input.extend_from_slice(end);
            if !last {
                input.extend_from_slice(b"next\n");
            }
            let mut r = io::Cursor::new(&input);
            let mut raw = Vec::new();
            match (ok, read_line(&mut r, b'\n', &mut raw)) {
                (true, Ok(true)) => {
                    let cr = usize::from(end.starts_with(b"\r"));
                    assert_eq!(raw.len(), MAX_LINE + cr, "{end:?}");
                    let next = read_line(&mut r, b'\n', &mut raw).unwrap();
                    assert_eq!(next, !last, "{end:?}");
                    if next {
                        assert_eq!(raw, b"next", "{end:?}");
                    }
                }
                (false, Err(e)) => assert!(is_too_long(&e), "{end:?}"),
                (ok, got) => panic!("{end:?}: expected ok={ok}, got {got:?}"),
            }
        }
    }
    use crate::hash::hash_bytes;

    #[test]
    fn gnu_line_round_trip() {
        let d = hash_bytes(Algo::Sha256, b"abc");
        let mut out = Vec::new();
        write_gnu(&mut out, &d, b"dir/a\nb", Escape::Backslash, b'\n');
        assert_eq!(out.last(), Some(&b'\n'));
        let l = parse_line(&out[..out.len() - 1], None).unwrap();
        assert_eq!(l.name, b"dir/a\nb");
        assert_eq!(l.algos, AlgoSet::of(Algo::Blake3).with(Algo::Sha256));
        assert_eq!(l.digest(Algo::Sha256), Some(d));
        assert!(parse_line(&out[..out.len() - 1], Some(Algo::Sha256)).is_some());
        assert!(parse_line(&out[..out.len() - 1], Some(Algo::Md5)).is_none());
    }

    #[test]
    fn tag_line_round_trip() {
        for algo in Algo::ALL {
            let d = hash_bytes(algo, b"abc");
            let mut out = Vec::new();
            write_tag(&mut out, &d, b"x) = (y\\", Escape::Backslash, b'\n');
            let l = parse_line(&out[..out.len() - 1], None).unwrap();
            assert_eq!(l.algos, AlgoSet::of(algo));
            assert_eq!(l.name, b"x) = (y\\");
            assert_eq!(l.digest(algo), Some(d));
        }
    }

    #[test]
    fn binary_marker_and_bad_lines() {
        let h = "900150983cd24fb0d6963f7d28e17f72";
        let l = parse_line(format!("{h} *file").as_bytes(), None).unwrap();
        assert_eq!(
            (l.algos, l.name),
            (AlgoSet::of(Algo::Md5), b"file".to_vec())
        );
        for bad in [
            &b""[..],
            b"nothex  file",
            b"abc  file",
            b"MD5 (f) = 12",
            b"\\d41d8cd98f00b204e9800998ecf8427e  a\\q",
        ] {
            assert_eq!(
                parse_line(bad, None),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // `HEX  ` is a reversed line naming " ", as in coreutils.
        assert_eq!(
            parse_line(format!("{h}  ").as_bytes(), None).unwrap().name,
            b" "
        );
    }

    fn lines(manifest: &[u8]) -> Vec<Parsed> {
        let mut p = LineParser::new(None, b'\n');
        manifest
            .split(|&b| b == b'\n')
            .map(|l| p.parse(l))
            .collect()
    }

    const MD5_ABC: &str = "900150983cd24fb0d6963f7d28e17f72";

    fn ok(name: &[u8]) -> Parsed {
        Parsed::Line(Line {
            algos: AlgoSet::of(Algo::Md5),
            hex: MD5_ABC.as_bytes().to_vec(),
            name: name.to_vec(),
        })
    }

    #[test]
    fn crlf_comments_blank_and_leading_blanks() {
        let m = format!(
            "# comment\r\n\r\n{MD5_ABC}  a\r\n \t{MD5_ABC}  b\n  \\{MD5_ABC}  c\\nd\n  \n #x\n"
        );
        let got = lines(m.as_bytes());
        assert_eq!(
            got,
            [
                Parsed::Skip,
                Parsed::Skip,
                ok(b"a"),
                ok(b"b"),
                ok(b"c\nd"),
                Parsed::Bad,
                Parsed::Bad,
                Parsed::Skip
            ]
        );
    }

    #[test]
    fn a_trailing_cr_is_a_line_end_only_between_newlines() {
        let line = format!("{MD5_ABC}  x\r");
        let mut nl = LineParser::new(None, b'\n');
        assert_eq!(nl.parse(line.as_bytes()), ok(b"x"));
        let mut nul = LineParser::new(None, line_end(true));
        assert_eq!(nul.parse(line.as_bytes()), ok(b"x\r"));
        let tag = format!("MD5 (x\r) = {MD5_ABC}");
        assert_eq!(nul.parse(tag.as_bytes()), ok(b"x\r"));
        // Every state a NUL parser can be in keeps it too (MPI ranges; a
        // reversed one takes the second space into the name).
        for mut p in LineParser::all_states(None, b'\0') {
            if let Parsed::Line(l) = p.parse(line.as_bytes()) {
                assert!(l.name.ends_with(b"x\r"), "{:?}", l.name);
            }
        }
    }

    #[test]
    fn openssl_bsd_and_tab_forms() {
        for l in [
            format!("MD5(a b)= {MD5_ABC}"),
            format!("MD5 (a b) = {MD5_ABC}"),
            format!("MD5 (a b)={MD5_ABC}"),
            format!("MD5(a b)=\t{MD5_ABC}"),
        ] {
            assert_eq!(lines(l.as_bytes()), [ok(b"a b")], "{l}");
        }
        assert_eq!(lines(format!("{MD5_ABC}\ta").as_bytes()), [ok(b"a")]);
        assert_eq!(lines(format!("{MD5_ABC}\t a").as_bytes()), [ok(b"a")]);
        assert_eq!(
            lines(format!("MD5 (a) = {MD5_ABC}x").as_bytes()),
            [Parsed::Bad]
        );
    }

    #[test]
    fn bsd_reversed_is_all_or_nothing() {
        let m = format!("{MD5_ABC} a\n{MD5_ABC}  b\n{MD5_ABC} c");
        assert_eq!(lines(m.as_bytes()), [ok(b"a"), ok(b" b"), ok(b"c")]);
        let m = format!("{MD5_ABC}  a\n{MD5_ABC} b");
        assert_eq!(lines(m.as_bytes()), [ok(b"a"), Parsed::Bad]);
        // A one-character name is reversed even after a blank.
        assert_eq!(lines(format!("{MD5_ABC}  ").as_bytes()), [ok(b" ")]);
    }

    #[test]
    fn pgp_clear_signed_manifest() {
        let m = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{MD5_ABC}  a\n- {MD5_ABC}  b\n\
             -----BEGIN PGP SIGNATURE-----\n\niQEz\n=abcd\n-----END PGP SIGNATURE-----\n"
        );
        let got = lines(m.as_bytes());
        let real: Vec<_> = got.iter().filter(|p| **p != Parsed::Skip).collect();
        assert_eq!(real, [&ok(b"a"), &ok(b"b")]);
        // Armor anywhere but at the start is just a bad line.
        let m = format!("{MD5_ABC}  a\n-----BEGIN PGP SIGNED MESSAGE-----");
        assert_eq!(lines(m.as_bytes()), [ok(b"a"), Parsed::Bad]);
    }
}
