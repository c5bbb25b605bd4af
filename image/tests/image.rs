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

/// `Image::remember_checked` (the bulk loader's): an extent node that passed its whole check
/// is not checked again when read again, until it is written through the image. The root of
/// a deep tree gets a non-zero reserved field behind the image's back (a change only the
/// whole check sees): the remembering image still reads the file, a fresh image refuses it,
/// and the remembering image refuses it too once the node is written through it.
#[test]
fn remembered_nodes_are_checked_again_after_a_write() {
    use vexfs_core::format::extent::EXTENT_HEADER;
    use vexfs_core::io::BlockDevice;
    use vexfs_image::writer::{FileOpts, Writer};

    let mut dev = MemDevice::new(SAMPLE_BLOCKS);
    mkfs::format(&mut dev, &sample::params(SAMPLE_BLOCKS), false).unwrap();
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    let data: Vec<u8> = (0..16 * 4096).map(|i| (i % 251) as u8 + 1).collect();
    let opts = FileOpts { max_extent_blocks: 1, tree_fanout: 2, ..FileOpts::default() };
    let ino = w.create_with(ROOT_INO, "deep", &data, opts).unwrap();
    let dev = w.commit().unwrap().into_device();

    let mut img = Image::open(dev).unwrap();
    img.remember_checked();
    let inode = img.inode(ino).unwrap();
    assert!(inode.extent_block != 0, "the file has an extent tree");
    assert_eq!(img.read_file(ino, &inode).unwrap(), data);
    let root = inode.extent_block;
    let mut b = [0u8; 4096];
    img.device().read_block(root, &mut b).unwrap();
    // Entry 0 of the root (an index node at fanout 2 over 16 extents): its reserved word.
    b[EXTENT_HEADER + 4] = 1;
    img.device_mut().write_block(root, &b).unwrap();
    assert_eq!(img.read_file(ino, &inode).unwrap(), data, "a remembered node is not checked again");
    let fresh = Image::open(img.device().clone()).unwrap();
    assert!(fresh.read_file(ino, &inode).is_err(), "a fresh image checks the node and refuses it");
    img.write_block(root, &b).unwrap();
    assert!(img.read_file(ino, &inode).is_err(), "written through the image, the node is checked again");
}
