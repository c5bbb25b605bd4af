//! `Writer::mknod`: special files (format v3) made by the offline writer. Each kind has its
//! type, permission bits and device number, no data and size 0, a directory entry of its `DT_*`
//! type, reads back after a reopen and fsck finds the filesystem clean; a mode of another type
//! a device number on a FIFO or socket and a name taken are refused, leaving nothing behind.

use vexfs_core::format::dir::{DT_BLK, DT_CHR, DT_FIFO, DT_SOCK};
use vexfs_core::format::inode::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK};
use vexfs_core::format::superblock::ROOT_INO;
use vexfs_image::fsck::{self, Mode};
use vexfs_image::sample::{self, SAMPLE_BLOCKS};
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, Error, Image, MemDevice};

/// A device number in the kernel's `new_encode_dev` layout (include/linux/kdev_t.h).
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn writer() -> Writer<MemDevice> {
    let mut dev = MemDevice::new(SAMPLE_BLOCKS);
    mkfs::format(&mut dev, &sample::params(SAMPLE_BLOCKS), false).unwrap();
    Writer::new(Image::open(dev).unwrap()).unwrap()
}

fn assert_clean(dev: MemDevice, inodes: u64) {
    let (out, _) = fsck::run(dev, Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    assert_eq!(out.exit_code(), 0);
    assert_eq!(out.report.inodes_used, inodes);
}

#[test]
fn special_files_read_back_and_check_clean() {
    let mut w = writer();
    let dev_dir = w.mkdir(ROOT_INO, "dev", 0o755).unwrap();
    let made = [
        (ROOT_INO, "fifo", S_IFIFO | 0o644, 0, DT_FIFO),
        (ROOT_INO, "sock", S_IFSOCK | 0o600, 0, DT_SOCK),
        (dev_dir, "null", S_IFCHR | 0o666, encode_dev(1, 3), DT_CHR),
        (dev_dir, "loop300", S_IFBLK | 0o4660, encode_dev(7, 300), DT_BLK),
    ];
    let mut inos = Vec::new();
    for &(parent, name, mode, rdev, _) in &made {
        inos.push(w.mknod(parent, name, mode, rdev).unwrap());
    }
    // A hard link to a special file has its type too.
    w.link(ROOT_INO, "fifo2", inos[0]).unwrap();
    assert_eq!(encode_dev(7, 300), 0x0010_072c, "minor bits 8-19 at bits 20-31");
    let img = Image::open(w.commit().unwrap().into_device()).unwrap();

    for (&(parent, name, mode, rdev, dt), &ino) in made.iter().zip(&inos) {
        let i = img.inode(ino).unwrap();
        assert_eq!((i.mode, i.rdev, i.links), (mode, rdev, if name == "fifo" { 2 } else { 1 }), "{name}");
        assert_eq!((i.size, i.blocks, i.nr_extents, i.extent_block, i.vec_count), (0, 0, 0, 0, 0), "{name}");
        let entries = img.read_dir(parent, &img.inode(parent).unwrap()).unwrap();
        let e = entries.iter().find(|e| e.name == name.as_bytes()).unwrap();
        assert_eq!((e.ino, e.file_type), (ino, dt), "{name}'s directory entry");
        assert_eq!(img.vec_slots(ino, &i).unwrap(), Vec::<u32>::new(), "{name}");
    }
    let root = img.inode(ROOT_INO).unwrap();
    let fifo2 = img.read_dir(ROOT_INO, &root).unwrap().into_iter().find(|e| e.name == b"fifo2").unwrap();
    assert_eq!((fifo2.ino, fifo2.file_type), (inos[0], DT_FIFO));
    assert_eq!(img.lookup("/dev/loop300").unwrap(), inos[3]);
    // The root, /dev and the four special files.
    assert_clean(img.into_device(), 6);
}

#[test]
fn mknod_refuses_other_types_and_misplaced_device_numbers() {
    let mut w = writer();
    let refused = [
        ("a regular file", S_IFREG | 0o644, 0),
        ("a directory", S_IFDIR | 0o755, 0),
        ("a symlink", S_IFLNK | 0o777, 0),
        ("no type", 0o644, 0),
        ("an unknown type", 0o070000 | 0o644, 0),
        ("a FIFO with a device number", S_IFIFO | 0o644, encode_dev(1, 3)),
        ("a socket with a device number", S_IFSOCK | 0o644, 1),
    ];
    for (case, mode, rdev) in refused {
        match w.mknod(ROOT_INO, "x", mode, rdev) {
            Err(Error::Invalid(_)) => {}
            other => panic!("{case} (mode {mode:o}, rdev {rdev}): {other:?}, not Invalid"),
        }
    }
    // A device numbered 0:0 is a device all the same; a name taken is refused.
    let ino = w.mknod(ROOT_INO, "x", S_IFCHR | 0o600, 0).unwrap();
    assert!(matches!(w.mknod(ROOT_INO, "x", S_IFIFO | 0o600, 0), Err(Error::Invalid(_))));
    let img = Image::open(w.commit().unwrap().into_device()).unwrap();
    let root = img.inode(ROOT_INO).unwrap();
    let names: Vec<Vec<u8>> = img.read_dir(ROOT_INO, &root).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, [b"x".to_vec()], "only the device was made");
    let i = img.inode(ino).unwrap();
    assert_eq!((i.mode & S_IFMT, i.rdev), (S_IFCHR, 0));
    // Nothing left behind by the refusals: the root and the device.
    assert_clean(img.into_device(), 2);
}
