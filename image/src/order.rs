//! The slot order of a bulk load (`mkfs.vexfs --import`, [`crate::bulk`]): which vector slot
//! each row's embedding takes, so that the rows sharing a 4 KiB block of the vector regions are
//! near one another.
//!
//! Why: a search under a memory budget (`index_mem=`) reads a block for every vector, code or
//! node record it needs that the cache does not hold. In row order a block's other slots are
//! rows picked at random, of no use to the search that read it; in this order they are the
//! row's near neighbours, which the same search is likely to need next (the candidates around
//! the query, the final ones re-ranked, the map entries of the results). Host model
//! (`bench_reads`, 100,000 rows, budget as in the report): block reads per query at the same
//! recall@10 fall by about a third for SQ8 at 0.35x the raw vectors and by 12-17% for PQ over
//! node records at a tenth of the float32 index, on pydocs and on glove-100 alike.
//!
//! How: recursive bisection. A set of rows is split at the median of its projection on an
//! approximate principal direction (two power iterations from a seeded random direction, on a
//! sample of at most 2,048 of the rows, as in a PCA tree), the halves a whole number of `leaf`
//! rows, down to `leaf` rows; the leaves in tree order give slots, so that the locality holds
//! at every scale (a block of node records, of codes, of map entries). The vectors are still
//! linked into the graph in row order ([`crate::writer::Writer::set_link_order`]): an HNSW
//! graph inserted in a sorted order loses its long links (linked in slot order, recall@10 at
//! ef 72 on pydocs-1m fell from 0.955 to 0.932). The same rows and seed give the same order,
//! so an interrupted import resumes into the slots it began with.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Power iterations per split.
const POWER_ITERATIONS: usize = 2;

/// Rows a split's direction is estimated from at most.
const SAMPLE_ROWS: usize = 2048;

/// Sets of more rows than this are split on a thread of their own (while threads remain).
const PARALLEL_ROWS: usize = 20_000;

/// The inverse of [`slot_order`]'s result: the row of every slot. `None` when `slot` is not a
/// permutation of `0..slot.len()` (a slot out of range or taken twice).
pub fn rows_by_slot(slot: &[u32]) -> Option<Vec<u32>> {
    let mut rows = vec![u32::MAX; slot.len()];
    for (row, &s) in slot.iter().enumerate() {
        let r = rows.get_mut(s as usize)?;
        if *r != u32::MAX {
            return None;
        }
        *r = u32::try_from(row).ok()?;
    }
    Some(rows)
}

/// The slot of every row: `rows` holds `n` rows of `dim` components (`n * dim` floats, finite);
/// returns `slot[row]`, a permutation of `0..n`. `leaf` rows (at least 1: the records or vectors
/// of one 4 KiB block) take consecutive slots, each leaf rows near one another; `seed` fixes
/// the random directions; `threads` (at least 1) split the work. Memory: the
/// result and `n` row indices, beside `rows`.
pub fn slot_order(rows: &[f32], dim: usize, leaf: usize, seed: u64, threads: usize) -> Vec<u32> {
    let n = rows.len().checked_div(dim).unwrap_or(0);
    let leaf = leaf.max(1);
    let mut ids: Vec<u32> = (0..n).map(|i| u32::try_from(i).unwrap_or(u32::MAX)).collect();
    bisect(rows, dim, &mut ids, leaf, seed, threads.max(1));
    let mut slot = vec![0u32; n];
    for (pos, &row) in ids.iter().enumerate() {
        if let Some(s) = slot.get_mut(row as usize) {
            *s = u32::try_from(pos).unwrap_or(u32::MAX);
        }
    }
    slot
}

/// Orders `ids` (rows of `rows`) in place by recursive bisection (the module's docs).
fn bisect(rows: &[f32], dim: usize, ids: &mut [u32], leaf: usize, seed: u64, threads: usize) {
    if ids.len() <= leaf {
        return;
    }
    let dir = direction(rows, dim, ids, seed);
    let proj = |id: u32| dot(row(rows, dim, id), &dir);
    // The lower half: a whole number of leaves, near half of the rows.
    let half = (ids.len() / 2).div_ceil(leaf).saturating_mul(leaf).clamp(1, ids.len() - 1);
    let mut keyed: Vec<(f32, u32)> = ids.iter().map(|&id| (proj(id), id)).collect();
    keyed.select_nth_unstable_by(half, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (slot, (_, id)) in ids.iter_mut().zip(keyed) {
        *slot = id;
    }
    let (lo, hi) = ids.split_at_mut(half);
    let (s_lo, s_hi) = (seed.wrapping_mul(6364136223846793005).wrapping_add(1), seed.rotate_left(17) ^ 0x9e37_79b9);
    if threads > 1 && lo.len().min(hi.len()) >= PARALLEL_ROWS {
        let (t_lo, t_hi) = (threads / 2, threads - threads / 2);
        std::thread::scope(|s| {
            s.spawn(|| bisect(rows, dim, lo, leaf, s_lo, t_lo));
            bisect(rows, dim, hi, leaf, s_hi, t_hi);
        });
    } else {
        bisect(rows, dim, lo, leaf, s_lo, 1);
        bisect(rows, dim, hi, leaf, s_hi, 1);
    }
}

/// Row `id` of `rows` (empty past the end).
fn row(rows: &[f32], dim: usize, id: u32) -> &[f32] {
    let at = (id as usize).saturating_mul(dim);
    rows.get(at..at.saturating_add(dim)).unwrap_or(&[])
}

/// `a . b` over their common length, in 8 independent sums (a single running sum is one
/// dependent add per component, not vectorised: it made the order 3x slower).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// An approximate principal direction of the rows `ids` (unit length, `dim` components):
/// [`POWER_ITERATIONS`] steps of the power method on their covariance from a random direction,
/// on at most [`SAMPLE_ROWS`] of them (evenly spaced), so that a split costs about one pass
/// over its rows (the projections) rather than six.
fn direction(rows: &[f32], dim: usize, ids: &[u32], seed: u64) -> Vec<f32> {
    let step = ids.len().div_ceil(SAMPLE_ROWS).max(1);
    let sample: Vec<u32> = ids.iter().step_by(step).copied().collect();
    let ids = &sample[..];
    let mut mean = vec![0f32; dim];
    for &id in ids {
        mean.iter_mut().zip(row(rows, dim, id)).for_each(|(m, x)| *m += x);
    }
    let inv = 1.0 / ids.len().max(1) as f32;
    mean.iter_mut().for_each(|m| *m *= inv);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let mut next = vec![0f32; dim];
    for _ in 0..POWER_ITERATIONS {
        next.iter_mut().for_each(|x| *x = 0.0);
        // C v = sum over rows of ((x - mean) . v) (x - mean).
        let mv = dot(&mean, &v);
        for &id in ids {
            let x = row(rows, dim, id);
            let p = dot(x, &v) - mv;
            next.iter_mut().zip(x.iter().zip(&mean)).for_each(|(o, (xi, mi))| *o += p * (xi - mi));
        }
        let norm = dot(&next, &next).sqrt();
        if !(norm > 0.0 && norm.is_finite()) {
            break;
        }
        v.iter_mut().zip(&next).for_each(|(a, b)| *a = b / norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l2(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    /// `n` rows of `dim` components: 1/8 of them around each of 8 random centres, in a
    /// shuffled row order.
    fn clustered(n: usize, dim: usize) -> Vec<f32> {
        let mut rng = SmallRng::seed_from_u64(3);
        let centres: Vec<Vec<f32>> = (0..8).map(|_| (0..dim).map(|_| rng.gen_range(-4.0..4.0)).collect()).collect();
        (0..n)
            .flat_map(|_| {
                let c = &centres[rng.gen_range(0..8)];
                c.iter().map(|x| x + rng.gen_range(-0.5f32..0.5)).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn inverse_of_an_order() {
        assert_eq!(rows_by_slot(&[2, 0, 1]), Some(vec![1, 2, 0]));
        assert_eq!(rows_by_slot(&[]), Some(vec![]));
        assert_eq!(rows_by_slot(&[0, 0, 1]), None, "a slot twice");
        assert_eq!(rows_by_slot(&[0, 3, 1]), None, "a slot past the rows");
    }

    #[test]
    fn a_permutation_whose_blocks_hold_near_rows() {
        let (n, dim, leaf) = (3001, 16, 3);
        let rows = clustered(n, dim);
        let slot = slot_order(&rows, dim, leaf, 11, 1);
        let mut seen = vec![false; n];
        for &s in &slot {
            assert!(!std::mem::replace(&mut seen[s as usize], true), "slot {s} twice");
        }
        // Rows by slot; the mean distance within a block against that of rows at random.
        let by_slot: Vec<usize> = rows_by_slot(&slot).unwrap().iter().map(|&r| r as usize).collect();
        let at = |r: usize| &rows[r * dim..(r + 1) * dim];
        let pairs = |f: &dyn Fn(usize) -> (usize, usize)| {
            let k = n / leaf;
            (0..k)
                .map(|b| {
                    let (a, c) = f(b);
                    l2(at(a), at(c))
                })
                .sum::<f32>()
                / k as f32
        };
        let in_block = pairs(&|b| (by_slot[b * leaf], by_slot[b * leaf + leaf - 1]));
        let apart = pairs(&|b| (by_slot[b * leaf], by_slot[(b * leaf + n / 2) % n]));
        assert!(in_block * 4.0 < apart, "within a block {in_block}, apart {apart}");
        // The same input gives the same order on any threads; another seed another one.
        assert_eq!(slot, slot_order(&rows, dim, leaf, 11, 4));
        assert_ne!(slot, slot_order(&rows, dim, leaf, 12, 1));
    }

    /// Past `2 * PARALLEL_ROWS` rows the halves are split on threads: the same order.
    #[test]
    fn threads_do_not_change_the_order() {
        let (n, dim) = (2 * PARALLEL_ROWS + 999, 4);
        let rows = clustered(n, dim);
        assert_eq!(slot_order(&rows, dim, 2, 5, 1), slot_order(&rows, dim, 2, 5, 3));
    }

    #[test]
    fn small_and_degenerate_inputs() {
        assert!(slot_order(&[], 4, 2, 1, 1).is_empty());
        assert_eq!(slot_order(&[1.0, 2.0], 2, 2, 1, 1), vec![0]);
        // Identical rows: still a permutation.
        let slot = slot_order(&[0.5; 40], 4, 3, 1, 2);
        let mut s = slot.clone();
        s.sort_unstable();
        assert_eq!(s, (0..10).collect::<Vec<u32>>());
    }
}
