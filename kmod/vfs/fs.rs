//! [`FileSystem`]: the state a filesystem hangs on the VFS objects, as the wrappers store it.

/// The types of one filesystem, for the wrappers of [`crate::vfs`].
///
/// # Safety
/// [`FileSystem::Locked`] is a proof of exclusive access: a value exists only while its
/// holder owns the one lock of a mounted filesystem that orders every
/// [`Inode::load`](crate::vfs::inode::Inode::load) and
/// [`Inode::store`](crate::vfs::inode::Inode::store) of that filesystem's inodes, and
/// [`FileSystem::owner`] returns that filesystem's [`FileSystem::Info`]. The inode wrappers
/// rely on this to read and write [`FileSystem::InodeState`] without a data race.
pub unsafe trait FileSystem: Sized + 'static {
    /// State of one mounted filesystem, on `super_block.s_fs_info` from fill_super until
    /// put_super (or a failed fill_super) frees it; every task using the mount shares it.
    type Info: Send + Sync;
    /// What the filesystem keeps beside each VFS inode (in `vexfs_inode_info.rs`, glue.h):
    /// `Default` when the inode is allocated, then what [`Inode::store`] writes. At most
    /// [`crate::ffi::INODE_STATE_WORDS`] `u64`s, 8-byte aligned (checked at compile time).
    ///
    /// [`Inode::store`]: crate::vfs::inode::Inode::store
    type InodeState: Copy + Default;
    /// Proof that the lock ordering every access to the inode states of one mount is held.
    type Locked<'a>;
    /// The state of the mount whose lock `g` holds.
    fn owner<'a>(g: &'a Self::Locked<'_>) -> &'a Self::Info;
    /// `i_blocks` (512-byte units) for an inode in state `st`.
    fn sectors(st: &Self::InodeState) -> u64;
}
