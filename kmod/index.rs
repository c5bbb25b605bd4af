//! The per-mount state of the vector index ([`IndexState`], behind `SbInfo::index`): the
//! pinned blocks, the upper-level table, the header kept between operations, and all the
//! memory a search uses, allocated at mount and sized by the documented limits, so nothing is
//! allocated per query. Also [`index_error`], the kernel errno of an index error.

use crate::format::superblock::Superblock;
use crate::format::vector::HnswHeader;
use crate::hnsw::{Cand, EpochVisited, Scratch};
use crate::index_error::IndexError;
use crate::pins::{FpuKernel, KBlocks, PinTable};
use crate::vfs::super_block::Device;
use crate::vindex::{fill_upper_table, IndexScratch, VecIndex};
use kernel::prelude::*;

/// Largest k of one search (`VEXFS_MAX_K` of include/vexfs.h).
pub const MAX_K: usize = 1024;
/// Largest ef_search (`VEXFS_MAX_EF`).
pub const MAX_EF: usize = 4096;
/// ef_search when the caller passes 0: max(k, this).
pub const DEFAULT_EF: usize = 64;

/// The index of one mounted filesystem and all the memory its operations use.
pub struct IndexState {
    /// The vector regions' blocks, pinned once read.
    pub pins: PinTable,
    /// First upper-level record of each slot (`capacity + 1` entries).
    pub upper: KVVec<u32>,
    /// The HNSW header as the last operation left it.
    pub header: HnswHeader,
    /// Where the next free-slot search starts.
    pub hint: u64,
    /// The visited set (2 bytes per slot).
    pub visited: EpochVisited<KVVec<u16>>,
    /// The HNSW candidate pool.
    pub pool: KVVec<Cand>,
    /// HNSW link scratch.
    pub work: KVec<u32>,
    /// Bounce buffers for vectors that cross a block.
    pub bounce: KVVec<u32>,
    /// Search results `(key, slot)`.
    pub results: KVVec<(u32, u32)>,
    /// The distance kernel.
    pub kernel: FpuKernel,
}

impl IndexState {
    /// Builds the state at mount: the upper table, the header (checked), the scratch memory.
    /// Errors: `EUCLEAN` (corrupt header, logged), `EIO`, `ENOMEM`.
    pub fn new(dev: &Device, disk: &Superblock) -> Result<IndexState> {
        let cap = usize::try_from(disk.vec_capacity).map_err(|_| EINVAL)?;
        let mut upper = KVVec::from_elem(0u32, cap + 1, GFP_KERNEL)?;
        fill_upper_table(disk, upper.as_mut_slice()).map_err(|e| dev.report(e))?;
        let kernel = FpuKernel::detect();
        pr_info!("distance kernel {}\n", if kernel.imp() == 2 { "avx2+fma" } else { "sse2" });
        let pins = PinTable::new(disk)?;
        let blocks = KBlocks { dev, pins: &pins };
        let header = VecIndex::open(&blocks, disk, upper.as_slice(), &kernel).map_err(|e| index_error(dev, e))?.header;
        let pool_len = MAX_EF.max(disk.hnsw_ef_construction as usize);
        Ok(IndexState {
            pins,
            upper,
            header,
            hint: 0,
            visited: EpochVisited::new(KVVec::from_elem(0u16, cap, GFP_KERNEL)?),
            pool: KVVec::from_elem(Cand::default(), pool_len, GFP_KERNEL)?,
            work: KVec::from_elem(0u32, Scratch::work_len(disk.hnsw_m), GFP_KERNEL)?,
            bounce: KVVec::from_elem(0u32, IndexScratch::bounce_len(disk.vec_stride), GFP_KERNEL)?,
            results: KVVec::from_elem((0u32, 0u32), MAX_K, GFP_KERNEL)?,
            kernel,
        })
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
