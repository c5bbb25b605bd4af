//! Every decoder of the on-disk format (`vexfs_core::format`) on arbitrary bytes: the
//! superblock, inodes, directory blocks (and the dirent edits the kernel makes in them),
//! extent blocks, the vector map, HNSW records and header, vector-id blocks, the journal
//! superblock and journal records, xattr blocks (and an attribute set and removed), indexed
//! directories' headers. The first input byte picks the decoder, the next 16 its
//! numbers (block number, owner, inode or slot), the rest is the block (zero-padded to 4096
//! bytes). When the first byte's top bit is set, the block's checksum (and, for the
//! self-describing blocks, magic, block number and owner) is made right first, with core's
//! own sealing functions, so that the fuzzer reaches the checks behind it. None may panic;
//! what decodes must encode back to what decodes the same, and a dirent inserted in a block
//! that parsed must be found in a block that still parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_core::crc32c::{crc32c, crc32c_parts};
use vexfs_core::dir_index::{Header, INDEX_MAGIC};
use vexfs_core::format::block::seal_header;
use vexfs_core::format::dir::{self, DIR_MAGIC};
use vexfs_core::format::extent::EXTENT_MAGIC;
use vexfs_core::format::extent::{check_extent, extent_block_count, extent_block_get, Extent};
use vexfs_core::format::inode::Inode;
use vexfs_core::format::journal::{decode_record, peek_record, JournalSuper};
use vexfs_core::format::journal::{record_checksum, JOURNAL_MAGIC, RECORD_HEADER};
use vexfs_core::format::superblock::Superblock;
use vexfs_core::format::vector::{
    check_vec_ids_block, slot_level, vec_ids_block_count, vec_ids_block_get, HnswGeometry, HnswHeader, Level0Head,
    MapEntry, UpperTable,
};
use vexfs_core::format::vector::{HNSW_MAGIC, VEC_IDS_MAGIC};
use vexfs_core::format::xattr::{self, XATTR_MAGIC};
use vexfs_core::format::{BLOCK_SIZE, INODE_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let mut nums = [0u8; 16];
    let n = rest.len().min(16);
    nums[..n].copy_from_slice(&rest[..n]);
    let a = u64::from_le_bytes(nums[..8].try_into().unwrap_or_default());
    let b = u64::from_le_bytes(nums[8..].try_into().unwrap_or_default());
    let mut block = vec![0u8; BLOCK_SIZE];
    let body = &rest[n..];
    let m = body.len().min(BLOCK_SIZE);
    block[..m].copy_from_slice(&body[..m]);
    if which & 0x80 != 0 {
        seal(which % 9, &mut block, a, b);
    }
    match which % 9 {
        0 => superblock(&block, a),
        1 => inode(&block, a),
        2 => dir_block(&mut block, a, b, body.get(BLOCK_SIZE..).unwrap_or_default()),
        3 => extent_block(&block, a, b),
        4 => vector(&block, a, b),
        5 => journal(&block, a, b),
        6 => xattr_block(&mut block, a, b, body.get(BLOCK_SIZE..).unwrap_or_default()),
        7 => dir_index_header(&block, a, b),
        _ => dirent_edits(&mut block, a, body.get(BLOCK_SIZE..).unwrap_or_default()),
    }
});

/// An xattr block (format v3) of block `n` of inode `owner`: checked, listed, and when it
/// checks, an attribute from the input's tail set and removed: the block still checks after
/// each and holds exactly what was set.
fn xattr_block(block: &mut [u8], n: u64, owner: u64, tail: &[u8]) {
    for e in xattr::entries(block) {
        if e.is_err() {
            break;
        }
    }
    if xattr::check_xattr_block(block, n, owner).is_err() {
        return;
    }
    let index = tail.first().map_or(1, |i| i % 6);
    let name_len = tail.get(1).map_or(1, |l| usize::from(*l));
    let name = tail.get(2..2 + name_len).unwrap_or(b"n");
    let name = if xattr::is_acl(index) { &b""[..] } else { name };
    let value = tail.get(2 + name_len..).unwrap_or_default();
    if matches!(xattr::set(block, n, owner, index, name, Some(value)), Ok(_)) {
        assert!(xattr::check_xattr_block(block, n, owner).is_ok(), "xattr block after a set");
        assert_eq!(xattr::get(block, index, name), Some(value), "xattr value after a set");
        assert!(xattr::set(block, n, owner, index, name, None).is_ok(), "xattr remove after a set");
        assert!(xattr::check_xattr_block(block, n, owner).is_ok(), "xattr block after a remove");
        assert_eq!(xattr::get(block, index, name), None, "xattr gone after a remove");
    }
}

/// An indexed directory's header of block `n` of directory `owner`: what decodes encodes back
/// to the same, and its depths list only those with buckets.
fn dir_index_header(block: &[u8], n: u64, owner: u64) {
    let Ok(h) = Header::decode(block, n, owner) else { return };
    let mut again = vec![0u8; BLOCK_SIZE];
    h.encode(&mut again, n, owner);
    assert_eq!(Header::decode(&again, n, owner).ok(), Some(h), "directory index header round trip");
    assert!(h.depths().all(|d| h.leaves[d as usize] > 0), "listed depths have buckets");
}

fn superblock(block: &[u8], device_blocks: u64) {
    let Ok(sb) = Superblock::decode(block) else { return };
    let mut again = vec![0u8; BLOCK_SIZE];
    sb.encode(&mut again);
    assert_eq!(Superblock::decode(&again).ok().as_ref(), Some(&sb), "superblock round trip");
    if sb.validate(device_blocks).is_ok() {
        let geo = HnswGeometry::new(&sb);
        let _ = geo.level0_pos(u32::try_from(sb.vec_capacity.saturating_sub(1)).unwrap_or(u32::MAX));
        let _ = geo.upper_pos(geo.upper_records.saturating_sub(1));
        for i in 0..16u64 {
            let _ = sb.inode_pos(i.wrapping_mul(device_blocks | 1));
        }
        // The walk is O(capacity): only small ones.
        if sb.vec_capacity <= 1 << 16 {
            let mut last = 0u64;
            UpperTable::walk(&sb, |_, level, first| {
                let end = u64::from(first) + u64::from(level);
                assert!(end <= geo.upper_records.max(last), "upper records past the region");
                last = end;
            });
        }
    }
}

fn inode(block: &[u8], ino: u64) {
    let raw = &block[..INODE_SIZE];
    let Ok(i) = Inode::decode(ino, raw) else { return };
    let mut again = [0u8; INODE_SIZE];
    i.encode(ino, &mut again);
    assert_eq!(&again[..], raw, "inode re-encoding differs");
    let _ = i.chunk_fields();
    let mut prev = 0;
    for e in i.extents.iter().take(i.nr_extents as usize) {
        let _ = check_extent(e, prev, a_data_start(ino), u64::MAX);
        let _ = e.map(ino);
        prev = e.logical_end();
    }
}

fn a_data_start(x: u64) -> u64 {
    x % 4096
}

fn dir_block(block: &mut [u8], blocknr: u64, owner: u64, tail: &[u8]) {
    let _ = dir::check_dir_block(block, blocknr, owner);
    let ok = dir::dirents(block).all(|d| d.is_ok());
    let _ = dir::is_empty(block);
    let name = if tail.is_empty() { &b"x"[..] } else { &tail[..tail.len().min(300)] };
    let _ = dir::find(block, name);
    if ok {
        if let Ok(true) = dir::insert(block, name, 7, dir::DT_REG) {
            assert!(dir::dirents(block).all(|d| d.is_ok()), "insert broke a valid block");
            assert!(matches!(dir::find(block, name), Ok(Some(_))), "inserted name not found");
        }
        let _ = dir::retarget(block, name, 9, dir::DT_DIR);
        let _ = dir::remove(block, name);
        assert!(dir::dirents(block).all(|d| d.is_ok()), "edits broke a valid block");
    }
    dir::seal_dir_block(block, blocknr, owner);
    assert!(dir::check_dir_block(block, blocknr, owner).is_ok(), "sealed block does not check");
}

/// Dirent edits on a formatted block: names from the input, inserts until full, removals.
fn dirent_edits(block: &mut [u8], seed: u64, tail: &[u8]) {
    dir::init_dir_block(block, seed, 1);
    let names: Vec<&[u8]> = tail.split(|&c| c == b'/').filter(|n| !n.is_empty()).take(64).collect();
    for (i, n) in names.iter().enumerate() {
        let _ = dir::insert(block, n, i as u32 + 2, dir::DT_REG);
        assert!(dir::dirents(block).all(|d| d.is_ok()), "insert broke the block");
    }
    for n in names.iter().rev().step_by(2) {
        let _ = dir::remove(block, n);
        assert!(dir::dirents(block).all(|d| d.is_ok()), "remove broke the block");
    }
}

fn extent_block(block: &[u8], data_start: u64, data_len: u64) {
    if let Ok(n) = extent_block_count(block) {
        let mut prev = 0;
        for i in 0..n {
            let e = extent_block_get(block, i).unwrap_or_default();
            let _ = check_extent(&e, prev, data_start, data_start.saturating_add(data_len));
            prev = e.logical_end();
        }
    }
    let e = Extent::decode(block, (data_start % 4096) as usize);
    if let Ok(e) = e {
        let _ = e.map(data_len);
    }
}

fn vector(block: &[u8], a: u64, b: u64) {
    let slot = a as u32;
    if let Ok(Some(e)) = MapEntry::decode(slot, &block[..16]) {
        let mut raw = [0u8; 16];
        MapEntry::encode(Some(e), slot, &mut raw);
        assert_eq!(MapEntry::decode(slot, &raw).ok().flatten(), Some(e), "map entry round trip");
    }
    let _ = Level0Head::decode(&block[16..]);
    if let Ok(h) = HnswHeader::decode(block, b) {
        let mut again = vec![0u8; BLOCK_SIZE];
        h.encode(&mut again, b);
        assert_eq!(HnswHeader::decode(&again, b).ok(), Some(h), "hnsw header round trip");
    }
    let _ = check_vec_ids_block(block, b, a);
    if let Ok(n) = vec_ids_block_count(block) {
        for i in 0..n {
            let _ = vec_ids_block_get(block, i);
        }
    }
    let _ = slot_level(b, slot, (a >> 32) as u32, (a >> 48) as u32 & 31);
}

fn journal(block: &[u8], blocknr: u64, jblocks: u64) {
    let uuid: [u8; 16] = block[48..64].try_into().unwrap_or_default();
    if let Ok(j) = JournalSuper::decode(block, blocknr, jblocks, &uuid) {
        let mut again = vec![0u8; BLOCK_SIZE];
        j.encode(&mut again, blocknr);
        assert_eq!(
            JournalSuper::decode(&again, blocknr, jblocks, &uuid).ok(),
            Some(j),
            "journal superblock round trip"
        );
    }
    let _ = peek_record(block);
    let _ = decode_record(block, &uuid, jblocks);
    let lsn = u64::from_le_bytes(block[8..16].try_into().unwrap_or_default());
    let _ = decode_record(block, &uuid, lsn);
    let _ = decode_record(&block[(blocknr % 4096) as usize..], &uuid, jblocks);
}

/// Makes the checksum of the block right for decoder `which` (magic, block number `a` and
/// owner `b` too for the self-describing blocks), as a writer of the format would.
fn seal(which: u8, block: &mut [u8], a: u64, b: u64) {
    match which {
        0 => {
            let c = crc32c(&block[..508]);
            block[508..512].copy_from_slice(&c.to_le_bytes());
        }
        1 => {
            let c = crc32c_parts(&[&a.to_le_bytes(), &block[..252]]);
            block[252..256].copy_from_slice(&c.to_le_bytes());
        }
        2 => seal_header(block, DIR_MAGIC, a, b),
        3 => seal_header(block, EXTENT_MAGIC, a, b),
        6 => seal_header(block, XATTR_MAGIC, a, b),
        7 => seal_header(block, INDEX_MAGIC, a, b),
        4 => {
            // The map entry of slot `a` and either header (the HNSW one has owner 0).
            let c = crc32c_parts(&[&(a as u32).to_le_bytes(), &block[..12]]);
            block[12..16].copy_from_slice(&c.to_le_bytes());
            if b & 1 == 0 {
                seal_header(block, HNSW_MAGIC, b, 0);
            } else {
                seal_header(block, VEC_IDS_MAGIC, b, a);
            }
        }
        5 => {
            // The journal superblock (its "owner" is its version and flags), or a record of
            // the UUID at bytes 48..64 at the start of the block.
            if b & 1 == 0 {
                let owner = u64::from_le_bytes(block[16..24].try_into().unwrap_or_default());
                seal_header(block, JOURNAL_MAGIC, a, owner);
            } else {
                let uuid: [u8; 16] = block[48..64].try_into().unwrap_or_default();
                block[0..4].copy_from_slice(b"VREC");
                block[4..8].fill(0);
                let len = (u32::from_le_bytes(block[20..24].try_into().unwrap_or_default()) as usize)
                    .min(BLOCK_SIZE - RECORD_HEADER);
                let head: [u8; RECORD_HEADER] = block[..RECORD_HEADER].try_into().unwrap_or([0; RECORD_HEADER]);
                let c = record_checksum(&uuid, &head, &[&block[RECORD_HEADER..RECORD_HEADER + len]]);
                block[4..8].copy_from_slice(&c.to_le_bytes());
            }
        }
        _ => {}
    }
}
