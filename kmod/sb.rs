//! The mounted filesystem: `SbInfo` (one per mounted superblock, never global), mount-time
//! validation, the block and inode allocators, statfs and superblock writeback.

use crate::buf::Buf;
use crate::error::{FormatError, ENOSPC, EUCLEAN};
use crate::ffi;
use crate::format::journal::JournalSuper;
use crate::format::superblock::{Region, Superblock, ROOT_INO, STATE_CLEAN, STATE_ERRORS};
use crate::format::{bit_find_clear, bit_set, bit_test, BLOCK_SIZE};
use core::ffi::c_int;
use kernel::bindings;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::lock::{mutex::MutexBackend, Guard};
use kernel::sync::Mutex;

/// Bits in one bitmap block.
const BITS_PER_BLOCK: u64 = BLOCK_SIZE as u64 * 8;

/// State of one mounted vexfs, hung on `super_block.s_fs_info`.
#[pin_data]
pub struct SbInfo {
    /// The VFS superblock this belongs to.
    pub sb: *mut bindings::super_block,
    /// The superblock as read at mount: geometry and parameters never change while mounted.
    pub disk: Superblock,
    /// The one metadata lock: bitmaps, free counts, every inode's extent map and on-disk
    /// inode, and directory blocks are changed only while holding it. Never held across
    /// `iput`, `dir_emit` or anything that takes a page lock of a file.
    #[pin]
    pub inner: Mutex<Inner>,
    /// The vector index: taken before `inner` when both are needed, never after it.
    #[pin]
    pub index: Mutex<crate::vector::IndexState>,
}

/// Fields protected by [`SbInfo::inner`].
pub struct Inner {
    /// Free blocks, counted from the bitmap at mount.
    pub free_blocks: u64,
    /// Free inodes, counted from the bitmap at mount.
    pub free_inodes: u64,
    /// Where the next block search starts (the block after the last one allocated).
    pub block_hint: u64,
    /// `state` bits to write back (errors seen while mounted).
    pub state: u32,
    /// Mount count to write back.
    pub mount_count: u32,
}

/// Guard of [`SbInfo::inner`]: holding one proves the metadata lock is held. While it is held,
/// allocations do not recurse into filesystem reclaim (`memalloc_nofs_save`), which could
/// need this same lock.
pub struct Locked<'a> {
    guard: Guard<'a, Inner, MutexBackend>,
    nofs: u32,
}

impl core::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.guard
    }
}

impl core::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: restores the scope saved in `SbInfo::lock`, on the same task.
        unsafe { ffi::vexfs_c_nofs_restore(self.nofs) };
    }
}

/// Logs a format error for the device `sb` and returns its errno.
pub fn report(sb: *mut bindings::super_block, e: FormatError) -> Error {
    pr_err!("vexfs ({}): {}\n", sb_name(sb), e);
    Error::from_errno(-e.errno())
}

/// Logs a corruption found outside the format decoders and returns `EUCLEAN`.
pub fn corrupt(sb: *mut bindings::super_block, what: &str, value: u64) -> Error {
    pr_err!("vexfs ({}): corrupt {} (value {})\n", sb_name(sb), what, value);
    Error::from_errno(-EUCLEAN)
}

/// The device name of `sb` (`s_id`), for log lines.
pub fn sb_name(sb: *mut bindings::super_block) -> &'static str {
    // SAFETY: `s_id` is a NUL-terminated array of 32 chars inside the live superblock; the
    // string lives as long as the superblock, which outlives every log line about it.
    let id = unsafe { core::slice::from_raw_parts(ffi::vexfs_c_sb_id(sb), 32) };
    let n = id.iter().position(|&b| b == 0).unwrap_or(id.len());
    core::str::from_utf8(id.get(..n).unwrap_or(&[])).unwrap_or("?")
}

impl SbInfo {
    /// The `SbInfo` of a mounted vexfs superblock.
    ///
    /// # Safety
    /// `sb` is a vexfs superblock whose `fill_super` set `s_fs_info`, and it stays mounted
    /// while the reference is used.
    pub unsafe fn get<'a>(sb: *mut bindings::super_block) -> &'a SbInfo {
        // SAFETY: per the function contract `s_fs_info` points at a live `SbInfo`.
        unsafe { &*((*sb).s_fs_info as *const SbInfo) }
    }

    /// The `SbInfo` of the filesystem an inode belongs to.
    pub fn of<'a>(inode: *mut bindings::inode) -> &'a SbInfo {
        // SAFETY: every inode the VFS hands to vexfs belongs to a mounted vexfs, which stays
        // mounted while the inode is in use.
        unsafe { SbInfo::get((*inode).i_sb) }
    }

    /// Takes the metadata lock.
    pub fn lock(&self) -> Locked<'_> {
        let guard = self.inner.lock();
        // SAFETY: opens a NOFS allocation scope on the current task, closed by `Locked::drop`.
        let nofs = unsafe { ffi::vexfs_c_nofs_save() };
        Locked { guard, nofs }
    }

    /// Allocates a data block, preferring `goal`. `ENOSPC` when none is free.
    pub fn alloc_block(&self, g: &mut Locked<'_>, goal: u64) -> Result<u64> {
        let data = self.disk.region(Region::Data);
        if g.free_blocks == 0 {
            return Err(Error::from_errno(-ENOSPC));
        }
        let goal = if data.contains(goal) {
            goal
        } else if data.contains(g.block_hint) {
            g.block_hint
        } else {
            data.start
        };
        let found = match self.find_clear(Region::BlockBitmap, goal, data.end())? {
            Some(b) => Some(b),
            None => self.find_clear(Region::BlockBitmap, data.start, goal)?,
        };
        let Some(b) = found else {
            return Err(corrupt(self.sb, "free block count (bitmap full)", g.free_blocks));
        };
        self.set_bit(Region::BlockBitmap, b, true)?;
        g.free_blocks -= 1;
        g.block_hint = b + 1;
        Ok(b)
    }

    /// Frees data block `b`. A block outside the data region or already free is corruption.
    pub fn free_block(&self, g: &mut Locked<'_>, b: u64) -> Result {
        if !self.disk.region(Region::Data).contains(b) {
            return Err(corrupt(self.sb, "freed block outside the data region", b));
        }
        if !self.set_bit(Region::BlockBitmap, b, false)? {
            return Err(corrupt(self.sb, "freed block already free", b));
        }
        g.free_blocks += 1;
        Ok(())
    }

    /// Allocates an inode number. `ENOSPC` when none is free.
    pub fn alloc_ino(&self, g: &mut Locked<'_>) -> Result<u64> {
        if g.free_inodes == 0 {
            return Err(Error::from_errno(-ENOSPC));
        }
        let Some(bit) = self.find_clear(Region::InodeBitmap, 0, self.disk.inode_count as u64)? else {
            return Err(corrupt(self.sb, "free inode count (bitmap full)", g.free_inodes));
        };
        self.set_bit(Region::InodeBitmap, bit, true)?;
        g.free_inodes -= 1;
        Ok(bit + 1)
    }

    /// Frees inode number `ino`.
    pub fn free_ino(&self, g: &mut Locked<'_>, ino: u64) -> Result {
        if ino <= ROOT_INO as u64 || ino > self.disk.inode_count as u64 {
            return Err(corrupt(self.sb, "freed inode number", ino));
        }
        if !self.set_bit(Region::InodeBitmap, ino - 1, false)? {
            return Err(corrupt(self.sb, "freed inode already free", ino));
        }
        g.free_inodes += 1;
        Ok(())
    }

    /// Whether inode `ino` is marked in use.
    pub fn ino_in_use(&self, _g: &Locked<'_>, ino: u64) -> Result<bool> {
        let Some(bit) = ino.checked_sub(1) else { return Ok(false) };
        let (blk, off) = self.bitmap_pos(Region::InodeBitmap, bit)?;
        Ok(bit_test(Buf::read(self.sb, blk)?.data(), off))
    }

    fn bitmap_pos(&self, r: Region, bit: u64) -> Result<(u64, usize)> {
        let reg = self.disk.region(r);
        let idx = bit / BITS_PER_BLOCK;
        if idx >= reg.blocks {
            return Err(corrupt(self.sb, "bitmap index", bit));
        }
        Ok((reg.start + idx, (bit % BITS_PER_BLOCK) as usize))
    }

    /// Sets or clears a bit; returns its previous value.
    fn set_bit(&self, r: Region, bit: u64, on: bool) -> Result<bool> {
        let (blk, off) = self.bitmap_pos(r, bit)?;
        let mut b = Buf::read(self.sb, blk)?;
        let was = bit_test(b.data(), off);
        bit_set(b.data_mut(), off, on);
        b.mark_dirty(None);
        Ok(was)
    }

    /// First clear bit in `from .. to` of a bitmap region.
    fn find_clear(&self, r: Region, from: u64, to: u64) -> Result<Option<u64>> {
        let mut pos = from;
        while pos < to {
            let (blk, off) = self.bitmap_pos(r, pos)?;
            let block_base = pos - off as u64;
            let limit = (to - block_base).min(BITS_PER_BLOCK) as usize;
            let b = Buf::read(self.sb, blk)?;
            if let Some(i) = bit_find_clear(b.data(), off, limit) {
                return Ok(Some(block_base + i as u64));
            }
            pos = block_base + BITS_PER_BLOCK;
        }
        Ok(None)
    }

    /// Clear bits among the first `count` bits of a bitmap region.
    fn count_clear(&self, r: Region, count: u64) -> Result<u64> {
        let reg = self.disk.region(r);
        let mut free = 0u64;
        for i in 0..reg.blocks {
            let base = i * BITS_PER_BLOCK;
            if base >= count {
                break;
            }
            let n = (count - base).min(BITS_PER_BLOCK) as usize;
            let b = Buf::read(self.sb, reg.start + i)?;
            let data = b.data();
            let full = n / 8;
            free += data.get(..full).unwrap_or(&[]).iter().map(|x| x.count_zeros() as u64).sum::<u64>();
            for bit in full * 8..n {
                if !bit_test(data, bit) {
                    free += 1;
                }
            }
        }
        Ok(free)
    }

    /// Writes the superblock with the current counts; `clean` marks a clean unmount.
    fn write_super(&self, g: &Locked<'_>, clean: bool, wait: bool) -> Result {
        // SAFETY: `sb` is live while mounted.
        if unsafe { ffi::vexfs_c_rdonly(self.sb) } != 0 {
            return Ok(());
        }
        let mut d = self.disk.clone();
        d.free_blocks = g.free_blocks;
        d.free_inodes = g.free_inodes as u32;
        d.mount_count = g.mount_count;
        d.state = if clean { g.state | STATE_CLEAN } else { g.state & !STATE_CLEAN };
        // SAFETY: plain exported kernel function.
        d.write_time = unsafe { bindings::ktime_get_real_seconds() } as u64;
        let mut b = Buf::read(self.sb, 0)?;
        d.encode(b.data_mut());
        b.mark_dirty(None);
        if wait {
            b.sync()?;
        }
        Ok(())
    }
}

/// Every refusal is logged, `silent` or not: a mount that names vexfs wants to know why.
fn fill_super(sb: *mut bindings::super_block, _silent: bool) -> Result {
    // SAFETY: `sb` is the superblock being set up by mount_bdev.
    if unsafe { bindings::sb_set_blocksize(sb, BLOCK_SIZE as c_int) } == 0 {
        pr_err!("vexfs ({}): device cannot use {}-byte blocks\n", sb_name(sb), BLOCK_SIZE);
        return Err(EINVAL);
    }
    // SAFETY: `sb` has a block device (FS_REQUIRES_DEV).
    let device_blocks = unsafe { ffi::vexfs_c_dev_bytes(sb) } / BLOCK_SIZE as u64;
    let disk = {
        let b = Buf::read(sb, 0)?;
        match Superblock::decode(b.data()) {
            Ok(d) => d,
            Err(e) => return Err(report(sb, e)),
        }
    };
    disk.validate(device_blocks).map_err(|e| report(sb, e))?;
    let journal = disk.region(Region::Journal);
    let js = JournalSuper::decode(Buf::read(sb, journal.start)?.data(), journal.start, journal.blocks, &disk.uuid)
        .map_err(|e| report(sb, e))?;
    if js.flags & crate::format::journal::JOURNAL_CLEAN == 0 {
        return Err(corrupt(sb, "journal: live records without the RECOVER feature", js.next_lsn));
    }
    if disk.state & STATE_ERRORS != 0 {
        pr_warn!("vexfs ({}): mounting a filesystem with errors; run fsck.vexfs\n", sb_name(sb));
    }
    let inner = Inner {
        free_blocks: 0,
        free_inodes: 0,
        block_hint: disk.region(Region::Data).start,
        state: disk.state & STATE_ERRORS,
        mount_count: disk.mount_count.wrapping_add(1),
    };
    let index = crate::vector::IndexState::new(sb, &disk)?;
    let sbi = KBox::pin_init(
        pin_init!(SbInfo {
            sb,
            disk,
            inner <- new_mutex!(inner, "vexfs::SbInfo::inner"),
            index <- new_mutex!(index, "vexfs::SbInfo::index"),
        }),
        GFP_KERNEL,
    )?;
    // SAFETY: the box stays pinned: it is turned back into a box only in `vexfs_rs_free_sbi`.
    let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(sbi) });
    // SAFETY: `sb` is being set up; kill_sb frees `s_fs_info` whatever happens next.
    unsafe {
        (*sb).s_fs_info = raw.cast();
        (*sb).s_magic = crate::format::superblock::MAGIC as _;
        (*sb).s_maxbytes = crate::format::inode::MAX_FILE_SIZE as i64;
    }
    // SAFETY: just set.
    let sbi = unsafe { SbInfo::get(sb) };
    {
        let mut g = sbi.lock();
        g.free_blocks = sbi.count_clear(Region::BlockBitmap, sbi.disk.block_count)?;
        g.free_inodes = sbi.count_clear(Region::InodeBitmap, sbi.disk.inode_count as u64)?;
        if g.free_blocks != sbi.disk.free_blocks || g.free_inodes != sbi.disk.free_inodes as u64 {
            pr_info!("vexfs ({}): free counts recomputed from the bitmaps\n", sb_name(sb));
        }
    }
    let root = crate::inode::iget(sbi, ROOT_INO as u64)?;
    // SAFETY: `root` is a live inode reference; d_make_root consumes it, even on failure.
    let root_is_dir = unsafe { (*root).i_mode } as u16 & crate::format::inode::S_IFMT == crate::format::inode::S_IFDIR;
    if !root_is_dir {
        // SAFETY: we own the reference.
        unsafe { bindings::iput(root) };
        return Err(corrupt(sb, "root inode is not a directory", ROOT_INO as u64));
    }
    // SAFETY: as above.
    let dentry = unsafe { bindings::d_make_root(root) };
    if dentry.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: `sb` is being set up by us.
    unsafe { (*sb).s_root = dentry };
    let g = sbi.lock();
    sbi.write_super(&g, false, true)?;
    Ok(())
}

/// 0 or the negative errno, for the C side.
pub fn errno_of(r: Result) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `fill_super` for mount_bdev: validates the superblock and journal, counts free space,
/// reads the root inode. Errors: `EINVAL` (not vexfs, unsupported, device too small),
/// `EUCLEAN` (corrupt), `EIO`, `ENOMEM`.
#[no_mangle]
pub extern "C" fn vexfs_rs_fill_super(sb: *mut bindings::super_block, silent: c_int) -> c_int {
    errno_of(fill_super(sb, silent != 0))
}

/// `put_super`: records a clean unmount.
#[no_mangle]
pub extern "C" fn vexfs_rs_put_super(sb: *mut bindings::super_block) {
    // SAFETY: put_super runs only on a fully mounted vexfs.
    let sbi = unsafe { SbInfo::get(sb) };
    crate::vector::release(sbi);
    let g = sbi.lock();
    if let Err(e) = sbi.write_super(&g, true, true) {
        pr_err!("vexfs ({}): writing the superblock at unmount failed: {:?}\n", sb_name(sb), e);
    }
}

/// Frees the `SbInfo` after `kill_block_super` (also after a failed mount).
#[no_mangle]
pub extern "C" fn vexfs_rs_free_sbi(sb: *mut bindings::super_block) {
    // SAFETY: `sb` is being destroyed; nothing else uses `s_fs_info` any more.
    unsafe {
        let p = (*sb).s_fs_info as *mut SbInfo;
        if !p.is_null() {
            (*sb).s_fs_info = core::ptr::null_mut();
            drop(KBox::from_raw(p));
        }
    }
}

/// `sync_fs`: writes the superblock (counts); with `wait`, waits for it.
#[no_mangle]
pub extern "C" fn vexfs_rs_sync_fs(sb: *mut bindings::super_block, wait: c_int) -> c_int {
    // SAFETY: sync_fs runs only on a mounted vexfs.
    let sbi = unsafe { SbInfo::get(sb) };
    let g = sbi.lock();
    errno_of(sbi.write_super(&g, false, wait != 0))
}

/// statfs: blocks and inodes, total and free.
#[no_mangle]
pub extern "C" fn vexfs_rs_statfs(sb: *mut bindings::super_block, out: *mut ffi::StatfsOut) -> c_int {
    // SAFETY: statfs runs only on a mounted vexfs.
    let sbi = unsafe { SbInfo::get(sb) };
    let g = sbi.lock();
    let u = &sbi.disk.uuid;
    let lo = u64::from_le_bytes([u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7]]);
    let hi = u64::from_le_bytes([u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]]);
    // SAFETY: `out` points at the caller's struct.
    unsafe {
        *out = ffi::StatfsOut {
            blocks: sbi.disk.block_count,
            bfree: g.free_blocks,
            files: sbi.disk.inode_count as u64,
            ffree: g.free_inodes,
            fsid: lo ^ hi,
        };
    }
    0
}
