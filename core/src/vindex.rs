//! The on-disk vector index: slots, the vector map, vector data and the HNSW graph in their
//! regions, read and written through a [`BlockStore`], distances computed by a
//! [`DistanceKernel`] passed in as a value. The kernel supplies its buffer cache and FPU glue;
//! the tools an image file and [`crate::distance::Impl`]. Both run this code, so both build and
//! search the same graph. Errors are [`IndexError`]s: the store's own errors wrapped, and the
//! corruption the index finds built from [`FormatError`].
//!
//! Locking is the caller's: one [`VecIndex`] operation at a time per filesystem.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![deny(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use crate::distance::DistanceKernel;
use crate::error::{FormatError, Result as FResult};
use crate::format::le::{put_count, put_u32, u16_at, u32_at};
use crate::format::superblock::{Region, Superblock};
use crate::format::vector::{
    HnswGeometry, HnswHeader, Level0Head, MapEntry, UpperTable, MAP_ENTRY, NODE_DELETED, NODE_IN_GRAPH, NODE_PENDING,
    NO_SLOT,
};
use crate::format::{bit_find_clear, bit_set, bit_test, BITS_PER_BLOCK, BLOCK_SIZE, BLOCK_SIZE_U64};
use crate::hnsw::{self, Knn, Params, Scratch, Store, Visited};
use crate::index_error::{IResult, IndexError};
use crate::io::BlockStore;
use crate::pq;
use crate::sq8;

/// Vectors fetched per distance batch (and the bounce buffers a caller provides).
pub const BATCH: usize = 32;
/// Vectors the bounce memory holds: a batch, one spare, and the base of a pair batch.
const BOUNCE_SLOTS: usize = BATCH + 2;
/// The bounce slot of the base vector of [`Store::dist_pair`].
const PAIR_SLOT: usize = BATCH + 1;
/// [`MAP_ENTRY`] as a `u64`.
const MAP_ENTRY_U64: u64 = MAP_ENTRY as u64;

/// Block `n` of `b` for reading, its error wrapped.
fn rd<B: BlockStore>(b: &B, n: u64) -> IResult<B::Ref<'_>, B::Error> {
    b.read(n).map_err(IndexError::Io)
}

/// Block `n` of `b` for changing, its error wrapped.
fn wr<B: BlockStore>(b: &B, n: u64) -> IResult<B::RefMut<'_>, B::Error> {
    b.write(n).map_err(IndexError::Io)
}

/// `bytes[at .. at + len]`, or the invariant error `what`: positions computed from the
/// geometry always lie inside their block, so a miss is a bug, never silently skipped.
///
/// Errors here are built lazily (`ok_or_else`): an [`IndexError`] over the caller's storage
/// error may have a destructor, which an eager `ok_or` runs on every success (measured: 5% of
/// a search's instructions).
fn span<'b, E>(bytes: &'b [u8], at: usize, len: usize, what: &'static str) -> IResult<&'b [u8], E> {
    at.checked_add(len).and_then(|end| bytes.get(at..end)).ok_or_else(|| IndexError::Invalid(what))
}

/// As [`span`], for changing.
fn span_mut<'b, E>(bytes: &'b mut [u8], at: usize, len: usize, what: &'static str) -> IResult<&'b mut [u8], E> {
    at.checked_add(len).and_then(|end| bytes.get_mut(at..end)).ok_or_else(|| IndexError::Invalid(what))
}

/// Block and in-block byte offset of byte `pos` of a region that starts at block `start`;
/// `None` when the block number overflows (never for a validated superblock, whose regions end
/// below 2^40 blocks).
fn byte_pos(start: u64, pos: u64) -> Option<(u64, usize)> {
    let blk = start.checked_add(pos / BLOCK_SIZE_U64)?;
    let off = usize::try_from(pos % BLOCK_SIZE_U64).ok()?;
    Some((blk, off))
}

/// The corruption error for a position of `slot` in the structure `what` that the
/// superblock's figures put past `u64` (a superblock that was not validated).
fn bad_pos(what: &'static str, slot: u32) -> FormatError {
    FormatError::Corrupt { what, value: u64::from(slot) }
}

/// The first two cache lines of `v` (the part of a vector in one block) asked for through the
/// store (`BlockStore::prefetch_memory`): the second only when `v` reaches it.
#[inline]
fn prefetch_two_lines<B: BlockStore>(b: &B, v: &[u8]) {
    b.prefetch_memory(v.as_ptr());
    if let Some(line) = v.get(64..) {
        b.prefetch_memory(line.as_ptr());
    }
}

/// Vector `i` of bounce memory made of vectors of `words` words; `None` past its end.
fn bounce_slot(bounce: &mut [u32], words: usize, i: usize) -> Option<&mut [u32]> {
    let start = i.checked_mul(words)?;
    bounce.get_mut(start..start.checked_add(words)?)
}

/// Memory the caller provides: the HNSW scratch, and bounce buffers for vectors that cross a
/// block boundary and are not read in place in two parts (a pair's base vector, a vector of
/// more than a block).
pub struct IndexScratch<'a> {
    /// The candidate pool and link scratch of the graph algorithms.
    pub hnsw: Scratch<'a>,
    /// [`IndexScratch::bounce_len`] words: `BATCH + 2` vectors of `stride / 4` words (a
    /// distance batch, one spare, and the base vector of a pair batch).
    pub bounce: &'a mut [u32],
}

impl IndexScratch<'_> {
    /// Words of `bounce` needed for vectors of `stride` bytes: `(BATCH + 2) * stride / 4`
    /// (at most `34 * 2^30`: exact on 64-bit targets, saturating on 32-bit ones).
    pub const fn bounce_len(stride: u32) -> usize {
        (stride as usize / 4).saturating_mul(BOUNCE_SLOTS)
    }

    /// Words of `bounce` a search of `sb`'s index needs: [`Self::bounce_len`], plus the
    /// query's PQ table ([`pq::table_words`]: 49,248 words, 197 KiB, for `m` 96) with PQ. Every
    /// search pad has it (the kernel keeps one per mount and up to one per CPU in its pool),
    /// outside the `index_mem=` budget, which caps the index's blocks.
    pub fn bounce_len_for(sb: &Superblock) -> usize {
        let table = if sb.has_pq() { pq::table_words(sb.pq_m) } else { 0 };
        Self::bounce_len(sb.vec_stride).saturating_add(table)
    }
}

/// The index of one filesystem: geometry from the superblock, the per-slot upper-record table,
/// and the cached header.
pub struct VecIndex<'t> {
    /// Where the HNSW header and records lie.
    pub geo: HnswGeometry,
    /// The HNSW header as the last operation left it (each change writes it back).
    pub header: HnswHeader,
    /// Components (float32) per vector.
    pub dim: u32,
    /// The distance metric (the superblock's `vec_metric`).
    pub metric: u32,
    /// Vector slots.
    pub capacity: u64,
    /// `m` and `ef_construction`.
    pub params: Params,
    bitmap_start: u64,
    map_start: u64,
    /// `u32` words per slot (`stride / 4`): the size of a bounce vector.
    words: usize,
    /// Bytes of a vector (`4 * dim`).
    vec_bytes: usize,
    /// Bytes of a level-0 record (`usize::MAX`, which no block holds, if it does not fit).
    level0_size: usize,
    /// `upper[s]` = first upper record of slot `s`; its level is `upper[s + 1] - upper[s]`.
    upper: &'t [u32],
    /// Where the next free-slot search starts.
    pub hint: u64,
    /// Whether the tombstone checks answer "live" unread ([`Self::skip_tombstone_reads`]).
    no_tombstones: bool,
    /// Whether [`Self::remove`] purges the tombstones itself when its policy says so
    /// ([`purge_wanted`]); the kernel turns it off and purges in steps from its index worker
    /// ([`Self::repair_node`], [`Self::free_tombstone`]). On by default.
    pub auto_purge: bool,
    /// Whole purges ([`Self::purge`]) run by this value: a purge in steps that sees it change
    /// starts over (the slots it meant to free may have been freed and reused meanwhile).
    pub purges: u32,
    /// The distance kernel.
    dist: &'t dyn DistanceKernel,
    /// Where the codes lie, when the filesystem keeps them (SQ8's, or PQ's after the codebook).
    codes: Option<sq8::CodeGeometry>,
    /// The PQ codebook and codes (`FEATURE_INCOMPAT_PQ`).
    pq: Option<pq::PqGeometry>,
    /// The superblock's `sq8_shift` (the scale of the codes).
    code_shift: i32,
    /// SQ8 codes of every slot held in memory for building only
    /// ([`Self::set_build_codes`]): a float32 graph built on code distances.
    build_codes: Option<&'t [u8]>,
}

/// Whether the tombstones of a graph with header `h` should be purged: they are at least a
/// quarter of the graph (and at least 16), or no live vector is left while some are.
pub fn purge_wanted(h: &HnswHeader) -> bool {
    // u32 counts in u64s: the product and the sum are exact.
    let (live, deleted) = (u64::from(h.live), u64::from(h.deleted));
    deleted > 0 && (deleted.saturating_mul(4) >= live.saturating_add(deleted) && deleted >= 16 || live == 0)
}

/// Fills `table` (`capacity + 1` entries) with the first upper record of each slot: the
/// `upper` table of [`VecIndex`]. Errors: `Truncated` if `table` is too short; `Corrupt` for a
/// capacity this machine cannot address.
pub fn fill_upper_table(sb: &Superblock, table: &mut [u32]) -> FResult<()> {
    let n = usize::try_from(sb.vec_capacity)
        .map_err(|_| FormatError::Corrupt { what: "vector capacity", value: sb.vec_capacity })?;
    if table.len() <= n {
        return Err(FormatError::Truncated { what: "upper table", len: table.len() });
    }
    let mut last = 0u32;
    UpperTable::walk(sb, |s, level, first| {
        if let Some(t) = table.get_mut(s as usize) {
            *t = first;
        }
        // The walk keeps `first + level` within u32 (records past it count as run out): exact.
        last = first.saturating_add(u32::from(level));
    });
    if let Some(t) = table.get_mut(n) {
        *t = last;
    }
    Ok(())
}

/// `Corrupt` unless `slot` is below `capacity` (the superblock's `vec_capacity`): a slot
/// number read from disk or given by a caller, checked before any position is computed from it.
#[inline]
pub(crate) fn check_slot(capacity: u64, slot: u32) -> FResult<()> {
    if u64::from(slot) < capacity {
        Ok(())
    } else {
        Err(FormatError::Corrupt { what: "vector slot number", value: u64::from(slot) })
    }
}

/// Whether the connections back of a batch may run on several threads, each reading only the
/// level-0 record blocks it writes: when the header counts no tombstone, the heuristic's
/// tombstone checks need no other node's record ([`VecIndex::skip_tombstone_reads`]).
pub fn connects_apart(h: &HnswHeader) -> bool {
    h.deleted == 0
}

impl<'t> VecIndex<'t> {
    /// Opens the index of a validated superblock: reads and checks the header. `upper` comes
    /// from [`fill_upper_table`].
    pub fn open<B: BlockStore>(
        b: &B,
        sb: &Superblock,
        upper: &'t [u32],
        dist: &'t dyn DistanceKernel,
    ) -> IResult<Self, B::Error> {
        let geo = HnswGeometry::new(sb);
        let header = HnswHeader::decode(&rd(b, geo.header)?, geo.header).map_err(IndexError::Corrupt)?;
        let ix = Self::with_header(sb, upper, header, 0, dist);
        if (upper.len() as u64).checked_sub(1) != Some(sb.vec_capacity) {
            return Err(IndexError::Invalid("upper table size"));
        }
        if header.entry != NO_SLOT {
            let h = ix.head(b, header.entry)?;
            if h.flags != NODE_IN_GRAPH || u32::from(h.level) != header.entry_level {
                return Err(IndexError::Corrupt(FormatError::Corrupt {
                    what: "hnsw entry point",
                    value: header.entry as u64,
                }));
            }
        } else if header.live != 0 {
            return Err(IndexError::Corrupt(FormatError::Corrupt {
                what: "hnsw live count without entry point",
                value: header.live as u64,
            }));
        }
        // Three u32 counts in a u64: the sum is exact.
        let used =
            u64::from(header.live).saturating_add(u64::from(header.deleted)).saturating_add(u64::from(header.pending));
        if used > sb.vec_capacity {
            return Err(IndexError::Corrupt(FormatError::Corrupt {
                what: "hnsw vector counts",
                value: header.live as u64,
            }));
        }
        Ok(ix)
    }

    /// The index with a header already read by [`Self::open`] (no I/O): for callers that keep
    /// `header` and `hint` between operations.
    pub fn with_header(
        sb: &Superblock,
        upper: &'t [u32],
        header: HnswHeader,
        hint: u64,
        dist: &'t dyn DistanceKernel,
    ) -> Self {
        let geo = HnswGeometry::new(sb);
        VecIndex {
            geo,
            header,
            dim: sb.vec_dim,
            metric: sb.vec_metric,
            capacity: sb.vec_capacity,
            params: Params { m: sb.hnsw_m, ef_construction: sb.hnsw_ef_construction },
            bitmap_start: sb.region(Region::VecBitmap).start,
            map_start: sb.region(Region::VecMap).start,
            words: (sb.vec_stride / 4) as usize,
            // Exact on 64-bit targets (a validated dim is at most 4096).
            vec_bytes: (sb.vec_dim as usize).saturating_mul(4),
            level0_size: usize::try_from(geo.level0_size).unwrap_or(usize::MAX),
            upper,
            hint,
            no_tombstones: false,
            auto_purge: true,
            purges: 0,
            dist,
            codes: match pq::PqGeometry::new(sb) {
                Some(p) => Some(p.codes),
                None => sq8::CodeGeometry::new(sb),
            },
            pq: pq::PqGeometry::new(sb),
            code_shift: sb.sq8_shift,
            build_codes: None,
        }
    }

    /// Whether the index keeps codes (SQ8 or PQ) and searches walk the graph on them.
    pub fn has_codes(&self) -> bool {
        self.codes.is_some()
    }

    /// Candidates a search re-ranks per result wanted: [`SQ8_RERANK_PER_K`] or
    /// [`PQ_RERANK_PER_K`], or with node records every candidate of the list (`usize::MAX`:
    /// a search expanded each, so their vectors came with their records, as DiskANN re-ranks);
    /// ignored without codes.
    pub fn rerank_per_k(&self) -> usize {
        if self.geo.node_records {
            usize::MAX
        } else if self.pq.is_some() {
            PQ_RERANK_PER_K
        } else {
            SQ8_RERANK_PER_K
        }
    }

    /// Whether the graph is built on the codes (SQ8's, or the transient ones of
    /// [`Self::set_build_codes`]; a PQ graph is built on the full vectors, as DiskANN's).
    fn build_on_codes(&self) -> bool {
        self.build_codes.is_some() || self.codes.is_some() && self.pq.is_none()
    }

    /// Builds the graph of a filesystem without codes on SQ8 codes held in memory: the
    /// inserts' searches and their neighbour selection compare the codes' integer distances
    /// (as with `FEATURE_INCOMPAT_SQ8`), while searches, the distances they return and the
    /// format stay float32. `table` holds the code of slot `s` at `s * stride`, `stride` =
    /// [`build_code_stride`]`(dim)` bytes ([`sq8::quantise`] at one shift for all, the padding
    /// zero), for every slot an insert may meet: the slot inserted and the graph's nodes
    /// (tombstones included). The bulk loader's (`mkfs.vexfs --import`); the kernel never sets
    /// one. Errors: `Invalid` when the filesystem keeps codes of its own or `table` is shorter
    /// than `capacity * stride`.
    pub fn set_build_codes<E>(&mut self, table: &'t [u8]) -> IResult<(), E> {
        if self.codes.is_some() {
            return Err(IndexError::Invalid("build codes on a filesystem with codes"));
        }
        let need = usize::try_from(self.capacity)
            .ok()
            .and_then(|c| c.checked_mul(build_code_stride(self.dim)))
            .ok_or_else(|| IndexError::Invalid("build codes size"))?;
        if table.len() < need {
            return Err(IndexError::Invalid("build codes size"));
        }
        self.build_codes = Some(table);
        Ok(())
    }

    /// The SQ8 code of `slot` that the graph is built on ([`Self::build_on_codes`]): from the
    /// transient table, else from the block of the codes region that holds it; `None` when
    /// the graph is built on the float vectors.
    #[allow(clippy::type_complexity)]
    fn build_code<'b, B: BlockStore>(
        &self,
        b: &'b B,
        slot: u32,
    ) -> IResult<Option<BuildCode<'t, B::Ref<'b>>>, B::Error> {
        if let Some(t) = self.build_codes {
            self.check_slot(slot)?;
            return Ok(Some(BuildCode::Table(table_code(t, self.dim, slot)?)));
        }
        if !self.build_on_codes() {
            return Ok(None);
        }
        Ok(self.code_ref(b, slot)?.map(|(r, off, len)| BuildCode::Block(r, off, len)))
    }

    /// Checks the PQ codebook (every centroid finite); nothing without PQ. Reads its blocks
    /// (`m * blocks_per_sub`: 96 for 384-d at `m` 48). Errors: `Corrupt` naming the first
    /// block with a NaN or an infinity; the store's.
    pub fn check_codebook<B: BlockStore>(&self, b: &B) -> IResult<(), B::Error> {
        let Some(p) = self.pq else { return Ok(()) };
        for j in 0..p.m {
            self.pq_blocks(b, &p, j, |blk, _, _, bytes| {
                // A float whose exponent bits are all ones is a NaN or an infinity. A slice
                // pattern, not a copy: no length-mismatch panic path for objtool to flag.
                let bad = bytes.chunks_exact(4).any(|w| match *w {
                    [b0, b1, b2, b3] => u32::from_le_bytes([b0, b1, b2, b3]) & 0x7f80_0000 == 0x7f80_0000,
                    _ => false,
                });
                if bad {
                    return Err(IndexError::Corrupt(FormatError::Corrupt { what: "pq codebook centroid", value: blk }));
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Walks the codebook blocks of sub-quantiser `j` in order: `each(blk, c, n, cents)` gets
    /// the block's number, the first centroid `c` it holds, how many of the sub-quantiser's it
    /// holds (`n`), and their bytes (`n * dsub` float32s, contiguous, 4-byte aligned, in the
    /// held block) while `each` runs. Errors: `Corrupt` for a centroid position outside the
    /// region; `each`'s; the store's.
    fn pq_blocks<B: BlockStore>(
        &self,
        b: &B,
        p: &pq::PqGeometry,
        j: u32,
        mut each: impl FnMut(u64, usize, usize, &[u8]) -> IResult<(), B::Error>,
    ) -> IResult<(), B::Error> {
        let (dsub, per_sub) = (p.dsub as usize, pq::CENTROIDS as usize);
        let mut c = 0usize;
        while c < per_sub {
            let cid = u32::try_from(c).map_err(|_| bad_pos("pq centroid position", j))?;
            let (blk, off) = p.centroid_pos(j, cid).ok_or_else(|| bad_pos("pq centroid position", j))?;
            let r = rd(b, blk)?;
            let n = usize::try_from(p.per_block).unwrap_or(1).min(per_sub.saturating_sub(c)).max(1);
            let cents = span(&r, off, n.saturating_mul(dsub).saturating_mul(4), "pq centroid position")?;
            each(blk, c, n, cents)?;
            c = c.saturating_add(n);
        }
        Ok(())
    }

    /// The PQ code of `vector` (`dim` float bit patterns) into `out[..m]`: per sub-quantiser
    /// the nearest centroid by the C kernel's squared Euclidean distance (`vexfs_pq_table`,
    /// the same bits on every CPU), the first of equals. Reads the codebook's blocks. Errors:
    /// `Invalid` for a short `vector` or `out`; the store's.
    fn pq_encode<B: BlockStore>(
        &self,
        b: &B,
        p: &pq::PqGeometry,
        vector: &[u32],
        out: &mut [u8],
    ) -> IResult<(), B::Error> {
        let dsub = p.dsub as usize;
        let (mut prim, mut norm) = ([0u32; BATCH], [0u32; BATCH]);
        for j in 0..p.m {
            let start = (j as usize).saturating_mul(dsub);
            let sub =
                vector.get(start..start.saturating_add(dsub)).ok_or_else(|| IndexError::Invalid("vector dimension"))?;
            let mut best = (u32::MAX, 0u8);
            self.pq_blocks(b, p, j, |_, c, n, bytes| {
                let cents = bytes.as_ptr().cast::<u32>();
                // A batch at a time (a small stack), each batch one FPU section in the kernel.
                let mut k = 0usize;
                while k < n {
                    let len = n.saturating_sub(k).min(BATCH);
                    let (Some(pr), Some(nr)) = (prim.get_mut(..len), norm.get_mut(..len)) else {
                        return Err(IndexError::Invalid("pq batch"));
                    };
                    // SAFETY: `sub` holds `dsub` words; `cents` points at `n * dsub` words held for
                    // this call (`pq_blocks`), of which centroids `k .. k + len` lie inside.
                    let qq = unsafe {
                        let at = cents.add(k.saturating_mul(dsub));
                        self.dist.pq_table(crate::distance::METRIC_L2, p.dsub, sub.as_ptr(), at, pr, nr)
                    };
                    fpu_answered(qq)?;
                    for (i, &d) in pr.iter().enumerate() {
                        // Squared distances are non-negative floats (NaN's bits above
                        // infinity's): their bits order as their values.
                        if d < best.0 {
                            best = (d, u8::try_from(c.saturating_add(k).saturating_add(i)).unwrap_or(u8::MAX));
                        }
                    }
                    k = k.saturating_add(len);
                }
                Ok(())
            })?;
            *out.get_mut(j as usize).ok_or_else(|| IndexError::Invalid("pq code buffer"))? = best.1;
        }
        Ok(())
    }

    /// The query's PQ table into `table` ([`pq::table_words`] words, `crate::pq`), by the C
    /// kernel, a codebook block per call (one FPU section each in the kernel). Errors:
    /// `Invalid` for a short `query` or `table`; the store's.
    fn pq_query_table<B: BlockStore>(
        &self,
        b: &B,
        p: &pq::PqGeometry,
        query: &[u32],
        table: &mut [u32],
    ) -> IResult<(), B::Error> {
        let (dsub, m) = (p.dsub as usize, p.m as usize);
        let per_sub = pq::CENTROIDS as usize;
        let table = table.get_mut(..pq::table_words(p.m)).ok_or_else(|| IndexError::Invalid("pq table"))?;
        let (prim_all, rest) = table.split_at_mut(m.saturating_mul(per_sub));
        let (norm_all, qq_all) = rest.split_at_mut(m.saturating_mul(per_sub));
        for j in 0..p.m {
            let ju = j as usize;
            let start = ju.saturating_mul(dsub);
            let sub =
                query.get(start..start.saturating_add(dsub)).ok_or_else(|| IndexError::Invalid("query dimension"))?;
            let row = ju.saturating_mul(per_sub);
            let mut qq = 0u32;
            self.pq_blocks(b, p, j, |_, c, n, bytes| {
                let cents = bytes.as_ptr().cast::<u32>();
                let at = row.saturating_add(c);
                let end = at.saturating_add(n);
                let (Some(pd), Some(nd)) = (prim_all.get_mut(at..end), norm_all.get_mut(at..end)) else {
                    return Err(IndexError::Invalid("pq table"));
                };
                // SAFETY: `sub` holds `dsub` words; `cents` points at `n * dsub` words held for
                // this call (`pq_blocks`); `pd` and `nd` hold `n` words each.
                qq = unsafe { self.dist.pq_table(self.metric, p.dsub, sub.as_ptr(), cents, pd, nd) };
                fpu_answered(qq)
            })?;
            *qq_all.get_mut(ju).ok_or_else(|| IndexError::Invalid("pq table"))? = qq;
        }
        Ok(())
    }

    /// (block, offset) of the code (SQ8 or PQ) of `slot`, and its length; `None` without codes.
    fn code_pos(&self, slot: u32) -> FResult<Option<(u64, usize, usize)>> {
        let Some(c) = self.codes else { return Ok(None) };
        let (blk, off) = c.pos(u64::from(slot)).ok_or_else(|| bad_pos("vector code position", slot))?;
        Ok(Some((blk, off, c.stride)))
    }

    /// The block holding the code (SQ8 or PQ) of `slot`, with the code's offset and length;
    /// `None` without codes.
    #[allow(clippy::type_complexity)]
    fn code_ref<'b, B: BlockStore>(
        &self,
        b: &'b B,
        slot: u32,
    ) -> IResult<Option<(B::Ref<'b>, usize, usize)>, B::Error> {
        self.check_slot(slot)?;
        match self.code_pos(slot)? {
            Some((blk, off, len)) => Ok(Some((rd(b, blk)?, off, len))),
            None => Ok(None),
        }
    }

    /// Writes the code (SQ8, or PQ by the codebook) of `vector` (`dim` float bit patterns) as
    /// the code of `slot` (nothing without codes): what storing a vector does, and what `fsck.vexfs -y` does to a
    /// code that does not match its vector.
    pub fn write_code<B: BlockStore>(&self, b: &B, slot: u32, vector: &[u32]) -> IResult<(), B::Error> {
        self.check_slot(slot)?;
        let Some((blk, off, len)) = self.code_pos(slot)? else { return Ok(()) };
        if let Some(p) = self.pq {
            // Encoded first (the codebook's blocks are read), then written.
            let mut code = [0u8; pq::MAX_M as usize];
            let code = code.get_mut(..len).ok_or_else(|| IndexError::Invalid("pq code length"))?;
            self.pq_encode(b, &p, vector, code)?;
            let mut w = wr(b, blk)?;
            for (d, &x) in span_mut(&mut w, off, len, "vector code position")?.iter_mut().zip(code.iter()) {
                *d = x;
            }
            return Ok(());
        }
        let mut w = wr(b, blk)?;
        sq8::quantise(vector, self.code_shift, span_mut(&mut w, off, len, "vector code position")?);
        Ok(())
    }

    /// Whether the stored code (SQ8 or PQ) of `slot` is the code of `vector` (`dim` float bit
    /// patterns), its padding zero; `true` without codes. For tools and tests.
    pub fn code_matches<B: BlockStore>(&self, b: &B, slot: u32, vector: &[u32]) -> IResult<bool, B::Error> {
        self.check_slot(slot)?;
        let Some((blk, off, len)) = self.code_pos(slot)? else { return Ok(true) };
        if let Some(p) = self.pq {
            let mut code = [0u8; pq::MAX_M as usize];
            let code = code.get_mut(..len).ok_or_else(|| IndexError::Invalid("pq code length"))?;
            self.pq_encode(b, &p, vector, code)?;
            let r = rd(b, blk)?;
            return Ok(span(&r, off, len, "vector code position")? == &*code);
        }
        let r = rd(b, blk)?;
        let stored = span(&r, off, len, "vector code position")?;
        let mut v = vector.iter();
        Ok(stored.iter().all(|&byte| byte == v.next().map_or(0, |&bits| sq8::code(bits, self.code_shift) as u8)))
    }

    /// The entry point and its level, if the graph is not empty. Errors: `Corrupt` for an
    /// entry level past 255 (in a header [`Self::open`] did not check: it holds the entry's
    /// level-0 record, a `u8`, to the header's).
    pub fn entry(&self) -> FResult<Option<(u32, u8)>> {
        if self.header.entry == NO_SLOT {
            return Ok(None);
        }
        let level = u8::try_from(self.header.entry_level).map_err(|_| FormatError::Corrupt {
            what: "hnsw entry level",
            value: u64::from(self.header.entry_level),
        })?;
        Ok(Some((self.header.entry, level)))
    }

    #[inline]
    fn check_slot(&self, slot: u32) -> FResult<()> {
        check_slot(self.capacity, slot)
    }

    /// The slot numbers, `0 .. capacity`, as `u32`s. Errors: `Corrupt` for a capacity past
    /// `u32::MAX` (slot numbers are `u32` on disk; a validated superblock has none).
    fn slots(&self) -> FResult<core::ops::Range<u32>> {
        let n = u32::try_from(self.capacity)
            .map_err(|_| FormatError::Corrupt { what: "vector capacity", value: self.capacity })?;
        Ok(0..n)
    }

    /// Level of slot `slot` by construction (from the upper table), and its first upper
    /// record. A slot past the table (callers check slots first) has level 0.
    pub fn slot_level(&self, slot: u32) -> (u8, u32) {
        upper_entry(self.upper, slot)
    }

    /// (block, offset) of the record of level `level` (1 ..= the node's level) of a node whose
    /// upper records start at record `first`.
    fn upper_pos<E>(&self, first: u32, level: u8) -> IResult<(u64, usize), E> {
        let below = level.checked_sub(1).ok_or_else(|| IndexError::Invalid("upper record of level 0"))?;
        // A u32 plus a u8 in a u64: exact.
        Ok(self.geo.upper_pos(u64::from(first).saturating_add(u64::from(below))))
    }

    /// (block, offset) of the vector map entry of `slot`.
    fn map_pos(&self, slot: u32) -> FResult<(u64, usize)> {
        u64::from(slot)
            .checked_mul(MAP_ENTRY_U64)
            .and_then(|pos| byte_pos(self.map_start, pos))
            .ok_or_else(|| bad_pos("vector map position", slot))
    }

    /// (block, offset) of the first byte of the vector of `slot` ([`HnswGeometry::vector_pos`]).
    #[inline]
    fn data_pos(&self, slot: u32) -> FResult<(u64, usize)> {
        match self.geo.vector_pos(slot) {
            (u64::MAX, _) | (_, usize::MAX) => Err(bad_pos("vector data position", slot)),
            p => Ok(p),
        }
    }

    /// The level-0 record head of `slot`, checked against the slot's fixed level.
    pub fn head<B: BlockStore>(&self, b: &B, slot: u32) -> IResult<Level0Head, B::Error> {
        self.check_slot(slot)?;
        let (blk, off) = self.geo.level0_pos(slot);
        let blkref = rd(b, blk)?;
        let h = Level0Head::decode(span(&blkref, off, self.level0_size, "level-0 record position")?)?;
        if h.flags != 0 {
            let (level, upper) = self.slot_level(slot);
            // A pending slot has no links; the other states are IN_GRAPH with or without DELETED.
            let bad_flags = match h.flags {
                NODE_PENDING => h.count != 0,
                f => f & !(NODE_IN_GRAPH | NODE_DELETED) != 0,
            };
            if h.level != level || h.upper != upper || bad_flags || u32::from(h.count) > self.geo.m0 {
                return Err(IndexError::Corrupt(FormatError::Corrupt {
                    what: "hnsw level-0 record",
                    value: slot as u64,
                }));
            }
        }
        Ok(h)
    }

    fn set_head<B: BlockStore>(&self, b: &B, slot: u32, h: &Level0Head) -> IResult<(), B::Error> {
        let (blk, off) = self.geo.level0_pos(slot);
        let mut w = wr(b, blk)?;
        h.encode(span_mut(&mut w, off, self.level0_size, "level-0 record position")?);
        Ok(())
    }

    /// Zeroes the whole level-0 record of `slot` (head and links): a free slot's record is
    /// all zero.
    fn clear_record<B: BlockStore>(&self, b: &B, slot: u32) -> IResult<(), B::Error> {
        let (blk, off) = self.geo.level0_pos(slot);
        let mut w = wr(b, blk)?;
        span_mut(&mut w, off, self.level0_size, "level-0 record position")?.fill(0);
        Ok(())
    }

    /// Owner of `slot` (`None` when free or deleted).
    pub fn owner<B: BlockStore>(&self, b: &B, slot: u32) -> IResult<Option<MapEntry>, B::Error> {
        self.check_slot(slot)?;
        let (blk, off) = self.map_pos(slot)?;
        let blk = rd(b, blk)?;
        Ok(MapEntry::decode(slot, span(&blk, off, MAP_ENTRY, "vector map position")?)?)
    }

    /// Asks the store for the map entry of `slot` ahead of [`Self::owner`] (its block read
    /// ahead, its cache line prefetched); nothing for a slot out of range.
    pub fn prefetch_owner<B: BlockStore>(&self, b: &B, slot: u32) {
        if self.check_slot(slot).is_err() {
            return;
        }
        if let Ok((blk, off)) = self.map_pos(slot) {
            b.prefetch(blk);
            b.prefetch_line(blk, off);
        }
    }

    fn set_owner<B: BlockStore>(&self, b: &B, slot: u32, e: Option<MapEntry>) -> IResult<(), B::Error> {
        let (blk, off) = self.map_pos(slot)?;
        let mut blk = wr(b, blk)?;
        MapEntry::encode(e, slot, span_mut(&mut blk, off, MAP_ENTRY, "vector map position")?);
        Ok(())
    }

    /// Copies the vector of `slot` (`dim` float bit patterns) into `out` (at least `dim`
    /// words). Errors: `Corrupt` for a slot past the capacity; `Invalid` for a short `out`;
    /// the store's as `Io`.
    pub fn read_vector<B: BlockStore>(&self, b: &B, slot: u32, out: &mut [u32]) -> IResult<(), B::Error> {
        self.check_slot(slot)?;
        let mut rest = out.get_mut(..self.dim as usize).ok_or_else(|| IndexError::Invalid("vector buffer"))?;
        // The vector runs from `off` to the end of its first block, then from the start of the
        // next ones: each run copied word by word from one slice.
        let (mut blk, mut off) = self.data_pos(slot)?;
        while !rest.is_empty() {
            let r = rd(b, blk)?;
            let src = r.get(off..).ok_or_else(|| IndexError::Invalid("vector data position"))?;
            let words = (src.len() / 4).min(rest.len());
            if words == 0 {
                return Err(IndexError::Invalid("vector data position"));
            }
            // words <= rest.len(): the split is in bounds.
            let (dst, tail) = core::mem::take(&mut rest).split_at_mut(words);
            // Word by word with split_first_chunk, not a zip over `chunks_exact`: that zip's
            // generic size code holds a division whose panic path the 6.12 objtool does not
            // know as noreturn ("falls through" warnings in the module build).
            let mut s = src;
            for d in dst.iter_mut() {
                let Some((w, r)) = s.split_first_chunk::<4>() else { break };
                *d = u32::from_le_bytes(*w);
                s = r;
            }
            rest = tail;
            (blk, off) = (blk.checked_add(1).ok_or_else(|| bad_pos("vector data position", slot))?, 0);
        }
        Ok(())
    }

    /// The borrow holding in place the vector at block `blk`, byte `off` ([`Self::data_pos`] of
    /// its slot), with the vector's byte offset in it: its block when the vector lies within
    /// one, else the store's [`BlockStore::read_span`];
    /// `None` when the vector crosses a block boundary and the store cannot span it (copy it
    /// with [`Self::read_vector`]). The caller checks the slot.
    /// Errors: `Invalid` for a position out of range; the store's.
    fn vector_in_place<'b, B: BlockStore>(
        &self,
        b: &'b B,
        blk: u64,
        off: usize,
    ) -> IResult<Option<(B::Ref<'b>, usize)>, B::Error> {
        if off.checked_add(self.vec_bytes).is_some_and(|end| end <= BLOCK_SIZE) {
            return Ok(Some((rd(b, blk)?, off)));
        }
        Ok(b.read_span(blk, off, self.vec_bytes).map(|r| (r, 0)))
    }

    fn write_vector<B: BlockStore>(&self, b: &B, slot: u32, v: &[u32]) -> IResult<(), B::Error> {
        // Runs as in `read_vector`.
        let (mut blk, mut off) = self.data_pos(slot)?;
        let mut rest = v;
        while !rest.is_empty() {
            let mut w = wr(b, blk)?;
            let dst = w.get_mut(off..).ok_or_else(|| IndexError::Invalid("vector data position"))?;
            let words = (dst.len() / 4).min(rest.len());
            if words == 0 {
                return Err(IndexError::Invalid("vector data position"));
            }
            // words <= rest.len(): the split is in bounds.
            let (src, tail) = rest.split_at(words);
            put_words(dst, src);
            rest = tail;
            (blk, off) = (blk.checked_add(1).ok_or_else(|| bad_pos("vector data position", slot))?, 0);
        }
        Ok(())
    }

    fn bit<B: BlockStore>(&self, b: &B, slot: u32, on: Option<bool>) -> IResult<bool, B::Error> {
        let bad = || bad_pos("vector bitmap position", slot);
        let blk = self.bitmap_start.checked_add(u64::from(slot) / BITS_PER_BLOCK).ok_or_else(bad)?;
        let i = usize::try_from(u64::from(slot) % BITS_PER_BLOCK).map_err(|_| bad())?;
        match on {
            None => Ok(bit_test(&rd(b, blk)?, i)),
            Some(on) => {
                let mut w = wr(b, blk)?;
                let was = bit_test(&w, i);
                bit_set(&mut w, i, on);
                Ok(was)
            }
        }
    }

    /// Whether `slot` is marked in use in the vector bitmap.
    pub fn slot_in_use<B: BlockStore>(&self, b: &B, slot: u32) -> IResult<bool, B::Error> {
        self.check_slot(slot)?;
        self.bit(b, slot, None)
    }

    /// Takes the first free slot at or after the hint, else the first before it, and marks it
    /// in use; `None` when every slot is in use.
    fn alloc_slot<B: BlockStore>(&mut self, b: &B) -> IResult<Option<u32>, B::Error> {
        let bad = || FormatError::Corrupt { what: "vector capacity", value: self.capacity };
        let hint = self.hint.min(self.capacity);
        for (start, end) in [(hint, self.capacity), (0, hint)] {
            if start >= end {
                continue;
            }
            // Bitmap block `bi` holds slots `base .. base + BITS_PER_BLOCK`; search the part of
            // it inside `start .. end`.
            for bi in start / BITS_PER_BLOCK..end.div_ceil(BITS_PER_BLOCK) {
                let base = bi.checked_mul(BITS_PER_BLOCK).ok_or_else(bad)?;
                let from = usize::try_from(start.saturating_sub(base)).map_err(|_| bad())?;
                let limit = usize::try_from(end.saturating_sub(base).min(BITS_PER_BLOCK)).map_err(|_| bad())?;
                let blk = self.bitmap_start.checked_add(bi).ok_or_else(bad)?;
                // (Its own statement: the block's read borrow ends before the bit is set.)
                let found = bit_find_clear(&rd(b, blk)?, from, limit);
                if let Some(i) = found {
                    // i < limit: the slot is below `end`, so below the capacity.
                    let slot = base.checked_add(i as u64).and_then(|s| u32::try_from(s).ok()).ok_or_else(bad)?;
                    self.bit(b, slot, Some(true))?;
                    // A u32 plus one in a u64: exact.
                    self.hint = u64::from(slot).saturating_add(1);
                    return Ok(Some(slot));
                }
            }
        }
        Ok(None)
    }

    fn no_space<E>(&self) -> IndexError<E> {
        IndexError::NoSpace { live: u64::from(self.header.live), capacity: self.capacity }
    }

    fn write_header<B: BlockStore>(&self, b: &B) -> IResult<(), B::Error> {
        let mut w = wr(b, self.geo.header)?;
        self.header.encode(&mut w, self.geo.header);
        Ok(())
    }

    /// Inserts `vector` (`dim` float bit patterns, finite: the caller checked) owned by
    /// `owner`; returns its slot. Purges tombstones first when no slot is free.
    /// Errors: `NoSpace` when the index is full; `Corrupt`; the store's errors as `Io`.
    pub fn insert<B: BlockStore, V: Visited + ?Sized>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        visited: &mut V,
        vector: &[u32],
        owner: MapEntry,
    ) -> IResult<u32, B::Error> {
        if vector.len() != self.dim as usize {
            return Err(IndexError::Invalid("vector dimension"));
        }
        let live = self.next_live()?;
        let slot = self.store_new(b, s, vector, owner)?;
        self.link(b, s, visited, slot, vector, live)?;
        Ok(slot)
    }

    /// Takes a free slot (purging tombstones first when none is) and writes `vector` and its
    /// `owner` there: the first half of [`Self::insert`] and [`Self::insert_pending`].
    /// Errors: `NoSpace` when the index is full; `Corrupt`; the store's as `Io`.
    fn store_new<B: BlockStore>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        vector: &[u32],
        owner: MapEntry,
    ) -> IResult<u32, B::Error> {
        let slot = match self.alloc_slot(b)? {
            Some(s) => s,
            None if self.header.deleted > 0 => {
                self.purge(b, s)?;
                self.alloc_slot(b)?.ok_or(self.no_space())?
            }
            None => return Err(self.no_space()),
        };
        self.write_vector(b, slot, vector)?;
        self.write_code(b, slot, vector)?;
        self.set_owner(b, slot, Some(owner))?;
        Ok(slot)
    }

    /// Stores `vector` (`dim` float bit patterns, finite: the caller checked) owned by `owner`
    /// in a free slot as a pending vector, without linking it into the graph: a record of the
    /// vector write-ahead log. Its bitmap bit, map entry and vector are written, its level-0
    /// record says [`NODE_PENDING`] (no links), and the header counts it in `pending`. A
    /// handful of blocks, where [`Self::insert`] changes the records of up to `4m` neighbours
    /// and computes `ef_construction`-wide searches. [`Self::index_pending`] links it later.
    /// Returns its slot. Purges tombstones first when no slot is free.
    /// Errors: `NoSpace` when the index is full; `Corrupt`; the store's errors as `Io`.
    pub fn insert_pending<B: BlockStore>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        vector: &[u32],
        owner: MapEntry,
    ) -> IResult<u32, B::Error> {
        if vector.len() != self.dim as usize {
            return Err(IndexError::Invalid("vector dimension"));
        }
        let pending = self
            .header
            .pending
            .checked_add(1)
            .ok_or(FormatError::Corrupt { what: "hnsw pending count", value: u64::from(self.header.pending) })?;
        let slot = self.store_new(b, s, vector, owner)?;
        let (level, upper) = self.slot_level(slot);
        self.set_head(b, slot, &Level0Head { count: 0, level, flags: NODE_PENDING, upper })?;
        self.header.pending = pending;
        self.write_header(b)?;
        Ok(slot)
    }

    /// Links the pending vector of `slot` into the graph (as [`Self::insert`] would have),
    /// with `vector` a buffer of at least `dim` words to read it into. Returns `false`, doing
    /// nothing, when the slot is not pending (already linked, removed, or reused): replaying
    /// the worker's queue twice is harmless.
    /// Errors: `Corrupt`; `Invalid` for a short buffer; the store's as `Io`.
    pub fn index_pending<B: BlockStore, V: Visited + ?Sized>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        visited: &mut V,
        slot: u32,
        vector: &mut [u32],
    ) -> IResult<bool, B::Error> {
        if self.head(b, slot)?.flags != NODE_PENDING {
            return Ok(false);
        }
        let live = self.next_live()?;
        let v = vector.get_mut(..self.dim as usize).ok_or_else(|| IndexError::Invalid("vector buffer"))?;
        self.read_vector(b, slot, v)?;
        self.header.pending = self.header.pending.saturating_sub(1);
        self.link(b, s, visited, slot, v, live)?;
        Ok(true)
    }

    /// Frees the pending slot `slot` (its vector was replaced or removed before it was linked):
    /// record, map entry and bitmap bit cleared, `pending` counted down.
    fn drop_pending<B: BlockStore>(&mut self, b: &B, slot: u32) -> IResult<(), B::Error> {
        self.clear_record(b, slot)?;
        self.set_owner(b, slot, None)?;
        self.bit(b, slot, Some(false))?;
        self.header.pending = self.header.pending.saturating_sub(1);
        self.write_header(b)
    }

    /// Distances from `query` (`dim` float bit patterns) to the vectors of `ids`, as
    /// order-preserving keys ([`crate::distance::key_from_bits`]) into `keys[..ids.len()]`,
    /// in batches of [`BATCH`]: the exact scan of pending vectors.
    /// Errors: `Invalid` for a query of the wrong dimension or a short `keys`; `Corrupt` for
    /// a slot out of range; the store's as `Io`.
    pub fn distances<B: BlockStore>(
        &self,
        b: &B,
        s: &mut IndexScratch<'_>,
        query: &[u32],
        ids: &[u32],
        keys: &mut [u32],
    ) -> IResult<(), B::Error> {
        if query.len() != self.dim as usize {
            return Err(IndexError::Invalid("query dimension"));
        }
        let mut g = GraphStore {
            b,
            ix: self,
            query,
            bounce: &mut *s.bounce,
            code_q: None,
            pq_table: None,
            pairs_on_codes: false,
        };
        g.dist_from(query.as_ptr(), ids, keys)
    }

    /// The first half of [`Self::index_pending`], reading only: when `slot` is pending, reads
    /// its vector into `vector` (at least `dim` words) and runs [`hnsw::insert_plan`] in `s`,
    /// the plan left in the scratch's plan area ([`hnsw::Scratch::split_plan`]). Returns the
    /// entry point planned from and the plan's top level, or `None` when the slot is not
    /// pending. [`Self::apply_pending`] with the same values and plan then links it, as long as
    /// nothing changed the graph in between (the caller's to know).
    /// Errors: `Corrupt`; `Invalid` for a short buffer or scratch; the store's as `Io`.
    #[allow(clippy::type_complexity)]
    pub fn plan_pending<B: BlockStore, V: Visited + ?Sized>(
        &self,
        b: &B,
        s: &mut IndexScratch<'_>,
        visited: &mut V,
        slot: u32,
        vector: &mut [u32],
    ) -> IResult<Option<(Option<(u32, u8)>, Option<u8>)>, B::Error> {
        if self.head(b, slot)?.flags != NODE_PENDING {
            return Ok(None);
        }
        let v = vector.get_mut(..self.dim as usize).ok_or_else(|| IndexError::Invalid("vector buffer"))?;
        self.read_vector(b, slot, v)?;
        let (level, _) = self.slot_level(slot);
        let entry = self.entry()?;
        let (mut hs, plan) = s.hnsw.split_plan(self.params.m).ok_or_else(|| IndexError::Invalid("hnsw scratch"))?;
        // With PQ the graph is built on the full vectors: no code query.
        let code = self.build_code(b, slot)?;
        let code_q = match &code {
            Some(c) => Some(c.bytes()?),
            None => None,
        };
        let pairs_on_codes = code_q.is_some();
        let mut g =
            GraphStore { b, ix: self, query: v, bounce: &mut *s.bounce, code_q, pq_table: None, pairs_on_codes };
        let top = hnsw::insert_plan(&mut g, visited, &mut hs, &self.params, slot, level, entry, plan)?;
        Ok(Some((entry, top)))
    }

    /// The second half of [`Self::index_pending`]: links the pending `slot` by the plan that
    /// [`Self::plan_pending`] made (`entry` and `top` as it returned them, `plan` its plan
    /// area) over the graph as it still is ([`Self::link_with`] [`hnsw::insert_apply`]).
    /// Returns `false`, doing nothing, when the slot is no longer pending. Errors: `Invalid`
    /// when the entry point is not the planned one (the graph changed: a caller's error);
    /// `Corrupt`; the store's as `Io`.
    pub fn apply_pending<B: BlockStore>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        slot: u32,
        entry: Option<(u32, u8)>,
        top: Option<u8>,
        plan: &[u32],
    ) -> IResult<bool, B::Error> {
        if self.head(b, slot)?.flags != NODE_PENDING {
            return Ok(false);
        }
        if self.entry()? != entry {
            return Err(IndexError::Invalid("insert plan of another entry point"));
        }
        let live = self.next_live()?;
        self.header.pending = self.header.pending.saturating_sub(1);
        let p = self.params;
        self.link_with(b, &mut *s.bounce, slot, &[], live, |g, level, entry| {
            hnsw::insert_apply(g, &mut s.hnsw, &p, slot, level, entry, top, plan)
        })?;
        Ok(true)
    }

    /// Links the pending `slot` by `plan` (words of [`hnsw::insert_plan`]), made over an older
    /// graph, merged with `peers`, the slots linked since the plan was made, whatever else
    /// changed since: its record written, its own lists chosen and written
    /// ([`hnsw::insert_choose_merged`]) and copied into `chosen` ([`hnsw::plan_len`] words), the
    /// header updated (entry point, live and pending counts); the connections back to each
    /// chosen neighbour are the caller's ([`Self::connect_back`]), before the slot's removal
    /// or a search. A batch of plans made at once over one graph, each applied so with the
    /// batch's slots linked before it as its peers, then connected, is how the bulk loader
    /// links in parallel. Returns `false`, doing nothing, when the slot is no longer pending.
    /// Errors: `Invalid` for a vector of another dimension, a short `chosen` or more peers than
    /// [`hnsw::insert_choose_merged`] takes; `Corrupt`; the store's as `Io`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_pending_chosen<B: BlockStore>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        slot: u32,
        top: Option<u8>,
        plan: &[u32],
        vector: &[u32],
        peers: &[u32],
        chosen: &mut [u32],
    ) -> IResult<bool, B::Error> {
        if vector.len() != self.dim as usize {
            return Err(IndexError::Invalid("vector dimension"));
        }
        if self.head(b, slot)?.flags != NODE_PENDING {
            return Ok(false);
        }
        let live = self.next_live()?;
        self.header.pending = self.header.pending.saturating_sub(1);
        let (p, upper) = (self.params, self.upper);
        self.link_with(b, &mut *s.bounce, slot, vector, live, |g, level, entry| {
            let peer_level = |id| upper_entry(upper, id).0;
            hnsw::insert_choose_merged(g, &mut s.hnsw, &p, slot, level, entry, top, plan, peers, peer_level, chosen)
        })?;
        Ok(true)
    }

    /// Adds `q` to the list of `e` at `level` ([`hnsw::connect`]): the connection back of a
    /// choice of [`Self::apply_pending_chosen`]. Reads and writes the block of `e`'s list at
    /// `level` and the block of `e`'s level-0 record (the same at level 0), and reads vectors
    /// (codes with SQ8); with [`Self::skip_tombstone_reads`] no other record. Through `&self`: the
    /// bulk loader runs the connections to nodes of different blocks on several threads.
    /// Errors: `Corrupt` for a record that does not check; the store's as `Io`.
    pub fn connect_back<B: BlockStore>(
        &self,
        b: &B,
        s: &mut IndexScratch<'_>,
        e: u32,
        q: u32,
        level: u8,
    ) -> IResult<(), B::Error> {
        let mut g = GraphStore::for_pairs(b, self, &mut *s.bounce);
        hnsw::connect(&mut g, &mut s.hnsw, &self.params, e, q, level)
    }

    /// Makes the graph's tombstone checks answer "live" without reading the record, when the
    /// header counts no tombstone (`deleted` 0, as after a fresh import); returns whether it
    /// did. For [`Self::connect_back`] on several threads, each of which may read only the
    /// blocks it writes: the answer is the same as the record's in a consistent graph, and a
    /// link to a slot not in the graph then goes unnoticed by this check (the others stay).
    pub fn skip_tombstone_reads(&mut self) -> bool {
        self.no_tombstones = connects_apart(&self.header);
        self.no_tombstones
    }

    /// The live count once one more vector is linked. Errors: `Corrupt` at `u32::MAX`.
    fn next_live(&self) -> FResult<u32> {
        self.header
            .live
            .checked_add(1)
            .ok_or(FormatError::Corrupt { what: "hnsw live count", value: u64::from(self.header.live) })
    }

    /// The graph half of an insert: [`Self::link_with`] [`hnsw::insert`].
    fn link<B: BlockStore, V: Visited + ?Sized>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        visited: &mut V,
        slot: u32,
        vector: &[u32],
        live: u32,
    ) -> IResult<(), B::Error> {
        let p = self.params;
        self.link_with(b, &mut *s.bounce, slot, vector, live, |g, level, entry| {
            hnsw::insert(g, visited, &mut s.hnsw, &p, slot, level, entry)
        })
    }

    /// Writes `slot`'s level-0 record, clears its upper records' counts, links it by
    /// `connect` (given the store with `vector` as its query, the slot's level and the entry
    /// point; it returns the new entry point, as [`hnsw::insert`] does), and updates the
    /// header's entry point and its live count to `live`. The slot's vector is already stored.
    fn link_with<B: BlockStore>(
        &mut self,
        b: &B,
        bounce: &mut [u32],
        slot: u32,
        vector: &[u32],
        live: u32,
        connect: impl FnOnce(&mut GraphStore<'_, 't, B>, u8, Option<(u32, u8)>) -> IResult<Option<(u32, u8)>, B::Error>,
    ) -> IResult<(), B::Error> {
        let (level, upper) = self.slot_level(slot);
        self.set_head(b, slot, &Level0Head { count: 0, level, flags: NODE_IN_GRAPH, upper })?;
        for l in 1..=level {
            let (blk, off) = self.upper_pos(upper, l)?;
            put_u32(&mut wr(b, blk)?, off, 0);
        }
        let entry = self.entry()?;
        // With SQ8 the graph is built on the codes: the new vector's (stored with it) is the
        // query, and pairs of nodes compare by code distances too.
        // With PQ the graph is built on the full vectors: no code query.
        let code = self.build_code(b, slot)?;
        let code_q = match &code {
            Some(c) => Some(c.bytes()?),
            None => None,
        };
        let pairs_on_codes = code_q.is_some();
        let mut g = GraphStore { b, ix: self, query: vector, bounce, code_q, pq_table: None, pairs_on_codes };
        let new_entry = connect(&mut g, level, entry)?;
        if let Some((e, l)) = new_entry {
            self.header.entry = e;
            self.header.entry_level = u32::from(l);
        }
        self.header.live = live;
        self.write_header(b)
    }

    /// Removes the vector in `slot`: it becomes a tombstone (still routing searches) and its
    /// owner is cleared; a pending vector (not linked yet, see [`Self::insert_pending`]) is
    /// freed at once. Purges the graph when tombstones reach a quarter of the vectors (and
    /// at least 16), or no live vector is left.
    /// Errors: `Corrupt` for a slot not in the graph or a tombstone count at `u32::MAX`; the
    /// store's as `Io`.
    pub fn remove<B: BlockStore>(&mut self, b: &B, s: &mut IndexScratch<'_>, slot: u32) -> IResult<(), B::Error> {
        let mut h = self.head(b, slot)?;
        if h.flags == NODE_PENDING {
            return self.drop_pending(b, slot);
        }
        if h.flags != NODE_IN_GRAPH {
            return Err(IndexError::Corrupt(FormatError::Corrupt {
                what: "removing a vector not in the graph",
                value: u64::from(slot),
            }));
        }
        let deleted = self
            .header
            .deleted
            .checked_add(1)
            .ok_or(FormatError::Corrupt { what: "hnsw deleted count", value: u64::from(self.header.deleted) })?;
        h.flags |= NODE_DELETED;
        self.set_head(b, slot, &h)?;
        self.set_owner(b, slot, None)?;
        self.header.live = self.header.live.saturating_sub(1);
        self.header.deleted = deleted;
        if self.header.entry == slot {
            self.pick_entry(b)?;
        }
        if self.auto_purge && purge_wanted(&self.header) {
            self.purge(b, s)?;
        }
        self.write_header(b)
    }

    /// Picks a live node of the highest level as the entry point (or none).
    fn pick_entry<B: BlockStore>(&mut self, b: &B) -> IResult<(), B::Error> {
        let mut best: Option<(u8, u32)> = None;
        for slot in self.slots()? {
            let (level, _) = self.slot_level(slot);
            if best.is_some_and(|(l, _)| level <= l) {
                continue;
            }
            if self.head(b, slot)?.flags == NODE_IN_GRAPH {
                best = Some((level, slot));
            }
        }
        match best {
            Some((l, s)) => {
                self.header.entry = s;
                self.header.entry_level = u32::from(l);
            }
            None => {
                self.header.entry = NO_SLOT;
                self.header.entry_level = 0;
            }
        }
        Ok(())
    }

    /// Repairs every live node's links around tombstones, then frees the tombstones' slots.
    /// Afterwards no link points at a freed slot.
    pub fn purge<B: BlockStore>(&mut self, b: &B, s: &mut IndexScratch<'_>) -> IResult<(), B::Error> {
        if self.header.deleted == 0 {
            return Ok(());
        }
        self.purges = self.purges.wrapping_add(1);
        for slot in self.slots()? {
            // A stop here leaves tombstones unfreed and some nodes repaired: a valid graph.
            if slot % 1024 == 0 {
                b.relax().map_err(IndexError::Io)?;
            }
            let h = self.head(b, slot)?;
            if h.flags != NODE_IN_GRAPH {
                continue;
            }
            for level in 0..=h.level {
                let mut g = GraphStore::for_pairs(b, self, &mut *s.bounce);
                hnsw::repair(&mut g, &mut s.hnsw, &self.params, slot, level)?;
            }
        }
        for slot in self.slots()? {
            let h = self.head(b, slot)?;
            if h.flags & NODE_DELETED != 0 {
                self.clear_record(b, slot)?;
                self.bit(b, slot, Some(false))?;
            }
        }
        self.header.deleted = 0;
        if self.header.entry != NO_SLOT && self.head(b, self.header.entry)?.flags != NODE_IN_GRAPH {
            self.pick_entry(b)?;
        }
        self.hint = 0;
        self.write_header(b)
    }

    /// The first step of a purge in steps, one node at a time: repairs the links of `slot`, if
    /// it is a node of the graph (live, or a tombstone that is not to be freed: it still routes
    /// searches), around the tombstones it links to, at every level ([`hnsw::repair`]); returns
    /// whether it was one. A node repaired never links to a tombstone that existed when it was
    /// repaired, and no later change links a node to a tombstone (inserts and repairs never pick
    /// one), so once every node but the tombstones to free has been repaired, those tombstones
    /// (the ones that existed before the first repair) can be freed ([`Self::free_tombstone`]).
    /// Each call changes only `slot`'s records: one small transaction.
    /// Errors: `Corrupt`; the store's as `Io`.
    pub fn repair_node<B: BlockStore>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        slot: u32,
    ) -> IResult<bool, B::Error> {
        let h = self.head(b, slot)?;
        if h.flags & NODE_IN_GRAPH == 0 {
            return Ok(false);
        }
        for level in 0..=h.level {
            let mut g = GraphStore::for_pairs(b, self, &mut *s.bounce);
            hnsw::repair(&mut g, &mut s.hnsw, &self.params, slot, level)?;
        }
        Ok(true)
    }

    /// The middle step of a purge in steps: empties the link lists of the tombstone `slot`, at
    /// every level (it stays a tombstone, linking nowhere), so that freeing the tombstones of
    /// the set one batch at a time never leaves a tombstone of the set linking to a freed slot.
    /// Returns whether `slot` was a tombstone. Errors: `Corrupt`; the store's as `Io`.
    pub fn isolate_tombstone<B: BlockStore>(&mut self, b: &B, slot: u32) -> IResult<bool, B::Error> {
        let mut h = self.head(b, slot)?;
        if h.flags != NODE_IN_GRAPH | NODE_DELETED {
            return Ok(false);
        }
        h.count = 0;
        self.set_head(b, slot, &h)?;
        for l in 1..=h.level {
            let (blk, off) = self.upper_pos(h.upper, l)?;
            put_u32(&mut wr(b, blk)?, off, 0);
        }
        Ok(true)
    }

    /// The last step of a purge in steps: frees `slot` if it is a tombstone (record cleared,
    /// bitmap bit cleared, `deleted` counted down, the header written); returns whether it was.
    /// Only for tombstones no node links to any more (see [`Self::repair_node`]) and that link
    /// nowhere ([`Self::isolate_tombstone`]).
    /// Errors: `Corrupt`; the store's as `Io`.
    pub fn free_tombstone<B: BlockStore>(&mut self, b: &B, slot: u32) -> IResult<bool, B::Error> {
        if self.head(b, slot)?.flags != NODE_IN_GRAPH | NODE_DELETED {
            return Ok(false);
        }
        self.clear_record(b, slot)?;
        self.bit(b, slot, Some(false))?;
        self.header.deleted = self.header.deleted.saturating_sub(1);
        self.hint = self.hint.min(u64::from(slot));
        self.write_header(b)?;
        Ok(true)
    }

    /// The `knn.k` nearest live vectors to `query` (`dim` float bit patterns), with candidate
    /// list `knn.ef` (see [`hnsw::search`]): `(key, slot)` pairs, nearest first, into `out`;
    /// returns how many. With codes (SQ8, or PQ with the query's table built first) the graph
    /// is walked on code distances and only the `rerank` nearest live candidates by code
    /// distance get their float32 distance (read from the vector data region), are sorted by it
    /// and returned: at most `min(knn.k, rerank)` (see [`Self::rerank_per_k`]). With `rerank`
    /// `None` no float32 vector is read: the `knn.k` nearest live candidates by code distance
    /// are returned with the distances the codes give ([`sq8::code_dist_key`]; PQ's are float
    /// keys already; with node records the nodes the walk expanded carry their exact ones).
    /// Without codes `rerank` is ignored: the answer is exact. With PQ over node records the
    /// level-0 walk keeps each expanded node by its exact distance
    /// ([`hnsw::Store::expanded_key`]; docs/FORMAT.md, "Node records"). `table_ready` says that
    /// `s` still holds this query's PQ table from a search just before with the same query and
    /// scratch (a search run again with a longer list: nothing between them writes past the
    /// bounce slots), so it is not computed again;
    /// ignored without PQ. Errors: `Invalid` for a
    /// query of the wrong dimension or scratch too small; `Corrupt`; the store's as `Io`.
    #[allow(clippy::too_many_arguments)]
    pub fn search<B: BlockStore, V: Visited + ?Sized>(
        &self,
        b: &B,
        s: &mut IndexScratch<'_>,
        visited: &mut V,
        query: &[u32],
        knn: Knn,
        rerank: Option<usize>,
        table_ready: bool,
        out: &mut [(u32, u32)],
    ) -> IResult<usize, B::Error> {
        if query.len() != self.dim as usize {
            return Err(IndexError::Invalid("query dimension"));
        }
        let entry = self.entry()?;
        let Some(c) = self.codes else {
            let mut g = GraphStore {
                b,
                ix: self,
                query,
                bounce: &mut *s.bounce,
                code_q: None,
                pq_table: None,
                pairs_on_codes: false,
            };
            return hnsw::search(&mut g, visited, &mut s.hnsw, self.params.m, entry, knn, out);
        };
        if let Some(p) = self.pq {
            // With PQ: the query's table lies after the bounce slots
            // ([`IndexScratch::bounce_len_for`]); the slots stay for the re-rank's vectors.
            let mid = BOUNCE_SLOTS.checked_mul(self.words).ok_or_else(|| IndexError::Invalid("bounce buffer"))?;
            if s.bounce.len() < mid.saturating_add(pq::table_words(p.m)) {
                return Err(IndexError::Invalid("bounce buffer"));
            }
            let (bounce, table) = s.bounce.split_at_mut(mid);
            if !table_ready {
                self.pq_query_table(b, &p, query, table)?;
            }
            let mut g =
                GraphStore { b, ix: self, query, bounce, code_q: None, pq_table: Some(table), pairs_on_codes: false };
            let n = hnsw::search_candidates(&mut g, visited, &mut s.hnsw, self.params.m, entry, knn)?;
            g.pq_table = None;
            let pool = s.hnsw.pool.get_mut(..n).ok_or_else(|| IndexError::Invalid("candidate pool"))?;
            return match rerank {
                Some(r) => rerank_codes(&mut g, pool, knn.k.min(r), out),
                None => code_ranked(&mut g, pool, knn.k, |key| key, out),
            };
        }
        // With SQ8: the query's code goes in the pair slot of the bounce memory (a search
        // computes no pair distances), and the batch slots stay for the re-rank's vectors.
        let words = self.words;
        let mid = PAIR_SLOT.checked_mul(words).ok_or_else(|| IndexError::Invalid("bounce buffer"))?;
        if s.bounce.len() < mid.saturating_add(words) || words.saturating_mul(4) < c.stride {
            return Err(IndexError::Invalid("bounce buffer"));
        }
        let (bounce, qword) = s.bounce.split_at_mut(mid);
        let qword = qword.get_mut(..words).ok_or_else(|| IndexError::Invalid("bounce buffer"))?;
        // SAFETY: the bytes of `qword`'s words, borrowed mutably for as long as `qword` is:
        // `u8` has no alignment or validity requirement, and `words * 4` bytes lie inside it.
        let qbytes =
            unsafe { core::slice::from_raw_parts_mut(qword.as_mut_ptr().cast::<u8>(), words.saturating_mul(4)) };
        let qcode = qbytes.get_mut(..c.stride).ok_or_else(|| IndexError::Invalid("bounce buffer"))?;
        sq8::quantise(query, self.code_shift, qcode);
        let mut g =
            GraphStore { b, ix: self, query, bounce, code_q: Some(qcode), pq_table: None, pairs_on_codes: true };
        let n = hnsw::search_candidates(&mut g, visited, &mut s.hnsw, self.params.m, entry, knn)?;
        g.code_q = None;
        let pool = s.hnsw.pool.get_mut(..n).ok_or_else(|| IndexError::Invalid("candidate pool"))?;
        match rerank {
            Some(r) => rerank_codes(&mut g, pool, knn.k.min(r), out),
            None => {
                let (metric, shift) = (self.metric, self.code_shift);
                code_ranked(&mut g, pool, knn.k, |key| sq8::code_dist_key(metric, shift, key), out)
            }
        }
    }
}

/// Candidates re-ranked at full precision per result wanted, in an SQ8 search: the `2k`
/// nearest by code distance get their float32 distance, not the whole candidate list of `ef`
/// (DiskANN re-ranks a short list the same way). Measured with `bench_search` on SQ8 images
/// of pydocs-minilm (18,366 x 384, the tuning set) and glove-100-20000 (20,000 x 100, not
/// tuned on), ef 16 to 256, k 10: 3k gave recall@10 identical to the full re-rank at every ef
/// on both, 2k the same but for glove at ef 256 (0.9943 against 0.9944), 1k 0.03-0.04 lower at
/// ef 128. With `bench_reads` on pydocs-100k and glove-100 (100,000 rows each), ef 10 to 512:
/// 2k's recall@10 equal to 3k's at every ef, with 10-11 fewer data-region block reads per query
/// under a budget of 0.35x the raw vectors (33.8 against 45.0 at ef 64 on pydocs-100k). At
/// ef 128 it reads 20 vectors of the data region instead of 128.
pub const SQ8_RERANK_PER_K: usize = 2;

/// Candidates re-ranked at full precision per result wanted, in a PQ search: PQ codes (4
/// components per byte by default) order candidates more coarsely than SQ8's, so the walk's
/// nearest `PQ_RERANK_PER_K * k` get their float32 distance (see [`SQ8_RERANK_PER_K`]).
/// Measured on pydocs-100k at m 96, ef 64/128/256: 3k 0.955/0.974/0.980, 10k
/// 0.967/0.989/0.997 (float32 0.972/0.991/0.998), 30k the same as 10k.
pub const PQ_RERANK_PER_K: usize = 10;

/// `Ok` when the PQ table call that returned `qq` ran ([`pq::table_ran`]): a call that did
/// not must not become a code on disk or a walk on garbage. Errors: `Invalid`.
fn fpu_answered<E>(qq: u32) -> IResult<(), E> {
    if !pq::table_ran(qq) {
        return Err(IndexError::Invalid("pq table: the FPU code did not run"));
    }
    Ok(())
}

/// The end of a search on codes, SQ8 or PQ ([`VecIndex::search`]): drops the tombstones from the candidate
/// list `pool` (walked on code distances, nearest first), gives the first `k` others their
/// float32 distance to the query (the store's `code_q` is `None`), sorts them by `(key, slot)`,
/// and writes them to `out`; returns how many. Errors: the store's.
fn rerank_codes<B: BlockStore>(
    g: &mut GraphStore<'_, '_, B>,
    pool: &mut [hnsw::Cand],
    k: usize,
    out: &mut [(u32, u32)],
) -> IResult<usize, B::Error> {
    let mut n = 0usize;
    for i in 0..pool.len() {
        let Some(&c) = pool.get(i) else { break };
        if n >= k {
            break;
        }
        if g.is_deleted(c.id)? {
            continue;
        }
        if let Some(d) = pool.get_mut(n) {
            *d = c;
        }
        n = n.saturating_add(1);
    }
    let live = pool.get_mut(..n).ok_or_else(|| IndexError::Invalid("candidate pool"))?;
    let (mut ids, mut keys) = ([0u32; BATCH], [0u32; BATCH]);
    let mut rest = &mut *live;
    while !rest.is_empty() {
        let m = rest.len().min(BATCH);
        let (chunk, r) = core::mem::take(&mut rest).split_at_mut(m);
        rest = r;
        for (d, c) in ids.iter_mut().zip(chunk.iter()) {
            *d = c.id;
        }
        let (Some(ids), Some(keys)) = (ids.get(..m), keys.get_mut(..m)) else { break };
        g.dist_query(ids, keys)?;
        for (c, &key) in chunk.iter_mut().zip(keys.iter()) {
            c.key = key;
        }
    }
    // Insertion sort by (key, slot): the list comes nearly sorted (by code distance).
    for i in 1..live.len() {
        let mut j = i;
        while let Some(p) = j.checked_sub(1) {
            let (Some(a), Some(b)) = (live.get(p), live.get(j)) else { break };
            if (a.key, a.id) <= (b.key, b.id) {
                break;
            }
            live.swap(p, j);
            j = p;
        }
    }
    let mut got = 0usize;
    for (o, c) in out.iter_mut().zip(live.iter()).take(k) {
        *o = (c.key, c.id);
        got = got.saturating_add(1);
    }
    Ok(got)
}

/// The end of a search on codes that returns the codes' distances ([`VecIndex::search`] with
/// `rerank` `None`): the first `k` live candidates of `pool` (nearest first by the walk's
/// keys), each key made a distance key by `dist_key` (monotone: the order stays), sorted by
/// `(key, slot)` (keys that became equal), into `out`; returns how many. Reads no vector.
/// Errors: the store's.
fn code_ranked<B: BlockStore>(
    g: &mut GraphStore<'_, '_, B>,
    pool: &[hnsw::Cand],
    k: usize,
    dist_key: impl Fn(u32) -> u32,
    out: &mut [(u32, u32)],
) -> IResult<usize, B::Error> {
    let mut n = 0usize;
    for c in pool {
        if n >= k {
            break;
        }
        if g.is_deleted(c.id)? {
            continue;
        }
        let Some(o) = out.get_mut(n) else { break };
        *o = (dist_key(c.key), c.id);
        n = n.saturating_add(1);
    }
    let got = out.get_mut(..n).ok_or_else(|| IndexError::Invalid("result buffer"))?;
    // Nearly sorted already: only keys that rounded alike (or a re-keyed PQ node) move.
    got.sort_unstable();
    Ok(n)
}

/// [`hnsw::Store`] over the index's blocks.
/// Level of `slot` in the upper table `upper` and its first upper record
/// ([`VecIndex::slot_level`]). A slot past the table has level 0.
fn upper_entry(upper: &[u32], slot: u32) -> (u8, u32) {
    let i = slot as usize;
    let a = upper.get(i).copied().unwrap_or(0);
    let z = i.checked_add(1).and_then(|j| upper.get(j)).copied().unwrap_or(a);
    // The table is made of u8 levels (fill_upper_table): the difference fits.
    (u8::try_from(z.saturating_sub(a)).unwrap_or(u8::MAX), a)
}

/// Bytes per slot of a transient build-code table ([`VecIndex::set_build_codes`]): the SQ8
/// codes region's stride ([`sq8::code_stride_for`]), so the same kernels read them.
pub fn build_code_stride(dim: u32) -> usize {
    usize::try_from(sq8::code_stride_for(dim)).unwrap_or(usize::MAX)
}

/// The code of `slot` in a build-code table of `dim`-component vectors. Errors: `Invalid`
/// past its end.
fn table_code<E>(table: &[u8], dim: u32, slot: u32) -> IResult<&[u8], E> {
    let stride = build_code_stride(dim);
    (slot as usize)
        .checked_mul(stride)
        .and_then(|at| table.get(at..at.checked_add(stride)?))
        .ok_or_else(|| IndexError::Invalid("build code position"))
}

/// A node's code as a build reads it ([`VecIndex::build_code`]).
enum BuildCode<'t, R> {
    /// In a block of the codes region: the block, the code's offset and length.
    Block(R, usize, usize),
    /// In the transient table.
    Table(&'t [u8]),
}

impl<R: core::ops::Deref<Target = [u8]>> BuildCode<'_, R> {
    /// The code's bytes. Errors: `Invalid` for a position past the block.
    fn bytes<E>(&self) -> IResult<&[u8], E> {
        match self {
            BuildCode::Block(r, off, len) => span(r, *off, *len, "vector code position"),
            BuildCode::Table(t) => Ok(t),
        }
    }
}

/// The [`hnsw::Store`] of a [`VecIndex`] over the block store `b`: link lists from the HNSW
/// region's records, distances from the query (`query`, or its codes) and between nodes,
/// through the `bounce` slots when a vector crosses a block.
struct GraphStore<'a, 't, B: BlockStore> {
    b: &'a B,
    ix: &'a VecIndex<'t>,
    query: &'a [u32],
    bounce: &'a mut [u32],
    /// The query's SQ8 code while a search or an insert walks the graph on codes:
    /// [`Store::dist_query`] then gives code distances.
    code_q: Option<&'a [u8]>,
    /// The query's PQ table ([`pq::table_words`]) while a search walks the graph on PQ codes:
    /// [`Store::dist_query`] then gives PQ distances.
    pq_table: Option<&'a [u32]>,
    /// Whether [`Store::dist_pair`] compares the nodes' SQ8 codes (the build on codes of a
    /// filesystem with SQ8) rather than their float vectors.
    pairs_on_codes: bool,
}

impl<'a, 't, B: BlockStore> GraphStore<'a, 't, B> {
    /// A store for work on pairs of nodes only (connections back, repairs): no query, pair
    /// distances on the SQ8 codes when the graph is built on them ([`VecIndex::build_on_codes`]).
    /// Its [`Store::dist_query`] refuses to run.
    fn for_pairs(b: &'a B, ix: &'a VecIndex<'t>, bounce: &'a mut [u32]) -> Self {
        GraphStore { b, ix, query: &[], bounce, code_q: None, pq_table: None, pairs_on_codes: ix.build_on_codes() }
    }
}

/// Where the link list of a node at one level lies: its count at the start of the record (the
/// level-0 head's `u16`, or the `u32` that starts an upper record), the links after it.
struct LinkList {
    /// Block holding the record.
    blk: u64,
    /// Byte offset of the record, and of its count, in the block.
    at: usize,
    /// Byte offset of the first link in the block.
    links: usize,
    /// Whether this is the level-0 record (its count is the head's `u16`).
    level0: bool,
    /// Links the list holds at most (`2m` at level 0, `m` above).
    cap: usize,
}

impl<'a, B: BlockStore> GraphStore<'a, '_, B> {
    /// Distances from `q` (a pointer to dim words) to the vectors of `ids`, batch by batch
    /// ([`Self::batches`]), as keys into `keys[..ids.len()]`: each vector located in place (one
    /// block, or across two: its two parts, [`DistanceKernel::distances_split`]) or, when it
    /// cannot be, copied to the bounce buffer, its first two cache lines asked for as it is
    /// found. A batch of whole vectors only goes to [`DistanceKernel::distances`].
    /// Errors: `Corrupt` for a slot past the capacity; `Invalid` for a short `keys` or bounce
    /// buffer or a position out of range; the store's.
    #[inline(never)]
    fn dist_from(&mut self, q: *const u32, ids: &[u32], keys: &mut [u32]) -> IResult<(), B::Error> {
        let (ix, b, bounce) = (self.ix, self.b, &mut *self.bounce);
        let position = |id: u32| {
            ix.check_slot(id)?;
            let (blk, off) = ix.data_pos(id)?;
            b.prefetch(blk);
            Ok((blk, off))
        };
        let locate = |i: usize,
                      id: u32,
                      (blk, off): (u64, usize),
                      held: &mut Held<B::Ref<'a>, { 2 * BATCH }>,
                      split: &mut Split| {
            if let Some((r, off)) = ix.vector_in_place(b, blk, off)? {
                let v = span(held.hold(r)?, off, ix.vec_bytes, "vector data position")?;
                prefetch_two_lines(b, v);
                return Ok(v.as_ptr().cast::<u32>());
            }
            // Across a block boundary: both blocks held, the vector read in place in its two
            // parts by the distance kernel (no copy), when the first part is a whole number of
            // 8-float groups and the rest fits the next block; else copied to bounce memory.
            let head = BLOCK_SIZE.saturating_sub(off);
            let rest = ix.vec_bytes.checked_sub(head).filter(|&r| r > 0 && r <= BLOCK_SIZE);
            let parts = u32::try_from(head / 4).ok().filter(|_| off % 32 == 0 && head > 0);
            let (tail, at) = (split.tails.get_mut(i), split.at.get_mut(i));
            if let (Some(rest), Some(parts), Some(tail), Some(at)) = (rest, parts, tail, at) {
                let next = blk.checked_add(1).ok_or_else(|| bad_pos("vector data position", id))?;
                let v = span(held.hold(rd(b, blk)?)?, off, head, "vector data position")?;
                prefetch_two_lines(b, v);
                let first = v.as_ptr().cast::<u32>();
                *tail = span(held.hold(rd(b, next)?)?, 0, rest, "vector data position")?.as_ptr().cast::<u32>();
                *at = parts;
                split.any = true;
                return Ok(first);
            }
            let dst = bounce_slot(bounce, ix.words, i).ok_or_else(|| IndexError::Invalid("bounce buffer"))?;
            ix.read_vector(b, id, dst)?;
            Ok(dst.as_ptr())
        };
        Self::batches(ids, keys, position, locate, |ptrs: &[*const u32], split: &Split, out: &mut [u32]| {
            let n = ptrs.len();
            let (Some(tails), Some(at)) = (split.tails.get(..n), split.at.get(..n)) else {
                return Err(IndexError::Invalid("batch size"));
            };
            // SAFETY: `q` points at the query (dim words) or a bounce buffer; each of `ptrs`
            // (none null: `batches` located every slot of the batch) points at `dim` words
            // inside a block `batches` holds until after this call, or inside a bounce buffer,
            // or, with a tail, at the first `at[i]` words of the vector at the end of one held
            // block, the rest at `tails[i]` at the start of the next, also held; 4-byte aligned
            // (slots are 32-byte aligned).
            unsafe {
                if split.any {
                    ix.dist.distances_split(ix.metric, ix.dim, q, ptrs, tails, at, out);
                } else {
                    ix.dist.distances(ix.metric, ix.dim, q, ptrs, out);
                }
            }
            for k in out.iter_mut() {
                *k = crate::distance::key_from_bits(*k);
            }
            Ok(())
        })
    }

    /// Keys of the distances from the SQ8 code `qc` to the codes of `ids`, batch by batch,
    /// into `keys[..ids.len()]`.
    #[inline(never)]
    fn code_dist(&self, qc: &[u8], ids: &[u32], keys: &mut [u32]) -> IResult<(), B::Error> {
        let (ix, b) = (self.ix, self.b);
        let len = u32::try_from(qc.len()).map_err(|_| IndexError::Invalid("code length"))?;
        // The codes of a build (`IndexMem::set_build_codes`) are a table in memory; else in
        // the codes region.
        let position = |id: u32| {
            ix.check_slot(id)?;
            if let Some(t) = ix.build_codes {
                let c = table_code(t, ix.dim, id)?;
                b.prefetch_memory(c.as_ptr());
                return Ok(None);
            }
            let pos = ix.code_pos(id)?.ok_or_else(|| IndexError::Invalid("no codes"))?;
            b.prefetch(pos.0);
            Ok(Some(pos))
        };
        let locate =
            |_: usize, id: u32, pos: Option<(u64, usize, usize)>, held: &mut Held<B::Ref<'a>, BATCH>, _: &mut ()| {
                let c = match (pos, ix.build_codes) {
                    (Some((blk, off, clen)), _) => span(held.hold(rd(b, blk)?)?, off, clen, "vector code position")?,
                    (None, Some(t)) => table_code(t, ix.dim, id)?,
                    (None, None) => return Err(IndexError::Invalid("no codes")),
                };
                if c.len() != qc.len() {
                    return Err(IndexError::Invalid("code length"));
                }
                Ok(c.as_ptr())
            };
        Self::batches(ids, keys, position, locate, |ptrs: &[*const u8], _: &(), out: &mut [u32]| {
            // SAFETY: `qc` holds `len` bytes; each pointer of the batch comes from `locate`
            // (none is null) and points at `len` bytes inside a block `batches` holds until
            // this returns, or inside the build's code table.
            unsafe { ix.dist.code_distances(ix.metric, len, qc.as_ptr(), ptrs, out) };
            Ok(())
        })
    }

    /// Keys of the PQ distances from the query whose table `t` is to the codes of `ids`,
    /// batch by batch, into `keys[..ids.len()]`.
    #[inline(never)]
    fn pq_dist(&self, t: &[u32], ids: &[u32], keys: &mut [u32]) -> IResult<(), B::Error> {
        let (ix, b) = (self.ix, self.b);
        let p = ix.pq.ok_or_else(|| IndexError::Invalid("no pq codes"))?;
        if t.len() < pq::table_words(p.m) {
            return Err(IndexError::Invalid("pq table"));
        }
        let position = |id: u32| {
            ix.check_slot(id)?;
            let pos = ix.code_pos(id)?.ok_or_else(|| IndexError::Invalid("no codes"))?;
            b.prefetch(pos.0);
            Ok(pos)
        };
        let locate =
            |_: usize,
             _: u32,
             (blk, off, clen): (u64, usize, usize),
             held: &mut Held<B::Ref<'a>, BATCH>,
             _: &mut ()| { Ok(span(held.hold(rd(b, blk)?)?, off, clen, "vector code position")?.as_ptr()) };
        Self::batches(ids, keys, position, locate, |ptrs: &[*const u8], _: &(), out: &mut [u32]| {
            // SAFETY: `t` holds `table_words(m)` words (checked above); each pointer of the
            // batch comes from `locate` (none is null) and points at the `m` bytes of a code
            // inside a block `batches` holds until this returns.
            unsafe { ix.dist.pq_distances(ix.metric, p.m, t.as_ptr(), ptrs, out) };
            Ok(())
        })
    }

    /// The batch loop of the distance walks ([`Self::dist_from`], [`Self::code_dist`],
    /// [`Self::pq_dist`]): `ids` in batches of at most [`BATCH`]. For each batch, first every
    /// slot checked and `position(id)` found once (the store asked there for the blocks, so
    /// that the kernel reads those it does not hold at once, not one by one as they are
    /// located); then `locate(i, id, position, held, side)` gives where the data of id `i` of
    /// the batch is, holding its blocks in `held` and noting in `side` what else the kernel
    /// needs (`S::default()` per batch; `H` the borrows a batch may hold); then
    /// `kernel(located, side, out)` computes the keys
    /// of the batch into its part of `keys[..ids.len()]`, and only after that are its blocks
    /// released. Generic, so each caller gets its own inlined copy: no allocation, no
    /// indirect call. Errors: `Invalid` for a short `keys`; those of the closures.
    fn batches<P: Copy + Default, T, S: Default, const H: usize>(
        ids: &[u32],
        keys: &mut [u32],
        mut position: impl FnMut(u32) -> IResult<P, B::Error>,
        mut locate: impl FnMut(usize, u32, P, &mut Held<B::Ref<'a>, H>, &mut S) -> IResult<*const T, B::Error>,
        mut kernel: impl FnMut(&[*const T], &S, &mut [u32]) -> IResult<(), B::Error>,
    ) -> IResult<(), B::Error> {
        let keys = keys.get_mut(..ids.len()).ok_or_else(|| IndexError::Invalid("key buffer"))?;
        // Batch by batch with split_at (see `put_words` on why not a zip of chunks); `keys`
        // has the length of `ids`, so both splits are in bounds.
        let (mut ids_rest, mut keys_rest) = (ids, keys);
        while !ids_rest.is_empty() {
            let n = ids_rest.len().min(BATCH);
            let (chunk, ir) = ids_rest.split_at(n);
            let (out, kr) = core::mem::take(&mut keys_rest).split_at_mut(n);
            (ids_rest, keys_rest) = (ir, kr);
            let mut pos = [P::default(); BATCH];
            for (p, &id) in pos.iter_mut().zip(chunk) {
                *p = position(id)?;
            }
            let mut held = Held::new();
            let mut side = S::default();
            let mut located = [core::ptr::null::<T>(); BATCH];
            for (i, ((&id, &p), l)) in chunk.iter().zip(pos.iter()).zip(located.iter_mut()).enumerate() {
                *l = locate(i, id, p, &mut held, &mut side)?;
            }
            let located = located.get(..n).ok_or_else(|| IndexError::Invalid("batch size"))?;
            kernel(located, &side, out)?;
            drop(held);
        }
        Ok(())
    }

    /// Where the list of `node` at `level` lies; `None` above the node's level.
    /// Errors: `Corrupt` for a free slot (a link to it) or a bad record head.
    fn list_pos(&self, node: u32, level: u8) -> IResult<Option<LinkList>, B::Error> {
        let h = self.ix.head(self.b, node)?;
        if h.flags == 0 || h.flags == NODE_PENDING {
            return Err(IndexError::Corrupt(FormatError::Corrupt {
                what: "link to a vector slot not in the graph",
                value: u64::from(node),
            }));
        }
        // Level 0: count u16, level u8, flags u8, upper u32, links. Above: count u32, links.
        let ((blk, at), level0, head, cap) = if level == 0 {
            (self.ix.geo.level0_pos(node), true, 8, self.ix.geo.m0)
        } else if level > h.level {
            return Ok(None);
        } else {
            (self.ix.upper_pos(h.upper, level)?, false, 4, self.ix.geo.m)
        };
        let links = at.checked_add(head).ok_or_else(|| IndexError::Invalid("hnsw record position"))?;
        Ok(Some(LinkList { blk, at, links, level0, cap: cap as usize }))
    }
}

impl<B: BlockStore> Store for GraphStore<'_, '_, B> {
    type Error = IndexError<B::Error>;

    fn prefetch_links(&mut self, node: u32, level: u8) {
        // Level 0 only: the upper levels' records are few and stay cached.
        if level == 0 && self.ix.check_slot(node).is_ok() {
            let (blk, off) = self.ix.geo.level0_pos(node);
            self.b.prefetch_line(blk, off);
            // The slot's entry in the level table, which `head` checks the record against.
            self.b.prefetch_memory(self.ix.upper.as_ptr().wrapping_add(node as usize).cast());
        }
    }

    fn dist_query(&mut self, ids: &[u32], keys: &mut [u32]) -> IResult<(), B::Error> {
        // The three walks are `#[inline(never)]`: inlined here, their batch arrays (2-3.5 KiB
        // each) shared one frame under every walk's own (`scripts/stack-check`).
        if let Some(t) = self.pq_table {
            return self.pq_dist(t, ids, keys);
        }
        if let Some(qc) = self.code_q {
            return self.code_dist(qc, ids, keys);
        }
        // The connections back (`VecIndex::connect_back`) have no query.
        if self.query.len() < self.ix.dim as usize {
            return Err(IndexError::Invalid("distance to a store without a query"));
        }
        let q = self.query.as_ptr();
        self.dist_from(q, ids, keys)
    }

    fn expanded_key(&mut self, node: u32, level: u8) -> IResult<Option<u32>, B::Error> {
        // Level 0 of a walk on PQ codes over node records: the vector is in the record block
        // just read (held by the store), so its exact distance costs no read.
        if level != 0 || self.pq_table.is_none() || !self.ix.geo.node_records || self.query.len() < self.ix.dim as usize
        {
            return Ok(None);
        }
        let mut key = [0u32; 1];
        let q = self.query.as_ptr();
        self.dist_from(q, &[node], &mut key)?;
        Ok(Some(key[0]))
    }

    fn dist_pair(&mut self, a: u32, ids: &[u32], keys: &mut [u32]) -> IResult<(), B::Error> {
        if self.pairs_on_codes {
            let ix = self.ix;
            let code = ix.build_code(self.b, a)?.ok_or_else(|| IndexError::Invalid("no codes"))?;
            return self.code_dist(code.bytes()?, ids, keys);
        }
        // `a` read in place (its borrow held until the distances are done), or copied into
        // the last bounce slot (the batch uses the first BATCH).
        let (ix, b) = (self.ix, self.b);
        ix.check_slot(a)?;
        let (blk, off) = ix.data_pos(a)?;
        if let Some((r, off)) = ix.vector_in_place(b, blk, off)? {
            let q = span(&r, off, ix.vec_bytes, "vector data position")?.as_ptr().cast::<u32>();
            return self.dist_from(q, ids, keys);
        }
        let buf = bounce_slot(self.bounce, ix.words, PAIR_SLOT).ok_or_else(|| IndexError::Invalid("bounce buffer"))?;
        ix.read_vector(b, a, buf)?;
        let q = buf.as_ptr();
        self.dist_from(q, ids, keys)
    }

    fn links(&mut self, node: u32, level: u8, out: &mut [u32]) -> IResult<usize, B::Error> {
        let Some(l) = self.list_pos(node, level)? else { return Ok(0) };
        let r = rd(self.b, l.blk)?;
        let count = if l.level0 {
            usize::from(u16_at(&r, l.at, "hnsw level-0 record")?)
        } else {
            u32_at(&r, l.at, "hnsw upper record")? as usize
        };
        if count > l.cap || count > out.len() {
            return Err(IndexError::Corrupt(FormatError::Corrupt { what: "hnsw link count", value: count as u64 }));
        }
        // count <= cap <= 256: the byte length is exact.
        let raw = span(&r, l.links, count.saturating_mul(4), "hnsw links position")?;
        let mut s = raw;
        for o in out.iter_mut().take(count) {
            let Some((w, r)) = s.split_first_chunk::<4>() else { break };
            let v = u32::from_le_bytes(*w);
            self.ix.check_slot(v)?;
            *o = v;
            s = r;
        }
        Ok(count)
    }

    fn set_links(&mut self, node: u32, level: u8, links: &[u32]) -> IResult<(), B::Error> {
        let Some(l) = self.list_pos(node, level)? else {
            return Err(IndexError::Invalid("set_links above the node's level"));
        };
        if links.len() > l.cap {
            return Err(IndexError::Invalid("too many links"));
        }
        if l.level0 {
            let mut h = self.ix.head(self.b, node)?;
            h.count = u16::try_from(links.len()).map_err(|_| IndexError::Invalid("too many links"))?;
            self.ix.set_head(self.b, node, &h)?;
        }
        let mut w = wr(self.b, l.blk)?;
        if !l.level0 {
            put_count(&mut w, l.at, links.len());
        }
        // links.len() <= cap <= 256: the byte length is exact.
        let dst = span_mut(&mut w, l.links, links.len().saturating_mul(4), "hnsw links position")?;
        put_words(dst, links);
        Ok(())
    }

    fn is_deleted(&mut self, node: u32) -> IResult<bool, B::Error> {
        if self.ix.no_tombstones {
            return Ok(false);
        }
        let h = self.ix.head(self.b, node)?;
        if h.flags == 0 || h.flags == NODE_PENDING {
            return Err(IndexError::Corrupt(FormatError::Corrupt {
                what: "link to a vector slot not in the graph",
                value: u64::from(node),
            }));
        }
        Ok(h.flags & NODE_DELETED != 0)
    }

    fn invalid(&self, what: &'static str) -> IndexError<B::Error> {
        IndexError::Invalid(what)
    }
}

/// The vectors of a float32 batch ([`GraphStore::dist_from`]) that cross a block: for vector
/// `i` of the batch, the start of its second part in the next block (`tails[i]`, null for a
/// whole vector) and the words of its first part (`at[i]`); `any` if there is one.
struct Split {
    tails: [*const u32; BATCH],
    at: [u32; BATCH],
    any: bool,
}

impl Default for Split {
    fn default() -> Self {
        Split { tails: [core::ptr::null(); BATCH], at: [0; BATCH], any: false }
    }
}

/// The block borrows of one batch of [`GraphStore::batches`], at most `N` (two a float32
/// vector, which may cross a block; one a code), held until its distance kernel is done and
/// released together: `N` kept to what the walk needs, as this sits in the frame of each
/// distance walk (`scripts/stack-check`). Storage left uninitialised past
/// the borrows taken, so a batch costs only what it holds (a zeroed array of `Option`s cost
/// 1 KiB of stores a batch, 3% of a float32 search's time on pydocs-minilm).
struct Held<R, const N: usize> {
    refs: [core::mem::MaybeUninit<R>; N],
    /// `refs[..n]` are initialised.
    n: usize,
}

impl<R, const N: usize> Held<R, N> {
    fn new() -> Self {
        Held { refs: [const { core::mem::MaybeUninit::uninit() }; N], n: 0 }
    }

    /// Keeps `r` until `self` is dropped; gives it back borrowed.
    /// Errors: `Invalid` past `N` borrows (never: a batch holds at most that).
    fn hold<E>(&mut self, r: R) -> IResult<&R, E> {
        let slot = self.refs.get_mut(self.n).ok_or(IndexError::Invalid("held blocks"))?;
        self.n = self.n.saturating_add(1);
        Ok(slot.write(r))
    }
}

impl<R, const N: usize> Drop for Held<R, N> {
    fn drop(&mut self) {
        for r in self.refs.iter_mut().take(self.n) {
            // SAFETY: `refs[..n]` were written by `hold` and are dropped once, here.
            unsafe { r.assume_init_drop() };
        }
    }
}

/// Writes `words` little-endian into `dst`, 4 bytes each, as far as `dst` holds them. A loop of
/// `split_first_chunk_mut`, not a zip over `chunks_exact_mut`: that zip's generic size code
/// holds a division whose panic path the 6.12 objtool does not know as noreturn.
fn put_words(dst: &mut [u8], words: &[u32]) {
    let mut d = dst;
    for x in words {
        let Some((w, r)) = core::mem::take(&mut d).split_first_chunk_mut::<4>() else { break };
        *w = x.to_le_bytes();
        d = r;
    }
}

impl VecIndex<'_> {
    /// Links `slot` back into the graph with `vector` (its own vector, `dim` float bit
    /// patterns, finite): the graph half of [`Self::insert`], for a rebuild of the HNSW region
    /// from the vectors (`fsck.vexfs -y`). The slot keeps its number: its bit in the vector
    /// bitmap, its vector and its map entry stay as they are; its level-0 record must be clear
    /// (the rebuild zeroes the region first). Its record is written, its upper records'
    /// counts cleared, it is linked by [`hnsw::insert`] (Malkov & Yashunin, Algorithm 1) with
    /// the superblock's `m` and `ef_construction`, and the header's entry point and live
    /// count follow. Errors: `Invalid` for a vector of the wrong dimension, a slot not marked
    /// in use or already in the graph; `Corrupt` for a slot out of range or a live count at
    /// `u32::MAX`; the store's as `Io`.
    pub fn reinsert<B: BlockStore, V: Visited + ?Sized>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        visited: &mut V,
        slot: u32,
        vector: &[u32],
    ) -> IResult<(), B::Error> {
        if vector.len() != self.dim as usize {
            return Err(IndexError::Invalid("vector dimension"));
        }
        let live = self.next_live()?;
        if !self.slot_in_use(b, slot)? {
            return Err(IndexError::Invalid("reinserting a slot free in the vector bitmap"));
        }
        if self.head(b, slot)?.flags != 0 {
            return Err(IndexError::Invalid("reinserting a slot already in the graph"));
        }
        self.link(b, s, visited, slot, vector, live)
    }
}
