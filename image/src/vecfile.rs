//! The `.fvecs` / `.ivecs` files of the ANN benchmarks (Jégou et al., the TEXMEX sets): each
//! row is its dimension `d` (u32 LE) followed by `d` float32 (fvecs) or int32 (ivecs) LE.

use std::path::Path;

use crate::{Error, Result};

fn rows(bytes: &[u8], what: &str) -> Result<Vec<Vec<u32>>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let bad = |msg: String| Error::Invalid(format!("{what}: row {}: {msg}", out.len()));
        if rest.len() < 4 {
            return Err(bad("truncated dimension".into()));
        }
        let (head, tail) = rest.split_at(4);
        let d = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let len = d
            .checked_mul(4)
            .filter(|&l| l <= tail.len())
            .ok_or_else(|| bad(format!("dimension {d} runs past the end of the file")))?;
        let (row, tail) = tail.split_at(len);
        out.push(row.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
        rest = tail;
    }
    Ok(out)
}

/// All rows of `.fvecs` bytes. Errors: `Invalid` for a truncated row (`what` names the file).
pub fn parse_fvecs(bytes: &[u8], what: &str) -> Result<Vec<Vec<f32>>> {
    Ok(rows(bytes, what)?.into_iter().map(|r| r.into_iter().map(f32::from_bits).collect()).collect())
}

/// All rows of `.ivecs` bytes.
pub fn parse_ivecs(bytes: &[u8], what: &str) -> Result<Vec<Vec<u32>>> {
    rows(bytes, what)
}

/// Reads an `.fvecs` file. Errors: `Io`, `Invalid` (truncated).
pub fn read_fvecs(path: impl AsRef<Path>) -> Result<Vec<Vec<f32>>> {
    let p = path.as_ref();
    let b = std::fs::read(p).map_err(Error::io(format!("reading {}", p.display())))?;
    parse_fvecs(&b, &p.display().to_string())
}

/// Reads an `.ivecs` file. Errors: `Io`, `Invalid` (truncated).
pub fn read_ivecs(path: impl AsRef<Path>) -> Result<Vec<Vec<u32>>> {
    let p = path.as_ref();
    let b = std::fs::read(p).map_err(Error::io(format!("reading {}", p.display())))?;
    parse_ivecs(&b, &p.display().to_string())
}

/// Writes rows as `.fvecs` bytes.
pub fn fvecs_bytes(rows: &[Vec<f32>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        for x in r {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}
