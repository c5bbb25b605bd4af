//! The on-disk vector index: slots, the vector map, vector data and the HNSW graph in their
//! regions, read and written through a [`BlockStore`], distances computed by a
//! [`DistanceKernel`] passed in as a value. The kernel supplies its buffer cache and FPU glue;
//! the tools an image file and [`crate::distance::Impl`]. Both run this code, so both build and
//! search the same graph. Errors are [`IndexError`]s: the store's own errors wrapped, and the
//! corruption the index finds built from [`FormatError`].
//!
//! Locking is the caller's: one [`VecIndex`] operation at a time per filesystem.

use crate::distance::DistanceKernel;
use crate::error::{FormatError, Result as FResult};
use crate::format::le::{put_u32, u32_at};
use crate::format::superblock::{Region, Superblock};
use crate::format::vector::{
    HnswGeometry, HnswHeader, Level0Head, MapEntry, UpperTable, MAP_ENTRY, NODE_DELETED, NODE_IN_GRAPH, NO_SLOT,
};
use crate::format::{bit_find_clear, bit_set, bit_test, BLOCK_SIZE};
use crate::hnsw::{self, Params, Scratch, Store, Visited};
use crate::index_error::{IResult, IndexError};
use crate::io::BlockStore;

/// Vectors fetched per distance batch (and the bounce buffers a caller provides).
pub const BATCH: usize = 32;

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
fn span<'b, E>(bytes: &'b [u8], at: usize, len: usize, what: &'static str) -> IResult<&'b [u8], E> {
    at.checked_add(len).and_then(|end| bytes.get(at..end)).ok_or(IndexError::Invalid(what))
}

/// As [`span`], for changing.
fn span_mut<'b, E>(bytes: &'b mut [u8], at: usize, len: usize, what: &'static str) -> IResult<&'b mut [u8], E> {
    at.checked_add(len).and_then(|end| bytes.get_mut(at..end)).ok_or(IndexError::Invalid(what))
}

/// Memory the caller provides: the HNSW scratch and bounce buffers for vectors that cross a
/// block boundary (`BATCH` vectors of `stride / 4` words, plus one for a query).
pub struct IndexScratch<'a> {
    pub hnsw: Scratch<'a>,
    pub bounce: &'a mut [u32],
}

impl IndexScratch<'_> {
    /// Words of `bounce` needed for vectors of `stride` bytes.
    pub const fn bounce_len(stride: u32) -> usize {
        (BATCH + 2) * (stride as usize / 4)
    }
}

/// The index of one filesystem: geometry from the superblock, the per-slot upper-record table,
/// and the cached header.
pub struct VecIndex<'t> {
    pub geo: HnswGeometry,
    pub header: HnswHeader,
    pub dim: u32,
    pub metric: u32,
    pub stride: u64,
    pub capacity: u64,
    pub params: Params,
    bitmap_start: u64,
    map_start: u64,
    data_start: u64,
    /// `upper[s]` = first upper record of slot `s`; its level is `upper[s + 1] - upper[s]`.
    upper: &'t [u32],
    /// Where the next free-slot search starts.
    pub hint: u64,
    /// The distance kernel.
    dist: &'t dyn DistanceKernel,
}

/// Fills `table` (`capacity + 1` entries) with the first upper record of each slot: the
/// `upper` table of [`VecIndex`]. Errors: `Truncated` if `table` is too short.
pub fn fill_upper_table(sb: &Superblock, table: &mut [u32]) -> FResult<()> {
    let n = sb.vec_capacity as usize;
    if table.len() < n + 1 {
        return Err(FormatError::Truncated { what: "upper table", len: table.len() });
    }
    let mut last = 0u32;
    UpperTable::walk(sb, |s, level, first| {
        if let Some(t) = table.get_mut(s as usize) {
            *t = first;
        }
        last = first + level as u32;
    });
    if let Some(t) = table.get_mut(n) {
        *t = last;
    }
    Ok(())
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
        if upper.len() as u64 != sb.vec_capacity + 1 {
            return Err(IndexError::Invalid("upper table size"));
        }
        if header.entry != NO_SLOT {
            let h = ix.head(b, header.entry)?;
            if h.flags != NODE_IN_GRAPH || h.level as u32 != header.entry_level {
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
        if header.live as u64 + header.deleted as u64 > sb.vec_capacity {
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
        VecIndex {
            geo: HnswGeometry::new(sb),
            header,
            dim: sb.vec_dim,
            metric: sb.vec_metric,
            stride: sb.vec_stride as u64,
            capacity: sb.vec_capacity,
            params: Params { m: sb.hnsw_m, ef_construction: sb.hnsw_ef_construction },
            bitmap_start: sb.region(Region::VecBitmap).start,
            map_start: sb.region(Region::VecMap).start,
            data_start: sb.region(Region::VecData).start,
            upper,
            hint,
            dist,
        }
    }

    /// The entry point and its level, if the graph is not empty.
    pub fn entry(&self) -> Option<(u32, u8)> {
        (self.header.entry != NO_SLOT).then_some((self.header.entry, self.header.entry_level as u8))
    }

    fn check_slot(&self, slot: u32) -> FResult<()> {
        if (slot as u64) < self.capacity {
            Ok(())
        } else {
            Err(FormatError::Corrupt { what: "vector slot number", value: slot as u64 })
        }
    }

    /// Level of slot `slot` by construction (from the upper table).
    pub fn slot_level(&self, slot: u32) -> (u8, u32) {
        let a = self.upper.get(slot as usize).copied().unwrap_or(0);
        let z = self.upper.get(slot as usize + 1).copied().unwrap_or(a);
        (z.saturating_sub(a).min(255) as u8, a)
    }

    /// The level-0 record head of `slot`, checked against the slot's fixed level.
    pub fn head<B: BlockStore>(&self, b: &B, slot: u32) -> IResult<Level0Head, B::Error> {
        self.check_slot(slot)?;
        let (blk, off) = self.geo.level0_pos(slot);
        let blkref = rd(b, blk)?;
        let h = Level0Head::decode(span(&blkref, off, self.geo.level0_size as usize, "level-0 record position")?)?;
        if h.flags != 0 {
            let (level, upper) = self.slot_level(slot);
            if h.level != level
                || h.upper != upper
                || h.flags & !(NODE_IN_GRAPH | NODE_DELETED) != 0
                || h.count as u32 > self.geo.m0
            {
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
        h.encode(span_mut(&mut w, off, self.geo.level0_size as usize, "level-0 record position")?);
        Ok(())
    }

    /// Zeroes the whole level-0 record of `slot` (head and links): a free slot's record is
    /// all zero.
    fn clear_record<B: BlockStore>(&self, b: &B, slot: u32) -> IResult<(), B::Error> {
        let (blk, off) = self.geo.level0_pos(slot);
        let mut w = wr(b, blk)?;
        span_mut(&mut w, off, self.geo.level0_size as usize, "level-0 record position")?.fill(0);
        Ok(())
    }

    /// Owner of `slot` (`None` when free or deleted).
    pub fn owner<B: BlockStore>(&self, b: &B, slot: u32) -> IResult<Option<MapEntry>, B::Error> {
        self.check_slot(slot)?;
        let off = slot as u64 * MAP_ENTRY as u64;
        let blk = rd(b, self.map_start + off / BLOCK_SIZE as u64)?;
        let o = (off % BLOCK_SIZE as u64) as usize;
        Ok(MapEntry::decode(slot, span(&blk, o, MAP_ENTRY, "vector map position")?)?)
    }

    fn set_owner<B: BlockStore>(&self, b: &B, slot: u32, e: Option<MapEntry>) -> IResult<(), B::Error> {
        let off = slot as u64 * MAP_ENTRY as u64;
        let mut blk = wr(b, self.map_start + off / BLOCK_SIZE as u64)?;
        let o = (off % BLOCK_SIZE as u64) as usize;
        MapEntry::encode(e, slot, span_mut(&mut blk, o, MAP_ENTRY, "vector map position")?);
        Ok(())
    }

    /// Copies the vector of `slot` (`dim` float bit patterns) into `out`.
    pub fn read_vector<B: BlockStore>(&self, b: &B, slot: u32, out: &mut [u32]) -> IResult<(), B::Error> {
        self.check_slot(slot)?;
        let n = self.dim as usize;
        let out = out.get_mut(..n).ok_or_else(|| IndexError::Invalid("vector buffer"))?;
        let mut pos = slot as u64 * self.stride;
        let mut done = 0usize;
        while done < n {
            let blk = rd(b, self.data_start + pos / BLOCK_SIZE as u64)?;
            let o = (pos % BLOCK_SIZE as u64) as usize;
            // The run of this vector inside this block, copied word by word from one slice.
            let words = ((BLOCK_SIZE - o) / 4).min(n - done);
            if words == 0 {
                return Err(IndexError::Invalid("vector data position"));
            }
            let src = span(&blk, o, 4 * words, "vector data position")?;
            let dst = out.get_mut(done..done + words).ok_or(IndexError::Invalid("vector buffer"))?;
            for (d, w) in dst.iter_mut().zip(src.chunks_exact(4)) {
                if let Ok(w) = <[u8; 4]>::try_from(w) {
                    *d = u32::from_le_bytes(w);
                }
            }
            done += words;
            pos += 4 * words as u64;
        }
        Ok(())
    }

    fn write_vector<B: BlockStore>(&self, b: &B, slot: u32, v: &[u32]) -> IResult<(), B::Error> {
        let mut pos = slot as u64 * self.stride;
        let mut done = 0usize;
        while done < v.len() {
            let mut blk = wr(b, self.data_start + pos / BLOCK_SIZE as u64)?;
            let o = (pos % BLOCK_SIZE as u64) as usize;
            let words = ((BLOCK_SIZE - o) / 4).min(v.len() - done);
            if words == 0 {
                return Err(IndexError::Invalid("vector data position"));
            }
            let dst = span_mut(&mut blk, o, 4 * words, "vector data position")?;
            let src = v.get(done..done + words).ok_or(IndexError::Invalid("vector length"))?;
            for (d, w) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&w.to_le_bytes());
            }
            done += words;
            pos += 4 * words as u64;
        }
        Ok(())
    }

    fn bit<B: BlockStore>(&self, b: &B, slot: u32, on: Option<bool>) -> IResult<bool, B::Error> {
        let bits = BLOCK_SIZE as u64 * 8;
        let blk = self.bitmap_start + slot as u64 / bits;
        let i = (slot as u64 % bits) as usize;
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

    fn alloc_slot<B: BlockStore>(&mut self, b: &B) -> IResult<Option<u32>, B::Error> {
        let bits = BLOCK_SIZE as u64 * 8;
        let nblocks = self.capacity.div_ceil(bits);
        for pass in 0..2u64 {
            let start = if pass == 0 { self.hint.min(self.capacity) } else { 0 };
            let end = if pass == 0 { self.capacity } else { self.hint.min(self.capacity) };
            let mut pos = start;
            while pos < end {
                let bi = pos / bits;
                if bi >= nblocks {
                    break;
                }
                let base = bi * bits;
                let limit = (end - base).min(bits) as usize;
                let found = bit_find_clear(&rd(b, self.bitmap_start + bi)?, (pos - base) as usize, limit);
                if let Some(i) = found {
                    let slot = (base + i as u64) as u32;
                    self.bit(b, slot, Some(true))?;
                    self.hint = slot as u64 + 1;
                    return Ok(Some(slot));
                }
                pos = base + bits;
            }
        }
        Ok(None)
    }

    fn no_space<E>(&self) -> IndexError<E> {
        IndexError::NoSpace { live: self.header.live as u64, capacity: self.capacity }
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
        let slot = match self.alloc_slot(b)? {
            Some(s) => s,
            None if self.header.deleted > 0 => {
                self.purge(b, s)?;
                self.alloc_slot(b)?.ok_or(self.no_space())?
            }
            None => return Err(self.no_space()),
        };
        let (level, upper) = self.slot_level(slot);
        self.write_vector(b, slot, vector)?;
        self.set_owner(b, slot, Some(owner))?;
        self.set_head(b, slot, &Level0Head { count: 0, level, flags: NODE_IN_GRAPH, upper })?;
        for l in 1..=level {
            let (blk, off) = self.geo.upper_pos(upper as u64 + l as u64 - 1);
            put_u32(&mut wr(b, blk)?, off, 0);
        }
        let entry = self.entry();
        let mut g = GraphStore { b, ix: self, query: vector, bounce: &mut *s.bounce };
        let new_entry = hnsw::insert(&mut g, visited, &mut s.hnsw, &self.params, slot, level, entry)?;
        if let Some((e, l)) = new_entry {
            self.header.entry = e;
            self.header.entry_level = l as u32;
        }
        self.header.live += 1;
        self.write_header(b)?;
        Ok(slot)
    }

    /// Removes the vector in `slot`: it becomes a tombstone (still routing searches) and its
    /// owner is cleared. Purges the graph when tombstones reach a quarter of the vectors.
    pub fn remove<B: BlockStore>(&mut self, b: &B, s: &mut IndexScratch<'_>, slot: u32) -> IResult<(), B::Error> {
        let mut h = self.head(b, slot)?;
        if h.flags != NODE_IN_GRAPH {
            return Err(IndexError::Corrupt(FormatError::Corrupt {
                what: "removing a vector not in the graph",
                value: slot as u64,
            }));
        }
        h.flags |= NODE_DELETED;
        self.set_head(b, slot, &h)?;
        self.set_owner(b, slot, None)?;
        self.header.live = self.header.live.saturating_sub(1);
        self.header.deleted += 1;
        if self.header.entry == slot {
            self.pick_entry(b)?;
        }
        if self.header.deleted as u64 * 4 >= (self.header.live as u64 + self.header.deleted as u64)
            && self.header.deleted >= 16
            || self.header.live == 0
        {
            self.purge(b, s)?;
        }
        self.write_header(b)
    }

    /// Picks a live node of the highest level as the entry point (or none).
    fn pick_entry<B: BlockStore>(&mut self, b: &B) -> IResult<(), B::Error> {
        let mut best: Option<(u8, u32)> = None;
        for slot in 0..self.capacity as u32 {
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
                self.header.entry_level = l as u32;
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
        for slot in 0..self.capacity as u32 {
            let h = self.head(b, slot)?;
            if h.flags != NODE_IN_GRAPH {
                continue;
            }
            for level in 0..=h.level {
                let mut g = GraphStore { b, ix: self, query: &[], bounce: &mut *s.bounce };
                hnsw::repair(&mut g, &mut s.hnsw, &self.params, slot, level)?;
            }
        }
        for slot in 0..self.capacity as u32 {
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

    /// The `k` nearest live vectors to `query` (`dim` float bit patterns): `(key, slot)` pairs,
    /// nearest first, into `out`; returns how many.
    pub fn search<B: BlockStore, V: Visited + ?Sized>(
        &self,
        b: &B,
        s: &mut IndexScratch<'_>,
        visited: &mut V,
        query: &[u32],
        k: usize,
        ef: usize,
        out: &mut [(u32, u32)],
    ) -> IResult<usize, B::Error> {
        if query.len() != self.dim as usize {
            return Err(IndexError::Invalid("query dimension"));
        }
        let mut g = GraphStore { b, ix: self, query, bounce: &mut *s.bounce };
        hnsw::search(&mut g, visited, &mut s.hnsw, self.params.m, self.entry(), k, ef, out)
    }
}

/// [`hnsw::Store`] over the index's blocks.
struct GraphStore<'a, 't, B: BlockStore> {
    b: &'a B,
    ix: &'a VecIndex<'t>,
    query: &'a [u32],
    bounce: &'a mut [u32],
}

impl<B: BlockStore> GraphStore<'_, '_, B> {
    /// Distances from `q` (a pointer to dim words) to the vectors of `ids`, batch by batch.
    fn dist_from(&mut self, q: *const u32, ids: &[u32], keys: &mut [u32]) -> IResult<(), B::Error> {
        let ix = self.ix;
        let words = (ix.stride / 4) as usize;
        let vec_bytes = ix.dim as usize * 4;
        let mut done = 0usize;
        for chunk in ids.chunks(BATCH) {
            let mut refs: [Option<B::Ref<'_>>; BATCH] = core::array::from_fn(|_| None);
            let mut ptrs = [core::ptr::null::<u32>(); BATCH];
            for (i, &id) in chunk.iter().enumerate() {
                ix.check_slot(id)?;
                let pos = id as u64 * ix.stride;
                let off = (pos % BLOCK_SIZE as u64) as usize;
                if off + vec_bytes <= BLOCK_SIZE {
                    let r = rd(self.b, ix.data_start + pos / BLOCK_SIZE as u64)?;
                    let p = ptrs.get_mut(i).ok_or(IndexError::Invalid("batch size"))?;
                    *p = span(&r, off, vec_bytes, "vector data position")?.as_ptr().cast();
                    *refs.get_mut(i).ok_or(IndexError::Invalid("batch size"))? = Some(r);
                } else {
                    let dst = self
                        .bounce
                        .get_mut(i * words..(i + 1) * words)
                        .ok_or_else(|| IndexError::Invalid("bounce buffer"))?;
                    ix.read_vector(self.b, id, dst)?;
                    *ptrs.get_mut(i).ok_or(IndexError::Invalid("batch size"))? = dst.as_ptr();
                }
            }
            let out = keys.get_mut(done..done + chunk.len()).ok_or_else(|| IndexError::Invalid("key buffer"))?;
            let ptrs = ptrs.get(..chunk.len()).ok_or(IndexError::Invalid("batch size"))?;
            // SAFETY: `q` points at the query (dim words) or a bounce buffer; each pointer of the
            // batch was set above (none is null) and points at `dim` words inside a block held in
            // `refs` or inside a bounce buffer, 4-byte aligned (slots are 32-byte aligned).
            unsafe { ix.dist.distances(ix.metric, ix.dim, q, ptrs, out) };
            for k in out.iter_mut() {
                *k = crate::distance::key_from_bits(*k);
            }
            done += chunk.len();
        }
        Ok(())
    }

    fn list_pos(&self, node: u32, level: u8) -> IResult<Option<(u64, usize, usize, usize)>, B::Error> {
        let h = self.ix.head(self.b, node)?;
        if h.flags == 0 {
            return Err(IndexError::Corrupt(FormatError::Corrupt {
                what: "link to a free vector slot",
                value: node as u64,
            }));
        }
        if level == 0 {
            let (blk, off) = self.ix.geo.level0_pos(node);
            return Ok(Some((blk, off + 8, 2, self.ix.geo.m0 as usize)));
        }
        if level > h.level {
            return Ok(None);
        }
        let (blk, off) = self.ix.geo.upper_pos(h.upper as u64 + level as u64 - 1);
        Ok(Some((blk, off + 4, 4, self.ix.geo.m as usize)))
    }
}

impl<B: BlockStore> Store for GraphStore<'_, '_, B> {
    type Error = IndexError<B::Error>;

    fn dist_query(&mut self, ids: &[u32], keys: &mut [u32]) -> IResult<(), B::Error> {
        let q = self.query.as_ptr();
        self.dist_from(q, ids, keys)
    }

    fn dist_pair(&mut self, a: u32, ids: &[u32], keys: &mut [u32]) -> IResult<(), B::Error> {
        let words = (self.ix.stride / 4) as usize;
        // The last bounce slot holds `a` (the batch uses the first BATCH).
        let start = (BATCH + 1) * words;
        let buf = self.bounce.get_mut(start..start + words).ok_or_else(|| IndexError::Invalid("bounce buffer"))?;
        self.ix.read_vector(self.b, a, buf)?;
        let q = buf.as_ptr();
        self.dist_from(q, ids, keys)
    }

    fn links(&mut self, node: u32, level: u8, out: &mut [u32]) -> IResult<usize, B::Error> {
        let Some((blk, off, count_bytes, cap)) = self.list_pos(node, level)? else { return Ok(0) };
        let r = rd(self.b, blk)?;
        // The count sits just before the links: u16 at level 0, u32 above.
        let count = if count_bytes == 2 {
            crate::format::le::u16_at(&r, off - 8, "hnsw level-0 record").map_err(IndexError::Corrupt)? as usize
        } else {
            u32_at(&r, off - 4, "hnsw upper record").map_err(IndexError::Corrupt)? as usize
        };
        if count > cap || count > out.len() {
            return Err(IndexError::Corrupt(FormatError::Corrupt { what: "hnsw link count", value: count as u64 }));
        }
        for (i, o) in out.iter_mut().take(count).enumerate() {
            let v = u32_at(&r, off + 4 * i, "hnsw links").map_err(IndexError::Corrupt)?;
            self.ix.check_slot(v)?;
            *o = v;
        }
        Ok(count)
    }

    fn set_links(&mut self, node: u32, level: u8, links: &[u32]) -> IResult<(), B::Error> {
        let Some((blk, off, count_bytes, cap)) = self.list_pos(node, level)? else {
            return Err(IndexError::Invalid("set_links above the node's level"));
        };
        if links.len() > cap {
            return Err(IndexError::Invalid("too many links"));
        }
        if count_bytes == 2 {
            let mut h = self.ix.head(self.b, node)?;
            h.count = links.len() as u16;
            self.ix.set_head(self.b, node, &h)?;
        }
        let mut w = wr(self.b, blk)?;
        if count_bytes == 4 {
            put_u32(&mut w, off - 4, links.len() as u32);
        }
        for (i, &l) in links.iter().enumerate() {
            put_u32(&mut w, off + 4 * i, l);
        }
        Ok(())
    }

    fn is_deleted(&mut self, node: u32) -> IResult<bool, B::Error> {
        let h = self.ix.head(self.b, node)?;
        if h.flags == 0 {
            return Err(IndexError::Corrupt(FormatError::Corrupt {
                what: "link to a free vector slot",
                value: node as u64,
            }));
        }
        Ok(h.flags & NODE_DELETED != 0)
    }

    fn invalid(&self, what: &'static str) -> IndexError<B::Error> {
        IndexError::Invalid(what)
    }
}
