//! The journal region: a circular redo log of metadata block images (format v2).
//!
//! Block 0 of the region is the journal superblock; blocks `1 ..` ("record blocks", numbered
//! from 0) hold records. The byte layout is below and in `docs/FORMAT.md`; the rules that
//! turn records into transactions, and the code that writes and replays them, are in
//! [`crate::journal`]. Format v1 defined the same superblock and record header but never wrote
//! a record: a v1 journal is always clean, and v2 code reads it as an empty log.
//!
//! Journal superblock:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic` = [`JOURNAL_MAGIC`] |
//! | 4 | 4 | `checksum`: CRC-32C of the block with this field zero |
//! | 8 | 8 | `blocknr`: this block's own number |
//! | 16 | 4 | `version` = 2 (1 is read: a clean v1 journal) |
//! | 20 | 4 | `flags`: bit 0 [`JOURNAL_CLEAN`] |
//! | 24 | 8 | `next_lsn`: the LSN the next record gets (LSNs start at 1 and only grow) |
//! | 32 | 8 | `checkpoint_lsn`: LSN of the record at `head`; every smaller LSN is applied in place |
//! | 40 | 8 | `head`: record block (0-based, after the superblock) of the oldest live record |
//! | 48 | 16 | `uuid`: the filesystem's UUID (a journal of another filesystem is refused) |
//! | 64 | 4032 | reserved, zero |
//!
//! Record header (records start 8-byte aligned in the record blocks, may span blocks and wrap
//! from the last record block to the first):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic` = [`RECORD_MAGIC`] |
//! | 4 | 4 | `checksum`: CRC-32C of the filesystem's UUID, the header (this field zero) and the payload |
//! | 8 | 8 | `lsn` |
//! | 16 | 2 | `type` ([`RecordType`]) |
//! | 18 | 2 | `flags`, zero |
//! | 20 | 4 | `len`: payload bytes, at most [`MAX_RECORD_PAYLOAD`] |
//! | 24 | len | payload |
//!
//! The UUID in the checksum (new in v2) makes a record left on the device by an earlier
//! filesystem fail its checksum, whatever its LSN.

use super::block::{check_header, seal_header};
use super::le::*;
use super::BLOCK_SIZE;
use crate::error::{FormatError, Result};

/// `"VJNL"` as a little-endian word.
pub const JOURNAL_MAGIC: u32 = u32::from_le_bytes(*b"VJNL");
/// `"VREC"` as a little-endian word.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"VREC");
/// Journal format version written by this code.
pub const JOURNAL_VERSION: u32 = 2;
/// The journal version of format v1: read only when clean (v1 never wrote a record).
pub const JOURNAL_VERSION_V1: u32 = 1;
/// `flags` bit: no live record; nothing to replay.
pub const JOURNAL_CLEAN: u32 = 1;
/// Smallest journal region: the superblock and 63 record blocks.
pub const MIN_JOURNAL_BLOCKS: u64 = 64;
/// Bytes of a record header.
pub const RECORD_HEADER: usize = 24;
/// Largest record payload: a block-images record of 4 images (`8 + 4 * (8 + 4096)` bytes),
/// which is also more than a vector record of the largest dimension (4096) needs.
pub const MAX_RECORD_PAYLOAD: usize = 8 + 4 * (8 + BLOCK_SIZE);
/// Largest record, header included.
pub const MAX_RECORD: usize = RECORD_HEADER + MAX_RECORD_PAYLOAD;

/// Record types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum RecordType {
    /// Payload: `count u32`, reserved u32, `count` target block numbers (u64), then `count`
    /// block images of 4096 bytes.
    Blocks = 1,
    /// Closes a transaction; payload empty. Records of a transaction without its commit are
    /// not replayed.
    Commit = 2,
    /// Payload: `slot u32`, `chunk u32`, `ino u64`, then the vector (`dim` float32).
    VecInsert = 3,
    /// Payload: `slot u32`, reserved u32.
    VecRemove = 4,
}

/// The decoded journal superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSuper {
    /// Flag bits: [`JOURNAL_CLEAN`].
    pub flags: u32,
    /// The LSN the next record gets.
    pub next_lsn: u64,
    /// Every record with a smaller LSN is applied in place.
    pub checkpoint_lsn: u64,
    /// Record block (0-based, after the journal superblock) of the oldest live record.
    pub head: u64,
    /// The filesystem's UUID.
    pub uuid: [u8; 16],
}

impl JournalSuper {
    /// The journal of a new filesystem: clean, next LSN 1.
    pub fn new(uuid: [u8; 16]) -> Self {
        JournalSuper { flags: JOURNAL_CLEAN, next_lsn: 1, checkpoint_lsn: 1, head: 0, uuid }
    }

    /// Decodes and checks the journal superblock at device block `blocknr` of a journal of
    /// `journal_blocks` blocks belonging to the filesystem `uuid`.
    /// Errors (EUCLEAN): bad magic or checksum, wrong block number, version, uuid, head or LSNs.
    pub fn decode(block: &[u8], blocknr: u64, journal_blocks: u64, uuid: &[u8; 16]) -> Result<Self> {
        const W: &str = "journal superblock";
        // The owner field of the common header is the version word pair here: check by hand.
        if block.len() != BLOCK_SIZE {
            return Err(FormatError::Truncated { what: W, len: block.len() });
        }
        check_header(block, W, JOURNAL_MAGIC, blocknr, u64_at(block, 16, W)?)?;
        let version = u32_at(block, 16, W)?;
        if version != JOURNAL_VERSION && version != JOURNAL_VERSION_V1 {
            return Err(FormatError::Corrupt { what: "journal version", value: version as u64 });
        }
        let j = JournalSuper {
            flags: u32_at(block, 20, W)?,
            next_lsn: u64_at(block, 24, W)?,
            checkpoint_lsn: u64_at(block, 32, W)?,
            head: u64_at(block, 40, W)?,
            uuid: bytes(block, 48, W)?,
        };
        let bad = |what: &'static str, value: u64| Err(FormatError::Corrupt { what, value });
        if &j.uuid != uuid {
            return bad("journal uuid", 0);
        }
        if j.flags & !JOURNAL_CLEAN != 0 {
            return bad("journal flags", j.flags as u64);
        }
        if version == JOURNAL_VERSION_V1 && j.flags & JOURNAL_CLEAN == 0 {
            return bad("v1 journal not clean", j.flags as u64);
        }
        if j.next_lsn == 0 || j.checkpoint_lsn == 0 || j.checkpoint_lsn > j.next_lsn {
            return bad("journal lsn", j.next_lsn);
        }
        if j.head >= journal_blocks.saturating_sub(1) {
            return bad("journal head", j.head);
        }
        if block.get(64..).is_some_and(|r| !all_zero(r)) {
            return bad("journal reserved bytes", 0);
        }
        Ok(j)
    }

    /// Encodes into a whole block numbered `blocknr`.
    pub fn encode(&self, block: &mut [u8], blocknr: u64) {
        block.fill(0);
        put_u32(block, 16, JOURNAL_VERSION);
        put_u32(block, 20, self.flags);
        put_u64(block, 24, self.next_lsn);
        put_u64(block, 32, self.checkpoint_lsn);
        put_u64(block, 40, self.head);
        put(block, 48, &self.uuid);
        // Bytes 16..24 double as the header's "owner" word: version, then flags (little-endian).
        let owner = u64::from(JOURNAL_VERSION) | (u64::from(self.flags) << 32);
        seal_header(block, JOURNAL_MAGIC, blocknr, owner);
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// The record's LSN.
    pub lsn: u64,
    /// Its [`RecordType`], as stored.
    pub rtype: u16,
    /// Payload bytes.
    pub len: u32,
}

/// The checksum of a record: CRC-32C of `uuid`, the 24-byte header `head` (checksum field
/// zero) and the payload's `parts`, in order.
pub fn record_checksum(uuid: &[u8; 16], head: &[u8; RECORD_HEADER], parts: &[&[u8]]) -> u32 {
    let mut c = crate::crc32c::crc32c_append(0, uuid);
    c = crate::crc32c::crc32c_append(c, head);
    for p in parts {
        c = crate::crc32c::crc32c_append(c, p);
    }
    c
}

/// The header of a record of `len` payload bytes with its checksum over `uuid` and the
/// payload's `parts` (whose lengths add up to `len`).
pub fn record_header(uuid: &[u8; 16], lsn: u64, rtype: RecordType, len: u32, parts: &[&[u8]]) -> [u8; RECORD_HEADER] {
    let mut h = [0u8; RECORD_HEADER];
    put_u32(&mut h, 0, RECORD_MAGIC);
    put_u64(&mut h, 8, lsn);
    put_u16(&mut h, 16, rtype as u16);
    put_u32(&mut h, 20, len);
    let c = record_checksum(uuid, &h, parts);
    put_u32(&mut h, 4, c);
    h
}

/// Encodes a record (header then `payload`) of the filesystem `uuid` into `out`; returns the
/// bytes used (rounded up to 8), or `None` if `out` is too small.
pub fn encode_record(out: &mut [u8], uuid: &[u8; 16], lsn: u64, rtype: RecordType, payload: &[u8]) -> Option<usize> {
    let total = RECORD_HEADER.checked_add(payload.len())?.checked_next_multiple_of(8)?;
    let rec = out.get_mut(..total)?;
    rec.fill(0);
    let head = record_header(uuid, lsn, rtype, u32::try_from(payload.len()).ok()?, &[payload]);
    put(rec, 0, &head);
    put(rec, RECORD_HEADER, payload);
    Some(total)
}

/// Decodes the header at the start of `buf` (at least [`RECORD_HEADER`] bytes) without
/// checking the checksum: magic, type, flags and a length of at most [`MAX_RECORD_PAYLOAD`].
/// Errors (EUCLEAN): any of those wrong. The scanner uses it to know how much to read.
pub fn peek_record(buf: &[u8]) -> Result<RecordHeader> {
    const W: &str = "journal record";
    let magic = u32_at(buf, 0, W)?;
    if magic != RECORD_MAGIC {
        return Err(FormatError::Corrupt { what: "journal record magic", value: magic as u64 });
    }
    let h = RecordHeader { lsn: u64_at(buf, 8, W)?, rtype: u16_at(buf, 16, W)?, len: u32_at(buf, 20, W)? };
    if !(1..=4).contains(&h.rtype) || u16_at(buf, 18, W)? != 0 {
        return Err(FormatError::Corrupt { what: "journal record type", value: h.rtype as u64 });
    }
    if h.len as usize > MAX_RECORD_PAYLOAD {
        return Err(FormatError::Corrupt { what: "journal record length", value: h.len as u64 });
    }
    Ok(h)
}

/// Decodes the record of the filesystem `uuid` at the start of `buf` and checks it against
/// `expected_lsn`. Returns the header and payload. Errors (EUCLEAN): bad magic, checksum, LSN,
/// type or length; a length past `buf`. Recovery treats any error as the end of the log.
pub fn decode_record<'a>(buf: &'a [u8], uuid: &[u8; 16], expected_lsn: u64) -> Result<(RecordHeader, &'a [u8])> {
    const W: &str = "journal record";
    let magic = u32_at(buf, 0, W)?;
    if magic != RECORD_MAGIC {
        return Err(FormatError::Corrupt { what: "journal record magic", value: magic as u64 });
    }
    let h = RecordHeader { lsn: u64_at(buf, 8, W)?, rtype: u16_at(buf, 16, W)?, len: u32_at(buf, 20, W)? };
    let end = RECORD_HEADER.checked_add(h.len as usize).ok_or(FormatError::Truncated { what: W, len: buf.len() })?;
    let payload = buf.get(RECORD_HEADER..end).ok_or(FormatError::Truncated { what: W, len: buf.len() })?;
    let mut head = bytes::<RECORD_HEADER>(buf, 0, W)?;
    put_u32(&mut head, 4, 0);
    let stored = u32_at(buf, 4, W)?;
    let computed = record_checksum(uuid, &head, &[payload]);
    if stored != computed {
        return Err(FormatError::BadChecksum { what: W, stored, computed });
    }
    if h.lsn != expected_lsn {
        return Err(FormatError::WrongIdentity { what: "journal record lsn", expected: expected_lsn, found: h.lsn });
    }
    peek_record(buf)?;
    Ok((h, payload))
}
