//! Indexed directories (`vexfs_core::dir_index`) on an image: the core's [`DirRead`] over an
//! [`Image`] ([`ImageDir`]), its [`DirStore`] over an image and a block allocator ([`HostDir`]:
//! the offline writer's, fsck's repair), and the check of an index's block layout that the
//! reader and fsck share ([`layout_issues`]).
//!
//! Size rule (the tools' and, to match, the kernel's): an indexed directory's `size` is
//! `(highest mapped logical block + 1) * 4096`; its `blocks` counts its mapped blocks (header
//! and buckets) and its extent-tree nodes, as for any file.

use std::io;

use vexfs_core::dir_index::{bucket_of, DirRead, DirStore, MAX_DEPTH, MAX_SPLITS};
use vexfs_core::error::FormatError;
use vexfs_core::extent_tree::TreeStore;
use vexfs_core::file_extents::FileExtents;
use vexfs_core::format::block::Csum;
use vexfs_core::format::extent::Extent;
use vexfs_core::format::inode::{Inode, INODE_FLAG_INDEX};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::io::{Block, BlockDevice};

use crate::image::{ReadTree, TreeErr};
use crate::{Error, Image, Result};

const BS: u64 = BLOCK_SIZE as u64;

/// Depths of the trie, `0..=MAX_DEPTH`.
pub(crate) const DEPTHS: usize = MAX_DEPTH as usize + 1;

/// The error of an index operation on directory `ino` as an image error: the store's as it
/// is, the index's corruption named after the directory.
pub(crate) fn dir_error(e: TreeErr, ino: u32) -> Error {
    match e {
        TreeErr::Image(e) => e,
        TreeErr::Format(err) => Error::Format { what: format!("directory {ino} index"), err },
    }
}

/// `(logical, device)` of every block `extents` map, in logical order.
pub(crate) fn mapped_blocks(extents: &[Extent]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for e in extents {
        for i in 0..u64::from(e.len) {
            out.push((u64::from(e.logical) + i, e.start + i));
        }
    }
    out
}

/// What is wrong with the block layout of an indexed directory (its header aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LayoutIssue {
    /// Logical block 0, the header, is a hole.
    NoHeader,
    /// `count` mapped logical blocks are no bucket (past the deepest depth), the first `first`.
    NotABucket {
        /// The first of them.
        first: u64,
        /// How many.
        count: u64,
    },
    /// Bucket `bucket` and bucket `ancestor`, which holds all of its keys, are both mapped.
    Nested {
        /// The deeper bucket's logical block.
        bucket: u64,
        /// The shallower one's.
        ancestor: u64,
    },
    /// Keys have no bucket: the mapped buckets cover `covered` of the `2^30` key ranges of
    /// the deepest depth; `first` is the first key without one.
    Uncovered {
        /// Deepest-depth ranges covered.
        covered: u64,
        /// The first key no bucket holds.
        first: u64,
    },
    /// The size is not `(highest mapped logical block + 1) * 4096`.
    Size {
        /// The inode's size.
        size: u64,
        /// The size the mapped blocks give.
        want: u64,
    },
}

impl LayoutIssue {
    /// The issue as a [`FormatError`] (the reader's error).
    pub(crate) fn format_error(&self) -> FormatError {
        let (what, value) = match *self {
            LayoutIssue::NoHeader => ("directory index without a header", 0),
            LayoutIssue::NotABucket { first, .. } => ("directory index block that is no bucket", first),
            LayoutIssue::Nested { bucket, .. } => ("directory index bucket nested in another", bucket),
            LayoutIssue::Uncovered { first, .. } => ("directory index: no bucket for key", first),
            LayoutIssue::Size { size, .. } => ("directory size", size),
        };
        FormatError::Corrupt { what, value }
    }
}

/// Checks the logical blocks an indexed directory maps (`logicals`, ascending) against the
/// rules of `vexfs_core::dir_index` and its `size`; returns the issues and the number of
/// mapped buckets at each depth.
pub(crate) fn layout_issues(logicals: &[u64], size: u64) -> (Vec<LayoutIssue>, [u32; DEPTHS]) {
    let mut issues = Vec::new();
    let mut counts = [0u32; DEPTHS];
    if logicals.first() != Some(&0) {
        issues.push(LayoutIssue::NoHeader);
    }
    let not_buckets: Vec<u64> = logicals.iter().copied().filter(|&l| l != 0 && bucket_of(l).is_none()).collect();
    if let Some(&first) = not_buckets.first() {
        issues.push(LayoutIssue::NotABucket { first, count: not_buckets.len() as u64 });
    }
    let is_mapped = |l: u64| logicals.binary_search(&l).is_ok();
    // Ranges of the deepest depth the buckets without a mapped ancestor cover, and where.
    let mut covered = 0u64;
    let mut tops: Vec<(u64, u64)> = Vec::new();
    for &l in logicals {
        let Some((d, p)) = bucket_of(l) else { continue };
        if let Some(c) = counts.get_mut(d as usize) {
            *c = c.saturating_add(1);
        }
        let mut a = l >> 1;
        let mut nested = false;
        while a >= 1 {
            if is_mapped(a) {
                issues.push(LayoutIssue::Nested { bucket: l, ancestor: a });
                nested = true;
                break;
            }
            a >>= 1;
        }
        if !nested {
            let shift = MAX_DEPTH - d;
            covered += 1 << shift;
            tops.push((p << shift, (p + 1) << shift));
        }
    }
    if covered != 1 << MAX_DEPTH {
        tops.sort_unstable();
        let mut next = 0u64;
        for (lo, hi) in tops {
            if lo > next {
                break;
            }
            next = next.max(hi);
        }
        // Back to a 62-bit key: the ranges are in units of the deepest depth's buckets.
        let first = next << (vexfs_core::dir_index::KEY_BITS - MAX_DEPTH);
        issues.push(LayoutIssue::Uncovered { covered, first });
    }
    let want = logicals.last().map_or(0, |&l| (l + 1) * BS);
    if size != want {
        issues.push(LayoutIssue::Size { size, want });
    }
    (issues, counts)
}

/// An indexed directory of an image, read only: `vexfs_core::dir_index`'s [`DirRead`].
pub(crate) struct ImageDir<'a, D> {
    img: &'a Image<D>,
    fx: FileExtents,
}

impl<'a, D: BlockDevice<Error = io::Error>> ImageDir<'a, D> {
    /// Directory `ino` (whose inode is `inode`) of `img`. Errors: `Format` for inline extents
    /// that fail their checks.
    pub(crate) fn new(img: &'a Image<D>, ino: u32, inode: &Inode) -> Result<Self> {
        let fx = img.file_extents(ino, inode);
        fx.check_inode().map_err(Error::format(format!("inode {ino}")))?;
        Ok(ImageDir { img, fx })
    }
}

impl<D: BlockDevice<Error = io::Error>> DirRead for ImageDir<'_, D> {
    type Error = TreeErr;
    fn map(&mut self, logical: u64) -> std::result::Result<Option<u64>, TreeErr> {
        let ino = u32::try_from(self.fx.owner).unwrap_or(u32::MAX);
        let m = self.fx.lookup(&mut ReadTree { img: self.img }, logical).map_err(|e| e.into_error(ino))?;
        Ok(m.map(|(b, _)| b))
    }
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> std::result::Result<R, TreeErr> {
        Ok(f(&self.img.read_block(n)?[..]))
    }
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> std::result::Result<R, TreeErr> {
        Ok(self.img.read_sealed(n, f)?)
    }
    fn mark_checked(&mut self, n: u64) {
        self.img.mark_checked(n);
    }
    fn owner(&self) -> u64 {
        self.fx.owner
    }
}

/// What a [`HostDir`] changes a directory in: an image and its block allocator.
pub(crate) trait DirHost {
    /// The image's device.
    type Dev: BlockDevice<Error = io::Error>;
    /// The image, to read.
    fn img(&self) -> &Image<Self::Dev>;
    /// The image, to write.
    fn img_mut(&mut self) -> &mut Image<Self::Dev>;
    /// Takes a free block of the data region. Errors: `Invalid` when none is free (ENOSPC).
    fn take_block(&mut self) -> Result<u64>;
    /// Gives back block `n`, which the directory no longer maps.
    fn give_block(&mut self, n: u64);
}

/// Extent-tree nodes of a [`HostDir`]'s map: from its host's allocator, counted in `blocks`.
struct HostTree<'b, H> {
    host: &'b mut H,
    blocks: u64,
}

impl<H: DirHost> TreeStore for HostTree<'_, H> {
    type Error = TreeErr;
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> std::result::Result<R, TreeErr> {
        Ok(f(&self.host.img().read_block(n)?[..]))
    }
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> std::result::Result<R, TreeErr> {
        Ok(self.host.img().read_sealed(n, f)?)
    }
    fn mark_checked(&mut self, n: u64) {
        self.host.img().mark_checked(n);
    }
    fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> std::result::Result<R, TreeErr> {
        let mut b = self.host.img().read_block(n)?;
        let r = f(&mut b[..]);
        self.host.img_mut().write_block(n, &b)?;
        Ok(r)
    }
    fn init<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> std::result::Result<R, TreeErr> {
        let mut b: Box<Block> = Box::new([0u8; BLOCK_SIZE]);
        let r = f(&mut b[..]);
        self.host.img_mut().write_block(n, &b)?;
        Ok(r)
    }
    fn alloc(&mut self, _goal: u64) -> std::result::Result<u64, TreeErr> {
        let b = self.host.take_block()?;
        self.blocks = self.blocks.saturating_add(1);
        Ok(b)
    }
    fn free(&mut self, n: u64) -> std::result::Result<(), TreeErr> {
        self.host.give_block(n);
        self.blocks = self.blocks.saturating_sub(1);
        Ok(())
    }
}

/// A directory being changed on an image: `vexfs_core::dir_index`'s [`DirStore`]. Its inode
/// is kept here and written after every change of the map (`alloc`, `unmap`), with `blocks`
/// and `size` (the rule in the module's docs) kept right.
pub(crate) struct HostDir<'a, H> {
    host: &'a mut H,
    ino: u32,
    inode: Inode,
}

impl<'a, H: DirHost> HostDir<'a, H> {
    /// Directory `ino`, whose inode is `inode`, changed in `host`.
    pub(crate) fn new(host: &'a mut H, ino: u32, inode: Inode) -> Self {
        HostDir { host, ino, inode }
    }

    fn fx(&self) -> FileExtents {
        self.host.img().file_extents(self.ino, &self.inode)
    }

    /// Sets the inode's index flag (after [`vexfs_core::dir_index::convert`]) and writes it.
    pub(crate) fn set_indexed(&mut self) -> std::result::Result<(), TreeErr> {
        self.inode.flags |= INODE_FLAG_INDEX;
        self.save()
    }

    fn save(&mut self) -> std::result::Result<(), TreeErr> {
        Ok(self.host.img_mut().write_inode(self.ino, &self.inode)?)
    }

    /// Stores `fx` and `blocks` in the inode, sets its size from the highest mapped block,
    /// writes it.
    fn store_map(&mut self, fx: &FileExtents, blocks: u64) -> std::result::Result<(), TreeErr> {
        self.inode.blocks = blocks;
        set_map(&mut self.inode, fx);
        let end = fx.mapped_end(&mut ReadTree { img: self.host.img() }).map_err(|e| e.into_error(self.ino))?;
        self.inode.size = end.saturating_mul(BS);
        self.save()
    }
}

impl<H: DirHost> DirRead for HostDir<'_, H> {
    type Error = TreeErr;
    fn map(&mut self, logical: u64) -> std::result::Result<Option<u64>, TreeErr> {
        let fx = self.fx();
        let m = fx.lookup(&mut ReadTree { img: self.host.img() }, logical).map_err(|e| e.into_error(self.ino))?;
        Ok(m.map(|(b, _)| b))
    }
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> std::result::Result<R, TreeErr> {
        Ok(f(&self.host.img().read_block(n)?[..]))
    }
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> std::result::Result<R, TreeErr> {
        Ok(self.host.img().read_sealed(n, f)?)
    }
    fn mark_checked(&mut self, n: u64) {
        self.host.img().mark_checked(n);
    }
    fn owner(&self) -> u64 {
        u64::from(self.ino)
    }
}

impl<H: DirHost> DirStore for HostDir<'_, H> {
    fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> std::result::Result<R, TreeErr> {
        let mut b = self.host.img().read_block(n)?;
        let r = f(&mut b[..]);
        self.host.img_mut().write_block(n, &b)?;
        Ok(r)
    }

    fn alloc(&mut self, logical: u64) -> std::result::Result<u64, TreeErr> {
        let mut fx = self.fx();
        fx.check_inode().map_err(Error::format(format!("inode {}", self.ino)))?;
        let b = self.host.take_block()?;
        // The on-disk count may be anything (a corrupt image): it saturates.
        let mut t = HostTree { host: &mut *self.host, blocks: self.inode.blocks.saturating_add(1) };
        if let Err(e) = fx.add_block(&mut t, logical, b) {
            self.host.give_block(b);
            return Err(TreeErr::Image(e.into_error(self.ino)));
        }
        let blocks = t.blocks;
        self.store_map(&fx, blocks)?;
        Ok(b)
    }

    fn unmap(&mut self, logical: u64) -> std::result::Result<(), TreeErr> {
        let mut fx = self.fx();
        let mut t = HostTree { host: &mut *self.host, blocks: self.inode.blocks };
        let r = loop {
            let step = fx.punch(&mut t, logical, logical + 1, 4, |t, start, len| {
                for n in start..start.saturating_add(len) {
                    t.host.give_block(n);
                }
                t.blocks = t.blocks.saturating_sub(len);
                Ok(())
            });
            match step {
                Ok(true) => break Ok(()),
                Ok(false) => {}
                Err(e) => break Err(TreeErr::Image(e.into_error(self.ino))),
            }
        };
        // The map is consistent after an error too (`FileExtents::punch`): keep it.
        let blocks = t.blocks;
        self.store_map(&fx, blocks)?;
        r
    }

    fn copy(&mut self, from: u64, to: u64) -> std::result::Result<(), TreeErr> {
        let b = self.host.img().read_block(from)?;
        Ok(self.host.img_mut().write_block(to, &b)?)
    }

    fn no_space(&mut self) -> TreeErr {
        TreeErr::Image(Error::Invalid(format!(
            "directory {}: no room for the name in its bucket after {MAX_SPLITS} splits (ENOSPC)",
            self.ino
        )))
    }
}

/// Stores a block map into its inode.
pub(crate) fn set_map(inode: &mut Inode, fx: &FileExtents) {
    inode.extents = fx.inline;
    inode.nr_extents = fx.nr_extents;
    inode.extent_block = fx.root;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_sound_index_has_no_issue() {
        // Header, then buckets 2 (depth 1, prefix 0), 6 and 7 (depth 2, prefixes 2 and 3).
        let (issues, counts) = layout_issues(&[0, 2, 6, 7], 8 * BS);
        assert_eq!(issues, vec![]);
        assert_eq!(&counts[..3], &[0, 1, 2]);
    }

    #[test]
    fn layout_issues_name_what_is_wrong() {
        let (issues, _) = layout_issues(&[0, 2, 6], 7 * BS);
        assert_eq!(issues, vec![LayoutIssue::Uncovered { covered: 3 << 28, first: 3 << 60 }]);
        let (issues, _) = layout_issues(&[0, 1, 2, 3], 4 * BS);
        assert_eq!(
            issues,
            vec![LayoutIssue::Nested { bucket: 2, ancestor: 1 }, LayoutIssue::Nested { bucket: 3, ancestor: 1 }]
        );
        let (issues, _) = layout_issues(&[1], 2 * BS);
        assert_eq!(issues, vec![LayoutIssue::NoHeader]);
        let (issues, _) = layout_issues(&[0, 1, 1 << 31], 3 * BS);
        assert_eq!(
            issues,
            vec![
                LayoutIssue::NotABucket { first: 1 << 31, count: 1 },
                LayoutIssue::Size { size: 3 * BS, want: ((1 << 31) + 1) * BS }
            ]
        );
    }
}
