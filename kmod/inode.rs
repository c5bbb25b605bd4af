//! Inodes: reading and writing them, and mapping file blocks through extents.

use crate::buf::Buf;
use crate::error::EFBIG;
use crate::format::block::check_header;
use crate::format::extent::{
    check_extent, extent_block_build, extent_block_count, extent_block_get, Extent, EXTENT_MAGIC,
};
use crate::format::inode::{Inode as DiskInode, INLINE_EXTENTS, MAX_EXTENTS, S_IFDIR, S_IFMT};
use crate::format::superblock::Region;
use crate::format::{BLOCK_SIZE, INODE_SIZE};
use crate::sb::{FsInode, Iget, Inode, InodeRef, Locked, NewInode, SuperBlock};
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

/// The disk inode `ino` (in use: the caller checked) from the inode table, decoded and
/// checked. Errors: `EUCLEAN` (corrupt, logged), `EIO`, `EINVAL` (number outside the table).
pub fn disk_inode(g: &Locked<'_>, ino: u64) -> Result<DiskInode> {
    let sb = g.sb();
    let (blk, off) = sb.disk().inode_pos(ino).ok_or(EINVAL)?;
    let b = Buf::read(sb, blk)?;
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
    let mut prev = 0u64;
    for e in d.extents.iter().take(d.nr_extents as usize) {
        check_extent(e, prev, data.start, data.end()).map_err(|e| sb.report(e))?;
        prev = e.logical_end();
    }
    if d.extents.iter().skip(d.nr_extents as usize).any(|e| *e != Extent::default()) {
        return Err(sb.corrupt("unused inline extent not zero", ino));
    }
    if d.is_dir() && d.size % BLOCK_SIZE as u64 != 0 {
        return Err(sb.corrupt("directory size", d.size));
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
    inode.set_ops();
    inode.store(&g, &st);
    Ok(())
}

/// Encodes the disk inode of `inode` from the VFS fields and `st` into the inode table, in the
/// running transaction (inside a journal handle).
pub fn write_disk_inode(g: &Locked<'_>, inode: &Inode, st: &FsInode) -> Result {
    let sb = g.sb();
    let ino = inode.ino();
    let (blk, off) = sb.disk().inode_pos(ino).ok_or(EINVAL)?;
    let t = inode.times();
    let d = DiskInode {
        mode: inode.mode(),
        links: inode.nlink().min(u16::MAX as u32) as u16,
        uid: inode.uid(),
        gid: inode.gid(),
        flags: 0,
        size: inode.size(),
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
        vec_block: st.vec_block,
        vec_ids: st.vec_ids,
    };
    let mut b = Buf::read(sb, blk)?;
    let raw = b.data_mut().get_mut(off..off + INODE_SIZE).ok_or(EINVAL)?;
    d.encode(ino, raw);
    sb.dirty(&b)
}

/// Calls `f` on each extent of the inode, in order, validating each; stops when `f` returns
/// `Some`.
fn scan_extents<T>(inode: &Inode, st: &FsInode, mut f: impl FnMut(&Extent) -> Option<T>) -> Result<Option<T>> {
    let n = st.nr_extents as usize;
    for e in st.extents.iter().take(n.min(INLINE_EXTENTS)) {
        if let Some(t) = f(e) {
            return Ok(Some(t));
        }
    }
    if n <= INLINE_EXTENTS {
        return Ok(None);
    }
    let sb = inode.sb();
    let b = Buf::read(sb, st.extent_block)?;
    check_header(b.data(), "extent block", EXTENT_MAGIC, st.extent_block, inode.ino()).map_err(|e| sb.report(e))?;
    let count = extent_block_count(b.data()).map_err(|e| sb.report(e))?;
    if count != n - INLINE_EXTENTS {
        return Err(sb.corrupt("extent block count vs inode", count as u64));
    }
    let data = sb.disk().region(Region::Data);
    let mut prev = st.extents.get(INLINE_EXTENTS - 1).map_or(0, |e| e.logical_end());
    for i in 0..count {
        let e = extent_block_get(b.data(), i).map_err(|e| sb.report(e))?;
        check_extent(&e, prev, data.start, data.end()).map_err(|e| sb.report(e))?;
        prev = e.logical_end();
        if let Some(t) = f(&e) {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// Loads all extents into a vector (for changes). Allocations under the metadata lock are
/// GFP_KERNEL inside the lock's NOFS scope.
fn load_extents(inode: &Inode, st: &FsInode) -> Result<KVec<Extent>> {
    let mut v = KVec::with_capacity(st.nr_extents as usize, GFP_KERNEL)?;
    let mut err = Ok(());
    scan_extents(inode, st, |e| match v.push(*e, GFP_KERNEL) {
        Ok(()) => None,
        Err(x) => {
            err = Err(Error::from(x));
            Some(())
        }
    })?;
    err.map(|_| v)
}

/// Stores `v` as the extents of the inode: inline first, the rest in an extent block,
/// allocating or freeing that block as needed. Errors: `EFBIG` past [`MAX_EXTENTS`],
/// `ENOSPC` for the extent block.
fn store_extents(g: &mut Locked<'_>, inode: &Inode, st: &mut FsInode, v: &[Extent]) -> Result {
    if v.len() > MAX_EXTENTS {
        return Err(Error::from_errno(-EFBIG));
    }
    let sb = g.sb();
    if v.len() > INLINE_EXTENTS {
        let rest = v.get(INLINE_EXTENTS..).unwrap_or(&[]);
        let mut b = if st.extent_block == 0 {
            // The block count comes from disk: a crafted one near u64::MAX must not overflow.
            let blocks = st.blocks.checked_add(1).ok_or_else(|| sb.corrupt("inode block count", st.blocks))?;
            let blk = g.alloc_block(v.last().map_or(0, |e| e.start.saturating_add(e.len as u64)))?;
            st.extent_block = blk;
            st.blocks = blocks;
            Buf::zeroed(sb, blk)?
        } else {
            Buf::read(sb, st.extent_block)?
        };
        extent_block_build(b.data_mut(), st.extent_block, inode.ino(), rest);
        sb.dirty(&b)?;
    } else if st.extent_block != 0 {
        let blk = st.extent_block;
        g.free_block(blk)?;
        st.extent_block = 0;
        st.blocks = st.blocks.saturating_sub(1);
        Buf::zeroed(sb, blk)?.forget();
    }
    st.extents = [Extent::default(); INLINE_EXTENTS];
    for (d, s) in st.extents.iter_mut().zip(v.iter()) {
        *d = *s;
    }
    st.nr_extents = v.len() as u32;
    Ok(())
}

/// Allocates a block for file block `lblk` (unmapped) and maps it. Returns the device block.
pub fn alloc_file_block(g: &mut Locked<'_>, inode: &Inode, st: &mut FsInode, lblk: u64) -> Result<u64> {
    if lblk >= u32::MAX as u64 {
        return Err(Error::from_errno(-EFBIG));
    }
    // Block count and extents come from disk: a crafted block count near u64::MAX, or a file
    // block already mapped (a size below what the extents map: the caller took the block for
    // unmapped), is corruption, not an overflow or two extents over one block.
    let blocks = st.blocks.checked_add(1).ok_or_else(|| inode.sb().corrupt("inode block count", st.blocks))?;
    let mut v = load_extents(inode, st)?;
    let at = v.iter().position(|e| e.logical as u64 > lblk).unwrap_or(v.len());
    let goal = match at.checked_sub(1).and_then(|i| v.get(i)) {
        Some(p) if p.logical_end() > lblk => return Err(inode.sb().corrupt("file block mapped past the size", lblk)),
        Some(p) => p.start + p.len as u64 + (lblk - p.logical_end()),
        None => 0,
    };
    let pb = g.alloc_file_data(goal)?;
    let l = lblk as u32;
    let mut merged = false;
    if let Some(p) = at.checked_sub(1).and_then(|i| v.get_mut(i)) {
        if p.logical_end() == lblk && p.start + p.len as u64 == pb {
            p.len += 1;
            merged = true;
        }
    }
    if !merged {
        if let Some(n) = v.get_mut(at) {
            if n.logical as u64 == lblk + 1 && n.start == pb + 1 {
                n.logical = l;
                n.start = pb;
                n.len += 1;
                merged = true;
            }
        }
    }
    if !merged {
        if let Err(e) = v.insert_within_capacity_or_grow(at, Extent { logical: l, len: 1, start: pb }) {
            g.free_block(pb)?;
            return Err(e);
        }
    }
    st.blocks = blocks;
    if let Err(e) = store_extents(g, inode, st, &v) {
        st.blocks -= 1;
        g.free_block(pb)?;
        return Err(e);
    }
    Ok(pb)
}

/// Inserting into a `KVec` at an index (6.12's KVec has push only).
trait InsertAt<T> {
    fn insert_within_capacity_or_grow(&mut self, at: usize, t: T) -> Result;
}

impl<T: Copy> InsertAt<T> for KVec<T> {
    fn insert_within_capacity_or_grow(&mut self, at: usize, t: T) -> Result {
        self.push(t, GFP_KERNEL)?;
        let s = self.as_mut_slice();
        if at < s.len() {
            s[at..].rotate_right(1);
        }
        Ok(())
    }
}

/// Device block and run length (blocks) of file block `lblk`, or `None` for a hole.
pub fn map_block(inode: &Inode, st: &FsInode, lblk: u64) -> Result<Option<(u64, u64)>> {
    scan_extents(inode, st, |e| e.map(lblk).map(|p| (p, e.logical_end() - lblk)))
}

/// Maps (or with `create`, allocates) file block `iblock` for the page cache: the device
/// block, the run of mapped blocks from it (at most `max`, 0 for a hole) and whether the
/// block is new. Errors: `ENOSPC`, `EFBIG`, `EUCLEAN`, `EIO`, `ENOMEM`.
pub fn get_block(inode: &Inode, iblock: u64, create: bool, max: u64) -> Result<(u64, u64, bool)> {
    {
        let g = inode.sb().lock();
        let st = inode.load(&g);
        if let Some((p, run)) = map_block(inode, &st, iblock)? {
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

/// Frees the blocks at or past `keep` file blocks.
fn truncate_to(g: &mut Locked<'_>, inode: &Inode, st: &mut FsInode, keep: u64) -> Result {
    let v = load_extents(inode, st)?;
    let mut out = KVec::with_capacity(v.len(), GFP_KERNEL)?;
    for e in v.iter() {
        let (keep_len, free_from) = if e.logical as u64 >= keep {
            (0, 0)
        } else if e.logical_end() > keep {
            let k = keep - e.logical as u64;
            (k, k)
        } else {
            (e.len as u64, e.len as u64)
        };
        for i in free_from..e.len as u64 {
            g.free_block(e.start + i)?;
            st.blocks = st.blocks.saturating_sub(1);
        }
        if keep_len > 0 {
            out.push(Extent { logical: e.logical, len: keep_len as u32, start: e.start }, GFP_KERNEL)?;
        }
    }
    store_extents(g, inode, st, &out)
}

/// Frees the blocks past `i_size` (after truncate or a failed write). The page cache and
/// `i_size` were cut before (outside the handle), so a failure here cannot be undone: it is
/// logged and aborts the journal (whatever the errno, an ENOMEM too), so that neither the new
/// size without the freeing nor half of the freeing is ever committed; the next mount finds
/// the last commit. Errors: the failure's (`EROFS` on a read-only or aborted journal).
pub fn truncate_blocks(inode: &Inode) -> Result {
    let sb = inode.sb();
    let keep = inode.size().div_ceil(BLOCK_SIZE as u64);
    let _h = match Handle::start(sb, crate::txn::TxnKind::Delete) {
        Ok(h) => h,
        Err(e) => {
            pr_err!("vexfs ({}): truncating inode {}: {:?}\n", sb.name(), inode.ino(), e);
            if e != EROFS {
                sb.journal().abort(sb, "a truncate", e);
            }
            return Err(e);
        }
    };
    let mut g = sb.lock();
    let mut st = inode.load(&g);
    let r = truncate_to(&mut g, inode, &mut st, keep);
    inode.store(&g, &st);
    drop(g);
    if let Err(e) = r {
        pr_err!("vexfs ({}): truncating inode {} failed: {:?}\n", sb.name(), inode.ino(), e);
        sb.journal().abort(sb, "a truncate", e);
        return Err(e);
    }
    inode.mark_dirty();
    Ok(())
}

/// Frees the data blocks, the vector-id block left behind, the disk inode and the inode number
/// of an unlinked inode (from evict, after its embeddings were removed). Errors are logged.
pub fn free_disk(inode: &Inode) {
    let sb = inode.sb();
    let ino = inode.ino();
    let _h = match Handle::start(sb, crate::txn::TxnKind::Delete) {
        Ok(h) => h,
        Err(e) => {
            pr_err!("vexfs ({}): freeing inode {}: {:?}\n", sb.name(), ino, e);
            return;
        }
    };
    let mut g = sb.lock();
    let mut st = inode.load(&g);
    if !st.on_disk {
        return;
    }
    let r = (|| -> Result {
        truncate_to(&mut g, inode, &mut st, 0)?;
        if st.vec_block != 0 {
            // Left behind only if removing the vectors failed (logged): free the block anyway.
            g.free_block(st.vec_block)?;
            st.vec_block = 0;
        }
        let (blk, off) = sb.disk().inode_pos(ino).ok_or(EINVAL)?;
        let mut b = Buf::read(sb, blk)?;
        if let Some(raw) = b.data_mut().get_mut(off..off + INODE_SIZE) {
            raw.fill(0);
        }
        sb.dirty(&b)?;
        g.free_ino(ino)
    })();
    st.on_disk = false;
    inode.store(&g, &st);
    if let Err(e) = r {
        pr_err!("vexfs ({}): freeing inode {} failed: {:?}\n", sb.name(), ino, e);
        drop(g);
        crate::txn::failed(sb, "freeing an inode", e);
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
