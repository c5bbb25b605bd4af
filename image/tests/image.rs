//! Format, populate, read back and check, on an image in memory.

use vexfs_core::format::superblock::{Region, ROOT_INO};
use vexfs_image::fsck::{self, Mode};
use vexfs_image::sample::{self, pattern, sparse_content, SAMPLE_BLOCKS};
use vexfs_image::{mkfs, Image, MemDevice};

#[test]
fn fresh_filesystem_is_clean_and_empty() {
    let mut dev = MemDevice::new(SAMPLE_BLOCKS);
    let sb = mkfs::format(&mut dev, &sample::params(SAMPLE_BLOCKS), false).unwrap();
    assert_eq!(sb.free_inodes, sb.inode_count - 1);
    assert_eq!(sb.free_blocks, SAMPLE_BLOCKS - sb.region(Region::Data).start - 1);
    assert_eq!(dev.bytes[..4096], dev.bytes[(SAMPLE_BLOCKS as usize - 1) * 4096..]);
    let img = Image::open(dev).unwrap();
    let root = img.inode(ROOT_INO).unwrap();
    assert!(root.is_dir());
    assert_eq!((root.links, root.parent, root.size, root.blocks), (2, ROOT_INO, 0, 0));
    assert!(img.read_dir(ROOT_INO, &root).unwrap().is_empty());
    let (out, _) = fsck::run(img.into_device(), Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
    assert_eq!(out.report.inodes_used, 1);
}

#[test]
fn sample_tree_reads_back_and_is_clean() {
    let (img, t) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).unwrap();
    let read = |path: &str| {
        let ino = img.lookup(path).unwrap();
        img.read_file(ino, &img.inode(ino).unwrap()).unwrap()
    };
    assert_eq!(read("/hello.txt"), b"hello, vexfs\n");
    assert_eq!(read("hard"), b"hello, vexfs\n");
    assert_eq!(read("/docs/big.bin"), pattern(5 * 4096 + 100, 1));
    assert_eq!(read("/docs/frag.bin"), pattern(10 * 4096, 2));
    assert_eq!(read("/docs/sparse.bin"), sparse_content());
    assert_eq!(read("/link"), b"docs/big.bin");
    assert_eq!(read("/empty"), b"");
    assert_eq!(img.lookup("/docs/sub/..").unwrap(), t.docs);
    let frag = img.inode(t.frag).unwrap();
    assert_eq!((frag.nr_extents, frag.blocks), (10, 11));
    assert_eq!(img.inode(t.sparse).unwrap().blocks, 2);
    assert_eq!(img.inode(t.hello).unwrap().links, 2);
    assert_eq!(img.inode(ROOT_INO).unwrap().links, 4);
    let many = img.inode(t.many).unwrap();
    assert_eq!(many.size, 2 * 4096);
    assert_eq!(img.read_dir(t.many, &many).unwrap().len(), 150);
    assert!(matches!(img.lookup("/nope"), Err(vexfs_image::Error::NotFound(_))));
    assert!(matches!(img.lookup("/hello.txt/x"), Err(vexfs_image::Error::NotADirectory(_))));
    let (out, _) = fsck::run(img.into_device(), Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
    assert_eq!(out.exit_code(), 0);
}
