//! The vexfs on-disk format, version 1. `docs/FORMAT.md` describes the same bytes in prose;
//! each submodule's docs give the byte layout of its structure.
//!
//! All integers are little-endian. Blocks are [`BLOCK_SIZE`] bytes; block `n` starts at byte
//! `n * 4096` of the device.
//!
//! Every decoder here reads bytes from disk, so none may panic, overflow or narrow a disk value
//! unchecked: these lints hold that for the whole module (the kernel compiles it as source, so
//! they sit here and not on a crate root). Bounds come from `get()` and the [`le`] readers,
//! arithmetic is checked or stated wrapping, narrowing uses `try_from`.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

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
pub mod xattr;

/// Bytes per block.
pub const BLOCK_SIZE: usize = 4096;
/// log2 of [`BLOCK_SIZE`].
pub const BLOCK_SHIFT: u32 = 12;
/// Bytes per inode.
pub const INODE_SIZE: usize = 256;
/// Inodes per inode-table block.
pub const INODES_PER_BLOCK: usize = BLOCK_SIZE / INODE_SIZE;
/// [`BLOCK_SIZE`] as a `u64`, for arithmetic on block counts and device offsets.
pub const BLOCK_SIZE_U64: u64 = BLOCK_SIZE as u64;
/// [`INODES_PER_BLOCK`] as a `u64`.
pub const INODES_PER_BLOCK_U64: u64 = INODES_PER_BLOCK as u64;
/// Bits of one bitmap block: the blocks, inodes or slots one bitmap block covers.
pub const BITS_PER_BLOCK: u64 = BLOCK_SIZE_U64 * 8;

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

/// Bits of a free run ([`bit_find_free_run`]): one 64-bit word of a bitmap.
pub const RUN_BITS: usize = 64;

/// First wholly clear, [`RUN_BITS`]-aligned run of [`RUN_BITS`] bits whose first bit is at or
/// after `from` and whose last is below `limit`, in a bitmap block slice: its first bit. The
/// allocator starts a file's new run of blocks there, so that files growing at once take
/// separate runs instead of alternating blocks.
pub fn bit_find_free_run(bits: &[u8], from: usize, limit: usize) -> Option<usize> {
    bit_find_free_run_of(bits, from, limit, RUN_BITS)
}

/// [`bit_find_free_run`] for runs of `run` bits (a multiple of 8; others find nothing),
/// aligned to `run`.
pub fn bit_find_free_run_of(bits: &[u8], from: usize, limit: usize, run: usize) -> Option<usize> {
    if run == 0 || run % 8 != 0 {
        return None;
    }
    let limit = limit.min(bits.len().saturating_mul(8));
    let mut i = from.div_ceil(run).checked_mul(run)?;
    while i.checked_add(run)? <= limit {
        let byte = i / 8;
        if le::all_zero(bits.get(byte..byte.checked_add(run / 8)?)?) {
            return Some(i);
        }
        i = i.checked_add(run)?;
    }
    None
}

/// First clear bit at or after `from` and below `limit`, scanning a bitmap block slice.
pub fn bit_find_clear(bits: &[u8], from: usize, limit: usize) -> Option<usize> {
    let limit = limit.min(bits.len().saturating_mul(8));
    let mut i = from;
    while i < limit {
        let byte = *bits.get(i / 8)?;
        if byte == 0xff && i % 8 == 0 {
            // A full byte: skip its 8 bits (past `usize::MAX` there is nothing to find).
            i = i.checked_add(8)?;
            continue;
        }
        if byte & (1 << (i % 8)) == 0 {
            return Some(i);
        }
        i = i.checked_add(1)?;
    }
    None
}

#[cfg(test)]
// Tests: a panic is the failure report.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn free_runs_are_whole_aligned_words() {
        let mut bits = [0xffu8; 64];
        // Words 2 (bits 128..192) and 5 (320..384) clear; bits 200..260 clear but unaligned.
        bits[16..24].fill(0);
        bits[40..48].fill(0);
        for i in 200..260 {
            bit_set(&mut bits, i, false);
        }
        assert_eq!(bit_find_free_run(&bits, 0, 512), Some(128));
        assert_eq!(bit_find_free_run(&bits, 128, 512), Some(128));
        assert_eq!(bit_find_free_run(&bits, 129, 512), Some(320));
        // The run must end below the limit.
        assert_eq!(bit_find_free_run(&bits, 129, 383), None);
        assert_eq!(bit_find_free_run(&bits, 129, 384), Some(320));
        // One set bit spoils a word.
        bit_set(&mut bits, 150, true);
        assert_eq!(bit_find_free_run(&bits, 0, 512), Some(320));
        // Past the slice or near usize::MAX: nothing, no panic.
        assert_eq!(bit_find_free_run(&bits, 0, 10_000), Some(320));
        assert_eq!(bit_find_free_run(&bits, usize::MAX - 3, usize::MAX), None);
    }
}
