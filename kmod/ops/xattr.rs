//! The xattr handlers and listxattr (glue.c): `user.vexfs.embedding` (the embedding), and the
//! stored attributes of the `user.`, `trusted.` and `security.` namespaces (crate::xattr).

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

/// A stored attribute's get: namespace `index`, name (after the prefix) `name_p`/`name_len`,
/// value copied into `buf` (`size` 0: its length). Errors: ENODATA, ERANGE, EUCLEAN, EIO.
#[no_mangle]
pub extern "C" fn vexfs_rs_xattr_get_stored(
    inode: *mut bindings::inode,
    index: u8,
    name_p: *const u8,
    name_len: usize,
    buf: *mut u8,
    size: usize,
) -> c_int {
    // SAFETY: the handler gets an inode referenced by its dentry, the name (NUL-terminated,
    // `name_len` bytes) and, with `size` > 0, the VFS's kernel buffer of `size` bytes.
    let (inode, name, out) = unsafe {
        (
            Inode::from_raw(inode),
            core::slice::from_raw_parts(name_p, name_len),
            (size > 0 && !buf.is_null()).then(|| core::slice::from_raw_parts_mut(buf, size)),
        )
    };
    match crate::xattr::get(inode, index, name, out) {
        Ok(len) => c_int::try_from(len).unwrap_or(c_int::MAX),
        Err(e) => e.to_errno(),
    }
}

/// A stored attribute's set (`value` non-null) or removal (null), in the caller's handle.
/// Errors: as [`crate::xattr::set`].
#[no_mangle]
pub extern "C" fn vexfs_rs_xattr_set_stored(
    inode: *mut bindings::inode,
    index: u8,
    name_p: *const u8,
    name_len: usize,
    value: *const u8,
    size: usize,
    flags: c_int,
) -> c_int {
    // SAFETY: as in `vexfs_rs_xattr_get_stored`; a non-null `value` is the VFS's kernel copy of
    // `size` bytes; the inode's i_rwsem is held.
    let (inode, name, value) = unsafe {
        (
            Inode::from_raw(inode),
            core::slice::from_raw_parts(name_p, name_len),
            (!value.is_null()).then(|| core::slice::from_raw_parts(value, size)),
        )
    };
    errno_of(crate::xattr::set(inode, index, name, value, flags))
}

/// The stored attributes' names for listxattr, into `buf` (`size` 0: the length), the
/// `trusted.` ones only with `trusted`. Returns the bytes, or a negative errno (ERANGE).
#[no_mangle]
pub extern "C" fn vexfs_rs_xattr_list_stored(
    inode: *mut bindings::inode,
    trusted: c_int,
    buf: *mut u8,
    size: usize,
) -> isize {
    // SAFETY: as in `vexfs_rs_xattr_get_stored`.
    let (inode, out) = unsafe {
        (Inode::from_raw(inode), (size > 0 && !buf.is_null()).then(|| core::slice::from_raw_parts_mut(buf, size)))
    };
    match crate::xattr::list(inode, trusted != 0, out) {
        Ok(n) => isize::try_from(n).unwrap_or(isize::MAX),
        Err(e) => e.to_errno() as isize,
    }
}
