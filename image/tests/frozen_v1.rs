//! The frozen image of on-disk format v1 (`tests/images/v1.img.gz`) reads exactly as its
//! manifest (`tests/images/v1.manifest`) says: superblock, HNSW header, every path and inode,
//! file contents, symlink targets, chunk lists, the bits of every embedding, the tombstones,
//! and the k-NN answers with their exact distances, through the offline writer's index and
//! through the read-only searcher of `vexctl search-image`; and fsck finds it clean.
//!
//! The committed bytes are read, never regenerated. [`verify`] collects every difference, so a
//! failure names all of them; the tests at the end tamper with the manifest and the image to
//! show that each kind of item is really checked.

mod frozen;

use frozen::{assert_caught, committed, each_edit_caught, verify};
use vexfs_core::format::superblock::{Region, Superblock, FORMAT_VERSION, ROOT_INO};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck::{self, Mode};
use vexfs_image::writer::Writer;
use vexfs_image::{Image, MemDevice};

#[test]
fn the_v1_image_reads_as_its_manifest_says() {
    let (manifest, raw) = committed(1);
    let bad = verify(&manifest, &raw, 1);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

// ---- each kind of item is checked: tampered manifests and images are caught -----------------

#[test]
fn a_wrong_manifest_item_of_any_kind_is_caught() {
    let (manifest, raw) = committed(1);
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
    each_edit_caught(&manifest, &raw, 1, cases);
}

#[test]
fn a_changed_image_is_caught() {
    let (manifest, raw) = committed(1);
    let img = Image::open(MemDevice { bytes: raw.clone() }).unwrap();
    // A byte of /hello.txt.
    let hello = img.lookup("/hello.txt").unwrap();
    let blk = img.extents(hello, &img.inode(hello).unwrap()).unwrap()[0].start as usize;
    let mut b = raw.clone();
    b[blk * BLOCK_SIZE] ^= 0x20;
    let bad = verify(&manifest, &b, 1);
    assert_caught(&bad, "sha256 of inode 2", "file data");
    assert_caught(&bad, "image sha256", "file data");
    // A vector component, 0 made 0.25 (vector data carries no checksum: only the manifest and
    // the answers show it).
    let off = img.sb().region(Region::VecData).start as usize * BLOCK_SIZE;
    let mut b = raw.clone();
    assert_eq!(b[off..off + 4], [0; 4]);
    b[off..off + 4].copy_from_slice(&0.25f32.to_le_bytes());
    let bad = verify(&manifest, &b, 1);
    assert_caught(&bad, "vector of inode 17 chunk 0 (slot 0)", "vector bits");
    assert_caught(&bad, "answers to query 0", "vector bits");
    // An unknown format version is refused.
    let mut b = raw.clone();
    let sb = Superblock::decode(&raw[..BLOCK_SIZE]).unwrap();
    let mut blk0 = [0u8; BLOCK_SIZE];
    Superblock { format_version: FORMAT_VERSION + 1, ..sb }.encode(&mut blk0);
    b[..BLOCK_SIZE].copy_from_slice(&blk0);
    assert_caught(&verify(&manifest, &b, 1), "does not open", "format version 3");
    // An unpurged tombstone purged: the header and flags change.
    let mut w = Writer::new(Image::open(MemDevice { bytes: raw.clone() }).unwrap()).unwrap();
    w.purge_vectors().unwrap();
    let b = w.commit().unwrap().into_device().bytes;
    let bad = verify(&manifest, &b, 1);
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
    let (manifest, raw) = committed(1);
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
