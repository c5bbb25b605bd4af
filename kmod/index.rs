//! The per-mount state of the vector index ([`IndexState`], behind `SbInfo::index`): the
//! pinned blocks, the distance kernel, and `core::embed`'s per-index memory (the upper-level
//! table, the header kept between operations, and all the memory an operation uses, allocated
//! at mount and sized by the documented limits, so nothing is allocated per query). Also
//! [`index_error`], the kernel errno of an index error.

use crate::embed::{Alloc, IndexMem, MAX_EF};
use crate::format::superblock::Superblock;
use crate::index_error::IndexError;
use crate::pins::{FpuKernel, KBlocks, PinTable};
use crate::vfs::super_block::Device;
use kernel::alloc::AllocError;
use kernel::prelude::*;

/// Kernel memory for `core::embed`: `KVVec`s (kmalloc or vmalloc by size), `GFP_KERNEL`.
pub struct KAlloc;

impl Alloc for KAlloc {
    type Vec<T: Copy> = KVVec<T>;
    type Error = AllocError;
    fn filled<T: Copy>(n: usize, value: T) -> core::result::Result<KVVec<T>, AllocError> {
        KVVec::from_elem(value, n, GFP_KERNEL)
    }
}

/// `core::embed`'s per-index memory in kernel memory.
pub type KIndexMem = IndexMem<KAlloc>;

/// The index of one mounted filesystem and all the memory its operations use.
pub struct IndexState {
    /// The vector regions' blocks, pinned once read.
    pub pins: PinTable,
    /// Upper table, header, scratch, visited set, results, chunk lists.
    pub mem: KIndexMem,
    /// The distance kernel.
    pub kernel: FpuKernel,
}

impl IndexState {
    /// Builds the state at mount: the memory (sized by the superblock and `MAX_EF`), the
    /// header and entry point (checked). Errors: `EUCLEAN` (corrupt header, logged), `EIO`,
    /// `ENOMEM`.
    pub fn new(dev: &Device, disk: &Superblock) -> Result<IndexState> {
        let kernel = FpuKernel::detect();
        pr_info!("distance kernel {}\n", if kernel.imp() == 2 { "avx2+fma" } else { "sse2" });
        let pins = PinTable::new(disk)?;
        let mut mem = KIndexMem::new(disk, MAX_EF).map_err(|e| match e {
            IndexError::Io(AllocError) => ENOMEM,
            IndexError::Corrupt(f) => dev.report(f),
            _ => EINVAL,
        })?;
        mem.open(&KBlocks { dev, pins: &pins, journal: None }, &kernel).map_err(|e| index_error(dev, e))?;
        // Tombstones are purged in steps by the index worker (kmod/vector.rs), never inside
        // the transaction of the removal that makes the purge due.
        mem.set_stepwise_purge(true);
        Ok(IndexState { pins, mem, kernel })
    }
}

/// The errno of an index error on `dev`: the storage's own error as it is; corruption logged
/// and `EUCLEAN`; a broken invariant logged and `EINVAL`; the others their documented errno.
pub fn index_error(dev: &Device, e: IndexError<Error>) -> Error {
    match e {
        IndexError::Io(e) => e,
        IndexError::Corrupt(f) => dev.report(f),
        IndexError::Invalid(what) => {
            pr_warn!("vexfs ({}): vector index: {}\n", dev.name(), what);
            EINVAL
        }
        other => Error::from_errno(-other.errno().unwrap_or(crate::error::EINVAL)),
    }
}
