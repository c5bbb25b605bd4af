//! The on-disk vector index: slots, the vector map, vector data and the HNSW graph in their
//! regions, read and written through [`Blocks`]. The kernel implements [`Blocks`] with the
//! buffer cache and its FPU distance kernels; the tools with an image file. Both run this code,
//! so both build and search the same graph.
//!
//! Locking is the caller's: one [`VecIndex`] operation at a time per filesystem.

use crate::error::{FormatError, Result as FResult};
use crate::format::le::{put_u32, u32_at};
use crate::format::superblock::{Region, Superblock};
use crate::format::vector::{
    HnswGeometry, HnswHeader, Level0Head, MapEntry, UpperTable, MAP_ENTRY, NODE_DELETED, NODE_IN_GRAPH, NO_SLOT,
};
use crate::format::{bit_find_clear, bit_set, bit_test, BLOCK_SIZE};
use crate::hnsw::{self, Params, Scratch, Store, Visited};
use core::ops::{Deref, DerefMut};

/// Vectors fetched per distance batch (and the bounce buffers a caller provides).
pub const BATCH: usize = 32;

/// Block access for the index. `read`/`write` hand out a borrowed block; a `write` block is
/// written back (marked dirty) when dropped.
pub trait Blocks {
    type Error;
    type Ref<'a>: Deref<Target = [u8]>
    where
        Self: 'a;
    type RefMut<'a>: DerefMut<Target = [u8]>
    where
        Self: 'a;
    /// Block `n`, for reading.
    fn read(&self, n: u64) -> Result<Self::Ref<'_>, Self::Error>;
    /// Block `n`, for changing.
    fn write(&self, n: u64) -> Result<Self::RefMut<'_>, Self::Error>;
    /// `out[i]` = float bits of the distance (`metric`) from `q` to the `dim` floats at
    /// `vecs[i]`.
    ///
    /// # Safety
    /// `q` and every `vecs[i]` point at `dim` readable, 4-byte aligned `u32`s that stay valid
    /// and unchanged for the call.
    unsafe fn distances(&self, metric: u32, dim: u32, q: *const u32, vecs: &[*const u32], out: &mut [u32]);
    /// The error for corrupt data (the kernel logs it and returns EUCLEAN).
    fn corrupt(&self, e: FormatError) -> Self::Error;
    /// The error for an impossible request or a broken invariant (EINVAL).
    fn invalid(&self, what: &'static str) -> Self::Error;
    /// The error when no slot is free (ENOSPC).
    fn no_space(&self) -> Self::Error;
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
    pub fn open<B: Blocks>(b: &B, sb: &Superblock, upper: &'t [u32]) -> Result<Self, B::Error> {
        let geo = HnswGeometry::new(sb);
        let header = HnswHeader::decode(&b.read(geo.header)?, geo.header).map_err(|e| b.corrupt(e))?;
        let ix = Self::with_header(sb, upper, header, 0);
        if upper.len() as u64 != sb.vec_capacity + 1 {
            return Err(b.invalid("upper table size"));
        }
        if header.entry != NO_SLOT {
            let h = ix.head(b, header.entry)?;
            if h.flags != NODE_IN_GRAPH || h.level as u32 != header.entry_level {
                return Err(b.corrupt(FormatError::Corrupt { what: "hnsw entry point", value: header.entry as u64 }));
            }
        } else if header.live != 0 {
            return Err(b.corrupt(FormatError::Corrupt {
                what: "hnsw live count without entry point",
                value: header.live as u64,
            }));
        }
        if header.live as u64 + header.deleted as u64 > sb.vec_capacity {
            return Err(b.corrupt(FormatError::Corrupt { what: "hnsw vector counts", value: header.live as u64 }));
        }
        Ok(ix)
    }

    /// The index with a header already read by [`Self::open`] (no I/O): for callers that keep
    /// `header` and `hint` between operations.
    pub fn with_header(sb: &Superblock, upper: &'t [u32], header: HnswHeader, hint: u64) -> Self {
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
        }
    }

    /// The entry point and its level, if the graph is not empty.
    pub fn entry(&self) -> Option<(u32, u8)> {
        (self.header.entry != NO_SLOT).then_some((self.header.entry, self.header.entry_level as u8))
    }

    fn check_slot<B: Blocks>(&self, b: &B, slot: u32) -> Result<(), B::Error> {
        if (slot as u64) < self.capacity {
            Ok(())
        } else {
            Err(b.corrupt(FormatError::Corrupt { what: "vector slot number", value: slot as u64 }))
        }
    }

    /// Level of slot `slot` by construction (from the upper table).
    pub fn slot_level(&self, slot: u32) -> (u8, u32) {
        let a = self.upper.get(slot as usize).copied().unwrap_or(0);
        let z = self.upper.get(slot as usize + 1).copied().unwrap_or(a);
        (z.saturating_sub(a).min(255) as u8, a)
    }

    /// The level-0 record head of `slot`, checked against the slot's fixed level.
    pub fn head<B: Blocks>(&self, b: &B, slot: u32) -> Result<Level0Head, B::Error> {
        self.check_slot(b, slot)?;
        let (blk, off) = self.geo.level0_pos(slot);
        let blkref = b.read(blk)?;
        let h = Level0Head::decode(blkref.get(off..).unwrap_or(&[])).map_err(|e| b.corrupt(e))?;
        if h.flags != 0 {
            let (level, upper) = self.slot_level(slot);
            if h.level != level
                || h.upper != upper
                || h.flags & !(NODE_IN_GRAPH | NODE_DELETED) != 0
                || h.count as u32 > self.geo.m0
            {
                return Err(b.corrupt(FormatError::Corrupt { what: "hnsw level-0 record", value: slot as u64 }));
            }
        }
        Ok(h)
    }

    fn set_head<B: Blocks>(&self, b: &B, slot: u32, h: &Level0Head) -> Result<(), B::Error> {
        let (blk, off) = self.geo.level0_pos(slot);
        let mut w = b.write(blk)?;
        if let Some(r) = w.get_mut(off..) {
            h.encode(r);
        }
        Ok(())
    }

    /// Zeroes the whole level-0 record of `slot` (head and links): a free slot's record is
    /// all zero.
    fn clear_record<B: Blocks>(&self, b: &B, slot: u32) -> Result<(), B::Error> {
        let (blk, off) = self.geo.level0_pos(slot);
        let mut w = b.write(blk)?;
        if let Some(r) = w.get_mut(off..off + self.geo.level0_size as usize) {
            r.fill(0);
        }
        Ok(())
    }

    /// Owner of `slot` (`None` when free or deleted).
    pub fn owner<B: Blocks>(&self, b: &B, slot: u32) -> Result<Option<MapEntry>, B::Error> {
        self.check_slot(b, slot)?;
        let off = slot as u64 * MAP_ENTRY as u64;
        let blk = b.read(self.map_start + off / BLOCK_SIZE as u64)?;
        let o = (off % BLOCK_SIZE as u64) as usize;
        MapEntry::decode(slot, blk.get(o..).unwrap_or(&[])).map_err(|e| b.corrupt(e))
    }

    fn set_owner<B: Blocks>(&self, b: &B, slot: u32, e: Option<MapEntry>) -> Result<(), B::Error> {
        let off = slot as u64 * MAP_ENTRY as u64;
        let mut blk = b.write(self.map_start + off / BLOCK_SIZE as u64)?;
        let o = (off % BLOCK_SIZE as u64) as usize;
        MapEntry::encode(e, slot, blk.get_mut(o..).unwrap_or(&mut []));
        Ok(())
    }

    /// Copies the vector of `slot` (`dim` float bit patterns) into `out`.
    pub fn read_vector<B: Blocks>(&self, b: &B, slot: u32, out: &mut [u32]) -> Result<(), B::Error> {
        self.check_slot(b, slot)?;
        let n = self.dim as usize;
        let out = out.get_mut(..n).ok_or_else(|| b.invalid("vector buffer"))?;
        let mut pos = slot as u64 * self.stride;
        let mut done = 0usize;
        while done < n {
            let blk = b.read(self.data_start + pos / BLOCK_SIZE as u64)?;
            let o = (pos % BLOCK_SIZE as u64) as usize;
            // The run of this vector inside this block, copied word by word from one slice.
            let words = ((BLOCK_SIZE - o) / 4).min(n - done);
            let src = blk.get(o..o + 4 * words).unwrap_or(&[]);
            let dst = out.get_mut(done..done + words).unwrap_or(&mut []);
            for (i, d) in dst.iter_mut().enumerate() {
                if let Some(w) = src.get(4 * i..).and_then(|r| r.first_chunk::<4>()) {
                    *d = u32::from_le_bytes(*w);
                }
            }
            done += words.max(1);
            pos += 4 * words.max(1) as u64;
        }
        Ok(())
    }

    fn write_vector<B: Blocks>(&self, b: &B, slot: u32, v: &[u32]) -> Result<(), B::Error> {
        let mut pos = slot as u64 * self.stride;
        let mut done = 0usize;
        while done < v.len() {
            let mut blk = b.write(self.data_start + pos / BLOCK_SIZE as u64)?;
            let mut o = (pos % BLOCK_SIZE as u64) as usize;
            while done < v.len() && o + 4 <= BLOCK_SIZE {
                put_u32(&mut blk, o, v.get(done).copied().unwrap_or(0));
                done += 1;
                o += 4;
                pos += 4;
            }
        }
        Ok(())
    }

    fn bit<B: Blocks>(&self, b: &B, slot: u32, on: Option<bool>) -> Result<bool, B::Error> {
        let bits = BLOCK_SIZE as u64 * 8;
        let blk = self.bitmap_start + slot as u64 / bits;
        let i = (slot as u64 % bits) as usize;
        match on {
            None => Ok(bit_test(&b.read(blk)?, i)),
            Some(on) => {
                let mut w = b.write(blk)?;
                let was = bit_test(&w, i);
                bit_set(&mut w, i, on);
                Ok(was)
            }
        }
    }

    /// Whether `slot` is marked in use in the vector bitmap.
    pub fn slot_in_use<B: Blocks>(&self, b: &B, slot: u32) -> Result<bool, B::Error> {
        self.check_slot(b, slot)?;
        self.bit(b, slot, None)
    }

    fn alloc_slot<B: Blocks>(&mut self, b: &B) -> Result<Option<u32>, B::Error> {
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
                let found = bit_find_clear(&b.read(self.bitmap_start + bi)?, (pos - base) as usize, limit);
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

    fn write_header<B: Blocks>(&self, b: &B) -> Result<(), B::Error> {
        let mut w = b.write(self.geo.header)?;
        self.header.encode(&mut w, self.geo.header);
        Ok(())
    }

    /// Inserts `vector` (`dim` float bit patterns, finite: the caller checked) owned by
    /// `owner`; returns its slot. Purges tombstones first when no slot is free.
    /// Errors: `no_space` when the index is full; corrupt data; the store's I/O errors.
    pub fn insert<B: Blocks, V: Visited + ?Sized>(
        &mut self,
        b: &B,
        s: &mut IndexScratch<'_>,
        visited: &mut V,
        vector: &[u32],
        owner: MapEntry,
    ) -> Result<u32, B::Error> {
        if vector.len() != self.dim as usize {
            return Err(b.invalid("vector dimension"));
        }
        let slot = match self.alloc_slot(b)? {
            Some(s) => s,
            None if self.header.deleted > 0 => {
                self.purge(b, s)?;
                self.alloc_slot(b)?.ok_or_else(|| b.no_space())?
            }
            None => return Err(b.no_space()),
        };
        let (level, upper) = self.slot_level(slot);
        self.write_vector(b, slot, vector)?;
        self.set_owner(b, slot, Some(owner))?;
        self.set_head(b, slot, &Level0Head { count: 0, level, flags: NODE_IN_GRAPH, upper })?;
        for l in 1..=level {
            let (blk, off) = self.geo.upper_pos(upper as u64 + l as u64 - 1);
            put_u32(&mut b.write(blk)?, off, 0);
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
    pub fn remove<B: Blocks>(&mut self, b: &B, s: &mut IndexScratch<'_>, slot: u32) -> Result<(), B::Error> {
        let mut h = self.head(b, slot)?;
        if h.flags != NODE_IN_GRAPH {
            return Err(
                b.corrupt(FormatError::Corrupt { what: "removing a vector not in the graph", value: slot as u64 })
            );
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
    fn pick_entry<B: Blocks>(&mut self, b: &B) -> Result<(), B::Error> {
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
    pub fn purge<B: Blocks>(&mut self, b: &B, s: &mut IndexScratch<'_>) -> Result<(), B::Error> {
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
    pub fn search<B: Blocks, V: Visited + ?Sized>(
        &self,
        b: &B,
        s: &mut IndexScratch<'_>,
        visited: &mut V,
        query: &[u32],
        k: usize,
        ef: usize,
        out: &mut [(u32, u32)],
    ) -> Result<usize, B::Error> {
        if query.len() != self.dim as usize {
            return Err(b.invalid("query dimension"));
        }
        let mut g = GraphStore { b, ix: self, query, bounce: &mut *s.bounce };
        hnsw::search(&mut g, visited, &mut s.hnsw, self.params.m, self.entry(), k, ef, out)
    }
}

/// [`hnsw::Store`] over the index's blocks.
struct GraphStore<'a, 't, B: Blocks> {
    b: &'a B,
    ix: &'a VecIndex<'t>,
    query: &'a [u32],
    bounce: &'a mut [u32],
}

impl<B: Blocks> GraphStore<'_, '_, B> {
    /// Distances from `q` (a pointer to dim words) to the vectors of `ids`, batch by batch.
    fn dist_from(&mut self, q: *const u32, ids: &[u32], keys: &mut [u32]) -> Result<(), B::Error> {
        let ix = self.ix;
        let words = (ix.stride / 4) as usize;
        let vec_bytes = ix.dim as usize * 4;
        let mut done = 0usize;
        for chunk in ids.chunks(BATCH) {
            let mut refs: [Option<B::Ref<'_>>; BATCH] = core::array::from_fn(|_| None);
            let mut ptrs = [core::ptr::null::<u32>(); BATCH];
            for (i, &id) in chunk.iter().enumerate() {
                ix.check_slot(self.b, id)?;
                let pos = id as u64 * ix.stride;
                let off = (pos % BLOCK_SIZE as u64) as usize;
                if off + vec_bytes <= BLOCK_SIZE {
                    let r = self.b.read(ix.data_start + pos / BLOCK_SIZE as u64)?;
                    if let (Some(p), Some(bytes)) = (ptrs.get_mut(i), r.get(off..)) {
                        *p = bytes.as_ptr().cast();
                    }
                    if let Some(slot) = refs.get_mut(i) {
                        *slot = Some(r);
                    }
                } else {
                    let dst = self
                        .bounce
                        .get_mut(i * words..(i + 1) * words)
                        .ok_or_else(|| self.b.invalid("bounce buffer"))?;
                    ix.read_vector(self.b, id, dst)?;
                    if let Some(p) = ptrs.get_mut(i) {
                        *p = dst.as_ptr();
                    }
                }
            }
            let out = keys.get_mut(done..done + chunk.len()).ok_or_else(|| self.b.invalid("key buffer"))?;
            // SAFETY: `q` points at the query (dim words) or a bounce buffer; each pointer of the
            // batch points into a block held in `refs` or into a bounce buffer of `dim` words.
            unsafe { self.b.distances(ix.metric, ix.dim, q, ptrs.get(..chunk.len()).unwrap_or(&[]), out) };
            for k in out.iter_mut() {
                *k = crate::distance::key_from_bits(*k);
            }
            done += chunk.len();
        }
        Ok(())
    }

    fn list_pos(&self, node: u32, level: u8) -> Result<Option<(u64, usize, usize, usize)>, B::Error> {
        let h = self.ix.head(self.b, node)?;
        if h.flags == 0 {
            return Err(self
                .b
                .corrupt(FormatError::Corrupt { what: "link to a free vector slot", value: node as u64 }));
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

impl<B: Blocks> Store for GraphStore<'_, '_, B> {
    type Error = B::Error;

    fn dist_query(&mut self, ids: &[u32], keys: &mut [u32]) -> Result<(), B::Error> {
        let q = self.query.as_ptr();
        self.dist_from(q, ids, keys)
    }

    fn dist_pair(&mut self, a: u32, ids: &[u32], keys: &mut [u32]) -> Result<(), B::Error> {
        let words = (self.ix.stride / 4) as usize;
        // The last bounce slot holds `a` (the batch uses the first BATCH).
        let start = (BATCH + 1) * words;
        let buf = self.bounce.get_mut(start..start + words).ok_or_else(|| self.b.invalid("bounce buffer"))?;
        self.ix.read_vector(self.b, a, buf)?;
        let q = buf.as_ptr();
        self.dist_from(q, ids, keys)
    }

    fn links(&mut self, node: u32, level: u8, out: &mut [u32]) -> Result<usize, B::Error> {
        let Some((blk, off, count_bytes, cap)) = self.list_pos(node, level)? else { return Ok(0) };
        let r = self.b.read(blk)?;
        // The count sits just before the links: u16 at level 0, u32 above.
        let count = if count_bytes == 2 {
            crate::format::le::u16_at(&r, off - 8, "hnsw level-0 record").map_err(|e| self.b.corrupt(e))? as usize
        } else {
            u32_at(&r, off - 4, "hnsw upper record").map_err(|e| self.b.corrupt(e))? as usize
        };
        if count > cap || count > out.len() {
            return Err(self.b.corrupt(FormatError::Corrupt { what: "hnsw link count", value: count as u64 }));
        }
        for (i, o) in out.iter_mut().take(count).enumerate() {
            let v = u32_at(&r, off + 4 * i, "hnsw links").map_err(|e| self.b.corrupt(e))?;
            self.ix.check_slot(self.b, v)?;
            *o = v;
        }
        Ok(count)
    }

    fn set_links(&mut self, node: u32, level: u8, links: &[u32]) -> Result<(), B::Error> {
        let Some((blk, off, count_bytes, cap)) = self.list_pos(node, level)? else {
            return Err(self.b.invalid("set_links above the node's level"));
        };
        if links.len() > cap {
            return Err(self.b.invalid("too many links"));
        }
        if count_bytes == 2 {
            let mut h = self.ix.head(self.b, node)?;
            h.count = links.len() as u16;
            self.ix.set_head(self.b, node, &h)?;
        }
        let mut w = self.b.write(blk)?;
        if count_bytes == 4 {
            put_u32(&mut w, off - 4, links.len() as u32);
        }
        for (i, &l) in links.iter().enumerate() {
            put_u32(&mut w, off + 4 * i, l);
        }
        Ok(())
    }

    fn is_deleted(&mut self, node: u32) -> Result<bool, B::Error> {
        let h = self.ix.head(self.b, node)?;
        if h.flags == 0 {
            return Err(self
                .b
                .corrupt(FormatError::Corrupt { what: "link to a free vector slot", value: node as u64 }));
        }
        Ok(h.flags & NODE_DELETED != 0)
    }

    fn invalid(&self, what: &'static str) -> B::Error {
        self.b.invalid(what)
    }
}
