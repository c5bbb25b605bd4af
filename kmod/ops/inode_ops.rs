//! `inode_operations` of directories (glue.c's `vexfs_dir_iops`): the namespace.

use crate::ops::{errno_of, name};
use crate::sb::{Inode, LockedInode, NewInode, SuperBlock};
use core::ffi::c_int;
use kernel::bindings;

/// `iget` for lookup: the inode `ino` of `sb`, referenced, into `*out`.
#[no_mangle]
pub extern "C" fn vexfs_rs_iget(sb: *mut bindings::super_block, ino: u64, out: *mut *mut bindings::inode) -> c_int {
    // SAFETY: `sb` is the superblock of a directory being looked up in: mounted.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    match crate::inode::iget(sb, ino) {
        Ok(i) => {
            // SAFETY: out-pointer on glue.c's stack; the reference goes to d_splice_alias.
            unsafe { *out = i.into_raw() };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Looks `name` up in `dir`: its inode number, or 0 when absent, into `*ino`.
#[no_mangle]
pub extern "C" fn vexfs_rs_lookup(dir: *mut bindings::inode, name_p: *const u8, len: u32, ino: *mut u64) -> c_int {
    // SAFETY: lookup runs with `dir` referenced and its i_rwsem held (shared); the dentry's
    // name is stable for the call.
    let (dir, n) = unsafe { (Inode::from_raw(dir), name(name_p, len)) };
    match crate::namei::lookup(dir, n) {
        Ok(i) => {
            // SAFETY: out-pointer on glue.c's stack.
            unsafe { *ino = i };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Gives the new VFS `inode` an inode number, a disk inode and the dirent `name` in `dir`.
#[no_mangle]
pub extern "C" fn vexfs_rs_create(
    dir: *mut bindings::inode,
    name_p: *const u8,
    len: u32,
    mode: u16,
    inode: *mut bindings::inode,
) -> c_int {
    // SAFETY: create, mkdir and symlink run with `dir`'s i_rwsem held exclusively; `inode` was
    // just made by new_inode in vexfs_make (unhashed, no dentry: ours alone); the name is
    // stable for the call.
    let (dir, n, inode) = unsafe { (LockedInode::from_raw(dir), name(name_p, len), NewInode::from_raw(inode)) };
    errno_of(crate::namei::create(dir, n, mode, inode))
}

/// Adds the dirent `name` in `dir` for the existing `inode` (link count: caller).
#[no_mangle]
pub extern "C" fn vexfs_rs_link(
    dir: *mut bindings::inode,
    name_p: *const u8,
    len: u32,
    inode: *mut bindings::inode,
) -> c_int {
    // SAFETY: link runs with `dir`'s i_rwsem held exclusively and `inode` referenced by its
    // dentry; the name is stable for the call.
    let (dir, n, inode) = unsafe { (LockedInode::from_raw(dir), name(name_p, len), Inode::from_raw(inode)) };
    errno_of(crate::namei::link(dir, n, inode))
}

/// Before a dirent `name` is added to `dir` (outside any handle, `dir`'s i_rwsem held
/// exclusively): splits its indexed bucket, or makes the directory indexed, until the
/// addition fits a create's handle (`namei::make_room`).
#[no_mangle]
pub extern "C" fn vexfs_rs_make_room(dir: *mut bindings::inode, name_p: *const u8, len: u32) -> c_int {
    // SAFETY: create, mkdir, mknod, symlink, link and rename call this with `dir`'s i_rwsem
    // held exclusively; the name is stable for the call.
    let (dir, n) = unsafe { (LockedInode::from_raw(dir), name(name_p, len)) };
    errno_of(crate::namei::make_room(dir, n))
}

/// Removes the dirent `name` (pointing at `inode`) from `dir` (link count: caller).
#[no_mangle]
pub extern "C" fn vexfs_rs_unlink(
    dir: *mut bindings::inode,
    name_p: *const u8,
    len: u32,
    inode: *mut bindings::inode,
) -> c_int {
    // SAFETY: unlink and rmdir (and vexfs_make undoing a symlink) run with `dir`'s i_rwsem
    // held exclusively and `inode` referenced; the name is stable for the call.
    let (dir, n, inode) = unsafe { (LockedInode::from_raw(dir), name(name_p, len), Inode::from_raw(inode)) };
    errno_of(crate::namei::unlink(dir, n, inode))
}

/// 0 if the directory has no entries, else `-ENOTEMPTY`.
#[no_mangle]
pub extern "C" fn vexfs_rs_dir_empty(dir: *mut bindings::inode) -> c_int {
    // SAFETY: rmdir and rename pass a directory referenced by its dentry.
    let dir = unsafe { Inode::from_raw(dir) };
    errno_of(crate::namei::dir_empty(dir))
}

/// Moves the dirent `old_name` of `old_dir` to `new_name` in `new_dir`, replacing `target`
/// (may be null); with `whiteout` (may be null), `old_name` then names it (RENAME_WHITEOUT);
/// with `exchange`, the two dirents swap their inodes (RENAME_EXCHANGE, `target` not null).
/// Link counts and times of the inodes: caller.
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
    whiteout: *mut bindings::inode,
    exchange: c_int,
) -> c_int {
    // SAFETY: rename runs with both directories' i_rwsem held exclusively (lock_rename; they
    // may be the same inode, only shared references are made), `inode` and `target` (if not
    // null) referenced by their dentries, `whiteout` (if not null) a new inode of glue.c's
    // with a disk inode and no dirent yet; the names are stable for the call.
    let (od, on, nd, nn, inode, target, whiteout) = unsafe {
        (
            LockedInode::from_raw(old_dir),
            name(old_name, old_len),
            LockedInode::from_raw(new_dir),
            name(new_name, new_len),
            Inode::from_raw(inode),
            (!target.is_null()).then(|| Inode::from_raw(target)),
            (!whiteout.is_null()).then(|| Inode::from_raw(whiteout)),
        )
    };
    if exchange != 0 {
        return match target {
            Some(t) => errno_of(crate::namei::exchange(od, on, nd, nn, inode, t)),
            None => kernel::error::code::ENOENT.to_errno(),
        };
    }
    errno_of(crate::namei::rename(od, on, nd, nn, inode, target, whiteout))
}

/// Gives the new VFS `inode` of mode `mode` an inode number and a disk inode without a
/// dirent (`O_TMPFILE`, a rename's whiteout): [`crate::namei::create_unlinked`].
#[no_mangle]
pub extern "C" fn vexfs_rs_create_unlinked(dir: *mut bindings::inode, mode: u16, inode: *mut bindings::inode) -> c_int {
    // SAFETY: `dir` is held by the caller (tmpfile, rename); `inode` was just made by
    // new_inode in glue.c (unhashed, no dentry: ours alone).
    let (dir, inode) = unsafe { (Inode::from_raw(dir), NewInode::from_raw(inode)) };
    errno_of(crate::namei::create_unlinked(dir, mode, inode))
}
