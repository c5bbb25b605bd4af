//! replay_log: reads a dm-log-writes log and replays it onto a copy of the logged device, to
//! visit every state a power cut could have left (the guest crash tests, tests/guest/070).
//!
//! # The log format
//!
//! Source: Linux 6.12 `drivers/md/dm-log-writes.c` (`struct log_write_super`,
//! `struct log_write_entry`, `log_one_block`, `log_writes_kthread`) and
//! `Documentation/admin-guide/device-mapper/log-writes.rst`. All integers little-endian.
//! `SS` is the sector size of the logged device (its logical block size, usually 512); every
//! sector number and count in the log is in `SS` units.
//!
//! Log bytes `0..SS`, the super (`log_write_super`, rest of the sector zero):
//!
//! | bytes  | field        | meaning                                                   |
//! |--------|--------------|-----------------------------------------------------------|
//! | 0..8   | `magic`      | `0x6a736677736872` ("rhswfsj" read backwards)             |
//! | 8..16  | `version`    | 1                                                         |
//! | 16..24 | `nr_entries` | entries logged (rewritten after each FUA and MARK entry)  |
//! | 24..28 | `sectorsize` | `SS`                                                      |
//!
//! Then `nr_entries` entries, back to back from byte `SS`. Each is one `SS`-byte sector holding
//! a `log_write_entry` followed by `nr_sectors * SS` bytes of the data written (none for a
//! DISCARD, a MARK or a bare FLUSH):
//!
//! | bytes  | field        | meaning                                                   |
//! |--------|--------------|-----------------------------------------------------------|
//! | 0..8   | `sector`     | first sector written on the logged device                 |
//! | 8..16  | `nr_sectors` | sectors written (or discarded)                            |
//! | 16..24 | `flags`      | FLUSH 1, FUA 2, DISCARD 4, MARK 8, METADATA 16            |
//! | 24..32 | `data_len`   | MARK: length of its name, which follows at byte 32        |
//!
//! # Order and crash points
//!
//! The target logs a write only once it is known to be on stable storage: plain writes wait,
//! in completion order, until the next FLUSH completes and are then logged just before that
//! FLUSH entry; a FUA write is logged when it completes; a MARK (`dmsetup message DEV 0 mark
//! NAME`) is logged at once, so writes that completed before it but were never flushed come
//! after it in the log. Every prefix of the log is therefore a state the disk may hold after a
//! power cut, and the prefixes ending at a FLUSH or FUA entry are the ones to check: between
//! two of them the device promised nothing new. The last entry is always the mark
//! `dm-log-writes-end`, logged when the target is removed, after every pending write.
//!
//! Between two crash points, the plain writes logged before a FLUSH had been promised nothing:
//! a power cut may keep any subset of them. `iterate --torn K` also visits up to K prefixes of
//! each such stretch (torn states), e.g. a crash half way through a journal replay's writes.
//!
//! # Replay
//!
//! Entries are applied in order: a write copies its data to `sector * SS` of the target; a
//! DISCARD writes zeros over its range (a device whose discarded sectors read back as zeros);
//! FLUSH, FUA and MARK entries write nothing else. The target must start as the logged device
//! was when the log-writes target was created.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Args, Parser, Subcommand};

/// `WRITE_LOG_MAGIC` of dm-log-writes.c.
const MAGIC: u64 = 0x006a_7366_7773_6872;
/// `WRITE_LOG_VERSION` of dm-log-writes.c.
const VERSION: u64 = 1;
/// `sizeof(struct log_write_entry)`.
const ENTRY_HEADER: usize = 32;
/// `LOG_FLUSH_FLAG`: a REQ_PREFLUSH request; every write logged before it is on stable storage.
const FLUSH: u64 = 1 << 0;
/// `LOG_FUA_FLAG`: a REQ_FUA write, on stable storage when it completed.
const FUA: u64 = 1 << 1;
/// `LOG_DISCARD_FLAG`: a REQ_OP_DISCARD of `nr_sectors` sectors (no data in the log).
const DISCARD: u64 = 1 << 2;
/// `LOG_MARK_FLAG`: a mark from userspace, its name in the entry's sector.
const MARK: u64 = 1 << 3;
/// `LOG_METADATA_FLAG`: the write carried REQ_META (informational).
const METADATA: u64 = 1 << 4;
/// Names of the flag bits, in bit order, for listings.
const FLAG_NAMES: [(u64, &str); 5] =
    [(FLUSH, "FLUSH"), (FUA, "FUA"), (DISCARD, "DISCARD"), (MARK, "MARK"), (METADATA, "METADATA")];
/// Bytes moved per read/write call when copying data (entries, whole images).
const CHUNK: usize = 1 << 20;

/// What went wrong reading a log or replaying it.
#[derive(Debug)]
enum LogError {
    /// Reading the log or writing the target failed.
    Io(io::Error),
    /// The log's first 8 bytes are not `WRITE_LOG_MAGIC` (not a log, or the target never wrote one).
    BadMagic(u64),
    /// The super's version is not 1.
    BadVersion(u64),
    /// The super's sector size is not a power of two from 512 to 65536.
    BadSectorSize(u32),
    /// Entry `index` (at byte `offset` of the log) or its data runs past the log's `len` bytes.
    Truncated { index: u64, offset: u64, len: u64 },
    /// Entry `index` has sizes whose byte offsets overflow 64 bits.
    Overflow { index: u64 },
    /// Entry `index` is a mark whose name (`len` bytes) does not fit its sector.
    MarkTooLong { index: u64, len: u64 },
    /// Entry `index` carries inline data (a non-mark `data_len`), which 6.12 never logs.
    InlineData { index: u64 },
    /// Entry `index` writes past the end of the target (`target_len` bytes).
    PastTarget { index: u64, end: u64, target_len: u64 },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Io(e) => write!(f, "{e}"),
            LogError::BadMagic(m) => {
                write!(f, "not a dm-log-writes log: magic {m:#x}, expected {MAGIC:#x} (was the target removed?)")
            }
            LogError::BadVersion(v) => write!(f, "log version {v}, only {VERSION} is known"),
            LogError::BadSectorSize(s) => write!(f, "log sector size {s} is not a power of two in 512..=65536"),
            LogError::Truncated { index, offset, len } => {
                write!(f, "entry {index} at byte {offset} runs past the end of the log ({len} bytes)")
            }
            LogError::Overflow { index } => write!(f, "entry {index}: sizes overflow 64 bits"),
            LogError::MarkTooLong { index, len } => {
                write!(f, "entry {index}: mark name of {len} bytes overflows its sector")
            }
            LogError::InlineData { index } => write!(f, "entry {index}: inline data is not supported"),
            LogError::PastTarget { index, end, target_len } => {
                write!(f, "entry {index} writes up to byte {end}, past the end of the target ({target_len} bytes)")
            }
        }
    }
}

impl std::error::Error for LogError {}

impl From<io::Error> for LogError {
    fn from(e: io::Error) -> Self {
        LogError::Io(e)
    }
}

type Result<T, E = LogError> = std::result::Result<T, E>;

/// Little-endian u64 at `at` of `b` (0 past the end; callers pass full headers).
fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// Little-endian u32 at `at` of `b` (0 past the end).
fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

/// The flag bits of an entry as names joined by `|` (unknown bits in hex), `-` for none.
fn flag_names(flags: u64) -> String {
    let mut parts: Vec<String> =
        FLAG_NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| (*name).to_string()).collect();
    let known = FLAG_NAMES.iter().fold(0, |acc, (bit, _)| acc | bit);
    if flags & !known != 0 {
        parts.push(format!("{:#x}", flags & !known));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("|")
    }
}

/// One entry of the log (a decoded `log_write_entry` and where its data lies).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Position in the log, from 0.
    index: u64,
    /// First sector written on the device, in `SS` units.
    sector: u64,
    /// Sectors written or discarded, in `SS` units.
    nr_sectors: u64,
    /// `LOG_*_FLAG` bits.
    flags: u64,
    /// The mark's name (MARK entries only; bytes that are not UTF-8 replaced).
    mark: Option<String>,
    /// Byte offset in the log of the entry's data (`nr_sectors * SS` bytes; none for a DISCARD).
    data_offset: u64,
}

impl Entry {
    /// A crash point: a FLUSH or FUA entry.
    fn is_flush_point(&self) -> bool {
        self.flags & (FLUSH | FUA) != 0
    }
}

/// A dm-log-writes log: its super and the index of every entry, read once at open.
struct Log<R> {
    r: R,
    /// `SS`, the logged device's sector size in bytes.
    sectorsize: u64,
    entries: Vec<Entry>,
}

impl<R: Read + Seek> Log<R> {
    /// Reads the super and every entry header of `r`. Fails on a bad super, or on an entry that
    /// is cut short, overflows, or has a mark name longer than its sector.
    fn open(mut r: R) -> Result<Self> {
        let len = r.seek(SeekFrom::End(0))?;
        let mut sup = [0u8; 28];
        r.seek(SeekFrom::Start(0))?;
        read_exact_or(&mut r, &mut sup, LogError::BadMagic(0))?;
        let magic = le64(&sup, 0);
        if magic != MAGIC {
            return Err(LogError::BadMagic(magic));
        }
        let version = le64(&sup, 8);
        if version != VERSION {
            return Err(LogError::BadVersion(version));
        }
        let nr_entries = le64(&sup, 16);
        let ss32 = le32(&sup, 24);
        if !ss32.is_power_of_two() || !(512..=65536).contains(&ss32) {
            return Err(LogError::BadSectorSize(ss32));
        }
        let ss = u64::from(ss32);
        let mut entries = Vec::new();
        let mut header = vec![0u8; ss32 as usize];
        let mut offset = ss;
        for index in 0..nr_entries {
            let truncated = LogError::Truncated { index, offset, len };
            match offset.checked_add(ss) {
                Some(end) if end <= len => {}
                _ => return Err(truncated),
            }
            r.seek(SeekFrom::Start(offset))?;
            read_exact_or(&mut r, &mut header, truncated)?;
            let (sector, nr_sectors, flags, data_len) =
                (le64(&header, 0), le64(&header, 8), le64(&header, 16), le64(&header, 24));
            let mark = if flags & MARK != 0 {
                let name = usize::try_from(data_len)
                    .ok()
                    .and_then(|n| header.get(ENTRY_HEADER..ENTRY_HEADER.checked_add(n)?))
                    .ok_or(LogError::MarkTooLong { index, len: data_len })?;
                Some(String::from_utf8_lossy(name).into_owned())
            } else if data_len != 0 {
                return Err(LogError::InlineData { index });
            } else {
                None
            };
            let data_offset = offset + ss;
            let data_bytes = if flags & DISCARD != 0 {
                0
            } else {
                nr_sectors.checked_mul(ss).ok_or(LogError::Overflow { index })?
            };
            let next = data_offset.checked_add(data_bytes).ok_or(LogError::Overflow { index })?;
            if next > len {
                return Err(LogError::Truncated { index, offset, len });
            }
            // The target's byte range must be addressable too.
            sector.checked_add(nr_sectors).and_then(|end| end.checked_mul(ss)).ok_or(LogError::Overflow { index })?;
            entries.push(Entry { index, sector, nr_sectors, flags, mark, data_offset });
            offset = next;
        }
        Ok(Log { r, sectorsize: ss, entries })
    }

    /// Index of the `k`-th (from 1) FLUSH or FUA entry.
    fn nth_flush_point(&self, k: u64) -> Option<u64> {
        let k = usize::try_from(k).ok()?.checked_sub(1)?;
        self.entries.iter().filter(|e| e.is_flush_point()).nth(k).map(|e| e.index)
    }

    /// Index of the first mark named `name`.
    fn mark_index(&self, name: &str) -> Option<u64> {
        self.entries.iter().find(|e| e.mark.as_deref() == Some(name)).map(|e| e.index)
    }

    /// The crash points: every FLUSH or FUA entry (and every MARK with `marks`), then the last
    /// entry if it is not one.
    fn crash_points(&self, marks: bool) -> Vec<u64> {
        let mut points: Vec<u64> = self
            .entries
            .iter()
            .filter(|e| e.is_flush_point() || (marks && e.mark.is_some()))
            .map(|e| e.index)
            .collect();
        if let Some(last) = self.entries.last() {
            if points.last() != Some(&last.index) {
                points.push(last.index);
            }
        }
        points
    }

    /// Torn states: in each stretch of plain writes that ends at a crash point (see
    /// [`Log::crash_points`]; the log's end closes the last stretch), up to `per_gap` of them
    /// spread evenly. Each is the index of the last write applied: the state of a power cut that
    /// kept the stretch's writes up to it and lost the rest (the target had promised none of
    /// them). A stretch's last write is left out when the crash point writes nothing (a bare
    /// FLUSH, a mark): the prefix ending there is the crash point's own state. Sorted.
    fn torn_points(&self, per_gap: usize, marks: bool) -> Vec<u64> {
        let mut out = Vec::new();
        if per_gap == 0 {
            return out;
        }
        let mut writes: Vec<u64> = Vec::new();
        let mut close = |writes: &mut Vec<u64>, boundary_writes: bool| {
            if !boundary_writes {
                writes.pop();
            }
            out.extend(spread(writes, per_gap));
            writes.clear();
        };
        for e in &self.entries {
            let writes_data = e.mark.is_none() && e.flags & DISCARD == 0 && e.nr_sectors > 0;
            if e.is_flush_point() || (marks && e.mark.is_some()) {
                close(&mut writes, writes_data);
            } else if e.mark.is_none() && e.nr_sectors > 0 {
                writes.push(e.index);
            }
        }
        close(&mut writes, false);
        out
    }

    /// Applies entry `index` to `target` (see the module docs). `target_len` bounds the writes.
    fn apply<W: Write + Seek>(&mut self, index: u64, target: &mut W, target_len: u64) -> Result<()> {
        let Some(e) = usize::try_from(index).ok().and_then(|i| self.entries.get(i)) else {
            return Ok(());
        };
        let (ss, sector, nr, flags, data_offset) = (self.sectorsize, e.sector, e.nr_sectors, e.flags, e.data_offset);
        if nr == 0 || flags & MARK != 0 {
            return Ok(());
        }
        // Checked at open: the range is addressable.
        let start = sector.saturating_mul(ss);
        let bytes = nr.saturating_mul(ss);
        let end = start.saturating_add(bytes);
        if end > target_len {
            return Err(LogError::PastTarget { index, end, target_len });
        }
        target.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; CHUNK];
        let mut left = bytes;
        if flags & DISCARD == 0 {
            self.r.seek(SeekFrom::Start(data_offset))?;
        }
        while left > 0 {
            let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
            let part = &mut buf[..n];
            if flags & DISCARD == 0 {
                let cut = LogError::Truncated { index, offset: data_offset, len: 0 };
                read_exact_or(&mut self.r, part, cut)?;
            }
            target.write_all(part)?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Applies entries `from..=to` in order.
    fn apply_range<W: Write + Seek>(&mut self, from: u64, to: u64, target: &mut W, target_len: u64) -> Result<()> {
        for i in from..=to {
            self.apply(i, target, target_len)?;
        }
        Ok(())
    }

    /// The last mark at or before entry `index`, and the first one after it.
    fn marks_around(&self, index: u64) -> (Option<&Entry>, Option<&Entry>) {
        let before = self.entries.iter().take_while(|e| e.index <= index).filter(|e| e.mark.is_some()).last();
        let after = self.entries.iter().skip_while(|e| e.index <= index).find(|e| e.mark.is_some());
        (before, after)
    }
}

/// `read_exact`, with an early end of file reported as `eof`.
fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], eof: LogError) -> Result<()> {
    r.read_exact(buf).map_err(|e| if e.kind() == io::ErrorKind::UnexpectedEof { eof } else { LogError::Io(e) })
}

/// `count` indices of `points` spread evenly from the first to the last (all if `count` covers them).
fn spread(points: &[u64], count: usize) -> Vec<u64> {
    let n = points.len();
    if count >= n || n == 0 {
        return points.to_vec();
    }
    if count <= 1 {
        return points.last().copied().into_iter().collect();
    }
    let mut out: Vec<u64> = (0..count)
        .filter_map(|i| {
            // i * (n - 1) / (count - 1), rounded to nearest; u128 cannot overflow here.
            let at = (i as u128 * (n as u128 - 1) * 2 + (count as u128 - 1)) / (2 * (count as u128 - 1));
            points.get(usize::try_from(at).ok()?).copied()
        })
        .collect();
    out.dedup();
    out
}

/// Replay the dm-log-writes log of a device onto a copy of that device: list the entries, replay
/// up to a point, or visit every crash point (FLUSH/FUA) running a check at each. The format and
/// the replay rules are in the source's docs (Linux 6.12 drivers/md/dm-log-writes.c).
#[derive(Parser, Debug)]
#[command(name = "replay_log", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print every entry: index, flags, first sector and count (in the log's sector size), mark name.
    List {
        /// The log device or file.
        log: PathBuf,
        /// Only the marks and the crash points (FLUSH/FUA entries).
        #[arg(long)]
        points: bool,
    },
    /// Apply the log's entries to TARGET, from the first up to and including the one chosen
    /// (by default all). TARGET must hold the device as it was when the log started.
    Replay {
        /// The log device or file.
        log: PathBuf,
        /// The device or file to write (not truncated or extended).
        target: PathBuf,
        #[command(flatten)]
        until: Until,
    },
    /// Apply the entries to TARGET one crash point after another (each FLUSH or FUA entry, and
    /// the log's end); at each, copy TARGET to --copy-to and run --exec. Environment of the
    /// command: REPLAY_POINT (from 1) and REPLAY_POINTS, REPLAY_ENTRY (index of the crash point's
    /// entry) and REPLAY_ENTRIES, REPLAY_FLAGS, REPLAY_MARK (the last mark at or before the point,
    /// empty if none) and REPLAY_NEXT_MARK (the first after it, empty if none). Exits 1 if any
    /// command failed.
    Iterate {
        /// The log device or file.
        log: PathBuf,
        /// The device or file to write (not truncated or extended), holding the device as it was
        /// when the log started; it ends holding the last point's state.
        target: PathBuf,
        /// Crash points to visit: "all", or a count spread evenly over the log (first and last included).
        #[arg(long, default_value = "all", value_parser = parse_points)]
        points: Points,
        /// Also stop at each MARK entry: the state of the disk at the moment userspace placed the
        /// mark (if a mark follows each acknowledgement, the state right after it, when writes
        /// that were acknowledged but never flushed are not there yet).
        #[arg(long)]
        marks: bool,
        /// Before each command, copy TARGET here (a device or file the command may change;
        /// "%n" in the path is replaced by the point's entry index, to keep every state).
        #[arg(long)]
        copy_to: Option<String>,
        /// Shell command run (with /bin/sh -c) at each crash point.
        #[arg(long)]
        exec: Option<String>,
        /// Go on after a failed command (default: stop at the first).
        #[arg(long)]
        keep_going: bool,
        /// Also visit torn states: in each stretch of writes before a crash point, up to K
        /// prefixes spread evenly (a power cut that kept only the stretch's first writes),
        /// added to the points chosen by --points. REPLAY_TORN is 1 at these, else 0.
        #[arg(long, value_name = "K", default_value_t = 0)]
        torn: usize,
    },
}

/// Where `replay` stops (at most one; none: the whole log).
#[derive(Args, Debug)]
#[group(multiple = false)]
struct Until {
    /// Up to and including entry N (from 0).
    #[arg(long, value_name = "N")]
    entry: Option<u64>,
    /// Up to and including the K-th (from 1) FLUSH or FUA entry.
    #[arg(long, value_name = "K")]
    flush: Option<u64>,
    /// Up to and including the first mark named NAME.
    #[arg(long, value_name = "NAME")]
    mark: Option<String>,
}

/// How many crash points `iterate` visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Points {
    /// Every one.
    All,
    /// At most this many, spread evenly.
    Count(usize),
}

fn parse_points(s: &str) -> Result<Points, String> {
    match s {
        "all" => Ok(Points::All),
        _ => match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Points::Count(n)),
            _ => Err(format!("'{s}' is neither \"all\" nor a positive count")),
        },
    }
}

fn open_log(path: &Path) -> Result<Log<io::BufReader<File>>, String> {
    let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Log::open(io::BufReader::new(f)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Opens TARGET for writing and returns it with its size (a block device's size included).
fn open_target(path: &Path) -> Result<(File, u64), String> {
    let mut f =
        OpenOptions::new().write(true).open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = f.seek(SeekFrom::End(0)).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((f, len))
}

fn list(path: &Path, points_only: bool) -> Result<(), String> {
    let log = open_log(path)?;
    let flushes = log.entries.iter().filter(|e| e.is_flush_point()).count();
    let marks = log.entries.iter().filter(|e| e.mark.is_some()).count();
    println!(
        "{}: {} entries, sector size {}, {} crash points (FLUSH/FUA), {} marks",
        path.display(),
        log.entries.len(),
        log.sectorsize,
        flushes,
        marks
    );
    let mut out = io::BufWriter::new(io::stdout().lock());
    for e in &log.entries {
        if points_only && e.mark.is_none() && !e.is_flush_point() {
            continue;
        }
        let res = match &e.mark {
            Some(name) => writeln!(out, "{:>7} {:<16} mark {name}", e.index, flag_names(e.flags)),
            None => writeln!(out, "{:>7} {:<16} sector {} +{}", e.index, flag_names(e.flags), e.sector, e.nr_sectors),
        };
        res.map_err(|e| format!("stdout: {e}"))?;
    }
    out.flush().map_err(|e| format!("stdout: {e}"))
}

fn replay(log_path: &Path, target_path: &Path, until: &Until) -> Result<(), String> {
    let mut log = open_log(log_path)?;
    let Some(last) = log.entries.last().map(|e| e.index) else {
        println!("{}: no entries, nothing replayed", log_path.display());
        return Ok(());
    };
    let to = if let Some(n) = until.entry {
        if n > last {
            return Err(format!("--entry {n}: the log's last entry is {last}"));
        }
        n
    } else if let Some(k) = until.flush {
        log.nth_flush_point(k).ok_or_else(|| format!("--flush {k}: the log has fewer FLUSH/FUA entries"))?
    } else if let Some(name) = &until.mark {
        log.mark_index(name).ok_or_else(|| format!("--mark {name}: no such mark in the log"))?
    } else {
        last
    };
    let (mut target, len) = open_target(target_path)?;
    log.apply_range(0, to, &mut target, len).map_err(|e| format!("{}: {e}", target_path.display()))?;
    target.flush().map_err(|e| format!("{}: {e}", target_path.display()))?;
    println!("replayed entries 0..={to} of {} onto {}", log.entries.len(), target_path.display());
    Ok(())
}

/// Copies all of `src` (from its start) over the start of `dst_path`, then syncs it (a block
/// device then holds the state on disk, for readers that bypass its page cache).
fn copy_state(src: &mut File, dst_path: &str) -> io::Result<()> {
    let mut dst = OpenOptions::new().write(true).create(true).truncate(false).open(dst_path)?;
    src.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
    }
    dst.sync_all()
}

/// What `iterate` runs at each crash point, besides the replay itself.
struct Visit<'a> {
    marks: bool,
    copy_to: Option<&'a str>,
    exec: Option<&'a str>,
    keep_going: bool,
    torn: usize,
}

fn iterate(log_path: &Path, target_path: &Path, points: Points, visit: &Visit) -> Result<bool, String> {
    let mut log = open_log(log_path)?;
    let all = log.crash_points(visit.marks);
    let mut chosen = match points {
        Points::All => all.clone(),
        Points::Count(n) => spread(&all, n),
    };
    let torn = log.torn_points(visit.torn, visit.marks);
    chosen.extend(&torn);
    chosen.sort_unstable();
    chosen.dedup();
    let what = if visit.marks { "FLUSH/FUA entries, marks, the end" } else { "FLUSH/FUA entries, the end" };
    println!(
        "{}: {} entries, {} crash points ({what}), visiting {} ({} torn)",
        log_path.display(),
        log.entries.len(),
        all.len(),
        chosen.len(),
        torn.len()
    );
    // Read and written: the copy reads the state back.
    let mut target = OpenOptions::new()
        .read(true)
        .write(true)
        .open(target_path)
        .map_err(|e| format!("cannot open {}: {e}", target_path.display()))?;
    let len = target.seek(SeekFrom::End(0)).map_err(|e| format!("{}: {e}", target_path.display()))?;
    let total = chosen.len();
    let entries = log.entries.len();
    let mut next = 0u64;
    let mut failed = 0usize;
    for (i, &point) in chosen.iter().enumerate() {
        log.apply_range(next, point, &mut target, len).map_err(|e| format!("{}: {e}", target_path.display()))?;
        next = point + 1;
        let (before, after) = log.marks_around(point);
        let mark = before.and_then(|e| e.mark.clone()).unwrap_or_default();
        let next_mark = after.and_then(|e| e.mark.clone()).unwrap_or_default();
        let flags = usize::try_from(point).ok().and_then(|p| log.entries.get(p)).map_or(0, |e| e.flags);
        if let Some(dst) = visit.copy_to {
            let dst = dst.replace("%n", &point.to_string());
            copy_state(&mut target, &dst).map_err(|e| format!("copying the state to {dst}: {e}"))?;
        }
        let Some(cmd) = visit.exec else { continue };
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .env("REPLAY_POINT", (i + 1).to_string())
            .env("REPLAY_POINTS", total.to_string())
            .env("REPLAY_ENTRY", point.to_string())
            .env("REPLAY_ENTRIES", entries.to_string())
            .env("REPLAY_FLAGS", flag_names(flags))
            .env("REPLAY_MARK", &mark)
            .env("REPLAY_NEXT_MARK", &next_mark)
            .env("REPLAY_TORN", if torn.binary_search(&point).is_ok() { "1" } else { "0" })
            .status()
            .map_err(|e| format!("cannot run /bin/sh -c {cmd}: {e}"))?;
        if !status.success() {
            failed += 1;
            println!("replay_log: point {}/{total} (entry {point}): command failed ({status})", i + 1);
            if !visit.keep_going {
                break;
            }
        }
    }
    if visit.exec.is_some() {
        println!("replay_log: {total} crash points, {failed} failed");
    }
    Ok(failed == 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match &cli.cmd {
        Cmd::List { log, points } => list(log, *points).map(|()| true),
        Cmd::Replay { log, target, until } => replay(log, target, until).map(|()| true),
        Cmd::Iterate { log, target, points, marks, copy_to, exec, keep_going, torn } => {
            let visit = Visit {
                marks: *marks,
                copy_to: copy_to.as_deref(),
                exec: exec.as_deref(),
                keep_going: *keep_going,
                torn: *torn,
            };
            iterate(log, target, *points, &visit)
        }
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(msg) => {
            eprintln!("replay_log: {msg}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// One entry of a synthetic log.
    enum Rec {
        /// A write of these bytes (a whole number of sectors) at this sector.
        Write(u64, Vec<u8>, u64),
        Flush,
        Discard(u64, u64),
        Mark(&'static str),
    }

    /// Lays out a log exactly as dm-log-writes.c does (see the module docs).
    fn build(ss: usize, recs: &[Rec]) -> Vec<u8> {
        let mut log = vec![0u8; ss];
        log[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        log[8..16].copy_from_slice(&VERSION.to_le_bytes());
        log[16..24].copy_from_slice(&(recs.len() as u64).to_le_bytes());
        log[24..28].copy_from_slice(&(ss as u32).to_le_bytes());
        for r in recs {
            let mut sector = vec![0u8; ss];
            let (s, n, flags, name, data): (u64, u64, u64, &[u8], &[u8]) = match r {
                Rec::Write(s, d, flags) => (*s, (d.len() / ss) as u64, *flags, b"", d),
                Rec::Flush => (0, 0, FLUSH, b"", b""),
                Rec::Discard(s, n) => (*s, *n, DISCARD, b"", b""),
                Rec::Mark(m) => (0, 0, MARK, m.as_bytes(), b""),
            };
            sector[0..8].copy_from_slice(&s.to_le_bytes());
            sector[8..16].copy_from_slice(&n.to_le_bytes());
            sector[16..24].copy_from_slice(&flags.to_le_bytes());
            sector[24..32].copy_from_slice(&(name.len() as u64).to_le_bytes());
            sector[32..32 + name.len()].copy_from_slice(name);
            log.extend_from_slice(&sector);
            log.extend_from_slice(data);
        }
        log
    }

    fn fill(ss: usize, sectors: usize, byte: u8) -> Vec<u8> {
        vec![byte; ss * sectors]
    }

    /// A small log: writes, a flush, a mark, a FUA write, a discard, a final flush, the end mark.
    fn sample(ss: usize) -> Vec<u8> {
        build(
            ss,
            &[
                Rec::Write(2, fill(ss, 2, 0xaa), 0),
                Rec::Write(0, fill(ss, 1, 0xbb), METADATA),
                Rec::Flush,
                Rec::Mark("a1"),
                Rec::Write(5, fill(ss, 1, 0xcc), FUA),
                Rec::Discard(2, 1),
                Rec::Write(6, fill(ss, 2, 0xdd), 0),
                Rec::Flush,
                Rec::Mark("dm-log-writes-end"),
            ],
        )
    }

    fn open(bytes: Vec<u8>) -> Log<Cursor<Vec<u8>>> {
        Log::open(Cursor::new(bytes)).unwrap()
    }

    /// Replays entries 0..=to onto a zeroed device of `sectors` sectors.
    fn replayed(log: &mut Log<Cursor<Vec<u8>>>, to: u64, sectors: usize) -> Vec<u8> {
        let ss = log.sectorsize as usize;
        let mut dev = Cursor::new(vec![0u8; ss * sectors]);
        log.apply_range(0, to, &mut dev, (ss * sectors) as u64).unwrap();
        dev.into_inner()
    }

    #[test]
    fn decodes_every_entry() {
        for ss in [512usize, 4096] {
            let log = open(sample(ss));
            assert_eq!(log.sectorsize, ss as u64);
            assert_eq!(log.entries.len(), 9);
            let e = &log.entries;
            assert_eq!((e[0].sector, e[0].nr_sectors, e[0].flags), (2, 2, 0));
            assert_eq!(e[0].data_offset, 2 * ss as u64);
            // The second write's header follows the first one's two data sectors.
            assert_eq!(e[1].data_offset, 5 * ss as u64);
            assert_eq!(flag_names(e[1].flags), "METADATA");
            assert_eq!(flag_names(e[2].flags), "FLUSH");
            assert_eq!(e[3].mark.as_deref(), Some("a1"));
            assert_eq!(flag_names(e[4].flags), "FUA");
            // A discard has no data: the next header follows it directly.
            assert_eq!(e[6].data_offset, e[5].data_offset + ss as u64);
            assert_eq!(e[8].mark.as_deref(), Some("dm-log-writes-end"));
            assert_eq!(flag_names(FLUSH | FUA | 1 << 9), "FLUSH|FUA|0x200");
            assert_eq!(flag_names(0), "-");
        }
    }

    #[test]
    fn replays_up_to_an_entry() {
        let ss = 512;
        let mut log = open(sample(ss));
        let dev = replayed(&mut log, 0, 8);
        assert!(dev[2 * ss..4 * ss].iter().all(|&b| b == 0xaa));
        assert!(dev[..2 * ss].iter().all(|&b| b == 0), "entry 1 not applied yet");
        let dev = replayed(&mut log, 8, 8);
        assert!(dev[..ss].iter().all(|&b| b == 0xbb));
        assert!(dev[ss..2 * ss].iter().all(|&b| b == 0));
        // Sector 2 was discarded (zeros), sector 3 keeps the first write.
        assert!(dev[2 * ss..3 * ss].iter().all(|&b| b == 0));
        assert!(dev[3 * ss..4 * ss].iter().all(|&b| b == 0xaa));
        assert!(dev[5 * ss..6 * ss].iter().all(|&b| b == 0xcc));
        assert!(dev[6 * ss..8 * ss].iter().all(|&b| b == 0xdd));
    }

    #[test]
    fn finds_flush_points_and_marks() {
        let log = open(sample(512));
        assert_eq!(log.crash_points(false), vec![2, 4, 7, 8]);
        assert_eq!(log.crash_points(true), vec![2, 3, 4, 7, 8]);
        assert_eq!(log.nth_flush_point(1), Some(2));
        assert_eq!(log.nth_flush_point(2), Some(4));
        assert_eq!(log.nth_flush_point(3), Some(7));
        assert_eq!(log.nth_flush_point(4), None);
        assert_eq!(log.nth_flush_point(0), None);
        assert_eq!(log.mark_index("a1"), Some(3));
        assert_eq!(log.mark_index("nope"), None);
        let name = |e: Option<&Entry>| e.and_then(|e| e.mark.clone());
        let (b, a) = log.marks_around(2);
        assert_eq!((name(b), name(a)), (None, Some("a1".into())));
        let (b, a) = log.marks_around(3);
        assert_eq!((name(b), name(a)), (Some("a1".into()), Some("dm-log-writes-end".into())));
        let (b, a) = log.marks_around(8);
        assert_eq!((name(b), name(a)), (Some("dm-log-writes-end".into()), None));
    }

    #[test]
    fn incremental_replay_equals_replay_from_scratch() {
        let ss = 512;
        let mut log = open(sample(ss));
        let size = 8 * ss;
        let mut dev = Cursor::new(vec![0u8; size]);
        let mut next = 0;
        for p in log.crash_points(true) {
            log.apply_range(next, p, &mut dev, size as u64).unwrap();
            next = p + 1;
            let mut fresh = open(sample(ss));
            assert_eq!(dev.get_ref(), &replayed(&mut fresh, p, 8), "state at entry {p}");
        }
    }

    #[test]
    fn finds_torn_states() {
        let ss = 512;
        let log = open(sample(ss));
        // Before the FLUSH at 2: entry 0 (entry 1 would be the FLUSH's own state); the FUA at 4
        // closes an empty stretch; before the FLUSH at 7: the discard at 5.
        assert_eq!(log.torn_points(5, false), vec![0, 5]);
        assert_eq!(log.torn_points(5, true), vec![0, 5]);
        assert!(log.torn_points(0, false).is_empty());
        // A crash point that writes data (a PREFLUSH|FUA write) keeps every write before it as a
        // torn state; writes after the last crash point are closed by the log's end.
        let log = open(build(
            ss,
            &[
                Rec::Write(0, fill(ss, 1, 1), 0),
                Rec::Write(1, fill(ss, 1, 2), 0),
                Rec::Write(2, fill(ss, 1, 3), 0),
                Rec::Write(3, fill(ss, 1, 4), FLUSH | FUA),
                Rec::Write(4, fill(ss, 1, 5), 0),
                Rec::Write(5, fill(ss, 1, 6), 0),
                Rec::Mark("dm-log-writes-end"),
            ],
        ));
        assert_eq!(log.torn_points(5, false), vec![0, 1, 2, 4]);
        assert_eq!(log.torn_points(2, false), vec![0, 2, 4]);
        assert_eq!(log.torn_points(1, false), vec![2, 4]);
        assert_eq!(log.crash_points(false), vec![3, 6]);
    }

    #[test]
    fn spreads_points_evenly() {
        let pts: Vec<u64> = (0..10).map(|i| i * 3).collect();
        assert_eq!(spread(&pts, 100), pts);
        assert_eq!(spread(&pts, 10), pts);
        assert_eq!(spread(&pts, 1), vec![27]);
        assert_eq!(spread(&pts, 2), vec![0, 27]);
        assert_eq!(spread(&pts, 4), vec![0, 9, 18, 27]);
        let many: Vec<u64> = (0..1000).collect();
        let s = spread(&many, 100);
        assert_eq!(s.len(), 100);
        assert_eq!((s[0], s[99]), (0, 999));
        assert!(s.windows(2).all(|w| w[1] - w[0] >= 9 && w[1] - w[0] <= 11));
        assert!(spread(&[], 5).is_empty());
    }

    #[test]
    fn refuses_bad_supers() {
        let mut b = sample(512);
        b[0] ^= 1;
        assert!(matches!(Log::open(Cursor::new(b)), Err(LogError::BadMagic(m)) if m == MAGIC ^ 1));
        let mut b = sample(512);
        b[8] = 2;
        assert!(matches!(Log::open(Cursor::new(b)), Err(LogError::BadVersion(2))));
        let mut b = sample(512);
        b[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(Log::open(Cursor::new(b)), Err(LogError::BadSectorSize(1000))));
        assert!(matches!(Log::open(Cursor::new(vec![0u8; 10])), Err(LogError::BadMagic(0))));
    }

    #[test]
    fn refuses_truncated_and_overflowing_entries() {
        let b = sample(512);
        // Cut inside the data of entry 6 (a 2-sector write).
        let cut = b.len() - 512 - 512 - 512 - 512;
        let err = Log::open(Cursor::new(b[..cut].to_vec())).err().unwrap();
        assert!(matches!(err, LogError::Truncated { index: 6, .. }), "{err}");
        // More entries claimed than the log holds.
        let mut b = sample(512);
        b[16..24].copy_from_slice(&10u64.to_le_bytes());
        assert!(matches!(Log::open(Cursor::new(b)), Err(LogError::Truncated { index: 9, .. })));
        // nr_sectors * SS overflows.
        let mut b = sample(512);
        b[512 + 8..512 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Log::open(Cursor::new(b)), Err(LogError::Overflow { index: 0 })));
        // A mark name longer than its sector.
        let mut b = build(512, &[Rec::Mark("x")]);
        b[512 + 24..512 + 32].copy_from_slice(&481u64.to_le_bytes());
        assert!(matches!(Log::open(Cursor::new(b)), Err(LogError::MarkTooLong { index: 0, len: 481 })));
        // Inline data on a write.
        let mut b = build(512, &[Rec::Flush]);
        b[512 + 24] = 1;
        assert!(matches!(Log::open(Cursor::new(b)), Err(LogError::InlineData { index: 0 })));
    }

    #[test]
    fn refuses_writes_past_the_target() {
        let mut log = open(sample(512));
        let mut dev = Cursor::new(vec![0u8; 512 * 7]);
        let err = log.apply_range(0, 8, &mut dev, 512 * 7).err().unwrap();
        assert!(matches!(err, LogError::PastTarget { index: 6, end: 4096, target_len: 3584 }), "{err}");
    }

    #[test]
    fn empty_log_has_no_points() {
        let log = open(build(512, &[]));
        assert!(log.entries.is_empty());
        assert!(log.crash_points(true).is_empty());
    }

    #[test]
    fn iterate_runs_the_command_at_each_point() {
        let dir = std::env::temp_dir().join(format!("replay_log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (log_path, target, seen) = (dir.join("log"), dir.join("target"), dir.join("seen"));
        std::fs::write(&log_path, sample(512)).unwrap();
        std::fs::write(&target, vec![0u8; 512 * 8]).unwrap();
        let copy = format!("{}/state-%n", dir.display());
        let cmd = format!(
            "echo \"$REPLAY_POINT/$REPLAY_POINTS $REPLAY_ENTRY/$REPLAY_ENTRIES $REPLAY_FLAGS [$REPLAY_MARK] [$REPLAY_NEXT_MARK]\" >> {}; [ $REPLAY_ENTRY != 7 ]",
            seen.display()
        );
        let visit = Visit { marks: false, copy_to: Some(&copy), exec: Some(&cmd), keep_going: true, torn: 0 };
        assert!(!iterate(&log_path, &target, Points::All, &visit).unwrap(), "the command failed at entry 7");
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "1/4 2/9 FLUSH [] [a1]\n2/4 4/9 FUA [a1] [dm-log-writes-end]\n\
             3/4 7/9 FLUSH [a1] [dm-log-writes-end]\n4/4 8/9 MARK [dm-log-writes-end] []\n"
        );
        // Each kept state is the replay up to its entry.
        for p in [2u64, 4, 7, 8] {
            let mut fresh = open(sample(512));
            assert_eq!(std::fs::read(dir.join(format!("state-{p}"))).unwrap(), replayed(&mut fresh, p, 8));
        }
        // Two points spread over the log: the first and the last.
        std::fs::write(&target, vec![0u8; 512 * 8]).unwrap();
        std::fs::remove_file(&seen).unwrap();
        let visit = Visit { marks: false, copy_to: None, exec: Some(&cmd), keep_going: false, torn: 0 };
        assert!(iterate(&log_path, &target, Points::Count(2), &visit).unwrap());
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "1/2 2/9 FLUSH [] [a1]\n2/2 8/9 MARK [dm-log-writes-end] []\n"
        );
        let mut fresh = open(sample(512));
        assert_eq!(std::fs::read(&target).unwrap(), replayed(&mut fresh, 8, 8), "the target ends at the last point");
        // Without --keep-going the first failure stops the walk.
        std::fs::write(&target, vec![0u8; 512 * 8]).unwrap();
        std::fs::remove_file(&seen).unwrap();
        assert!(!iterate(&log_path, &target, Points::All, &visit).unwrap());
        assert_eq!(std::fs::read_to_string(&seen).unwrap().lines().count(), 3, "stopped at entry 7, the third point");
        // With --marks, the mark a1 (entry 3) is a point too.
        std::fs::write(&target, vec![0u8; 512 * 8]).unwrap();
        std::fs::remove_file(&seen).unwrap();
        let visit = Visit { marks: true, copy_to: None, exec: Some(&cmd), keep_going: true, torn: 0 };
        assert!(!iterate(&log_path, &target, Points::All, &visit).unwrap());
        let seen = std::fs::read_to_string(&seen).unwrap();
        assert_eq!(seen.lines().nth(1), Some("2/5 3/9 MARK [a1] [dm-log-writes-end]"));
        // With --torn, the torn states (entries 0 and 5) are visited in order among the crash
        // points, REPLAY_TORN telling which, each state the replay up to its entry.
        std::fs::write(&target, vec![0u8; 512 * 8]).unwrap();
        let seen = dir.join("seen");
        std::fs::remove_file(&seen).unwrap();
        let cmd = format!("echo \"$REPLAY_ENTRY $REPLAY_TORN $REPLAY_FLAGS\" >> {}", seen.display());
        let visit = Visit { marks: false, copy_to: Some(&copy), exec: Some(&cmd), keep_going: false, torn: 3 };
        assert!(iterate(&log_path, &target, Points::All, &visit).unwrap());
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "0 1 -\n2 0 FLUSH\n4 0 FUA\n5 1 DISCARD\n7 0 FLUSH\n8 0 MARK\n"
        );
        for p in [0u64, 5] {
            let mut fresh = open(sample(512));
            assert_eq!(std::fs::read(dir.join(format!("state-{p}"))).unwrap(), replayed(&mut fresh, p, 8));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
