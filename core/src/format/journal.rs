//! The journal region: a circular write-ahead log for metadata blocks and vector operations.
//!
//! Block 0 of the region is the journal superblock; blocks `1 ..` hold records. Format v1
//! defines both and mkfs writes an empty, clean journal. Every metadata update can go through
//! it as a transaction of block images (`BLOCKS` records) closed by a `COMMIT`, and vector
//! inserts/removals as `VEC_*` records, without a format change. A filesystem whose journal
//! holds unreplayed transactions has the incompat bit `RECOVER` set in the superblock.
//!
//! Journal superblock:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic` = [`JOURNAL_MAGIC`] |
//! | 4 | 4 | `checksum`: CRC-32C of the block with this field zero |
//! | 8 | 8 | `blocknr`: this block's own number |
//! | 16 | 4 | `version` = 1 |
//! | 20 | 4 | `flags`: bit 0 [`JOURNAL_CLEAN`] |
//! | 24 | 8 | `next_lsn`: the LSN the next record gets (LSNs start at 1 and only grow) |
//! | 32 | 8 | `checkpoint_lsn`: every record with a smaller LSN is applied in place |
//! | 40 | 8 | `head`: record block (0-based, after the superblock) of the oldest live record |
//! | 48 | 16 | `uuid`: the filesystem's UUID (a journal of another filesystem is refused) |
//! | 64 | 4032 | reserved, zero |
//!
//! Record header (records start 8-byte aligned in the record blocks, may span blocks):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic` = [`RECORD_MAGIC`] |
//! | 4 | 4 | `checksum`: CRC-32C of header (this field zero) and payload |
//! | 8 | 8 | `lsn` |
//! | 16 | 2 | `type` ([`RecordType`]) |
//! | 18 | 2 | `flags`, zero |
//! | 20 | 4 | `len`: payload bytes |
//! | 24 | len | payload |
//!
//! Recovery reads records from `head` in LSN order and stops at the first record whose magic,
//! checksum or LSN (must be the previous one plus one) is wrong: only a torn tail is discarded.

use super::block::{check_header, seal_header};
use super::le::*;
use super::BLOCK_SIZE;
use crate::crc32c::crc32c_parts;
use crate::error::{FormatError, Result};

/// `"VJNL"` as a little-endian word.
pub const JOURNAL_MAGIC: u32 = u32::from_le_bytes(*b"VJNL");
/// `"VREC"` as a little-endian word.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"VREC");
/// Journal format version.
pub const JOURNAL_VERSION: u32 = 1;
/// `flags` bit: no live record; nothing to replay.
pub const JOURNAL_CLEAN: u32 = 1;
/// Smallest journal region: the superblock and 63 record blocks.
pub const MIN_JOURNAL_BLOCKS: u64 = 64;
/// Bytes of a record header.
pub const RECORD_HEADER: usize = 24;

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
        if version != JOURNAL_VERSION {
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
        if j.next_lsn == 0 || j.checkpoint_lsn == 0 || j.checkpoint_lsn > j.next_lsn {
            return bad("journal lsn", j.next_lsn);
        }
        if j.head >= journal_blocks.saturating_sub(1) {
            return bad("journal head", j.head);
        }
        if block.get(64..).is_some_and(|r| r.iter().any(|&b| b != 0)) {
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

/// Encodes a record (header then `payload`) into `out`; returns the bytes used (rounded up to
/// 8), or `None` if `out` is too small.
pub fn encode_record(out: &mut [u8], lsn: u64, rtype: RecordType, payload: &[u8]) -> Option<usize> {
    let total = RECORD_HEADER.checked_add(payload.len())?.checked_next_multiple_of(8)?;
    let rec = out.get_mut(..total)?;
    rec.fill(0);
    put_u32(rec, 0, RECORD_MAGIC);
    put_u64(rec, 8, lsn);
    put_u16(rec, 16, rtype as u16);
    put_u32(rec, 20, u32::try_from(payload.len()).ok()?);
    put(rec, RECORD_HEADER, payload);
    let c = crc32c_parts(&[rec.get(..RECORD_HEADER)?, payload]);
    put_u32(rec, 4, c);
    Some(total)
}

/// Decodes the record at the start of `buf` and checks it against `expected_lsn`. Returns the
/// header and payload. Errors (EUCLEAN): bad magic, checksum, LSN or type; a length past
/// `buf`. Recovery treats any error as the end of the log.
pub fn decode_record(buf: &[u8], expected_lsn: u64) -> Result<(RecordHeader, &[u8])> {
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
    let computed = crc32c_parts(&[&head, payload]);
    if stored != computed {
        return Err(FormatError::BadChecksum { what: W, stored, computed });
    }
    if h.lsn != expected_lsn {
        return Err(FormatError::WrongIdentity { what: "journal record lsn", expected: expected_lsn, found: h.lsn });
    }
    if !(1..=4).contains(&h.rtype) || u16_at(buf, 18, W)? != 0 {
        return Err(FormatError::Corrupt { what: "journal record type", value: h.rtype as u64 });
    }
    Ok((h, payload))
}
