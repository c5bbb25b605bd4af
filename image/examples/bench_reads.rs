//! A host model of the kernel's index cache under `index_mem=`: 4 KiB block reads per query
//! of the kernel's search code (`vexfs_core`, through [`Searcher::search_traced`]) on an
//! unmounted image, in seconds where the guest (`bench/budget.sh`) takes TCG minutes, for
//! trying layouts and search parameters before measuring them in the guest.
//!
//!     bench_reads IMAGE QUERY.fvecs GT.ivecs EF[,EF...] BUDGET[,BUDGET...] [-k K] [--code-distances]
//!                 [--model-records R] [--split-warm-up]
//!
//! `--split-warm-up`: the warm-up pass runs the second half of the queries and the counted
//! passes the first, so that no counted query finds the blocks it read itself in the warm-up
//! (which the guest's runs, warming up with the same queries, allow).
//! `--model-records R` (an image in node records, R a multiple of the records its blocks hold):
//! the reads of a layout that is not built, with R smaller node records a block (for example a
//! record holding the vector's SQ8 code instead of its float32 components) in the same slot
//! order, and the float32 vectors in a region of their own, each answer's vector read from it
//! (a final re-rank of the k answers). The same searches are run: the walk, and so the recall,
//! are this image's; only the blocks are counted as that layout would hold them.
//! `--code-distances`: the searches rank by the codes' distances (`Rank::Codes`, what
//! `VEXFS_SEARCH_CODE_DISTANCES` asks of the kernel), reading no float32 vector.
//! BUDGET is in bytes (K, M, G suffixes: powers of 1024). Per budget, as `bench/budget-run.sh`
//! does per mount: the cache starts empty, an uncounted warm-up pass at the largest EF, then one
//! counted pass per EF. The cache is the kernel's (`kmod/pins.rs`): a block read is held for
//! the rest of the search; after it, while more than BUDGET / 4096 blocks are held, a clock hand
//! sweeping the vector regions in block order gives back unreferenced blocks and clears the
//! reference of the others (the kernel's trim); a hit sets it; with codes in the split layout
//! the vector data region's blocks never get one (evicted first). Not modelled: the kernel's read-ahead (its reads of blocks a search then uses count
//! once here, as there; a read-ahead block never used counts there only), and reads outside the
//! vector regions (inodes for the permission check).
//!
//! Output: a line per budget and EF: recall@K against GT (files are DIR/ROW, as `vexctl
//! import` names them), block reads per query in all and per region, blocks touched per query.

use std::collections::HashMap;
use std::num::NonZeroU64;

use vexfs_image::vecfile::{read_fvecs, read_ivecs};
use vexfs_image::vectors::Searcher;
use vexfs_image::vexfs_core::embed::Rank;
use vexfs_image::vexfs_core::format::superblock::{
    node_record_size, records_per_block, vec_stride_for, Region, Superblock,
};

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_reads: {msg}");
    std::process::exit(2);
}

/// Bytes with an optional K, M or G suffix.
fn bytes(s: &str) -> u64 {
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().map(|n| n * mul).unwrap_or_else(|_| die(format!("not a size: {s}")))
}

/// The regions a search reads, in report order.
const REGIONS: [Region; 5] = [Region::VecCodes, Region::Hnsw, Region::VecData, Region::VecMap, Region::VecBitmap];

/// The kernel's clock over the blocks of the vector regions.
struct Clock {
    first: u64,
    /// Per block: 0 not held, 1 held, 2 held and referenced.
    state: Vec<u8>,
    held: usize,
    budget: usize,
    hand: usize,
    cold: std::ops::Range<u64>,
}

impl Clock {
    /// A clock over the vector regions and `extra` blocks after them.
    fn new(sb: &Superblock, budget_blocks: usize, extra: usize) -> Clock {
        let v = sb.vector_regions();
        let cold = if sb.has_codes() && !sb.has_node_records() {
            let d = sb.region(Region::VecData);
            d.start..d.end()
        } else {
            0..0
        };
        Clock {
            first: v.start,
            state: vec![0; v.blocks as usize + extra],
            held: 0,
            budget: budget_blocks,
            hand: 0,
            cold,
        }
    }

    /// Reads block `n`: whether it had to come from the device.
    fn read(&mut self, n: u64) -> bool {
        let i = (n - self.first) as usize;
        let hot = if self.cold.contains(&n) { 1 } else { 2 };
        if self.state[i] != 0 {
            self.state[i] = self.state[i].max(hot);
            return false;
        }
        self.state[i] = hot;
        self.held += 1;
        true
    }

    /// After a search: gives back the blocks held past the budget.
    fn trim(&mut self) {
        if self.held <= self.budget {
            return;
        }
        let want = self.held - self.budget;
        let n = self.state.len();
        let (mut freed, mut looked) = (0, 0);
        while freed < want && looked < 2 * n {
            looked += 1;
            let i = self.hand % n;
            self.hand += 1;
            match self.state[i] {
                0 => {}
                2 => self.state[i] = 1,
                _ => {
                    self.state[i] = 0;
                    self.held -= 1;
                    freed += 1;
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let mut k = 10usize;
    let mut rank = Rank::Exact;
    let mut model_records: Option<NonZeroU64> = None;
    let mut split_warm = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-k" => k = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| die("-k takes a count")),
            "--code-distances" => rank = Rank::Codes,
            "--split-warm-up" => split_warm = true,
            "--model-records" => {
                model_records = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| die("--model-records takes a count above 0")),
                )
            }
            _ => pos.push(a.clone()),
        }
    }
    let [image, query, gt, efs, budgets] = pos.as_slice() else {
        die("usage: bench_reads IMAGE QUERY.fvecs GT.ivecs EF[,EF...] BUDGET[,BUDGET...] [-k K] [--code-distances]")
    };
    let efs: Vec<usize> = efs.split(',').map(|e| e.parse().unwrap_or_else(|_| die(format!("bad EF {e}")))).collect();
    let budgets: Vec<u64> = budgets.split(',').map(bytes).collect();
    let max_ef = *efs.iter().max().unwrap_or(&64);
    let mut s = Searcher::open(image, max_ef).unwrap_or_else(|e| die(format!("{image}: {e}")));
    s.set_rank(rank).unwrap_or_else(|e| die(format!("{image}: --code-distances: {e}")));
    let queries = read_fvecs(query).unwrap_or_else(|e| die(format!("{query}: {e}")));
    let truth = read_ivecs(gt).unwrap_or_else(|e| die(format!("{gt}: {e}")));
    let sb = s.image().sb().clone();
    let rows: HashMap<u64, u32> = s
        .paths()
        .unwrap_or_else(|e| die(e))
        .iter()
        .filter_map(|(&ino, p)| p.rsplit('/').next()?.parse().ok().map(|r| (ino, r)))
        .collect();
    // --model-records: a node record block of the image (`per` records) becomes block
    // `start + b * per / R` of the modelled data region; answers' float32 vectors are read from
    // blocks after the vector regions.
    let data = sb.region(Region::VecData);
    let stride = vec_stride_for(sb.vec_dim);
    let per = records_per_block(node_record_size(sb.vec_dim, sb.hnsw_m));
    let vectors_first = sb.vector_regions().end();
    // The clock's blocks after the vector regions: the modelled vectors'.
    let extra = if model_records.is_some() { (sb.vec_capacity * stride).div_ceil(4096) as usize } else { 0 };
    let data_index = REGIONS.iter().position(|&r| r == Region::VecData);
    if model_records.is_some_and(|r| !sb.has_node_records() || r.get() % per != 0) {
        die(format!("--model-records: needs an image in node records and a multiple of its {per} records a block"))
    }
    let region_of = |n: u64| REGIONS.iter().position(|&r| sb.region(r).start <= n && n < sb.region(r).end());
    let mut reads = Vec::new();
    for &budget in &budgets {
        let mut clock = Clock::new(&sb, (budget / 4096) as usize, extra);
        let mut pass = |ef: usize, clock: &mut Clock, count: bool| {
            let (mut found, mut miss, mut touched) = (0usize, [0u64; REGIONS.len()], [0u64; REGIONS.len()]);
            // --split-warm-up: the warm-up pass on the second half of the queries, the counted
            // passes on the first.
            let (skip, take) = match (split_warm, count) {
                (false, _) => (0, queries.len()),
                (true, false) => (queries.len() / 2, queries.len()),
                (true, true) => (0, queries.len() / 2),
            };
            let nq = (take - skip) as f64;
            for (q, t) in queries.iter().zip(&truth).take(take).skip(skip) {
                reads.clear();
                let hits = s.search_traced(q, k, ef, &mut reads).unwrap_or_else(|e| die(e));
                if let Some(r) = model_records {
                    for n in reads.iter_mut().filter(|n| data.contains(**n)) {
                        *n = data.start + (*n - data.start) * per / r;
                    }
                    reads.extend(hits.iter().map(|h| vectors_first + u64::from(h.slot) * stride / 4096));
                }
                // The kernel holds a block for the whole search once read: count each once.
                reads.sort_unstable();
                reads.dedup();
                for &n in &reads {
                    // The modelled vectors' blocks count with the data region's.
                    let Some(r) = region_of(n).or(data_index.filter(|_| n >= vectors_first)) else { continue };
                    touched[r] += 1;
                    if clock.read(n) {
                        miss[r] += 1;
                    }
                }
                clock.trim();
                let want: Vec<u32> = t.iter().take(k).copied().collect();
                found += hits.iter().filter(|h| rows.get(&h.ino).is_some_and(|r| want.contains(r))).count();
            }
            if count {
                let per = |v: &[u64]| v.iter().map(|&x| format!("{:.1}", x as f64 / nq)).collect::<Vec<_>>().join("/");
                println!(
                    "budget {:.1} MiB ef {ef}: recall@{k} {:.4}, block reads/query {:.1} \
                     (codes/hnsw/data/map/bitmap {}), blocks touched/query {:.1} ({})",
                    budget as f64 / 1048576.0,
                    found as f64 / (nq * k as f64),
                    miss.iter().sum::<u64>() as f64 / nq,
                    per(&miss),
                    touched.iter().sum::<u64>() as f64 / nq,
                    per(&touched)
                );
            }
        };
        pass(max_ef, &mut clock, false);
        for &ef in &efs {
            pass(ef, &mut clock, true);
        }
    }
}
