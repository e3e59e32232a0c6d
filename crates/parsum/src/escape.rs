//! Every way parsum escapes a file name, in one place.
//!
//! A file name is bytes: it may hold a newline, a CR, a backslash or bytes
//! that are not UTF-8. Each place a name is shown has its own rule:
//!
//! - **manifest lines and check/audit results** ([`escape_name`]): `\` ->
//!   `\\`, newline -> `\n`, CR -> `\r`, and the line then starts with a `\`.
//!   This is what coreutils 9 writes, and what b3sum writes since 1.5.5 (it
//!   escapes CR since then). Every other byte, including invalid UTF-8, is
//!   written raw, so a name reads back byte for byte; with `-z` nothing is
//!   escaped ([`Escape::None`]), as in coreutils;
//! - **messages on stderr** ([`quote`]): coreutils' shell-escape quoting
//!   (`'a b'`, `"a'b"`, `'a'$'\n''b'`), so a message is always one line and
//!   matches what `sha256sum` prints for the same name;
//! - **JSON** ([`json_str`]): a JSON string literal.
//!
//! Invariant: `unescape_name(escape_name(n)) == n` for every name `n`
//! (fuzzed by `crates/parsum/fuzz`).

use std::borrow::Cow;
use std::path::Path;

/// Which escaping rules to apply to names in manifest lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// `\`, newline, CR: coreutils 9 and b3sum >= 1.5.5 (all algorithms).
    Backslash,
    /// Nothing (`-z` output).
    None,
}

impl Escape {
    /// The escaping for output lines ending in `term` (`\0` means `-z`).
    pub fn for_terminator(term: u8) -> Escape {
        if term == b'\0' {
            Escape::None
        } else {
            Escape::Backslash
        }
    }
}

/// Escapes `name`; returns whether anything was escaped (the line then
/// starts with a backslash) and the escaped bytes.
pub fn escape_name(name: &[u8], esc: Escape) -> (bool, Cow<'_, [u8]>) {
    if esc == Escape::None || !name.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r')) {
        return (false, name.into());
    }
    let mut out = Vec::with_capacity(name.len() + 4);
    for &b in name {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    (true, out.into())
}

/// Appends `name` escaped with `esc`, preceded by the `\` marker when
/// anything was escaped. For lines that start with the name
/// (`name: OK`, audit reports).
pub fn push_marked_name(out: &mut Vec<u8>, name: &[u8], esc: Escape) {
    let (escaped, n) = escape_name(name, esc);
    if escaped {
        out.push(b'\\');
    }
    out.extend_from_slice(&n);
}

/// Appends a name for a `--check` result line (`name: OK`), as the tool
/// that checks such lines prints it: b3sum (`b3sum_style`) escapes every name
/// holding `\`, newline or CR; coreutils 9 escapes only names holding a
/// newline, and prints any other name raw (a CR included).
pub fn push_check_name(out: &mut Vec<u8>, name: &[u8], esc: Escape, b3sum_style: bool) {
    if b3sum_style || name.contains(&b'\n') {
        push_marked_name(out, name, esc);
    } else {
        out.extend_from_slice(name);
    }
}

/// Reverses [`escape_name`]; `None` for a bad escape (`\q`, a trailing `\`).
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

/// A path for a message on stderr, quoted as coreutils' `quotef` does
/// (shell-escape style): bare when it holds only safe characters, else in
/// single quotes (double quotes if it holds a `'` and nothing else that
/// needs care), with control and non-UTF-8 bytes as `$'\n'` or `$'\377'`.
pub fn quote(p: &Path) -> String {
    quote_bytes(p.as_os_str().as_encoded_bytes())
}

/// [`quote`] for a name given as bytes.
pub fn quote_bytes(name: &[u8]) -> String {
    let safe = |c: char| c.is_alphanumeric() || "%+,-./=@^_".contains(c);
    let text = std::str::from_utf8(name).ok();
    if let Some(s) = text {
        if !s.is_empty() && s.chars().all(safe) && !s.starts_with('~') {
            return s.to_string();
        }
        if !s.chars().any(char::is_control) {
            if s.contains('\'') && !s.contains(['"', '$', '`', '\\', '!']) {
                return format!("\"{s}\"");
            }
            return format!("'{}'", s.replace('\'', "'\\''"));
        }
    }
    // Control characters or invalid UTF-8: runs of printable text in single
    // quotes, the rest as $'...' escapes, concatenated as a shell would.
    let mut out = String::from("'");
    let mut in_dollar = false;
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            let special = c.is_control();
            if special != in_dollar {
                out.push_str(if special { "'$'" } else { "''" });
                in_dollar = special;
            }
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\'' if !in_dollar => out.push_str("'\\''"),
                c if special => out.push_str(&format!("\\{:03o}", c as u32)),
                c => out.push(c),
            }
        }
        if !chunk.invalid().is_empty() {
            if !in_dollar {
                out.push_str("'$'");
                in_dollar = true;
            }
            for b in chunk.invalid() {
                out.push_str(&format!("\\{b:03o}"));
            }
        }
    }
    out.push('\'');
    out
}

/// Appends `s` as a JSON string literal.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_matches_coreutils_and_current_b3sum() {
        fn e(n: &[u8]) -> (bool, Cow<'_, [u8]>) {
            escape_name(n, Escape::Backslash)
        }
        assert_eq!(e(b"plain"), (false, b"plain"[..].into()));
        assert_eq!(e(b"a\nb").1.as_ref(), b"a\\nb");
        assert_eq!(e(b"c\\d").1.as_ref(), b"c\\\\d");
        assert_eq!(e(b"e\rf").1.as_ref(), b"e\\rf");
        assert_eq!(e(b"\xff\xfe"), (false, b"\xff\xfe"[..].into()));
        assert_eq!(escape_name(b"a\n\\", Escape::None).1.as_ref(), b"a\n\\");
    }

    #[test]
    fn unescape_round_trips() {
        for name in [&b"a\nb\\c\rd"[..], b"\\", b"\xff\xfe", b"x", b"\r"] {
            let (_, e) = escape_name(name, Escape::Backslash);
            assert_eq!(unescape_name(&e).unwrap(), name);
        }
        assert_eq!(unescape_name(b"bad\\q"), None);
        assert_eq!(unescape_name(b"trailing\\"), None);
    }

    /// Each expected string is what `sha256sum` 9.1 prints for that name.
    #[test]
    fn quote_like_coreutils_quotef() {
        assert_eq!(quote_bytes(b"x"), "x");
        assert_eq!(quote_bytes(b"dir/a-b_c.txt"), "dir/a-b_c.txt");
        assert_eq!(quote_bytes(b"a b"), "'a b'");
        assert_eq!(quote_bytes(b"a:b"), "'a:b'");
        assert_eq!(quote_bytes(b"a'b"), "\"a'b\"");
        assert_eq!(quote_bytes(b"a\nb"), "'a'$'\\n''b'");
        assert_eq!(quote_bytes(b"standard input"), "'standard input'");
        assert_eq!(quote_bytes(b"a\xffb"), "'a'$'\\377''b'");
        assert!(!quote_bytes(b"x\ry\n").contains(['\n', '\r']));
    }

    #[test]
    fn json_escapes() {
        let mut out = Vec::new();
        json_str(&mut out, "a\"b\\\n\u{1}");
        assert_eq!(out, b"\"a\\\"b\\\\\\n\\u0001\"");
    }
}
