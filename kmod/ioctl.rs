//! The user-facing ABI of embeddings: the ioctls of include/vexfs.h, whose argument structs
//! ([`crate::abi`]) are read from user memory with their size rules and checked field by
//! field before `vector` does the work, and the `user.vexfs.embedding` xattr (chunk 0).

use crate::abi::{
    Arg, VexfsGetEmbeddings, VexfsIndexMem, VexfsIndexReads, VexfsRemoveEmbeddings, VexfsSearch, VexfsSearchResult,
    VexfsSetEmbeddings, VexfsStats, MAX_ARG_SIZE, NR_GET_EMBEDDINGS, NR_INDEX_MEM, NR_INDEX_READS,
    NR_REMOVE_EMBEDDINGS, NR_SEARCH, NR_SET_EMBEDDINGS, NR_STATS, VEXFS_IOCTL_MAGIC, VEXFS_MAX_CHUNKS, VEXFS_MAX_EF,
    VEXFS_MAX_K, VEXFS_SEARCH_CODE_DISTANCES, VEXFS_SET_INDEX_NOW, VEXFS_SET_TRUNCATE,
};
use crate::embed::{Indexing, Rank, MAX_EF, MAX_K};
use crate::error::ENODATA;
use crate::format::le::{put_u32, u32_at};
use crate::format::superblock::Region;
use crate::format::vector::{MAX_CHUNKS, NO_SLOT};
use crate::format::BLOCK_SIZE;
use crate::sb::{Inode, SuperBlock};
use crate::vector::{self, Hit};
use kernel::ioctl::{_IOW, _IOWR};
use kernel::prelude::*;
use kernel::uaccess::UserSlice;

/// `VEXFS_IOC_SET_EMBEDDINGS`.
pub const IOC_SET: u32 = _IOW::<VexfsSetEmbeddings>(VEXFS_IOCTL_MAGIC, NR_SET_EMBEDDINGS);
/// `VEXFS_IOC_GET_EMBEDDINGS`.
pub const IOC_GET: u32 = _IOWR::<VexfsGetEmbeddings>(VEXFS_IOCTL_MAGIC, NR_GET_EMBEDDINGS);
/// `VEXFS_IOC_REMOVE_EMBEDDINGS`.
pub const IOC_REMOVE: u32 = _IOW::<VexfsRemoveEmbeddings>(VEXFS_IOCTL_MAGIC, NR_REMOVE_EMBEDDINGS);
/// `VEXFS_IOC_SEARCH`.
pub const IOC_SEARCH: u32 = _IOWR::<VexfsSearch>(VEXFS_IOCTL_MAGIC, NR_SEARCH);
/// `VEXFS_IOC_STATS`.
pub const IOC_STATS: u32 = _IOWR::<VexfsStats>(VEXFS_IOCTL_MAGIC, NR_STATS);
/// `VEXFS_IOC_INDEX_MEM`.
pub const IOC_INDEX_MEM: u32 = _IOWR::<VexfsIndexMem>(VEXFS_IOCTL_MAGIC, NR_INDEX_MEM);
/// `VEXFS_IOC_INDEX_READS`.
pub const IOC_INDEX_READS: u32 = _IOWR::<VexfsIndexReads>(VEXFS_IOCTL_MAGIC, NR_INDEX_READS);

// The ABI's limits are the index's.
const _: () = assert!(VEXFS_MAX_K as usize == MAX_K && VEXFS_MAX_EF as usize == MAX_EF);
const _: () = assert!(VEXFS_MAX_CHUNKS as usize == MAX_CHUNKS);

/// Room for the largest v1 argument struct.
const ARG_ROOM: usize = 128;
const _: () = assert!(
    VexfsStats::SIZE <= ARG_ROOM
        && VexfsSearch::SIZE <= ARG_ROOM
        && VexfsIndexMem::SIZE <= ARG_ROOM
        && VexfsIndexReads::SIZE <= ARG_ROOM
);

/// Reads the argument struct `T` at user address `arg`. Its `size` (the first field) below
/// `T::SIZE` is EINVAL; above [`MAX_ARG_SIZE`] E2BIG; in between, the bytes past what v1 knows
/// must be zero (else E2BIG), as copy_struct_from_user() does. EFAULT for bad memory.
#[inline(never)]
fn read_arg<T: Arg>(arg: usize) -> Result<T> {
    let mut sz = [0u8; 4];
    UserSlice::new(arg, 4).reader().read_slice(&mut sz)?;
    let size = u32::from_ne_bytes(sz) as usize;
    if size < T::SIZE {
        return Err(EINVAL);
    }
    if size > MAX_ARG_SIZE {
        return Err(E2BIG);
    }
    let mut r = UserSlice::new(arg, size).reader();
    let mut buf = [0u8; ARG_ROOM];
    let known = buf.get_mut(..T::SIZE).ok_or(EINVAL)?;
    r.read_slice(known)?;
    let v = T::decode(known).ok_or(EINVAL)?;
    let mut rest = size - T::SIZE;
    let mut chunk = [0u8; 64];
    while rest > 0 {
        let n = rest.min(chunk.len());
        let c = chunk.get_mut(..n).ok_or(EINVAL)?;
        r.read_slice(c)?;
        if c.iter().any(|&b| b != 0) {
            return Err(E2BIG);
        }
        rest -= n;
    }
    Ok(v)
}

/// Writes the v1 struct back to `arg` (its output fields changed).
#[inline(never)]
fn write_arg<T: Arg>(arg: usize, v: &T) -> Result {
    let mut buf = [0u8; ARG_ROOM];
    let out = buf.get_mut(..T::SIZE).ok_or(EINVAL)?;
    v.encode(out).ok_or(EINVAL)?;
    UserSlice::new(arg, out.len()).writer().write_slice(out)
}

/// Words (float bit patterns) copied through the stack per user access. The copies (and the
/// argument structs' [`read_arg`], [`write_arg`]) are not inlined: their buffers stay out of
/// the frame of the ioctl, which is under the whole index walk (`scripts/stack-check`).
const WORDS_PER_COPY: usize = 128;

/// Reads `words` u32s (the CPU's byte order) from user memory at `ptr` into a new buffer.
/// Errors: EFAULT, ENOMEM.
#[inline(never)]
fn read_words(ptr: u64, words: usize) -> Result<KVVec<u32>> {
    let mut v = KVVec::from_elem(0u32, words, GFP_KERNEL_ACCOUNT)?;
    let bytes = words.checked_mul(4).ok_or(EINVAL)?;
    let mut r = UserSlice::new(usize::try_from(ptr).map_err(|_| EFAULT)?, bytes).reader();
    let mut raw = [0u8; WORDS_PER_COPY * 4];
    for ws in v.as_mut_slice().chunks_mut(WORDS_PER_COPY) {
        let b = raw.get_mut(..ws.len() * 4).ok_or(EINVAL)?;
        r.read_slice(b)?;
        let mut rest: &[u8] = b;
        for w in ws.iter_mut() {
            let (c, tail) = rest.split_first_chunk::<4>().ok_or(EINVAL)?;
            *w = u32::from_ne_bytes(*c);
            rest = tail;
        }
    }
    Ok(v)
}

/// Writes `words` to user memory at `ptr` (the CPU's byte order). Errors: EFAULT.
#[inline(never)]
fn write_words(ptr: u64, words: &[u32]) -> Result {
    let bytes = words.len().checked_mul(4).ok_or(EINVAL)?;
    let mut w = UserSlice::new(usize::try_from(ptr).map_err(|_| EFAULT)?, bytes).writer();
    let mut raw = [0u8; WORDS_PER_COPY * 4];
    for ws in words.chunks(WORDS_PER_COPY) {
        let b = raw.get_mut(..ws.len() * 4).ok_or(EINVAL)?;
        let mut rest: &mut [u8] = b;
        for x in ws {
            let (c, tail) = rest.split_first_chunk_mut::<4>().ok_or(EINVAL)?;
            *c = x.to_ne_bytes();
            rest = tail;
        }
        w.write_slice(raw.get(..ws.len() * 4).ok_or(EINVAL)?)?;
    }
    Ok(())
}

fn set(inode: &Inode, arg: usize) -> Result {
    let a: VexfsSetEmbeddings = read_arg(arg)?;
    if a.flags & !(VEXFS_SET_TRUNCATE | VEXFS_SET_INDEX_NOW) != 0
        || a.reserved0 != 0
        || a.reserved != [0; 4]
        || a.dim != inode.sb().disk().vec_dim
        || a.count == 0
    {
        return Err(EINVAL);
    }
    if a.count > VEXFS_MAX_CHUNKS || a.first_chunk > VEXFS_MAX_CHUNKS {
        return Err(E2BIG);
    }
    let data = read_words(a.vectors, a.count as usize * a.dim as usize)?;
    let indexing = if a.flags & VEXFS_SET_INDEX_NOW != 0 { Indexing::Now } else { Indexing::Deferred };
    vector::set_embeddings(inode, a.first_chunk as usize, &data, a.flags & VEXFS_SET_TRUNCATE != 0, indexing)
}

fn get(inode: &Inode, arg: usize) -> Result {
    let mut a: VexfsGetEmbeddings = read_arg(arg)?;
    let dim = inode.sb().disk().vec_dim;
    if a.flags != 0 || a.reserved != [0; 4] || a.dim != dim {
        return Err(EINVAL);
    }
    let cap = (a.count as usize).min(MAX_CHUNKS);
    let (data, total) = vector::get_embeddings(inode, a.first_chunk as usize, cap)?;
    let n = data.len() / dim as usize;
    if n > 0 {
        write_words(a.vectors, &data)?;
    }
    a.count = n as u32;
    a.total = total as u32;
    write_arg(arg, &a)
}

fn remove(inode: &Inode, arg: usize) -> Result {
    let a: VexfsRemoveEmbeddings = read_arg(arg)?;
    if a.flags != 0 || a.reserved != [0; 5] {
        return Err(EINVAL);
    }
    vector::remove_embeddings(inode)
}

fn search(sb: &SuperBlock, arg: usize) -> Result {
    let mut a: VexfsSearch = read_arg(arg)?;
    let (dim, k, ef) = (a.dim, a.k as usize, a.ef_search as usize);
    // `count` is output only: its input value is ignored.
    if a.flags & !VEXFS_SEARCH_CODE_DISTANCES != 0 || a.reserved != [0; 3] || dim != sb.disk().vec_dim {
        return Err(EINVAL);
    }
    // Without codes the core refuses Rank::Codes (Reject::NoCodes: EOPNOTSUPP).
    let rank = if a.flags & VEXFS_SEARCH_CODE_DISTANCES != 0 { Rank::Codes } else { Rank::Exact };
    // k and ef are refused before user memory is read (the core checks them again).
    let ef = crate::embed::check_search(k, ef, MAX_EF).map_err(|_| EINVAL)?;
    // A NaN or infinite component is refused by the core's search (EINVAL), as in SET.
    let query = read_words(a.query, dim as usize)?;
    let mut hits = KVVec::from_elem(Hit::default(), k, GFP_KERNEL_ACCOUNT)?;
    let n = if sb.may_read_all() {
        vector::search(sb, &query, k, ef, rank, hits.as_mut_slice(), &mut |_| Ok(true))?
    } else {
        search_readable(sb, &query, k, ef, rank, hits.as_mut_slice())?
    };
    // Results go to user memory only after the index lock is released.
    let mut out = KVVec::from_elem(0u8, n * VexfsSearchResult::SIZE, GFP_KERNEL_ACCOUNT)?;
    for (i, h) in hits.iter().take(n).enumerate() {
        let o = out.as_mut_slice().get_mut(i * VexfsSearchResult::SIZE..).ok_or(EINVAL)?;
        VexfsSearchResult::encode_bits(h.ino, h.chunk, h.dist_bits(), o).ok_or(EINVAL)?;
    }
    if n > 0 {
        UserSlice::new(usize::try_from(a.results).map_err(|_| EFAULT)?, out.len()).writer().write_slice(&out)?;
    }
    a.count = n as u32;
    write_arg(arg, &a)
}

/// Runs of a search for a caller without `CAP_DAC_READ_SEARCH` that keep the files they have
/// no decision for (see [`search_readable`]); the later runs drop them.
const HOPEFUL_RUNS: u32 = 3;

/// Files without a decision one run of [`search_readable`] records at most (8 KiB).
const UNDECIDED_PER_RUN: usize = 1024;

/// A search for a caller without `CAP_DAC_READ_SEARCH`: the `k` nearest embeddings of files
/// it may read ([`crate::vfs::inode::Inode::may_read`]), nearest first, into `out`.
///
/// The check needs the file's inode, and taking an inode under the index lock could deadlock:
/// an unlinked file's eviction removes its embeddings under that lock, so an `iget` that meets
/// an inode being evicted (it waits for the eviction) or an `iput` that drops the last
/// reference of an unlinked one (it evicts) would wait for the lock its caller holds. So the
/// checks are made between runs of the search, with no lock held. A run decides known files
/// by what was learnt (sorted decisions), and records the others (up to
/// [`UNDECIDED_PER_RUN`], else it stops early); the first [`HOPEFUL_RUNS`] runs keep them
/// (each counts as a result, so a run records at most `k`), the later ones drop them (so a run
/// goes on, widening up to an exact scan, and learns many at once: a caller who may read few
/// files). After a run, the recorded files are checked ([`may_read`]): the run's answer is
/// final when all of them were judged right (readable for a keeping run, unreadable for a
/// dropping one); else the search runs again. Each run but the last learns at least one file,
/// so the runs are bounded by the files the index names; a fatal signal stops them (EINTR).
/// A file whose permissions change between its check and the answer is judged as it was at
/// the check, as with any permission check.
fn search_readable(sb: &SuperBlock, query: &[u32], k: usize, ef: usize, rank: Rank, out: &mut [Hit]) -> Result<usize> {
    // Decisions, sorted by inode number: (ino, may read). Grown only between runs.
    let mut known: KVVec<(u64, bool)> = KVVec::new();
    // The files a run met without a decision: reserved before the runs, so the filter never
    // allocates under the index lock.
    let mut undecided = KVVec::from_elem(0u64, k.max(UNDECIDED_PER_RUN), GFP_KERNEL_ACCOUNT)?;
    let mut run = 0u32;
    loop {
        let keep_undecided = run < HOPEFUL_RUNS;
        run = run.saturating_add(1);
        let (mut met, mut full) = (0usize, false);
        let r = vector::search(sb, query, k, ef, rank, out, &mut |ino| {
            if let Ok(i) = known.binary_search_by_key(&ino, |e| e.0) {
                return Ok(known.get(i).is_some_and(|e| e.1));
            }
            if !undecided.get(..met).ok_or(EINVAL)?.contains(&ino) {
                let Some(slot) = undecided.get_mut(met) else {
                    // Stop the run: decide these, run again.
                    full = true;
                    return Err(EAGAIN);
                };
                *slot = ino;
                met += 1;
            }
            Ok(keep_undecided)
        });
        let n = match r {
            Err(_) if full => None,
            r => Some(r?),
        };
        let mut judged_right = true;
        for &ino in undecided.get(..met).ok_or(EINVAL)? {
            let ok = may_read(sb, ino)?;
            judged_right &= ok == keep_undecided;
            known.push((ino, ok), GFP_KERNEL_ACCOUNT)?;
        }
        if let (Some(n), true) = (n, judged_right) {
            return Ok(n);
        }
        known.as_mut_slice().sort_unstable_by_key(|e| e.0);
        crate::vfs::access::relax()?;
    }
}

/// Whether the calling task may read file `ino` (a search result): its inode's
/// `inode_permission(MAY_READ)`; a file removed since the index named it (its number free, or
/// no link left) is not readable. Called with no lock held (see [`search_readable`]).
/// Errors: EUCLEAN (a corrupt inode), EIO, ENOMEM.
fn may_read(sb: &SuperBlock, ino: u64) -> Result<bool> {
    Ok(match crate::inode::iget_live(sb, ino)? {
        Some(inode) => inode.nlink() > 0 && inode.may_read(),
        None => false,
    })
}

fn stats(sb: &SuperBlock, arg: usize) -> Result {
    let mut a: VexfsStats = read_arg(arg)?;
    // Every field after `flags` up to `pending` is output only; reserved ones must be zero.
    if a.flags != 0 || a.reserved != [0; 2] {
        return Err(EINVAL);
    }
    let (h, imp) = vector::stats(sb)?;
    let d = sb.disk();
    // The vector regions, the codes included with SQ8 or PQ (zero blocks without).
    let bytes = [Region::VecBitmap, Region::VecMap, Region::VecData, Region::Hnsw, Region::VecCodes]
        .iter()
        .map(|&r| d.region(r).blocks)
        .sum::<u64>()
        * BLOCK_SIZE as u64;
    a.dim = d.vec_dim;
    a.metric = d.vec_metric;
    a.m = d.hnsw_m;
    a.ef_construction = d.hnsw_ef_construction;
    a.vectors = u64::from(h.live) + u64::from(h.pending);
    a.pending = h.pending;
    a.deleted = h.deleted as u64;
    a.capacity = d.vec_capacity;
    a.levels = if h.entry == NO_SLOT { 0 } else { h.entry_level + 1 };
    a.entry_point = h.entry;
    a.bytes_on_disk = bytes;
    a.distance_impl = imp;
    write_arg(arg, &a)
}

fn index_mem(sb: &SuperBlock, arg: usize) -> Result {
    let mut a: VexfsIndexMem = read_arg(arg)?;
    if a.flags != 0 {
        return Err(EINVAL);
    }
    let c = sb.info().pins.counts();
    a.mem_bytes = c.held.saturating_mul(BLOCK_SIZE as u64);
    a.mem_budget = c.budget.saturating_mul(BLOCK_SIZE as u64);
    a.cache_hits = c.hits;
    a.cache_misses = c.misses;
    a.block_reads = c.reads;
    a.readaheads = c.readaheads;
    a.evictions = c.evictions;
    write_arg(arg, &a)
}

/// `VEXFS_IOC_INDEX_READS`: the pin table's device reads per vector region since mount.
/// Errors: EINVAL for flags or reserved words; `read_arg`'s.
fn index_reads(sb: &SuperBlock, arg: usize) -> Result {
    let mut a: VexfsIndexReads = read_arg(arg)?;
    if a.flags != 0 || a.reserved != [0; 2] {
        return Err(EINVAL);
    }
    [a.bitmap_reads, a.map_reads, a.data_reads, a.hnsw_reads, a.codes_reads] = sb.info().pins.region_reads();
    write_arg(arg, &a)
}

/// Runs ioctl `cmd` with the user argument at address `arg` on `inode`. glue.c checked write
/// access for SET and REMOVE and holds the inode lock for them. Errors: `ENOTTY` for an
/// unknown command; each command's, as include/vexfs.h documents them.
pub fn ioctl(inode: &Inode, cmd: u32, arg: usize) -> Result {
    match cmd {
        IOC_SET => set(inode, arg),
        IOC_GET => get(inode, arg),
        IOC_REMOVE => remove(inode, arg),
        IOC_SEARCH => search(inode.sb(), arg),
        IOC_STATS => stats(inode.sb(), arg),
        IOC_INDEX_MEM => index_mem(inode.sb(), arg),
        IOC_INDEX_READS => index_reads(inode.sb(), arg),
        _ => Err(ENOTTY),
    }
}

/// `user.vexfs.embedding` get: chunk 0 as raw little-endian float32 into `buf`, or with no
/// buffer (size 0) only its length; returns the length (`dim * 4`).
/// Errors: ENODATA (no embedding), ERANGE (buffer too small).
pub fn xattr_get(inode: &Inode, buf: Option<&mut [u8]>) -> Result<usize> {
    let len = inode.sb().disk().vec_dim as usize * 4;
    let (data, total) = vector::get_embeddings(inode, 0, 1)?;
    if total == 0 {
        return Err(Error::from_errno(-ENODATA));
    }
    let Some(out) = buf else { return Ok(len) };
    if out.len() < len {
        return Err(ERANGE);
    }
    for (i, w) in data.iter().enumerate() {
        put_u32(out, 4 * i, *w);
    }
    Ok(len)
}

/// `user.vexfs.embedding` set (chunk 0, from raw little-endian float32) or, with no value,
/// remove (every embedding). `flags`: XATTR_CREATE / XATTR_REPLACE.
/// Errors: EINVAL (size is not dim * 4, NaN/Inf), EEXIST / ENODATA for XATTR_CREATE / REPLACE,
/// ENODATA when removing what is not there.
pub fn xattr_set(inode: &Inode, value: Option<&[u8]>, flags: i32) -> Result {
    let dim = inode.sb().disk().vec_dim as usize;
    let has = vector::has_embeddings(inode);
    let Some(raw) = value else {
        if !has {
            return Err(Error::from_errno(-ENODATA));
        }
        return vector::remove_embeddings(inode);
    };
    // XATTR_CREATE = 1, XATTR_REPLACE = 2 (uapi linux/xattr.h).
    if flags & 1 != 0 && has {
        return Err(EEXIST);
    }
    if flags & 2 != 0 && !has {
        return Err(Error::from_errno(-ENODATA));
    }
    if raw.len() != dim * 4 {
        return Err(EINVAL);
    }
    let mut v = KVVec::from_elem(0u32, dim, GFP_KERNEL_ACCOUNT)?;
    for (i, d) in v.as_mut_slice().iter_mut().enumerate() {
        *d = u32_at(raw, 4 * i, "xattr value").map_err(|_| EINVAL)?;
    }
    vector::set_embeddings(inode, 0, &v, false, Indexing::Deferred)
}
