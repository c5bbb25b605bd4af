//! Vector-id blocks and vector map entries: roundtrips, and one test per check.
// Test code, helpers included: a failed unwrap is the test's failure report (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vexfs_core::error::{FormatError, EUCLEAN};
use vexfs_core::format::block::seal_header;
use vexfs_core::format::le::put_u32;
use vexfs_core::format::vector::*;
use vexfs_core::format::BLOCK_SIZE;

const BLK: u64 = 321;
const OWNER: u64 = 12;

fn ids(n: usize) -> Vec<u32> {
    (0..n).map(|i| 7 * i as u32 + 1).collect()
}

fn id_block(n: usize) -> [u8; BLOCK_SIZE] {
    let mut b = [0u8; BLOCK_SIZE];
    vec_ids_block_build(&mut b, BLK, OWNER, &ids(n));
    b
}

#[test]
fn id_block_roundtrip() {
    for n in [0, 1, 100, VEC_IDS_PER_BLOCK] {
        let b = id_block(n);
        check_vec_ids_block(&b, BLK, OWNER).unwrap();
        assert_eq!(vec_ids_block_count(&b).unwrap(), n);
        let got: Vec<u32> = (0..n).map(|i| vec_ids_block_get(&b, i).unwrap()).collect();
        assert_eq!(got, ids(n));
    }
    assert_eq!(MAX_CHUNKS, 4 + 1016);
}

#[test]
fn id_block_wrong_owner() {
    let e = check_vec_ids_block(&id_block(3), BLK, OWNER + 1).unwrap_err();
    assert_eq!(e, FormatError::WrongIdentity { what: "vector id block", expected: OWNER + 1, found: OWNER });
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn id_block_count_too_large() {
    let mut b = id_block(3);
    put_u32(&mut b, 24, VEC_IDS_PER_BLOCK as u32 + 1);
    seal_header(&mut b, VEC_IDS_MAGIC, BLK, OWNER);
    check_vec_ids_block(&b, BLK, OWNER).unwrap();
    let e = vec_ids_block_count(&b).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "vector id block count", value: VEC_IDS_PER_BLOCK as u64 + 1 });
}

#[test]
fn id_block_reserved_word() {
    let mut b = id_block(3);
    put_u32(&mut b, 28, 1);
    assert_eq!(vec_ids_block_count(&b).unwrap_err(), FormatError::Corrupt { what: "vector id block count", value: 3 });
}

#[test]
fn id_index_past_the_block() {
    let e = vec_ids_block_get(&id_block(3), VEC_IDS_PER_BLOCK).unwrap_err();
    assert_eq!(e, FormatError::Truncated { what: "vector id block", len: BLOCK_SIZE });
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn id_index_whose_offset_overflows() {
    // 32 + 4 * i wraps to 28 here: the id must not be read from the header's bytes.
    let e = vec_ids_block_get(&id_block(3), usize::MAX / 4).unwrap_err();
    assert_eq!(e, FormatError::Truncated { what: "vector id block", len: BLOCK_SIZE });
}

fn entry(slot: u32, e: Option<MapEntry>) -> [u8; MAP_ENTRY] {
    let mut raw = [0u8; MAP_ENTRY];
    MapEntry::encode(e, slot, &mut raw);
    raw
}

#[test]
fn map_entry_roundtrip() {
    let e = MapEntry { ino: 77, chunk: 3 };
    assert_eq!(MapEntry::decode(5, &entry(5, Some(e))).unwrap(), Some(e));
    assert_eq!(entry(5, None), [0u8; MAP_ENTRY]);
    assert_eq!(MapEntry::decode(5, &entry(5, None)).unwrap(), None);
}

#[test]
fn map_entry_of_another_slot() {
    let raw = entry(5, Some(MapEntry { ino: 77, chunk: 3 }));
    let e = MapEntry::decode(6, &raw).unwrap_err();
    assert!(matches!(e, FormatError::BadChecksum { what: "vector map entry", .. }), "{e:?}");
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn map_entry_without_owner() {
    let raw = entry(5, Some(MapEntry { ino: 0, chunk: 3 }));
    assert_eq!(MapEntry::decode(5, &raw).unwrap_err(), FormatError::Corrupt { what: "vector map owner", value: 0 });
}

#[test]
fn map_entry_truncated() {
    let raw = entry(5, Some(MapEntry { ino: 77, chunk: 3 }));
    let e = MapEntry::decode(5, &raw[..12]).unwrap_err();
    assert_eq!(e, FormatError::Truncated { what: "vector map entry", len: 12 });
}
