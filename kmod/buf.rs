//! `Buf`: one block of the device in the buffer cache (`struct buffer_head`), held for as long
//! as the value lives.

use crate::ffi::{self, BufferHead};
use crate::format::block::{csum_ok, Csum};
use crate::format::BLOCK_SIZE;
use crate::vfs::super_block::Device;
use core::ptr::NonNull;
use kernel::prelude::*;

/// A referenced, up-to-date buffer of [`BLOCK_SIZE`] bytes.
///
/// # Invariants
/// `bh` is a buffer head of a 4096-byte-block superblock with a reference held by this value,
/// and its data is up to date; `data` points at its `BLOCK_SIZE` bytes.
pub struct Buf {
    bh: NonNull<BufferHead>,
    data: NonNull<u8>,
    block: u64,
}

impl Buf {
    /// Reads block `block` (through the cache). `EIO` if the read fails.
    pub fn read(dev: &Device, block: u64) -> Result<Buf> {
        // SAFETY: `dev` is a live superblock whose block size is 4096 (its type invariant).
        let bh = unsafe { ffi::vexfs_c_bread(dev.as_ptr(), block) };
        // SAFETY: the buffer head came from `sb_bread` with a reference.
        unsafe { Self::from_raw(bh) }.ok_or(EIO)
    }

    /// [`Self::read`], also telling whether the block had to come from the disk (`true`) or was
    /// up to date in the cache. `EIO` if the read fails.
    pub fn read_counted(dev: &Device, block: u64) -> Result<(Buf, bool)> {
        let mut read = false;
        // SAFETY: as in `read`; `read` is ours for the call.
        let bh = unsafe { ffi::vexfs_c_bread_counted(dev.as_ptr(), block, &mut read) };
        // SAFETY: the buffer head came from `sb_getblk` with a reference, and is up to date.
        let b = unsafe { Self::from_raw(bh) }.ok_or(EIO)?;
        Ok((b, read))
    }

    /// Starts reading block `block` into the cache unless it is there, without waiting;
    /// `true` when a read was started.
    pub fn readahead(dev: &Device, block: u64) -> bool {
        // SAFETY: as in `read`.
        unsafe { ffi::vexfs_c_block_readahead(dev.as_ptr(), block) }
    }

    /// Drops block `block` from the device's page cache if nothing holds it (clean, not
    /// locked, no reference): `invalidate_mapping_pages` of its page.
    pub fn drop_cached(dev: &Device, block: u64) {
        // SAFETY: as in `read`.
        unsafe { ffi::vexfs_c_drop_cached(dev.as_ptr(), block) };
    }

    /// [`Self::read`], and when block `block` has to come from the disk, a readahead of up to
    /// 32 blocks after it, below `ra_end` (not waited for): for the inode table, whose blocks
    /// a directory walk reads one after another. `EIO` if the read of `block` fails.
    pub fn read_ahead(dev: &Device, block: u64, ra_end: u64) -> Result<Buf> {
        // SAFETY: as in `read`.
        let bh = unsafe { ffi::vexfs_c_bread_ahead(dev.as_ptr(), block, ra_end) };
        // SAFETY: the buffer head came from `sb_getblk` with a reference, and is up to date.
        unsafe { Self::from_raw(bh) }.ok_or(EIO)
    }

    /// A zeroed buffer for block `block`, not read from the disk (the block was just
    /// allocated). `ENOMEM` if no buffer can be had.
    pub fn zeroed(dev: &Device, block: u64) -> Result<Buf> {
        // SAFETY: as in `read`.
        let bh = unsafe { ffi::vexfs_c_bnew(dev.as_ptr(), block) };
        // SAFETY: the buffer head came from `sb_getblk` with a reference, and is up to date.
        unsafe { Self::from_raw(bh) }.ok_or(ENOMEM)
    }

    /// # Safety
    /// `bh` is null or an up-to-date buffer head of [`BLOCK_SIZE`] bytes whose reference the
    /// caller hands over.
    unsafe fn from_raw(bh: *mut BufferHead) -> Option<Buf> {
        let bh = NonNull::new(bh)?;
        // SAFETY: `bh` is a valid buffer head (function contract).
        let data = NonNull::new(unsafe { ffi::vexfs_c_bh_data(bh.as_ptr()) })?;
        // SAFETY: as above.
        let block = unsafe { ffi::vexfs_c_bh_blocknr(bh.as_ptr()) };
        // INVARIANT: reference handed over, data of BLOCK_SIZE bytes.
        Some(Buf { bh, data, block })
    }

    /// The block's number on the device.
    pub fn block(&self) -> u64 {
        self.block
    }

    /// Another reference to the same buffer (`get_bh`): the buffer stays in the cache while
    /// either lives.
    pub fn clone_ref(&self) -> Buf {
        // SAFETY: `bh` is valid by the type invariant; the new reference is the new value's.
        unsafe { ffi::vexfs_c_get_bh(self.bh.as_ptr()) };
        // INVARIANT: a reference of our own to the same up-to-date buffer.
        Buf { bh: self.bh, data: self.data, block: self.block }
    }

    /// Marks the buffer as part of the running transaction; `true` if it was not yet
    /// (`crate::txn` keeps one reference per buffer of the transaction).
    pub fn txn_test_set(&self) -> bool {
        // SAFETY: `bh` is valid by the type invariant; the bit is vexfs's own (BH_PrivateStart).
        !unsafe { ffi::vexfs_c_bh_txn_test_set(self.bh.as_ptr()) }
    }

    /// Clears the running-transaction mark.
    pub fn txn_clear(&self) {
        // SAFETY: as in `txn_test_set`.
        unsafe { ffi::vexfs_c_bh_txn_clear(self.bh.as_ptr()) };
    }

    /// Whether the block's header checksum ([`crate::format::block`]) is right, for a block
    /// that starts with the header: [`Csum::Verified`] if the buffer's verified bit says so
    /// (set since the block last came from the disk; glue.c), or, the first time, if the
    /// checksum computed now matches (and the bit is set); [`Csum::Check`] otherwise, which
    /// makes the decoder compute it again and report the mismatch. Blocks changed through
    /// [`Self::data_mut`] are resealed by their changer, so the bit stays.
    pub fn csum(&self) -> Csum {
        // SAFETY: `bh` is valid by the type invariant; the bits are vexfs's own (glue.c).
        if unsafe { ffi::vexfs_c_bh_checked(self.bh.as_ptr()) } {
            return Csum::Checked;
        }
        // SAFETY: as above.
        if unsafe { ffi::vexfs_c_bh_verified(self.bh.as_ptr()) } {
            return Csum::Verified;
        }
        if !csum_ok(self.data()) {
            return Csum::Check;
        }
        // SAFETY: as above.
        unsafe { ffi::vexfs_c_bh_set_verified(self.bh.as_ptr()) };
        Csum::Verified
    }

    /// Records that block `block`, just read, passed its kind's whole check (an extent node, a
    /// directory index header: `mark_checked` of core's stores); [`Self::csum`] then says
    /// [`Csum::Checked`] until the block comes from the disk again. The read is a cache hit; if
    /// it fails, nothing is recorded, which only costs a check later.
    pub fn set_checked(dev: &Device, block: u64) {
        if let Ok(b) = Buf::read(dev, block) {
            // SAFETY: `bh` is valid by the type invariant; the bit is vexfs's own (glue.c).
            unsafe { ffi::vexfs_c_bh_set_checked(b.bh.as_ptr()) };
        }
    }

    /// Starts writing the block ([`Self::wait_write`] waits for it).
    pub fn start_write(&self) {
        // SAFETY: `bh` is valid by the type invariant.
        unsafe { ffi::vexfs_c_write_bh(self.bh.as_ptr()) };
    }

    /// Waits for a write started by [`Self::start_write`]. `EIO` if it failed.
    pub fn wait_write(&self) -> Result {
        // SAFETY: `bh` is valid by the type invariant.
        kernel::error::to_result(unsafe { ffi::vexfs_c_wait_bh(self.bh.as_ptr()) })
    }

    /// Writes the block after a flush of the device's cache, with FUA, and waits: it is
    /// durable, and so is everything written before, when this returns. `EIO` on failure.
    pub fn write_fua(&self) -> Result {
        // SAFETY: `bh` is valid by the type invariant.
        kernel::error::to_result(unsafe { ffi::vexfs_c_write_bh_fua(self.bh.as_ptr()) })
    }

    /// The block's bytes.
    pub fn data(&self) -> &[u8] {
        // SAFETY: by the type invariant `data` points at BLOCK_SIZE bytes kept alive by our
        // reference; writers to a block are serialised by the filesystem's locks.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), BLOCK_SIZE) }
    }

    /// The block's bytes, to change: only inside a journal handle, with the buffer given to
    /// the running transaction (`Locked::dirty` in kmod/sb.rs, or the index cache's own
    /// path), which writes it back once committed.
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`; `&mut self` makes this the only view through this `Buf`.
        unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr(), BLOCK_SIZE) }
    }

    /// The first of the block's [`BLOCK_SIZE`] bytes, valid while `self` lives: for
    /// [`crate::pins`], which hands out borrows of the blocks it holds itself.
    pub fn data_ptr(&self) -> NonNull<u8> {
        self.data
    }

    /// Schedules the block for writeback: only for a block whose contents are committed to
    /// the journal (`crate::txn`), or at recovery.
    pub fn mark_dirty(&self) {
        // SAFETY: `bh` is valid by the type invariant.
        unsafe { ffi::vexfs_c_mark_dirty(self.bh.as_ptr()) };
    }

    /// Drops the buffer and any pending write of it (the block was freed).
    pub fn forget(self) {
        let bh = self.bh.as_ptr();
        core::mem::forget(self);
        // SAFETY: we own the reference, handed to bforget (which releases it).
        unsafe { ffi::vexfs_c_bforget(bh) };
    }
}

// SAFETY: a buffer head is not tied to the task that took the reference: any task may use and
// release it (`brelse`); the block's bytes are only handed out by `&self`/`&mut self` methods.
unsafe impl Send for Buf {}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: we own one reference to `bh` (type invariant).
        unsafe { ffi::vexfs_c_brelse(self.bh.as_ptr()) };
    }
}

impl core::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data()
    }
}

impl core::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}
