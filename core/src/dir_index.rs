//! Indexed directories: a directory whose entries are found by a keyed hash of their name, in
//! O(depth) block reads, with readdir positions that stay valid while the directory changes
//! (telldir/seekdir, NFS cookies). Format v3 with `FEATURE_INCOMPAT_DIR_INDEX`; a directory is
//! indexed when its inode has [`crate::format::inode::INODE_FLAG_INDEX`].
//!
//! **Keys.** An entry's key is the top 62 bits of SipHash-2-4 (Aumasson & Bernstein, 2012) of
//! its name under the directory's 16-byte seed ([`name_key`]): names a user picks cannot be
//! aimed at one bucket without the seed, which only root can read from the device.
//!
//! **Buckets.** The key space is cut into buckets by key prefix, a binary trie whose leaves
//! are the buckets: the bucket of depth `d` and prefix `p` (`p < 2^d`) holds the keys whose top
//! `d` bits are `p`, and is one ordinary directory block ([`crate::format::dir`]) at the
//! directory's *logical* block `2^d + p` ([`bucket_block`]). The leaves cover the key space
//! exactly once: every key has one bucket, whose block is mapped; the logical blocks of the
//! trie's inner nodes are holes. Logical block 0 is the header ([`Header`]: the seed and the
//! number of buckets at each depth). A full bucket splits ([`insert`]): its two children
//! (`2^(d+1) + 2p` and the next block) get its entries by the next key bit and it is unmapped.
//! Buckets never merge (as ext4's htree never shrinks).
//!
//! **Lookup** probes the depths that have buckets (the header says which, few with a uniform
//! hash) for the mapped block of the key's prefix: one block-map lookup per depth and one
//! directory block read. **readdir** returns entries in key order: position `key + 2` (0 and
//! 1 are "." and ".."), [`POS_EOF`] at the end; a position names a key, not a place in a block,
//! so splits, creates and unlinks never make a reader skip an entry that stays (two names of
//! one key, about one pair in 2^62, may be returned twice).
//!
//! All of it works through [`DirStore`] (the kernel's buffer cache and block map inside a
//! journal handle, the tools' images), without heap allocation.

use crate::error::FormatError;
use crate::format::block::{check_header_csum, seal_header, Csum};
use crate::format::dir::{self, check_dir_block, check_dir_block_csum, dirents, seal_dir_block, DIR_HEADER};
use crate::format::le::{all_zero, put, put_u32, u32_at};
use crate::format::BLOCK_SIZE;

/// `"VDXH"` as a little-endian word: the header block's magic.
pub const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"VDXH");
/// Bits of a key.
pub const KEY_BITS: u32 = 62;
/// Deepest bucket: its logical block `2^30 + p` stays below `2^31`.
pub const MAX_DEPTH: u32 = 30;
/// readdir position of key 0 (positions 0 and 1 are "." and "..").
pub const POS_FIRST: i64 = 2;
/// readdir position past the last entry (as ext4's `EXT4_HTREE_EOF_64BIT`).
pub const POS_EOF: i64 = i64::MAX;
/// Most dirents a block holds (a 1-byte name takes 16 bytes).
pub const MAX_BLOCK_ENTRIES: usize = (BLOCK_SIZE - DIR_HEADER) / 16;
/// Splits one insertion may make before it gives up with `NoSpace` (each split halves the
/// bucket's key range; a fourth would be needed only for names crafted with the seed).
pub const MAX_SPLITS: usize = 3;
/// Data blocks a linear directory's conversion and the split that follows it need free at
/// once: the new bucket, then its two children (the bucket is freed only after them). The
/// kernel refuses the conversion with `ENOSPC` below this, so that a create into a full
/// one-block directory either fits or changes nothing.
pub const CONVERT_BLOCKS: u64 = 3;
/// Data blocks one split ([`make_room`]) may allocate, for a directory whose block map holds
/// `nr_extents` extents (`crate::file_extents`): its two children, and when the map may need
/// tree nodes (fewer than 3 inline slots left for the children's extents and the extent the
/// parent's unmapping may split off), the nodes of those three insertions, each at most
/// `extent_tree::MAX_DEPTH + 2`. The kernel refuses a split with `ENOSPC` below this, before
/// any change: a split that ran out of blocks half way could not always be undone (unmapping
/// a child may itself need a node).
pub fn split_alloc_bound(nr_extents: u32) -> u64 {
    use crate::extent_tree::MAX_DEPTH as TREE_DEPTH;
    use crate::format::inode::INLINE_EXTENTS;
    if (nr_extents as usize).saturating_add(3) <= INLINE_EXTENTS {
        2
    } else {
        2 + 3 * (TREE_DEPTH as u64 + 2)
    }
}

/// Blocks one insertion allocates at most: two per split.
pub const INSERT_ALLOC_BOUND: usize = 2 * MAX_SPLITS;

/// Offset of the seed in the header block.
const SEED_OFF: usize = 24;
/// Offset of the reserved word (zero).
const RESERVED_OFF: usize = 40;
/// Offset of the bucket counts, one `u32` per depth `0..=MAX_DEPTH`.
const LEAVES_OFF: usize = 44;
/// One past the last byte of the header's fields; the rest of the block is zero.
const HEADER_END: usize = LEAVES_OFF + 4 * (MAX_DEPTH as usize + 1);

fn corrupt(what: &'static str, value: u64) -> FormatError {
    FormatError::Corrupt { what, value }
}

/// SipHash-2-4 of `data` under `key` (the reference algorithm of Aumasson & Bernstein,
/// "SipHash: a fast short-input PRF", 2012: 2 compression rounds, 4 finalization rounds).
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        for (x, y) in w.iter_mut().zip(b) {
            *x = *y;
        }
        u64::from_le_bytes(w)
    };
    let (k0, k1) = (word(&key[..8]), word(&key[8..]));
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let m = word(c);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let last = word(chunks.remainder()) | ((data.len() as u64 & 0xff) << 56);
    v[3] ^= last;
    round(&mut v);
    round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The key of `name` in a directory of seed `seed`: the top [`KEY_BITS`] bits of its SipHash.
pub fn name_key(seed: &[u8; 16], name: &[u8]) -> u64 {
    siphash24(seed, name) >> (64 - KEY_BITS)
}

/// The readdir position of `key`.
pub fn key_pos(key: u64) -> i64 {
    // key < 2^62: the sum stays far below i64::MAX.
    (key & ((1 << KEY_BITS) - 1)) as i64 + POS_FIRST
}

/// The first key at or after readdir position `pos` (`None` at or past the end).
pub fn pos_key(pos: i64) -> Option<u64> {
    let k = u64::try_from(pos.max(POS_FIRST) - POS_FIRST).ok()?;
    (k < 1 << KEY_BITS).then_some(k)
}

/// The logical block of the bucket of depth `depth` (at most [`MAX_DEPTH`]) holding `key`.
pub fn bucket_block(depth: u32, key: u64) -> u64 {
    let d = depth.min(MAX_DEPTH);
    (1u64 << d) + (key >> (KEY_BITS - d))
}

/// The depth and prefix of the bucket at logical block `block` (`None` for block 0, the header,
/// and blocks past the deepest buckets).
pub fn bucket_of(block: u64) -> Option<(u32, u64)> {
    if block == 0 || block >= 1 << (MAX_DEPTH + 1) {
        return None;
    }
    let d = 63 - block.leading_zeros();
    Some((d, block - (1 << d)))
}

/// The keys of the bucket of depth `depth` and prefix `prefix`: `lo .. hi`.
pub fn bucket_keys(depth: u32, prefix: u64) -> (u64, u64) {
    let shift = KEY_BITS - depth.min(MAX_DEPTH);
    (prefix << shift, (prefix + 1) << shift)
}

/// The header block of an indexed directory (its logical block 0).
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 24 | block header ([`crate::format::block`]): [`INDEX_MAGIC`], checksum, `blocknr`, `owner` = the directory |
/// | 24 | 16 | `seed`: the key of [`name_key`] |
/// | 40 | 4 | reserved, zero |
/// | 44 | 124 | `leaves[d]`, `u32` for `d` in `0..=30`: buckets of depth `d` |
/// | 168 | 3928 | zero |
///
/// The buckets cover the key space exactly once: `sum(leaves[d] * 2^(30 - d)) = 2^30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The hash seed.
    pub seed: [u8; 16],
    /// Buckets at each depth.
    pub leaves: [u32; MAX_DEPTH as usize + 1],
}

impl Header {
    /// A header with one bucket of depth 0 (the whole key space).
    pub fn new(seed: [u8; 16]) -> Header {
        let mut leaves = [0; MAX_DEPTH as usize + 1];
        leaves[0] = 1;
        Header { seed, leaves }
    }

    /// Decodes and checks the header block of directory `owner` at device block `blocknr`.
    /// Errors (EUCLEAN): the block header's; `Corrupt` for a non-zero reserved field or
    /// trailing byte, a count above `2^d`, or counts that do not cover the key space once.
    pub fn decode(block: &[u8], blocknr: u64, owner: u64) -> Result<Header, FormatError> {
        Self::decode_csum(block, blocknr, owner, Csum::Check)
    }

    /// [`Header::decode`], the checksum skipped when `csum` says the store verified it, and the
    /// scan of the unused bytes too when it says [`Csum::Checked`].
    pub fn decode_csum(block: &[u8], blocknr: u64, owner: u64, csum: Csum) -> Result<Header, FormatError> {
        check_header_csum(block, "directory index header", INDEX_MAGIC, blocknr, owner, csum)?;
        let mut seed = [0u8; 16];
        seed.copy_from_slice(block.get(SEED_OFF..SEED_OFF + 16).ok_or(corrupt("directory index header", 0))?);
        if u32_at(block, RESERVED_OFF, "directory index header")? != 0 {
            return Err(corrupt("directory index reserved field", RESERVED_OFF as u64));
        }
        // The unused rest of the block is zero; a header the store vouches for (checked whole
        // since it came from the device) is not scanned again.
        if csum != Csum::Checked && block.get(HEADER_END..).is_some_and(|t| !all_zero(t)) {
            return Err(corrupt("directory index header trailing bytes", HEADER_END as u64));
        }
        let mut leaves = [0u32; MAX_DEPTH as usize + 1];
        let mut cover = 0u64;
        for (d, l) in leaves.iter_mut().enumerate() {
            *l = u32_at(block, LEAVES_OFF + 4 * d, "directory index header")?;
            if u64::from(*l) > 1 << d {
                return Err(corrupt("directory index bucket count", d as u64));
            }
            cover += u64::from(*l) << (MAX_DEPTH as usize - d);
        }
        if cover != 1 << MAX_DEPTH {
            return Err(corrupt("directory index buckets do not cover the keys", cover));
        }
        Ok(Header { seed, leaves })
    }

    /// Writes the header into `block` (all of it) and seals it.
    pub fn encode(&self, block: &mut [u8], blocknr: u64, owner: u64) {
        block.fill(0);
        put(block, SEED_OFF, &self.seed);
        for (d, l) in self.leaves.iter().enumerate() {
            put_u32(block, LEAVES_OFF + 4 * d, *l);
        }
        seal_header(block, INDEX_MAGIC, blocknr, owner);
    }

    /// The depths that have buckets, shallowest first.
    pub fn depths(&self) -> impl Iterator<Item = u32> + '_ {
        (0..=MAX_DEPTH).filter(|&d| self.leaves.get(d as usize).is_some_and(|&l| l > 0))
    }
}

/// Where an indexed directory's blocks are mapped and read: the kernel's block map and buffer
/// cache, a tool's image. Blocks are [`BLOCK_SIZE`] bytes; logical blocks are the directory's,
/// device blocks the store's.
pub trait DirRead {
    /// The store's error; corruption arrives as a [`FormatError`].
    type Error: From<FormatError>;
    /// The device block of the directory's logical block `logical`, `None` for a hole.
    fn map(&mut self, logical: u64) -> Result<Option<u64>, Self::Error>;
    /// Calls `f` on device block `n` as it is on the store.
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, Self::Error>;
    /// [`Self::read`] of a block with the common header (the index header, a bucket), with
    /// whether the store already verified its checksum, or the whole header block
    /// ([`Csum::Checked`], after [`Self::mark_checked`]). By default [`Csum::Check`]: the
    /// decoder checks it.
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> Result<R, Self::Error> {
        self.read(n, |b| f(b, Csum::Check))
    }
    /// The index header at device block `n`, just read, passed its whole check: a store that
    /// can remember it until the block comes from the device again reports it as
    /// [`Csum::Checked`] from then on. By default nothing.
    fn mark_checked(&mut self, _n: u64) {}
    /// The directory's inode number (the owner in every block header).
    fn owner(&self) -> u64;
}

/// A [`DirRead`] that also changes the directory: inside a journal handle in the kernel, an
/// offline writer's session in the tools.
pub trait DirStore: DirRead {
    /// Calls `f` on device block `n` to change it (the caller seals it).
    fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, Self::Error>;
    /// Allocates a device block, maps it at logical block `logical` (a hole) and returns it;
    /// its contents are written whole next. Errors: `ENOSPC`, the store's.
    fn alloc(&mut self, logical: u64) -> Result<u64, Self::Error>;
    /// Unmaps logical block `logical` and frees its device block.
    fn unmap(&mut self, logical: u64) -> Result<(), Self::Error>;
    /// Copies device block `from` whole into device block `to` (the caller reseals `to`).
    fn copy(&mut self, from: u64, to: u64) -> Result<(), Self::Error>;
    /// The error of a bucket that [`MAX_SPLITS`] splits could not make room in (`ENOSPC`).
    fn no_space(&mut self) -> Self::Error;
}

/// Reads the header (logical block 0). Errors: `Corrupt` for a hole there, the header's.
pub fn read_header<S: DirRead>(s: &mut S) -> Result<(u64, Header), S::Error> {
    let Some(n) = s.map(0)? else {
        return Err(corrupt("directory index without a header", 0).into());
    };
    let owner = s.owner();
    let (h, csum) = s.read_sealed(n, |b, csum| Header::decode_csum(b, n, owner, csum).map(|h| (h, csum)))??;
    if csum != Csum::Checked {
        s.mark_checked(n);
    }
    Ok((n, h))
}

/// Where a key's bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// Depth of the bucket.
    pub depth: u32,
    /// Its logical block.
    pub logical: u64,
    /// Its device block.
    pub block: u64,
}

impl Leaf {
    /// The keys the bucket holds: `lo .. hi`.
    pub fn keys(&self) -> (u64, u64) {
        bucket_keys(self.depth, self.logical - (1 << self.depth))
    }
}

/// The bucket of `key`: the first depth the header lists whose block for the key's prefix is
/// mapped. Errors: `Corrupt` when none is (the buckets do not cover the key).
pub fn find_leaf<S: DirRead>(s: &mut S, h: &Header, key: u64) -> Result<Leaf, S::Error> {
    for depth in h.depths() {
        let logical = bucket_block(depth, key);
        if let Some(block) = s.map(logical)? {
            return Ok(Leaf { depth, logical, block });
        }
    }
    Err(corrupt("directory index: no bucket for key", key).into())
}

/// Reads the bucket block `leaf` and checks its header.
fn read_leaf<S: DirRead, R>(s: &mut S, leaf: &Leaf, f: impl FnOnce(&[u8]) -> R) -> Result<R, S::Error> {
    let owner = s.owner();
    let n = leaf.block;
    s.read_sealed(n, |b, csum| check_dir_block_csum(b, n, owner, csum).map(|()| f(b)))?.map_err(S::Error::from)
}

/// The dirent `name` of the directory: (inode, type), or `None`.
pub fn lookup<S: DirRead>(s: &mut S, name: &[u8]) -> Result<Option<(u32, u8)>, S::Error> {
    let (_, h) = read_header(s)?;
    let leaf = find_leaf(s, &h, name_key(&h.seed, name))?;
    let found = read_leaf(s, &leaf, |b| dir::find(b, name).map(|d| d.map(|d| (d.ino, d.file_type))))?;
    Ok(found?)
}

/// The bucket of key `key` and whether a name of `len` bytes fits in it.
fn leaf_room<S: DirRead>(s: &mut S, h: &Header, key: u64, len: usize) -> Result<(Leaf, bool), S::Error> {
    let leaf = find_leaf(s, h, key)?;
    let fits = read_leaf(s, &leaf, |b| dir::fits(b, len))??;
    Ok((leaf, fits))
}

/// Whether the bucket of `name` has room for it (an [`insert`] of it would not split).
/// Errors: `Corrupt`, the store's.
pub fn has_room<S: DirRead>(s: &mut S, name: &[u8]) -> Result<bool, S::Error> {
    let (_, h) = read_header(s)?;
    Ok(leaf_room(s, &h, name_key(&h.seed, name), name.len())?.1)
}

/// One step toward room for `name`: `true` when its bucket has room; else splits that bucket
/// once and returns `false` (call again: a split is a consistent state of its own, so the
/// kernel runs each in its own transaction of at most [`split_blocks_bound`] blocks). Errors:
/// the store's (`ENOSPC`: nothing changed), `no_space` at [`MAX_DEPTH`], `Corrupt`.
pub fn make_room<S: DirStore>(s: &mut S, name: &[u8]) -> Result<bool, S::Error> {
    let (hblock, mut h) = read_header(s)?;
    let (leaf, fits) = leaf_room(s, &h, name_key(&h.seed, name), name.len())?;
    if !fits {
        split(s, &mut h, hblock, &leaf)?;
    }
    Ok(fits)
}

/// Adds the dirent `name -> ino` (the caller checked that `name` is absent), splitting full
/// buckets, at most [`MAX_SPLITS`] times. Errors: the store's (`ENOSPC` from an allocation:
/// nothing changed by the split that failed), `no_space` when the splits leave the key's
/// bucket full, `Corrupt`.
pub fn insert<S: DirStore>(s: &mut S, name: &[u8], ino: u32, file_type: u8) -> Result<(), S::Error> {
    insert_splitting(s, name, ino, file_type, MAX_SPLITS)
}

/// [`insert`] with at most `max_splits` splits: 0 where the caller made room beforehand
/// ([`make_room`]) and may not split (the kernel, whose create's handle has no credits for a
/// split). The header is read once and the bucket once per attempt. Errors: as [`insert`].
pub fn insert_splitting<S: DirStore>(
    s: &mut S,
    name: &[u8],
    ino: u32,
    file_type: u8,
    max_splits: usize,
) -> Result<(), S::Error> {
    let (hblock, mut h) = read_header(s)?;
    let key = name_key(&h.seed, name);
    let owner = s.owner();
    let mut splits = 0;
    loop {
        let (leaf, fits) = leaf_room(s, &h, key, name.len())?;
        if fits {
            let n = leaf.block;
            let added = s.write(n, |b| {
                let r = dir::insert(b, name, ino, file_type);
                if matches!(r, Ok(true)) {
                    seal_dir_block(b, n, owner);
                }
                r
            })??;
            return if added { Ok(()) } else { Err(s.no_space()) };
        }
        if splits >= max_splits {
            return Err(s.no_space());
        }
        split(s, &mut h, hblock, &leaf)?;
        splits += 1;
    }
}

/// Blocks one split ([`make_room`]) changes at most when the directory's block map is a
/// `crate::file_extents` map (inline extents, then an extent tree of depth at most
/// `extent_tree::MAX_DEPTH`) and the block bitmap has `bitmap_blocks` blocks: the two
/// children, the header, the inode, the tree nodes of two insertions and of the one-block
/// punch of the parent (which may split an extent), and a bitmap block for every block
/// allocated or freed, with a margin of 8.
pub fn split_blocks_bound(bitmap_blocks: u64) -> u64 {
    use crate::extent_tree::{insert_blocks_bound, MAX_DEPTH as TREE_DEPTH};
    let insert = insert_blocks_bound(TREE_DEPTH) as u64;
    let path = TREE_DEPTH as u64 + 1;
    let tree = 2 * insert + path + insert;
    // Allocated: 2 children and the nodes of 3 insertions (depth + 2 each); freed: the parent
    // and the nodes a punch empties (a path).
    let moves = 2 + 3 * (TREE_DEPTH as u64 + 2) + 1 + path;
    2 + 1 + 1 + tree + bitmap_blocks.min(moves) + 8
}

/// Splits the full bucket `leaf` in two: its children by the next key bit, the header's counts,
/// then the bucket unmapped.
fn split<S: DirStore>(s: &mut S, h: &mut Header, hblock: u64, leaf: &Leaf) -> Result<(), S::Error> {
    if leaf.depth >= MAX_DEPTH {
        return Err(s.no_space());
    }
    let owner = s.owner();
    let child = 2 * leaf.logical;
    let a = s.alloc(child)?;
    let b = match s.alloc(child + 1) {
        Ok(b) => b,
        Err(e) => {
            s.unmap(child)?;
            return Err(e);
        }
    };
    // Each child starts as a copy of the parent and keeps its side's entries (the parent's
    // dirents all fit one block: each side's do).
    read_leaf(s, leaf, |_| ())?;
    let seed = h.seed;
    let bit = KEY_BITS - 1 - leaf.depth;
    for (n, side) in [(a, 0u64), (b, 1u64)] {
        s.copy(leaf.block, n)?;
        s.write(n, |blk| -> Result<(), FormatError> {
            dir::retain(blk, |d| (name_key(&seed, d.name) >> bit) & 1 == side)?;
            seal_dir_block(blk, n, owner);
            Ok(())
        })??;
    }
    let d = leaf.depth as usize;
    match (h.leaves.get(d).copied(), h.leaves.get(d + 1).copied()) {
        (Some(here), Some(below)) if here > 0 => {
            for (i, v) in [(d, here - 1), (d + 1, below + 2)] {
                if let Some(x) = h.leaves.get_mut(i) {
                    *x = v;
                }
            }
        }
        _ => return Err(corrupt("directory index bucket count", d as u64).into()),
    }
    let hh = *h;
    s.write(hblock, |blk| hh.encode(blk, hblock, owner))?;
    s.unmap(leaf.logical)
}

/// Removes the dirent `name`; returns its inode, or `None` if absent. Errors: `Corrupt`, the
/// store's.
pub fn remove<S: DirStore>(s: &mut S, name: &[u8]) -> Result<Option<u32>, S::Error> {
    let (_, h) = read_header(s)?;
    let leaf = find_leaf(s, &h, name_key(&h.seed, name))?;
    read_leaf(s, &leaf, |_| ())?;
    let (n, owner) = (leaf.block, s.owner());
    let r = s.write(n, |b| {
        let r = dir::remove(b, name);
        if matches!(r, Ok(Some(_))) {
            seal_dir_block(b, n, owner);
        }
        r
    })?;
    Ok(r?)
}

/// Points the dirent `name` at `ino` (rename over an existing name); returns whether `name`
/// was there. Errors: `Corrupt`, the store's.
pub fn retarget<S: DirStore>(s: &mut S, name: &[u8], ino: u32, file_type: u8) -> Result<bool, S::Error> {
    let (_, h) = read_header(s)?;
    let leaf = find_leaf(s, &h, name_key(&h.seed, name))?;
    read_leaf(s, &leaf, |_| ())?;
    let (n, owner) = (leaf.block, s.owner());
    let r = s.write(n, |b| {
        let r = dir::retarget(b, name, ino, file_type);
        if matches!(r, Ok(true)) {
            seal_dir_block(b, n, owner);
        }
        r
    })?;
    Ok(r?)
}

/// The used dirents of bucket block `block` whose key is at or after `from`, sorted by key
/// (then by offset): `(key, offset in the block)` in `out`; returns how many. Errors (EUCLEAN):
/// a malformed dirent, more than [`MAX_BLOCK_ENTRIES`].
pub fn sorted_entries(
    block: &[u8],
    seed: &[u8; 16],
    from: u64,
    out: &mut [(u64, u16); MAX_BLOCK_ENTRIES],
) -> Result<usize, FormatError> {
    let mut n = 0;
    for d in dirents(block) {
        let d = d?;
        if d.ino == 0 {
            continue;
        }
        let k = name_key(seed, d.name);
        if k < from {
            continue;
        }
        let slot = out.get_mut(n).ok_or(corrupt("directory block entries", n as u64))?;
        *slot = (k, u16::try_from(d.offset).unwrap_or(u16::MAX));
        n += 1;
    }
    if let Some(v) = out.get_mut(..n) {
        v.sort_unstable();
    }
    Ok(n)
}

/// Walks the buckets that hold keys from `key` on, in key order ([`find_leaf`], then the bucket
/// after a bucket's last key), giving `visit` each one's verified block and the lowest key of the
/// walk it may hold (`key` for the first bucket, the bucket's own low key after), inside the
/// store's read of the block. Stops when `visit` returns `false`; returns whether the walk went
/// past the last bucket. Errors: `Corrupt` (the blocks, or `visit`'s), the store's.
fn walk_buckets<S: DirRead>(
    s: &mut S,
    h: &Header,
    mut key: u64,
    mut visit: impl FnMut(&[u8], u64) -> Result<bool, FormatError>,
) -> Result<bool, S::Error> {
    loop {
        let leaf = find_leaf(s, h, key)?;
        if !read_leaf(s, &leaf, |b| visit(b, key))?? {
            return Ok(false);
        }
        let (_, hi) = leaf.keys();
        if hi >= 1 << KEY_BITS {
            return Ok(true);
        }
        key = hi;
    }
}

/// Calls `f(position, name, inode, type)` on every entry at or after readdir position `pos`,
/// in key order, until `f` returns `false`; returns the position to resume at ([`POS_EOF`]
/// after the last entry). `f` runs inside the store's read of each bucket ([`walk_buckets`]).
/// For the tools; the kernel runs the same steps ([`find_leaf`], [`sorted_entries`], the next
/// bucket at the end of a bucket's keys) with its lock dropped around each emit.
/// Errors: `Corrupt`, the store's.
pub fn for_each_from<S: DirRead>(
    s: &mut S,
    pos: i64,
    mut f: impl FnMut(i64, &[u8], u32, u8) -> bool,
) -> Result<i64, S::Error> {
    let (_, h) = read_header(s)?;
    let Some(key) = pos_key(pos) else { return Ok(POS_EOF) };
    let mut sorted = [(0u64, 0u16); MAX_BLOCK_ENTRIES];
    let mut resume = POS_EOF;
    walk_buckets(s, &h, key, |blk, from| {
        let n = sorted_entries(blk, &h.seed, from, &mut sorted)?;
        for &(k, off) in sorted.get(..n).unwrap_or(&[]) {
            let Some(Ok(d)) = dirents(blk).find(|d| d.as_ref().is_ok_and(|d| d.offset == usize::from(off))) else {
                return Err(corrupt("directory block entry", u64::from(off)));
            };
            if !f(key_pos(k), d.name, d.ino, d.file_type) {
                resume = key_pos(k);
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    Ok(resume)
}

/// Whether the directory has no entry: each bucket ([`walk_buckets`]) checked in place for a
/// used dirent (`format::dir::is_empty`), with no copy of a block or sorted list on the stack:
/// the kernel asks this at rmdir and rename, on a 16 KiB stack. Errors: `Corrupt`, the store's.
pub fn is_empty<S: DirRead>(s: &mut S) -> Result<bool, S::Error> {
    let (_, h) = read_header(s)?;
    let Some(key) = pos_key(POS_FIRST) else { return Ok(true) };
    walk_buckets(s, &h, key, |blk, _| dir::is_empty(blk))
}

/// Makes a linear directory of one block (at logical block 0, device block `block0`) indexed:
/// its entries move to a new bucket of depth 0 (logical block 1), and block 0 becomes the
/// header with `seed`. The caller sets the inode's index flag in the same transaction.
/// Errors: the store's (`ENOSPC`: nothing changed), `Corrupt`.
pub fn convert<S: DirStore>(s: &mut S, block0: u64, seed: [u8; 16]) -> Result<(), S::Error> {
    let owner = s.owner();
    s.read(block0, |b| check_dir_block(b, block0, owner))??;
    let n = s.alloc(1)?;
    s.copy(block0, n)?;
    s.write(n, |b| seal_dir_block(b, n, owner))?;
    s.write(block0, |b| Header::new(seed).encode(b, block0, owner))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::format::dir::init_dir_block;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec::Vec;

    /// SipHash-2-4 test vectors of the reference implementation (key 00..0f, message 00..n-1).
    #[test]
    fn siphash_matches_the_reference_vectors() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0..64u8).collect();
        assert_eq!(siphash24(&key, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&key, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(&key, &msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(&key, &msg[..15]), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(&key, &msg[..63]), 0x958a_324c_eb06_4572);
    }

    #[test]
    fn buckets_and_positions_round_trip() {
        for (d, key) in [(0u32, 0u64), (1, 1 << 61), (5, 12345 << 40), (30, (1 << 62) - 1)] {
            let l = bucket_block(d, key);
            let (dd, p) = bucket_of(l).unwrap();
            assert_eq!(dd, d);
            let (lo, hi) = bucket_keys(d, p);
            assert!(lo <= key && key < hi, "depth {d}");
        }
        assert_eq!(bucket_of(0), None);
        assert_eq!(bucket_of(1 << 31), None);
        assert_eq!(pos_key(key_pos(77)), Some(77));
        assert_eq!(pos_key(0), Some(0));
        assert_eq!(pos_key(POS_EOF), None);
        assert!(key_pos((1 << 62) - 1) < POS_EOF);
    }

    #[test]
    fn header_round_trips_and_refuses_bad_counts() {
        let mut h = Header::new([9; 16]);
        h.leaves[0] = 0;
        h.leaves[1] = 1;
        h.leaves[2] = 2;
        let mut b = [0u8; BLOCK_SIZE];
        h.encode(&mut b, 40, 7);
        assert_eq!(Header::decode(&b, 40, 7).unwrap(), h);
        assert!(Header::decode(&b, 41, 7).is_err());
        let mut bad = h;
        bad.leaves[2] = 1;
        bad.encode(&mut b, 40, 7);
        assert!(matches!(Header::decode(&b, 40, 7), Err(FormatError::Corrupt { .. })));
        let mut too_many = Header::new([0; 16]);
        too_many.leaves[0] = 2;
        too_many.encode(&mut b, 40, 7);
        assert!(Header::decode(&b, 40, 7).is_err());
    }

    /// A directory in memory: logical -> device blocks, device blocks' bytes, a free count.
    pub(crate) struct Mem {
        pub map: BTreeMap<u64, u64>,
        pub blocks: BTreeMap<u64, Vec<u8>>,
        pub next: u64,
        pub free: u64,
    }

    #[derive(Debug)]
    pub(crate) enum E {
        F(FormatError),
        NoSpace,
    }
    impl From<FormatError> for E {
        fn from(f: FormatError) -> E {
            E::F(f)
        }
    }

    impl DirRead for Mem {
        type Error = E;
        fn map(&mut self, l: u64) -> Result<Option<u64>, E> {
            Ok(self.map.get(&l).copied())
        }
        fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, E> {
            Ok(f(self.blocks.get(&n).expect("a block in use")))
        }
        fn owner(&self) -> u64 {
            7
        }
    }

    impl DirStore for Mem {
        fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, E> {
            Ok(f(self.blocks.get_mut(&n).expect("a block in use")))
        }
        fn alloc(&mut self, l: u64) -> Result<u64, E> {
            assert!(!self.map.contains_key(&l), "logical {l} mapped twice");
            if self.free == 0 {
                return Err(E::NoSpace);
            }
            self.free -= 1;
            self.next += 1;
            self.map.insert(l, self.next);
            self.blocks.insert(self.next, std::vec![0xa5; BLOCK_SIZE]);
            Ok(self.next)
        }
        fn unmap(&mut self, l: u64) -> Result<(), E> {
            let n = self.map.remove(&l).expect("unmap of a hole");
            self.blocks.remove(&n);
            self.free += 1;
            Ok(())
        }
        fn copy(&mut self, from: u64, to: u64) -> Result<(), E> {
            let b = self.blocks.get(&from).expect("a block in use").clone();
            self.blocks.insert(to, b);
            Ok(())
        }
        fn no_space(&mut self) -> E {
            E::NoSpace
        }
    }

    /// A linear directory of one block holding `names`, converted.
    fn indexed(names: &[Vec<u8>]) -> Mem {
        let mut m = Mem { map: BTreeMap::new(), blocks: BTreeMap::new(), next: 1000, free: 1 << 20 };
        let b0 = m.alloc(0).unwrap();
        let mut b = std::vec![0u8; BLOCK_SIZE];
        init_dir_block(&mut b, b0, 7);
        for (i, n) in names.iter().enumerate() {
            assert!(dir::insert(&mut b, n, 100 + i as u32, dir::DT_REG).unwrap());
        }
        seal_dir_block(&mut b, b0, 7);
        m.blocks.insert(b0, b);
        convert(&mut m, b0, [3; 16]).unwrap();
        m
    }

    fn name(i: u32) -> Vec<u8> {
        std::format!("file-{i:06}-with-a-longer-name").into_bytes()
    }

    fn listing(m: &mut Mem) -> Vec<(i64, Vec<u8>, u32)> {
        let mut v = Vec::new();
        let end = for_each_from(m, POS_FIRST, |p, n, ino, _| {
            v.push((p, n.to_vec(), ino));
            true
        })
        .unwrap();
        assert_eq!(end, POS_EOF);
        v
    }

    #[test]
    fn many_names_split_buckets_and_stay_found_in_key_order() {
        let first: Vec<Vec<u8>> = (0..3).map(name).collect();
        let mut m = indexed(&first);
        let n = 20_000u32;
        for i in 3..n {
            insert(&mut m, &name(i), 100 + i, dir::DT_REG).unwrap();
        }
        let (_, h) = read_header(&mut m).unwrap();
        let buckets: u32 = h.leaves.iter().sum();
        assert_eq!(buckets as usize + 1, m.map.len(), "header counts = mapped buckets");
        let depths: Vec<u32> = h.depths().collect();
        assert!(depths.len() <= 4 && depths[0] >= 6, "{depths:?}");
        for i in (0..n).step_by(7) {
            assert_eq!(lookup(&mut m, &name(i)).unwrap(), Some((100 + i, dir::DT_REG)));
        }
        assert_eq!(lookup(&mut m, b"absent").unwrap(), None);
        let l = listing(&mut m);
        assert_eq!(l.len(), n as usize);
        assert!(l.windows(2).all(|w| w[0].0 < w[1].0), "positions strictly increase");
        let all: BTreeSet<Vec<u8>> = l.iter().map(|x| x.1.clone()).collect();
        assert_eq!(all.len(), n as usize);
        // Removing everything leaves an empty directory (buckets stay); until the entry of the
        // highest key (in the last bucket) goes, it is not.
        let last = l.last().unwrap().1.clone();
        for i in 0..n {
            if name(i) != last {
                assert_eq!(remove(&mut m, &name(i)).unwrap(), Some(100 + i));
            }
        }
        assert!(!is_empty(&mut m).unwrap());
        assert!(remove(&mut m, &last).unwrap().is_some());
        assert!(is_empty(&mut m).unwrap());
    }

    /// A reader that stops anywhere and resumes from its position sees every entry that was
    /// there all along exactly once, while others are created and removed between its calls
    /// (buckets splitting under it).
    #[test]
    fn positions_survive_changes_between_calls() {
        let mut m = indexed(&[]);
        for i in 0..2000 {
            insert(&mut m, &name(i), 100 + i, dir::DT_REG).unwrap();
        }
        let stable: BTreeSet<Vec<u8>> = (0..2000).filter(|i| i % 3 != 0).map(name).collect();
        let mut seen: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        let (mut pos, mut round, mut next_new) = (POS_FIRST, 0u32, 10_000u32);
        while pos != POS_EOF {
            let mut taken = 0;
            pos = for_each_from(&mut m, pos, |_, n, _, _| {
                if taken == 37 {
                    return false;
                }
                taken += 1;
                *seen.entry(n.to_vec()).or_default() += 1;
                true
            })
            .unwrap();
            // Between calls: unlink some of the unstable names, create new ones (splits).
            for i in (round * 30..round * 30 + 30).filter(|i| i % 3 == 0 && *i < 2000) {
                remove(&mut m, &name(i)).unwrap();
            }
            for _ in 0..40 {
                insert(&mut m, &name(next_new), 1, dir::DT_REG).unwrap();
                next_new += 1;
            }
            round += 1;
        }
        for s in &stable {
            assert_eq!(seen.get(s), Some(&1), "{:?}", std::string::String::from_utf8_lossy(s));
        }
        assert!(seen.values().all(|&c| c == 1));
    }

    #[test]
    fn a_split_without_space_changes_nothing() {
        let mut m = indexed(&[]);
        let mut i = 0;
        // Fill the one bucket until the next insert needs a split.
        loop {
            let before = m.blocks.clone();
            m.free = 1;
            match insert(&mut m, &name(i), 100 + i, dir::DT_REG) {
                Ok(()) => i += 1,
                Err(E::NoSpace) => {
                    assert_eq!(m.blocks, before, "a failed split left changes");
                    assert_eq!(m.map.len(), 2);
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        m.free = 10;
        insert(&mut m, &name(i), 100 + i, dir::DT_REG).unwrap();
        assert_eq!(listing(&mut m).len(), i as usize + 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Remove(u16),
        Retarget(u16, u32),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => any::<u16>().prop_map(Op::Insert),
            2 => any::<u16>().prop_map(Op::Remove),
            1 => (any::<u16>(), 1u32..1000).prop_map(|(n, i)| Op::Retarget(n, i)),
        ]
    }

    /// Names of 1 to 255 bytes, so that buckets hold from 15 to 254 entries.
    fn model_name(n: u16) -> Vec<u8> {
        let len = 1 + (usize::from(n) * 7919) % 255;
        let mut v = std::format!("{n}-").into_bytes();
        v.resize(len.max(v.len()), b'x');
        v.truncate(255);
        v
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        /// Random inserts, removes and retargets against a BTreeMap: the same lookups, the
        /// listing holds the model's names once each in position order, the header's counts
        /// match the mapped buckets, and every entry sits in the bucket of its key.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec(op(), 1..1500)) {
            let mut m = indexed(&[]);
            let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Insert(n) => {
                        let nm = model_name(n);
                        if let std::collections::btree_map::Entry::Vacant(v) = model.entry(nm) {
                            insert(&mut m, v.key(), u32::from(n) + 1, dir::DT_REG).unwrap();
                            v.insert(u32::from(n) + 1);
                        }
                    }
                    Op::Remove(n) => {
                        let nm = model_name(n);
                        proptest::prop_assert_eq!(remove(&mut m, &nm).unwrap(), model.remove(&nm));
                    }
                    Op::Retarget(n, ino) => {
                        let nm = model_name(n);
                        let there = model.contains_key(&nm);
                        proptest::prop_assert_eq!(retarget(&mut m, &nm, ino, dir::DT_DIR).unwrap(), there);
                        if there {
                            model.insert(nm, ino);
                        }
                    }
                }
            }
            for (nm, ino) in &model {
                proptest::prop_assert_eq!(lookup(&mut m, nm).unwrap().map(|x| x.0), Some(*ino));
            }
            let l = listing(&mut m);
            let names: BTreeMap<Vec<u8>, u32> = l.iter().map(|x| (x.1.clone(), x.2)).collect();
            proptest::prop_assert_eq!(names.len(), l.len());
            proptest::prop_assert_eq!(&names, &model);
            let (_, h) = read_header(&mut m).unwrap();
            proptest::prop_assert_eq!(h.leaves.iter().sum::<u32>() as usize + 1, m.map.len());
            for (&lg, &blk) in m.map.iter().filter(|(l, _)| **l != 0) {
                let (d, p) = bucket_of(lg).unwrap();
                let (lo, hi) = bucket_keys(d, p);
                for e in dirents(&m.blocks[&blk]) {
                    let e = e.unwrap();
                    if e.ino != 0 {
                        let k = name_key(&h.seed, e.name);
                        proptest::prop_assert!(lo <= k && k < hi);
                    }
                }
            }
        }
    }

    /// Without splits allowed, a name whose bucket is full is refused and nothing changes;
    /// after `make_room` it goes in without a split.
    #[test]
    fn an_insert_without_splits_needs_room_made_first() {
        let mut m = indexed(&[]);
        let mut i = 0;
        while insert_splitting(&mut m, &name(i), 100 + i, dir::DT_REG, 0).is_ok() {
            i += 1;
        }
        assert!(i > 10 && m.map.len() == 2, "{i} names, {} blocks", m.map.len());
        let before = m.blocks.clone();
        assert!(matches!(insert_splitting(&mut m, &name(i), 100 + i, dir::DT_REG, 0), Err(E::NoSpace)));
        assert_eq!(m.blocks, before, "a refused insert changed blocks");
        while !make_room(&mut m, &name(i)).unwrap() {}
        let mapped = m.map.len();
        insert_splitting(&mut m, &name(i), 100 + i, dir::DT_REG, 0).unwrap();
        assert_eq!(m.map.len(), mapped, "the insert split after make_room");
        assert_eq!(lookup(&mut m, &name(i)).unwrap(), Some((100 + i, dir::DT_REG)));
        assert_eq!(listing(&mut m).len(), i as usize + 1);
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let mut m = indexed(&(0..50).map(name).collect::<Vec<_>>());
        // A bucket unmapped: its keys have no bucket.
        let l = *m.map.keys().find(|&&l| l != 0).unwrap();
        let n = m.map.remove(&l).unwrap();
        assert!(matches!(lookup(&mut m, &name(3)), Err(E::F(FormatError::Corrupt { .. }))));
        m.map.insert(l, n);
        // A bucket block with a bad checksum.
        m.blocks.get_mut(&n).unwrap()[100] ^= 1;
        assert!(matches!(lookup(&mut m, &name(3)), Err(E::F(_))));
        assert!(for_each_from(&mut m, POS_FIRST, |_, _, _, _| true).is_err());
        // No header.
        let h = m.map.remove(&0).unwrap();
        assert!(lookup(&mut m, &name(3)).is_err());
        m.map.insert(0, h);
    }
}
