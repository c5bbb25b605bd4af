//! Extent blocks, `check_extent`, the journal superblock and journal records: roundtrips and
//! one test per check.
// Test code, helpers included: a failed unwrap is the test's failure report (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vexfs_core::crc32c::crc32c_parts;
use vexfs_core::error::{FormatError, EUCLEAN};
use vexfs_core::format::block::{check_header, seal_header};
use vexfs_core::format::extent::*;
use vexfs_core::format::journal::*;
use vexfs_core::format::le::{put_u16, put_u32, put_u64};
use vexfs_core::format::BLOCK_SIZE;

const BLK: u64 = 500;
const OWNER: u64 = 9;

fn extents(n: usize) -> Vec<Extent> {
    (0..n).map(|i| Extent { logical: 3 * i as u32, len: 2, start: 1000 + 10 * i as u64 }).collect()
}

fn extent_block(n: usize) -> [u8; BLOCK_SIZE] {
    let mut b = [0u8; BLOCK_SIZE];
    extent_block_build(&mut b, BLK, OWNER, &extents(n));
    b
}

fn check(b: &[u8]) -> Result<(), FormatError> {
    check_header(b, "extent block", EXTENT_MAGIC, BLK, OWNER)
}

#[test]
fn extent_block_roundtrip() {
    for n in [0, 1, 10, EXTENTS_PER_BLOCK] {
        let b = extent_block(n);
        check(&b).unwrap();
        assert_eq!(extent_block_count(&b).unwrap(), n);
        let got: Vec<Extent> = (0..n).map(|i| extent_block_get(&b, i).unwrap()).collect();
        assert_eq!(got, extents(n));
    }
    assert_eq!(EXTENTS_PER_BLOCK, 254);
}

#[test]
fn extent_block_bad_magic() {
    let mut b = extent_block(3);
    b[0] ^= 1;
    let e = check(&b).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "extent block", value: (EXTENT_MAGIC ^ 1) as u64 });
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn extent_block_bad_checksum() {
    let mut b = extent_block(3);
    b[40] ^= 1;
    assert!(matches!(check(&b).unwrap_err(), FormatError::BadChecksum { what: "extent block", .. }));
}

#[test]
fn extent_block_misdirected() {
    let b = extent_block(3);
    let e = check_header(&b, "extent block", EXTENT_MAGIC, BLK + 1, OWNER).unwrap_err();
    assert_eq!(e, FormatError::WrongIdentity { what: "extent block", expected: BLK + 1, found: BLK });
}

#[test]
fn extent_block_wrong_owner() {
    let b = extent_block(3);
    let e = check_header(&b, "extent block", EXTENT_MAGIC, BLK, OWNER + 1).unwrap_err();
    assert_eq!(e, FormatError::WrongIdentity { what: "extent block", expected: OWNER + 1, found: OWNER });
}

#[test]
fn extent_block_count_too_large() {
    let mut b = extent_block(3);
    put_u32(&mut b, 24, EXTENTS_PER_BLOCK as u32 + 1);
    seal_header(&mut b, EXTENT_MAGIC, BLK, OWNER);
    check(&b).unwrap();
    let e = extent_block_count(&b).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "extent block count", value: EXTENTS_PER_BLOCK as u64 + 1 });
}

#[test]
fn extent_block_reserved_word() {
    let mut b = extent_block(3);
    put_u32(&mut b, 28, 1);
    seal_header(&mut b, EXTENT_MAGIC, BLK, OWNER);
    assert_eq!(extent_block_count(&b).unwrap_err(), FormatError::Corrupt { what: "extent block count", value: 3 });
}

#[test]
fn extent_index_past_the_block() {
    let b = extent_block(3);
    let e = extent_block_get(&b, EXTENTS_PER_BLOCK).unwrap_err();
    assert_eq!(e, FormatError::Truncated { what: "extent", len: BLOCK_SIZE });
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn extent_index_whose_offset_overflows() {
    // 32 + i * 16 wraps to 16 here: the extent must not be read from the header's bytes.
    let b = extent_block(3);
    let e = extent_block_get(&b, usize::MAX / 8).unwrap_err();
    assert_eq!(e, FormatError::Truncated { what: "extent", len: BLOCK_SIZE });
}

const DATA: (u64, u64) = (100, 200);

fn check_ext(e: Extent, prev_end: u64) -> Result<(), FormatError> {
    check_extent(&e, prev_end, DATA.0, DATA.1)
}

#[test]
fn extent_ok() {
    check_ext(Extent { logical: 5, len: 10, start: 100 }, 5).unwrap();
    check_ext(Extent { logical: 0, len: 100, start: 100 }, 0).unwrap();
}

#[test]
fn extent_empty() {
    let e = check_ext(Extent { logical: 5, len: 0, start: 100 }, 0).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "extent order or length", value: 5 });
}

#[test]
fn extent_overlaps_previous() {
    let e = check_ext(Extent { logical: 4, len: 1, start: 100 }, 5).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "extent order or length", value: 4 });
}

#[test]
fn extent_logical_end_past_u32() {
    let e = check_ext(Extent { logical: u32::MAX, len: 1, start: 100 }, 0).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "extent logical end", value: u32::MAX as u64 + 1 });
}

#[test]
fn extent_before_data_region() {
    let e = check_ext(Extent { logical: 0, len: 1, start: 99 }, 0).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "extent outside the data region", value: 99 });
}

#[test]
fn extent_past_data_region() {
    let e = check_ext(Extent { logical: 0, len: 2, start: 199 }, 0).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "extent outside the data region", value: 199 });
}

#[test]
fn extent_start_overflows() {
    let e = check_ext(Extent { logical: 0, len: 2, start: u64::MAX }, 0).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "extent outside the data region", value: u64::MAX });
}

const JBLK: u64 = 1;
const JLEN: u64 = 64;
const UUID: [u8; 16] = [3; 16];

fn jsb() -> [u8; BLOCK_SIZE] {
    let mut b = [0u8; BLOCK_SIZE];
    JournalSuper::new(UUID).encode(&mut b, JBLK);
    b
}

fn jdecode(b: &[u8]) -> Result<JournalSuper, FormatError> {
    JournalSuper::decode(b, JBLK, JLEN, &UUID)
}

/// Reseals a journal superblock after raw edits.
fn jreseal(b: &mut [u8]) {
    let owner = u64::from_le_bytes(b[16..24].try_into().unwrap());
    seal_header(b, JOURNAL_MAGIC, JBLK, owner);
}

fn assert_jcorrupt(b: &[u8], what: &'static str, value: u64) {
    let e = jdecode(b).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what, value });
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn journal_super_roundtrip() {
    let j = jdecode(&jsb()).unwrap();
    assert_eq!(j, JournalSuper::new(UUID));
    assert_eq!((j.flags, j.next_lsn, j.checkpoint_lsn, j.head), (JOURNAL_CLEAN, 1, 1, 0));
    let busy = JournalSuper { flags: 0, next_lsn: 90, checkpoint_lsn: 40, head: 62, uuid: UUID };
    let mut b = [0u8; BLOCK_SIZE];
    busy.encode(&mut b, JBLK);
    assert_eq!(jdecode(&b).unwrap(), busy);
}

#[test]
fn journal_super_bad_magic() {
    let mut b = jsb();
    b[0] ^= 1;
    assert_jcorrupt(&b, "journal superblock", (JOURNAL_MAGIC ^ 1) as u64);
}

#[test]
fn journal_super_bad_checksum() {
    let mut b = jsb();
    b[30] ^= 1;
    assert!(matches!(jdecode(&b).unwrap_err(), FormatError::BadChecksum { what: "journal superblock", .. }));
}

#[test]
fn journal_super_misdirected() {
    let b = jsb();
    let e = JournalSuper::decode(&b, JBLK + 1, JLEN, &UUID).unwrap_err();
    assert_eq!(e, FormatError::WrongIdentity { what: "journal superblock", expected: JBLK + 1, found: JBLK });
}

#[test]
fn journal_super_version() {
    let mut b = jsb();
    put_u32(&mut b, 16, 3);
    jreseal(&mut b);
    assert_jcorrupt(&b, "journal version", 3);
}

#[test]
fn journal_super_v1_read_only_when_clean() {
    // A v1 journal (version 1) never held records: read when clean, refused otherwise.
    let mut b = jsb();
    put_u32(&mut b, 16, 1);
    jreseal(&mut b);
    assert!(jdecode(&b).is_ok());
    put_u32(&mut b, 20, 0);
    jreseal(&mut b);
    assert_jcorrupt(&b, "v1 journal not clean", 0);
}

#[test]
fn journal_super_other_filesystem() {
    let e = JournalSuper::decode(&jsb(), JBLK, JLEN, &[4; 16]).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "journal uuid", value: 0 });
}

#[test]
fn journal_super_unknown_flags() {
    let mut b = jsb();
    put_u32(&mut b, 20, 2 | JOURNAL_CLEAN);
    jreseal(&mut b);
    assert_jcorrupt(&b, "journal flags", 3);
}

#[test]
fn journal_super_lsn_zero() {
    let mut b = jsb();
    put_u64(&mut b, 24, 0);
    jreseal(&mut b);
    assert_jcorrupt(&b, "journal lsn", 0);
}

#[test]
fn journal_super_checkpoint_after_next() {
    let mut b = jsb();
    put_u64(&mut b, 32, 2);
    jreseal(&mut b);
    assert_jcorrupt(&b, "journal lsn", 1);
}

#[test]
fn journal_super_head_past_the_log() {
    let mut b = jsb();
    put_u64(&mut b, 40, JLEN - 1);
    jreseal(&mut b);
    assert_jcorrupt(&b, "journal head", JLEN - 1);
}

#[test]
fn journal_super_reserved_bytes() {
    let mut b = jsb();
    b[4095] = 1;
    jreseal(&mut b);
    assert_jcorrupt(&b, "journal reserved bytes", 0);
}

/// The UUID of the filesystem the records belong to (in their checksums since format v2).
const RU: [u8; 16] = [7; 16];

fn record(lsn: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let n = encode_record(&mut out, &RU, lsn, RecordType::VecRemove, payload).unwrap();
    out.truncate(n);
    out
}

#[test]
fn record_roundtrip() {
    for len in [0usize, 1, 7, 8, 100] {
        let payload: Vec<u8> = (0..len as u8).collect();
        let r = record(42, &payload);
        assert_eq!(r.len(), (RECORD_HEADER + len).div_ceil(8) * 8);
        let (h, p) = decode_record(&r, &RU, 42).unwrap();
        assert_eq!(h, RecordHeader { lsn: 42, rtype: RecordType::VecRemove as u16, len: len as u32 });
        assert_eq!(p, &payload[..]);
    }
}

#[test]
fn record_does_not_fit() {
    assert_eq!(encode_record(&mut [0u8; 30], &RU, 1, RecordType::Commit, &[0; 8]), None);
}

#[test]
fn torn_record_payload_cut() {
    let r = record(5, &[7u8; 100]);
    let e = decode_record(&r[..RECORD_HEADER + 50], &RU, 5).unwrap_err();
    assert_eq!(e, FormatError::Truncated { what: "journal record", len: RECORD_HEADER + 50 });
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn torn_record_header_cut() {
    let r = record(5, &[]);
    assert!(matches!(decode_record(&r[..10], &RU, 5).unwrap_err(), FormatError::Truncated { .. }));
}

#[test]
fn torn_record_bad_checksum() {
    let mut r = record(5, &[7u8; 100]);
    r[RECORD_HEADER + 99] ^= 1;
    assert!(matches!(decode_record(&r, &RU, 5).unwrap_err(), FormatError::BadChecksum { what: "journal record", .. }));
}

#[test]
fn record_bad_magic() {
    let mut r = record(5, &[1]);
    r[0] ^= 1;
    let e = decode_record(&r, &RU, 5).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "journal record magic", value: (RECORD_MAGIC ^ 1) as u64 });
}

#[test]
fn stale_record_lsn() {
    let r = record(5, &[1]);
    let e = decode_record(&r, &RU, 6).unwrap_err();
    assert_eq!(e, FormatError::WrongIdentity { what: "journal record lsn", expected: 6, found: 5 });
}

#[test]
fn record_unknown_type() {
    let mut r = record(5, &[1, 2, 3]);
    put_u16(&mut r, 16, 9);
    put_u32(&mut r, 4, 0);
    let c = crc32c_parts(&[&RU, &r[..RECORD_HEADER], &[1, 2, 3]]);
    put_u32(&mut r, 4, c);
    assert_eq!(decode_record(&r, &RU, 5).unwrap_err(), FormatError::Corrupt { what: "journal record type", value: 9 });
}

#[test]
fn record_of_another_filesystem_fails_its_checksum() {
    let r = record(5, &[1, 2, 3]);
    assert!(decode_record(&r, &RU, 5).is_ok());
    let other = [8u8; 16];
    assert!(matches!(decode_record(&r, &other, 5).unwrap_err(), FormatError::BadChecksum { .. }));
}
