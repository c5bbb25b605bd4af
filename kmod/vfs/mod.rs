//! The safe VFS layer: every C object vexfs touches, wrapped once.
//!
//! Each wrapper is a `#[repr(transparent)]` view of the C struct with one documented
//! `unsafe fn from_raw`, whose contract the entry points in `ops/` meet when they convert the
//! pointers the VFS hands them, and a safe surface above it (the style of
//! `rust/kernel/block/mq/request.rs`). The filesystem logic (`sb`, `inode`, `namei`, `vector`,
//! `ioctl`, `mount`) uses only these surfaces and contains no `unsafe`.
//!
//! - [`super_block`]: [`NewSuperBlock`](super_block::NewSuperBlock) while fill_super sets it
//!   up, [`SuperBlock`](super_block::SuperBlock) once mounted, and
//!   [`Device`](super_block::Device), the buffer cache and name both offer.
//! - [`inode`]: [`Inode`](inode::Inode), [`LockedInode`](inode::LockedInode) (its `i_rwsem`
//!   held), [`NewInode`](inode::NewInode) (not yet visible to others), and the owned references
//!   [`InodeRef`](inode::InodeRef) and [`NewInodeRef`](inode::NewInodeRef).
//! - [`dir`]: [`DirContext`](dir::DirContext), the cursor of a readdir.
//! - [`mount_c`]: [`MountC`](mount_c::MountC), the C half of a mount (commit ticker, ordered
//!   data lists).
//! - [`rwsem`]: [`RwSem`](rwsem::RwSem), data behind a reader-writer semaphore (the vector
//!   index: searches share it).
//! - [`task`]: [`NofsScope`](task::NofsScope), allocations that must not recurse into the
//!   filesystem; [`time`]: the clock.
//! - [`access`]: what the calling task may do (read an inode, skip those checks by
//!   capability, go on with a long job).
//!
//! Nothing here knows the on-disk format: the layer is generic over [`fs::FileSystem`], which
//! names the state a filesystem hangs on the superblock and on each inode.

pub mod access;
pub mod dir;
pub mod fs;
pub mod inode;
pub mod mount_c;
pub mod rwsem;
pub mod super_block;
pub mod task;
pub mod time;

/// A random `u32` from the kernel's generator (`get_random_u32`, `drivers/char/random.c`).
pub fn random_u32() -> u32 {
    // SAFETY: a plain exported kernel function, callable from any context.
    unsafe { kernel::bindings::get_random_u32() }
}
