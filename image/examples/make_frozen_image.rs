//! Makes the frozen image of on-disk format v1 and its manifest: `tests/images/v1.img.gz` and
//! `tests/images/v1.manifest` (see `tests/images/README.md`).
//!
//! ```sh
//! cargo run --release -p vexfs-image --example make_frozen_image -- tests/images
//! ```
//!
//! This program documents how the committed image was made; it is not part of any test. The
//! tests read the committed bytes and never regenerate them: a later writer may lay the same
//! tree out differently, and that must not change what v1 is. A new format version gets a new
//! image (and its own generator run), never a rewrite of this one.
//!
//! The image: 2 MiB, dimension 8, l2, HNSW m 4 / ef_construction 32, fixed UUID, label, times
//! and level seed. The tree holds regular files (empty, small, several blocks, one extent per
//! block so an extent block is used, a sparse file ending in a hole), nested and empty
//! directories, a directory of two blocks, 255-byte names, two symlinks (one dangling), hard
//! links, modes, owners and distinct timestamps. Five files carry embeddings (1, 3, 7 chunks:
//! the 7 use a vector-id block), chunk 1 of one file was replaced and another file's two
//! chunks removed, so the HNSW graph keeps 3 tombstones (below the purge threshold).
//! Vector components are multiples of 1/4 in -2..=2, so every l2 distance is a multiple of
//! 1/16 computed exactly by every distance kernel (scalar, SSE2, AVX2, AVX-512): the manifest's
//! distances are exact bits on any CPU, and the queries have no ties.

#[path = "frozen_common/mod.rs"]
mod common;

use common::{decimals, hex_words, inode_fields, l2, sha256_hex, walk, Res, Vecs, DIM, EF};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use vexfs_core::format::inode::{Inode, S_IFLNK, S_IFMT};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Metric, ROOT_INO};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck::{self, Mode};
use vexfs_image::vectors::file_paths;
use vexfs_image::writer::{FileOpts, Writer};
use vexfs_image::{mkfs, Image, MemDevice};

/// 2 MiB.
const BLOCKS: u64 = 512;
/// Base of the timestamps: inode `i` has mtime `T0 + 3600 i` (atime +2 s, ctime +1 s).
const T0: i64 = 1_700_000_000;

fn params() -> MkfsParams {
    let mut label = [0u8; 32];
    label[..15].copy_from_slice(b"vexfs-frozen-v1");
    MkfsParams {
        block_count: BLOCKS,
        inode_count: Some(64),
        journal_blocks: Some(64),
        vec_capacity: Some(64),
        dim: DIM as u32,
        metric: Metric::L2,
        m: 4,
        ef_construction: 32,
        uuid: *b"vexfs-frozen-v1!",
        label,
        now: T0 as u64,
        seed: 20_261_201,
    }
}

/// Deterministic bytes with no zero block (so no accidental holes).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 8) as u8) | 1).collect()
}

/// A long name of exactly `len` bytes starting with `prefix`.
fn long_name(prefix: &str, len: usize) -> String {
    let mut s = prefix.to_string();
    while s.len() < len {
        s.push(char::from(b'a' + (s.len() % 26) as u8));
    }
    s
}

fn main() -> Res<()> {
    let out_dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: make_frozen_image OUT_DIR")?);
    let mut dev = MemDevice::new(BLOCKS);
    mkfs::format(&mut dev, &params(), false)?;
    let mut w = Writer::new(Image::open(dev)?)?;
    let r = ROOT_INO;
    // Contents by inode, as written.
    let mut content: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut file = |w: &mut Writer<MemDevice>, parent: u32, name: &str, data: Vec<u8>, opts: FileOpts| -> Res<u32> {
        let ino = w.create_with(parent, name, &data, opts)?;
        content.insert(ino, data);
        Ok(ino)
    };
    let mode = |m: u16| FileOpts { mode: m, ..FileOpts::default() };

    let hello = file(&mut w, r, "hello.txt", b"hello, frozen vexfs v1\n".to_vec(), mode(0o644))?;
    let empty = file(&mut w, r, "empty", Vec::new(), mode(0o600))?;
    let docs = w.mkdir(r, "docs", 0o755)?;
    file(&mut w, docs, "big.bin", pattern(3 * BLOCK_SIZE + 123, 1), mode(0o444))?;
    file(
        &mut w,
        docs,
        "frag.bin",
        pattern(8 * BLOCK_SIZE, 2),
        FileOpts { mode: 0o640, max_extent_blocks: 1, ..FileOpts::default() },
    )?;
    // Blocks 1, 2 and 5 are holes (5 is the last, partial block).
    let mut sparse = pattern(5 * BLOCK_SIZE + 700, 3);
    sparse[BLOCK_SIZE..3 * BLOCK_SIZE].fill(0);
    sparse[5 * BLOCK_SIZE..].fill(0);
    file(&mut w, docs, "sparse.bin", sparse, mode(0o644))?;
    let nested = w.mkdir(docs, "nested", 0o750)?;
    let deeper = w.mkdir(nested, "deeper", 0o755)?;
    let deepest = w.mkdir(deeper, "deepest", 0o711)?;
    let leaf = file(&mut w, deepest, "leaf.txt", b"a leaf, three directories down\n".to_vec(), mode(0o664))?;
    w.mkdir(nested, "empty-dir", 0o700)?;
    w.symlink(r, "link", "docs/big.bin")?;
    w.symlink(docs, "dangling", "../no/such/target")?;
    w.link(r, "hard", hello)?;
    // Two directory blocks of 255-byte names, every one a link to /empty.
    let wide = w.mkdir(r, "wide", 0o755)?;
    for i in 0..20 {
        w.link(wide, &long_name(&format!("entry-{i:02}-"), 255), empty)?;
    }
    let vec = w.mkdir(r, "vec", 0o755)?;
    let one = file(&mut w, vec, "one.txt", b"one chunk\n".to_vec(), mode(0o4755))?;
    let gone = file(&mut w, vec, "gone.txt", b"its embeddings were removed\n".to_vec(), mode(0o644))?;
    let three = file(&mut w, vec, "three.txt", b"three chunks, the middle one replaced\n".to_vec(), mode(0o644))?;
    let seven = file(
        &mut w,
        vec,
        "seven.txt",
        pattern(BLOCK_SIZE + 1, 4),
        FileOpts { mode: 0o2755, max_extent_blocks: 1, ..FileOpts::default() },
    )?;
    w.link(vec, "seven-alias", seven)?;

    // Embeddings: a seed whose data has no tie in any recorded query (checked below).
    let mut g = Vecs(0x5eed_0001);
    let v_one = g.take(1);
    let v_gone = g.take(2);
    let v_three = g.take(3);
    let v_seven = g.take(7);
    let v_leaf = g.take(1);
    let v_replace = g.take(1);
    w.set_embeddings(one, &v_one)?;
    w.set_embeddings(gone, &v_gone)?;
    w.set_embeddings(three, &v_three)?;
    w.set_embeddings(seven, &v_seven)?;
    w.set_embeddings(leaf, &v_leaf)?;
    let tomb_three = w.image().vec_slots(three, &w.image().inode(three)?)?[1];
    w.set_chunks(three, 1, &v_replace, false)?;
    let tomb_gone = w.image().vec_slots(gone, &w.image().inode(gone)?)?;
    w.remove_embeddings(gone)?;
    let h = w.vector_header()?;
    if (h.live, h.deleted) != (12, 3) {
        return Err(format!("expected 12 live vectors and 3 tombstones, the header says {h:?}").into());
    }
    let mut tombstones = vec![(tomb_three, three, 1u32, v_three[1].clone())];
    for (c, (&s, v)) in tomb_gone.iter().zip(&v_gone).enumerate() {
        tombstones.push((s, gone, c as u32, v.clone()));
    }

    // The live vectors, by (inode, chunk).
    let mut live: Vec<(u32, u32, Vec<f32>)> = Vec::new();
    for (ino, vs) in [(one, v_one.clone()), (seven, v_seven.clone()), (leaf, v_leaf.clone())] {
        for (c, v) in vs.into_iter().enumerate() {
            live.push((ino, c as u32, v));
        }
    }
    live.push((three, 0, v_three[0].clone()));
    live.push((three, 1, v_replace[0].clone()));
    live.push((three, 2, v_three[2].clone()));

    // Queries: a removed vector (must not come back), a live vector (distance 0 first), two
    // others; k = 12 returns every live vector in order.
    let mut qg = Vecs(0x9e37_79b9);
    let queries: Vec<(Vec<f32>, usize)> =
        vec![(v_gone[0].clone(), 5), (v_seven[5].clone(), 3), (qg.next(), 12), (qg.next(), 4)];
    let mut results = Vec::new();
    for (qi, (q, k)) in queries.iter().enumerate() {
        let mut truth: Vec<(u32, u32, u32)> = live.iter().map(|(i, c, v)| (l2(q, v).to_bits(), *i, *c)).collect();
        truth.sort();
        if truth.windows(2).any(|p| p[0].0 == p[1].0) {
            return Err(format!("query {qi} has tied distances: choose other vector seeds").into());
        }
        let hits = w.search(q, *k, EF)?;
        let got: Vec<(u32, u32, u32)> = hits.iter().map(|h| (h.distance().to_bits(), h.ino as u32, h.chunk)).collect();
        if got[..] != truth[..*k] {
            return Err(format!("query {qi}: the index answered {got:?}, brute force {truth:?}").into());
        }
        results.push(hits);
    }

    // Owners, then fixed timestamps (the writer stamps the current time).
    let mut img = w.commit()?;
    let paths = walk(&img)?;
    let mut inos: Vec<u32> = paths.values().copied().collect();
    inos.sort_unstable();
    inos.dedup();
    let owners: HashMap<u32, (u32, u32)> =
        HashMap::from([(one, (1000, 1000)), (seven, (1234, 5678)), (hello, (0, 100)), (docs, (1000, 100))]);
    for &ino in &inos {
        let mut i: Inode = img.inode(ino)?;
        let t = T0 + 3600 * ino as i64;
        let ns = 1_000_000 * ino + 7;
        (i.mtime_sec, i.mtime_nsec) = (t, ns);
        (i.ctime_sec, i.ctime_nsec) = (t + 1, ns + 1);
        (i.atime_sec, i.atime_nsec) = (t + 2, ns + 2);
        if let Some(&(uid, gid)) = owners.get(&ino) {
            (i.uid, i.gid) = (uid, gid);
        }
        img.write_inode(ino, &i)?;
    }
    let raw = img.into_device().bytes;
    let (out, _) = fsck::run(MemDevice { bytes: raw.clone() }, Mode::Check)?;
    if !out.report.problems.is_empty() {
        return Err(format!("fsck: {:?}", out.report.problems).into());
    }
    let img = Image::open(MemDevice { bytes: raw.clone() })?;
    let hit_paths = file_paths(&img)?;

    // The manifest.
    let sb = img.sb();
    let mut m = String::new();
    m.push_str(MANIFEST_HEAD);
    writeln!(m, "image {} {}", raw.len(), sha256_hex(&raw))?;
    writeln!(m, "sb format_version {}", sb.format_version)?;
    writeln!(m, "sb uuid {}", sb.uuid.iter().map(|b| format!("{b:02x}")).collect::<String>())?;
    writeln!(m, "sb label {}", sb.label_str())?;
    writeln!(m, "sb block_count {}", sb.block_count)?;
    writeln!(m, "sb inode_count {}", sb.inode_count)?;
    writeln!(m, "sb free_blocks {}", sb.free_blocks)?;
    writeln!(m, "sb free_inodes {}", sb.free_inodes)?;
    writeln!(m, "sb mkfs_time {}", sb.mkfs_time)?;
    writeln!(m, "sb dim {}", sb.vec_dim)?;
    writeln!(m, "sb metric l2")?;
    writeln!(m, "sb vec_capacity {}", sb.vec_capacity)?;
    writeln!(m, "sb vec_stride {}", sb.vec_stride)?;
    writeln!(m, "sb hnsw_m {}", sb.hnsw_m)?;
    writeln!(m, "sb hnsw_ef_construction {}", sb.hnsw_ef_construction)?;
    writeln!(m, "sb hnsw_max_level {}", sb.hnsw_max_level)?;
    writeln!(m, "sb hnsw_seed {}", sb.hnsw_seed)?;
    writeln!(m, "hnsw entry {}", h.entry)?;
    writeln!(m, "hnsw entry_level {}", h.entry_level)?;
    writeln!(m, "hnsw live {}", h.live)?;
    writeln!(m, "hnsw deleted {}", h.deleted)?;
    for &ino in &inos {
        writeln!(m, "inode {ino} {}", inode_fields(&img.inode(ino)?))?;
    }
    for (p, ino) in &paths {
        writeln!(m, "path {ino} {p}")?;
    }
    for &ino in &inos {
        let i = img.inode(ino)?;
        if i.is_reg() {
            let data = img.read_file(ino, &i)?;
            if content.get(&ino) != Some(&data) {
                return Err(format!("inode {ino} does not read back as written").into());
            }
            writeln!(m, "data {ino} {}", sha256_hex(&data))?;
        } else if i.mode & S_IFMT == S_IFLNK {
            writeln!(m, "target {ino} {}", String::from_utf8(img.read_file(ino, &i)?)?)?;
        }
    }
    let chunks: HashMap<u32, Vec<Vec<f32>>> = HashMap::from([
        (one, v_one.clone()),
        (three, vec![v_three[0].clone(), v_replace[0].clone(), v_three[2].clone()]),
        (seven, v_seven.clone()),
        (leaf, v_leaf.clone()),
    ]);
    for &ino in &inos {
        let i = img.inode(ino)?;
        if !i.is_reg() {
            continue;
        }
        let slots = img.vec_slots(ino, &i)?;
        let s: String = slots.iter().map(|s| format!(" {s}")).collect();
        writeln!(m, "slots {ino}{s}")?;
        let want = chunks.get(&ino).map_or(0, Vec::len);
        if slots.len() != want {
            return Err(format!("inode {ino} has {} chunks, not {want}", slots.len()).into());
        }
        for (c, v) in chunks.get(&ino).into_iter().flatten().enumerate() {
            writeln!(m, "chunk {ino} {c} {} {}", hex_words(v), decimals(v))?;
        }
    }
    for (slot, ino, chunk, v) in &tombstones {
        writeln!(m, "tombstone {slot} {ino} {chunk} {}", hex_words(v))?;
    }
    for (qi, ((q, k), hits)) in queries.iter().zip(&results).enumerate() {
        writeln!(m, "query {qi} {k} {EF} {} {}", hex_words(q), decimals(q))?;
        for (rank, hit) in hits.iter().enumerate() {
            let d = hit.distance();
            let path = hit_paths.get(&hit.ino).ok_or("a hit without a path")?;
            writeln!(m, "hit {qi} {} {} {} {} {:08x} {d} {path}", rank + 1, hit.ino, hit.chunk, hit.slot, d.to_bits())?;
        }
    }

    let mut gz: GzEncoder<Vec<u8>> = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
    gz.write_all(&raw)?;
    let gz = gz.finish()?;
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("v1.img.gz"), &gz)?;
    std::fs::write(out_dir.join("v1.manifest"), m)?;
    eprintln!(
        "wrote {} ({} bytes, {} raw) and v1.manifest: {} paths, {} inodes, header {h:?}",
        out_dir.join("v1.img.gz").display(),
        gz.len(),
        raw.len(),
        paths.len(),
        inos.len()
    );
    Ok(())
}

const MANIFEST_HEAD: &str = "\
# What the frozen image v1.img.gz (on-disk format v1) holds. Made once by
# image/examples/make_frozen_image.rs; checked by image/tests/frozen_v1.rs (the image crate) and
# tests/guest/060-frozen-v1.sh (the kernel, vexctl, fsck.vexfs). Never regenerate: see README.md.
# One item per line, fields separated by one space, '#' starts a comment line.
#
# image RAW_BYTES RAW_SHA256                 the uncompressed image
# sb FIELD VALUE                             a superblock field (label: NUL padding dropped)
# hnsw FIELD VALUE                           the HNSW header (entry slot, entry_level, live, deleted)
# inode INO TYPE MODE UID GID LINKS SIZE BLOCKS ATIME MTIME CTIME
#     every inode in use; TYPE dir|file|symlink; MODE octal with the type bits; SIZE bytes;
#     BLOCKS 4 KiB blocks held (data, extent and vector-id blocks); times SECONDS.NANOSECONDS
# path INO PATH                              every name reachable from the root, the root is /
# data INO SHA256                            sha256 of a regular file's content (holes read as 0)
# target INO TARGET                          a symlink's target
# slots INO SLOT...                          the vector slot of each chunk of a regular file
# chunk INO CHUNK BITS DECIMALS              an embedding: BITS the 8 float32 bit patterns (hex),
#     DECIMALS the same values as Rust prints them (vexctl get), both comma-separated
# tombstone SLOT INO CHUNK BITS              a removed vector left in the graph, marked deleted
# query Q K EF BITS DECIMALS                 a search (vexctl search --row Q -k K --ef EF)
# hit Q RANK INO CHUNK SLOT DIST_BITS DISTANCE PATH
#     its results, nearest first: squared l2 distance, exact; PATH as vexctl search names it
";
