//! STATE lines (`--update`/`--verify`): parsing arbitrary bytes never
//! panics, and every name written as a state line reads back as the same
//! bytes, with the same metadata and digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parsum::hash::{hash_bytes, Algo, FileHash};
use parsum::output::write_json;
use parsum::state::parse_record;

fuzz_target!(|data: &[u8]| {
    let _ = parse_record(data);
    // A file name is any non-empty bytes without NUL.
    if data.is_empty() || data.contains(&0) {
        return;
    }
    let d = hash_bytes(Algo::Blake3, data);
    let h = FileHash {
        digests: vec![d],
        size: data.len() as u64,
        mtime: -(data.len() as i64),
        mtime_nsec: 999_999_999,
    };
    let mut line = Vec::new();
    write_json(
        &mut line,
        data,
        &d,
        &h,
        Some(u64::MAX),
        Some((i64::MIN, 999_999_999)),
        b'\n',
    );
    assert_eq!(line.pop(), Some(b'\n'));
    assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
    assert!(
        std::str::from_utf8(&line).is_ok(),
        "a state line is UTF-8 JSON"
    );
    let e = parse_record(&line).expect("parsum reads its own state lines");
    assert_eq!(e.line.name, data);
    assert_eq!(e.line.digest(Algo::Blake3), Some(d));
    let m = e.meta.expect("a JSON state line has metadata");
    assert_eq!(
        (m.size, m.mtime, m.mtime_nsec, m.ino, m.ctime),
        (
            h.size,
            h.mtime,
            999_999_999,
            Some(u64::MAX),
            Some((i64::MIN, 999_999_999))
        )
    );
});
