//! The frozen image of on-disk format v3 with the feature `PQ` (`tests/images/v3-pq.img.gz`: a
//! PQ codebook and the PQ code of every vector, docs/FORMAT.md "PQ codes") reads exactly as
//! its manifest (`tests/images/v3-pq.manifest`) says, through the shared `verify`: the
//! superblock (the feature bit and `pq_m`), every path and inode, contents, chunks and the
//! exact k-NN answers (walked on the codes, re-ranked with the floats); and fsck finds it clean.
//!
//! The committed bytes are read, never regenerated. The other tests show what the image was
//! made to hold (the codebook, then a code per slot in use, tombstones included, each its
//! vector's encoding; the codes region between the HNSW region and the data) and what code
//! that reads it must refuse, report or repair: the bit cleared, `pq_m` that does not cut the
//! dimension or whose codebook does not fit, SQ8 beside it, leave a superblock that cannot be;
//! a damaged code is reported and written again by `-y`, giving back the image as made; a NaN
//! in the codebook is reported, and refused by the index.

mod frozen;

use frozen::{committed_named, each_edit_caught, verify};
use vexfs_core::distance::Impl;
use vexfs_core::format::superblock::{
    Region, Superblock, FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_PQ, FEATURE_INCOMPAT_SQ8,
};
use vexfs_core::format::{bit_test, BLOCK_SIZE};
use vexfs_core::pq::{self, PqGeometry};
use vexfs_image::fsck::{self, Fix, Kind, Mode};
use vexfs_image::vectors::{MapDevice, Searcher};
use vexfs_image::{Image, MemDevice};

const NAME: &str = "v3-pq";
/// Sub-quantisers: 4 of 2 components (dimension 8).
const M: u32 = 4;
/// Vector slots in use: 10 live vectors in slots 2..12, 2 tombstones in slots 0 and 1.
const IN_USE: u64 = 12;

fn image(raw: &[u8]) -> Image<MemDevice> {
    Image::open(MemDevice { bytes: raw.to_vec() }).unwrap()
}

fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().unwrap())
}

/// The float bit patterns of slot `slot`'s vector.
fn vector(img: &Image<MemDevice>, slot: u64) -> Vec<u32> {
    let sb = img.sb();
    let pos = slot as usize * sb.vec_stride as usize;
    let b = img.read_block(sb.region(Region::VecData).start + (pos / BLOCK_SIZE) as u64).unwrap();
    b[pos % BLOCK_SIZE..][..4 * sb.vec_dim as usize].chunks_exact(4).map(word).collect()
}

/// Centroid `c` of sub-quantiser `j`, as float bit patterns.
fn centroid(img: &Image<MemDevice>, g: &PqGeometry, j: u32, c: u32) -> Vec<u32> {
    let (blk, off) = g.centroid_pos(j, c).unwrap();
    img.read_block(blk).unwrap()[off..off + 4 * g.dsub as usize].chunks_exact(4).map(word).collect()
}

/// The codebook in `pq::encode`'s layout (centroid `c` of `j` at `(j * 256 + c) * dsub`).
fn codebook(img: &Image<MemDevice>, g: &PqGeometry) -> Vec<u32> {
    (0..g.m).flat_map(|j| (0..256).flat_map(move |c| centroid(img, g, j, c))).collect()
}

#[test]
fn the_v3_pq_image_reads_as_its_manifest_says() {
    let (manifest, raw) = committed_named(NAME);
    let bad = verify(&manifest, &raw, 3);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

/// The feature, `pq_m` and the region where the format puts them; the codebook as trained on
/// the image's 12 vectors (at most 256 rows: the rows themselves, repeated), then a code for
/// each of the 12 slots in use (10 live, 2 tombstones), each its vector's encoding and exact.
#[test]
fn the_codebook_and_codes_as_made() {
    let (_, raw) = committed_named(NAME);
    let img = image(&raw);
    let sb = img.sb().clone();
    assert_eq!(sb.feature_incompat, FEATURE_INCOMPAT_DIR_INDEX | FEATURE_INCOMPAT_PQ);
    assert_eq!((sb.pq_m, sb.sq8_shift, sb.vec_dim, sb.vec_capacity), (M, 0, 8, 32));
    assert!(sb.has_pq() && !sb.has_sq8() && sb.has_codes());
    // Raw superblock bytes: pq_m at byte 340, the reserved bytes after it zero.
    assert_eq!(word(&raw[340..344]), M);
    assert!(raw[344..508].iter().all(|&b| b == 0));

    // The region: 4 codebook blocks (256 centroids of 8 bytes, 512 per block: one block per
    // sub-quantiser), then one block of codes (1024 codes of 4 bytes per block).
    let codes = sb.region(Region::VecCodes);
    assert_eq!((codes.start, codes.blocks), (sb.region(Region::Hnsw).end(), 5));
    assert_eq!(codes.blocks, pq::code_region_blocks(sb.vec_capacity, sb.vec_dim, M));
    assert_eq!(sb.region(Region::Data).start, codes.end());
    let g = PqGeometry::new(&sb).unwrap();
    assert_eq!((g.m, g.dsub, g.codebook, g.blocks_per_sub, g.per_block), (M, 2, codes.start, 1, 512));
    assert_eq!((g.codes.start, g.codes.stride, g.codes.per_block), (codes.start + 4, 4, 1024));

    // The slots in use: 0..12 (the vector bitmap), their vectors as the manifest's chunks and
    // tombstones.
    let bitmap = img.read_region(Region::VecBitmap).unwrap();
    let used: Vec<u64> = (0..sb.vec_capacity).filter(|&s| bit_test(&bitmap, s as usize)).collect();
    assert_eq!(used, (0..IN_USE).collect::<Vec<_>>());
    let vectors: Vec<Vec<u32>> = used.iter().map(|&s| vector(&img, s)).collect();

    // The codebook: centroid c of sub-quantiser j is sub-vector j of slot c % 12's vector
    // (every one of the 256 positions of each sub-quantiser, as the layout places it); the
    // rest of each block (bytes 2048..4096) zero.
    for j in 0..M {
        for c in 0..256u32 {
            let want = &vectors[(c as u64 % IN_USE) as usize][2 * j as usize..2 * j as usize + 2];
            assert_eq!(centroid(&img, &g, j, c), want, "centroid {c} of sub-quantiser {j}");
        }
        let b = img.read_block(codes.start + u64::from(j)).unwrap();
        assert!(b[2048..].iter().all(|&x| x == 0), "codebook block {j} past its centroids");
    }

    // The codes: each slot in use has its vector's encoding (pq::encode, as fsck and the index
    // compute it), which names the lowest centroid equal to each sub-vector (so the code is
    // exact, a PQ distance is the float distance); free slots and the rest of the block zero.
    let cb = codebook(&img, &g);
    let cblk = img.read_block(g.codes.start).unwrap();
    for slot in 0..sb.vec_capacity {
        let (blk, off) = g.codes.pos(slot).unwrap();
        assert_eq!((blk, off), (g.codes.start, 4 * slot as usize));
        let code = &cblk[off..off + 4];
        if slot >= IN_USE {
            assert_eq!(code, [0; 4], "free slot {slot}");
            continue;
        }
        let v = &vectors[slot as usize];
        let mut want = [0u8; 4];
        assert!(pq::encode(&Impl::Scalar, &cb, 8, M, v, &mut want));
        assert_eq!(code, want, "slot {slot}");
        for (j, &byte) in code.iter().enumerate() {
            let first = (0..IN_USE).find(|&s| vectors[s as usize][2 * j..2 * j + 2] == v[2 * j..2 * j + 2]).unwrap();
            assert_eq!(u64::from(byte), first, "slot {slot}, code byte {j}");
        }
    }
    assert!(cblk[4 * sb.vec_capacity as usize..].iter().all(|&x| x == 0));
}

/// Without the bit, with a `pq_m` that does not cut the dimension or whose codebook does not
/// fit the region, or with SQ8 beside it, the superblock cannot be: the image is refused. A
/// damaged code is reported as one (`VectorCode`, its own fix, no graph rebuild) and `-y`
/// gives back the image as made, byte for byte. A NaN in the codebook is a `VectorCode`
/// problem fsck cannot fix, and the index refuses to open.
#[test]
fn what_must_be_refused_or_repaired() {
    let (manifest, raw) = committed_named(NAME);
    let sb0 = Superblock::decode(&raw[..BLOCK_SIZE]).unwrap();
    let cases: [(&str, Superblock); 5] = [
        (
            "the bit cleared",
            Superblock { feature_incompat: sb0.feature_incompat & !FEATURE_INCOMPAT_PQ, ..sb0.clone() },
        ),
        (
            "the bit and pq_m cleared (a codes region without SQ8 or PQ)",
            Superblock { feature_incompat: sb0.feature_incompat & !FEATURE_INCOMPAT_PQ, pq_m: 0, ..sb0.clone() },
        ),
        ("pq_m 3 (does not cut 8)", Superblock { pq_m: 3, ..sb0.clone() }),
        ("pq_m 8 (a codebook of 8 blocks)", Superblock { pq_m: 8, ..sb0.clone() }),
        (
            "SQ8 beside PQ",
            Superblock { feature_incompat: sb0.feature_incompat | FEATURE_INCOMPAT_SQ8, sq8_shift: 5, ..sb0.clone() },
        ),
    ];
    for (case, sb) in cases {
        let mut bytes = raw.clone();
        sb.encode(&mut bytes[..BLOCK_SIZE]);
        assert!(Image::open(MemDevice { bytes }).is_err(), "{case}: opened");
    }

    let img = image(&raw);
    let g = PqGeometry::new(img.sb()).unwrap();
    let (blk, off) = g.codes.pos(2).unwrap();
    let mut bad = raw.clone();
    let at = blk as usize * BLOCK_SIZE + off + 1;
    bad[at] ^= 0x80;
    let (out, _) = fsck::run(MemDevice { bytes: bad.clone() }, Mode::Check).unwrap();
    let p = &out.report.problems;
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].kind, p[0].fix.clone()), (Kind::VectorCode, Some(Fix::WriteCode { slot: 2 })));
    assert!(p[0].message.contains("PQ code byte 1"), "{}", p[0].message);
    assert_eq!(out.exit_code(), 4);
    let (out, dev) = fsck::run(MemDevice { bytes: bad }, Mode::Repair).unwrap();
    assert_eq!(out.exit_code(), 1);
    assert!(dev.bytes == raw, "fsck -y did not give back the image as made");
    assert!(verify(&manifest, &dev.bytes, 3).is_empty());

    // A NaN in centroid 7 of sub-quantiser 3.
    let (cblk, coff) = g.centroid_pos(3, 7).unwrap();
    let mut bad = raw.clone();
    let at = cblk as usize * BLOCK_SIZE + coff + 4;
    bad[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(Searcher::new(Image::open(MapDevice::from_bytes(&bad).unwrap()).unwrap(), 64).is_err());
    let (out, dev) = fsck::run(MemDevice { bytes: bad.clone() }, Mode::Repair).unwrap();
    let p = &out.report.problems;
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].kind, p[0].fix.clone()), (Kind::VectorCode, None));
    assert!(p[0].message.contains("PQ codebook: sub-quantiser 3, centroid 7, component 1"), "{}", p[0].message);
    assert_eq!(out.exit_code(), 4);
    assert!(dev.bytes == bad, "fsck -y wrote to an image it cannot repair");
}

#[test]
fn a_wrong_manifest_item_is_caught() {
    let (manifest, raw) = committed_named(NAME);
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("feature bits", "sb feature_incompat ".into(), "sb feature_incompat 10".into(), "superblock feature_incompat"),
        ("sub-quantisers", "sb pq_m ".into(), "sb pq_m 2".into(), "superblock pq_m"),
        ("no SQ8", "sb pq_m ".into(), "sb sq8_shift 5".into(), "superblock sq8_shift"),
    ];
    each_edit_caught(&manifest, &raw, 3, cases);
}
