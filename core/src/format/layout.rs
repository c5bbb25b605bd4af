//! Computes the region layout of a new filesystem (used by mkfs and by tests).

use core::num::NonZeroU64;

use super::superblock::*;
use super::{BITS_PER_BLOCK, BLOCK_SIZE_U64, INODES_PER_BLOCK_U64};
use crate::error::{FormatError, Result};

/// What mkfs asks for. `None` fields take the documented defaults.
#[derive(Debug, Clone)]
pub struct MkfsParams {
    /// Device size in blocks.
    pub block_count: u64,
    /// Inodes; default one per 16 KiB of device (like mke2fs), at least 64, rounded up to a
    /// whole inode-table block.
    pub inode_count: Option<u32>,
    /// Journal blocks; default `block_count / 16` clamped to 1024..=65536 (4..256 MiB, as
    /// mke2fs grows ext4's with the device), and at most a quarter of the device (at least
    /// [`super::journal::MIN_JOURNAL_BLOCKS`]). 256 MiB holds the whole HNSW region of a
    /// million vectors at `m` 16 (174 MiB), which a bulk load's links phase dirties between
    /// two syncs: with 128 MiB, pydocs-1m's load committed 70 times instead of about 12 (22.6 s
    /// against 3.3 s). A
    /// transaction may take a quarter of the journal: a SET of `n` chunks needs
    /// `core::embed::set_blocks_bound` of it.
    pub journal_blocks: Option<u64>,
    /// Vector slots; default what fits in a quarter of the device.
    pub vec_capacity: Option<u64>,
    /// Vector dimension (1..=[`MAX_DIM`]).
    pub dim: u32,
    /// Distance metric of the vectors.
    pub metric: Metric,
    /// HNSW `m` (default 16).
    pub m: u32,
    /// HNSW `ef_construction` (default 200).
    pub ef_construction: u32,
    /// The filesystem's UUID.
    pub uuid: [u8; 16],
    /// Its label (UTF-8, NUL-padded).
    pub label: [u8; 32],
    /// Seconds since the epoch.
    pub now: u64,
    /// Seed of the HNSW level generator.
    pub seed: u64,
}

/// Default HNSW `m`.
pub const DEFAULT_M: u32 = 16;
/// Default HNSW `m` of a filesystem with node records (PQ, `FEATURE_INCOMPAT_NODE_RECORDS`)
/// when a record at this `m` fits in a block (up to 952 dimensions): a block read brings a
/// node's whole record, so a denser level 0 costs no more reads per expanded node (a 384-d
/// record takes half a block at `m` 16 and at 32 alike) and a walk needs fewer of them. Host
/// model (`bench_reads`, budget a tenth of the float32 index) on pydocs-1m, pq:96: recall@10
/// 0.95 at about 111 block reads per query at `m` 32, 104 at 48, 140 at 16; on glove-100
/// (100,000 x 100, not tuned on), pq:25: about 108 at 32 and 135 at 16. The bulk build of
/// pydocs-1m takes about 1.5 times as long as at 16.
pub const NODE_RECORDS_DEFAULT_M: u32 = 32;
/// Default HNSW `ef_construction`.
pub const DEFAULT_EF_CONSTRUCTION: u32 = 200;

/// Lays out a filesystem. Errors: `Corrupt` naming the parameter that cannot work (device too
/// small for the requested counts, dimension or `m` out of range).
pub fn layout(p: &MkfsParams) -> Result<Superblock> {
    layout_quant(p, Quant::None)
}

/// The codes a filesystem keeps for the traversal (mkfs's `--quant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quant {
    /// Float32 vectors only.
    #[default]
    None,
    /// SQ8 codes at this `sq8_shift` ([`FEATURE_INCOMPAT_SQ8`], `crate::sq8`).
    Sq8(i32),
    /// PQ codes of this many sub-quantisers (`FEATURE_INCOMPAT_PQ`, `crate::pq`), the vectors
    /// and level-0 records apart (the data and HNSW regions).
    Pq(u32),
    /// PQ codes of this many sub-quantisers, each vector and its level-0 record together in a
    /// node record (`FEATURE_INCOMPAT_NODE_RECORDS`, DiskANN's layout).
    PqNodes(u32),
}

/// [`layout`] with the codes of `q`: SQ8 as [`layout_codes`]; PQ sets the incompat feature
/// `FEATURE_INCOMPAT_PQ` and `pq_m`, and sizes the vector codes region for the codebook and
/// the codes ([`crate::pq::code_region_blocks`]). Errors: as [`layout_codes`]; `Corrupt`
/// naming `pq_m` when it does not cut the dimension ([`crate::pq::valid_m`]).
pub fn layout_quant(p: &MkfsParams, q: Quant) -> Result<Superblock> {
    match q {
        Quant::None => layout_codes(p, None),
        Quant::Sq8(s) => layout_codes(p, Some(s)),
        Quant::Pq(m) => layout_with(p, None, Some(m), false),
        Quant::PqNodes(m) => layout_with(p, None, Some(m), true),
    }
}

/// [`layout`], with SQ8 codes when `sq8_shift` is given: the incompat feature
/// [`FEATURE_INCOMPAT_SQ8`], that shift, and the vector codes region
/// ([`crate::sq8::code_region_blocks`]) between the HNSW region and the data (counted in the
/// default capacity's bytes per vector). Errors: as [`layout`]; `Corrupt` for a shift outside
/// [`crate::sq8::MIN_SHIFT`]`..=`[`crate::sq8::MAX_SHIFT`].
pub fn layout_codes(p: &MkfsParams, sq8_shift: Option<i32>) -> Result<Superblock> {
    layout_with(p, sq8_shift, None, false)
}

fn layout_with(p: &MkfsParams, sq8_shift: Option<i32>, pq_m: Option<u32>, nodes: bool) -> Result<Superblock> {
    let bad = |what: &'static str, value: u64| Err(FormatError::Corrupt { what, value });
    if p.block_count < MIN_BLOCKS || p.block_count > MAX_BLOCKS {
        return bad("block_count", p.block_count);
    }
    if p.dim == 0 || p.dim > MAX_DIM {
        return bad("vec_dim", u64::from(p.dim));
    }
    if p.m < MIN_M || p.m > MAX_M {
        return bad("hnsw_m", u64::from(p.m));
    }
    if p.ef_construction == 0 || p.ef_construction > MAX_EF_CONSTRUCTION {
        return bad("hnsw_ef_construction", u64::from(p.ef_construction));
    }
    if let Some(s) = sq8_shift.filter(|s| !(crate::sq8::MIN_SHIFT..=crate::sq8::MAX_SHIFT).contains(s)) {
        return bad("sq8_shift", u64::from(s as u32));
    }
    if let Some(m) = pq_m.filter(|&m| !crate::pq::valid_m(p.dim, m) || sq8_shift.is_some()) {
        return bad("pq_m", u64::from(m));
    }
    let codes = |capacity: u64| match (sq8_shift, pq_m) {
        (Some(_), _) => crate::sq8::code_region_blocks(capacity, p.dim),
        (None, Some(m)) => crate::pq::code_region_blocks(capacity, p.dim, m),
        (None, None) => 0,
    };
    let bits = BITS_PER_BLOCK;
    let per = INODES_PER_BLOCK_U64;
    let inodes = match p.inode_count {
        Some(n) => u64::from(n),
        // One per 16 KiB of device (`block_count <= MAX_BLOCKS`: no saturation).
        None => (p.block_count.saturating_mul(BLOCK_SIZE_U64) / 16384).max(64),
    };
    let inodes = inodes.div_ceil(per).saturating_mul(per);
    let inode_count = match u32::try_from(inodes) {
        Ok(n) if n >= 2 && inodes.saturating_add(per) <= u64::from(u32::MAX) => n,
        _ => return bad("inode_count", inodes),
    };
    let journal = p.journal_blocks.unwrap_or(
        (p.block_count / 16).clamp(1024, 65536).min(p.block_count / 4).max(super::journal::MIN_JOURNAL_BLOCKS),
    );
    if journal < super::journal::MIN_JOURNAL_BLOCKS {
        return bad("journal length", journal);
    }
    let capacity = match p.vec_capacity {
        Some(c) => c,
        None => {
            // Bytes per vector across the four vector regions, then a quarter of the device.
            let per_64k = sum(&vector_region_blocks(1 << 16, p.dim, p.m, nodes)).saturating_add(codes(1 << 16));
            let one = per_64k.saturating_mul(BLOCK_SIZE_U64) >> 16;
            (p.block_count / 4).saturating_mul(BLOCK_SIZE_U64) / NonZeroU64::new(one).unwrap_or(NonZeroU64::MIN)
        }
    };
    if capacity > u64::from(u32::MAX) {
        return bad("vec_capacity", capacity);
    }
    let v = vector_region_blocks(capacity, p.dim, p.m, nodes);
    // In region-table order (the data's length is set last).
    let sizes = [
        journal,
        p.block_count.div_ceil(bits),
        inodes.div_ceil(bits),
        inodes / per,
        v[0],
        v[1],
        v[2],
        v[3],
        0,
        codes(capacity),
    ];
    // The superblock, its backup, every region, and 16 blocks of data at least. A sum past
    // `u64::MAX` (absurd requested counts) is a device too small as well.
    let needed = sum(&sizes).saturating_add(2 + 16);
    if needed > p.block_count {
        return bad("device too small for the requested layout (blocks needed)", needed);
    }
    // From here every sum is below `block_count`: the saturating operations are exact.
    // Placed in on-disk order; without SQ8 the codes' entry stays zero.
    let mut regions = [Extent64::default(); REGION_COUNT];
    let mut next = 1u64;
    for r in REGIONS {
        if r == Region::VecCodes && sq8_shift.is_none() && pq_m.is_none() {
            continue;
        }
        let len = sizes.get(r as usize).copied().unwrap_or(0);
        if let Some(e) = regions.get_mut(r as usize) {
            *e = Extent64 { start: next, blocks: len };
        }
        next = next.saturating_add(len);
    }
    let backup = p.block_count.saturating_sub(1);
    if let Some(data) = regions.get_mut(Region::Data as usize) {
        *data = Extent64 { start: next, blocks: backup.saturating_sub(next) };
    }
    let Ok(vec_stride) = u32::try_from(vec_stride_for(p.dim)) else { return bad("vec_dim", u64::from(p.dim)) };
    let sb = Superblock {
        format_version: FORMAT_VERSION,
        feature_compat: 0,
        feature_ro_compat: 0,
        feature_incompat: match (sq8_shift, pq_m) {
            (Some(_), _) => FEATURE_INCOMPAT_SQ8,
            (None, Some(_)) if nodes => FEATURE_INCOMPAT_PQ | FEATURE_INCOMPAT_NODE_RECORDS,
            (None, Some(_)) => FEATURE_INCOMPAT_PQ,
            (None, None) => 0,
        },
        block_count: p.block_count,
        free_blocks: 0,
        inode_count,
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
        vec_stride,
        hnsw_m: p.m,
        hnsw_ef_construction: p.ef_construction,
        hnsw_max_level: MAX_LEVEL,
        hnsw_seed: p.seed,
        backup_block: backup,
        sq8_shift: sq8_shift.unwrap_or(0),
        pq_m: pq_m.unwrap_or(0),
    };
    sb.validate(p.block_count)?;
    Ok(sb)
}

/// The sum of `blocks`, saturating at `u64::MAX`.
fn sum(blocks: &[u64]) -> u64 {
    blocks.iter().fold(0u64, |acc, &b| acc.saturating_add(b))
}
