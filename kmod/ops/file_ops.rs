//! `file_operations` (glue.c's `vexfs_dir_fops` and `vexfs_file_fops`): readdir and ioctl.

use crate::ops::errno_of;
use crate::sb::Inode;
use crate::vfs::dir::DirContext;
use core::ffi::{c_int, c_long, c_uint, c_ulong};
use kernel::bindings;

/// readdir after "." and "..": positions are byte offsets of dirents in the directory.
#[no_mangle]
pub extern "C" fn vexfs_rs_iterate(dir: *mut bindings::inode, ctx: *mut bindings::dir_context) -> c_int {
    // SAFETY: iterate_shared runs on the inode of an open directory (referenced by the file,
    // i_rwsem held shared) with a context used by this call only.
    let (dir, ctx) = unsafe { (Inode::from_raw(dir), DirContext::from_raw(ctx)) };
    errno_of(crate::namei::iterate(dir, ctx))
}

/// `unlocked_ioctl` (after glue.c checked write access for SET and REMOVE and took the inode
/// lock for them): the ioctls of include/vexfs.h.
#[no_mangle]
pub extern "C" fn vexfs_rs_ioctl(inode: *mut bindings::inode, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: the inode of an open file, referenced by the file for the call.
    let inode = unsafe { Inode::from_raw(inode) };
    match crate::ioctl::ioctl(inode, cmd, arg as usize) {
        Ok(()) => 0,
        Err(e) => e.to_errno() as c_long,
    }
}
