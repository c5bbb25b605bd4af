//! `vexctl search`: the k nearest embeddings to query vectors, through VEXFS_IOC_SEARCH, shown
//! with the paths of their files (see [`crate::results`] for the output).

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use vexfs_image::vecfile::Fvecs;

use super::{check_dim, ioctl_error, open_vexfs, stats_of, Call, Sent};
use crate::abi::{metric_name, VEXFS_MAX_EF, VEXFS_MAX_K};
use crate::ioctl;
use crate::mount::{mount_root, InodeMap};
use crate::offline::CmdResult;
use crate::results::{format_json, format_table, Hit};

/// The arguments of `vexctl search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Any file or directory of the mounted vexfs: the whole filesystem is searched, and
    /// results are shown relative to its mount point.
    path: PathBuf,
    /// The queries (.fvecs).
    #[arg(long, value_name = "Q")]
    fvecs: PathBuf,
    /// The row of Q to search for [default: 0].
    #[arg(long, value_name = "R", conflicts_with = "all")]
    row: Option<u64>,
    /// Search for every row of Q, in order.
    #[arg(long)]
    all: bool,
    /// Results per query.
    #[arg(short, long, value_name = "K", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(VEXFS_MAX_K)))]
    k: u32,
    /// HNSW candidate list size, at least K [default: the kernel's, max(K, 64)].
    #[arg(long, value_name = "EF",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(VEXFS_MAX_EF)))]
    ef: Option<u32>,
    /// One JSON object per query and line: {"query": R, "results": [{"path", "ino", "chunk",
    /// "distance"}, ...]}.
    #[arg(long)]
    json: bool,
    /// With --json, add each result's "text": the start of its file (at most 64 KiB). The
    /// table always shows the first line of each file.
    #[arg(long)]
    texts_from_files: bool,
}

impl SearchArgs {
    /// Checks what clap cannot: --ef against -k.
    pub fn check(&self) -> Result<(), String> {
        check_ef(self.k, self.ef)
    }
}

/// Fails (a usage error) when `--ef` is below `-k`; shared with `vexctl search-image`.
pub fn check_ef(k: u32, ef: Option<u32>) -> Result<(), String> {
    match ef {
        Some(ef) if ef < k => {
            Err(format!("--ef {ef} is below -k {k}: the candidate list must hold at least K entries"))
        }
        _ => Ok(()),
    }
}

/// At most `limit` bytes from the start of `path`, as text (invalid UTF-8 replaced).
fn read_start(path: &Path, limit: u64) -> Option<String> {
    let mut buf = Vec::new();
    File::open(path).ok()?.take(limit).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Columns of the terminal on stdout, else `COLUMNS`, else 80.
fn output_width() -> usize {
    let out = io::stdout();
    if out.is_terminal() {
        if let Some(c) = ioctl::terminal_columns(&out).filter(|&c| c > 0) {
            return usize::from(c);
        }
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&c| c > 0).unwrap_or(80)
}

/// `vexctl search`.
pub fn search(a: &SearchArgs) -> CmdResult {
    a.check()?;
    let mut q = Fvecs::open(&a.fvecs)?;
    let f = open_vexfs(&a.path, false)?;
    let st = stats_of(&f, &a.path)?;
    check_dim(&q, st.dim, &a.path)?;
    let metric = metric_name(st.metric).map_or("?", |m| m.0);
    let rows = if a.all {
        0..q.rows()
    } else {
        let r = a.row.unwrap_or(0);
        r..r.saturating_add(1)
    };
    let root = mount_root(&a.path)?;
    // Built at the first non-empty result, once for all queries.
    let mut map: Option<InodeMap> = None;
    let width = output_width();
    let ef = a.ef.unwrap_or(0);
    let mut out = io::stdout().lock();
    for r in rows {
        let v = q.row(r)?;
        let sent = Sent { dim: st.dim, k: a.k, ef, ..Sent::default() };
        let results = ioctl::search(&f, &v, a.k, ef).map_err(|e| ioctl_error(&a.path, Call::Search, e, sent))?;
        if map.is_none() && !results.is_empty() {
            let m = InodeMap::build(&root)?;
            for d in &m.unreadable {
                eprintln!("vexctl: warning: cannot list {}: results below it have no path", root.join(d).display());
            }
            map = Some(m);
        }
        let mut hits: Vec<Hit> = results
            .iter()
            .map(|x| Hit {
                path: map.as_ref().and_then(|m| m.path(x.ino)).map(|p| p.to_string_lossy().into_owned()),
                ino: x.ino,
                chunk: x.chunk,
                distance: x.distance,
                text: None,
            })
            .collect();
        let text_of = |h: &Hit, limit| h.path.as_ref().and_then(|p| read_start(&root.join(p), limit));
        let s = if a.json {
            if a.texts_from_files {
                for h in &mut hits {
                    h.text = Some(text_of(h, 64 * 1024).unwrap_or_default());
                }
            }
            format_json(r, &hits)
        } else {
            let first_lines: Vec<String> = hits
                .iter()
                .map(|h| {
                    let t = text_of(h, 4096).unwrap_or_default();
                    t.lines().next().unwrap_or("").to_string()
                })
                .collect();
            let mut t = format_table(r, metric, &hits, &first_lines, width);
            if a.all {
                t.push('\n');
            }
            t
        };
        out.write_all(s.as_bytes()).map_err(|e| format!("writing output: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_checks_ef_against_k() {
        let a = SearchArgs {
            path: PathBuf::from("/"),
            fvecs: PathBuf::from("q"),
            row: None,
            all: false,
            k: 10,
            ef: Some(9),
            json: false,
            texts_from_files: false,
        };
        assert_eq!(a.check().unwrap_err(), "--ef 9 is below -k 10: the candidate list must hold at least K entries");
        assert!(SearchArgs { ef: Some(10), ..a }.check().is_ok());
    }
}
