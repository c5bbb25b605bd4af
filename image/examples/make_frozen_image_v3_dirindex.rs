//! Makes the frozen image of on-disk format v3 with the feature `DIR_INDEX` (indexed
//! directories) and its manifest: `tests/images/v3-dirindex.img.gz` and
//! `tests/images/v3-dirindex.manifest` (see `tests/images/README.md`).
//!
//! ```sh
//! cargo run --release -p vexfs-image --example make_frozen_image_v3_dirindex -- tests/images
//! ```
//!
//! This program documents how the committed image was made; it is not part of any test (the
//! tests read the committed bytes). `make_frozen_image_v3.rs` stays as the record of
//! `v3.img.gz` (v3 without the feature, which must keep reading as it does).
//!
//! What the feature added, and where this image holds it: the superblock's incompat bit
//! `DIR_INDEX` (2); the inode flag `INDEX`; an indexed directory's header at logical block 0
//! ("VDXH", the SipHash seed, buckets per depth); its buckets, ordinary directory blocks at
//! logical blocks `2^d + prefix`, the trie's inner nodes holes (so the directory's extents are
//! many and sparse: an extent tree); names placed by the top 62 bits of SipHash-2-4 under the
//! seed. The image is a clean filesystem made by the offline writer on an image formatted with
//! `mkfs::format_with(.., FormatOpts { dir_index: true })`, its directory seeds fixed
//! (`Writer::set_dir_seeds`):
//!
//! - `/big`: an indexed directory of about 2,000 entries, names of 1 to 64 bytes and every 37th
//!   of 255, buckets at depths 4 and more; in it 100 distinct files (some with contents), 8
//!   subdirectories (one holds a file with an embedding, one a subdirectory, one is empty),
//!   symlinks, a FIFO, and hard links to 9 of the files (about 210 names each); then 280
//!   entries removed (`Writer::unlink`): hard links, whole files (their inodes freed) and an
//!   empty subdirectory, so buckets hold gaps and the inode table holes;
//! - `/small`: a linear directory of one block next to it (a few names, a hard link into
//!   `/big`, a symlink into it);
//! - `/hello.txt` with 2 embeddings and `/big/<file 50>` with 1, `/big/<dir>/deep.txt` with 1;
//!   one search recorded (exact: every vector);
//! - `/link`, a symlink to a 255-byte name in `/big`.
//!
//! The manifest adds a `dirindex` item per indexed directory: the header's seed, its buckets
//! per depth, the bucket count, the entries and the sha256 of the names in key order (the
//! order of the kernel's readdir). Everything else as v3's generator: dimension 8, l2, HNSW m 4
//! / ef_construction 32, fixed UUID, label, times and level seed, vector components multiples
//! of 1/4 in -2..=2 (every distance exact on any CPU), no ties; the journal's stale records
//! zeroed and every inode's times fixed.

#[path = "frozen_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use common::{
    checked_search, finish, head_lines, inode_lines, new_writer, settle, sha256_hex, tree_fields, Made, Res, Vecs, DIM,
};
use vexfs_core::format::inode::{INODE_FLAG_INDEX, S_IFIFO};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Metric, FEATURE_INCOMPAT_DIR_INDEX, ROOT_INO};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::writer::FileOpts;
use vexfs_image::{Image, MemDevice};

/// 8 MiB: room for the directory (about 60 blocks with its tree) and for guest 063's names.
const BLOCKS: u64 = 2048;
const JOURNAL_BLOCKS: u64 = 160;
/// Base of the timestamps: inode `i` has mtime `T0 + 3600 i` (atime +2 s, ctime +1 s).
const T0: i64 = 1_790_000_000;
/// The seed of the writer's directory-seed generator.
const DIR_SEEDS: u64 = 20_261_201;
/// Distinct files in `/big` (names 0..FILES), then subdirectories, symlinks, a FIFO, links.
const FILES: u32 = 100;
const SUBDIRS: u32 = 8;
const SYMLINKS: u32 = 4;
/// Names made in `/big`: 0..NAMES (the files, subdirectories, symlinks, FIFO, then links).
const NAMES: u32 = 2250;
/// The file of `/big` with an embedding (one link only: its path in a search is its name).
const VEC_FILE: u32 = 50;

fn params() -> MkfsParams {
    let mut label = [0u8; 32];
    label[..24].copy_from_slice(b"vexfs-frozen-v3-dirindex");
    MkfsParams {
        block_count: BLOCKS,
        inode_count: Some(256),
        journal_blocks: Some(JOURNAL_BLOCKS),
        vec_capacity: Some(64),
        dim: DIM as u32,
        metric: Metric::L2,
        m: 4,
        ef_construction: 32,
        uuid: *b"vexfs-frozen-v3i",
        label,
        now: T0 as u64,
        seed: 20_261_232,
    }
}

/// Name `i` of `/big`: unique (its decimal digits, then `-` and letters), 1 to 64 bytes, every
/// 37th exactly 255.
fn name(i: u32) -> String {
    let len = if i % 37 == 0 { 255 } else { 1 + (i as usize * 7919) % 64 };
    let mut s = i.to_string();
    if s.len() < len {
        s.push('-');
    }
    while s.len() < len {
        s.push((b'a' + (s.len() % 26) as u8) as char);
    }
    s
}

/// The contents of file `i` of `/big`: every 10th holds text (up to 2 blocks), the rest empty.
fn contents(i: u32) -> Vec<u8> {
    if i % 10 != 0 {
        return Vec::new();
    }
    let line = format!("/big file {i}\n");
    line.bytes().cycle().take(100 * i as usize + 7).collect()
}

/// The `dirindex` item of directory `ino` (after `dirindex INO`): the seed (hex), the buckets
/// per depth (`DEPTH:COUNT`, comma-separated, shallowest first), the buckets, the entries and
/// the sha256 of the names in key order, each followed by a newline.
fn dirindex_fields(img: &Image<MemDevice>, ino: u32) -> Res<String> {
    let i = img.inode(ino)?;
    let (_, h) = img.dir_index_header(ino, &i)?.ok_or("not indexed")?;
    let seed: String = h.seed.iter().map(|b| format!("{b:02x}")).collect();
    let depths: Vec<String> = h.depths().map(|d| format!("{d}:{}", h.leaves[d as usize])).collect();
    let buckets = img.dir_blocks(ino, &i)?.len();
    let entries = img.read_dir(ino, &i)?;
    let mut names = Vec::new();
    for e in &entries {
        names.extend_from_slice(&e.name);
        names.push(b'\n');
    }
    Ok(format!("{seed} {} {buckets} {} {}", depths.join(","), entries.len(), sha256_hex(&names)))
}

fn main() -> Res<()> {
    let out_dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: make_frozen_image_v3_dirindex OUT_DIR")?);
    let mut w = new_writer(&params(), true)?;
    w.set_dir_seeds(Some(DIR_SEEDS));
    let r = ROOT_INO;
    // Contents by inode, as written.
    let mut content: HashMap<u32, Vec<u8>> = HashMap::new();

    let hello = w.create(r, "hello.txt", b"hello, frozen vexfs v3 with dir_index\n")?;
    content.insert(hello, b"hello, frozen vexfs v3 with dir_index\n".to_vec());
    let big = w.mkdir(r, "big", 0o755)?;
    let small = w.mkdir(r, "small", 0o750)?;

    // /big: the files, the subdirectories, the symlinks, a FIFO, then the hard links.
    let mut files = Vec::new();
    for i in 0..FILES {
        let data = contents(i);
        let mode = if i % 3 == 0 { 0o600 } else { 0o644 };
        let ino = w.create_with(big, &name(i), &data, FileOpts { mode, ..FileOpts::default() })?;
        content.insert(ino, data);
        files.push(ino);
    }
    let mut subdirs = Vec::new();
    for i in FILES..FILES + SUBDIRS {
        subdirs.push(w.mkdir(big, &name(i), 0o755)?);
    }
    // In the first subdirectory a file with an embedding and a nested directory; in the second
    // a hard link to a file of /big; the third stays empty; the last is removed below.
    let deep_data = b"a file two levels under the root, in an indexed directory\n".to_vec();
    let deep = w.create(subdirs[0], "deep.txt", &deep_data)?;
    content.insert(deep, deep_data);
    let nested = w.mkdir(subdirs[0], "nested", 0o700)?;
    let leaf = w.create(nested, "leaf", b"leaf\n")?;
    content.insert(leaf, b"leaf\n".to_vec());
    w.link(subdirs[1], "alias-of-10", files[10])?;
    let first_link = FILES + SUBDIRS;
    for i in first_link..first_link + SYMLINKS {
        // Targets: a sibling in /big, a 255-byte one, one in /small, a dangling one.
        let target = match i - first_link {
            0 => name(1),
            1 => name(37),
            2 => "../small/a".to_string(),
            _ => "no-such-name".to_string(),
        };
        w.symlink(big, &name(i), &target)?;
    }
    let fifo = first_link + SYMLINKS;
    w.mknod(big, &name(fifo), S_IFIFO | 0o640, 0)?;
    // The hard links: to files 1..=9 (never VEC_FILE, whose one path names it in a search).
    for i in fifo + 1..NAMES {
        w.link(big, &name(i), files[(1 + i % 9) as usize])?;
    }
    if !w.image().is_indexed(big, &w.image().inode(big)?)? {
        return Err("/big is not indexed".into());
    }

    // /small: linear, one block.
    let a = w.create(small, "a", b"small a\n")?;
    content.insert(a, b"small a\n".to_vec());
    w.link(small, "b-is-big-20", files[20])?;
    w.symlink(small, "to-big", &format!("../big/{}", name(74)))?;
    w.mkdir(small, "sub", 0o755)?;

    // Removals: every 8th hard link, files 90..100 (their inodes freed: 91 and 95 had no link
    // but their name), the last subdirectory (empty) and the dangling symlink.
    let mut removed = 0;
    for i in (fifo + 1..NAMES).step_by(8) {
        w.unlink(big, &name(i))?;
        removed += 1;
    }
    for i in 90..FILES {
        w.unlink(big, &name(i))?;
        content.remove(&files[i as usize]);
        removed += 1;
    }
    w.unlink(big, &name(FILES + SUBDIRS - 1))?;
    w.unlink(big, &name(first_link + SYMLINKS - 1))?;
    removed += 2;
    w.symlink(r, "link", &format!("big/{}", name(37)))?;

    // Embeddings: a seed whose data has no tie in the recorded query (checked below).
    let vec_file = files[VEC_FILE as usize];
    let mut g = Vecs(0x5eed_0031);
    let v_hello = g.take(2);
    let v_big = g.take(1);
    let v_deep = g.take(1);
    w.set_embeddings(hello, &v_hello)?;
    w.set_embeddings(vec_file, &v_big)?;
    w.set_embeddings(deep, &v_deep)?;
    let h = w.vector_header()?;
    if (h.live, h.deleted) != (4, 0) {
        return Err(format!("expected 4 live vectors and no tombstone, the header says {h:?}").into());
    }
    let chunks: HashMap<u32, Vec<Vec<f32>>> =
        HashMap::from([(hello, v_hello.clone()), (vec_file, v_big.clone()), (deep, v_deep.clone())]);
    // One query, k 4: every vector, in order.
    let mut qg = Vecs(0x9e37_79b9);
    let queries: Vec<(Vec<f32>, usize)> = vec![(qg.next(), 4)];
    let results = checked_search(&mut w, &chunks, &queries)?;

    // Owners, then fixed timestamps (the writer stamps the current time).
    let img = w.commit()?;
    let owners: HashMap<u32, (u32, u32)> =
        HashMap::from([(big, (1000, 1000)), (small, (1000, 100)), (files[3], (0, 100)), (files[20], (1001, 1001))]);
    let (raw, paths, inos) = settle(img, T0, &owners)?;
    let img = Image::open(MemDevice { bytes: raw.clone() })?;

    // What the image must hold: /big indexed, deep enough, its entries as made; /small linear.
    if img.sb().feature_incompat != FEATURE_INCOMPAT_DIR_INDEX {
        return Err(format!("feature_incompat {}", img.sb().feature_incompat).into());
    }
    let big_inode = img.inode(big)?;
    let (_, header) = img.dir_index_header(big, &big_inode)?.ok_or("/big is not indexed")?;
    let deepest = header.depths().last().ok_or("no bucket")?;
    let shallowest = header.depths().next().ok_or("no bucket")?;
    let entries = img.read_dir(big, &big_inode)?.len();
    let want = NAMES as usize - removed;
    if deepest < 4 || entries != want || big_inode.flags != INODE_FLAG_INDEX {
        return Err(format!("/big: depths {shallowest}..={deepest}, {entries} entries (not {want})").into());
    }
    let small_inode = img.inode(small)?;
    if img.is_indexed(small, &small_inode)? || small_inode.size != BLOCK_SIZE as u64 {
        return Err("/small should be linear, one block".into());
    }
    let mut indexed = Vec::new();
    for &ino in &inos {
        if img.inode(ino)?.flags & INODE_FLAG_INDEX != 0 {
            indexed.push(ino);
        }
    }
    if indexed != [big] {
        return Err(format!("indexed directories {indexed:?}, not /big only").into());
    }
    eprintln!(
        "/big: {entries} entries, {} buckets at depths {shallowest}..={deepest}, size {}, blocks {}, tree {:?}",
        img.dir_blocks(big, &big_inode)?.len(),
        big_inode.size,
        big_inode.blocks,
        tree_fields(&img, big)?
    );

    // The manifest.
    let sb = img.sb();
    let mut m = String::new();
    m.push_str(MANIFEST_HEAD);
    head_lines(&mut m, &raw, sb, &h)?;
    inode_lines(&mut m, &img, &inos)?;
    for &ino in &indexed {
        writeln!(m, "dirindex {ino} {}", dirindex_fields(&img, ino)?)?;
    }
    let made =
        Made { paths: &paths, inos: &inos, content: &content, chunks: &chunks, queries: &queries, results: &results };
    finish(m, &img, &made, &h, &out_dir, "v3-dirindex", &raw)
}

const MANIFEST_HEAD: &str = "\
# What the frozen image v3-dirindex.img.gz (on-disk format v3 with the feature DIR_INDEX:
# indexed directories) holds. Made by image/examples/make_frozen_image_v3_dirindex.rs; checked by
# image/tests/frozen_v3_dirindex.rs (the image crate) and tests/guest/063-frozen-v3-dirindex.sh
# (the kernel, vexctl, fsck.vexfs). Never regenerate: see README.md.
# One item per line, fields separated by one space, '#' starts a comment line.
#
# image RAW_BYTES RAW_SHA256                 the uncompressed image
# sb FIELD VALUE                             a superblock field (label: NUL padding dropped)
# hnsw FIELD VALUE                           the HNSW header (entry slot, entry_level, live, deleted)
# inode INO TYPE MODE UID GID LINKS SIZE BLOCKS ATIME MTIME CTIME
#     every inode in use; TYPE dir|file|symlink|fifo; MODE octal with the type bits; SIZE
#     bytes; BLOCKS 4 KiB blocks held (data, directory index header and buckets, extent tree);
#     times SECONDS.NANOSECONDS
# tree INO DEPTH NODES EXTENTS
#     every inode in use: the depth of its extent tree's root (- when it has no tree), the
#     tree's node blocks (root included) and the inode's extents (inline and in the tree)
# dirindex INO SEED DEPTHS BUCKETS ENTRIES NAMES_SHA256
#     every indexed directory (inode flag INDEX): its header's seed (32 hex digits), the buckets
#     at each depth that has any (DEPTH:COUNT, comma-separated, shallowest first), the buckets
#     (mapped logical blocks but the header), the entries, and the sha256 of its names in key
#     order (readdir's order), each followed by a newline
# path INO PATH                              every name reachable from the root, the root is /
# data INO SHA256                            sha256 of a regular file's content (holes read as 0)
# target INO TARGET                          a symlink's target
# slots INO SLOT...                          the vector slot of each chunk of a regular file
# chunk INO CHUNK BITS DECIMALS              an embedding: BITS the 8 float32 bit patterns (hex),
#     DECIMALS the same values as Rust prints them (vexctl get), both comma-separated
# query Q K EF BITS DECIMALS                 a search (vexctl search --row Q -k K --ef EF)
# hit Q RANK INO CHUNK SLOT DIST_BITS DISTANCE PATH
#     its results, nearest first: squared l2 distance, exact; PATH as vexctl search names it
";
