//! Inodes: reading and writing them, and mapping file blocks through extents.

use crate::buf::Buf;
use crate::error::{FormatError, EFBIG};
use crate::extent_tree::{TreeStore, NODE_ENTRIES};
use crate::file_extents::FileExtents;
use crate::format::block::Csum;
use crate::format::extent::Extent;
use crate::format::inode::{Inode as DiskInode, INODE_FLAG_EOFBLOCKS, INODE_FLAG_INDEX, S_IFDIR, S_IFMT};
use crate::format::superblock::Region;
use crate::format::superblock::{FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_EOFBLOCKS};
use crate::format::{BLOCK_SIZE, INODE_SIZE};
use crate::sb::{FsInode, Iget, Inode, InodeRef, Locked, LockedInode, NewInode, SuperBlock};
use crate::txn::Handle;
use crate::vfs::inode::Times;
use kernel::prelude::*;

/// Gets the inode `ino`, reading it from disk if it is not cached. Errors: `EUCLEAN` for an
/// inode number outside the table, a free inode, or a corrupt inode; `EIO`; `ENOMEM`.
pub fn iget(sb: &SuperBlock, ino: u64) -> Result<InodeRef<'_>> {
    if ino == 0 || ino > sb.disk().inode_count as u64 {
        return Err(sb.corrupt("reference to inode number", ino));
    }
    match sb.iget(ino)? {
        Iget::Cached(inode) => Ok(inode),
        Iget::New(new) => {
            // On error `new` is dropped: iget_failed marks the inode bad and releases it.
            read_inode(&new, ino)?;
            Ok(new.unlock())
        }
    }
}

/// The inode `ino` named by the vector index, for a permission check on a search result: as
/// [`iget`], but `None` when the inode number is free (the file was removed and evicted since
/// the index named it: a race, not a corruption) or has no link. An inode not in the cache is
/// read into a private copy that is not hashed ([`crate::vfs::inode::NewInodeRef::unlock_unhashed`]):
/// a create may have allocated the number and written its disk inode without having hashed its
/// own in-core inode yet, and must not meet ours (guest 095 found that race: "inode N
/// allocated twice"). The copy is only looked at, then evicted at its last iput. Call it
/// without the index lock (an inode being evicted is waited for, and its eviction takes the
/// index lock). Errors: as [`iget`].
pub fn iget_live(sb: &SuperBlock, ino: u64) -> Result<Option<InodeRef<'_>>> {
    if ino == 0 || ino > sb.disk().inode_count as u64 {
        return Err(sb.corrupt("reference to inode number", ino));
    }
    // iget_locked returns null (ENOMEM here) for an inode being created (insert_inode_locked
    // marks it I_CREATING until the create publishes it): the number was freed and taken again
    // since the index named it. Wait for the create, a millisecond at a time, at most
    // IGET_CREATING_TRIES times; a real allocation failure ends the same way.
    let mut tries = 0;
    let got = loop {
        match sb.iget(ino) {
            Err(e) if e == ENOMEM && tries < IGET_CREATING_TRIES => {
                tries += 1;
                crate::vfs::access::relax()?;
                // SAFETY: msleep sleeps; the caller holds no lock (see above).
                unsafe { kernel::bindings::msleep(1) };
            }
            r => break r?,
        }
    };
    match got {
        Iget::Cached(inode) => Ok(Some(inode)),
        Iget::New(new) => {
            // While `new` is I_NEW it is the only in-core inode of this number (iget_locked
            // waited for an evicted one to go), and only an eviction frees a number: the
            // answer holds until read_inode reads it.
            if !sb.lock().ino_in_use(ino)? {
                // Dropping `new` marks it bad and releases it (iget_failed): nothing is freed.
                return Ok(None);
            }
            read_inode(&new, ino)?;
            if new.nlink() == 0 {
                // An orphan (left by a crash, or an unlink on its way): not readable
                // through a search; dropping `new` frees nothing (it is marked bad).
                return Ok(None);
            }
            Ok(Some(new.unlock_unhashed()))
        }
    }
}

/// How many times [`iget_live`] waits 1 ms for an inode being created.
const IGET_CREATING_TRIES: u32 = 50;

/// The inode-table block holding inode `ino`, and the byte offset of its slot in it. A block
/// that has to come from the disk brings the next ones with it ([`Buf::read_ahead`]): a walk
/// reads the table in order, and so do creates in a fresh table, whose inode numbers grow.
/// Errors: `EINVAL` (number outside the table), `EIO`.
fn inode_block(sb: &SuperBlock, ino: u64) -> Result<(Buf, usize)> {
    let (blk, off) = sb.disk().inode_pos(ino).ok_or(EINVAL)?;
    let table = sb.disk().region(Region::InodeTable);
    Ok((Buf::read_ahead(sb, blk, table.start.saturating_add(table.blocks))?, off))
}

/// The disk inode `ino` (in use: the caller checked) from the inode table, decoded and
/// checked. Errors: `EUCLEAN` (corrupt, logged), `EIO`, `EINVAL` (number outside the table).
pub fn disk_inode(g: &Locked<'_>, ino: u64) -> Result<DiskInode> {
    let sb = g.sb();
    let (b, off) = inode_block(sb, ino)?;
    let raw = b.data().get(off..off + INODE_SIZE).ok_or(EINVAL)?;
    DiskInode::decode(ino, raw).map_err(|e| sb.report(e))
}

fn read_inode(inode: &NewInode, ino: u64) -> Result {
    let sb = inode.sb();
    let g = sb.lock();
    if !g.ino_in_use(ino)? {
        return Err(sb.corrupt("reference to free inode", ino));
    }
    let d = disk_inode(&g, ino)?;
    let data = sb.disk().region(Region::Data);
    let fx = FileExtents {
        inline: d.extents,
        nr_extents: d.nr_extents,
        root: d.extent_block,
        owner: ino,
        data_start: data.start,
        data_end: data.end(),
        fanout: NODE_ENTRIES,
    };
    fx.check_inode().map_err(|e| sb.report(e))?;
    if d.xattr_block != 0 && !data.contains(d.xattr_block) {
        return Err(sb.corrupt("xattr block outside the data region", d.xattr_block));
    }
    if d.is_dir() && d.size % BLOCK_SIZE as u64 != 0 {
        return Err(sb.corrupt("directory size", d.size));
    }
    if d.flags & INODE_FLAG_INDEX != 0 && sb.disk().feature_incompat & FEATURE_INCOMPAT_DIR_INDEX == 0 {
        return Err(sb.corrupt("indexed directory without the dir_index feature", ino));
    }
    if d.flags & INODE_FLAG_EOFBLOCKS != 0 && g.incompat & FEATURE_INCOMPAT_EOFBLOCKS == 0 {
        return Err(sb.corrupt("blocks past the size without the eofblocks feature", ino));
    }
    let st = FsInode {
        on_disk: true,
        parent: d.parent,
        nr_extents: d.nr_extents,
        extent_block: d.extent_block,
        extents: d.extents,
        blocks: d.blocks,
        vec_count: d.vec_count,
        vec_block: d.vec_block,
        vec_ids: d.vec_ids,
        xattr_block: d.xattr_block,
        flags: d.flags,
        trunc_end: 0,
    };
    inode.set_mode(d.mode);
    inode.set_nlink(d.links as u32);
    inode.set_owner(d.uid, d.gid);
    inode.set_size(d.size);
    inode.set_times(&Times {
        atime: (d.atime_sec, d.atime_nsec),
        mtime: (d.mtime_sec, d.mtime_nsec),
        ctime: (d.ctime_sec, d.ctime_nsec),
    });
    inode.set_generation(d.generation);
    inode.set_rdev_encoded(d.rdev);
    inode.set_ops();
    inode.store(&g, &st);
    Ok(())
}

/// Encodes the disk inode of `inode` from the VFS fields and `st` into the inode table, in the
/// running transaction (inside a journal handle).
pub fn write_disk_inode(g: &Locked<'_>, inode: &Inode, st: &FsInode) -> Result {
    let sb = g.sb();
    let ino = inode.ino();
    let t = inode.times();
    let d = DiskInode {
        mode: inode.mode(),
        links: inode.nlink().min(u16::MAX as u32) as u16,
        uid: inode.uid(),
        gid: inode.gid(),
        flags: st.flags,
        // During a truncate in steps, the blocks still mapped (see [`truncate_in_steps`]).
        size: inode.size().max(st.trunc_end.saturating_mul(BLOCK_SIZE as u64)),
        atime_sec: t.atime.0,
        mtime_sec: t.mtime.0,
        ctime_sec: t.ctime.0,
        atime_nsec: t.atime.1,
        mtime_nsec: t.mtime.1,
        ctime_nsec: t.ctime.1,
        generation: inode.generation(),
        blocks: st.blocks,
        parent: st.parent,
        nr_extents: st.nr_extents,
        extent_block: st.extent_block,
        extents: st.extents,
        vec_count: st.vec_count,
        rdev: inode.rdev_encoded(),
        vec_block: st.vec_block,
        vec_ids: st.vec_ids,
        xattr_block: st.xattr_block,
    };
    let (mut b, off) = inode_block(sb, ino)?;
    let raw = b.data_mut().get_mut(off..off + INODE_SIZE).ok_or(EINVAL)?;
    d.encode(ino, raw);
    sb.dirty(&b)
}

/// An error of core code over the kernel's blocks (an extent tree, an indexed directory): the
/// kernel's own, or corruption a decoder found (reported through [`SuperBlock::report`] by
/// [`tree_err`]).
pub enum TreeErr {
    Kernel(Error),
    Format(FormatError),
}

impl From<FormatError> for TreeErr {
    fn from(f: FormatError) -> TreeErr {
        TreeErr::Format(f)
    }
}

impl From<Error> for TreeErr {
    fn from(e: Error) -> TreeErr {
        TreeErr::Kernel(e)
    }
}

/// The errno of a tree error, corruption logged and acted on ([`crate::errors`]).
pub fn tree_err(sb: &SuperBlock, e: TreeErr) -> Error {
    match e {
        TreeErr::Kernel(e) => e,
        TreeErr::Format(f) => sb.report(f),
    }
}

/// The extent tree's nodes in the buffer cache, read only (lookups).
struct ReadStore<'a> {
    sb: &'a SuperBlock,
}

impl TreeStore for ReadStore<'_> {
    type Error = TreeErr;
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> core::result::Result<R, TreeErr> {
        let b = Buf::read(self.sb, n)?;
        Ok(f(b.data()))
    }
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> core::result::Result<R, TreeErr> {
        let b = Buf::read(self.sb, n)?;
        Ok(f(b.data(), b.csum()))
    }
    fn mark_checked(&mut self, n: u64) {
        Buf::set_checked(self.sb, n);
    }
    fn write<R>(&mut self, _n: u64, _f: impl FnOnce(&mut [u8]) -> R) -> core::result::Result<R, TreeErr> {
        Err(TreeErr::Kernel(EIO))
    }
    fn alloc(&mut self, _goal: u64) -> core::result::Result<u64, TreeErr> {
        Err(TreeErr::Kernel(EIO))
    }
    fn free(&mut self, _n: u64) -> core::result::Result<(), TreeErr> {
        Err(TreeErr::Kernel(EIO))
    }
}

/// The extent tree's nodes in the buffer cache, changed in the running transaction (the
/// caller is inside a journal handle and holds the metadata lock); node blocks come from the
/// block allocator and count in the inode's `blocks`.
struct TxnStore<'a, 'b> {
    g: &'a mut Locked<'b>,
    blocks: &'a mut u64,
}

impl TreeStore for TxnStore<'_, '_> {
    type Error = TreeErr;
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> core::result::Result<R, TreeErr> {
        let b = Buf::read(self.g.sb(), n)?;
        Ok(f(b.data()))
    }
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> core::result::Result<R, TreeErr> {
        let b = Buf::read(self.g.sb(), n)?;
        Ok(f(b.data(), b.csum()))
    }
    fn mark_checked(&mut self, n: u64) {
        Buf::set_checked(self.g.sb(), n);
    }
    fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> core::result::Result<R, TreeErr> {
        let mut b = Buf::read(self.g.sb(), n)?;
        let r = f(b.data_mut());
        self.g.sb().dirty(&b)?;
        Ok(r)
    }
    fn init<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> core::result::Result<R, TreeErr> {
        let mut b = Buf::zeroed(self.g.sb(), n)?;
        let r = f(b.data_mut());
        self.g.sb().dirty(&b)?;
        Ok(r)
    }
    fn alloc(&mut self, goal: u64) -> core::result::Result<u64, TreeErr> {
        // The block count comes from disk: a crafted one near u64::MAX must not overflow.
        let blocks = self
            .blocks
            .checked_add(1)
            .ok_or(FormatError::Corrupt { what: "inode block count", value: *self.blocks })?;
        let b = self.g.alloc_block(goal)?;
        *self.blocks = blocks;
        Ok(b)
    }
    fn free(&mut self, n: u64) -> core::result::Result<(), TreeErr> {
        self.g.free_block(n)?;
        *self.blocks = self.blocks.saturating_sub(1);
        // Its image in the buffer cache must not be written back over the block's next use.
        Buf::zeroed(self.g.sb(), n)?.forget();
        Ok(())
    }
}

impl TxnStore<'_, '_> {
    /// Frees `len` data blocks from `start` (a run a truncate unmapped).
    fn free_run(&mut self, start: u64, len: u64) -> core::result::Result<(), TreeErr> {
        for b in start..start.saturating_add(len) {
            self.g.free_block(b)?;
            *self.blocks = self.blocks.saturating_sub(1);
        }
        Ok(())
    }
}

/// The block map of `inode` as `st` holds it.
fn extents_of(sb: &SuperBlock, ino: u64, st: &FsInode) -> FileExtents {
    let data = sb.disk().region(Region::Data);
    FileExtents {
        inline: st.extents,
        nr_extents: st.nr_extents,
        root: st.extent_block,
        owner: ino,
        data_start: data.start,
        data_end: data.end(),
        fanout: NODE_ENTRIES,
    }
}

/// Stores a changed block map into `st`.
fn set_extents(st: &mut FsInode, fx: &FileExtents) {
    st.extents = fx.inline;
    st.nr_extents = fx.nr_extents;
    st.extent_block = fx.root;
}

/// Allocates a block for file block `lblk` (unmapped) and maps it, near the file's block
/// before it ([`FileExtents::goal`]). Returns the device block. On an error nothing changed.
/// Errors: `EFBIG` (past the `u32` file blocks), `ENOSPC`, `EUCLEAN` (corrupt map), `EIO`.
pub fn alloc_file_block(g: &mut Locked<'_>, inode: &Inode, st: &mut FsInode, lblk: u64) -> Result<u64> {
    if lblk >= u32::MAX as u64 {
        return Err(Error::from_errno(-EFBIG));
    }
    let sb = g.sb();
    // The block count comes from disk: a crafted one near u64::MAX is corruption.
    let blocks = st.blocks.checked_add(1).ok_or_else(|| sb.corrupt("inode block count", st.blocks))?;
    let mut fx = extents_of(sb, inode.ino(), st);
    let mut tree_blocks = blocks;
    let mut s = TxnStore { g, blocks: &mut tree_blocks };
    let goal = fx.goal(&mut s, lblk).map_err(|e| tree_err(sb, e))?;
    let pb = s.g.alloc_file_data(goal, st.blocks)?;
    if let Err(e) = fx.add_block(&mut s, lblk, pb) {
        s.g.free_block(pb)?;
        return Err(tree_err(sb, e));
    }
    st.blocks = tree_blocks;
    set_extents(st, &fx);
    Ok(pb)
}

/// Device block and run length (blocks) of file block `lblk`, or `None` for a hole.
/// Errors: `EUCLEAN` (a corrupt extent node), `EIO`.
pub fn map_block(inode: &Inode, st: &FsInode, lblk: u64) -> Result<Option<(u64, u64)>> {
    let sb = inode.sb();
    extents_of(sb, inode.ino(), st).lookup(&mut ReadStore { sb }, lblk).map_err(|e| tree_err(sb, e))
}

/// Unmaps file block `lblk` of `inode` and frees its device block, inside the caller's
/// journal handle (an indexed directory's bucket after a split). Splitting the extent around
/// it may need a tree node: `ENOSPC` then, nothing changed. Errors: `ENOSPC`, `EUCLEAN`, `EIO`.
pub fn unmap_block(g: &mut Locked<'_>, inode: &Inode, st: &mut FsInode, lblk: u64) -> Result {
    let sb = g.sb();
    let mut fx = extents_of(sb, inode.ino(), st);
    let mut blocks = st.blocks;
    let end = lblk.checked_add(1).ok_or(EINVAL)?;
    let done = {
        let mut s = TxnStore { g, blocks: &mut blocks };
        fx.punch(&mut s, lblk, end, 2, |s, start, len| s.free_run(start, len)).map_err(|e| tree_err(sb, e))
    };
    st.blocks = blocks;
    set_extents(st, &fx);
    if !done? {
        return Err(sb.corrupt("one block not unmapped in one step", lblk));
    }
    Ok(())
}

/// One past the last mapped file block of `inode`. Errors: `EUCLEAN`, `EIO`.
pub fn mapped_end(inode: &Inode, st: &FsInode) -> Result<u64> {
    let sb = inode.sb();
    extents_of(sb, inode.ino(), st).mapped_end(&mut ReadStore { sb }).map_err(|e| tree_err(sb, e))
}

/// Copies into `out` the extents of `inode` that reach past file block `from`, in order, as many
/// as fit (under the metadata lock, which the caller then does not hold while it hands them
/// on: to user memory, whose page fault may need the lock). Returns how many. Errors:
/// `EUCLEAN` (a corrupt extent node), `EIO`.
pub fn extents_from(inode: &Inode, from: u64, out: &mut [Extent]) -> Result<usize> {
    let sb = inode.sb();
    let g = sb.lock();
    let st = inode.load(&g);
    let mut n = 0;
    extents_of(sb, inode.ino(), &st)
        .for_each(&mut ReadStore { sb }, from, |e| match out.get_mut(n) {
            Some(slot) => {
                *slot = e;
                n += 1;
                true
            }
            None => false,
        })
        .map_err(|e| tree_err(sb, e))?;
    Ok(n)
}

/// Extents [`seek_data_hole`] and the fiemap walk copy per metadata-lock hold.
pub const EXTENT_BATCH: usize = 16;

/// `lseek(SEEK_DATA)` (`hole` false) or `lseek(SEEK_HOLE)` (`hole` true) from byte `offset`
/// of `inode` (its `i_rwsem` held shared): the first byte at or after `offset` that is data
/// (mapped) or in a hole (unmapped, or the end of the file). Errors: `ENXIO` when `offset` is
/// negative or at or past the size, or (SEEK_DATA) no data follows; `EUCLEAN`, `EIO`.
pub fn seek_data_hole(inode: &Inode, offset: i64, hole: bool) -> Result<i64> {
    let size = inode.size();
    let Ok(offset) = u64::try_from(offset) else { return Err(ENXIO) };
    if offset >= size {
        return Err(ENXIO);
    }
    let bs = BLOCK_SIZE as u64;
    let mut pos = offset;
    let mut batch = [Extent::default(); EXTENT_BATCH];
    loop {
        let n = extents_from(inode, pos / bs, &mut batch)?;
        for e in batch.iter().take(n) {
            let start = u64::from(e.logical).saturating_mul(bs);
            if hole {
                if start > pos {
                    return Ok(pos.min(size) as i64);
                }
                pos = pos.max(e.logical_end().saturating_mul(bs));
                if pos >= size {
                    return Ok(size as i64);
                }
            } else {
                let at = start.max(pos);
                return if at < size { Ok(at as i64) } else { Err(ENXIO) };
            }
        }
        if n < EXTENT_BATCH {
            // No extent past `pos`: a hole up to the end (SEEK_HOLE), no data (SEEK_DATA).
            return if hole { Ok(pos.min(size) as i64) } else { Err(ENXIO) };
        }
    }
}

/// Maps (or with `create`, allocates) file block `iblock` for the page cache: the device
/// block, the run of mapped blocks from it (at most `max`, 0 for a hole) and whether the
/// block is new. Errors: `ENOSPC`, `EFBIG`, `EUCLEAN`, `EIO`, `ENOMEM`.
pub fn get_block(inode: &Inode, iblock: u64, create: bool, max: u64) -> Result<(u64, u64, bool)> {
    {
        let g = inode.sb().lock();
        let st = inode.load(&g);
        if let Some((p, run)) = map_block(inode, &st, iblock)? {
            // A block past the end of file is one [`prealloc`] mapped for the write now
            // filling it, and never written: new (the page's parts the write does not cover
            // are zeroed, not read).
            if create && iblock.saturating_mul(BLOCK_SIZE as u64) >= inode.size() {
                // Ordered data: a block preallocated by fallocate(KEEP_SIZE) was mapped in an
                // earlier transaction; the data now written into it goes out before the commit
                // that covers it with the size.
                inode.sb().info().mount_c.ordered_add(inode);
                return Ok((p, 1, true));
            }
            return Ok((p, run.min(max).max(1), false));
        }
        if !create {
            return Ok((0, 0, false));
        }
    }
    // Allocating: only inside the handle of write_begin or page_mkwrite (taken before the page
    // lock). Writeback never allocates (page_mkwrite did): it may run inside a commit, which a
    // new handle would wait for.
    if !inode.sb().journal().in_handle() {
        pr_err!("vexfs ({}): inode {}: block {} allocated outside a handle\n", inode.sb().name(), inode.ino(), iblock);
        return Err(EIO);
    }
    let mut g = inode.sb().lock();
    let mut st = inode.load(&g);
    if let Some((p, run)) = map_block(inode, &st, iblock)? {
        return Ok((p, run.min(max).max(1), false));
    }
    let p = alloc_file_block(&mut g, inode, &mut st, iblock)?;
    inode.store(&g, &st);
    // Ordered data: the block's contents are written before the transaction commits.
    inode.sb().info().mount_c.ordered_add(inode);
    drop(g);
    inode.mark_dirty();
    Ok((p, 1, true))
}

/// Maps the file blocks `from .. to` of `inode`, all past its end of file and unmapped, for a
/// buffered write about to fill them (glue.c's `vexfs_buffered_write`): in at most
/// [`PREALLOC_RUNS`](crate::txn::PREALLOC_RUNS) runs of consecutive device blocks, each one
/// allocation and one extent change ([`FileExtents::add_run`]) instead of one per 4 KiB page.
/// Runs inside the caller's [`TxnKind::Prealloc`](crate::txn::TxnKind::Prealloc) handle,
/// which stays open until the write has filled the blocks (`i_size` then covers them) and the
/// blocks it did not reach are freed again (`vexfs_write_failed`): no commit sees a block
/// mapped past the size, or a mapped block whose data it does not write first (ordered data).
/// Returns how many blocks from `from` were mapped: 0 when `from` is not past every mapped
/// block, when the write's first block `lead` (below `from`: the last block of the file) is a
/// hole, whose allocation the page-by-page path makes (and retries after a checkpoint on
/// `ENOSPC`, which a nested handle cannot), or when the log is too small for a run. Errors: `ENOSPC` before any run, `EFBIG`,
/// `EUCLEAN`, `EIO`, `ENOMEM`; the runs mapped before an error stay mapped, for the caller to
/// free with the rest.
pub fn prealloc(inode: &Inode, lead: u64, from: u64, to: u64) -> Result<u64> {
    let sb = inode.sb();
    let to = to.min(u64::from(u32::MAX));
    let runs = sb.journal().state().prealloc_runs;
    if from >= to || runs == 0 {
        return Ok(0);
    }
    let mut g = sb.lock();
    let mut st = inode.load(&g);
    if lead < from && map_block(inode, &st, lead)?.is_none() {
        return Ok(0);
    }
    let mut fx = extents_of(sb, inode.ino(), &st);
    let mut blocks = st.blocks;
    let mut done = 0u64;
    let mut err = None;
    {
        let mut s = TxnStore { g: &mut g, blocks: &mut blocks };
        match fx.mapped_end(&mut s) {
            Ok(end) if end <= from => {}
            Ok(_) => return Ok(0),
            Err(e) => return Err(tree_err(sb, e)),
        }
        for _ in 0..runs {
            let l = from + done;
            if l >= to {
                break;
            }
            let r = (|| -> Result<u64> {
                let goal = fx.goal(&mut s, l).map_err(|e| tree_err(sb, e))?;
                let owned = *s.blocks;
                let (pb, n) = s.g.alloc_file_run(goal, owned, to - l)?;
                // `n <= to - l`, within u32; the block count comes from disk.
                let (Ok(len), Some(grown)) = (u32::try_from(n), owned.checked_add(n)) else {
                    for b in pb..pb.saturating_add(n) {
                        s.g.free_block(b)?;
                    }
                    return Err(sb.corrupt("inode block count", owned));
                };
                *s.blocks = grown;
                if let Err(e) = fx.add_run(&mut s, l, pb, len) {
                    // Nothing was mapped: the run goes back (and the count with it).
                    s.free_run(pb, n).map_err(|e| tree_err(sb, e))?;
                    return Err(tree_err(sb, e));
                }
                Ok(n)
            })();
            match r {
                Ok(n) => done += n,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
    }
    if done > 0 {
        st.blocks = blocks;
        set_extents(&mut st, &fx);
        inode.store(&g, &st);
        // Ordered data: the blocks' contents are written before the transaction commits.
        sb.info().mount_c.ordered_add(inode);
        write_disk_inode(&g, inode, &st)?;
    }
    match err {
        Some(e) if done == 0 || e != ENOSPC => Err(e),
        _ => Ok(done),
    }
}

/// Leaves of the extent tree one handle of a truncate empties at most: each costs its path's
/// nodes (at most 6 blocks) in the transaction, within the 16 blocks of margin of
/// [`crate::embed::delete_blocks_bound`] with the inode's own blocks; the data blocks freed
/// only touch block-bitmap blocks, all of which the bound covers.
const TRUNCATE_LEAVES: usize = 1;

/// Unmaps the blocks of `inode` at or past file block `keep`, in as many journal handles
/// ([`TxnKind::Delete`](crate::txn::TxnKind::Delete)) as it takes, [`TRUNCATE_LEAVES`] tree
/// leaves per handle, and then runs `last` in the last handle. Between two handles the inode
/// is consistent on disk: its size covers the blocks still mapped (`trunc_end`, used by
/// [`write_disk_inode`]), so a commit there (and a crash after it) leaves a file that was
/// truncated only part of the way, never a block mapped past its size (but the zeros of a
/// preallocation past the size before, `INODE_FLAG_EOFBLOCKS`, which the flag allows). The
/// last handle clears the flag when no block is left past the size. Errors: those of a
/// handle (`EROFS`), of the tree (`EUCLEAN`, `EIO`), of `last`; the caller decides whether
/// they abort the journal (a failure inside a handle has left changes in it).
fn truncate_in_steps(
    inode: &Inode,
    keep: u64,
    last: impl FnOnce(&mut Locked<'_>, &mut FsInode) -> Result,
) -> core::result::Result<(), (Error, bool)> {
    let sb = inode.sb();
    let mut last = Some(last);
    loop {
        let _h = Handle::start(sb, crate::txn::TxnKind::Delete).map_err(|e| (e, false))?;
        let mut g = sb.lock();
        let mut st = inode.load(&g);
        if !st.on_disk {
            return Ok(());
        }
        let mut fx = extents_of(sb, inode.ino(), &st);
        let mut blocks = st.blocks;
        let r = {
            let mut s = TxnStore { g: &mut g, blocks: &mut blocks };
            fx.truncate(&mut s, keep, TRUNCATE_LEAVES, |s, start, len| s.free_run(start, len))
                .map_err(|e| tree_err(sb, e))
        };
        st.blocks = blocks;
        set_extents(&mut st, &fx);
        match r {
            Ok(true) => {
                st.trunc_end = 0;
                if keep >= inode.size().div_ceil(BLOCK_SIZE as u64) {
                    // Nothing is mapped past the size any more.
                    st.flags &= !INODE_FLAG_EOFBLOCKS;
                }
                let r = match last.take() {
                    Some(f) => f(&mut g, &mut st),
                    None => Ok(()),
                };
                inode.store(&g, &st);
                // The disk inode in this handle (its size no longer covers the freed blocks),
                // unless `last` freed it.
                let r = r.and_then(|()| if st.on_disk { write_disk_inode(&g, inode, &st) } else { Ok(()) });
                return r.map_err(|e| (e, true));
            }
            Ok(false) => {
                // More to do: the disk inode's size covers what is still mapped, but with
                // blocks preallocated past the size (`INODE_FLAG_EOFBLOCKS`, zeros) no more than
                // the size before (which covers every block that may hold data).
                let mut end = fx.mapped_end(&mut ReadStore { sb }).map_err(|e| (tree_err(sb, e), true));
                if st.flags & INODE_FLAG_EOFBLOCKS != 0 {
                    if let Ok(e) = end {
                        end = disk_inode(&g, inode.ino())
                            .map(|d| e.min(d.size.div_ceil(BLOCK_SIZE as u64)))
                            .map_err(|e| (e, true));
                    }
                }
                st.trunc_end = *end.as_ref().unwrap_or(&st.trunc_end);
                inode.store(&g, &st);
                end.and_then(|_| write_disk_inode(&g, inode, &st).map_err(|e| (e, true)))?;
            }
            Err(e) => {
                inode.store(&g, &st);
                return Err((e, true));
            }
        }
        drop(g);
        // A reschedule point between handles; a truncate, once started, runs to its end.
        let _ = crate::vfs::access::relax();
    }
}

/// Whether an error met half way through an operation aborts the journal (as glue.c's
/// `VEXFS_IN_HANDLE`): an I/O error or corruption.
fn aborts(e: Error) -> bool {
    e == EIO || e.to_errno() == -crate::error::EUCLEAN
}

/// `fallocate(PUNCH_HOLE)` (and `ZERO_RANGE`) on whole blocks: unmaps and frees file blocks
/// `from .. to` (the caller dropped their pages and holds `i_rwsem` and the invalidate lock),
/// one extent per journal handle ([`TxnKind::Worst`](crate::txn::TxnKind::Worst): a split may
/// take a tree's worst insertion, the freed run any bitmap block). Every handle leaves a valid
/// map, so a crash leaves the hole punched part of the way. Errors: `ENOSPC` (a split found no
/// block for a node: nothing of that step done), `EROFS`, `EUCLEAN` and `EIO` (these abort the
/// journal).
pub fn punch_blocks(inode: &Inode, from: u64, to: u64) -> Result {
    let sb = inode.sb();
    loop {
        let _h = Handle::start(sb, crate::txn::TxnKind::Worst)?;
        let mut g = sb.lock();
        let mut st = inode.load(&g);
        let mut fx = extents_of(sb, inode.ino(), &st);
        let mut blocks = st.blocks;
        let r = {
            let mut s = TxnStore { g: &mut g, blocks: &mut blocks };
            fx.punch(&mut s, from, to, 1, |s, start, len| s.free_run(start, len)).map_err(|e| tree_err(sb, e))
        };
        st.blocks = blocks;
        set_extents(&mut st, &fx);
        inode.store(&g, &st);
        let r = r.and_then(|done| write_disk_inode(&g, inode, &st).map(|()| done));
        drop(g);
        match r {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                if aborts(e) {
                    crate::txn::failed(sb, "punching a hole", e);
                }
                return Err(e);
            }
        }
        drop(_h);
        let _ = crate::vfs::access::relax();
    }
}

/// `fallocate` (modes 0, `KEEP_SIZE`, `ZERO_RANGE`): allocates every unmapped file block of
/// `from .. to` and writes zeros to it on the device before the transaction that maps it
/// commits (there are no unwritten extents: a preallocated block reads as zeros because it
/// is zeros), one block per journal handle as a buffered write does. With `grow_to` (bytes;
/// mode 0 and `ZERO_RANGE` without `KEEP_SIZE`) above the size, each handle also grows the size
/// over the block it maps (the caller sets the exact size and the times after), so no commit
/// sees a block past the size; without (`KEEP_SIZE`), a block mapped past the size sets
/// `INODE_FLAG_EOFBLOCKS` on the inode and, the first time on this filesystem,
/// `FEATURE_INCOMPAT_EOFBLOCKS` in the superblock, in the same transaction. The caller holds
/// `i_rwsem`. Stops at a fatal signal (`EINTR`; what was allocated stays, zeroed). Errors:
/// `ENOSPC`, `EFBIG`, `EINTR`, `EROFS`, `EUCLEAN`, `EIO`.
pub fn alloc_range(inode: &LockedInode, from: u64, to: u64, grow_to: u64) -> Result {
    let sb = inode.sb();
    let bs = BLOCK_SIZE as u64;
    let mut l = from;
    while l < to {
        let mapped = {
            let g = sb.lock();
            let st = inode.load(&g);
            map_block(inode, &st, l)?
        };
        if let Some((_, run)) = mapped {
            l = l.saturating_add(run.max(1));
            continue;
        }
        let h = Handle::start(sb, crate::txn::TxnKind::Small)?;
        // The size after this block (never below the size now: a hole filled inside the file
        // leaves it), and whether the block lies past it: a preallocation, which needs the
        // feature first (so that nothing is allocated when it cannot be set: `EROFS`).
        let block_end = l.saturating_add(1).saturating_mul(bs);
        let size = inode.size().max(grow_to.min(block_end));
        let past = l >= size.div_ceil(bs);
        let r = (|| -> Result<u64> {
            let mut g = sb.lock();
            let mut st = inode.load(&g);
            if past && st.flags & INODE_FLAG_EOFBLOCKS == 0 {
                g.set_incompat(FEATURE_INCOMPAT_EOFBLOCKS)?;
                st.flags |= INODE_FLAG_EOFBLOCKS;
            }
            let pb = alloc_file_block(&mut g, inode, &mut st, l)?;
            if size > inode.size() {
                inode.set_size(size);
            }
            inode.store(&g, &st);
            write_disk_inode(&g, inode, &st)?;
            Ok(pb)
        })();
        let r = r.and_then(|pb| {
            // Zeros on the device before the commit (this handle holds it back) maps the block.
            // A failure (EIO, EINTR at a fatal signal, ENOMEM) must keep the mapping of a block
            // holding old data from committing: the journal is aborted whatever the errno.
            // SAFETY: a data block of this mounted filesystem, just allocated to this file.
            let z = kernel::error::to_result(unsafe { crate::ffi::vexfs_c_zeroout(sb.as_ptr(), pb, 1) });
            if let Err(e) = z {
                sb.journal().abort(sb, "zeroing a block fallocate allocated", e);
            }
            z
        });
        drop(h);
        if let Err(e) = r {
            if aborts(e) {
                crate::txn::failed(sb, "allocating a file's blocks", e);
            }
            return Err(e);
        }
        l += 1;
        crate::vfs::access::relax()?;
    }
    Ok(())
}

/// Before setattr cuts `i_size` of `inode` for a truncate that shrinks it: until
/// [`truncate_blocks`] has freed the blocks, the disk inode's size stays the old one, rounded
/// up to its block (`trunc_end`, as between two handles of [`truncate_in_steps`]), whoever
/// writes the inode meanwhile (an atime or mtime update from another task), so no commit sees
/// the new size with the old blocks mapped past it.
pub fn truncate_prepare(inode: &Inode) {
    let g = inode.sb().lock();
    let mut st = inode.load(&g);
    st.trunc_end = st.trunc_end.max(inode.size().div_ceil(BLOCK_SIZE as u64));
    inode.store(&g, &st);
}

/// Frees the blocks past `i_size` (after truncate or a failed write), in journal handles of its
/// own ([`truncate_in_steps`]; nested in the caller's when it holds one: a failed write's),
/// the disk inode written in the last. The page cache and `i_size` were cut before (outside
/// the handle), so a failure here cannot be undone: it is
/// logged and aborts the journal (whatever the errno, an ENOMEM too), so that neither the new
/// size without the freeing nor half of the freeing is ever committed; the next mount finds
/// the last commit. Errors: the failure's (`EROFS` on a read-only or aborted journal).
pub fn truncate_blocks(inode: &Inode) -> Result {
    let sb = inode.sb();
    let keep = inode.size().div_ceil(BLOCK_SIZE as u64);
    match truncate_in_steps(inode, keep, |_, _| Ok(())) {
        Ok(()) => Ok(()),
        Err((e, _)) => {
            pr_err!("vexfs ({}): truncating inode {} failed: {:?}\n", sb.name(), inode.ino(), e);
            if e != EROFS {
                sb.journal().abort(sb, "a truncate", e);
            }
            Err(e)
        }
    }
}

/// Frees the data blocks, the vector-id block left behind, the disk inode and the inode number
/// of an unlinked inode (from evict, after its embeddings were removed). Errors are logged.
pub fn free_disk(inode: &Inode) {
    let sb = inode.sb();
    let ino = inode.ino();
    let r = truncate_in_steps(inode, 0, |g, st| {
        st.on_disk = false;
        if st.vec_block != 0 {
            // Left behind only if removing the vectors failed (logged): free the block anyway.
            g.free_block(st.vec_block)?;
            st.vec_block = 0;
        }
        if st.xattr_block != 0 {
            g.free_block(st.xattr_block)?;
            st.xattr_block = 0;
        }
        let (mut b, off) = inode_block(sb, ino)?;
        if let Some(raw) = b.data_mut().get_mut(off..off + INODE_SIZE) {
            raw.fill(0);
        }
        sb.dirty(&b)?;
        g.free_ino(ino)
    });
    if let Err((e, in_handle)) = r {
        pr_err!("vexfs ({}): freeing inode {} failed: {:?}\n", sb.name(), ino, e);
        if in_handle {
            crate::txn::failed(sb, "freeing an inode", e);
        }
    }
}

/// write_inode: the disk inode is already in the journal (see [`dirty_inode`]); with `sync`,
/// commits it. Errors: those of a commit (`EIO`, `EROFS`).
pub fn write_inode(inode: &Inode, sync: bool) -> Result {
    if sync {
        inode.sb().journal().commit(inode.sb())?;
    }
    Ok(())
}

/// dirty_inode (mark_inode_dirty, inside a handle): encodes the inode into the inode table in
/// the running transaction, so it commits with the operation that changed it. Errors are
/// logged (the VFS has no way to report them).
pub fn dirty_inode(inode: &Inode) {
    let sb = inode.sb();
    let g = sb.lock();
    let st = inode.load(&g);
    if !st.on_disk {
        return;
    }
    if let Err(e) = write_disk_inode(&g, inode, &st) {
        pr_err!("vexfs ({}): writing inode {}: {:?}\n", sb.name(), inode.ino(), e);
        drop(g);
        crate::txn::failed(sb, "an inode update", e);
    }
}

/// Whether a mode is a directory.
pub fn is_dir_mode(mode: u16) -> bool {
    mode & S_IFMT == S_IFDIR
}
