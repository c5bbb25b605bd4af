//! [`DirContext`]: where a readdir stands and where its entries go.

use crate::ffi;
use kernel::bindings;
use kernel::types::Opaque;

/// The cursor of one readdir (`struct dir_context`): its position, and the sink for entries
/// (`dir_emit`, which copies them to the caller's buffer).
///
/// # Invariants
/// The context is live and used by this readdir call alone for the lifetime of the reference.
#[repr(transparent)]
pub struct DirContext(Opaque<bindings::dir_context>);

impl DirContext {
    /// # Safety
    /// `ptr` is the context handed to `iterate_shared`, used by nobody else during `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::dir_context) -> &'a mut DirContext {
        // SAFETY: a transparent wrapper of the C struct; the contract gives the invariant.
        unsafe { &mut *ptr.cast::<DirContext>() }
    }

    /// The position: where the next entry is looked for (a byte offset in vexfs directories).
    pub fn pos(&self) -> i64 {
        // SAFETY: the context is live and ours (type invariant).
        unsafe { ffi::vexfs_c_ctx_pos(self.0.get()) }
    }

    /// Sets the position.
    pub fn set_pos(&mut self, pos: i64) {
        // SAFETY: the context is live and ours.
        unsafe { ffi::vexfs_c_set_ctx_pos(self.0.get(), pos) };
    }

    /// Hands one entry (`name`, inode `ino`, `DT_*` type `dt`) to the caller; `false` when its
    /// buffer is full (stop, and resume at the current position next time). May fault on user
    /// memory: hold no lock across it.
    pub fn emit(&mut self, name: &[u8], ino: u64, dt: u8) -> bool {
        let Ok(len) = u32::try_from(name.len()) else { return false };
        // SAFETY: the context is live and ours; `name` is `len` readable bytes for the call.
        unsafe { ffi::vexfs_c_emit(self.0.get(), name.as_ptr(), len, ino, dt.into()) }
    }
}
