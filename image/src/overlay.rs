//! [`Overlay`]: a [`BlockDevice`] over another that keeps every write in memory.
//!
//! Reads see the written blocks first, then the device below. Nothing reaches the device
//! below until the caller takes the changed blocks ([`Overlay::take`]) and writes them itself.
//! `fsck.vexfs -n` replays the journal into one (the device is never written), and the offline
//! writer ([`crate::writer`]) stages its changes in one until it commits them through the
//! journal.

use std::collections::BTreeMap;

use vexfs_core::io::{Block, BlockDevice};

/// A device whose writes stay in memory: a map of block number to its new contents.
#[derive(Debug)]
pub struct Overlay<D> {
    dev: D,
    blocks: BTreeMap<u64, Box<Block>>,
}

impl<D: BlockDevice> Overlay<D> {
    /// An overlay with no changes over `dev`.
    pub fn new(dev: D) -> Overlay<D> {
        Overlay { dev, blocks: BTreeMap::new() }
    }

    /// The device below.
    pub fn inner(&self) -> &D {
        &self.dev
    }

    /// The device below, for writing around the overlay (a block written there is still
    /// hidden by a changed block of the same number).
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Gives the device below back; the changes are dropped.
    pub fn into_inner(self) -> D {
        self.dev
    }

    /// The changed blocks, by block number.
    pub fn changes(&self) -> &BTreeMap<u64, Box<Block>> {
        &self.blocks
    }

    /// Number of changed blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block was changed.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Takes the changed blocks out: reads see the device below again.
    pub fn take(&mut self) -> BTreeMap<u64, Box<Block>> {
        std::mem::take(&mut self.blocks)
    }

    /// Puts changed blocks back (over any changed since, which they replace).
    pub fn restore(&mut self, blocks: BTreeMap<u64, Box<Block>>) {
        self.blocks.extend(blocks);
    }
}

impl<D: BlockDevice> BlockDevice for Overlay<D> {
    type Error = D::Error;

    fn block_count(&self) -> u64 {
        self.dev.block_count()
    }

    fn read_block(&self, n: u64, buf: &mut Block) -> Result<(), D::Error> {
        match self.blocks.get(&n) {
            Some(b) => {
                buf.copy_from_slice(&b[..]);
                Ok(())
            }
            None => self.dev.read_block(n, buf),
        }
    }

    /// Keeps the block in memory. Blocks past the device's end are refused as the device
    /// refuses them (by reading it, which gives its error).
    fn write_block(&mut self, n: u64, buf: &Block) -> Result<(), D::Error> {
        if n >= self.dev.block_count() {
            let mut probe = [0u8; vexfs_core::format::BLOCK_SIZE];
            self.dev.read_block(n, &mut probe)?;
        }
        self.blocks.insert(n, Box::new(*buf));
        Ok(())
    }

    /// Nothing to do: the changes are in memory until taken.
    fn flush(&mut self) -> Result<(), D::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDevice;

    #[test]
    fn writes_stay_in_memory_and_reads_see_them() {
        let mut o = Overlay::new(MemDevice::new(4));
        let mut b = [7u8; 4096];
        o.write_block(2, &b).unwrap();
        o.flush().unwrap();
        assert!(o.inner().bytes.iter().all(|&x| x == 0), "the device below is untouched");
        b.fill(0);
        o.read_block(2, &mut b).unwrap();
        assert_eq!(b, [7u8; 4096]);
        o.read_block(1, &mut b).unwrap();
        assert_eq!(b, [0u8; 4096]);
        assert!(o.write_block(4, &b).is_err(), "past the end");
        assert_eq!(o.len(), 1);
        let taken = o.take();
        assert_eq!(taken.keys().copied().collect::<Vec<_>>(), vec![2]);
        o.read_block(2, &mut b).unwrap();
        assert_eq!(b, [0u8; 4096], "taken: the device below shows again");
    }
}
