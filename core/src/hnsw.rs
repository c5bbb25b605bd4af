//! Hierarchical Navigable Small World graphs (Malkov & Yashunin, "Efficient and robust
//! approximate nearest neighbor search using Hierarchical Navigable Small World graphs",
//! IEEE TPAMI 2018), shared by the kernel and the tools.
//!
//! The algorithms see the graph and the vectors only through [`Store`], and distances only as
//! order-preserving `u32` keys (`crate::distance::key_from_bits`): no float arithmetic here, so
//! the code runs in the kernel. All memory comes from the caller ([`Scratch`], [`Visited`]):
//! nothing is allocated per query.
//!
//! Parameter names follow the paper: `m` (neighbours per node above level 0; level 0 keeps
//! `m0 = 2m`), `ef_construction`, `ef_search` (`ef`).
//!
//! Counts and positions here are bounded by the lengths of the caller's slices (at most
//! `isize::MAX` elements); where one is stepped by one, `saturating_add(1)` states that no panic
//! is possible and gives the exact value.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![deny(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

/// One candidate: distance key to the query, node id, and whether it was expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cand {
    /// Order-preserving key of the distance to the query (`crate::distance::key_from_bits`).
    pub key: u32,
    /// The node (a vector slot).
    pub id: u32,
    /// Whether SEARCH-LAYER has expanded it (visited its neighbours).
    pub expanded: bool,
}

/// Storage of the graph and the vectors. `E` is the store's error (the kernel's `Error`, or an
/// I/O error in userspace); corrupt data must come back as an error, never a panic.
pub trait Store {
    /// The store's error; also the type of [`Store::invalid`]'s invariant errors.
    type Error;
    /// Keys of the distances from the current query to each of `ids`, into `keys[..ids.len()]`.
    fn dist_query(&mut self, ids: &[u32], keys: &mut [u32]) -> Result<(), Self::Error>;
    /// Keys of the distances from node `a` to each of `ids`.
    fn dist_pair(&mut self, a: u32, ids: &[u32], keys: &mut [u32]) -> Result<(), Self::Error>;
    /// Copies the neighbours of `node` at `level` into `out`; returns how many.
    fn links(&mut self, node: u32, level: u8, out: &mut [u32]) -> Result<usize, Self::Error>;
    /// Replaces the neighbours of `node` at `level`.
    fn set_links(&mut self, node: u32, level: u8, links: &[u32]) -> Result<(), Self::Error>;
    /// A hint that the neighbours of `node` at `level` will be read next (the candidate a
    /// layer search expands after the current one): a store in memory may prefetch them.
    /// Nothing by default.
    fn prefetch_links(&mut self, _node: u32, _level: u8) {}
    /// Whether `node` is a tombstone (routes searches, never returned or linked to anew).
    fn is_deleted(&mut self, node: u32) -> Result<bool, Self::Error>;
    /// The key of the exact distance from the query to `node`, whose links at `level` were just
    /// read, when the store has it without another read (a walk on codes over node records:
    /// the vector came in the same block); the layer search then keeps `node` in its list by
    /// that key. `None` by default: the node keeps the key it was found with.
    fn expanded_key(&mut self, _node: u32, _level: u8) -> Result<Option<u32>, Self::Error> {
        Ok(None)
    }
    /// The error for a broken invariant (scratch too small, id out of range...).
    fn invalid(&self, what: &'static str) -> Self::Error;
}

/// A set of visited node ids, cleared before each layer search (an epoch array in practice).
pub trait Visited {
    /// Empties the set.
    fn clear(&mut self);
    /// Adds `id`; returns whether it was already there.
    fn test_and_set(&mut self, id: u32) -> bool;
}

/// Epoch-stamped [`Visited`] set over ids `0 .. marks.len()`: 2 bytes per id, cleared in O(1)
/// by moving to the next epoch (the marks are zeroed once every 65,535 clears). `M` is the
/// caller's memory (`KVVec<u16>` in the kernel, `Vec<u16>` in the tools); ids past its end count
/// as visited, so they are never expanded.
pub struct EpochVisited<M> {
    marks: M,
    epoch: u16,
}

impl<M: core::ops::DerefMut<Target = [u16]>> EpochVisited<M> {
    /// A set over `marks`, which must be all zero.
    pub fn new(marks: M) -> Self {
        EpochVisited { marks, epoch: 1 }
    }

    /// The memory, to grow it (then give it back with [`Self::new`] after zeroing).
    pub fn into_marks(self) -> M {
        self.marks
    }

    /// Ids the set can hold.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether the set holds no id at all (zero capacity).
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

#[cfg(feature = "std")]
impl EpochVisited<std::vec::Vec<u16>> {
    /// Grows to hold ids `0 .. n` (new ids unvisited).
    pub fn grow(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
    }
}

impl<M: core::ops::DerefMut<Target = [u16]>> Visited for EpochVisited<M> {
    fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }
    fn test_and_set(&mut self, id: u32) -> bool {
        match self.marks.get_mut(id as usize) {
            Some(m) if *m == self.epoch => true,
            Some(m) => {
                *m = self.epoch;
                false
            }
            None => true,
        }
    }
}

/// Graph parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Neighbours kept per node above level 0 (`2m` at level 0); at most
    /// [`crate::format::superblock::MAX_M`].
    pub m: u32,
    /// Candidate list size while inserting.
    pub ef_construction: u32,
}

impl Params {
    /// Neighbours kept at `level`: `2m` at level 0, `m` above.
    pub fn max_links(&self, level: u8) -> usize {
        if level == 0 {
            m0(self.m)
        } else {
            self.m as usize
        }
    }
}

/// What a k-NN search asks for: the `k` nearest, with a candidate list of `ef` entries (raised
/// to `k`, capped by the pool of the [`Scratch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knn {
    /// Results wanted.
    pub k: usize,
    /// Candidate list size (`ef_search`).
    pub ef: usize,
}

/// `2m`, the links kept at level 0. Exact for every `u32` on 64-bit targets (saturates, never
/// panics, on 32-bit ones).
const fn m0(m: u32) -> usize {
    (m as usize).saturating_mul(2)
}

/// Entries of the candidate buffers: links of a full list, plus the links of its deleted
/// neighbours' lists, plus one (`3 * 2m + 1`). Saturating as [`m0`].
const fn cand_len(m: u32) -> usize {
    m0(m).saturating_mul(3).saturating_add(1)
}

/// Caller-provided working memory. `pool` holds the candidate list (at least `ef` entries for
/// a search, `ef_construction` for an insert); `work` holds link lists and key batches: at
/// least [`Scratch::work_len`] entries.
pub struct Scratch<'a> {
    /// The candidate list, sorted by key: `ef` entries for a search, `ef_construction` for an
    /// insert (a shorter pool caps them).
    pub pool: &'a mut [Cand],
    /// Link lists and key batches: [`Scratch::work_len`] words.
    pub work: &'a mut [u32],
}

impl Scratch<'_> {
    /// `u32`s of `work` needed for parameter `m`: `22m + 2` for the algorithms, and an insert
    /// plan's [`plan_len`] at the end (exact for every `u32` on 64-bit targets, saturating on
    /// 32-bit ones).
    pub const fn work_len(m: u32) -> usize {
        base_len(m).saturating_add(plan_len(m))
    }

    /// The scratch without the plan area at the end of `work`, and that area ([`plan_len`]
    /// words): for [`insert_plan`] and [`insert_apply`] run apart (the plan of one scratch, the
    /// connections in another). `None` when `work` is shorter than [`Self::work_len`].
    pub fn split_plan(&mut self, m: u32) -> Option<(Scratch<'_>, &mut [u32])> {
        let base = base_len(m);
        if self.work.len() < base {
            return None;
        }
        let (work, plan) = self.work.split_at_mut(base);
        let plan = plan.get_mut(..plan_len(m))?;
        Some((Scratch { pool: &mut *self.pool, work }, plan))
    }
}

/// The plan area of a scratch's `work` ([`Scratch::split_plan`]), to read a plan made in it;
/// `None` when `work` is shorter than [`Scratch::work_len`].
pub fn plan_area(work: &[u32], m: u32) -> Option<&[u32]> {
    work.get(base_len(m)..)?.get(..plan_len(m))
}

/// `u32`s of `work` the algorithms use: links, ids, keys (2m each), selection (2m), pair keys
/// (2m), candidates (3 * 2m + 1) and their keys (3 * 2m + 1).
const fn base_len(m: u32) -> usize {
    m0(m).saturating_mul(5).saturating_add(cand_len(m).saturating_mul(2))
}

struct Work<'a> {
    links: &'a mut [u32],
    ids: &'a mut [u32],
    keys: &'a mut [u32],
    sel: &'a mut [u32],
    pair: &'a mut [u32],
    cand: &'a mut [u32],
    cand_keys: &'a mut [u32],
}

/// The first `n` words of `*rest`, which keeps the others; `None` (and `*rest` emptied) when
/// it is shorter.
fn take<'a>(rest: &mut &'a mut [u32], n: usize) -> Option<&'a mut [u32]> {
    let all = core::mem::take(rest);
    if n > all.len() {
        return None;
    }
    let (head, tail) = all.split_at_mut(n);
    *rest = tail;
    Some(head)
}

/// Splits `work` ([`Scratch::work_len`] words at least) into the buffers of [`Work`].
fn carve<'a, S: Store + ?Sized>(s: &S, work: &'a mut [u32], m: u32) -> Result<Work<'a>, S::Error> {
    let (m0, c) = (m0(m), cand_len(m));
    let mut rest = work;
    let mut next = |n| take(&mut rest, n).ok_or_else(|| s.invalid("hnsw scratch too small"));
    Ok(Work {
        links: next(m0)?,
        ids: next(m0)?,
        keys: next(m0)?,
        sel: next(m0)?,
        pair: next(m0)?,
        cand: next(c)?,
        cand_keys: next(c)?,
    })
}

/// Inserts `c` into the sorted `pool[..*len]` (capacity `pool.len().min(ef)`), dropping the
/// worst if full. Returns the insert position, or `None` if `c` did not make it.
fn pool_insert(pool: &mut [Cand], len: &mut usize, ef: usize, c: Cand) -> Option<usize> {
    let cap = pool.len().min(ef);
    let live = pool.get(..*len)?;
    if *len >= cap {
        match live.last() {
            Some(w) if c.key < w.key => {}
            _ => return None,
        }
    }
    // First position whose key is greater (stable for equal keys: later ids go after).
    let pos = live.partition_point(|x| (x.key, x.id) <= (c.key, c.id));
    // `*len <= pool.len()` (`live` exists), so the step is exact.
    let end = len.saturating_add(1).min(cap);
    let tail = pool.get_mut(pos..end)?;
    if !tail.is_empty() {
        tail.rotate_right(1);
    }
    *pool.get_mut(pos)? = c;
    *len = end;
    Some(pos)
}

/// Moves `pool[i]` (of the sorted `pool[..len]`) to where `key` sorts, with that key: taken
/// out, the others closing up, and put back by [`pool_insert`] (one entry short of `len`, it
/// always goes in).
fn pool_rekey(pool: &mut [Cand], len: usize, i: usize, key: u32) {
    let Some(tail) = pool.get_mut(i..len) else { return };
    let Some(mut c) = tail.first().copied() else { return };
    tail.rotate_left(1);
    c.key = key;
    let mut rest = len.saturating_sub(1);
    pool_insert(pool, &mut rest, len, c);
}

/// Expansions a layer search with exact keys ([`Store::expanded_key`]) makes at most, per
/// entry of its list: the exact keys of expanded nodes sort after the code distances of the
/// candidates found, which the quantisation error underestimates, so the list would take in
/// ever more of them.
pub const REKEY_EXPANSIONS_PER_EF: usize = 3;

/// SEARCH-LAYER (Algorithm 2) over the sorted candidate pool: `pool[..len]` holds the entry
/// points on input (not yet expanded) and the `ef` nearest found on output. Returns the new
/// length. Entry points must already be in `visited` (callers use [`search_layer_from`]).
fn search_layer<S: Store + ?Sized, V: Visited + ?Sized>(
    store: &mut S,
    visited: &mut V,
    pool: &mut [Cand],
    mut len: usize,
    ef: usize,
    level: u8,
    w: &mut Work<'_>,
) -> Result<usize, S::Error> {
    let mut cursor = 0usize;
    let (mut rekeyed, cap) = (0usize, ef.saturating_mul(REKEY_EXPANSIONS_PER_EF));
    loop {
        // The nearest candidate not yet expanded; the pool is sorted, so it is the first.
        while cursor < len && pool.get(cursor).is_some_and(|c| c.expanded) {
            cursor = cursor.saturating_add(1);
        }
        let Some(c) = pool.get_mut(cursor) else { break };
        if cursor >= len || (rekeyed > 0 && rekeyed >= cap) {
            break;
        }
        c.expanded = true;
        let node = c.id;
        let n = store.links(node, level, w.links)?;
        if let Some(key) = store.expanded_key(node, level)? {
            pool_rekey(pool, len, cursor, key);
            rekeyed = rekeyed.saturating_add(1);
        }
        let links = w.links.get(..n).ok_or_else(|| store.invalid("hnsw link count past the buffer"))?;
        let mut batch = 0usize;
        for &nb in links {
            if !visited.test_and_set(nb) {
                if let Some(slot) = w.ids.get_mut(batch) {
                    *slot = nb;
                    batch = batch.saturating_add(1);
                }
            }
        }
        if batch == 0 {
            continue;
        }
        // While the batch's distances are computed, the record of the next candidate to
        // expand if none of the batch beats it (the pool's first unexpanded one after this).
        // From `cursor`: an expanded node moved to its exact key leaves the next one there.
        if let Some(next) = pool.get(cursor..len).and_then(|p| p.iter().find(|c| !c.expanded)) {
            store.prefetch_links(next.id, level);
        }
        let ids = w.ids.get(..batch).ok_or_else(|| store.invalid("hnsw id batch"))?;
        store.dist_query(ids, w.keys)?;
        for (&id, &key) in ids.iter().zip(w.keys.iter()) {
            if let Some(pos) = pool_insert(pool, &mut len, ef, Cand { key, id, expanded: false }) {
                cursor = cursor.min(pos);
            }
        }
    }
    Ok(len)
}

/// Starts a layer search from the ids in `pool[..len]` (their keys set): clears `visited`,
/// marks them, resets their `expanded` flags.
fn search_layer_from<S: Store + ?Sized, V: Visited + ?Sized>(
    store: &mut S,
    visited: &mut V,
    pool: &mut [Cand],
    len: usize,
    ef: usize,
    level: u8,
    w: &mut Work<'_>,
) -> Result<usize, S::Error> {
    visited.clear();
    for c in pool.iter_mut().take(len) {
        visited.test_and_set(c.id);
        c.expanded = false;
    }
    // Keep at most ef of the entries (they are sorted).
    let len = len.min(ef.max(1));
    search_layer(store, visited, pool, len, ef, level, w)
}

/// Greedy descent from the entry point `(entry, entry_level)` down to `stop_level + 1`, with
/// `ef = 1`. On return `pool[0]` is the closest node found. Returns 1.
fn descend<S: Store + ?Sized, V: Visited + ?Sized>(
    store: &mut S,
    visited: &mut V,
    pool: &mut [Cand],
    entry: u32,
    entry_level: u8,
    stop_level: u8,
    w: &mut Work<'_>,
) -> Result<usize, S::Error> {
    let mut key = [0u32; 1];
    store.dist_query(&[entry], &mut key)?;
    let first = pool.first_mut().ok_or_else(|| store.invalid("hnsw pool empty"))?;
    *first = Cand { key: key[0], id: entry, expanded: false };
    let mut len = 1;
    let mut level = entry_level;
    while level > stop_level {
        len = search_layer_from(store, visited, pool, len, 1, level, w)?;
        // level > stop_level >= 0: exact.
        level = level.saturating_sub(1);
    }
    Ok(len)
}

/// The candidate list of K-NN-SEARCH (Algorithm 5) for the store's current query: the
/// descent from `entry` through the upper levels, then SEARCH-LAYER at level 0 with a list of
/// `knn.ef` entries (raised to `knn.k`, capped by the pool). Leaves the list in
/// `scratch.pool[..n]`, nearest first, tombstones included, and returns `n`: what [`search`]
/// takes its results from, and what a caller re-ranks by other distances (the SQ8 walk of
/// `crate::vindex`). Errors: as [`search`].
pub fn search_candidates<S: Store + ?Sized, V: Visited + ?Sized>(
    store: &mut S,
    visited: &mut V,
    scratch: &mut Scratch<'_>,
    m: u32,
    entry: Option<(u32, u8)>,
    knn: Knn,
) -> Result<usize, S::Error> {
    let Knn { k, ef } = knn;
    let Some((ep, ep_level)) = entry else { return Ok(0) };
    let mut w = carve(store, scratch.work, m)?;
    let ef = ef.max(k).min(scratch.pool.len());
    let pool = &mut *scratch.pool;
    let len = descend(store, visited, pool, ep, ep_level, 0, &mut w)?;
    search_layer_from(store, visited, pool, len, ef, 0, &mut w)
}

/// K-NN-SEARCH (Algorithm 5): the `knn.k` nearest live nodes to the store's current query,
/// with candidate list size `knn.ef` (raised to `k`, capped by the pool). Writes `(key, id)`
/// pairs, nearest first, to `out` and returns how many (fewer than `k` when the graph is small
/// or full of tombstones, or `out` is shorter). `entry` is the entry point and its level,
/// `None` for an empty graph; `m` the graph's parameter (it sizes the scratch).
/// Errors: the store's, and [`Store::invalid`] for scratch smaller than [`Scratch::work_len`].
pub fn search<S: Store + ?Sized, V: Visited + ?Sized>(
    store: &mut S,
    visited: &mut V,
    scratch: &mut Scratch<'_>,
    m: u32,
    entry: Option<(u32, u8)>,
    knn: Knn,
    out: &mut [(u32, u32)],
) -> Result<usize, S::Error> {
    let len = search_candidates(store, visited, scratch, m, entry, knn)?;
    let k = knn.k;
    let mut n = 0;
    for c in scratch.pool.iter().take(len) {
        if n >= k || n >= out.len() {
            break;
        }
        if store.is_deleted(c.id)? {
            continue;
        }
        if let Some(o) = out.get_mut(n) {
            *o = (c.key, c.id);
            n = n.saturating_add(1);
        }
    }
    Ok(n)
}

/// Kept neighbours [`select_heuristic`] compares a candidate with at once: the width of the
/// distance kernels' widest pass (four vectors).
const HEURISTIC_CHUNK: usize = 4;

/// SELECT-NEIGHBORS-HEURISTIC (Algorithm 4, without keepPrunedConnections, as hnswlib):
/// from `w.cand[..n]` with keys `w.cand_keys[..n]` (distances to `base`, any order), keeps up
/// to `max` candidates, each closer to `base` than to every one kept before it. Writes them to
/// `w.sel` and returns how many. Tombstones and `base` itself are never kept.
fn select_heuristic<S: Store + ?Sized>(
    store: &mut S,
    base: Option<u32>,
    w: &mut Work<'_>,
    n: usize,
    max: usize,
) -> Result<usize, S::Error> {
    let Work { cand, cand_keys: keys, sel, pair, .. } = w;
    // Sort candidates by key (insertion sort: n <= 6m + 1).
    let n = n.min(cand.len()).min(keys.len());
    for i in 1..n {
        let mut j = i;
        while let Some(p) = j.checked_sub(1) {
            let (Some(&ka), Some(&kb)) = (keys.get(p), keys.get(j)) else { break };
            let (Some(&ia), Some(&ib)) = (cand.get(p), cand.get(j)) else { break };
            if (ka, ia) <= (kb, ib) {
                break;
            }
            // p < j < n: both in bounds of both slices.
            keys.swap(p, j);
            cand.swap(p, j);
            j = p;
        }
    }
    let sorted = cand.iter().copied().zip(keys.iter().copied()).take(n);
    select_sorted(store, base, sorted, sel, pair, max)
}

/// The selection of [`select_heuristic`] over candidates already sorted by `(key, id)`, given
/// as `(id, key)` pairs: each kept when no candidate kept before it is closer to it than
/// `base` is (its key). hnswlib gives the heuristic the whole candidate list of the insert's
/// search (`ef_construction` entries), and so does [`insert_plan`] straight from its pool: a
/// far candidate that none of the near ones covers is kept, a long link the graph needs (on
/// 3,000 pydocs-100k rows the 120th nearest of 141 was such a one).
fn select_sorted<S: Store + ?Sized>(
    store: &mut S,
    base: Option<u32>,
    sorted: impl Iterator<Item = (u32, u32)>,
    sel: &mut [u32],
    pair: &mut [u32],
    max: usize,
) -> Result<usize, S::Error> {
    let mut r = 0usize;
    let mut prev = None;
    for (e, d_eq) in sorted {
        if r >= max || r >= sel.len() {
            break;
        }
        let repeat = prev == Some(e);
        prev = Some(e);
        if Some(e) == base || repeat || store.is_deleted(e)? {
            continue;
        }
        let kept = sel.get(..r).ok_or_else(|| store.invalid("hnsw selection"))?;
        // Against the kept ones a few at a time, stopping at the first closer to e than e is
        // to base (as hnswlib stops): the first such is usually among the first kept (the
        // closest to base), and the distances not taken cannot change the answer. Measured on
        // 20,000 pydocs vectors: 60% of the pair distances of taking them all.
        let mut good = true;
        for part in kept.chunks(HEURISTIC_CHUNK) {
            store.dist_pair(e, part, pair)?;
            good = pair.iter().take(part.len()).all(|&d_er| d_er >= d_eq);
            if !good {
                break;
            }
        }
        if good {
            if let Some(s) = sel.get_mut(r) {
                *s = e;
                r = r.saturating_add(1);
            }
        }
    }
    Ok(r)
}

/// Adds `q` to the neighbours of `e` at `level`, shrinking the list with the heuristic when it
/// is full (Algorithm 1, lines 11-16).
fn connect_back<S: Store + ?Sized>(
    store: &mut S,
    p: &Params,
    e: u32,
    q: u32,
    level: u8,
    w: &mut Work<'_>,
) -> Result<(), S::Error> {
    let max = p.max_links(level);
    let n = store.links(e, level, w.cand)?;
    if w.cand.get(..n).is_some_and(|l| l.contains(&q)) {
        return Ok(());
    }
    let Some(s) = w.cand.get_mut(n) else { return Err(store.invalid("hnsw candidate buffer")) };
    *s = q;
    // `cand[n]` exists, so `n + 1` is at most its length.
    let total = n.saturating_add(1);
    let list = w.cand.get(..total).ok_or_else(|| store.invalid("hnsw candidate buffer"))?;
    if n < max {
        return store.set_links(e, level, list);
    }
    store.dist_pair(e, list, w.cand_keys)?;
    let r = select_heuristic(store, Some(e), w, total, max)?;
    store.set_links(e, level, w.sel.get(..r).ok_or_else(|| store.invalid("hnsw selection"))?)
}

/// Words of an insert plan ([`insert_plan`]) for parameter `m`: for every level
/// `0..=MAX_LEVEL`, a count and room for `m` ids (`17 (m + 1)`; saturating as [`m0`]).
pub const fn plan_len(m: u32) -> usize {
    (crate::format::superblock::MAX_LEVEL as usize).saturating_add(1).saturating_mul((m as usize).saturating_add(1))
}

/// Where level `lc`'s list lies in a plan: its count, then up to `m` ids.
fn plan_level(plan: &[u32], m: u32, lc: u8) -> Option<&[u32]> {
    let stride = (m as usize).checked_add(1)?;
    let at = stride.checked_mul(usize::from(lc))?;
    let list = plan.get(at..at.checked_add(stride)?)?;
    let (count, ids) = list.split_first()?;
    ids.get(..*count as usize)
}

/// The searches and selections of INSERT (Algorithm 1, lines 1-9 and the neighbour choice of
/// each level, without the connections): the neighbours of node `q` (whose vector is the
/// store's current query) at every level from `min(level, entry level)` down to 0, written to
/// `plan` ([`plan_len`] words). It only reads the graph, so it may run beside searches; the
/// connections ([`insert_apply`]) then need the graph alone, unchanged since. Running the two
/// back to back is exactly [`insert`]: the connections made at a level change only that
/// level's lists, which the searches of the levels below never read. Returns the top level of
/// the plan, `None` for an empty graph (`entry` `None`).
#[allow(clippy::too_many_arguments)]
pub fn insert_plan<S: Store + ?Sized, V: Visited + ?Sized>(
    store: &mut S,
    visited: &mut V,
    scratch: &mut Scratch<'_>,
    p: &Params,
    q: u32,
    level: u8,
    entry: Option<(u32, u8)>,
    plan: &mut [u32],
) -> Result<Option<u8>, S::Error> {
    let Some((ep, ep_level)) = entry else { return Ok(None) };
    let mut w = carve(store, scratch.work, p.m)?;
    let pool = &mut *scratch.pool;
    let ef = (p.ef_construction as usize).max(1).min(pool.len());
    let stride = (p.m as usize).saturating_add(1);
    let top = level.min(ep_level);
    let mut len = descend(store, visited, pool, ep, ep_level, level, &mut w)?;
    let mut lc = top;
    loop {
        len = search_layer_from(store, visited, pool, len, ef, lc, &mut w)?;
        // Neighbours of q among the ef found, all of them (the pool is sorted): M of them at
        // every level (paper, line 8).
        let found = pool.get(..len).ok_or_else(|| store.invalid("hnsw candidate pool"))?;
        let sorted = found.iter().map(|c| (c.id, c.key));
        let r = select_sorted(store, Some(q), sorted, w.sel, w.pair, p.m as usize)?;
        let at = stride.saturating_mul(usize::from(lc));
        let list = plan.get_mut(at..at.saturating_add(stride)).ok_or_else(|| store.invalid("hnsw plan buffer"))?;
        let (count, ids) = list.split_first_mut().ok_or_else(|| store.invalid("hnsw plan buffer"))?;
        let r = r.min(ids.len());
        for (d, s) in ids.iter_mut().zip(w.sel.iter()).take(r) {
            *d = *s;
        }
        // r <= m <= MAX_M: exact.
        *count = u32::try_from(r).unwrap_or(u32::MAX);
        let Some(below) = lc.checked_sub(1) else { break };
        lc = below;
    }
    Ok(Some(top))
}

/// The connections of an insert plan (Algorithm 1, lines 10-16 at every level, from the top
/// of the plan down): `q`'s own list, and `q` added to each chosen neighbour's list (shrunk
/// with the heuristic when full). `top` is [`insert_plan`]'s answer for the same `q`, `level`
/// and `entry`. Returns the new entry point: `(q, level)` when `q` is now the top node.
#[allow(clippy::too_many_arguments)]
pub fn insert_apply<S: Store + ?Sized>(
    store: &mut S,
    scratch: &mut Scratch<'_>,
    p: &Params,
    q: u32,
    level: u8,
    entry: Option<(u32, u8)>,
    top: Option<u8>,
    plan: &[u32],
) -> Result<Option<(u32, u8)>, S::Error> {
    let (Some((_, ep_level)), Some(top)) = (entry, top) else { return Ok(Some((q, level))) };
    let mut w = carve(store, scratch.work, p.m)?;
    let mut lc = top;
    loop {
        let chosen = plan_level(plan, p.m, lc).ok_or_else(|| store.invalid("hnsw plan"))?;
        store.set_links(q, lc, chosen)?;
        for &e in chosen {
            connect_back(store, p, e, q, lc, &mut w)?;
        }
        let Some(below) = lc.checked_sub(1) else { break };
        lc = below;
    }
    Ok(if level > ep_level { Some((q, level)) } else { None })
}

/// The choices of an insert plan made over an older graph (a batch of plans made at once over
/// one graph and applied one after the other, as a parallel build does): `peers` are the nodes
/// linked since the plan was made, `peer_level` gives their levels, and `entry` is the entry
/// point now. At every level `lc` from `min(level, entry's level)` down to 0, q's candidates
/// are the plan's list at `lc` (none above the plan's `top`) and the peers whose level reaches
/// `lc`; their distances to q (the store's current query) go through the heuristic, which
/// keeps up to `m`: q's list at `lc`, written to the store and copied into `chosen`
/// ([`plan_len`] words in a plan's layout: every level's count, then its ids; levels not
/// linked count 0). Each chosen `e` at level `lc` then gets q back by [`connect`]`(e, q, lc)`,
/// as in [`insert_apply`]. The choices read vectors and tombstone flags, never link lists, so
/// a batch's connections may all follow all of its choices (those to one node in the batch's
/// order): the graph is the one of choosing and connecting each insert in turn, as hnswlib's
/// concurrent inserts see each other through the lists as they are when they link. With no
/// peers and an unchanged entry, this and the connections are [`insert_apply`]. Returns the
/// new entry point: `(q, level)` when q is now the top node. Errors: `invalid` for a short
/// plan or `chosen`, or when the candidates of a level (the plan's up to `m`, then the peers)
/// overflow the candidate buffer: at most `5m + 1` peers.
#[allow(clippy::too_many_arguments)]
pub fn insert_choose_merged<S: Store + ?Sized>(
    store: &mut S,
    scratch: &mut Scratch<'_>,
    p: &Params,
    q: u32,
    level: u8,
    entry: Option<(u32, u8)>,
    top: Option<u8>,
    plan: &[u32],
    peers: &[u32],
    peer_level: impl Fn(u32) -> u8,
    chosen: &mut [u32],
) -> Result<Option<(u32, u8)>, S::Error> {
    let stride = (p.m as usize).saturating_add(1);
    let out = chosen.get_mut(..plan_len(p.m)).ok_or_else(|| store.invalid("hnsw chosen buffer"))?;
    out.fill(0);
    let Some((_, ep_level)) = entry else { return Ok(Some((q, level))) };
    let mut w = carve(store, scratch.work, p.m)?;
    let mut lc = level.min(ep_level);
    loop {
        let from_plan = match top {
            Some(t) if lc <= t => plan_level(plan, p.m, lc).ok_or_else(|| store.invalid("hnsw plan"))?,
            _ => &[],
        };
        let mut n = 0usize;
        let reaching = peers.iter().copied().filter(|&e| e != q && peer_level(e) >= lc);
        for e in from_plan.iter().copied().chain(reaching) {
            let c = w.cand.get_mut(n).ok_or_else(|| store.invalid("hnsw candidates of a merged plan"))?;
            *c = e;
            n = n.saturating_add(1);
        }
        let ids = w.cand.get(..n).ok_or_else(|| store.invalid("hnsw candidate buffer"))?;
        store.dist_query(ids, w.cand_keys)?;
        let r = select_heuristic(store, Some(q), &mut w, n, p.m as usize)?;
        let kept = w.sel.get(..r).ok_or_else(|| store.invalid("hnsw selection"))?;
        store.set_links(q, lc, kept)?;
        let at = stride.saturating_mul(usize::from(lc));
        let list = out.get_mut(at..at.saturating_add(stride)).ok_or_else(|| store.invalid("hnsw chosen buffer"))?;
        let (count, dst) = list.split_first_mut().ok_or_else(|| store.invalid("hnsw chosen buffer"))?;
        let dst = dst.get_mut(..r).ok_or_else(|| store.invalid("hnsw selection"))?;
        dst.copy_from_slice(kept);
        // r <= m <= MAX_M: exact.
        *count = u32::try_from(r).unwrap_or(u32::MAX);
        let Some(below) = lc.checked_sub(1) else { break };
        lc = below;
    }
    Ok(if level > ep_level { Some((q, level)) } else { None })
}

/// Adds `q` to the neighbours of `e` at `level`, shrinking the list with the heuristic when it
/// is full (Algorithm 1, lines 11-16): the connection back of a choice of
/// [`insert_choose_merged`]. It reads and writes `e`'s list at `level` (and `e`'s
/// level-0 head), and reads vectors and tombstone flags. Errors: `invalid` for a short
/// scratch; the store's.
pub fn connect<S: Store + ?Sized>(
    store: &mut S,
    scratch: &mut Scratch<'_>,
    p: &Params,
    e: u32,
    q: u32,
    level: u8,
) -> Result<(), S::Error> {
    let mut w = carve(store, scratch.work, p.m)?;
    connect_back(store, p, e, q, level, &mut w)
}

/// INSERT (Algorithm 1) of node `q`, whose vector is the store's current query and whose level
/// is `level`; its link lists must be empty. `entry` is the current entry point (`None` for an
/// empty graph). Returns the new entry point: `(q, level)` when `q` is now the top node.
/// [`insert_plan`] then [`insert_apply`], the plan in the scratch's plan area
/// ([`Scratch::split_plan`]).
pub fn insert<S: Store + ?Sized, V: Visited + ?Sized>(
    store: &mut S,
    visited: &mut V,
    scratch: &mut Scratch<'_>,
    p: &Params,
    q: u32,
    level: u8,
    entry: Option<(u32, u8)>,
) -> Result<Option<(u32, u8)>, S::Error> {
    let (mut s, plan) = scratch.split_plan(p.m).ok_or_else(|| store.invalid("hnsw scratch too small"))?;
    let top = insert_plan(store, visited, &mut s, p, q, level, entry, plan)?;
    insert_apply(store, &mut s, p, q, level, entry, top, plan)
}

/// Repairs the links of `node` at `level` after tombstones: the live neighbours, plus the live
/// neighbours of its deleted neighbours, go through the heuristic again. Returns whether the
/// list changed. Used by the purge that frees tombstones.
pub fn repair<S: Store + ?Sized>(
    store: &mut S,
    scratch: &mut Scratch<'_>,
    p: &Params,
    node: u32,
    level: u8,
) -> Result<bool, S::Error> {
    let mut w = carve(store, scratch.work, p.m)?;
    let n = store.links(node, level, w.links)?;
    let mut any_deleted = false;
    let mut total = 0usize;
    for i in 0..n {
        let Some(&nb) = w.links.get(i) else { break };
        if store.is_deleted(nb)? {
            any_deleted = true;
        } else if let Some(c) = w.cand.get_mut(total) {
            *c = nb;
            total = total.saturating_add(1);
        }
    }
    if !any_deleted {
        return Ok(false);
    }
    for i in 0..n {
        let Some(&nb) = w.links.get(i) else { break };
        if !store.is_deleted(nb)? {
            continue;
        }
        let k = store.links(nb, level, w.ids)?;
        for &x in w.ids.get(..k).ok_or_else(|| store.invalid("hnsw link count past the buffer"))? {
            if total >= w.cand.len() {
                break;
            }
            if x == node || store.is_deleted(x)? || w.cand.get(..total).is_some_and(|c| c.contains(&x)) {
                continue;
            }
            if let Some(c) = w.cand.get_mut(total) {
                *c = x;
                total = total.saturating_add(1);
            }
        }
    }
    let cand = w.cand.get(..total).ok_or_else(|| store.invalid("hnsw candidate buffer"))?;
    store.dist_pair(node, cand, w.cand_keys)?;
    let r = select_heuristic(store, Some(node), &mut w, total, p.max_links(level))?;
    store.set_links(node, level, w.sel.get(..r).ok_or_else(|| store.invalid("hnsw selection"))?)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation
    )]

    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    /// A store of `n` nodes whose pair distances are a symmetric matrix of keys; every
    /// `dead`-th node is a tombstone. Counts the pair distances taken.
    struct Matrix {
        n: usize,
        keys: Vec<u32>,
        dead: usize,
        taken: usize,
    }

    impl Matrix {
        fn key(&self, a: u32, b: u32) -> u32 {
            self.keys[a as usize * self.n + b as usize]
        }
    }

    impl Store for Matrix {
        type Error = &'static str;
        fn dist_query(&mut self, _: &[u32], _: &mut [u32]) -> Result<(), Self::Error> {
            Err("no query")
        }
        fn dist_pair(&mut self, a: u32, ids: &[u32], keys: &mut [u32]) -> Result<(), Self::Error> {
            for (k, &id) in keys.iter_mut().zip(ids) {
                *k = self.key(a, id);
            }
            self.taken += ids.len();
            Ok(())
        }
        fn links(&mut self, _: u32, _: u8, _: &mut [u32]) -> Result<usize, Self::Error> {
            Ok(0)
        }
        fn set_links(&mut self, _: u32, _: u8, _: &[u32]) -> Result<(), Self::Error> {
            Ok(())
        }
        fn is_deleted(&mut self, node: u32) -> Result<bool, Self::Error> {
            Ok(self.dead > 0 && node as usize % self.dead == 0)
        }
        fn invalid(&self, what: &'static str) -> Self::Error {
            what
        }
    }

    /// A query's walk over a graph where node `i` links to `i * 8 + 1 ..= i * 8 + 8` modulo
    /// `n` (a tree as far as the walks here go): every node found gets the key `code` (a distance the
    /// codes underestimate), every node expanded the key `exact` from
    /// [`Store::expanded_key`] (or none). Counts the expansions.
    struct Tree {
        n: u32,
        code: u32,
        exact: Option<u32>,
        expanded: usize,
    }

    impl Store for Tree {
        type Error = &'static str;
        fn dist_query(&mut self, ids: &[u32], keys: &mut [u32]) -> Result<(), Self::Error> {
            for (k, &id) in keys.iter_mut().zip(ids) {
                *k = self.code + id % 3;
            }
            Ok(())
        }
        fn dist_pair(&mut self, _: u32, _: &[u32], _: &mut [u32]) -> Result<(), Self::Error> {
            Err("no pairs")
        }
        fn links(&mut self, node: u32, _: u8, out: &mut [u32]) -> Result<usize, Self::Error> {
            self.expanded += 1;
            let first = node * 8 + 1;
            let ids = (first..first + 8).map(|i| i % self.n);
            let mut c = 0;
            for (o, i) in out.iter_mut().zip(ids) {
                *o = i;
                c += 1;
            }
            Ok(c)
        }
        fn set_links(&mut self, _: u32, _: u8, _: &[u32]) -> Result<(), Self::Error> {
            Ok(())
        }
        fn is_deleted(&mut self, _: u32) -> Result<bool, Self::Error> {
            Ok(false)
        }
        fn expanded_key(&mut self, node: u32, _: u8) -> Result<Option<u32>, Self::Error> {
            Ok(self.exact.map(|e| e + node % 5))
        }
        fn invalid(&self, what: &'static str) -> Self::Error {
            what
        }
    }

    /// A walk that keeps expanded nodes by their exact keys, each above every code distance
    /// found, stops after [`REKEY_EXPANSIONS_PER_EF`] expansions per entry of its list (without
    /// the cap it would expand the whole graph), and leaves its list sorted with the expanded
    /// nodes' exact keys; without exact keys the same walk stops once its list is expanded.
    #[test]
    fn exact_keys_bound_the_walk() {
        let (ef, n) = (16usize, 100_000u32);
        let run = |exact: Option<u32>| {
            let mut store = Tree { n, code: 10, exact, expanded: 0 };
            let mut visited = EpochVisited::new(vec![0u16; n as usize]);
            let mut pool = vec![Cand { key: 0, id: 0, expanded: false }; 64];
            let mut work = vec![0u32; Scratch::work_len(4)];
            let mut scratch = Scratch { pool: &mut pool, work: &mut work };
            let len =
                search_candidates(&mut store, &mut visited, &mut scratch, 4, Some((0, 0)), Knn { k: 4, ef }).unwrap();
            let list = scratch.pool[..len].to_vec();
            (store.expanded, list)
        };
        let (plain, list) = run(None);
        assert!(plain >= ef && plain <= 2 * ef, "{plain} expansions");
        assert!(list.iter().all(|c| c.expanded && c.key < 20));
        let (capped, list) = run(Some(1000));
        // The descent's expansion of the entry point comes first (level 0 here: none).
        assert_eq!(capped, ef * REKEY_EXPANSIONS_PER_EF, "{capped} expansions");
        assert!(list.windows(2).all(|w| (w[0].key, w[0].id) <= (w[1].key, w[1].id)), "{list:?}");
        let rekeyed = list.iter().filter(|c| c.expanded).count();
        assert!(list.iter().filter(|c| c.expanded).all(|c| c.key == 1000 + c.id % 5));
        assert!(list.iter().filter(|c| !c.expanded).all(|c| c.key < 20) && rekeyed < ef);
    }

    proptest! {
        /// pool_rekey moves one entry of a sorted list to where its new key sorts, keeping the
        /// others in order and every id's flag.
        #[test]
        fn rekey_keeps_the_list_sorted(
            keys in proptest::collection::vec(0u32..40, 1..60),
            pick in 0usize..1000,
            key in 0u32..45,
        ) {
            let mut pool: Vec<Cand> =
                keys.iter().enumerate().map(|(i, &k)| Cand { key: k, id: i as u32, expanded: i % 3 == 0 }).collect();
            pool.sort_unstable_by_key(|c| (c.key, c.id));
            let len = pool.len();
            pool.push(Cand { key: 0, id: 999, expanded: false });
            let i = pick % len;
            let mut want = pool[..len].to_vec();
            want[i].key = key;
            want.sort_unstable_by_key(|c| (c.key, c.id));
            pool_rekey(&mut pool, len, i, key);
            prop_assert_eq!(&pool[..len], &want[..]);
            prop_assert_eq!(pool[len].id, 999);
        }

        /// select_heuristic, which compares a candidate with the kept ones a few at a time and
        /// stops at the first closer to it than the base, keeps what Algorithm 4 keeps taking
        /// every distance: the candidates in (distance, id) order, each kept when no one kept
        /// before it is closer to it than the base (tombstones, the base and repeats never).
        #[test]
        fn heuristic_keeps_what_algorithm_4_keeps(
            n in 2usize..60,
            picks in proptest::collection::vec(0usize..1000, 1..97),
            raw in proptest::collection::vec(0u32..50, 3600),
            max in 1usize..20,
            dead in 0usize..7,
        ) {
            let mut keys = vec![0u32; n * n];
            for a in 0..n {
                for b in 0..a {
                    let k = raw[(a * n + b) % raw.len()];
                    keys[a * n + b] = k;
                    keys[b * n + a] = k;
                }
            }
            let mut store = Matrix { n, keys, dead, taken: 0 };
            let base = 0u32;
            let cand: Vec<u32> = picks.iter().map(|&p| (p % n) as u32).collect();
            let m = 16u32;
            let mut work = vec![0u32; Scratch::work_len(m)];
            let mut w = carve(&store, &mut work, m).unwrap();
            let total = cand.len().min(w.cand.len());
            for (i, &c) in cand.iter().take(total).enumerate() {
                w.cand[i] = c;
                w.cand_keys[i] = store.key(base, c);
            }
            let max = max.min(w.sel.len());
            let r = select_heuristic(&mut store, Some(base), &mut w, total, max).unwrap();
            let got = w.sel[..r].to_vec();

            let mut order: Vec<(u32, u32)> = cand[..total].iter().map(|&c| (store.key(base, c), c)).collect();
            order.sort_unstable();
            let (mut want, mut all_pairs): (Vec<u32>, usize) = (Vec::new(), 0);
            for (i, &(d_eq, e)) in order.iter().enumerate() {
                if want.len() >= max {
                    break;
                }
                let repeat = i > 0 && order[i - 1].1 == e;
                if e == base || repeat || (dead > 0 && e as usize % dead == 0) {
                    continue;
                }
                all_pairs += want.len();
                if want.iter().all(|&k| store.key(e, k) >= d_eq) {
                    want.push(e);
                }
            }
            prop_assert_eq!(got, want);
            prop_assert!(store.taken <= all_pairs, "{} pair distances, {} when taking all", store.taken, all_pairs);
        }
    }
}
