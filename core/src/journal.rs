//! The journal: physical redo transactions of metadata block images, written, replayed and
//! checkpointed by this one code in the kernel (`kmod/journal.rs`) and the tools (fsck, the
//! offline writer).
//!
//! [`crate::format::journal`] holds the byte layout of the journal superblock and of a record.
//! Format v2 puts records together as follows:
//!
//! - **A transaction** starts at the start of a record block. It holds `n` block-image records
//!   (type `Blocks`, one image each: payload `count = 1` u32, reserved u32, the target block
//!   u64, the 4096-byte image: [`IMAGE_RECORD`] bytes with the header), packed 8-byte aligned,
//!   then zero padding to the end of the block, then its **commit block**: a `Commit` record
//!   (empty payload) at the start of a record block of its own, the rest zero. The next
//!   transaction starts at the block after the commit block. A transaction of `n` images takes
//!   [`txn_blocks`]`(n)` record blocks. LSNs are consecutive over records and transactions.
//! - **Writing**: every block of a transaction but the commit block is written and waited for,
//!   the device's cache is flushed, then the commit block is written with FUA (the kernel uses
//!   `REQ_PREFLUSH | REQ_FUA`). The commit therefore reaches the disk after everything it
//!   commits, and after the file data written before it (ordered mode, `kmod/journal.rs`).
//! - **Recovery** ([`recover`]), before anything else reads the disk: from `head`, expecting the
//!   LSN `checkpoint_lsn`, records are read until one fails its magic, checksum (which covers
//!   the filesystem's UUID) or LSN, or the whole log has been read. A zero word where a record
//!   is expected, not at the start of a block, is padding: reading goes on at the next block;
//!   at the start of a block it is the end of the log. Every image of a transaction whose
//!   commit was read is written to its home block, in LSN order; the rest (a torn tail) is
//!   dropped. Then the device is flushed and the journal superblock written clean, with `head`
//!   at the block after the last commit and `next_lsn` = the last LSN read + 1 +
//!   [`Log::lsn_gap`], so no record of a torn transaction can pass for a later one. Until that
//!   superblock write, a crash leaves the journal as it was: recovery is idempotent.
//! - **Checkpoint**: once every block logged by the live transactions is written home and
//!   flushed, `head` moves to the block where the next transaction starts (the journal
//!   superblock written with FUA). The log holds at most `record blocks - 1` blocks of live
//!   transactions ([`Log::free_blocks`]).
//!
//! Replaying a block image over a block that was freed and reused for file data would destroy
//! that data: callers never reuse a block logged by a live transaction for data before the
//! next checkpoint (`kmod/sb.rs` keeps such blocks aside).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use crate::error::FormatError;
use crate::format::journal::{
    decode_record, peek_record, record_header, JournalSuper, RecordType, JOURNAL_CLEAN, MAX_RECORD, RECORD_HEADER,
};
use crate::format::le::{put_u32, put_u64, u32_at, u64_at};
use crate::format::superblock::{Region, Superblock};
use crate::format::BLOCK_SIZE;
use crate::io::{Block, BlockDevice};

/// Bytes of one block-image record (header, `count`, reserved, target, image).
pub const IMAGE_RECORD: u64 = (RECORD_HEADER + 16 + BLOCK_SIZE) as u64;
/// Bytes of scratch memory [`recover`] and [`scan`] need (a block and the largest record).
pub const SCRATCH_BYTES: usize = BLOCK_SIZE + MAX_RECORD;

const BS: u64 = BLOCK_SIZE as u64;
/// More records than fit in one block (each takes at least a header).
const RECORDS_PER_BLOCK: u64 = BS / RECORD_HEADER as u64;
/// Payload bytes of a one-image block-images record.
const IMAGE_PAYLOAD: u32 = 16 + 4096;
const _: () = assert!(BLOCK_SIZE == 4096);

/// Record blocks a transaction of `images` block images takes: its records rounded up to
/// whole blocks, plus the commit block. Saturates (a count that large never fits a log).
pub fn txn_blocks(images: u64) -> u64 {
    images.saturating_mul(IMAGE_RECORD).div_ceil(BS).saturating_add(1)
}

/// What can go wrong in the journal code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalError<E> {
    /// The device's error.
    Io(E),
    /// The journal superblock, or a checksummed record, is corrupt. errno `EUCLEAN`.
    Corrupt(FormatError),
    /// The transaction does not fit the free space of the log. errno `ENOSPC`.
    NoSpace,
    /// A caller broke a rule (an image not of 4096 bytes, a target inside the journal). errno
    /// `EINVAL`.
    Invalid(&'static str),
}

impl<E> JournalError<E> {
    /// The errno of everything but [`Self::Io`] (`None` for it: the device's error says).
    pub fn errno(&self) -> Option<i32> {
        match self {
            JournalError::Io(_) => None,
            JournalError::Corrupt(_) => Some(crate::error::EUCLEAN),
            JournalError::NoSpace => Some(crate::error::ENOSPC),
            JournalError::Invalid(_) => Some(crate::error::EINVAL),
        }
    }
}

impl<E> From<FormatError> for JournalError<E> {
    fn from(e: FormatError) -> Self {
        JournalError::Corrupt(e)
    }
}

type JResult<T, E> = core::result::Result<T, JournalError<E>>;

/// The log of a filesystem in memory: where it is, and its live window of record blocks
/// `head .. next` (circular).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// Device block of the journal superblock; record block `i` is device block
    /// `start + 1 + i`.
    pub start: u64,
    /// Record blocks (the region's blocks minus the superblock).
    pub blocks: u64,
    /// The filesystem's UUID (in every record's checksum).
    pub uuid: [u8; 16],
    /// Record block where the oldest live transaction starts.
    pub head: u64,
    /// LSN of the first record at `head`.
    pub head_lsn: u64,
    /// Record block where the next transaction starts.
    pub next: u64,
    /// LSN the next record gets.
    pub next_lsn: u64,
}

impl Log {
    /// The log described by the journal superblock `js` of the filesystem `sb`, with an empty
    /// live window at `js.head` if `js` is clean, else the window is unknown until a scan
    /// ([`recover`] sets it).
    pub fn new(sb: &Superblock, js: &JournalSuper) -> Log {
        let r = sb.region(Region::Journal);
        Log {
            start: r.start,
            blocks: r.blocks.saturating_sub(1),
            uuid: sb.uuid,
            head: js.head,
            head_lsn: js.checkpoint_lsn,
            next: js.head,
            next_lsn: js.checkpoint_lsn.max(js.next_lsn),
        }
    }

    /// Record blocks in the live window.
    pub fn used_blocks(&self) -> u64 {
        if self.next >= self.head {
            self.next.saturating_sub(self.head)
        } else {
            self.blocks.saturating_sub(self.head).saturating_add(self.next)
        }
    }

    /// Record blocks a new transaction may take (one block always stays free, so that an
    /// empty window and a full one differ).
    pub fn free_blocks(&self) -> u64 {
        self.blocks.saturating_sub(1).saturating_sub(self.used_blocks())
    }

    /// Device block of record block `i` (taken modulo the log's length).
    pub fn record_block(&self, i: u64) -> u64 {
        self.start.saturating_add(1).saturating_add(i.checked_rem(self.blocks).unwrap_or(0))
    }

    /// LSNs skipped after a recovery: more than the records the whole log can hold, so records
    /// of a torn transaction still on the device never carry an LSN the log will use again.
    pub fn lsn_gap(&self) -> u64 {
        self.blocks.saturating_mul(RECORDS_PER_BLOCK).saturating_add(1)
    }

    /// The journal superblock that describes this log (`clean`: no live transaction).
    pub fn superblock(&self, clean: bool) -> JournalSuper {
        JournalSuper {
            flags: if clean { JOURNAL_CLEAN } else { 0 },
            next_lsn: self.next_lsn,
            checkpoint_lsn: self.head_lsn,
            head: self.head,
            uuid: self.uuid,
        }
    }

    /// Marks every committed transaction as applied in place: the live window becomes empty.
    /// Only after every block they logged is written home and flushed; the caller then writes
    /// [`Self::superblock`] (with FUA).
    pub fn checkpoint(&mut self) {
        self.head = self.next;
        self.head_lsn = self.next_lsn;
    }

    /// Starts a transaction at `next`. The journal superblock must say "not clean" on disk
    /// before the first transaction is written (recovery does not read a clean journal).
    /// Errors: `NoSpace` if not even an empty one fits.
    pub fn begin<E>(&self) -> JResult<Txn, E> {
        if self.free_blocks() < txn_blocks(0) {
            return Err(JournalError::NoSpace);
        }
        Ok(Txn { first: self.next, pos: 0, lsn: self.next_lsn, images: 0 })
    }

    fn in_journal(&self, n: u64) -> bool {
        n >= self.start && n <= self.start.saturating_add(self.blocks)
    }
}

/// Where a transaction's log blocks are written: the kernel's journal buffers, or
/// [`DeviceSink`] in the tools.
pub trait LogSink {
    /// The sink's error.
    type Error;
    /// The bytes ([`BLOCK_SIZE`]) of device block `n` of the log, to fill. The first call for a
    /// block gives it zeroed; the next calls for the same block give the same bytes. Blocks
    /// are asked for in log order.
    fn block(&mut self, n: u64) -> core::result::Result<&mut [u8], Self::Error>;
}

/// A transaction being written to the log.
#[derive(Debug)]
pub struct Txn {
    /// Record block it starts at.
    first: u64,
    /// Bytes written from the start of `first`.
    pos: u64,
    /// LSN of its next record.
    lsn: u64,
    /// Images added.
    images: u64,
}

impl Txn {
    /// Images added so far.
    pub fn images(&self) -> u64 {
        self.images
    }

    /// Adds the image of device block `target` (4096 bytes). Errors: `NoSpace` if the
    /// transaction would outgrow the log's free space; `Invalid` for an image of another size
    /// or a target inside the journal; the sink's error. After an error the records already
    /// added stay in the log uncommitted, and a later transaction written at the same place
    /// could chain onto them: the log must not be written again until a recovery (the kernel
    /// aborts the journal). Callers check the size and targets first ([`write_transaction`]).
    pub fn add<S: LogSink>(&mut self, log: &Log, sink: &mut S, target: u64, image: &[u8]) -> JResult<(), S::Error> {
        if image.len() != BLOCK_SIZE {
            return Err(JournalError::Invalid("journal image size"));
        }
        if log.in_journal(target) {
            return Err(JournalError::Invalid("journal image of a journal block"));
        }
        let end = self.pos.checked_add(IMAGE_RECORD).ok_or(JournalError::NoSpace)?;
        if end.div_ceil(BS).saturating_add(1) > log.free_blocks() {
            return Err(JournalError::NoSpace);
        }
        let mut prefix = [0u8; 16];
        put_u32(&mut prefix, 0, 1);
        put_u64(&mut prefix, 8, target);
        let len = IMAGE_PAYLOAD;
        let head = record_header(&log.uuid, self.lsn, RecordType::Blocks, len, &[&prefix, image]);
        self.put(log, sink, &head)?;
        self.put(log, sink, &prefix)?;
        self.put(log, sink, image)?;
        self.lsn = self.lsn.saturating_add(1);
        self.images = self.images.saturating_add(1);
        Ok(())
    }

    /// Writes the commit block and moves the log's `next` past the transaction. Returns the
    /// device block of the commit block (written last, after a flush, with FUA) and the
    /// commit's LSN. Errors: the sink's.
    pub fn commit<S: LogSink>(mut self, log: &mut Log, sink: &mut S) -> JResult<Commit, S::Error> {
        // The commit starts a block of its own (add() left room for it).
        self.pos = self.pos.div_ceil(BS).saturating_mul(BS);
        let commit_block = log.record_block(self.first.saturating_add(self.pos / BS));
        let head = record_header(&log.uuid, self.lsn, RecordType::Commit, 0, &[]);
        self.put(log, sink, &head)?;
        let lsn = self.lsn;
        let used = self.pos.div_ceil(BS);
        log.next = self.first.saturating_add(used).checked_rem(log.blocks).unwrap_or(0);
        log.next_lsn = lsn.saturating_add(1);
        Ok(Commit { block: commit_block, lsn, images: self.images, blocks: used })
    }

    fn put<S: LogSink>(&mut self, log: &Log, sink: &mut S, mut data: &[u8]) -> JResult<(), S::Error> {
        while !data.is_empty() {
            let off = (self.pos % BS) as usize;
            let n = BLOCK_SIZE.saturating_sub(off).min(data.len());
            let dev_block = log.record_block(self.first.saturating_add(self.pos / BS));
            let block = sink.block(dev_block).map_err(JournalError::Io)?;
            let (src, rest) = (data.get(..n).unwrap_or(&[]), data.get(n..).unwrap_or(&[]));
            block
                .get_mut(off..off.saturating_add(n))
                .ok_or(JournalError::Invalid("log sink block size"))?
                .copy_from_slice(src);
            data = rest;
            self.pos = self.pos.saturating_add(n as u64);
        }
        Ok(())
    }
}

/// A committed transaction: what the caller needs to write it in the right order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Device block of the commit block: written last, after a flush, with FUA.
    pub block: u64,
    /// The commit record's LSN.
    pub lsn: u64,
    /// Block images in the transaction.
    pub images: u64,
    /// Record blocks it takes, commit block included.
    pub blocks: u64,
}

/// A [`LogSink`] over a [`BlockDevice`] (the tools): a block is written when the next one is
/// asked for, and by [`DeviceSink::finish`].
pub struct DeviceSink<'d, D: BlockDevice> {
    dev: &'d mut D,
    cur: Option<u64>,
    buf: Block,
}

impl<'d, D: BlockDevice> DeviceSink<'d, D> {
    /// A sink writing to `dev`.
    pub fn new(dev: &'d mut D) -> Self {
        DeviceSink { dev, cur: None, buf: [0; BLOCK_SIZE] }
    }

    /// Writes the last block asked for. Errors: the device's.
    pub fn finish(mut self) -> core::result::Result<(), D::Error> {
        self.write_cur()
    }

    fn write_cur(&mut self) -> core::result::Result<(), D::Error> {
        if let Some(n) = self.cur.take() {
            self.dev.write_block(n, &self.buf)?;
        }
        Ok(())
    }
}

impl<D: BlockDevice> LogSink for DeviceSink<'_, D> {
    type Error = D::Error;
    fn block(&mut self, n: u64) -> core::result::Result<&mut [u8], D::Error> {
        if self.cur != Some(n) {
            self.write_cur()?;
            self.buf.fill(0);
            self.cur = Some(n);
        }
        Ok(&mut self.buf)
    }
}

/// Writes one transaction of `images` (target block, image) to the log of `dev` in the order
/// the journal needs: records, flush, commit block, flush. It is durable when this returns;
/// the home blocks are the caller's to write (then [`checkpoint`]). Errors, with nothing
/// written: `NoSpace` if it does not fit the free space, `Invalid` for a target inside the
/// journal; the device's.
pub fn write_transaction<D: BlockDevice>(
    dev: &mut D,
    log: &mut Log,
    images: &[(u64, &Block)],
) -> JResult<Commit, D::Error> {
    if txn_blocks(images.len() as u64) > log.free_blocks() {
        return Err(JournalError::NoSpace);
    }
    if images.iter().any(|(n, _)| log.in_journal(*n)) {
        return Err(JournalError::Invalid("journal image of a journal block"));
    }
    let mut txn = log.begin()?;
    let mut sink = DeviceSink::new(dev);
    for (target, image) in images {
        txn.add(log, &mut sink, *target, *image)?;
    }
    sink.finish().map_err(JournalError::Io)?;
    dev.flush().map_err(JournalError::Io)?;
    let mut sink = DeviceSink::new(dev);
    let c = txn.commit(log, &mut sink)?;
    sink.finish().map_err(JournalError::Io)?;
    dev.flush().map_err(JournalError::Io)?;
    Ok(c)
}

/// Empties the live window of `log` and writes its superblock (`clean`: the filesystem is not
/// in use), then flushes. Only after every block the live transactions logged has been
/// written home and flushed. Errors: the device's.
pub fn checkpoint<D: BlockDevice>(dev: &mut D, log: &mut Log, clean: bool) -> JResult<(), D::Error> {
    log.checkpoint();
    write_superblock(dev, log, clean)
}

/// Writes the journal superblock of `log` and flushes. Its block is built on the stack (4 KiB):
/// for the tools; the kernel's path ([`recover`]) builds it in its scratch
/// ([`write_superblock_in`]). Errors: the device's.
pub fn write_superblock<D: BlockDevice>(dev: &mut D, log: &Log, clean: bool) -> JResult<(), D::Error> {
    let mut b = [0u8; BLOCK_SIZE];
    write_superblock_in(dev, log, clean, &mut b)
}

/// [`write_superblock`] with the block built in `b` (any content: it is overwritten whole).
/// Errors: the device's.
pub fn write_superblock_in<D: BlockDevice>(
    dev: &mut D,
    log: &Log,
    clean: bool,
    b: &mut Block,
) -> JResult<(), D::Error> {
    b.fill(0);
    log.superblock(clean).encode(b, log.start);
    dev.write_block(log.start, b).map_err(JournalError::Io)?;
    dev.flush().map_err(JournalError::Io)
}

/// One record met by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A block image: its target block and bytes.
    Image {
        /// The record's LSN.
        lsn: u64,
        /// Home block of the image.
        target: u64,
        /// The 4096-byte image.
        image: &'a [u8],
    },
    /// A commit record: every record since the previous commit is committed.
    Commit {
        /// Its LSN.
        lsn: u64,
        /// Record block it is in.
        block: u64,
    },
    /// A vector record (type 3 or 4), reserved for the vector write-ahead log.
    Vector {
        /// Its LSN.
        lsn: u64,
        /// Its type.
        rtype: u16,
    },
}

/// What [`scan`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogScan {
    /// Whether the journal superblock said clean (nothing was read then).
    pub clean: bool,
    /// Committed transactions.
    pub transactions: u64,
    /// Block images in them.
    pub images: u64,
    /// LSN of the last commit read (0 if none).
    pub last_commit_lsn: u64,
    /// Record block after the last commit block (the live window's end); `head` if none.
    pub end: u64,
    /// The last LSN read (0 if none).
    pub last_lsn: u64,
    /// Records read after the last commit: a transaction that never committed (dropped).
    pub uncommitted_records: u64,
    /// Why reading stopped: the first bad record, or `None` at a clean end (zero block or
    /// the whole log read).
    pub stop: Option<FormatError>,
}

/// Reads the log record by record from `head`, as recovery does. The device is passed to each
/// call, so a caller may write between calls (recovery writes images home: never into the
/// journal, so the block the reader keeps stays valid).
struct LogReader {
    /// Byte position of the next record, from record block 0 (circular).
    pos: u64,
    /// LSN it must carry.
    lsn: u64,
    /// Bytes of log read so far (bounded by the log's length).
    read: u64,
    /// Device block held in the scratch block.
    cached: Option<u64>,
}

/// A record read: its header; the payload is in the scratch memory after the block.
struct ReadRecord {
    lsn: u64,
    rtype: u16,
    len: usize,
}

/// Where the payload of the record last read starts in the scratch memory.
const PAYLOAD_AT: usize = BLOCK_SIZE + RECORD_HEADER;

impl LogReader {
    fn new(log: &Log) -> LogReader {
        LogReader { pos: log.head.saturating_mul(BS), lsn: log.head_lsn, read: 0, cached: None }
    }

    /// Copies `len` bytes of the log at byte position `pos` into `scratch[to ..]`, reading
    /// blocks into `scratch[.. BLOCK_SIZE]`.
    fn copy<D: BlockDevice>(
        &mut self,
        dev: &D,
        log: &Log,
        scratch: &mut [u8],
        mut pos: u64,
        to: usize,
        len: usize,
    ) -> JResult<(), D::Error> {
        let ring = log.blocks.saturating_mul(BS);
        let (block, rest) = scratch.split_at_mut(BLOCK_SIZE.min(scratch.len()));
        let out = to
            .checked_sub(BLOCK_SIZE)
            .and_then(|t| rest.get_mut(t..t.saturating_add(len)))
            .ok_or(JournalError::Invalid("journal scratch too small"))?;
        let block: &mut Block = block.try_into().map_err(|_| JournalError::Invalid("journal scratch too small"))?;
        let mut done = 0usize;
        while done < len {
            pos = pos.checked_rem(ring).unwrap_or(0);
            let off = (pos % BS) as usize;
            let n = BLOCK_SIZE.saturating_sub(off).min(len.saturating_sub(done));
            let dev_block = log.record_block(pos / BS);
            if self.cached != Some(dev_block) {
                self.cached = None;
                dev.read_block(dev_block, block).map_err(JournalError::Io)?;
                self.cached = Some(dev_block);
            }
            let src = block.get(off..off.saturating_add(n)).ok_or(JournalError::Invalid("journal read"))?;
            out.get_mut(done..done.saturating_add(n))
                .ok_or(JournalError::Invalid("journal read"))?
                .copy_from_slice(src);
            done = done.saturating_add(n);
            pos = pos.saturating_add(n as u64);
        }
        Ok(())
    }

    /// The next record, checked, or `Ok(None)` at the end of the log (`stop` says why, if a
    /// bad record ended it).
    fn next<D: BlockDevice>(
        &mut self,
        dev: &D,
        log: &Log,
        scratch: &mut [u8],
        stop: &mut Option<FormatError>,
    ) -> JResult<Option<ReadRecord>, D::Error> {
        let ring = log.blocks.saturating_mul(BS);
        let hdr = BLOCK_SIZE;
        loop {
            if self.read >= ring {
                return Ok(None);
            }
            self.copy(dev, log, scratch, self.pos, hdr, 4)?;
            if scratch.get(hdr..hdr.saturating_add(4)) == Some(&[0u8; 4][..]) {
                let off = self.pos % BS;
                if off == 0 {
                    return Ok(None);
                }
                self.advance(BS.saturating_sub(off));
                continue;
            }
            self.copy(dev, log, scratch, self.pos, hdr, RECORD_HEADER)?;
            let head = scratch.get(hdr..).ok_or(JournalError::Invalid("journal scratch too small"))?;
            let h = match peek_record(head) {
                Ok(h) if h.lsn == self.lsn => h,
                Ok(h) => {
                    *stop = Some(FormatError::WrongIdentity {
                        what: "journal record lsn",
                        expected: self.lsn,
                        found: h.lsn,
                    });
                    return Ok(None);
                }
                Err(e) => {
                    *stop = Some(e);
                    return Ok(None);
                }
            };
            // peek_record bounds `len` by MAX_RECORD_PAYLOAD: this fits any usize.
            let total = RECORD_HEADER.saturating_add(h.len as usize).next_multiple_of(8);
            self.copy(dev, log, scratch, self.pos, hdr, total)?;
            let total = total as u64;
            let whole = scratch.get(hdr..).ok_or(JournalError::Invalid("journal scratch too small"))?;
            if let Err(e) = decode_record(whole, &log.uuid, self.lsn) {
                *stop = Some(e);
                return Ok(None);
            }
            let r = ReadRecord { lsn: self.lsn, rtype: h.rtype, len: h.len as usize };
            if h.rtype == RecordType::Commit as u16 {
                // The next transaction starts at the next block.
                let end = self.pos.saturating_add(total).div_ceil(BS).saturating_mul(BS);
                self.advance(end.saturating_sub(self.pos));
            } else {
                self.advance(total);
            }
            self.lsn = self.lsn.saturating_add(1);
            return Ok(Some(r));
        }
    }

    fn advance(&mut self, n: u64) {
        self.pos = self.pos.saturating_add(n);
        self.read = self.read.saturating_add(n);
    }
}

/// The images of a block-images record in `payload`: checks the layout and each target (inside
/// the device, not in the journal) and calls `f(target, image)` for each.
fn for_each_image<E>(
    log: &Log,
    device_blocks: u64,
    payload: &[u8],
    mut f: impl FnMut(u64, &Block) -> JResult<(), E>,
) -> JResult<(), E> {
    let bad = |what, value| JournalError::Corrupt(FormatError::Corrupt { what, value });
    let count = u32_at(payload, 0, "journal images")?;
    let reserved = u32_at(payload, 4, "journal images")?;
    let expect = 8u64.saturating_add(u64::from(count).saturating_mul(8 + BS));
    if count == 0 || reserved != 0 || expect != payload.len() as u64 {
        return Err(bad("journal images record", u64::from(count)));
    }
    let images_at = 8usize.saturating_add((count as usize).saturating_mul(8));
    for i in 0..count as usize {
        let target = u64_at(payload, 8usize.saturating_add(i.saturating_mul(8)), "journal images")?;
        if target >= device_blocks || log.in_journal(target) {
            return Err(bad("journal image target", target));
        }
        let at = images_at.saturating_add(i.saturating_mul(BLOCK_SIZE));
        let image: &Block = payload
            .get(at..at.saturating_add(BLOCK_SIZE))
            .and_then(|b| b.try_into().ok())
            .ok_or(bad("journal images record", u64::from(count)))?;
        f(target, image)?;
    }
    Ok(())
}

/// Reads the log of `dev` from its `head` as recovery does (whatever the clean flag says),
/// calling `visit` on every record in LSN order: those of committed transactions and those of a
/// torn tail alike ([`LogScan`] tells which). `scratch`: at least [`SCRATCH_BYTES`] bytes.
/// Errors: the device's; `visit`'s; `Corrupt` for a checksummed block-images record whose
/// contents are impossible (a target outside the device or inside the journal).
pub fn scan<D: BlockDevice>(
    dev: &D,
    log: &Log,
    scratch: &mut [u8],
    mut visit: impl FnMut(&Entry<'_>) -> JResult<(), D::Error>,
) -> JResult<LogScan, D::Error> {
    let mut s = LogScan { end: log.head, ..LogScan::default() };
    let mut r = LogReader::new(log);
    let mut since_commit = 0u64;
    let mut images = 0u64;
    while let Some(rec) = r.next(dev, log, scratch, &mut s.stop)? {
        s.last_lsn = rec.lsn;
        since_commit = since_commit.saturating_add(1);
        let payload =
            scratch.get(PAYLOAD_AT..PAYLOAD_AT.saturating_add(rec.len)).ok_or(JournalError::Invalid("scratch"))?;
        match rec.rtype {
            1 => for_each_image(log, dev.block_count(), payload, |target, image| {
                images = images.saturating_add(1);
                visit(&Entry::Image { lsn: rec.lsn, target, image })
            })?,
            2 => {
                let block = (r.pos / BS).saturating_sub(1).checked_rem(log.blocks).unwrap_or(0);
                visit(&Entry::Commit { lsn: rec.lsn, block })?;
                s.transactions = s.transactions.saturating_add(1);
                s.images = s.images.saturating_add(images);
                images = 0;
                s.last_commit_lsn = rec.lsn;
                s.end = (r.pos / BS).checked_rem(log.blocks).unwrap_or(0);
                since_commit = 0;
            }
            t => visit(&Entry::Vector { lsn: rec.lsn, rtype: t })?,
        }
    }
    s.uncommitted_records = since_commit;
    Ok(s)
}

/// What [`recover`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The scan of the log (`clean` and nothing else if the journal was clean).
    pub scan: LogScan,
    /// Block images written home.
    pub applied: u64,
}

/// Reads the journal superblock of the filesystem `sb` on `dev`, replays every committed
/// transaction (see the module's docs), flushes, and writes the journal superblock clean with
/// an empty window after the last commit. Returns the log, ready for new transactions, and
/// what was done. A clean journal is not read at all. `scratch`: [`SCRATCH_BYTES`] bytes.
/// Errors: `Corrupt` for a bad journal superblock or an impossible checksummed record; the
/// device's. A crash at any point leaves a journal that the next call replays the same way.
pub fn recover<D: BlockDevice>(dev: &mut D, sb: &Superblock, scratch: &mut [u8]) -> JResult<(Log, Recovery), D::Error> {
    let js = read_superblock(dev, sb, scratch)?;
    let mut log = Log::new(sb, &js);
    if js.flags & JOURNAL_CLEAN != 0 {
        let rec = Recovery { scan: LogScan { clean: true, end: log.head, ..LogScan::default() }, applied: 0 };
        return Ok((log, rec));
    }
    let s = scan(dev, &log, scratch, |_| Ok(()))?;
    let mut applied = 0u64;
    if s.transactions > 0 {
        // Second pass: the images of committed transactions, in LSN order.
        let mut r = LogReader::new(&log);
        let mut stop = None;
        let device_blocks = dev.block_count();
        while let Some(rec) = r.next(&*dev, &log, scratch, &mut stop)? {
            if rec.lsn >= s.last_commit_lsn {
                break;
            }
            if rec.rtype != RecordType::Blocks as u16 {
                continue;
            }
            let payload =
                scratch.get(PAYLOAD_AT..PAYLOAD_AT.saturating_add(rec.len)).ok_or(JournalError::Invalid("scratch"))?;
            for_each_image(&log, device_blocks, payload, |target, image| {
                dev.write_block(target, image).map_err(JournalError::Io)?;
                applied = applied.saturating_add(1);
                Ok(())
            })?;
        }
        dev.flush().map_err(JournalError::Io)?;
    }
    log.head = s.end;
    log.next = s.end;
    log.next_lsn = s.last_lsn.max(log.next_lsn).saturating_add(log.lsn_gap());
    log.head_lsn = log.next_lsn;
    // The block in the scratch, not on the stack: this runs in the kernel's mount.
    let block = scratch_block(scratch)?;
    write_superblock_in(dev, &log, true, block)?;
    Ok((log, Recovery { scan: s, applied }))
}

/// The first block of `scratch`, where the journal superblock is read and written.
/// Errors: `Invalid` for a scratch shorter than a block.
fn scratch_block<E>(scratch: &mut [u8]) -> JResult<&mut Block, E> {
    scratch.get_mut(..BLOCK_SIZE).and_then(|b| b.try_into().ok()).ok_or(JournalError::Invalid("scratch"))
}

/// Reads and checks the journal superblock of `sb` on `dev`. Errors: `Corrupt`, the device's.
pub fn read_superblock<D: BlockDevice>(
    dev: &D,
    sb: &Superblock,
    scratch: &mut [u8],
) -> JResult<JournalSuper, D::Error> {
    let r = sb.region(Region::Journal);
    let block = scratch_block(scratch)?;
    dev.read_block(r.start, block).map_err(JournalError::Io)?;
    Ok(JournalSuper::decode(block, r.start, r.blocks, &sb.uuid)?)
}
