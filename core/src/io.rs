//! Block I/O: the one small trait every user of the format reads and writes through.
//!
//! The kernel module implements it with the block layer, the tools with a file or an image in
//! memory (`vexfs-image`). Blocks are [`BLOCK_SIZE`] bytes; block `n` is bytes
//! `n * 4096 .. (n + 1) * 4096` of the device.

use crate::format::BLOCK_SIZE;

/// One whole block.
pub type Block = [u8; BLOCK_SIZE];

/// A device of fixed-size blocks.
pub trait BlockDevice {
    /// The implementation's I/O error (an errno in the kernel, `std::io::Error` in userspace).
    type Error;

    /// Size of the device in whole blocks (a partial last block does not count).
    fn block_count(&self) -> u64;

    /// Reads block `n` into `buf`. Errors: the device's error, also for `n >= block_count()`.
    fn read_block(&self, n: u64, buf: &mut Block) -> Result<(), Self::Error>;

    /// Writes `buf` to block `n`. Errors: the device's error, also for `n >= block_count()`.
    fn write_block(&mut self, n: u64, buf: &Block) -> Result<(), Self::Error>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), Self::Error>;
}
