//! Filtered searches (`vexfs_core::embed::IndexMem::search_filtered`, what the kernel runs for
//! a caller without CAP_DAC_READ_SEARCH, its filter asking whether the caller may read each
//! file): an always-true filter gives the plain search's answers exactly, also with pending
//! vectors; a filter that drops most files still returns k results, every one kept, as near as
//! the exact k nearest kept vectors (or exactly those once the search falls back to a scan);
//! a filter that keeps fewer than k vectors returns all of them; searches from several threads,
//! each with its own pad (`search_shared`), give the plain answers. Data: the pydocs sample
//! (2000 × 384, l2) as files of 1 to 9 chunks.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use vexfs_core::embed::Indexing;
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::ROOT_INO;
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::vectors::{Hit, MapDevice, Searcher};
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, Image, MemDevice};

mod common;
use common::pydocs;

const K: usize = 10;
const EF: usize = 64;
const BLOCKS: u64 = 4096;

/// An image of the sample and, per (inode, chunk), the base vector it holds.
struct Built {
    bytes: Vec<u8>,
    owner: HashMap<(u64, u32), u32>,
    /// Inode numbers of the files, in creation order.
    files: Vec<u64>,
}

/// Writes the sample as files of 1 to 9 chunks (400 files), the last `pending_files` of them
/// with deferred indexing (left pending, as the kernel's SET leaves them), the others linked.
fn build(pending_files: usize) -> Built {
    let d = pydocs();
    let mut dev = MemDevice::new(BLOCKS);
    let params = MkfsParams { block_count: BLOCKS, inode_count: None, ..common::sample_params(*b"vexfs-filter-tst") };
    mkfs::format(&mut dev, &params, false).unwrap();
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    let docs = w.mkdir(ROOT_INO, "docs", 0o755).unwrap();
    let (mut owner, mut files) = (HashMap::new(), Vec::new());
    let (mut next, mut i) = (0usize, 0usize);
    while next < d.base.len() {
        let n = (1 + i % 9).min(d.base.len() - next);
        w.set_indexing(if i >= files_before_pending(pending_files) { Indexing::Deferred } else { Indexing::Now });
        let ino = w.create(docs, &format!("f{i:04}"), b"x\n").unwrap();
        w.set_embeddings(ino, &d.base[next..next + n]).unwrap();
        for c in 0..n {
            owner.insert((ino as u64, c as u32), (next + c) as u32);
        }
        files.push(ino as u64);
        next += n;
        i += 1;
    }
    Built { bytes: w.commit().unwrap().into_device().bytes, owner, files }
}

/// The files linked before the last `pending_files` (the sample makes 400 files).
fn files_before_pending(pending_files: usize) -> usize {
    400usize.saturating_sub(pending_files)
}

fn linked() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| build(0))
}

fn searcher(bytes: &[u8]) -> Searcher {
    Searcher::new(Image::open(MapDevice::from_bytes(bytes).unwrap()).unwrap(), EF).unwrap()
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

/// The exact distances of the `k` nearest vectors of the kept files to `q`, ascending.
fn exact_kept(b: &Built, q: &[f32], keep: &dyn Fn(u64) -> bool, k: usize) -> Vec<f64> {
    let d = pydocs();
    let mut all: Vec<f64> =
        b.owner.iter().filter(|((ino, _), _)| keep(*ino)).map(|(_, &id)| l2(q, &d.base[id as usize])).collect();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    all.truncate(k);
    all
}

/// Fraction of the exact `k` nearest kept distances that `hits` reach (a hit at the same
/// distance counts: ties between chunks are equal answers).
fn recall(hits: &[Hit], exact: &[f64]) -> f64 {
    let got: Vec<f64> = hits.iter().map(|h| h.distance() as f64).collect();
    let found = exact.iter().filter(|&&e| got.iter().any(|&g| (g - e).abs() <= 1e-4 * e.max(1e-3))).count();
    found as f64 / exact.len().max(1) as f64
}

#[test]
fn an_always_true_filter_gives_the_plain_answers() {
    let d = pydocs();
    for (what, b) in [("linked", linked()), ("the last 60 files pending", &build(60))] {
        let mut s = searcher(&b.bytes);
        for (k, ef) in [(K, EF), (1, 0), (50, 64), (100, 200), (10, 10)] {
            for (i, q) in d.queries.iter().enumerate() {
                let plain = s.search(q, k, ef).unwrap();
                let filtered = s.search_filtered(q, k, ef, |_| true).unwrap();
                assert_eq!(filtered, plain, "{what}: query {i}, k {k}, ef {ef}");
            }
        }
    }
}

#[test]
fn searches_from_four_threads_at_once_give_the_plain_answers() {
    // Each thread with its own pad over one Searcher (the kernel's searches under the shared
    // index lock), linked and pending vectors alike.
    let d = pydocs();
    for (what, b) in [("linked", linked()), ("the last 60 files pending", &build(60))] {
        let mut s = searcher(&b.bytes);
        let plain: Vec<Vec<Hit>> = d.queries.iter().map(|q| s.search(q, K, EF).unwrap()).collect();
        let s = &s;
        std::thread::scope(|sc| {
            for t in 0..4 {
                let plain = &plain;
                sc.spawn(move || {
                    let mut pad = s.search_pad();
                    // Every thread runs every query, starting at a different one.
                    for j in 0..d.queries.len() {
                        let i = (j + t * 13) % d.queries.len();
                        let hits = s.search_shared(&mut pad, &d.queries[i], K, EF).unwrap();
                        assert_eq!(hits, plain[i], "{what}: thread {t}, query {i}");
                    }
                });
            }
        });
    }
}

/// `image` with its primary superblock's `write_time` set to 0 (re-encoded, checksum and all).
fn without_write_time(mut image: Vec<u8>) -> Vec<u8> {
    let mut sb = common::sb(&image);
    sb.write_time = 0;
    sb.encode(&mut image[..BLOCK_SIZE]);
    image
}

#[test]
fn linking_pending_vectors_in_two_phases_makes_the_same_graph() {
    // The kernel's worker plans each insert beside searches (IndexMem::plan_pending, through
    // &self) and applies it alone (apply_pending): the image must be byte for byte the one the
    // plain index_pending makes, and searches on it the same.
    let b = build(300);
    let open = |bytes: &[u8]| Writer::new(Image::open(MemDevice { bytes: bytes.to_vec() }).unwrap()).unwrap();
    let mut plain = open(&b.bytes);
    let mut planned = open(&b.bytes);
    assert!(plain.vector_header().unwrap().pending > 1000);
    let n1 = plain.index_pending(usize::MAX).unwrap();
    let (n2, plain_way) = planned.index_pending_planned(usize::MAX).unwrap();
    assert_eq!(n1, n2);
    assert_eq!(plain_way, 0, "every plan applied (nothing changed the index between the halves)");
    assert_eq!(planned.vector_header().unwrap().pending, 0);
    let (a, c) = (plain.commit().unwrap().into_device().bytes, planned.commit().unwrap().into_device().bytes);
    // The primary superblock's write_time is the wall clock's second at each commit: the two
    // commits may fall on either side of a second's boundary (CI saw it), so it is compared apart.
    let (a, c) = (without_write_time(a), without_write_time(c));
    assert!(a == c, "the two-phase graph differs from the plain one");
    println!("{n1} pending vectors linked in two phases: the same image");
}

#[test]
fn a_filter_that_drops_most_files_still_returns_k() {
    let d = pydocs();
    let b = linked();
    let mut s = searcher(&b.bytes);
    // (what, files kept): one in ten (about 200 vectors), one in 100 (4 files), two files.
    let tenth: HashSet<u64> = b.files.iter().copied().step_by(10).collect();
    let hundredth: HashSet<u64> = b.files.iter().copied().step_by(100).collect();
    let two: HashSet<u64> = b.files.iter().copied().skip(7).step_by(200).collect();
    for (what, kept) in [("1 file in 10", &tenth), ("1 file in 100", &hundredth), ("2 files", &two)] {
        let vectors = b.owner.keys().filter(|(ino, _)| kept.contains(ino)).count();
        let (mut calls, mut sum_recall, mut short) = (0usize, 0.0, 0usize);
        for (i, q) in d.queries.iter().enumerate() {
            let hits = s
                .search_filtered(q, K, EF, |ino| {
                    calls += 1;
                    kept.contains(&ino)
                })
                .unwrap();
            assert!(hits.iter().all(|h| kept.contains(&h.ino)), "{what}: query {i} returned a dropped file");
            assert_eq!(hits.len(), K.min(vectors), "{what}: query {i}: {vectors} vectors kept");
            assert!(hits.windows(2).all(|w| w[0].key <= w[1].key), "{what}: query {i}: nearest first");
            let exact = exact_kept(b, q, &|ino| kept.contains(&ino), K);
            let r = recall(&hits, &exact);
            short += usize::from(r < 1.0);
            sum_recall += r;
        }
        let r = sum_recall / d.queries.len() as f64;
        println!(
            "{what}: {vectors} vectors kept of 2000; recall@{K} {r:.3} against the exact nearest kept; {:.0} filter calls per query; {short} queries not exact",
            calls as f64 / d.queries.len() as f64
        );
        assert!(r >= 0.95, "{what}: recall@{K} {r}");
        if vectors < 50 {
            // Few kept vectors: the widened HNSW runs fall short and the exact scan answers.
            assert_eq!(short, 0, "{what}: the scan's answer is exact");
        }
    }
}

#[test]
fn a_filter_keeping_fewer_than_k_returns_them_all_and_none_returns_nothing() {
    let d = pydocs();
    let b = linked();
    let mut s = searcher(&b.bytes);
    // The first file carries one chunk, the second two.
    let few: HashSet<u64> = b.files.iter().copied().take(2).collect();
    let q = &d.queries[0];
    let hits = s.search_filtered(q, K, EF, |ino| few.contains(&ino)).unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|h| few.contains(&h.ino)));
    assert!(s.search_filtered(q, K, EF, |_| false).unwrap().is_empty());
}

#[test]
fn pending_vectors_are_filtered_too() {
    let d = pydocs();
    let b = build(60);
    let mut s = searcher(&b.bytes);
    assert!(s.header().pending > 0);
    // Keep only files with an odd inode number: linked and pending ones alike.
    let keep = |ino: u64| ino % 2 == 1;
    let mut sum = 0.0;
    for q in &d.queries {
        let hits = s.search_filtered(q, K, EF, keep).unwrap();
        assert_eq!(hits.len(), K);
        assert!(hits.iter().all(|h| keep(h.ino)));
        sum += recall(&hits, &exact_kept(&b, q, &keep, K));
    }
    let r = sum / d.queries.len() as f64;
    println!("half the files kept, 60 files pending: recall@{K} {r:.3}");
    assert!(r >= 0.95, "recall@{K} {r}");
}
