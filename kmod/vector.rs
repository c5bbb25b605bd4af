//! Embeddings on files and k-NN search: the kernel side of `core::vindex`.
//!
//! One [`IndexState`] per mounted filesystem, behind its own lock (`SbInfo::index`), taken
//! before the metadata lock when both are needed, never after it. All memory a search uses is
//! allocated at mount and sized by the documented limits; nothing is allocated per query.

use crate::buf::Buf;
use crate::distance::{bits_from_key, first_nonfinite};
use crate::error::{FormatError, ENOSPC};
use crate::ffi;
use crate::format::inode::INLINE_VEC_IDS;
use crate::format::superblock::Superblock;
use crate::format::vector::{
    check_vec_ids_block, vec_ids_block_build, vec_ids_block_count, vec_ids_block_get, HnswHeader, MapEntry, MAX_CHUNKS,
};
use crate::hnsw::{Cand, Scratch, Visited};
use crate::inode::{ino_of, load, store, FsInode};
use crate::sb::{report, sb_name, Locked, SbInfo};
use crate::vindex::{fill_upper_table, Blocks, IndexScratch, VecIndex};
use kernel::bindings;
use kernel::prelude::*;

/// Largest k of one search (`VEXFS_MAX_K` of include/vexfs.h).
pub const MAX_K: usize = 1024;
/// Largest ef_search (`VEXFS_MAX_EF`).
pub const MAX_EF: usize = 4096;
/// ef_search when the caller passes 0: max(k, this).
pub const DEFAULT_EF: usize = 64;

/// The blocks of the four vector regions, each held in the buffer cache once read, until
/// unmount. The index's pages are then found by an array lookup instead of a buffer-cache
/// search per vector visited; they stay page-cache pages (written back as usual), only pinned.
/// Memory: 16 bytes per block of the regions, plus the pages actually touched.
pub struct PinTable {
    /// First block of the vector regions (the vector bitmap).
    base: u64,
    slots: core::cell::UnsafeCell<KVVec<Option<Buf>>>,
}

impl PinTable {
    fn new(disk: &Superblock) -> Result<PinTable> {
        use crate::format::superblock::Region;
        let base = disk.region(Region::VecBitmap).start;
        let end = disk.region(Region::Hnsw).end();
        let mut v = KVVec::with_capacity((end - base) as usize, GFP_KERNEL)?;
        for _ in base..end {
            v.push(None, GFP_KERNEL)?;
        }
        Ok(PinTable { base, slots: core::cell::UnsafeCell::new(v) })
    }

    /// The pinned buffer of block `n`, reading it on first use.
    fn get(&self, sb: *mut bindings::super_block, n: u64) -> Result<&Buf> {
        let i = n.checked_sub(self.base).ok_or(EINVAL)? as usize;
        // SAFETY: the table is only reached under the index lock (one user at a time), and a
        // slot only ever goes from `None` to `Some` while mounted, so references to earlier
        // `Buf`s (and to the pages they pin) stay valid; the `&mut` covers the vector's own
        // memory, which no outstanding reference points into.
        let slots = unsafe { &mut *self.slots.get() };
        let slot = slots.as_mut_slice().get_mut(i).ok_or(EINVAL)?;
        if slot.is_none() {
            *slot = Some(Buf::read(sb, n)?);
        }
        slot.as_ref().ok_or(EINVAL)
    }

    /// Releases every pinned buffer (at unmount, under the index lock).
    pub fn release(&mut self) {
        for s in self.slots.get_mut().as_mut_slice() {
            *s = None;
        }
    }
}

/// A pinned block being changed: marked dirty when dropped.
pub struct PinnedMut<'a> {
    buf: &'a Buf,
    data: &'a mut [u8],
}

impl core::ops::Deref for PinnedMut<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl core::ops::DerefMut for PinnedMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.data
    }
}

impl Drop for PinnedMut<'_> {
    fn drop(&mut self) {
        self.buf.mark_dirty(None);
    }
}

/// [`Blocks`] over the pinned buffers of the vector regions, distances through the FPU glue.
pub struct KBlocks<'p> {
    sb: *mut bindings::super_block,
    imp: u32,
    pins: &'p PinTable,
}

impl<'p> Blocks for KBlocks<'p> {
    type Error = Error;
    type Ref<'a>
        = &'a [u8]
    where
        Self: 'a;
    type RefMut<'a>
        = PinnedMut<'a>
    where
        Self: 'a;

    fn read(&self, n: u64) -> Result<&[u8]> {
        let b = self.pins.get(self.sb, n)?;
        // SAFETY: the pinned page outlives `&self` (see PinTable::get).
        Ok(unsafe { core::slice::from_raw_parts(b.data().as_ptr(), crate::format::BLOCK_SIZE) })
    }
    fn write(&self, n: u64) -> Result<PinnedMut<'_>> {
        let b = self.pins.get(self.sb, n)?;
        // SAFETY: as in `read`; core::vindex holds no other reference to a block it writes
        // (reads of it end before the write starts), and the index lock excludes other users.
        let data = unsafe { core::slice::from_raw_parts_mut(b.data().as_ptr().cast_mut(), crate::format::BLOCK_SIZE) };
        Ok(PinnedMut { buf: b, data })
    }
    unsafe fn distances(&self, metric: u32, dim: u32, q: *const u32, vecs: &[*const u32], out: &mut [u32]) {
        let n = vecs.len().min(out.len()) as u32;
        // SAFETY: `q` and every `vecs[i]` point at `dim` readable u32s held by the caller for
        // the call (buffers or bounce memory); `out` has room for `n`.
        unsafe { ffi::vexfs_c_distances(self.imp, metric, q, vecs.as_ptr(), n, dim, out.as_mut_ptr()) };
    }
    fn corrupt(&self, e: FormatError) -> Error {
        report(self.sb, e)
    }
    fn invalid(&self, what: &'static str) -> Error {
        pr_warn!("vexfs ({}): vector index: {}\n", sb_name(self.sb), what);
        EINVAL
    }
    fn no_space(&self) -> Error {
        Error::from_errno(-ENOSPC)
    }
}

/// Epoch-stamped visited set: 2 bytes per vector slot, cleared in O(1).
struct EpochVisited {
    marks: KVVec<u16>,
    epoch: u16,
}

impl Visited for EpochVisited {
    fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.as_mut_slice().fill(0);
            self.epoch = 1;
        }
    }
    fn test_and_set(&mut self, id: u32) -> bool {
        match self.marks.as_mut_slice().get_mut(id as usize) {
            Some(m) if *m == self.epoch => true,
            Some(m) => {
                *m = self.epoch;
                false
            }
            None => true,
        }
    }
}

/// The index of one mounted filesystem and all the memory its operations use.
pub struct IndexState {
    pins: PinTable,
    /// First upper-level record of each slot (`capacity + 1` entries).
    upper: KVVec<u32>,
    header: HnswHeader,
    hint: u64,
    visited: EpochVisited,
    pool: KVVec<Cand>,
    work: KVec<u32>,
    bounce: KVVec<u32>,
    /// Search results `(key, slot)`.
    results: KVVec<(u32, u32)>,
    /// Distance implementation (`vexfs_c_dist_impl`).
    imp: u32,
}

impl IndexState {
    /// Builds the state at mount: the upper table, the header (checked), the scratch memory.
    pub fn new(sb: *mut bindings::super_block, disk: &Superblock) -> Result<IndexState> {
        let cap = disk.vec_capacity as usize;
        let mut upper = KVVec::from_elem(0u32, cap + 1, GFP_KERNEL)?;
        fill_upper_table(disk, upper.as_mut_slice()).map_err(|e| report(sb, e))?;
        // SAFETY: plain query of CPU features.
        // SAFETY: plain query of CPU features.
        let imp = unsafe { ffi::vexfs_c_dist_impl() };
        pr_info!("distance kernel {}\n", if imp == 2 { "avx2+fma" } else { "sse2" });
        let pins = PinTable::new(disk)?;
        let blocks = KBlocks { sb, imp, pins: &pins };
        let header = VecIndex::open(&blocks, disk, upper.as_slice())?.header;
        let pool_len = MAX_EF.max(disk.hnsw_ef_construction as usize);
        Ok(IndexState {
            pins,
            upper,
            header,
            hint: 0,
            visited: EpochVisited { marks: KVVec::from_elem(0u16, cap, GFP_KERNEL)?, epoch: 1 },
            pool: KVVec::from_elem(Cand::default(), pool_len, GFP_KERNEL)?,
            work: KVec::from_elem(0u32, Scratch::work_len(disk.hnsw_m), GFP_KERNEL)?,
            bounce: KVVec::from_elem(0u32, IndexScratch::bounce_len(disk.vec_stride), GFP_KERNEL)?,
            results: KVVec::from_elem((0u32, 0u32), MAX_K, GFP_KERNEL)?,
            imp,
        })
    }
}

/// Runs `f` on the index of `sbi` with its scratch memory, under the index lock, and keeps
/// the header and slot hint it leaves.
fn with_index<R>(
    sbi: &SbInfo,
    f: impl FnOnce(&mut VecIndex<'_>, &KBlocks<'_>, &mut IndexScratch<'_>, &mut dyn Visited, &mut [(u32, u32)]) -> Result<R>,
) -> Result<R> {
    let mut g = sbi.index.lock();
    let st = &mut *g;
    let blocks = KBlocks { sb: sbi.sb, imp: st.imp, pins: &st.pins };
    let mut ix = VecIndex::with_header(&sbi.disk, st.upper.as_slice(), st.header, st.hint);
    let mut scratch = IndexScratch {
        hnsw: Scratch { pool: st.pool.as_mut_slice(), work: st.work.as_mut_slice() },
        bounce: st.bounce.as_mut_slice(),
    };
    let r = f(&mut ix, &blocks, &mut scratch, &mut st.visited, st.results.as_mut_slice());
    st.header = ix.header;
    st.hint = ix.hint;
    r
}

/// The slot of each chunk of `inode`, in chunk order.
fn load_ids(sbi: &SbInfo, _g: &Locked<'_>, inode: *mut bindings::inode, st: &FsInode) -> Result<KVec<u32>> {
    let n = st.vec_count as usize;
    if n > MAX_CHUNKS || (n > INLINE_VEC_IDS) != (st.vec_block != 0) {
        return Err(crate::sb::corrupt(sbi.sb, "inode vector count", n as u64));
    }
    let mut v = KVec::with_capacity(n, GFP_KERNEL)?;
    for &id in st.vec_ids.iter().take(n.min(INLINE_VEC_IDS)) {
        v.push(id, GFP_KERNEL)?;
    }
    if n > INLINE_VEC_IDS {
        let b = Buf::read(sbi.sb, st.vec_block)?;
        check_vec_ids_block(&b, st.vec_block, ino_of(inode)).map_err(|e| report(sbi.sb, e))?;
        let count = vec_ids_block_count(&b).map_err(|e| report(sbi.sb, e))?;
        if count != n - INLINE_VEC_IDS {
            return Err(crate::sb::corrupt(sbi.sb, "vector id block count vs inode", count as u64));
        }
        for i in 0..count {
            v.push(vec_ids_block_get(&b, i).map_err(|e| report(sbi.sb, e))?, GFP_KERNEL)?;
        }
    }
    Ok(v)
}

/// Stores `ids` as the chunk list of `inode`, allocating or freeing its vector-id block.
fn store_ids(sbi: &SbInfo, g: &mut Locked<'_>, inode: *mut bindings::inode, st: &mut FsInode, ids: &[u32]) -> Result {
    if ids.len() > MAX_CHUNKS {
        return Err(E2BIG);
    }
    let ino = ino_of(inode);
    if ids.len() > INLINE_VEC_IDS {
        let mut b = if st.vec_block == 0 {
            let blk = sbi.alloc_block(g, 0)?;
            st.vec_block = blk;
            st.blocks += 1;
            Buf::zeroed(sbi.sb, blk)?
        } else {
            Buf::read(sbi.sb, st.vec_block)?
        };
        vec_ids_block_build(&mut b, st.vec_block, ino, ids.get(INLINE_VEC_IDS..).unwrap_or(&[]));
        b.mark_dirty(Some(inode));
    } else if st.vec_block != 0 {
        let blk = st.vec_block;
        sbi.free_block(g, blk)?;
        st.vec_block = 0;
        st.blocks = st.blocks.saturating_sub(1);
        Buf::zeroed(sbi.sb, blk)?.forget();
    }
    st.vec_ids = [0; INLINE_VEC_IDS];
    for (d, s) in st.vec_ids.iter_mut().zip(ids.iter()) {
        *d = *s;
    }
    st.vec_count = ids.len() as u32;
    Ok(())
}

fn current_ids(sbi: &SbInfo, inode: *mut bindings::inode) -> Result<KVec<u32>> {
    let g = sbi.lock();
    let st = load(inode, &g);
    load_ids(sbi, &g, inode, &st)
}

fn save_ids(sbi: &SbInfo, inode: *mut bindings::inode, ids: &[u32]) -> Result {
    let mut g = sbi.lock();
    let mut st = load(inode, &g);
    let r = store_ids(sbi, &mut g, inode, &mut st, ids);
    store(inode, &g, &st);
    drop(g);
    // SAFETY: live inode.
    unsafe { ffi::vexfs_c_mark_inode_dirty(inode) };
    r
}

/// Sets chunks `first .. first + count` of `inode` from `data` (`count * dim` float bit
/// patterns), atomically: all new vectors are inserted before any old one is removed, and a
/// failure removes the ones inserted. With `truncate`, chunks past the set ones are dropped.
/// Errors: EINVAL (gap, NaN/Inf, count 0), E2BIG (past MAX_CHUNKS), ENOSPC, EISDIR.
pub fn set_embeddings(inode: *mut bindings::inode, first: usize, data: &[u32], truncate: bool) -> Result {
    let sbi = SbInfo::of(inode);
    let dim = sbi.disk.vec_dim as usize;
    if crate::inode::is_dir_mode(crate::inode::mode_of(inode)) {
        return Err(EISDIR);
    }
    let count = data.len() / dim;
    if count == 0 || data.len() % dim != 0 {
        return Err(EINVAL);
    }
    if first.checked_add(count).map_or(true, |e| e > MAX_CHUNKS) {
        return Err(E2BIG);
    }
    if first_nonfinite(data).is_some() {
        return Err(EINVAL);
    }
    let ino = ino_of(inode);
    with_index(sbi, |ix, b, s, visited, _| {
        let old = current_ids(sbi, inode)?;
        if first > old.len() {
            return Err(EINVAL);
        }
        if ix.header.live as u64 + count as u64 > ix.capacity {
            return Err(Error::from_errno(-ENOSPC));
        }
        let mut new = KVec::with_capacity(count, GFP_KERNEL)?;
        for (i, v) in data.chunks(dim).enumerate() {
            match ix.insert(b, s, visited, v, MapEntry { ino, chunk: (first + i) as u32 }) {
                Ok(slot) => new.push(slot, GFP_KERNEL)?,
                Err(e) => {
                    for &slot in new.iter() {
                        let _ = ix.remove(b, s, slot);
                    }
                    return Err(e);
                }
            }
        }
        let end = first + count;
        let keep_tail = if truncate { &[][..] } else { old.get(end..).unwrap_or(&[]) };
        let mut ids = KVec::with_capacity(first + count + keep_tail.len(), GFP_KERNEL)?;
        ids.extend_from_slice(old.get(..first).unwrap_or(&[]), GFP_KERNEL)?;
        ids.extend_from_slice(&new, GFP_KERNEL)?;
        ids.extend_from_slice(keep_tail, GFP_KERNEL)?;
        save_ids(sbi, inode, &ids)?;
        let gone_end = if truncate { old.len() } else { end.min(old.len()) };
        for &slot in old.get(first.min(old.len())..gone_end).unwrap_or(&[]) {
            ix.remove(b, s, slot)?;
        }
        Ok(())
    })
}

/// Copies up to `cap` vectors from chunk `first` on into a new buffer; returns it (`n * dim`
/// words) and the file's chunk count. Errors: ERANGE (first past the count).
pub fn get_embeddings(inode: *mut bindings::inode, first: usize, cap: usize) -> Result<(KVVec<u32>, usize)> {
    let sbi = SbInfo::of(inode);
    let dim = sbi.disk.vec_dim as usize;
    with_index(sbi, |ix, b, _, _, _| {
        let ids = current_ids(sbi, inode)?;
        if first > ids.len() {
            return Err(ERANGE);
        }
        let n = cap.min(ids.len() - first);
        let mut out = KVVec::from_elem(0u32, n * dim, GFP_KERNEL)?;
        for (i, &slot) in ids.get(first..first + n).unwrap_or(&[]).iter().enumerate() {
            let dst = out.as_mut_slice().get_mut(i * dim..(i + 1) * dim).ok_or(EINVAL)?;
            ix.read_vector(b, slot, dst)?;
        }
        Ok((out, ids.len()))
    })
}

/// Removes every embedding of `inode`.
pub fn remove_embeddings(inode: *mut bindings::inode) -> Result {
    let sbi = SbInfo::of(inode);
    with_index(sbi, |ix, b, s, _, _| {
        let ids = current_ids(sbi, inode)?;
        if ids.is_empty() {
            return Ok(());
        }
        save_ids(sbi, inode, &[])?;
        for &slot in ids.iter() {
            ix.remove(b, s, slot)?;
        }
        Ok(())
    })
}

/// One search hit: inode, chunk, distance float bits.
#[derive(Clone, Copy, Default)]
pub struct Hit {
    pub ino: u64,
    pub chunk: u32,
    pub dist_bits: u32,
}

/// The `k` nearest embeddings to `query`, nearest first, into `out`; returns how many.
pub fn search(sbi: &SbInfo, query: &[u32], k: usize, ef: usize, out: &mut [Hit]) -> Result<usize> {
    with_index(sbi, |ix, b, s, visited, results| {
        let k = k.min(results.len()).min(out.len());
        let n = ix.search(b, s, visited, query, k, ef, results)?;
        for (o, &(key, slot)) in out.iter_mut().zip(results.iter().take(n)) {
            let Some(e) = ix.owner(b, slot)? else {
                return Err(crate::sb::corrupt(sbi.sb, "live vector slot without owner", slot as u64));
            };
            *o = Hit { ino: e.ino, chunk: e.chunk, dist_bits: bits_from_key(key) };
        }
        Ok(n)
    })
}

/// Index statistics: the graph header and the distance kernel in use (`VEXFS_DIST_*`).
pub fn stats(sbi: &SbInfo) -> (HnswHeader, u32) {
    let st = sbi.index.lock();
    (st.header, st.imp)
}

/// Drops the embeddings of an inode being freed (called from evict, without locks held).
pub fn free_inode_vectors(inode: *mut bindings::inode) {
    let sbi = SbInfo::of(inode);
    if let Err(e) = remove_embeddings(inode) {
        pr_err!("vexfs ({}): removing the vectors of inode {} failed: {:?}\n", sb_name(sbi.sb), ino_of(inode), e);
    }
}

/// Unpins the index's buffers (put_super, after the last sync).
pub fn release(sbi: &SbInfo) {
    sbi.index.lock().pins.release();
}

/// Whether the inode has embeddings (for listxattr).
pub fn has_embeddings(inode: *mut bindings::inode) -> bool {
    let sbi = SbInfo::of(inode);
    let g = sbi.lock();
    load(inode, &g).vec_count > 0
}
