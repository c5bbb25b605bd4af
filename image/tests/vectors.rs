//! The vector index of an image, end to end without a kernel: the pydocs sample (2000 × 384,
//! l2) written with the offline writer, searched through the image-backed index (the writer's
//! block cache and a read-only mapping) against the ground truth; deletes, purges and slot
//! reuse; fsck after every step; and the writer's rules on small images.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use vexfs_core::embed::{Indexing, PurgeStep};
use vexfs_core::format::inode::INLINE_VEC_IDS;
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::Region;
use vexfs_core::format::superblock::ROOT_INO;
use vexfs_core::format::vector::NO_SLOT;
use vexfs_core::io::BlockDevice;
use vexfs_image::fsck::{self, Problem};
use vexfs_image::sample::{self, SAMPLE_BLOCKS};
use vexfs_image::vectors::{file_paths, Hit, MapDevice, Searcher};
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, Image, MemDevice};

mod common;
use common::pydocs;

const K: usize = 10;
const EF: usize = 64;

/// The pydocs image: its bytes, and which base vector each (inode, chunk) holds.
struct Built {
    bytes: Vec<u8>,
    owner: HashMap<(u64, u32), u32>,
    /// The files in creation order, with the base ids of their chunks.
    files: Vec<(u32, Vec<u32>)>,
}

const BLOCKS: u64 = 4096;

fn params() -> MkfsParams {
    MkfsParams { block_count: BLOCKS, inode_count: None, seed: 7, ..common::sample_params(*b"vexfs-vector-tst") }
}

/// Formats a 16 MiB image and writes the 2000 vectors as files of 1 to 9 chunks (`docs/fNNNN`),
/// so both inline ids and vector-id blocks are used. Built once for all tests.
fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let d = pydocs();
        let mut dev = MemDevice::new(BLOCKS);
        mkfs::format(&mut dev, &params(), false).unwrap();
        let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
        let docs = w.mkdir(ROOT_INO, "docs", 0o755).unwrap();
        let mut owner = HashMap::new();
        let mut files = Vec::new();
        let mut next = 0usize;
        let mut i = 0;
        while next < d.base.len() {
            let n = (1 + i % 9).min(d.base.len() - next);
            let ino = w.create(docs, &format!("f{i:04}"), format!("file {i}\n").as_bytes()).unwrap();
            let slots = w.set_embeddings(ino, &d.base[next..next + n]).unwrap();
            assert_eq!(slots.len(), n);
            let ids: Vec<u32> = (next..next + n).map(|x| x as u32).collect();
            for (c, &id) in ids.iter().enumerate() {
                owner.insert((ino as u64, c as u32), id);
            }
            files.push((ino, ids));
            next += n;
            i += 1;
        }
        let h = w.vector_header().unwrap();
        assert_eq!((h.live, h.deleted), (2000, 0));
        Built { bytes: w.commit().unwrap().into_device().bytes, owner, files }
    })
}

fn problems(bytes: &[u8]) -> Vec<Problem> {
    let (img, early) = fsck::open(MemDevice { bytes: bytes.to_vec() }).unwrap();
    fsck::check(&img, early).unwrap().problems
}

fn assert_clean(bytes: &[u8], step: &str) {
    let p = problems(bytes);
    assert!(p.is_empty(), "{step}: {p:#?}");
}

/// Recall@K of `hits` (one list per query) against `truth` (base ids per query).
fn recall(hits: &[Vec<Hit>], owner: &HashMap<(u64, u32), u32>, truth: &[Vec<u32>]) -> f64 {
    let mut found = 0;
    for (h, t) in hits.iter().zip(truth) {
        found += h.iter().filter(|x| t[..K].contains(&owner[&(x.ino, x.chunk)])).count();
    }
    found as f64 / (K * truth.len()) as f64
}

/// Exact K nearest base ids (l2) among `live`, for every query.
fn brute_force(live: &HashSet<u32>) -> Vec<Vec<u32>> {
    let d = pydocs();
    d.queries
        .iter()
        .map(|q| {
            let mut all: Vec<(f64, u32)> = live
                .iter()
                .map(|&i| {
                    let v = &d.base[i as usize];
                    (q.iter().zip(v).map(|(a, b)| ((a - b) as f64).powi(2)).sum(), i)
                })
                .collect();
            all.sort_by(|a, b| a.partial_cmp(b).unwrap());
            all.into_iter().take(K).map(|x| x.1).collect()
        })
        .collect()
}

fn search_all(s: &mut Searcher) -> Vec<Vec<Hit>> {
    pydocs().queries.iter().map(|q| s.search(q, K, EF).unwrap()).collect()
}

fn searcher(bytes: &[u8]) -> Searcher {
    Searcher::new(Image::open(MapDevice::from_bytes(bytes).unwrap()).unwrap(), EF).unwrap()
}

#[test]
fn pydocs_recall_through_the_image_index() {
    let d = pydocs();
    let b = built();
    assert_clean(&b.bytes, "after building");
    // Through the read-only mapping, twice: the same results, bit for bit.
    let first = search_all(&mut searcher(&b.bytes));
    let r = recall(&first, &b.owner, &d.gt);
    eprintln!("pydocs small through the image: recall@{K} {r:.4} at ef {EF}");
    assert!(r >= 0.95, "recall@{K} {r}");
    assert_eq!(first, search_all(&mut searcher(&b.bytes)), "a second open of the image");
    // With the vector regions copied into memory first (`vexctl search-image --resident`).
    let mut resident = searcher(&b.bytes);
    resident.load_vectors().unwrap();
    assert_eq!(first, search_all(&mut resident), "the vector regions resident");
    // Through the writer's cache on the same bytes: the same again.
    let mut w = Writer::new(Image::open(MemDevice { bytes: b.bytes.clone() }).unwrap()).unwrap();
    let via_writer: Vec<Vec<Hit>> = d.queries.iter().map(|q| w.search(q, K, EF).unwrap()).collect();
    assert_eq!(first, via_writer, "the writer's block cache");
    // Results are nearest first, with distances as the kernel computes them.
    for h in &first {
        assert_eq!(h.len(), K);
        assert!(h.windows(2).all(|p| p[0].key <= p[1].key));
    }
    // Paths name the files.
    let img = Image::open(MemDevice { bytes: b.bytes.clone() }).unwrap();
    let paths = file_paths(&img).unwrap();
    assert_eq!(paths[&(b.files[0].0 as u64)], "docs/f0000");
    assert_eq!(paths[&(ROOT_INO as u64)], ".");
}

#[test]
fn deletes_purge_and_slot_reuse() {
    let d = pydocs();
    let b = built();
    let mut w = Writer::new(Image::open(MemDevice { bytes: b.bytes.clone() }).unwrap()).unwrap();
    // Remove the embeddings of files, in a scrambled order, until 30% of the vectors are gone.
    let mut order: Vec<usize> = (0..b.files.len()).collect();
    order.sort_by_key(|&i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17));
    let mut live: HashSet<u32> = (0..2000).collect();
    let mut freed_slots = HashSet::new();
    let mut removed = Vec::new();
    for &i in &order {
        if live.len() <= 1400 {
            break;
        }
        let (ino, ids) = &b.files[i];
        let img = w.image();
        freed_slots.extend(img.vec_slots(*ino, &img.inode(*ino).unwrap()).unwrap());
        w.remove_embeddings(*ino).unwrap();
        for id in ids {
            live.remove(id);
        }
        removed.push(i);
    }
    let h = w.vector_header().unwrap();
    assert_eq!(h.live as usize, live.len());
    assert!(h.deleted > 0, "some tombstones are left to check: {h:?}");
    w.sync().unwrap();
    assert_clean(&w.image().device().inner().bytes, "after deleting 30% (with tombstones)");
    let truth = brute_force(&live);
    let hits: Vec<Vec<Hit>> = d.queries.iter().map(|q| w.search(q, K, EF).unwrap()).collect();
    for h in hits.iter().flatten() {
        assert!(live.contains(&b.owner[&(h.ino, h.chunk)]), "a removed vector was returned: {h:?}");
    }
    let r = recall(&hits, &b.owner, &truth);
    eprintln!("after deleting 30%: recall@{K} {r:.4} ({} tombstones)", h.deleted);
    assert!(r >= 0.95, "recall@{K} after deletes {r}");

    // Purge: no tombstone left, fsck clean, the same recall.
    w.purge_vectors().unwrap();
    let h = w.vector_header().unwrap();
    assert_eq!((h.live as usize, h.deleted), (live.len(), 0));
    assert_ne!(h.entry, NO_SLOT);
    w.sync().unwrap();
    assert_clean(&w.image().device().inner().bytes, "after the purge");
    let hits: Vec<Vec<Hit>> = d.queries.iter().map(|q| w.search(q, K, EF).unwrap()).collect();
    let r = recall(&hits, &b.owner, &truth);
    assert!(r >= 0.95, "recall@{K} after the purge {r}");

    // Reuse: the removed vectors come back in new files, in freed slots only (every slot
    // below 2000 was used before, so the lowest free slots are the freed ones).
    let again = w.mkdir(ROOT_INO, "again", 0o755).unwrap();
    let mut owner = b.owner.clone();
    let mut reused = Vec::new();
    for &i in &removed {
        let ids = &b.files[i].1;
        let vecs: Vec<&Vec<f32>> = ids.iter().map(|&id| &d.base[id as usize]).collect();
        let ino = w.create(again, &format!("g{i:04}"), b"again\n").unwrap();
        let slots = w.set_embeddings(ino, &vecs).unwrap();
        for (c, &id) in ids.iter().enumerate() {
            owner.insert((ino as u64, c as u32), id);
            live.insert(id);
        }
        reused.extend(slots);
    }
    assert_eq!(reused.len(), freed_slots.len());
    assert!(reused.iter().all(|s| freed_slots.contains(s)), "new vectors went to slots never freed");
    let bytes = w.commit().unwrap().into_device().bytes;
    assert_clean(&bytes, "after reusing the freed slots");
    let hits = search_all(&mut searcher(&bytes));
    let r = recall(&hits, &owner, &d.gt);
    eprintln!("after re-adding the deleted vectors: recall@{K} {r:.4}");
    assert!(r >= 0.95, "recall@{K} after reuse {r}");
    assert_eq!(hits, search_all(&mut searcher(&bytes)), "a second open of the image");
}

// ---- the writer's rules, on the small sample image (dimension 8, cosine) --------------------------

#[test]
fn resident_blocks_read_as_the_mapping() {
    // Every block different, so a block read from the wrong place of the copy shows.
    let blocks = 12u64;
    let bytes: Vec<u8> = (0..blocks * 4096).map(|i| ((i / 4096) * 31 + i % 251) as u8).collect();
    let plain = MapDevice::from_bytes(&bytes).unwrap();
    let read = |d: &MapDevice, n: u64| {
        let mut b = [0u8; 4096];
        d.read_block(n, &mut b).map(|_| b.to_vec()).ok()
    };
    // A run inside, one past the end (clipped), an empty one.
    for run in [2..5, 9..40, 7..7] {
        let mut dev = MapDevice::from_bytes(&bytes).unwrap();
        dev.load_resident(run.clone()).unwrap();
        for n in 0..blocks + 2 {
            assert_eq!(read(&dev, n), read(&plain, n), "block {n} with {run:?} resident");
        }
    }
}

fn vecs(n: usize, seed: u32) -> Vec<Vec<f32>> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            (0..8)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x % 2001) as f32 / 1000.0 - 1.0
                })
                .collect()
        })
        .collect()
}

fn sample_writer() -> (Writer<MemDevice>, sample::Tree) {
    let (img, t) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).unwrap();
    (Writer::new(img).unwrap(), t)
}

#[test]
fn chunk_lists_grow_into_a_vector_id_block_and_shrink_back() {
    let (mut w, t) = sample_writer();
    let blocks0 = w.image().inode(t.hello).unwrap().blocks;
    let free0 = w.image().sb().free_blocks;
    let s = w.set_embeddings(t.hello, &vecs(INLINE_VEC_IDS, 1)).unwrap();
    let i = w.image().inode(t.hello).unwrap();
    assert_eq!((i.vec_count, i.vec_block, i.blocks), (4, 0, blocks0));
    assert_eq!(i.vec_ids.to_vec(), s);
    // A fifth chunk needs a vector-id block, counted in the file's blocks.
    let s = w.set_chunks(t.hello, 4, &vecs(3, 2), false).unwrap();
    assert_eq!(s.len(), 7);
    let i = w.image().inode(t.hello).unwrap();
    assert_eq!((i.vec_count, i.blocks), (7, blocks0 + 1));
    assert_ne!(i.vec_block, 0);
    assert_eq!(w.image().sb().free_blocks, free0 - 1);
    assert_eq!(w.image().vec_slots(t.hello, &i).unwrap(), s);
    // Replacing chunk 1 keeps the others; truncating to two frees the block.
    let s2 = w.set_chunks(t.hello, 1, &vecs(1, 3), false).unwrap();
    assert_eq!((s2[0], &s2[2..]), (s[0], &s[2..]));
    assert_ne!(s2[1], s[1]);
    let s3 = w.set_chunks(t.hello, 0, &vecs(2, 4), true).unwrap();
    assert_eq!(s3.len(), 2);
    let i = w.image().inode(t.hello).unwrap();
    assert_eq!((i.vec_count, i.vec_block, i.blocks, &i.vec_ids[2..]), (2, 0, blocks0, &[0, 0][..]));
    assert_eq!(w.image().sb().free_blocks, free0);
    let h = w.vector_header().unwrap();
    assert_eq!((h.live, h.deleted), (2, 8));
    let img = w.commit().unwrap();
    assert_clean(&img.into_device().bytes, "after growing and shrinking");
}

#[test]
fn a_file_finds_its_own_vectors_and_removal_hides_them() {
    let (mut w, t) = sample_writer();
    let a = vecs(6, 10);
    let b = vecs(3, 20);
    w.set_embeddings(t.big, &a).unwrap();
    w.set_embeddings(t.frag, &b).unwrap();
    for (c, v) in a.iter().enumerate() {
        let h = w.search(v, 1, 0).unwrap();
        assert_eq!((h[0].ino, h[0].chunk), (t.big as u64, c as u32));
        assert!(h[0].distance().abs() < 1e-6, "{}", h[0].distance());
    }
    w.remove_embeddings(t.big).unwrap();
    // Removing a file without embeddings is fine.
    w.remove_embeddings(t.hello).unwrap();
    let h = w.search(&a[0], 9, 0).unwrap();
    assert_eq!(h.len(), 3);
    assert!(h.iter().all(|x| x.ino == t.frag as u64));
    let i = w.image().inode(t.big).unwrap();
    assert_eq!((i.vec_count, i.vec_block), (0, 0));
    let img = w.commit().unwrap();
    let bytes = img.into_device().bytes;
    assert_clean(&bytes, "after removing");
    let mut s = searcher(&bytes);
    assert_eq!(s.search(&a[0], 9, 0).unwrap(), h);
}

#[test]
fn the_writer_refuses_what_the_kernel_refuses() {
    let (mut w, t) = sample_writer();
    let err = |r: vexfs_image::Result<Vec<u32>>| r.unwrap_err().to_string();
    assert!(err(w.set_embeddings(t.docs, &vecs(1, 1))).contains("not a regular file"));
    assert!(err(w.set_embeddings(t.hello, &[vec![1.0f32; 7]])).contains("7 components"));
    let mut nan = vecs(2, 1);
    nan[1][3] = f32::NAN;
    assert!(err(w.set_embeddings(t.hello, &nan)).contains("vector 1 component 3"));
    assert!(err(w.set_chunks(t.hello, 1, &vecs(1, 1), false)).contains("gap"));
    assert!(err(w.set_chunks(t.hello, 1020, &vecs(1, 1), false)).contains("limit"));
    assert!(w.search(&[f32::INFINITY; 8], 1, 0).unwrap_err().to_string().contains("component 0"));
    assert!(w.search(&[0.5; 8], 0, 0).is_err());
    assert!(w.search(&[0.5; 8], 10, 5).is_err());
    // Nothing was changed by the refusals.
    let h = w.vector_header().unwrap();
    assert_eq!((h.live, h.deleted, h.entry), (0, 0, NO_SLOT));
    assert_eq!(w.search(&[0.5; 8], 3, 0).unwrap(), vec![]);
    assert_clean(&w.commit().unwrap().into_device().bytes, "after refusals");
}

#[test]
fn a_full_index_says_so_and_changes_nothing() {
    let mut p = sample::params(SAMPLE_BLOCKS);
    p.vec_capacity = Some(5);
    let mut dev = MemDevice::new(SAMPLE_BLOCKS);
    mkfs::format(&mut dev, &p, false).unwrap();
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    let f = w.create(ROOT_INO, "f", b"x").unwrap();
    let g = w.create(ROOT_INO, "g", b"y").unwrap();
    w.set_embeddings(f, &vecs(4, 1)).unwrap();
    w.set_embeddings(g, &vecs(1, 2)).unwrap();
    let e = w.set_chunks(g, 1, &vecs(1, 3), false).unwrap_err().to_string();
    assert!(e.contains("no room for 1 more vectors"), "{e}");
    assert_eq!(w.image().inode(g).unwrap().vec_count, 1);
    // Four tombstones: too few for the purge policy, so every slot stays taken...
    w.remove_embeddings(f).unwrap();
    let h = w.vector_header().unwrap();
    assert_eq!((h.live, h.deleted), (1, 4));
    // ...until an insert finds none free and purges them.
    let s = w.set_chunks(g, 1, &vecs(4, 4), false).unwrap();
    assert_eq!(s.len(), 5);
    let h = w.vector_header().unwrap();
    assert_eq!((h.live, h.deleted), (5, 0));
    assert_clean(&w.commit().unwrap().into_device().bytes, "full index");
}

/// The bytes of the vector regions (bitmap, map, data, HNSW) of an image.
fn vector_regions(bytes: &[u8]) -> Vec<u8> {
    let img = Image::open(MemDevice { bytes: bytes.to_vec() }).unwrap();
    let sb = img.sb().clone();
    let mut out = Vec::new();
    for r in [Region::VecBitmap, Region::VecMap, Region::VecData, Region::Hnsw] {
        let e = sb.region(r);
        let (a, z) = (e.start as usize * 4096, (e.start + e.blocks) as usize * 4096);
        out.extend_from_slice(&bytes[a..z]);
    }
    out
}

/// The vector write-ahead log, offline: the files of [`built`] set with
/// `Indexing::Deferred` are all pending (no graph yet), a search scans them exactly (the
/// brute-force answer, recall 1), they survive a commit and a reopen, fsck is clean with them;
/// then the index worker's code (`index_pending`) links them in slot order, and the vector
/// regions equal, byte for byte, those of the synchronous build (so a deferred build is the
/// same graph, with the same recall).
#[test]
fn deferred_indexing_is_exact_then_the_same_graph() {
    let d = pydocs();
    let b = built();
    let mut dev = MemDevice::new(BLOCKS);
    mkfs::format(&mut dev, &params(), false).unwrap();
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    w.set_indexing(Indexing::Deferred);
    let docs = w.mkdir(ROOT_INO, "docs", 0o755).unwrap();
    for (i, (_, ids)) in b.files.iter().enumerate() {
        let ino = w.create(docs, &format!("f{i:04}"), format!("file {i}\n").as_bytes()).unwrap();
        let vs: Vec<&Vec<f32>> = ids.iter().map(|&id| &d.base[id as usize]).collect();
        w.set_embeddings(ino, &vs).unwrap();
    }
    let h = w.vector_header().unwrap();
    assert_eq!((h.live, h.deleted, h.pending, h.entry), (0, 0, 2000, NO_SLOT));
    let all: HashSet<u32> = (0..2000).collect();
    let exact = brute_force(&all);
    let hits: Vec<Vec<Hit>> = d.queries.iter().map(|q| w.search(q, K, EF).unwrap()).collect();
    let r = recall(&hits, &b.owner, &exact);
    assert!(r >= 0.999, "a search over pending vectors is an exact scan: recall@{K} {r}");
    let bytes = w.commit().unwrap().into_device().bytes;
    assert_clean(&bytes, "2000 pending vectors");
    let mut w = Writer::new(Image::open(MemDevice { bytes }).unwrap()).unwrap();
    assert_eq!(w.vector_header().unwrap().pending, 2000, "pending vectors are on disk");
    let again: Vec<Vec<Hit>> = d.queries.iter().map(|q| w.search(q, K, EF).unwrap()).collect();
    assert_eq!(again, hits, "the same answers after a reopen");
    let mut linked = 0;
    loop {
        let n = w.index_pending(300).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 300);
        linked += n;
    }
    assert_eq!(linked, 2000);
    let h = w.vector_header().unwrap();
    assert_eq!((h.live, h.pending), (2000, 0));
    let bytes = w.commit().unwrap().into_device().bytes;
    assert_clean(&bytes, "after the pending vectors were linked");
    assert!(vector_regions(&bytes) == vector_regions(&b.bytes), "the deferred build is the synchronous one");
}

/// A pending vector replaced or removed before the worker links it is freed at once (no
/// tombstone), and a search never returns it.
#[test]
fn pending_vectors_replaced_and_removed_are_freed() {
    let d = pydocs();
    let mut dev = MemDevice::new(BLOCKS);
    mkfs::format(&mut dev, &params(), false).unwrap();
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    w.set_indexing(Indexing::Deferred);
    let a = w.create(ROOT_INO, "a", b"a").unwrap();
    let c = w.create(ROOT_INO, "c", b"c").unwrap();
    w.set_embeddings(a, &d.base[0..3]).unwrap();
    w.set_embeddings(c, &d.base[3..5]).unwrap();
    w.set_chunks(a, 1, &d.base[10..11], false).unwrap();
    w.remove_embeddings(c).unwrap();
    let h = w.vector_header().unwrap();
    assert_eq!((h.live, h.deleted, h.pending), (0, 0, 3));
    let hits = w.search(&d.base[1], 5, EF).unwrap();
    assert_eq!(hits.len(), 3, "only the file's three current chunks: {hits:?}");
    assert!(hits.iter().all(|h| h.ino == a as u64));
    assert_eq!(w.index_pending(10).unwrap(), 3);
    assert_eq!(w.search(&d.base[10], 1, EF).unwrap()[0].chunk, 1);
    let bytes = w.commit().unwrap().into_device().bytes;
    assert_clean(&bytes, "pending vectors replaced, removed, then linked");
}

/// A purge in steps, as the kernel's worker runs it: removals leave their tombstones; each
/// step repairs a few nodes or frees a few tombstones, and between the steps files are
/// created and removed (new tombstones, which this pass must not free). After every step the
/// image is clean for fsck (sampled), searches never return a removed vector, and at the end
/// only the tombstones made during the pass are left, with recall@10 still at least 0.95.
#[test]
fn a_purge_in_steps_interleaved_with_changes() {
    let d = pydocs();
    let b = built();
    let mut w = Writer::new(Image::open(MemDevice { bytes: b.bytes.clone() }).unwrap()).unwrap();
    w.set_stepwise_purge(true).unwrap();
    let mut live: HashSet<u32> = (0..2000).collect();
    let mut owner = b.owner.clone();
    // Remove every third file: no purge runs by itself.
    for (i, (ino, ids)) in b.files.iter().enumerate() {
        if i % 3 == 0 {
            w.remove_embeddings(*ino).unwrap();
            ids.iter().for_each(|id| {
                live.remove(id);
            });
        }
    }
    let h = w.vector_header().unwrap();
    let first = h.deleted;
    assert!(first as usize >= 500, "{h:?}");
    let extra = w.mkdir(ROOT_INO, "extra", 0o755).unwrap();
    let (mut steps, mut made, mut later_removed) = (0, 0u32, 0u32);
    loop {
        let step = w.purge_step(64).unwrap();
        if step == PurgeStep::Idle {
            break;
        }
        steps += 1;
        if steps % 3 == 0 {
            // A new file with a removed vector (into a free slot), and every other time the
            // removal of a live file (a new tombstone).
            let id = (steps as u32 * 7) % 2000;
            if !live.contains(&id) {
                let ino = w.create(extra, &format!("x{steps}"), b"x").unwrap();
                w.set_embeddings(ino, &[&d.base[id as usize]]).unwrap();
                owner.insert((ino as u64, 0), id);
                live.insert(id);
                made += 1;
            }
            if steps % 2 == 0 {
                let (ino, ids) = &b.files[(steps * 5 + 1) % b.files.len()];
                let img = w.image();
                if !img.vec_slots(*ino, &img.inode(*ino).unwrap()).unwrap().is_empty() {
                    w.remove_embeddings(*ino).unwrap();
                    later_removed += ids.len() as u32;
                    ids.iter().for_each(|id| {
                        live.remove(id);
                    });
                }
            }
        }
        if steps % 7 == 0 {
            w.sync().unwrap();
            assert_clean(&w.image().device().inner().bytes, &format!("purge step {steps} ({step:?})"));
            for h in w.search(&d.queries[steps % 100], K, EF).unwrap() {
                assert!(live.contains(&owner[&(h.ino, h.chunk)]), "a removed vector was returned at step {steps}");
            }
        }
        assert!(steps < 10_000, "the purge does not end");
    }
    let h = w.vector_header().unwrap();
    assert_eq!(h.live as usize, live.len());
    assert!(h.deleted <= later_removed, "tombstones left {} > made during the pass {later_removed}", h.deleted);
    eprintln!(
        "purge in {steps} steps: {first} tombstones freed, {made} vectors added and {later_removed} removed meanwhile"
    );
    w.sync().unwrap();
    assert_clean(&w.image().device().inner().bytes, "after the purge in steps");
    let truth = brute_force(&live);
    let hits: Vec<Vec<Hit>> = d.queries.iter().map(|q| w.search(q, K, EF).unwrap()).collect();
    let r = recall(&hits, &owner, &truth);
    assert!(r >= 0.95, "recall@{K} after a purge in steps {r}");
}
