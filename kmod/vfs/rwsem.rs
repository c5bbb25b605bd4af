//! [`RwSem`]: data behind a `struct rw_semaphore`, many readers or one writer (the kernel
//! crate of 6.12 wraps `mutex` and `spinlock` only). Readers and the writer may sleep while
//! they hold it. For the vector index: searches share it, changes to the index take it alone.

use crate::ffi;
use core::cell::UnsafeCell;
use core::marker::{PhantomData, PhantomPinned};
use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

/// `T` behind a reader-writer semaphore (`include/linux/rwsem.h`). All `RwSem`s share one
/// lockdep class (glue.c's `vexfs_c_init_rwsem`): never hold two at once.
#[pin_data]
pub struct RwSem<T> {
    #[pin]
    sem: Opaque<bindings::rw_semaphore>,
    #[pin]
    _pin: PhantomPinned,
    data: UnsafeCell<T>,
}

// SAFETY: the semaphore may be taken and released from any task; `T` moves with it when `T` does.
unsafe impl<T: Send> Send for RwSem<T> {}
// SAFETY: readers share `&T` from several tasks at once (so `T: Sync`); the writer gets `&mut T`
// alone, possibly on another task than the one that made `T` (so `T: Send`).
unsafe impl<T: Send + Sync> Sync for RwSem<T> {}

impl<T> RwSem<T> {
    /// A semaphore over `data`, free.
    pub fn new(data: T) -> impl PinInit<Self> {
        pin_init!(Self {
            data: UnsafeCell::new(data),
            _pin: PhantomPinned,
            // SAFETY: `slot` is valid, pinned memory for a `struct rw_semaphore` while the
            // closure runs; `init_rwsem` initialises it in place.
            sem <- Opaque::ffi_init(|slot| unsafe { ffi::vexfs_c_init_rwsem(slot) }),
        })
    }

    /// Takes the semaphore shared (`down_read_killable`): the guard gives `&T` while other
    /// readers hold it too. Errors: `EINTR` if a fatal signal came while waiting for a writer.
    pub fn read(&self) -> Result<ReadGuard<'_, T>> {
        // SAFETY: `sem` was initialised by `new` and is pinned with `self`.
        let r = unsafe { bindings::down_read_killable(self.sem.get()) };
        if r != 0 {
            return Err(EINTR);
        }
        Ok(ReadGuard { sem: self, _not_send: PhantomData })
    }

    /// Takes the semaphore alone (`down_write`, uninterruptible, as a mutex): the guard gives
    /// `&mut T`.
    pub fn write(&self) -> WriteGuard<'_, T> {
        // SAFETY: as in `read`.
        unsafe { bindings::down_write(self.sem.get()) };
        WriteGuard { sem: self, _not_send: PhantomData }
    }

    /// Takes the semaphore alone if nobody holds it (`down_write_trylock`, never sleeps): for
    /// the shrinker, which must not wait. `None` when a reader or a writer holds it.
    pub fn try_write(&self) -> Option<WriteGuard<'_, T>> {
        // SAFETY: as in `read`.
        let r = unsafe { bindings::down_write_trylock(self.sem.get()) };
        // `then`, not `then_some`: a guard made when the lock was not taken would release it
        // when dropped.
        (r != 0).then(|| WriteGuard { sem: self, _not_send: PhantomData })
    }
}

/// The semaphore held shared; released on drop, on the task that took it (not `Send`).
pub struct ReadGuard<'a, T> {
    sem: &'a RwSem<T>,
    _not_send: PhantomData<*mut ()>,
}

impl<T> core::ops::Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: while a reader holds the semaphore no writer does, so no `&mut T` exists.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard took the semaphore shared, on this task.
        unsafe { bindings::up_read(self.sem.sem.get()) };
    }
}

/// The semaphore held alone; released on drop, on the task that took it (not `Send`).
pub struct WriteGuard<'a, T> {
    sem: &'a RwSem<T>,
    _not_send: PhantomData<*mut ()>,
}

impl<T> core::ops::Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds the semaphore alone: no other reference to `T` exists.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> core::ops::DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard took the semaphore alone, on this task.
        unsafe { bindings::up_write(self.sem.sem.get()) };
    }
}
