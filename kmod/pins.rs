//! The kernel's side of the vector index's storage and arithmetic: [`PinTable`], the blocks of
//! the vector regions pinned in the buffer cache; [`KBlocks`], the
//! [`BlockStore`](crate::io::BlockStore) over it; and [`FpuKernel`], the
//! [`DistanceKernel`](crate::distance::DistanceKernel) that runs the C float kernels inside
//! `kernel_fpu_begin/end` (fpu.c).

use crate::buf::Buf;
use crate::distance::DistanceKernel;
use crate::ffi;
use crate::format::superblock::Superblock;
use crate::format::BLOCK_SIZE;
use crate::index::IndexState;
use crate::io::BlockStore;
use crate::txn::Journal;
use crate::vfs::rwsem::ReadGuard;
use crate::vfs::super_block::Device;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use kernel::prelude::*;

/// Borrow state of a pinned block: `0` free, `n > 0` borrowed by `n` readers, [`WRITING`]
/// borrowed by one writer.
const WRITING: u32 = u32::MAX;

/// One block of the table: its buffer once read, and who borrows its bytes.
struct Slot {
    /// The buffer's bytes once pinned (null before); set once, by the reader that installs
    /// `buf` (a compare-and-swap from null), and never changed while the table lives.
    data: AtomicPtr<u8>,
    /// The buffer whose reference the table holds: written once, by the reader whose
    /// compare-and-swap set `data`, and read only by [`PinTable::release`] (`&mut self`).
    buf: UnsafeCell<Option<Buf>>,
    /// Borrows counted under the exclusive index lock ([`PinTable::read`], [`PinTable::write`]).
    borrows: AtomicU32,
}

/// The blocks of the four vector regions, each held in the buffer cache once read, until
/// unmount. The index's pages are then found by an array lookup instead of a buffer-cache
/// search per vector visited; they stay page-cache pages (written back as usual), only pinned.
/// Memory: 40 bytes per block of the regions, plus the pages actually touched.
///
/// The table hands out the bytes of its blocks itself, and no other code reads the vector
/// regions' blocks (they lie outside the data region that every other structure lives in).
/// Under the exclusive index lock ([`KBlocks`]) it counts borrows per block as a `RefCell`
/// does ([`PinnedRef`], [`PinnedMut`]): many readers or one writer, a conflicting borrow is
/// refused. Under the shared index lock ([`SharedBlocks`]: the searches) there is no writer, so
/// its blocks are plain shared slices; several searches may pin blocks at once (a block read
/// twice keeps the first buffer pinned and drops the second).
pub struct PinTable {
    /// First block of the vector regions (the vector bitmap).
    base: u64,
    slots: KVVec<Slot>,
}

// SAFETY: a slot's `buf` is written once, by the one task whose compare-and-swap of `data`
// succeeded, before anyone else may touch it, and then only by `release` (`&mut self`); `data`
// and `borrows` are atomics. The buffers themselves are `Send`.
unsafe impl Sync for PinTable {}

impl PinTable {
    /// An empty table for the vector regions of `disk`. Errors: `ENOMEM`.
    pub fn new(disk: &Superblock) -> Result<PinTable> {
        let base = disk.vector_regions().start;
        let end = disk.vector_regions().end();
        let n = usize::try_from(end.saturating_sub(base)).map_err(|_| ENOMEM)?;
        let mut slots = KVVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            slots.push(
                Slot {
                    data: AtomicPtr::new(core::ptr::null_mut()),
                    buf: UnsafeCell::new(None),
                    borrows: AtomicU32::new(0),
                },
                GFP_KERNEL,
            )?;
        }
        Ok(PinTable { base, slots })
    }

    /// The slot of block `n` and its bytes, reading the block on first use. Errors: `EINVAL`
    /// for a block outside the vector regions, `EIO`.
    fn pinned(&self, dev: &Device, n: u64) -> Result<(&Slot, NonNull<u8>)> {
        let i = n.checked_sub(self.base).and_then(|i| usize::try_from(i).ok()).ok_or(EINVAL)?;
        let slot = self.slots.get(i).ok_or(EINVAL)?;
        if let Some(p) = NonNull::new(slot.data.load(Ordering::Acquire)) {
            return Ok((slot, p));
        }
        let buf = Buf::read(dev, n)?;
        let p = buf.data_ptr();
        match slot.data.compare_exchange(core::ptr::null_mut(), p.as_ptr(), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: our compare-and-swap made us the one writer of `buf` (type's Sync
                // reasoning); nobody reads it before `release`.
                unsafe { *slot.buf.get() = Some(buf) };
                Ok((slot, p))
            }
            // Another search pinned it first: its buffer stays, ours is released.
            Err(theirs) => Ok((slot, NonNull::new(theirs).ok_or(EINVAL)?)),
        }
    }

    /// Block `n` for reading, the borrow counted (through [`KBlocks`] only, which holds the
    /// table alone). Errors: as [`Self::pinned`]; `EINVAL` (logged) if it is borrowed for
    /// writing.
    fn read(&self, dev: &Device, n: u64) -> Result<PinnedRef<'_>> {
        let (slot, data) = self.pinned(dev, n)?;
        let b = slot.borrows.load(Ordering::Relaxed);
        if b >= WRITING - 1 {
            pr_err!("vexfs ({}): vector block {} read while being written\n", dev.name(), n);
            return Err(EINVAL);
        }
        slot.borrows.store(b + 1, Ordering::Relaxed);
        Ok(PinnedRef { data, borrows: &slot.borrows })
    }

    /// Block `n` for changing, given to the running transaction of `journal` first (inside a
    /// handle; through [`KBlocks`] only, which holds the table alone). Errors: as
    /// [`Self::pinned`]; `EINVAL` (logged) if it is borrowed at all; those of
    /// [`Journal::dirty`].
    fn write(&self, dev: &Device, journal: &Journal, n: u64) -> Result<PinnedMut<'_>> {
        let (slot, data) = self.pinned(dev, n)?;
        if slot.borrows.load(Ordering::Relaxed) != 0 {
            pr_err!("vexfs ({}): vector block {} written while borrowed\n", dev.name(), n);
            return Err(EINVAL);
        }
        // SAFETY: called under the exclusive index lock (through `KBlocks`): `pinned` returned,
        // so this task or an earlier one installed the slot's buffer, and only `release`
        // (`&mut self`) changes it again.
        let buf = unsafe { &*slot.buf.get() };
        journal.dirty(buf.as_ref().ok_or(EINVAL)?)?;
        slot.borrows.store(WRITING, Ordering::Relaxed);
        Ok(PinnedMut { data, borrows: &slot.borrows })
    }

    /// Releases every pinned buffer (at unmount, after the last change; `&mut self`: no borrow
    /// is live).
    pub fn release(&mut self) {
        for s in self.slots.iter_mut() {
            *s.data.get_mut() = core::ptr::null_mut();
            s.buf.get_mut().take();
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
    borrows: &'a AtomicU32,
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
        // Counted under the exclusive index lock only: no other task changes the count.
        self.borrows.store(self.borrows.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed);
    }
}

/// A pinned block borrowed for changing (already in the running transaction: the commit
/// writes it back).
///
/// # Invariants
/// As [`PinnedRef`], but `borrows` is [`WRITING`]: this value is the only view of the bytes.
pub struct PinnedMut<'a> {
    data: NonNull<u8>,
    borrows: &'a AtomicU32,
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
        self.borrows.store(0, Ordering::Relaxed);
    }
}

/// The [`BlockStore`] of the vector index's changes: the pinned blocks of one mount, borrowed
/// alone (made from `&mut PinTable`: under the exclusive index lock, or before the table is
/// shared), with borrows counted.
pub struct KBlocks<'p> {
    /// The mount's device, for reads and log lines.
    dev: &'p Device,
    /// Its pinned blocks.
    pins: &'p PinTable,
    /// The journal changes go through; `None` while mounting (reads only: writes are
    /// refused with `EROFS`).
    journal: Option<&'p Journal>,
}

impl<'p> KBlocks<'p> {
    /// The blocks of `pins`, which the caller holds alone for `'p`; changes go through
    /// `journal` (`None`: writes are refused with `EROFS`).
    pub fn new(dev: &'p Device, pins: &'p mut PinTable, journal: Option<&'p Journal>) -> KBlocks<'p> {
        KBlocks { dev, pins, journal }
    }
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

/// The [`BlockStore`] of the searches: the pinned blocks of one mount under the shared index
/// lock, which it borrows (so it exists only while that lock is held). Its blocks are plain
/// shared slices: no change to the vector regions can run while the lock is shared (every
/// change goes through [`KBlocks`] under the exclusive lock). Writes are refused (`EROFS`).
pub struct SharedBlocks<'p> {
    dev: &'p Device,
    pins: &'p PinTable,
}

impl<'p> SharedBlocks<'p> {
    /// The blocks of `index`, held shared by `guard`.
    pub fn new(dev: &'p Device, guard: &'p ReadGuard<'_, IndexState>) -> SharedBlocks<'p> {
        SharedBlocks { dev, pins: &guard.pins }
    }
}

impl BlockStore for SharedBlocks<'_> {
    type Error = Error;
    type Ref<'a>
        = &'a [u8]
    where
        Self: 'a;
    type RefMut<'a>
        = &'a mut [u8]
    where
        Self: 'a;

    fn read(&self, n: u64) -> Result<&[u8]> {
        let (_, data) = self.pins.pinned(self.dev, n)?;
        // SAFETY: the buffer stays pinned while the table lives, which outlives `self` (the
        // table is released only under the exclusive lock); under the shared lock that `self`
        // borrows nobody writes the vector regions (see the type's docs).
        Ok(unsafe { core::slice::from_raw_parts(data.as_ptr(), BLOCK_SIZE) })
    }

    fn write(&self, _n: u64) -> Result<&mut [u8]> {
        Err(EROFS)
    }

    /// Reschedules; `EINTR` on a fatal signal.
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

    unsafe fn code_distances(&self, metric: u32, len: u32, q: *const u8, vecs: &[*const u8], out: &mut [u32]) {
        let n = u32::try_from(vecs.len().min(out.len())).unwrap_or(u32::MAX);
        // SAFETY: `q` and every `vecs[i]` point at `len` readable bytes held for the call (the
        // trait's contract); `out` has room for `n`; fpu.c brackets the C kernels with
        // kernel_fpu_begin/end and neither sleeps nor faults inside.
        unsafe { ffi::vexfs_c_code_distances(self.imp, metric, q, vecs.as_ptr(), n, len, out.as_mut_ptr()) };
    }
}
