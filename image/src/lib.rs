//! vexfs-image: the userspace side of vexfs, shared by `mkfs.vexfs`, `fsck.vexfs` and `vexctl`.
//!
//! Everything here reads and writes the on-disk format through `vexfs-core`; no structure is
//! defined twice.
//!
//! - [`device`]: [`BlockDevice`](vexfs_core::io::BlockDevice) on a file, a block device or memory.
//! - [`Image`]: an opened filesystem: inodes, extents, files, directories, path lookup.
//! - [`mkfs::format`]: writes a new filesystem; [`bulk`] populates a new one from an `.fvecs`
//!   file (`mkfs.vexfs --import`).
//! - [`order`]: the slot order of a bulk load (near rows share blocks).
//! - [`journal`]: the journal as the tools see it (its contents, recovery, the writer's staging).
//! - [`overlay`]: a device whose writes stay in memory (`fsck.vexfs -n` replays into one).
//! - [`fsck`]: checks a filesystem and repairs what can be repaired.
//! - [`exit`]: the exit statuses of the three tools (e2fsprogs' for mkfs and fsck).
//! - [`writer`]: an offline writer (create and unlink files, directories, symlinks, set embeddings) for
//!   tests and tools.
//! - [`vectors`]: the vector index of an image (memory-mapped searches, the writer's block
//!   cache, the memory of index operations).
//! - [`vecfile`]: `.fvecs` / `.ivecs` files (the one reader of the tools, examples and tests);
//!   [`texts`]: the `.jsonl` passages that go with them.
//! - [`sample`]: small populated filesystems for tests.
//! - [`show`]: the region table, byte sizes and UUIDs as the tools print them.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod bits;
pub mod bulk;
pub mod device;
mod dirs;
mod error;
pub mod exit;
pub mod fsck;
mod image;
pub mod journal;
pub mod mkfs;
pub mod order;
pub mod overlay;
pub mod pq_train;
pub mod sample;
pub mod show;
pub mod texts;
pub mod vecfile;
pub mod vectors;
pub mod writer;

pub use device::{FileDevice, MemDevice, ReadCache};
pub use error::{Error, Result};
pub use image::{DirEntry, Image};
pub use vexfs_core;
