//! The vector index of an image, through the same `vexfs_core::embed` and `vexfs_core::vindex`
//! code the kernel runs: this module only supplies the userspace adapters.
//!
//! - [`MapDevice`]: an image or block device mapped read-only. It is a [`BlockDevice`] (so an
//!   [`Image`] opens on it) and a [`BlockStore`] whose `read` is a slice of the mapping: this
//!   is what searches use.
//! - [`BlockCache`] and [`CachedBlocks`]: a write-back cache of the vector regions over any
//!   [`BlockDevice`], for the offline writer.
//! - [`IndexMem`]: the per-index memory of `vexfs_core::embed` over `Vec`s ([`StdAlloc`]).
//! - [`ImageFile`]: a file of an image as the embedding layer reads it (read only).
//! - [`Searcher`]: k-NN searches of an image whose results name files.
//!
//! Distances come from `vexfs_core::distance` with [`best_impl`] unless told otherwise: the C
//! kernels the module runs, so a search here returns the kernel's bits on the same CPU.

use std::cell::{Cell, OnceCell, Ref, RefCell, RefMut};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::Path;

use memmap2::{Mmap, MmapMut, MmapOptions};
use vexfs_core::distance::{best_impl, Impl};
use vexfs_core::embed::{self, read_chunk_list, Alloc, ChunkFields, ChunkFile, Rank};
use vexfs_core::format::dir::DT_DIR;
use vexfs_core::format::inode::Inode;
use vexfs_core::format::superblock::{Region, Superblock, ROOT_INO};
use vexfs_core::format::vector::HnswHeader;
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::index_error::IndexError;
use vexfs_core::io::{Block, BlockDevice, BlockStore};

use crate::{Error, Image, Result};

pub use vexfs_core::embed::{check_search, Hit, DEFAULT_EF, MAX_EF, MAX_K};

const BS: u64 = BLOCK_SIZE as u64;

/// `Vec`-backed memory for `vexfs_core::embed` (allocation failure aborts, as `Vec` does).
#[derive(Debug, Clone, Copy)]
pub struct StdAlloc;

impl Alloc for StdAlloc {
    type Vec<T: Copy> = Vec<T>;
    type Error = Infallible;
    fn filled<T: Copy>(n: usize, value: T) -> std::result::Result<Vec<T>, Infallible> {
        Ok(vec![value; n])
    }
}

/// The per-index memory of an image's index (see `vexfs_core::embed::IndexMem`).
pub type IndexMem = embed::IndexMem<StdAlloc>;

/// The memory of one search that runs beside others over the same [`Searcher`] (see
/// `vexfs_core::embed::SearchPad`): one per thread.
pub type SearchPad = embed::SearchPad<StdAlloc>;

/// Memory for the index of `sb` (a validated superblock), for searches with ef up to `max_ef`.
/// Errors: `Format` if the vector capacity cannot be addressed.
pub fn index_mem(sb: &Superblock, max_ef: usize) -> Result<IndexMem> {
    IndexMem::new(sb, max_ef).map_err(|e| match e {
        IndexError::Io(never) => match never {},
        IndexError::Corrupt(err) => Error::Format { what: "vector index memory".into(), err },
        other => Error::Invalid(format!("vector index memory: {other}")),
    })
}

/// An index error as an image error: the store's own passed through, corruption as `Format`
/// (about "vector index"), everything else `Invalid` with the core's message.
impl From<IndexError<Error>> for Error {
    fn from(e: IndexError<Error>) -> Error {
        match e {
            IndexError::Io(e) => e,
            IndexError::Corrupt(err) => Error::Format { what: "vector index".into(), err },
            other => Error::Invalid(other.to_string()),
        }
    }
}

// ---- a read-only memory map ------------------------------------------------------------------

/// An image file or block device mapped read-only: a [`BlockDevice`] for [`Image`] and a
/// [`Blocks`] for [`VecIndex`] (`read` hands out a slice of the mapping; `write` fails).
pub struct MapDevice {
    map: Mmap,
    blocks: u64,
    imp: Impl,
    /// A copy of a run of blocks in anonymous memory ([`Self::load_resident`]), read in
    /// place of `map`'s.
    resident: Option<Resident>,
}

/// Blocks `first .. first + blocks` of a [`MapDevice`] copied into one anonymous mapping.
struct Resident {
    first: u64,
    blocks: u64,
    map: Mmap,
}

impl std::fmt::Debug for MapDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapDevice").field("blocks", &self.blocks).field("imp", &self.imp).finish()
    }
}

impl MapDevice {
    /// Maps `path` read-only. Its size is found by seeking to the end, so block devices work.
    /// Errors: those of open(2), lseek(2) and mmap(2); an empty device.
    pub fn open(path: impl AsRef<Path>) -> io::Result<MapDevice> {
        MapDevice::from_file(&File::open(path)?)
    }

    /// Maps an open file read-only (the mapping outlives the descriptor).
    pub fn from_file(file: &File) -> io::Result<MapDevice> {
        let mut f = file;
        let bytes = f.seek(SeekFrom::End(0))?;
        let blocks = bytes / BS;
        if blocks == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the device holds no whole block"));
        }
        let len = usize::try_from(blocks * BS)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "device too large to map"))?;
        // SAFETY: the mapping is read-only and private to this process. Its bytes may still
        // change if another process writes the file meanwhile (a mounted filesystem, a second
        // writer); every reader of these bytes decodes them with checks and never trusts them,
        // so torn or changing content gives wrong answers or errors, not unsoundness in this
        // code beyond what reading a shared file always implies. Callers are told to use
        // unmounted images.
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        Ok(MapDevice { map, blocks, imp: best_impl(), resident: None })
    }

    /// A mapping holding a copy of `bytes` (whole blocks), for tests and in-memory images.
    pub fn from_bytes(bytes: &[u8]) -> io::Result<MapDevice> {
        let blocks = bytes.len() as u64 / BS;
        if blocks == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the device holds no whole block"));
        }
        let len = (blocks * BS) as usize;
        let mut m = MmapOptions::new().len(len).map_anon()?;
        m.copy_from_slice(&bytes[..len]);
        Ok(MapDevice { map: m.make_read_only()?, blocks, imp: best_impl(), resident: None })
    }

    /// The distance implementation searches use.
    pub fn distance_impl(&self) -> Impl {
        self.imp
    }

    /// Uses `imp` for distances (to match a kernel running on another CPU). Errors: `imp` is
    /// not available on this CPU.
    pub fn set_distance_impl(&mut self, imp: Impl) -> Result<()> {
        if !imp.is_available() {
            return Err(Error::Invalid(format!("this CPU cannot run the {} distance kernels", imp.name())));
        }
        self.imp = imp;
        Ok(())
    }

    /// Copies blocks `run` (clipped to the device) into anonymous memory that the kernel is
    /// asked to back with transparent huge pages (`madvise(MADV_HUGEPAGE)`), and reads them
    /// from there from now on. For a searcher that will read most of the vector regions many
    /// times: the module reads its index blocks through the kernel's direct map, which x86-64
    /// maps with 2 MiB and 1 GiB pages, where a 4 KiB file mapping takes a TLB miss at nearly
    /// every vector of a search; this makes the host's model of a search miss the TLB as
    /// rarely as the module does (measured on a pydocs-minilm float32 image, ef 28, 10
    /// interleaved rounds: median 15,172 -> 16,276 QPS). Costs the run's bytes in RAM and one
    /// read of them. A hint: where THP is off the copy still holds, on 4 KiB pages.
    /// Errors: those of mmap(2) (an empty run maps nothing and succeeds).
    pub fn load_resident(&mut self, run: std::ops::Range<u64>) -> io::Result<()> {
        let first = run.start.min(self.blocks);
        let blocks = run.end.min(self.blocks).saturating_sub(first);
        self.resident = None;
        if blocks == 0 {
            return Ok(());
        }
        let len = usize::try_from(blocks * BS)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "run too large to load"))?;
        let start = (first * BS) as usize;
        let src = self.map.get(start..start + len).ok_or_else(|| io::Error::other("run past the mapping"))?;
        let mut m = MmapOptions::new().len(len).map_anon()?;
        #[cfg(target_os = "linux")]
        let _ = m.advise(memmap2::Advice::HugePage);
        m.copy_from_slice(src);
        self.resident = Some(Resident { first, blocks, map: m.make_read_only()? });
        Ok(())
    }

    fn block(&self, n: u64) -> Option<&[u8]> {
        if let Some(r) = &self.resident {
            if let Some(i) = n.checked_sub(r.first).filter(|&i| i < r.blocks) {
                let start = (i * BS) as usize;
                return r.map.get(start..start + BLOCK_SIZE);
            }
        }
        if n >= self.blocks {
            return None;
        }
        let start = (n * BS) as usize;
        self.map.get(start..start + BLOCK_SIZE)
    }
}

impl BlockDevice for MapDevice {
    type Error = io::Error;

    fn block_count(&self) -> u64 {
        self.blocks
    }

    fn read_block(&self, n: u64, buf: &mut Block) -> io::Result<()> {
        let b = self.block(n).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("block {n} is past the device end ({} blocks)", self.blocks),
            )
        })?;
        buf.copy_from_slice(b);
        Ok(())
    }

    fn write_block(&mut self, n: u64, _buf: &Block) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("block {n}: the device is mapped read-only")))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlockStore for MapDevice {
    type Error = Error;
    type Ref<'a>
        = &'a [u8]
    where
        Self: 'a;
    type RefMut<'a>
        = &'a mut [u8]
    where
        Self: 'a;

    fn read(&self, n: u64) -> Result<&[u8]> {
        self.block(n).ok_or_else(|| Error::Invalid(format!("vector index: block {n} is past the device end")))
    }

    fn write(&self, n: u64) -> Result<&mut [u8]> {
        Err(Error::Invalid(format!("vector index: block {n}: the image is open read-only")))
    }

    /// The cache line at `off` of block `n`, asked for as the kernel's stores ask for a held
    /// block's (the record of the node a search expands next, a batch's first vector lines):
    /// the host model of a search then overlaps the same misses the module's does.
    fn prefetch_line(&self, n: u64, off: usize) {
        if let Some(line) = self.block(n).and_then(|b| b.get(off..)) {
            prefetch(line.as_ptr());
        }
    }

    fn prefetch_memory(&self, p: *const u8) {
        prefetch(p);
    }
}

/// A read-only [`BlockStore`] over a [`MapDevice`] that notes the number of every block read
/// ([`Searcher::search_traced`]).
struct TracedBlocks<'d> {
    dev: &'d MapDevice,
    reads: RefCell<Vec<u64>>,
}

impl BlockStore for TracedBlocks<'_> {
    type Error = Error;
    type Ref<'a>
        = &'a [u8]
    where
        Self: 'a;
    type RefMut<'a>
        = &'a mut [u8]
    where
        Self: 'a;

    fn read(&self, n: u64) -> Result<&[u8]> {
        self.reads.borrow_mut().push(n);
        self.dev.read(n)
    }

    fn write(&self, n: u64) -> Result<&mut [u8]> {
        self.dev.write(n)
    }
}

// ---- a write-back cache ------------------------------------------------------------------------

/// One cached block, page aligned so the vectors in it are aligned for the distance kernels.
#[repr(C, align(4096))]
struct Page([u8; BLOCK_SIZE]);

/// Where a cached block lives: its page of the cache's arena, or (when the arena could not be
/// mapped) a page of its own on the heap.
enum Slot {
    /// Page `i` of the cache's arena, owned by this slot alone (its cell's `RefCell`
    /// decides who borrows it), valid as long as the cache.
    Arena(std::ptr::NonNull<Page>),
    Heap(Box<Page>),
}

// SAFETY: a slot owns its page exclusively, as a `Box` does; the arena it points into moves
// with the cache that holds both.
unsafe impl Send for Slot {}

impl std::ops::Deref for Slot {
    type Target = Page;
    fn deref(&self) -> &Page {
        match self {
            // SAFETY: the page is inside the live arena and only this slot reaches it; shared
            // access through `&self`.
            Slot::Arena(p) => unsafe { p.as_ref() },
            Slot::Heap(b) => b,
        }
    }
}

impl std::ops::DerefMut for Slot {
    fn deref_mut(&mut self) -> &mut Page {
        match self {
            // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
            Slot::Arena(p) => unsafe { p.as_mut() },
            Slot::Heap(b) => b,
        }
    }
}

/// A write-back cache of a run of blocks (the vector regions), loaded on first use. Blocks stay
/// put once loaded, so any number of them can be borrowed at once; a block is either read by
/// many or written by one at a time.
pub struct BlockCache {
    first: u64,
    cells: Box<[OnceCell<RefCell<Slot>>]>,
    /// One anonymous mapping for every block of the cache (address space only until a block
    /// is loaded), which [`Self::use_huge_pages`] may back with transparent huge pages. `None`
    /// if it could not be mapped (then each block gets a heap page). Declared after `cells`, so
    /// dropped after the slots into it; the slots reach it through `base`, and only
    /// [`Self::frozen`] reads it directly (shared, while nothing can write).
    _arena: Option<MmapMut>,
    /// The arena's first byte, taken once from the mapping owned mutably (`as_mut_ptr`): every
    /// slot's page is derived from it.
    base: Option<std::ptr::NonNull<u8>>,
    dirty: Box<[Cell<bool>]>,
    /// The blocks (indices of `cells`) whose `dirty` was set since the last write-back, each
    /// once: what [`Self::write_back`] walks, so that a sync costs the blocks changed, not the
    /// whole region.
    dirty_list: RefCell<Vec<usize>>,
    /// Whether [`Self::load_all`] has loaded every block (blocks stay loaded).
    all_loaded: Cell<bool>,
}

impl BlockCache {
    /// A cache of blocks `first .. first + count`. Address space for all of them is mapped at
    /// once (memory is taken as blocks are loaded).
    pub fn new(first: u64, count: u64) -> BlockCache {
        let mut arena = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(BLOCK_SIZE))
            .filter(|&len| len > 0)
            .and_then(|len| MmapMut::map_anon(len).ok());
        let base = arena.as_mut().and_then(|a| std::ptr::NonNull::new(a.as_mut_ptr()));
        BlockCache {
            first,
            cells: (0..count).map(|_| OnceCell::new()).collect(),
            _arena: arena,
            base,
            dirty: (0..count).map(|_| Cell::new(false)).collect(),
            dirty_list: RefCell::new(Vec::new()),
            all_loaded: Cell::new(false),
        }
    }

    /// Asks the kernel to back the blocks loaded from now on with transparent huge pages
    /// (`madvise(MADV_HUGEPAGE)` on the arena), for a cache that will hold most of its blocks:
    /// the bulk loader's, whose HNSW inserts read vectors and link lists at random over the
    /// whole regions, so that each read misses the TLB far less than with 4 KiB pages (measured
    /// on `mkfs.vexfs --import` of pydocs-100k, one thread: links 51.6-58 s against 61-78 s,
    /// the same image). Not by default: a cache that loads a few blocks would take 2 MiB for
    /// each. A hint: nothing changes where THP is off, or off Linux.
    pub fn use_huge_pages(&self) {
        #[cfg(target_os = "linux")]
        if let Some(a) = &self._arena {
            let _ = a.advise(memmap2::Advice::HugePage);
        }
    }

    /// A cache of the vector regions of `sb` (`Superblock::vector_regions`: vector bitmap to
    /// the HNSW region's end, or the codes' with SQ8: the only blocks [`VecIndex`] touches).
    pub fn for_vectors(sb: &Superblock) -> BlockCache {
        let r = sb.vector_regions();
        BlockCache::new(r.start, r.blocks)
    }

    fn cell<D: BlockDevice<Error = io::Error>>(&self, dev: &D, n: u64) -> Result<(usize, &RefCell<Slot>)> {
        let i = n
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < self.cells.len())
            .ok_or_else(|| Error::Invalid(format!("vector index: block {n} is outside the vector regions")))?;
        let cell = &self.cells[i];
        if let Some(c) = cell.get() {
            return Ok((i, c));
        }
        let mut p = match self.base {
            // Page i of the arena: in bounds (i < cells.len(), the arena has that many pages),
            // page aligned (the mapping is), zeroed, and no other slot points at it (the cell
            // is empty, and only this cell's slot is ever made for page i).
            Some(b) => std::ptr::NonNull::new(b.as_ptr().wrapping_add(i * BLOCK_SIZE).cast::<Page>())
                .map(Slot::Arena)
                .ok_or_else(|| invalid("cache arena address"))?,
            None => Slot::Heap(Box::new(Page([0; BLOCK_SIZE]))),
        };
        dev.read_block(n, &mut p.0).map_err(Error::io(format!("reading block {n}")))?;
        Ok((i, cell.get_or_init(|| RefCell::new(p))))
    }

    /// Loads every block of the cache from `dev` (those already loaded stay as they are).
    /// Errors: `Io`.
    pub fn load_all<D: BlockDevice<Error = io::Error>>(&self, dev: &D) -> Result<()> {
        if self.all_loaded.get() {
            return Ok(());
        }
        for n in self.first..self.first + self.cells.len() as u64 {
            self.cell(dev, n)?;
        }
        self.all_loaded.set(true);
        Ok(())
    }

    /// A read-only view of the loaded blocks that threads share (the bulk loader's planners):
    /// the cache cannot change while it lives. A block not loaded (see [`Self::load_all`])
    /// reads as an error.
    pub fn frozen(&mut self) -> FrozenBlocks<'_> {
        // Every loaded block of a mapped cache is its page of the arena (`cell`), so with all
        // loaded the arena is the blocks in order. Nothing writes to it while the view lives
        // (it borrows the cache mutably).
        let arena = match (&self._arena, self.all_loaded.get()) {
            (Some(a), true) => Some(&a[..]),
            _ => None,
        };
        #[cfg(test)]
        let arena = arena.filter(|_| !test_hooks::PAGES_ONLY.with(|p| p.get()));
        // The page pointers only without the arena: a view is made per batch of inserts, and
        // the pointers are 8 bytes a block (4.8 MB at 1M vectors) to gather each time.
        let pages = match arena {
            Some(_) => Vec::new(),
            None => self.cells.iter_mut().map(|c| c.get_mut().map(|p| &**p.get_mut())).collect(),
        };
        FrozenBlocks { first: self.first, pages, arena }
    }

    /// A view that several threads change at once ([`SharedCache`]): the blocks of `owned`
    /// split between `owners` stores by block number. `None` unless the cache is one mapping
    /// with every block loaded ([`Self::load_all`]). Mark the blocks the stores wrote with
    /// [`Self::mark_dirty`] after.
    pub fn shared(&mut self, owned: std::ops::Range<u64>, owners: u64) -> Option<SharedCache<'_>> {
        if !self.all_loaded.get() || owners == 0 {
            return None;
        }
        #[cfg(test)]
        if test_hooks::PAGES_ONLY.with(|p| p.get()) {
            return None;
        }
        // Every loaded block of a mapped cache is its page of the arena (`cell`).
        let base = self._arena.as_ref().and(self.base)?;
        Some(SharedCache {
            first: self.first,
            blocks: self.cells.len() as u64,
            base,
            owned,
            owners,
            _cache: std::marker::PhantomData,
        })
    }

    /// Marks blocks `blocks` changed (written through a [`SharedCache`]), for the next
    /// [`Self::write_back`]; blocks outside the cache are ignored.
    pub fn mark_dirty(&self, blocks: impl IntoIterator<Item = u64>) {
        for n in blocks {
            let Some(i) = n.checked_sub(self.first).and_then(|i| usize::try_from(i).ok()) else { continue };
            if let Some(d) = self.dirty.get(i) {
                if !d.replace(true) {
                    self.dirty_list.borrow_mut().push(i);
                }
            }
        }
    }

    /// Blocks changed and not yet written.
    pub fn dirty_blocks(&self) -> usize {
        self.dirty_list.borrow().len()
    }

    /// Writes every changed block to `dev` (without flushing it); returns how many.
    /// Errors: `Io`; `Invalid` if a block is still borrowed.
    pub fn write_back<D: BlockDevice<Error = io::Error>>(&self, dev: &mut D) -> Result<usize> {
        let mut list = self.dirty_list.try_borrow_mut().map_err(|_| invalid("write-back during write-back"))?;
        // In block order. A failed write returns at once: that block and the ones after it
        // stay dirty and listed for the next write-back (the written ones are skipped then).
        list.sort_unstable();
        let mut n = 0;
        for &i in list.iter() {
            let (Some(cell), Some(dirty)) = (self.cells.get(i), self.dirty.get(i)) else { continue };
            let Some(c) = cell.get().filter(|_| dirty.get()) else { continue };
            let blk = self.first + i as u64;
            let page = c.try_borrow().map_err(|_| invalid("block borrowed during write-back"))?;
            dev.write_block(blk, &page.0).map_err(Error::io(format!("writing block {blk}")))?;
            dirty.set(false);
            n += 1;
        }
        list.retain(|&i| self.dirty.get(i).is_some_and(|d| d.get()));
        Ok(n)
    }
}

/// [`BlockStore`] over a [`BlockCache`] of a device: reads load blocks into the cache, writes
/// change the cache (see [`BlockCache::write_back`]).
pub struct CachedBlocks<'a, D> {
    /// The device blocks are loaded from.
    pub dev: &'a D,
    /// The cache.
    pub cache: &'a BlockCache,
}

impl<D: BlockDevice<Error = io::Error>> BlockStore for CachedBlocks<'_, D> {
    type Error = Error;
    type Ref<'b>
        = Ref<'b, [u8]>
    where
        Self: 'b;
    type RefMut<'b>
        = RefMut<'b, [u8]>
    where
        Self: 'b;

    fn read(&self, n: u64) -> Result<Ref<'_, [u8]>> {
        let (_, c) = self.cache.cell(self.dev, n)?;
        let r = c.try_borrow().map_err(|_| invalid("block read while it is written"))?;
        Ok(Ref::map(r, |p| &p.0[..]))
    }

    fn write(&self, n: u64) -> Result<RefMut<'_, [u8]>> {
        let (i, c) = self.cache.cell(self.dev, n)?;
        let w = c.try_borrow_mut().map_err(|_| invalid("block written while it is borrowed"))?;
        if let Some(d) = self.cache.dirty.get(i) {
            if !d.replace(true) {
                self.cache.dirty_list.borrow_mut().push(i);
            }
        }
        Ok(RefMut::map(w, |p| &mut p.0[..]))
    }
}

/// [`BlockStore`] over a [`BlockCache`] frozen by [`BlockCache::frozen`]: reads borrow its
/// pages, from any number of threads; writes are refused.
pub struct FrozenBlocks<'a> {
    first: u64,
    /// The loaded pages, block `first + i` at `i`, when there is no `arena` (else empty).
    pages: Vec<Option<&'a Page>>,
    /// The whole cache as one slice (block `first + i` at byte `i * 4096`) when it is one
    /// mapping with every block loaded: what [`BlockStore::read_span`] serves.
    arena: Option<&'a [u8]>,
}

impl FrozenBlocks<'_> {
    /// Bytes `off .. off + len` from the start of block `n` in the arena; `None` without an
    /// arena or past its end.
    fn arena_span(&self, n: u64, off: usize, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(n.checked_sub(self.first)?).ok()?.checked_mul(BLOCK_SIZE)?.checked_add(off)?;
        self.arena?.get(start..start.checked_add(len)?)
    }
}

impl BlockStore for FrozenBlocks<'_> {
    type Error = Error;
    type Ref<'b>
        = &'b [u8]
    where
        Self: 'b;
    type RefMut<'b>
        = &'b mut [u8]
    where
        Self: 'b;

    fn read(&self, n: u64) -> Result<&[u8]> {
        // From the arena when there is one: an address computed, not a page pointer loaded
        // (the pointer array is 8 bytes a block, 4.8 MB at 1M vectors: a cache miss a read).
        let page = match self.arena {
            Some(_) => self.arena_span(n, 0, BLOCK_SIZE),
            None => {
                let i = n.checked_sub(self.first).and_then(|i| usize::try_from(i).ok());
                i.and_then(|i| self.pages.get(i).copied().flatten()).map(|p| &p.0[..])
            }
        };
        page.ok_or_else(|| Error::Invalid(format!("vector index: block {n} is not in the frozen cache")))
    }

    fn prefetch_line(&self, n: u64, off: usize) {
        if let Some(line) = self.arena_span(n, off, 1) {
            prefetch(line.as_ptr());
        }
    }

    fn prefetch_memory(&self, p: *const u8) {
        prefetch(p);
    }

    fn read_span(&self, n: u64, off: usize, len: usize) -> Option<&[u8]> {
        let span = self.arena_span(n, off, len);
        #[cfg(test)]
        test_hooks::SPANS.fetch_add(usize::from(span.is_some()), std::sync::atomic::Ordering::Relaxed);
        span
    }

    fn write(&self, n: u64) -> Result<&mut [u8]> {
        Err(Error::Invalid(format!("vector index: block {n}: the frozen cache is read-only")))
    }
}

/// A fully loaded, mapped [`BlockCache`] that several threads change at once
/// ([`BlockCache::shared`]): the blocks of `owned` (a run of block numbers: the level-0
/// records) are split between `owners` stores ([`Self::stores`]), block `n` going to the one
/// numbered `n % owners`, which alone reads and writes it; the other blocks of the cache are
/// read by any and written by none. The cache cannot change otherwise while it lives (it
/// borrows it mutably); the blocks written are marked dirty by [`BlockCache::mark_dirty`].
pub struct SharedCache<'a> {
    first: u64,
    blocks: u64,
    base: std::ptr::NonNull<u8>,
    owned: std::ops::Range<u64>,
    owners: u64,
    _cache: std::marker::PhantomData<&'a mut BlockCache>,
}

// SAFETY: the arena behind `base` lives as long as the borrow of the cache ('a). Blocks outside
// `owned` are only read while the view lives (no store writes them, the cache is borrowed), and
// each block of `owned` is reached only through the one `OwnedBlocks` whose number is its
// owner's (`stores` makes one per owner at a time), which keeps its borrows to RefCell rules
// (`OwnedBlocks::take`); an `OwnedBlocks` is not `Sync`.
unsafe impl Send for SharedCache<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for SharedCache<'_> {}

impl SharedCache<'_> {
    /// The stores of the owners, owner `k` at `k`, one for each thread: each reads every block
    /// but the owned ones of the others, and writes only its own. No other can be made while
    /// they live (they borrow the view mutably).
    pub fn stores(&mut self) -> Vec<OwnedBlocks<'_>> {
        let this = &*self;
        (0..self.owners)
            .map(|me| OwnedBlocks {
                cache: this,
                me,
                borrows: RefCell::new(Vec::new()),
                written: RefCell::new(Vec::new()),
            })
            .collect()
    }

    /// How many owners split the owned blocks.
    pub fn owners(&self) -> u64 {
        self.owners
    }

    /// The owner of block `n`, `None` for a block outside the owned run.
    pub fn owner_of(&self, n: u64) -> Option<u64> {
        self.owned.contains(&n).then(|| n % self.owners)
    }

    /// Bytes `off .. off + len` from the start of block `n` as a pointer into the arena, or
    /// `None` past the cache.
    fn ptr(&self, n: u64, off: usize, len: usize) -> Option<*mut u8> {
        let i = n.checked_sub(self.first).filter(|&i| i < self.blocks)?;
        let start = usize::try_from(i).ok()?.checked_mul(BLOCK_SIZE)?.checked_add(off)?;
        let total = usize::try_from(self.blocks).ok()?.checked_mul(BLOCK_SIZE)?;
        (start.checked_add(len)? <= total).then(|| self.base.as_ptr().wrapping_add(start))
    }
}

/// One owner's [`BlockStore`] over a [`SharedCache`] (see there); not shared between threads.
/// Its borrows follow a `RefCell`'s rules per owned block (many reads or one write); the
/// blocks it wrote are in [`Self::written`].
pub struct OwnedBlocks<'v> {
    cache: &'v SharedCache<'v>,
    me: u64,
    /// Owned blocks borrowed now: block, and readers (> 0) or a writer (-1).
    borrows: RefCell<Vec<(u64, isize)>>,
    written: RefCell<Vec<u64>>,
}

impl OwnedBlocks<'_> {
    /// The blocks written through this store, each once.
    pub fn written(&self) -> Vec<u64> {
        self.written.borrow().clone()
    }

    /// Takes a borrow of block `n` (`write`: exclusive) if the store may: `Ok(true)` for an
    /// owned block now borrowed (to give back by [`Self::give_back`]), `Ok(false)` for a
    /// read-only block.
    fn take(&self, n: u64, write: bool) -> Result<bool> {
        match self.cache.owner_of(n) {
            None if write => Err(invalid(&format!("block {n} is read-only while the graph is connected in parallel"))),
            None => Ok(false),
            Some(o) if o != self.me => {
                Err(invalid(&format!("block {n} belongs to another thread of the parallel connections")))
            }
            Some(_) => {
                let mut b = self.borrows.borrow_mut();
                let at = b.iter().position(|&(x, _)| x == n);
                match (at, write) {
                    (None, false) => b.push((n, 1)),
                    (None, true) => b.push((n, -1)),
                    (Some(i), false) if b[i].1 > 0 => b[i].1 += 1,
                    _ => return Err(invalid(&format!("block {n} borrowed while it is written"))),
                }
                if write {
                    let mut w = self.written.borrow_mut();
                    if !w.contains(&n) {
                        w.push(n);
                    }
                }
                Ok(true)
            }
        }
    }

    fn give_back(&self, n: u64) {
        let mut b = self.borrows.borrow_mut();
        if let Some(i) = b.iter().position(|&(x, _)| x == n) {
            if b[i].1 > 1 {
                b[i].1 -= 1;
            } else {
                b.swap_remove(i);
            }
        }
    }
}

/// A block borrowed from an [`OwnedBlocks`] (read or written), given back when dropped: the
/// bytes as a pointer, made a slice only while dereferenced (a shared one for a read, so that
/// threads reading one read-only block never hold `&mut` to it at once).
pub struct OwnedRef<'s> {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// The store and block to give back, for an owned block.
    back: Option<(&'s OwnedBlocks<'s>, u64)>,
}

impl std::ops::Deref for OwnedRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr .. ptr + len` lies in the arena, which outlives the store ('s); see
        // `OwnedBlocks::borrow_span` for why nothing writes it while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for OwnedRef<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; an `OwnedRef` reached mutably is a write borrow (reads are
        // `OwnedRead`s, which give no `&mut`), which `OwnedBlocks::take` made the only borrow
        // of its block, and its block is one only this store reaches.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for OwnedRef<'_> {
    fn drop(&mut self) {
        if let Some((s, n)) = self.back {
            s.give_back(n);
        }
    }
}

/// A shared read of a block, as [`OwnedRef`] (its bytes only read).
pub struct OwnedRead<'s>(OwnedRef<'s>);

impl std::ops::Deref for OwnedRead<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<'v> OwnedBlocks<'v> {
    /// Bytes `off .. off + len` of block `n`, borrowed (`write`: exclusively) if the store may
    /// reach them: an owned block of its own (tracked, see [`Self::take`]) or, to read, a
    /// read-only one (which no store writes while the view lives).
    fn borrow_span(&'v self, n: u64, off: usize, len: usize, write: bool) -> Result<OwnedRef<'v>> {
        let p = self.cache.ptr(n, off, len).ok_or_else(|| invalid(&format!("block {n} is outside the cache")))?;
        let ptr = std::ptr::NonNull::new(p).ok_or_else(|| invalid("cache arena address"))?;
        let back = self.take(n, write)?.then_some((self, n));
        Ok(OwnedRef { ptr, len, back })
    }
}

impl<'v> BlockStore for OwnedBlocks<'v> {
    type Error = Error;
    type Ref<'b>
        = OwnedRead<'b>
    where
        Self: 'b;
    type RefMut<'b>
        = OwnedRef<'b>
    where
        Self: 'b;

    fn read(&self, n: u64) -> Result<OwnedRead<'_>> {
        self.borrow_span(n, 0, BLOCK_SIZE, false).map(OwnedRead)
    }

    fn write(&self, n: u64) -> Result<OwnedRef<'_>> {
        self.borrow_span(n, 0, BLOCK_SIZE, true)
    }

    fn prefetch_line(&self, n: u64, off: usize) {
        if let Some(p) = self.cache.ptr(n, off, 1) {
            prefetch(p);
        }
    }

    fn prefetch_memory(&self, p: *const u8) {
        prefetch(p);
    }

    fn read_span(&self, n: u64, off: usize, len: usize) -> Option<OwnedRead<'_>> {
        // Spans over read-only blocks only (vectors that cross a block).
        let end = n.checked_add(u64::try_from(off.checked_add(len)?.div_ceil(BLOCK_SIZE)).ok()?)?;
        if (n..end).any(|b| self.cache.owner_of(b).is_some()) {
            return None;
        }
        self.borrow_span(n, off, len, false).ok().map(OwnedRead)
    }
}

/// Asks the CPU to bring the cache line of `p` in (x86-64's `prefetcht0`; nothing elsewhere).
/// A prefetch never faults and reads nothing architecturally, whatever `p` is.
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` has no architectural effect and does not fault on any address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

fn invalid(what: &str) -> Error {
    Error::Invalid(format!("vector index: {what}"))
}

// ---- files as the embedding layer reads them ---------------------------------------------------

/// A file of an image, read only: its chunk-list fields and blocks for
/// `vexfs_core::embed::read_chunk_list` (writes are refused).
pub struct ImageFile<'a, D> {
    /// The image.
    pub img: &'a Image<D>,
    /// Inode number.
    pub ino: u32,
    /// The inode.
    pub inode: &'a Inode,
}

impl<D: BlockDevice<Error = io::Error>> ChunkFile for ImageFile<'_, D> {
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

    fn set_fields(&mut self, _fields: ChunkFields) -> Result<()> {
        Err(Error::Invalid(format!("inode {}: the image is open read-only", self.ino)))
    }

    fn read_block(&self, n: u64) -> Result<Box<[u8]>> {
        Ok(self.img.read_block(n)?)
    }

    fn write_block(&mut self, n: u64, _fresh: bool, _build: &mut dyn FnMut(&mut [u8])) -> Result<()> {
        Err(Error::Invalid(format!("block {n}: the image is open read-only")))
    }

    fn alloc_block(&mut self) -> Result<u64> {
        Err(Error::Invalid(format!("inode {}: the image is open read-only", self.ino)))
    }

    fn free_block(&mut self, n: u64) -> Result<()> {
        Err(Error::Invalid(format!("block {n}: the image is open read-only")))
    }
}

/// The vector slot of each chunk of file `ino`, in chunk order, read by the kernel's code
/// (`vexfs_core::embed::read_chunk_list`). Errors: `Format` about "inode {ino}" for a corrupt
/// chunk list; `Io`.
pub fn chunk_slots<D: BlockDevice<Error = io::Error>>(img: &Image<D>, ino: u32, inode: &Inode) -> Result<Vec<u32>> {
    let mut out = vec![0u32; embed::MAX_CHUNKS];
    let file = ImageFile { img, ino, inode };
    let n = read_chunk_list(&file, img.sb().region(Region::Data), &mut out).map_err(|e| match e {
        IndexError::Corrupt(err) => Error::Format { what: format!("inode {ino}"), err },
        e => Error::from(e),
    })?;
    out.truncate(n);
    Ok(out)
}

// ---- searching ---------------------------------------------------------------------------------

/// Checks a search's `k` and `ef` (0 = `max(k, DEFAULT_EF)`) as the kernel does, and returns
/// the ef to use. Errors: `Invalid` for k outside `1..=MAX_K`, ef below k or above `MAX_EF`.
pub fn search_ef(k: usize, ef: usize) -> Result<usize> {
    check_search(k, ef, MAX_EF).map_err(|r| Error::Invalid(r.to_string()))
}

/// `query` as float bit patterns, as the core takes it.
pub fn query_bits(query: &[f32]) -> Vec<u32> {
    query.iter().map(|x| x.to_bits()).collect()
}

/// Inode number -> path relative to the root (`docs/a.txt`, no leading `/`; the root itself
/// is `.`), for everything reachable from the root. The walk is the one `vexctl search` makes
/// of a mounted filesystem (depth first, names sorted by bytes, a directory's entries recorded
/// when it is listed), so a file with several links gets the same path both ways.
/// Errors: those of reading the directories.
pub fn file_paths<D: BlockDevice<Error = io::Error>>(img: &Image<D>) -> Result<HashMap<u64, String>> {
    let mut out: HashMap<u64, String> = HashMap::from([(ROOT_INO as u64, ".".to_string())]);
    let mut stack = vec![(ROOT_INO, String::new())];
    // A directory linked twice (corrupt) is listed once: no endless walk.
    let mut listed = std::collections::HashSet::new();
    while let Some((dir, rel)) = stack.pop() {
        if !listed.insert(dir) {
            continue;
        }
        let inode = img.inode(dir)?;
        let mut entries = img.read_dir(dir, &inode)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let mut subdirs = Vec::new();
        for e in entries {
            let name = String::from_utf8_lossy(&e.name);
            let child = if rel.is_empty() { name.into_owned() } else { format!("{rel}/{name}") };
            if e.file_type == DT_DIR {
                subdirs.push((e.ino, child.clone()));
            }
            out.entry(e.ino as u64).or_insert(child);
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// Searches an image mapped read-only: the tool behind `vexctl search-image`.
pub struct Searcher {
    img: Image<MapDevice>,
    mem: IndexMem,
    paths: Option<HashMap<u64, String>>,
    /// How the searches rank their answer ([`Self::set_rank`]).
    rank: Rank,
}

impl Searcher {
    /// Opens the image or block device at `path` for searches with ef up to `max_ef`.
    /// Errors: `Io`, a bad superblock (`Format`), a corrupt HNSW header or entry point.
    pub fn open(path: impl AsRef<Path>, max_ef: usize) -> Result<Searcher> {
        let p = path.as_ref();
        let dev = MapDevice::open(p).map_err(Error::io(format!("mapping {}", p.display())))?;
        Searcher::new(Image::open(dev)?, max_ef)
    }

    /// Searches an opened image.
    pub fn new(img: Image<MapDevice>, max_ef: usize) -> Result<Searcher> {
        let mut mem = index_mem(img.sb(), max_ef.max(DEFAULT_EF))?;
        let imp = img.device().distance_impl();
        mem.open(img.device(), &imp)?;
        Ok(Searcher { img, mem, paths: None, rank: Rank::Exact })
    }

    /// Loads the image's vector regions (those the searches read:
    /// `Superblock::vector_regions`) into memory on huge pages ([`MapDevice::load_resident`]),
    /// as a process that loads its index before many queries. Errors: `Io` (mmap(2)).
    pub fn load_vectors(&mut self) -> Result<()> {
        let r = self.img.sb().vector_regions();
        let run = r.start..r.start.saturating_add(r.blocks);
        self.img.device_mut().load_resident(run).map_err(Error::io("loading the vector regions".to_string()))
    }

    /// The image.
    pub fn image(&self) -> &Image<MapDevice> {
        &self.img
    }

    /// The HNSW header read at open.
    pub fn header(&self) -> HnswHeader {
        self.mem.header()
    }

    /// Uses distance implementation `imp` (see [`MapDevice::set_distance_impl`]).
    pub fn set_distance_impl(&mut self, imp: Impl) -> Result<()> {
        self.img.device_mut().set_distance_impl(imp)
    }

    /// How every later search ranks its answer: [`Rank::Exact`] (the default), or
    /// [`Rank::Codes`], the codes' distances without reading a float32 vector (what
    /// `VEXFS_SEARCH_CODE_DISTANCES` asks of the kernel). Errors: `Invalid` for
    /// [`Rank::Codes`] on an image without SQ8 or PQ codes.
    pub fn set_rank(&mut self, rank: Rank) -> Result<()> {
        if rank == Rank::Codes && !self.img.sb().has_codes() {
            return Err(Error::Invalid("the image has no SQ8 or PQ codes to rank by".into()));
        }
        self.rank = rank;
        Ok(())
    }

    /// The `k` nearest live vectors to `query` with candidate list `ef` (0 = default), nearest
    /// first, with their owners (`vexfs_core::embed::IndexMem::search_filtered`, keeping
    /// every file; ranked as [`Self::set_rank`] chose). Errors: `Invalid` for bad k/ef (see
    /// [`search_ef`]), a query of the wrong dimension or with NaN/Inf; `Format` for corrupt
    /// index data.
    pub fn search(&mut self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        let mut hits = vec![Hit::default(); k.min(MAX_K)];
        let imp = self.img.device().distance_impl();
        let q = query_bits(query);
        let n =
            self.mem.search_filtered(self.img.device(), &imp, &q, k, ef, self.rank, &mut hits, &mut |_| Ok(true))?;
        hits.truncate(n);
        Ok(hits)
    }

    /// As [`Self::search`], and every block number the search read, in order, appended to
    /// `reads` (repeats included): what `bench_reads` feeds to its model of the kernel's index
    /// cache (the kernel reads the same blocks: the same code over the same image).
    /// Errors: as [`Self::search`].
    pub fn search_traced(&mut self, query: &[f32], k: usize, ef: usize, reads: &mut Vec<u64>) -> Result<Vec<Hit>> {
        let mut hits = vec![Hit::default(); k.min(MAX_K)];
        let imp = self.img.device().distance_impl();
        let store = TracedBlocks { dev: self.img.device(), reads: RefCell::new(std::mem::take(reads)) };
        let q = query_bits(query);
        let n = self.mem.search_filtered(&store, &imp, &q, k, ef, self.rank, &mut hits, &mut |_| Ok(true));
        *reads = store.reads.into_inner();
        hits.truncate(n?);
        Ok(hits)
    }

    /// As [`Self::search`], but only vectors of the files `keep` accepts (given an inode
    /// number): the `k` nearest such, widening the search until there are `k` or none is left
    /// (`vexfs_core::embed::IndexMem::search_filtered`, the kernel's permission-aware search).
    pub fn search_filtered(
        &mut self,
        query: &[f32],
        k: usize,
        ef: usize,
        mut keep: impl FnMut(u64) -> bool,
    ) -> Result<Vec<Hit>> {
        let mut hits = vec![Hit::default(); k.min(MAX_K)];
        let imp = self.img.device().distance_impl();
        let q = query_bits(query);
        let n = self
            .mem
            .search_filtered(self.img.device(), &imp, &q, k, ef, self.rank, &mut hits, &mut |ino| Ok(keep(ino)))?;
        hits.truncate(n);
        Ok(hits)
    }

    /// A pad for [`Self::search_shared`]: each thread that searches at once needs its own
    /// (about 2 bytes per vector slot plus the candidate lists).
    pub fn search_pad(&self) -> SearchPad {
        match self.mem.new_search_pad() {
            Ok(p) => p,
            // StdAlloc cannot fail, and the capacity was checked when the memory was made.
            Err(e) => unreachable!("search pad: {e:?}"),
        }
    }

    /// [`Self::search`] through `&self` with the caller's `pad`, so that threads search the
    /// same image at once (`vexfs_core::embed::IndexMem::search_shared`, what the kernel runs
    /// under the shared index lock). The answer is [`Self::search`]'s. Errors: as there.
    pub fn search_shared(&self, pad: &mut SearchPad, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        let mut hits = vec![Hit::default(); k.min(MAX_K)];
        let imp = self.img.device().distance_impl();
        let q = query_bits(query);
        let n =
            self.mem.search_shared(pad, self.img.device(), &imp, &q, k, ef, self.rank, &mut hits, &mut |_| Ok(true))?;
        hits.truncate(n);
        Ok(hits)
    }

    /// Root-relative paths of the regular files, by inode (see [`file_paths`]; the tree is
    /// walked on first use).
    pub fn paths(&mut self) -> Result<&HashMap<u64, String>> {
        if self.paths.is_none() {
            self.paths = Some(file_paths(&self.img)?);
        }
        match &self.paths {
            Some(p) => Ok(p),
            None => Err(Error::Invalid("no paths".into())),
        }
    }
}

/// Knobs and counters for the crate's tests.
#[cfg(test)]
pub(crate) mod test_hooks {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;

    thread_local! {
        /// Set on a thread: the frozen views it makes serve blocks page by page, as if the
        /// cache were not one mapping (no [`vexfs_core::io::BlockStore::read_span`]).
        pub(crate) static PAGES_ONLY: Cell<bool> = const { Cell::new(false) };
        /// Set on a thread: the bulk loader's batches connect each insert back right after
        /// its choice, one by one, as the graph's definition reads (`Writer::link_batch`).
        pub(crate) static CONNECT_EACH: Cell<bool> = const { Cell::new(false) };
    }

    /// Spans served by frozen views, in every test of the process.
    pub(crate) static SPANS: AtomicUsize = AtomicUsize::new(0);

    /// Batches whose level-0 connections ran on several threads, in every test of the process.
    pub(crate) static SHARED_CONNECTS: AtomicUsize = AtomicUsize::new(0);
}
