//! How search results are shown, by `vexctl search` (through the kernel) and `vexctl
//! search-image` (in userspace) alike, so that the two can be compared line by line: a table per
//! query, or one JSON object per query and line.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::abi::{VEXFS_MAX_EF, VEXFS_MAX_K};

/// The query options `vexctl search` and `vexctl search-image` share (flattened into both).
#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The queries (.fvecs, of the filesystem's dimension).
    #[arg(long, value_name = "Q")]
    pub fvecs: PathBuf,
    /// The row of Q to search for [default: 0].
    #[arg(long, value_name = "R", conflicts_with = "all")]
    pub row: Option<u64>,
    /// Search for every row of Q, in order.
    #[arg(long)]
    pub all: bool,
    /// Results per query.
    #[arg(short, long, value_name = "K", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(VEXFS_MAX_K)))]
    pub k: u32,
    /// HNSW candidate list size, at least K [default: the kernel's, max(K, 64)].
    #[arg(long, value_name = "EF",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(VEXFS_MAX_EF)))]
    pub ef: Option<u32>,
    /// Rank by the SQ8 or PQ codes' distances and print those (approximate), reading no
    /// float32 vector: VEXFS_SEARCH_CODE_DISTANCES. Only on a filesystem made with --quant
    /// sq8 or pq.
    #[arg(long)]
    pub code_distances: bool,
    /// One JSON object per query and line: {"query": R, "results": [{"path", "ino", "chunk",
    /// "distance"}, ...]}, the same from `vexctl search` and `vexctl search-image`.
    #[arg(long)]
    pub json: bool,
}

impl QueryArgs {
    /// Checks what clap cannot: a usage error when `--ef` is below `-k`.
    pub fn check(&self) -> Result<(), String> {
        match self.ef {
            Some(ef) if ef < self.k => {
                Err(format!("--ef {ef} is below -k {k}: the candidate list must hold at least K entries", k = self.k))
            }
            _ => Ok(()),
        }
    }

    /// The rows of a query file of `n` rows to search: all with `--all`, else `--row` (0).
    pub fn rows(&self, n: u64) -> Range<u64> {
        if self.all {
            0..n
        } else {
            let r = self.row.unwrap_or(0);
            r..r.saturating_add(1)
        }
    }
}

/// One search result, with its path.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Hit {
    /// Relative to the mount root; `null` when the walk did not find the inode (a file created
    /// or removed meanwhile, or in a directory vexctl could not read).
    pub path: Option<String>,
    /// The file's inode number.
    pub ino: u64,
    /// The embedding's chunk index in its file.
    pub chunk: u32,
    /// The distance to the query (the metric's, as the kernel computes it).
    pub distance: f32,
    /// The start of the file (`vexctl search --json --texts-from-files`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Serialize)]
struct QueryJson<'a> {
    query: u64,
    results: &'a [Hit],
}

/// One query's results as one JSON line: `{"query": Q, "results": [{"path", "ino", "chunk",
/// "distance"[, "text"]}, ...]}`.
pub fn format_json(query: u64, hits: &[Hit]) -> String {
    serde_json::to_string(&QueryJson { query, results: hits }).unwrap_or_default() + "\n"
}

/// Replaces control characters (tabs, escapes) by spaces: table cells stay on one line and
/// cannot drive the terminal.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// At most `width` characters of `s`, the last one `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('…');
    }
    out
}

/// The table of one query: rank, distance, path, chunk and the first line of the file's text
/// (`first_lines[i]` for `hits[i]`), each line cut to `width` characters (`usize::MAX`: not cut).
pub fn format_table(query: u64, metric: &str, hits: &[Hit], first_lines: &[String], width: usize) -> String {
    let mut o = String::new();
    if hits.is_empty() {
        let _ = writeln!(o, "query {query}: no results (the filesystem holds no embeddings)");
        return o;
    }
    let _ = writeln!(o, "query {query}: {} nearest ({metric})", hits.len());
    let paths: Vec<String> = hits
        .iter()
        .map(|h| match &h.path {
            Some(p) => printable(p),
            None => format!("<inode {}>", h.ino),
        })
        .collect();
    let pw = paths.iter().map(|p| p.chars().count()).max().unwrap_or(0).max(4);
    let mut lines = vec![format!("{:>4}  {:>10}  {:<pw$}  {:>5}  text", "rank", "distance", "path", "chunk")];
    for (i, h) in hits.iter().enumerate() {
        let text = first_lines.get(i).map(String::as_str).unwrap_or("");
        lines.push(format!(
            "{:>4}  {:>10.4}  {:<pw$}  {:>5}  {}",
            i + 1,
            h.distance,
            paths[i],
            h.chunk,
            printable(text)
        ));
    }
    for l in lines {
        o += fit(l.trim_end(), width).as_str();
        o.push('\n');
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(path: Option<&str>, ino: u64, chunk: u32, distance: f32) -> Hit {
        Hit { path: path.map(str::to_string), ino, chunk, distance, text: None }
    }

    #[test]
    fn search_json_shape() {
        let hits = [hit(Some("docs/12"), 14, 0, 0.5), hit(None, 99, 3, 1.25)];
        let s = format_json(7, &hits);
        assert_eq!(
            s,
            "{\"query\":7,\"results\":[{\"path\":\"docs/12\",\"ino\":14,\"chunk\":0,\"distance\":0.5},\
             {\"path\":null,\"ino\":99,\"chunk\":3,\"distance\":1.25}]}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["query"], 7);
        let r = v["results"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        for x in r {
            let keys: Vec<&str> = x.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 4);
            for k in ["path", "ino", "chunk", "distance"] {
                assert!(keys.contains(&k), "{k}");
            }
        }
        // f32 distances print as the shortest decimal that reads back the same f32.
        let d = 0.903_621_2_f32;
        let v: serde_json::Value = serde_json::from_str(&format_json(0, &[hit(Some("a"), 1, 0, d)])).unwrap();
        assert_eq!(v["results"][0]["distance"].as_f64().unwrap() as f32, d);
        assert_eq!(format_json(3, &[]), "{\"query\":3,\"results\":[]}\n");
        let mut t = hit(Some("a"), 1, 0, 0.0);
        t.text = Some("line one\nline two".into());
        assert_eq!(
            format_json(0, &[t]),
            "{\"query\":0,\"results\":[{\"path\":\"a\",\"ino\":1,\"chunk\":0,\"distance\":0.0,\
             \"text\":\"line one\\nline two\"}]}\n"
        );
    }

    #[test]
    fn search_table() {
        let hits = [hit(Some("docs/12"), 14, 0, 0.5), hit(Some("docs/1999"), 2001, 2, 1.234_56), hit(None, 99, 0, 2.0)];
        let lines =
            ["Instances of set are compared to instances of frozenset".to_string(), "tab\there".into(), String::new()];
        let t = format_table(4, "l2", &hits, &lines, 100);
        assert_eq!(
            t,
            "query 4: 3 nearest (l2)\n\
             rank    distance  path        chunk  text\n   \
             1      0.5000  docs/12         0  Instances of set are compared to instances of frozenset\n   \
             2      1.2346  docs/1999       2  tab here\n   \
             3      2.0000  <inode 99>      0\n"
        );
        // Cut to the width, with an ellipsis.
        let narrow = format_table(4, "l2", &hits, &lines, 50);
        for l in narrow.lines() {
            assert!(l.chars().count() <= 50, "{l}");
        }
        assert!(narrow.contains("docs/12         0  Instances of…\n"), "{narrow}");
        assert_eq!(format_table(0, "l2", &[], &[], 80), "query 0: no results (the filesystem holds no embeddings)\n");
    }

    #[test]
    fn fit_and_printable() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 3), "abc");
        assert_eq!(fit("ééé", 2), "é…");
        assert_eq!(printable("a\tb\x1b[31m"), "a b [31m");
    }
}
