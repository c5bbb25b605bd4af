//! The structure-aware mutations of vexfs images behind `mutate_image` (tests/guest/090) and
//! the host fuzz targets `fsck`, `reader`, `search` and `writer` (fuzz/): a populated base
//! image made by the offline writer ([`build_base`], [`build_base_v3`] and [`build_base_pq`]
//! for the guest, [`build_small_base`] for the host), a catalog of the structures it holds, and
//! mutations inside them with their checksums recomputed by core's own encoders. See
//! `src/bin/mutate_image.rs` for the kinds and values.
//!
//! Guest 090 names its regressions by seed and index over `build_base(2048)`: for that image
//! the draws of [`mutate`] must stay what they are (a kind that only a small base offers, the
//! journal records, is drawn only when the catalog holds some; so are the kinds of the format
//! v3 structures that [`build_base_v3`] and [`build_small_base`] add: extent-tree index nodes,
//! xattr blocks, device numbers; and the PQ kinds, with [`build_base_pq`]'s codebook).

use std::collections::BTreeMap;

use vexfs_image::device::MemDevice;
use vexfs_image::mkfs::{self, FormatOpts, PqCodebook};
use vexfs_image::vexfs_core::crc32c::crc32c_parts;
use vexfs_image::vexfs_core::dir_index::INDEX_MAGIC;
use vexfs_image::vexfs_core::embed::Indexing;
use vexfs_image::vexfs_core::extent_tree::node_depth;
use vexfs_image::vexfs_core::format::block::seal_header;
use vexfs_image::vexfs_core::format::dir::{self, DIR_MAGIC};
use vexfs_image::vexfs_core::format::extent::{EXTENT_HEADER, EXTENT_MAGIC};
use vexfs_image::vexfs_core::format::inode::{
    is_special, Inode, MAX_FILE_SIZE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};
use vexfs_image::vexfs_core::format::journal::{
    peek_record, record_checksum, JournalSuper, JOURNAL_CLEAN, JOURNAL_MAGIC, MAX_RECORD_PAYLOAD, RECORD_HEADER,
};
use vexfs_image::vexfs_core::format::layout::MkfsParams;
use vexfs_image::vexfs_core::format::superblock::{
    Metric, Region, Superblock, FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_NODE_RECORDS, FEATURE_INCOMPAT_PQ,
    FEATURE_INCOMPAT_RECOVER, FEATURE_INCOMPAT_SQ8, ROOT_INO, STATE_CLEAN,
};
use vexfs_image::vexfs_core::format::vector::{
    splitmix64, HnswGeometry, HnswHeader, MapEntry, UpperTable, HNSW_MAGIC, MAP_ENTRY, NO_SLOT, VEC_IDS_HEADER,
    VEC_IDS_MAGIC,
};
use vexfs_image::vexfs_core::format::xattr::{
    self, XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT, XATTR_MAGIC, XATTR_SECURITY, XATTR_TRUSTED, XATTR_USER,
};
use vexfs_image::vexfs_core::format::{bit_test, BLOCK_SIZE, INODE_SIZE};
use vexfs_image::vexfs_core::io::Block;
use vexfs_image::vexfs_core::journal::{self, SCRATCH_BYTES};
use vexfs_image::vexfs_core::pq::PqGeometry;
use vexfs_image::vexfs_core::sq8;
use vexfs_image::writer::{FileOpts, Writer};
use vexfs_image::{sample, Image};

const BS: u64 = BLOCK_SIZE as u64;

/// Errors are messages.
pub type Res<T> = Result<T, String>;

/// Wraps an error with what was being done.
pub fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The generator: SplitMix64 (the format's own mixer), so a seed means the same bytes on every
/// build and machine, host and guest; or, for a coverage-guided fuzzer, the fuzzer's input
/// bytes, 8 at a time, then SplitMix64 once they run out.
pub struct Rng {
    state: u64,
    input: Vec<u8>,
    pos: usize,
}

impl Rng {
    /// The generator of mutant `index` of `seed`.
    pub fn new(seed: u64, index: u64) -> Rng {
        Rng { state: splitmix64(seed ^ splitmix64(index.wrapping_add(0x5EED))), input: Vec::new(), pos: 0 }
    }
    /// A generator whose draws are the bytes of `input` (a fuzzer's), then SplitMix64.
    pub fn from_bytes(input: &[u8]) -> Rng {
        Rng { state: input.len() as u64, input: input.to_vec(), pos: 0 }
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        if let Some(rest) = self.input.get(self.pos..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(8);
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&rest[..n]);
            self.pos += n;
            return u64::from_le_bytes(b);
        }
        self.state = splitmix64(self.state);
        self.state
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        v.get(self.below(v.len() as u64) as usize)
    }
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// The part of the tree both bases hold: `/hello.txt` and its hard link `/hard`, an empty
/// file, `/docs` with `big.bin` (`big_blocks` blocks and 100 bytes, one extent), `frag.bin`
/// (`frag_blocks` one-block extents) and `sparse.bin`, `docs/sub/deep/leaf` and the symlink
/// `deep/up`, and the symlink `/link`. Returns the empty file's inode.
fn common_tree(w: &mut Writer<MemDevice>, big_blocks: usize, frag_blocks: usize) -> Res<u32> {
    let e = |what: &'static str| move |e: vexfs_image::Error| format!("{what}: {e}");
    let r = ROOT_INO;
    let hello = w.create(r, "hello.txt", b"hello, vexfs\n").map_err(e("create"))?;
    w.link(r, "hard", hello).map_err(e("link"))?;
    let empty = w.create(r, "empty", b"").map_err(e("create"))?;
    let docs = w.mkdir(r, "docs", 0o755).map_err(e("mkdir"))?;
    w.create(docs, "big.bin", &sample::pattern(big_blocks * 4096 + 100, 1)).map_err(e("create"))?;
    let frag_opts = FileOpts { max_extent_blocks: 1, ..FileOpts::default() };
    w.create_with(docs, "frag.bin", &sample::pattern(frag_blocks * 4096, 2), frag_opts).map_err(e("create"))?;
    w.create(docs, "sparse.bin", &sample::sparse_content()).map_err(e("create"))?;
    let sub = w.mkdir(docs, "sub", 0o700).map_err(e("mkdir"))?;
    let deep = w.mkdir(sub, "deep", 0o755).map_err(e("mkdir"))?;
    w.create(deep, "leaf", b"leaf\n").map_err(e("create"))?;
    w.symlink(r, "link", "docs/big.bin").map_err(e("symlink"))?;
    w.symlink(deep, "up", "../../..").map_err(e("symlink"))?;
    Ok(empty)
}

/// A deterministic vector of dimension `dim` (components in -1..1).
pub fn vector(dim: u32, key: u64) -> Vec<f32> {
    let mut s = key;
    (0..dim)
        .map(|_| {
            s = splitmix64(s);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The base image of `blocks` blocks (at least 2048), as bytes: files with one extent, with an
/// extent block and with holes, nested and two-block directories, symlinks, hard links, files
/// with embeddings inline and in vector-id blocks, tombstones and pending vectors. Guest 090's
/// regressions are named over it (`build_base(2048)`): it stays as it is; new structures go
/// into [`build_base_v3`].
pub fn build_base(blocks: u64) -> Res<Vec<u8>> {
    let w = base_writer(blocks, FormatOpts::default())?;
    let img = w.commit().map_err(err("commit"))?;
    Ok(img.into_device().bytes)
}

/// [`build_base`]'s tree and the format v3 structures of [`v3_tree`] (a 40-extent tree of
/// fanout 3, special files, xattr blocks with ACLs), on a filesystem with SQ8 codes (the
/// feature `SQ8`, its codes region: searches walk the codes): the base of guest 090's new
/// mutants.
pub fn build_base_v3(blocks: u64) -> Res<Vec<u8>> {
    let mut w =
        base_writer(blocks, FormatOpts { dir_index: true, sq8_shift: Some(SQ8_SHIFT), ..FormatOpts::default() })?;
    v3_tree(&mut w, 40)?;
    let img = w.commit().map_err(err("commit"))?;
    Ok(img.into_device().bytes)
}

/// Sub-quantisers of [`build_base_pq`]'s codes: 4 bytes per code, 2 components each (a
/// sub-quantiser's 256 centroids fill half a block: bytes past them to mutate).
pub const PQ_BASE_M: u32 = 4;

/// [`build_base_v3`]'s tree on a filesystem with PQ codes in node records (the features `PQ`
/// and `NODE_RECORDS`: vectors and level-0 records together in the data region, the codebook
/// and the codes in the codes region; searches walk the codes and expand nodes from their
/// records): the base of guest 090's PQ mutants, which add the codebook and the PQ codes to
/// the structures hit ([`KINDS_PQ`]). The codebook is trained on 144 vectors of the kind the
/// base embeds (fewer than 256: each centroid is one of them).
pub fn build_base_pq(blocks: u64) -> Res<Vec<u8>> {
    let dim = sample::params(blocks).dim;
    // The vectors base_writer embeds (keys i * 1000 + c), as the training sample.
    let rows: Vec<f32> = (0..24u64).flat_map(|i| (0..6).flat_map(move |c| vector(dim, i * 1000 + c))).collect();
    let centroids = vexfs_image::pq_train::train(&rows, dim as usize, PQ_BASE_M as usize, 1, 1)?;
    let pq = Some(PqCodebook { m: PQ_BASE_M, centroids: centroids.into() });
    let mut w = base_writer(blocks, FormatOpts { dir_index: true, pq, node_records: true, ..FormatOpts::default() })?;
    v3_tree(&mut w, 40)?;
    let img = w.commit().map_err(err("commit"))?;
    Ok(img.into_device().bytes)
}

/// The format v3 structures of the bases, added to a [`common_tree`] (with `dir_index`, `/ix`:
/// an indexed directory of 60 links to `/hello.txt`): `/tree.bin`, a file of
/// `tree_extents` one-block extents whose tree has a fanout of 3 (index nodes, 2 levels or
/// more for 14 extents or more); a FIFO `/fifo` (with a `trusted.` attribute), the devices
/// `/null` (character, 1:3) and `/sda` (block, 8:0), a socket `/sock`; xattr blocks on
/// `/hello.txt` (`user.`, `security.`, an access ACL) and on `/docs` (`user.` and a default
/// ACL).
fn v3_tree(w: &mut Writer<MemDevice>, tree_extents: usize) -> Res<()> {
    let e = |what: &'static str| move |e: vexfs_image::Error| format!("{what}: {e}");
    let r = ROOT_INO;
    let opts = FileOpts { max_extent_blocks: 1, tree_fanout: 3, ..FileOpts::default() };
    w.create_with(r, "tree.bin", &sample::pattern(tree_extents * 4096 - 7, 3), opts).map_err(e("create"))?;
    let fifo = w.mknod(r, "fifo", S_IFIFO | 0o644, 0).map_err(e("mknod"))?;
    w.mknod(r, "null", S_IFCHR | 0o666, 0x103).map_err(e("mknod"))?;
    w.mknod(r, "sda", S_IFBLK | 0o660, 0x800).map_err(e("mknod"))?;
    w.mknod(r, "sock", S_IFSOCK | 0o755, 0).map_err(e("mknod"))?;
    w.set_xattr(fifo, XATTR_TRUSTED, "t", Some(b"trusted")).map_err(e("set xattr"))?;
    let hello = w.image().lookup("/hello.txt").map_err(e("lookup"))?;
    let docs = w.image().lookup("/docs").map_err(e("lookup"))?;
    w.set_xattr(hello, XATTR_USER, "comment", Some(b"a file with attributes")).map_err(e("set xattr"))?;
    w.set_xattr(hello, XATTR_SECURITY, "label", Some(b"system_u:object_r:tmp_t")).map_err(e("set xattr"))?;
    w.set_xattr(
        hello,
        XATTR_ACL_ACCESS,
        "",
        Some(&acl(&[(1, 6, u32::MAX), (2, 4, 1000), (4, 4, u32::MAX), (0x10, 6, u32::MAX), (0x20, 4, u32::MAX)])),
    )
    .map_err(e("set acl"))?;
    w.set_xattr(docs, XATTR_USER, "dir", Some(b"d")).map_err(e("set xattr"))?;
    if w.image().sb().feature_incompat & FEATURE_INCOMPAT_DIR_INDEX != 0 {
        // 60 names of 90 bytes: more than a block, so the directory is indexed (a header and
        // buckets of depth 1 or 2).
        let ix = w.mkdir(r, "ix", 0o755).map_err(e("mkdir"))?;
        for i in 0..60 {
            w.link(ix, &format!("{i:02}-{}", "i".repeat(87)), hello).map_err(e("link"))?;
        }
    }
    w.set_xattr(
        docs,
        XATTR_ACL_DEFAULT,
        "",
        Some(&acl(&[(1, 7, u32::MAX), (4, 5, u32::MAX), (8, 5, 100), (0x10, 5, u32::MAX), (0x20, 0, u32::MAX)])),
    )
    .map_err(e("set acl"))?;
    Ok(())
}

/// A POSIX ACL in the kernel's `posix_acl_xattr` form (version 2; entries `(tag, perm, id)`,
/// `u32::MAX` the id of an entry without one).
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// The SQ8 scale of the bases with codes: [`vector`]'s components lie in `[-1, 1)`, coded
/// without clamping at `2^6` (and 1.0 itself would clamp at 7).
pub const SQ8_SHIFT: i32 = 6;

/// [`build_base`]'s writer before its commit, on a filesystem with the features of `opts`.
fn base_writer(blocks: u64, opts: FormatOpts) -> Res<Writer<MemDevice>> {
    let mut dev = MemDevice::new(blocks);
    let p = MkfsParams { vec_capacity: Some(256), ..sample::params(blocks) };
    mkfs::format_with(&mut dev, &p, true, opts).map_err(err("mkfs"))?;
    let img = Image::open(dev).map_err(err("open"))?;
    let mut w = Writer::new(img).map_err(err("writer"))?;
    w.set_dir_seeds(Some(7));
    let e = |what: &'static str| move |e: vexfs_image::Error| format!("{what}: {e}");
    let r = ROOT_INO;
    let empty = common_tree(&mut w, 5, 10)?;
    let many = w.mkdir(r, "many", 0o755).map_err(e("mkdir"))?;
    for i in 0..120 {
        w.link(many, &format!("an-entry-with-a-rather-long-name-{i:03}"), empty).map_err(e("link"))?;
    }
    let dim = w.image().sb().vec_dim;
    let vdir = w.mkdir(r, "vec", 0o755).map_err(e("mkdir"))?;
    w.set_stepwise_purge(true).map_err(e("stepwise purge"))?;
    let mut files = Vec::new();
    for i in 0..24u64 {
        let ino = w
            .create(vdir, &format!("v{i:02}"), &sample::pattern(100 + i as usize * 300, i as u8))
            .map_err(e("create"))?;
        let chunks = if i == 5 {
            40
        } else if i == 11 {
            9
        } else {
            i % 6 + 1
        };
        let vs: Vec<Vec<f32>> = (0..chunks).map(|c| vector(dim, i * 1000 + c)).collect();
        w.set_embeddings(ino, &vs).map_err(e("set embeddings"))?;
        files.push(ino);
    }
    // Tombstones (the purge is left to steps nobody runs), then pending vectors.
    for &i in &[2usize, 9, 17] {
        w.remove_embeddings(files[i]).map_err(e("remove embeddings"))?;
    }
    w.set_indexing(Indexing::Deferred);
    for &i in &[3usize, 20] {
        let vs: Vec<Vec<f32>> = (0..3).map(|c| vector(dim, 77_000 + i as u64 * 10 + c)).collect();
        w.set_embeddings(files[i], &vs).map_err(e("set pending embeddings"))?;
    }
    Ok(w)
}

/// Blocks of [`build_small_base`]'s image (640 KiB, 64 blocks of them the smallest journal).
pub const SMALL_BASE_BLOCKS: u64 = 160;

/// The base image of the host fuzz targets, as bytes: every structure of [`build_base_v3`] in
/// the smallest image that holds them (a copy, a check or a walk of it costs a third of the
/// 2 MiB base's), and a journal holding a committed transaction that is not yet applied in
/// place, `RECOVER` set (a crash just after a commit): fsck, the offline writer and the kernel
/// replay it, the reader sees the state before it. Dimension 4, HNSW `m` 4 (upper levels with
/// few vectors), 32 inodes, 48 vector slots, SQ8 codes ([`SQ8_SHIFT`]: the searches walk them). The tree: `/hello.txt` and its hard link, an
/// empty file, `/docs` with a one-extent file, one of 7 one-block extents (an extent block),
/// a sparse file, `sub/deep/leaf` and a symlink up, a symlink at the root, `/long` (20
/// entries of long names, the longest 255 bytes, over two blocks), `/vec` with 8 files of 1 to
/// 9 embeddings (one in a vector-id block), 2 of them removed (tombstones) and 2 replaced by
/// pending vectors; [`v3_tree`]'s special files and xattr blocks, and its `/tree.bin` of 16
/// extents (10 in a tree of depth 2 and 7 nodes). The journal's transaction creates `/journaled` (its data written home
/// before the commit, as the kernel does); a small one, as every replay reads it whole.
pub fn build_small_base() -> Res<Vec<u8>> {
    let blocks = SMALL_BASE_BLOCKS;
    let mut dev = MemDevice::new(blocks);
    let p = MkfsParams {
        inode_count: Some(32),
        journal_blocks: Some(64),
        vec_capacity: Some(48),
        dim: 4,
        metric: Metric::L2,
        m: 4,
        ef_construction: 32,
        ..sample::params(blocks)
    };
    mkfs::format_with(
        &mut dev,
        &p,
        true,
        FormatOpts { dir_index: true, sq8_shift: Some(SQ8_SHIFT), pq: None, node_records: false },
    )
    .map_err(err("mkfs"))?;
    let mut w = Writer::new(Image::open(dev).map_err(err("open"))?).map_err(err("writer"))?;
    w.set_dir_seeds(Some(7));
    let e = |what: &'static str| move |e: vexfs_image::Error| format!("{what}: {e}");
    let r = ROOT_INO;
    let empty = common_tree(&mut w, 2, 7)?;
    let long = w.mkdir(r, "long", 0o755).map_err(e("mkdir"))?;
    for i in 0..20usize {
        let name = format!("{i:02}-{}", "n".repeat(if i == 19 { 252 } else { 200 + i }));
        w.link(long, &name, empty).map_err(e("link"))?;
    }
    let dim = w.image().sb().vec_dim;
    let vdir = w.mkdir(r, "vec", 0o755).map_err(e("mkdir"))?;
    w.set_stepwise_purge(true).map_err(e("stepwise purge"))?;
    let mut files = Vec::new();
    for i in 0..8u64 {
        let ino =
            w.create(vdir, &format!("v{i}"), &sample::pattern(100 + i as usize * 300, i as u8)).map_err(e("create"))?;
        let chunks = if i == 5 { 9 } else { i % 4 + 1 };
        let vs: Vec<Vec<f32>> = (0..chunks).map(|c| vector(dim, i * 1000 + c)).collect();
        w.set_embeddings(ino, &vs).map_err(e("set embeddings"))?;
        files.push(ino);
    }
    for &i in &[2usize, 6] {
        w.remove_embeddings(files[i]).map_err(e("remove embeddings"))?;
    }
    w.set_indexing(Indexing::Deferred);
    for &i in &[3usize, 7] {
        let vs: Vec<Vec<f32>> = (0..2).map(|c| vector(dim, 77_000 + i as u64 * 10 + c)).collect();
        w.set_embeddings(files[i], &vs).map_err(e("set pending embeddings"))?;
    }
    v3_tree(&mut w, 16)?;
    let img = w.commit().map_err(e("commit"))?;
    let mut sb = img.sb().clone();
    let before = img.into_device().bytes;

    // The transaction: made by a second session on a copy, then logged in `before`.
    let mut w =
        Writer::new(Image::open(MemDevice { bytes: before.clone() }).map_err(err("open"))?).map_err(err("writer"))?;
    let jf = w.create(r, "journaled", &sample::pattern(4096 + 10, 9)).map_err(e("create"))?;
    let after = w.commit().map_err(e("commit"))?;
    let jinode = after.inode(jf).map_err(e("inode"))?;
    let data: Vec<u64> = after
        .extents(jf, &jinode)
        .map_err(e("extents"))?
        .iter()
        .flat_map(|x| x.start..x.start + u64::from(x.len))
        .collect();
    let after = after.into_device().bytes;
    let jr = sb.region(Region::Journal);
    let mut dev = MemDevice { bytes: before };
    let mut images: Vec<(u64, Box<Block>)> = Vec::new();
    for n in 1..sb.backup_block {
        let range = (n * BS) as usize..((n + 1) * BS) as usize;
        if (jr.start..jr.end()).contains(&n) || dev.bytes[range.clone()] == after[range.clone()] {
            continue;
        }
        if data.contains(&n) {
            dev.bytes[range.clone()].copy_from_slice(&after[range]);
        } else {
            let mut b = Box::new([0u8; BLOCK_SIZE]);
            b.copy_from_slice(&after[range]);
            images.push((n, b));
        }
    }
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let jerr = |what: &'static str| move |e: journal::JournalError<std::io::Error>| format!("{what}: {e:?}");
    let (mut log, _) = journal::recover(&mut dev, &sb, &mut scratch).map_err(jerr("journal"))?;
    journal::write_superblock(&mut dev, &log, false).map_err(jerr("journal superblock"))?;
    let refs: Vec<(u64, &Block)> = images.iter().map(|(n, b)| (*n, &**b)).collect();
    journal::write_transaction(&mut dev, &mut log, &refs).map_err(jerr("journal transaction"))?;
    sb.feature_incompat |= FEATURE_INCOMPAT_RECOVER;
    sb.state &= !STATE_CLEAN;
    let mut b = vec![0u8; BLOCK_SIZE];
    sb.encode(&mut b);
    dev.bytes[..BLOCK_SIZE].copy_from_slice(&b);
    Ok(dev.bytes)
}

/// 8 query vectors of dimension `dim`, as an `.fvecs` file.
pub fn queries_fvecs(dim: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for row in 0..8u64 {
        bytes.extend_from_slice(&(dim as i32).to_le_bytes());
        for x in vector(dim, 5_000_000 + row) {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    bytes
}

/// What the mutations may hit, found by walking the base image.
pub struct Catalog {
    sb: Superblock,
    geo: HnswGeometry,
    /// Inodes in use: number, decoded inode, a path.
    inodes: Vec<(u32, Inode, String)>,
    /// Directory blocks: block, owner, dirent offsets.
    dir_blocks: Vec<(u64, u32, Vec<usize>)>,
    /// Extent blocks (every node of every extent tree, a root first) and vector-id blocks:
    /// block, owner, count.
    extent_blocks: Vec<(u64, u32, u32)>,
    /// The index nodes among the extent blocks: block, owner, count, depth, and the tree's
    /// other nodes (candidate children).
    index_nodes: Vec<(u64, u32, u32, u16, Vec<u64>)>,
    /// Xattr blocks: block, owner, offsets of the entries.
    xattr_blocks: Vec<(u64, u32, Vec<usize>)>,
    /// Headers of indexed directories: block, owner, the depths with buckets.
    dir_headers: Vec<(u64, u32, Vec<u32>)>,
    /// Whether the image holds a structure of format v3 (an index node, an xattr block, a
    /// special file): the kinds that mutate them are drawn only then.
    v3: bool,
    vec_id_blocks: Vec<(u64, u32, u32)>,
    /// Data blocks in use (any owner).
    data_blocks: Vec<u64>,
    /// Vector slots in use (bitmap), and free ones.
    used_slots: Vec<u32>,
    free_slots: Vec<u32>,
    /// Slots with upper records: slot, level, first record.
    upper: Vec<(u32, u8, u32)>,
    /// Records of the journal's live window (none when it is clean): byte position in the
    /// log (from record block 0, circular), payload length.
    records: Vec<(u64, u32)>,
}

impl Catalog {
    /// The superblock of the base.
    pub fn sb(&self) -> &Superblock {
        &self.sb
    }
}

/// Walks `img` for the structures the mutations may hit.
pub fn catalog(img: &Image<MemDevice>) -> Res<Catalog> {
    let sb = img.sb().clone();
    let ibits = img.read_region(Region::InodeBitmap).map_err(err("inode bitmap"))?;
    let vbits = img.read_region(Region::VecBitmap).map_err(err("vector bitmap"))?;
    let mut c = Catalog {
        geo: HnswGeometry::new(&sb),
        sb: sb.clone(),
        inodes: Vec::new(),
        dir_blocks: Vec::new(),
        extent_blocks: Vec::new(),
        index_nodes: Vec::new(),
        xattr_blocks: Vec::new(),
        dir_headers: Vec::new(),
        v3: false,
        vec_id_blocks: Vec::new(),
        data_blocks: Vec::new(),
        used_slots: Vec::new(),
        free_slots: Vec::new(),
        upper: Vec::new(),
        records: Vec::new(),
    };
    // Paths: a walk from the root (the first name found for each inode).
    let mut paths: BTreeMap<u32, String> = BTreeMap::new();
    paths.insert(ROOT_INO, "/".into());
    let mut stack = vec![ROOT_INO];
    while let Some(d) = stack.pop() {
        let Ok(inode) = img.inode(d) else { continue };
        let Ok(entries) = img.read_dir(d, &inode) else { continue };
        let base = paths.get(&d).cloned().unwrap_or_default();
        for en in entries {
            if paths.contains_key(&en.ino) {
                continue;
            }
            let p = format!("{}/{}", base.trim_end_matches('/'), String::from_utf8_lossy(&en.name));
            paths.insert(en.ino, p);
            if en.file_type == dir::DT_DIR {
                stack.push(en.ino);
            }
        }
    }
    for ino in 1..=sb.inode_count {
        if !bit_test(&ibits, (ino - 1) as usize) {
            continue;
        }
        let Ok(inode) = img.inode(ino) else { continue };
        if let Ok(ext) = img.extents(ino, &inode) {
            for e in ext {
                c.data_blocks.extend(e.start..e.start + u64::from(e.len));
            }
        }
        if inode.extent_block != 0 {
            let nodes = img.extent_nodes(ino, &inode).unwrap_or_else(|_| vec![inode.extent_block]);
            for &n in &nodes {
                let Ok(b) = img.read_block(n) else { continue };
                let count = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
                let depth = node_depth(&b[..]).unwrap_or(0) as u16;
                c.data_blocks.push(n);
                c.extent_blocks.push((n, ino, count));
                if depth > 0 {
                    let others = nodes.iter().copied().filter(|&o| o != n).collect();
                    c.index_nodes.push((n, ino, count, depth, others));
                }
            }
        }
        if inode.xattr_block != 0 {
            if let Ok(b) = img.read_block(inode.xattr_block) {
                let used = u32::from_le_bytes([b[28], b[29], b[30], b[31]]) as usize;
                let (mut off, mut offs) = (32usize, Vec::new());
                while off + 4 <= (32 + used).min(BLOCK_SIZE) {
                    offs.push(off);
                    off += xattr::entry_size(b[off + 1].into(), u16::from_le_bytes([b[off + 2], b[off + 3]]).into());
                }
                c.data_blocks.push(inode.xattr_block);
                c.xattr_blocks.push((inode.xattr_block, ino, offs));
            }
        }
        c.v3 |= is_special(inode.mode) || inode.xattr_block != 0;
        if inode.vec_block != 0 {
            c.data_blocks.push(inode.vec_block);
            c.vec_id_blocks.push((inode.vec_block, ino, inode.vec_count.saturating_sub(4)));
        }
        if let Ok(Some((blk, h))) = img.dir_index_header(ino, &inode) {
            c.data_blocks.push(blk);
            c.dir_headers.push((blk, ino, h.depths().collect()));
        }
        if inode.is_dir() {
            if let Ok(blocks) = img.dir_blocks(ino, &inode) {
                for (_, blk) in blocks {
                    let Ok(b) = img.read_block(blk) else { continue };
                    let offs = dir::dirents(&b[..]).filter_map(|d| d.ok()).map(|d| d.offset).collect();
                    c.dir_blocks.push((blk, ino, offs));
                }
            }
        }
        let path = paths.get(&ino).cloned().unwrap_or_else(|| format!("(inode {ino})"));
        c.inodes.push((ino, inode, path));
    }
    c.v3 |= !c.index_nodes.is_empty() || !c.dir_headers.is_empty();
    let cap = u32::try_from(sb.vec_capacity).unwrap_or(u32::MAX);
    for s in 0..cap {
        if bit_test(&vbits, s as usize) {
            c.used_slots.push(s);
        } else if c.free_slots.len() < 64 {
            c.free_slots.push(s);
        }
    }
    UpperTable::walk(&sb, |s, level, first| {
        if level > 0 && bit_test(&vbits, s as usize) {
            c.upper.push((s, level, first));
        }
    });
    c.records = live_records(img, &sb);
    Ok(c)
}

/// The records of the journal's live window, read as recovery reads them (consecutive LSNs
/// from the checkpoint's, each where the last ended, zeros skipped to the next block): byte
/// position in the log, payload length. None when the journal is clean or does not decode.
fn live_records(img: &Image<MemDevice>, sb: &Superblock) -> Vec<(u64, u32)> {
    let jr = sb.region(Region::Journal);
    let Ok(b) = img.read_block(jr.start) else { return Vec::new() };
    let Ok(js) = JournalSuper::decode(&b[..], jr.start, jr.blocks, &sb.uuid) else { return Vec::new() };
    let bytes = &img.device().bytes;
    let log_len = (jr.blocks - 1) * BS;
    let (mut pos, mut lsn, mut out) = (js.head * BS, js.checkpoint_lsn, Vec::new());
    while js.flags & JOURNAL_CLEAN == 0 && out.len() < 256 {
        let mut head = [0u8; RECORD_HEADER];
        for (k, x) in head.iter_mut().enumerate() {
            *x = bytes[log_at(jr.start, jr.blocks, pos + k as u64)];
        }
        if head[..4] == [0; 4] && pos % BS != 0 {
            pos = pos.next_multiple_of(BS);
            continue;
        }
        let Ok(h) = peek_record(&head) else { break };
        if h.lsn != lsn {
            break;
        }
        out.push((pos % log_len, h.len));
        pos += (RECORD_HEADER as u64 + u64::from(h.len)).next_multiple_of(8);
        lsn += 1;
    }
    out
}

/// Byte offset in the device of byte `pos` of the log (record blocks after the journal
/// superblock at `start`, `blocks` blocks in all, circular).
fn log_at(start: u64, blocks: u64, pos: u64) -> usize {
    let pos = pos % ((blocks - 1) * BS);
    ((start + 1) * BS + pos) as usize
}

/// How many structures of each kind the catalog holds, in one line.
pub fn summary(c: &Catalog) -> String {
    let dirents: usize = c.dir_blocks.iter().map(|d| d.2.len()).sum();
    format!(
        "inodes {} dir-blocks {} dirents {} dir-index-headers {} extent-blocks {} index-nodes {} xattr-blocks {} \
         vec-id-blocks {} data-blocks {} slots {} upper-slots {} journal-records {}",
        c.inodes.len(),
        c.dir_blocks.len(),
        dirents,
        c.dir_headers.len(),
        c.extent_blocks.len(),
        c.index_nodes.len(),
        c.xattr_blocks.len(),
        c.vec_id_blocks.len(),
        c.data_blocks.len(),
        c.used_slots.len(),
        c.upper.len(),
        c.records.len()
    )
}

/// The kind of number a field holds: what values are interesting for it.
#[derive(Clone, Copy)]
enum Dom {
    /// An inode number (`self_ino`, the parent's).
    Ino { own: u32, parent: u32 },
    /// A device block number (`own`: the structure's own block or the field's value).
    Block { own: u64 },
    /// A vector slot.
    Slot { own: u32 },
    /// A count whose largest valid value is `max`.
    Count { max: u64 },
    /// A file size in bytes.
    Size,
    /// Anything else: bit flips and extremes.
    Raw,
}

/// Picks an interesting value for a field of `bits` bits holding `cur`.
fn interesting(rng: &mut Rng, c: &Catalog, dom: Dom, cur: u64, bits: u32) -> u64 {
    let max = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let generic = |rng: &mut Rng| -> u64 {
        match rng.below(9) {
            0 => 0,
            1 => 1,
            2 => max,
            3 => max - 1,
            4 => cur.wrapping_add(1),
            5 => cur.wrapping_sub(1),
            6 => cur ^ (1u64 << rng.below(u64::from(bits))),
            7 => max >> 1,
            _ => rng.next_u64(),
        }
    };
    let v = if rng.chance(1, 3) {
        generic(rng)
    } else {
        match dom {
            Dom::Ino { own, parent } => {
                let other = rng.pick(&c.inodes).map_or(2, |i| i.0);
                let dir = c.inodes.iter().filter(|i| i.1.is_dir()).nth(rng.below(8) as usize).map_or(1, |i| i.0);
                let free = c.inodes.last().map_or(3, |i| i.0 + 1 + rng.below(3) as u32);
                let choices = [own, parent, ROOT_INO, other, dir, free, c.sb.inode_count, c.sb.inode_count + 1];
                u64::from(*rng.pick(&choices).unwrap_or(&0))
            }
            Dom::Block { own } => {
                let data = c.sb.region(Region::Data);
                let other = rng.pick(&c.data_blocks).copied().unwrap_or(data.start);
                let choices = [
                    own,
                    own.wrapping_add(1),
                    own.wrapping_sub(1),
                    other,
                    data.start,
                    data.start - 1,
                    data.end() - 1,
                    data.end(),
                    c.sb.block_count - 1,
                    c.sb.block_count,
                    c.sb.region(Region::InodeTable).start,
                    c.sb.region(Region::Hnsw).start,
                    c.sb.region(Region::Journal).start,
                    data.end() - 1 - rng.below(64),
                ];
                *rng.pick(&choices).unwrap_or(&0)
            }
            Dom::Slot { own } => {
                let cap = u32::try_from(c.sb.vec_capacity).unwrap_or(u32::MAX);
                let used = rng.pick(&c.used_slots).copied().unwrap_or(0);
                let free = rng.pick(&c.free_slots).copied().unwrap_or(cap);
                let choices = [own, used, used, free, 0, cap - 1, cap, NO_SLOT, NO_SLOT - 1];
                u64::from(*rng.pick(&choices).unwrap_or(&0))
            }
            Dom::Count { max: m } => {
                // Wrapping: `cur` may be what an earlier mutation of this mutant left (the
                // guest's release builds always wrapped; the same values with overflow checks on).
                let choices = [
                    0,
                    1,
                    m,
                    m.wrapping_add(1),
                    m.saturating_sub(1),
                    cur.wrapping_add(1),
                    cur.wrapping_sub(1),
                    cur.wrapping_mul(2),
                    max,
                ];
                *rng.pick(&choices).unwrap_or(&0)
            }
            Dom::Size => {
                let choices = [
                    0,
                    cur.wrapping_add(1),
                    cur.wrapping_sub(1),
                    cur.wrapping_add(BS),
                    cur.saturating_sub(BS),
                    (cur / BS).wrapping_add(1).wrapping_mul(BS),
                    MAX_FILE_SIZE,
                    MAX_FILE_SIZE + 1,
                    MAX_FILE_SIZE - 1,
                    u64::MAX,
                    i64::MAX as u64,
                    1 << 32,
                ];
                *rng.pick(&choices).unwrap_or(&0)
            }
            Dom::Raw => generic(rng),
        }
    };
    // A value equal to the old one would be no mutation: flip its lowest bit instead.
    if v & max == cur & max {
        (cur ^ 1) & max
    } else {
        v & max
    }
}

/// A mutant being made: the image's bytes and what was done to them.
struct Mutant<'a> {
    c: &'a Catalog,
    bytes: Vec<u8>,
    log: Vec<String>,
}

impl Mutant<'_> {
    fn block(&mut self, n: u64) -> &mut [u8] {
        let s = (n * BS) as usize;
        &mut self.bytes[s..s + BLOCK_SIZE]
    }
    fn get(&self, at: usize, len: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..len].copy_from_slice(&self.bytes[at..at + len]);
        u64::from_le_bytes(b)
    }
    fn set(&mut self, at: usize, len: usize, v: u64) {
        self.bytes[at..at + len].copy_from_slice(&v.to_le_bytes()[..len]);
    }
    /// Sets the `len`-byte field at byte `at` of the device to an interesting value; returns
    /// "old -> new".
    fn field(&mut self, rng: &mut Rng, at: usize, len: usize, dom: Dom) -> String {
        let old = self.get(at, len);
        let mut new = interesting(rng, self.c, dom, old, (len * 8) as u32);
        if new == old {
            new = old ^ 1;
        }
        self.set(at, len, new);
        format!("{old} -> {new}")
    }
}

/// Mutates one field of inode `ino` and re-encodes it (checksum recomputed by `Inode::encode`).
fn mutate_inode(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some((ino, inode, path)) = rng.pick(&m.c.inodes).cloned() else { return "no inode".into() };
    let (blk, off) = m.c.sb.inode_pos(u64::from(ino)).unwrap_or((0, 0));
    let at = (blk * BS) as usize + off;
    let mut raw = m.bytes[at..at + INODE_SIZE].to_vec();
    let mut i = inode.clone();
    let own = Dom::Ino { own: ino, parent: inode.parent };
    let ext = (rng.below(inode.nr_extents.clamp(1, 6) as u64) as usize).min(5);
    let (name, old, new): (String, u64, u64) = match rng.below(17) {
        0 => {
            let types = [S_IFDIR, S_IFREG, S_IFLNK, 0, 0o010000, 0o140000];
            let t = *rng.pick(&types).unwrap_or(&0);
            let perm = if rng.chance(1, 2) { i.mode & !S_IFMT } else { rng.next_u64() as u16 & 0o7777 };
            let old = i.mode;
            i.mode = t | perm;
            if i.mode == old {
                i.mode ^= 0o040000;
            }
            ("mode".into(), old.into(), i.mode.into())
        }
        1 => {
            let old = i.links;
            i.links = interesting(rng, m.c, Dom::Count { max: 3 }, old.into(), 16) as u16;
            ("links".into(), old.into(), i.links.into())
        }
        2 => {
            let old = i.size;
            i.size = interesting(rng, m.c, Dom::Size, old, 64);
            ("size".into(), old, i.size)
        }
        3 => {
            let old = i.blocks;
            i.blocks = interesting(rng, m.c, Dom::Count { max: old }, old, 64);
            ("blocks".into(), old, i.blocks)
        }
        4 => {
            let old = i.parent;
            i.parent = interesting(rng, m.c, own, old.into(), 32) as u32;
            ("parent".into(), old.into(), i.parent.into())
        }
        5 => {
            let old = i.nr_extents;
            i.nr_extents = interesting(rng, m.c, Dom::Count { max: 260 }, old.into(), 32) as u32;
            ("nr_extents".into(), old.into(), i.nr_extents.into())
        }
        6 => {
            let old = i.extent_block;
            i.extent_block = interesting(rng, m.c, Dom::Block { own: old }, old, 64);
            ("extent_block".into(), old, i.extent_block)
        }
        7 => {
            let e = &mut i.extents[ext];
            let old = e.logical;
            e.logical = interesting(rng, m.c, Dom::Count { max: (inode.size / BS) }, old.into(), 32) as u32;
            (format!("extent[{ext}].logical"), old.into(), e.logical.into())
        }
        8 => {
            let e = &mut i.extents[ext];
            let old = e.len;
            e.len = interesting(rng, m.c, Dom::Count { max: old.into() }, old.into(), 32) as u32;
            (format!("extent[{ext}].len"), old.into(), e.len.into())
        }
        9 => {
            let old = i.extents[ext].start;
            let v = interesting(rng, m.c, Dom::Block { own: old }, old, 64);
            i.extents[ext].start = v;
            (format!("extent[{ext}].start"), old, v)
        }
        10 => {
            let old = i.vec_count;
            i.vec_count = interesting(rng, m.c, Dom::Count { max: 1020 }, old.into(), 32) as u32;
            ("vec_count".into(), old.into(), i.vec_count.into())
        }
        11 => {
            let old = i.vec_block;
            i.vec_block = interesting(rng, m.c, Dom::Block { own: old }, old, 64);
            ("vec_block".into(), old, i.vec_block)
        }
        12 | 13 => {
            let k = rng.below(4) as usize;
            let old = i.vec_ids[k];
            i.vec_ids[k] = interesting(rng, m.c, Dom::Slot { own: old }, old.into(), 32) as u32;
            (format!("vec_ids[{k}]"), old.into(), i.vec_ids[k].into())
        }
        14 => {
            let old = i.flags;
            i.flags = interesting(rng, m.c, Dom::Raw, old.into(), 32) as u32;
            ("flags".into(), old.into(), i.flags.into())
        }
        15 => {
            let old = i.mtime_nsec;
            i.mtime_nsec = *rng.pick(&[999_999_999u32, 1_000_000_000, u32::MAX]).unwrap_or(&0);
            i.mtime_sec = *rng.pick(&[i64::MIN, i64::MAX, -1, 0]).unwrap_or(&0);
            ("mtime".into(), old.into(), i.mtime_nsec.into())
        }
        _ => {
            // Two fields at once that the kernel reads together.
            let old = i.size;
            i.size = interesting(rng, m.c, Dom::Size, old, 64);
            let old_blocks = i.blocks;
            i.blocks = interesting(rng, m.c, Dom::Count { max: i.blocks }, i.blocks, 64);
            (format!("blocks {old_blocks} -> {}, size", i.blocks), old, i.size)
        }
    };
    i.encode(u64::from(ino), &mut raw);
    m.bytes[at..at + INODE_SIZE].copy_from_slice(&raw);
    format!("inode {ino} ({path}) {name} {old} -> {new}")
}

/// Mutates a dirent of a directory block (or the block's header) and reseals the block.
fn mutate_dir(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some((blk, owner, offs)) = rng.pick(&m.c.dir_blocks).cloned() else { return "no directory block".into() };
    let base = (blk * BS) as usize;
    let owner_inode = m.c.inodes.iter().find(|i| i.0 == owner).map(|i| i.1.parent).unwrap_or(1);
    let (mut magic, mut blocknr, mut own) = (DIR_MAGIC, blk, u64::from(owner));
    let what = if offs.is_empty() || rng.chance(1, 6) {
        match rng.below(3) {
            0 => {
                let old = blocknr;
                blocknr = interesting(rng, m.c, Dom::Block { own: old }, old, 64);
                format!("blocknr {old} -> {blocknr}")
            }
            1 => {
                let old = own;
                own = interesting(rng, m.c, Dom::Ino { own: owner, parent: owner_inode }, old, 64);
                format!("owner {old} -> {own}")
            }
            _ => {
                magic = *rng.pick(&[EXTENT_MAGIC, VEC_IDS_MAGIC, HNSW_MAGIC, 0]).unwrap_or(&0);
                format!("magic -> {magic:#x}")
            }
        }
    } else {
        let off = *rng.pick(&offs).unwrap_or(&24);
        let at = base + off;
        let rec_len = m.get(at + 4, 2);
        let name_len = m.get(at + 6, 1) as usize;
        match rng.below(7) {
            0 | 1 => {
                let d = Dom::Ino { own: owner, parent: owner_inode };
                format!("dirent@{off} ino {}", m.field(rng, at, 4, d))
            }
            2 => format!("dirent@{off} rec_len {}", m.field(rng, at + 4, 2, Dom::Count { max: rec_len })),
            3 => {
                let max = rec_len.saturating_sub(8);
                format!("dirent@{off} name_len {}", m.field(rng, at + 6, 1, Dom::Count { max }))
            }
            4 => {
                let old = m.get(at + 7, 1);
                let types = [0u8, 1, 2, dir::DT_DIR, dir::DT_REG, dir::DT_LNK, 255];
                let t = types.iter().copied().filter(|&t| u64::from(t) != old).nth(rng.below(6) as usize).unwrap_or(0);
                m.set(at + 7, 1, t.into());
                format!("dirent@{off} file_type {old} -> {t}")
            }
            5 if name_len > 0 => {
                let k = rng.below(name_len as u64) as usize;
                let old = m.get(at + 8 + k, 1);
                let b = b"/\0.\xffa"
                    .iter()
                    .copied()
                    .filter(|&b| u64::from(b) != old)
                    .nth(rng.below(4) as usize)
                    .unwrap_or(0);
                m.set(at + 8 + k, 1, b.into());
                format!("dirent@{off} name[{k}] {old} -> {b}")
            }
            _ => {
                // The name becomes ".", "..", or the name of another entry of the block.
                let other = *rng.pick(&offs).unwrap_or(&off);
                let other_len = m.get(base + other + 6, 1) as usize;
                let name: Vec<u8> = match rng.below(3) {
                    0 => b".".to_vec(),
                    1 => b"..".to_vec(),
                    _ => m.bytes[base + other + 8..base + other + 8 + other_len].to_vec(),
                };
                if name.is_empty() || 8 + name.len() > rec_len as usize {
                    return format!("dir block {blk} (dir {owner}) dirent@{off} unchanged (no room)");
                }
                m.set(at + 6, 1, name.len() as u64);
                m.bytes[at + 8..at + 8 + name.len()].copy_from_slice(&name);
                format!("dirent@{off} name -> {:?}", String::from_utf8_lossy(&name))
            }
        }
    };
    seal_header(m.block(blk), magic, blocknr, own);
    format!("dir block {blk} (dir {owner}) {what}")
}

/// Mutates the identity a block header gives the block at `blk` of inode `owner`: its block
/// number (`blocknr`) or its owner (`own`), one of them, half the time each; returns what.
fn identity(rng: &mut Rng, c: &Catalog, blk: u64, owner: u32, blocknr: &mut u64, own: &mut u64) -> String {
    if rng.chance(1, 2) {
        *blocknr = interesting(rng, c, Dom::Block { own: blk }, blk, 64);
        format!("blocknr -> {blocknr}")
    } else {
        *own = interesting(rng, c, Dom::Ino { own: owner, parent: 1 }, *own, 64);
        format!("owner -> {own}")
    }
}

/// Mutates an extent block's header, count or an extent, and reseals it.
fn mutate_extent_block(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some((blk, owner, count)) = rng.pick(&m.c.extent_blocks).copied() else { return mutate_inode(m, rng) };
    let base = (blk * BS) as usize;
    let (mut blocknr, mut own) = (blk, u64::from(owner));
    let k = rng.below(u64::from(count.max(1))) as usize;
    let e = base + EXTENT_HEADER + k * 16;
    let what = match rng.below(7) {
        0 => format!("count {}", m.field(rng, base + 24, 4, Dom::Count { max: 254 })),
        1 => format!("reserved {}", m.field(rng, base + 28, 4, Dom::Raw)),
        2 => format!("extent[{k}].logical {}", m.field(rng, e, 4, Dom::Count { max: 10 })),
        3 => format!("extent[{k}].len {}", m.field(rng, e + 4, 4, Dom::Count { max: 1 })),
        4 | 5 => format!("extent[{k}].start {}", m.field(rng, e + 8, 8, Dom::Block { own: blk })),
        _ => identity(rng, m.c, blk, owner, &mut blocknr, &mut own),
    };
    seal_header(m.block(blk), EXTENT_MAGIC, blocknr, own);
    format!("extent block {blk} (inode {owner}) {what}")
}

/// Mutates a vector-id block's count or an id, and reseals it.
fn mutate_vec_ids(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some((blk, owner, count)) = rng.pick(&m.c.vec_id_blocks).copied() else { return mutate_inode(m, rng) };
    let base = (blk * BS) as usize;
    let k = rng.below(u64::from(count.max(1))) as usize;
    let (mut blocknr, mut own) = (blk, u64::from(owner));
    let what = match rng.below(6) {
        0 => format!("count {}", m.field(rng, base + 24, 4, Dom::Count { max: 1016 })),
        1 => format!("reserved {}", m.field(rng, base + 28, 4, Dom::Raw)),
        2..=4 => {
            let at = base + VEC_IDS_HEADER + 4 * k;
            let own = m.get(at, 4) as u32;
            format!("id[{k}] {}", m.field(rng, at, 4, Dom::Slot { own }))
        }
        _ => identity(rng, m.c, blk, owner, &mut blocknr, &mut own),
    };
    seal_header(m.block(blk), VEC_IDS_MAGIC, blocknr, own);
    format!("vector-id block {blk} (inode {owner}) {what}")
}

/// Byte offset in the device of vector-map entry `slot`.
fn map_at(c: &Catalog, slot: u32) -> usize {
    (c.sb.region(Region::VecMap).start * BS) as usize + slot as usize * MAP_ENTRY
}

/// Rewrites a vector-map entry (checksum by `MapEntry::encode`).
fn mutate_map(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some(&slot) = rng.pick(&m.c.used_slots) else { return "no slot".into() };
    let at = map_at(m.c, slot);
    let cur = MapEntry::decode(slot, &m.bytes[at..at + MAP_ENTRY]).ok().flatten();
    let (ino, chunk) = cur.map_or((0, 0), |e| (e.ino, e.chunk));
    let (new, what) = match rng.below(5) {
        0 => (None, "freed".to_string()),
        1 | 2 => {
            let v = interesting(rng, m.c, Dom::Ino { own: ino as u32, parent: 1 }, ino, 64);
            (Some(MapEntry { ino: v, chunk }), format!("ino {ino} -> {v}"))
        }
        3 => {
            let v = interesting(rng, m.c, Dom::Count { max: 1019 }, chunk.into(), 32) as u32;
            (Some(MapEntry { ino, chunk: v }), format!("chunk {chunk} -> {v}"))
        }
        _ => {
            // A copy of another used slot's entry: two slots claim one chunk.
            let other = rng.pick(&m.c.used_slots).copied().unwrap_or(slot);
            let oat = map_at(m.c, other);
            let e = MapEntry::decode(other, &m.bytes[oat..oat + MAP_ENTRY]).ok().flatten();
            (e, format!("copy of slot {other}'s entry"))
        }
    };
    // A "free" entry of a slot whose owner stays ino 0: MapEntry::encode writes zeros.
    let new = new.filter(|e| e.ino != 0 || rng.chance(1, 4));
    let mut raw = [0u8; MAP_ENTRY];
    MapEntry::encode(new, slot, &mut raw);
    if new.is_some_and(|e| e.ino == 0) {
        // Owner 0 with a valid checksum (decode refuses it: "vector map owner").
        raw = [0u8; MAP_ENTRY];
        MapEntry::encode(Some(MapEntry { ino: 1, chunk }), slot, &mut raw);
        raw[..8].fill(0);
        let c = crc32c_parts(&[&slot.to_le_bytes(), &raw[..12]]);
        raw[12..].copy_from_slice(&c.to_le_bytes());
    }
    m.bytes[at..at + MAP_ENTRY].copy_from_slice(&raw);
    format!("vector map slot {slot} {what}")
}

/// Mutates a level-0 record of a used slot (no checksum: the records have none).
fn mutate_level0(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some(&slot) = rng.pick(&m.c.used_slots) else { return "no slot".into() };
    let (blk, off) = m.c.geo.level0_pos(slot);
    let at = (blk * BS) as usize + off;
    let count = m.get(at, 2);
    let m0 = u64::from(m.c.geo.m0);
    let what = match rng.below(8) {
        0 => format!("count {}", m.field(rng, at, 2, Dom::Count { max: m0 })),
        1 => format!("level {}", m.field(rng, at + 2, 1, Dom::Count { max: 16 })),
        2 => {
            let old = m.get(at + 3, 1);
            let flags = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 0xff];
            let f = flags.iter().copied().filter(|&f| u64::from(f) != old).nth(rng.below(9) as usize).unwrap_or(0);
            m.set(at + 3, 1, f.into());
            format!("flags {old} -> {f}")
        }
        3 => format!("upper {}", m.field(rng, at + 4, 4, Dom::Count { max: m.c.geo.upper_records })),
        _ => {
            let k = rng.below(count.clamp(1, m0)) as usize;
            format!("link[{k}] {}", m.field(rng, at + 8 + 4 * k, 4, Dom::Slot { own: slot }))
        }
    };
    format!("hnsw level-0 slot {slot} {what}")
}

/// Mutates an upper-level record of a slot with levels above 0.
fn mutate_upper(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some(&(slot, level, first)) = rng.pick(&m.c.upper) else { return mutate_level0(m, rng) };
    let l = rng.below(u64::from(level)) as u32;
    let (blk, off) = m.c.geo.upper_pos(u64::from(first + l));
    let at = (blk * BS) as usize + off;
    let count = m.get(at, 4);
    let what = if rng.chance(1, 3) {
        format!("count {}", m.field(rng, at, 4, Dom::Count { max: u64::from(m.c.geo.m) }))
    } else {
        let k = rng.below(count.clamp(1, u64::from(m.c.geo.m))) as usize;
        format!("link[{k}] {}", m.field(rng, at + 4 + 4 * k, 4, Dom::Slot { own: slot }))
    };
    format!("hnsw upper slot {slot} level {} {what}", l + 1)
}

/// Mutates the HNSW header (re-encoded by `HnswHeader::encode`).
fn mutate_hnsw_header(m: &mut Mutant, rng: &mut Rng) -> String {
    let blk = m.c.geo.header;
    let Ok(mut h) = HnswHeader::decode(m.block(blk), blk) else { return "hnsw header does not decode".into() };
    let live = u64::from(h.live);
    let (name, old, new) = match rng.below(6) {
        0 | 1 => {
            let old = h.entry;
            h.entry = interesting(rng, m.c, Dom::Slot { own: old }, old.into(), 32) as u32;
            ("entry", old, h.entry)
        }
        2 => {
            let old = h.entry_level;
            h.entry_level = interesting(rng, m.c, Dom::Count { max: 16 }, old.into(), 32) as u32;
            ("entry_level", old, h.entry_level)
        }
        3 => {
            let old = h.live;
            h.live = interesting(rng, m.c, Dom::Count { max: live }, old.into(), 32) as u32;
            ("live", old, h.live)
        }
        4 => {
            let old = h.deleted;
            h.deleted = interesting(rng, m.c, Dom::Count { max: live }, old.into(), 32) as u32;
            ("deleted", old, h.deleted)
        }
        _ => {
            let old = h.pending;
            h.pending = interesting(rng, m.c, Dom::Count { max: live }, old.into(), 32) as u32;
            ("pending", old, h.pending)
        }
    };
    h.encode(m.block(blk), blk);
    format!("hnsw header {name} {old} -> {new}")
}

/// Writes a non-finite, zero or huge component (or a whole zero vector) into a used slot.
fn mutate_vector(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some(&slot) = rng.pick(&m.c.used_slots) else { return "no slot".into() };
    let (blk, off) = HnswGeometry::new(&m.c.sb).vector_pos(slot);
    let at = (blk * BS) as usize + off;
    let dim = m.c.sb.vec_dim as usize;
    if rng.chance(1, 4) {
        m.bytes[at..at + dim * 4].fill(0);
        return format!("vector slot {slot} all zero");
    }
    let k = rng.below(dim as u64) as usize;
    let v = *rng.pick(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX, 1e-45, -0.0]).unwrap_or(&0.0);
    m.bytes[at + 4 * k..at + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
    format!("vector slot {slot} component {k} -> {v}")
}

/// Changes bytes of a used slot's SQ8 code (no checksum: fsck's check of the code against its
/// vector, and searches walking a wrong code, are what this reaches): one byte to an extreme,
/// a byte of the padding, or the whole code to one value.
fn mutate_code(m: &mut Mutant, rng: &mut Rng) -> String {
    let sb = &m.c.sb;
    if sb.has_pq() {
        return mutate_pq_code(m, rng);
    }
    if !sb.has_sq8() {
        return "no codes".into();
    }
    let Some(&slot) = rng.pick(&m.c.used_slots) else { return "no slot".into() };
    let Some((blk, off)) = sq8::code_pos(sb, u64::from(slot)) else { return "no code position".into() };
    let at = (blk * BS) as usize + off;
    let (dim, stride) = (sb.vec_dim as usize, sq8::code_stride_for(sb.vec_dim) as usize);
    match rng.below(3) {
        0 => {
            let k = rng.below(dim as u64) as usize;
            let v = *rng.pick(&[0x80u8, 0x7f, 0x81, 0]).unwrap_or(&0);
            m.bytes[at + k] = v;
            format!("code of slot {slot} byte {k} -> {:#x}", v)
        }
        1 if stride > dim => {
            let k = dim + rng.below((stride - dim) as u64) as usize;
            m.bytes[at + k] = 0x80;
            format!("code of slot {slot} padding byte {k} -> 0x80")
        }
        _ => {
            let v = rng.below(256) as u8;
            m.bytes[at..at + stride].fill(v);
            format!("code of slot {slot} all {:#x}", v)
        }
    }
}

/// Changes bytes of a used slot's PQ code (no checksum; every byte value names a centroid, so
/// fsck's check of the code against its vector is what this reaches): one byte to 0, 255 or
/// another value, or the whole code to one value.
fn mutate_pq_code(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some(g) = PqGeometry::new(&m.c.sb) else { return "no pq geometry".into() };
    let Some(&slot) = rng.pick(&m.c.used_slots) else { return "no slot".into() };
    let Some((blk, off)) = g.codes.pos(u64::from(slot)) else { return "no code position".into() };
    let at = (blk * BS) as usize + off;
    let v = *rng.pick(&[0u8, 0xff, 1, 0x80]).unwrap_or(&0);
    if rng.chance(1, 3) {
        m.bytes[at..at + g.m as usize].fill(v);
        return format!("pq code of slot {slot} all {v:#x}");
    }
    let k = rng.below(u64::from(g.m)) as usize;
    m.bytes[at + k] = v;
    format!("pq code of slot {slot} byte {k} -> {v:#x}")
}

/// Writes a non-finite, huge, tiny or zero value into a centroid of the PQ codebook (no
/// checksum: the mount's and fsck's finiteness check, and the query tables of huge finite
/// centroids, are what this reaches), or a non-zero byte past a codebook block's centroids.
fn mutate_codebook(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some(g) = PqGeometry::new(&m.c.sb) else { return "no pq geometry".into() };
    let (j, c) = (rng.below(u64::from(g.m)) as u32, rng.below(256) as u32);
    let Some((blk, off)) = g.centroid_pos(j, c) else { return "no centroid position".into() };
    let at = (blk * BS) as usize + off;
    let dsub = g.dsub as usize;
    match rng.below(6) {
        0 => {
            m.bytes[at..at + 4 * dsub].fill(0);
            format!("pq centroid {j}/{c} all zero")
        }
        1 => {
            let used = (g.per_block as usize) * 4 * dsub;
            let tail = (blk * BS) as usize + used;
            if used >= BLOCK_SIZE {
                return format!("pq codebook block {blk}: no bytes past the centroids");
            }
            let k = rng.below((BLOCK_SIZE - used) as u64) as usize;
            m.bytes[tail + k] = 0xff;
            format!("pq codebook block {blk} byte {} past the centroids -> 0xff", used + k)
        }
        _ => {
            let k = rng.below(dsub as u64) as usize;
            let vals = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX, 1e30, 1e-45, -0.0];
            let v = *rng.pick(&vals).unwrap_or(&0.0);
            m.bytes[at + 4 * k..at + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
            format!("pq centroid {j}/{c} component {k} -> {v}")
        }
    }
}

/// Changes the superblock's PQ fields, resealed: `pq_m` to a value that does or does not cut
/// the dimension, or the feature bits of the codes and the layout (node records dropped or
/// kept without PQ, SQ8 beside PQ): what the mount's validation must refuse, or a layout the
/// reader must then follow.
fn mutate_pq_superblock(m: &mut Mutant, rng: &mut Rng) -> String {
    let mut sb = m.c.sb.clone();
    let what = match rng.below(4) {
        0 | 1 => {
            let old = sb.pq_m;
            sb.pq_m = *rng.pick(&[0u32, 1, 3, 4, 8, 16, 255, u32::MAX]).unwrap_or(&0);
            format!("pq_m {old} -> {}", sb.pq_m)
        }
        2 => {
            let bit = *rng.pick(&[FEATURE_INCOMPAT_NODE_RECORDS, FEATURE_INCOMPAT_PQ]).unwrap_or(&0);
            sb.feature_incompat ^= bit;
            format!("feature_incompat ^ {bit} -> {}", sb.feature_incompat)
        }
        _ => {
            sb.feature_incompat |= FEATURE_INCOMPAT_SQ8;
            sb.sq8_shift = SQ8_SHIFT;
            format!("feature_incompat | SQ8 -> {}", sb.feature_incompat)
        }
    };
    reseal_superblock(m, &sb, &what)
}

/// Flips one bit of the block, inode or vector bitmap (no checksum: the cross-checks are what
/// this reaches).
fn mutate_bitmap(m: &mut Mutant, rng: &mut Rng) -> String {
    let (region, bit, what) = match rng.below(3) {
        0 => {
            let data = m.c.sb.region(Region::Data);
            let b = if rng.chance(1, 2) {
                rng.pick(&m.c.data_blocks).copied().unwrap_or(data.start)
            } else {
                data.start + rng.below(data.blocks.min(64) + 32)
            };
            (Region::BlockBitmap, b, "block")
        }
        1 => {
            let ino = if rng.chance(1, 2) {
                rng.pick(&m.c.inodes).map_or(1, |i| i.0)
            } else {
                m.c.inodes.last().map_or(2, |i| i.0 + 1)
            };
            (Region::InodeBitmap, u64::from(ino - 1), "inode")
        }
        _ => {
            let s = if rng.chance(2, 3) {
                rng.pick(&m.c.used_slots).copied().unwrap_or(0)
            } else {
                rng.pick(&m.c.free_slots).copied().unwrap_or(0)
            };
            (Region::VecBitmap, u64::from(s), "vector")
        }
    };
    let at = (m.c.sb.region(region).start * BS) as usize + (bit / 8) as usize;
    m.bytes[at] ^= 1 << (bit % 8);
    let now = m.bytes[at] & (1 << (bit % 8)) != 0;
    format!("{what} bitmap bit {bit} -> {}", u8::from(now))
}

/// Mutates a field of the journal superblock and reseals it, or (when the journal has a live
/// window) a record of it.
fn mutate_journal(m: &mut Mutant, rng: &mut Rng) -> String {
    let blk = m.c.sb.region(Region::Journal).start;
    let jblocks = m.c.sb.region(Region::Journal).blocks;
    let at = (blk * BS) as usize;
    // Five superblock fields, and three more draws for the records (only when there are some:
    // the guest's seeds over a clean journal draw what they always drew).
    let kinds = if m.c.records.is_empty() { 5 } else { 8 };
    let what = match rng.below(kinds) {
        5..=7 => return mutate_record(m, rng),
        0 => format!("version {}", m.field(rng, at + 16, 4, Dom::Count { max: 2 })),
        1 => format!("flags {}", m.field(rng, at + 20, 4, Dom::Count { max: 1 })),
        2 => format!("next_lsn {}", m.field(rng, at + 24, 8, Dom::Raw)),
        3 => format!("checkpoint_lsn {}", m.field(rng, at + 32, 8, Dom::Raw)),
        _ => format!("head {}", m.field(rng, at + 40, 8, Dom::Count { max: jblocks - 1 })),
    };
    // The journal superblock's "owner" word is its version and flags.
    let owner = m.get(at + 16, 8);
    seal_header(m.block(blk), JOURNAL_MAGIC, blk, owner);
    format!("journal superblock {what}")
}

/// Mutates a field of a journal record of the live window (header, a block-images record's
/// count, target or image) and recomputes its checksum (over the new length, when the reader
/// would accept it).
fn mutate_record(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some(&(pos, len)) = rng.pick(&m.c.records) else { return "no journal record".into() };
    let jr = m.c.sb.region(Region::Journal);
    let at = |k: u64| log_at(jr.start, jr.blocks, pos + k);
    let get = |m: &Mutant, o: u64, n: u64| (0..n).rev().fold(0u64, |v, k| v << 8 | u64::from(m.bytes[at(o + k)]));
    let rtype = get(m, 16, 2);
    let (off, n, dom, name) = match rng.below(if rtype == 1 { 8 } else { 4 }) {
        0 => (8, 8, Dom::Count { max: get(m, 8, 8).wrapping_add(1) }, "lsn"),
        1 => (16, 2, Dom::Count { max: 4 }, "type"),
        2 => (18, 2, Dom::Raw, "flags"),
        3 => (20, 4, Dom::Count { max: MAX_RECORD_PAYLOAD as u64 }, "len"),
        4 => (24, 4, Dom::Count { max: 4 }, "count"),
        5 | 6 => (32, 8, Dom::Block { own: get(m, 32, 8) }, "target"),
        _ => (40 + rng.below(BS), 1, Dom::Raw, "image byte"),
    };
    let old = get(m, off, n);
    let mut new = interesting(rng, m.c, dom, old, (n * 8) as u32);
    if new == old {
        new = old ^ 1;
    }
    for k in 0..n {
        m.bytes[at(off + k)] = (new >> (8 * k)) as u8;
    }
    // The checksum over the payload the reader will take: the new length's when the reader
    // accepts it (the bytes after the record are the log's own), else the old one's.
    let new_len = get(m, 20, 4);
    let sum_len = if new_len <= MAX_RECORD_PAYLOAD as u64 { new_len } else { u64::from(len) };
    let mut head = [0u8; RECORD_HEADER];
    for (k, x) in head.iter_mut().enumerate().filter(|(k, _)| !(4..8).contains(k)) {
        *x = m.bytes[at(k as u64)];
    }
    let payload: Vec<u8> = (0..sum_len).map(|k| m.bytes[at(RECORD_HEADER as u64 + k)]).collect();
    let sum = record_checksum(&m.c.sb.uuid, &head, &[&payload]);
    for (k, x) in sum.to_le_bytes().iter().enumerate() {
        m.bytes[at(4 + k as u64)] = *x;
    }
    format!("journal record at log byte {pos} (type {rtype}) {name} {old} -> {new}")
}

/// Mutates a superblock field that its validation may let through (re-encoded by
/// `Superblock::encode`).
fn mutate_superblock(m: &mut Mutant, rng: &mut Rng) -> String {
    let mut sb = m.c.sb.clone();
    let what = match rng.below(9) {
        0 => {
            sb.free_blocks = interesting(rng, m.c, Dom::Count { max: sb.block_count }, sb.free_blocks, 64);
            format!("free_blocks -> {}", sb.free_blocks)
        }
        1 => {
            sb.free_inodes =
                interesting(rng, m.c, Dom::Count { max: sb.inode_count.into() }, sb.free_inodes.into(), 32) as u32;
            format!("free_inodes -> {}", sb.free_inodes)
        }
        2 => {
            sb.state ^= 1 << rng.below(2);
            format!("state -> {}", sb.state)
        }
        3 => {
            sb.feature_incompat ^= FEATURE_INCOMPAT_RECOVER;
            format!("feature_incompat -> {}", sb.feature_incompat)
        }
        4 => {
            sb.hnsw_seed = rng.next_u64();
            format!("hnsw_seed -> {}", sb.hnsw_seed)
        }
        5 => {
            sb.hnsw_max_level = rng.below(17) as u32;
            format!("hnsw_max_level -> {}", sb.hnsw_max_level)
        }
        6 => {
            sb.hnsw_ef_construction = *rng.pick(&[1u32, 2, 4096, 4097, 0]).unwrap_or(&1);
            format!("hnsw_ef_construction -> {}", sb.hnsw_ef_construction)
        }
        7 => {
            sb.vec_metric = rng.below(3) as u32;
            format!("vec_metric -> {}", sb.vec_metric)
        }
        _ => {
            sb.root_ino = interesting(rng, m.c, Dom::Ino { own: 1, parent: 1 }, 1, 32) as u32;
            format!("root_ino -> {}", sb.root_ino)
        }
    };
    reseal_superblock(m, &sb, &what)
}

/// Writes `sb` as the mutant's primary superblock (the whole block: zeros after it, its
/// checksum recomputed by `Superblock::encode`); returns the log line of the change `what`.
fn reseal_superblock(m: &mut Mutant, sb: &Superblock, what: &str) -> String {
    let mut b = vec![0u8; BLOCK_SIZE];
    sb.encode(&mut b);
    m.block(0).copy_from_slice(&b);
    format!("superblock {what}")
}

/// Overwrites a directory block with another directory's block, resealed as this one: its
/// entries appear in a second directory (cycles, a directory with two parents).
fn mutate_dir_copy(m: &mut Mutant, rng: &mut Rng) -> String {
    let (Some(a), Some(b)) = (rng.pick(&m.c.dir_blocks).cloned(), rng.pick(&m.c.dir_blocks).cloned()) else {
        return "no directory block".into();
    };
    let b = if a.0 == b.0 {
        let i = m.c.dir_blocks.iter().position(|d| d.0 == a.0).unwrap_or(0);
        m.c.dir_blocks[(i + 1) % m.c.dir_blocks.len()].clone()
    } else {
        b
    };
    if a.0 == b.0 {
        return "one directory block only".into();
    }
    let src = m.block(b.0).to_vec();
    m.block(a.0).copy_from_slice(&src);
    seal_header(m.block(a.0), DIR_MAGIC, a.0, u64::from(a.1));
    format!("dir block {} (dir {}) := entries of block {} (dir {})", a.0, a.1, b.0, b.1)
}

/// Mutates an index node of an extent tree (format v3): its depth, an entry's key, reserved
/// word or child (another node of the tree, the node itself, a data block...), and reseals it.
fn mutate_index_node(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some((blk, owner, count, depth, others)) = rng.pick(&m.c.index_nodes).cloned() else {
        return mutate_extent_block(m, rng);
    };
    let base = (blk * BS) as usize;
    let k = rng.below(u64::from(count.max(1))) as usize;
    let e = base + EXTENT_HEADER + k * 16;
    let what = match rng.below(6) {
        0 => format!("depth {}", m.field(rng, base + 28, 2, Dom::Count { max: u64::from(depth) + 1 })),
        1 => format!("reserved {}", m.field(rng, base + 30, 2, Dom::Raw)),
        2 => format!("index[{k}].key {}", m.field(rng, e, 4, Dom::Count { max: m.get(e, 4) + 1 })),
        3 => format!("index[{k}].reserved {}", m.field(rng, e + 4, 4, Dom::Raw)),
        _ => {
            let old = m.get(e + 8, 8);
            let new = match rng.below(3) {
                0 => rng.pick(&others).copied().unwrap_or(blk),
                1 => blk,
                _ => interesting(rng, m.c, Dom::Block { own: old }, old, 64),
            };
            m.set(e + 8, 8, new);
            format!("index[{k}].child {old} -> {new}")
        }
    };
    seal_header(m.block(blk), EXTENT_MAGIC, blk, u64::from(owner));
    format!("extent index node {blk} (inode {owner}, depth {depth}) {what}")
}

/// Mutates an xattr block (format v3): its count, `used`, an entry's namespace, name length,
/// value length or a name byte, or the header's block number or owner; reseals it.
fn mutate_xattr(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some((blk, owner, offs)) = rng.pick(&m.c.xattr_blocks).cloned() else { return mutate_v3_inode(m, rng) };
    let base = (blk * BS) as usize;
    let (mut blocknr, mut own) = (blk, u64::from(owner));
    let off = rng.pick(&offs).copied().unwrap_or(32);
    let at = base + off;
    let what = match rng.below(8) {
        0 => format!("count {}", m.field(rng, base + 24, 4, Dom::Count { max: offs.len() as u64 })),
        1 => format!("used {}", m.field(rng, base + 28, 4, Dom::Count { max: m.get(base + 28, 4) })),
        2 => {
            let old = m.get(at, 1);
            let idx = [0u8, XATTR_USER, XATTR_TRUSTED, XATTR_SECURITY, XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT, 6, 255];
            let new = idx.iter().copied().filter(|&i| u64::from(i) != old).nth(rng.below(7) as usize).unwrap_or(0);
            m.set(at, 1, new.into());
            format!("entry@{off} index {old} -> {new}")
        }
        3 => format!("entry@{off} name_len {}", m.field(rng, at + 1, 1, Dom::Count { max: m.get(at + 1, 1) })),
        4 => format!("entry@{off} value_len {}", m.field(rng, at + 2, 2, Dom::Count { max: m.get(at + 2, 2) })),
        5 => {
            let len = m.get(at + 1, 1) + m.get(at + 2, 2);
            let k = rng.below(len.max(1)) as usize;
            let old = m.get(at + 4 + k, 1);
            let new = *rng.pick(&[0u64, b'/'.into(), b'.'.into(), 0xff]).unwrap_or(&0);
            m.set(at + 4 + k, 1, if new == old { old ^ 1 } else { new });
            format!("entry@{off} byte {k} {old} -> {new}")
        }
        _ => identity(rng, m.c, blk, owner, &mut blocknr, &mut own),
    };
    seal_header(m.block(blk), XATTR_MAGIC, blocknr, own);
    format!("xattr block {blk} (inode {owner}) {what}")
}

/// Mutates an indexed directory's header: a bucket count (at a depth with buckets or next to
/// one), a seed byte (every key moves), the reserved word, or the header's block number or
/// owner; reseals it.
fn mutate_dir_header(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some((blk, owner, depths)) = rng.pick(&m.c.dir_headers).cloned() else { return mutate_v3_inode(m, rng) };
    let base = (blk * BS) as usize;
    let (mut blocknr, mut own) = (blk, u64::from(owner));
    let what = match rng.below(5) {
        0 | 1 => {
            let d = rng.pick(&depths).copied().unwrap_or(0);
            let d = (d + rng.below(3) as u32).saturating_sub(1).min(30);
            let at = base + 44 + 4 * d as usize;
            format!("leaves[{d}] {}", m.field(rng, at, 4, Dom::Count { max: 1u64 << d }))
        }
        2 => {
            let k = rng.below(16) as usize;
            format!("seed[{k}] {}", m.field(rng, base + 24 + k, 1, Dom::Raw))
        }
        3 => format!("reserved {}", m.field(rng, base + 40, 4, Dom::Raw)),
        _ => identity(rng, m.c, blk, owner, &mut blocknr, &mut own),
    };
    seal_header(m.block(blk), INDEX_MAGIC, blocknr, own);
    format!("dir index header {blk} (dir {owner}) {what}")
}

/// Mutates an inode's format v3 fields: its type to or from a special file's, its device
/// number, its xattr block (another file's, an extent node, 0, ...); re-encodes it.
fn mutate_v3_inode(m: &mut Mutant, rng: &mut Rng) -> String {
    let Some((ino, inode, path)) = rng.pick(&m.c.inodes).cloned() else { return "no inode".into() };
    let (blk, off) = m.c.sb.inode_pos(u64::from(ino)).unwrap_or((0, 0));
    let at = (blk * BS) as usize + off;
    let mut i = inode.clone();
    let (name, old, new): (&str, u64, u64) = match rng.below(3) {
        0 => {
            let types = [S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK, S_IFREG, S_IFDIR];
            let t = types.iter().copied().filter(|&t| t != i.mode & S_IFMT).nth(rng.below(5) as usize);
            let old = i.mode;
            i.mode = t.unwrap_or(S_IFREG) | (i.mode & !S_IFMT);
            ("mode", old.into(), i.mode.into())
        }
        1 => {
            let old = i.rdev;
            i.rdev = interesting(rng, m.c, Dom::Raw, old.into(), 32) as u32;
            ("rdev", old.into(), i.rdev.into())
        }
        _ => {
            let old = i.xattr_block;
            let other = rng.pick(&m.c.xattr_blocks).map_or(0, |x| x.0);
            let node = rng.pick(&m.c.extent_blocks).map_or(0, |x| x.0);
            i.xattr_block = match rng.below(4) {
                0 => other,
                1 => node,
                2 => 0,
                _ => interesting(rng, m.c, Dom::Block { own: old }, old, 64),
            };
            if i.xattr_block == old {
                i.xattr_block ^= 1;
            }
            ("xattr_block", old, i.xattr_block)
        }
    };
    let mut raw = m.bytes[at..at + INODE_SIZE].to_vec();
    i.encode(u64::from(ino), &mut raw);
    m.bytes[at..at + INODE_SIZE].copy_from_slice(&raw);
    format!("inode {ino} ({path}) {name} {old} -> {new}")
}

/// The kinds, with weights.
type Mutator = fn(&mut Mutant, &mut Rng) -> String;
const KINDS: [(Mutator, u64); 14] = [
    (mutate_inode, 24),
    (mutate_dir, 18),
    (mutate_extent_block, 5),
    (mutate_vec_ids, 5),
    (mutate_map, 7),
    (mutate_level0, 9),
    (mutate_upper, 4),
    (mutate_hnsw_header, 5),
    (mutate_vector, 3),
    (mutate_bitmap, 6),
    (mutate_journal, 3),
    (mutate_superblock, 3),
    (mutate_dir_copy, 3),
    (mutate_inode, 5),
];

/// The kinds of the format v3 structures, drawn after [`KINDS`] only when the catalog holds
/// some (see the module's docs).
const KINDS_V3: [(Mutator, u64); 5] =
    [(mutate_index_node, 5), (mutate_xattr, 6), (mutate_v3_inode, 5), (mutate_dir_header, 5), (mutate_code, 4)];

/// The kinds of a filesystem with PQ codes ([`build_base_pq`]), drawn after the others only
/// then (the draws over the other bases stay what they were).
const KINDS_PQ: [(Mutator, u64); 3] = [(mutate_code, 4), (mutate_codebook, 6), (mutate_pq_superblock, 5)];

/// Applies `n` mutations drawn from `rng` to `bytes` (an image whose catalog is `c`); returns
/// what each did.
pub fn mutate(bytes: &mut Vec<u8>, c: &Catalog, rng: &mut Rng, n: u32) -> Vec<String> {
    let mut m = Mutant { c, bytes: std::mem::take(bytes), log: Vec::new() };
    let mut kinds = KINDS.to_vec();
    if c.v3 {
        kinds.extend_from_slice(&KINDS_V3);
    }
    if c.sb.has_pq() {
        kinds.extend_from_slice(&KINDS_PQ);
    }
    let total: u64 = kinds.iter().map(|k| k.1).sum();
    for _ in 0..n {
        let mut r = rng.below(total);
        let f = kinds.iter().find(|k| {
            if r < k.1 {
                true
            } else {
                r -= k.1;
                false
            }
        });
        let f = f.map_or(mutate_inode as Mutator, |k| k.0);
        let what = f(&mut m, rng);
        m.log.push(what);
    }
    *bytes = m.bytes;
    m.log
}

#[cfg(test)]
mod tests {
    use super::*;
    use vexfs_image::fsck;
    use vexfs_image::vexfs_core::error::FormatError;
    use vexfs_image::vexfs_core::format::block::block_csum;
    use vexfs_image::vexfs_core::format::journal::decode_record;

    /// Mutants are reproducible, differ from the base, and keep every checksum right: the
    /// mutations reach what is behind the checksums.
    #[test]
    fn mutants_are_reproducible_and_sealed() {
        let base = build_base(2048).expect("base");
        let img = Image::open(MemDevice { bytes: base.clone() }).expect("open");
        let c = catalog(&img).expect("catalog");
        assert!(!c.v3 && c.index_nodes.is_empty(), "build_base holds no v3 structure: 090's regressions stay");
        let (mut changed, mut inodes_checked, mut blocks_checked) = (0, 0, 0);
        for index in 0..300 {
            let mut a = base.clone();
            let log = mutate(&mut a, &c, &mut Rng::new(7, index), 1 + (index % 3) as u32);
            assert_eq!(log.len(), 1 + (index % 3) as usize);
            let mut b = base.clone();
            mutate(&mut b, &c, &mut Rng::new(7, index), 1 + (index % 3) as u32);
            assert!(a == b, "mutant 7/{index} differs between two runs");
            changed += usize::from(a != base);
            for (ino, _, _) in &c.inodes {
                let (blk, off) = c.sb.inode_pos(u64::from(*ino)).expect("inode position");
                let at = (blk * BS) as usize + off;
                let r = Inode::decode(u64::from(*ino), &a[at..at + INODE_SIZE]);
                assert!(!matches!(r, Err(FormatError::BadChecksum { .. })), "mutant 7/{index}: {log:?}: inode {ino}");
                inodes_checked += 1;
            }
            let sealed = c.dir_blocks.iter().map(|d| d.0).chain(c.extent_blocks.iter().map(|e| e.0));
            for blk in sealed.chain(c.vec_id_blocks.iter().map(|v| v.0)).chain([c.geo.header]) {
                let raw = &a[(blk * BS) as usize..((blk + 1) * BS) as usize];
                let stored = u32::from_le_bytes(raw[4..8].try_into().expect("4 bytes"));
                assert_eq!(stored, block_csum(raw), "mutant 7/{index}: {log:?}: block {blk}");
                blocks_checked += 1;
            }
        }
        assert!(changed >= 295, "only {changed} of 300 mutants differ from the base");
        assert!(inodes_checked > 10_000 && blocks_checked > 4_000);
    }

    /// The small base holds every structure the mutations hit, a committed transaction that
    /// fsck replays (into memory with -n) and the offline writer replays, and nothing fsck
    /// calls a problem.
    #[test]
    fn small_base_holds_every_structure() {
        let base = build_small_base().expect("small base");
        assert_eq!(base.len() as u64, SMALL_BASE_BLOCKS * BS);
        let img = Image::open(MemDevice { bytes: base.clone() }).expect("open");
        assert!(img.sb().feature_incompat & FEATURE_INCOMPAT_RECOVER != 0);
        assert!(img.lookup("/journaled").is_err(), "the transaction is not applied in place");
        assert_eq!((img.sb().has_sq8(), img.sb().sq8_shift), (true, SQ8_SHIFT));
        let c = catalog(&img).expect("catalog");
        let long = c.inodes.iter().find(|i| i.2 == "/long").expect("/long").0;
        assert_eq!(c.dir_blocks.iter().filter(|d| d.1 == long).count(), 2, "{}", summary(&c));
        assert!(c.inodes.len() >= 20 && c.vec_id_blocks.len() == 1, "{}", summary(&c));
        // frag.bin's single extent block and tree.bin's tree of depth 2.
        let tree = c.inodes.iter().find(|i| i.2 == "/tree.bin").expect("/tree.bin").0;
        let depths: Vec<u16> = c.index_nodes.iter().filter(|n| n.1 == tree).map(|n| n.3).collect();
        assert_eq!(depths.iter().max(), Some(&2), "{}", summary(&c));
        assert!(depths.len() >= 2 && c.extent_blocks.len() >= 6, "{}", summary(&c));
        assert_eq!(c.xattr_blocks.len(), 3, "{}", summary(&c));
        assert!(c.xattr_blocks.iter().all(|x| !x.2.is_empty()) && c.v3);
        let specials = c.inodes.iter().filter(|i| is_special(i.1.mode)).count();
        assert_eq!(specials, 4, "{}", summary(&c));
        // /long (20 long names: more than a block) and /ix are indexed.
        assert_eq!(c.dir_headers.len(), 2, "{}", summary(&c));
        assert!(c.used_slots.len() >= 20 && !c.upper.is_empty(), "{}", summary(&c));
        // 4 block images (inode table, inode and block bitmaps, root directory) and the commit.
        assert_eq!(c.records.len(), 5, "{}", summary(&c));
        let (out, _) = fsck::run(MemDevice { bytes: base.clone() }, fsck::Mode::Check).expect("fsck -n");
        assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
        let replay = out.replay.expect("a replay");
        assert_eq!((replay.scan.transactions, replay.applied), (1, 4));
        let w = Writer::new(Image::open(MemDevice { bytes: base }).expect("open")).expect("writer");
        assert!(w.image().lookup("/journaled").is_ok(), "the writer replays the transaction");
        let h = w.image().lookup("/vec").and_then(|v| w.image().inode(v)).expect("/vec");
        assert!(h.is_dir());
    }

    /// Mutants of the small base are reproducible, and a mutated journal record keeps a right
    /// checksum (over the length it now says, when the reader accepts that length).
    #[test]
    fn record_mutations_keep_checksums() {
        let base = build_small_base().expect("small base");
        let c = catalog(&Image::open(MemDevice { bytes: base.clone() }).expect("open")).expect("catalog");
        let jr = c.sb.region(Region::Journal);
        let mut records_hit = 0;
        for index in 0..2000 {
            let mut a = base.clone();
            let log = mutate(&mut a, &c, &mut Rng::new(11, index), 1);
            let mut b = base.clone();
            assert_eq!(log, mutate(&mut b, &c, &mut Rng::new(11, index), 1));
            assert!(a == b, "mutant 11/{index} differs between two runs");
            if !log[0].starts_with("journal record") {
                continue;
            }
            records_hit += 1;
            assert!(a != base, "{log:?}");
            for &(pos, _) in &c.records {
                let at = |k: u64| a[log_at(jr.start, jr.blocks, pos + k)];
                let len = (0..4).rev().fold(0u64, |v, k| v << 8 | u64::from(at(20 + k)));
                let len = len.min(MAX_RECORD_PAYLOAD as u64);
                let rec: Vec<u8> = (0..RECORD_HEADER as u64 + len).map(at).collect();
                let r = decode_record(&rec, &c.sb.uuid, 0);
                assert!(!matches!(r, Err(FormatError::BadChecksum { .. })), "mutant 11/{index}: {log:?}: {r:?}");
            }
        }
        assert!(records_hit >= 10, "only {records_hit} record mutations in 2000");
    }

    /// The format v3 kinds are drawn over the small base (not over `build_base`'s), land in
    /// index nodes, xattr blocks and v3 inode fields, and keep every checksum right.
    #[test]
    fn v3_mutations_keep_checksums() {
        let base = build_small_base().expect("small base");
        let c = catalog(&Image::open(MemDevice { bytes: base.clone() }).expect("open")).expect("catalog");
        let mut hits = BTreeMap::new();
        for index in 0..3000 {
            let mut a = base.clone();
            let log = mutate(&mut a, &c, &mut Rng::new(13, index), 1);
            let kind = ["extent index node", "xattr block", "dir index header", "code of slot", "inode"]
                .into_iter()
                .find(|k| log[0].starts_with(k));
            if kind == Some("code of slot") {
                // A code has no checksum: fsck sees it as a code that is not its vector's (or
                // the mutant's value happened to be the code already).
                let (out, _) = fsck::run(MemDevice { bytes: a.clone() }, fsck::Mode::Check).expect("fsck -n");
                let kinds: Vec<fsck::Kind> = out.report.problems.iter().map(|p| p.kind).collect();
                assert!(kinds.iter().all(|&k| k == fsck::Kind::VectorCode), "mutant 13/{index}: {log:?}: {kinds:?}");
            }
            let v3_field = log[0].contains(" rdev ") || log[0].contains(" xattr_block ");
            *hits.entry(if v3_field { "v3 inode field" } else { kind.unwrap_or("other") }).or_insert(0) += 1;
            let sealed = c.extent_blocks.iter().map(|e| e.0).chain(c.xattr_blocks.iter().map(|x| x.0));
            let sealed = sealed.chain(c.dir_headers.iter().map(|h| h.0));
            for blk in sealed {
                let raw = &a[(blk * BS) as usize..((blk + 1) * BS) as usize];
                let stored = u32::from_le_bytes(raw[4..8].try_into().expect("4 bytes"));
                assert_eq!(stored, block_csum(raw), "mutant 13/{index}: {log:?}: block {blk}");
            }
        }
        for k in ["extent index node", "xattr block", "dir index header", "v3 inode field", "code of slot"] {
            assert!(hits.get(k).copied().unwrap_or(0) >= 30, "{k}: {hits:?}");
        }
    }

    /// The PQ base keeps PQ codes in node records and fsck finds it clean; its mutants hit the
    /// PQ codes, the codebook and the superblock's PQ fields (drawn only over a PQ base); fsck
    /// and the searcher (the kernel's search code) take every such mutant without a panic;
    /// a changed code is what fsck reports (VectorCode), a non-finite centroid too, and a
    /// huge finite one still lets the searcher answer.
    #[test]
    fn pq_mutations_reach_the_codes() {
        use vexfs_image::vectors::{MapDevice, Searcher};
        let base = build_base_pq(2048).expect("pq base");
        let img = Image::open(MemDevice { bytes: base.clone() }).expect("open");
        assert!(img.sb().has_pq() && img.sb().has_node_records() && img.sb().pq_m == PQ_BASE_M);
        let c = catalog(&img).expect("catalog");
        assert!(c.v3 && c.used_slots.len() >= 100, "{}", summary(&c));
        let (out, _) = fsck::run(MemDevice { bytes: base.clone() }, fsck::Mode::Check).expect("fsck -n");
        assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
        let q = vector(c.sb.vec_dim, 5_000_000);
        let mut hits = BTreeMap::new();
        for index in 0..2500 {
            let mut a = base.clone();
            let log = mutate(&mut a, &c, &mut Rng::new(17, index), 1);
            let kind = ["pq codebook", "pq code", "pq centroid", "superblock pq_m", "superblock feature_incompat"]
                .into_iter()
                .find(|k| log[0].starts_with(k));
            let Some(kind) = kind else { continue };
            *hits.entry(kind).or_insert(0) += 1;
            let fsck = fsck::run(MemDevice { bytes: a.clone() }, fsck::Mode::Check);
            let kinds: Vec<fsck::Kind> =
                fsck.as_ref().map(|(o, _)| o.report.problems.iter().map(|p| p.kind).collect()).unwrap_or_default();
            let non_finite = ["NaN", "inf"].iter().any(|v| log[0].ends_with(v));
            if kind == "pq code" {
                assert!(kinds.iter().all(|&k| k == fsck::Kind::VectorCode), "mutant 17/{index}: {log:?}: {kinds:?}");
            } else if kind == "pq centroid" && non_finite {
                assert!(kinds.contains(&fsck::Kind::VectorCode), "mutant 17/{index}: {log:?}: {kinds:?}");
            }
            let dev = MapDevice::from_bytes(&a).expect("map");
            let Ok(img) = Image::open(dev) else { continue };
            let Ok(mut s) = Searcher::new(img, 512) else { continue };
            for ef in [5, 64, 512] {
                let r = s.search(&q, 5, ef);
                if kind == "pq centroid" && !non_finite {
                    assert_eq!(r.map(|h| h.len()).ok(), Some(5), "mutant 17/{index}: {log:?}");
                }
            }
        }
        for k in ["pq code", "pq centroid", "superblock pq_m", "superblock feature_incompat"] {
            assert!(hits.get(k).copied().unwrap_or(0) >= 20, "{k}: {hits:?}");
        }
        // The bytes past a codebook block's centroids (half of each block here).
        assert!(hits.get("pq codebook").copied().unwrap_or(0) >= 5, "{hits:?}");
    }

    /// The fuzzer's generator takes its draws from the input, then goes on by itself.
    #[test]
    fn rng_from_bytes() {
        let mut r = Rng::from_bytes(&[5, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(r.next_u64(), 5);
        assert_eq!(r.next_u64(), 9);
        let (x, y) = (r.next_u64(), r.next_u64());
        assert_ne!(x, y);
    }
}
