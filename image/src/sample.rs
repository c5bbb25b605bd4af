//! Small populated filesystems for the tests of the tools (fsck, vexctl) and of this crate.

use std::io;

use vexfs_core::format::layout::{MkfsParams, DEFAULT_EF_CONSTRUCTION, DEFAULT_M};
use vexfs_core::format::superblock::{Metric, ROOT_INO};
use vexfs_core::io::BlockDevice;

use crate::writer::{FileOpts, Writer};
use crate::{mkfs, Image, Result};

/// Blocks of the sample filesystem (8 MiB).
pub const SAMPLE_BLOCKS: u64 = 2048;

/// Parameters of a small filesystem: `block_count` blocks, dimension 8, cosine, fixed UUID,
/// label `sample`, time and seed.
pub fn params(block_count: u64) -> MkfsParams {
    let mut label = [0u8; 32];
    label[..6].copy_from_slice(b"sample");
    MkfsParams {
        block_count,
        inode_count: None,
        journal_blocks: None,
        vec_capacity: None,
        dim: 8,
        metric: Metric::Cosine,
        m: DEFAULT_M,
        ef_construction: DEFAULT_EF_CONSTRUCTION,
        uuid: *b"vexfs-sample-id!",
        label,
        now: 1_700_000_000,
        seed: 42,
    }
}

/// Deterministic content of `len` bytes (no zero blocks, so no holes).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

/// Inode numbers of the sample tree built by [`build`].
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    /// `/hello.txt`: "hello, vexfs\n", with a second link `/hard`.
    pub hello: u32,
    /// `/empty`: 0 bytes.
    pub empty: u32,
    /// `/docs`.
    pub docs: u32,
    /// `/docs/big.bin`: `pattern(5 * 4096 + 100, 1)`, one extent.
    pub big: u32,
    /// `/docs/frag.bin`: `pattern(10 * 4096, 2)`, one extent per block (uses an extent block).
    pub frag: u32,
    /// `/docs/sparse.bin`: 4 blocks, the middle two a hole.
    pub sparse: u32,
    /// `/docs/sub`: an empty directory.
    pub sub: u32,
    /// `/link`: symlink to `docs/big.bin`.
    pub link: u32,
    /// `/many`: a directory of 150 entries over two blocks, all links to `/empty`.
    pub many: u32,
}

/// Content of `/docs/sparse.bin`.
pub fn sparse_content() -> Vec<u8> {
    let mut v = pattern(4 * 4096, 3);
    v[4096..3 * 4096].fill(0);
    v
}

/// Formats `dev` with [`params`]`(dev.block_count())` and builds the sample tree.
/// Errors: those of [`mkfs::format`] and [`Writer`].
pub fn build<D: BlockDevice<Error = io::Error>>(mut dev: D) -> Result<(Image<D>, Tree)> {
    let p = params(dev.block_count());
    mkfs::format(&mut dev, &p, false)?;
    let mut w = Writer::new(Image::open(dev)?)?;
    let r = ROOT_INO;
    let hello = w.create(r, "hello.txt", b"hello, vexfs\n")?;
    let empty = w.create(r, "empty", b"")?;
    let docs = w.mkdir(r, "docs", 0o755)?;
    let big = w.create(docs, "big.bin", &pattern(5 * 4096 + 100, 1))?;
    let frag = w.create_with(
        docs,
        "frag.bin",
        &pattern(10 * 4096, 2),
        FileOpts { max_extent_blocks: 1, ..FileOpts::default() },
    )?;
    let sparse = w.create(docs, "sparse.bin", &sparse_content())?;
    let sub = w.mkdir(docs, "sub", 0o700)?;
    let link = w.symlink(r, "link", "docs/big.bin")?;
    w.link(r, "hard", hello)?;
    let many = w.mkdir(r, "many", 0o755)?;
    for i in 0..150 {
        w.link(many, &format!("an-entry-with-a-rather-long-name-{i:03}"), empty)?;
    }
    let img = w.commit()?;
    Ok((img, Tree { hello, empty, docs, big, frag, sparse, sub, link, many }))
}
