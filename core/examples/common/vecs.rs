//! The `.fvecs`/`.ivecs` reader of vexfs-core's examples and tests (included with
//! `#[path = ...] mod vecs;`): each row a little-endian `u32` dimension, then that many 32-bit
//! components (`f32` in `.fvecs`, ids in `.ivecs`).
//!
//! The tools' reader is `vexfs_image::vecfile` (streaming, every row checked, messages naming
//! row and component). vexfs-core cannot use it, not even as a dev-dependency: vexfs-image
//! depends on vexfs-core, so the package graph would have a cycle (and core's unit tests would
//! link a second copy of core). This one only reads whole, well-formed files, and says which
//! file is not.

// Each example or test including this file uses a part of it.
#![allow(dead_code)]

use std::path::Path;

/// All components of a file, row after row, and the row width. Errors: the file cannot be
/// read, or a row is cut or differs in width from row 0.
pub fn read_words(path: &Path) -> Result<(Vec<u32>, usize), String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    let words: Vec<u32> = bytes
        .chunks(4)
        .map(|c| <[u8; 4]>::try_from(c).map(u32::from_le_bytes))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{name}: {} bytes is not a whole number of 32-bit words", bytes.len()))?;
    let width = words.first().map_or(0, |&d| d as usize);
    if width == 0 || words.len() % (width + 1) != 0 {
        return Err(format!("{name}: not rows of dimension {width} (an empty or cut file?)"));
    }
    let mut out = Vec::with_capacity(words.len() / (width + 1) * width);
    for (i, row) in words.chunks(width + 1).enumerate() {
        match row.split_first() {
            Some((&d, v)) if d as usize == width => out.extend_from_slice(v),
            _ => return Err(format!("{name}: row {i} is not of dimension {width}")),
        }
    }
    Ok((out, width))
}

/// The rows of an `.fvecs` file.
pub fn read_fvecs(path: &Path) -> Result<Vec<Vec<f32>>, String> {
    let (words, width) = read_words(path)?;
    Ok(words.chunks(width).map(|r| r.iter().map(|&w| f32::from_bits(w)).collect()).collect())
}

/// The rows of an `.ivecs` file.
pub fn read_ivecs(path: &Path) -> Result<Vec<Vec<u32>>, String> {
    let (words, width) = read_words(path)?;
    Ok(words.chunks(width).map(<[u32]>::to_vec).collect())
}
