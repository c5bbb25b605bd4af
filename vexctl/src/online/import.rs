//! `vexctl import`: one file per vector, with its embedding and optional text; resumable.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vexfs_image::texts::Texts;
use vexfs_image::vecfile::Fvecs;

use super::set::set_flags;
use super::{check_dim, ioctl_error, open_vexfs, print_out, stats_of, Call, Sent};
use crate::ioctl;
use crate::offline::CmdResult;

/// The arguments of `vexctl import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Vectors (.fvecs: per row an int32 dimension, then that many float32).
    #[arg(value_name = "VECTORS.fvecs")]
    vectors: PathBuf,
    /// Directory on a mounted vexfs (created if missing): row i becomes the file DIR/i.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Passages, one JSON object per line: the "text" of line i is the content of DIR/i
    /// (without this option the files are empty).
    #[arg(long, value_name = "PASSAGES.jsonl")]
    texts: Option<PathBuf>,
    /// Rows per batch: the filesystem is synced (syncfs) after each, so a crash loses at most
    /// one batch; run the same command again to resume.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(short, long)]
    quiet: bool,
    /// Link each vector into the graph before its SET returns (VEXFS_SET_INDEX_NOW); default:
    /// pending, linked by the index worker, searchable at once (`vexctl wait-indexed DIR` waits
    /// for the worker).
    #[arg(long)]
    index_now: bool,
}

/// The deepest existing directory at or above `p`.
fn existing_ancestor(p: &Path) -> PathBuf {
    let mut cur = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    loop {
        if cur.exists() {
            return cur.to_path_buf();
        }
        match cur.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => cur = parent,
            _ => return PathBuf::from("."),
        }
    }
}

/// Imports one row: `Ok(false)` if its file already carries an embedding (skipped).
fn import_row(path: &Path, dim: u32, flags: u32, text: &str, v: &[f32]) -> Result<bool, String> {
    match File::open(path) {
        Ok(f) => {
            if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                return Err(format!(
                    "{} is a directory: import into a directory without one named after a row",
                    path.display()
                ));
            }
            let sent = Sent { dim, count: 1, ..Sent::default() };
            let chunks = ioctl::chunk_count(&f, dim).map_err(|e| ioctl_error(path, Call::Get, e, sent))?;
            if chunks > 0 {
                return Ok(false);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let sent = Sent { dim, count: 1, ..Sent::default() };
    ioctl::set_embeddings(&f, dim, 0, flags, v).map_err(|e| ioctl_error(path, Call::Set, e, sent))?;
    Ok(true)
}

/// `imported 2000 rows into DIR, skipped 0 (already embedded), in 1.2 s: 1666.7 vectors/s`.
fn import_summary(dir: &Path, imported: u64, skipped: u64, secs: f64) -> String {
    let rate = if secs > 0.0 { imported as f64 / secs } else { 0.0 };
    format!(
        "imported {imported} rows into {}, skipped {skipped} (already embedded), in {secs:.1} s: \
         {rate:.1} vectors/s",
        dir.display()
    )
}

/// `vexctl import`.
pub fn import(a: &ImportArgs) -> CmdResult {
    let mut vecs = Fvecs::open(&a.vectors)?;
    // The filesystem first (before creating DIR), then every input row (before the first change).
    let above = existing_ancestor(&a.dir);
    open_vexfs(&above, false).map_err(|e| format!("cannot import into {}: {e}", a.dir.display()))?;
    std::fs::create_dir_all(&a.dir).map_err(|e| format!("cannot create {}: {e}", a.dir.display()))?;
    let dirf = open_vexfs(&a.dir, false)?;
    let st = stats_of(&dirf, &a.dir)?;
    check_dim(&vecs, st.dim, &a.dir)?;
    vecs.check_all()?;
    let rows = vecs.rows();
    let mut texts = match &a.texts {
        Some(p) => {
            let lines = Texts::open(p)?.check_all()?;
            if lines < rows {
                return Err(format!(
                    "{} has {lines} lines but {} has {rows} rows: line i holds the text of row i",
                    p.display(),
                    a.vectors.display()
                ));
            }
            if lines > rows {
                eprintln!(
                    "vexctl: note: {} has {lines} lines, {} only {rows} rows: lines {rows} on are not used",
                    p.display(),
                    a.vectors.display()
                );
            }
            Some(Texts::open(p)?)
        }
        None => None,
    };

    let bar = ProgressBar::new(rows);
    if a.quiet || !io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} rows, {per_sec}, eta {eta}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let (mut imported, mut skipped) = (0u64, 0u64);
    let sync = |dirf: &File| nix::unistd::syncfs(dirf).map_err(|e| format!("syncfs {}: {e}", a.dir.display()));
    let result = vecs.for_each(|row, v| {
        let text = match &mut texts {
            Some(t) => t.next_text()?.unwrap_or_default(),
            None => String::new(),
        };
        if import_row(&a.dir.join(row.to_string()), st.dim, set_flags(a.index_now), &text, v)? {
            imported += 1;
        } else {
            skipped += 1;
        }
        bar.inc(1);
        if (row + 1) % a.batch == 0 {
            sync(&dirf)?;
        }
        Ok(())
    });
    let result = result.and_then(|()| sync(&dirf));
    bar.finish_and_clear();
    let summary = import_summary(&a.dir, imported, skipped, start.elapsed().as_secs_f64());
    match result {
        Ok(()) => print_out(&(summary + "\n")),
        Err(e) => Err(format!(
            "{e}\nvexctl: stopped: {summary}; run the same command again to resume (rows whose \
             file already carries an embedding are skipped)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_ancestor() {
        assert_eq!(
            import_summary(Path::new("/mnt/docs"), 2000, 5, 4.0),
            "imported 2000 rows into /mnt/docs, skipped 5 (already embedded), in 4.0 s: 500.0 vectors/s"
        );
        let t = tempfile::tempdir().unwrap();
        assert_eq!(existing_ancestor(&t.path().join("x/y/z")), t.path());
    }
}
