//! A file's whole block map: the [`INLINE_EXTENTS`] extents inline in its inode, then its
//! [`extent_tree`](crate::extent_tree) (root block `extent_block`). The one implementation of
//! mapping, allocating into and truncating a file's blocks, for the kernel (over its buffer
//! cache, inside a journal handle), the offline writer and fsck (over an image).
//!
//! **Shape.** `nr_extents` counts every extent of the file, inline and in the tree. The inline
//! extents are the file's first `min(nr_extents, 6)`; the tree exists (`extent_block != 0`)
//! only when all 6 inline slots are used, and holds the extents past the last inline one (its
//! `lo` is that extent's end). Unused inline slots are zero. A v2 file (an extent block of
//! depth 0 holding `nr_extents - 6` extents) is such a file.
//!
//! **Changes** keep that shape: [`FileExtents::add_block`] maps one more block (growing a
//! neighbouring extent when the device block continues it, else a new extent: inline while
//! there is room, else in the tree, moving the last inline extent into the tree when the new
//! one goes before it); [`FileExtents::truncate`] unmaps from a file block to the end, a bounded
//! amount per call. On an error nothing was changed, except that a truncate stops between two
//! consistent states.

use crate::error::FormatError;
use crate::extent_tree::{Cut, Tree, TreeStore};
use crate::format::extent::{check_extent, Extent};
use crate::format::inode::INLINE_EXTENTS;

/// A file's extents as its inode holds them, and where its blocks may lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileExtents {
    /// The inline extents (`min(nr_extents, 6)` used, the rest zero).
    pub inline: [Extent; INLINE_EXTENTS],
    /// Extents of the file, inline and in the tree.
    pub nr_extents: u32,
    /// Root block of the tree, 0 for none.
    pub root: u64,
    /// The inode the tree's nodes belong to.
    pub owner: u64,
    /// First block of the data region.
    pub data_start: u64,
    /// One past the last block of the data region.
    pub data_end: u64,
    /// Entries a tree node takes before it splits ([`Tree::fanout`]):
    /// [`crate::extent_tree::NODE_ENTRIES`] but where a test or a fuzz base image grows a deep
    /// tree in a few blocks.
    pub fanout: usize,
}

fn corrupt<E: From<FormatError>>(what: &'static str, value: u64) -> E {
    E::from(FormatError::Corrupt { what, value })
}

impl FileExtents {
    /// Inline extents in use.
    pub fn inline_count(&self) -> usize {
        usize::try_from(self.nr_extents).unwrap_or(usize::MAX).min(INLINE_EXTENTS)
    }

    fn inline_used(&self) -> &[Extent] {
        self.inline.get(..self.inline_count()).unwrap_or(&[])
    }

    /// End (file block) of the last inline extent, 0 for none: the tree's `lo`.
    fn inline_end(&self) -> u64 {
        self.inline_used().last().map_or(0, |e| e.logical_end())
    }

    /// The tree, if the file has one.
    pub fn tree(&self) -> Option<Tree> {
        (self.root != 0).then_some(Tree {
            root: self.root,
            owner: self.owner,
            data_start: self.data_start,
            data_end: self.data_end,
            lo: self.inline_end(),
            fanout: self.fanout,
        })
    }

    /// Checks what the inode itself holds (no block is read): the inline extents sorted, not
    /// overlapping, inside the data region, unused slots zero; a tree exactly when there are
    /// more than 6 extents. Errors: `Corrupt` (EUCLEAN).
    pub fn check_inode(&self) -> Result<(), FormatError> {
        let mut prev = 0u64;
        for e in self.inline_used() {
            check_extent(e, prev, self.data_start, self.data_end)?;
            prev = e.logical_end();
        }
        if self.inline.iter().skip(self.inline_count()).any(|e| *e != Extent::default()) {
            return Err(FormatError::Corrupt { what: "unused inline extent not zero", value: self.owner });
        }
        let wants_tree = self.inline_count() < usize::try_from(self.nr_extents).unwrap_or(usize::MAX);
        if wants_tree != (self.root != 0) {
            return Err(FormatError::Corrupt {
                what: "extent count vs extent block",
                value: u64::from(self.nr_extents),
            });
        }
        if self.root != 0 && (self.root < self.data_start || self.root >= self.data_end) {
            return Err(FormatError::Corrupt { what: "extent block outside the data region", value: self.root });
        }
        Ok(())
    }

    /// Device block of file block `lblk` and the mapped run from it (blocks, at least 1), or
    /// `None` for a hole. Reads at most the tree's depth + 1 nodes. Errors: the store's,
    /// `Corrupt`.
    pub fn lookup<S: TreeStore>(&self, s: &mut S, lblk: u64) -> Result<Option<(u64, u64)>, S::Error> {
        let e = match self.tree() {
            Some(t) if lblk >= t.lo => t.lookup(s, lblk)?,
            _ => self.inline_used().iter().find(|e| e.map(lblk).is_some()).copied(),
        };
        Ok(e.and_then(|e| Some((e.map(lblk)?, e.logical_end() - lblk))))
    }

    /// One past the last file block mapped (0 for none). Reads the tree's rightmost path.
    /// Errors: the store's, `Corrupt`.
    pub fn mapped_end<S: TreeStore>(&self, s: &mut S) -> Result<u64, S::Error> {
        if let Some(t) = self.tree() {
            if let Some(e) = t.last(s)? {
                return Ok(e.logical_end());
            }
        }
        Ok(self.inline_end())
    }

    /// Calls `f` on every extent reaching past file block `from`, in order; stops when `f`
    /// returns `false`. Errors: the store's, `Corrupt`.
    pub fn for_each<S: TreeStore>(
        &self,
        s: &mut S,
        from: u64,
        mut f: impl FnMut(Extent) -> bool,
    ) -> Result<(), S::Error> {
        for e in self.inline_used() {
            if e.logical_end() > from && !f(*e) {
                return Ok(());
            }
        }
        if let Some(t) = self.tree() {
            t.for_each(s, from, f)?;
        }
        Ok(())
    }

    /// The extent before file block `lblk` (the last with `logical <= lblk`) and the one after
    /// (the first with `logical > lblk`).
    fn neighbours<S: TreeStore>(&self, s: &mut S, lblk: u64) -> Result<(Option<Extent>, Option<Extent>), S::Error> {
        let inl = self.inline_used();
        let i = inl.iter().position(|e| u64::from(e.logical) > lblk).unwrap_or(inl.len());
        let prev = i.checked_sub(1).and_then(|j| inl.get(j)).copied();
        if let Some(next) = inl.get(i) {
            return Ok((prev, Some(*next)));
        }
        match self.tree() {
            Some(t) => {
                let (tp, tn) = t.neighbours(s, lblk)?;
                Ok((tp.or(prev), tn))
            }
            None => Ok((prev, None)),
        }
    }

    /// The device block to allocate file block `lblk` at: the one continuing the extent
    /// before it (its end plus the gap), else the one before the extent after it, else 0 (no
    /// preference). Errors: `Corrupt` when `lblk` is already mapped (the caller took it for a
    /// hole: a size below what the extents map), the store's.
    pub fn goal<S: TreeStore>(&self, s: &mut S, lblk: u64) -> Result<u64, S::Error> {
        let (prev, next) = self.neighbours(s, lblk)?;
        if let Some(p) = prev {
            if p.logical_end() > lblk {
                return Err(corrupt("file block mapped past the size", lblk));
            }
            return Ok(p.start.saturating_add(u64::from(p.len)).saturating_add(lblk - p.logical_end()));
        }
        Ok(next.and_then(|n| n.start.checked_sub(u64::from(n.logical) - lblk)).unwrap_or(0))
    }

    /// Maps file block `lblk` (a hole, below `u32::MAX`) to device block `pb`: grows the extent
    /// before or after it when `pb` continues it, else adds an extent (inline while there is
    /// room, else in the tree, whose root it allocates through the store the first time). On
    /// an error nothing was changed. Errors: `Corrupt` (`lblk` mapped, a node failing its
    /// checks), the store's (`ENOSPC` for a node).
    pub fn add_block<S: TreeStore>(&mut self, s: &mut S, lblk: u64, pb: u64) -> Result<(), S::Error> {
        self.add_run(s, lblk, pb, 1)
    }

    /// Maps the `len` file blocks from `lblk` (a hole, ending at or below `u32::MAX`) to the
    /// device blocks from `pb`: [`Self::add_block`] for a run, one extent changed or added
    /// whatever `len` (the kernel maps a buffered write's blocks past the end of file at once).
    /// Errors: as [`Self::add_block`], and `Corrupt` for `len` 0 or a run that overlaps a
    /// mapped block.
    pub fn add_run<S: TreeStore>(&mut self, s: &mut S, lblk: u64, pb: u64, len: u32) -> Result<(), S::Error> {
        let l = u32::try_from(lblk).map_err(|_| corrupt::<S::Error>("file block past u32", lblk))?;
        let end = lblk.saturating_add(u64::from(len));
        if len == 0 || end > u64::from(u32::MAX) {
            return Err(corrupt("mapped run", end));
        }
        let (prev, next) = self.neighbours(s, lblk)?;
        if next.is_some_and(|n| u64::from(n.logical) < end) {
            return Err(corrupt("mapped run overlaps an extent", end));
        }
        if let Some(p) = prev {
            if p.logical_end() > lblk {
                return Err(corrupt("file block mapped past the size", lblk));
            }
            if p.logical_end() == lblk && p.start.checked_add(u64::from(p.len)) == Some(pb) {
                if let Some(grown) = p.len.checked_add(len) {
                    return self.replace(s, p, Extent { len: grown, ..p });
                }
            }
        }
        if let Some(n) = next {
            if u64::from(n.logical) == end && pb.checked_add(u64::from(len)) == Some(n.start) {
                if let Some(grown) = n.len.checked_add(len) {
                    return self.replace(s, n, Extent { logical: l, len: grown, start: pb });
                }
            }
        }
        self.insert(s, Extent { logical: l, len, start: pb })
    }

    /// Adds extent `e` after every mapped block (`e.logical` at or past [`Self::mapped_end`],
    /// `len > 0`): how a tool lays out a file it writes whole. Errors: `Corrupt` when `e` does
    /// not come last, the store's (`ENOSPC` for a node).
    pub fn append<S: TreeStore>(&mut self, s: &mut S, e: Extent) -> Result<(), S::Error> {
        if e.len == 0 || u64::from(e.logical) < self.mapped_end(s)? {
            return Err(corrupt("appended extent not last", u64::from(e.logical)));
        }
        self.insert(s, e)
    }

    /// Replaces extent `old` (inline or in the tree) by `new`, the same extent grown.
    fn replace<S: TreeStore>(&mut self, s: &mut S, old: Extent, new: Extent) -> Result<(), S::Error> {
        let n = self.inline_count();
        if let Some(slot) = self.inline.iter_mut().take(n).find(|e| **e == old) {
            *slot = new;
            return Ok(());
        }
        match self.tree() {
            Some(t) => t.replace(s, u64::from(old.logical), new),
            None => Err(corrupt("grown extent not found", u64::from(old.logical))),
        }
    }

    /// Adds extent `e` (over a hole) as a new extent.
    fn insert<S: TreeStore>(&mut self, s: &mut S, e: Extent) -> Result<(), S::Error> {
        let count = self.nr_extents.checked_add(1).ok_or_else(|| corrupt::<S::Error>("extent count", u64::MAX))?;
        let n = self.inline_count();
        if n < INLINE_EXTENTS {
            if self.root != 0 {
                return Err(corrupt("extent block with free inline slots", self.root));
            }
            let at = self.inline_used().iter().position(|x| x.logical > e.logical).unwrap_or(n);
            insert_inline(&mut self.inline, n, at, e);
            self.nr_extents = count;
            return Ok(());
        }
        let lo = self.inline_end();
        // Inline is full: `e` goes to the tree when it comes after the last inline extent; else
        // the last inline extent moves to the tree and `e` takes its place among the others.
        let (to_tree, moved) = if u64::from(e.logical) >= lo {
            (e, false)
        } else {
            (self.inline.last().copied().unwrap_or_default(), true)
        };
        match self.tree() {
            Some(mut t) => {
                if moved {
                    t.lo = self.inline.get(INLINE_EXTENTS - 2).map_or(0, |x| x.logical_end());
                }
                t.insert(s, to_tree)?;
            }
            None => self.new_root(s, to_tree)?,
        }
        if moved {
            let keep = INLINE_EXTENTS - 1;
            if let Some(last) = self.inline.last_mut() {
                *last = Extent::default();
            }
            let at = self.inline.iter().take(keep).position(|x| x.logical > e.logical).unwrap_or(keep);
            insert_inline(&mut self.inline, keep, at, e);
        }
        self.nr_extents = count;
        Ok(())
    }

    /// Allocates the tree's root, a leaf holding `e`.
    fn new_root<S: TreeStore>(&mut self, s: &mut S, e: Extent) -> Result<(), S::Error> {
        let root = s.alloc(e.start)?;
        let owner = self.owner;
        if let Err(err) = s.init(root, |b| crate::format::extent::extent_block_build(b, root, owner, &[e])) {
            s.free(root)?;
            return Err(err);
        }
        self.root = root;
        Ok(())
    }

    /// Unmaps file blocks `from ..` from the end, the tree first (at most `leaves` of its
    /// leaves emptied per call, see [`Tree::truncate`]), then the inline extents; an extent
    /// across `from` is cut; `free_data(store, start, len)` frees each run of device blocks.
    /// Node blocks go back through the store; an emptied tree's root too (`root` becomes 0).
    /// Returns whether it is done; when not, the map is consistent (the file maps less than
    /// before) and the caller calls again. Errors: the store's, `Corrupt`.
    pub fn truncate<S: TreeStore>(
        &mut self,
        s: &mut S,
        from: u64,
        leaves: usize,
        mut free_data: impl FnMut(&mut S, u64, u64) -> Result<(), S::Error>,
    ) -> Result<bool, S::Error> {
        if let Some(t) = self.tree() {
            let Cut { done, empty, removed } = t.truncate(s, from, leaves, &mut free_data)?;
            let removed = u32::try_from(removed).unwrap_or(u32::MAX);
            self.nr_extents = self.nr_extents.saturating_sub(removed).max(INLINE_EXTENTS as u32);
            if empty {
                self.root = 0;
                self.nr_extents = INLINE_EXTENTS as u32;
            }
            if !done {
                return Ok(false);
            }
            if self.root != 0 {
                // The tree keeps extents at or past `lo`, so no inline extent reaches `from`.
                return Ok(true);
            }
        }
        let mut n = self.inline_count();
        while let Some(i) = n.checked_sub(1) {
            let Some(e) = self.inline.get(i).copied() else { break };
            if e.logical_end() <= from {
                break;
            }
            if u64::from(e.logical) < from {
                let k = from - u64::from(e.logical);
                free_data(s, e.start.saturating_add(k), u64::from(e.len) - k)?;
                if let Some(x) = self.inline.get_mut(i) {
                    x.len = u32::try_from(k).unwrap_or(0);
                }
                break;
            }
            free_data(s, e.start, u64::from(e.len))?;
            if let Some(x) = self.inline.get_mut(i) {
                *x = Extent::default();
            }
            n = i;
            self.nr_extents = u32::try_from(n).unwrap_or(0);
        }
        Ok(true)
    }

    /// Unmaps file blocks `from .. to` (a hole punched in the file): extents inside the range
    /// go, extents across its ends are cut, an extent across both is split in two (a new
    /// extent: it may need a node, `ENOSPC`). At most `budget` extents per call;
    /// `free_data(store, start, len)` frees each run of device blocks unmapped, after the map
    /// no longer holds it. Returns whether it is done; when not, the map is consistent (less of
    /// the range mapped) and the caller calls again. On an error the map is consistent and
    /// maps no block that was freed. Errors: the store's (`ENOSPC` for a split), `Corrupt`.
    pub fn punch<S: TreeStore>(
        &mut self,
        s: &mut S,
        from: u64,
        to: u64,
        budget: usize,
        mut free_data: impl FnMut(&mut S, u64, u64) -> Result<(), S::Error>,
    ) -> Result<bool, S::Error> {
        let mut left = budget;
        if from >= to {
            return Ok(true);
        }
        loop {
            // The first extent reaching past `from`.
            let mut first = None;
            self.for_each(s, from, |e| {
                first = Some(e);
                false
            })?;
            let Some(e) = first else { return Ok(true) };
            let (lo, hi) = (u64::from(e.logical), e.logical_end());
            if lo >= to {
                return Ok(true);
            }
            if left == 0 {
                return Ok(false);
            }
            left -= 1;
            let cut_from = lo.max(from);
            let cut_to = hi.min(to);
            let dev = |l: u64| e.start.saturating_add(l - lo);
            let len32 = |n: u64| u32::try_from(n).unwrap_or(0);
            if lo < from && hi > to {
                // Split: the left part stays, the right part becomes a new extent.
                let left_part = Extent { len: len32(from - lo), ..e };
                let right_part = Extent { logical: len32(to), len: len32(hi - to), start: dev(to) };
                self.replace(s, e, left_part)?;
                if let Err(err) = self.insert(s, right_part) {
                    // Undo: the extent grows back (no node needed).
                    self.replace(s, left_part, e)?;
                    return Err(err);
                }
            } else if lo < from {
                self.replace(s, e, Extent { len: len32(from - lo), ..e })?;
            } else if hi > to {
                self.replace(s, e, Extent { logical: len32(to), len: len32(hi - to), start: dev(to) })?;
            } else {
                self.remove(s, e)?;
            }
            free_data(s, dev(cut_from), cut_to - cut_from)?;
        }
    }

    /// Removes extent `e` (inline or in the tree). An inline slot freed while the tree exists
    /// takes the tree's first extent, so that the tree exists only behind 6 inline extents.
    fn remove<S: TreeStore>(&mut self, s: &mut S, e: Extent) -> Result<(), S::Error> {
        let n = self.inline_count();
        if let Some(i) = self.inline.iter().take(n).position(|x| *x == e) {
            if let Some(tail) = self.inline.get_mut(i..n) {
                tail.rotate_left(1);
            }
            if let Some(last) = self.inline.get_mut(n - 1) {
                *last = Extent::default();
            }
            if let Some(t) = self.tree() {
                // The tree's first extent moves inline (its `lo` is still the old inline end).
                let mut first = None;
                t.for_each(s, 0, |x| {
                    first = Some(x);
                    false
                })?;
                let f = first.ok_or_else(|| corrupt::<S::Error>("empty extent tree", self.root))?;
                if t.remove(s, u64::from(f.logical))? {
                    self.root = 0;
                }
                if let Some(last) = self.inline.get_mut(n - 1) {
                    *last = f;
                }
            }
        } else {
            let t = self.tree().ok_or_else(|| corrupt::<S::Error>("removed extent not found", u64::from(e.logical)))?;
            if t.remove(s, u64::from(e.logical))? {
                self.root = 0;
            }
        }
        self.nr_extents = self.nr_extents.saturating_sub(1);
        Ok(())
    }

    /// Calls `f` on every node block of the tree with its depth (fsck's count of the file's
    /// extent blocks). Errors: the store's, `Corrupt`.
    pub fn for_each_node<S: TreeStore>(&self, s: &mut S, f: impl FnMut(u64, usize)) -> Result<(), S::Error> {
        match self.tree() {
            Some(t) => t.for_each_node(s, f),
            None => Ok(()),
        }
    }
}

/// Inserts `e` at `at` of the first `n < INLINE_EXTENTS` slots of `inline`.
fn insert_inline(inline: &mut [Extent; INLINE_EXTENTS], n: usize, at: usize, e: Extent) {
    if let Some(s) = inline.get_mut(at..=n) {
        s.rotate_right(1);
        if let Some(x) = s.first_mut() {
            *x = e;
        }
    }
}

#[cfg(test)]
// Tests: a panic is the failure report.
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::extent_tree::tests::Mem;
    use crate::extent_tree::NODE_ENTRIES;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec::Vec;

    const DATA_START: u64 = 100;

    fn empty() -> FileExtents {
        FileExtents {
            inline: [Extent::default(); INLINE_EXTENTS],
            nr_extents: 0,
            root: 0,
            owner: 7,
            data_start: DATA_START,
            data_end: 1 << 40,
            fanout: NODE_ENTRIES,
        }
    }

    fn all(fx: &FileExtents, m: &mut Mem) -> Vec<Extent> {
        let mut v = Vec::new();
        fx.for_each(m, 0, |e| {
            v.push(e);
            true
        })
        .unwrap();
        v
    }

    /// The model's blocks as maximal runs (what the map holds after merges), for comparison
    /// with the map's extents: the map may keep two adjacent extents unmerged, so both sides
    /// are compared block by block instead.
    fn blocks_of(v: &[Extent]) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for e in v {
            for i in 0..u64::from(e.len) {
                out.insert(u64::from(e.logical) + i, e.start + i);
            }
        }
        out
    }

    /// Checks the map against `model` (file block -> device block): the same blocks, sorted
    /// extents, the shape rules, `nr_extents` right, lookups agreeing, and the node blocks in
    /// use exactly the tree's.
    fn check(fx: &FileExtents, m: &mut Mem, model: &BTreeMap<u64, u64>) {
        fx.check_inode().unwrap();
        let v = all(fx, m);
        assert_eq!(v.len(), fx.nr_extents as usize);
        for w in v.windows(2) {
            assert!(w[0].logical_end() <= u64::from(w[1].logical));
        }
        assert_eq!(&blocks_of(&v), model);
        for (&l, &p) in model.iter().step_by(97) {
            let (got, run) = fx.lookup(m, l).unwrap().unwrap();
            assert_eq!(got, p);
            assert!(run >= 1);
        }
        let mut nodes = BTreeSet::new();
        fx.for_each_node(m, |n, _| {
            nodes.insert(n);
        })
        .unwrap();
        assert_eq!(nodes, m.used);
        assert_eq!(fx.mapped_end(m).unwrap(), model.keys().next_back().map_or(0, |l| l + 1));
    }

    /// A deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Runs of blocks (`add_run`) against a model: appends that continue the last run (one
    /// extent grows), runs in holes between extents (merging with both sides or neither),
    /// and refusals of runs that overlap a mapped block, which change nothing.
    #[test]
    fn runs_match_a_model() {
        for seed in 1..=4u64 {
            let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
            let mut m = Mem::new(1 << 30);
            let mut fx = empty();
            let mut model = BTreeMap::new();
            let mut dev = 1_000u64;
            for _ in 0..3_000 {
                let len = 1 + (rng.next() % 300) as u32;
                let l = match rng.next() % 3 {
                    0 => model.keys().next_back().map_or(0, |l| l + 1),
                    _ => rng.next() % 2_000_000,
                };
                let overlaps = model.range(l..l + u64::from(len)).next().is_some();
                let goal = fx.goal(&mut m, l);
                // The goal when it lies below the device blocks handed out so far (a merge with
                // the extent before or after), else fresh blocks: the map does not check that
                // device blocks are unique, the allocator does.
                let p = match goal {
                    Ok(g) if rng.next() % 2 == 0 && g >= DATA_START && g + u64::from(len) <= dev => g,
                    _ => {
                        dev += u64::from(len) + rng.next() % 3;
                        dev - u64::from(len)
                    }
                };
                let before = fx.nr_extents;
                let r = fx.add_run(&mut m, l, p, len);
                if overlaps {
                    assert!(r.is_err(), "a run over a mapped block is refused");
                    assert_eq!(fx.nr_extents, before);
                    continue;
                }
                r.unwrap();
                assert!(fx.nr_extents <= before + 1, "one run adds at most one extent");
                for i in 0..u64::from(len) {
                    model.insert(l + i, p + i);
                }
            }
            check(&fx, &mut m, &model);
            assert!(fx.add_run(&mut m, 10, 5, 0).is_err(), "an empty run is refused");
        }
    }

    #[test]
    fn sparse_and_interleaved_blocks_match_a_model() {
        for seed in 1..=6u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut m = Mem::new(1 << 30);
            let mut fx = empty();
            let mut model = BTreeMap::new();
            let mut dev = 1_000u64;
            for step in 0..6_000 {
                // Mostly holes in a wide range (sparse), some appends continuing the last
                // device block (merges), some blocks just before an extent (front merges).
                let l = match rng.next() % 4 {
                    0 => model.keys().next_back().map_or(0, |l| l + 1),
                    1 => rng.next() % 64,
                    _ => rng.next() % 200_000,
                };
                if model.contains_key(&l) {
                    assert!(fx.add_block(&mut m, l, 5).is_err(), "mapping a mapped block is refused");
                    continue;
                }
                let goal = fx.goal(&mut m, l).unwrap();
                let p = if rng.next() % 2 == 0 && goal >= DATA_START && !model.values().any(|&v| v == goal) {
                    goal
                } else {
                    dev += 2 + rng.next() % 3;
                    dev
                };
                fx.add_block(&mut m, l, p).unwrap();
                model.insert(l, p);
                if step % 1_000 == 999 {
                    check(&fx, &mut m, &model);
                }
            }
            check(&fx, &mut m, &model);
            assert!(fx.nr_extents > 1_000, "the file has many extents ({})", fx.nr_extents);
            // Truncate in steps, one leaf per call, to a random point, then to nothing.
            let cut = model.keys().nth(model.len() / 3).copied().unwrap() + 1;
            let mut freed = 0u64;
            while !fx
                .truncate(&mut m, cut, 1, |_, _, len| {
                    freed += len;
                    Ok(())
                })
                .unwrap()
            {
                // Every intermediate state is a valid map.
                fx.check_inode().unwrap();
            }
            let before = model.len() as u64;
            model.retain(|&l, _| l < cut);
            assert_eq!(freed, before - model.len() as u64);
            check(&fx, &mut m, &model);
            while !fx.truncate(&mut m, 0, 3, |_, _, _| Ok(())).unwrap() {}
            assert_eq!(fx, FileExtents { owner: 7, ..empty() });
            assert!(m.used.is_empty(), "{} node blocks leaked", m.used.len());
        }
    }

    #[test]
    fn punched_holes_match_a_model() {
        for seed in 1..=6u64 {
            let mut rng = Rng(seed * 0x2545_f491_4f6c_dd1d);
            let mut m = Mem::new(1 << 30);
            let mut fx = empty();
            let mut model = BTreeMap::new();
            let mut dev = 1_000u64;
            for round in 0..40 {
                // Runs of blocks, mostly contiguous on the device (long extents to split).
                for _ in 0..200 {
                    let l = rng.next() % 20_000;
                    let run = 1 + rng.next() % 40;
                    for k in l..l + run {
                        if model.contains_key(&k) {
                            break;
                        }
                        dev += 1;
                        fx.add_block(&mut m, k, dev).unwrap();
                        model.insert(k, dev);
                    }
                    dev += 1;
                }
                // Punch a few ranges, a small budget per call.
                for _ in 0..5 {
                    let a = rng.next() % 20_000;
                    let b = a + rng.next() % if round % 4 == 0 { 8_000 } else { 60 };
                    let mut freed = BTreeSet::new();
                    while !fx
                        .punch(&mut m, a, b, 1 + (rng.next() % 7) as usize, |_, start, len| {
                            for d in start..start + len {
                                assert!(freed.insert(d), "device block {d} freed twice");
                            }
                            Ok(())
                        })
                        .unwrap()
                    {
                        fx.check_inode().unwrap();
                    }
                    let gone: BTreeSet<u64> = model.range(a..b).map(|(_, &d)| d).collect();
                    model.retain(|&l, _| l < a || l >= b);
                    assert_eq!(freed, gone, "the device blocks freed are those unmapped");
                }
                check(&fx, &mut m, &model);
            }
            // Punch everything: the tree goes.
            while !fx.punch(&mut m, 0, u64::from(u32::MAX), 50, |_, _, _| Ok(())).unwrap() {}
            assert_eq!(fx, FileExtents { owner: 7, ..empty() });
            assert!(m.used.is_empty(), "{} node blocks leaked", m.used.len());
        }
    }

    #[test]
    fn a_split_without_a_node_changes_nothing() {
        let mut m = Mem::new(1 << 30);
        let mut fx = empty();
        // Inline full, the root leaf full (one-block extents every other block), then one
        // long extent at the end: splitting it needs a new extent in a full tree.
        let mut l = 0u64;
        while fx.nr_extents < (INLINE_EXTENTS + crate::extent_tree::NODE_ENTRIES - 1) as u32 {
            fx.add_block(&mut m, l, 10_000 + 2 * l).unwrap();
            l += 2;
        }
        for k in 0..10 {
            fx.add_block(&mut m, l + k, 50_000 + k).unwrap();
        }
        m.end = m.next;
        let before = (fx, m.blocks.clone(), m.used.clone());
        let mut freed = 0;
        assert!(fx
            .punch(&mut m, l + 3, l + 5, 10, |_, _, n| {
                freed += n;
                Ok(())
            })
            .is_err());
        assert_eq!((fx, m.blocks.clone(), m.used.clone(), freed), (before.0, before.1, before.2, 0));
        // A cut at the end needs no node.
        fx.punch(&mut m, l + 5, l + 10, 10, |_, _, _| Ok(())).unwrap();
    }

    #[test]
    fn a_block_before_the_inline_ones_moves_the_last_into_the_tree() {
        let mut m = Mem::new(1 << 30);
        let mut fx = empty();
        let mut model = BTreeMap::new();
        for i in 0..6u64 {
            fx.add_block(&mut m, 10 + 3 * i, 500 + 10 * i).unwrap();
            model.insert(10 + 3 * i, 500 + 10 * i);
        }
        assert_eq!((fx.nr_extents, fx.root), (6, 0));
        fx.add_block(&mut m, 1, 900).unwrap();
        model.insert(1, 900);
        assert_ne!(fx.root, 0);
        assert_eq!(fx.inline[0].logical, 1);
        check(&fx, &mut m, &model);
        // A block continuing an extent grows it instead of adding one.
        let n = fx.nr_extents;
        fx.add_block(&mut m, 2, 901).unwrap();
        model.insert(2, 901);
        assert_eq!(fx.nr_extents, n);
        check(&fx, &mut m, &model);
    }

    #[test]
    fn enospc_for_a_node_changes_nothing() {
        let mut m = Mem::new(1 << 30);
        let mut fx = empty();
        // Fill the inline slots and the root leaf exactly, then refuse allocations.
        let mut l = 0u64;
        while fx.nr_extents < (INLINE_EXTENTS + crate::extent_tree::NODE_ENTRIES) as u32 {
            fx.add_block(&mut m, l, 10_000 + 2 * l).unwrap();
            l += 2;
        }
        // The root must grow (two blocks): no block left, or only one.
        for spare in [0, 1] {
            m.end = m.next + spare;
            let before = (fx, m.blocks.clone(), m.used.clone());
            assert!(fx.add_block(&mut m, l, 10_000 + 2 * l).is_err());
            assert_eq!((fx, m.blocks.clone(), m.used.clone()), before);
        }
        // A grow needs no node: it still works.
        fx.add_block(&mut m, l - 1, 10_000 + 2 * (l - 2) + 1).unwrap();
    }
}
