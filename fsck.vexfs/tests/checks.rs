//! fsck.vexfs: one test per check. Each corrupts exactly one thing in a fresh or populated
//! image, asserts the exact problems the checker reports, that `fsck.vexfs -n` exits 4 and
//! prints the problem, and then that `-p` or `-y` repairs it (exit 1) and a second `-n` finds
//! the image clean (exit 0), or that the problem is left uncorrected (exit 4).

use std::path::{Path, PathBuf};
use std::process::Command;

use vexfs_image::fsck::{self, Kind, Problem};
use vexfs_image::sample::{self, Tree, SAMPLE_BLOCKS};
use vexfs_image::vexfs_core::format::dir::{self, seal_dir_block, DT_DIR};
use vexfs_image::vexfs_core::format::extent::extent_block_build;
use vexfs_image::vexfs_core::format::inode::{Inode, S_IFREG};
use vexfs_image::vexfs_core::format::journal::JournalSuper;
use vexfs_image::vexfs_core::format::superblock::{Region, Superblock, ROOT_INO, STATE_ERRORS};
use vexfs_image::vexfs_core::format::{bit_set, BLOCK_SIZE};
use vexfs_image::vexfs_core::io::BlockDevice;
use vexfs_image::{mkfs, FileDevice, Image, MemDevice};

struct Img {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn save(bytes: &[u8]) -> Img {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    std::fs::write(&path, bytes).unwrap();
    Img { _dir: dir, path }
}

/// A freshly formatted image.
fn fresh() -> Img {
    let mut dev = MemDevice::new(SAMPLE_BLOCKS);
    mkfs::format(&mut dev, &sample::params(SAMPLE_BLOCKS), false).unwrap();
    save(&dev.bytes)
}

/// The sample tree (see `vexfs_image::sample`).
fn populated() -> (Img, Tree) {
    let (img, tree) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).unwrap();
    (save(&img.into_device().bytes), tree)
}

fn open_rw(path: &Path) -> Image<FileDevice> {
    Image::open(FileDevice::open(path, true).unwrap()).unwrap()
}

fn edit_block(path: &Path, n: u64, f: impl FnOnce(&mut [u8; BLOCK_SIZE])) {
    let mut dev = FileDevice::open(path, true).unwrap();
    let mut b = [0u8; BLOCK_SIZE];
    dev.read_block(n, &mut b).unwrap();
    f(&mut b);
    dev.write_block(n, &b).unwrap();
}

fn edit_sb(path: &Path, f: impl FnOnce(&mut Superblock)) {
    edit_block(path, 0, |b| {
        let mut sb = Superblock::decode(b).unwrap();
        f(&mut sb);
        sb.encode(b);
    });
}

fn edit_inode(path: &Path, ino: u32, f: impl FnOnce(&mut Inode)) {
    let mut img = open_rw(path);
    let mut inode = img.inode(ino).unwrap();
    f(&mut inode);
    img.write_inode(ino, &inode).unwrap();
}

fn inode(path: &Path, ino: u32) -> Inode {
    open_rw(path).inode(ino).unwrap()
}

fn sb(path: &Path) -> Superblock {
    open_rw(path).sb().clone()
}

/// Device block `i` of directory `d`.
fn dir_block(path: &Path, d: u32, i: usize) -> u64 {
    let img = open_rw(path);
    img.dir_blocks(d, &img.inode(d).unwrap()).unwrap()[i].1
}

/// Edits the first block of directory `d` and reseals it.
fn edit_dir(path: &Path, d: u32, f: impl FnOnce(&mut [u8; BLOCK_SIZE])) {
    let n = dir_block(path, d, 0);
    edit_block(path, n, |b| {
        f(b);
        seal_dir_block(b, n, d as u64);
    });
}

fn dirent_offset(b: &[u8], name: &str) -> usize {
    dir::find(b, name.as_bytes()).unwrap().unwrap().offset
}

fn problems(path: &Path) -> Vec<Problem> {
    let (img, early) = fsck::open(FileDevice::open(path, false).unwrap()).unwrap();
    fsck::check(&img, early).unwrap().problems
}

fn fsck(path: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck-vexfs"))
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

#[derive(Debug, PartialEq, Eq)]
enum Repair {
    /// `-p` repairs everything.
    Preen,
    /// `-p` leaves it (exit 4), `-y` repairs everything.
    Yes,
    /// Some of it cannot be repaired: `-y` exits 4.
    No,
}

fn expect(img: &Img, kinds: &[Kind], repair: Repair) {
    let ps = problems(&img.path);
    assert_eq!(
        ps.iter().map(|p| p.kind).collect::<Vec<_>>(),
        kinds,
        "{ps:#?}"
    );
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 4, "{out}");
    for p in &ps {
        assert!(out.contains(&p.message), "{out}");
    }
    match repair {
        Repair::No => {
            let (code, out) = fsck(&img.path, &["-y"]);
            assert_eq!(code, 4, "{out}");
            return;
        }
        Repair::Yes => {
            let (code, out) = fsck(&img.path, &["-p"]);
            assert_eq!(code, 4, "{out}");
            assert!(out.contains("UNEXPECTED INCONSISTENCY"), "{out}");
            let (code, out) = fsck(&img.path, &["-y"]);
            assert_eq!(code, 1, "{out}");
        }
        Repair::Preen => {
            let (code, out) = fsck(&img.path, &["-p"]);
            assert_eq!(code, 1, "{out}");
        }
    }
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("clean"), "{out}");
}

#[test]
fn fresh_image_is_clean() {
    let img = fresh();
    for args in [&["-n"][..], &["-y"], &["-p"], &["-f", "-v"], &[]] {
        let (code, out) = fsck(&img.path, args);
        assert_eq!(code, 0, "{args:?}: {out}");
        assert!(
            out.ends_with("fs.img: 1/512 inodes, 619/2048 blocks used, clean\n"),
            "{out}"
        );
    }
}

#[test]
fn populated_image_is_clean() {
    let (img, _) = populated();
    assert!(problems(&img.path).is_empty());
    let (code, out) = fsck(&img.path, &["-f"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 10/512 inodes, "), "{out}");
}

#[test]
fn usage_errors_exit_16() {
    let img = fresh();
    for args in [
        &["-n", "-y"][..],
        &["-n", "-p"],
        &["-y", "-p"],
        &["-y", "-a"],
        &["--bogus"],
        &[],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fsck-vexfs"));
        if !args.is_empty() {
            cmd.args(args).arg(&img.path);
        }
        assert_eq!(cmd.output().unwrap().status.code(), Some(16), "{args:?}");
    }
}

#[test]
fn missing_image_exits_8() {
    let img = fresh();
    let (code, out) = fsck(&img.path.with_extension("nope"), &["-n"]);
    assert_eq!(code, 8, "{out}");
}

#[test]
fn not_vexfs_exits_8() {
    let img = save(&vec![0u8; 1 << 20]);
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 8, "{out}");
    assert!(out.contains("bad magic"), "{out}");
}

#[test]
fn both_superblocks_bad_exits_8() {
    let img = fresh();
    edit_block(&img.path, 0, |b| b[72] ^= 1);
    edit_block(&img.path, SAMPLE_BLOCKS - 1, |b| b[72] ^= 1);
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 8, "{out}");
    assert!(out.contains("checksum mismatch"), "{out}");
}

#[test]
fn primary_superblock_corrupt() {
    let img = fresh();
    edit_block(&img.path, 0, |b| b[72] ^= 1);
    expect(&img, &[Kind::PrimarySuperblock], Repair::Yes);
}

#[test]
fn backup_superblock_differs() {
    let (img, _) = populated();
    edit_block(&img.path, SAMPLE_BLOCKS - 1, |b| {
        let mut sb = Superblock::decode(b).unwrap();
        sb.label[0] = b'X';
        sb.encode(b);
    });
    expect(&img, &[Kind::BackupSuperblock], Repair::Preen);
}

#[test]
fn backup_superblock_zeroed() {
    let img = fresh();
    edit_block(&img.path, SAMPLE_BLOCKS - 1, |b| b.fill(0));
    expect(&img, &[Kind::BackupSuperblock], Repair::Preen);
}

#[test]
fn errors_flag() {
    let img = fresh();
    edit_sb(&img.path, |sb| sb.state |= STATE_ERRORS);
    expect(&img, &[Kind::ErrorsFlag], Repair::Yes);
}

#[test]
fn journal_superblock_corrupt() {
    let img = fresh();
    let j = sb(&img.path).region(Region::Journal).start;
    edit_block(&img.path, j, |b| b[30] ^= 1);
    expect(&img, &[Kind::Journal], Repair::Yes);
}

#[test]
fn journal_not_clean_without_recover() {
    let img = fresh();
    let s = sb(&img.path);
    let j = s.region(Region::Journal).start;
    edit_block(&img.path, j, |b| {
        JournalSuper {
            flags: 0,
            ..JournalSuper::new(s.uuid)
        }
        .encode(b, j)
    });
    expect(&img, &[Kind::Journal], Repair::Yes);
}

#[test]
fn vector_bitmap_in_use() {
    let img = fresh();
    let vb = sb(&img.path).region(Region::VecBitmap).start;
    edit_block(&img.path, vb, |b| b[3] = 0x10);
    expect(&img, &[Kind::VectorBitmap], Repair::No);
}

#[test]
fn block_bitmap_padding() {
    let img = fresh();
    let bb = sb(&img.path).region(Region::BlockBitmap).start;
    edit_block(&img.path, bb, |b| bit_set(b, 3000, true));
    expect(&img, &[Kind::BitmapPadding], Repair::Preen);
}

#[test]
fn inode_bitmap_padding() {
    let img = fresh();
    let ib = sb(&img.path).region(Region::InodeBitmap).start;
    edit_block(&img.path, ib, |b| bit_set(b, 600, true));
    expect(&img, &[Kind::BitmapPadding], Repair::Preen);
}

#[test]
fn inode_checksum() {
    let (img, t) = populated();
    let (blk, off, _) = open_rw(&img.path).inode_raw(t.hello).unwrap();
    edit_block(&img.path, blk, |b| b[off + 4] ^= 1);
    expect(&img, &[Kind::Inode], Repair::No);
}

#[test]
fn root_inode_checksum() {
    let (img, _) = populated();
    let (blk, off, _) = open_rw(&img.path).inode_raw(ROOT_INO).unwrap();
    edit_block(&img.path, blk, |b| b[off + 20] ^= 1);
    expect(&img, &[Kind::Inode], Repair::No);
}

#[test]
fn root_not_a_directory() {
    let img = fresh();
    edit_inode(&img.path, ROOT_INO, |i| i.mode = S_IFREG | 0o644);
    expect(&img, &[Kind::RootNotDir], Repair::No);
}

#[test]
fn extent_outside_data_region() {
    let (img, t) = populated();
    edit_inode(&img.path, t.big, |i| i.extents[0].start = 3);
    expect(&img, &[Kind::Extents], Repair::No);
}

#[test]
fn extents_overlap() {
    let (img, t) = populated();
    edit_inode(&img.path, t.sparse, |i| {
        assert_eq!(i.nr_extents, 2);
        i.extents[1].logical = 0;
    });
    expect(&img, &[Kind::Extents], Repair::No);
}

#[test]
fn extent_block_checksum() {
    let (img, t) = populated();
    let eb = inode(&img.path, t.frag).extent_block;
    edit_block(&img.path, eb, |b| b[100] ^= 1);
    expect(&img, &[Kind::Extents], Repair::No);
}

#[test]
fn extent_block_wrong_owner() {
    let (img, t) = populated();
    let eb = inode(&img.path, t.frag).extent_block;
    edit_block(&img.path, eb, |b| {
        let n = vexfs_image::vexfs_core::format::extent::extent_block_count(b).unwrap();
        let ext: Vec<_> = (0..n)
            .map(|i| vexfs_image::vexfs_core::format::extent::extent_block_get(b, i).unwrap())
            .collect();
        extent_block_build(b, eb, t.big as u64, &ext);
    });
    expect(&img, &[Kind::Extents], Repair::No);
}

#[test]
fn block_count_field() {
    let (img, t) = populated();
    edit_inode(&img.path, t.hello, |i| i.blocks = 7);
    expect(&img, &[Kind::BlockCount], Repair::Preen);
}

#[test]
fn extent_past_end_of_file() {
    let (img, t) = populated();
    edit_inode(&img.path, t.big, |i| i.size = 4096);
    expect(&img, &[Kind::ExtentPastSize], Repair::No);
}

#[test]
fn block_claimed_twice() {
    let (img, t) = populated();
    let big_start = inode(&img.path, t.big).extents[0].start;
    edit_inode(&img.path, t.hello, |i| i.extents[0].start = big_start);
    // hello's own block is now used by nothing.
    expect(
        &img,
        &[Kind::DuplicateBlocks, Kind::BlockUnused],
        Repair::No,
    );
}

#[test]
fn directory_size_not_whole_blocks() {
    let (img, t) = populated();
    edit_inode(&img.path, t.docs, |i| i.size += 1);
    expect(&img, &[Kind::DirLayout], Repair::No);
}

#[test]
fn directory_hole() {
    let (img, t) = populated();
    edit_inode(&img.path, t.many, |i| i.size += 4096);
    expect(&img, &[Kind::DirLayout], Repair::No);
}

#[test]
fn directory_block_checksum() {
    let (img, t) = populated();
    let n = dir_block(&img.path, t.docs, 0);
    edit_block(&img.path, n, |b| b[40] ^= 1);
    expect(&img, &[Kind::DirBlock], Repair::No);
}

#[test]
fn directory_block_wrong_owner() {
    let (img, t) = populated();
    let n = dir_block(&img.path, t.docs, 0);
    edit_block(&img.path, n, |b| seal_dir_block(b, n, 99));
    expect(&img, &[Kind::DirBlock], Repair::No);
}

#[test]
fn dirent_rec_len() {
    let (img, t) = populated();
    edit_dir(&img.path, t.docs, |b| {
        let off = dirent_offset(b, "big.bin");
        b[off + 4] = 12;
        b[off + 5] = 0;
    });
    expect(&img, &[Kind::DirEntry], Repair::No);
}

#[test]
fn duplicate_name() {
    let (img, _) = populated();
    // Rename "link" to "hard": the second "hard" (hello's second link) is then not counted.
    edit_dir(&img.path, ROOT_INO, |b| {
        let off = dirent_offset(b, "link");
        b[off + 8..off + 12].copy_from_slice(b"hard");
    });
    expect(&img, &[Kind::DuplicateName, Kind::LinkCount], Repair::No);
}

#[test]
fn entry_out_of_range() {
    let (img, _) = populated();
    edit_dir(&img.path, ROOT_INO, |b| {
        let off = dirent_offset(b, "link");
        b[off..off + 4].copy_from_slice(&9999u32.to_le_bytes());
    });
    // The symlink is left unreachable, with its block.
    expect(
        &img,
        &[Kind::BadEntry, Kind::InodeUnreachable, Kind::BlockUnused],
        Repair::No,
    );
}

#[test]
fn entry_file_type() {
    let (img, _) = populated();
    edit_dir(&img.path, ROOT_INO, |b| {
        let off = dirent_offset(b, "hello.txt");
        b[off + 7] = DT_DIR;
    });
    expect(&img, &[Kind::FileType], Repair::Preen);
}

#[test]
fn directory_parent() {
    let (img, t) = populated();
    edit_inode(&img.path, t.docs, |i| i.parent = t.many);
    expect(&img, &[Kind::Parent], Repair::Preen);
}

#[test]
fn root_parent() {
    let img = fresh();
    edit_inode(&img.path, ROOT_INO, |i| i.parent = 0);
    expect(&img, &[Kind::Parent], Repair::Preen);
}

#[test]
fn file_parent() {
    let (img, t) = populated();
    edit_inode(&img.path, t.hello, |i| i.parent = ROOT_INO);
    expect(&img, &[Kind::Parent], Repair::Preen);
}

#[test]
fn directory_linked_twice() {
    let (img, t) = populated();
    edit_dir(&img.path, ROOT_INO, |b| {
        assert!(dir::insert(b, b"docs2", t.docs, DT_DIR).unwrap())
    });
    expect(&img, &[Kind::DirLinkedTwice], Repair::No);
}

#[test]
fn file_link_count() {
    let (img, t) = populated();
    edit_inode(&img.path, t.hello, |i| i.links = 5);
    expect(&img, &[Kind::LinkCount], Repair::Preen);
}

#[test]
fn directory_link_count() {
    let (img, t) = populated();
    edit_inode(&img.path, t.docs, |i| i.links = 2);
    expect(&img, &[Kind::LinkCount], Repair::Preen);
}

#[test]
fn symlink_size() {
    let (img, t) = populated();
    edit_inode(&img.path, t.link, |i| i.size = 5000);
    expect(&img, &[Kind::Symlink], Repair::No);
}

#[test]
fn vector_references() {
    let (img, t) = populated();
    edit_inode(&img.path, t.hello, |i| i.vec_count = 1);
    expect(&img, &[Kind::VectorRefs], Repair::No);
}

#[test]
fn inode_unreachable() {
    let (img, _) = populated();
    edit_dir(&img.path, ROOT_INO, |b| {
        assert!(dir::remove(b, b"link").unwrap().is_some())
    });
    // Freeing the inode loses data, so preen leaves it to -y; its block goes with it.
    expect(
        &img,
        &[Kind::InodeUnreachable, Kind::BlockUnused],
        Repair::Yes,
    );
}

#[test]
fn inode_unallocated() {
    let (img, t) = populated();
    let ib = sb(&img.path).region(Region::InodeBitmap).start;
    edit_block(&img.path, ib, |b| bit_set(b, (t.hello - 1) as usize, false));
    expect(
        &img,
        &[Kind::InodeUnallocated, Kind::FreeInodes],
        Repair::Preen,
    );
}

#[test]
fn block_in_use_but_free() {
    let (img, t) = populated();
    let blk = inode(&img.path, t.big).extents[0].start;
    let bb = sb(&img.path).region(Region::BlockBitmap).start;
    edit_block(&img.path, bb, |b| bit_set(b, blk as usize, false));
    expect(
        &img,
        &[Kind::BlockUnmarked, Kind::FreeBlocks],
        Repair::Preen,
    );
}

#[test]
fn block_marked_but_unused() {
    let (img, _) = populated();
    let s = sb(&img.path);
    let last = s.region(Region::Data).end() - 1;
    edit_block(&img.path, s.region(Region::BlockBitmap).start, |b| {
        bit_set(b, last as usize, true)
    });
    expect(&img, &[Kind::BlockUnused, Kind::FreeBlocks], Repair::Preen);
}

#[test]
fn free_blocks_count() {
    let (img, _) = populated();
    edit_sb(&img.path, |sb| sb.free_blocks -= 1);
    expect(&img, &[Kind::FreeBlocks], Repair::Preen);
}

#[test]
fn free_inodes_count() {
    let (img, _) = populated();
    edit_sb(&img.path, |sb| sb.free_inodes += 1);
    expect(&img, &[Kind::FreeInodes], Repair::Preen);
}

#[test]
fn free_inode_not_zeroed() {
    let img = fresh();
    let (blk, off, _) = open_rw(&img.path).inode_raw(5).unwrap();
    edit_block(&img.path, blk, |b| b[off + 17] = 1);
    expect(&img, &[Kind::FreeInodeNotZero], Repair::Preen);
}

#[test]
fn unused_inline_extent_not_zero() {
    let (img, t) = populated();
    edit_inode(&img.path, t.hello, |i| i.extents[4].len = 1);
    expect(&img, &[Kind::Extents], Repair::No);
}
