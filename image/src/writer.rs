//! An offline writer: creates directories, files and symlinks in an unmounted image, and sets
//! and removes the embeddings of files, through the same format and index code the kernel uses
//! (`vexfs_core::vindex`). For tests (populated images for fsck and vexctl) and for tools that
//! build images; not crash-safe (no journal), and never to be used on a mounted filesystem.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use vexfs_core::distance::{best_impl, Impl};
use vexfs_core::embed::{ChunkFields, ChunkFile, ChunkFiles};
use vexfs_core::format::dir::{self, dt_from_mode, init_dir_block, seal_dir_block, valid_name, DT_DIR};
use vexfs_core::format::extent::{extent_block_build, Extent};
use vexfs_core::format::inode::{Inode, INLINE_EXTENTS, MAX_EXTENTS, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use vexfs_core::format::superblock::{Extent64, Region};
use vexfs_core::format::vector::HnswHeader;
use vexfs_core::format::{bit_find_clear, bit_set, bit_test, BLOCK_SIZE};
use vexfs_core::index_error::IndexError;
use vexfs_core::io::{Block, BlockDevice};

use crate::vectors::{chunk_slots, index_mem, query_bits, BlockCache, CachedBlocks, Hit, IndexMem, MAX_EF, MAX_K};
use crate::{Error, Image, Result};

const BS: u64 = BLOCK_SIZE as u64;

/// How [`Writer::create_with`] lays out a file.
#[derive(Debug, Clone, Copy)]
pub struct FileOpts {
    /// Permission bits (and type bits, which must be `S_IFREG` or zero).
    pub mode: u16,
    /// Longest extent in blocks; 1 makes one extent per block (to test extent blocks).
    pub max_extent_blocks: u32,
}

impl Default for FileOpts {
    fn default() -> Self {
        FileOpts { mode: S_IFREG | 0o644, max_extent_blocks: u32::MAX }
    }
}

/// Writes into an [`Image`]. Bitmaps are kept in memory and written with the superblock by
/// [`Writer::commit`]; inodes, directory and data blocks are written as they are made. The
/// vector regions are changed in a [`BlockCache`] written back by [`Writer::flush_vectors`]
/// and [`Writer::commit`].
pub struct Writer<D> {
    img: Image<D>,
    blocks: Vec<u8>,
    blocks_old: Vec<u8>,
    inodes: Vec<u8>,
    inodes_old: Vec<u8>,
    next_block: u64,
    /// The vector index, opened on first use.
    vec: Option<VecState>,
}

/// The vector index as the writer changes it: the cache of its blocks, the memory of its
/// operations (which keeps the header and slot hint between them, as the kernel's does) and
/// the distance kernel.
struct VecState {
    cache: BlockCache,
    mem: IndexMem,
    imp: Impl,
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
    /// Starts writing into `img` (reads both bitmaps). Errors: `Io`.
    pub fn new(img: Image<D>) -> Result<Writer<D>> {
        let blocks = img.read_region(Region::BlockBitmap)?;
        let inodes = img.read_region(Region::InodeBitmap)?;
        let next_block = img.sb().region(Region::Data).start;
        Ok(Writer {
            blocks_old: blocks.clone(),
            blocks,
            inodes_old: inodes.clone(),
            inodes,
            img,
            next_block,
            vec: None,
        })
    }

    /// The image being written (its superblock's free counts are kept current).
    pub fn image(&self) -> &Image<D> {
        &self.img
    }

    /// Writes the changed vector-region blocks, bitmap blocks and the primary superblock (as
    /// the kernel does; the backup keeps the mkfs-time free counts), flushes, and gives the
    /// image back. Errors: `Io`.
    pub fn commit(mut self) -> Result<Image<D>> {
        self.sync()?;
        Ok(self.img)
    }

    /// Writes everything [`Self::commit`] writes and flushes, and goes on writing: the device
    /// then holds a consistent filesystem (for checking it between steps). Errors: `Io`.
    pub fn sync(&mut self) -> Result<()> {
        self.flush_vectors()?;
        self.img.write_region_changes(Region::BlockBitmap, &self.blocks_old, &self.blocks)?;
        self.blocks_old.clone_from(&self.blocks);
        self.img.write_region_changes(Region::InodeBitmap, &self.inodes_old, &self.inodes)?;
        self.inodes_old.clone_from(&self.inodes);
        let mut b = [0u8; BLOCK_SIZE];
        self.img.sb().encode(&mut b);
        self.img.write_block(0, &b)?;
        self.img.device_mut().flush().map_err(Error::io("flushing the device"))
    }

    /// Creates directory `name` in directory `parent` with permission bits `perm`; returns
    /// its inode number. Errors: `Invalid` (bad or existing name, parent not a directory, no
    /// space), `Io`, `Format`.
    pub fn mkdir(&mut self, parent: u32, name: &str, perm: u16) -> Result<u32> {
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
        self.create_inode(parent, name, mode, data, opts.max_extent_blocks.max(1))
    }

    /// Creates symlink `name` in `parent` pointing at `target` (stored in a data block).
    /// Errors: as [`Self::mkdir`]; `Invalid` for an empty target or one over 4096 bytes.
    pub fn symlink(&mut self, parent: u32, name: &str, target: &str) -> Result<u32> {
        if target.is_empty() || target.len() > BLOCK_SIZE {
            return Err(Error::Invalid(format!("symlink target of {} bytes", target.len())));
        }
        self.create_inode(parent, name, S_IFLNK | 0o777, target.as_bytes(), u32::MAX)
    }

    /// Adds a hard link `name` in `parent` to regular file `ino`. Errors: `Invalid` for a
    /// directory target, as [`Self::mkdir`] otherwise.
    pub fn link(&mut self, parent: u32, name: &str, ino: u32) -> Result<()> {
        let mut inode = self.img.inode(ino)?;
        if inode.is_dir() {
            return Err(Error::Invalid("no hard links to directories".into()));
        }
        self.add_entry(parent, name, ino, dt_from_mode(inode.mode))?;
        inode.links = inode.links.checked_add(1).ok_or_else(|| Error::Invalid("too many links".into()))?;
        self.img.write_inode(ino, &inode)
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
        self.with_file(ino, inode, |mem, store, imp, file| mem.set_chunks(store, imp, file, first, &data, truncate))
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
        let inode = self.img.inode(ino)?;
        Ok(self.with_file(ino, inode, |mem, store, imp, file| mem.remove_chunks(store, imp, file))?)
    }

    /// Repairs the graph around every tombstone and frees their slots.
    pub fn purge_vectors(&mut self) -> Result<()> {
        let (mem, store, imp) = self.index()?;
        Ok(mem.purge(&store, &imp)?)
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

    /// Writes the changed blocks of the vector regions to the device (without flushing it);
    /// returns how many. [`Self::commit`] does this too.
    pub fn flush_vectors(&mut self) -> Result<usize> {
        match self.vec.as_ref() {
            Some(st) => st.cache.write_back(self.img.device_mut()),
            None => Ok(0),
        }
    }

    /// The vector index, opened on first use: its memory, a block store over its cache, and
    /// the distance kernel.
    fn index(&mut self) -> Result<(&mut IndexMem, CachedBlocks<'_, D>, Impl)> {
        if self.vec.is_none() {
            let sb = self.img.sb();
            let cache = BlockCache::for_vectors(sb);
            let mut mem = index_mem(sb, MAX_EF)?;
            let imp = best_impl();
            mem.open(&CachedBlocks { dev: self.img.device(), cache: &cache }, &imp)?;
            self.vec = Some(VecState { cache, mem, imp });
        }
        let Writer { img, vec, .. } = self;
        let VecState { cache, mem, imp } =
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
            &CachedBlocks<'_, D>,
            &Impl,
            &mut WriterFile<'_, D>,
        ) -> std::result::Result<R, IndexError<Error>>,
    ) -> std::result::Result<R, IndexError<Error>> {
        self.index().map_err(IndexError::Io)?;
        let data = self.img.sb().region(Region::Data);
        let Writer { img, vec, blocks, next_block, .. } = self;
        let VecState { cache, mem, imp } =
            vec.as_mut().ok_or_else(|| IndexError::Io(Error::Invalid("vector index not open".into())))?;
        let store = CachedBlocks { dev: img.device(), cache };
        let mut file = WriterFile {
            img,
            bitmap: blocks,
            next_block,
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

    fn create_inode(&mut self, parent: u32, name: &str, mode: u16, data: &[u8], max_run: u32) -> Result<u32> {
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
            self.img.write_block(blk, &buf)?;
            inode.blocks += 1;
        }
        self.set_extents(ino, &mut inode, extents)?;
        self.img.write_inode(ino, &inode)?;
        self.add_entry(parent, name, ino, dt_from_mode(mode))?;
        Ok(ino)
    }

    /// Stores `extents` in `inode` (inline, then an extent block allocated on demand).
    fn set_extents(&mut self, ino: u32, inode: &mut Inode, extents: Vec<Extent>) -> Result<()> {
        if extents.len() > MAX_EXTENTS {
            return Err(Error::Invalid(format!("inode {ino}: {} extents, at most {MAX_EXTENTS}", extents.len())));
        }
        inode.nr_extents = extents.len() as u32;
        inode.extents = Default::default();
        for (slot, e) in inode.extents.iter_mut().zip(&extents) {
            *slot = *e;
        }
        if extents.len() > INLINE_EXTENTS {
            if inode.extent_block == 0 {
                inode.extent_block = self.alloc_block()?;
                inode.blocks += 1;
            }
            let mut b = [0u8; BLOCK_SIZE];
            extent_block_build(&mut b, inode.extent_block, ino as u64, &extents[INLINE_EXTENTS..]);
            self.img.write_block(inode.extent_block, &b)?;
        }
        Ok(())
    }

    /// Adds the entry `name -> ino` to directory `dir`, growing it by a block when full.
    fn add_entry(&mut self, dir: u32, name: &str, ino: u32, file_type: u8) -> Result<()> {
        let mut d = self.img.inode(dir)?;
        if !d.is_dir() {
            return Err(Error::NotADirectory(format!("inode {dir}")));
        }
        if !valid_name(name.as_bytes()) {
            return Err(Error::Invalid(format!("invalid name {name:?}")));
        }
        if self.img.read_dir(dir, &d)?.iter().any(|e| e.name == name.as_bytes()) {
            return Err(Error::Invalid(format!("{name:?} exists in directory {dir}")));
        }
        let fmt = |e| Error::Format { what: format!("directory {dir}"), err: e };
        for (_, blk) in self.img.dir_blocks(dir, &d)? {
            let mut b = self.img.read_block(blk)?;
            if dir::insert(&mut b[..], name.as_bytes(), ino, file_type).map_err(fmt)? {
                seal_dir_block(&mut b[..], blk, dir as u64);
                return self.img.write_block(blk, &b);
            }
        }
        let blk = self.alloc_block()?;
        let mut b = [0u8; BLOCK_SIZE];
        init_dir_block(&mut b, blk, dir as u64);
        dir::insert(&mut b, name.as_bytes(), ino, file_type).map_err(fmt)?;
        seal_dir_block(&mut b, blk, dir as u64);
        self.img.write_block(blk, &b)?;
        let logical = (d.size / BS) as u32;
        let mut extents = self.img.extents(dir, &d)?;
        match extents.last_mut() {
            Some(e) if e.start + e.len as u64 == blk => e.len += 1,
            _ => extents.push(Extent { logical, len: 1, start: blk }),
        }
        d.size += BS;
        d.blocks += 1;
        self.set_extents(dir, &mut d, extents)?;
        self.img.write_inode(dir, &d)
    }

    fn alloc_inode(&mut self) -> Result<u32> {
        let count = self.img.sb().inode_count as usize;
        let i = bit_find_clear(&self.inodes, 0, count).ok_or_else(|| Error::Invalid("no free inode".into()))?;
        bit_set(&mut self.inodes, i, true);
        self.img.sb_mut().free_inodes -= 1;
        Ok(i as u32 + 1)
    }

    fn is_free(&self, b: u64) -> bool {
        self.img.sb().region(Region::Data).contains(b) && !bit_test(&self.blocks, b as usize)
    }

    fn take_block(&mut self, b: u64) {
        bit_set(&mut self.blocks, b as usize, true);
        self.img.sb_mut().free_blocks -= 1;
    }

    fn alloc_block(&mut self) -> Result<u64> {
        let data = self.img.sb().region(Region::Data);
        let b = find_free_block(&self.blocks, self.next_block, data)
            .ok_or_else(|| Error::Invalid("no free block".into()))?;
        self.take_block(b);
        self.next_block = b + 1;
        Ok(b)
    }
}

/// Next free block of the data region at or after `from` (wrapping to its start), or `None`.
fn find_free_block(bitmap: &[u8], from: u64, data: Extent64) -> Option<u64> {
    bit_find_clear(bitmap, from as usize, data.end() as usize)
        .or_else(|| bit_find_clear(bitmap, data.start as usize, data.end() as usize))
        .map(|b| b as u64)
}

/// A file of the image being written, as `vexfs_core::embed` changes it. While the operation
/// runs, the index's block cache borrows the device, so block writes and the inode are kept
/// here and applied afterwards ([`Writer::with_file`]); reads see the kept writes.
struct WriterFile<'a, D> {
    img: &'a Image<D>,
    bitmap: &'a mut Vec<u8>,
    next_block: &'a mut u64,
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
        let b = find_free_block(self.bitmap, *self.next_block, self.data)
            .ok_or_else(|| Error::Invalid("no free block".into()))?;
        bit_set(self.bitmap, b as usize, true);
        *self.next_block = b + 1;
        self.inode.blocks += 1;
        self.taken += 1;
        self.changed = true;
        Ok(b)
    }

    fn free_block(&mut self, n: u64) -> Result<()> {
        if self.data.contains(n) && bit_test(self.bitmap, n as usize) {
            bit_set(self.bitmap, n as usize, false);
            self.freed += 1;
        }
        self.inode.blocks = self.inode.blocks.saturating_sub(1);
        self.changed = true;
        Ok(())
    }
}
