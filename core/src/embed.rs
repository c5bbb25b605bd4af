//! The embedding layer, written once for the kernel and the offline writer: a file's chunks
//! (its embeddings) set, replaced, read and removed, its chunk list read and stored, and k-NN
//! searches whose hits name files.
//!
//! The callers supply three things, each a thin adapter:
//! - an [`Alloc`]: the per-index memory ([`IndexMem`]) is allocated once, at mount or when an
//!   image is opened, sized by the superblock and the limits below; no operation allocates.
//! - a [`BlockStore`] over the vector regions and a [`DistanceKernel`] (see [`crate::vindex`]);
//! - [`ChunkFiles`]: the file whose chunks change, locked for the short moments its chunk list
//!   is read or stored ([`ChunkFile`]).
//!
//! Locking is the caller's: one [`IndexMem`] operation at a time per filesystem (the kernel's
//! index lock), which also serialises every change of any file's chunk list.
//!
//! Each public operation of [`IndexMem`] is one logical change of the index: the place where
//! the journal makes a transaction of it (every block it changes goes through
//! [`BlockStore::write`] or [`ChunkFile::write_block`]).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![deny(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use crate::distance::{bits_from_key, first_nonfinite, DistanceKernel};
use crate::error::FormatError;
pub use crate::format::inode::ChunkFields;
use crate::format::inode::INLINE_VEC_IDS;
use crate::format::superblock::{Extent64, Region, Superblock};
use crate::format::vector::{
    check_vec_ids_block, vec_ids_block_build, vec_ids_block_count, vec_ids_block_get, HnswHeader, MapEntry,
    NODE_IN_GRAPH, NODE_PENDING,
};
use crate::hnsw::{Cand, EpochVisited, Knn, Scratch};
use crate::index_error::{IResult, IndexError, Reject};
use crate::io::BlockStore;
use crate::sq8;
use crate::vindex::{build_code_stride, fill_upper_table, purge_wanted, IndexScratch, VecIndex, BATCH};
use core::num::NonZeroUsize;
use core::ops::{Deref, DerefMut};

pub use crate::format::vector::MAX_CHUNKS;

/// Largest `k` of one search (`VEXFS_MAX_K` of include/vexfs.h).
pub const MAX_K: usize = 1024;
/// Largest `ef_search` (`VEXFS_MAX_EF`).
pub const MAX_EF: usize = 4096;
/// `ef_search` when the caller passes 0: `max(k, DEFAULT_EF)`.
pub const DEFAULT_EF: usize = 64;

/// Checks a search's `k` and `ef` (0 = `max(k, DEFAULT_EF)`) against the limits and an index
/// whose memory holds candidate lists of `max_ef`; returns the ef to use.
/// Errors: [`Reject::K`] for k outside `1..=MAX_K`, [`Reject::Ef`] for ef below k or above
/// `min(MAX_EF, max_ef)` (both `EINVAL`).
pub fn check_search(k: usize, ef: usize, max_ef: usize) -> Result<usize, Reject> {
    if k == 0 || k > MAX_K {
        return Err(Reject::K { k, max: MAX_K });
    }
    let max = MAX_EF.min(max_ef);
    let ef = if ef == 0 { k.max(DEFAULT_EF) } else { ef };
    if ef < k || ef > max {
        return Err(Reject::Ef { ef, k, max });
    }
    Ok(ef)
}

/// A bound on the blocks one SET of `chunks` chunks (replacing as many) changes, for a
/// filesystem `disk`: per new vector its data (`vec_stride` bytes, possibly across a block
/// boundary), its map and bitmap blocks, its level-0 record and two upper-level records, the
/// records of the `2m` level-0 and `2m` upper-level neighbours it links to, and the header;
/// per replaced vector its map, bitmap and record blocks; then the inode, its chunk-list block
/// and a block-bitmap block; with SQ8 or PQ, one more block per new vector (its code, never across a
/// block boundary). The kernel refuses a SET whose bound exceeds what one transaction may take
/// of its journal (`ENOSPC`). Saturates.
pub fn set_blocks_bound(disk: &Superblock, chunks: u64) -> u64 {
    let m = u64::from(disk.hnsw_m);
    let data = u64::from(disk.vec_stride)
        .div_ceil(crate::format::BLOCK_SIZE as u64)
        .saturating_add(1)
        .saturating_add(u64::from(disk.has_codes()));
    let insert = data.saturating_add(6).saturating_add(m.saturating_mul(4));
    chunks.saturating_mul(insert.saturating_add(3)).saturating_add(3)
}

/// How a SET makes its vectors searchable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexing {
    /// Each vector is linked into the HNSW graph before the operation returns.
    Now,
    /// Each vector is stored pending ([`VecIndex::insert_pending`]: the vector write-ahead
    /// log) and linked later by [`IndexMem::index_pending`]; searches scan pending vectors
    /// exactly meanwhile.
    Deferred,
}

/// A bound on the blocks one SET of `chunks` chunks with [`Indexing::Deferred`] changes, for
/// a filesystem `disk`: per new vector its data (as in [`set_blocks_bound`]), map, bitmap and
/// level-0 record blocks, per replaced vector its map, bitmap and record blocks (a pending one
/// is freed, a linked one becomes a tombstone), each capped by the blocks of its region (a SET
/// cannot change more blocks of a region than it has), with SQ8 its code block; then the HNSW
/// header, the inode, its chunk-list block, a block-bitmap block and the superblock. A purge of
/// tombstones (when a removal leaves a quarter of the graph deleted, or no slot is free) is not
/// in the bound. Saturates.
pub fn set_blocks_bound_deferred(disk: &Superblock, chunks: u64) -> u64 {
    let data = u64::from(disk.vec_stride).div_ceil(crate::format::BLOCK_SIZE as u64).saturating_add(1);
    let capped = |r: Region, n: u64| n.min(disk.region(r).blocks);
    let twice = chunks.saturating_mul(2);
    capped(Region::VecData, chunks.saturating_mul(data))
        .saturating_add(capped(Region::VecMap, twice))
        .saturating_add(capped(Region::VecBitmap, twice))
        .saturating_add(twice.saturating_add(1).min(disk.graph_record_blocks()))
        .saturating_add(capped(Region::VecCodes, chunks))
        .saturating_add(4)
}

/// A bound on the blocks one removal of a file changes (an unlink, or a rename over it, whose
/// last reference frees it; a truncate to 0): every block-bitmap block (its data blocks may lie
/// anywhere), per chunk (at most [`MAX_CHUNKS`]) the map and level-0 record blocks of its
/// vector, capped by their regions, and 16 blocks for the rest (the inode's table block, the
/// inode bitmap, its extent and vector-id blocks, the superblock, the HNSW header, the directory
/// blocks and inodes of a rename). Saturates.
pub fn delete_blocks_bound(disk: &Superblock) -> u64 {
    let chunks = MAX_CHUNKS as u64;
    disk.region(Region::BlockBitmap)
        .blocks
        .saturating_add(chunks.min(disk.region(Region::VecMap).blocks))
        .saturating_add(chunks.saturating_add(1).min(disk.graph_record_blocks()))
        .saturating_add(16)
}

/// The blocks of the largest single transaction step of a filesystem with the parameters of
/// `disk`: a deferred SET of [`MAX_CHUNKS`] chunks replacing as many
/// ([`set_blocks_bound_deferred`]), the removal of a file ([`delete_blocks_bound`]) or, with
/// `FEATURE_INCOMPAT_DIR_INDEX`, the split of a directory bucket
/// ([`crate::dir_index::split_blocks_bound`]), whichever is larger. Every other operation
/// changes fewer blocks.
pub fn worst_step_blocks(disk: &Superblock) -> u64 {
    let split = if disk.feature_incompat & crate::format::superblock::FEATURE_INCOMPAT_DIR_INDEX != 0 {
        crate::dir_index::split_blocks_bound(disk.region(Region::BlockBitmap).blocks)
    } else {
        0
    };
    set_blocks_bound_deferred(disk, MAX_CHUNKS as u64).max(delete_blocks_bound(disk)).max(split)
}

/// The fewest journal blocks (its superblock included) a filesystem like `disk` needs for a
/// read-write mount: the kernel admits a handle when its credits fit, with the running
/// transaction and the other open handles, in three quarters of the log (`kmod/txn.rs`), so
/// the log records of [`worst_step_blocks`] ([`crate::journal::txn_blocks`]) must fit three
/// quarters of the log: `4/3` of them, plus the journal superblock and rounding. mkfs sizes
/// the journal to at least this; the kernel refuses a read-write mount below it (`EINVAL`).
pub fn min_journal_blocks(disk: &Superblock) -> u64 {
    crate::journal::txn_blocks(worst_step_blocks(disk)).saturating_mul(4).div_ceil(3).saturating_add(8)
}

/// Checks the vectors of a SET: `data` holds whole vectors of `dim` float bit patterns, at
/// least one, all finite, and chunks `first .. first + count` stay within [`MAX_CHUNKS`].
/// Returns `count`. Errors: `NoVectors`, `Dimension` (not a multiple of `dim`),
/// `TooManyChunks` (`E2BIG`), `NonFinite`.
pub fn check_vectors(data: &[u32], dim: u32, first: usize) -> Result<usize, Reject> {
    if data.is_empty() {
        return Err(Reject::NoVectors);
    }
    let dimension = Reject::Dimension { got: data.len(), want: dim };
    let d = NonZeroUsize::new(dim as usize).ok_or(dimension)?;
    if data.len() % d != 0 {
        return Err(dimension);
    }
    let count = data.len() / d;
    match first.checked_add(count) {
        Some(end) if end <= MAX_CHUNKS => {}
        _ => return Err(Reject::TooManyChunks { end: first.saturating_add(count) }),
    }
    if let Some(i) = first_nonfinite(data) {
        return Err(Reject::NonFinite { vector: i / d, component: i % d });
    }
    Ok(count)
}

/// Memory of the caller's kind: `KVVec` in the kernel, `Vec` in the tools.
pub trait Alloc {
    /// A buffer of `T`s.
    type Vec<T: Copy>: DerefMut<Target = [T]>;
    /// Allocation failure (`AllocError` in the kernel).
    type Error;
    /// `n` copies of `value`.
    fn filled<T: Copy>(n: usize, value: T) -> Result<Self::Vec<T>, Self::Error>;
}

/// One file, locked (the kernel holds its metadata lock): its chunk-list fields and the block
/// that holds the rest of its chunk list.
pub trait ChunkFile {
    /// The storage's error (same as the index's [`BlockStore`]).
    type Error;
    /// A block borrowed for reading.
    type Ref<'a>: Deref<Target = [u8]>
    where
        Self: 'a;
    /// The file's inode number: owner of its vector-id block and of its chunks' map entries.
    fn ino(&self) -> u64;
    /// The chunk-list fields as they stand.
    fn fields(&self) -> ChunkFields;
    /// Replaces the chunk-list fields (the inode is written with them).
    fn set_fields(&mut self, fields: ChunkFields) -> Result<(), Self::Error>;
    /// Block `n` of the data region, for reading.
    fn read_block(&self, n: u64) -> Result<Self::Ref<'_>, Self::Error>;
    /// Writes block `n`: `build` fills its bytes, which start as the block's contents, or zero
    /// when `fresh` (a block just allocated).
    fn write_block(&mut self, n: u64, fresh: bool, build: &mut dyn FnMut(&mut [u8])) -> Result<(), Self::Error>;
    /// Allocates a data block for the file (counted in its block count). Errors: `ENOSPC`.
    fn alloc_block(&mut self) -> Result<u64, Self::Error>;
    /// Frees data block `n` of the file (uncounted from its block count).
    fn free_block(&mut self, n: u64) -> Result<(), Self::Error>;
}

/// The file whose chunks an operation changes; [`ChunkFiles::lock`] is held only while its
/// chunk list is read or stored, never across index work.
pub trait ChunkFiles {
    /// The storage's error.
    type Error;
    /// The file, locked.
    type Locked<'a>: ChunkFile<Error = Self::Error>
    where
        Self: 'a;
    /// Locks the file (the kernel: the filesystem's metadata lock, the inode loaded).
    fn lock(&mut self) -> Result<Self::Locked<'_>, Self::Error>;
}

/// Reads the chunk list of `file` into `out` (room for [`MAX_CHUNKS`]); returns the chunk
/// count. `data` is the filesystem's data region (where the vector-id block must lie).
/// Errors: `Corrupt` for a count past [`MAX_CHUNKS`], a vector-id block that is missing,
/// unexpected, outside the data region, not this file's, or whose count disagrees with the
/// inode's; the store's errors as `Io`.
pub fn read_chunk_list<F: ChunkFile>(file: &F, data: Extent64, out: &mut [u32]) -> IResult<usize, F::Error> {
    let f = file.fields();
    let n = f.count as usize;
    if n > MAX_CHUNKS {
        return Err(FormatError::Corrupt { what: "inode vector count", value: n as u64 }.into());
    }
    if (n > INLINE_VEC_IDS) != (f.block != 0) {
        return Err(FormatError::Corrupt { what: "inode vector id block", value: f.block }.into());
    }
    let out = out.get_mut(..n).ok_or_else(|| IndexError::Invalid("chunk list buffer"))?;
    for (d, s) in out.iter_mut().zip(f.inline.iter()) {
        *d = *s;
    }
    if n > INLINE_VEC_IDS {
        if !data.contains(f.block) {
            return Err(FormatError::Corrupt { what: "vector id block outside the data region", value: f.block }.into());
        }
        let b = file.read_block(f.block).map_err(IndexError::Io)?;
        check_vec_ids_block(&b, f.block, file.ino())?;
        let count = vec_ids_block_count(&b)?;
        let rest = out.get_mut(INLINE_VEC_IDS..).ok_or_else(|| IndexError::Invalid("chunk list buffer"))?;
        if count != rest.len() {
            return Err(FormatError::Corrupt { what: "vector id block count vs inode", value: count as u64 }.into());
        }
        for (i, d) in rest.iter_mut().enumerate() {
            *d = vec_ids_block_get(&b, i)?;
        }
    }
    Ok(n)
}

/// Stores `ids` as the chunk list of `file`: inline first, the rest in a vector-id block
/// allocated on demand and freed when no longer needed. Errors: `TooManyChunks` past
/// [`MAX_CHUNKS`]; the store's errors (`ENOSPC` for the block) as `Io`, with a block allocated
/// here freed again.
pub fn store_chunk_list<F: ChunkFile>(file: &mut F, ids: &[u32]) -> IResult<(), F::Error> {
    if ids.len() > MAX_CHUNKS {
        return Err(Reject::TooManyChunks { end: ids.len() }.into());
    }
    let mut f = file.fields();
    let ino = file.ino();
    if let Some(rest) = ids.get(INLINE_VEC_IDS..).filter(|r| !r.is_empty()) {
        let fresh = f.block == 0;
        if fresh {
            f.block = file.alloc_block().map_err(IndexError::Io)?;
        }
        let blk = f.block;
        if let Err(e) = file.write_block(blk, fresh, &mut |b| vec_ids_block_build(b, blk, ino, rest)) {
            if fresh {
                // Best effort: the write's error is the one to report.
                let _ = file.free_block(blk);
            }
            return Err(IndexError::Io(e));
        }
    } else if f.block != 0 {
        file.free_block(f.block).map_err(IndexError::Io)?;
        f.block = 0;
    }
    f.inline = [0; INLINE_VEC_IDS];
    for (d, s) in f.inline.iter_mut().zip(ids) {
        *d = *s;
    }
    // At most MAX_CHUNKS (checked above), which fits in u32.
    f.count = u32::try_from(ids.len()).map_err(|_| Reject::TooManyChunks { end: ids.len() })?;
    file.set_fields(f).map_err(IndexError::Io)
}

/// One search hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hit {
    /// The vector slot.
    pub slot: u32,
    /// Order-preserving distance key ([`crate::distance::key_from_bits`]).
    pub key: u32,
    /// Owning file.
    pub ino: u64,
    /// Chunk of the file.
    pub chunk: u32,
}

impl Hit {
    /// The distance's float bit pattern, in the filesystem's metric (squared for l2).
    pub fn dist_bits(&self) -> u32 {
        bits_from_key(self.key)
    }

    /// The distance, in the filesystem's metric (squared for l2). Userspace only.
    #[cfg(feature = "std")]
    pub fn distance(&self) -> f32 {
        f32::from_bits(self.dist_bits())
    }
}

/// The per-index memory of one filesystem, allocated once: the upper-record table
/// (`capacity + 1` words), the HNSW candidate pool (`max(max_ef, ef_construction)` entries),
/// link scratch ([`Scratch::work_len`]), bounce buffers ([`IndexScratch::bounce_len_for`]), the
/// visited set (2 bytes per slot), search results (`max(MAX_K, max_ef)`: a filtered search
/// looks at up to ef candidates) and two chunk lists
/// ([`MAX_CHUNKS`] each), the set of pending slots (1 bit per slot: the vector write-ahead
/// log's records not yet in the graph) and a vector buffer; plus the HNSW header and the
/// free-slot hint kept between operations.
/// About `6.2 * capacity + 56 * max_ef + 9 * stride` bytes.
pub struct IndexMem<A: Alloc> {
    sb: Superblock,
    upper: A::Vec<u32>,
    /// The memory of the operations run through [`Self::with_index`] (and of the searches
    /// that are given none of their own).
    pad: SearchPad<A>,
    old_ids: A::Vec<u32>,
    new_ids: A::Vec<u32>,
    /// Bit `s % 64` of word `s / 64`: slot `s` is pending (flags [`NODE_PENDING`]).
    pending: A::Vec<u64>,
    /// Where the next [`Self::index_pending`] looks first (a word of `pending`).
    pending_cursor: usize,
    /// A purge in steps ([`Self::purge_step`]): the tombstones to free (1 bit per slot), and
    /// where it stands.
    purge_set: A::Vec<u64>,
    purge: PurgePass,
    /// Whether removals leave purging to [`Self::purge_step`] (the kernel's worker).
    stepwise_purge: bool,
    /// [`VecIndex::purges`] as the last operation left it.
    purges: u32,
    /// Operations run through [`Self::with_index`] (every change to the index): an insert plan
    /// made at one count applies only at the same count ([`Self::apply_pending`]).
    changes: u64,
    header: HnswHeader,
    hint: u64,
    /// The transient SQ8 codes the graph is built on ([`Self::set_build_codes`]).
    build_codes: Option<A::Vec<u8>>,
}

/// [`VecIndex::with_header`], built on the transient SQ8 codes `build_codes` if any
/// ([`IndexMem::set_build_codes`], which checked them: an error here leaves the build on the
/// float vectors).
fn index_over<'s>(
    sb: &Superblock,
    upper: &'s [u32],
    header: HnswHeader,
    hint: u64,
    build_codes: Option<&'s [u8]>,
    dist: &'s dyn DistanceKernel,
) -> VecIndex<'s> {
    let mut ix = VecIndex::with_header(sb, upper, header, hint, dist);
    if let Some(t) = build_codes {
        let _ = ix.set_build_codes::<()>(t);
    }
    ix
}

/// Where a purge in steps stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PurgePass {
    /// None under way.
    Idle,
    /// Repairing the nodes from this slot on (the set of tombstones to free is taken).
    Repair(u32),
    /// Emptying the link lists of the tombstones of the set from this slot on.
    Isolate(u32),
    /// Freeing the tombstones of the set from this slot on.
    Free(u32),
}

/// What one [`IndexMem::purge_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeStep {
    /// Nothing to purge.
    Idle,
    /// Nodes repaired (the count of slots looked at).
    Repaired(usize),
    /// Tombstones of the set whose links were emptied.
    Isolated(usize),
    /// Tombstones freed.
    Freed(usize),
}

/// The memory one search works in: the candidate pool (`max(max_ef, ef_construction)`
/// entries), the link scratch ([`Scratch::work_len`]), the bounce buffers
/// ([`IndexScratch::bounce_len_for`]), the visited set (2 bytes per slot) and the results
/// (`max(MAX_K, max_ef)` entries). [`IndexMem`] holds one for its own operations; searches that
/// run at once, each under a shared lock of the index ([`IndexMem::search_shared`]), each need
/// one of their own ([`IndexMem::new_search_pad`]), as does the insert plan the kernel's index
/// worker makes beside them ([`IndexMem::plan_pending`]). About `2 * capacity + 40 * max_ef +
/// 10 * stride` bytes.
pub struct SearchPad<A: Alloc> {
    pool: A::Vec<Cand>,
    work: A::Vec<u32>,
    bounce: A::Vec<u32>,
    visited: EpochVisited<A::Vec<u16>>,
    results: A::Vec<(u32, u32)>,
    /// One vector (`stride / 4` words): the pending vector being linked, or the one an insert
    /// plan is made for ([`IndexMem::plan_pending`]).
    vector: A::Vec<u32>,
}

impl<A: Alloc> SearchPad<A> {
    /// A pad for the index of `sb` with a candidate pool of `pool` entries (at least 1): for
    /// [`IndexMem::search_shared`], `pool` is that memory's [`IndexMem::search_pool_len`].
    /// Errors: `Io` (the allocator's error) when memory runs out; `Corrupt` if the vector
    /// capacity cannot be addressed.
    pub fn new(sb: &Superblock, pool: usize) -> IResult<Self, A::Error> {
        let cap = usize::try_from(sb.vec_capacity)
            .ok()
            .filter(|&c| c < u32::MAX as usize)
            .ok_or(FormatError::Corrupt { what: "vector capacity", value: sb.vec_capacity })?;
        let io = IndexError::Io;
        let pool = pool.max(1);
        Ok(SearchPad {
            pool: A::filled(pool, Cand::default()).map_err(io)?,
            work: A::filled(Scratch::work_len(sb.hnsw_m), 0u32).map_err(io)?,
            bounce: A::filled(IndexScratch::bounce_len_for(sb), 0u32).map_err(io)?,
            visited: EpochVisited::new(A::filled(cap, 0u16).map_err(io)?),
            // Room for the candidates of a search at the largest ef (IndexMem::max_ef).
            results: A::filled(MAX_K.max(MAX_EF.min(pool)), (0u32, 0u32)).map_err(io)?,
            vector: A::filled((sb.vec_stride / 4) as usize, 0u32).map_err(io)?,
        })
    }

    /// The largest ef a search with this pad runs ([`MAX_EF`], or less if the pool is
    /// smaller).
    fn max_ef(&self) -> usize {
        MAX_EF.min(self.pool.len())
    }
}

/// An insert plan of a pending vector ([`IndexMem::plan_pending`]): its slot, the entry point
/// and top level planned from, and the index's change count then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingPlan {
    /// The pending slot.
    pub slot: u32,
    entry: Option<(u32, u8)>,
    top: Option<u8>,
    changes: u64,
}

/// The mutable memory an operation works in (borrowed from [`IndexMem`]).
pub struct Pad<'a, A: Alloc> {
    /// HNSW scratch and bounce buffers.
    pub scratch: IndexScratch<'a>,
    /// The visited set.
    pub visited: &'a mut EpochVisited<A::Vec<u16>>,
    /// Search results `(key, slot)`, `max(MAX_K, max_ef)` entries.
    pub results: &'a mut [(u32, u32)],
    old_ids: &'a mut [u32],
    new_ids: &'a mut [u32],
    pending: &'a mut [u64],
    vector: &'a mut [u32],
    purge_set: &'a mut [u64],
}

impl<A: Alloc> IndexMem<A> {
    /// Memory for the index of `sb` (a validated superblock), for searches with ef up to
    /// `max_ef`. The header is empty until [`Self::open`].
    /// Errors: `Io` (the allocator's error) when memory runs out; `Corrupt` if the vector
    /// capacity cannot be addressed.
    pub fn new(sb: &Superblock, max_ef: usize) -> IResult<Self, A::Error> {
        // Slots, and the upper table's `capacity + 1` entries.
        let (cap, table) = usize::try_from(sb.vec_capacity)
            .ok()
            .filter(|&c| c < u32::MAX as usize)
            .and_then(|c| Some((c, c.checked_add(1)?)))
            .ok_or(FormatError::Corrupt { what: "vector capacity", value: sb.vec_capacity })?;
        let io = IndexError::Io;
        let mut upper = A::filled(table, 0u32).map_err(io)?;
        fill_upper_table(sb, &mut upper)?;
        let pool = max_ef.max(sb.hnsw_ef_construction as usize);
        Ok(IndexMem {
            sb: sb.clone(),
            upper,
            pad: SearchPad::new(sb, pool)?,
            old_ids: A::filled(MAX_CHUNKS, 0u32).map_err(io)?,
            new_ids: A::filled(MAX_CHUNKS, 0u32).map_err(io)?,
            pending: A::filled(cap.div_ceil(64), 0u64).map_err(io)?,
            pending_cursor: 0,
            purge_set: A::filled(cap.div_ceil(64), 0u64).map_err(io)?,
            purge: PurgePass::Idle,
            stepwise_purge: false,
            purges: 0,
            changes: 0,
            header: HnswHeader::EMPTY,
            hint: 0,
            build_codes: None,
        })
    }

    /// The index over this memory, built on the transient codes if any.
    fn vindex<'s>(&'s self, dist: &'s dyn DistanceKernel) -> VecIndex<'s> {
        index_over(&self.sb, &self.upper, self.header, self.hint, self.build_codes.as_deref(), dist)
    }

    /// Builds the graph on SQ8 codes held in memory from now on
    /// ([`VecIndex::set_build_codes`]: inserts compare codes' integer distances; searches stay
    /// float32): fills `table` (zeroed, at least `capacity * `[`build_code_stride`]`(dim)`
    /// bytes, about the size of the vectors / 4) with the code at scale `2^shift`
    /// ([`sq8::quantise`]) of every slot in the graph or pending, reading their vectors (a scan
    /// of the level-0 records of all the slots), and keeps it until
    /// [`Self::clear_build_codes`]. A vector stored after this has no code: the caller links
    /// only the vectors stored before (the bulk loader's links phase).
    /// Errors: `Invalid` for a filesystem with codes of its own, a short table or a shift out
    /// of range; `Corrupt`; the store's as `Io`.
    pub fn set_build_codes<B: BlockStore>(
        &mut self,
        b: &B,
        dist: &dyn DistanceKernel,
        mut table: A::Vec<u8>,
        shift: i32,
    ) -> IResult<(), B::Error> {
        if !(sq8::MIN_SHIFT..=sq8::MAX_SHIFT).contains(&shift) {
            return Err(IndexError::Invalid("build codes shift"));
        }
        let stride = build_code_stride(self.sb.vec_dim);
        if stride == 0 {
            return Err(IndexError::Invalid("build codes of dimension 0"));
        }
        {
            let mut ix = VecIndex::with_header(&self.sb, &self.upper, self.header, self.hint, dist);
            ix.set_build_codes(&table)?;
        }
        let ix = VecIndex::with_header(&self.sb, &self.upper, self.header, self.hint, dist);
        let v = &mut self.pad.vector;
        // capacity < u32::MAX (IndexMem::new).
        let cap = u32::try_from(ix.capacity).map_err(|_| IndexError::Invalid("vector capacity"))?;
        for (slot, code) in (0..cap).zip(table.chunks_exact_mut(stride)) {
            if ix.head(b, slot)?.flags == 0 {
                continue;
            }
            ix.read_vector(b, slot, v)?;
            sq8::quantise(v.get(..ix.dim as usize).unwrap_or(&[]), shift, code);
        }
        self.build_codes = Some(table);
        Ok(())
    }

    /// Ends [`Self::set_build_codes`]: the graph is built on the float vectors again. Returns
    /// the table.
    pub fn clear_build_codes(&mut self) -> Option<A::Vec<u8>> {
        self.build_codes.take()
    }

    /// Reads and checks the HNSW header and entry point, and the PQ codebook with PQ (at
    /// mount, or when an image is opened), and finds the pending slots when the header counts some (a scan of the level-0
    /// records of the slots in use). Errors: `Corrupt` (also when the pending slots found
    /// differ from the header's count); the store's as `Io`.
    pub fn open<B: BlockStore>(&mut self, b: &B, dist: &dyn DistanceKernel) -> IResult<(), B::Error> {
        let ix = VecIndex::open(b, &self.sb, &self.upper, dist)?;
        // A PQ codebook with a NaN or an infinity would give every search garbage keys.
        ix.check_codebook(b)?;
        self.header = ix.header;
        self.hint = 0;
        self.pending_cursor = 0;
        self.pending.fill(0);
        if ix.header.pending > 0 {
            let mut found = 0u32;
            for slot in 0..u32::try_from(ix.capacity).unwrap_or(u32::MAX) {
                if slot % 4096 == 0 {
                    b.relax().map_err(IndexError::Io)?;
                }
                if ix.slot_in_use(b, slot)? && ix.head(b, slot)?.flags == NODE_PENDING {
                    set_bit(&mut self.pending, slot, true);
                    found = found.saturating_add(1);
                }
            }
            if found != ix.header.pending {
                return Err(
                    FormatError::Corrupt { what: "hnsw pending count", value: u64::from(ix.header.pending) }.into()
                );
            }
        }
        Ok(())
    }

    /// The superblock the memory was made for.
    pub fn sb(&self) -> &Superblock {
        &self.sb
    }

    /// The HNSW header as the last operation left it (live, deleted and pending counts,
    /// entry point).
    pub fn header(&self) -> HnswHeader {
        self.header
    }

    /// Where the next vector slot is looked for: the first free slot at or after `slot` (else
    /// the first before it) is the one the next insert or pending store takes. A bulk load
    /// (`mkfs.vexfs --import`) places each row's vector so; nothing else sets it.
    pub fn set_slot_hint(&mut self, slot: u32) {
        self.hint = u64::from(slot);
    }

    /// Vectors acknowledged but not yet linked into the graph.
    pub fn pending(&self) -> u32 {
        self.header.pending
    }

    /// Links up to `max` pending vectors into the graph, lowest slots first from where the
    /// last call stopped; returns how many were linked (0 when none is pending). Each link is
    /// one logical change ([`VecIndex::index_pending`]): the kernel's index worker runs one per
    /// journal handle. Errors: `Corrupt`; the store's as `Io`.
    pub fn index_pending<B: BlockStore>(
        &mut self,
        b: &B,
        dist: &dyn DistanceKernel,
        max: usize,
    ) -> IResult<usize, B::Error> {
        let mut done = 0usize;
        while done < max && self.header.pending > 0 {
            let Some(slot) = next_bit(&self.pending, self.pending_cursor) else {
                return Err(FormatError::Corrupt {
                    what: "hnsw pending count without pending slots",
                    value: u64::from(self.header.pending),
                }
                .into());
            };
            self.pending_cursor = (slot / 64) as usize;
            let linked = self.with_index(dist, |ix, pad| {
                let r = ix.index_pending(b, &mut pad.scratch, &mut *pad.visited, slot, pad.vector);
                // A slot found not pending (removed since) leaves the set too; on an error
                // it stays, and so does the vector on disk.
                if r.is_ok() {
                    set_bit(pad.pending, slot, false);
                }
                r
            })?;
            if linked {
                done = done.saturating_add(1);
            }
        }
        Ok(done)
    }

    /// The first half of [`Self::index_pending`] for one vector, through `&self` in the
    /// caller's `pad` (so beside searches, under a shared lock): the next pending slot and its
    /// insert plan ([`VecIndex::plan_pending`], which only reads the graph), or `None` when no
    /// vector is pending (or the one found was not). [`Self::apply_pending`] then links it
    /// under the exclusive lock. Errors: `Corrupt` (also a pending count without pending slots);
    /// `Invalid` for a pad of another index; the store's as `Io`.
    pub fn plan_pending<B: BlockStore>(
        &self,
        pad: &mut SearchPad<A>,
        b: &B,
        dist: &dyn DistanceKernel,
    ) -> IResult<Option<PendingPlan>, B::Error> {
        if self.header.pending == 0 {
            return Ok(None);
        }
        let Some(slot) = next_bit(&self.pending, self.pending_cursor) else {
            return Err(FormatError::Corrupt {
                what: "hnsw pending count without pending slots",
                value: u64::from(self.header.pending),
            }
            .into());
        };
        self.plan_slot(pad, b, dist, slot)
    }

    /// [`Self::plan_pending`] for the pending slot `slot` (one of [`Self::pending_slots`]):
    /// `None` when it is not pending. The plan and the vector read stay in `pad`
    /// ([`Self::plan_of`]). Errors: as [`Self::plan_pending`].
    pub fn plan_slot<B: BlockStore>(
        &self,
        pad: &mut SearchPad<A>,
        b: &B,
        dist: &dyn DistanceKernel,
        slot: u32,
    ) -> IResult<Option<PendingPlan>, B::Error> {
        self.check_pad(pad)?;
        let ix = self.vindex(dist);
        let SearchPad { pool, work, bounce, visited, vector, .. } = pad;
        let mut scratch = IndexScratch { hnsw: Scratch { pool, work }, bounce };
        Ok(ix.plan_pending(b, &mut scratch, visited, slot, vector)?.map(|(entry, top)| PendingPlan {
            slot,
            entry,
            top,
            changes: self.changes,
        }))
    }

    /// The second half: links the slot of `plan` by the plan in `pad` ([`Self::plan_pending`]'s
    /// pad, untouched since), as [`Self::index_pending`] would have, if the index has not
    /// changed since the plan was made; returns whether it linked one (`false`: the index
    /// changed, or the slot was no longer pending; the caller links the next pending vector the
    /// plain way). Errors: as [`Self::index_pending`].
    pub fn apply_pending<B: BlockStore>(
        &mut self,
        b: &B,
        dist: &dyn DistanceKernel,
        plan: &PendingPlan,
        pad: &SearchPad<A>,
    ) -> IResult<bool, B::Error> {
        if plan.changes != self.changes {
            return Ok(false);
        }
        let m = self.sb.hnsw_m;
        let words = crate::hnsw::plan_area(&pad.work, m).ok_or_else(|| IndexError::Invalid("hnsw plan area"))?;
        self.pending_cursor = (plan.slot / 64) as usize;
        let PendingPlan { slot, entry, top, .. } = *plan;
        self.with_index(dist, |ix, p| {
            let r = ix.apply_pending(b, &mut p.scratch, slot, entry, top, words);
            // As in index_pending: a slot found not pending leaves the set; on an error it stays.
            if r.is_ok() {
                set_bit(p.pending, slot, false);
            }
            r
        })
    }

    /// Whether `slot` holds a vector not yet linked into the graph (`false` past the
    /// capacity).
    pub fn is_pending(&self, slot: u32) -> bool {
        bit(&self.pending, slot)
    }

    /// Up to `out.len()` pending slots, in the order [`Self::index_pending`] links them (from
    /// where it stopped, then from slot 0), into `out`; returns how many.
    pub fn pending_slots(&self, out: &mut [u32]) -> usize {
        let from = self.pending_cursor.min(self.pending.len());
        let (head, tail) = self.pending.split_at(from);
        let words =
            tail.iter().enumerate().map(|(i, w)| (i.saturating_add(from), *w)).chain(head.iter().copied().enumerate());
        let mut n = 0usize;
        for (i, mut w) in words {
            while w != 0 && n < out.len() {
                // i < pending.len() <= capacity / 64 + 1: the slot fits a u32 (as next_bit).
                let Some(slot) = u32::try_from(i).ok().and_then(|i| i.checked_mul(64)?.checked_add(w.trailing_zeros()))
                else {
                    return n;
                };
                if let Some(o) = out.get_mut(n) {
                    *o = slot;
                    n = n.saturating_add(1);
                }
                w &= w.wrapping_sub(1);
            }
            if n >= out.len() {
                break;
            }
        }
        n
    }

    /// The plan that [`Self::plan_pending`] or [`Self::plan_slot`] left in `pad` (its plan
    /// area, [`crate::hnsw::plan_len`] words) and the vector it read (`dim` words), to keep
    /// for [`Self::apply_chosen`]. `None` for a pad of other sizes.
    pub fn plan_of<'p>(&self, pad: &'p SearchPad<A>) -> Option<(&'p [u32], &'p [u32])> {
        let words = crate::hnsw::plan_area(&pad.work, self.sb.hnsw_m)?;
        let vector = pad.vector.get(..self.sb.vec_dim as usize)?;
        Some((words, vector))
    }

    /// Links the slot of `plan` by its plan words and vector ([`Self::plan_of`]) merged with
    /// `peers`, the slots linked since the plan was made, whatever else changed since
    /// ([`VecIndex::apply_pending_chosen`]): its own lists, written and copied into `chosen`
    /// ([`crate::hnsw::plan_len`] words); the connections back to them follow by
    /// [`Self::connect_shared`]. The bulk loader's parallel linking: a batch of plans made at
    /// once over one graph, applied in order, each with the batch's slots before it as peers,
    /// then the batch's connections. Returns whether it linked the slot (`false`: it was no
    /// longer pending). Errors: `Invalid` for a short plan or `chosen`, a vector of another
    /// dimension or too many peers (more than `5 hnsw_m + 1`); otherwise as
    /// [`Self::index_pending`].
    #[allow(clippy::too_many_arguments)]
    pub fn apply_chosen<B: BlockStore>(
        &mut self,
        b: &B,
        dist: &dyn DistanceKernel,
        plan: &PendingPlan,
        words: &[u32],
        vector: &[u32],
        peers: &[u32],
        chosen: &mut [u32],
    ) -> IResult<bool, B::Error> {
        let PendingPlan { slot, top, .. } = *plan;
        self.pending_cursor = (slot / 64) as usize;
        self.with_index(dist, |ix, p| {
            let r = ix.apply_pending_chosen(b, &mut p.scratch, slot, top, words, vector, peers, chosen);
            // As in index_pending: a slot found not pending leaves the set; on an error it stays.
            if r.is_ok() {
                set_bit(p.pending, slot, false);
            }
            r
        })
    }

    /// The connections back of [`Self::apply_chosen`] at `level`: for each `(e, q)` of `ops`
    /// in order, `q` added to the list of `e` ([`VecIndex::connect_back`]), in the caller's
    /// `pad` (one per thread). Through `&self`, so that several threads connect at once, each
    /// to the nodes of blocks no other touches ([`Self::level0_block`] at level 0), with the
    /// tombstone checks unread when the graph has none ([`VecIndex::skip_tombstone_reads`]):
    /// the nodes' blocks and the vectors are then all it reads. The connections to one node
    /// must come in the order of their inserts. Errors: `Invalid` for a pad of another index;
    /// `Corrupt`; the store's as `Io`.
    pub fn connect_shared<B: BlockStore>(
        &self,
        pad: &mut SearchPad<A>,
        b: &B,
        dist: &dyn DistanceKernel,
        level: u8,
        ops: &[(u32, u32)],
    ) -> IResult<(), B::Error> {
        self.check_pad(pad)?;
        let mut ix = self.vindex(dist);
        ix.skip_tombstone_reads();
        let SearchPad { pool, work, bounce, .. } = pad;
        let mut scratch = IndexScratch { hnsw: Scratch { pool, work }, bounce };
        for &(e, q) in ops {
            ix.connect_back(b, &mut scratch, e, q, level)?;
        }
        Ok(())
    }

    /// The block of `slot`'s level-0 record: the connections back to nodes of different such
    /// blocks may run on different threads ([`Self::connect_shared`]) when
    /// [`Self::connects_apart`]. Errors: `Corrupt` for a slot past the capacity.
    pub fn level0_block(&self, slot: u32) -> Result<u64, FormatError> {
        crate::vindex::check_slot(self.sb.vec_capacity, slot)?;
        Ok(crate::format::vector::HnswGeometry::new(&self.sb).level0_pos(slot).0)
    }

    /// Whether [`Self::connect_shared`] calls on several threads may each read only the blocks
    /// they write (the graph counts no tombstone: [`crate::vindex::connects_apart`], and the
    /// level-0 records lie apart from the vectors: with node records a thread's record blocks
    /// hold vectors the others read); without, the connections of a batch run on one thread.
    pub fn connects_apart(&self) -> bool {
        crate::vindex::connects_apart(&self.header) && !self.sb.has_node_records()
    }

    /// Largest ef a search can use: `min(MAX_EF, the candidate pool)`.
    pub fn max_ef(&self) -> usize {
        self.pad.max_ef()
    }

    /// A pad for [`Self::search_shared`], of the size of the one this memory holds (so that a
    /// search gives the same answer with either). Errors: `Io` when memory runs out.
    pub fn new_search_pad(&self) -> IResult<SearchPad<A>, A::Error> {
        SearchPad::new(&self.sb, self.search_pool_len())
    }

    /// `Invalid` unless `pad` has the sizes of this memory's own (as [`Self::new_search_pad`]
    /// makes them): a pad of another index.
    fn check_pad<E>(&self, pad: &SearchPad<A>) -> IResult<(), E> {
        if pad.visited.len() != self.pad.visited.len() || pad.pool.len() != self.pad.pool.len() {
            return Err(IndexError::Invalid("search pad of another index"));
        }
        Ok(())
    }

    /// The candidate pool's length of this memory's pad: what a pad for
    /// [`Self::search_shared`] made by [`SearchPad::new`] must have.
    pub fn search_pool_len(&self) -> usize {
        self.pad.pool.len()
    }

    /// Runs `f` on the index with the memory, and keeps the header and slot hint it leaves
    /// (also on error: what was written stays written). For the tools' own index work.
    pub fn with_index<R, E>(
        &mut self,
        dist: &dyn DistanceKernel,
        f: impl FnOnce(&mut VecIndex<'_>, &mut Pad<'_, A>) -> IResult<R, E>,
    ) -> IResult<R, E> {
        let IndexMem {
            sb,
            upper,
            pad: SearchPad { pool, work, bounce, visited, results, vector },
            old_ids,
            new_ids,
            pending,
            pending_cursor: _,
            purge_set,
            purge,
            stepwise_purge,
            purges,
            changes,
            header,
            hint,
            build_codes,
        } = self;
        *changes = changes.wrapping_add(1);
        let mut ix = index_over(sb, upper, *header, *hint, build_codes.as_deref(), dist);
        ix.auto_purge = !*stepwise_purge;
        ix.purges = *purges;
        let mut pad = Pad {
            scratch: IndexScratch { hnsw: Scratch { pool, work }, bounce },
            visited,
            results,
            old_ids,
            new_ids,
            pending,
            vector,
            purge_set,
        };
        let r = f(&mut ix, &mut pad);
        *header = ix.header;
        *hint = ix.hint;
        if ix.purges != *purges {
            // A whole purge ran (no free slot left): the steps start over.
            *purges = ix.purges;
            *purge = PurgePass::Idle;
        }
        r
    }

    /// Makes removals leave the purge of tombstones to [`Self::purge_step`] (the kernel's index
    /// worker), so that no operation's transaction holds a purge of the whole graph.
    pub fn set_stepwise_purge(&mut self, on: bool) {
        self.stepwise_purge = on;
    }

    /// Whether a purge is under way or wanted ([`crate::vindex::purge_wanted`]).
    pub fn purge_due(&self) -> bool {
        self.purge != PurgePass::Idle || purge_wanted(&self.header)
    }

    /// One step of a purge in steps (see [`VecIndex::repair_node`]): when none is under way
    /// and one is wanted, takes the current tombstones as the set to free; then repairs the
    /// nodes of up to `max` slots, slot after slot, skipping the set; once every slot has been
    /// looked at, empties the link lists of up to `max` tombstones of the set
    /// ([`VecIndex::isolate_tombstone`]), and once all are, frees up to `max` of them. Every step leaves a valid graph, so a
    /// caller runs each in a transaction of its own (a crash between steps loses no more than
    /// the steps' work: the next mount starts a new pass). Errors: `Corrupt`; the store's as
    /// `Io`.
    pub fn purge_step<B: BlockStore>(
        &mut self,
        b: &B,
        dist: &dyn DistanceKernel,
        max: usize,
    ) -> IResult<PurgeStep, B::Error> {
        let cap = u32::try_from(self.sb.vec_capacity).unwrap_or(u32::MAX);
        if self.purge == PurgePass::Idle {
            if !purge_wanted(&self.header) {
                return Ok(PurgeStep::Idle);
            }
            // The set: every tombstone now (a scan of the level-0 records of the slots in use).
            self.purge_set.fill(0);
            self.with_index(dist, |ix, pad| {
                for slot in 0..cap {
                    if slot % 4096 == 0 {
                        b.relax().map_err(IndexError::Io)?;
                    }
                    if ix.slot_in_use(b, slot)? && ix.head(b, slot)?.flags & crate::format::vector::NODE_DELETED != 0 {
                        set_bit(pad.purge_set, slot, true);
                    }
                }
                Ok(())
            })?;
            self.purge = PurgePass::Repair(0);
        }
        match self.purge {
            PurgePass::Idle => Ok(PurgeStep::Idle),
            PurgePass::Repair(from) => {
                let end = from.saturating_add(u32::try_from(max).unwrap_or(u32::MAX)).min(cap);
                self.with_index(dist, |ix, pad| {
                    for slot in from..end {
                        if !bit(pad.purge_set, slot) {
                            ix.repair_node(b, &mut pad.scratch, slot)?;
                        }
                    }
                    Ok(())
                })?;
                self.purge = if end >= cap { PurgePass::Isolate(0) } else { PurgePass::Repair(end) };
                Ok(PurgeStep::Repaired(end.saturating_sub(from) as usize))
            }
            PurgePass::Isolate(from) => {
                let mut done = 0usize;
                let mut slot = from;
                self.with_index(dist, |ix, pad| {
                    while slot < cap && done < max {
                        if bit(pad.purge_set, slot) && ix.isolate_tombstone(b, slot)? {
                            done = done.saturating_add(1);
                        }
                        slot = slot.saturating_add(1);
                    }
                    Ok(())
                })?;
                self.purge = if slot >= cap { PurgePass::Free(0) } else { PurgePass::Isolate(slot) };
                Ok(PurgeStep::Isolated(done))
            }
            PurgePass::Free(from) => {
                let mut freed = 0usize;
                let mut slot = from;
                let r = self.with_index(dist, |ix, pad| {
                    while slot < cap && freed < max {
                        if bit(pad.purge_set, slot) && ix.free_tombstone(b, slot)? {
                            freed = freed.saturating_add(1);
                        }
                        slot = slot.saturating_add(1);
                    }
                    Ok(())
                });
                r?;
                self.purge = if slot >= cap { PurgePass::Idle } else { PurgePass::Free(slot) };
                Ok(PurgeStep::Freed(freed))
            }
        }
    }

    /// Sets chunks `first .. first + count` of the file from `data` (`count * dim` float bit
    /// patterns): every new vector is inserted, then the chunk list stored, then the replaced
    /// vectors removed; a failure before the chunk list is stored removes the new vectors
    /// again. With `truncate`, the chunks past the new ones go too.
    /// Errors: `Rejected` (see [`check_vectors`]; `Gap` when `first` is past the file's
    /// chunk count), `NoSpace` when the index cannot hold `count` more vectors (nothing is
    /// changed then), `Corrupt`, the store's errors as `Io`.
    /// With [`Indexing::Deferred`] the new vectors are stored pending, not linked.
    #[allow(clippy::too_many_arguments)]
    pub fn set_chunks<B, F>(
        &mut self,
        b: &B,
        dist: &dyn DistanceKernel,
        file: &mut F,
        first: usize,
        data: &[u32],
        truncate: bool,
        indexing: Indexing,
    ) -> IResult<(), B::Error>
    where
        B: BlockStore,
        F: ChunkFiles<Error = B::Error>,
    {
        let dim = self.sb.vec_dim;
        let count = check_vectors(data, dim, first)?;
        // check_vectors bounded `first + count` by MAX_CHUNKS: exact.
        let end = first.saturating_add(count);
        let region = self.sb.region(Region::Data);
        self.with_index(dist, |ix, pad| {
            let (old_n, ino) = {
                let l = file.lock().map_err(IndexError::Io)?;
                (read_chunk_list(&l, region, pad.old_ids)?, l.ino())
            };
            if first > old_n {
                return Err(Reject::Gap { first, chunks: old_n }.into());
            }
            // Two u32 counts in a u64: exact.
            let live = u64::from(ix.header.live).saturating_add(u64::from(ix.header.pending));
            match live.checked_add(count as u64) {
                Some(n) if n <= ix.capacity => {}
                _ => return Err(IndexError::NoSpace { live, capacity: ix.capacity }),
            }
            let total = if truncate { end } else { end.max(old_n) };
            let old = pad.old_ids.get(..old_n).ok_or_else(|| IndexError::Invalid("chunk list buffer"))?;
            let new = pad.new_ids.get_mut(..total).ok_or_else(|| IndexError::Invalid("chunk list buffer"))?;
            for (i, d) in new.iter_mut().enumerate() {
                *d = if (first..end).contains(&i) { 0 } else { old.get(i).copied().unwrap_or(0) };
            }
            // The chunks done so far are `first .. done`.
            let mut done = first;
            let mut r = Ok(());
            // `data` holds `count` whole vectors (check_vectors), so `dim` is not zero here.
            // Vector by vector with `get`, not `chunks_exact` (see vindex's
            // `put_words`: a zip over it warns in the kernel's objtool).
            let mut vecs = data;
            for (d, chunk) in new.iter_mut().skip(first).zip(first..end) {
                let (Some(v), Some(rest)) = (vecs.get(..dim as usize), vecs.get(dim as usize..)) else { break };
                vecs = rest;
                // Chunk numbers are below MAX_CHUNKS (checked), so they fit in u32.
                let Ok(chunk32) = u32::try_from(chunk) else {
                    r = Err(Reject::TooManyChunks { end }.into());
                    break;
                };
                let owner = MapEntry { ino, chunk: chunk32 };
                let inserted = match indexing {
                    Indexing::Now => ix.insert(b, &mut pad.scratch, &mut *pad.visited, v, owner),
                    Indexing::Deferred => ix.insert_pending(b, &mut pad.scratch, v, owner),
                };
                match inserted {
                    Ok(slot) => {
                        if indexing == Indexing::Deferred {
                            set_bit(pad.pending, slot, true);
                        }
                        *d = slot;
                        // chunk < end <= MAX_CHUNKS: exact.
                        done = chunk.saturating_add(1);
                    }
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            if r.is_ok() {
                r = file.lock().map_err(IndexError::Io).and_then(|mut l| store_chunk_list(&mut l, new));
            }
            if let Err(e) = r {
                for &slot in new.get(first..done).unwrap_or(&[]) {
                    // Best effort: the first error is the one to report.
                    if ix.remove(b, &mut pad.scratch, slot).is_ok() {
                        set_bit(pad.pending, slot, false);
                    }
                }
                return Err(e);
            }
            let gone_end = if truncate { old_n } else { end.min(old_n) };
            for &slot in old.get(first.min(old_n)..gone_end).unwrap_or(&[]) {
                ix.remove(b, &mut pad.scratch, slot)?;
                set_bit(pad.pending, slot, false);
            }
            Ok(())
        })
    }

    /// Copies the vectors of chunks `first ..` (at most `max` of them) into a buffer of
    /// `n * dim` words got from `alloc(n * dim)`; returns it and the file's chunk count.
    /// `ids` holds the file's chunk list while it runs ([`MAX_CHUNKS`] entries): the caller's,
    /// so that reads run through `&self` (the kernel's under the shared index lock, beside
    /// searches). Errors: `PastLastChunk` (`ERANGE`) when `first` is past the chunk count;
    /// `Corrupt`; `Invalid` for `ids` shorter than [`MAX_CHUNKS`]; `alloc`'s and the store's
    /// errors as `Io`.
    #[allow(clippy::too_many_arguments)]
    pub fn get_chunks<B, F, O>(
        &self,
        b: &B,
        dist: &dyn DistanceKernel,
        file: &mut F,
        first: usize,
        max: usize,
        ids: &mut [u32],
        alloc: impl FnOnce(usize) -> Result<O, B::Error>,
    ) -> IResult<(O, usize), B::Error>
    where
        B: BlockStore,
        F: ChunkFiles<Error = B::Error>,
        O: DerefMut<Target = [u32]>,
    {
        let dim =
            NonZeroUsize::new(self.sb.vec_dim as usize).ok_or(FormatError::Corrupt { what: "vec_dim", value: 0 })?;
        let region = self.sb.region(Region::Data);
        let ids = ids.get_mut(..MAX_CHUNKS).ok_or_else(|| IndexError::Invalid("chunk list buffer"))?;
        let ix = VecIndex::with_header(&self.sb, &self.upper, self.header, self.hint, dist);
        let n_ids = read_chunk_list(&file.lock().map_err(IndexError::Io)?, region, ids)?;
        let rest = n_ids.checked_sub(first).ok_or(Reject::PastLastChunk { first, chunks: n_ids })?;
        let n = max.min(rest);
        // n <= MAX_CHUNKS and dim <= MAX_DIM for a validated superblock.
        let words = n.checked_mul(dim.get()).ok_or_else(|| IndexError::Invalid("chunk buffer size"))?;
        let mut out = alloc(words).map_err(IndexError::Io)?;
        let ids = ids.get(first..).and_then(|ids| ids.get(..n));
        let ids = ids.ok_or_else(|| IndexError::Invalid("chunk list buffer"))?;
        let mut rest: &mut [u32] = &mut out;
        for &slot in ids {
            let whole = core::mem::take(&mut rest);
            if whole.len() < dim.get() {
                break;
            }
            // In bounds: checked just above.
            let (dst, r) = whole.split_at_mut(dim.get());
            ix.read_vector(b, slot, dst)?;
            rest = r;
        }
        Ok((out, n_ids))
    }

    /// Removes every chunk of the file (a file without any is not an error): the chunk list
    /// is cleared first, then each vector becomes a tombstone (purged by
    /// [`VecIndex::remove`]'s policy or [`Self::purge`]).
    /// Errors: `Corrupt`; the store's errors as `Io`.
    pub fn remove_chunks<B, F>(&mut self, b: &B, dist: &dyn DistanceKernel, file: &mut F) -> IResult<(), B::Error>
    where
        B: BlockStore,
        F: ChunkFiles<Error = B::Error>,
    {
        let region = self.sb.region(Region::Data);
        self.with_index(dist, |ix, pad| {
            let n = {
                let mut l = file.lock().map_err(IndexError::Io)?;
                let n = read_chunk_list(&l, region, pad.old_ids)?;
                if n > 0 {
                    store_chunk_list(&mut l, &[])?;
                }
                n
            };
            for &slot in pad.old_ids.get(..n).unwrap_or(&[]) {
                ix.remove(b, &mut pad.scratch, slot)?;
                set_bit(pad.pending, slot, false);
            }
            Ok(())
        })
    }

    /// Repairs the graph around every tombstone and frees their slots ([`VecIndex::purge`]).
    pub fn purge<B: BlockStore>(&mut self, b: &B, dist: &dyn DistanceKernel) -> IResult<(), B::Error> {
        self.with_index(dist, |ix, pad| ix.purge(b, &mut pad.scratch))
    }

    /// The `k` nearest live vectors to `query` (`dim` float bit patterns) with candidate list
    /// `ef` (0 = default, see [`check_search`]), nearest first, into `out`; returns how many.
    /// [`Self::search_filtered`] with a filter that keeps every file (the tools' searches).
    /// Errors: `Rejected` for bad k/ef, a query of the wrong dimension or with NaN/Inf;
    /// `Corrupt` (a live slot without owner among them); the store's errors as `Io`.
    pub fn search<B: BlockStore>(
        &mut self,
        b: &B,
        dist: &dyn DistanceKernel,
        query: &[u32],
        k: usize,
        ef: usize,
        out: &mut [Hit],
    ) -> IResult<usize, B::Error> {
        self.search_filtered(b, dist, query, k, ef, Rank::Exact, out, &mut |_| Ok(true))
    }

    /// The `k` nearest live vectors to `query` whose files `filter` keeps (it is given the
    /// owner's inode number; the kernel's asks whether the caller may read the file), nearest
    /// first, into `out`; returns how many. With `ef` (0 = default, see [`check_search`]):
    ///
    /// 1. the HNSW search (Algorithm 5) with candidate list `ef`, merged with the exact scan of
    ///    the pending vectors as [`Self::search`] always did; its candidates are taken nearest
    ///    first, each whose file `filter` keeps becoming a result, until there are `k`;
    /// 2. when the filter dropped some and fewer than `k` were kept, the search is run again
    ///    with `ef` doubled, up to [`Self::max_ef`] (each run from scratch: at most about twice
    ///    the work of the last one);
    /// 3. when still short, an exact scan of every live and pending slot (reads every slot's
    ///    level-0 record: O(capacity) reads, a distance per live vector, and the filter only for
    ///    a vector nearer than the `k`-th kept one).
    ///
    /// With `rank` [`Rank::Codes`] on an index with SQ8 or PQ codes, the runs rank their
    /// candidates by the codes' distances and return those (see [`Rank::Codes`]); the
    /// pending vectors' and the exact scan's distances stay exact.
    ///
    /// It stops early when a run's candidates were every searchable vector. When `filter` keeps
    /// everything, the answer is exactly that of [`Self::search_filtered`] with the same `rank`
    /// and no filter ([`Self::search`]'s for [`Rank::Exact`]): the first run's candidates start with
    /// the `k` a plain search returns (HNSW's pool is the same for a larger result count, and
    /// the pending merge is a stable merge), and nothing is widened. `filter` may be called
    /// more than once for a file (each chunk, each run). The store's [`BlockStore::relax`] runs
    /// between runs and between batches of the scan (the kernel stops there on a fatal signal).
    /// Errors: as [`Self::search`], `Rejected(NoCodes)` for [`Rank::Codes`] without codes,
    /// and the filter's as `Io`.
    #[allow(clippy::too_many_arguments)]
    pub fn search_filtered<B: BlockStore>(
        &mut self,
        b: &B,
        dist: &dyn DistanceKernel,
        query: &[u32],
        k: usize,
        ef: usize,
        rank: Rank,
        out: &mut [Hit],
        filter: &mut dyn FnMut(u64) -> Result<bool, B::Error>,
    ) -> IResult<usize, B::Error> {
        let IndexMem { sb, upper, pad, pending, header, hint, .. } = self;
        let ix = VecIndex::with_header(sb, upper, *header, *hint, dist);
        search_in(&ix, pending, pad, b, query, k, ef, rank, out, filter)
    }

    /// [`Self::search_filtered`] with a pad of the caller's ([`Self::new_search_pad`]) and the
    /// memory shared: searches that each have their own pad may run at once over the same
    /// `IndexMem` (the kernel's run under a shared lock of the index, nothing changing the
    /// index meanwhile). The answer is [`Self::search_filtered`]'s. Errors: as there; `Invalid`
    /// for a pad made for another index size.
    #[allow(clippy::too_many_arguments)]
    pub fn search_shared<B: BlockStore>(
        &self,
        pad: &mut SearchPad<A>,
        b: &B,
        dist: &dyn DistanceKernel,
        query: &[u32],
        k: usize,
        ef: usize,
        rank: Rank,
        out: &mut [Hit],
        filter: &mut dyn FnMut(u64) -> Result<bool, B::Error>,
    ) -> IResult<usize, B::Error> {
        self.check_pad(pad)?;
        let ix = VecIndex::with_header(&self.sb, &self.upper, self.header, self.hint, dist);
        search_in(&ix, &self.pending, pad, b, query, k, ef, rank, out, filter)
    }
}

/// How a search ranks its answer on an index with codes (`mkfs.vexfs --quant sq8|pq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rank {
    /// The walk's nearest candidates re-ranked with their float32 vectors: the distances
    /// returned are exact (without codes every search is).
    #[default]
    Exact,
    /// The codes' distances, as FAISS's `IndexHNSWSQ` answers (`VEXFS_SEARCH_CODE_DISTANCES`):
    /// no float32 vector is read, so an index within a memory budget that holds its codes and
    /// links answers without reading the vector data region; distances are approximate (SQ8:
    /// the codes' distance scaled back, [`crate::sq8::code_dist_key`]; PQ: the table
    /// distance, exact for nodes a walk over node records expanded) and the order is the
    /// codes' (recall below the exact ranking's at the same `ef`). Vectors not yet linked
    /// (pending) and an exact scan keep exact distances. Refused without codes (`NoCodes`).
    Codes,
}

/// The search of [`IndexMem::search_filtered`] over `ix` (whose pending slots are the bits of
/// `pending`), in `pad`.
#[allow(clippy::too_many_arguments)]
fn search_in<A: Alloc, B: BlockStore>(
    ix: &VecIndex<'_>,
    pending: &[u64],
    pad: &mut SearchPad<A>,
    b: &B,
    query: &[u32],
    k: usize,
    ef: usize,
    rank: Rank,
    out: &mut [Hit],
    filter: &mut dyn FnMut(u64) -> Result<bool, B::Error>,
) -> IResult<usize, B::Error> {
    let max_ef = pad.max_ef();
    let mut ef = check_search(k, ef, max_ef)?;
    if query.len() != ix.dim as usize {
        return Err(Reject::Dimension { got: query.len(), want: ix.dim }.into());
    }
    if let Some(component) = first_nonfinite(query) {
        return Err(Reject::NonFinite { vector: 0, component }.into());
    }
    let SearchPad { pool, work, bounce, visited, results, .. } = pad;
    let mut scratch = IndexScratch { hnsw: Scratch { pool, work }, bounce };
    let k = k.min(out.len());
    let total = u64::from(ix.header.live).saturating_add(u64::from(ix.header.pending));
    if rank == Rank::Codes && !ix.has_codes() {
        return Err(Reject::NoCodes.into());
    }
    // With codes, the candidates re-ranked at full precision: 2k (SQ8) or PQ_RERANK_PER_K k
    // on the first try; the whole list when the filter dropped some and the search runs again
    // with a longer one. With Rank::Codes, none (`None`): the codes' distances are the answer.
    let mut rerank = (rank == Rank::Exact).then(|| k.saturating_mul(ix.rerank_per_k()));
    // A PQ query's table is computed by the first run only (the runs share `scratch`).
    let mut table_ready = false;
    loop {
        // ef <= max_ef <= results.len() (SearchPad::new), and k <= ef (check_search).
        let want = ef.max(k);
        let res = results.get_mut(..want).ok_or_else(|| IndexError::Invalid("result buffer"))?;
        let mut n = ix.search(b, &mut scratch, &mut *visited, query, Knn { k: want, ef }, rerank, table_ready, res)?;
        table_ready = true;
        if ix.header.pending > 0 {
            n = merge_pending(ix, b, &mut scratch, pending, query, res, n)?;
        }
        let (got, dropped) = keep_filtered(ix, b, res.get(..n).unwrap_or(&[]), out, k, filter)?;
        if got >= k || !dropped || n as u64 >= total {
            return Ok(got);
        }
        if ef >= max_ef {
            break;
        }
        ef = ef.saturating_mul(2).min(max_ef);
        rerank = rerank.map(|_| usize::MAX);
        b.relax().map_err(IndexError::Io)?;
    }
    scan_filtered(ix, b, &mut scratch, query, results, out, k, filter)
}

/// Fills `out` with the candidates of `cand` (`(key, slot)`, nearest first) whose files
/// `filter` keeps, up to `k`; returns how many, and whether the filter dropped any.
/// Errors: `Corrupt` for a live slot without owner; the filter's as `Io`.
fn keep_filtered<B: BlockStore>(
    ix: &VecIndex<'_>,
    b: &B,
    cand: &[(u32, u32)],
    out: &mut [Hit],
    k: usize,
    filter: &mut dyn FnMut(u64) -> Result<bool, B::Error>,
) -> IResult<(usize, bool), B::Error> {
    let mut got = 0usize;
    let mut dropped = false;
    // The owners of the first k asked for at once: each is a map entry in its own cache line,
    // a miss apiece when read one after another (about 2% of a float32 search at 384-d).
    for &(_, slot) in cand.iter().take(k) {
        ix.prefetch_owner(b, slot);
    }
    for &(key, slot) in cand {
        if got >= k {
            break;
        }
        let e = owner_of(ix, b, slot)?;
        if !filter(e.ino).map_err(IndexError::Io)? {
            dropped = true;
            continue;
        }
        let Some(o) = out.get_mut(got) else { break };
        *o = Hit { slot, key, ino: e.ino, chunk: e.chunk };
        got = got.saturating_add(1);
    }
    Ok((got, dropped))
}

/// The owner of a live (or pending) slot. Errors: `Corrupt` when it has none.
fn owner_of<B: BlockStore>(ix: &VecIndex<'_>, b: &B, slot: u32) -> IResult<MapEntry, B::Error> {
    ix.owner(b, slot)?
        .ok_or_else(|| FormatError::Corrupt { what: "live vector slot without owner", value: u64::from(slot) }.into())
}

/// The last resort of [`IndexMem::search_filtered`]: the exact `k` nearest live or pending
/// vectors whose files `filter` keeps, by a scan of every slot ([`BATCH`] distances at a
/// time, `res` holding the kept ones so far); the filter is asked only about a vector nearer
/// than the `k`-th kept one. Equal keys keep the lower slot first. Returns how many.
#[allow(clippy::too_many_arguments)]
fn scan_filtered<B: BlockStore>(
    ix: &VecIndex<'_>,
    b: &B,
    s: &mut IndexScratch<'_>,
    query: &[u32],
    res: &mut [(u32, u32)],
    out: &mut [Hit],
    k: usize,
    filter: &mut dyn FnMut(u64) -> Result<bool, B::Error>,
) -> IResult<usize, B::Error> {
    let res = res.get_mut(..k).ok_or_else(|| IndexError::Invalid("result buffer"))?;
    // The capacity is below u32::MAX (IndexMem::new).
    let cap = u32::try_from(ix.capacity).unwrap_or(u32::MAX);
    let mut ids = [0u32; BATCH];
    let mut keys = [0u32; BATCH];
    let mut n = 0usize;
    let mut slot = 0u32;
    while slot < cap {
        let mut have = 0usize;
        while have < BATCH && slot < cap {
            let f = ix.head(b, slot)?.flags;
            if f == NODE_IN_GRAPH || f == NODE_PENDING {
                if let Some(id) = ids.get_mut(have) {
                    *id = slot;
                    have = have.saturating_add(1);
                }
            }
            slot = slot.saturating_add(1);
        }
        let batch = ids.get(..have).unwrap_or(&[]);
        ix.distances(b, s, query, batch, &mut keys)?;
        for (&id, &key) in batch.iter().zip(keys.iter()) {
            // Full, and not nearer than the k-th kept one: it would not enter.
            if n >= k && res.last().is_some_and(|&(last, _)| last <= key) {
                continue;
            }
            if filter(owner_of(ix, b, id)?.ino).map_err(IndexError::Io)? {
                n = insert_result(res, n, key, id);
            }
        }
        b.relax().map_err(IndexError::Io)?;
    }
    for (o, &(key, slot)) in out.iter_mut().zip(res.iter().take(n)) {
        let e = owner_of(ix, b, slot)?;
        *o = Hit { slot, key, ino: e.ino, chunk: e.chunk };
    }
    Ok(n)
}

/// Sets or clears bit `slot` of a slot bitmap of `u64` words (a slot past it: nothing).
fn set_bit(words: &mut [u64], slot: u32, on: bool) {
    if let Some(w) = words.get_mut((slot / 64) as usize) {
        let m = 1u64 << (slot % 64);
        if on {
            *w |= m;
        } else {
            *w &= !m;
        }
    }
}

/// Bit `slot` of a slot bitmap (`false` past it).
fn bit(words: &[u64], slot: u32) -> bool {
    words.get((slot / 64) as usize).is_some_and(|w| w & (1u64 << (slot % 64)) != 0)
}

/// The first set bit of `words` in word `from` or after, else from the start; `None` when
/// none is set.
fn next_bit(words: &[u64], from: usize) -> Option<u32> {
    let from = from.min(words.len());
    let (head, tail) = words.split_at(from);
    let found = tail.iter().enumerate().map(|(i, w)| (i.saturating_add(from), w)).chain(head.iter().enumerate());
    for (i, &w) in found {
        if w != 0 {
            // i < words.len() <= capacity / 64 + 1 < 2^26: the slot fits a u32.
            return u32::try_from(i).ok()?.checked_mul(64)?.checked_add(w.trailing_zeros());
        }
    }
    None
}

/// Merges the pending vectors (`pending`, a slot bitmap) into `res`, the first `n` of which
/// are the graph's `(key, slot)` results, nearest first: every pending vector's exact
/// distance to `query` is computed ([`VecIndex::distances`], [`BATCH`] at a time) and kept if
/// it is among the `res.len()` nearest; equal keys keep the lower slot first, after the
/// graph's. Returns the new count. The store's [`BlockStore::relax`] runs between batches.
fn merge_pending<B: BlockStore>(
    ix: &VecIndex<'_>,
    b: &B,
    s: &mut IndexScratch<'_>,
    pending: &[u64],
    query: &[u32],
    res: &mut [(u32, u32)],
    mut n: usize,
) -> IResult<usize, B::Error> {
    let mut ids = [0u32; BATCH];
    let mut keys = [0u32; BATCH];
    // Word `i` of the bitmap, with the bits already taken cleared in `w`.
    let mut i = 0usize;
    let mut w = pending.first().copied().unwrap_or(0);
    loop {
        let mut have = 0usize;
        for id in ids.iter_mut() {
            while w == 0 {
                i = i.saturating_add(1);
                match pending.get(i) {
                    Some(&x) => w = x,
                    None => break,
                }
            }
            if w == 0 {
                break;
            }
            // i < pending.len() <= 2^26 for a u32 capacity: the slot fits a u32.
            *id = u32::try_from(i).unwrap_or(u32::MAX).saturating_mul(64).saturating_add(w.trailing_zeros());
            w &= w.wrapping_sub(1);
            have = have.saturating_add(1);
        }
        if have == 0 {
            return Ok(n);
        }
        let batch = ids.get(..have).unwrap_or(&[]);
        ix.distances(b, s, query, batch, &mut keys)?;
        for (&slot, &key) in batch.iter().zip(keys.iter()) {
            n = insert_result(res, n, key, slot);
        }
        b.relax().map_err(IndexError::Io)?;
    }
}

/// Puts `(key, slot)` into `res`, whose first `n` entries are sorted by key, if it is among
/// the `res.len()` nearest (after the entries of an equal key already there); returns the new
/// count.
fn insert_result(res: &mut [(u32, u32)], n: usize, key: u32, slot: u32) -> usize {
    let n = n.min(res.len());
    let Some(head) = res.get(..n) else { return n };
    let at = head.partition_point(|&(k, _)| k <= key);
    if at >= res.len() {
        return n;
    }
    let end = if n < res.len() { n.saturating_add(1) } else { n };
    if let Some(tail) = res.get_mut(at..end) {
        tail.rotate_right(1);
        if let Some(first) = tail.first_mut() {
            *first = (key, slot);
        }
    }
    end
}
