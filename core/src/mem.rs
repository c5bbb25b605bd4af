//! An in-memory HNSW index over the same core algorithms (userspace only): used by the tests,
//! the benchmarks (against hnswlib and faiss) and the tools. Layout mirrors the on-disk one:
//! vectors packed by slot, level-0 link lists of `2m` slots, upper-level lists of `m` slots
//! for the slots whose [`slot_level`] is above 0.

use crate::format::superblock::Metric;
use crate::format::vector::slot_level;
use crate::hnsw::{self, Cand, EpochVisited, Knn, Params, Scratch, Store};
use std::vec;
use std::vec::Vec;

/// Batch distance function: keys of `metric` distances from `q` to each vector of `vecs`.
pub type DistFn = fn(metric: Metric, q: &[f32], vecs: &[&[f32]], out: &mut [u32]);

/// The graph and vectors of an in-memory index.
pub struct MemGraph {
    /// Components per vector.
    pub dim: usize,
    /// The distance the keys order by.
    pub metric: Metric,
    /// HNSW `m` (level 0 keeps `2m` links).
    pub m: u32,
    seed: u64,
    dist: DistFn,
    vectors: Vec<f32>,
    levels: Vec<u8>,
    deleted: Vec<bool>,
    /// Per node: `1 + 2m` u32 (count, links).
    level0: Vec<u32>,
    /// Per node with level > 0: index of its first upper list in `upper`.
    upper_first: Vec<u32>,
    /// Upper lists of `1 + m` u32 (count, links).
    upper: Vec<u32>,
    query: Vec<f32>,
}

/// Errors of the in-memory store (only caller bugs can cause them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemError(pub &'static str);

impl MemGraph {
    fn vector(&self, id: u32) -> &[f32] {
        let s = id as usize * self.dim;
        self.vectors.get(s..s + self.dim).unwrap_or(&[])
    }
    fn list(&self, node: u32, level: u8) -> Option<(usize, usize)> {
        let m0 = 2 * self.m as usize;
        if level == 0 {
            return Some((node as usize * (1 + m0), m0));
        }
        if level > *self.levels.get(node as usize)? {
            return None;
        }
        let first = *self.upper_first.get(node as usize)? as usize;
        Some(((first + level as usize - 1) * (1 + self.m as usize), self.m as usize))
    }
}

impl Store for MemGraph {
    type Error = MemError;
    fn dist_query(&mut self, ids: &[u32], keys: &mut [u32]) -> Result<(), MemError> {
        self.dist_to(None, ids, keys)
    }
    fn dist_pair(&mut self, a: u32, ids: &[u32], keys: &mut [u32]) -> Result<(), MemError> {
        self.dist_to(Some(a), ids, keys)
    }
    fn links(&mut self, node: u32, level: u8, out: &mut [u32]) -> Result<usize, MemError> {
        let Some((off, _)) = self.list(node, level) else { return Ok(0) };
        let n = *self.level0_or_upper(level).get(off).ok_or(MemError("link list"))? as usize;
        let src = self.level0_or_upper(level).get(off + 1..off + 1 + n).ok_or(MemError("link list"))?;
        out.get_mut(..n).ok_or(MemError("links buffer"))?.copy_from_slice(src);
        Ok(n)
    }
    fn set_links(&mut self, node: u32, level: u8, links: &[u32]) -> Result<(), MemError> {
        let (off, cap) = self.list(node, level).ok_or(MemError("set_links level"))?;
        if links.len() > cap {
            return Err(MemError("too many links"));
        }
        let arr = if level == 0 { &mut self.level0 } else { &mut self.upper };
        *arr.get_mut(off).ok_or(MemError("link list"))? = links.len() as u32;
        arr.get_mut(off + 1..off + 1 + links.len()).ok_or(MemError("link list"))?.copy_from_slice(links);
        Ok(())
    }
    fn is_deleted(&mut self, node: u32) -> Result<bool, MemError> {
        Ok(self.deleted.get(node as usize).copied().unwrap_or(true))
    }
    fn invalid(&self, what: &'static str) -> MemError {
        MemError(what)
    }
}

impl MemGraph {
    /// Distances from the query (or node `a`) to `ids`, in batches, without allocating.
    fn dist_to(&self, a: Option<u32>, ids: &[u32], keys: &mut [u32]) -> Result<(), MemError> {
        const B: usize = 64;
        let q = match a {
            Some(a) => self.vector(a),
            None => &self.query,
        };
        let mut vecs: [&[f32]; B] = [&[]; B];
        for (chunk, out) in ids.chunks(B).zip(keys.chunks_mut(B)) {
            for (v, &i) in vecs.iter_mut().zip(chunk) {
                *v = self.vector(i);
            }
            let n = chunk.len();
            let (Some(v), Some(o)) = (vecs.get(..n), out.get_mut(..n)) else { break };
            (self.dist)(self.metric, q, v, o);
        }
        Ok(())
    }

    fn level0_or_upper(&self, level: u8) -> &[u32] {
        if level == 0 {
            &self.level0
        } else {
            &self.upper
        }
    }
}

/// An HNSW index in memory: graph plus scratch.
pub struct MemIndex {
    /// The graph and the vectors.
    pub g: MemGraph,
    /// `m` and `ef_construction`.
    pub params: Params,
    /// The entry point and its level; `None` while the index is empty.
    pub entry: Option<(u32, u8)>,
    visited: EpochVisited<Vec<u16>>,
    pool: Vec<Cand>,
    work: Vec<u32>,
}

impl MemIndex {
    /// An empty index of `dim`-dimensional vectors. Levels come from `slot_level(seed, id)`.
    pub fn new(dim: usize, metric: Metric, m: u32, ef_construction: u32, seed: u64, dist: DistFn) -> Self {
        MemIndex {
            g: MemGraph {
                dim,
                metric,
                m,
                seed,
                dist,
                vectors: Vec::new(),
                levels: Vec::new(),
                deleted: Vec::new(),
                level0: Vec::new(),
                upper_first: Vec::new(),
                upper: Vec::new(),
                query: Vec::new(),
            },
            params: Params { m, ef_construction },
            entry: None,
            visited: EpochVisited::new(Vec::new()),
            pool: Vec::new(),
            work: vec![0; Scratch::work_len(m)],
        }
    }

    /// Number of vectors added (including deleted ones).
    pub fn len(&self) -> usize {
        self.g.levels.len()
    }

    /// Whether no vector was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a vector (`dim` components) with the next id; returns the id.
    pub fn add(&mut self, v: &[f32]) -> Result<u32, MemError> {
        if v.len() != self.g.dim {
            return Err(MemError("dimension"));
        }
        let id = self.g.levels.len() as u32;
        let level = slot_level(self.g.seed, id, self.g.m, 16);
        self.g.vectors.extend_from_slice(v);
        self.g.levels.push(level);
        self.g.deleted.push(false);
        let m0 = 2 * self.g.m as usize;
        self.g.level0.extend(std::iter::repeat(0).take(1 + m0));
        let first = (self.g.upper.len() / (1 + self.g.m as usize)) as u32;
        self.g.upper_first.push(first);
        self.g.upper.extend(std::iter::repeat(0).take(level as usize * (1 + self.g.m as usize)));
        self.visited.grow(id as usize + 1);
        let need = self.params.ef_construction as usize;
        if self.pool.len() < need {
            self.pool.resize(need, Cand::default());
        }
        self.g.query.clear();
        self.g.query.extend_from_slice(v);
        let mut s = Scratch { pool: &mut self.pool, work: &mut self.work };
        if let Some(e) = hnsw::insert(&mut self.g, &mut self.visited, &mut s, &self.params, id, level, self.entry)? {
            self.entry = Some(e);
        }
        Ok(id)
    }

    /// The `k` nearest ids to `q` with candidate list `ef`: `(key, id)` nearest first.
    pub fn search(&mut self, q: &[f32], k: usize, ef: usize) -> Result<Vec<(u32, u32)>, MemError> {
        if q.len() != self.g.dim {
            return Err(MemError("dimension"));
        }
        let need = ef.max(k);
        if self.pool.len() < need {
            self.pool.resize(need, Cand::default());
        }
        self.g.query.clear();
        self.g.query.extend_from_slice(q);
        let mut out = vec![(0u32, 0u32); k];
        let mut s = Scratch { pool: &mut self.pool, work: &mut self.work };
        let m = self.g.m;
        let n = hnsw::search(&mut self.g, &mut self.visited, &mut s, m, self.entry, Knn { k, ef }, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Marks `id` deleted (a tombstone: it still routes searches).
    pub fn mark_deleted(&mut self, id: u32) {
        if let Some(d) = self.g.deleted.get_mut(id as usize) {
            *d = true;
        }
    }

    /// Repairs every live node's links around tombstones and picks a live entry point, after
    /// which no live node links to a deleted one. Returns the lists changed.
    pub fn purge(&mut self) -> Result<usize, MemError> {
        let mut changed = 0;
        for id in 0..self.len() as u32 {
            if self.g.deleted.get(id as usize).copied().unwrap_or(true) {
                continue;
            }
            let top = self.g.levels.get(id as usize).copied().unwrap_or(0);
            for level in 0..=top {
                let mut s = Scratch { pool: &mut self.pool, work: &mut self.work };
                if hnsw::repair(&mut self.g, &mut s, &self.params, id, level)? {
                    changed += 1;
                }
            }
        }
        if let Some((e, _)) = self.entry {
            if self.g.deleted.get(e as usize).copied().unwrap_or(true) {
                self.entry = (0..self.len() as u32)
                    .filter(|&i| !self.g.deleted.get(i as usize).copied().unwrap_or(true))
                    .max_by_key(|&i| (self.g.levels.get(i as usize).copied().unwrap_or(0), std::cmp::Reverse(i)))
                    .map(|i| (i, self.g.levels.get(i as usize).copied().unwrap_or(0)));
            }
        }
        Ok(changed)
    }

    /// Links out of live nodes that point at deleted nodes (0 after [`Self::purge`]).
    pub fn dangling_links(&mut self) -> usize {
        let mut n = 0;
        let mut buf = vec![0u32; 2 * self.g.m as usize];
        for id in 0..self.len() as u32 {
            if self.g.deleted.get(id as usize).copied().unwrap_or(true) {
                continue;
            }
            let top = self.g.levels.get(id as usize).copied().unwrap_or(0);
            for level in 0..=top {
                let k = self.g.links(id, level, &mut buf).unwrap_or(0);
                n += buf.iter().take(k).filter(|&&x| self.g.deleted.get(x as usize).copied().unwrap_or(true)).count();
            }
        }
        n
    }

    /// Bytes held for vectors, links and levels (the index's memory, without scratch).
    pub fn memory_bytes(&self) -> usize {
        self.g.vectors.len() * 4 + self.g.level0.len() * 4 + self.g.upper.len() * 4 + self.g.levels.len() * 6
    }
}

/// Distance keys from the C kernels (`core::distance`), with the implementation the kernel
/// would pick on this CPU: the same bits as the kernel module computes.
pub fn c_dist(metric: Metric, q: &[f32], vecs: &[&[f32]], out: &mut [u32]) {
    use std::sync::OnceLock;
    static IMPL: OnceLock<crate::distance::Impl> = OnceLock::new();
    let imp = *IMPL.get_or_init(crate::distance::best_impl);
    if let Err(e) = crate::distance::distance_keys(imp, metric as u32, q, vecs, out) {
        panic!("distance: {e}");
    }
}

/// Scalar Rust distance keys (the f64-free reference used until the C kernels are wired):
/// l2 squared, cosine `1 - cos`, ip `1 - dot`, as f32, mapped to keys.
pub fn rust_scalar_dist(metric: Metric, q: &[f32], vecs: &[&[f32]], out: &mut [u32]) {
    for (o, v) in out.iter_mut().zip(vecs) {
        let d = match metric {
            Metric::L2 => q.iter().zip(v.iter()).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
            Metric::InnerProduct => 1.0 - q.iter().zip(v.iter()).map(|(a, b)| a * b).sum::<f32>(),
            Metric::Cosine => {
                let dot: f32 = q.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
                let na: f32 = q.iter().map(|a| a * a).sum();
                let nb: f32 = v.iter().map(|a| a * a).sum();
                if na == 0.0 || nb == 0.0 {
                    1.0
                } else {
                    1.0 - dot / (na * nb).sqrt()
                }
            }
        };
        *o = key_of(d);
    }
}

/// Order-preserving key of an f32 (the kernel's mapping, [`crate::distance::key_from_bits`]).
pub fn key_of(d: f32) -> u32 {
    crate::distance::key_from_bits(d.to_bits())
}

/// The f32 of a key.
pub fn f32_of_key(k: u32) -> f32 {
    f32::from_bits(crate::distance::bits_from_key(k))
}
