//! `mkfs.vexfs --dir-index`: the incompat feature `dir_index` set (off without the flag), the
//! journal sized with the split of a directory bucket counted, an explicit journal below that
//! refused; the offline writer then makes a directory indexed on the image, fsck clean.

use std::path::Path;
use std::process::{Command, Output};

use vexfs_image::fsck::{self, Mode};
use vexfs_image::vexfs_core::dir_index::split_blocks_bound;
use vexfs_image::vexfs_core::embed::{min_journal_blocks, worst_step_blocks};
use vexfs_image::vexfs_core::format::inode::INODE_FLAG_INDEX;
use vexfs_image::vexfs_core::format::superblock::{Region, FEATURE_INCOMPAT_DIR_INDEX, ROOT_INO};
use vexfs_image::writer::Writer;
use vexfs_image::{FileDevice, Image};

fn mkfs(args: &[&str], path: &Path, size: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mkfs-vexfs")).args(args).arg(path).arg(size).output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn open(path: &Path, writable: bool) -> Image<FileDevice> {
    Image::open(FileDevice::open(path, writable).unwrap()).unwrap()
}

#[test]
fn dir_index_sets_the_feature_and_a_directory_becomes_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ix.img");
    let o = mkfs(&["--dir-index", "--dim", "8", "--metric", "l2"], &path, "16M");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Features: dir_index"), "{}", text(&o));
    let img = open(&path, true);
    let sb = img.sb().clone();
    assert_ne!(sb.feature_incompat & FEATURE_INCOMPAT_DIR_INDEX, 0);
    assert!(sb.region(Region::Journal).blocks >= min_journal_blocks(&sb));
    assert!(worst_step_blocks(&sb) >= split_blocks_bound(sb.region(Region::BlockBitmap).blocks));

    let mut w = Writer::new(img).unwrap();
    let d = w.mkdir(ROOT_INO, "d", 0o755).unwrap();
    let file = w.create(ROOT_INO, "f", b"").unwrap();
    for i in 0..600 {
        w.link(d, &format!("entry-{i:04}-{}", "x".repeat(i % 200)), file).unwrap();
    }
    let img = w.commit().unwrap();
    let inode = img.inode(d).unwrap();
    assert_eq!(inode.flags, INODE_FLAG_INDEX);
    assert_eq!(img.read_dir(d, &inode).unwrap().len(), 600);
    assert_eq!(
        img.lookup("/d/entry-0123-xxx").map_err(|e| e.to_string()),
        Err("/d/entry-0123-xxx: no such file or directory".into())
    );
    assert_eq!(img.lookup(&format!("/d/entry-0123-{}", "x".repeat(123))).unwrap(), file);
    let (out, _) = fsck::run(img.into_device(), Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:#?}", out.report.problems);

    // The default has it; --no-dir-index leaves it off.
    let default = dir.path().join("default.img");
    let o = mkfs(&["-q", "--dim", "8", "--metric", "l2"], &default, "16M");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_ne!(open(&default, false).sb().feature_incompat & FEATURE_INCOMPAT_DIR_INDEX, 0);
    let plain = dir.path().join("plain.img");
    let o = mkfs(&["-q", "--no-dir-index", "--dim", "8", "--metric", "l2"], &plain, "16M");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(open(&plain, false).sb().feature_incompat & FEATURE_INCOMPAT_DIR_INDEX, 0);
}

/// By default an explicit journal too small for a bucket split gives linear directories (and
/// a note), not an error: the journal the user chose wins.
#[test]
fn the_default_gives_way_to_a_small_explicit_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.img");
    let o = mkfs(&["--journal-blocks", "64", "--vectors", "64", "--dim", "16", "--metric", "l2"], &path, "32M");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no dir_index"), "{}", text(&o));
    let sb = open(&path, false).sb().clone();
    assert_eq!(sb.feature_incompat & FEATURE_INCOMPAT_DIR_INDEX, 0);
    assert_eq!(sb.region(Region::Journal).blocks, 64);
}

#[test]
fn dir_index_refuses_a_journal_too_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.img");
    let o = mkfs(&["--dir-index", "--journal-blocks", "64", "--dim", "8", "--metric", "l2"], &path, "16M");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("--journal-blocks 64 is too small"), "{t}");
    assert!(t.contains("the split of a directory bucket counted"), "{t}");
    assert!(!path.exists() || std::fs::metadata(&path).unwrap().len() == 0, "nothing written");
}
