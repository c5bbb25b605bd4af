//! What the calling task may do, for the search ioctl: read an inode (the kernel's own check),
//! skip those checks (a capability), and go on with a long job (no fatal signal pending).

use super::fs::FileSystem;
use super::inode::Inode;
use super::super_block::SuperBlock;
use crate::ffi;
use kernel::bindings;
use kernel::prelude::*;

impl<T: FileSystem> SuperBlock<T> {
    /// Whether the calling task has `CAP_DAC_READ_SEARCH` in the user namespace that owns the
    /// filesystem (`s_user_ns`), as the VFS asks for a privilege over a whole filesystem
    /// (`ns_capable(sb->s_user_ns, CAP_SYS_ADMIN)` for FIFREEZE in fs/ioctl.c): the
    /// filesystem's namespace, not the task's, so a task that is root only inside a user
    /// namespace of its own does not count. vexfs cannot be mounted from a user namespace (no `FS_USERNS_MOUNT`), so this
    /// is `init_user_ns`. Not audited: a task without it still searches, its results checked
    /// one by one ([`Inode::may_read`]).
    pub fn may_read_all(&self) -> bool {
        // SAFETY: the superblock is live (type invariant); `s_user_ns` is set when it is made
        // and held until it is freed; ns_capable_noaudit reads only the calling task's
        // credentials.
        unsafe { bindings::ns_capable_noaudit((*self.as_ptr()).s_user_ns, bindings::CAP_DAC_READ_SEARCH as i32) }
    }
}

impl<T: FileSystem> Inode<T> {
    /// Whether the calling task may read the inode: `inode_permission(MAY_READ)`, so mode bits,
    /// ACLs, capabilities (`CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH` over the inode's owner) and
    /// security modules all have their say. Through the mount's identity mapping: vexfs does not
    /// set `FS_ALLOW_IDMAP`, so every vexfs mount has `nop_mnt_idmap`.
    pub fn may_read(&self) -> bool {
        // SAFETY: the inode is live (type invariant); `nop_mnt_idmap` is a static of the
        // kernel, never freed or written; inode_permission only reads it and the inode.
        unsafe {
            bindings::inode_permission(
                core::ptr::addr_of_mut!(bindings::nop_mnt_idmap),
                self.as_ptr(),
                bindings::MAY_READ as i32,
            ) == 0
        }
    }
}

/// A reschedule point in a long job run for the calling task: `Err(EINTR)` when a fatal signal
/// is pending (the job stops).
pub fn relax() -> Result {
    // SAFETY: cond_resched and fatal_signal_pending; the caller holds no spinlock.
    kernel::error::to_result(unsafe { ffi::vexfs_c_relax() })
}
