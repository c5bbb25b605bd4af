//! The C half of a mount's state (`struct vexfs_mount`, glue.h): the commit ticker, a delayed
//! work that asks the journal to commit every few seconds, the ordered-data lists, the
//! inodes whose new data blocks a commit writes before its commit block, the index
//! worker's work item, and the index cache's shrinker.

use crate::ffi;
use crate::vfs::fs::FileSystem;
use crate::vfs::inode::Inode;
use crate::vfs::super_block::Device;
use core::ptr::NonNull;
use kernel::prelude::*;

/// The C state of one mount, freed (ticker stopped, references dropped) when dropped.
///
/// # Invariants
/// `m` came from `vexfs_c_mount_new` and is freed only by `drop`.
pub struct MountC {
    m: NonNull<ffi::VexfsMount>,
}

// SAFETY: the C state is used from any task: its lists are under its own spinlock, and the
// ticker is started and stopped by the mount and unmount paths only (never concurrently).
unsafe impl Send for MountC {}
// SAFETY: as above: every method is safe to call from several tasks at once.
unsafe impl Sync for MountC {}

impl MountC {
    /// The state of a mount of `dev` (the ticker not started). Errors: `ENOMEM`.
    pub fn new(dev: &Device) -> Result<MountC> {
        // SAFETY: `dev` is a live superblock; the C state keeps its pointer for the ticker,
        // which is stopped before the superblock goes (`stop_ticker` at put_super, or `drop`).
        let m = unsafe { ffi::vexfs_c_mount_new(dev.as_ptr()) };
        // INVARIANT: a fresh state from vexfs_c_mount_new.
        Ok(MountC { m: NonNull::new(m).ok_or(ENOMEM)? })
    }

    /// Starts the ticker: `vexfs_rs_tick` every `secs` seconds until [`Self::stop_ticker`].
    pub fn start_ticker(&self, secs: u32) {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_ticker_start(self.m.as_ptr(), secs) };
    }

    /// Stops the ticker, waiting for a tick in progress.
    pub fn stop_ticker(&self) {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_ticker_stop(self.m.as_ptr()) };
    }

    /// Lets the index worker run (a read-write mount, its state built).
    pub fn start_index(&self) {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_index_start(self.m.as_ptr()) };
    }

    /// Runs the index worker (`vexfs_rs_index_work`) `delay_ms` milliseconds from now, moving
    /// a run not started yet to that time; nothing once stopped.
    pub fn kick_index(&self, delay_ms: u32) {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_index_kick(self.m.as_ptr(), delay_ms) };
    }

    /// Whether the index worker should go on.
    pub fn index_running(&self) -> bool {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_index_running(self.m.as_ptr()) }
    }

    /// Stops the index worker, waiting for a run in progress.
    pub fn stop_index(&self) {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_index_stop(self.m.as_ptr()) };
    }

    /// Registers the index cache's shrinker: from now until [`Self::stop_shrinker`] (or drop)
    /// memory pressure calls `vexfs_rs_index_cached` and `vexfs_rs_index_shrink` on the mount's
    /// superblock, from any task. Errors: `ENOMEM`.
    pub fn start_shrinker(&self) -> Result {
        // SAFETY: `m` is valid (type invariant); the caller keeps the superblock's state alive
        // until the shrinker is stopped.
        kernel::error::to_result(unsafe { ffi::vexfs_c_shrinker_start(self.m.as_ptr()) })
    }

    /// Unregisters the shrinker, waiting for a scan in progress (nothing if not registered).
    pub fn stop_shrinker(&self) {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_shrinker_stop(self.m.as_ptr()) };
    }

    /// Puts `inode` (which got a new data block in the running transaction) on the ordered
    /// list, once, with a reference.
    pub fn ordered_add<T: FileSystem>(&self, inode: &Inode<T>) {
        // SAFETY: `m` is valid; `inode` is live and referenced by the caller (ihold is safe).
        unsafe { ffi::vexfs_c_ordered_add(self.m.as_ptr(), inode.as_ptr()) };
    }

    /// Writes and waits for the data of the inodes on the ordered list while operations go on
    /// (a commit, before it holds the handles off); they stay on the list, and a write error
    /// is left for [`Self::ordered_flush`].
    pub fn ordered_preflush(&self) {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_ordered_preflush(self.m.as_ptr()) };
    }

    /// Writes and waits for the data of the inodes on the ordered list (in a commit, with no
    /// handle open). Errors: the first write error.
    pub fn ordered_flush(&self) -> Result {
        // SAFETY: `m` is valid (type invariant).
        kernel::error::to_result(unsafe { ffi::vexfs_c_ordered_flush(self.m.as_ptr()) })
    }

    /// Drops the references of every inode on the ordered lists, flushed or not (at unmount,
    /// when no commit will flush them any more).
    pub fn ordered_discard(&self) {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_ordered_discard(self.m.as_ptr()) };
    }

    /// Drops the references of the inodes a commit flushed (after it, with no journal lock
    /// held: a last reference may evict the inode).
    pub fn ordered_put(&self) {
        // SAFETY: `m` is valid (type invariant).
        unsafe { ffi::vexfs_c_ordered_put(self.m.as_ptr()) };
    }
}

impl Drop for MountC {
    fn drop(&mut self) {
        // SAFETY: `m` is valid and freed only here (type invariant).
        unsafe { ffi::vexfs_c_mount_free(self.m.as_ptr()) };
    }
}
