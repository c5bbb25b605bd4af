//! What a mounted vexfs does when it finds corruption: the one place where an `EUCLEAN` found
//! on a mounted filesystem (a bad inode, directory block, extent block, bitmap, vector-index
//! record...) is reported, and the `errors=continue|remount-ro|panic` mount option.
//!
//! **Where corruption arrives.** Every corruption found while mounted goes through the
//! [`SuperBlock`] methods [`SuperBlock::corrupt`] (a bad value found by the kmod code) and
//! [`SuperBlock::report`] (a format decoder's error), and index errors through
//! [`index_error`]. The two methods have the names and signatures of the [`Device`] ones that
//! log the error line, and shadow them on a mounted superblock: a call on a [`SuperBlock`] logs
//! the same line and then acts here ([`found`]); a call on a bare [`Device`] (fill_super before
//! the mount state exists: the mount fails) only logs.
//!
//! **What happens** ([`found`]): the error is logged (the line names the device and what was
//! found; at most [`LOG_BURST`] lines per [`LOG_INTERVAL_NS`] per mount, as ext4's
//! `err_ratelimit_burst`/`err_ratelimit_interval_ms` defaults: a corrupt structure met by every
//! access, or a fuzzer's image, cannot flood the log; the lines left out are counted and the
//! count is logged with the next line let through), the mount remembers it (`STATE_ERRORS` goes into every superblock written from
//! then on), and then, per `errors=`: `continue` does nothing more; `remount-ro` (the default)
//! makes the filesystem read-only (`SB_RDONLY`, as a journal abort does): from then on every
//! journal handle is refused (`EROFS`), operations in progress finish, and what they changed
//! is committed as usual; `panic` writes the bit and stops the machine (`panic()`).
//!
//! **How `STATE_ERRORS` reaches the disk.** Not from [`found`]: it may run with the metadata
//! lock held (the allocators report corruption), and a commit may be copying the superblock's
//! block into the log at that moment, so writing the block there could log or write a torn
//! superblock. The commit ticker ([`tick`], within [`crate::mount::COMMIT_SECONDS`]) writes it:
//! while the filesystem is writable, through the journal (a handle, the superblock into the
//! running transaction, a commit); once it was made read-only (no handle can open any more), it
//! first commits what ran before and then writes the superblock block directly with FUA under
//! the metadata lock, as mount does for `RECOVER`. Unmount writes it again with the clean
//! state. A replay at the next mount may write an older image of the superblock back over the
//! bit; mount keeps the bit it read before the replay (as ext4 keeps its error fields). A
//! crash before the tick loses the bit (the log line stays). `errors=panic` writes the bit
//! directly, best effort, before panicking. A read-only mount keeps the bit in memory only: it
//! does not write the device for it. `fsck.vexfs -y` clears the bit once nothing else is
//! wrong; `-n` reports it.

use crate::buf::Buf;
use crate::error::{FormatError, EUCLEAN};
use crate::format::superblock::{Superblock, STATE_ERRORS};
use crate::index_error::IndexError;
use crate::sb::SuperBlock;
use crate::txn::Handle;
use crate::vfs::super_block::Device;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;

/// The `errors=` mount option (glue.h's `enum vexfs_errors`, same values).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorsMode {
    /// Report the corruption and go on.
    Continue = 0,
    /// Report it and make the filesystem read-only (the default, as ext4's).
    RemountRo = 1,
    /// Report it and stop the machine.
    Panic = 2,
}

impl ErrorsMode {
    /// The mode of a value of `enum vexfs_errors`; anything else is the default.
    pub fn from_c(v: u32) -> ErrorsMode {
        match v {
            0 => ErrorsMode::Continue,
            2 => ErrorsMode::Panic,
            _ => ErrorsMode::RemountRo,
        }
    }
}

/// Most corruption lines a mount logs per [`LOG_INTERVAL_NS`] (ext4's default burst).
pub const LOG_BURST: u32 = 10;
/// The window of [`LOG_BURST`], in ns (5 s, ext4's default interval).
pub const LOG_INTERVAL_NS: u64 = 5_000_000_000;

/// The rate limit of one mount's corruption lines: a window starting at `start` (ns of
/// `ktime_get`) in which `printed` lines went out, and how many were left out since the last
/// line that went out. Atomics without a lock: concurrent reporters may let a line or two more
/// through at a window's edge, which is harmless.
struct LogLimit {
    start: AtomicU64,
    printed: AtomicU32,
    suppressed: AtomicU32,
}

impl LogLimit {
    const fn new() -> LogLimit {
        LogLimit { start: AtomicU64::new(0), printed: AtomicU32::new(0), suppressed: AtomicU32::new(0) }
    }

    /// Whether a line may be logged now; if so, also how many were left out before it.
    fn admit(&self) -> Option<u32> {
        // SAFETY: ktime_get reads the monotonic clock; callable from any context.
        let now = u64::try_from(unsafe { kernel::bindings::ktime_get() }).unwrap_or(0);
        let start = self.start.load(Ordering::Relaxed);
        if now.saturating_sub(start) >= LOG_INTERVAL_NS
            && self.start.compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.printed.store(0, Ordering::Relaxed);
        }
        if self.printed.fetch_add(1, Ordering::Relaxed) < LOG_BURST {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            // Saturating: a count that wrapped would only misreport the number left out.
            let _ = self.suppressed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
            None
        }
    }
}

/// The error state of one mount, in `SbInfo` (atomics: [`found`] may run under any lock of the
/// mount).
pub struct Errors {
    /// The `errors=` mode, an [`ErrorsMode`] value.
    mode: AtomicU32,
    /// Corruption was found, now or before (the bit was on disk at mount): every superblock
    /// written from now on has `STATE_ERRORS`.
    seen: AtomicBool,
    /// `STATE_ERRORS` may not be on disk yet: the next [`tick`] writes it.
    pending: AtomicBool,
    /// This mount made itself read-only after an error: its journal still commits what ran
    /// before, and the superblock is still written (at the tick and at unmount).
    forced_ro: AtomicBool,
    /// The rate limit of the corruption lines ([`SuperBlock::corrupt`], [`SuperBlock::report`]).
    log: LogLimit,
}

impl Errors {
    /// The state of a mount whose superblock has `STATE_ERRORS` when `on_disk`; the mode is
    /// the default until [`set_mode`] is called.
    pub fn new(on_disk: bool) -> Errors {
        Errors {
            mode: AtomicU32::new(ErrorsMode::RemountRo as u32),
            seen: AtomicBool::new(on_disk),
            pending: AtomicBool::new(false),
            forced_ro: AtomicBool::new(false),
            log: LogLimit::new(),
        }
    }

    /// The current `errors=` mode.
    pub fn mode(&self) -> ErrorsMode {
        ErrorsMode::from_c(self.mode.load(Ordering::Relaxed))
    }

    /// `STATE_ERRORS` if corruption was seen, else 0: or-ed into every superblock written.
    pub fn state_bits(&self) -> u32 {
        if self.seen.load(Ordering::Acquire) {
            STATE_ERRORS
        } else {
            0
        }
    }

    /// Whether this mount made itself read-only after an error (a mount made read-only by
    /// `errors=remount-ro` still writes its superblock; one mounted read-only does not).
    pub fn forced_ro(&self) -> bool {
        self.forced_ro.load(Ordering::Acquire)
    }
}

/// Sets the `errors=` mode of `sb` (at the end of fill_super, and at a remount that names it).
pub fn set_mode(sb: &SuperBlock, mode: ErrorsMode) {
    sb.info().errors.mode.store(mode as u32, Ordering::Relaxed);
}

impl SuperBlock {
    /// Whether a corruption line may be logged now (the mount's rate limit); when lines were
    /// left out since the last one, says how many first.
    fn may_log(&self) -> bool {
        match self.info().errors.log.admit() {
            None => false,
            Some(0) => true,
            Some(n) => {
                pr_err!("vexfs ({}): {} corruption message(s) suppressed\n", self.name(), n);
                true
            }
        }
    }

    /// Logs a corruption found on this mounted filesystem (`what` and the bad `value`, the
    /// line of [`Device::corrupt`], rate-limited), acts on it per `errors=` ([`found`]) and
    /// returns `EUCLEAN`.
    pub fn corrupt(&self, what: &str, value: u64) -> Error {
        let e = if self.may_log() { Device::corrupt(self, what, value) } else { Error::from_errno(-EUCLEAN) };
        found(self);
        e
    }

    /// Logs a format error found on this mounted filesystem (the line of [`Device::report`],
    /// rate-limited) and returns its errno; corruption (`EUCLEAN`, not an unsupported feature)
    /// is also acted on per `errors=` ([`found`]).
    pub fn report(&self, e: FormatError) -> Error {
        let corrupt = e.errno() == EUCLEAN;
        let err = if self.may_log() { Device::report(self, e) } else { Error::from_errno(-e.errno()) };
        if corrupt {
            found(self);
        }
        err
    }
}

/// [`crate::index::index_error`] on a mounted filesystem: corruption of the vector index is
/// reported through [`SuperBlock::report`].
pub fn index_error(sb: &SuperBlock, e: IndexError<Error>) -> Error {
    match e {
        IndexError::Corrupt(f) => sb.report(f),
        other => crate::index::index_error(sb, other),
    }
}

/// Corruption was found on `sb` (already logged by the caller): remember it and act per
/// `errors=`. Takes no lock of the mount.
pub fn found(sb: &SuperBlock) {
    let e = &sb.info().errors;
    if !e.seen.swap(true, Ordering::AcqRel) {
        e.pending.store(true, Ordering::Release);
    }
    match e.mode() {
        ErrorsMode::Continue => {}
        ErrorsMode::RemountRo => {
            if !sb.is_rdonly() {
                // Before SB_RDONLY: whoever sees the flag sees a forced read-only mount.
                e.forced_ro.store(true, Ordering::Release);
                sb.force_rdonly();
                pr_crit!("vexfs ({}): errors=remount-ro: the filesystem is now read-only; run fsck.vexfs\n", sb.name());
            }
        }
        ErrorsMode::Panic => {
            if !sb.is_rdonly() {
                if let Err(err) = write_bit_direct(sb) {
                    pr_err!("vexfs ({}): writing the errors bit failed: {:?}\n", sb.name(), err);
                }
            }
            // SAFETY: `sb` is a live superblock; vexfs_c_panic does not return.
            unsafe { crate::ffi::vexfs_c_panic(sb.as_ptr()) }
        }
    }
}

/// errors=panic: sets `STATE_ERRORS` in the superblock block as it is in the buffer cache and
/// writes it with FUA (best effort: the machine stops next).
fn write_bit_direct(sb: &SuperBlock) -> Result {
    let mut b = Buf::read(sb, 0)?;
    let mut d = Superblock::decode(b.data()).map_err(|_| EINVAL)?;
    d.state |= STATE_ERRORS;
    d.encode(b.data_mut());
    b.write_fua()
}

/// The commit ticker of a read-write mount: writes `STATE_ERRORS` if corruption was found since
/// the last tick (see the module doc). A failure is logged once; unmount writes the bit again.
pub fn tick(sb: &SuperBlock) {
    let e = &sb.info().errors;
    if !e.pending.swap(false, Ordering::AcqRel) {
        return;
    }
    let r = if sb.is_rdonly() {
        // Read-only since the error (or the journal aborted, then the commit fails): no handle
        // opens any more. What ran before is committed, then no operation is in progress and
        // none can start: the block is written directly.
        sb.journal().commit(sb).and_then(|()| sb.lock().write_super_direct(false))
    } else {
        (|| -> Result {
            {
                let _h = Handle::start(sb, crate::txn::TxnKind::Small)?;
                sb.lock().write_super()?;
            }
            sb.journal().commit(sb)
        })()
    };
    if let Err(err) = r {
        pr_err!("vexfs ({}): writing the errors bit failed ({:?}); tried again at unmount\n", sb.name(), err);
    }
}
