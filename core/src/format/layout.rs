//! Computes the region layout of a new filesystem (used by mkfs and by tests).

use super::superblock::*;
use super::{BLOCK_SIZE, INODES_PER_BLOCK};
use crate::error::{FormatError, Result};

/// What mkfs asks for. `None` fields take the documented defaults.
#[derive(Debug, Clone)]
pub struct MkfsParams {
    /// Device size in blocks.
    pub block_count: u64,
    /// Inodes; default one per 16 KiB of device (like mke2fs), at least 64, rounded up to a
    /// whole inode-table block.
    pub inode_count: Option<u32>,
    /// Journal blocks; default `block_count / 64` clamped to 64..=8192 (256 KiB..32 MiB).
    pub journal_blocks: Option<u64>,
    /// Vector slots; default what fits in a quarter of the device.
    pub vec_capacity: Option<u64>,
    /// Vector dimension (1..=[`MAX_DIM`]).
    pub dim: u32,
    pub metric: Metric,
    /// HNSW `m` (default 16).
    pub m: u32,
    /// HNSW `ef_construction` (default 200).
    pub ef_construction: u32,
    pub uuid: [u8; 16],
    pub label: [u8; 32],
    /// Seconds since the epoch.
    pub now: u64,
    /// Seed of the HNSW level generator.
    pub seed: u64,
}

/// Default HNSW `m`.
pub const DEFAULT_M: u32 = 16;
/// Default HNSW `ef_construction`.
pub const DEFAULT_EF_CONSTRUCTION: u32 = 200;

/// Lays out a filesystem. Errors: `Corrupt` naming the parameter that cannot work (device too
/// small for the requested counts, dimension or `m` out of range).
pub fn layout(p: &MkfsParams) -> Result<Superblock> {
    let bad = |what: &'static str, value: u64| Err(FormatError::Corrupt { what, value });
    if p.block_count < MIN_BLOCKS || p.block_count > MAX_BLOCKS {
        return bad("block_count", p.block_count);
    }
    if p.dim == 0 || p.dim > MAX_DIM {
        return bad("vec_dim", p.dim as u64);
    }
    if p.m < MIN_M || p.m > MAX_M {
        return bad("hnsw_m", p.m as u64);
    }
    if p.ef_construction == 0 || p.ef_construction > MAX_EF_CONSTRUCTION {
        return bad("hnsw_ef_construction", p.ef_construction as u64);
    }
    let bs = BLOCK_SIZE as u64;
    let bits = bs * 8;
    let per = INODES_PER_BLOCK as u64;
    let inodes = match p.inode_count {
        Some(n) => n as u64,
        None => (p.block_count * bs / 16384).max(64),
    };
    let inodes = inodes.div_ceil(per) * per;
    if inodes < 2 || inodes > u32::MAX as u64 - per {
        return bad("inode_count", inodes);
    }
    let journal = p.journal_blocks.unwrap_or((p.block_count / 64).clamp(64, 8192));
    if journal < super::journal::MIN_JOURNAL_BLOCKS {
        return bad("journal length", journal);
    }
    let fixed = 2 + journal + p.block_count.div_ceil(bits) + inodes.div_ceil(bits) + inodes / per;
    let capacity = match p.vec_capacity {
        Some(c) => c,
        None => {
            // Bytes per vector across the four vector regions, then a quarter of the device.
            let one = (vector_region_blocks(1 << 16, p.dim, p.m).iter().sum::<u64>() * bs) >> 16;
            (p.block_count / 4 * bs) / one.max(1)
        }
    };
    if capacity > u32::MAX as u64 {
        return bad("vec_capacity", capacity);
    }
    let v = vector_region_blocks(capacity, p.dim, p.m);
    let used = fixed + v.iter().sum::<u64>();
    if used + 16 > p.block_count {
        return bad("device too small for the requested layout (blocks needed)", used + 16);
    }
    let sizes = [journal, p.block_count.div_ceil(bits), inodes.div_ceil(bits), inodes / per, v[0], v[1], v[2], v[3], 0];
    let mut regions = [Extent64::default(); REGION_COUNT];
    let mut next = 1u64;
    for (r, len) in regions.iter_mut().zip(sizes) {
        *r = Extent64 { start: next, blocks: len };
        next += len;
    }
    let backup = p.block_count - 1;
    if let Some(data) = regions.get_mut(Region::Data as usize) {
        *data = Extent64 { start: next, blocks: backup - next };
    }
    let sb = Superblock {
        format_version: FORMAT_VERSION,
        feature_compat: 0,
        feature_ro_compat: 0,
        feature_incompat: 0,
        block_count: p.block_count,
        free_blocks: 0,
        inode_count: inodes as u32,
        free_inodes: 0,
        root_ino: ROOT_INO,
        state: STATE_CLEAN,
        uuid: p.uuid,
        label: p.label,
        mkfs_time: p.now,
        write_time: p.now,
        mount_count: 0,
        regions,
        vec_dim: p.dim,
        vec_metric: p.metric as u32,
        vec_capacity: capacity,
        vec_stride: vec_stride_for(p.dim) as u32,
        hnsw_m: p.m,
        hnsw_ef_construction: p.ef_construction,
        hnsw_max_level: MAX_LEVEL,
        hnsw_seed: p.seed,
        backup_block: backup,
    };
    sb.validate(p.block_count)?;
    Ok(sb)
}
