//! The vector checks of fsck: each inode's chunk list (while the tree is walked), then the
//! vector regions against each other and against the chunk lists.
//!
//! A slot's state comes from its level-0 record's flags: free (0), live (`NODE_IN_GRAPH`),
//! deleted (`NODE_IN_GRAPH | NODE_DELETED`, a tombstone) or pending (`NODE_PENDING`: stored and
//! owned like a live slot, not linked yet: no links from it or to it). The vector bitmap, the map entry and
//! the rest of the record must agree with it, as `docs/FORMAT.md` (vector regions) says.
//! A wrong owner or vector cannot be put right without guessing: only the graph is repaired,
//! its counts alone, or the whole of it rebuilt from the vectors when the vector store is
//! sound (`super::rebuild`).

use std::collections::{HashMap, HashSet};
use std::io;

use vexfs_core::format::inode::{Inode, INLINE_VEC_IDS};
use vexfs_core::format::le::u32_at;
use vexfs_core::format::superblock::{Region, Superblock};
use vexfs_core::format::vector::{
    HnswGeometry, HnswHeader, Level0Head, MapEntry, MAP_ENTRY, NODE_DELETED, NODE_IN_GRAPH, NODE_PENDING, NO_SLOT,
};
use vexfs_core::format::{bit_test, BLOCK_SIZE};
use vexfs_core::io::{Block, BlockDevice};
use vexfs_core::sq8;
use vexfs_core::vindex::fill_upper_table;

use super::{mismatch_runs, Checker, Fix, Kind};
use crate::{Error, Image, Result};

const BS: u64 = BLOCK_SIZE as u64;

/// Slot states.
const FREE: u8 = 0;
const LIVE: u8 = 1;
const DELETED: u8 = 2;
/// Unknown flags (reported; the slot is then neither live nor deleted).
const BAD: u8 = 3;
/// Stored and owned, not yet linked into the graph (the vector write-ahead log).
const PENDING: u8 = 4;

fn state_name(s: u8) -> &'static str {
    match s {
        FREE => "free",
        LIVE => "live",
        DELETED => "deleted",
        PENDING => "pending",
        _ => "invalid",
    }
}

/// The last block read, for scans that walk a region in order.
struct Cursor<'a, D> {
    img: &'a Image<D>,
    n: u64,
    b: Option<Box<Block>>,
}

impl<'a, D: BlockDevice<Error = io::Error>> Cursor<'a, D> {
    fn new(img: &'a Image<D>) -> Self {
        Cursor { img, n: 0, b: None }
    }

    fn get(&mut self, n: u64) -> Result<&Block> {
        if self.n != n || self.b.is_none() {
            self.b = Some(self.img.read_block(n)?);
            self.n = n;
        }
        match &self.b {
            Some(b) => Ok(b),
            None => Err(Error::Invalid("no block".into())),
        }
    }
}

/// What the first pass over the slots found.
struct Slots {
    state: Vec<u8>,
    /// Level-0 neighbour count of in-graph slots whose record is valid (else `None`).
    count0: Vec<Option<u16>>,
    /// Owners of live slots with a valid map entry.
    owners: HashMap<u32, MapEntry>,
    /// Live slots whose map entry is invalid (reported already).
    bad_map: HashSet<u32>,
    live: u32,
    deleted: u32,
    pending: u32,
    bad: u32,
    /// Highest level of a live slot.
    top: Option<u8>,
}

impl<D: BlockDevice<Error = io::Error>> Checker<'_, D> {
    /// Checks the chunk list of a reachable inode and records it (regular files with a valid
    /// list, possibly empty). Returns its vector-id block when the inode names one inside
    /// the data region (the block belongs to the inode even if its content is bad).
    pub(super) fn chunk_list(&mut self, ino: u32, inode: &Inode) -> Result<Option<u64>> {
        let vb = inode.vec_block;
        let claim = (vb != 0 && self.sb.region(Region::Data).contains(vb)).then_some(vb);
        let has = inode.vec_count != 0 || vb != 0 || inode.vec_ids != [0; INLINE_VEC_IDS];
        if !inode.is_reg() {
            if has {
                let msg = format!(
                    "inode {ino} is not a regular file but carries vectors (vec_count {}, vector id block {vb})",
                    inode.vec_count
                );
                self.report(Kind::VectorRefs, msg, None);
                self.bad_chunks.insert(ino);
            }
            return Ok(claim);
        }
        let slots = match self.img.vec_slots(ino, inode) {
            Ok(s) => s,
            Err(Error::Format { what, err }) => {
                self.report(Kind::VectorRefs, format!("{what}: {err}"), None);
                self.bad_chunks.insert(ino);
                return Ok(claim);
            }
            Err(e) => return Err(e),
        };
        if let Some(i) = (slots.len()..INLINE_VEC_IDS).find(|&i| inode.vec_ids[i] != 0) {
            let msg = format!(
                "inode {ino}: unused inline vector id {i} is {}, not zero (vec_count {})",
                inode.vec_ids[i], inode.vec_count
            );
            self.report(Kind::VectorRefs, msg, None);
            self.bad_chunks.insert(ino);
            return Ok(claim);
        }
        let cap = self.sb.vec_capacity;
        if let Some((c, s)) = slots.iter().enumerate().find(|(_, &s)| s as u64 >= cap) {
            let msg = format!("inode {ino}: chunk {c} is slot {s}, out of range 0..{cap}");
            self.report(Kind::VectorRefs, msg, None);
            self.bad_chunks.insert(ino);
            return Ok(claim);
        }
        self.chunks.insert(ino, slots);
        Ok(claim)
    }

    /// Checks the vector regions: every slot (record, map entry, vector, bitmap bit), every
    /// link, the header's counts and entry point, and, when the whole tree was read, the map
    /// against the chunk lists both ways.
    pub(super) fn check_vectors(&mut self) -> Result<()> {
        let first = self.problems.len();
        let sb = self.sb;
        let n = usize::try_from(sb.vec_capacity)
            .map_err(|_| Error::Invalid(format!("vector capacity {}", sb.vec_capacity)))?;
        let mut upper = vec![0u32; n + 1];
        fill_upper_table(sb, &mut upper).map_err(Error::format("upper-record table"))?;
        let slots = self.scan_slots(&upper)?;
        self.check_vector_header(&slots, &upper)?;
        self.check_vector_bitmap(&slots.state)?;
        self.check_graph_links(&slots, &upper)?;
        if self.tree_complete {
            self.check_owners(&slots);
        }
        if self.problems.len() > first {
            self.offer_rebuild(first)?;
        }
        Ok(())
    }

    /// The first pass: each slot's level-0 record, map entry and vector.
    fn scan_slots(&mut self, upper: &[u32]) -> Result<Slots> {
        let sb = self.sb;
        let img = self.img;
        let n = upper.len().saturating_sub(1);
        let geo = HnswGeometry::new(sb);
        let rec_len = geo.level0_size as usize;
        let map_start = sb.region(Region::VecMap).start;
        let dim = sb.vec_dim as usize;
        let (mut l0, mut map, mut data, mut up, mut code) =
            (Cursor::new(img), Cursor::new(img), Cursor::new(img), Cursor::new(img), Cursor::new(img));
        // Where the SQ8 or PQ codes lie, if kept; a PQ codebook with a NaN or an infinity is
        // reported, and the codes are not checked against it.
        let pq_geo = vexfs_core::pq::PqGeometry::new(sb);
        let codebook = match pq_geo {
            Some(_) => match pq_codebook(img, sb)? {
                Ok(c) => Some(c),
                Err(msg) => {
                    self.report(Kind::VectorCode, msg, None);
                    None
                }
            },
            None => None,
        };
        let codes = match pq_geo {
            Some(p) => codebook.as_ref().map(|_| p.codes),
            None => sq8::CodeGeometry::new(sb),
        };
        let mut vbits: Vec<u32> = Vec::with_capacity(dim);
        let mut out = Slots {
            state: vec![FREE; n],
            count0: vec![None; n],
            owners: HashMap::new(),
            bad_map: HashSet::new(),
            live: 0,
            deleted: 0,
            pending: 0,
            bad: 0,
            top: None,
        };
        for s in 0..n {
            let slot = s as u32;
            let (blk, off) = geo.level0_pos(slot);
            let rec = &l0.get(blk)?[off..off + rec_len];
            let h = Level0Head::decode(rec).map_err(Error::format(format!("hnsw level-0 record {s}")))?;
            let moff = s as u64 * MAP_ENTRY as u64;
            let mraw = &map.get(map_start + moff / BS)?[(moff % BS) as usize..][..MAP_ENTRY];
            let st = match h.flags {
                0 => FREE,
                NODE_IN_GRAPH => LIVE,
                f if f == NODE_IN_GRAPH | NODE_DELETED => DELETED,
                NODE_PENDING => PENDING,
                _ => BAD,
            };
            out.state[s] = st;
            if st == FREE {
                if rec.iter().any(|&x| x != 0) {
                    let msg = format!(
                        "vector slot {s} is free but its level-0 record is not zero (count {}, level {}, upper {})",
                        h.count, h.level, h.upper
                    );
                    self.report(Kind::VectorRecord, msg, None);
                }
                if mraw.iter().any(|&x| x != 0) {
                    self.report(Kind::VectorMap, format!("vector slot {s} is free but has a map entry"), None);
                }
                continue;
            }
            if st == BAD {
                let msg = format!("vector slot {s} has level-0 flags {:#x}", h.flags);
                self.report(Kind::VectorRecord, msg, None);
                out.bad += 1;
                continue;
            }
            let (level, first) = (upper[s + 1].saturating_sub(upper[s]).min(255) as u8, upper[s]);
            if h.level != level || h.upper != first {
                let msg = format!(
                    "vector slot {s}: level-0 record says level {} and upper record {}, the slot's are {level} and {first}",
                    h.level, h.upper
                );
                self.report(Kind::VectorRecord, msg, None);
            } else if st == PENDING {
                if h.count != 0 {
                    let msg = format!("vector slot {s} is pending but has {} links at level 0", h.count);
                    self.report(Kind::VectorRecord, msg, Some(Fix::RebuildGraph));
                }
            } else if h.count as u32 > geo.m0 {
                let msg = format!("vector slot {s}: {} links at level 0, at most {}", h.count, geo.m0);
                self.report(Kind::VectorRecord, msg, None);
            } else {
                let mut ok = true;
                for l in 1..=level {
                    let (ub, uo) = geo.upper_pos(first as u64 + l as u64 - 1);
                    let c = u32_at(&up.get(ub)?[..], uo, "hnsw upper record")
                        .map_err(Error::format(format!("block {ub}")))?;
                    if c > geo.m {
                        let msg = format!("vector slot {s}: {c} links at level {l}, at most {}", geo.m);
                        self.report(Kind::VectorRecord, msg, None);
                        ok = false;
                        break;
                    }
                }
                if ok {
                    out.count0[s] = Some(h.count);
                }
            }
            match (MapEntry::decode(slot, mraw), st) {
                (Err(e), _) => {
                    self.report(Kind::VectorMap, format!("vector slot {s}: {e}"), None);
                    out.bad_map.insert(slot);
                }
                (Ok(None), LIVE | PENDING) => {
                    let msg = format!("vector slot {s} is {} but has no owner", state_name(st));
                    self.report(Kind::VectorMap, msg, None);
                    out.bad_map.insert(slot);
                }
                (Ok(Some(e)), DELETED) => {
                    let msg = format!(
                        "vector slot {s} is deleted but still has an owner (inode {}, chunk {})",
                        e.ino, e.chunk
                    );
                    self.report(Kind::VectorMap, msg, None);
                }
                (Ok(Some(e)), _) => {
                    out.owners.insert(slot, e);
                }
                (Ok(None), _) => {}
            }
            // The vector: `dim` float32 from its position (`HnswGeometry::vector_pos`, as a
            // byte of the device: it may run on into the next block).
            let (vblk, voff) = geo.vector_pos(slot);
            let mut pos = vblk * BS + voff as u64;
            let mut i = 0usize;
            vbits.clear();
            'vector: while i < dim {
                let b = data.get(pos / BS)?;
                let o = (pos % BS) as usize;
                let take = (dim - i).min((BLOCK_SIZE - o) / 4);
                for w in b[o..o + 4 * take].chunks_exact(4) {
                    let bits = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                    vbits.push(bits);
                    if bits & 0x7f80_0000 == 0x7f80_0000 {
                        let msg =
                            format!("vector slot {s}: component {i} is {} (bits {bits:#010x})", f32::from_bits(bits));
                        self.report(Kind::VectorData, msg, None);
                        break 'vector;
                    }
                    i += 1;
                }
                pos += 4 * take as u64;
            }
            // With SQ8, the code of a finite vector is its quantisation, the padding zero.
            if let Some(c) = codes.filter(|_| i == dim) {
                let (cblk, coff) = c
                    .pos(s as u64)
                    .ok_or_else(|| Error::Invalid(format!("vector slot {s}: SQ8 code position overflows")))?;
                let stored = &code.get(cblk)?[coff..coff + c.stride];
                let mut want = vec![0u8; c.stride];
                let kind = match &codebook {
                    Some(cb) => {
                        // The PQ C code is one implementation whatever the `Impl` (any will do).
                        let dist = vexfs_core::distance::Impl::Scalar;
                        if !vexfs_core::pq::encode(&dist, cb, sb.vec_dim, sb.pq_m, &vbits, &mut want) {
                            return Err(Error::Invalid(format!("vector slot {s}: cannot encode its PQ code")));
                        }
                        "PQ"
                    }
                    None => {
                        sq8::quantise(&vbits, sb.sq8_shift, &mut want);
                        "SQ8"
                    }
                };
                if stored != &want[..] {
                    let at = stored.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
                    let msg = if kind == "PQ" {
                        format!(
                            "vector slot {s}: PQ code byte {at} is {}, its vector's code has {}",
                            stored[at], want[at]
                        )
                    } else {
                        format!(
                            "vector slot {s}: SQ8 code byte {at} is {}, its vector's code has {}",
                            stored[at] as i8, want[at] as i8
                        )
                    };
                    self.report(Kind::VectorCode, msg, Some(Fix::WriteCode { slot }));
                }
            }
            if st == LIVE {
                out.live += 1;
                out.top = out.top.max(Some(level));
            } else if st == PENDING {
                out.pending += 1;
            } else {
                out.deleted += 1;
            }
        }
        Ok(out)
    }

    /// The header decodes, its counts match the slots, its entry point is a live slot of the
    /// highest live level (none exactly when nothing is live).
    fn check_vector_header(&mut self, slots: &Slots, upper: &[u32]) -> Result<()> {
        let n = self.sb.region(Region::Hnsw).start;
        let b = self.img.read_block(n)?;
        let h = match HnswHeader::decode(&b[..], n) {
            Ok(h) => h,
            Err(e) => {
                self.report(Kind::VectorHeader, format!("hnsw header (block {n}): {e}"), None);
                return Ok(());
            }
        };
        let (live, deleted, pending) = (slots.live, slots.deleted, slots.pending);
        if slots.bad == 0 && (h.live, h.deleted, h.pending) != (live, deleted, pending) {
            let msg = format!(
                "hnsw header counts {} live, {} deleted and {} pending vectors, the slots hold {live}, {deleted} and {pending}",
                h.live, h.deleted, h.pending
            );
            self.report(Kind::VectorCounts, msg, Some(Fix::VectorCounts { live, deleted, pending }));
        }
        let e = h.entry;
        let msg = match slots.top {
            None if e != NO_SLOT => Some(format!("hnsw entry point is slot {e} but no vector is live")),
            None if h.entry_level != 0 => Some(format!("hnsw graph is empty but its entry level is {}", h.entry_level)),
            None => None,
            Some(_) if e == NO_SLOT => Some(format!("hnsw graph has no entry point but {live} live vectors")),
            Some(_) if e as usize >= slots.state.len() => {
                Some(format!("hnsw entry point slot {e} is out of range 0..{}", slots.state.len()))
            }
            Some(top) => {
                let st = slots.state[e as usize];
                let level = upper[e as usize + 1].saturating_sub(upper[e as usize]);
                if st != LIVE {
                    Some(format!("hnsw entry point slot {e} is {}", state_name(st)))
                } else if level != h.entry_level {
                    Some(format!("hnsw entry point slot {e} has level {level}, the header says {}", h.entry_level))
                } else if (top as u32) > h.entry_level {
                    Some(format!("hnsw entry point slot {e} is at level {level} but live vectors reach level {top}"))
                } else {
                    None
                }
            }
        };
        if let Some(m) = msg {
            self.report(Kind::VectorEntry, m, None);
        }
        Ok(())
    }

    /// Bit `s` of the vector bitmap is set exactly for the slots in the graph; no bit past
    /// the last slot.
    fn check_vector_bitmap(&mut self, state: &[u8]) -> Result<()> {
        let bitmap = self.img.read_region(Region::VecBitmap)?;
        let n = state.len() as u64;
        let runs = mismatch_runs(0..n, |s| bit_test(&bitmap, s as usize), |s| state[s as usize] != FREE);
        for (first, len, used) in runs {
            let what = if len == 1 {
                format!("vector slot {first}")
            } else {
                format!("vector slots {first}..{}", first + len - 1)
            };
            let msg = if used {
                format!("{what} in the graph but free in the vector bitmap")
            } else {
                format!("{what} marked in use in the vector bitmap but free")
            };
            self.report(Kind::VectorBitmap, msg, None);
        }
        let bits = bitmap.len() as u64 * 8;
        if let Some(i) = (n..bits).find(|&i| bit_test(&bitmap, i as usize)) {
            let msg = format!("vector bitmap has bit {i} set, past the last slot");
            self.report(Kind::VectorBitmap, msg, None);
        }
        Ok(())
    }

    /// Every link of every node with valid records: in range, to a slot in the graph, not a
    /// live node to itself, at level `l` only to nodes of level `l` or more. One problem per
    /// node (its first bad link).
    fn check_graph_links(&mut self, slots: &Slots, upper: &[u32]) -> Result<()> {
        let sb = self.sb;
        let img = self.img;
        let geo = HnswGeometry::new(sb);
        let n = slots.state.len();
        let level_of = |s: usize| upper[s + 1].saturating_sub(upper[s]);
        let (mut l0, mut up) = (Cursor::new(img), Cursor::new(img));
        let mut ids: Vec<u32> = Vec::with_capacity(geo.m0 as usize);
        for (s, &count0) in slots.count0.iter().enumerate() {
            let Some(count0) = count0 else {
                continue;
            };
            let top = level_of(s);
            let mut bad = None;
            for l in 0..=top {
                ids.clear();
                let (b, off, count) = if l == 0 {
                    let (blk, off) = geo.level0_pos(s as u32);
                    (l0.get(blk)?, off + 8, count0 as usize)
                } else {
                    let (blk, off) = geo.upper_pos(upper[s] as u64 + l as u64 - 1);
                    let b = up.get(blk)?;
                    let c = u32_at(&b[..], off, "hnsw upper record").map_err(Error::format(format!("block {blk}")))?;
                    (b, off + 4, c as usize)
                };
                for i in 0..count {
                    ids.push(u32_at(&b[..], off + 4 * i, "hnsw links").map_err(Error::format("hnsw links"))?);
                }
                bad = ids.iter().find_map(|&t| {
                    let why = if t as usize >= n {
                        format!("slot {t}, out of range 0..{n}")
                    } else if slots.state[t as usize] == FREE {
                        format!("slot {t}, which is free")
                    } else if slots.state[t as usize] == PENDING {
                        format!("slot {t}, which is pending (not in the graph)")
                    } else if t as usize == s && slots.state[s] == LIVE {
                        "itself".to_string()
                    } else if level_of(t as usize) < l {
                        format!("slot {t}, whose level is {}", level_of(t as usize))
                    } else {
                        return None;
                    };
                    Some(format!("vector slot {s} links at level {l} to {why}"))
                });
                if bad.is_some() {
                    break;
                }
            }
            if let Some(msg) = bad {
                self.report(Kind::VectorLinks, msg, None);
            }
        }
        Ok(())
    }

    /// The map against the chunk lists: each chunk's slot is live and owned by that chunk,
    /// each live slot's owner is a regular file whose chunk list holds it at that chunk, and
    /// no slot is listed twice. Needs the whole tree.
    fn check_owners(&mut self, slots: &Slots) {
        let mut holder: HashMap<u32, (u32, usize)> = HashMap::new();
        let mut done: HashSet<u32> = HashSet::new();
        let mut inos: Vec<u32> = self.chunks.keys().copied().collect();
        inos.sort_unstable();
        let mut found = Vec::new();
        for ino in &inos {
            let list = &self.chunks[ino];
            for (c, &slot) in list.iter().enumerate() {
                if let Some(&(i2, c2)) = holder.get(&slot) {
                    found.push((
                        Kind::VectorShared,
                        format!("vector slot {slot} is chunk {c2} of inode {i2} and chunk {c} of inode {ino}"),
                    ));
                    done.insert(slot);
                    continue;
                }
                holder.insert(slot, (*ino, c));
                let st = slots.state[slot as usize];
                let msg = match st {
                    LIVE | PENDING if slots.bad_map.contains(&slot) => None,
                    LIVE | PENDING => match slots.owners.get(&slot) {
                        Some(e) if e.ino == *ino as u64 && e.chunk as usize == c => None,
                        Some(e) => Some(format!(
                            "inode {ino} chunk {c} is vector slot {slot}, which belongs to inode {} chunk {}",
                            e.ino, e.chunk
                        )),
                        None => None,
                    },
                    BAD => None,
                    _ => Some(format!("inode {ino} chunk {c} is vector slot {slot}, which is {}", state_name(st))),
                };
                if let Some(m) = msg {
                    found.push((Kind::VectorOwner, m));
                    done.insert(slot);
                }
            }
        }
        let mut owned: Vec<(&u32, &MapEntry)> = slots.owners.iter().collect();
        owned.sort_unstable_by_key(|(s, _)| **s);
        for (&slot, e) in owned {
            if done.contains(&slot) {
                continue;
            }
            if holder.get(&slot).is_some_and(|&(i, c)| i as u64 == e.ino && c == e.chunk as usize) {
                continue;
            }
            let at = format!("vector slot {slot} belongs to inode {} chunk {}", e.ino, e.chunk);
            let ino = u32::try_from(e.ino).ok();
            let msg = match ino.and_then(|i| self.chunks.get(&i)) {
                Some(list) => match list.get(e.chunk as usize) {
                    Some(x) => format!("{at}, which is vector slot {x}"),
                    None => format!("{at}, but the file has {} chunks", list.len()),
                },
                None if ino.is_some_and(|i| self.bad_chunks.contains(&i)) => continue,
                None if ino.is_some_and(|i| self.reach.contains_key(&i)) => {
                    format!("{at}, which is not a regular file")
                }
                None => format!("{at}, which is not in use"),
            };
            found.push((Kind::VectorOwner, msg));
        }
        for (k, m) in found {
            self.report(k, m, None);
        }
    }
}

/// The PQ codebook of `sb` as float bit patterns (`vexfs_core::pq::encode`'s layout), read from
/// the vector codes region; `Ok(Err(message))` when a centroid has a NaN or an infinity.
/// Errors: `Invalid` without PQ; `Io`.
pub(crate) fn pq_codebook<D: BlockDevice<Error = std::io::Error>>(
    img: &Image<D>,
    sb: &Superblock,
) -> Result<std::result::Result<Vec<u32>, String>> {
    let g = vexfs_core::pq::PqGeometry::new(sb).ok_or_else(|| Error::Invalid("no PQ codebook".into()))?;
    let dsub = g.dsub as usize;
    let mut out = Vec::with_capacity(g.m as usize * 256 * dsub);
    let mut cur = Cursor::new(img);
    for j in 0..g.m {
        for c in 0..256u32 {
            let (blk, off) = g.centroid_pos(j, c).ok_or_else(|| Error::Invalid("PQ centroid position".into()))?;
            let b = cur.get(blk)?;
            for (t, w) in b[off..off + 4 * dsub].chunks_exact(4).enumerate() {
                let bits = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                if bits & 0x7f80_0000 == 0x7f80_0000 {
                    return Ok(Err(format!(
                        "PQ codebook: sub-quantiser {j}, centroid {c}, component {t} is {} (block {blk})",
                        f32::from_bits(bits)
                    )));
                }
                out.push(bits);
            }
        }
    }
    Ok(Ok(out))
}
