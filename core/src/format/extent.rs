//! Extents, and extent blocks: an [`Extent`] maps a run of file blocks to device blocks; a file
//! keeps its first extents inline in its inode and the rest in an extent tree
//! ([`crate::extent_tree`]) whose nodes are extent blocks:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 24 | block header ([`super::block`]): [`EXTENT_MAGIC`], checksum, `blocknr`, `owner` = inode |
//! | 24 | 4 | `count`: entries in this block |
//! | 28 | 2 | `depth` (v3; 0 for a leaf, whose entries are extents) |
//! | 30 | 2 | reserved, zero |
//! | 32 | 4064 | [`EXTENTS_PER_BLOCK`] entries of 16 bytes |
//!
//! A file's extents, inline then in the tree, are sorted by `logical`, do not overlap, have
//! `len > 0` and lie inside the data region. [`extent_block_count`], [`extent_block_get`] and
//! [`extent_block_build`] read and write a leaf as v2 wrote its single extent block.

use super::block::seal_header;
use super::le::*;
use super::BLOCK_SIZE;
use crate::error::{FormatError, Result};

/// A run of file blocks: file blocks `logical .. logical + len` live at device blocks
/// `start .. start + len`. 16 bytes on disk: `logical u32, len u32, start u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent {
    /// First file block.
    pub logical: u32,
    /// Blocks, more than 0 in a stored extent.
    pub len: u32,
    /// First device block.
    pub start: u64,
}

/// Bytes of an [`Extent`] on disk.
pub const EXTENT_SIZE: usize = 16;

impl Extent {
    /// Decodes the [`EXTENT_SIZE`] bytes at `off` of `buf`. Errors (EUCLEAN): `Truncated` if
    /// they are not all inside `buf`.
    pub fn decode(buf: &[u8], off: usize) -> Result<Extent> {
        const W: &str = "extent";
        let raw: [u8; EXTENT_SIZE] = bytes(buf, off, W)?;
        Ok(Extent { logical: u32_at(&raw, 0, W)?, len: u32_at(&raw, 4, W)?, start: u64_at(&raw, 8, W)? })
    }
    /// Encodes into the [`EXTENT_SIZE`] bytes at `off` of `buf` (fields that do not fit are
    /// not written: callers size their buffers).
    pub fn encode(&self, buf: &mut [u8], off: usize) {
        let Some(raw) = buf.get_mut(off..) else { return };
        put_u32(raw, 0, self.logical);
        put_u32(raw, 4, self.len);
        put_u64(raw, 8, self.start);
    }
    /// One past the last file block (a `u64`: `logical + len` of two `u32`s, never saturates).
    pub fn logical_end(&self) -> u64 {
        u64::from(self.logical).saturating_add(u64::from(self.len))
    }
    /// Device block of file block `lblk` if this extent maps it (`None` also when the device
    /// block would pass `u64::MAX`).
    pub fn map(&self, lblk: u64) -> Option<u64> {
        let delta = lblk.checked_sub(u64::from(self.logical))?;
        if delta < u64::from(self.len) {
            self.start.checked_add(delta)
        } else {
            None
        }
    }
}

/// `"VEXT"` as a little-endian word.
pub const EXTENT_MAGIC: u32 = u32::from_le_bytes(*b"VEXT");
/// Header bytes before the extent array.
pub const EXTENT_HEADER: usize = 32;
/// Extents one extent block holds.
pub const EXTENTS_PER_BLOCK: usize = (BLOCK_SIZE - EXTENT_HEADER) / EXTENT_SIZE;

/// Reads the extent count of a checked leaf of depth 0 (a v2 extent block). Errors: `Corrupt`
/// if above [`EXTENTS_PER_BLOCK`] or the word at 28 (depth and reserved) is non-zero.
pub fn extent_block_count(block: &[u8]) -> Result<usize> {
    let n = u32_at(block, 24, "extent block")? as usize;
    if n > EXTENTS_PER_BLOCK || u32_at(block, 28, "extent block")? != 0 {
        return Err(FormatError::Corrupt { what: "extent block count", value: n as u64 });
    }
    Ok(n)
}

/// Extent `i` of an extent block. Errors (EUCLEAN): `Truncated` ("extent") when extent `i` lies
/// past the end of `block`.
pub fn extent_block_get(block: &[u8], i: usize) -> Result<Extent> {
    Extent::decode(record(block, EXTENT_HEADER, EXTENT_SIZE, i, "extent")?, 0)
}

/// Builds an extent block holding `extents` (at most [`EXTENTS_PER_BLOCK`]).
pub fn extent_block_build(block: &mut [u8], blocknr: u64, owner: u64, extents: &[Extent]) {
    block.fill(0);
    let n = extents.len().min(EXTENTS_PER_BLOCK);
    for (i, e) in extents.iter().take(n).enumerate() {
        if let Some(raw) = record_mut(block, EXTENT_HEADER, EXTENT_SIZE, i) {
            e.encode(raw, 0);
        }
    }
    put_count(block, 24, n);
    seal_header(block, EXTENT_MAGIC, blocknr, owner);
}

/// Checks that an extent is sane after `prev_end` (the previous extent's logical end): sorted,
/// non-empty, and inside the data region `data_start .. data_end` (device blocks, end
/// exclusive).
pub fn check_extent(e: &Extent, prev_end: u64, data_start: u64, data_end: u64) -> Result<()> {
    if e.len == 0 || u64::from(e.logical) < prev_end {
        return Err(FormatError::Corrupt { what: "extent order or length", value: u64::from(e.logical) });
    }
    if e.logical_end() > u64::from(u32::MAX) {
        return Err(FormatError::Corrupt { what: "extent logical end", value: e.logical_end() });
    }
    let end = e.start.checked_add(u64::from(e.len));
    match end {
        Some(end) if e.start >= data_start && end <= data_end => Ok(()),
        _ => Err(FormatError::Corrupt { what: "extent outside the data region", value: e.start }),
    }
}
