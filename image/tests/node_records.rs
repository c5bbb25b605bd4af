//! Node records end to end without a kernel (`mkfs.vexfs --quant pq`'s default layout,
//! docs/FORMAT.md "Node records"): the pydocs sample (2000 × 384, l2) written with the offline
//! writer into a PQ image with the vectors and level-0 records apart and into one with node
//! records, from the same seed and codebook. Both hold the same graph and vectors, each found
//! where the geometry says (the vector at its record's start, 32-byte aligned, the level-0
//! record after it, no record across a block); the superblock refuses node records without PQ
//! or larger than a block; searches give the split image's answers where both re-rank the
//! whole list and exact distances always; fsck finds the image clean, rebuilds a damaged graph
//! in the records without touching the vectors beside them (byte for byte the original), and
//! replaced and removed vectors keep the image consistent.

use std::sync::OnceLock;

use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{
    hnsw_level0_record_size, node_record_size, Region, Superblock, FEATURE_INCOMPAT_NODE_RECORDS, FEATURE_INCOMPAT_PQ,
};
use vexfs_core::format::vector::HnswGeometry;
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck::{self, Kind, Mode};
use vexfs_image::mkfs::{FormatOpts, PqCodebook};
use vexfs_image::MemDevice;

mod common;
use common::{build_sample, pydocs, recall, sb, search_all, Built};

const K: usize = 10;
const BLOCKS: u64 = common::SAMPLE_BLOCKS;
const M: u32 = common::SAMPLE_PQ_M;
const ROWS: u32 = 2000;

fn params() -> MkfsParams {
    common::sample_params(*b"vexfs-nodes-test")
}

/// The split PQ image, then the one with node records.
fn built() -> &'static [Built; 2] {
    static B: OnceLock<[Built; 2]> = OnceLock::new();
    B.get_or_init(|| {
        let centroids: std::sync::Arc<[f32]> = common::sample_codebook().into();
        let opts = |node_records| FormatOpts {
            pq: Some(PqCodebook { m: M, centroids: centroids.clone() }),
            node_records,
            ..Default::default()
        };
        [build_sample(&params(), opts(false)), build_sample(&params(), opts(true))]
    })
}

#[test]
fn records_hold_the_split_images_vectors_and_graph() {
    let [(split, _), (nodes, _)] = built();
    let (s, n) = (sb(split), sb(nodes));
    let both = FEATURE_INCOMPAT_PQ | FEATURE_INCOMPAT_NODE_RECORDS;
    assert_eq!(n.feature_incompat & both, both);
    assert!(n.has_node_records() && !s.has_node_records());
    // 384-d at m 16: a 1,536-byte vector and a 136-byte record, 1,696 bytes with the rounding
    // to 32: two a block, the rest of the block zero.
    assert_eq!((hnsw_level0_record_size(16), node_record_size(384, 16)), (136, 1696));
    assert_eq!(n.region(Region::VecData).blocks, 2600u64.div_ceil(2));
    // The HNSW region: the header and the upper records only.
    let (gs, gn) = (HnswGeometry::new(&s), HnswGeometry::new(&n));
    assert_eq!(gn.upper_start, gn.header + 1);
    assert_eq!(n.region(Region::Hnsw).blocks, s.region(Region::Hnsw).blocks - 2600u64.div_ceil(30));
    let at = |(blk, off): (u64, usize)| blk as usize * BLOCK_SIZE + off;
    for slot in 0..2600u32 {
        let (vs, vn) = (at(gs.vector_pos(slot)), at(gn.vector_pos(slot)));
        let (ls, ln) = (at(gs.level0_pos(slot)), at(gn.level0_pos(slot)));
        // Slot s at record s % 2 of block s / 2, its record right after its vector.
        let rec =
            (n.region(Region::VecData).start as usize + slot as usize / 2) * BLOCK_SIZE + (slot as usize % 2) * 1696;
        assert_eq!((vn, ln), (rec, rec + 1536), "slot {slot}");
        assert_eq!(vn % 32, 0);
        assert_eq!(split[vs..vs + 1536], nodes[vn..vn + 1536], "vector of slot {slot}");
        assert_eq!(split[ls..ls + 136], nodes[ln..ln + 136], "level-0 record of slot {slot}");
    }
    // The upper records, the codes, the map and the bitmap: the same bytes.
    for r in [Region::VecBitmap, Region::VecMap, Region::VecCodes] {
        assert!(common::blocks(split, r) == common::blocks(nodes, r), "{} differs", r.name());
    }
    let upper = |b: &[u8], g: &HnswGeometry, sb: &Superblock| {
        b[g.upper_start as usize * BLOCK_SIZE..sb.region(Region::Hnsw).end() as usize * BLOCK_SIZE].to_vec()
    };
    assert!(upper(split, &gs, &s) == upper(nodes, &gn, &n), "upper records differ");
    // The bytes of each block past its two records stay zero.
    let data = common::blocks(nodes, Region::VecData);
    assert!(data.chunks_exact(BLOCK_SIZE).all(|b| b[2 * 1696..].iter().all(|&x| x == 0)));
    let (img, early) = fsck::open(MemDevice { bytes: nodes.clone() }).unwrap();
    let p = fsck::check(&img, early).unwrap().problems;
    assert!(p.is_empty(), "{p:#?}");
}

#[test]
fn the_superblock_refuses_records_without_pq_or_larger_than_a_block() {
    let [(split, _), (nodes, _)] = built();
    let (s, n) = (sb(split), sb(nodes));
    assert!(n.validate(BLOCKS).is_ok());
    let bad = [
        // The bit on the split image (its data region is too small for records, and the
        // codes are PQ: the region sizes must follow).
        Superblock { feature_incompat: s.feature_incompat | FEATURE_INCOMPAT_NODE_RECORDS, ..s.clone() },
        // Without PQ.
        Superblock { feature_incompat: n.feature_incompat & !FEATURE_INCOMPAT_PQ, pq_m: 0, ..n.clone() },
        // A record past a block: 1,020-d vectors (4,096 bytes) and a level-0 record.
        Superblock { vec_dim: 1020, vec_stride: 4096, pq_m: 4, ..n.clone() },
    ];
    for b in bad {
        assert!(b.validate(BLOCKS).is_err(), "{b:?}");
    }
    // And without the bit the records image is not a split image (its HNSW region is short).
    let without = Superblock { feature_incompat: n.feature_incompat & !FEATURE_INCOMPAT_NODE_RECORDS, ..n.clone() };
    assert!(without.validate(BLOCKS).is_err());
}

#[test]
fn searches_find_at_least_what_the_split_image_finds_with_exact_distances() {
    let [(split, row_s), (nodes, row_n)] = built();
    assert_eq!(row_s, row_n);
    // The same graph and codes; the records image keeps each expanded node in its list by its
    // exact distance (its vector came with its links) and re-ranks every candidate: at every
    // ef at least the split image's recall, and more where the codes misorder the list.
    let mut gained = 0.0;
    for ef in [16usize, 32, 64, 100, 128, 256] {
        let (hs, hn) = (search_all(split, K, ef), search_all(nodes, K, ef));
        let (rs, rn) = (recall(&hs, K, row_s), recall(&hn, K, row_n));
        eprintln!("ef {ef}: recall@{K} split {rs:.4}, node records {rn:.4}");
        assert!(rn >= rs, "ef {ef}: {rn} < {rs}");
        gained += rn - rs;
        common::assert_exact_answers(&hn, K, row_n);
    }
    assert!(gained > 0.0, "the exact keys changed nothing");
    assert!(recall(&search_all(nodes, K, 128), K, row_n) >= 0.95);
}

#[test]
fn fsck_rebuilds_the_graph_in_the_records_and_keeps_the_vectors() {
    let [_, (nodes, _)] = built();
    let n = sb(nodes);
    let g = HnswGeometry::new(&n);
    // A bad level byte in slot 7's record (the vector beside it intact).
    let (blk, off) = g.level0_pos(7);
    let mut bad = nodes.clone();
    bad[blk as usize * BLOCK_SIZE + off + 2] = 9;
    let (img, early) = fsck::open(MemDevice { bytes: bad.clone() }).unwrap();
    let p = fsck::check(&img, early).unwrap().problems;
    assert!(p.iter().any(|x| x.kind == Kind::VectorRecord), "{p:#?}");
    let (r, dev) = fsck::run(MemDevice { bytes: bad }, Mode::Repair).unwrap();
    assert!(r.fixed.iter().all(|&f| f), "{r:#?}");
    // Inserting every live slot again in slot order is what the writer did: the same graph,
    // and every vector where it was.
    assert!(dev.bytes == *nodes, "the rebuilt image differs from the original");
}

#[test]
fn replaced_and_removed_vectors_keep_records_right() {
    let [_, (nodes, _)] = built();
    assert_eq!(ROWS as usize, pydocs().base.len());
    common::churn_keeps_codes_right(nodes);
}
