//! The frozen image of on-disk format v2 (`tests/images/v2.img.gz`) reads exactly as its
//! manifest (`tests/images/v2.manifest`) says. The image is a filesystem that crashed right
//! after a commit: the journal's facts (version 2, not clean, the committed transactions with
//! their LSNs, images and commit blocks) are checked as committed; then the journal is replayed
//! by the core's recovery on a copy, and everything else is checked on the result: superblock,
//! HNSW header (pending count included), every inode in use (the orphan included), paths,
//! contents, targets, chunk lists, vector bits, which slots are pending, tombstones, and the
//! exact k-NN answers through the offline writer and the read-only searcher; fsck is clean on
//! the image as committed (replayed in memory) and after the replay.
//!
//! The tests after the first tamper with the manifest and the image to show that each kind of
//! item is checked, and check what the image must still do when the pending vectors are linked
//! and when the writer opens it.

mod frozen;

use frozen::{assert_caught, committed, each_edit_caught, replayed, verify};
use vexfs_core::format::journal::{JournalSuper, JOURNAL_CLEAN};
use vexfs_core::format::superblock::{Region, FEATURE_INCOMPAT_RECOVER, ROOT_INO};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck::{self, Mode};
use vexfs_image::journal::read_log;
use vexfs_image::writer::Writer;
use vexfs_image::{Image, MemDevice};

#[test]
fn the_v2_image_reads_as_its_manifest_says() {
    let (manifest, raw) = committed(2);
    let bad = verify(&manifest, &raw, 2);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn a_wrong_manifest_item_of_any_kind_is_caught() {
    let (manifest, raw) = committed(2);
    let line = |prefix: &str| manifest.lines().find(|l| l.starts_with(prefix)).unwrap().to_string();
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("image hash", "image ".into(), format!("{}0", &line("image ")[..line("image ").len() - 1]), "image sha256"),
        ("journal clean", "journal clean ".into(), "journal clean 1".into(), "journal clean"),
        ("journal head", "journal head ".into(), "journal head 71".into(), "journal head"),
        ("journal lsn", "journal checkpoint_lsn ".into(), "journal checkpoint_lsn 50".into(), "checkpoint_lsn"),
        ("journal txns", "journal transactions ".into(), "journal transactions 1".into(), "journal transactions"),
        ("journal images", "journal images ".into(), "journal images 21".into(), "journal images"),
        ("unknown journal field", "journal version ".into(), "journal versoin 2".into(), "unknown journal field"),
        ("txn", "txn 2 ".into(), line("txn 2 ").replacen(" 9 ", " 8 ", 1), "the journal's transactions"),
        ("missing txn", "txn 1 ".into(), String::new(), "the journal's transactions"),
        ("superblock", "sb hnsw_seed ".into(), "sb hnsw_seed 20261202".into(), "superblock hnsw_seed"),
        ("RECOVER", "sb feature_incompat ".into(), "sb feature_incompat 0".into(), "superblock feature_incompat"),
        ("journal size", "sb journal_blocks ".into(), "sb journal_blocks 90".into(), "superblock journal_blocks"),
        ("header", "hnsw deleted ".into(), "hnsw deleted 2".into(), "hnsw header deleted"),
        ("pending count", "hnsw pending ".into(), "hnsw pending 6".into(), "hnsw header pending"),
        ("inode", "inode 5 ".into(), line("inode 5 ").replace("100444", "100644"), "inode 5"),
        ("orphan's inode", "inode 30 ".into(), line("inode 30 ").replace(" 0 8492 ", " 1 8492 "), "inode 30"),
        ("missing orphan", "orphan ".into(), String::new(), "orphans"),
        ("orphan not an orphan", "orphan ".into(), "orphan 29".into(), "link count of orphan 29"),
        ("missing inode", "inode 30 ".into(), String::new(), "inodes in use"),
        ("missing path", "path 13 ".into(), String::new(), "the tree"),
        ("extra path", "path 28 ".into(), "path 28 /wal/to-p4".into(), "the tree"),
        ("content", "data 27 ".into(), line("data 27 ").replace("data 27 5", "data 27 6"), "sha256 of inode 27"),
        ("orphan content", "data 30 ".into(), String::new(), "regular files with a content hash"),
        ("target", "target 28 ".into(), "target 28 more/p3.txt.".into(), "symlink target of inode 28"),
        ("slots", "slots 24 ".into(), "slots 24 15 16".into(), "chunk list of inode 24"),
        ("chunk bits", "chunk 27 2 ".into(), line("chunk 27 2 ").replacen("3fc00000", "3fc00001", 1), "vector of"),
        ("missing chunk", "chunk 25 0 ".into(), String::new(), "chunks per file"),
        ("not pending", "pending 21".into(), String::new(), "flags of slot 21"),
        ("pending, not a chunk's", "pending 15".into(), "pending 40".into(), "pending slots that are a chunk's"),
        ("pending in the graph", "pending 16".into(), "pending 22".into(), "flags of slot 22"),
        ("tombstone", "tombstone 4 ".into(), line("tombstone 4 ").replacen("tombstone 4", "tombstone 3", 1), "slot 3"),
        ("query", "query 5 ".into(), line("query 5 ").replacen("query 5 6 ", "query 5 7 ", 1), "answers to query 5"),
        ("hit order", "hit 2 2 ".into(), line("hit 2 2 ").replacen("hit 2 2 ", "hit 2 3 ", 1), "answers to query 2"),
        ("pending hit", "hit 2 1 ".into(), String::new(), "answers to query 2"),
        ("distance", "hit 1 2 ".into(), line("hit 1 2 ").replace("41580000 13.5", "41580001 13.500001"), "query 1"),
        ("hit path", "hit 0 3 ".into(), line("hit 0 3 ").replace(" hard", " hello.txt"), "query 0"),
        ("unknown item", "hnsw live ".into(), "hnsw_live 13".into(), "unknown manifest item"),
    ];
    each_edit_caught(&manifest, &raw, 2, cases);
}

/// Record block `i` of the journal of `raw` as a device block number.
fn record_block(raw: &[u8], i: u64) -> usize {
    let img = Image::open(MemDevice { bytes: raw.to_vec() }).unwrap();
    (img.sb().region(Region::Journal).start + 1 + i) as usize
}

#[test]
fn a_changed_image_is_caught() {
    let (manifest, raw) = committed(2);
    let img = Image::open(MemDevice { bytes: raw.clone() }).unwrap();
    let sb = img.sb().clone();
    let log = read_log(img.device(), &sb).unwrap();
    assert_eq!(log.transactions.len(), 2);

    // Transaction 2's commit block garbled: its commit record fails its checksum, so only
    // transaction 1 is replayed (the orphan, /hello.txt's embedding and the attic's change
    // are lost).
    let mut b = raw.clone();
    let commit = record_block(&raw, log.transactions[1].commit_block);
    b[commit * BLOCK_SIZE..][..BLOCK_SIZE].iter_mut().for_each(|x| *x ^= 1);
    let bad = verify(&manifest, &b, 2);
    assert_caught(&bad, "journal transactions (before replay)", "a torn commit");
    assert_caught(&bad, "orphans", "a torn commit");
    assert_caught(&bad, "chunk list of inode 2", "a torn commit");

    // The journal superblock says clean: recovery reads nothing, the home blocks are state 1.
    let mut b = raw.clone();
    let js_block = sb.region(Region::Journal).start;
    let mut js = log.superblock.clone().unwrap();
    js.flags |= JOURNAL_CLEAN;
    let mut blk = [0u8; BLOCK_SIZE];
    js.encode(&mut blk, js_block);
    b[js_block as usize * BLOCK_SIZE..][..BLOCK_SIZE].copy_from_slice(&blk);
    let bad = verify(&manifest, &b, 2);
    assert_caught(&bad, "journal clean (before replay)", "a clean journal");
    assert_caught(&bad, "the tree", "a clean journal");
    assert_caught(&bad, "hnsw header pending", "a clean journal");

    // A byte of a file's data written home before the commit (ordered mode): /wal/linked.txt.
    let rep = Image::open(MemDevice { bytes: replayed(&raw).unwrap() }).unwrap();
    let linked = rep.lookup("/wal/linked.txt").unwrap();
    let blk = rep.extents(linked, &rep.inode(linked).unwrap()).unwrap()[0].start as usize;
    let mut b = raw.clone();
    b[blk * BLOCK_SIZE] ^= 0x20;
    let bad = verify(&manifest, &b, 2);
    assert_caught(&bad, &format!("sha256 of inode {linked}"), "file data");

    // The journal superblock of another filesystem (its UUID in it): the log is refused.
    let mut b = raw.clone();
    let other = JournalSuper { uuid: *b"another-fs-uuid!", ..log.superblock.clone().unwrap() };
    let mut blk = [0u8; BLOCK_SIZE];
    other.encode(&mut blk, js_block);
    b[js_block as usize * BLOCK_SIZE..][..BLOCK_SIZE].copy_from_slice(&blk);
    assert_caught(&verify(&manifest, &b, 2), "replaying the journal", "another filesystem's journal");
}

/// The answers of query `q` in the manifest: (inode, chunk, distance bits), nearest first.
fn recorded_answers(manifest: &str, q: u32) -> Vec<(u64, u32, u32)> {
    manifest
        .lines()
        .filter(|l| l.starts_with(&format!("hit {q} ")))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[3].parse().unwrap(), f[4].parse().unwrap(), u32::from_str_radix(f[6], 16).unwrap())
        })
        .collect()
}

/// The manifest's queries: (number, vector, k, ef).
fn recorded_queries(manifest: &str) -> Vec<(u32, Vec<f32>, usize, usize)> {
    manifest
        .lines()
        .filter(|l| l.starts_with("query "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let v = f[4].split(',').map(|w| f32::from_bits(u32::from_str_radix(w, 16).unwrap())).collect();
            (f[1].parse().unwrap(), v, f[2].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect()
}

/// Linking the pending vectors into the graph (what the kernel's index worker does after the
/// mount) changes no recorded answer: the pending scan and the graph agree, exactly.
#[test]
fn the_pending_vectors_once_linked_give_the_same_answers() {
    let (manifest, raw) = committed(2);
    let mut w = Writer::new(Image::open(MemDevice { bytes: replayed(&raw).unwrap() }).unwrap()).unwrap();
    let before = w.vector_header().unwrap();
    assert_eq!((before.live, before.pending, before.deleted), (13, 7, 3));
    assert_eq!(w.index_pending(usize::MAX).unwrap(), 7);
    let after = w.vector_header().unwrap();
    assert_eq!((after.live, after.pending, after.deleted), (20, 0, 3));
    for (q, v, k, ef) in recorded_queries(&manifest) {
        let got: Vec<(u64, u32, u32)> =
            w.search(&v, k, ef).unwrap().iter().map(|h| (h.ino, h.chunk, h.distance().to_bits())).collect();
        assert_eq!(got, recorded_answers(&manifest, q), "query {q} once the pending vectors are linked");
    }
    let (out, _) = fsck::run(w.commit().unwrap().into_device(), Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
}

/// The offline writer opens the crashed image by replaying it (as a mount does), and its first
/// sync ends the session: RECOVER cleared, the journal clean, every manifest path where it was.
/// (It does not free the orphan: that is the mount's job.)
#[test]
fn the_writer_replays_the_crashed_image_before_writing() {
    let (manifest, raw) = committed(2);
    let mut w = Writer::new(Image::open(MemDevice { bytes: raw.clone() }).unwrap()).unwrap();
    let hello = w.image().lookup("/wal/linked.txt").unwrap();
    assert_eq!(w.image().vec_slots(hello, &w.image().inode(hello).unwrap()).unwrap().len(), 1);
    let ino = w.mkdir(ROOT_INO, "written-after-the-crash", 0o755).unwrap();
    let img = w.commit().unwrap();
    assert_eq!(img.sb().feature_incompat & FEATURE_INCOMPAT_RECOVER, 0, "RECOVER cleared by the sync");
    let log = read_log(img.device(), img.sb()).unwrap();
    assert!(log.clean());
    assert_eq!(log.version, Some(2));
    for line in manifest.lines().filter(|l| l.starts_with("path ")) {
        let mut f = line.splitn(3, ' ').skip(1);
        let (want, path) = (f.next().unwrap().parse::<u32>().unwrap(), f.next().unwrap());
        assert_eq!(img.lookup(path).unwrap(), want, "{path}");
    }
    assert_eq!(img.lookup("/written-after-the-crash").unwrap(), ino);
    let (out, _) = fsck::run(img.into_device(), Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
}
