//! The frozen image of on-disk format v3 with the features `PQ` and `NODE_RECORDS`
//! (`tests/images/v3-pq-records.img.gz`: v3-pq's filesystem with each slot's vector and its
//! level-0 HNSW record together in a node record of the vector data region, docs/FORMAT.md
//! "Node records") reads exactly as its manifest (`tests/images/v3-pq-records.manifest`) says,
//! through the shared `verify`: the superblock (the feature bits and `pq_m`), every path and
//! inode, contents, chunks and the exact k-NN answers; and fsck finds it clean.
//!
//! The committed bytes are read, never regenerated. The other tests show what the image was
//! made to hold (every vector of the manifest at `HnswGeometry::vector_pos`, its level-0 record
//! right after it in the same block, free records zero; the HNSW region the header and the
//! upper records only; the graph, codebook and codes those of the v3-pq image) and what code
//! that reads it must refuse, report or repair: either bit cleared, `pq_m` that does not cut
//! the dimension or whose codebook does not fit, SQ8 beside or instead of PQ, leave a
//! superblock that cannot be; a damaged code is written again by `-y`, giving back the image
//! as made; a damaged level-0 record makes `-y` rebuild the graph in the records without
//! writing a byte of the vectors beside them.

mod frozen;

use std::collections::BTreeMap;

use frozen::{committed_named, each_edit_caught, verify};
use vexfs_core::distance::Impl;
use vexfs_core::error::FormatError;
use vexfs_core::format::superblock::{
    blocks_for_records, hnsw_level0_record_size, node_record_size, vector_region_blocks, Region, Superblock,
    FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_NODE_RECORDS, FEATURE_INCOMPAT_PQ, FEATURE_INCOMPAT_SQ8,
};
use vexfs_core::format::vector::{HnswGeometry, Level0Head, NODE_DELETED, NODE_IN_GRAPH};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::pq::{self, PqGeometry};
use vexfs_image::fsck::{self, Fix, Kind, Mode};
use vexfs_image::{Image, MemDevice};

const NAME: &str = "v3-pq-records";
/// Sub-quantisers: 4 of 2 components (dimension 8).
const M: u32 = 4;
/// Bytes of a node record: the vector (32), the level-0 record (8 + 8 * 4 = 40), rounded to 32.
const RECORD: usize = 96;
/// The whole feature set.
const FEATURES: u32 = FEATURE_INCOMPAT_DIR_INDEX | FEATURE_INCOMPAT_PQ | FEATURE_INCOMPAT_NODE_RECORDS;

fn image(raw: &[u8]) -> Image<MemDevice> {
    Image::open(MemDevice { bytes: raw.to_vec() }).unwrap()
}

fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().unwrap())
}

/// Every slot the manifest names (its chunks' and tombstones' slots): its vector's bit
/// patterns and whether it is a tombstone.
fn manifest_slots(manifest: &str) -> BTreeMap<u32, (Vec<u32>, bool)> {
    let bits = |s: &str| s.split(',').map(|w| u32::from_str_radix(w, 16).unwrap()).collect::<Vec<_>>();
    let lines: Vec<Vec<&str>> = manifest.lines().map(|l| l.split(' ').collect()).collect();
    let slots_of: BTreeMap<&str, Vec<u32>> = lines
        .iter()
        .filter(|f| f[0] == "slots")
        .map(|f| (f[1], f[2..].iter().map(|s| s.parse().unwrap()).collect()))
        .collect();
    let mut out = BTreeMap::new();
    for f in &lines {
        match f[0] {
            "chunk" => {
                let slot = slots_of[f[1]][f[2].parse::<usize>().unwrap()];
                assert!(out.insert(slot, (bits(f[3]), false)).is_none(), "slot {slot} twice");
            }
            "tombstone" => assert!(out.insert(f[1].parse().unwrap(), (bits(f[4]), true)).is_none()),
            _ => {}
        }
    }
    out
}

/// Slot `slot`'s vector, read at `HnswGeometry::vector_pos`, as float bit patterns.
fn vector(img: &Image<MemDevice>, g: &HnswGeometry, slot: u32) -> Vec<u32> {
    let (blk, off) = g.vector_pos(slot);
    img.read_block(blk).unwrap()[off..][..4 * img.sb().vec_dim as usize].chunks_exact(4).map(word).collect()
}

#[test]
fn the_v3_pq_records_image_reads_as_its_manifest_says() {
    let (manifest, raw) = committed_named(NAME);
    let bad = verify(&manifest, &raw, 3);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

/// The feature bits, `pq_m` and the regions where the format puts them; every slot of the
/// manifest (10 live, 2 tombstones) holds its vector at the start of its node record in the
/// data region and its level-0 record right after it, in the same block; free slots' records,
/// and the block past its 42 records, zero; the HNSW region the header and the upper records.
#[test]
fn the_node_records_as_made() {
    let (manifest, raw) = committed_named(NAME);
    let img = image(&raw);
    let sb = img.sb().clone();
    assert_eq!(sb.feature_incompat, FEATURES);
    assert_eq!((sb.pq_m, sb.sq8_shift, sb.vec_dim, sb.vec_capacity, sb.vec_stride, sb.hnsw_m), (M, 0, 8, 32, 32, 4));
    assert!(sb.has_pq() && sb.has_node_records() && !sb.has_sq8() && sb.has_codes());
    // Raw superblock bytes: the bits at byte 16, pq_m at byte 340, the reserved bytes after it zero.
    assert_eq!((word(&raw[16..20]), word(&raw[340..344])), (50, M));
    assert!(raw[344..508].iter().all(|&b| b == 0));

    // The regions: the data region holds the node records (42 of 96 bytes a block: one block
    // for 32 slots); the HNSW region the header and the upper records, no level-0 record; the
    // codes region (codebook and codes) between it and the data, as without the bit.
    assert_eq!((node_record_size(8, 4), hnsw_level0_record_size(4)), (RECORD as u64, 40));
    let data = sb.region(Region::VecData);
    let hnsw = sb.region(Region::Hnsw);
    let [_, _, data_blocks, hnsw_blocks] = vector_region_blocks(32, 8, 4, true);
    assert_eq!((data.blocks, data_blocks, blocks_for_records(32, RECORD as u64)), (1, 1, 1));
    assert_eq!(hnsw.blocks, hnsw_blocks);
    assert_eq!(hnsw.blocks + 1, vector_region_blocks(32, 8, 4, false)[3], "one level-0 block less");
    let codes = sb.region(Region::VecCodes);
    assert_eq!((codes.start, codes.blocks, sb.region(Region::Data).start), (hnsw.end(), 5, codes.end()));
    let g = HnswGeometry::new(&sb);
    assert!(g.node_records);
    assert_eq!(
        (g.header, g.upper_start, g.data_start, g.level0_start),
        (hnsw.start, hnsw.start + 1, data.start, data.start)
    );
    assert_eq!((g.level0_step, g.level0_skip, g.level0_per_block, g.level0_size), (RECORD as u64, 32, 42, 40));

    // Every slot the manifest names, where the geometry says.
    let slots = manifest_slots(&manifest);
    assert_eq!(slots.keys().copied().collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
    assert_eq!(slots.values().filter(|(_, dead)| *dead).count(), 2);
    let block = img.read_block(data.start).unwrap();
    for (&slot, (bits, dead)) in &slots {
        let (blk, off) = g.vector_pos(slot);
        assert!((data.start..data.end()).contains(&blk), "slot {slot}: vector in block {blk}");
        assert_eq!((blk, off), (data.start, slot as usize * RECORD), "slot {slot}");
        assert_eq!(&vector(&img, &g, slot), bits, "vector of slot {slot}");
        assert_eq!(g.level0_pos(slot), (blk, off + sb.vec_stride as usize), "level-0 record of slot {slot}");
        let head = Level0Head::decode(&block[off + 32..]).unwrap();
        let flags = if *dead { NODE_IN_GRAPH | NODE_DELETED } else { NODE_IN_GRAPH };
        assert_eq!(head.flags, flags, "slot {slot}");
        assert!(head.count > 0, "slot {slot} has no neighbours");
        assert!(block[off + 72..off + RECORD].iter().all(|&b| b == 0), "slot {slot}: the record's tail");
    }
    for slot in 12..32 {
        let off = slot * RECORD;
        assert!(block[off..off + RECORD].iter().all(|&b| b == 0), "free slot {slot}");
    }
    assert!(block[42 * RECORD..].iter().all(|&b| b == 0), "past the last record");
}

/// The same filesystem as the v3-pq image, in the other layout: each slot's vector and level-0
/// record as v3-pq holds them (apart), its HNSW header, upper records, codebook and codes
/// byte for byte; each code its vector's encoding.
#[test]
fn the_graph_and_codes_of_v3_pq() {
    let (manifest, raw) = committed_named(NAME);
    let (_, raw_pq) = committed_named("v3-pq");
    let (img, split) = (image(&raw), image(&raw_pq));
    let (sb, sbs) = (img.sb().clone(), split.sb().clone());
    let (g, gs) = (HnswGeometry::new(&sb), HnswGeometry::new(&sbs));
    assert!(!gs.node_records && gs.upper_start == gs.header + 2);
    let read = |img: &Image<MemDevice>, (blk, off): (u64, usize), len: usize| {
        img.read_block(blk).unwrap()[off..][..len].to_vec()
    };
    assert_eq!(read(&img, (g.header, 0), BLOCK_SIZE), read(&split, (gs.header, 0), BLOCK_SIZE), "HNSW header");
    for slot in 0..32 {
        assert_eq!(read(&img, g.vector_pos(slot), 32), read(&split, gs.vector_pos(slot), 32), "vector {slot}");
        assert_eq!(read(&img, g.level0_pos(slot), 40), read(&split, gs.level0_pos(slot), 40), "level-0 {slot}");
    }
    for idx in 0..g.upper_records {
        let len = g.upper_size as usize;
        assert_eq!(read(&img, g.upper_pos(idx), len), read(&split, gs.upper_pos(idx), len), "upper record {idx}");
    }
    let (codes, codes_pq) = (sb.region(Region::VecCodes), sbs.region(Region::VecCodes));
    assert_eq!(codes.blocks, codes_pq.blocks);
    for i in 0..codes.blocks {
        assert!(
            img.read_block(codes.start + i).unwrap() == split.read_block(codes_pq.start + i).unwrap(),
            "codes block {i}"
        );
    }
    let p = PqGeometry::new(&sb).unwrap();
    let cb: Vec<u32> = (0..M)
        .flat_map(|j| (0..256u32).map(move |c| (j, c)))
        .flat_map(|(j, c)| {
            let (blk, off) = p.centroid_pos(j, c).unwrap();
            read(&img, (blk, off), 8).chunks_exact(4).map(word).collect::<Vec<_>>()
        })
        .collect();
    for slot in manifest_slots(&manifest).into_keys() {
        let mut want = [0u8; 4];
        assert!(pq::encode(&Impl::Scalar, &cb, 8, M, &vector(&img, &g, slot), &mut want));
        assert_eq!(read(&img, p.codes.pos(u64::from(slot)).unwrap(), 4), want, "code of slot {slot}");
    }
}

/// Without either bit, with a `pq_m` that does not cut the dimension or whose codebook does
/// not fit the region, or with SQ8 beside or instead of PQ, the superblock cannot be: it does
/// not validate and the image is refused. A damaged code is reported as one (`VectorCode`, its
/// own fix) and `-y` gives back the image as made, byte for byte. A damaged level-0 record is
/// a graph problem: `-y` rebuilds the graph in the records (the tombstones dropped) and writes
/// no byte of the data region outside them.
#[test]
fn what_must_be_refused_or_repaired() {
    let (manifest, raw) = committed_named(NAME);
    let sb0 = Superblock::decode(&raw[..BLOCK_SIZE]).unwrap();
    let blocks = (raw.len() / BLOCK_SIZE) as u64;
    assert!(sb0.validate(blocks).is_ok());
    let f0 = sb0.feature_incompat;
    // Each with the check that refuses it (`FormatError::Corrupt`'s `what`).
    let cases: [(&str, &str, Superblock); 7] = [
        (
            "the NODE_RECORDS bit cleared (no level-0 records in the HNSW region)",
            "hnsw length",
            Superblock { feature_incompat: f0 & !FEATURE_INCOMPAT_NODE_RECORDS, ..sb0.clone() },
        ),
        ("the PQ bit cleared", "pq_m", Superblock { feature_incompat: f0 & !FEATURE_INCOMPAT_PQ, ..sb0.clone() }),
        (
            "the PQ bit and pq_m cleared",
            "node records",
            Superblock { feature_incompat: f0 & !FEATURE_INCOMPAT_PQ, pq_m: 0, ..sb0.clone() },
        ),
        (
            "SQ8 instead of PQ",
            "node records",
            Superblock {
                feature_incompat: f0 & !FEATURE_INCOMPAT_PQ | FEATURE_INCOMPAT_SQ8,
                pq_m: 0,
                sq8_shift: 5,
                ..sb0.clone()
            },
        ),
        ("pq_m 3 (does not cut 8)", "pq_m", Superblock { pq_m: 3, ..sb0.clone() }),
        ("pq_m 8 (a codebook of 8 blocks)", "vector codes length", Superblock { pq_m: 8, ..sb0.clone() }),
        (
            "SQ8 beside PQ",
            "pq_m",
            Superblock { feature_incompat: f0 | FEATURE_INCOMPAT_SQ8, sq8_shift: 5, ..sb0.clone() },
        ),
    ];
    for (case, what, sb) in cases {
        match sb.validate(blocks) {
            Err(FormatError::Corrupt { what: got, .. }) => assert!(got.starts_with(what), "{case}: refused for {got}"),
            other => panic!("{case}: {other:?}"),
        }
        let mut bytes = raw.clone();
        sb.encode(&mut bytes[..BLOCK_SIZE]);
        assert!(Image::open(MemDevice { bytes }).is_err(), "{case}: opened");
    }

    let img = image(&raw);
    let p = PqGeometry::new(img.sb()).unwrap();
    let (blk, off) = p.codes.pos(2).unwrap();
    let mut bad = raw.clone();
    bad[blk as usize * BLOCK_SIZE + off + 1] ^= 0x80;
    let (out, _) = fsck::run(MemDevice { bytes: bad.clone() }, Mode::Check).unwrap();
    let p = &out.report.problems;
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].kind, p[0].fix.clone()), (Kind::VectorCode, Some(Fix::WriteCode { slot: 2 })));
    assert_eq!(out.exit_code(), 4);
    let (out, dev) = fsck::run(MemDevice { bytes: bad }, Mode::Repair).unwrap();
    assert_eq!(out.exit_code(), 1);
    assert!(dev.bytes == raw, "fsck -y did not give back the image as made");
    assert!(verify(&manifest, &dev.bytes, 3).is_empty());

    // Slot 2's first neighbour made free slot 31, in its record in the data region.
    let g = HnswGeometry::new(img.sb());
    let (blk, off) = g.level0_pos(2);
    assert_eq!(blk, g.data_start);
    let mut bad = raw.clone();
    let at = blk as usize * BLOCK_SIZE + off + 8;
    bad[at..at + 4].copy_from_slice(&31u32.to_le_bytes());
    let (out, _) = fsck::run(MemDevice { bytes: bad.clone() }, Mode::Check).unwrap();
    let p = &out.report.problems;
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].kind, p[0].fix.clone()), (Kind::VectorLinks, Some(Fix::RebuildGraph)));
    assert!(p[0].message.contains("slot 2 links at level 0 to slot 31"), "{}", p[0].message);
    assert_eq!(out.exit_code(), 4);
    let (out, dev) = fsck::run(MemDevice { bytes: bad }, Mode::Repair).unwrap();
    assert_eq!(out.exit_code(), 1);
    let rebuilt = image(&dev.bytes);
    let slots = manifest_slots(&manifest);
    let data = (g.data_start as usize * BLOCK_SIZE, (g.data_start as usize + 1) * BLOCK_SIZE);
    for (i, (&was, &now)) in raw[data.0..data.1].iter().zip(&dev.bytes[data.0..data.1]).enumerate() {
        let in_level0 = i % RECORD >= 32 && i % RECORD < 72 && i < 42 * RECORD;
        assert!(was == now || in_level0, "byte {i} of the data region written outside a level-0 record");
    }
    for (&slot, (bits, dead)) in &slots {
        assert_eq!(&vector(&rebuilt, &g, slot), bits, "vector of slot {slot} after the rebuild");
        let (blk, off) = g.level0_pos(slot);
        let head = Level0Head::decode(&rebuilt.read_block(blk).unwrap()[off..]).unwrap();
        assert_eq!(head.flags, if *dead { 0 } else { NODE_IN_GRAPH }, "slot {slot} after the rebuild");
    }
    let (out, _) = fsck::run(MemDevice { bytes: dev.bytes.clone() }, Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:#?}", out.report.problems);
}

/// The bits of slot 1's vector (a tombstone).
const SLOT1: &str = "3f800000,bf800000,bfc00000,be800000,3fe00000,3f000000,3fc00000,3fc00000";

#[test]
fn a_wrong_manifest_item_is_caught() {
    let (manifest, raw) = committed_named(NAME);
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "without NODE_RECORDS",
            "sb feature_incompat ".into(),
            "sb feature_incompat 18".into(),
            "superblock feature_incompat",
        ),
        ("sub-quantisers", "sb pq_m ".into(), "sb pq_m 2".into(), "superblock pq_m"),
        ("no SQ8", "sb pq_m ".into(), "sb sq8_shift 5".into(), "superblock sq8_shift"),
        // Vectors read in their node records: another one in a chunk or a tombstone is seen.
        (
            "a chunk's vector (the tombstone's in slot 1)",
            "chunk 5 5 ".into(),
            format!("chunk 5 5 {SLOT1} 1,-1,-1.5,-0.25,1.75,0.5,1.5,1.5"),
            "vector of inode 5 chunk 5 (slot 11)",
        ),
        (
            "a tombstone's vector",
            "tombstone 0 ".into(),
            format!("tombstone 0 6 0 {SLOT1}"),
            "vector of tombstone slot 0",
        ),
    ];
    each_edit_caught(&manifest, &raw, 3, cases);
}
