//! Makes the frozen image of on-disk format v3 and its manifest: `tests/images/v3.img.gz` and
//! `tests/images/v3.manifest` (see `tests/images/README.md`).
//!
//! ```sh
//! cargo run --release -p vexfs-image --example make_frozen_image_v3 -- tests/images
//! ```
//!
//! This program documents how the committed image was made; it is not part of any test (the
//! tests read the committed bytes). The v1 and v2 generators stay as the record of theirs.
//!
//! What v3 added, and where this image holds it: a file's extent block is the root of a B+-tree
//! of extent blocks (`depth` at byte 28, index entries in the nodes of depth > 0) and a file has
//! no 260-extent limit. The image is a clean filesystem made by the offline writer (v2's image
//! covers the journal) whose regular files have, one block per extent (`max_extent_blocks` 1, or
//! a hole between every two data blocks):
//!
//! - `/deep.bin`: 764 extents, a tree of depth 1: an index root over 3 leaves of 254, 254 and
//!   250 extents (the root's block never moves: it was a leaf until the 255th tree extent);
//! - `/dir/sparse.bin`: 261 data blocks with a hole before, between and after them (v2's limit
//!   plus one): depth 1, leaves of 254 and 1 extents;
//! - `/dir/full.bin`: 260 extents, v2's limit: a full leaf (254) as the root, depth 0;
//! - `/dir/seven.bin`: 7 extents, a root leaf of 1; `/six.bin`: 6 extents, all inline, no tree;
//! - `/hello.txt` (1 extent), an empty file, a directory, a symlink, embeddings on three files
//!   and two searches, so that v1's kinds of items are exercised too.
//!
//! v3 also added special files (inode types FIFO, socket, character and block device: no data,
//! size 0, a device's number in the inode's `rdev`, dirent types 1, 2, 6 and 12). The image holds
//! one of each, made by `Writer::mknod` after every other inode (so those keep their numbers):
//! `/fifo`, `/sock`, `/dir/null` (character device 1:3, the kernel's /dev/null) and `/loop300`
//! (block device 7:300: a minor above 255, so `rdev` holds minor bits 8-19 at bits 20-31). The
//! manifest adds an `rdev` item per device.
//!
//! v3 also added extended attributes (an inode's `xattr_block` names a "VXAT" block holding its
//! `user.`, `trusted.` and `security.` attributes). The image was remade a second time, before v3
//! shipped, to hold them, set by `Writer::set_xattr` after everything else (so every other block
//! keeps its place): on `/six.bin` a `user.`, a `trusted.` (a value with NUL bytes) and a
//! `security.` attribute (1,000 bytes) of the same name as the `trusted.` one, on `/dir` a `user.` one, on `/dir/null` a `trusted.`
//! one: three xattr blocks. The manifest adds an `xattr` item per attribute, its value in hex.
//!
//! Every data block holds text naming its file and block number, so a block read from the wrong
//! place changes the file's hash, and the image compresses well. The manifest adds a `tree` item
//! per inode: the root's depth, its node blocks and its extents. Everything else as v1: dimension
//! 8, l2, HNSW m 4 / ef_construction 32, fixed UUID, label, times and level seed, vector
//! components multiples of 1/4 in -2..=2 (every distance exact on any CPU), no ties.

#[path = "frozen_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use common::{checked_search, finish, head_lines, inode_lines, new_writer, settle, tree_fields, Made, Res, Vecs, DIM};
use vexfs_core::format::inode::{S_IFBLK, S_IFCHR, S_IFIFO, S_IFMT, S_IFSOCK};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Metric, Region, ROOT_INO};
use vexfs_core::format::xattr::{prefix, XATTR_SECURITY, XATTR_TRUSTED, XATTR_USER};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::writer::{FileOpts, Writer};
use vexfs_image::{Image, MemDevice};

/// 8 MiB: room for the files (about 1,300 blocks) and for guest 062's appends.
const BLOCKS: u64 = 2048;
const JOURNAL_BLOCKS: u64 = 128;
/// Base of the timestamps: inode `i` has mtime `T0 + 3600 i` (atime +2 s, ctime +1 s).
const T0: i64 = 1_780_000_000;
/// Extents of `/deep.bin`: 6 inline, then leaves of 254, 254 and 250.
const DEEP_EXTENTS: usize = 764;

fn params() -> MkfsParams {
    let mut label = [0u8; 32];
    label[..15].copy_from_slice(b"vexfs-frozen-v3");
    MkfsParams {
        block_count: BLOCKS,
        inode_count: Some(64),
        journal_blocks: Some(JOURNAL_BLOCKS),
        vec_capacity: Some(64),
        dim: DIM as u32,
        metric: Metric::L2,
        m: 4,
        ef_construction: 32,
        uuid: *b"vexfs-frozen-v3!",
        label,
        now: T0 as u64,
        seed: 20_261_231,
    }
}

/// File block `l` of file `name`: the line "NAME block L" repeated (never a zero block).
fn block_text(name: &str, l: usize) -> Vec<u8> {
    let line = format!("{name} block {l:05}\n");
    line.bytes().cycle().take(BLOCK_SIZE).collect()
}

/// `blocks` blocks of [`block_text`], the last one cut to `last` bytes.
fn text_file(name: &str, blocks: usize, last: usize) -> Vec<u8> {
    let mut out: Vec<u8> = (0..blocks).flat_map(|l| block_text(name, l)).collect();
    out.truncate((blocks - 1) * BLOCK_SIZE + last);
    out
}

/// The 1,000-byte value of `security.label`: printable text (the guest reads it back through a
/// tool that prints values as text), no newline.
fn long_value() -> Vec<u8> {
    (0..).flat_map(|k: u32| format!("frozen v3 xattr {k:03}; ").into_bytes()).take(1000).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A device number in the kernel's `new_encode_dev` layout, as the inode's `rdev` holds it
/// (include/linux/kdev_t.h): minor bits 0-7, major bits 8-19, minor bits 8-19 at bits 20-31.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The inverse of [`encode_dev`]: (major, minor).
fn decode_dev(rdev: u32) -> (u32, u32) {
    ((rdev & 0xfff00) >> 8, (rdev & 0xff) | ((rdev >> 12) & 0xfff00))
}

fn main() -> Res<()> {
    let out_dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: make_frozen_image_v3 OUT_DIR")?);
    let mut w = new_writer(&params(), false)?;
    let r = ROOT_INO;
    // Contents by inode, as written.
    let mut content: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut file = |w: &mut Writer<MemDevice>, parent: u32, name: &str, data: Vec<u8>, opts: FileOpts| -> Res<u32> {
        let ino = w.create_with(parent, name, &data, opts)?;
        content.insert(ino, data);
        Ok(ino)
    };
    let one_per_block = |mode: u16| FileOpts { mode, max_extent_blocks: 1, ..FileOpts::default() };

    let hello = file(&mut w, r, "hello.txt", b"hello, frozen vexfs v3\n".to_vec(), FileOpts::default())?;
    file(&mut w, r, "empty", Vec::new(), FileOpts { mode: 0o600, ..FileOpts::default() })?;
    let deep = file(&mut w, r, "deep.bin", text_file("deep.bin", DEEP_EXTENTS, 1000), one_per_block(0o644))?;
    let six = file(&mut w, r, "six.bin", text_file("six.bin", 6, BLOCK_SIZE), one_per_block(0o640))?;
    let dir = w.mkdir(r, "dir", 0o755)?;
    let seven = file(&mut w, dir, "seven.bin", text_file("seven.bin", 7, 77), one_per_block(0o644))?;
    file(&mut w, dir, "full.bin", text_file("full.bin", 260, BLOCK_SIZE), one_per_block(0o444))?;
    // Data blocks at odd file blocks 1, 3, ..., 521: holes before, between and after them.
    let mut sparse = vec![0u8; 523 * BLOCK_SIZE + 300];
    for k in 0..261 {
        let l = 2 * k + 1;
        sparse[l * BLOCK_SIZE..(l + 1) * BLOCK_SIZE].copy_from_slice(&block_text("sparse.bin", l));
    }
    file(&mut w, dir, "sparse.bin", sparse, FileOpts::default())?;
    w.symlink(r, "link", "dir/sparse.bin")?;
    w.link(dir, "deep-alias", deep)?;
    // The special files, after every other inode: (inode, mode, rdev) as made.
    let specials = [
        (w.mknod(r, "fifo", S_IFIFO | 0o640, 0)?, S_IFIFO | 0o640, 0),
        (w.mknod(r, "sock", S_IFSOCK | 0o755, 0)?, S_IFSOCK | 0o755, 0),
        (w.mknod(dir, "null", S_IFCHR | 0o666, encode_dev(1, 3))?, S_IFCHR | 0o666, encode_dev(1, 3)),
        (w.mknod(r, "loop300", S_IFBLK | 0o660, encode_dev(7, 300))?, S_IFBLK | 0o660, encode_dev(7, 300)),
    ];

    // Embeddings: a seed whose data has no tie in any recorded query (checked below).
    let mut g = Vecs(0x5eed_0003);
    let v_hello = g.take(1);
    let v_deep = g.take(3);
    let v_seven = g.take(2);
    w.set_embeddings(hello, &v_hello)?;
    w.set_embeddings(deep, &v_deep)?;
    w.set_embeddings(seven, &v_seven)?;
    let h = w.vector_header()?;
    if (h.live, h.deleted) != (6, 0) {
        return Err(format!("expected 6 live vectors and no tombstone, the header says {h:?}").into());
    }
    let chunks: HashMap<u32, Vec<Vec<f32>>> =
        HashMap::from([(hello, v_hello.clone()), (deep, v_deep.clone()), (seven, v_seven.clone())]);

    // Queries: a live vector (distance 0 first) and another with k 6 (every vector, in order).
    let mut qg = Vecs(0x9e37_79b9);
    let queries: Vec<(Vec<f32>, usize)> = vec![(v_deep[1].clone(), 3), (qg.next(), 6)];
    let results = checked_search(&mut w, &chunks, &queries)?;

    // Extended attributes, after everything else: (inode, namespace, name, value).
    let null = specials[2].0;
    let xattrs: Vec<(u32, u8, &str, Vec<u8>)> = vec![
        (six, XATTR_USER, "mime_type", b"application/octet-stream".to_vec()),
        (six, XATTR_TRUSTED, "label", b"before\0after\0".to_vec()),
        (six, XATTR_SECURITY, "label", long_value()),
        (dir, XATTR_USER, "comment", b"a directory of extent trees".to_vec()),
        (null, XATTR_TRUSTED, "device", b"1:3 null".to_vec()),
    ];
    for (ino, index, name, value) in &xattrs {
        if w.set_xattr(*ino, *index, name, Some(value))? {
            return Err(format!("inode {ino}: {name} set twice").into());
        }
    }

    // Owners, then fixed timestamps (the writer stamps the current time).
    let img = w.commit()?;
    let owners: HashMap<u32, (u32, u32)> = HashMap::from([
        (deep, (1000, 1000)),
        (dir, (1000, 100)),
        (six, (0, 100)),
        (specials[0].0, (1000, 100)),
        (specials[3].0, (0, 6)),
    ]);
    let (raw, paths, inos) = settle(img, T0, &owners)?;
    let img = Image::open(MemDevice { bytes: raw.clone() })?;

    // The trees have the shapes the module's docs describe.
    let shape = |path: &str| -> Res<(String, usize, usize)> { tree_fields(&img, img.lookup(path)?) };
    for (path, want) in [
        ("/deep.bin", ("1", 4, DEEP_EXTENTS)),
        ("/dir/sparse.bin", ("1", 3, 261)),
        ("/dir/full.bin", ("0", 1, 260)),
        ("/dir/seven.bin", ("0", 1, 7)),
        ("/six.bin", ("-", 0, 6)),
    ] {
        let got = shape(path)?;
        if (got.0.as_str(), got.1, got.2) != want {
            return Err(format!("{path}: tree (depth, nodes, extents) {got:?}, not {want:?}").into());
        }
    }
    for &(ino, mode, rdev) in &specials {
        let i = img.inode(ino)?;
        if (i.mode, i.rdev, i.size, i.blocks, i.nr_extents, i.links) != (mode, rdev, 0, 0, 0, 1) {
            return Err(format!("special inode {ino} is not as made: {i:?}").into());
        }
    }
    // The attributes read back as set, each file's in the order set.
    for &ino in &[six, dir, null] {
        let got = img.xattrs(ino, &img.inode(ino)?)?;
        let want: Vec<(u8, Vec<u8>, Vec<u8>)> = xattrs
            .iter()
            .filter(|x| x.0 == ino)
            .map(|(_, index, name, value)| (*index, name.as_bytes().to_vec(), value.clone()))
            .collect();
        if got != want {
            return Err(format!("inode {ino}: attributes {got:?}, not {want:?}").into());
        }
    }
    let deep_inode = img.inode(deep)?;
    let leaves: Vec<u32> = img.extent_nodes(deep, &deep_inode)?[1..]
        .iter()
        .map(|&n| Ok(u32::from_le_bytes(img.read_block(n)?[24..28].try_into()?)))
        .collect::<Res<_>>()?;
    if leaves != [254, 254, 250] {
        return Err(format!("/deep.bin: leaves of {leaves:?} extents, not 254, 254, 250").into());
    }
    let data = img.sb().region(Region::Data);
    eprintln!("data region {}..{}, free blocks {}", data.start, data.start + data.blocks, img.sb().free_blocks);

    // The manifest.
    let sb = img.sb();
    let mut m = String::new();
    m.push_str(MANIFEST_HEAD);
    head_lines(&mut m, &raw, sb, &h)?;
    inode_lines(&mut m, &img, &inos)?;
    for &ino in &inos {
        let i = img.inode(ino)?;
        if matches!(i.mode & S_IFMT, S_IFCHR | S_IFBLK) {
            let (major, minor) = decode_dev(i.rdev);
            writeln!(m, "rdev {ino} {major}:{minor}")?;
        }
    }
    for &ino in &inos {
        for (index, name, value) in img.xattrs(ino, &img.inode(ino)?)? {
            let full = format!("{}{}", prefix(index).ok_or("unknown namespace")?, String::from_utf8(name)?);
            writeln!(m, "xattr {ino} {full} {}", hex(&value))?;
        }
    }
    let made =
        Made { paths: &paths, inos: &inos, content: &content, chunks: &chunks, queries: &queries, results: &results };
    finish(m, &img, &made, &h, &out_dir, "v3", &raw)
}

const MANIFEST_HEAD: &str = "\
# What the frozen image v3.img.gz (on-disk format v3: extent trees, special files, extended
# attributes) holds. Made by image/examples/make_frozen_image_v3.rs (remade twice before v3
# shipped, to add special files, then extended attributes); checked by image/tests/frozen_v3.rs
# (the image crate) and tests/guest/062-frozen-v3.sh (the kernel, vexctl, fsck.vexfs). Never
# regenerate: see README.md.
# One item per line, fields separated by one space, '#' starts a comment line.
#
# image RAW_BYTES RAW_SHA256                 the uncompressed image
# sb FIELD VALUE                             a superblock field (label: NUL padding dropped)
# hnsw FIELD VALUE                           the HNSW header (entry slot, entry_level, live, deleted)
# inode INO TYPE MODE UID GID LINKS SIZE BLOCKS ATIME MTIME CTIME
#     every inode in use; TYPE dir|file|symlink|fifo|socket|chrdev|blkdev; MODE octal with the
#     type bits; SIZE bytes; BLOCKS 4 KiB blocks held (data, extent tree and vector-id blocks);
#     times SECONDS.NANOSECONDS
# tree INO DEPTH NODES EXTENTS
#     every inode in use: the depth of its extent tree's root (- when it has no tree: at most 6
#     extents, all inline), the tree's node blocks (root included) and the inode's extents
#     (inline and in the tree)
# rdev INO MAJOR:MINOR                       a character or block device's number (decimal), for
#     every device; every other inode's rdev is 0
# xattr INO NAMESPACE.NAME HEX                an extended attribute in the inode's xattr block,
#     its value in hex (lowercase, non-empty); every attribute of every inode, in block order
#     (user.vexfs.embedding, the file's chunks, is not one)
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
