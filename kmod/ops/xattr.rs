//! The `user.` xattr handler and listxattr (glue.c): `user.vexfs.embedding`.

use crate::ops::errno_of;
use crate::sb::Inode;
use core::ffi::c_int;
use kernel::bindings;

/// `user.vexfs.embedding` get: chunk 0 as raw float32; `size` 0 asks for the length.
/// Errors: ENODATA (no embedding), ERANGE (buffer too small).
#[no_mangle]
pub extern "C" fn vexfs_rs_xattr_get(inode: *mut bindings::inode, buf: *mut u8, size: usize) -> c_int {
    // SAFETY: the handler gets an inode referenced by its dentry; with `size` > 0, `buf` is the
    // VFS's kernel buffer of `size` bytes, ours for the call.
    let (inode, out) = unsafe {
        (Inode::from_raw(inode), (size > 0 && !buf.is_null()).then(|| core::slice::from_raw_parts_mut(buf, size)))
    };
    match crate::ioctl::xattr_get(inode, out) {
        Ok(len) => c_int::try_from(len).unwrap_or(c_int::MAX),
        Err(e) => e.to_errno(),
    }
}

/// `user.vexfs.embedding` set (chunk 0) or remove (`value` null: every embedding).
/// Errors: EINVAL (size is not dim * 4, NaN/Inf), EEXIST/ENODATA for XATTR_CREATE/REPLACE.
#[no_mangle]
pub extern "C" fn vexfs_rs_xattr_set(
    inode: *mut bindings::inode,
    value: *const u8,
    size: usize,
    flags: c_int,
) -> c_int {
    // SAFETY: the handler gets an inode referenced by its dentry (a regular file, its i_rwsem
    // held); a non-null `value` is the VFS's kernel copy of `size` bytes, unchanged for the
    // call.
    let (inode, value) =
        unsafe { (Inode::from_raw(inode), (!value.is_null()).then(|| core::slice::from_raw_parts(value, size))) };
    errno_of(crate::ioctl::xattr_set(inode, value, flags))
}

/// Whether the inode has embeddings, for listxattr.
#[no_mangle]
pub extern "C" fn vexfs_rs_has_embeddings(inode: *mut bindings::inode) -> c_int {
    // SAFETY: listxattr passes the inode of a dentry it holds.
    let inode = unsafe { Inode::from_raw(inode) };
    crate::vector::has_embeddings(inode) as c_int
}
