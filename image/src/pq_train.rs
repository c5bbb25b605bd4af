//! PQ codebook training: the 256 centroids of each of the `m` sub-quantisers of a product
//! quantiser (Jégou, Douze, Schmid, "Product quantization for nearest neighbor search", TPAMI
//! 2011), trained as FAISS's `ProductQuantizer::train` does: k-means (Lloyd) on each sub-space
//! separately, on a seeded sample of the vectors, an empty cluster re-seeded by splitting the
//! largest one. The codebook's layout and use are described in `vexfs_core::pq`.
//!
//! Userspace only: the arithmetic is float32 (the centroid sums float64), and the result is a
//! function of `(vectors, dim, m, seed)` only, bit for bit: every random choice comes from a
//! SplitMix64 generator of this module (no dependence on `rand`'s versions or on the word size),
//! each sub-quantiser is trained from its own generator in a fixed order of operations, and the
//! threads only share out the sub-quantisers.

use std::collections::BTreeSet;

/// Centroids per sub-quantiser (codes are one byte per sub-quantiser).
pub const CENTROIDS: usize = 256;

/// Training vectors at most: 64 per centroid (16384 rows). With more vectors a seeded sample
/// of this many rows, drawn without replacement, is trained on. FAISS warns below 39 points per
/// centroid and samples down to 256. Measured on clustered synthetic 1,000,000 x 384 vectors
/// with `m = 48` (error on held-out vectors, time of [`train`]): 64 per centroid and 16
/// iterations, 2.5 s; 128 and 16, 2% less error for 4.7 s; FAISS's 256 and 25 iterations, 4%
/// less error for 15 s. The codes only steer searches (they re-rank with the full vectors).
pub const MAX_TRAIN: usize = 64 * CENTROIDS;

/// Lloyd iterations at most (fewer when the assignment stops changing, a fixed point).
pub const ITERATIONS: usize = 16;

/// Relative perturbation of a split centroid (FAISS's `EPS`, 1/1024).
const EPS: f32 = 1.0 / 1024.0;

/// Centroids per block of the assignment kernel: a block's distances to a point are
/// accumulated in `BLOCK` lanes that the compiler keeps in vector registers.
const BLOCK: usize = 16;

/// Trains the codebook of `m` sub-quantisers on `vectors` (`n * dim` floats, row-major,
/// `n = vectors.len() / dim`).
///
/// Returns `m * 256 * (dim / m)` floats: centroid `c` of sub-quantiser `j` is at
/// `(j * 256 + c) * dsub ..` (`dsub = dim / m` floats, in the units of the input). Sub-quantiser
/// `j` covers components `j * dsub .. (j + 1) * dsub` of every vector.
///
/// Training: at most [`MAX_TRAIN`] rows (a seeded sample without replacement when `n` is
/// larger); per sub-quantiser, k-means with 256 centroids initialised on 256 distinct sampled
/// rows (a seeded choice per sub-quantiser), at most [`ITERATIONS`] Lloyd steps (squared
/// Euclidean distance, the first of equal centroids), an empty cluster re-seeded by splitting
/// the largest (its centroid copied and both perturbed symmetrically by 1/1024, relative). With
/// at most 256 training rows the codebook is the rows themselves, repeated cyclically to fill
/// the 256 centroids: every centroid is a copy of an input sub-vector. Every centroid is finite.
///
/// Deterministic: the same output for the same `(vectors, dim, m, seed)` whatever `threads`
/// is. The sub-quantisers are trained in parallel on `threads` threads (`std::thread::scope`;
/// at most `m` are used, and 0 is taken as 1).
///
/// Time: 2.5 s for 1,000,000 x 384 vectors with `m = 48` and `threads = 2` (release build,
/// x86-64 baseline target, on a 2-vCPU AMD EPYC VM that delivers one CPU's worth: 2.8 s with
/// `threads = 1`); about 2.4 s of it is the k-means, CPU time that the threads divide, so
/// about 1.4 s on two real cores. 60 ms of it is the finiteness check of the 1.5 GB input. The
/// k-means time scales as `min(n, MAX_TRAIN) * dim * ITERATIONS` and does not depend on `n`
/// beyond [`MAX_TRAIN`] rows.
///
/// Errors (a message): `dim == 0`, `m == 0`, `dim % m != 0`, `vectors.len() % dim != 0`, no
/// vector (`n == 0`), a NaN or infinite component, or a codebook size that overflows `usize`.
pub fn train(vectors: &[f32], dim: usize, m: usize, seed: u64, threads: usize) -> Result<Vec<f32>, String> {
    if dim == 0 {
        return Err("PQ training: the dimension is 0".into());
    }
    if m == 0 {
        return Err("PQ training: 0 sub-quantisers".into());
    }
    if dim % m != 0 {
        return Err(format!("PQ training: {m} sub-quantisers do not divide the dimension {dim}"));
    }
    if vectors.len() % dim != 0 {
        return Err(format!("PQ training: {} floats are not a whole number of {dim}-d vectors", vectors.len()));
    }
    let n = vectors.len() / dim;
    if n == 0 {
        return Err("PQ training: no vectors".into());
    }
    if let Some(i) = first_non_finite(vectors) {
        return Err(format!("PQ training: component {} of vector {} is not finite", i % dim, i / dim));
    }
    let dsub = dim / m;
    let per_sub = CENTROIDS.checked_mul(dsub).ok_or("PQ training: the codebook is too large")?;
    let total = per_sub.checked_mul(m).ok_or("PQ training: the codebook is too large")?;

    let rows = sample_rows(n, MAX_TRAIN, seed);
    let mut codebook = vec![0f32; total];
    let threads = threads.clamp(1, m);
    if threads == 1 {
        let mut km = KMeans::new(rows.len(), dsub);
        for (j, cb) in codebook.chunks_exact_mut(per_sub).enumerate() {
            km.train_sub(vectors, dim, j, &rows, seed, cb);
        }
        return Ok(codebook);
    }
    // Sub-quantiser j goes to thread j % threads; each is trained independently, so the
    // share-out does not change any result.
    let mut groups: Vec<Vec<(usize, &mut [f32])>> = (0..threads).map(|_| Vec::new()).collect();
    for (j, cb) in codebook.chunks_exact_mut(per_sub).enumerate() {
        if let Some(g) = groups.get_mut(j % threads) {
            g.push((j, cb));
        }
    }
    let rows = &rows;
    std::thread::scope(|s| {
        for group in groups {
            s.spawn(move || {
                let mut km = KMeans::new(rows.len(), dsub);
                for (j, cb) in group {
                    km.train_sub(vectors, dim, j, rows, seed, cb);
                }
            });
        }
    });
    Ok(codebook)
}

/// The index of the first NaN or infinite float of `v`, if any (a vectorised pass over chunks,
/// then a search in the bad chunk).
fn first_non_finite(v: &[f32]) -> Option<usize> {
    const CHUNK: usize = 1024;
    for (k, chunk) in v.chunks(CHUNK).enumerate() {
        if !chunk.iter().fold(true, |ok, x| ok & x.is_finite()) {
            return chunk.iter().position(|x| !x.is_finite()).map(|i| k * CHUNK + i);
        }
    }
    None
}

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA
/// 2014): the same stream on every platform.
struct Rng(u64);

impl Rng {
    /// A generator for `(seed, stream)`: streams are independent sequences of one seed.
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ mix(stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..bound` (`bound > 0`; 0 for 0), unbiased (Lemire's multiply and reject).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let p = u128::from(self.next_u64()) * u128::from(bound);
            if p as u64 >= threshold {
                return (p >> 64) as u64;
            }
        }
    }
}

/// SplitMix64's output function (a bijection of `u64`).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `k` distinct indices of `0..n`, uniformly chosen, in increasing order (Floyd's algorithm);
/// all of `0..n` when `k >= n`.
fn choose(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    let mut set = BTreeSet::new();
    for hi in n - k..n {
        // `hi < n` fits a u64 and `t <= hi` fits back in a usize.
        let t = rng.below(hi as u64 + 1) as usize;
        if !set.insert(t) {
            set.insert(hi);
        }
    }
    set.into_iter().collect()
}

/// The training rows: all of `0..n`, or `max` of them chosen with `seed` (stream 0), in
/// increasing order (the sub-vectors are then gathered front to back).
fn sample_rows(n: usize, max: usize, seed: u64) -> Vec<usize> {
    choose(n, max, &mut Rng::new(seed, 0))
}

/// The scratch space of k-means on one sub-space, reused from one sub-quantiser to the next.
struct KMeans {
    dsub: usize,
    /// The training sub-vectors, `rows * dsub` floats.
    x: Vec<f32>,
    /// The centroids by blocks of [`BLOCK`]: `(b * dsub + t) * BLOCK + i` is component `t` of
    /// centroid `b * BLOCK + i`.
    ct: Vec<f32>,
    /// The centroid of each training sub-vector (`u16::MAX` before the first assignment).
    assign: Vec<u16>,
    /// Per centroid, the sum of its sub-vectors (`256 * dsub`) and their number.
    sums: Vec<f64>,
    counts: Vec<usize>,
}

impl KMeans {
    fn new(rows: usize, dsub: usize) -> KMeans {
        KMeans {
            dsub,
            x: vec![0.0; rows * dsub],
            ct: vec![0.0; CENTROIDS * dsub],
            assign: vec![u16::MAX; rows],
            sums: vec![0.0; CENTROIDS * dsub],
            counts: vec![0; CENTROIDS],
        }
    }

    /// Trains sub-quantiser `j` on its sub-vectors of `rows` into `cb` (`256 * dsub` floats).
    fn train_sub(&mut self, vectors: &[f32], dim: usize, j: usize, rows: &[usize], seed: u64, cb: &mut [f32]) {
        let dsub = self.dsub;
        for (x, &r) in self.x.chunks_exact_mut(dsub).zip(rows) {
            let start = r * dim + j * dsub;
            if let Some(src) = vectors.get(start..start + dsub) {
                x.copy_from_slice(src);
            }
        }
        let n = rows.len();
        if n <= CENTROIDS {
            for (c, dst) in cb.chunks_exact_mut(dsub).enumerate() {
                if let Some(src) = self.x.chunks_exact(dsub).nth(c % n.max(1)) {
                    dst.copy_from_slice(src);
                }
            }
            return;
        }
        let mut rng = Rng::new(seed, j as u64 + 1);
        for (dst, i) in cb.chunks_exact_mut(dsub).zip(choose(n, CENTROIDS, &mut rng)) {
            if let Some(src) = self.x.get(i * dsub..(i + 1) * dsub) {
                dst.copy_from_slice(src);
            }
        }
        self.assign.iter_mut().for_each(|a| *a = u16::MAX);
        for it in 0..ITERATIONS {
            let changed = self.assign_all(cb);
            self.update(cb);
            // Unchanged, the assignment is a fixed point (the means are those of the last step,
            // before its splits). The codebook returned has every non-empty centroid the mean
            // of its sub-vectors, so no split after the last update.
            if !changed || it + 1 == ITERATIONS {
                break;
            }
            split_empty(cb, &mut self.counts, dsub);
        }
    }

    /// Assigns every training sub-vector to its nearest centroid of `cb`; whether any
    /// assignment changed.
    fn assign_all(&mut self, cb: &[f32]) -> bool {
        let dsub = self.dsub;
        for (c, centroid) in cb.chunks_exact(dsub).enumerate() {
            let (b, i) = (c / BLOCK, c % BLOCK);
            for (t, &v) in centroid.iter().enumerate() {
                if let Some(dst) = self.ct.get_mut((b * dsub + t) * BLOCK + i) {
                    *dst = v;
                }
            }
        }
        let mut changed = false;
        let mut pairs = self.x.chunks_exact(2 * dsub);
        let mut assign = self.assign.chunks_exact_mut(2);
        for (x, a) in (&mut pairs).zip(&mut assign) {
            let (x0, x1) = x.split_at(dsub);
            let c = nearest([x0, x1], &self.ct);
            changed |= a != c;
            a.copy_from_slice(&c);
        }
        for (x, a) in pairs.remainder().chunks_exact(dsub).zip(assign.into_remainder()) {
            let [c] = nearest([x], &self.ct);
            changed |= *a != c;
            *a = c;
        }
        changed
    }

    /// Sets every centroid with sub-vectors to their mean (`counts` their numbers); those
    /// without keep their place in `cb`.
    fn update(&mut self, cb: &mut [f32]) {
        let dsub = self.dsub;
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        self.counts.iter_mut().for_each(|k| *k = 0);
        for (x, &a) in self.x.chunks_exact(dsub).zip(&self.assign) {
            let a = usize::from(a);
            if let (Some(sum), Some(k)) = (self.sums.get_mut(a * dsub..(a + 1) * dsub), self.counts.get_mut(a)) {
                *k += 1;
                for (s, &v) in sum.iter_mut().zip(x) {
                    *s += f64::from(v);
                }
            }
        }
        for ((dst, sum), &k) in cb.chunks_exact_mut(dsub).zip(self.sums.chunks_exact(dsub)).zip(&self.counts) {
            if k > 0 {
                let inv = 1.0 / k as f64;
                for (d, &s) in dst.iter_mut().zip(sum) {
                    // A mean of finite float32s is a finite float32.
                    *d = (s * inv) as f32;
                }
            }
        }
    }
}

/// The nearest centroids to the `P` points `xs` (`dsub` floats each) in squared Euclidean
/// distance, the first of equals; `ct` holds the 256 centroids by blocks (see [`KMeans::ct`]).
/// A few points at a time share the loads of the centroids.
#[inline(always)]
fn nearest<const P: usize>(xs: [&[f32]; P], ct: &[f32]) -> [u16; P] {
    let dsub = xs[0].len();
    let mut dist = [[0f32; CENTROIDS]; P];
    let mut least = [[f32::INFINITY; BLOCK]; P];
    for (b, block) in ct.chunks_exact(dsub * BLOCK).enumerate() {
        let mut acc = [[0f32; BLOCK]; P];
        for (t, row) in block.chunks_exact(BLOCK).enumerate() {
            for p in 0..P {
                let xt = xs[p][t];
                for (d, &c) in acc[p].iter_mut().zip(row) {
                    let e = xt - c;
                    *d += e * e;
                }
            }
        }
        for p in 0..P {
            dist[p][b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&acc[p]);
            for (l, &a) in least[p].iter_mut().zip(&acc[p]) {
                *l = if a < *l { a } else { *l };
            }
        }
    }
    let mut out = [0u16; P];
    for p in 0..P {
        // A distance is finite or +inf (a sum of squares of finite differences), never NaN: the
        // least is one of them (+inf when all are, then centroid 0).
        let min = least[p].iter().fold(f32::INFINITY, |m, &l| if l < m { l } else { m });
        for (b, out_b) in dist[p].chunks_exact(BLOCK).enumerate() {
            if out_b.iter().fold(false, |hit, &d| hit | (d == min)) {
                if let Some(i) = out_b.iter().position(|&d| d == min) {
                    out[p] = (b * BLOCK + i) as u16;
                    break;
                }
            }
        }
    }
    out
}

/// Re-seeds every empty centroid of `cb` (`counts[c] == 0`) by splitting the largest cluster
/// (the first of equals), as FAISS does: the empty centroid becomes a copy of the large one,
/// the two are pushed apart by a relative `EPS` in opposite directions, and the large cluster's
/// count is shared between them.
fn split_empty(cb: &mut [f32], counts: &mut [usize], dsub: usize) {
    for ci in 0..counts.len() {
        if counts.get(ci) != Some(&0) {
            continue;
        }
        let mut cj = 0;
        for (c, &k) in counts.iter().enumerate() {
            if k > counts.get(cj).copied().unwrap_or(0) {
                cj = c;
            }
        }
        let (Some(&big), true) = (counts.get(cj), ci != cj) else { continue };
        if big < 2 {
            // Fewer points than centroids (never with more than 256 training rows).
            continue;
        }
        // Both centroids are rows of `cb`: split it at the later one.
        let (lo, hi) = (ci.min(cj), ci.max(cj));
        let (head, tail) = cb.split_at_mut(hi * dsub);
        let (Some(a), Some(b)) = (head.get_mut(lo * dsub..(lo + 1) * dsub), tail.get_mut(..dsub)) else { continue };
        let (empty, large) = if ci < cj { (a, b) } else { (b, a) };
        empty.copy_from_slice(large);
        let scale = large.iter().fold(0f32, |s, v| s.max(v.abs()));
        for (t, (e, l)) in empty.iter_mut().zip(large.iter_mut()).enumerate() {
            // FAISS multiplies by 1 +- EPS; a zero component moves by EPS of the centroid's
            // largest magnitude (or EPS itself) so that the two copies differ.
            let base = if *l != 0.0 {
                l.abs()
            } else if scale > 0.0 {
                scale
            } else {
                1.0
            };
            let delta = if t % 2 == 0 { EPS * base } else { -EPS * base };
            let (up, down) = (*l + delta, *l - delta);
            if up.is_finite() && down.is_finite() {
                *e = up;
                *l = down;
            }
        }
        let half = big / 2;
        if let Some(k) = counts.get_mut(ci) {
            *k = half;
        }
        if let Some(k) = counts.get_mut(cj) {
            *k = big - half;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` vectors of `dim` components around `clusters` random centres in `[-1, 1)^dim`, with
    /// noise of amplitude `noise`.
    fn clustered(n: usize, dim: usize, clusters: usize, noise: f32, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed, 99);
        let mut unit = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        let centres: Vec<f32> = (0..clusters * dim).map(|_| unit()).collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = (mix(i as u64 ^ seed) % clusters as u64) as usize;
            for t in 0..dim {
                out.push(centres[c * dim + t] + noise * (unit() + unit() + unit()) / 3.0);
            }
        }
        out
    }

    /// Mean over the vectors of the squared distance to the nearest codeword (sum over the
    /// sub-quantisers).
    fn mse(vectors: &[f32], dim: usize, m: usize, cb: &[f32]) -> f64 {
        let dsub = dim / m;
        let n = vectors.len() / dim;
        let mut total = 0f64;
        for v in vectors.chunks_exact(dim) {
            for j in 0..m {
                let x = &v[j * dsub..(j + 1) * dsub];
                let best = cb[j * CENTROIDS * dsub..(j + 1) * CENTROIDS * dsub]
                    .chunks_exact(dsub)
                    .map(|c| x.iter().zip(c).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>())
                    .fold(f64::INFINITY, f64::min);
                total += best;
            }
        }
        total / n as f64
    }

    #[test]
    fn deterministic_whatever_the_threads() {
        let (dim, m) = (24, 6);
        let v = clustered(3000, dim, 500, 0.3, 7);
        let a = train(&v, dim, m, 42, 1).unwrap();
        let b = train(&v, dim, m, 42, 3).unwrap();
        let c = train(&v, dim, m, 42, 100).unwrap();
        assert_eq!(a.len(), m * CENTROIDS * (dim / m));
        let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(bits(&a), bits(&c));
        assert_eq!(bits(&a), bits(&train(&v, dim, m, 42, 2).unwrap()));
        assert_ne!(bits(&a), bits(&train(&v, dim, m, 43, 1).unwrap()));
        assert!(a.iter().all(|f| f.is_finite()));
    }

    #[test]
    fn sampled_training_is_deterministic() {
        // More rows than MAX_TRAIN: the sample depends on the seed only.
        let (dim, m) = (8, 4);
        let v = clustered(MAX_TRAIN + 5000, dim, 300, 0.2, 3);
        let a = train(&v, dim, m, 5, 1).unwrap();
        let b = train(&v, dim, m, 5, 2).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn error_far_below_random_codebook() {
        let (dim, m) = (32, 8);
        let v = clustered(6000, dim, 200, 0.1, 11);
        let cb = train(&v, dim, m, 1, 2).unwrap();
        // The baseline: 256 random training vectors as the codewords of every sub-quantiser.
        let dsub = dim / m;
        let picks = choose(6000, CENTROIDS, &mut Rng::new(123, 0));
        let mut random = vec![0f32; m * CENTROIDS * dsub];
        for j in 0..m {
            for (c, &r) in picks.iter().enumerate() {
                let dst = (j * CENTROIDS + c) * dsub;
                random[dst..dst + dsub].copy_from_slice(&v[r * dim + j * dsub..r * dim + (j + 1) * dsub]);
            }
        }
        let (trained, baseline) = (mse(&v, dim, m, &cb), mse(&v, dim, m, &random));
        assert!(trained <= 0.5 * baseline, "trained {trained} vs random {baseline}");
    }

    #[test]
    fn fewer_vectors_than_centroids() {
        let (dim, m) = (12, 3);
        let dsub = dim / m;
        let v = clustered(10, dim, 4, 0.1, 5);
        let cb = train(&v, dim, m, 9, 2).unwrap();
        assert_eq!(cb.len(), m * CENTROIDS * dsub);
        assert!(cb.iter().all(|f| f.is_finite()));
        for j in 0..m {
            let book: Vec<&[f32]> = cb[j * CENTROIDS * dsub..(j + 1) * CENTROIDS * dsub].chunks_exact(dsub).collect();
            for p in v.chunks_exact(dim) {
                let sub = &p[j * dsub..(j + 1) * dsub];
                assert!(book.contains(&sub), "sub-vector {sub:?} of sub-quantiser {j} not in the codebook");
            }
            // Every centroid is one of the points.
            for c in &book {
                assert!(v.chunks_exact(dim).any(|p| &p[j * dsub..(j + 1) * dsub] == *c));
            }
        }
        // One vector, one sub-quantiser covering it all.
        let one = train(&[1.0, -2.0, 3.0], 3, 1, 0, 1).unwrap();
        assert_eq!(one, [1.0, -2.0, 3.0].repeat(CENTROIDS));
    }

    #[test]
    fn exactly_centroids_and_degenerate_data() {
        // 256 rows: the codebook is the rows.
        let v = clustered(CENTROIDS, 4, 50, 0.2, 1);
        let cb = train(&v, 4, 2, 0, 2).unwrap();
        assert!(mse(&v, 4, 2, &cb) == 0.0);
        // All rows equal (and zero): clusters cannot be split, the centroids stay finite.
        let zeros = vec![0f32; 1000 * 8];
        let cb = train(&zeros, 8, 2, 0, 2).unwrap();
        assert!(cb.iter().all(|f| f.is_finite()));
        assert!(mse(&zeros, 8, 2, &cb) == 0.0);
        // Few distinct values and huge magnitudes: finite.
        let mut rng = Rng::new(4, 4);
        let few: Vec<f32> = (0..2000 * 4).map(|_| [0.0, f32::MAX, -f32::MAX, 1.0][rng.below(4) as usize]).collect();
        let cb = train(&few, 4, 4, 0, 1).unwrap();
        assert!(cb.iter().all(|f| f.is_finite()));
    }

    #[test]
    fn errors() {
        let v = vec![0.5f32; 48];
        assert!(train(&v, 0, 1, 0, 1).is_err());
        assert!(train(&v, 8, 0, 0, 1).is_err());
        assert!(train(&v, 8, 3, 0, 1).is_err());
        assert!(train(&v, 10, 2, 0, 1).is_err());
        assert!(train(&[], 8, 2, 0, 1).is_err());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut w = v.clone();
            w[45] = bad;
            let e = train(&w, 8, 2, 0, 1).unwrap_err();
            assert!(e.contains("component 5 of vector 5"), "{e}");
        }
        assert!(train(&v, 8, 2, 0, 1).is_ok());
        assert!(train(&v, 8, 2, 0, 0).is_ok());
    }

    #[test]
    fn choose_is_uniform_and_distinct() {
        let mut rng = Rng::new(1, 2);
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            let s = choose(10, 3, &mut rng);
            assert_eq!(s.len(), 3);
            assert!(s.windows(2).all(|w| w[0] < w[1]));
            s.iter().for_each(|&i| hits[i] += 1);
        }
        // Each index is chosen with probability 3/10: 3000 +- a few standard deviations (46).
        assert!(hits.iter().all(|&h| (2800..3200).contains(&h)), "{hits:?}");
    }
}
