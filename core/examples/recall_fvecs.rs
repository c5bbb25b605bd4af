//! Recall@10 of the in-memory core index on an fvecs data set with ivecs ground truth:
//!     cargo run --release -p vexfs-core --features std --example recall_fvecs -- BASE QUERY GT

use std::path::Path;
use std::time::Instant;

use vexfs_core::format::superblock::Metric;
use vexfs_core::mem::{c_dist, MemIndex};

#[path = "common/vecs.rs"]
mod vecs;

fn main() -> Result<(), String> {
    let a: Vec<String> = std::env::args().collect();
    let [_, base, queries, gt] = &a[..] else {
        return Err("usage: recall_fvecs BASE.fvecs QUERY.fvecs GT.ivecs".into());
    };
    let base = vecs::read_fvecs(Path::new(base))?;
    let queries = vecs::read_fvecs(Path::new(queries))?;
    let gt = vecs::read_ivecs(Path::new(gt))?;
    let dim = base.first().map_or(0, Vec::len);
    let t = Instant::now();
    let mut idx = MemIndex::new(dim, Metric::L2, 16, 200, 42, c_dist);
    for v in &base {
        idx.add(v).map_err(|e| format!("add: {e:?}"))?;
    }
    println!("build {} vectors: {:.2}s", base.len(), t.elapsed().as_secs_f64());
    for ef in [10, 16, 24, 32, 48, 64, 128] {
        let t = Instant::now();
        let mut hit = 0;
        for (q, g) in queries.iter().zip(&gt) {
            let r = idx.search(q, 10, ef).map_err(|e| format!("search: {e:?}"))?;
            let top = g.get(..10).unwrap_or(g);
            hit += r.iter().filter(|(_, id)| top.contains(id)).count();
        }
        let dt = t.elapsed().as_secs_f64();
        println!(
            "ef {ef:4}: recall@10 {:.4}  {:.0} q/s",
            hit as f64 / (10 * queries.len()) as f64,
            queries.len() as f64 / dt
        );
    }
    Ok(())
}
