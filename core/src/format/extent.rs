//! Extent blocks: the extents of a file beyond the [`INLINE_EXTENTS`] held in its inode.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic` = [`EXTENT_MAGIC`] |
//! | 4 | 4 | `checksum`: CRC-32C of the block with this field zero |
//! | 8 | 8 | `blocknr`: this block's own number (detects misdirected writes) |
//! | 16 | 8 | `owner`: inode number |
//! | 24 | 4 | `count`: extents in this block |
//! | 28 | 4 | reserved, zero |
//! | 32 | 4064 | [`EXTENTS_PER_BLOCK`] extents of 16 bytes |
//!
//! A file's extents, inline then in the block, are sorted by `logical`, do not overlap, have
//! `len > 0` and lie inside the data region.

use super::inode::{Extent, EXTENT_SIZE, INLINE_EXTENTS};
use super::le::*;
use super::BLOCK_SIZE;
use crate::crc32c::crc32c_parts;
use crate::error::{FormatError, Result};

/// `"VEXT"` as a little-endian word.
pub const EXTENT_MAGIC: u32 = u32::from_le_bytes(*b"VEXT");
/// Header bytes before the extent array.
pub const EXTENT_HEADER: usize = 32;
/// Extents one extent block holds.
pub const EXTENTS_PER_BLOCK: usize = (BLOCK_SIZE - EXTENT_HEADER) / EXTENT_SIZE;
/// Most extents one file can have.
pub const MAX_EXTENTS: usize = INLINE_EXTENTS + EXTENTS_PER_BLOCK;

/// Checksum of a block whose checksum field is at offset 4 (extent and directory blocks).
pub fn block_csum(block: &[u8]) -> u32 {
    let head = block.get(..4).unwrap_or(&[]);
    let tail = block.get(8..).unwrap_or(&[]);
    crc32c_parts(&[head, &[0u8; 4], tail])
}

/// Checks magic, checksum and identity of a block laid out as `magic u32, csum u32,
/// blocknr u64, owner u64`. Errors (all EUCLEAN: a block inside the filesystem that is not
/// what its owner points to is corruption): `Truncated` for a buffer that is not one block,
/// `Corrupt { what, value: magic found }` for a wrong magic, `BadChecksum`, `WrongIdentity`.
pub fn check_header(block: &[u8], what: &'static str, magic: u32, blocknr: u64, owner: u64) -> Result<()> {
    if block.len() != BLOCK_SIZE {
        return Err(FormatError::Truncated { what, len: block.len() });
    }
    let m = u32_at(block, 0, what)?;
    if m != magic {
        return Err(FormatError::Corrupt { what, value: m as u64 });
    }
    let stored = u32_at(block, 4, what)?;
    let computed = block_csum(block);
    if stored != computed {
        return Err(FormatError::BadChecksum { what, stored, computed });
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

/// Writes the header fields (magic, blocknr, owner) and then the checksum.
pub fn seal_header(block: &mut [u8], magic: u32, blocknr: u64, owner: u64) {
    put_u32(block, 0, magic);
    put_u64(block, 8, blocknr);
    put_u64(block, 16, owner);
    put_u32(block, 4, 0);
    let c = block_csum(block);
    put_u32(block, 4, c);
}

/// Reads the extent count of a checked extent block. Errors: `Corrupt` if above
/// [`EXTENTS_PER_BLOCK`] or the reserved word is non-zero.
pub fn extent_block_count(block: &[u8]) -> Result<usize> {
    let n = u32_at(block, 24, "extent block")? as usize;
    if n > EXTENTS_PER_BLOCK || u32_at(block, 28, "extent block")? != 0 {
        return Err(FormatError::Corrupt { what: "extent block count", value: n as u64 });
    }
    Ok(n)
}

/// Extent `i` of an extent block.
pub fn extent_block_get(block: &[u8], i: usize) -> Result<Extent> {
    Extent::decode(block, EXTENT_HEADER + i * EXTENT_SIZE)
}

/// Builds an extent block holding `extents` (at most [`EXTENTS_PER_BLOCK`]).
pub fn extent_block_build(block: &mut [u8], blocknr: u64, owner: u64, extents: &[Extent]) {
    block.fill(0);
    let n = extents.len().min(EXTENTS_PER_BLOCK);
    for (i, e) in extents.iter().take(n).enumerate() {
        e.encode(block, EXTENT_HEADER + i * EXTENT_SIZE);
    }
    put_u32(block, 24, n as u32);
    seal_header(block, EXTENT_MAGIC, blocknr, owner);
}

/// Checks that an extent is sane after `prev_end` (the previous extent's logical end): sorted,
/// non-empty, and inside the data region `data_start .. data_end` (device blocks, end
/// exclusive).
pub fn check_extent(e: &Extent, prev_end: u64, data_start: u64, data_end: u64) -> Result<()> {
    if e.len == 0 || (e.logical as u64) < prev_end {
        return Err(FormatError::Corrupt { what: "extent order or length", value: e.logical as u64 });
    }
    if e.logical_end() > u32::MAX as u64 {
        return Err(FormatError::Corrupt { what: "extent logical end", value: e.logical_end() });
    }
    let end = e.start.checked_add(e.len as u64);
    match end {
        Some(end) if e.start >= data_start && end <= data_end => Ok(()),
        _ => Err(FormatError::Corrupt { what: "extent outside the data region", value: e.start }),
    }
}
