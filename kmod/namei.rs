//! Directories: lookup, create, link, unlink, rename and readdir over directory blocks.

use crate::buf::Buf;
use crate::error::{ENAMETOOLONG, ENOTEMPTY};
use crate::ffi;
use crate::format::dir::{
    self, check_dir_block, dirents, dt_from_mode, init_dir_block, seal_dir_block, DIR_HEADER, NAME_MAX,
};
use crate::format::BLOCK_SIZE;
use crate::inode::{
    alloc_file_block, ino_of, is_dir_mode, load, map_block, mode_of, size_of_inode, store, write_disk_inode, FsInode,
};
use crate::sb::{corrupt, errno_of, report, Locked, SbInfo};
use core::ffi::c_int;
use kernel::bindings;
use kernel::prelude::*;

/// The name bytes passed by C.
///
/// # Safety
/// `name` points at `len` readable bytes for the duration of the call.
unsafe fn name_slice<'a>(name: *const u8, len: u32) -> &'a [u8] {
    // SAFETY: per the function contract.
    unsafe { core::slice::from_raw_parts(name, len as usize) }
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
fn dir_block(sbi: &SbInfo, dir: *mut bindings::inode, st: &FsInode, i: u64) -> Result<(u64, Buf)> {
    let Some((phys, _)) = map_block(sbi, dir, st, i)? else {
        return Err(corrupt(sbi.sb, "hole in directory at block", i));
    };
    let b = Buf::read(sbi.sb, phys)?;
    check_dir_block(b.data(), phys, ino_of(dir)).map_err(|e| report(sbi.sb, e))?;
    Ok((phys, b))
}

fn dir_nblocks(dir: *mut bindings::inode) -> u64 {
    size_of_inode(dir) / BLOCK_SIZE as u64
}

/// The dirent `name` of `dir`: (block index, inode number), if present.
fn find_entry(sbi: &SbInfo, dir: *mut bindings::inode, st: &FsInode, name: &[u8]) -> Result<Option<(u64, u32)>> {
    for i in 0..dir_nblocks(dir) {
        let (_, b) = dir_block(sbi, dir, st, i)?;
        if let Some(d) = dir::find(b.data(), name).map_err(|e| report(sbi.sb, e))? {
            return Ok(Some((i, d.ino)));
        }
    }
    Ok(None)
}

/// Adds the dirent `name -> ino` to `dir`, growing the directory by a block if no block has
/// room. `st` is the directory's state (stored by the caller).
fn add_entry(
    sbi: &SbInfo,
    g: &mut Locked<'_>,
    dir: *mut bindings::inode,
    st: &mut FsInode,
    name: &[u8],
    ino: u64,
    dt: u8,
) -> Result {
    let ino32 = u32::try_from(ino).map_err(|_| EINVAL)?;
    let dino = ino_of(dir);
    let n = dir_nblocks(dir);
    for i in 0..n {
        let (phys, mut b) = dir_block(sbi, dir, st, i)?;
        if dir::insert(b.data_mut(), name, ino32, dt).map_err(|e| report(sbi.sb, e))? {
            seal_dir_block(b.data_mut(), phys, dino);
            b.mark_dirty(Some(dir));
            return Ok(());
        }
    }
    let phys = alloc_file_block(sbi, g, dir, st, n)?;
    let mut b = Buf::zeroed(sbi.sb, phys)?;
    init_dir_block(b.data_mut(), phys, dino);
    // A fresh block always has room for one name of at most NAME_MAX bytes.
    dir::insert(b.data_mut(), name, ino32, dt).map_err(|e| report(sbi.sb, e))?;
    seal_dir_block(b.data_mut(), phys, dino);
    b.mark_dirty(Some(dir));
    // SAFETY: live directory inode; its i_rwsem is held by the VFS.
    unsafe { ffi::vexfs_c_set_i_size(dir, ((n + 1) * BLOCK_SIZE as u64) as i64) };
    Ok(())
}

/// Removes the dirent `name` of `dir`, which must point at `ino`.
fn remove_entry(sbi: &SbInfo, dir: *mut bindings::inode, st: &FsInode, name: &[u8], ino: u64) -> Result {
    let Some((i, found)) = find_entry(sbi, dir, st, name)? else {
        return Err(ENOENT);
    };
    if found as u64 != ino {
        return Err(corrupt(sbi.sb, "dirent points at another inode than the dentry", found as u64));
    }
    let (phys, mut b) = dir_block(sbi, dir, st, i)?;
    dir::remove(b.data_mut(), name).map_err(|e| report(sbi.sb, e))?;
    seal_dir_block(b.data_mut(), phys, ino_of(dir));
    b.mark_dirty(Some(dir));
    Ok(())
}

fn lookup(dir: *mut bindings::inode, name: &[u8]) -> Result<u64> {
    if name.len() > NAME_MAX {
        return Err(Error::from_errno(-ENAMETOOLONG));
    }
    let sbi = SbInfo::of(dir);
    let g = sbi.lock();
    let st = load(dir, &g);
    Ok(find_entry(sbi, dir, &st, name)?.map_or(0, |(_, ino)| ino as u64))
}

/// Looks `name` up in `dir`: its inode number, or 0 when absent.
#[no_mangle]
pub extern "C" fn vexfs_rs_lookup(dir: *mut bindings::inode, name: *const u8, len: u32, ino: *mut u64) -> c_int {
    // SAFETY: the dentry name lives for the call.
    match lookup(dir, unsafe { name_slice(name, len) }) {
        Ok(i) => {
            // SAFETY: out-pointer from glue.c.
            unsafe { *ino = i };
            0
        }
        Err(e) => e.to_errno(),
    }
}

fn create(dir: *mut bindings::inode, name: &[u8], mode: u16, inode: *mut bindings::inode) -> Result {
    check_name(name)?;
    let sbi = SbInfo::of(dir);
    let mut g = sbi.lock();
    let mut dst = load(dir, &g);
    if find_entry(sbi, dir, &dst, name)?.is_some() {
        return Err(EEXIST);
    }
    let ino = sbi.alloc_ino(&mut g)?;
    let is_dir = is_dir_mode(mode);
    // SAFETY: `inode` is new, unhashed and ours.
    unsafe {
        (*inode).i_ino = ino as _;
        ffi::vexfs_c_init_owner(inode, dir, mode);
        ffi::vexfs_c_times_now(inode);
        (*inode).i_generation = bindings::get_random_u32();
        bindings::set_nlink(inode, if is_dir { 2 } else { 1 });
        ffi::vexfs_c_set_i_size(inode, 0);
    }
    let st = FsInode { on_disk: true, parent: if is_dir { ino_of(dir) as u32 } else { 0 }, ..FsInode::default() };
    store(inode, &g, &st);
    let r = write_disk_inode(sbi, &g, inode, &st)
        .and_then(|_| add_entry(sbi, &mut g, dir, &mut dst, name, ino, dt_from_mode(mode)));
    store(dir, &g, &dst);
    if let Err(e) = r {
        store(inode, &g, &FsInode::default());
        // SAFETY: as above.
        unsafe { bindings::clear_nlink(inode) };
        sbi.free_ino(&mut g, ino)?;
        return Err(e);
    }
    if is_dir {
        // SAFETY: live directory, i_rwsem held by the VFS.
        unsafe { bindings::inc_nlink(dir) };
    }
    drop(g);
    // SAFETY: live directory.
    unsafe { ffi::vexfs_c_touch_dir(dir) };
    Ok(())
}

/// Gives the new VFS `inode` an inode number, a disk inode and the dirent `name` in `dir`.
/// Errors: `EEXIST`, `ENOSPC`, `ENAMETOOLONG`, `EINVAL` (bad name), `EUCLEAN`, `EIO`.
#[no_mangle]
pub extern "C" fn vexfs_rs_create(
    dir: *mut bindings::inode,
    name: *const u8,
    len: u32,
    mode: u16,
    inode: *mut bindings::inode,
) -> c_int {
    // SAFETY: the dentry name lives for the call.
    errno_of(create(dir, unsafe { name_slice(name, len) }, mode, inode))
}

fn link(dir: *mut bindings::inode, name: &[u8], inode: *mut bindings::inode) -> Result {
    check_name(name)?;
    let sbi = SbInfo::of(dir);
    let mut g = sbi.lock();
    let mut dst = load(dir, &g);
    if find_entry(sbi, dir, &dst, name)?.is_some() {
        return Err(EEXIST);
    }
    let r = add_entry(sbi, &mut g, dir, &mut dst, name, ino_of(inode), dt_from_mode(mode_of(inode)));
    store(dir, &g, &dst);
    drop(g);
    r?;
    // SAFETY: live directory.
    unsafe { ffi::vexfs_c_touch_dir(dir) };
    Ok(())
}

/// Adds the dirent `name` in `dir` for the existing `inode` (link count: caller).
#[no_mangle]
pub extern "C" fn vexfs_rs_link(
    dir: *mut bindings::inode,
    name: *const u8,
    len: u32,
    inode: *mut bindings::inode,
) -> c_int {
    // SAFETY: the dentry name lives for the call.
    errno_of(link(dir, unsafe { name_slice(name, len) }, inode))
}

fn unlink(dir: *mut bindings::inode, name: &[u8], inode: *mut bindings::inode) -> Result {
    let sbi = SbInfo::of(dir);
    let g = sbi.lock();
    let dst = load(dir, &g);
    remove_entry(sbi, dir, &dst, name, ino_of(inode))?;
    drop(g);
    // SAFETY: live directory.
    unsafe { ffi::vexfs_c_touch_dir(dir) };
    Ok(())
}

/// Removes the dirent `name` (pointing at `inode`) from `dir` (link count: caller).
#[no_mangle]
pub extern "C" fn vexfs_rs_unlink(
    dir: *mut bindings::inode,
    name: *const u8,
    len: u32,
    inode: *mut bindings::inode,
) -> c_int {
    // SAFETY: the dentry name lives for the call.
    errno_of(unlink(dir, unsafe { name_slice(name, len) }, inode))
}

fn dir_empty(dir: *mut bindings::inode) -> Result {
    let sbi = SbInfo::of(dir);
    let g = sbi.lock();
    let st = load(dir, &g);
    for i in 0..dir_nblocks(dir) {
        let (_, b) = dir_block(sbi, dir, &st, i)?;
        if !dir::is_empty(b.data()).map_err(|e| report(sbi.sb, e))? {
            return Err(Error::from_errno(-ENOTEMPTY));
        }
    }
    Ok(())
}

/// 0 if the directory has no entries, else `ENOTEMPTY`.
#[no_mangle]
pub extern "C" fn vexfs_rs_dir_empty(dir: *mut bindings::inode) -> c_int {
    errno_of(dir_empty(dir))
}

fn rename(
    old_dir: *mut bindings::inode,
    old_name: &[u8],
    new_dir: *mut bindings::inode,
    new_name: &[u8],
    inode: *mut bindings::inode,
    target: *mut bindings::inode,
) -> Result {
    check_name(new_name)?;
    let sbi = SbInfo::of(old_dir);
    let mut g = sbi.lock();
    let ino = ino_of(inode);
    let dt = dt_from_mode(mode_of(inode));
    let mut nst = load(new_dir, &g);
    if target.is_null() {
        if find_entry(sbi, new_dir, &nst, new_name)?.is_some() {
            return Err(EEXIST);
        }
        let r = add_entry(sbi, &mut g, new_dir, &mut nst, new_name, ino, dt);
        store(new_dir, &g, &nst);
        r?;
    } else {
        let Some((i, found)) = find_entry(sbi, new_dir, &nst, new_name)? else {
            return Err(ENOENT);
        };
        if found as u64 != ino_of(target) {
            return Err(corrupt(sbi.sb, "rename target dirent points at another inode", found as u64));
        }
        let (phys, mut b) = dir_block(sbi, new_dir, &nst, i)?;
        dir::retarget(b.data_mut(), new_name, ino as u32, dt).map_err(|e| report(sbi.sb, e))?;
        seal_dir_block(b.data_mut(), phys, ino_of(new_dir));
        b.mark_dirty(Some(new_dir));
    }
    let ost = load(old_dir, &g);
    remove_entry(sbi, old_dir, &ost, old_name, ino)?;
    if is_dir_mode(mode_of(inode)) && old_dir != new_dir {
        let mut st = load(inode, &g);
        st.parent = ino_of(new_dir) as u32;
        store(inode, &g, &st);
    }
    drop(g);
    // SAFETY: live directories.
    unsafe {
        ffi::vexfs_c_touch_dir(old_dir);
        if old_dir != new_dir {
            ffi::vexfs_c_touch_dir(new_dir);
        }
    }
    Ok(())
}

/// Moves the dirent `old_name` of `old_dir` to `new_name` in `new_dir`, replacing `target`
/// (may be null). Link counts and times of the inodes: caller.
#[no_mangle]
pub extern "C" fn vexfs_rs_rename(
    old_dir: *mut bindings::inode,
    old_name: *const u8,
    old_len: u32,
    new_dir: *mut bindings::inode,
    new_name: *const u8,
    new_len: u32,
    inode: *mut bindings::inode,
    target: *mut bindings::inode,
) -> c_int {
    // SAFETY: the dentry names live for the call.
    let (o, n) = unsafe { (name_slice(old_name, old_len), name_slice(new_name, new_len)) };
    errno_of(rename(old_dir, o, new_dir, n, inode, target))
}

fn iterate(dir: *mut bindings::inode, ctx: *mut bindings::dir_context) -> Result {
    let sbi = SbInfo::of(dir);
    let bs = BLOCK_SIZE as i64;
    // SAFETY: `ctx` is the caller's live dir_context.
    let mut pos = unsafe { ffi::vexfs_c_ctx_pos(ctx) };
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
            let g = sbi.lock();
            let st = load(dir, &g);
            dir_block(sbi, dir, &st, blk as u64)?.1
        };
        for d in dirents(b.data()) {
            let d = d.map_err(|e| report(sbi.sb, e))?;
            if d.offset < off || d.ino == 0 {
                continue;
            }
            let here = blk * bs + d.offset as i64;
            // SAFETY: live ctx; the name is inside the buffer we hold.
            unsafe {
                ffi::vexfs_c_set_ctx_pos(ctx, here);
                if !ffi::vexfs_c_emit(ctx, d.name.as_ptr(), d.name.len() as u32, d.ino as u64, d.file_type as u32) {
                    return Ok(());
                }
                ffi::vexfs_c_set_ctx_pos(ctx, here + d.rec_len as i64);
            }
        }
        pos = (blk + 1) * bs;
        // SAFETY: live ctx.
        unsafe { ffi::vexfs_c_set_ctx_pos(ctx, pos) };
    }
    Ok(())
}

/// readdir after "." and "..": positions are byte offsets of dirents in the directory.
#[no_mangle]
pub extern "C" fn vexfs_rs_iterate(dir: *mut bindings::inode, ctx: *mut bindings::dir_context) -> c_int {
    errno_of(iterate(dir, ctx))
}
