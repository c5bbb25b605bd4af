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

use super::block::{check_header_csum, seal_header, Csum};
use core::ops::Range;

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

/// `file_type` of an unknown type (the `DT_*` values are those of readdir(3)); never stored.
pub const DT_UNKNOWN: u8 = 0;
/// `file_type` of a directory.
pub const DT_DIR: u8 = 4;
/// `file_type` of a regular file.
pub const DT_REG: u8 = 8;
/// `file_type` of a symbolic link.
pub const DT_LNK: u8 = 10;

/// `file_type` of a FIFO (format v3).
pub const DT_FIFO: u8 = 1;
/// `file_type` of a character device (format v3).
pub const DT_CHR: u8 = 2;
/// `file_type` of a block device (format v3).
pub const DT_BLK: u8 = 6;
/// `file_type` of a socket (format v3).
pub const DT_SOCK: u8 = 12;

/// The `DT_*` type for an inode mode.
pub fn dt_from_mode(mode: u16) -> u8 {
    use super::inode::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK};
    match mode & S_IFMT {
        S_IFDIR => DT_DIR,
        S_IFREG => DT_REG,
        S_IFLNK => DT_LNK,
        S_IFIFO => DT_FIFO,
        S_IFCHR => DT_CHR,
        S_IFBLK => DT_BLK,
        S_IFSOCK => DT_SOCK,
        _ => DT_UNKNOWN,
    }
}

/// Bytes a dirent with a name of `name_len` bytes needs: `8 + name_len` rounded up to 8.
/// Saturates at `usize::MAX` for lengths no name has (such a dirent fits in no block).
pub fn rec_len_for(name_len: usize) -> usize {
    DIRENT_HEADER.saturating_add(name_len).div_ceil(8).saturating_mul(8)
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
    /// Inode number; 0 = unused space.
    pub ino: u32,
    /// Bytes from this dirent to the next (a multiple of 8).
    pub rec_len: usize,
    /// `DT_*` type of the inode (not checked in unused space).
    pub file_type: u8,
    /// The name's bytes (not checked in unused space).
    pub name: &'a [u8],
}

/// Checks a directory block's header (magic, checksum, block number, owner).
pub fn check_dir_block(block: &[u8], blocknr: u64, owner: u64) -> Result<()> {
    check_dir_block_csum(block, blocknr, owner, Csum::Check)
}

/// [`check_dir_block`], the checksum skipped when `csum` says the store verified it.
pub fn check_dir_block_csum(block: &[u8], blocknr: u64, owner: u64, csum: Csum) -> Result<()> {
    check_header_csum(block, "directory block", DIR_MAGIC, blocknr, owner, csum)
}

/// Recomputes the header and checksum after a change.
pub fn seal_dir_block(block: &mut [u8], blocknr: u64, owner: u64) {
    seal_header(block, DIR_MAGIC, blocknr, owner);
}

/// `rec_len` of the one unused dirent of an empty block: the whole block after the header.
const EMPTY_REC_LEN: u16 = 4072;
const _: () = assert!(EMPTY_REC_LEN as usize == BLOCK_SIZE - DIR_HEADER);

/// Formats an empty directory block (one unused dirent spanning the block).
pub fn init_dir_block(block: &mut [u8], blocknr: u64, owner: u64) {
    block.fill(0);
    if let Some(first) = block.get_mut(DIR_HEADER..) {
        put_u32(first, 0, 0);
        put_u16(first, 4, EMPTY_REC_LEN);
    }
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
    /// The dirent at `self.off` and the bytes of the block it spans. Its `rec_len` must be a
    /// multiple of 8, hold the dirent's header and end inside the block; its name must fit in
    /// it, and a used dirent's name and type must be valid.
    fn parse(&self) -> Result<(Dirent<'a>, Range<usize>)> {
        let (b, off) = (self.block, self.off);
        let bad = |what: &'static str, value: u64| Err(FormatError::Corrupt { what, value });
        let [i0, i1, i2, i3, r0, r1, name_len, file_type] = bytes::<DIRENT_HEADER>(b, off, "dirent")?;
        let ino = u32::from_le_bytes([i0, i1, i2, i3]);
        let rec_len = usize::from(u16::from_le_bytes([r0, r1]));
        // An end past `usize::MAX` saturates, and is past the block as well.
        let span = off..off.saturating_add(rec_len);
        let entry = match b.get(span.clone()) {
            Some(entry) if rec_len >= DIRENT_HEADER && rec_len % 8 == 0 => entry,
            _ => return bad("dirent rec_len", rec_len as u64),
        };
        let Some(name) = entry.get(DIRENT_HEADER..).and_then(|n| n.get(..usize::from(name_len))) else {
            return bad("dirent name_len", u64::from(name_len));
        };
        if ino != 0 {
            if !valid_name(name) {
                return bad("dirent name", u64::from(name_len));
            }
            if !matches!(file_type, DT_DIR | DT_REG | DT_LNK | DT_FIFO | DT_CHR | DT_BLK | DT_SOCK) {
                return bad("dirent file_type", u64::from(file_type));
            }
        }
        Ok((Dirent { offset: off, ino, rec_len, file_type, name }, span))
    }

    /// The next dirent with the bytes it spans; after an error, `None`.
    fn next_with_span(&mut self) -> Option<Result<(Dirent<'a>, Range<usize>)>> {
        if self.done || self.off >= BLOCK_SIZE {
            return None;
        }
        let r = self.parse();
        match &r {
            Ok((_, span)) => self.off = span.end,
            Err(_) => self.done = true,
        }
        Some(r)
    }
}

impl<'a> Iterator for DirIter<'a> {
    type Item = Result<Dirent<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_span().map(|r| r.map(|(d, _)| d))
    }
}

/// The dirent at byte `offset` of `block` (an offset [`dirents`] gave), parsed and checked as
/// [`dirents`] does. Errors (EUCLEAN): `Corrupt`, `Truncated`.
pub fn dirent_at(block: &[u8], offset: usize) -> Result<Dirent<'_>> {
    DirIter { block, off: offset, done: false }.parse().map(|(d, _)| d)
}

/// A dirent's fixed fields as [`walk`] reads them: only what keeps the walk inside the block
/// is checked (see there), not the name's bytes or the type.
#[derive(Debug, Clone, Copy)]
struct Raw {
    /// Byte offset in the block.
    off: usize,
    /// Inode number; 0 = unused space.
    ino: u32,
    /// Bytes to the next dirent.
    rec_len: usize,
    /// Bytes of the name.
    name_len: usize,
}

impl Raw {
    /// The bytes the dirent spans.
    fn span(&self) -> Range<usize> {
        self.off..self.off.saturating_add(self.rec_len)
    }

    /// Bytes a used dirent needs (0 for unused space).
    fn used(&self) -> usize {
        if self.ino == 0 {
            0
        } else {
            rec_len_for(self.name_len)
        }
    }

    /// Whether this is the used dirent of `name`.
    fn is(&self, block: &[u8], name: &[u8]) -> bool {
        let at = self.off.saturating_add(DIRENT_HEADER);
        // The last bytes first: names of one length in one directory often share their start
        // (f00001, f00002, ...), and this saves a comparison call per dirent passed over.
        let last = at.saturating_add(self.name_len).wrapping_sub(1);
        self.ino != 0
            && self.name_len == name.len()
            && block.get(last) == name.last()
            && block.get(at..at.saturating_add(self.name_len)) == Some(name)
    }
}

/// Walks the dirents of `block` (whose header was checked) for the lookups and changes that
/// look at one name or at free space ([`find`], [`fits`], [`insert`], [`remove`],
/// [`retarget`]), calling `f` on each until it breaks with a value.
///
/// Each `rec_len` is checked as [`dirents`] does (a multiple of 8, at least the dirent's
/// header, ending inside the block) and so is `name_len` (inside `rec_len`): what keeps every
/// offset in bounds. The names and types of the dirents passed over are not checked here (a
/// scan of a 250-entry bucket per lookup would check each name byte by byte): [`dirents`],
/// which readdir and fsck use, checks them, and the dirent a lookup returns is checked whole
/// ([`find`]). Errors (EUCLEAN): `Corrupt` "dirent rec_len" / "dirent name_len" as
/// [`dirents`].
fn walk<T>(block: &[u8], mut f: impl FnMut(Raw) -> Option<T>) -> Result<Option<T>> {
    if block.len() != BLOCK_SIZE {
        return Err(FormatError::Truncated { what: "directory block", len: block.len() });
    }
    let mut off = DIR_HEADER;
    while off < BLOCK_SIZE {
        let [i0, i1, i2, i3, r0, r1, name_len, _] = bytes::<DIRENT_HEADER>(block, off, "dirent")?;
        let rec_len = usize::from(u16::from_le_bytes([r0, r1]));
        if rec_len < DIRENT_HEADER || rec_len % 8 != 0 || rec_len > BLOCK_SIZE.saturating_sub(off) {
            return Err(FormatError::Corrupt { what: "dirent rec_len", value: rec_len as u64 });
        }
        let name_len = usize::from(name_len);
        if name_len > rec_len.saturating_sub(DIRENT_HEADER) {
            return Err(FormatError::Corrupt { what: "dirent name_len", value: name_len as u64 });
        }
        let raw = Raw { off, ino: u32::from_le_bytes([i0, i1, i2, i3]), rec_len, name_len };
        if let Some(v) = f(raw) {
            return Ok(Some(v));
        }
        off = off.saturating_add(rec_len);
    }
    Ok(None)
}

/// The first dirent with room for a dirent of `need` bytes after its own: its span and the
/// bytes it keeps.
fn room(block: &[u8], need: usize) -> Result<Option<(Range<usize>, usize)>> {
    walk(block, |d| (d.rec_len.checked_sub(d.used()).is_some_and(|free| free >= need)).then(|| (d.span(), d.used())))
}

/// Whether [`insert`] would find room for a name of `name_len` bytes. Errors: `Corrupt` for
/// a malformed `rec_len` or `name_len` (see `walk`).
pub fn fits(block: &[u8], name_len: usize) -> Result<bool> {
    Ok(room(block, rec_len_for(name_len))?.is_some())
}

/// Finds `name` in `block`: its dirent (checked whole, as [`dirents`] checks), or `None`.
/// Errors (EUCLEAN): `Corrupt` for a malformed `rec_len` or `name_len` on the way, or a bad
/// type in the dirent found.
pub fn find<'a>(block: &'a [u8], name: &[u8]) -> Result<Option<Dirent<'a>>> {
    match walk(block, |d| d.is(block, name).then_some(d.off))? {
        Some(off) => dirent_at(block, off).map(Some),
        None => Ok(None),
    }
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

/// The bytes of the block that a dirent found by [`dirents`] spans, to rewrite. [`dirents`]
/// proved them inside the block, so the error (`Truncated`) never shows in practice.
fn span_mut(block: &mut [u8], span: Range<usize>) -> Result<&mut [u8]> {
    let len = block.len();
    block.get_mut(span).ok_or(FormatError::Truncated { what: "dirent", len })
}

/// Writes the `rec_len` of the dirent starting `entry`. Every `rec_len` spans part of one block,
/// so it fits a `u16`; were it ever not to, `u16::MAX` is written, which no decoder accepts
/// (not a multiple of 8), rather than a truncated length that would decode as valid.
fn put_rec_len(entry: &mut [u8], rec_len: usize) {
    put_u16(entry, 4, u16::try_from(rec_len).unwrap_or(u16::MAX));
}

/// Adds a dirent if the block has room; returns whether it did. The caller checked that the
/// name is not present, and reseals the block.
///
/// Errors (EUCLEAN): `Corrupt` for a malformed `rec_len` or `name_len` met on the way (see
/// `walk`); `Corrupt` ("dirent name", its length) for a name [`valid_name`] refuses, which is never written.
pub fn insert(block: &mut [u8], name: &[u8], ino: u32, file_type: u8) -> Result<bool> {
    let name_len = match u8::try_from(name.len()) {
        Ok(n) if valid_name(name) => n,
        _ => return Err(FormatError::Corrupt { what: "dirent name", value: name.len() as u64 }),
    };
    let slot = room(block, rec_len_for(name.len()))?;
    let Some((span, used)) = slot else { return Ok(false) };
    let entry = span_mut(block, span)?;
    // A used dirent keeps its own bytes; the new one takes the rest of its span.
    let new = if used == 0 {
        entry
    } else {
        put_rec_len(entry, used);
        let len = entry.len();
        entry.get_mut(used..).ok_or(FormatError::Truncated { what: "dirent", len })?
    };
    let rec_len = new.len();
    put_u32(new, 0, ino);
    put_rec_len(new, rec_len);
    put(new, 6, &[name_len, file_type]);
    put(new, DIRENT_HEADER, name);
    Ok(true)
}

/// Removes the dirent of `name`; returns its inode number, or `None` if absent. Its bytes join
/// the dirent before it, or it becomes unused when it is the block's first. The caller reseals
/// the block. Errors (EUCLEAN): `Corrupt` for a malformed `rec_len` or `name_len` (see `walk`).
pub fn remove(block: &mut [u8], name: &[u8]) -> Result<Option<u32>> {
    let mut prev: Option<Range<usize>> = None;
    let hit = walk(block, |d| {
        if d.is(block, name) {
            return Some((d.span(), d.ino));
        }
        prev = Some(d.span());
        None
    })?;
    let Some((span, ino)) = hit else { return Ok(None) };
    match prev {
        Some(p) => {
            let merged = span_mut(block, p.start..span.end)?;
            let rec_len = merged.len();
            put_rec_len(merged, rec_len);
        }
        None => put_u32(span_mut(block, span)?, 0, 0),
    }
    Ok(Some(ino))
}

/// Removes, in one pass, every used dirent for which `keep` returns `false` (as [`remove`]
/// would, one by one: its bytes join the dirent before it, or it becomes unused when it is the
/// block's first); returns how many went. The caller reseals the block. Errors (EUCLEAN):
/// those of [`dirents`], checked over the whole block before anything changes.
pub fn retain(block: &mut [u8], mut keep: impl FnMut(&Dirent<'_>) -> bool) -> Result<usize> {
    // The dirents to drop, by offset / 8 (dirents start on 8-byte boundaries), decided
    // before any change.
    let mut drop_mask = [0u64; BLOCK_SIZE / 8 / 64];
    let mut count = 0usize;
    for d in dirents(block) {
        let d = d?;
        if d.ino != 0 && !keep(&d) {
            let slot = d.offset / 8;
            if let Some(w) = drop_mask.get_mut(slot / 64) {
                *w |= 1 << (slot % 64);
            }
            count = count.saturating_add(1);
        }
    }
    if count == 0 {
        return Ok(0);
    }
    let mut prev: Option<Range<usize>> = None;
    let mut off = DIR_HEADER;
    while off < BLOCK_SIZE {
        let rec_len = usize::from(u16_at(block, off.saturating_add(4), "dirent")?);
        let end = off.saturating_add(rec_len);
        if rec_len == 0 || end > BLOCK_SIZE {
            return Err(FormatError::Corrupt { what: "dirent rec_len", value: rec_len as u64 });
        }
        let slot = off / 8;
        let dropped = drop_mask.get(slot / 64).is_some_and(|w| w & (1 << (slot % 64)) != 0);
        match (dropped, prev.clone()) {
            (true, Some(p)) => {
                let merged = span_mut(block, p.start..end)?;
                let len = merged.len();
                put_rec_len(merged, len);
                prev = Some(p.start..end);
            }
            (true, None) => {
                put_u32(span_mut(block, off..end)?, 0, 0);
                prev = Some(off..end);
            }
            (false, _) => prev = Some(off..end),
        }
        off = end;
    }
    Ok(count)
}

/// Points the existing dirent `name` at another inode (rename over an existing name); returns
/// whether `name` was there. Errors (EUCLEAN): `Corrupt` for a malformed `rec_len` or
/// `name_len` (see `walk`).
pub fn retarget(block: &mut [u8], name: &[u8], ino: u32, file_type: u8) -> Result<bool> {
    let found = walk(block, |d| d.is(block, name).then(|| d.span()))?;
    let Some(span) = found else { return Ok(false) };
    let entry = span_mut(block, span)?;
    put_u32(entry, 0, ino);
    put(entry, 7, &[file_type]);
    Ok(true)
}
