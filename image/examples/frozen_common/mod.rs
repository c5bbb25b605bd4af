//! What the frozen-image generators (`make_frozen_image*.rs`) share: the deterministic
//! vectors and their exact distances, the manifest's number formats and lines, the walk that
//! lists an image's paths, the checked searches, the first step that makes a v3 image's writer
//! and the last steps that fix an image's times and write it out. Each generator includes it with `#[path = "frozen_common/mod.rs"] mod
//! common;` (a directory without a `main.rs` is not an example of its own); each uses part of
//! it. The v1 and v2 generators, written for formats the writer no longer makes, use only the
//! helpers that do not depend on the format.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use vexfs_core::embed::{min_journal_blocks, Hit};
use vexfs_core::extent_tree::node_depth;
use vexfs_core::format::dir::DT_DIR;
use vexfs_core::format::inode::{Inode, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Region, Superblock, ROOT_INO};
use vexfs_core::format::vector::HnswHeader;
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck::{self, Mode};
use vexfs_image::mkfs::{self, FormatOpts};
use vexfs_image::writer::Writer;
use vexfs_image::{Image, MemDevice};

/// Errors are boxed.
pub type Res<T> = Result<T, Box<dyn Error>>;

/// Dimension of every frozen image's vectors.
pub const DIM: usize = 8;
/// `ef` of the recorded searches.
pub const EF: usize = 64;

/// A xorshift generator of vectors of [`DIM`] components, each a multiple of 1/4 in -2..=2, so
/// that every l2 distance is exact on any CPU.
pub struct Vecs(pub u32);

impl Vecs {
    /// The next vector.
    pub fn next(&mut self) -> Vec<f32> {
        (0..DIM)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 17;
                self.0 ^= self.0 << 5;
                ((self.0 % 17) as i32 - 8) as f32 / 4.0
            })
            .collect()
    }

    /// The next `n` vectors.
    pub fn take(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// Squared l2 distance, exact for these vectors (every term a multiple of 1/16, sums < 2^20).
pub fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// A vector's components as their bit patterns (8 hex digits each), comma-separated.
pub fn hex_words(v: &[f32]) -> String {
    v.iter().map(|x| format!("{:08x}", x.to_bits())).collect::<Vec<_>>().join(",")
}

/// A vector's components in decimal, comma-separated.
pub fn decimals(v: &[f32]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// The SHA-256 of `b`, in hex.
pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// The manifest's name of an inode's type.
pub fn type_name(mode: u16) -> &'static str {
    match mode & S_IFMT {
        S_IFDIR => "dir",
        S_IFREG => "file",
        S_IFLNK => "symlink",
        S_IFIFO => "fifo",
        S_IFSOCK => "socket",
        S_IFCHR => "chrdev",
        S_IFBLK => "blkdev",
        _ => "other",
    }
}

/// Every path reachable from the root (the root is `/`), with its inode, sorted by path.
pub fn walk(img: &Image<MemDevice>) -> Res<BTreeMap<String, u32>> {
    let mut out = BTreeMap::from([("/".to_string(), ROOT_INO)]);
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for e in img.read_dir(dir, &img.inode(dir)?)? {
            let p = format!("{prefix}/{}", String::from_utf8(e.name)?);
            if e.file_type == DT_DIR {
                stack.push((e.ino, p.clone()));
            }
            out.insert(p, e.ino);
        }
    }
    Ok(out)
}

/// The `tree` item of inode `ino`: the root's depth (`-` without a tree), its node blocks and
/// its extents (inline ones included).
pub fn tree_fields(img: &Image<MemDevice>, ino: u32) -> Res<(String, usize, usize)> {
    let i = img.inode(ino)?;
    let nodes = img.extent_nodes(ino, &i)?;
    let extents = img.extents(ino, &i)?;
    let depth = if i.extent_block == 0 {
        "-".to_string()
    } else {
        node_depth(&img.read_block(i.extent_block)?[..]).map_err(|e| format!("inode {ino}: {e:?}"))?.to_string()
    };
    Ok((depth, nodes.len(), extents.len()))
}

/// Runs each query `(vector, k)` through the writer's index and checks it against brute force
/// over `chunks` (inode -> its chunks' vectors): the same `k` nearest, in order, and no tied
/// distances (the order would then be the index's choice). Returns each query's hits.
pub fn checked_search(
    w: &mut Writer<MemDevice>,
    chunks: &HashMap<u32, Vec<Vec<f32>>>,
    queries: &[(Vec<f32>, usize)],
) -> Res<Vec<Vec<Hit>>> {
    let mut live: Vec<(u32, u32, Vec<f32>)> = Vec::new();
    for (ino, vs) in chunks {
        for (c, v) in vs.iter().enumerate() {
            live.push((*ino, c as u32, v.clone()));
        }
    }
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
    Ok(results)
}

/// A settled image: its raw bytes, every path with its inode, the inodes in use (sorted).
pub type Settled = (Vec<u8>, BTreeMap<String, u32>, Vec<u32>);

/// A committed image made reproducible: every inode's times fixed from `t0` (inode `i`: mtime
/// `t0 + 3600 i` s and `1,000,000 i + 9` ns, ctime and atime 1 and 2 later), the owners in
/// `owners` set, the superblock's write time `t0 + 5`, and the journal's record blocks zeroed
/// (the writer's syncs logged inode blocks stamped with the current time, stale now: the
/// journal is clean, nothing reads them; its superblock stays as the writer left it); then
/// `fsck -n` must find nothing. Returns the raw bytes, the paths and the inodes in use.
pub fn settle(mut img: Image<MemDevice>, t0: i64, owners: &HashMap<u32, (u32, u32)>) -> Res<Settled> {
    let paths = walk(&img)?;
    let mut inos: Vec<u32> = paths.values().copied().collect();
    inos.sort_unstable();
    inos.dedup();
    for &ino in &inos {
        let mut i: Inode = img.inode(ino)?;
        let t = t0 + 3600 * ino as i64;
        let ns = 1_000_000 * ino + 9;
        (i.mtime_sec, i.mtime_nsec) = (t, ns);
        (i.ctime_sec, i.ctime_nsec) = (t + 1, ns + 1);
        (i.atime_sec, i.atime_nsec) = (t + 2, ns + 2);
        if let Some(&(uid, gid)) = owners.get(&ino) {
            (i.uid, i.gid) = (uid, gid);
        }
        img.write_inode(ino, &i)?;
    }
    let mut sb = img.sb().clone();
    sb.write_time = (t0 + 5) as u64;
    let mut b = [0u8; BLOCK_SIZE];
    sb.encode(&mut b);
    img.write_block(0, &b)?;
    let jr = sb.region(Region::Journal);
    let mut raw = img.into_device().bytes;
    raw[(jr.start as usize + 1) * BLOCK_SIZE..(jr.start + jr.blocks) as usize * BLOCK_SIZE].fill(0);
    let (out, _) = fsck::run(MemDevice { bytes: raw.clone() }, Mode::Check)?;
    if !out.report.problems.is_empty() || !out.notes.is_empty() {
        return Err(format!("fsck: {:?} {:?}", out.report.problems, out.notes).into());
    }
    Ok((raw, paths, inos))
}

/// The manifest's `image`, `sb` and `hnsw` lines (format v3).
pub fn head_lines(m: &mut String, raw: &[u8], sb: &Superblock, h: &HnswHeader) -> Res<()> {
    writeln!(m, "image {} {}", raw.len(), sha256_hex(raw))?;
    writeln!(m, "sb format_version {}", sb.format_version)?;
    writeln!(m, "sb feature_incompat {}", sb.feature_incompat)?;
    writeln!(m, "sb uuid {}", sb.uuid.iter().map(|b| format!("{b:02x}")).collect::<String>())?;
    writeln!(m, "sb label {}", sb.label_str())?;
    writeln!(m, "sb block_count {}", sb.block_count)?;
    writeln!(m, "sb inode_count {}", sb.inode_count)?;
    writeln!(m, "sb free_blocks {}", sb.free_blocks)?;
    writeln!(m, "sb free_inodes {}", sb.free_inodes)?;
    writeln!(m, "sb mkfs_time {}", sb.mkfs_time)?;
    writeln!(m, "sb write_time {}", sb.write_time)?;
    writeln!(m, "sb journal_blocks {}", sb.region(Region::Journal).blocks)?;
    writeln!(m, "sb dim {}", sb.vec_dim)?;
    writeln!(m, "sb metric l2")?;
    writeln!(m, "sb vec_capacity {}", sb.vec_capacity)?;
    writeln!(m, "sb vec_stride {}", sb.vec_stride)?;
    writeln!(m, "sb hnsw_m {}", sb.hnsw_m)?;
    writeln!(m, "sb hnsw_ef_construction {}", sb.hnsw_ef_construction)?;
    writeln!(m, "sb hnsw_max_level {}", sb.hnsw_max_level)?;
    writeln!(m, "sb hnsw_seed {}", sb.hnsw_seed)?;
    if sb.has_sq8() {
        writeln!(m, "sb sq8_shift {}", sb.sq8_shift)?;
    }
    if sb.has_pq() {
        writeln!(m, "sb pq_m {}", sb.pq_m)?;
    }
    writeln!(m, "hnsw entry {}", h.entry)?;
    writeln!(m, "hnsw entry_level {}", h.entry_level)?;
    writeln!(m, "hnsw live {}", h.live)?;
    writeln!(m, "hnsw deleted {}", h.deleted)?;
    Ok(())
}

/// The fields of a manifest's `inode` line after `inode INO` (every format): type, mode
/// (octal), uid, gid, links, size, blocks, then atime, mtime and ctime as `sec.nsec`.
pub fn inode_fields(i: &Inode) -> String {
    format!(
        "{} {:o} {} {} {} {} {} {}.{:09} {}.{:09} {}.{:09}",
        type_name(i.mode),
        i.mode,
        i.uid,
        i.gid,
        i.links,
        i.size,
        i.blocks,
        i.atime_sec,
        i.atime_nsec,
        i.mtime_sec,
        i.mtime_nsec,
        i.ctime_sec,
        i.ctime_nsec
    )
}

/// The manifest's `inode` lines, then its `tree` lines, of `inos` (format v3).
pub fn inode_lines(m: &mut String, img: &Image<MemDevice>, inos: &[u32]) -> Res<()> {
    for &ino in inos {
        writeln!(m, "inode {ino} {}", inode_fields(&img.inode(ino)?))?;
    }
    for &ino in inos {
        let (depth, nodes, extents) = tree_fields(img, ino)?;
        writeln!(m, "tree {ino} {depth} {nodes} {extents}")?;
    }
    Ok(())
}

/// What a v3 generator made, for the manifest's last lines.
pub struct Made<'a> {
    /// Every path, with its inode.
    pub paths: &'a BTreeMap<String, u32>,
    /// The inodes in use, sorted.
    pub inos: &'a [u32],
    /// Each regular file's contents as written.
    pub content: &'a HashMap<u32, Vec<u8>>,
    /// Each file's chunks' vectors as set.
    pub chunks: &'a HashMap<u32, Vec<Vec<f32>>>,
    /// The recorded queries `(vector, k)` and their hits.
    pub queries: &'a [(Vec<f32>, usize)],
    /// The hits of each query.
    pub results: &'a [Vec<Hit>],
}

/// The manifest's `path`, `data`, `target`, `slots`, `chunk`, `query` and `hit` lines
/// (format v3); every file must read back as written and hold the chunks set.
pub fn tail_lines(m: &mut String, img: &Image<MemDevice>, made: &Made<'_>) -> Res<()> {
    for (p, ino) in made.paths {
        writeln!(m, "path {ino} {p}")?;
    }
    for &ino in made.inos {
        let i = img.inode(ino)?;
        if i.is_reg() {
            let data = img.read_file(ino, &i)?;
            if made.content.get(&ino) != Some(&data) {
                return Err(format!("inode {ino} does not read back as written").into());
            }
            writeln!(m, "data {ino} {}", sha256_hex(&data))?;
        } else if i.mode & S_IFMT == S_IFLNK {
            writeln!(m, "target {ino} {}", String::from_utf8(img.read_file(ino, &i)?)?)?;
        }
    }
    for &ino in made.inos {
        let i = img.inode(ino)?;
        if !i.is_reg() {
            continue;
        }
        let slots = img.vec_slots(ino, &i)?;
        let s: String = slots.iter().map(|s| format!(" {s}")).collect();
        writeln!(m, "slots {ino}{s}")?;
        let want = made.chunks.get(&ino).map_or(0, Vec::len);
        if slots.len() != want {
            return Err(format!("inode {ino} has {} chunks, not {want}", slots.len()).into());
        }
        for (c, v) in made.chunks.get(&ino).into_iter().flatten().enumerate() {
            writeln!(m, "chunk {ino} {c} {} {}", hex_words(v), decimals(v))?;
        }
    }
    let hit_paths = vexfs_image::vectors::file_paths(img)?;
    for (qi, ((q, k), hits)) in made.queries.iter().zip(made.results).enumerate() {
        writeln!(m, "query {qi} {k} {EF} {} {}", hex_words(q), decimals(q))?;
        for (rank, hit) in hits.iter().enumerate() {
            let d = hit.distance();
            let path = hit_paths.get(&hit.ino).ok_or("a hit without a path")?;
            writeln!(m, "hit {qi} {} {} {} {} {:08x} {d} {path}", rank + 1, hit.ino, hit.chunk, hit.slot, d.to_bits())?;
        }
    }
    Ok(())
}

/// The offline writer on a new image of `p` (`dir_index`: with `FEATURE_INCOMPAT_DIR_INDEX`),
/// once its journal is known to hold what the kernel needs to mount it read-write
/// (`min_journal_blocks`). Errors: a journal too small, mkfs's, the writer's.
pub fn new_writer(p: &MkfsParams, dir_index: bool) -> Res<Writer<MemDevice>> {
    new_writer_with(p, FormatOpts { dir_index, ..Default::default() })
}

/// [`new_writer`] with the features of `opts` (SQ8 or PQ codes among them).
pub fn new_writer_with(p: &MkfsParams, opts: FormatOpts) -> Res<Writer<MemDevice>> {
    let mut dev = MemDevice::new(p.block_count);
    mkfs::format_with(&mut dev, p, false, opts)?;
    let img = Image::open(dev)?;
    let (have, min) = (img.sb().region(Region::Journal).blocks, min_journal_blocks(img.sb()));
    if have < min {
        return Err(format!("the journal needs at least {min} blocks for the kernel to mount it").into());
    }
    Ok(Writer::new(img)?)
}

/// Ends manifest `m` with [`tail_lines`] and writes it and `raw` as `STEM.*` ([`write_out`]),
/// saying what it holds (paths, inodes, the HNSW header `h`).
pub fn finish(
    mut m: String,
    img: &Image<MemDevice>,
    made: &Made<'_>,
    h: &HnswHeader,
    out_dir: &Path,
    stem: &str,
    raw: &[u8],
) -> Res<()> {
    tail_lines(&mut m, img, made)?;
    let what = format!("{} paths, {} inodes, header {h:?}", made.paths.len(), made.inos.len());
    write_out(out_dir, stem, raw, &m, &what)
}

/// Writes `STEM.img.gz` (gzip, mtime 0, best compression: the same bytes every run) and
/// `STEM.manifest` into `out_dir`, and says so on stderr.
pub fn write_out(out_dir: &Path, stem: &str, raw: &[u8], manifest: &str, what: &str) -> Res<()> {
    let mut gz: GzEncoder<Vec<u8>> = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
    gz.write_all(raw)?;
    let gz = gz.finish()?;
    std::fs::create_dir_all(out_dir)?;
    let img = out_dir.join(format!("{stem}.img.gz"));
    std::fs::write(&img, &gz)?;
    std::fs::write(out_dir.join(format!("{stem}.manifest")), manifest)?;
    eprintln!("wrote {} ({} bytes, {} raw) and {stem}.manifest: {what}", img.display(), gz.len(), raw.len());
    Ok(())
}
