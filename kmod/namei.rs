//! Directories: lookup, create, link, unlink, rename and readdir over directory blocks, linear
//! (every block scanned) or indexed (`crate::dir_index`: one bucket found by the name's key,
//! readdir in key order; a linear directory of one full block becomes indexed on a filesystem
//! with `FEATURE_INCOMPAT_DIR_INDEX`, in [`make_room`]).

use crate::buf::Buf;
use crate::dir_index::{self as dx, DirRead, DirStore};
use crate::error::{FormatError, ENAMETOOLONG, ENOTEMPTY};
use crate::format::block::Csum;
use crate::format::dir::{
    self, check_dir_block_csum, dirents, dt_from_mode, init_dir_block, seal_dir_block, DIR_HEADER, NAME_MAX,
};
use crate::format::inode::INODE_FLAG_INDEX;
use crate::format::superblock::FEATURE_INCOMPAT_DIR_INDEX;
use crate::format::BLOCK_SIZE;
use crate::inode::{
    alloc_file_block, is_dir_mode, map_block, mapped_end, tree_err, unmap_block, write_disk_inode, TreeErr,
};
use crate::sb::{FsInode, Inode, Locked, LockedInode, NewInode, SuperBlock};
use crate::txn::{Handle, TxnKind};
use crate::vfs::dir::DirContext;
use kernel::prelude::*;

/// Whether the directory whose state is `st` is indexed.
fn indexed(st: &FsInode) -> bool {
    st.flags & INODE_FLAG_INDEX != 0
}

/// An indexed directory in the buffer cache, read (the metadata lock held), or changed in place
/// without allocating (a remove or retarget inside the caller's handle).
struct DxView<'a> {
    dir: &'a Inode,
    st: &'a FsInode,
}

impl DirRead for DxView<'_> {
    type Error = TreeErr;
    fn map(&mut self, logical: u64) -> core::result::Result<Option<u64>, TreeErr> {
        Ok(map_block(self.dir, self.st, logical)?.map(|(p, _)| p))
    }
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> core::result::Result<R, TreeErr> {
        Ok(f(Buf::read(self.dir.sb(), n)?.data()))
    }
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> core::result::Result<R, TreeErr> {
        let b = Buf::read(self.dir.sb(), n)?;
        Ok(f(b.data(), b.csum()))
    }
    fn mark_checked(&mut self, n: u64) {
        Buf::set_checked(self.dir.sb(), n);
    }
    fn owner(&self) -> u64 {
        self.dir.ino()
    }
}

impl DirStore for DxView<'_> {
    fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> core::result::Result<R, TreeErr> {
        dx_write(self.dir.sb(), n, f)
    }
    fn alloc(&mut self, _logical: u64) -> core::result::Result<u64, TreeErr> {
        Err(TreeErr::Kernel(EIO))
    }
    fn unmap(&mut self, _logical: u64) -> core::result::Result<(), TreeErr> {
        Err(TreeErr::Kernel(EIO))
    }
    fn copy(&mut self, _from: u64, _to: u64) -> core::result::Result<(), TreeErr> {
        Err(TreeErr::Kernel(EIO))
    }
    fn no_space(&mut self) -> TreeErr {
        TreeErr::Kernel(ENOSPC)
    }
}

/// Changes block `n` in the running transaction.
fn dx_write<R>(sb: &SuperBlock, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> core::result::Result<R, TreeErr> {
    let mut b = Buf::read(sb, n)?;
    let r = f(b.data_mut());
    sb.dirty(&b)?;
    Ok(r)
}

/// An indexed directory changed inside a journal handle (the metadata lock held): buckets
/// allocated and unmapped through its block map; its size covers its highest mapped block.
struct DxTxn<'a, 'b> {
    g: &'a mut Locked<'b>,
    dir: &'a LockedInode,
    st: &'a mut FsInode,
}

impl DirRead for DxTxn<'_, '_> {
    type Error = TreeErr;
    fn map(&mut self, logical: u64) -> core::result::Result<Option<u64>, TreeErr> {
        DxView { dir: self.dir, st: self.st }.map(logical)
    }
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> core::result::Result<R, TreeErr> {
        DxView { dir: self.dir, st: self.st }.read(n, f)
    }
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> core::result::Result<R, TreeErr> {
        DxView { dir: self.dir, st: self.st }.read_sealed(n, f)
    }
    fn mark_checked(&mut self, n: u64) {
        DxView { dir: self.dir, st: self.st }.mark_checked(n)
    }
    fn owner(&self) -> u64 {
        self.dir.ino()
    }
}

impl DirStore for DxTxn<'_, '_> {
    fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> core::result::Result<R, TreeErr> {
        dx_write(self.dir.sb(), n, f)
    }
    fn alloc(&mut self, logical: u64) -> core::result::Result<u64, TreeErr> {
        let p = alloc_file_block(self.g, self.dir, self.st, logical)?;
        let end = logical.saturating_add(1).saturating_mul(BLOCK_SIZE as u64);
        if self.dir.size() < end {
            self.dir.set_size(end);
        }
        Ok(p)
    }
    fn unmap(&mut self, logical: u64) -> core::result::Result<(), TreeErr> {
        unmap_block(self.g, self.dir, self.st, logical)?;
        // The size covers the highest mapped block exactly (a child unmapped after a failed
        // split was the highest).
        let end = mapped_end(self.dir, self.st)?.saturating_mul(BLOCK_SIZE as u64);
        if self.dir.size() != end {
            self.dir.set_size(end);
        }
        Ok(())
    }
    fn copy(&mut self, from: u64, to: u64) -> core::result::Result<(), TreeErr> {
        let sb = self.dir.sb();
        let src = Buf::read(sb, from)?;
        let mut dst = Buf::zeroed(sb, to)?;
        dst.data_mut().copy_from_slice(src.data());
        sb.dirty(&dst)?;
        Ok(())
    }
    fn no_space(&mut self) -> TreeErr {
        TreeErr::Kernel(ENOSPC)
    }
}

/// Before a dirent `name` is added to `dir` (its `i_rwsem` held exclusively, outside any
/// journal handle): makes sure the addition will not need more than a create's blocks. An
/// indexed directory's bucket for `name` is split until it has room, and a linear directory
/// of one full block on a filesystem with `FEATURE_INCOMPAT_DIR_INDEX` becomes indexed first:
/// each step in a handle of its own ([`TxnKind::Worst`], which counts
/// `dir_index::split_blocks_bound`), a consistent state whatever follows. A conversion needs
/// `dir_index::CONVERT_BLOCKS` blocks free, a split `dir_index::split_alloc_bound`. Errors:
/// `ENOSPC` (nothing of the failed step done), `EROFS`, `EUCLEAN`, `EIO` (these abort the
/// journal).
pub fn make_room(dir: &LockedInode, name: &[u8]) -> Result {
    let sb = dir.sb();
    if sb.disk().feature_incompat & FEATURE_INCOMPAT_DIR_INDEX == 0 || !dir::valid_name(name) {
        // The operation itself reports a bad name.
        return Ok(());
    }
    // Each step halves a bucket's keys: the deepest bucket bounds the steps.
    for _ in 0..dx::MAX_DEPTH + 2 {
        {
            let g = sb.lock();
            let st = dir.load(&g);
            if indexed(&st) {
                if dx::has_room(&mut DxView { dir, st: &st }, name).map_err(|e| tree_err(sb, e))? {
                    return Ok(());
                }
            } else {
                if dir_nblocks(dir) != 1 {
                    return Ok(());
                }
                let (_, b) = dir_block(dir, &st, 0)?;
                if dir::fits(b.data(), name.len()).map_err(|e| sb.report(e))? {
                    return Ok(());
                }
            }
        }
        let _h = Handle::start(sb, TxnKind::Worst)?;
        let mut g = sb.lock();
        let mut st = dir.load(&g);
        // Refused before any change when the blocks may run out half way: a conversion that
        // could not split next would change the directory for a create that fails, and a
        // split out of blocks cannot always undo itself.
        let need = if indexed(&st) { dx::split_alloc_bound(st.nr_extents) } else { dx::CONVERT_BLOCKS };
        if g.allocatable_blocks() < need {
            return Err(ENOSPC);
        }
        let r = if indexed(&st) {
            dx::make_room(&mut DxTxn { g: &mut g, dir, st: &mut st }, name).map(|_| ())
        } else {
            convert(&mut g, dir, &mut st)
        };
        dir.store(&g, &st);
        let r = r.map_err(|e| tree_err(sb, e)).and_then(|()| write_disk_inode(&g, dir, &st));
        drop(g);
        if let Err(e) = r {
            crate::txn::failed(sb, "making room in a directory", e);
            return Err(e);
        }
    }
    Err(sb.corrupt("directory bucket still full at the deepest level", dir.ino()))
}

/// Makes the linear directory `dir` of one block indexed (`dir_index::convert`, a random seed)
/// and sets its flag.
fn convert(g: &mut Locked<'_>, dir: &LockedInode, st: &mut FsInode) -> core::result::Result<(), TreeErr> {
    let Some((block0, _)) = map_block(dir, st, 0)? else {
        return Err(FormatError::Corrupt { what: "hole in directory at block", value: 0 }.into());
    };
    let mut seed = [0u8; 16];
    for w in seed.chunks_mut(4) {
        w.copy_from_slice(&crate::vfs::random_u32().to_le_bytes());
    }
    dx::convert(&mut DxTxn { g, dir, st }, block0, seed)?;
    st.flags |= INODE_FLAG_INDEX;
    Ok(())
}

fn check_name(name: &[u8]) -> Result {
    if name.len() > NAME_MAX {
        return Err(Error::from_errno(-ENAMETOOLONG));
    }
    if !dir::valid_name(name) {
        return Err(EINVAL);
    }
    Ok(())
}

/// Directory block `i` of `dir`: its device block and buffer, header checked.
fn dir_block(dir: &Inode, st: &FsInode, i: u64) -> Result<(u64, Buf)> {
    let sb = dir.sb();
    let Some((phys, _)) = map_block(dir, st, i)? else {
        return Err(sb.corrupt("hole in directory at block", i));
    };
    let b = Buf::read(sb, phys)?;
    check_dir_block_csum(b.data(), phys, dir.ino(), b.csum()).map_err(|e| sb.report(e))?;
    Ok((phys, b))
}

fn dir_nblocks(dir: &Inode) -> u64 {
    dir.size() / BLOCK_SIZE as u64
}

/// The dirent `name` of `dir`: (block index, inode number), if present; an indexed
/// directory's block index is `u64::MAX` (its callers go through `dir_index`).
fn find_entry(dir: &Inode, st: &FsInode, name: &[u8]) -> Result<Option<(u64, u32)>> {
    if indexed(st) {
        let found = dx::lookup(&mut DxView { dir, st }, name).map_err(|e| tree_err(dir.sb(), e))?;
        return Ok(found.map(|(ino, _)| (u64::MAX, ino)));
    }
    for i in 0..dir_nblocks(dir) {
        let (_, b) = dir_block(dir, st, i)?;
        if let Some(d) = dir::find(b.data(), name).map_err(|e| dir.sb().report(e))? {
            return Ok(Some((i, d.ino)));
        }
    }
    Ok(None)
}

/// Adds the dirent `name -> ino` to `dir`, growing the directory by a block if no block has
/// room. `st` is the directory's state (stored by the caller).
fn add_entry(g: &mut Locked<'_>, dir: &LockedInode, st: &mut FsInode, name: &[u8], ino: u64, dt: u8) -> Result {
    let sb = dir.sb();
    let ino32 = u32::try_from(ino).map_err(|_| EINVAL)?;
    if indexed(st) {
        // `make_room` made room before the handle: a split here would outrun its credits.
        let r = dx::insert_splitting(&mut DxView { dir, st }, name, ino32, dt, 0).map_err(|e| tree_err(sb, e));
        if r == Err(ENOSPC) {
            pr_err!("vexfs ({}): directory {}: no room made for a name\n", sb.name(), dir.ino());
        }
        return r;
    }
    let dino = dir.ino();
    let n = dir_nblocks(dir);
    for i in 0..n {
        let (phys, mut b) = dir_block(dir, st, i)?;
        if dir::insert(b.data_mut(), name, ino32, dt).map_err(|e| sb.report(e))? {
            seal_dir_block(b.data_mut(), phys, dino);
            sb.dirty(&b)?;
            return Ok(());
        }
    }
    let phys = alloc_file_block(g, dir, st, n)?;
    let mut b = Buf::zeroed(sb, phys)?;
    init_dir_block(b.data_mut(), phys, dino);
    // A fresh block always has room for one name of at most NAME_MAX bytes.
    dir::insert(b.data_mut(), name, ino32, dt).map_err(|e| sb.report(e))?;
    seal_dir_block(b.data_mut(), phys, dino);
    sb.dirty(&b)?;
    dir.set_size((n + 1) * BLOCK_SIZE as u64);
    Ok(())
}

/// Removes the dirent `name` of `dir`, which must point at `ino`.
fn remove_entry(dir: &Inode, st: &FsInode, name: &[u8], ino: u64) -> Result {
    let sb = dir.sb();
    let Some((i, found)) = find_entry(dir, st, name)? else {
        return Err(ENOENT);
    };
    if found as u64 != ino {
        return Err(sb.corrupt("dirent points at another inode than the dentry", found as u64));
    }
    if indexed(st) {
        dx::remove(&mut DxView { dir, st }, name).map_err(|e| tree_err(sb, e))?;
        return Ok(());
    }
    let (phys, mut b) = dir_block(dir, st, i)?;
    dir::remove(b.data_mut(), name).map_err(|e| sb.report(e))?;
    seal_dir_block(b.data_mut(), phys, dir.ino());
    sb.dirty(&b)?;
    Ok(())
}

/// Looks `name` up in `dir`: its inode number, or 0 when absent. Errors: `ENAMETOOLONG`,
/// `EUCLEAN`, `EIO`.
pub fn lookup(dir: &Inode, name: &[u8]) -> Result<u64> {
    if name.len() > NAME_MAX {
        return Err(Error::from_errno(-ENAMETOOLONG));
    }
    let g = dir.sb().lock();
    let st = dir.load(&g);
    Ok(find_entry(dir, &st, name)?.map_or(0, |(_, ino)| ino as u64))
}

/// Gives the new VFS `inode` an inode number, a disk inode and the dirent `name` in `dir`.
/// Errors: `EEXIST`, `ENOSPC`, `ENAMETOOLONG`, `EINVAL` (bad name), `EUCLEAN`, `EIO`.
pub fn create(dir: &LockedInode, name: &[u8], mode: u16, inode: &NewInode) -> Result {
    check_name(name)?;
    // A live directory has at least 2 links (the VFS refuses creates in a removed one): fewer
    // is a corrupt image, and `inc_nlink` of a directory at 0 (a mkdir in it) a kernel warning.
    if dir.nlink() < 2 {
        return Err(dir.sb().corrupt("link count of a directory", u64::from(dir.nlink())));
    }
    let mut g = dir.sb().lock();
    let mut dst = dir.load(&g);
    if find_entry(dir, &dst, name)?.is_some() {
        return Err(EEXIST);
    }
    let ino = g.alloc_ino()?;
    let is_dir = is_dir_mode(mode);
    inode.set_ino(ino);
    inode.init_owner(dir, mode);
    inode.set_times_now();
    inode.set_random_generation();
    inode.set_nlink(if is_dir { 2 } else { 1 });
    inode.set_size(0);
    let st = FsInode { on_disk: true, parent: if is_dir { dir.ino() as u32 } else { 0 }, ..FsInode::default() };
    inode.store(&g, &st);
    // The dirent first: a directory out of blocks (ENOSPC) fails before the disk inode is
    // written, so the undo below leaves nothing behind. A failure after it (EIO, EUCLEAN)
    // aborts the journal (glue.c), so the half-made create is never committed.
    let r =
        add_entry(&mut g, dir, &mut dst, name, ino, dt_from_mode(mode)).and_then(|_| write_disk_inode(&g, inode, &st));
    dir.store(&g, &dst);
    if let Err(e) = r {
        inode.store(&g, &FsInode::default());
        inode.clear_nlink();
        g.free_ino(ino)?;
        return Err(e);
    }
    if is_dir {
        dir.inc_nlink();
    }
    drop(g);
    dir.touch();
    Ok(())
}

/// Gives the new VFS `inode` (a regular file of `O_TMPFILE`, or a rename's whiteout: a
/// character device 0:0) an inode number and a disk inode, with no dirent: link count 1 in
/// memory; the caller's `d_tmpfile` drops it to 0 (an orphan on disk until it is linked or
/// closed: a crash meanwhile leaves an orphan, which the next mount frees), or the rename
/// points a dirent at it. Errors: `ENOSPC` (no inode), `EUCLEAN`, `EIO`.
pub fn create_unlinked(dir: &Inode, mode: u16, inode: &NewInode) -> Result {
    let mut g = dir.sb().lock();
    let ino = g.alloc_ino()?;
    inode.set_ino(ino);
    inode.init_owner(dir, mode);
    inode.set_times_now();
    inode.set_random_generation();
    inode.set_nlink(1);
    inode.set_size(0);
    let st = FsInode { on_disk: true, ..FsInode::default() };
    inode.store(&g, &st);
    if let Err(e) = write_disk_inode(&g, inode, &st) {
        inode.store(&g, &FsInode::default());
        inode.clear_nlink();
        g.free_ino(ino)?;
        return Err(e);
    }
    Ok(())
}

/// Adds the dirent `name` in `dir` for the existing `inode` (link count: caller).
/// Errors: as [`create`].
pub fn link(dir: &LockedInode, name: &[u8], inode: &Inode) -> Result {
    check_name(name)?;
    let mut g = dir.sb().lock();
    let mut dst = dir.load(&g);
    if find_entry(dir, &dst, name)?.is_some() {
        return Err(EEXIST);
    }
    let r = add_entry(&mut g, dir, &mut dst, name, inode.ino(), dt_from_mode(inode.mode()));
    dir.store(&g, &dst);
    drop(g);
    r?;
    dir.touch();
    Ok(())
}

/// The link counts that removing a dirent of `dir` pointing at `inode` makes the caller drop
/// (glue.c: one of `inode`'s, and for a directory a second one and one of `dir`'s) must be
/// there: a crafted or damaged image can have more dirents pointing at an inode than its link
/// count, or a directory counting fewer subdirectories than it holds, and `drop_nlink` at 0
/// is a kernel warning (and a wrapped count). Corruption (`EUCLEAN`, logged) then, before
/// anything changes.
fn check_links(dir: &Inode, inode: &Inode) -> Result {
    let (need, dir_need) = if inode.is_dir() { (2, 3) } else { (1, 0) };
    if inode.nlink() < need {
        return Err(dir.sb().corrupt("link count of an inode a dirent points at", u64::from(inode.nlink())));
    }
    if dir.nlink() < dir_need {
        return Err(dir.sb().corrupt("link count of a directory holding a subdirectory", u64::from(dir.nlink())));
    }
    Ok(())
}

/// Removes the dirent `name` (pointing at `inode`) from `dir` (link count: caller).
/// Errors: `ENOENT`, `EUCLEAN` (also for link counts below what the removal drops), `EIO`.
pub fn unlink(dir: &LockedInode, name: &[u8], inode: &Inode) -> Result {
    check_links(dir, inode)?;
    let g = dir.sb().lock();
    let dst = dir.load(&g);
    remove_entry(dir, &dst, name, inode.ino())?;
    drop(g);
    dir.touch();
    Ok(())
}

/// `Ok` if the directory has no entries, else `ENOTEMPTY`.
pub fn dir_empty(dir: &Inode) -> Result {
    let g = dir.sb().lock();
    let st = dir.load(&g);
    if indexed(&st) {
        return match dx::is_empty(&mut DxView { dir, st: &st }).map_err(|e| tree_err(dir.sb(), e))? {
            true => Ok(()),
            false => Err(Error::from_errno(-ENOTEMPTY)),
        };
    }
    for i in 0..dir_nblocks(dir) {
        let (_, b) = dir_block(dir, &st, i)?;
        if !dir::is_empty(b.data()).map_err(|e| dir.sb().report(e))? {
            return Err(Error::from_errno(-ENOTEMPTY));
        }
    }
    Ok(())
}

/// Moves the dirent `old_name` of `old_dir` to `new_name` in `new_dir`, replacing `target`
/// (if any). Link counts and times of the inodes: caller.
/// Errors: `EEXIST`, `ENOENT`, `ENOSPC`, `ENAMETOOLONG`, `EINVAL`, `EUCLEAN`, `EIO`.
pub fn rename(
    old_dir: &LockedInode,
    old_name: &[u8],
    new_dir: &LockedInode,
    new_name: &[u8],
    inode: &Inode,
    target: Option<&Inode>,
    whiteout: Option<&Inode>,
) -> Result {
    check_name(new_name)?;
    if let Some(target) = target {
        check_links(new_dir, target)?;
    }
    if inode.is_dir() && old_dir.ino() != new_dir.ino() {
        check_links(old_dir, inode)?;
    }
    let sb = old_dir.sb();
    let mut g = sb.lock();
    let ino = inode.ino();
    let dt = dt_from_mode(inode.mode());
    let mut nst = new_dir.load(&g);
    match target {
        None => {
            if find_entry(new_dir, &nst, new_name)?.is_some() {
                return Err(EEXIST);
            }
            let r = add_entry(&mut g, new_dir, &mut nst, new_name, ino, dt);
            new_dir.store(&g, &nst);
            r?;
        }
        Some(target) => retarget(new_dir, &nst, new_name, target.ino(), ino, dt)?,
    }
    let ost = old_dir.load(&g);
    match whiteout {
        None => remove_entry(old_dir, &ost, old_name, ino)?,
        // RENAME_WHITEOUT: the old name now names the whiteout (a character device 0:0).
        Some(w) => retarget(old_dir, &ost, old_name, ino, w.ino(), dt_from_mode(w.mode()))?,
    }
    let moved = old_dir.ino() != new_dir.ino();
    if inode.is_dir() && moved {
        let mut st = inode.load(&g);
        st.parent = new_dir.ino() as u32;
        inode.store(&g, &st);
    }
    drop(g);
    old_dir.touch();
    if moved {
        new_dir.touch();
    }
    Ok(())
}

/// Points the dirent `name` of `dir`, which names inode `was`, at inode `ino` of type `dt`.
/// Errors: `ENOENT`, `EUCLEAN` (the dirent names another inode), `EIO`.
fn retarget(dir: &Inode, st: &FsInode, name: &[u8], was: u64, ino: u64, dt: u8) -> Result {
    let sb = dir.sb();
    let Some((i, found)) = find_entry(dir, st, name)? else {
        return Err(ENOENT);
    };
    if u64::from(found) != was {
        return Err(sb.corrupt("renamed dirent points at another inode", u64::from(found)));
    }
    let ino = u32::try_from(ino).map_err(|_| EINVAL)?;
    if indexed(st) {
        dx::retarget(&mut DxView { dir, st }, name, ino, dt).map_err(|e| tree_err(sb, e))?;
        return Ok(());
    }
    let (phys, mut b) = dir_block(dir, st, i)?;
    dir::retarget(b.data_mut(), name, ino, dt).map_err(|e| sb.report(e))?;
    seal_dir_block(b.data_mut(), phys, dir.ino());
    sb.dirty(&b)
}

/// `RENAME_EXCHANGE`: the dirent `old_name` of `old_dir` (naming `a`) and `new_name` of
/// `new_dir` (naming `b`) swap their inodes; a directory moved to the other directory takes
/// it as parent. Link counts and times: caller. Errors: `ENOENT`, `EUCLEAN`, `EIO`.
pub fn exchange(
    old_dir: &LockedInode,
    old_name: &[u8],
    new_dir: &LockedInode,
    new_name: &[u8],
    a: &Inode,
    b: &Inode,
) -> Result {
    let moved = old_dir.ino() != new_dir.ino();
    if moved {
        // A directory crossing to the other parent takes a link from the one it leaves, which
        // must have it (as a rename's, see `check_links`).
        if a.is_dir() {
            check_links(old_dir, a)?;
        }
        if b.is_dir() {
            check_links(new_dir, b)?;
        }
    }
    let sb = old_dir.sb();
    let g = sb.lock();
    let ost = old_dir.load(&g);
    retarget(old_dir, &ost, old_name, a.ino(), b.ino(), dt_from_mode(b.mode()))?;
    let nst = new_dir.load(&g);
    retarget(new_dir, &nst, new_name, b.ino(), a.ino(), dt_from_mode(a.mode()))?;
    if moved {
        for (inode, parent) in [(a, new_dir.ino()), (b, old_dir.ino())] {
            if inode.is_dir() {
                let mut st = inode.load(&g);
                st.parent = parent as u32;
                inode.store(&g, &st);
            }
        }
    }
    drop(g);
    old_dir.touch();
    if moved {
        new_dir.touch();
    }
    Ok(())
}

/// readdir after "." and "..": positions are byte offsets of dirents in a linear directory,
/// keys (`dir_index::key_pos`) in an indexed one. Errors: `EUCLEAN`, `EIO`, `ENOMEM`.
pub fn iterate(dir: &Inode, ctx: &mut DirContext) -> Result {
    let sb = dir.sb();
    if indexed(&dir.load(&sb.lock())) {
        return iterate_indexed(dir, ctx);
    }
    let bs = BLOCK_SIZE as i64;
    let mut pos = ctx.pos();
    let n = dir_nblocks(dir) as i64;
    loop {
        if pos < DIR_HEADER as i64 {
            pos = DIR_HEADER as i64;
        }
        let blk = pos / bs;
        if blk >= n {
            break;
        }
        let off = ((pos % bs) as usize).max(DIR_HEADER);
        // Only the mapping and the read need the lock: dirents are emitted without it, since
        // dir_emit copies to user memory and may fault.
        let b = {
            let g = sb.lock();
            let st = dir.load(&g);
            dir_block(dir, &st, blk as u64)?.1
        };
        for d in dirents(b.data()) {
            let d = d.map_err(|e| sb.report(e))?;
            if d.offset < off || d.ino == 0 {
                continue;
            }
            let here = blk * bs + d.offset as i64;
            ctx.set_pos(here);
            if !ctx.emit(d.name, d.ino as u64, d.file_type) {
                return Ok(());
            }
            ctx.set_pos(here + d.rec_len as i64);
        }
        pos = (blk + 1) * bs;
        ctx.set_pos(pos);
    }
    Ok(())
}

/// readdir of an indexed directory: from the bucket holding the position's key, each bucket's
/// entries in key order (the position of each is its key's), then the next bucket's, to
/// [`dx::POS_EOF`]. A position names a key, so it stays valid whatever splits, creates and
/// unlinks happen between two calls. The lock is held to find and read a bucket, not while
/// entries are emitted (user memory may fault). Errors: `EUCLEAN`, `EIO`, `ENOMEM`.
fn iterate_indexed(dir: &Inode, ctx: &mut DirContext) -> Result {
    let sb = dir.sb();
    let mut sorted = KVec::<(u64, u16)>::with_capacity(dx::MAX_BLOCK_ENTRIES, GFP_KERNEL)?;
    for _ in 0..dx::MAX_BLOCK_ENTRIES {
        sorted.push((0, 0), GFP_KERNEL)?;
    }
    let Ok(sorted) = <&mut [(u64, u16); dx::MAX_BLOCK_ENTRIES]>::try_from(&mut sorted[..]) else {
        return Err(EINVAL);
    };
    loop {
        let Some(key) = dx::pos_key(ctx.pos()) else { return Ok(()) };
        let (leaf, b, seed) = {
            let g = sb.lock();
            let st = dir.load(&g);
            let mut v = DxView { dir, st: &st };
            let (_, h) = dx::read_header(&mut v).map_err(|e| tree_err(sb, e))?;
            let leaf = dx::find_leaf(&mut v, &h, key).map_err(|e| tree_err(sb, e))?;
            let b = Buf::read(sb, leaf.block)?;
            check_dir_block_csum(b.data(), leaf.block, dir.ino(), b.csum()).map_err(|e| sb.report(e))?;
            (leaf, b, h.seed)
        };
        let n = dx::sorted_entries(b.data(), &seed, key, sorted).map_err(|e| sb.report(e))?;
        for &(k, off) in sorted.iter().take(n) {
            let d = dir::dirent_at(b.data(), usize::from(off)).map_err(|e| sb.report(e))?;
            ctx.set_pos(dx::key_pos(k));
            if !ctx.emit(d.name, u64::from(d.ino), d.file_type) {
                return Ok(());
            }
        }
        let (_, hi) = leaf.keys();
        ctx.set_pos(if hi >= 1 << dx::KEY_BITS { dx::POS_EOF } else { dx::key_pos(hi) });
        crate::vfs::access::relax()?;
    }
}
