//! Extended attributes (format v3): a file's `user.`, `trusted.` and `security.` attributes
//! live in one xattr block, named by the inode's `xattr_block` (byte 216; 0 = none). The
//! embedding (`user.vexfs.embedding`) is not stored here: it is the file's chunks.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 24 | block header ([`super::block`]): [`XATTR_MAGIC`], checksum, `blocknr`, `owner` = inode |
//! | 24 | 4 | `count`: entries |
//! | 28 | 4 | `used`: bytes of entries from byte 32, a multiple of 4 |
//! | 32 | 4064 | entries, packed, then zeros |
//!
//! An entry: `index u8` (the namespace: [`XATTR_USER`], [`XATTR_TRUSTED`], [`XATTR_SECURITY`]; or
//! a POSIX ACL, [`XATTR_ACL_ACCESS`], [`XATTR_ACL_DEFAULT`], whose name is empty), `name_len u8`
//! (1..=255, the name after the namespace's prefix; 0 for an ACL), `value_len u16`, the name,
//! the value, zeros to a multiple of 4 bytes. No two entries have the same index and name.
//! Limits: every attribute of a file together fits the block's [`XATTR_SPACE`] bytes (an entry
//! takes `4 + name_len + value_len` rounded up to 4); a change that does not fit is refused
//! with `ENOSPC`, as ext4 refuses one that fits neither its inode nor its xattr block.

use super::block::{check_header, seal_header, BLOCK_HEADER};
use super::le::*;
use super::BLOCK_SIZE;
use crate::error::{FormatError, Result};

/// `"VXAT"` as a little-endian word.
pub const XATTR_MAGIC: u32 = u32::from_le_bytes(*b"VXAT");
/// Namespace index of `user.` attributes.
pub const XATTR_USER: u8 = 1;
/// Namespace index of `trusted.` attributes.
pub const XATTR_TRUSTED: u8 = 2;
/// Namespace index of `security.` attributes.
pub const XATTR_SECURITY: u8 = 3;
/// Index of the POSIX access ACL (`system.posix_acl_access`, an empty name).
pub const XATTR_ACL_ACCESS: u8 = 4;
/// Index of the POSIX default ACL of a directory (`system.posix_acl_default`, an empty name).
pub const XATTR_ACL_DEFAULT: u8 = 5;

/// Whether namespace `index` is a POSIX ACL's: its one attribute has an empty name, and its
/// value is the kernel's `posix_acl_xattr` form (version 2; ids as in the initial namespace).
pub fn is_acl(index: u8) -> bool {
    matches!(index, XATTR_ACL_ACCESS | XATTR_ACL_DEFAULT)
}
/// First byte of the entries.
const ENTRIES: usize = 32;
/// Bytes the entries of one block may take.
pub const XATTR_SPACE: usize = BLOCK_SIZE - ENTRIES;
/// Longest name (after the namespace prefix).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest value of an attribute with a one-byte name: what fits the block alone.
pub const XATTR_VALUE_MAX: usize = XATTR_SPACE - 4 - 1;

/// The prefix of namespace `index` (`user.`, `trusted.`, `security.`; an ACL's whole name),
/// `None` for an index no namespace has.
pub fn prefix(index: u8) -> Option<&'static str> {
    match index {
        XATTR_USER => Some("user."),
        XATTR_TRUSTED => Some("trusted."),
        XATTR_SECURITY => Some("security."),
        XATTR_ACL_ACCESS => Some("system.posix_acl_access"),
        XATTR_ACL_DEFAULT => Some("system.posix_acl_default"),
        _ => None,
    }
}

/// Bytes an entry with these lengths takes in the block.
pub fn entry_size(name_len: usize, value_len: usize) -> usize {
    4usize.saturating_add(name_len).saturating_add(value_len).div_ceil(4).saturating_mul(4)
}

fn corrupt(what: &'static str, value: u64) -> FormatError {
    FormatError::Corrupt { what, value }
}

/// One attribute of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xattr<'a> {
    /// Namespace index.
    pub index: u8,
    /// Name after the namespace prefix.
    pub name: &'a [u8],
    /// Value.
    pub value: &'a [u8],
    /// Offset of the entry in the block.
    off: usize,
}

/// The entries of a checked block, in order.
pub fn entries(block: &[u8]) -> impl Iterator<Item = Result<Xattr<'_>>> + '_ {
    let used = u32_at(block, 28, "xattr block").map(|u| u as usize).unwrap_or(0);
    let end = ENTRIES.saturating_add(used).min(block.len());
    let mut off = ENTRIES;
    core::iter::from_fn(move || {
        if off >= end {
            return None;
        }
        let r = (|| {
            let head: [u8; 4] = bytes(block, off, "xattr entry")?;
            let [index, name_len, _, _] = head;
            let (name_len, value_len) = (usize::from(name_len), usize::from(u16_at(&head, 2, "xattr")?));
            let size = entry_size(name_len, value_len);
            let start = off.saturating_add(4);
            let body = block.get(start..start.saturating_add(name_len).saturating_add(value_len));
            match body {
                Some(b)
                    if off.saturating_add(size) <= end
                        && (name_len > 0) != is_acl(index)
                        && prefix(index).is_some() =>
                {
                    let (name, value) = b.split_at(name_len.min(b.len()));
                    let x = Xattr { index, name, value, off };
                    off = off.saturating_add(size);
                    Ok(x)
                }
                _ => Err(corrupt("xattr entry", off as u64)),
            }
        })();
        if r.is_err() {
            off = end;
        }
        Some(r)
    })
}

/// Checks an xattr block whole: header (block `blocknr` of inode `owner`), `used` inside the
/// block and a multiple of 4, `count` entries exactly, each valid (a known namespace, a name
/// of 1..=255 bytes, inside `used`), no name twice, zeros after the entries. Errors:
/// `Corrupt`, the header's (all EUCLEAN).
pub fn check_xattr_block(block: &[u8], blocknr: u64, owner: u64) -> Result<()> {
    check_header(block, "xattr block", XATTR_MAGIC, blocknr, owner)?;
    let count = u32_at(block, 24, "xattr block")? as usize;
    let used = u32_at(block, 28, "xattr block")? as usize;
    if used > XATTR_SPACE || used % 4 != 0 {
        return Err(corrupt("xattr block used bytes", used as u64));
    }
    let mut n = 0usize;
    for (i, x) in entries(block).enumerate() {
        let x = x?;
        if entries(block).take(i).any(|y| y.is_ok_and(|y| y.index == x.index && y.name == x.name)) {
            return Err(corrupt("xattr name twice", x.off as u64));
        }
        n = n.saturating_add(1);
    }
    if n != count {
        return Err(corrupt("xattr block count", count as u64));
    }
    if block.get(ENTRIES.saturating_add(used)..).is_some_and(|t| !all_zero(t)) {
        return Err(corrupt("xattr block tail not zero", used as u64));
    }
    Ok(())
}

/// The value of attribute `index`/`name` in a checked block.
pub fn get<'a>(block: &'a [u8], index: u8, name: &[u8]) -> Option<&'a [u8]> {
    entries(block).filter_map(|x| x.ok()).find(|x| x.index == index && x.name == name).map(|x| x.value)
}

/// Makes `block` an empty xattr block (block `blocknr` of inode `owner`).
pub fn init(block: &mut [u8], blocknr: u64, owner: u64) {
    block.fill(0);
    seal_header(block, XATTR_MAGIC, blocknr, owner);
}

/// Whether a checked block holds no attribute.
pub fn is_empty(block: &[u8]) -> bool {
    u32_at(block, 24, "xattr block").map_or(true, |c| c == 0)
}

/// Why [`set`] refused a change (nothing was changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// The name is empty or longer than [`XATTR_NAME_MAX`]. errno `ERANGE`.
    Name,
    /// The attributes would not fit the block. errno `ENOSPC`.
    NoSpace,
    /// The block failed its checks. errno `EUCLEAN`.
    Corrupt(FormatError),
}

/// Sets (`Some(value)`) or removes (`None`) attribute `index`/`name` in a checked block of
/// block `blocknr`, inode `owner`, and seals it. Returns whether the attribute existed before
/// (the caller applies `XATTR_CREATE`/`XATTR_REPLACE` and `ENODATA` first, from [`get`]). On an
/// error nothing changed.
pub fn set(
    block: &mut [u8],
    blocknr: u64,
    owner: u64,
    index: u8,
    name: &[u8],
    value: Option<&[u8]>,
) -> core::result::Result<bool, SetError> {
    let name_len = u8::try_from(name.len()).map_err(|_| SetError::Name)?;
    if name.is_empty() != is_acl(index) || prefix(index).is_none() {
        return Err(SetError::Name);
    }
    if block.len() < BLOCK_SIZE {
        return Err(SetError::Corrupt(FormatError::Truncated { what: "xattr block", len: block.len() }));
    }
    let count = u32_at(block, 24, "xattr block").map_err(SetError::Corrupt)?;
    let used = u32_at(block, 28, "xattr block").map_err(SetError::Corrupt)? as usize;
    if used > XATTR_SPACE {
        return Err(SetError::Corrupt(corrupt("xattr block used bytes", used as u64)));
    }
    let old = entries(block)
        .filter_map(|x| x.ok())
        .find(|x| x.index == index && x.name == name)
        .map(|x| (x.off, entry_size(x.name.len(), x.value.len())));
    let freed = old.map_or(0, |(_, n)| n).min(used);
    let need = value.map_or(0, |v| entry_size(name.len(), v.len()));
    let value_len = match value {
        Some(v) => {
            let l = u16::try_from(v.len()).map_err(|_| SetError::NoSpace)?;
            if used.saturating_sub(freed).saturating_add(need) > XATTR_SPACE {
                return Err(SetError::NoSpace);
            }
            l
        }
        None => 0,
    };
    // `used <= XATTR_SPACE`: `end` and every offset below stay inside the block.
    let end = ENTRIES.saturating_add(used);
    let mut count = count;
    let mut end_now = end;
    if let Some((off, n)) = old {
        // The old entry goes: the ones after it move down, the freed tail is zeroed.
        if let Some(region) = block.get_mut(off..end) {
            let n = n.min(region.len());
            region.copy_within(n.., 0);
            let keep = region.len().saturating_sub(n);
            if let Some(t) = region.get_mut(keep..) {
                t.fill(0);
            }
        }
        end_now = end.saturating_sub(n);
        count = count.saturating_sub(1);
    }
    if let Some(v) = value {
        if let Some(e) = block.get_mut(end_now..end_now.saturating_add(need)) {
            e.fill(0);
            let (head, body) = e.split_at_mut(4.min(e.len()));
            let [lo, hi] = value_len.to_le_bytes();
            if let Some(h) = head.get_mut(..4) {
                h.copy_from_slice(&[index, name_len, lo, hi]);
            }
            let (n_dst, rest) = body.split_at_mut(name.len().min(body.len()));
            n_dst.copy_from_slice(name.get(..n_dst.len()).unwrap_or(&[]));
            if let Some(v_dst) = rest.get_mut(..v.len()) {
                v_dst.copy_from_slice(v);
            }
        }
        end_now = end_now.saturating_add(need);
        count = count.saturating_add(1);
    }
    put_u32(block, 24, count);
    put_u32(block, 28, u32::try_from(end_now.saturating_sub(ENTRIES)).unwrap_or(0));
    seal_header(block, XATTR_MAGIC, blocknr, owner);
    Ok(old.is_some())
}

const _: () = assert!(ENTRIES >= BLOCK_HEADER + 8);

#[cfg(test)]
// Tests: a panic is the failure report.
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec;
    use std::vec::Vec;

    fn block() -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_SIZE];
        init(&mut b, 900, 7);
        b
    }

    fn all(b: &[u8]) -> BTreeMap<(u8, Vec<u8>), Vec<u8>> {
        entries(b).map(|x| x.unwrap()).map(|x| ((x.index, x.name.to_vec()), x.value.to_vec())).collect()
    }

    #[test]
    fn set_replace_remove_match_a_model() {
        let mut b = block();
        let mut model = BTreeMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let index = 1 + (x % 3) as u8;
            let name = std::format!("n{}", (x >> 8) % 40).into_bytes();
            let value =
                if (x >> 20) % 4 == 0 { None } else { Some(vec![(step % 251) as u8; ((x >> 24) % 300) as usize]) };
            let before = b.clone();
            match set(&mut b, 900, 7, index, &name, value.as_deref()) {
                Ok(existed) => {
                    assert_eq!(existed, model.contains_key(&(index, name.clone())));
                    match value {
                        Some(v) => {
                            model.insert((index, name), v);
                        }
                        None => {
                            model.remove(&(index, name));
                        }
                    }
                }
                Err(SetError::NoSpace) => assert_eq!(b, before, "a refused set changes nothing"),
                Err(e) => panic!("{e:?}"),
            }
            check_xattr_block(&b, 900, 7).unwrap();
            assert_eq!(all(&b), model);
            assert_eq!(is_empty(&b), model.is_empty());
        }
    }

    #[test]
    fn limits() {
        let mut b = block();
        assert_eq!(set(&mut b, 900, 7, XATTR_USER, b"", Some(b"x")), Err(SetError::Name));
        assert_eq!(set(&mut b, 900, 7, XATTR_USER, &[b'n'; 256], Some(b"x")), Err(SetError::Name));
        assert_eq!(set(&mut b, 900, 7, 9, b"n", Some(b"x")), Err(SetError::Name));
        set(&mut b, 900, 7, XATTR_USER, b"n", Some(&vec![1u8; XATTR_VALUE_MAX])).unwrap();
        assert_eq!(set(&mut b, 900, 7, XATTR_USER, b"m", Some(b"")), Err(SetError::NoSpace));
        // Replacing it by itself fits (its own space is given back first).
        set(&mut b, 900, 7, XATTR_USER, b"n", Some(&vec![2u8; XATTR_VALUE_MAX])).unwrap();
        assert_eq!(get(&b, XATTR_USER, b"n").unwrap().len(), XATTR_VALUE_MAX);
        assert_eq!(get(&b, XATTR_TRUSTED, b"n"), None);
        check_xattr_block(&b, 900, 7).unwrap();
    }

    #[test]
    fn acls_have_empty_names() {
        let mut b = block();
        let acl = [2u8, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff];
        set(&mut b, 900, 7, XATTR_ACL_ACCESS, b"", Some(&acl)).unwrap();
        set(&mut b, 900, 7, XATTR_ACL_DEFAULT, b"", Some(&acl)).unwrap();
        assert_eq!(set(&mut b, 900, 7, XATTR_ACL_ACCESS, b"x", Some(&acl)), Err(SetError::Name));
        assert_eq!(set(&mut b, 900, 7, XATTR_USER, b"", Some(&acl)), Err(SetError::Name));
        check_xattr_block(&b, 900, 7).unwrap();
        assert_eq!(get(&b, XATTR_ACL_ACCESS, b""), Some(&acl[..]));
        assert_eq!(prefix(XATTR_ACL_DEFAULT), Some("system.posix_acl_default"));
        set(&mut b, 900, 7, XATTR_ACL_ACCESS, b"", None).unwrap();
        assert_eq!(get(&b, XATTR_ACL_ACCESS, b""), None);
    }

    #[test]
    fn corruption_is_found() {
        let mut b = block();
        set(&mut b, 900, 7, XATTR_SECURITY, b"selinux", Some(b"system_u:object_r:tmp_t:s0")).unwrap();
        set(&mut b, 900, 7, XATTR_USER, b"a", Some(b"1")).unwrap();
        let good = b.clone();
        for (off, val) in [(24usize, 5u8), (28, 3), (28, 200), (32, 9), (33, 0), (33, 200), (34, 0xff), (4000, 1)] {
            let mut c = good.clone();
            c[off] = val;
            seal_header(&mut c, XATTR_MAGIC, 900, 7);
            assert!(check_xattr_block(&c, 900, 7).is_err(), "byte {off} = {val} passed");
        }
        // The same name twice: "aa" then "ab", whose last byte becomes 'a'.
        let mut c = block();
        set(&mut c, 900, 7, XATTR_USER, b"aa", Some(b"1")).unwrap();
        set(&mut c, 900, 7, XATTR_USER, b"ab", Some(b"2")).unwrap();
        check_xattr_block(&c, 900, 7).unwrap();
        let second = 32 + entry_size(2, 1);
        assert_eq!(&c[second + 4..second + 6], b"ab");
        c[second + 5] = b'a';
        seal_header(&mut c, XATTR_MAGIC, 900, 7);
        assert_eq!(check_xattr_block(&c, 900, 7), Err(corrupt("xattr name twice", second as u64)));
        assert!(check_xattr_block(&good, 901, 7).is_err(), "wrong block number");
    }
}
