//! vexctl inspect, ls and cat on a populated image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vexfs_image::sample::{self, pattern, sparse_content, SAMPLE_BLOCKS};
use vexfs_image::MemDevice;

fn populated() -> (tempfile::TempDir, PathBuf) {
    let (img, _) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    std::fs::write(&path, &img.into_device().bytes).unwrap();
    (dir, path)
}

fn vexctl(args: &[&str], image: &Path, tail: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vexctl")).args(args).arg(image).args(tail).output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn inspect_text() {
    let (_d, img) = populated();
    let out = stdout(&vexctl(&["inspect"], &img, &[]));
    for want in [
        "Label:                sample",
        "UUID:                 76657866-732d-7361-6d70-6c652d696421",
        "Vectors:              ",
        "dim 8, metric cosine",
        "Journal:              clean, next lsn 1",
        "backup superblock",
        "vector data",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
}

#[test]
fn inspect_json() {
    let (_d, img) = populated();
    let v: serde_json::Value = serde_json::from_str(&stdout(&vexctl(&["inspect", "--json"], &img, &[]))).unwrap();
    assert_eq!(v["block_count"], 2048);
    assert_eq!(v["inode_count"], 512);
    assert_eq!(v["free_inodes"], 502);
    assert_eq!(v["label"], "sample");
    assert_eq!(v["vec_metric"], "cosine");
    assert_eq!(v["journal"]["state"], "clean");
    let regions = v["regions"].as_array().unwrap();
    assert_eq!(regions.first().unwrap()["name"], "superblock");
    assert_eq!(regions.last().unwrap()["start"], 2047);
    let total: u64 = regions.iter().map(|r| r["blocks"].as_u64().unwrap()).sum();
    assert_eq!(total, 2048, "the regions tile the device");
}

#[test]
fn ls_root() {
    let (_d, img) = populated();
    assert_eq!(stdout(&vexctl(&["ls"], &img, &["/"])), "docs\nempty\nhard\nhello.txt\nlink\nmany\n");
    assert_eq!(stdout(&vexctl(&["ls"], &img, &[])), stdout(&vexctl(&["ls"], &img, &["/"])));
}

#[test]
fn ls_long() {
    let (_d, img) = populated();
    let out = stdout(&vexctl(&["ls"], &img, &["/docs", "-l"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].contains(" -rw-r--r--   1     0     0      20580 ") && lines[0].ends_with(" big.bin"), "{out}");
    assert!(lines[3].contains(" drwx------   2 ") && lines[3].ends_with(" sub"), "{out}");
    let root = stdout(&vexctl(&["ls", "-l"], &img, &["/"]));
    assert!(
        root.lines().any(|l| l.starts_with("      9 lrwxrwxrwx") && l.ends_with(" link -> docs/big.bin")),
        "{root}"
    );
    assert!(root.lines().any(|l| l.contains(" -rw-r--r--   2 ") && l.ends_with(" hello.txt")), "{root}");
    assert!(
        root.lines().any(|l| l.contains(" drwxr-xr-x   2 ") && l.contains("       8192 ") && l.ends_with(" many")),
        "{root}"
    );
}

#[test]
fn ls_single_file_and_many_entries() {
    let (_d, img) = populated();
    assert_eq!(stdout(&vexctl(&["ls"], &img, &["/docs/big.bin"])), "/docs/big.bin\n");
    assert_eq!(stdout(&vexctl(&["ls"], &img, &["/many"])).lines().count(), 150);
}

#[test]
fn cat_files() {
    let (_d, img) = populated();
    let cat = |p: &str| vexctl(&["cat"], &img, &[p]);
    assert_eq!(cat("/hello.txt").stdout, b"hello, vexfs\n");
    assert_eq!(cat("/docs/big.bin").stdout, pattern(5 * 4096 + 100, 1));
    assert_eq!(cat("docs/frag.bin").stdout, pattern(10 * 4096, 2));
    assert_eq!(cat("/docs/sparse.bin").stdout, sparse_content());
    assert_eq!(cat("/empty").stdout, b"");
    assert_eq!(cat("/link").stdout, b"docs/big.bin");
}

#[test]
fn errors_exit_1_and_usage_2() {
    let (_d, img) = populated();
    for (args, tail, msg) in [
        (&["cat"][..], &["/docs"][..], "is a directory"),
        (&["cat"], &["/nope"], "no such file or directory"),
        (&["ls"], &["/hello.txt/x"], "not a directory"),
    ] {
        let o = vexctl(args, &img, tail);
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains(msg), "{msg}");
    }
    let o = vexctl(&["inspect"], &img.with_extension("missing"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let zeros = img.with_extension("zero");
    std::fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let o = vexctl(&["inspect"], &zeros, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad magic"));
    let o = Command::new(env!("CARGO_BIN_EXE_vexctl")).arg("frobnicate").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(env!("CARGO_BIN_EXE_vexctl")).args(["cat"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// The sample image with two transactions in its log that were never written home (RECOVER
/// set, as a crash leaves it), then the records of a third without its commit (a torn tail).
fn crashed() -> (tempfile::TempDir, PathBuf, Vec<u64>) {
    use vexfs_image::vexfs_core::format::superblock::{Region, Superblock, FEATURE_INCOMPAT_RECOVER};
    use vexfs_image::vexfs_core::io::BlockDevice;
    use vexfs_image::vexfs_core::journal::{self, DeviceSink, SCRATCH_BYTES};
    let (img, _) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).unwrap();
    let mut dev = img.into_device();
    let mut sb = Superblock::decode(&dev.bytes[..4096]).unwrap();
    sb.feature_incompat |= FEATURE_INCOMPAT_RECOVER;
    let mut b = [0u8; 4096];
    sb.encode(&mut b);
    dev.write_block(0, &b).unwrap();
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let (mut log, _) = journal::recover(&mut dev, &sb, &mut scratch).unwrap();
    journal::write_superblock(&mut dev, &log, false).unwrap();
    // Images of blocks as they are (replaying them changes nothing).
    let data = sb.region(Region::Data).start;
    let targets = vec![data, data + 1, data + 2];
    let imgs: Vec<[u8; 4096]> = targets
        .iter()
        .map(|&n| {
            let mut b = [0u8; 4096];
            dev.read_block(n, &mut b).unwrap();
            b
        })
        .collect();
    journal::write_transaction(&mut dev, &mut log, &[(targets[0], &imgs[0]), (targets[1], &imgs[1])]).unwrap();
    journal::write_transaction(&mut dev, &mut log, &[(targets[2], &imgs[2])]).unwrap();
    let mut txn = log.begin::<std::io::Error>().unwrap();
    let mut sink = DeviceSink::new(&mut dev);
    txn.add(&log, &mut sink, targets[0], &imgs[0]).unwrap();
    sink.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    std::fs::write(&path, &dev.bytes).unwrap();
    (dir, path, targets)
}

#[test]
fn inspect_log_of_a_clean_journal() {
    let (_d, img) = populated();
    let out = stdout(&vexctl(&["inspect", "--log"], &img, &[]));
    for want in ["Journal superblock:   version 2, flags 0x1", "510 free", "Torn tail:            none"] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&vexctl(&["inspect", "--json", "--log"], &img, &[]))).unwrap();
    assert_eq!(v["journal"]["state"], "clean");
    assert_eq!(v["journal"]["version"], 2);
    assert_eq!(v["journal"]["log"]["to_replay"], 0);
    assert_eq!(v["journal"]["log"]["used_blocks"], 0);
    assert_eq!(v["journal"]["log"]["free_blocks"], 510);
    // Without --log, no log object (the fields of before stay as they were).
    let v: serde_json::Value = serde_json::from_str(&stdout(&vexctl(&["inspect", "--json"], &img, &[]))).unwrap();
    assert!(v["journal"].get("log").is_none());
}

#[test]
fn inspect_log_of_a_crashed_journal() {
    let (_d, img, t) = crashed();
    let out = stdout(&vexctl(&["inspect", "--log"], &img, &[]));
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&vexctl(&["inspect", "--json", "--log"], &img, &[]))).unwrap();
    let head = v["journal"]["head"].as_u64().unwrap();
    assert!(out.contains("Journal:              needs recovery"), "{out}");
    assert!(out.contains("Transactions:         2 committed from head, 2 to replay"), "{out}");
    assert!(
        out.contains(&format!("2 image(s), commit in record block {}; home blocks {}, {}", head + 3, t[0], t[1])),
        "{out}"
    );
    assert!(out.contains("Torn tail:            1 record(s) after the last commit, dropped by recovery"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&vexctl(&["inspect", "--json", "--log"], &img, &[]))).unwrap();
    let l = &v["journal"]["log"];
    assert_eq!(v["journal"]["state"], "needs recovery");
    assert_eq!(l["to_replay"], 2);
    let txns = l["transactions"].as_array().unwrap();
    assert_eq!(txns.len(), 2);
    assert_eq!(txns[1]["images"], 1);
    assert_eq!(txns[1]["targets"][0], t[2]);
    assert_eq!(txns[0]["commit_lsn"].as_u64().unwrap() + 1, txns[1]["first_lsn"].as_u64().unwrap());
    assert_eq!(l["torn_records"], 1);
    // An image record is 4,136 bytes: two take 3 blocks, one 2, and each commit a block.
    assert_eq!(l["used_blocks"], 7);
    assert_eq!(l["free_blocks"], 510 - 7);
}

/// The sample image with embeddings set as the kernel's default SET stores them (pending, in
/// the vector write-ahead log): five files of one vector each and one of three, then `linked`
/// of them linked into the graph by the index worker's code.
fn with_pending(linked: usize) -> (tempfile::TempDir, PathBuf) {
    use vexfs_image::vexfs_core::embed::Indexing;
    use vexfs_image::vexfs_core::format::superblock::ROOT_INO;
    use vexfs_image::writer::Writer;
    use vexfs_image::Image;
    let (img, _) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).unwrap();
    let mut w = Writer::new(Image::open(img.into_device()).unwrap()).unwrap();
    w.set_indexing(Indexing::Deferred);
    let v = |i: usize| -> Vec<f32> { (0..8).map(|j| 1.0 + ((i * 7 + j * 3) % 11) as f32).collect() };
    for i in 0..5 {
        let ino = w.create(ROOT_INO, &format!("v{i}"), b"").unwrap();
        w.set_embeddings(ino, &[v(i)]).unwrap();
    }
    let ino = w.create(ROOT_INO, "three", b"").unwrap();
    w.set_embeddings(ino, &[v(5), v(6), v(7)]).unwrap();
    assert_eq!(w.index_pending(linked).unwrap(), linked);
    let dev = w.commit().unwrap().into_device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    std::fs::write(&path, &dev.bytes).unwrap();
    (dir, path)
}

#[test]
fn inspect_log_shows_the_vector_wal() {
    let (_d, img) = with_pending(3);
    let out = stdout(&vexctl(&["inspect", "--log"], &img, &[]));
    let line = out.lines().find(|l| l.starts_with("Vector WAL:")).unwrap_or_else(|| panic!("no WAL line: {out}"));
    assert!(
        line.starts_with(
            "Vector WAL:           5 pending vectors (acknowledged, not yet linked into the graph); graph: 3 \
             live, 0 deleted (HNSW header, block "
        ),
        "{line}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&vexctl(&["inspect", "--json", "--log"], &img, &[]))).unwrap();
    let hnsw = v["regions"].as_array().unwrap().iter().find(|r| r["name"] == "hnsw index").unwrap().clone();
    let wal = &v["wal"];
    assert_eq!((wal["pending"].as_u64(), wal["live"].as_u64(), wal["deleted"].as_u64()), (Some(5), Some(3), Some(0)));
    assert!(wal["error"].is_null());
    assert_eq!(wal["header_block"], hnsw["start"], "the header is the region's first block");
    assert!(line.ends_with(&format!("block {})", wal["header_block"])), "{line}");
    // Without --log, no WAL (inspect's output stays as it was).
    let out = stdout(&vexctl(&["inspect"], &img, &[]));
    assert!(!out.contains("Vector WAL:"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&vexctl(&["inspect", "--json"], &img, &[]))).unwrap();
    assert!(v.get("wal").is_none());
    // Every vector linked: nothing pending.
    let (_d, img) = with_pending(8);
    let out = stdout(&vexctl(&["inspect", "--log"], &img, &[]));
    assert!(out.contains("Vector WAL:           0 pending vectors (acknowledged, not yet linked into the graph); graph: 8 live, 0 deleted"), "{out}");
}

#[test]
fn inspect_log_of_a_corrupt_hnsw_header() {
    let (_d, img) = with_pending(0);
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&vexctl(&["inspect", "--json", "--log"], &img, &[]))).unwrap();
    let block = v["wal"]["header_block"].as_u64().unwrap();
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[block as usize * 4096 + 40] ^= 0xff; // the pending count, under the checksum
    std::fs::write(&img, &bytes).unwrap();
    let out = stdout(&vexctl(&["inspect", "--log"], &img, &[]));
    let line = out.lines().find(|l| l.starts_with("Vector WAL:")).unwrap_or_else(|| panic!("no WAL line: {out}"));
    assert!(line.starts_with(&format!("Vector WAL:           unreadable HNSW header (block {block}): ")), "{line}");
    assert!(line.ends_with(": run fsck.vexfs"), "{line}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&vexctl(&["inspect", "--json", "--log"], &img, &[]))).unwrap();
    assert!(v["wal"]["pending"].is_null());
    assert!(v["wal"]["error"].as_str().unwrap().contains("checksum"), "{}", v["wal"]);
}

/// `cat` and `ls` read a filesystem that needs recovery as its next mount will see it: the
/// frozen v2 image (crashed after two commits) shows the file its journal holds, with a note on
/// stderr, and the image is not written.
#[test]
fn cat_and_ls_replay_the_journal_in_memory() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.img");
    let gz = std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/images/v2.img.gz")).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut raw).unwrap();
    std::fs::write(&path, &raw).unwrap();
    let o = vexctl(&["cat"], &path, &["/wal/linked.txt"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!o.stdout.is_empty(), "the file the journal holds is read");
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs recovery"), "no note");
    let o = vexctl(&["ls"], &path, &["/wal"]);
    assert!(stdout(&o).lines().any(|l| l == "linked.txt"), "{}", stdout(&o));
    assert!(std::fs::read(&path).unwrap() == raw, "the image was written");
}

/// `search-image` refuses a filesystem that needs recovery (its mmap'd index cannot see the
/// journal's changes) and says what to do.
#[test]
fn search_image_refuses_an_image_that_needs_recovery() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.img");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let gz = std::fs::File::open(root.join("tests/images/v2.img.gz")).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut raw).unwrap();
    std::fs::write(&path, &raw).unwrap();
    let q = root.join("data/pydocs-minilm/small/query.fvecs");
    let o = vexctl(&["search-image"], &path, &["--fvecs", q.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs recovery"), "{}", String::from_utf8_lossy(&o.stderr));
}
