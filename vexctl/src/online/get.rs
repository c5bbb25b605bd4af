//! `vexctl get`: a file's embeddings, as text or JSON.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use super::{ioctl_error, open_vexfs, print_out, stats_of, Call, Sent};
use crate::ioctl;
use crate::offline::CmdResult;

/// The arguments of `vexctl get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// A file on a mounted vexfs.
    file: PathBuf,
    /// Print one JSON object: {"path": FILE, "chunks": [[...], ...]}.
    #[arg(long)]
    json: bool,
}

/// All the embeddings of `f`, one vector per chunk, from one GET that had room for all of them.
fn all_embeddings(f: &File, path: &Path, dim: u32) -> Result<Vec<Vec<f32>>, String> {
    let mut capacity = 16;
    loop {
        let sent = Sent { dim, count: capacity, ..Sent::default() };
        let got = ioctl::get_embeddings(f, dim, 0, capacity).map_err(|e| ioctl_error(path, Call::Get, e, sent))?;
        if got.total <= got.count {
            let d = usize::try_from(dim).unwrap_or(usize::MAX).max(1);
            return Ok(got.vectors.chunks(d).map(<[f32]>::to_vec).collect());
        }
        // More chunks than room: ask again for all of them at once.
        capacity = got.total;
    }
}

#[derive(Serialize)]
struct GetJson<'a> {
    path: &'a str,
    chunks: &'a [Vec<f32>],
}

fn format_get(path: &str, dim: u32, chunks: &[Vec<f32>], json: bool) -> String {
    if json {
        let j = GetJson { path, chunks };
        return serde_json::to_string(&j).unwrap_or_default() + "\n";
    }
    let mut s =
        format!("{path}: {} chunk{} of dimension {dim}\n", chunks.len(), if chunks.len() == 1 { "" } else { "s" });
    for (i, c) in chunks.iter().enumerate() {
        let _ = write!(s, "chunk {i}:");
        for x in c {
            let _ = write!(s, " {x}");
        }
        s.push('\n');
    }
    s
}

/// `vexctl get`.
pub fn get(a: &GetArgs) -> CmdResult {
    let f = open_vexfs(&a.file, false)?;
    let dim = stats_of(&f, &a.file)?.dim;
    let chunks = all_embeddings(&f, &a.file, dim)?;
    print_out(&format_get(&a.file.display().to_string(), dim, &chunks, a.json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_output() {
        let chunks = vec![vec![0.5, -1.0, 3.25], vec![0.1, 0.0, 1e-7]];
        assert_eq!(
            format_get("/mnt/a", 3, &chunks, false),
            "/mnt/a: 2 chunks of dimension 3\nchunk 0: 0.5 -1 3.25\nchunk 1: 0.1 0 0.0000001\n"
        );
        assert_eq!(
            format_get("/mnt/a", 3, &chunks, true),
            "{\"path\":\"/mnt/a\",\"chunks\":[[0.5,-1.0,3.25],[0.1,0.0,1e-7]]}\n"
        );
        assert_eq!(format_get("b", 3, &[], true), "{\"path\":\"b\",\"chunks\":[]}\n");
        assert_eq!(format_get("b", 3, &[], false), "b: 0 chunks of dimension 3\n");
    }
}
