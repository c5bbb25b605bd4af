//! The wall clock.

use kernel::bindings;

/// Seconds since the epoch, wall-clock time (`ktime_get_real_seconds`).
pub fn real_seconds() -> i64 {
    // SAFETY: a plain exported kernel function, callable in any context.
    unsafe { bindings::ktime_get_real_seconds() }
}
