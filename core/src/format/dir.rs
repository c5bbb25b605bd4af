//! Directory blocks: the data blocks of a directory, each self-describing.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic` = [`DIR_MAGIC`] |
//! | 4 | 4 | `checksum`: CRC-32C of the block with this field zero |
//! | 8 | 8 | `blocknr`: this block's own number |
//! | 16 | 8 | `owner`: the directory's inode number |
//! | 24 | 4072 | dirents, tiling the rest of the block exactly |
//!
//! A dirent: `ino u32` (0 = unused space), `rec_len u16` (bytes to the next dirent, a multiple
//! of 8, at least `8 + name_len`), `name_len u8`, `file_type u8` (`DT_*`), then `name_len`
//! bytes of name (no `/`, no NUL, not `.` or `..`). A removed dirent's space is merged into
//! the one before it, or marked unused (`ino = 0`) when it is the first of the block. "." and
//! ".." are not stored: ".." is the inode's `parent` field.

use super::block::{check_header, seal_header};
use super::le::*;
use super::BLOCK_SIZE;
use crate::error::{FormatError, Result};

/// `"VDIR"` as a little-endian word.
pub const DIR_MAGIC: u32 = u32::from_le_bytes(*b"VDIR");
/// Header bytes before the first dirent.
pub const DIR_HEADER: usize = 24;
/// Bytes of a dirent before its name.
pub const DIRENT_HEADER: usize = 8;
/// Longest name, bytes.
pub const NAME_MAX: usize = 255;

/// `file_type` values (the `DT_*` of readdir(3)).
pub const DT_UNKNOWN: u8 = 0;
pub const DT_DIR: u8 = 4;
pub const DT_REG: u8 = 8;
pub const DT_LNK: u8 = 10;

/// The `DT_*` type for an inode mode.
pub fn dt_from_mode(mode: u16) -> u8 {
    match mode & super::inode::S_IFMT {
        super::inode::S_IFDIR => DT_DIR,
        super::inode::S_IFREG => DT_REG,
        super::inode::S_IFLNK => DT_LNK,
        _ => DT_UNKNOWN,
    }
}

/// Bytes a dirent with a name of `name_len` bytes needs.
pub fn rec_len_for(name_len: usize) -> usize {
    (DIRENT_HEADER + name_len).div_ceil(8) * 8
}

/// Whether `name` may be stored in a directory. `ENAMETOOLONG` is the caller's to report for
/// names over [`NAME_MAX`]; this only says valid or not.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// One dirent, borrowed from its block.
#[derive(Debug, Clone, Copy)]
pub struct Dirent<'a> {
    /// Byte offset in the block.
    pub offset: usize,
    pub ino: u32,
    pub rec_len: usize,
    pub file_type: u8,
    pub name: &'a [u8],
}

/// Checks a directory block's header (magic, checksum, block number, owner).
pub fn check_dir_block(block: &[u8], blocknr: u64, owner: u64) -> Result<()> {
    check_header(block, "directory block", DIR_MAGIC, blocknr, owner)
}

/// Recomputes the header and checksum after a change.
pub fn seal_dir_block(block: &mut [u8], blocknr: u64, owner: u64) {
    seal_header(block, DIR_MAGIC, blocknr, owner);
}

/// Formats an empty directory block (one unused dirent spanning the block).
pub fn init_dir_block(block: &mut [u8], blocknr: u64, owner: u64) {
    block.fill(0);
    put_u32(block, DIR_HEADER, 0);
    put_u16(block, DIR_HEADER + 4, (BLOCK_SIZE - DIR_HEADER) as u16);
    seal_dir_block(block, blocknr, owner);
}

/// Iterates the dirents of a block, used and unused, validating each. Yields `Err` once (then
/// stops) on a malformed dirent: EUCLEAN `Corrupt`.
pub struct DirIter<'a> {
    block: &'a [u8],
    off: usize,
    done: bool,
}

/// Iterates the dirents of `block` (whose header was checked).
pub fn dirents(block: &[u8]) -> DirIter<'_> {
    DirIter { block, off: DIR_HEADER, done: block.len() != BLOCK_SIZE }
}

impl<'a> DirIter<'a> {
    fn parse(&self) -> Result<Dirent<'a>> {
        let b = self.block;
        let off = self.off;
        let bad = |what: &'static str, value: u64| Err(FormatError::Corrupt { what, value });
        let ino = u32_at(b, off, "dirent")?;
        let rec_len = u16_at(b, off + 4, "dirent")? as usize;
        let name_len = *b.get(off + 6).ok_or(FormatError::Truncated { what: "dirent", len: off })? as usize;
        let file_type = *b.get(off + 7).ok_or(FormatError::Truncated { what: "dirent", len: off })?;
        if rec_len < DIRENT_HEADER || rec_len % 8 != 0 || off + rec_len > BLOCK_SIZE {
            return bad("dirent rec_len", rec_len as u64);
        }
        if DIRENT_HEADER + name_len > rec_len {
            return bad("dirent name_len", name_len as u64);
        }
        let name = b.get(off + DIRENT_HEADER..off + DIRENT_HEADER + name_len).unwrap_or(&[]);
        if ino != 0 {
            if !valid_name(name) {
                return bad("dirent name", name_len as u64);
            }
            if !matches!(file_type, DT_DIR | DT_REG | DT_LNK) {
                return bad("dirent file_type", file_type as u64);
            }
        }
        Ok(Dirent { offset: off, ino, rec_len, file_type, name })
    }
}

impl<'a> Iterator for DirIter<'a> {
    type Item = Result<Dirent<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.off >= BLOCK_SIZE {
            return None;
        }
        match self.parse() {
            Ok(d) => {
                self.off += d.rec_len;
                Some(Ok(d))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Finds `name` in `block`: its dirent, or `None`.
pub fn find<'a>(block: &'a [u8], name: &[u8]) -> Result<Option<Dirent<'a>>> {
    for d in dirents(block) {
        let d = d?;
        if d.ino != 0 && d.name == name {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// Whether the block has no used dirent.
pub fn is_empty(block: &[u8]) -> Result<bool> {
    for d in dirents(block) {
        if d?.ino != 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Adds a dirent if the block has room; returns whether it did. The caller checked that the
/// name is valid and not present, and reseals the block.
pub fn insert(block: &mut [u8], name: &[u8], ino: u32, file_type: u8) -> Result<bool> {
    let need = rec_len_for(name.len());
    let mut slot = None;
    for d in dirents(block) {
        let d = d?;
        let used = if d.ino == 0 { 0 } else { rec_len_for(d.name.len()) };
        if d.rec_len - used >= need {
            slot = Some((d.offset, d.rec_len, used));
            break;
        }
    }
    let Some((off, rec_len, used)) = slot else { return Ok(false) };
    let (at, len) = if used == 0 {
        (off, rec_len)
    } else {
        put_u16(block, off + 4, used as u16);
        (off + used, rec_len - used)
    };
    put_u32(block, at, ino);
    put_u16(block, at + 4, len as u16);
    if let Some(b) = block.get_mut(at + 6) {
        *b = name.len() as u8;
    }
    if let Some(b) = block.get_mut(at + 7) {
        *b = file_type;
    }
    put(block, at + DIRENT_HEADER, name);
    Ok(true)
}

/// Removes the dirent of `name`; returns its inode number, or `None` if absent. The caller
/// reseals the block.
pub fn remove(block: &mut [u8], name: &[u8]) -> Result<Option<u32>> {
    let mut prev: Option<(usize, usize)> = None;
    let mut hit = None;
    for d in dirents(block) {
        let d = d?;
        if d.ino != 0 && d.name == name {
            hit = Some((d.offset, d.rec_len, d.ino));
            break;
        }
        prev = Some((d.offset, d.rec_len));
    }
    let Some((off, rec_len, ino)) = hit else { return Ok(None) };
    match prev {
        Some((poff, plen)) => put_u16(block, poff + 4, (plen + rec_len) as u16),
        None => put_u32(block, off, 0),
    }
    Ok(Some(ino))
}

/// Points the existing dirent `name` at another inode (rename over an existing name).
pub fn retarget(block: &mut [u8], name: &[u8], ino: u32, file_type: u8) -> Result<bool> {
    let off = match find(block, name)? {
        Some(d) => d.offset,
        None => return Ok(false),
    };
    put_u32(block, off, ino);
    if let Some(b) = block.get_mut(off + 7) {
        *b = file_type;
    }
    Ok(true)
}
