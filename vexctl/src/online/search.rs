//! `vexctl search`: the k nearest embeddings to query vectors, through VEXFS_IOC_SEARCH, shown
//! with the paths of their files (see [`crate::results`] for the output).

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use vexfs_image::vecfile::Fvecs;

use super::{check_dim, ioctl_error, open_vexfs, stats_of, Call, Sent};
use crate::abi::{metric_name, VEXFS_SEARCH_CODE_DISTANCES};
use crate::ioctl;
use crate::mount::{mount_root, InodeMap};
use crate::offline::CmdResult;
use crate::results::{format_json, format_table, Hit, QueryArgs};

/// The arguments of `vexctl search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Any file or directory of the mounted vexfs: the whole filesystem is searched, and
    /// results are shown relative to its mount point.
    path: PathBuf,
    /// The queries and search options.
    #[command(flatten)]
    q: QueryArgs,
    /// With --json, add each result's "text": the start of its file (at most 64 KiB). The
    /// table always shows the first line of each file.
    #[arg(long)]
    texts_from_files: bool,
}

impl SearchArgs {
    /// Checks what clap cannot: --ef against -k.
    pub fn check(&self) -> Result<(), String> {
        self.q.check()
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
    let mut q = Fvecs::open(&a.q.fvecs)?;
    let f = open_vexfs(&a.path, false)?;
    let st = stats_of(&f, &a.path)?;
    check_dim(&q, st.dim, &a.path)?;
    let metric = metric_name(st.metric).map_or("?", |m| m.0);
    let rows = a.q.rows(q.rows());
    let root = mount_root(&a.path)?;
    // Built at the first non-empty result, once for all queries.
    let mut map: Option<InodeMap> = None;
    let width = output_width();
    let ef = a.q.ef.unwrap_or(0);
    let mut out = io::stdout().lock();
    for r in rows {
        let v = q.row(r)?;
        let sent = Sent { dim: st.dim, k: a.q.k, ef, ..Sent::default() };
        let flags = if a.q.code_distances { VEXFS_SEARCH_CODE_DISTANCES } else { 0 };
        let results =
            ioctl::search(&f, &v, a.q.k, ef, flags).map_err(|e| ioctl_error(&a.path, Call::Search, e, sent))?;
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
        let s = if a.q.json {
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
            if a.q.all {
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
        let q = QueryArgs {
            fvecs: PathBuf::from("q"),
            row: None,
            all: false,
            k: 10,
            ef: Some(9),
            code_distances: false,
            json: false,
        };
        let a = SearchArgs { path: PathBuf::from("/"), q: q.clone(), texts_from_files: false };
        assert_eq!(a.check().unwrap_err(), "--ef 9 is below -k 10: the candidate list must hold at least K entries");
        assert!(SearchArgs { q: QueryArgs { ef: Some(10), ..q }, ..a }.check().is_ok());
        assert_eq!(QueryArgs { row: Some(3), ..a.q.clone() }.rows(9), 3..4);
        assert_eq!(QueryArgs { all: true, ..a.q.clone() }.rows(9), 0..9);
    }
}
