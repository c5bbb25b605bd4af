//! Makes the frozen image of on-disk format v3 with the feature `PQ` (product-quantisation
//! codes, docs/FORMAT.md "PQ codes") and its manifest: `tests/images/v3-pq.img.gz` and
//! `tests/images/v3-pq.manifest` (see `tests/images/README.md`); with `--node-records`, the
//! same filesystem with the feature `NODE_RECORDS` too: `v3-pq-records.img.gz` and
//! `v3-pq-records.manifest`.
//!
//! ```sh
//! cargo run --release -p vexfs-image --example make_frozen_image_v3_pq -- tests/images
//! cargo run --release -p vexfs-image --example make_frozen_image_v3_pq -- --node-records tests/images
//! ```
//!
//! This program documents how the committed image was made; it is not part of any test (the
//! tests read the committed bytes).
//!
//! What the feature added, and where this image holds it: the superblock's incompat bit `PQ`
//! (16) and `pq_m` (byte 340); the vector codes region (region table entry 9, between the HNSW
//! region and the data) holding the codebook first, sub-quantiser after sub-quantiser, each
//! starting on a block (`pq_m` 4 for dimension 8: 4 sub-quantisers of 256 centroids of 2
//! float32s, 512 centroids per block, so one block each, its second half zero), then the
//! codes, `pq_m` = 4 bytes per slot, 1024 codes per block (one block). The offline writer on an
//! image formatted with
//! `mkfs::format_with(.., FormatOpts { dir_index: true, pq: Some(PqCodebook { m: 4, .. }), .. })`,
//! the codebook trained by `pq_train::train(.., 8, 4, 20261204, 1)` on the image's 12 vectors in
//! the order of their slots (the 2 later removed, then `/a.txt`'s, `/b.txt`'s and
//! `/dir/c.bin`'s). With at most 256 training rows the trainer takes the rows themselves,
//! repeated cyclically: centroid `c` of sub-quantiser `j` is sub-vector `j` of the vector in
//! slot `c % 12`. So each vector's sub-vectors are centroids, its code decodes to it exactly,
//! and the PQ distances of the walk equal the float distances (components are multiples of 1/4
//! in -2..=2): every distance is exact. Code byte `j` is the lowest centroid among equals, the
//! first slot whose sub-vector `j` is the same.
//!
//! - `/a.txt` with 3 embeddings, `/b.txt` with 1, `/dir/c.bin` with 6 (4 inline ids and a
//!   vector-id block);
//! - `/gone.txt`, whose 2 embeddings were set then removed: 2 tombstones (deleted slots keep
//!   their vectors and codes, the graph routes through them);
//! - two searches recorded (exact: every live vector).
//!
//! Everything else as the v3 generators: dimension 8, l2, HNSW m 4 / ef_construction 32, fixed
//! UUID, label, times and level seed; the journal's stale records zeroed.
//!
//! With `--node-records` (formatted with `node_records: true`) only the UUID, the label and where
//! the vectors and level-0 records lie differ. What that feature added, and where the image
//! holds it: the incompat bit `NODE_RECORDS` (32, with `PQ`: `feature_incompat` 50); the vector
//! data region holding a node record of `node_record_size(8, 4)` = 96 bytes per slot (the
//! vector's 32 bytes, then the 40-byte level-0 record, then 24 zero bytes), 42 per block (one
//! block: 32 slots), the bytes past the last record zero; the HNSW region holding the header,
//! then the upper-level records only.

#[path = "frozen_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use std::fmt::Write as _;

use common::{
    checked_search, finish, head_lines, hex_words, inode_lines, new_writer_with, settle, Made, Res, Vecs, DIM,
};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{
    Metric, Region, FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_NODE_RECORDS, FEATURE_INCOMPAT_PQ, ROOT_INO,
};
use vexfs_core::format::vector::{HnswGeometry, NODE_IN_GRAPH};
use vexfs_core::pq::PqGeometry;
use vexfs_image::mkfs::{FormatOpts, PqCodebook};
use vexfs_image::{pq_train, Image, MemDevice};

/// 4 MiB.
const BLOCKS: u64 = 1024;
const JOURNAL_BLOCKS: u64 = 160;
/// Base of the timestamps: inode `i` has mtime `T0 + 3600 i` (atime +2 s, ctime +1 s).
const T0: i64 = 1_797_000_000;
/// Sub-quantisers (bytes per code): 2 components each.
const PQ_M: u32 = 4;
/// The trainer's seed (with at most 256 rows it draws nothing: every row is taken).
const TRAIN_SEED: u64 = 20_261_204;

fn params(records: bool) -> MkfsParams {
    let mut label = [0u8; 32];
    let name: &[u8] = if records { b"vexfs-frozen-v3-pq-records" } else { b"vexfs-frozen-v3-pq" };
    label[..name.len()].copy_from_slice(name);
    MkfsParams {
        block_count: BLOCKS,
        inode_count: Some(64),
        journal_blocks: Some(JOURNAL_BLOCKS),
        vec_capacity: Some(32),
        dim: DIM as u32,
        metric: Metric::L2,
        m: 4,
        ef_construction: 32,
        uuid: if records { *b"vexfs-frozen-v3r" } else { *b"vexfs-frozen-v3p" },
        label,
        now: T0 as u64,
        seed: 20_261_204,
    }
}

/// Every code of a slot in use decodes to its vector exactly (the centroids it names are the
/// vector's sub-vectors), and is the lowest such centroid; every other code is zero.
fn check_codes(img: &Image<MemDevice>, in_use: &HashMap<u32, Vec<f32>>) -> Res<()> {
    let sb = img.sb();
    let g = PqGeometry::new(sb).ok_or("no PQ geometry")?;
    let dsub = g.dsub as usize;
    let centroid = |j: u32, c: u32| -> Res<Vec<u32>> {
        let (blk, off) = g.centroid_pos(j, c).ok_or("centroid position")?;
        let b = img.read_block(blk)?;
        Ok(b[off..off + 4 * dsub].chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect())
    };
    for slot in 0..sb.vec_capacity {
        let (blk, off) = g.codes.pos(slot).ok_or("code position")?;
        let code = img.read_block(blk)?[off..off + g.codes.stride].to_vec();
        let Some(v) = in_use.get(&u32::try_from(slot)?) else {
            if code.iter().any(|&b| b != 0) {
                return Err(format!("free slot {slot} has the code {code:?}").into());
            }
            continue;
        };
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        for (j, (&byte, sub)) in code.iter().zip(bits.chunks_exact(dsub)).enumerate() {
            if centroid(j as u32, u32::from(byte))? != sub {
                return Err(format!("slot {slot}: code byte {j} ({byte}) is not its sub-vector").into());
            }
            for lower in 0..u32::from(byte) {
                if centroid(j as u32, lower)? == sub {
                    return Err(format!("slot {slot}: code byte {j} ({byte}), centroid {lower} is equal").into());
                }
            }
        }
    }
    // The rest of each codebook block (256 centroids of 8 bytes: half a block) is zero.
    for j in 0..g.m {
        let (blk, _) = g.centroid_pos(j, 0).ok_or("centroid position")?;
        if img.read_block(blk)?[256 * 4 * dsub..].iter().any(|&b| b != 0) {
            return Err(format!("the codebook block of sub-quantiser {j} is not zero past its centroids").into());
        }
    }
    Ok(())
}

/// Every slot in use has its vector at the start of its node record in the data region, its
/// level-0 record right after it (in the graph); every free slot's record is zero.
fn check_records(img: &Image<MemDevice>, in_use: &HashMap<u32, Vec<f32>>) -> Res<()> {
    let sb = img.sb();
    let g = HnswGeometry::new(sb);
    let data = sb.region(Region::VecData);
    let stride = sb.vec_stride as usize;
    if !g.node_records || g.level0_start != data.start || g.upper_start != g.header + 1 {
        return Err(format!("not the geometry of node records: {g:?}").into());
    }
    for slot in 0..u32::try_from(sb.vec_capacity)? {
        let (blk, off) = g.vector_pos(slot);
        if !(data.start..data.end()).contains(&blk) || g.level0_pos(slot) != (blk, off + stride) {
            return Err(
                format!("slot {slot}: vector at {:?}, level-0 record at {:?}", (blk, off), g.level0_pos(slot)).into()
            );
        }
        let b = img.read_block(blk)?;
        let record = &b[off..off + g.level0_step as usize];
        match in_use.get(&slot) {
            Some(v) => {
                let want: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                if record[..want.len()] != want[..] || record[stride + 3] & NODE_IN_GRAPH == 0 {
                    return Err(format!("slot {slot}: its node record does not hold its vector and record").into());
                }
            }
            None if record.iter().any(|&x| x != 0) => return Err(format!("free slot {slot}: a record").into()),
            None => {}
        }
    }
    Ok(())
}

fn main() -> Res<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let records = args.first().is_some_and(|a| a == "--node-records");
    if records {
        args.remove(0);
    }
    let out_dir = PathBuf::from(args.first().ok_or("usage: make_frozen_image_v3_pq [--node-records] OUT_DIR")?);
    let mut g = Vecs(0x5eed_5016);
    let (v_a, v_b, v_c, v_gone) = (g.take(3), g.take(1), g.take(6), g.take(2));
    // The training rows in the order of the slots they will take (checked below).
    let rows: Vec<f32> = v_gone.iter().chain(&v_a).chain(&v_b).chain(&v_c).flatten().copied().collect();
    let centroids = pq_train::train(&rows, DIM, PQ_M as usize, TRAIN_SEED, 1)?;
    let opts = FormatOpts {
        dir_index: true,
        sq8_shift: None,
        pq: Some(PqCodebook { m: PQ_M, centroids: centroids.into() }),
        node_records: records,
    };
    let mut w = new_writer_with(&params(records), opts)?;
    let r = ROOT_INO;
    let a_data = b"three embeddings, walked on their PQ codes\n".to_vec();
    let b_data = b"one embedding\n".to_vec();
    let c_data = b"six embeddings: four inline ids and a vector-id block\n".to_vec();
    let a = w.create(r, "a.txt", &a_data)?;
    let b = w.create(r, "b.txt", &b_data)?;
    let dir = w.mkdir(r, "dir", 0o755)?;
    let c = w.create(dir, "c.bin", &c_data)?;
    let gone = w.create(r, "gone.txt", b"")?;

    w.set_embeddings(gone, &v_gone)?;
    let gone_slots = {
        let img = w.image();
        img.vec_slots(gone, &img.inode(gone)?)?
    };
    w.set_embeddings(a, &v_a)?;
    w.set_embeddings(b, &v_b)?;
    w.set_embeddings(c, &v_c)?;
    let mut in_use: HashMap<u32, Vec<f32>> = HashMap::new();
    {
        let img = w.image();
        let mut next = 0u32;
        for (ino, vs) in [(gone, &v_gone), (a, &v_a), (b, &v_b), (c, &v_c)] {
            for (slot, v) in img.vec_slots(ino, &img.inode(ino)?)?.into_iter().zip(vs) {
                if slot != next {
                    return Err(format!("inode {ino}: slot {slot}, the training order expects {next}").into());
                }
                in_use.insert(slot, v.clone());
                next += 1;
            }
        }
    }
    w.remove_embeddings(gone)?;
    let h = w.vector_header()?;
    if (h.live, h.deleted) != (10, 2) {
        return Err(format!("expected 10 live vectors and 2 tombstones, the header says {h:?}").into());
    }
    let chunks: HashMap<u32, Vec<Vec<f32>>> = HashMap::from([(a, v_a.clone()), (b, v_b.clone()), (c, v_c.clone())]);
    let mut qg = Vecs(0x9e37_7016);
    let queries: Vec<(Vec<f32>, usize)> = vec![(v_c[4].clone(), 3), (qg.next(), 10)];
    let results = checked_search(&mut w, &chunks, &queries)?;

    let img = w.commit()?;
    let content: HashMap<u32, Vec<u8>> =
        HashMap::from([(a, a_data.clone()), (b, b_data.clone()), (c, c_data.clone()), (gone, Vec::new())]);
    let owners: HashMap<u32, (u32, u32)> = HashMap::from([(c, (1000, 1000))]);
    let (raw, paths, inos) = settle(img, T0, &owners)?;
    let img = Image::open(MemDevice { bytes: raw.clone() })?;
    let sb = img.sb();
    let features =
        FEATURE_INCOMPAT_DIR_INDEX | FEATURE_INCOMPAT_PQ | if records { FEATURE_INCOMPAT_NODE_RECORDS } else { 0 };
    if sb.feature_incompat != features || sb.pq_m != PQ_M || sb.sq8_shift != 0 {
        return Err(
            format!("feature_incompat {}, pq_m {}, shift {}", sb.feature_incompat, sb.pq_m, sb.sq8_shift).into()
        );
    }
    check_codes(&img, &in_use)?;
    if records {
        check_records(&img, &in_use)?;
    }

    let mut m = String::new();
    m.push_str(if records { MANIFEST_HEAD_RECORDS } else { MANIFEST_HEAD });
    m.push_str(MANIFEST_LEGEND);
    head_lines(&mut m, &raw, img.sb(), &h)?;
    inode_lines(&mut m, &img, &inos)?;
    for (chunk, (slot, v)) in gone_slots.iter().zip(&v_gone).enumerate() {
        writeln!(m, "tombstone {slot} {gone} {chunk} {}", hex_words(v))?;
    }
    let made =
        Made { paths: &paths, inos: &inos, content: &content, chunks: &chunks, queries: &queries, results: &results };
    finish(m, &img, &made, &h, &out_dir, if records { "v3-pq-records" } else { "v3-pq" }, &raw)
}

const MANIFEST_HEAD: &str = "\
# What the frozen image v3-pq.img.gz (on-disk format v3 with the feature PQ: a codebook of
# pq_m sub-quantisers, then a pq_m-byte code per vector, the HNSW walk on codes) holds. Made by
# image/examples/make_frozen_image_v3_pq.rs; checked by image/tests/frozen_v3_pq.rs (the image
# crate) and tests/guest/067-frozen-v3-pq.sh (the kernel, vexctl, fsck.vexfs).
# Never regenerate: see README.md.
";

const MANIFEST_HEAD_RECORDS: &str = "\
# What the frozen image v3-pq-records.img.gz (on-disk format v3 with the features PQ and
# NODE_RECORDS: a codebook of pq_m sub-quantisers, then a pq_m-byte code per vector, the HNSW
# walk on codes; each vector and its level-0 record together in a node record of the vector
# data region) holds. Made by image/examples/make_frozen_image_v3_pq.rs --node-records; checked by
# image/tests/frozen_v3_pq_records.rs (the image crate) and
# tests/guest/068-frozen-v3-pq-records.sh (the kernel, vexctl, fsck.vexfs).
# Never regenerate: see README.md.
";

/// The manifests' legend, after either head.
const MANIFEST_LEGEND: &str = "\
# One item per line, fields separated by one space, '#' starts a comment line.
#
# image RAW_BYTES RAW_SHA256                 the uncompressed image (the codebook included)
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
