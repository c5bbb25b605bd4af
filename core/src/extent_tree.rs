//! A file's extent tree: the extents past a file's inline ones, in a B+-tree of extent blocks
//! whose root block is the inode's `extent_block` (so a file has no fixed extent limit).
//!
//! **Shape** (the bytes are [`crate::format::extent`]'s extent block; its word at 28 is the node's
//! `depth`, u16, and a reserved u16 that is zero). A node of depth 0 is a leaf: its entries are
//! [`Extent`]s sorted by `logical`. A node of depth `d > 0` is an index node: its entries are
//! `logical u32, reserved u32 (zero), child u64`, sorted, strictly increasing, and entry `i` leads
//! to the node of depth `d - 1` (block `child`) holding exactly the extents whose `logical` lies in
//! `key(i) .. key(i + 1)`; `key(i)` is the smallest `logical` of that subtree. Every node holds
//! at least one entry and belongs to the file (`owner` in its header). The root's depth is the
//! tree's height minus one, at most [`MAX_DEPTH`]. A v2 image's single extent block is a tree of
//! depth 0: the format did not change for it.
//!
//! **Growth.** The root's block never moves (the inode need not change when the tree grows): a
//! full root is copied into a new block that becomes its only child, and the root becomes an
//! index node one level higher. A full node splits in two (in the middle; at the end when the new
//! entry goes last, so that appending files fill their leaves) and its new sibling's key goes into
//! the parent. Removal ([`Tree::truncate`]) frees the nodes it empties; an emptied root is freed
//! and the caller clears `extent_block`. The tree never merges half-empty nodes (as ext4).
//!
//! **Checks.** Every node read is checked whole before use (header, checksum, owner, depth
//! expected from its parent, count, order, keys inside the range its parent gives it, extents
//! inside the data region): corruption is `FormatError` (EUCLEAN), never a panic, and a cycle is
//! impossible because depth decreases at every step.
//!
//! **Cost.** A lookup or an insertion reads `depth + 1` nodes; an insertion writes at most
//! `2 * (depth + 1) + 1` nodes ([`insert_blocks_bound`]: the path, a sibling per level and a new
//! root child) and allocates at most `depth + 2`.
//!
//! All of it works through [`TreeStore`] (the kernel's buffer cache inside a journal handle,
//! the tools' images), without heap allocation: paths live on the stack.

use crate::error::FormatError;
use crate::format::block::{check_header_csum, seal_header, Csum};
use crate::format::extent::{check_extent, Extent, EXTENTS_PER_BLOCK, EXTENT_HEADER, EXTENT_MAGIC, EXTENT_SIZE};
use crate::format::le::{put_u16, put_u32, put_u64, record, record_mut, u16_at, u32_at};

/// Deepest root: depth 5 holds more than 254^5 extents, past the `u32` file blocks a file has.
pub const MAX_DEPTH: usize = 5;
/// Entries per node.
pub const NODE_ENTRIES: usize = EXTENTS_PER_BLOCK;

/// Offset of the `depth` field in an extent block.
const DEPTH_OFF: usize = 28;
/// Offset of the count field.
const COUNT_OFF: usize = 24;

/// Blocks an insertion may write at most, root of depth `depth`: every node of the path, the
/// sibling of a split at every level, and the new child of a grown root.
pub const fn insert_blocks_bound(depth: usize) -> usize {
    2 * (depth + 1) + 1
}

/// Where a tree's nodes are read, written, allocated and freed: the kernel's buffer cache inside
/// a journal handle, or a tool's image. Blocks are [`crate::format::BLOCK_SIZE`] bytes.
pub trait TreeStore {
    /// The store's error; tree corruption arrives as a [`FormatError`].
    type Error: From<FormatError>;
    /// Calls `f` on block `n` as it is on the store.
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, Self::Error>;
    /// [`Self::read`] of a node, with whether the store already verified its checksum
    /// ([`Csum::Verified`]) or the whole node ([`Csum::Checked`], after [`Self::mark_checked`]).
    /// By default [`Csum::Check`]: the tree checks it.
    fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> Result<R, Self::Error> {
        self.read(n, |b| f(b, Csum::Check))
    }
    /// Node `n`, just read, passed the tree's whole check: a store that can remember it until
    /// the block comes from the device again (the kernel's buffer state bits) reports it as
    /// [`Csum::Checked`] from then on. By default nothing.
    fn mark_checked(&mut self, _n: u64) {}
    /// Calls `f` on block `n` to change it (the tree seals the header itself).
    fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, Self::Error>;
    /// Calls `f` on block `n`, newly allocated, to fill it whole: its old contents do not matter
    /// (the kernel skips the read). By default [`Self::write`].
    fn init<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, Self::Error> {
        self.write(n, f)
    }
    /// Allocates a block for a node, near `goal`. Errors: `ENOSPC`, the store's.
    fn alloc(&mut self, goal: u64) -> Result<u64, Self::Error>;
    /// Frees a node block that the tree no longer uses.
    fn free(&mut self, n: u64) -> Result<(), Self::Error>;
}

/// One file's tree: its root block, its owner inode and the data region its blocks and extents
/// must lie in (device blocks `data_start .. data_end`), and the range of `logical` the tree
/// holds (`lo ..`: the extents before `lo` are inline in the inode).
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    /// Root block (the inode's `extent_block`), never 0.
    pub root: u64,
    /// The inode the nodes belong to.
    pub owner: u64,
    /// First block of the data region.
    pub data_start: u64,
    /// One past the last block of the data region.
    pub data_end: u64,
    /// Lowest `logical` the tree may hold (the end of the last inline extent).
    pub lo: u64,
    /// Entries a node takes before an insertion splits it: [`NODE_ENTRIES`] for every tree the
    /// kernel and the tools grow. A test or a fuzz base image passes fewer (taken as at least
    /// 2) to grow a deep tree in a few blocks; the result is an ordinary tree of nodes that are
    /// not full, read and changed the same way.
    pub fanout: usize,
}

/// Upper bound of `logical` ends: file blocks are `u32`.
const HI: u64 = u32::MAX as u64;

fn corrupt<E: From<FormatError>>(what: &'static str, value: u64) -> E {
    E::from(FormatError::Corrupt { what, value })
}

/// The 16 bytes of entry `i` of a node.
fn entry(node: &[u8], i: usize) -> Result<[u8; EXTENT_SIZE], FormatError> {
    let r = record(node, EXTENT_HEADER, EXTENT_SIZE, i, "extent node entry")?;
    <[u8; EXTENT_SIZE]>::try_from(r).map_err(|_| FormatError::Truncated { what: "extent node entry", len: r.len() })
}

fn put_entry(node: &mut [u8], i: usize, raw: &[u8; EXTENT_SIZE]) {
    if let Some(r) = record_mut(node, EXTENT_HEADER, EXTENT_SIZE, i) {
        r.copy_from_slice(raw);
    }
}

fn key_of(raw: &[u8; EXTENT_SIZE]) -> u64 {
    u64::from(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

fn child_of(raw: &[u8; EXTENT_SIZE]) -> u64 {
    u64::from_le_bytes([raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]])
}

fn index_entry(key: u64, child: u64) -> [u8; EXTENT_SIZE] {
    let mut raw = [0u8; EXTENT_SIZE];
    put_u32(&mut raw, 0, u32::try_from(key).unwrap_or(u32::MAX));
    put_u64(&mut raw, 8, child);
    raw
}

fn leaf_entry(e: &Extent) -> [u8; EXTENT_SIZE] {
    let mut raw = [0u8; EXTENT_SIZE];
    e.encode(&mut raw, 0);
    raw
}

fn count(node: &[u8]) -> Result<usize, FormatError> {
    Ok(u32_at(node, COUNT_OFF, "extent node")? as usize)
}

fn set_count(node: &mut [u8], n: usize) {
    put_u32(node, COUNT_OFF, u32::try_from(n).unwrap_or(u32::MAX));
}

/// Depth of an extent block (0 for a leaf). Errors: `Truncated`.
pub fn node_depth(node: &[u8]) -> Result<usize, FormatError> {
    Ok(usize::from(u16_at(node, DEPTH_OFF, "extent node")?))
}

/// Fills `node` as an empty node of depth `depth` (header sealed by the caller's next
/// [`seal`]).
fn init_node(node: &mut [u8], depth: usize) {
    node.fill(0);
    put_u16(node, DEPTH_OFF, u16::try_from(depth).unwrap_or(u16::MAX));
}

fn seal(node: &mut [u8], blocknr: u64, owner: u64) {
    seal_header(node, EXTENT_MAGIC, blocknr, owner);
}

/// Inserts `raw` at `at` of a node holding `n < NODE_ENTRIES` entries.
fn insert_at(node: &mut [u8], n: usize, at: usize, raw: &[u8; EXTENT_SIZE]) {
    let from = EXTENT_HEADER + at * EXTENT_SIZE;
    let to = EXTENT_HEADER + n * EXTENT_SIZE;
    if from < to && to + EXTENT_SIZE <= node.len() {
        node.copy_within(from..to, from + EXTENT_SIZE);
    }
    put_entry(node, at, raw);
    set_count(node, n + 1);
}

/// Removes entry `at` of a node holding `n > at` entries.
fn remove_at(node: &mut [u8], n: usize, at: usize) {
    let from = EXTENT_HEADER + (at + 1) * EXTENT_SIZE;
    let to = EXTENT_HEADER + n * EXTENT_SIZE;
    if from < to && to <= node.len() {
        node.copy_within(from..to, from - EXTENT_SIZE);
    }
    put_entry(node, n - 1, &[0u8; EXTENT_SIZE]);
    set_count(node, n - 1);
}

/// Copies `len` bytes from offset `from_off` of block `from` to offset `to_off` of block `to`,
/// a small piece at a time (no block-sized buffer on the kernel's stack).
fn copy_bytes<S: TreeStore>(
    s: &mut S,
    from: u64,
    from_off: usize,
    to: u64,
    to_off: usize,
    len: usize,
) -> Result<(), S::Error> {
    const PIECE: usize = 256;
    let mut done = 0;
    while done < len {
        let n = PIECE.min(len - done);
        let mut buf = [0u8; PIECE];
        s.read(from, |b| {
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), b.get(from_off + done..from_off + done + n)) {
                dst.copy_from_slice(src);
            }
        })?;
        s.write(to, |b| {
            if let (Some(dst), Some(src)) = (b.get_mut(to_off + done..to_off + done + n), buf.get(..n)) {
                dst.copy_from_slice(src);
            }
        })?;
        done += n;
    }
    Ok(())
}

/// Checks node `n` whole: header and checksum (`owner`; the checksum skipped when `csum` says
/// the store verified it), depth `depth`, count `1 ..= NODE_ENTRIES`, reserved bytes, and
/// (unless `csum` is [`Csum::Checked`]: the store vouches that the node passed all this since
/// it came from the device, and the tree changed it only as it keeps nodes valid) the
/// entries sorted inside `keys` = `lo .. hi` (leaves: every extent
/// checked by [`check_extent`] in the data region; index nodes: strictly increasing keys,
/// children in the data region), the first starting at `lo` exactly unless `first_free` (the
/// root). Returns the count.
fn check_node(
    (node, csum): (&[u8], Csum),
    n: u64,
    t: &Tree,
    depth: usize,
    (lo, hi): (u64, u64),
    first_free: bool,
) -> Result<usize, FormatError> {
    check_header_csum(node, "extent node", EXTENT_MAGIC, n, t.owner, csum)?;
    if node_depth(node)? != depth || u16_at(node, DEPTH_OFF + 2, "extent node")? != 0 {
        return Err(FormatError::Corrupt { what: "extent node depth", value: node_depth(node)? as u64 });
    }
    let c = count(node)?;
    if c == 0 || c > NODE_ENTRIES {
        return Err(FormatError::Corrupt { what: "extent node count", value: c as u64 });
    }
    if csum == Csum::Checked {
        return Ok(c);
    }
    let mut prev_end = lo;
    let mut prev_key = 0u64;
    for i in 0..c {
        let raw = entry(node, i)?;
        // The first entry of a node starts its range exactly (its parent's key is the
        // subtree's smallest `logical`), except in the root.
        let first_ok = |k: u64| i != 0 || first_free || k == lo;
        if depth == 0 {
            let e = Extent::decode(&raw, 0)?;
            check_extent(&e, prev_end, t.data_start, t.data_end)?;
            if e.logical_end() > hi || !first_ok(u64::from(e.logical)) {
                return Err(FormatError::Corrupt { what: "extent outside its node's range", value: e.logical_end() });
            }
            prev_end = e.logical_end();
        } else {
            let key = key_of(&raw);
            let child = child_of(&raw);
            let ordered = if i == 0 { key >= lo } else { key > prev_key };
            if !ordered || key >= hi || !first_ok(key) {
                return Err(FormatError::Corrupt { what: "extent index key", value: key });
            }
            let reserved = u32_at(&raw, 4, "extent index")?;
            if reserved != 0 {
                return Err(FormatError::Corrupt { what: "extent index reserved", value: u64::from(reserved) });
            }
            if child < t.data_start || child >= t.data_end {
                return Err(FormatError::Corrupt { what: "extent index child", value: child });
            }
            prev_key = key;
        }
    }
    Ok(c)
}

/// The path from the root to a leaf: at each level (index `0` = the root, `depth` = the leaf)
/// the node's block, the entry taken (for the leaf: the insertion point, entries before it
/// have `logical <=` the key searched), the node's count and the range of `logical` its parent
/// gives it.
#[derive(Clone, Copy)]
struct Path {
    depth: usize,
    levels: [Level; MAX_DEPTH + 1],
}

/// One level of a [`Path`].
#[derive(Clone, Copy, Default)]
struct Level {
    node: u64,
    at: usize,
    count: usize,
    lo: u64,
    hi: u64,
}

impl Path {
    /// Level `l` (a level past the path reads as block 0, which no tree holds: its read fails
    /// the checks instead of panicking).
    fn lv(&self, l: usize) -> Level {
        self.levels.get(l).copied().unwrap_or_default()
    }
    fn set(&mut self, l: usize, v: Level) {
        if let Some(x) = self.levels.get_mut(l) {
            *x = v;
        }
    }
    /// The leaf's level.
    fn leaf(&self) -> Level {
        self.lv(self.depth)
    }
}

/// How [`Tree::descend`] picks the child at each index node.
#[derive(Clone, Copy, PartialEq)]
enum Toward {
    /// The subtree where `logical` belongs (the last key `<=` it, else the first).
    Key(u64),
    /// The last entry (the rightmost leaf).
    Last,
}

/// Blocks allocated for an insertion before its first write ([`Tree::insert`]).
struct Spare {
    blocks: [u64; MAX_DEPTH + 2],
    n: usize,
}

impl Spare {
    fn push(&mut self, b: u64) {
        if let Some(x) = self.blocks.get_mut(self.n) {
            *x = b;
            self.n += 1;
        }
    }
    /// The next spare block; none left is a corrupt count (the tree changed under us).
    fn take<E: From<FormatError>>(&mut self) -> Result<u64, E> {
        let Some(i) = self.n.checked_sub(1) else {
            return Err(corrupt("extent tree changed during an insertion", 0));
        };
        self.n = i;
        Ok(self.blocks.get(i).copied().unwrap_or(0))
    }
    /// Frees the blocks not used.
    fn release<S: TreeStore>(&mut self, s: &mut S) -> Result<(), S::Error> {
        while self.n > 0 {
            let b = self.take::<S::Error>()?;
            s.free(b)?;
        }
        Ok(())
    }
}

/// What one call of [`Tree::truncate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Nothing at or past `from` is left in the tree.
    pub done: bool,
    /// The whole tree was freed, its root included: the caller clears `extent_block`.
    pub empty: bool,
    /// Extents removed whole (an extent cut short is not counted).
    pub removed: u64,
}

impl Tree {
    /// Entries a node holds before it splits: [`Tree::fanout`] within `2..=NODE_ENTRIES`.
    fn cap(&self) -> usize {
        self.fanout.clamp(2, NODE_ENTRIES)
    }

    /// Root depth, read and checked.
    fn root_depth<S: TreeStore>(&self, s: &mut S) -> Result<usize, S::Error> {
        let d = s.read(self.root, node_depth)??;
        if d > MAX_DEPTH {
            return Err(corrupt("extent tree depth", d as u64));
        }
        Ok(d)
    }

    /// Reads and checks the path toward `to`.
    fn descend<S: TreeStore>(&self, s: &mut S, to: Toward) -> Result<Path, S::Error> {
        let depth = self.root_depth(s)?;
        let mut p = Path { depth, levels: [Level::default(); MAX_DEPTH + 1] };
        let mut n = self.root;
        let (mut lo, mut hi) = (self.lo, HI);
        for level in 0..=depth {
            let d = depth - level;
            let t = *self;
            let mut checked = false;
            let step = s.read_sealed(n, |b, csum| -> Result<(usize, usize, u64, u64, u64), FormatError> {
                // The root's first key may lie above `lo` (extents were removed below it).
                let c = check_node((b, csum), n, &t, d, (lo, hi), level == 0)?;
                checked = csum != Csum::Checked;
                if d == 0 {
                    let at = match to {
                        Toward::Last => c,
                        Toward::Key(k) => {
                            let mut i = 0;
                            while i < c && key_of(&entry(b, i)?) <= k {
                                i += 1;
                            }
                            i
                        }
                    };
                    return Ok((c, at, 0, 0, 0));
                }
                let i = match to {
                    Toward::Last => c - 1,
                    Toward::Key(k) => {
                        let mut i = 0;
                        while i + 1 < c && key_of(&entry(b, i + 1)?) <= k {
                            i += 1;
                        }
                        i
                    }
                };
                let raw = entry(b, i)?;
                let next_hi = if i + 1 < c { key_of(&entry(b, i + 1)?) } else { hi };
                Ok((c, i, child_of(&raw), key_of(&raw), next_hi))
            })??;
            if checked {
                s.mark_checked(n);
            }
            let (c, at, child, clo, chi) = step;
            p.set(level, Level { node: n, at, count: c, lo, hi });
            n = child;
            lo = clo;
            hi = chi;
        }
        Ok(p)
    }

    /// The extent holding file block `lblk`, if any.
    pub fn lookup<S: TreeStore>(&self, s: &mut S, lblk: u64) -> Result<Option<Extent>, S::Error> {
        Ok(self.neighbours(s, lblk)?.0.filter(|e| e.map(lblk).is_some()))
    }

    /// The tree's last extent (the rightmost leaf's last entry).
    pub fn last<S: TreeStore>(&self, s: &mut S) -> Result<Option<Extent>, S::Error> {
        let p = self.descend(s, Toward::Last)?;
        let Level { node: leaf, count: c, .. } = p.leaf();
        match c.checked_sub(1) {
            Some(i) => Ok(Some(s.read(leaf, |b| Extent::decode(&entry(b, i)?, 0))??)),
            None => Ok(None),
        }
    }

    /// The last extent with `logical <= lblk` and the first with `logical > lblk` (either may
    /// be missing from the tree; the second is only looked for in the same leaf and the next
    /// one).
    pub fn neighbours<S: TreeStore>(&self, s: &mut S, lblk: u64) -> Result<(Option<Extent>, Option<Extent>), S::Error> {
        let p = self.descend(s, Toward::Key(lblk))?;
        let Level { node: leaf, at, count: c, hi, .. } = p.leaf();
        let (prev, next) = s.read(leaf, |b| -> Result<(Option<Extent>, Option<Extent>), FormatError> {
            let prev = match at.checked_sub(1) {
                Some(i) => Some(Extent::decode(&entry(b, i)?, 0)?),
                None => None,
            };
            let next = if at < c { Some(Extent::decode(&entry(b, at)?, 0)?) } else { None };
            Ok((prev, next))
        })??;
        let next = match next {
            Some(n) => Some(n),
            None => {
                if hi < HI {
                    self.first_at_or_after(s, hi)?
                } else {
                    None
                }
            }
        };
        Ok((prev, next))
    }

    /// The first extent with `logical >= lblk`, looked for in the leaf where `lblk` belongs
    /// (called with a leaf's smallest `logical`).
    fn first_at_or_after<S: TreeStore>(&self, s: &mut S, lblk: u64) -> Result<Option<Extent>, S::Error> {
        let p = self.descend(s, Toward::Key(lblk))?;
        let Level { node: leaf, at, count: c, .. } = p.leaf();
        s.read(leaf, |b| -> Result<Option<Extent>, FormatError> {
            if let Some(i) = at.checked_sub(1) {
                let e = Extent::decode(&entry(b, i)?, 0)?;
                if u64::from(e.logical) >= lblk {
                    return Ok(Some(e));
                }
            }
            if at < c {
                return Ok(Some(Extent::decode(&entry(b, at)?, 0)?));
            }
            Ok(None)
        })?
        .map_err(S::Error::from)
    }

    /// Calls `f` on every extent, in order, from the first with `logical_end > from` on;
    /// stops early when `f` returns `false`.
    pub fn for_each<S: TreeStore>(
        &self,
        s: &mut S,
        from: u64,
        mut f: impl FnMut(Extent) -> bool,
    ) -> Result<(), S::Error> {
        let mut key = from;
        loop {
            let p = self.descend(s, Toward::Key(key))?;
            let Level { node: leaf, at, count: c, hi, .. } = p.leaf();
            // The extent before the insertion point may still reach past `from`.
            let first = at.saturating_sub(1);
            let mut go_on = true;
            s.read(leaf, |b| -> Result<(), FormatError> {
                for i in first..c {
                    let e = Extent::decode(&entry(b, i)?, 0)?;
                    if e.logical_end() > from && !f(e) {
                        go_on = false;
                        return Ok(());
                    }
                }
                Ok(())
            })??;
            if !go_on || hi >= HI {
                return Ok(());
            }
            key = hi;
        }
    }

    /// Calls `f` on every node block of the tree (root first, then depth-first), with its
    /// depth: what fsck counts as the file's extent blocks.
    pub fn for_each_node<S: TreeStore>(&self, s: &mut S, mut f: impl FnMut(u64, usize)) -> Result<(), S::Error> {
        // Leaf by leaf: each descent lists the nodes of its path not yet seen.
        let mut seen_upto = [0u64; MAX_DEPTH + 1];
        let mut key = self.lo;
        let mut first = true;
        loop {
            let p = self.descend(s, Toward::Key(key))?;
            for (level, seen) in seen_upto.iter_mut().enumerate().take(p.depth + 1) {
                let n = p.lv(level).node;
                if first || *seen != n {
                    f(n, p.depth - level);
                    *seen = n;
                }
            }
            first = false;
            let hi = p.leaf().hi;
            if hi >= HI {
                return Ok(());
            }
            key = hi;
        }
    }

    /// Writes entry `raw` at `at` of the node at `level` of path `p`, splitting full nodes on
    /// the way up, growing the root when it is full; keeps the parents' keys equal to their
    /// subtrees' smallest `logical`.
    fn insert_in_path<S: TreeStore>(
        &self,
        s: &mut S,
        p: &mut Path,
        mut level: usize,
        mut at: usize,
        mut raw: [u8; EXTENT_SIZE],
        spare: &mut Spare,
    ) -> Result<(), S::Error> {
        let owner = self.owner;
        loop {
            let Level { node: n, count: c, .. } = p.lv(level);
            if c < self.cap() {
                s.write(n, |b| {
                    insert_at(b, c, at, &raw);
                    seal(b, n, owner);
                })?;
                if at == 0 {
                    self.fix_keys(s, p, level, key_of(&raw))?;
                }
                return Ok(());
            }
            if level == 0 {
                // A full root: its contents move to a new child, the root goes one level up.
                if p.depth >= MAX_DEPTH {
                    return Err(corrupt("extent tree depth", p.depth as u64 + 1));
                }
                let child = spare.take()?;
                s.init(child, |b| b.fill(0))?;
                copy_bytes(s, n, 0, child, 0, crate::format::BLOCK_SIZE)?;
                s.write(child, |b| seal(b, child, owner))?;
                let first_key = s.read(child, |b| entry(b, 0).map(|r| key_of(&r)))??;
                let depth = p.depth;
                s.write(n, |b| {
                    init_node(b, depth + 1);
                    put_entry(b, 0, &index_entry(first_key, child));
                    set_count(b, 1);
                    seal(b, n, owner);
                })?;
                // The path gains a level under the root: the child, full, at the same entry.
                let mut q = *p;
                q.depth = depth + 1;
                for l in 1..=depth + 1 {
                    q.set(l, p.lv(l - 1));
                }
                q.set(1, Level { node: child, ..p.lv(0) });
                q.set(0, Level { node: n, at: 0, count: 1, ..p.lv(0) });
                *p = q;
                level = 1;
                continue;
            }
            // Split: the new sibling takes the upper half (or only the new entry at the end).
            let sib = spare.take()?;
            let mid = if at == c { c } else { c / 2 };
            let depth = p.depth - level;
            let (into_sib, at_sib) = if at >= mid { (true, at - mid) } else { (false, at) };
            let sib_n = c - mid;
            s.init(sib, |b| {
                init_node(b, depth);
                set_count(b, sib_n);
            })?;
            copy_bytes(s, n, EXTENT_HEADER + mid * EXTENT_SIZE, sib, EXTENT_HEADER, sib_n * EXTENT_SIZE)?;
            s.write(sib, |b| {
                if into_sib {
                    insert_at(b, sib_n, at_sib, &raw);
                }
                seal(b, sib, owner);
            })?;
            s.write(n, |b| {
                for j in mid..c {
                    put_entry(b, j, &[0u8; EXTENT_SIZE]);
                }
                set_count(b, mid);
                if !into_sib {
                    insert_at(b, mid, at, &raw);
                }
                seal(b, n, owner);
            })?;
            if !into_sib && at == 0 {
                self.fix_keys(s, p, level, key_of(&raw))?;
            }
            let sib_key = s.read(sib, |b| entry(b, 0).map(|r| key_of(&r)))??;
            // The sibling's entry goes into the parent, right after the split node's.
            raw = index_entry(sib_key, sib);
            at = p.lv(level - 1).at + 1;
            level -= 1;
        }
    }

    /// The smallest `logical` of the node at `level` became `key`: the parents' entries on the
    /// path whose subtree starts there take it.
    fn fix_keys<S: TreeStore>(&self, s: &mut S, p: &Path, level: usize, key: u64) -> Result<(), S::Error> {
        let mut l = level;
        while l > 0 {
            let Level { node: parent, at, .. } = p.lv(l - 1);
            let owner = self.owner;
            s.write(parent, |b| {
                if let Some(r) = record_mut(b, EXTENT_HEADER, EXTENT_SIZE, at) {
                    put_u32(r, 0, u32::try_from(key).unwrap_or(u32::MAX));
                }
                seal(b, parent, owner);
            })?;
            if at != 0 {
                break;
            }
            l -= 1;
        }
        Ok(())
    }

    /// Inserts extent `e`, which must not overlap any extent of the tree and must start at or
    /// after [`Tree::lo`]. Errors: `Corrupt` when it overlaps (the caller's map said the range
    /// was a hole, so the tree is inconsistent with it), the store's (`ENOSPC` for a split).
    pub fn insert<S: TreeStore>(&self, s: &mut S, e: Extent) -> Result<(), S::Error> {
        if (e.logical as u64) < self.lo || e.len == 0 {
            return Err(corrupt("extent inserted below the tree", u64::from(e.logical)));
        }
        let mut p = self.descend(s, Toward::Key(u64::from(e.logical)))?;
        let d = p.depth;
        let Level { node: leaf, at, count: c, hi, .. } = p.leaf();
        let overlap = s.read(leaf, |b| -> Result<bool, FormatError> {
            if let Some(i) = at.checked_sub(1) {
                if Extent::decode(&entry(b, i)?, 0)?.logical_end() > u64::from(e.logical) {
                    return Ok(true);
                }
            }
            if at < c && u64::from(Extent::decode(&entry(b, at)?, 0)?.logical) < e.logical_end() {
                return Ok(true);
            }
            Ok(false)
        })??;
        if overlap || e.logical_end() > hi {
            return Err(corrupt("extent overlaps the tree", u64::from(e.logical)));
        }
        // Every block the insertion needs is allocated before the first write, so that an
        // ENOSPC leaves the tree as it was (a split whose parent could not split in turn would
        // lose the entries moved to the new sibling). A full level costs a sibling; a full
        // root, which grows, two (the copy of the root and its sibling).
        let mut need = 0;
        let mut level = d;
        loop {
            if p.lv(level).count < self.cap() {
                break;
            }
            need += 1;
            if level == 0 {
                // A full root grows: refused before anything is written when it cannot (the
                // splits below it would otherwise be done and left unlinked).
                if d >= MAX_DEPTH {
                    return Err(corrupt("extent tree depth", d as u64 + 1));
                }
                need += 1;
                break;
            }
            level -= 1;
        }
        let mut spare = Spare { blocks: [0; MAX_DEPTH + 2], n: 0 };
        while spare.n < need {
            match s.alloc(leaf) {
                Ok(b) => spare.push(b),
                Err(err) => {
                    spare.release(s)?;
                    return Err(err);
                }
            }
        }
        let r = self.insert_in_path(s, &mut p, d, at, leaf_entry(&e), &mut spare);
        // Left over only if the path changed under the count (it cannot): freed, not leaked.
        spare.release(s)?;
        r
    }

    /// Replaces the extent whose `logical` is `old_logical` by `e` (which covers the same
    /// range or more: an extent grown at either end), keeping the parents' keys. Errors:
    /// `Corrupt` if no extent starts at `old_logical` or `e` reaches a neighbour.
    pub fn replace<S: TreeStore>(&self, s: &mut S, old_logical: u64, e: Extent) -> Result<(), S::Error> {
        let p = self.descend(s, Toward::Key(old_logical))?;
        let d = p.depth;
        let Level { node: leaf, at, count: c, lo, hi } = p.leaf();
        let Some(i) = at.checked_sub(1) else {
            return Err(corrupt("replaced extent not found", old_logical));
        };
        let new_lo = u64::from(e.logical);
        let ok = s.read(leaf, |b| -> Result<bool, FormatError> {
            let cur = Extent::decode(&entry(b, i)?, 0)?;
            let prev_end = match i.checked_sub(1) {
                Some(j) => Extent::decode(&entry(b, j)?, 0)?.logical_end(),
                None => lo.min(new_lo),
            };
            let next_start = if i + 1 < c { u64::from(Extent::decode(&entry(b, i + 1)?, 0)?.logical) } else { hi };
            Ok(u64::from(cur.logical) == old_logical && new_lo >= prev_end && e.logical_end() <= next_start)
        })??;
        if !ok || new_lo < self.lo || e.len == 0 {
            return Err(corrupt("replaced extent", old_logical));
        }
        if i == 0 && new_lo < old_logical {
            // Grown below its leaf's first key: the previous leaf's last extent must end first.
            if let (Some(prev), _) = self.neighbours(s, new_lo)? {
                if prev.logical_end() > new_lo && u64::from(prev.logical) != old_logical {
                    return Err(corrupt("replaced extent overlaps", new_lo));
                }
            }
        }
        let owner = self.owner;
        s.write(leaf, |b| {
            put_entry(b, i, &leaf_entry(&e));
            seal(b, leaf, owner);
        })?;
        if i == 0 && new_lo != old_logical {
            self.fix_keys(s, &p, d, new_lo)?;
        }
        Ok(())
    }

    /// Removes the extent whose `logical` is `logical` (its data blocks are the caller's to
    /// free). A leaf it empties is freed and leaves its parent (a parent emptied in turn too);
    /// a node whose first entry goes gives its new first key to its parent. Returns `true`
    /// when the whole tree was freed (the root included: the caller clears `extent_block`).
    /// Writes at most `depth + 1` nodes. Errors: `Corrupt` if no extent starts at `logical`,
    /// the store's.
    pub fn remove<S: TreeStore>(&self, s: &mut S, logical: u64) -> Result<bool, S::Error> {
        let owner = self.owner;
        let p = self.descend(s, Toward::Key(logical))?;
        let d = p.depth;
        let Level { node: leaf, at, count: c, .. } = p.leaf();
        let Some(i) = at.checked_sub(1) else {
            return Err(corrupt("removed extent not found", logical));
        };
        let found = s.read(leaf, |b| Extent::decode(&entry(b, i)?, 0))??;
        if u64::from(found.logical) != logical {
            return Err(corrupt("removed extent not found", logical));
        }
        // From the leaf up: the first node that keeps an entry after the removal.
        let (mut level, mut idx, mut n) = (d, i, c);
        loop {
            let node = p.lv(level).node;
            if n > 1 {
                let new_first = s.write(node, |b| {
                    remove_at(b, n, idx);
                    seal(b, node, owner);
                    entry(b, 0).map(|r| key_of(&r))
                })??;
                if idx == 0 {
                    self.fix_keys(s, &p, level, new_first)?;
                }
                return Ok(false);
            }
            // The node held only this entry: it goes.
            s.free(node)?;
            if level == 0 {
                return Ok(true);
            }
            level -= 1;
            let up = p.lv(level);
            idx = up.at;
            n = up.count;
        }
    }

    /// Removes the mapping of file blocks `from ..` (an extent across `from` is cut), from the
    /// end, emptying at most `leaves` leaves per call; `free_data(store, start, len)` frees each
    /// run of device blocks unmapped. A call writes at most `depth + 1` nodes per leaf it
    /// empties plus one (the leaf it stops in): an emptied leaf is freed without being written,
    /// its entry leaves its parent (the parent freed in turn when that empties it). Returns
    /// what it did ([`Cut`]). Errors: the store's, `Corrupt` (a node failing its checks).
    pub fn truncate<S: TreeStore>(
        &self,
        s: &mut S,
        from: u64,
        leaves: usize,
        mut free_data: impl FnMut(&mut S, u64, u64) -> Result<(), S::Error>,
    ) -> Result<Cut, S::Error> {
        let owner = self.owner;
        let mut out = Cut { done: false, empty: false, removed: 0 };
        let mut left = leaves;
        loop {
            if left == 0 {
                return Ok(out);
            }
            let p = self.descend(s, Toward::Last)?;
            let d = p.depth;
            let Level { node: leaf, count: c, .. } = p.leaf();
            // From the end of the rightmost leaf: `keep` entries stay, the last of them maybe
            // cut short.
            let mut keep = c;
            let mut cut = None;
            while keep > 0 {
                let e = s.read(leaf, |b| Extent::decode(&entry(b, keep - 1)?, 0))??;
                if e.logical_end() <= from {
                    break;
                }
                if u64::from(e.logical) < from {
                    let k = from - u64::from(e.logical);
                    free_data(s, e.start.saturating_add(k), u64::from(e.len) - k)?;
                    cut = Some(Extent { logical: e.logical, len: u32::try_from(k).unwrap_or(0), start: e.start });
                    break;
                }
                free_data(s, e.start, u64::from(e.len))?;
                out.removed += 1;
                keep -= 1;
            }
            if keep > 0 {
                if keep < c || cut.is_some() {
                    s.write(leaf, |b| {
                        for j in keep..c {
                            put_entry(b, j, &[0u8; EXTENT_SIZE]);
                        }
                        set_count(b, keep);
                        if let Some(e) = cut {
                            put_entry(b, keep - 1, &leaf_entry(&e));
                        }
                        seal(b, leaf, owner);
                    })?;
                }
                out.done = true;
                return Ok(out);
            }
            // The leaf is empty: free it and its emptied ancestors, drop its entry above.
            left -= 1;
            let mut level = d;
            loop {
                if level == 0 {
                    s.free(self.root)?;
                    out.done = true;
                    out.empty = true;
                    return Ok(out);
                }
                s.free(p.lv(level).node)?;
                let Level { node: parent, count: pc, at, .. } = p.lv(level - 1);
                if pc > 1 {
                    s.write(parent, |b| {
                        remove_at(b, pc, at);
                        seal(b, parent, owner);
                    })?;
                    break;
                }
                level -= 1;
            }
        }
    }
}

#[cfg(test)]
// Tests: a panic is the failure report.
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec;
    use std::vec::Vec;

    /// A store in memory: blocks by number, a bump allocator over the data region, and the
    /// set of blocks in use (to catch leaks and double frees).
    pub(crate) struct Mem {
        pub(crate) blocks: BTreeMap<u64, Vec<u8>>,
        pub(crate) used: BTreeSet<u64>,
        pub(crate) next: u64,
        pub(crate) end: u64,
        pub(crate) writes: usize,
    }

    impl Mem {
        /// An empty store whose node blocks are allocated from `next` up.
        pub(crate) fn new(next: u64) -> Mem {
            Mem { blocks: BTreeMap::new(), used: BTreeSet::new(), next, end: 1 << 40, writes: 0 }
        }
    }

    #[derive(Debug)]
    #[allow(dead_code)] // the FormatError is read by Debug in a failure message
    pub(crate) enum E {
        F(FormatError),
        NoSpace,
    }
    impl From<FormatError> for E {
        fn from(f: FormatError) -> E {
            E::F(f)
        }
    }

    impl TreeStore for Mem {
        type Error = E;
        fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, E> {
            Ok(f(self.blocks.get(&n).ok_or(E::F(FormatError::Corrupt { what: "unwritten block", value: n }))?))
        }
        fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, E> {
            self.writes += 1;
            Ok(f(self.blocks.entry(n).or_insert_with(|| vec![0u8; crate::format::BLOCK_SIZE])))
        }
        fn alloc(&mut self, _goal: u64) -> Result<u64, E> {
            while self.used.contains(&self.next) {
                self.next += 1;
            }
            if self.next >= self.end {
                return Err(E::NoSpace);
            }
            self.used.insert(self.next);
            Ok(self.next)
        }
        fn free(&mut self, n: u64) -> Result<(), E> {
            assert!(self.used.remove(&n), "double free of {n}");
            self.blocks.remove(&n);
            Ok(())
        }
    }

    fn new_tree(first: &[Extent]) -> (Mem, Tree) {
        let mut m = Mem { blocks: BTreeMap::new(), used: BTreeSet::new(), next: 100, end: 1 << 40, writes: 0 };
        let root = m.alloc(0).unwrap();
        let t = Tree { root, owner: 7, data_start: 100, data_end: 1 << 40, lo: 0, fanout: NODE_ENTRIES };
        m.init(root, |b| {
            init_node(b, 0);
            for (i, e) in first.iter().enumerate() {
                put_entry(b, i, &leaf_entry(e));
            }
            set_count(b, first.len());
            seal(b, root, 7);
        })
        .unwrap();
        (m, t)
    }

    fn all(m: &mut Mem, t: &Tree) -> Vec<Extent> {
        let mut v = Vec::new();
        t.for_each(m, 0, |e| {
            v.push(e);
            true
        })
        .unwrap();
        v
    }

    /// Extent `i` of a test: logical 3i, one block, device block 1_000_000 + i.
    fn ext(i: u64) -> Extent {
        Extent { logical: (3 * i) as u32, len: 1, start: 1_000_000 + i }
    }

    #[test]
    fn appends_grow_the_tree_and_stay_in_order() {
        let (mut m, t) = new_tree(&[ext(0)]);
        let n = 100_000u64;
        for i in 1..n {
            t.insert(&mut m, ext(i)).unwrap();
        }
        let v = all(&mut m, &t);
        assert_eq!(v.len(), n as usize);
        assert!(v.iter().enumerate().all(|(i, e)| *e == ext(i as u64)));
        // Appends fill leaves: 100,000 extents in ceil(100000/254) leaves plus index nodes.
        let mut nodes = 0;
        let mut depth = 0;
        t.for_each_node(&mut m, |_, d| {
            nodes += 1;
            depth = depth.max(d);
        })
        .unwrap();
        assert_eq!(depth, 2);
        assert!(nodes <= 394 + 2 + 1 + 1, "{nodes} nodes");
        for i in [0, 1, 253, 254, 255, 77_777, n - 1] {
            assert_eq!(t.lookup(&mut m, 3 * i).unwrap(), Some(ext(i)));
            assert_eq!(t.lookup(&mut m, 3 * i + 1).unwrap(), None);
        }
    }

    /// A store that remembers the nodes the tree marked checked, as the kernel's buffers do
    /// (cleared when a block is written from outside: here, by the test).
    struct Remembering {
        m: Mem,
        checked: BTreeSet<u64>,
        marks: usize,
    }

    impl TreeStore for Remembering {
        type Error = E;
        fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, E> {
            self.m.read(n, f)
        }
        fn read_sealed<R>(&mut self, n: u64, f: impl FnOnce(&[u8], Csum) -> R) -> Result<R, E> {
            let c = if self.checked.contains(&n) { Csum::Checked } else { Csum::Check };
            self.m.read(n, |b| f(b, c))
        }
        fn mark_checked(&mut self, n: u64) {
            self.marks += 1;
            self.checked.insert(n);
        }
        fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, E> {
            self.m.write(n, f)
        }
        fn alloc(&mut self, goal: u64) -> Result<u64, E> {
            self.m.alloc(goal)
        }
        fn free(&mut self, n: u64) -> Result<(), E> {
            self.checked.remove(&n);
            self.m.free(n)
        }
    }

    /// Nodes marked checked skip their entry checks and give the same answers; a node whose
    /// entries go bad behind the store's back (it still says checked) is not re-examined, and
    /// once the store forgets it, the check finds the damage.
    #[test]
    fn checked_nodes_skip_their_entries_only() {
        let (m, t) = new_tree(&[ext(0)]);
        let mut r = Remembering { m, checked: BTreeSet::new(), marks: 0 };
        for i in 1..2_000u64 {
            t.insert(&mut r, ext(i)).unwrap();
        }
        for i in [0u64, 1, 253, 254, 1_999] {
            assert_eq!(t.lookup(&mut r, 3 * i).unwrap(), Some(ext(i)));
        }
        let marks = r.marks;
        assert!(marks > 0 && !r.checked.is_empty());
        for i in (0..2_000u64).step_by(7) {
            assert_eq!(t.lookup(&mut r, 3 * i).unwrap(), Some(ext(i)));
            assert_eq!(t.lookup(&mut r, 3 * i + 1).unwrap(), None);
        }
        assert_eq!(r.marks, marks, "a checked node is not checked (nor marked) again");
        // Two entries of the first leaf swapped (out of order), the header resealed.
        let mut leaf = 0;
        t.for_each_node(&mut r.m, |n, d| {
            if d == 0 && leaf == 0 {
                leaf = n;
            }
        })
        .unwrap();
        let b = r.m.blocks.get_mut(&leaf).unwrap();
        let (a, z) = (EXTENT_HEADER, EXTENT_HEADER + EXTENT_SIZE);
        let first: Vec<u8> = b[a..z].to_vec();
        b.copy_within(z..z + EXTENT_SIZE, a);
        b[z..z + EXTENT_SIZE].copy_from_slice(&first);
        seal(b, leaf, t.owner);
        assert!(t.lookup(&mut r, 3).is_ok(), "trusted while the store says checked");
        r.checked.remove(&leaf);
        assert!(t.lookup(&mut r, 3).is_err(), "checked again once the store forgets");
    }

    /// A deterministic shuffle (xorshift).
    fn shuffled(n: u64, seed: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..n).collect();
        let mut x = seed | 1;
        for i in (1..v.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.swap(i, (x % (i as u64 + 1)) as usize);
        }
        v
    }

    #[test]
    fn random_inserts_match_a_model_and_truncate_frees_everything() {
        for seed in [1u64, 2, 3] {
            let order = shuffled(20_000, seed);
            let (mut m, t) = new_tree(&[ext(order[0])]);
            let mut model = BTreeMap::new();
            model.insert(order[0], ext(order[0]));
            for &i in &order[1..] {
                t.insert(&mut m, ext(i)).unwrap();
                model.insert(i, ext(i));
            }
            let v = all(&mut m, &t);
            assert_eq!(v, model.values().copied().collect::<Vec<_>>());
            // Overlapping inserts are refused, the tree unchanged.
            assert!(t.insert(&mut m, ext(500)).is_err());
            assert_eq!(all(&mut m, &t).len(), 20_000);
            // Neighbours of a hole.
            let (p, n) = t.neighbours(&mut m, 3 * 500 + 1).unwrap();
            assert_eq!((p, n), (Some(ext(500)), Some(ext(501))));
            // Truncate at 3 * 12_345 + 1 (inside nothing: extents are one block): in steps.
            let from = 3 * 12_345;
            let mut freed = Vec::new();
            loop {
                let Cut { done, empty, .. } = t
                    .truncate(&mut m, from, 100, |_, s, l| {
                        freed.push((s, l));
                        Ok(())
                    })
                    .unwrap();
                assert!(!empty);
                if done {
                    break;
                }
            }
            assert_eq!(freed.len(), 20_000 - 12_345);
            let v = all(&mut m, &t);
            assert_eq!(v, (0..12_345).map(ext).collect::<Vec<_>>());
            // Then everything: the root goes too, and every node block is freed.
            let Cut { done, empty, .. } = t.truncate(&mut m, 0, usize::MAX, |_, _, _| Ok(())).unwrap();
            assert!(done && empty);
            assert!(m.used.is_empty(), "{} node blocks leaked", m.used.len());
        }
    }

    /// Depth and node count of a tree.
    fn shape(m: &mut Mem, t: &Tree) -> (usize, usize) {
        let (mut depth, mut nodes) = (0, 0);
        t.for_each_node(m, |_, d| {
            nodes += 1;
            depth = depth.max(d);
        })
        .unwrap();
        (depth, nodes)
    }

    /// A small fanout grows the deep trees that 254 entries a node would need millions of
    /// extents for: inserts in random order to depth 3 and 4, every lookup right, truncated in steps
    /// down to nothing with every node freed.
    #[test]
    fn small_fanouts_grow_deep_trees_that_stay_right() {
        for (fanout, n, seed) in [(3usize, 30u64, 5u64), (4, 80, 6), (6, 300, 8), (2, 10, 7)] {
            let order = shuffled(n, seed);
            let (mut m, t0) = new_tree(&[ext(order[0])]);
            let t = Tree { fanout, ..t0 };
            for (k, &i) in order[1..].iter().enumerate() {
                t.insert(&mut m, ext(i)).unwrap_or_else(|e| panic!("fanout {fanout}: insert {k}: {e:?}"));
            }
            let (depth, nodes) = shape(&mut m, &t);
            assert!((3..=4).contains(&depth), "fanout {fanout}: depth {depth}");
            assert_eq!(nodes, m.used.len());
            assert_eq!(all(&mut m, &t), (0..n).map(ext).collect::<Vec<_>>());
            for i in 0..n {
                assert_eq!(t.lookup(&mut m, 3 * i).unwrap(), Some(ext(i)));
                assert_eq!(t.lookup(&mut m, 3 * i + 2).unwrap(), None);
            }
            // The same tree read with the kernel's fanout: the nodes are ordinary.
            let wide = Tree { fanout: NODE_ENTRIES, ..t };
            assert_eq!(all(&mut m, &wide).len(), n as usize);
            let from = 3 * (n / 3);
            while !t.truncate(&mut m, from, 2, |_, _, _| Ok(())).unwrap().done {}
            assert_eq!(all(&mut m, &t), (0..n / 3).map(ext).collect::<Vec<_>>());
            let cut = t.truncate(&mut m, 0, usize::MAX, |_, _, _| Ok(())).unwrap();
            assert!(cut.done && cut.empty);
            assert!(m.used.is_empty(), "fanout {fanout}: {} node blocks leaked", m.used.len());
        }
    }

    /// Past [`MAX_DEPTH`] an insertion is refused as corruption, and the tree is unchanged
    /// (no node block leaked, every extent still there).
    #[test]
    fn an_insertion_past_the_deepest_root_is_refused() {
        let (mut m, t0) = new_tree(&[ext(0)]);
        let t = Tree { fanout: 2, ..t0 };
        let mut i = 1;
        let refused = loop {
            match t.insert(&mut m, ext(i)) {
                Ok(()) => i += 1,
                Err(e) => break e,
            }
            assert!(i < 1_000, "fanout 2 took 1000 extents");
        };
        assert!(matches!(refused, E::F(FormatError::Corrupt { what: "extent tree depth", .. })), "{refused:?}");
        assert_eq!(shape(&mut m, &t).0, MAX_DEPTH);
        assert_eq!(all(&mut m, &t), (0..i).map(ext).collect::<Vec<_>>());
        assert_eq!(shape(&mut m, &t).1, m.used.len());
    }

    #[test]
    fn cut_inside_an_extent_and_replace_grow() {
        let (mut m, t) = new_tree(&[Extent { logical: 10, len: 20, start: 500 }]);
        t.replace(&mut m, 10, Extent { logical: 9, len: 22, start: 499 }).unwrap();
        assert_eq!(all(&mut m, &t), vec![Extent { logical: 9, len: 22, start: 499 }]);
        let mut freed = Vec::new();
        let Cut { done, empty, .. } = t
            .truncate(&mut m, 15, 10, |_, s, l| {
                freed.push((s, l));
                Ok(())
            })
            .unwrap();
        assert!(done && !empty);
        assert_eq!(freed, vec![(505, 16)]);
        assert_eq!(all(&mut m, &t), vec![Extent { logical: 9, len: 6, start: 499 }]);
        // Replacing one that is not there, or growing into a neighbour, is refused.
        assert!(t.replace(&mut m, 10, Extent { logical: 10, len: 1, start: 1 }).is_err());
        t.insert(&mut m, Extent { logical: 40, len: 1, start: 600 }).unwrap();
        assert!(t.replace(&mut m, 9, Extent { logical: 9, len: 40, start: 499 }).is_err());
    }

    #[test]
    fn front_inserts_keep_keys_right() {
        // Descending inserts: every insertion goes to the front of the first leaf, so the
        // keys of the leftmost path change each time.
        let (mut m, t) = new_tree(&[ext(50_000)]);
        for i in (0..50_000).rev() {
            t.insert(&mut m, ext(i)).unwrap();
        }
        let v = all(&mut m, &t);
        assert_eq!(v, (0..=50_000).map(ext).collect::<Vec<_>>());
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let (mut m, t) = new_tree(&[ext(0)]);
        for i in 1..2_000 {
            t.insert(&mut m, ext(i)).unwrap();
        }
        let nodes: Vec<u64> = m.blocks.keys().copied().collect();
        // Flip each byte position class of each node (checksum recomputed): every operation
        // returns Ok or Err, never panics.
        for &n in &nodes {
            for off in [24usize, 28, 29, 30, 32, 36, 40, 44, 48, 4080] {
                let saved = m.blocks[&n].clone();
                m.write(n, |b| {
                    b[off] ^= 0xff;
                    seal(b, n, 7);
                })
                .unwrap();
                let _ = t.lookup(&mut m, 3000);
                let _ = t.for_each(&mut m, 0, |_| true);
                let _ = t.for_each_node(&mut m, |_, _| {});
                let _ = t.insert(&mut m, Extent { logical: 7000, len: 1, start: 9_999_999 });
                m.blocks.insert(n, saved);
            }
        }
    }

    #[test]
    fn a_v2_extent_block_is_a_depth_0_tree() {
        let mut b = vec![0u8; crate::format::BLOCK_SIZE];
        let exts: Vec<Extent> = (0..10).map(ext).collect();
        crate::format::extent::extent_block_build(&mut b, 100, 7, &exts);
        let mut m = Mem { blocks: BTreeMap::new(), used: BTreeSet::new(), next: 101, end: 1 << 40, writes: 0 };
        m.blocks.insert(100, b);
        m.used.insert(100);
        let t = Tree { root: 100, owner: 7, data_start: 100, data_end: 1 << 40, lo: 0, fanout: NODE_ENTRIES };
        assert_eq!(all(&mut m, &t), exts);
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    enum Op {
        /// Insert `len` blocks at file block `at` if that range is a hole (else skipped).
        Insert { at: u32, len: u32 },
        /// Grow the extent holding or preceding `at` by one block at its end, if free.
        Grow { at: u32 },
        /// Truncate from `from`, `budget` extents per call, until done.
        Truncate { from: u32, budget: usize },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0u32..40_000, 1u32..4).prop_map(|(at, len)| Op::Insert { at, len }),
            2 => (0u32..40_000).prop_map(|at| Op::Grow { at }),
            1 => (0u32..40_000, 1usize..300).prop_map(|(from, budget)| Op::Truncate { from, budget }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Random inserts, grows and truncates against a BTreeMap: the same extents in the same
        /// order, lookups agree, and the node blocks in use are exactly the tree's nodes.
        #[test]
        fn matches_a_model(
            ops in proptest::collection::vec(op(), 1..1500),
            fanout in proptest::prop_oneof![proptest::strategy::Just(NODE_ENTRIES), 8usize..12],
        ) {
            let (mut m, t0) = new_tree(&[Extent { logical: 0, len: 1, start: 10_000_000 }]);
            let t = Tree { fanout, ..t0 };
            let mut model: BTreeMap<u32, Extent> = BTreeMap::new();
            model.insert(0, Extent { logical: 0, len: 1, start: 10_000_000 });
            let mut next_dev = 20_000_000u64;
            let mut alive = true;
            for o in ops {
                if !alive {
                    break;
                }
                match o {
                    Op::Insert { at, len } => {
                        let e = Extent { logical: at, len, start: next_dev };
                        next_dev += 16;
                        let hole = model.range(..at + len).next_back().map_or(true, |(_, p)| p.logical_end() <= u64::from(at));
                        if hole {
                            t.insert(&mut m, e).unwrap();
                            model.insert(at, e);
                        } else {
                            assert!(t.insert(&mut m, e).is_err());
                        }
                    }
                    Op::Grow { at } => {
                        if let Some((&k, &p)) = model.range(..=at).next_back() {
                            let end = p.logical_end();
                            let free = model.range(k + 1..).next().map_or(true, |(_, n)| u64::from(n.logical) > end);
                            if free && end < u64::from(u32::MAX) {
                                let g = Extent { len: p.len + 1, ..p };
                                t.replace(&mut m, u64::from(k), g).unwrap();
                                model.insert(k, g);
                            }
                        }
                    }
                    Op::Truncate { from, budget } => {
                        loop {
                            let Cut { done, empty, .. } = t.truncate(&mut m, u64::from(from), budget, |_, _, _| Ok(())).unwrap();
                            if empty {
                                alive = false;
                                break;
                            }
                            if done {
                                break;
                            }
                        }
                        let keys: Vec<u32> = model.range(from..).map(|(k, _)| *k).collect();
                        for k in keys {
                            model.remove(&k);
                        }
                        if let Some((_, p)) = model.range_mut(..from).next_back() {
                            if p.logical_end() > u64::from(from) {
                                p.len = from - p.logical;
                            }
                        }
                        proptest::prop_assert_eq!(model.is_empty(), !alive, "tree freed iff nothing is left");
                    }
                }
                if alive {
                    // Spot lookups against the model.
                    for probe in [0u64, 1, 777, 20_000, 39_999] {
                        let want = model.range(..=probe as u32).next_back().map(|(_, e)| *e).filter(|e| e.map(probe).is_some());
                        proptest::prop_assert_eq!(t.lookup(&mut m, probe).unwrap(), want);
                    }
                }
            }
            if alive {
                proptest::prop_assert_eq!(all(&mut m, &t), model.values().copied().collect::<Vec<_>>());
                let mut nodes = BTreeSet::new();
                t.for_each_node(&mut m, |n, _| {
                    nodes.insert(n);
                })
                .unwrap();
                proptest::prop_assert_eq!(nodes, m.used.clone());
            } else {
                proptest::prop_assert!(m.used.is_empty());
            }
        }
    }
}
