//! Inodes: reading and writing them, and mapping file blocks through extents.

use crate::buf::Buf;
use crate::error::EFBIG;
use crate::ffi;
use crate::format::block::check_header;
use crate::format::extent::{
    check_extent, extent_block_build, extent_block_count, extent_block_get, Extent, EXTENT_MAGIC,
};
use crate::format::inode::{Inode, INLINE_EXTENTS, INLINE_VEC_IDS, MAX_EXTENTS, S_IFDIR, S_IFMT};
use crate::format::superblock::Region;
use crate::format::{BLOCK_SIZE, INODE_SIZE};
use crate::sb::{corrupt, report, Locked, SbInfo};
use core::ffi::c_int;
use kernel::bindings;
use kernel::prelude::*;

/// What vexfs keeps per inode beside the VFS inode: the decoded extent map and vector ids.
/// Lives in `vexfs_inode_info.rs` (glue.h), zeroed at allocation, which is a valid value
/// (`on_disk == false`). Read and written only under the metadata lock ([`load`], [`store`]).
#[derive(Clone, Copy, Default)]
pub struct FsInode {
    /// The inode exists on disk (false for one being created or after its disk inode is freed).
    pub on_disk: bool,
    /// Parent directory (directories only).
    pub parent: u32,
    /// Extents in use: inline first, then in `extent_block`.
    pub nr_extents: u32,
    /// Block holding extents beyond the inline ones, 0 = none.
    pub extent_block: u64,
    /// Inline extents; entries at or past `nr_extents` are zero.
    pub extents: [Extent; INLINE_EXTENTS],
    /// Blocks owned: data blocks plus the extent block.
    pub blocks: u64,
    /// Embeddings of this file.
    pub vec_count: u32,
    /// Block of further vector ids, 0 = none.
    pub vec_block: u64,
    /// Inline vector ids.
    pub vec_ids: [u32; INLINE_VEC_IDS],
}

kernel::static_assert!(core::mem::size_of::<FsInode>() <= 8 * 28);
kernel::static_assert!(core::mem::align_of::<FsInode>() <= 8);

/// Copies out the `FsInode` of `inode`.
pub fn load(inode: *mut bindings::inode, _g: &Locked<'_>) -> FsInode {
    // SAFETY: `rs` is 8-aligned storage of at least size_of::<FsInode>() bytes inside the live
    // inode, always holding a valid FsInode (zero or stored by `store`); the lock orders access.
    unsafe { core::ptr::read(ffi::vexfs_c_inode_rs(inode) as *const FsInode) }
}

/// Stores the `FsInode` of `inode` and updates `i_blocks` (512-byte units).
pub fn store(inode: *mut bindings::inode, _g: &Locked<'_>, st: &FsInode) {
    // SAFETY: as in `load`.
    unsafe {
        core::ptr::write(ffi::vexfs_c_inode_rs(inode) as *mut FsInode, *st);
        (*inode).i_blocks = st.blocks.saturating_mul(BLOCK_SIZE as u64 / 512);
    }
}

/// Inode number of a VFS inode.
pub fn ino_of(inode: *mut bindings::inode) -> u64 {
    // SAFETY: `inode` is live.
    unsafe { (*inode).i_ino as u64 }
}

/// Mode bits of a VFS inode.
pub fn mode_of(inode: *mut bindings::inode) -> u16 {
    // SAFETY: `inode` is live.
    unsafe { (*inode).i_mode as u16 }
}

/// Size of a VFS inode in bytes.
pub fn size_of_inode(inode: *mut bindings::inode) -> u64 {
    // SAFETY: `inode` is live.
    let s = unsafe { ffi::vexfs_c_i_size(inode) };
    s.max(0) as u64
}

/// Gets the inode `ino`, reading it from disk if it is not cached. Errors: `EUCLEAN` for an
/// inode number outside the table, a free inode, or a corrupt inode; `EIO`; `ENOMEM`.
pub fn iget(sbi: &SbInfo, ino: u64) -> Result<*mut bindings::inode> {
    if ino == 0 || ino > sbi.disk.inode_count as u64 {
        return Err(corrupt(sbi.sb, "reference to inode number", ino));
    }
    // SAFETY: `sb` is live; iget_locked returns a referenced inode or null.
    let inode = unsafe { bindings::iget_locked(sbi.sb, ino as _) };
    if inode.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: `inode` is live and referenced.
    if !unsafe { ffi::vexfs_c_is_new(inode) } {
        return Ok(inode);
    }
    match read_inode(sbi, inode, ino) {
        Ok(()) => {
            // SAFETY: a new inode we set up.
            unsafe { bindings::unlock_new_inode(inode) };
            Ok(inode)
        }
        Err(e) => {
            // SAFETY: a new inode whose set-up failed; this drops our reference.
            unsafe { bindings::iget_failed(inode) };
            Err(e)
        }
    }
}

fn read_inode(sbi: &SbInfo, inode: *mut bindings::inode, ino: u64) -> Result {
    let g = sbi.lock();
    if !sbi.ino_in_use(&g, ino)? {
        return Err(corrupt(sbi.sb, "reference to free inode", ino));
    }
    let (blk, off) = sbi.disk.inode_pos(ino).ok_or(EINVAL)?;
    let b = Buf::read(sbi.sb, blk)?;
    let raw = b.data().get(off..off + INODE_SIZE).ok_or(EINVAL)?;
    let d = Inode::decode(ino, raw).map_err(|e| report(sbi.sb, e))?;
    let data = sbi.disk.region(Region::Data);
    let mut prev = 0u64;
    for e in d.extents.iter().take(d.nr_extents as usize) {
        check_extent(e, prev, data.start, data.end()).map_err(|e| report(sbi.sb, e))?;
        prev = e.logical_end();
    }
    if d.extents.iter().skip(d.nr_extents as usize).any(|e| *e != Extent::default()) {
        return Err(corrupt(sbi.sb, "unused inline extent not zero", ino));
    }
    if d.is_dir() && d.size % BLOCK_SIZE as u64 != 0 {
        return Err(corrupt(sbi.sb, "directory size", d.size));
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
    // SAFETY: `inode` is new (I_NEW) and ours to fill.
    unsafe {
        (*inode).i_mode = d.mode as _;
        bindings::set_nlink(inode, d.links as u32);
        ffi::vexfs_c_set_owner(inode, d.uid, d.gid);
        ffi::vexfs_c_set_i_size(inode, d.size as i64);
        (*inode).i_atime_sec = d.atime_sec;
        (*inode).i_atime_nsec = d.atime_nsec;
        (*inode).i_mtime_sec = d.mtime_sec;
        (*inode).i_mtime_nsec = d.mtime_nsec;
        (*inode).i_ctime_sec = d.ctime_sec;
        (*inode).i_ctime_nsec = d.ctime_nsec;
        (*inode).i_generation = d.generation;
        ffi::vexfs_c_set_ops(inode);
    }
    store(inode, &g, &st);
    Ok(())
}

/// Encodes the disk inode of `inode` from the VFS fields and `st` into the inode table.
/// Returns the table block's buffer (dirty), so the caller may sync it.
pub fn write_disk_inode(sbi: &SbInfo, _g: &Locked<'_>, inode: *mut bindings::inode, st: &FsInode) -> Result<Buf> {
    let ino = ino_of(inode);
    let (blk, off) = sbi.disk.inode_pos(ino).ok_or(EINVAL)?;
    // SAFETY: `inode` is live; plain field reads.
    let d = unsafe {
        Inode {
            mode: (*inode).i_mode as u16,
            links: ffi::vexfs_c_nlink(inode).min(u16::MAX as u32) as u16,
            uid: ffi::vexfs_c_uid(inode),
            gid: ffi::vexfs_c_gid(inode),
            flags: 0,
            size: size_of_inode(inode),
            atime_sec: (*inode).i_atime_sec,
            mtime_sec: (*inode).i_mtime_sec,
            ctime_sec: (*inode).i_ctime_sec,
            atime_nsec: (*inode).i_atime_nsec,
            mtime_nsec: (*inode).i_mtime_nsec,
            ctime_nsec: (*inode).i_ctime_nsec,
            generation: (*inode).i_generation,
            blocks: st.blocks,
            parent: st.parent,
            nr_extents: st.nr_extents,
            extent_block: st.extent_block,
            extents: st.extents,
            vec_count: st.vec_count,
            vec_block: st.vec_block,
            vec_ids: st.vec_ids,
        }
    };
    let mut b = Buf::read(sbi.sb, blk)?;
    let raw = b.data_mut().get_mut(off..off + INODE_SIZE).ok_or(EINVAL)?;
    d.encode(ino, raw);
    b.mark_dirty(None);
    Ok(b)
}

/// Calls `f` on each extent of the inode, in order, validating each; stops when `f` returns
/// `Some`.
fn scan_extents<T>(
    sbi: &SbInfo,
    inode: *mut bindings::inode,
    st: &FsInode,
    mut f: impl FnMut(&Extent) -> Option<T>,
) -> Result<Option<T>> {
    let n = st.nr_extents as usize;
    for e in st.extents.iter().take(n.min(INLINE_EXTENTS)) {
        if let Some(t) = f(e) {
            return Ok(Some(t));
        }
    }
    if n <= INLINE_EXTENTS {
        return Ok(None);
    }
    let ino = ino_of(inode);
    let b = Buf::read(sbi.sb, st.extent_block)?;
    check_header(b.data(), "extent block", EXTENT_MAGIC, st.extent_block, ino).map_err(|e| report(sbi.sb, e))?;
    let count = extent_block_count(b.data()).map_err(|e| report(sbi.sb, e))?;
    if count != n - INLINE_EXTENTS {
        return Err(corrupt(sbi.sb, "extent block count vs inode", count as u64));
    }
    let data = sbi.disk.region(Region::Data);
    let mut prev = st.extents.get(INLINE_EXTENTS - 1).map_or(0, |e| e.logical_end());
    for i in 0..count {
        let e = extent_block_get(b.data(), i).map_err(|e| report(sbi.sb, e))?;
        check_extent(&e, prev, data.start, data.end()).map_err(|e| report(sbi.sb, e))?;
        prev = e.logical_end();
        if let Some(t) = f(&e) {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// Loads all extents into a vector (for changes). Allocations under the metadata lock are
/// GFP_KERNEL inside the lock's NOFS scope.
fn load_extents(sbi: &SbInfo, inode: *mut bindings::inode, st: &FsInode) -> Result<KVec<Extent>> {
    let mut v = KVec::with_capacity(st.nr_extents as usize, GFP_KERNEL)?;
    let mut err = Ok(());
    scan_extents(sbi, inode, st, |e| match v.push(*e, GFP_KERNEL) {
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
fn store_extents(
    sbi: &SbInfo,
    g: &mut Locked<'_>,
    inode: *mut bindings::inode,
    st: &mut FsInode,
    v: &[Extent],
) -> Result {
    if v.len() > MAX_EXTENTS {
        return Err(Error::from_errno(-EFBIG));
    }
    let ino = ino_of(inode);
    if v.len() > INLINE_EXTENTS {
        let rest = v.get(INLINE_EXTENTS..).unwrap_or(&[]);
        let mut b = if st.extent_block == 0 {
            let blk = sbi.alloc_block(g, v.last().map_or(0, |e| e.start.saturating_add(e.len as u64)))?;
            st.extent_block = blk;
            st.blocks += 1;
            Buf::zeroed(sbi.sb, blk)?
        } else {
            Buf::read(sbi.sb, st.extent_block)?
        };
        extent_block_build(b.data_mut(), st.extent_block, ino, rest);
        b.mark_dirty(Some(inode));
    } else if st.extent_block != 0 {
        let blk = st.extent_block;
        sbi.free_block(g, blk)?;
        st.extent_block = 0;
        st.blocks = st.blocks.saturating_sub(1);
        Buf::zeroed(sbi.sb, blk)?.forget();
    }
    st.extents = [Extent::default(); INLINE_EXTENTS];
    for (d, s) in st.extents.iter_mut().zip(v.iter()) {
        *d = *s;
    }
    st.nr_extents = v.len() as u32;
    Ok(())
}

/// Allocates a block for file block `lblk` (unmapped) and maps it. Returns the device block.
pub fn alloc_file_block(
    sbi: &SbInfo,
    g: &mut Locked<'_>,
    inode: *mut bindings::inode,
    st: &mut FsInode,
    lblk: u64,
) -> Result<u64> {
    if lblk >= u32::MAX as u64 {
        return Err(Error::from_errno(-EFBIG));
    }
    let mut v = load_extents(sbi, inode, st)?;
    let at = v.iter().position(|e| e.logical as u64 > lblk).unwrap_or(v.len());
    let goal = match at.checked_sub(1).and_then(|i| v.get(i)) {
        Some(p) => p.start + p.len as u64 + (lblk - p.logical_end()),
        None => 0,
    };
    let pb = sbi.alloc_block(g, goal)?;
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
            sbi.free_block(g, pb)?;
            return Err(e);
        }
    }
    st.blocks += 1;
    if let Err(e) = store_extents(sbi, g, inode, st, &v) {
        st.blocks -= 1;
        sbi.free_block(g, pb)?;
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
pub fn map_block(sbi: &SbInfo, inode: *mut bindings::inode, st: &FsInode, lblk: u64) -> Result<Option<(u64, u64)>> {
    scan_extents(sbi, inode, st, |e| e.map(lblk).map(|p| (p, e.logical_end() - lblk)))
}

fn get_block(inode: *mut bindings::inode, iblock: u64, create: bool, max: u64) -> Result<(u64, u64, bool)> {
    let sbi = SbInfo::of(inode);
    let mut g = sbi.lock();
    let mut st = load(inode, &g);
    if let Some((p, run)) = map_block(sbi, inode, &st, iblock)? {
        return Ok((p, run.min(max).max(1), false));
    }
    if !create {
        return Ok((0, 0, false));
    }
    let p = alloc_file_block(sbi, &mut g, inode, &mut st, iblock)?;
    store(inode, &g, &st);
    drop(g);
    // SAFETY: live inode.
    unsafe { ffi::vexfs_c_mark_inode_dirty(inode) };
    Ok((p, 1, true))
}

/// `get_block_t` for the page cache: maps (or with `create`, allocates) file block `iblock`.
/// Reports `count` 0 for a hole. Errors: `ENOSPC`, `EFBIG`, `EUCLEAN`, `EIO`, `ENOMEM`.
#[no_mangle]
pub extern "C" fn vexfs_rs_get_block(
    inode: *mut bindings::inode,
    iblock: u64,
    create: c_int,
    max: u64,
    phys: *mut u64,
    count: *mut u64,
    is_new: *mut c_int,
) -> c_int {
    match get_block(inode, iblock, create != 0, max) {
        Ok((p, n, new)) => {
            // SAFETY: out-pointers from glue.c's stack.
            unsafe {
                *phys = p;
                *count = n;
                *is_new = new as c_int;
            }
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Frees the blocks at or past `keep` file blocks.
fn truncate_to(sbi: &SbInfo, g: &mut Locked<'_>, inode: *mut bindings::inode, st: &mut FsInode, keep: u64) -> Result {
    let v = load_extents(sbi, inode, st)?;
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
            sbi.free_block(g, e.start + i)?;
            st.blocks = st.blocks.saturating_sub(1);
        }
        if keep_len > 0 {
            out.push(Extent { logical: e.logical, len: keep_len as u32, start: e.start }, GFP_KERNEL)?;
        }
    }
    store_extents(sbi, g, inode, st, &out)
}

/// Frees the blocks past `i_size` (after truncate or a failed write).
#[no_mangle]
pub extern "C" fn vexfs_rs_truncate_blocks(inode: *mut bindings::inode) {
    let sbi = SbInfo::of(inode);
    let keep = size_of_inode(inode).div_ceil(BLOCK_SIZE as u64);
    let mut g = sbi.lock();
    let mut st = load(inode, &g);
    let r = truncate_to(sbi, &mut g, inode, &mut st, keep);
    store(inode, &g, &st);
    drop(g);
    if let Err(e) = r {
        pr_err!("vexfs ({}): truncating inode {} failed: {:?}\n", crate::sb::sb_name(sbi.sb), ino_of(inode), e);
    }
    // SAFETY: live inode.
    unsafe { ffi::vexfs_c_mark_inode_dirty(inode) };
}

/// Frees everything an unlinked inode owns on disk, then its inode number (from evict).
#[no_mangle]
pub extern "C" fn vexfs_rs_free_inode_disk(inode: *mut bindings::inode) {
    let sbi = SbInfo::of(inode);
    let ino = ino_of(inode);
    // Vectors first: the index lock comes before the metadata lock.
    if load(inode, &sbi.lock()).vec_count > 0 {
        crate::vector::free_inode_vectors(inode);
    }
    let mut g = sbi.lock();
    let mut st = load(inode, &g);
    if !st.on_disk {
        return;
    }
    let r = (|| -> Result {
        truncate_to(sbi, &mut g, inode, &mut st, 0)?;
        if st.vec_block != 0 {
            // Left behind only if removing the vectors failed (logged): free the block anyway.
            sbi.free_block(&mut g, st.vec_block)?;
            st.vec_block = 0;
        }
        let (blk, off) = sbi.disk.inode_pos(ino).ok_or(EINVAL)?;
        let mut b = Buf::read(sbi.sb, blk)?;
        if let Some(raw) = b.data_mut().get_mut(off..off + INODE_SIZE) {
            raw.fill(0);
        }
        b.mark_dirty(None);
        sbi.free_ino(&mut g, ino)
    })();
    st.on_disk = false;
    store(inode, &g, &st);
    if let Err(e) = r {
        pr_err!("vexfs ({}): freeing inode {} failed: {:?}\n", crate::sb::sb_name(sbi.sb), ino, e);
    }
}

/// `write_inode`: writes the inode into the inode table; with `sync`, waits for the write.
#[no_mangle]
pub extern "C" fn vexfs_rs_write_inode(inode: *mut bindings::inode, sync: c_int) -> c_int {
    let sbi = SbInfo::of(inode);
    let g = sbi.lock();
    let st = load(inode, &g);
    if !st.on_disk {
        return 0;
    }
    let b = match write_disk_inode(sbi, &g, inode, &st) {
        Ok(b) => b,
        Err(e) => return e.to_errno(),
    };
    drop(g);
    if sync != 0 {
        if let Err(e) = b.sync() {
            return e.to_errno();
        }
    }
    0
}

/// `iget` for C (lookup).
#[no_mangle]
pub extern "C" fn vexfs_rs_iget(sb: *mut bindings::super_block, ino: u64, out: *mut *mut bindings::inode) -> c_int {
    // SAFETY: `sb` is a mounted vexfs.
    let sbi = unsafe { SbInfo::get(sb) };
    match iget(sbi, ino) {
        Ok(i) => {
            // SAFETY: out-pointer from glue.c.
            unsafe { *out = i };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Whether a mode is a directory.
pub fn is_dir_mode(mode: u16) -> bool {
    mode & S_IFMT == S_IFDIR
}
