//! The inode: [`Inode`] (live), [`LockedInode`] (its `i_rwsem` held by the VFS),
//! [`NewInode`] (not yet visible to other tasks), and the owned references [`InodeRef`] and
//! [`NewInodeRef`]; also what hands them out: [`SuperBlock::iget`] and
//! [`NewSuperBlock::set_root`].

use crate::ffi;
use crate::vfs::fs::FileSystem;
use crate::vfs::super_block::{NewSuperBlock, SuperBlock};
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ops::Deref;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

/// Access and change times of an inode: seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Default)]
pub struct Times {
    /// Last access.
    pub atime: (i64, u32),
    /// Last change of the contents.
    pub mtime: (i64, u32),
    /// Last change of the inode.
    pub ctime: (i64, u32),
}

/// A live inode of filesystem `T`.
///
/// # Invariants
/// The inode is live for the lifetime of the reference (the caller of [`Inode::from_raw`]
/// holds a reference to it, or the VFS does for the call), it was allocated by `T`'s
/// alloc_inode (so it sits in a `vexfs_inode_info` whose state area holds a valid
/// `T::InodeState`), and its superblock is a [`SuperBlock<T>`] for as long.
#[repr(transparent)]
pub struct Inode<T: FileSystem>(Opaque<bindings::inode>, PhantomData<T>);

impl<T: FileSystem> Inode<T> {
    /// # Safety
    /// `ptr` is an inode of a mounted `T` (allocated by its alloc_inode, state initialised by
    /// [`init_state`]) that stays live during `'a`: the VFS holds a reference for the call,
    /// or the caller does. It is the type invariant.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::inode) -> &'a Inode<T> {
        // SAFETY: a transparent wrapper of the C struct; the contract gives the invariant.
        unsafe { &*ptr.cast::<Inode<T>>() }
    }

    /// The C inode, for the glue.
    pub fn as_ptr(&self) -> *mut bindings::inode {
        self.0.get()
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        // SAFETY: live inode; `i_ino` is set before an inode is visible and never changes.
        unsafe { (*self.as_ptr()).i_ino as u64 }
    }

    /// Type and permission bits (`S_IF*` | mode).
    pub fn mode(&self) -> u16 {
        // SAFETY: live inode. chmod may change the permission bits concurrently (under
        // `i_rwsem`): a volatile read is one 16-bit load, as C's plain read.
        unsafe { core::ptr::addr_of!((*self.as_ptr()).i_mode).read_volatile() }
    }

    /// Whether the inode is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode() & (bindings::S_IFMT as u16) == bindings::S_IFDIR as u16
    }

    /// Size in bytes (`i_size_read`).
    pub fn size(&self) -> u64 {
        // SAFETY: live inode.
        let s = unsafe { ffi::vexfs_c_i_size(self.as_ptr()) };
        u64::try_from(s).unwrap_or(0)
    }

    /// Hard link count.
    pub fn nlink(&self) -> u32 {
        // SAFETY: live inode.
        unsafe { ffi::vexfs_c_nlink(self.as_ptr()) }
    }

    /// Owner user id, as stored on disk (the initial user namespace).
    pub fn uid(&self) -> u32 {
        // SAFETY: live inode.
        unsafe { ffi::vexfs_c_uid(self.as_ptr()) }
    }

    /// Owner group id, as stored on disk.
    pub fn gid(&self) -> u32 {
        // SAFETY: live inode.
        unsafe { ffi::vexfs_c_gid(self.as_ptr()) }
    }

    /// The three timestamps. Read as C reads them for writeback: a concurrent update (under
    /// `i_rwsem`) may be seen half done, each field whole.
    pub fn times(&self) -> Times {
        let p = self.as_ptr();
        // SAFETY: live inode; each field is read with one volatile load of its own size.
        unsafe {
            Times {
                atime: (
                    core::ptr::addr_of!((*p).i_atime_sec).read_volatile(),
                    core::ptr::addr_of!((*p).i_atime_nsec).read_volatile(),
                ),
                mtime: (
                    core::ptr::addr_of!((*p).i_mtime_sec).read_volatile(),
                    core::ptr::addr_of!((*p).i_mtime_nsec).read_volatile(),
                ),
                ctime: (
                    core::ptr::addr_of!((*p).i_ctime_sec).read_volatile(),
                    core::ptr::addr_of!((*p).i_ctime_nsec).read_volatile(),
                ),
            }
        }
    }

    /// The device number of a character or block device (`i_rdev`), in the kernel's
    /// `new_encode_dev` layout (the one the disk inode stores): minor bits 0-7, major bits
    /// 8-19, minor bits 8-19 at 20-31. 0 for other inodes.
    pub fn rdev_encoded(&self) -> u32 {
        // SAFETY: live inode; `i_rdev` is set before the inode is visible and never changed.
        let dev: u32 = unsafe { (*self.as_ptr()).i_rdev };
        // dev_t: MAJOR = dev >> 20, MINOR = dev & 0xfffff (include/linux/kdev_t.h).
        let (major, minor) = (dev >> 20, dev & 0xfffff);
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
    }

    /// The generation number (set when the inode is created).
    pub fn generation(&self) -> u32 {
        // SAFETY: live inode; set before it is visible and never changed.
        unsafe { (*self.as_ptr()).i_generation }
    }

    /// The superblock of the inode.
    pub fn sb(&self) -> &SuperBlock<T> {
        // SAFETY: by the type invariant the superblock is a `SuperBlock<T>` for as long as
        // `self` is borrowed; `i_sb` never changes.
        unsafe { SuperBlock::from_raw((*self.as_ptr()).i_sb) }
    }

    /// Queues the inode for writeback (`mark_inode_dirty`).
    pub fn mark_dirty(&self) {
        // SAFETY: live inode; mark_inode_dirty takes the locks it needs.
        unsafe { ffi::vexfs_c_mark_inode_dirty(self.as_ptr()) };
    }

    fn state_ptr(&self) -> *mut T::InodeState {
        const {
            assert!(size_of::<T::InodeState>() <= ffi::INODE_STATE_WORDS * size_of::<u64>());
            assert!(align_of::<T::InodeState>() <= align_of::<u64>());
        }
        // SAFETY: live inode, inside a `vexfs_inode_info` (type invariant).
        unsafe { ffi::vexfs_c_inode_rs(self.as_ptr()) }.cast()
    }

    /// Whether `g` guards this inode's filesystem (always, unless the caller passed the guard
    /// of another mount: a bug, logged).
    fn guarded_by(&self, g: &T::Locked<'_>) -> bool {
        if core::ptr::eq(T::owner(g), self.sb().info()) {
            return true;
        }
        pr_err!("vexfs ({}): inode {} used under another mount's lock\n", self.sb().name(), self.ino());
        false
    }

    /// A copy of the filesystem's state of this inode. (A guard of another mount is a bug:
    /// it is logged and the initial state returned.)
    pub fn load(&self, g: &T::Locked<'_>) -> T::InodeState {
        if !self.guarded_by(g) {
            return T::InodeState::default();
        }
        // SAFETY: the state area holds a valid `T::InodeState` (type invariant) of fitting size
        // and alignment (checked above), and `g` orders every access to it (`FileSystem`'s
        // contract, the owner checked).
        unsafe { self.state_ptr().read() }
    }

    /// Stores the filesystem's state of this inode and sets `i_blocks` from it. (A guard of
    /// another mount is a bug: logged, nothing stored.)
    pub fn store(&self, g: &T::Locked<'_>, st: &T::InodeState) {
        if !self.guarded_by(g) {
            return;
        }
        // SAFETY: as in `load`; `i_blocks` is a word C writes with plain stores (readers such
        // as stat are racy in C too): one volatile store.
        unsafe {
            self.state_ptr().write(*st);
            let blocks = bindings::blkcnt_t::try_from(T::sectors(st)).unwrap_or(bindings::blkcnt_t::MAX);
            core::ptr::addr_of_mut!((*self.as_ptr()).i_blocks).write_volatile(blocks);
        }
    }
}

/// Sets the state area of a just-allocated inode to `T::InodeState::default()`.
///
/// # Safety
/// `rs` is the state area (`vexfs_inode_info.rs`) of an inode being allocated by `T`'s
/// alloc_inode, not yet seen by anyone else.
pub unsafe fn init_state<T: FileSystem>(rs: *mut u64) {
    const {
        assert!(size_of::<T::InodeState>() <= ffi::INODE_STATE_WORDS * size_of::<u64>());
        assert!(align_of::<T::InodeState>() <= align_of::<u64>());
    }
    // SAFETY: `rs` is 8-aligned storage of `INODE_STATE_WORDS` u64s (glue.h), large enough
    // (checked above), ours alone (contract).
    // INVARIANT: from here on the area holds a valid `T::InodeState`.
    unsafe { rs.cast::<T::InodeState>().write(T::InodeState::default()) };
}

/// An inode whose `i_rwsem` the VFS holds exclusively for the call (the directories of
/// create, link, unlink and rename).
///
/// # Invariants
/// As [`Inode`], and `i_rwsem` is held exclusively for the lifetime of the reference.
#[repr(transparent)]
pub struct LockedInode<T: FileSystem>(Inode<T>);

impl<T: FileSystem> LockedInode<T> {
    /// # Safety
    /// As [`Inode::from_raw`], and the VFS holds the inode's `i_rwsem` exclusively for `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::inode) -> &'a LockedInode<T> {
        // SAFETY: transparent over `Inode<T>`; the contract gives the invariant.
        unsafe { &*ptr.cast::<LockedInode<T>>() }
    }

    /// Sets the size in bytes (`i_size_write`, which wants `i_rwsem` held).
    pub fn set_size(&self, size: u64) {
        // SAFETY: live inode, `i_rwsem` held (type invariant).
        unsafe { ffi::vexfs_c_set_i_size(self.as_ptr(), i64::try_from(size).unwrap_or(i64::MAX)) };
    }

    /// Adds one to the link count (a new subdirectory's `..`).
    pub fn inc_nlink(&self) {
        // SAFETY: live inode; `i_rwsem` held, which orders link-count changes.
        unsafe { bindings::inc_nlink(self.as_ptr()) };
    }

    /// A directory changed: new mtime and ctime, queued for writeback.
    pub fn touch(&self) {
        // SAFETY: live inode; the times are changed under `i_rwsem` (held).
        unsafe { ffi::vexfs_c_touch_dir(self.as_ptr()) };
    }
}

impl<T: FileSystem> Deref for LockedInode<T> {
    type Target = Inode<T>;

    fn deref(&self) -> &Inode<T> {
        &self.0
    }
}

/// An inode being set up, not yet visible to any other task: `I_NEW` from `iget_locked`, or
/// just made by `new_inode` and not yet hashed or attached to a dentry.
///
/// # Invariants
/// As [`Inode`], and no other task reads or writes the inode's fields during the lifetime of
/// the reference.
#[repr(transparent)]
pub struct NewInode<T: FileSystem>(Inode<T>);

impl<T: FileSystem> NewInode<T> {
    /// # Safety
    /// As [`Inode::from_raw`], and no other task can reach the inode during `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::inode) -> &'a NewInode<T> {
        // SAFETY: transparent over `Inode<T>`; the contract gives the invariant.
        unsafe { &*ptr.cast::<NewInode<T>>() }
    }

    /// Sets the inode number.
    pub fn set_ino(&self, ino: u64) {
        // SAFETY: the inode is ours alone (type invariant).
        unsafe { (*self.as_ptr()).i_ino = ino as _ };
    }

    /// Sets the type and permission bits.
    pub fn set_mode(&self, mode: u16) {
        // SAFETY: the inode is ours alone.
        unsafe { (*self.as_ptr()).i_mode = mode };
    }

    /// Sets the link count.
    pub fn set_nlink(&self, n: u32) {
        // SAFETY: the inode is ours alone.
        unsafe { bindings::set_nlink(self.as_ptr(), n) };
    }

    /// Sets the link count to 0 (a creation that failed: eviction then frees nothing).
    pub fn clear_nlink(&self) {
        // SAFETY: the inode is ours alone.
        unsafe { bindings::clear_nlink(self.as_ptr()) };
    }

    /// Sets owner and group as read from disk.
    pub fn set_owner(&self, uid: u32, gid: u32) {
        // SAFETY: the inode is ours alone.
        unsafe { ffi::vexfs_c_set_owner(self.as_ptr(), uid, gid) };
    }

    /// Sets owner, group and mode for a new file in `dir` (`inode_init_owner`: the caller's
    /// ids, setgid directories).
    pub fn init_owner(&self, dir: &Inode<T>, mode: u16) {
        // SAFETY: the inode is ours alone; `dir` is live.
        unsafe { ffi::vexfs_c_init_owner(self.as_ptr(), dir.as_ptr(), mode) };
    }

    /// Sets the size in bytes.
    pub fn set_size(&self, size: u64) {
        // SAFETY: the inode is ours alone.
        unsafe { ffi::vexfs_c_set_i_size(self.as_ptr(), i64::try_from(size).unwrap_or(i64::MAX)) };
    }

    /// Sets the three timestamps.
    pub fn set_times(&self, t: &Times) {
        let p = self.as_ptr();
        // SAFETY: the inode is ours alone.
        unsafe {
            (*p).i_atime_sec = t.atime.0;
            (*p).i_atime_nsec = t.atime.1;
            (*p).i_mtime_sec = t.mtime.0;
            (*p).i_mtime_nsec = t.mtime.1;
            (*p).i_ctime_sec = t.ctime.0;
            (*p).i_ctime_nsec = t.ctime.1;
        }
    }

    /// Sets the three timestamps to now.
    pub fn set_times_now(&self) {
        // SAFETY: the inode is ours alone.
        unsafe { ffi::vexfs_c_times_now(self.as_ptr()) };
    }

    /// Sets the device number (`i_rdev`) from its `new_encode_dev` form (see
    /// [`Inode::rdev_encoded`]).
    pub fn set_rdev_encoded(&self, v: u32) {
        // new_decode_dev (include/linux/kdev_t.h).
        let major = (v & 0xfff00) >> 8;
        let minor = (v & 0xff) | ((v >> 12) & 0xfff00);
        // SAFETY: the inode is ours alone.
        unsafe { (*self.as_ptr()).i_rdev = (major << 20) | minor };
    }

    /// Sets the generation number.
    pub fn set_generation(&self, generation: u32) {
        // SAFETY: the inode is ours alone.
        unsafe { (*self.as_ptr()).i_generation = generation };
    }

    /// Sets a random generation number (a new inode).
    pub fn set_random_generation(&self) {
        // SAFETY: a plain exported kernel function.
        self.set_generation(unsafe { bindings::get_random_u32() });
    }

    /// Points the inode at the operation tables of its type (glue.c); the mode must be set.
    pub fn set_ops(&self) {
        // SAFETY: the inode is ours alone.
        unsafe { ffi::vexfs_c_set_ops(self.as_ptr()) };
    }
}

impl<T: FileSystem> Deref for NewInode<T> {
    type Target = Inode<T>;

    fn deref(&self) -> &Inode<T> {
        &self.0
    }
}

/// An owned reference to an inode of a superblock borrowed for `'a`, released (`iput`) when
/// dropped.
///
/// # Invariants
/// `inode` is a live inode of `T` on a superblock that lives for `'a`, and this value owns one
/// of its references.
pub struct InodeRef<'a, T: FileSystem> {
    inode: NonNull<bindings::inode>,
    _p: PhantomData<(&'a SuperBlock<T>, T)>,
}

impl<'a, T: FileSystem> InodeRef<'a, T> {
    /// # Safety
    /// `ptr` is a live inode of `T` (as [`Inode::from_raw`]) on a superblock live for `'a`,
    /// whose reference the caller hands over.
    pub unsafe fn from_raw(ptr: NonNull<bindings::inode>) -> InodeRef<'a, T> {
        // INVARIANT: per the contract.
        InodeRef { inode: ptr, _p: PhantomData }
    }

    /// Gives up the reference to the caller (the C side, e.g. `d_splice_alias`).
    pub fn into_raw(self) -> *mut bindings::inode {
        let p = self.inode.as_ptr();
        core::mem::forget(self);
        p
    }
}

impl<T: FileSystem> Deref for InodeRef<'_, T> {
    type Target = Inode<T>;

    fn deref(&self) -> &Inode<T> {
        // SAFETY: we own a reference (type invariant).
        unsafe { Inode::from_raw(self.inode.as_ptr()) }
    }
}

impl<T: FileSystem> Drop for InodeRef<'_, T> {
    fn drop(&mut self) {
        // SAFETY: we own one reference (type invariant).
        unsafe { bindings::iput(self.inode.as_ptr()) };
    }
}

/// An owned reference to a new inode from `iget_locked` (`I_NEW`, locked): the caller fills
/// it from disk and calls [`Self::unlock`]; dropped without that, the inode is unhashed, marked
/// bad and released (`iget_failed`), and evicted at once.
///
/// # Invariants
/// As [`InodeRef`], and the inode is `I_NEW`: other tasks wait in `iget_locked` until it is
/// unlocked, so it is ours alone.
pub struct NewInodeRef<'a, T: FileSystem> {
    inode: NonNull<bindings::inode>,
    _p: PhantomData<(&'a SuperBlock<T>, T)>,
}

impl<'a, T: FileSystem> NewInodeRef<'a, T> {
    /// # Safety
    /// As [`InodeRef::from_raw`], and the inode is `I_NEW`.
    pub unsafe fn from_raw(ptr: NonNull<bindings::inode>) -> NewInodeRef<'a, T> {
        // INVARIANT: per the contract.
        NewInodeRef { inode: ptr, _p: PhantomData }
    }

    /// Publishes the filled inode (`unlock_new_inode`).
    pub fn unlock(self) -> InodeRef<'a, T> {
        let p = self.inode;
        core::mem::forget(self);
        // SAFETY: a new inode we set up; waiters may use it from here on.
        unsafe { bindings::unlock_new_inode(p.as_ptr()) };
        // SAFETY: our reference, handed over; the superblock lives for 'a.
        unsafe { InodeRef::from_raw(p) }
    }
}

impl<'a, T: FileSystem> NewInodeRef<'a, T> {
    /// Publishes the filled inode to the caller only: it leaves the inode hash before it is
    /// unlocked, so no lookup finds it and its last iput evicts it. For a look at an inode that
    /// no dentry holds (a search result's permission check): an inode hashed there could meet a
    /// create that allocated the number but has not hashed its own inode yet (its
    /// insert_inode_locked would fail with EBUSY); unhashed, the create's insert waits for
    /// `I_NEW` to clear, sees it unhashed and goes on. The copy must not be changed.
    pub fn unlock_unhashed(self) -> InodeRef<'a, T> {
        let p = self.inode;
        core::mem::forget(self);
        // SAFETY: a new inode we set up, still `I_NEW` and hashed by iget_locked: unhashing it
        // before unlock_new_inode is the order insert_inode_locked and iget_locked expect (they
        // wait for `I_NEW`, then retry on an unhashed inode).
        unsafe {
            bindings::__remove_inode_hash(p.as_ptr());
            bindings::unlock_new_inode(p.as_ptr());
        }
        // SAFETY: our reference, handed over; the superblock lives for 'a.
        unsafe { InodeRef::from_raw(p) }
    }
}

impl<T: FileSystem> Deref for NewInodeRef<'_, T> {
    type Target = NewInode<T>;

    fn deref(&self) -> &NewInode<T> {
        // SAFETY: we own a reference to an `I_NEW` inode, ours alone (type invariant).
        unsafe { NewInode::from_raw(self.inode.as_ptr()) }
    }
}

impl<T: FileSystem> Drop for NewInodeRef<'_, T> {
    fn drop(&mut self) {
        let p = self.inode.as_ptr();
        // SAFETY: a new inode whose set-up failed, hashed by iget_locked and ours alone
        // (`I_NEW`). It leaves the inode hash before its waiters wake: a create that allocated
        // this number meanwhile waits in insert_inode_locked for the `I_NEW` inode and then
        // fails (EBUSY) unless it is unhashed. With no link left, the last iput evicts it
        // (vexfs frees nothing for a bad inode) instead of caching a bad inode under a number
        // a later create may take (the stress test's "inode N allocated twice", after a search's
        // permission check probed a freed number). Then iget_failed marks it bad, unlocks it
        // and drops our reference.
        unsafe {
            bindings::__remove_inode_hash(p);
            bindings::clear_nlink(p);
            bindings::iget_failed(p);
        }
    }
}

/// What [`SuperBlock::iget`] finds.
pub enum Iget<'a, T: FileSystem> {
    /// The inode was in the cache, ready.
    Cached(InodeRef<'a, T>),
    /// A new inode, for the caller to read from disk.
    New(NewInodeRef<'a, T>),
}

impl<T: FileSystem> SuperBlock<T> {
    /// The inode `ino`: cached, or new (`I_NEW`, locked) for the caller to read from disk and
    /// unlock. Errors: `ENOMEM`; `EINVAL` for a number the VFS cannot hold.
    pub fn iget(&self, ino: u64) -> Result<Iget<'_, T>> {
        let ino = usize::try_from(ino).map_err(|_| EINVAL)?;
        // SAFETY: the superblock is live; iget_locked returns a referenced inode or null.
        let inode = NonNull::new(unsafe { bindings::iget_locked(self.as_ptr(), ino) }).ok_or(ENOMEM)?;
        // SAFETY: `inode` is live and referenced.
        if unsafe { ffi::vexfs_c_is_new(inode.as_ptr()) } {
            // SAFETY: a new inode of this superblock (allocated by T's alloc_inode), locked
            // (`I_NEW`), whose reference we hand over.
            Ok(Iget::New(unsafe { NewInodeRef::from_raw(inode) }))
        } else {
            // SAFETY: a live inode of this superblock, whose reference we hand over.
            Ok(Iget::Cached(unsafe { InodeRef::from_raw(inode) }))
        }
    }
}

impl<T: FileSystem> NewSuperBlock<T> {
    /// Makes `root` the root directory (`d_make_root`, which takes over the reference even on
    /// failure). `ENOMEM` if no dentry can be had.
    pub fn set_root(&self, root: InodeRef<'_, T>) -> Result {
        // SAFETY: `into_raw` hands over our reference, which d_make_root consumes.
        let dentry = unsafe { bindings::d_make_root(root.into_raw()) };
        if dentry.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: the superblock is being set up by us (the invariant of `NewSuperBlock`).
        unsafe { (*self.as_ptr()).s_root = dentry };
        Ok(())
    }
}
