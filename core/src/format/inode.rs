//! Inodes: [`INODE_SIZE`] bytes each in the inode table, [`INODES_PER_BLOCK`](super::INODES_PER_BLOCK) per block,
//! inode `ino` (1-based) at byte `(ino - 1) * 256` of the table.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 2 | `mode` (POSIX type and permission bits) |
//! | 2 | 2 | `links` |
//! | 4 | 4 | `uid` |
//! | 8 | 4 | `gid` |
//! | 12 | 4 | `flags`: [`INODE_FLAG_INDEX`] on an indexed directory, [`INODE_FLAG_EOFBLOCKS`] on a regular file that may map blocks past its size (v3), other bits zero |
//! | 16 | 8 | `size` (bytes) |
//! | 24 | 8 | `atime_sec` (i64) |
//! | 32 | 8 | `mtime_sec` (i64) |
//! | 40 | 8 | `ctime_sec` (i64) |
//! | 48 | 4 | `atime_nsec` |
//! | 52 | 4 | `mtime_nsec` |
//! | 56 | 4 | `ctime_nsec` |
//! | 60 | 4 | `generation` |
//! | 64 | 8 | `blocks`: blocks owned (data blocks and extent-tree nodes) |
//! | 72 | 4 | `parent`: parent directory inode (directories), else 0 |
//! | 76 | 4 | `nr_extents`: extents of the file (inline first, then the extent tree) |
//! | 80 | 8 | `extent_block`: root of the extent tree (the further extents), 0 = none |
//! | 88 | 96 | [`INLINE_EXTENTS`] inline extents ([`Extent`], 16 bytes each) |
//! | 184 | 4 | `vec_count`: embeddings (chunks) of this file |
//! | 188 | 4 | `rdev`: device number of a character or block device (v3), else 0 |
//! | 192 | 8 | `vec_block`: block of further vector ids, 0 = none |
//! | 200 | 16 | [`INLINE_VEC_IDS`] inline vector ids (u32) |
//! | 216 | 8 | `xattr_block`: the file's xattr block ([`super::xattr`], v3; reserved zero in v2), 0 = none |
//! | 224 | 28 | reserved, zero |
//! | 252 | 4 | `checksum`: CRC-32C of the inode number (u64 LE) then bytes 0..252 |

use super::extent::{Extent, EXTENT_SIZE};
use super::le::*;
use super::{BLOCK_SIZE, INODE_SIZE};
use crate::crc32c::crc32c_parts;
use crate::error::{FormatError, Result};

/// Extents stored in the inode itself.
pub const INLINE_EXTENTS: usize = 6;
/// Vector ids stored in the inode itself.
pub const INLINE_VEC_IDS: usize = 4;
/// Offsets of the inline extents, the inline vector ids and the checksum.
const EXTENTS_OFF: usize = 88;
const VEC_IDS_OFF: usize = 200;
const CSUM_OFF: usize = 252;

/// `S_IFMT`: the file-type bits of a mode (the file types vexfs stores follow).
pub const S_IFMT: u16 = 0o170000;
/// File type: directory.
pub const S_IFDIR: u16 = 0o040000;
/// File type: regular file.
pub const S_IFREG: u16 = 0o100000;
/// File type: symbolic link.
pub const S_IFLNK: u16 = 0o120000;
/// File type: FIFO (format v3).
pub const S_IFIFO: u16 = 0o010000;
/// Inode flag: the directory is indexed (`crate::dir_index`: a header at logical block 0,
/// buckets at `2^d + prefix`), format v3 with `FEATURE_INCOMPAT_DIR_INDEX`.
pub const INODE_FLAG_INDEX: u32 = 1;
/// Inode flag: the regular file may map blocks past its size, all of them zeros on the device
/// (`fallocate(FALLOC_FL_KEEP_SIZE)` past the end of file: a preallocation, as ext4's unwritten
/// extents past `i_size`). Without it no block of a file lies past its size. Format v3 with
/// `FEATURE_INCOMPAT_EOFBLOCKS`; set with the first block mapped past the size, cleared by a
/// truncate that frees every block past the size.
pub const INODE_FLAG_EOFBLOCKS: u32 = 2;

/// File type: character device (format v3; its device number in `rdev`).
pub const S_IFCHR: u16 = 0o020000;
/// File type: block device (format v3; its device number in `rdev`).
pub const S_IFBLK: u16 = 0o060000;
/// File type: socket (format v3).
pub const S_IFSOCK: u16 = 0o140000;

/// Whether `mode` is a special file (FIFO, socket, character or block device): no data, no
/// extents, size 0.
pub fn is_special(mode: u16) -> bool {
    matches!(mode & S_IFMT, S_IFIFO | S_IFCHR | S_IFBLK | S_IFSOCK)
}

/// A decoded inode (the fields of the table above).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inode {
    /// POSIX type ([`S_IFMT`] bits) and permission bits.
    pub mode: u16,
    /// Hard links. 0 in a stored inode marks an orphan (format v2): unlinked while open, or
    /// not yet freed when the machine stopped; the first read-write mount after a crash frees
    /// it (so does `fsck.vexfs -y`).
    pub links: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Zero in v1.
    pub flags: u32,
    /// Size, bytes (at most [`MAX_FILE_SIZE`]).
    pub size: u64,
    /// Last access, seconds since the epoch.
    pub atime_sec: i64,
    /// Last modification, seconds since the epoch.
    pub mtime_sec: i64,
    /// Last status change, seconds since the epoch.
    pub ctime_sec: i64,
    /// Nanoseconds of `atime_sec` (below 10^9).
    pub atime_nsec: u32,
    /// Nanoseconds of `mtime_sec` (below 10^9).
    pub mtime_nsec: u32,
    /// Nanoseconds of `ctime_sec` (below 10^9).
    pub ctime_nsec: u32,
    /// Generation number (NFS file handles).
    pub generation: u32,
    /// Blocks owned: data and extent blocks.
    pub blocks: u64,
    /// Parent directory's inode (directories), else 0.
    pub parent: u32,
    /// Extents of the file, inline first, then in the extent tree (`crate::file_extents`).
    pub nr_extents: u32,
    /// Block of the extents past the inline ones; 0 = none.
    pub extent_block: u64,
    /// The inline extents; those past `nr_extents` are zero.
    pub extents: [Extent; INLINE_EXTENTS],
    /// Embeddings (chunks) of the file.
    pub vec_count: u32,
    /// Device number of a character or block device (format v3; the kernel's `new_encode_dev`
    /// layout: minor bits 0-7, major bits 8-19, minor bits 8-19 at 20-31); 0 for other types.
    pub rdev: u32,
    /// Block of the vector ids past the inline ones; 0 = none.
    pub vec_block: u64,
    /// The file's xattr block (`user.`, `trusted.`, `security.` attributes; format v3); 0 =
    /// none. Not counted in `blocks`.
    pub xattr_block: u64,
    /// The inline vector ids (slots of the vector regions).
    pub vec_ids: [u32; INLINE_VEC_IDS],
}

/// Largest file size: 2^32 blocks of 4 KiB (file block numbers are `u32`).
pub const MAX_FILE_SIZE: u64 = (u32::MAX as u64) * BLOCK_SIZE as u64;

/// A file's chunk-list fields, as its inode stores them (`vec_count`, `vec_block`, `vec_ids`):
/// the chunk count, the vector-id block (0 = none) and the slots of the first
/// [`INLINE_VEC_IDS`] chunks. What `crate::embed` reads and changes of an inode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkFields {
    /// Chunks of the file (at most `vector::MAX_CHUNKS`).
    pub count: u32,
    /// Block holding the slots of chunks [`INLINE_VEC_IDS`].., 0 when `count` fits inline.
    pub block: u64,
    /// Slots of the first chunks; entries at or past `count` are zero.
    pub inline: [u32; INLINE_VEC_IDS],
}

impl Inode {
    /// The chunk-list fields.
    pub fn chunk_fields(&self) -> ChunkFields {
        ChunkFields { count: self.vec_count, block: self.vec_block, inline: self.vec_ids }
    }

    /// Replaces the chunk-list fields.
    pub fn set_chunk_fields(&mut self, f: ChunkFields) {
        self.vec_count = f.count;
        self.vec_block = f.block;
        self.vec_ids = f.inline;
    }

    /// Whether the mode says directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    /// Whether the mode says regular file.
    pub fn is_reg(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// Decodes inode `ino` from its [`INODE_SIZE`] bytes, checking its checksum and fields.
    ///
    /// Errors (all EUCLEAN): `BadChecksum`; `Corrupt` for an unknown file type, non-zero flags
    /// or reserved bytes, a size beyond [`MAX_FILE_SIZE`], an extent count over what the inode
    /// can address, nanoseconds >= 10^9.
    pub fn decode(ino: u64, raw: &[u8]) -> Result<Inode> {
        const W: &str = "inode";
        let raw = raw.get(..INODE_SIZE).ok_or(FormatError::Truncated { what: W, len: raw.len() })?;
        let stored = u32_at(raw, CSUM_OFF, W)?;
        let body = raw.get(..CSUM_OFF).ok_or(FormatError::Truncated { what: W, len: raw.len() })?;
        let computed = crc32c_parts(&[&ino.to_le_bytes(), body]);
        if stored != computed {
            return Err(FormatError::BadChecksum { what: W, stored, computed });
        }
        let mut extents = [Extent::default(); INLINE_EXTENTS];
        for (i, e) in extents.iter_mut().enumerate() {
            *e = Extent::decode(record(raw, EXTENTS_OFF, EXTENT_SIZE, i, W)?, 0)?;
        }
        let mut vec_ids = [0u32; INLINE_VEC_IDS];
        for (i, v) in vec_ids.iter_mut().enumerate() {
            *v = u32_at(record(raw, VEC_IDS_OFF, 4, i, W)?, 0, W)?;
        }
        let ino = Inode {
            mode: u16_at(raw, 0, W)?,
            links: u16_at(raw, 2, W)?,
            uid: u32_at(raw, 4, W)?,
            gid: u32_at(raw, 8, W)?,
            flags: u32_at(raw, 12, W)?,
            size: u64_at(raw, 16, W)?,
            atime_sec: i64_at(raw, 24, W)?,
            mtime_sec: i64_at(raw, 32, W)?,
            ctime_sec: i64_at(raw, 40, W)?,
            atime_nsec: u32_at(raw, 48, W)?,
            mtime_nsec: u32_at(raw, 52, W)?,
            ctime_nsec: u32_at(raw, 56, W)?,
            generation: u32_at(raw, 60, W)?,
            blocks: u64_at(raw, 64, W)?,
            parent: u32_at(raw, 72, W)?,
            nr_extents: u32_at(raw, 76, W)?,
            extent_block: u64_at(raw, 80, W)?,
            extents,
            vec_count: u32_at(raw, 184, W)?,
            rdev: u32_at(raw, 188, W)?,
            vec_block: u64_at(raw, 192, W)?,
            xattr_block: u64_at(raw, 216, W)?,
            vec_ids,
        };
        let bad = |what: &'static str, value: u64| Err(FormatError::Corrupt { what, value });
        match ino.mode & S_IFMT {
            S_IFDIR | S_IFREG | S_IFLNK | S_IFIFO | S_IFCHR | S_IFBLK | S_IFSOCK => {}
            t => return bad("inode mode", t as u64),
        }
        if ino.flags & !(INODE_FLAG_INDEX | INODE_FLAG_EOFBLOCKS) != 0
            || (ino.flags & INODE_FLAG_INDEX != 0 && !ino.is_dir())
            || (ino.flags & INODE_FLAG_EOFBLOCKS != 0 && !ino.is_reg())
        {
            return bad("inode flags", ino.flags as u64);
        }
        if raw.get(224..CSUM_OFF).is_some_and(|r| r.iter().any(|&b| b != 0)) {
            return bad("inode reserved bytes", 0);
        }
        if ino.rdev != 0 && !matches!(ino.mode & S_IFMT, S_IFCHR | S_IFBLK) {
            return bad("device number of a file that is no device", u64::from(ino.rdev));
        }
        if is_special(ino.mode) && (ino.size != 0 || ino.nr_extents != 0 || ino.blocks != 0 || ino.vec_count != 0) {
            return bad("size or blocks of a special file", ino.size);
        }
        if ino.size > MAX_FILE_SIZE {
            return bad("inode size", ino.size);
        }
        if (ino.nr_extents as usize > INLINE_EXTENTS) != (ino.extent_block != 0) {
            return bad("inode extent block", ino.extent_block);
        }
        if let Some(&nsec) = [ino.atime_nsec, ino.mtime_nsec, ino.ctime_nsec].iter().find(|&&n| n >= 1_000_000_000) {
            return bad("inode timestamp nanoseconds", nsec as u64);
        }
        Ok(ino)
    }

    /// Encodes inode number `ino` into `raw` ([`INODE_SIZE`] bytes) with its checksum.
    pub fn encode(&self, ino: u64, raw: &mut [u8]) {
        let Some(raw) = raw.get_mut(..INODE_SIZE) else { return };
        raw.fill(0);
        put_u16(raw, 0, self.mode);
        put_u16(raw, 2, self.links);
        put_u32(raw, 4, self.uid);
        put_u32(raw, 8, self.gid);
        put_u32(raw, 12, self.flags);
        put_u64(raw, 16, self.size);
        put_i64(raw, 24, self.atime_sec);
        put_i64(raw, 32, self.mtime_sec);
        put_i64(raw, 40, self.ctime_sec);
        put_u32(raw, 48, self.atime_nsec);
        put_u32(raw, 52, self.mtime_nsec);
        put_u32(raw, 56, self.ctime_nsec);
        put_u32(raw, 60, self.generation);
        put_u64(raw, 64, self.blocks);
        put_u32(raw, 72, self.parent);
        put_u32(raw, 76, self.nr_extents);
        put_u64(raw, 80, self.extent_block);
        for (i, e) in self.extents.iter().enumerate() {
            if let Some(r) = record_mut(raw, EXTENTS_OFF, EXTENT_SIZE, i) {
                e.encode(r, 0);
            }
        }
        put_u32(raw, 184, self.vec_count);
        put_u32(raw, 188, self.rdev);
        put_u64(raw, 192, self.vec_block);
        put_u64(raw, 216, self.xattr_block);
        for (i, v) in self.vec_ids.iter().enumerate() {
            if let Some(r) = record_mut(raw, VEC_IDS_OFF, 4, i) {
                put_u32(r, 0, *v);
            }
        }
        let Some(body) = raw.get(..CSUM_OFF) else { return };
        let c = crc32c_parts(&[&ino.to_le_bytes(), body]);
        put_u32(raw, CSUM_OFF, c);
    }
}
