//! The vexfs on-disk format, version 1. `docs/FORMAT.md` describes the same bytes in prose;
//! each submodule's docs give the byte layout of its structure.
//!
//! All integers are little-endian. Blocks are [`BLOCK_SIZE`] bytes; block `n` starts at byte
//! `n * 4096` of the device.

pub mod block;
pub mod dir;
pub mod extent;
pub mod inode;
pub mod journal;
#[cfg(any(test, feature = "std"))]
pub mod layout;
pub mod le;
pub mod superblock;
pub mod vector;

/// Bytes per block.
pub const BLOCK_SIZE: usize = 4096;
/// log2 of [`BLOCK_SIZE`].
pub const BLOCK_SHIFT: u32 = 12;
/// Bytes per inode.
pub const INODE_SIZE: usize = 256;
/// Inodes per inode-table block.
pub const INODES_PER_BLOCK: usize = BLOCK_SIZE / INODE_SIZE;

/// Whether bit `i` is set in a bitmap block slice (bit `i % 8` of byte `i / 8`).
pub fn bit_test(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Sets or clears bit `i`; out-of-range bits are ignored.
pub fn bit_set(bits: &mut [u8], i: usize, on: bool) {
    if let Some(b) = bits.get_mut(i / 8) {
        if on {
            *b |= 1 << (i % 8);
        } else {
            *b &= !(1 << (i % 8));
        }
    }
}

/// First clear bit at or after `from` and below `limit`, scanning a bitmap block slice.
pub fn bit_find_clear(bits: &[u8], from: usize, limit: usize) -> Option<usize> {
    let limit = limit.min(bits.len() * 8);
    let mut i = from;
    while i < limit {
        let byte = *bits.get(i / 8)?;
        if byte == 0xff && i % 8 == 0 {
            i += 8;
            continue;
        }
        if byte & (1 << (i % 8)) == 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}
