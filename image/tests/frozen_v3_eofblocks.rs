//! The frozen image of on-disk format v3 with the feature `EOFBLOCKS`
//! (`tests/images/v3-eofblocks.img.gz`: blocks preallocated past the end of a file) reads
//! exactly as its manifest (`tests/images/v3-eofblocks.manifest`) says, through the shared
//! `verify`: the superblock (the feature bit in the primary), every path and inode (the blocks
//! held past the size counted), the extents (those past the size included), contents (the
//! size's bytes only), chunks and the exact k-NN answer; and fsck finds it clean.
//!
//! The committed bytes are read, never regenerated. The tests after the first show what the
//! image was made to hold (the flag on three files, zeros past every size, the backup
//! superblock without the bit, as the kernel leaves it) and that fsck tells a preallocation
//! from corruption: the feature cleared is reported per flagged file and preening sets it
//! again; a flag cleared leaves blocks past a size, which is reported.

mod frozen;

use frozen::{committed_named, each_edit_caught, verify};
use vexfs_core::format::inode::INODE_FLAG_EOFBLOCKS;
use vexfs_core::format::superblock::{Superblock, FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_EOFBLOCKS};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_image::fsck::{self, Kind, Mode};
use vexfs_image::{Image, MemDevice};

const NAME: &str = "v3-eofblocks";
const BS: u64 = BLOCK_SIZE as u64;

fn image(raw: &[u8]) -> Image<MemDevice> {
    Image::open(MemDevice { bytes: raw.to_vec() }).unwrap()
}

/// `raw` with `f` applied to its primary superblock.
fn with_sb(raw: &[u8], f: impl FnOnce(&mut Superblock)) -> Vec<u8> {
    let mut b = raw.to_vec();
    let blk = &mut b[..BLOCK_SIZE];
    let mut sb = Superblock::decode(blk).unwrap();
    f(&mut sb);
    sb.encode(blk);
    b
}

fn fsck_kinds(raw: &[u8], mode: Mode) -> (Vec<Kind>, i32, Vec<u8>) {
    let (out, dev) = fsck::run(MemDevice { bytes: raw.to_vec() }, mode).unwrap();
    (out.report.problems.iter().map(|p| p.kind).collect(), out.exit_code(), dev.bytes)
}

#[test]
fn the_v3_eofblocks_image_reads_as_its_manifest_says() {
    let (manifest, raw) = committed_named(NAME);
    let bad = verify(&manifest, &raw, 3);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

/// Three flagged files whose extents reach past their sizes, every byte past a size zero on
/// the device; the ordinary file maps nothing past its size; the feature in the primary
/// superblock only.
#[test]
fn the_preallocations_as_made() {
    let (_, raw) = committed_named(NAME);
    let img = image(&raw);
    assert_eq!(img.sb().feature_incompat, FEATURE_INCOMPAT_DIR_INDEX | FEATURE_INCOMPAT_EOFBLOCKS);
    let backup = Superblock::decode(&img.read_block(img.sb().backup_block).unwrap()[..]).unwrap();
    assert_eq!(backup.feature_incompat, FEATURE_INCOMPAT_DIR_INDEX);
    let mut flagged = Vec::new();
    for path in ["/prealloc.log", "/reserved", "/dir/inner", "/plain.txt"] {
        let ino = img.lookup(path).unwrap();
        let inode = img.inode(ino).unwrap();
        let extents = img.extents(ino, &inode).unwrap();
        let end = extents.iter().map(|e| e.logical_end()).max().unwrap();
        let past = end > inode.size.div_ceil(BS);
        assert_eq!(past, inode.flags == INODE_FLAG_EOFBLOCKS, "{path}: flags {}", inode.flags);
        if past {
            flagged.push(path);
        }
        for e in &extents {
            for i in 0..u64::from(e.len) {
                let logical = u64::from(e.logical) + i;
                let keep = inode.size.saturating_sub(logical * BS).min(BS) as usize;
                let b = img.read_block(e.start + i).unwrap();
                assert!(b[keep..].iter().all(|&x| x == 0), "{path}: block {logical} past the size is not zeros");
            }
        }
    }
    assert_eq!(flagged, ["/prealloc.log", "/reserved", "/dir/inner"]);
}

/// Without the feature bit each flagged file is reported (`EofBlocksFeature`, exit 4) and
/// `-p` sets the bit, after which the image is the one made, byte for byte;
/// without the flag, a file's blocks past its size are reported (`ExtentPastSize`).
#[test]
fn fsck_tells_a_preallocation_from_corruption() {
    let (manifest, raw) = committed_named(NAME);
    let cleared = with_sb(&raw, |s| s.feature_incompat &= !FEATURE_INCOMPAT_EOFBLOCKS);
    let (kinds, code, _) = fsck_kinds(&cleared, Mode::Check);
    assert_eq!((kinds, code), (vec![Kind::EofBlocksFeature; 3], 4));
    let (_, code, fixed) = fsck_kinds(&cleared, Mode::Preen);
    assert_eq!(code, 1);
    let (kinds, code, _) = fsck_kinds(&fixed, Mode::Check);
    assert_eq!((kinds, code), (vec![], 0));
    // The bit was all that changed: preening gives back the image as made, byte for byte.
    let bad = verify(&manifest, &fixed, 3);
    assert!(bad.is_empty(), "after fsck -p: {bad:#?}");

    let mut img = image(&raw);
    let ino = img.lookup("/prealloc.log").unwrap();
    let mut inode = img.inode(ino).unwrap();
    inode.flags = 0;
    img.write_inode(ino, &inode).unwrap();
    let (kinds, code, _) = fsck_kinds(&img.into_device().bytes, Mode::Check);
    assert_eq!((kinds, code), (vec![Kind::ExtentPastSize], 4));
}

#[test]
fn a_wrong_manifest_item_is_caught() {
    let (manifest, raw) = committed_named(NAME);
    let line = |prefix: &str| manifest.lines().find(|l| l.starts_with(prefix)).unwrap().to_string();
    let log = manifest
        .lines()
        .find_map(|l| l.strip_suffix(" /prealloc.log").and_then(|l| l.strip_prefix("path ")))
        .unwrap()
        .to_string();
    let inode = line(&format!("inode {log} "));
    let f: Vec<&str> = inode.split(' ').collect();
    // The blocks held without the preallocation: the size's blocks only.
    let mut g = f.clone();
    g[8] = "2";
    let what = format!("inode {log}");
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("feature bit", "sb feature_incompat ".into(), "sb feature_incompat 2".into(), "superblock feature_incompat"),
        ("blocks past the size", format!("inode {log} "), g.join(" "), &what),
        ("extents past the size", format!("tree {log} "), format!("tree {log} - 0 0"), "extent tree"),
    ];
    each_edit_caught(&manifest, &raw, 3, cases);
}
