//! A simulated spindle (and flash device) as a FUSE file system, to measure
//! how parsum's adaptive reader gate behaves on a device that punishes
//! seeks (issue 12, part 2). These machines have no spinning disk.
//!
//! - [`model`]: the timing model (one head with seeks, or parallel channels);
//! - [`fs`]: the read-only FUSE file system that serves a real tree through it;
//! - [`mount`]: mounting, the checks for FUSE, and the unmounting guard;
//! - [`bench`]: the measurement of parsum and its peers on both devices.
//!
//! The `spindle` binary mounts one device; `spindle_bench` runs the
//! measurement and writes the tables and chart of `docs/parsum-bench.md`.

pub mod bench;
pub mod fs;
pub mod model;
pub mod mount;

pub use model::{Mode, Params};
pub use mount::Mounted;
