//! `vexctl search-image`: k-nearest-neighbour searches over an unmounted image or block device,
//! computed in userspace by the core code the kernel runs (`vexfs_core::vindex`) on a read-only
//! memory map. Its output is that of the online `vexctl search` (the same table, the same JSON
//! lines with `--json`: [`crate::results`]), so the two can be compared line by line: this is
//! the reference the kernel's search is measured against.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use vexfs_image::vecfile::Fvecs;
use vexfs_image::vectors::{search_ef, Hit, Searcher};
use vexfs_image::vexfs_core::distance::Impl;
use vexfs_image::vexfs_core::embed::Rank;

use crate::abi::metric_name;
use crate::offline::CmdResult;
use crate::results::{self, format_json, format_table, printable, QueryArgs};

/// The arguments of `vexctl search-image`.
#[derive(Args, Debug)]
pub struct SearchImageArgs {
    /// Image file or block device, not mounted (it is only read).
    image: PathBuf,
    /// The queries and search options.
    #[command(flatten)]
    q: QueryArgs,
    /// Distance kernels: scalar, sse2, avx2 or avx512 (avx2's bits) [default: the best this CPU
    /// runs, which is the kernel's choice on the same CPU]. Name the kernel's to compare with a
    /// search made on another CPU.
    #[arg(long, value_name = "IMPL", value_parser = parse_impl)]
    dist_impl: Option<Impl>,
    /// Copy the image's vector regions into memory (on 2 MiB pages where transparent huge
    /// pages allow) before the first query, as the kernel's index blocks sit in its direct
    /// map: faster for many queries, at the cost of the regions' bytes in RAM and one read of
    /// them (without it, only the blocks the searches touch are read, through the page cache).
    #[arg(long)]
    resident: bool,
    /// Print the number of queries, the time spent searching (single thread, excluding
    /// opening the image and printing) and the searches per second to stderr.
    #[arg(long)]
    stats: bool,
}

impl SearchImageArgs {
    /// Checks what clap cannot: --ef against -k (as `vexctl search`).
    pub fn check(&self) -> Result<(), String> {
        self.q.check()
    }
}

fn parse_impl(s: &str) -> Result<Impl, String> {
    Impl::ALL
        .into_iter()
        .find(|i| i.name() == s)
        .ok_or_else(|| format!("unknown distance implementation {s:?} (scalar, sse2, avx2 or avx512)"))
}

/// `vexctl search-image`.
pub fn search_image(a: &SearchImageArgs) -> CmdResult {
    let k = a.q.k as usize;
    let ef = search_ef(k, a.q.ef.map_or(0, |e| e as usize)).map_err(|e| format!("--ef: {e}"))?;
    let mut file = Fvecs::open(&a.q.fvecs)?;
    let rows = a.q.rows(file.rows());
    let name = a.image.display();
    let mut s = Searcher::open(&a.image, ef).map_err(|e| format!("{name}: {e}"))?;
    if let Some(imp) = a.dist_impl {
        s.set_distance_impl(imp).map_err(|e| e.to_string())?;
    }
    if a.resident {
        s.load_vectors().map_err(|e| format!("{name}: --resident: {e}"))?;
    }
    if a.q.code_distances {
        s.set_rank(Rank::Codes).map_err(|e| format!("{name}: --code-distances: {e}"))?;
    }
    let sb = s.image().sb().clone();
    if sb.feature_incompat & vexfs_image::vexfs_core::format::superblock::FEATURE_INCOMPAT_RECOVER != 0 {
        return Err(format!(
            "{name} needs recovery (mounted read-write, or crashed): its journal holds changes this \
             search would not see; mount it, or run fsck.vexfs -y on it, first"
        ));
    }
    if file.dim() != sb.vec_dim {
        return Err(format!(
            "{}: queries of dimension {}, but {name} holds vectors of dimension {}",
            a.q.fvecs.display(),
            file.dim(),
            sb.vec_dim
        ));
    }
    // Every query is read (and checked) before the first search, which is what is timed.
    let queries = rows.clone().map(|r| file.row(r)).collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let mut found: Vec<Vec<Hit>> = Vec::with_capacity(queries.len());
    for (r, q) in rows.clone().zip(&queries) {
        found.push(s.search(q, k, ef).map_err(|e| format!("{name}: query {r}: {e}"))?);
    }
    let secs = start.elapsed().as_secs_f64();
    if a.stats {
        eprintln!(
            "vexctl: {} queries in {secs:.3} s, {:.0} searches/s (single thread, k {k}, ef {ef}, \
             {} distances, {} vectors)",
            queries.len(),
            queries.len() as f64 / secs.max(1e-9),
            s.image().device().distance_impl().name(),
            s.header().live,
        );
    }
    let texts = !a.q.json;
    let mut first_lines = std::collections::HashMap::new();
    if texts {
        for h in found.iter().flatten() {
            first_lines.entry(h.ino).or_insert_with(|| first_line(&s, h.ino));
        }
    }
    let paths = s.paths().map_err(|e| format!("{name}: {e}"))?;
    let metric = metric_name(sb.vec_metric).map_or("?", |m| m.0);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (r, found) in rows.zip(&found) {
        let hits: Vec<results::Hit> = found
            .iter()
            .map(|h| results::Hit {
                path: paths.get(&h.ino).cloned(),
                ino: h.ino,
                chunk: h.chunk,
                distance: h.distance(),
                text: None,
            })
            .collect();
        let o = if a.q.json {
            format_json(r, &hits)
        } else {
            let lines: Vec<String> =
                found.iter().map(|h| first_lines.get(&h.ino).cloned().unwrap_or_default()).collect();
            let mut t = format_table(r, metric, &hits, &lines, usize::MAX);
            if a.q.all {
                t.push('\n');
            }
            t
        };
        out.write_all(o.as_bytes()).map_err(|e| format!("writing output: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing output: {e}"))?;
    Ok(())
}

/// The first line of file `ino`'s first block, as text (empty when unreadable).
fn first_line(s: &Searcher, ino: u64) -> String {
    let img = s.image();
    let Ok(ino) = u32::try_from(ino) else {
        return String::new();
    };
    let Ok(inode) = img.inode(ino) else {
        return String::new();
    };
    if !inode.is_reg() {
        return String::new();
    }
    let start = img
        .extents(ino, &inode)
        .ok()
        .and_then(|ex| ex.into_iter().find(|e| e.logical == 0))
        .and_then(|e| img.read_block(e.start).ok());
    let Some(b) = start else { return String::new() };
    let n = (inode.size.min(b.len() as u64)) as usize;
    let text = String::from_utf8_lossy(&b[..n]);
    printable(text.lines().next().unwrap_or(""))
}
