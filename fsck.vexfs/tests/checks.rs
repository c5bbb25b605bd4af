//! fsck.vexfs: one test per check. Each corrupts exactly one thing in a fresh or populated
//! image, asserts the exact problems the checker reports, that `fsck.vexfs -n` exits 4 and
//! prints the problem, and then that `-p` or `-y` repairs it (exit 1) and a second `-n` finds
//! the image clean (exit 0), or that the problem is left uncorrected (exit 4).

use std::path::Path;
use std::process::Command;

use vexfs_image::fsck::{self, Fix, Kind, Problem};
use vexfs_image::sample::{self, Tree, SAMPLE_BLOCKS};
use vexfs_image::vexfs_core::format::dir::{self, seal_dir_block, DT_DIR};
use vexfs_image::vexfs_core::format::extent::extent_block_build;
use vexfs_image::vexfs_core::format::inode::{Inode, S_IFREG};
use vexfs_image::vexfs_core::format::journal::JournalSuper;
use vexfs_image::vexfs_core::format::superblock::{Region, Superblock, ROOT_INO, STATE_ERRORS};
use vexfs_image::vexfs_core::format::vector::{HnswGeometry, HnswHeader, Level0Head, MapEntry, MAP_ENTRY, NO_SLOT};
use vexfs_image::vexfs_core::format::{bit_set, BLOCK_SIZE};
use vexfs_image::vexfs_core::io::BlockDevice;
use vexfs_image::vexfs_core::vindex::fill_upper_table;
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, FileDevice, Image, MemDevice};

mod common;
use common::{fsck, save, Img};

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
    assert_eq!(ps.iter().map(|p| p.kind).collect::<Vec<_>>(), kinds, "{ps:#?}");
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 4, "{out}");
    for p in &ps {
        assert!(out.contains(&p.message), "{out}");
    }
    let rebuild = ps.iter().any(|p| p.fix == Some(Fix::RebuildGraph));
    assert_eq!(out.contains("graph damaged: rebuild with -y"), rebuild, "{out}");
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
        assert!(out.ends_with("fs.img: 1/512 inodes, 1067/2048 blocks used, clean\n"), "{out}");
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
    for args in [&["-n", "-y"][..], &["-n", "-p"], &["-y", "-p"], &["-y", "-a"], &["--bogus"], &[]] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fsck-vexfs"));
        if !args.is_empty() {
            cmd.args(args).arg(&img.path);
        }
        assert_eq!(cmd.output().unwrap().status.code(), Some(16), "{args:?}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_fsck-vexfs")).arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("Exit status (as e2fsck, bits OR-ed): 0 no errors, 1 errors corrected, 4 errors"), "{help}");
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
fn errors_flag_kept_while_a_problem_is_left() {
    // -y clears the errors bit only when the repair leaves nothing else wrong (as e2fsck).
    let (img, t) = populated();
    edit_sb(&img.path, |sb| sb.state |= STATE_ERRORS);
    let (blk, off, _) = open_rw(&img.path).inode_raw(t.hello).unwrap();
    edit_block(&img.path, blk, |b| b[off + 4] ^= 1);
    let kinds: Vec<Kind> = problems(&img.path).iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [Kind::ErrorsFlag, Kind::Inode]);
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("the filesystem is marked as having errors"), "{out}");
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 4, "{out}");
    assert_ne!(sb(&img.path).state & STATE_ERRORS, 0, "-y cleared the errors bit with a problem left: {out}");
    // The inode made good again: the next -y clears the bit, and the check after it is clean.
    edit_block(&img.path, blk, |b| b[off + 4] ^= 1);
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(sb(&img.path).state & STATE_ERRORS, 0, "{out}");
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
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
    edit_block(&img.path, j, |b| JournalSuper { flags: 0, ..JournalSuper::new(s.uuid) }.encode(b, j));
    let ps = problems(&img.path);
    assert_eq!(ps.iter().map(|p| p.kind).collect::<Vec<_>>(), [Kind::Journal], "{ps:#?}");
    // fsck replays first: before that, the journal not clean without RECOVER is the problem.
    let want = "the journal holds transactions to replay but the superblock does not have RECOVER set";
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains(want), "{out}");
    assert!(out.contains("0 committed transaction(s), 0 block image(s) to replay"), "{out}");
    // Replaying is what a mount does: -p may.
    let (code, out) = fsck(&img.path, &["-p"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{want}. Fixed.")), "{out}");
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn vector_bitmap_set_for_a_free_slot() {
    let img = fresh();
    let vb = sb(&img.path).region(Region::VecBitmap).start;
    edit_block(&img.path, vb, |b| b[3] = 0x10);
    expect(&img, &[Kind::VectorBitmap], Repair::Yes);
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
        let ext: Vec<_> =
            (0..n).map(|i| vexfs_image::vexfs_core::format::extent::extent_block_get(b, i).unwrap()).collect();
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

/// A file with blocks preallocated past its size (`fallocate(KEEP_SIZE)`): clean with the
/// inode flag and the feature (set in the primary only, as the kernel does); without the
/// feature the flag is reported, and preening sets the feature; without the flag, the blocks
/// past the size are reported.
#[test]
fn blocks_past_size_with_the_eofblocks_flag() {
    use vexfs_image::vexfs_core::format::inode::INODE_FLAG_EOFBLOCKS;
    use vexfs_image::vexfs_core::format::superblock::FEATURE_INCOMPAT_EOFBLOCKS;
    let (img, t) = populated();
    edit_inode(&img.path, t.big, |i| {
        i.size = 4096;
        i.flags |= INODE_FLAG_EOFBLOCKS;
    });
    expect(&img, &[Kind::EofBlocksFeature], Repair::Preen);
    assert_ne!(sb(&img.path).feature_incompat & FEATURE_INCOMPAT_EOFBLOCKS, 0);
    edit_sb(&img.path, |s| s.feature_incompat &= !FEATURE_INCOMPAT_EOFBLOCKS);
    expect(&img, &[Kind::EofBlocksFeature], Repair::Preen);
    // Set in the primary only (the backup differs there): clean.
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    edit_inode(&img.path, t.big, |i| i.flags &= !INODE_FLAG_EOFBLOCKS);
    expect(&img, &[Kind::ExtentPastSize], Repair::No);
}

#[test]
fn block_claimed_twice() {
    let (img, t) = populated();
    let big_start = inode(&img.path, t.big).extents[0].start;
    edit_inode(&img.path, t.hello, |i| i.extents[0].start = big_start);
    // hello's own block is now used by nothing.
    expect(&img, &[Kind::DuplicateBlocks, Kind::BlockUnused], Repair::No);
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
    expect(&img, &[Kind::BadEntry, Kind::InodeUnreachable, Kind::BlockUnused], Repair::No);
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
    edit_dir(&img.path, ROOT_INO, |b| assert!(dir::insert(b, b"docs2", t.docs, DT_DIR).unwrap()));
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
fn chunk_on_a_free_slot() {
    // hello claims chunk 0 in slot 0, which nothing ever used.
    let (img, t) = populated();
    edit_inode(&img.path, t.hello, |i| i.vec_count = 1);
    expect(&img, &[Kind::VectorOwner], Repair::No);
}

#[test]
fn inode_unreachable() {
    let (img, _) = populated();
    edit_dir(&img.path, ROOT_INO, |b| assert!(dir::remove(b, b"link").unwrap().is_some()));
    // Freeing the inode loses data, so preen leaves it to -y; its block goes with it.
    expect(&img, &[Kind::InodeUnreachable, Kind::BlockUnused], Repair::Yes);
}

#[test]
fn inode_unallocated() {
    let (img, t) = populated();
    let ib = sb(&img.path).region(Region::InodeBitmap).start;
    edit_block(&img.path, ib, |b| bit_set(b, (t.hello - 1) as usize, false));
    expect(&img, &[Kind::InodeUnallocated, Kind::FreeInodes], Repair::Preen);
}

#[test]
fn block_in_use_but_free() {
    let (img, t) = populated();
    let blk = inode(&img.path, t.big).extents[0].start;
    let bb = sb(&img.path).region(Region::BlockBitmap).start;
    edit_block(&img.path, bb, |b| bit_set(b, blk as usize, false));
    expect(&img, &[Kind::BlockUnmarked, Kind::FreeBlocks], Repair::Preen);
}

#[test]
fn block_marked_but_unused() {
    let (img, _) = populated();
    let s = sb(&img.path);
    let last = s.region(Region::Data).end() - 1;
    edit_block(&img.path, s.region(Region::BlockBitmap).start, |b| bit_set(b, last as usize, true));
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

// ---- the vector index --------------------------------------------------------------------------

/// The sample tree with embeddings (dimension 8): hello 2 chunks, big 6 (a vector-id block),
/// frag 3, and `vec/v000..v149` one each; sparse had 2, removed (2 tombstones left).
struct Vectored {
    img: Img,
    tree: Tree,
    /// The slots of each file's chunks.
    slots: std::collections::HashMap<u32, Vec<u32>>,
    /// Tombstone slots.
    tombs: Vec<u32>,
}

fn rand_vecs(n: usize, seed: u32) -> Vec<Vec<f32>> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            (0..8)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x % 2001) as f32 / 1000.0 - 1.0
                })
                .collect()
        })
        .collect()
}

fn vectored() -> Vectored {
    let (img, tree) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).unwrap();
    let mut w = Writer::new(img).unwrap();
    let mut slots = std::collections::HashMap::new();
    for (ino, n, seed) in [(tree.hello, 2, 1), (tree.big, 6, 2), (tree.frag, 3, 3), (tree.sparse, 2, 4)] {
        slots.insert(ino, w.set_embeddings(ino, &rand_vecs(n, seed)).unwrap());
    }
    let dir = w.mkdir(ROOT_INO, "vec", 0o755).unwrap();
    for i in 0..150 {
        let ino = w.create(dir, &format!("v{i:03}"), b"v\n").unwrap();
        slots.insert(ino, w.set_embeddings(ino, &rand_vecs(1, 100 + i)).unwrap());
    }
    let tombs = slots.remove(&tree.sparse).unwrap();
    w.remove_embeddings(tree.sparse).unwrap();
    let h = w.vector_header().unwrap();
    assert_eq!((h.live, h.deleted), (161, 2));
    let img = save(&w.commit().unwrap().into_device().bytes);
    Vectored { img, tree, slots, tombs }
}

fn geometry(path: &Path) -> HnswGeometry {
    HnswGeometry::new(&sb(path))
}

/// First upper record of each slot, `capacity + 1` entries (a slot's level is the difference).
fn upper_table(path: &Path) -> Vec<u32> {
    let s = sb(path);
    let mut t = vec![0u32; s.vec_capacity as usize + 1];
    fill_upper_table(&s, &mut t).unwrap();
    t
}

fn slot_level(path: &Path, slot: u32) -> u32 {
    let t = upper_table(path);
    t[slot as usize + 1] - t[slot as usize]
}

/// Edits the level-0 record of `slot` (its `level0_size` bytes).
fn edit_level0(path: &Path, slot: u32, f: impl FnOnce(&mut [u8])) {
    let g = geometry(path);
    let (blk, off) = g.level0_pos(slot);
    edit_block(path, blk, |b| f(&mut b[off..off + g.level0_size as usize]));
}

fn level0(path: &Path, slot: u32) -> Level0Head {
    let g = geometry(path);
    let (blk, off) = g.level0_pos(slot);
    let mut b = [0u8; BLOCK_SIZE];
    FileDevice::open(path, false).unwrap().read_block(blk, &mut b).unwrap();
    Level0Head::decode(&b[off..]).unwrap()
}

/// Edits the 16-byte map entry of `slot`.
fn edit_map(path: &Path, slot: u32, f: impl FnOnce(&mut [u8])) {
    let start = sb(path).region(Region::VecMap).start;
    let off = slot as usize * MAP_ENTRY;
    edit_block(path, start + (off / BLOCK_SIZE) as u64, |b| f(&mut b[off % BLOCK_SIZE..off % BLOCK_SIZE + MAP_ENTRY]));
}

fn edit_header(path: &Path, f: impl FnOnce(&mut HnswHeader)) {
    let n = sb(path).region(Region::Hnsw).start;
    edit_block(path, n, |b| {
        let mut h = HnswHeader::decode(b, n).unwrap();
        f(&mut h);
        h.encode(b, n);
    });
}

fn header(path: &Path) -> HnswHeader {
    let n = sb(path).region(Region::Hnsw).start;
    let mut b = [0u8; BLOCK_SIZE];
    FileDevice::open(path, false).unwrap().read_block(n, &mut b).unwrap();
    HnswHeader::decode(&b, n).unwrap()
}

/// A live slot other than the entry point, with at least one level-0 link.
fn some_live_slot(v: &Vectored) -> u32 {
    let entry = header(&v.img.path).entry;
    let s = v.slots[&v.tree.big][3];
    assert_ne!(s, entry);
    assert!(level0(&v.img.path, s).count > 0);
    s
}

#[test]
fn image_with_vectors_is_clean() {
    let v = vectored();
    assert!(problems(&v.img.path).is_empty(), "{:#?}", problems(&v.img.path));
    let (code, out) = fsck(&v.img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    let h = header(&v.img.path);
    assert!(slot_level(&v.img.path, h.entry) >= 1);
}

#[test]
fn vector_header_checksum() {
    let v = vectored();
    let n = sb(&v.img.path).region(Region::Hnsw).start;
    edit_block(&v.img.path, n, |b| b[33] ^= 1);
    expect(&v.img, &[Kind::VectorHeader], Repair::Yes);
}

#[test]
fn vector_header_counts() {
    let v = vectored();
    edit_header(&v.img.path, |h| {
        h.live += 1;
        h.deleted = 0;
    });
    expect(&v.img, &[Kind::VectorCounts], Repair::Preen);
    let h = header(&v.img.path);
    assert_eq!((h.live, h.deleted), (161, 2));
}

#[test]
fn vector_entry_on_a_tombstone() {
    let v = vectored();
    let t = v.tombs[0];
    let level = slot_level(&v.img.path, t);
    edit_header(&v.img.path, |h| {
        h.entry = t;
        h.entry_level = level;
    });
    expect(&v.img, &[Kind::VectorEntry], Repair::Yes);
}

#[test]
fn vector_entry_level() {
    let v = vectored();
    edit_header(&v.img.path, |h| h.entry_level += 1);
    expect(&v.img, &[Kind::VectorEntry], Repair::Yes);
}

#[test]
fn vector_entry_below_the_top_level() {
    let v = vectored();
    let low = v.slots[&v.tree.hello][0];
    let level = slot_level(&v.img.path, low);
    assert!(level < header(&v.img.path).entry_level);
    edit_header(&v.img.path, |h| {
        h.entry = low;
        h.entry_level = level;
    });
    expect(&v.img, &[Kind::VectorEntry], Repair::Yes);
}

#[test]
fn vector_entry_missing() {
    let v = vectored();
    edit_header(&v.img.path, |h| {
        h.entry = NO_SLOT;
        h.entry_level = 0;
    });
    expect(&v.img, &[Kind::VectorEntry], Repair::Yes);
}

#[test]
fn vector_bitmap_clear_for_a_live_slot() {
    let v = vectored();
    let s = v.slots[&v.tree.frag][1];
    let vb = sb(&v.img.path).region(Region::VecBitmap).start;
    edit_block(&v.img.path, vb, |b| bit_set(b, s as usize, false));
    expect(&v.img, &[Kind::VectorBitmap], Repair::No);
}

#[test]
fn vector_bitmap_padding() {
    let img = fresh();
    let s = sb(&img.path);
    let cap = s.vec_capacity;
    assert!(cap < s.region(Region::VecBitmap).blocks * BLOCK_SIZE as u64 * 8);
    edit_block(&img.path, s.region(Region::VecBitmap).start + cap / (BLOCK_SIZE as u64 * 8), |b| {
        bit_set(b, (cap % (BLOCK_SIZE as u64 * 8)) as usize, true)
    });
    expect(&img, &[Kind::VectorBitmap], Repair::No);
}

#[test]
fn vector_map_checksum() {
    let v = vectored();
    let s = v.slots[&v.tree.big][5];
    edit_map(&v.img.path, s, |e| e[9] ^= 1);
    expect(&v.img, &[Kind::VectorMap], Repair::No);
}

#[test]
fn vector_map_live_slot_without_owner() {
    let v = vectored();
    let s = v.slots[&v.tree.hello][1];
    edit_map(&v.img.path, s, |e| e.fill(0));
    expect(&v.img, &[Kind::VectorMap], Repair::No);
}

#[test]
fn vector_map_owner_on_a_tombstone() {
    let v = vectored();
    let t = v.tombs[1];
    let sparse = v.tree.sparse as u64;
    edit_map(&v.img.path, t, |e| MapEntry::encode(Some(MapEntry { ino: sparse, chunk: 1 }), t, e));
    expect(&v.img, &[Kind::VectorMap], Repair::No);
}

#[test]
fn vector_map_points_at_another_chunk() {
    let v = vectored();
    let s = v.slots[&v.tree.big][2];
    let big = v.tree.big as u64;
    edit_map(&v.img.path, s, |e| MapEntry::encode(Some(MapEntry { ino: big, chunk: 4 }), s, e));
    expect(&v.img, &[Kind::VectorOwner], Repair::No);
}

#[test]
fn vector_id_block_checksum() {
    let v = vectored();
    let vb = inode(&v.img.path, v.tree.big).vec_block;
    edit_block(&v.img.path, vb, |b| b[40] ^= 1);
    expect(&v.img, &[Kind::VectorRefs], Repair::No);
}

#[test]
fn vector_count_disagrees_with_the_id_block() {
    let v = vectored();
    edit_inode(&v.img.path, v.tree.big, |i| i.vec_count = 5);
    expect(&v.img, &[Kind::VectorRefs], Repair::No);
}

#[test]
fn unused_inline_vector_id_not_zero() {
    let v = vectored();
    edit_inode(&v.img.path, v.tree.hello, |i| i.vec_ids[3] = 7);
    expect(&v.img, &[Kind::VectorRefs], Repair::No);
}

#[test]
fn chunk_slot_out_of_range() {
    let v = vectored();
    let cap = sb(&v.img.path).vec_capacity as u32;
    edit_inode(&v.img.path, v.tree.frag, |i| i.vec_ids[0] = cap + 5);
    expect(&v.img, &[Kind::VectorRefs], Repair::No);
}

#[test]
fn vectors_on_a_directory() {
    let v = vectored();
    edit_inode(&v.img.path, v.tree.docs, |i| {
        i.vec_count = 1;
        i.vec_ids[0] = 0;
    });
    expect(&v.img, &[Kind::VectorRefs], Repair::No);
}

#[test]
fn vector_id_block_not_counted() {
    let v = vectored();
    edit_inode(&v.img.path, v.tree.big, |i| i.blocks -= 1);
    expect(&v.img, &[Kind::BlockCount], Repair::Preen);
}

#[test]
fn vector_slot_shared_by_two_chunks() {
    // frag's chunk 1 now names chunk 0's slot; its own slot is left owned by a chunk that
    // no longer holds it.
    let v = vectored();
    let s0 = v.slots[&v.tree.frag][0];
    edit_inode(&v.img.path, v.tree.frag, |i| i.vec_ids[1] = s0);
    expect(&v.img, &[Kind::VectorShared, Kind::VectorOwner], Repair::No);
}

#[test]
fn level0_record_level() {
    let v = vectored();
    let s = some_live_slot(&v);
    edit_level0(&v.img.path, s, |r| r[2] += 1);
    expect(&v.img, &[Kind::VectorRecord], Repair::Yes);
}

/// An unknown level-0 flag (8; 4 is `NODE_PENDING`).
#[test]
fn level0_record_flags() {
    let v = vectored();
    let s = some_live_slot(&v);
    edit_level0(&v.img.path, s, |r| r[3] = 8);
    expect(&v.img, &[Kind::VectorRecord], Repair::Yes);
}

#[test]
fn level0_link_count() {
    let v = vectored();
    let s = some_live_slot(&v);
    let m0 = 2 * sb(&v.img.path).hnsw_m as u16;
    edit_level0(&v.img.path, s, |r| r[..2].copy_from_slice(&(m0 + 1).to_le_bytes()));
    expect(&v.img, &[Kind::VectorRecord], Repair::Yes);
}

#[test]
fn upper_link_count() {
    let v = vectored();
    let entry = header(&v.img.path).entry;
    let first = upper_table(&v.img.path)[entry as usize] as u64;
    let (blk, off) = geometry(&v.img.path).upper_pos(first);
    let m = sb(&v.img.path).hnsw_m;
    edit_block(&v.img.path, blk, |b| b[off..off + 4].copy_from_slice(&(m + 1).to_le_bytes()));
    expect(&v.img, &[Kind::VectorRecord], Repair::Yes);
}

#[test]
fn free_slot_record_not_zero() {
    let v = vectored();
    let free = sb(&v.img.path).vec_capacity as u32 - 1;
    edit_level0(&v.img.path, free, |r| r[12] = 1);
    expect(&v.img, &[Kind::VectorRecord], Repair::Yes);
}

/// Sets level-0 link 0 of a live slot to `to(slot)`.
fn relink(v: &Vectored, to: impl FnOnce(u32) -> u32) {
    let s = some_live_slot(v);
    let t = to(s);
    edit_level0(&v.img.path, s, |r| r[8..12].copy_from_slice(&t.to_le_bytes()));
}

#[test]
fn link_out_of_range() {
    let v = vectored();
    let cap = sb(&v.img.path).vec_capacity as u32;
    relink(&v, |_| cap);
    expect(&v.img, &[Kind::VectorLinks], Repair::Yes);
}

#[test]
fn link_to_a_free_slot() {
    let v = vectored();
    let cap = sb(&v.img.path).vec_capacity as u32;
    relink(&v, |_| cap - 1);
    expect(&v.img, &[Kind::VectorLinks], Repair::Yes);
}

#[test]
fn link_to_itself() {
    let v = vectored();
    relink(&v, |s| s);
    expect(&v.img, &[Kind::VectorLinks], Repair::Yes);
}

#[test]
fn upper_link_to_a_lower_node() {
    let v = vectored();
    let entry = header(&v.img.path).entry;
    let first = upper_table(&v.img.path)[entry as usize] as u64;
    let (blk, off) = geometry(&v.img.path).upper_pos(first);
    let low = (0..sb(&v.img.path).vec_capacity as u32)
        .find(|&s| slot_level(&v.img.path, s) == 0 && v.slots.values().any(|l| l.contains(&s)))
        .unwrap();
    edit_block(&v.img.path, blk, |b| {
        assert!(u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) > 0);
        b[off + 4..off + 8].copy_from_slice(&low.to_le_bytes());
    });
    expect(&v.img, &[Kind::VectorLinks], Repair::Yes);
}

#[test]
fn vector_not_finite() {
    let v = vectored();
    let s = v.slots[&v.tree.hello][0];
    let sbk = sb(&v.img.path);
    let pos = s as u64 * sbk.vec_stride as u64 + 4 * 3;
    let blk = sbk.region(Region::VecData).start + pos / BLOCK_SIZE as u64;
    let off = (pos % BLOCK_SIZE as u64) as usize;
    edit_block(&v.img.path, blk, |b| b[off..off + 4].copy_from_slice(&f32::NAN.to_le_bytes()));
    expect(&v.img, &[Kind::VectorData], Repair::No);
}
