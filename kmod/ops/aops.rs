//! `address_space_operations` (glue.c's `vexfs_aops` and its `get_block`): file blocks.

use crate::sb::{Inode, LockedInode};
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

/// Maps file blocks `from .. to` past the end of file for a buffered write starting at file
/// block `lead`, inside the caller's `VEXFS_TXN_PREALLOC` handle
/// ([`crate::inode::prealloc`]): the blocks mapped from `from` (0 or more), or a negative
/// errno.
#[no_mangle]
pub extern "C" fn vexfs_rs_prealloc(inode: *mut bindings::inode, lead: u64, from: u64, to: u64) -> i64 {
    // SAFETY: a write on an open file, which holds its inode.
    let inode = unsafe { Inode::from_raw(inode) };
    match crate::inode::prealloc(inode, lead, from, to) {
        Ok(n) => i64::try_from(n).unwrap_or(i64::MAX),
        Err(e) => i64::from(e.to_errno()),
    }
}

/// Before a truncate that shrinks the file cuts `i_size`: keeps the disk inode's size at the
/// old one until the blocks are freed ([`crate::inode::truncate_prepare`]).
#[no_mangle]
pub extern "C" fn vexfs_rs_truncate_prepare(inode: *mut bindings::inode) {
    // SAFETY: setattr passes an inode it holds.
    let inode = unsafe { Inode::from_raw(inode) };
    crate::inode::truncate_prepare(inode);
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

/// `lseek(SEEK_DATA/SEEK_HOLE)` (glue.c's `vexfs_llseek`, `i_rwsem` held shared): the offset
/// found ([`crate::inode::seek_data_hole`]) or a negative errno (`ENXIO`).
#[no_mangle]
pub extern "C" fn vexfs_rs_seek_data_hole(inode: *mut bindings::inode, offset: i64, hole: c_int) -> i64 {
    // SAFETY: llseek is called on an open file, which holds its inode.
    let inode = unsafe { Inode::from_raw(inode) };
    match crate::inode::seek_data_hole(inode, offset, hole != 0) {
        Ok(p) => p,
        Err(e) => i64::from(e.to_errno()),
    }
}

/// `fiemap` (glue.c's `vexfs_fiemap`, after `fiemap_prep`): reports the extents of `inode`
/// that overlap bytes `start .. start + len` through `fiemap_fill_next_extent`, the file's
/// last extent flagged `FIEMAP_EXTENT_LAST`. The extents are copied a batch at a time under
/// the metadata lock and handed to user memory without it. 0 or a negative errno (`EFAULT`
/// from the user buffer, `EUCLEAN`, `EIO`).
#[no_mangle]
pub extern "C" fn vexfs_rs_fiemap(
    inode: *mut bindings::inode,
    fieinfo: *mut core::ffi::c_void,
    start: u64,
    len: u64,
) -> c_int {
    // SAFETY: the VFS calls fiemap on an inode it holds, with its fiemap_extent_info.
    let inode = unsafe { Inode::from_raw(inode) };
    let bs = crate::format::BLOCK_SIZE as u64;
    let end_blk = start.saturating_add(len).div_ceil(bs);
    let mut from = start / bs;
    let mut pending: Option<crate::format::extent::Extent> = None;
    let mut batch = [crate::format::extent::Extent::default(); crate::inode::EXTENT_BATCH];
    // Reports `e`; Some(status) when the walk ends (1: the user's array is full).
    let fill = |e: &crate::format::extent::Extent, last: bool| -> c_int {
        // SAFETY: `fieinfo` is the caller's; the helper copies to user memory (may fault: no
        // lock of ours is held here).
        unsafe {
            crate::ffi::vexfs_c_fiemap_fill(
                fieinfo,
                u64::from(e.logical) * bs,
                e.start.saturating_mul(bs),
                u64::from(e.len) * bs,
                c_int::from(last),
            )
        }
    };
    loop {
        let n = match crate::inode::extents_from(inode, from, &mut batch) {
            Ok(n) => n,
            Err(e) => return e.to_errno(),
        };
        for e in batch.iter().take(n) {
            if let Some(p) = pending.take() {
                let r = fill(&p, false);
                if r != 0 {
                    return r.min(0);
                }
            }
            if u64::from(e.logical) >= end_blk {
                return 0;
            }
            pending = Some(*e);
            from = e.logical_end();
        }
        if n < crate::inode::EXTENT_BATCH {
            return match pending {
                Some(p) => fill(&p, true).min(0),
                None => 0,
            };
        }
    }
}

/// fallocate's hole: unmaps and frees file blocks `from .. to`
/// ([`crate::inode::punch_blocks`]). 0 or a negative errno.
#[no_mangle]
pub extern "C" fn vexfs_rs_punch(inode: *mut bindings::inode, from: u64, to: u64) -> c_int {
    // SAFETY: fallocate runs on an open file, which holds its inode.
    let inode = unsafe { Inode::from_raw(inode) };
    crate::ops::errno_of(crate::inode::punch_blocks(inode, from, to))
}

/// fallocate's allocation: maps and zeroes the unmapped file blocks of `from .. to`, growing
/// the size up to `grow_to` bytes over them (0: `KEEP_SIZE`) ([`crate::inode::alloc_range`]).
/// 0 or a negative errno.
#[no_mangle]
pub extern "C" fn vexfs_rs_alloc_range(inode: *mut bindings::inode, from: u64, to: u64, grow_to: u64) -> c_int {
    // SAFETY: fallocate runs on an open file, which holds its inode, with `i_rwsem` held
    // (glue.c's vexfs_fallocate).
    let inode = unsafe { LockedInode::from_raw(inode) };
    crate::ops::errno_of(crate::inode::alloc_range(inode, from, to, grow_to))
}

/// Whether file block `blk` of `inode` is mapped: 1, 0 for a hole, or a negative errno.
#[no_mangle]
pub extern "C" fn vexfs_rs_block_mapped(inode: *mut bindings::inode, blk: u64) -> c_int {
    // SAFETY: as in `vexfs_rs_punch`.
    let inode = unsafe { Inode::from_raw(inode) };
    let sb = inode.sb();
    let g = sb.lock();
    let st = inode.load(&g);
    match crate::inode::map_block(inode, &st, blk) {
        Ok(m) => c_int::from(m.is_some()),
        Err(e) => e.to_errno(),
    }
}
