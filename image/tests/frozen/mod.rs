//! What the frozen-image tests share (`frozen_v1.rs`, `frozen_v2.rs`, `frozen_v3.rs`): the
//! committed image and manifest of a format version, and [`verify`], which checks every manifest
//! item against the image and returns every difference.
//!
//! A manifest describes the filesystem as a reader sees it after the journal's replay (v1's
//! journal is always clean: nothing to replay); its `journal` and `txn` items describe the log
//! before the replay. The replay is the core's (`vexfs_core::journal::recover`), on a copy.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::PathBuf;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use vexfs_core::extent_tree::node_depth;
use vexfs_core::format::dir::DT_DIR;
use vexfs_core::format::inode::{
    Inode, INODE_FLAG_INDEX, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};
use vexfs_core::format::superblock::{Metric, Region, Superblock, ROOT_INO};
use vexfs_core::format::vector::{
    HnswGeometry, HnswHeader, Level0Head, MapEntry, NODE_DELETED, NODE_IN_GRAPH, NODE_PENDING,
};
use vexfs_core::format::{bit_test, BLOCK_SIZE};
use vexfs_image::fsck::{self, Mode};
use vexfs_image::journal::{read_log, recover};
use vexfs_image::vectors::{file_paths, Hit, MapDevice, Searcher};
use vexfs_image::writer::Writer;
use vexfs_image::{Image, MemDevice};

/// One search result as a `hit` line holds it: rank, inode, chunk, slot, distance bits, path.
pub type Answer = (u32, u64, u32, u32, u32, String);

fn images_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/images")
}

/// The committed manifest and the decompressed committed image of format `version`.
pub fn committed(version: u32) -> (String, Vec<u8>) {
    committed_named(&format!("v{version}"))
}

/// The committed manifest `NAME.manifest` and the decompressed committed image `NAME.img.gz`
/// (`v3-dirindex`: a format version with a feature).
pub fn committed_named(name: &str) -> (String, Vec<u8>) {
    let dir = images_dir();
    let manifest = std::fs::read_to_string(dir.join(format!("{name}.manifest"))).unwrap();
    let gz = std::fs::read(dir.join(format!("{name}.img.gz"))).unwrap();
    let mut raw = Vec::new();
    GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
    (manifest, raw)
}

/// `raw` with its journal replayed by the core's recovery (a copy), or why it cannot be.
pub fn replayed(raw: &[u8]) -> Result<Vec<u8>, String> {
    let img = Image::open(MemDevice { bytes: raw.to_vec() }).map_err(|e| e.to_string())?;
    let sb = img.sb().clone();
    let mut dev = img.into_device();
    recover(&mut dev, &sb).map_err(|e| format!("replaying the journal: {e}"))?;
    Ok(dev.bytes)
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// `8` hex words, comma-separated, as float32 bit patterns.
fn parse_bits(s: &str) -> Option<Vec<u32>> {
    s.split(',').map(|w| u32::from_str_radix(w, 16).ok()).collect()
}

fn type_name(mode: u16) -> &'static str {
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

/// A device number as an `rdev` item holds it, `MAJOR:MINOR` (decimal), from the inode's
/// `rdev` in the kernel's `new_encode_dev` layout (minor bits 0-7, major bits 8-19, minor bits
/// 8-19 at bits 20-31).
fn dev_name(rdev: u32) -> String {
    format!("{}:{}", (rdev & 0xfff00) >> 8, (rdev & 0xff) | ((rdev >> 12) & 0xfff00))
}

/// The manifest's `inode` line fields (after `inode INO`) as this image's inode gives them.
fn inode_fields(i: &Inode) -> String {
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

fn sb_field(sb: &Superblock, name: &str) -> Option<String> {
    Some(match name {
        "format_version" => sb.format_version.to_string(),
        "feature_incompat" => sb.feature_incompat.to_string(),
        "state" => sb.state.to_string(),
        "uuid" => sb.uuid.iter().map(|b| format!("{b:02x}")).collect(),
        "label" => sb.label_str().to_string(),
        "block_count" => sb.block_count.to_string(),
        "inode_count" => sb.inode_count.to_string(),
        "free_blocks" => sb.free_blocks.to_string(),
        "free_inodes" => sb.free_inodes.to_string(),
        "mkfs_time" => sb.mkfs_time.to_string(),
        "write_time" => sb.write_time.to_string(),
        "journal_blocks" => sb.region(Region::Journal).blocks.to_string(),
        "dim" => sb.vec_dim.to_string(),
        "metric" => {
            Metric::from_u32(sb.vec_metric).map_or_else(|| format!("unknown {}", sb.vec_metric), |m| m.name().into())
        }
        "vec_capacity" => sb.vec_capacity.to_string(),
        "vec_stride" => sb.vec_stride.to_string(),
        "hnsw_m" => sb.hnsw_m.to_string(),
        "hnsw_ef_construction" => sb.hnsw_ef_construction.to_string(),
        "hnsw_max_level" => sb.hnsw_max_level.to_string(),
        "sq8_shift" => sb.sq8_shift.to_string(),
        "pq_m" => sb.pq_m.to_string(),
        "hnsw_seed" => sb.hnsw_seed.to_string(),
        _ => return None,
    })
}

/// Every path reachable from the root (the root is `/`) and its inode.
fn walk(img: &Image<MemDevice>, bad: &mut Vec<String>) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::from([("/".to_string(), ROOT_INO)]);
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = match img.inode(dir).and_then(|i| img.read_dir(dir, &i)) {
            Ok(e) => e,
            Err(e) => {
                bad.push(format!("reading directory {dir}: {e}"));
                continue;
            }
        };
        for e in entries {
            let p = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
            if e.file_type == DT_DIR {
                stack.push((e.ino, p.clone()));
            }
            out.insert(p, e.ino);
        }
    }
    out
}

/// Inodes in use by the inode bitmap (bit `i` is inode `i + 1`).
fn inodes_in_use(img: &Image<MemDevice>) -> Option<BTreeSet<u32>> {
    let bits = img.read_region(Region::InodeBitmap).ok()?;
    Some((0..img.sb().inode_count as usize).filter(|&i| bit_test(&bits, i)).map(|i| i as u32 + 1).collect())
}

/// The float32 bits of vector slot `slot`, read from the vector data region where
/// `HnswGeometry::vector_pos` puts it (packed at `slot * vec_stride`, or in its node record).
fn slot_vector(img: &Image<MemDevice>, slot: u32) -> Option<Vec<u32>> {
    let sb = img.sb();
    let (start, off) = HnswGeometry::new(sb).vector_pos(slot);
    let mut out = Vec::new();
    for i in 0..sb.vec_dim as u64 {
        let pos = off as u64 + 4 * i;
        let b = img.read_block(start + pos / BLOCK_SIZE as u64).ok()?;
        let o = (pos % BLOCK_SIZE as u64) as usize;
        out.push(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    }
    Some(out)
}

fn level0_head(img: &Image<MemDevice>, slot: u32) -> Option<Level0Head> {
    let (blk, off) = HnswGeometry::new(img.sb()).level0_pos(slot);
    Level0Head::decode(img.read_block(blk).ok()?.get(off..)?).ok()
}

fn map_entry(img: &Image<MemDevice>, slot: u32) -> Option<Option<MapEntry>> {
    let off = slot as u64 * 16;
    let b = img.read_block(img.sb().region(Region::VecMap).start + off / BLOCK_SIZE as u64).ok()?;
    MapEntry::decode(slot, b.get((off % BLOCK_SIZE as u64) as usize..)?).ok()
}

/// The fields of a `tree` item (after `tree INO`) as this image gives them: the depth of inode
/// `ino`'s extent tree root (`-` without a tree), its node blocks and its extents (inline ones
/// included), read through `Image::extent_nodes` and `Image::extents` (every node checked).
fn tree_fields(img: &Image<MemDevice>, ino: u32) -> Result<String, String> {
    let i = img.inode(ino).map_err(|e| e.to_string())?;
    let nodes = img.extent_nodes(ino, &i).map_err(|e| e.to_string())?;
    let extents = img.extents(ino, &i).map_err(|e| e.to_string())?;
    let depth = if i.extent_block == 0 {
        "-".to_string()
    } else {
        let root = img.read_block(i.extent_block).map_err(|e| e.to_string())?;
        node_depth(&root[..]).map_err(|e| e.to_string())?.to_string()
    };
    if nodes.first().is_some_and(|&n| n != i.extent_block) {
        return Err(format!("the first node is block {}, the root is {}", nodes[0], i.extent_block));
    }
    Ok(format!("{depth} {} {}", nodes.len(), extents.len()))
}

/// The `xattr` items (after `xattr INO`) of inode `ino` as this image gives them:
/// `NAMESPACE.NAME HEX` per attribute of its xattr block, in block order, read through
/// `Image::xattrs` (the block checked).
fn xattr_items(img: &Image<MemDevice>, ino: u32) -> Result<Vec<String>, String> {
    let i = img.inode(ino).map_err(|e| e.to_string())?;
    let attrs = img.xattrs(ino, &i).map_err(|e| e.to_string())?;
    Ok(attrs
        .into_iter()
        .map(|(index, name, value)| {
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            let prefix = vexfs_core::format::xattr::prefix(index).unwrap_or("?");
            format!("{prefix}{} {hex}", String::from_utf8_lossy(&name))
        })
        .collect())
}

/// The fields of a `dirindex` item (after `dirindex INO`) as this image gives them: the seed of
/// indexed directory `ino` (hex), its buckets per depth (`DEPTH:COUNT` for each depth that has
/// any, comma-separated, shallowest first), its buckets, its entries and the sha256 of its
/// names in key order, each followed by a newline; read through `Image::dir_index_header`,
/// `Image::dir_blocks` (the layout checked against the header) and `Image::read_dir` (every
/// entry checked in its bucket).
fn dirindex_fields(img: &Image<MemDevice>, ino: u32) -> Result<String, String> {
    let i = img.inode(ino).map_err(|e| e.to_string())?;
    let (_, h) = img.dir_index_header(ino, &i).map_err(|e| e.to_string())?.ok_or("not an indexed directory")?;
    let seed: String = h.seed.iter().map(|b| format!("{b:02x}")).collect();
    let depths: Vec<String> = h.depths().map(|d| format!("{d}:{}", h.leaves[d as usize])).collect();
    let buckets = img.dir_blocks(ino, &i).map_err(|e| e.to_string())?.len();
    let entries = img.read_dir(ino, &i).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    for e in &entries {
        names.extend_from_slice(&e.name);
        names.push(b'\n');
    }
    Ok(format!("{seed} {} {buckets} {} {}", depths.join(","), entries.len(), sha256_hex(&names)))
}

/// Every difference between `raw` (an uncompressed image of format `version`) and `manifest`,
/// one message each; empty when the image holds exactly what the manifest says. `journal` and
/// `txn` items are checked on `raw`, every other item after the journal's replay.
pub fn verify(manifest: &str, raw: &[u8], version: u32) -> Vec<String> {
    let mut bad = Vec::new();
    macro_rules! expect {
        ($got:expr, $want:expr, $($what:tt)+) => {{
            let (g, w) = (&$got, &$want);
            if g != w {
                bad.push(format!("{}: image has {:?}, manifest says {:?}", format!($($what)+), g, w));
            }
        }};
    }
    let lines: Vec<Vec<&str>> = manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(' ').collect())
        .collect();
    let rest = |f: &[&str], from: usize| f.get(from..).map(|r| r.join(" ")).unwrap_or_default();

    // The log before the replay.
    let raw_img = match Image::open(MemDevice { bytes: raw.to_vec() }) {
        Ok(i) => i,
        Err(e) => return vec![format!("the image does not open: {e}")],
    };
    let log = match read_log(raw_img.device(), raw_img.sb()) {
        Ok(l) => l,
        Err(e) => return vec![format!("the journal cannot be read: {e}")],
    };
    let replayed = match replayed(raw) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let img = Image::open(MemDevice { bytes: replayed.clone() }).unwrap();
    let sb = img.sb().clone();
    expect!(sb.format_version, version, "superblock format version");
    let paths = walk(&img, &mut bad);
    let reached: BTreeSet<u32> = paths.values().copied().collect();
    let in_use = inodes_in_use(&img).unwrap_or_default();
    let header = img
        .read_block(sb.region(Region::Hnsw).start)
        .ok()
        .and_then(|b| HnswHeader::decode(&b[..], sb.region(Region::Hnsw).start).ok());
    let slots_of = |ino: u32| img.inode(ino).and_then(|i| img.vec_slots(ino, &i)).ok();

    let mut manifest_paths = BTreeMap::new();
    let (mut inode_lines, mut orphan_lines) = (BTreeSet::new(), BTreeSet::new());
    let (mut data_lines, mut target_lines, mut slots_lines) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let (mut tree_lines, mut rdev_lines, mut dirindex_lines) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut chunk_lines: HashMap<u32, usize> = HashMap::new();
    let mut xattr_lines: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut chunk_slots: Vec<u32> = Vec::new();
    let mut pending: BTreeSet<u32> = BTreeSet::new();
    let mut txns = Vec::new();
    let mut tombstones = 0u32;
    let mut queries: BTreeMap<u32, (Vec<f32>, usize, usize)> = BTreeMap::new();
    let mut hits: BTreeMap<u32, Vec<Answer>> = BTreeMap::new();
    // Pending slots first: a chunk's expected flags depend on them.
    for f in &lines {
        if f.first() == Some(&"pending") {
            pending.insert(f.get(1).and_then(|s| s.parse().ok()).unwrap_or(u32::MAX));
        }
    }
    for f in &lines {
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
        let ino = num(1).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
        match f.first().copied() {
            Some("image") => {
                expect!(Some(raw.len() as u64), num(1), "image size");
                expect!(sha256_hex(raw), f.get(2).copied().unwrap_or("").to_string(), "image sha256");
            }
            Some("journal") => {
                let name = f.get(1).copied().unwrap_or("");
                let js = log.superblock.as_ref().ok();
                let got = match name {
                    "version" => log.version.map(u64::from),
                    "clean" => Some(u64::from(log.clean())),
                    "head" => js.map(|j| j.head),
                    "checkpoint_lsn" => js.map(|j| j.checkpoint_lsn),
                    "transactions" => Some(log.transactions_to_replay()),
                    "images" => Some(log.images_to_replay()),
                    _ => {
                        bad.push(format!("manifest names an unknown journal field {name}"));
                        continue;
                    }
                };
                expect!(got, num(2), "journal {name} (before replay)");
            }
            Some("txn") => {
                txns.push(rest(f, 1));
            }
            Some("sb") => {
                let name = f.get(1).copied().unwrap_or("");
                let want = rest(f, 2);
                match sb_field(&sb, name) {
                    Some(got) => expect!(got, want, "superblock {name}"),
                    None => bad.push(format!("manifest names an unknown superblock field {name}")),
                }
            }
            Some("hnsw") => {
                let got = header.map(|h| match f.get(1).copied() {
                    Some("entry") => h.entry as u64,
                    Some("entry_level") => h.entry_level as u64,
                    Some("live") => h.live as u64,
                    Some("deleted") => h.deleted as u64,
                    Some("pending") => h.pending as u64,
                    _ => u64::MAX,
                });
                expect!(got, num(2), "hnsw header {}", f.get(1).unwrap_or(&""));
            }
            Some("inode") => {
                inode_lines.insert(ino);
                let got = img.inode(ino).map(|i| inode_fields(&i)).unwrap_or_else(|e| e.to_string());
                expect!(got, rest(f, 2), "inode {ino}");
            }
            Some("tree") => {
                tree_lines.insert(ino);
                expect!(tree_fields(&img, ino), Ok::<_, String>(rest(f, 2)), "extent tree of inode {ino}");
            }
            Some("dirindex") => {
                dirindex_lines.insert(ino);
                expect!(dirindex_fields(&img, ino), Ok::<_, String>(rest(f, 2)), "directory index of inode {ino}");
            }
            Some("rdev") => {
                rdev_lines.insert(ino);
                let got = img.inode(ino).map(|i| dev_name(i.rdev)).unwrap_or_else(|e| e.to_string());
                expect!(got, rest(f, 2), "device number (rdev) of inode {ino}");
            }
            Some("xattr") => {
                xattr_lines.entry(ino).or_default().push(rest(f, 2));
            }
            Some("orphan") => {
                orphan_lines.insert(ino);
                expect!(img.inode(ino).map(|i| i.links).ok(), Some(0), "link count of orphan {ino}");
            }
            Some("path") => {
                manifest_paths.insert(rest(f, 2), ino);
            }
            Some("data") => {
                data_lines.insert(ino);
                let got = img.inode(ino).and_then(|i| img.read_file(ino, &i)).map(|d| sha256_hex(&d));
                expect!(got.unwrap_or_else(|e| e.to_string()), rest(f, 2), "sha256 of inode {ino}");
            }
            Some("target") => {
                target_lines.insert(ino);
                let got = img.inode(ino).and_then(|i| img.read_file(ino, &i));
                let got = got.map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_else(|e| e.to_string());
                expect!(got, rest(f, 2), "symlink target of inode {ino}");
            }
            Some("slots") => {
                slots_lines.insert(ino);
                let want: Option<Vec<u32>> = f.get(2..).unwrap_or(&[]).iter().map(|s| s.parse().ok()).collect();
                expect!(slots_of(ino), want, "chunk list of inode {ino}");
            }
            Some("chunk") => {
                let chunk = num(2).unwrap_or(u64::MAX) as u32;
                *chunk_lines.entry(ino).or_default() += 1;
                let want = f.get(3).and_then(|s| parse_bits(s));
                let slot = slots_of(ino).and_then(|s| s.get(chunk as usize).copied());
                let Some(slot) = slot else {
                    bad.push(format!("inode {ino} has no chunk {chunk}"));
                    continue;
                };
                chunk_slots.push(slot);
                expect!(slot_vector(&img, slot), want, "vector of inode {ino} chunk {chunk} (slot {slot})");
                let printed = want.map(|w| w.iter().map(|&b| f32::from_bits(b).to_string()).collect::<Vec<_>>());
                expect!(printed.map(|p| p.join(",")), f.get(4).map(|s| s.to_string()), "decimals of {ino}/{chunk}");
                expect!(map_entry(&img, slot), Some(Some(MapEntry { ino: ino as u64, chunk })), "owner of slot {slot}");
                let flags = if pending.contains(&slot) { NODE_PENDING } else { NODE_IN_GRAPH };
                expect!(level0_head(&img, slot).map(|h| h.flags), Some(flags), "flags of slot {slot}");
            }
            Some("pending") => {}
            Some("tombstone") => {
                tombstones += 1;
                let slot = ino;
                let want = f.get(4).and_then(|s| parse_bits(s));
                expect!(slot_vector(&img, slot), want, "vector of tombstone slot {slot}");
                expect!(
                    level0_head(&img, slot).map(|h| h.flags),
                    Some(NODE_IN_GRAPH | NODE_DELETED),
                    "flags of tombstone slot {slot}"
                );
            }
            Some("query") => {
                let bits = f.get(4).and_then(|s| parse_bits(s)).unwrap_or_default();
                let q: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
                let printed: Vec<String> = q.iter().map(f32::to_string).collect();
                expect!(printed.join(","), f.get(5).copied().unwrap_or("").to_string(), "decimals of query {ino}");
                let k = num(2).unwrap_or(0) as usize;
                let ef = num(3).unwrap_or(0) as usize;
                queries.insert(ino, (q, k, ef));
            }
            Some("hit") => {
                let b = f.get(6).and_then(|s| u32::from_str_radix(s, 16).ok()).unwrap_or(u32::MAX);
                expect!(
                    f32::from_bits(b).to_string(),
                    f.get(7).copied().unwrap_or("").to_string(),
                    "printed distance of hit {} of query {ino}",
                    f.get(2).unwrap_or(&"")
                );
                hits.entry(ino).or_default().push((
                    num(2).unwrap_or(0) as u32,
                    num(3).unwrap_or(0),
                    num(4).unwrap_or(0) as u32,
                    num(5).unwrap_or(0) as u32,
                    b,
                    rest(f, 8),
                ));
            }
            other => bad.push(format!("unknown manifest item {other:?}")),
        }
    }

    // The log's transactions, in order (none for a clean journal).
    let got_txns: Vec<String> = if log.clean() {
        Vec::new()
    } else {
        log.transactions
            .iter()
            .enumerate()
            .map(|(n, t)| format!("{} {} {} {} {}", n + 1, t.first_lsn, t.commit_lsn, t.images, t.commit_block))
            .collect()
    };
    expect!(got_txns, txns, "the journal's transactions (before replay)");

    // Completeness: the manifest covers the whole tree, every inode in use (the orphans are in
    // use and not reached), every file's content and chunk list, every live and pending vector
    // and every tombstone, every device's number; from v3 (extent trees, xattrs) every inode's
    // tree and attributes.
    expect!(paths, manifest_paths, "the tree (path -> inode)");
    expect!(in_use, inode_lines, "inodes in use");
    let orphans: BTreeSet<u32> = in_use.difference(&reached).copied().collect();
    expect!(orphans, orphan_lines, "orphans (inodes in use, not reachable)");
    let kind = |ino: &u32| img.inode(*ino).map(|i| i.mode & S_IFMT).unwrap_or(0);
    let files: BTreeSet<u32> = in_use.iter().copied().filter(|i| kind(i) == S_IFREG).collect();
    let links: BTreeSet<u32> = in_use.iter().copied().filter(|i| kind(i) == S_IFLNK).collect();
    expect!(files, data_lines, "regular files with a content hash");
    expect!(files, slots_lines, "regular files with a chunk list");
    expect!(links, target_lines, "symlinks with a target");
    // Every device has its number checked; the decoder refuses an rdev on any other inode.
    let devices: BTreeSet<u32> = in_use.iter().copied().filter(|i| matches!(kind(i), S_IFCHR | S_IFBLK)).collect();
    expect!(devices, rdev_lines, "devices with an rdev item");
    // Every indexed directory (the inode flag, on whatever inode) has its index checked.
    let flagged = |ino: &u32| img.inode(*ino).is_ok_and(|i| i.flags & INODE_FLAG_INDEX != 0);
    let indexed: BTreeSet<u32> = in_use.iter().copied().filter(flagged).collect();
    expect!(indexed, dirindex_lines, "indexed directories with a dirindex item");
    if version >= 3 {
        expect!(in_use, tree_lines, "inodes with a tree item");
        // Every attribute of every inode in use, exactly and in block order (v3 added them).
        for &ino in &in_use {
            let want = xattr_lines.remove(&ino).unwrap_or_default();
            expect!(xattr_items(&img, ino), Ok::<_, String>(want), "extended attributes of inode {ino}");
        }
    }
    expect!(xattr_lines.keys().collect::<Vec<_>>(), Vec::<&u32>::new(), "xattr items of inodes not in use");
    let counts: HashMap<u32, usize> =
        files.iter().filter_map(|&i| Some((i, slots_of(i)?.len()))).filter(|x| x.1 > 0).collect();
    expect!(counts, chunk_lines, "chunks per file");
    let chunk_pending: BTreeSet<u32> = chunk_slots.iter().copied().filter(|s| pending.contains(s)).collect();
    expect!(chunk_pending, pending, "pending slots that are a chunk's");
    let total = chunk_lines.values().sum::<usize>();
    expect!(header.map(|h| h.live as usize), Some(total - pending.len()), "live vectors (in the graph)");
    expect!(header.map(|h| h.pending as usize), Some(pending.len()), "pending vectors");
    expect!(header.map(|h| h.deleted), Some(tombstones), "tombstones");

    // The searches, through the writer's cached index and through the read-only mapping.
    let names = file_paths(&img).unwrap_or_default();
    let as_manifest = |r: Vec<Hit>| -> Vec<Answer> {
        r.iter()
            .enumerate()
            .map(|(n, h)| {
                let path = names.get(&h.ino).cloned().unwrap_or_default();
                (n as u32 + 1, h.ino, h.chunk, h.slot, h.distance().to_bits(), path)
            })
            .collect()
    };
    let mut writer = Image::open(MemDevice { bytes: replayed.clone() }).ok().and_then(|i| Writer::new(i).ok());
    let mut searcher = MapDevice::from_bytes(&replayed).ok().and_then(|d| Searcher::new(Image::open(d).ok()?, 64).ok());
    expect!(queries.keys().collect::<Vec<_>>(), hits.keys().collect::<Vec<_>>(), "queries with answers");
    for (q, (v, k, ef)) in &queries {
        let want = hits.get(q).cloned().unwrap_or_default();
        let got = match writer.as_mut() {
            Some(w) => w.search(v, *k, *ef).map(as_manifest).map_err(|e| e.to_string()),
            None => Err("no writer".into()),
        };
        expect!(got, Ok::<_, String>(want.clone()), "answers to query {q} (offline writer)");
        let got = match searcher.as_mut() {
            Some(s) => s.search(v, *k, *ef).map(as_manifest).map_err(|e| e.to_string()),
            None => Err("no searcher".into()),
        };
        expect!(got, Ok::<_, String>(want), "answers to query {q} (vexctl search-image's searcher)");
    }

    // fsck: clean as committed (it replays into memory) and after the replay.
    for (what, bytes) in [("as committed", raw), ("after the replay", &replayed[..])] {
        match fsck::run(MemDevice { bytes: bytes.to_vec() }, Mode::Check) {
            Ok((out, _)) => {
                expect!(out.report.problems.len(), 0, "fsck problems {what} {:?}", out.report.problems);
                expect!(out.exit_code(), 0, "fsck exit code {what}");
                expect!(out.report.inodes_used, inode_lines.len() as u64, "inodes in use (fsck {what})");
                for o in &orphan_lines {
                    let note = format!("inode {o}: orphan");
                    expect!(out.notes.iter().any(|n| n.contains(&note)), true, "fsck {what} notes orphan {o}");
                }
            }
            Err(e) => bad.push(format!("fsck could not run {what}: {e}")),
        }
    }
    bad
}

/// `manifest` with the one line starting with `prefix` replaced by `line` (or removed if empty).
pub fn edit(manifest: &str, prefix: &str, line: &str) -> String {
    let n = manifest.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(n, 1, "{prefix:?} must select exactly one manifest line");
    let mut out = String::new();
    for l in manifest.lines() {
        let l = if l.starts_with(prefix) { line } else { l };
        if !l.is_empty() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

pub fn assert_caught(bad: &[String], needle: &str, case: &str) {
    assert!(bad.iter().any(|b| b.contains(needle)), "{case}: no difference mentions {needle:?}: {bad:#?}");
}

/// Checks that each `(case, prefix, replacement, needle)` edit of `manifest` is caught by
/// [`verify`] with a difference mentioning `needle`.
pub fn each_edit_caught(manifest: &str, raw: &[u8], version: u32, cases: Vec<(&str, String, String, &str)>) {
    for (case, prefix, replacement, needle) in cases {
        let bad = verify(&edit(manifest, &prefix, &replacement), raw, version);
        assert_caught(&bad, needle, case);
    }
}
