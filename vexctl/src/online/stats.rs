//! `vexctl stats`: the vector index's statistics and parameters, as text or JSON. `vectors`
//! counts every searchable embedding, in the graph or pending (stored by a SET without
//! VEXFS_SET_INDEX_NOW, not yet linked by the index worker); `pending` is that share
//! ([`super::wait_indexed`] waits for it to reach 0). The index's memory and its cache's counts
//! (`mem_bytes`, `mem_budget`, `cache_hits`, `cache_misses`, `block_reads`, `readaheads`,
//! `evictions`) come from `VEXFS_IOC_INDEX_MEM`, and the block reads per vector region
//! (`block_reads_bitmap`, `_map`, `_data`, `_hnsw`, `_codes`) from `VEXFS_IOC_INDEX_READS`; a
//! module without one of those calls leaves its fields out.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{open_vexfs, print_out, stats_of};
use crate::abi::{distance_impl_name, metric_name, VexfsIndexMem, VexfsIndexReads, VexfsStats, VEXFS_NO_ENTRY_POINT};
use crate::offline::CmdResult;

/// The arguments of `vexctl stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Any file or directory of a mounted vexfs.
    path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, Debug, PartialEq)]
struct StatsJson {
    dim: u32,
    metric: String,
    m: u32,
    ef_construction: u32,
    vectors: u64,
    pending: u32,
    deleted: u64,
    capacity: u64,
    levels: u32,
    entry_point: Option<u32>,
    bytes_on_disk: u64,
    distance_impl: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    mem: Option<MemJson>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    reads: Option<ReadsJson>,
}

/// 4 KiB blocks read from the device since mount, per vector region (`VEXFS_IOC_INDEX_READS`).
#[derive(Serialize, Debug, PartialEq)]
struct ReadsJson {
    block_reads_bitmap: u64,
    block_reads_map: u64,
    block_reads_data: u64,
    block_reads_hnsw: u64,
    block_reads_codes: u64,
}

/// The index's memory (bytes) and its cache's counts since mount (`VEXFS_IOC_INDEX_MEM`).
#[derive(Serialize, Debug, PartialEq)]
struct MemJson {
    mem_bytes: u64,
    mem_budget: u64,
    cache_hits: u64,
    cache_misses: u64,
    block_reads: u64,
    readaheads: u64,
    evictions: u64,
}

fn mem_json(m: &VexfsIndexMem) -> MemJson {
    MemJson {
        mem_bytes: m.mem_bytes,
        mem_budget: m.mem_budget,
        cache_hits: m.cache_hits,
        cache_misses: m.cache_misses,
        block_reads: m.block_reads,
        readaheads: m.readaheads,
        evictions: m.evictions,
    }
}

fn stats_json(s: &VexfsStats, m: Option<&VexfsIndexMem>, r: Option<&VexfsIndexReads>) -> StatsJson {
    StatsJson {
        dim: s.dim,
        metric: metric_name(s.metric).map_or_else(|| format!("unknown ({})", s.metric), |m| m.0.into()),
        m: s.m,
        ef_construction: s.ef_construction,
        vectors: s.vectors,
        pending: s.pending,
        deleted: s.deleted,
        capacity: s.capacity,
        levels: s.levels,
        entry_point: (s.entry_point != VEXFS_NO_ENTRY_POINT).then_some(s.entry_point),
        bytes_on_disk: s.bytes_on_disk,
        distance_impl: distance_impl_name(s.distance_impl)
            .map_or_else(|| format!("unknown ({})", s.distance_impl), |d| d.0.into()),
        mem: m.map(mem_json),
        reads: r.map(|r| ReadsJson {
            block_reads_bitmap: r.bitmap_reads,
            block_reads_map: r.map_reads,
            block_reads_data: r.data_reads,
            block_reads_hnsw: r.hnsw_reads,
            block_reads_codes: r.codes_reads,
        }),
    }
}

/// `1536 B`, `3.0 KiB`, `12.5 MiB`, `2.00 GiB`.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn format_stats(s: &VexfsStats, m: Option<&VexfsIndexMem>, r: Option<&VexfsIndexReads>) -> String {
    let j = stats_json(s, m, r);
    let metric = match metric_name(s.metric) {
        Some((n, what)) => format!("{n} ({what})"),
        None => j.metric.clone(),
    };
    let used = if s.capacity > 0 {
        format!(" ({:.1}% used)", s.vectors as f64 * 100.0 / s.capacity as f64)
    } else {
        String::new()
    };
    let entry = match j.entry_point {
        Some(e) => format!("slot {e}"),
        None => "none (empty)".into(),
    };
    let mut o = String::new();
    let _ = writeln!(o, "Dimension:            {}", s.dim);
    let _ = writeln!(o, "Metric:               {metric}");
    let _ = writeln!(o, "Vectors:              {} searchable (in the graph or pending)", s.vectors);
    let _ = writeln!(
        o,
        "Pending:              {} (acknowledged, not yet linked into the graph by the index worker)",
        s.pending
    );
    let _ = writeln!(o, "Deleted:              {} (not yet purged from the graph)", s.deleted);
    let _ = writeln!(o, "Capacity:             {} slots{used}", s.capacity);
    let _ = writeln!(
        o,
        "HNSW:                 m {} (level 0: {} links), ef_construction {}",
        s.m,
        u64::from(s.m) * 2,
        s.ef_construction
    );
    let _ = writeln!(o, "Levels:               {}", s.levels);
    let _ = writeln!(o, "Entry point:          {entry}");
    let _ = writeln!(
        o,
        "On disk:              {} ({} bytes, vector and index regions)",
        human_bytes(s.bytes_on_disk),
        s.bytes_on_disk
    );
    let dist = match distance_impl_name(s.distance_impl) {
        Some((n, what)) => format!("{n} ({what})"),
        None => j.distance_impl.clone(),
    };
    let _ = writeln!(o, "Distance kernel:      {dist}");
    if let Some(m) = m {
        let budget = if m.mem_budget == 0 {
            "no index_mem= budget".to_string()
        } else {
            format!("index_mem= budget {}", human_bytes(m.mem_budget))
        };
        let _ = writeln!(o, "Index memory:         {} held ({budget})", human_bytes(m.mem_bytes));
        let lookups = m.cache_hits.saturating_add(m.cache_misses);
        let rate = if lookups > 0 {
            format!(" ({:.1}% hits)", m.cache_hits as f64 * 100.0 / lookups as f64)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "Index cache:          {} hits, {} misses{rate}, {} block reads, {} read ahead, {} evicted (since mount)",
            m.cache_hits, m.cache_misses, m.block_reads, m.readaheads, m.evictions
        );
    }
    if let Some(r) = r {
        let _ = writeln!(
            o,
            "Block reads:          vector bitmap {}, map {}, data {}, hnsw {}, codes {} (since mount)",
            r.bitmap_reads, r.map_reads, r.data_reads, r.hnsw_reads, r.codes_reads
        );
    }
    o
}

/// `vexctl stats`.
pub fn stats(a: &StatsArgs) -> CmdResult {
    let f = open_vexfs(&a.path, false)?;
    let s = stats_of(&f, &a.path)?;
    // A module older than VEXFS_IOC_INDEX_MEM answers ENOTTY: its memory is left out.
    let m = crate::ioctl::index_mem(&f).ok();
    let r = crate::ioctl::index_reads(&f).ok();
    if a.json {
        let j = serde_json::to_string_pretty(&stats_json(&s, m.as_ref(), r.as_ref())).map_err(|e| e.to_string())?;
        return print_out(&(j + "\n"));
    }
    print_out(&format_stats(&s, m.as_ref(), r.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_output() {
        let s = VexfsStats {
            size: 88,
            dim: 384,
            metric: 0,
            m: 16,
            ef_construction: 200,
            vectors: 2000,
            deleted: 3,
            capacity: 16000,
            levels: 3,
            entry_point: 17,
            bytes_on_disk: 12 * 1024 * 1024 + 512 * 1024,
            distance_impl: 1,
            pending: 40,
            ..VexfsStats::default()
        };
        let t = format_stats(&s, None, None);
        for want in [
            "Dimension:            384\n",
            "Metric:               l2 (squared Euclidean distance)\n",
            "Vectors:              2000 searchable (in the graph or pending)\n",
            "Pending:              40 (acknowledged, not yet linked into the graph by the index worker)\n",
            "Deleted:              3 (not yet purged from the graph)\n",
            "Capacity:             16000 slots (12.5% used)\n",
            "HNSW:                 m 16 (level 0: 32 links), ef_construction 200\n",
            "Levels:               3\n",
            "Entry point:          slot 17\n",
            "On disk:              12.5 MiB (13107200 bytes, vector and index regions)\n",
            "Distance kernel:      sse2 (SSE2)\n",
        ] {
            assert!(t.contains(want), "{want}: {t}");
        }
        let v = serde_json::to_value(stats_json(&s, None, None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"dim": 384, "metric": "l2", "m": 16, "ef_construction": 200,
                "vectors": 2000, "pending": 40, "deleted": 3, "capacity": 16000, "levels": 3, "entry_point": 17,
                "bytes_on_disk": 13_107_200u64, "distance_impl": "sse2"})
        );
        let empty = VexfsStats { entry_point: VEXFS_NO_ENTRY_POINT, metric: 9, distance_impl: 7, ..s };
        assert_eq!(stats_json(&empty, None, None).entry_point, None);
        assert_eq!(stats_json(&empty, None, None).metric, "unknown (9)");
        assert_eq!(stats_json(&empty, None, None).distance_impl, "unknown (7)");
        assert!(format_stats(&empty, None, None).contains("Entry point:          none (empty)\n"));
        let m = VexfsIndexMem {
            size: 64,
            mem_bytes: 3 << 20,
            mem_budget: 4 << 20,
            cache_hits: 900,
            cache_misses: 100,
            block_reads: 60,
            readaheads: 50,
            evictions: 20,
            ..VexfsIndexMem::default()
        };
        let r = VexfsIndexReads {
            size: 64,
            bitmap_reads: 1,
            map_reads: 7,
            data_reads: 0,
            hnsw_reads: 30,
            codes_reads: 22,
            ..VexfsIndexReads::default()
        };
        assert!(!format_stats(&s, Some(&m), None).contains("Block reads:"));
        let t = format_stats(&s, Some(&m), Some(&r));
        assert!(
            t.contains("Block reads:          vector bitmap 1, map 7, data 0, hnsw 30, codes 22 (since mount)\n"),
            "{t}"
        );
        assert!(t.contains("Index memory:         3.0 MiB held (index_mem= budget 4.0 MiB)\n"), "{t}");
        assert!(
            t.contains(
                "Index cache:          900 hits, 100 misses (90.0% hits), 60 block reads, 50 read ahead, 20 evicted"
            ),
            "{t}"
        );
        let v = serde_json::to_value(stats_json(&s, Some(&m), Some(&r))).unwrap();
        assert_eq!(v["block_reads_map"], 7);
        assert_eq!(v["block_reads_data"], 0);
        assert_eq!(v["block_reads_codes"], 22);
        assert!(serde_json::to_value(stats_json(&s, Some(&m), None)).unwrap().get("block_reads_data").is_none());
        assert_eq!(v["mem_bytes"], 3 << 20);
        assert_eq!(v["mem_budget"], 4 << 20);
        assert_eq!(v["cache_hits"], 900);
        assert_eq!(v["cache_misses"], 100);
        assert_eq!(v["block_reads"], 60);
        assert_eq!(v["dim"], 384);
        assert!(format_stats(&s, Some(&VexfsIndexMem::default()), None).contains("(no index_mem= budget)"));
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
