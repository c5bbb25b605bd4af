//! The current task's allocation scope.

use crate::ffi;
use core::marker::PhantomData;

/// While it lives, allocations of the current task do not recurse into filesystem reclaim
/// (`memalloc_nofs_save`), which could need a lock this task holds. Scopes nest; they end in
/// reverse order of creation (drop order), on the task that made them (the type is not
/// `Send`).
pub struct NofsScope {
    flags: u32,
    _not_send: PhantomData<*mut ()>,
}

impl NofsScope {
    /// Opens a scope on the current task.
    pub fn enter() -> NofsScope {
        // SAFETY: `memalloc_nofs_save` only changes the current task's flags; the scope is
        // closed by `drop` on the same task (the type is not `Send`).
        let flags = unsafe { ffi::vexfs_c_nofs_save() };
        NofsScope { flags, _not_send: PhantomData }
    }
}

impl Drop for NofsScope {
    fn drop(&mut self) {
        // SAFETY: restores what `enter` saved, on the same task.
        unsafe { ffi::vexfs_c_nofs_restore(self.flags) };
    }
}
