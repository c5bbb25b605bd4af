//! The core HNSW in userspace (`MemIndex` with the C distance kernels), for `scripts/bench`:
//! one build, then an ef sweep over the queries, printed as one JSON object on stdout.
//!
//!     cargo run --release -p vexfs-core --features std --example bench_core -- \
//!         BASE.fvecs QUERY.fvecs GT.ivecs [--m 16] [--ef-construction 200] [--k 10]
//!         [--efs 10,16,32,64] [--passes 2] [--seed 42]
//!
//! Single thread throughout. `build_secs` times the inserts only (not reading the files);
//! each ef runs every query `--passes` times and keeps the fastest pass (`qps`), recall@k is
//! |found ∩ first k of the ground truth| / k averaged over the queries (deterministic).
//! Memory: `memory_bytes` is `MemIndex::memory_bytes` (vectors, link lists with their counts,
//! levels); `raw_vector_bytes` = n·dim·4 and `link_bytes` = 4 bytes per link slot (2m at level
//! 0, m per upper level) are the yardstick; `rss_growth_bytes` is VmRSS after the build minus
//! before it (the data files already loaded), as measured for hnswlib and faiss, and
//! `rss_growth_trimmed_bytes` the same after `malloc_trim(0)` (heap the Vec regrowth freed).
use std::time::Instant;
use vexfs_core::distance::best_impl;
use vexfs_core::format::superblock::Metric;
use vexfs_core::format::vector::slot_level;
use vexfs_core::mem::{c_dist, MemIndex};

#[path = "common/vecs.rs"]
mod vecs;

/// Rows of an .fvecs/.ivecs file as raw 32-bit words, and the row width; exits on a bad file.
fn read_vecs(path: &str) -> (Vec<u32>, usize) {
    vecs::read_words(std::path::Path::new(path)).unwrap_or_else(|e| {
        eprintln!("bench_core: {e}");
        std::process::exit(1)
    })
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(target_env = "gnu")]
extern "C" {
    /// glibc: returns freed heap memory to the system (a diagnostic of the RSS figure).
    fn malloc_trim(pad: usize) -> i32;
}

/// Returns freed heap memory to the system where the C library can (glibc); nothing elsewhere
/// (musl, the guest's static build: the trimmed figure is then the untrimmed one).
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        malloc_trim(0);
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: bench_core BASE.fvecs QUERY.fvecs GT.ivecs [--m M] [--ef-construction E] [--k K] [--efs A,B,..] [--passes P] [--seed S]");
        std::process::exit(2);
    }
    let (mut m, mut efc, mut k, mut passes, mut seed) = (16u32, 200u32, 10usize, 2usize, 42u64);
    let mut efs: Vec<usize> = vec![10, 16, 24, 32, 48, 64, 96, 128, 192, 256];
    let mut i = 4;
    while i < a.len() {
        let v = a.get(i + 1).unwrap_or_else(|| panic!("{} needs a value", a[i]));
        match a[i].as_str() {
            "--m" => m = v.parse().unwrap(),
            "--ef-construction" => efc = v.parse().unwrap(),
            "--k" => k = v.parse().unwrap(),
            "--passes" => passes = v.parse().unwrap(),
            "--seed" => seed = v.parse().unwrap(),
            "--efs" => efs = v.split(',').map(|x| x.parse().unwrap()).collect(),
            o => panic!("unknown option {o}"),
        }
        i += 2;
    }
    let (base, dim) = read_vecs(&a[1]);
    let base: Vec<f32> = base.into_iter().map(f32::from_bits).collect();
    let (queries, qdim) = read_vecs(&a[2]);
    let queries: Vec<f32> = queries.into_iter().map(f32::from_bits).collect();
    let (gt, gw) = read_vecs(&a[3]);
    assert_eq!(dim, qdim, "base and queries differ in dimension");
    assert!(gw >= k, "ground truth has {gw} neighbours per query, fewer than k {k}");
    let n = base.len() / dim;
    let nq = queries.len() / dim;
    assert_eq!(gt.len() / gw, nq, "ground truth rows != queries");

    let rss0 = rss_bytes();
    let t = Instant::now();
    let mut idx = MemIndex::new(dim, Metric::L2, m, efc, seed, c_dist);
    for v in base.chunks(dim) {
        idx.add(v).expect("add");
    }
    let build_secs = t.elapsed().as_secs_f64();
    let rss_growth = rss_bytes().saturating_sub(rss0);
    trim_heap();
    let rss_growth_trimmed = rss_bytes().saturating_sub(rss0);

    let upper_lists: u64 = (0..n as u32).map(|id| u64::from(slot_level(seed, id, m, 16))).sum();
    let link_bytes = 4 * (n as u64 * 2 * u64::from(m) + upper_lists * u64::from(m));

    let mut sweep = Vec::new();
    for &ef in &efs {
        if ef < k {
            continue;
        }
        let mut hits = 0usize;
        let mut best = f64::INFINITY;
        for p in 0..passes.max(1) {
            let t = Instant::now();
            let mut h = 0usize;
            for (q, g) in queries.chunks(dim).zip(gt.chunks(gw)) {
                let r = idx.search(q, k, ef).expect("search");
                if p == 0 {
                    h += r.iter().filter(|(_, id)| g[..k].contains(id)).count();
                }
            }
            best = best.min(t.elapsed().as_secs_f64());
            if p == 0 {
                hits = h;
            }
        }
        sweep.push(format!(
            "{{\"ef\": {ef}, \"recall\": {:.4}, \"qps\": {:.1}}}",
            hits as f64 / (k * nq) as f64,
            nq as f64 / best
        ));
    }
    println!(
        "{{\"library\": \"vexfs-core\", \"impl\": \"{}\", \"n\": {n}, \"dim\": {dim}, \"queries\": {nq}, \"k\": {k}, \
         \"m\": {m}, \"ef_construction\": {efc}, \"build_secs\": {build_secs:.4}, \"memory_bytes\": {}, \
         \"raw_vector_bytes\": {}, \"link_bytes\": {link_bytes}, \"upper_lists\": {upper_lists}, \
         \"rss_growth_bytes\": {rss_growth}, \"rss_growth_trimmed_bytes\": {rss_growth_trimmed}, \"sweep\": [{}]}}",
        best_impl().name(),
        idx.memory_bytes(),
        n * dim * 4,
        sweep.join(", ")
    );
}
