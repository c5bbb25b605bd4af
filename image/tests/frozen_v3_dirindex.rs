//! The frozen image of on-disk format v3 with the feature `DIR_INDEX`
//! (`tests/images/v3-dirindex.img.gz`: indexed directories) reads exactly as its manifest
//! (`tests/images/v3-dirindex.manifest`) says, through the shared `verify`: superblock (the
//! feature bit), every path and inode, the shape of every inode's extent tree (the indexed
//! directory's sparse buckets included), its index (`dirindex`: seed, buckets per depth,
//! buckets, entries, the names in key order), contents, symlink targets, chunks and the exact
//! k-NN answer; and fsck finds it clean. Every path is also found through the index (the
//! lookup the kernel makes: one bucket probed per depth).
//!
//! The committed bytes are read, never regenerated. The tests after the first tamper with the
//! manifest to show that each `dirindex` field is checked, and with the directory's blocks
//! (checksums recomputed, so only the index checks can see it) to show that an entry in the
//! wrong bucket, a changed seed or a changed bucket count is reported by fsck and the reader as
//! an error, never a panic.

mod frozen;

use frozen::{assert_caught, committed_named, each_edit_caught, verify};
use vexfs_core::dir_index::{bucket_keys, bucket_of, name_key, INDEX_MAGIC};
use vexfs_core::format::block::seal_header;
use vexfs_core::format::dir::{self, seal_dir_block, DT_DIR, DT_FIFO, DT_LNK, DT_REG};
use vexfs_core::format::inode::INODE_FLAG_INDEX;
use vexfs_core::format::superblock::FEATURE_INCOMPAT_DIR_INDEX;
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck::{self, Kind, Mode};
use vexfs_image::{Error, Image, MemDevice};

const NAME: &str = "v3-dirindex";

/// Name `i` of `/big`, as `image/examples/make_frozen_image_v3_dirindex.rs` made them: its
/// decimal digits, then `-` and letters, 1 to 64 bytes, every 37th 255.
fn name(i: u32) -> String {
    let len = if i % 37 == 0 { 255 } else { 1 + (i as usize * 7919) % 64 };
    let mut s = i.to_string();
    if s.len() < len {
        s.push('-');
    }
    while s.len() < len {
        s.push((b'a' + (s.len() % 26) as u8) as char);
    }
    s
}

fn image(raw: &[u8]) -> Image<MemDevice> {
    Image::open(MemDevice { bytes: raw.to_vec() }).unwrap()
}

#[test]
fn the_v3_dirindex_image_reads_as_its_manifest_says() {
    let (manifest, raw) = committed_named(NAME);
    let bad = verify(&manifest, &raw, 3);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

/// What the image was made to hold: `/big` indexed, buckets at depth 4 and more, about 2,000
/// entries of every kind (255-byte names, hard links, subdirectories, symlinks, a FIFO);
/// `/small` linear, one block; every manifest path found through the index, no removed name.
#[test]
fn the_indexed_directory_as_made() {
    let (manifest, raw) = committed_named(NAME);
    let img = image(&raw);
    assert_eq!(img.sb().feature_incompat, FEATURE_INCOMPAT_DIR_INDEX);
    let big = img.lookup("/big").unwrap();
    let inode = img.inode(big).unwrap();
    assert_eq!(inode.flags, INODE_FLAG_INDEX);
    let (_, h) = img.dir_index_header(big, &inode).unwrap().unwrap();
    assert!(h.depths().next().unwrap() >= 4, "every bucket at depth 4 or more: {:?}", h.leaves);
    let buckets = img.dir_blocks(big, &inode).unwrap();
    assert!(buckets.len() >= 32, "{} buckets", buckets.len());
    assert!(buckets.iter().all(|&(l, _)| bucket_of(l).is_some_and(|(d, _)| d >= 4)));
    let entries = img.read_dir(big, &inode).unwrap();
    assert!((1900..=2100).contains(&entries.len()), "{} entries", entries.len());
    let count = |t: u8| entries.iter().filter(|e| e.file_type == t).count();
    assert_eq!((count(DT_DIR), count(DT_LNK), count(DT_FIFO)), (7, 3, 1));
    assert_eq!(count(DT_REG), entries.len() - 11);
    assert!(entries.iter().filter(|e| e.name.len() == 255).count() >= 40, "255-byte names");
    // Hard links: 9 files hold most of the names.
    let mut links: Vec<u16> = entries.iter().map(|e| img.inode(e.ino).unwrap().links).collect();
    links.sort_unstable();
    links.dedup();
    assert!(links.iter().any(|&l| l > 200), "{links:?}");
    // Key order, each entry in its bucket (read_dir checks it) and the buckets in key order.
    let keys: Vec<u64> = entries.iter().map(|e| name_key(&h.seed, &e.name)).collect();
    assert!(keys.windows(2).all(|k| k[0] < k[1]), "read_dir lists /big in key order");
    let small = img.lookup("/small").unwrap();
    let si = img.inode(small).unwrap();
    assert!(!img.is_indexed(small, &si).unwrap());
    assert_eq!((si.size, img.dir_blocks(small, &si).unwrap().len()), (BLOCK_SIZE as u64, 1));

    // Every path of the manifest, through `Image::lookup` (an indexed directory's names through
    // `dir_index::lookup`), names the manifest's inode.
    let mut n = 0;
    for l in manifest.lines().filter(|l| l.starts_with("path ")) {
        let (ino, path) = l["path ".len()..].split_once(' ').unwrap();
        assert_eq!(img.lookup(path).unwrap(), ino.parse::<u32>().unwrap(), "{path}");
        n += 1;
    }
    assert!(n > entries.len());
    // The names the generator removed are not found (every 8th hard link from name 113, the
    // files 90..100, the last subdirectory, the dangling symlink); their neighbours are.
    for i in [113, 121, 2241, 90, 95, 99, 107, 111] {
        let found = img.lookup(&format!("/big/{}", name(i)));
        assert!(matches!(found, Err(Error::NotFound(_))), "name {i}: {found:?}");
    }
    for i in [0, 37, 89, 106, 110, 112, 114, 2248] {
        img.lookup(&format!("/big/{}", name(i))).unwrap();
    }
}

#[test]
fn a_wrong_manifest_item_of_any_kind_is_caught() {
    let (manifest, raw) = committed_named(NAME);
    let line = |prefix: &str| manifest.lines().find(|l| l.starts_with(prefix)).unwrap().to_string();
    let di = line("dirindex ");
    let f: Vec<&str> = di.split(' ').collect();
    assert_eq!(f.len(), 7, "{di}");
    let with = |i: usize, v: &str| {
        let mut g = f.clone();
        g[i] = v;
        g.join(" ")
    };
    let ino = f[1];
    let what = format!("directory index of inode {ino}");
    let seed = format!("{}{}", if f[2].starts_with('0') { "1" } else { "0" }, &f[2][1..]);
    // The first depth's count with a digit more, and the names' hash changed in one digit.
    let depths = f[3].replacen(':', ":1", 1);
    let order = format!("{}{}", &f[6][..63], if f[6].ends_with('0') { "1" } else { "0" });
    let entries = (f[5].parse::<u32>().unwrap() - 1).to_string();
    let buckets = (f[4].parse::<u32>().unwrap() + 1).to_string();
    let small_ino = manifest
        .lines()
        .find_map(|l| l.strip_suffix(" /small").and_then(|l| l.strip_prefix("path ")))
        .unwrap()
        .to_string();
    let p255 = manifest.lines().find(|l| l.starts_with("path ") && l.len() > 255 + 10).unwrap().to_string();
    let other255 = format!("{}{}", &p255[..p255.len() - 1], if p255.ends_with('z') { 'y' } else { 'z' });
    let inode = line(&format!("inode {ino} "));
    let size: Vec<&str> = inode.split(' ').collect();
    let grown = inode.replacen(&format!(" {} ", size[7]), &format!(" {} ", size[7].parse::<u64>().unwrap() + 4096), 1);
    let (inode_what, tree_what) = (format!("inode {ino}"), format!("extent tree of inode {ino}"));
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("seed", "dirindex ".into(), with(2, &seed), &what),
        ("depths", "dirindex ".into(), with(3, &depths), &what),
        ("buckets", "dirindex ".into(), with(4, &buckets), &what),
        ("entries", "dirindex ".into(), with(5, &entries), &what),
        ("names in key order", "dirindex ".into(), with(6, &order), &what),
        ("missing dirindex", "dirindex ".into(), String::new(), "indexed directories with a dirindex item"),
        (
            "a linear directory said indexed",
            "dirindex ".into(),
            format!("{di}\ndirindex {small_ino} {}", f[2..].join(" ")),
            "not an indexed directory",
        ),
        ("feature bit", "sb feature_incompat ".into(), "sb feature_incompat 0".into(), "superblock feature_incompat"),
        ("directory size", format!("inode {ino} "), grown, &inode_what),
        ("directory tree said absent", format!("tree {ino} "), format!("tree {ino} - 0 27"), &tree_what),
        ("a 255-byte name", p255.clone(), other255, "the tree (path -> inode)"),
        ("missing 255-byte name", p255.clone(), String::new(), "the tree (path -> inode)"),
    ];
    each_edit_caught(&manifest, &raw, 3, cases);
}

/// `/big`'s inode number and its buckets (logical, device block), from `raw`.
fn big(raw: &[u8]) -> (u32, Vec<(u64, u64)>) {
    let img = image(raw);
    let d = img.lookup("/big").unwrap();
    let buckets = img.dir_blocks(d, &img.inode(d).unwrap()).unwrap();
    (d, buckets)
}

/// `raw` with one entry of `/big`'s first bucket moved into another bucket with room (both
/// blocks resealed): the entry's name, inode and the bucket it went to.
fn misplaced(raw: &[u8]) -> (Vec<u8>, Vec<u8>, u32, u64) {
    let (d, buckets) = big(raw);
    let mut img = image(raw);
    let (_, from) = buckets[0];
    let mut a = img.read_block(from).unwrap();
    let e = dir::dirents(&a[..]).map(|e| e.unwrap()).find(|e| e.ino != 0).unwrap();
    let (moved, ino, ft) = (e.name.to_vec(), e.ino, e.file_type);
    let to = buckets[1..]
        .iter()
        .map(|b| b.1)
        .find(|&b| dir::fits(&img.read_block(b).unwrap()[..], moved.len()).unwrap())
        .unwrap();
    dir::remove(&mut a[..], &moved).unwrap().unwrap();
    seal_dir_block(&mut a[..], from, u64::from(d));
    img.write_block(from, &a).unwrap();
    let mut b = img.read_block(to).unwrap();
    assert!(dir::insert(&mut b[..], &moved, ino, ft).unwrap());
    seal_dir_block(&mut b[..], to, u64::from(d));
    img.write_block(to, &b).unwrap();
    (img.into_device().bytes, moved, ino, to)
}

/// An entry moved into the wrong bucket (checksums resealed): the reader's listing is an
/// error and its lookup does not find the name (never a panic); fsck -n reports it
/// (`DirIndexEntry`, exit 4) and the manifest's `dirindex` item sees it; fsck -y moves it back,
/// after which the image reads as the manifest says but for its bytes.
#[test]
fn an_entry_in_the_wrong_bucket_is_reported_not_a_panic() {
    let (manifest, raw) = committed_named(NAME);
    let (d, _) = big(&raw);
    let (b, moved, ino, to) = misplaced(&raw);
    let name = String::from_utf8(moved.clone()).unwrap();
    let img = image(&b);
    let inode = img.inode(d).unwrap();
    let (_, h) = img.dir_index_header(d, &inode).unwrap().unwrap();
    let l = img.dir_blocks(d, &inode).unwrap().into_iter().find(|x| x.1 == to).unwrap().0;
    let (depth, prefix) = bucket_of(l).unwrap();
    assert!(!(bucket_keys(depth, prefix).0..bucket_keys(depth, prefix).1).contains(&name_key(&h.seed, &moved)));
    assert!(matches!(img.read_dir(d, &inode), Err(Error::Format { .. })));
    assert!(matches!(img.lookup(&format!("/big/{name}")), Err(Error::NotFound(_))));

    let (out, dev) = fsck::run(MemDevice { bytes: b.clone() }, Mode::Check).unwrap();
    let kinds: Vec<Kind> = out.report.problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [Kind::DirIndexEntry], "{:#?}", out.report.problems);
    assert!(out.report.problems[0].message.contains(&name), "{}", out.report.problems[0].message);
    assert_eq!(out.exit_code(), 4);
    let bad = verify(&manifest, &b, 3);
    assert_caught(&bad, &format!("directory index of inode {d}"), "an entry in the wrong bucket");

    let (out, dev) = fsck::run(dev, Mode::Repair).unwrap();
    assert!(out.remaining.is_empty(), "{:#?}", out.remaining);
    assert_eq!(out.exit_code(), 1);
    let repaired = dev.bytes;
    let img = image(&repaired);
    assert_eq!(img.lookup(&format!("/big/{name}")).unwrap(), ino);
    let bad = verify(&manifest, &repaired, 3);
    assert!(bad.len() == 1 && bad[0].contains("image sha256"), "after fsck -y: {bad:#?}");
}

/// `/big`'s header changed (resealed): another seed (its entries then lie outside their
/// buckets), a bucket count moved to another depth (the counts still cover the keys, but
/// differ from the buckets mapped). Each is an error of the reader and a problem of fsck -n
/// (exit 4) naming the directory, never a panic, also under -y; the manifest sees it.
#[test]
fn a_changed_header_is_reported_not_a_panic() {
    let (manifest, raw) = committed_named(NAME);
    let (d, _) = big(&raw);
    let img = image(&raw);
    let inode = img.inode(d).unwrap();
    let (hb, h) = img.dir_index_header(d, &inode).unwrap().unwrap();
    let with_header = |f: &dyn Fn(&mut [u8])| {
        let mut b = raw.clone();
        let x = &mut b[hb as usize * BLOCK_SIZE..][..BLOCK_SIZE];
        f(x);
        seal_header(x, INDEX_MAGIC, hb, u64::from(d));
        b
    };
    // Leaves at offset 44 + 4 d. A bucket of the shallowest depth d counted as 2 of d + 1.
    let d0 = h.depths().next().unwrap() as usize;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("seed", with_header(&|x| x[24] ^= 1)),
        (
            "counts",
            with_header(&|x| {
                let at = |d: usize| 44 + 4 * d;
                let get = |x: &[u8], d: usize| u32::from_le_bytes(x[at(d)..at(d) + 4].try_into().unwrap());
                let (a, b) = (get(x, d0) - 1, get(x, d0 + 1) + 2);
                x[at(d0)..at(d0) + 4].copy_from_slice(&a.to_le_bytes());
                x[at(d0 + 1)..at(d0 + 1) + 4].copy_from_slice(&b.to_le_bytes());
            }),
        ),
    ];
    let named = format!("directory {d}");
    for (case, b) in cases {
        assert_ne!(b, raw, "{case}: the image is changed");
        let img = image(&b);
        let inode = img.inode(d).unwrap();
        let err = img.read_dir(d, &inode).expect_err(case).to_string();
        assert!(err.contains(&named), "{case}: the reader's error does not name {named}: {err}");
        let (out, _) = fsck::run(MemDevice { bytes: b.clone() }, Mode::Check).unwrap();
        assert!(
            out.report.problems.iter().any(|p| p.message.contains(&named) || p.message.contains(&format!("inode {d}"))),
            "{case}: fsck does not report /big: {:#?}",
            out.report.problems
        );
        assert_eq!(out.exit_code(), 4, "{case}: fsck -n exit status");
        if let Ok((_, dev)) = fsck::run(MemDevice { bytes: b.clone() }, Mode::Repair) {
            fsck::run(dev, Mode::Check).unwrap();
        }
        assert_caught(&verify(&manifest, &b, 3), &format!("directory index of inode {d}"), case);
    }
}
