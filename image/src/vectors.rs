//! The vector index of an image, through the same `vexfs_core::vindex` code the kernel runs.
//!
//! - [`MapDevice`]: an image or block device mapped read-only. It is a [`BlockDevice`] (so an
//!   [`Image`] opens on it) and a [`Blocks`] whose `read` is a slice of the mapping: this is
//!   what searches use.
//! - [`BlockCache`] and [`CachedBlocks`]: a write-back cache of the vector regions over any
//!   [`BlockDevice`], for the offline writer.
//! - [`IndexMem`]: everything an index operation needs beside the blocks (the upper-record
//!   table, HNSW scratch, bounce buffers, the visited set); [`IndexMem::open_index`] is the one
//!   call between an image and a [`VecIndex`].
//! - [`search`] and [`Searcher`]: k-NN searches whose results name files.
//!
//! Distances come from `vexfs_core::distance` with [`best_impl`] unless told otherwise: the C
//! kernels the module runs, so a search here returns the kernel's bits on the same CPU.

use std::cell::{Cell, OnceCell, Ref, RefCell, RefMut};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::Path;

use memmap2::{Mmap, MmapOptions};
use vexfs_core::distance::{best_impl, bits_from_key, distances, first_nonfinite, Impl, NAN_BITS};
use vexfs_core::error::FormatError;
use vexfs_core::format::dir::DT_DIR;
use vexfs_core::format::superblock::{Region, Superblock, ROOT_INO};
use vexfs_core::format::vector::HnswHeader;
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::hnsw::{Cand, Scratch};
use vexfs_core::io::{Block, BlockDevice};
use vexfs_core::mem::EpochVisited;
use vexfs_core::vindex::{fill_upper_table, Blocks, IndexScratch, VecIndex, BATCH};

use crate::{Error, Image, Result};

const BS: u64 = BLOCK_SIZE as u64;

/// ef_search when none is given: `max(k, DEFAULT_EF)`, as the kernel's `VEXFS_IOC_SEARCH`.
pub const DEFAULT_EF: usize = 64;
/// Largest k of one search (`VEXFS_MAX_K`).
pub const MAX_K: usize = 1024;
/// Largest ef_search (`VEXFS_MAX_EF`).
pub const MAX_EF: usize = 4096;

fn corrupt(e: FormatError) -> Error {
    Error::Format { what: "vector index".into(), err: e }
}

fn invalid(what: &str) -> Error {
    Error::Invalid(format!("vector index: {what}"))
}

fn no_space() -> Error {
    Error::Invalid("vector index: no free vector slot".into())
}

/// The `Blocks::distances` of both implementations: `out[i]` = distance bits from `q` to
/// `vecs[i]` by `imp`.
///
/// # Safety
/// `q` and every `vecs[i]` point at `dim` readable, 4-byte aligned `u32`s that stay valid and
/// unchanged for the call (the [`Blocks::distances`] contract, plus alignment, which block
/// buffers and bounce memory have).
unsafe fn raw_distances(imp: Impl, metric: u32, dim: u32, q: *const u32, vecs: &[*const u32], out: &mut [u32]) {
    let d = dim as usize;
    // SAFETY: the caller's contract: `q` points at `d` aligned readable floats for the call.
    let q = unsafe { std::slice::from_raw_parts(q.cast::<f32>(), d) };
    let mut refs: [&[f32]; BATCH] = [&[]; BATCH];
    for (vs, os) in vecs.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
        for (r, &p) in refs.iter_mut().zip(vs) {
            // SAFETY: as `q`, for each vector.
            *r = unsafe { std::slice::from_raw_parts(p.cast::<f32>(), d) };
        }
        let n = vs.len().min(os.len());
        if distances(imp, metric, q, &refs[..n], &mut os[..n]).is_err() {
            // Only an unknown metric gets here (validated superblocks have none): the kernels'
            // answer for one.
            os.fill(NAN_BITS);
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
        Ok(MapDevice { map, blocks, imp: best_impl() })
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
        Ok(MapDevice { map: m.make_read_only()?, blocks, imp: best_impl() })
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

    fn block(&self, n: u64) -> Option<&[u8]> {
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

impl Blocks for MapDevice {
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

    unsafe fn distances(&self, metric: u32, dim: u32, q: *const u32, vecs: &[*const u32], out: &mut [u32]) {
        // SAFETY: the caller keeps the `Blocks::distances` contract; the pointers are into the page-aligned mapping at
        // multiples of 4 (slots are 32-byte aligned) or into `u32` bounce buffers.
        unsafe { raw_distances(self.imp, metric, dim, q, vecs, out) }
    }

    fn corrupt(&self, e: FormatError) -> Error {
        corrupt(e)
    }

    fn invalid(&self, what: &'static str) -> Error {
        invalid(what)
    }

    fn no_space(&self) -> Error {
        no_space()
    }
}

// ---- a write-back cache ------------------------------------------------------------------------

/// One cached block, page aligned so the vectors in it are aligned for the distance kernels.
#[repr(C, align(4096))]
struct Page([u8; BLOCK_SIZE]);

/// A write-back cache of a run of blocks (the vector regions), loaded on first use. Blocks stay
/// put once loaded, so any number of them can be borrowed at once; a block is either read by
/// many or written by one at a time.
pub struct BlockCache {
    first: u64,
    cells: Box<[OnceCell<RefCell<Box<Page>>>]>,
    dirty: Box<[Cell<bool>]>,
}

impl BlockCache {
    /// A cache of blocks `first .. first + count`.
    pub fn new(first: u64, count: u64) -> BlockCache {
        BlockCache {
            first,
            cells: (0..count).map(|_| OnceCell::new()).collect(),
            dirty: (0..count).map(|_| Cell::new(false)).collect(),
        }
    }

    /// A cache of the vector regions of `sb` (vector bitmap to the HNSW region's end: the only
    /// blocks [`VecIndex`] touches).
    pub fn for_vectors(sb: &Superblock) -> BlockCache {
        let first = sb.region(Region::VecBitmap).start;
        BlockCache::new(first, sb.region(Region::Hnsw).end().saturating_sub(first))
    }

    fn cell<D: BlockDevice<Error = io::Error>>(&self, dev: &D, n: u64) -> Result<(usize, &RefCell<Box<Page>>)> {
        let i = n
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < self.cells.len())
            .ok_or_else(|| Error::Invalid(format!("vector index: block {n} is outside the vector regions")))?;
        let cell = &self.cells[i];
        if let Some(c) = cell.get() {
            return Ok((i, c));
        }
        let mut p = Box::new(Page([0; BLOCK_SIZE]));
        dev.read_block(n, &mut p.0).map_err(Error::io(format!("reading block {n}")))?;
        Ok((i, cell.get_or_init(|| RefCell::new(p))))
    }

    /// Blocks changed and not yet written.
    pub fn dirty_blocks(&self) -> usize {
        self.dirty.iter().filter(|d| d.get()).count()
    }

    /// Writes every changed block to `dev` (without flushing it); returns how many.
    /// Errors: `Io`; `Invalid` if a block is still borrowed.
    pub fn write_back<D: BlockDevice<Error = io::Error>>(&self, dev: &mut D) -> Result<usize> {
        let mut n = 0;
        for (i, (cell, dirty)) in self.cells.iter().zip(self.dirty.iter()).enumerate() {
            let Some(c) = cell.get().filter(|_| dirty.get()) else {
                continue;
            };
            let blk = self.first + i as u64;
            let page = c.try_borrow().map_err(|_| invalid("block borrowed during write-back"))?;
            dev.write_block(blk, &page.0).map_err(Error::io(format!("writing block {blk}")))?;
            dirty.set(false);
            n += 1;
        }
        Ok(n)
    }
}

/// [`Blocks`] over a [`BlockCache`] of a device: reads load blocks into the cache, writes
/// change the cache (see [`BlockCache::write_back`]).
pub struct CachedBlocks<'a, D> {
    pub dev: &'a D,
    pub cache: &'a BlockCache,
    pub imp: Impl,
}

impl<'a, D: BlockDevice<Error = io::Error>> Blocks for CachedBlocks<'a, D> {
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
            d.set(true);
        }
        Ok(RefMut::map(w, |p| &mut p.0[..]))
    }

    unsafe fn distances(&self, metric: u32, dim: u32, q: *const u32, vecs: &[*const u32], out: &mut [u32]) {
        // SAFETY: the caller keeps the `Blocks::distances` contract; the pointers are into page-aligned cached blocks at
        // multiples of 4 or into `u32` bounce buffers.
        unsafe { raw_distances(self.imp, metric, dim, q, vecs, out) }
    }

    fn corrupt(&self, e: FormatError) -> Error {
        corrupt(e)
    }

    fn invalid(&self, what: &'static str) -> Error {
        invalid(what)
    }

    fn no_space(&self) -> Error {
        no_space()
    }
}

// ---- the memory of index operations ------------------------------------------------------------

/// What [`VecIndex`] operations need beside the blocks: the superblock, the upper-record table
/// ([`fill_upper_table`]), HNSW scratch (`Scratch::work_len(m)` words and a candidate pool of
/// `max(max_ef, ef_construction)`), bounce buffers and the visited set.
pub struct IndexMem {
    sb: Superblock,
    upper: Vec<u32>,
    pool: Vec<Cand>,
    work: Vec<u32>,
    bounce: Vec<u32>,
    visited: EpochVisited,
    results: Vec<(u32, u32)>,
}

/// The mutable half of an opened index: scratch, visited set, and a result buffer of
/// [`MAX_K`] entries.
pub struct Scratchpad<'a> {
    pub scratch: IndexScratch<'a>,
    pub visited: &'a mut EpochVisited,
    pub results: &'a mut [(u32, u32)],
}

impl IndexMem {
    /// Memory for the index of `sb` (a validated superblock), for searches with `ef` up to
    /// `max_ef`. Errors: `Format` if the superblock's vector capacity cannot be addressed.
    pub fn new(sb: &Superblock, max_ef: usize) -> Result<IndexMem> {
        let cap = usize::try_from(sb.vec_capacity)
            .map_err(|_| Error::Invalid(format!("vector capacity {} too large", sb.vec_capacity)))?;
        let mut upper = vec![0u32; cap + 1];
        fill_upper_table(sb, &mut upper).map_err(Error::format("upper-record table"))?;
        Ok(IndexMem {
            sb: sb.clone(),
            upper,
            pool: vec![Cand::default(); max_ef.max(sb.hnsw_ef_construction as usize).max(1)],
            work: vec![0; Scratch::work_len(sb.hnsw_m)],
            bounce: vec![0; IndexScratch::bounce_len(sb.vec_stride)],
            visited: EpochVisited::new(cap),
            results: vec![(0, 0); MAX_K],
        })
    }

    /// The superblock the memory was made for.
    pub fn sb(&self) -> &Superblock {
        &self.sb
    }

    /// Largest ef a search can use.
    pub fn max_ef(&self) -> usize {
        self.pool.len()
    }

    /// Opens the index on `b` (reads and checks the HNSW header) and hands out the scratch.
    /// Errors: `b`'s, for a corrupt header or entry point.
    pub fn open_index<B: Blocks>(&mut self, b: &B) -> std::result::Result<(VecIndex<'_>, Scratchpad<'_>), B::Error> {
        let (sb, upper, pad) = self.split();
        Ok((VecIndex::open(b, sb, upper)?, pad))
    }

    /// The index with a header read before (no I/O): for callers that keep `header` and the
    /// slot `hint` between operations.
    pub fn with_header(&mut self, header: HnswHeader, hint: u64) -> (VecIndex<'_>, Scratchpad<'_>) {
        let (sb, upper, pad) = self.split();
        (VecIndex::with_header(sb, upper, header, hint), pad)
    }

    fn split(&mut self) -> (&Superblock, &[u32], Scratchpad<'_>) {
        let IndexMem { sb, upper, pool, work, bounce, visited, results } = self;
        let pad = Scratchpad { scratch: IndexScratch { hnsw: Scratch { pool, work }, bounce }, visited, results };
        (sb, upper, pad)
    }
}

// ---- searching ---------------------------------------------------------------------------------

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The vector slot.
    pub slot: u32,
    /// Order-preserving distance key (`distance::key_from_bits`).
    pub key: u32,
    /// Owning file and chunk.
    pub ino: u64,
    pub chunk: u32,
}

impl Hit {
    /// The distance, in the filesystem's metric (squared for l2).
    pub fn distance(&self) -> f32 {
        f32::from_bits(bits_from_key(self.key))
    }
}

/// Checks a search's `k` and `ef` (0 = `max(k, DEFAULT_EF)`) as the kernel does, and returns
/// the ef to use. Errors: `Invalid` for k outside `1..=MAX_K`, ef below k or above `MAX_EF`.
pub fn search_ef(k: usize, ef: usize) -> Result<usize> {
    if k == 0 || k > MAX_K {
        return Err(Error::Invalid(format!("k {k} is outside 1..={MAX_K}")));
    }
    let ef = if ef == 0 { k.max(DEFAULT_EF) } else { ef };
    if ef < k || ef > MAX_EF {
        return Err(Error::Invalid(format!("ef {ef} is outside k..={MAX_EF} (k {k})")));
    }
    Ok(ef)
}

/// The `k` nearest live vectors to `query` with candidate list `ef` (see [`search_ef`]),
/// nearest first, with their owners. Errors: `Invalid` for a query of the wrong dimension or
/// with NaN/Inf (the kernel refuses those too), bad k/ef, an ef above what `pad` holds;
/// `Format` for corrupt index data; `Io`.
pub fn search<B: Blocks<Error = Error>>(
    ix: &VecIndex<'_>,
    b: &B,
    pad: &mut Scratchpad<'_>,
    query: &[f32],
    k: usize,
    ef: usize,
) -> Result<Vec<Hit>> {
    let ef = search_ef(k, ef)?;
    if query.len() != ix.dim as usize {
        return Err(Error::Invalid(format!("query has {} components, the filesystem {}", query.len(), ix.dim)));
    }
    let q: Vec<u32> = query.iter().map(|x| x.to_bits()).collect();
    if let Some(i) = first_nonfinite(&q) {
        return Err(Error::Invalid(format!("query component {i} is {}", query[i])));
    }
    if ef > pad.scratch.hnsw.pool.len() {
        return Err(Error::Invalid(format!("ef {ef} is above this index's {}", pad.scratch.hnsw.pool.len())));
    }
    let out = &mut pad.results[..k];
    let n = ix.search(b, &mut pad.scratch, pad.visited, &q, k, ef, out)?;
    out[..n]
        .iter()
        .map(|&(key, slot)| match ix.owner(b, slot)? {
            Some(e) => Ok(Hit { slot, key, ino: e.ino, chunk: e.chunk }),
            None => Err(corrupt(FormatError::Corrupt { what: "live vector slot without owner", value: slot as u64 })),
        })
        .collect()
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
    header: HnswHeader,
    paths: Option<HashMap<u64, String>>,
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
        let mut mem = IndexMem::new(img.sb(), max_ef.max(DEFAULT_EF))?;
        let header = mem.open_index(img.device())?.0.header;
        Ok(Searcher { img, mem, header, paths: None })
    }

    /// The image.
    pub fn image(&self) -> &Image<MapDevice> {
        &self.img
    }

    /// The HNSW header read at open.
    pub fn header(&self) -> HnswHeader {
        self.header
    }

    /// Uses distance implementation `imp` (see [`MapDevice::set_distance_impl`]).
    pub fn set_distance_impl(&mut self, imp: Impl) -> Result<()> {
        self.img.device_mut().set_distance_impl(imp)
    }

    /// See [`search`].
    pub fn search(&mut self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        let (ix, mut pad) = self.mem.with_header(self.header, 0);
        search(&ix, self.img.device(), &mut pad, query, k, ef)
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
