//! One query against a batch of 32 vectors, per implementation and metric: dim 384 for every
//! metric, dims 128 and 1536 for l2. Throughput is in distances (elements = 32 per batch), so
//! criterion's "time per iteration / 32" is the cost of one distance. Then the same batch as
//! SQ8 codes (384 bytes each, `code_distances`) for l2 and ip.

use criterion::{black_box, criterion_main, BenchmarkId, Criterion, Throughput};
use vexfs_core::distance::{code_distances, distances, Impl, METRIC_COSINE, METRIC_IP, METRIC_L2};

const BATCH: usize = 32;

/// Deterministic data in [-1, 1) (splitmix64), each vector in its own allocation like the
/// scattered vectors of an HNSW search.
fn data(dim: usize, seed: u64) -> (Vec<f32>, Vec<Vec<f32>>) {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u32 << 23) as f32 - 1.0
    };
    let q = (0..dim).map(|_| next()).collect();
    let vs = (0..BATCH).map(|_| (0..dim).map(|_| next()).collect()).collect();
    (q, vs)
}

fn bench(c: &mut Criterion) {
    let cases = [
        (METRIC_L2, "l2", 384),
        (METRIC_COSINE, "cosine", 384),
        (METRIC_IP, "ip", 384),
        (METRIC_L2, "l2", 128),
        (METRIC_L2, "l2", 1536),
    ];
    for (metric, name, dim) in cases {
        let mut g = c.benchmark_group(format!("{name}/dim{dim}/batch{BATCH}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        let (q, vs) = data(dim, dim as u64);
        let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
        let mut out = [0u32; BATCH];
        for imp in Impl::ALL.into_iter().filter(|i| i.is_available()) {
            g.bench_function(BenchmarkId::from_parameter(imp.name()), |b| {
                b.iter(|| distances(imp, metric, black_box(&q), black_box(&refs), &mut out).expect("valid batch"))
            });
        }
        g.finish();
    }
    for (metric, name) in [(METRIC_L2, "l2"), (METRIC_IP, "ip")] {
        let mut g = c.benchmark_group(format!("sq8-{name}/len384/batch{BATCH}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        let (q, vs) = data(384, 7);
        // Codes in the SQ8 range: each component times 127, as signed bytes.
        let code = |v: &[f32]| v.iter().map(|x| ((x * 127.0) as i8) as u8).collect::<Vec<u8>>();
        let qc = code(&q);
        let cs: Vec<Vec<u8>> = vs.iter().map(|v| code(v)).collect();
        let refs: Vec<&[u8]> = cs.iter().map(|v| v.as_slice()).collect();
        let mut out = [0u32; BATCH];
        for imp in Impl::ALL.into_iter().filter(|i| i.is_available()) {
            g.bench_function(BenchmarkId::from_parameter(imp.name()), |b| {
                b.iter(|| code_distances(imp, metric, black_box(&qc), black_box(&refs), &mut out).expect("valid batch"))
            });
        }
        g.finish();
    }
}

// criterion_group! makes a `pub fn benches` that it gives no docstring (and a lint attribute on
// the macro call itself is ignored).
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
