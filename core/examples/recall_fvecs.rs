//! Recall@10 of the in-memory core index on an fvecs data set with ivecs ground truth:
//!     cargo run --release -p vexfs-core --features std --example recall_fvecs -- BASE QUERY GT
use std::time::Instant;
use vexfs_core::format::superblock::Metric;
use vexfs_core::mem::{c_dist, MemIndex};

fn read_vecs(path: &str) -> Vec<Vec<u32>> {
    let b = std::fs::read(path).unwrap();
    let mut out = vec![];
    let mut i = 0;
    while i + 4 <= b.len() {
        let d = u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        i += 4;
        out.push((0..d).map(|j| u32::from_le_bytes(b[i + 4 * j..i + 4 * j + 4].try_into().unwrap())).collect());
        i += 4 * d;
    }
    out
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let base: Vec<Vec<f32>> =
        read_vecs(&a[1]).into_iter().map(|v| v.into_iter().map(f32::from_bits).collect()).collect();
    let queries: Vec<Vec<f32>> =
        read_vecs(&a[2]).into_iter().map(|v| v.into_iter().map(f32::from_bits).collect()).collect();
    let gt = read_vecs(&a[3]);
    let t = Instant::now();
    let mut idx = MemIndex::new(base[0].len(), Metric::L2, 16, 200, 42, c_dist);
    for v in &base {
        idx.add(v).unwrap();
    }
    println!("build {} vectors: {:.2}s", base.len(), t.elapsed().as_secs_f64());
    for ef in [10, 16, 24, 32, 48, 64, 128] {
        let t = Instant::now();
        let mut hit = 0;
        for (q, g) in queries.iter().zip(&gt) {
            let r = idx.search(q, 10, ef).unwrap();
            hit += r.iter().filter(|(_, id)| g[..10].contains(id)).count();
        }
        let dt = t.elapsed().as_secs_f64();
        println!(
            "ef {ef:4}: recall@10 {:.4}  {:.0} q/s",
            hit as f64 / (10 * queries.len()) as f64,
            queries.len() as f64 / dt
        );
    }
}
