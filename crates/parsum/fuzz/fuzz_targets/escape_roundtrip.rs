//! Name escaping: unescape(escape(name)) == name for every name; escaped
//! names and stderr quoting never hold a newline or a CR; unescaping
//! arbitrary bytes never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parsum::escape::{escape_name, quote_bytes, unescape_name, Escape};

fuzz_target!(|name: &[u8]| {
    let (escaped, e) = escape_name(name, Escape::Backslash);
    assert!(!e.contains(&b'\n') && !e.contains(&b'\r'));
    assert_eq!(escaped, e.as_ref() != name);
    assert_eq!(unescape_name(&e).as_deref(), Some(name));
    let q = quote_bytes(name);
    assert!(!q.contains(['\n', '\r']));
    let _ = unescape_name(name);
});
