//! The manifest line parser on arbitrary bytes: it never panics, whatever
//! it accepts is a well-formed line, and every line parsum writes (GNU and
//! BSD tag, for any name) reads back as the same name and digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parsum::escape::Escape;
use parsum::hash::{hash_bytes, Algo};
use parsum::manifest::{parse_line, write_gnu, write_tag, LineParser, Parsed};

fuzz_target!(|data: &[u8]| {
    // 1. A whole manifest, line by line, with the state across lines.
    let mut p = LineParser::new(None, b'\n');
    for raw in data.split(|&b| b == b'\n') {
        if let Parsed::Line(l) = p.parse(raw) {
            assert!(!l.name.is_empty());
            assert!(!l.algos.is_empty());
            for a in l.algos.iter() {
                assert_eq!(l.hex.len(), a.digest_len() * 2);
                assert!(l.digest(a).is_some());
            }
        }
    }
    // 2. The input as a file name: written, then read back.
    let name = data;
    if name.is_empty() {
        return;
    }
    let algo = Algo::ALL[name.len() % Algo::ALL.len()];
    let d = hash_bytes(algo, name);
    for tag in [false, true] {
        let mut line = Vec::new();
        if tag {
            write_tag(&mut line, &d, name, Escape::Backslash, b'\n');
        } else {
            write_gnu(&mut line, &d, name, Escape::Backslash, b'\n');
        }
        assert_eq!(line.pop(), Some(b'\n'));
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
        let l = parse_line(&line, Some(algo)).expect("a written line parses");
        assert_eq!(l.name, name, "tag={tag}");
        assert_eq!(l.digest(algo), Some(d));
    }
});
