//! The journal of a mounted vexfs: handles, the running transaction, commit, checkpoint, and
//! recovery at mount. The log's format and the code that writes records and replays them are
//! core's ([`crate::journal`]); this file decides when, in the kernel.
//!
//! **Handles.** Every operation that changes metadata runs inside a handle (glue.c's
//! `vexfs_c_handle_start`/`stop`, [`Handle`] in Rust): the namespace operations, setattr,
//! `write_begin` and `page_mkwrite` (taken before the page lock), `dirty_inode` (the disk inode
//! is updated when the VFS inode is dirtied), eviction of an unlinked inode, the mutating
//! ioctls and the embedding xattr. Handles nest (`current->journal_info`); allocations inside
//! one are `GFP_NOFS`. A changed block joins the running transaction through
//! [`Journal::dirty`] (one buffer reference per block, marked by a buffer state bit); outside a
//! handle that call fails, so no change can bypass the journal. Nothing marks a metadata buffer
//! dirty but the commit: a block reaches its home location only after the transaction that
//! changed it is on disk.
//!
//! **Commit** ([`Journal::commit`]; on fsync, syncfs, a sync `write_inode`, a returned SET,
//! unmount, every [`crate::mount::COMMIT_SECONDS`] (the ticker), and when the running
//! transaction outgrows a quarter of the log): new handles wait, the open ones are waited for,
//! and then, with no operation in progress: the data of every file that got new blocks in the
//! transaction is written and waited for (ordered mode: after a crash a file never shows a
//! block it did not write; a buffered write holds its handle from `write_begin` to `write_end`,
//! so no page lock is held by a task the commit waits for), every block of the transaction is
//! copied into the log (the copy is the frozen image), the log is written and waited for, and
//! the commit block is written with `REQ_PREFLUSH | REQ_FUA`. The blocks are then marked dirty
//! for writeback. A later transaction may change them before writeback writes them: what
//! reaches the disk early is then replaced at replay by the committed image, which stays in
//! the log until the next checkpoint.
//!
//! **Checkpoint**: right after a commit, still with no operation in progress, when less than
//! three quarters of the log is free: every dirty buffer of the device is written and flushed
//! (their contents are exactly what is committed), and the journal superblock's head moves past
//! everything.
//!
//! **Credits**: every outermost handle reserves the log blocks its operation may need at most
//! ([`TxnKind`]: a small namespace or write operation, a removal, a SET, an index-worker step;
//! bounds from `core::embed`), and is admitted only when the running transaction, the open
//! handles' credits and its own fit three quarters of the log, which a commit always leaves
//! free: a transaction never outgrows the log, however many operations run at once. mkfs sizes
//! the journal so that the largest step fits (`core::embed::min_journal_blocks`); a read-write
//! mount below that is refused.
//!
//! **Blocks not reused too early**: a data-region block freed, or logged, since the last
//! checkpoint is not allocated again before the next one ([`JState::barred`]): replaying an old
//! image over file data, or a crash exposing a freed block's new contents in its old owner,
//! cannot happen.
//!
//! **What a crash loses**: the running transaction and a commit in flight; everything before the
//! last commit is replayed at mount ([`recover`]) before anything else reads the disk.
//!
//! Lock order: a handle is taken before the index lock and the metadata lock; the journal's
//! state lock is taken last (under either), and the commit takes neither of the two.
//!
//! **Group commit**: transactions are numbered; a commit asked for by a task whose work an
//! earlier commit already wrote (it waited on the commit lock behind it) returns at once, so
//! concurrent fsyncs and SETs share one log write and one cache flush.
//!
//! The vector write-ahead log rides on this journal: a SET's pending vectors are ordinary block
//! changes (docs/DURABILITY.md), linked later by the index worker (`crate::vector::index_work`)
//! in handles of its own.
//!
//! Not yet: an on-disk orphan list (orphans are found by a scan at mount).

use crate::buf::Buf;
use crate::ffi;
use crate::format::superblock::{Region, Superblock};
use crate::io::{Block, BlockDevice};
use crate::journal::{self as cj, JournalError, Log, LogSink};
use crate::sb::SuperBlock;
use crate::vfs::super_block::Device;
use crate::vfs::task::NofsScope;
use core::ffi::c_void;
use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::{CondVar, Mutex};

const BITS: u64 = 64;

/// The journal of one mount, in `SbInfo`.
#[pin_data]
pub struct Journal {
    #[pin]
    state: Mutex<JState>,
    /// Signalled when the last handle ends during a commit, and when a commit ends.
    #[pin]
    cv: CondVar,
    /// One commit at a time.
    #[pin]
    commit_lock: Mutex<()>,
}

/// The journal's state, under its lock.
pub struct JState {
    log: Log,
    /// The running transaction: one reference per changed block. Its capacity covers the
    /// credits of every open handle ([`Journal::begin`] reserves it), so [`Journal::dirty`]
    /// never allocates.
    running: KVVec<Buf>,
    /// Open (outermost) handles.
    handles: u32,
    /// A commit is waiting for the open handles or writing: new handles wait.
    locked: bool,
    /// A write to the log failed: no more changes (`EROFS`).
    aborted: bool,
    /// Read-only mount: no handles at all.
    rdonly: bool,
    /// First block of the data region; `barrier` has one bit per data block.
    data_start: u64,
    data_blocks: u64,
    barrier: KVVec<u64>,
    /// Blocks free in the bitmap but barred until the next checkpoint.
    barred_free: u64,
    /// An allocation found only barred blocks: checkpoint at the next commit.
    checkpoint_wanted: bool,
    /// Number of the running transaction (from 1).
    tid: u64,
    /// Number of the last transaction committed (0: none yet).
    committed: u64,
    /// Log blocks the open handles may still need (the sum of their credits).
    reserved: u64,
    /// Credits (log blocks) of a handle of each [`TxnKind`].
    credits: [u64; 5],
    /// Runs of blocks a [`TxnKind::Prealloc`] handle maps ([`prealloc_runs`]).
    pub prealloc_runs: u64,
    /// The device's write-error sequence at the last checkpoint (or mount).
    wb_err: u32,
}

/// What an outermost handle may change, which fixes how much of the log it reserves
/// (its credits: the log blocks of its bound, [`cj::txn_blocks`]). The values are glue.h's
/// `VEXFS_TXN_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum TxnKind {
    /// A create, mkdir, symlink, link, a buffered write or mmap fault, an inode update, a
    /// superblock write: at most [`SMALL_STEP`] blocks.
    Small = 0,
    /// An unlink, rmdir, rename, truncate or the freeing of an inode:
    /// `core::embed::delete_blocks_bound`.
    Delete = 1,
    /// A SET or REMOVE of embeddings (ioctl or xattr): `core::embed::worst_step_blocks`.
    Worst = 2,
    /// One step of the index worker: a vector linked (`set_blocks_bound` of one chunk) or a
    /// purge step of `crate::vector::PURGE_STEP` slots.
    IndexStep = 3,
    /// A chunk of a buffered write past the end of file (glue.c's `vexfs_buffered_write`):
    /// up to [`PREALLOC_RUNS`] runs of blocks mapped at once ([`prealloc_runs`] for the log's
    /// size), the write's pages, and the freeing of what the write did not fill:
    /// [`prealloc_blocks`] blocks.
    Prealloc = 4,
}

/// Runs of blocks (extents) one [`TxnKind::Prealloc`] handle maps at most
/// (`crate::inode::prealloc`).
pub const PREALLOC_RUNS: u64 = 4;

/// Blocks a [`TxnKind::Prealloc`] handle of `runs` runs changes at most: per run, an
/// allocation and an extent insertion and then their undoing (each within a [`SMALL_STEP`]),
/// and one page's own allocation (the write's first block, when it is a hole).
pub const fn prealloc_blocks(runs: u64) -> u64 {
    (2 * runs + 1) * SMALL_STEP
}

/// Runs a [`TxnKind::Prealloc`] handle maps in a log of `log_blocks` blocks: the most, up to
/// [`PREALLOC_RUNS`], whose [`prealloc_blocks`] fit the three quarters of the log a
/// transaction may take (the rule every handle's credits follow); 0 (no chunked writes) in a
/// log too small for one.
pub fn prealloc_runs(log_blocks: u64) -> u64 {
    let budget = log_blocks / 4 * 3;
    (1..=PREALLOC_RUNS).rev().find(|&r| cj::txn_blocks(prealloc_blocks(r)) <= budget).unwrap_or(0)
}

impl TxnKind {
    /// The kind of glue.h's value `v` (an unknown value is the largest, [`TxnKind::Worst`]).
    pub fn from_c(v: u32) -> TxnKind {
        match v {
            0 => TxnKind::Small,
            1 => TxnKind::Delete,
            3 => TxnKind::IndexStep,
            4 => TxnKind::Prealloc,
            _ => TxnKind::Worst,
        }
    }
}

/// Most times an operation that failed with `ENOSPC` is retried after a checkpoint made freed
/// blocks allocatable ([`Journal::retry_alloc`]; ext4 retries 3 times too).
pub const ALLOC_RETRIES: u32 = 3;

/// Blocks a [`TxnKind::Small`] operation changes at most: a directory block and a new one, the
/// block and inode bitmaps, two inode-table blocks, an extent block, a data block of a symlink,
/// and margin.
pub const SMALL_STEP: u64 = 32;

impl JState {
    /// The state of a mount of `disk` whose log is `log` (after recovery). Errors: `ENOMEM`.
    pub fn new(disk: &Superblock, log: Log, rdonly: bool) -> Result<JState> {
        let data = disk.region(Region::Data);
        let words = usize::try_from(data.blocks.div_ceil(BITS)).map_err(|_| ENOMEM)?;
        let prealloc = prealloc_runs(log.blocks);
        Ok(JState {
            log,
            running: KVVec::new(),
            handles: 0,
            locked: false,
            aborted: false,
            rdonly,
            data_start: data.start,
            data_blocks: data.blocks,
            barrier: KVVec::from_elem(0u64, words, GFP_KERNEL)?,
            barred_free: 0,
            checkpoint_wanted: false,
            tid: 1,
            committed: 0,
            reserved: 0,
            wb_err: 0,
            prealloc_runs: prealloc,
            credits: {
                let m = u64::from(disk.hnsw_m);
                let levels = u64::from(disk.hnsw_max_level).saturating_add(1);
                let purge = (crate::vector::PURGE_STEP as u64)
                    .saturating_mul(levels)
                    .min(disk.graph_record_blocks())
                    .saturating_add(2);
                let link = crate::embed::set_blocks_bound(disk, 1).max(m.saturating_mul(4));
                [
                    cj::txn_blocks(SMALL_STEP),
                    cj::txn_blocks(crate::embed::delete_blocks_bound(disk)),
                    cj::txn_blocks(crate::embed::worst_step_blocks(disk)),
                    cj::txn_blocks(link.max(purge)),
                    cj::txn_blocks(prealloc_blocks(prealloc)),
                ]
            },
        })
    }

    /// Log blocks the running transaction and the open handles may take together: three
    /// quarters of the log (a commit leaves at least that much free: it checkpoints otherwise).
    fn budget(&self) -> u64 {
        self.log.blocks / 4 * 3
    }

    fn bit(&self, block: u64) -> Option<(usize, u64)> {
        let i = block.checked_sub(self.data_start).filter(|i| *i < self.data_blocks)?;
        Some((usize::try_from(i / BITS).ok()?, 1u64 << (i % BITS)))
    }

    /// Whether `block` may not be allocated before the next checkpoint.
    pub fn barred(&self, block: u64) -> bool {
        self.bit(block).and_then(|(w, m)| self.barrier.get(w).map(|x| x & m != 0)).unwrap_or(false)
    }

    fn bar(&mut self, block: u64) {
        if let Some((w, m)) = self.bit(block) {
            if let Some(x) = self.barrier.get_mut(w) {
                *x |= m;
            }
        }
    }

    /// Free blocks that may not be allocated yet.
    pub fn barred_free(&self) -> u64 {
        self.barred_free
    }

    /// Asks for a checkpoint at the next commit (an allocation found only barred blocks).
    pub fn want_checkpoint(&mut self) {
        self.checkpoint_wanted = true;
    }

    fn over_share(&self) -> bool {
        let n = u64::try_from(self.running.len()).unwrap_or(u64::MAX);
        cj::txn_blocks(n) > self.log.blocks / 4
    }

    /// Commits the running transaction (no handle is open), then checkpoints if the log is half
    /// full or a checkpoint was asked for. `sink_bufs` has room for every log block of the
    /// transaction ([`Self::log_room`]): writing the log allocates nothing.
    fn commit_locked(&mut self, sb: &SuperBlock, sink_bufs: KVVec<Buf>) -> Result {
        let dev: &Device = sb;
        let mut bufs = core::mem::replace(&mut self.running, KVVec::new());
        if !bufs.is_empty() {
            bufs.sort_unstable_by_key(|b| b.block());
            for b in bufs.iter() {
                b.txn_clear();
            }
            let n = u64::try_from(bufs.len()).map_err(|_| EINVAL)?;
            if cj::txn_blocks(n) > self.log.free_blocks() {
                pr_err!(
                    "vexfs ({}): a transaction of {} blocks does not fit the journal ({} free blocks)\n",
                    dev.name(),
                    n,
                    self.log.free_blocks()
                );
                return Err(ENOSPC);
            }
            let mut sink = KSink { dev, bufs: sink_bufs };
            let mut txn = self.log.begin().map_err(|e| jerr(dev, e))?;
            for b in bufs.iter() {
                txn.add(&self.log, &mut sink, b.block(), b.data()).map_err(|e| jerr(dev, e))?;
            }
            let c = txn.commit(&mut self.log, &mut sink).map_err(|e| jerr(dev, e))?;
            let mut commit_buf = None;
            for jb in sink.bufs.iter() {
                if jb.block() == c.block {
                    commit_buf = Some(jb);
                } else {
                    jb.start_write();
                }
            }
            for jb in sink.bufs.iter() {
                if jb.block() != c.block {
                    jb.wait_write()?;
                }
            }
            commit_buf.ok_or(EINVAL)?.write_fua()?;
            for b in bufs.iter() {
                b.mark_dirty();
            }
        }
        self.committed = self.tid;
        self.tid = self.tid.saturating_add(1);
        if self.checkpoint_wanted || self.log.free_blocks() < self.budget() {
            self.checkpoint(dev, false)?;
        }
        Ok(())
    }

    /// The log blocks the running transaction takes (records, descriptors, commit), as a
    /// capacity for [`Self::commit_locked`]'s buffers.
    fn log_room(&self) -> usize {
        let n = u64::try_from(self.running.len()).unwrap_or(u64::MAX);
        usize::try_from(cj::txn_blocks(n)).unwrap_or(usize::MAX)
    }

    /// Writes every dirty buffer home, flushes, and empties the log's live window (no handle is
    /// open and nothing is running: every buffer holds committed contents).
    fn checkpoint(&mut self, dev: &Device, clean: bool) -> Result {
        sync_dev(dev)?;
        // A home write that failed since the last checkpoint, even one whose error a syncfs
        // already reported, leaves a block only in the log: keep the log (the error aborts the
        // journal; the next mount replays it).
        // SAFETY: `dev` is a live superblock with a block device; `wb_err` is ours.
        kernel::error::to_result(unsafe { ffi::vexfs_c_dev_err_since(dev.as_ptr(), &mut self.wb_err) })?;
        self.log.checkpoint();
        write_journal_super(dev, &self.log, clean)?;
        for w in self.barrier.iter_mut() {
            *w = 0;
        }
        self.barred_free = 0;
        self.checkpoint_wanted = false;
        Ok(())
    }
}

impl Journal {
    /// A journal over `state`.
    pub fn new(state: JState) -> impl PinInit<Journal> {
        pin_init!(Journal {
            state <- kernel::new_mutex!(state, "vexfs::Journal::state"),
            cv <- kernel::new_condvar!("vexfs::Journal::cv"),
            commit_lock <- kernel::new_mutex!((), "vexfs::Journal::commit_lock"),
        })
    }

    /// The address glue.c keeps in `current->journal_info` while a handle of ours is open.
    pub fn id(&self) -> *mut c_void {
        (self as *const Journal).cast_mut().cast()
    }

    /// Whether the current task is inside a handle of this journal.
    pub fn in_handle(&self) -> bool {
        // SAFETY: reads the current task's `journal_info`.
        unsafe { ffi::vexfs_c_journal_info() == self.id() }
    }

    /// Opens an outermost handle of `kind` and returns its credits (log blocks reserved until
    /// [`Self::end`]): waits while a commit copies the running transaction; commits first if
    /// the running transaction has outgrown a quarter of the log; and admits the handle only
    /// when the running transaction, the credits of the open handles and its own fit the
    /// budget (three quarters of the log), waiting for open handles to end, or committing when
    /// none is open. So a transaction always fits the log when it commits (jbd2 reserves
    /// credits the same way). A handle alone on an empty transaction is always admitted.
    /// Errors: `EROFS` (read-only mount or aborted journal), `ENOMEM` (no room for the
    /// handle's blocks in the running transaction: nothing changed), a commit's error.
    pub fn begin(&self, sb: &SuperBlock, kind: TxnKind) -> Result<u64> {
        let mut g = self.state.lock();
        let credits = g.credits.get(kind as usize).copied().unwrap_or(u64::MAX);
        loop {
            if g.rdonly || g.aborted || sb.is_rdonly() {
                return Err(EROFS);
            }
            if g.locked {
                self.cv.wait(&mut g);
                continue;
            }
            let alone = g.handles == 0 && g.running.is_empty();
            let running = cj::txn_blocks(u64::try_from(g.running.len()).unwrap_or(u64::MAX));
            let fits = running.saturating_add(g.reserved).saturating_add(credits) <= g.budget();
            if !alone && (g.over_share() || !fits) {
                if g.handles > 0 && !g.over_share() {
                    self.cv.wait(&mut g);
                } else {
                    drop(g);
                    self.commit(sb)?;
                    g = self.state.lock();
                }
                continue;
            }
            // Room in the running transaction for every block the open handles and this one
            // may still change (a block costs at least one log block of credit): reserved
            // now, where a failure (ENOMEM) changes nothing, so that `dirty` cannot fail half
            // way through an operation. NOFS: the lock is held, and reclaim could evict an
            // inode of this filesystem, which opens a handle.
            let room = usize::try_from(g.reserved.saturating_add(credits)).unwrap_or(usize::MAX);
            let nofs = NofsScope::enter();
            let r = g.running.reserve(room, GFP_KERNEL);
            drop(nofs);
            r?;
            g.handles += 1;
            g.reserved = g.reserved.saturating_add(credits);
            return Ok(credits);
        }
    }

    /// Log blocks one handle may reserve: its transaction must fit the budget (three quarters
    /// of the log) with nothing else running. A SET whose bound's log blocks exceed it is
    /// refused (`ENOSPC`).
    pub fn max_txn_blocks(&self) -> u64 {
        self.state.lock().budget()
    }

    /// Closes an outermost handle that reserved `credits` log blocks.
    pub fn end(&self, credits: u64) {
        let mut g = self.state.lock();
        g.handles = g.handles.saturating_sub(1);
        g.reserved = g.reserved.saturating_sub(credits);
        // A commit waiting for the last handle, or a begin waiting for room.
        self.cv.notify_all();
    }

    /// Adds the block of `b` (just changed, or about to be) to the running transaction.
    /// Errors: `EINVAL` (logged) outside a handle of this journal; `ENOMEM` (and the journal
    /// aborted) only for a handle past its credits.
    pub fn dirty(&self, b: &Buf) -> Result {
        if !self.in_handle() {
            pr_err!("vexfs: block {} changed outside a journal handle\n", b.block());
            return Err(EINVAL);
        }
        if b.txn_test_set() {
            let mut g = self.state.lock();
            // Never allocates while the handles keep to their credits (`begin` reserved the
            // room). One that does not, and meets an allocation failure, has changed a block
            // the transaction cannot take: the journal aborts, so that half an operation is
            // never committed.
            if let Err(e) = g.running.push(b.clone_ref(), GFP_NOWAIT) {
                b.txn_clear();
                if !g.aborted {
                    g.aborted = true;
                    pr_err!("vexfs: block {} past the handles' credits and no memory: journal aborted\n", b.block());
                    self.cv.notify_all();
                }
                return Err(e.into());
            }
            g.bar(b.block());
        }
        Ok(())
    }

    /// Aborts the journal after an operation failed half way with `err` (an I/O error, or
    /// corruption found after it had changed blocks): the running transaction, which may hold
    /// half of that operation, is never committed; the filesystem becomes read-only (`EROFS`
    /// for every later change), and the next mount replays the last commit, a consistent state
    /// (as jbd2's abort). Logged once.
    pub fn abort(&self, dev: &Device, what: &str, err: Error) {
        let mut g = self.state.lock();
        if g.aborted || g.rdonly {
            return;
        }
        g.aborted = true;
        dev.force_rdonly();
        pr_err!(
            "vexfs ({}): {} failed half way ({:?}): journal aborted, the last commit stands; read-only until the next mount\n",
            dev.name(),
            what,
            err
        );
        self.cv.notify_all();
    }

    /// Notes that `block` was freed in the running transaction: it is barred until the next
    /// checkpoint.
    pub fn freed(&self, block: u64) {
        let mut g = self.state.lock();
        g.bar(block);
        g.barred_free = g.barred_free.saturating_add(1);
    }

    /// The journal's state, for the allocator (under the metadata lock).
    pub fn state(&self) -> kernel::sync::lock::Guard<'_, JState, kernel::sync::lock::mutex::MutexBackend> {
        self.state.lock()
    }

    /// Commits the running transaction: every operation finished before the call is durable
    /// when it returns `Ok`. Not from inside a handle. Errors: `EROFS` (aborted journal),
    /// `EDEADLK` (logged) from inside a handle, `EIO` (the journal is then aborted).
    pub fn commit(&self, sb: &SuperBlock) -> Result {
        let r = self.commit_inner(sb);
        // References of the inodes whose data was flushed: dropped with no lock held.
        sb.info().mount_c.ordered_put();
        r
    }

    /// After an operation failed with `ENOSPC` outside any handle: if blocks freed since the
    /// last checkpoint are what is missing (they may not be allocated before it: kmod/txn.rs),
    /// commits and checkpoints so that they can be, and returns `true` (retry the operation),
    /// at most [`ALLOC_RETRIES`] times per operation (`retries` counts them), as ext4's
    /// `ext4_should_retry_alloc` forces a jbd2 commit. Errors of the commit: logged, `false`.
    pub fn retry_alloc(&self, sb: &SuperBlock, retries: &mut u32) -> bool {
        if *retries >= ALLOC_RETRIES || self.in_handle() {
            return false;
        }
        {
            let mut g = self.state.lock();
            if g.barred_free() == 0 {
                return false;
            }
            g.want_checkpoint();
        }
        *retries += 1;
        match self.commit(sb) {
            Ok(()) => true,
            Err(e) => {
                pr_err!("vexfs ({}): commit to free blocks for an allocation failed: {:?}\n", sb.name(), e);
                false
            }
        }
    }

    /// The ticker's periodic commit: nothing if nothing changed. Errors are logged.
    pub fn tick(&self, sb: &SuperBlock) {
        if self.state.lock().running.is_empty() {
            return;
        }
        if let Err(e) = self.commit(sb) {
            pr_err!("vexfs ({}): periodic commit failed: {:?}\n", sb.name(), e);
        }
    }

    fn commit_inner(&self, sb: &SuperBlock) -> Result {
        let dev: &Device = sb;
        if self.in_handle() {
            pr_err!("vexfs ({}): commit asked from inside a journal handle\n", dev.name());
            return Err(Error::from_errno(-(bindings::EDEADLK as i32)));
        }
        // Every operation finished before this call is in the running transaction or an earlier
        // one: once that one is committed, so is the caller's work. Group commit: callers
        // that queue on the commit lock behind a commit that wrote their transaction return
        // without writing anything.
        let want = self.state.lock().tid;
        let _one = self.commit_lock.lock();
        let _nofs = NofsScope::enter();
        let g = self.state.lock();
        if g.rdonly {
            return Ok(());
        }
        if g.aborted {
            return Err(EROFS);
        }
        if g.committed >= want && !g.checkpoint_wanted {
            return Ok(());
        }
        // The bulk of the ordered data first, while operations go on; what they dirty
        // meanwhile is written below with the handles held off.
        drop(g);
        sb.info().mount_c.ordered_preflush();
        let mut g = self.state.lock();
        if g.rdonly || g.aborted {
            return if g.aborted { Err(EROFS) } else { Ok(()) };
        }
        g.locked = true;
        while g.handles > 0 {
            self.cv.wait(&mut g);
        }
        // Ordered data: the new blocks' contents before the metadata that maps them. Written
        // without the state lock (writeback takes the metadata lock, which is taken before the
        // state lock elsewhere); `locked` keeps every handle out meanwhile.
        drop(g);
        let flushed = sb.info().mount_c.ordered_flush();
        let mut g = self.state.lock();
        // The commit's buffers, allocated before anything is written: without memory the
        // commit fails (ENOMEM) and the transaction stays running, to be committed later; the
        // journal is not aborted.
        let sink_bufs = match KVVec::with_capacity(g.log_room(), GFP_KERNEL) {
            Ok(v) => v,
            Err(e) => {
                g.locked = false;
                self.cv.notify_all();
                return Err(e.into());
            }
        };
        let r = flushed.and_then(|()| g.commit_locked(sb, sink_bufs));
        if let Err(e) = r {
            g.aborted = true;
            dev.force_rdonly();
            pr_err!("vexfs ({}): journal aborted ({:?}): read-only until the next mount\n", dev.name(), e);
        }
        g.locked = false;
        self.cv.notify_all();
        r
    }

    /// At a read-write mount, after the superblock was written with `RECOVER`: marks the journal
    /// in use (not clean) before any transaction is written. Errors: `EIO`.
    pub fn start(&self, dev: &Device) -> Result {
        let mut g = self.state.lock();
        if g.rdonly {
            return Ok(());
        }
        // SAFETY: `dev` is a live superblock with a block device.
        g.wb_err = unsafe { ffi::vexfs_c_dev_err_sample(dev.as_ptr()) };
        write_journal_super(dev, &g.log, false)
    }

    /// At unmount: commits, checkpoints, and marks the journal clean. Errors: as
    /// [`Self::commit`]; `EIO`.
    pub fn shutdown(&self, sb: &SuperBlock) -> Result {
        let dev: &Device = sb;
        self.commit(sb)?;
        let _one = self.commit_lock.lock();
        let mut g = self.state.lock();
        if g.rdonly || g.aborted {
            return Ok(());
        }
        g.checkpoint(dev, true)
    }
}

impl Drop for JState {
    /// At unmount: a running transaction left by an aborted journal gives its blocks' marks
    /// back (the buffers outlive the mount in the device's cache).
    fn drop(&mut self) {
        for b in self.running.iter() {
            b.txn_clear();
        }
    }
}

/// An operation that changes metadata (`what`) failed with `err`: an I/O error
/// ([`EIO`]) aborts the journal, and so does corruption ([`EUCLEAN`]) unless the mount says
/// `errors=continue`: the operation may have changed blocks before it failed, and only the
/// last commit is known to be consistent ([`Journal::abort`]). Any other error is one an
/// operation checks before changing anything, or undoes: nothing to do.
pub fn failed(sb: &SuperBlock, what: &str, err: Error) {
    let corrupt = err.to_errno() == -(crate::error::EUCLEAN as i32);
    let io = err == EIO;
    if io || corrupt && sb.info().errors.mode() != crate::errors::ErrorsMode::Continue {
        sb.journal().abort(sb, what, err);
    }
}

/// Handle of Rust code (the C operations take theirs in glue.c).
pub struct Handle<'a> {
    dev: &'a Device,
    h: ffi::Handle,
}

impl<'a> Handle<'a> {
    /// Opens a handle of `kind` (nested if the task is already in one: then the outer
    /// handle's credits cover it). Errors: as [`Journal::begin`].
    pub fn start(dev: &'a Device, kind: TxnKind) -> Result<Handle<'a>> {
        let mut h = ffi::Handle { prev: core::ptr::null_mut(), nofs: 0, outer: 0, credits: 0 };
        // SAFETY: `dev` is a mounted vexfs; `h` lives on our frame until `drop` passes it back.
        kernel::error::to_result(unsafe { ffi::vexfs_c_handle_start(dev.as_ptr(), &mut h, kind as u32) })?;
        Ok(Handle { dev, h })
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        // SAFETY: `h` was filled by the matching start on this task.
        unsafe { ffi::vexfs_c_handle_stop(self.dev.as_ptr(), &mut self.h) };
    }
}

/// The log's blocks of one transaction, as buffers of the device (`bufs` has room for them
/// all: pushing never allocates).
struct KSink<'a> {
    dev: &'a Device,
    bufs: KVVec<Buf>,
}

impl LogSink for KSink<'_> {
    type Error = Error;
    fn block(&mut self, n: u64) -> Result<&mut [u8]> {
        if self.bufs.last().map(|b| b.block()) != Some(n) {
            let b = Buf::zeroed(self.dev, n)?;
            self.bufs.push(b, GFP_KERNEL)?;
        }
        Ok(self.bufs.last_mut().ok_or(EINVAL)?.data_mut())
    }
}

/// The device as core's [`BlockDevice`], for recovery at mount (through the buffer cache).
struct KDev<'a> {
    dev: &'a Device,
    blocks: u64,
}

impl BlockDevice for KDev<'_> {
    type Error = Error;
    fn block_count(&self) -> u64 {
        self.blocks
    }
    fn read_block(&self, n: u64, buf: &mut Block) -> Result {
        if n >= self.blocks {
            return Err(EINVAL);
        }
        buf.copy_from_slice(Buf::read(self.dev, n)?.data());
        Ok(())
    }
    fn write_block(&mut self, n: u64, buf: &Block) -> Result {
        if n >= self.blocks {
            return Err(EINVAL);
        }
        let mut b = Buf::zeroed(self.dev, n)?;
        b.data_mut().copy_from_slice(buf);
        b.mark_dirty();
        Ok(())
    }
    fn flush(&mut self) -> Result {
        sync_dev(self.dev)
    }
}

/// Writes every dirty buffer of the device and flushes its cache.
fn sync_dev(dev: &Device) -> Result {
    // SAFETY: `dev` is a live superblock with a block device.
    kernel::error::to_result(unsafe { ffi::vexfs_c_sync_dev(dev.as_ptr()) })
}

fn write_journal_super(dev: &Device, log: &Log, clean: bool) -> Result {
    let mut b = Buf::zeroed(dev, log.start)?;
    log.superblock(clean).encode(b.data_mut(), log.start);
    b.write_fua()
}

/// The errno of a journal error on `dev` (corruption logged).
fn jerr(dev: &Device, e: JournalError<Error>) -> Error {
    match e {
        JournalError::Io(e) => e,
        JournalError::Corrupt(f) => dev.report(f),
        JournalError::Invalid(what) => {
            pr_err!("vexfs ({}): journal: {}\n", dev.name(), what);
            EINVAL
        }
        JournalError::NoSpace => ENOSPC,
    }
}

/// Mount: replays the journal of `disk` on `dev` (core's recovery: committed transactions
/// written home, flushed, the journal superblock written clean). Returns the log to append to;
/// a read-write mount then marks it in use ([`Journal::start`]) once the superblock says
/// `RECOVER`. Errors: `EUCLEAN` (corrupt journal,
/// logged), `EIO`, `ENOMEM`. Not inlined: the replay's frame stays out of the mount's
/// (`scripts/stack-check`).
#[inline(never)]
pub fn recover(dev: &Device, disk: &Superblock) -> Result<Log> {
    let mut scratch = KVVec::from_elem(0u8, cj::SCRATCH_BYTES, GFP_KERNEL)?;
    let mut kd = KDev { dev, blocks: disk.block_count };
    let (log, rec) = cj::recover(&mut kd, disk, &mut scratch).map_err(|e| jerr(dev, e))?;
    if !rec.scan.clean {
        pr_info!(
            "vexfs ({}): journal replayed: {} transactions, {} blocks; {} uncommitted records dropped\n",
            dev.name(),
            rec.scan.transactions,
            rec.applied,
            rec.scan.uncommitted_records
        );
    }
    Ok(log)
}
