//! The kernel's side of the vector index's storage and arithmetic: [`PinTable`], the blocks of
//! the vector regions pinned in the buffer cache; [`KBlocks`], the
//! [`BlockStore`](crate::io::BlockStore) over it; and [`FpuKernel`], the
//! [`DistanceKernel`](crate::distance::DistanceKernel) that runs the C float kernels inside
//! `kernel_fpu_begin/end` (fpu.c).

use crate::buf::Buf;
use crate::distance::DistanceKernel;
use crate::ffi;
use crate::format::superblock::{Region, Superblock};
use crate::format::BLOCK_SIZE;
use crate::io::BlockStore;
use crate::txn::Journal;
use crate::vfs::super_block::Device;
use core::cell::{Cell, OnceCell};
use core::ptr::NonNull;
use kernel::prelude::*;

/// Borrow state of a pinned block: `0` free, `n > 0` borrowed by `n` readers, [`WRITING`]
/// borrowed by one writer.
const WRITING: u32 = u32::MAX;

/// One block of the table: its buffer once read, and who borrows its bytes.
struct Slot {
    buf: OnceCell<Buf>,
    borrows: Cell<u32>,
}

/// The blocks of the four vector regions, each held in the buffer cache once read, until
/// unmount. The index's pages are then found by an array lookup instead of a buffer-cache
/// search per vector visited; they stay page-cache pages (written back as usual), only pinned.
/// Memory: 24 bytes per block of the regions, plus the pages actually touched.
///
/// The table hands out the bytes of its blocks itself ([`PinnedRef`], [`PinnedMut`]), counting
/// borrows per block as a `RefCell` does: many readers or one writer, a conflicting borrow is
/// refused. No other code reads the vector regions' blocks (they lie outside the data region
/// that every other structure lives in), so these borrows are the only views of those bytes.
/// The table is used under the index lock only (it is `Send`, not `Sync`).
pub struct PinTable {
    /// First block of the vector regions (the vector bitmap).
    base: u64,
    slots: KVVec<Slot>,
}

impl PinTable {
    /// An empty table for the vector regions of `disk`. Errors: `ENOMEM`.
    pub fn new(disk: &Superblock) -> Result<PinTable> {
        let base = disk.region(Region::VecBitmap).start;
        let end = disk.region(Region::Hnsw).end();
        let n = usize::try_from(end.saturating_sub(base)).map_err(|_| ENOMEM)?;
        let mut slots = KVVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            slots.push(Slot { buf: OnceCell::new(), borrows: Cell::new(0) }, GFP_KERNEL)?;
        }
        Ok(PinTable { base, slots })
    }

    /// The slot of block `n` with its buffer, reading it on first use. Errors: `EINVAL` for a
    /// block outside the vector regions, `EIO`.
    fn pinned(&self, dev: &Device, n: u64) -> Result<(&Slot, &Buf)> {
        let i = n.checked_sub(self.base).and_then(|i| usize::try_from(i).ok()).ok_or(EINVAL)?;
        let slot = self.slots.get(i).ok_or(EINVAL)?;
        if slot.buf.get().is_none() {
            // A slot only ever goes from empty to full while the table lives, so buffers
            // handed out earlier stay where they are.
            let _ = slot.buf.set(Buf::read(dev, n)?);
        }
        Ok((slot, slot.buf.get().ok_or(EINVAL)?))
    }

    /// Block `n` for reading. Errors: as [`Self::pinned`]; `EINVAL` (logged) if it is borrowed
    /// for writing.
    pub fn read(&self, dev: &Device, n: u64) -> Result<PinnedRef<'_>> {
        let (slot, buf) = self.pinned(dev, n)?;
        let b = slot.borrows.get();
        if b >= WRITING - 1 {
            pr_err!("vexfs ({}): vector block {} read while being written\n", dev.name(), n);
            return Err(EINVAL);
        }
        slot.borrows.set(b + 1);
        Ok(PinnedRef { data: buf.data_ptr(), borrows: &slot.borrows })
    }

    /// Block `n` for changing, given to the running transaction of `journal` first (inside a
    /// handle). Errors: as [`Self::pinned`]; `EINVAL` (logged) if it is borrowed at all;
    /// those of [`Journal::dirty`].
    pub fn write(&self, dev: &Device, journal: &Journal, n: u64) -> Result<PinnedMut<'_>> {
        let (slot, buf) = self.pinned(dev, n)?;
        if slot.borrows.get() != 0 {
            pr_err!("vexfs ({}): vector block {} written while borrowed\n", dev.name(), n);
            return Err(EINVAL);
        }
        journal.dirty(buf)?;
        slot.borrows.set(WRITING);
        Ok(PinnedMut { data: buf.data_ptr(), borrows: &slot.borrows })
    }

    /// Releases every pinned buffer (at unmount, after the last change; `&mut self`: no borrow
    /// is live).
    pub fn release(&mut self) {
        for s in self.slots.iter_mut() {
            s.buf.take();
        }
    }
}

/// A pinned block borrowed for reading.
///
/// # Invariants
/// `data` points at the [`BLOCK_SIZE`] bytes of a buffer the table holds for at least `'a`;
/// this value counts as one reader in `borrows`, so no [`PinnedMut`] of the block exists.
pub struct PinnedRef<'a> {
    data: NonNull<u8>,
    borrows: &'a Cell<u32>,
}

impl core::ops::Deref for PinnedRef<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: by the type invariant the bytes stay valid while we live and nobody writes
        // them (no writer while a reader is counted; no other code touches these blocks).
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), BLOCK_SIZE) }
    }
}

impl Drop for PinnedRef<'_> {
    fn drop(&mut self) {
        self.borrows.set(self.borrows.get().saturating_sub(1));
    }
}

/// A pinned block borrowed for changing (already in the running transaction: the commit
/// writes it back).
///
/// # Invariants
/// As [`PinnedRef`], but `borrows` is [`WRITING`]: this value is the only view of the bytes.
pub struct PinnedMut<'a> {
    data: NonNull<u8>,
    borrows: &'a Cell<u32>,
}

impl core::ops::Deref for PinnedMut<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: by the type invariant the bytes stay valid while we live and are ours alone.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), BLOCK_SIZE) }
    }
}

impl core::ops::DerefMut for PinnedMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow derived from us.
        unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr(), BLOCK_SIZE) }
    }
}

impl Drop for PinnedMut<'_> {
    fn drop(&mut self) {
        self.borrows.set(0);
    }
}

/// The [`BlockStore`] of the vector index: the pinned blocks of one mount.
pub struct KBlocks<'p> {
    /// The mount's device, for reads and log lines.
    pub dev: &'p Device,
    /// Its pinned blocks.
    pub pins: &'p PinTable,
    /// The journal changes go through; `None` while mounting (reads only: writes are
    /// refused with `EROFS`).
    pub journal: Option<&'p Journal>,
}

impl BlockStore for KBlocks<'_> {
    type Error = Error;
    type Ref<'a>
        = PinnedRef<'a>
    where
        Self: 'a;
    type RefMut<'a>
        = PinnedMut<'a>
    where
        Self: 'a;

    fn read(&self, n: u64) -> Result<PinnedRef<'_>> {
        self.pins.read(self.dev, n)
    }

    fn write(&self, n: u64) -> Result<PinnedMut<'_>> {
        self.pins.write(self.dev, self.journal.ok_or(EROFS)?, n)
    }

    /// Reschedules; `EINTR` on a fatal signal (the exact scan of pending vectors stops).
    fn relax(&self) -> Result {
        // SAFETY: a reschedule point and a signal test of the current task.
        kernel::error::to_result(unsafe { ffi::vexfs_c_relax() })
    }
}

/// The C float32 distance kernels (core/csrc), run by fpu.c inside `kernel_fpu_begin/end`.
#[derive(Clone, Copy)]
pub struct FpuKernel {
    imp: u32,
}

impl FpuKernel {
    /// The fastest implementation this CPU runs (`VEXFS_DIST_*`, picked by fpu.c).
    pub fn detect() -> FpuKernel {
        // SAFETY: a plain query of CPU features.
        FpuKernel { imp: unsafe { ffi::vexfs_c_dist_impl() } }
    }

    /// Which implementation it is (`VEXFS_DIST_*` of include/vexfs.h).
    pub fn imp(&self) -> u32 {
        self.imp
    }
}

impl DistanceKernel for FpuKernel {
    unsafe fn distances(&self, metric: u32, dim: u32, q: *const u32, vecs: &[*const u32], out: &mut [u32]) {
        let n = u32::try_from(vecs.len().min(out.len())).unwrap_or(u32::MAX);
        // SAFETY: `q` and every `vecs[i]` point at `dim` readable u32s held for the call (the
        // trait's contract); `out` has room for `n`; fpu.c brackets the C kernels with
        // kernel_fpu_begin/end and neither sleeps nor faults inside.
        unsafe { ffi::vexfs_c_distances(self.imp, metric, q, vecs.as_ptr(), n, dim, out.as_mut_ptr()) };
    }
}
