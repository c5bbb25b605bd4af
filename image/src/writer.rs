//! An offline writer: creates directories, files, symlinks and special files in an unmounted
//! image and unlinks them, sets and removes their extended attributes and the embeddings of files, through the
//! same format and index code the kernel uses (`vexfs_core::vindex`). For tests (populated images for fsck and vexctl) and
//! for tools that build images; never to be used on a mounted filesystem.
//!
//! Crash safety: the writer journals like the kernel, with the same code
//! (`vexfs_core::journal`). Opening it replays the journal. Every change stays in memory
//! (a [`Staged`] device) until [`Writer::sync`] or [`Writer::commit`]:
//!
//! 1. the first commit of a session sets the `RECOVER` feature and clears the clean state in
//!    the primary superblock (upgrading a format v1 or v2 filesystem to v3, backup
//!    superblock included) and flushes;
//! 2. file data blocks are written home (ordered mode: before the commit that exposes them);
//! 3. every changed metadata block (inodes, directory and extent blocks, bitmaps, the vector
//!    regions) is written to the log as one transaction, committed, then written home, flushed,
//!    and the log checkpointed clean;
//! 4. the primary superblock is written with the free counts, `RECOVER` cleared and the state
//!    clean, and flushed.
//!
//! A crash at any point leaves, after recovery, the state of the last sync, or of a later
//! point where a sync was split (below), never a part of an operation.
//!
//! Splitting: each public operation (`mkdir`, `create`, `set_embeddings`, `purge_vectors`,
//! ...) ends at a consistent state. When the metadata staged since the last sync no longer fits
//! the log in one transaction, what the operations before the last one staged is committed on
//! its own first (steps 2-3, inside the session), so a sync is split only between operations.
//!
//! One operation whose metadata alone exceeds the whole log (a set of many embeddings on a
//! filesystem with a small journal) cannot be committed atomically. It is written anyway, as
//! several transactions in a row, with the superblock's errors state set before the first and
//! cleared after the last ([`Writer::unatomic_commits`] counts them): a crash in between
//! leaves a filesystem that asks for `fsck.vexfs` (the kernel warns at mount), and the check
//! finds what is half done. Make the filesystem with a larger journal (`mkfs.vexfs`) to avoid
//! it.
//!
//! Blocks freed since the last sync are not reused before it (file data written home early
//! must not land on a block the committed state still uses).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::{OsRng, SmallRng};
use rand::{RngCore, SeedableRng};
use vexfs_core::dir_index;
use vexfs_core::distance::{best_impl, Impl};
use vexfs_core::embed::{ChunkFields, ChunkFile, ChunkFiles, Indexing, PurgeStep};
use vexfs_core::extent_tree::{TreeStore, NODE_ENTRIES};
use vexfs_core::file_extents::FileExtents;
use vexfs_core::format::block::Csum;
use vexfs_core::format::dir::{self, dt_from_mode, init_dir_block, seal_dir_block, valid_name, DT_DIR};
use vexfs_core::format::extent::Extent;
use vexfs_core::format::inode::{is_special, Inode, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use vexfs_core::format::superblock::{
    Extent64, Region, FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_RECOVER, FORMAT_VERSION, MAX_LEVEL, STATE_CLEAN,
    STATE_ERRORS,
};
use vexfs_core::format::vector::HnswHeader;
use vexfs_core::format::xattr;
use vexfs_core::format::{bit_find_clear, bit_set, bit_test, BLOCK_SIZE, INODE_SIZE};
use vexfs_core::hnsw;
use vexfs_core::index_error::IndexError;
use vexfs_core::io::{Block, BlockDevice};
use vexfs_core::journal::{txn_blocks, Log};

use crate::bits::count_clear;
use crate::dirs::{dir_error, set_map, DirHost, HostDir};
use crate::image::TreeErr;
use crate::journal::{self as jnl, Batch, Staged};
use crate::vectors::{
    chunk_slots, index_mem, query_bits, BlockCache, CachedBlocks, FrozenBlocks, Hit, IndexMem, SearchPad, MAX_EF, MAX_K,
};
use crate::{Error, Image, Result};

const BS: u64 = BLOCK_SIZE as u64;

/// How [`Writer::create_with`] lays out a file.
#[derive(Debug, Clone, Copy)]
pub struct FileOpts {
    /// Permission bits (and type bits, which must be `S_IFREG` or zero).
    pub mode: u16,
    /// Longest extent in blocks; 1 makes one extent per block (to test extent blocks).
    pub max_extent_blocks: u32,
    /// Entries an extent-tree node takes before it splits (`Tree::fanout`): `NODE_ENTRIES`
    /// (254) by default; fewer (at least 2) grow a deep tree from a few extents, for test and
    /// fuzz images (a tree of 3 levels from 20 extents at 3).
    pub tree_fanout: usize,
}

impl Default for FileOpts {
    fn default() -> Self {
        FileOpts { mode: S_IFREG | 0o644, max_extent_blocks: u32::MAX, tree_fanout: NODE_ENTRIES }
    }
}

/// Writes into an [`Image`]. Bitmaps are kept in memory; inodes, directory and data blocks
/// are staged as they are made; the vector regions are changed in a [`BlockCache`]. Each
/// operation stages the changed bitmap and vector blocks when it ends; [`Writer::sync`] and
/// [`Writer::commit`] write everything through the journal (see the module's docs).
pub struct Writer<D> {
    img: Image<Staged<D>>,
    blocks: Bitmap,
    inodes: Bitmap,
    /// Every inode below this index (0-based, as the bitmap's) is taken: where
    /// [`Self::alloc_inode`] starts looking, so that it finds the lowest free one without
    /// scanning the whole bitmap each time.
    inode_low: usize,
    next_block: u64,
    /// The vector index, opened on first use.
    vec: Option<VecState>,
    /// The journal's log, as recovery left it.
    log: Log,
    /// Whether the superblock on disk has `RECOVER` set (a session is open).
    session: bool,
    /// Blocks freed since the last sync (not reused before it).
    quarantine: BTreeSet<u64>,
    /// Why no sync may happen any more (a commit that failed half way).
    broken: Option<String>,
    /// Transactions committed (for tests and figures).
    transactions: u64,
    /// Time spent committing (see [`Self::commit_time`]).
    commit_time: std::time::Duration,
    /// Batches larger than the log, written as several transactions.
    unatomic: u64,
    /// How [`Self::set_chunks`] makes its vectors searchable ([`Indexing::Now`] unless
    /// [`Self::set_indexing`] says otherwise).
    indexing: Indexing,
    /// Where the seeds of directories made indexed come from ([`Self::set_dir_seeds`]):
    /// `None` for the system's random bytes.
    dir_seeds: Option<SmallRng>,
    /// The order in which pending vectors are linked ([`Self::set_link_order`]): slots, and
    /// how far the linking has gone through them.
    link_order: Option<(Vec<u32>, usize)>,
}

/// The vector index as the writer changes it: the cache of its blocks, the memory of its
/// operations (which keeps the header and slot hint between them, as the kernel's does) and
/// the distance kernel.
/// Vectors linked one by one before [`Writer::index_pending_parallel`] plans in batches: below
/// this, a batch would be a large part of the graph its plans cannot see.
pub const SEQUENTIAL_LINKS: usize = 1024;

/// Pending vectors planned at once by [`Writer::index_pending_parallel`].
pub const PARALLEL_BATCH: usize = 64;

/// The batch for `hnsw_m`: each vector of a batch takes the ones before it as candidates
/// beside its plan's `m`, and the candidate buffer holds `6m + 1`
/// (`vexfs_core::hnsw::insert_choose_merged`).
fn parallel_batch(m: u32) -> usize {
    PARALLEL_BATCH.min((m as usize).saturating_mul(5).saturating_add(2))
}

/// The connections back of one insert's `chosen` lists, at once (every level, top down), and
/// its lists emptied: what [`Writer::link_batch`] does for a whole batch after its choices,
/// one insert at a time (`test_hooks::CONNECT_EACH`), to check that both give one graph.
#[cfg(test)]
fn connect_now<D: BlockDevice<Error = io::Error>>(
    mem: &IndexMem,
    store: &CachedBlocks<'_, D>,
    imp: &Impl,
    q: u32,
    chosen: &mut [u32],
    stride: usize,
) -> Result<()> {
    let mut pad = mem.new_search_pad().map_err(|e| Error::Invalid(format!("search pad: {e}")))?;
    for (lc, list) in chosen.chunks_exact(stride).enumerate().rev() {
        let ops: Vec<(u32, u32)> = list[1..][..list[0] as usize].iter().map(|&e| (e, q)).collect();
        mem.connect_shared(&mut pad, store, imp, lc as u8, &ops)?;
    }
    chosen.fill(0);
    Ok(())
}

/// `Invalid` for a batch's insert plans that do not hold together (`what`).
fn invalid_plan(what: &str) -> Error {
    Error::Invalid(format!("parallel links: {what}"))
}

/// One insert plan of [`Writer::link_batch`], kept from the planner's pad: its place in the
/// batch, the plan, its plan words and the vector.
struct Planned {
    at: usize,
    plan: vexfs_core::embed::PendingPlan,
    words: Vec<u32>,
    vector: Vec<u32>,
}

/// One planner of [`Writer::link_batch`]: plans the slots of `slots` whose places it takes
/// from `next` (shared by the planners) in `pad`, over the frozen `view`; returns its plans.
fn plan_slots(
    mem: &IndexMem,
    imp: &Impl,
    view: &FrozenBlocks<'_>,
    slots: &[u32],
    next: &AtomicUsize,
    pad: &mut SearchPad,
) -> Result<Vec<Planned>> {
    let mut out = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(&slot) = slots.get(i) else { break };
        let Some(plan) = mem.plan_slot(pad, view, imp, slot)? else { continue };
        let (words, vector) =
            mem.plan_of(pad).ok_or_else(|| Error::Invalid("insert plan: a pad of other sizes".into()))?;
        out.push(Planned { at: i, plan, words: words.to_vec(), vector: vector.to_vec() });
    }
    Ok(out)
}

struct VecState {
    cache: BlockCache,
    mem: IndexMem,
    imp: Impl,
    /// The parallel links' search pads, one per thread, kept from batch to batch (a pad's
    /// visited set is two bytes a vector slot: made anew for every batch, it was zeroed anew).
    pads: Vec<SearchPad>,
}

fn now() -> (i64, u32) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

fn new_inode(mode: u16, links: u16, parent: u32) -> Inode {
    let (s, ns) = now();
    Inode {
        mode,
        links,
        parent,
        atime_sec: s,
        mtime_sec: s,
        ctime_sec: s,
        atime_nsec: ns,
        mtime_nsec: ns,
        ctime_nsec: ns,
        ..Inode::default()
    }
}

impl<D: BlockDevice<Error = io::Error>> Writer<D> {
    /// Starts writing into `img`: replays its journal (`vexfs_core::journal::recover`), reads
    /// both bitmaps and recounts the free blocks and inodes from them (the superblock's counts
    /// are hints, stale after a crash). Nothing else is written until a sync. Errors: `Io`,
    /// `Format` (a corrupt journal).
    pub fn new(img: Image<D>) -> Result<Writer<D>> {
        let sb = img.sb().clone();
        let mut dev = img.into_device();
        let (log, _) = jnl::recover(&mut dev, &sb)?;
        let mut img = Image::with_superblock(Staged::new(dev), sb);
        let blocks = img.read_region(Region::BlockBitmap)?;
        let inodes = img.read_region(Region::InodeBitmap)?;
        let sb = img.sb_mut();
        sb.free_blocks = count_clear(&blocks, sb.block_count);
        sb.free_inodes = count_clear(&inodes, u64::from(sb.inode_count)) as u32;
        let next_block = sb.region(Region::Data).start;
        Ok(Writer {
            blocks: Bitmap::new(blocks),
            inodes: Bitmap::new(inodes),
            inode_low: 0,
            img,
            next_block,
            vec: None,
            log,
            session: false,
            quarantine: BTreeSet::new(),
            broken: None,
            transactions: 0,
            commit_time: std::time::Duration::ZERO,
            unatomic: 0,
            indexing: Indexing::Now,
            dir_seeds: None,
            link_order: None,
        })
    }

    /// The image being written, staged changes included (its superblock's free counts are
    /// kept current). `image().device().inner()` is the device without them.
    pub fn image(&self) -> &Image<Staged<D>> {
        &self.img
    }

    /// Journal transactions committed so far.
    pub fn transactions(&self) -> u64 {
        self.transactions
    }

    /// Time this writer spent committing: writing the file data home, logging the metadata,
    /// writing it home, flushing the device (every sync, and the commits an operation makes
    /// when what is staged would outgrow the log).
    pub fn commit_time(&self) -> std::time::Duration {
        self.commit_time
    }

    /// Commits that were larger than the log and written as several transactions (not
    /// atomic; see the module's docs).
    pub fn unatomic_commits(&self) -> u64 {
        self.unatomic
    }

    /// [`Self::sync`], then gives the image back. Errors: as [`Self::sync`].
    pub fn commit(mut self) -> Result<Image<D>> {
        self.sync()?;
        let sb = self.img.sb().clone();
        Ok(Image::with_superblock(self.img.into_device().into_inner(), sb))
    }

    /// Writes every staged change through the journal and ends the session (see the module's
    /// docs), and goes on writing: the device then holds a consistent, clean filesystem with a
    /// clean journal. Does nothing when nothing changed since the last sync. Errors: `Io`;
    /// `Invalid` after an operation too large for the journal.
    pub fn sync(&mut self) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(Error::Invalid(why.clone()));
        }
        self.stage_op()?;
        self.img.device_mut().end_op();
        let batch = self.img.device_mut().take_all();
        if let Err(e) = self.commit_batch(batch) {
            self.broken = Some(format!("a commit failed, the writer stopped: {e}"));
            return Err(e);
        }
        self.quarantine.clear();
        if self.session {
            let sb = self.img.sb_mut();
            sb.feature_incompat &= !FEATURE_INCOMPAT_RECOVER;
            sb.state |= STATE_CLEAN;
            sb.write_time = now().0.max(0) as u64;
            self.write_primary()?;
            self.session = false;
        }
        Ok(())
    }

    /// Stages what the operation left in memory: the vector blocks it changed and the bitmap
    /// blocks.
    fn stage_op(&mut self) -> Result<()> {
        self.flush_vectors()?;
        // Each writes the bitmap blocks the operation changed and updates the old copy.
        self.blocks.stage(&mut self.img, Region::BlockBitmap)?;
        self.inodes.stage(&mut self.img, Region::InodeBitmap)?;
        Ok(())
    }

    /// Ends a public operation whose result is `r`: stages its blocks and, when the metadata
    /// staged since the last sync outgrows one transaction, commits the operations before it.
    fn end_op<R>(&mut self, r: Result<R>) -> Result<R> {
        if let Some(why) = &self.broken {
            return Err(Error::Invalid(why.clone()));
        }
        let staged = self.stage_op();
        let max = self.log.blocks.saturating_sub(1);
        let (meta, _) = self.img.device().counts();
        if staged.is_ok() && txn_blocks(meta as u64) > max && self.img.device().closed_meta() > 0 {
            let batch = self.img.device_mut().take_closed();
            if let Err(e) = self.commit_batch(batch) {
                self.broken = Some(format!("a commit failed, the writer stopped: {e}"));
                return Err(e);
            }
        }
        self.img.device_mut().end_op();
        staged?;
        r
    }

    /// Commits `batch`: opens the session if needed, writes the file data home, logs the
    /// metadata as one transaction, writes it home and checkpoints the log clean. A batch
    /// larger than the log goes in several transactions under the errors state (see the
    /// module's docs).
    fn commit_batch(&mut self, batch: Batch) -> Result<()> {
        let t = std::time::Instant::now();
        let r = self.commit_batch_timed(batch);
        self.commit_time += t.elapsed();
        r
    }

    fn commit_batch_timed(&mut self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if !self.session {
            self.begin_session()?;
        }
        let Batch { data, meta } = batch;
        let dev = self.img.device_mut().inner_mut();
        for (n, b) in &data {
            dev.write_block(*n, b).map_err(Error::io(format!("writing block {n}")))?;
        }
        if meta.is_empty() {
            return dev.flush().map_err(Error::io("flushing the device"));
        }
        let per_txn = max_images(self.log.blocks);
        let split = meta.len() > per_txn;
        let errors_before = self.img.sb().state & STATE_ERRORS;
        if split {
            self.unatomic += 1;
            self.img.sb_mut().state |= STATE_ERRORS;
            self.write_primary()?;
        }
        for part in meta.chunks(per_txn.max(1)) {
            let dev = self.img.device_mut().inner_mut();
            jnl::write_superblock(dev, &self.log, false)?;
            let images: Vec<(u64, &Block)> = part.iter().map(|(n, b)| (*n, &**b)).collect();
            jnl::write_transaction(dev, &mut self.log, &images)?;
            self.transactions += 1;
            for (n, b) in part {
                dev.write_block(*n, b).map_err(Error::io(format!("writing block {n}")))?;
            }
            dev.flush().map_err(Error::io("flushing the device"))?;
            jnl::checkpoint(dev, &mut self.log, true)?;
        }
        if split {
            let sb = self.img.sb_mut();
            sb.state = (sb.state & !STATE_ERRORS) | errors_before;
            self.write_primary()?;
        }
        Ok(())
    }

    /// Marks the filesystem as being written: `RECOVER` set, state not clean, format v3 (the
    /// backup superblock upgraded too when it was older); flushed before any journal write.
    fn begin_session(&mut self) -> Result<()> {
        if self.img.sb().format_version != FORMAT_VERSION {
            let backup = self.img.sb().backup_block;
            let dev = self.img.device_mut().inner_mut();
            let mut b = [0u8; BLOCK_SIZE];
            dev.read_block(backup, &mut b).map_err(Error::io("reading the backup superblock"))?;
            if let Ok(mut bsb) = vexfs_core::format::superblock::Superblock::decode(&b) {
                bsb.format_version = FORMAT_VERSION;
                b.fill(0);
                bsb.encode(&mut b);
                dev.write_block(backup, &b).map_err(Error::io("writing the backup superblock"))?;
            }
        }
        let sb = self.img.sb_mut();
        sb.format_version = FORMAT_VERSION;
        sb.feature_incompat |= FEATURE_INCOMPAT_RECOVER;
        sb.state &= !STATE_CLEAN;
        self.write_primary()?;
        self.session = true;
        Ok(())
    }

    /// Writes the in-memory superblock to block 0 of the device and flushes.
    fn write_primary(&mut self) -> Result<()> {
        let mut b = [0u8; BLOCK_SIZE];
        self.img.sb().encode(&mut b);
        let dev = self.img.device_mut().inner_mut();
        dev.write_block(0, &b).map_err(Error::io("writing the superblock"))?;
        dev.flush().map_err(Error::io("flushing the device"))
    }

    /// Creates directory `name` in directory `parent` with permission bits `perm`; returns
    /// its inode number. Errors: `Invalid` (bad or existing name, parent not a directory, no
    /// space), `Io`, `Format`.
    pub fn mkdir(&mut self, parent: u32, name: &str, perm: u16) -> Result<u32> {
        let r = self.mkdir_op(parent, name, perm);
        self.end_op(r)
    }

    fn mkdir_op(&mut self, parent: u32, name: &str, perm: u16) -> Result<u32> {
        // Before the inode is taken: a refused name leaves nothing behind.
        self.check_new_name(parent, name)?;
        let ino = self.alloc_inode()?;
        self.img.write_inode(ino, &new_inode(S_IFDIR | (perm & !S_IFMT), 2, parent))?;
        self.add_entry(parent, name, ino, DT_DIR)?;
        let mut p = self.img.inode(parent)?;
        p.links = p.links.checked_add(1).ok_or_else(|| Error::Invalid("too many subdirectories".into()))?;
        self.img.write_inode(parent, &p)?;
        Ok(ino)
    }

    /// Creates regular file `name` in `parent` holding `data` (mode 0644, contiguous where
    /// possible); returns its inode number. Blocks of zeros are left as holes.
    /// Errors: as [`Self::mkdir`].
    pub fn create(&mut self, parent: u32, name: &str, data: &[u8]) -> Result<u32> {
        self.create_with(parent, name, data, FileOpts::default())
    }

    /// [`Self::create`] with a chosen mode and extent layout.
    pub fn create_with(&mut self, parent: u32, name: &str, data: &[u8], opts: FileOpts) -> Result<u32> {
        let mode = S_IFREG | (opts.mode & !S_IFMT);
        let r = self.create_inode(parent, name, mode, data, opts.max_extent_blocks.max(1), opts.tree_fanout);
        self.end_op(r)
    }

    /// Creates symlink `name` in `parent` pointing at `target` (stored in a data block).
    /// Errors: as [`Self::mkdir`]; `Invalid` for an empty target or one over 4096 bytes.
    pub fn symlink(&mut self, parent: u32, name: &str, target: &str) -> Result<u32> {
        if target.is_empty() || target.len() > BLOCK_SIZE {
            return Err(Error::Invalid(format!("symlink target of {} bytes", target.len())));
        }
        let r = self.create_inode(parent, name, S_IFLNK | 0o777, target.as_bytes(), u32::MAX, NODE_ENTRIES);
        self.end_op(r)
    }

    /// Adds a hard link `name` in `parent` to regular file `ino`. Errors: `Invalid` for a
    /// directory target, as [`Self::mkdir`] otherwise.
    pub fn link(&mut self, parent: u32, name: &str, ino: u32) -> Result<()> {
        let r = self.link_op(parent, name, ino);
        self.end_op(r)
    }

    fn link_op(&mut self, parent: u32, name: &str, ino: u32) -> Result<()> {
        let mut inode = self.img.inode(ino)?;
        if inode.is_dir() {
            return Err(Error::Invalid("no hard links to directories".into()));
        }
        self.check_new_name(parent, name)?;
        self.add_entry(parent, name, ino, dt_from_mode(inode.mode))?;
        inode.links = inode.links.checked_add(1).ok_or_else(|| Error::Invalid("too many links".into()))?;
        self.img.write_inode(ino, &inode)
    }

    /// Removes entry `name` from directory `parent`, as unlink(2) does (rmdir(2) for an empty
    /// directory): through the index of an indexed directory (`vexfs_core::dir_index::remove`),
    /// else from the linear block holding it (a directory never shrinks). The inode it names
    /// loses a link; when the last one goes (a directory's one entry), the inode is freed: its
    /// embeddings removed (as [`Self::remove_embeddings`]: tombstones), its xattr block, data
    /// blocks and extent-tree nodes freed, its table slot zeroed and its bitmap bit cleared.
    /// Errors: `NotFound` (no such entry), `NotADirectory` (`parent`), `Invalid` for a
    /// directory that is not empty; `Format`, `Io`.
    pub fn unlink(&mut self, parent: u32, name: &str) -> Result<()> {
        let r = self.unlink_op(parent, name);
        self.end_op(r)
    }

    fn unlink_op(&mut self, parent: u32, name: &str) -> Result<()> {
        let p = self.img.inode(parent)?;
        if !p.is_dir() {
            return Err(Error::NotADirectory(format!("inode {parent}")));
        }
        let raw = name.as_bytes();
        let e = self
            .img
            .find_entry(parent, &p, raw)?
            .ok_or_else(|| Error::NotFound(format!("{name:?} in directory {parent}")))?;
        let mut inode = self.img.inode(e.ino)?;
        if inode.is_dir() && !self.img.read_dir(e.ino, &inode)?.is_empty() {
            return Err(Error::Invalid(format!("directory {} ({name:?}) is not empty", e.ino)));
        }
        self.remove_entry(parent, p, raw)?;
        if inode.is_dir() {
            let mut p = self.img.inode(parent)?;
            p.links = p.links.saturating_sub(1);
            self.img.write_inode(parent, &p)?;
            return self.free_inode(e.ino, inode);
        }
        inode.links = inode.links.saturating_sub(1);
        if inode.links > 0 {
            (inode.ctime_sec, inode.ctime_nsec) = now();
            return self.img.write_inode(e.ino, &inode);
        }
        self.free_inode(e.ino, inode)
    }

    /// Removes the dirent `name` (present) of directory `dir`, whose inode is `d`.
    fn remove_entry(&mut self, dir: u32, d: Inode, name: &[u8]) -> Result<()> {
        if self.img.is_indexed(dir, &d)? {
            let mut s = HostDir::new(self, dir, d);
            return match dir_index::remove(&mut s, name).map_err(|e| dir_error(e, dir))? {
                Some(_) => Ok(()),
                None => Err(Error::NotFound(format!("{:?} in directory {dir}", String::from_utf8_lossy(name)))),
            };
        }
        let fmt = |e| Error::Format { what: format!("directory {dir}"), err: e };
        for (_, blk) in self.img.dir_blocks(dir, &d)? {
            let mut b = self.img.read_block(blk)?;
            if dir::remove(&mut b[..], name).map_err(fmt)?.is_some() {
                seal_dir_block(&mut b[..], blk, dir as u64);
                return self.img.write_block(blk, &b);
            }
        }
        Err(Error::NotFound(format!("{:?} in directory {dir}", String::from_utf8_lossy(name))))
    }

    /// Frees inode `ino` (no link left): its embeddings, xattr block, blocks and tree nodes,
    /// its slot (zeroed, as fsck wants a free inode) and bitmap bit.
    fn free_inode(&mut self, ino: u32, mut inode: Inode) -> Result<()> {
        if inode.vec_count != 0 || inode.vec_block != 0 {
            self.with_file(ino, inode, |mem, store, imp, file| mem.remove_chunks(store, imp, file))?;
            inode = self.img.inode(ino)?;
        }
        if inode.xattr_block != 0 {
            self.give_block(inode.xattr_block);
        }
        let mut fx = self.img.file_extents(ino, &inode);
        fx.check_inode().map_err(Error::format(format!("inode {ino}")))?;
        let mut t = WriterTree { w: self, blocks: inode.blocks };
        loop {
            let done = fx
                .truncate(&mut t, 0, 64, |t, start, len| {
                    for n in start..start.saturating_add(len) {
                        t.w.give_block(n);
                    }
                    t.blocks = t.blocks.saturating_sub(len);
                    Ok(())
                })
                .map_err(|e| e.into_error(ino))?;
            if done {
                break;
            }
        }
        let (blk, off, mut b) = self.img.inode_raw(ino)?;
        b[off..off + INODE_SIZE].fill(0);
        self.img.write_block(blk, &b)?;
        let i = (ino - 1) as usize;
        if self.inodes.test(i) {
            self.inodes.set(i, false);
            self.inode_low = self.inode_low.min(i);
            self.img.sb_mut().free_inodes += 1;
        }
        Ok(())
    }

    /// Creates special file `name` in `parent` (format v3): `mode` holds its type, one of
    /// `S_IFIFO`, `S_IFSOCK`, `S_IFCHR` or `S_IFBLK`, and its permission bits; `rdev` is a
    /// device's number in the kernel's `new_encode_dev` layout (as the inode stores it), 0 for
    /// a FIFO or socket. The inode has no data, size 0; its directory entry has the type's
    /// `DT_*`. Returns its inode number. Errors: `Invalid` for a mode of another type or a
    /// device number on a FIFO or socket; as [`Self::mkdir`] otherwise.
    pub fn mknod(&mut self, parent: u32, name: &str, mode: u16, rdev: u32) -> Result<u32> {
        if !is_special(mode) {
            return Err(Error::Invalid(format!("mknod of mode {mode:o}: not a FIFO, socket or device")));
        }
        let device = matches!(mode & S_IFMT, S_IFCHR | S_IFBLK);
        if rdev != 0 && !device {
            return Err(Error::Invalid(format!("device number {rdev:#x} for mode {mode:o}, not a device")));
        }
        let r = self.mknod_op(parent, name, mode, rdev);
        self.end_op(r)
    }

    fn mknod_op(&mut self, parent: u32, name: &str, mode: u16, rdev: u32) -> Result<u32> {
        // Before the inode is taken: a refused name leaves nothing behind.
        self.check_new_name(parent, name)?;
        let ino = self.alloc_inode()?;
        let mut inode = new_inode(mode, 1, 0);
        inode.rdev = rdev;
        self.img.write_inode(ino, &inode)?;
        self.add_entry(parent, name, ino, dt_from_mode(mode))?;
        Ok(ino)
    }

    /// Sets (`Some(value)`) or removes (`None`) extended attribute `name` of namespace `index`
    /// (`vexfs_core::format::xattr::XATTR_USER`, `XATTR_TRUSTED`, `XATTR_SECURITY`; `name`
    /// without the prefix) of inode `ino` (format v3), through the core's
    /// `vexfs_core::format::xattr::set` as the kernel's setxattr does, and stamps its ctime.
    /// The file's xattr block is allocated with its first attribute and freed with its last
    /// (not counted in the inode's `blocks`). Returns whether the attribute existed before;
    /// removing one that does not exist changes nothing. Errors, nothing changed then:
    /// `Invalid` for what the core's `SetError` refuses (an unknown namespace, a name empty,
    /// longer than 255 bytes, `ERANGE`; attributes that would not fit the block, `ENOSPC`), a
    /// name with a NUL byte, a `user.` attribute on an inode that is neither a regular file nor a
    /// directory (the kernel's `EPERM`) and an inode not in use; `Format` for a corrupt xattr
    /// block; `Io`.
    pub fn set_xattr(&mut self, ino: u32, index: u8, name: &str, value: Option<&[u8]>) -> Result<bool> {
        let r = self.set_xattr_op(ino, index, name.as_bytes(), value);
        self.end_op(r)
    }

    fn set_xattr_op(&mut self, ino: u32, index: u8, name: &[u8], value: Option<&[u8]>) -> Result<bool> {
        let refused = |e: xattr::SetError| match e {
            xattr::SetError::Name => Error::Invalid(format!(
                "xattr name {:?} of namespace {index}: an unknown namespace or a name not of 1..=255 bytes (ERANGE)",
                String::from_utf8_lossy(name)
            )),
            xattr::SetError::NoSpace => Error::Invalid(format!(
                "inode {ino}: the attributes would not fit the xattr block's {} bytes (ENOSPC)",
                xattr::XATTR_SPACE
            )),
            xattr::SetError::Corrupt(err) => Error::Format { what: format!("inode {ino} xattr block"), err },
        };
        if name.contains(&0) {
            return Err(Error::Invalid(format!("xattr name {:?} holds a NUL byte", String::from_utf8_lossy(name))));
        }
        let in_use = ino.checked_sub(1).is_some_and(|i| i < self.img.sb().inode_count && self.inodes.test(i as usize));
        if !in_use {
            return Err(Error::Invalid(format!("inode {ino} is not in use")));
        }
        let mut inode = self.img.inode(ino)?;
        if index == xattr::XATTR_USER && !inode.is_reg() && !inode.is_dir() {
            return Err(Error::Invalid(format!(
                "inode {ino} (mode {:o}): user. attributes only on regular files and directories (EPERM)",
                inode.mode
            )));
        }
        let owner = u64::from(ino);
        let blk = inode.xattr_block;
        let existed = if blk == 0 {
            let Some(v) = value else {
                // Checks the name all the same (as the kernel's removexattr does).
                let mut b = [0u8; BLOCK_SIZE];
                xattr::init(&mut b, 0, owner);
                return xattr::set(&mut b, 0, owner, index, name, None).map_err(refused);
            };
            // Built before the block is taken: a refused attribute leaves nothing behind.
            let mut b = [0u8; BLOCK_SIZE];
            xattr::init(&mut b, 0, owner);
            xattr::set(&mut b, 0, owner, index, name, Some(v)).map_err(refused)?;
            let blk = self.alloc_block()?;
            xattr::init(&mut b, blk, owner);
            xattr::set(&mut b, blk, owner, index, name, Some(v)).map_err(refused)?;
            self.img.write_block(blk, &b)?;
            inode.xattr_block = blk;
            false
        } else {
            let what = format!("inode {ino} xattr block {blk}");
            if !self.img.sb().region(Region::Data).contains(blk) || !self.blocks.test(blk as usize) {
                return Err(Error::Invalid(format!("{what}: not an allocated block of the data region")));
            }
            let mut b = self.img.read_block(blk)?;
            xattr::check_xattr_block(&b[..], blk, owner).map_err(Error::format(&what))?;
            let existed = xattr::set(&mut b[..], blk, owner, index, name, value).map_err(refused)?;
            if !existed && value.is_none() {
                return Ok(false);
            }
            if xattr::is_empty(&b[..]) {
                self.blocks.set(blk as usize, false);
                self.quarantine.insert(blk);
                self.img.sb_mut().free_blocks += 1;
                inode.xattr_block = 0;
            } else {
                self.img.write_block(blk, &b)?;
            }
            existed
        };
        (inode.ctime_sec, inode.ctime_nsec) = now();
        self.img.write_inode(ino, &inode)?;
        Ok(existed)
    }

    /// Sets the embeddings of regular file `ino` to `vectors` (chunk `i` is `vectors[i]`),
    /// replacing all it had; an empty `vectors` removes them. Returns the file's slots.
    /// Errors: as [`Self::set_chunks`].
    pub fn set_embeddings<V: AsRef<[f32]>>(&mut self, ino: u32, vectors: &[V]) -> Result<Vec<u32>> {
        if vectors.is_empty() {
            self.remove_embeddings(ino)?;
            return Ok(Vec::new());
        }
        self.set_chunks(ino, 0, vectors, true)
    }

    /// Sets chunks `first .. first + vectors.len()` of regular file `ino`, as
    /// `VEXFS_IOC_SET_EMBEDDINGS` does, through the kernel's code
    /// (`vexfs_core::embed::IndexMem::set_chunks`): the new vectors are inserted first, then
    /// the chunk list is stored, then the replaced vectors removed; with `truncate` the chunks
    /// past the new ones go too. Returns the file's slots.
    /// Errors: `Invalid` for a file that is not regular, a vector of the wrong dimension, and
    /// what the core refuses (no vectors, NaN/Inf, a gap, more than `MAX_CHUNKS` chunks, no
    /// room for the vectors: nothing is changed then); `Format` for a corrupt index or chunk
    /// list; `Io`.
    pub fn set_chunks<V: AsRef<[f32]>>(
        &mut self,
        ino: u32,
        first: usize,
        vectors: &[V],
        truncate: bool,
    ) -> Result<Vec<u32>> {
        let r = self.set_chunks_op(ino, first, vectors, truncate);
        self.end_op(r)
    }

    fn set_chunks_op<V: AsRef<[f32]>>(
        &mut self,
        ino: u32,
        first: usize,
        vectors: &[V],
        truncate: bool,
    ) -> Result<Vec<u32>> {
        let inode = self.img.inode(ino)?;
        if !inode.is_reg() {
            return Err(Error::Invalid(format!(
                "inode {ino} is not a regular file: only regular files carry embeddings"
            )));
        }
        let dim = self.img.sb().vec_dim as usize;
        let mut data = Vec::with_capacity(vectors.len() * dim);
        for (i, v) in vectors.iter().enumerate() {
            let v = v.as_ref();
            if v.len() != dim {
                return Err(Error::Invalid(format!("vector {i} has {} components, the filesystem {dim}", v.len())));
            }
            data.extend(query_bits(v));
        }
        let count = vectors.len();
        let indexing = self.indexing;
        self.with_file(ino, inode, |mem, store, imp, file| {
            mem.set_chunks(store, imp, file, first, &data, truncate, indexing)
        })
        .map_err(|e| match e {
            IndexError::NoSpace { live, capacity } => {
                Error::Invalid(format!("no room for {count} more vectors ({live} of {capacity} slots live)"))
            }
            IndexError::Rejected(r) => Error::Invalid(format!("inode {ino}: {r}")),
            e => Error::from(e),
        })?;
        chunk_slots(&self.img, ino, &self.img.inode(ino)?)
    }

    /// Removes every embedding of `ino` (a file without any is not an error): the chunk list
    /// is cleared first, then each vector becomes a tombstone (purged by the index's policy or
    /// [`Self::purge_vectors`]). Errors: `Format` for a corrupt index or chunk list; `Io`.
    pub fn remove_embeddings(&mut self, ino: u32) -> Result<()> {
        let r = self.img.inode(ino).and_then(|inode| {
            Ok(self.with_file(ino, inode, |mem, store, imp, file| mem.remove_chunks(store, imp, file))?)
        });
        self.end_op(r)
    }

    /// How later SETs make their vectors searchable: [`Indexing::Now`] (the default) links
    /// each into the graph; [`Indexing::Deferred`] stores it pending, as the kernel's SET
    /// does, for [`Self::index_pending`] to link.
    pub fn set_indexing(&mut self, indexing: Indexing) {
        self.indexing = indexing;
    }

    /// Opens the vector index and backs its cache with transparent huge pages from now on
    /// ([`BlockCache::use_huge_pages`]): for a writer that will touch most of the vector regions
    /// (the bulk loader). Errors: `Format` for a corrupt index; `Io`.
    pub fn expect_whole_index(&mut self) -> Result<()> {
        self.index()?;
        if let Some(v) = &self.vec {
            v.cache.use_huge_pages();
        }
        Ok(())
    }

    /// Builds the graph on transient SQ8 codes at scale `2^shift` until
    /// [`Self::clear_build_codes`] (`IndexMem::set_build_codes`: the links' searches and
    /// neighbour selection compare the codes' integer distances: pydocs-1m's links phase took
    /// 224 s against 374 s on the floats; the image stays float32, searches and the distances
    /// they return too): a code of every vector stored so far, `capacity * stride` bytes held in
    /// memory (a quarter of the vector data). For a filesystem without codes, before linking
    /// vectors stored beforehand; nothing is written. Errors: `Invalid` for a filesystem with
    /// codes or a shift out of range; `Format`; `Io`.
    pub fn set_build_codes(&mut self, shift: i32) -> Result<()> {
        let (mem, store, imp) = self.index()?;
        let sb = mem.sb();
        let bytes = usize::try_from(sb.vec_capacity)
            .ok()
            .and_then(|c| c.checked_mul(vexfs_core::vindex::build_code_stride(sb.vec_dim)))
            .ok_or_else(|| Error::Invalid("build codes: too many slots".into()))?;
        mem.set_build_codes(&store, &imp, vec![0u8; bytes], shift)?;
        Ok(())
    }

    /// Ends [`Self::set_build_codes`], freeing the codes: the graph is built on the float
    /// vectors again.
    pub fn clear_build_codes(&mut self) {
        if let Some(v) = self.vec.as_mut() {
            v.mem.clear_build_codes();
        }
    }

    /// Links up to `max` pending vectors into the graph, as the kernel's index worker does
    /// (`vexfs_core::embed::IndexMem::index_pending`, in slot order), or, with a link order
    /// ([`Self::set_link_order`]), one at a time in that order; returns how many. Errors:
    /// `Format` for a corrupt index; `Io`.
    pub fn index_pending(&mut self, max: usize) -> Result<usize> {
        if self.link_order.is_some() {
            // One at a time in the order: batches of one.
            let mut done = 0usize;
            while done < max {
                let r = self.link_batch(1, 1);
                if self.end_op(r)? == 0 {
                    break;
                }
                done += 1;
            }
            return Ok(done);
        }
        let r = self.index().and_then(|(mem, store, imp)| Ok(mem.index_pending(&store, &imp, max)?));
        self.end_op(r)
    }

    /// [`Self::index_pending`] the way the kernel's index worker runs beside searches: each
    /// vector's insert plan made through `&IndexMem` in a search pad of its own
    /// (`IndexMem::plan_pending`, what the kernel runs under the shared index lock), then
    /// applied (`IndexMem::apply_pending`, under the exclusive one), the plain way when the plan
    /// no longer applies. The graph is the one [`Self::index_pending`] makes. Returns how many
    /// were linked, and how many of those the plain way. Errors: as [`Self::index_pending`].
    pub fn index_pending_planned(&mut self, max: usize) -> Result<(usize, usize)> {
        let r = self.index().and_then(|(mem, store, imp)| {
            let mut pad = mem.new_search_pad().map_err(|e| match e {
                IndexError::Io(never) => match never {},
                other => Error::Invalid(format!("search pad: {other}")),
            })?;
            let (mut done, mut plain) = (0usize, 0usize);
            while done < max {
                let Some(plan) = mem.plan_pending(&mut pad, &store, &imp)? else { break };
                if !mem.apply_pending(&store, &imp, &plan, &pad)? {
                    if mem.index_pending(&store, &imp, 1)? == 0 {
                        break;
                    }
                    plain += 1;
                }
                done += 1;
            }
            Ok((done, plain))
        });
        self.end_op(r)
    }

    /// [`Self::index_pending`] on `threads` threads (`mkfs.vexfs --import -j`): links up to
    /// `max` pending vectors and returns how many. The first [`SEQUENTIAL_LINKS`] vectors of
    /// the graph are linked one by one; after them, batches of [`PARALLEL_BATCH`] pending
    /// vectors (fewer for a small `hnsw_m`) are planned at once over the graph as it stands,
    /// spread over the threads, each in a search pad of its own (`IndexMem::plan_slot`, which
    /// only reads), then linked one after the other in slot order, each with the vectors of the
    /// batch linked before it among its candidates (`IndexMem::apply_chosen`: its own lists),
    /// and then the batch's connections back (`IndexMem::connect_shared`): the upper levels'
    /// on this thread, level 0's (when the graph holds no tombstone, whose flags they would
    /// read) on every thread, each taking the nodes of the level-0 record
    /// blocks it owns (block number modulo `threads`; it alone reads and writes them, and the
    /// vectors are read by all), the connections to one node in the batch's order. The graph
    /// is the one of choosing and connecting each insert in turn, and depends on the batch
    /// size, never on the thread count: `threads` of 1 and of 16 give the same image.
    /// Errors: as [`Self::index_pending`]; `Invalid` when a pad cannot be made.
    pub fn index_pending_parallel(&mut self, max: usize, threads: usize) -> Result<usize> {
        let threads = threads.max(1);
        let mut done = 0usize;
        while done < max {
            let (mem, _, _) = self.index()?;
            let h = mem.header();
            if h.pending == 0 {
                break;
            }
            if (h.live as usize) < SEQUENTIAL_LINKS {
                let n = (SEQUENTIAL_LINKS - h.live as usize).min(max - done);
                let linked = self.index_pending(n)?;
                if linked == 0 {
                    break;
                }
                done += linked;
                continue;
            }
            let batch = parallel_batch(mem.sb().hnsw_m).min(max - done);
            let r = self.link_batch(batch, threads);
            let linked = self.end_op(r)?;
            if linked == 0 {
                break;
            }
            done += linked;
        }
        Ok(done)
    }

    /// One batch of [`Self::index_pending_parallel`]: up to `batch` pending vectors planned on
    /// `threads` threads, then linked in order; returns how many were linked.
    fn link_batch(&mut self, batch: usize, threads: usize) -> Result<usize> {
        self.index()?;
        let Writer { img, vec, link_order, .. } = self;
        let VecState { cache, mem, imp, pads } =
            vec.as_mut().ok_or_else(|| Error::Invalid("vector index not open".into()))?;
        cache.load_all(img.device())?;
        let pad_err = |e: IndexError<Infallible>| Error::Invalid(format!("search pad: {e}"));
        while pads.len() < threads.max(1) {
            pads.push(mem.new_search_pad().map_err(pad_err)?);
        }
        // The next pending slots of the link order, else in slot order.
        let mut slots = Vec::with_capacity(batch);
        if let Some((order, pos)) = link_order.as_mut() {
            while slots.len() < batch {
                let Some(&s) = order.get(*pos) else { break };
                *pos += 1;
                if mem.is_pending(s) {
                    slots.push(s);
                }
            }
            if *pos >= order.len() {
                // Gone through: the rest (if any) in slot order, the plain way.
                *link_order = None;
            }
        }
        if slots.is_empty() {
            slots.resize(batch, 0);
            let n = mem.pending_slots(&mut slots);
            slots.truncate(n);
        }
        let n = slots.len();
        let plans = {
            let view = cache.frozen();
            let (mem, imp, view, slots) = (&*mem, &*imp, &view, &slots);
            let next = AtomicUsize::new(0);
            let workers = threads.min(n).max(1);
            let planned: Vec<Result<Vec<Planned>>> = if workers == 1 {
                // One planner (`-j 1`'s link order: a batch of one): on this thread, not a
                // thread spawned for each vector (a panic in it, of which none is known,
                // then unwinds the caller instead of becoming an error).
                pads.iter_mut().take(1).map(|pad| plan_slots(mem, imp, view, slots, &next, pad)).collect()
            } else {
                std::thread::scope(|sc| {
                    let workers: Vec<_> = pads
                        .iter_mut()
                        .take(workers)
                        .map(|pad| {
                            let next = &next;
                            sc.spawn(move || plan_slots(mem, imp, view, slots, next, pad))
                        })
                        .collect();
                    workers
                        .into_iter()
                        .map(|t| t.join().unwrap_or_else(|_| Err(Error::Invalid("an insert planner panicked".into()))))
                        .collect()
                })
            };
            let mut plans = Vec::with_capacity(n);
            for p in planned {
                plans.extend(p?);
            }
            plans.sort_by_key(|p| p.at);
            plans
        };
        // Each linked in order: its own lists chosen (the batch's slots before it among the
        // candidates) and written; the choices read vectors only, so the connections back may
        // all follow, those to one node in the batch's order.
        let plen = hnsw::plan_len(mem.sb().hnsw_m);
        let stride = (mem.sb().hnsw_m as usize).saturating_add(1);
        let mut linked: Vec<u32> = Vec::with_capacity(plans.len());
        let mut chosen = vec![0u32; plans.len().saturating_mul(plen)];
        {
            let store = CachedBlocks { dev: img.device(), cache };
            for p in &plans {
                let at = linked.len().saturating_mul(plen);
                let out = chosen.get_mut(at..at.saturating_add(plen)).ok_or_else(|| invalid_plan("chosen lists"))?;
                if mem.apply_chosen(&store, imp, &p.plan, &p.words, &p.vector, &linked, out)? {
                    linked.push(p.plan.slot);
                    #[cfg(test)]
                    if crate::vectors::test_hooks::CONNECT_EACH.with(|c| c.get()) {
                        connect_now(mem, &store, imp, p.plan.slot, out, stride)?;
                    }
                }
            }
        }
        // The connections back, level by level (the lists of one level are all they change):
        // (neighbour, new node) in the batch's order.
        let mut ops: Vec<Vec<(u32, u32)>> = vec![Vec::new(); MAX_LEVEL as usize + 1];
        for (&q, words) in linked.iter().zip(chosen.chunks_exact(plen)) {
            for (lc, level_ops) in ops.iter_mut().enumerate() {
                let list = words.get(lc.saturating_mul(stride)..).and_then(|w| w.get(..stride));
                let Some((&count, ids)) = list.and_then(|l| l.split_first()) else { break };
                let ids = ids.get(..count as usize).ok_or_else(|| invalid_plan("chosen count"))?;
                level_ops.extend(ids.iter().map(|&e| (e, q)));
            }
        }
        let pad = pads.first_mut().ok_or_else(|| invalid_plan("search pads"))?;
        {
            // The upper levels here: a sixteenth of the connections or so.
            let store = CachedBlocks { dev: img.device(), cache };
            for (lc, level_ops) in ops.iter().enumerate().skip(1).filter(|(_, o)| !o.is_empty()) {
                mem.connect_shared(pad, &store, imp, lc as u8, level_ops)?;
            }
        }
        let level0 = ops.first().map(Vec::as_slice).unwrap_or_default();
        let hnsw = mem.sb().region(Region::Hnsw);
        let owned = hnsw.start..hnsw.start.saturating_add(hnsw.blocks);
        // With tombstones the connections read other nodes' records (their flags), with node
        // records the vectors in other threads' record blocks: one thread.
        let threaded = threads > 1 && level0.len() > 1 && mem.connects_apart();
        let shared = if threaded { cache.shared(owned, threads as u64) } else { None };
        let Some(mut shared) = shared else {
            let store = CachedBlocks { dev: img.device(), cache };
            mem.connect_shared(pad, &store, imp, 0, level0)?;
            return Ok(linked.len());
        };
        // Level 0 on every thread: the nodes of a level-0 record block are one thread's, which
        // alone reads and writes that block; the vectors are read by all and written by none.
        let mut parts: Vec<Vec<(u32, u32)>> = vec![Vec::new(); threads];
        for &(e, q) in level0 {
            let blk = mem.level0_block(e).map_err(Error::format("hnsw link"))?;
            let owner = shared.owner_of(blk).ok_or_else(|| invalid_plan("level-0 record block"))?;
            if let Some(part) = parts.get_mut(owner as usize) {
                part.push((e, q));
            }
        }
        #[cfg(test)]
        crate::vectors::test_hooks::SHARED_CONNECTS.fetch_add(1, Ordering::Relaxed);
        let (mem, imp) = (&*mem, &*imp);
        let stores = shared.stores();
        let done: Vec<(Vec<u64>, Result<()>)> = std::thread::scope(|sc| {
            let workers: Vec<_> = stores
                .into_iter()
                .zip(&parts)
                .zip(pads.iter_mut())
                .map(|((store, part), pad)| {
                    sc.spawn(move || {
                        let r = mem.connect_shared(pad, &store, imp, 0, part).map_err(Error::from);
                        (store.written(), r)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| (Vec::new(), Err(Error::Invalid("a connecting thread panicked".into()))))
                })
                .collect()
        });
        let written: Vec<u64> = done.iter().flat_map(|(w, _)| w.iter().copied()).collect();
        cache.mark_dirty(written);
        for (_, r) in done {
            r?;
        }
        Ok(linked.len())
    }

    /// Makes the image remember the extent-tree nodes and directory index headers that passed
    /// their check, and not check them again on every read (`Image::remember_checked`): for
    /// the bulk loader, whose name lookups read the same few nodes for every file.
    pub fn remember_checked(&mut self) {
        self.img.remember_checked();
    }

    /// Makes removals leave the purge of tombstones to [`Self::purge_step`], as the kernel's
    /// index worker does (`vexfs_core::embed::IndexMem::set_stepwise_purge`).
    pub fn set_stepwise_purge(&mut self, on: bool) -> Result<()> {
        self.index()?.0.set_stepwise_purge(on);
        Ok(())
    }

    /// One step of a purge in steps of up to `max` slots (`IndexMem::purge_step`).
    /// Errors: `Format` for a corrupt index; `Io`.
    pub fn purge_step(&mut self, max: usize) -> Result<PurgeStep> {
        let r = self.index().and_then(|(mem, store, imp)| Ok(mem.purge_step(&store, &imp, max)?));
        self.end_op(r)
    }

    /// Repairs the graph around every tombstone and frees their slots.
    pub fn purge_vectors(&mut self) -> Result<()> {
        let r = self.index().and_then(|(mem, store, imp)| Ok(mem.purge(&store, &imp)?));
        self.end_op(r)
    }

    /// Where the next vector slot is looked for (`IndexMem::set_slot_hint`): the next
    /// embedding stored takes the first free slot at or after `slot`, else the first before
    /// it. Errors: as opening the index (`Format` for a corrupt one, `Io`).
    pub fn set_slot_hint(&mut self, slot: u32) -> Result<()> {
        self.index()?.0.set_slot_hint(slot);
        Ok(())
    }

    /// Links pending vectors in the order of `slots` ([`Self::index_pending`] one at a time,
    /// [`Self::index_pending_parallel`] in batches taken from it) rather than in slot order,
    /// skipping those not pending; the pending slots it does not list follow, in slot order.
    /// An HNSW graph is only as good as its insert order is random: a bulk load whose slots
    /// follow the vectors' locality ([`crate::order`]) links in row order.
    pub fn set_link_order(&mut self, slots: Vec<u32>) {
        self.link_order = Some((slots, 0));
    }

    /// Whether vector slot `slot` holds a vector not yet linked into the graph
    /// (`IndexMem::is_pending`; `false` past the capacity). Errors: as opening the index.
    pub fn is_pending(&mut self, slot: u32) -> Result<bool> {
        Ok(self.index()?.0.is_pending(slot))
    }

    /// The HNSW header as it stands (live and deleted counts, entry point).
    pub fn vector_header(&mut self) -> Result<HnswHeader> {
        Ok(self.index()?.0.header())
    }

    /// Searches the index as it stands (as `vectors::Searcher::search`; `ef` up to
    /// [`MAX_EF`]).
    pub fn search(&mut self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        let (mem, store, imp) = self.index()?;
        let mut hits = vec![Hit::default(); k.min(MAX_K)];
        let n = mem.search(&store, &imp, &query_bits(query), k, ef, &mut hits)?;
        hits.truncate(n);
        Ok(hits)
    }

    /// Stages the changed blocks of the vector regions (each operation does when it ends);
    /// returns how many.
    pub fn flush_vectors(&mut self) -> Result<usize> {
        match self.vec.as_ref() {
            Some(st) => st.cache.write_back(self.img.device_mut()),
            None => Ok(0),
        }
    }

    /// The vector index, opened on first use: its memory, a block store over its cache, and
    /// the distance kernel.
    fn index(&mut self) -> Result<(&mut IndexMem, CachedBlocks<'_, Staged<D>>, Impl)> {
        if self.vec.is_none() {
            let sb = self.img.sb();
            let cache = BlockCache::for_vectors(sb);
            let mut mem = index_mem(sb, MAX_EF)?;
            let imp = best_impl();
            mem.open(&CachedBlocks { dev: self.img.device(), cache: &cache }, &imp)?;
            self.vec = Some(VecState { cache, mem, imp, pads: Vec::new() });
        }
        let Writer { img, vec, .. } = self;
        let VecState { cache, mem, imp, .. } =
            vec.as_mut().ok_or_else(|| Error::Invalid("vector index not open".into()))?;
        Ok((mem, CachedBlocks { dev: img.device(), cache }, *imp))
    }

    /// Runs an embedding operation on file `ino` (whose inode is `inode`), then applies what
    /// it did to the file: block writes, the inode, the free block count.
    fn with_file<R>(
        &mut self,
        ino: u32,
        inode: Inode,
        op: impl FnOnce(
            &mut IndexMem,
            &CachedBlocks<'_, Staged<D>>,
            &Impl,
            &mut WriterFile<'_, Staged<D>>,
        ) -> std::result::Result<R, IndexError<Error>>,
    ) -> std::result::Result<R, IndexError<Error>> {
        self.index().map_err(IndexError::Io)?;
        let data = self.img.sb().region(Region::Data);
        let Writer { img, vec, blocks, next_block, quarantine, .. } = self;
        let VecState { cache, mem, imp, .. } =
            vec.as_mut().ok_or_else(|| IndexError::Io(Error::Invalid("vector index not open".into())))?;
        let store = CachedBlocks { dev: img.device(), cache };
        let mut file = WriterFile {
            img,
            bitmap: blocks,
            next_block,
            quarantine,
            data,
            ino,
            inode,
            changed: false,
            writes: Vec::new(),
            taken: 0,
            freed: 0,
        };
        let r = op(mem, &store, imp, &mut file);
        let WriterFile { inode, changed, writes, taken, freed, .. } = file;
        for (n, b) in &writes {
            img.write_block(*n, b).map_err(IndexError::Io)?;
        }
        if changed {
            img.write_inode(ino, &inode).map_err(IndexError::Io)?;
        }
        let sb = img.sb_mut();
        sb.free_blocks = (sb.free_blocks + freed).saturating_sub(taken);
        r
    }

    fn create_inode(
        &mut self,
        parent: u32,
        name: &str,
        mode: u16,
        data: &[u8],
        max_run: u32,
        fanout: usize,
    ) -> Result<u32> {
        // Before the inode is taken: a refused name leaves nothing behind.
        self.check_new_name(parent, name)?;
        let ino = self.alloc_inode()?;
        let mut inode = new_inode(mode, 1, 0);
        inode.size = data.len() as u64;
        let mut extents: Vec<Extent> = Vec::new();
        for (l, chunk) in data.chunks(BLOCK_SIZE).enumerate() {
            if chunk.iter().all(|&b| b == 0) {
                continue;
            }
            let l = u32::try_from(l).map_err(|_| Error::Invalid("file too large".into()))?;
            let grow = extents.last().is_some_and(|e| {
                e.logical_end() == l as u64 && e.len < max_run && self.is_free(e.start + e.len as u64)
            });
            let blk = if grow {
                let e = extents.last_mut().ok_or_else(|| Error::Invalid("no extent".into()))?;
                let b = e.start + e.len as u64;
                self.take_block(b);
                e.len += 1;
                b
            } else {
                let b = self.alloc_block()?;
                extents.push(Extent { logical: l, len: 1, start: b });
                b
            };
            let mut buf = [0u8; BLOCK_SIZE];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.img.forget_checked(blk);
            self.img.device_mut().write_data(blk, &buf).map_err(Error::io(format!("staging block {blk}")))?;
            inode.blocks += 1;
        }
        self.set_extents(ino, &mut inode, extents, fanout)?;
        self.img.write_inode(ino, &inode)?;
        self.add_entry(parent, name, ino, dt_from_mode(mode))?;
        Ok(ino)
    }

    /// Stores `extents` (sorted, not overlapping) as the map of `inode`, new: inline, then in
    /// an extent tree of `fanout` entries a node whose nodes it allocates (counted in
    /// `inode.blocks`).
    fn set_extents(&mut self, ino: u32, inode: &mut Inode, extents: Vec<Extent>, fanout: usize) -> Result<()> {
        let mut fx = FileExtents { fanout, ..self.img.file_extents(ino, inode) };
        let mut t = WriterTree { w: self, blocks: inode.blocks };
        for e in extents {
            fx.append(&mut t, e).map_err(|e| e.into_error(ino))?;
        }
        inode.blocks = t.blocks;
        set_map(inode, &fx);
        Ok(())
    }

    /// Adds the entry `name -> ino` to directory `dir`: an indexed directory's through its
    /// index (`vexfs_core::dir_index::insert`, splitting full buckets); a linear directory's
    /// in the first block with room, else, on a filesystem with `FEATURE_INCOMPAT_DIR_INDEX`,
    /// a directory of one full block is made indexed first (`dir_index::convert`, a new seed
    /// from [`Self::dir_seed`], `INODE_FLAG_INDEX` set), else it grows by a block. Linear
    /// directories of more blocks (made before the feature) stay linear. The caller has
    /// checked the name ([`Self::check_new_name`], before taking anything for the entry).
    fn add_entry(&mut self, dir: u32, name: &str, ino: u32, file_type: u8) -> Result<()> {
        let mut d = self.img.inode(dir)?;
        let raw = name.as_bytes();
        if self.img.is_indexed(dir, &d)? {
            let mut s = HostDir::new(self, dir, d);
            return dir_index::insert(&mut s, raw, ino, file_type).map_err(|e| dir_error(e, dir));
        }
        let fmt = |e| Error::Format { what: format!("directory {dir}"), err: e };
        let blocks = self.img.dir_blocks(dir, &d)?;
        for &(_, blk) in &blocks {
            let mut b = self.img.read_block(blk)?;
            if dir::insert(&mut b[..], raw, ino, file_type).map_err(fmt)? {
                seal_dir_block(&mut b[..], blk, dir as u64);
                return self.img.write_block(blk, &b);
            }
        }
        if let [(_, block0)] = blocks[..] {
            if self.img.sb().feature_incompat & FEATURE_INCOMPAT_DIR_INDEX != 0 {
                let seed = self.dir_seed()?;
                let mut s = HostDir::new(self, dir, d);
                let r = dir_index::convert(&mut s, block0, seed)
                    .and_then(|()| s.set_indexed())
                    .and_then(|()| dir_index::insert(&mut s, raw, ino, file_type));
                return r.map_err(|e| dir_error(e, dir));
            }
        }
        let blk = self.alloc_block()?;
        let mut b = [0u8; BLOCK_SIZE];
        init_dir_block(&mut b, blk, dir as u64);
        dir::insert(&mut b, raw, ino, file_type).map_err(fmt)?;
        seal_dir_block(&mut b, blk, dir as u64);
        self.img.write_block(blk, &b)?;
        let mut fx = self.img.file_extents(dir, &d);
        fx.check_inode().map_err(Error::format(format!("inode {dir}")))?;
        // The on-disk count may be anything (a corrupt image): it saturates.
        let mut t = WriterTree { w: self, blocks: d.blocks.saturating_add(1) };
        fx.add_block(&mut t, d.size / BS, blk).map_err(|e| e.into_error(dir))?;
        d.blocks = t.blocks;
        set_map(&mut d, &fx);
        d.size += BS;
        self.img.write_inode(dir, &d)
    }

    /// The seed of a directory being made indexed: 16 random bytes from the system
    /// (`rand::rngs::OsRng`), or the next of the generator [`Self::set_dir_seeds`] set.
    /// Errors: `Io` when the system has no random bytes to give.
    fn dir_seed(&mut self) -> Result<[u8; 16]> {
        let mut seed = [0u8; 16];
        match self.dir_seeds.as_mut() {
            Some(rng) => rng.fill_bytes(&mut seed),
            None => OsRng.try_fill_bytes(&mut seed).map_err(|e| Error::Io {
                what: "random bytes for a directory index seed".into(),
                source: io::Error::other(e.to_string()),
            })?,
        }
        Ok(seed)
    }

    /// Makes the seeds of the directories this writer makes indexed come from a generator
    /// seeded with `seed` (reproducible images: tests, frozen and fuzz images) rather than from
    /// the system's random bytes (`None`, the default). Names a user picks can be aimed at one
    /// bucket by whoever knows a directory's seed: never use this for a filesystem others write.
    pub fn set_dir_seeds(&mut self, seed: Option<u64>) {
        self.dir_seeds = seed.map(SmallRng::seed_from_u64);
    }

    /// Whether `name` may be added to directory `dir`: `dir` is one, `name` is valid and not
    /// there yet.
    fn check_new_name(&self, dir: u32, name: &str) -> Result<()> {
        let d = self.img.inode(dir)?;
        if !d.is_dir() {
            return Err(Error::NotADirectory(format!("inode {dir}")));
        }
        if !valid_name(name.as_bytes()) {
            return Err(Error::Invalid(format!("invalid name {name:?}")));
        }
        if self.img.find_entry(dir, &d, name.as_bytes())?.is_some() {
            return Err(Error::Invalid(format!("{name:?} exists in directory {dir}")));
        }
        Ok(())
    }

    fn alloc_inode(&mut self) -> Result<u32> {
        let count = self.img.sb().inode_count as usize;
        // The lowest free inode, searched from inode_low (every one below it is taken).
        let i = bit_find_clear(&self.inodes.bits, self.inode_low, count)
            .ok_or_else(|| Error::Invalid("no free inode".into()))?;
        self.inodes.set(i, true);
        self.inode_low = i + 1;
        self.img.sb_mut().free_inodes -= 1;
        Ok(i as u32 + 1)
    }

    fn is_free(&self, b: u64) -> bool {
        self.img.sb().region(Region::Data).contains(b) && !self.blocks.test(b as usize) && !self.quarantine.contains(&b)
    }

    fn take_block(&mut self, b: u64) {
        self.blocks.set(b as usize, true);
        self.img.sb_mut().free_blocks -= 1;
    }

    fn alloc_block(&mut self) -> Result<u64> {
        let data = self.img.sb().region(Region::Data);
        let b = find_free_block(&self.blocks.bits, self.next_block, data, &self.quarantine)
            .ok_or_else(|| Error::Invalid("no free block".into()))?;
        self.take_block(b);
        self.next_block = b + 1;
        Ok(b)
    }
}

/// A bitmap region (blocks or inodes) as the writer keeps it: the bits in memory, the copy
/// of them last staged, and which of its 4 KiB blocks a bit changed in since. Staging an
/// operation compares those blocks only: the whole region is 37 blocks of bytes on a 5 GB
/// image (150 KB), compared twice per operation before, a million times in a bulk import.
struct Bitmap {
    bits: Vec<u8>,
    staged: Vec<u8>,
    /// Indices of the region's blocks (`bit / (8 * BLOCK_SIZE)`) set or cleared since the
    /// last [`Self::stage`], possibly repeated.
    changed: Vec<usize>,
}

impl Bitmap {
    fn new(bits: Vec<u8>) -> Bitmap {
        Bitmap { staged: bits.clone(), bits, changed: Vec::new() }
    }

    fn test(&self, i: usize) -> bool {
        bit_test(&self.bits, i)
    }

    fn set(&mut self, i: usize, v: bool) {
        bit_set(&mut self.bits, i, v);
        self.changed.push(i / (8 * BLOCK_SIZE));
    }

    /// Stages (writes to `img`) the blocks of `region` whose bits differ from the staged copy,
    /// and updates the copy. Errors: `Io`; the blocks not written stay listed for the next
    /// call.
    fn stage<D: BlockDevice<Error = io::Error>>(&mut self, img: &mut Image<D>, region: Region) -> Result<()> {
        self.changed.sort_unstable();
        self.changed.dedup();
        let start = img.sb().region(region).start;
        for &i in &self.changed {
            let span = i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE;
            if let (Some(old), Some(new)) = (self.staged.get_mut(span.clone()), self.bits.get(span)) {
                if old != new {
                    let b: &Block = new.try_into().map_err(|_| Error::Invalid("short bitmap block".into()))?;
                    img.write_block(start + i as u64, b)?;
                    old.copy_from_slice(new);
                }
            }
        }
        self.changed.clear();
        Ok(())
    }
}

/// Next free block of the data region at or after `from` (wrapping to its start) that is not
/// in `quarantine`, or `None`.
fn find_free_block(bitmap: &[u8], from: u64, data: Extent64, quarantine: &BTreeSet<u64>) -> Option<u64> {
    let end = data.end() as usize;
    let from = (from.max(data.start) as usize).min(end);
    let scan = |mut at: usize, stop: usize| {
        while let Some(b) = bit_find_clear(bitmap, at, stop) {
            if !quarantine.contains(&(b as u64)) {
                return Some(b as u64);
            }
            at = b + 1;
        }
        None
    };
    scan(from, end).or_else(|| scan(data.start as usize, end))
}

/// The most block images one transaction may hold in an empty log of `log_blocks` record
/// blocks (at least 1; a log of 63 record blocks holds 60).
fn max_images(log_blocks: u64) -> usize {
    let room = log_blocks.saturating_sub(1);
    let mut n = (room.saturating_sub(1) * BS / vexfs_core::journal::IMAGE_RECORD) as usize;
    while n > 1 && txn_blocks(n as u64) > room {
        n -= 1;
    }
    n.max(1)
}

/// A file of the image being written, as `vexfs_core::embed` changes it. While the operation
/// runs, the index's block cache borrows the device, so block writes and the inode are kept
/// here and applied afterwards ([`Writer::with_file`]); reads see the kept writes.
struct WriterFile<'a, D> {
    img: &'a Image<D>,
    bitmap: &'a mut Bitmap,
    next_block: &'a mut u64,
    /// Blocks freed since the last sync: not reused before it.
    quarantine: &'a mut BTreeSet<u64>,
    data: Extent64,
    ino: u32,
    inode: Inode,
    changed: bool,
    writes: Vec<(u64, Box<Block>)>,
    /// Blocks allocated and freed (for the superblock's free count).
    taken: u64,
    freed: u64,
}

impl<D: BlockDevice<Error = io::Error>> ChunkFiles for WriterFile<'_, D> {
    type Error = Error;
    type Locked<'b>
        = &'b mut Self
    where
        Self: 'b;

    fn lock(&mut self) -> Result<&mut Self> {
        Ok(self)
    }
}

impl<D: BlockDevice<Error = io::Error>> ChunkFile for &mut WriterFile<'_, D> {
    type Error = Error;
    type Ref<'b>
        = Box<[u8]>
    where
        Self: 'b;

    fn ino(&self) -> u64 {
        self.ino as u64
    }

    fn fields(&self) -> ChunkFields {
        self.inode.chunk_fields()
    }

    fn set_fields(&mut self, f: ChunkFields) -> Result<()> {
        self.inode.set_chunk_fields(f);
        self.changed = true;
        Ok(())
    }

    fn read_block(&self, n: u64) -> Result<Box<[u8]>> {
        match self.writes.iter().rev().find(|(b, _)| *b == n) {
            Some((_, b)) => Ok(b.clone()),
            None => Ok(self.img.read_block(n)?),
        }
    }

    fn write_block(&mut self, n: u64, fresh: bool, build: &mut dyn FnMut(&mut [u8])) -> Result<()> {
        let mut b: Box<Block> = Box::new([0u8; BLOCK_SIZE]);
        if !fresh {
            b.copy_from_slice(&self.read_block(n)?);
        }
        build(&mut b[..]);
        self.writes.push((n, b));
        Ok(())
    }

    fn alloc_block(&mut self) -> Result<u64> {
        let b = find_free_block(&self.bitmap.bits, *self.next_block, self.data, self.quarantine)
            .ok_or_else(|| Error::Invalid("no free block".into()))?;
        self.bitmap.set(b as usize, true);
        *self.next_block = b + 1;
        // The on-disk count may be anything (a corrupt image): it saturates, as in free_block.
        self.inode.blocks = self.inode.blocks.saturating_add(1);
        self.taken += 1;
        self.changed = true;
        Ok(b)
    }

    fn free_block(&mut self, n: u64) -> Result<()> {
        if self.data.contains(n) && self.bitmap.test(n as usize) {
            self.bitmap.set(n as usize, false);
            self.quarantine.insert(n);
            self.freed += 1;
        }
        self.inode.blocks = self.inode.blocks.saturating_sub(1);
        self.changed = true;
        Ok(())
    }
}

/// Extent-tree nodes in the image a [`Writer`] writes: node blocks from its allocator (and
/// back to it), counted in `blocks` (the inode's block count).
struct WriterTree<'a, D: BlockDevice<Error = io::Error>> {
    w: &'a mut Writer<D>,
    blocks: u64,
}

impl<D: BlockDevice<Error = io::Error>> TreeStore for WriterTree<'_, D> {
    type Error = TreeErr;
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> std::result::Result<R, TreeErr> {
        Ok(f(&self.w.img.read_block(n)?[..]))
    }
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> std::result::Result<R, TreeErr> {
        Ok(self.w.img.read_sealed(n, f)?)
    }
    fn mark_checked(&mut self, n: u64) {
        self.w.img.mark_checked(n);
    }
    fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> std::result::Result<R, TreeErr> {
        let mut b = self.w.img.read_block(n)?;
        let r = f(&mut b[..]);
        self.w.img.write_block(n, &b)?;
        Ok(r)
    }
    fn init<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> std::result::Result<R, TreeErr> {
        let mut b: Box<Block> = Box::new([0u8; BLOCK_SIZE]);
        let r = f(&mut b[..]);
        self.w.img.write_block(n, &b)?;
        Ok(r)
    }
    fn alloc(&mut self, _goal: u64) -> std::result::Result<u64, TreeErr> {
        let b = self.w.alloc_block()?;
        self.blocks = self.blocks.saturating_add(1);
        Ok(b)
    }
    fn free(&mut self, n: u64) -> std::result::Result<(), TreeErr> {
        self.w.give_block(n);
        self.blocks = self.blocks.saturating_sub(1);
        Ok(())
    }
}

/// The writer as the host of a directory's changes ([`HostDir`]): blocks from its allocator,
/// freed blocks quarantined until the next sync.
impl<D: BlockDevice<Error = io::Error>> DirHost for Writer<D> {
    type Dev = Staged<D>;
    fn img(&self) -> &Image<Staged<D>> {
        &self.img
    }
    fn img_mut(&mut self) -> &mut Image<Staged<D>> {
        &mut self.img
    }
    fn take_block(&mut self) -> Result<u64> {
        self.alloc_block()
    }
    fn give_block(&mut self, n: u64) {
        if self.img.sb().region(Region::Data).contains(n) && self.blocks.test(n as usize) {
            self.blocks.set(n as usize, false);
            self.quarantine.insert(n);
            self.img.sb_mut().free_blocks += 1;
        }
    }
}
