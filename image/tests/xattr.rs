//! `Writer::set_xattr`: extended attributes (format v3) set and removed by the offline writer.
//! The first attribute of a file allocates its xattr block, the last frees it (the free block
//! count follows, the inode's `blocks` does not); attributes read back through
//! `Image::xattrs` after a reopen and fsck finds the filesystem clean; what the core's
//! `SetError` refuses (a bad name or namespace, attributes past the block's 4,064 bytes), a NUL
//! in a name, `user.` on a special file and an inode not in use are `Invalid`, leaving nothing
//! behind.

use vexfs_core::format::inode::S_IFIFO;
use vexfs_core::format::superblock::ROOT_INO;
use vexfs_core::format::xattr::{XATTR_SECURITY, XATTR_SPACE, XATTR_TRUSTED, XATTR_USER, XATTR_VALUE_MAX};
use vexfs_image::fsck::{self, Mode};
use vexfs_image::sample::{self, SAMPLE_BLOCKS};
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, Error, Image, MemDevice};

fn writer() -> Writer<MemDevice> {
    let mut dev = MemDevice::new(SAMPLE_BLOCKS);
    mkfs::format(&mut dev, &sample::params(SAMPLE_BLOCKS), false).unwrap();
    Writer::new(Image::open(dev).unwrap()).unwrap()
}

fn assert_clean(dev: MemDevice) {
    let (out, _) = fsck::run(dev, Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    assert_eq!(out.exit_code(), 0);
}

fn invalid<T: std::fmt::Debug>(r: Result<T, Error>, needle: &str, case: &str) {
    match r {
        Err(Error::Invalid(m)) => assert!(m.contains(needle), "{case}: {m:?} does not say {needle:?}"),
        other => panic!("{case}: {other:?}, not Invalid"),
    }
}

type Attrs = Vec<(u8, Vec<u8>, Vec<u8>)>;

fn attrs(w: &Writer<MemDevice>, ino: u32) -> Attrs {
    let img = w.image();
    img.xattrs(ino, &img.inode(ino).unwrap()).unwrap()
}

#[test]
fn attributes_allocate_their_block_read_back_and_free_it() {
    let mut w = writer();
    let file = w.create(ROOT_INO, "f", b"data").unwrap();
    let dir = w.mkdir(ROOT_INO, "d", 0o755).unwrap();
    let fifo = w.mknod(ROOT_INO, "p", S_IFIFO | 0o644, 0).unwrap();
    let free0 = w.image().sb().free_blocks;
    let blocks0 = w.image().inode(file).unwrap().blocks;

    let long: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    assert!(!w.set_xattr(file, XATTR_USER, "mime", Some(b"text/plain")).unwrap());
    let blk = w.image().inode(file).unwrap().xattr_block;
    assert_ne!(blk, 0, "the first attribute allocates the block");
    assert_eq!(w.image().sb().free_blocks, free0 - 1);
    assert_eq!(w.image().inode(file).unwrap().blocks, blocks0, "not counted in blocks");
    assert!(!w.set_xattr(file, XATTR_TRUSTED, "nul", Some(b"a\0b")).unwrap());
    assert!(!w.set_xattr(file, XATTR_SECURITY, "long", Some(&long)).unwrap());
    // Replaced in place: existed, same block.
    assert!(w.set_xattr(file, XATTR_USER, "mime", Some(b"text/x-rust")).unwrap());
    assert_eq!(w.image().inode(file).unwrap().xattr_block, blk);
    assert_eq!(w.image().sb().free_blocks, free0 - 1);
    // The same name in another namespace is another attribute.
    assert!(!w.set_xattr(dir, XATTR_USER, "nul", Some(b"")).unwrap());
    assert!(!w.set_xattr(fifo, XATTR_TRUSTED, "t", Some(b"fifo")).unwrap());
    assert_eq!(w.image().sb().free_blocks, free0 - 3);
    // Removing one that is not there changes nothing.
    assert!(!w.set_xattr(file, XATTR_USER, "absent", None).unwrap());
    assert!(!w.set_xattr(ROOT_INO, XATTR_USER, "absent", None).unwrap());
    assert_eq!(w.image().inode(ROOT_INO).unwrap().xattr_block, 0);

    let img = Image::open(w.commit().unwrap().into_device()).unwrap();
    let i = img.inode(file).unwrap();
    assert_eq!(
        img.xattrs(file, &i).unwrap(),
        [
            (XATTR_TRUSTED, b"nul".to_vec(), b"a\0b".to_vec()),
            (XATTR_SECURITY, b"long".to_vec(), long.clone()),
            (XATTR_USER, b"mime".to_vec(), b"text/x-rust".to_vec()),
        ]
    );
    assert_eq!(img.xattrs(dir, &img.inode(dir).unwrap()).unwrap(), [(XATTR_USER, b"nul".to_vec(), vec![])]);
    assert_eq!(
        img.xattrs(fifo, &img.inode(fifo).unwrap()).unwrap(),
        [(XATTR_TRUSTED, b"t".to_vec(), b"fifo".to_vec())]
    );
    let dev = img.into_device();
    assert_clean(dev.clone());

    // Removing the last attribute frees the block (after a reopen: from the committed image).
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    let free = w.image().sb().free_blocks;
    assert!(w.set_xattr(file, XATTR_USER, "mime", None).unwrap());
    assert!(w.set_xattr(file, XATTR_TRUSTED, "nul", None).unwrap());
    assert_ne!(w.image().inode(file).unwrap().xattr_block, 0);
    assert!(w.set_xattr(file, XATTR_SECURITY, "long", None).unwrap());
    assert_eq!(w.image().inode(file).unwrap().xattr_block, 0, "the last attribute frees the block");
    assert!(w.set_xattr(fifo, XATTR_TRUSTED, "t", None).unwrap());
    assert_eq!(w.image().sb().free_blocks, free + 2);
    assert_eq!(attrs(&w, file), Attrs::new());
    assert_eq!(attrs(&w, dir).len(), 1);
    let img = Image::open(w.commit().unwrap().into_device()).unwrap();
    assert_eq!(img.inode(file).unwrap().xattr_block, 0);
    assert_eq!(img.inode(fifo).unwrap().xattr_block, 0);
    assert_clean(img.into_device());
}

#[test]
fn the_limit_and_bad_names_are_refused_leaving_nothing() {
    let mut w = writer();
    let file = w.create(ROOT_INO, "f", b"data").unwrap();
    let fifo = w.mknod(ROOT_INO, "p", S_IFIFO | 0o644, 0).unwrap();
    let free0 = w.image().sb().free_blocks;
    // Refused before any block is taken.
    invalid(w.set_xattr(file, XATTR_USER, "n", Some(&vec![1u8; XATTR_VALUE_MAX + 1])), "ENOSPC", "value too large");
    invalid(w.set_xattr(file, XATTR_USER, "", Some(b"x")), "ERANGE", "empty name");
    invalid(w.set_xattr(file, XATTR_USER, &"n".repeat(256), Some(b"x")), "ERANGE", "256-byte name");
    invalid(w.set_xattr(file, 9, "n", Some(b"x")), "ERANGE", "unknown namespace");
    invalid(w.set_xattr(file, XATTR_USER, "a\0b", Some(b"x")), "NUL", "NUL in the name");
    invalid(w.set_xattr(fifo, XATTR_USER, "n", Some(b"x")), "EPERM", "user. on a FIFO");
    invalid(w.set_xattr(40, XATTR_USER, "n", Some(b"x")), "not in use", "a free inode");
    invalid(w.set_xattr(0, XATTR_USER, "n", Some(b"x")), "not in use", "inode 0");
    assert_eq!(w.image().inode(file).unwrap().xattr_block, 0);
    assert_eq!(w.image().sb().free_blocks, free0);

    // Exactly the limit: one attribute with a one-byte name and the largest value; then any
    // other attribute, even empty, is refused, and the block keeps what it had.
    let full = vec![7u8; XATTR_VALUE_MAX];
    w.set_xattr(file, XATTR_USER, "n", Some(&full)).unwrap();
    invalid(w.set_xattr(file, XATTR_TRUSTED, "m", Some(b"")), "ENOSPC", "past the limit");
    invalid(w.set_xattr(file, XATTR_USER, "n", Some(&vec![0u8; XATTR_VALUE_MAX + 1])), "ENOSPC", "grown");
    assert_eq!(attrs(&w, file), [(XATTR_USER, b"n".to_vec(), full.clone())]);
    // Smaller entries up to the limit: 4 + 2 + 58 = 64 bytes each, 63 fit in 4,064 bytes.
    let mut w2 = writer();
    let f2 = w2.create(ROOT_INO, "g", b"").unwrap();
    for k in 0..XATTR_SPACE / 64 {
        w2.set_xattr(f2, XATTR_SECURITY, &format!("{k:02}"), Some(&[k as u8; 58])).unwrap();
    }
    invalid(w2.set_xattr(f2, XATTR_SECURITY, "zz", Some(&[0u8; 58])), "ENOSPC", "a 64th entry");
    assert_eq!(attrs(&w2, f2).len(), XATTR_SPACE / 64);
    assert_clean(w2.commit().unwrap().into_device());
    assert_clean(w.commit().unwrap().into_device());
}
