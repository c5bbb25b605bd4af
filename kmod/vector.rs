//! Embeddings on files and k-NN search: the kernel's thin adapter of `core::embed`.
//!
//! The embedding logic (argument checks, chunk lists, set/replace/remove, searches naming
//! files) is `core::embed`, the same code the offline writer runs; this file supplies the
//! file side ([`KFile`]: the inode under the metadata lock, its blocks through the buffer
//! cache) and turns index errors into errnos ([`index_error`]).
//!
//! **Locks.** The index lock (`SbInfo::index`, one [`IndexState`] per mount) is a
//! reader-writer semaphore (`crate::vfs::rwsem`). Searches, GET and STATS hold it shared: any
//! number run at once, each with a search pad of its own from the mount's
//! [`PadPool`](crate::index::PadPool) (taken before the lock; a search waits for a pad when
//! one per CPU is in use) and the index cache's blocks read through [`SharedBlocks`]
//! (`SbInfo::pins`) with plain loads: a block leaves the cache only under the lock held alone
//! (a change's reads past the budget; the shrinker, which only tries the lock; a new budget;
//! unmount; and the trim of what searches took past the budget, once the lock is free:
//! `trim_after_search`). The index worker plans each insert under it shared too (the search for
//! the new vector's neighbours, the long part: `IndexMem::plan_pending`, in a pad). SET,
//! REMOVE, the worker's writes (a planned insert applied, or a vector linked the plain way when
//! the index changed since its plan; one purge step) and unmount hold it alone, so inserts and
//! searches interleave vector by vector and a search waits only for the writing part.
//! Order: a journal handle, then the index lock, then the metadata lock (for the moments a
//! chunk list is read or stored, never across index work); never the other way. A pad is taken
//! and given back with no index lock held (the pool's mutex is never taken under it). The
//! shrinker takes the index lock with a trylock only (it may run inside any allocation, under
//! the lock too), so it adds no order. A search takes no inode and no metadata lock under the
//! index lock (the permission checks run between its runs: `crate::ioctl`).

use crate::buf::Buf;
use crate::embed::{ChunkFields, ChunkFile, ChunkFiles, Indexing, PurgeStep, Rank};
use crate::errors::index_error;
use crate::format::vector::HnswHeader;
use crate::index::{IndexState, PadRef};
use crate::pins::{KBlocks, SharedBlocks};
use crate::sb::{FsInode, Inode, Locked, SuperBlock};
use kernel::prelude::*;

pub use crate::embed::Hit;

/// The file whose chunks an operation changes: locked on demand ([`ChunkFiles::lock`]).
struct KFile<'a> {
    inode: &'a Inode,
}

/// The file locked: the metadata lock held and the inode's state loaded. A changed state is
/// stored at once ([`ChunkFile::set_fields`], block allocation); the inode is marked dirty once
/// the lock is released.
struct LockedFile<'a> {
    g: Option<Locked<'a>>,
    inode: &'a Inode,
    st: FsInode,
    changed: bool,
}

impl<'a> ChunkFiles for KFile<'a> {
    type Error = Error;
    type Locked<'b>
        = LockedFile<'b>
    where
        Self: 'b;

    fn lock(&mut self) -> Result<LockedFile<'_>> {
        let g = self.inode.sb().lock();
        let st = self.inode.load(&g);
        Ok(LockedFile { g: Some(g), inode: self.inode, st, changed: false })
    }
}

impl<'a> LockedFile<'a> {
    fn guard(&mut self) -> Result<&mut Locked<'a>> {
        // The guard is taken only by `drop`.
        self.g.as_mut().ok_or(EINVAL)
    }

    fn save(&mut self) -> Result {
        let st = self.st;
        let g = self.g.as_ref().ok_or(EINVAL)?;
        self.inode.store(g, &st);
        self.changed = true;
        Ok(())
    }
}

impl Drop for LockedFile<'_> {
    fn drop(&mut self) {
        drop(self.g.take());
        if self.changed {
            self.inode.mark_dirty();
        }
    }
}

impl ChunkFile for LockedFile<'_> {
    type Error = Error;
    type Ref<'b>
        = Buf
    where
        Self: 'b;

    fn ino(&self) -> u64 {
        self.inode.ino()
    }

    fn fields(&self) -> ChunkFields {
        ChunkFields { count: self.st.vec_count, block: self.st.vec_block, inline: self.st.vec_ids }
    }

    fn set_fields(&mut self, f: ChunkFields) -> Result {
        self.st.vec_count = f.count;
        self.st.vec_block = f.block;
        self.st.vec_ids = f.inline;
        self.save()
    }

    fn read_block(&self, n: u64) -> Result<Buf> {
        Buf::read(self.inode.sb(), n)
    }

    fn write_block(&mut self, n: u64, fresh: bool, build: &mut dyn FnMut(&mut [u8])) -> Result {
        let sb = self.inode.sb();
        let mut b = if fresh { Buf::zeroed(sb, n)? } else { Buf::read(sb, n)? };
        build(&mut b);
        sb.dirty(&b)?;
        Ok(())
    }

    fn alloc_block(&mut self) -> Result<u64> {
        let blocks =
            self.st.blocks.checked_add(1).ok_or_else(|| self.inode.sb().corrupt("inode block count", u64::MAX))?;
        let b = self.guard()?.alloc_block(0)?;
        self.st.blocks = blocks;
        self.save()?;
        Ok(b)
    }

    fn free_block(&mut self, n: u64) -> Result {
        self.guard()?.free_block(n)?;
        self.st.blocks = self.st.blocks.saturating_sub(1);
        self.save()?;
        // Drops any pending write of the freed block.
        Buf::zeroed(self.inode.sb(), n)?.forget();
        Ok(())
    }
}

/// Runs `f` on the index of `sb` under the index lock; index errors become errnos.
fn with_index<R>(
    sb: &SuperBlock,
    f: impl FnOnce(
        &mut crate::index::KIndexMem,
        &KBlocks<'_>,
        &crate::pins::FpuKernel,
    ) -> crate::index_error::IResult<R, Error>,
) -> Result<R> {
    let mut g = sb.info().index.write();
    let IndexState { mem, kernel } = &mut *g;
    let blocks = KBlocks::new(sb, &sb.info().pins, Some(sb.journal()));
    f(mem, &blocks, kernel).map_err(|e| index_error(sb, e))
}

/// Runs `f` on the index of `sb` under the shared index lock (reads only: searches, GET, the
/// worker's insert plans), the index cache's blocks as [`SharedBlocks`]; index errors become
/// errnos.
/// Errors also: EINTR (a fatal signal while a change to the index held the lock).
fn with_index_shared<R>(
    sb: &SuperBlock,
    f: impl FnOnce(
        &crate::index::KIndexMem,
        &SharedBlocks<'_>,
        &crate::pins::FpuKernel,
    ) -> crate::index_error::IResult<R, Error>,
) -> Result<R> {
    let r = {
        let g = sb.info().index.read()?;
        let blocks = SharedBlocks::new(sb, &sb.info().pins, &g);
        f(&g.mem, &blocks, &g.kernel).map_err(|e| index_error(sb, e))
    };
    trim_after_search(sb);
    r
}

/// Gives back the index cache's blocks over its budget that searches took (they never evict:
/// [`crate::pins::PinTable`]), once the index lock is free: at once when nobody holds it
/// (`try_write`, so one searcher alone stays within the budget after each search), else by
/// waiting for the lock only when the table is well past the budget
/// ([`crate::pins::PinTable::trim_overdue`]), so that concurrent searches do not queue for the
/// lock after every one of them.
fn trim_after_search(sb: &SuperBlock) {
    let pins = &sb.info().pins;
    if pins.over_budget() == 0 {
        return;
    }
    if let Some(_g) = sb.info().index.try_write() {
        pins.trim(sb);
    } else if pins.trim_overdue() {
        let _g = sb.info().index.write();
        pins.trim(sb);
    }
}

/// Sets chunks `first .. first + count` of `inode` from `data` (`count * dim` float bit
/// patterns): `core::embed::IndexMem::set_chunks`. With `truncate`, chunks past the set ones
/// are dropped. With [`Indexing::Deferred`] (the default of the ioctl) the vectors are stored
/// pending (the vector write-ahead log) and the index worker is kicked to link them; with
/// [`Indexing::Now`] they are linked before this returns. Either way one transaction.
/// Errors: EISDIR (a directory), EINVAL (gap, NaN/Inf, no vectors, bad length),
/// E2BIG (past MAX_CHUNKS), ENOSPC (also: more chunks than one journal transaction may take,
/// see `core::embed::set_blocks_bound` and `set_blocks_bound_deferred`), EUCLEAN, EIO, ENOMEM.
pub fn set_embeddings(inode: &Inode, first: usize, data: &[u32], truncate: bool, indexing: Indexing) -> Result {
    if inode.is_dir() {
        return Err(EISDIR);
    }
    // One SET is one transaction: it must fit the share of the journal a transaction may take.
    let sb = inode.sb();
    // The argument's own errors first (E2BIG, EINVAL: as set_chunks reports them).
    let count =
        crate::embed::check_vectors(data, sb.disk().vec_dim, first).map_err(|r| Error::from_errno(-r.errno()))?;
    let bound = crate::journal::txn_blocks(match indexing {
        Indexing::Now => crate::embed::set_blocks_bound(sb.disk(), count as u64),
        Indexing::Deferred => crate::embed::set_blocks_bound_deferred(sb.disk(), count as u64),
    });
    if bound > sb.journal().max_txn_blocks() {
        pr_warn!(
            "vexfs ({}): a SET of {} chunks may change {} blocks, more than one transaction may take ({}): make the filesystem with a larger journal\n",
            sb.name(),
            count,
            bound,
            sb.journal().max_txn_blocks()
        );
        return Err(ENOSPC);
    }
    let (pending, purge) = with_index(sb, |mem, b, k| {
        mem.set_chunks(b, k, &mut KFile { inode }, first, data, truncate, indexing)?;
        Ok((mem.pending(), mem.purge_due()))
    })?;
    if pending >= INDEX_NOW_PENDING {
        sb.info().mount_c.kick_index(0);
    } else if pending > 0 || purge {
        sb.info().mount_c.kick_index(INDEX_IDLE_MS);
    }
    Ok(())
}

/// Milliseconds without a SET before the index worker starts linking: during a burst the SETs
/// have the index lock and the journal to themselves (each SET pushes the start back).
pub const INDEX_IDLE_MS: u32 = 1000;

/// Slots one step of a purge looks at (`core::embed::IndexMem::purge_step`): each step is a
/// transaction of at most this many nodes' records.
pub const PURGE_STEP: usize = 64;

/// Pending vectors at which the worker starts at once, burst or not. It does not bound them: a
/// burst of SETs faster than the worker (bench/wal.sh: 100,000 acknowledged in 46 s, about 30
/// linked a second under QEMU) leaves many more pending, and every search scans them all
/// (O(pending) distance work under the index lock) until the worker catches up.
pub const INDEX_NOW_PENDING: u32 = 4096;

/// The index worker (glue.c's delayed work on the unbound workqueue, kicked by a deferred SET,
/// [`INDEX_IDLE_MS`] after the last one or at once past [`INDEX_NOW_PENDING`], and by a
/// read-write mount that finds pending vectors or a purge due): links pending vectors into the HNSW
/// graph one at a time, each in a journal handle of its own (taken before the index lock, as
/// every operation does) and under the index lock only for that one vector, so searches and
/// SETs interleave with it; reschedules between vectors. Its changes ride in the running
/// transaction: a crash loses at most links, and the vectors stay pending on disk, found again
/// at the next mount ([`crate::embed::IndexMem::open`]). Stops when none is pending, at
/// unmount, or on an error (logged; a read-only or aborted journal ends it quietly). With no
/// vector pending, it purges tombstones in steps of [`PURGE_STEP`] slots, each in a handle of its
/// own (`core::embed::IndexMem::purge_step`: every step leaves a valid graph, and the running
/// transaction is committed whenever it outgrows a quarter of the log), when a removal left
/// them due.
pub fn index_work(sb: &SuperBlock) {
    let mut linked = 0u64;
    while sb.info().mount_c.index_running() {
        // One vector linked, else one step of a purge (PURGE_STEP slots), in a handle each.
        // A vector's insert is planned under the shared index lock, beside searches (its
        // search for neighbours, the long part), then applied under the exclusive lock (the
        // links changed); if anything changed the index in between, it is linked the plain
        // way under the exclusive lock.
        let step = crate::txn::Handle::start(sb, crate::txn::TxnKind::IndexStep).and_then(|_h| {
            let mut planned = plan_next(sb)?;
            with_index(sb, |mem, b, k| {
                if let Some((plan, pad)) = &mut planned {
                    let pad = pad.pad().map_err(crate::index_error::IndexError::Io)?;
                    if mem.apply_pending(b, k, plan, pad)? {
                        return Ok(1);
                    }
                }
                if mem.pending() > 0 {
                    return mem.index_pending(b, k, 1);
                }
                Ok(match mem.purge_step(b, k, PURGE_STEP)? {
                    PurgeStep::Idle => 0,
                    _ => 1,
                })
            })
        });
        match step {
            Ok(0) => break,
            Ok(n) => linked = linked.saturating_add(n as u64),
            Err(e) if e == EROFS => break,
            Err(e) => {
                pr_err!("vexfs ({}): the index worker stopped after {} vectors: {:?}\n", sb.name(), linked, e);
                crate::txn::failed(sb, "an index worker step", e);
                break;
            }
        }
        // SAFETY: no lock is held here; a plain reschedule point.
        let _ = unsafe { crate::ffi::vexfs_c_relax() };
    }
}

/// The first `len` words of a buffer allocated for more.
pub struct Words {
    buf: KVVec<u32>,
    len: usize,
}

impl core::ops::Deref for Words {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl core::ops::DerefMut for Words {
    fn deref_mut(&mut self) -> &mut [u32] {
        self.buf.get_mut(..self.len).unwrap_or(&mut [])
    }
}

/// The insert plan of the next pending vector ([`crate::embed::IndexMem::plan_pending`]),
/// made under the shared index lock in a search pad (kept, with the plan in it, for
/// `apply_pending`); `None` when nothing is pending. Errors: EINTR, ENOMEM (no pad), EUCLEAN,
/// EIO.
fn plan_next(sb: &SuperBlock) -> Result<Option<(crate::embed::PendingPlan, PadRef<'_>)>> {
    let mut pad = sb.info().pads.take(sb.disk())?;
    let p = pad.pad()?;
    let plan = with_index_shared(sb, |mem, b, k| mem.plan_pending(p, b, k))?;
    Ok(plan.map(|p| (p, pad)))
}

/// Copies up to `cap` vectors from chunk `first` on into a new buffer; returns it (`n * dim`
/// words) and the file's chunk count. The buffer (`cap * dim` words, `cap` at most
/// `MAX_CHUNKS`: 16 MiB at most) and the chunk list's (4 KiB) are allocated before the index
/// lock is taken, charged to the caller's memory cgroup (`GFP_KERNEL_ACCOUNT`); the lock is
/// held shared (a read, beside searches). Errors: ERANGE (first past the count), EUCLEAN, EIO,
/// ENOMEM, EINTR (a fatal signal while a change to the index held the lock).
pub fn get_embeddings(inode: &Inode, first: usize, cap: usize) -> Result<(Words, usize)> {
    let dim = inode.sb().disk().vec_dim as usize;
    let cap = cap.min(crate::embed::MAX_CHUNKS);
    let buf = KVVec::from_elem(0u32, cap.checked_mul(dim).ok_or(EINVAL)?, GFP_KERNEL_ACCOUNT)?;
    let mut ids = KVVec::from_elem(0u32, crate::embed::MAX_CHUNKS, GFP_KERNEL_ACCOUNT)?;
    // A read: under the shared index lock, beside the searches.
    with_index_shared(inode.sb(), |mem, b, k| {
        mem.get_chunks(b, k, &mut KFile { inode }, first, cap, &mut ids, |words| {
            if words > buf.len() {
                return Err(EINVAL);
            }
            Ok(Words { buf, len: words })
        })
    })
}

/// Removes every embedding of `inode`. Errors: EUCLEAN, EIO.
pub fn remove_embeddings(inode: &Inode) -> Result {
    let sb = inode.sb();
    let purge = with_index(sb, |mem, b, k| {
        mem.remove_chunks(b, k, &mut KFile { inode })?;
        Ok(mem.purge_due())
    })?;
    if purge {
        sb.info().mount_c.kick_index(INDEX_IDLE_MS);
    }
    Ok(())
}

/// The `k` nearest embeddings to `query` (`dim` float bit patterns) of the files `keep` keeps
/// (given an inode number, under the index lock: it must not take the inode of a file), with
/// candidate list `ef` (0 = default), ranked as `rank` says, nearest first, into `out`;
/// returns how many (`core::embed::IndexMem::search_shared`, the answer of
/// `search_filtered`). Errors: EINVAL (bad k, ef, query), EOPNOTSUPP (`Rank::Codes` without
/// codes), EUCLEAN, EIO, ENOMEM (no search pad could be made), EINTR (a fatal signal during a
/// long search, or while a change to the index held the lock), and `keep`'s.
pub fn search(
    sb: &SuperBlock,
    query: &[u32],
    k: usize,
    ef: usize,
    rank: Rank,
    out: &mut [Hit],
    keep: &mut dyn FnMut(u64) -> Result<bool>,
) -> Result<usize> {
    // Under the shared index lock, with a pad of its own (taken first: see PadPool::take):
    // searches run at once, a change to the index waits for them (and they for it).
    let mut pad = sb.info().pads.take(sb.disk())?;
    let p = pad.pad()?;
    with_index_shared(sb, |mem, b, kernel| mem.search_shared(p, b, kernel, query, k, ef, rank, out, keep))
}

/// Index statistics: the graph header (its `pending` count: vectors not yet linked) and the
/// distance kernel in use (`VEXFS_DIST_*`).
/// Errors: `EINTR` (a fatal signal while a change to the index held it).
pub fn stats(sb: &SuperBlock) -> Result<(HnswHeader, u32)> {
    with_index_shared(sb, |mem, _, kernel| Ok((mem.header(), kernel.imp())))
}

/// Drops the embeddings of an inode being freed (called from evict, without locks held).
pub fn free_inode_vectors(inode: &Inode) {
    if let Err(e) = remove_embeddings(inode) {
        pr_err!("vexfs ({}): removing the vectors of inode {} failed: {:?}\n", inode.sb().name(), inode.ino(), e);
        crate::txn::failed(inode.sb(), "removing the vectors of a freed inode", e);
    }
}

/// Releases the index cache's buffers (put_super, after the last sync, the shrinker
/// stopped), under the exclusive index lock.
pub fn release(sb: &SuperBlock) {
    let _g = sb.info().index.write();
    let left = sb.info().pins.held();
    sb.info().pins.release();
    if sb.info().pins.held() != 0 {
        pr_warn!(
            "vexfs ({}): {} of {} index blocks still borrowed at unmount\n",
            sb.name(),
            sb.info().pins.held(),
            left
        );
    }
}

/// Whether the inode has embeddings (for listxattr).
pub fn has_embeddings(inode: &Inode) -> bool {
    let g = inode.sb().lock();
    inode.load(&g).vec_count > 0
}
