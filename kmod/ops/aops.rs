//! `address_space_operations` (glue.c's `vexfs_aops` and its `get_block`): file blocks.

use crate::sb::Inode;
use core::ffi::c_int;
use kernel::bindings;

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
    // SAFETY: the page cache calls get_block for a page of the inode's mapping, which keeps the
    // inode alive for the call.
    let inode = unsafe { Inode::from_raw(inode) };
    match crate::inode::get_block(inode, iblock, create != 0, max) {
        Ok((p, n, new)) => {
            // SAFETY: out-pointers on glue.c's stack.
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

/// Frees the blocks past `i_size` (after truncate or a failed write); 0 or a negative errno
/// (the journal is then aborted: [`crate::inode::truncate_blocks`]).
#[no_mangle]
pub extern "C" fn vexfs_rs_truncate_blocks(inode: *mut bindings::inode) -> c_int {
    // SAFETY: setattr and a failed write_begin pass an inode they hold.
    let inode = unsafe { Inode::from_raw(inode) };
    match crate::inode::truncate_blocks(inode) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}
