//! An opened vexfs: superblock, inodes, extents, files, directories and path lookup.

use std::collections::HashSet;
use std::io;
use std::sync::Mutex;

use vexfs_core::dir_index::{self, bucket_keys, bucket_of, name_key, read_header, Header};
use vexfs_core::error::FormatError;
use vexfs_core::extent_tree::{TreeStore, NODE_ENTRIES};
use vexfs_core::file_extents::FileExtents;
use vexfs_core::format::block::Csum;
use vexfs_core::format::dir::{self, check_dir_block};
use vexfs_core::format::extent::Extent;
use vexfs_core::format::inode::{Inode, INODE_FLAG_INDEX};
use vexfs_core::format::superblock::{Region, Superblock, FEATURE_INCOMPAT_DIR_INDEX, ROOT_INO};
use vexfs_core::format::{BLOCK_SIZE, INODE_SIZE};
use vexfs_core::io::{Block, BlockDevice};

use crate::dirs::{dir_error, layout_issues, mapped_blocks, ImageDir, DEPTHS};
use crate::{Error, Result};

const BS: u64 = BLOCK_SIZE as u64;

/// One stored extended attribute: namespace index (`vexfs_core::format::xattr::XATTR_USER`, ...),
/// name after the namespace prefix, value.
pub type StoredXattr = (u8, Vec<u8>, Vec<u8>);

/// One used directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name, as stored (not necessarily UTF-8).
    pub name: Vec<u8>,
    /// Target inode number.
    pub ino: u32,
    /// `DT_*` type recorded in the entry.
    pub file_type: u8,
}

/// A vexfs filesystem on a [`BlockDevice`], with its validated superblock.
#[derive(Debug)]
pub struct Image<D> {
    dev: D,
    sb: Superblock,
    /// Blocks that passed their kind's whole check (extent-tree nodes, directory index
    /// headers) and were not written through this image since: what core's stores report as
    /// [`Csum::Checked`], as the kernel's buffer bits do. `None` (the default) remembers
    /// nothing: see [`Self::remember_checked`].
    checked: Option<Mutex<HashSet<u64>>>,
}

impl<D: BlockDevice<Error = io::Error>> Image<D> {
    /// Reads block 0, decodes the superblock and validates it against the device size.
    ///
    /// Errors: `Io` if block 0 cannot be read; `Format` with the superblock's
    /// [`FormatError`](vexfs_core::error::FormatError) (not vexfs, corrupt, unsupported, or
    /// larger than the device).
    pub fn open(dev: D) -> Result<Image<D>> {
        let sb = read_superblock(&dev, 0)?;
        Ok(Image { dev, sb, checked: None })
    }

    /// Wraps a device and a superblock that the caller has validated (fsck uses the backup).
    pub fn with_superblock(dev: D, sb: Superblock) -> Image<D> {
        Image { dev, sb, checked: None }
    }

    /// Makes the image remember the extent-tree nodes and directory index headers that pass
    /// their whole check, and skip the check when they are read again (until written through
    /// [`Self::write_block`] or [`Self::forget_checked`]), as the kernel does with its buffer
    /// bits. For a tool that alone has the device open and reads the same nodes again and
    /// again: the bulk loader, whose every new file looks its name up in a directory of up to
    /// millions of entries (each lookup checked every entry of two extent nodes before). A
    /// caller that writes blocks around the image (`device_mut`) must forget them.
    pub fn remember_checked(&mut self) {
        self.checked.get_or_insert_with(Default::default);
    }

    /// Calls `f` on block `n` with how core's stores may take it: [`Csum::Checked`] when it is
    /// remembered as checked (see [`Self::remember_checked`]), else [`Csum::Check`]. The
    /// `read_sealed` of the image's tree and directory stores. Errors: `Io`.
    pub(crate) fn read_sealed<R>(&self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> Result<R> {
        let csum = match &self.checked {
            Some(c) if c.lock().is_ok_and(|c| c.contains(&n)) => Csum::Checked,
            _ => Csum::Check,
        };
        Ok(f(&self.read_block(n)?[..], csum))
    }

    /// Remembers that block `n`, just read, passed its kind's whole check (nothing unless
    /// [`Self::remember_checked`] was called).
    pub(crate) fn mark_checked(&self, n: u64) {
        if let Some(Ok(mut c)) = self.checked.as_ref().map(|c| c.lock()) {
            c.insert(n);
        }
    }

    /// Forgets block `n` as checked: for a block about to be written around the image.
    pub fn forget_checked(&mut self, n: u64) {
        if let Some(Ok(c)) = self.checked.as_mut().map(|c| c.get_mut()) {
            c.remove(&n);
        }
    }

    /// The superblock as read (or as last set by a writer).
    pub fn sb(&self) -> &Superblock {
        &self.sb
    }

    /// Mutable superblock, for writers; nothing is written until they do so.
    pub(crate) fn sb_mut(&mut self) -> &mut Superblock {
        &mut self.sb
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// The device, for writing.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Gives the device back.
    pub fn into_device(self) -> D {
        self.dev
    }

    /// Reads block `n`. Errors: `Io`.
    pub fn read_block(&self, n: u64) -> Result<Box<Block>> {
        let mut b = Box::new([0u8; BLOCK_SIZE]);
        self.dev.read_block(n, &mut b).map_err(Error::io(format!("reading block {n}")))?;
        Ok(b)
    }

    /// Writes block `n`. Errors: `Io`.
    pub fn write_block(&mut self, n: u64, b: &Block) -> Result<()> {
        self.forget_checked(n);
        self.dev.write_block(n, b).map_err(Error::io(format!("writing block {n}")))
    }

    /// Reads a whole region into memory (bitmaps). Errors: `Io`.
    pub fn read_region(&self, r: Region) -> Result<Vec<u8>> {
        let e = self.sb.region(r);
        let mut out = Vec::with_capacity((e.blocks * BS) as usize);
        for n in e.start..e.end() {
            out.extend_from_slice(&self.read_block(n)?[..]);
        }
        Ok(out)
    }

    /// Writes the blocks of region `r` whose bytes differ between `old` and `new` (both the
    /// whole region, as from [`Self::read_region`]), and copies each one written into `old`, so
    /// that `old` is `new` again where the writes succeeded. Errors: `Io` (the block that
    /// failed and the ones after it are left unwritten and uncopied).
    pub fn write_region_changes(&mut self, r: Region, old: &mut [u8], new: &[u8]) -> Result<()> {
        let start = self.sb.region(r).start;
        for (i, (o, n)) in old.chunks_mut(BLOCK_SIZE).zip(new.chunks(BLOCK_SIZE)).enumerate() {
            if o != n {
                let b: &Block = n.try_into().map_err(|_| Error::Invalid("short region buffer".into()))?;
                self.write_block(start + i as u64, b)?;
                o.copy_from_slice(n);
            }
        }
        Ok(())
    }

    /// The raw bytes of inode `ino` and the block holding them. Errors: `Invalid` for an
    /// inode number outside `1..=inode_count`, `Io`.
    pub fn inode_raw(&self, ino: u32) -> Result<(u64, usize, Box<Block>)> {
        let (blk, off) = self
            .sb
            .inode_pos(ino as u64)
            .ok_or_else(|| Error::Invalid(format!("inode {ino} is out of range 1..={}", self.sb.inode_count)))?;
        Ok((blk, off, self.read_block(blk)?))
    }

    /// Reads and decodes inode `ino` (1-based). Errors: `Invalid` (out of range), `Io`,
    /// `Format` ("inode N: ..." with the decoder's error).
    pub fn inode(&self, ino: u32) -> Result<Inode> {
        let (_, off, b) = self.inode_raw(ino)?;
        Inode::decode(ino as u64, &b[off..off + INODE_SIZE]).map_err(Error::format(format!("inode {ino}")))
    }

    /// Encodes and writes inode `ino` (read-modify-write of its table block). Errors: as
    /// [`Self::inode_raw`].
    pub fn write_inode(&mut self, ino: u32, inode: &Inode) -> Result<()> {
        let (blk, off, mut b) = self.inode_raw(ino)?;
        inode.encode(ino as u64, &mut b[off..off + INODE_SIZE]);
        self.write_block(blk, &b)
    }

    /// The block map of inode `ino` as its inode holds it (`vexfs_core::file_extents`).
    pub fn file_extents(&self, ino: u32, inode: &Inode) -> FileExtents {
        let data = self.sb.region(Region::Data);
        FileExtents {
            inline: inode.extents,
            nr_extents: inode.nr_extents,
            root: inode.extent_block,
            owner: u64::from(ino),
            data_start: data.start,
            data_end: data.end(),
            fanout: NODE_ENTRIES,
        }
    }

    /// All extents of inode `ino`, inline then from its extent tree, checked as the kernel
    /// reads them (`FileExtents::check_inode`, every tree node whole: header, owner, depth,
    /// order, keys, extents inside the data region) and counted: `nr_extents` must be their
    /// number. Errors: `Io`, `Format` ("inode N: ..." or "inode N extent tree: ...").
    pub fn extents(&self, ino: u32, inode: &Inode) -> Result<Vec<Extent>> {
        let fx = self.file_extents(ino, inode);
        fx.check_inode().map_err(Error::format(format!("inode {ino}")))?;
        let mut out = Vec::new();
        fx.for_each(&mut ReadTree { img: self }, 0, |e| {
            out.push(e);
            true
        })
        .map_err(|e| e.into_error(ino))?;
        if out.len() != inode.nr_extents as usize {
            return Err(Error::Format {
                what: format!("inode {ino}"),
                err: FormatError::Corrupt { what: "extent count", value: u64::from(inode.nr_extents) },
            });
        }
        Ok(out)
    }

    /// The extended attributes of inode `ino` stored in its xattr block (format v3; none
    /// without one), in block order: `(namespace index, name after the prefix, value)`,
    /// checked as the kernel reads them (`vexfs_core::format::xattr::check_xattr_block`).
    /// Errors: `Io`, `Format` ("inode N xattr block B: ...").
    pub fn xattrs(&self, ino: u32, inode: &Inode) -> Result<Vec<StoredXattr>> {
        let blk = inode.xattr_block;
        if blk == 0 {
            return Ok(Vec::new());
        }
        let what = format!("inode {ino} xattr block {blk}");
        if !self.sb.region(Region::Data).contains(blk) {
            return Err(Error::Format {
                what,
                err: FormatError::Corrupt { what: "xattr block outside the data region", value: blk },
            });
        }
        let b = self.read_block(blk)?;
        vexfs_core::format::xattr::check_xattr_block(&b[..], blk, u64::from(ino)).map_err(Error::format(&what))?;
        vexfs_core::format::xattr::entries(&b[..])
            .map(|x| x.map(|x| (x.index, x.name.to_vec(), x.value.to_vec())).map_err(Error::format(&what)))
            .collect()
    }

    /// The node blocks of inode `ino`'s extent tree (none without one), root first. Errors:
    /// as [`Self::extents`].
    pub fn extent_nodes(&self, ino: u32, inode: &Inode) -> Result<Vec<u64>> {
        let fx = self.file_extents(ino, inode);
        fx.check_inode().map_err(Error::format(format!("inode {ino}")))?;
        let mut out = Vec::new();
        fx.for_each_node(&mut ReadTree { img: self }, |n, _| out.push(n)).map_err(|e| e.into_error(ino))?;
        Ok(out)
    }

    /// The vector slot of each chunk of inode `ino`, in chunk order: the inline ids, then
    /// those of its vector-id block. Checked as the kernel reads them: `vec_count` at most
    /// `MAX_CHUNKS`, a vector-id block exactly when `vec_count > 4`, inside the data region,
    /// with a valid header (owner `ino`, its own block number) and `vec_count - 4` ids.
    /// The kernel's own reader (`vexfs_core::embed::read_chunk_list`). Errors: `Io`, `Format`
    /// ("inode N: ...").
    pub fn vec_slots(&self, ino: u32, inode: &Inode) -> Result<Vec<u32>> {
        crate::vectors::chunk_slots(self, ino, inode)
    }

    /// Reads the first `inode.size` bytes of a file or symlink; holes read as zeros.
    /// Errors: as [`Self::extents`].
    pub fn read_file(&self, ino: u32, inode: &Inode) -> Result<Vec<u8>> {
        let extents = self.extents(ino, inode)?;
        let size = usize::try_from(inode.size).map_err(|_| Error::Invalid(format!("inode {ino}: file too large")))?;
        let mut out = vec![0u8; size];
        for e in &extents {
            for (i, dev_blk) in (e.start..e.start + e.len as u64).enumerate() {
                let off = (e.logical as u64 + i as u64) * BS;
                if off >= inode.size {
                    break;
                }
                let off = off as usize;
                let n = BLOCK_SIZE.min(size - off);
                out[off..off + n].copy_from_slice(&self.read_block(dev_blk)?[..n]);
            }
        }
        Ok(out)
    }

    /// The used entries of directory `ino` ("." and ".." are not stored): a linear
    /// directory's in on-disk order, an indexed directory's (`vexfs_core::dir_index`) in key
    /// order (the order of the kernel's readdir). Every block is checked (header, owner, block
    /// number, dirents), and so is the layout ([`Self::dir_blocks`]); in an indexed directory,
    /// every entry must lie in its bucket's key range. Errors: `Io`, `Format`.
    pub fn read_dir(&self, ino: u32, inode: &Inode) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        let seed = self.dir_index_header(ino, inode)?.map(|(_, h)| h.seed);
        for (l, blk) in self.dir_blocks(ino, inode)? {
            let b = self.read_block(blk)?;
            let what = format!("directory {ino} block {blk}");
            check_dir_block(&b[..], blk, ino as u64).map_err(Error::format(&what))?;
            let mut entries = Vec::new();
            for d in dir::dirents(&b[..]) {
                let d = d.map_err(Error::format(&what))?;
                if d.ino != 0 {
                    entries.push((d.offset, d.name, d.ino, d.file_type));
                }
            }
            if let Some(seed) = seed {
                // Buckets come in logical order; their key ranges are sorted below.
                let (depth, prefix) = bucket_of(l).ok_or_else(|| Error::Format {
                    what: what.clone(),
                    err: FormatError::Corrupt { what: "directory index block that is no bucket", value: l },
                })?;
                let (lo, hi) = bucket_keys(depth, prefix);
                let mut keyed = Vec::with_capacity(entries.len());
                for (off, name, i, t) in entries {
                    let k = name_key(&seed, name);
                    if !(lo..hi).contains(&k) {
                        return Err(Error::Format {
                            what,
                            err: FormatError::Corrupt { what: "directory index entry outside its bucket", value: k },
                        });
                    }
                    keyed.push(((k, off), DirEntry { name: name.to_vec(), ino: i, file_type: t }));
                }
                keyed.sort_unstable_by_key(|e| e.0);
                out.push((lo, keyed.into_iter().map(|e| e.1).collect::<Vec<_>>()));
            } else {
                let list = entries.into_iter().map(|(_, n, i, t)| DirEntry { name: n.to_vec(), ino: i, file_type: t });
                out.push((0, list.collect()));
            }
        }
        // Stable: a linear directory's blocks (all at 0) keep their order.
        out.sort_by_key(|b| b.0);
        Ok(out.into_iter().flat_map(|b| b.1).collect())
    }

    /// Whether directory `ino` is indexed (`vexfs_core::dir_index`: its inode has
    /// `INODE_FLAG_INDEX`). Errors: `Format` for the flag on an inode that is no directory, or
    /// on a filesystem without `FEATURE_INCOMPAT_DIR_INDEX`.
    pub fn is_indexed(&self, ino: u32, inode: &Inode) -> Result<bool> {
        if inode.flags & INODE_FLAG_INDEX == 0 {
            return Ok(false);
        }
        let err = |what: &'static str| Error::Format {
            what: format!("inode {ino}"),
            err: FormatError::Corrupt { what, value: u64::from(inode.flags) },
        };
        if !inode.is_dir() {
            return Err(err("index flag on an inode that is no directory"));
        }
        if self.sb.feature_incompat & FEATURE_INCOMPAT_DIR_INDEX == 0 {
            return Err(err("indexed directory on a filesystem without the dir_index feature"));
        }
        Ok(true)
    }

    /// The header of directory `ino` when it is indexed: its device block (the directory's
    /// logical block 0) and its decoded contents (seed, buckets per depth); `None` for a
    /// linear directory. Errors: those of [`Self::is_indexed`], `Format` for a header that is a
    /// hole or does not decode (`vexfs_core::dir_index::Header::decode`), `Io`.
    pub fn dir_index_header(&self, ino: u32, inode: &Inode) -> Result<Option<(u64, Header)>> {
        if !self.is_indexed(ino, inode)? {
            return Ok(None);
        }
        let mut s = ImageDir::new(self, ino, inode)?;
        Ok(Some(read_header(&mut s).map_err(|e| dir_error(e, ino))?))
    }

    /// The (logical, device) blocks of directory `ino` that hold dirents, in logical order.
    ///
    /// A linear directory: all of its blocks, exactly `size / 4096` of them. An indexed
    /// directory: its buckets only (logical blocks 1 and up), **not** its header (logical
    /// block 0, see [`Self::dir_index_header`]); checked first as the format requires: the
    /// header decodes, every other mapped block is a bucket, no bucket is nested in another,
    /// they cover the key space once, as many at each depth as the header counts, and the size
    /// is `(highest mapped logical block + 1) * 4096`.
    ///
    /// Errors: `Format` for a linear directory's size that is not whole blocks or a hole, an
    /// indexed directory breaking a rule above or [`Self::is_indexed`]'s; `Io`.
    pub fn dir_blocks(&self, ino: u32, inode: &Inode) -> Result<Vec<(u64, u64)>> {
        let corrupt = |what: &'static str, value: u64| Error::Format {
            what: format!("directory {ino}"),
            err: vexfs_core::error::FormatError::Corrupt { what, value },
        };
        if let Some((_, h)) = self.dir_index_header(ino, inode)? {
            let mapped = mapped_blocks(&self.extents(ino, inode)?);
            let logicals: Vec<u64> = mapped.iter().map(|m| m.0).collect();
            let (issues, counts) = layout_issues(&logicals, inode.size);
            if let Some(i) = issues.first() {
                return Err(Error::Format { what: format!("directory {ino}"), err: i.format_error() });
            }
            if let Some(d) = (0..DEPTHS).find(|&d| counts.get(d) != h.leaves.get(d)) {
                return Err(corrupt("directory index bucket count differs from the buckets", d as u64));
            }
            return Ok(mapped.into_iter().filter(|m| m.0 != 0).collect());
        }
        if inode.size % BS != 0 {
            return Err(corrupt("directory size", inode.size));
        }
        let nblocks = inode.size / BS;
        let mut out = Vec::new();
        for e in self.extents(ino, inode)? {
            for i in 0..e.len as u64 {
                let l = e.logical as u64 + i;
                if l != out.len() as u64 {
                    return Err(corrupt("directory hole at block", out.len() as u64));
                }
                if l >= nblocks {
                    return Err(corrupt("directory block past its size", l));
                }
                out.push((l, e.start + i));
            }
        }
        if out.len() as u64 != nblocks {
            return Err(corrupt("directory hole at block", out.len() as u64));
        }
        Ok(out)
    }

    /// The entry `name` of directory `ino`, or `None`: an indexed directory's found through
    /// its index (`vexfs_core::dir_index::lookup`: the header and one bucket read), a linear
    /// one's by [`Self::read_dir`]. Errors: as [`Self::read_dir`] (an indexed directory's
    /// blocks on the way only).
    pub fn find_entry(&self, ino: u32, inode: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        if self.is_indexed(ino, inode)? {
            let mut s = ImageDir::new(self, ino, inode)?;
            let found = dir_index::lookup(&mut s, name).map_err(|e| dir_error(e, ino))?;
            return Ok(found.map(|(i, t)| DirEntry { name: name.to_vec(), ino: i, file_type: t }));
        }
        Ok(self.read_dir(ino, inode)?.into_iter().find(|e| e.name == name))
    }

    /// Resolves an absolute or root-relative `path` (`/`, `/a/b`, `a/b`; empty components
    /// and `.` are skipped, `..` goes to the parent). Symlinks are not followed. Errors:
    /// `NotFound`, `NotADirectory`, and those of reading the directories on the way.
    pub fn lookup(&self, path: &str) -> Result<u32> {
        let mut ino = ROOT_INO;
        let mut walked = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            let inode = self.inode(ino)?;
            if !inode.is_dir() {
                return Err(Error::NotADirectory(if walked.is_empty() { "/".into() } else { walked }));
            }
            walked.push('/');
            walked.push_str(comp);
            if comp == ".." {
                ino = inode.parent;
                continue;
            }
            ino = self
                .find_entry(ino, &inode, comp.as_bytes())?
                .map(|e| e.ino)
                .ok_or_else(|| Error::NotFound(walked.clone()))?;
        }
        Ok(ino)
    }
}

/// Reads and validates the superblock in block `n` of `dev`. Errors: `Io`, `Format`.
pub(crate) fn read_superblock<D: BlockDevice<Error = io::Error>>(dev: &D, n: u64) -> Result<Superblock> {
    let what = if n == 0 { "superblock".to_string() } else { format!("superblock copy in block {n}") };
    let mut b = [0u8; BLOCK_SIZE];
    dev.read_block(n, &mut b).map_err(Error::io(format!("reading {what}")))?;
    let sb = Superblock::decode(&b).map_err(Error::format(&what))?;
    sb.validate(dev.block_count()).map_err(Error::format(&what))?;
    Ok(sb)
}

/// An error of an extent-tree walk in the tools: the image's own, or a node failing its checks.
#[derive(Debug)]
pub(crate) enum TreeErr {
    /// Reading or writing the image.
    Image(Error),
    /// A node is corrupt.
    Format(FormatError),
}

impl From<FormatError> for TreeErr {
    fn from(f: FormatError) -> TreeErr {
        TreeErr::Format(f)
    }
}

impl From<Error> for TreeErr {
    fn from(e: Error) -> TreeErr {
        TreeErr::Image(e)
    }
}

impl TreeErr {
    /// The image error, a node's corruption named after inode `ino`'s extent tree.
    pub(crate) fn into_error(self, ino: u32) -> Error {
        match self {
            TreeErr::Image(e) => e,
            TreeErr::Format(err) => Error::Format { what: format!("inode {ino} extent tree"), err },
        }
    }
}

/// Extent-tree nodes read from an image (lookups and walks: nothing is written).
pub(crate) struct ReadTree<'a, D> {
    /// The image.
    pub(crate) img: &'a Image<D>,
}

impl<D: BlockDevice<Error = io::Error>> TreeStore for ReadTree<'_, D> {
    type Error = TreeErr;
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> std::result::Result<R, TreeErr> {
        Ok(f(&self.img.read_block(n)?[..]))
    }
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> std::result::Result<R, TreeErr> {
        Ok(self.img.read_sealed(n, f)?)
    }
    fn mark_checked(&mut self, n: u64) {
        self.img.mark_checked(n);
    }
    fn write<R>(&mut self, n: u64, _f: impl FnOnce(&mut [u8]) -> R) -> std::result::Result<R, TreeErr> {
        Err(TreeErr::Image(Error::Invalid(format!("block {n}: a read-only tree walk does not write"))))
    }
    fn alloc(&mut self, _goal: u64) -> std::result::Result<u64, TreeErr> {
        Err(TreeErr::Image(Error::Invalid("a read-only tree walk does not allocate".into())))
    }
    fn free(&mut self, n: u64) -> std::result::Result<(), TreeErr> {
        Err(TreeErr::Image(Error::Invalid(format!("block {n}: a read-only tree walk does not free"))))
    }
}
