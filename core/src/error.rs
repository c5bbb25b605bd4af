//! Errors of the format decoders, with the errno each one maps to.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use core::fmt;

/// `EINVAL`: the data is not a vexfs we can mount (not ours, or from an unsupported version).
pub const EINVAL: i32 = 22;
/// `EUCLEAN`: the data claims to be vexfs but is inconsistent ("Structure needs cleaning").
pub const EUCLEAN: i32 = 117;
/// `EFBIG`: a file would need more extents or blocks than the format can describe.
pub const EFBIG: i32 = 27;
/// `ENOSPC`: no free block, inode or slot left.
pub const ENOSPC: i32 = 28;
/// `ENODATA`: no such attribute (xattr) or no data.
pub const ENODATA: i32 = 61;
/// `ENOTEMPTY`: a directory to remove or replace still has entries.
pub const ENOTEMPTY: i32 = 39;
/// `ENAMETOOLONG`: a name longer than [`crate::format::dir::NAME_MAX`] bytes.
pub const ENAMETOOLONG: i32 = 36;

/// What is wrong with a block or structure read from disk. Decoders return it instead of
/// panicking; the kernel logs it with `pr_err!` and turns it into an errno with [`Self::errno`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The magic number is not ours. errno `EINVAL`.
    BadMagic {
        /// The structure read (e.g. "superblock").
        what: &'static str,
        /// The magic found.
        found: u32,
    },
    /// The stored CRC-32C does not match the contents. errno `EUCLEAN`.
    BadChecksum {
        /// The structure read.
        what: &'static str,
        /// The checksum stored in it.
        stored: u32,
        /// The checksum of its contents.
        computed: u32,
    },
    /// A format version this code does not know (the version found). errno `EINVAL`.
    UnsupportedVersion(u32),
    /// Incompatible feature bits this code does not know (the unknown bits). errno `EINVAL`.
    UnsupportedFeatures(u32),
    /// The filesystem is larger than the device holding it. errno `EINVAL`.
    PastDeviceEnd {
        /// The filesystem's size, blocks.
        block_count: u64,
        /// The device's size, blocks.
        device_blocks: u64,
    },
    /// A field holds an impossible value. errno `EUCLEAN`.
    Corrupt {
        /// The field or check (e.g. "inode mode").
        what: &'static str,
        /// The value found (0 where no single value says more, e.g. non-zero reserved bytes).
        value: u64,
    },
    /// A block or structure is identified as another one (misdirected or stale write). errno `EUCLEAN`.
    WrongIdentity {
        /// The structure read.
        what: &'static str,
        /// The identity it should carry (block number, owner, LSN).
        expected: u64,
        /// The identity it carries.
        found: u64,
    },
    /// A buffer is shorter than the structure it should hold. errno `EUCLEAN`.
    Truncated {
        /// The structure read.
        what: &'static str,
        /// The buffer's length, bytes.
        len: usize,
    },
}

impl FormatError {
    /// The errno (positive) the kernel returns for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Self::BadMagic { .. } | Self::UnsupportedVersion(_) | Self::UnsupportedFeatures(_) => EINVAL,
            Self::PastDeviceEnd { .. } => EINVAL,
            Self::BadChecksum { .. } | Self::Corrupt { .. } | Self::WrongIdentity { .. } | Self::Truncated { .. } => {
                EUCLEAN
            }
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic { what, found } => write!(f, "{what}: bad magic {found:#010x}"),
            Self::BadChecksum { what, stored, computed } => {
                write!(f, "{what}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Self::UnsupportedFeatures(bits) => write!(f, "unsupported incompat features {bits:#x}"),
            Self::PastDeviceEnd { block_count, device_blocks } => {
                write!(f, "filesystem has {block_count} blocks but the device only {device_blocks}")
            }
            Self::Corrupt { what, value } => write!(f, "corrupt {what} (value {value})"),
            Self::WrongIdentity { what, expected, found } => {
                write!(f, "{what}: identity {found} where {expected} was expected")
            }
            Self::Truncated { what, len } => write!(f, "{what}: truncated ({len} bytes)"),
        }
    }
}

/// Result of a format operation.
pub type Result<T> = core::result::Result<T, FormatError>;
