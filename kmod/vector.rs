//! Embeddings on files and k-NN search: the kernel side of `core::vindex`.
//!
//! One [`IndexState`] per mounted filesystem, behind its own lock (`SbInfo::index`), taken
//! before the metadata lock when both are needed, never after it. All memory a search uses is
//! allocated at mount and sized by the documented limits; nothing is allocated per query.

use crate::buf::Buf;
use crate::distance::{bits_from_key, first_nonfinite};
use crate::error::ENOSPC;
use crate::format::inode::INLINE_VEC_IDS;
use crate::format::vector::{
    check_vec_ids_block, vec_ids_block_build, vec_ids_block_count, vec_ids_block_get, HnswHeader, MapEntry, MAX_CHUNKS,
};
use crate::hnsw::{Knn, Scratch, Visited};
use crate::index::{index_error, IndexState};
use crate::pins::KBlocks;
use crate::sb::{FsInode, Inode, Locked, SuperBlock};
use crate::vindex::{IndexScratch, VecIndex};
use kernel::prelude::*;

/// Runs `f` on the index of `sb` with its scratch memory, under the index lock, and keeps
/// the header and slot hint it leaves.
fn with_index<R>(
    sb: &SuperBlock,
    f: impl FnOnce(&mut VecIndex<'_>, &KBlocks<'_>, &mut IndexScratch<'_>, &mut dyn Visited, &mut [(u32, u32)]) -> Result<R>,
) -> Result<R> {
    let mut g = sb.info().index.lock();
    let st: &mut IndexState = &mut g;
    let blocks = KBlocks { dev: sb, pins: &st.pins };
    let mut ix = VecIndex::with_header(sb.disk(), st.upper.as_slice(), st.header, st.hint, &st.kernel);
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
fn load_ids(g: &Locked<'_>, inode: &Inode, st: &FsInode) -> Result<KVec<u32>> {
    let sb = g.sb();
    let n = st.vec_count as usize;
    if n > MAX_CHUNKS || (n > INLINE_VEC_IDS) != (st.vec_block != 0) {
        return Err(sb.corrupt("inode vector count", n as u64));
    }
    let mut v = KVec::with_capacity(n, GFP_KERNEL)?;
    for &id in st.vec_ids.iter().take(n.min(INLINE_VEC_IDS)) {
        v.push(id, GFP_KERNEL)?;
    }
    if n > INLINE_VEC_IDS {
        let b = Buf::read(sb, st.vec_block)?;
        check_vec_ids_block(&b, st.vec_block, inode.ino()).map_err(|e| sb.report(e))?;
        let count = vec_ids_block_count(&b).map_err(|e| sb.report(e))?;
        if count != n - INLINE_VEC_IDS {
            return Err(sb.corrupt("vector id block count vs inode", count as u64));
        }
        for i in 0..count {
            v.push(vec_ids_block_get(&b, i).map_err(|e| sb.report(e))?, GFP_KERNEL)?;
        }
    }
    Ok(v)
}

/// Stores `ids` as the chunk list of `inode`, allocating or freeing its vector-id block.
fn store_ids(g: &mut Locked<'_>, inode: &Inode, st: &mut FsInode, ids: &[u32]) -> Result {
    if ids.len() > MAX_CHUNKS {
        return Err(E2BIG);
    }
    let sb = g.sb();
    let ino = inode.ino();
    if ids.len() > INLINE_VEC_IDS {
        let mut b = if st.vec_block == 0 {
            let blk = g.alloc_block(0)?;
            st.vec_block = blk;
            st.blocks += 1;
            Buf::zeroed(sb, blk)?
        } else {
            Buf::read(sb, st.vec_block)?
        };
        vec_ids_block_build(&mut b, st.vec_block, ino, ids.get(INLINE_VEC_IDS..).unwrap_or(&[]));
        b.mark_dirty_for(inode);
    } else if st.vec_block != 0 {
        let blk = st.vec_block;
        g.free_block(blk)?;
        st.vec_block = 0;
        st.blocks = st.blocks.saturating_sub(1);
        Buf::zeroed(sb, blk)?.forget();
    }
    st.vec_ids = [0; INLINE_VEC_IDS];
    for (d, s) in st.vec_ids.iter_mut().zip(ids.iter()) {
        *d = *s;
    }
    st.vec_count = ids.len() as u32;
    Ok(())
}

fn current_ids(inode: &Inode) -> Result<KVec<u32>> {
    let g = inode.sb().lock();
    let st = inode.load(&g);
    load_ids(&g, inode, &st)
}

fn save_ids(inode: &Inode, ids: &[u32]) -> Result {
    let mut g = inode.sb().lock();
    let mut st = inode.load(&g);
    let r = store_ids(&mut g, inode, &mut st, ids);
    inode.store(&g, &st);
    drop(g);
    inode.mark_dirty();
    r
}

/// Sets chunks `first .. first + count` of `inode` from `data` (`count * dim` float bit
/// patterns), atomically: all new vectors are inserted before any old one is removed, and a
/// failure removes the ones inserted. With `truncate`, chunks past the set ones are dropped.
/// Errors: EINVAL (gap, NaN/Inf, count 0), E2BIG (past MAX_CHUNKS), ENOSPC, EISDIR.
pub fn set_embeddings(inode: &Inode, first: usize, data: &[u32], truncate: bool) -> Result {
    let sb = inode.sb();
    let dim = sb.disk().vec_dim as usize;
    if inode.is_dir() {
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
    let ino = inode.ino();
    with_index(sb, |ix, b, s, visited, _| {
        let old = current_ids(inode)?;
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
                    return Err(index_error(sb, e));
                }
            }
        }
        let end = first + count;
        let keep_tail = if truncate { &[][..] } else { old.get(end..).unwrap_or(&[]) };
        let mut ids = KVec::with_capacity(first + count + keep_tail.len(), GFP_KERNEL)?;
        ids.extend_from_slice(old.get(..first).unwrap_or(&[]), GFP_KERNEL)?;
        ids.extend_from_slice(&new, GFP_KERNEL)?;
        ids.extend_from_slice(keep_tail, GFP_KERNEL)?;
        save_ids(inode, &ids)?;
        let gone_end = if truncate { old.len() } else { end.min(old.len()) };
        for &slot in old.get(first.min(old.len())..gone_end).unwrap_or(&[]) {
            ix.remove(b, s, slot).map_err(|e| index_error(sb, e))?;
        }
        Ok(())
    })
}

/// Copies up to `cap` vectors from chunk `first` on into a new buffer; returns it (`n * dim`
/// words) and the file's chunk count. Errors: ERANGE (first past the count).
pub fn get_embeddings(inode: &Inode, first: usize, cap: usize) -> Result<(KVVec<u32>, usize)> {
    let sb = inode.sb();
    let dim = sb.disk().vec_dim as usize;
    with_index(sb, |ix, b, _, _, _| {
        let ids = current_ids(inode)?;
        if first > ids.len() {
            return Err(ERANGE);
        }
        let n = cap.min(ids.len() - first);
        let mut out = KVVec::from_elem(0u32, n * dim, GFP_KERNEL)?;
        for (i, &slot) in ids.get(first..first + n).unwrap_or(&[]).iter().enumerate() {
            let dst = out.as_mut_slice().get_mut(i * dim..(i + 1) * dim).ok_or(EINVAL)?;
            ix.read_vector(b, slot, dst).map_err(|e| index_error(sb, e))?;
        }
        Ok((out, ids.len()))
    })
}

/// Removes every embedding of `inode`.
pub fn remove_embeddings(inode: &Inode) -> Result {
    let sb = inode.sb();
    with_index(sb, |ix, b, s, _, _| {
        let ids = current_ids(inode)?;
        if ids.is_empty() {
            return Ok(());
        }
        save_ids(inode, &[])?;
        for &slot in ids.iter() {
            ix.remove(b, s, slot).map_err(|e| index_error(sb, e))?;
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
pub fn search(sb: &SuperBlock, query: &[u32], k: usize, ef: usize, out: &mut [Hit]) -> Result<usize> {
    with_index(sb, |ix, b, s, visited, results| {
        let k = k.min(results.len()).min(out.len());
        let n = ix.search(b, s, visited, query, Knn { k, ef }, results).map_err(|e| index_error(sb, e))?;
        for (o, &(key, slot)) in out.iter_mut().zip(results.iter().take(n)) {
            let Some(e) = ix.owner(b, slot).map_err(|e| index_error(sb, e))? else {
                return Err(sb.corrupt("live vector slot without owner", slot as u64));
            };
            *o = Hit { ino: e.ino, chunk: e.chunk, dist_bits: bits_from_key(key) };
        }
        Ok(n)
    })
}

/// Index statistics: the graph header and the distance kernel in use (`VEXFS_DIST_*`).
pub fn stats(sb: &SuperBlock) -> (HnswHeader, u32) {
    let st = sb.info().index.lock();
    (st.header, st.kernel.imp())
}

/// Drops the embeddings of an inode being freed (called from evict, without locks held).
pub fn free_inode_vectors(inode: &Inode) {
    if let Err(e) = remove_embeddings(inode) {
        pr_err!("vexfs ({}): removing the vectors of inode {} failed: {:?}\n", inode.sb().name(), inode.ino(), e);
    }
}

/// Unpins the index's buffers (put_super, after the last sync).
pub fn release(sb: &SuperBlock) {
    sb.info().index.lock().pins.release();
}

/// Whether the inode has embeddings (for listxattr).
pub fn has_embeddings(inode: &Inode) -> bool {
    let g = inode.sb().lock();
    inode.load(&g).vec_count > 0
}
