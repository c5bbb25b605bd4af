//! PQ codes end to end without a kernel (`--quant pq:M`, docs/FORMAT.md "PQ codes"): the pydocs
//! sample (2000 × 384, l2) written with the offline writer into an image with a PQ codebook
//! trained on it (m 48) and into one without, from the same seed. The graph is built on the
//! float vectors, so both images are the same but for the codes region; every code is its
//! vector's encoding (by the index's encoder and by the in-memory `pq::encode` fsck uses);
//! searches walk the codes and return exact float distances, nearest first, with a recall close
//! to the float image's; the C table sums match a Rust model of their order bit for bit; fsck
//! finds and rewrites a damaged code, and a codebook with a NaN is refused by the index and
//! reported by fsck.

use std::sync::OnceLock;

use vexfs_core::distance::{best_impl, distance, DistanceKernel, Impl, METRIC_COSINE, METRIC_IP, METRIC_L2};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Region, Superblock, FEATURE_INCOMPAT_PQ};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::pq;
use vexfs_image::fsck::{self, Fix, Kind, Mode};
use vexfs_image::mkfs::{FormatOpts, PqCodebook};
use vexfs_image::vectors::{MapDevice, Searcher};
use vexfs_image::{pq_train, Image, MemDevice};

mod common;
use common::{blocks, build_sample, pydocs, recall, sb, search_all, Built};

const K: usize = 10;
const BLOCKS: u64 = common::SAMPLE_BLOCKS;
const M: u32 = common::SAMPLE_PQ_M;

fn params() -> MkfsParams {
    common::sample_params(*b"vexfs-pq-test...")
}

fn codebook() -> &'static [f32] {
    common::sample_codebook()
}

fn build(pq: bool) -> Built {
    let pq = pq.then(|| PqCodebook { m: M, centroids: codebook().into() });
    build_sample(&params(), FormatOpts { pq, ..Default::default() })
}

/// The image without codes, then the one with PQ.
fn built() -> &'static [Built; 2] {
    static B: OnceLock<[Built; 2]> = OnceLock::new();
    B.get_or_init(|| [build(false), build(true)])
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn layout_codebook_and_codes() {
    let [(plain, _), (coded, _)] = built();
    let (p, c) = (sb(plain), sb(coded));
    assert!(!p.has_pq() && c.has_pq() && !c.has_sq8() && c.has_codes());
    assert_eq!(c.feature_incompat & FEATURE_INCOMPAT_PQ, FEATURE_INCOMPAT_PQ);
    assert_eq!((p.pq_m, c.pq_m), (0, M));
    let codes = c.region(Region::VecCodes);
    assert_eq!(codes.start, c.region(Region::Hnsw).end());
    assert_eq!(c.region(Region::Data).start, codes.end());
    // 96 codebook blocks (48 sub-quantisers of 256 x 8 floats), then 85 codes per block.
    assert_eq!(codes.blocks, 96 + 2600u64.div_ceil(85));
    // The codebook as trained, centroid (j, c) at its position.
    let g = pq::PqGeometry::new(&c).unwrap();
    let cb = codebook();
    for (j, cid) in [(0u32, 0u32), (0, 200), (47, 255), (13, 128)] {
        let (blk, off) = g.centroid_pos(j, cid).unwrap();
        let at = blk as usize * BLOCK_SIZE + off;
        let first = (j as usize * 256 + cid as usize) * 8;
        for t in 0..8 {
            let got = f32::from_le_bytes(coded[at + 4 * t..at + 4 * t + 4].try_into().unwrap());
            assert_eq!(got.to_bits(), cb[first + t].to_bits());
        }
    }
    // pq_m without the feature, with SQ8, or not cutting the dimension: corrupt.
    for bad in [
        Superblock { pq_m: 48, ..p.clone() },
        Superblock { pq_m: 7, ..c.clone() },
        Superblock { pq_m: 0, ..c.clone() },
        Superblock { feature_incompat: c.feature_incompat | 8, sq8_shift: 7, ..c.clone() },
    ] {
        assert!(bad.validate(BLOCKS).is_err(), "{bad:?}");
    }
}

#[test]
fn the_graph_is_built_on_the_floats_and_every_code_is_its_vectors() {
    let [(plain, _), (coded, _)] = built();
    for r in [Region::VecBitmap, Region::VecMap, Region::VecData, Region::Hnsw] {
        assert!(blocks(plain, r) == blocks(coded, r), "{} differs", r.name());
    }
    let c = sb(coded);
    let g = pq::PqGeometry::new(&c).unwrap();
    let data = blocks(coded, Region::VecData);
    let cb = bits(codebook());
    let mut distinct = std::collections::HashSet::new();
    for slot in 0..2000usize {
        let v: Vec<u32> =
            data[slot * 1536..][..1536].chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect();
        let mut want = [0u8; M as usize];
        assert!(pq::encode(&Impl::Scalar, &cb, 384, M, &v, &mut want));
        let (blk, off) = g.codes.pos(slot as u64).unwrap();
        let at = blk as usize * BLOCK_SIZE + off;
        assert_eq!(&coded[at..at + M as usize], &want[..], "slot {slot}");
        distinct.insert(want);
        // The encoder picks the nearest centroid of each sub-vector (by f64 here: the same
        // one unless two are within rounding).
        if slot % 97 == 0 {
            let f: Vec<f32> = v.iter().map(|&b| f32::from_bits(b)).collect();
            for j in 0..M as usize {
                let d = |cid: usize| -> f64 {
                    (0..8).map(|t| (f[j * 8 + t] as f64 - codebook()[(j * 256 + cid) * 8 + t] as f64).powi(2)).sum()
                };
                let best = (0..256).map(d).fold(f64::INFINITY, f64::min);
                assert!(d(want[j] as usize) <= best * (1.0 + 1e-5) + 1e-12, "slot {slot} sub {j}");
            }
        }
    }
    assert!(distinct.len() > 1900, "only {} distinct codes", distinct.len());
    let (img, early) = fsck::open(MemDevice { bytes: coded.clone() }).unwrap();
    let p = fsck::check(&img, early).unwrap().problems;
    assert!(p.is_empty(), "{p:#?}");
}

/// The C table and sums (`vexfs_pq_table`, `vexfs_pq_dist`) against a Rust model of their
/// documented order (per sub-quantiser, components in order; then the sum over j in order),
/// bit for bit, for every metric, on every implementation (PQ has one C implementation).
#[test]
fn table_distances_match_the_model_of_their_order() {
    let cb = codebook();
    let d = pydocs();
    let dsub = 8usize;
    let m = M as usize;
    for metric in [METRIC_L2, METRIC_COSINE, METRIC_IP] {
        for q in d.queries.iter().take(5) {
            let mut table = vec![0u32; pq::table_words(M)];
            for j in 0..m {
                let (mut prim, mut norm) = (vec![0u32; 256], vec![0u32; 256]);
                let qs = &q[j * dsub..(j + 1) * dsub];
                let mut qq = 0;
                // A block's centroids per call (128 of 8 floats): a whole sub-quantiser's 256 is
                // past the limit, and gives NaN bits.
                for half in 0..2 {
                    let cents = cb[(j * 256 + half * 128) * dsub..].as_ptr().cast::<u32>();
                    let (p, n) = (&mut prim[half * 128..][..128], &mut norm[half * 128..][..128]);
                    // SAFETY: `qs` holds dsub floats, `cents` 128 centroids of dsub floats.
                    qq = unsafe { Impl::Scalar.pq_table(metric, 8, qs.as_ptr().cast(), cents, p, n) };
                }
                let mut over = (vec![0u32; 256], vec![0u32; 256]);
                let cents = cb[j * 256 * dsub..].as_ptr().cast::<u32>();
                // SAFETY: as above, 256 centroids.
                let nan =
                    unsafe { Impl::Scalar.pq_table(metric, 8, qs.as_ptr().cast(), cents, &mut over.0, &mut over.1) };
                assert!(f32::from_bits(nan).is_nan() && over.0.iter().all(|&b| f32::from_bits(b).is_nan()));
                table[j * 256..(j + 1) * 256].copy_from_slice(&prim);
                table[m * 256 + j * 256..m * 256 + (j + 1) * 256].copy_from_slice(&norm);
                table[2 * m * 256 + j] = qq;
                let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |s, (x, y)| s + x * y);
                for c in [0usize, 77, 255] {
                    let cv = &cb[(j * 256 + c) * dsub..(j * 256 + c + 1) * dsub];
                    let want = if metric == METRIC_L2 {
                        qs.iter().zip(cv).fold(0f32, |s, (x, y)| s + (x - y) * (x - y))
                    } else {
                        dot(qs, cv)
                    };
                    assert_eq!(prim[c], want.to_bits(), "metric {metric} sub {j} centroid {c}");
                }
                assert_eq!(qq, dot(qs, qs).to_bits());
            }
            let codes: Vec<Vec<u8>> =
                (0..40u32).map(|i| (0..m).map(|j| ((i * 37 + j as u32 * 11) % 256) as u8).collect()).collect();
            let ptrs: Vec<*const u8> = codes.iter().map(|c| c.as_ptr()).collect();
            let mut out = vec![0u32; codes.len()];
            // SAFETY: the table has table_words(M) words, each code M bytes.
            unsafe { Impl::Scalar.pq_distances(metric, M, table.as_ptr(), &ptrs, &mut out) };
            let f = f32::from_bits;
            let qnorm = (0..m).fold(0f32, |s, j| s + f(table[2 * m * 256 + j])).sqrt();
            for (code, &key) in codes.iter().zip(&out) {
                let p = (0..m).fold(0f32, |s, j| s + f(table[j * 256 + code[j] as usize]));
                let nn = (0..m).fold(0f32, |s, j| s + f(table[m * 256 + j * 256 + code[j] as usize]));
                let v = match metric {
                    METRIC_L2 => p,
                    METRIC_IP => 1.0 - p,
                    _ => {
                        if qnorm == 0.0 || nn == 0.0 || qnorm * nn.sqrt() == 0.0 {
                            1.0
                        } else {
                            1.0 - p / (qnorm * nn.sqrt())
                        }
                    }
                };
                assert_eq!(key, vexfs_core::distance::key_from_bits(v.to_bits()), "metric {metric}");
            }
        }
    }
}

#[test]
fn searches_walk_the_codes_and_return_exact_distances() {
    let [(plain, row_p), (coded, row_c)] = built();
    for ef in [32usize, 64, 128] {
        let (hp, hc) = (search_all(plain, K, ef), search_all(coded, K, ef));
        let (rp, rc) = (recall(&hp, K, row_p), recall(&hc, K, row_c));
        eprintln!("ef {ef}: recall@{K} float image {rp:.4}, PQ image {rc:.4}");
        assert!(rc >= rp - 0.05, "ef {ef}: PQ recall {rc} against {rp}");
        common::assert_exact_answers(&hc, K, row_c);
    }
    assert!(recall(&search_all(coded, K, 128), K, row_c) >= 0.95);
}

/// `Rank::Codes` (`VEXFS_SEARCH_CODE_DISTANCES`) over the PQ codes: no float32 vector read,
/// the answers ordered by their table distances, near the exact ones, at a recall near the
/// re-ranked search's.
#[test]
fn code_distances_read_no_vector() {
    let [_, (coded, row)] = built();
    let d = pydocs();
    for ef in [32usize, 128] {
        let hits = common::search_all_codes(coded, K, ef);
        let (rc, re) = (recall(&hits, K, row), recall(&search_all(coded, K, ef), K, row));
        eprintln!("ef {ef}: recall@{K} codes' distances {rc:.4}, re-ranked {re:.4}");
        // The sample's codes are coarse (SAMPLE_PQ_M bytes): the order is the codes', well below the
        // re-rank's (0.75 against 0.96 at ef 32).
        assert!(rc >= 0.6, "ef {ef}: {rc} against {re}");
        let mut sum = 0f64;
        for (q, hs) in d.queries.iter().zip(&hits) {
            for h in hs {
                let exact = distance(best_impl(), METRIC_L2, q, &d.base[row[&h.ino] as usize]);
                sum += f64::from((h.distance() - exact).abs());
            }
        }
        let mean = sum / (K * hits.len()) as f64;
        eprintln!("ef {ef}: mean |table distance - exact distance| {mean:.4}");
        assert!(mean < 0.1, "ef {ef}: {mean}");
    }
}

#[test]
fn fsck_rewrites_a_damaged_code_and_reports_a_bad_codebook() {
    let [_, (coded, _)] = built();
    let c = sb(coded);
    let g = pq::PqGeometry::new(&c).unwrap();
    let (blk, off) = g.codes.pos(3).unwrap();
    let at = blk as usize * BLOCK_SIZE + off + 20;
    let mut bad = coded.clone();
    bad[at] = bad[at].wrapping_add(1);
    let (img, early) = fsck::open(MemDevice { bytes: bad.clone() }).unwrap();
    let p = fsck::check(&img, early).unwrap().problems;
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].kind, p[0].fix.clone()), (Kind::VectorCode, Some(Fix::WriteCode { slot: 3 })));
    let (r, dev) = fsck::run(MemDevice { bytes: bad }, Mode::Repair).unwrap();
    assert_eq!(r.fixed, vec![true]);
    assert!(dev.bytes[at] == coded[at], "the code was not written again");

    // A NaN in the codebook: the index refuses to open (the kernel's mount too: same code),
    // and fsck reports it.
    let (cblk, coff) = g.centroid_pos(5, 9).unwrap();
    let mut bad = coded.clone();
    let at = cblk as usize * BLOCK_SIZE + coff + 4;
    bad[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(Searcher::new(Image::open(MapDevice::from_bytes(&bad).unwrap()).unwrap(), 64).is_err());
    let (img, early) = fsck::open(MemDevice { bytes: bad }).unwrap();
    let p = fsck::check(&img, early).unwrap().problems;
    assert!(p.iter().any(|x| x.kind == Kind::VectorCode && x.message.contains("PQ codebook")), "{p:#?}");
}

#[test]
fn replaced_and_removed_vectors_keep_codes_right() {
    common::churn_keeps_codes_right(&built()[1].0);
}

/// Vectors of 12 components cut in 2 (6 per sub-quantiser, 170 centroids per codebook block):
/// batches whose length is not a multiple of 4 put some centroids through the C code's scalar
/// tail. The codes the index wrote (the offline writer, the kernel's code) are the tools'
/// encoding (`pq::encode`, which fsck runs on every code), and a search still returns exact
/// distances.
#[test]
fn odd_sub_vectors_encode_the_same_everywhere() {
    let dim = 12usize;
    let mut seed = 7u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let rows: Vec<Vec<f32>> = (0..600).map(|_| (0..dim).map(|_| next()).collect()).collect();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let centroids = pq_train::train(&flat, dim, 2, 3, 1).unwrap();
    let p = MkfsParams { dim: dim as u32, vec_capacity: Some(700), ..params() };
    let mut dev = MemDevice::new(BLOCKS);
    let pq = Some(PqCodebook { m: 2, centroids: centroids.into() });
    vexfs_image::mkfs::format_with(&mut dev, &p, false, FormatOpts { pq, ..Default::default() }).unwrap();
    let mut w = vexfs_image::writer::Writer::new(Image::open(dev).unwrap()).unwrap();
    for (i, v) in rows.iter().enumerate() {
        let ino = w.create(vexfs_core::format::superblock::ROOT_INO, &i.to_string(), b"").unwrap();
        w.set_embeddings(ino, &[v]).unwrap();
    }
    let bytes = w.commit().unwrap().into_device().bytes;
    let c = sb(&bytes);
    assert_eq!((c.pq_m, pq::PqGeometry::new(&c).unwrap().per_block), (2, 170));
    let (img, early) = fsck::open(MemDevice { bytes: bytes.clone() }).unwrap();
    let p = fsck::check(&img, early).unwrap().problems;
    assert!(p.is_empty(), "{p:#?}");
    let mut s = Searcher::new(Image::open(MapDevice::from_bytes(&bytes).unwrap()).unwrap(), 64).unwrap();
    for r in [0usize, 299, 599] {
        let hits = s.search(&rows[r], 1, 64).unwrap();
        assert_eq!(hits[0].dist_bits(), 0, "row {r}");
    }
}

/// A filtered search that runs again with a longer list (the filter dropped too many on the
/// first run) walks the second run with the query's PQ table of the first, kept in the search
/// pad: its answer is the plain search's at the doubled list, every candidate of it re-ranked
/// (k 13 re-ranks 130 >= the list of 128), exactly, keys and slots.
#[test]
fn a_search_run_again_reuses_its_query_table() {
    let (coded, _) = &built()[1];
    let mut s = Searcher::new(Image::open(MapDevice::from_bytes(coded).unwrap()).unwrap(), 128).unwrap();
    let mut retried = 0;
    for q in pydocs().queries.iter().take(40) {
        // Drops the first 60 files it is asked about (of the first run's 64 candidates), then
        // keeps every file: the first run returns fewer than K, the second runs at ef 128.
        let mut calls = 0usize;
        let got = s
            .search_filtered(q, K, 64, |_| {
                calls += 1;
                calls > 60
            })
            .unwrap();
        retried += usize::from(calls > 60);
        let mut plain = s.search(q, 13, 128).unwrap();
        plain.truncate(K);
        let key = |h: &vexfs_image::vectors::Hit| (h.key, h.slot);
        assert_eq!(got.iter().map(key).collect::<Vec<_>>(), plain.iter().map(key).collect::<Vec<_>>());
    }
    assert_eq!(retried, 40, "every search ran again");
}
