//! `super_operations` and fill_super (glue.c's `vexfs_sops`, `vexfs_fill_super`).

use crate::errors::ErrorsMode;
use crate::ffi::StatfsOut;
use crate::ops::errno_of;
use crate::sb::{Inode, NewSuperBlock, SuperBlock, Vexfs};
use crate::txn::Handle;
use crate::vfs;
use core::ffi::{c_int, c_void};
use kernel::bindings;

/// fill_super for `get_tree_bdev`: see [`crate::mount::fill_super`]. On failure the Rust state
/// is already freed when this returns (or, if the root was set, put_super frees it).
#[no_mangle]
pub extern "C" fn vexfs_rs_fill_super(sb: *mut bindings::super_block, silent: c_int) -> c_int {
    // SAFETY: get_tree_bdev hands fill_super a new superblock (`s_fs_info` and `s_root` null,
    // `s_id` and `s_bdev` set by setup_bdev_super), locked (`s_umount`) and published to
    // nobody until the call returns.
    let sb = unsafe { NewSuperBlock::from_raw(sb) };
    errno_of(crate::mount::fill_super(sb, silent != 0))
}

/// `put_super`: records a clean unmount, then frees the Rust state of the mount.
#[no_mangle]
pub extern "C" fn vexfs_rs_put_super(sb: *mut bindings::super_block) {
    {
        // SAFETY: generic_shutdown_super calls put_super exactly when fill_super set `s_root`,
        // so `s_fs_info` holds the `SbInfo`; it is freed only below, after this borrow ends.
        let mounted = unsafe { SuperBlock::from_raw(sb) };
        crate::mount::put_super(mounted);
    }
    // SAFETY: put_super comes after every inode of the superblock was evicted, and the VFS calls
    // nothing of ours on it afterwards (kill_block_super only releases the device); the borrow
    // above has ended.
    unsafe { SuperBlock::free_info(sb) };
}

/// `sync_fs`: puts the superblock (counts) in the journal; with `wait`, commits.
#[no_mangle]
pub extern "C" fn vexfs_rs_sync_fs(sb: *mut bindings::super_block, wait: c_int) -> c_int {
    // SAFETY: the VFS syncs only superblocks whose fill_super set `s_root` (sync(2) walks
    // active ones, generic_shutdown_super syncs before put_super): `s_fs_info` is set.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    if sb.is_rdonly() {
        return 0;
    }
    let r = (|| -> kernel::error::Result {
        {
            let _h = Handle::start(sb, crate::txn::TxnKind::Small)?;
            sb.lock().write_super()?;
        }
        if wait != 0 {
            sb.journal().commit(sb)?;
        }
        Ok(())
    })();
    errno_of(r)
}

/// The address that marks this filesystem's journal handles in `current->journal_info`.
#[no_mangle]
pub extern "C" fn vexfs_rs_journal(sb: *mut bindings::super_block) -> *mut c_void {
    // SAFETY: handles are opened by operations on a mounted vexfs (`s_fs_info` set, alive
    // until put_super, after the last operation).
    let sb = unsafe { SuperBlock::from_raw(sb) };
    sb.journal().id()
}

/// Opens an outermost journal handle (glue.c's vexfs_c_handle_start).
#[no_mangle]
pub extern "C" fn vexfs_rs_handle_begin(sb: *mut bindings::super_block, kind: u32, credits: *mut u64) -> c_int {
    // SAFETY: as in `vexfs_rs_journal`.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    match sb.journal().begin(sb, crate::txn::TxnKind::from_c(kind)) {
        Ok(c) => {
            // SAFETY: `credits` points at the caller's `struct vexfs_handle` field.
            unsafe { *credits = c };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Closes an outermost journal handle.
#[no_mangle]
pub extern "C" fn vexfs_rs_handle_end(sb: *mut bindings::super_block, credits: u64) {
    // SAFETY: as in `vexfs_rs_journal`.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    sb.journal().end(credits);
}

/// An operation run in a handle by glue.c failed with `err` (negative errno): an I/O error
/// aborts the journal, and so does corruption unless `errors=continue` (the operation may have
/// changed blocks before it failed: [`crate::txn::Journal::abort`]).
#[no_mangle]
pub extern "C" fn vexfs_rs_handle_failed(sb: *mut bindings::super_block, err: c_int) {
    // SAFETY: as in `vexfs_rs_journal`.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    crate::txn::failed(sb, "an operation", kernel::error::Error::from_errno(err));
}

/// After an operation failed with `ENOSPC` (its handle ended): whether to run it again, blocks
/// freed since the last checkpoint having been made allocatable
/// ([`crate::txn::Journal::retry_alloc`]); `retries` counts the retries of the operation.
#[no_mangle]
pub extern "C" fn vexfs_rs_retry_alloc(sb: *mut bindings::super_block, retries: *mut u32) -> bool {
    // SAFETY: as in `vexfs_rs_journal`; `retries` is the caller's counter.
    let (sb, retries) = unsafe { (SuperBlock::from_raw(sb), &mut *retries) };
    sb.journal().retry_alloc(sb, retries)
}

/// Commits the journal (fsync).
#[no_mangle]
pub extern "C" fn vexfs_rs_commit(sb: *mut bindings::super_block) -> c_int {
    // SAFETY: as in `vexfs_rs_journal`.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    errno_of(sb.journal().commit(sb))
}

/// The commit ticker (glue.c's delayed work): commits if anything changed.
#[no_mangle]
pub extern "C" fn vexfs_rs_tick(sb: *mut bindings::super_block) {
    // SAFETY: the ticker runs between the end of fill_super and the start of put_super, which
    // stops it (waiting for a tick in progress) before the state is freed.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    crate::errors::tick(sb);
    sb.journal().tick(sb);
}

/// The `errors=` mode (glue.c's fill_super once it succeeded, and reconfigure).
#[no_mangle]
pub extern "C" fn vexfs_rs_set_errors(sb: *mut bindings::super_block, mode: u32) {
    // SAFETY: called on a superblock whose fill_super succeeded (fill_super itself, after
    // vexfs_rs_fill_super returned 0, or reconfigure of a mounted one): `s_fs_info` is set.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    crate::errors::set_mode(sb, ErrorsMode::from_c(mode));
}

/// The `errors=` mode, for `show_options` (/proc/mounts).
#[no_mangle]
pub extern "C" fn vexfs_rs_errors(sb: *mut bindings::super_block) -> u32 {
    // SAFETY: show_options is called on a mounted superblock: `s_fs_info` is set.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    sb.info().errors.mode() as u32
}

/// The index worker (glue.c's work item): links pending vectors ([`crate::vector::index_work`]).
#[no_mangle]
pub extern "C" fn vexfs_rs_index_work(sb: *mut bindings::super_block) {
    // SAFETY: the worker runs between the end of fill_super and the start of put_super, which
    // stops it (waiting for a run in progress) before the state is freed.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    crate::vector::index_work(sb);
}

/// `dirty_inode`: the disk inode into the running transaction (glue.c holds a handle).
#[no_mangle]
pub extern "C" fn vexfs_rs_dirty_inode(inode: *mut bindings::inode) {
    // SAFETY: mark_inode_dirty is called on a live inode of a mounted vexfs.
    let inode = unsafe { Inode::from_raw(inode) };
    crate::inode::dirty_inode(inode);
}

/// statfs: blocks and inodes, total and free.
#[no_mangle]
pub extern "C" fn vexfs_rs_statfs(sb: *mut bindings::super_block, out: *mut StatfsOut) -> c_int {
    // SAFETY: statfs goes through a dentry of the mounted filesystem: `s_fs_info` is set.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    let st = sb.lock().statfs();
    // SAFETY: `out` points at glue.c's `struct vexfs_statfs` on its stack.
    unsafe { *out = st };
    0
}

/// alloc_inode: sets the Rust state of a new `vexfs_inode_info` to its default.
#[no_mangle]
pub extern "C" fn vexfs_rs_init_inode(rs: *mut u64) {
    // SAFETY: `rs` is the state area of the `vexfs_inode_info` that vexfs_alloc_inode just
    // allocated, seen by nobody else yet.
    unsafe { vfs::inode::init_state::<Vexfs>(rs) };
}

/// `write_inode`: writes the inode into the inode table; with `sync`, waits for the write.
#[no_mangle]
pub extern "C" fn vexfs_rs_write_inode(inode: *mut bindings::inode, sync: c_int) -> c_int {
    // SAFETY: writeback holds the inode (I_SYNC) for the call; it belongs to a mounted vexfs.
    let inode = unsafe { Inode::from_raw(inode) };
    errno_of(crate::inode::write_inode(inode, sync != 0))
}

/// evict_inode of an unlinked inode: removes its embeddings, then frees everything it owns on
/// disk and its inode number.
#[no_mangle]
pub extern "C" fn vexfs_rs_free_inode_disk(inode: *mut bindings::inode) {
    // SAFETY: evict_inode runs on an I_FREEING inode that the VFS keeps alive for the call; the
    // superblock's `SbInfo` lives until put_super, which comes after every eviction (or, at a
    // failed mount, until fill_super returns, after its inodes were evicted).
    let inode = unsafe { Inode::from_raw(inode) };
    // Vectors first: the index lock comes before the metadata lock.
    if crate::vector::has_embeddings(inode) {
        crate::vector::free_inode_vectors(inode);
    }
    crate::inode::free_disk(inode);
}

/// `index_mem=` (glue.c's fill_super once it succeeded, and reconfigure): the index cache's
/// budget in bytes, 0 for no cap.
#[no_mangle]
pub extern "C" fn vexfs_rs_set_index_mem(sb: *mut bindings::super_block, bytes: u64) {
    // SAFETY: as in `vexfs_rs_set_errors`.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    // Evictions run under the exclusive index lock (`PinTable`).
    let _g = sb.info().index.write();
    sb.info().pins.set_budget(sb, bytes);
}

/// The index cache's budget in bytes (0: no cap), for `show_options`.
#[no_mangle]
pub extern "C" fn vexfs_rs_index_mem(sb: *mut bindings::super_block) -> u64 {
    // SAFETY: as in `vexfs_rs_errors`.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    sb.info().pins.budget_bytes()
}

/// The shrinker's count: blocks the index cache holds.
#[no_mangle]
pub extern "C" fn vexfs_rs_index_cached(sb: *mut bindings::super_block) -> core::ffi::c_ulong {
    // SAFETY: the shrinker is registered after fill_super set the state and freed (waiting for
    // a call in progress) at the start of put_super, before the state goes.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    sb.info().pins.held() as core::ffi::c_ulong
}

/// The shrinker's scan: gives back up to `nr` blocks of the index cache; returns how many.
/// Evictions need the exclusive index lock (`PinTable`): it is only tried (reclaim must not
/// wait for a search or a change, and may run inside one), so nothing is given back while a
/// search or a change runs: then `SHRINK_STOP` (`!0`), and the shrinker is asked again on a
/// later pass.
#[no_mangle]
pub extern "C" fn vexfs_rs_index_shrink(sb: *mut bindings::super_block, nr: core::ffi::c_ulong) -> core::ffi::c_ulong {
    // SAFETY: as in `vexfs_rs_index_cached`.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    match sb.info().index.try_write() {
        Some(_g) => sb.info().pins.shrink(nr as usize) as core::ffi::c_ulong,
        None => SHRINK_STOP,
    }
}

/// The shrinker's "no progress possible now" (`SHRINK_STOP` of include/linux/shrinker.h).
const SHRINK_STOP: core::ffi::c_ulong = !0;
