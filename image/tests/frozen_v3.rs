//! The frozen image of on-disk format v3 (`tests/images/v3.img.gz`: extent trees) reads exactly
//! as its manifest (`tests/images/v3.manifest`) says: superblock, HNSW header, every path and
//! inode, the shape of every inode's extent tree (root depth, node blocks, extents: a depth-1
//! tree over 3 leaves, a sparse one over 2, a full root leaf of 254, a root leaf of 1, 6 inline
//! extents and no tree), file contents, symlink targets, the special files (a FIFO, a socket, a
//! character device 1:3 and a block device 7:300: type, mode, no data, the device numbers),
//! every inode's extended attributes (`user.`, `trusted.` and `security.` ones on a file, a
//! `user.` one on a directory, a `trusted.` one on a device), chunk lists, vector bits and the exact k-NN answers; and fsck finds it clean.
//!
//! The committed bytes are read, never regenerated. The tests after the first tamper with the
//! manifest to show that each kind of item is checked, and with the tree's nodes (checksums
//! recomputed, so only the tree checks can see it) and with an xattr block, to show that a
//! damaged tree or xattr block is reported by fsck and the reader as an error, never a panic.

mod frozen;

use frozen::{assert_caught, committed, each_edit_caught, verify};
use vexfs_core::format::block::seal_header;
use vexfs_core::format::dir::{DT_BLK, DT_CHR, DT_FIFO, DT_SOCK};
use vexfs_core::format::extent::EXTENT_MAGIC;
use vexfs_core::format::inode::{Inode, S_IFBLK, S_IFCHR, S_IFIFO, S_IFSOCK};
use vexfs_core::format::xattr::{XATTR_MAGIC, XATTR_SECURITY, XATTR_TRUSTED, XATTR_USER};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck::{self, Kind, Mode};
use vexfs_image::{Image, MemDevice};

#[test]
fn the_v3_image_reads_as_its_manifest_says() {
    let (manifest, raw) = committed(3);
    let bad = verify(&manifest, &raw, 3);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn a_wrong_manifest_item_of_any_kind_is_caught() {
    let (manifest, raw) = committed(3);
    let line = |prefix: &str| manifest.lines().find(|l| l.starts_with(prefix)).unwrap().to_string();
    let xattr_line = line("xattr 5 trusted.");
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("image hash", "image ".into(), format!("{}0", &line("image ")[..line("image ").len() - 1]), "image sha256"),
        ("superblock", "sb hnsw_seed ".into(), "sb hnsw_seed 20261201".into(), "superblock hnsw_seed"),
        ("format version", "sb format_version ".into(), "sb format_version 2".into(), "superblock format_version"),
        ("header", "hnsw live ".into(), "hnsw live 5".into(), "hnsw header live"),
        ("inode blocks", "inode 4 ".into(), line("inode 4 ").replace(" 768 ", " 767 "), "inode 4"),
        ("tree depth", "tree 4 ".into(), "tree 4 2 4 764".into(), "extent tree of inode 4"),
        ("tree nodes", "tree 9 ".into(), "tree 9 1 2 261".into(), "extent tree of inode 9"),
        ("tree extents", "tree 8 ".into(), "tree 8 0 1 259".into(), "extent tree of inode 8"),
        ("a tree that is not there", "tree 5 ".into(), "tree 5 0 1 6".into(), "extent tree of inode 5"),
        ("a tree said absent", "tree 7 ".into(), "tree 7 - 0 7".into(), "extent tree of inode 7"),
        ("missing tree", "tree 3 ".into(), String::new(), "inodes with a tree item"),
        ("missing path", "path 10 ".into(), String::new(), "the tree (path -> inode)"),
        ("content", "data 9 ".into(), line("data 9 ").replace("data 9 8", "data 9 9"), "sha256 of inode 9"),
        ("deep content", "data 4 ".into(), line("data 4 ").replace("data 4 e", "data 4 f"), "sha256 of inode 4"),
        ("target", "target 10 ".into(), "target 10 dir/sparse.bim".into(), "symlink target of inode 10"),
        ("slots", "slots 4 ".into(), "slots 4 1 3 2".into(), "chunk list of inode 4"),
        ("chunk bits", "chunk 7 1 ".into(), line("chunk 7 1 ").replacen("3fc00000", "3fc00001", 1), "vector of"),
        ("missing chunk", "chunk 4 2 ".into(), String::new(), "chunks per file"),
        ("query", "query 1 ".into(), line("query 1 ").replacen("query 1 6 ", "query 1 5 ", 1), "answers to query 1"),
        ("hit order", "hit 1 2 ".into(), line("hit 1 2 ").replacen("hit 1 2 ", "hit 1 3 ", 1), "answers to query 1"),
        ("hit path", "hit 0 1 ".into(), line("hit 0 1 ").replace("deep.bin", "dir/deep-alias"), "answers to query 0"),
        ("unknown item", "tree 1 ".into(), "trees 1 - 0 1".into(), "unknown manifest item"),
        ("fifo mode", "inode 11 ".into(), line("inode 11 ").replace(" fifo 10640 ", " fifo 10644 "), "inode 11"),
        ("socket type", "inode 12 ".into(), line("inode 12 ").replace(" socket 140755 ", " file 100755 "), "inode 12"),
        ("chrdev type", "inode 13 ".into(), line("inode 13 ").replace(" chrdev 20666 ", " blkdev 60666 "), "inode 13"),
        ("rdev minor", "rdev 13 ".into(), "rdev 13 1:5".into(), "device number (rdev) of inode 13"),
        ("rdev high minor", "rdev 14 ".into(), "rdev 14 7:44".into(), "device number (rdev) of inode 14"),
        ("rdev major", "rdev 14 ".into(), "rdev 14 8:300".into(), "device number (rdev) of inode 14"),
        ("missing rdev", "rdev 13 ".into(), String::new(), "devices with an rdev item"),
        ("missing special path", "path 12 ".into(), String::new(), "the tree (path -> inode)"),
        ("xattr value", "xattr 5 user.".into(), "xattr 5 user.mime_type 74657874".into(), "attributes of inode 5"),
        (
            "xattr NUL dropped",
            "xattr 5 trusted.".into(),
            xattr_line.replace("00616674", "616674"),
            "attributes of inode 5",
        ),
        ("xattr name", "xattr 6 ".into(), line("xattr 6 ").replace(".comment ", ".comments "), "attributes of inode 6"),
        (
            "xattr namespace",
            "xattr 13 ".into(),
            line("xattr 13 ").replace("trusted.", "security."),
            "attributes of inode 13",
        ),
        ("missing xattr", "xattr 5 security.".into(), String::new(), "extended attributes of inode 5"),
        ("missing only xattr", "xattr 13 ".into(), String::new(), "extended attributes of inode 13"),
        (
            "xattr said of a file without",
            "xattr 6 ".into(),
            line("xattr 6 ").replace("xattr 6 ", "xattr 2 "),
            "attributes of inode 2",
        ),
        (
            "xattr of a free inode",
            "xattr 13 ".into(),
            line("xattr 13 ").replace("xattr 13 ", "xattr 40 "),
            "not in use",
        ),
    ];
    each_edit_caught(&manifest, &raw, 3, cases);
}

/// The special files as the image holds them; a changed device number or type in an inode
/// (checksum recomputed) is a difference of the manifest.
#[test]
fn the_special_files_and_a_changed_device_number() {
    let (manifest, raw) = committed(3);
    let img = Image::open(MemDevice { bytes: raw.clone() }).unwrap();
    let kinds = [
        ("/fifo", S_IFIFO | 0o640, 0, DT_FIFO),
        ("/sock", S_IFSOCK | 0o755, 0, DT_SOCK),
        ("/dir/null", S_IFCHR | 0o666, 0x103, DT_CHR),
        // 7:300: minor bits 8-19 (1) at bits 20-31.
        ("/loop300", S_IFBLK | 0o660, 0x0010_072c, DT_BLK),
    ];
    for (path, mode, rdev, dt) in kinds {
        let ino = img.lookup(path).unwrap();
        let i = img.inode(ino).unwrap();
        assert_eq!((i.mode, i.rdev, i.size, i.blocks, i.nr_extents), (mode, rdev, 0, 0, 0), "{path}");
        let (dir, name) = path.rsplit_once('/').unwrap();
        let d = img.lookup(if dir.is_empty() { "/" } else { dir }).unwrap();
        let e = img.read_dir(d, &img.inode(d).unwrap()).unwrap().into_iter().find(|e| e.name == name.as_bytes());
        assert_eq!(e.map(|e| (e.ino, e.file_type)), Some((ino, dt)), "{path}'s directory entry");
    }
    let changed = |path: &str, f: &dyn Fn(&mut Inode)| {
        let mut img = Image::open(MemDevice { bytes: raw.clone() }).unwrap();
        let ino = img.lookup(path).unwrap();
        let mut i = img.inode(ino).unwrap();
        f(&mut i);
        img.write_inode(ino, &i).unwrap();
        (ino, img.into_device().bytes)
    };
    let (ino, b) = changed("/dir/null", &|i| i.rdev = 0x105);
    assert_caught(&verify(&manifest, &b, 3), &format!("device number (rdev) of inode {ino}"), "rdev 1:5");
    let (ino, b) = changed("/loop300", &|i| i.mode = S_IFCHR | 0o660);
    assert_caught(&verify(&manifest, &b, 3), &format!("inode {ino}"), "a block device made a character one");
}

/// The node blocks of `/deep.bin` (root first, then its 3 leaves) and its inode number.
fn deep_nodes(raw: &[u8]) -> (u32, Vec<u64>) {
    let img = Image::open(MemDevice { bytes: raw.to_vec() }).unwrap();
    let ino = img.lookup("/deep.bin").unwrap();
    let nodes = img.extent_nodes(ino, &img.inode(ino).unwrap()).unwrap();
    assert_eq!(nodes.len(), 4, "an index root over 3 leaves");
    (ino, nodes)
}

/// `raw` with node block `n` of inode `ino` changed by `f`, its checksum recomputed.
fn with_node(raw: &[u8], ino: u32, n: u64, f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut b = raw.to_vec();
    let node = &mut b[n as usize * BLOCK_SIZE..][..BLOCK_SIZE];
    f(node);
    seal_header(node, EXTENT_MAGIC, n, u64::from(ino));
    b
}

fn put_u32(node: &mut [u8], off: usize, v: u32) {
    node[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn u32_at(node: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(node[off..off + 4].try_into().unwrap())
}

/// Offset of entry `i` of an extent node (32-byte header, 16-byte entries).
fn entry(i: usize) -> usize {
    32 + 16 * i
}

#[test]
fn a_damaged_tree_is_reported_not_a_panic() {
    let (manifest, raw) = committed(3);
    let (ino, nodes) = deep_nodes(&raw);
    let (root, leaf0, leaf1, leaf2) = (nodes[0], nodes[1], nodes[2], nodes[3]);
    let block = |n: u64| raw[n as usize * BLOCK_SIZE..][..BLOCK_SIZE].to_vec();
    // The shape the cases below rely on: root depth 1 with 3 index entries, leaves of 254, 254,
    // 250 extents, keys 6, 260, 514 (the inline extents hold file blocks 0..6).
    assert_eq!((u32_at(&block(root), 24), block(root)[28]), (3, 1));
    let keys: Vec<u32> = (0..3).map(|i| u32_at(&block(root), entry(i))).collect();
    assert_eq!(keys, [6, 260, 514]);
    let counts: Vec<u32> = [leaf0, leaf1, leaf2].iter().map(|&n| u32_at(&block(n), 24)).collect();
    assert_eq!(counts, [254, 254, 250]);

    let child1 = block(root)[entry(1) + 8..entry(1) + 16].to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // The second leaf's key one past its first extent: that extent lies below its range.
        ("index key", with_node(&raw, ino, root, |n| put_u32(n, entry(1), 261))),
        // The keys out of order.
        ("index keys out of order", with_node(&raw, ino, root, |n| put_u32(n, entry(2), 200))),
        // The third entry leads to the second leaf too: its extents lie outside that range.
        ("index child", with_node(&raw, ino, root, |n| n[entry(2) + 8..entry(2) + 16].copy_from_slice(&child1))),
        // An index entry's reserved word set.
        ("index reserved", with_node(&raw, ino, root, |n| put_u32(n, entry(0) + 4, 1))),
        // A child outside the data region.
        ("index child outside", with_node(&raw, ino, root, |n| n[entry(0) + 8..entry(0) + 16].fill(0))),
        // The root read as a leaf: its index entries as extents (of length 0).
        ("root depth 0", with_node(&raw, ino, root, |n| n[28] = 0)),
        // The root one level deeper than its children.
        ("root depth 2", with_node(&raw, ino, root, |n| n[28] = 2)),
        // A leaf that says it is an index node.
        ("leaf depth", with_node(&raw, ino, leaf1, |n| n[28] = 1)),
        // An empty leaf.
        ("leaf count 0", with_node(&raw, ino, leaf2, |n| put_u32(n, 24, 0))),
        // A leaf holding more entries than a node has.
        ("leaf count 255", with_node(&raw, ino, leaf0, |n| put_u32(n, 24, 255))),
        // Two extents of a leaf out of order.
        ("leaf order", with_node(&raw, ino, leaf1, |n| put_u32(n, entry(10), u32_at(n, entry(9))))),
        // A leaf's first extent moved below its key.
        ("leaf below key", with_node(&raw, ino, leaf2, |n| put_u32(n, entry(0), 513))),
        // A leaf of another file.
        ("leaf owner", {
            let mut b = raw.clone();
            let n = &mut b[leaf0 as usize * BLOCK_SIZE..][..BLOCK_SIZE];
            seal_header(n, EXTENT_MAGIC, leaf0, u64::from(ino) + 1);
            b
        }),
        // A node whose checksum was not recomputed.
        ("stale checksum", {
            let mut b = raw.clone();
            b[leaf1 as usize * BLOCK_SIZE + entry(3)] ^= 1;
            b
        }),
    ];
    let inode_name = format!("inode {ino}");
    for (case, b) in cases {
        assert_ne!(b, raw, "{case}: the image is changed");
        // The reader: an error naming the inode, not a panic.
        let img = Image::open(MemDevice { bytes: b.clone() }).unwrap();
        let inode = img.inode(ino).unwrap();
        let err = img.read_file(ino, &inode).expect_err(case).to_string();
        assert!(err.contains(&inode_name), "{case}: the reader's error does not name {inode_name}: {err}");
        // fsck -n: the problem reported, naming the inode; exit status 4 (errors left).
        let (out, _) = fsck::run(MemDevice { bytes: b.clone() }, Mode::Check).unwrap();
        assert!(
            out.report.problems.iter().any(|p| p.message.contains(&inode_name)),
            "{case}: fsck does not report {inode_name}: {:?}",
            out.report.problems
        );
        assert_eq!(out.exit_code(), 4, "{case}: fsck -n exit status");
        // fsck -y runs to its end (whatever it can repair), and what it leaves checks clean
        // or reports what is left, without a panic either way.
        if let Ok((_, dev)) = fsck::run(MemDevice { bytes: b.clone() }, Mode::Repair) {
            fsck::run(dev, Mode::Check).unwrap();
        }
        // The manifest sees it too.
        let bad = verify(&manifest, &b, 3);
        assert_caught(&bad, &format!("extent tree of inode {ino}"), case);
        assert_caught(&bad, &format!("sha256 of inode {ino}"), case);
    }
}

/// The attributes as the image holds them: `/six.bin` a `user.`, a `trusted.` (NUL bytes in its
/// value) and a `security.` one of the same name (1,000 bytes), `/dir` a `user.` one,
/// `/dir/null` a `trusted.` one; every other inode none.
#[test]
fn the_extended_attributes() {
    let (_, raw) = committed(3);
    let img = Image::open(MemDevice { bytes: raw }).unwrap();
    let attrs = |path: &str| {
        let ino = img.lookup(path).unwrap();
        img.xattrs(ino, &img.inode(ino).unwrap()).unwrap()
    };
    let six = attrs("/six.bin");
    let names: Vec<(u8, &[u8])> = six.iter().map(|(i, n, _)| (*i, &n[..])).collect();
    assert_eq!(names, [(XATTR_USER, &b"mime_type"[..]), (XATTR_TRUSTED, b"label"), (XATTR_SECURITY, b"label")]);
    assert_eq!(six[1].2, b"before\0after\0");
    assert_eq!(six[2].2.len(), 1000);
    assert_eq!(attrs("/dir"), [(XATTR_USER, b"comment".to_vec(), b"a directory of extent trees".to_vec())]);
    assert_eq!(attrs("/dir/null"), [(XATTR_TRUSTED, b"device".to_vec(), b"1:3 null".to_vec())]);
    for path in ["/", "/hello.txt", "/deep.bin", "/fifo", "/loop300", "/link"] {
        assert_eq!(attrs(path), Vec::new(), "{path}");
    }
}

#[test]
fn a_damaged_xattr_block_is_reported_not_a_panic() {
    let (manifest, raw) = committed(3);
    let img = Image::open(MemDevice { bytes: raw.clone() }).unwrap();
    let ino = img.lookup("/six.bin").unwrap();
    let blk = img.inode(ino).unwrap().xattr_block;
    assert_ne!(blk, 0);
    // The entries: user.mime_type (4 + 9 + 24 = 37, padded to 40 bytes), trusted.label (4 + 5
    // + 13 = 22, 24 bytes), security.label (4 + 5 + 1000 = 1009, 1012 bytes).
    let (e0, e1, e2) = (32usize, 72usize, 96usize);
    let block = &raw[blk as usize * BLOCK_SIZE..][..BLOCK_SIZE];
    assert_eq!((u32_at(block, 24), u32_at(block, 28)), (3, 40 + 24 + 1012));
    assert_eq!((block[e0], block[e1], block[e2]), (XATTR_USER, XATTR_TRUSTED, XATTR_SECURITY));
    let damaged = |f: &dyn Fn(&mut [u8])| {
        let mut b = raw.clone();
        let x = &mut b[blk as usize * BLOCK_SIZE..][..BLOCK_SIZE];
        f(x);
        seal_header(x, XATTR_MAGIC, blk, u64::from(ino));
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("count one more", damaged(&|x| put_u32(x, 24, 4))),
        ("count one less", damaged(&|x| put_u32(x, 24, 2))),
        ("used past the block", damaged(&|x| put_u32(x, 28, 4068))),
        ("used not a multiple of 4", damaged(&|x| put_u32(x, 28, 1074))),
        // An entry's value length past the used bytes, then one that misaligns the next entry.
        ("value length", damaged(&|x| x[e2 + 2..e2 + 4].copy_from_slice(&2000u16.to_le_bytes()))),
        ("value length misaligned", damaged(&|x| x[e0 + 2..e0 + 4].copy_from_slice(&30u16.to_le_bytes()))),
        ("name length 0", damaged(&|x| x[e1 + 1] = 0)),
        ("unknown namespace", damaged(&|x| x[e1] = 9)),
        // security.label made trusted.label: the same name twice.
        ("duplicate name", damaged(&|x| x[e2] = XATTR_TRUSTED)),
        ("tail not zero", damaged(&|x| x[4000] = 1)),
        ("owner", {
            let mut b = raw.clone();
            seal_header(&mut b[blk as usize * BLOCK_SIZE..][..BLOCK_SIZE], XATTR_MAGIC, blk, u64::from(ino) + 1);
            b
        }),
        ("stale checksum", {
            let mut b = raw.clone();
            b[blk as usize * BLOCK_SIZE + e1 + 6] ^= 1;
            b
        }),
    ];
    let what = format!("inode {ino} xattr block {blk}");
    for (case, b) in cases {
        assert_ne!(b, raw, "{case}: the image is changed");
        // The reader: an error naming the inode and the block, not a panic.
        let img = Image::open(MemDevice { bytes: b.clone() }).unwrap();
        let err = img.xattrs(ino, &img.inode(ino).unwrap()).expect_err(case).to_string();
        assert!(err.contains(&what), "{case}: the reader's error does not name {what}: {err}");
        // fsck -n: a problem of kind Xattrs naming it; exit status 4.
        let (out, _) = fsck::run(MemDevice { bytes: b.clone() }, Mode::Check).unwrap();
        assert!(
            out.report.problems.iter().any(|p| p.kind == Kind::Xattrs && p.message.contains(&what)),
            "{case}: fsck does not report {what}: {:?}",
            out.report.problems
        );
        assert_eq!(out.exit_code(), 4, "{case}: fsck -n exit status");
        if let Ok((_, dev)) = fsck::run(MemDevice { bytes: b.clone() }, Mode::Repair) {
            fsck::run(dev, Mode::Check).unwrap();
        }
        // The manifest sees it too.
        let bad = verify(&manifest, &b, 3);
        assert_caught(&bad, &format!("extended attributes of inode {ino}"), case);
    }
}
