//! HNSW recall against brute force: random data of several dimensions and all three metrics,
//! the shared pydocs-minilm data (the `small` sample carried in the repo, or the full set when
//! ../shared/data is there), and after deleting 30% of the vectors.

use vexfs_core::format::superblock::Metric;
use vexfs_core::mem::{c_dist, rust_scalar_dist, MemIndex};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = vexfs_core::format::vector::splitmix64(self.0);
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = Rng(seed);
    // Clustered data: real embeddings are not uniform.
    let centers: Vec<Vec<f32>> = (0..16).map(|_| (0..dim).map(|_| r.f32()).collect()).collect();
    (0..n)
        .map(|i| {
            let c = &centers[i % centers.len()];
            c.iter().map(|x| x + 0.5 * r.f32()).collect()
        })
        .collect()
}

fn brute_force(metric: Metric, base: &[Vec<f32>], live: &[bool], q: &[f32], k: usize) -> Vec<u32> {
    let refs: Vec<&[f32]> = base.iter().map(|v| v.as_slice()).collect();
    let mut keys = vec![0u32; refs.len()];
    rust_scalar_dist(metric, q, &refs, &mut keys);
    let mut idx: Vec<u32> = (0..base.len() as u32).filter(|&i| live[i as usize]).collect();
    idx.sort_by_key(|&i| (keys[i as usize], i));
    idx.truncate(k);
    idx
}

fn recall(
    index: &mut MemIndex,
    metric: Metric,
    base: &[Vec<f32>],
    live: &[bool],
    queries: &[Vec<f32>],
    k: usize,
    ef: usize,
) -> f64 {
    let mut hit = 0usize;
    for q in queries {
        let truth = brute_force(metric, base, live, q, k);
        let got = index.search(q, k, ef).unwrap();
        assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "results sorted by distance");
        assert!(got.iter().all(|&(_, id)| live[id as usize]), "a deleted vector was returned");
        hit += got.iter().filter(|(_, id)| truth.contains(id)).count();
    }
    hit as f64 / (queries.len() * k) as f64
}

fn build(base: &[Vec<f32>], metric: Metric, m: u32, efc: u32) -> MemIndex {
    let mut idx = MemIndex::new(base[0].len(), metric, m, efc, 42, c_dist);
    for v in base {
        idx.add(v).unwrap();
    }
    idx
}

#[test]
fn recall_random_data_all_dims_and_metrics() {
    for &dim in &[3usize, 17, 128, 384, 1536] {
        let n = if dim >= 1536 { 600 } else { 1500 };
        let base = random_vectors(n, dim, dim as u64);
        let queries = random_vectors(40, dim, 1000 + dim as u64);
        let live = vec![true; n];
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let mut idx = build(&base, metric, 16, 100);
            // Inner product on unnormalised data is not a metric: graph search needs a longer
            // candidate list for the same recall (as in hnswlib).
            let ef = if metric == Metric::InnerProduct { 256 } else { 128 };
            let r = recall(&mut idx, metric, &base, &live, &queries, 10, ef);
            eprintln!("dim {dim} {metric:?}: recall@10 {r:.3}");
            assert!(r >= 0.95, "dim {dim} {metric:?}: recall@10 {r}");
        }
    }
}

#[test]
fn builds_are_reproducible() {
    let base = random_vectors(500, 17, 7);
    let q = &random_vectors(1, 17, 8)[0];
    let a = build(&base, Metric::L2, 8, 50).search(q, 10, 40).unwrap();
    let b = build(&base, Metric::L2, 8, 50).search(q, 10, 40).unwrap();
    assert_eq!(a, b);
}

#[test]
fn empty_and_tiny_graphs() {
    let mut idx = MemIndex::new(4, Metric::L2, 4, 10, 1, rust_scalar_dist);
    assert!(idx.search(&[0.0; 4], 5, 10).unwrap().is_empty());
    idx.add(&[1.0, 0.0, 0.0, 0.0]).unwrap();
    let r = idx.search(&[1.0, 0.0, 0.0, 0.0], 5, 10).unwrap();
    assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), vec![0]);
    idx.add(&[0.0, 1.0, 0.0, 0.0]).unwrap();
    let r = idx.search(&[0.0, 0.9, 0.0, 0.0], 5, 10).unwrap();
    assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), vec![1, 0]);
}

#[test]
fn recall_holds_after_deleting_30_percent() {
    let n = 3000;
    let base = random_vectors(n, 64, 99);
    let queries = random_vectors(50, 64, 100);
    let mut idx = build(&base, Metric::L2, 16, 100);
    let mut live = vec![true; n];
    let full = recall(&mut idx, Metric::L2, &base, &live, &queries, 10, 128);
    eprintln!("before deleting: recall@10 {full:.3}");
    let mut r = Rng(5);
    let mut deleted = 0;
    while deleted < n * 3 / 10 {
        let i = (r.next() % n as u64) as usize;
        if live[i] {
            live[i] = false;
            idx.mark_deleted(i as u32);
            deleted += 1;
        }
    }
    let before = recall(&mut idx, Metric::L2, &base, &live, &queries, 10, 128);
    idx.purge().unwrap();
    assert_eq!(idx.dangling_links(), 0, "links to deleted nodes after purge");
    let after = recall(&mut idx, Metric::L2, &base, &live, &queries, 10, 128);
    eprintln!("after deleting 30%: recall@10 {before:.3} with tombstones, {after:.3} after purge");
    assert!(before >= 0.95 && after >= 0.95, "recall {before} / {after}");
}

// The one reader of core's examples and tests (vexfs-image's cannot be used here: see there).
#[path = "../examples/common/vecs.rs"]
mod vecs;

fn read_fvecs(path: &std::path::Path) -> Vec<Vec<f32>> {
    vecs::read_fvecs(path).unwrap()
}

fn read_ivecs(path: &std::path::Path) -> Vec<Vec<u32>> {
    vecs::read_ivecs(path).unwrap()
}

/// The data sets to test on: the sample carried in the repo, and the full set beside it.
fn pydocs_sets() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut v = vec![root.join("data/pydocs-minilm/small")];
    let full = root.join("../shared/data/pydocs-minilm");
    if full.join("base.fvecs").exists() {
        v.push(full);
    }
    v
}

#[test]
fn recall_on_pydocs_minilm_against_ground_truth() {
    for dir in pydocs_sets() {
        let base = read_fvecs(&dir.join("base.fvecs"));
        let queries = read_fvecs(&dir.join("query.fvecs"));
        let gt = read_ivecs(&dir.join("groundtruth.ivecs"));
        assert_eq!(base[0].len(), 384);
        let mut idx = build(&base, Metric::L2, 16, 200);
        let mut hit = 0;
        for (q, g) in queries.iter().zip(&gt) {
            let r = idx.search(q, 10, 64).unwrap();
            hit += r.iter().filter(|(_, id)| g[..10].contains(id)).count();
        }
        let r = hit as f64 / (10 * queries.len()) as f64;
        eprintln!("{}: recall@10 {r:.4} at ef 64", dir.display());
        assert!(r >= 0.95, "{}: recall@10 {r}", dir.display());
    }
}

#[test]
fn pydocs_recall_after_deleting_30_percent() {
    let dir = &pydocs_sets()[0];
    let base = read_fvecs(&dir.join("base.fvecs"));
    let queries = read_fvecs(&dir.join("query.fvecs"));
    let mut idx = build(&base, Metric::L2, 16, 200);
    let mut live = vec![true; base.len()];
    for i in (0..base.len()).filter(|i| i % 10 < 3) {
        live[i] = false;
        idx.mark_deleted(i as u32);
    }
    idx.purge().unwrap();
    assert_eq!(idx.dangling_links(), 0);
    let r = recall(&mut idx, Metric::L2, &base, &live, &queries, 10, 64);
    eprintln!("pydocs small after deleting 30%: recall@10 {r:.4}");
    assert!(r >= 0.95, "recall@10 {r}");
}
