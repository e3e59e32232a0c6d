//! parsum, the parallel, device-aware tree checksummer, as a library: the
//! binary (`main.rs`) only calls [`app::run`]. The modules are public so
//! that unit tests, integration tests and fuzz targets reach them; they are
//! not a stable API.
//!
//! A quick tour, in the order a run goes through them:
//! [`cli`] (arguments) → [`config`] (a resolved [`config::Config`] with a
//! [`config::Mode`]) → [`app`] (one run per mode, ending in an
//! [`exit::Exit`]) → [`walk`] (the sorted
//! walk) → [`pipeline`] (a pool per disk group, see [`disks`]; ordered results) → [`hash`]
//! (reading and hashing one file) → [`output`], [`check`], [`audit`],
//! [`update`] or [`verify`] (what is printed). [`state`] reads and
//! replaces the STATE file of the last two. [`manifest`] reads and writes checksum lines, and
//! [`escape`] holds every way a file name is escaped, and [`stdio`] which
//! standard descriptors were closed at start.

// The modules are public for the tests, not as an API: their docs are read
// with `--document-private-items`, where links to their private items
// resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod app;
pub mod audit;
pub mod check;
pub mod cli;
#[cfg(feature = "mpi")]
pub mod cluster;
pub mod config;
pub mod device;
pub mod dirfd;
pub mod disks;
pub mod escape;
pub mod exit;
pub mod hash;
pub(crate) mod interrupt;
pub mod launcher;
pub mod manifest;
pub mod outfile;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod pseudofs;
pub mod state;
pub mod stdio;
pub mod update;
pub mod verify;
pub mod walk;
