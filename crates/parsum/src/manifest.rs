//! Manifest lines: writing and reading the GNU (`HASH  name`), BSD
//! (`ALGO (name) = HASH`) and b3sum formats, and their name escaping.
//!
//! Escaping follows the tool that will read the manifest back:
//! - coreutils (sha256sum & co.): a name holding `\`, newline or CR is
//!   written with `\\`, `\n`, `\r` and the whole line starts with `\`;
//! - b3sum (1.x) escapes only `\` and newline, and rejects `\r` when it
//!   checks, so BLAKE3 lines leave a CR raw. That keeps
//!   `parsum | b3sum --check` working for every name b3sum can represent.
//!
//! The reader accepts all three escapes in every format. Names are bytes
//! throughout: invalid UTF-8 is written and read back unchanged (with `-z`
//! nothing is escaped at all, as in coreutils).

use crate::hash::{Algo, Digest};

/// Which escaping rules to apply to names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// `\`, newline, CR (coreutils 9).
    Coreutils,
    /// `\`, newline (b3sum).
    B3sum,
    /// Nothing (`-z` output).
    None,
}

impl Escape {
    /// The escaping that the usual checker of `algo` manifests understands.
    pub fn for_algo(algo: Algo) -> Escape {
        match algo {
            Algo::Blake3 => Escape::B3sum,
            _ => Escape::Coreutils,
        }
    }
}

/// Escapes `name`; returns whether anything was escaped (the line then
/// starts with a backslash) and the escaped bytes.
pub fn escape_name(name: &[u8], esc: Escape) -> (bool, std::borrow::Cow<'_, [u8]>) {
    let needs = |b: u8| match esc {
        Escape::Coreutils => matches!(b, b'\\' | b'\n' | b'\r'),
        Escape::B3sum => matches!(b, b'\\' | b'\n'),
        Escape::None => false,
    };
    if !name.iter().any(|&b| needs(b)) {
        return (false, name.into());
    }
    let mut out = Vec::with_capacity(name.len() + 4);
    for &b in name {
        match b {
            b'\\' if needs(b) => out.extend_from_slice(b"\\\\"),
            b'\n' if needs(b) => out.extend_from_slice(b"\\n"),
            b'\r' if needs(b) => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    (true, out.into())
}

/// Reverses [`escape_name`] (any of the styles); `None` for a bad escape.
pub fn unescape_name(name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len());
    let mut it = name.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next()? {
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            _ => return None,
        }
    }
    Some(out)
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
    pub algos: Vec<Algo>,
    /// The hex digest as written (lower-cased).
    pub hex: Vec<u8>,
    /// The file name, unescaped.
    pub name: Vec<u8>,
}

impl Line {
    /// The expected digest for `algo`, if the line allows that algorithm.
    pub fn digest(&self, algo: Algo) -> Option<Digest> {
        if !self.algos.contains(&algo) {
            return None;
        }
        Digest::from_hex(algo, &self.hex)
    }
}

fn is_hex(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_hexdigit)
}

/// Parses one line (without its terminator). `only` restricts the algorithm
/// (from `-a`). Returns `None` for an improperly formatted line.
pub fn parse_line(line: &[u8], only: Option<Algo>) -> Option<Line> {
    let (escaped, rest) = match line.strip_prefix(b"\\") {
        Some(r) => (true, r),
        None => (false, line),
    };
    let parsed = parse_bsd(rest).or_else(|| parse_gnu(rest))?;
    let (mut algos, hex, raw_name) = parsed;
    if let Some(a) = only {
        algos.retain(|&x| x == a);
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

type Parts<'a> = (Vec<Algo>, &'a [u8], &'a [u8]);

/// `TAG (name) = hex`
fn parse_bsd(s: &[u8]) -> Option<Parts<'_>> {
    let open = s.windows(2).position(|w| w == b" (")?;
    let algo = Algo::from_tag(&s[..open])?;
    let close = s.windows(4).rposition(|w| w == b") = ")?;
    if close < open + 2 {
        return None;
    }
    let hex = &s[close + 4..];
    if !is_hex(hex) || hex.len() != algo.digest_len() * 2 {
        return None;
    }
    Some((vec![algo], hex, &s[open + 2..close]))
}

/// `hex  name` or `hex *name` (binary mode marker).
fn parse_gnu(s: &[u8]) -> Option<Parts<'_>> {
    let end = s.iter().position(|b| !b.is_ascii_hexdigit())?;
    let hex = &s[..end];
    let algos = Algo::candidates_for_hex_len(hex.len()).to_vec();
    if algos.is_empty() {
        return None;
    }
    let rest = &s[end..];
    let name = rest
        .strip_prefix(b"  ")
        .or_else(|| rest.strip_prefix(b" *"))?;
    Some((algos, hex, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;

    #[test]
    fn escape_matches_coreutils_and_b3sum() {
        assert_eq!(
            escape_name(b"plain", Escape::Coreutils),
            (false, b"plain"[..].into())
        );
        assert_eq!(escape_name(b"a\nb", Escape::Coreutils).1.as_ref(), b"a\\nb");
        assert_eq!(
            escape_name(b"c\\d", Escape::Coreutils).1.as_ref(),
            b"c\\\\d"
        );
        assert_eq!(escape_name(b"e\rf", Escape::Coreutils).1.as_ref(), b"e\\rf");
        assert_eq!(
            escape_name(b"e\rf", Escape::B3sum),
            (false, b"e\rf"[..].into())
        );
        assert_eq!(escape_name(b"a\n\\", Escape::None).1.as_ref(), b"a\n\\");
    }

    #[test]
    fn unescape_round_trips() {
        for name in [&b"a\nb\\c\rd"[..], b"\\", b"\xff\xfe", b"x"] {
            let (_, e) = escape_name(name, Escape::Coreutils);
            assert_eq!(unescape_name(&e).unwrap(), name);
        }
        assert_eq!(unescape_name(b"bad\\q"), None);
        assert_eq!(unescape_name(b"trailing\\"), None);
    }

    #[test]
    fn gnu_line_round_trip() {
        let d = hash_bytes(Algo::Sha256, b"abc");
        let mut out = Vec::new();
        write_gnu(&mut out, &d, b"dir/a\nb", Escape::Coreutils, b'\n');
        assert_eq!(out.last(), Some(&b'\n'));
        let l = parse_line(&out[..out.len() - 1], None).unwrap();
        assert_eq!(l.name, b"dir/a\nb");
        assert_eq!(l.algos, vec![Algo::Blake3, Algo::Sha256]);
        assert_eq!(l.digest(Algo::Sha256), Some(d));
        assert!(parse_line(&out[..out.len() - 1], Some(Algo::Sha256)).is_some());
        assert!(parse_line(&out[..out.len() - 1], Some(Algo::Md5)).is_none());
    }

    #[test]
    fn tag_line_round_trip() {
        for algo in Algo::ALL {
            let d = hash_bytes(algo, b"abc");
            let mut out = Vec::new();
            write_tag(&mut out, &d, b"x) = (y\\", Escape::Coreutils, b'\n');
            let l = parse_line(&out[..out.len() - 1], None).unwrap();
            assert_eq!(l.algos, vec![algo]);
            assert_eq!(l.name, b"x) = (y\\");
            assert_eq!(l.digest(algo), Some(d));
        }
    }

    #[test]
    fn binary_marker_and_bad_lines() {
        let h = "900150983cd24fb0d6963f7d28e17f72";
        let l = parse_line(format!("{h} *file").as_bytes(), None).unwrap();
        assert_eq!((l.algos, l.name), (vec![Algo::Md5], b"file".to_vec()));
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
        assert!(parse_line(format!("{h}  ").as_bytes(), None).is_none());
    }
}
