//! Checking a filesystem against every rule of the format, and repairing what can be repaired.
//!
//! [`open`] finds a usable superblock (the primary, or the backup in the device's last block),
//! [`check`] walks the tree from the root and compares what it finds with the bitmaps and
//! counters, [`repair`] applies the fixes of the problems that have one, and [`run`] does the
//! three the way `fsck.vexfs` does.
//!
//! The journal comes first ([`run`]): `-y` and `-p` replay it on the device with the kernel's
//! code (`vexfs_core::journal::recover`), `-n` replays it into an in-memory [`Overlay`] of the
//! device and checks the replayed state without writing. What the journal held (committed
//! transactions, a torn tail) is information, not a problem; a corrupt journal superblock or an
//! impossible record is a problem. While the filesystem is not cleanly unmounted (`RECOVER`
//! set, state not clean) the superblock's free counts are hints (the kernel recounts them at
//! mount): a difference is noted, and fixed silently by a repair.
//!
//! A repair never guesses at data: structural damage (bad checksums, extents, directory
//! blocks, the vector store) is reported, not fixed. Blocks and inodes are only freed when the whole tree could
//! be read, so nothing still referenced by an unreadable object is ever handed out again.
//! The HNSW graph is the exception: it is derived from the vectors, so `-y` rebuilds a damaged
//! graph from them when the vector bitmap, map, vectors and chunk lists agree (`rebuild`).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::io;

use vexfs_core::dir_index::{self, bucket_keys, bucket_of, name_key, Header, INDEX_MAGIC, MAX_DEPTH};
use vexfs_core::format::block::check_header;
use vexfs_core::format::dir::{self, check_dir_block, dt_from_mode, seal_dir_block};
use vexfs_core::format::inode::{Inode, INODE_FLAG_EOFBLOCKS, INODE_FLAG_INDEX, S_IFDIR, S_IFLNK, S_IFMT};
use vexfs_core::format::journal::{JournalSuper, JOURNAL_CLEAN, RECORD_MAGIC};
use vexfs_core::format::superblock::{
    Region, Superblock, FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_EOFBLOCKS, FEATURE_INCOMPAT_RECOVER,
    FORMAT_VERSION, ROOT_INO, STATE_CLEAN, STATE_ERRORS,
};
use vexfs_core::format::vector::HnswHeader;
use vexfs_core::format::{bit_find_clear, bit_set, bit_test, BLOCK_SIZE, INODE_SIZE};
use vexfs_core::io::BlockDevice;

use crate::bits::{count_clear, first_set};
use crate::dirs::{dir_error, layout_issues, mapped_blocks, DirHost, HostDir, LayoutIssue, DEPTHS};
use crate::exit::FsckStatus;
use crate::image::read_superblock;
use crate::journal::{self as jnl, LogInfo};
use crate::overlay::Overlay;
use crate::{Error, Image, Result};

mod rebuild;
mod vectors;

pub use rebuild::{Rebuilt, REBUILDING};

const BS: u64 = BLOCK_SIZE as u64;

/// The kind of a [`Problem`], one per check (tests and scripts match on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The primary superblock is unreadable or invalid; the backup is used instead.
    PrimarySuperblock,
    /// The backup superblock is unreadable or its static fields differ from the primary's.
    BackupSuperblock,
    /// The superblock's state has the errors flag set (the kernel found an error).
    ErrorsFlag,
    /// The journal superblock is invalid, the log holds an impossible record (a checksummed
    /// block image for a journal block or past the device), or the journal holds
    /// transactions to replay without `RECOVER` set in the superblock.
    Journal,
    /// The vector bitmap disagrees with the slot states (a bit set for a free slot, clear for
    /// a slot in the graph), or has bits set past the last slot.
    VectorBitmap,
    /// The HNSW header block does not decode (magic, checksum, block number, reserved bytes).
    VectorHeader,
    /// The HNSW header's live or deleted count differs from the slots found.
    VectorCounts,
    /// The entry point is wrong: not a live slot, not of `entry_level`, below the highest live
    /// level, or missing (set) while live vectors exist (do not).
    VectorEntry,
    /// A level-0 or upper-level record is invalid: unknown flags, level or upper index other
    /// than the slot's, a neighbour count over `2m` (level 0) or `m`, or a free slot's record
    /// not zero.
    VectorRecord,
    /// A neighbour list links to a slot out of range or free, a live node to itself, or a
    /// node at level `l` to one whose level is below `l`.
    VectorLinks,
    /// A vector map entry is invalid: bad checksum or zero owner, a live slot without an owner,
    /// a free or deleted slot with one.
    VectorMap,
    /// The map and the files' chunk lists disagree: a live slot owned by a file chunk that
    /// does not hold it, or a file chunk whose slot is not live or is owned by another chunk.
    VectorOwner,
    /// One slot is listed by two chunks (of one file or of two).
    VectorShared,
    /// A vector in the graph has a NaN or infinite component.
    VectorData,
    /// With SQ8, a vector's code is not the quantisation of the vector (derived data: `-y`
    /// and `-p` write it again from the vector).
    VectorCode,
    /// A bitmap has bits set past the last block or inode.
    BitmapPadding,
    /// A reachable inode does not decode (checksum, mode, flags, ...).
    Inode,
    /// The root inode is not a directory.
    RootNotDir,
    /// An inode's extents or extent block are invalid.
    Extents,
    /// An inode's `blocks` field differs from the blocks its extents map.
    BlockCount,
    /// An extent maps a file block at or past the end of the file (of a file without
    /// `INODE_FLAG_EOFBLOCKS`: no preallocation).
    ExtentPastSize,
    /// A file with blocks preallocated past its size (inode flag `INODE_FLAG_EOFBLOCKS`) on a
    /// filesystem without `FEATURE_INCOMPAT_EOFBLOCKS`.
    EofBlocksFeature,
    /// Blocks claimed by two inodes.
    DuplicateBlocks,
    /// An inode's xattr block is invalid (format v3).
    Xattrs,
    /// A directory's size is not whole blocks or its blocks have holes.
    DirLayout,
    /// A directory block's header is invalid (magic, checksum, block number, owner).
    DirBlock,
    /// A malformed dirent (rec_len, name_len, name, file type).
    DirEntry,
    /// Two entries with the same name in one directory.
    DuplicateName,
    /// An entry points at an inode number out of range.
    BadEntry,
    /// An indexed directory (inode flag `INODE_FLAG_INDEX`) on a filesystem without
    /// `FEATURE_INCOMPAT_DIR_INDEX`.
    DirIndexFeature,
    /// An indexed directory's header (logical block 0) is a hole or does not decode, or its
    /// bucket counts differ from the buckets mapped at each depth.
    DirIndexHeader,
    /// An indexed directory maps a block that is no bucket, two buckets one of which holds the
    /// other's keys, or leaves keys without a bucket.
    DirIndexBuckets,
    /// An entry of an indexed directory lies outside its bucket's key range.
    DirIndexEntry,
    /// An entry's file type does not match its inode's mode.
    FileType,
    /// An inode's `parent` field is wrong.
    Parent,
    /// A directory is reachable through more than one entry (or the root through one).
    DirLinkedTwice,
    /// An inode's link count differs from the entries (and subdirectories) counted.
    LinkCount,
    /// A symlink's size is not 1..=4096 bytes.
    Symlink,
    /// An inode's chunk list is invalid: `vec_count` over the limit, a vector-id block missing,
    /// unexpected, outside the data region or with a bad header or count, unused inline ids
    /// not zero, a slot out of range, or vectors on a file that is not regular.
    VectorRefs,
    /// Inodes allocated in the bitmap but not reachable from the root.
    InodeUnreachable,
    /// Reachable inodes not allocated in the bitmap.
    InodeUnallocated,
    /// A free inode (bitmap bit clear, unreachable) whose slot is not all zero.
    FreeInodeNotZero,
    /// Blocks in use but free in the bitmap.
    BlockUnmarked,
    /// Blocks marked in use in the bitmap but used by nothing.
    BlockUnused,
    /// The superblock's free block count differs from the bitmap.
    FreeBlocks,
    /// The superblock's free inode count differs from the bitmap.
    FreeInodes,
}

/// How a problem is repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Rewrite the primary superblock from the backup (free counts recomputed).
    RestorePrimary,
    /// Rewrite the backup superblock from the primary.
    WriteBackup,
    /// Replay the journal (`vexfs_core::journal::recover`): applied before the check by `-y`
    /// and `-p`, into memory only by `-n`.
    ReplayJournal,
    /// Write a new clean journal superblock (the one on disk does not decode), with LSNs
    /// above every record left in the log so none of them is read again. Whatever the log
    /// held is lost; `RECOVER` is cleared.
    RebuildJournal,
    /// Clear the errors flag (state becomes clean).
    ClearErrors,
    /// Write the SQ8 code of vector slot `slot` from its vector (`vexfs_core::sq8::quantise`),
    /// in place (the code is derived from the vector, which is not changed).
    WriteCode {
        /// The slot.
        slot: u32,
    },
    /// Set the incompat feature `EOFBLOCKS` in the superblock (a file has the inode flag
    /// `EOFBLOCKS`: its preallocation past the size is kept, as the kernel would have set it).
    SetEofBlocks,
    /// Set (`used`) or clear `len` block bitmap bits from block `start`.
    BlockBits {
        /// First block.
        start: u64,
        /// Number of blocks.
        len: u64,
        /// Set (in use) rather than clear.
        used: bool,
    },
    /// Set or clear the inode bitmap bits of inodes `first .. first + len`; clearing also
    /// zeroes their slots in the inode table.
    InodeBits {
        /// First inode number.
        first: u64,
        /// Number of inodes.
        len: u64,
        /// Set (in use) rather than clear.
        used: bool,
    },
    /// Zero the table slot of free inode `ino`.
    ZeroInode {
        /// The free inode.
        ino: u32,
    },
    /// Clear the bits past the last block (block bitmap) or inode (inode bitmap), bit
    /// indices `first_bit .. first_bit + bits`.
    ClearPadding {
        /// The inode bitmap rather than the block bitmap.
        inode_bitmap: bool,
        /// First bit to clear.
        first_bit: u64,
        /// Number of bits.
        bits: u64,
    },
    /// Set an inode's link count.
    Links {
        /// The inode.
        ino: u32,
        /// The count found: entries naming a file; 2 plus its subdirectories for a directory.
        links: u16,
    },
    /// Set an inode's parent field.
    Parent {
        /// The directory.
        ino: u32,
        /// The directory holding its one entry.
        parent: u32,
    },
    /// Set an inode's block count.
    Blocks {
        /// The inode.
        ino: u32,
        /// The blocks its extents map (and its vector-id block).
        blocks: u64,
    },
    /// Set the file type of entry `name` in directory block `block` of directory `dir`.
    FileType {
        /// The directory.
        dir: u32,
        /// The directory block holding the entry (device block number).
        block: u64,
        /// The entry's name.
        name: Vec<u8>,
        /// The inode the entry names.
        ino: u32,
        /// The `DT_*` type of that inode's mode.
        file_type: u8,
    },
    /// Recompute the superblock's free counts from the bitmaps.
    FreeCounts,
    /// Rewrite the header of indexed directory `dir` (device block `block`) with its seed and
    /// the buckets mapped at each depth. Offered when the block's own header (magic,
    /// checksum, number, owner) is valid and the mapped buckets cover the key space once.
    DirIndexHeader {
        /// The directory.
        dir: u32,
        /// Its header's device block.
        block: u64,
        /// The seed the header holds.
        seed: [u8; 16],
        /// The buckets mapped at each depth `0..=30`.
        leaves: Vec<u32>,
    },
    /// Move entry `name` of indexed directory `dir` from bucket block `block`, whose keys do
    /// not hold its key, into its bucket (`vexfs_core::dir_index::insert`, which may split
    /// it). Offered when the index is otherwise sound and the name appears once.
    MoveEntry {
        /// The directory.
        dir: u32,
        /// The device block holding the entry.
        block: u64,
        /// The entry's name.
        name: Vec<u8>,
        /// The inode it names.
        ino: u32,
        /// Its `DT_*` type as stored.
        file_type: u8,
    },
    /// Set directory `ino`'s size (an indexed directory: `(highest mapped logical block + 1)
    /// * 4096`).
    DirSize {
        /// The directory.
        ino: u32,
        /// The size its blocks give.
        size: u64,
    },
    /// Rebuild the HNSW graph (header and records) from the vectors: every live slot linked
    /// again in its own slot by the kernel's insert code, tombstones dropped. Offered when the
    /// graph is damaged but the vector bitmap, map, vectors and chunk lists agree.
    RebuildGraph,
    /// Set the HNSW header's live, deleted and pending counts (the slots found).
    VectorCounts {
        /// Live vectors.
        live: u32,
        /// Deleted vectors (tombstones) still in the graph.
        deleted: u32,
        /// Pending vectors (stored, not yet linked).
        pending: u32,
    },
}

impl Fix {
    /// Whether `-p` (preen) may apply this fix without asking: it loses no data and no
    /// reference. Freeing unreachable inodes, rebuilding the journal or restoring the primary
    /// superblock need `-y`, and so does rebuilding the HNSW graph (it rewrites the whole
    /// region); replaying the journal is what a mount does, so `-p` does it.
    pub fn preen_safe(&self) -> bool {
        match self {
            Fix::RestorePrimary | Fix::RebuildJournal | Fix::ClearErrors | Fix::RebuildGraph => false,
            // It may split buckets (allocates blocks): -y, as e2fsck's rehash of a directory.
            Fix::MoveEntry { .. } => false,
            Fix::InodeBits { used, .. } => *used,
            _ => true,
        }
    }
}

/// One inconsistency.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Which check found it.
    pub kind: Kind,
    /// What is wrong, for humans (names the inode, block, entry and values).
    pub message: String,
    /// How to repair it, or `None` when fsck cannot.
    pub fix: Option<Fix>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What [`check`] found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
    /// Inodes reachable from the root.
    pub inodes_used: u64,
    /// Blocks in use: metadata, both superblocks and every block claimed by a reachable inode.
    pub blocks_used: u64,
    /// The superblock the check used (the primary, or the backup when the primary is bad).
    pub sb: Superblock,
    /// Information that is not a problem (free counts that are hints, the journal's state).
    pub notes: Vec<String>,
}

/// How [`check_with`] reads what it finds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOpts {
    /// The filesystem was not cleanly unmounted (`RECOVER` set or state not clean, before any
    /// replay): the superblock's free counts are hints, a difference is a note.
    pub counts_are_hints: bool,
    /// The journal was read (and replayed where it could be) before the check: a journal that
    /// is still not clean is not reported again.
    pub journal_handled: bool,
}

/// Opens the filesystem on `dev` for checking: with the primary superblock if it is valid,
/// else with a valid backup in the device's last block (reported as a
/// [`Kind::PrimarySuperblock`] problem). Errors (fsck's "operational error"): neither
/// superblock is usable (the primary's error is returned), or `Io`.
pub fn open<D: BlockDevice<Error = io::Error>>(dev: D) -> Result<(Image<D>, Vec<Problem>)> {
    let primary = match read_superblock(&dev, 0) {
        Ok(sb) => return Ok((Image::with_superblock(dev, sb), Vec::new())),
        Err(e) => e,
    };
    let last = dev.block_count().saturating_sub(1);
    match read_superblock(&dev, last) {
        Ok(sb) if last > 0 && sb.backup_block == last => {
            let p = Problem {
                kind: Kind::PrimarySuperblock,
                message: format!("{primary}; using the backup superblock in block {last}"),
                fix: Some(Fix::RestorePrimary),
            };
            Ok((Image::with_superblock(dev, sb), vec![p]))
        }
        _ => Err(primary),
    }
}

/// Checks everything: backup superblock, state, journal superblock, the tree from the root
/// (inodes, extents, chunk lists, directories, entries, link counts), the vector index (header,
/// entry point, slots, records, links, vectors, the map against the chunk lists), the bitmaps
/// against what the tree uses, and the free counts. `early` are problems [`open`] found.
/// Errors: `Io` only; everything wrong on disk is a [`Problem`].
pub fn check<D: BlockDevice<Error = io::Error>>(img: &Image<D>, early: Vec<Problem>) -> Result<Report> {
    let opts = CheckOpts { counts_are_hints: unclean(img.sb()), journal_handled: false };
    check_with(img, early, opts)
}

/// Whether `sb` says the filesystem was not cleanly unmounted.
fn unclean(sb: &Superblock) -> bool {
    sb.feature_incompat & FEATURE_INCOMPAT_RECOVER != 0 || sb.state & STATE_CLEAN == 0
}

/// [`check`] with explicit [`CheckOpts`].
pub fn check_with<D: BlockDevice<Error = io::Error>>(
    img: &Image<D>,
    early: Vec<Problem>,
    opts: CheckOpts,
) -> Result<Report> {
    let from_backup = early.iter().any(|p| p.kind == Kind::PrimarySuperblock);
    let mut c = Checker::new(img, early)?;
    c.counts_are_hints = opts.counts_are_hints;
    c.journal_handled = opts.journal_handled;
    if !from_backup {
        c.check_backup()?;
    }
    c.check_state_and_journal()?;
    c.walk()?;
    c.walk_orphans()?;
    c.check_links();
    c.check_vectors()?;
    c.check_inode_bitmap()?;
    c.check_block_bitmap();
    c.check_free_counts();
    let blocks_used = c.claimed.iter().map(|b| b.count_ones() as u64).sum();
    Ok(Report {
        problems: c.problems,
        inodes_used: c.reach.len() as u64,
        blocks_used,
        sb: img.sb().clone(),
        notes: c.notes,
    })
}

/// What `fsck.vexfs` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `-n`: report only, never write.
    Check,
    /// `-p`: apply the fixes that are [`Fix::preen_safe`].
    Preen,
    /// `-y`: apply every fix.
    Repair,
}

/// Result of [`run`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The problems found by the first check.
    pub report: Report,
    /// For each problem, whether its fix was applied.
    pub fixed: Vec<bool>,
    /// Problems a second check still finds after repairing (all of them when nothing was
    /// repaired).
    pub remaining: Vec<Problem>,
    /// The journal as found before anything was replayed (`None` when it could not be read).
    pub journal: Option<LogInfo>,
    /// What the replay did (`None` when nothing was replayed: a clean journal is replayed as
    /// "nothing to do"; a corrupt one is not replayed at all).
    pub replay: Option<vexfs_core::journal::Recovery>,
    /// Whether the replay was applied to the device (`-y`, `-p`) rather than to memory (`-n`).
    pub replay_applied: bool,
    /// Lines of information: the journal's state, the free counts when they are hints, a
    /// format upgrade.
    pub notes: Vec<String>,
    /// What the rebuild of the HNSW graph did, when [`Fix::RebuildGraph`] was applied.
    pub rebuilt: Option<Rebuilt>,
}

impl Outcome {
    /// The e2fsck status: [`FsckStatus::OK`] clean, [`FsckStatus::CORRECTED`] errors
    /// corrected, [`FsckStatus::UNCORRECTED`] errors left uncorrected.
    pub fn status(&self) -> FsckStatus {
        FsckStatus::of_check(self.report.problems.len(), self.remaining.len())
    }

    /// [`status`](Self::status) as a number: 0 clean, 1 errors corrected, 4 errors left
    /// uncorrected.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.status().code())
    }
}

/// Opens the filesystem on `dev`, replays its journal (on the device with `-y` and `-p`, into
/// memory with `-n`), checks it and (per `mode`) repairs it, then checks again. With `-y`, a
/// format v1 or v2 filesystem is upgraded to v3 (both superblocks and the journal superblock).
/// Errors: those of [`open`] and `Io`.
pub fn run<D: BlockDevice<Error = io::Error>>(dev: D, mode: Mode) -> Result<(Outcome, D)> {
    let (img, mut early) = open(dev)?;
    let sb = img.sb().clone();
    let mut dev = img.into_device();
    let info = jnl::read_log(&dev, &sb)?;
    let opts = CheckOpts { counts_are_hints: unclean(&sb) || !info.clean(), journal_handled: true };
    let after = CheckOpts { counts_are_hints: false, journal_handled: true };
    let mut notes = journal_notes(&sb, &info, mode);
    let replayable = info.superblock.is_ok() && info.error.is_none();
    if let Some(e) = &info.error {
        let msg = format!("journal: {e}: the log cannot be replayed");
        early.push(Problem { kind: Kind::Journal, message: msg, fix: None });
    }
    let mut pre_fixed = Vec::new();
    if replayable && !info.clean() && sb.feature_incompat & FEATURE_INCOMPAT_RECOVER == 0 {
        let msg = "the journal holds transactions to replay but the superblock does not have RECOVER set".to_string();
        early.push(Problem { kind: Kind::Journal, message: msg, fix: Some(Fix::ReplayJournal) });
        pre_fixed.push(early.len() - 1);
    }
    if mode == Mode::Check {
        let mut ov = Overlay::new(dev);
        let replay = if replayable { Some(jnl::recover(&mut ov, &sb)?.1) } else { None };
        let sb = if replay.is_some() { replayed_features(&ov, sb) } else { sb };
        let img = Image::with_superblock(ov, sb);
        let report = check_with(&img, early, opts)?;
        notes.extend(report.notes.iter().cloned());
        let remaining = report.problems.clone();
        let fixed = vec![false; report.problems.len()];
        let out = Outcome {
            report,
            fixed,
            remaining,
            journal: Some(info),
            replay,
            replay_applied: false,
            notes,
            rebuilt: None,
        };
        return Ok((out, img.into_device().into_inner()));
    }
    let replay = if replayable { Some(jnl::recover(&mut dev, &sb)?.1) } else { None };
    let sb = if replay.is_some() { replayed_features(&dev, sb) } else { sb };
    let mut img = Image::with_superblock(dev, sb);
    if replay.is_some() {
        notes.extend(after_replay(&mut img, mode == Mode::Repair)?);
    }
    let report = check_with(&img, early, after)?;
    notes.extend(report.notes.iter().cloned());
    let mut fixed = vec![false; report.problems.len()];
    if replay.is_some() {
        for &i in &pre_fixed {
            if let Some(f) = fixed.get_mut(i) {
                *f = true;
            }
        }
    }
    let mut remaining: Vec<Problem> =
        report.problems.iter().zip(&fixed).filter(|(_, &f)| !f).map(|(p, _)| p.clone()).collect();
    let mut rebuilt = None;
    if !remaining.is_empty() {
        let done;
        (done, rebuilt) = repair_all(&mut img, &report.problems, mode == Mode::Preen)?;
        for (f, d) in fixed.iter_mut().zip(&done) {
            *f |= *d;
        }
        if done.iter().any(|&f| f) {
            let (img2, early) = open(img.into_device())?;
            remaining = check_with(&img2, early, after)?.problems;
            img = img2;
        }
    }
    let out = Outcome { report, fixed, remaining, journal: Some(info), replay, replay_applied: true, notes, rebuilt };
    Ok((out, img.into_device()))
}

/// `sb` with the incompat features the journal's replay set in the primary superblock: the
/// kernel sets `EOFBLOCKS` in a transaction (with the first block preallocated past a file's
/// size), so before the replay the primary on the device may not have it yet; the kernel's
/// mount reads the superblock again after its replay, as this does. A primary that does not
/// decode (the check runs on the backup) adds nothing.
fn replayed_features<D: BlockDevice>(dev: &D, mut sb: Superblock) -> Superblock {
    let mut b = [0u8; BLOCK_SIZE];
    if dev.read_block(0, &mut b).is_ok() {
        if let Ok(p) = Superblock::decode(&b[..]) {
            sb.feature_incompat |= p.feature_incompat & FEATURE_INCOMPAT_EOFBLOCKS;
        }
    }
    sb
}

/// The notes about the journal and the format, before any replay.
fn journal_notes(sb: &Superblock, info: &LogInfo, mode: Mode) -> Vec<String> {
    let mut out = Vec::new();
    if sb.format_version != FORMAT_VERSION {
        out.push(if mode == Mode::Repair {
            format!("format v{} upgraded to v{FORMAT_VERSION}", sb.format_version)
        } else {
            format!(
                "format v{} (read as v{FORMAT_VERSION}; fsck.vexfs -y or a read-write mount upgrades it)",
                sb.format_version
            )
        });
    }
    if info.superblock.is_err() || info.error.is_some() {
        return out;
    }
    if info.clean() {
        if sb.feature_incompat & FEATURE_INCOMPAT_RECOVER != 0 {
            out.push("RECOVER is set and the journal is clean: nothing to replay".into());
        }
        return out;
    }
    let (t, i) = (info.transactions_to_replay(), info.images_to_replay());
    let how = if mode == Mode::Check {
        "replayed in memory for this check (fsck.vexfs -y or a mount applies it)"
    } else {
        "replayed"
    };
    out.push(format!("journal: {t} committed transaction(s), {i} block image(s) to replay: {how}"));
    if let Some(s) = info.scan.filter(|s| s.uncommitted_records > 0) {
        let why = s.stop.map(|e| format!(" (reading stopped: {e})")).unwrap_or_default();
        out.push(format!(
            "journal: {} record(s) after the last commit dropped, a transaction a crash tore{why}",
            s.uncommitted_records
        ));
    }
    out
}

/// After a replay on the device: clears `RECOVER`, recounts the free counts from the bitmaps
/// (hints until now) and, with `upgrade`, makes a v1 filesystem v2 (primary and backup
/// superblocks, journal superblock). Returns notes.
fn after_replay<D: BlockDevice<Error = io::Error>>(img: &mut Image<D>, upgrade: bool) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let old = img.sb().clone();
    let blocks = img.read_region(Region::BlockBitmap)?;
    let inodes = img.read_region(Region::InodeBitmap)?;
    let upgrading = upgrade && old.format_version != FORMAT_VERSION;
    {
        let sb = img.sb_mut();
        sb.feature_incompat &= !FEATURE_INCOMPAT_RECOVER;
        if unclean(&old) {
            sb.free_blocks = count_clear(&blocks, sb.block_count);
            sb.free_inodes = count_clear(&inodes, sb.inode_count as u64) as u32;
            sb.state |= STATE_CLEAN;
        }
        if upgrading {
            sb.format_version = FORMAT_VERSION;
        }
    }
    if *img.sb() == old {
        return Ok(notes);
    }
    if (old.free_blocks, old.free_inodes) != (img.sb().free_blocks, img.sb().free_inodes) {
        notes.push(format!(
            "free counts recomputed from the bitmaps: {} blocks, {} inodes (were {}, {})",
            img.sb().free_blocks,
            img.sb().free_inodes,
            old.free_blocks,
            old.free_inodes
        ));
    }
    if upgrading {
        let backup = img.sb().backup_block;
        let b = img.read_block(backup)?;
        if let Ok(mut bsb) = Superblock::decode(&b[..]) {
            bsb.format_version = FORMAT_VERSION;
            let mut nb = [0u8; BLOCK_SIZE];
            bsb.encode(&mut nb);
            img.write_block(backup, &nb)?;
        }
        let sb = img.sb().clone();
        let (log, _) = jnl::recover(img.device_mut(), &sb)?;
        jnl::write_superblock(img.device_mut(), &log, true)?;
    }
    let mut b = [0u8; BLOCK_SIZE];
    img.sb().encode(&mut b);
    img.write_block(0, &b)?;
    img.device_mut().flush().map_err(Error::io("flushing the device"))?;
    Ok(notes)
}

/// Applies the fixes of `problems` (only the preen-safe ones when `preen`); returns, for each
/// problem, whether its fix was applied. Free counts are recomputed from the bitmaps whenever
/// anything changed. Errors: `Io`, `Format` (an object to fix no longer decodes).
pub fn repair<D: BlockDevice<Error = io::Error>>(
    img: &mut Image<D>,
    problems: &[Problem],
    preen: bool,
) -> Result<Vec<bool>> {
    Ok(repair_all(img, problems, preen)?.0)
}

/// [`repair`], and what the rebuild of the HNSW graph did if one was applied.
fn repair_all<D: BlockDevice<Error = io::Error>>(
    img: &mut Image<D>,
    problems: &[Problem],
    preen: bool,
) -> Result<(Vec<bool>, Option<Rebuilt>)> {
    let mut apply: Vec<bool> =
        problems.iter().map(|p| p.fix.as_ref().is_some_and(|f| !preen || f.preen_safe())).collect();
    // The errors bit is cleared only by a repair that leaves nothing else wrong (as e2fsck).
    let clear_errors = |p: &Problem| p.fix == Some(Fix::ClearErrors);
    if problems.iter().zip(&apply).any(|(p, &a)| !a && !clear_errors(p)) {
        for (p, a) in problems.iter().zip(apply.iter_mut()) {
            *a &= !clear_errors(p);
        }
    }
    let fixes: Vec<&Fix> =
        problems.iter().zip(&apply).filter(|(_, &a)| a).filter_map(|(p, _)| p.fix.as_ref()).collect();
    if fixes.is_empty() {
        return Ok((apply, None));
    }
    let mut blocks = img.read_region(Region::BlockBitmap)?;
    let mut inodes = img.read_region(Region::InodeBitmap)?;
    let (mut blocks_old, mut inodes_old) = (blocks.clone(), inodes.clone());
    // Blocks in use that the bitmap has free, set by a later fix: a moved entry's split must
    // not take them.
    let reserved: Vec<(u64, u64)> = fixes
        .iter()
        .filter_map(|f| match f {
            Fix::BlockBits { start, len, used: true } => Some((*start, *len)),
            _ => None,
        })
        .collect();
    let mut write_backup = false;
    let mut rebuilt = None;
    // The PQ codebook, read by the first code rewritten (nothing here writes it).
    let mut codebook = None;
    for fix in &fixes {
        match fix {
            Fix::RestorePrimary | Fix::FreeCounts | Fix::ReplayJournal => {}
            Fix::RebuildGraph if rebuilt.is_none() => rebuilt = Some(rebuild::rebuild_graph(img)?),
            Fix::RebuildGraph => {}
            Fix::VectorCounts { live, deleted, pending } => {
                let h = img.sb().region(Region::Hnsw).start;
                let mut b = img.read_block(h)?;
                let mut hdr =
                    HnswHeader::decode(&b[..], h).map_err(Error::format(format!("hnsw header (block {h})")))?;
                hdr.live = *live;
                hdr.deleted = *deleted;
                hdr.pending = *pending;
                hdr.encode(&mut b[..], h);
                img.write_block(h, &b)?;
            }
            Fix::WriteBackup => write_backup = true,
            Fix::ClearErrors => img.sb_mut().state = STATE_CLEAN,
            Fix::SetEofBlocks => img.sb_mut().feature_incompat |= FEATURE_INCOMPAT_EOFBLOCKS,
            Fix::WriteCode { slot } => write_code(img, *slot, &mut codebook)?,
            Fix::RebuildJournal => {
                let j = img.sb().region(Region::Journal);
                let lsn = max_lsn_in_log(img)?;
                // Past every LSN the log holds, by more than the log can hold records.
                let next = lsn.saturating_add(j.blocks.saturating_mul(BS / 24)).saturating_add(2);
                let js = JournalSuper { next_lsn: next, checkpoint_lsn: next, ..JournalSuper::new(img.sb().uuid) };
                let mut b = [0u8; BLOCK_SIZE];
                js.encode(&mut b, j.start);
                img.write_block(j.start, &b)?;
                img.sb_mut().feature_incompat &= !FEATURE_INCOMPAT_RECOVER;
            }
            Fix::BlockBits { start, len, used } => {
                for b in *start..start + len {
                    bit_set(&mut blocks, b as usize, *used);
                }
            }
            Fix::InodeBits { first, len, used } => {
                for ino in *first..first + len {
                    bit_set(&mut inodes, (ino - 1) as usize, *used);
                    if !*used {
                        zero_inode(img, ino as u32)?;
                    }
                }
            }
            Fix::ClearPadding { inode_bitmap, first_bit, bits } => {
                let map = if *inode_bitmap { &mut inodes } else { &mut blocks };
                for i in *first_bit..first_bit + bits {
                    bit_set(map, i as usize, false);
                }
            }
            Fix::ZeroInode { ino } => zero_inode(img, *ino)?,
            Fix::Links { ino, links } => update_inode(img, *ino, |i| i.links = *links)?,
            Fix::Parent { ino, parent } => update_inode(img, *ino, |i| i.parent = *parent)?,
            Fix::Blocks { ino, blocks } => update_inode(img, *ino, |i| i.blocks = *blocks)?,
            Fix::DirIndexHeader { dir, block, seed, leaves } => {
                let mut h = Header::new(*seed);
                for (x, l) in h.leaves.iter_mut().zip(leaves) {
                    *x = *l;
                }
                let mut b = img.read_block(*block)?;
                h.encode(&mut b[..], *block, u64::from(*dir));
                img.write_block(*block, &b)?;
            }
            Fix::MoveEntry { dir, block, name, ino, file_type } => {
                let inode = img.inode(*dir)?;
                let mut host = RepairHost { img: &mut *img, blocks: &mut blocks, reserved: &reserved };
                let mut s = HostDir::new(&mut host, *dir, inode);
                // Into its bucket first: an error leaves the entry where it was.
                if dir_index::lookup(&mut s, name).map_err(|e| dir_error(e, *dir))?.is_none() {
                    dir_index::insert(&mut s, name, *ino, *file_type).map_err(|e| dir_error(e, *dir))?;
                }
                let mut b = img.read_block(*block)?;
                let what = format!("directory {dir} block {block}");
                dir::remove(&mut b[..], name).map_err(Error::format(what))?;
                seal_dir_block(&mut b[..], *block, u64::from(*dir));
                img.write_block(*block, &b)?;
            }
            Fix::DirSize { ino, size } => update_inode(img, *ino, |i| i.size = *size)?,
            Fix::FileType { dir, block, name, ino, file_type } => {
                let mut b = img.read_block(*block)?;
                let what = format!("directory {dir} block {block}");
                dir::retarget(&mut b[..], name, *ino, *file_type).map_err(Error::format(what))?;
                seal_dir_block(&mut b[..], *block, *dir as u64);
                img.write_block(*block, &b)?;
            }
        }
    }
    img.write_region_changes(Region::BlockBitmap, &mut blocks_old, &blocks)?;
    img.write_region_changes(Region::InodeBitmap, &mut inodes_old, &inodes)?;
    let sb = img.sb_mut();
    sb.free_blocks = count_clear(&blocks, sb.block_count);
    sb.free_inodes = count_clear(&inodes, sb.inode_count as u64) as u32;
    let mut b = [0u8; BLOCK_SIZE];
    img.sb().encode(&mut b);
    img.write_block(0, &b)?;
    if write_backup {
        let backup = img.sb().backup_block;
        img.write_block(backup, &b)?;
    }
    img.device_mut().flush().map_err(Error::io("flushing the device"))?;
    Ok((apply, rebuilt))
}

/// The largest LSN of anything that looks like a record header (magic at an 8-byte aligned
/// offset) in the journal's record blocks (0 if none).
fn max_lsn_in_log<D: BlockDevice<Error = io::Error>>(img: &Image<D>) -> Result<u64> {
    let j = img.sb().region(Region::Journal);
    let mut max = 0u64;
    for n in j.start + 1..j.end() {
        let b = img.read_block(n)?;
        for at in (0..BLOCK_SIZE - 16).step_by(8) {
            if b[at..at + 4] == RECORD_MAGIC.to_le_bytes() {
                let lsn = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap_or_default());
                max = max.max(lsn);
            }
        }
    }
    Ok(max)
}

/// The image being repaired as the host of a directory's changes ([`HostDir`]): blocks from
/// the repair's copy of the block bitmap (written when the repair ends), never one of
/// `reserved` (runs `(start, len)` in use though free in the bitmap).
struct RepairHost<'a, D> {
    img: &'a mut Image<D>,
    blocks: &'a mut Vec<u8>,
    reserved: &'a [(u64, u64)],
}

impl<D: BlockDevice<Error = io::Error>> DirHost for RepairHost<'_, D> {
    type Dev = D;
    fn img(&self) -> &Image<D> {
        self.img
    }
    fn img_mut(&mut self) -> &mut Image<D> {
        self.img
    }
    fn take_block(&mut self) -> Result<u64> {
        let data = self.img.sb().region(Region::Data);
        let mut at = data.start as usize;
        while let Some(b) = bit_find_clear(self.blocks, at, data.end() as usize) {
            let n = b as u64;
            if !self.reserved.iter().any(|&(s, l)| n >= s && n - s < l) {
                bit_set(self.blocks, b, true);
                return Ok(n);
            }
            at = b + 1;
        }
        Err(Error::Invalid("no free block for the repair of a directory".into()))
    }
    fn give_block(&mut self, n: u64) {
        if self.img.sb().region(Region::Data).contains(n) {
            bit_set(self.blocks, n as usize, false);
        }
    }
}

fn zero_inode<D: BlockDevice<Error = io::Error>>(img: &mut Image<D>, ino: u32) -> Result<()> {
    let (blk, off, mut b) = img.inode_raw(ino)?;
    b[off..off + INODE_SIZE].fill(0);
    img.write_block(blk, &b)
}

/// Writes the SQ8 or PQ code of `slot` from its vector ([`Fix::WriteCode`]). `codebook` is the
/// PQ codebook once read (this reads it when `None`), so that a repair run reads it once.
fn write_code<D: BlockDevice<Error = io::Error>>(
    img: &mut Image<D>,
    slot: u32,
    codebook: &mut Option<Vec<u32>>,
) -> Result<()> {
    let sb = img.sb().clone();
    let (dim, bs) = (sb.vec_dim as usize, BLOCK_SIZE as u64);
    let mut bits = Vec::with_capacity(dim);
    let (blk, off) = vexfs_core::format::vector::HnswGeometry::new(&sb).vector_pos(slot);
    let mut pos = blk * bs + off as u64;
    while bits.len() < dim {
        let b = img.read_block(pos / bs)?;
        let o = (pos % bs) as usize;
        let take = (dim - bits.len()).min((BLOCK_SIZE - o) / 4);
        bits.extend(b[o..o + 4 * take].chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])));
        pos += 4 * take as u64;
    }
    if let Some(g) = vexfs_core::pq::PqGeometry::new(&sb) {
        let cb = match codebook {
            Some(cb) => cb,
            None => codebook.insert(vectors::pq_codebook(img, &sb)?.map_err(Error::Invalid)?),
        };
        let (blk, off) = g
            .codes
            .pos(u64::from(slot))
            .ok_or_else(|| Error::Invalid(format!("vector slot {slot}: no PQ code position")))?;
        let mut b = img.read_block(blk)?;
        // The PQ C code is one implementation whatever the `Impl` (any will do).
        let dist = vexfs_core::distance::Impl::Scalar;
        if !vexfs_core::pq::encode(&dist, cb, sb.vec_dim, sb.pq_m, &bits, &mut b[off..off + g.codes.stride]) {
            return Err(Error::Invalid(format!("vector slot {slot}: cannot encode its PQ code")));
        }
        return img.write_block(blk, &b);
    }
    let stride = vexfs_core::sq8::code_stride_for(sb.vec_dim) as usize;
    let (blk, off) = vexfs_core::sq8::code_pos(&sb, u64::from(slot))
        .ok_or_else(|| Error::Invalid(format!("vector slot {slot}: no SQ8 code position")))?;
    let mut b = img.read_block(blk)?;
    vexfs_core::sq8::quantise(&bits, sb.sq8_shift, &mut b[off..off + stride]);
    img.write_block(blk, &b)
}

fn update_inode<D: BlockDevice<Error = io::Error>>(
    img: &mut Image<D>,
    ino: u32,
    f: impl FnOnce(&mut Inode),
) -> Result<()> {
    let mut inode = img.inode(ino)?;
    f(&mut inode);
    img.write_inode(ino, &inode)
}

/// The static fields of a superblock: everything but what the kernel updates in the primary
/// (counts, state, times, `RECOVER`, `EOFBLOCKS`, and the format version, which the v1 -> v2
/// upgrade of a read-write mount changes in the primary only).
fn static_fields(sb: &Superblock) -> Superblock {
    Superblock {
        free_blocks: 0,
        free_inodes: 0,
        state: 0,
        write_time: 0,
        mount_count: 0,
        format_version: 0,
        feature_incompat: sb.feature_incompat & !(FEATURE_INCOMPAT_RECOVER | FEATURE_INCOMPAT_EOFBLOCKS),
        ..sb.clone()
    }
}

/// A used dirent of an indexed directory's bucket, as [`Checker::walk_indexed`] gathers them.
struct BucketEntry {
    /// The bucket's logical block.
    logical: u64,
    /// Its device block.
    block: u64,
    name: Vec<u8>,
    ino: u32,
    file_type: u8,
    /// `(key, lo, hi)` when the name's key lies outside the bucket's keys `lo .. hi`.
    outside: Option<(u64, u64, u64)>,
}

/// A reachable inode.
struct Node {
    /// `None` when it does not decode.
    inode: Option<Inode>,
    /// Entries pointing at it.
    refs: u32,
    /// Subdirectories (for directories).
    subdirs: u32,
}

struct Checker<'a, D> {
    img: &'a Image<D>,
    sb: &'a Superblock,
    problems: Vec<Problem>,
    /// Block bitmap and inode bitmap as on disk.
    blocks: Vec<u8>,
    inodes: Vec<u8>,
    /// Blocks found in use.
    claimed: Vec<u8>,
    /// Runs of blocks (start, len) claimed by each inode, to name the owners of duplicates.
    owned: HashMap<u32, Vec<(u64, u64)>>,
    reach: HashMap<u32, Node>,
    /// Whether every reachable inode's blocks are known (else nothing may be freed).
    blocks_complete: bool,
    /// Whether every directory could be read (else no inode may be called unreachable).
    tree_complete: bool,
    /// The slots of each chunk of every reachable regular file whose chunk list is valid.
    chunks: HashMap<u32, Vec<u32>>,
    /// Reachable inodes whose chunk list could not be read (their slots are unknown).
    bad_chunks: HashSet<u32>,
    /// The superblock's free counts are hints (see [`CheckOpts`]).
    counts_are_hints: bool,
    /// The journal was handled before the check (see [`CheckOpts`]).
    journal_handled: bool,
    /// Information that is not a problem.
    notes: Vec<String>,
}

impl<'a, D: BlockDevice<Error = io::Error>> Checker<'a, D> {
    fn new(img: &'a Image<D>, early: Vec<Problem>) -> Result<Self> {
        let sb = img.sb();
        let mut claimed = vec![0u8; sb.block_count.div_ceil(8) as usize];
        for b in 0..sb.region(Region::Data).start {
            bit_set(&mut claimed, b as usize, true);
        }
        bit_set(&mut claimed, sb.backup_block as usize, true);
        Ok(Checker {
            img,
            sb,
            problems: early,
            blocks: img.read_region(Region::BlockBitmap)?,
            inodes: img.read_region(Region::InodeBitmap)?,
            claimed,
            owned: HashMap::new(),
            reach: HashMap::new(),
            blocks_complete: true,
            tree_complete: true,
            chunks: HashMap::new(),
            bad_chunks: HashSet::new(),
            counts_are_hints: false,
            journal_handled: false,
            notes: Vec::new(),
        })
    }

    fn report(&mut self, kind: Kind, message: String, fix: Option<Fix>) {
        self.problems.push(Problem { kind, message, fix });
    }

    fn check_backup(&mut self) -> Result<()> {
        let n = self.sb.backup_block;
        let b = self.img.read_block(n)?;
        let msg = match Superblock::decode(&b[..]) {
            Err(e) => format!("backup superblock (block {n}): {e}"),
            Ok(backup) if static_fields(&backup) != static_fields(self.sb) => {
                format!("backup superblock (block {n}) differs from the primary")
            }
            Ok(_) => return Ok(()),
        };
        self.report(Kind::BackupSuperblock, msg, Some(Fix::WriteBackup));
        Ok(())
    }

    fn check_state_and_journal(&mut self) -> Result<()> {
        if self.sb.state & STATE_ERRORS != 0 {
            self.report(Kind::ErrorsFlag, "the filesystem is marked as having errors".into(), Some(Fix::ClearErrors));
        }
        let j = self.sb.region(Region::Journal);
        let b = self.img.read_block(j.start)?;
        match JournalSuper::decode(&b[..], j.start, j.blocks, &self.sb.uuid) {
            Err(e) => self.report(
                Kind::Journal,
                format!("journal (block {}): {e}; what the log holds cannot be found", j.start),
                Some(Fix::RebuildJournal),
            ),
            Ok(js) if js.flags & JOURNAL_CLEAN == 0 && !self.journal_handled => self.report(
                Kind::Journal,
                "the journal holds transactions not replayed (fsck.vexfs replays them first)".into(),
                Some(Fix::ReplayJournal),
            ),
            Ok(_) => {}
        }
        Ok(())
    }

    /// Breadth-first walk from the root: every directory is read once, every entry checked.
    fn walk(&mut self) -> Result<()> {
        let root = match self.img.inode(ROOT_INO) {
            Ok(root) => root,
            Err(e) => {
                self.report(Kind::Inode, format!("root {e}"), None);
                self.reach.insert(ROOT_INO, Node { inode: None, refs: 0, subdirs: 0 });
                self.tree_complete = false;
                self.blocks_complete = false;
                return Ok(());
            }
        };
        if !root.is_dir() {
            let msg = format!("root inode {ROOT_INO} is not a directory (mode {:o})", root.mode);
            self.report(Kind::RootNotDir, msg, None);
            self.tree_complete = false;
        }
        if root.is_dir() && root.parent != ROOT_INO {
            self.bad_parent(ROOT_INO, root.parent, ROOT_INO);
        }
        let mut queue = VecDeque::new();
        if self.inode_blocks(ROOT_INO, &root)? && root.is_dir() {
            queue.push_back(ROOT_INO);
        }
        self.reach.insert(ROOT_INO, Node { inode: Some(root), refs: 0, subdirs: 0 });
        while let Some(d) = queue.pop_front() {
            self.walk_dir(d, &mut queue)?;
        }
        Ok(())
    }

    fn walk_dir(&mut self, d: u32, queue: &mut VecDeque<u32>) -> Result<()> {
        let Some(inode) = self.reach.get(&d).and_then(|n| n.inode.clone()) else {
            return Ok(());
        };
        if inode.flags & INODE_FLAG_INDEX != 0 {
            return self.walk_indexed(d, &inode, queue);
        }
        let blocks = match self.img.dir_blocks(d, &inode) {
            Ok(b) => b,
            Err(e) => {
                self.report(Kind::DirLayout, e.to_string(), None);
                self.tree_complete = false;
                return Ok(());
            }
        };
        let mut names = HashSet::new();
        for (_, blk) in blocks {
            let b = self.img.read_block(blk)?;
            if let Err(e) = check_dir_block(&b[..], blk, d as u64) {
                self.report(Kind::DirBlock, format!("directory {d} block {blk}: {e}"), None);
                self.tree_complete = false;
                continue;
            }
            for ent in dir::dirents(&b[..]) {
                let ent = match ent {
                    Ok(ent) => ent,
                    Err(e) => {
                        self.report(Kind::DirEntry, format!("directory {d} block {blk}: {e}"), None);
                        self.tree_complete = false;
                        break;
                    }
                };
                if ent.ino == 0 {
                    continue;
                }
                let name = String::from_utf8_lossy(ent.name).into_owned();
                if !names.insert(ent.name.to_vec()) {
                    self.report(Kind::DuplicateName, format!("directory {d}: entry '{name}' appears twice"), None);
                    continue;
                }
                self.entry(d, blk, &name, ent.name, ent.ino, ent.file_type, queue)?;
            }
        }
        Ok(())
    }

    /// An indexed directory (`vexfs_core::dir_index`): the feature, the block layout (every
    /// mapped block but the header a bucket, none nested in another, the key space covered
    /// once, the size), the header (decodes, counts the buckets mapped at each depth), every
    /// bucket as a directory block, every entry in its bucket's key range, then each entry as
    /// in a linear directory. The tree counts as unreadable (nothing is freed) when the
    /// buckets are not one cover of the keys.
    fn walk_indexed(&mut self, d: u32, inode: &Inode, queue: &mut VecDeque<u32>) -> Result<()> {
        let at = format!("directory {d}");
        if self.sb.feature_incompat & FEATURE_INCOMPAT_DIR_INDEX == 0 {
            let msg = format!("{at} is indexed but the filesystem does not have the dir_index feature");
            self.report(Kind::DirIndexFeature, msg, None);
        }
        let mapped = match self.img.extents(d, inode) {
            Ok(e) => mapped_blocks(&e),
            Err(e) => {
                self.report(Kind::DirLayout, e.to_string(), None);
                self.tree_complete = false;
                return Ok(());
            }
        };
        let logicals: Vec<u64> = mapped.iter().map(|m| m.0).collect();
        let (issues, counts) = layout_issues(&logicals, inode.size);
        let mut sound = true;
        for issue in issues {
            let msg = match issue {
                LayoutIssue::Size { size, want } => {
                    let msg = format!("{at} has size {size}, its highest mapped block gives {want}");
                    self.report(Kind::DirLayout, msg, Some(Fix::DirSize { ino: d, size: want }));
                    continue;
                }
                LayoutIssue::NoHeader => {
                    sound = false;
                    self.report(Kind::DirIndexHeader, format!("{at} is indexed but has no header (block 0 is a hole)"), None);
                    continue;
                }
                LayoutIssue::NotABucket { first, count } => {
                    format!("{at} maps {count} block(s) past the deepest buckets (the first at logical block {first})")
                }
                LayoutIssue::Nested { bucket, ancestor } => format!(
                    "{at}: bucket at logical block {bucket} and bucket {ancestor}, which holds its keys, are both mapped"
                ),
                LayoutIssue::Uncovered { covered, first } => format!(
                    "{at}: keys from {first:#x} have no bucket (the buckets cover {covered} of {} key ranges)",
                    1u64 << MAX_DEPTH
                ),
            };
            sound = false;
            self.report(Kind::DirIndexBuckets, msg, None);
        }
        if !sound {
            self.tree_complete = false;
        }
        let mut seed = None;
        if let Some(&(_, hb)) = mapped.first().filter(|m| m.0 == 0) {
            let b = self.img.read_block(hb)?;
            let counts_fix = |seed| Fix::DirIndexHeader { dir: d, block: hb, seed, leaves: counts.to_vec() };
            match Header::decode(&b[..], hb, d as u64) {
                Ok(h) if h.leaves == counts => seed = Some(h.seed),
                Ok(h) => {
                    let depth = (0..DEPTHS).find(|&i| h.leaves.get(i) != counts.get(i)).unwrap_or(0);
                    let msg = format!(
                        "{at} index header (block {hb}) counts {} bucket(s) at depth {depth}, {} are mapped",
                        h.leaves.get(depth).copied().unwrap_or(0),
                        counts.get(depth).copied().unwrap_or(0)
                    );
                    self.report(Kind::DirIndexHeader, msg, sound.then(|| counts_fix(h.seed)));
                    seed = Some(h.seed);
                }
                Err(e) => {
                    // The seed can be trusted when the block's own header is valid.
                    seed = check_header(&b[..], "directory index header", INDEX_MAGIC, hb, d as u64)
                        .ok()
                        .and_then(|()| b.get(24..40))
                        .and_then(|s| <[u8; 16]>::try_from(s).ok());
                    let fix = seed.filter(|_| sound).map(counts_fix);
                    self.report(Kind::DirIndexHeader, format!("{at} index header (block {hb}): {e}"), fix);
                }
            }
        }
        // Every entry of every bucket, then each checked (a name seen twice is never moved).
        let mut entries: Vec<BucketEntry> = Vec::new();
        for &(l, blk) in &mapped {
            let Some((depth, prefix)) = bucket_of(l) else { continue };
            let b = self.img.read_block(blk)?;
            if let Err(e) = check_dir_block(&b[..], blk, d as u64) {
                self.report(Kind::DirBlock, format!("{at} block {blk}: {e}"), None);
                self.tree_complete = false;
                continue;
            }
            let (lo, hi) = bucket_keys(depth, prefix);
            for ent in dir::dirents(&b[..]) {
                let ent = match ent {
                    Ok(ent) => ent,
                    Err(e) => {
                        self.report(Kind::DirEntry, format!("{at} block {blk}: {e}"), None);
                        self.tree_complete = false;
                        break;
                    }
                };
                if ent.ino == 0 {
                    continue;
                }
                let outside = seed.map(|s| name_key(&s, ent.name)).filter(|k| !(lo..hi).contains(k));
                entries.push(BucketEntry {
                    logical: l,
                    block: blk,
                    name: ent.name.to_vec(),
                    ino: ent.ino,
                    file_type: ent.file_type,
                    outside: outside.map(|k| (k, lo, hi)),
                });
            }
        }
        let mut seen: HashMap<&[u8], u32> = HashMap::new();
        for e in &entries {
            *seen.entry(&e.name[..]).or_default() += 1;
        }
        let twice: HashSet<Vec<u8>> = seen.into_iter().filter(|x| x.1 > 1).map(|x| x.0.to_vec()).collect();
        let mut names = HashSet::new();
        for BucketEntry { logical: l, block: blk, name: raw, ino, file_type: ft, outside } in entries {
            let name = String::from_utf8_lossy(&raw).into_owned();
            if !names.insert(raw.clone()) {
                self.report(Kind::DuplicateName, format!("{at}: entry '{name}' appears twice"), None);
                continue;
            }
            if let Some((k, lo, hi)) = outside {
                let fix = (sound && !twice.contains(&raw)).then(|| Fix::MoveEntry {
                    dir: d,
                    block: blk,
                    name: raw.clone(),
                    ino,
                    file_type: ft,
                });
                let msg = format!(
                    "{at}: entry '{name}' (key {k:#x}) is in the bucket at logical block {l}, which holds keys {lo:#x}..{hi:#x}"
                );
                self.report(Kind::DirIndexEntry, msg, fix);
            }
            self.entry(d, blk, &name, &raw, ino, ft, queue)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        d: u32,
        blk: u64,
        name: &str,
        raw_name: &[u8],
        ino: u32,
        ft: u8,
        queue: &mut VecDeque<u32>,
    ) -> Result<()> {
        let at = format!("directory {d}: entry '{name}'");
        if ino == 0 || ino > self.sb.inode_count {
            self.report(
                Kind::BadEntry,
                format!("{at} points at inode {ino}, out of range 1..={}", self.sb.inode_count),
                None,
            );
            return Ok(());
        }
        let mode = if let Some(node) = self.reach.get_mut(&ino) {
            node.refs += 1;
            let mode = node.inode.as_ref().map(|i| i.mode);
            if mode.is_some_and(|m| m & S_IFMT == S_IFDIR) {
                self.report(Kind::DirLinkedTwice, format!("{at} links directory {ino}, which is already linked"), None);
            }
            mode
        } else {
            let inode = match self.img.inode(ino) {
                Ok(i) => i,
                Err(e) => {
                    self.report(Kind::Inode, format!("{at}: {e}"), None);
                    self.reach.insert(ino, Node { inode: None, refs: 1, subdirs: 0 });
                    self.blocks_complete = false;
                    self.tree_complete = false;
                    return Ok(());
                }
            };
            let mode = inode.mode;
            let blocks_ok = self.inode_blocks(ino, &inode)?;
            if inode.is_dir() {
                if inode.parent != d {
                    self.bad_parent(ino, inode.parent, d);
                }
                if let Some(p) = self.reach.get_mut(&d) {
                    p.subdirs += 1;
                }
                if blocks_ok {
                    queue.push_back(ino);
                } else {
                    self.tree_complete = false;
                }
            } else {
                if inode.parent != 0 {
                    self.bad_parent(ino, inode.parent, 0);
                }
                if mode & S_IFMT == S_IFLNK && !(1..=BS).contains(&inode.size) {
                    self.report(
                        Kind::Symlink,
                        format!("symlink inode {ino} has size {}, not 1..=4096", inode.size),
                        None,
                    );
                }
            }
            self.reach.insert(ino, Node { inode: Some(inode), refs: 1, subdirs: 0 });
            Some(mode)
        };
        if let Some(mode) = mode {
            let want = dt_from_mode(mode);
            if ft != want {
                let fix = Fix::FileType { dir: d, block: blk, name: raw_name.to_vec(), ino, file_type: want };
                self.report(Kind::FileType, format!("{at} has file type {ft}, inode {ino} is type {want}"), Some(fix));
            }
        }
        Ok(())
    }

    fn bad_parent(&mut self, ino: u32, found: u32, want: u32) {
        let msg = format!("inode {ino} has parent {found}, should be {want}");
        self.report(Kind::Parent, msg, Some(Fix::Parent { ino, parent: want }));
    }

    /// Checks an inode's chunk list, extents and block count, and claims its blocks (the
    /// vector-id block too). Returns whether its extents could be read.
    fn inode_blocks(&mut self, ino: u32, inode: &Inode) -> Result<bool> {
        let vec_block = self.chunk_list(ino, inode)?;
        let extents = match self.img.extents(ino, inode) {
            Ok(e) => e,
            Err(Error::Format { what, err }) => {
                self.report(Kind::Extents, format!("{what}: {err}"), None);
                self.blocks_complete = false;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let mut runs: Vec<(u64, u64)> = extents.iter().map(|e| (e.start, e.len as u64)).collect();
        // The tree's nodes were all read by `extents` (an error there returned above).
        runs.extend(self.img.extent_nodes(ino, inode)?.into_iter().map(|n| (n, 1)));
        if let Some(vb) = vec_block {
            runs.push((vb, 1));
        }
        // The blocks `blocks` counts; the xattr block is owned but not counted.
        let count: u64 = runs.iter().map(|r| r.1).sum();
        if inode.xattr_block != 0 {
            match self.img.xattrs(ino, inode) {
                Ok(_) => runs.push((inode.xattr_block, 1)),
                Err(Error::Format { what, err }) => {
                    self.report(Kind::Xattrs, format!("{what}: {err}"), None);
                    self.blocks_complete = false;
                }
                Err(e) => return Err(e),
            }
        }
        let size_blocks = inode.size.div_ceil(BS);
        if inode.flags & INODE_FLAG_EOFBLOCKS != 0 && self.sb.feature_incompat & FEATURE_INCOMPAT_EOFBLOCKS == 0 {
            let msg = format!(
                "inode {ino} may map blocks past its size (a preallocation) but the filesystem \
                 does not have the eofblocks feature"
            );
            self.report(Kind::EofBlocksFeature, msg, Some(Fix::SetEofBlocks));
        }
        if !inode.is_dir() && inode.flags & INODE_FLAG_EOFBLOCKS == 0 {
            if let Some(e) = extents.iter().find(|e| e.logical_end() > size_blocks) {
                let msg = format!(
                    "inode {ino}: extent at file block {} maps past the end of the file ({} bytes)",
                    e.logical, inode.size
                );
                self.report(Kind::ExtentPastSize, msg, None);
            }
        }
        let mut dups = BTreeSet::new();
        for &(start, len) in &runs {
            for b in start..start + len {
                if bit_test(&self.claimed, b as usize) {
                    dups.insert(b);
                } else {
                    bit_set(&mut self.claimed, b as usize, true);
                }
            }
        }
        if let Some(&first) = dups.iter().next() {
            let others: BTreeSet<u32> = self
                .owned
                .iter()
                .filter(|(_, r)| r.iter().any(|&(s, l)| dups.iter().any(|&b| b >= s && b < s + l)))
                .map(|(&o, _)| o)
                .collect();
            let msg =
                format!("inode {ino}: {} block(s) also claimed by inode(s) {others:?} (first {first})", dups.len());
            self.report(Kind::DuplicateBlocks, msg, None);
        }
        if inode.blocks != count {
            let msg = format!(
                "inode {ino} has block count {}, its extents map {count}{}",
                inode.blocks,
                if vec_block.is_some() { " (with its vector-id block)" } else { "" }
            );
            self.report(Kind::BlockCount, msg, Some(Fix::Blocks { ino, blocks: count }));
        }
        self.owned.insert(ino, runs);
        Ok(true)
    }

    /// Link counts, only when the whole tree was read: an entry in an unreadable directory
    /// would otherwise be missed and a repair would lower a count below the truth.
    /// Orphans (format v2): inodes in use, unreachable, with no link: unlinked while open, or not
    /// yet freed when the machine stopped. The kernel frees them at its next read-write mount;
    /// until then they own their blocks and vectors as any file does, so they are counted as
    /// in use (a note, not a problem). Only when the whole tree was read.
    fn walk_orphans(&mut self) -> Result<()> {
        if !self.tree_complete {
            return Ok(());
        }
        let count = self.sb.inode_count;
        for ino in (ROOT_INO + 1)..=count {
            if self.reach.contains_key(&ino) || !bit_test(&self.inodes, (ino - 1) as usize) {
                continue;
            }
            let Ok(inode) = self.img.inode(ino) else { continue };
            if inode.links != 0 {
                continue;
            }
            self.inode_blocks(ino, &inode)?;
            self.notes.push(format!("inode {ino}: orphan (no link): freed by the next read-write mount"));
            self.reach.insert(ino, Node { inode: Some(inode), refs: 0, subdirs: 0 });
        }
        Ok(())
    }

    fn check_links(&mut self) {
        if !self.tree_complete {
            return;
        }
        let mut bad = Vec::new();
        for (&ino, node) in &self.reach {
            let Some(inode) = &node.inode else { continue };
            if inode.links == 0 && node.refs == 0 {
                continue; // an orphan (walk_orphans)
            }
            let want = if inode.is_dir() { 2 + node.subdirs } else { node.refs };
            if inode.links as u32 != want {
                bad.push((ino, inode.links, want));
            }
        }
        bad.sort_unstable();
        for (ino, links, want) in bad {
            let fix = u16::try_from(want).ok().map(|links| Fix::Links { ino, links });
            self.report(Kind::LinkCount, format!("inode {ino} has link count {links}, counted {want}"), fix);
        }
    }

    fn check_inode_bitmap(&mut self) -> Result<()> {
        let count = self.sb.inode_count as u64;
        let reach = &self.reach;
        let runs = mismatch_runs(
            1..count + 1,
            |ino| bit_test(&self.inodes, (ino - 1) as usize),
            |ino| reach.contains_key(&(ino as u32)),
        );
        for (first, len, used) in runs {
            let what = if len == 1 { format!("inode {first}") } else { format!("inodes {first}..{}", first + len - 1) };
            if used {
                let fix = Some(Fix::InodeBits { first, len, used: true });
                self.report(Kind::InodeUnallocated, format!("{what} in use but free in the inode bitmap"), fix);
            } else if self.tree_complete {
                let fix = Some(Fix::InodeBits { first, len, used: false });
                self.report(Kind::InodeUnreachable, format!("{what} allocated but not reachable from the root"), fix);
            }
        }
        self.check_free_inodes_zero()?;
        let bits = self.sb.region(Region::InodeBitmap).blocks * BS * 8;
        if let Some(i) = first_set(&self.inodes, count, bits) {
            let fix = Some(Fix::ClearPadding { inode_bitmap: true, first_bit: count, bits: bits - count });
            self.report(Kind::BitmapPadding, format!("inode bitmap has bit {i} set, past the last inode"), fix);
        }
        Ok(())
    }

    /// Free inodes (bitmap bit clear, unreachable) must be all zero: the kernel zeroes an
    /// inode when it frees it. Reads the whole inode table.
    fn check_free_inodes_zero(&mut self) -> Result<()> {
        let table = self.sb.region(Region::InodeTable);
        let per = BLOCK_SIZE / INODE_SIZE;
        let mut bad = Vec::new();
        for (i, n) in (table.start..table.end()).enumerate() {
            let b = self.img.read_block(n)?;
            for (j, slot) in b.chunks(INODE_SIZE).enumerate() {
                let ino = (i * per + j + 1) as u32;
                if ino > self.sb.inode_count {
                    break;
                }
                let free = !bit_test(&self.inodes, (ino - 1) as usize) && !self.reach.contains_key(&ino);
                if free && slot.iter().any(|&x| x != 0) {
                    bad.push(ino);
                }
            }
        }
        for ino in bad {
            let msg = format!("free inode {ino} is not zeroed");
            self.report(Kind::FreeInodeNotZero, msg, Some(Fix::ZeroInode { ino }));
        }
        Ok(())
    }

    fn check_block_bitmap(&mut self) {
        let count = self.sb.block_count;
        let claimed = &self.claimed;
        let runs = mismatch_runs(0..count, |b| bit_test(&self.blocks, b as usize), |b| bit_test(claimed, b as usize));
        for (start, len, used) in runs {
            let what = if len == 1 { format!("block {start}") } else { format!("blocks {start}..{}", start + len - 1) };
            if used {
                let fix = Some(Fix::BlockBits { start, len, used: true });
                self.report(Kind::BlockUnmarked, format!("{what} in use but free in the block bitmap"), fix);
            } else if self.blocks_complete && self.tree_complete {
                let fix = Some(Fix::BlockBits { start, len, used: false });
                self.report(Kind::BlockUnused, format!("{what} marked in use but used by nothing"), fix);
            }
        }
        let bits = self.sb.region(Region::BlockBitmap).blocks * BS * 8;
        if let Some(i) = first_set(&self.blocks, count, bits) {
            let fix = Some(Fix::ClearPadding { inode_bitmap: false, first_bit: count, bits: bits - count });
            self.report(Kind::BitmapPadding, format!("block bitmap has bit {i} set, past the last block"), fix);
        }
    }

    fn check_free_counts(&mut self) {
        let free = count_clear(&self.blocks, self.sb.block_count);
        if free != self.sb.free_blocks {
            let msg = format!("free blocks count is {}, the bitmap has {free}", self.sb.free_blocks);
            self.count_differs(Kind::FreeBlocks, msg);
        }
        let free = count_clear(&self.inodes, self.sb.inode_count as u64);
        if free != self.sb.free_inodes as u64 {
            let msg = format!("free inodes count is {}, the bitmap has {free}", self.sb.free_inodes);
            self.count_differs(Kind::FreeInodes, msg);
        }
    }

    /// A free count differs from the bitmap: a problem, or a note while the counts are hints.
    fn count_differs(&mut self, kind: Kind, msg: String) {
        if self.counts_are_hints {
            self.notes.push(format!("{msg} (a hint while not cleanly unmounted; a mount or repair recounts it)"));
        } else {
            self.report(kind, msg, Some(Fix::FreeCounts));
        }
    }
}

/// Runs `(first, len, in_use)` of indices where the bitmap (`marked`) disagrees with what is
/// in use (`used`); `in_use` says which way.
fn mismatch_runs(
    range: std::ops::Range<u64>,
    marked: impl Fn(u64) -> bool,
    used: impl Fn(u64) -> bool,
) -> Vec<(u64, u64, bool)> {
    let mut runs: Vec<(u64, u64, bool)> = Vec::new();
    for i in range {
        let u = used(i);
        if marked(i) == u {
            continue;
        }
        match runs.last_mut() {
            Some((first, len, way)) if *way == u && *first + *len == i => *len += 1,
            _ => runs.push((i, 1, u)),
        }
    }
    runs
}
