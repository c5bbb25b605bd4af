//! [`BlockDevice`] implementations: a file or block device, and memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::io::{Block, BlockDevice};

const BS: u64 = BLOCK_SIZE as u64;

fn past_end(n: u64, count: u64) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("block {n} is past the device end ({count} blocks)"))
}

/// An image file or a block device. Its size is found by seeking to the end, so it works for
/// both; a partial last block is ignored.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    blocks: u64,
}

impl FileDevice {
    /// Opens `path` read-only, or read-write when `writable`. Errors: those of open(2) and
    /// lseek(2).
    pub fn open(path: impl AsRef<Path>, writable: bool) -> io::Result<FileDevice> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        FileDevice::from_file(file)
    }

    /// Wraps an open file; its size is measured now.
    pub fn from_file(mut file: File) -> io::Result<FileDevice> {
        let bytes = file.seek(SeekFrom::End(0))?;
        Ok(FileDevice { file, blocks: bytes / BS })
    }

    /// Gives the file back.
    pub fn into_file(self) -> File {
        self.file
    }
}

impl BlockDevice for FileDevice {
    type Error = io::Error;

    fn block_count(&self) -> u64 {
        self.blocks
    }

    fn read_block(&self, n: u64, buf: &mut Block) -> io::Result<()> {
        if n >= self.blocks {
            return Err(past_end(n, self.blocks));
        }
        self.file.read_exact_at(buf, n * BS)
    }

    fn write_block(&mut self, n: u64, buf: &Block) -> io::Result<()> {
        if n >= self.blocks {
            return Err(past_end(n, self.blocks));
        }
        self.file.write_all_at(buf, n * BS)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// A device in memory, for tests and fuzzing.
#[derive(Debug, Clone)]
pub struct MemDevice {
    /// The device bytes; its length is a multiple of [`BLOCK_SIZE`].
    pub bytes: Vec<u8>,
}

impl MemDevice {
    /// A zeroed device of `blocks` blocks.
    pub fn new(blocks: u64) -> MemDevice {
        MemDevice { bytes: vec![0; (blocks * BS) as usize] }
    }

    fn range(&self, n: u64) -> io::Result<std::ops::Range<usize>> {
        let count = self.block_count();
        if n >= count {
            return Err(past_end(n, count));
        }
        let start = (n * BS) as usize;
        Ok(start..start + BLOCK_SIZE)
    }
}

impl BlockDevice for MemDevice {
    type Error = io::Error;

    fn block_count(&self) -> u64 {
        self.bytes.len() as u64 / BS
    }

    fn read_block(&self, n: u64, buf: &mut Block) -> io::Result<()> {
        let r = self.range(n)?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write_block(&mut self, n: u64, buf: &Block) -> io::Result<()> {
        let r = self.range(n)?;
        self.bytes[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`BlockDevice`] with a read cache in front of another: `slots` blocks, direct-mapped
/// (block `n` in slot `n % slots`), filled by reads, written through by writes (a write
/// updates the slot holding the block, then the device). For a tool that alone has the device
/// open and reads the same metadata blocks again and again: the bulk loader, whose every new
/// file looks its name up in a directory of up to millions of entries (extent tree and
/// directory index blocks, read from the file by `pread` each time otherwise). Memory: at most
/// `slots` blocks of 4 KiB, taken as they fill.
#[derive(Debug)]
pub struct ReadCache<D> {
    dev: D,
    slots: std::sync::Mutex<Vec<CacheSlot>>,
}

/// A slot of [`ReadCache`]: the block number and bytes it holds, if any.
type CacheSlot = Option<(u64, Box<Block>)>;

impl<D> ReadCache<D> {
    /// `dev` behind a cache of `slots` blocks (at least 1).
    pub fn new(dev: D, slots: usize) -> ReadCache<D> {
        ReadCache { dev, slots: std::sync::Mutex::new((0..slots.max(1)).map(|_| None).collect()) }
    }

    /// The device, its cache dropped.
    pub fn into_inner(self) -> D {
        self.dev
    }

    /// Runs `f` on the slot of block `n` (a poisoned lock only means a panic elsewhere: the
    /// slots hold whole blocks either way).
    fn with_slot<R>(&self, n: u64, f: impl FnOnce(&mut CacheSlot) -> R) -> R {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let len = slots.len() as u64;
        f(&mut slots[(n % len) as usize])
    }
}

impl<D: BlockDevice> BlockDevice for ReadCache<D> {
    type Error = D::Error;

    fn block_count(&self) -> u64 {
        self.dev.block_count()
    }

    fn read_block(&self, n: u64, buf: &mut Block) -> Result<(), D::Error> {
        let hit = self.with_slot(n, |s| match s {
            Some((at, b)) if *at == n => {
                buf.copy_from_slice(&b[..]);
                true
            }
            _ => false,
        });
        if hit {
            return Ok(());
        }
        self.dev.read_block(n, buf)?;
        self.with_slot(n, |s| match s {
            Some((at, b)) => {
                *at = n;
                b.copy_from_slice(&buf[..]);
            }
            None => *s = Some((n, Box::new(*buf))),
        });
        Ok(())
    }

    fn write_block(&mut self, n: u64, buf: &Block) -> Result<(), D::Error> {
        // The device first: a failed write leaves the slot as the device has the block (the
        // old bytes, or none).
        let r = self.dev.write_block(n, buf);
        self.with_slot(n, |s| {
            if s.as_ref().is_some_and(|(at, _)| *at == n) {
                match (&r, s.as_mut()) {
                    (Ok(()), Some((_, b))) => b.copy_from_slice(&buf[..]),
                    _ => *s = None,
                }
            }
        });
        r
    }

    fn flush(&mut self) -> Result<(), D::Error> {
        self.dev.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A device whose writes to one block fail (after writing half of it).
    struct Flaky {
        inner: MemDevice,
        bad: u64,
    }

    impl BlockDevice for Flaky {
        type Error = io::Error;
        fn block_count(&self) -> u64 {
            self.inner.block_count()
        }
        fn read_block(&self, n: u64, buf: &mut Block) -> io::Result<()> {
            self.inner.read_block(n, buf)
        }
        fn write_block(&mut self, n: u64, buf: &Block) -> io::Result<()> {
            if n == self.bad {
                let mut half = [0u8; BLOCK_SIZE];
                self.inner.read_block(n, &mut half)?;
                half[..BLOCK_SIZE / 2].copy_from_slice(&buf[..BLOCK_SIZE / 2]);
                self.inner.write_block(n, &half)?;
                return Err(io::Error::other("injected write failure"));
            }
            self.inner.write_block(n, buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    proptest! {
        /// Any sequence of reads and writes through a small cache (blocks colliding in its
        /// slots) reads what the device itself holds, also after a write that failed half-way.
        #[test]
        fn reads_what_the_device_holds(ops in proptest::collection::vec((any::<bool>(), 0u64..24, any::<u8>()), 1..200)) {
            let mut c = ReadCache::new(Flaky { inner: MemDevice::new(24), bad: 5 }, 7);
            for (write, n, byte) in ops {
                let mut got = [0u8; BLOCK_SIZE];
                if write {
                    let r = c.write_block(n, &[byte; BLOCK_SIZE]);
                    prop_assert_eq!(r.is_err(), n == 5);
                } else {
                    c.read_block(n, &mut got).unwrap();
                    let mut want = [0u8; BLOCK_SIZE];
                    c.dev.inner.read_block(n, &mut want).unwrap();
                    prop_assert!(got == want, "block {}", n);
                }
            }
            for n in 0..24 {
                let (mut got, mut want) = ([0u8; BLOCK_SIZE], [0u8; BLOCK_SIZE]);
                c.read_block(n, &mut got).unwrap();
                c.dev.inner.read_block(n, &mut want).unwrap();
                prop_assert!(got == want, "block {}", n);
            }
        }
    }
}
