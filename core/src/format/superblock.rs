//! The superblock: block 0 of the device, with a backup copy in the last block.
//!
//! Byte layout (all little-endian; `docs/FORMAT.md` is the reference and must match):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic` = [`MAGIC`] |
//! | 4 | 4 | `format_version` = [`FORMAT_VERSION`] (3; 1 and 2 are read, see [`FORMAT_VERSION`]) |
//! | 8 | 4 | `feature_compat` |
//! | 12 | 4 | `feature_ro_compat` |
//! | 16 | 4 | `feature_incompat` |
//! | 20 | 4 | `block_size` (bytes, = 4096) |
//! | 24 | 8 | `block_count` (blocks) |
//! | 32 | 8 | `free_blocks` (hint, recomputed at mount) |
//! | 40 | 4 | `inode_count` |
//! | 44 | 4 | `free_inodes` (hint) |
//! | 48 | 4 | `root_ino` = [`ROOT_INO`] |
//! | 52 | 4 | `state` ([`STATE_CLEAN`], [`STATE_ERRORS`]) |
//! | 56 | 16 | `uuid` |
//! | 72 | 32 | `label` (UTF-8, NUL-padded) |
//! | 104 | 8 | `mkfs_time` (seconds since the epoch) |
//! | 112 | 8 | `write_time` (seconds since the epoch) |
//! | 120 | 4 | `mount_count` |
//! | 124 | 4 | reserved, zero |
//! | 128 | 160 | region table: [`REGION_COUNT`] × {`start` u64, `blocks` u64} in [`Region`] order |
//! | 288 | 4 | `vec_dim` (float32 components per vector) |
//! | 292 | 4 | `vec_metric` ([`Metric`]) |
//! | 296 | 8 | `vec_capacity` (vector slots) |
//! | 304 | 4 | `vec_stride` (bytes per slot in the vector data region) |
//! | 308 | 4 | `hnsw_m` |
//! | 312 | 4 | `hnsw_ef_construction` |
//! | 316 | 4 | `hnsw_max_level` |
//! | 320 | 8 | `hnsw_seed` |
//! | 328 | 8 | `backup_block` (= `block_count - 1`) |
//! | 336 | 4 | `sq8_shift` (i32; with [`FEATURE_INCOMPAT_SQ8`], else zero) |
//! | 340 | 4 | `pq_m` (sub-quantisers; with [`FEATURE_INCOMPAT_PQ`], else zero) |
//! | 344 | 164 | reserved, zero |
//! | 508 | 4 | `checksum`: CRC-32C of bytes 0..508 |
//!
//! Bytes 512..4096 of block 0 are zero.

use core::num::NonZeroU64;

use super::le::*;
use super::{BITS_PER_BLOCK, BLOCK_SIZE, BLOCK_SIZE_U64, INODES_PER_BLOCK_U64, INODE_SIZE};
use crate::crc32c::crc32c;
use crate::error::{FormatError, Result};

/// `"VEXF"` read as a big-endian word; also the `f_type` reported by statfs(2).
pub const MAGIC: u32 = 0x5645_5846;
/// On-disk format version this code writes (it reads [`FORMAT_VERSION_V1`] and
/// [`FORMAT_VERSION_V2`] too, and upgrades them on the first write).
///
/// v3 (this one): a file's extent block is the root of an extent tree
/// (`crate::extent_tree`): its word at 28, reserved zero in v2, is the node's depth, and a
/// node of depth > 0 holds index entries; a file has no fixed extent limit. v2 code refuses a
/// v3 filesystem (unsupported version), which may hold deeper trees. A v2 filesystem is a v3
/// one whose trees all have depth 0.
///
/// v2: the journal is written (`crate::journal`): record checksums cover the UUID,
/// transactions of block images end with a commit block, and [`FEATURE_INCOMPAT_RECOVER`] is
/// set while the filesystem is mounted read-write or written by a tool, so v1 code refuses a
/// filesystem whose journal may hold transactions. v1: the same layout with a journal that
/// was never written (always clean); a v1 filesystem reads as a v2 one and is upgraded (the
/// current version in both superblocks, a v2 journal superblock) by the first read-write mount
/// or write of a tool (`fsck.vexfs -y`, the offline writer).
pub const FORMAT_VERSION: u32 = 3;
/// Format version 2: read, and upgraded to [`FORMAT_VERSION`] by the first write.
pub const FORMAT_VERSION_V2: u32 = 2;
/// Format version 1: read, and upgraded to [`FORMAT_VERSION`] by the first write.
pub const FORMAT_VERSION_V1: u32 = 1;
/// Bytes of the superblock structure (the rest of its block is zero).
pub const SUPERBLOCK_SIZE: usize = 512;
/// Offset of the CRC-32C field.
const CSUM_OFF: usize = 508;
/// Offset of the region table ([`REGION_COUNT`] entries of 16 bytes).
const REGION_TABLE: usize = 128;
/// The `block_size` field's value: [`BLOCK_SIZE`].
const BLOCK_SIZE_FIELD: u32 = 4096;
const _: () = assert!(BLOCK_SIZE_FIELD as usize == BLOCK_SIZE);
/// Inode number of the root directory.
pub const ROOT_INO: u32 = 1;
/// `state` bit: the filesystem was unmounted cleanly.
pub const STATE_CLEAN: u32 = 1;
/// `state` bit: an error was detected while mounted; run fsck.
pub const STATE_ERRORS: u32 = 2;

/// Compat features known to this code (none yet). Unknown compat bits are ignored.
pub const FEATURE_COMPAT_SUPP: u32 = 0;
/// Read-only-compat features known to this code. Unknown ones allow a read-only mount only.
pub const FEATURE_RO_COMPAT_SUPP: u32 = 0;
/// Incompat feature: the filesystem is mounted read-write (or being written by a tool), or was
/// when it crashed: its journal may hold transactions that must be replayed
/// (`crate::journal::recover`) before anything else reads it. Set before the journal is first
/// written, cleared after the last checkpoint leaves it clean. v1 code does not know it and
/// refuses such a filesystem.
pub const FEATURE_INCOMPAT_RECOVER: u32 = 1;
/// Incompat feature (format v3): directories may be indexed (`crate::dir_index`; an indexed
/// directory's inode has `INODE_FLAG_INDEX`): a directory whose one block is full becomes
/// indexed when an entry is added. mkfs sets it when the journal holds the largest split
/// (`crate::embed::worst_step_blocks` counts it then). Code that does not know it refuses the
/// filesystem.
pub const FEATURE_INCOMPAT_DIR_INDEX: u32 = 2;
/// Incompat feature (format v3): regular files may map blocks past their size (inode flag
/// `crate::format::inode::INODE_FLAG_EOFBLOCKS`: `fallocate(FALLOC_FL_KEEP_SIZE)` past the end
/// of file). The kernel sets it, in the transaction that maps the first such block; nothing
/// clears it. Code that does not know it refuses the filesystem (it would take the preallocated
/// blocks for corruption, or free them as blocks past the size).
pub const FEATURE_INCOMPAT_EOFBLOCKS: u32 = 4;
/// Incompat feature (format v3): every vector in use also has its SQ8 code (`crate::sq8`: one
/// signed byte per component at the scale `2^sq8_shift`) in the vector codes region
/// ([`Region::VecCodes`], between the HNSW region and the data region), and searches walk the
/// graph on the codes before re-ranking with the float vectors. Set by mkfs (`--quant sq8`).
/// Code that does not know it refuses the filesystem (it would not write the codes of new
/// vectors).
pub const FEATURE_INCOMPAT_SQ8: u32 = 8;
/// Incompat feature (format v3): the vector codes region ([`Region::VecCodes`]) holds a PQ
/// codebook of `pq_m` sub-quantisers and, for every vector in use, its PQ code (`crate::pq`:
/// `pq_m` bytes), and searches walk the graph on the codes before re-ranking with the float
/// vectors. Set by mkfs (`--quant pq:M`, which trains the codebook); never with
/// [`FEATURE_INCOMPAT_SQ8`]. Code that does not know it refuses the filesystem.
pub const FEATURE_INCOMPAT_PQ: u32 = 16;
/// Incompat feature (format v3, with [`FEATURE_INCOMPAT_PQ`] only): **node records**, the
/// layout of DiskANN (Subramanya et al., NeurIPS 2019): slot `s`'s float32 vector and its
/// level-0 HNSW record lie together in one record of [`node_record_size`] bytes in the vector
/// data region, none crossing a block, so expanding a node reads one block that also gives
/// its full-precision distance; the HNSW region keeps the header and the upper-level records
/// only. Set by mkfs (`--quant pq` when a record fits in a block, unless `--pq-layout split`).
/// Code that does not know it
/// refuses the filesystem (it would look for the level-0 records in the HNSW region).
pub const FEATURE_INCOMPAT_NODE_RECORDS: u32 = 32;
/// Incompat features known to this code. Unknown ones make the mount fail with `EINVAL`.
pub const FEATURE_INCOMPAT_SUPP: u32 = FEATURE_INCOMPAT_RECOVER
    | FEATURE_INCOMPAT_DIR_INDEX
    | FEATURE_INCOMPAT_EOFBLOCKS
    | FEATURE_INCOMPAT_SQ8
    | FEATURE_INCOMPAT_PQ
    | FEATURE_INCOMPAT_NODE_RECORDS;

/// Smallest filesystem mkfs creates and mount accepts, in blocks (256 KiB).
pub const MIN_BLOCKS: u64 = 64;
/// Largest block count (2^40 blocks, 4 PiB): keeps every byte offset inside `u64`.
pub const MAX_BLOCKS: u64 = 1 << 40;
/// Largest vector dimension.
pub const MAX_DIM: u32 = 4096;
/// Largest HNSW `m` (neighbours per node above level 0; level 0 keeps `2 * m`).
pub const MAX_M: u32 = 128;
/// Smallest HNSW `m`.
pub const MIN_M: u32 = 2;
/// Largest HNSW `ef_construction`.
pub const MAX_EF_CONSTRUCTION: u32 = 4096;
/// Largest HNSW level (levels 0..=MAX_LEVEL).
pub const MAX_LEVEL: u32 = 16;

/// Number of entries in the region table.
pub const REGION_COUNT: usize = 10;

/// The regions of the device, numbered by their entry in the region table ([`REGIONS`] gives
/// their on-disk order, where the vector codes come before the data). Each is a run of whole
/// blocks; together they tile blocks `1 .. block_count - 1` with no gap (block 0 is the
/// superblock, the last block its backup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Region {
    /// The journal / vector write-ahead log (`format::journal`).
    Journal = 0,
    /// One bit per block of the device, 1 = in use (bit `b % 8` of byte `b / 8`).
    BlockBitmap = 1,
    /// One bit per inode, bit `ino - 1`, 1 = in use.
    InodeBitmap = 2,
    /// `inode_count` inodes of [`INODE_SIZE`] bytes, [`INODES_PER_BLOCK`](super::INODES_PER_BLOCK) per block.
    InodeTable = 3,
    /// One bit per vector slot, 1 = in use.
    VecBitmap = 4,
    /// Per vector slot: who owns it (inode, chunk), 16 bytes each.
    VecMap = 5,
    /// Per vector slot: `vec_stride` bytes of float32 components.
    VecData = 6,
    /// The HNSW graph: a header block, level-0 records, then upper-level records.
    Hnsw = 7,
    /// File and directory data blocks and extent blocks (the only allocatable blocks).
    Data = 8,
    /// Per vector slot: its SQ8 code (`crate::sq8`), with [`FEATURE_INCOMPAT_SQ8`]; or the PQ
    /// codebook and a PQ code per slot (`crate::pq`), with [`FEATURE_INCOMPAT_PQ`]; without
    /// either the table entry is zero (start and length) and the region is not part of the
    /// tiling.
    VecCodes = 9,
}

/// All regions in on-disk order (the vector codes, when present, before the data).
pub const REGIONS: [Region; REGION_COUNT] = [
    Region::Journal,
    Region::BlockBitmap,
    Region::InodeBitmap,
    Region::InodeTable,
    Region::VecBitmap,
    Region::VecMap,
    Region::VecData,
    Region::Hnsw,
    Region::VecCodes,
    Region::Data,
];
const _: () = assert!(Region::VecCodes as usize == REGION_COUNT - 1);

impl Region {
    /// Short lowercase name, as printed by `vexctl inspect` and `mkfs.vexfs -n`.
    pub fn name(self) -> &'static str {
        match self {
            Region::Journal => "journal",
            Region::BlockBitmap => "block bitmap",
            Region::InodeBitmap => "inode bitmap",
            Region::InodeTable => "inode table",
            Region::VecBitmap => "vector bitmap",
            Region::VecMap => "vector map",
            Region::VecData => "vector data",
            Region::Hnsw => "hnsw index",
            Region::Data => "data",
            Region::VecCodes => "vector codes",
        }
    }
}

/// A run of blocks: `start .. start + blocks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent64 {
    /// First block.
    pub start: u64,
    /// Length in blocks.
    pub blocks: u64,
}

impl Extent64 {
    /// One past the last block (saturating; validated geometry never saturates).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.blocks)
    }
    /// Whether block `b` lies in this run.
    pub fn contains(&self, b: u64) -> bool {
        b >= self.start && b < self.end()
    }
}

/// Distance metric of the vectors, fixed at mkfs time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Metric {
    /// Squared Euclidean distance, sum((a - b)^2).
    L2 = 0,
    /// Cosine distance, 1 - a.b / (|a| |b|).
    Cosine = 1,
    /// Inner-product distance, 1 - a.b (as hnswlib's "ip" space).
    InnerProduct = 2,
}

impl Metric {
    /// Decodes the on-disk value.
    pub fn from_u32(v: u32) -> Option<Metric> {
        match v {
            0 => Some(Metric::L2),
            1 => Some(Metric::Cosine),
            2 => Some(Metric::InnerProduct),
            _ => None,
        }
    }
    /// Name used by mkfs and vexctl: `l2`, `cosine`, `ip`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "ip",
        }
    }
}

/// The decoded superblock. Only [`Superblock::decode`] + [`Superblock::validate`] make one from
/// disk bytes; every field is checked there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// On-disk format version ([`FORMAT_VERSION`], [`FORMAT_VERSION_V2`] or [`FORMAT_VERSION_V1`]).
    pub format_version: u32,
    /// Compat feature bits (unknown ones are ignored).
    pub feature_compat: u32,
    /// Read-only-compat feature bits (unknown ones allow a read-only mount only).
    pub feature_ro_compat: u32,
    /// Incompat feature bits (unknown ones refuse the mount).
    pub feature_incompat: u32,
    /// Blocks of the filesystem, superblock and backup included.
    pub block_count: u64,
    /// Free blocks (a hint, recomputed at mount).
    pub free_blocks: u64,
    /// Inodes of the inode table.
    pub inode_count: u32,
    /// Free inodes (a hint).
    pub free_inodes: u32,
    /// Inode of the root directory ([`ROOT_INO`]).
    pub root_ino: u32,
    /// State bits: [`STATE_CLEAN`], [`STATE_ERRORS`].
    pub state: u32,
    /// The filesystem's UUID.
    pub uuid: [u8; 16],
    /// Label (UTF-8, NUL-padded).
    pub label: [u8; 32],
    /// Creation time, seconds since the epoch.
    pub mkfs_time: u64,
    /// Last write time, seconds since the epoch.
    pub write_time: u64,
    /// Mounts since mkfs.
    pub mount_count: u32,
    /// The runs of blocks of the regions, in [`Region`] order.
    pub regions: [Extent64; REGION_COUNT],
    /// Float32 components per vector.
    pub vec_dim: u32,
    /// The [`Metric`], as stored.
    pub vec_metric: u32,
    /// Vector slots.
    pub vec_capacity: u64,
    /// Bytes per slot in the vector data region ([`vec_stride_for`] of `vec_dim`).
    pub vec_stride: u32,
    /// HNSW `m`: neighbours per node above level 0 (`2 * m` at level 0).
    pub hnsw_m: u32,
    /// HNSW `ef_construction`.
    pub hnsw_ef_construction: u32,
    /// Highest HNSW level a slot can draw.
    pub hnsw_max_level: u32,
    /// Seed of the HNSW level generator ([`super::vector::slot_level`]).
    pub hnsw_seed: u64,
    /// Block of the backup superblock (`block_count - 1`).
    pub backup_block: u64,
    /// The SQ8 scale: codes are `round(x * 2^sq8_shift)` ([`crate::sq8`]), in
    /// [`crate::sq8::MIN_SHIFT`]`..=`[`crate::sq8::MAX_SHIFT`] with [`FEATURE_INCOMPAT_SQ8`],
    /// zero without.
    pub sq8_shift: i32,
    /// PQ sub-quantisers (bytes per code, `crate::pq`): with [`FEATURE_INCOMPAT_PQ`] a valid
    /// `m` for `vec_dim` ([`crate::pq::valid_m`]), zero without.
    pub pq_m: u32,
}

/// Bytes of one vector-map entry (see `docs/FORMAT.md`).
pub const VEC_MAP_ENTRY_SIZE: u64 = 16;

// The sizes below are of `u32` parameters widened to `u64`: `saturating_*` gives the exact value
// for every `u32` input (none comes near `u64::MAX`), and only states that no panic is possible.

/// Bytes per slot in the vector data region for `dim` components: `dim * 4` rounded up to 32,
/// so every vector starts 32-byte aligned (AVX loads) when the region starts on a block.
pub fn vec_stride_for(dim: u32) -> u64 {
    u64::from(dim).saturating_mul(4).div_ceil(32).saturating_mul(32)
}

/// Bytes of a level-0 HNSW record for `m`: `count u16, level u8, flags u8, upper u32`, then
/// `2 * m` neighbour slots of `u32`.
pub fn hnsw_level0_record_size(m: u32) -> u64 {
    u64::from(m).saturating_mul(8).saturating_add(8)
}

/// Bytes of one upper-level HNSW record for `m`: `count u32`, then `m` neighbour slots of `u32`.
pub fn hnsw_upper_record_size(m: u32) -> u64 {
    u64::from(m).saturating_mul(4).saturating_add(4)
}

/// Upper-level records reserved for `capacity` slots: twice the expected `capacity / (m - 1)`
/// plus slack (`m` below 2 counts as 2). A node whose levels do not fit is capped to the levels
/// that do. Saturates at `u64::MAX`.
pub fn hnsw_upper_records(capacity: u64, m: u32) -> u64 {
    let m_minus_1 = NonZeroU64::new(u64::from(m.saturating_sub(1))).unwrap_or(NonZeroU64::MIN);
    (capacity.saturating_mul(2) / m_minus_1).saturating_add(64)
}

/// Bytes of a node record ([`FEATURE_INCOMPAT_NODE_RECORDS`]) for `dim` components and `m`:
/// the vector ([`vec_stride_for`] bytes, at the record's start) then the level-0 record
/// ([`hnsw_level0_record_size`]), rounded up to 32 so every vector stays 32-byte aligned. At
/// most a block for a valid superblock (384-d at `m` 16: 1,696 bytes, 2 per block; 100-d: 576,
/// 7 per block).
pub fn node_record_size(dim: u32, m: u32) -> u64 {
    vec_stride_for(dim).saturating_add(hnsw_level0_record_size(m)).div_ceil(32).saturating_mul(32)
}

/// Records of `size` bytes one block holds, none crossing a block boundary: at least 1 (a
/// `size` of 0, or above a block, counts as one record per block).
pub fn records_per_block(size: u64) -> u64 {
    (BLOCK_SIZE_U64 / NonZeroU64::new(size).unwrap_or(NonZeroU64::MIN)).max(1)
}

/// Blocks needed to hold `count` records of `size` bytes, packed with no record crossing a
/// block boundary.
pub fn blocks_for_records(count: u64, size: u64) -> u64 {
    count.div_ceil(records_per_block(size))
}

/// Minimum size of each vector/index region for the given vector parameters, in blocks:
/// `[VecBitmap, VecMap, VecData, Hnsw]`. With `node_records`
/// ([`FEATURE_INCOMPAT_NODE_RECORDS`]) the data region holds a node record per slot and the
/// HNSW region no level-0 record.
pub fn vector_region_blocks(capacity: u64, dim: u32, m: u32, node_records: bool) -> [u64; 4] {
    let bs = BLOCK_SIZE_U64;
    let bitmap = capacity.div_ceil(BITS_PER_BLOCK);
    let map = blocks_for_records(capacity, VEC_MAP_ENTRY_SIZE);
    let (data, level0) = if node_records {
        (blocks_for_records(capacity, node_record_size(dim, m)), 0)
    } else {
        (
            capacity.saturating_mul(vec_stride_for(dim)).div_ceil(bs),
            blocks_for_records(capacity, hnsw_level0_record_size(m)),
        )
    };
    let hnsw = 1u64
        .saturating_add(level0)
        .saturating_add(blocks_for_records(hnsw_upper_records(capacity, m), hnsw_upper_record_size(m)));
    // An empty vector region still keeps the HNSW header block; the others may be empty.
    [bitmap, map, data, hnsw]
}

impl Superblock {
    /// The run of blocks of `r`.
    pub fn region(&self, r: Region) -> Extent64 {
        // Every `Region` indexes the table (asserted below `REGIONS`): the default never shows.
        self.regions.get(r as usize).copied().unwrap_or_default()
    }

    /// The metric, if the field is valid (always, after [`Self::validate`]).
    pub fn metric(&self) -> Option<Metric> {
        Metric::from_u32(self.vec_metric)
    }

    /// The label as a string (up to the first NUL; invalid UTF-8 shows as empty).
    pub fn label_str(&self) -> &str {
        let text = self.label.split(|&b| b == 0).next().unwrap_or_default();
        core::str::from_utf8(text).unwrap_or("")
    }

    /// Decodes a superblock from the first [`SUPERBLOCK_SIZE`] bytes of `buf`, checking magic,
    /// checksum, version and incompat features. Geometry is checked by [`Self::validate`].
    ///
    /// Errors: `BadMagic` (EINVAL), `BadChecksum` (EUCLEAN), `UnsupportedVersion` (EINVAL),
    /// `UnsupportedFeatures` (EINVAL), `Truncated` (EUCLEAN).
    pub fn decode(buf: &[u8]) -> Result<Superblock> {
        const W: &str = "superblock";
        let raw = buf.get(..SUPERBLOCK_SIZE).ok_or(FormatError::Truncated { what: W, len: buf.len() })?;
        let magic = u32_at(raw, 0, W)?;
        if magic != MAGIC {
            return Err(FormatError::BadMagic { what: W, found: magic });
        }
        let stored = u32_at(raw, CSUM_OFF, W)?;
        let computed = crc32c(raw.get(..CSUM_OFF).ok_or(FormatError::Truncated { what: W, len: raw.len() })?);
        if stored != computed {
            return Err(FormatError::BadChecksum { what: W, stored, computed });
        }
        let format_version = u32_at(raw, 4, W)?;
        if ![FORMAT_VERSION, FORMAT_VERSION_V2, FORMAT_VERSION_V1].contains(&format_version) {
            return Err(FormatError::UnsupportedVersion(format_version));
        }
        let feature_incompat = u32_at(raw, 16, W)?;
        if feature_incompat & !FEATURE_INCOMPAT_SUPP != 0 {
            return Err(FormatError::UnsupportedFeatures(feature_incompat & !FEATURE_INCOMPAT_SUPP));
        }
        let block_size = u32_at(raw, 20, W)?;
        if block_size != BLOCK_SIZE_FIELD {
            return Err(FormatError::Corrupt { what: "superblock block_size", value: u64::from(block_size) });
        }
        let mut regions = [Extent64::default(); REGION_COUNT];
        for (i, r) in regions.iter_mut().enumerate() {
            let e = record(raw, REGION_TABLE, 16, i, W)?;
            *r = Extent64 { start: u64_at(e, 0, W)?, blocks: u64_at(e, 8, W)? };
        }
        Ok(Superblock {
            format_version,
            feature_compat: u32_at(raw, 8, W)?,
            feature_ro_compat: u32_at(raw, 12, W)?,
            feature_incompat,
            block_count: u64_at(raw, 24, W)?,
            free_blocks: u64_at(raw, 32, W)?,
            inode_count: u32_at(raw, 40, W)?,
            free_inodes: u32_at(raw, 44, W)?,
            root_ino: u32_at(raw, 48, W)?,
            state: u32_at(raw, 52, W)?,
            uuid: bytes(raw, 56, W)?,
            label: bytes(raw, 72, W)?,
            mkfs_time: u64_at(raw, 104, W)?,
            write_time: u64_at(raw, 112, W)?,
            mount_count: u32_at(raw, 120, W)?,
            regions,
            vec_dim: u32_at(raw, 288, W)?,
            vec_metric: u32_at(raw, 292, W)?,
            vec_capacity: u64_at(raw, 296, W)?,
            vec_stride: u32_at(raw, 304, W)?,
            hnsw_m: u32_at(raw, 308, W)?,
            hnsw_ef_construction: u32_at(raw, 312, W)?,
            hnsw_max_level: u32_at(raw, 316, W)?,
            hnsw_seed: u64_at(raw, 320, W)?,
            backup_block: u64_at(raw, 328, W)?,
            sq8_shift: u32_at(raw, 336, W)? as i32,
            pq_m: u32_at(raw, 340, W)?,
        })
    }

    /// Encodes into `buf` (at least [`SUPERBLOCK_SIZE`] bytes; callers pass a whole zeroed
    /// block) and sets the checksum.
    pub fn encode(&self, buf: &mut [u8]) {
        if buf.len() < SUPERBLOCK_SIZE {
            return;
        }
        if let Some(raw) = buf.get_mut(..SUPERBLOCK_SIZE) {
            raw.fill(0);
        }
        put_u32(buf, 0, MAGIC);
        put_u32(buf, 4, self.format_version);
        put_u32(buf, 8, self.feature_compat);
        put_u32(buf, 12, self.feature_ro_compat);
        put_u32(buf, 16, self.feature_incompat);
        put_u32(buf, 20, BLOCK_SIZE_FIELD);
        put_u64(buf, 24, self.block_count);
        put_u64(buf, 32, self.free_blocks);
        put_u32(buf, 40, self.inode_count);
        put_u32(buf, 44, self.free_inodes);
        put_u32(buf, 48, self.root_ino);
        put_u32(buf, 52, self.state);
        put(buf, 56, &self.uuid);
        put(buf, 72, &self.label);
        put_u64(buf, 104, self.mkfs_time);
        put_u64(buf, 112, self.write_time);
        put_u32(buf, 120, self.mount_count);
        for (i, r) in self.regions.iter().enumerate() {
            if let Some(e) = record_mut(buf, REGION_TABLE, 16, i) {
                put_u64(e, 0, r.start);
                put_u64(e, 8, r.blocks);
            }
        }
        put_u32(buf, 288, self.vec_dim);
        put_u32(buf, 292, self.vec_metric);
        put_u64(buf, 296, self.vec_capacity);
        put_u32(buf, 304, self.vec_stride);
        put_u32(buf, 308, self.hnsw_m);
        put_u32(buf, 312, self.hnsw_ef_construction);
        put_u32(buf, 316, self.hnsw_max_level);
        put_u64(buf, 320, self.hnsw_seed);
        put_u64(buf, 328, self.backup_block);
        put_u32(buf, 336, self.sq8_shift as u32);
        put_u32(buf, 340, self.pq_m);
        let Some(body) = buf.get(..CSUM_OFF) else { return };
        let c = crc32c(body);
        put_u32(buf, CSUM_OFF, c);
    }

    /// Checks the geometry and parameters against each other and against a device of
    /// `device_blocks` blocks of [`BLOCK_SIZE`] bytes.
    ///
    /// Errors: `PastDeviceEnd` (EINVAL) when the device is too small; `Corrupt` (EUCLEAN) for
    /// a zero or impossible block count, regions that do not tile the device in order or are
    /// too small for the counts they must hold, bad inode or vector parameters.
    pub fn validate(&self, device_blocks: u64) -> Result<()> {
        let bad = |what: &'static str, value: u64| Err(FormatError::Corrupt { what, value });
        if self.block_count < MIN_BLOCKS || self.block_count > MAX_BLOCKS {
            return bad("block_count", self.block_count);
        }
        if self.block_count > device_blocks {
            return Err(FormatError::PastDeviceEnd { block_count: self.block_count, device_blocks });
        }
        if Some(self.backup_block) != self.block_count.checked_sub(1) {
            return bad("backup_block", self.backup_block);
        }
        if self.inode_count < 2 || u64::from(self.inode_count) % INODES_PER_BLOCK_U64 != 0 {
            return bad("inode_count", self.inode_count as u64);
        }
        if self.root_ino != ROOT_INO {
            return bad("root_ino", self.root_ino as u64);
        }
        if self.free_blocks > self.block_count {
            return bad("free_blocks", self.free_blocks);
        }
        if self.free_inodes > self.inode_count {
            return bad("free_inodes", self.free_inodes as u64);
        }
        if self.vec_dim == 0 || self.vec_dim > MAX_DIM {
            return bad("vec_dim", self.vec_dim as u64);
        }
        if self.metric().is_none() {
            return bad("vec_metric", self.vec_metric as u64);
        }
        if self.vec_stride as u64 != vec_stride_for(self.vec_dim) {
            return bad("vec_stride", self.vec_stride as u64);
        }
        if self.hnsw_m < MIN_M || self.hnsw_m > MAX_M {
            return bad("hnsw_m", self.hnsw_m as u64);
        }
        if self.hnsw_ef_construction == 0 || self.hnsw_ef_construction > MAX_EF_CONSTRUCTION {
            return bad("hnsw_ef_construction", self.hnsw_ef_construction as u64);
        }
        if self.hnsw_max_level > MAX_LEVEL {
            return bad("hnsw_max_level", self.hnsw_max_level as u64);
        }
        if self.vec_capacity > u32::MAX as u64 {
            return bad("vec_capacity", self.vec_capacity);
        }
        let sq8 = self.has_sq8();
        if sq8 && !(crate::sq8::MIN_SHIFT..=crate::sq8::MAX_SHIFT).contains(&self.sq8_shift)
            || !sq8 && self.sq8_shift != 0
        {
            return bad("sq8_shift", u64::from(self.sq8_shift as u32));
        }
        let pq = self.has_pq();
        if pq && (sq8 || !crate::pq::valid_m(self.vec_dim, self.pq_m)) || !pq && self.pq_m != 0 {
            return bad("pq_m", u64::from(self.pq_m));
        }
        let nodes = self.has_node_records();
        if nodes && (!pq || node_record_size(self.vec_dim, self.hnsw_m) > BLOCK_SIZE_U64) {
            return bad("node records (need PQ and a record of at most a block)", u64::from(self.feature_incompat));
        }
        let codes = sq8 || pq;
        // Regions tile 1 .. block_count - 1 in order (the codes only with SQ8 or PQ).
        let mut next = 1u64;
        for r in REGIONS {
            let e = self.region(r);
            if r == Region::VecCodes && !codes {
                if e != Extent64::default() {
                    return bad("vector codes region without SQ8 or PQ", e.start);
                }
                continue;
            }
            if e.start != next {
                return bad(region_start_name(r), e.start);
            }
            next = match e.start.checked_add(e.blocks) {
                Some(n) if n <= self.backup_block => n,
                _ => return bad(region_len_name(r), e.blocks),
            };
        }
        if next != self.backup_block {
            return bad("data region end", next);
        }
        let need = |r: Region, n: u64| -> Result<()> {
            if self.region(r).blocks < n {
                Err(FormatError::Corrupt { what: region_len_name(r), value: self.region(r).blocks })
            } else {
                Ok(())
            }
        };
        need(Region::BlockBitmap, self.block_count.div_ceil(BITS_PER_BLOCK))?;
        need(Region::InodeBitmap, u64::from(self.inode_count).div_ceil(BITS_PER_BLOCK))?;
        need(Region::InodeTable, u64::from(self.inode_count) / INODES_PER_BLOCK_U64)?;
        need(Region::Journal, super::journal::MIN_JOURNAL_BLOCKS)?;
        let v = vector_region_blocks(self.vec_capacity, self.vec_dim, self.hnsw_m, nodes);
        need(Region::VecBitmap, v[0])?;
        need(Region::VecMap, v[1])?;
        need(Region::VecData, v[2])?;
        need(Region::Hnsw, v[3])?;
        if sq8 {
            need(Region::VecCodes, crate::sq8::code_region_blocks(self.vec_capacity, self.vec_dim))?;
        }
        if pq {
            need(Region::VecCodes, crate::pq::code_region_blocks(self.vec_capacity, self.vec_dim, self.pq_m))?;
        }
        need(Region::Data, 1)?;
        Ok(())
    }

    /// Whether the filesystem keeps SQ8 codes ([`FEATURE_INCOMPAT_SQ8`]).
    pub fn has_sq8(&self) -> bool {
        self.feature_incompat & FEATURE_INCOMPAT_SQ8 != 0
    }

    /// Whether the filesystem keeps PQ codes ([`FEATURE_INCOMPAT_PQ`]).
    pub fn has_pq(&self) -> bool {
        self.feature_incompat & FEATURE_INCOMPAT_PQ != 0
    }

    /// Whether vectors and level-0 records lie together in node records
    /// ([`FEATURE_INCOMPAT_NODE_RECORDS`]).
    pub fn has_node_records(&self) -> bool {
        self.feature_incompat & FEATURE_INCOMPAT_NODE_RECORDS != 0
    }

    /// Blocks that hold HNSW records: the HNSW region's, and with node records the vector data
    /// region's too (each holds level-0 records). What caps the record blocks a transaction
    /// bound counts.
    pub fn graph_record_blocks(&self) -> u64 {
        let data = if self.has_node_records() { self.region(Region::VecData).blocks } else { 0 };
        self.region(Region::Hnsw).blocks.saturating_add(data)
    }

    /// Whether the filesystem keeps a code per vector (SQ8 or PQ) in the vector codes region,
    /// which searches walk before re-ranking with the float32 vectors.
    pub fn has_codes(&self) -> bool {
        self.has_sq8() || self.has_pq()
    }

    /// The vector regions as one run of blocks: from the vector bitmap's first block to the
    /// end of the HNSW region, or of the vector codes with SQ8 or PQ (they follow each other
    /// on disk: [`REGIONS`]).
    pub fn vector_regions(&self) -> Extent64 {
        let start = self.region(Region::VecBitmap).start;
        let end = if self.has_codes() { self.region(Region::VecCodes).end() } else { self.region(Region::Hnsw).end() };
        Extent64 { start, blocks: end.saturating_sub(start) }
    }

    /// Byte position of inode `ino` (1-based): (block, offset in block). `None` when `ino` is
    /// 0 or above `inode_count`.
    pub fn inode_pos(&self, ino: u64) -> Option<(u64, usize)> {
        if ino > u64::from(self.inode_count) {
            return None;
        }
        let idx = ino.checked_sub(1)?;
        let block = self.region(Region::InodeTable).start.checked_add(idx / INODES_PER_BLOCK_U64)?;
        let slot = usize::try_from(idx % INODES_PER_BLOCK_U64).ok()?;
        Some((block, slot.checked_mul(INODE_SIZE)?))
    }
}

fn region_start_name(r: Region) -> &'static str {
    match r {
        Region::Journal => "journal start",
        Region::BlockBitmap => "block bitmap start",
        Region::InodeBitmap => "inode bitmap start",
        Region::InodeTable => "inode table start",
        Region::VecBitmap => "vector bitmap start",
        Region::VecMap => "vector map start",
        Region::VecData => "vector data start",
        Region::Hnsw => "hnsw start",
        Region::Data => "data start",
        Region::VecCodes => "vector codes start",
    }
}

fn region_len_name(r: Region) -> &'static str {
    match r {
        Region::Journal => "journal length",
        Region::BlockBitmap => "block bitmap length",
        Region::InodeBitmap => "inode bitmap length",
        Region::InodeTable => "inode table length",
        Region::VecBitmap => "vector bitmap length",
        Region::VecMap => "vector map length",
        Region::VecData => "vector data length",
        Region::Hnsw => "hnsw length",
        Region::Data => "data length",
        Region::VecCodes => "vector codes length",
    }
}
