//! Block I/O: the two small traits every user of the format reads and writes through.
//!
//! - [`BlockStore`]: blocks borrowed in place from a cache, for the structures that are changed
//!   a few bytes at a time (the vector index, chunk lists). The kernel implements it over the
//!   buffer cache (`kmod/pins.rs`); the tools over a read-only mmap of an image or over a
//!   write-back cache of a [`BlockDevice`] (`vexfs-image`). Every change to the index goes
//!   through [`BlockStore::write`]: that is where the journal will log block images.
//! - [`BlockDevice`]: whole blocks copied in and out of a file or device: the tools' raw
//!   access to an image (`vexfs-image`'s `Image`). The kernel does not use it: its device is
//!   the buffer cache.
//!
//! Blocks are [`BLOCK_SIZE`] bytes; block `n` is bytes `n * 4096 .. (n + 1) * 4096` of the
//! device.

use crate::format::BLOCK_SIZE;
use core::ops::{Deref, DerefMut};

/// One whole block.
pub type Block = [u8; BLOCK_SIZE];

/// A device of fixed-size blocks, read and written by copy (userspace images).
pub trait BlockDevice {
    /// The implementation's I/O error (`std::io::Error` in userspace).
    type Error;

    /// Size of the device in whole blocks (a partial last block does not count).
    fn block_count(&self) -> u64;

    /// Reads block `n` into `buf`. Errors: the device's error, also for `n >= block_count()`.
    fn read_block(&self, n: u64, buf: &mut Block) -> Result<(), Self::Error>;

    /// Writes `buf` to block `n`. Errors: the device's error, also for `n >= block_count()`.
    fn write_block(&mut self, n: u64, buf: &Block) -> Result<(), Self::Error>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), Self::Error>;
}

/// Blocks borrowed in place: `read` and `write` hand out the block's [`BLOCK_SIZE`] bytes; a
/// block borrowed by `write` counts as changed (the kernel marks its buffer dirty when the
/// borrow ends, the tools' cache writes it back later). Callers never hold a `write` borrow
/// of a block together with any other borrow of the same block.
pub trait BlockStore {
    /// The store's error (the kernel's `Error`, the tools' error type).
    type Error;
    /// A block borrowed for reading.
    type Ref<'a>: Deref<Target = [u8]>
    where
        Self: 'a;
    /// A block borrowed for changing.
    type RefMut<'a>: DerefMut<Target = [u8]>
    where
        Self: 'a;
    /// Block `n`, for reading. Errors: the store's (I/O, `n` outside what it holds).
    fn read(&self, n: u64) -> Result<Self::Ref<'_>, Self::Error>;
    /// Block `n`, for changing. Errors: as [`Self::read`]; a read-only store refuses.
    fn write(&self, n: u64) -> Result<Self::RefMut<'_>, Self::Error>;
    /// A hint that block `n` will be read soon: the kernel starts reading it into the cache
    /// if it is not there (the neighbours of a node being expanded). Nothing by default.
    fn prefetch(&self, _n: u64) {}
    /// A hint that the bytes at `off` in block `n` will be read very soon: a store holding the
    /// block in memory may ask the CPU to bring that cache line in (the record of the next node
    /// a graph search expands, as hnswlib prefetches it). Never reads the device; nothing by
    /// default (the kernel's stores).
    fn prefetch_line(&self, _n: u64, _off: usize) {}
    /// The same hint for memory outside the blocks (the index's tables in RAM, such as the
    /// per-slot level table); `p` is only a hint and need not be valid. Nothing by default.
    fn prefetch_memory(&self, _p: *const u8) {}
    /// Bytes `off .. off + len` counted from the start of block `n`, running on into the
    /// blocks after it, as one borrow, when the store holds those blocks next to each other in
    /// memory (the bulk loader's frozen cache: one mapping of the whole vector regions); `None`
    /// otherwise, and by default (the kernel's page-cache pages are not contiguous). Used for a
    /// vector that crosses a block boundary (one in four at 384-d), so that a distance reads
    /// it in place; without a span the index holds the two blocks and the distance kernel
    /// reads the vector in its two parts (`DistanceKernel::distances_split`), or, for a query
    /// or a vector longer than a block, copies it block by block.
    fn read_span(&self, _n: u64, _off: usize, _len: usize) -> Option<Self::Ref<'_>> {
        None
    }
    /// Called between the batches of a long loop (the exact scan of pending vectors): the
    /// kernel reschedules there and stops the loop on a fatal signal (its error, `EINTR`).
    /// Nothing by default.
    fn relax(&self) -> Result<(), Self::Error> {
        Ok(())
    }
}
