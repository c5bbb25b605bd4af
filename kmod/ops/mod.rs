//! The entry points of the module: the `#[no_mangle] extern "C"` functions that glue.c's
//! operation tables call, one file per C table (as the kernel keeps them apart). Each converts
//! the raw pointers it is handed into the wrappers of [`crate::vfs`] once, with the reasoning
//! that the VFS guarantees what the wrapper's `from_raw` asks, and calls the safe logic
//! (`mount`, `inode`, `namei`, `vector`, `ioctl`). Errors become negative errnos here only.

pub mod aops;
pub mod file_ops;
pub mod inode_ops;
pub mod super_ops;
pub mod xattr;

use core::ffi::c_int;
use kernel::prelude::*;

/// 0 or the negative errno, for the C side.
pub fn errno_of(r: Result) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// The `len` bytes of a name passed by C.
///
/// # Safety
/// `name` points at `len` readable bytes that do not change during `'a`.
pub unsafe fn name<'a>(name: *const u8, len: u32) -> &'a [u8] {
    // SAFETY: per the function contract.
    unsafe { core::slice::from_raw_parts(name, len as usize) }
}
