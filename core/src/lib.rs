//! vexfs-core: the one source of truth for vexfs.
//!
//! - [`format`]: the on-disk format v1 (superblock, inodes, extents, directories, journal),
//!   with decoders that validate every field and never panic.
//! - [`crc32c`]: the checksum of every metadata structure.
//! - [`io`]: the block-device trait everything reads and writes through.
//!
//! The kernel module compiles these modules in as source (`#[path]`), so they use only `core`
//! and refer to each other through `crate::`: the module's crate root declares the same names.
#![no_std]
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod crc32c;
pub mod distance;
pub mod error;
pub mod format;
pub mod hnsw;
pub mod io;
#[cfg(feature = "std")]
pub mod mem;
pub mod vindex;
