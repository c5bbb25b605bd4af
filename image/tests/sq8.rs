//! SQ8 codes end to end without a kernel (`--quant sq8`, docs/FORMAT.md "Vector codes"): the
//! pydocs sample (2000 × 384, l2) written with the offline writer into an image with codes and
//! into one without, from the same seed; the slots, map and vectors must be the same and the
//! graphs not (the one with codes is built on code distances), the codes must be the vectors'
//! quantisation (fsck), searches must return exact float distances with a recall close to the
//! float image's, and fsck must find and rewrite a damaged code.

use std::sync::OnceLock;

use vexfs_core::distance::{best_impl, distance, METRIC_L2};
use vexfs_core::embed::Rank;
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Region, Superblock, FEATURE_INCOMPAT_SQ8};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::sq8;
use vexfs_image::fsck::{self, Fix, Kind, Mode};
use vexfs_image::mkfs::FormatOpts;
use vexfs_image::vectors::{MapDevice, Searcher};
use vexfs_image::writer::Writer;
use vexfs_image::{Image, MemDevice};

mod common;
use common::{blocks, build_sample, pydocs, recall, sb, search_all, Built};

const K: usize = 10;
const BLOCKS: u64 = common::SAMPLE_BLOCKS;

fn params() -> MkfsParams {
    common::sample_params(*b"vexfs-sq8-test..")
}

/// The shift mkfs picks for the sample (its largest |component| coded without clamping).
fn shift() -> i32 {
    let max = pydocs().base.iter().flatten().map(|x| x.to_bits() & 0x7fff_ffff).max().unwrap();
    sq8::shift_for_max(max)
}

/// The SQ8 code of a 384-d vector of the sample at its shift.
fn code(v: &[f32]) -> Vec<u8> {
    let mut c = vec![0u8; 384];
    sq8::quantise(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), shift(), &mut c);
    c
}

/// An image of the sample, one file per vector (`docs/N`), with or without codes.
fn build(sq8_shift: Option<i32>) -> Built {
    build_sample(&params(), FormatOpts { sq8_shift, ..Default::default() })
}

/// The image without codes, then the one with.
fn built() -> &'static [Built; 2] {
    static B: OnceLock<[Built; 2]> = OnceLock::new();
    B.get_or_init(|| [build(None), build(Some(shift()))])
}

#[test]
fn layout_places_the_codes_before_the_data() {
    let [(plain, _), (coded, _)] = built();
    let (p, c) = (sb(plain), sb(coded));
    assert!(!p.has_sq8() && c.has_sq8());
    assert_eq!(c.feature_incompat & FEATURE_INCOMPAT_SQ8, FEATURE_INCOMPAT_SQ8);
    assert_eq!((p.sq8_shift, c.sq8_shift), (0, shift()));
    assert_eq!(p.region(Region::VecCodes), Default::default());
    let codes = c.region(Region::VecCodes);
    assert_eq!(codes.start, c.region(Region::Hnsw).end());
    assert_eq!(c.region(Region::Data).start, codes.end());
    // 384-byte codes, 10 per block: 2600 slots in 260 blocks.
    assert_eq!(codes.blocks, 260);
    assert_eq!(c.vector_regions().end(), codes.end());
    // The shift is out of range, or set without the feature: corrupt.
    for (bit, s) in [(true, sq8::MAX_SHIFT + 1), (true, sq8::MIN_SHIFT - 1), (false, 3)] {
        let mut bad = c.clone();
        bad.sq8_shift = s;
        if !bit {
            bad = Superblock { sq8_shift: s, ..p.clone() };
        }
        assert!(bad.validate(BLOCKS).is_err(), "shift {s} with the bit {bit}");
    }
}

#[test]
fn codes_build_their_own_graph_and_fsck_checks_them() {
    let [(plain, _), (coded, _)] = built();
    // The same slots, owners and vectors, byte for byte; the graph built on the codes differs.
    for r in [Region::VecBitmap, Region::VecMap, Region::VecData] {
        assert!(blocks(plain, r) == blocks(coded, r), "{} differs", r.name());
    }
    assert!(blocks(plain, Region::Hnsw) != blocks(coded, Region::Hnsw), "the graph was not built on the codes");
    // Every code is the quantisation of its slot's vector (and the padding is zero).
    let c = sb(coded);
    let codes = blocks(coded, Region::VecCodes);
    let data = blocks(coded, Region::VecData);
    for slot in [0usize, 1, 9, 10, 1999] {
        let v: Vec<u32> =
            data[slot * 1536..][..1536].chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect();
        let mut want = [0u8; 384];
        sq8::quantise(&v, c.sq8_shift, &mut want);
        let at = (slot / 10) * BLOCK_SIZE + (slot % 10) * 384;
        assert_eq!(&codes[at..at + 384], &want[..], "slot {slot}");
        assert!(want.iter().any(|&b| b != 0));
    }
    let (img, early) = fsck::open(MemDevice { bytes: coded.clone() }).unwrap();
    let p = fsck::check(&img, early).unwrap().problems;
    assert!(p.is_empty(), "{p:#?}");

    // A damaged code: reported, with its own fix (no graph rebuild), and rewritten by -y.
    let mut bad = coded.clone();
    let at = c.region(Region::VecCodes).start as usize * BLOCK_SIZE + 3 * 384 + 100;
    bad[at] = bad[at].wrapping_add(1);
    let (img, early) = fsck::open(MemDevice { bytes: bad.clone() }).unwrap();
    let p = fsck::check(&img, early).unwrap().problems;
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].kind, Kind::VectorCode);
    assert_eq!(p[0].fix, Some(Fix::WriteCode { slot: 3 }));
    let (r, dev) = fsck::run(MemDevice { bytes: bad }, Mode::Repair).unwrap();
    assert_eq!(r.fixed, vec![true]);
    assert!(r.remaining.is_empty(), "{:#?}", r.remaining);
    assert!(dev.bytes[at] == coded[at], "the code was not written again");
    let (img, early) = fsck::open(MemDevice { bytes: dev.bytes.clone() }).unwrap();
    assert!(fsck::check(&img, early).unwrap().problems.is_empty());
}

#[test]
fn searches_walk_the_codes_and_return_exact_distances() {
    let [(plain, row_p), (coded, row_c)] = built();
    for ef in [16usize, 64] {
        let (hp, hc) = (search_all(plain, K, ef), search_all(coded, K, ef));
        let (rp, rc) = (recall(&hp, K, row_p), recall(&hc, K, row_c));
        eprintln!("ef {ef}: recall@{K} float image {rp:.4}, SQ8 image {rc:.4}");
        assert!(rc >= rp - 0.02, "ef {ef}: SQ8 recall {rc} against {rp}");
        // Nearest first, each distance the float32 distance of its vector, bit for bit.
        common::assert_exact_answers(&hc, K, row_c);
    }
    assert!(recall(&search_all(coded, K, 64), K, row_c) >= 0.95);
}

/// `Rank::Codes` (`VEXFS_SEARCH_CODE_DISTANCES`): no float32 vector read, each distance the
/// codes' own (the integer distance between the query's code and the vector's, scaled back by
/// the shift, `sq8::code_dist_key`), close to the exact one, and recall near the re-ranked
/// search's; refused on an image without codes.
#[test]
fn code_distances_read_no_vector_and_are_the_codes() {
    let [(plain, _), (coded, row)] = built();
    let mut s = Searcher::new(Image::open(MapDevice::from_bytes(plain).unwrap()).unwrap(), 64).unwrap();
    assert!(s.set_rank(Rank::Codes).is_err());
    let d = pydocs();
    for ef in [16usize, 64] {
        let hits = common::search_all_codes(coded, K, ef);
        let (rc, re) = (recall(&hits, K, row), recall(&search_all(coded, K, ef), K, row));
        eprintln!("ef {ef}: recall@{K} codes' distances {rc:.4}, re-ranked {re:.4}");
        assert!(rc >= re - 0.05, "ef {ef}: {rc} against {re}");
        let mut worst = 0f32;
        for (q, hs) in d.queries.iter().zip(&hits) {
            let qc = code(q);
            for h in hs {
                let v = &d.base[row[&h.ino] as usize];
                let want = sq8::code_dist_key(METRIC_L2, shift(), sq8::code_key(METRIC_L2, &qc, &code(v)));
                assert_eq!(h.key, want, "ef {ef}: slot {}", h.slot);
                worst = worst.max((h.distance() - distance(best_impl(), METRIC_L2, q, v)).abs());
            }
        }
        // Components within half a step (2^-(shift+1)) of their codes' values.
        eprintln!("ef {ef}: largest |code distance - exact distance| {worst}");
        assert!(worst < 0.05, "ef {ef}: {worst}");
    }
    assert!(recall(&common::search_all_codes(coded, K, 64), K, row) >= 0.93);
}

/// The short re-rank (the 2k nearest by code distance, `vindex::SQ8_RERANK_PER_K`) when a
/// permission filter drops most files: the search runs again with a longer list, re-ranked
/// whole, and still answers k kept files, nearest first, with exact float distances and close
/// to the exact nearest kept ones.
#[test]
fn a_filter_dropping_most_files_still_gets_k_exact_answers() {
    let [_, (coded, row)] = built();
    let d = pydocs();
    let imp = best_impl();
    let mut s = Searcher::new(Image::open(MapDevice::from_bytes(coded).unwrap()).unwrap(), 64).unwrap();
    let kept = |ino: u64| row[&ino] % 10 == 0;
    let mut found = 0usize;
    for q in &d.queries {
        let hits = s.search_filtered(q, K, 16, kept).unwrap();
        assert_eq!(hits.len(), K);
        assert!(hits.iter().all(|h| kept(h.ino)), "a dropped file was returned");
        assert!(hits.windows(2).all(|p| (p[0].key, p[0].slot) < (p[1].key, p[1].slot)));
        let mut exact: Vec<(f32, u32)> = (0..d.base.len() as u32)
            .filter(|r| r % 10 == 0)
            .map(|r| (distance(imp, METRIC_L2, q, &d.base[r as usize]), r))
            .collect();
        exact.sort_by(|a, b| a.partial_cmp(b).unwrap());
        for h in &hits {
            let r = row[&h.ino];
            assert_eq!(h.dist_bits(), distance(imp, METRIC_L2, q, &d.base[r as usize]).to_bits());
            found += usize::from(exact[..K].iter().any(|e| e.1 == r));
        }
    }
    let r = found as f64 / (K * d.queries.len()) as f64;
    eprintln!("1 file in 10 kept: recall@{K} against the exact nearest kept {r:.4}");
    assert!(r >= 0.9, "recall@{K} {r}");
}

/// `Rank::Codes` with tombstones in the graph (files removed, not yet purged) and with a
/// filter keeping one file in ten: no removed or dropped file comes back, each answer is
/// nearest first, and the filtered runs, widened up to ef 512, still rank by the codes (each
/// key the codes' own distance).
#[test]
fn code_distances_skip_tombstones_and_filtered_files() {
    let [_, (coded, row)] = built();
    let d = pydocs();
    let mut w = Writer::new(Image::open(MemDevice { bytes: coded.clone() }).unwrap()).unwrap();
    let mut gone = std::collections::HashSet::new();
    for i in (0..2000).step_by(10) {
        let ino = w.image().lookup(&format!("/docs/{i}")).unwrap();
        w.remove_embeddings(ino).unwrap();
        gone.insert(u64::from(ino));
    }
    let bytes = w.commit().unwrap().into_device().bytes;
    let mut s = Searcher::new(Image::open(MapDevice::from_bytes(&bytes).unwrap()).unwrap(), 512).unwrap();
    assert!(s.header().deleted > 0, "the removals were purged: no tombstone left to skip");
    s.set_rank(Rank::Codes).unwrap();
    let kept = |ino: u64| row[&ino] % 10 == 5;
    for q in &d.queries {
        let hits = s.search(q, K, 64).unwrap();
        assert_eq!(hits.len(), K);
        assert!(hits.iter().all(|h| !gone.contains(&h.ino)), "a removed file was returned");
        let hits = s.search_filtered(q, K, 16, kept).unwrap();
        assert_eq!(hits.len(), K);
        assert!(hits.iter().all(|h| kept(h.ino)), "a dropped file was returned");
        assert!(hits.windows(2).all(|p| (p[0].key, p[0].slot) < (p[1].key, p[1].slot)));
        let qc = code(q);
        for h in &hits {
            let vc = code(&d.base[row[&h.ino] as usize]);
            assert_eq!(h.key, sq8::code_dist_key(METRIC_L2, shift(), sq8::code_key(METRIC_L2, &qc, &vc)));
        }
    }
}

#[test]
fn replaced_and_removed_vectors_keep_codes_right() {
    common::churn_keeps_codes_right(&built()[1].0);
}
