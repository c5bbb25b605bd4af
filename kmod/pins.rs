//! The kernel's side of the vector index's storage and arithmetic: [`PinTable`], the index
//! cache (the blocks of the vector regions held in the buffer cache, within a budget);
//! [`KBlocks`] and [`SharedBlocks`], the [`BlockStore`](crate::io::BlockStore)s over it; and
//! [`FpuKernel`], the [`DistanceKernel`](crate::distance::DistanceKernel) that runs the C float
//! kernels inside `kernel_fpu_begin/end` (fpu.c).

use crate::buf::Buf;
use crate::distance::DistanceKernel;
use crate::ffi;
use crate::format::superblock::{Region, Superblock};
use crate::format::BLOCK_SIZE;
use crate::io::BlockStore;
use crate::txn::Journal;
use crate::vfs::super_block::Device;
use core::cell::{Cell, UnsafeCell};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use kernel::prelude::*;

/// Borrow state of a held block: `0` free, `1..=MAX_READERS` borrowed by that many readers,
/// [`WRITING`] borrowed by one writer, [`EVICTING`] being given back (for a few instructions:
/// a borrower waits for it).
const WRITING: u32 = u32::MAX;
/// See [`WRITING`].
const EVICTING: u32 = u32::MAX - 1;
/// Most readers of one block at once (far more than tasks could be).
const MAX_READERS: u32 = u32::MAX - 2;

/// [`PinTable::trim_overdue`]: past the budget by more than a `1 / TRIM_SLACK_DIV` share of it,
/// or by [`TRIM_SLACK_MIN`] blocks if more.
const TRIM_SLACK_DIV: usize = 32;
/// See [`TRIM_SLACK_DIV`] (64 blocks: 256 KiB).
const TRIM_SLACK_MIN: usize = 64;

/// One block of the table: its buffer while held, and who borrows its bytes.
struct Slot {
    /// The buffer's bytes while held (null when not). Set from null by the borrower that
    /// installs `buf` (a compare-and-swap); set back to null only by an eviction, which owns
    /// the slot ([`EVICTING`]) and so excludes every borrower.
    data: AtomicPtr<u8>,
    /// The buffer whose reference the table holds: written by the borrower whose
    /// compare-and-swap set `data` (no eviction and no writer can run while it borrows), and
    /// taken by an eviction ([`EVICTING`]) or by [`PinTable::release`] (`&mut self`); read by a
    /// writer ([`WRITING`]).
    buf: UnsafeCell<Option<Buf>>,
    /// The borrow state ([`WRITING`]).
    borrows: AtomicU32,
    /// Used since the clock hand last passed (a second chance before eviction).
    referenced: AtomicBool,
}

/// The index cache: the blocks of the vector regions (bitmap, map, data, HNSW, codes), each
/// held in the buffer cache (a `buffer_head` reference) once read, found by an array lookup
/// instead of a buffer-cache search per vector visited. They stay page-cache pages (written
/// back as usual).
///
/// **Memory.** 24 bytes per block of the regions (allocated at mount), plus the pages held.
/// Without a budget the table keeps every block it reads, and the mount's shrinker gives
/// blocks back under memory pressure (their pages then age out of the page cache like any
/// other). With `index_mem=SIZE` at most `SIZE / 4096` blocks are held once no search runs:
/// a change that reads one more, or the trim after searches that did, gives back the least
/// recently used ones (a clock: a block used since the hand last passed gets a second chance,
/// but for the float32 vectors of an index with SQ8 or PQ codes in the split layout, which only
/// the re-rank reads: the codes and links that every step of a walk reads stay first; with node
/// records a vector's block holds links too, and gets its chance), and drops their pages from
/// the page cache when nothing else uses them, so the index's pages stay within the budget. A
/// block a change borrows at that moment is never given back; if every held block is, the
/// table goes over the budget until the borrows end (a change borrows a few dozen blocks at
/// most).
///
/// **Evictions run under the exclusive index lock** (`SbInfo::index`): a change's own reads
/// and writes over the budget ([`KBlocks`]), the shrinker (which only tries the lock, and
/// gives nothing back when a search or a change holds it), a new budget, the release at
/// unmount, and [`PinTable::trim`] once the searches that went over the budget are done
/// ([`crate::vector`]). So the searches, which hold the lock shared, read held blocks with
/// plain loads ([`SharedBlocks`], [`SharedRef`]): nothing can take a block from under them,
/// and they write no shared cache line per block (a counted borrow made every block a search
/// touched bounce between the CPUs of concurrent searches, and was a tenth of a search's time
/// under emulation). A search that reads a block the table lacks installs it (a
/// compare-and-swap: concurrent searches may race for it) but never evicts: the table may go
/// over the budget while searches run, and is trimmed back when they stop.
///
/// **Borrows.** The table hands out the bytes of its blocks itself, and no other code reads the
/// vector regions' blocks (they lie outside the data region that every other structure lives
/// in). Under the exclusive lock, a change counts its borrows per block as a `RefCell` does
/// ([`PinnedRef`], [`PinnedMut`]): many readers or one writer; a conflicting borrow is refused
/// (`EINVAL`, logged: the core never asks for one), and an eviction takes a block only with no
/// borrow, so a block the change reads stays while its reads push others out.
///
/// **Counts** (for `VEXFS_IOC_INDEX_MEM`): blocks found held (hits), blocks that had to be
/// taken from the buffer cache (misses), blocks read from the device (for a miss, or ahead of
/// one: the blocks of a batch of neighbours are asked for at once, `BlockStore::prefetch`); and
/// (for `VEXFS_IOC_INDEX_READS`) those reads per vector region.
pub struct PinTable {
    /// First block of the vector regions (the vector bitmap).
    base: u64,
    slots: KVVec<Slot>,
    /// The blocks given no second chance by the clock: with SQ8 or PQ codes, the float32 vectors
    /// (read only to re-rank a search's last candidates, where the walk reads codes and links),
    /// so that under a budget the codes and links stay and the vectors go first. Empty without
    /// codes, and with node records (the data region's blocks hold the level-0 links too).
    cold: core::ops::Range<u64>,
    /// Blocks held now.
    held: AtomicUsize,
    /// Most blocks held (`index_mem=` / 4096; 0: no cap).
    budget: AtomicUsize,
    /// The clock hand: the next slot an eviction looks at (modulo the slot count).
    hand: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    reads: AtomicU64,
    readaheads: AtomicU64,
    evictions: AtomicU64,
    /// The vector regions in [`REGION_READS`] order: where [`Self::count_read`] counts a read.
    regions: [core::ops::Range<u64>; 5],
    /// `reads` split by region, in [`REGION_READS`] order.
    region_reads: [AtomicU64; 5],
}

/// The vector regions whose block reads [`PinTable::region_reads`] counts one by one, in the
/// order of `struct vexfs_index_reads`.
const REGION_READS: [Region; 5] = [Region::VecBitmap, Region::VecMap, Region::VecData, Region::Hnsw, Region::VecCodes];

/// What [`PinTable::counts`] reports.
pub struct CacheCounts {
    /// Blocks held now.
    pub held: u64,
    /// Most blocks held (0: no cap).
    pub budget: u64,
    /// Borrows of a block already held, since mount.
    pub hits: u64,
    /// Borrows that took the block from the buffer cache, since mount.
    pub misses: u64,
    /// Blocks read from the device (4 KiB each), for a miss or ahead of one, since mount.
    pub reads: u64,
    /// Readaheads started along the graph, since mount.
    pub readaheads: u64,
    /// Blocks given back (budget or shrinker), since mount.
    pub evictions: u64,
}

// SAFETY: a slot's `buf` is written only by the one task whose compare-and-swap of `data`
// succeeded while it borrows the slot or reads it under the shared index lock, and taken only
// under the exclusive index lock (so no search reads the slot) by the task that owns the slot
// for eviction (`EVICTING`, no borrower); a writer (`WRITING`, the only borrower) only reads
// it. `data`, `borrows` and the counters are atomics. The buffers themselves are `Send`.
unsafe impl Sync for PinTable {}

impl PinTable {
    /// An empty table for the vector regions of `disk`, no budget. Errors: `ENOMEM`.
    pub fn new(disk: &Superblock) -> Result<PinTable> {
        let base = disk.vector_regions().start;
        let end = disk.vector_regions().end();
        let n = usize::try_from(end.saturating_sub(base)).map_err(|_| ENOMEM)?;
        let mut slots = KVVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            slots.push(
                Slot {
                    data: AtomicPtr::new(core::ptr::null_mut()),
                    buf: UnsafeCell::new(None),
                    borrows: AtomicU32::new(0),
                    referenced: AtomicBool::new(false),
                },
                GFP_KERNEL,
            )?;
        }
        // With codes, the data region's blocks are the re-rank's vectors, read once per
        // search: evicted first. With node records they hold the graph too: not cold.
        let cold = if disk.has_codes() && !disk.has_node_records() {
            let d = disk.region(Region::VecData);
            d.start..d.end()
        } else {
            0..0
        };
        let regions = REGION_READS.map(|r| {
            let e = disk.region(r);
            e.start..e.end()
        });
        Ok(PinTable {
            base,
            slots,
            cold,
            held: AtomicUsize::new(0),
            budget: AtomicUsize::new(0),
            hand: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            readaheads: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            regions,
            region_reads: [const { AtomicU64::new(0) }; 5],
        })
    }

    /// Counts a read of block `n` from the device: in `reads`, and in its region's count.
    fn count_read(&self, n: u64) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.regions.iter().zip(self.region_reads.iter()).find(|(r, _)| r.contains(&n)) {
            c.1.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Blocks read from the device since mount, per vector region: the vector bitmap, map, data,
    /// HNSW and codes regions (`struct vexfs_index_reads`'s order).
    pub fn region_reads(&self) -> [u64; 5] {
        let mut out = [0u64; 5];
        for (o, c) in out.iter_mut().zip(self.region_reads.iter()) {
            *o = c.load(Ordering::Relaxed);
        }
        out
    }

    /// Sets the budget to `bytes` (rounded down to blocks; 0: no cap), giving back blocks
    /// over it at once. The caller holds the exclusive index lock (the type's docs).
    pub fn set_budget(&self, dev: &Device, bytes: u64) {
        let blocks = usize::try_from(bytes / BLOCK_SIZE as u64).unwrap_or(usize::MAX);
        self.budget.store(blocks, Ordering::Relaxed);
        self.trim(dev);
    }

    /// The budget in bytes (0: no cap).
    pub fn budget_bytes(&self) -> u64 {
        (self.budget.load(Ordering::Relaxed) as u64).saturating_mul(BLOCK_SIZE as u64)
    }

    /// Blocks held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The table's counts.
    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            held: self.held.load(Ordering::Relaxed) as u64,
            budget: self.budget.load(Ordering::Relaxed) as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            readaheads: self.readaheads.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// The slot of block `n`. Errors: `EINVAL` for a block outside the vector regions.
    #[inline]
    fn slot(&self, n: u64) -> Result<&Slot> {
        let i = n.checked_sub(self.base).and_then(|i| usize::try_from(i).ok()).ok_or(EINVAL)?;
        self.slots.get(i).ok_or(EINVAL)
    }

    /// Borrows block `n` (for writing with `write`, else for reading) and returns its slot
    /// and bytes, reading the block on first use; `hits` counts a block found held. Errors:
    /// `EINVAL` for a block outside the vector regions, or a conflicting borrow (logged);
    /// `EIO`.
    fn borrow(&self, dev: &Device, n: u64, write: bool, hits: &Cell<u64>) -> Result<(&Slot, NonNull<u8>)> {
        let slot = self.slot(n)?;
        loop {
            let b = slot.borrows.load(Ordering::Relaxed);
            let next = match b {
                EVICTING => {
                    core::hint::spin_loop();
                    continue;
                }
                0 if write => WRITING,
                b if write || b >= MAX_READERS => {
                    let what = if b == WRITING { "being written" } else { "borrowed" };
                    pr_err!("vexfs ({}): vector block {} borrowed while {}\n", dev.name(), n, what);
                    return Err(EINVAL);
                }
                b => b + 1,
            };
            if slot.borrows.compare_exchange_weak(b, next, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                break;
            }
        }
        match self.install(dev, slot, n, hits, true) {
            Ok(p) => Ok((slot, p)),
            Err(e) => {
                unborrow(&slot.borrows);
                Err(e)
            }
        }
    }

    /// Reads held block `n`, or takes it from the buffer cache now, for a search: the caller
    /// holds the shared index lock while it uses the bytes, so no eviction runs meanwhile
    /// (the type's docs); nothing is given back here, even over the budget
    /// ([`Self::trim`] does it once the searches are done). `hits` counts a block found held.
    /// Errors: `EINVAL` for a block outside the vector regions; `EIO`.
    #[inline]
    fn peek(&self, dev: &Device, n: u64, hits: &Cell<u64>) -> Result<NonNull<u8>> {
        let slot = self.slot(n)?;
        self.install(dev, slot, n, hits, false)
    }

    /// The bytes of block `n`, whose `slot` the caller borrows (or, for a search, reads under
    /// the shared index lock): held already, or taken from the buffer cache now, and then,
    /// with `evict` (under the exclusive lock only), the budget kept. Errors: `EIO`.
    /// Inlined: a search's every step comes here, and a held block is the common case.
    #[inline(always)]
    fn install(&self, dev: &Device, slot: &Slot, n: u64, hits: &Cell<u64>, evict: bool) -> Result<NonNull<u8>> {
        if let Some(p) = NonNull::new(slot.data.load(Ordering::Acquire)) {
            hits.set(hits.get().wrapping_add(1));
            if !slot.referenced.load(Ordering::Relaxed) && !self.cold.contains(&n) {
                slot.referenced.store(true, Ordering::Relaxed);
            }
            return Ok(p);
        }
        self.install_new(dev, slot, n, evict)
    }

    /// [`Self::install`] of a block the table does not hold: taken from the buffer cache (read
    /// if need be) and put in `slot`, unless a concurrent search put it there first.
    #[cold]
    #[inline(never)]
    fn install_new(&self, dev: &Device, slot: &Slot, n: u64, evict: bool) -> Result<NonNull<u8>> {
        let (buf, read) = Buf::read_counted(dev, n)?;
        self.misses.fetch_add(1, Ordering::Relaxed);
        if read {
            self.count_read(n);
        }
        let p = buf.data_ptr();
        match slot.data.compare_exchange(core::ptr::null_mut(), p.as_ptr(), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: our compare-and-swap made us the one writer of `buf`, and our borrow
                // keeps evictions and writers out (type's Sync reasoning).
                unsafe { *slot.buf.get() = Some(buf) };
                slot.referenced.store(!self.cold.contains(&n), Ordering::Relaxed);
                let held = self.held.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                let budget = self.budget.load(Ordering::Relaxed);
                if evict && budget > 0 && held > budget {
                    self.evict(Some(dev), held - budget);
                }
                Ok(p)
            }
            // Another borrower installed it first: its buffer stays, ours is released.
            Err(theirs) => NonNull::new(theirs).ok_or(EINVAL),
        }
    }

    /// A change's borrows ended (under the exclusive index lock): its `hits` are counted, and
    /// blocks over the budget (held past it while they were borrowed) are given back.
    fn done(&self, dev: &Device, hits: u64) {
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.trim(dev);
    }

    /// Blocks held past the budget (0 without one).
    pub fn over_budget(&self) -> usize {
        let budget = self.budget.load(Ordering::Relaxed);
        if budget == 0 {
            return 0;
        }
        self.held.load(Ordering::Relaxed).saturating_sub(budget)
    }

    /// Whether the table is so far past its budget ([`TRIM_SLACK_DIV`]) that a search that
    /// ends should wait for the exclusive index lock to [`Self::trim`] it, rather than leave it
    /// to the next one that finds the lock free.
    pub fn trim_overdue(&self) -> bool {
        let budget = self.budget.load(Ordering::Relaxed);
        let slack = (budget / TRIM_SLACK_DIV).max(TRIM_SLACK_MIN);
        self.over_budget() > slack
    }

    /// Gives back the blocks held past the budget (nothing without one), so that once no
    /// search runs the table holds at most its budget. The caller holds the exclusive index
    /// lock (the type's docs).
    pub fn trim(&self, dev: &Device) {
        let over = self.over_budget();
        if over > 0 {
            self.evict(Some(dev), over);
        }
    }

    /// Asks the CPU to bring byte `off` of block `n` (its cache line) into its caches when the
    /// table holds the block; nothing otherwise, nor for a block outside the vector regions.
    /// The block may be given back meanwhile: a prefetch is a hint that never faults.
    #[inline]
    fn prefetch_line(&self, n: u64, off: usize) {
        if let Ok(slot) = self.slot(n) {
            let p = slot.data.load(Ordering::Relaxed);
            if !p.is_null() && off < BLOCK_SIZE {
                cpu_prefetch(p.wrapping_add(off));
            }
        }
    }

    /// Starts reading block `n` ahead if the table does not hold it (not waited for; nothing
    /// for a block outside the vector regions).
    #[inline]
    fn readahead(&self, dev: &Device, n: u64) {
        if let Ok(slot) = self.slot(n) {
            if slot.data.load(Ordering::Relaxed).is_null() {
                self.readahead_new(dev, n);
            }
        }
    }

    /// [`Self::readahead`] of a block the table does not hold.
    #[cold]
    #[inline(never)]
    fn readahead_new(&self, dev: &Device, n: u64) {
        if Buf::readahead(dev, n) {
            self.readaheads.fetch_add(1, Ordering::Relaxed);
            self.count_read(n);
        }
    }

    /// Gives back up to `want` blocks that nobody borrows, least recently used first (the
    /// clock); with `dev` (an index_mem= budget), their pages are dropped from the page cache
    /// too when nothing else holds them. Looks at most at twice the slots. Returns the number
    /// given back. Takes no lock and never sleeps but for dropping pages: callable from the
    /// shrinker.
    fn evict(&self, dev: Option<&Device>, want: usize) -> usize {
        let n = self.slots.len();
        let mut freed = 0;
        let mut looked = 0usize;
        while freed < want && looked < n.saturating_mul(2) {
            looked += 1;
            let Some(i) = self.hand.fetch_add(1, Ordering::Relaxed).checked_rem(n) else {
                break;
            };
            let Some(s) = self.slots.get(i) else { break };
            if s.data.load(Ordering::Relaxed).is_null() {
                continue;
            }
            if s.referenced.load(Ordering::Relaxed) {
                s.referenced.store(false, Ordering::Relaxed);
                continue;
            }
            let Some(b) = self.take(s) else { continue };
            freed += 1;
            let block = b.block();
            drop(b);
            if let Some(dev) = dev {
                Buf::drop_cached(dev, block);
            }
        }
        self.evictions.fetch_add(freed as u64, Ordering::Relaxed);
        freed
    }

    /// Takes the buffer of slot `s` out of the table, for the caller to release: `None` when
    /// the slot is borrowed (or another eviction has it) or holds nothing.
    fn take(&self, s: &Slot) -> Option<Buf> {
        s.borrows.compare_exchange(0, EVICTING, Ordering::Acquire, Ordering::Relaxed).ok()?;
        let p = s.data.swap(core::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: `EVICTING` makes this task the slot's only user (type's Sync reasoning).
        let buf = unsafe { (*s.buf.get()).take() };
        s.borrows.store(0, Ordering::Release);
        if !p.is_null() {
            self.held.fetch_sub(1, Ordering::Relaxed);
        }
        buf
    }

    /// The shrinker's scan: gives back up to `nr` blocks (their pages stay in the page cache,
    /// reclaimable). Returns the number given back. The caller holds the exclusive index lock
    /// (the type's docs).
    pub fn shrink(&self, nr: usize) -> usize {
        self.evict(None, nr)
    }

    /// Releases every held buffer (at unmount, after the last change and with the shrinker
    /// stopped, under the exclusive index lock: none is borrowed then). Returns the number
    /// released.
    pub fn release(&self) -> usize {
        let mut freed = 0;
        for s in self.slots.iter() {
            if s.data.load(Ordering::Relaxed).is_null() {
                continue;
            }
            if let Some(b) = self.take(s) {
                freed += 1;
                drop(b);
            }
        }
        freed
    }
}

/// Ends one read borrow of a slot.
fn unborrow(borrows: &AtomicU32) {
    borrows.fetch_sub(1, Ordering::Release);
}

/// A held block borrowed for reading.
///
/// # Invariants
/// `data` points at the [`BLOCK_SIZE`] bytes of a buffer the table holds while this value
/// lives; this value counts as one reader in `borrows`, so no [`PinnedMut`] of the block
/// exists and no eviction takes it.
pub struct PinnedRef<'a> {
    data: NonNull<u8>,
    borrows: &'a AtomicU32,
}

impl core::ops::Deref for PinnedRef<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: by the type invariant the bytes stay valid while we live and nobody writes
        // them (no writer while a reader is counted; no other code touches these blocks).
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), BLOCK_SIZE) }
    }
}

impl Drop for PinnedRef<'_> {
    fn drop(&mut self) {
        unborrow(self.borrows);
    }
}

/// A held block borrowed for changing (already in the running transaction: the commit
/// writes it back).
///
/// # Invariants
/// As [`PinnedRef`], but `borrows` is [`WRITING`]: this value is the only view of the bytes.
pub struct PinnedMut<'a> {
    data: NonNull<u8>,
    borrows: &'a AtomicU32,
}

impl core::ops::Deref for PinnedMut<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: by the type invariant the bytes stay valid while we live and are ours alone.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), BLOCK_SIZE) }
    }
}

impl core::ops::DerefMut for PinnedMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow derived from us.
        unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr(), BLOCK_SIZE) }
    }
}

impl Drop for PinnedMut<'_> {
    fn drop(&mut self) {
        self.borrows.store(0, Ordering::Release);
    }
}

/// The [`BlockStore`] of the vector index's changes: the index cache of one mount under the
/// exclusive index lock (or before the mount is shared), changes journaled.
pub struct KBlocks<'p> {
    /// The mount's device, for reads and log lines.
    dev: &'p Device,
    /// Its index cache.
    pins: &'p PinTable,
    /// The journal changes go through; `None` while mounting (reads only: writes are
    /// refused with `EROFS`).
    journal: Option<&'p Journal>,
    /// Blocks found held, added to the table's count when done.
    hits: Cell<u64>,
}

impl<'p> KBlocks<'p> {
    /// The blocks of `pins`, under the exclusive index lock the caller holds for `'p`;
    /// changes go through `journal` (`None`: writes are refused with `EROFS`).
    pub fn new(dev: &'p Device, pins: &'p PinTable, journal: Option<&'p Journal>) -> KBlocks<'p> {
        KBlocks { dev, pins, journal, hits: Cell::new(0) }
    }
}

impl Drop for KBlocks<'_> {
    fn drop(&mut self) {
        self.pins.done(self.dev, self.hits.get());
    }
}

impl BlockStore for KBlocks<'_> {
    type Error = Error;
    type Ref<'a>
        = PinnedRef<'a>
    where
        Self: 'a;
    type RefMut<'a>
        = PinnedMut<'a>
    where
        Self: 'a;

    fn read(&self, n: u64) -> Result<PinnedRef<'_>> {
        let (slot, data) = self.pins.borrow(self.dev, n, false, &self.hits)?;
        // INVARIANT: `borrow` counted us as a reader of the held block.
        Ok(PinnedRef { data, borrows: &slot.borrows })
    }

    fn write(&self, n: u64) -> Result<PinnedMut<'_>> {
        let journal = self.journal.ok_or(EROFS)?;
        let (slot, data) = self.pins.borrow(self.dev, n, true, &self.hits)?;
        // INVARIANT: `borrow` made us the slot's one borrower (`WRITING`); dropped on error.
        let m = PinnedMut { data, borrows: &slot.borrows };
        // SAFETY: `WRITING` keeps evictions and other borrowers out: the slot's buffer, which
        // `borrow` installed, stays as it is while we read it.
        let buf = unsafe { &*slot.buf.get() };
        journal.dirty(buf.as_ref().ok_or(EINVAL)?)?;
        Ok(m)
    }

    fn prefetch(&self, n: u64) {
        self.pins.readahead(self.dev, n);
    }

    fn prefetch_line(&self, n: u64, off: usize) {
        self.pins.prefetch_line(n, off);
    }

    fn prefetch_memory(&self, p: *const u8) {
        cpu_prefetch(p);
    }

    /// Reschedules; `EINTR` on a fatal signal (the exact scan of pending vectors stops).
    fn relax(&self) -> Result {
        // SAFETY: a reschedule point and a signal test of the current task.
        kernel::error::to_result(unsafe { ffi::vexfs_c_relax() })
    }
}

/// The [`BlockStore`] of the searches: the index cache of one mount under the shared index
/// lock, which the caller holds for `'p`: no change to the vector regions and no eviction
/// runs meanwhile (both need the exclusive lock: [`KBlocks`], [`PinTable`]), so a block is read
/// with plain loads ([`SharedRef`]). Writes are refused (`EROFS`). Blocks taken over the
/// budget stay until [`PinTable::trim`].
pub struct SharedBlocks<'p> {
    dev: &'p Device,
    pins: &'p PinTable,
    /// Blocks found held, added to the table's count when done.
    hits: Cell<u64>,
}

impl<'p> SharedBlocks<'p> {
    /// The blocks of `pins`, under the shared index lock `_held` (the proof that the caller
    /// holds it for `'p`).
    pub fn new(
        dev: &'p Device,
        pins: &'p PinTable,
        _held: &'p crate::vfs::rwsem::ReadGuard<'_, crate::index::IndexState>,
    ) -> SharedBlocks<'p> {
        SharedBlocks { dev, pins, hits: Cell::new(0) }
    }
}

impl Drop for SharedBlocks<'_> {
    fn drop(&mut self) {
        self.pins.hits.fetch_add(self.hits.get(), Ordering::Relaxed);
    }
}

/// A held block read by a search under the shared index lock.
///
/// # Invariants
/// `data` points at the [`BLOCK_SIZE`] bytes of a buffer the table holds; the shared index
/// lock is held for `'a`, so no eviction takes the buffer and no change writes it meanwhile
/// ([`PinTable`]).
pub struct SharedRef<'a> {
    data: NonNull<u8>,
    _lock: core::marker::PhantomData<&'a PinTable>,
}

impl core::ops::Deref for SharedRef<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: by the type invariant the bytes stay valid and unchanged while we live.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), BLOCK_SIZE) }
    }
}

impl BlockStore for SharedBlocks<'_> {
    type Error = Error;
    type Ref<'a>
        = SharedRef<'a>
    where
        Self: 'a;
    type RefMut<'a>
        = &'a mut [u8]
    where
        Self: 'a;

    #[inline]
    fn read(&self, n: u64) -> Result<SharedRef<'_>> {
        let data = self.pins.peek(self.dev, n, &self.hits)?;
        // INVARIANT: `peek` gave a held block's bytes; `new` proved the shared index lock held
        // for as long as `self` lives, which outlives the reference.
        Ok(SharedRef { data, _lock: core::marker::PhantomData })
    }

    fn write(&self, _n: u64) -> Result<&mut [u8]> {
        Err(EROFS)
    }

    #[inline]
    fn prefetch(&self, n: u64) {
        self.pins.readahead(self.dev, n);
    }

    #[inline]
    fn prefetch_line(&self, n: u64, off: usize) {
        self.pins.prefetch_line(n, off);
    }

    fn prefetch_memory(&self, p: *const u8) {
        cpu_prefetch(p);
    }

    /// Reschedules; `EINTR` on a fatal signal.
    fn relax(&self) -> Result {
        // SAFETY: a reschedule point and a signal test of the current task.
        kernel::error::to_result(unsafe { ffi::vexfs_c_relax() })
    }
}

/// `prefetcht0` of the cache line at `p` (the `BlockStore` hints of the searches: link records
/// and vectors of the next batch, so that their cache misses overlap). Any address will do.
#[inline(always)]
fn cpu_prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` only hints the caches: it has no architectural effect, reads no
    // register but `p`, and does not fault whatever the address (mapped or not).
    unsafe {
        core::arch::asm!("prefetcht0 [{0}]", in(reg) p, options(nostack, preserves_flags, readonly))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The C float32 distance kernels (core/csrc), run by fpu.c inside `kernel_fpu_begin/end`.
#[derive(Clone, Copy)]
pub struct FpuKernel {
    imp: u32,
}

impl FpuKernel {
    /// The fastest implementation this CPU runs (`VEXFS_DIST_*`, picked by fpu.c).
    pub fn detect() -> FpuKernel {
        // SAFETY: a plain query of CPU features.
        FpuKernel { imp: unsafe { ffi::vexfs_c_dist_impl() } }
    }

    /// Which implementation it is (`VEXFS_DIST_*` of include/vexfs.h).
    pub fn imp(&self) -> u32 {
        self.imp
    }
}

impl DistanceKernel for FpuKernel {
    unsafe fn distances(&self, metric: u32, dim: u32, q: *const u32, vecs: &[*const u32], out: &mut [u32]) {
        let n = u32::try_from(vecs.len().min(out.len())).unwrap_or(u32::MAX);
        // SAFETY: `q` and every `vecs[i]` point at `dim` readable u32s held for the call (the
        // trait's contract); `out` has room for `n`; fpu.c brackets the C kernels with
        // kernel_fpu_begin/end and neither sleeps nor faults inside.
        unsafe {
            ffi::vexfs_c_distances(
                self.imp,
                metric,
                q,
                vecs.as_ptr(),
                core::ptr::null(),
                core::ptr::null(),
                n,
                dim,
                out.as_mut_ptr(),
            )
        };
    }

    unsafe fn distances_split(
        &self,
        metric: u32,
        dim: u32,
        q: *const u32,
        vecs: &[*const u32],
        tails: &[*const u32],
        splits: &[u32],
        out: &mut [u32],
    ) {
        let n = vecs.len().min(tails.len()).min(splits.len()).min(out.len());
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        // SAFETY: `q` points at `dim` readable u32s and every `vecs[i]` at `dim` of them, or at
        // `splits[i]` with `tails[i]` at the rest, held for the call (the trait's contract);
        // `tails`, `splits` and `out` have room for `n`; fpu.c brackets the C kernels with
        // kernel_fpu_begin/end and neither sleeps nor faults inside (a split the loads could
        // straddle gives NaN bits unread).
        unsafe {
            ffi::vexfs_c_distances(
                self.imp,
                metric,
                q,
                vecs.as_ptr(),
                tails.as_ptr(),
                splits.as_ptr(),
                n,
                dim,
                out.as_mut_ptr(),
            )
        };
    }

    unsafe fn code_distances(&self, metric: u32, len: u32, q: *const u8, vecs: &[*const u8], out: &mut [u32]) {
        let n = u32::try_from(vecs.len().min(out.len())).unwrap_or(u32::MAX);
        // SAFETY: `q` and every `vecs[i]` point at `len` readable bytes held for the call (the
        // trait's contract); `out` has room for `n`; fpu.c brackets the C kernels with
        // kernel_fpu_begin/end and neither sleeps nor faults inside.
        unsafe { ffi::vexfs_c_code_distances(self.imp, metric, q, vecs.as_ptr(), n, len, out.as_mut_ptr()) };
    }

    unsafe fn pq_table(
        &self,
        metric: u32,
        dsub: u32,
        q: *const u32,
        cents: *const u32,
        prim: &mut [u32],
        norm: &mut [u32],
    ) -> u32 {
        let n = u32::try_from(prim.len().min(norm.len())).unwrap_or(u32::MAX);
        // SAFETY: `q` points at `dsub` and `cents` at `n * dsub` readable u32s held for the call
        // (the trait's contract); `prim` and `norm` have room for `n`; fpu.c brackets the C
        // code with kernel_fpu_begin/end and neither sleeps nor faults inside.
        unsafe { ffi::vexfs_c_pq_table(metric, q, cents, n, dsub, prim.as_mut_ptr(), norm.as_mut_ptr()) }
    }

    unsafe fn pq_distances(&self, metric: u32, m: u32, table: *const u32, codes: &[*const u8], out: &mut [u32]) {
        let n = u32::try_from(codes.len().min(out.len())).unwrap_or(u32::MAX);
        // SAFETY: `table` holds `2 * m * 256 + m` words and every `codes[i]` `m` bytes, held
        // for the call (the trait's contract); `out` has room for `n`; fpu.c brackets the C
        // code with kernel_fpu_begin/end and neither sleeps nor faults inside.
        unsafe { ffi::vexfs_c_pq_distances(metric, table, m, codes.as_ptr(), n, out.as_mut_ptr()) };
    }
}
