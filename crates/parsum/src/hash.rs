//! Hashing one file: algorithms, digests, and the read loop that notices a
//! file changing underneath it.
//!
//! Invariant: a digest is only ever returned for bytes that match the file's
//! size and mtime as they were both before and after the read. If the file
//! grows, shrinks or is touched while we read it, the result is
//! [`HashError::Changed`], never a digest of a torn read.
//!
//! Files are read with buffered `read(2)` into a per-thread buffer, never
//! mmap: a file truncated under an mmap raises SIGBUS (b3sum and hashdeep
//! crash that way), and on a warm cache the copy costs less than the page
//! faults of a fresh mapping for the small and medium files that dominate
//! trees. Large BLAKE3 files are instead split into aligned subtrees read with
//! `pread(2)` and hashed in parallel on the split pool (see [`Splitter`]),
//! using blake3's `hazmat` API to merge the subtree chaining values.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use digest::Digest as _;

/// The hash algorithms parsum offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algo {
    Blake3,
    Sha256,
    Sha512,
    Sha1,
    Md5,
}

impl Algo {
    /// Every algorithm, in [`AlgoSet`]'s order.
    pub const ALL: [Algo; 5] = [
        Algo::Blake3,
        Algo::Sha256,
        Algo::Sha512,
        Algo::Sha1,
        Algo::Md5,
    ];

    /// The lower-case name used by `-a` and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Blake3 => "blake3",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
            Algo::Sha1 => "sha1",
            Algo::Md5 => "md5",
        }
    }

    /// The upper-case name used by BSD `--tag` lines (as coreutils writes them).
    pub fn tag(self) -> &'static str {
        match self {
            Algo::Blake3 => "BLAKE3",
            Algo::Sha256 => "SHA256",
            Algo::Sha512 => "SHA512",
            Algo::Sha1 => "SHA1",
            Algo::Md5 => "MD5",
        }
    }

    /// Parses a BSD tag (`SHA256`, `BLAKE3`, also `SHA2-256` as some tools write).
    pub fn from_tag(tag: &[u8]) -> Option<Algo> {
        let t = std::str::from_utf8(tag).ok()?.to_ascii_uppercase();
        Some(match t.as_str() {
            "BLAKE3" | "B3" => Algo::Blake3,
            "SHA256" | "SHA2-256" => Algo::Sha256,
            "SHA512" | "SHA2-512" => Algo::Sha512,
            "SHA1" => Algo::Sha1,
            "MD5" => Algo::Md5,
            _ => return None,
        })
    }

    /// Length of the digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algo::Blake3 | Algo::Sha256 => 32,
            Algo::Sha512 => 64,
            Algo::Sha1 => 20,
            Algo::Md5 => 16,
        }
    }

    /// The algorithms whose hex digests have `hex_len` characters. 64 is
    /// ambiguous (BLAKE3 and SHA-256), so it returns both.
    pub fn candidates_for_hex_len(hex_len: usize) -> AlgoSet {
        match hex_len {
            32 => AlgoSet::of(Algo::Md5),
            40 => AlgoSet::of(Algo::Sha1),
            64 => AlgoSet::of(Algo::Blake3).with(Algo::Sha256),
            128 => AlgoSet::of(Algo::Sha512),
            _ => AlgoSet::EMPTY,
        }
    }
}

/// A set of algorithms as a bitset: the digests one read computes, or the
/// algorithms a manifest line allows. `Copy`, so it travels with every file
/// for free. Iterates in [`Algo::ALL`] order (BLAKE3 first).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct AlgoSet(u8);

impl AlgoSet {
    pub const EMPTY: AlgoSet = AlgoSet(0);

    fn bit(a: Algo) -> u8 {
        1 << Algo::ALL.iter().position(|&x| x == a).expect("in ALL")
    }

    /// The set of one algorithm.
    pub fn of(a: Algo) -> AlgoSet {
        AlgoSet(Self::bit(a))
    }

    /// This set and `a`.
    pub fn with(self, a: Algo) -> AlgoSet {
        AlgoSet(self.0 | Self::bit(a))
    }

    pub fn insert(&mut self, a: Algo) {
        self.0 |= Self::bit(a);
    }

    pub fn contains(self, a: Algo) -> bool {
        self.0 & Self::bit(a) != 0
    }

    /// The algorithms in both sets.
    pub fn intersect(self, other: AlgoSet) -> AlgoSet {
        AlgoSet(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The algorithm, if the set holds exactly one.
    pub fn single(self) -> Option<Algo> {
        (self.len() == 1).then(|| self.iter().next().expect("one"))
    }

    pub fn iter(self) -> impl Iterator<Item = Algo> {
        Algo::ALL.into_iter().filter(move |&a| self.contains(a))
    }
}

impl FromIterator<Algo> for AlgoSet {
    fn from_iter<I: IntoIterator<Item = Algo>>(it: I) -> AlgoSet {
        it.into_iter().fold(AlgoSet::EMPTY, AlgoSet::with)
    }
}

impl fmt::Debug for AlgoSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A finished digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub algo: Algo,
    bytes: [u8; 64],
}

impl Digest {
    fn new(algo: Algo, b: &[u8]) -> Digest {
        let mut bytes = [0u8; 64];
        bytes[..b.len()].copy_from_slice(b);
        Digest { algo, bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algo.digest_len()]
    }

    /// Lower-case hex, as every checksum tool prints it.
    pub fn to_hex(self) -> String {
        let mut s = Vec::with_capacity(self.algo.digest_len() * 2);
        self.push_hex(&mut s);
        String::from_utf8(s).expect("hex is ASCII")
    }

    /// Appends [`Digest::to_hex`] to `out`, without a `String` in between.
    pub fn push_hex(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in self.as_bytes() {
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
    }

    /// Parses a hex digest of `algo` (either case).
    pub fn from_hex(algo: Algo, hex: &[u8]) -> Option<Digest> {
        if hex.len() != algo.digest_len() * 2 {
            return None;
        }
        let val = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 64];
        for (i, pair) in hex.chunks(2).enumerate() {
            out[i] = val(pair[0])? << 4 | val(pair[1])?;
        }
        Some(Digest::new(algo, &out[..algo.digest_len()]))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo, self.to_hex())
    }
}

/// A running hash of one algorithm.
pub enum Hasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
}

impl Hasher {
    pub fn new(algo: Algo) -> Hasher {
        match algo {
            Algo::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algo::Md5 => Hasher::Md5(md5::Md5::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Blake3(h) => {
                h.update(data);
            }
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    pub fn finalize(self) -> Digest {
        match self {
            Hasher::Blake3(h) => Digest::new(Algo::Blake3, h.finalize().as_bytes()),
            Hasher::Sha256(h) => Digest::new(Algo::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::new(Algo::Sha512, &h.finalize()),
            Hasher::Sha1(h) => Digest::new(Algo::Sha1, &h.finalize()),
            Hasher::Md5(h) => Digest::new(Algo::Md5, &h.finalize()),
        }
    }
}

/// Hashes a byte slice (for tests and known answers).
#[cfg_attr(not(test), allow(dead_code))]
pub fn hash_bytes(algo: Algo, data: &[u8]) -> Digest {
    let mut h = Hasher::new(algo);
    h.update(data);
    h.finalize()
}

/// What we know about a file after hashing it.
#[derive(Debug, Clone)]
pub struct FileHash {
    /// One digest per requested algorithm, in the requested order.
    pub digests: Vec<Digest>,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
}

/// Why a file has no digest.
#[derive(Debug)]
pub enum HashError {
    /// open/read/stat failed; the OS error says why.
    Io(io::Error),
    /// The path is not a regular file (a FIFO, socket, device or directory);
    /// it was not read.
    NotRegular(&'static str),
    /// Size or mtime differed before and after the read, or the read came
    /// short of the size.
    Changed(String),
    /// A pseudo-file that never ends (`/proc/kcore`, `trace_pipe`); not read.
    Unbounded(&'static str),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::Io(e) => f.write_str(&os_message(e)),
            // coreutils' wording for the one kind it reports too.
            HashError::NotRegular("directory") => f.write_str("Is a directory"),
            HashError::NotRegular(kind) => write!(f, "is a {kind}, not a regular file; not read"),
            HashError::Changed(why) => write!(f, "changed during read ({why})"),
            HashError::Unbounded(fs) => write!(f, "an endless {fs} file; not read"),
        }
    }
}

/// An I/O error as coreutils words it: `No such file or directory`, without
/// Rust's ` (os error 2)` suffix.
pub fn os_message(e: &io::Error) -> String {
    let s = e.to_string();
    match e.raw_os_error() {
        Some(code) => s
            .strip_suffix(&format!(" (os error {code})"))
            .map(str::to_string)
            .unwrap_or(s),
        None => s,
    }
}

impl From<io::Error> for HashError {
    fn from(e: io::Error) -> Self {
        HashError::Io(e)
    }
}

/// Names a non-regular file type for messages.
pub fn kind_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// [`kind_name`] for a file type from `fstatat`.
pub fn kind_of_type(ft: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType as T;
    match ft {
        T::Directory => "directory",
        T::Fifo => "FIFO",
        T::Socket => "socket",
        T::BlockDevice => "block device",
        T::CharacterDevice => "character device",
        T::Symlink => "symbolic link",
        _ => "special file",
    }
}

/// Size of the per-thread read buffer. Large enough for BLAKE3 to hash many
/// chunks per call with SIMD, small enough to stay in L2.
const BUF_LEN: usize = 256 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; BUF_LEN]);
}

/// Options for [`hash_file`].
#[derive(Clone, Copy, Default)]
pub struct HashOpts<'a> {
    /// Refuse to open through a symbolic link (the walk saw a regular file
    /// and did not follow links; this closes the race with a swapped-in link).
    pub no_follow: bool,
    /// Splits large BLAKE3 files across threads, if set.
    pub splitter: Option<&'a Splitter>,
    /// The directory the file is in: open its last path component relative
    /// to it (`openat`), not the whole path.
    pub dir: Option<&'a std::os::fd::OwnedFd>,
    /// What the walk's `lstat` saw. When given, it is the "before" of the
    /// before/after comparison, which saves one `fstat` per file; a change
    /// between the walk and the read is then reported too.
    pub listed: Option<FileStat>,
}

/// What parsum keeps of a `stat`: the file's identity (dev, inode), its
/// link count, and its version (size, mtime). One type for the walk's
/// listing, the pipeline's items and the before/after check of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// The inode change time: moves with every write, rename, chmod or
    /// link, and cannot be set from user space (`--update` compares it
    /// before it carries a hash over to a path of another entry).
    pub ctime: i64,
    pub ctime_nsec: i64,
}

impl FileStat {
    pub fn of(m: &std::fs::Metadata) -> FileStat {
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            size: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        }
    }

    /// From `fstatat`, whose field types differ between architectures (the
    /// casts are no-ops on some).
    #[allow(clippy::unnecessary_cast)]
    pub fn of_stat(st: &rustix::fs::Stat) -> FileStat {
        FileStat {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            size: st.st_size as u64,
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as i64,
            ctime: st.st_ctime as i64,
            ctime_nsec: st.st_ctime_nsec as i64,
        }
    }
}

/// Opens and hashes `path` with each of `algos` in one read.
pub fn hash_file(path: &Path, algos: AlgoSet, opts: HashOpts<'_>) -> Result<FileHash, HashError> {
    hash_file_with_hook(path, algos, opts, &mut |_| {})
}

/// [`hash_file`], calling `between_reads(bytes_so_far)` after every read.
/// Tests use the hook to change the file mid-read.
pub fn hash_file_with_hook(
    path: &Path,
    algos: AlgoSet,
    opts: HashOpts<'_>,
    between_reads: &mut dyn FnMut(u64),
) -> Result<FileHash, HashError> {
    // O_NONBLOCK: opening a FIFO for reading must never block. It has no
    // effect on regular files, and we refuse anything else right after fstat.
    use rustix::fs::{Mode, OFlags};
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if opts.no_follow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = match (opts.dir, path.file_name()) {
        (Some(dir), Some(name)) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        _ => rustix::fs::open(path, flags, Mode::empty()),
    };
    let file = File::from(fd.map_err(io::Error::from)?);
    let before = match opts.listed {
        Some(l) => l,
        None => {
            let m = file.metadata()?;
            if !m.file_type().is_file() {
                return Err(HashError::NotRegular(kind_name(m.file_type())));
            }
            FileStat::of(&m)
        }
    };
    if let Some(fs) = crate::pseudofs::of_fd(&file, before.dev) {
        return hash_pseudo(&file, path, fs, algos, before, between_reads);
    }
    let size = before.size;
    let split = match opts.splitter {
        Some(s) if algos == AlgoSet::of(Algo::Blake3) && s.should_split(size) => Some(s),
        _ => None,
    };
    let (digests, read) = match split {
        Some(s) => (vec![s.hash(&file, size)?], size),
        None if size == 0 => read_all(&file, algos, ReadTo::Eof, between_reads)?,
        None => read_all(&file, algos, ReadTo::Size(size), between_reads)?,
    };
    let after_meta = file.metadata()?;
    if !after_meta.file_type().is_file() {
        // Only possible with `listed`: something else took the name after
        // the walk. O_NONBLOCK kept a FIFO from blocking, and the read
        // stopped at the listed size.
        return Err(HashError::NotRegular(kind_name(after_meta.file_type())));
    }
    let after = FileStat::of(&after_meta);
    if (after.dev, after.ino) != (before.dev, before.ino) {
        return Err(HashError::Changed("replaced by another file".into()));
    }
    if after.size != size {
        return Err(HashError::Changed(format!(
            "size {} -> {}",
            size, after.size
        )));
    }
    if (after.mtime, after.mtime_nsec) != (before.mtime, before.mtime_nsec) {
        return Err(HashError::Changed("mtime changed".into()));
    }
    // A zero size with data is a pseudo-file (procfs): accept what was read.
    if read != size && size != 0 {
        return Err(HashError::Changed(format!("read {read} of {size} bytes")));
    }
    Ok(FileHash {
        digests,
        size: if size == 0 { read } else { size },
        mtime: before.mtime,
        mtime_nsec: before.mtime_nsec as u32,
    })
}

/// Hashes standard input (`-`); a stdin closed at start (`<&-`) is an
/// EBADF error, not an empty input (see `stdio.rs`).
pub fn hash_stdin(algos: AlgoSet) -> Result<FileHash, HashError> {
    let stdin = crate::stdio::stdin().map_err(HashError::Io)?;
    let mut lock = stdin.lock();
    hash_reader(&mut lock, algos)
}

/// Hashes everything `r` yields (standard input for `-`), with each of `algos`.
pub fn hash_reader(r: &mut dyn Read, algos: AlgoSet) -> Result<FileHash, HashError> {
    let mut hashers: Vec<Hasher> = algos.iter().map(Hasher::new).collect();
    let mut read: u64 = 0;
    BUF.with(|buf| -> Result<(), HashError> {
        let mut buf = buf.borrow_mut();
        loop {
            let n = match r.read(&mut buf[..]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HashError::Io(e)),
            };
            for h in &mut hashers {
                h.update(&buf[..n]);
            }
            read += n as u64;
        }
    })?;
    Ok(FileHash {
        digests: hashers.into_iter().map(Hasher::finalize).collect(),
        size: read,
        mtime: 0,
        mtime_nsec: 0,
    })
}

/// Hashes a file on a pseudo file system (see `pseudofs.rs`): read to EOF
/// whatever its size says, and checked for change by inode and times.
fn hash_pseudo(
    file: &File,
    path: &Path,
    fs: crate::pseudofs::PseudoFs,
    algos: AlgoSet,
    listed: FileStat,
    between_reads: &mut dyn FnMut(u64),
) -> Result<FileHash, HashError> {
    let name = path
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or(b"");
    if crate::pseudofs::unbounded(fs, name) {
        return Err(HashError::Unbounded(fs.name()));
    }
    let before = file.metadata()?;
    if !before.file_type().is_file() {
        return Err(HashError::NotRegular(kind_name(before.file_type())));
    }
    let id = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let times = |m: &std::fs::Metadata| (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
    if id(&before) != (listed.dev, listed.ino) {
        return Err(HashError::Changed("replaced by another file".into()));
    }
    let (digests, read) = read_all(file, algos, ReadTo::Eof, between_reads)?;
    let after = file.metadata()?;
    if id(&after) != id(&before) {
        return Err(HashError::Changed("replaced by another file".into()));
    }
    if times(&after) != times(&before) {
        return Err(HashError::Changed("modified during the read".into()));
    }
    Ok(FileHash {
        digests,
        size: read,
        mtime: before.mtime(),
        mtime_nsec: before.mtime_nsec() as u32,
    })
}

/// How far [`read_all`] reads.
#[derive(Clone, Copy)]
enum ReadTo {
    /// The size the file had before: a growth shows in the fstat after,
    /// and this saves the final zero-length read per file.
    Size(u64),
    /// End of file, for pseudo-files; at most [`crate::pseudofs::MAX_PSEUDO_READ`].
    Eof,
}

/// Reads `file` to its expected `size` (or EOF for pseudo-files of size 0)
/// and returns the digests and the number of bytes read.
fn read_all(
    mut file: &File,
    algos: AlgoSet,
    to: ReadTo,
    between_reads: &mut dyn FnMut(u64),
) -> Result<(Vec<Digest>, u64), HashError> {
    let mut hashers: Vec<Hasher> = algos.iter().map(Hasher::new).collect();
    let mut read: u64 = 0;
    BUF.with(|buf| -> Result<(), HashError> {
        let mut buf = buf.borrow_mut();
        loop {
            match to {
                ReadTo::Size(size) if read >= size => break,
                ReadTo::Eof if read > crate::pseudofs::MAX_PSEUDO_READ => {
                    return Err(HashError::Changed(format!(
                        "still going after {} bytes; a pseudo-file without end?",
                        crate::pseudofs::MAX_PSEUDO_READ
                    )))
                }
                _ => {}
            }
            let n = match file.read(&mut buf[..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HashError::Io(e)),
            };
            for h in &mut hashers {
                h.update(&buf[..n]);
            }
            read += n as u64;
            between_reads(read);
        }
        Ok(())
    })?;
    Ok((hashers.into_iter().map(Hasher::finalize).collect(), read))
}

/// Hashes one large BLAKE3 file in parallel: the file is cut into aligned
/// subtrees of `leaf` bytes (a power of two of chunks, so each is a complete
/// subtree of BLAKE3's left-balanced tree), each read with `pread` and
/// hashed to a chaining value on the split pool, and the values are merged
/// along the tree with `hazmat::merge_subtrees_*`.
pub struct Splitter {
    /// Started on first use: most runs never split a file.
    pool: std::sync::OnceLock<parpool::ThreadPool>,
    threads: usize,
    /// Files at least this large are split.
    pub threshold: u64,
    /// Subtree size; a power of two, at least one BLAKE3 chunk.
    pub leaf: u64,
}

impl Splitter {
    pub fn new(threads: usize, threshold: u64, leaf: u64) -> Splitter {
        assert!(leaf.is_power_of_two() && leaf >= blake3::CHUNK_LEN as u64);
        Splitter {
            pool: std::sync::OnceLock::new(),
            threads: threads.max(1),
            threshold,
            leaf,
        }
    }

    fn should_split(&self, size: u64) -> bool {
        size >= self.threshold && size > self.leaf
    }

    /// The BLAKE3 root hash of the first `size` bytes of `file`.
    pub fn hash(&self, file: &File, size: u64) -> Result<Digest, HashError> {
        let leaf = self.leaf;
        let leaves = size.div_ceil(leaf);
        let pool = self
            .pool
            .get_or_init(|| parpool::ThreadPool::with_workers(self.threads));
        let cvs: Vec<Result<[u8; 32], HashError>> = pool.map(
            |i: u64| -> Result<[u8; 32], HashError> {
                use blake3::hazmat::HasherExt;
                let off = i * leaf;
                let len = leaf.min(size - off);
                let mut h = blake3::Hasher::new();
                h.set_input_offset(off);
                BUF.with(|buf| -> Result<(), HashError> {
                    let mut buf = buf.borrow_mut();
                    let mut done = 0u64;
                    while done < len {
                        let want = (len - done).min(buf.len() as u64) as usize;
                        let n = match file.read_at(&mut buf[..want], off + done) {
                            Ok(0) => {
                                return Err(HashError::Changed(format!(
                                    "file ended at {} of {size} bytes",
                                    off + done
                                )))
                            }
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(HashError::Io(e)),
                        };
                        h.update(&buf[..n]);
                        done += n as u64;
                    }
                    Ok(())
                })?;
                Ok(h.finalize_non_root())
            },
            0..leaves,
        );
        let mut cv = Vec::with_capacity(cvs.len());
        for r in cvs {
            cv.push(r?);
        }
        Ok(Digest::new(
            Algo::Blake3,
            merge_root(&cv, leaf, size).as_bytes(),
        ))
    }
}

/// Merges leaf chaining values (leaf `i` covers `[i*leaf, (i+1)*leaf)`) of a
/// `size`-byte input into the root hash. Requires more than one leaf.
fn merge_root(cvs: &[[u8; 32]], leaf: u64, size: u64) -> blake3::Hash {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, Mode};
    // The cv of the subtree covering [off, off+len); len > leaf splits.
    fn cv_of(cvs: &[[u8; 32]], leaf: u64, off: u64, len: u64) -> [u8; 32] {
        if len <= leaf {
            return cvs[(off / leaf) as usize];
        }
        let l = left_subtree_len(len);
        let left = cv_of(cvs, leaf, off, l);
        let right = cv_of(cvs, leaf, off + l, len - l);
        merge_subtrees_non_root(&left, &right, Mode::Hash)
    }
    debug_assert!(size > leaf);
    let l = left_subtree_len(size);
    let left = cv_of(cvs, leaf, 0, l);
    let right = cv_of(cvs, leaf, l, size - l);
    merge_subtrees_root(&left, &right, Mode::Hash)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn hex(algo: Algo, data: &[u8]) -> String {
        hash_bytes(algo, data).to_hex()
    }

    /// Standard vectors: FIPS 180-2 (SHA), RFC 1321 (MD5), BLAKE3 reference.
    #[test]
    fn known_answers_abc() {
        assert_eq!(hex(Algo::Md5, b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(Algo::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(Algo::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(Algo::Sha512, b"abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            hex(Algo::Blake3, b"abc"),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn known_answers_empty() {
        assert_eq!(hex(Algo::Md5, b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            hex(Algo::Sha1, b""),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            hex(Algo::Sha256, b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(Algo::Blake3, b""),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            hex(Algo::Sha512, b""),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
             47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
    }

    /// FIPS 180-2's two-block message.
    #[test]
    fn known_answer_sha256_two_blocks() {
        let m = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(
            hex(Algo::Sha256, m),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn algo_set() {
        let both = Algo::candidates_for_hex_len(64);
        assert_eq!(
            both.iter().collect::<Vec<_>>(),
            [Algo::Blake3, Algo::Sha256]
        );
        assert_eq!((both.len(), both.single()), (2, None));
        assert_eq!(
            both.intersect(AlgoSet::of(Algo::Sha256)).single(),
            Some(Algo::Sha256)
        );
        assert!(both.intersect(AlgoSet::of(Algo::Md5)).is_empty());
        let all: AlgoSet = Algo::ALL.into_iter().collect();
        assert_eq!(all.iter().collect::<Vec<_>>(), Algo::ALL);
        assert!(Algo::candidates_for_hex_len(7).is_empty());
    }

    #[test]
    fn hex_round_trip() {
        for a in Algo::ALL {
            let d = hash_bytes(a, b"parsum");
            assert_eq!(Digest::from_hex(a, d.to_hex().as_bytes()), Some(d));
            assert_eq!(
                Digest::from_hex(a, d.to_hex().to_uppercase().as_bytes()),
                Some(d)
            );
        }
        assert_eq!(Digest::from_hex(Algo::Md5, b"zz"), None);
    }

    fn temp_file(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::File::create(&p).unwrap().write_all(data).unwrap();
        (dir, p)
    }

    #[test]
    fn file_matches_bytes_for_every_algo() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_d, p) = temp_file(&data);
        let got = hash_file(&p, Algo::ALL.into_iter().collect(), HashOpts::default()).unwrap();
        for (a, d) in Algo::ALL.iter().zip(&got.digests) {
            assert_eq!(*d, hash_bytes(*a, &data), "{a}");
        }
        assert_eq!(got.size, data.len() as u64);
    }

    /// A file truncated while it is being read is reported, not hashed.
    #[test]
    fn truncated_during_read_is_changed() {
        let data = vec![7u8; 4 * BUF_LEN];
        let (_d, p) = temp_file(&data);
        let p2 = p.clone();
        let mut hook = move |read: u64| {
            if read == BUF_LEN as u64 {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p2)
                    .unwrap()
                    .set_len(100)
                    .unwrap();
            }
        };
        let err = hash_file_with_hook(
            &p,
            AlgoSet::of(Algo::Blake3),
            HashOpts::default(),
            &mut hook,
        )
        .unwrap_err();
        assert!(matches!(err, HashError::Changed(_)), "{err}");
        assert!(err.to_string().starts_with("changed during read"));
    }

    /// A file that grows during the read is reported too.
    #[test]
    fn grown_during_read_is_changed() {
        let data = vec![1u8; 2 * BUF_LEN];
        let (_d, p) = temp_file(&data);
        let p2 = p.clone();
        let mut hook = move |read: u64| {
            if read == BUF_LEN as u64 {
                let mut f = std::fs::OpenOptions::new().append(true).open(&p2).unwrap();
                f.write_all(b"more").unwrap();
            }
        };
        let err = hash_file_with_hook(
            &p,
            AlgoSet::of(Algo::Sha256),
            HashOpts::default(),
            &mut hook,
        )
        .unwrap_err();
        assert!(matches!(err, HashError::Changed(_)), "{err}");
    }

    /// Runs `f` on a thread and fails the test if it takes over 30 s.
    pub(crate) fn within_30s<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("test timed out (hang?)")
    }

    #[test]
    fn fifo_is_not_opened_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A blocking open of a FIFO without writer would hang: guard it.
        let err = within_30s(move || {
            hash_file(&p, AlgoSet::of(Algo::Blake3), HashOpts::default()).unwrap_err()
        });
        assert!(matches!(err, HashError::NotRegular("FIFO")), "{err}");
    }

    /// With the walk's listing as "before": a change after the listing is
    /// caught, and a FIFO swapped in under the name is refused, not awaited.
    #[test]
    fn listed_before_is_checked() {
        let (d, p) = temp_file(b"first");
        let listed = FileStat::of(&std::fs::metadata(&p).unwrap());
        let opts = HashOpts {
            listed: Some(listed),
            ..Default::default()
        };
        assert!(hash_file(&p, AlgoSet::of(Algo::Md5), opts).is_ok());
        std::fs::write(&p, b"second, longer").unwrap();
        let err = hash_file(&p, AlgoSet::of(Algo::Md5), opts).unwrap_err();
        assert!(matches!(err, HashError::Changed(_)), "{err}");
        std::fs::remove_file(&p).unwrap();
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = within_30s(move || hash_file(&p, AlgoSet::of(Algo::Md5), opts).unwrap_err());
        assert!(matches!(err, HashError::NotRegular("FIFO")), "{err}");
        drop(d);
    }

    /// The split hash equals the plain hash for sizes around leaf boundaries.
    #[test]
    fn split_blake3_matches_plain() {
        let leaf = 8 * 1024u64;
        let s = Splitter::new(3, 0, leaf);
        for size in [
            leaf + 1,
            2 * leaf,
            2 * leaf + 1,
            3 * leaf - 1,
            5 * leaf + 17,
            16 * leaf,
            33 * leaf + 1023,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
            let (_d, p) = temp_file(&data);
            let opts = HashOpts {
                splitter: Some(&s),
                ..Default::default()
            };
            let got = hash_file(&p, AlgoSet::of(Algo::Blake3), opts).unwrap();
            assert_eq!(
                got.digests[0],
                hash_bytes(Algo::Blake3, &data),
                "size {size}"
            );
        }
    }
}
