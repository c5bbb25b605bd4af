//! An offline writer: creates directories, files and symlinks in an unmounted image, and sets
//! and removes the embeddings of files, through the same format and index code the kernel uses
//! (`vexfs_core::vindex`). For tests (populated images for fsck and vexctl) and for tools that
//! build images; not crash-safe (no journal), and never to be used on a mounted filesystem.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use vexfs_core::distance::{best_impl, first_nonfinite, Impl};
use vexfs_core::format::dir::{self, dt_from_mode, init_dir_block, seal_dir_block, valid_name, DT_DIR};
use vexfs_core::format::extent::{extent_block_build, Extent};
use vexfs_core::format::inode::{
    Inode, INLINE_EXTENTS, INLINE_VEC_IDS, MAX_EXTENTS, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};
use vexfs_core::format::superblock::Region;
use vexfs_core::format::vector::{vec_ids_block_build, HnswHeader, MapEntry, MAX_CHUNKS};
use vexfs_core::format::{bit_find_clear, bit_set, bit_test, BLOCK_SIZE};
use vexfs_core::io::BlockDevice;
use vexfs_core::vindex::VecIndex;

use crate::vectors::{self, BlockCache, CachedBlocks, Hit, IndexMem, Scratchpad, MAX_EF};
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
/// operations, and the header and slot hint kept between them (as the kernel keeps them).
struct VecState {
    cache: BlockCache,
    mem: IndexMem,
    header: HnswHeader,
    hint: u64,
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
    /// `VEXFS_IOC_SET_EMBEDDINGS` does: the new vectors are inserted first, then the chunk
    /// list is stored, then the replaced vectors removed; with `truncate` the chunks past the
    /// new ones go too. Returns the file's slots.
    /// Errors: `Invalid` for a file that is not regular, no vectors, a wrong dimension,
    /// NaN/Inf, a gap (`first` past the file's chunk count), more than [`MAX_CHUNKS`] chunks,
    /// no free vector slot (nothing is changed then); `Format` for a corrupt index or chunk
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
            data.extend(v.iter().map(|x| x.to_bits()));
        }
        if let Some(j) = first_nonfinite(&data) {
            return Err(Error::Invalid(format!("vector {} component {} is NaN or infinite", j / dim, j % dim)));
        }
        let count = vectors.len();
        if count == 0 {
            return Err(Error::Invalid("no vectors to set".into()));
        }
        if first.checked_add(count).map_or(true, |e| e > MAX_CHUNKS) {
            return Err(Error::Invalid(format!(
                "chunks {first}..{} are past the limit of {MAX_CHUNKS}",
                first.saturating_add(count)
            )));
        }
        let old = self.img.vec_slots(ino, &inode)?;
        if first > old.len() {
            return Err(Error::Invalid(format!(
                "inode {ino} has {} chunks: setting chunk {first} would leave a gap",
                old.len()
            )));
        }
        let new = self.with_index(|ix, b, pad| {
            if ix.header.live as u64 + count as u64 > ix.capacity {
                return Err(Error::Invalid(format!(
                    "no room for {count} more vectors ({} of {} slots live)",
                    ix.header.live, ix.capacity
                )));
            }
            let mut new = Vec::with_capacity(count);
            for (i, v) in data.chunks(dim).enumerate() {
                let owner = MapEntry { ino: ino as u64, chunk: (first + i) as u32 };
                match ix.insert(b, &mut pad.scratch, pad.visited, v, owner) {
                    Ok(slot) => new.push(slot),
                    Err(e) => {
                        for &slot in &new {
                            let _ = ix.remove(b, &mut pad.scratch, slot);
                        }
                        return Err(e);
                    }
                }
            }
            Ok(new)
        })?;
        let end = first + count;
        let tail = if truncate { &[][..] } else { old.get(end..).unwrap_or(&[]) };
        let ids: Vec<u32> = old[..first].iter().chain(&new).chain(tail).copied().collect();
        self.store_vec_ids(ino, &ids)?;
        let gone_end = if truncate { old.len() } else { end.min(old.len()) };
        let gone = old.get(first.min(old.len())..gone_end).unwrap_or(&[]).to_vec();
        self.with_index(|ix, b, pad| {
            for slot in gone {
                ix.remove(b, &mut pad.scratch, slot)?;
            }
            Ok(())
        })?;
        Ok(ids)
    }

    /// Removes every embedding of `ino` (a file without any is not an error): the chunk list
    /// is cleared first, then each vector becomes a tombstone (purged by
    /// [`VecIndex::remove`]'s policy or [`Self::purge_vectors`]).
    /// Errors: `Format` for a corrupt index or chunk list; `Io`.
    pub fn remove_embeddings(&mut self, ino: u32) -> Result<()> {
        let inode = self.img.inode(ino)?;
        let ids = self.img.vec_slots(ino, &inode)?;
        if ids.is_empty() {
            return Ok(());
        }
        self.store_vec_ids(ino, &[])?;
        self.with_index(|ix, b, pad| {
            for &slot in &ids {
                ix.remove(b, &mut pad.scratch, slot)?;
            }
            Ok(())
        })
    }

    /// Repairs the graph around every tombstone and frees their slots ([`VecIndex::purge`]).
    pub fn purge_vectors(&mut self) -> Result<()> {
        self.with_index(|ix, b, pad| ix.purge(b, &mut pad.scratch))
    }

    /// The HNSW header as it stands (live and deleted counts, entry point).
    pub fn vector_header(&mut self) -> Result<HnswHeader> {
        self.with_index(|ix, _, _| Ok(ix.header))
    }

    /// Searches the index as it stands (see [`vectors::search`]; `ef` up to [`MAX_EF`]).
    pub fn search(&mut self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        self.with_index(|ix, b, pad| vectors::search(ix, b, pad, query, k, ef))
    }

    /// Writes the changed blocks of the vector regions to the device (without flushing it);
    /// returns how many. [`Self::commit`] does this too.
    pub fn flush_vectors(&mut self) -> Result<usize> {
        match self.vec.as_ref() {
            Some(st) => st.cache.write_back(self.img.device_mut()),
            None => Ok(0),
        }
    }

    /// Runs `f` on the vector index, opened on first use, and keeps the header and slot hint
    /// it leaves (as the kernel's `with_index`).
    fn with_index<R>(
        &mut self,
        f: impl FnOnce(&mut VecIndex<'_>, &CachedBlocks<'_, D>, &mut Scratchpad<'_>) -> Result<R>,
    ) -> Result<R> {
        if self.vec.is_none() {
            let sb = self.img.sb();
            let cache = BlockCache::for_vectors(sb);
            let mut mem = IndexMem::new(sb, MAX_EF)?;
            let imp = best_impl();
            let blocks = CachedBlocks { dev: self.img.device(), cache: &cache, imp };
            let header = mem.open_index(&blocks)?.0.header;
            self.vec = Some(VecState { cache, mem, header, hint: 0, imp });
        }
        let Writer { img, vec, .. } = self;
        let st = vec.as_mut().ok_or_else(|| Error::Invalid("vector index not open".into()))?;
        let blocks = CachedBlocks { dev: img.device(), cache: &st.cache, imp: st.imp };
        let (mut ix, mut pad) = st.mem.with_header(st.header, st.hint);
        let r = f(&mut ix, &blocks, &mut pad);
        st.header = ix.header;
        st.hint = ix.hint;
        r
    }

    /// Stores `ids` as the chunk list of `ino`: inline, then in a vector-id block allocated
    /// on demand and freed when no longer needed (as the kernel's `store_ids`).
    fn store_vec_ids(&mut self, ino: u32, ids: &[u32]) -> Result<()> {
        let mut inode = self.img.inode(ino)?;
        if ids.len() > INLINE_VEC_IDS {
            if inode.vec_block == 0 {
                inode.vec_block = self.alloc_block()?;
                inode.blocks += 1;
            }
            let mut b = [0u8; BLOCK_SIZE];
            vec_ids_block_build(&mut b, inode.vec_block, ino as u64, &ids[INLINE_VEC_IDS..]);
            self.img.write_block(inode.vec_block, &b)?;
        } else if inode.vec_block != 0 {
            self.free_block(inode.vec_block);
            inode.vec_block = 0;
            inode.blocks = inode.blocks.saturating_sub(1);
        }
        inode.vec_ids = [0; INLINE_VEC_IDS];
        for (d, s) in inode.vec_ids.iter_mut().zip(ids) {
            *d = *s;
        }
        inode.vec_count = ids.len() as u32;
        self.img.write_inode(ino, &inode)
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

    fn free_block(&mut self, b: u64) {
        if bit_test(&self.blocks, b as usize) {
            bit_set(&mut self.blocks, b as usize, false);
            self.img.sb_mut().free_blocks += 1;
        }
    }

    fn alloc_block(&mut self) -> Result<u64> {
        let data = self.img.sb().region(Region::Data);
        let b = bit_find_clear(&self.blocks, self.next_block as usize, data.end() as usize)
            .or_else(|| bit_find_clear(&self.blocks, data.start as usize, data.end() as usize))
            .ok_or_else(|| Error::Invalid("no free block".into()))? as u64;
        self.take_block(b);
        self.next_block = b + 1;
        Ok(b)
    }
}
