//! The exit statuses of the three tools, in one place.
//!
//! - `mkfs.vexfs` exits as `mke2fs`: [`MKFS`], 0 success, 1 any failure, usage errors included.
//! - `fsck.vexfs` exits as `e2fsck`: the OR of the [`FsckStatus`] bits (0 clean, 1 errors
//!   corrected, 4 errors left uncorrected, 8 operational error, 16 usage error); [`FSCK`].
//! - `vexctl` has typed exit codes ([`VEXCTL`]): 0 success, 1 the command failed (the message
//!   on stderr says why and what to do next), 2 the command line is wrong (as clap reports it,
//!   and the argument conflicts clap cannot express, such as `--ef` below `-k`).
//!
//! `--help` and `--version` exit 0 in all three. The tools turn a status into a
//! `std::process::ExitCode` with `ExitCode::from(status.code())`.

/// How a tool reports the three outcomes every command has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Convention {
    /// Success (also `--help` and `--version`).
    pub ok: u8,
    /// The command could not do its work (a missing file, an unreadable device, bad data).
    pub failed: u8,
    /// The command line is wrong.
    pub usage: u8,
}

impl Convention {
    /// The status after the command-line parser refused the arguments, or after it printed the
    /// help or the version (`is_error` false).
    pub fn after_parse(&self, is_error: bool) -> u8 {
        if is_error {
            self.usage
        } else {
            self.ok
        }
    }
}

/// `mkfs.vexfs`, as `mke2fs`: 0 success, 1 failure (usage errors included).
pub const MKFS: Convention = Convention { ok: 0, failed: 1, usage: 1 };

/// `vexctl`: 0 success, 1 the command failed, 2 bad command line.
pub const VEXCTL: Convention = Convention { ok: 0, failed: 1, usage: 2 };

/// `fsck.vexfs`, as `e2fsck`: a failure to check at all is an operational error (8). A
/// completed check exits with its [`FsckStatus`] instead.
pub const FSCK: Convention =
    Convention { ok: FsckStatus::OK.0, failed: FsckStatus::OPERATIONAL.0, usage: FsckStatus::USAGE.0 };

/// An `e2fsck` exit status: an OR of the `FSCK_*` bits of `fsck(8)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsckStatus(pub u8);

impl FsckStatus {
    /// `FSCK_OK`: no errors.
    pub const OK: FsckStatus = FsckStatus(0);
    /// `FSCK_NONDESTRUCT`: filesystem errors corrected.
    pub const CORRECTED: FsckStatus = FsckStatus(1);
    /// `FSCK_REBOOT`: errors corrected, the system should be rebooted (a mounted root; not
    /// used by fsck.vexfs, which checks unmounted filesystems only).
    pub const REBOOT: FsckStatus = FsckStatus(2);
    /// `FSCK_UNCORRECTED`: filesystem errors left uncorrected.
    pub const UNCORRECTED: FsckStatus = FsckStatus(4);
    /// `FSCK_ERROR`: operational error (the device cannot be opened or read, it holds no vexfs).
    pub const OPERATIONAL: FsckStatus = FsckStatus(8);
    /// `FSCK_USAGE`: usage or syntax error.
    pub const USAGE: FsckStatus = FsckStatus(16);
    /// `FSCK_CANCELED`: checking canceled by user request.
    pub const CANCELED: FsckStatus = FsckStatus(32);

    /// The status of a completed check: [`OK`](Self::OK) without problems,
    /// [`CORRECTED`](Self::CORRECTED) when every problem was repaired,
    /// [`UNCORRECTED`](Self::UNCORRECTED) when some remain.
    pub fn of_check(problems: usize, remaining: usize) -> FsckStatus {
        if problems == 0 {
            FsckStatus::OK
        } else if remaining == 0 {
            FsckStatus::CORRECTED
        } else {
            FsckStatus::UNCORRECTED
        }
    }

    /// The exit code.
    pub fn code(self) -> u8 {
        self.0
    }
}

impl std::ops::BitOr for FsckStatus {
    type Output = FsckStatus;
    fn bitor(self, rhs: FsckStatus) -> FsckStatus {
        FsckStatus(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for FsckStatus {
    fn bitor_assign(&mut self, rhs: FsckStatus) {
        self.0 |= rhs.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conventions() {
        assert_eq!((MKFS.ok, MKFS.failed, MKFS.usage), (0, 1, 1));
        assert_eq!((VEXCTL.ok, VEXCTL.failed, VEXCTL.usage), (0, 1, 2));
        assert_eq!((FSCK.ok, FSCK.failed, FSCK.usage), (0, 8, 16));
        assert_eq!(VEXCTL.after_parse(true), 2);
        assert_eq!(VEXCTL.after_parse(false), 0);
        assert_eq!(FSCK.after_parse(true), 16);
        assert_eq!(MKFS.after_parse(true), 1);
    }

    #[test]
    fn fsck_bits() {
        assert_eq!(FsckStatus::of_check(0, 0), FsckStatus::OK);
        assert_eq!(FsckStatus::of_check(3, 0), FsckStatus::CORRECTED);
        assert_eq!(FsckStatus::of_check(3, 1), FsckStatus::UNCORRECTED);
        let mut s = FsckStatus::CORRECTED;
        s |= FsckStatus::UNCORRECTED;
        assert_eq!(s.code(), 5);
        assert_eq!((FsckStatus::OPERATIONAL | FsckStatus::USAGE).code(), 24);
        let bits = [1, 2, 4, 8, 16, 32];
        let all = [
            FsckStatus::CORRECTED,
            FsckStatus::REBOOT,
            FsckStatus::UNCORRECTED,
            FsckStatus::OPERATIONAL,
            FsckStatus::USAGE,
            FsckStatus::CANCELED,
        ];
        assert_eq!(all.map(FsckStatus::code), bits);
    }
}
