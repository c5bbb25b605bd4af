//! fsck.vexfs rebuilds a damaged HNSW graph from the vectors (`-y`).
//!
//! The image: the pydocs sample (2,000 x 384, l2, m 16, ef_construction 200) written with the
//! offline writer as files of 1 to 9 chunks, then the embeddings of every 10th file removed
//! (tombstones left in the graph). Each test damages the graph one way, then checks that
//! `-n` reports it ("graph damaged: rebuild with -y", exit 4), `-p` leaves it (exit 4), `-y`
//! rebuilds it (exit 1), a second `-n` is clean, every file's chunks keep their slots and
//! owners, tombstones are gone, each live vector is found by a search for itself at distance
//! 0, and recall@10 against the exact answer stays with the original graph's (both printed,
//! `--nocapture`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vexfs_image::fsck::{self, Fix, Kind};
use vexfs_image::vecfile::read_fvecs;
use vexfs_image::vectors::{Hit, Searcher};
use vexfs_image::vexfs_core::format::layout::MkfsParams;
use vexfs_image::vexfs_core::format::superblock::{Metric, Region, Superblock, ROOT_INO};
use vexfs_image::vexfs_core::format::vector::{HnswGeometry, HnswHeader, Level0Head, MapEntry, MAP_ENTRY, NO_SLOT};
use vexfs_image::vexfs_core::format::{bit_test, BLOCK_SIZE};
use vexfs_image::vexfs_core::io::BlockDevice;
use vexfs_image::vexfs_core::vindex::fill_upper_table;
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, FileDevice, Image, MemDevice};

mod common;
use common::{fsck, save, Img};

const K: usize = 10;
const EF: usize = 64;
const BLOCKS: u64 = 4096;

struct Data {
    base: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

fn pydocs() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/pydocs-minilm/small");
        let d = Data {
            base: read_fvecs(dir.join("base.fvecs")).unwrap(),
            queries: read_fvecs(dir.join("query.fvecs")).unwrap(),
        };
        assert_eq!((d.base.len(), d.base[0].len(), d.queries.len()), (2000, 384, 100));
        d
    })
}

fn params() -> MkfsParams {
    MkfsParams {
        block_count: BLOCKS,
        inode_count: None,
        journal_blocks: None,
        vec_capacity: Some(2600),
        dim: 384,
        metric: Metric::L2,
        m: 16,
        ef_construction: 200,
        uuid: *b"vexfs-rebuild-ts",
        label: [0; 32],
        now: 1_700_000_000,
        seed: 7,
    }
}

/// The images and what they hold.
struct Built {
    /// Every vector in a file, never a delete: the graph as a run of inserts in slot order.
    whole: Vec<u8>,
    /// `whole` with the embeddings of every 10th file removed (tombstones in the graph).
    bytes: Vec<u8>,
    /// Base id of each live (inode, chunk) of `bytes`.
    owner: HashMap<(u64, u32), u32>,
    /// Live files of `bytes`: inode, slots of its chunks, base ids of its chunks.
    files: Vec<(u32, Vec<u32>, Vec<u32>)>,
    /// The tombstones' slots.
    tombs: Vec<u32>,
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let d = pydocs();
        let mut dev = MemDevice::new(BLOCKS);
        mkfs::format(&mut dev, &params(), false).unwrap();
        let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
        let docs = w.mkdir(ROOT_INO, "docs", 0o755).unwrap();
        let mut all = Vec::new();
        let (mut next, mut i) = (0usize, 0usize);
        while next < d.base.len() {
            let n = (1 + i % 9).min(d.base.len() - next);
            let ino = w.create(docs, &format!("f{i:04}"), b"text\n").unwrap();
            let slots = w.set_embeddings(ino, &d.base[next..next + n]).unwrap();
            all.push((ino, slots, (next as u32..(next + n) as u32).collect::<Vec<u32>>()));
            next += n;
            i += 1;
        }
        let whole = w.commit().unwrap().into_device().bytes;
        let mut w = Writer::new(Image::open(MemDevice { bytes: whole.clone() }).unwrap()).unwrap();
        let (mut files, mut tombs) = (Vec::new(), Vec::new());
        for (i, f) in all.into_iter().enumerate() {
            if i % 10 == 3 {
                w.remove_embeddings(f.0).unwrap();
                tombs.extend(&f.1);
            } else {
                files.push(f);
            }
        }
        let h = w.vector_header().unwrap();
        let live: usize = files.iter().map(|f| f.1.len()).sum();
        assert_eq!((h.live as usize, h.deleted as usize), (live, tombs.len()), "no purge ran");
        let bytes = w.commit().unwrap().into_device().bytes;
        let mut owner = HashMap::new();
        for (ino, _, ids) in &files {
            for (c, &id) in ids.iter().enumerate() {
                owner.insert((*ino as u64, c as u32), id);
            }
        }
        tombs.sort_unstable();
        Built { whole, bytes, owner, files, tombs }
    })
}

fn sb(path: &Path) -> Superblock {
    Image::open(FileDevice::open(path, false).unwrap()).unwrap().sb().clone()
}

fn read_block(path: &Path, n: u64) -> [u8; BLOCK_SIZE] {
    let mut b = [0u8; BLOCK_SIZE];
    FileDevice::open(path, false).unwrap().read_block(n, &mut b).unwrap();
    b
}

fn edit_block(path: &Path, n: u64, f: impl FnOnce(&mut [u8; BLOCK_SIZE])) {
    let mut dev = FileDevice::open(path, true).unwrap();
    let mut b = [0u8; BLOCK_SIZE];
    dev.read_block(n, &mut b).unwrap();
    f(&mut b);
    dev.write_block(n, &b).unwrap();
}

fn header(path: &Path) -> HnswHeader {
    let n = sb(path).region(Region::Hnsw).start;
    HnswHeader::decode(&read_block(path, n), n).unwrap()
}

fn edit_header(path: &Path, f: impl FnOnce(&mut HnswHeader)) {
    let n = sb(path).region(Region::Hnsw).start;
    edit_block(path, n, |b| {
        let mut h = HnswHeader::decode(b, n).unwrap();
        f(&mut h);
        h.encode(b, n);
    });
}

/// Edits the level-0 record of `slot`.
fn edit_level0(path: &Path, slot: u32, f: impl FnOnce(&mut [u8])) {
    let g = HnswGeometry::new(&sb(path));
    let (blk, off) = g.level0_pos(slot);
    edit_block(path, blk, |b| f(&mut b[off..off + g.level0_size as usize]));
}

fn level0(path: &Path, slot: u32) -> Level0Head {
    let (blk, off) = HnswGeometry::new(&sb(path)).level0_pos(slot);
    Level0Head::decode(&read_block(path, blk)[off..]).unwrap()
}

fn slot_level(path: &Path, slot: u32) -> u32 {
    let s = sb(path);
    let mut t = vec![0u32; s.vec_capacity as usize + 1];
    fill_upper_table(&s, &mut t).unwrap();
    t[slot as usize + 1] - t[slot as usize]
}

/// The bytes of region `r`.
fn region(path: &Path, r: Region) -> Vec<u8> {
    Image::open(FileDevice::open(path, false).unwrap()).unwrap().read_region(r).unwrap()
}

/// A live slot of level 0, not the entry point, with level-0 links.
fn some_live_slot(path: &Path) -> u32 {
    let b = built();
    let entry = header(path).entry;
    let s = b.files[17].1[0];
    assert_ne!(s, entry);
    assert_eq!(slot_level(path, s), 0);
    assert!(level0(path, s).count > 0);
    s
}

/// Exact K nearest base ids (l2) among the live vectors, for every query.
fn brute_force() -> Vec<Vec<u32>> {
    let d = pydocs();
    let live: Vec<u32> = built().owner.values().copied().collect();
    d.queries
        .iter()
        .map(|q| {
            let mut all: Vec<(f64, u32)> = live
                .iter()
                .map(|&i| (q.iter().zip(&d.base[i as usize]).map(|(a, b)| ((a - b) as f64).powi(2)).sum(), i))
                .collect();
            all.sort_by(|a, b| a.partial_cmp(b).unwrap());
            all.into_iter().take(K).map(|x| x.1).collect()
        })
        .collect()
}

/// Recall@K of the image's graph (ef [`EF`]) against [`brute_force`].
fn recall(path: &Path) -> f64 {
    let b = built();
    static TRUTH: OnceLock<Vec<Vec<u32>>> = OnceLock::new();
    let truth = TRUTH.get_or_init(brute_force);
    let mut s = Searcher::open(path, EF).unwrap();
    let mut found = 0;
    for (q, t) in pydocs().queries.iter().zip(truth) {
        let hits = s.search(q, K, EF).unwrap();
        found += hits.iter().filter(|h| t.contains(&b.owner[&(h.ino, h.chunk)])).count();
    }
    found as f64 / (K * truth.len()) as f64
}

/// Every live chunk found by a search for its own vector, at distance 0 (another chunk
/// holding the same vector counts too).
fn own_vectors_found(path: &Path) -> usize {
    let (b, d) = (built(), pydocs());
    let mut s = Searcher::open(path, EF).unwrap();
    let mut n = 0;
    for (ino, _, ids) in &b.files {
        for (c, &id) in ids.iter().enumerate() {
            let v = &d.base[id as usize];
            let hits: Vec<Hit> = s.search(v, 1, EF).unwrap();
            let top = hits.first().copied().unwrap_or_else(|| panic!("inode {ino} chunk {c}: no hit"));
            let same = (top.ino, top.chunk) == (*ino as u64, c as u32)
                || d.base[b.owner[&(top.ino, top.chunk)] as usize] == *v;
            assert!(same && top.distance() == 0.0, "inode {ino} chunk {c} not found by its own vector: {top:?}");
            n += 1;
        }
    }
    n
}

/// The check finds exactly `kinds`, each fixed by a rebuild; `-n` says so and exits 4, `-p`
/// leaves it (4), `-y` rebuilds (1), a second `-n` is clean; then the rebuilt graph is
/// checked (see the module's docs). Returns the rebuilt graph's recall.
fn damaged_then_rebuilt(img: &Img, kinds: &[Kind], what: &str) -> f64 {
    let path = &img.path;
    let (image, early) = fsck::open(FileDevice::open(path, false).unwrap()).unwrap();
    let ps = fsck::check(&image, early).unwrap().problems;
    assert_eq!(ps.iter().map(|p| p.kind).collect::<Vec<_>>(), kinds, "{ps:#?}");
    assert!(ps.iter().all(|p| p.fix == Some(Fix::RebuildGraph)), "{ps:#?}");
    let before = std::fs::read(path).unwrap();
    let (code, out) = fsck(path, &["-n"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("graph damaged: rebuild with -y"), "{out}");
    for p in &ps {
        assert!(out.contains(&p.message), "{out}");
    }
    let (code, out) = fsck(path, &["-p"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("graph damaged: rebuild with -y"), "{out}");
    assert_eq!(std::fs::read(path).unwrap(), before, "-n and -p changed the image");

    let (code, out) = fsck(path, &["-y"]);
    assert_eq!(code, 1, "{out}");
    let b = built();
    let live: usize = b.files.iter().map(|f| f.1.len()).sum();
    let said = format!(
        "HNSW graph rebuilt from the vectors: {live} vector(s) linked again in their slots, {} tombstone(s) dropped.",
        b.tombs.len()
    );
    assert!(out.contains(&said), "{out}");
    let (code, out) = fsck(path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("clean"), "{out}");

    // Slots, owners and vectors as they were; tombstones freed; the header counts them.
    let after = std::fs::read(path).unwrap();
    let s = sb(path);
    let data = s.region(Region::VecData);
    let span = |r: vexfs_image::vexfs_core::format::superblock::Extent64| {
        (r.start * BLOCK_SIZE as u64) as usize..(r.end() * BLOCK_SIZE as u64) as usize
    };
    assert_eq!(after[span(data)], b.bytes[span(data)], "vector data changed");
    assert_eq!(after[..span(s.region(Region::VecBitmap)).start], b.bytes[..span(s.region(Region::VecBitmap)).start]);
    let map = region(path, Region::VecMap);
    let bitmap = region(path, Region::VecBitmap);
    let image = Image::open(FileDevice::open(path, false).unwrap()).unwrap();
    for (ino, slots, _) in &b.files {
        assert_eq!(&image.vec_slots(*ino, &image.inode(*ino).unwrap()).unwrap(), slots);
        for (c, &slot) in slots.iter().enumerate() {
            let e = MapEntry::decode(slot, &map[slot as usize * MAP_ENTRY..][..MAP_ENTRY]).unwrap();
            assert_eq!(e, Some(MapEntry { ino: *ino as u64, chunk: c as u32 }));
            assert!(bit_test(&bitmap, slot as usize));
        }
    }
    for &t in &b.tombs {
        assert!(!bit_test(&bitmap, t as usize), "tombstone {t} still in use");
        assert_eq!(level0(path, t), Level0Head { count: 0, level: 0, flags: 0, upper: 0 });
    }
    let h = header(path);
    assert_eq!((h.live as usize, h.deleted), (live, 0));
    assert_eq!(h.entry_level, slot_level(path, h.entry));

    let found = own_vectors_found(path);
    assert_eq!(found, live);
    let r = recall(path);
    let r0 = original_recall();
    println!(
        "rebuilt after {what}: {found} live vectors each found by its own vector at distance 0; \
         recall@{K} at ef {EF}: original graph {r0:.4}, rebuilt {r:.4}"
    );
    assert!(r >= r0 - 0.01 && r >= 0.95, "recall@{K} of the rebuilt graph {r}, original {r0}");
    r
}

/// Recall of the original graph (tombstones in it).
fn original_recall() -> f64 {
    static R: OnceLock<f64> = OnceLock::new();
    *R.get_or_init(|| {
        let img = save(&built().bytes);
        recall(&img.path)
    })
}

#[test]
fn original_image_is_clean() {
    let img = save(&built().bytes);
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("rebuilt"), "{out}");
    assert_eq!(std::fs::read(&img.path).unwrap(), built().bytes, "-y changed a clean image");
    println!("original graph: recall@{K} at ef {EF} {:.4}", original_recall());
}

#[test]
fn neighbour_on_a_free_slot() {
    let img = save(&built().bytes);
    let free = sb(&img.path).vec_capacity as u32 - 1;
    let s = some_live_slot(&img.path);
    edit_level0(&img.path, s, |r| r[8..12].copy_from_slice(&free.to_le_bytes()));
    damaged_then_rebuilt(&img, &[Kind::VectorLinks], "a neighbour on a free slot");
}

#[test]
fn neighbour_out_of_range() {
    let img = save(&built().bytes);
    let s = some_live_slot(&img.path);
    edit_level0(&img.path, s, |r| r[12..16].copy_from_slice(&u32::MAX.to_le_bytes()));
    damaged_then_rebuilt(&img, &[Kind::VectorLinks], "a neighbour out of range");
}

#[test]
fn entry_point_on_a_tombstone() {
    let img = save(&built().bytes);
    let t = built().tombs[0];
    let level = slot_level(&img.path, t);
    edit_header(&img.path, |h| {
        h.entry = t;
        h.entry_level = level;
    });
    damaged_then_rebuilt(&img, &[Kind::VectorEntry], "an entry point on a tombstone");
}

#[test]
fn entry_point_missing() {
    let img = save(&built().bytes);
    edit_header(&img.path, |h| {
        h.entry = NO_SLOT;
        h.entry_level = 0;
    });
    damaged_then_rebuilt(&img, &[Kind::VectorEntry], "no entry point");
}

#[test]
fn level_byte() {
    let img = save(&built().bytes);
    let s = some_live_slot(&img.path);
    edit_level0(&img.path, s, |r| r[2] = 3);
    damaged_then_rebuilt(&img, &[Kind::VectorRecord], "a bad level byte");
}

#[test]
fn header_unreadable_and_records_zeroed() {
    // The header's checksum broken and a run of level-0 record blocks zeroed: slots the
    // bitmap and map hold live look free to the graph.
    let img = save(&built().bytes);
    let g = HnswGeometry::new(&sb(&img.path));
    edit_block(&img.path, g.header, |b| b[30] ^= 0x40);
    for n in g.level0_start + 3..g.level0_start + 5 {
        edit_block(&img.path, n, |b| b.fill(0));
    }
    let (image, early) = fsck::open(FileDevice::open(&img.path, false).unwrap()).unwrap();
    let kinds: Vec<Kind> = fsck::check(&image, early).unwrap().problems.iter().map(|p| p.kind).collect();
    for k in [Kind::VectorHeader, Kind::VectorMap, Kind::VectorBitmap, Kind::VectorOwner] {
        assert!(kinds.contains(&k), "{k:?} not in {kinds:?}");
    }
    damaged_then_rebuilt(&img, &kinds, "an unreadable header and zeroed records");
}

#[test]
fn rebuild_of_a_graph_without_deletes_is_the_same_graph() {
    // Inserting every live slot again in slot order is what the writer did: the rebuilt
    // region is the original, byte for byte.
    let whole = &built().whole;
    let img = save(whole);
    let g = HnswGeometry::new(&sb(&img.path));
    let s = some_live_slot(&img.path);
    edit_level0(&img.path, s, |r| r[2] = 7);
    edit_block(&img.path, g.header, |b| b[33] ^= 1);
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("2000 vector(s) linked again in their slots, 0 tombstone(s) dropped"), "{out}");
    assert_eq!(std::fs::read(&img.path).unwrap(), *whole, "the rebuilt image differs from the original");
}

#[test]
fn no_rebuild_when_the_map_is_damaged() {
    // A damaged graph and a map entry that does not decode: which slot holds what cannot be
    // known, so nothing is rebuilt (and nothing written).
    let img = save(&built().bytes);
    let b = built();
    edit_header(&img.path, |h| h.entry_level += 1);
    let slot = b.files[5].1[0];
    let start = sb(&img.path).region(Region::VecMap).start;
    let off = slot as usize * MAP_ENTRY;
    edit_block(&img.path, start + (off / BLOCK_SIZE) as u64, |m| m[off % BLOCK_SIZE + 9] ^= 1);
    let before = std::fs::read(&img.path).unwrap();
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("the HNSW graph is damaged but cannot be rebuilt from the vectors"), "{out}");
    assert!(out.contains(&format!("vector slot {slot}: ")), "{out}");
    assert!(!out.contains("graph damaged: rebuild with -y"), "{out}");
    assert_eq!(std::fs::read(&img.path).unwrap(), before, "-y wrote to an image it could not repair");
}

#[test]
fn crash_during_a_rebuild() {
    // A rebuild that stopped after its first step (the header overwritten with the marker,
    // the records still the old ones) or half way through the records: the header does not
    // decode, and the next -y rebuilds the graph.
    for half in [false, true] {
        let img = save(&built().bytes);
        let g = HnswGeometry::new(&sb(&img.path));
        edit_block(&img.path, g.header, |b| *b = fsck::REBUILDING);
        let mut kinds = vec![Kind::VectorHeader];
        if half {
            for n in g.level0_start..g.level0_start + 4 {
                edit_block(&img.path, n, |b| b.fill(0));
            }
            let (image, early) = fsck::open(FileDevice::open(&img.path, false).unwrap()).unwrap();
            kinds = fsck::check(&image, early).unwrap().problems.iter().map(|p| p.kind).collect();
            assert!(kinds.contains(&Kind::VectorHeader), "{kinds:?}");
        }
        damaged_then_rebuilt(&img, &kinds, if half { "a crash half way" } else { "a crash after the first step" });
    }
}
