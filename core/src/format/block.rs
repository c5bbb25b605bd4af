//! The header every self-describing metadata block starts with: extent blocks, directory
//! blocks, vector-id blocks, the HNSW header block and the journal superblock.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic`: the block's kind (each kind's module names its own) |
//! | 4 | 4 | `checksum`: CRC-32C of the whole block with this field zero |
//! | 8 | 8 | `blocknr`: this block's own number (detects misdirected writes) |
//! | 16 | 8 | `owner`: the inode the block belongs to (0 for a filesystem-wide block) |
//!
//! What follows the header is the kind's own, and described by its module.

use super::le::*;
use super::BLOCK_SIZE;
use crate::crc32c::crc32c_parts;
use crate::error::{FormatError, Result};

/// Bytes of the header.
pub const BLOCK_HEADER: usize = 24;
/// Offset of the checksum field.
const CSUM_OFF: usize = 4;
/// Offset of the first byte after the checksum field.
const CSUM_END: usize = 8;

/// CRC-32C of `block` with its checksum field (bytes 4..8) taken as zero. A buffer shorter
/// than the field is summed as it stands (such a buffer never passes [`check_header`]).
pub fn block_csum(block: &[u8]) -> u32 {
    match (block.get(..CSUM_OFF), block.get(CSUM_END..)) {
        (Some(head), Some(tail)) => crc32c_parts(&[head, &[0u8; 4], tail]),
        _ => crc32c_parts(&[block]),
    }
}

/// Whether a block's checksum is still to be checked when it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csum {
    /// Check it: every block a tool reads, a kernel buffer not yet verified.
    Check,
    /// Skip it: the store checked it since the block last came from the device, and every
    /// change since was sealed ([`seal_header`]). The kernel's buffers carry this as a state
    /// bit (`kmod/buf.rs`, as ext4's `BH_Verified`), so a block read from the cache again and
    /// again is summed once.
    Verified,
    /// [`Csum::Verified`], and the block also passed its kind's whole check since (an extent
    /// node's entries: `extent_tree`), which its decoder then skips too, as ext4 skips
    /// `ext4_ext_check` on a verified buffer. Set by the store at the decoder's request
    /// (`TreeStore::mark_checked`) for blocks it vouches for.
    Checked,
}

/// Whether the checksum stored in `block` is that of its bytes (a block that starts with the
/// header). For a store that verifies blocks once ([`Csum::Verified`]).
pub fn csum_ok(block: &[u8]) -> bool {
    u32_at(block, CSUM_OFF, "block header").is_ok_and(|stored| stored == block_csum(block))
}

/// Checks magic, checksum and identity of a block that starts with the header.
///
/// `what` names the block kind in the error. Errors (all EUCLEAN: a block inside the filesystem
/// that is not what its owner points to is corruption): `Truncated` for a buffer that is not one
/// block, `Corrupt { what, value: magic found }` for a wrong magic, `BadChecksum`,
/// `WrongIdentity` for a wrong block number or owner (expected and found given).
pub fn check_header(block: &[u8], what: &'static str, magic: u32, blocknr: u64, owner: u64) -> Result<()> {
    check_header_csum(block, what, magic, blocknr, owner, Csum::Check)
}

/// [`check_header`], with the checksum skipped when `csum` is [`Csum::Verified`].
pub fn check_header_csum(
    block: &[u8],
    what: &'static str,
    magic: u32,
    blocknr: u64,
    owner: u64,
    csum: Csum,
) -> Result<()> {
    if block.len() != BLOCK_SIZE {
        return Err(FormatError::Truncated { what, len: block.len() });
    }
    let m = u32_at(block, 0, what)?;
    if m != magic {
        return Err(FormatError::Corrupt { what, value: u64::from(m) });
    }
    if csum == Csum::Check {
        let stored = u32_at(block, CSUM_OFF, what)?;
        let computed = block_csum(block);
        if stored != computed {
            return Err(FormatError::BadChecksum { what, stored, computed });
        }
    }
    let b = u64_at(block, 8, what)?;
    if b != blocknr {
        return Err(FormatError::WrongIdentity { what, expected: blocknr, found: b });
    }
    let o = u64_at(block, 16, what)?;
    if o != owner {
        return Err(FormatError::WrongIdentity { what, expected: owner, found: o });
    }
    Ok(())
}

/// Writes the header fields (magic, blocknr, owner), then the checksum of the whole block as
/// it now stands. Call it last, after the block's own fields. A buffer shorter than the header
/// keeps the fields that fit (callers pass whole blocks).
pub fn seal_header(block: &mut [u8], magic: u32, blocknr: u64, owner: u64) {
    put_u32(block, 0, magic);
    put_u64(block, 8, blocknr);
    put_u64(block, 16, owner);
    put_u32(block, CSUM_OFF, 0);
    let c = block_csum(block);
    put_u32(block, CSUM_OFF, c);
}
