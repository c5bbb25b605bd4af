//! The per-mount state of the vector index ([`IndexState`], behind `SbInfo::index`): the
//! distance kernel, and `core::embed`'s per-index memory (the upper-level
//! table, the header kept between operations, and the memory of the operations that change
//! the index, allocated at mount and sized by the documented limits); the search pads of the
//! searches that run at once ([`PadPool`], made on first need, at most one per CPU, kept until
//! unmount: nothing is allocated per query once they exist). Also [`index_error`], the kernel
//! errno of an index error.

use crate::embed::{Alloc, IndexMem, SearchPad, MAX_EF};
use crate::ffi;
use crate::format::superblock::Superblock;
use crate::index_error::IndexError;
use crate::pins::{FpuKernel, KBlocks, PinTable};

use crate::vfs::super_block::Device;
use kernel::alloc::AllocError;
use kernel::prelude::*;
use kernel::sync::{CondVar, Mutex};

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

/// The memory of one search in kernel memory.
pub type KSearchPad = SearchPad<KAlloc>;

/// Most search pads a mount keeps.
const MAX_PADS: usize = 64;

/// The search pads of one mount: a search takes one before the shared index lock
/// ([`PadPool::take`]) and gives it back when done. Pads are made on demand, up to one per CPU
/// online at mount (at most [`MAX_PADS`]): more searches than that wait for a pad, so the
/// memory stays bounded (a pad is about 2 bytes per vector slot plus the candidate lists,
/// `core::embed::SearchPad`); they are the mount's, freed at unmount, as the index memory is.
#[pin_data]
pub struct PadPool {
    #[pin]
    state: Mutex<Pads>,
    #[pin]
    cv: CondVar,
}

/// The pool's free pads and count.
pub struct Pads {
    /// The pads' candidate pool's length (`IndexMem::search_pool_len`).
    pool_len: usize,
    /// `max` places, each a free pad or none.
    free: KVec<Option<KSearchPad>>,
    /// Pads in existence (free or taken).
    made: usize,
    /// Most pads in existence.
    max: usize,
}

impl PadPool {
    /// An empty pool for the index whose memory is `mem`. Errors: `ENOMEM` (the places of the
    /// free pads are made at once, so that giving a pad back never allocates).
    pub fn new(mem: &KIndexMem) -> Result<impl PinInit<Self>> {
        // SAFETY: a plain read of the online CPU count.
        let cpus = unsafe { ffi::vexfs_c_online_cpus() } as usize;
        let max = cpus.clamp(1, MAX_PADS);
        let mut free = KVec::with_capacity(max, GFP_KERNEL)?;
        for _ in 0..max {
            free.push(None, GFP_KERNEL)?;
        }
        let pads = Pads { pool_len: mem.search_pool_len(), free, made: 0, max };
        Ok(pin_init!(PadPool {
            state <- kernel::new_mutex!(pads, "vexfs::PadPool::state"),
            cv <- kernel::new_condvar!("vexfs::PadPool::cv"),
        }))
    }

    /// A pad for a search of the index of `disk` (the mount's superblock): a free one, else a
    /// new one (while fewer than the most exist), else the next one given back. Taken before the index lock, so that making a pad (a large
    /// allocation, which may reclaim memory and evict an inode of this filesystem, whose
    /// embeddings' removal takes the index lock alone) never happens under it. Errors: `ENOMEM`
    /// when no pad exists and none can be made (when some exist, the search waits for one).
    pub fn take(&self, disk: &Superblock) -> Result<PadRef<'_>> {
        let mut g = self.state.lock();
        // False after a pad could not be made while others exist: wait for one of those.
        let mut may_make = true;
        loop {
            if let Some(pad) = g.free.iter_mut().find_map(Option::take) {
                return Ok(PadRef { pool: self, pad: Some(pad) });
            }
            if may_make && g.made < g.max {
                g.made += 1;
                let pool_len = g.pool_len;
                drop(g);
                // Made without the pool's lock held (a large allocation may sleep long).
                match KSearchPad::new(disk, pool_len) {
                    Ok(pad) => return Ok(PadRef { pool: self, pad: Some(pad) }),
                    Err(_) => {
                        g = self.state.lock();
                        g.made = g.made.saturating_sub(1);
                        if g.made == 0 {
                            return Err(ENOMEM);
                        }
                        may_make = false;
                    }
                }
                continue;
            }
            // Uninterruptible, as the index lock itself: a pad comes back when a search ends,
            // and every long search stops at a fatal signal.
            self.cv.wait(&mut g);
            may_make = true;
        }
    }
}

/// A pad taken from a [`PadPool`]; given back when dropped.
pub struct PadRef<'a> {
    pool: &'a PadPool,
    pad: Option<KSearchPad>,
}

impl PadRef<'_> {
    /// The pad.
    pub fn pad(&mut self) -> Result<&mut KSearchPad> {
        self.pad.as_mut().ok_or(EINVAL)
    }
}

impl Drop for PadRef<'_> {
    fn drop(&mut self) {
        if let Some(pad) = self.pad.take() {
            let mut g = self.pool.state.lock();
            // There is a place for every pad that exists (`made <= max`).
            let spare = match g.free.iter_mut().find(|p| p.is_none()) {
                Some(place) => {
                    *place = Some(pad);
                    None
                }
                None => {
                    g.made = g.made.saturating_sub(1);
                    Some(pad)
                }
            };
            drop(g);
            drop(spare);
            self.pool.cv.notify_one();
        }
    }
}

/// The index of one mounted filesystem and all the memory its operations use (its blocks are
/// in the mount's index cache, `SbInfo::pins`, outside the index lock).
pub struct IndexState {
    /// Upper table, header, scratch, visited set, results, chunk lists.
    pub mem: KIndexMem,
    /// The distance kernel.
    pub kernel: FpuKernel,
}

impl IndexState {
    /// Builds the state at mount: the memory (sized by the superblock and `MAX_EF`), the
    /// header and entry point (checked, read through `pins`, the mount's index cache, before the
    /// mount is shared). Errors: `EUCLEAN` (corrupt header, logged), `EIO`, `ENOMEM`.
    pub fn new(dev: &Device, disk: &Superblock, pins: &PinTable) -> Result<IndexState> {
        let kernel = FpuKernel::detect();
        let name = crate::distance::Impl::from_u32(kernel.imp()).map_or("unknown", |i| i.name());
        pr_info!("distance kernel {}\n", name);
        let mut mem = KIndexMem::new(disk, MAX_EF).map_err(|e| match e {
            IndexError::Io(AllocError) => ENOMEM,
            IndexError::Corrupt(f) => dev.report(f),
            _ => EINVAL,
        })?;
        mem.open(&KBlocks::new(dev, pins, None), &kernel).map_err(|e| index_error(dev, e))?;
        // Tombstones are purged in steps by the index worker (kmod/vector.rs), never inside
        // the transaction of the removal that makes the purge due.
        mem.set_stepwise_purge(true);
        Ok(IndexState { mem, kernel })
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
