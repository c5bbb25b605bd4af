//! Inodes: roundtrip, and one test per check of `Inode::decode`.
// Test code, helpers included: a failed unwrap is the test's failure report (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vexfs_core::crc32c::crc32c_parts;
use vexfs_core::error::{FormatError, EUCLEAN};
use vexfs_core::format::extent::Extent;
use vexfs_core::format::inode::*;
use vexfs_core::format::le::{put_u32, put_u64};
use vexfs_core::format::INODE_SIZE;

const INO: u64 = 5;

fn file() -> Inode {
    let mut extents = [Extent::default(); INLINE_EXTENTS];
    extents[0] = Extent { logical: 0, len: 3, start: 900 };
    extents[1] = Extent { logical: 10, len: 1, start: 950 };
    Inode {
        mode: S_IFREG | 0o644,
        links: 1,
        uid: 1000,
        gid: 100,
        size: 11 * 4096 - 5,
        atime_sec: 1,
        mtime_sec: -2,
        ctime_sec: 3,
        atime_nsec: 4,
        mtime_nsec: 999_999_999,
        ctime_nsec: 6,
        generation: 77,
        blocks: 4,
        nr_extents: 2,
        extents,
        ..Inode::default()
    }
}

fn raw(i: &Inode) -> [u8; INODE_SIZE] {
    let mut r = [0u8; INODE_SIZE];
    i.encode(INO, &mut r);
    r
}

/// Recomputes the checksum (seeded with the inode number) after raw edits.
fn reseal(r: &mut [u8]) {
    let c = crc32c_parts(&[&INO.to_le_bytes(), &r[..252]]);
    put_u32(r, 252, c);
}

fn assert_corrupt(i: &Inode, what: &'static str, value: u64) {
    let e = Inode::decode(INO, &raw(i)).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what, value });
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn roundtrip() {
    for i in [file(), Inode { mode: S_IFDIR | 0o755, links: 2, parent: 1, ..Inode::default() }] {
        assert_eq!(Inode::decode(INO, &raw(&i)).unwrap(), i);
    }
    let mut big = file();
    big.nr_extents = (INLINE_EXTENTS + 1) as u32;
    big.extent_block = 1234;
    assert_eq!(Inode::decode(INO, &raw(&big)).unwrap(), big);
}

#[test]
fn bad_checksum() {
    let mut r = raw(&file());
    r[20] ^= 1;
    let e = Inode::decode(INO, &r).unwrap_err();
    assert!(matches!(e, FormatError::BadChecksum { what: "inode", .. }), "{e:?}");
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn checksum_is_seeded_with_the_inode_number() {
    let r = raw(&file());
    let e = Inode::decode(INO + 1, &r).unwrap_err();
    assert!(matches!(e, FormatError::BadChecksum { what: "inode", .. }), "{e:?}");
}

#[test]
fn zeroed_slot_does_not_decode() {
    let e = Inode::decode(INO, &[0u8; INODE_SIZE]).unwrap_err();
    assert!(matches!(e, FormatError::BadChecksum { .. }), "{e:?}");
}

#[test]
fn truncated() {
    assert_eq!(Inode::decode(INO, &[0u8; 100]).unwrap_err(), FormatError::Truncated { what: "inode", len: 100 });
}

#[test]
fn mode() {
    let mut i = file();
    i.mode = 0o030000 | 0o644; // no file type
    assert_corrupt(&i, "inode mode", 0o030000);
}

#[test]
fn special_files() {
    // Format v3: FIFOs, sockets and devices; a device keeps its number in rdev (byte 188).
    let special = |mode: u16, rdev: u32| Inode { mode, links: 1, rdev, ..Inode::default() };
    for i in [
        special(S_IFIFO | 0o644, 0),
        special(S_IFSOCK | 0o755, 0),
        special(S_IFCHR | 0o600, 0x0010_0301),
        special(S_IFBLK | 0o660, 7 << 8),
    ] {
        let r = raw(&i);
        assert_eq!(u32::from_le_bytes(r[188..192].try_into().unwrap()), i.rdev);
        assert_eq!(Inode::decode(INO, &r).unwrap(), i);
        assert!(is_special(i.mode));
    }
    // A device number on a file that is no device, or data on a special file: corrupt.
    assert_corrupt(&Inode { rdev: 5, ..file() }, "device number of a file that is no device", 5);
    assert_corrupt(&special(S_IFIFO | 0o644, 9), "device number of a file that is no device", 9);
    assert_corrupt(&Inode { size: 4096, ..special(S_IFCHR, 1) }, "size or blocks of a special file", 4096);
}

#[test]
fn flags() {
    let mut i = file();
    i.flags = 1;
    assert_corrupt(&i, "inode flags", 1);
    i.flags = 4;
    assert_corrupt(&i, "inode flags", 4);
    // A regular file may have blocks preallocated past its size; no other file may.
    i.flags = INODE_FLAG_EOFBLOCKS;
    assert_eq!(Inode::decode(INO, &raw(&i)).unwrap(), i);
    i.mode = S_IFDIR | 0o755;
    assert_corrupt(&i, "inode flags", u64::from(INODE_FLAG_EOFBLOCKS));
    i.flags = INODE_FLAG_INDEX | INODE_FLAG_EOFBLOCKS;
    assert_corrupt(&i, "inode flags", 3);
}

#[test]
fn rdev_word_of_a_regular_file() {
    // Reserved zero in v2, `rdev` in v3: still zero on anything but a device.
    let mut r = raw(&file());
    put_u32(&mut r, 188, 1);
    reseal(&mut r);
    assert_eq!(
        Inode::decode(INO, &r).unwrap_err(),
        FormatError::Corrupt { what: "device number of a file that is no device", value: 1 }
    );
}

#[test]
fn reserved_tail() {
    let mut r = raw(&file());
    r[251] = 1;
    reseal(&mut r);
    assert_eq!(Inode::decode(INO, &r).unwrap_err(), FormatError::Corrupt { what: "inode reserved bytes", value: 0 });
}

#[test]
fn size() {
    let mut i = file();
    i.size = MAX_FILE_SIZE + 1;
    assert_corrupt(&i, "inode size", MAX_FILE_SIZE + 1);
}

#[test]
fn extent_count_has_no_fixed_limit() {
    // Format v3: the extents past the inline ones live in a tree (the inode decoder does not
    // bound their number; the tree's walk counts them).
    let mut i = file();
    i.nr_extents = 1_000_000;
    i.extent_block = 99;
    let mut raw = [0u8; INODE_SIZE];
    i.encode(5, &mut raw);
    assert_eq!(Inode::decode(5, &raw).unwrap(), i);
}

#[test]
fn extents_beyond_inline_need_an_extent_block() {
    let mut i = file();
    i.nr_extents = INLINE_EXTENTS as u32 + 1;
    assert_corrupt(&i, "inode extent block", 0);
}

#[test]
fn extent_block_without_extents_beyond_inline() {
    let mut i = file();
    i.extent_block = 99;
    assert_corrupt(&i, "inode extent block", 99);
}

#[test]
fn nsec() {
    for field in 0..3 {
        let mut i = file();
        let bad = 1_000_000_000 + field;
        match field {
            0 => i.atime_nsec = bad,
            1 => i.mtime_nsec = bad,
            _ => i.ctime_nsec = bad,
        }
        assert_corrupt(&i, "inode timestamp nanoseconds", bad as u64);
    }
}

#[test]
fn links_zero_is_an_orphan_not_corruption() {
    // Format v2: an inode in use with no link is an orphan (freed after a crash), not corrupt.
    let mut i = file();
    i.links = 0;
    let mut raw = [0u8; INODE_SIZE];
    i.encode(7, &mut raw);
    assert_eq!(Inode::decode(7, &raw).unwrap().links, 0);
}

#[test]
fn vector_fields_roundtrip() {
    let mut i = file();
    i.vec_count = 5;
    i.vec_block = 4321;
    i.vec_ids = [1, 2, 3, 4];
    let mut r = raw(&i);
    assert_eq!(Inode::decode(INO, &r).unwrap(), i);
    put_u64(&mut r, 192, 1);
    assert!(matches!(Inode::decode(INO, &r), Err(FormatError::BadChecksum { .. })));
}

#[test]
fn extent_map() {
    let e = Extent { logical: 10, len: 3, start: 100 };
    assert_eq!(e.map(9), None);
    assert_eq!(e.map(10), Some(100));
    assert_eq!(e.map(12), Some(102));
    assert_eq!(e.map(13), None);
    assert_eq!(e.logical_end(), 13);
}
