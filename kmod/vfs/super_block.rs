//! The superblock, in the states vexfs sees it: [`NewSuperBlock`] while fill_super sets it up,
//! [`SuperBlock`] once its filesystem state hangs on it, and [`Device`], the view both give of
//! its buffer cache and its name. (What hands out inodes, `SuperBlock::iget` and
//! `NewSuperBlock::set_root`, lives with the inode wrappers in [`crate::vfs::inode`].)

use crate::error::FormatError;
use crate::ffi;
use crate::format::BLOCK_SIZE;
use crate::vfs::fs::FileSystem;
use core::ffi::c_int;
use core::marker::PhantomData;
use core::ops::Deref;
use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

/// The name (`s_id`) of the superblock at `sb`, up to its NUL, or `"?"` if it is not UTF-8.
///
/// # Safety
/// `sb` is a live superblock whose `s_id` is set (the VFS sets it before fill_super) and does
/// not change while the returned borrow lives.
unsafe fn name_of<'a>(sb: *mut bindings::super_block) -> &'a str {
    // SAFETY: per the function contract, `s_id` is 32 initialised bytes inside the live
    // superblock, unchanged for 'a; `c_char` and `u8` have the same layout.
    let id = unsafe { core::slice::from_raw_parts((*sb).s_id.as_ptr().cast::<u8>(), 32) };
    let n = id.iter().position(|&b| b == 0).unwrap_or(id.len());
    id.get(..n).and_then(|s| core::str::from_utf8(s).ok()).unwrap_or("?")
}

/// A superblock seen as its device: blocks of [`BLOCK_SIZE`] bytes through the buffer cache
/// ([`crate::buf::Buf`]), and its name for log lines.
///
/// # Invariants
/// The superblock is live for the lifetime of the reference, its block size is
/// [`BLOCK_SIZE`], and its `s_id` is set and does not change.
#[repr(transparent)]
pub struct Device(Opaque<bindings::super_block>);

impl Device {
    /// # Safety
    /// `ptr` is a live superblock whose block size is [`BLOCK_SIZE`] and whose `s_id` is set,
    /// both for `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::super_block) -> &'a Device {
        // SAFETY: `Device` is a transparent wrapper of the C struct; the contract gives the
        // type invariant.
        unsafe { &*ptr.cast::<Device>() }
    }

    /// The C superblock, for the buffer-cache glue.
    pub fn as_ptr(&self) -> *mut bindings::super_block {
        self.0.get()
    }

    /// The device name (`s_id`, e.g. `vda`), for log lines.
    pub fn name(&self) -> &str {
        // SAFETY: the type invariant: live, `s_id` set and unchanged while `self` is borrowed.
        unsafe { name_of(self.as_ptr()) }
    }

    /// Whether the filesystem is mounted read-only.
    pub fn is_rdonly(&self) -> bool {
        // SAFETY: the superblock is live (type invariant).
        unsafe { ffi::vexfs_c_rdonly(self.as_ptr()) != 0 }
    }

    /// Makes the filesystem read-only from now on (`SB_RDONLY`): writes fail with `EROFS`. For
    /// an aborted journal, as ext4 does.
    pub fn force_rdonly(&self) {
        // SAFETY: `as_ptr` is a live superblock; setting a flag bit is what ext4's error path
        // does without further locking.
        unsafe { ffi::vexfs_c_force_rdonly(self.as_ptr()) };
    }

    /// Logs a format error found on this device and returns its errno (`EUCLEAN` for
    /// corruption, `EINVAL` for what is unsupported).
    pub fn report(&self, e: FormatError) -> Error {
        pr_err!("vexfs ({}): {}\n", self.name(), e);
        Error::from_errno(-e.errno())
    }

    /// Logs a corruption found outside the format decoders (`what` and the bad `value`) and
    /// returns `EUCLEAN`.
    pub fn corrupt(&self, what: &str, value: u64) -> Error {
        pr_err!("vexfs ({}): corrupt {} (value {})\n", self.name(), what, value);
        Error::from_errno(-crate::error::EUCLEAN)
    }
}

/// A mounted superblock of filesystem `T`.
///
/// # Invariants
/// As [`Device`], and `s_fs_info` points at a `T::Info` (set by [`NewSuperBlock::fill`]) that
/// stays valid for the lifetime of the reference.
#[repr(transparent)]
pub struct SuperBlock<T: FileSystem>(Opaque<bindings::super_block>, PhantomData<T>);

impl<T: FileSystem> SuperBlock<T> {
    /// # Safety
    /// `ptr` is a superblock of filesystem `T` that [`NewSuperBlock::fill`] gave its `T::Info`,
    /// which is not freed during `'a` (the VFS calls the superblock operations, and hands out
    /// inodes, only between a successful fill and put_super).
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::super_block) -> &'a SuperBlock<T> {
        // SAFETY: a transparent wrapper of the C struct; the contract gives the invariant.
        unsafe { &*ptr.cast::<SuperBlock<T>>() }
    }

    /// The filesystem's state.
    pub fn info(&self) -> &T::Info {
        // SAFETY: by the type invariant `s_fs_info` points at a live `T::Info` for as long as
        // `self` is borrowed; it is only ever shared (`T::Info: Sync`).
        unsafe { &*(*self.as_ptr()).s_fs_info.cast::<T::Info>() }
    }

    /// Frees the filesystem state of a superblock being unmounted (put_super).
    ///
    /// # Safety
    /// `ptr` is a superblock of `T` whose `s_fs_info` holds the `T::Info` of
    /// [`NewSuperBlock::fill`], no reference to it is live, and none is made again: the VFS
    /// calls put_super after the last inode is evicted and calls nothing of `T` on this
    /// superblock afterwards.
    pub unsafe fn free_info(ptr: *mut bindings::super_block) {
        // SAFETY: per the contract; `s_fs_info` came from `KBox::into_raw` in `fill`.
        unsafe {
            let info = (*ptr).s_fs_info.cast::<T::Info>();
            (*ptr).s_fs_info = core::ptr::null_mut();
            drop(KBox::from_raw(info));
        }
    }

    /// The C superblock.
    pub(crate) fn as_ptr(&self) -> *mut bindings::super_block {
        self.0.get()
    }
}

impl<T: FileSystem> Deref for SuperBlock<T> {
    type Target = Device;

    fn deref(&self) -> &Device {
        // SAFETY: the invariant of `SuperBlock` includes that of `Device`.
        unsafe { Device::from_raw(self.as_ptr()) }
    }
}

/// A superblock that fill_super is setting up for filesystem `T`.
///
/// # Invariants
/// The superblock is live and used by this fill_super call alone (the VFS holds `s_umount`
/// and has published nothing of it); its `s_id` and `s_bdev` are set; `s_fs_info` is null
/// until [`Self::fill`] sets it.
#[repr(transparent)]
pub struct NewSuperBlock<T: FileSystem>(Opaque<bindings::super_block>, PhantomData<T>);

impl<T: FileSystem> NewSuperBlock<T> {
    /// # Safety
    /// `ptr` is the superblock handed to fill_super (by `get_tree_bdev`), with a null
    /// `s_fs_info`, for the duration of that call (`'a`).
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::super_block) -> &'a NewSuperBlock<T> {
        // SAFETY: a transparent wrapper of the C struct; the contract gives the invariant.
        unsafe { &*ptr.cast::<NewSuperBlock<T>>() }
    }

    /// The C superblock.
    pub(crate) fn as_ptr(&self) -> *mut bindings::super_block {
        self.0.get()
    }

    /// The device name, for log lines.
    pub fn name(&self) -> &str {
        // SAFETY: the superblock is live and `s_id` set and unchanged (type invariant).
        unsafe { name_of(self.as_ptr()) }
    }

    /// Size of the device in bytes.
    pub fn device_bytes(&self) -> u64 {
        // SAFETY: the superblock is live and has its block device (type invariant).
        unsafe { ffi::vexfs_c_dev_bytes(self.as_ptr()) }
    }

    /// Sets the block size to [`BLOCK_SIZE`] and returns the device view, through which blocks
    /// can be read. `EINVAL` if the device cannot use that size.
    pub fn set_block_size(&self) -> Result<&Device> {
        // SAFETY: the superblock is being set up by us (type invariant).
        if unsafe { bindings::sb_set_blocksize(self.as_ptr(), BLOCK_SIZE as c_int) } == 0 {
            return Err(EINVAL);
        }
        // SAFETY: live, block size just set, `s_id` set (type invariant).
        Ok(unsafe { Device::from_raw(self.as_ptr()) })
    }

    /// Sets what statfs reports as the filesystem type (`s_magic`) and the largest file size.
    pub fn set_limits(&self, magic: u32, max_bytes: u64) {
        // SAFETY: the superblock is being set up by us (type invariant).
        unsafe {
            (*self.as_ptr()).s_magic = magic as usize;
            (*self.as_ptr()).s_maxbytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        }
    }

    /// Hangs `info` on the superblock (`s_fs_info`) and runs `fill` on the mounted view, which
    /// must end by [`Self::set_root`].
    ///
    /// Who frees `info`: if `fill` fails before `s_root` is set, this function does, after
    /// `fill` returned (every inode reference it took is then dropped, and since the
    /// superblock is not active yet, each inode was evicted at its last `iput`, while `info`
    /// was still there). Otherwise the VFS will call put_super (generic_shutdown_super calls
    /// it exactly when `s_root` is set, after evicting every inode), whose entry point frees it
    /// with [`SuperBlock::free_info`]. Either way `info` goes before `kill_block_super`
    /// releases the device. Errors: `EINVAL` if the block size was not set; `fill`'s.
    pub fn fill(&self, info: Pin<KBox<T::Info>>, fill: impl for<'a> FnOnce(&'a SuperBlock<T>) -> Result) -> Result {
        let sb = self.as_ptr();
        // SAFETY: the superblock is live (type invariant).
        if unsafe { (*sb).s_blocksize } != BLOCK_SIZE {
            return Err(EINVAL);
        }
        // SAFETY: the box is never moved out of: it is only dropped in place, through
        // `KBox::from_raw` here or in `SuperBlock::free_info`.
        let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(info) });
        // SAFETY: the superblock is being set up by us; `s_fs_info` was null.
        unsafe { (*sb).s_fs_info = raw.cast() };
        // SAFETY: `s_fs_info` now holds a `T::Info` that stays until freed below (after
        // `fill` returned, so no borrow of `fill` is live: its lifetime is higher-ranked) or
        // by put_super; block size and `s_id` are set.
        let r = fill(unsafe { SuperBlock::from_raw(sb) });
        // SAFETY: the superblock is live.
        if r.is_err() && unsafe { (*sb).s_root }.is_null() {
            // SAFETY: see the doc comment: nothing refers to `info` any more, and the VFS will
            // call nothing of ours on this superblock again.
            unsafe {
                (*sb).s_fs_info = core::ptr::null_mut();
                drop(KBox::from_raw(raw));
            }
        }
        r
    }
}
