//! Directory blocks: header checks, one test per dirent check, and insert/remove/find/retarget
//! against a `BTreeMap` model.
// Test code, helpers included: a failed unwrap is the test's failure report (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use vexfs_core::error::{FormatError, EUCLEAN};
use vexfs_core::format::dir::*;
use vexfs_core::format::le::{put_u16, put_u32};
use vexfs_core::format::BLOCK_SIZE;

const BLK: u64 = 1234;
const OWNER: u64 = 7;

fn block_with(names: &[&str]) -> [u8; BLOCK_SIZE] {
    let mut b = [0u8; BLOCK_SIZE];
    init_dir_block(&mut b, BLK, OWNER);
    for (i, n) in names.iter().enumerate() {
        assert!(insert(&mut b, n.as_bytes(), 10 + i as u32, DT_REG).unwrap());
    }
    seal_dir_block(&mut b, BLK, OWNER);
    b
}

/// The first error the dirent iterator yields.
fn dirent_err(b: &[u8]) -> FormatError {
    dirents(b).find_map(|d| d.err()).expect("a dirent error")
}

fn assert_corrupt(b: &[u8], what: &'static str, value: u64) {
    let e = dirent_err(b);
    assert_eq!(e, FormatError::Corrupt { what, value });
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn empty_block() {
    let b = block_with(&[]);
    check_dir_block(&b, BLK, OWNER).unwrap();
    assert!(is_empty(&b).unwrap());
    let all: Vec<_> = dirents(&b).map(|d| d.unwrap()).collect();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].ino, all[0].offset, all[0].rec_len), (0, DIR_HEADER, BLOCK_SIZE - DIR_HEADER));
}

#[test]
fn header_bad_magic() {
    let mut b = block_with(&["a"]);
    b[0] ^= 1;
    let e = check_dir_block(&b, BLK, OWNER).unwrap_err();
    assert_eq!(e, FormatError::Corrupt { what: "directory block", value: (DIR_MAGIC ^ 1) as u64 });
}

#[test]
fn header_bad_checksum() {
    let mut b = block_with(&["a"]);
    b[100] ^= 1;
    let e = check_dir_block(&b, BLK, OWNER).unwrap_err();
    assert!(matches!(e, FormatError::BadChecksum { what: "directory block", .. }), "{e:?}");
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn header_wrong_block_number() {
    let b = block_with(&["a"]);
    let e = check_dir_block(&b, BLK + 1, OWNER).unwrap_err();
    assert_eq!(e, FormatError::WrongIdentity { what: "directory block", expected: BLK + 1, found: BLK });
    assert_eq!(e.errno(), EUCLEAN);
}

#[test]
fn header_wrong_owner() {
    let b = block_with(&["a"]);
    let e = check_dir_block(&b, BLK, OWNER + 1).unwrap_err();
    assert_eq!(e, FormatError::WrongIdentity { what: "directory block", expected: OWNER + 1, found: OWNER });
}

#[test]
fn header_short_buffer() {
    let b = block_with(&["a"]);
    let e = check_dir_block(&b[..100], BLK, OWNER).unwrap_err();
    assert_eq!(e, FormatError::Truncated { what: "directory block", len: 100 });
}

#[test]
fn rec_len_not_multiple_of_8() {
    let mut b = block_with(&["a", "b"]);
    put_u16(&mut b, DIR_HEADER + 4, 12);
    assert_corrupt(&b, "dirent rec_len", 12);
}

#[test]
fn rec_len_below_header() {
    let mut b = block_with(&["a"]);
    put_u16(&mut b, DIR_HEADER + 4, 0);
    assert_corrupt(&b, "dirent rec_len", 0);
}

#[test]
fn rec_len_past_the_block() {
    let mut b = block_with(&["a"]);
    // The only dirent spans the block; make it 8 bytes longer.
    let len = (BLOCK_SIZE - DIR_HEADER + 8) as u16;
    put_u16(&mut b, DIR_HEADER + 4, len);
    assert_corrupt(&b, "dirent rec_len", len as u64);
}

#[test]
fn name_len_past_rec_len() {
    let mut b = block_with(&["a", "b"]);
    assert_eq!(dirents(&b).next().unwrap().unwrap().rec_len, 16);
    b[DIR_HEADER + 6] = 9;
    assert_corrupt(&b, "dirent name_len", 9);
}

#[test]
fn name_with_slash() {
    let mut b = block_with(&["ab"]);
    b[DIR_HEADER + DIRENT_HEADER + 1] = b'/';
    assert_corrupt(&b, "dirent name", 2);
}

#[test]
fn name_with_nul() {
    let mut b = block_with(&["ab"]);
    b[DIR_HEADER + DIRENT_HEADER] = 0;
    assert_corrupt(&b, "dirent name", 2);
}

#[test]
fn name_dot_dot() {
    let mut b = block_with(&["ab"]);
    b[DIR_HEADER + DIRENT_HEADER..DIR_HEADER + DIRENT_HEADER + 2].copy_from_slice(b"..");
    assert_corrupt(&b, "dirent name", 2);
}

#[test]
fn empty_name() {
    let mut b = block_with(&["ab"]);
    b[DIR_HEADER + 6] = 0;
    assert_corrupt(&b, "dirent name", 0);
}

#[test]
fn bad_file_type() {
    let mut b = block_with(&["a"]);
    b[DIR_HEADER + 7] = 3;
    assert_corrupt(&b, "dirent file_type", 3);
}

#[test]
fn unused_dirent_is_not_checked_for_name_or_type() {
    let mut b = block_with(&["a"]);
    put_u32(&mut b, DIR_HEADER, 0);
    b[DIR_HEADER + 7] = 3;
    assert!(dirents(&b).all(|d| d.is_ok()));
    assert!(is_empty(&b).unwrap());
}

#[test]
fn insert_refuses_a_name_it_could_not_read_back() {
    let long = [b'x'; NAME_MAX + 1];
    for name in [&long[..], b"", b".", b"..", b"a/b", b"a\0b"] {
        let mut b = block_with(&["a"]);
        let before = b;
        let e = insert(&mut b, name, 5, DT_REG).unwrap_err();
        assert_eq!(e, FormatError::Corrupt { what: "dirent name", value: name.len() as u64 }, "{name:?}");
        assert_eq!(e.errno(), EUCLEAN);
        assert_eq!(b, before, "nothing written for {name:?}");
    }
}

#[test]
fn dt_from_modes() {
    use vexfs_core::format::inode::{S_IFDIR, S_IFLNK, S_IFREG};
    assert_eq!(dt_from_mode(S_IFDIR | 0o755), DT_DIR);
    assert_eq!(dt_from_mode(S_IFREG), DT_REG);
    assert_eq!(dt_from_mode(S_IFLNK | 0o777), DT_LNK);
    // Format v3's special files.
    assert_eq!(dt_from_mode(0o020000), DT_CHR);
    assert_eq!(dt_from_mode(0o010644), DT_FIFO);
    assert_eq!(dt_from_mode(0o060600), DT_BLK);
    assert_eq!(dt_from_mode(0o140755), DT_SOCK);
    assert_eq!(dt_from_mode(0o030000), DT_UNKNOWN);
}

#[test]
fn valid_names() {
    assert!(valid_name(b"x"));
    assert!(valid_name(&[b'n'; NAME_MAX]));
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
        assert!(!valid_name(bad), "{bad:?}");
    }
    assert!(!valid_name(&[b'n'; NAME_MAX + 1]));
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, u32, u8),
    Remove(String),
    Retarget(String, u32),
}

fn name() -> impl Strategy<Value = String> {
    // A small alphabet so names repeat; lengths up to 60 so the block fills up.
    ("[a-d]{1,3}", 0usize..60).prop_map(|(s, pad)| format!("{s}{}", "x".repeat(pad)))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (name(), 1u32..1000, prop_oneof![Just(DT_REG), Just(DT_DIR), Just(DT_LNK)])
            .prop_map(|(n, i, t)| Op::Insert(n, i, t)),
        2 => name().prop_map(Op::Remove),
        1 => (name(), 1u32..1000).prop_map(|(n, i)| Op::Retarget(n, i)),
    ]
}

/// The block's used dirents, checking that the dirents tile the block.
fn contents(b: &[u8]) -> BTreeMap<Vec<u8>, (u32, u8)> {
    let mut end = DIR_HEADER;
    let mut out = BTreeMap::new();
    for d in dirents(b) {
        let d = d.unwrap();
        assert_eq!(d.offset, end);
        end += d.rec_len;
        if d.ino != 0 {
            assert!(out.insert(d.name.to_vec(), (d.ino, d.file_type)).is_none(), "duplicate name");
        }
    }
    assert_eq!(end, BLOCK_SIZE);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_a_btreemap(ops in proptest::collection::vec(op(), 1..300)) {
        let mut b = block_with(&[]);
        let mut model: BTreeMap<Vec<u8>, (u32, u8)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(n, ino, t) => {
                    if model.contains_key(n.as_bytes()) {
                        continue; // the caller checks for an existing name
                    }
                    let slack: Vec<usize> = dirents(&b)
                        .map(|d| d.unwrap())
                        .map(|d| d.rec_len - if d.ino == 0 { 0 } else { rec_len_for(d.name.len()) })
                        .collect();
                    let fits = slack.iter().any(|&s| s >= rec_len_for(n.len()));
                    prop_assert_eq!(insert(&mut b, n.as_bytes(), ino, t).unwrap(), fits);
                    if fits {
                        model.insert(n.into_bytes(), (ino, t));
                    }
                }
                Op::Remove(n) => {
                    let got = remove(&mut b, n.as_bytes()).unwrap();
                    prop_assert_eq!(got, model.remove(n.as_bytes()).map(|v| v.0));
                }
                Op::Retarget(n, ino) => {
                    let present = model.contains_key(n.as_bytes());
                    prop_assert_eq!(retarget(&mut b, n.as_bytes(), ino, DT_REG).unwrap(), present);
                    if present {
                        model.insert(n.into_bytes(), (ino, DT_REG));
                    }
                }
            }
            seal_dir_block(&mut b, BLK, OWNER);
            check_dir_block(&b, BLK, OWNER).unwrap();
            prop_assert_eq!(&contents(&b), &model);
            prop_assert_eq!(is_empty(&b).unwrap(), model.is_empty());
        }
        for (n, (ino, t)) in &model {
            let d = find(&b, n).unwrap().unwrap();
            prop_assert_eq!((d.ino, d.file_type), (*ino, *t));
        }
        prop_assert!(find(&b, b"not-there").unwrap().is_none());
    }
}

proptest! {
    /// `retain` leaves the block `remove` would, one name at a time, leaves: the same bytes.
    #[test]
    fn retain_equals_removes_one_by_one(count in 1usize..120, drop_bits in any::<u128>(), len in 1usize..40) {
        let names: Vec<String> = (0..count).map(|i| format!("{i}-{}", "n".repeat((i * 13) % len))).collect();
        let mut a = [0u8; BLOCK_SIZE];
        init_dir_block(&mut a, BLK, OWNER);
        let mut stored = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if insert(&mut a, n.as_bytes(), 10 + i as u32, DT_REG).unwrap() {
                stored.push(n.clone());
            }
        }
        let dropped = |n: &str| stored.iter().position(|s| s == n).is_some_and(|i| drop_bits >> (i % 128) & 1 == 1);
        let mut b = a;
        let went = retain(&mut a, |d| !dropped(std::str::from_utf8(d.name).unwrap())).unwrap();
        let mut n = 0;
        for s in &stored {
            if dropped(s) {
                prop_assert!(remove(&mut b, s.as_bytes()).unwrap().is_some());
                n += 1;
            }
        }
        prop_assert_eq!(went, n);
        prop_assert!(a == b, "retain and removes differ");
    }
}
