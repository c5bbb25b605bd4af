//! The mounted filesystem: [`SbInfo`] (one per mounted superblock, never global), the
//! per-inode state [`FsInode`], the metadata lock [`Locked`] with the block and inode
//! allocators it guards, and superblock writeback. [`Vexfs`] ties these types to the VFS
//! wrappers of [`crate::vfs`]; the aliases below name the wrappers as vexfs uses them.

use crate::buf::Buf;
use crate::error::ENOSPC;
use crate::errors::Errors;
use crate::ffi::StatfsOut;
use crate::format::extent::Extent;
use crate::format::inode::{INLINE_EXTENTS, INLINE_VEC_IDS};
use crate::format::superblock::{Region, Superblock, FEATURE_INCOMPAT_RECOVER, FORMAT_VERSION, ROOT_INO, STATE_CLEAN};
use crate::format::{bit_find_clear, bit_find_free_run_of, bit_set, bit_test, BLOCK_SIZE, RUN_BITS};
use crate::index::{IndexState, PadPool};
use crate::pins::PinTable;
use crate::txn::{JState, Journal};
use crate::vfs;
use crate::vfs::fs::FileSystem;
use crate::vfs::mount_c::MountC;
use crate::vfs::rwsem::RwSem;
use crate::vfs::task::NofsScope;
use kernel::prelude::*;
use kernel::sync::lock::{mutex::MutexBackend, Guard};
use kernel::sync::Mutex;

/// Bits in one bitmap block.
const BITS_PER_BLOCK: u64 = BLOCK_SIZE as u64 * 8;

/// vexfs, as the VFS wrappers see it: [`SbInfo`] on each superblock, [`FsInode`] beside each
/// inode, [`Locked`] ordering every access to the latter.
pub struct Vexfs;

// SAFETY: a `Locked` is made only by `SuperBlock::lock`, which takes `SbInfo::inner` of that
// superblock and keeps it until the `Locked` is dropped; `owner` returns that `SbInfo`. Every
// load and store of an inode's `FsInode` goes through `Inode::load`/`store` with a `Locked`, so
// the one metadata lock of the mount orders them all.
unsafe impl FileSystem for Vexfs {
    type Info = SbInfo;
    type InodeState = FsInode;
    type Locked<'a> = Locked<'a>;

    fn owner<'a>(g: &'a Locked<'_>) -> &'a SbInfo {
        g.sb.info()
    }

    fn sectors(st: &FsInode) -> u64 {
        st.blocks.saturating_mul(BLOCK_SIZE as u64 / 512)
    }
}

/// A mounted vexfs superblock.
pub type SuperBlock = vfs::super_block::SuperBlock<Vexfs>;
/// A vexfs superblock that fill_super is setting up.
pub type NewSuperBlock = vfs::super_block::NewSuperBlock<Vexfs>;
/// A live vexfs inode.
pub type Inode = vfs::inode::Inode<Vexfs>;
/// A vexfs inode whose `i_rwsem` the VFS holds (the directories of namespace operations).
pub type LockedInode = vfs::inode::LockedInode<Vexfs>;
/// A vexfs inode being set up, not yet visible to other tasks.
pub type NewInode = vfs::inode::NewInode<Vexfs>;
/// An owned reference to a vexfs inode.
pub type InodeRef<'a> = vfs::inode::InodeRef<'a, Vexfs>;
/// What `SuperBlock::iget` finds.
pub type Iget<'a> = vfs::inode::Iget<'a, Vexfs>;

/// State of one mounted vexfs, hung on `super_block.s_fs_info`.
#[pin_data]
pub struct SbInfo {
    /// The superblock as read at mount: geometry and parameters never change while mounted.
    pub disk: Superblock,
    /// The one metadata lock: bitmaps, free counts, every inode's [`FsInode`] and on-disk
    /// inode, and directory blocks are changed only while holding it ([`SuperBlock::lock`]).
    /// Never held across `iput`, `dir_emit` or anything that takes a page lock of a file.
    #[pin]
    inner: Mutex<Inner>,
    /// The vector index: shared by searches, taken alone by every change to it
    /// ([`crate::vector`]); taken before `inner` when both are needed, never after it.
    #[pin]
    pub index: RwSem<IndexState>,
    /// The index cache: the vector regions' blocks held in the buffer cache, within the
    /// `index_mem=` budget. Its blocks are read under `index` (shared for searches, alone for
    /// changes, whose borrows are counted per block), and leave it only under `index` held
    /// alone (the shrinker tries it): [`PinTable`].
    pub pins: PinTable,
    /// The memory of the searches that run at once under the shared index lock.
    #[pin]
    pub pads: PadPool,
    /// The journal: a handle is opened before `index` or `inner` is taken; its state lock is
    /// taken after them.
    #[pin]
    pub journal: Journal,
    /// The C half: commit ticker, ordered-data lists.
    pub mount_c: MountC,
    /// Corruption found while mounted, and the `errors=` mode ([`crate::errors`]).
    pub errors: Errors,
}

impl SbInfo {
    /// The state of a mount of `disk` (validated), with the index state built from it, the
    /// search pads' pool for it ([`PadPool::new`], made by the caller: its allocations are not
    /// under this function's frame, which holds the state before it is boxed) and the
    /// journal's; the free counts are filled in by [`Locked::recount`]. Errors: `ENOMEM`.
    pub fn new(
        disk: Superblock,
        index: IndexState,
        pads: impl PinInit<PadPool>,
        pins: PinTable,
        journal: JState,
        mount_c: MountC,
    ) -> Result<Pin<KBox<SbInfo>>> {
        let errors = Errors::new(disk.state & crate::format::superblock::STATE_ERRORS != 0);
        let inner = Inner {
            free_blocks: 0,
            free_inodes: 0,
            block_hint: disk.region(Region::Data).start,
            ino_hint: 0,
            state: disk.state & crate::format::superblock::STATE_ERRORS,
            mount_count: disk.mount_count.wrapping_add(1),
            incompat: disk.feature_incompat & !FEATURE_INCOMPAT_RECOVER,
        };
        KBox::pin_init(
            pin_init!(SbInfo {
                disk,
                inner <- kernel::new_mutex!(inner, "vexfs::SbInfo::inner"),
                index <- RwSem::new(index),
                pins,
                pads <- pads,
                journal <- Journal::new(journal),
                mount_c,
                errors,
            }),
            GFP_KERNEL,
        )
    }
}

/// Fields protected by the metadata lock ([`SbInfo`]'s `inner`).
pub struct Inner {
    /// Free blocks, counted from the bitmap at mount.
    pub free_blocks: u64,
    /// Free inodes, counted from the bitmap at mount.
    pub free_inodes: u64,
    /// Where the next block search starts (the block after the last one allocated).
    pub block_hint: u64,
    /// Inode bitmap bit below which every inode is in use: [`Locked::alloc_ino`] searches from
    /// here (it hands out the lowest free number, without rescanning the bitmap's full
    /// start on every create); lowered by [`Locked::free_ino`].
    pub ino_hint: u64,
    /// `state` bits to write back (errors seen while mounted).
    pub state: u32,
    /// Mount count to write back.
    pub mount_count: u32,
    /// The incompat features of this filesystem but `RECOVER`: those read at mount and those
    /// set since ([`Locked::set_incompat`]).
    pub incompat: u32,
}

/// What vexfs keeps per inode beside the VFS inode: the decoded extent map and vector ids.
/// Lives in `vexfs_inode_info.rs` (glue.h), `Default` (`on_disk == false`) at allocation.
/// Read and written only under the metadata lock ([`Inode::load`](vfs::inode::Inode::load),
/// [`Inode::store`](vfs::inode::Inode::store)).
#[derive(Clone, Copy, Default)]
pub struct FsInode {
    /// The inode exists on disk (false for one being created or after its disk inode is freed).
    pub on_disk: bool,
    /// Parent directory (directories only).
    pub parent: u32,
    /// Extents of the file, inline and in its extent tree (`core::file_extents`).
    pub nr_extents: u32,
    /// Root block of the extent tree (the extents past the inline ones), 0 = none.
    pub extent_block: u64,
    /// Inline extents; entries at or past `nr_extents` are zero.
    pub extents: [Extent; INLINE_EXTENTS],
    /// Blocks owned: data blocks plus the extent tree's nodes.
    pub blocks: u64,
    /// Embeddings of this file.
    pub vec_count: u32,
    /// Block of further vector ids, 0 = none.
    pub vec_block: u64,
    /// Inline vector ids.
    pub vec_ids: [u32; INLINE_VEC_IDS],
    /// The xattr block (`user.`, `trusted.`, `security.` attributes), 0 = none.
    pub xattr_block: u64,
    /// The disk inode's flags (`INODE_FLAG_INDEX`: an indexed directory).
    pub flags: u32,
    /// During a truncate done in several handles, one past the last file block still mapped
    /// (the disk inode's size covers it until the truncate ends); 0 otherwise.
    pub trunc_end: u64,
}

impl SuperBlock {
    /// Takes the metadata lock of this filesystem.
    pub fn lock(&self) -> Locked<'_> {
        let guard = self.info().inner.lock();
        Locked { sb: self, guard, _nofs: NofsScope::enter() }
    }

    /// The on-disk superblock as read at mount.
    pub fn disk(&self) -> &Superblock {
        &self.info().disk
    }

    /// The mount's journal.
    pub fn journal(&self) -> &Journal {
        &self.info().journal
    }

    /// Adds the block of `b`, changed by the caller inside a journal handle, to the running
    /// transaction ([`Journal::dirty`]). Errors: `EINVAL` outside a handle, `ENOMEM`.
    pub fn dirty(&self, b: &Buf) -> Result {
        self.info().journal.dirty(b)
    }
}

/// Guard of the metadata lock: holding one proves the lock is held, and gives the allocators.
/// While it is held, allocations do not recurse into filesystem reclaim, which could need this
/// same lock.
pub struct Locked<'a> {
    sb: &'a SuperBlock,
    guard: Guard<'a, Inner, MutexBackend>,
    _nofs: NofsScope,
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

impl<'a> Locked<'a> {
    /// The superblock whose lock this is.
    pub fn sb(&self) -> &'a SuperBlock {
        self.sb
    }

    /// Data blocks an allocation may take now: the free ones less those freed or logged since
    /// the last checkpoint (barred until it).
    pub fn allocatable_blocks(&self) -> u64 {
        self.free_blocks.saturating_sub(self.sb.journal().state().barred_free())
    }

    /// Allocates a data block, preferring `goal`; never one freed or logged since the last
    /// checkpoint (kmod/txn.rs). `ENOSPC` when none is free (a checkpoint is then asked for if
    /// barred blocks are what is left).
    pub fn alloc_block(&mut self, goal: u64) -> Result<u64> {
        let data = self.sb.disk().region(Region::Data);
        let journal = self.sb.journal();
        {
            let mut j = journal.state();
            if self.free_blocks <= j.barred_free() {
                if self.free_blocks > 0 {
                    j.want_checkpoint();
                }
                return Err(Error::from_errno(-ENOSPC));
            }
        }
        let goal = if data.contains(goal) {
            goal
        } else if data.contains(self.block_hint) {
            self.block_hint
        } else {
            data.start
        };
        let found = match self.find_clear_unbarred(goal, data.end())? {
            Some(b) => Some(b),
            None => self.find_clear_unbarred(data.start, goal)?,
        };
        let Some(b) = found else {
            let mut j = journal.state();
            if j.barred_free() > 0 {
                j.want_checkpoint();
                return Err(Error::from_errno(-ENOSPC));
            }
            drop(j);
            return Err(self.sb.corrupt("free block count (bitmap full)", self.free_blocks));
        };
        self.set_bit(Region::BlockBitmap, b, true)?;
        self.free_blocks -= 1;
        self.block_hint = b + 1;
        Ok(b)
    }

    /// Allocates a data block of a file that owns `blocks` blocks. A file's first block (no
    /// `goal`) is the first free one from the last allocation ([`Self::alloc_block`]: small
    /// files pack together). A later block is `goal` (the block after the file's block before)
    /// if that is free; else the first block of a wholly free, aligned run of [`run_for`]
    /// `(blocks)` blocks (the file's size rounded up to a power of two, 64 to 2,048 blocks),
    /// then of [`RUN_BITS`](crate::format::RUN_BITS) blocks, each searched from the goal and
    /// then from the region's start; else any free block. Files growing at once (two
    /// downloads, parallel copies) so fill runs of their own instead of taking every other
    /// block, which gave each an extent per block and ran out of extents at about 1 MiB; and
    /// a file that keeps growing takes longer runs, so that its extents (and the extent-tree
    /// nodes every write looks up) stay few, as ext4's mballoc normalises a request by the
    /// file's size. Runs and goals do not move the hint. Errors: as [`Self::alloc_block`].
    pub fn alloc_file_data(&mut self, goal: u64, blocks: u64) -> Result<u64> {
        let data = self.sb.disk().region(Region::Data);
        if !data.contains(goal) {
            return self.alloc_block(goal);
        }
        let hint = self.block_hint;
        let b = if self.free_unbarred(goal)? {
            self.alloc_block(goal)?
        } else {
            let mut start = None;
            for run in [run_for(blocks), RUN_BITS] {
                start = match self.find_free_run(goal, data.end(), run)? {
                    Some(r) => Some(r),
                    None => self.find_free_run(data.start, goal, run)?,
                };
                if start.is_some() || run == RUN_BITS {
                    break;
                }
            }
            match start {
                Some(r) => self.alloc_block(r)?,
                None => return self.alloc_block(goal),
            }
        };
        self.block_hint = hint;
        Ok(b)
    }

    /// Allocates up to `want` (at least 1) consecutive data blocks for a file owning `blocks`
    /// blocks: the first as [`Self::alloc_file_data`] picks it, then the blocks after it while
    /// they are free and not barred by the journal. Returns the first and the count (1 ..=
    /// `want`). Errors: as [`Self::alloc_block`] (nothing allocated).
    pub fn alloc_file_run(&mut self, goal: u64, blocks: u64, want: u64) -> Result<(u64, u64)> {
        let first = self.alloc_file_data(goal, blocks)?;
        let end = self.sb.disk().region(Region::Data).end().min(first.saturating_add(want.max(1)));
        let mut next = first.saturating_add(1);
        while next < end {
            let taken = match self.free_unbarred(next) {
                Ok(true) => self.set_bit(Region::BlockBitmap, next, true),
                Ok(false) => break,
                Err(e) => Err(e),
            };
            if let Err(e) = taken {
                // Undo in reverse order: the blocks were never used (so not barred), the
                // first goes back as any freed block.
                for b in (first.saturating_add(1)..next).rev() {
                    self.set_bit(Region::BlockBitmap, b, false)?;
                    self.free_blocks = self.free_blocks.saturating_add(1);
                }
                self.free_block(first)?;
                return Err(e);
            }
            self.free_blocks = self.free_blocks.saturating_sub(1);
            next += 1;
        }
        Ok((first, next - first))
    }

    /// Whether data block `b` is free and not barred by the journal.
    fn free_unbarred(&self, b: u64) -> Result<bool> {
        Ok(self.find_clear(Region::BlockBitmap, b, b + 1)? == Some(b) && !self.sb.journal().state().barred(b))
    }

    /// First block of a wholly free aligned run of blocks in `from .. to` whose first block is
    /// not barred by the journal (the allocator then takes it and the blocks after it).
    fn find_free_run(&self, mut from: u64, to: u64, run: usize) -> Result<Option<u64>> {
        let find = |bits: &[u8], from: usize, limit: usize| bit_find_free_run_of(bits, from, limit, run);
        while let Some(first) = self.find_in_bitmap(Region::BlockBitmap, from, to, find)? {
            if !self.sb.journal().state().barred(first) {
                return Ok(Some(first));
            }
            from = first + run as u64;
        }
        Ok(None)
    }

    /// Frees data block `b` (not allocated again before the next checkpoint). A block outside
    /// the data region or already free is corruption.
    pub fn free_block(&mut self, b: u64) -> Result {
        if !self.sb.disk().region(Region::Data).contains(b) {
            return Err(self.sb.corrupt("freed block outside the data region", b));
        }
        if !self.set_bit(Region::BlockBitmap, b, false)? {
            return Err(self.sb.corrupt("freed block already free", b));
        }
        self.free_blocks += 1;
        self.sb.journal().freed(b);
        Ok(())
    }

    /// First clear bit of the block bitmap in `from .. to` whose block is not barred by the
    /// journal.
    fn find_clear_unbarred(&self, mut from: u64, to: u64) -> Result<Option<u64>> {
        while let Some(b) = self.find_clear(Region::BlockBitmap, from, to)? {
            if !self.sb.journal().state().barred(b) {
                return Ok(Some(b));
            }
            from = b + 1;
        }
        Ok(None)
    }

    /// Allocates an inode number. `ENOSPC` when none is free.
    pub fn alloc_ino(&mut self) -> Result<u64> {
        if self.free_inodes == 0 {
            return Err(Error::from_errno(-ENOSPC));
        }
        let count = self.sb.disk().inode_count as u64;
        let Some(bit) = self.find_clear(Region::InodeBitmap, self.ino_hint.min(count), count)? else {
            return Err(self.sb.corrupt("free inode count (bitmap full)", self.free_inodes));
        };
        self.set_bit(Region::InodeBitmap, bit, true)?;
        self.ino_hint = bit + 1;
        self.free_inodes -= 1;
        Ok(bit + 1)
    }

    /// Frees inode number `ino`.
    pub fn free_ino(&mut self, ino: u64) -> Result {
        if ino <= ROOT_INO as u64 || ino > self.sb.disk().inode_count as u64 {
            return Err(self.sb.corrupt("freed inode number", ino));
        }
        if !self.set_bit(Region::InodeBitmap, ino - 1, false)? {
            return Err(self.sb.corrupt("freed inode already free", ino));
        }
        self.ino_hint = self.ino_hint.min(ino - 1);
        self.free_inodes += 1;
        Ok(())
    }

    /// Whether inode `ino` is marked in use.
    pub fn ino_in_use(&self, ino: u64) -> Result<bool> {
        let Some(bit) = ino.checked_sub(1) else { return Ok(false) };
        let (blk, off) = self.bitmap_pos(Region::InodeBitmap, bit)?;
        Ok(bit_test(Buf::read(self.sb, blk)?.data(), off))
    }

    /// Counts the free blocks and inodes from the bitmaps (at mount), logging when they differ
    /// from the superblock's counts.
    pub fn recount(&mut self) -> Result {
        let disk = self.sb.disk();
        self.free_blocks = self.count_clear(Region::BlockBitmap, disk.block_count)?;
        self.free_inodes = self.count_clear(Region::InodeBitmap, disk.inode_count as u64)?;
        if self.free_blocks != disk.free_blocks || self.free_inodes != disk.free_inodes as u64 {
            pr_info!("vexfs ({}): free counts recomputed from the bitmaps\n", self.sb.name());
        }
        Ok(())
    }

    /// What statfs(2) reports: blocks and inodes, total and free, and the fsid.
    pub fn statfs(&self) -> StatfsOut {
        let disk = self.sb.disk();
        let u = &disk.uuid;
        let lo = u64::from_le_bytes([u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7]]);
        let hi = u64::from_le_bytes([u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]]);
        StatfsOut {
            blocks: disk.block_count,
            bfree: self.free_blocks,
            files: disk.inode_count as u64,
            ffree: self.free_inodes,
            fsid: lo ^ hi,
        }
    }

    /// The superblock as it is while mounted read-write (`clean`: as left by a clean unmount):
    /// current counts, the format version this code writes (a v1 filesystem is upgraded), and
    /// the `RECOVER` feature set while mounted (a crash leaves it set: replay the journal).
    fn disk_now(&self, clean: bool) -> Superblock {
        let mut d = self.sb.disk().clone();
        d.format_version = FORMAT_VERSION;
        d.feature_incompat |= self.incompat;
        d.free_blocks = self.free_blocks;
        d.free_inodes = self.free_inodes as u32;
        d.mount_count = self.mount_count;
        let state = self.state | self.sb.info().errors.state_bits();
        if clean {
            d.state = state | STATE_CLEAN;
            d.feature_incompat &= !FEATURE_INCOMPAT_RECOVER;
        } else {
            d.state = state & !STATE_CLEAN;
            d.feature_incompat |= FEATURE_INCOMPAT_RECOVER;
        }
        d.write_time = u64::try_from(vfs::time::real_seconds()).unwrap_or(0);
        d
    }

    /// Sets the incompat feature `bit` (`FEATURE_INCOMPAT_EOFBLOCKS`) when it is not set yet,
    /// and then writes the superblock in the running transaction, the one that makes the first
    /// use of the feature (inside a handle, whose credits hold the superblock's block: every
    /// kind's margin does). Errors: `EROFS` on a read-only mount (nothing set); those of
    /// [`Self::write_super`], after which the bit stays set in memory (the transaction that
    /// failed is aborted with the journal).
    pub fn set_incompat(&mut self, bit: u32) -> Result {
        if self.incompat & bit != 0 {
            return Ok(());
        }
        if self.sb.is_rdonly() {
            // Made read-only by an error (errors=remount-ro): the superblock would not be
            // written, and the inode that needs the bit must not be either.
            return Err(EROFS);
        }
        self.incompat |= bit;
        pr_info!("vexfs ({}): incompat feature {:#x} set\n", self.sb.name(), bit);
        self.write_super()
    }

    /// Writes the superblock with the current counts through the journal (inside a handle).
    /// Nothing on a read-only mount. Errors: `EINVAL` outside a handle, `EIO`, `ENOMEM`.
    pub fn write_super(&self) -> Result {
        if self.sb.is_rdonly() {
            return Ok(());
        }
        let mut b = Buf::read(self.sb, 0)?;
        self.disk_now(false).encode(b.data_mut());
        self.sb.dirty(&b)
    }

    /// Writes the superblock directly (FUA), bypassing the journal: at a read-write mount
    /// (before any transaction: `RECOVER` set, not clean), at unmount (after the last
    /// checkpoint: `clean`), and with `STATE_ERRORS` once a mount made read-only by
    /// `errors=remount-ro` has committed ([`crate::errors::tick`]). Nothing on a mount that is
    /// read-only otherwise. Errors: `EIO`.
    pub fn write_super_direct(&self, clean: bool) -> Result {
        if self.sb.is_rdonly() && !self.sb.info().errors.forced_ro() {
            return Ok(());
        }
        let mut b = Buf::read(self.sb, 0)?;
        self.disk_now(clean).encode(b.data_mut());
        b.write_fua()
    }

    fn bitmap_pos(&self, r: Region, bit: u64) -> Result<(u64, usize)> {
        let reg = self.sb.disk().region(r);
        let idx = bit / BITS_PER_BLOCK;
        if idx >= reg.blocks {
            return Err(self.sb.corrupt("bitmap index", bit));
        }
        Ok((reg.start + idx, (bit % BITS_PER_BLOCK) as usize))
    }

    /// Sets or clears a bit; returns its previous value.
    fn set_bit(&self, r: Region, bit: u64, on: bool) -> Result<bool> {
        let (blk, off) = self.bitmap_pos(r, bit)?;
        let mut b = Buf::read(self.sb, blk)?;
        let was = bit_test(b.data(), off);
        bit_set(b.data_mut(), off, on);
        self.sb.dirty(&b)?;
        Ok(was)
    }

    /// First clear bit in `from .. to` of a bitmap region.
    fn find_clear(&self, r: Region, from: u64, to: u64) -> Result<Option<u64>> {
        self.find_in_bitmap(r, from, to, bit_find_clear)
    }

    /// What `find` (a finder of core::format, called as `find(bits, from, limit)` on each
    /// bitmap block's slice) finds first in bits `from .. to` of a bitmap region, block by
    /// block.
    fn find_in_bitmap(
        &self,
        r: Region,
        from: u64,
        to: u64,
        find: impl Fn(&[u8], usize, usize) -> Option<usize>,
    ) -> Result<Option<u64>> {
        let mut pos = from;
        while pos < to {
            let (blk, off) = self.bitmap_pos(r, pos)?;
            let block_base = pos - off as u64;
            let limit = (to - block_base).min(BITS_PER_BLOCK) as usize;
            let b = Buf::read(self.sb, blk)?;
            if let Some(i) = find(b.data(), off, limit) {
                return Ok(Some(block_base + i as u64));
            }
            pos = block_base + BITS_PER_BLOCK;
        }
        Ok(None)
    }

    /// Clear bits among the first `count` bits of a bitmap region.
    fn count_clear(&self, r: Region, count: u64) -> Result<u64> {
        let reg = self.sb.disk().region(r);
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
}

/// Longest run a file's new run of blocks looks for: 2,048 blocks (8 MiB).
const MAX_RUN: usize = 2048;

/// Blocks of the free run that [`Locked::alloc_file_data`] starts a new run of a file owning
/// `blocks` blocks in: `blocks` rounded up to a power of two, within
/// [`RUN_BITS`](crate::format::RUN_BITS) ..= [`MAX_RUN`] (a multiple of 8 bits, and inside one
/// bitmap block).
fn run_for(blocks: u64) -> usize {
    let b = usize::try_from(blocks).unwrap_or(MAX_RUN).clamp(RUN_BITS, MAX_RUN);
    b.checked_next_power_of_two().unwrap_or(MAX_RUN).min(MAX_RUN)
}
