//! What the image crate's integration tests share (`mod common;` in each: cargo makes no test
//! of its own from a file in a subdirectory): the pydocs sample, and the images of it that the
//! codes' tests (sq8.rs, pq.rs) build, search and change.

// Each test uses only part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use vexfs_core::embed::Rank;
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Metric, Region, Superblock, ROOT_INO};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck;
use vexfs_image::mkfs::{self, FormatOpts};
use vexfs_image::vecfile::{read_fvecs, read_ivecs};
use vexfs_image::vectors::{Hit, MapDevice, Searcher};
use vexfs_image::writer::Writer;
use vexfs_image::{Image, MemDevice};

/// The pydocs-minilm sample carried in the repository (`data/pydocs-minilm/small`).
pub struct Data {
    /// The base vectors: 2000 × 384, L2-normalised.
    pub base: Vec<Vec<f32>>,
    /// The queries: 100 × 384.
    pub queries: Vec<Vec<f32>>,
    /// Per query, the rows of its 100 nearest base vectors by L2, nearest first.
    pub gt: Vec<Vec<u32>>,
}

/// The sample, read once per test binary.
pub fn pydocs() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/pydocs-minilm/small");
        let d = Data {
            base: read_fvecs(dir.join("base.fvecs")).unwrap(),
            queries: read_fvecs(dir.join("query.fvecs")).unwrap(),
            gt: read_ivecs(dir.join("groundtruth.ivecs")).unwrap(),
        };
        assert_eq!((d.base.len(), d.base[0].len(), d.queries.len()), (2000, 384, 100));
        d
    })
}

/// Blocks of the images of the sample ([`sample_params`]): 16 MiB.
pub const SAMPLE_BLOCKS: u64 = 4096;

/// The parameters the codes' tests format the sample's images with: [`SAMPLE_BLOCKS`],
/// 2,304 inodes, 2,600 vector slots of 384-d (l2), m 16, ef_construction 200, level seed 11,
/// the test's own `uuid`.
pub fn sample_params(uuid: [u8; 16]) -> MkfsParams {
    MkfsParams {
        block_count: SAMPLE_BLOCKS,
        inode_count: Some(2304),
        journal_blocks: None,
        vec_capacity: Some(2600),
        dim: 384,
        metric: Metric::L2,
        m: 16,
        ef_construction: 200,
        uuid,
        label: [0; 32],
        now: 1_700_000_000,
        seed: 11,
    }
}

/// Sub-quantisers of [`sample_codebook`] (8 components each).
pub const SAMPLE_PQ_M: u32 = 48;

/// A PQ codebook of [`SAMPLE_PQ_M`] sub-quantisers trained on the sample's base vectors (5
/// k-means rounds, 2 threads), once per test binary: `SAMPLE_PQ_M * 256 * 8` floats.
pub fn sample_codebook() -> &'static [f32] {
    static C: OnceLock<Vec<f32>> = OnceLock::new();
    C.get_or_init(|| {
        let flat: Vec<f32> = pydocs().base.iter().flatten().copied().collect();
        vexfs_image::pq_train::train(&flat, 384, SAMPLE_PQ_M as usize, 5, 2).unwrap()
    })
}

/// An image's bytes, and which base row each file (inode) holds.
pub type Built = (Vec<u8>, HashMap<u64, u32>);

/// An image of the sample formatted with `p` and `opts`, one file per vector (`docs/N`),
/// written by the offline writer.
pub fn build_sample(p: &MkfsParams, opts: FormatOpts) -> Built {
    let mut dev = MemDevice::new(p.block_count);
    mkfs::format_with(&mut dev, p, false, opts).unwrap();
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    let docs = w.mkdir(ROOT_INO, "docs", 0o755).unwrap();
    let mut row = HashMap::new();
    for (i, v) in pydocs().base.iter().enumerate() {
        let ino = w.create(docs, &i.to_string(), b"").unwrap();
        w.set_embeddings(ino, &[v]).unwrap();
        row.insert(u64::from(ino), i as u32);
    }
    (w.commit().unwrap().into_device().bytes, row)
}

/// The superblock of an image's bytes.
pub fn sb(bytes: &[u8]) -> Superblock {
    Superblock::decode(&bytes[..BLOCK_SIZE]).unwrap()
}

/// The bytes of region `r` of an image.
pub fn blocks(bytes: &[u8], r: Region) -> &[u8] {
    let e = sb(bytes).region(r);
    &bytes[e.start as usize * BLOCK_SIZE..e.end() as usize * BLOCK_SIZE]
}

/// The `k` nearest to every query of the sample, by the kernel's search code over the image.
pub fn search_all(bytes: &[u8], k: usize, ef: usize) -> Vec<Vec<Hit>> {
    let mut s = Searcher::new(Image::open(MapDevice::from_bytes(bytes).unwrap()).unwrap(), ef).unwrap();
    pydocs().queries.iter().map(|q| s.search(q, k, ef).unwrap()).collect()
}

/// The `k` nearest to every query of the sample ranked by the codes' distances
/// (`Rank::Codes`, `VEXFS_SEARCH_CODE_DISTANCES`) at `ef`: each answer `k` hits, nearest first
/// by (key, slot), and no search read a block of the vector data region (the float32
/// vectors of the split layout).
#[allow(dead_code)] // not every test binary that includes `common` uses it
pub fn search_all_codes(bytes: &[u8], k: usize, ef: usize) -> Vec<Vec<Hit>> {
    let mut s = Searcher::new(Image::open(MapDevice::from_bytes(bytes).unwrap()).unwrap(), ef).unwrap();
    s.set_rank(Rank::Codes).unwrap();
    let data = sb(bytes).region(Region::VecData);
    let mut reads = Vec::new();
    let mut answers = Vec::new();
    for q in &pydocs().queries {
        reads.clear();
        let hits = s.search_traced(q, k, ef, &mut reads).unwrap();
        assert!(!reads.iter().any(|b| (data.start..data.end()).contains(b)), "ef {ef}: a vector was read");
        assert_eq!(hits.len(), k);
        assert!(hits.windows(2).all(|p| (p[0].key, p[0].slot) < (p[1].key, p[1].slot)));
        answers.push(hits);
    }
    answers
}

/// Recall@k of `hits` (k hits per query) against the sample's ground truth.
pub fn recall(hits: &[Vec<Hit>], k: usize, row: &HashMap<u64, u32>) -> f64 {
    let gt = &pydocs().gt;
    let found: usize =
        hits.iter().zip(gt).map(|(h, t)| h.iter().filter(|x| t[..k].contains(&row[&x.ino])).count()).sum();
    found as f64 / (k * hits.len()) as f64
}

/// Every query's `hits` (the sample's queries, in order): `k` of them, nearest first by
/// (key, slot), each distance the float32 l2 distance of its file's vector bit for bit (the
/// walk on codes changes which candidates are found, never the distances returned).
pub fn assert_exact_answers(hits: &[Vec<Hit>], k: usize, row: &HashMap<u64, u32>) {
    let d = pydocs();
    let imp = vexfs_core::distance::best_impl();
    for (q, hits) in d.queries.iter().zip(hits) {
        assert_eq!(hits.len(), k);
        assert!(hits.windows(2).all(|p| (p[0].key, p[0].slot) < (p[1].key, p[1].slot)));
        for h in hits {
            let v = &d.base[row[&h.ino] as usize];
            let want = vexfs_core::distance::distance(imp, vexfs_core::distance::METRIC_L2, q, v);
            assert_eq!(h.dist_bits(), want.to_bits());
        }
    }
}

/// Removes the embeddings of every 14th file of an image of the sample, replaces those of
/// every other 7th with two other rows (slots freed and reused), adds a file whose vector lies
/// far out (its first component 3.0: past an SQ8 scale, far from PQ centroids); then fsck must
/// find the image clean (every code its vector's) and a search for the far vector must find
/// its file first, at distance 0.
pub fn churn_keeps_codes_right(coded: &[u8]) {
    let d = pydocs();
    let mut w = Writer::new(Image::open(MemDevice { bytes: coded.to_vec() }).unwrap()).unwrap();
    let docs = w.image().lookup("/docs").unwrap();
    for i in (0..2000).step_by(7) {
        let ino = w.image().lookup(&format!("/docs/{i}")).unwrap();
        if i % 2 == 0 {
            w.remove_embeddings(ino).unwrap();
        } else {
            w.set_embeddings(ino, &[&d.base[(i + 1) % 2000], &d.base[(i + 2) % 2000]]).unwrap();
        }
    }
    let ino = w.create(docs, "new", b"").unwrap();
    let mut far = d.base[5].clone();
    far[0] = 3.0;
    w.set_embeddings(ino, &[far.clone()]).unwrap();
    let bytes = w.commit().unwrap().into_device().bytes;
    let (img, early) = fsck::open(MemDevice { bytes: bytes.clone() }).unwrap();
    let p = fsck::check(&img, early).unwrap().problems;
    assert!(p.is_empty(), "{p:#?}");
    let mut s = Searcher::new(Image::open(MapDevice::from_bytes(&bytes).unwrap()).unwrap(), 64).unwrap();
    let hits = s.search(&far, 1, 64).unwrap();
    assert_eq!((hits[0].ino, hits[0].dist_bits()), (u64::from(ino), 0));
}
