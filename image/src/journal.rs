//! The journal of an image, for the tools: what it holds ([`read_log`], shown by
//! `vexctl inspect --log` and `fsck.vexfs`), its recovery ([`recover`]) and the staging
//! device the offline writer commits through ([`Staged`]).
//!
//! The journal's layout, writing, recovery and checkpoint are `vexfs_core::journal`'s (the
//! kernel runs the same code); this module only reads and reports, and adapts the errors.

use std::collections::BTreeMap;
use std::io;

use vexfs_core::error::FormatError;
use vexfs_core::format::journal::{JournalSuper, JOURNAL_CLEAN};
use vexfs_core::format::superblock::{Region, Superblock};
use vexfs_core::io::{Block, BlockDevice};
use vexfs_core::journal::{self, Entry, JournalError, Log, LogScan, Recovery, SCRATCH_BYTES};

use crate::{Error, Result};

/// One committed transaction found in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnInfo {
    /// LSN of its first record.
    pub first_lsn: u64,
    /// LSN of its commit record.
    pub commit_lsn: u64,
    /// Block images in it.
    pub images: u64,
    /// Record block (0-based, after the journal superblock) of its commit block.
    pub commit_block: u64,
    /// Home blocks of its images, in log order.
    pub targets: Vec<u64>,
}

/// What the log holds, read as recovery reads it.
#[derive(Debug, Clone)]
pub struct LogInfo {
    /// First block of the journal region (the journal superblock).
    pub start: u64,
    /// Blocks of the region, the superblock included.
    pub blocks: u64,
    /// The journal superblock's version word (1 or 2), when it decodes.
    pub version: Option<u32>,
    /// The journal superblock, or why it does not decode.
    pub superblock: std::result::Result<JournalSuper, FormatError>,
    /// The scan from `head` (`None` when the superblock does not decode, or a checksummed
    /// record is impossible: `error` says).
    pub scan: Option<LogScan>,
    /// The committed transactions, in LSN order.
    pub transactions: Vec<TxnInfo>,
    /// An impossible checksummed record (a target outside the device or inside the
    /// journal): the log cannot be replayed.
    pub error: Option<FormatError>,
    /// Record blocks free for new transactions once the live window is known (after the
    /// scan: `head` .. the block after the last commit).
    pub free_blocks: u64,
    /// Record blocks of the live window.
    pub used_blocks: u64,
}

impl LogInfo {
    /// Whether the journal superblock says clean (nothing to replay).
    pub fn clean(&self) -> bool {
        self.superblock.as_ref().is_ok_and(|js| js.flags & JOURNAL_CLEAN != 0)
    }

    /// Block images recovery would write home (0 for a clean journal: recovery does not read
    /// it).
    pub fn images_to_replay(&self) -> u64 {
        if self.clean() {
            0
        } else {
            self.scan.map_or(0, |s| s.images)
        }
    }

    /// Transactions recovery would replay.
    pub fn transactions_to_replay(&self) -> u64 {
        if self.clean() {
            0
        } else {
            self.scan.map_or(0, |s| s.transactions)
        }
    }
}

fn io_err<E: Into<io::Error>>(what: &str) -> impl FnOnce(JournalError<E>) -> Error + '_ {
    move |e| match e {
        JournalError::Io(e) => Error::Io { what: what.to_string(), source: e.into() },
        JournalError::Corrupt(err) => Error::Format { what: what.to_string(), err },
        JournalError::NoSpace => Error::Invalid(format!("{what}: the transaction does not fit the journal")),
        JournalError::Invalid(m) => Error::Invalid(format!("{what}: {m}")),
    }
}

/// Reads the journal superblock of `sb` on `dev` and scans its log from `head` as recovery
/// would (whatever the clean flag says), recording each committed transaction. Nothing is
/// written. A superblock that does not decode and an impossible record are reported in the
/// result, not as errors. Errors: `Io`.
pub fn read_log<D: BlockDevice<Error = io::Error>>(dev: &D, sb: &Superblock) -> Result<LogInfo> {
    let r = sb.region(Region::Journal);
    let mut info = LogInfo {
        start: r.start,
        blocks: r.blocks,
        version: None,
        superblock: Err(FormatError::Corrupt { what: "journal superblock", value: 0 }),
        scan: None,
        transactions: Vec::new(),
        error: None,
        free_blocks: 0,
        used_blocks: 0,
    };
    let mut b = [0u8; vexfs_core::format::BLOCK_SIZE];
    dev.read_block(r.start, &mut b)
        .map_err(Error::io(format!("reading the journal superblock (block {})", r.start)))?;
    info.version = b.get(16..20).and_then(|v| v.try_into().ok()).map(u32::from_le_bytes);
    let js = match JournalSuper::decode(&b, r.start, r.blocks, &sb.uuid) {
        Ok(js) => js,
        Err(e) => {
            info.superblock = Err(e);
            info.version = None;
            return Ok(info);
        }
    };
    info.superblock = Ok(js.clone());
    let mut log = Log::new(sb, &js);
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let mut txns = Vec::new();
    let mut cur: Option<TxnInfo> = None;
    let scanned = journal::scan(dev, &log, &mut scratch, |e| {
        match *e {
            Entry::Image { lsn, target, .. } => {
                let t = cur.get_or_insert(TxnInfo {
                    first_lsn: lsn,
                    commit_lsn: 0,
                    images: 0,
                    commit_block: 0,
                    targets: Vec::new(),
                });
                t.images += 1;
                t.targets.push(target);
            }
            Entry::Commit { lsn, block } => {
                let mut t = cur.take().unwrap_or(TxnInfo {
                    first_lsn: lsn,
                    commit_lsn: 0,
                    images: 0,
                    commit_block: 0,
                    targets: Vec::new(),
                });
                t.commit_lsn = lsn;
                t.commit_block = block;
                txns.push(t);
            }
            Entry::Vector { lsn, .. } => {
                cur.get_or_insert(TxnInfo {
                    first_lsn: lsn,
                    commit_lsn: 0,
                    images: 0,
                    commit_block: 0,
                    targets: Vec::new(),
                });
            }
        }
        Ok(())
    });
    match scanned {
        Ok(s) => {
            info.scan = Some(s);
            info.transactions = txns;
            if js.flags & JOURNAL_CLEAN == 0 {
                log.next = s.end;
            }
        }
        Err(JournalError::Corrupt(e)) => info.error = Some(e),
        Err(e) => return Err(io_err::<io::Error>("reading the journal")(e)),
    }
    info.used_blocks = log.used_blocks();
    info.free_blocks = log.free_blocks();
    Ok(info)
}

/// Replays the journal of `sb` on `dev` (`vexfs_core::journal::recover`: committed
/// transactions written home, flushed, the journal superblock written clean) and returns the
/// log, ready for new transactions, and what was done. Errors: `Format` for a corrupt journal
/// superblock or an impossible record, `Io`.
pub fn recover<D: BlockDevice<Error = io::Error>>(dev: &mut D, sb: &Superblock) -> Result<(Log, Recovery)> {
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    journal::recover(dev, sb, &mut scratch).map_err(io_err::<io::Error>("journal"))
}

/// Writes one transaction of `images` to the log and its commit (`write_transaction`).
/// Errors: as [`recover`]; `Invalid` when it does not fit the log's free space.
pub(crate) fn write_transaction<D: BlockDevice<Error = io::Error>>(
    dev: &mut D,
    log: &mut Log,
    images: &[(u64, &Block)],
) -> Result<()> {
    journal::write_transaction(dev, log, images).map(|_| ()).map_err(io_err::<io::Error>("journal"))
}

/// Checkpoints `log` and writes its superblock (`clean` or not). Errors: `Io`.
pub(crate) fn checkpoint<D: BlockDevice<Error = io::Error>>(dev: &mut D, log: &mut Log, clean: bool) -> Result<()> {
    journal::checkpoint(dev, log, clean).map_err(io_err::<io::Error>("journal checkpoint"))
}

/// Writes the journal superblock of `log` (`clean` or not). Errors: `Io`.
pub(crate) fn write_superblock<D: BlockDevice<Error = io::Error>>(dev: &mut D, log: &Log, clean: bool) -> Result<()> {
    journal::write_superblock(dev, log, clean).map_err(io_err::<io::Error>("journal superblock"))
}

/// A staged block: its contents, the operation that last wrote it, and whether it is file
/// data (written home before the commit, not logged) rather than metadata (logged).
#[derive(Debug)]
struct StagedBlock {
    data: Box<Block>,
    op: u64,
    file_data: bool,
}

/// The offline writer's device: every write stays in memory, grouped by operation, until the
/// writer commits them through the journal. Reads see the staged blocks first.
///
/// Operations are numbered; [`Staged::end_op`] closes one. The blocks of the operations
/// closed before the current one can be taken on their own ([`Staged::take_closed`]), as
/// they were when the last one closed: that is a consistent filesystem, a place where a sync
/// may be split into several transactions.
#[derive(Debug)]
pub struct Staged<D> {
    dev: D,
    blocks: BTreeMap<u64, StagedBlock>,
    /// Blocks the current operation overwrote, as the closed operations left them.
    undo: BTreeMap<u64, StagedBlock>,
    op: u64,
    /// How many of `blocks` are file data: kept as blocks are staged and taken, so that
    /// [`Staged::counts`] (asked at the end of every operation) does not walk them all.
    data_count: usize,
    /// Block buffers of staged copies dropped (overwritten in the same operation, or undo
    /// copies of a closed operation), reused by the next stagings: the bulk loader stages
    /// about a thousand index blocks per batch of links, most of them again in the next batch,
    /// and allocating and freeing a buffer for each was a fifth of its serial work.
    spare: Vec<Box<Block>>,
}

/// Buffers [`Staged`] keeps for reuse at most (16 MiB).
const SPARE_BUFFERS: usize = 4096;

/// Blocks taken from a [`Staged`] device for one commit: file data and metadata apart.
#[derive(Debug, Default)]
pub struct Batch {
    /// File data blocks (written home, before the transaction that exposes them commits).
    pub data: Vec<(u64, Box<Block>)>,
    /// Metadata blocks (logged, then written home).
    pub meta: Vec<(u64, Box<Block>)>,
}

impl Batch {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.meta.is_empty()
    }
}

impl<D: BlockDevice> Staged<D> {
    /// Nothing staged over `dev`.
    pub fn new(dev: D) -> Staged<D> {
        Staged { dev, blocks: BTreeMap::new(), undo: BTreeMap::new(), op: 1, data_count: 0, spare: Vec::new() }
    }

    /// The device below (without the staged blocks).
    pub fn inner(&self) -> &D {
        &self.dev
    }

    /// The device below, to write around the staging.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Gives the device below back; staged blocks are dropped.
    pub fn into_inner(self) -> D {
        self.dev
    }

    /// Stages block `n` as file data (never logged: the writer writes it home before the
    /// transaction that references it commits).
    pub fn write_data(&mut self, n: u64, buf: &Block) -> std::result::Result<(), D::Error> {
        self.stage(n, buf, true)
    }

    fn stage(&mut self, n: u64, buf: &Block, file_data: bool) -> std::result::Result<(), D::Error> {
        if n >= self.dev.block_count() {
            let mut probe = [0u8; vexfs_core::format::BLOCK_SIZE];
            self.dev.read_block(n, &mut probe)?;
        }
        let mut data = self.spare.pop().unwrap_or_else(|| Box::new([0u8; vexfs_core::format::BLOCK_SIZE]));
        data.copy_from_slice(buf);
        let new = StagedBlock { data, op: self.op, file_data };
        self.data_count += usize::from(file_data);
        if let Some(old) = self.blocks.insert(n, new) {
            self.data_count -= usize::from(old.file_data);
            if old.op != self.op {
                // The closed operations' copy, kept once (the first this operation replaced).
                match self.undo.entry(n) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(old);
                    }
                    std::collections::btree_map::Entry::Occupied(_) => self.recycle(old.data),
                }
            } else {
                self.recycle(old.data);
            }
        }
        Ok(())
    }

    /// Keeps `data` for a later staging (up to [`SPARE_BUFFERS`]; dropped beyond).
    fn recycle(&mut self, data: Box<Block>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(data);
        }
    }

    /// Closes the current operation.
    pub fn end_op(&mut self) {
        let undo = std::mem::take(&mut self.undo);
        for b in undo.into_values() {
            self.recycle(b.data);
        }
        self.op += 1;
    }

    /// Blocks staged by the closed operations and by the current one: (metadata, file data).
    pub fn counts(&self) -> (usize, usize) {
        (self.blocks.len() - self.data_count, self.data_count)
    }

    /// Metadata blocks the closed operations alone staged (as the last of them left them).
    pub fn closed_meta(&self) -> usize {
        let mut n = self.blocks.values().filter(|b| b.op != self.op && !b.file_data).count();
        n += self.undo.values().filter(|b| !b.file_data).count();
        n
    }

    /// Takes everything staged (the current operation must be closed).
    pub fn take_all(&mut self) -> Batch {
        self.undo.clear();
        self.data_count = 0;
        split(std::mem::take(&mut self.blocks))
    }

    /// Takes the blocks of the closed operations as they left them; what the current
    /// operation staged stays staged.
    pub fn take_closed(&mut self) -> Batch {
        let mut closed = BTreeMap::new();
        let op = self.op;
        let keys: Vec<u64> = self.blocks.iter().filter(|(_, b)| b.op != op).map(|(&n, _)| n).collect();
        for n in keys {
            if let Some(b) = self.blocks.remove(&n) {
                closed.insert(n, b);
            }
        }
        closed.extend(std::mem::take(&mut self.undo));
        self.data_count = self.blocks.values().filter(|b| b.file_data).count();
        split(closed)
    }
}

fn split(blocks: BTreeMap<u64, StagedBlock>) -> Batch {
    let mut out = Batch::default();
    for (n, b) in blocks {
        if b.file_data {
            out.data.push((n, b.data));
        } else {
            out.meta.push((n, b.data));
        }
    }
    out
}

impl<D: BlockDevice> BlockDevice for Staged<D> {
    type Error = D::Error;

    fn block_count(&self) -> u64 {
        self.dev.block_count()
    }

    fn read_block(&self, n: u64, buf: &mut Block) -> std::result::Result<(), D::Error> {
        match self.blocks.get(&n) {
            Some(b) => {
                buf.copy_from_slice(&b.data[..]);
                Ok(())
            }
            None => self.dev.read_block(n, buf),
        }
    }

    /// Stages a metadata block.
    fn write_block(&mut self, n: u64, buf: &Block) -> std::result::Result<(), D::Error> {
        self.stage(n, buf, false)
    }

    /// Nothing: staged blocks reach the device only through a commit.
    fn flush(&mut self) -> std::result::Result<(), D::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDevice;

    #[test]
    fn closed_operations_are_taken_as_they_left_their_blocks() {
        let mut s = Staged::new(MemDevice::new(8));
        s.write_block(1, &[1; 4096]).unwrap();
        s.write_block(2, &[1; 4096]).unwrap();
        s.end_op();
        s.write_block(2, &[2; 4096]).unwrap();
        s.write_block(3, &[2; 4096]).unwrap();
        s.write_data(4, &[2; 4096]).unwrap();
        assert_eq!(s.closed_meta(), 2);
        assert_eq!(s.counts(), (3, 1));
        let b = s.take_closed();
        let got: Vec<(u64, u8)> = b.meta.iter().map(|(n, d)| (*n, d[0])).collect();
        assert_eq!(got, vec![(1, 1), (2, 1)]);
        assert!(b.data.is_empty());
        let mut r = [0u8; 4096];
        s.read_block(2, &mut r).unwrap();
        assert_eq!(r[0], 2, "the current operation's block stays staged");
        assert_eq!(s.counts(), (2, 1), "the counts follow what take_closed left");
        s.write_data(5, &[3; 4096]).unwrap();
        s.write_block(5, &[3; 4096]).unwrap();
        assert_eq!(s.counts(), (3, 1), "a data block staged again as metadata counts once, as metadata");
        s.write_data(5, &[2; 4096]).unwrap();
        s.end_op();
        let b = s.take_all();
        assert_eq!(s.counts(), (0, 0));
        let got: Vec<(u64, u8)> = b.meta.iter().map(|(n, d)| (*n, d[0])).collect();
        assert_eq!(got, vec![(2, 2), (3, 2)]);
        assert_eq!(b.data.len(), 2);
    }
}
