//! The byte encoding of what ranks send each other: work items
//! ([`crate::cluster::work::Dir`], [`crate::cluster::work::FileTask`]) and
//! results ([`crate::cluster::record::Record`]).
//!
//! Invariant: decoding what [`Enc`] wrote gives back the same values, and
//! decoding anything else is an `Err` naming what was malformed, never a
//! panic or a silent default. Paths travel as their exact bytes, so names
//! that are not UTF-8 survive. Integers are little-endian; a byte string is
//! its length (u64) and its bytes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::hash::FileStat;

/// A message being written.
#[derive(Default)]
pub struct Enc {
    /// The message so far.
    pub buf: Vec<u8>,
}

impl Enc {
    /// Appends a byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Appends a boolean (one byte).
    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    /// Appends a u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends a u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends an i64.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends a byte string.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
    /// Appends a UTF-8 string.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    /// Appends a path's exact bytes.
    pub fn path(&mut self, p: &Path) {
        self.bytes(p.as_os_str().as_bytes());
    }
    /// Appends a device number (the test hook [`super::devmap::skew`] may
    /// shift it, as another node's numbering would).
    pub fn dev(&mut self, d: u64) {
        self.u64(d.wrapping_add(super::devmap::skew()));
    }
    /// Appends a file's listed stat.
    pub fn stat(&mut self, s: &FileStat) {
        self.dev(s.dev);
        for v in [s.ino, s.nlink, s.size] {
            self.u64(v);
        }
        for v in [s.mtime, s.mtime_nsec, s.ctime, s.ctime_nsec] {
            self.i64(v);
        }
    }
}

/// A message being read.
pub struct Dec<'a> {
    buf: &'a [u8],
}

/// What a malformed message was missing.
pub type WireResult<T> = Result<T, String>;

impl<'a> Dec<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize, what: &str) -> WireResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(format!(
                "malformed message: {what} needs {n} bytes, {} left",
                self.buf.len()
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Reads a byte.
    pub fn u8(&mut self) -> WireResult<u8> {
        Ok(self.take(1, "a byte")?[0])
    }
    /// Reads a boolean.
    pub fn bool(&mut self) -> WireResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("malformed message: {b} is not a boolean")),
        }
    }
    /// Reads a u32.
    pub fn u32(&mut self) -> WireResult<u32> {
        let b = self.take(4, "a u32")?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    /// Reads a u64.
    pub fn u64(&mut self) -> WireResult<u64> {
        let b = self.take(8, "a u64")?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    /// Reads an i64.
    pub fn i64(&mut self) -> WireResult<i64> {
        let b = self.take(8, "an i64")?;
        Ok(i64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    /// Reads a byte string.
    pub fn bytes(&mut self) -> WireResult<&'a [u8]> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| format!("malformed message: length {n}"))?;
        self.take(n, "a byte string")
    }
    /// Reads a UTF-8 string.
    pub fn string(&mut self) -> WireResult<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| "malformed message: text is not UTF-8".into())
    }
    /// Reads a path.
    pub fn path(&mut self) -> WireResult<PathBuf> {
        Ok(PathBuf::from(OsStr::from_bytes(self.bytes()?)))
    }
    /// Reads a file's listed stat.
    pub fn stat(&mut self) -> WireResult<FileStat> {
        Ok(FileStat {
            dev: self.u64()?,
            ino: self.u64()?,
            nlink: self.u64()?,
            size: self.u64()?,
            mtime: self.i64()?,
            mtime_nsec: self.i64()?,
            ctime: self.i64()?,
            ctime_nsec: self.i64()?,
        })
    }
}

/// FNV-1a of `bytes`: the same on every rank and node (not seeded), to
/// pick the rank that owns a key.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut e = Enc::default();
        e.u8(7);
        e.bool(true);
        e.u32(u32::MAX);
        e.i64(-5);
        e.path(Path::new(OsStr::from_bytes(b"a/bad\xffname\n")));
        let st = FileStat {
            dev: 1,
            ino: 2,
            nlink: 3,
            size: u64::MAX,
            mtime: -1,
            mtime_nsec: 999_999_999,
            ctime: i64::MIN,
            ctime_nsec: 1,
        };
        e.stat(&st);
        let mut d = Dec::new(&e.buf);
        assert_eq!(d.u8().unwrap(), 7);
        assert!(d.bool().unwrap());
        assert_eq!(d.u32().unwrap(), u32::MAX);
        assert_eq!(d.i64().unwrap(), -5);
        assert_eq!(d.path().unwrap().as_os_str().as_bytes(), b"a/bad\xffname\n");
        assert_eq!(d.stat().unwrap(), st);
        assert!(d.is_empty());
        // Every truncation is an error, never a panic.
        for cut in 0..e.buf.len() {
            let mut d = Dec::new(&e.buf[..cut]);
            let r = (|| {
                d.u8()?;
                d.bool()?;
                d.u32()?;
                d.i64()?;
                d.path()?;
                d.stat()
            })();
            assert!(r.is_err(), "cut at {cut}");
        }
        assert!(Dec::new(&[2]).bool().is_err());
        let mut huge = Enc::default();
        huge.u64(u64::MAX);
        assert!(Dec::new(&huge.buf).bytes().is_err());
    }
}
