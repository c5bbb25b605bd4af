//! The frozen image of on-disk format v1 (`tests/images/v1.img.gz`) reads exactly as its
//! manifest (`tests/images/v1.manifest`) says: superblock, HNSW header, every path and inode,
//! file contents, symlink targets, chunk lists, the bits of every embedding, the tombstones,
//! and the k-NN answers with their exact distances, through the offline writer's index and
//! through the read-only searcher of `vexctl search-image`; and fsck finds it clean.
//!
//! The committed bytes are read, never regenerated. [`verify`] collects every difference, so a
//! failure names all of them; the tests at the end tamper with the manifest and the image to
//! show that each kind of item is really checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::PathBuf;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use vexfs_core::format::dir::DT_DIR;
use vexfs_core::format::inode::{Inode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use vexfs_core::format::superblock::{Metric, Region, Superblock, FORMAT_VERSION, FORMAT_VERSION_V1, ROOT_INO};
use vexfs_core::format::vector::{HnswGeometry, HnswHeader, Level0Head, MapEntry, NODE_DELETED, NODE_IN_GRAPH};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck::{self, Mode};
use vexfs_image::vectors::{file_paths, Hit, MapDevice, Searcher};
use vexfs_image::writer::Writer;
use vexfs_image::{Image, MemDevice};

/// One search result as a `hit` line holds it: rank, inode, chunk, slot, distance bits, path.
type Answer = (u32, u64, u32, u32, u32, String);

fn images_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/images")
}

/// The committed manifest and the decompressed committed image.
fn committed() -> (String, Vec<u8>) {
    let dir = images_dir();
    let manifest = std::fs::read_to_string(dir.join("v1.manifest")).unwrap();
    let gz = std::fs::read(dir.join("v1.img.gz")).unwrap();
    let mut raw = Vec::new();
    GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
    (manifest, raw)
}

fn sha256_hex(b: &[u8]) -> String {
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
        _ => "other",
    }
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
        "uuid" => sb.uuid.iter().map(|b| format!("{b:02x}")).collect(),
        "label" => sb.label_str().to_string(),
        "block_count" => sb.block_count.to_string(),
        "inode_count" => sb.inode_count.to_string(),
        "free_blocks" => sb.free_blocks.to_string(),
        "free_inodes" => sb.free_inodes.to_string(),
        "mkfs_time" => sb.mkfs_time.to_string(),
        "dim" => sb.vec_dim.to_string(),
        "metric" => {
            Metric::from_u32(sb.vec_metric).map_or_else(|| format!("unknown {}", sb.vec_metric), |m| m.name().into())
        }
        "vec_capacity" => sb.vec_capacity.to_string(),
        "vec_stride" => sb.vec_stride.to_string(),
        "hnsw_m" => sb.hnsw_m.to_string(),
        "hnsw_ef_construction" => sb.hnsw_ef_construction.to_string(),
        "hnsw_max_level" => sb.hnsw_max_level.to_string(),
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

/// The float32 bits of vector slot `slot`, read from the vector data region.
fn slot_vector(img: &Image<MemDevice>, slot: u32) -> Option<Vec<u32>> {
    let sb = img.sb();
    let data = sb.region(Region::VecData);
    let mut out = Vec::new();
    for i in 0..sb.vec_dim as u64 {
        let pos = slot as u64 * sb.vec_stride as u64 + 4 * i;
        let b = img.read_block(data.start + pos / BLOCK_SIZE as u64).ok()?;
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

/// Every difference between `raw` (an uncompressed image) and `manifest`, one message each;
/// empty when the image holds exactly what the manifest says.
fn verify(manifest: &str, raw: &[u8]) -> Vec<String> {
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

    let img = match Image::open(MemDevice { bytes: raw.to_vec() }) {
        Ok(i) => i,
        Err(e) => return vec![format!("the image does not open: {e}")],
    };
    let sb = img.sb().clone();
    expect!(sb.format_version, FORMAT_VERSION_V1, "superblock format version");
    let paths = walk(&img, &mut bad);
    let reached: BTreeSet<u32> = paths.values().copied().collect();
    let header = img
        .read_block(sb.region(Region::Hnsw).start)
        .ok()
        .and_then(|b| HnswHeader::decode(&b[..], sb.region(Region::Hnsw).start).ok());
    let slots_of = |ino: u32| img.inode(ino).and_then(|i| img.vec_slots(ino, &i)).ok();

    let mut manifest_paths = BTreeMap::new();
    let mut inode_lines = BTreeSet::new();
    let (mut data_lines, mut target_lines, mut slots_lines) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut chunk_lines: HashMap<u32, usize> = HashMap::new();
    let mut tombstones = 0u32;
    let mut queries: BTreeMap<u32, (Vec<f32>, usize, usize)> = BTreeMap::new();
    let mut hits: BTreeMap<u32, Vec<Answer>> = BTreeMap::new();
    for f in &lines {
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
        let ino = num(1).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
        match f.first().copied() {
            Some("image") => {
                expect!(Some(raw.len() as u64), num(1), "image size");
                expect!(sha256_hex(raw), f.get(2).copied().unwrap_or("").to_string(), "image sha256");
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
                    _ => u64::MAX,
                });
                expect!(got, num(2), "hnsw header {}", f.get(1).unwrap_or(&""));
            }
            Some("inode") => {
                inode_lines.insert(ino);
                let got = img.inode(ino).map(|i| inode_fields(&i)).unwrap_or_else(|e| e.to_string());
                expect!(got, rest(f, 2), "inode {ino}");
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
                expect!(slot_vector(&img, slot), want, "vector of inode {ino} chunk {chunk} (slot {slot})");
                let printed = want.map(|w| w.iter().map(|&b| f32::from_bits(b).to_string()).collect::<Vec<_>>());
                expect!(printed.map(|p| p.join(",")), f.get(4).map(|s| s.to_string()), "decimals of {ino}/{chunk}");
                expect!(map_entry(&img, slot), Some(Some(MapEntry { ino: ino as u64, chunk })), "owner of slot {slot}");
                expect!(level0_head(&img, slot).map(|h| h.flags), Some(NODE_IN_GRAPH), "flags of slot {slot}");
            }
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

    // Completeness: the manifest covers the whole tree, every inode, every file's content and
    // chunk list, every live vector and every tombstone.
    expect!(paths, manifest_paths, "the tree (path -> inode)");
    expect!(reached, inode_lines, "inodes reachable from the root");
    let kind = |ino: &u32| img.inode(*ino).map(|i| i.mode & S_IFMT).unwrap_or(0);
    let files: BTreeSet<u32> = reached.iter().copied().filter(|i| kind(i) == S_IFREG).collect();
    let links: BTreeSet<u32> = reached.iter().copied().filter(|i| kind(i) == S_IFLNK).collect();
    expect!(files, data_lines, "regular files with a content hash");
    expect!(files, slots_lines, "regular files with a chunk list");
    expect!(links, target_lines, "symlinks with a target");
    let counts: HashMap<u32, usize> =
        files.iter().filter_map(|&i| Some((i, slots_of(i)?.len()))).filter(|x| x.1 > 0).collect();
    expect!(counts, chunk_lines, "chunks per file");
    expect!(header.map(|h| h.live as usize), Some(chunk_lines.values().sum::<usize>()), "live vectors");
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
    let mut writer = Image::open(MemDevice { bytes: raw.to_vec() }).ok().and_then(|i| Writer::new(i).ok());
    let mut searcher = MapDevice::from_bytes(raw).ok().and_then(|d| Searcher::new(Image::open(d).ok()?, 64).ok());
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

    match fsck::run(MemDevice { bytes: raw.to_vec() }, Mode::Check) {
        Ok((out, _)) => {
            expect!(out.report.problems.len(), 0, "fsck problems {:?}", out.report.problems);
            expect!(out.exit_code(), 0, "fsck exit code");
            expect!(out.report.inodes_used, inode_lines.len() as u64, "inodes in use (fsck)");
        }
        Err(e) => bad.push(format!("fsck could not run: {e}")),
    }
    bad
}

#[test]
fn the_v1_image_reads_as_its_manifest_says() {
    let (manifest, raw) = committed();
    let bad = verify(&manifest, &raw);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

// ---- each kind of item is checked: tampered manifests and images are caught -----------------

/// `manifest` with the one line starting with `prefix` replaced by `line` (or removed if empty).
fn edit(manifest: &str, prefix: &str, line: &str) -> String {
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

fn assert_caught(bad: &[String], needle: &str, case: &str) {
    assert!(bad.iter().any(|b| b.contains(needle)), "{case}: no difference mentions {needle:?}: {bad:#?}");
}

#[test]
fn a_wrong_manifest_item_of_any_kind_is_caught() {
    let (manifest, raw) = committed();
    let line = |prefix: &str| manifest.lines().find(|l| l.starts_with(prefix)).unwrap().to_string();
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("image hash", "image ".into(), line("image ").replace(" e", " f"), "image sha256"),
        ("superblock", "sb hnsw_seed ".into(), "sb hnsw_seed 20261202".into(), "superblock hnsw_seed"),
        ("unknown field", "sb label ".into(), "sb lable vexfs-frozen-v1".into(), "unknown superblock field"),
        ("header", "hnsw deleted ".into(), "hnsw deleted 2".into(), "hnsw header deleted"),
        ("inode", "inode 5 ".into(), line("inode 5 ").replace("100444", "100644"), "inode 5"),
        ("missing path", "path 13 ".into(), String::new(), "the tree"),
        ("extra path", "path 13 ".into(), "path 13 /lnk".into(), "the tree"),
        ("content", "data 7 ".into(), line("data 7 ").replace("data 7 a", "data 7 b"), "sha256 of inode 7"),
        ("missing content", "data 6 ".into(), String::new(), "regular files with a content hash"),
        ("target", "target 14 ".into(), "target 14 ../no/such/targets".into(), "symlink target of inode 14"),
        ("slots", "slots 19 ".into(), "slots 19 3 5 14".into(), "chunk list of inode 19"),
        ("chunk bits", "chunk 20 3 ".into(), line("chunk 20 3 ").replacen("3fc00000", "3fc00001", 1), "vector of"),
        ("chunk decimals", "chunk 17 0 ".into(), line("chunk 17 0 ").replace(",2,", ",2.0,"), "decimals of 17/0"),
        ("missing chunk", "chunk 20 6 ".into(), String::new(), "chunks per file"),
        (
            "tombstone",
            "tombstone 4 ".into(),
            line("tombstone 4 ").replacen("tombstone 4", "tombstone 3", 1),
            "tombstone slot 3",
        ),
        ("query", "query 3 ".into(), line("query 3 ").replacen("query 3 4 ", "query 3 5 ", 1), "answers to query 3"),
        ("hit order", "hit 2 2 ".into(), line("hit 2 2 ").replacen("hit 2 2 ", "hit 2 3 ", 1), "answers to query 2"),
        ("distance", "hit 1 2 ".into(), line("hit 1 2 ").replace("40f80000 7.75", "40f80001 7.7500005"), "query 1"),
        ("hit path", "hit 1 1 ".into(), line("hit 1 1 ").replace("seven-alias", "seven.txt"), "query 1"),
        ("unknown item", "hnsw live ".into(), "hnsw_live 12".into(), "unknown manifest item"),
    ];
    for (case, prefix, replacement, needle) in cases {
        let bad = verify(&edit(&manifest, &prefix, &replacement), &raw);
        assert_caught(&bad, needle, case);
    }
}

#[test]
fn a_changed_image_is_caught() {
    let (manifest, raw) = committed();
    let img = Image::open(MemDevice { bytes: raw.clone() }).unwrap();
    // A byte of /hello.txt.
    let hello = img.lookup("/hello.txt").unwrap();
    let blk = img.extents(hello, &img.inode(hello).unwrap()).unwrap()[0].start as usize;
    let mut b = raw.clone();
    b[blk * BLOCK_SIZE] ^= 0x20;
    let bad = verify(&manifest, &b);
    assert_caught(&bad, "sha256 of inode 2", "file data");
    assert_caught(&bad, "image sha256", "file data");
    // A vector component, 0 made 0.25 (vector data carries no checksum: only the manifest and
    // the answers show it).
    let off = img.sb().region(Region::VecData).start as usize * BLOCK_SIZE;
    let mut b = raw.clone();
    assert_eq!(b[off..off + 4], [0; 4]);
    b[off..off + 4].copy_from_slice(&0.25f32.to_le_bytes());
    let bad = verify(&manifest, &b);
    assert_caught(&bad, "vector of inode 17 chunk 0 (slot 0)", "vector bits");
    assert_caught(&bad, "answers to query 0", "vector bits");
    // An unknown format version is refused.
    let mut b = raw.clone();
    let sb = Superblock::decode(&raw[..BLOCK_SIZE]).unwrap();
    let mut blk0 = [0u8; BLOCK_SIZE];
    Superblock { format_version: FORMAT_VERSION + 1, ..sb }.encode(&mut blk0);
    b[..BLOCK_SIZE].copy_from_slice(&blk0);
    assert_caught(&verify(&manifest, &b), "does not open", "format version 3");
    // An unpurged tombstone purged: the header and flags change.
    let mut w = Writer::new(Image::open(MemDevice { bytes: raw.clone() }).unwrap()).unwrap();
    w.purge_vectors().unwrap();
    let b = w.commit().unwrap().into_device().bytes;
    let bad = verify(&manifest, &b);
    assert_caught(&bad, "hnsw header deleted", "purged");
    assert_caught(&bad, "flags of tombstone slot", "purged");
}

// ---- the upgrade to format v2 -----------------------------------------------------------------

/// Format v2 reads a v1 filesystem as it is (above), writes nothing to it until something
/// changes, and upgrades it on the first write: version 2 in both superblocks and in the
/// journal superblock, every v1 object kept. (The kernel does the same at its first
/// read-write mount, `fsck.vexfs -y` too: `fsck.vexfs/tests/journal.rs`.)
#[test]
fn the_v1_image_is_upgraded_to_v2_by_the_first_write() {
    let (manifest, raw) = committed();
    // Opened for writing, searched, committed with no change: not a byte written.
    let mut w = Writer::new(Image::open(MemDevice { bytes: raw.clone() }).unwrap()).unwrap();
    let dim = w.image().sb().vec_dim as usize;
    w.search(&vec![0.5; dim], 3, 16).unwrap();
    assert_eq!(w.commit().unwrap().into_device().bytes, raw, "no change, no write");

    let mut w = Writer::new(Image::open(MemDevice { bytes: raw.clone() }).unwrap()).unwrap();
    let ino = w.mkdir(ROOT_INO, "written-by-v2", 0o755).unwrap();
    let img = w.commit().unwrap();
    let sb = img.sb().clone();
    assert_eq!(sb.format_version, FORMAT_VERSION);
    assert_eq!(sb.feature_incompat, 0, "RECOVER is cleared when the writer is done");
    let backup = Superblock::decode(&img.read_block(sb.backup_block).unwrap()[..]).unwrap();
    assert_eq!(backup.format_version, FORMAT_VERSION, "the backup superblock is upgraded too");
    let log = vexfs_image::journal::read_log(img.device(), &sb).unwrap();
    assert_eq!(log.version, Some(2), "journal superblock v2");
    assert!(log.clean());
    // Every v1 object is where it was.
    for line in manifest.lines().filter(|l| l.starts_with("path ")) {
        let mut f = line.splitn(3, ' ').skip(1);
        let (want, path) = (f.next().unwrap().parse::<u32>().unwrap(), f.next().unwrap());
        assert_eq!(img.lookup(path).unwrap(), want, "{path}");
    }
    assert_eq!(img.lookup("/written-by-v2").unwrap(), ino);
    let (out, _) = fsck::run(img.into_device(), Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
    assert!(out.notes.is_empty(), "{:?}", out.notes);
}
