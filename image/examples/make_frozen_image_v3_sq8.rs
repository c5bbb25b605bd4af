//! Makes the frozen image of on-disk format v3 with the feature `SQ8` (one signed byte per
//! vector component, docs/FORMAT.md "Vector codes") and its manifest:
//! `tests/images/v3-sq8.img.gz` and `tests/images/v3-sq8.manifest` (see `tests/images/README.md`).
//!
//! ```sh
//! cargo run --release -p vexfs-image --example make_frozen_image_v3_sq8 -- tests/images
//! ```
//!
//! This program documents how the committed image was made; it is not part of any test (the
//! tests read the committed bytes).
//!
//! What the feature added, and where this image holds it: the superblock's incompat bit `SQ8`
//! (8) and `sq8_shift` (byte 336); the vector codes region (region table entry 9, between the
//! HNSW region and the data), one 32-byte code per slot (dimension 8 padded to 32), 128 codes
//! per block. The offline writer on an image formatted with
//! `mkfs::format_with(.., FormatOpts { dir_index: true, sq8_shift: Some(5) })` (components in
//! -2..=2: 2 * 2^5 = 64 codes without clamping, every component a multiple of 1/4, so every
//! code is exact):
//!
//! - `/a.txt` with 3 embeddings, `/b.txt` with 1, `/dir/c.bin` with 6 (4 inline ids and a
//!   vector-id block);
//! - `/gone.txt`, whose 2 embeddings were set then removed: 2 tombstones (deleted slots keep
//!   their vectors and codes, the graph routes through them);
//! - two searches recorded (exact: every live vector).
//!
//! Everything else as the v3 generators: dimension 8, l2, HNSW m 4 / ef_construction 32, fixed
//! UUID, label, times and level seed; the journal's stale records zeroed.

#[path = "frozen_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use std::fmt::Write as _;

use common::{
    checked_search, finish, head_lines, hex_words, inode_lines, new_writer_with, settle, Made, Res, Vecs, DIM,
};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Metric, FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_SQ8, ROOT_INO};
use vexfs_image::mkfs::FormatOpts;
use vexfs_image::{Image, MemDevice};

/// 4 MiB.
const BLOCKS: u64 = 1024;
const JOURNAL_BLOCKS: u64 = 160;
/// Base of the timestamps: inode `i` has mtime `T0 + 3600 i` (atime +2 s, ctime +1 s).
const T0: i64 = 1_796_000_000;
/// Components in -2..=2: the largest shift that codes 2.0 without clamping.
const SHIFT: i32 = 5;

fn params() -> MkfsParams {
    let mut label = [0u8; 32];
    label[..19].copy_from_slice(b"vexfs-frozen-v3-sq8");
    MkfsParams {
        block_count: BLOCKS,
        inode_count: Some(64),
        journal_blocks: Some(JOURNAL_BLOCKS),
        vec_capacity: Some(32),
        dim: DIM as u32,
        metric: Metric::L2,
        m: 4,
        ef_construction: 32,
        uuid: *b"vexfs-frozen-v3q",
        label,
        now: T0 as u64,
        seed: 20_261_203,
    }
}

fn main() -> Res<()> {
    let out_dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: make_frozen_image_v3_sq8 OUT_DIR")?);
    if vexfs_core::sq8::shift_for_max(2.0f32.to_bits()) != SHIFT {
        return Err("the shift for components in -2..=2 is not 5".into());
    }
    let mut w = new_writer_with(
        &params(),
        FormatOpts { dir_index: true, sq8_shift: Some(SHIFT), pq: None, node_records: false },
    )?;
    let r = ROOT_INO;
    let a_data = b"three embeddings, walked on their SQ8 codes\n".to_vec();
    let b_data = b"one embedding\n".to_vec();
    let c_data = b"six embeddings: four inline ids and a vector-id block\n".to_vec();
    let a = w.create(r, "a.txt", &a_data)?;
    let b = w.create(r, "b.txt", &b_data)?;
    let dir = w.mkdir(r, "dir", 0o755)?;
    let c = w.create(dir, "c.bin", &c_data)?;
    let gone = w.create(r, "gone.txt", b"")?;

    let mut g = Vecs(0x5eed_5008);
    let (v_a, v_b, v_c, v_gone) = (g.take(3), g.take(1), g.take(6), g.take(2));
    w.set_embeddings(gone, &v_gone)?;
    let gone_slots = {
        let img = w.image();
        img.vec_slots(gone, &img.inode(gone)?)?
    };
    w.set_embeddings(a, &v_a)?;
    w.set_embeddings(b, &v_b)?;
    w.set_embeddings(c, &v_c)?;
    w.remove_embeddings(gone)?;
    let h = w.vector_header()?;
    if (h.live, h.deleted) != (10, 2) {
        return Err(format!("expected 10 live vectors and 2 tombstones, the header says {h:?}").into());
    }
    let chunks: HashMap<u32, Vec<Vec<f32>>> = HashMap::from([(a, v_a.clone()), (b, v_b.clone()), (c, v_c.clone())]);
    let mut qg = Vecs(0x9e37_7008);
    let queries: Vec<(Vec<f32>, usize)> = vec![(v_c[4].clone(), 3), (qg.next(), 10)];
    let results = checked_search(&mut w, &chunks, &queries)?;

    let img = w.commit()?;
    let content: HashMap<u32, Vec<u8>> =
        HashMap::from([(a, a_data.clone()), (b, b_data.clone()), (c, c_data.clone()), (gone, Vec::new())]);
    let owners: HashMap<u32, (u32, u32)> = HashMap::from([(c, (1000, 1000))]);
    let (raw, paths, inos) = settle(img, T0, &owners)?;
    let img = Image::open(MemDevice { bytes: raw.clone() })?;
    if img.sb().feature_incompat != FEATURE_INCOMPAT_DIR_INDEX | FEATURE_INCOMPAT_SQ8 || img.sb().sq8_shift != SHIFT {
        return Err(format!("feature_incompat {}, shift {}", img.sb().feature_incompat, img.sb().sq8_shift).into());
    }

    let mut m = String::new();
    m.push_str(MANIFEST_HEAD);
    head_lines(&mut m, &raw, img.sb(), &h)?;
    inode_lines(&mut m, &img, &inos)?;
    for (chunk, (slot, v)) in gone_slots.iter().zip(&v_gone).enumerate() {
        writeln!(m, "tombstone {slot} {gone} {chunk} {}", hex_words(v))?;
    }
    let made =
        Made { paths: &paths, inos: &inos, content: &content, chunks: &chunks, queries: &queries, results: &results };
    finish(m, &img, &made, &h, &out_dir, "v3-sq8", &raw)
}

const MANIFEST_HEAD: &str = "\
# What the frozen image v3-sq8.img.gz (on-disk format v3 with the feature SQ8: one signed byte
# per vector component, the HNSW walk on codes) holds. Made by
# image/examples/make_frozen_image_v3_sq8.rs; checked by image/tests/frozen_v3_sq8.rs (the image
# crate) and tests/guest/065-frozen-v3-sq8.sh (the kernel, vexctl, fsck.vexfs).
# Never regenerate: see README.md.
# One item per line, fields separated by one space, '#' starts a comment line.
#
# image RAW_BYTES RAW_SHA256                 the uncompressed image
# sb FIELD VALUE                             a superblock field (label: NUL padding dropped)
# hnsw FIELD VALUE                           the HNSW header (entry slot, entry_level, live, deleted)
# inode INO TYPE MODE UID GID LINKS SIZE BLOCKS ATIME MTIME CTIME
#     every inode in use; TYPE dir|file; MODE octal with the type bits; SIZE bytes; BLOCKS
#     4 KiB blocks held; times SECONDS.NANOSECONDS
# tree INO DEPTH NODES EXTENTS
#     every inode in use: the depth of its extent tree's root (- when it has no tree), the
#     tree's node blocks and the inode's extents
# path INO PATH                              every name reachable from the root, the root is /
# data INO SHA256                            sha256 of a regular file's content (its SIZE bytes)
# slots INO SLOT...                          the vector slot of each chunk of a regular file
# chunk INO CHUNK BITS DECIMALS              an embedding: BITS the 8 float32 bit patterns (hex),
#     DECIMALS the same values as Rust prints them (vexctl get), both comma-separated
# tombstone SLOT INO CHUNK BITS              a removed vector left in the graph, marked deleted
# query Q K EF BITS DECIMALS                 a search (vexctl search --row Q -k K --ef EF)
# hit Q RANK INO CHUNK SLOT DIST_BITS DISTANCE PATH
#     its results, nearest first: squared l2 distance, exact; PATH as vexctl search names it
";
