//! The C half of the module (glue.c): wrappers for kernel helpers that are `static inline` or
//! macros, and the operation tables. Everything here is `unsafe` to call; the safe types above
//! it ([`crate::buf::Buf`], [`crate::pins`], and the wrappers of [`crate::vfs`]: `SuperBlock`,
//! `Inode`, `DirContext`, `NofsScope`) state the rules.

use core::ffi::c_int;
use kernel::bindings;

/// `u64` words of per-inode state Rust keeps beside each VFS inode (`VEXFS_RS_INODE_WORDS`,
/// glue.h): `vexfs_inode_info.rs`, 8-byte aligned.
pub const INODE_STATE_WORDS: usize = 28;

/// Opaque `struct buffer_head` (its header is not in the 6.12 bindings).
#[repr(C)]
pub struct BufferHead {
    _opaque: [u8; 0],
}

/// A journal handle's saved state (`struct vexfs_handle`, glue.h), on the stack of the
/// operation that holds it.
#[repr(C)]
pub struct Handle {
    pub prev: *mut core::ffi::c_void,
    pub nofs: u32,
    pub outer: c_int,
    pub credits: u64,
}

/// Opaque `struct vexfs_mount` (glue.h).
#[repr(C)]
pub struct VexfsMount {
    _opaque: [u8; 0],
}

/// Numbers statfs(2) reports, filled by Rust and copied into `struct kstatfs` by C.
#[repr(C)]
pub struct StatfsOut {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub fsid: u64,
}

#[allow(improper_ctypes)]
extern "C" {
    pub fn vexfs_c_register() -> c_int;
    pub fn vexfs_c_unregister();
    pub fn vexfs_c_inode_rs(inode: *mut bindings::inode) -> *mut u64;
    pub fn vexfs_c_bread(sb: *mut bindings::super_block, block: u64) -> *mut BufferHead;
    pub fn vexfs_c_bread_ahead(sb: *mut bindings::super_block, block: u64, ra_end: u64) -> *mut BufferHead;
    pub fn vexfs_c_bread_counted(sb: *mut bindings::super_block, block: u64, read: *mut bool) -> *mut BufferHead;
    pub fn vexfs_c_block_readahead(sb: *mut bindings::super_block, block: u64) -> bool;
    pub fn vexfs_c_drop_cached(sb: *mut bindings::super_block, block: u64);
    pub fn vexfs_c_bnew(sb: *mut bindings::super_block, block: u64) -> *mut BufferHead;
    pub fn vexfs_c_brelse(bh: *mut BufferHead);
    pub fn vexfs_c_bforget(bh: *mut BufferHead);
    pub fn vexfs_c_bh_verified(bh: *mut BufferHead) -> bool;
    pub fn vexfs_c_bh_set_verified(bh: *mut BufferHead);
    pub fn vexfs_c_bh_checked(bh: *mut BufferHead) -> bool;
    pub fn vexfs_c_bh_set_checked(bh: *mut BufferHead);
    pub fn vexfs_c_bh_data(bh: *mut BufferHead) -> *mut u8;
    pub fn vexfs_c_mark_dirty(bh: *mut BufferHead);
    pub fn vexfs_c_bh_blocknr(bh: *mut BufferHead) -> u64;
    pub fn vexfs_c_get_bh(bh: *mut BufferHead);
    pub fn vexfs_c_bh_txn_test_set(bh: *mut BufferHead) -> bool;
    pub fn vexfs_c_bh_txn_clear(bh: *mut BufferHead);
    pub fn vexfs_c_write_bh(bh: *mut BufferHead);
    pub fn vexfs_c_wait_bh(bh: *mut BufferHead) -> c_int;
    pub fn vexfs_c_write_bh_fua(bh: *mut BufferHead) -> c_int;
    pub fn vexfs_c_sync_dev(sb: *mut bindings::super_block) -> c_int;
    pub fn vexfs_c_dev_err_sample(sb: *mut bindings::super_block) -> u32;
    pub fn vexfs_c_dev_err_since(sb: *mut bindings::super_block, since: *mut u32) -> c_int;
    pub fn vexfs_c_journal_info() -> *mut core::ffi::c_void;
    pub fn vexfs_c_force_rdonly(sb: *mut bindings::super_block);
    pub fn vexfs_c_panic(sb: *mut bindings::super_block) -> !;
    pub fn vexfs_c_mount_new(sb: *mut bindings::super_block) -> *mut VexfsMount;
    pub fn vexfs_c_mount_free(m: *mut VexfsMount);
    pub fn vexfs_c_ticker_start(m: *mut VexfsMount, secs: u32);
    pub fn vexfs_c_ticker_stop(m: *mut VexfsMount);
    pub fn vexfs_c_index_start(m: *mut VexfsMount);
    pub fn vexfs_c_index_kick(m: *mut VexfsMount, delay_ms: u32);
    pub fn vexfs_c_index_running(m: *mut VexfsMount) -> bool;
    pub fn vexfs_c_index_stop(m: *mut VexfsMount);
    pub fn vexfs_c_shrinker_start(m: *mut VexfsMount) -> c_int;
    pub fn vexfs_c_shrinker_stop(m: *mut VexfsMount);
    pub fn vexfs_c_relax() -> c_int;
    pub fn vexfs_c_init_rwsem(sem: *mut bindings::rw_semaphore);
    pub fn vexfs_c_online_cpus() -> core::ffi::c_uint;
    pub fn vexfs_c_zeroout(sb: *mut bindings::super_block, block: u64, count: u64) -> c_int;
    pub fn vexfs_c_fiemap_fill(fi: *mut core::ffi::c_void, logical: u64, phys: u64, len: u64, last: c_int) -> c_int;
    pub fn vexfs_c_ordered_add(m: *mut VexfsMount, inode: *mut bindings::inode);
    pub fn vexfs_c_ordered_preflush(m: *mut VexfsMount);
    pub fn vexfs_c_ordered_flush(m: *mut VexfsMount) -> c_int;
    pub fn vexfs_c_ordered_put(m: *mut VexfsMount);
    pub fn vexfs_c_ordered_discard(m: *mut VexfsMount);
    pub fn vexfs_c_handle_start(sb: *mut bindings::super_block, h: *mut Handle, kind: u32) -> c_int;
    pub fn vexfs_c_handle_stop(sb: *mut bindings::super_block, h: *mut Handle);
    pub fn vexfs_c_dev_bytes(sb: *mut bindings::super_block) -> u64;
    pub fn vexfs_c_rdonly(sb: *mut bindings::super_block) -> c_int;
    pub fn vexfs_c_i_size(inode: *mut bindings::inode) -> i64;
    pub fn vexfs_c_set_i_size(inode: *mut bindings::inode, size: i64);
    pub fn vexfs_c_mark_inode_dirty(inode: *mut bindings::inode);
    pub fn vexfs_c_uid(inode: *mut bindings::inode) -> u32;
    pub fn vexfs_c_gid(inode: *mut bindings::inode) -> u32;
    pub fn vexfs_c_set_owner(inode: *mut bindings::inode, uid: u32, gid: u32);
    pub fn vexfs_c_init_owner(inode: *mut bindings::inode, dir: *mut bindings::inode, mode: u16);
    pub fn vexfs_c_set_ops(inode: *mut bindings::inode);
    pub fn vexfs_c_emit(ctx: *mut bindings::dir_context, name: *const u8, len: u32, ino: u64, typ: u32) -> bool;
    pub fn vexfs_c_ctx_pos(ctx: *mut bindings::dir_context) -> i64;
    pub fn vexfs_c_set_ctx_pos(ctx: *mut bindings::dir_context, pos: i64);
    pub fn vexfs_c_nlink(inode: *mut bindings::inode) -> u32;
    pub fn vexfs_c_is_new(inode: *mut bindings::inode) -> bool;
    pub fn vexfs_c_times_now(inode: *mut bindings::inode);
    pub fn vexfs_c_touch_dir(dir: *mut bindings::inode);
    pub fn vexfs_c_nofs_save() -> u32;
    pub fn vexfs_c_nofs_restore(flags: u32);
    pub fn vexfs_c_dist_impl() -> u32;
    pub fn vexfs_c_distances(
        imp: u32,
        metric: u32,
        q: *const u32,
        vecs: *const *const u32,
        tails: *const *const u32,
        splits: *const u32,
        n: u32,
        dim: u32,
        out: *mut u32,
    );
    pub fn vexfs_c_code_distances(
        imp: u32,
        metric: u32,
        q: *const u8,
        vecs: *const *const u8,
        n: u32,
        len: u32,
        out: *mut u32,
    );
    pub fn vexfs_c_pq_table(
        metric: u32,
        q: *const u32,
        cents: *const u32,
        n: u32,
        dsub: u32,
        prim: *mut u32,
        norm: *mut u32,
    ) -> u32;
    pub fn vexfs_c_pq_distances(metric: u32, table: *const u32, m: u32, codes: *const *const u8, n: u32, out: *mut u32);
}
