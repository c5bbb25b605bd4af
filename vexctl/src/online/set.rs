//! `vexctl set`: a file's embeddings from rows of an `.fvecs` file, in one atomic call.

use std::ops::Range;
use std::path::PathBuf;

use clap::Args;
use vexfs_image::vecfile::Fvecs;

use super::{check_dim, ioctl_error, open_vexfs, stats_of, Call, Sent};
use crate::abi::{VEXFS_MAX_CHUNKS, VEXFS_SET_INDEX_NOW, VEXFS_SET_TRUNCATE};
use crate::ioctl;
use crate::offline::CmdResult;

/// The arguments of `vexctl set`.
#[derive(Args, Debug)]
pub struct SetArgs {
    /// A regular file on a mounted vexfs (opened for writing).
    file: PathBuf,
    /// The vectors (.fvecs).
    #[arg(long, value_name = "F")]
    fvecs: PathBuf,
    /// Row of F that becomes the file's only embedding (chunk 0) [default: 0].
    #[arg(long, value_name = "R", conflicts_with = "rows")]
    row: Option<u64>,
    /// Rows A to B-1 of F (A..B; A..=B includes B) become chunks 0, 1, ... of the file, and
    /// its only ones, in one atomic call.
    #[arg(long, value_name = "A..B", value_parser = parse_rows)]
    rows: Option<Range<u64>>,
    /// Link the vectors into the graph before returning (VEXFS_SET_INDEX_NOW); default: pending,
    /// linked by the index worker, searchable at once.
    #[arg(long)]
    index_now: bool,
}

/// The SET flags of a command: it replaces the file's embeddings, and `--index-now`.
pub(crate) fn set_flags(index_now: bool) -> u32 {
    VEXFS_SET_TRUNCATE | if index_now { VEXFS_SET_INDEX_NOW } else { 0 }
}

/// `A..B` (B excluded) or `A..=B` (B included), not empty.
fn parse_rows(s: &str) -> Result<Range<u64>, String> {
    let num = |x: &str| x.trim().parse::<u64>().map_err(|_| format!("'{x}' is not a row number"));
    let (a, b) = s.split_once("..").ok_or_else(|| format!("'{s}' is not a range A..B"))?;
    let a = num(a)?;
    let end = match b.strip_prefix('=') {
        Some(b) => num(b)?.checked_add(1).ok_or("range too large")?,
        None => num(b)?,
    };
    if end <= a {
        return Err(format!("'{s}' is empty"));
    }
    Ok(a..end)
}

/// `vexctl set`.
pub fn set(a: &SetArgs) -> CmdResult {
    let mut v = Fvecs::open(&a.fvecs)?;
    let f = open_vexfs(&a.file, true)?;
    let dim = stats_of(&f, &a.file)?.dim;
    check_dim(&v, dim, &a.file)?;
    let rows = match &a.rows {
        Some(r) => r.clone(),
        None => {
            let r = a.row.unwrap_or(0);
            r..r.saturating_add(1)
        }
    };
    let n = rows.end - rows.start;
    if n > u64::from(VEXFS_MAX_CHUNKS) {
        return Err(format!(
            "--rows {}..{} is {n} vectors: a file carries at most {VEXFS_MAX_CHUNKS} embeddings",
            rows.start, rows.end
        ));
    }
    let vectors = v.rows_range(rows.start, n)?;
    let sent = Sent { dim, count: u32::try_from(n).unwrap_or(u32::MAX), ..Sent::default() };
    ioctl::set_embeddings(&f, dim, 0, set_flags(a.index_now), &vectors)
        .map_err(|e| ioctl_error(&a.file, Call::Set, e, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ranges() {
        assert_eq!(parse_rows("3..7"), Ok(3..7));
        assert_eq!(parse_rows("3..=7"), Ok(3..8));
        assert_eq!(parse_rows("0..1"), Ok(0..1));
        assert!(parse_rows("5..5").unwrap_err().contains("empty"));
        assert!(parse_rows("7..3").is_err());
        assert!(parse_rows("3").unwrap_err().contains("not a range"));
        assert!(parse_rows("a..3").unwrap_err().contains("not a row number"));
    }

    #[test]
    fn flags() {
        assert_eq!(set_flags(false), VEXFS_SET_TRUNCATE);
        assert_eq!(set_flags(true), VEXFS_SET_TRUNCATE | VEXFS_SET_INDEX_NOW);
        assert_eq!(set_flags(true), 3);
    }
}
