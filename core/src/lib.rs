//! vexfs-core: the one source of truth for vexfs.
//!
//! - [`format`]: the on-disk format v1 (superblock, inodes, extents, directories, journal,
//!   vector regions), with decoders that validate every field and never panic.
//! - [`crc32c`]: the checksum of every metadata structure.
//! - [`extent_tree`]: a file's extents past its inline ones, as a B+-tree of extent blocks.
//! - [`dir_index`]: indexed directories (buckets by keyed name hash, positions that survive
//!   changes).
//! - [`file_extents`]: a file's whole block map (inline extents, then the tree): map, allocate
//!   into, truncate.
//! - [`io`]: the block traits everything reads and writes through ([`io::BlockStore`] for the
//!   index and chunk lists, [`io::BlockDevice`] for the tools' images).
//! - [`distance`]: the float32 distance kernels (C, run in the kernel between
//!   `kernel_fpu_begin/end`) and their order-preserving integer keys.
//! - [`sq8`]: one signed byte per component (integer-only quantisation), the codes the search
//!   walks the graph on when the filesystem has the `SQ8` feature.
//! - [`hnsw`]: the HNSW algorithms (Malkov & Yashunin 2018) over a storage trait.
//! - [`vindex`]: the on-disk vector index (slots, map, vectors, graph) over [`io::BlockStore`].
//! - [`embed`]: a file's chunks (set, replace, read, remove) and k-NN searches naming files:
//!   the one embedding layer of the kernel and the offline writer.
//! - [`index_error`]: the errors of `vindex` and `embed`, each with its errno.
//! - [`abi`]: the ioctl argument structs of `include/vexfs.h`, shared by the kernel and vexctl.
//! - `mem` (userspace only): an in-memory HNSW index for tests and benchmarks.
//!
//! The kernel module compiles these modules in as source (`#[path]`), so they use only `core`
//! and refer to each other through `crate::`: the module's crate root declares the same names.
#![no_std]
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod abi;
pub mod crc32c;
pub mod dir_index;
pub mod distance;
pub mod embed;
pub mod error;
pub mod extent_tree;
pub mod file_extents;
pub mod format;
pub mod hnsw;
pub mod index_error;
pub mod io;
pub mod journal;
#[cfg(feature = "std")]
pub mod mem;
pub mod pq;
pub mod sq8;
pub mod vindex;
