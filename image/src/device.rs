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
