//! Makes the frozen image of on-disk format v3 with the feature `EOFBLOCKS` (blocks
//! preallocated past the end of a file) and its manifest: `tests/images/v3-eofblocks.img.gz`
//! and `tests/images/v3-eofblocks.manifest` (see `tests/images/README.md`).
//!
//! ```sh
//! cargo run --release -p vexfs-image --example make_frozen_image_v3_eofblocks -- tests/images
//! ```
//!
//! This program documents how the committed image was made; it is not part of any test (the
//! tests read the committed bytes).
//!
//! What the feature added, and where this image holds it: the superblock's incompat bit
//! `EOFBLOCKS` (4), set in the primary superblock only (as the kernel sets it); the inode flag
//! `EOFBLOCKS` (2) on a regular file whose extents map blocks past its size, every such block
//! zeros (what `fallocate(FALLOC_FL_KEEP_SIZE)` past the end of file leaves). The offline
//! writer makes no preallocation (it leaves blocks of zeros as holes), so each preallocated
//! file is written with its preallocated blocks filled, then its size cut, those blocks and the
//! last block's tail past the size zeroed on the image, and the flag set:
//!
//! - `/prealloc.log`: 5,000 bytes of text and 8 blocks past them (10 blocks, size 5,000), one
//!   embedding;
//! - `/reserved`: size 0, 16 preallocated blocks;
//! - `/dir/inner`: 10 bytes, then a hole, then blocks 4..=6 preallocated past the size (3
//!   extents of which 2 lie past the size);
//! - `/plain.txt`: an ordinary file (no flag), one embedding; `/dir` a directory.
//!
//! Everything else as the v3 generators: dimension 8, l2, HNSW m 4 / ef_construction 32, fixed
//! UUID, label, times and level seed, components multiples of 1/4 (exact distances), one
//! search recorded (every vector), the journal's stale records zeroed.

#[path = "frozen_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{checked_search, finish, head_lines, inode_lines, new_writer, settle, Made, Res, Vecs, DIM};
use vexfs_core::format::inode::INODE_FLAG_EOFBLOCKS;
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{
    Metric, Superblock, FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_EOFBLOCKS, ROOT_INO,
};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::{Image, MemDevice};

/// 4 MiB.
const BLOCKS: u64 = 1024;
const JOURNAL_BLOCKS: u64 = 160;
/// Base of the timestamps: inode `i` has mtime `T0 + 3600 i` (atime +2 s, ctime +1 s).
const T0: i64 = 1_795_000_000;
const BS: usize = BLOCK_SIZE;

fn params() -> MkfsParams {
    let mut label = [0u8; 32];
    label[..24].copy_from_slice(b"vexfs-frozen-v3-eofblock");
    MkfsParams {
        block_count: BLOCKS,
        inode_count: Some(64),
        journal_blocks: Some(JOURNAL_BLOCKS),
        vec_capacity: Some(16),
        dim: DIM as u32,
        metric: Metric::L2,
        m: 4,
        ef_construction: 32,
        uuid: *b"vexfs-frozen-v3e",
        label,
        now: T0 as u64,
        seed: 20_261_202,
    }
}

/// Bytes that are never zero, so that the writer maps every block of them (`n` bytes).
fn filler(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Cuts file `ino` of `img` to `size` bytes, keeping every block it maps: the blocks past the
/// size and the last block's tail past it are zeroed on the image, the flag set.
fn preallocate(img: &mut Image<MemDevice>, ino: u32, size: u64) -> Res<()> {
    let mut inode = img.inode(ino)?;
    let bs = BS as u64;
    for e in img.extents(ino, &inode)? {
        for i in 0..u64::from(e.len) {
            let (logical, block) = (u64::from(e.logical) + i, e.start + i);
            let keep = size.saturating_sub(logical * bs).min(bs) as usize;
            if keep < BS {
                let mut b = img.read_block(block)?;
                b[keep..].fill(0);
                img.write_block(block, &b)?;
            }
        }
    }
    inode.size = size;
    inode.flags |= INODE_FLAG_EOFBLOCKS;
    img.write_inode(ino, &inode)?;
    Ok(())
}

fn main() -> Res<()> {
    let out_dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: make_frozen_image_v3_eofblocks OUT_DIR")?);
    let mut w = new_writer(&params(), true)?;
    let r = ROOT_INO;
    let text: Vec<u8> =
        b"a log that fallocate(KEEP_SIZE) reserved room for\n".iter().copied().cycle().take(5000).collect();
    let mut log_data = text.clone();
    log_data.extend(filler(10 * BS - text.len()));
    let log = w.create(r, "prealloc.log", &log_data)?;
    let reserved = w.create(r, "reserved", &filler(16 * BS))?;
    let dir = w.mkdir(r, "dir", 0o755)?;
    // Blocks 0, 4, 5 and 6 (1..=3 a hole): block 4 written apart, so 0, then 4..=6.
    let mut inner_data = vec![0u8; 7 * BS];
    inner_data[..BS].copy_from_slice(&filler(BS));
    inner_data[4 * BS..].copy_from_slice(&filler(3 * BS));
    let inner = w.create(dir, "inner", &inner_data)?;
    let plain_data = b"an ordinary file next to the preallocated ones\n".to_vec();
    let plain = w.create(r, "plain.txt", &plain_data)?;

    let mut g = Vecs(0x5eed_e0f0);
    let (v_log, v_plain) = (g.take(1), g.take(1));
    w.set_embeddings(log, &v_log)?;
    w.set_embeddings(plain, &v_plain)?;
    let h = w.vector_header()?;
    if (h.live, h.deleted) != (2, 0) {
        return Err(format!("expected 2 live vectors, the header says {h:?}").into());
    }
    let chunks: HashMap<u32, Vec<Vec<f32>>> = HashMap::from([(log, v_log.clone()), (plain, v_plain.clone())]);
    let mut qg = Vecs(0x9e37_79b9);
    let queries: Vec<(Vec<f32>, usize)> = vec![(qg.next(), 2)];
    let results = checked_search(&mut w, &chunks, &queries)?;

    // The preallocations, as the kernel leaves them: the flags, then the feature in the
    // primary superblock only.
    let mut img = w.commit()?;
    preallocate(&mut img, log, text.len() as u64)?;
    preallocate(&mut img, reserved, 0)?;
    preallocate(&mut img, inner, 10)?;
    let mut b = img.read_block(0)?;
    let mut sb = Superblock::decode(&b[..]).map_err(|e| format!("superblock: {e:?}"))?;
    sb.feature_incompat |= FEATURE_INCOMPAT_EOFBLOCKS;
    sb.encode(&mut b[..]);
    img.write_block(0, &b)?;
    let img = Image::open(img.into_device())?;
    let content: HashMap<u32, Vec<u8>> =
        HashMap::from([(log, text.clone()), (reserved, Vec::new()), (inner, filler(10)), (plain, plain_data.clone())]);
    let owners: HashMap<u32, (u32, u32)> = HashMap::from([(log, (1000, 1000))]);
    let (raw, paths, inos) = settle(img, T0, &owners)?;
    let img = Image::open(MemDevice { bytes: raw.clone() })?;

    // What the image must hold.
    if img.sb().feature_incompat != FEATURE_INCOMPAT_DIR_INDEX | FEATURE_INCOMPAT_EOFBLOCKS {
        return Err(format!("feature_incompat {}", img.sb().feature_incompat).into());
    }
    for (ino, size, blocks, extents) in
        [(log, 5000, 10, 1), (reserved, 0, 16, 1), (inner, 10, 4, 2), (plain, plain_data.len() as u64, 1, 1)]
    {
        let i = img.inode(ino)?;
        let flagged = i.flags == INODE_FLAG_EOFBLOCKS;
        let n = img.extents(ino, &i)?.len();
        if (i.size, i.blocks, n, flagged) != (size, blocks, extents, ino != plain) {
            return Err(
                format!("inode {ino}: size {}, blocks {}, {n} extents, flags {}", i.size, i.blocks, i.flags).into()
            );
        }
        if img.read_file(ino, &i)? != content[&ino] {
            return Err(format!("inode {ino}: contents").into());
        }
    }

    let mut m = String::new();
    m.push_str(MANIFEST_HEAD);
    head_lines(&mut m, &raw, img.sb(), &h)?;
    inode_lines(&mut m, &img, &inos)?;
    let made =
        Made { paths: &paths, inos: &inos, content: &content, chunks: &chunks, queries: &queries, results: &results };
    finish(m, &img, &made, &h, &out_dir, "v3-eofblocks", &raw)
}

const MANIFEST_HEAD: &str = "\
# What the frozen image v3-eofblocks.img.gz (on-disk format v3 with the feature EOFBLOCKS:
# blocks preallocated past the end of a file) holds. Made by
# image/examples/make_frozen_image_v3_eofblocks.rs; checked by image/tests/frozen_v3_eofblocks.rs
# (the image crate) and tests/guest/064-frozen-v3-eofblocks.sh (the kernel, vexctl, fsck.vexfs).
# Never regenerate: see README.md.
# One item per line, fields separated by one space, '#' starts a comment line.
#
# image RAW_BYTES RAW_SHA256                 the uncompressed image
# sb FIELD VALUE                             a superblock field (label: NUL padding dropped)
# hnsw FIELD VALUE                           the HNSW header (entry slot, entry_level, live, deleted)
# inode INO TYPE MODE UID GID LINKS SIZE BLOCKS ATIME MTIME CTIME
#     every inode in use; TYPE dir|file; MODE octal with the type bits; SIZE bytes; BLOCKS
#     4 KiB blocks held (data, the preallocation past the size included); times
#     SECONDS.NANOSECONDS
# tree INO DEPTH NODES EXTENTS
#     every inode in use: the depth of its extent tree's root (- when it has no tree), the
#     tree's node blocks and the inode's extents (those past the size included)
# path INO PATH                              every name reachable from the root, the root is /
# data INO SHA256                            sha256 of a regular file's content (its SIZE bytes)
# slots INO SLOT...                          the vector slot of each chunk of a regular file
# chunk INO CHUNK BITS DECIMALS              an embedding: BITS the 8 float32 bit patterns (hex),
#     DECIMALS the same values as Rust prints them (vexctl get), both comma-separated
# query Q K EF BITS DECIMALS                 a search (vexctl search --row Q -k K --ef EF)
# hit Q RANK INO CHUNK SLOT DIST_BITS DISTANCE PATH
#     its results, nearest first: squared l2 distance, exact; PATH as vexctl search names it
";
