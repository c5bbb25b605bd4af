//! Rebuilding the HNSW graph from the vectors (`fsck.vexfs -y`).
//!
//! The graph (the HNSW header and the level-0 and upper-level records) is derived data: the
//! vector bitmap, the vector map, the vector data and the files' chunk lists say which vector
//! each slot holds and who owns it. When the graph is damaged (a header that does not decode,
//! a bad entry point, a bad level or flag byte, a link to a free or out-of-range slot, counts
//! that disagree, ...) but those four agree with each other, the whole graph is made again:
//!
//! 1. the HNSW region (header and every record) is zeroed, and with node records the level-0
//!    record of every slot (in the data region, beside its vector): an empty graph;
//! 2. tombstones (slots marked in use in the bitmap without an owner in the map: deleted
//!    vectors) are dropped, their bitmap bits cleared, as a purge frees them;
//! 3. every live slot (bit set, owner in the map) is linked again, in slot order, with its
//!    own vector, by `vexfs_core::vindex::VecIndex::reinsert`: the kernel's insert code
//!    (`hnsw::insert`) with the superblock's `m` and `ef_construction`. Each slot keeps its
//!    number, so the map and the chunk lists stay valid, and its level (a function of the
//!    slot and the superblock's seed).
//!
//! The blocks are changed in a [`BlockCache`] of the vector regions, then written in place, as
//! fsck's other repairs are (not journaled), in three flushed steps: the header block is
//! overwritten with [`REBUILDING`] (a block that does not decode: the kernel refuses to mount,
//! fsck reports the header), then the records and the bitmap, then the new header. The vectors,
//! the map and the chunk lists are never changed (with node records the blocks of the vectors
//! are written, their vector bytes as they were), so a crash at any point leaves the old graph
//! or a graph whose header does not decode, which the next `-y` rebuilds again, with the same
//! result.
//!
//! Nothing is rebuilt when the vector store itself disagrees (a map entry that does not
//! decode, an owner on a free slot, a live slot that no chunk lists or that lists another,
//! a non-finite live vector, a chunk list that cannot be read): which vector is right cannot
//! be known, and a note says why.

use std::collections::HashMap;
use std::io;

use vexfs_core::distance::best_impl;
use vexfs_core::format::superblock::Region;
use vexfs_core::format::vector::{HnswGeometry, MapEntry, MAP_ENTRY};
use vexfs_core::format::{bit_set, bit_test, BITS_PER_BLOCK, BLOCK_SIZE};
use vexfs_core::io::{Block, BlockDevice, BlockStore};

use super::{Checker, Fix, Kind};
use crate::vectors::{index_mem, BlockCache, CachedBlocks};
use crate::{Error, Image, Result};

const BS: u64 = BLOCK_SIZE as u64;

/// What the HNSW header block holds while a rebuild writes the records: no valid header
/// (its magic is wrong), so a crash half way is never taken for a graph.
pub const REBUILDING: Block = [0xff; BLOCK_SIZE];

/// What a rebuild of the HNSW graph did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rebuilt {
    /// Live vectors linked into the new graph, each in its own slot.
    pub live: u32,
    /// Tombstones dropped (deleted vectors: their slots freed).
    pub dropped: u32,
}

/// The slots as the vector bitmap and map give them (the HNSW records are not read).
struct StoreSlots {
    /// Live slots (bit set, owner in the map), ascending, with their owners.
    live: Vec<(u32, MapEntry)>,
    /// Tombstones (bit set, no owner), ascending.
    tombs: Vec<u32>,
}

/// Reads the vector bitmap, map and the live vectors, without the graph. `Ok(Err(why))` when
/// they disagree: a bit past the last slot, a map entry that does not decode, an owner on a
/// free slot, a non-finite live vector. Errors: `Io`.
fn read_store<D: BlockDevice<Error = io::Error>>(img: &Image<D>) -> Result<std::result::Result<StoreSlots, String>> {
    let sb = img.sb();
    let cap = sb.vec_capacity;
    let bitmap = img.read_region(Region::VecBitmap)?;
    let bits = bitmap.len() as u64 * 8;
    if let Some(i) = (cap..bits).find(|&i| bit_test(&bitmap, i as usize)) {
        return Ok(Err(format!("the vector bitmap has bit {i} set, past the last slot")));
    }
    let map_start = sb.region(Region::VecMap).start;
    let geo = HnswGeometry::new(sb);
    let dim = sb.vec_dim as usize;
    let mut map = Blocks::new(img);
    let mut data = Blocks::new(img);
    let mut out = StoreSlots { live: Vec::new(), tombs: Vec::new() };
    for s in 0..cap {
        let slot = u32::try_from(s).map_err(|_| Error::Invalid(format!("vector capacity {cap}")))?;
        let pos = s * MAP_ENTRY as u64;
        let raw = &map.get(map_start + pos / BS)?[(pos % BS) as usize..][..MAP_ENTRY];
        let owner = match MapEntry::decode(slot, raw) {
            Ok(o) => o,
            Err(e) => return Ok(Err(format!("vector slot {s}: {e}"))),
        };
        let used = bit_test(&bitmap, s as usize);
        match (used, owner) {
            (false, None) => {}
            (false, Some(e)) => {
                return Ok(Err(format!(
                    "vector slot {s} is free in the vector bitmap but has an owner (inode {}, chunk {})",
                    e.ino, e.chunk
                )))
            }
            (true, None) => out.tombs.push(slot),
            (true, Some(e)) => {
                // The vector's byte position on the device (it may run on into the next block).
                let (blk, off) = geo.vector_pos(slot);
                let mut pos = blk * BS + off as u64;
                let mut i = 0usize;
                while i < dim {
                    let b = data.get(pos / BS)?;
                    let o = (pos % BS) as usize;
                    let take = (dim - i).min((BLOCK_SIZE - o) / 4);
                    for w in b[o..o + 4 * take].chunks_exact(4) {
                        let bits = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                        if bits & 0x7f80_0000 == 0x7f80_0000 {
                            return Ok(Err(format!(
                                "vector slot {s}: component {i} is not finite (bits {bits:#010x})"
                            )));
                        }
                        i += 1;
                    }
                    pos += 4 * take as u64;
                }
                out.live.push((slot, e));
            }
        }
    }
    Ok(Ok(out))
}

/// The last block read, for scans that walk a region in order.
struct Blocks<'a, D> {
    img: &'a Image<D>,
    last: Option<(u64, Box<Block>)>,
}

impl<'a, D: BlockDevice<Error = io::Error>> Blocks<'a, D> {
    fn new(img: &'a Image<D>) -> Self {
        Blocks { img, last: None }
    }

    fn get(&mut self, n: u64) -> Result<&Block> {
        if !matches!(&self.last, Some((m, _)) if *m == n) {
            self.last = Some((n, self.img.read_block(n)?));
        }
        match &self.last {
            Some((_, b)) => Ok(b),
            None => Err(Error::Invalid("no block".into())),
        }
    }
}

impl<D: BlockDevice<Error = io::Error>> Checker<'_, D> {
    /// After the vector checks (whose problems start at index `first`): when they found the
    /// graph damaged and the vector store is sound, every one of those problems gets the fix
    /// [`Fix::RebuildGraph`] (counts alone keep their own, cheaper fix); when the store is
    /// not sound, a note says why the graph cannot be rebuilt.
    pub(super) fn offer_rebuild(&mut self, first: usize) -> Result<()> {
        let found = self.problems.get(first..).unwrap_or(&[]);
        // Counts are fixed alone, and a code is written again from its vector (the rebuild
        // does not touch the codes): neither calls for a rebuild.
        if found.iter().all(|p| matches!(p.kind, Kind::VectorCounts | Kind::VectorCode)) {
            return Ok(());
        }
        match self.rebuild_blocker()? {
            None => {
                for p in self.problems.iter_mut().skip(first).filter(|p| p.kind != Kind::VectorCode) {
                    p.fix = Some(Fix::RebuildGraph);
                }
            }
            Some(why) => {
                let graph = [Kind::VectorHeader, Kind::VectorEntry, Kind::VectorRecord, Kind::VectorLinks];
                if found.iter().any(|p| graph.contains(&p.kind)) {
                    self.notes.push(format!("the HNSW graph is damaged but cannot be rebuilt from the vectors: {why}"));
                }
            }
        }
        Ok(())
    }

    /// Why the graph cannot be rebuilt (`None`: it can): the chunk lists are not all known,
    /// the bitmap, map and vectors disagree ([`read_store`]), or the map and the chunk lists
    /// do not name each other's slots exactly. Errors: `Io`.
    fn rebuild_blocker(&self) -> Result<Option<String>> {
        if !self.tree_complete {
            return Ok(Some("the directory tree could not be read whole, so the chunk lists are not known".into()));
        }
        if let Some(ino) = self.bad_chunks.iter().min() {
            return Ok(Some(format!("the chunk list of inode {ino} is damaged")));
        }
        let slots = match read_store(self.img)? {
            Ok(s) => s,
            Err(why) => return Ok(Some(why)),
        };
        let mut inos: Vec<u32> = self.chunks.keys().copied().collect();
        inos.sort_unstable();
        let mut holder: HashMap<u32, (u32, usize)> = HashMap::new();
        for ino in inos {
            for (c, &slot) in self.chunks[&ino].iter().enumerate() {
                if let Some((i2, c2)) = holder.insert(slot, (ino, c)) {
                    return Ok(Some(format!(
                        "vector slot {slot} is chunk {c2} of inode {i2} and chunk {c} of inode {ino}"
                    )));
                }
            }
        }
        for (slot, e) in &slots.live {
            match holder.remove(slot) {
                Some((i, c)) if u64::from(i) == e.ino && c == e.chunk as usize => {}
                _ => {
                    return Ok(Some(format!(
                        "vector slot {slot} belongs to inode {} chunk {} in the map, which the file's chunk list does not say",
                        e.ino, e.chunk
                    )))
                }
            }
        }
        if let Some((slot, (ino, c))) = holder.into_iter().min() {
            return Ok(Some(format!(
                "inode {ino} chunk {c} is vector slot {slot}, which the vector bitmap and map do not hold live"
            )));
        }
        Ok(None)
    }
}

/// Rebuilds the HNSW graph of `img` from its vectors (see the module's docs) and flushes.
/// Errors: `Invalid` when the vector bitmap, map and vectors disagree (the check offers the
/// rebuild only when they agree with each other and with the chunk lists); `Io`.
pub(super) fn rebuild_graph<D: BlockDevice<Error = io::Error>>(img: &mut Image<D>) -> Result<Rebuilt> {
    let slots = read_store(img)?.map_err(|why| Error::Invalid(format!("the HNSW graph cannot be rebuilt: {why}")))?;
    let sb = img.sb().clone();
    let cache = BlockCache::for_vectors(&sb);
    let imp = best_impl();
    let mut mem = index_mem(&sb, 0)?;
    let hnsw = sb.region(Region::Hnsw);
    let mut header: Block = REBUILDING;
    {
        let store = CachedBlocks { dev: img.device(), cache: &cache };
        for n in hnsw.start..hnsw.end() {
            store.write(n)?.fill(0);
        }
        // With node records the level-0 records lie beside the vectors: zeroed one by one.
        let geo = HnswGeometry::new(&sb);
        if geo.node_records {
            for s in 0..sb.vec_capacity {
                let (blk, off) = geo.level0_pos(s as u32);
                store.write(blk)?[off..off + geo.level0_size as usize].fill(0);
            }
        }
        let bitmap = sb.region(Region::VecBitmap).start;
        for &t in &slots.tombs {
            let t = u64::from(t);
            bit_set(&mut store.write(bitmap + t / BITS_PER_BLOCK)?, (t % BITS_PER_BLOCK) as usize, false);
        }
        let mut v = vec![0u32; sb.vec_dim as usize];
        mem.with_index(&imp, |ix, pad| {
            for &(slot, _) in &slots.live {
                ix.read_vector(&store, slot, &mut v)?;
                ix.reinsert(&store, &mut pad.scratch, &mut *pad.visited, slot, &v)?;
            }
            Ok(())
        })?;
        // The new header goes last; the write-back writes the marker again in its place.
        let mut w = store.write(hnsw.start)?;
        header.copy_from_slice(&w);
        w.copy_from_slice(&REBUILDING);
    }
    let flush = |img: &mut Image<D>| img.device_mut().flush().map_err(Error::io("flushing the device"));
    img.write_block(hnsw.start, &REBUILDING)?;
    flush(img)?;
    cache.write_back(img.device_mut())?;
    flush(img)?;
    img.write_block(hnsw.start, &header)?;
    flush(img)?;
    let count = |n: usize| u32::try_from(n).map_err(|_| Error::Invalid(format!("{n} vectors")));
    Ok(Rebuilt { live: count(slots.live.len())?, dropped: count(slots.tombs.len())? })
}
