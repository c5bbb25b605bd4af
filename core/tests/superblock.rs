//! Superblock: roundtrip, and one test per check of `decode` and `validate`, asserting the
//! exact error and its errno.
// Test code, helpers included: a failed unwrap is the test's failure report (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vexfs_core::crc32c::crc32c;
use vexfs_core::error::{FormatError, EINVAL, EUCLEAN};
use vexfs_core::format::layout::{layout, MkfsParams};
use vexfs_core::format::le::put_u32;
use vexfs_core::format::superblock::*;
use vexfs_core::format::BLOCK_SIZE;

const BLOCKS: u64 = 4096;

fn params() -> MkfsParams {
    MkfsParams {
        block_count: BLOCKS,
        inode_count: None,
        journal_blocks: Some(64),
        vec_capacity: None,
        dim: 8,
        metric: Metric::L2,
        m: 16,
        ef_construction: 200,
        uuid: [7; 16],
        label: [0; 32],
        now: 1_700_000_000,
        seed: 1,
    }
}

fn sb() -> Superblock {
    layout(&params()).unwrap()
}

fn encoded(sb: &Superblock) -> [u8; BLOCK_SIZE] {
    let mut b = [0u8; BLOCK_SIZE];
    sb.encode(&mut b);
    b
}

/// Recomputes the checksum after raw edits.
fn reseal(b: &mut [u8]) {
    let c = crc32c(&b[..508]);
    put_u32(b, 508, c);
}

fn decode_err(b: &[u8]) -> FormatError {
    Superblock::decode(b).unwrap_err()
}

fn corrupt(what: &'static str, value: u64) -> FormatError {
    FormatError::Corrupt { what, value }
}

/// Validates `sb` on a device of `BLOCKS` blocks and checks the error is `Corrupt` (EUCLEAN)
/// naming `what`.
fn assert_corrupt(sb: &Superblock, what: &'static str, value: u64) {
    let e = sb.validate(BLOCKS).unwrap_err();
    assert_eq!(e, corrupt(what, value));
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn roundtrip() {
    let s = sb();
    let b = encoded(&s);
    let d = Superblock::decode(&b).unwrap();
    assert_eq!(d, s);
    d.validate(BLOCKS).unwrap();
    d.validate(BLOCKS + 100).unwrap();
    assert!(b[512..].iter().all(|&x| x == 0));
}

#[test]
fn bad_magic() {
    let mut b = encoded(&sb());
    b[0] ^= 1;
    let e = decode_err(&b);
    assert_eq!(e, FormatError::BadMagic { what: "superblock", found: MAGIC ^ 1 });
    assert_eq!(e.errno(), EINVAL);
}

#[test]
fn bad_checksum() {
    let mut b = encoded(&sb());
    b[72] ^= 0x40;
    let e = decode_err(&b);
    assert!(matches!(e, FormatError::BadChecksum { what: "superblock", .. }), "{e:?}");
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn truncated_buffer() {
    let b = encoded(&sb());
    assert_eq!(decode_err(&b[..100]), FormatError::Truncated { what: "superblock", len: 100 });
}

#[test]
fn unknown_incompat_bit() {
    let mut s = sb();
    s.feature_incompat = 1 << 7;
    let e = decode_err(&encoded(&s));
    assert_eq!(e, FormatError::UnsupportedFeatures(1 << 7));
    assert_eq!(e.errno(), EINVAL);
}

#[test]
fn recover_bit_is_supported_since_v2() {
    let mut s = sb();
    s.feature_incompat = FEATURE_INCOMPAT_RECOVER;
    assert_eq!(Superblock::decode(&encoded(&s)).unwrap(), s);
}

#[test]
fn versions_1_2_and_3_are_read() {
    for v in [FORMAT_VERSION_V1, FORMAT_VERSION_V2, FORMAT_VERSION] {
        let mut s = sb();
        s.format_version = v;
        assert_eq!(Superblock::decode(&encoded(&s)).unwrap(), s);
    }
    assert_eq!(FORMAT_VERSION, 3);
}

#[test]
fn unknown_compat_bits_are_accepted() {
    let mut s = sb();
    s.feature_compat = 0xffff;
    s.feature_ro_compat = 0x10;
    assert_eq!(Superblock::decode(&encoded(&s)).unwrap(), s);
}

#[test]
fn unsupported_version() {
    let mut s = sb();
    s.format_version = 4;
    let e = decode_err(&encoded(&s));
    assert_eq!(e, FormatError::UnsupportedVersion(4));
    assert_eq!(e.errno(), EINVAL);
}

#[test]
fn bad_block_size() {
    let mut b = encoded(&sb());
    put_u32(&mut b, 20, 1024);
    reseal(&mut b);
    let e = decode_err(&b);
    assert_eq!(e, corrupt("superblock block_size", 1024));
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn block_count_zero() {
    let mut s = sb();
    s.block_count = 0;
    assert_corrupt(&s, "block_count", 0);
}

#[test]
fn block_count_too_large() {
    let mut s = sb();
    s.block_count = MAX_BLOCKS + 1;
    assert_corrupt(&s, "block_count", MAX_BLOCKS + 1);
}

#[test]
fn geometry_past_device_end() {
    let e = sb().validate(BLOCKS - 1).unwrap_err();
    assert_eq!(e, FormatError::PastDeviceEnd { block_count: BLOCKS, device_blocks: BLOCKS - 1 });
    assert_eq!(e.errno(), EINVAL);
}

#[test]
fn backup_block() {
    let mut s = sb();
    s.backup_block = 5;
    assert_corrupt(&s, "backup_block", 5);
}

#[test]
fn inode_count_not_whole_table_blocks() {
    let mut s = sb();
    s.inode_count += 1;
    assert_corrupt(&s, "inode_count", s.inode_count as u64);
}

#[test]
fn root_ino() {
    let mut s = sb();
    s.root_ino = 2;
    assert_corrupt(&s, "root_ino", 2);
}

#[test]
fn free_blocks_above_block_count() {
    let mut s = sb();
    s.free_blocks = BLOCKS + 1;
    assert_corrupt(&s, "free_blocks", BLOCKS + 1);
}

#[test]
fn free_inodes_above_inode_count() {
    let mut s = sb();
    s.free_inodes = s.inode_count + 1;
    assert_corrupt(&s, "free_inodes", s.free_inodes as u64);
}

#[test]
fn dim_zero() {
    let mut s = sb();
    s.vec_dim = 0;
    assert_corrupt(&s, "vec_dim", 0);
}

#[test]
fn dim_too_large() {
    let mut s = sb();
    s.vec_dim = MAX_DIM + 1;
    assert_corrupt(&s, "vec_dim", (MAX_DIM + 1) as u64);
}

#[test]
fn metric() {
    let mut s = sb();
    s.vec_metric = 3;
    assert_corrupt(&s, "vec_metric", 3);
}

#[test]
fn stride() {
    let mut s = sb();
    s.vec_stride += 4;
    assert_corrupt(&s, "vec_stride", s.vec_stride as u64);
}

#[test]
fn stride_is_rounded_to_32_bytes() {
    assert_eq!(vec_stride_for(1), 32);
    assert_eq!(vec_stride_for(8), 32);
    assert_eq!(vec_stride_for(9), 64);
    assert_eq!(vec_stride_for(768), 3072);
}

#[test]
fn m_too_small() {
    let mut s = sb();
    s.hnsw_m = MIN_M - 1;
    assert_corrupt(&s, "hnsw_m", (MIN_M - 1) as u64);
}

#[test]
fn m_too_large() {
    let mut s = sb();
    s.hnsw_m = MAX_M + 1;
    assert_corrupt(&s, "hnsw_m", (MAX_M + 1) as u64);
}

#[test]
fn ef_construction_zero() {
    let mut s = sb();
    s.hnsw_ef_construction = 0;
    assert_corrupt(&s, "hnsw_ef_construction", 0);
}

#[test]
fn ef_construction_too_large() {
    let mut s = sb();
    s.hnsw_ef_construction = MAX_EF_CONSTRUCTION + 1;
    assert_corrupt(&s, "hnsw_ef_construction", (MAX_EF_CONSTRUCTION + 1) as u64);
}

#[test]
fn max_level() {
    let mut s = sb();
    s.hnsw_max_level = MAX_LEVEL + 1;
    assert_corrupt(&s, "hnsw_max_level", (MAX_LEVEL + 1) as u64);
}

#[test]
fn vec_capacity_above_u32() {
    let mut s = sb();
    s.vec_capacity = u32::MAX as u64 + 1;
    assert_corrupt(&s, "vec_capacity", u32::MAX as u64 + 1);
}

/// Moves region `r` one block later: its start no longer follows the previous region.
fn misplaced(r: Region, what: &'static str) {
    let mut s = sb();
    s.regions[r as usize].start += 1;
    assert_corrupt(&s, what, s.regions[r as usize].start);
}

#[test]
fn journal_misplaced() {
    misplaced(Region::Journal, "journal start");
}

#[test]
fn block_bitmap_misplaced() {
    misplaced(Region::BlockBitmap, "block bitmap start");
}

#[test]
fn inode_bitmap_misplaced() {
    misplaced(Region::InodeBitmap, "inode bitmap start");
}

#[test]
fn inode_table_misplaced() {
    misplaced(Region::InodeTable, "inode table start");
}

#[test]
fn vector_bitmap_misplaced() {
    misplaced(Region::VecBitmap, "vector bitmap start");
}

#[test]
fn vector_map_misplaced() {
    misplaced(Region::VecMap, "vector map start");
}

#[test]
fn vector_data_misplaced() {
    misplaced(Region::VecData, "vector data start");
}

#[test]
fn hnsw_misplaced() {
    misplaced(Region::Hnsw, "hnsw start");
}

#[test]
fn data_misplaced() {
    misplaced(Region::Data, "data start");
}

#[test]
fn reserved_region_not_zero() {
    let mut s = sb();
    s.regions[Region::VecCodes as usize] = Extent64 { start: 9, blocks: 0 };
    assert_corrupt(&s, "vector codes region without SQ8 or PQ", 9);
}

#[test]
fn data_overlaps_backup() {
    let mut s = sb();
    s.regions[Region::Data as usize].blocks += 1;
    assert_corrupt(&s, "data length", s.regions[Region::Data as usize].blocks);
}

#[test]
fn gap_before_backup() {
    let mut s = sb();
    s.regions[Region::Data as usize].blocks -= 1;
    assert_corrupt(&s, "data region end", BLOCKS - 2);
}

/// Shrinks region `r` by one block and gives the block to the region after it (or, for the
/// data region, takes it from the one before), so the tiling stays valid and only the size
/// check of `r` fails.
fn too_small(r: Region, what: &'static str) {
    let mut s = sb();
    let i = r as usize;
    if r == Region::Data {
        s.regions[i].start += 1;
        s.regions[i].blocks -= 1;
        s.regions[i - 1].blocks += 1;
    } else {
        s.regions[i].blocks -= 1;
        s.regions[i + 1].start -= 1;
        s.regions[i + 1].blocks += 1;
    }
    assert_corrupt(&s, what, s.regions[i].blocks);
}

#[test]
fn journal_too_small() {
    assert_eq!(sb().region(Region::Journal).blocks, 64);
    too_small(Region::Journal, "journal length");
}

#[test]
fn block_bitmap_too_small() {
    too_small(Region::BlockBitmap, "block bitmap length");
}

#[test]
fn inode_bitmap_too_small() {
    too_small(Region::InodeBitmap, "inode bitmap length");
}

#[test]
fn inode_table_too_small() {
    too_small(Region::InodeTable, "inode table length");
}

#[test]
fn vector_bitmap_too_small() {
    too_small(Region::VecBitmap, "vector bitmap length");
}

#[test]
fn vector_map_too_small() {
    too_small(Region::VecMap, "vector map length");
}

#[test]
fn vector_data_too_small() {
    too_small(Region::VecData, "vector data length");
}

#[test]
fn hnsw_too_small() {
    too_small(Region::Hnsw, "hnsw length");
}

#[test]
fn data_empty() {
    let mut s = sb();
    let d = s.region(Region::Data);
    s.regions[Region::Hnsw as usize].blocks += d.blocks;
    s.regions[Region::Data as usize] = Extent64 { start: d.end(), blocks: 0 };
    assert_corrupt(&s, "data length", 0);
}

#[test]
fn layout_rejects_a_device_too_small() {
    let mut p = params();
    p.block_count = MIN_BLOCKS;
    assert!(matches!(layout(&p), Err(FormatError::Corrupt { .. })));
}

#[test]
fn layout_journal_too_large_to_add_up() {
    // The regions' sum passes u64::MAX: a device too small, not a wrapped sum that fits.
    let mut p = params();
    p.journal_blocks = Some(u64::MAX - 10);
    let e = layout(&p).unwrap_err();
    assert_eq!(e, corrupt("device too small for the requested layout (blocks needed)", u64::MAX));
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn inode_positions() {
    let s = sb();
    let t = s.region(Region::InodeTable).start;
    assert_eq!(s.inode_pos(0), None);
    assert_eq!(s.inode_pos(1), Some((t, 0)));
    assert_eq!(s.inode_pos(17), Some((t + 1, 0)));
    assert_eq!(s.inode_pos(18), Some((t + 1, 256)));
    assert_eq!(s.inode_pos(s.inode_count as u64 + 1), None);
}

#[test]
fn default_journal_size() {
    // 1/16 of the device, 1024..=65536 blocks, at most a quarter of the device.
    for (blocks, want) in
        [(2048u64, 512u64), (4096, 1024), (65536, 4096), (1 << 20, 65536), (1 << 19, 32768), (1 << 24, 65536)]
    {
        let mut p = params();
        p.block_count = blocks;
        p.journal_blocks = None;
        p.vec_capacity = Some(64);
        assert_eq!(layout(&p).unwrap().region(Region::Journal).blocks, want, "{blocks} blocks");
    }
}
