//! `Buf`: one block of the device in the buffer cache (`struct buffer_head`), held for as long
//! as the value lives.

use crate::ffi::{self, BufferHead};
use crate::format::BLOCK_SIZE;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::prelude::*;

/// A referenced, up-to-date buffer of [`BLOCK_SIZE`] bytes.
///
/// # Invariants
/// `bh` is a buffer head of a 4096-byte-block superblock with a reference held by this value,
/// and its data is up to date; `data` points at its `BLOCK_SIZE` bytes.
pub struct Buf {
    bh: NonNull<BufferHead>,
    data: NonNull<u8>,
}

impl Buf {
    /// Reads block `block` (through the cache). `EIO` if the read fails.
    pub fn read(sb: *mut bindings::super_block, block: u64) -> Result<Buf> {
        // SAFETY: `sb` is a live superblock whose block size was set to 4096 in fill_super.
        let bh = unsafe { ffi::vexfs_c_bread(sb, block) };
        // SAFETY: the buffer head came from `sb_bread` with a reference.
        unsafe { Self::from_raw(bh) }.ok_or(EIO)
    }

    /// A zeroed buffer for block `block`, not read from the disk (the block was just
    /// allocated). `ENOMEM` if no buffer can be had.
    pub fn zeroed(sb: *mut bindings::super_block, block: u64) -> Result<Buf> {
        // SAFETY: as in `read`.
        let bh = unsafe { ffi::vexfs_c_bnew(sb, block) };
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
        // INVARIANT: reference handed over, data of BLOCK_SIZE bytes.
        Some(Buf { bh, data })
    }

    /// The block's bytes.
    pub fn data(&self) -> &[u8] {
        // SAFETY: by the type invariant `data` points at BLOCK_SIZE bytes kept alive by our
        // reference; writers to a block are serialised by the filesystem's locks.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), BLOCK_SIZE) }
    }

    /// The block's bytes, to change; call [`Self::mark_dirty`] afterwards.
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`; `&mut self` makes this the only view through this `Buf`.
        unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr(), BLOCK_SIZE) }
    }

    /// Schedules the block for writeback; with `owner`, fsync(owner) writes it too.
    pub fn mark_dirty(&self, owner: Option<*mut bindings::inode>) {
        // SAFETY: `bh` is valid by the type invariant; `owner` is a live inode or null.
        unsafe { ffi::vexfs_c_mark_dirty(self.bh.as_ptr(), owner.unwrap_or(core::ptr::null_mut())) };
    }

    /// Writes the block now and waits. `EIO` on a write error.
    pub fn sync(&self) -> Result {
        // SAFETY: `bh` is valid by the type invariant.
        let r = unsafe { ffi::vexfs_c_sync_bh(self.bh.as_ptr()) };
        if r == 0 {
            Ok(())
        } else {
            Err(EIO)
        }
    }

    /// Drops the buffer and any pending write of it (the block was freed).
    pub fn forget(self) {
        let bh = self.bh.as_ptr();
        core::mem::forget(self);
        // SAFETY: we own the reference, handed to bforget (which releases it).
        unsafe { ffi::vexfs_c_bforget(bh) };
    }
}

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
