//! The vector regions: who owns each vector slot, the HNSW graph records, and the level of
//! each slot.
//!
//! Vector map entry (16 bytes, 256 per block, slot `s` at byte `s * 16` of the region):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | `ino`: owning inode, 0 = no owner |
//! | 8 | 4 | `chunk`: which embedding of the file |
//! | 12 | 4 | `checksum`: CRC-32C of the slot number (u32 LE) then bytes 0..12; 0 when free |
//!
//! HNSW region: block 0 is the header, then the level-0 records (`level0_size` bytes each,
//! `BLOCK_SIZE / level0_size` per block), then the upper-level records (`upper_size` bytes,
//! `BLOCK_SIZE / upper_size` per block). No record crosses a block. With node records
//! (`FEATURE_INCOMPAT_NODE_RECORDS`) the level-0 records lie in the data region instead, each
//! right after its slot's vector ([`HnswGeometry`]), and the upper records follow the header.
//!
//! Level-0 record: `count` u16, `level` u8, `flags` u8 ([`NODE_IN_GRAPH`], [`NODE_DELETED`],
//! [`NODE_PENDING`]),
//! `upper` u32 (index of the slot's first upper record; its levels `1..=level` use records
//! `upper .. upper + level`), then `2m` neighbour slots (u32), `count` of them used.
//! Upper record: `count` u32, then `m` neighbour slots (u32).
//!
//! The level of slot `s` is fixed by [`slot_level`] (seeded, so a build is reproducible), and
//! its upper records by [`UpperTable`]: both are functions of the superblock alone.
//!
//! Header block: `magic` "VHNS", `checksum`, `blocknr`, `owner` 0 (as other self-describing
//! blocks), then `entry` u32 (slot of the entry point, `u32::MAX` = empty graph) at 24,
//! `entry_level` u32 at 28, `live` u32 at 32 (vectors in the graph, not deleted), `deleted` u32
//! at 36 (tombstones), `pending` u32 at 40 (vectors stored but not yet linked into the graph:
//! the vector write-ahead log's records, format v2), reserved zero to the end.

use super::block::{check_header, seal_header};
use super::le::*;
use super::superblock::{
    hnsw_level0_record_size, hnsw_upper_record_size, hnsw_upper_records, node_record_size, records_per_block, Region,
    Superblock,
};
use super::BLOCK_SIZE;
use crate::crc32c::crc32c_parts;
use crate::error::{FormatError, Result};

/// Level-0 `flags`: the slot holds a vector that is part of the graph.
pub const NODE_IN_GRAPH: u8 = 1;
/// Level-0 `flags`: the vector was removed; it still routes searches until purged.
pub const NODE_DELETED: u8 = 2;
/// Level-0 `flags` (alone): the slot holds an acknowledged vector not yet linked into the graph
/// (a record of the vector write-ahead log: its owner in the map, its vector in the data
/// region, `count` 0, no node links to it). The index worker links it and sets
/// [`NODE_IN_GRAPH`]; searches scan such slots exactly. Format v2.
pub const NODE_PENDING: u8 = 4;
/// No slot (empty graph, unused neighbour).
pub const NO_SLOT: u32 = u32::MAX;
/// `"VHNS"` as a little-endian word.
pub const HNSW_MAGIC: u32 = u32::from_le_bytes(*b"VHNS");
/// Bytes of a vector map entry.
pub const MAP_ENTRY: usize = 16;

/// Owner of a vector slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry {
    /// Owning inode (not 0).
    pub ino: u64,
    /// Which embedding of the file.
    pub chunk: u32,
}

impl MapEntry {
    /// Decodes the entry of `slot` from its 16 bytes: `None` when free (all zero). Errors
    /// (EUCLEAN): bad checksum.
    #[inline]
    pub fn decode(slot: u32, raw: &[u8]) -> Result<Option<MapEntry>> {
        const W: &str = "vector map entry";
        let raw: [u8; MAP_ENTRY] = bytes(raw, 0, W)?;
        if raw.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let stored = u32_at(&raw, 12, W)?;
        let computed = crc32c_parts(&[&slot.to_le_bytes(), &bytes::<12>(&raw, 0, W)?]);
        if stored != computed {
            return Err(FormatError::BadChecksum { what: W, stored, computed });
        }
        let e = MapEntry { ino: u64_at(&raw, 0, W)?, chunk: u32_at(&raw, 8, W)? };
        if e.ino == 0 {
            return Err(FormatError::Corrupt { what: "vector map owner", value: 0 });
        }
        Ok(Some(e))
    }

    /// Encodes the entry of `slot` (or a free entry for `None`).
    pub fn encode(e: Option<MapEntry>, slot: u32, raw: &mut [u8]) {
        let Some(raw) = raw.get_mut(..MAP_ENTRY) else { return };
        raw.fill(0);
        if let Some(e) = e {
            put_u64(raw, 0, e.ino);
            put_u32(raw, 8, e.chunk);
            let Some(body) = raw.get(..12) else { return };
            let c = crc32c_parts(&[&slot.to_le_bytes(), body]);
            put_u32(raw, 12, c);
        }
    }
}

/// SplitMix64 step (Steele, Lea, Flood 2014): the level generator's mixer.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Level of slot `slot`: geometric with `P(level >= l) = m^-l`, the distribution of
/// Malkov & Yashunin (2018) with `mL = 1 / ln(m)`, drawn with integers only from
/// `(seed, slot)`, capped at `max_level`.
pub fn slot_level(seed: u64, slot: u32, m: u32, max_level: u32) -> u8 {
    let m = u64::from(m.max(2));
    let cap = u8::try_from(max_level).unwrap_or(u8::MAX);
    let mut state = seed ^ u64::from(slot).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    for level in 0..cap {
        state = splitmix64(state);
        // One more level with probability 1/m. Unbiased enough: m <= 128 against 2^64.
        if state.checked_rem(m) != Some(0) {
            return level;
        }
    }
    cap
}

/// Geometry of the HNSW region of a superblock, and where each slot's vector and level-0
/// record lie (in the HNSW and data regions, or together in node records:
/// [`crate::format::superblock::FEATURE_INCOMPAT_NODE_RECORDS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswGeometry {
    /// First block of the region (the header).
    pub header: u64,
    /// First block of level-0 records (of the node records: the data region's first).
    pub level0_start: u64,
    /// Bytes of a level-0 record.
    pub level0_size: u64,
    /// Level-0 records per block (at least 1).
    pub level0_per_block: u64,
    /// Bytes from one level-0 record to the next in a block: `level0_size`, or with node
    /// records the node record's size ([`node_record_size`]).
    pub level0_step: u64,
    /// Byte of a level-0 record within its step: 0, or with node records the vector's
    /// stride (the record follows the vector).
    pub level0_skip: u64,
    /// Whether vectors and level-0 records lie together in node records.
    pub node_records: bool,
    /// First block of the vector data region.
    pub data_start: u64,
    /// Bytes per vector slot without node records (`vec_stride`: vectors packed from the
    /// data region's first byte, possibly across blocks).
    pub vec_stride: u64,
    /// First block of upper-level records.
    pub upper_start: u64,
    /// Bytes of an upper-level record.
    pub upper_size: u64,
    /// Upper-level records per block (at least 1).
    pub upper_per_block: u64,
    /// Upper-level records available.
    pub upper_records: u64,
    /// Neighbours kept at level 0 (`2m`).
    pub m0: u32,
    /// Neighbours kept above level 0 (`m`).
    pub m: u32,
}

impl HnswGeometry {
    /// From a superblock that passed [`Superblock::validate`], whose bounds keep every figure
    /// far from overflow. On one that did not, the arithmetic saturates instead of panicking
    /// (and the figures mean nothing).
    pub fn new(sb: &Superblock) -> HnswGeometry {
        let m = sb.hnsw_m;
        let level0_size = hnsw_level0_record_size(m);
        let upper_size = hnsw_upper_record_size(m);
        let header = sb.region(Region::Hnsw).start;
        let data_start = sb.region(Region::VecData).start;
        let vec_stride = u64::from(sb.vec_stride);
        let node_records = sb.has_node_records();
        let (level0_start, level0_step, level0_skip, upper_start) = if node_records {
            (data_start, node_record_size(sb.vec_dim, m), vec_stride, header.saturating_add(1))
        } else {
            let first = header.saturating_add(1);
            (first, level0_size, 0, first.saturating_add(sb.vec_capacity.div_ceil(records_per_block(level0_size))))
        };
        let level0_per_block = records_per_block(level0_step);
        HnswGeometry {
            header,
            level0_start,
            level0_size,
            level0_per_block,
            level0_step,
            level0_skip,
            node_records,
            data_start,
            vec_stride,
            upper_start,
            upper_size,
            upper_per_block: records_per_block(upper_size),
            upper_records: hnsw_upper_records(sb.vec_capacity, m),
            m0: m.saturating_mul(2),
            m,
        }
    }

    /// (block, byte offset) of the level-0 record of `slot`.
    #[inline]
    pub fn level0_pos(&self, slot: u32) -> (u64, usize) {
        let (blk, off) = record_pos(self.level0_start, self.level0_per_block, self.level0_step, u64::from(slot));
        let skip = usize::try_from(self.level0_skip).unwrap_or(usize::MAX);
        // Saturating: an overflow gives `usize::MAX`, a position no slice reaches.
        (blk, off.saturating_add(skip))
    }

    /// (block, byte offset) of the first byte of `slot`'s vector: its node record's start with
    /// node records (the vector never crosses a block), else byte `slot * vec_stride` of the
    /// data region (a vector may run on into the next block). A position that cannot be
    /// computed comes out as in [`record_pos`].
    #[inline]
    pub fn vector_pos(&self, slot: u32) -> (u64, usize) {
        if self.node_records {
            return record_pos(self.data_start, self.level0_per_block, self.level0_step, u64::from(slot));
        }
        let pos = u64::from(slot).checked_mul(self.vec_stride);
        let bs = BLOCK_SIZE as u64;
        let block = pos.and_then(|p| p.checked_div(bs)).and_then(|b| b.checked_add(self.data_start));
        let off = pos.and_then(|p| p.checked_rem(bs)).and_then(|o| usize::try_from(o).ok());
        (block.unwrap_or(u64::MAX), off.unwrap_or(usize::MAX))
    }

    /// (block, byte offset) of upper record `idx`.
    #[inline]
    pub fn upper_pos(&self, idx: u64) -> (u64, usize) {
        record_pos(self.upper_start, self.upper_per_block, self.upper_size, idx)
    }
}

/// (block, byte offset) of record `idx` of `size` bytes, `per_block` to a block, in blocks from
/// `start`. A figure that cannot be computed (a zero `per_block`, an overflow: never for a
/// geometry made by [`HnswGeometry::new`]) comes out as `u64::MAX` or `usize::MAX`, a position
/// no block read or slice reaches, rather than a wrapped one that would alias another record.
#[inline]
fn record_pos(start: u64, per_block: u64, size: u64, idx: u64) -> (u64, usize) {
    let block = idx.checked_div(per_block).and_then(|b| b.checked_add(start));
    let off = idx.checked_rem(per_block).and_then(|r| r.checked_mul(size)).and_then(|o| usize::try_from(o).ok());
    (block.unwrap_or(u64::MAX), off.unwrap_or(usize::MAX))
}

/// The upper records of every slot: slot `s` owns records `first(s) .. first(s) + level(s)`.
/// Levels come from [`slot_level`]; once the region's records run out, later slots get
/// level 0. Computed by walking the slots in order (`O(capacity)`, integers only).
pub struct UpperTable;

impl UpperTable {
    /// Calls `f(slot, level, first_upper)` for every slot in order (slots below
    /// `min(vec_capacity, u32::MAX)`). Record numbers are `u32` on disk
    /// ([`Level0Head::upper`]), so records past `u32::MAX` count as run out, like those past
    /// the region.
    pub fn walk(sb: &Superblock, mut f: impl FnMut(u32, u8, u32)) {
        let records = HnswGeometry::new(sb).upper_records.min(u64::from(u32::MAX));
        let slots = u32::try_from(sb.vec_capacity).unwrap_or(u32::MAX);
        // `next <= records` throughout, so it and `next + level` fit a `u32`.
        let mut next = 0u32;
        for s in 0..slots {
            let drawn = slot_level(sb.hnsw_seed, s, sb.hnsw_m, sb.hnsw_max_level);
            let level = if u64::from(next).saturating_add(u64::from(drawn)) <= records { drawn } else { 0 };
            f(s, level, next);
            next = next.saturating_add(u32::from(level));
        }
    }
}

/// The decoded level-0 record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Level0Head {
    /// Neighbour slots in use.
    pub count: u16,
    /// The slot's top level.
    pub level: u8,
    /// [`NODE_IN_GRAPH`], [`NODE_DELETED`], [`NODE_PENDING`].
    pub flags: u8,
    /// Index of the slot's first upper record (levels `1..=level` use `upper .. upper + level`).
    pub upper: u32,
}

impl Level0Head {
    /// Decodes the first 8 bytes of a level-0 record.
    #[inline]
    pub fn decode(raw: &[u8]) -> Result<Level0Head> {
        const W: &str = "hnsw level-0 record";
        let b: [u8; 8] = bytes(raw, 0, W)?;
        Ok(Level0Head {
            count: u16::from_le_bytes([b[0], b[1]]),
            level: b[2],
            flags: b[3],
            upper: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
    /// Encodes into the first 8 bytes of a record.
    pub fn encode(&self, raw: &mut [u8]) {
        put_u16(raw, 0, self.count);
        if let Some(x) = raw.get_mut(2) {
            *x = self.level;
        }
        if let Some(x) = raw.get_mut(3) {
            *x = self.flags;
        }
        put_u32(raw, 4, self.upper);
    }
}

/// The HNSW header's dynamic state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswHeader {
    /// Slot of the entry point; [`NO_SLOT`] for an empty graph.
    pub entry: u32,
    /// The entry point's level.
    pub entry_level: u32,
    /// Vectors in the graph, not deleted.
    pub live: u32,
    /// Tombstones: deleted vectors still routing searches.
    pub deleted: u32,
    /// Vectors stored and acknowledged but not yet in the graph ([`NODE_PENDING`] slots).
    pub pending: u32,
}

impl HnswHeader {
    /// The header of an empty graph.
    pub const EMPTY: HnswHeader = HnswHeader { entry: NO_SLOT, entry_level: 0, live: 0, deleted: 0, pending: 0 };

    /// Decodes the header block at device block `blocknr`. An all-zero block (as mkfs leaves
    /// it) is the empty graph. Errors (EUCLEAN): bad magic, checksum or identity, reserved bytes.
    pub fn decode(block: &[u8], blocknr: u64) -> Result<HnswHeader> {
        if all_zero(block) {
            return Ok(Self::EMPTY);
        }
        check_header(block, "hnsw header", HNSW_MAGIC, blocknr, 0)?;
        const W: &str = "hnsw header";
        if block.get(44..).is_some_and(|r| !all_zero(r)) {
            return Err(FormatError::Corrupt { what: "hnsw header reserved bytes", value: 0 });
        }
        Ok(HnswHeader {
            entry: u32_at(block, 24, W)?,
            entry_level: u32_at(block, 28, W)?,
            live: u32_at(block, 32, W)?,
            deleted: u32_at(block, 36, W)?,
            pending: u32_at(block, 40, W)?,
        })
    }

    /// Encodes into a whole block numbered `blocknr`.
    pub fn encode(&self, block: &mut [u8], blocknr: u64) {
        block.fill(0);
        put_u32(block, 24, self.entry);
        put_u32(block, 28, self.entry_level);
        put_u32(block, 32, self.live);
        put_u32(block, 36, self.deleted);
        put_u32(block, 40, self.pending);
        seal_header(block, HNSW_MAGIC, blocknr, 0);
    }
}

/// Vector ids of a file beyond the inline ones: a block with the self-describing header
/// (`magic` "VVID", checksum, blocknr, owner inode) and `count` u32 at 24, reserved u32 at
/// 28, then up to [`VEC_IDS_PER_BLOCK`] slot numbers (u32) from byte 32.
pub const VEC_IDS_MAGIC: u32 = u32::from_le_bytes(*b"VVID");
/// Header bytes before the ids of a vector-id block.
pub const VEC_IDS_HEADER: usize = 32;
/// Slot numbers one vector-id block holds.
pub const VEC_IDS_PER_BLOCK: usize = (BLOCK_SIZE - VEC_IDS_HEADER) / 4;
/// Most embeddings (chunks) one file can carry.
pub const MAX_CHUNKS: usize = super::inode::INLINE_VEC_IDS + VEC_IDS_PER_BLOCK;

/// Number of ids in a checked vector-id block. Errors (EUCLEAN): above
/// [`VEC_IDS_PER_BLOCK`], reserved word non-zero.
pub fn vec_ids_block_count(block: &[u8]) -> Result<usize> {
    let n = u32_at(block, 24, "vector id block")? as usize;
    if n > VEC_IDS_PER_BLOCK || u32_at(block, 28, "vector id block")? != 0 {
        return Err(FormatError::Corrupt { what: "vector id block count", value: n as u64 });
    }
    Ok(n)
}

/// Id `i` of a vector-id block. Errors (EUCLEAN): `Truncated` when id `i` lies past the end of
/// `block`.
pub fn vec_ids_block_get(block: &[u8], i: usize) -> Result<u32> {
    const W: &str = "vector id block";
    u32_at(record(block, VEC_IDS_HEADER, 4, i, W)?, 0, W)
}

/// Builds a vector-id block holding `ids` (at most [`VEC_IDS_PER_BLOCK`]) for inode `owner`.
pub fn vec_ids_block_build(block: &mut [u8], blocknr: u64, owner: u64, ids: &[u32]) {
    block.fill(0);
    let n = ids.len().min(VEC_IDS_PER_BLOCK);
    for (i, id) in ids.iter().take(n).enumerate() {
        if let Some(raw) = record_mut(block, VEC_IDS_HEADER, 4, i) {
            put_u32(raw, 0, *id);
        }
    }
    put_count(block, 24, n);
    seal_header(block, VEC_IDS_MAGIC, blocknr, owner);
}

/// Checks a vector-id block's header (magic, checksum, block number, owner).
pub fn check_vec_ids_block(block: &[u8], blocknr: u64, owner: u64) -> Result<()> {
    check_header(block, "vector id block", VEC_IDS_MAGIC, blocknr, owner)
}
