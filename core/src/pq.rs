//! PQ: product quantisation of the vectors (Jégou, Douze, Schmid, "Product quantization for
//! nearest neighbor search", TPAMI 2011) for the HNSW traversal of a filesystem made with the
//! incompat feature `PQ` (`mkfs.vexfs --quant pq:M`), as DiskANN walks its graph on in-memory
//! PQ codes and re-ranks with the full vectors (Subramanya et al., NeurIPS 2019).
//!
//! A vector of `dim` components is cut into `m` sub-vectors of `dsub = dim / m` components;
//! sub-quantiser `j` has 256 centroids of `dsub` float32s (the *codebook*, trained by mkfs on
//! the imported vectors), and the vector's code is `m` bytes, byte `j` the centroid nearest to
//! sub-vector `j` in squared Euclidean distance (the first of equals). A search builds the
//! query's table (`2 * m * 256 + m` words, [`table_words`]): per sub-quantiser and centroid
//! the squared distance (`l2`) or the dot product (`cosine`, `ip`) with the query's
//! sub-vector, the centroid's squared norm (`cosine`), and the sub-vector's squared norm; a
//! code's distance is then `m` look-ups and a sum ("asymmetric distance computation"). The
//! float work (tables, sums, keys, encoding) is the C code `vexfs_pq_*` in `core/csrc`, one
//! implementation for every CPU, run in an FPU section in the kernel: the kernel and the tools
//! compute the same codes and keys, bit for bit.
//!
//! Layout in the vector codes region (`crate::format::superblock::Region::VecCodes`): the
//! codebook first, sub-quantiser after sub-quantiser, each starting on a block:
//! [`codebook_blocks_per_sub`] blocks holding [`centroids_per_block`] centroids of `dsub * 4`
//! bytes (none crossing a block; the rest of a block zero); then the codes, `m` bytes each,
//! `4096 / m` per block, none crossing a block (the rest of a block zero).
//!
//! The graph of a filesystem with PQ is built on the full vectors (as DiskANN builds its
//! graph): the codes only steer searches, which re-rank their nearest candidates with the
//! float32 distances of the full vectors, so the distances a search returns are exact.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![deny(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use crate::format::superblock::{Region, Superblock};
use crate::format::BLOCK_SIZE_U64;
use crate::sq8::CodeGeometry;

/// Centroids per sub-quantiser (a code byte each).
pub const CENTROIDS: u32 = 256;
/// Most sub-quantisers (bytes per code).
pub const MAX_M: u32 = 256;
/// Most components per sub-quantiser (a centroid, `dsub * 4` bytes, fits a block).
pub const MAX_DSUB: u32 = 1024;

/// Whether `m` sub-quantisers can cut vectors of `dim` components: `1 <= m <= 256`, `m`
/// divides `dim`, and `dim / m <= 1024`.
pub const fn valid_m(dim: u32, m: u32) -> bool {
    match (dim.checked_rem(m), dim.checked_div(m)) {
        (Some(0), Some(dsub)) => m <= MAX_M && dsub >= 1 && dsub <= MAX_DSUB,
        _ => false,
    }
}

/// The `m` mkfs picks when `--quant pq` gives none: the largest divisor of `dim` that is at
/// most `dim / 4` (4 components per byte; 96 bytes for 384-d, 25 for 100-d) and at most 256,
/// and 1 for `dim < 8`. Measured on pydocs-100k (bench_search, ef 64-256): 8 components per
/// byte (m 48) lose 0.04-0.09 of recall@10 against float32 with a re-rank of 3k, 4 components
/// (m 96) 0.02 at ef 64 and under 0.02 from ef 128.
pub fn default_m(dim: u32) -> u32 {
    let cap = (dim / 4).clamp(1, MAX_M);
    let mut m = cap;
    while m > 1 && !valid_m(dim, m) {
        m = m.saturating_sub(1);
    }
    m
}

/// Centroids of `dsub` float32s one block holds, none crossing a block (at least 1).
pub const fn centroids_per_block(dsub: u32) -> u64 {
    match BLOCK_SIZE_U64.checked_div((dsub as u64).saturating_mul(4)) {
        Some(n) if n > 0 => n,
        _ => 1,
    }
}

/// Blocks of one sub-quantiser's 256 centroids of `dsub` components.
pub const fn codebook_blocks_per_sub(dsub: u32) -> u64 {
    (CENTROIDS as u64).div_ceil(centroids_per_block(dsub))
}

/// Blocks of the codebook for `m` sub-quantisers of vectors of `dim` components (0 when `m` is
/// not valid for `dim`).
pub const fn codebook_blocks(dim: u32, m: u32) -> u64 {
    if !valid_m(dim, m) {
        return 0;
    }
    match dim.checked_div(m) {
        Some(dsub) => (m as u64).saturating_mul(codebook_blocks_per_sub(dsub)),
        None => 0,
    }
}

/// Blocks of the vector codes region of a filesystem with PQ: the codebook, then `capacity`
/// codes of `m` bytes, `4096 / m` per block.
pub const fn code_region_blocks(capacity: u64, dim: u32, m: u32) -> u64 {
    let per = crate::sq8::codes_per_block(m as u64);
    let codes = match (capacity.checked_div(per), capacity.checked_rem(per)) {
        (Some(q), Some(r)) => q.saturating_add(if r != 0 { 1 } else { 0 }),
        _ => capacity,
    };
    codebook_blocks(dim, m).saturating_add(codes)
}

/// Table words per sub-quantiser: 256 first terms, 256 centroid norms, one query norm.
const TABLE_WORDS_PER_M: usize = 2 * CENTROIDS as usize + 1;

/// Words of a query's table for `m` sub-quantisers: `2 * m * 256 + m` (the first or only
/// term of each entry, the centroids' squared norms, the query's sub-vector norms).
pub const fn table_words(m: u32) -> usize {
    (m as usize).saturating_mul(TABLE_WORDS_PER_M)
}

/// Where the codebook and the codes of a filesystem with PQ lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PqGeometry {
    /// Sub-quantisers (bytes per code).
    pub m: u32,
    /// Components per sub-quantiser (`dim / m`).
    pub dsub: u32,
    /// First block of the codebook (the vector codes region's first block).
    pub codebook: u64,
    /// Blocks per sub-quantiser in the codebook.
    pub blocks_per_sub: u64,
    /// Centroids per codebook block.
    pub per_block: u64,
    /// Where the codes lie (after the codebook): `m` bytes each.
    pub codes: CodeGeometry,
}

impl PqGeometry {
    /// The geometry of `sb`'s PQ codebook and codes; `None` without the `PQ` feature or with an
    /// `m` that does not fit the dimension (a validated superblock never has one).
    pub fn new(sb: &Superblock) -> Option<PqGeometry> {
        if !sb.has_pq() || !valid_m(sb.vec_dim, sb.pq_m) {
            return None;
        }
        let (m, dsub) = (sb.pq_m, sb.vec_dim.checked_div(sb.pq_m)?);
        let codebook = sb.region(Region::VecCodes).start;
        Some(PqGeometry {
            m,
            dsub,
            codebook,
            blocks_per_sub: codebook_blocks_per_sub(dsub),
            per_block: centroids_per_block(dsub),
            codes: CodeGeometry {
                start: codebook.checked_add(codebook_blocks(sb.vec_dim, m))?,
                stride: usize::try_from(m).ok()?,
                per_block: crate::sq8::codes_per_block(u64::from(m)),
            },
        })
    }

    /// Where centroid `c` of sub-quantiser `j` lies: (device block, byte offset); its
    /// `dsub * 4` bytes never cross the block's end. `None` for `j >= m`, `c >= 256` or an
    /// overflow. Checked arithmetic only.
    pub fn centroid_pos(&self, j: u32, c: u32) -> Option<(u64, usize)> {
        if j >= self.m || c >= CENTROIDS {
            return None;
        }
        let c = u64::from(c);
        let blk = u64::from(j)
            .checked_mul(self.blocks_per_sub)?
            .checked_add(c.checked_div(self.per_block)?)?
            .checked_add(self.codebook)?;
        let off = c.checked_rem(self.per_block)?.checked_mul(u64::from(self.dsub))?.checked_mul(4)?;
        Some((blk, usize::try_from(off).ok()?))
    }
}

/// Whether `qq`, the `|q|^2` bits a PQ table call returned, is not NaN: the sum of squares of
/// a finite sub-vector never is, and the kernel's FPU glue answers NaN everywhere when it
/// could not run the C code (no usable FPU, a batch past a block), as userspace does past a
/// block. Integer only.
pub const fn table_ran(qq: u32) -> bool {
    qq & 0x7fff_ffff <= 0x7f80_0000
}

/// The PQ code of `vector` (`dim` float bit patterns) into `out[..m]` with a codebook held in
/// memory (`codebook`: `m * 256 * dsub` float bit patterns, centroid `c` of sub-quantiser `j`
/// at `(j * 256 + c) * dsub`): the same C distances and the same rule (the nearest centroid
/// by squared Euclidean distance, the first of equals) as the index's encoder
/// (`crate::vindex::VecIndex::write_code`), so the same bytes. For the tools (`fsck.vexfs`).
/// Returns `false`, writing nothing, when a length does not fit `dim` and `m`.
#[cfg(feature = "std")]
pub fn encode(
    dist: &dyn crate::distance::DistanceKernel,
    codebook: &[u32],
    dim: u32,
    m: u32,
    vector: &[u32],
    out: &mut [u8],
) -> bool {
    if !valid_m(dim, m) || vector.len() != dim as usize || out.len() < m as usize {
        return false;
    }
    let Some(dsub32) = dim.checked_div(m) else { return false };
    let (dsub, n) = (dsub32 as usize, CENTROIDS as usize);
    if codebook.len() != (m as usize).saturating_mul(n).saturating_mul(dsub) {
        return false;
    }
    // The index's batches: a codebook block's centroids at a time, in runs of 32 (so each
    // centroid goes through the same lane or tail of the C code as in the kernel).
    let per_block = usize::try_from(centroids_per_block(dsub32)).unwrap_or(1).max(1);
    let (mut prim, mut norm) = ([0u32; 32], [0u32; 32]);
    for (j, (sub, o)) in vector.chunks_exact(dsub).zip(out.iter_mut()).enumerate() {
        let base = j.saturating_mul(n).saturating_mul(dsub);
        let mut best = (u32::MAX, 0u8);
        for first in (0..n).step_by(per_block) {
            let in_blk = per_block.min(n.saturating_sub(first));
            for k in (0..in_blk).step_by(32) {
                let len = in_blk.saturating_sub(k).min(32);
                let c0 = first.saturating_add(k);
                let at = base.saturating_add(c0.saturating_mul(dsub));
                let cents = codebook.get(at..at.saturating_add(len.saturating_mul(dsub)));
                let (Some(cents), Some(pr), Some(nr)) = (cents, prim.get_mut(..len), norm.get_mut(..len)) else {
                    return false;
                };
                // SAFETY: `sub` is `dsub` words of `vector`, `cents` `len` centroids of `dsub`
                // words (at most a block's: `len <= per_block`), borrowed for the call.
                let qq =
                    unsafe { dist.pq_table(crate::distance::METRIC_L2, dsub32, sub.as_ptr(), cents.as_ptr(), pr, nr) };
                if !table_ran(qq) {
                    return false;
                }
                for (i, &d) in pr.iter().enumerate() {
                    if d < best.0 {
                        best = (d, u8::try_from(c0.saturating_add(i)).unwrap_or(u8::MAX));
                    }
                }
            }
        }
        *o = best.1;
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::arithmetic_side_effects)]
    use super::*;

    #[test]
    fn sizes() {
        assert!(valid_m(384, 48) && valid_m(100, 25) && valid_m(4, 4) && valid_m(1024, 1));
        assert!(!valid_m(384, 0) && !valid_m(384, 7) && !valid_m(4096, 2) && !valid_m(512, 512) && !valid_m(0, 4));
        assert_eq!(default_m(384), 96);
        assert_eq!(default_m(100), 25);
        assert_eq!(default_m(8), 2);
        assert_eq!(default_m(6), 1);
        assert_eq!(default_m(4096), 256);
        assert_eq!(centroids_per_block(8), 128);
        assert_eq!(codebook_blocks_per_sub(8), 2);
        assert_eq!(codebook_blocks(384, 48), 96);
        assert_eq!(codebook_blocks(100, 25), 25);
        assert_eq!(centroids_per_block(1024), 1);
        assert_eq!(codebook_blocks(1024, 1), 256);
        // 85 codes of 48 bytes per block: 1,000 codes take 12 blocks.
        assert_eq!(code_region_blocks(1000, 384, 48), 96 + 12);
        assert_eq!(table_words(48), 48 * 513);
    }

    #[test]
    fn centroid_positions() {
        let g = PqGeometry {
            m: 48,
            dsub: 8,
            codebook: 1000,
            blocks_per_sub: 2,
            per_block: 128,
            codes: CodeGeometry { start: 1096, stride: 48, per_block: 85 },
        };
        assert_eq!(g.centroid_pos(0, 0), Some((1000, 0)));
        assert_eq!(g.centroid_pos(0, 127), Some((1000, 127 * 32)));
        assert_eq!(g.centroid_pos(0, 128), Some((1001, 0)));
        assert_eq!(g.centroid_pos(47, 255), Some((1095, 127 * 32)));
        assert_eq!(g.centroid_pos(48, 0), None);
        assert_eq!(g.centroid_pos(0, 256), None);
        assert_eq!(g.codes.pos(85), Some((1097, 0)));
    }
}
